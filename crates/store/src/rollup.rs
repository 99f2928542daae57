//! Daily counts of events by every dimension a query can filter or group on, kept beside the log
//! so that `stats` over whole days reads one narrow row per (combination of dimensions, day) and
//! each combination once, instead of one row per event. Derived from the log and rebuilt from it: appends add to it in their transaction,
//! erasure recomputes the (day, token) cells it touched, and opening a store catches it up with
//! any events it does not cover yet (the `rollup_size` meta key).

use std::borrow::Cow;
use std::collections::HashMap;

use ledger::event::Event;
use ledger::merkle;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::codec;
use crate::{Result, StoreError};

/// Microseconds in a UTC day: the rollup's bucket.
pub(crate) const DAY_US: i64 = 86_400_000_000;

/// Events per transaction when catching up.
const CATCH_UP_CHUNK: i64 = 50_000;

/// The rollup's tables (migration 5).
pub(crate) const SCHEMA: &str = r#"
-- Every distinct combination of the dimensions `stats` filters and groups on (source_ip and
-- owner included, so erasure recomputes the cells it touches), once; `hash` identifies it.
CREATE TABLE rollup_dims (
    id                INTEGER PRIMARY KEY,
    hash              BLOB NOT NULL UNIQUE,
    kind              TEXT NOT NULL,
    source            TEXT NOT NULL,
    token_id          TEXT,
    token_fingerprint TEXT,
    owner             TEXT,
    route             TEXT,
    resource          TEXT,
    action            TEXT,
    operation         TEXT,
    target            TEXT,
    sensitivity       TEXT NOT NULL,
    decision          TEXT NOT NULL,
    reason            TEXT NOT NULL,
    source_ip         TEXT,
    ip_bin            BLOB
);
-- The selective filters (a token, an unresolved credential, an owner) find their few
-- combinations directly; the others read them all, which is still few next to the events.
CREATE INDEX rollup_dims_token ON rollup_dims(token_id);
CREATE INDEX rollup_dims_fingerprint ON rollup_dims(token_fingerprint) WHERE token_fingerprint IS NOT NULL;
CREATE INDEX rollup_dims_owner ON rollup_dims(owner) WHERE owner IS NOT NULL;
-- Events and response bytes per combination and UTC day: narrow rows, clustered by
-- combination, so summing a window reads each combination's days together. Derived from the
-- log: `rollup_size` in meta says how many events it covers.
CREATE TABLE event_rollup (
    dim   INTEGER NOT NULL,
    day   INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (dim, day)
) WITHOUT ROWID;
"#;

/// Migration 7: each combination's counts over all time, so that stats over the whole log read
/// the combinations alone instead of summing every (combination, day) cell.
pub(crate) const TOTALS: &str = r#"
ALTER TABLE rollup_dims ADD COLUMN n INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_dims ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE rollup_dims SET (n, bytes) =
    (SELECT COALESCE(SUM(n), 0), COALESCE(SUM(bytes), 0) FROM event_rollup WHERE dim = rollup_dims.id);
"#;

/// The dimensions of one rollup cell, borrowed from events where possible.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Dims<'a> {
    pub kind: Cow<'a, str>,
    pub source: Cow<'a, str>,
    pub token_id: Option<Cow<'a, str>>,
    pub token_fingerprint: Option<Cow<'a, str>>,
    pub owner: Option<Cow<'a, str>>,
    pub route: Option<Cow<'a, str>>,
    pub resource: Option<Cow<'a, str>>,
    pub action: Option<Cow<'a, str>>,
    pub operation: Option<Cow<'a, str>>,
    pub target: Option<Cow<'a, str>>,
    pub sensitivity: Cow<'a, str>,
    pub decision: Cow<'a, str>,
    pub reason: Cow<'a, str>,
    pub source_ip: Option<Cow<'a, str>>,
}

