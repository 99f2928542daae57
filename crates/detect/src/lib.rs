//! Detection: streaming detectors over audit events that keep bounded state per token, address
//! or network, learn each token's own baseline, and produce findings with evidence.
//!
//! Pure: detectors take the time from the events (never the clock), hold no I/O, and are
//! deterministic, so running them over the same events always gives the same findings (this is
//! what lets the server rebuild baselines after a restart by replaying the ledger, and the
//! offline `tokentrail detect` agree with the live server). The rules every detector follows are
//! in docs/detectors.md; the compliance tests check them for every detector.

use std::collections::BTreeMap;

use jiff::Timestamp;
use ledger::event::Event;

pub mod config;
pub mod detectors;
pub mod net;

pub use config::DetectConfig;

/// The finding types of PRODUCT.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingType {
    /// Access outside the token's usual hours.
    OffHours,
    /// A token used from a network outside its baseline.
    NewNetwork,
    /// One token active from several networks at once.
    ConcurrentNetworks,
    /// Many bad credentials from one address or network.
    BruteForce,
    /// Many insufficient-scope denials for one token across routes.
    ScopeProbing,
    /// A revoked token still in use.
    RevokedTokenUse,
    /// An expired token still in use.
    ExpiredTokenUse,
    /// First use after a long silence.
    DormantReactivation,
    /// Many distinct object ids on one route in a short window.
    Enumeration,
    /// A request rate far above the token's baseline.
    VolumeSpike,
    /// The first access by a token to a sensitivity label.
    FirstSensitiveAccess,
    /// Shadow mode: requests a token's proposed narrower scopes would deny.
    ShadowDeny,
}

impl FindingType {
    /// Every type.
    pub const ALL: [FindingType; 12] = [
        FindingType::OffHours,
        FindingType::NewNetwork,
        FindingType::ConcurrentNetworks,
        FindingType::BruteForce,
        FindingType::ScopeProbing,
        FindingType::RevokedTokenUse,
        FindingType::ExpiredTokenUse,
        FindingType::DormantReactivation,
        FindingType::Enumeration,
        FindingType::VolumeSpike,
        FindingType::FirstSensitiveAccess,
        FindingType::ShadowDeny,
    ];

    /// The type's name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingType::OffHours => "off_hours",
            FindingType::NewNetwork => "new_network",
            FindingType::ConcurrentNetworks => "concurrent_networks",
            FindingType::BruteForce => "brute_force",
            FindingType::ScopeProbing => "scope_probing",
            FindingType::RevokedTokenUse => "revoked_token_use",
            FindingType::ExpiredTokenUse => "expired_token_use",
            FindingType::DormantReactivation => "dormant_reactivation",
            FindingType::Enumeration => "enumeration",
            FindingType::VolumeSpike => "volume_spike",
            FindingType::FirstSensitiveAccess => "first_sensitive_access",
            FindingType::ShadowDeny => "shadow_deny",
        }
    }

    /// Parses a type name.
    pub fn parse(s: &str) -> Option<FindingType> {
        FindingType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// How urgent a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Investigate soon.
    Medium,
    /// Investigate now.
    High,
    /// Likely an incident.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    /// The severity's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a severity name.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// One level up (sensitive data raises severity), capped at critical.
    pub fn raised(self) -> Severity {
        match self {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        }
    }
}

/// Evidence ids kept per finding; the count keeps growing past it.
pub const MAX_EVIDENCE: usize = 50;

/// A finding: something that looks wrong, with the events that show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Stable id: the same activity always gives the same id.
    pub id: String,
    /// The type.
    pub kind: FindingType,
    /// How urgent.
    pub severity: Severity,
    /// The token involved, if one.
    pub token_id: Option<String>,
    /// The address involved, if one.
    pub source_ip: Option<String>,
    /// The first event's time.
    pub first_seen: Timestamp,
    /// The latest event's time.
    pub last_seen: Timestamp,
    /// One sentence with the numbers.
    pub summary: String,
    /// The events that show it (the first [`MAX_EVIDENCE`]).
    pub evidence_event_ids: Vec<String>,
    /// How many events showed it (may exceed the evidence kept).
    pub event_count: u64,
    /// Values behind the finding (thresholds, baselines, networks).
    pub details: BTreeMap<String, String>,
}

