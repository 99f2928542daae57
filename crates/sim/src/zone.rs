//! Time zones with their daylight-saving rules, and the civil calendar arithmetic the
//! simulator needs (local days, weekdays).
//!
//! Modelled here instead of read from the host's tz database so that a trace is the same on
//! every machine. The rules are the current EU and US ones; that is all a few weeks of
//! simulated traffic needs.

/// Daylight-saving rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dst {
    /// No daylight saving time.
    None,
    /// EU: from the last Sunday of March to the last Sunday of October, at 01:00 UTC.
    Eu,
    /// US: from the second Sunday of March to the first Sunday of November, at 02:00 local.
    Us,
}

/// A time zone: a standard offset and a daylight-saving rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zone {
    /// IANA name.
    pub name: &'static str,
    /// Standard offset from UTC in seconds.
    pub std_offset_s: i64,
    /// Daylight-saving rule.
    pub dst: Dst,
}

/// The zones people and partners work in, with how often each appears.
pub const ZONES: [(Zone, f64); 8] = [
    (Zone { name: "Europe/London", std_offset_s: 0, dst: Dst::Eu }, 0.14),
    (Zone { name: "Europe/Berlin", std_offset_s: 3600, dst: Dst::Eu }, 0.24),
    (Zone { name: "America/New_York", std_offset_s: -5 * 3600, dst: Dst::Us }, 0.2),
    (Zone { name: "America/Chicago", std_offset_s: -6 * 3600, dst: Dst::Us }, 0.06),
    (Zone { name: "America/Los_Angeles", std_offset_s: -8 * 3600, dst: Dst::Us }, 0.1),
    (Zone { name: "Asia/Tokyo", std_offset_s: 9 * 3600, dst: Dst::None }, 0.1),
    (Zone { name: "Asia/Kolkata", std_offset_s: 19_800, dst: Dst::None }, 0.1),
    (Zone { name: "America/Sao_Paulo", std_offset_s: -3 * 3600, dst: Dst::None }, 0.06),
];

/// UTC.
pub const UTC: Zone = Zone { name: "UTC", std_offset_s: 0, dst: Dst::None };

/// Whether any zone is in the Americas (VPN egress and office placement follow it).
pub fn americas(z: &Zone) -> bool {
    z.name.starts_with("America/")
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil year of a day number.
pub fn year_of_day(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(m <= 2)
}

/// Day of the week of a day number: 0 = Monday … 6 = Sunday.
pub fn weekday(days: i64) -> i64 {
    (days + 3).rem_euclid(7)
}

/// Whether a weekday (0 = Monday) is Saturday or Sunday.
pub fn weekend(wd: i64) -> bool {
    wd >= 5
}

/// Day number of the n-th (1-based) Sunday of a month.
fn nth_sunday(y: i64, m: i64, n: i64) -> i64 {
    let first = days_from_civil(y, m, 1);
    let to_sunday = (6 - weekday(first)).rem_euclid(7);
    first + to_sunday + 7 * (n - 1)
}

/// Day number of the last Sunday of a month.
fn last_sunday(y: i64, m: i64) -> i64 {
    let next = if m == 12 { days_from_civil(y + 1, 1, 1) } else { days_from_civil(y, m + 1, 1) };
    let last = next - 1;
    last - (weekday(last) - 6).rem_euclid(7)
}

impl Zone {
    /// The offset from UTC in seconds at a UTC instant.
    pub fn offset_at(&self, utc_s: i64) -> i64 {
        let y = year_of_day(utc_s.div_euclid(86_400));
        let summer = match self.dst {
            Dst::None => false,
            Dst::Eu => {
                let on = last_sunday(y, 3) * 86_400 + 3600;
                let off = last_sunday(y, 10) * 86_400 + 3600;
                (on..off).contains(&utc_s)
            }
            Dst::Us => {
                let on = nth_sunday(y, 3, 2) * 86_400 + 2 * 3600 - self.std_offset_s;
                let off = nth_sunday(y, 11, 1) * 86_400 + 2 * 3600 - (self.std_offset_s + 3600);
                (on..off).contains(&utc_s)
            }
        };
        self.std_offset_s + if summer { 3600 } else { 0 }
    }

    /// Local wall-clock seconds (as if the local time were UTC) at a UTC instant.
    pub fn to_local(&self, utc_s: i64) -> i64 {
        utc_s + self.offset_at(utc_s)
    }

    /// The UTC instant of a local wall-clock time (in the hour skipped or repeated by a
    /// daylight-saving change, one of the two plausible instants).
    pub fn to_utc(&self, local_s: i64) -> i64 {
        local_s - self.offset_at(local_s - self.std_offset_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(weekday(0), 3); // Thursday
        let d = days_from_civil(2026, 3, 2);
        assert_eq!(weekday(d), 0, "2026-03-02 is a Monday");
        assert_eq!(year_of_day(d), 2026);
        assert_eq!(year_of_day(days_from_civil(2026, 12, 31)), 2026);
        assert_eq!(year_of_day(days_from_civil(2027, 1, 1)), 2027);
        assert_eq!(last_sunday(2026, 3), days_from_civil(2026, 3, 29));
        assert_eq!(nth_sunday(2026, 3, 2), days_from_civil(2026, 3, 8));
        assert_eq!(nth_sunday(2026, 11, 1), days_from_civil(2026, 11, 1));
    }

    #[test]
    fn daylight_saving() {
        let berlin = ZONES[1].0;
        let ny = ZONES[2].0;
        let at = |y: i64, m: i64, d: i64, h: i64| days_from_civil(y, m, d) * 86_400 + h * 3600;
        assert_eq!(berlin.offset_at(at(2026, 3, 28, 12)), 3600);
        assert_eq!(berlin.offset_at(at(2026, 3, 29, 12)), 7200);
        assert_eq!(ny.offset_at(at(2026, 3, 7, 12)), -5 * 3600);
        assert_eq!(ny.offset_at(at(2026, 3, 9, 12)), -4 * 3600);
        // 09:00 in New York on 2026-03-09 (daylight time) is 13:00 UTC.
        assert_eq!(ny.to_utc(at(2026, 3, 9, 9)), at(2026, 3, 9, 13));
        assert_eq!(ny.to_local(at(2026, 3, 9, 13)), at(2026, 3, 9, 9));
    }
}
