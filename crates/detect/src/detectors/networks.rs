//! `new_network`: a token used from a network outside its baseline (after enough history, not
//! for trusted networks, not for the organization's own networks that other tokens use
//! regularly, not for tokens that roam across many networks anyway), and `concurrent_networks`:
//! one token active from several places within a short window, its own known networks counting
//! as one place.

use std::collections::{BTreeMap, VecDeque};

use jiff::Timestamp;
use ledger::event::Event;

use super::{Bounded, History, day_of, secs, sensitive, token_access, what};
use crate::net::Net;
use crate::{DetectConfig, Detector, Finding, FindingType, Open, Severity};

/// A token that has used more networks than this is roaming; a new one is not news.
const ROAMING: usize = 16;

/// Networks remembered per token (beyond it, only the known ones are counted).
const MAX_NETS: usize = 4 * ROAMING;

/// How a token used one network.
#[derive(Clone, Copy, Debug)]
struct NetUse {
    net: Net,
    /// Distinct UTC days it was used on (saturating).
    days: u16,
    last_day: i64,
    /// Used while the token's baseline formed.
    baseline: bool,
}

impl NetUse {
    /// Regular use: while the baseline formed, or on two days or more. One day of use (an
    /// incident in progress) does not make a network the token's own.
    fn established(&self) -> bool {
        self.baseline || self.days >= 2
    }
}

/// The networks a token used, with how; records a use and says whether it made the network
/// established just now.
fn note_use(nets: &mut Vec<NetUse>, net: Net, day: i64, baseline: bool) -> bool {
    match nets.iter_mut().find(|n| n.net == net) {
        Some(n) => {
            let before = n.established();
            if n.last_day != day {
                n.last_day = day;
                n.days = n.days.saturating_add(1);
            }
            n.baseline |= baseline;
            !before && n.established()
        }
        None => {
            if nets.len() >= MAX_NETS {
                return false;
            }
            let n = NetUse { net, days: 1, last_day: day, baseline };
            nets.push(n);
            n.established()
        }
    }
}

struct TokenNets {
    history: History,
    nets: Vec<NetUse>,
    open: Vec<(Net, Open)>,
}

/// The new-network detector.
pub(crate) struct NewNetwork {
    config: DetectConfig,
    tokens: Bounded<String, TokenNets>,
    /// Per network, how many tokens use it regularly.
    shared: Bounded<Net, u32>,
}

impl NewNetwork {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        NewNetwork {
            config: config.clone(),
            tokens: Bounded::new(config.max_keys),
            shared: Bounded::new(config.max_keys),
        }
    }
}

impl Detector for NewNetwork {
    fn name(&self) -> &'static str {
        FindingType::NewNetwork.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        let Some(token) = token_access(e) else { return };
        let Some(ip) = e.source_ip.as_deref() else { return };
        let config = &self.config;
        let Some(net) = Net::of(ip, config.v4_prefix, config.v6_prefix) else { return };
        let now = secs(e.time);
        let st = self.tokens.touch(token, now, || TokenNets {
            history: History::default(),
            nets: Vec::new(),
            open: Vec::new(),
        });
        let known = st.nets.iter().any(|n| n.net == net);
        let learned = st.history.enough(now, config);
        let candidate = !known && learned && st.nets.len() < ROAMING && !config.trusted(ip);
        let shared_by = if candidate { self.shared.get(&net).copied().unwrap_or(0) } else { 0 };
        if candidate && shared_by < config.shared_network_tokens {
            // The five it used on the most days.
            let mut by_days: Vec<&NetUse> = st.nets.iter().collect();
            by_days.sort_by_key(|n| std::cmp::Reverse(n.days));
            let usual: Vec<String> = by_days.iter().take(5).map(|n| n.net.to_string()).collect();
            let summary = format!(
                "token {token} {} from {ip} in {net}, a network it never used in {} requests over {} days (usual: {})",
                what(e),
                st.history.events,
                (now - st.history.first) / 86_400,
                usual.join(", ")
            );
            let severity = if sensitive(e) { Severity::Medium.raised() } else { Severity::Medium };
            let mut d = BTreeMap::new();
            d.insert("network".into(), net.to_string());
            d.insert("known_networks".into(), st.nets.len().to_string());
            if shared_by > 0 {
                d.insert("other_tokens_using_it".into(), shared_by.to_string());
            }
            let o = Open::start(FindingType::NewNetwork, &format!("{token}|{net}"), severity, e, summary, d);
            out.push(o.finding.clone());
            st.open.retain(|(n, _)| *n != net);
            st.open.push((net, o));
        } else if let Some((_, o)) = st.open.iter_mut().find(|(n, _)| *n == net)
            && now - secs(o.finding.last_seen) <= 86_400
        {
            // Repeated use of the new network within a day extends the finding.
            o.extend(e, o.finding.severity, None);
            out.push(o.finding.clone());
        }
        st.history.note(now);
        // Only use on two days or more counts towards a network being the organization's.
        if note_use(&mut st.nets, net, day_of(now), false) {
            *self.shared.touch(&net, now, || 0) += 1;
        }
        if !st.open.is_empty() {
            st.open.retain(|(_, o)| now - secs(o.finding.last_seen) <= 86_400);
        }
    }

    fn prune(&mut self, now: Timestamp) {
        self.tokens.prune(secs(now) - 90 * 86_400);
        self.shared.prune(secs(now) - 90 * 86_400);
    }

    fn tracked(&self) -> usize {
        self.tokens.len().max(self.shared.len())
    }

    fn bound(&self) -> usize {
        self.tokens.cap()
    }
}

