//! The embedded SQLite backend (bundled SQLite, WAL mode, `synchronous=FULL`).
//!
//! One writer connection behind a mutex serializes writes (SQLite allows one writer at a time
//! anyway); reads use a small pool of read-only connections so they never wait for a write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use jiff::Timestamp;
use ledger::event::{Event, Kind, Verdict};
use ledger::leaf::{self, Personal};
use ledger::merkle::{self, Frontier, Hash, NodeReader};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use token::{Reason, TokenRecord, TokenState};

use crate::codec;
use crate::{EventQuery, Order, Page, Result, Store, StoreError, StoredCheckpoint, StoredLeaf, TokenQuery};
use ledger::merkle::NodeId;
use std::collections::HashMap;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE tokens (
    pk                INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    owner             TEXT NOT NULL,
    description       TEXT NOT NULL,
    labels            TEXT NOT NULL,
    scopes            TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    created_by        TEXT NOT NULL,
    updated_at        INTEGER NOT NULL,
    expires_at        INTEGER,
    not_before        INTEGER,
    allowed_cidrs     TEXT NOT NULL,
    rate_limit        TEXT,
    last_used_at      INTEGER,
    revoked_at        INTEGER,
    revoked_by        TEXT,
    revoke_reason     TEXT,
    secret_hash       BLOB NOT NULL,
    secret_created_at INTEGER NOT NULL,
    prev_secret_hash  BLOB,
    prev_secret_until INTEGER,
    revision          INTEGER NOT NULL
);
CREATE INDEX tokens_owner ON tokens(owner, pk);

-- Denormalized grants and labels so that "who can write orders?" is one indexed query.
CREATE TABLE token_scopes (
    token_pk INTEGER NOT NULL REFERENCES tokens(pk),
    resource TEXT NOT NULL,
    action   TEXT NOT NULL,
    PRIMARY KEY (token_pk, resource, action)
) WITHOUT ROWID;
CREATE INDEX token_scopes_resource ON token_scopes(resource, action);

CREATE TABLE token_labels (
    token_pk INTEGER NOT NULL REFERENCES tokens(pk),
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (token_pk, key)
) WITHOUT ROWID;
CREATE INDEX token_labels_kv ON token_labels(key, value);

-- The audit log: positions 0..n-1, append-only (the triggers refuse changes). Each row holds the
-- event's non-personal fields, the commitments to its personal fields and its leaf hash.
CREATE TABLE events (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    time_us           INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    source            TEXT NOT NULL,
    token_id          TEXT,
    token_fingerprint TEXT,
    method            TEXT,
    route             TEXT,
    resource          TEXT,
    action            TEXT,
    sensitivity       TEXT NOT NULL,
    decision          TEXT NOT NULL,
    reason            TEXT NOT NULL,
    status            INTEGER,
    latency_us        INTEGER,
    bytes_out         INTEGER,
    request_id        TEXT,
    node              TEXT,
    operation         TEXT,
    target            TEXT,
    required_scope    TEXT,
    granted_scopes    TEXT NOT NULL,
    commitments       BLOB NOT NULL,
    leaf_hash         BLOB NOT NULL
);
CREATE INDEX events_token ON events(token_id, seq);
CREATE INDEX events_target ON events(target, seq) WHERE target IS NOT NULL;
CREATE INDEX events_time ON events(time_us);
CREATE INDEX events_reason ON events(reason, seq);
CREATE INDEX events_fingerprint ON events(token_fingerprint, seq) WHERE token_fingerprint IS NOT NULL;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

-- Personal values and the salt of their commitments, beside the log. Erasure deletes rows here;
-- the log keeps verifying through the commitments.
CREATE TABLE event_personal (
    seq         INTEGER PRIMARY KEY,
    salt        BLOB NOT NULL,
    owner       TEXT,
    source_ip   TEXT,
    user_agent  TEXT,
    path        TEXT,
    explanation TEXT,
    details     TEXT NOT NULL,
    -- source_ip as 16 bytes (IPv4 mapped into IPv6), so a CIDR is a range.
    ip_bin      BLOB
);
CREATE INDEX event_personal_ip_bin ON event_personal(ip_bin) WHERE ip_bin IS NOT NULL;
CREATE TRIGGER event_personal_no_update BEFORE UPDATE ON event_personal
    BEGIN SELECT RAISE(ABORT, 'personal values are erased, never changed'); END;
CREATE INDEX event_personal_owner ON event_personal(owner) WHERE owner IS NOT NULL;
CREATE INDEX event_personal_ip ON event_personal(source_ip) WHERE source_ip IS NOT NULL;

-- Hashes of the complete subtrees of the Merkle tree above the leaves (level >= 1): subtree
-- `idx` of level `level` covers leaves idx*2^level .. (idx+1)*2^level - 1. Append-only.
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes
    BEGIN SELECT RAISE(ABORT, 'tree nodes are append-only'); END;
CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes
    BEGIN SELECT RAISE(ABORT, 'tree nodes are append-only'); END;

-- Signed checkpoints; one root per size, ever.
CREATE TABLE checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
"#,
    r#"
-- Findings of the detectors: derived from the log, so mutable (status, evidence as it grows).
CREATE TABLE findings (
    pk          INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    status      TEXT NOT NULL,
    token_id    TEXT,
    source_ip   TEXT,
    first_us    INTEGER NOT NULL,
    last_us     INTEGER NOT NULL,
    summary     TEXT NOT NULL,
    evidence    TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    details     TEXT NOT NULL,
    comment     TEXT,
    status_us   INTEGER NOT NULL
);
CREATE INDEX findings_kind ON findings(kind, pk);
CREATE INDEX findings_token ON findings(token_id, pk);
CREATE INDEX findings_status ON findings(status, pk);
"#,
    r#"
-- Shadow mode: proposed scopes, as a JSON array (empty: none).
ALTER TABLE tokens ADD COLUMN shadow_scopes TEXT NOT NULL DEFAULT '[]';
"#,
    r#"
-- Fewer index entries per appended event. Most events are allowed (reason 'ok'): an index of
-- them answers no question a scan by position does not, so only the other reasons are indexed
-- (queries name the reason as a literal so the planner can use the partial index). Addresses
-- are searched through ip_bin; the text index of source_ip served nothing.
DROP INDEX events_reason;
CREATE INDEX events_reason ON events(reason, seq) WHERE reason <> 'ok';
DROP INDEX event_personal_ip;
"#,
    crate::rollup::SCHEMA,
    r#"
-- Addresses are found by network: an index of each address's IPv4 /24 or IPv6 /48 (then by
-- position, as every index ends in the rowid) gives a network's events newest first without a
-- sort, and narrower or wider networks are a range of it. It replaces the index of whole addresses.
CREATE INDEX event_personal_net ON event_personal(
    CASE WHEN substr(ip_bin, 1, 12) = x'00000000000000000000FFFF' THEN substr(ip_bin, 1, 15) ELSE substr(ip_bin, 1, 6) END
) WHERE ip_bin IS NOT NULL;
DROP INDEX event_personal_ip_bin;
"#,
    crate::rollup::TOTALS,
];

/// The network of `p.ip_bin` as `event_personal_net` indexes it (the same expression, so the
/// planner matches them): the 15 bytes of an IPv4 /24 in its mapped form, or an IPv6 /48.
const NET_OF_P: &str = "CASE WHEN substr(p.ip_bin, 1, 12) = x'00000000000000000000FFFF' THEN substr(p.ip_bin, 1, 15) \
    ELSE substr(p.ip_bin, 1, 6) END";

/// The indexed network key of an address given as 16 bytes (see [`NET_OF_P`]).
fn net_key_of(ip: &[u8; 16]) -> Vec<u8> {
    if ip[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] { ip[..15].to_vec() } else { ip[..6].to_vec() }
}

/// The first and last indexed network key a network's addresses fall in; equal when the
/// network lies inside one /24 or /48.
fn net_keys(net: &ipnet::IpNet) -> (Vec<u8>, Vec<u8>) {
    let (lo, hi) = net_range(net);
    (net_key_of(&lo), net_key_of(&hi))
}

const READERS: usize = 4;

/// The smallest announced bulk load for which `append_all` builds the log's indexes at the end.
const BULK_INDEX_MIN: u64 = 10_000;

/// The log's indexes a bulk load keeps up to date as it goes instead of building them at its
/// end: each holds only the few events that are not a resolved token's ordinary use (denials,
/// unresolved credentials, token management), so updating them costs less than the pass over
/// the whole log that building one takes (about 0.4 s per index per million events).
const BULK_KEEP: [&str; 3] = ["events_reason", "events_fingerprint", "events_target"];

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
}

