//! Token use cases: create, update, revoke, rotate, show and list, with validation of every
//! field (all problems reported at once) and an admin event stored with every change.
//!
//! Limits (documented in docs/api.md): name and owner 1-128 characters, description up to 1024,
//! up to 32 labels (keys `[a-z0-9][a-z0-9_.:/-]{0,62}`, values up to 256 characters), 1 to 64
//! scopes, up to 64 networks, revoke reasons 1-500 characters.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use ledger::event::{Event, Kind};
use store::TokenQuery;
use token::{RateLimit, Reason, Scope, TokenRecord, TokenState, TokenString};

use crate::{Engine, EngineError, FieldError, Principal, RequestContext, Result, with_rng};

const MAX_NAME: usize = 128;
const MAX_DESCRIPTION: usize = 1024;
const MAX_LABELS: usize = 32;
const MAX_LABEL_VALUE: usize = 256;
const MAX_SCOPES: usize = 64;
const MAX_CIDRS: usize = 64;
const MAX_REASON: usize = 500;
/// Largest page of tokens.
pub const MAX_PAGE: u32 = 1000;

/// How a new token's expiry was asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Expiry {
    /// Nothing given: the configured default lifetime.
    #[default]
    Default,
    /// An absolute time (RFC 3339).
    At(String),
    /// A duration from now (`30d`).
    In(String),
    /// Explicitly no expiry.
    Never,
}

/// Input of [`Engine::create_token`], as given by the caller (validated here).
#[derive(Clone, Debug, Default)]
pub struct NewToken {
    /// Name.
    pub name: String,
    /// Owner.
    pub owner: String,
    /// Description.
    pub description: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Scope strings.
    pub scopes: Vec<String>,
    /// Absolute expiry.
    pub expires_at: Option<String>,
    /// Relative expiry.
    pub expires_in: Option<String>,
    /// Explicitly no expiry.
    pub no_expiry: bool,
    /// Not-before time.
    pub not_before: Option<String>,
    /// Network strings.
    pub allowed_cidrs: Vec<String>,
    /// Rate limit string.
    pub rate_limit: Option<String>,
}

/// Input of [`Engine::update_token`]: `None` leaves a field unchanged; for `not_before` and
/// `rate_limit`, `Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct TokenPatch {
    /// New name.
    pub name: Option<String>,
    /// New owner.
    pub owner: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// Replacement labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Replacement scopes.
    pub scopes: Option<Vec<String>>,
    /// New absolute expiry.
    pub expires_at: Option<String>,
    /// New relative expiry.
    pub expires_in: Option<String>,
    /// Remove the expiry.
    pub no_expiry: Option<bool>,
    /// New or cleared not-before.
    pub not_before: Option<Option<String>>,
    /// Replacement networks.
    pub allowed_cidrs: Option<Vec<String>>,
    /// New or cleared rate limit.
    pub rate_limit: Option<Option<String>>,
}

