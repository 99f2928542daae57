//! Storage for tokens, audit events and server metadata, behind the [`Store`] trait.
//!
//! SQLite (embedded, the zero-config default) lives in [`sqlite`]. Dialect-specific SQL never
//! leaves this crate, and every backend must pass the same conformance suite (`conformance`
//! tests). The events table is append-only: no method here updates or deletes an event.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use ledger::event::{Event, Kind, Verdict};
use ledger::merkle::{Hash, NodeId};
use token::{Reason, Scope, TokenRecord, TokenState};

mod codec;
pub mod fault;
mod rollup;
pub mod sqlite;

#[cfg(test)]
mod conformance;

pub use sqlite::SqliteStore;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An id that must be unique already exists.
    #[error("{0} already exists")]
    Duplicate(String),
    /// The record changed since it was read (optimistic concurrency).
    #[error("{0} was changed concurrently; read it again and retry")]
    Conflict(String),
    /// The record does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The store cannot write or read now (disk full, I/O error, read-only file system).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data that cannot be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Any other backend failure.
    #[error("store error: {0}")]
    Backend(String),
}

/// Shorthand for store results.
pub type Result<T> = std::result::Result<T, StoreError>;

/// What a source of events gives [`Store::append_all`] next.
#[derive(Debug)]
pub enum Batch {
    /// More events to append.
    Events(Vec<Event>),
    /// Everything was given: commit.
    End,
    /// Give up: store nothing of this load.
    Abort,
}

/// The log as a running [`Store::append_all`] sees it, for its source of events.
pub trait Load {
    /// Which of `ids` the log holds: every event stored before the load, and perhaps some of
    /// the load's own (a source checks the events it gives against each other itself).
    fn existing_ids(&self, ids: &[String]) -> Result<std::collections::HashSet<String>>;
}

/// One page of results and the key to continue after its last item.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items, in the requested order.
    pub items: Vec<T>,
    /// The position to continue from when more items exist.
    pub next: Option<i64>,
}

/// One stored leaf: the event (personal values filled in unless erased), the commitments and
/// the leaf hash stored with it, and the salt of the commitments (gone after erasure).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredLeaf {
    /// The event.
    pub event: Event,
    /// Commitments to the personal fields, in `ledger::leaf::PERSONAL_FIELDS` order.
    pub commitments: [Hash; 6],
    /// The stored leaf hash.
    pub leaf_hash: Hash,
    /// The commitments' salt; `None` once the personal values were erased.
    pub salt: Option<[u8; 32]>,
}

/// A signed checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it covers.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// The signed note.
    pub note: String,
    /// When it was signed.
    pub created_at: Timestamp,
}

/// A finding as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindingRecord {
    /// Stable id.
    pub id: String,
    /// Finding type (`off_hours`, …).
    pub kind: String,
    /// `low`, `medium`, `high`, `critical`.
    pub severity: String,
    /// `open`, `acknowledged`, `resolved`.
    pub status: String,
    /// The token involved.
    pub token_id: Option<String>,
    /// The address involved.
    pub source_ip: Option<String>,
    /// First event time.
    pub first_seen: Timestamp,
    /// Latest event time.
    pub last_seen: Timestamp,
    /// One sentence.
    pub summary: String,
    /// Evidence event ids.
    pub evidence: Vec<String>,
    /// Events that showed it.
    pub event_count: u64,
    /// Values behind it.
    pub details: BTreeMap<String, String>,
    /// The comment of the last acknowledgement or resolution.
    pub comment: Option<String>,
    /// When the status last changed.
    pub status_changed_at: Timestamp,
}

/// What storing a finding changed (for alerts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindingChange {
    /// The finding.
    pub id: String,
    /// `None` when the finding is new or was reopened; otherwise the severity it had before this
    /// update changed it.
    pub previous_severity: Option<String>,
}

/// Filters for listing findings; newest first.
#[derive(Clone, Debug, Default)]
pub struct FindingQuery {
    /// Finding type.
    pub kind: Option<String>,
    /// These severities (any of them).
    pub severities: Vec<String>,
    /// Status.
    pub status: Option<String>,
    /// The token involved.
    pub token_id: Option<String>,
    /// Last seen at or after.
    pub since: Option<Timestamp>,
    /// Continue after this position.
    pub after: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// How often one token used one required scope in allowed requests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScopeUse {
    /// The token.
    pub token_id: String,
    /// The scope the requests required (none for requests without one).
    pub scope: Option<String>,
    /// Allowed requests.
    pub count: u64,
    /// The latest of them.
    pub last: Timestamp,
}