pub(crate) fn classify(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory => StoreError::Unavailable(e.to_string()),
            // Another connection held the database longer than the busy timeout (5 s): only a
            // large bulk load (its rollback journal's exclusive lock) or the rewrite after an
            // erasure does that, and both end by themselves.
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Unavailable(format!(
                "{e}: another process is writing it as a whole (a bulk `tokentrail ingest --data-dir`, or the \
                 rewrite after `audit erase`); try again when that has finished"
            )),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Backend(e.to_string()),
        },
        _ => StoreError::Backend(e.to_string()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave SQLite inconsistent (the transaction rolls
    // back when dropped), so a poisoned lock is safe to reuse.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn configure(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA secure_delete = ON;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -65536;
         PRAGMA wal_autocheckpoint = 10000;",
    )
    .map_err(classify)
}

impl SqliteStore {
    /// Whether more events come from `net` than √(page × log size): then a page is found
    /// faster by walking the log than through the address index (see `list_events`).
    fn network_is_common(&self, net: &ipnet::IpNet, limit: u32) -> Result<bool> {
        let (lo, hi) = net_range(net);
        let (key_lo, key_hi) = net_keys(net);
        self.read(|c| {
            let size: i64 =
                c.query_row("SELECT COALESCE(MAX(seq) + 1, 0) FROM events", [], |r| r.get(0)).map_err(classify)?;
            let threshold = ((f64::from(limit.max(1)) + 1.0) * size as f64).sqrt().ceil() as i64;
            let matches: i64 = c
                .query_row(
                    &format!(
                        "SELECT COUNT(*) FROM (SELECT 1 FROM event_personal p WHERE p.ip_bin IS NOT NULL \
                         AND {NET_OF_P} BETWEEN ?1 AND ?2 AND p.ip_bin BETWEEN ?3 AND ?4 LIMIT ?5)"
                    ),
                    params![key_lo, key_hi, lo.to_vec(), hi.to_vec(), threshold],
                    |r| r.get(0),
                )
                .map_err(classify)?;
            Ok(matches >= threshold && threshold > 0)
        })
    }
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        Self::open_with_progress(path, &mut |_, _| {})
    }

    /// [`SqliteStore::open`], telling `progress(counted, events)` how far counting stored events
    /// into the stats rollup has come when a store from before the rollup (or one whose
    /// counting was interrupted) is opened. That happens once and reads every event.
    pub fn open_with_progress(path: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<SqliteStore> {
        let mut conn = Connection::open(path).map_err(classify)?;
        restrict_permissions(path);
        configure(&conn)?;
        migrate(&conn)?;
        crate::rollup::catch_up(&mut conn, &mut |done, total| {
            progress(u64::try_from(done).unwrap_or(0), u64::try_from(total).unwrap_or(0));
        })?;
        Ok(SqliteStore {
            path: path.to_owned(),
            writer: Mutex::new(Writer { conn, frontier: None }),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = lock(&self.readers).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
                )
                .map_err(classify)?;
                c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -16384;").map_err(classify)?;
                c
            }
        };
        let out = f(&conn);
        let mut pool = lock(&self.readers);
        if pool.len() < READERS {
            pool.push(conn);
        }
        out
    }

    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.write_log(|tx, _| f(tx))
    }

    /// A write transaction that may append to the log. The in-memory frontier is restored when
    /// the transaction fails, so it always matches what is committed.
    fn write_log<T>(&self, f: impl FnOnce(&Transaction<'_>, &mut Option<Frontier>) -> Result<T>) -> Result<T> {
        let mut w = lock(&self.writer);
        let Writer { conn, frontier } = &mut *w;
        let saved = frontier.clone();
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(classify)?;
            let out = f(&tx, frontier)?;
            tx.commit().map_err(classify)?;
            Ok(out)
        })();
        if result.is_err() {
            *frontier = saved;
        }
        result
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // A clean close folds the write-ahead log into the database and empties it.
        self.readers.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        let w = self.writer.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = w.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // Best effort: the data directory itself is 0700, this is defence in depth.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}

fn migrate(conn: &Connection) -> Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).map_err(classify)? as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database schema (version {version}) is newer than this binary understands ({}); upgrade tokentrail",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1))
            .map_err(classify)?;
    }
    Ok(())
}

const TOKEN_COLUMNS: &str = "pk, id, name, owner, description, labels, scopes, created_at, created_by, \
    updated_at, expires_at, not_before, allowed_cidrs, rate_limit, last_used_at, revoked_at, revoked_by, \
    revoke_reason, secret_hash, secret_created_at, prev_secret_hash, prev_secret_until, revision, shadow_scopes";

/// Reads one row as its key and the decoded item.
type KeyedRow<T> = fn(&Row<'_>) -> rusqlite::Result<(i64, Result<T>)>;

/// Runs a page query that asks for `limit + 1` rows keyed by `pk`: at most `limit` items, and
/// the last one's key as the cursor when there are more.
fn page_by_pk<T>(c: &Connection, sql: &str, args: Vec<SqlValue>, limit: i64, row: KeyedRow<T>) -> Result<Page<T>> {
    let mut stmt = c.prepare(sql).map_err(classify)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), row)
        .map_err(classify)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(classify)?;
    let more = rows.len() as i64 > limit;
    let mut items = Vec::new();
    let mut last = None;
    for (pk, item) in rows.into_iter().take(limit as usize) {
        items.push(item?);
        last = Some(pk);
    }
    Ok(Page { items, next: if more { last } else { None } })
}

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<(i64, Result<TokenRecord>)> {
    let pk: i64 = r.get(0)?;
    let labels: String = r.get(5)?;
    let scopes: String = r.get(6)?;
    let cidrs: String = r.get(12)?;
    let rate: Option<String> = r.get(13)?;
    let hash: Vec<u8> = r.get(18)?;
    let prev_hash: Option<Vec<u8>> = r.get(20)?;
    let prev_until: Option<i64> = r.get(21)?;
    let shadow: String = r.get(23)?;
    let raw = (
        r.get::<_, String>(1)?,
        r.get::<_, String>(2)?,
        r.get::<_, String>(3)?,
        r.get::<_, String>(4)?,
        r.get::<_, i64>(7)?,
        r.get::<_, String>(8)?,
        r.get::<_, i64>(9)?,
        r.get::<_, Option<i64>>(10)?,
        r.get::<_, Option<i64>>(11)?,
        r.get::<_, Option<i64>>(14)?,
        r.get::<_, Option<i64>>(15)?,
        r.get::<_, Option<String>>(16)?,
        r.get::<_, Option<String>>(17)?,
        r.get::<_, i64>(19)?,
        r.get::<_, i64>(22)?,
    );
    let decode = move || -> Result<TokenRecord> {
        let (
            id,
            name,
            owner,
            description,
            created_at,
            created_by,
            updated_at,
            expires_at,
            not_before,
            last_used_at,
            revoked_at,
            revoked_by,
            revoke_reason,
            secret_created_at,
            revision,
        ) = raw;
        let previous_secret = match (prev_hash, prev_until) {
            (Some(h), Some(u)) => Some((codec::hash(h)?, codec::time(u)?)),
            _ => None,
        };
        Ok(TokenRecord {
            id,
            name,
            owner,
            description,
            labels: codec::json_to_map(&labels)?,
            scopes: codec::scopes(&scopes)?,
            created_at: codec::time(created_at)?,
            created_by,
            updated_at: codec::time(updated_at)?,
            expires_at: codec::opt_time(expires_at)?,
            not_before: codec::opt_time(not_before)?,
            allowed_cidrs: codec::cidrs(&cidrs)?,
            rate_limit: codec::rate_limit(rate)?,
            last_used_at: codec::opt_time(last_used_at)?,
            revoked_at: codec::opt_time(revoked_at)?,
            revoked_by,
            revoke_reason,
            secret_hash: codec::hash(hash)?,
            secret_created_at: codec::time(secret_created_at)?,
            previous_secret,
            revision: u64::try_from(revision).map_err(|_| StoreError::Corrupt("negative revision".into()))?,
            shadow_scopes: codec::scopes(&shadow)?,
        })
    };
    Ok((pk, decode()))
}

fn token_values(t: &TokenRecord) -> Vec<SqlValue> {
    let scopes: Vec<String> = t.scopes.iter().map(ToString::to_string).collect();
    let cidrs: Vec<String> = t.allowed_cidrs.iter().map(ToString::to_string).collect();
    vec![
        SqlValue::Text(t.id.clone()),
        SqlValue::Text(t.name.clone()),
        SqlValue::Text(t.owner.clone()),
        SqlValue::Text(t.description.clone()),
        SqlValue::Text(codec::map_to_json(&t.labels)),
        SqlValue::Text(codec::strings_to_json(&scopes)),
        SqlValue::Integer(codec::micros(t.created_at)),
        SqlValue::Text(t.created_by.clone()),
        SqlValue::Integer(codec::micros(t.updated_at)),
        codec::opt_micros(t.expires_at).map_or(SqlValue::Null, SqlValue::Integer),
        codec::opt_micros(t.not_before).map_or(SqlValue::Null, SqlValue::Integer),
        SqlValue::Text(codec::strings_to_json(&cidrs)),
        t.rate_limit.map_or(SqlValue::Null, |r| SqlValue::Text(r.to_string())),
        codec::opt_micros(t.last_used_at).map_or(SqlValue::Null, SqlValue::Integer),
        codec::opt_micros(t.revoked_at).map_or(SqlValue::Null, SqlValue::Integer),
        t.revoked_by.clone().map_or(SqlValue::Null, SqlValue::Text),
        t.revoke_reason.clone().map_or(SqlValue::Null, SqlValue::Text),
        SqlValue::Blob(t.secret_hash.0.to_vec()),
        SqlValue::Integer(codec::micros(t.secret_created_at)),
        t.previous_secret.map_or(SqlValue::Null, |(h, _)| SqlValue::Blob(h.0.to_vec())),
        t.previous_secret.map_or(SqlValue::Null, |(_, u)| SqlValue::Integer(codec::micros(u))),
        SqlValue::Integer(i64::try_from(t.revision).unwrap_or(i64::MAX)),
        SqlValue::Text(codec::strings_to_json(&t.shadow_scopes.iter().map(ToString::to_string).collect::<Vec<_>>())),
    ]
}