/// Filters of [`Engine::list_tokens`], as given by the caller.
#[derive(Clone, Debug, Default)]
pub struct TokenFilter {
    /// Exact owner.
    pub owner: Option<String>,
    /// Tokens whose grants imply this scope.
    pub scope: Option<String>,
    /// `active`, `revoked`, `expired`, `not_yet_valid`.
    pub state: Option<String>,
    /// `key` or `key=value`.
    pub label: Option<String>,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// Collects every validation problem of one request.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    fn finish(self) -> Result<()> {
        if self.0.is_empty() { Ok(()) } else { Err(EngineError::Invalid(self.0)) }
    }

    fn text(&mut self, field: &str, value: &str, min: usize, max: usize, multiline: bool) {
        let n = value.chars().count();
        if n < min {
            self.add(
                field,
                if min == 1 { "must not be empty".to_owned() } else { format!("must be at least {min} characters") },
            );
        } else if n > max {
            self.add(field, format!("must be at most {max} characters (got {n})"));
        }
        if value.chars().any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t'))) {
            self.add(field, "must not contain control characters");
        }
        if min > 0 && !value.is_empty() && value.trim().is_empty() {
            self.add(field, "must not be only whitespace");
        }
    }

    fn time(&mut self, field: &str, value: &str) -> Option<Timestamp> {
        match value.parse::<Timestamp>() {
            Ok(t) => Some(t),
            Err(_) => {
                self.add(field, format!("{value:?} is not an RFC 3339 time such as 2026-12-31T23:59:59Z"));
                None
            }
        }
    }

    fn labels(&mut self, labels: &BTreeMap<String, String>) {
        if labels.len() > MAX_LABELS {
            self.add("labels", format!("at most {MAX_LABELS} labels (got {})", labels.len()));
        }
        for (k, v) in labels {
            let valid_key = !k.is_empty()
                && k.len() <= 63
                && k.as_bytes()[0].is_ascii_alphanumeric()
                && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:/-".contains(&b));
            if !valid_key {
                self.add(
                    format!("labels.{k}"),
                    "label keys are 1-63 characters: lowercase letters, digits and _ . : / -, starting with a letter or digit",
                );
            }
            self.text(&format!("labels.{k}"), v, 0, MAX_LABEL_VALUE, false);
        }
    }

    fn scopes(&mut self, scopes: &[String]) -> Vec<Scope> {
        if scopes.is_empty() {
            self.add("scopes", "at least one scope is required (for example orders:read)");
        }
        if scopes.len() > MAX_SCOPES {
            self.add("scopes", format!("at most {MAX_SCOPES} scopes (got {})", scopes.len()));
        }
        let mut out: Vec<Scope> = Vec::new();
        for (i, s) in scopes.iter().enumerate() {
            match Scope::parse(s) {
                Ok(scope) if !out.contains(&scope) => out.push(scope),
                Ok(_) => {}
                Err(e) => self.add(format!("scopes[{i}]"), e.to_string()),
            }
        }
        out
    }

    fn cidrs(&mut self, cidrs: &[String]) -> Vec<ipnet::IpNet> {
        if cidrs.len() > MAX_CIDRS {
            self.add("allowed_cidrs", format!("at most {MAX_CIDRS} networks (got {})", cidrs.len()));
        }
        let mut out = Vec::new();
        for (i, c) in cidrs.iter().enumerate() {
            match token::parse_cidr(c) {
                Ok(n) if !out.contains(&n) => out.push(n),
                Ok(_) => {}
                Err(e) => self.add(format!("allowed_cidrs[{i}]"), e.to_string()),
            }
        }
        out
    }

    fn rate(&mut self, value: &str) -> Option<RateLimit> {
        match RateLimit::parse(value) {
            Ok(r) => Some(r),
            Err(e) => {
                self.add("rate_limit", e.to_string());
                None
            }
        }
    }
}

fn add_duration(t: Timestamp, d: Duration) -> Option<Timestamp> {
    t.checked_add(jiff::SignedDuration::try_from(d).ok()?).ok()
}

/// The human form of a duration for messages (`90d`).
fn human(d: Duration) -> String {
    token::format_duration(d)
}

impl Engine {
    /// Resolves the requested expiry against the lifetime limits.
    fn expiry(&self, p: &mut Problems, now: Timestamp, expiry: Expiry) -> Option<Option<Timestamp>> {
        let max = self.settings.max_lifetime;
        let latest = add_duration(now, max);
        let at = match expiry {
            Expiry::Never => return Some(None),
            Expiry::Default => add_duration(now, self.settings.default_lifetime.min(max)),
            Expiry::In(s) => match token::parse_duration(&s) {
                Ok(d) if d > max => {
                    p.add("expires_in", format!("{s} is beyond the maximum lifetime of {}", human(max)));
                    return None;
                }
                Ok(d) => add_duration(now, d),
                Err(e) => {
                    p.add("expires_in", e.to_string());
                    return None;
                }
            },
            Expiry::At(s) => {
                let t = p.time("expires_at", &s)?;
                if t <= now {
                    p.add("expires_at", format!("{s} is in the past"));
                    return None;
                }
                if latest.is_some_and(|l| t > l) {
                    p.add("expires_at", format!("{s} is beyond the maximum lifetime of {} from now", human(max)));
                    return None;
                }
                Some(t)
            }
        };
        Some(at)
    }

    fn admin_event(&self, by: &Principal, ctx: &RequestContext, op: &str, target: &str, status: u16) -> Result<Event> {
        let mut e = self.new_event(Kind::Admin, "admin", Reason::Ok)?;
        Engine::fill_context(&mut e, ctx);
        e.token_id = Some(by.token_id.clone());
        e.owner = Some(by.owner.clone());
        e.resource = Some(token::scope::RESERVED_RESOURCE.to_owned());
        e.action = Some("admin".to_owned());
        e.required_scope = Some(Scope::tokentrail_admin().to_string());
        e.granted_scopes = by.scopes.iter().map(ToString::to_string).collect();
        e.operation = Some(op.to_owned());
        e.target = Some(target.to_owned());
        e.status = Some(status);
        Ok(e)
    }