impl<'a> Dims<'a> {
    /// The dimensions of an event as it is appended (its personal values still present).
    pub(crate) fn of(e: &'a Event) -> Dims<'a> {
        let b = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        Dims {
            kind: Cow::Borrowed(e.kind.as_str()),
            source: Cow::Borrowed(&e.source),
            token_id: b(&e.token_id),
            token_fingerprint: b(&e.token_fingerprint),
            owner: b(&e.owner),
            route: b(&e.route),
            resource: b(&e.resource),
            action: b(&e.action),
            operation: b(&e.operation),
            target: b(&e.target),
            sensitivity: Cow::Owned(codec::strings_to_json(&e.sensitivity)),
            decision: Cow::Borrowed(e.decision.as_str()),
            reason: Cow::Borrowed(e.reason.as_str()),
            source_ip: b(&e.source_ip),
        }
    }

    /// A 16-byte hash of the dimensions, each length-prefixed (absent differs from empty).
    fn hash(&self) -> [u8; 16] {
        let mut buf = Vec::with_capacity(256);
        let mut put = |v: Option<&str>| match v {
            None => buf.extend_from_slice(&u32::MAX.to_be_bytes()),
            Some(s) => {
                buf.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX - 1).to_be_bytes());
                buf.extend_from_slice(s.as_bytes());
            }
        };
        put(Some(&self.kind));
        put(Some(&self.source));
        put(self.token_id.as_deref());
        put(self.token_fingerprint.as_deref());
        put(self.owner.as_deref());
        put(self.route.as_deref());
        put(self.resource.as_deref());
        put(self.action.as_deref());
        put(self.operation.as_deref());
        put(self.target.as_deref());
        put(Some(&self.sensitivity));
        put(Some(&self.decision));
        put(Some(&self.reason));
        put(self.source_ip.as_deref());
        let h = merkle::leaf_hash(&buf);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h[..16]);
        out
    }
}

/// A fast, non-cryptographic hasher (the multiply-rotate of rustc's FxHasher) for the tally's
/// in-memory map: its keys come from the store's own appends, and SipHash over a dozen strings
/// per event was a visible share of an append.
#[derive(Default)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

/// Counts gathered in memory and added to the table in one pass.
#[derive(Default)]
pub(crate) struct Tally<'a> {
    cells: HashMap<(i64, Dims<'a>), (i64, i64), FxBuild>,
}

impl<'a> Tally<'a> {
    pub(crate) fn add(&mut self, time_us: i64, dims: Dims<'a>, bytes: Option<u64>) {
        let cell = self.cells.entry((time_us.div_euclid(DAY_US), dims)).or_default();
        cell.0 += 1;
        cell.1 = cell.1.saturating_add(bytes.map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX)));
    }

    pub(crate) fn add_event(&mut self, e: &'a Event) {
        self.add(codec::micros(e.time), Dims::of(e), e.bytes_out);
    }

    /// Adds the counts to the tables inside `tx`.
    pub(crate) fn flush(self, tx: &Connection) -> Result<()> {
        let mut combos = Combos::default();
        self.flush_into(tx, &mut combos)?;
        combos.write_totals(tx)
    }

    /// Adds the counts to the daily cells inside `tx`, and to `combos`' pending totals.
    pub(crate) fn flush_into(self, tx: &Connection, combos: &mut Combos) -> Result<()> {
        let c = crate::sqlite::classify;
        let mut find = tx.prepare_cached("SELECT id FROM rollup_dims WHERE hash = ?1").map_err(c)?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO rollup_dims (hash, kind, source, token_id, token_fingerprint, owner, route, resource, \
                 action, operation, target, sensitivity, decision, reason, source_ip, ip_bin) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )
            .map_err(c)?;
        let mut add = tx
            .prepare_cached(
                "INSERT INTO event_rollup (dim, day, n, bytes) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (dim, day) DO UPDATE SET n = n + excluded.n, bytes = bytes + excluded.bytes",
            )
            .map_err(c)?;
        let mut ids: HashMap<&Dims<'_>, i64, FxBuild> = HashMap::default();
        for ((day, d), (n, bytes)) in &self.cells {
            let id = match ids.get(d) {
                Some(id) => *id,
                None => {
                    let hash = d.hash();
                    let id = match combos.ids.get(&hash) {
                        Some(id) => *id,
                        None => match find.query_row([hash.as_slice()], |r| r.get(0)).optional().map_err(c)? {
                            Some(id) => id,
                            None => {
                                let ip_bin = d
                                    .source_ip
                                    .as_deref()
                                    .and_then(|s| s.parse::<std::net::IpAddr>().ok())
                                    .map(|ip| crate::sqlite::ip_bytes(ip).to_vec());
                                insert
                                    .execute(params![
                                        hash.as_slice(),
                                        d.kind,
                                        d.source,
                                        d.token_id,
                                        d.token_fingerprint,
                                        d.owner,
                                        d.route,
                                        d.resource,
                                        d.action,
                                        d.operation,
                                        d.target,
                                        d.sensitivity,
                                        d.decision,
                                        d.reason,
                                        d.source_ip,
                                        ip_bin,
                                    ])
                                    .map_err(c)?;
                                tx.last_insert_rowid()
                            }
                        },
                    };
                    combos.ids.insert(hash, id);
                    ids.insert(d, id);
                    id
                }
            };
            add.execute(params![id, day, n, bytes]).map_err(c)?;
            let t = combos.totals.entry(id).or_default();
            t.0 += n;
            t.1 = t.1.saturating_add(*bytes);
        }
        Ok(())
    }
}

