//! `new_network`: a token used from a network outside its baseline (after enough history, not
//! for trusted networks, not for tokens that roam across many networks anyway), and
//! `concurrent_networks`: one token active from several networks within a short window.

use std::collections::{BTreeMap, VecDeque};

use jiff::Timestamp;
use ledger::event::Event;

use super::{Bounded, History, secs, sensitive, token_access, what};
use crate::net::network;
use crate::{DetectConfig, Detector, Finding, FindingType, Open, Severity};

/// A token that has used more networks than this is roaming; a new one is not news.
const ROAMING: usize = 16;

struct TokenNets {
    history: History,
    nets: BTreeMap<String, u64>,
    open: BTreeMap<String, Open>,
}

/// The new-network detector.
pub(crate) struct NewNetwork {
    config: DetectConfig,
    tokens: Bounded<String, TokenNets>,
}

impl NewNetwork {
    pub(crate) fn new(config: &DetectConfig) -> Self {
        NewNetwork { config: config.clone(), tokens: Bounded::new(config.max_keys) }
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
        let Some(net) = network(ip, config.v4_prefix, config.v6_prefix) else { return };
        let now = secs(e.time);
        let st = self.tokens.touch(&token.to_owned(), now, || TokenNets {
            history: History::default(),
            nets: BTreeMap::new(),
            open: BTreeMap::new(),
        });
        let known = st.nets.contains_key(&net);
        if !known && st.history.enough(now, config) && st.nets.len() < ROAMING && !config.trusted(ip) {
            let usual: Vec<&str> = st.nets.keys().map(String::as_str).take(5).collect();
            let summary = format!(
                "token {token} {} from {ip} in {net}, a network it never used in {} requests over {} days (usual: {})",
                what(e),
                st.history.events,
                (now - st.history.first) / 86_400,
                usual.join(", ")
            );
            let severity = if sensitive(e) { Severity::Medium.raised() } else { Severity::Medium };
            let mut d = BTreeMap::new();
            d.insert("network".into(), net.clone());
            d.insert("known_networks".into(), st.nets.len().to_string());
            let o = Open::start(FindingType::NewNetwork, &format!("{token}|{net}"), severity, e, summary, d);
            out.push(o.finding.clone());
            st.open.insert(net.clone(), o);
        } else if let Some(o) = st.open.get_mut(&net)
            && now - secs(o.finding.last_seen) <= 86_400
        {
            // Repeated use of the new network within a day extends the finding.
            o.extend(e, o.finding.severity, None);
            out.push(o.finding.clone());
        }
        st.history.note(now);
        if st.nets.len() < 4 * ROAMING || known {
            *st.nets.entry(net).or_insert(0) += 1;
        }
        st.open.retain(|_, o| now - secs(o.finding.last_seen) <= 86_400);
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

struct Recent {
    seen: VecDeque<(i64, String, Timestamp, String)>,
    /// Learned: the token already used this many networks at once while its baseline formed.
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
        let Some(net) = network(ip, config.v4_prefix, config.v6_prefix) else { return };
        let now = secs(e.time);
        let st = self.tokens.touch(&token.to_owned(), now, || Recent {
            seen: VecDeque::new(),
            usual_concurrency: 0,
            history: History::default(),
            open: None,
        });
        while st.seen.front().is_some_and(|(t, _, _, _)| now - t > config.concurrent_window_s) {
            st.seen.pop_front();
        }
        st.seen.retain(|(_, n, _, _)| *n != net);
        st.seen.push_back((now, net.clone(), e.time, e.id.clone()));
        if st.seen.len() > 64 {
            st.seen.pop_front();
        }
        let distinct = st.seen.len();
        let learning = !st.history.enough(now, config);
        st.history.note(now);
        if learning {
            st.usual_concurrency = st.usual_concurrency.max(distinct);
            return;
        }
        if distinct >= config.concurrent_networks && distinct > st.usual_concurrency {
            let nets: Vec<&str> = st.seen.iter().map(|(_, n, _, _)| n.as_str()).collect();
            let summary = format!(
                "token {token} was used from {distinct} networks within {} minutes ({}); it normally uses at most {}",
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
