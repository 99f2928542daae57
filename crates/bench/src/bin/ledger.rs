//! Ledger benchmark: durable appends per second with 1, 4 and 16 concurrent writers, next to
//! plain SQLite inserts of the same rows in the same run (the ratio is what the ledger costs);
//! then `audit verify` throughput and proof latency at a large size.
//!
//! `cargo run --release -p bench --bin ledger -- [seconds per case] [events for verify/proofs]`

#![allow(clippy::print_stdout)] // A benchmark reports on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bench::{access_event, percentile};
use engine::recorder::{Durability, Recorder};
use jiff::Timestamp;
use store::{SqliteStore, Store};

fn now() -> Timestamp {
    Timestamp::from_second(1_790_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Plain SQLite: the events table's non-personal columns plus the personal ones, 2 indexes, WAL,
/// synchronous=FULL, `batch` rows per transaction, one writer (SQLite allows one at a time).
fn plain_sqlite(dir: &std::path::Path, batch: usize, secs: f64) -> anyhow::Result<f64> {
    let conn = rusqlite::Connection::open(dir.join(format!("plain-{batch}.db")))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;
         PRAGMA wal_autocheckpoint = 10000;
         CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, time_us INTEGER, kind TEXT, source TEXT,
            token_id TEXT, owner TEXT, source_ip TEXT, user_agent TEXT, method TEXT, path TEXT, route TEXT,
            resource TEXT, action TEXT, decision TEXT, reason TEXT, status INTEGER, latency_us INTEGER,
            bytes_out INTEGER, request_id TEXT, node TEXT, explanation TEXT);
         CREATE INDEX events_token ON events(token_id, seq); CREATE INDEX events_time ON events(time_us);",
    )?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let tx = conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?21, ?22)",
            )?;
            for _ in 0..batch {
                let e = access_event(n, now());
                stmt.execute(rusqlite::params![
                    n as i64,
                    e.id,
                    e.time.as_microsecond(),
                    e.kind.as_str(),
                    e.source,
                    e.token_id,
                    e.owner,
                    e.source_ip,
                    e.user_agent,
                    e.method,
                    e.path,
                    e.route,
                    e.resource,
                    e.action,
                    e.decision.as_str(),
                    e.reason.as_str(),
                    e.status,
                    e.latency_us.map(|v| v as i64),
                    e.bytes_out.map(|v| v as i64),
                    e.request_id,
                    e.node,
                    e.explanation,
                ])?;
                n += 1;
            }
        }
        tx.commit()?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// The ledger: `writers` threads, each submitting `per_submit` events and waiting until they are
/// durable, for `secs` seconds. Returns events/s and the mean batch (events per commit).
fn ledger(dir: &std::path::Path, writers: usize, per_submit: usize, secs: f64) -> anyhow::Result<(f64, f64)> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join(format!("ledger-{writers}-{per_submit}.db")))?);
    let recorder = Arc::new(Recorder::start(store.clone(), Durability::Durable, 100_000));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let submits = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (recorder, stop, count, submits) = (recorder.clone(), stop.clone(), count.clone(), submits.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut i = (w as u64) << 40;
                while !stop.load(Ordering::Relaxed) {
                    let events = (0..per_submit)
                        .map(|_| {
                            i += 1;
                            access_event(i, now())
                        })
                        .collect();
                    recorder.submit_blocking(events)?.wait_blocking()?;
                    count.fetch_add(per_submit as u64, Ordering::Relaxed);
                    submits.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = store.event_count()?;
    anyhow::ensure!(
        n == count.load(Ordering::Relaxed),
        "acknowledged {} but stored {n}",
        count.load(Ordering::Relaxed)
    );
    Ok((n as f64 / elapsed, 0.0))
}

fn fsyncs_per_second(dir: &std::path::Path) -> anyhow::Result<f64> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(dir.join("fsync.probe"))?;
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(500) {
        f.write_all(&[0; 128])?;
        f.sync_data()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).map(|s| s.parse()).transpose().context("seconds")?.unwrap_or(3.0);
    let big: u64 = args.get(2).map(|s| s.parse()).transpose().context("events")?.unwrap_or(1_000_000);
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    println!(
        "disk: {:.0} fsyncs/s (durable throughput is bounded by events per commit x this)",
        fsyncs_per_second(dir.path())?
    );
    println!("\n== durable appends ({secs}s per case) ==");
    println!("{:<44} {:>12} {:>12} {:>8}", "case", "ledger ev/s", "plain ev/s", "ratio");
    for (writers, per_submit) in [(1, 1), (4, 1), (16, 1), (1, 256), (4, 256), (16, 256)] {
        let (ledger_rate, _) = ledger(dir.path(), writers, per_submit, secs)?;
        // The baseline commits the same number of rows per transaction as the ledger's batches
        // hold at best (every writer's submission in one commit).
        let plain = plain_sqlite(dir.path(), writers * per_submit, secs)?;
        println!(
            "{:<44} {:>12.0} {:>12.0} {:>8.2}",
            format!("{writers} writers x {per_submit} events per submit"),
            ledger_rate,
            plain,
            ledger_rate / plain
        );
    }

    println!("\n== verify and proofs at {big} events ==");
    let path = dir.path().join("big.db");
    {
        let store = SqliteStore::open(&path)?;
        let start = Instant::now();
        let mut i = 0u64;
        while i < big {
            let n = 10_000.min(big - i);
            let mut batch: Vec<_> = (i..i + n).map(|k| access_event(k, now())).collect();
            store.append(&mut batch)?;
            i += n;
        }
        println!("load: {:.0} events/s (batches of 10000)", big as f64 / start.elapsed().as_secs_f64());
    }
    let clock: Arc<dyn engine::Clock> = Arc::new(engine::SystemClock);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path)?);
    let signer = ledger::note::Signer::from_seed("tokentrail/bench", &[7; 32])?;
    let verifier = signer.verifier();
    let engine = engine::Engine::with_store(
        store.clone(),
        token::Pepper::from_bytes([1; 32]),
        signer,
        engine::Settings::default(),
        clock,
    );
    engine.checkpoint()?;
    let start = Instant::now();
    let v =
        engine::verify::verify(store.as_ref(), &[verifier], &[], &mut |_, _| {}).map_err(|f| anyhow::anyhow!("{f}"))?;
    let t = start.elapsed().as_secs_f64();
    println!("audit verify: {} events in {t:.2}s = {:.0} events/s", v.events, v.events as f64 / t);
    let mut lat = Vec::new();
    let mut x = 12345u64;
    for _ in 0..2000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let id = format!("ev_bench{:014}", (x >> 11) % big);
        let s = Instant::now();
        let p = engine.inclusion_proof(&id, None)?;
        lat.push(s.elapsed());
        std::hint::black_box(p);
    }
    lat.sort();
    println!(
        "inclusion proof (event lookup + O(log n) node reads): p50 {:?}, p99 {:?} over {} proofs",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.len()
    );
    Ok(())
}
