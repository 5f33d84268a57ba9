//! The terminator under attack: our proxy, or a peer (HAProxy, HAProxy on AWS-LC, nginx,
//! hitch) in front of the same echo-server, with the same limits in its own words
//! ([`crate::peers::Limits`]). Here is what differs between them: how each reloads its
//! certificates and stops gracefully, and what a peer does not have, as the reason a
//! criterion reads `n/a` (each from the peer's own documentation or, where the
//! documentation is silent, from what the peer did when tried).

use nix::sys::signal::Signal;

use crate::peers::{haproxy_has_client_hs, Peer};
use crate::plan::ConfigName;

/// The configs the fault suite can attack.
pub const CONFIGS: [ConfigName; 5] = [
    ConfigName::ProxyRustls,
    ConfigName::Haproxy,
    ConfigName::HaproxyAwslc,
    ConfigName::Nginx,
    ConfigName::Hitch,
];

/// The terminator of one set of rows.
#[derive(Debug, Clone)]
pub enum Terminator {
    /// Our proxy, TLS by [`super::BACKEND`]; the library it runs, for the rows.
    Proxy { tls_library: String },
    /// A peer found on this machine.
    Peer(Peer),
}

/// Something a criterion needs that a terminator may not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// The proxy's `/metrics` counters (handshake failures, refusals, active connections).
    Metrics,
    /// A connection limit beyond which connections are closed at once.
    CloseBeyondMaxConnections,
    /// Running under a lowered descriptor limit.
    FdLimit,
    /// A handshake timeout of its own.
    HandshakeTimeout,
    /// A second listener to a second upstream, and an idle timeout (scenario 5).
    SecondUpstream,
    /// A graceful stop that lets requests in flight finish.
    Drain,
    /// A log line per certificate reload, applied or refused.
    ReloadLog,
}

impl Terminator {
    /// The config name: the `terminator` column.
    pub fn config(&self) -> ConfigName {
        match self {
            Terminator::Proxy { .. } => ConfigName::ProxyRustls,
            Terminator::Peer(p) => p.config,
        }
    }

