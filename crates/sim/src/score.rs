//! Scoring: findings against the labels. Recall per detector, false positives per 1,000
//! token-days on normal traffic, and an attribution of every false positive to the kind of
//! traffic that caused it, so whoever tunes a detector sees exactly what it fired on.
//!
//! A finding *detects* an injection when its type is the injection's and either its evidence
//! holds one of the injection's events or it is about the same token (the same network, for
//! guessing) at an overlapping time. A finding of another type whose evidence holds injected
//! events, or that is about a victim during its attack, is *collateral*: a true alarm about the
//! incident, neither a detection of that injection nor a false positive. Every other finding
//! is a *false positive*; those that start during the warm-up (while every baseline is still
//! forming) are counted apart.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use detect::net::network;
use detect::{Finding, FindingType};

use crate::inject::Injection;
use crate::trace::Labels;

/// Slack around an injection's time range when matching by token and time, in microseconds.
const SLACK_US: i64 = 60_000_000;

/// What a finding turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    /// It reports these injections (indexes into the labels).
    Detected(Vec<usize>),
    /// It is about an injected incident, under another type.
    Collateral,
    /// A false positive that started during the warm-up.
    WarmUp,
    /// A false positive.
    FalsePositive,
}

/// One detector's numbers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypeScore {
    /// Injections of its type.
    pub injected: usize,
    /// Of those, detected.
    pub detected: usize,
    /// Its findings in all.
    pub findings: usize,
    /// Its false positives in the scored window.
    pub false_positives: usize,
    /// Its findings about injections of other types.
    pub collateral: usize,
    /// Its false positives during the warm-up.
    pub warmup: usize,
}

impl TypeScore {
    /// Detected over injected (1 when nothing was injected).
    pub fn recall(&self) -> f64 {
        if self.injected == 0 { 1.0 } else { self.detected as f64 / self.injected as f64 }
    }
}

/// A false positive with what is known about its token.
#[derive(Clone, Debug)]
pub struct FalsePositive {
    /// The finding.
    pub finding: Finding,
    /// Archetype and role of the token (`human/support`), or `-` for none.
    pub client: String,
    /// The token's zone.
    pub zone: String,
    /// Days of the token's history the detectors had seen (from its creation or the trace start).
    pub history_days: i64,
    /// A labelled legitimate surprise it overlaps, if any.
    pub benign: Option<String>,
    /// What in the traffic caused it, as far as the labels and the finding tell.
    pub cause: String,
}

/// The score of one run.
#[derive(Clone, Debug)]
pub struct Score {
    /// Per finding type, in [`FindingType::ALL`] order.
    pub per_type: Vec<(FindingType, TypeScore)>,
    /// Token-days in the scored window.
    pub token_days: u64,
    /// Every finding's class, in the order given.
    pub classes: Vec<Class>,
    /// Injections nothing detected.
    pub missed: Vec<Injection>,
    /// False positives in the scored window.
    pub false_positives: Vec<FalsePositive>,
}

impl Score {
    /// Injections in all.
    pub fn injected(&self) -> usize {
        self.per_type.iter().map(|(_, s)| s.injected).sum()
    }

    /// Injections detected.
    pub fn detected(&self) -> usize {
        self.per_type.iter().map(|(_, s)| s.detected).sum()
    }

    /// Detected over injected.
    pub fn recall(&self) -> f64 {
        if self.injected() == 0 { 1.0 } else { self.detected() as f64 / self.injected() as f64 }
    }

    /// False positives per 1,000 token-days, all detectors together.
    pub fn fp_rate(&self) -> f64 {
        per_1000(self.false_positives.len(), self.token_days)
    }

    /// The numbers of one type.
    pub fn of(&self, kind: FindingType) -> TypeScore {
        self.per_type.iter().find(|(k, _)| *k == kind).map(|(_, s)| s.clone()).unwrap_or_default()
    }
}

/// Count per 1,000 token-days.
pub fn per_1000(n: usize, token_days: u64) -> f64 {
    if token_days == 0 { 0.0 } else { n as f64 * 1000.0 / token_days as f64 }
}