/// A stable finding id from what identifies it.
pub fn finding_id(kind: FindingType, key: &str, first_event: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{}\n{key}\n{first_event}", kind.as_str()).as_bytes());
    let mut id = String::from("fd_");
    for b in &h[..10] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// A finding open for extension by repeated activity on the same key.
#[derive(Clone, Debug)]
pub struct Open {
    /// The finding as last emitted.
    pub finding: Finding,
}

impl Open {
    /// Starts a finding from its first event.
    pub fn start(
        kind: FindingType,
        key: &str,
        severity: Severity,
        e: &Event,
        summary: String,
        details: BTreeMap<String, String>,
    ) -> Open {
        Open {
            finding: Finding {
                id: finding_id(kind, key, &e.id),
                kind,
                severity,
                token_id: e.token_id.clone(),
                source_ip: e.source_ip.clone(),
                first_seen: e.time,
                last_seen: e.time,
                summary,
                evidence_event_ids: vec![e.id.clone()],
                event_count: 1,
                details,
            },
        }
    }

    /// Starts a finding whose evidence is every event of a window, not only the last one.
    pub fn start_window(
        kind: FindingType,
        key: &str,
        severity: Severity,
        e: &Event,
        window: &[(Timestamp, String)],
        summary: String,
        details: BTreeMap<String, String>,
    ) -> Open {
        let first = window.first().map_or(e.id.as_str(), |(_, id)| id.as_str());
        let mut o = Open::start(kind, key, severity, e, summary, details);
        o.finding.id = finding_id(kind, key, first);
        if !window.is_empty() {
            o.finding.first_seen = window[0].0.min(e.time);
            o.finding.evidence_event_ids = window.iter().map(|(_, id)| id.clone()).take(MAX_EVIDENCE).collect();
            if !o.finding.evidence_event_ids.contains(&e.id) && o.finding.evidence_event_ids.len() < MAX_EVIDENCE {
                o.finding.evidence_event_ids.push(e.id.clone());
            }
            o.finding.event_count = (window.len() as u64).max(1);
        }
        o
    }

    /// Adds an event to the finding.
    pub fn extend(&mut self, e: &Event, severity: Severity, summary: Option<String>) {
        let f = &mut self.finding;
        f.last_seen = f.last_seen.max(e.time);
        f.event_count += 1;
        if f.evidence_event_ids.len() < MAX_EVIDENCE && !f.evidence_event_ids.contains(&e.id) {
            f.evidence_event_ids.push(e.id.clone());
        }
        f.severity = f.severity.max(severity);
        if let Some(s) = summary {
            f.summary = s;
        }
    }
}

/// What every detector does. See docs/detectors.md for the rules.
pub trait Detector: Send {
    /// The detector's name (its finding type's name).
    fn name(&self) -> &'static str;

    /// Observes one event; events arrive in time order. Pushes findings opened or extended by it.
    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>);

    /// Drops state that can no longer matter at `now` (the latest event's time).
    fn prune(&mut self, now: Timestamp);

    /// Keys (tokens, addresses, networks) currently tracked.
    fn tracked(&self) -> usize;

    /// The most keys it will ever track (the bound of docs/detectors.md).
    fn bound(&self) -> usize;
}

/// Every detector, run together over one stream.
pub struct Detection {
    detectors: Vec<Box<dyn Detector>>,
    last_prune: Option<Timestamp>,
    latest: Option<Timestamp>,
}

impl Detection {
    /// All detectors with this configuration.
    pub fn new(config: &DetectConfig) -> Detection {
        Detection { detectors: detectors::all(config), last_prune: None, latest: None }
    }

    /// Observes one event. Events must come in time order; a slightly late one (an older time
    /// than the latest seen) is treated as happening at the latest time seen.
    pub fn observe(&mut self, e: &Event) -> Vec<Finding> {
        let mut event;
        let e = match self.latest {
            Some(latest) if e.time < latest => {
                event = e.clone();
                event.time = latest;
                &event
            }
            _ => e,
        };
        self.latest = Some(e.time);
        let mut out = Vec::new();
        for d in &mut self.detectors {
            d.observe(e, &mut out);
        }
        let due = self.last_prune.is_none_or(|t| e.time.as_second() - t.as_second() >= 3600);
        if due {
            for d in &mut self.detectors {
                d.prune(e.time);
            }
            self.last_prune = Some(e.time);
        }
        out
    }

    /// Per detector: keys tracked and the bound.
    pub fn state(&self) -> Vec<(&'static str, usize, usize)> {
        self.detectors.iter().map(|d| (d.name(), d.tracked(), d.bound())).collect()
    }

    /// The detectors (for the compliance tests).
    pub fn detectors_mut(&mut self) -> &mut [Box<dyn Detector>] {
        &mut self.detectors
    }
}

/// Runs detection over events (sorted by time first), merging repeated emissions of a finding
/// into its latest state. Findings in order of first emission.
pub fn run(config: &DetectConfig, events: &mut [Event]) -> Vec<Finding> {
    events.sort_by_key(|e| (e.time, e.seq));
    let mut d = Detection::new(config);
    let mut found = Collected::default();
    for e in events.iter() {
        found.add(d.observe(e));
    }
    found.finish()
}

/// Findings as [`Detection::observe`] emits them, merged: one per id, in the order each was
/// first emitted, each in the state it was last emitted in (a finding is emitted again as it
/// grows).
#[derive(Debug, Default)]
pub struct Collected {
    order: Vec<String>,
    latest: std::collections::HashMap<String, Finding>,
}

impl Collected {
    /// Adds what one `observe` emitted.
    pub fn add(&mut self, found: Vec<Finding>) {
        for f in found {
            if !self.latest.contains_key(&f.id) {
                self.order.push(f.id.clone());
            }
            self.latest.insert(f.id.clone(), f);
        }
    }

    /// The merged findings, in order of first emission.
    pub fn finish(mut self) -> Vec<Finding> {
        self.order.into_iter().filter_map(|id| self.latest.remove(&id)).collect()
    }
}

#[cfg(test)]
mod tests;
