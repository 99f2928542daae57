//! `off_hours`: access outside the token's usual hours. The token's own hours are learned from
//! its first request on, as a set of (weekday, hour) pairs it was active in (UTC; a circular
//! distance in hours does not depend on the zone, and the margin absorbs a daylight-saving
//! shift). Before the baseline is complete an hour the token already used (within the margin)
//! is usual, and only the other hours are compared with the configured business hours. The
//! weekday is judged only once a token has four weeks of history: before that, one week or two
//! cannot tell a day off or an occasional weekend from a day the token never works. By default
//! only access to sensitive routes is reported.

use std::collections::BTreeMap;

use jiff::Timestamp;
use ledger::event::Event;

use super::{Bounded, History, allowed_access, day_of, near_hours, secs, sensitive, what};
use crate::{DetectConfig, Detector, Finding, FindingType, Open, Severity};

/// History a token needs before the weekday it is used on counts (four weeks: every weekday
/// seen four times, so a day off is not read as "never works on Tuesdays").
const WEEKDAY_HISTORY_DAYS: i64 = 28;

struct TokenHours {
    history: History,
    /// Per UTC weekday (Monday first), a bit per UTC hour the token was active in.
    active: [u32; 7],
    /// The last time the token was active at a usual hour, or continued such activity without a
    /// gap longer than the margin.
    last_usual: i64,
    /// The first UTC day the token was active outside business hours, if any.
    first_outside_day: Option<i64>,
    open: Option<Open>,
}

/// The off-hours detector.
pub(crate) struct OffHours {
    config: DetectConfig,
    tokens: Bounded<String, TokenHours>,
}

const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const SHORT: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// UTC hour of day and weekday (Monday = 0) of a time in seconds, by arithmetic: converting
/// every event through a time zone was the largest cost of this detector.
fn hour_day(now: i64) -> (usize, usize) {
    let hour = now.div_euclid(3600).rem_euclid(24) as usize;
    // 1970-01-01 was a Thursday (3 with Monday = 0).
    let day = (day_of(now) + 3).rem_euclid(7) as usize;
    (hour, day)
}

/// The hours of the day the token was ever active in, as a 24-bit mask.
fn hours_of(active: &[u32; 7]) -> u32 {
    active.iter().fold(0, |a, d| a | d)
}

/// "Mon–Fri 08–18": the active days and the hour range (which may wrap past midnight UTC).
fn describe(active: &[u32; 7]) -> String {
    let active_days: Vec<usize> = (0..7).filter(|d| active[*d] != 0).collect();
    let day_text = match (active_days.first(), active_days.last()) {
        (Some(a), Some(b)) if active_days.len() == b - a + 1 && a != b => format!("{}–{}", SHORT[*a], SHORT[*b]),
        _ => active_days.iter().map(|d| SHORT[*d]).collect::<Vec<_>>().join(","),
    };
    let hours = hours_of(active);
    let hour_text = match quiet(hours) {
        None => "none".to_owned(),
        Some((_, 0)) => "00–24".to_owned(),
        // The active range runs from the end of the longest quiet stretch to its start.
        Some((start, len)) => format!("{:02}–{:02}", (start + len) % 24, if start == 0 { 24 } else { start }),
    };
    format!("{day_text} {hour_text} UTC")
}

/// Working days for people: `Mon–Fri`, `Mon–Sun`, or a list (`Mon, Wed, Sat`).
fn working_days(days: &[bool; 7]) -> String {
    let on: Vec<usize> = (0..7).filter(|d| days[*d]).collect();
    match (on.first(), on.last()) {
        (None, _) | (_, None) => "no days".to_owned(),
        (Some(a), Some(b)) if on.len() == b - a + 1 && a != b => format!("{}–{}", SHORT[*a], SHORT[*b]),
        _ => on.iter().map(|d| SHORT[*d]).collect::<Vec<_>>().join(", "),
    }
}
/// The longest circular stretch of hours without activity: (first hour, length); `None` when
/// the mask is empty.
fn quiet(hours: u32) -> Option<(usize, usize)> {
    if hours & 0x00ff_ffff == 0 {
        return None;
    }
    let (mut best, mut best_len) = (0, 0);
    for start in 0..24 {
        let len = (0..24).take_while(|k| hours & (1 << ((start + k) % 24)) == 0).count();
        if len > best_len {
            (best, best_len) = (start, len);
        }
    }
    Some((best, best_len))
}

