//! The canonical leaf encoding of an event (version 1), and the salted commitments that keep
//! personal values out of the leaf.
//!
//! Every event is one leaf of the Merkle log. The leaf carries the event's non-personal fields
//! verbatim and, for each personal field (owner, source IP, user agent, path, explanation,
//! details), only `HMAC-SHA256(salt, name || 0x00 || value)` with a random per-event salt. The
//! values and the salt are stored beside the leaf; erasing them (GDPR art. 17) leaves the
//! commitments, so the log still verifies. `docs/ledger.md` specifies the bytes precisely enough
//! to re-implement verification.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::event::Event;
use crate::merkle::Hash;

/// The first bytes of every version 1 leaf: `TTL` and the version.
pub const MAGIC_V1: [u8; 4] = *b"TTL\x01";

/// Length of a per-event salt.
pub const SALT_LEN: usize = 32;

/// The personal fields, in leaf order.
pub const PERSONAL_FIELDS: [&str; 6] = ["owner", "source_ip", "user_agent", "path", "explanation", "details"];

/// The personal values of one event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Personal {
    /// The token's owner.
    pub owner: Option<String>,
    /// The caller's address.
    pub source_ip: Option<String>,
    /// The caller's user agent.
    pub user_agent: Option<String>,
    /// The request path.
    pub path: Option<String>,
    /// The decision's explanation (may quote addresses and names).
    pub explanation: Option<String>,
    /// Constraint values or changed fields (may quote owners and reasons).
    pub details: BTreeMap<String, String>,
}

impl Personal {
    /// The personal values of an event.
    pub fn of(e: &Event) -> Personal {
        Personal {
            owner: e.owner.clone(),
            source_ip: e.source_ip.clone(),
            user_agent: e.user_agent.clone(),
            path: e.path.clone(),
            explanation: e.explanation.clone(),
            details: e.details.clone(),
        }
    }

    /// Puts these values into an event.
    pub fn apply(self, e: &mut Event) {
        e.owner = self.owner;
        e.source_ip = self.source_ip;
        e.user_agent = self.user_agent;
        e.path = self.path;
        e.explanation = self.explanation;
        e.details = self.details;
    }

    /// The encoded value of each personal field, in [`PERSONAL_FIELDS`] order.
    fn encoded(&self) -> [Vec<u8>; 6] {
        let mut details = Vec::new();
        put_map(&mut details, &self.details);
        [
            opt_bytes(&self.owner),
            opt_bytes(&self.source_ip),
            opt_bytes(&self.user_agent),
            opt_bytes(&self.path),
            opt_bytes(&self.explanation),
            details,
        ]
    }

    /// The commitments to these values under `salt`, in [`PERSONAL_FIELDS`] order.
    pub fn commitments(&self, salt: &[u8; SALT_LEN]) -> [Hash; 6] {
        let values = self.encoded();
        // The keyed state is set up once and cloned per field: the same MACs, half the hashing.
        #[allow(clippy::expect_used)] // HMAC accepts keys of every length.
        let keyed = Hmac::<Sha256>::new_from_slice(salt).expect("HMAC takes any key length");
        std::array::from_fn(|i| commit_with(keyed.clone(), PERSONAL_FIELDS[i], &values[i]))
    }
}

fn opt_bytes(v: &Option<String>) -> Vec<u8> {
    let mut out = Vec::new();
    put_opt_str(&mut out, v.as_deref());
    out
}

