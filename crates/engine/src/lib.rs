//! Use cases of tokentrail: issue, update, revoke and rotate tokens, authenticate requests, and
//! record every decision and change as an audit event.
//!
//! This is the one place where the pure core (`token`, `ledger`) meets storage, the clock and the
//! OS random number generator. It knows nothing about HTTP or JSON: the server maps requests to
//! these calls and results to wire types.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use ledger::event::{Event, Kind};
use store::{EventQuery, SqliteStore, Store, StoreError};
use token::{Attempt, Constraint, Decision, Pepper, Prefix, Reason, Scope, TokenRecord, TokenString};

pub mod access;
mod audit;
pub mod datadir;
pub mod detection;
pub mod investigate;
pub mod limits;
pub mod privilege;
pub mod recorder;
pub mod report;
mod tokens;
pub mod verify;

pub use audit::InclusionProof;
pub use datadir::DataDir;
pub use tokens::{Expiry, MAX_PAGE, NewToken, TokenFilter, TokenPatch, decode_cursor, encode_cursor};

/// A source of the current time. Production uses [`SystemClock`]; tests pass a fixed clock.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The wall clock: the one place tokentrail reads it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // This is the door through which the clock is read.
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Fills `buf` from the OS CSPRNG; `Err` when the OS cannot provide randomness.
pub fn os_random(buf: &mut [u8]) -> std::result::Result<(), EngineError> {
    getrandom::fill(buf).map_err(|e| EngineError::Internal(format!("the OS random number generator failed: {e}")))
}

/// Runs `f` with a random-byte source backed by the OS CSPRNG, failing if the OS failed.
fn with_rng<T>(f: impl FnOnce(&mut dyn FnMut(&mut [u8])) -> T) -> std::result::Result<T, EngineError> {
    let mut failed = false;
    let out = f(&mut |buf: &mut [u8]| {
        if getrandom::fill(buf).is_err() {
            failed = true;
        }
    });
    if failed { Err(EngineError::Internal("the OS random number generator failed".to_owned())) } else { Ok(out) }
}

/// A random base62 identifier with a prefix (`ev_…`, `req_…`).
pub fn random_id(prefix: &str, len: usize) -> std::result::Result<String, EngineError> {
    with_rng(|fill| format!("{prefix}{}", token::base62::random_digits(len, fill)))
}

/// A new event id: `ev_`, the time in microseconds as 9 base62 digits, then 11 random digits
/// (65 bits). Ids made later sort later, so the unique index of ids grows at its end instead of
/// touching a random page per event.
pub fn event_id(at: Timestamp) -> std::result::Result<String, EngineError> {
    let mut n = u64::try_from(at.as_microsecond()).unwrap_or(0);
    let mut time = [b'0'; 9];
    for slot in time.iter_mut().rev() {
        *slot = token::base62::ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    let time: String = time.iter().map(|b| char::from(*b)).collect();
    random_id(&format!("ev_{time}"), 11)
}

/// Settings the engine needs (from the config file).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Prefix of newly issued tokens.
    pub prefix: Prefix,
    /// Expiry of a token created without one.
    pub default_lifetime: Duration,
    /// Longest expiry that may be asked for.
    pub max_lifetime: Duration,
    /// Longest grace period of a rotation.
    pub max_rotation_grace: Duration,
    /// This node's name, recorded in events.
    pub node: String,
    /// When an event counts as recorded.
    pub durability: recorder::Durability,
    /// Events that may wait for the ledger writer.
    pub queue_capacity: usize,
    /// Failed authentication attempts allowed per source address (IPv6: per /64).
    pub failed_attempts: limits::Budget,
    /// Testing only: while this file exists, every store write fails (an injected I/O failure).
    pub fail_writes_while: Option<std::path::PathBuf>,
    /// Detector settings.
    pub detect: detect::DetectConfig,
    /// Days of ledger replayed at start to rebuild the detectors' baselines.
    pub detect_replay_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prefix: Prefix::default(),
            default_lifetime: Duration::from_secs(90 * 86_400),
            max_lifetime: Duration::from_secs(365 * 86_400),
            max_rotation_grace: Duration::from_secs(7 * 86_400),
            node: "local".to_owned(),
            durability: recorder::Durability::Durable,
            queue_capacity: 10_000,
            failed_attempts: limits::Budget { count: 60, per: Duration::from_secs(60) },
            fail_writes_while: None,
            detect: detect::DetectConfig::default(),
            detect_replay_days: 35,
        }
    }
}

