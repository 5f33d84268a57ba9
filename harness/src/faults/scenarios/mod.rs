//! The nine scenarios, each a function from the suite to its row: start a stack, put the
//! good clients on it, do the fault, measure, and check the acceptance criteria (said in
//! each function's doc comment, and in the note when one fails). One file per family of
//! faults; what they share is in [`checks`].

mod checks;
mod hostile_clients;
mod signals;
mod soak;
mod upstream;

use super::Scenario;

/// Every scenario, in order.
pub(crate) const ALL: [Scenario; 9] = [
    Scenario {
        number: 1,
        name: "slowloris",
        run: hostile_clients::slowloris,
    },
    Scenario {
        number: 2,
        name: "garbage",
        run: hostile_clients::garbage,
    },
    Scenario {
        number: 3,
        name: "connection-flood",
        run: hostile_clients::flood,
    },
    Scenario {
        number: 4,
        name: "backend-restart",
        run: upstream::backend_restart,
    },
    Scenario {
        number: 5,
        name: "bad-backend",
        run: upstream::bad_backend,
    },
    Scenario {
        number: 6,
        name: "cert-reload",
        run: signals::cert_reload,
    },
    Scenario {
        number: 7,
        name: "sigterm",
        run: signals::sigterm,
    },
    Scenario {
        number: 8,
        name: "client-resets",
        run: hostile_clients::client_resets,
    },
    Scenario {
        number: 9,
        name: "soak",
        run: soak::soak,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_numbered_in_order() {
        for (i, s) in ALL.iter().enumerate() {
            assert_eq!(s.number as usize, i + 1);
        }
    }
}
