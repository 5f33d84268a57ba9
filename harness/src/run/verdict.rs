//! One verdict per row: every error and warning a row's status and note carry about the
//! load is decided here, once, from the facts in loadgen's JSON report and what the harness
//! saw itself. loadgen's own `warnings` (in its JSON and text output) are for people who
//! run it alone; the harness does not copy them, so a row states each thing once.

use crate::loadgen::Report;
use crate::output::Status;
use crate::plan::{Measurement, Plan};

/// One remark for a row, with the status it gives the row at least.
pub(super) type Remark = (Status, String);

/// The verdict on a load run (sweep or handshakes). `tls`: the target speaks TLS, so the
/// negotiated parameters must be the ones asked for.
pub(super) fn load(report: &Report, plan: &Plan, m: &Measurement, tls: bool) -> Vec<Remark> {
    let mut out = Vec::new();
    if report.requests == 0 {
        out.push(error("no request completed in the measured period"));
    }
    out.extend(body_size(report, m));
    if tls {
        out.extend(report.tls_mismatches(m).into_iter().map(error));
    }
    let e = &report.errors;
    if e.total > 0 {
        out.push(warning(format!(
            "{} request errors (connect {}, read {}, write {}, timeout {}, status {}, \
             body mismatch {})",
            e.total, e.connect, e.read, e.write, e.timeout, e.status, e.body_mismatch
        )));
    }
    out.extend(connections_short(report, u64::from(plan.connections.get())));
    if report.cpu.saturated {
        out.push(warning(format!(
            "load generator saturated (CPU utilisation {:.2}{}): the client, not the server, \
             may be the limit",
            report.cpu.utilization,
            saturated_segments(report)
        )));
    }
    let asked_s = plan.duration.as_secs_f64();
    if report.duration_s + DURATION_TOLERANCE_S < asked_s {
        out.push(warning(format!(
            "loadgen was interrupted: measured {:.3} s of the {asked_s:.3} s asked for",
            report.duration_s
        )));
    }
    out.extend(late_starts(report, plan));
    out
}

/// The handshake scenario's own verdict: were the handshakes resumed when they should be,
/// and did the client run short of ephemeral ports? `time_wait`: sockets to the server's
/// port in TIME_WAIT after the run; `ports`: the ephemeral port range's size; `tw_reuse`:
/// the kernel may reuse TIME_WAIT ports for new connections.
pub(super) fn handshakes(
    report: &Report,
    resumed: bool,
    time_wait: Option<u64>,
    ports: Option<u64>,
    tw_reuse: bool,
) -> Vec<Remark> {
    let mut out = Vec::new();
    if let Some(tls) = &report.tls {
        // Each client connection slot's first handshake is full; most of the rest should
        // resume. Not all: a client whose ticket pool is momentarily empty (TLS 1.3 tickets
        // are single-use) makes a full handshake, 5-10% of them here for every server. Under
        // half means tickets do not work at all (the column `tls_resumed` has the count).
        let expected = tls.handshakes.saturating_sub(report.connections_opened);
        if resumed && tls.resumed * 2 < expected {
            out.push(warning(format!(
                "only {} of {} handshakes resumed: the server may not issue or accept \
                 session tickets",
                tls.resumed, tls.handshakes
            )));
        }
        if !resumed && tls.resumed > 0 {
            out.push(error(format!(
                "{} handshakes resumed in a full-handshake run",
                tls.resumed
            )));
        }
    }
    // Linux reuses a TIME_WAIT port for a new connection on loopback (tcp_tw_reuse 2, the
    // default): ports only run out without reuse, or when connects fail with many held.
    if let (Some(ports), Some(time_wait)) = (ports, time_wait) {
        let pressed = !tw_reuse && time_wait * 10 >= ports * 8;
        if pressed || (report.errors.connect > 0 && time_wait * 2 >= ports) {
            out.push(warning(format!(
                "ephemeral ports nearly exhausted ({time_wait} sockets in TIME_WAIT, \
                 {ports} ports; {} connect errors): the client's connection rate, not \
                 the server, may have been the limit",
                report.errors.connect
            )));
        }
    }
    out
}

