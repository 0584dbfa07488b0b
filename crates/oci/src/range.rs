//! HTTP byte ranges: one `Range` header value against a known size, and
//! `Content-Range` values both ways.
//!
//! Only a single range is served. RFC 9110 lets a server ignore a `Range`
//! header it does not want to honour, so the recommended handling is:
//! [`RangeError::Unsatisfiable`] → `416` with `Content-Range: bytes */size`;
//! [`RangeError::Multiple`], [`RangeError::Malformed`] and
//! [`RangeError::Unit`] → ignore the header and send the whole body with
//! `200`. containerd only ever asks for one range (to resume a download), so
//! multi-range requests do not come from the clients we serve.

use std::fmt;

/// An inclusive byte range `start..=end_inclusive`, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// The first byte.
    pub start: u64,
    /// The last byte, inclusive.
    pub end_inclusive: u64,
}

/// Why a `Range` or `Content-Range` value cannot be served or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// A well-formed range that selects no byte of the content (answer 416).
    #[error("range not satisfiable for {size} bytes")]
    Unsatisfiable { size: u64 },
    /// More than one range was asked for; we serve only one.
    #[error("multiple ranges are not supported")]
    Multiple,
    /// A unit other than `bytes`.
    #[error("unsupported range unit {unit:?}")]
    Unit { unit: String },
    /// Not the grammar of a byte range.
    #[error("malformed range {value:?}")]
    Malformed { value: String },
}

impl ByteRange {
    /// A range of `start..=end_inclusive`, or `None` when `end_inclusive < start`.
    pub fn new(start: u64, end_inclusive: u64) -> Option<Self> {
        (start <= end_inclusive).then_some(Self { start, end_inclusive })
    }

    /// Parses one `Range` header value for content of `size` bytes.
    ///
    /// Accepts `bytes=a-b`, `bytes=a-` and `bytes=-n`; an end past the content
    /// is clamped to its last byte.
    pub fn parse(value: &str, size: u64) -> Result<Self, RangeError> {
        let malformed = || RangeError::Malformed { value: value.to_owned() };
        let (unit, set) = value.trim().split_once('=').ok_or_else(malformed)?;
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return Err(RangeError::Unit { unit: unit.trim().to_owned() });
        }
        let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
        let spec = specs.next().ok_or_else(malformed)?;
        if specs.next().is_some() {
            return Err(RangeError::Multiple);
        }
        let (first, last) = spec.split_once('-').ok_or_else(malformed)?;
        let unsatisfiable = RangeError::Unsatisfiable { size };
        match (first, last) {
            ("", suffix) => {
                let n = number(suffix).ok_or_else(malformed)?;
                if n == Some(0) || size == 0 {
                    return Err(unsatisfiable);
                }
                let start = size.saturating_sub(n.unwrap_or(u64::MAX));
                Ok(Self { start, end_inclusive: size - 1 })
            }
            (first, last) => {
                // An overflowing first byte is simply past any content.
                let start = number(first).ok_or_else(malformed)?.ok_or(unsatisfiable.clone())?;
                let end = match last {
                    "" => u64::MAX,
                    last => number(last).ok_or_else(malformed)?.unwrap_or(u64::MAX),
                };
                if end < start {
                    return Err(malformed());
                }
                if start >= size {
                    return Err(unsatisfiable);
                }
                Ok(Self { start, end_inclusive: end.min(size - 1) })
            }
        }
    }

    /// How many bytes the range holds.
    pub fn len(&self) -> u64 {
        self.end_inclusive - self.start + 1
    }

    /// Always false: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Range` header value asking for this range, e.g. `bytes=0-99`.
    pub fn header_value(&self) -> String {
        format!("bytes={}-{}", self.start, self.end_inclusive)
    }

    /// The `Content-Range` header value for this range of `size` bytes, e.g. `bytes 0-99/1000`.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.start, self.end_inclusive)
    }

    /// Parses a `Content-Range` value `bytes a-b/size` (or `bytes a-b/*`),
    /// as a peer or upstream sends with `206`. The size is `None` when unknown.
    pub fn parse_content_range(value: &str) -> Result<(Self, Option<u64>), RangeError> {
        let malformed = || RangeError::Malformed { value: value.to_owned() };
        let (unit, rest) = value.trim().split_once(' ').ok_or_else(malformed)?;
        if !unit.eq_ignore_ascii_case("bytes") {
            return Err(RangeError::Unit { unit: unit.to_owned() });
        }
        let (range, size) = rest.trim_start().split_once('/').ok_or_else(malformed)?;
        let (first, last) = range.split_once('-').ok_or_else(malformed)?;
        let exact = |s: &str| number(s).flatten().ok_or_else(malformed);
        let range = Self::new(exact(first)?, exact(last)?).ok_or_else(malformed)?;
        let size = match size {
            "*" => None,
            size => {
                let size = exact(size)?;
                if range.end_inclusive >= size {
                    return Err(malformed());
                }
                Some(size)
            }
        };
        Ok((range, size))
    }
}

