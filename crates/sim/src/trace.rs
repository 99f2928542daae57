//! A whole trace: the world, normal traffic and injections, released as one stream of events
//! in time order, and the labels that describe it.
//!
//! Generation walks day by day and releases events once no later day can produce an earlier
//! one, so memory stays at about a day of events whatever the trace's length: the large
//! evaluation streams tens of millions of events through detection without holding them.

use std::collections::HashSet;

use jiff::Timestamp;
use ledger::event::Event;

use crate::inject::{self, Injection};
use crate::traffic::{Behaviour, Benign, Out, admin_event};
use crate::world::{End, World};
use crate::zone;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Everything follows from the seed.
    pub seed: u64,
    /// Tokens in the population.
    pub tokens: usize,
    /// Weeks of traffic (the warm-up included).
    pub weeks: u32,
    /// Days at the start during which detectors learn baselines: no injections there, and its
    /// findings are reported apart from the scored false positives.
    pub warmup_days: u32,
    /// Injections of each misuse kind.
    pub per_type: usize,
    /// The first day (a Monday), as a civil date `(year, month, day)`.
    pub start: (i64, i64, i64),
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { seed: 1, tokens: 50, weeks: 3, warmup_days: 8, per_type: 2, start: (2026, 3, 2) }
    }
}

/// A token as the labels describe it (for attributing false positives).
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Token id.
    pub token_id: String,
    /// Owner.
    pub owner: String,
    /// `human`, `service`, `batch`, `ci`, `partner`.
    pub archetype: String,
    /// Role (what it is for).
    pub role: String,
    /// Time zone it follows.
    pub zone: String,
    /// Creation, seconds since the epoch.
    pub created_s: i64,
    /// How its normal use ends within the trace, and when (seconds).
    pub end: Option<(String, i64)>,
    /// Networks it normally uses.
    pub networks: Vec<String>,
    /// Whether it uses sensitive routes from the start.
    pub sensitive: bool,
}

/// What the trace contains: the ground truth the scorer needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Labels {
    /// The seed.
    pub seed: u64,
    /// Tokens in the population.
    pub tokens: usize,
    /// Weeks simulated.
    pub weeks: u32,
    /// First second of the trace.
    pub start_s: i64,
    /// First second after the trace.
    pub end_s: i64,
    /// First second of the scored window (after the warm-up).
    pub warmup_end_s: i64,
    /// Events in the trace.
    pub events: u64,
    /// Token-days in the scored window: (token, UTC day) pairs with normal requests.
    pub token_days: u64,
    /// Token-days over the whole trace.
    pub token_days_all: u64,
    /// Every token.
    pub profiles: Vec<Profile>,
    /// Every injection with its events.
    pub injections: Vec<Injection>,
    /// Known tricky legitimate activity.
    pub benign: Vec<Benign>,
    /// Injections that could not be placed, and why.
    pub skipped: Vec<String>,
}

impl Labels {
    /// The profile of a token.
    pub fn profile(&self, token_id: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.token_id == token_id)
    }
}

struct Release<F: FnMut(Event)> {
    seq: u64,
    sink: F,
    injections: Vec<Injection>,
    warmup_end_us: i64,
    days: HashSet<(u32, i64)>,
    days_all: HashSet<(u32, i64)>,
}

impl<F: FnMut(Event)> Release<F> {
    /// Releases pending events before `boundary_us` (all of them with `None`) in time order.
    fn release(&mut self, out: &mut Out, boundary_us: Option<i64>) {
        out.pending.sort_unstable_by_key(|p| (p.time_us, p.order));
        let split = boundary_us.map_or(out.pending.len(), |b| out.pending.partition_point(|p| p.time_us < b));
        let rest = out.pending.split_off(split);
        for p in std::mem::replace(&mut out.pending, rest) {
            self.seq += 1;
            let mut e = p.event;
            e.id = format!("ev_{:010}", self.seq);
            e.seq = Some(self.seq);
            if let Some(i) = p.injection {
                let inj = &mut self.injections[i as usize];
                if inj.event_ids.is_empty() {
                    inj.start_us = p.time_us;
                    inj.source_ip = e.source_ip.clone().unwrap_or_default();
                }
                inj.end_us = p.time_us;
                inj.event_ids.push(e.id.clone());
            } else if let Some(t) = p.token {
                let day = p.time_us.div_euclid(86_400_000_000);
                self.days_all.insert((t, day));
                if p.time_us >= self.warmup_end_us {
                    self.days.insert((t, day));
                }
            }
            (self.sink)(e);
        }
    }
}