    /// Issues a token. Returns the stored record, the token string (shown once) and the event.
    pub fn create_token(
        &self,
        by: &Principal,
        ctx: &RequestContext,
        new: NewToken,
    ) -> Result<(TokenRecord, TokenString, Event)> {
        let now = self.now();
        let mut p = Problems::default();
        p.text("name", &new.name, 1, MAX_NAME, false);
        p.text("owner", &new.owner, 1, MAX_NAME, false);
        let description = new.description.unwrap_or_default();
        p.text("description", &description, 0, MAX_DESCRIPTION, true);
        p.labels(&new.labels);
        let scopes = p.scopes(&new.scopes);
        let allowed_cidrs = p.cidrs(&new.allowed_cidrs);
        let rate_limit = new.rate_limit.as_deref().and_then(|r| p.rate(r));
        let given = [new.expires_at.is_some(), new.expires_in.is_some(), new.no_expiry].iter().filter(|b| **b).count();
        let expiry = if given > 1 {
            p.add("expires_at", "give at most one of expires_at, expires_in and no_expiry");
            None
        } else {
            let asked = match (new.expires_at, new.expires_in, new.no_expiry) {
                (Some(at), _, _) => Expiry::At(at),
                (_, Some(d), _) => Expiry::In(d),
                (_, _, true) => Expiry::Never,
                _ => Expiry::Default,
            };
            self.expiry(&mut p, now, asked)
        };
        let not_before = new.not_before.as_deref().and_then(|s| p.time("not_before", s));
        if let (Some(nb), Some(Some(exp))) = (not_before, expiry)
            && nb >= exp
        {
            p.add("not_before", "must be before the expiry");
        }
        p.finish()?;
        let token = with_rng(|fill| TokenString::generate(&self.settings.prefix, fill))?;
        let record = TokenRecord {
            id: token.id().to_owned(),
            name: new.name,
            owner: new.owner,
            description,
            labels: new.labels,
            scopes,
            created_at: now,
            created_by: by.token_id.clone(),
            updated_at: now,
            expires_at: expiry.flatten(),
            not_before,
            allowed_cidrs,
            rate_limit,
            last_used_at: None,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
            secret_hash: self.pepper.hash_secret(token.secret()),
            secret_created_at: now,
            previous_secret: None,
            revision: 1,
            shadow_scopes: Vec::new(),
        };
        let mut event = self.admin_event(by, ctx, "token.create", &record.id, 201)?;
        event.details = describe(&record);
        event.explanation = Some(format!("created token {} ({}) for {}", record.id, record.name, record.owner));
        self.store.insert_token(&record, &mut event)?;
        self.access.invalidate(&record.id);
        Ok((record, token, event))
    }

    /// One token.
    pub fn get_token(&self, id: &str) -> Result<TokenRecord> {
        self.store.get_token(id)?.ok_or_else(|| EngineError::NotFound(format!("token {id}")))
    }

    fn live_token(&self, id: &str, verb: &str) -> Result<TokenRecord> {
        let t = self.get_token(id)?;
        if t.revoked_at.is_some() {
            return Err(EngineError::Conflict {
                code: "token_revoked",
                message: format!("token {id} is revoked and cannot be {verb}; issue a new token instead"),
            });
        }
        Ok(t)
    }

