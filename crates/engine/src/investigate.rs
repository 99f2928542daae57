//! Investigation: explain a decision in terms a developer can act on, a token's timeline, and
//! the time expressions of queries (`15m`, `24h`, `7d` or RFC 3339).
//!
//! Explanations are built from what the event itself carries (the scope required, the scopes
//! granted at the time, the failing constraint's values in `details`), so they work for
//! ingested events too; the current token, when it still exists, only adds the id to put in a
//! suggested command.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use ledger::event::{Event, Kind, Verdict, format_time};
use store::{EventQuery, GroupBy, Order, StatRow};
use token::Reason;

use crate::{Engine, FieldError, Result};

/// Parses `15m`, `24h`, `7d` (that long before `now`) or an RFC 3339 time.
pub fn parse_time(field: &str, s: &str, now: Timestamp) -> std::result::Result<Timestamp, FieldError> {
    if let Ok(d) = token::parse_duration(s) {
        let d = SignedDuration::try_from(d).map_err(|_| FieldError::new(field, format!("{s:?} is too long ago")))?;
        return now.checked_sub(d).map_err(|_| FieldError::new(field, format!("{s:?} is too long ago")));
    }
    s.parse::<Timestamp>().map_err(|_| {
        FieldError::new(field, format!("{s:?} is neither a relative time (15m, 24h, 7d) nor an RFC 3339 time"))
    })
}

/// Says how far apart two times are: `3h 12m`, `2d 4h`, `45s`.
pub fn span(a: Timestamp, b: Timestamp) -> String {
    let secs = (b.as_second() - a.as_second()).unsigned_abs();
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// How often and from where one fingerprint of an unresolved credential was presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FingerprintActivity {
    /// The fingerprint.
    pub fingerprint: String,
    /// Presentations.
    pub count: u64,
    /// Addresses it came from, most frequent first (at most 10).
    pub addresses: Vec<(String, u64)>,
    /// First presentation.
    pub first_seen: Option<Timestamp>,
    /// Last presentation.
    pub last_seen: Option<Timestamp>,
}

/// An explained decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Explained {
    /// The event.
    pub event: Event,
    /// One sentence: what happened and why.
    pub summary: String,
    /// The failing constraint's values, and derived facts (`expired_ago`).
    pub constraint: BTreeMap<String, String>,
    /// A concrete change that would make such a request succeed (none for allowed requests).
    pub fix: Option<String>,
    /// For an unresolved credential: where else it was presented.
    pub fingerprint: Option<FingerprintActivity>,
}

/// A token's timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    /// The token.
    pub token: token::TokenRecord,
    /// Created, updated, rotated, revoked: the admin events about it, oldest first.
    pub lifecycle: Vec<Event>,
    /// Per day: allowed and denied counts.
    pub daily: Vec<StatRow>,
    /// Routes used, most used first.
    pub routes: Vec<StatRow>,
    /// Resources used.
    pub resources: Vec<StatRow>,
    /// Networks it was used from.
    pub networks: Vec<StatRow>,
    /// The most recent denials, newest first.
    pub recent_denials: Vec<Event>,
    /// The last event of the token (use or attempt).
    pub last_seen: Option<Timestamp>,
}

fn detail<'a>(e: &'a Event, key: &str) -> Option<&'a str> {
    e.details.get(key).map(String::as_str)
}

