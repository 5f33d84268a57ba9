//! Each peer's config file and command line: the sweep's (certificate, port, Unix-socket
//! upstream, one worker or thread per server CPU, TLS 1.2 and 1.3), and for the fault suite
//! the same file plus [`Limits`]: the proxy's handshake, idle and upstream-connect timeouts,
//! connection limit, descriptor limit and stop grace in each peer's own words, and a second
//! listener in front of a second upstream. The equivalences (and the settings a peer does
//! not have) are listed in the README's "The fault suite".

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::loadgen::duration_arg;
use crate::plan::ConfigName;

/// What a peer's config file is made from.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    /// Loopback port it listens on (chosen free by the harness; peers cannot print theirs).
    pub port: u16,
    /// The echo-server's Unix socket.
    pub upstream: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    /// Certificate chain and key in one file (HAProxy and hitch want that).
    pub combined: &'a Path,
    /// Workers or threads: one per server CPU.
    pub threads: usize,
    /// The most connections it must hold (the idle scenario's count, with room; the fault
    /// suite's largest attack, with room).
    pub max_connections: u64,
    /// A private folder for pid files and the like.
    pub scratch: &'a Path,
    /// The harness runs as root (then nginx and hitch must be told to stay root to read
    /// the 0600 key and reach the socket).
    pub root: bool,
    /// nginx's stream module ([`super::Peer::stream_module`]).
    pub stream_module: &'a Path,
    /// The fault suite's limits; `None` in the sweep (each peer's defaults, long timeouts).
    pub limits: Option<Limits<'a>>,
}

/// The fault suite's limits and timeouts, the same values the proxy gets (see
/// `faults::stack::ProxyOpts`), written in each peer's config.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// From accept to the end of the TLS handshake.
    pub handshake: Duration,
    /// Without a byte either way on an established connection.
    pub idle: Duration,
    /// To connect to the upstream (one attempt, as the proxy makes).
    pub upstream_connect: Duration,
    /// How long a graceful stop may wait for connections to finish.
    pub grace: Duration,
    /// Client connections held at once, the proxy's `max_connections`; a limit at or above
    /// [`Setup::max_connections`] (the proxy's default 50 000) is no limit for the run, and
    /// the peer keeps the sweep's sizing.
    pub max_connections: u64,
    /// The descriptor limit, where the scenario lowers it.
    pub nofile: Option<u64>,
    /// A second listener in front of a second upstream (the misbehaving backend).
    pub second: Option<Second<'a>>,
    /// The listen backlog (the proxy's is 4096): a flood fills it before anything is
    /// accepted, and a full one drops new SYNs, which clients retry after a second.
    pub backlog: u32,
    /// HAProxy has `timeout client-hs` (2.9 and later, see [`haproxy_has_client_hs`]);
    /// without it, its handshake is bounded by `timeout client`, the idle timeout.
    pub haproxy_client_hs: bool,
}

/// A second listener: its port and the upstream it relays to.
#[derive(Debug, Clone, Copy)]
pub struct Second<'a> {
    pub port: u16,
    pub upstream: &'a Path,
}

/// Whether HAProxy of this version line (`HAProxy version 3.0.11-1 ...`) has `timeout
/// client-hs`: it came in 2.9 (its changelog: "MINOR: quic: Rename "handshake" timeout to
/// "client-hs"", 2.9-dev10). An unreadable version is taken as too old, so the config still
/// loads.
pub fn haproxy_has_client_hs(version: &str) -> bool {
    let Some(number) = version
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
    else {
        return false;
    };
    let mut parts = number.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (2, 9),
        _ => false,
    }
}

/// The config file name extension and text for `config`.
pub fn config_file(config: ConfigName, s: &Setup<'_>) -> (&'static str, String) {
    match config {
        ConfigName::Haproxy | ConfigName::HaproxyAwslc => ("cfg", haproxy(s)),
        ConfigName::Nginx => ("conf", nginx(s)),
        ConfigName::Hitch => ("conf", hitch(s)),
        ConfigName::Stunnel => ("conf", stunnel(s)),
        other => unreachable!("{other} is not a peer"),
    }
}