/// The UTC hour the token's own day starts at: the middle of its longest quiet stretch, so that
/// the evening of someone west of UTC stays on the day it belongs to. 0 for a token active at
/// every hour.
fn day_start(hours: u32) -> usize {
    match quiet(hours) {
        Some((start, len)) if len > 0 => (start + len / 2) % 24,
        _ => 0,
    }
}

/// Whether the token ever used the weekday (of its own day) that UTC weekday `day`, hour `hour`
/// falls on, its day starting at UTC hour `start`.
fn weekday_used(active: &[u32; 7], day: usize, hour: usize, start: usize) -> bool {
    // The token's day `d` covers UTC weekday d from `start` and UTC weekday d+1 before `start`.
    let own = if hour >= start { day } else { (day + 6) % 7 };
    let late = u32::MAX << start & 0x00ff_ffff;
    let early = (1u32 << start) - 1;
    active[own] & late != 0 || active[(own + 1) % 7] & early != 0
}

impl OffHours {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        OffHours { config: config.clone(), tokens: Bounded::new(config.max_keys) }
    }
}

/// Why an access is off hours.
enum Why {
    /// More than the margin from every hour the token was active in (learned baseline).
    Hour,
    /// Outside business hours and not near an hour the token already used (still learning).
    BusinessHours,
    /// A weekday the token never used in four weeks or more, at one of its usual hours.
    Weekday,
}

