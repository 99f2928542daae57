//! Detectors of unusual activity by a token, each against the token's own history:
//! `dormant_reactivation` (first use after a long silence), `enumeration` (many distinct object
//! ids on one route template, far above the token's usual number: BOLA, OWASP API1),
//! `volume_spike` (a request rate far above the token's usual rate) and
//! `first_sensitive_access` (the first access to a sensitivity label the token never touched).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use ledger::event::{Event, format_time};

use super::{Bounded, History, allowed_access, day_of, secs, sensitive, stable_hash, token_access, what};
use crate::{DetectConfig, Detector, Finding, FindingType, Open, Severity};

/// The dormant-reactivation detector.
pub(crate) struct Dormant {
    config: DetectConfig,
    last: Bounded<String, (i64, Option<Open>)>,
}

impl Dormant {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        Dormant { config: config.clone(), last: Bounded::new(config.max_keys) }
    }
}

impl Detector for Dormant {
    fn name(&self) -> &'static str {
        FindingType::DormantReactivation.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        let Some(token) = token_access(e) else { return };
        let now = secs(e.time);
        let silence = i64::from(self.config.dormant_days) * 86_400;
        let (last, open) = self.last.touch(token, now, || (now, None));
        let gap = now - *last;
        if gap >= silence {
            let last_time = Timestamp::from_second(*last).map(format_time).unwrap_or_default();
            let summary =
                format!("token {token} {} after {} days of silence (last use {last_time})", what(e), gap / 86_400);
            let severity = if sensitive(e) { Severity::Medium.raised() } else { Severity::Medium };
            let mut d = BTreeMap::new();
            d.insert("silent_days".into(), (gap / 86_400).to_string());
            d.insert("last_use".into(), last_time);
            let o =
                Open::start(FindingType::DormantReactivation, &format!("{token}|{}", *last), severity, e, summary, d);
            out.push(o.finding.clone());
            *open = Some(o);
        } else if let Some(o) = open.as_mut()
            && now - secs(o.finding.last_seen) <= 3600
        {
            o.extend(e, o.finding.severity, None);
            out.push(o.finding.clone());
        }
        *last = now;
    }

    fn prune(&mut self, now: Timestamp) {
        // A silent token must be remembered for longer than the silence that matters.
        let keep = i64::from(self.config.dormant_days).max(1) * 86_400 * 13;
        self.last.prune(secs(now) - keep);
    }

    fn tracked(&self) -> usize {
        self.last.len()
    }

    fn bound(&self) -> usize {
        self.last.cap()
    }
}

/// The object ids of a path, from the `{param}` segments of its route template.
#[cfg(test)]
fn object_ids(route: &str, path: &str) -> Option<String> {
    let template = route.split_once(' ').map_or(route, |(_, t)| t);
    let tsegs: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let psegs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if tsegs.last() == Some(&"*") || tsegs.len() != psegs.len() {
        return None;
    }
    let ids: Vec<&str> =
        tsegs.iter().zip(&psegs).filter(|(t, _)| t.starts_with('{') && t.ends_with('}')).map(|(_, p)| *p).collect();
    if ids.is_empty() { None } else { Some(ids.join("/")) }
}

/// A stable hash of the object ids of a path (what [`object_ids`] returns), without allocating.
fn object_ids_hash(route: &str, path: &str) -> Option<u64> {
    let template = route.split_once(' ').map_or(route, |(_, t)| t);
    let mut tsegs = template.trim_start_matches('/').split('/');
    let mut psegs = path.trim_start_matches('/').split('/');
    let mut parts: [&[u8]; 4] = [&[]; 4];
    let mut n = 0;
    loop {
        match (tsegs.next(), psegs.next()) {
            (None, None) => break,
            (Some("*"), _) | (Some(_), None) | (None, Some(_)) => return None,
            (Some(t), Some(p)) => {
                if t.starts_with('{') && t.ends_with('}') {
                    if n == parts.len() {
                        // More parameters than a route has in practice: hash the rest together.
                        parts[n - 1] = p.as_bytes();
                        continue;
                    }
                    parts[n] = p.as_bytes();
                    n += 1;
                }
            }
        }
    }
    (n > 0).then(|| stable_hash(&parts[..n]))
}

/// Distinct values counted in bounded memory: the [`SKETCH`] smallest hashes seen ("k minimum
/// values"). Exact up to [`SKETCH`] values, an estimate within about 9% above it, and never more
/// than 1 KiB, however many ids a window holds.
#[derive(Debug, Default)]
struct Distinct {
    mins: Vec<u64>,
}

