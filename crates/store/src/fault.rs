//! A store wrapper that makes writes fail while a trigger file exists: the injectable I/O failure
//! used to test that tokentrail neither stalls nor loses events when its ledger cannot write.
//! Only enabled by a hidden `serve` flag; reads always pass through.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use jiff::Timestamp;
use ledger::event::Event;
use ledger::merkle::{Hash, NodeId};
use token::TokenRecord;

use crate::{Erasure, EventQuery, Page, Result, Store, StoreError, StoredCheckpoint, StoredLeaf, TokenQuery};

/// Fails every write with [`StoreError::Unavailable`] while `trigger` exists.
pub struct FaultInjected<S> {
    inner: S,
    trigger: PathBuf,
}

impl<S: Store> FaultInjected<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, trigger: PathBuf) -> Self {
        FaultInjected { inner, trigger }
    }

    fn check(&self) -> Result<()> {
        if self.trigger.exists() {
            Err(StoreError::Unavailable(format!("injected write failure ({} exists)", self.trigger.display())))
        } else {
            Ok(())
        }
    }
}

impl<S: Store> Store for FaultInjected<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn ping(&self) -> Result<()> {
        self.inner.ping()
    }
    fn insert_token(&self, token: &TokenRecord, event: &mut Event) -> Result<()> {
        self.check()?;
        self.inner.insert_token(token, event)
    }
    fn update_token(&self, token: &TokenRecord, expected_revision: u64, event: &mut Event) -> Result<()> {
        self.check()?;
        self.inner.update_token(token, expected_revision, event)
    }
    fn get_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.inner.get_token(id)
    }
    fn list_tokens(&self, query: &TokenQuery) -> Result<Page<TokenRecord>> {
        self.inner.list_tokens(query)
    }
    fn count_tokens(&self, now: Timestamp) -> Result<BTreeMap<&'static str, u64>> {
        self.inner.count_tokens(now)
    }
    fn record_last_used(&self, uses: &[(String, Timestamp)]) -> Result<()> {
        self.check()?;
        self.inner.record_last_used(uses)
    }
    fn append(&self, events: &mut [Event]) -> Result<()> {
        self.check()?;
        self.inner.append(events)
    }
    fn append_all(&self, expected: u64, next: &mut dyn FnMut(&dyn crate::Load) -> crate::Batch) -> Result<Option<u64>> {
        self.check()?;
        self.inner.append_all(expected, next)
    }
    fn get_event(&self, id: &str) -> Result<Option<Event>> {
        self.inner.get_event(id)
    }
    fn list_events(&self, query: &EventQuery) -> Result<Page<Event>> {
        self.inner.list_events(query)
    }
    fn scope_usage(&self, since: Timestamp) -> Result<Vec<crate::ScopeUse>> {
        self.inner.scope_usage(since)
    }
    fn existing_ids(&self, ids: &[String]) -> Result<std::collections::HashSet<String>> {
        self.inner.existing_ids(ids)
    }
    fn stats(&self, query: &EventQuery, group_by: crate::GroupBy, limit: u32) -> Result<Vec<crate::StatRow>> {
        self.inner.stats(query, group_by, limit)
    }
    fn event_count(&self) -> Result<u64> {
        self.inner.event_count()
    }
    fn tree_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>> {
        self.inner.tree_nodes(ids)
    }
    fn leaves(&self, from: u64, limit: u32) -> Result<Vec<StoredLeaf>> {
        self.inner.leaves(from, limit)
    }
    fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<()> {
        self.check()?;
        self.inner.put_checkpoint(checkpoint)
    }
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        self.inner.latest_checkpoint()
    }
    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        self.inner.checkpoints()
    }
    fn erase(&self, erasure: &Erasure, event: &mut Event) -> Result<u64> {
        self.check()?;
        self.inner.erase(erasure, event)
    }
    fn upsert_findings(&self, findings: &[crate::FindingRecord]) -> Result<Vec<crate::FindingChange>> {
        self.check()?;
        self.inner.upsert_findings(findings)
    }
    fn get_finding(&self, id: &str) -> Result<Option<crate::FindingRecord>> {
        self.inner.get_finding(id)
    }
    fn list_findings(&self, query: &crate::FindingQuery) -> Result<Page<crate::FindingRecord>> {
        self.inner.list_findings(query)
    }
    fn set_finding_status(
        &self,
        id: &str,
        status: &str,
        comment: &str,
        at: Timestamp,
        event: &mut Event,
    ) -> Result<()> {
        self.check()?;
        self.inner.set_finding_status(id, status, comment, at, event)
    }
    fn meta_get(&self, key: &str) -> Result<Option<String>> {
        self.inner.meta_get(key)
    }
    fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        self.check()?;
        self.inner.meta_set(key, value)
    }
}