/// The verdict on an idle run. `all_open`: loadgen said every connection was open, so
/// the memory was sampled while they were held.
pub(super) fn idle(report: &Report, plan: &Plan, m: &Measurement, all_open: bool) -> Vec<Remark> {
    let mut out: Vec<Remark> = Vec::new();
    // The relay floor's connections are plain: nothing negotiated to check.
    if m.variant.config.is_tls() {
        out.extend(report.tls_mismatches(m).into_iter().map(error));
    }
    out.extend(body_size(report, m));
    if !all_open {
        out.push(error(
            "loadgen never said its connections were open (no `idle:` line on its stderr)",
        ));
        return out;
    }
    out.extend(connections_short(
        report,
        u64::from(plan.idle_connections.get()),
    ));
    if report.errors.total > 0 {
        out.push(warning(format!(
            "{} errors opening connections",
            report.errors.total
        )));
    }
    let closed = report.idle.as_ref().map_or(0, |i| i.closed_by_server);
    if closed > 0 {
        out.push(warning(format!(
            "the server closed {closed} idle connections during the hold"
        )));
    }
    out
}

/// For a merged report, which of its processes were saturated: `; segment 2/2 of 2
/// processes`.
fn saturated_segments(report: &Report) -> String {
    let Some(segments) = &report.segments else {
        return String::new();
    };
    let saturated: Vec<&str> = segments
        .iter()
        .filter(|s| s.saturated)
        .map(|s| s.segment.as_deref().unwrap_or("?"))
        .collect();
    format!(
        "; segment {} of {} processes",
        saturated.join(", "),
        segments.len()
    )
}

/// loadgen sent the body size the plan asked for.
fn body_size(report: &Report, m: &Measurement) -> Option<Remark> {
    (report.body_bytes != m.size).then(|| {
        error(format!(
            "loadgen sent {}-byte request bodies, the plan asked for {}",
            report.body_bytes, m.size
        ))
    })
}

fn connections_short(report: &Report, asked: u64) -> Option<Remark> {
    let opened = report.connections_opened;
    (opened < asked).then(|| warning(format!("only {opened} of {asked} connections opened")))
}

/// Open loop: too many requests started late means the client, not the server, set the
/// pace (loadgen's own stderr warning uses the same share).
fn late_starts(report: &Report, plan: &Plan) -> Option<Remark> {
    if plan.rate.is_none() || report.requests == 0 {
        return None;
    }
    let share = report.late_requests as f64 / report.requests as f64;
    (share > LATE_WARN_SHARE).then(|| {
        warning(format!(
            "{:.1}% of requests started more than 1 ms after their intended time (too few \
             connections for the rate, or the load generator was short of CPU); the \
             corrected latencies include that wait",
            share * 100.0
        ))
    })
}

fn error(text: impl Into<String>) -> Remark {
    (Status::Error, text.into())
}

fn warning(text: impl Into<String>) -> Remark {
    (Status::Warning, text.into())
}

