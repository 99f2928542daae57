//! Human durations (`90s`, `15m`, `12h`, `30d`, `2w`) and rate limits (`100/min`).

use std::fmt;
use std::time::Duration;

/// Why a duration or rate was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not `<number><unit>`.
    #[error("{0:?} is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)")]
    Syntax(String),
    /// Zero or beyond 100 years.
    #[error("{0:?} is out of range (between 1s and 100 years)")]
    Range(String),
    /// Not `<count>/<unit>`.
    #[error("{0:?} is not a rate limit: use <count>/<s|sec|min|h|hour|d|day> (for example 100/min)")]
    Rate(String),
}

const MAX_SECONDS: u64 = 100 * 366 * 86_400;

/// Parses `<whole number><unit>` with unit `s`, `m`, `h`, `d` or `w`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(s.to_owned());
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(syntax)?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.len() > 12 {
        return Err(syntax());
    }
    let n: u64 = num.parse().map_err(|_| syntax())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(syntax()),
    };
    let secs = n.checked_mul(mult).ok_or_else(|| DurationError::Range(s.to_owned()))?;
    if secs == 0 || secs > MAX_SECONDS {
        return Err(DurationError::Range(s.to_owned()));
    }
    Ok(Duration::from_secs(secs))
}

/// Formats whole seconds compactly with the largest exact unit (`30d`, `90m`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= size && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

/// A per-token request budget: `count` requests per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

impl RateLimit {
    /// Parses `100/min`, `10/s`, `5000/h`, `100000/day`.
    pub fn parse(s: &str) -> Result<RateLimit, DurationError> {
        let bad = || DurationError::Rate(s.to_owned());
        let (count, unit) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        let per = match unit {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(bad()),
        };
        Ok(RateLimit { count, per: Duration::from_secs(per) })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            86_400 => "day",
            other => return write!(f, "{}/{}s", self.count, other),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn durations() {
        let got: String =
            ["90s", "15m", "12h", "30d", "2w", "0s", "10", "d", "1.5h", "-1d", "9999999999999d", "36600d", "1y", " 1d"]
                .iter()
                .map(|s| match parse_duration(s) {
                    Ok(d) => format!("{s:?} = {}s = {}\n", d.as_secs(), format_duration(d)),
                    Err(e) => format!("{s:?}: {e}\n"),
                })
                .collect();
        expect![[r#"
            "90s" = 90s = 90s
            "15m" = 900s = 15m
            "12h" = 43200s = 12h
            "30d" = 2592000s = 30d
            "2w" = 1209600s = 2w
            "0s": "0s" is out of range (between 1s and 100 years)
            "10": "10" is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)
            "d": "d" is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)
            "1.5h": "1.5h" is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)
            "-1d": "-1d" is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)
            "9999999999999d": "9999999999999d" is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)
            "36600d" = 3162240000s = 36600d
            "1y": "1y" is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)
            " 1d": " 1d" is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)
        "#]]
        .assert_eq(&got);
    }

    #[test]
    fn rate_limits() {
        let got: String = ["100/min", "10/s", "5000/h", "100000/day", "0/min", "10/fortnight", "x/min", "100"]
            .iter()
            .map(|s| match RateLimit::parse(s) {
                Ok(r) => format!("{s:?} = {} per {}s -> {r}\n", r.count, r.per.as_secs()),
                Err(e) => format!("{s:?}: {e}\n"),
            })
            .collect();
        expect![[r#"
            "100/min" = 100 per 60s -> 100/min
            "10/s" = 10 per 1s -> 10/s
            "5000/h" = 5000 per 3600s -> 5000/h
            "100000/day" = 100000 per 86400s -> 100000/day
            "0/min": "0/min" is not a rate limit: use <count>/<s|sec|min|h|hour|d|day> (for example 100/min)
            "10/fortnight": "10/fortnight" is not a rate limit: use <count>/<s|sec|min|h|hour|d|day> (for example 100/min)
            "x/min": "x/min" is not a rate limit: use <count>/<s|sec|min|h|hour|d|day> (for example 100/min)
            "100": "100" is not a rate limit: use <count>/<s|sec|min|h|hour|d|day> (for example 100/min)
        "#]]
        .assert_eq(&got);
    }
}
