//! The decision function: one presented credential, the token it names, what the request needs,
//! where it comes from and when -> exactly one reason code and an explanation.
//!
//! Pure: the clock, the token lookup and the rate limiter's verdict are inputs. Every way into
//! tokentrail (admin API, gateway, verify, authz) decides through [`decide`].

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use jiff::Timestamp;

use crate::duration::RateLimit;
use crate::format::{CredentialError, ParsedToken};
use crate::record::TokenRecord;
use crate::scope::{Scope, covers};
use crate::secret::Pepper;

/// The reason codes of PRODUCT.md; every decision has exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Allowed.
    Ok,
    /// No credential presented.
    MissingToken,
    /// Not shaped like a token.
    MalformedToken,
    /// Token-shaped, wrong checksum.
    BadChecksum,
    /// No token with this id and secret.
    UnknownToken,
    /// The token was revoked.
    Revoked,
    /// The token expired.
    Expired,
    /// The token's `not_before` is in the future.
    NotYetValid,
    /// The token lacks the scope the request needs.
    InsufficientScope,
    /// The caller's address is outside the token's allowed networks.
    IpNotAllowed,
    /// Over the token's (or the address's) request budget.
    RateLimited,
    /// No route of the policy matches the request.
    RouteNotFound,
    /// The audit ledger could not record the decision.
    AuditUnavailable,
}

impl Reason {
    /// Every reason code, in PRODUCT.md order.
    pub const ALL: [Reason; 13] = [
        Reason::Ok,
        Reason::MissingToken,
        Reason::MalformedToken,
        Reason::BadChecksum,
        Reason::UnknownToken,
        Reason::Revoked,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::InsufficientScope,
        Reason::IpNotAllowed,
        Reason::RateLimited,
        Reason::RouteNotFound,
        Reason::AuditUnavailable,
    ];

    /// The reason code as written in events and responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::MissingToken => "missing_token",
            Reason::MalformedToken => "malformed_token",
            Reason::BadChecksum => "bad_checksum",
            Reason::UnknownToken => "unknown_token",
            Reason::Revoked => "revoked",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::IpNotAllowed => "ip_not_allowed",
            Reason::RateLimited => "rate_limited",
            Reason::RouteNotFound => "route_not_found",
            Reason::AuditUnavailable => "audit_unavailable",
        }
    }

    /// Parses a reason code.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The HTTP status that answers a request denied for this reason.
    pub fn http_status(self) -> u16 {
        match self {
            Reason::Ok => 200,
            Reason::MissingToken
            | Reason::MalformedToken
            | Reason::BadChecksum
            | Reason::UnknownToken
            | Reason::Revoked
            | Reason::Expired
            | Reason::NotYetValid => 401,
            Reason::InsufficientScope | Reason::IpNotAllowed | Reason::RouteNotFound => 403,
            Reason::RateLimited => 429,
            Reason::AuditUnavailable => 503,
        }
    }

    /// Whether the reason allows the request.
    pub fn is_allow(self) -> bool {
        self == Reason::Ok
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<CredentialError> for Reason {
    fn from(e: CredentialError) -> Reason {
        match e {
            CredentialError::Missing => Reason::MissingToken,
            CredentialError::Malformed => Reason::MalformedToken,
            CredentialError::BadChecksum => Reason::BadChecksum,
        }
    }
}

/// The constraint that failed, with the values it failed on.
#[derive(Clone, Debug, PartialEq)]
pub enum Constraint {
    /// The token was revoked.
    Revoked {
        /// When.
        at: Timestamp,
        /// By which admin token.
        by: Option<String>,
        /// Why.
        reason: Option<String>,
    },
    /// The token expired.
    Expired {
        /// Its expiry.
        expires_at: Timestamp,
    },
    /// The token is not valid yet.
    NotYetValid {
        /// Its start.
        not_before: Timestamp,
    },
    /// The address is outside the allowed networks.
    IpNotAllowed {
        /// The caller's address, if known.
        ip: Option<IpAddr>,
        /// The networks the token allows.
        allowed: Vec<IpNet>,
    },
    /// The request budget is spent.
    RateLimited {
        /// The token's limit.
        limit: Option<RateLimit>,
        /// When to retry.
        retry_after: Duration,
    },
}

/// Why a decision came out as it did, in terms a developer can act on.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// The scope the request needed, when known.
    pub required_scope: Option<Scope>,
    /// The scopes the token held at decision time (empty when the token is unknown).
    pub granted_scopes: Vec<Scope>,
    /// The failing constraint, if a constraint failed.
    pub constraint: Option<Constraint>,
    /// One human sentence.
    pub message: String,
}

