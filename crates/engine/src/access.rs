//! Access decisions: one presented credential and one request in, exactly one reason code, an
//! explanation and the (not yet recorded) audit event out. The gateway, `/v1/verify` and
//! `/v1/authz` all decide here, so they are audited identically.
//!
//! Tokens are read through a cache that every change made through the engine invalidates before
//! it returns, so revocation, scope changes and expiry apply to the very next request. Failed
//! attempts spend the caller's address budget; an address over budget is answered
//! `rate_limited` without a token lookup, so guessing stays cheap for tokentrail and slow for the
//! guesser.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ledger::event::{Event, Kind};
use policy::{OnAuditFailure, Policy};
use token::{Attempt, CredentialError, Decision, Reason, Scope, TokenRecord};

use crate::limits::Budget;
use crate::{Engine, Result, annotate};

/// Most token records kept in the cache.
const CACHE_SIZE: usize = 100_000;

/// What a request needs.
#[derive(Clone, Copy, Debug)]
pub enum Required<'a> {
    /// Whatever the route policy says for this method and path.
    Route {
        /// HTTP method.
        method: &'a str,
        /// Path (a query string is ignored).
        path: &'a str,
    },
    /// A scope named by the caller (`/v1/verify` with `scope`).
    Scope(&'a Scope),
}

/// One access attempt.
#[derive(Clone, Copy, Debug)]
pub struct AccessRequest<'a> {
    /// `gateway`, `verify` or `authz`.
    pub source: &'a str,
    /// The presented credential, as presented.
    pub credential: Option<&'a str>,
    /// What the request needs.
    pub required: Required<'a>,
    /// The caller's address.
    pub source_ip: Option<IpAddr>,
    /// The caller's user agent.
    pub user_agent: Option<&'a str>,
    /// The request id.
    pub request_id: Option<&'a str>,
}

/// The decision and everything the caller needs to answer and record it.
#[derive(Clone, Debug)]
pub struct AccessOutcome {
    /// The decision.
    pub decision: Decision,
    /// The audit event, complete but for the upstream's status, latency and bytes.
    pub event: Event,
    /// The resolved token, when the credential named one.
    pub token: Option<Arc<TokenRecord>>,
    /// What the route wants when the ledger cannot record.
    pub on_audit_failure: OnAuditFailure,
    /// For `rate_limited`: when to retry.
    pub retry_after: Option<Duration>,
}

/// The engine's access state: route policy, token cache and rate limiters.
pub(crate) struct AccessState {
    pub(crate) policy: RwLock<Arc<Policy>>,
    cache: RwLock<HashMap<String, Option<Arc<TokenRecord>>>>,
    /// Bumped by every invalidation, so a record read from the store before a change committed
    /// is never put into the cache after the change invalidated it.
    generation: std::sync::atomic::AtomicU64,
    token_limits: crate::limits::Gcra,
    address_limits: crate::limits::Gcra,
    pub(crate) failed_attempts: Budget,
}

impl AccessState {
    pub(crate) fn new(policy: Policy, failed_attempts: Budget) -> AccessState {
        AccessState {
            policy: RwLock::new(Arc::new(policy)),
            cache: RwLock::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            token_limits: crate::limits::Gcra::default(),
            address_limits: crate::limits::Gcra::default(),
            failed_attempts,
        }
    }

    /// Forgets every cached record (after a change to many tokens at once).
    pub(crate) fn invalidate_all(&self) {
        let mut cache = self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.clear();
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn invalidate(&self, id: &str) {
        let mut cache = self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.remove(id);
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        drop(cache);
        self.token_limits.forget(id);
    }
}

/// Addresses are limited per /64 for IPv6 (one host usually has a whole /64) and per address for
/// IPv4.
fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

impl Engine {
    /// Replaces the route policy (a reload). The new policy applies to the next request.
    pub fn set_policy(&self, policy: Policy) {
        *self.access.policy.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policy);
    }

    /// The route policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.access.policy.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// A token by id, through the cache.
    pub(crate) fn cached_token(&self, id: &str) -> Result<Option<Arc<TokenRecord>>> {
        use std::sync::atomic::Ordering::SeqCst;
        if let Some(hit) = self.access.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(id) {
            return Ok(hit.clone());
        }
        let generation = self.access.generation.load(SeqCst);
        let record = self.store.get_token(id)?.map(Arc::new);
        let mut cache = self.access.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A change that committed while the store was read has invalidated since: what was read
        // may predate it, so it answers this request only and is not kept.
        if self.access.generation.load(SeqCst) == generation {
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
            cache.insert(id.to_owned(), record.clone());
        }
        Ok(record)
    }

