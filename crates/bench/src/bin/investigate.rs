//! Investigation benchmark: generate realistic traffic (tokens, routes, networks, a diurnal
//! pattern over 30 days), ingest it into the embedded store, then measure first-page query
//! latency (by token, by CIDR, by reason, over 30 days), stats grouped by token over everything,
//! explain latency and export rate. Each query is also run as plain SQL against the same file
//! in the same run, so the ratio shows what the layers above SQLite cost.
//!
//! `cargo run --release -p bench --bin investigate -- [events] [dir]`

#![allow(clippy::print_stdout)] // A benchmark reports on stdout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bench::percentile;
use jiff::{SignedDuration, Timestamp};
use ledger::event::{Event, Kind};
use store::{EventQuery, GroupBy, Order, SqliteStore, Store};
use token::Reason;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const TOKENS: u64 = 2000;
const ROUTES: [(&str, &str, &str, &str); 8] = [
    ("GET", "/v1/orders/{id}", "orders", "read"),
    ("POST", "/v1/orders", "orders", "write"),
    ("GET", "/v1/users/{id}", "users", "read"),
    ("PUT", "/v1/users/{id}", "users", "write"),
    ("GET", "/v1/patients/{id}", "patients", "read"),
    ("GET", "/v1/invoices/{id}", "invoices", "read"),
    ("GET", "/v1/catalog", "catalog", "read"),
    ("DELETE", "/v1/orders/{id}", "orders", "admin"),
];

/// One query case: our store's query, the equivalent plain SQL, and its arguments.
type Case = (EventQuery, String, Vec<rusqlite::types::Value>);

fn generate(i: u64, rng: &mut Rng, start: Timestamp, span_s: i64, n: u64) -> Event {
    // Time moves forward with a diurnal rhythm: more events by day than by night. Within each
    // day the position u in [0, 1) is warped by u + a·sin(2πu)/2π, which is monotone for a < 1
    // and packs events densest around midday (where its slope 1 + a·cos(2πu) is smallest).
    let days = span_s as f64 / 86_400.0 * i as f64 / n as f64;
    let (day, u) = (days.floor(), days.fract());
    let warped = u + 0.7 * (2.0 * std::f64::consts::PI * u).sin() / (2.0 * std::f64::consts::PI);
    let t = start.checked_add(SignedDuration::from_secs(((day + warped) * 86_400.0) as i64)).unwrap_or(start);
    let token = rng.below(TOKENS);
    let r = ROUTES[(token as usize + rng.below(3) as usize) % ROUTES.len()];
    let roll = rng.below(1000);
    let reason = match roll {
        0..=949 => Reason::Ok,
        950..=969 => Reason::InsufficientScope,
        970..=979 => Reason::UnknownToken,
        980..=984 => Reason::Expired,
        985..=989 => Reason::Revoked,
        990..=994 => Reason::BadChecksum,
        _ => Reason::RateLimited,
    };
    let mut e = Event::new(format!("ev_{i:018}"), t, Kind::Access, "gateway", reason);
    let unresolved = matches!(reason, Reason::UnknownToken | Reason::BadChecksum);
    if unresolved {
        e.token_fingerprint = Some(format!("fp_{:024x}", rng.below(5000)));
    } else {
        e.token_id = Some(format!("tok{token:013}"));
        e.owner = Some(format!("team-{}", token % 60));
    }
    // Each token calls from its own /24, from a pool of hosts that fits what it is: most are a
    // person or a single service (1–3 addresses), one in five a scaled-out service (4–16), one
    // in twenty a fleet (64). Every week a pool moves on by one address (leases, redeploys).
    // `INVESTIGATE_HOSTS=per-request` draws any of 250 hosts for every request instead: the
    // worst case for the daily rollup, which then holds about one row per event.
    let net = token % 200;
    let pool = match token % 20 {
        0 => 64,
        1..=4 => 4 + token % 13,
        _ => 1 + token % 3,
    };
    let host = if per_request_hosts() { rng.below(250) } else { (token * 7 + day as u64 / 7 + rng.below(pool)) % 250 };
    e.source_ip = Some(format!("10.{}.{}.{}", net / 100, net % 100, 1 + host));
    e.user_agent = Some("client/2.1".to_owned());
    e.method = Some(r.0.to_owned());
    e.path = Some(r.1.replace("{id}", &rng.below(100_000).to_string()));
    e.route = Some(format!("{} {}", r.0, r.1));
    e.resource = Some(r.2.to_owned());
    e.action = Some(r.3.to_owned());
    if r.2 == "patients" {
        e.sensitivity = vec!["phi".to_owned()];
    }
    e.status = Some(reason.http_status());
    e.latency_us = Some(300 + rng.below(5000));
    e.bytes_out = Some(200 + rng.below(4000));
    e.request_id = Some(format!("req_{i:016}"));
    e.node = Some("bench".to_owned());
    e.required_scope = Some(format!("{}:{}", r.2, r.3));
    e
}