fn write_grants(tx: &Transaction<'_>, pk: i64, t: &TokenRecord) -> Result<()> {
    tx.execute("DELETE FROM token_scopes WHERE token_pk = ?1", [pk]).map_err(classify)?;
    tx.execute("DELETE FROM token_labels WHERE token_pk = ?1", [pk]).map_err(classify)?;
    let mut scope = tx
        .prepare_cached("INSERT OR IGNORE INTO token_scopes (token_pk, resource, action) VALUES (?1, ?2, ?3)")
        .map_err(classify)?;
    for s in &t.scopes {
        scope.execute(params![pk, s.resource(), s.action().as_str()]).map_err(classify)?;
    }
    let mut label =
        tx.prepare_cached("INSERT INTO token_labels (token_pk, key, value) VALUES (?1, ?2, ?3)").map_err(classify)?;
    for (k, v) in &t.labels {
        label.execute(params![pk, k, v]).map_err(classify)?;
    }
    Ok(())
}

/// Columns of `events` joined with `event_personal` (`p`), in the order `event_from_row` reads.
const EVENT_SELECT: &str = "e.seq, e.id, e.time_us, e.kind, e.source, e.token_id, e.token_fingerprint, e.method, \
    e.route, e.resource, e.action, e.sensitivity, e.decision, e.reason, e.status, e.latency_us, e.bytes_out, \
    e.request_id, e.node, e.operation, e.target, e.required_scope, e.granted_scopes, e.commitments, e.leaf_hash, \
    p.salt, p.owner, p.source_ip, p.user_agent, p.path, p.explanation, p.details \
    FROM events e LEFT JOIN event_personal p ON p.seq = e.seq";

const EVENT_INSERT: &str = "INSERT INTO events (seq, id, time_us, kind, source, token_id, token_fingerprint, method, \
    route, resource, action, sensitivity, decision, reason, status, latency_us, bytes_out, request_id, node, operation, \
    target, required_scope, granted_scopes, commitments, leaf_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
    ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)";

const PERSONAL_INSERT: &str = "INSERT INTO event_personal (seq, salt, owner, source_ip, user_agent, path, explanation, \
    details, ip_bin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// An address as 16 bytes, IPv4 mapped into IPv6, so that networks are byte ranges.
pub(crate) fn ip_bytes(ip: std::net::IpAddr) -> [u8; 16] {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// The first and last 16-byte address of a network.
fn net_range(net: &ipnet::IpNet) -> ([u8; 16], [u8; 16]) {
    (ip_bytes(net.network()), ip_bytes(net.broadcast()))
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// Inserts one event row, binding every value by reference (no copies on the hot path).
fn insert_event(
    stmt: &mut rusqlite::CachedStatement<'_>,
    seq: i64,
    e: &Event,
    sealed: &Sealed,
) -> rusqlite::Result<usize> {
    stmt.execute(params![
        seq,
        e.id,
        codec::micros(e.time),
        e.kind.as_str(),
        e.source,
        e.token_id,
        e.token_fingerprint,
        e.method,
        e.route,
        e.resource,
        e.action,
        sealed.sensitivity,
        e.decision.as_str(),
        e.reason.as_str(),
        e.status,
        opt_i64(e.latency_us),
        opt_i64(e.bytes_out),
        e.request_id,
        e.node,
        e.operation,
        e.target,
        e.required_scope,
        sealed.granted,
        sealed.commitments,
        sealed.leaf_hash.as_slice(),
    ])
}

fn hash32(bytes: Vec<u8>, what: &str) -> Result<Hash> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

fn leaf_from_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredLeaf>> {
    let seq: i64 = r.get(0)?;
    let event = event_from_row(r)?;
    let commitments = r.get_ref(23)?.as_blob()?;
    let leaf_hash: Vec<u8> = r.get(24)?;
    let salt = r.get_ref(25)?.as_blob_or_null()?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("event {seq}: bad {what} length"));
    let decode = || -> Result<StoredLeaf> {
        Ok(StoredLeaf {
            commitments: leaf::unpack(commitments).ok_or_else(|| corrupt("commitments"))?,
            leaf_hash: hash32(leaf_hash, "leaf hash")?,
            salt: salt.map(|s| <[u8; leaf::SALT_LEN]>::try_from(s).map_err(|_| corrupt("salt"))).transpose()?,
            event: event?,
        })
    };
    Ok(decode())
}

/// An event from a row of [`EVENT_SELECT`]. Its fixed vocabularies and JSON columns are read in
/// place, not copied first: export and pages decode every row this way.
fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Event>> {
    let seq: i64 = r.get(0)?;
    let time_us: i64 = r.get(2)?;
    let kind = r.get_ref(3)?.as_str()?;
    let sensitivity = r.get_ref(11)?.as_str()?;
    let decision = r.get_ref(12)?.as_str()?;
    let reason = r.get_ref(13)?.as_str()?;
    let status: Option<i64> = r.get(14)?;
    let latency: Option<i64> = r.get(15)?;
    let bytes: Option<i64> = r.get(16)?;
    let granted = r.get_ref(22)?.as_str()?;
    let has_salt = r.get_ref(25)?.data_type() != rusqlite::types::Type::Null;
    let details = r.get_ref(31)?.as_str_or_null()?;
    let mut e = Event::new(r.get(1)?, Timestamp::UNIX_EPOCH, Kind::Access, "", Reason::Ok);
    e.source = r.get(4)?;
    e.token_id = r.get(5)?;
    e.token_fingerprint = r.get(6)?;
    e.method = r.get(7)?;
    e.route = r.get(8)?;
    e.resource = r.get(9)?;
    e.action = r.get(10)?;
    e.request_id = r.get(17)?;
    e.node = r.get(18)?;
    e.operation = r.get(19)?;
    e.target = r.get(20)?;
    e.required_scope = r.get(21)?;
    e.owner = r.get(26)?;
    e.source_ip = r.get(27)?;
    e.user_agent = r.get(28)?;
    e.path = r.get(29)?;
    e.explanation = r.get(30)?;
    let decode = move || -> Result<Event> {
        let corrupt = |what: &str, v: &str| StoreError::Corrupt(format!("event {seq}: bad {what} {v:?}"));
        e.seq = Some(u64::try_from(seq).map_err(|_| corrupt("seq", "negative"))?);
        e.time = codec::time(time_us)?;
        e.kind = Kind::parse(kind).ok_or_else(|| corrupt("kind", kind))?;
        e.decision = Verdict::parse(decision).ok_or_else(|| corrupt("decision", decision))?;
        e.reason = Reason::parse(reason).ok_or_else(|| corrupt("reason", reason))?;
        e.sensitivity = codec::json_to_strings(sensitivity)?;
        e.granted_scopes = codec::json_to_strings(granted)?;
        e.status = status.map(|s| u16::try_from(s).map_err(|_| corrupt("status", &s.to_string()))).transpose()?;
        e.latency_us = latency.and_then(|v| u64::try_from(v).ok());
        e.bytes_out = bytes.and_then(|v| u64::try_from(v).ok());
        match (has_salt, details) {
            (true, Some(d)) => e.details = codec::json_to_map(d)?,
            (true, None) => return Err(corrupt("details", "missing")),
            (false, _) => e.erased = true,
        }
        Ok(e)
    };
    Ok(decode())
}

/// The writer connection and the tree's right edge (loaded on the first append).
struct Writer {
    conn: Connection,
    frontier: Option<Frontier>,
}

/// Reads stored tree nodes inside a transaction: level 0 from `events.leaf_hash`, higher levels
/// from `merkle_nodes`.
struct TxNodes<'a>(&'a Connection);