    pub fn name(&self) -> &'static str {
        self.config().name()
    }

    /// The TLS library it runs (the `tls_library` column).
    pub fn tls_library(&self) -> &str {
        match self {
            Terminator::Proxy { tls_library } => tls_library,
            Terminator::Peer(p) => &p.tls_library,
        }
    }

    pub fn peer(&self) -> Option<&Peer> {
        match self {
            Terminator::Proxy { .. } => None,
            Terminator::Peer(p) => Some(p),
        }
    }

    /// HAProxy runs in master-worker mode (`-W`), its documented reload path.
    pub fn is_haproxy(&self) -> bool {
        matches!(
            self.config(),
            ConfigName::Haproxy | ConfigName::HaproxyAwslc
        )
    }

    /// The signal that makes it read its certificates again (sent to the process the
    /// harness started: the proxy, or the peer's master): SIGHUP for the proxy, nginx (`-s
    /// reload`) and hitch; SIGUSR2 for HAProxy's master (management.txt, "-W").
    pub fn reload_signal(&self) -> Signal {
        if self.is_haproxy() {
            Signal::SIGUSR2
        } else {
            Signal::SIGHUP
        }
    }

    /// The signal of its graceful stop, and how the note names it: SIGTERM for the proxy,
    /// SIGUSR1 for HAProxy (soft-stop, management.txt section 4), SIGQUIT for nginx
    /// ("graceful shutdown", nginx(8)); hitch has none ([`Feature::Drain`]) and gets SIGTERM.
    pub fn stop_signal(&self) -> (Signal, &'static str) {
        match self.config() {
            ConfigName::Haproxy | ConfigName::HaproxyAwslc => {
                (Signal::SIGUSR1, "SIGUSR1 (HAProxy's soft-stop)")
            }
            ConfigName::Nginx => (Signal::SIGQUIT, "SIGQUIT (nginx's graceful shutdown)"),
            _ => (Signal::SIGTERM, "SIGTERM"),
        }
    }

    /// Each of the proxy's settings the suite sets, and the directive that sets it in this
    /// terminator's config (`none` where it has none): for meta.json, beside the README's
    /// table.
    pub fn equivalents(&self) -> Vec<(&'static str, &'static str)> {
        let keys = [
            "timeouts.handshake",
            "timeouts.idle",
            "timeouts.upstream_connect",
            "max_connections",
            "descriptor limit",
            "timeouts.shutdown_grace",
            "listen backlog",
        ];
        let words: [&'static str; 7] = match self.config() {
            ConfigName::Haproxy | ConfigName::HaproxyAwslc => [
                if self.lacks(Feature::HandshakeTimeout).is_some() {
                    "none (timeout client bounds it)"
                } else {
                    "timeout client-hs"
                },
                "timeout client, timeout server",
                "timeout connect, retries 0",
                "maxconn",
                "none (sized from maxconn)",
                "hard-stop-after",
                "backlog",
            ],
            ConfigName::Nginx => [
                "ssl_handshake_timeout",
                "proxy_timeout",
                "proxy_connect_timeout",
                "limit_conn",
                "ulimit -n, worker_rlimit_nofile",
                "worker_shutdown_timeout",
                "listen backlog=",
            ],
            ConfigName::Hitch => [
                "ssl-handshake-timeout",
                "none",
                "backend-connect-timeout",
                "none",
                "ulimit -n",
                "none",
                "backlog",
            ],
            _ => keys,
        };
        keys.into_iter().zip(words).collect()
    }

    /// Why a criterion that needs `feature` is `n/a` for this terminator, or `None` when it
    /// has it.
    pub fn lacks(&self, feature: Feature) -> Option<String> {
        let Terminator::Peer(peer) = self else {
            return None;
        };
        let name = peer.config.name();
        let haproxy = self.is_haproxy();
        let hitch = peer.config == ConfigName::Hitch;
        let why = match feature {
            Feature::Metrics => format!(
                "{name} has no /metrics page like the proxy's; judged by what the attackers \
                 and /proc see"
            ),
            Feature::CloseBeyondMaxConnections if haproxy => "HAProxy's maxconn leaves \
                 connections beyond it in the kernel's listen queue, unanswered, instead of \
                 closing them (configuration.txt, maxconn)"
                .to_owned(),
            Feature::CloseBeyondMaxConnections if hitch => {
                "hitch has no connection limit (hitch.conf(5))".to_owned()
            }
            Feature::FdLimit if haproxy => "HAProxy sizes its descriptor limit from maxconn \
                 and refuses to start below it (`FD limit (1024) too low for maxconn`; \
                 configuration.txt, maxconn and ulimit-n): the flood beyond its limit is part (a)"
                .to_owned(),
            Feature::HandshakeTimeout if haproxy && !haproxy_has_client_hs(&peer.version) => {
                format!(
                    "{} has no `timeout client-hs` (HAProxy 2.9 and later): its handshake is \
                     bounded by `timeout client`, the idle timeout",
                    peer.version
                )
            }
            Feature::SecondUpstream if hitch => "hitch relays every listener to its one \
                 backend (\"Only a single backend is supported\", hitch.conf(5)) and has no \
                 idle timeout"
                .to_owned(),
            Feature::Drain if hitch => "hitch documents no graceful stop (hitch(8) names no \
                 stop signal; SIGHUP reloads): stopped with SIGTERM"
                .to_owned(),
            Feature::ReloadLog => format!(
                "the reload count is read from the proxy's log; {name}'s reloads are judged by \
                 the certificate it serves after each"
            ),
            _ => return None,
        };
        Some(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::Origin;

    fn peer(config: ConfigName, version: &str) -> Terminator {
        Terminator::Peer(Peer {
            config,
            program: "/usr/sbin/x".into(),
            version: version.into(),
            origin: Origin::System,
            tls_library: "OpenSSL 3.0.19".into(),
        })
    }

    #[test]
    fn the_proxy_lacks_nothing_and_peers_say_why() {
        let proxy = Terminator::Proxy {
            tls_library: "rustls".into(),
        };
        for f in [
            Feature::Metrics,
            Feature::CloseBeyondMaxConnections,
            Feature::FdLimit,
            Feature::HandshakeTimeout,
            Feature::SecondUpstream,
            Feature::Drain,
            Feature::ReloadLog,
        ] {
            assert_eq!(proxy.lacks(f), None, "{f:?}");
        }
        let hitch = peer(ConfigName::Hitch, "hitch 1.8.0");
        assert!(hitch
            .lacks(Feature::SecondUpstream)
            .is_some_and(|w| w.contains("single backend")));
        assert!(hitch.lacks(Feature::Drain).is_some());
        assert!(hitch.lacks(Feature::CloseBeyondMaxConnections).is_some());
        assert_eq!(hitch.lacks(Feature::FdLimit), None);
        assert_eq!(hitch.lacks(Feature::HandshakeTimeout), None);
        let nginx = peer(ConfigName::Nginx, "nginx version: nginx/1.26.3");
        assert_eq!(nginx.lacks(Feature::CloseBeyondMaxConnections), None);
        assert_eq!(nginx.lacks(Feature::Drain), None);
        assert!(nginx.lacks(Feature::Metrics).is_some());
        let new = peer(ConfigName::Haproxy, "HAProxy version 3.0.11-1 2025/08/01");
        let old = peer(ConfigName::Haproxy, "HAProxy version 2.6.12-1 2025/07/01");
        assert_eq!(new.lacks(Feature::HandshakeTimeout), None);
        assert!(old
            .lacks(Feature::HandshakeTimeout)
            .is_some_and(|w| w.contains("2.6.12")));
        assert!(new.lacks(Feature::FdLimit).is_some());
        assert!(new.lacks(Feature::CloseBeyondMaxConnections).is_some());
    }

    #[test]
    fn signals_follow_each_peers_documented_reload_and_stop() {
        let proxy = Terminator::Proxy {
            tls_library: String::new(),
        };
        assert_eq!(proxy.reload_signal(), Signal::SIGHUP);
        assert_eq!(proxy.stop_signal().0, Signal::SIGTERM);
        let haproxy = peer(ConfigName::HaproxyAwslc, "HAProxy version 3.0.11");
        assert_eq!(haproxy.reload_signal(), Signal::SIGUSR2);
        assert_eq!(haproxy.stop_signal().0, Signal::SIGUSR1);
        assert_eq!(peer(ConfigName::Nginx, "").stop_signal().0, Signal::SIGQUIT);
        assert_eq!(peer(ConfigName::Hitch, "").reload_signal(), Signal::SIGHUP);
        assert_eq!(haproxy.name(), "haproxy-awslc");
        assert!(haproxy
            .equivalents()
            .contains(&("timeouts.handshake", "timeout client-hs")));
        assert_eq!(
            proxy.equivalents()[3],
            ("max_connections", "max_connections")
        );
        let old = peer(ConfigName::Haproxy, "HAProxy version 2.6.12");
        assert_eq!(old.equivalents()[0].1, "none (timeout client bounds it)");
    }
}