/// Whether the generator draws a fresh host for every request (see `generate`).
fn per_request_hosts() -> bool {
    static PER_REQUEST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PER_REQUEST.get_or_init(|| std::env::var("INVESTIGATE_HOSTS").is_ok_and(|v| v == "per-request"))
}

fn stats(name: &str, mut lat: Vec<Duration>) -> (Duration, Duration) {
    lat.sort();
    let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
    println!("{name:<44} p50 {:>9.3} ms   p99 {:>9.3} ms", p50.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3);
    (p50, p99)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map(|s| s.parse()).transpose().context("events")?.unwrap_or(10_000_000);
    let dir = match args.get(2) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::current_dir()?.join("investigate-bench"),
    };
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("events.db");
    let now: Timestamp = "2026-11-27T00:00:00Z".parse()?;
    let start = now.checked_sub(SignedDuration::from_hours(24 * 30))?;
    // Opening applies pending migrations and catches the rollup up with stored events.
    let t = Instant::now();
    let store = SqliteStore::open(&path)?;
    println!("open: {:.1}s", t.elapsed().as_secs_f64());
    let existing = store.event_count()?;
    if existing < n {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ existing);
        let t0 = Instant::now();
        let mut i = existing;
        // Events per append; INVESTIGATE_BATCH changes it. By default every batch goes into one
        // transaction, as `tokentrail ingest --data-dir` loads (Store::append_all);
        // INVESTIGATE_LOAD=appends commits each batch as its own append instead.
        let batch_size: u64 = std::env::var("INVESTIGATE_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
        let bulk = std::env::var("INVESTIGATE_LOAD").map_or(true, |v| v != "appends");
        let mut next_batch = |i: &mut u64| -> Option<Vec<Event>> {
            if *i >= n {
                return None;
            }
            let k = batch_size.min(n - *i);
            let batch: Vec<Event> = (*i..*i + k).map(|j| generate(j, &mut rng, start, 30 * 86_400, n)).collect();
            if (*i + k) / 1_000_000 > *i / 1_000_000 {
                println!(
                    "  generated {} ({:.0}/s)",
                    *i + k - existing,
                    (*i + k - existing) as f64 / t0.elapsed().as_secs_f64()
                );
            }
            *i += k;
            Some(batch)
        };
        if bulk {
            // Events are generated on a thread of their own, as `tokentrail ingest` parses its
            // files on one, and handed over a batch at a time.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(2);
            std::thread::scope(|s| -> anyhow::Result<()> {
                s.spawn(move || {
                    while let Some(b) = next_batch(&mut i) {
                        if tx.send(b).is_err() {
                            return;
                        }
                    }
                });
                store.append_all(n - existing, &mut |_| match rx.recv() {
                    Ok(b) => store::Batch::Events(b),
                    Err(_) => store::Batch::End,
                })?;
                Ok(())
            })?;
        } else {
            while let Some(mut batch) = next_batch(&mut i) {
                store.append(&mut batch)?;
            }
        }
        println!(
            "ingest ({}, batches of {batch_size}): {} events in {:.1}s = {:.0} events/s",
            if bulk { "one transaction" } else { "one append per batch" },
            n - existing,
            t0.elapsed().as_secs_f64(),
            (n - existing) as f64 / t0.elapsed().as_secs_f64()
        );
    } else {
        println!("reusing {existing} events in {}", path.display());
    }
    if std::env::var_os("INVESTIGATE_LOAD_ONLY").is_some() {
        return Ok(());
    }
    let size_mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
    println!("database: {size_mb:.0} MB for {n} events");
    let plain = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let since = now.checked_sub(SignedDuration::from_hours(24 * 30))?;
    let mut rng = Rng(42);

    println!("\n== first page (100 events, newest first, over 30 days) ==");
    let q = |f: &dyn Fn(&mut EventQuery)| {
        let mut q = EventQuery { since: Some(since), order: Order::Desc, limit: 100, ..Default::default() };
        f(&mut q);
        q
    };
    let mut run = |name: &str, make: &mut dyn FnMut(&mut Rng) -> Case| -> anyhow::Result<()> {
        let (mut ours, mut sql_lat) = (Vec::new(), Vec::new());
        for i in 0..200 {
            let (query, sql, args) = make(&mut rng);
            // Whichever runs first pays for the cold pages: alternate.
            for ours_now in [i % 2 == 0, i % 2 != 0] {
                if ours_now {
                    let t = Instant::now();
                    let page = store.list_events(&query)?;
                    ours.push(t.elapsed());
                    std::hint::black_box(page);
                } else {
                    let t = Instant::now();
                    let mut stmt = plain.prepare_cached(&sql)?;
                    let rows: Vec<i64> = stmt
                        .query_map(rusqlite::params_from_iter(args.clone()), |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    sql_lat.push(t.elapsed());
                    std::hint::black_box(rows);
                }
            }
        }
        let (p50, p99) = stats(&format!("{name} (tokentrail)"), ours);
        let (s50, s99) = stats(&format!("{name} (plain SQL)"), sql_lat);
        println!(
            "{:<44} p50 x{:.2}  p99 x{:.2}",
            "  ratio",
            p50.as_secs_f64() / s50.as_secs_f64().max(1e-9),
            p99.as_secs_f64() / s99.as_secs_f64().max(1e-9)
        );
        Ok(())
    };
    let since_us = since.as_microsecond();
    run("by token", &mut |rng| {
        let tok = format!("tok{:013}", rng.below(TOKENS));
        let sql = "SELECT e.seq FROM events e LEFT JOIN event_personal p ON p.seq = e.seq WHERE e.token_id = ?1 AND e.time_us >= ?2 ORDER BY e.seq DESC LIMIT 101".to_owned();
        (q(&|q| q.token_id = Some(tok.clone())), sql, vec![tok.clone().into(), since_us.into()])
    })?;
    run("by CIDR /24", &mut |rng| {
        let net = rng.below(200);
        let cidr = format!("10.{}.{}.0/24", net / 100, net % 100);
        let ip = |last: u8| -> Vec<u8> {
            std::net::Ipv4Addr::new(10, (net / 100) as u8, (net % 100) as u8, last).to_ipv6_mapped().octets().to_vec()
        };
        // The store's index of networks (an expression index over event_personal.ip_bin).
        let sql = "SELECT p.seq FROM event_personal p CROSS JOIN events e ON e.seq = p.seq \
            WHERE CASE WHEN substr(p.ip_bin, 1, 12) = x'00000000000000000000FFFF' THEN substr(p.ip_bin, 1, 15) ELSE substr(p.ip_bin, 1, 6) END = ?1 \
            AND p.ip_bin IS NOT NULL AND p.ip_bin BETWEEN ?2 AND ?3 AND e.time_us >= ?4 ORDER BY p.seq DESC LIMIT 101"
            .to_owned();
        (
            q(&|q| q.source_ip = Some(cidr.parse().unwrap_or_else(|_| "10.0.0.0/24".parse().expect("a network")))),
            sql,
            vec![ip(0)[..15].to_vec().into(), ip(0).into(), ip(255).into(), since_us.into()],
        )
    })?;
    run("by reason", &mut |rng| {
        let reasons =
            [Reason::InsufficientScope, Reason::UnknownToken, Reason::Expired, Reason::Revoked, Reason::RateLimited];
        let r = reasons[rng.below(reasons.len() as u64) as usize];
        let sql = "SELECT e.seq FROM events e LEFT JOIN event_personal p ON p.seq = e.seq WHERE e.reason = ?1 AND e.time_us >= ?2 ORDER BY e.seq DESC LIMIT 101".to_owned();
        (q(&|q| q.reason = Some(r)), sql, vec![r.as_str().to_owned().into(), since_us.into()])
    })?;

    println!("\n== stats group_by=token ==");
    let plain_stats = |window: &str| -> anyhow::Result<(Duration, i64)> {
        let t = Instant::now();
        let mut stmt = plain.prepare(&format!("SELECT COALESCE(e.token_id, e.token_fingerprint) k, COUNT(*) n, SUM(e.decision = 'allow'), SUM(e.decision = 'deny'), COUNT(DISTINCT p.source_ip), SUM(e.bytes_out) FROM events e LEFT JOIN event_personal p ON p.seq = e.seq WHERE 1 = 1 {window} GROUP BY k ORDER BY n DESC LIMIT 100"))?;
        let rows: Vec<i64> = stmt.query_map([], |r| r.get(1))?.collect::<Result<_, _>>()?;
        Ok((t.elapsed(), rows.first().copied().unwrap_or(0)))
    };
    // The whole log, then the last 7 days from a time that is not midnight (whole days from the
    // rollup, the two partial days from the events).
    let week = now.checked_sub(SignedDuration::from_hours(24 * 7 - 5))?;
    for (name, query, window) in [
        ("over every event", EventQuery::default(), String::new()),
        (
            "over the last 7 days (partial days at both ends)",
            EventQuery { since: Some(week), ..Default::default() },
            format!("AND e.time_us >= {}", week.as_microsecond()),
        ),
    ] {
        let t = Instant::now();
        let rows = store.stats(&query, GroupBy::Token, 100)?;
        let ours = t.elapsed();
        let (sql, top) = plain_stats(&window)?;
        anyhow::ensure!(rows.first().map(|r| r.count as i64) == Some(top), "stats disagree with plain SQL");
        println!(
            "stats by token {name}: {:.2}s (plain SQL over the events {:.2}s, ratio x{:.3}); {} groups, top {} events",
            ours.as_secs_f64(),
            sql.as_secs_f64(),
            ours.as_secs_f64() / sql.as_secs_f64(),
            rows.len(),
            top
        );
    }
    let cells: i64 = plain.query_row("SELECT COUNT(*) FROM event_rollup", [], |r| r.get(0))?;
    let dims: i64 = plain.query_row("SELECT COUNT(*) FROM rollup_dims", [], |r| r.get(0))?;
    println!("daily rollup: {cells} (combination, day) cells of {dims} combinations for {n} events");

    println!("\n== explain ==");
    let signer = ledger::note::Signer::from_seed("tokentrail/bench", &[7; 32])?;
    let shared: Arc<dyn Store> = Arc::new(SqliteStore::open(&path)?);
    let engine = engine::Engine::with_store(
        shared.clone(),
        token::Pepper::from_bytes([1; 32]),
        signer,
        engine::Settings::default(),
        Arc::new(engine::SystemClock),
    );
    let mut lat = Vec::new();
    for _ in 0..200 {
        let id = format!("ev_{:018}", rng.below(n));
        let t = Instant::now();
        let x = engine.explain(&id)?;
        lat.push(t.elapsed());
        std::hint::black_box(x);
    }
    stats("explain (event + fingerprint activity)", lat);

    println!("\n== inclusion proofs (event lookup + O(log n) node reads) ==");
    engine.checkpoint()?;
    for size in [n.min(1_000_000), n] {
        let mut lat = Vec::new();
        for _ in 0..2000 {
            let id = format!("ev_{:018}", rng.below(size));
            let t = Instant::now();
            let p = engine.inclusion_proof(&id, Some(size))?;
            lat.push(t.elapsed());
            std::hint::black_box(p);
        }
        stats(&format!("proof in a tree of {size}"), lat);
    }

    println!("\n== ingest of NDJSON (validation + parsing + append, as `tokentrail ingest` runs it) ==");
    let m = n.min(500_000);
    let mut ndjson = Vec::new();
    let mut grng = Rng(99);
    for i in 0..m {
        let e = generate(i, &mut grng, start, 30 * 86_400, m);
        ndjson.extend_from_slice(proto::to_json(&server::views::event_view(&e)).as_bytes());
        ndjson.push(b'\n');
    }
    let target = SqliteStore::open(&dir.join("ingest.db"))?;
    let t = Instant::now();
    let mut next = 0u64;
    let mut new_id = || {
        next += 1;
        Ok(format!("ev_new{next:016}"))
    };
    let result = server::ingest::ingest_exclusive(
        vec![std::io::Cursor::new(&ndjson)],
        m,
        &target,
        Default::default(),
        &mut new_id,
        &mut |_| {},
    )
    .map_err(|(_, e)| anyhow::anyhow!("{e:?}"))?;
    let all = t.elapsed();
    println!(
        "ingest: {} lines ({:.0} MB) in {:.1}s = {:.0} events/s (one pass, one transaction, parsing on a second thread)",
        result.ingested,
        ndjson.len() as f64 / 1e6,
        all.as_secs_f64(),
        result.ingested as f64 / all.as_secs_f64(),
    );
    drop(target);
    for f in ["ingest.db", "ingest.db-wal", "ingest.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }

    println!("\n== export (NDJSON, pages of 1000, oldest first) ==");
    let t = Instant::now();
    let mut after = None;
    let mut count = 0u64;
    let mut bytes = 0usize;
    let limit = n.min(2_000_000);
    while count < limit {
        let page = shared.list_events(&EventQuery { after, order: Order::Asc, limit: 1000, ..Default::default() })?;
        count += page.items.len() as u64;
        for e in page.items {
            bytes += proto::to_json(&server::views::into_event_view(e)).len() + 1;
        }
        match page.next {
            Some(x) => after = Some(x),
            None => break,
        }
    }
    println!(
        "export: {count} events, {:.0} MB in {:.1}s = {:.0} events/s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        count as f64 / t.elapsed().as_secs_f64()
    );
    Ok(())
}
