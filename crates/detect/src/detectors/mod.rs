//! The detectors, and the bounded per-key state they share.

use std::borrow::Borrow;
use std::hash::Hash;

use hashbrown::HashMap;
use hashbrown::hash_map::RawEntryMut;
use jiff::Timestamp;
use ledger::event::{Event, Kind, Verdict};

use crate::{DetectConfig, Detector};

mod activity;
mod failures;
mod hours;
mod networks;

/// Every detector, configured.
pub fn all(config: &DetectConfig) -> Vec<Box<dyn Detector>> {
    vec![
        Box::new(hours::OffHours::new(config)),
        Box::new(networks::NewNetwork::new(config)),
        Box::new(networks::ConcurrentNetworks::new(config)),
        Box::new(failures::BruteForce::new(config)),
        Box::new(failures::ScopeProbing::new(config)),
        Box::new(failures::MisuseAfterEnd::revoked(config)),
        Box::new(failures::MisuseAfterEnd::expired(config)),
        Box::new(activity::Dormant::new(config)),
        Box::new(activity::Enumeration::new(config)),
        Box::new(activity::VolumeSpike::new(config)),
        Box::new(activity::FirstSensitive::new(config)),
        Box::new(activity::ShadowDeny::new(config)),
    ]
}

/// A map with at most `cap` keys: when full, the least recently touched tenth is dropped, and
/// `prune` drops keys idle longer than a retention.
pub(crate) struct Bounded<K, V> {
    map: HashMap<K, (i64, V)>,
    cap: usize,
}

impl<K: Eq + Hash + Clone, V> Bounded<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Bounded { map: HashMap::new(), cap: cap.max(1) }
    }

    /// The value for `key`, created with `init` if absent, marked as touched at `now`. The key
    /// is looked up in its borrowed form (`&str` for a `String` key) and copied only when it is
    /// new: allocating the key for every event was a tenth of detection time. One hash and one
    /// probe per call (hashbrown's raw entry, foldhash seeded per process): two SipHash lookups
    /// per event and detector were a third of detection time. The map is never iterated in an
    /// order that reaches a finding, so the hasher's seed cannot change what is found.
    pub(crate) fn touch<Q>(&mut self, key: &Q, now: i64, init: impl FnOnce() -> V) -> &mut V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.map.len() >= self.cap && !self.map.contains_key(key) {
            let mut ages: Vec<i64> = self.map.values().map(|(t, _)| *t).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 10];
            self.map.retain(|_, (t, _)| *t > cutoff);
        }
        let slot = match self.map.raw_entry_mut().from_key(key) {
            RawEntryMut::Occupied(o) => o.into_mut(),
            RawEntryMut::Vacant(v) => v.insert(key.to_owned(), (now, init())).1,
        };
        slot.0 = slot.0.max(now);
        &mut slot.1
    }

    /// The value for `key` if it is tracked (not marked as touched).
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(_, v)| v)
    }

    /// Drops keys not touched since `before`.
    pub(crate) fn prune(&mut self, before: i64) {
        self.map.retain(|_, (t, _)| *t >= before);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }
}

/// Seconds since the epoch.
pub(crate) fn secs(t: Timestamp) -> i64 {
    t.as_second()
}

/// The UTC day number (days since 1970-01-01) of a time in seconds.
pub(crate) fn day_of(now: i64) -> i64 {
    now.div_euclid(86_400)
}

/// A 64-bit hash of bytes that is the same on every platform, build and run (FNV-1a, then the
/// splitmix64 finalizer so that the low and high bits are both well mixed). Detectors must be
/// deterministic across restarts and versions, which the standard library's hashers do not
/// promise.
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Whether UTC hour `hour` is near an hour set in the 24-bit mask `hours`: at most `before` hours
/// before one, or at most `after` hours after one (an evening runs on later than a morning starts
/// early, so `after` may be the wider of the two).
pub(crate) fn near_hours(hours: u32, hour: usize, before: usize, after: usize) -> bool {
    let set = |h: usize| hours & (1 << (h % 24)) != 0;
    (0..=before.min(12)).any(|d| set(hour + d)) || (0..=after.min(23)).any(|d| set(hour + 24 - d))
}

/// A resolved token's access event (what the per-token baselines learn from).
pub(crate) fn token_access(e: &Event) -> Option<&str> {
    if e.kind != Kind::Access {
        return None;
    }
    e.token_id.as_deref()
}

/// Allowed access by a resolved token.
pub(crate) fn allowed_access(e: &Event) -> Option<&str> {
    token_access(e).filter(|_| e.decision == Verdict::Allow)
}

/// Whether the event touched sensitive data.
pub(crate) fn sensitive(e: &Event) -> bool {
    !e.sensitivity.is_empty()
}

/// What a token did, in a few words: "read phi data", "wrote to orders".
pub(crate) fn what(e: &Event) -> String {
    let verb = match e.action.as_deref() {
        Some("read") => "read",
        Some("write") => "wrote",
        Some("admin") => "administered",
        _ => "accessed",
    };
    if sensitive(e) {
        format!("{verb} {} data", e.sensitivity.join("/"))
    } else {
        format!("{verb} {}", e.resource.as_deref().unwrap_or("the API"))
    }
}

/// How much of a token's history is there: events and the span they cover.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct History {
    pub(crate) first: i64,
    pub(crate) events: u64,
}

impl History {
    pub(crate) fn note(&mut self, now: i64) {
        if self.events == 0 {
            self.first = now;
        }
        self.events += 1;
    }

    pub(crate) fn enough(&self, now: i64, config: &DetectConfig) -> bool {
        self.events >= config.min_history_events && now - self.first >= i64::from(config.min_history_days) * 86_400
    }
}