/// Which events' personal values to erase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Erasure {
    /// Every event whose owner is this.
    Owner(String),
    /// Every event from this address.
    SourceIp(String),
}

/// Filters for listing tokens. Results are in creation order.
#[derive(Clone, Debug)]
pub struct TokenQuery {
    /// Exact owner.
    pub owner: Option<String>,
    /// Tokens whose grants imply this scope.
    pub scope: Option<Scope>,
    /// Tokens in this state at `now`.
    pub state: Option<TokenState>,
    /// Tokens with this label key (and value, when given).
    pub label: Option<(String, Option<String>)>,
    /// Continue after this position (from [`Page::next`]).
    pub after: Option<i64>,
    /// Page size.
    pub limit: u32,
    /// The time states are evaluated at.
    pub now: Timestamp,
}

/// Result order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

/// Filters for listing events.
#[derive(Clone, Debug)]
pub struct EventQuery {
    /// Access or admin.
    pub kind: Option<Kind>,
    /// The token that acted.
    pub token_id: Option<String>,
    /// Admin events about this token.
    pub target: Option<String>,
    /// Event source.
    pub source: Option<String>,
    /// Allow or deny.
    pub decision: Option<Verdict>,
    /// Reason code.
    pub reason: Option<Reason>,
    /// The keyed fingerprint of an unresolved credential.
    pub token_fingerprint: Option<String>,
    /// The token's owner.
    pub owner: Option<String>,
    /// The caller's address inside this network (a single address is a /32 or /128).
    pub source_ip: Option<ipnet::IpNet>,
    /// Route template (`GET /v1/patients/{id}`).
    pub route: Option<String>,
    /// Resource.
    pub resource: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// Events carrying this sensitivity label.
    pub sensitivity: Option<String>,
    /// Only events carrying some sensitivity label.
    pub sensitive_only: bool,
    /// Admin events with this operation (`token.confirm`, …).
    pub operation: Option<String>,
    /// Events at or after this time.
    pub since: Option<Timestamp>,
    /// Events before this time.
    pub until: Option<Timestamp>,
    /// Continue after this position (exclusive, in the direction of `order`).
    pub after: Option<i64>,
    /// Newest or oldest first.
    pub order: Order,
    /// Order by event time instead of position (ingested events can be older than their
    /// position suggests). Cursors (`after`) are positions and do not combine with this.
    pub by_time: bool,
    /// Page size.
    pub limit: u32,
}

impl Default for EventQuery {
    fn default() -> Self {
        EventQuery {
            kind: None,
            token_id: None,
            target: None,
            source: None,
            decision: None,
            reason: None,
            token_fingerprint: None,
            owner: None,
            source_ip: None,
            route: None,
            resource: None,
            action: None,
            sensitivity: None,
            sensitive_only: false,
            operation: None,
            since: None,
            until: None,
            after: None,
            order: Order::Desc,
            by_time: false,
            limit: 100,
        }
    }
}

/// How `stats` groups events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// Token id (or the fingerprint of an unresolved credential).
    Token,
    /// Owner.
    Owner,
    /// Route template.
    Route,
    /// Resource.
    Resource,
    /// Reason code.
    Reason,
    /// Allow or deny.
    Decision,
    /// Source address.
    SourceIp,
    /// Source network: IPv4 /24, IPv6 /48.
    Network,
    /// Hour (UTC), as the hour's start.
    Hour,
    /// Day (UTC).
    Day,
}

/// One group of `stats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatRow {
    /// The group's key (`-` when the value is absent or erased).
    pub key: String,
    /// Events.
    pub count: u64,
    /// Allowed events.
    pub allowed: u64,
    /// Denied events.
    pub denied: u64,
    /// Distinct source addresses.
    pub distinct_ips: u64,
    /// Response bytes.
    pub bytes: u64,
}