fn key_matches(f: &Finding, i: &Injection) -> bool {
    match &i.token_id {
        Some(t) => f.token_id.as_deref() == Some(t.as_str()),
        None => {
            f.details.get("network") == Some(&i.network)
                || f.source_ip.as_deref().and_then(|ip| network(ip, 24, 48)).as_deref() == Some(i.network.as_str())
        }
    }
}

fn overlaps(f: &Finding, start_us: i64, end_us: i64) -> bool {
    f.first_seen.as_microsecond() <= end_us + SLACK_US && f.last_seen.as_microsecond() >= start_us - SLACK_US
}

/// Scores findings against labels.
pub fn score(labels: &Labels, findings: &[Finding]) -> Score {
    let ids: Vec<HashSet<&str>> =
        labels.injections.iter().map(|i| i.event_ids.iter().map(String::as_str).collect()).collect();
    let mut per: BTreeMap<FindingType, TypeScore> =
        FindingType::ALL.iter().map(|k| (*k, TypeScore::default())).collect();
    for i in &labels.injections {
        per.entry(i.kind).or_default().injected += 1;
    }
    let mut detected = vec![false; labels.injections.len()];
    let mut classes = Vec::with_capacity(findings.len());
    let mut false_positives = Vec::new();
    for f in findings {
        let s = per.entry(f.kind).or_default();
        s.findings += 1;
        let evidence_in = |k: usize| f.evidence_event_ids.iter().any(|e| ids[k].contains(e.as_str()));
        let about = |k: usize, i: &Injection| key_matches(f, i) && overlaps(f, i.start_us, i.end_us) || evidence_in(k);
        let hits: Vec<usize> = labels
            .injections
            .iter()
            .enumerate()
            .filter(|(k, i)| i.kind == f.kind && about(*k, i))
            .map(|(k, _)| k)
            .collect();
        let class = if !hits.is_empty() {
            for k in &hits {
                detected[*k] = true;
            }
            Class::Detected(hits)
        } else if labels.injections.iter().enumerate().any(|(k, i)| about(k, i)) {
            s.collateral += 1;
            Class::Collateral
        } else if f.first_seen.as_second() < labels.warmup_end_s {
            s.warmup += 1;
            Class::WarmUp
        } else {
            s.false_positives += 1;
            false_positives.push(attribute(labels, f));
            Class::FalsePositive
        };
        classes.push(class);
    }
    for (k, i) in labels.injections.iter().enumerate() {
        if detected[k] {
            per.entry(i.kind).or_default().detected += 1;
        }
    }
    Score {
        per_type: per.into_iter().collect(),
        token_days: labels.token_days,
        classes,
        missed: labels.injections.iter().zip(&detected).filter(|(_, d)| !**d).map(|(i, _)| i.clone()).collect(),
        false_positives,
    }
}

fn attribute(labels: &Labels, f: &Finding) -> FalsePositive {
    let profile = f.token_id.as_deref().and_then(|t| labels.profile(t));
    let (client, zone, history_days) = match profile {
        Some(p) => {
            let seen_from = p.created_s.max(labels.start_s);
            (format!("{}/{}", p.archetype, p.role), p.zone.clone(), (f.first_seen.as_second() - seen_from) / 86_400)
        }
        None => ("-".to_owned(), "-".to_owned(), 0),
    };
    let benign = labels
        .benign
        .iter()
        .find(|b| f.token_id.as_deref() == Some(b.token_id.as_str()) && overlaps(f, b.start_us, b.end_us))
        .map(|b| b.kind.clone());
    let cause = match (&benign, f.kind) {
        (Some(b), _) => b.clone(),
        _ if profile.is_some() && history_days < 7 => "token with < 7 days of history".to_owned(),
        (_, FindingType::OffHours) if f.details.get("baseline").is_some_and(|b| b == "business_hours") => {
            "business-hours fallback".to_owned()
        }
        (_, FindingType::OffHours) if f.details.get("day").is_some_and(|d| d == "Saturday" || d == "Sunday") => {
            "weekend (UTC)".to_owned()
        }
        (_, FindingType::OffHours) => "weekday or hour outside the learned profile".to_owned(),
        _ => String::new(),
    };
    FalsePositive { finding: f.clone(), client, zone, history_days, benign, cause }
}