/// Hashes kept by [`Distinct`].
const SKETCH: usize = 128;

impl Distinct {
    /// Adds a hash; true when it was not seen before (exact while fewer than [`SKETCH`] are kept).
    fn insert(&mut self, h: u64) -> bool {
        if self.mins.len() >= SKETCH && self.mins.last().is_some_and(|m| h >= *m) {
            return false;
        }
        match self.mins.binary_search(&h) {
            Ok(_) => false,
            Err(i) => {
                self.mins.insert(i, h);
                if self.mins.len() > SKETCH {
                    self.mins.pop();
                }
                true
            }
        }
    }

    /// How many distinct values were added.
    fn count(&self) -> usize {
        match self.mins.last() {
            Some(max) if self.mins.len() >= SKETCH => {
                let fraction = (*max as f64 + 1.0) / 18_446_744_073_709_551_616.0;
                ((SKETCH - 1) as f64 / fraction).round() as usize
            }
            _ => self.mins.len(),
        }
    }

    fn clear(&mut self) {
        self.mins.clear();
    }
}

struct Enum {
    bucket: i64,
    ids: Distinct,
    evidence: Vec<(Timestamp, String)>,
    usual: f64,
    buckets: u32,
    open: Option<Open>,
}

/// The enumeration detector.
pub(crate) struct Enumeration {
    config: DetectConfig,
    /// Per (token, route), by a stable 64-bit hash of the pair (two pairs sharing a hash, about
    /// one chance in 10^9 at 100,000 keys, would share a baseline).
    keys: Bounded<u64, Enum>,
    /// Per token, its history: the usual number of ids is trusted only with enough of it.
    tokens: Bounded<String, History>,
}

impl Enumeration {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        Enumeration {
            config: config.clone(),
            keys: Bounded::new(config.max_keys),
            tokens: Bounded::new(config.max_keys),
        }
    }
}

impl Detector for Enumeration {
    fn name(&self) -> &'static str {
        FindingType::Enumeration.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        let Some(token) = token_access(e) else { return };
        let config = &self.config;
        let now = secs(e.time);
        let history = self.tokens.touch(token, now, History::default);
        history.note(now);
        let learned = history.enough(now, config);
        let (Some(route), Some(path)) = (e.route.as_deref(), e.path.as_deref()) else { return };
        let Some(id) = object_ids_hash(route, path) else { return };
        let bucket = now / config.enumeration_window_s.max(1);
        let key = stable_hash(&[token.as_bytes(), route.as_bytes()]);
        let st = self.keys.touch(&key, now, || Enum {
            bucket,
            ids: Distinct::default(),
            evidence: Vec::new(),
            usual: 0.0,
            buckets: 0,
            open: None,
        });
        if bucket != st.bucket {
            // Fold the finished window into the usual number of ids per active window.
            let n = st.ids.count() as f64;
            st.usual = if st.buckets == 0 { n } else { 0.9 * st.usual + 0.1 * n };
            st.buckets += 1;
            st.ids.clear();
            st.evidence.clear();
            st.bucket = bucket;
        }
        if st.ids.insert(id) && st.evidence.len() < crate::MAX_EVIDENCE {
            st.evidence.push((e.time, e.id.clone()));
        }
        if !learned {
            // A new token's first runs set its usual number; nothing to compare them with yet.
            return;
        }
        let n = st.ids.count();
        let threshold = (config.enumeration_min_ids as f64).max(config.enumeration_factor * st.usual);
        let open_recent =
            st.open.as_ref().is_some_and(|o| now - secs(o.finding.last_seen) <= config.enumeration_window_s * 2);
        if (n as f64) >= threshold || open_recent && n as f64 >= threshold / 2.0 {
            let summary = format!(
                "token {token} requested {n} distinct objects on {route} within {} minutes; it usually requests about {:.0}",
                config.enumeration_window_s / 60,
                st.usual
            );
            let severity = if sensitive(e) { Severity::High.raised() } else { Severity::High };
            match &mut st.open {
                Some(o) if open_recent => {
                    o.extend(e, severity, Some(summary));
                    o.finding.event_count = o.finding.event_count.max(n as u64);
                    out.push(o.finding.clone());
                }
                slot => {
                    let mut d = BTreeMap::new();
                    d.insert("route".into(), route.to_owned());
                    d.insert("usual_ids_per_window".into(), format!("{:.1}", st.usual));
                    let mut o = Open::start_window(
                        FindingType::Enumeration,
                        &format!("{token}|{route}"),
                        severity,
                        e,
                        &st.evidence,
                        summary,
                        d,
                    );
                    o.finding.event_count = n as u64;
                    out.push(o.finding.clone());
                    *slot = Some(o);
                }
            }
        }
    }

    fn prune(&mut self, now: Timestamp) {
        self.keys.prune(secs(now) - 30 * 86_400);
        self.tokens.prune(secs(now) - 30 * 86_400);
    }

    fn tracked(&self) -> usize {
        self.keys.len().max(self.tokens.len())
    }

    fn bound(&self) -> usize {
        self.keys.cap()
    }
}