/// HAProxy in TCP mode. With limits: `backlog`, `maxconn` when below [`Setup::max_connections`]
/// (excess connections wait in the kernel's listen queue: HAProxy does not close them), `timeout client-hs`, `timeout client` and
/// `timeout server` (idle), `timeout connect` with `retries 0` (one attempt, as the proxy),
/// `hard-stop-after` (the soft-stop's grace).
fn haproxy(s: &Setup<'_>) -> String {
    // HAProxy sizes its descriptor limit from maxconn (and refuses to start when it cannot
    // raise it that far): a limit above what the run holds is no limit, and is left at that.
    let maxconn = s.limits.map_or(s.max_connections, |l| {
        l.max_connections.min(s.max_connections)
    });
    let (connect, idle) = match &s.limits {
        Some(l) => (duration_arg(l.upstream_connect), duration_arg(l.idle)),
        None => ("5s".to_owned(), "300s".to_owned()),
    };
    let mut global = String::new();
    let mut defaults = String::new();
    let mut second = String::new();
    if let Some(l) = &s.limits {
        global.push_str(&format!("    hard-stop-after {}\n", duration_arg(l.grace)));
        if l.haproxy_client_hs {
            defaults.push_str(&format!(
                "    timeout client-hs {}\n",
                duration_arg(l.handshake)
            ));
        }
        defaults.push_str("    retries 0\n");
        defaults.push_str(&format!("    backlog {}\n", l.backlog));
        if let Some(b) = &l.second {
            second = format!(
                "frontend bad\n\
                 \x20   bind 127.0.0.1:{} ssl crt {}\n\
                 \x20   default_backend bad\n\
                 backend bad\n\
                 \x20   server bad {}\n",
                b.port,
                s.combined.display(),
                b.upstream.display()
            );
        }
    }
    format!(
        "# HAProxy in front of the echo-server, written by the harness.\n\
         global\n\
         \x20   nbthread {threads}\n\
         \x20   maxconn {maxconn}\n\
         \x20   ssl-default-bind-options ssl-min-ver TLSv1.2\n\
         {global}\
         defaults\n\
         \x20   mode tcp\n\
         \x20   maxconn {maxconn}\n\
         \x20   timeout connect {connect}\n\
         \x20   timeout client {idle}\n\
         \x20   timeout server {idle}\n\
         {defaults}\
         frontend tls\n\
         \x20   bind 127.0.0.1:{port} ssl crt {combined}\n\
         \x20   default_backend echo\n\
         backend echo\n\
         \x20   server echo {upstream}\n\
         {second}",
        threads = s.threads,
        port = s.port,
        combined = s.combined.display(),
        upstream = s.upstream.display(),
    )
}