    /// Decides one access attempt and builds its audit event (not recorded yet: the caller
    /// records it, after adding the upstream's answer when it forwards).
    pub fn decide_access(&self, req: &AccessRequest<'_>) -> Result<AccessOutcome> {
        let now = self.now();
        let now_us = now.as_microsecond();
        let presented = req.credential.unwrap_or("");
        let policy = self.policy();
        let (route, required_scope) = match req.required {
            Required::Route { method, path } => match policy.resolve(method, path) {
                Some(m) => (Some(m), Some(m.scope().clone())),
                None => (None, None),
            },
            Required::Scope(s) => (None, Some(s.clone())),
        };
        let on_audit_failure = route.map_or(OnAuditFailure::Deny, |m| m.on_audit_failure());

        // An address over its failed-attempt budget is refused before any lookup.
        let address_wait = req
            .source_ip
            .and_then(|ip| self.access.address_limits.peek(&address_key(ip), self.access.failed_attempts, now_us));
        let credential = token::parse(presented);
        let (decision, record) = if let Some(wait) = address_wait {
            let message = format!(
                "too many failed attempts from this address (limit {}/{}s); retry in {}s",
                self.access.failed_attempts.count,
                self.access.failed_attempts.per.as_secs(),
                wait.as_secs().max(1)
            );
            let decision = Decision {
                reason: Reason::RateLimited,
                explanation: token::Explanation {
                    required_scope: required_scope.clone(),
                    granted_scopes: Vec::new(),
                    constraint: Some(token::Constraint::RateLimited { limit: None, retry_after: wait }),
                    message,
                },
            };
            (decision, None)
        } else {
            let record = match credential {
                Ok(p) => self.cached_token(p.id)?,
                Err(_) => None,
            };
            let attempt = Attempt {
                credential,
                record: record.as_deref(),
                required: required_scope.as_ref(),
                source_ip: req.source_ip,
                now,
            };
            let limits = &self.access.token_limits;
            let decision = token::decide(&self.pepper, &attempt, &mut |t: &TokenRecord| {
                let limit = t.rate_limit?;
                limits.check(&t.id, Budget { count: limit.count, per: limit.per }, now_us).err()
            });
            (decision, record)
        };

        let reason = decision.reason;
        let failed_auth = matches!(
            reason,
            Reason::MissingToken | Reason::MalformedToken | Reason::BadChecksum | Reason::UnknownToken
        );
        if failed_auth && presented.is_empty() {
            // A request without any credential is not a guess; it does not spend the budget.
        } else if failed_auth && let Some(ip) = req.source_ip {
            let _ = self.access.address_limits.check(&address_key(ip), self.access.failed_attempts, now_us);
        }

        let mut e = self.new_event(Kind::Access, req.source, reason)?;
        e.time = now;
        e.source_ip = req.source_ip.map(|ip| ip.to_canonical().to_string());
        e.user_agent = req.user_agent.map(|ua| ua.chars().take(512).collect());
        e.request_id = req.request_id.map(str::to_owned);
        if let Required::Route { method, path } = req.required {
            e.method = Some(method.to_owned());
            let path = path.split('?').next().unwrap_or(path);
            e.path = Some(token::redact_path(path).into_owned());
        }
        e.route = route.map(|m| m.text().to_owned());
        if let Some(s) = &required_scope {
            e.resource = Some(s.resource().to_owned());
            e.action = Some(s.action().as_str().to_owned());
        }
        e.sensitivity = route.map(|m| m.sensitivity().to_vec()).unwrap_or_default();
        e.status = Some(reason.http_status());
        let resolved = record.as_ref().filter(|_| credential.is_ok() && reason != Reason::UnknownToken);
        if let Some(r) = resolved {
            e.token_id = Some(r.id.clone());
            e.owner = Some(r.owner.clone());
            self.note_use(&r.id, now);
        } else if !presented.is_empty() && credential != Err(CredentialError::Missing) {
            e.token_fingerprint = Some(self.pepper.fingerprint(presented));
        }
        annotate(&mut e, &decision);
        // Shadow mode: the real scopes decided; say whether the proposed ones would have denied.
        if decision.allowed()
            && let (Some(r), Some(required)) = (resolved, &required_scope)
            && !r.shadow_scopes.is_empty()
            && insight::shadow_denies(&r.shadow_scopes, required)
        {
            e.details.insert("shadow_decision".to_owned(), "deny".to_owned());
            let proposed: Vec<String> = r.shadow_scopes.iter().map(ToString::to_string).collect();
            e.details.insert("shadow_scopes".to_owned(), proposed.join(","));
        }
        let retry_after = match &decision.explanation.constraint {
            Some(token::Constraint::RateLimited { retry_after, .. }) => Some(*retry_after),
            _ => None,
        };
        Ok(AccessOutcome { decision, event: e, token: resolved.cloned(), on_audit_failure, retry_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_share_a_budget_per_64() {
        let a = address_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = address_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = address_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(address_key("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
    }
}
