//! The compliance report of a period: what an auditor needs, gathered from the ledger, the
//! token store and the findings, with an integrity statement checked against the signed log.
//! Rendering (HTML, JSON, CSV) is the server's job; this module only gathers.

use std::collections::BTreeMap;

use jiff::Timestamp;
use ledger::event::{Event, Kind};
use store::{EventQuery, FindingQuery, FindingRecord, GroupBy, Order, StatRow, StoredCheckpoint};
use token::TokenRecord;

use crate::verify::{Failure, Verified};
use crate::{Engine, EngineError, FieldError, Result};

/// Access to one sensitivity label by one token in the period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensitiveAccess {
    /// The token.
    pub token_id: String,
    /// Its owner then.
    pub owner: String,
    /// The label.
    pub label: String,
    /// Requests (allowed and denied).
    pub count: u64,
    /// Denied among them.
    pub denied: u64,
    /// Outside business hours among them.
    pub off_hours: u64,
    /// First access.
    pub first: Timestamp,
    /// Last access.
    pub last: Timestamp,
}

/// The integrity statement.
#[derive(Clone, Debug)]
pub struct Integrity {
    /// The log's name (checkpoint origin).
    pub origin: String,
    /// The verifier key of its checkpoints.
    pub verifier_key: String,
    /// The first signed checkpoint that covers every event of the period.
    pub checkpoint: Option<StoredCheckpoint>,
    /// Events in the log up to the end of the period.
    pub events_covered: u64,
    /// The result of verifying the whole log now.
    pub verification: std::result::Result<Verified, Failure>,
}

/// Everything a compliance report says.
#[derive(Clone, Debug)]
pub struct Compliance {
    /// Period start.
    pub from: Timestamp,
    /// Period end (exclusive).
    pub to: Timestamp,
    /// When the report was made.
    pub generated_at: Timestamp,
    /// Tokens that existed during the period.
    pub inventory: Vec<TokenRecord>,
    /// All access events of the period: count, allowed, denied, bytes.
    pub totals: StatRow,
    /// Access events per token.
    pub by_token: Vec<StatRow>,
    /// Per owner.
    pub by_owner: Vec<StatRow>,
    /// Per resource.
    pub by_resource: Vec<StatRow>,
    /// Denials per reason.
    pub denials_by_reason: Vec<StatRow>,
    /// Access events per day.
    pub per_day: Vec<StatRow>,
    /// Sensitive-data access by token and label.
    pub sensitive: Vec<SensitiveAccess>,
    /// Sensitive accesses outside business hours (the first 200).
    pub off_hours_events: Vec<Event>,
    /// Findings active in the period.
    pub findings: Vec<FindingRecord>,
    /// Admin changes in the period.
    pub admin_changes: Vec<Event>,
    /// Access-review confirmations in the period.
    pub reviews: Vec<Event>,
    /// Least-privilege status now.
    pub privilege: Vec<(TokenRecord, insight::TokenPrivilege)>,
    /// The integrity statement.
    pub integrity: Integrity,
}

fn outside_business_hours(t: Timestamp, bh: &detect::config::BusinessHours) -> bool {
    let dt = bh.tz.to_datetime(t);
    let day = usize::from(dt.weekday().to_monday_zero_offset().unsigned_abs());
    let hour = dt.hour();
    !bh.days[day] || hour < i8::try_from(bh.start_hour).unwrap_or(0) || hour >= i8::try_from(bh.end_hour).unwrap_or(24)
}

/// The most groups a report section lists (tokens, owners, resources, days: 27 years).
const MAX_GROUPS: u32 = 10_000;

