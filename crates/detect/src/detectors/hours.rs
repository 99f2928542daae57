//! `off_hours`: access outside the token's usual hours. A token with enough history of its own
//! has learned active hours (hour of day and day of week, UTC); one without uses the configured
//! business hours. By default only access to sensitive routes is reported.

use std::collections::BTreeMap;

use jiff::Timestamp;
use ledger::event::Event;

use super::{Bounded, History, allowed_access, secs, sensitive, what};
use crate::{DetectConfig, Detector, Finding, FindingType, Open, Severity};

struct TokenHours {
    history: History,
    hour_of_day: [u32; 24],
    day_of_week: [u32; 7],
    open: Option<Open>,
}

/// The off-hours detector.
pub(crate) struct OffHours {
    config: DetectConfig,
    tokens: Bounded<String, TokenHours>,
}

const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const SHORT: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn hour_day(t: Timestamp, tz: &jiff::tz::TimeZone) -> (usize, usize, String) {
    let z = tz.to_datetime(t);
    let day = usize::from(z.weekday().to_monday_zero_offset().unsigned_abs());
    (usize::from(z.hour().unsigned_abs()), day, format!("{:02}:{:02}", z.hour(), z.minute()))
}

/// "Mon–Fri 08–18": the active days and the hour range, from counts.
fn describe(hours: &[u32; 24], days: &[u32; 7]) -> String {
    let active_days: Vec<usize> = (0..7).filter(|d| days[*d] > 0).collect();
    let day_text = match (active_days.first(), active_days.last()) {
        (Some(a), Some(b)) if active_days.len() == b - a + 1 && a != b => format!("{}–{}", SHORT[*a], SHORT[*b]),
        _ => active_days.iter().map(|d| SHORT[*d]).collect::<Vec<_>>().join(","),
    };
    let active: Vec<usize> = (0..24).filter(|h| hours[*h] > 0).collect();
    let hour_text = match (active.first(), active.last()) {
        (Some(a), Some(b)) => format!("{a:02}–{:02}", b + 1),
        _ => "none".to_owned(),
    };
    format!("{day_text} {hour_text} UTC")
}

/// Circular distance in hours from `h` to the nearest active hour.
fn distance(hours: &[u32; 24], h: usize) -> usize {
    (0..=12).find(|d| hours[(h + d) % 24] > 0 || hours[(h + 24 - d) % 24] > 0).unwrap_or(24)
}

impl OffHours {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        OffHours { config: config.clone(), tokens: Bounded::new(config.max_keys) }
    }
}

impl Detector for OffHours {
    fn name(&self) -> &'static str {
        FindingType::OffHours.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        let Some(token) = allowed_access(e) else { return };
        let now = secs(e.time);
        let config = &self.config;
        let st = self.tokens.touch(&token.to_owned(), now, || TokenHours {
            history: History::default(),
            hour_of_day: [0; 24],
            day_of_week: [0; 7],
            open: None,
        });
        let (hour, day, clock) = hour_day(e.time, &jiff::tz::TimeZone::UTC);
        let learned = st.history.enough(now, config);
        let unusual = if learned {
            let margin = usize::from(config.off_hours_margin_hours);
            distance(&st.hour_of_day, hour) > margin || st.day_of_week[day] == 0
        } else {
            let bh = &config.business_hours;
            let (lh, ld, _) = hour_day(e.time, &bh.tz);
            !bh.days[ld] || lh < usize::from(bh.start_hour) || lh >= usize::from(bh.end_hour)
        };
        let reportable = unusual && (!config.off_hours_sensitive_only || sensitive(e));
        if reportable {
            let usual = if learned {
                format!("its usual hours are {}", describe(&st.hour_of_day, &st.day_of_week))
            } else {
                let bh = &config.business_hours;
                let (_, _, local) = hour_day(e.time, &bh.tz);
                format!(
                    "outside business hours {:02}–{:02} {} (local {local}; the token has too little history of its own)",
                    bh.start_hour,
                    bh.end_hour,
                    bh.tz.iana_name().unwrap_or("UTC")
                )
            };
            let summary = format!("token {token} {} at {clock} {} UTC; {usual}", what(e), DAYS[day]);
            let severity = if sensitive(e) { Severity::Medium.raised() } else { Severity::Medium };
            match &mut st.open {
                Some(o) if now - secs(o.finding.last_seen) <= 6 * 3600 => {
                    o.extend(e, severity, None);
                    out.push(o.finding.clone());
                }
                slot => {
                    let mut d = BTreeMap::new();
                    d.insert("hour_utc".into(), hour.to_string());
                    d.insert("day".into(), DAYS[day].to_owned());
                    d.insert("baseline".into(), if learned { "learned" } else { "business_hours" }.to_owned());
                    let o = Open::start(FindingType::OffHours, token, severity, e, summary, d);
                    out.push(o.finding.clone());
                    *slot = Some(o);
                }
            }
        }
        st.history.note(now);
        st.hour_of_day[hour] += 1;
        st.day_of_week[day] += 1;
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
        let mut h = [0u32; 24];
        h[8..18].fill(5);
        let d = [3, 3, 3, 3, 3, 0, 0];
        assert_eq!(describe(&h, &d), "Mon–Fri 08–18 UTC");
        assert_eq!(distance(&h, 3), 5);
        assert_eq!(distance(&h, 19), 2);
        assert_eq!(distance(&h, 12), 0);
    }
}
