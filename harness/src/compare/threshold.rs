//! Thresholds on one run, in the style of k6's: `p99<5ms`, `proxy-rustls:rps>20000`,
//! `proxy-rustls@1k:cpu_per_req<=40`. The grammar is
//! `[CONFIG[@SIZE]:]METRIC OP VALUE[UNIT]`, OP one of `< <= > >=`; a threshold holds for the
//! median over iterations of each sweep key (config, TLS backend, size) it matches, and every
//! key it matches is checked and listed. A threshold that matches no key fails: a misspelt
//! config must not pass silently.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::load::{Key, Run};
use super::metric::Metric;
use crate::output::Status;
use crate::plan::Scenario;
use crate::summary::median;

/// One parsed `--threshold` expression.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// As written.
    pub expression: String,
    /// A config name (`proxy-rustls`) or a variant's label (`proxy-rustls-aws-lc`); `None`:
    /// every config.
    pub config: Option<String>,
    /// A body size in bytes; `None`: every size.
    pub size: Option<u64>,
    pub metric: Metric,
    pub op: Op,
    /// The limit in the metric's own unit (µs for times).
    pub limit: f64,
}

/// The comparison a threshold asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
}

impl Op {
    fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::Below => value < limit,
            Op::AtMost => value <= limit,
            Op::Above => value > limit,
            Op::AtLeast => value >= limit,
        }
    }
}

/// One line of the pass/fail list: a threshold and one key it matched (or none).
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdCheck {
    pub expression: String,
    /// The sweep key checked; `None` when the threshold matched none.
    pub key: Option<Key>,
    /// The median the limit was held against, in the metric's unit.
    pub value: Option<f64>,
    pub passed: bool,
    /// The value with its unit, or why there was none.
    pub detail: String,
}

/// Checks every threshold against `run`'s sweep: a line per matching key, or one failing
/// line for a threshold that matches no key. Rows with status ok or warning count (the
/// summary table's rows: a warning row's request errors are what `errors<1` is for);
/// error rows have no figures.
pub fn check(thresholds: &[Threshold], run: &Run) -> Vec<ThresholdCheck> {
    let mut out = Vec::new();
    for t in thresholds {
        let before = out.len();
        for key in run.keys.iter().filter(|k| t.matches(k)) {
            let group = &run.groups[key];
            let values = group.values(t.metric, |s| s != Status::Error);
            let line = |value: Option<f64>, passed, detail| ThresholdCheck {
                expression: t.expression.clone(),
                key: Some(key.clone()),
                value,
                passed,
                detail,
            };
            out.push(match median(values) {
                Some(v) => line(
                    Some(v),
                    t.op.holds(v, t.limit),
                    format!("{} {}", t.metric.name(), t.metric.show(v)),
                ),
                None if group.count(Status::Error) == group.rows.len() => line(
                    None,
                    false,
                    format!("no measured row ({} failed)", group.rows.len()),
                ),
                None => line(None, false, format!("no {} figure", t.metric.column())),
            });
        }
        if out.len() == before {
            out.push(ThresholdCheck {
                expression: t.expression.clone(),
                key: None,
                value: None,
                passed: false,
                detail: "matches no row of the sweep (results.csv)".to_owned(),
            });
        }
    }
    out
}

impl Threshold {
    fn matches(&self, key: &Key) -> bool {
        let config = self
            .config
            .as_deref()
            .is_none_or(|c| c == key.config || c == variant_label(&key.config, &key.tls_backend));
        key.scenario == Scenario::Sweep.name()
            && config
            && self.size.is_none_or(|s| key.size == Some(s))
    }
}

/// The harness's label of a variant (`plan::Variant::label`) from its CSV cells: a rustls
/// config names its flavour (`proxy-rustls-aws-lc`); others are their config.
fn variant_label(config: &str, backend: &str) -> String {
    if config.contains("rustls") && backend.starts_with("rustls") {
        config.replace("rustls", backend)
    } else {
        config.to_owned()
    }
}

/// Why an expression is not a threshold: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub expression: String,
    /// 1-based, in characters.
    pub position: usize,
    pub expected: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "threshold {:?}: at character {}: expected {} (the form is {GRAMMAR}, e.g. \
             p99<5ms or proxy-rustls@1k:rps>=20000)",
            self.expression, self.position, self.expected
        )
    }
}

impl std::error::Error for ParseError {}