/// `HMAC-SHA256(key = salt, message = field name || 0x00 || encoded value)`.
fn commit_with(mut mac: Hmac<Sha256>, field: &str, value: &[u8]) -> Hash {
    mac.update(field.as_bytes());
    mac.update(&[0]);
    mac.update(value);
    mac.finalize().into_bytes().into()
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Lengths and counts above u32::MAX cannot occur: events are bounded far below that.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn put_opt_u64(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        None => out.push(0),
        Some(n) => {
            out.push(1);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn put_list(out: &mut Vec<u8>, items: &[String]) {
    put_u32(out, items.len());
    for s in items {
        put_str(out, s);
    }
}

fn put_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    put_u32(out, map.len());
    for (k, v) in map {
        put_str(out, k);
        put_str(out, v);
    }
}

/// The canonical version 1 leaf of the event at position `seq`, with its personal fields given
/// as commitments.
pub fn encode(e: &Event, seq: u64, commitments: &[Hash; 6]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&MAGIC_V1);
    out.extend_from_slice(&seq.to_be_bytes());
    put_str(&mut out, &e.id);
    out.extend_from_slice(&e.time.as_microsecond().to_be_bytes());
    put_str(&mut out, e.kind.as_str());
    put_str(&mut out, &e.source);
    put_opt_str(&mut out, e.token_id.as_deref());
    put_opt_str(&mut out, e.token_fingerprint.as_deref());
    put_opt_str(&mut out, e.method.as_deref());
    put_opt_str(&mut out, e.route.as_deref());
    put_opt_str(&mut out, e.resource.as_deref());
    put_opt_str(&mut out, e.action.as_deref());
    put_list(&mut out, &e.sensitivity);
    put_str(&mut out, e.decision.as_str());
    put_str(&mut out, e.reason.as_str());
    put_opt_u64(&mut out, e.status.map(u64::from));
    put_opt_u64(&mut out, e.latency_us);
    put_opt_u64(&mut out, e.bytes_out);
    put_opt_str(&mut out, e.request_id.as_deref());
    put_opt_str(&mut out, e.node.as_deref());
    put_opt_str(&mut out, e.operation.as_deref());
    put_opt_str(&mut out, e.target.as_deref());
    put_opt_str(&mut out, e.required_scope.as_deref());
    put_list(&mut out, &e.granted_scopes);
    for c in commitments {
        out.extend_from_slice(c);
    }
    out
}

/// Packs six commitments into the 192 bytes stored beside an event.
pub fn pack(commitments: &[Hash; 6]) -> Vec<u8> {
    commitments.concat()
}

/// Unpacks stored commitments; `None` unless exactly 192 bytes.
pub fn unpack(bytes: &[u8]) -> Option<[Hash; 6]> {
    if bytes.len() != 6 * 32 {
        return None;
    }
    let mut out = [[0u8; 32]; 6];
    for (i, chunk) in bytes.chunks_exact(32).enumerate() {
        out[i].copy_from_slice(chunk);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Kind;
    use crate::merkle::leaf_hash;
    use token::Reason;

    fn event() -> Event {
        let mut e = Event::new(
            "ev_1".into(),
            "2026-11-27T19:46:31.123456Z".parse().unwrap(),
            Kind::Access,
            "gateway",
            Reason::Ok,
        );
        e.token_id = Some("tok".into());
        e.owner = Some("alice".into());
        e.source_ip = Some("203.0.113.9".into());
        e.path = Some("/v1/patients/42".into());
        e.route = Some("GET /v1/patients/{id}".into());
        e.sensitivity = vec!["phi".into()];
        e.status = Some(200);
        e.latency_us = Some(3200);
        e.details = BTreeMap::from([("k".into(), "v".into())]);
        e
    }

    #[test]
    fn known_answer() {
        // Pinned so that any change to the encoding is deliberate (and documented as a new
        // version in docs/ledger.md).
        let e = event();
        let salt = [7u8; SALT_LEN];
        let c = Personal::of(&e).commitments(&salt);
        let leaf = encode(&e, 5, &c);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        expect_test::expect![[r#"
            71e8e91000f1b738b65296d2c79a93ad988b4835cba3a55a789432e77a992429
            690f654d78ce72a3399f8320a7d9ed30ebd8aee07cc5f278322fc6b22d805e68"#]]
        .assert_eq(&format!("{}\n{}", hex(&c[0]), hex(&leaf_hash(&leaf))));
    }

    #[test]
    fn personal_values_are_not_in_the_leaf() {
        let e = event();
        let leaf = encode(&e, 0, &Personal::of(&e).commitments(&[1; SALT_LEN]));
        let text = String::from_utf8_lossy(&leaf);
        for secret in ["alice", "203.0.113.9", "/v1/patients/42"] {
            assert!(!text.contains(secret), "{secret} leaked into the leaf");
        }
        assert!(text.contains("GET /v1/patients/{id}"));
    }

    #[test]
    fn every_field_changes_the_leaf() {
        let base = event();
        let salt = [3; SALT_LEN];
        let leaf = |e: &Event, seq| encode(e, seq, &Personal::of(e).commitments(&salt));
        let reference = leaf(&base, 1);
        let mut variants: Vec<Event> = Vec::new();
        let mut push = |f: &dyn Fn(&mut Event)| {
            let mut e = base.clone();
            f(&mut e);
            variants.push(e);
        };
        push(&|e| e.id.push('x'));
        push(&|e| e.time = "2026-11-27T19:46:31.123457Z".parse().unwrap());
        push(&|e| e.kind = Kind::Admin);
        push(&|e| e.source.push('x'));
        push(&|e| e.token_id = None);
        push(&|e| e.token_fingerprint = Some("fp".into()));
        push(&|e| e.method = Some("GET".into()));
        push(&|e| e.route = None);
        push(&|e| e.resource = Some("r".into()));
        push(&|e| e.action = Some("read".into()));
        push(&|e| e.sensitivity.clear());
        push(&|e| e.decision = crate::event::Verdict::Deny);
        push(&|e| e.reason = Reason::Expired);
        push(&|e| e.status = Some(201));
        push(&|e| e.latency_us = None);
        push(&|e| e.bytes_out = Some(0));
        push(&|e| e.request_id = Some("r".into()));
        push(&|e| e.node = Some("n".into()));
        push(&|e| e.operation = Some("op".into()));
        push(&|e| e.target = Some("t".into()));
        push(&|e| e.required_scope = Some("a:read".into()));
        push(&|e| e.granted_scopes.push("a:read".into()));
        push(&|e| e.owner = Some("bob".into()));
        push(&|e| e.source_ip = None);
        push(&|e| e.user_agent = Some("curl".into()));
        push(&|e| e.path = Some("/v1/patients/43".into()));
        push(&|e| e.explanation = Some("x".into()));
        push(&|e| {
            e.details.insert("k".into(), "w".into());
        });
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(leaf(v, 1), reference, "change #{i} did not change the leaf");
        }
        assert_ne!(leaf(&base, 2), reference, "the position is part of the leaf");
    }

    #[test]
    fn pack_round_trips() {
        let c = Personal::of(&event()).commitments(&[9; SALT_LEN]);
        assert_eq!(unpack(&pack(&c)), Some(c));
        assert_eq!(unpack(&[0; 10]), None);
    }
}
