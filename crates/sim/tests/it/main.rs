//! The evaluation in CI: a small trace (50 tokens, 3 weeks) through every detector, asserting
//! recall on every injected misuse kind, the false-positive levels the detectors reach (the goal,
//! or the level reached where it is not met yet),
//! determinism, and that the NDJSON and labels files round-trip.

#![allow(clippy::unwrap_used)] // Test code: a failure should fail the test loudly.

use std::collections::HashSet;
use std::sync::OnceLock;

use detect::{DetectConfig, Finding, FindingType};
use ledger::event::Event;
use sim::score::{self, Score};
use sim::{Labels, SimConfig, wire};

/// The CI trace.
fn config() -> SimConfig {
    SimConfig { seed: 1, tokens: 50, weeks: 3, warmup_days: 8, per_type: 2, ..SimConfig::default() }
}

struct Run {
    events: Vec<Event>,
    labels: Labels,
    findings: Vec<Finding>,
    score: Score,
}

/// Generated and detected once for every test of this binary.
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let (events, labels) = sim::generate(&config());
        let findings = detect::run(&DetectConfig::default(), &mut events.clone());
        let score = score::score(&labels, &findings);
        eprintln!("{}", score::render(&labels, &score, 0));
        Run { events, labels, findings, score }
    })
}

#[test]
fn every_injected_misuse_is_detected() {
    let r = run();
    assert!(r.labels.skipped.is_empty(), "injections not placed: {:?}", r.labels.skipped);
    for kind in sim::inject::INJECTED {
        let s = r.score.of(kind);
        assert_eq!(s.injected, 2, "{}: expected two injections", kind.as_str());
        assert_eq!(s.detected, s.injected, "{} missed: {:?}", kind.as_str(), r.score.missed);
    }
    assert!(r.score.missed.is_empty());
}

/// The goal of issue 6 is at most 1 false positive per 1,000 token-days; the CI trace has none at
/// all (docs/evaluation.md), and every detector must keep it that way.
#[test]
fn false_positives_meet_the_goal() {
    let r = run();
    assert!(r.score.token_days >= 450, "{}", r.score.token_days);
    for kind in FindingType::ALL {
        assert_eq!(r.score.of(kind).false_positives, 0, "{}: {:#?}", kind.as_str(), r.score.false_positives);
    }
    assert!(r.score.fp_rate() == 0.0, "{:.2} false positives per 1,000 token-days", r.score.fp_rate());
}

#[test]
fn same_seed_same_trace_same_findings() {
    let r = run();
    let (events, labels) = sim::generate(&config());
    assert!(events == r.events, "the same seed gave a different trace");
    assert_eq!(labels, r.labels);
    let (other, _) = sim::generate(&SimConfig { seed: 2, weeks: 2, ..config() });
    assert!(other.len() != events.len() || other.iter().zip(&events).any(|(a, b)| a != b));
    // Streaming the regenerated trace through NDJSON and `Detection` (what `sim eval` does) finds
    // what `detect::run` finds over the original events. On a prefix (parsing JSON is slow in a
    // debug build) that reaches past the first finding's first event, so there is one to compare.
    let first = r.findings.iter().map(|f| f.first_seen).min().unwrap();
    let n = (events.iter().position(|e| e.time > first).unwrap() + 1_000).max(30_000).min(events.len());
    let mut ndjson = Vec::new();
    for e in &events[..n] {
        wire::write_event(&mut ndjson, e).unwrap();
    }
    let streamed = sim::measure::detect_ndjson(&ndjson[..], &DetectConfig::default()).unwrap();
    assert_eq!(streamed.events as usize, n);
    let direct = detect::run(&DetectConfig::default(), &mut r.events[..n].to_vec());
    assert!(!direct.is_empty());
    assert!(streamed.findings == direct, "streaming over NDJSON found something else than detect::run");
}

#[test]
fn the_trace_is_well_formed() {
    let r = run();
    let ev = &r.events;
    assert!(ev.len() > 50_000, "{} events", ev.len());
    assert!(ev.windows(2).all(|w| w[0].time <= w[1].time), "events out of time order");
    let ids: HashSet<&str> = ev.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), ev.len(), "event ids are not unique");
    for e in ev {
        assert_eq!(e.token_id.is_some(), e.token_fingerprint.is_none(), "{e:?}");
        assert!(e.source_ip.is_some() && e.status.is_some() && e.request_id.is_some(), "{e:?}");
    }
    for i in &r.labels.injections {
        assert!(!i.event_ids.is_empty(), "{} produced no events", i.id);
        assert!(i.event_ids.iter().all(|id| ids.contains(id.as_str())), "{}", i.id);
        assert!(i.start_us >= r.labels.warmup_end_s * 1_000_000, "{} lies in the warm-up", i.id);
    }
    // Every archetype, sensitive routes, several zones, tokens created during the trace.
    let p = &r.labels.profiles;
    for a in ["human", "service", "batch", "ci", "partner"] {
        assert!(p.iter().any(|x| x.archetype == a), "no {a} token");
    }
    assert!(p.iter().filter(|x| x.sensitive).count() >= 5);
    assert!(p.iter().map(|x| &x.zone).collect::<HashSet<_>>().len() >= 4);
    assert!(p.iter().any(|x| x.created_s > r.labels.start_s));
    assert!(ev.iter().any(|e| e.reason == token::Reason::InsufficientScope && e.token_id.is_some()));
    assert!(ev.iter().any(|e| e.kind == ledger::event::Kind::Admin));
}

#[test]
fn files_round_trip() {
    let r = run();
    let v = wire::labels_json(&r.labels);
    let text = serde_json::to_string(&v).unwrap();
    let back = wire::parse_labels(&serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(back, r.labels);
    let mut out = Vec::new();
    for f in &r.findings {
        serde_json::to_writer(&mut out, &wire::finding_json(f)).unwrap();
        out.push(b'\n');
    }
    let read = wire::read_findings(&out[..]).unwrap();
    assert!(read == r.findings);
    let array = serde_json::to_vec(&r.findings.iter().map(wire::finding_json).collect::<Vec<_>>()).unwrap();
    assert!(wire::read_findings(&array[..]).unwrap() == r.findings);
    // Scoring findings read back from a file gives the same score.
    let s = score::score(&back, &read);
    assert_eq!(s.false_positives.len(), r.score.false_positives.len());
    assert_eq!(s.detected(), r.score.detected());
    for (e, line) in r.events.iter().take(1000).zip(0..) {
        let mut buf = Vec::new();
        wire::write_event(&mut buf, e).unwrap();
        let back = wire::parse_event(std::str::from_utf8(&buf).unwrap()).unwrap();
        assert_eq!(&back, e, "event {line}");
    }
}
