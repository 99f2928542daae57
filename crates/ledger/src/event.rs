//! The audit event: one access attempt or one administrative action.
//!
//! This is the model every part of tokentrail shares (the store persists it, the ledger turns it
//! into a leaf, detectors and reports read it). Its JSON form is defined in `proto`; this module
//! never serializes anything itself. Durations are integer microseconds so that the canonical
//! leaf encoding never depends on floating point formatting.

use std::collections::BTreeMap;

use jiff::Timestamp;
use token::Reason;

/// Access attempt or administrative action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A request made with a token (allowed or denied).
    Access,
    /// A change made through the admin API.
    Admin,
}

impl Kind {
    /// The kind's name in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Admin => "admin",
        }
    }

    /// Parses `access` or `admin`.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "access" => Some(Kind::Access),
            "admin" => Some(Kind::Admin),
            _ => None,
        }
    }
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The request was allowed.
    Allow,
    /// The request was denied.
    Deny,
}

impl Verdict {
    /// The verdict's name in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }

    /// Parses `allow` or `deny`.
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "allow" => Some(Verdict::Allow),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }

    /// The verdict a reason code implies.
    pub fn of(reason: Reason) -> Verdict {
        if reason.is_allow() { Verdict::Allow } else { Verdict::Deny }
    }
}

/// One audit event (PRODUCT.md "Audit event").
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Unique id, assigned when the event is created.
    pub id: String,
    /// Position in the ledger, assigned by the store when the event is durable.
    pub seq: Option<u64>,
    /// When the decision or change happened.
    pub time: Timestamp,
    /// Access or admin.
    pub kind: Kind,
    /// Where it came from: `gateway`, `verify`, `authz`, `admin`, or an ingest source.
    pub source: String,
    /// The token that made the request (for admin events: the acting admin token).
    pub token_id: Option<String>,
    /// Keyed fingerprint of a presented token that could not be resolved.
    pub token_fingerprint: Option<String>,
    /// The token's owner.
    pub owner: Option<String>,
    /// The caller's address.
    pub source_ip: Option<String>,
    /// The caller's user agent.
    pub user_agent: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// Request path, query string removed.
    pub path: Option<String>,
    /// The matched route template (`GET /v1/patients/{id}`).
    pub route: Option<String>,
    /// The resource the route names.
    pub resource: Option<String>,
    /// The action the route needs.
    pub action: Option<String>,
    /// Sensitivity labels of the route.
    pub sensitivity: Vec<String>,
    /// Allow or deny.
    pub decision: Verdict,
    /// Exactly one reason code.
    pub reason: Reason,
    /// HTTP status answered.
    pub status: Option<u16>,
    /// Time spent, in microseconds.
    pub latency_us: Option<u64>,
    /// Response bytes sent to the caller.
    pub bytes_out: Option<u64>,
    /// Request id (from `X-Request-Id` or generated).
    pub request_id: Option<String>,
    /// The node that decided.
    pub node: Option<String>,
    /// Admin events: what was done (`token.create`, `token.update`, `token.revoke`, `token.rotate`).
    pub operation: Option<String>,
    /// Admin events: the token acted upon.
    pub target: Option<String>,
    /// The scope the request needed.
    pub required_scope: Option<String>,
    /// The scopes the token held at decision time.
    pub granted_scopes: Vec<String>,
    /// One human sentence explaining the decision.
    pub explanation: Option<String>,
    /// Structured details: the failing constraint's values for denials, the changed fields for
    /// admin events. Never a secret.
    pub details: BTreeMap<String, String>,
    /// The personal values (owner, address, user agent, path, explanation, details) were erased
    /// on request; the event still verifies through their commitments.
    pub erased: bool,
}

impl Event {
    /// A new event with the given identity and everything else empty; fill in what applies.
    pub fn new(id: String, time: Timestamp, kind: Kind, source: &str, reason: Reason) -> Event {
        Event {
            id,
            seq: None,
            time,
            kind,
            source: source.to_owned(),
            token_id: None,
            token_fingerprint: None,
            owner: None,
            source_ip: None,
            user_agent: None,
            method: None,
            path: None,
            route: None,
            resource: None,
            action: None,
            sensitivity: Vec::new(),
            decision: Verdict::of(reason),
            reason,
            status: None,
            latency_us: None,
            bytes_out: None,
            request_id: None,
            node: None,
            operation: None,
            target: None,
            required_scope: None,
            granted_scopes: Vec::new(),
            explanation: None,
            details: BTreeMap::new(),
            erased: false,
        }
    }
}

/// Formats a time as RFC 3339 in UTC with exactly six fractional digits
/// (`2026-11-27T19:46:31.123456Z`), the one textual form events use.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Truncates a time to whole microseconds, the precision events keep.
pub fn to_micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// The time at `us` microseconds after the Unix epoch; `None` when out of range.
pub fn from_micros(us: i64) -> Option<Timestamp> {
    Timestamp::from_microsecond(us).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format_is_fixed_width_micros() {
        let t: Timestamp = "2026-11-27T19:46:31.1234567Z".parse().unwrap();
        assert_eq!(format_time(t), "2026-11-27T19:46:31.123456Z");
        let t: Timestamp = "2026-11-27T19:46:31Z".parse().unwrap();
        assert_eq!(format_time(t), "2026-11-27T19:46:31.000000Z");
        assert_eq!(from_micros(to_micros(t)), Some(t));
    }

    #[test]
    fn names_round_trip() {
        for k in [Kind::Access, Kind::Admin] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        for v in [Verdict::Allow, Verdict::Deny] {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
        }
        assert_eq!(Verdict::of(Reason::Ok), Verdict::Allow);
        assert_eq!(Verdict::of(Reason::Expired), Verdict::Deny);
    }
}