/// The combinations one transaction has looked up or added (by their hash), and what it has
/// counted for each since their totals were last written. A load of many batches keeps one, so
/// each batch finds its combinations in memory and every total is written once, at the end,
/// instead of once per batch (a 1M-event load: 20 lookups and updates per combination).
/// Only valid inside the transaction it was filled in: the ids it holds are that
/// transaction's.
#[derive(Default)]
pub(crate) struct Combos {
    ids: HashMap<[u8; 16], i64, FxBuild>,
    totals: HashMap<i64, (i64, i64), FxBuild>,
}

impl Combos {
    /// Adds the pending counts to the combinations' totals inside `tx`.
    pub(crate) fn write_totals(&mut self, tx: &Connection) -> Result<()> {
        let c = crate::sqlite::classify;
        let mut total =
            tx.prepare_cached("UPDATE rollup_dims SET n = n + ?2, bytes = bytes + ?3 WHERE id = ?1").map_err(c)?;
        for (id, (n, bytes)) in self.totals.drain() {
            total.execute(params![id, n, bytes]).map_err(c)?;
        }
        Ok(())
    }
}

/// The stored events' columns a rollup cell needs, personal values from `event_personal`
/// (absent once erased), in the order `add_rows` reads them.
const ROW_SELECT: &str = "SELECT e.time_us, e.kind, e.source, e.token_id, e.token_fingerprint, p.owner, e.route, \
    e.resource, e.action, e.operation, e.target, e.sensitivity, e.decision, e.reason, p.source_ip, e.bytes_out \
    FROM events e LEFT JOIN event_personal p ON p.seq = e.seq";

/// Adds the stored events `WHERE {condition}` to `tally`.
fn add_rows(c: &Connection, condition: &str, args: &[&dyn rusqlite::ToSql], tally: &mut Tally<'static>) -> Result<()> {
    let mut stmt = c.prepare_cached(&format!("{ROW_SELECT} WHERE {condition}")).map_err(crate::sqlite::classify)?;
    let mut rows = stmt.query(args).map_err(crate::sqlite::classify)?;
    while let Some(r) = rows.next().map_err(crate::sqlite::classify)? {
        let text = |i: usize| -> rusqlite::Result<Cow<'static, str>> { Ok(Cow::Owned(r.get::<_, String>(i)?)) };
        let opt = |i: usize| -> rusqlite::Result<Option<Cow<'static, str>>> {
            Ok(r.get::<_, Option<String>>(i)?.map(Cow::Owned))
        };
        let dims = (|| -> rusqlite::Result<Dims<'static>> {
            Ok(Dims {
                kind: text(1)?,
                source: text(2)?,
                token_id: opt(3)?,
                token_fingerprint: opt(4)?,
                owner: opt(5)?,
                route: opt(6)?,
                resource: opt(7)?,
                action: opt(8)?,
                operation: opt(9)?,
                target: opt(10)?,
                sensitivity: text(11)?,
                decision: text(12)?,
                reason: text(13)?,
                source_ip: opt(14)?,
            })
        })()
        .map_err(crate::sqlite::classify)?;
        let time_us: i64 = r.get(0).map_err(crate::sqlite::classify)?;
        let bytes: Option<i64> = r.get(15).map_err(crate::sqlite::classify)?;
        tally.add(time_us, dims, bytes.and_then(|b| u64::try_from(b).ok()));
    }
    Ok(())
}

/// How many events (positions `0..size`) the rollup covers.
pub(crate) fn covered(c: &Connection) -> Result<i64> {
    let v: Option<String> = c
        .query_row("SELECT value FROM meta WHERE key = 'rollup_size'", [], |r| r.get(0))
        .optional()
        .map_err(crate::sqlite::classify)?;
    v.map_or(Ok(0), |v| v.parse().map_err(|_| StoreError::Corrupt(format!("rollup_size {v:?}"))))
}

