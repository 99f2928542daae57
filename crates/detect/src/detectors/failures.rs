//! Detectors of failures: `brute_force` (bad credentials from one network), `scope_probing`
//! (insufficient-scope denials across routes), and `revoked_token_use` / `expired_token_use`
//! (one finding per token per window, not one per request).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jiff::Timestamp;
use ledger::event::{Event, Kind, Verdict};
use token::Reason;

use super::{Bounded, secs, token_access};
use crate::net::Net;
use crate::{DetectConfig, Detector, Finding, FindingType, Open, Severity};

struct Window {
    times: VecDeque<(i64, Timestamp, String)>,
    addresses: BTreeSet<String>,
    open: Option<Open>,
}

/// Guessing: many malformed, mistyped or unknown credentials from one network.
pub(crate) struct BruteForce {
    config: DetectConfig,
    networks: Bounded<Net, Window>,
}

impl BruteForce {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        BruteForce { config: config.clone(), networks: Bounded::new(config.max_keys) }
    }
}

impl Detector for BruteForce {
    fn name(&self) -> &'static str {
        FindingType::BruteForce.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        if e.kind != Kind::Access
            || !matches!(e.reason, Reason::MalformedToken | Reason::BadChecksum | Reason::UnknownToken)
        {
            return;
        }
        let Some(ip) = e.source_ip.as_deref() else { return };
        let config = &self.config;
        let Some(net) = Net::of(ip, config.v4_prefix, config.v6_prefix) else { return };
        let now = secs(e.time);
        let w = self.networks.touch(&net, now, || Window {
            times: VecDeque::new(),
            addresses: BTreeSet::new(),
            open: None,
        });
        while w.times.front().is_some_and(|(t, _, _)| now - t > config.brute_force_window_s) {
            w.times.pop_front();
        }
        w.times.push_back((now, e.time, e.id.clone()));
        if w.times.len() > config.brute_force_threshold * 4 {
            w.times.pop_front();
        }
        if w.addresses.len() < 32 {
            w.addresses.insert(ip.to_owned());
        }
        let n = w.times.len();
        let open_recent = w.open.as_ref().is_some_and(|o| now - secs(o.finding.last_seen) <= 3600);
        if n >= config.brute_force_threshold || open_recent {
            let severity = if n >= config.brute_force_threshold * 4 { Severity::Critical } else { Severity::High };
            let summary = format!(
                "{n} bad credentials (malformed, mistyped or unknown tokens) from {net} within {} minutes, from {} addresses",
                config.brute_force_window_s / 60,
                w.addresses.len()
            );
            match &mut w.open {
                Some(o) if open_recent => {
                    o.extend(e, severity, Some(summary));
                    out.push(o.finding.clone());
                }
                slot => {
                    let mut d = BTreeMap::new();
                    d.insert("network".into(), net.to_string());
                    d.insert("threshold".into(), config.brute_force_threshold.to_string());
                    let window: Vec<(Timestamp, String)> = w.times.iter().map(|(_, t, id)| (*t, id.clone())).collect();
                    let mut o =
                        Open::start_window(FindingType::BruteForce, &net.to_string(), severity, e, &window, summary, d);
                    o.finding.token_id = None;
                    out.push(o.finding.clone());
                    *slot = Some(o);
                }
            }
        }
    }

    fn prune(&mut self, now: Timestamp) {
        self.networks.prune(secs(now) - 86_400);
    }

    fn tracked(&self) -> usize {
        self.networks.len()
    }

    fn bound(&self) -> usize {
        self.networks.cap()
    }
}

struct Probes {
    denials: VecDeque<(i64, String, Timestamp, String)>,
    open: Option<Open>,
}

/// Probing: a valid token denied for insufficient scope on many distinct routes.
pub(crate) struct ScopeProbing {
    config: DetectConfig,
    tokens: Bounded<String, Probes>,
}

impl ScopeProbing {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        ScopeProbing { config: config.clone(), tokens: Bounded::new(config.max_keys) }
    }
}

impl Detector for ScopeProbing {
    fn name(&self) -> &'static str {
        FindingType::ScopeProbing.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        if e.reason != Reason::InsufficientScope {
            return;
        }
        let Some(token) = token_access(e) else { return };
        let config = &self.config;
        let now = secs(e.time);
        let route = e.route.clone().or_else(|| e.path.clone()).unwrap_or_default();
        let p = self.tokens.touch(token, now, || Probes { denials: VecDeque::new(), open: None });
        while p.denials.front().is_some_and(|(t, _, _, _)| now - t > config.probing_window_s) {
            p.denials.pop_front();
        }
        p.denials.push_back((now, route, e.time, e.id.clone()));
        if p.denials.len() > 256 {
            p.denials.pop_front();
        }
        let routes: BTreeSet<&str> = p.denials.iter().map(|(_, r, _, _)| r.as_str()).collect();
        let open_recent = p.open.as_ref().is_some_and(|o| now - secs(o.finding.last_seen) <= config.probing_window_s);
        if routes.len() >= config.probing_routes || open_recent {
            let scopes = e.granted_scopes.join(", ");
            let summary = format!(
                "token {token} was denied for insufficient scope on {} distinct routes within {} minutes (it holds [{scopes}])",
                routes.len(),
                config.probing_window_s / 60
            );
            let severity = if routes.len() >= config.probing_routes * 3 { Severity::Critical } else { Severity::High };
            match &mut p.open {
                Some(o) if open_recent => {
                    o.extend(e, severity, Some(summary));
                    out.push(o.finding.clone());
                }
                slot => {
                    let mut d = BTreeMap::new();
                    d.insert("routes".into(), routes.iter().copied().collect::<Vec<_>>().join(","));
                    let window: Vec<(Timestamp, String)> =
                        p.denials.iter().map(|(_, _, t, id)| (*t, id.clone())).collect();
                    let o = Open::start_window(FindingType::ScopeProbing, token, severity, e, &window, summary, d);
                    out.push(o.finding.clone());
                    *slot = Some(o);
                }
            }
        }
    }

    fn prune(&mut self, now: Timestamp) {
        self.tokens.prune(secs(now) - 86_400);
    }

    fn tracked(&self) -> usize {
        self.tokens.len()
    }

    fn bound(&self) -> usize {
        self.tokens.cap()
    }
}