impl Engine {
    /// Every event matching `q`, oldest first.
    fn all_events(&self, q: EventQuery) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list_events(&EventQuery { after, order: Order::Asc, limit: 1000, ..q.clone() })?;
            out.extend(page.items);
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// Gathers the compliance report of `[from, to)`.
    pub fn compliance(&self, from: Timestamp, to: Timestamp, privilege: &insight::Settings) -> Result<Compliance> {
        if from >= to {
            return Err(EngineError::Invalid(vec![FieldError::new("to", "must be after from")]));
        }
        let period = EventQuery { since: Some(from), until: Some(to), ..Default::default() };
        let access = EventQuery { kind: Some(Kind::Access), ..period.clone() };
        // Evidence is complete, not a top list: every group is kept (the limits only bound a
        // runaway period), and the totals are counted on their own, not summed from the days.
        let stats = |g: GroupBy, q: &EventQuery, n: u32| self.store.stats(q, g, n);
        let totals = stats(GroupBy::Decision, &access, 10)?.into_iter().fold(
            StatRow { key: "all".into(), count: 0, allowed: 0, denied: 0, distinct_ips: 0, bytes: 0 },
            |mut t, r| {
                t.count += r.count;
                t.allowed += r.allowed;
                t.denied += r.denied;
                t.bytes += r.bytes;
                t
            },
        );
        let by_token = stats(GroupBy::Token, &access, MAX_GROUPS)?;
        let by_owner = stats(GroupBy::Owner, &access, MAX_GROUPS)?;
        let by_resource = stats(GroupBy::Resource, &access, MAX_GROUPS)?;
        let denials_by_reason = stats(
            GroupBy::Reason,
            &EventQuery { decision: Some(ledger::event::Verdict::Deny), ..access.clone() },
            MAX_GROUPS,
        )?;
        let per_day = stats(GroupBy::Day, &access, MAX_GROUPS)?;

        // Sensitive access, with off-hours flagged by the configured business hours.
        let bh = &self.detection.config.business_hours;
        let mut sensitive: BTreeMap<(String, String), SensitiveAccess> = BTreeMap::new();
        let mut off_hours_events = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list_events(&EventQuery {
                sensitive_only: true,
                after,
                order: Order::Asc,
                limit: 1000,
                ..access.clone()
            })?;
            for e in &page.items {
                let token = e.token_id.clone().unwrap_or_else(|| "-".into());
                let off = outside_business_hours(e.time, bh);
                if off && off_hours_events.len() < 200 {
                    off_hours_events.push(e.clone());
                }
                for label in &e.sensitivity {
                    let s = sensitive.entry((token.clone(), label.clone())).or_insert_with(|| SensitiveAccess {
                        token_id: token.clone(),
                        owner: e.owner.clone().unwrap_or_else(|| "-".into()),
                        label: label.clone(),
                        count: 0,
                        denied: 0,
                        off_hours: 0,
                        first: e.time,
                        last: e.time,
                    });
                    s.count += 1;
                    s.denied += u64::from(e.decision == ledger::event::Verdict::Deny);
                    s.off_hours += u64::from(off);
                    s.last = e.time;
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }

        let mut findings = Vec::new();
        let mut fafter = None;
        loop {
            let page = self.store.list_findings(&FindingQuery {
                since: Some(from),
                after: fafter,
                limit: 1000,
                ..Default::default()
            })?;
            findings.extend(page.items.into_iter().filter(|f| f.first_seen < to));
            match page.next {
                Some(n) => fafter = Some(n),
                None => break,
            }
        }
        let admin_changes = self.all_events(EventQuery { kind: Some(Kind::Admin), ..period.clone() })?;
        let reviews = self.all_events(EventQuery { operation: Some("token.confirm".into()), ..period.clone() })?;
        let inventory: Vec<TokenRecord> = self
            .all_tokens()?
            .into_iter()
            .filter(|t| t.created_at < to && t.revoked_at.is_none_or(|r| r >= from))
            .collect();
        let privilege = self.least_privilege(privilege, None)?;

        // Integrity: the first checkpoint covering the period's last event, and a full verify.
        let last_in_period = self
            .store
            .list_events(&EventQuery { until: Some(to), order: Order::Desc, limit: 1, ..Default::default() })?
            .items
            .first()
            .and_then(|e| e.seq)
            .map_or(0, |s| s + 1);
        let checkpoint = self.store.checkpoints()?.into_iter().find(|c| c.size >= last_in_period);
        let checkpoint = match checkpoint {
            Some(c) => Some(c),
            None if last_in_period > 0 => self.checkpoint()?,
            None => None,
        };
        let verifier = self.signer.verifier();
        let verification = crate::verify::verify(self.store(), std::slice::from_ref(&verifier), &[], &mut |_, _| {});
        Ok(Compliance {
            from,
            to,
            generated_at: self.now(),
            inventory,
            by_token,
            by_owner,
            by_resource,
            denials_by_reason,
            totals,
            per_day,
            sensitive: sensitive.into_values().collect(),
            off_hours_events,
            findings,
            admin_changes,
            reviews,
            privilege,
            integrity: Integrity {
                origin: self.origin().to_owned(),
                verifier_key: verifier.to_string(),
                checkpoint,
                events_covered: last_in_period,
                verification,
            },
        })
    }
}