impl FromStr for Threshold {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Threshold, ParseError> {
        Parser {
            text: s,
            chars: s.chars().collect(),
            pos: 0,
        }
        .threshold()
    }
}

/// A cursor over the expression's characters.
struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl Parser<'_> {
    fn threshold(mut self) -> Result<Threshold, ParseError> {
        let (config, size) = match self.chars.iter().position(|&c| c == ':') {
            Some(colon) => self.scope(colon)?,
            None => (None, None),
        };
        self.skip_spaces();
        let metric = self.metric()?;
        self.skip_spaces();
        let op = self.op()?;
        self.skip_spaces();
        let value = self.number()?;
        self.skip_spaces();
        let scale = self.unit(metric)?;
        Ok(Threshold {
            expression: self.text.to_owned(),
            config,
            size,
            metric,
            op,
            limit: value * scale,
        })
    }

    /// `CONFIG[@SIZE]` up to the colon at `colon`, which it consumes.
    fn scope(&mut self, colon: usize) -> Result<(Option<String>, Option<u64>), ParseError> {
        self.skip_spaces();
        let at = self.chars[..colon].iter().position(|&c| c == '@');
        let config_end = at.unwrap_or(colon);
        let config = self.take_while(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        self.skip_spaces();
        if config.is_empty() || self.pos != config_end {
            return Err(self.error("a config name (letters, digits and '-') before ':' or '@'"));
        }
        let mut size = None;
        if let Some(at) = at {
            self.pos = at + 1;
            let text: String = self.chars[at + 1..colon].iter().collect();
            size = Some(
                parse_size(text.trim())
                    .ok_or_else(|| self.error("a body size in bytes (10, 1000, 1k, 1KB, 1KiB)"))?,
            );
        }
        self.pos = colon + 1;
        Ok((Some(config), size))
    }

    fn metric(&mut self) -> Result<Metric, ParseError> {
        let start = self.pos;
        let name = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                self.pos = start;
                let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                self.error(&format!("a metric: {}", names.join(", ")))
            })
    }

    fn op(&mut self) -> Result<Op, ParseError> {
        let rest: String = self.chars[self.pos..].iter().take(2).collect();
        let (op, len) = if rest.starts_with("<=") {
            (Op::AtMost, 2)
        } else if rest.starts_with(">=") {
            (Op::AtLeast, 2)
        } else if rest.starts_with('<') {
            (Op::Below, 1)
        } else if rest.starts_with('>') {
            (Op::Above, 1)
        } else {
            return Err(self.error("one of < <= > >="));
        };
        self.pos += len;
        Ok(op)
    }

    fn number(&mut self) -> Result<f64, ParseError> {
        let start = self.pos;
        let text = self.take_while(|c| c.is_ascii_digit() || c == '.' || c == '_');
        text.replace('_', "")
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                self.pos = start;
                self.error("a number")
            })
    }

    /// The unit's factor to the metric's own unit (µs for times); the unit runs to the end.
    fn unit(&mut self, metric: Metric) -> Result<f64, ParseError> {
        let unit: String = self.chars[self.pos..].iter().collect();
        let unit = unit.trim_end();
        if !metric.is_time() {
            return match unit {
                "" => Ok(1.0),
                _ => Err(self.error(&format!("the end: {} takes no unit", metric.name()))),
            };
        }
        match unit {
            "" | "us" | "µs" => Ok(1.0),
            "ms" => Ok(1_000.0),
            "s" => Ok(1_000_000.0),
            _ => Err(self.error("a unit: us, µs, ms or s (none: µs)")),
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.chars.get(self.pos).is_some_and(|&c| keep(c)) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn skip_spaces(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn error(&self, expected: &str) -> ParseError {
        ParseError {
            expression: self.text.to_owned(),
            position: self.pos + 1,
            expected: expected.to_owned(),
        }
    }
}

/// A body size: bytes, or with a decimal suffix as the plan's sizes are decimal (10, 1000,
/// 10000): `1k`/`1KB` = 1000, `1M`/`1MB` = 1000000; `1KiB` = 1024, `1MiB` = 1048576.
pub fn parse_size(text: &str) -> Option<u64> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    let factor: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

/// The grammar, for messages and `--help`.
pub const GRAMMAR: &str = "[CONFIG[@SIZE]:]METRIC OP VALUE[UNIT]";

#[cfg(test)]
mod tests;
