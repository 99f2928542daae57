//! Recording decisions without stalling and without losing any: the ledger first, with a bounded
//! wait; when the ledger cannot write (disk full, I/O error, timeout), an append-only spool file
//! in the data directory (`spool.ndjson`, synced per write) that is replayed into the ledger, in
//! order, as soon as writing works again.
//!
//! While the spool holds events, new events go to the spool too, so the ledger receives them in
//! the order they were decided. Replay skips events the ledger already holds (a write that timed
//! out may still have landed), so nothing is recorded twice.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::Engine;
use ledger::event::Event;

use crate::views;

/// Where an event went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded in the ledger (durable, or queued in buffered mode).
    Ledger,
    /// The ledger could not take it; it is in the spool.
    Spooled,
}

/// Neither the ledger nor the spool could take the event.
#[derive(Debug)]
pub struct Lost(pub String);

/// The recording path shared by the gateway, verify and authz.
pub struct Auditor {
    engine: Arc<Engine>,
    path: PathBuf,
    spool: Mutex<()>,
    spooling: AtomicBool,
    healthy: AtomicBool,
    timeout: Duration,
    /// Events written to the spool, ever.
    pub spooled_total: AtomicU64,
    /// Events replayed from the spool into the ledger, ever.
    pub replayed_total: AtomicU64,
    /// Requests answered 503 `audit_unavailable`.
    pub unavailable_total: AtomicU64,
    /// Events waiting in the spool now.
    pub pending: AtomicU64,
    /// Decisions recorded, by source and reason.
    decisions: Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
}

impl Auditor {
    /// An auditor spooling to `<data dir>/spool.ndjson`; a spool left by a previous run is
    /// replayed first.
    pub fn new(engine: Arc<Engine>, data_dir: &std::path::Path, timeout: Duration) -> Arc<Auditor> {
        let path = data_dir.join("spool.ndjson");
        let pending = count_lines(&path);
        Arc::new(Auditor {
            engine,
            path,
            spool: Mutex::new(()),
            spooling: AtomicBool::new(pending > 0),
            healthy: AtomicBool::new(pending == 0),
            timeout,
            spooled_total: AtomicU64::new(0),
            replayed_total: AtomicU64::new(0),
            unavailable_total: AtomicU64::new(0),
            pending: AtomicU64::new(pending),
            decisions: Mutex::new(std::collections::BTreeMap::new()),
        })
    }

    /// Whether the ledger is writing: false from the first failed write until the spool has been
    /// replayed. Routes with `on_audit_failure = "deny"` answer 503 while this is false.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// The Prometheus lines of the auditor: decisions by source and reason, spool and
    /// audit-unavailable counters.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str("# HELP tokentrail_decisions_total Access decisions recorded, by source and reason.\n");
        out.push_str("# TYPE tokentrail_decisions_total counter\n");
        for ((source, reason), n) in self.decisions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let _ = writeln!(out, "tokentrail_decisions_total{{source=\"{source}\",reason=\"{reason}\"}} {n}");
        }
        let counters = [
            (
                "tokentrail_audit_spooled_total",
                "Events written to the spool because the ledger could not take them.",
                &self.spooled_total,
            ),
            ("tokentrail_audit_replayed_total", "Spooled events replayed into the ledger.", &self.replayed_total),
            ("tokentrail_audit_unavailable_total", "Requests answered 503 audit_unavailable.", &self.unavailable_total),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP tokentrail_audit_spool_pending Events waiting in the spool.\n# TYPE tokentrail_audit_spool_pending gauge\ntokentrail_audit_spool_pending {}",
            self.pending.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tokentrail_audit_healthy Whether the ledger is writing (1) or events are being spooled (0).\n# TYPE tokentrail_audit_healthy gauge\ntokentrail_audit_healthy {}",
            u8::from(self.healthy())
        );
    }

    /// Records an event: in the ledger within the timeout, else in the spool.
    pub async fn record(&self, event: Event) -> Result<Recorded, Lost> {
        if event.kind == ledger::event::Kind::Access {
            let mut d = self.decisions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *d.entry((event.source.clone(), event.reason.as_str())).or_default() += 1;
        }
        if !self.spooling.load(Ordering::Acquire) {
            let id = event.id.clone();
            match tokio::time::timeout(self.timeout, self.engine.record(vec![event.clone()])).await {
                Ok(Ok(_)) => return Ok(Recorded::Ledger),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, event = %id, "the ledger could not record an event; spooling")
                }
                Err(_) => tracing::error!(event = %id, "the ledger did not record an event in time; spooling"),
            }
            self.healthy.store(false, Ordering::Release);
        }
        self.spool(&event).map(|()| Recorded::Spooled)
    }

    /// Appends to the spool and syncs it.
    fn spool(&self, event: &Event) -> Result<(), Lost> {
        let _guard = self.spool.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut line = proto::to_json(&views::event_view(event));
        line.push('\n');
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()).and_then(|()| f.sync_data()));
        match written {
            Ok(()) => {
                self.spooling.store(true, Ordering::Release);
                self.spooled_total.fetch_add(1, Ordering::Relaxed);
                self.pending.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, event = %event.id, "the spool could not record an event either");
                Err(Lost(e.to_string()))
            }
        }
    }

    /// Tries to move the spool into the ledger, in order. Returns how many events were replayed;
    /// on failure the spool is left untouched for the next try.
    pub fn replay(&self) -> Result<u64, String> {
        if !self.spooling.load(Ordering::Acquire) {
            return Ok(0);
        }
        let _guard = self.spool.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.spooling.store(false, Ordering::Release);
                self.healthy.store(true, Ordering::Release);
                return Ok(0);
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut events = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                continue;
            }
            // A torn last line (a crash mid-write) was never acknowledged; skip it.
            let Ok(view) = serde_json::from_str::<proto::EventView>(&line) else {
                tracing::warn!(line = i + 1, "skipping an unreadable spool line (a write interrupted by a crash)");
                continue;
            };
            let mut e = views::event_from_view(&view).map_err(|m| format!("spool line {}: {m}", i + 1))?;
            e.seq = None;
            if self.engine.store().get_event(&e.id).map_err(|e| e.to_string())?.is_none() {
                events.push(e);
            }
        }
        let n = events.len() as u64;
        for chunk in events.chunks(1000) {
            let mut chunk = chunk.to_vec();
            self.engine.store().append(&mut chunk).map_err(|e| e.to_string())?;
        }
        std::fs::remove_file(&self.path).map_err(|e| e.to_string())?;
        self.pending.store(0, Ordering::Relaxed);
        self.replayed_total.fetch_add(n, Ordering::Relaxed);
        self.spooling.store(false, Ordering::Release);
        self.healthy.store(true, Ordering::Release);
        if n > 0 {
            tracing::info!(events = n, "replayed the spool into the ledger");
        }
        Ok(n)
    }
}

fn count_lines(path: &std::path::Path) -> u64 {
    File::open(path).map(|f| BufReader::new(f).lines().count() as u64).unwrap_or(0)
}