struct Recent {
    /// The window: time, network, event time and id (for the evidence), one entry per network.
    seen: VecDeque<(i64, Net, Timestamp, String)>,
    nets: Vec<NetUse>,
    /// Learned: the token already used this many places at once while its baseline formed.
    usual_concurrency: usize,
    history: History,
    open: Option<Open>,
}

/// The concurrent-networks detector.
pub(crate) struct ConcurrentNetworks {
    config: DetectConfig,
    tokens: Bounded<String, Recent>,
}

impl ConcurrentNetworks {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        ConcurrentNetworks { config: config.clone(), tokens: Bounded::new(config.max_keys) }
    }
}

impl Detector for ConcurrentNetworks {
    fn name(&self) -> &'static str {
        FindingType::ConcurrentNetworks.as_str()
    }

    fn observe(&mut self, e: &Event, out: &mut Vec<Finding>) {
        let Some(token) = token_access(e) else { return };
        let Some(ip) = e.source_ip.as_deref() else { return };
        let config = &self.config;
        if config.trusted(ip) {
            return;
        }
        let Some(net) = Net::of(ip, config.v4_prefix, config.v6_prefix) else { return };
        let now = secs(e.time);
        let st = self.tokens.touch(token, now, || Recent {
            seen: VecDeque::new(),
            nets: Vec::new(),
            usual_concurrency: 0,
            history: History::default(),
            open: None,
        });
        while st.seen.front().is_some_and(|(t, _, _, _)| now - t > config.concurrent_window_s) {
            st.seen.pop_front();
        }
        // One entry per network, the latest; its id string is reused rather than reallocated.
        let mut entry = match st.seen.iter().position(|(_, n, _, _)| *n == net) {
            Some(i) => st.seen.remove(i).unwrap_or((now, net, e.time, String::new())),
            None => (now, net, e.time, String::new()),
        };
        entry.0 = now;
        entry.2 = e.time;
        entry.3.clone_from(&e.id);
        st.seen.push_back(entry);
        if st.seen.len() > 64 {
            st.seen.pop_front();
        }
        let learning = !st.history.enough(now, config);
        st.history.note(now);
        note_use(&mut st.nets, net, day_of(now), learning);
        // Places: every network of the window the token does not use regularly, and its own
        // networks together as one (a service deployed in three networks is in one place).
        let own = |n: &Net| st.nets.iter().any(|u| u.net == *n && u.established());
        let foreign = st.seen.iter().filter(|(_, n, _, _)| !own(n)).count();
        let places = foreign + usize::from(foreign < st.seen.len());
        if learning {
            st.usual_concurrency = st.usual_concurrency.max(places);
            return;
        }
        if places >= config.concurrent_networks && places > st.usual_concurrency {
            let nets: Vec<String> = st.seen.iter().map(|(_, n, _, _)| n.to_string()).collect();
            let summary = format!(
                "token {token} was used from {places} places within {} minutes ({}; {foreign} of them networks it does not use regularly); it normally uses at most {}",
                config.concurrent_window_s / 60,
                nets.join(", "),
                st.usual_concurrency.max(1)
            );
            let severity = if sensitive(e) { Severity::High.raised() } else { Severity::High };
            match &mut st.open {
                Some(o) if now - secs(o.finding.last_seen) <= config.concurrent_window_s * 4 => {
                    o.extend(e, severity, Some(summary));
                    out.push(o.finding.clone());
                }
                slot => {
                    let mut d = BTreeMap::new();
                    d.insert("networks".into(), nets.join(","));
                    let window: Vec<(Timestamp, String)> =
                        st.seen.iter().map(|(_, _, t, id)| (*t, id.clone())).collect();
                    let o =
                        Open::start_window(FindingType::ConcurrentNetworks, token, severity, e, &window, summary, d);
                    out.push(o.finding.clone());
                    *slot = Some(o);
                }
            }
        }
    }

    fn prune(&mut self, now: Timestamp) {
        self.tokens.prune(secs(now) - 90 * 86_400);
    }

    fn tracked(&self) -> usize {
        self.tokens.len()
    }

    fn bound(&self) -> usize {
        self.tokens.cap()
    }
}
