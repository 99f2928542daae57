//! `new_network`: a token used from a network outside its baseline (after enough history, not
//! for trusted networks, not for the organization's own networks that other tokens use
//! regularly, not for tokens that roam across many networks anyway), reported when the use shows
//! a sign of another party (a client, route or hour the token never used, going back and forth
//! between networks, a second new network within weeks) and otherwise held as the owner moving;
//! and `concurrent_networks`: one token active from several places within a short window, its
//! own known networks counting as one place.

use std::collections::{BTreeMap, VecDeque};

use jiff::Timestamp;
use ledger::event::Event;

use super::{Bounded, History, day_of, near_hours, secs, sensitive, stable_hash, token_access, what};
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
    /// The last time it was used (seconds).
    last_s: i64,
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
fn note_use(nets: &mut Vec<NetUse>, net: Net, now: i64, baseline: bool) -> bool {
    let day = day_of(now);
    match nets.iter_mut().find(|n| n.net == net) {
        Some(n) => {
            let before = n.established();
            n.last_s = n.last_s.max(now);
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
            let n = NetUse { net, days: 1, last_day: day, last_s: now, baseline };
            nets.push(n);
            n.established()
        }
    }
}

/// Clients (user agents) and routes remembered per token, as stable hashes; beyond these a client
/// or route the token never used is not told apart.
const MAX_AGENTS: usize = 8;
const MAX_ROUTES: usize = 64;
/// The previous event's user agent is kept (to hash a token's usual client only when it changes)
/// up to this length.
const MAX_AGENT_TEXT: usize = 256;

/// Why a new network looks like another party rather than the token's owner moving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sign {
    /// A client (user agent) the token never used.
    NewClient,
    /// A route the token never called.
    NewRoute,
    /// An hour away from every hour the token was active in.
    UnusualHour,
    /// The token went back and forth between this network and another within a few hours.
    BackAndForth,
    /// The token's second new network within `new_network_quiet_days`.
    SecondNewNetwork,
}

impl Sign {
    fn as_str(self) -> &'static str {
        match self {
            Sign::NewClient => "new_client",
            Sign::NewRoute => "new_route",
            Sign::UnusualHour => "unusual_hour",
            Sign::BackAndForth => "back_and_forth",
            Sign::SecondNewNetwork => "second_new_network",
        }
    }
}

/// A new network's finding: reported, or held while the use looks like the owner's own.
struct Watch {
    net: Net,
    open: Open,
    reported: bool,
}

struct TokenNets {
    history: History,
    nets: Vec<NetUse>,
    /// Hashes of the clients (user agents) and routes the token used.
    agents: Vec<u64>,
    routes: Vec<u64>,
    /// The client of the previous event and its hash (consecutive events mostly share it).
    last_agent: (String, u64),
    /// UTC hours of the day the token was active in (24 bits).
    hours: u32,
    /// The last new network held without a report, and when it was first used.
    quiet: Option<(i64, Net)>,
    watches: Vec<Watch>,
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

/// What a sign says in a summary.
fn describe_sign(sign: Sign, e: &Event, other: Option<Net>, config: &DetectConfig) -> String {
    match sign {
        Sign::NewClient => {
            format!("with a client it never used ({})", e.user_agent.as_deref().unwrap_or("no user agent"))
        }
        Sign::NewRoute => format!("calling {}, a route it never called", e.route.as_deref().unwrap_or("?")),
        Sign::UnusualHour => {
            let now = secs(e.time);
            format!(
                "at {:02}:{:02} UTC, away from every hour it was active in",
                now.div_euclid(3600).rem_euclid(24),
                now.div_euclid(60).rem_euclid(60)
            )
        }
        Sign::BackAndForth => format!(
            "going back and forth with {} within {} hours (two parties, not a move)",
            other.map_or_else(|| "its other networks".to_owned(), |n| n.to_string()),
            config.new_network_back_and_forth_s / 3600
        ),
        Sign::SecondNewNetwork => format!(
            "one of two new networks within {} days (the other: {})",
            config.new_network_quiet_days,
            other.map_or_else(|| "?".to_owned(), |n| n.to_string())
        ),
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
            agents: Vec::new(),
            routes: Vec::new(),
            last_agent: (String::new(), stable_hash(&[b""])),
            hours: 0,
            quiet: None,
            watches: Vec::new(),
        });
        let agent = e.user_agent.as_deref().unwrap_or("");
        let agent_hash = if st.last_agent.0 == agent {
            st.last_agent.1
        } else {
            let h = stable_hash(&[agent.as_bytes()]);
            // Kept for the next event only while short: the state per token stays bounded.
            if agent.len() <= MAX_AGENT_TEXT {
                st.last_agent.0.clear();
                st.last_agent.0.push_str(agent);
                st.last_agent.1 = h;
            }
            h
        };
        let route_hash = e.route.as_deref().map(|r| stable_hash(&[r.as_bytes()]));
        let hour = now.div_euclid(3600).rem_euclid(24) as usize;
        // The signs of another party this event shows, against the token's history before it.
        let new_client = st.agents.len() < MAX_AGENTS && !st.agents.contains(&agent_hash);
        let new_route = route_hash.is_some_and(|h| st.routes.len() < MAX_ROUTES && !st.routes.contains(&h));
        let margin = usize::from(config.off_hours_margin_hours);
        let evening = usize::from(config.off_hours_evening_margin_hours).max(margin);
        let unusual_hour = st.hours != 0 && !near_hours(st.hours, hour, margin, evening);
        let own_signs = |signs: &mut Vec<Sign>| {
            if new_client {
                signs.push(Sign::NewClient);
            }
            if new_route {
                signs.push(Sign::NewRoute);
            }
            if unusual_hour {
                signs.push(Sign::UnusualHour);
            }
        };
        let window = config.new_network_back_and_forth_s;
        // This network's previous use, before this event.
        let prev_here = st.nets.iter().find(|n| n.net == net).map(|n| n.last_s);

