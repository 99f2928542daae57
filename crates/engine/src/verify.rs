//! Offline verification of a ledger: recompute every leaf from the stored event, rebuild the
//! tree, and check it against every signed checkpoint, stored or kept elsewhere.
//!
//! What each check catches:
//! - a changed event: its recomputed leaf hash differs from the stored one, or (when the stored
//!   hashes were rewritten too) from the stored tree nodes or the signed roots;
//! - a changed personal value: it no longer matches its commitment;
//! - a deleted, inserted or reordered event: positions are part of the leaf, so the first moved
//!   event no longer matches, and a gap in positions is named;
//! - truncation and rollback: a checkpoint (stored, or saved elsewhere and given with
//!   `--checkpoint`) covers more events than the log holds, or a different root for a size;
//! - a replaced signing key: checkpoints no longer verify under the trusted key.
//!
//! It reads through the `Store` trait only and never writes.

use ledger::checkpoint::Checkpoint;
use ledger::leaf::{self, Personal};
use ledger::merkle::{self, Frontier, Hash, NodeId};
use ledger::note::{self, Verifier};
use store::Store;

/// A checkpoint to check the log against.
#[derive(Clone, Debug)]
pub struct ExternalCheckpoint {
    /// Where it came from (a file name), for messages.
    pub label: String,
    /// The signed note.
    pub note: String,
}

/// What an intact log looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Events checked.
    pub events: u64,
    /// Events whose personal values were erased (verified through their commitments).
    pub erased: u64,
    /// Stored checkpoints checked.
    pub checkpoints: u64,
    /// External checkpoints checked.
    pub external: u64,
    /// The root of the whole log.
    pub root: Hash,
}

/// The first thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The first bad position, when one can be named.
    pub position: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some(p) => write!(f, "position {p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn fail<T>(position: Option<u64>, message: String) -> Result<T, Failure> {
    Err(Failure { position, message })
}

fn hex(h: &Hash) -> String {
    use std::fmt::Write;
    h.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Opens a signed checkpoint with the trusted keys; its origin must be the signing key's name.
fn open(note_text: &str, trusted: &[Verifier]) -> Result<Checkpoint, String> {
    let opened = note::open(note_text, trusted).map_err(|e| format!("signature check failed: {e}"))?;
    let cp = Checkpoint::parse(opened.text).map_err(|e| format!("not a checkpoint: {e}"))?;
    if !opened.verified_by.contains(&cp.origin()) {
        return Err(format!("checkpoint of log {:?} is not signed by that log's key", cp.origin()));
    }
    Ok(cp)
}

/// Verifies the whole log in `store` against `trusted` keys and `external` checkpoints.
/// `progress(done, total)` is called now and then.
pub fn verify(
    store: &dyn Store,
    trusted: &[Verifier],
    external: &[ExternalCheckpoint],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Verified, Failure> {
    let store_err = |e: store::StoreError| Failure { position: None, message: format!("cannot read the store: {e}") };
    let n = store.event_count().map_err(store_err)?;

    // Every checkpoint, stored or external, becomes an expected (size, root) to meet on the way.
    let mut expected: Vec<(u64, Hash, String)> = Vec::new();
    let stored = store.checkpoints().map_err(store_err)?;
    for cp in &stored {
        let label = format!("the stored checkpoint for size {}", cp.size);
        let opened = match open(&cp.note, trusted) {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    None,
                    format!("{label} does not verify with the trusted key ({e}); was the signing key replaced?"),
                );
            }
        };
        if opened.size() != cp.size || *opened.root() != cp.root {
            return fail(
                None,
                format!("{label}: the signed note says size {} root {}", opened.size(), hex(opened.root())),
            );
        }
        expected.push((cp.size, cp.root, label));
    }
    for ext in external {
        let opened = match open(&ext.note, trusted) {
            Ok(c) => c,
            Err(e) => return fail(None, format!("checkpoint {} does not verify with the trusted key: {e}", ext.label)),
        };
        expected.push((opened.size(), *opened.root(), format!("checkpoint {}", ext.label)));
    }
    expected.sort_by_key(|(size, _, _)| *size);
    if let Some((size, _, label)) = expected.iter().rev().find(|(size, _, _)| *size > n) {
        return fail(
            Some(n),
            format!(
                "{label} covers {size} events but the log holds {n}: events {n}..{} were removed (truncation or rollback)",
                size - 1
            ),
        );
    }

    let mut frontier = Frontier::new();
    let mut next_expected = expected.iter().peekable();
    while next_expected.peek().is_some_and(|(size, _, _)| *size == 0) {
        next_expected.next();
    }
    let mut erased = 0u64;
    let mut nodes = Vec::new();
    const BATCH: u32 = 8192;
    while frontier.size() < n {
        let batch = store.leaves(frontier.size(), BATCH).map_err(store_err)?;
        if batch.is_empty() {
            return fail(Some(frontier.size()), format!("the log should hold {n} events but ends here"));
        }
        let mut produced: Vec<(NodeId, Hash)> = Vec::new();
        for l in batch {
            let pos = frontier.size();
            let seq = l.event.seq.unwrap_or(u64::MAX);
            if seq != pos {
                return fail(
                    Some(pos),
                    format!("the event at this position is missing (the next stored one is at {seq})"),
                );
            }
            let recomputed = merkle::leaf_hash(&leaf::encode(&l.event, pos, &l.commitments));
            if recomputed != l.leaf_hash {
                return fail(
                    Some(pos),
                    format!("event {} was changed, moved or inserted: its leaf hash does not match", l.event.id),
                );
            }
            match l.salt {
                Some(salt) if Personal::of(&l.event).commitments(&salt) != l.commitments => {
                    return fail(Some(pos), format!("the personal values of event {} were changed", l.event.id));
                }
                Some(_) => {}
                None => erased += 1,
            }
            nodes.clear();
            if frontier.append(recomputed, &mut nodes).is_err() {
                return fail(Some(pos), "the tree is full".to_owned());
            }
            produced.extend(nodes.iter().filter(|s| s.id.level > 0).map(|s| (s.id, s.hash)));
            while let Some((size, root, label)) = next_expected.peek() {
                if *size != frontier.size() {
                    break;
                }
                if frontier.root() != *root {
                    return fail(
                        Some(pos),
                        format!(
                            "{label} does not match the log: some of the first {size} events were changed, removed or reordered (the stored hashes were rewritten to hide it)"
                        ),
                    );
                }
                next_expected.next();
            }
        }
        // The stored tree nodes must be the recomputed ones: proofs are served from them.
        let ids: Vec<NodeId> = produced.iter().map(|(id, _)| *id).collect();
        let stored_nodes = store.tree_nodes(&ids).map_err(|e| Failure {
            position: ids.first().map(|id| id.index << id.level),
            message: format!("stored tree nodes are missing: {e}"),
        })?;
        for (id, hash) in &produced {
            if stored_nodes.get(id) != Some(hash) {
                let first = id.index << id.level;
                let last = first + (1u64 << id.level) - 1;
                return fail(
                    Some(first),
                    format!(
                        "the stored tree node over positions {first}..={last} does not match the events: one of them was changed"
                    ),
                );
            }
        }
        progress(frontier.size(), n);
    }
    let root = if n == 0 { merkle::EMPTY_ROOT } else { frontier.root() };
    Ok(Verified { events: n, erased, checkpoints: stored.len() as u64, external: external.len() as u64, root })
}