/// What a token-end detector keeps per token.
#[derive(Default)]
struct EndState {
    open: Option<Open>,
    /// expired_token_use: networks the token was allowed from (at most [`END_NETS`]).
    nets: Vec<Net>,
}

/// Networks remembered per token for the expiry grace.
const END_NETS: usize = 16;

/// Use of a token after its end: revoked or expired.
pub(crate) struct MisuseAfterEnd {
    config: DetectConfig,
    kind: FindingType,
    reason: Reason,
    tokens: Bounded<String, EndState>,
}

impl MisuseAfterEnd {
    pub(crate) fn revoked(config: &DetectConfig) -> Self {
        MisuseAfterEnd {
            config: config.clone(),
            kind: FindingType::RevokedTokenUse,
            reason: Reason::Revoked,
            tokens: Bounded::new(config.max_keys),
        }
    }

    pub(crate) fn expired(config: &DetectConfig) -> Self {
        MisuseAfterEnd {
            config: config.clone(),
            kind: FindingType::ExpiredTokenUse,
            reason: Reason::Expired,
            tokens: Bounded::new(config.max_keys),
        }
    }
}

impl Detector for MisuseAfterEnd {
    fn name(&self) -> &'static str {
        self.kind.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        let config = &self.config;
        let expiry = self.reason == Reason::Expired;
        if expiry
            && config.expired_grace_s > 0
            && e.decision == Verdict::Allow
            && let Some(token) = token_access(e)
            && let Some(net) = e.source_ip.as_deref().and_then(|ip| Net::of(ip, config.v4_prefix, config.v6_prefix))
        {
            // Where the token is used from, for the grace after its expiry.
            let st = self.tokens.touch(token, secs(e.time), EndState::default);
            if !st.nets.contains(&net) && st.nets.len() < END_NETS {
                st.nets.push(net);
            }
            return;
        }
        if e.reason != self.reason {
            return;
        }
        let Some(token) = token_access(e) else { return };
        let now = secs(e.time);
        let window = config.misuse_window_s;
        let st = self.tokens.touch(token, now, EndState::default);
        let (state, since) = if self.reason == Reason::Revoked {
            ("revoked", e.details.get("revoked_at").cloned().unwrap_or_else(|| "an unknown time".into()))
        } else {
            ("expired", e.details.get("expires_at").cloned().unwrap_or_else(|| "an unknown time".into()))
        };
        let open_recent = st.open.as_ref().is_some_and(|o| now - secs(o.finding.last_seen) <= window);
        if expiry && !open_recent {
            // A client that keeps calling for a few minutes after its token expired, from where the
            // token is always used, is waiting for the renewed token: not misuse, unless it goes on.
            let just_expired = e
                .details
                .get("expires_at")
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| (0..=config.expired_grace_s).contains(&(now - secs(t))));
            let from_known = e
                .source_ip
                .as_deref()
                .and_then(|ip| Net::of(ip, config.v4_prefix, config.v6_prefix))
                .is_some_and(|n| st.nets.contains(&n));
            if just_expired && from_known {
                return;
            }
        }
        let ip = e.source_ip.clone().unwrap_or_else(|| "an unknown address".into());
        match &mut st.open {
            Some(o) if open_recent => {
                let n = o.finding.event_count + 1;
                let summary = format!("token {token}, {state} at {since}, was presented {n} times, last from {ip}");
                o.extend(e, o.finding.severity, Some(summary));
                out.push(o.finding.clone());
            }
            slot => {
                let severity = if self.reason == Reason::Revoked { Severity::High } else { Severity::Medium };
                let severity = if super::sensitive(e) { severity.raised() } else { severity };
                let summary = format!("token {token}, {state} at {since}, was presented from {ip}");
                let mut d = BTreeMap::new();
                d.insert(format!("{state}_at"), since);
                let o = Open::start(self.kind, token, severity, e, summary, d);
                out.push(o.finding.clone());
                *slot = Some(o);
            }
        }
    }

    fn prune(&mut self, now: Timestamp) {
        // The expiry grace needs the token's networks for as long as the token may still expire.
        let keep = if self.reason == Reason::Expired { 30 * 86_400 } else { self.config.misuse_window_s * 2 };
        self.tokens.prune(secs(now) - keep);
    }

    fn tracked(&self) -> usize {
        self.tokens.len()
    }

    fn bound(&self) -> usize {
        self.tokens.cap()
    }
}