/// The score as a table and lists a person reads: per detector, then the false positives by
/// kind of client, then each false positive (up to `max_listed`) and each missed injection.
pub fn render(labels: &Labels, s: &Score, max_listed: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "trace: seed {}, {} tokens, {} weeks ({} days of warm-up), {} events; {} token-days scored ({} in all)",
        labels.seed,
        labels.tokens,
        labels.weeks,
        (labels.warmup_end_s - labels.start_s) / 86_400,
        labels.events,
        labels.token_days,
        labels.token_days_all
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<24} {:>8} {:>8} {:>7} {:>8} {:>5} {:>11} {:>10} {:>7}",
        "detector", "injected", "detected", "recall", "findings", "FP", "FP/1k t-d", "collateral", "warm-up"
    );
    for (k, t) in &s.per_type {
        let _ = writeln!(
            o,
            "{:<24} {:>8} {:>8} {:>6.0}% {:>8} {:>5} {:>11.2} {:>10} {:>7}",
            k.as_str(),
            t.injected,
            t.detected,
            100.0 * t.recall(),
            t.findings,
            t.false_positives,
            per_1000(t.false_positives, s.token_days),
            t.collateral,
            t.warmup
        );
    }
    let sum = |f: fn(&TypeScore) -> usize| s.per_type.iter().map(|(_, t)| f(t)).sum::<usize>();
    let _ = writeln!(
        o,
        "{:<24} {:>8} {:>8} {:>6.1}% {:>8} {:>5} {:>11.2} {:>10} {:>7}",
        "all",
        s.injected(),
        s.detected(),
        100.0 * s.recall(),
        sum(|t| t.findings),
        s.false_positives.len(),
        s.fp_rate(),
        sum(|t| t.collateral),
        sum(|t| t.warmup)
    );
    if !labels.skipped.is_empty() {
        let _ = writeln!(o, "\nnot injected: {}", labels.skipped.join("; "));
    }
    if !s.false_positives.is_empty() {
        let mut by: BTreeMap<(String, String), usize> = BTreeMap::new();
        for fp in &s.false_positives {
            let cause = &fp.cause;
            let client = if cause.is_empty() { fp.client.clone() } else { format!("{} ({cause})", fp.client) };
            *by.entry((fp.finding.kind.as_str().to_owned(), client)).or_default() += 1;
        }
        let _ = writeln!(o, "\nfalse positives by detector and client:");
        for ((kind, client), n) in &by {
            let _ = writeln!(o, "  {kind:<24} {n:>5}  {client}");
        }
        let _ = writeln!(o, "\nfalse positives (first {}):", max_listed.min(s.false_positives.len()));
        for fp in s.false_positives.iter().take(max_listed) {
            let _ = writeln!(
                o,
                "  {} {} [{} {}, {} days of history{}] {}",
                fp.finding.kind.as_str(),
                ledger::event::format_time(fp.finding.first_seen),
                fp.client,
                fp.zone,
                fp.history_days,
                fp.benign.as_deref().map(|b| format!(", {b}")).unwrap_or_default(),
                fp.finding.summary
            );
        }
    }
    if !s.missed.is_empty() {
        let _ = writeln!(o, "\nmissed injections:");
        for i in &s.missed {
            let _ = writeln!(
                o,
                "  {} {} token {} from {} at {} ({} events): {}",
                i.id,
                i.kind.as_str(),
                i.token_id.as_deref().unwrap_or("-"),
                i.source_ip,
                ledger::event::format_time(jiff::Timestamp::from_microsecond(i.start_us).unwrap_or_default()),
                i.event_ids.len(),
                i.description
            );
        }
    }
    o
}