/// The `Content-Range` value sent with a `416`: `bytes */size`.
pub fn unsatisfiable_content_range(size: u64) -> String {
    format!("bytes */{size}")
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end_inclusive)
    }
}

/// ASCII digits as a number: `None` if not digits, `Some(None)` if too big for a u64.
fn number(s: &str) -> Option<Option<u64>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange::new(start, end).unwrap()
    }

    #[test]
    fn the_three_forms() {
        assert_eq!(ByteRange::parse("bytes=0-99", 1000), Ok(r(0, 99)));
        assert_eq!(ByteRange::parse("bytes=500-", 1000), Ok(r(500, 999)));
        assert_eq!(ByteRange::parse("bytes=-100", 1000), Ok(r(900, 999)));
        assert_eq!(ByteRange::parse("bytes=999-999", 1000), Ok(r(999, 999)));
        assert_eq!(r(0, 99).len(), 100);
    }

    #[test]
    fn clamps_to_the_content() {
        assert_eq!(ByteRange::parse("bytes=10-5000", 1000), Ok(r(10, 999)));
        assert_eq!(ByteRange::parse("bytes=-5000", 1000), Ok(r(0, 999)));
        assert_eq!(ByteRange::parse("bytes=0-99999999999999999999999", 10), Ok(r(0, 9)));
        assert_eq!(ByteRange::parse("bytes=-99999999999999999999999", 10), Ok(r(0, 9)));
    }

    #[test]
    fn lenient_about_spacing_and_case() {
        assert_eq!(ByteRange::parse(" Bytes=0-1 ", 10), Ok(r(0, 1)));
        assert_eq!(ByteRange::parse("bytes= 0-1,", 10), Ok(r(0, 1)));
    }

    #[test]
    fn unsatisfiable() {
        let u = |size| Err(RangeError::Unsatisfiable { size });
        assert_eq!(ByteRange::parse("bytes=1000-", 1000), u(1000));
        assert_eq!(ByteRange::parse("bytes=1000-2000", 1000), u(1000));
        assert_eq!(ByteRange::parse("bytes=-0", 1000), u(1000));
        assert_eq!(ByteRange::parse("bytes=0-", 0), u(0));
        assert_eq!(ByteRange::parse("bytes=-5", 0), u(0));
        assert_eq!(ByteRange::parse("bytes=99999999999999999999999-", 10), u(10));
        assert_eq!(unsatisfiable_content_range(1000), "bytes */1000");
    }

    #[test]
    fn refuses_multiple_ranges() {
        assert_eq!(ByteRange::parse("bytes=0-1,5-6", 10), Err(RangeError::Multiple));
        assert_eq!(ByteRange::parse("bytes=0-1, -3", 10), Err(RangeError::Multiple));
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=1-0",
            "bytes=+1-2",
            "bytes=1--2",
            "bytes=1-2-3",
            "bytes=0x1-2",
            "bytes=1 -2",
            "bytes=-1-",
            "bytes=,",
            "bytes=1",
        ] {
            assert!(matches!(ByteRange::parse(bad, 10), Err(RangeError::Malformed { .. })), "{bad:?} accepted");
        }
        assert_eq!(ByteRange::parse("items=0-1", 10), Err(RangeError::Unit { unit: "items".into() }));
    }

    #[test]
    fn renders_headers() {
        assert_eq!(r(0, 99).header_value(), "bytes=0-99");
        assert_eq!(r(0, 99).content_range(1000), "bytes 0-99/1000");
        assert_eq!(r(0, 99).to_string(), "0-99");
        assert_eq!(ByteRange::new(5, 4), None);
    }

    #[test]
    fn parses_content_range() {
        assert_eq!(ByteRange::parse_content_range("bytes 0-99/1000"), Ok((r(0, 99), Some(1000))));
        assert_eq!(ByteRange::parse_content_range("bytes 5-9/*"), Ok((r(5, 9), None)));
        for bad in ["bytes 0-99/50", "bytes 9-5/100", "bytes */100", "bytes 0-/10", "0-1/2", "bytes 0-1", "items 0-1/2"]
        {
            assert!(ByteRange::parse_content_range(bad).is_err(), "{bad:?} accepted");
        }
    }
}