    /// Changes a token's metadata, grants or constraints.
    pub fn update_token(
        &self,
        by: &Principal,
        ctx: &RequestContext,
        id: &str,
        patch: TokenPatch,
    ) -> Result<TokenRecord> {
        let old = self.live_token(id, "updated")?;
        let now = self.now();
        let mut p = Problems::default();
        let mut t = old.clone();
        if let Some(name) = patch.name {
            p.text("name", &name, 1, MAX_NAME, false);
            t.name = name;
        }
        if let Some(owner) = patch.owner {
            p.text("owner", &owner, 1, MAX_NAME, false);
            t.owner = owner;
        }
        if let Some(d) = patch.description {
            p.text("description", &d, 0, MAX_DESCRIPTION, true);
            t.description = d;
        }
        if let Some(labels) = patch.labels {
            p.labels(&labels);
            t.labels = labels;
        }
        if let Some(scopes) = patch.scopes {
            t.scopes = p.scopes(&scopes);
        }
        if let Some(cidrs) = patch.allowed_cidrs {
            t.allowed_cidrs = p.cidrs(&cidrs);
        }
        match patch.rate_limit {
            Some(Some(r)) => t.rate_limit = p.rate(&r),
            Some(None) => t.rate_limit = None,
            None => {}
        }
        let given = [patch.expires_at.is_some(), patch.expires_in.is_some(), patch.no_expiry == Some(true)]
            .iter()
            .filter(|b| **b)
            .count();
        if given > 1 {
            p.add("expires_at", "give at most one of expires_at, expires_in and no_expiry");
        } else if patch.no_expiry == Some(false) {
            p.add("no_expiry", "only `true` is meaningful; to set an expiry give expires_at or expires_in");
        } else {
            let asked = match (patch.expires_at, patch.expires_in, patch.no_expiry) {
                (Some(at), _, _) => Some(Expiry::At(at)),
                (_, Some(d), _) => Some(Expiry::In(d)),
                (_, _, Some(true)) => Some(Expiry::Never),
                _ => None,
            };
            if let Some(asked) = asked
                && let Some(exp) = self.expiry(&mut p, now, asked)
            {
                t.expires_at = exp;
            }
        }
        match patch.not_before {
            Some(Some(s)) => t.not_before = p.time("not_before", &s),
            Some(None) => t.not_before = None,
            None => {}
        }
        if let (Some(nb), Some(exp)) = (t.not_before, t.expires_at)
            && nb >= exp
        {
            p.add("not_before", "must be before the expiry");
        }
        p.finish()?;
        let changes = diff(&old, &t);
        if changes.is_empty() {
            return Ok(old);
        }
        t.updated_at = now;
        t.revision = old.revision + 1;
        let mut event = self.admin_event(by, ctx, "token.update", id, 200)?;
        event.explanation =
            Some(format!("updated token {id}: {}", changes.keys().cloned().collect::<Vec<_>>().join(", ")));
        event.details = changes;
        self.store.update_token(&t, old.revision, &mut event)?;
        self.access.invalidate(id);
        Ok(t)
    }

    /// Revokes a token (final). Revoking twice is a conflict, not a silent success, so that the
    /// audit trail keeps the first revocation's reason.
    pub fn revoke_token(&self, by: &Principal, ctx: &RequestContext, id: &str, reason: &str) -> Result<TokenRecord> {
        let mut p = Problems::default();
        p.text("reason", reason, 1, MAX_REASON, false);
        p.finish()?;
        let old = self.get_token(id)?;
        if let Some(at) = old.revoked_at {
            return Err(EngineError::Conflict {
                code: "already_revoked",
                message: format!(
                    "token {id} was already revoked at {} by {}",
                    ledger::event::format_time(at),
                    old.revoked_by.as_deref().unwrap_or("unknown")
                ),
            });
        }
        let now = self.now();
        let mut t = old.clone();
        t.revoked_at = Some(now);
        t.revoked_by = Some(by.token_id.clone());
        t.revoke_reason = Some(reason.to_owned());
        t.previous_secret = None;
        t.updated_at = now;
        t.revision = old.revision + 1;
        let mut event = self.admin_event(by, ctx, "token.revoke", id, 200)?;
        event.details = BTreeMap::from([("revoke_reason".to_owned(), reason.to_owned())]);
        event.explanation = Some(format!("revoked token {id}: {reason}"));
        self.store.update_token(&t, old.revision, &mut event)?;
        self.access.invalidate(id);
        Ok(t)
    }

