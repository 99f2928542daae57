//! Ledger use cases: signed checkpoints, inclusion and consistency proofs, leaves, erasure of
//! personal values, and the verifier key.
//!
//! Proofs are computed from the stored hashes (O(log n) reads), never by rebuilding the tree.
//! A checkpoint is signed only for a size and root the store has accepted, and the store refuses
//! a second root for a size, so the log never signs two different roots for one size.

use ledger::checkpoint::sign_checkpoint;
use ledger::event::Kind;
use ledger::merkle::{self, Hash};
use store::{Erasure, StoredCheckpoint};
use token::Reason;

use crate::{Engine, EngineError, Principal, RequestContext, Result};

/// An inclusion proof for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// The event's position.
    pub index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The event's leaf hash.
    pub leaf_hash: Hash,
    /// The audit path.
    pub hashes: Vec<Hash>,
}

impl Engine {
    /// The log's name, also the checkpoints' origin line.
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The verifier key text (`name+keyid+base64`), for `tokentrail audit key`.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier().to_string()
    }

    /// The root of the stored tree at `size`.
    fn stored_root(&self, size: u64) -> Result<Hash> {
        let nodes = self.store.tree_nodes(&merkle::nodes_for_root(size))?;
        merkle::root(size, &nodes).map_err(|e| EngineError::Internal(format!("tree root: {e}")))
    }

    /// Signs a checkpoint of the current tree if it grew since the last one; returns the latest
    /// checkpoint either way (`None` only for an empty log).
    pub fn checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let size = self.store.event_count()?;
        let latest = self.store.latest_checkpoint()?;
        if size == 0 || latest.as_ref().is_some_and(|c| c.size >= size) {
            return Ok(latest);
        }
        let root = self.stored_root(size)?;
        let note = sign_checkpoint(self.origin(), size, &root, &self.signer)
            .map_err(|e| EngineError::Internal(format!("signing a checkpoint: {e}")))?;
        let cp = StoredCheckpoint { size, root, note, created_at: self.now() };
        self.store.put_checkpoint(&cp)?;
        Ok(Some(cp))
    }

    /// The latest stored checkpoint, signing one first if none exists yet.
    pub fn latest_checkpoint(&self) -> Result<StoredCheckpoint> {
        match self.store.latest_checkpoint()? {
            Some(cp) => Ok(cp),
            None => self.checkpoint()?.ok_or_else(|| EngineError::NotFound("checkpoint (the log is empty)".into())),
        }
    }

    /// The canonical leaf bytes of an event and its position.
    pub fn leaf(&self, event_id: &str) -> Result<(u64, Vec<u8>)> {
        let event = self.get_event(event_id)?;
        let index = event.seq.ok_or_else(|| EngineError::Internal("stored event without position".into()))?;
        let stored =
            self.store.leaves(index, 1)?.pop().ok_or_else(|| EngineError::NotFound(format!("event {event_id}")))?;
        Ok((index, ledger::leaf::encode(&stored.event, index, &stored.commitments)))
    }

    /// An inclusion proof of an event in the tree of `size` (default: the latest checkpoint,
    /// signing a new one first when the event is newer than it).
    pub fn inclusion_proof(&self, event_id: &str, size: Option<u64>) -> Result<InclusionProof> {
        let event = self.get_event(event_id)?;
        let index = event.seq.ok_or_else(|| EngineError::Internal("stored event without position".into()))?;
        let tree_size = match size {
            Some(s) => {
                let n = self.store.event_count()?;
                if s <= index || s > n {
                    return Err(EngineError::Invalid(vec![crate::FieldError::new(
                        "size",
                        format!("must be greater than the event's position {index} and at most the log size {n}"),
                    )]));
                }
                s
            }
            None => {
                let mut cp = self.latest_checkpoint()?;
                if cp.size <= index {
                    cp = self.checkpoint()?.ok_or_else(|| EngineError::Internal("no checkpoint".into()))?;
                }
                cp.size
            }
        };
        let ids = merkle::nodes_for_inclusion(index, tree_size).map_err(|e| EngineError::Internal(e.to_string()))?;
        let mut nodes = self.store.tree_nodes(&ids)?;
        let leaf_id = merkle::NodeId::new(0, index);
        let leaf_hash = match nodes.get(&leaf_id) {
            Some(h) => *h,
            None => *self.store.tree_nodes(&[leaf_id])?.entry(leaf_id).or_default(),
        };
        nodes.insert(leaf_id, leaf_hash);
        let hashes =
            merkle::inclusion_proof(index, tree_size, &nodes).map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok(InclusionProof { index, tree_size, leaf_hash, hashes })
    }

    /// A consistency proof between two tree sizes.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        let n = self.store.event_count()?;
        if from == 0 || from > to || to > n {
            return Err(EngineError::Invalid(vec![crate::FieldError::new(
                "from",
                format!("need 0 < from <= to <= {n} (the log size)"),
            )]));
        }
        let ids = merkle::nodes_for_consistency(from, to).map_err(|e| EngineError::Internal(e.to_string()))?;
        let nodes = self.store.tree_nodes(&ids)?;
        merkle::consistency_proof(from, to, &nodes).map_err(|e| EngineError::Internal(e.to_string()))
    }

    /// Erases the personal values of every event of an owner or from an address (GDPR art. 17).
    /// The events stay in the log and it still verifies; the erasure itself is an admin event.
    pub fn erase(&self, by: &Principal, ctx: &RequestContext, erasure: &Erasure) -> Result<u64> {
        let (field, value) = match erasure {
            Erasure::Owner(o) => ("owner", o),
            Erasure::SourceIp(ip) => ("source_ip", ip),
        };
        if value.trim().is_empty() {
            return Err(EngineError::Invalid(vec![crate::FieldError::new(field, "must not be empty")]));
        }
        let mut event = self.new_event(Kind::Admin, "admin", Reason::Ok)?;
        Engine::fill_context(&mut event, ctx);
        event.token_id = Some(by.token_id.clone());
        event.owner = Some(by.owner.clone());
        event.operation = Some("audit.erase".to_owned());
        event.required_scope = Some(token::Scope::tokentrail_admin().to_string());
        event.granted_scopes = by.scopes.iter().map(ToString::to_string).collect();
        event.status = Some(200);
        // The erased value itself is not recorded: the request was to forget it.
        event.details.insert("erased_field".to_owned(), field.to_owned());
        event.explanation = Some(format!("erased the personal values of the events of one {field}"));
        let n = self.store.erase(erasure, &mut event)?;
        // Token owners were renamed: cached records must not put the old name into new events.
        self.access.invalidate_all();
        Ok(n)
    }
}