/// Who is calling, from where, for what: everything an event records about a request.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The caller's address.
    pub source_ip: Option<IpAddr>,
    /// The caller's user agent.
    pub user_agent: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// Request path without the query string.
    pub path: Option<String>,
    /// Route template.
    pub route: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The token's id.
    pub token_id: String,
    /// The token's owner.
    pub owner: String,
    /// The token's scopes.
    pub scopes: Vec<Scope>,
}

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field (`scopes[1]`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// A denied request: the decision and the event that recorded it.
#[derive(Clone, Debug)]
pub struct Denial {
    /// The decision.
    pub decision: Decision,
    /// The recorded event's id.
    pub event_id: String,
}

/// What a use case can fail with. Each variant maps to one HTTP status and problem type.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The input is invalid; every problem is listed.
    #[error("invalid request: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// No such thing.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the current state (`code` is stable).
    #[error("{message}")]
    Conflict {
        /// Stable code, e.g. `already_revoked`.
        code: &'static str,
        /// Human message.
        message: String,
    },
    /// Authentication or authorization failed (already recorded).
    #[error("denied: {}", .0.decision.reason)]
    Denied(Box<Denial>),
    /// The store cannot be used now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or an environment failure; details are logged, not shown to callers.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => EngineError::NotFound(what),
            StoreError::Conflict(what) => EngineError::Conflict {
                code: "concurrent_change",
                message: format!("{what} was changed by another request at the same time; retry"),
            },
            StoreError::Duplicate(what) => {
                EngineError::Conflict { code: "duplicate", message: format!("{what} already exists") }
            }
            StoreError::Unavailable(m) => EngineError::Unavailable(m),
            e @ (StoreError::Corrupt(_) | StoreError::Backend(_)) => EngineError::Internal(e.to_string()),
        }
    }
}

/// Engine results.
pub type Result<T> = std::result::Result<T, EngineError>;

/// The use cases, over one store.
pub struct Engine {
    store: Arc<dyn Store>,
    pepper: Pepper,
    signer: ledger::note::Signer,
    recorder: recorder::Recorder,
    access: access::AccessState,
    detection: detection::DetectionState,
    settings: Settings,
    clock: Arc<dyn Clock>,
    pending_last_used: Mutex<HashMap<String, Timestamp>>,
    _lock: Option<datadir::DirLock>,
}

/// What [`Engine::open`] did to the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// A new pepper was generated.
    pub created_pepper: bool,
    /// A bootstrap admin token was issued and written to `admin.token`.
    pub created_admin_token: bool,
    /// A checkpoint signing key was generated.
    pub created_signing_key: bool,
}

/// The metadata key marking a completed bootstrap.
const BOOTSTRAPPED: &str = "bootstrapped_admin_token";