/// Generates a trace and hands every event to `sink` in time order; returns its labels.
pub fn stream(c: &SimConfig, sink: impl FnMut(Event)) -> Labels {
    let (y, m, d) = c.start;
    let start_s = zone::days_from_civil(y, m, d) * 86_400;
    let days = i64::from(c.weeks) * 7;
    let warmup_end_s = start_s + i64::from(c.warmup_days) * 86_400;
    let end_s = start_s + days * 86_400;
    let mut world = World::build(c.seed, c.tokens, start_s, days);
    let (planned, skipped) = inject::plan(&mut world, c.seed, c.per_type, i64::from(c.warmup_days));
    let mut benign = Vec::new();
    let mut behaviours: Vec<Behaviour> =
        world.tokens.iter().cloned().map(|t| Behaviour::new(t, c.seed, (warmup_end_s, end_s), &mut benign)).collect();

    // Administrative events: creation of tokens made during the trace, revocations, renewals.
    let mut admin: Vec<(i64, &'static str, usize)> = Vec::new();
    for t in &world.tokens {
        if t.created_s >= start_s || matches!(t.end, Some((End::Silent, _))) {
            admin.push((t.created_s * 1_000_000, "token.create", t.index));
        }
        if let Some((End::Revoked, at)) = t.end {
            admin.push((at * 1_000_000, "token.revoke", t.index));
        }
    }
    for b in &benign {
        if let Some(t) = world.tokens.iter().find(|t| t.id == b.token_id) {
            admin.push((b.end_us, "token.update", t.index));
        }
    }

    let first_day = world
        .tokens
        .iter()
        .filter(|t| matches!(t.end, Some((End::Silent, _))))
        .map(|t| (t.created_s - start_s).div_euclid(86_400) - 1)
        .min()
        .unwrap_or(0)
        .min(0);
    let mut out = Out::default();
    let mut admin_rng = crate::rng::Rng::stream(c.seed, 3);
    let mut rel = Release {
        seq: 0,
        sink,
        injections: planned.iter().enumerate().map(|(i, p)| inject::label(p, i, &world)).collect(),
        warmup_end_us: warmup_end_s * 1_000_000,
        days: HashSet::new(),
        days_all: HashSet::new(),
    };
    for day in first_day..days {
        for b in &mut behaviours {
            // Before the trace proper only the dormant tokens' old activity is generated.
            if day >= 0 || matches!(b.spec.end, Some((End::Silent, _))) {
                b.day(day, &world, &mut out);
            }
        }
        let day_start = start_s + day * 86_400;
        for (i, p) in planned.iter().enumerate() {
            if (p.start_s - start_s).div_euclid(86_400) == day {
                inject::emit(p, i as u32, &world, c.seed, &mut out);
            }
        }
        for (at_us, op, t) in &admin {
            if at_us.div_euclid(86_400_000_000) == day_start.div_euclid(86_400) {
                let e = admin_event(&world, *at_us, op, &world.tokens[*t], &mut admin_rng);
                out.push(e, None, None);
            }
        }
        rel.release(&mut out, Some((day_start + 86_400 - 16 * 3600) * 1_000_000));
    }
    rel.release(&mut out, None);
    let events = rel.seq;
    let (token_days, token_days_all) = (rel.days.len() as u64, rel.days_all.len() as u64);
    let injections = rel.injections;
    Labels {
        seed: c.seed,
        tokens: c.tokens,
        weeks: c.weeks,
        start_s,
        end_s,
        warmup_end_s,
        events,
        token_days,
        token_days_all,
        profiles: world
            .tokens
            .iter()
            .map(|t| Profile {
                token_id: t.id.clone(),
                owner: t.owner.clone(),
                archetype: t.archetype.as_str().to_owned(),
                role: crate::world::ROLES[t.role].name.to_owned(),
                zone: t.zone.name.to_owned(),
                created_s: t.created_s,
                end: t.end.map(|(k, at)| {
                    let k = match k {
                        End::Revoked => "revoked",
                        End::Expired => "expired",
                        End::Silent => "silent",
                    };
                    (k.to_owned(), at)
                }),
                networks: t.networks.iter().map(|n| n.text()).collect(),
                sensitive: t.sensitive,
            })
            .collect(),
        injections,
        benign,
        skipped,
    }
}

/// Generates a trace in memory (small traces: tests, `generate`).
pub fn generate(c: &SimConfig) -> (Vec<Event>, Labels) {
    let mut events = Vec::new();
    let labels = stream(c, |e| events.push(e));
    (events, labels)
}

/// A time from seconds since the epoch (for reports).
pub fn time_s(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or_default()
}