struct Volume {
    history: History,
    bucket: i64,
    count: u64,
    evidence: Vec<(Timestamp, String)>,
    mean: f64,
    var: f64,
    /// The busiest bucket of each of the last [`PEAK_DAYS`] UTC days, by day modulo the length,
    /// and the day the newest slot belongs to.
    peaks: [u32; PEAK_DAYS],
    peak_day: i64,
    open: Option<Open>,
}

/// Days of daily peaks kept: today and the seven before it, so that a weekly job's last run is
/// still in view on the day it runs again.
const PEAK_DAYS: usize = 8;

impl Volume {
    /// Moves the daily peaks on to `day`, forgetting the slots of days that fell out of view.
    fn advance(&mut self, day: i64) {
        if day <= self.peak_day {
            return;
        }
        let gap = (day - self.peak_day).min(PEAK_DAYS as i64);
        for k in 0..gap {
            self.peaks[(day - k).rem_euclid(PEAK_DAYS as i64) as usize] = 0;
        }
        self.peak_day = day;
    }

    /// Records a finished bucket's count as a candidate for its day's peak.
    fn note_peak(&mut self, day: i64, count: u64) {
        self.advance(day);
        if day > self.peak_day - PEAK_DAYS as i64 {
            let slot = &mut self.peaks[day.rem_euclid(PEAK_DAYS as i64) as usize];
            *slot = (*slot).max(u32::try_from(count).unwrap_or(u32::MAX));
        }
    }

    /// The busiest bucket of the seven days before `day` (today's own buckets excluded, so that a
    /// burst does not raise the bar for its own continuation).
    fn previous_peak(&self, day: i64) -> u32 {
        (1..PEAK_DAYS as i64)
            .map(|k| day - k)
            .filter(|d| *d > self.peak_day - PEAK_DAYS as i64 && *d <= self.peak_day)
            .map(|d| self.peaks[d.rem_euclid(PEAK_DAYS as i64) as usize])
            .max()
            .unwrap_or(0)
    }
}

/// The volume-spike detector.
pub(crate) struct VolumeSpike {
    config: DetectConfig,
    tokens: Bounded<String, Volume>,
}

impl VolumeSpike {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        VolumeSpike { config: config.clone(), tokens: Bounded::new(config.max_keys) }
    }
}

/// Weight of the newest bucket in the usual rate: about a day of five-minute buckets.
const ALPHA: f64 = 1.0 / 288.0;