/// nginx's stream module. With limits: `listen ... backlog=`, `ssl_handshake_timeout`, `proxy_timeout` (idle),
/// `proxy_connect_timeout`, `worker_shutdown_timeout` (the SIGQUIT grace), a connection
/// limit below [`Setup::max_connections`] as `limit_conn` (it closes the excess at once, as
/// the proxy does), and `worker_rlimit_nofile` lowered with the descriptor limit.
fn nginx(s: &Setup<'_>) -> String {
    let user = if s.root { "user root;\n" } else { "" };
    // Each client connection is two connections for a proxy. nginx allocates its
    // connection slots up front, so they are sized to what the run holds at most, and a
    // lower limit of the fault suite is `limit_conn` rather than fewer slots.
    let conns = s.max_connections * 2 + 64;
    let nofile = s
        .limits
        .and_then(|l| l.nofile)
        .unwrap_or(s.max_connections * 2 + 256);
    let mut main = String::new();
    let mut stream = String::new();
    let mut servers = server_block(s.port, s.upstream, s);
    if let Some(l) = &s.limits {
        main.push_str(&format!(
            "worker_shutdown_timeout {};\n",
            duration_arg(l.grace)
        ));
        stream = format!(
            "\x20   ssl_handshake_timeout {};\n\
             \x20   proxy_timeout {};\n\
             \x20   proxy_connect_timeout {};\n",
            duration_arg(l.handshake),
            duration_arg(l.idle),
            duration_arg(l.upstream_connect),
        );
        if l.max_connections < s.max_connections {
            stream.push_str(&format!(
                "\x20   limit_conn_zone $server_addr zone=conns:1m;\n\
                 \x20   limit_conn conns {};\n",
                l.max_connections
            ));
        }
        if let Some(b) = &l.second {
            servers.push_str(&server_block(b.port, b.upstream, s));
        }
    }
    format!(
        "# nginx (stream module) in front of the echo-server, written by the harness.\n\
         load_module {module};\n\
         {user}worker_processes {threads};\n\
         worker_rlimit_nofile {nofile};\n\
         {main}\
         daemon off;\n\
         master_process on;\n\
         pid {scratch}/nginx.pid;\n\
         error_log stderr warn;\n\
         events {{ worker_connections {conns}; }}\n\
         stream {{\n\
         {stream}\
         {servers}\
         }}\n",
        module = s.stream_module.display(),
        threads = s.threads,
        scratch = s.scratch.display(),
    )
}

/// One nginx `server` block: TLS on `port`, relayed to `upstream`.
fn server_block(port: u16, upstream: &Path, s: &Setup<'_>) -> String {
    let backlog = s
        .limits
        .map_or_else(String::new, |l| format!(" backlog={}", l.backlog));
    format!(
        "\x20   server {{\n\
         \x20       listen 127.0.0.1:{port} ssl{backlog};\n\
         \x20       ssl_certificate {cert};\n\
         \x20       ssl_certificate_key {key};\n\
         \x20       ssl_protocols TLSv1.2 TLSv1.3;\n\
         \x20       ssl_session_tickets on;\n\
         \x20       proxy_pass unix:{upstream};\n\
         \x20   }}\n",
        cert = s.cert.display(),
        key = s.key.display(),
        upstream = upstream.display(),
    )
}

/// hitch. With limits: `ssl-handshake-timeout` and `backend-connect-timeout` (whole
/// seconds), `backlog` (hitch's own default is 100). hitch has no idle timeout, no connection limit, and one backend for all its
/// frontends (hitch.conf(5)): the fault suite says `n/a` where those are needed.
fn hitch(s: &Setup<'_>) -> String {
    let user = if s.root { "user = \"root\"\n" } else { "" };
    let mut limits = String::new();
    if let Some(l) = &s.limits {
        limits = format!(
            "ssl-handshake-timeout = {}\n\
             backend-connect-timeout = {}\n\
             backlog = {}\n",
            whole_seconds(l.handshake),
            whole_seconds(l.upstream_connect),
            l.backlog
        );
    }
    format!(
        "# hitch in front of the echo-server, written by the harness.\n\
         frontend = \"[127.0.0.1]:{port}\"\n\
         backend = \"{upstream}\"\n\
         pem-file = \"{combined}\"\n\
         workers = {threads}\n\
         daemon = off\n\
         {user}tls-protos = TLSv1.2 TLSv1.3\n\
         quiet = on\n\
         {limits}",
        port = s.port,
        upstream = s.upstream.display(),
        combined = s.combined.display(),
        threads = s.threads,
    )
}

