//! Online detection: the detectors follow the ledger, so they never slow a request and never
//! drop an event: when they fall behind they catch up from the ledger. Baselines are rebuilt
//! after a restart by replaying the recent ledger (detectors are deterministic, so the replay
//! reproduces the same state and the same finding ids, which the store merges).

use std::sync::Mutex;

use detect::{DetectConfig, Detection, Finding};
use jiff::SignedDuration;
use ledger::event::Kind;
use store::{EventQuery, FindingQuery, FindingRecord, Order};
use token::Reason;

use crate::{Engine, EngineError, Principal, RequestContext, Result};

/// The metadata key of the last event position the detectors processed.
const POSITION: &str = "detect_position";

/// The detectors' state inside the engine.
pub(crate) struct DetectionState {
    detection: Mutex<Option<(Detection, i64)>>,
    pub(crate) config: DetectConfig,
    pub(crate) replay_days: u32,
}

impl DetectionState {
    pub(crate) fn new(config: DetectConfig, replay_days: u32) -> DetectionState {
        DetectionState { detection: Mutex::new(None), config, replay_days }
    }
}

/// A finding as stored, from the detectors' finding.
/// A finding that is new, reopened or changed severity in a detection step.
#[derive(Clone, Debug)]
pub struct ChangedFinding {
    /// The finding as stored.
    pub finding: FindingRecord,
    /// `None` when it is new or reopened; otherwise its severity before (it changed).
    pub previous_severity: Option<String>,
}

pub fn record_of(f: &Finding) -> FindingRecord {
    FindingRecord {
        id: f.id.clone(),
        kind: f.kind.as_str().to_owned(),
        severity: f.severity.as_str().to_owned(),
        status: "open".to_owned(),
        token_id: f.token_id.clone(),
        source_ip: f.source_ip.clone(),
        first_seen: f.first_seen,
        last_seen: f.last_seen,
        summary: f.summary.clone(),
        evidence: f.evidence_event_ids.clone(),
        event_count: f.event_count,
        details: f.details.clone(),
        comment: None,
        status_changed_at: f.first_seen,
    }
}

impl Engine {
    /// Rebuilds baselines from the recent ledger (up to the last processed position) without
    /// storing findings again; returns how many events were replayed.
    fn detection_start(&self) -> Result<(Detection, i64)> {
        let position: i64 = self.store.meta_get(POSITION)?.and_then(|s| s.parse().ok()).unwrap_or(-1);
        let mut detection = Detection::new(&self.detection.config);
        if position < 0 {
            return Ok((detection, position));
        }
        let window = SignedDuration::from_hours(24 * i64::from(self.detection.replay_days));
        let since = self.now().checked_sub(window).ok();
        let first = self.store.list_events(&EventQuery { since, order: Order::Asc, limit: 1, ..Default::default() })?;
        let mut after = first.items.first().and_then(|e| e.seq).map_or(position, |s| s as i64 - 1);
        while after < position {
            let page = self.store.list_events(&EventQuery {
                after: Some(after),
                order: Order::Asc,
                limit: 5000,
                ..Default::default()
            })?;
            if page.items.is_empty() {
                break;
            }
            for e in &page.items {
                let seq = e.seq.map_or(after, |s| s as i64);
                if seq > position {
                    break;
                }
                detection.observe(e);
                after = seq;
            }
        }
        Ok((detection, position))
    }

    /// Runs the detectors over the events recorded since the last step (at most `max`), stores
    /// the findings, and returns the findings that are new or reopened (for alerting).
    pub fn detect_step(&self, max: u32) -> Result<Vec<ChangedFinding>> {
        let mut guard = self.detection.detection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(self.detection_start()?);
        }
        let Some((detection, position)) = guard.as_mut() else { return Ok(Vec::new()) };
        let page = self.store.list_events(&EventQuery {
            after: Some(*position),
            order: Order::Asc,
            limit: max.max(1),
            ..Default::default()
        })?;
        if page.items.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = detect::Collected::default();
        let mut last = *position;
        for e in &page.items {
            found.add(detection.observe(e));
            last = e.seq.map_or(last, |s| s as i64);
        }
        let records: Vec<FindingRecord> = found.finish().iter().map(record_of).collect();
        let changes = self.store.upsert_findings(&records)?;
        self.store.meta_set(POSITION, &last.to_string())?;
        *position = last;
        // Alerts carry the finding as stored (its status, comment and times), as the API shows it.
        let mut out = Vec::with_capacity(changes.len());
        for c in changes {
            let stored = match self.store.get_finding(&c.id)? {
                Some(f) => f,
                None => match records.iter().find(|r| r.id == c.id) {
                    Some(r) => r.clone(),
                    None => continue,
                },
            };
            out.push(ChangedFinding { finding: stored, previous_severity: c.previous_severity });
        }
        Ok(out)
    }

    /// Tracked keys per detector and their bound.
    pub fn detection_state(&self) -> Vec<(&'static str, usize, usize)> {
        let guard = self.detection.detection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().map(|(d, _)| d.state()).unwrap_or_default()
    }

    /// One finding.
    pub fn get_finding(&self, id: &str) -> Result<FindingRecord> {
        self.store.get_finding(id)?.ok_or_else(|| EngineError::NotFound(format!("finding {id}")))
    }

    /// Findings matching a query.
    pub fn list_findings(&self, q: &FindingQuery) -> Result<store::Page<FindingRecord>> {
        Ok(self.store.list_findings(q)?)
    }

    /// Acknowledges or resolves a finding with a comment (an audited admin action).
    pub fn set_finding_status(
        &self,
        by: &Principal,
        ctx: &RequestContext,
        id: &str,
        status: &str,
        comment: &str,
    ) -> Result<FindingRecord> {
        if comment.trim().is_empty() || comment.chars().count() > 1000 {
            return Err(EngineError::Invalid(vec![crate::FieldError::new("comment", "must be 1 to 1000 characters")]));
        }
        let old = self.get_finding(id)?;
        let mut e = self.new_event(Kind::Admin, "admin", Reason::Ok)?;
        Engine::fill_context(&mut e, ctx);
        e.token_id = Some(by.token_id.clone());
        e.owner = Some(by.owner.clone());
        e.operation = Some(format!("finding.{}", if status == "resolved" { "resolve" } else { "ack" }));
        e.target = Some(id.to_owned());
        e.required_scope = Some(token::Scope::tokentrail_admin().to_string());
        e.granted_scopes = by.scopes.iter().map(ToString::to_string).collect();
        e.status = Some(200);
        e.details.insert("status".into(), format!("{} -> {status}", old.status));
        e.details.insert("comment".into(), comment.to_owned());
        e.explanation = Some(format!("{status} finding {id} ({}): {comment}", old.kind));
        self.store.set_finding_status(id, status, comment, self.now(), &mut e)?;
        self.get_finding(id)
    }
}