impl NodeReader for TxNodes<'_> {
    type Error = StoreError;

    fn node(&self, level: u8, index: u64) -> Result<Hash> {
        let idx = i64::try_from(index).map_err(|_| StoreError::Corrupt("node index out of range".into()))?;
        let bytes: Option<Vec<u8>> = if level == 0 {
            self.0.query_row("SELECT leaf_hash FROM events WHERE seq = ?1", [idx], |r| r.get(0))
        } else {
            self.0.query_row("SELECT hash FROM merkle_nodes WHERE level = ?1 AND idx = ?2", params![level, idx], |r| {
                r.get(0)
            })
        }
        .optional()
        .map_err(classify)?;
        let bytes = bytes.ok_or_else(|| StoreError::Corrupt(format!("tree node ({level}, {index}) is missing")))?;
        hash32(bytes, "tree node")
    }
}

/// What an event's rows need besides the event, computed before the write (and, in a large
/// load, on another thread than the writer's): its salt, the commitments to its personal values
/// and its leaf hash at its position, and its encoded columns.
struct Sealed {
    salt: [u8; leaf::SALT_LEN],
    commitments: Vec<u8>,
    leaf_hash: Hash,
    ip_bin: Option<[u8; 16]>,
    sensitivity: String,
    granted: String,
    details: String,
}

/// Seals events that will take the positions `first`, `first + 1`, …: fresh salts, commitments
/// and leaf hashes (the CPU-bound part of an append; no database access).
fn seal(events: &[Event], first: u64) -> Result<Vec<Sealed>> {
    let mut salts = vec![0u8; events.len() * leaf::SALT_LEN];
    getrandom::fill(&mut salts)
        .map_err(|e| StoreError::Unavailable(format!("the OS random number generator failed: {e}")))?;
    Ok(events
        .iter()
        .zip(salts.chunks_exact(leaf::SALT_LEN))
        .zip(first..)
        .map(|((e, salt), seq)| {
            let salt: [u8; leaf::SALT_LEN] = salt.try_into().unwrap_or([0; leaf::SALT_LEN]);
            let commitments = Personal::of(e).commitments(&salt);
            Sealed {
                leaf_hash: merkle::leaf_hash(&leaf::encode(e, seq, &commitments)),
                commitments: leaf::pack(&commitments),
                salt,
                ip_bin: e.source_ip.as_deref().and_then(|s| s.parse::<std::net::IpAddr>().ok()).map(ip_bytes),
                sensitivity: codec::strings_to_json(&e.sensitivity),
                granted: codec::strings_to_json(&e.granted_scopes),
                details: codec::map_to_json(&e.details),
            }
        })
        .collect())
}

/// Which of `ids` the events of `c` hold.
fn existing_ids_in(c: &Connection, ids: &[String]) -> Result<std::collections::HashSet<String>> {
    let mut found = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let placeholders = (1..=chunk.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let mut stmt = c.prepare(&format!("SELECT id FROM events WHERE id IN ({placeholders})")).map_err(classify)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(chunk), |r| r.get::<_, String>(0))
            .map_err(classify)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify)?;
        found.extend(rows);
    }
    Ok(found)
}

/// A running load's transaction, for its source to look ids up in (`Store::append_all`).
struct TxLoad<'a>(&'a Connection);

impl crate::Load for TxLoad<'_> {
    fn existing_ids(&self, ids: &[String]) -> Result<std::collections::HashSet<String>> {
        existing_ids_in(self.0, ids)
    }
}

/// The log's size as `c` sees it: the position the next event takes.
fn log_size(c: &Connection) -> Result<u64> {
    let next: i64 = c.query_row("SELECT COALESCE(MAX(seq) + 1, 0) FROM events", [], |r| r.get(0)).map_err(classify)?;
    u64::try_from(next).map_err(|_| StoreError::Corrupt("negative size".into()))
}

/// Appends events at the end of the log inside `tx`: positions, commitments with fresh salts,
/// leaf hashes, the new complete subtrees, and their rollup. On error the caller restores the
/// frontier.
fn append_in(tx: &Transaction<'_>, frontier: &mut Option<Frontier>, events: &mut [Event]) -> Result<()> {
    let size = log_size(tx)?;
    let sealed = seal(events, size)?;
    let mut combos = crate::rollup::Combos::default();
    append_sealed(tx, frontier, size, events, &sealed, &mut combos)?;
    combos.write_totals(tx)
}

/// Writes events sealed (by [`seal`]) for the positions from `first`, which must be the log's
/// size, with their tree nodes and daily rollup cells; what they add to their combinations'
/// totals waits in `combos` for [`crate::rollup::Combos::write_totals`].
fn append_sealed(
    tx: &Transaction<'_>,
    frontier: &mut Option<Frontier>,
    first: u64,
    events: &mut [Event],
    sealed: &[Sealed],
    combos: &mut crate::rollup::Combos,
) -> Result<()> {
    let f = match frontier {
        Some(f) if f.size() == first => f,
        _ => frontier.insert(Frontier::read(first, &TxNodes(tx))?),
    };
    let next = i64::try_from(first).map_err(|_| StoreError::Corrupt("the log is too long".into()))?;
    let mut event_stmt = tx.prepare_cached(EVENT_INSERT).map_err(classify)?;
    let mut personal_stmt = tx.prepare_cached(PERSONAL_INSERT).map_err(classify)?;
    let mut node_stmt =
        tx.prepare_cached("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?1, ?2, ?3)").map_err(classify)?;
    let mut nodes = Vec::with_capacity(4);
    for (i, (e, sealed)) in events.iter_mut().zip(sealed).enumerate() {
        let seq = next + i as i64;
        insert_event(&mut event_stmt, seq, e, sealed).map_err(|err| match classify(err) {
            StoreError::Backend(m) if m.contains("UNIQUE") => StoreError::Duplicate(format!("event {}", e.id)),
            other => other,
        })?;
        personal_stmt
            .execute(params![
                seq,
                sealed.salt.as_slice(),
                e.owner,
                e.source_ip,
                e.user_agent,
                e.path,
                e.explanation,
                sealed.details,
                sealed.ip_bin.as_ref().map(<[u8; 16]>::as_slice),
            ])
            .map_err(classify)?;
        nodes.clear();
        f.append(sealed.leaf_hash, &mut nodes).map_err(|_| StoreError::Corrupt("the tree is full".into()))?;
        for n in nodes.iter().filter(|n| n.id.level > 0) {
            let idx = i64::try_from(n.id.index).map_err(|_| StoreError::Corrupt("node index out of range".into()))?;
            node_stmt.execute(params![n.id.level, idx, n.hash.as_slice()]).map_err(classify)?;
        }
        e.seq = Some(seq as u64);
    }
    let mut tally = crate::rollup::Tally::default();
    for e in events.iter() {
        tally.add_event(e);
    }
    tally.flush_into(tx, combos)?;
    crate::rollup::set_covered(tx, next + events.len() as i64)?;
    Ok(())
}

/// The `AND …` conditions of an event query's filters (not its cursor), binding into `args`.
fn filter_sql(q: &EventQuery, args: &mut Vec<SqlValue>) -> String {
    filter_sql_on(q, args, "p")
}