fn stunnel(s: &Setup<'_>) -> String {
    format!(
        "; stunnel in front of the echo-server, written by the harness.\n\
         ; stunnel has no worker setting: it runs one thread per connection.\n\
         foreground = yes\n\
         pid =\n\
         debug = 3\n\
         [tls]\n\
         accept = 127.0.0.1:{port}\n\
         connect = {upstream}\n\
         cert = {cert}\n\
         key = {key}\n\
         sslVersionMin = TLSv1.2\n",
        port = s.port,
        upstream = s.upstream.display(),
        cert = s.cert.display(),
        key = s.key.display(),
    )
}

/// hitch's timeouts are whole seconds: rounded up, at least 1.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The command line that runs `program` with the config file at `conf`.
pub fn args(config: ConfigName, conf: &Path, scratch: &Path) -> Vec<OsString> {
    let conf = conf.as_os_str().to_owned();
    match config {
        ConfigName::Haproxy | ConfigName::HaproxyAwslc => vec!["-f".into(), conf],
        ConfigName::Nginx => {
            // -e: the error log before the config is read (the default path may not be
            // writable); -p: the prefix for any relative path.
            let mut prefix = scratch.as_os_str().to_owned();
            prefix.push("/");
            vec![
                "-e".into(),
                "stderr".into(),
                "-p".into(),
                prefix,
                "-c".into(),
                conf,
            ]
        }
        ConfigName::Hitch => {
            let mut flag = OsString::from("--config=");
            flag.push(conf);
            vec![flag]
        }
        ConfigName::Stunnel => vec![conf],
        other => unreachable!("{other} is not a peer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::NGINX_STREAM_MODULE;

    fn setup<'a>(dir: &'a Path) -> Setup<'a> {
        Setup {
            port: 4433,
            upstream: Path::new("/tmp/h/echo.sock"),
            cert: Path::new("/tmp/h/cert.pem"),
            key: Path::new("/tmp/h/key.pem"),
            combined: Path::new("/tmp/h/combined.pem"),
            threads: 3,
            max_connections: 1000,
            scratch: dir,
            root: true,
            stream_module: Path::new(NGINX_STREAM_MODULE),
            limits: None,
        }
    }

    fn limits() -> Limits<'static> {
        Limits {
            handshake: Duration::from_secs(2),
            idle: Duration::from_millis(2500),
            upstream_connect: Duration::from_secs(1),
            grace: Duration::from_secs(5),
            max_connections: 500,
            nofile: Some(1024),
            second: Some(Second {
                port: 4434,
                upstream: Path::new("/tmp/h/bad.sock"),
            }),
            backlog: 4096,
            haproxy_client_hs: true,
        }
    }

    #[test]
    fn every_peer_config_names_port_socket_certificate_and_threads() {
        let dir = Path::new("/tmp/h/nginx");
        for config in [
            ConfigName::Haproxy,
            ConfigName::Nginx,
            ConfigName::Hitch,
            ConfigName::Stunnel,
        ] {
            let (_, text) = config_file(config, &setup(dir));
            assert!(text.contains("127.0.0.1]:4433") || text.contains("127.0.0.1:4433"));
            assert!(text.contains("/tmp/h/echo.sock"), "{config}: {text}");
            assert!(text.contains("/tmp/h/"), "{config}: {text}");
            if config != ConfigName::Stunnel {
                assert!(text.contains('3'), "{config}: {text}");
            }
        }
        let (_, haproxy) = config_file(ConfigName::Haproxy, &setup(dir));
        assert!(haproxy.contains("nbthread 3") && haproxy.contains("maxconn 1000"));
        assert!(haproxy.contains("timeout client 300s") && !haproxy.contains("client-hs"));
        let (_, nginx) = config_file(ConfigName::Nginx, &setup(dir));
        assert!(nginx.contains("worker_processes 3;") && nginx.contains("user root;"));
        assert!(nginx.contains("proxy_pass unix:/tmp/h/echo.sock;"));
        assert!(!nginx.contains("limit_conn") && !nginx.contains("timeout"));
        let (_, hitch) = config_file(ConfigName::Hitch, &setup(dir));
        assert!(hitch.contains("workers = 3") && hitch.contains("combined.pem"));
        assert!(!hitch.contains("timeout"));
    }

    #[test]
    fn haproxy_gets_the_suites_limits_and_a_second_listener() {
        let s = Setup {
            limits: Some(limits()),
            ..setup(Path::new("/tmp/h/x"))
        };
        let (_, text) = config_file(ConfigName::HaproxyAwslc, &s);
        for line in [
            "    maxconn 500\n",
            "    hard-stop-after 5s\n",
            "    timeout client-hs 2s\n",
            "    timeout client 2500ms\n",
            "    timeout server 2500ms\n",
            "    timeout connect 1s\n",
            "    retries 0\n",
            "    backlog 4096\n",
            "    bind 127.0.0.1:4434 ssl crt /tmp/h/combined.pem\n",
            "    server bad /tmp/h/bad.sock\n",
        ] {
            assert!(text.contains(line), "{line:?} missing:\n{text}");
        }
        assert!(!text.contains("maxconn 1000"), "{text}");
        let old = Setup {
            limits: Some(Limits {
                haproxy_client_hs: false,
                ..limits()
            }),
            ..s
        };
        let (_, text) = config_file(ConfigName::Haproxy, &old);
        assert!(!text.contains("client-hs"), "{text}");
    }

    #[test]
    fn nginx_gets_the_suites_limits_and_a_second_server() {
        let s = Setup {
            limits: Some(limits()),
            ..setup(Path::new("/tmp/h/x"))
        };
        let (_, text) = config_file(ConfigName::Nginx, &s);
        for line in [
            "worker_rlimit_nofile 1024;\n",
            "worker_shutdown_timeout 5s;\n",
            "    ssl_handshake_timeout 2s;\n",
            "    proxy_timeout 2500ms;\n",
            "    proxy_connect_timeout 1s;\n",
            "    limit_conn conns 500;\n",
            "        listen 127.0.0.1:4434 ssl backlog=4096;\n",
            "        proxy_pass unix:/tmp/h/bad.sock;\n",
            "events { worker_connections 2064; }\n",
        ] {
            assert!(text.contains(line), "{line:?} missing:\n{text}");
        }
        assert_eq!(text.matches("server {").count(), 2, "{text}");
    }

    #[test]
    fn hitch_gets_whole_second_timeouts_and_nothing_it_lacks() {
        let s = Setup {
            limits: Some(Limits {
                handshake: Duration::from_millis(1500),
                ..limits()
            }),
            ..setup(Path::new("/tmp/h/x"))
        };
        let (_, text) = config_file(ConfigName::Hitch, &s);
        assert!(text.contains("ssl-handshake-timeout = 2\n"), "{text}");
        assert!(text.contains("backend-connect-timeout = 1\n"), "{text}");
        assert!(text.contains("backlog = 4096\n"), "{text}");
        assert!(!text.contains("bad.sock"), "one backend only: {text}");
    }

    #[test]
    fn haproxy_versions_with_client_hs() {
        assert!(haproxy_has_client_hs(
            "HAProxy version 3.0.11-1+deb13u4 2025/08/01 - https://haproxy.org/"
        ));
        assert!(haproxy_has_client_hs("HAProxy version 2.9.0 2023/12/05"));
        assert!(!haproxy_has_client_hs(
            "HAProxy version 2.6.12-1+deb12u4 2025/07/01"
        ));
        assert!(!haproxy_has_client_hs("unknown"));
    }

    #[test]
    fn not_root_means_no_user_switch() {
        let dir = Path::new("/tmp/h/nginx");
        let s = Setup {
            root: false,
            ..setup(dir)
        };
        assert!(!config_file(ConfigName::Nginx, &s).1.contains("user "));
        assert!(!config_file(ConfigName::Hitch, &s).1.contains("user "));
    }
}