impl Engine {
    /// Explains one event.
    pub fn explain(&self, event_id: &str) -> Result<Explained> {
        let e = self.get_event(event_id)?;
        let mut constraint: BTreeMap<String, String> = e.details.clone();
        let token = e.token_id.clone();
        let tok = token.as_deref().unwrap_or("ID");
        let at = e.time;
        let when = |t: &str| t.parse::<Timestamp>().ok();
        let (summary, fix) = if e.kind == Kind::Admin {
            let what = e.operation.clone().unwrap_or_else(|| "an admin action".into());
            (format!("{} by token {} at {}", what, tok, format_time(at)), None)
        } else {
            match e.reason {
                Reason::Ok => (
                    e.explanation.clone().unwrap_or_else(|| "allowed".to_owned()),
                    None,
                ),
                Reason::MissingToken => (
                    "the request carried no token".to_owned(),
                    Some("send the token as `Authorization: Bearer <token>`".to_owned()),
                ),
                Reason::MalformedToken => (
                    "the credential is not shaped like a tokentrail token".to_owned(),
                    Some("send the whole token (prefix_id_secret), without quotes or a second scheme word".to_owned()),
                ),
                Reason::BadChecksum => (
                    "the token's checksum does not match: it was mistyped or truncated".to_owned(),
                    Some("copy the token again from where it was stored".to_owned()),
                ),
                Reason::UnknownToken => (
                    "no token with this id and secret exists".to_owned(),
                    Some("the token was never issued here, or it was rotated: use the current secret, or issue a new token".to_owned()),
                ),
                Reason::Revoked => {
                    let by = detail(&e, "revoked_by").unwrap_or("unknown");
                    let when_revoked = detail(&e, "revoked_at").unwrap_or("unknown");
                    let why = detail(&e, "revoke_reason").map(|r| format!(" ({r})")).unwrap_or_default();
                    if let Some(t) = detail(&e, "revoked_at").and_then(when) {
                        constraint.insert("revoked_ago".into(), span(t, at));
                    }
                    (
                        format!("token {tok} was revoked at {when_revoked} by {by}{why}"),
                        Some("revocation is final: issue a new token (tokentrail token create …) and replace this one".to_owned()),
                    )
                }
                Reason::Expired => {
                    let exp = detail(&e, "expires_at").unwrap_or("unknown");
                    let ago = detail(&e, "expires_at").and_then(when).map(|t| span(t, at));
                    if let Some(a) = &ago {
                        constraint.insert("expired_ago".into(), a.clone());
                    }
                    (
                        format!(
                            "token {tok} expired at {exp}{}",
                            ago.map(|a| format!(", {a} before the request")).unwrap_or_default()
                        ),
                        Some(format!("extend it (tokentrail token update {tok} --expires-in 30d) or rotate to a new token")),
                    )
                }
                Reason::NotYetValid => {
                    let nb = detail(&e, "not_before").unwrap_or("unknown");
                    let early = detail(&e, "not_before").and_then(when).map(|t| span(at, t));
                    (
                        format!(
                            "token {tok} is valid only from {nb}{}",
                            early.map(|a| format!(", {a} after the request")).unwrap_or_default()
                        ),
                        Some(format!("wait until then, or move it: tokentrail token update {tok} --clear-not-before")),
                    )
                }
                Reason::InsufficientScope => {
                    let need = e.required_scope.clone().unwrap_or_else(|| "the required scope".to_owned());
                    let has = e.granted_scopes.join(", ");
                    let mut scopes: Vec<String> = e.granted_scopes.clone();
                    scopes.push(need.clone());
                    let flags: Vec<String> = scopes.iter().map(|s| format!("--scope {s}")).collect();
                    (
                        format!("{} needs {need}; token {tok} has [{has}]", e.route.clone().unwrap_or_else(|| "the request".into())),
                        Some(format!("grant {need}: tokentrail token update {tok} {}", flags.join(" "))),
                    )
                }
                Reason::IpNotAllowed => {
                    let ip = e.source_ip.clone().unwrap_or_else(|| "the caller's address".into());
                    let nets = detail(&e, "allowed_cidrs").unwrap_or("(unknown)");
                    let mut flags: Vec<String> = nets.split(',').filter(|n| !n.is_empty()).map(|n| format!("--allow-cidr {n}")).collect();
                    flags.push(format!("--allow-cidr {ip}"));
                    (
                        format!("{ip} is not in token {tok}'s allowed networks [{nets}]"),
                        Some(format!("add the caller's network: tokentrail token update {tok} {}", flags.join(" "))),
                    )
                }
                Reason::RateLimited => {
                    let limit = detail(&e, "rate_limit").map(str::to_owned);
                    let wait = detail(&e, "retry_after_s").unwrap_or("a few");
                    match limit {
                        Some(l) => (
                            format!("token {tok} was over its rate limit of {l}"),
                            Some(format!("retry after {wait}s, or raise it: tokentrail token update {tok} --rate-limit <count/unit>")),
                        ),
                        None => (
                            "the caller's address made too many failed attempts".to_owned(),
                            Some(format!("retry after {wait}s with a valid token; repeated failures from one address are limited (gateway.failed_attempts)")),
                        ),
                    }
                }
                Reason::RouteNotFound => (
                    format!(
                        "no route of the policy matches {} {}",
                        e.method.clone().unwrap_or_default(),
                        e.path.clone().unwrap_or_default()
                    ),
                    Some("add a [[route]] for this method and path to the route policy (docs/policy.md)".to_owned()),
                ),
                Reason::AuditUnavailable => (
                    "the audit ledger could not record the request, so it was refused".to_owned(),
                    Some("check the server's disk and log; requests succeed again once the ledger writes".to_owned()),
                ),
            }
        };
        let fingerprint = match &e.token_fingerprint {
            Some(fp) => Some(self.fingerprint_activity(fp)?),
            None => None,
        };
        let summary = if e.decision == Verdict::Deny { format!("denied ({}): {summary}", e.reason) } else { summary };
        Ok(Explained { event: e, summary, constraint, fix, fingerprint })
    }

