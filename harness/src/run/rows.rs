//! The CSV rows: the columns known before a measurement runs, and the load generator's figures.

use super::resources::Resources;
use super::verdict;
use crate::loadgen::{self, Report};
use crate::output::{IdleRow, Num, Row, Status};
use crate::plan::{Measurement, Plan};
use crate::tls_library;

/// The columns known before anything runs: what was asked for.
pub(super) fn base_row(res: &Resources<'_>, m: &Measurement) -> Row {
    let plan = res.plan;
    let remote = plan.target.is_some();
    let tls = if remote {
        plan.target.as_deref().is_some_and(loadgen::is_tls_url)
    } else {
        m.variant.config.is_tls()
    };
    let mut row = Row {
        config: if remote {
            "remote".to_owned()
        } else {
            m.variant.config_name().to_owned()
        },
        size: m.size,
        iteration: m.iteration,
        tls_backend: if remote {
            "remote".to_owned()
        } else {
            m.variant.backend_name().to_owned()
        },
        connections: plan.connections.get(),
        rate: plan.rate.map(Num),
        cert_type: (tls && !remote).then(|| m.tls.cert.name().to_owned()),
        handshake: m.kind.handshake_name().to_owned(),
        server_cpus: (!remote).then(|| res.split.server.to_string()),
        client_cpus: Some(res.split.client.to_string()),
        client_processes: plan.client_processes.get(),
        // The remote end's library is not ours to read.
        tls_library: if remote {
            tls_library::UNKNOWN.to_owned()
        } else {
            tls_library::of_variant(&m.variant, res.tls_libraries, res.peers)
        },
        ..Row::default()
    };
    if let Some(warning) = &res.split.warning {
        // Said in every row (status unchanged) so that analysis of the CSV alone sees it.
        row.flag(Status::Ok, warning);
    }
    row
}

/// The first columns of an idle row: what was asked for.
pub(super) fn base_idle_row(res: &Resources<'_>, m: &Measurement) -> IdleRow {
    let mut row = IdleRow {
        config: m.variant.config_name().to_owned(),
        tls_backend: m.variant.backend_name().to_owned(),
        iteration: m.iteration,
        connections: res.plan.idle_connections.get(),
        // The relay floor holds plain connections: no certificate, no TLS columns.
        cert_type: m
            .variant
            .config
            .is_tls()
            .then(|| m.tls.cert.name().to_owned()),
        server_cpus: Some(res.split.server.to_string()),
        client_cpus: Some(res.split.client.to_string()),
        tls_library: tls_library::of_variant(&m.variant, res.tls_libraries, res.peers),
        ..IdleRow::default()
    };
    if let Some(warning) = &res.split.warning {
        row.flag(Status::Ok, warning);
    }
    row
}

/// The load generator's figures, and the [`verdict::load`] on them.
pub(super) fn fill(row: &mut Row, report: &Report, plan: &Plan, m: &Measurement, tls: bool) {
    let size = m.size;
    let lat = &report.latency_us;
    row.requests = Some(report.requests);
    row.mean = Some(Num(lat.mean));
    row.stdev = Some(Num(lat.stdev));
    row.p50 = Some(Num(lat.p50));
    row.p90 = Some(Num(lat.p90));
    row.p99 = Some(Num(lat.p99));
    row.p999 = Some(Num(lat.p999));
    row.max = Some(Num(lat.max));
    row.min = Some(Num(lat.min));
    row.connections_opened = Some(report.connections_opened);
    row.rate = report.rate.or(plan.rate).map(Num);
    row.duration_s = Some(Num(report.duration_s));
    row.warmup_s = Some(Num(report.warmup_s));
    row.rps = Some(Num(report.rps));
    // Request body megabytes (10^6) per second; the responses carry as many back.
    row.mb_per_s = Some(Num(report.rps * size as f64 / 1e6));
    let e = &report.errors;
    row.errors = Some(e.total);
    row.errors_connect = Some(e.connect);
    row.errors_read = Some(e.read);
    row.errors_write = Some(e.write);
    row.errors_timeout = Some(e.timeout);
    row.errors_status = Some(e.status);
    row.errors_body_mismatch = Some(e.body_mismatch);
    let cpu = report.cpu.user_s + report.cpu.sys_s;
    row.loadgen_cpu_s = Some(Num(cpu));
    row.loadgen_cpu_us_per_req =
        (report.requests > 0).then(|| Num(cpu * 1e6 / report.requests as f64));
    row.loadgen_utilization = Some(Num(report.cpu.utilization));
    row.loadgen_saturated = Some(report.cpu.saturated);
    if let Some(t) = &report.tls {
        row.tls_version = t.version.clone();
        row.tls_cipher_suite = t.cipher_suite.clone();
        row.tls_kx_group = t.kx_group.clone();
        row.tls_resumed = Some(t.resumed);
    }

    for (status, remark) in verdict::load(report, plan, m, tls) {
        row.flag(status, remark);
    }
}

/// The handshake scenario's own figure (sockets in TIME_WAIT to the server's port) and
/// its [`verdict::handshakes`].
pub(super) fn handshake_checks(row: &mut Row, report: &Report, resumed: bool, url: &str) {
    let time_wait = url_port(url).map(crate::procfs::time_wait_sockets_to);
    row.time_wait = time_wait;
    let ports = crate::procfs::ephemeral_ports();
    let tw_reuse = crate::procfs::tcp_tw_reuse() != Some(0);
    for (status, remark) in verdict::handshakes(report, resumed, time_wait, ports, tw_reuse) {
        row.flag(status, remark);
    }
}

/// The port of `https://HOST:PORT/`.
fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// An idle run's figures from the load generator's report and the servers' memory
/// `before` it opened its connections and `after` (`None`: it never said they were open),
/// and the [`verdict::idle`] on them.
pub(super) fn fill_idle(
    row: &mut IdleRow,
    report: &Report,
    plan: &Plan,
    m: &Measurement,
    before: &[u64],
    after: Option<&[u64]>,
) {
    let opened = report.connections_opened;
    row.connections_opened = Some(opened);
    row.closed_by_server = report.idle.as_ref().map(|i| i.closed_by_server);
    row.errors = Some(report.errors.total);
    row.p50 = Some(Num(report.latency_us.p50));
    row.p99 = Some(Num(report.latency_us.p99));
    if let Some(t) = &report.tls {
        row.tls_version = t.version.clone();
        row.tls_cipher_suite = t.cipher_suite.clone();
        row.tls_kx_group = t.kx_group.clone();
    }
    for (status, remark) in verdict::idle(report, plan, m, after.is_some()) {
        row.flag(status, remark);
    }
    let Some(after) = after else {
        return;
    };
    let per_conn =
        |b: u64, a: u64| (opened > 0).then(|| Num(a.saturating_sub(b) as f64 / opened as f64));
    // The terminator is the last server (for https-* the echo-server terminates itself).
    let n = before.len();
    if let (Some(&b), Some(&a)) = (before.last(), after.last()) {
        row.terminator_rss_before_kib = Some(b);
        row.terminator_rss_after_kib = Some(a);
        row.terminator_kib_per_conn = per_conn(b, a);
    }
    if n == 2 {
        row.backend_rss_before_kib = Some(before[0]);
        row.backend_rss_after_kib = Some(after[0]);
        row.backend_kib_per_conn = per_conn(before[0], after[0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_port_reads_the_authority() {
        assert_eq!(url_port("https://127.0.0.1:8443/"), Some(8443));
        assert_eq!(url_port("https://[::1]:443/x"), Some(443));
        assert_eq!(url_port("unix:///tmp/s.sock"), None);
    }
}