    /// Issues a new secret with identical grants; the old secret keeps working only for `grace`.
    pub fn rotate_token(
        &self,
        by: &Principal,
        ctx: &RequestContext,
        id: &str,
        grace: Option<&str>,
    ) -> Result<(TokenRecord, TokenString)> {
        let mut p = Problems::default();
        let grace = match grace.map(token::parse_duration) {
            None => None,
            Some(Ok(d)) if d > self.settings.max_rotation_grace => {
                p.add("grace", format!("at most {}", human(self.settings.max_rotation_grace)));
                None
            }
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                p.add("grace", e.to_string());
                None
            }
        };
        p.finish()?;
        let old = self.live_token(id, "rotated")?;
        let now = self.now();
        let prefix = self.settings.prefix.clone();
        let token = with_rng(|fill| TokenString::with_id(&prefix, id, fill))?;
        let mut t = old.clone();
        t.secret_hash = self.pepper.hash_secret(token.secret());
        t.secret_created_at = now;
        t.previous_secret = grace.and_then(|g| add_duration(now, g)).map(|until| (old.secret_hash, until));
        t.updated_at = now;
        t.revision = old.revision + 1;
        let mut event = self.admin_event(by, ctx, "token.rotate", id, 200)?;
        let grace_text = grace.map_or_else(|| "none".to_owned(), human);
        event.details = BTreeMap::from([("grace".to_owned(), grace_text.clone())]);
        event.explanation = Some(format!("rotated token {id}; the old secret's grace period: {grace_text}"));
        self.store.update_token(&t, old.revision, &mut event)?;
        self.access.invalidate(id);
        Ok((t, token))
    }

    /// Lists tokens. The cursor is opaque and bound to the filters it was issued for.
    pub fn list_tokens(&self, filter: &TokenFilter) -> Result<(Vec<TokenRecord>, Option<String>)> {
        let mut p = Problems::default();
        let scope = filter.scope.as_deref().and_then(|s| match Scope::parse(s) {
            Ok(s) => Some(s),
            Err(e) => {
                p.add("scope", e.to_string());
                None
            }
        });
        let state = filter.state.as_deref().and_then(|s| {
            let st = TokenState::parse(s);
            if st.is_none() {
                p.add("state", format!("{s:?} is not a state (active, revoked, expired, not_yet_valid)"));
            }
            st
        });
        let label = filter.label.as_deref().map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (l.to_owned(), None),
        });
        let limit = filter.limit.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&limit) {
            p.add("limit", format!("must be between 1 and {MAX_PAGE}"));
        }
        let signature = format!("{:?}|{:?}|{:?}|{:?}", filter.owner, filter.scope, filter.state, filter.label);
        let after = filter.cursor.as_deref().and_then(|c| match decode_cursor(c, &signature) {
            Some(n) => Some(n),
            None => {
                p.add("cursor", "is not a cursor issued for this query; start again without a cursor");
                None
            }
        });
        p.finish()?;
        let page = self.store.list_tokens(&TokenQuery {
            owner: filter.owner.clone(),
            scope,
            state,
            label,
            after,
            limit,
            now: self.now(),
        })?;
        Ok((page.items, page.next.map(|n| encode_cursor(n, &signature))))
    }
}

/// An opaque cursor: the position and a checksum of the query it belongs to.
pub fn encode_cursor(pos: i64, signature: &str) -> String {
    format!("c{pos:x}.{:08x}", fnv1a(signature))
}

/// The position in a cursor, if it was issued for a query with this signature.
pub fn decode_cursor(cursor: &str, signature: &str) -> Option<i64> {
    let (pos, sum) = cursor.strip_prefix('c')?.split_once('.')?;
    if u32::from_str_radix(sum, 16).ok()? != fnv1a(signature) || sum.len() != 8 {
        return None;
    }
    i64::from_str_radix(pos, 16).ok().filter(|n| *n >= 0)
}

fn fnv1a(s: &str) -> u32 {
    // FNV-1a is enough to tell queries apart; cursors are not a security boundary.
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

fn fmt_opt(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "none".to_owned(), ledger::event::format_time)
}

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// The grants and constraints of a token, as event details (no secrets).
pub(crate) fn describe(t: &TokenRecord) -> BTreeMap<String, String> {
    let mut d = BTreeMap::from([
        ("name".to_owned(), t.name.clone()),
        ("owner".to_owned(), t.owner.clone()),
        ("scopes".to_owned(), join(&t.scopes)),
        ("expires_at".to_owned(), fmt_opt(t.expires_at)),
    ]);
    if let Some(nb) = t.not_before {
        d.insert("not_before".to_owned(), ledger::event::format_time(nb));
    }
    if !t.allowed_cidrs.is_empty() {
        d.insert("allowed_cidrs".to_owned(), join(&t.allowed_cidrs));
    }
    if let Some(r) = t.rate_limit {
        d.insert("rate_limit".to_owned(), r.to_string());
    }
    d
}

/// The fields that differ, as `old -> new`.
fn diff(old: &TokenRecord, new: &TokenRecord) -> BTreeMap<String, String> {
    let mut d = BTreeMap::new();
    let mut put = |k: &str, a: String, b: String| {
        if a != b {
            d.insert(k.to_owned(), format!("{a} -> {b}"));
        }
    };
    put("name", old.name.clone(), new.name.clone());
    put("owner", old.owner.clone(), new.owner.clone());
    put("description", old.description.clone(), new.description.clone());
    let labels = |t: &TokenRecord| t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    put("labels", labels(old), labels(new));
    put("scopes", join(&old.scopes), join(&new.scopes));
    put("expires_at", fmt_opt(old.expires_at), fmt_opt(new.expires_at));
    put("not_before", fmt_opt(old.not_before), fmt_opt(new.not_before));
    put("allowed_cidrs", join(&old.allowed_cidrs), join(&new.allowed_cidrs));
    let rate = |t: &TokenRecord| t.rate_limit.map_or_else(|| "none".to_owned(), |r| r.to_string());
    put("rate_limit", rate(old), rate(new));
    d
}