impl Engine {
    /// Opens the data directory, creating it on first use: directory (0700), pepper (0600),
    /// schema, and a bootstrap admin token in `admin.token` (0600). Holds the directory lock
    /// for the engine's lifetime.
    pub fn open(dir: &Path, settings: Settings, clock: Arc<dyn Clock>) -> Result<(Engine, OpenReport)> {
        let data = DataDir::new(dir);
        let io = |what: &str, e: std::io::Error| EngineError::Unavailable(format!("{what} {}: {e}", dir.display()));
        data.create().map_err(|e| io("cannot create the data directory", e))?;
        let lock = data.lock().map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let mut failed = false;
        let (pepper, created_pepper) = data
            .load_or_create_pepper(&mut |b: &mut [u8]| failed |= getrandom::fill(b).is_err())
            .map_err(|e| io("cannot read or create the pepper in", e))?;
        let (signer, created_signing_key) = data
            .load_or_create_signer(&mut |b: &mut [u8]| failed |= getrandom::fill(b).is_err())
            .map_err(|e| io("cannot read or create the signing key in", e))?;
        if failed {
            return Err(EngineError::Internal("the OS random number generator failed".to_owned()));
        }
        let mut shown = 0u64;
        let sqlite = SqliteStore::open_with_progress(&data.database(), &mut |done, total| {
            // Once, after an upgrade: say so at the start and every tenth of the way.
            if shown == 0 || done * 10 / total.max(1) > shown * 10 / total.max(1) || done == total {
                tracing::info!(done, total, "counting stored events into the stats rollup (once, after an upgrade)");
                shown = done;
            }
        })?;
        let store: Arc<dyn Store> = match &settings.fail_writes_while {
            Some(trigger) => Arc::new(store::fault::FaultInjected::new(sqlite, trigger.clone())),
            None => Arc::new(sqlite),
        };
        let recorder = recorder::Recorder::start(store.clone(), settings.durability, settings.queue_capacity);
        let engine = Engine {
            store,
            pepper,
            signer,
            recorder,
            access: access::AccessState::new(policy::Policy::default(), settings.failed_attempts),
            detection: detection::DetectionState::new(settings.detect.clone(), settings.detect_replay_days),
            settings,
            clock,
            pending_last_used: Mutex::new(HashMap::new()),
            _lock: Some(lock),
        };
        let created_admin_token = engine.bootstrap(&data)?;
        Ok((engine, OpenReport { created_pepper, created_admin_token, created_signing_key }))
    }