/// Records that the rollup covers positions `0..size`.
pub(crate) fn set_covered(c: &Connection, size: i64) -> Result<()> {
    // Every append runs this: keep the statement prepared.
    c.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('rollup_size', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut stmt| stmt.execute([size.to_string()]))
    .map_err(crate::sqlite::classify)?;
    Ok(())
}

/// Adds every event the rollup does not cover yet, in transactions of `CATCH_UP_CHUNK` events
/// (so an interrupted catch-up resumes where it stopped). Runs when a store opens, before any
/// append; `progress(done, total)` hears of each chunk.
pub(crate) fn catch_up(conn: &mut Connection, progress: &mut dyn FnMut(i64, i64)) -> Result<()> {
    let size: i64 = conn
        .query_row("SELECT COALESCE(MAX(seq) + 1, 0) FROM events", [], |r| r.get(0))
        .map_err(crate::sqlite::classify)?;
    let mut from = covered(conn)?;
    while from < size {
        let to = (from + CATCH_UP_CHUNK).min(size);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(crate::sqlite::classify)?;
        let mut tally = Tally::default();
        add_rows(&tx, "e.seq >= ?1 AND e.seq < ?2", &[&from, &to], &mut tally)?;
        tally.flush(&tx)?;
        set_covered(&tx, to)?;
        tx.commit().map_err(crate::sqlite::classify)?;
        progress(to, size);
        from = to;
    }
    Ok(())
}

/// A day and the token id and fingerprint of the events of one erasure-affected group of cells.
pub(crate) type Cell = (i64, Option<String>, Option<String>);

/// The (day, token id, fingerprint) cells of the events `WHERE {condition}` over `event_personal
/// p` joined to `events e`: what an erasure must recompute.
pub(crate) fn cells_of(tx: &Transaction<'_>, condition: &str, value: &str) -> Result<Vec<Cell>> {
    let mut stmt = tx
        .prepare(&format!(
            "SELECT DISTINCT e.time_us / {DAY_US} - (e.time_us % {DAY_US} < 0), e.token_id, e.token_fingerprint \
             FROM event_personal p JOIN events e ON e.seq = p.seq WHERE {condition}"
        ))
        .map_err(crate::sqlite::classify)?;
    let rows = stmt
        .query_map([value], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(crate::sqlite::classify)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(crate::sqlite::classify)?;
    Ok(rows)
}

/// Recomputes the given (day, token id, fingerprint) cells from the events as stored now.
pub(crate) fn recompute(tx: &Transaction<'_>, cells: &[Cell]) -> Result<()> {
    let mut tally = Tally::default();
    for (day, token_id, fingerprint) in cells {
        tx.execute(
            "DELETE FROM event_rollup WHERE day = ?1 AND dim IN \
             (SELECT id FROM rollup_dims WHERE token_id IS ?2 AND token_fingerprint IS ?3)",
            params![day, token_id, fingerprint],
        )
        .map_err(crate::sqlite::classify)?;
        let (lo, hi) = (day * DAY_US, (day + 1) * DAY_US);
        add_rows(
            tx,
            "e.time_us >= ?1 AND e.time_us < ?2 AND e.token_id IS ?3 AND e.token_fingerprint IS ?4",
            &[&lo, &hi, token_id, fingerprint],
            &mut tally,
        )?;
    }
    tally.flush(tx)?;
    // The totals of these tokens' combinations are summed again from their days, and the
    // combinations that no day counts any more (those naming the erased value) go.
    let tokens: std::collections::HashSet<(&Option<String>, &Option<String>)> =
        cells.iter().map(|(_, token_id, fingerprint)| (token_id, fingerprint)).collect();
    for (token_id, fingerprint) in tokens {
        tx.execute(
            "UPDATE rollup_dims SET (n, bytes) = \
             (SELECT COALESCE(SUM(n), 0), COALESCE(SUM(bytes), 0) FROM event_rollup WHERE dim = rollup_dims.id) \
             WHERE token_id IS ?1 AND token_fingerprint IS ?2",
            params![token_id, fingerprint],
        )
        .map_err(crate::sqlite::classify)?;
        tx.execute(
            "DELETE FROM rollup_dims WHERE token_id IS ?1 AND token_fingerprint IS ?2 \
             AND NOT EXISTS (SELECT 1 FROM event_rollup WHERE dim = rollup_dims.id)",
            params![token_id, fingerprint],
        )
        .map_err(crate::sqlite::classify)?;
    }
    Ok(())
}