impl Detector for VolumeSpike {
    fn name(&self) -> &'static str {
        FindingType::VolumeSpike.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        let Some(token) = token_access(e) else { return };
        let config = &self.config;
        let now = secs(e.time);
        let width = config.volume_bucket_s.max(1);
        let bucket = now / width;
        let st = self.tokens.touch(token, now, || Volume {
            history: History::default(),
            bucket,
            count: 0,
            evidence: Vec::new(),
            mean: 0.0,
            var: 0.0,
            peaks: [0; PEAK_DAYS],
            peak_day: day_of(now),
            open: None,
        });
        if bucket != st.bucket {
            let mut fold = |x: f64| {
                let d = x - st.mean;
                st.mean += ALPHA * d;
                st.var = (1.0 - ALPHA) * (st.var + ALPHA * d * d);
            };
            fold(st.count as f64);
            // Quiet buckets count too (up to a day of them), so a night of silence lowers the rate.
            for _ in 0..(bucket - st.bucket - 1).clamp(0, 288) {
                fold(0.0);
            }
            let (finished, count) = (st.bucket, st.count);
            st.note_peak(day_of(finished * width), count);
            st.count = 0;
            st.evidence.clear();
            st.bucket = bucket;
        }
        st.advance(day_of(now));
        st.count += 1;
        if st.evidence.len() < crate::MAX_EVIDENCE {
            st.evidence.push((e.time, e.id.clone()));
        }
        st.history.note(now);
        if !st.history.enough(now, config) {
            return;
        }
        let sigma = st.var.sqrt();
        let peak = st.previous_peak(day_of(now));
        let threshold = (config.volume_min_requests as f64)
            .max(config.volume_factor * st.mean)
            .max(st.mean + 6.0 * sigma)
            .max(config.volume_peak_factor * f64::from(peak));
        let open_recent = st.open.as_ref().is_some_and(|o| now - secs(o.finding.last_seen) <= width * 2);
        let count = st.count as f64;
        if count >= threshold || open_recent && count >= threshold / 2.0 {
            let per_min = |x: f64| x * 60.0 / width as f64;
            let summary = format!(
                "token {token} made {} requests in {} minutes ({:.0}/min); its usual rate is {:.2}/min and its busiest {} minutes of the last 7 days had {peak}",
                st.count,
                width / 60,
                per_min(count),
                per_min(st.mean),
                width / 60,
            );
            let severity = if sensitive(e) { Severity::Medium.raised() } else { Severity::Medium };
            match &mut st.open {
                Some(o) if open_recent => {
                    o.extend(e, severity, Some(summary));
                    out.push(o.finding.clone());
                }
                slot => {
                    let mut d = BTreeMap::new();
                    d.insert("usual_per_bucket".into(), format!("{:.1}", st.mean));
                    d.insert("peak_per_bucket_7d".into(), peak.to_string());
                    d.insert("threshold".into(), format!("{threshold:.0}"));
                    let mut o =
                        Open::start_window(FindingType::VolumeSpike, token, severity, e, &st.evidence, summary, d);
                    o.finding.event_count = st.count;
                    out.push(o.finding.clone());
                    *slot = Some(o);
                }
            }
        }
    }

    fn prune(&mut self, now: Timestamp) {
        self.tokens.prune(secs(now) - 30 * 86_400);
    }

    fn tracked(&self) -> usize {
        self.tokens.len()
    }

    fn bound(&self) -> usize {
        self.tokens.cap()
    }
}

struct Labels {
    history: History,
    labels: BTreeSet<String>,
    open: BTreeMap<String, Open>,
}

/// The first-sensitive-access detector.
pub(crate) struct FirstSensitive {
    config: DetectConfig,
    tokens: Bounded<String, Labels>,
}

impl FirstSensitive {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        FirstSensitive { config: config.clone(), tokens: Bounded::new(config.max_keys) }
    }
}

impl Detector for FirstSensitive {
    fn name(&self) -> &'static str {
        FindingType::FirstSensitiveAccess.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        let Some(token) = allowed_access(e) else { return };
        let now = secs(e.time);
        let config = &self.config;
        let st = self.tokens.touch(token, now, || Labels {
            history: History::default(),
            labels: BTreeSet::new(),
            open: BTreeMap::new(),
        });
        for label in &e.sensitivity {
            if st.labels.contains(label) {
                if let Some(o) = st.open.get_mut(label)
                    && now - secs(o.finding.last_seen) <= 3600
                {
                    o.extend(e, o.finding.severity, None);
                    out.push(o.finding.clone());
                }
                continue;
            }
            if st.history.enough(now, config) {
                let severity = match label.as_str() {
                    "phi" | "financial" | "pci" | "secret" | "credentials" => Severity::High,
                    _ => Severity::Medium,
                };
                let summary = format!(
                    "token {token} {} for the first time in {} requests over {} days ({})",
                    what(e),
                    st.history.events,
                    (now - st.history.first) / 86_400,
                    e.route.as_deref().or(e.path.as_deref()).unwrap_or("")
                );
                let mut d = BTreeMap::new();
                d.insert("label".into(), label.clone());
                let o = Open::start(
                    FindingType::FirstSensitiveAccess,
                    &format!("{token}|{label}"),
                    severity,
                    e,
                    summary,
                    d,
                );
                out.push(o.finding.clone());
                st.open.insert(label.clone(), o);
            }
            if st.labels.len() < 64 {
                st.labels.insert(label.clone());
            }
        }
        st.open.retain(|_, o| now - secs(o.finding.last_seen) <= 3600);
        st.history.note(now);
    }

    fn prune(&mut self, now: Timestamp) {
        self.tokens.prune(secs(now) - 180 * 86_400);
    }

    fn tracked(&self) -> usize {
        self.tokens.len()
    }

    fn bound(&self) -> usize {
        self.tokens.cap()
    }
}