    /// An engine over an existing store (tests and other backends).
    pub fn with_store(
        store: Arc<dyn Store>,
        pepper: Pepper,
        signer: ledger::note::Signer,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Engine {
        let recorder = recorder::Recorder::start(store.clone(), settings.durability, settings.queue_capacity);
        Engine {
            store,
            pepper,
            signer,
            recorder,
            access: access::AccessState::new(policy::Policy::default(), settings.failed_attempts),
            detection: detection::DetectionState::new(settings.detect.clone(), settings.detect_replay_days),
            settings,
            clock,
            pending_last_used: Mutex::new(HashMap::new()),
            _lock: None,
        }
    }

    /// Issues the first admin token once. The token file is written before the database commit,
    /// and a restart after a crash in between finishes the job with the same token, so the file
    /// and the database never disagree.
    fn bootstrap(&self, data: &DataDir) -> Result<bool> {
        if self.store.meta_get(BOOTSTRAPPED)?.is_some() {
            return Ok(false);
        }
        let existing = data.read_admin_token().map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let token = match existing.as_deref().map(TokenString::from_presented) {
            Some(Ok(t)) => t,
            _ => {
                let t = with_rng(|fill| TokenString::generate(&self.settings.prefix, fill))?;
                data.write_admin_token(t.expose()).map_err(|e| EngineError::Unavailable(e.to_string()))?;
                t
            }
        };
        if self.store.get_token(token.id())?.is_none() {
            let now = self.now();
            let record = TokenRecord {
                id: token.id().to_owned(),
                name: "bootstrap admin".to_owned(),
                owner: "tokentrail".to_owned(),
                description: "Created on first start. Create named admin tokens, then revoke this one.".to_owned(),
                labels: BTreeMap::new(),
                scopes: vec![Scope::tokentrail_admin()],
                created_at: now,
                created_by: "bootstrap".to_owned(),
                updated_at: now,
                expires_at: None,
                not_before: None,
                allowed_cidrs: Vec::new(),
                rate_limit: None,
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
            let mut event = self.new_event(Kind::Admin, "admin", Reason::Ok)?;
            event.operation = Some("token.create".to_owned());
            event.target = Some(record.id.clone());
            event.owner = Some("tokentrail".to_owned());
            event.explanation = Some("bootstrap admin token created on first start".to_owned());
            event.details = tokens::describe(&record);
            self.store.insert_token(&record, &mut event)?;
        }
        self.store.meta_set(BOOTSTRAPPED, token.id())?;
        Ok(true)
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The current time from the engine's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn new_event(&self, kind: Kind, source: &str, reason: Reason) -> Result<Event> {
        let now = self.now();
        let mut e = Event::new(event_id(now)?, now, kind, source, reason);
        e.node = Some(self.settings.node.clone());
        Ok(e)
    }

    fn fill_context(e: &mut Event, ctx: &RequestContext) {
        e.source_ip = ctx.source_ip.map(|ip| ip.to_canonical().to_string());
        e.user_agent.clone_from(&ctx.user_agent);
        e.method.clone_from(&ctx.method);
        e.path = ctx.path.as_deref().map(|p| token::redact_path(p).into_owned());
        e.route.clone_from(&ctx.route);
        e.request_id.clone_from(&ctx.request_id);
    }

    /// Decides whether `presented` may do what `required` names, for tokentrail's own API.
    /// A denial is recorded as an access event before it is returned.
    pub fn authenticate(&self, presented: Option<&str>, required: &Scope, ctx: &RequestContext) -> Result<Principal> {
        let presented = presented.unwrap_or("");
        let credential = token::parse(presented);
        // Through the token cache, which every change invalidates before it returns.
        let record = match credential {
            Ok(p) => self.cached_token(p.id)?,
            Err(_) => None,
        };
        let now = self.now();
        let attempt =
            Attempt { credential, record: record.as_deref(), required: Some(required), source_ip: ctx.source_ip, now };
        let decision = token::decide(&self.pepper, &attempt, &mut |_| None);
        let resolved = decision.reason != Reason::UnknownToken && credential.is_ok();
        if decision.allowed()
            && let Some(r) = &record
        {
            self.note_use(&r.id, now);
            return Ok(Principal { token_id: r.id.clone(), owner: r.owner.clone(), scopes: r.scopes.clone() });
        }
        let mut event = self.new_event(Kind::Access, "admin", decision.reason)?;
        Self::fill_context(&mut event, ctx);
        event.time = now;
        event.resource = Some(required.resource().to_owned());
        event.action = Some(required.action().as_str().to_owned());
        event.status = Some(decision.reason.http_status());
        if let (true, Some(r)) = (resolved, &record) {
            event.token_id = Some(r.id.clone());
            event.owner = Some(r.owner.clone());
            self.note_use(&r.id, now);
        } else if !presented.is_empty() {
            event.token_fingerprint = Some(self.pepper.fingerprint(presented));
        }
        annotate(&mut event, &decision);
        let event_id = event.id.clone();
        self.record_blocking(event)?;
        Err(EngineError::Denied(Box::new(Denial { decision, event_id })))
    }

    /// Records an allowed read of tokentrail's own API (who looked at what), as an access event.
    pub fn record_read(&self, by: &Principal, ctx: &RequestContext, required: &Scope, status: u16) -> Result<String> {
        let mut event = self.new_event(Kind::Access, "admin", Reason::Ok)?;
        Self::fill_context(&mut event, ctx);
        event.token_id = Some(by.token_id.clone());
        event.owner = Some(by.owner.clone());
        event.resource = Some(required.resource().to_owned());
        event.action = Some(required.action().as_str().to_owned());
        event.required_scope = Some(required.to_string());
        event.granted_scopes = by.scopes.iter().map(ToString::to_string).collect();
        event.status = Some(status);
        let id = event.id.clone();
        self.record_blocking(event)?;
        Ok(id)
    }

    /// Appends an event through the group-commit writer; returns once it is recorded, with its
    /// position in durable mode (`None` in buffered mode, where it is only queued). Blocking:
    /// call from a blocking thread.
    pub fn record_blocking(&self, event: Event) -> Result<Option<u64>> {
        let seqs = self.recorder.submit_blocking(vec![event])?.wait_blocking()?;
        Ok(seqs.and_then(|s| s.first().copied()))
    }

    /// Appends a batch through the group-commit writer and waits until it is recorded.
    /// Blocking: call from a blocking thread.
    pub fn record_batch_blocking(&self, events: Vec<Event>) -> Result<Option<Vec<u64>>> {
        self.recorder.submit_blocking(events)?.wait_blocking()
    }

    /// Records an admin action that changes no token (an ingest), with its counts.
    pub fn record_admin_note(
        &self,
        by: &Principal,
        ctx: &RequestContext,
        operation: &str,
        count: u64,
        skipped: u64,
    ) -> Result<()> {
        let mut e = self.new_event(Kind::Admin, "admin", Reason::Ok)?;
        Self::fill_context(&mut e, ctx);
        e.token_id = Some(by.token_id.clone());
        e.owner = Some(by.owner.clone());
        e.operation = Some(operation.to_owned());
        e.required_scope = Some(Scope::tokentrail_admin().to_string());
        e.granted_scopes = by.scopes.iter().map(ToString::to_string).collect();
        e.status = Some(200);
        e.details.insert("events".to_owned(), count.to_string());
        e.details.insert("skipped".to_owned(), skipped.to_string());
        e.explanation = Some(format!("{operation}: {count} events ({skipped} lines skipped)"));
        self.record_blocking(e)?;
        Ok(())
    }

    /// Appends events through the group-commit writer (async); resolves to their positions in
    /// durable mode, `None` in buffered mode.
    pub async fn record(&self, events: Vec<Event>) -> Result<Option<Vec<u64>>> {
        self.recorder.submit(events).await?.wait().await
    }

    fn note_use(&self, id: &str, at: Timestamp) {
        let mut pending = self.pending_last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = pending.entry(id.to_owned()).or_insert(at);
        if *slot < at {
            *slot = at;
        }
    }

    /// Writes pending last-use times in one batch; the server calls this every second and at
    /// shutdown, so `last_used_at` costs no write per request.
    pub fn flush_last_used(&self) -> Result<usize> {
        let batch: Vec<(String, Timestamp)> = {
            let mut pending = self.pending_last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            pending.drain().collect()
        };
        let n = batch.len();
        if let Err(e) = self.store.record_last_used(&batch) {
            // Put them back so the next flush retries; a later time wins on merge.
            for (id, at) in batch {
                self.note_use(&id, at);
            }
            return Err(e.into());
        }
        Ok(n)
    }

    /// One event by id.
    pub fn get_event(&self, id: &str) -> Result<Event> {
        self.store.get_event(id)?.ok_or_else(|| EngineError::NotFound(format!("event {id}")))
    }

    /// Events matching a query.
    pub fn list_events(&self, query: &EventQuery) -> Result<store::Page<Event>> {
        Ok(self.store.list_events(query)?)
    }

    /// Tokens per state, now.
    pub fn token_counts(&self) -> Result<BTreeMap<&'static str, u64>> {
        Ok(self.store.count_tokens(self.now())?)
    }
}

/// Copies a decision's explanation into an event: scopes, message and the failing constraint's
/// values as details.
pub fn annotate(event: &mut Event, decision: &Decision) {
    let ex = &decision.explanation;
    event.required_scope = ex.required_scope.as_ref().map(ToString::to_string);
    event.granted_scopes = ex.granted_scopes.iter().map(ToString::to_string).collect();
    event.explanation = Some(ex.message.clone());
    let fmt = ledger::event::format_time;
    let d = &mut event.details;
    match &ex.constraint {
        Some(Constraint::Revoked { at, by, reason }) => {
            d.insert("revoked_at".into(), fmt(*at));
            if let Some(by) = by {
                d.insert("revoked_by".into(), by.clone());
            }
            if let Some(r) = reason {
                d.insert("revoke_reason".into(), r.clone());
            }
        }
        Some(Constraint::Expired { expires_at }) => {
            d.insert("expires_at".into(), fmt(*expires_at));
        }
        Some(Constraint::NotYetValid { not_before }) => {
            d.insert("not_before".into(), fmt(*not_before));
        }
        Some(Constraint::IpNotAllowed { allowed, .. }) => {
            let nets: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            d.insert("allowed_cidrs".into(), nets.join(","));
        }
        Some(Constraint::RateLimited { limit, retry_after }) => {
            if let Some(l) = limit {
                d.insert("rate_limit".into(), l.to_string());
            }
            d.insert("retry_after_s".into(), retry_after.as_secs().max(1).to_string());
        }
        None => {}
    }
}

#[cfg(test)]
mod tests;