/// [`filter_sql`] with the personal columns (owner, addresses) taken from table alias `personal`.
fn filter_sql_on(q: &EventQuery, args: &mut Vec<SqlValue>, personal: &str) -> String {
    let mut sql = String::new();
    let mut eq = |col: &str, v: Option<String>, args: &mut Vec<SqlValue>| {
        if let Some(v) = v {
            args.push(SqlValue::Text(v));
            sql += &format!(" AND {col} = ?{}", args.len());
        }
    };
    eq("e.kind", q.kind.map(|k| k.as_str().to_owned()), args);
    eq("e.token_id", q.token_id.clone(), args);
    eq("e.target", q.target.clone(), args);
    eq("e.source", q.source.clone(), args);
    eq("e.decision", q.decision.map(|d| d.as_str().to_owned()), args);
    eq("e.token_fingerprint", q.token_fingerprint.clone(), args);
    eq(&format!("{personal}.owner"), q.owner.clone(), args);
    eq("e.route", q.route.clone(), args);
    eq("e.resource", q.resource.clone(), args);
    eq("e.action", q.action.clone(), args);
    eq("e.operation", q.operation.clone(), args);
    if let Some(r) = q.reason {
        // A literal, not a parameter, so the partial index of non-`ok` reasons applies. Reason
        // codes are a closed set of `[a-z_]` names.
        debug_assert!(r.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        sql += &format!(" AND e.reason = '{}'", r.as_str());
    }
    if q.sensitive_only {
        sql += " AND e.sensitivity <> '[]'";
    }
    if let Some(label) = &q.sensitivity {
        args.push(SqlValue::Text(label.clone()));
        sql += &format!(" AND EXISTS (SELECT 1 FROM json_each(e.sensitivity) WHERE value = ?{})", args.len());
    }
    if let Some(net) = &q.source_ip {
        let (lo, hi) = net_range(net);
        args.push(SqlValue::Blob(lo.to_vec()));
        args.push(SqlValue::Blob(hi.to_vec()));
        sql += &format!(" AND {personal}.ip_bin BETWEEN ?{} AND ?{}", args.len() - 1, args.len());
        // IPv4 addresses are stored mapped into ::ffff:0:0/96; an IPv6 network that spans that
        // range (::/0, ::/8, …) means IPv6 addresses only.
        if matches!(net, ipnet::IpNet::V6(_)) {
            sql += &format!(" AND substr({personal}.ip_bin, 1, 12) <> x'00000000000000000000FFFF'");
        }
    }
    if let Some(since) = q.since {
        args.push(SqlValue::Integer(codec::micros(since)));
        sql += &format!(" AND e.time_us >= ?{}", args.len());
    }
    if let Some(until) = q.until {
        args.push(SqlValue::Integer(codec::micros(until)));
        sql += &format!(" AND e.time_us < ?{}", args.len());
    }
    sql
}

/// A group key as text: `-` for none, networks as CIDR, hours and days as RFC 3339.
fn stat_key(group_by: crate::GroupBy, key: SqlValue) -> String {
    use crate::GroupBy as G;
    match (group_by, key) {
        (_, SqlValue::Null) => "-".to_owned(),
        (G::Hour, SqlValue::Integer(h)) => {
            codec::time(h * 3_600_000_000).map_or_else(|_| h.to_string(), |t| t.strftime("%Y-%m-%dT%H:00Z").to_string())
        }
        (G::Day, SqlValue::Integer(d)) => {
            codec::time(d * 86_400_000_000).map_or_else(|_| d.to_string(), |t| t.strftime("%Y-%m-%d").to_string())
        }
        (G::Network, SqlValue::Text(hex)) => network_key(&hex),
        (_, SqlValue::Text(t)) => t,
        (_, SqlValue::Integer(i)) => i.to_string(),
        (_, other) => format!("{other:?}"),
    }
}

/// `0A0B0C…` (15 bytes of a mapped IPv4 or 6 bytes of IPv6) to `10.11.12.0/24` or `2001:db8:1::/48`.
fn network_key(hex: &str) -> String {
    let bytes: Vec<u8> =
        (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect();
    let mut full = [0u8; 16];
    for (i, b) in bytes.iter().enumerate().take(16) {
        full[i] = *b;
    }
    if bytes.len() == 15 {
        format!("{}.{}.{}.0/24", full[12], full[13], full[14])
    } else {
        format!("{}/48", std::net::Ipv6Addr::from(full))
    }
}

const FINDING_COLUMNS: &str = "pk, id, kind, severity, status, token_id, source_ip, first_us, last_us, summary, \
    evidence, event_count, details, comment, status_us";

fn finding_from_row(r: &Row<'_>) -> rusqlite::Result<(i64, Result<crate::FindingRecord>)> {
    let pk: i64 = r.get(0)?;
    let first: i64 = r.get(7)?;
    let last: i64 = r.get(8)?;
    let evidence: String = r.get(10)?;
    let count: i64 = r.get(11)?;
    let details: String = r.get(12)?;
    let status_us: i64 = r.get(14)?;
    let (id, kind, severity, status, token_id, source_ip, summary, comment) =
        (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(9)?, r.get(13)?);
    Ok((
        pk,
        (|| {
            Ok(crate::FindingRecord {
                id,
                kind,
                severity,
                status,
                token_id,
                source_ip,
                first_seen: codec::time(first)?,
                last_seen: codec::time(last)?,
                summary,
                evidence: codec::json_to_strings(&evidence)?,
                event_count: u64::try_from(count).unwrap_or(0),
                details: codec::json_to_map(&details)?,
                comment,
                status_changed_at: codec::time(status_us)?,
            })
        })(),
    ))
}

fn checkpoint_from_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredCheckpoint>> {
    let size: i64 = r.get(0)?;
    let root: Vec<u8> = r.get(1)?;
    let note: String = r.get(2)?;
    let created: i64 = r.get(3)?;
    Ok((|| {
        Ok(StoredCheckpoint {
            size: u64::try_from(size).map_err(|_| StoreError::Corrupt("negative checkpoint size".into()))?,
            root: hash32(root, "checkpoint root")?,
            note,
            created_at: codec::time(created)?,
        })
    })())
}

fn collect<T>(rows: Vec<Result<T>>) -> Result<Vec<T>> {
    rows.into_iter().collect()
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT COUNT(*) FROM meta", [], |_| Ok(())).map_err(classify))
    }

    fn insert_token(&self, token: &TokenRecord, event: &mut Event) -> Result<()> {
        self.write_log(|tx, frontier| {
            let placeholders = (1..=23).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
            let columns = TOKEN_COLUMNS.trim_start_matches("pk, ");
            tx.execute(
                &format!("INSERT INTO tokens ({columns}) VALUES ({placeholders})"),
                rusqlite::params_from_iter(token_values(token)),
            )
            .map_err(|e| match classify(e) {
                StoreError::Backend(m) if m.contains("UNIQUE") => StoreError::Duplicate(format!("token {}", token.id)),
                other => other,
            })?;
            let pk = tx.last_insert_rowid();
            write_grants(tx, pk, token)?;
            append_in(tx, frontier, std::slice::from_mut(event))
        })
    }

    fn update_token(&self, token: &TokenRecord, expected_revision: u64, event: &mut Event) -> Result<()> {
        self.write_log(|tx, frontier| {
            let found: Option<(i64, i64)> = tx
                .query_row("SELECT pk, revision FROM tokens WHERE id = ?1", [&token.id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(classify)?;
            let (pk, revision) = found.ok_or_else(|| StoreError::NotFound(format!("token {}", token.id)))?;
            if u64::try_from(revision).ok() != Some(expected_revision) || token.revision != expected_revision + 1 {
                return Err(StoreError::Conflict(format!("token {}", token.id)));
            }
            let sets: Vec<String> =
                TOKEN_COLUMNS.split(", ").skip(2).enumerate().map(|(i, c)| format!("{c} = ?{}", i + 2)).collect();
            tx.execute(
                &format!("UPDATE tokens SET {} WHERE id = ?1", sets.join(", ")),
                rusqlite::params_from_iter(token_values(token)),
            )
            .map_err(classify)?;
            write_grants(tx, pk, token)?;
            append_in(tx, frontier, std::slice::from_mut(event))
        })
    }

    fn get_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.read(|c| {
            let row = c
                .query_row(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"), [id], token_from_row)
                .optional()
                .map_err(classify)?;
            row.map(|(_, t)| t).transpose()
        })
    }

    fn list_tokens(&self, q: &TokenQuery) -> Result<Page<TokenRecord>> {
        let mut sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens t WHERE 1 = 1");
        let mut args: Vec<SqlValue> = Vec::new();
        let mut arg = |v: SqlValue| {
            args.push(v);
            format!("?{}", args.len())
        };
        if let Some(owner) = &q.owner {
            sql += &format!(" AND t.owner = {}", arg(SqlValue::Text(owner.clone())));
        }
        if let Some(after) = q.after {
            sql += &format!(" AND t.pk > {}", arg(SqlValue::Integer(after)));
        }
        if let Some(scope) = &q.scope {
            let res = arg(SqlValue::Text(scope.resource().to_owned()));
            let actions: Vec<String> =
                [token::Action::Read, token::Action::Write, token::Action::Admin, token::Action::Verify]
                    .into_iter()
                    .filter(|a| a.implies(scope.action()))
                    .map(|a| arg(SqlValue::Text(a.as_str().to_owned())))
                    .collect();
            let wildcard =
                if scope.resource() == token::scope::RESERVED_RESOURCE { "" } else { " OR s.resource = '*'" };
            sql += &format!(
                " AND EXISTS (SELECT 1 FROM token_scopes s WHERE s.token_pk = t.pk AND (s.resource = {res}{wildcard}) AND s.action IN ({}))",
                actions.join(", ")
            );
        }
        if let Some((key, value)) = &q.label {
            let k = arg(SqlValue::Text(key.clone()));
            match value {
                Some(v) => {
                    let v = arg(SqlValue::Text(v.clone()));
                    sql += &format!(
                        " AND EXISTS (SELECT 1 FROM token_labels l WHERE l.token_pk = t.pk AND l.key = {k} AND l.value = {v})"
                    );
                }
                None => {
                    sql +=
                        &format!(" AND EXISTS (SELECT 1 FROM token_labels l WHERE l.token_pk = t.pk AND l.key = {k})")
                }
            }
        }
        if let Some(state) = q.state {
            let now = arg(SqlValue::Integer(codec::micros(q.now)));
            sql += &match state {
                TokenState::Revoked => " AND t.revoked_at IS NOT NULL".to_owned(),
                TokenState::Expired => {
                    format!(" AND t.revoked_at IS NULL AND t.expires_at <= {now}")
                }
                TokenState::NotYetValid => format!(
                    " AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > {now}) AND t.not_before > {now}"
                ),
                TokenState::Active => format!(
                    " AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > {now}) AND (t.not_before IS NULL OR t.not_before <= {now})"
                ),
            };
        }
        let limit = i64::from(q.limit.max(1));
        sql += &format!(" ORDER BY t.pk LIMIT {}", arg(SqlValue::Integer(limit + 1)));
        self.read(|c| page_by_pk(c, &sql, args, limit, token_from_row))
    }

    fn count_tokens(&self, now: Timestamp) -> Result<BTreeMap<&'static str, u64>> {
        let now = codec::micros(now);
        self.read(|c| {
            let (active, revoked, expired, future): (i64, i64, i64, i64) = c
                .query_row(
                    "SELECT
                        COALESCE(SUM(revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1) AND (not_before IS NULL OR not_before <= ?1)), 0),
                        COALESCE(SUM(revoked_at IS NOT NULL), 0),
                        COALESCE(SUM(revoked_at IS NULL AND expires_at <= ?1), 0),
                        COALESCE(SUM(revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1) AND not_before > ?1), 0)
                     FROM tokens",
                    [now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .map_err(classify)?;
            let n = |v: i64| u64::try_from(v).unwrap_or(0);
            Ok(BTreeMap::from([
                (TokenState::Active.as_str(), n(active)),
                (TokenState::Revoked.as_str(), n(revoked)),
                (TokenState::Expired.as_str(), n(expired)),
                (TokenState::NotYetValid.as_str(), n(future)),
            ]))
        })
    }

    fn record_last_used(&self, uses: &[(String, Timestamp)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                )
                .map_err(classify)?;
            for (id, at) in uses {
                stmt.execute(params![id, codec::micros(*at)]).map_err(classify)?;
            }
            Ok(())
        })
    }

    fn append(&self, events: &mut [Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.write_log(|tx, frontier| append_in(tx, frontier, events))
    }

    fn append_all(&self, expected: u64, next: &mut dyn FnMut(&dyn crate::Load) -> crate::Batch) -> Result<Option<u64>> {
        let mut w = lock(&self.writer);
        let Writer { conn, frontier } = &mut *w;
        let saved = frontier.clone();
        let large = expected >= BULK_INDEX_MIN && expected >= log_size(conn)?;
        // A large load writes through a rollback journal instead of the write-ahead log. The
        // log's new pages lie past the database's end, which a rollback journal need not copy,
        // so they are written once; through the WAL they are written twice (to the WAL, then by
        // the checkpoint into the database), a fifth of a 1M-event load's time. The switch
        // needs the database to itself: idle readers are closed first, and while another
        // connection (another process) reads it the mode stays WAL and the load goes on as
        // before. A crash part-way leaves a hot journal, which the next opening rolls
        // back before anything reads the file (SQLite does this whatever the journal mode).
        // Meanwhile other connections may not read (once the load holds its exclusive lock),
        // which is why the load's source looks ids up through the load itself (`Load`).
        let journal = if large {
            lock(&self.readers).clear();
            // Refused (SQLITE_BUSY) while another connection reads.
            conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get::<_, String>(0))
                .is_ok_and(|mode| mode.eq_ignore_ascii_case("delete"))
        } else {
            false
        };
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(classify)?;
            // A large load: the log's secondary indexes are dropped and built again (from their
            // stored definitions) before the commit. Sorting once is cheaper than updating each
            // index event by event (the investigate bench's 3M events into an empty store:
            // 46.8 s against 54.3 s), and at worst costs twice the load's own indexing. Inside
            // the transaction, so a failed or abandoned load leaves them as they were.
            let rebuild: Vec<(String, String)> = if large {
                let mut stmt = tx
                    .prepare(
                        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
                         AND tbl_name IN ('events', 'event_personal') ORDER BY name",
                    )
                    .map_err(classify)?;
                let indexes = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))
                    .map_err(classify)?
                    .filter(|r| r.as_ref().map_or(true, |(name, _)| !BULK_KEEP.contains(&name.as_str())))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(classify)?;
                for (name, _) in &indexes {
                    tx.execute_batch(&format!("DROP INDEX \"{name}\"")).map_err(classify)?;
                }
                indexes
            } else {
                Vec::new()
            };
            // Sealing (salts, commitments, leaf hashes) runs on a thread of its own, a batch
            // ahead of the writer: the CPU-bound part of an append overlaps SQLite's.
            let first = log_size(&tx)?;
            let mut combos = crate::rollup::Combos::default();
            std::thread::scope(|scope| {
                let (to_sealer, batches) = std::sync::mpsc::sync_channel::<(Vec<Event>, u64)>(1);
                let (from_sealer, sealed) = std::sync::mpsc::sync_channel::<(Vec<Event>, u64, Result<Vec<Sealed>>)>(1);
                std::thread::Builder::new()
                    .name("tt-seal".into())
                    .spawn_scoped(scope, move || {
                        for (events, at) in batches {
                            let s = seal(&events, at);
                            if from_sealer.send((events, at, s)).is_err() {
                                return;
                            }
                        }
                    })
                    .map_err(|e| StoreError::Unavailable(format!("cannot start a thread: {e}")))?;
                let mut write = |(mut events, at, s): (Vec<Event>, u64, Result<Vec<Sealed>>)| {
                    append_sealed(&tx, frontier, at, &mut events, &s?, &mut combos)
                };
                let (mut given, mut in_flight) = (first, 0usize);
                loop {
                    match next(&TxLoad(&tx)) {
                        crate::Batch::Events(events) => {
                            if events.is_empty() {
                                continue;
                            }
                            let n = events.len() as u64;
                            // The sealer holds at most one batch and has sent back at most one.
                            if to_sealer.send((events, given)).is_err() {
                                break;
                            }
                            given += n;
                            in_flight += 1;
                            if in_flight > 1 {
                                match sealed.recv() {
                                    Ok(b) => write(b)?,
                                    Err(_) => break,
                                }
                                in_flight -= 1;
                            }
                        }
                        // Dropping the transaction rolls it back.
                        crate::Batch::Abort => return Ok(None),
                        crate::Batch::End => {
                            drop(to_sealer);
                            for b in sealed.iter() {
                                write(b)?;
                                in_flight -= 1;
                            }
                            if in_flight > 0 {
                                break;
                            }
                            combos.write_totals(&tx)?;
                            for (_, sql) in &rebuild {
                                tx.execute_batch(sql).map_err(classify)?;
                            }
                            tx.commit().map_err(classify)?;
                            return Ok(Some(given - first));
                        }
                    }
                }
                Err(StoreError::Backend("the sealing thread stopped".into()))
            })
        })();
        if !matches!(result, Ok(Some(_))) {
            *frontier = saved;
        }
        if journal {
            // Back to the WAL, which readers and the gateway's appends need. Should another
            // connection have opened the file meanwhile, this fails quietly and the next
            // opening of the store sets it (`configure`).
            let _ = conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()));
        }
        result
    }

    fn get_event(&self, id: &str) -> Result<Option<Event>> {
        self.read(|c| {
            c.query_row(&format!("SELECT {EVENT_SELECT} WHERE e.id = ?1"), [id], event_from_row)
                .optional()
                .map_err(classify)?
                .transpose()
        })
    }

    fn list_events(&self, q: &EventQuery) -> Result<Page<Event>> {
        let mut args: Vec<SqlValue> = Vec::new();
        let mut sql = format!("SELECT {EVENT_SELECT} WHERE 1 = 1{}", filter_sql(q, &mut args));
        // The position to order by: the event's, or its personal row's (the same number) when
        // the network index leads.
        let mut seq = "e.seq";
        let net = q.source_ip.as_ref().map(|net| (net, net_keys(net)));
        if let Some((_, (key_lo, key_hi))) = &net {
            sql += " AND p.ip_bin IS NOT NULL";
            if key_lo == key_hi {
                args.push(SqlValue::Blob(key_lo.clone()));
                sql += &format!(" AND {NET_OF_P} = ?{}", args.len());
            } else {
                args.push(SqlValue::Blob(key_lo.clone()));
                args.push(SqlValue::Blob(key_hi.clone()));
                sql += &format!(" AND {NET_OF_P} BETWEEN ?{} AND ?{}", args.len() - 1, args.len());
            }
        }
        if let Some((_, (key_lo, key_hi))) = &net
            && key_lo == key_hi
            && !q.by_time
        {
            // A network inside one /24 or /48: its index entries are in position order, so a
            // page is read from them directly, newest (or oldest) first.
            sql = sql.replacen(
                "FROM events e LEFT JOIN event_personal p ON p.seq = e.seq",
                "FROM event_personal p CROSS JOIN events e ON e.seq = p.seq",
                1,
            );
            seq = "p.seq";
        } else if let Some((net, _)) = &net
            && !q.by_time
            && self.network_is_common(net, q.limit)?
        {
            // Walking the log in order and checking each event's address reads about
            // limit × events / matches rows; looking the matches up by address reads (and sorts)
            // every match. For a network this common the walk is cheaper. Every event has its
            // personal row, so the inner join in this order is the same query.
            sql = sql.replacen(
                "FROM events e LEFT JOIN event_personal p",
                "FROM events e CROSS JOIN event_personal p",
                1,
            );
        }
        let (cmp, dir) = match q.order {
            Order::Asc => (">", "ASC"),
            Order::Desc => ("<", "DESC"),
        };
        if let Some(after) = q.after {
            args.push(SqlValue::Integer(after));
            sql += &format!(" AND {seq} {cmp} ?{}", args.len());
        }
        let limit = i64::from(q.limit.max(1));
        args.push(SqlValue::Integer(limit + 1));
        if q.by_time {
            sql += &format!(" ORDER BY e.time_us {dir}, e.seq {dir} LIMIT ?{}", args.len());
        } else {
            sql += &format!(" ORDER BY {seq} {dir} LIMIT ?{}", args.len());
        }
        self.read(|c| {
            let mut stmt = c.prepare(&sql).map_err(classify)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), event_from_row)
                .map_err(classify)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(classify)?;
            let more = rows.len() as i64 > limit;
            let items = collect(rows.into_iter().take(limit as usize).collect())?;
            let next = if more { items.last().and_then(|e: &Event| e.seq).map(|s| s as i64) } else { None };
            Ok(Page { items, next })
        })
    }

    fn scope_usage(&self, since: Timestamp) -> Result<Vec<crate::ScopeUse>> {
        self.read(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT token_id, required_scope, COUNT(*), MAX(time_us) FROM events \
                     WHERE kind = 'access' AND decision = 'allow' AND token_id IS NOT NULL AND time_us >= ?1 \
                     GROUP BY token_id, required_scope",
                )
                .map_err(classify)?;
            let rows = stmt
                .query_map([codec::micros(since)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(classify)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(classify)?;
            rows.into_iter()
                .map(|(token_id, scope, n, last)| {
                    Ok(crate::ScopeUse {
                        token_id,
                        scope,
                        count: u64::try_from(n).unwrap_or(0),
                        last: codec::time(last)?,
                    })
                })
                .collect()
        })
    }

    fn existing_ids(&self, ids: &[String]) -> Result<std::collections::HashSet<String>> {
        self.read(|c| existing_ids_in(c, ids))
    }

    fn stats(&self, q: &EventQuery, group_by: crate::GroupBy, limit: u32) -> Result<Vec<crate::StatRow>> {
        use crate::GroupBy as G;
        use crate::rollup::DAY_US;
        // The group key over columns of `e` (the event, or the rollup's combination), `p` (its
        // personal values; the combination itself) and the expression of its UTC day.
        let key = |p: &str, day: &str| match group_by {
            G::Token => "COALESCE(e.token_id, e.token_fingerprint)".to_owned(),
            G::Owner => format!("{p}.owner"),
            G::Route => "e.route".to_owned(),
            G::Resource => "e.resource".to_owned(),
            G::Reason => "e.reason".to_owned(),
            G::Decision => "e.decision".to_owned(),
            G::SourceIp => format!("{p}.source_ip"),
            G::Network => format!(
                "CASE WHEN {p}.ip_bin IS NULL THEN NULL \
                 WHEN substr({p}.ip_bin, 1, 12) = x'00000000000000000000FFFF' THEN hex(substr({p}.ip_bin, 1, 15)) \
                 ELSE hex(substr({p}.ip_bin, 1, 6)) END"
            ),
            G::Hour => "(e.time_us / 3600000000)".to_owned(),
            G::Day => day.to_owned(),
        };
        let order = match group_by {
            G::Hour | G::Day => "k ASC",
            _ => "n DESC, k ASC",
        };
        // Whole UTC days come from the daily rollup; the partial days at the window's edges,
        // and grouping by hour, from the events.
        let untimed = EventQuery { since: None, until: None, ..q.clone() };
        let since = q.since.map(codec::micros);
        let until = q.until.map(codec::micros);
        let first_day = since.map_or(i64::MIN, |s| s.div_euclid(DAY_US) + i64::from(s.rem_euclid(DAY_US) != 0));
        let end_day = until.map_or(i64::MAX, |u| u.div_euclid(DAY_US));
        let whole_days = group_by != G::Hour && first_day < end_day;
        let mut args: Vec<SqlValue> = Vec::new();
        let mut parts: Vec<String> = Vec::new();
        let mut raw = |lo: Option<i64>, hi: Option<i64>, args: &mut Vec<SqlValue>| {
            let mut sql = format!(
                "SELECT {} AS k, p.source_ip AS ip, 1 AS n, e.decision = 'allow' AS a, e.decision = 'deny' AS d, \
                 COALESCE(e.bytes_out, 0) AS b FROM events e LEFT JOIN event_personal p ON p.seq = e.seq WHERE 1 = 1",
                key("p", "(e.time_us / 86400000000)")
            );
            for (bound, op) in [(lo, ">="), (hi, "<")] {
                if let Some(v) = bound {
                    args.push(SqlValue::Integer(v));
                    sql += &format!(" AND e.time_us {op} ?{}", args.len());
                }
            }
            sql += &filter_sql(&untimed, args);
            parts.push(sql);
        };
        if whole_days {
            if let Some(s) = since.filter(|s| s.rem_euclid(DAY_US) != 0) {
                raw(Some(s), Some(first_day * DAY_US), &mut args);
            }
            if let Some(u) = until.filter(|u| u.rem_euclid(DAY_US) != 0) {
                raw(Some(end_day * DAY_US), Some(u), &mut args);
            }
            let by_day = group_by == G::Day;
            let dim_filters = filter_sql_on(&untimed, &mut args, "e");
            if since.is_none() && until.is_none() && !by_day {
                // The whole log: each selected combination's total, without its days.
                parts.push(format!(
                    "SELECT {} AS k, e.source_ip AS ip, e.n AS n, CASE WHEN e.decision = 'allow' THEN e.n ELSE 0 END AS a, \
                     CASE WHEN e.decision = 'deny' THEN e.n ELSE 0 END AS d, e.bytes AS b \
                     FROM rollup_dims e WHERE e.n > 0{dim_filters}",
                    key("e", "NULL")
                ));
            } else {
                // Sum each combination's days in the window (only the combinations the filters
                // select), then group the combinations.
                let mut inner = format!(
                    "SELECT dim, {}SUM(n) AS n, SUM(bytes) AS bytes FROM event_rollup WHERE 1 = 1",
                    if by_day { "day, " } else { "" }
                );
                for (bound, op) in [(since.map(|_| first_day), ">="), (until.map(|_| end_day), "<")] {
                    if let Some(v) = bound {
                        args.push(SqlValue::Integer(v));
                        inner += &format!(" AND day {op} ?{}", args.len());
                    }
                }
                if !dim_filters.is_empty() {
                    inner += &format!(" AND dim IN (SELECT e.id FROM rollup_dims e WHERE 1 = 1{dim_filters})");
                }
                inner += if by_day { " GROUP BY dim, day" } else { " GROUP BY dim" };
                let sql = format!(
                    "SELECT {} AS k, e.source_ip AS ip, r.n AS n, CASE WHEN e.decision = 'allow' THEN r.n ELSE 0 END AS a, \
                 CASE WHEN e.decision = 'deny' THEN r.n ELSE 0 END AS d, r.bytes AS b \
                 FROM ({inner}) r JOIN rollup_dims e ON e.id = r.dim",
                    key("e", "r.day")
                );
                parts.push(sql);
            }
        } else {
            raw(since, until, &mut args);
        }
        args.push(SqlValue::Integer(i64::from(limit.max(1))));
        let sql = format!(
            "SELECT k, SUM(n) AS n, SUM(a), SUM(d), COUNT(DISTINCT ip), SUM(b) FROM ({}) \
             GROUP BY k ORDER BY {order} LIMIT ?{}",
            parts.join(" UNION ALL "),
            args.len()
        );
        self.read(|c| {
            let mut stmt = c.prepare(&sql).map_err(classify)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| {
                    let key: SqlValue = r.get(0)?;
                    let n = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                    Ok(crate::StatRow {
                        key: stat_key(group_by, key),
                        count: n(1)?,
                        allowed: n(2)?,
                        denied: n(3)?,
                        distinct_ips: n(4)?,
                        bytes: n(5)?,
                    })
                })
                .map_err(classify)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(classify)?;
            Ok(rows)
        })
    }

    fn event_count(&self) -> Result<u64> {
        self.read(log_size)
    }

    fn tree_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>> {
        self.read(|c| {
            let reader = TxNodes(c);
            ids.iter().map(|id| Ok((*id, reader.node(id.level, id.index)?))).collect()
        })
    }

    fn leaves(&self, from: u64, limit: u32) -> Result<Vec<StoredLeaf>> {
        let from = i64::try_from(from).map_err(|_| StoreError::Backend("position out of range".into()))?;
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!("SELECT {EVENT_SELECT} WHERE e.seq >= ?1 ORDER BY e.seq LIMIT ?2"))
                .map_err(classify)?;
            let rows = stmt
                .query_map(params![from, i64::from(limit)], leaf_from_row)
                .map_err(classify)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(classify)?;
            collect(rows)
        })
    }

    fn put_checkpoint(&self, cp: &StoredCheckpoint) -> Result<()> {
        let size = i64::try_from(cp.size).map_err(|_| StoreError::Backend("size out of range".into()))?;
        self.write(|tx| {
            let existing: Option<Vec<u8>> = tx
                .query_row("SELECT root FROM checkpoints WHERE size = ?1", [size], |r| r.get(0))
                .optional()
                .map_err(classify)?;
            match existing {
                Some(root) if root == cp.root => Ok(()),
                Some(_) => Err(StoreError::Conflict(format!("a different checkpoint for size {}", cp.size))),
                None => {
                    tx.execute(
                        "INSERT INTO checkpoints (size, root, note, created_us) VALUES (?1, ?2, ?3, ?4)",
                        params![size, cp.root.as_slice(), cp.note, codec::micros(cp.created_at)],
                    )
                    .map_err(classify)?;
                    Ok(())
                }
            }
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        self.read(|c| {
            c.query_row(
                "SELECT size, root, note, created_us FROM checkpoints ORDER BY size DESC LIMIT 1",
                [],
                checkpoint_from_row,
            )
            .optional()
            .map_err(classify)?
            .transpose()
        })
    }

    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT size, root, note, created_us FROM checkpoints ORDER BY size").map_err(classify)?;
            let rows = stmt
                .query_map([], checkpoint_from_row)
                .map_err(classify)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(classify)?;
            collect(rows)
        })
    }

    fn erase(&self, erasure: &crate::Erasure, event: &mut Event) -> Result<u64> {
        // Also events whose explanation or details quote the value (the admin event that created
        // a token for this owner, a denial naming this address), and token owners: the person's
        // name must not survive anywhere in the data directory.
        let (column, value) = match erasure {
            crate::Erasure::Owner(o) => ("owner", o),
            crate::Erasure::SourceIp(ip) => ("source_ip", ip),
        };
        let n = self.write_log(|tx, frontier| {
            let condition = format!("{column} = ?1 OR instr(details, ?1) > 0 OR instr(explanation, ?1) > 0");
            // The rollup counts by owner and address too: the cells of the erased events are
            // recomputed once their personal values are gone.
            let cells = crate::rollup::cells_of(tx, &condition, value)?;
            let n = tx.execute(&format!("DELETE FROM event_personal WHERE {condition}"), [value]).map_err(classify)?;
            crate::rollup::recompute(tx, &cells)?;
            if column == "owner" {
                tx.execute("UPDATE tokens SET owner = 'erased' WHERE owner = ?1", [value]).map_err(classify)?;
            }
            tx.execute(
                "UPDATE findings SET source_ip = CASE WHEN source_ip = ?1 THEN NULL ELSE source_ip END, \
                 summary = '(erased)', details = '{}' \
                 WHERE source_ip = ?1 OR instr(summary, ?1) > 0 OR instr(details, ?1) > 0",
                [value],
            )
            .map_err(classify)?;
            append_in(tx, frontier, std::slice::from_mut(event))?;
            Ok(n as u64)
        })?;
        // secure_delete zeroes deleted cells and freed pages, but not every copy: when deleting
        // rearranges rows between pages, SQLite rewrites a page without clearing the bytes its
        // old cells leave behind, and old copies live on in the write-ahead log until it is
        // checkpointed. So the database is rewritten from its live rows (VACUUM, time and
        // temporary space in proportion to its size; other writes wait), and the log, which
        // then holds only the rewritten pages, is folded in and truncated.
        let w = lock(&self.writer);
        w.conn
            .execute_batch("VACUUM")
            .and_then(|()| w.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "the personal values of {n} events were erased, but rewriting the database to clear old copies \
                     of them failed ({e}); erase again to retry"
                ))
            })?;
        Ok(n)
    }

    fn upsert_findings(&self, findings: &[crate::FindingRecord]) -> Result<Vec<crate::FindingChange>> {
        if findings.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|tx| {
            let mut fresh = Vec::new();
            for f in findings {
                let existing: Option<(String, i64, String)> = tx
                    .query_row("SELECT status, status_us, severity FROM findings WHERE id = ?1", [&f.id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                    .map_err(classify)?;
                let evidence = codec::strings_to_json(&f.evidence);
                let details = codec::map_to_json(&f.details);
                match existing {
                    None => {
                        tx.execute(
                            "INSERT INTO findings (id, kind, severity, status, token_id, source_ip, first_us, last_us, summary, \
                             evidence, event_count, details, comment, status_us) \
                             VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, ?12)",
                            params![
                                f.id,
                                f.kind,
                                f.severity,
                                f.token_id,
                                f.source_ip,
                                codec::micros(f.first_seen),
                                codec::micros(f.last_seen),
                                f.summary,
                                evidence,
                                i64::try_from(f.event_count).unwrap_or(i64::MAX),
                                details,
                                codec::micros(f.status_changed_at),
                            ],
                        )
                        .map_err(classify)?;
                        fresh.push(crate::FindingChange { id: f.id.clone(), previous_severity: None });
                    }
                    Some((status, status_us, severity)) => {
                        let reopen = status == "resolved" && codec::micros(f.last_seen) > status_us;
                        tx.execute(
                            "UPDATE findings SET severity = ?2, last_us = MAX(last_us, ?3), summary = ?4, evidence = ?5, \
                             event_count = MAX(event_count, ?6), details = ?7, \
                             status = CASE WHEN ?8 THEN 'open' ELSE status END, \
                             status_us = CASE WHEN ?8 THEN ?9 ELSE status_us END WHERE id = ?1",
                            params![
                                f.id,
                                f.severity,
                                codec::micros(f.last_seen),
                                f.summary,
                                evidence,
                                i64::try_from(f.event_count).unwrap_or(i64::MAX),
                                details,
                                reopen,
                                codec::micros(f.last_seen),
                            ],
                        )
                        .map_err(classify)?;
                        if reopen {
                            fresh.push(crate::FindingChange { id: f.id.clone(), previous_severity: None });
                        } else if severity != f.severity && status != "resolved" {
                            fresh.push(crate::FindingChange { id: f.id.clone(), previous_severity: Some(severity) });
                        }
                    }
                }
            }
            Ok(fresh)
        })
    }

    fn get_finding(&self, id: &str) -> Result<Option<crate::FindingRecord>> {
        self.read(|c| {
            c.query_row(&format!("SELECT {FINDING_COLUMNS} FROM findings WHERE id = ?1"), [id], finding_from_row)
                .optional()
                .map_err(classify)?
                .map(|(_, f)| f)
                .transpose()
        })
    }

    fn list_findings(&self, q: &crate::FindingQuery) -> Result<Page<crate::FindingRecord>> {
        let mut sql = format!("SELECT {FINDING_COLUMNS} FROM findings WHERE 1 = 1");
        let mut args: Vec<SqlValue> = Vec::new();
        let mut eq = |col: &str, v: &Option<String>, args: &mut Vec<SqlValue>| {
            if let Some(v) = v {
                args.push(SqlValue::Text(v.clone()));
                sql += &format!(" AND {col} = ?{}", args.len());
            }
        };
        eq("kind", &q.kind, &mut args);
        eq("status", &q.status, &mut args);
        eq("token_id", &q.token_id, &mut args);
        if !q.severities.is_empty() {
            let mut marks = Vec::new();
            for s in &q.severities {
                args.push(SqlValue::Text(s.clone()));
                marks.push(format!("?{}", args.len()));
            }
            sql += &format!(" AND severity IN ({})", marks.join(", "));
        }
        if let Some(since) = q.since {
            args.push(SqlValue::Integer(codec::micros(since)));
            sql += &format!(" AND last_us >= ?{}", args.len());
        }
        if let Some(after) = q.after {
            args.push(SqlValue::Integer(after));
            sql += &format!(" AND pk < ?{}", args.len());
        }
        let limit = i64::from(q.limit.max(1));
        args.push(SqlValue::Integer(limit + 1));
        sql += &format!(" ORDER BY pk DESC LIMIT ?{}", args.len());
        self.read(|c| page_by_pk(c, &sql, args, limit, finding_from_row))
    }

    fn set_finding_status(
        &self,
        id: &str,
        status: &str,
        comment: &str,
        at: Timestamp,
        event: &mut Event,
    ) -> Result<()> {
        self.write_log(|tx, frontier| {
            let n = tx
                .execute(
                    "UPDATE findings SET status = ?2, comment = ?3, status_us = ?4 WHERE id = ?1",
                    params![id, status, comment, codec::micros(at)],
                )
                .map_err(classify)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("finding {id}")));
            }
            append_in(tx, frontier, std::slice::from_mut(event))
        })
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>> {
        self.read(|c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(classify)
        })
    }

    fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map_err(classify)?;
            Ok(())
        })
    }
}