/// The storage every tokentrail node uses.
///
/// Methods are synchronous; async callers run them on blocking threads. Every change to a token
/// is stored in the same transaction as the admin event that describes it.
pub trait Store: Send + Sync + 'static {
    /// The backend's name (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Checks that the store can be read.
    fn ping(&self) -> Result<()>;

    /// Stores a new token and its admin event atomically; sets `event.seq`.
    fn insert_token(&self, token: &TokenRecord, event: &mut Event) -> Result<()>;

    /// Replaces a token if its stored revision is `expected_revision`, with its admin event,
    /// atomically; sets `event.seq`. `token.revision` must be `expected_revision + 1`.
    fn update_token(&self, token: &TokenRecord, expected_revision: u64, event: &mut Event) -> Result<()>;

    /// One token by id.
    fn get_token(&self, id: &str) -> Result<Option<TokenRecord>>;

    /// Tokens matching a query.
    fn list_tokens(&self, query: &TokenQuery) -> Result<Page<TokenRecord>>;

    /// How many tokens are in each state at `now`.
    fn count_tokens(&self, now: Timestamp) -> Result<BTreeMap<&'static str, u64>>;

    /// Records last use times (a batch; never moves a time backwards).
    fn record_last_used(&self, uses: &[(String, Timestamp)]) -> Result<()>;

    /// Appends events in order, atomically; sets each event's `seq`.
    fn append(&self, events: &mut [Event]) -> Result<()>;

    /// Appends the batches `next` gives, in order, in one transaction, until it says
    /// [`Batch::End`]; returns how many events were stored. [`Batch::Abort`] (or a failed
    /// append) stores none of them: `Ok(None)` (or the error). For bulk loads into a store that
    /// is the load's alone: it holds the writer, so any other write waits, until the end.
    ///
    /// `expected` is about how many events will come (0: unknown). A backend may use it to
    /// index the load in one go at the end instead of event by event, when that is cheaper.
    ///
    /// `next` is given a [`Load`] to look ids up in the log as the load sees it: while a large
    /// load runs, other connections may be kept from reading (see the SQLite store).
    fn append_all(&self, expected: u64, next: &mut dyn FnMut(&dyn Load) -> Batch) -> Result<Option<u64>>;

    /// One event by id.
    fn get_event(&self, id: &str) -> Result<Option<Event>>;

    /// Per token and required scope: the allowed access requests since `since`.
    fn scope_usage(&self, since: Timestamp) -> Result<Vec<ScopeUse>>;

    /// Which of `ids` are already events.
    fn existing_ids(&self, ids: &[String]) -> Result<std::collections::HashSet<String>>;

    /// Events matching a query.
    fn list_events(&self, query: &EventQuery) -> Result<Page<Event>>;

    /// Counts of the events matching `query`'s filters (its cursor, order and limit are
    /// ignored), grouped; largest groups first for keys, time order for hours and days. At most
    /// `limit` groups.
    fn stats(&self, query: &EventQuery, group_by: GroupBy, limit: u32) -> Result<Vec<StatRow>>;

    /// Number of events stored (the next position).
    fn event_count(&self) -> Result<u64>;

    /// Stored tree hashes (level 0: leaf hashes); a missing node is an error.
    fn tree_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>>;

    /// Stored leaves in position order, starting at `from`, at most `limit`.
    fn leaves(&self, from: u64, limit: u32) -> Result<Vec<StoredLeaf>>;

    /// Stores a signed checkpoint. Storing the same checkpoint again is a no-op; a different
    /// root for a size already signed is refused ([`StoreError::Conflict`]).
    fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<()>;

    /// The checkpoint of the largest size, if any.
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>>;

    /// Every stored checkpoint, smallest size first.
    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>>;

    /// Deletes the personal values and salts of the matching events and appends `event` (the
    /// admin event recording the erasure), atomically. Returns how many events were erased.
    fn erase(&self, erasure: &Erasure, event: &mut Event) -> Result<u64>;

    /// Stores findings: new ones as `open`; known ones get their new evidence, times, count,
    /// summary and severity, keep their status and comment, and are reopened when they were
    /// resolved and the new activity is after the resolution. Returns what alerting needs to
    /// know: the findings that are new or reopened, and those whose severity changed.
    fn upsert_findings(&self, findings: &[FindingRecord]) -> Result<Vec<FindingChange>>;

    /// One finding.
    fn get_finding(&self, id: &str) -> Result<Option<FindingRecord>>;

    /// Findings matching a query, newest first.
    fn list_findings(&self, query: &FindingQuery) -> Result<Page<FindingRecord>>;

    /// Sets a finding's status and comment, with the admin event recording it, atomically.
    fn set_finding_status(&self, id: &str, status: &str, comment: &str, at: Timestamp, event: &mut Event)
    -> Result<()>;

    /// A metadata value.
    fn meta_get(&self, key: &str) -> Result<Option<String>>;

    /// Sets a metadata value.
    fn meta_set(&self, key: &str, value: &str) -> Result<()>;
}