/// A decision: exactly one reason, and its explanation.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The reason code.
    pub reason: Reason,
    /// The explanation.
    pub explanation: Explanation,
}

impl Decision {
    /// Whether the request is allowed.
    pub fn allowed(&self) -> bool {
        self.reason.is_allow()
    }
}

/// One access attempt, as the decision function sees it.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The presented credential, parsed, or why it could not be.
    pub credential: Result<ParsedToken<'a>, CredentialError>,
    /// The token the credential's id names, if one exists.
    pub record: Option<&'a TokenRecord>,
    /// The scope the request needs; `None` when no route matched.
    pub required: Option<&'a Scope>,
    /// The caller's address.
    pub source_ip: Option<IpAddr>,
    /// The decision time.
    pub now: Timestamp,
}

fn ts(t: Timestamp) -> String {
    // Whole seconds: explanations are for people; the event carries the precise time.
    t.round(jiff::Unit::Second).map_or_else(|_| t.to_string(), |r| r.to_string())
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Decides one attempt.
///
/// Order of checks (the first failing one is the reason): credential shape, token lookup and
/// secret, revocation, expiry, not-before, source network, route, scope, rate limit. `rate` is
/// asked only when everything else allows, so denied requests never spend a token's budget; it
/// returns the wait before the next permitted request, or `None` when within budget.
pub fn decide(
    pepper: &Pepper,
    attempt: &Attempt<'_>,
    rate: &mut dyn FnMut(&TokenRecord) -> Option<Duration>,
) -> Decision {
    let required_scope = attempt.required.cloned();
    let deny = |reason: Reason, granted: Vec<Scope>, constraint: Option<Constraint>, message: String| Decision {
        reason,
        explanation: Explanation {
            required_scope: required_scope.clone(),
            granted_scopes: granted,
            constraint,
            message,
        },
    };
    let parsed = match attempt.credential {
        Ok(p) => p,
        Err(e) => {
            let message = match e {
                CredentialError::Missing => "no token was presented (use Authorization: Bearer <token>)",
                CredentialError::Malformed => "the presented credential is not shaped like a tokentrail token",
                CredentialError::BadChecksum => {
                    "the presented token's checksum does not match: it was mistyped, truncated or made up"
                }
            };
            return deny(e.into(), Vec::new(), None, message.to_owned());
        }
    };
    let now = attempt.now;
    let record = match attempt.record {
        Some(r) if r.id == parsed.id && r.secret_matches(&pepper.hash_secret(parsed.secret), now) => r,
        _ => {
            return deny(
                Reason::UnknownToken,
                Vec::new(),
                None,
                "no token with this id and secret exists (it may have been rotated)".to_owned(),
            );
        }
    };
    let granted = record.scopes.clone();
    if let Some(at) = record.revoked_at {
        let by = record.revoked_by.clone();
        let why = record.revoke_reason.clone();
        let message = format!(
            "token {} was revoked at {} by {}{}",
            record.id,
            ts(at),
            by.as_deref().unwrap_or("unknown"),
            why.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        );
        return deny(Reason::Revoked, granted, Some(Constraint::Revoked { at, by, reason: why }), message);
    }
    if let Some(expires_at) = record.expires_at.filter(|e| now >= *e) {
        let message = format!("token {} expired at {}", record.id, ts(expires_at));
        return deny(Reason::Expired, granted, Some(Constraint::Expired { expires_at }), message);
    }
    if let Some(not_before) = record.not_before.filter(|nb| now < *nb) {
        let message = format!("token {} is not valid before {}", record.id, ts(not_before));
        return deny(Reason::NotYetValid, granted, Some(Constraint::NotYetValid { not_before }), message);
    }
    if !record.ip_allowed(attempt.source_ip) {
        let shown =
            attempt.source_ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_canonical().to_string());
        let message = format!("{shown} is not in the token's allowed networks {}", list(&record.allowed_cidrs));
        let constraint = Constraint::IpNotAllowed { ip: attempt.source_ip, allowed: record.allowed_cidrs.clone() };
        return deny(Reason::IpNotAllowed, granted, Some(constraint), message);
    }
    let Some(required) = attempt.required else {
        return deny(Reason::RouteNotFound, granted, None, "no route of the policy matches this request".to_owned());
    };
    if !covers(&record.scopes, required) {
        let message = format!("requires {required}; the token grants {}", list(&record.scopes));
        return deny(Reason::InsufficientScope, granted, None, message);
    }
    if let Some(retry_after) = rate(record) {
        let limit = record.rate_limit;
        let message = match limit {
            Some(l) => {
                format!("token {} is over its rate limit of {l}; retry in {}s", record.id, retry_after.as_secs().max(1))
            }
            None => format!("too many requests; retry in {}s", retry_after.as_secs().max(1)),
        };
        return deny(Reason::RateLimited, granted, Some(Constraint::RateLimited { limit, retry_after }), message);
    }
    Decision {
        reason: Reason::Ok,
        explanation: Explanation {
            required_scope,
            message: format!("allowed: {required} is granted by {}", list(&granted)),
            granted_scopes: granted,
            constraint: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Prefix, TokenString, parse};
    use crate::record::parse_cidr;
    use expect_test::expect;
    use std::collections::BTreeMap;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn fixed_rng() -> impl FnMut(&mut [u8]) {
        let mut n = 0u8;
        move |buf: &mut [u8]| {
            for b in buf {
                n = n.wrapping_mul(31).wrapping_add(17);
                *b = n;
            }
        }
    }

    fn record(pepper: &Pepper, token: &TokenString) -> TokenRecord {
        TokenRecord {
            id: token.id().to_owned(),
            name: "ci".into(),
            owner: "team-a".into(),
            description: String::new(),
            labels: BTreeMap::new(),
            scopes: vec![Scope::parse("orders:read").unwrap()],
            created_at: t("2026-01-01T00:00:00Z"),
            created_by: "bootstrap".into(),
            updated_at: t("2026-01-01T00:00:00Z"),
            expires_at: Some(t("2026-12-31T00:00:00Z")),
            not_before: None,
            allowed_cidrs: Vec::new(),
            rate_limit: None,
            last_used_at: None,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
            secret_hash: pepper.hash_secret(token.secret()),
            secret_created_at: t("2026-01-01T00:00:00Z"),
            previous_secret: None,
            revision: 1,
            shadow_scopes: Vec::new(),
        }
    }

    /// Every reason code the decision function can produce, each from a minimal change to an
    /// otherwise allowed attempt. `audit_unavailable` is decided by the engine, not here.
    #[test]
    fn decision_table() {
        let pepper = Pepper::from_bytes([7; 32]);
        let token = TokenString::generate(&Prefix::default(), &mut fixed_rng());
        let other = TokenString::with_id(&Prefix::default(), token.id(), &mut |_| {}).expose().to_owned();
        let good = record(&pepper, &token);
        let read = Scope::parse("orders:read").unwrap();
        let write = Scope::parse("orders:write").unwrap();
        let now = t("2026-06-01T12:00:00Z");
        let ip: IpAddr = "203.0.113.9".parse().unwrap();

        let mut revoked = good.clone();
        revoked.revoked_at = Some(t("2026-05-01T10:00:00Z"));
        revoked.revoked_by = Some("admin1".into());
        revoked.revoke_reason = Some("leaked in a CI log".into());
        let mut expired = good.clone();
        expired.expires_at = Some(now);
        let mut future = good.clone();
        future.not_before = Some(t("2026-07-01T00:00:00Z"));
        let mut fenced = good.clone();
        fenced.allowed_cidrs = vec![parse_cidr("10.0.0.0/8").unwrap(), parse_cidr("2001:db8::/32").unwrap()];
        let mut limited = good.clone();
        limited.rate_limit = Some(RateLimit::parse("100/min").unwrap());
        let mut grace = good.clone();
        grace.secret_hash = pepper.hash_secret("rotated-secret");
        grace.previous_secret = Some((pepper.hash_secret(token.secret()), t("2026-06-01T12:00:01Z")));
        let mut grace_over = grace.clone();
        grace_over.previous_secret = Some((pepper.hash_secret(token.secret()), now));

        let (head, last) = token.expose().split_at(token.expose().len() - 1);
        let typo = format!("{head}{}", if last == "0" { "1" } else { "0" });
        type Case<'a> = (&'a str, &'a str, Option<&'a TokenRecord>, Option<&'a Scope>, Option<Duration>);
        let cases: Vec<Case<'_>> = vec![
            ("ok", token.expose(), Some(&good), Some(&read), None),
            ("missing", "", Some(&good), Some(&read), None),
            ("malformed", "Bearer hunter2", None, Some(&read), None),
            ("checksum", &other[..other.len() - 1], None, Some(&read), None),
            ("bad checksum", &typo, Some(&good), Some(&read), None),
            ("no such id", token.expose(), None, Some(&read), None),
            ("wrong secret", &other, Some(&good), Some(&read), None),
            ("revoked", token.expose(), Some(&revoked), Some(&read), None),
            ("expired at the boundary", token.expose(), Some(&expired), Some(&read), None),
            ("not yet valid", token.expose(), Some(&future), Some(&read), None),
            ("ip fenced", token.expose(), Some(&fenced), Some(&read), None),
            ("no route", token.expose(), Some(&good), None, None),
            ("needs write", token.expose(), Some(&good), Some(&write), None),
            ("rate limited", token.expose(), Some(&limited), Some(&read), Some(Duration::from_secs(3))),
            ("old secret in grace", token.expose(), Some(&grace), Some(&read), None),
            ("old secret after grace", token.expose(), Some(&grace_over), Some(&read), None),
        ];
        let mut out = String::new();
        for (name, presented, rec, required, wait) in cases {
            let attempt = Attempt { credential: parse(presented), record: rec, required, source_ip: Some(ip), now };
            let d = decide(&pepper, &attempt, &mut |_| wait);
            let granted = list(&d.explanation.granted_scopes);
            out.push_str(&format!(
                "{name:<24} {:<18} {} granted={granted}\n{:>27}{}\n",
                d.reason.as_str(),
                d.reason.http_status(),
                "",
                d.explanation.message.replace(token.id(), "<id>")
            ));
        }
        expect![[r#"
            ok                       ok                 200 granted=[orders:read]
                                       allowed: orders:read is granted by [orders:read]
            missing                  missing_token      401 granted=[]
                                       no token was presented (use Authorization: Bearer <token>)
            malformed                malformed_token    401 granted=[]
                                       the presented credential is not shaped like a tokentrail token
            checksum                 malformed_token    401 granted=[]
                                       the presented credential is not shaped like a tokentrail token
            bad checksum             bad_checksum       401 granted=[]
                                       the presented token's checksum does not match: it was mistyped, truncated or made up
            no such id               unknown_token      401 granted=[]
                                       no token with this id and secret exists (it may have been rotated)
            wrong secret             unknown_token      401 granted=[]
                                       no token with this id and secret exists (it may have been rotated)
            revoked                  revoked            401 granted=[orders:read]
                                       token <id> was revoked at 2026-05-01T10:00:00Z by admin1: leaked in a CI log
            expired at the boundary  expired            401 granted=[orders:read]
                                       token <id> expired at 2026-06-01T12:00:00Z
            not yet valid            not_yet_valid      401 granted=[orders:read]
                                       token <id> is not valid before 2026-07-01T00:00:00Z
            ip fenced                ip_not_allowed     403 granted=[orders:read]
                                       203.0.113.9 is not in the token's allowed networks [10.0.0.0/8, 2001:db8::/32]
            no route                 route_not_found    403 granted=[orders:read]
                                       no route of the policy matches this request
            needs write              insufficient_scope 403 granted=[orders:read]
                                       requires orders:write; the token grants [orders:read]
            rate limited             rate_limited       429 granted=[orders:read]
                                       token <id> is over its rate limit of 100/min; retry in 3s
            old secret in grace      ok                 200 granted=[orders:read]
                                       allowed: orders:read is granted by [orders:read]
            old secret after grace   unknown_token      401 granted=[]
                                       no token with this id and secret exists (it may have been rotated)
        "#]].assert_eq(&out);
    }

    #[test]
    fn every_reason_has_a_distinct_name_and_round_trips() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        let names: std::collections::BTreeSet<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
    }

    #[test]
    fn rate_limiter_is_asked_only_when_everything_else_allows() {
        let pepper = Pepper::from_bytes([7; 32]);
        let token = TokenString::generate(&Prefix::default(), &mut fixed_rng());
        let rec = record(&pepper, &token);
        let write = Scope::parse("orders:write").unwrap();
        let mut asked = 0;
        let attempt = Attempt {
            credential: parse(token.expose()),
            record: Some(&rec),
            required: Some(&write),
            source_ip: None,
            now: t("2026-06-01T12:00:00Z"),
        };
        let d = decide(&pepper, &attempt, &mut |_| {
            asked += 1;
            None
        });
        assert_eq!(d.reason, Reason::InsufficientScope);
        assert_eq!(asked, 0);
    }
}