/// Share of late open-loop starts (more than 1 ms after their intended time) above which
/// a row gets a warning.
const LATE_WARN_SHARE: f64 = 0.01;
/// loadgen reports its measured period to the microsecond or better; shorter than asked
/// by more than this means it was stopped early.
const DURATION_TOLERANCE_S: f64 = 0.001;

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use crate::plan::{ConfigName, Kind, Preset};

    /// loadgen's contract example: 100 connections for 10 s, 10-byte bodies, TLS 1.3.
    fn report() -> Report {
        Report::parse(crate::loadgen::tests::SAMPLE).unwrap()
    }

    /// The plan the example answers, and its 10-byte https-rustls sweep measurement.
    fn plan_and_measurement(kind: Kind) -> (Plan, Measurement) {
        let plan = Plan {
            connections: NonZeroU32::new(100).unwrap(),
            idle_connections: NonZeroU32::new(100).unwrap(),
            duration: Duration::from_secs(10),
            ..Preset::Quick.plan()
        };
        let m = plan
            .measurements()
            .into_iter()
            .find(|m| m.variant.config == ConfigName::HttpsRustls && m.size == 10)
            .unwrap();
        (plan, Measurement { kind, ..m })
    }

    fn texts(remarks: &[Remark], status: Status) -> Vec<&str> {
        remarks
            .iter()
            .filter(|(s, _)| *s == status)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    #[test]
    fn a_run_that_did_what_was_asked_has_no_remark() {
        let (plan, m) = plan_and_measurement(Kind::Sweep);
        assert_eq!(load(&report(), &plan, &m, true), Vec::new());
        assert_eq!(idle(&report(), &plan, &m, true), Vec::new());
    }

    #[test]
    fn each_fact_is_stated_once() {
        let (plan, m) = plan_and_measurement(Kind::Sweep);
        let mut r = report();
        r.connections_opened = 80;
        r.cpu.saturated = true;
        r.cpu.utilization = 0.97;
        let remarks = load(&r, &plan, &m, true);
        let warnings = texts(&remarks, Status::Warning);
        assert_eq!(warnings.len(), 2, "{remarks:?}");
        assert_eq!(warnings[0], "only 80 of 100 connections opened");
        assert!(warnings[1].starts_with("load generator saturated (CPU utilisation 0.97)"));
    }

    #[test]
    fn a_merged_report_names_its_saturated_processes() {
        let (plan, m) = plan_and_measurement(Kind::Sweep);
        let merged = crate::loadgen::tests::SAMPLE.replace(
            "\"some_future_field\": 1",
            r#""segments": [
                {"segment": "1/2", "utilization": 0.4, "saturated": false},
                {"segment": "2/2", "utilization": 0.95, "saturated": true}]"#,
        );
        let mut r = Report::parse(&merged).unwrap();
        r.cpu.saturated = true;
        r.cpu.utilization = 0.95;
        let remarks = load(&r, &plan, &m, true);
        let said = "load generator saturated (CPU utilisation 0.95; segment 2/2 of 2 \
                    processes): the client, not the server, may be the limit";
        assert_eq!(texts(&remarks, Status::Warning), [said]);
        // The row keeps the flag.
        let mut row = crate::output::Row::default();
        super::super::rows::fill(&mut row, &r, &plan, &m, true);
        assert_eq!(row.loadgen_saturated, Some(true));
        assert_eq!((row.status, row.note.as_str()), (Status::Warning, said));
    }

    #[test]
    fn a_body_size_other_than_planned_is_an_error() {
        let (plan, m) = plan_and_measurement(Kind::Sweep);
        let m = Measurement { size: 1000, ..m };
        let remarks = load(&report(), &plan, &m, true);
        assert_eq!(
            texts(&remarks, Status::Error),
            ["loadgen sent 10-byte request bodies, the plan asked for 1000"]
        );
        assert_eq!(
            texts(&idle(&report(), &plan, &m, true), Status::Error).len(),
            1
        );
    }

    #[test]
    fn a_short_measured_period_and_late_starts_are_warnings() {
        let (plan, m) = plan_and_measurement(Kind::Sweep);
        let mut r = report();
        r.duration_s = 4.5;
        r.late_requests = r.requests / 10;
        let open_loop = Plan {
            rate: Some(1000.0),
            ..plan.clone()
        };
        let remarks = load(&r, &open_loop, &m, true);
        let warnings = texts(&remarks, Status::Warning);
        assert_eq!(warnings.len(), 2, "{remarks:?}");
        assert_eq!(
            warnings[0],
            "loadgen was interrupted: measured 4.500 s of the 10.000 s asked for"
        );
        assert!(warnings[1].starts_with("10.0% of requests started more than 1 ms"));
        // A closed loop has no intended start times: no late-start remark.
        assert_eq!(texts(&load(&r, &plan, &m, true), Status::Warning).len(), 1);
    }

    #[test]
    fn an_idle_run_never_open_is_an_error_and_says_nothing_more() {
        let (plan, m) = plan_and_measurement(Kind::Idle);
        let mut r = report();
        r.connections_opened = 10;
        let remarks = idle(&r, &plan, &m, false);
        assert_eq!(remarks.len(), 1, "{remarks:?}");
        assert!(remarks[0]
            .1
            .starts_with("loadgen never said its connections were open"));
        let remarks = idle(&r, &plan, &m, true);
        assert_eq!(
            texts(&remarks, Status::Warning),
            ["only 10 of 100 connections opened"]
        );
    }

    #[test]
    fn the_relay_floor_holds_plain_idle_connections_without_a_tls_remark() {
        let (plan, m) = plan_and_measurement(Kind::Idle);
        let mut plain = report();
        plain.tls = None;
        let relay = Measurement {
            variant: crate::plan::Variant {
                config: ConfigName::Relay,
                backend: None,
            },
            ..m.clone()
        };
        assert_eq!(idle(&plain, &plan, &relay, true), Vec::new());
        // A TLS config that reports no TLS is still an error.
        assert_eq!(
            texts(&idle(&plain, &plan, &m, true), Status::Error),
            ["loadgen reported no TLS parameters for a TLS config"]
        );
    }

    #[test]
    fn a_full_handshake_run_that_resumed_is_an_error() {
        let mut r = report();
        if let Some(tls) = &mut r.tls {
            tls.resumed = 3;
        }
        let remarks = handshakes(&r, false, Some(10), Some(28_000), true);
        assert_eq!(
            texts(&remarks, Status::Error),
            ["3 handshakes resumed in a full-handshake run"]
        );
        // Without TIME_WAIT reuse, 80% of the ports held is the limit.
        let remarks = handshakes(&report(), false, Some(22_400), Some(28_000), false);
        assert!(texts(&remarks, Status::Warning)[0].starts_with("ephemeral ports nearly"));
    }
}