    fn fingerprint_activity(&self, fp: &str) -> Result<FingerprintActivity> {
        let q = EventQuery { token_fingerprint: Some(fp.to_owned()), ..Default::default() };
        let by_ip = self.store.stats(&q, GroupBy::SourceIp, 10)?;
        let count = self.store.stats(&q, GroupBy::Decision, 10)?.iter().map(|r| r.count).sum();
        let first =
            self.store.list_events(&EventQuery { order: Order::Asc, by_time: true, limit: 1, ..q.clone() })?.items;
        let last = self.store.list_events(&EventQuery { order: Order::Desc, by_time: true, limit: 1, ..q })?.items;
        Ok(FingerprintActivity {
            fingerprint: fp.to_owned(),
            count,
            addresses: by_ip.into_iter().map(|r| (r.key, r.count)).collect(),
            first_seen: first.first().map(|e| e.time),
            last_seen: last.first().map(|e| e.time),
        })
    }

    /// A token's timeline over the events since `since`.
    pub fn activity(&self, id: &str, since: Option<Timestamp>) -> Result<Activity> {
        let token = self.get_token(id)?;
        let lifecycle = self
            .store
            .list_events(&EventQuery {
                target: Some(id.to_owned()),
                order: Order::Asc,
                by_time: true,
                limit: 1000,
                ..Default::default()
            })?
            .items;
        let q = EventQuery {
            token_id: Some(id.to_owned()),
            kind: Some(Kind::Access),
            since,
            by_time: true,
            ..Default::default()
        };
        let daily = self.store.stats(&q, GroupBy::Day, 400)?;
        let routes = self.store.stats(&q, GroupBy::Route, 50)?;
        let resources = self.store.stats(&q, GroupBy::Resource, 50)?;
        let networks = self.store.stats(&q, GroupBy::Network, 50)?;
        let recent_denials =
            self.store.list_events(&EventQuery { decision: Some(Verdict::Deny), limit: 10, ..q.clone() })?.items;
        let last_seen = self.store.list_events(&EventQuery { limit: 1, ..q })?.items.first().map(|e| e.time);
        Ok(Activity { token, lifecycle, daily, routes, resources, networks, recent_denials, last_seen })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_spans() {
        let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
        assert_eq!(parse_time("since", "24h", now).unwrap(), "2026-05-31T12:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(parse_time("since", "15m", now).unwrap(), "2026-06-01T11:45:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(parse_time("since", "2026-01-01T00:00:00Z", now).unwrap().to_string(), "2026-01-01T00:00:00Z");
        let err = parse_time("until", "yesterday", now).unwrap_err();
        assert_eq!(err.field, "until");
        assert!(err.message.contains("yesterday"));
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(span(t("2026-06-01T09:00:00Z"), t("2026-06-01T12:12:00Z")), "3h 12m");
        assert_eq!(span(t("2026-06-01T12:00:00Z"), t("2026-06-01T12:00:45Z")), "45s");
        assert_eq!(span(t("2026-06-03T16:00:00Z"), t("2026-06-01T12:00:00Z")), "2d 4h");
    }
}