        let known = prev_here.is_some();
        let learned = st.history.enough(now, config);
        let candidate = !known && learned && st.nets.len() < ROAMING && !config.trusted(ip);
        let shared_by = if candidate { self.shared.get(&net).copied().unwrap_or(0) } else { 0 };
        if candidate && shared_by < config.shared_network_tokens {
            let mut signs = Vec::new();
            own_signs(&mut signs);
            let quiet_before = st.quiet.filter(|(t, _)| now - t <= i64::from(config.new_network_quiet_days) * 86_400);
            if quiet_before.is_some() {
                signs.push(Sign::SecondNewNetwork);
            }
            // The five it used on the most days.
            let mut by_days: Vec<&NetUse> = st.nets.iter().collect();
            by_days.sort_by_key(|n| std::cmp::Reverse(n.days));
            let usual: Vec<String> = by_days.iter().take(5).map(|n| n.net.to_string()).collect();
            let mut summary = format!(
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
            // With no quiet days, nothing is held: every new network is reported.
            let reported = !signs.is_empty() || config.new_network_quiet_days == 0;
            if let Some((_, first)) = quiet_before {
                // The held one is reported too, if it is still being watched: two new networks
                // in a row are a token moving around, not its owner moving once.
                for w in st.watches.iter_mut().filter(|w| w.net == first && !w.reported) {
                    report(w, &[Sign::SecondNewNetwork], e, Some(net), config, out);
                }
            }
            if reported {
                let why: Vec<String> =
                    signs.iter().map(|s| describe_sign(*s, e, quiet_before.map(|q| q.1), config)).collect();
                summary = format!("{summary}, {}", why.join(", "));
                d.insert("signs".into(), signs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","));
            } else {
                st.quiet = Some((now, net));
            }
            let o = Open::start(FindingType::NewNetwork, &format!("{token}|{net}"), severity, e, summary, d);
            if reported {
                out.push(o.finding.clone());
            }
            st.watches.retain(|w| w.net != net);
            st.watches.push(Watch { net, open: o, reported });
        } else if !st.watches.is_empty() {
            let nets = &st.nets;
            for w in &mut st.watches {
                let last = secs(w.open.finding.last_seen);
                if w.net == net {
                    if now - last > 86_400 {
                        continue;
                    }
                    // Repeated use of the new network within a day extends the finding.
                    let severity = w.open.finding.severity;
                    w.open.extend(e, severity, None);
                    if w.reported {
                        out.push(w.open.finding.clone());
                        continue;
                    }
                    let mut signs = Vec::new();
                    own_signs(&mut signs);
                    // Back here after using another network since, within the window.
                    let other = nets.iter().filter(|n| n.net != net && n.last_s > last).max_by_key(|n| n.last_s);
                    if let Some(o) = other
                        && now - last <= window
                    {
                        signs.push(Sign::BackAndForth);
                        report(w, &signs, e, Some(o.net), config, out);
                    } else if !signs.is_empty() {
                        report(w, &signs, e, None, config, out);
                    }
                } else if !w.reported
                    && now - last <= window
                    && let Some(prev) = prev_here
                    && now - prev <= window
                    && last > prev
                {
                    // Back on this network within the window, after using the held one since.
                    report(w, &[Sign::BackAndForth], e, Some(net), config, out);
                }
            }
        }
        st.history.note(now);
        st.hours |= 1 << hour;
        if new_client {
            st.agents.push(agent_hash);
        }
        if let (true, Some(h)) = (new_route, route_hash) {
            st.routes.push(h);
        }
        // Only use on two days or more counts towards a network being the organization's.
        if note_use(&mut st.nets, net, now, false) {
            *self.shared.touch(&net, now, || 0) += 1;
        }
        if !st.watches.is_empty() {
            st.watches.retain(|w| now - secs(w.open.finding.last_seen) <= 86_400);
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

/// Reports a held new network: the signs join its summary and details, and the finding (with the
/// evidence gathered while it was held) is emitted.
fn report(w: &mut Watch, signs: &[Sign], e: &Event, other: Option<Net>, config: &DetectConfig, out: &mut Vec<Finding>) {
    let why: Vec<String> = signs.iter().map(|s| describe_sign(*s, e, other, config)).collect();
    let f = &mut w.open.finding;
    f.summary = format!("{}, {}", f.summary, why.join(", "));
    f.details.insert("signs".into(), signs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","));
    w.reported = true;
    out.push(f.clone());
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
        note_use(&mut st.nets, net, now, learning);
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
