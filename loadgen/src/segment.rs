//! `--segment I/N`: this process's share of a load that N loadgen processes (on one machine
//! or several) offer together, like k6's execution segments. Segments are numbered from 1,
//! as k6 says "segment 1 of 4".
//!
//! The split is exact: the connections of `-c C` go `C / N` to every segment and one more to
//! each of the first `C % N` segments, so the segments' connections add up to C; an
//! open-loop `--rate R` goes `R / N` to every segment. Each segment's JSON report carries its
//! histogram, so `loadgen merge` adds the N reports into the one the whole load would have
//! given.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Segment `index` of `count` (1 <= index <= count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    index: u32,
    count: u32,
}

impl Segment {
    /// Segment `index` of `count`, or why that is no segment.
    pub fn new(index: u32, count: u32) -> Result<Segment, SegmentError> {
        if count == 0 {
            return Err(SegmentError::NoSegments);
        }
        if index == 0 || index > count {
            return Err(SegmentError::OutOfRange { index, count });
        }
        Ok(Segment { index, count })
    }

    /// 1-based.
    pub fn index(self) -> u32 {
        self.index
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// This segment's connections of `total`: `total / N`, one more for each of the first
    /// `total % N` segments. `None` when that is zero (fewer connections than segments).
    pub fn connections(self, total: NonZeroUsize) -> Option<NonZeroUsize> {
        let (n, i) = (self.count as usize, self.index as usize);
        let share = total.get() / n + usize::from(i <= total.get() % n);
        NonZeroUsize::new(share)
    }

    /// This segment's requests per second of `total`.
    pub fn rate(self, total: f64) -> f64 {
        total / f64::from(self.count)
    }
}

impl fmt::Display for Segment {
    /// `I/N`, as the flag takes it and the report writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Segment {
    type Err = SegmentError;

    /// `I/N`, both decimal integers.
    fn from_str(s: &str) -> Result<Segment, SegmentError> {
        let malformed = || SegmentError::Malformed(s.to_owned());
        let (index, count) = s.split_once('/').ok_or_else(malformed)?;
        let number = |t: &str| {
            // `u32::from_str` takes a leading `+`; a segment is digits only.
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            t.parse::<u32>().map_err(|_| malformed())
        };
        Segment::new(number(index)?, number(count)?)
    }
}

/// In a report: the string `I/N`.
impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Segment, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a `--segment` value (or a report's `segment`) is not a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("{0:?} is not I/N, such as 1/4 (segment I of N, numbered from 1)")]
    Malformed(String),
    #[error("N must be at least 1 (I/N: segment I of N)")]
    NoSegments,
    #[error("{index}/{count}: I must be from 1 to {count} (segments are numbered from 1, like k6's \"1 of N\")")]
    OutOfRange { index: u32, count: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn parses_i_of_n_and_prints_it_back() {
        let s: Segment = "2/4".parse().unwrap();
        assert_eq!((s.index(), s.count()), (2, 4));
        assert_eq!(s.to_string(), "2/4");
        assert_eq!("1/1".parse::<Segment>().unwrap().to_string(), "1/1");
    }

    #[test]
    fn refuses_what_is_no_segment() {
        for bad in [
            "", "2", "1/", "/2", "a/2", "1/b", "+1/2", "1/-2", "1/2/3", " 1/2", "1.0/2",
        ] {
            assert_eq!(
                bad.parse::<Segment>(),
                Err(SegmentError::Malformed(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            "0/4".parse::<Segment>(),
            Err(SegmentError::OutOfRange { index: 0, count: 4 })
        );
        assert_eq!(
            "5/4".parse::<Segment>(),
            Err(SegmentError::OutOfRange { index: 5, count: 4 })
        );
        assert_eq!("0/0".parse::<Segment>(), Err(SegmentError::NoSegments));
        assert_eq!("1/0".parse::<Segment>(), Err(SegmentError::NoSegments));
        let why = "0/4".parse::<Segment>().unwrap_err().to_string();
        assert!(why.contains("from 1 to 4"), "{why}");
    }

    #[test]
    fn connections_add_up_to_the_total_the_first_segments_taking_the_rest() {
        for total in 1..=40usize {
            for count in 1..=9u32 {
                let shares: Vec<usize> = (1..=count)
                    .map(|i| {
                        let s = Segment::new(i, count).unwrap();
                        s.connections(nz(total)).map_or(0, NonZeroUsize::get)
                    })
                    .collect();
                assert_eq!(shares.iter().sum::<usize>(), total, "{total} over {count}");
                // Never more than one apart, the larger ones first.
                assert!(shares.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1));
            }
        }
        let third = |i| {
            Segment::new(i, 3)
                .unwrap()
                .connections(nz(10))
                .unwrap()
                .get()
        };
        assert_eq!([third(1), third(2), third(3)], [4, 3, 3]);
        assert_eq!(Segment::new(3, 3).unwrap().connections(nz(2)), None);
    }

    #[test]
    fn a_report_writes_it_as_text() {
        let s = Segment::new(3, 8).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"3/8\"");
        assert_eq!(serde_json::from_str::<Segment>("\"3/8\"").unwrap(), s);
        let err = serde_json::from_str::<Segment>("\"9/8\"").unwrap_err();
        assert!(err.to_string().contains("9/8"), "{err}");
    }

    #[test]
    fn the_rate_is_split_evenly() {
        let s = Segment::new(1, 4).unwrap();
        assert_eq!(s.rate(1000.0), 250.0);
        let thirds: f64 = (1..=3)
            .map(|i| Segment::new(i, 3).unwrap().rate(1000.0))
            .sum();
        assert!((thirds - 1000.0).abs() < 1e-9, "{thirds}");
    }
}
