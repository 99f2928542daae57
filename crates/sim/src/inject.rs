//! Misuse, injected into the normal traffic with labels: which kind, which token or network,
//! when, and the ids of the events it produced.
//!
//! One injection per victim token, so that the labels say unambiguously what each finding is
//! about. Victims are chosen among tokens whose own history can show the misuse (the detectors
//! document that they need `min_history_events` over `min_history_days`): attacks that compare
//! with a baseline are placed after the warm-up on tokens busy enough to have one.
//! Tokens that are revoked, expired or dormant for an injection have that lifecycle applied to
//! their normal traffic too (their owner stops using them).

use std::collections::BTreeMap;

use detect::FindingType;
use ledger::event::format_time;
use token::Reason;

use crate::rng::Rng;
use crate::traffic::{Call, Out, access_event, bad_credential_event, ts};
use crate::world::{Archetype, End, Ids, Net, Pool, ROLES, ROUTES, TokenSpec, World, allows, route_index};
use crate::zone;

/// One injected misuse, as the labels file records it.
#[derive(Clone, Debug, PartialEq)]
pub struct Injection {
    /// `inj-01`, …
    pub id: String,
    /// The finding type that should report it.
    pub kind: FindingType,
    /// The token misused (none for guessing).
    pub token_id: Option<String>,
    /// The first address it came from.
    pub source_ip: String,
    /// The network it came from (as detection names networks).
    pub network: String,
    /// First event, microseconds.
    pub start_us: i64,
    /// Last event, microseconds.
    pub end_us: i64,
    /// Every event it produced.
    pub event_ids: Vec<String>,
    /// What happened, in one sentence.
    pub description: String,
}

/// An injection planned before traffic is generated.
#[derive(Clone, Debug)]
pub struct Planned {
    /// The finding type.
    pub kind: FindingType,
    /// The victim token (population index).
    pub victim: Option<usize>,
    /// When it starts, seconds since the epoch.
    pub start_s: i64,
    /// The network it comes from.
    pub nets: Vec<Net>,
    /// What happened.
    pub description: String,
}

/// Requests per day a token is expected to make on a working day (to pick victims with a baseline).
fn expected_per_day(t: &TokenSpec) -> f64 {
    let p = &t.params;
    match t.archetype {
        Archetype::Human => p.sessions_per_h * (p.end_h - p.start_h) * p.per_session,
        Archetype::Service => p.rate_per_min * 0.55 * 1440.0,
        Archetype::Partner => p.rate_per_min * 60.0 * (p.end_h - p.start_h),
        Archetype::Ci => p.run_h * p.per_session,
        Archetype::Batch => p.items,
    }
}

fn has_baseline(t: &TokenSpec) -> bool {
    expected_per_day(t) * 5.0 >= 250.0
}

fn get_routes(t: &TokenSpec, f: impl Fn(&crate::world::Route) -> bool) -> Vec<usize> {
    t.routes.iter().map(|(r, _)| *r).filter(|r| ROUTES[*r].method == "GET" && f(&ROUTES[*r])).collect()
}

fn lacking(t: &TokenSpec) -> Vec<usize> {
    (0..ROUTES.len()).filter(|i| !allows(&t.scopes, &ROUTES[*i])).collect()
}

/// The misuse kinds injected, in the order they are planned: the most demanding victims first.
pub const INJECTED: [FindingType; 11] = [
    FindingType::OffHours,
    FindingType::DormantReactivation,
    FindingType::Enumeration,
    FindingType::FirstSensitiveAccess,
    FindingType::VolumeSpike,
    FindingType::RevokedTokenUse,
    FindingType::ExpiredTokenUse,
    FindingType::ConcurrentNetworks,
    FindingType::NewNetwork,
    FindingType::ScopeProbing,
    FindingType::BruteForce,
];

fn eligible(kind: FindingType, t: &TokenSpec) -> bool {
    use Archetype::*;
    let a = t.archetype;
    match kind {
        FindingType::OffHours => {
            a == Human && ["support", "clinician", "finance"].contains(&ROLES[t.role].name) && has_baseline(t)
        }
        FindingType::NewNetwork => matches!(a, Human | Service | Partner) && has_baseline(t),
        FindingType::ConcurrentNetworks => {
            matches!(a, Human | Service | Partner) && t.networks.len() <= 2 && has_baseline(t)
        }
        FindingType::ScopeProbing => a != Batch && lacking(t).len() >= 6,
        FindingType::RevokedTokenUse => matches!(a, Human | Partner),
        FindingType::ExpiredTokenUse => matches!(a, Ci | Partner | Human),
        FindingType::DormantReactivation => matches!(a, Human | Ci),
        FindingType::Enumeration => {
            matches!(a, Human | Partner)
                && !get_routes(t, |r| matches!(r.ids, Ids::Number(_))).is_empty()
                && has_baseline(t)
        }
        FindingType::VolumeSpike => {
            matches!(a, Human | Service | Partner)
                && !get_routes(t, |r| r.ids == Ids::None).is_empty()
                && has_baseline(t)
        }
        FindingType::FirstSensitiveAccess => a != Batch && !t.sensitive && has_baseline(t),
        // Guessing has no victim token; types not injected have none either.
        _ => false,
    }
}