/// Shadow mode: requests a token's proposed scopes would have denied, one finding per token per
/// day, so the owner sees what would break before applying the narrower grant.
pub(crate) struct ShadowDeny {
    tokens: Bounded<String, (i64, Option<Open>, BTreeSet<String>)>,
}

impl ShadowDeny {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        ShadowDeny { tokens: Bounded::new(config.max_keys) }
    }
}

impl Detector for ShadowDeny {
    fn name(&self) -> &'static str {
        FindingType::ShadowDeny.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        if e.details.get("shadow_decision").map(String::as_str) != Some("deny") {
            return;
        }
        let Some(token) = token_access(e) else { return };
        let now = secs(e.time);
        let day = now / 86_400;
        let route = e.route.clone().or_else(|| e.path.clone()).unwrap_or_default();
        let proposed = e.details.get("shadow_scopes").cloned().unwrap_or_default();
        let (current, open, routes) = self.tokens.touch(token, now, || (day, None, BTreeSet::new()));
        if *current != day {
            *current = day;
            *open = None;
            routes.clear();
        }
        if routes.len() < 20 {
            routes.insert(route);
        }
        let listed: Vec<&str> = routes.iter().map(String::as_str).collect();
        match open {
            Some(o) => {
                let n = o.finding.event_count + 1;
                let summary = format!(
                    "token {token} made {n} requests today that its proposed scopes [{proposed}] would deny ({})",
                    listed.join(", ")
                );
                o.extend(e, Severity::Low, Some(summary));
                out.push(o.finding.clone());
            }
            None => {
                let summary = format!(
                    "token {token} made a request its proposed scopes [{proposed}] would deny ({})",
                    listed.join(", ")
                );
                let mut d = BTreeMap::new();
                d.insert("proposed_scopes".into(), proposed);
                let o = Open::start(FindingType::ShadowDeny, &format!("{token}|{day}"), Severity::Low, e, summary, d);
                out.push(o.finding.clone());
                *open = Some(o);
            }
        }
    }

    fn prune(&mut self, now: Timestamp) {
        self.tokens.prune(secs(now) - 2 * 86_400);
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
    fn ids_come_from_template_parameters() {
        assert_eq!(object_ids("GET /v1/patients/{id}", "/v1/patients/42").as_deref(), Some("42"));
        assert_eq!(object_ids("GET /v1/a/{x}/b/{y}", "/v1/a/1/b/2").as_deref(), Some("1/2"));
        assert_eq!(object_ids("GET /v1/static/*", "/v1/static/a"), None);
        assert_eq!(object_ids("GET /v1/list", "/v1/list"), None);
        assert_eq!(object_ids("GET /v1/patients/{id}", "/v1/patients/42/x"), None);
        for (route, path) in [
            ("GET /v1/patients/{id}", "/v1/patients/42"),
            ("GET /v1/a/{x}/b/{y}", "/v1/a/1/b/2"),
            ("GET /v1/static/*", "/v1/static/a"),
            ("GET /v1/list", "/v1/list"),
            ("GET /v1/patients/{id}", "/v1/patients/42/x"),
        ] {
            assert_eq!(object_ids(route, path).is_some(), object_ids_hash(route, path).is_some(), "{path}");
        }
        assert_ne!(object_ids_hash("GET /v1/p/{id}", "/v1/p/42"), object_ids_hash("GET /v1/p/{id}", "/v1/p/43"));
    }

    #[test]
    fn distinct_counts_exactly_then_estimates_in_bounded_memory() {
        let mut d = Distinct::default();
        for i in 0..100u64 {
            assert!(d.insert(stable_hash(&[&i.to_le_bytes()])));
            assert!(!d.insert(stable_hash(&[&i.to_le_bytes()])));
        }
        assert_eq!(d.count(), 100);
        for i in 0..20_000u64 {
            d.insert(stable_hash(&[&i.to_le_bytes()]));
        }
        assert!(d.mins.len() <= SKETCH);
        let n = d.count() as f64;
        assert!((n - 20_000.0).abs() < 20_000.0 * 0.25, "{n}");
    }
}
