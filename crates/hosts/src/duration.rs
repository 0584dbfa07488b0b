//! `dial_timeout`: how long containerd waits for a TCP connection to a mirror.
//!
//! Written into `hosts.toml` as a Go duration string (`"200ms"`), because
//! containerd parses it with Go's `time.ParseDuration`. The key is honoured
//! by containerd 2.1 and later; containerd 1.6 and 1.7 ignore unknown keys,
//! so writing it is harmless there (Spegel writes it unconditionally too).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A dial timeout in Go duration syntax; zero means "write no `dial_timeout`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialTimeout {
    text: String,
    duration: Duration,
}

/// Why a duration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (use Go syntax such as 200ms, 1s or 1m30s)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl DialTimeout {
    /// Spegel's value: a mirror on this node answers a dial in far less.
    pub fn spegel_default() -> Self {
        Self { text: "200ms".to_owned(), duration: Duration::from_millis(200) }
    }

    /// The parsed length.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// True when no `dial_timeout` should be written.
    pub fn is_zero(&self) -> bool {
        self.duration.is_zero()
    }

    /// The text as given, which containerd parses the same way.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Default for DialTimeout {
    fn default() -> Self {
        Self::spegel_default()
    }
}

impl FromStr for DialTimeout {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        let err = |reason| DurationError { input: input.to_owned(), reason };
        let nanos = parse_go_duration(text).map_err(err)?;
        let duration = Duration::from_nanos(u64::try_from(nanos).map_err(|_| err("too large"))?);
        Ok(Self { text: text.to_owned(), duration })
    }
}

impl fmt::Display for DialTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Nanoseconds in `text`, following Go's `time.ParseDuration`, without a sign.
fn parse_go_duration(text: &str) -> Result<u128, &'static str> {
    if text.is_empty() {
        return Err("empty");
    }
    if text.starts_with('-') {
        return Err("must not be negative");
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Ok(0);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(after) => {
                let n = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err("expected a number");
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("missing unit"),
            _ => return Err("unknown unit"),
        };
        let whole: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| "too large")? };
        let mut part = whole.checked_mul(scale).ok_or("too large")?;
        let mut div = scale;
        for digit in frac.bytes().take(18) {
            div /= 10;
            part += u128::from(digit - b'0') * div;
        }
        total = total.checked_add(part).ok_or("too large")?;
        rest = after;
    }
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u128 {
        s.parse::<DialTimeout>().unwrap().duration().as_millis()
    }

    #[test]
    fn go_syntax() {
        assert_eq!(ms("200ms"), 200);
        assert_eq!(ms("1.5s"), 1500);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms(".5s"), 500);
        assert_eq!(ms("1h"), 3_600_000);
        assert!("0".parse::<DialTimeout>().unwrap().is_zero());
        assert_eq!("200ms".parse::<DialTimeout>().unwrap(), DialTimeout::default());
    }

    #[test]
    fn rejects() {
        for bad in ["", "200", "-1s", "1x", "ms", "1.s.", "abc", "99999999999999999999h"] {
            let err = bad.parse::<DialTimeout>().unwrap_err();
            assert!(!err.to_string().contains('\n'), "{bad}");
        }
    }
}
