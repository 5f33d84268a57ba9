//! The figures `compare` and thresholds speak of: one name each, the CSV column it is read
//! from, which way is better, and how it is shown.

use serde::Serialize;

use crate::summary::LatencyUnit;

/// A figure of a results.csv, handshakes.csv or idle.csv row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Requests (or, in handshakes.csv, handshakes) per second.
    Rps,
    P50,
    P90,
    P99,
    P999,
    Mean,
    Max,
    /// Request errors of the measured period.
    Errors,
    /// Server CPU-µs per request (every server process of the config, summed).
    CpuPerReq,
}

impl Metric {
    /// Every metric, in the order the threshold grammar lists them.
    pub const ALL: [Metric; 9] = [
        Metric::Rps,
        Metric::P50,
        Metric::P90,
        Metric::P99,
        Metric::P999,
        Metric::Mean,
        Metric::Max,
        Metric::Errors,
        Metric::CpuPerReq,
    ];

    /// What `compare` compares for a sweep or handshakes key.
    pub const COMPARED: [Metric; 4] = [Metric::Rps, Metric::P50, Metric::P99, Metric::CpuPerReq];

    /// What `compare` compares for an idle key: the handshake and first request of each
    /// connection (idle.csv has no rate and no CPU figure).
    pub const COMPARED_IDLE: [Metric; 2] = [Metric::P50, Metric::P99];

    /// The name in threshold expressions and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Rps => "rps",
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P99 => "p99",
            Metric::P999 => "p999",
            Metric::Mean => "mean",
            Metric::Max => "max",
            Metric::Errors => "errors",
            Metric::CpuPerReq => "cpu_per_req",
        }
    }

    /// The CSV column the figure is read from.
    pub fn column(self) -> &'static str {
        match self {
            Metric::CpuPerReq => "server_cpu_us_per_req",
            other => other.name(),
        }
    }

    /// req/s is better higher; latencies, errors and CPU per request are better lower.
    pub fn higher_is_better(self) -> bool {
        self == Metric::Rps
    }

    /// A time in µs (latencies and CPU per request), which thresholds may write in us, µs,
    /// ms or s.
    pub fn is_time(self) -> bool {
        !matches!(self, Metric::Rps | Metric::Errors)
    }

    /// The metric in tables: `req/s`, `p99` (its values carry their unit), `CPU µs/req`.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Rps => "req/s",
            Metric::CpuPerReq => "CPU µs/req",
            other => other.name(),
        }
    }

    /// A value of this metric for a table: whole numbers from 100 up, else three
    /// significant digits; latencies past 10,000 µs in ms, as the summary shows them.
    pub fn show(self, value: f64) -> String {
        match self {
            Metric::Rps | Metric::Errors | Metric::CpuPerReq => number(value),
            _ => match LatencyUnit::for_values([value]) {
                LatencyUnit::Us => format!("{} µs", number(value)),
                LatencyUnit::Ms => format!("{} ms", number(value / 1000.0)),
            },
        }
    }
}

/// `45210`, `61.4`, `3.21`, `0.012`.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_columns_and_shown_values() {
        assert_eq!(Metric::CpuPerReq.column(), "server_cpu_us_per_req");
        assert_eq!(Metric::P999.column(), "p999");
        for metric in Metric::ALL {
            assert!(
                crate::output::COLUMNS.contains(&metric.column()),
                "{metric:?}"
            );
        }
        assert_eq!(Metric::Rps.show(45_210.4), "45210");
        assert_eq!(Metric::P50.show(61.44), "61.4 µs");
        assert_eq!(Metric::P99.show(25_300.0), "25.3 ms");
        assert_eq!(Metric::CpuPerReq.show(3.214), "3.21");
    }
}
