//! The nine scenarios, each a function from the suite to its row: start a stack, put the
//! good clients on it, do the fault, measure, and check the acceptance criteria (said in
//! each function's doc comment, and in the note when one fails). One file per family of
//! faults; what they share is in [`checks`]. A scenario runs against every terminator it
//! applies to; a criterion a peer cannot be held to is `n/a` in its note (see
//! [`Feature`]).

mod checks;
mod hostile_clients;
mod signals;
mod soak;
mod upstream;

use super::terminator::{Feature, Terminator};
use super::Scenario;

/// Every terminator can be put through the scenario.
fn always(_: &Terminator) -> Option<String> {
    None
}

/// Scenario 5 needs a second listener to a second upstream, and an idle timeout.
fn with_second_upstream(t: &Terminator) -> Option<String> {
    t.lacks(Feature::SecondUpstream)
}

/// Every scenario, in order.
pub(crate) const ALL: [Scenario; 9] = [
    Scenario {
        number: 1,
        name: "slowloris",
        run: hostile_clients::slowloris,
        applies: always,
    },
    Scenario {
        number: 2,
        name: "garbage",
        run: hostile_clients::garbage,
        applies: always,
    },
    Scenario {
        number: 3,
        name: "connection-flood",
        run: hostile_clients::flood,
        applies: always,
    },
    Scenario {
        number: 4,
        name: "backend-restart",
        run: upstream::backend_restart,
        applies: always,
    },
    Scenario {
        number: 5,
        name: "bad-backend",
        run: upstream::bad_backend,
        applies: with_second_upstream,
    },
    Scenario {
        number: 6,
        name: "cert-reload",
        run: signals::cert_reload,
        applies: always,
    },
    Scenario {
        number: 7,
        name: "sigterm",
        run: signals::sigterm,
        applies: always,
    },
    Scenario {
        number: 8,
        name: "client-resets",
        run: hostile_clients::client_resets,
        applies: always,
    },
    Scenario {
        number: 9,
        name: "soak",
        run: soak::soak,
        applies: always,
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ConfigName;

    #[test]
    fn bad_backend_is_n_a_for_hitch_alone() {
        let peer = |config| {
            Terminator::Peer(crate::peers::Peer {
                config,
                program: "/usr/sbin/x".into(),
                version: "HAProxy version 3.0.11".into(),
                origin: crate::peers::Origin::System,
                tls_library: String::new(),
            })
        };
        let proxy = Terminator::Proxy {
            tls_library: String::new(),
        };
        for s in &ALL {
            assert_eq!((s.applies)(&proxy), None, "{}", s.name);
            assert_eq!((s.applies)(&peer(ConfigName::Nginx)), None, "{}", s.name);
            assert_eq!((s.applies)(&peer(ConfigName::Haproxy)), None, "{}", s.name);
            let hitch = (s.applies)(&peer(ConfigName::Hitch));
            assert_eq!(hitch.is_some(), s.name == "bad-backend", "{}", s.name);
        }
    }

    #[test]
    fn scenarios_are_numbered_in_order() {
        for (i, s) in ALL.iter().enumerate() {
            assert_eq!(s.number as usize, i + 1);
        }
    }
}
