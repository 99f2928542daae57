//! Group commit: many callers append events, one thread writes them in batches (one transaction
//! and one fsync per batch), and each caller learns its event's position once it is durable.
//!
//! Modes:
//! - `durable` (default): a caller is answered after the batch holding its event committed with
//!   `synchronous=FULL`; an acknowledged event survives a crash of the process or the machine.
//! - `buffered`: a caller is answered as soon as its event is queued (without a position). A
//!   process crash loses the queued events that were not yet written (at most the queue capacity,
//!   `ledger.queue_capacity`, typically a few milliseconds of traffic); the writer still commits
//!   each batch with `synchronous=FULL`. Nobody waits for a commit here, so the writer lingers
//!   [`BUFFERED_LINGER`] after the first event of a batch to gather more: on a fast disk it would
//!   otherwise commit nearly every event on its own.
//!
//! The queue is bounded: when it is full, callers wait (back-pressure) instead of growing memory.

use std::sync::Arc;
use std::thread::JoinHandle;

use ledger::event::Event;
use store::Store;
use tokio::sync::{mpsc, oneshot};

use crate::{EngineError, Result};

/// When a caller is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After the event is committed and synced.
    Durable,
    /// As soon as the event is queued.
    Buffered,
}

/// Largest number of events written in one transaction.
const MAX_BATCH: usize = 4096;

/// How long a buffered writer gathers events before committing a batch.
pub const BUFFERED_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

struct Job {
    events: Vec<Event>,
    done: Option<oneshot::Sender<Result<Vec<u64>>>>,
}

/// The group-commit writer.
pub struct Recorder {
    tx: Option<mpsc::Sender<Job>>,
    durability: Durability,
    thread: Option<JoinHandle<()>>,
}

/// A pending append; resolves to the events' positions (`None` in buffered mode).
pub struct Pending(Option<oneshot::Receiver<Result<Vec<u64>>>>);

impl Pending {
    /// Waits (async) until the events are durable.
    pub async fn wait(self) -> Result<Option<Vec<u64>>> {
        match self.0 {
            None => Ok(None),
            Some(rx) => rx.await.map_err(|_| EngineError::Unavailable("the ledger writer stopped".into()))?.map(Some),
        }
    }

    /// Waits (blocking) until the events are durable. Never call from an async task.
    pub fn wait_blocking(self) -> Result<Option<Vec<u64>>> {
        match self.0 {
            None => Ok(None),
            Some(rx) => {
                rx.blocking_recv().map_err(|_| EngineError::Unavailable("the ledger writer stopped".into()))?.map(Some)
            }
        }
    }
}

impl Recorder {
    /// Starts the writer thread over `store`.
    pub fn start(store: Arc<dyn Store>, durability: Durability, capacity: usize) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<Job>(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("tokentrail-ledger".into())
            .spawn(move || {
                let mut jobs: Vec<Job> = Vec::new();
                while let Some(first) = rx.blocking_recv() {
                    let mut count = first.events.len();
                    jobs.push(first);
                    if durability == Durability::Buffered && count < MAX_BATCH {
                        std::thread::sleep(BUFFERED_LINGER);
                    }
                    while count < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => {
                                count += job.events.len();
                                jobs.push(job);
                            }
                            Err(_) => break,
                        }
                    }
                    let mut batch: Vec<Event> = Vec::with_capacity(count);
                    let sizes: Vec<usize> = jobs.iter().map(|j| j.events.len()).collect();
                    for job in &mut jobs {
                        batch.append(&mut job.events);
                    }
                    let result = store.append(&mut batch);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, events = batch.len(), "the ledger could not write a batch");
                    }
                    let mut seqs = batch.iter().map(|e| e.seq.unwrap_or(u64::MAX));
                    for (job, n) in jobs.drain(..).zip(sizes) {
                        let answer = match &result {
                            Ok(()) => Ok(seqs.by_ref().take(n).collect()),
                            Err(e) => Err(EngineError::Unavailable(e.to_string())),
                        };
                        if let Some(done) = job.done {
                            let _ = done.send(answer);
                        }
                    }
                }
            })
            .ok();
        Recorder { tx: Some(tx), durability, thread }
    }

    /// The mode.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    fn job(&self, events: Vec<Event>) -> (Job, Pending) {
        match self.durability {
            Durability::Durable => {
                let (done, rx) = oneshot::channel();
                (Job { events, done: Some(done) }, Pending(Some(rx)))
            }
            Durability::Buffered => (Job { events, done: None }, Pending(None)),
        }
    }

    /// Queues events (async; waits while the queue is full).
    pub async fn submit(&self, events: Vec<Event>) -> Result<Pending> {
        let tx = self.tx.as_ref().ok_or_else(|| EngineError::Unavailable("the ledger writer stopped".into()))?;
        let (job, pending) = self.job(events);
        tx.send(job).await.map_err(|_| EngineError::Unavailable("the ledger writer stopped".into()))?;
        Ok(pending)
    }

    /// Queues events (blocking; waits while the queue is full). Never call from an async task.
    pub fn submit_blocking(&self, events: Vec<Event>) -> Result<Pending> {
        let tx = self.tx.as_ref().ok_or_else(|| EngineError::Unavailable("the ledger writer stopped".into()))?;
        let (job, pending) = self.job(events);
        tx.blocking_send(job).map_err(|_| EngineError::Unavailable("the ledger writer stopped".into()))?;
        Ok(pending)
    }

    /// Stops accepting events, writes everything queued, and waits for the writer to finish.
    pub fn close(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.close();
    }
}