/// A UTC second on day `d` (of a trace starting at `start_s`) at local hour `h` of the token's zone.
fn local_at(start_s: i64, t: &TokenSpec, d: i64, h: f64) -> i64 {
    t.zone.to_utc(start_s + d * 86_400 + (h * 3600.0) as i64)
}

/// A working day (Monday to Friday, local) in [from, to).
fn workday(w: &World, rng: &mut Rng, from: i64, to: i64) -> i64 {
    for _ in 0..50 {
        let d = rng.int(from, to);
        if !zone::weekend(zone::weekday(w.start_s.div_euclid(86_400) + d)) {
            return d;
        }
    }
    from
}

/// Plans `per_type` injections of every kind in the scored window (after `warmup_days`), and
/// applies the lifecycle they need to their victims. Kinds without an eligible victim are listed
/// in the second value.
pub fn plan(w: &mut World, seed: u64, per_type: usize, warmup_days: i64) -> (Vec<Planned>, Vec<String>) {
    let mut rng = Rng::stream(seed, 2);
    let mut used = vec![false; w.tokens.len()];
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    let first = warmup_days + 1;
    let last = w.days - 1;
    if last <= first {
        return (planned, INJECTED.iter().map(|k| format!("{}: the trace is too short", k.as_str())).collect());
    }
    for kind in INJECTED {
        for _ in 0..per_type {
            if kind == FindingType::BruteForce {
                let net = w.networks.draw(Pool::Hostile, &mut rng);
                let start_s = w.start_s + rng.int(first, last) * 86_400 + rng.int(0, 86_400 - 3600);
                planned.push(Planned {
                    kind,
                    victim: None,
                    start_s,
                    nets: vec![net],
                    description: format!("token guessing from {}", net.text()),
                });
                continue;
            }
            let candidates: Vec<usize> = (0..w.tokens.len())
                .filter(|i| !used[*i] && w.tokens[*i].created_s < w.start_s && eligible(kind, &w.tokens[*i]))
                .collect();
            if candidates.is_empty() {
                skipped.push(format!("{}: no eligible victim left", kind.as_str()));
                continue;
            }
            let v = *rng.pick(&candidates);
            used[v] = true;
            let d = workday(w, &mut rng, first, last);
            let hostile = w.networks.draw(Pool::Hostile, &mut rng);
            let more = [w.networks.draw(Pool::Hostile, &mut rng), w.networks.draw(Pool::Hostile, &mut rng)];
            let start0 = w.start_s;
            let t = &mut w.tokens[v];
            let usual = *t.networks.last().unwrap_or(&hostile);
            let during_hours = |t: &TokenSpec, rng: &mut Rng| match t.archetype {
                Archetype::Service => start0 + d * 86_400 + rng.int(8 * 3600, 20 * 3600),
                _ => local_at(start0, t, d, rng.uniform(10.5, 15.0)),
            };
            let (start_s, nets, description) = match kind {
                FindingType::OffHours => {
                    let s = local_at(start0, t, d, rng.uniform(3.0, 3.5));
                    (s, vec![usual], format!("{}'s token reads sensitive data at 03:00 {} time", t.owner, t.zone.name))
                }
                FindingType::NewNetwork => {
                    (during_hours(t, &mut rng), vec![hostile], format!("stolen token used from {}", hostile.text()))
                }
                FindingType::ConcurrentNetworks => {
                    let nets = vec![hostile, more[0], more[1]];
                    (during_hours(t, &mut rng), nets, "leaked token used from three networks at once".to_owned())
                }
                FindingType::ScopeProbing => {
                    let net = if rng.chance(0.5) { usual } else { hostile };
                    (during_hours(t, &mut rng), vec![net], "token tried on routes outside its scopes".to_owned())
                }
                FindingType::RevokedTokenUse => {
                    let revoked = w.start_s + rng.int((first - 4) * 86_400, (d - 1) * 86_400);
                    t.end = Some((End::Revoked, revoked));
                    let net = if rng.chance(0.6) { hostile } else { usual };
                    (during_hours(t, &mut rng), vec![net], "revoked token (its owner left) used again".to_owned())
                }
                FindingType::ExpiredTokenUse => {
                    let expired = w.start_s + rng.int((first - 6) * 86_400, (d - 1) * 86_400);
                    t.end = Some((End::Expired, expired));
                    (
                        during_hours(t, &mut rng),
                        vec![hostile],
                        "expired token found in an old config and tried".to_owned(),
                    )
                }
                FindingType::DormantReactivation => {
                    let s = during_hours(t, &mut rng);
                    t.created_s = s - rng.int(45, 60) * 86_400;
                    t.end = Some((End::Silent, t.created_s + rng.int(8, 12) * 86_400));
                    let net = if rng.chance(0.5) { hostile } else { usual };
                    (s, vec![net], "token silent for over a month used again".to_owned())
                }
                FindingType::Enumeration => {
                    let net = if rng.chance(0.5) { usual } else { hostile };
                    (
                        during_hours(t, &mut rng),
                        vec![net],
                        "object ids walked one by one on one route (BOLA)".to_owned(),
                    )
                }
                FindingType::VolumeSpike => (
                    during_hours(t, &mut rng),
                    vec![usual],
                    "token scraping a list endpoint far above its rate".to_owned(),
                ),
                FindingType::FirstSensitiveAccess => (
                    during_hours(t, &mut rng),
                    vec![usual],
                    "token reads a kind of sensitive data it never touched".to_owned(),
                ),
                _ => continue,
            };
            planned.push(Planned { kind, victim: Some(v), start_s, nets, description });
        }
    }
    (planned, skipped)
}