impl Detector for OffHours {
    fn name(&self) -> &'static str {
        FindingType::OffHours.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        let Some(token) = allowed_access(e) else { return };
        let now = secs(e.time);
        let config = &self.config;
        let st = self.tokens.touch(token, now, || TokenHours {
            history: History::default(),
            active: [0; 7],
            last_usual: i64::MIN,
            first_outside_day: None,
            open: None,
        });
        let (hour, day) = hour_day(now);
        let margin = usize::from(config.off_hours_margin_hours);
        let hours = hours_of(&st.active);
        let evening = usize::from(config.off_hours_evening_margin_hours).max(margin);
        let near_usual = near_hours(hours, hour, margin, evening);
        // Continuing the day's work: no gap longer than the margin since activity at usual hours.
        let continued = now.saturating_sub(st.last_usual) <= i64::from(config.off_hours_margin_hours) * 3600;
        let learned = st.history.enough(now, config);
        let outside_business = || {
            let bh = &config.business_hours;
            let z = bh.tz.to_datetime(e.time);
            let ld = usize::from(z.weekday().to_monday_zero_offset().unsigned_abs());
            let lh = usize::from(z.hour().unsigned_abs());
            !bh.days[ld] || lh < usize::from(bh.start_hour) || lh >= usize::from(bh.end_hour)
        };
        let why = if near_usual || continued {
            let mature = st.history.events > 0 && now - st.history.first >= WEEKDAY_HISTORY_DAYS * 86_400;
            (mature && learned && !weekday_used(&st.active, day, hour, day_start(hours))).then_some(Why::Weekday)
        } else if learned {
            Some(Why::Hour)
        } else {
            // Business hours are assumed only for a token whose use so far fits them: one used on
            // an earlier day, never outside them before today. A token's first day tells nothing
            // yet, and one that ran outside business hours on another day is a service, a job or
            // a person in another zone, held to its own hours only.
            let today = day_of(now);
            let outside = outside_business();
            if outside && st.first_outside_day.is_none() {
                st.first_outside_day = Some(today);
            }
            let earlier_day = st.history.events > 0 && day_of(st.history.first) < today;
            let fits = st.first_outside_day.is_none_or(|d| d == today);
            (outside && earlier_day && fits).then_some(Why::BusinessHours)
        };
        let reportable = why.is_some() && (!config.off_hours_sensitive_only || sensitive(e));
        if let (Some(why), true) = (why, reportable) {
            let base = if matches!(why, Why::Weekday) { Severity::Low } else { Severity::Medium };
            let severity = if sensitive(e) { base.raised() } else { base };
            match &mut st.open {
                Some(o) if now - secs(o.finding.last_seen) <= 6 * 3600 => {
                    o.extend(e, severity, None);
                    out.push(o.finding.clone());
                }
                slot => {
                    let usual = match why {
                        Why::Hour => format!("its usual hours are {}", describe(&st.active)),
                        Why::Weekday => {
                            format!(
                                "a weekday it never used in {} days ({})",
                                WEEKDAY_HISTORY_DAYS,
                                describe(&st.active)
                            )
                        }
                        Why::BusinessHours => {
                            let bh = &config.business_hours;
                            let z = bh.tz.to_datetime(e.time);
                            let local_day = usize::from(z.weekday().to_monday_zero_offset().unsigned_abs());
                            format!(
                                "outside business hours {} {:02}–{:02} {} (local {} {:02}:{:02}; the token has too little history of its own)",
                                working_days(&bh.days),
                                bh.start_hour,
                                bh.end_hour,
                                bh.tz.iana_name().unwrap_or("UTC"),
                                SHORT[local_day % 7],
                                z.hour(),
                                z.minute()
                            )
                        }
                    };
                    let minute = now.div_euclid(60).rem_euclid(60);
                    let summary =
                        format!("token {token} {} at {hour:02}:{minute:02} {} UTC; {usual}", what(e), DAYS[day]);
                    let mut d = BTreeMap::new();
                    d.insert("hour_utc".into(), hour.to_string());
                    d.insert("day".into(), DAYS[day].to_owned());
                    let baseline = match why {
                        Why::Hour => "learned",
                        Why::BusinessHours => "business_hours",
                        Why::Weekday => "weekday",
                    };
                    d.insert("baseline".into(), baseline.to_owned());
                    let o = Open::start(FindingType::OffHours, token, severity, e, summary, d);
                    out.push(o.finding.clone());
                    *slot = Some(o);
                }
            }
        }
        if near_usual || continued {
            st.last_usual = now;
        }
        st.history.note(now);
        st.active[day] |= 1 << hour;
    }

    fn prune(&mut self, now: Timestamp) {
        // Profiles are worth keeping for long; forget tokens silent for 90 days.
        self.tokens.prune(secs(now) - 90 * 86_400);
    }

    fn tracked(&self) -> usize {
        self.tokens.len()
    }

    fn bound(&self) -> usize {
        self.tokens.cap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_hours() {
        let mut a = [0u32; 7];
        for d in a.iter_mut().take(5) {
            *d = (8..18).fold(0, |m, h| m | 1 << h);
        }
        assert_eq!(describe(&a), "Mon–Fri 08–18 UTC");
        let h = hours_of(&a);
        // Two hours before the first active hour (08), three after the last (17).
        assert!(near_hours(h, 12, 2, 3));
        assert!(near_hours(h, 6, 2, 3));
        assert!(!near_hours(h, 5, 2, 3));
        assert!(near_hours(h, 20, 2, 3));
        assert!(!near_hours(h, 21, 2, 3));
        assert!(!near_hours(h, 3, 2, 3));
        assert!(!near_hours(0, 12, 2, 3));
        // Across midnight: active 22–23, 02:00 is three hours after.
        assert!(near_hours(1 << 23, 2, 2, 3));
        assert!(!near_hours(1 << 23, 3, 2, 3));
    }

    #[test]
    fn clock_by_arithmetic() {
        // 2026-03-02 was a Monday.
        let monday: i64 = "2026-03-02T00:00:00Z".parse::<Timestamp>().unwrap().as_second();
        assert_eq!(hour_day(monday + 13 * 3600 + 59), (13, 0));
        assert_eq!(hour_day(monday + 6 * 86_400 + 23 * 3600), (23, 6));
        assert_eq!(hour_day(-1), (23, 2));
    }

    #[test]
    fn a_token_day_starts_in_its_quiet_hours() {
        // Active 15–01 UTC (someone in Los Angeles): the quiet stretch 01–15 centres on 08.
        let hours = (15..25).fold(0u32, |m, h| m | 1 << (h % 24));
        assert_eq!(day_start(hours), 8);
        assert_eq!(day_start(0x00ff_ffff), 0);
        let mut a = [0u32; 7];
        a[0] = hours;
        assert_eq!(describe(&a), "Mon 15–01 UTC");
        // Monday evening in Los Angeles is Tuesday 00:xx UTC, and counts as Monday.
        let mut a = [0u32; 7];
        a[0] = hours & !1;
        a[1] = 1;
        assert!(weekday_used(&a, 1, 0, 8));
        assert!(!weekday_used(&a, 1, 16, 8));
    }
}