fn agent_of(t: &TokenSpec, rng: &mut Rng, hostile: bool) -> &'static str {
    if hostile && rng.chance(0.6) { "python-requests/2.32.3" } else { t.agents[0] }
}

/// The label of a planned injection (its events, addresses and times are filled in as they
/// are released).
pub fn label(p: &Planned, index: usize, w: &World) -> Injection {
    Injection {
        id: format!("inj-{:02}", index + 1),
        kind: p.kind,
        token_id: p.victim.map(|v| w.tokens[v].id.clone()),
        source_ip: String::new(),
        network: p.nets.first().map(Net::text).unwrap_or_default(),
        start_us: p.start_s * 1_000_000,
        end_us: p.start_s * 1_000_000,
        event_ids: Vec::new(),
        description: p.description.clone(),
    }
}

/// Generates an injection's events, tagged with its index.
pub fn emit(p: &Planned, index: u32, w: &World, seed: u64, out: &mut Out) {
    let mut rng = Rng::stream(seed, 5000 + u64::from(index));
    let net = p.nets[0];
    let hosts: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
    let tag = Some(index);
    let mut t_s = p.start_s as f64 + rng.uniform(0.0, 1.0);
    let Some(v) = p.victim else {
        // Guessing: many bad credentials from a few addresses in one network, several a minute.
        let n = rng.int(40, 250);
        let addrs: Vec<String> = hosts[..rng.int(1, 5) as usize].iter().map(|h| net.addr(*h)).collect();
        let gap = rng.uniform(0.5, 5.0);
        for _ in 0..n {
            let reason =
                *rng.pick(&[Reason::UnknownToken, Reason::UnknownToken, Reason::BadChecksum, Reason::MalformedToken]);
            let route = rng.below(ROUTES.len() as u64) as usize;
            let id = ROUTES[route].random_id(&mut rng);
            let ip = rng.pick(&addrs).clone();
            let call =
                Call { time_us: (t_s * 1e6) as i64, ip: &ip, agent: "python-requests/2.32.3", route, id, reason };
            out.push(bad_credential_event(&call, "gateway", &mut rng), None, tag);
            t_s += rng.exp(gap) + 0.05;
        }
        return;
    };
    let t = &w.tokens[v];
    let hostile = !t.networks.contains(&net);
    let agent = agent_of(t, &mut rng, hostile);
    let weights: Vec<f64> = t.routes.iter().map(|(_, w)| *w).collect();
    let mut push = |rng: &mut Rng, time_s: f64, ip: String, route: usize, id: Option<u64>, reason: Reason| {
        let id = id.unwrap_or_else(|| ROUTES[route].random_id(rng));
        let call = Call { time_us: (time_s * 1e6) as i64, ip: &ip, agent, route, id, reason };
        let mut e = access_event(t, &call, rng);
        if reason == Reason::Ok && !allows(&e.granted_scopes, &ROUTES[route]) {
            // The token was widened (or over-permissioned from the start) to allow what it does.
            e.granted_scopes.push(ROUTES[route].scope());
        }
        if let Some((End::Revoked, at)) = t.end
            && reason == Reason::Revoked
        {
            let mut d = BTreeMap::new();
            d.insert("revoked_at".to_owned(), format_time(ts(at * 1_000_000)));
            d.insert("revoked_by".to_owned(), "platform-admin@example.com".to_owned());
            d.insert("revoke_reason".to_owned(), "owner left the company".to_owned());
            e.details = d;
        }
        if let Some((End::Expired, at)) = t.end
            && reason == Reason::Expired
        {
            e.details.insert("expires_at".to_owned(), format_time(ts(at * 1_000_000)));
        }
        out.push(e, None, tag);
    };
    match p.kind {
        FindingType::OffHours => {
            let routes = get_routes(t, |r| r.sensitive());
            let ip = net.addr(hosts[0]);
            for _ in 0..rng.int(8, 26) {
                let route = *rng.pick(&routes);
                push(&mut rng, t_s, ip.clone(), route, None, Reason::Ok);
                t_s += rng.uniform(20.0, 90.0);
            }
        }
        FindingType::NewNetwork | FindingType::DormantReactivation => {
            let ip = net.addr(hosts[0]);
            let n = if p.kind == FindingType::NewNetwork { rng.int(15, 61) } else { rng.int(10, 41) };
            for _ in 0..n {
                let route = t.routes[rng.weighted(&weights)].0;
                push(&mut rng, t_s, ip.clone(), route, None, Reason::Ok);
                t_s += rng.uniform(10.0, 60.0);
            }
        }
        FindingType::ConcurrentNetworks => {
            let ips: Vec<String> = p.nets.iter().zip(&hosts).map(|(n, h)| n.addr(*h)).collect();
            for k in 0..rng.int(30, 61) {
                let route = t.routes[rng.weighted(&weights)].0;
                push(&mut rng, t_s, ips[k as usize % ips.len()].clone(), route, None, Reason::Ok);
                t_s += rng.uniform(5.0, 20.0);
            }
        }
        FindingType::ScopeProbing => {
            let mut routes = lacking(t);
            let k = rng.int(6, 15).min(routes.len() as i64) as usize;
            let mut chosen = Vec::new();
            for _ in 0..k {
                let i = rng.below(routes.len() as u64) as usize;
                chosen.push(routes.swap_remove(i));
            }
            let ip = net.addr(hosts[0]);
            for route in chosen {
                for _ in 0..rng.int(1, 4) {
                    push(&mut rng, t_s, ip.clone(), route, None, Reason::InsufficientScope);
                    t_s += rng.uniform(3.0, 25.0);
                }
            }
        }
        FindingType::RevokedTokenUse | FindingType::ExpiredTokenUse => {
            let reason = if p.kind == FindingType::RevokedTokenUse { Reason::Revoked } else { Reason::Expired };
            let ip = net.addr(hosts[0]);
            for _ in 0..rng.int(3, 40) {
                let route = t.routes[rng.weighted(&weights)].0;
                push(&mut rng, t_s, ip.clone(), route, None, reason);
                t_s += rng.uniform(10.0, 120.0);
            }
        }
        FindingType::Enumeration => {
            let routes = get_routes(t, |r| matches!(r.ids, Ids::Number(_)));
            let route = routes[0];
            let bound = match ROUTES[route].ids {
                Ids::Number(n) => n,
                _ => 1000,
            };
            let from = rng.below(bound / 2);
            let rate_per_s = rng.uniform(40.0, 120.0) / 60.0;
            let ip = net.addr(hosts[0]);
            for k in 0..rng.int(150, 601) as u64 {
                push(&mut rng, t_s, ip.clone(), route, Some(1 + from + k), Reason::Ok);
                t_s += rng.exp(1.0 / rate_per_s) + 0.01;
            }
        }
        FindingType::VolumeSpike => {
            let routes = get_routes(t, |r| r.ids == Ids::None);
            let route = *rng.pick(&routes);
            let rate_per_s = rng.uniform(80.0, 200.0) / 60.0;
            let end = t_s + rng.uniform(8.0, 20.0) * 60.0;
            let ip = net.addr(hosts[0]);
            while t_s < end {
                push(&mut rng, t_s, ip.clone(), route, None, Reason::Ok);
                t_s += rng.exp(1.0 / rate_per_s) + 0.01;
            }
        }
        FindingType::FirstSensitiveAccess => {
            let route = *rng.pick(&[
                route_index("GET", "/v1/customers/{id}"),
                route_index("GET", "/v1/patients/{id}"),
                route_index("GET", "/v1/invoices/{id}"),
            ]);
            let ip = net.addr(hosts[0]);
            for _ in 0..rng.int(3, 16) {
                push(&mut rng, t_s, ip.clone(), route, None, Reason::Ok);
                t_s += rng.uniform(15.0, 120.0);
            }
        }
        _ => {}
    }
}
