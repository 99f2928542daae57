//! The compliance harness (every detector against the rules of docs/detectors.md) and one
//! scenario per finding type, with the findings written out in full.

use std::collections::BTreeSet;

use expect_test::expect;
use jiff::{SignedDuration, Timestamp};
use ledger::event::{Event, Kind};
use token::Reason;

use super::*;

/// A small event builder: `t` seconds after a Monday 00:00 UTC.
struct Gen {
    n: u64,
    base: Timestamp,
}

impl Gen {
    fn new() -> Gen {
        Gen { n: 0, base: "2026-03-02T00:00:00Z".parse().unwrap() }
    }

    #[allow(clippy::too_many_arguments)]
    fn ev(
        &mut self,
        t: i64,
        token: Option<&str>,
        ip: &str,
        route: &str,
        path: &str,
        reason: Reason,
        sens: &[&str],
    ) -> Event {
        self.n += 1;
        let mut e = Event::new(
            format!("ev{:06}", self.n),
            self.base.checked_add(SignedDuration::from_secs(t)).unwrap(),
            Kind::Access,
            "gateway",
            reason,
        );
        e.seq = Some(self.n);
        e.token_id = token.map(str::to_owned);
        if token.is_none() {
            e.token_fingerprint = Some(format!("fp_{}", self.n % 7));
        }
        e.source_ip = Some(ip.to_owned());
        e.method = Some(route.split(' ').next().unwrap_or("GET").to_owned());
        e.route = Some(route.to_owned());
        e.path = Some(path.to_owned());
        e.resource = Some("orders".to_owned());
        e.action = Some("read".to_owned());
        e.sensitivity = sens.iter().map(|s| s.to_string()).collect();
        e.granted_scopes = vec!["orders:read".to_owned()];
        e
    }

    /// Normal office traffic: Mon–Fri 09–17, a few requests an hour, from one network.
    fn office(&mut self, token: &str, days: i64, out: &mut Vec<Event>) {
        for d in 0..days {
            if d % 7 >= 5 {
                continue;
            }
            for h in 9..17 {
                for k in 0..3 {
                    let t = d * 86_400 + h * 3600 + k * 1000;
                    let path = format!("/v1/orders/{}", (d * 10 + h + k) % 20);
                    out.push(self.ev(
                        t,
                        Some(token),
                        &format!("10.0.0.{}", 1 + k),
                        "GET /v1/orders/{id}",
                        &path,
                        Reason::Ok,
                        &[],
                    ));
                }
            }
        }
    }
}

const DAY: i64 = 86_400;

fn show(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "{} {} n={} evidence={}..{} | {}\n",
                f.kind.as_str(),
                f.severity.as_str(),
                f.event_count,
                f.evidence_event_ids.first().map_or("-", String::as_str),
                f.evidence_event_ids.last().map_or("-", String::as_str),
                f.summary
            )
        })
        .collect()
}

/// One scenario per finding type: a token with two weeks of office traffic, then one misuse.
fn scenarios() -> Vec<(&'static str, Vec<Event>)> {
    let mut out = Vec::new();
    let mut scenario = |name: &'static str, misuse: &dyn Fn(&mut Gen, &mut Vec<Event>)| {
        let mut g = Gen::new();
        let mut events = Vec::new();
        g.office("tokA", 15, &mut events);
        misuse(&mut g, &mut events);
        out.push((name, events));
    };
    // Sunday 03:12 of the third week: phi data.
    scenario("off_hours", &|g, ev| {
        ev.push(g.ev(
            20 * DAY + 3 * 3600 + 720,
            Some("tokA"),
            "10.0.0.1",
            "GET /v1/charts/{id}",
            "/v1/charts/9",
            Reason::Ok,
            &["phi"],
        ));
    });
    // A stolen token, used with another client than its owner's.
    scenario("new_network", &|g, ev| {
        for k in 0..3 {
            let mut e = g.ev(
                15 * DAY + 10 * 3600 + k * 60,
                Some("tokA"),
                "198.51.100.7",
                "GET /v1/orders/{id}",
                "/v1/orders/1",
                Reason::Ok,
                &[],
            );
            e.user_agent = Some("python-requests/2.32.3".to_owned());
            ev.push(e);
        }
    });
    scenario("concurrent_networks", &|g, ev| {
        for (k, ip) in ["203.0.113.5", "198.51.100.9", "192.0.2.44", "10.0.0.1"].iter().enumerate() {
            ev.push(g.ev(
                15 * DAY + 11 * 3600 + k as i64 * 30,
                Some("tokA"),
                ip,
                "GET /v1/orders/{id}",
                "/v1/orders/2",
                Reason::Ok,
                &[],
            ));
        }
    });
    scenario("brute_force", &|g, ev| {
        for k in 0..30 {
            let reason = if k % 2 == 0 { Reason::UnknownToken } else { Reason::BadChecksum };
            ev.push(g.ev(
                15 * DAY + 12 * 3600 + k * 5,
                None,
                &format!("203.0.113.{}", k % 4),
                "GET /v1/orders/{id}",
                "/v1/orders/3",
                reason,
                &[],
            ));
        }
    });
    scenario("scope_probing", &|g, ev| {
        for (k, r) in [
            "POST /v1/orders",
            "GET /v1/users/{id}",
            "DELETE /v1/orders/{id}",
            "GET /v1/admin",
            "GET /v1/billing",
            "PUT /v1/users/{id}",
        ]
        .iter()
        .enumerate()
        {
            ev.push(g.ev(
                15 * DAY + 13 * 3600 + k as i64 * 20,
                Some("tokA"),
                "10.0.0.1",
                r,
                "/x",
                Reason::InsufficientScope,
                &[],
            ));
        }
    });
    scenario("revoked_token_use", &|g, ev| {
        for k in 0..5 {
            let mut e = g.ev(
                15 * DAY + 14 * 3600 + k * 60,
                Some("tokA"),
                "10.0.0.2",
                "GET /v1/orders/{id}",
                "/v1/orders/4",
                Reason::Revoked,
                &[],
            );
            e.details.insert("revoked_at".into(), "2026-03-17T08:00:00.000000Z".into());
            ev.push(e);
        }
    });
    scenario("expired_token_use", &|g, ev| {
        for k in 0..2 {
            ev.push(g.ev(
                15 * DAY + 14 * 3600 + k * 600,
                Some("tokA"),
                "10.0.0.2",
                "GET /v1/orders/{id}",
                "/v1/orders/4",
                Reason::Expired,
                &[],
            ));
        }
    });
    scenario("dormant_reactivation", &|g, ev| {
        ev.push(g.ev(
            60 * DAY + 10 * 3600,
            Some("tokA"),
            "10.0.0.1",
            "GET /v1/orders/{id}",
            "/v1/orders/5",
            Reason::Ok,
            &[],
        ));
    });
    scenario("enumeration", &|g, ev| {
        for k in 0..80 {
            ev.push(g.ev(
                15 * DAY + 10 * 3600 + k * 3,
                Some("tokA"),
                "10.0.0.1",
                "GET /v1/orders/{id}",
                &format!("/v1/orders/{}", 1000 + k),
                Reason::Ok,
                &[],
            ));
        }
    });
    scenario("volume_spike", &|g, ev| {
        for k in 0..400 {
            ev.push(g.ev(
                15 * DAY + 10 * 3600 + k / 2,
                Some("tokA"),
                "10.0.0.1",
                "GET /v1/orders/{id}",
                "/v1/orders/1",
                Reason::Ok,
                &[],
            ));
        }
    });
    scenario("shadow_deny", &|g, ev| {
        for k in 0..3 {
            let mut e = g.ev(
                15 * DAY + 10 * 3600 + k * 60,
                Some("tokA"),
                "10.0.0.1",
                "POST /v1/orders",
                "/v1/orders",
                Reason::Ok,
                &[],
            );
            e.details.insert("shadow_decision".into(), "deny".into());
            e.details.insert("shadow_scopes".into(), "orders:read".into());
            ev.push(e);
        }
    });
    scenario("first_sensitive_access", &|g, ev| {
        ev.push(g.ev(
            15 * DAY + 10 * 3600,
            Some("tokA"),
            "10.0.0.1",
            "GET /v1/cards/{id}",
            "/v1/cards/7",
            Reason::Ok,
            &["financial"],
        ));
    });
    out
}

#[test]
fn every_finding_type_from_its_scenario() {
    let mut all = String::new();
    for (name, mut events) in scenarios() {
        let findings = run(&DetectConfig::default(), &mut events);
        let kinds: BTreeSet<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
        assert!(kinds.contains(name), "{name}: no finding of its type; got {kinds:?}\n{}", show(&findings));
        all += &format!("== {name}\n{}", show(&findings));
    }
    expect![[r#"
        == off_hours
        off_hours high n=1 evidence=ev000265..ev000265 | token tokA read phi data at 03:12 Sunday UTC; its usual hours are Mon–Fri 09–17 UTC
        first_sensitive_access high n=1 evidence=ev000265..ev000265 | token tokA read phi data for the first time in 264 requests over 19 days (GET /v1/charts/{id})
        == new_network
        new_network medium n=3 evidence=ev000265..ev000267 | token tokA read orders from 198.51.100.7 in 198.51.100.0/24, a network it never used in 264 requests over 15 days (usual: 10.0.0.0/24), with a client it never used (python-requests/2.32.3)
        == concurrent_networks
        new_network medium n=1 evidence=ev000265..ev000265 | token tokA read orders from 203.0.113.5 in 203.0.113.0/24, a network it never used in 264 requests over 15 days (usual: 10.0.0.0/24), one of two new networks within 30 days (the other: 198.51.100.0/24)
        new_network medium n=1 evidence=ev000266..ev000266 | token tokA read orders from 198.51.100.9 in 198.51.100.0/24, a network it never used in 265 requests over 15 days (usual: 10.0.0.0/24, 203.0.113.0/24), one of two new networks within 30 days (the other: 203.0.113.0/24)
        new_network medium n=1 evidence=ev000267..ev000267 | token tokA read orders from 192.0.2.44 in 192.0.2.0/24, a network it never used in 266 requests over 15 days (usual: 10.0.0.0/24, 203.0.113.0/24, 198.51.100.0/24), one of two new networks within 30 days (the other: 203.0.113.0/24)
        concurrent_networks high n=4 evidence=ev000265..ev000268 | token tokA was used from 4 places within 5 minutes (203.0.113.0/24, 198.51.100.0/24, 192.0.2.0/24, 10.0.0.0/24; 3 of them networks it does not use regularly); it normally uses at most 1
        == brute_force
        brute_force high n=30 evidence=ev000265..ev000294 | 30 bad credentials (malformed, mistyped or unknown tokens) from 203.0.113.0/24 within 5 minutes, from 4 addresses
        == scope_probing
        scope_probing high n=6 evidence=ev000265..ev000270 | token tokA was denied for insufficient scope on 6 distinct routes within 10 minutes (it holds [orders:read])
        == revoked_token_use
        revoked_token_use high n=5 evidence=ev000265..ev000269 | token tokA, revoked at 2026-03-17T08:00:00.000000Z, was presented 5 times, last from 10.0.0.2
        == expired_token_use
        expired_token_use medium n=2 evidence=ev000265..ev000266 | token tokA, expired at an unknown time, was presented 2 times, last from 10.0.0.2
        == dormant_reactivation
        dormant_reactivation medium n=1 evidence=ev000265..ev000265 | token tokA read orders after 45 days of silence (last use 2026-03-16T16:33:20.000000Z)
        == enumeration
        enumeration high n=80 evidence=ev000265..ev000314 | token tokA requested 80 distinct objects on GET /v1/orders/{id} within 5 minutes; it usually requests about 1
        == volume_spike
        volume_spike medium n=400 evidence=ev000265..ev000314 | token tokA made 400 requests in 5 minutes (80/min); its usual rate is 0.01/min and its busiest 5 minutes of the last 7 days had 1
        == shadow_deny
        shadow_deny low n=3 evidence=ev000265..ev000267 | token tokA made 3 requests today that its proposed scopes [orders:read] would deny (POST /v1/orders)
        == first_sensitive_access
        first_sensitive_access high n=1 evidence=ev000265..ev000265 | token tokA read financial data for the first time in 264 requests over 15 days (GET /v1/cards/{id})
    "#]].assert_eq(&all);
}

#[test]
fn office_traffic_alone_raises_nothing() {
    let mut g = Gen::new();
    let mut events = Vec::new();
    g.office("tokA", 28, &mut events);
    g.office("tokB", 28, &mut events);
    let findings = run(&DetectConfig::default(), &mut events);
    assert!(findings.is_empty(), "{}", show(&findings));
}

#[test]
fn a_new_token_is_judged_by_business_hours_named_with_their_days() {
    let mut g = Gen::new();
    let mut events = Vec::new();
    g.office("tokN", 2, &mut events); // Monday and Tuesday, 09–17: too little history of its own.
    events.push(g.ev(
        2 * DAY + 3 * 3600 + 720,
        Some("tokN"),
        "10.0.0.1",
        "GET /v1/charts/{id}",
        "/v1/charts/9",
        Reason::Ok,
        &["phi"],
    ));
    let findings = run(&DetectConfig::default(), &mut events);
    expect![[r#"
        off_hours high n=1 evidence=ev000049..ev000049 | token tokN read phi data at 03:12 Wednesday UTC; outside business hours Mon–Fri 07–20 UTC (local Wed 03:12; the token has too little history of its own)
    "#]]
    .assert_eq(&show(&findings));
}

/// Two weeks of office traffic for tokA, then `more` on day 15 (a Monday of the third week).
fn office_then(more: &[(i64, &str, &str, Option<&str>)]) -> Vec<Finding> {
    office_then_with(&DetectConfig::default(), more)
}

fn office_then_with(config: &DetectConfig, more: &[(i64, &str, &str, Option<&str>)]) -> Vec<Finding> {
    let mut g = Gen::new();
    let mut events = Vec::new();
    g.office("tokA", 15, &mut events);
    for (t, ip, route, agent) in more {
        let mut e = g.ev(15 * DAY + t, Some("tokA"), ip, route, "/v1/orders/1", Reason::Ok, &[]);
        e.user_agent = agent.map(str::to_owned);
        events.push(e);
    }
    run(config, &mut events)
}

#[test]
fn new_network_holds_a_move_that_looks_like_the_owner() {
    // The owner works from home for the first time: same client, same route, usual hours, and
    // not back on the office network within four hours.
    let home: Vec<(i64, &str, &str, Option<&str>)> =
        (0..20).map(|k| (9 * 3600 + k * 900, "198.51.100.7", "GET /v1/orders/{id}", None)).collect();
    let findings = office_then(&home);
    assert!(findings.is_empty(), "{}", show(&findings));
    // The next day at the office, and the day after at home again: still nothing.
    let mut days = home.clone();
    days.push((DAY + 10 * 3600, "10.0.0.1", "GET /v1/orders/{id}", None));
    days.push((2 * DAY + 10 * 3600, "198.51.100.7", "GET /v1/orders/{id}", None));
    let findings = office_then(&days);
    assert!(findings.is_empty(), "{}", show(&findings));
    // With no quiet days nothing is held: the move is reported.
    let config = DetectConfig { new_network_quiet_days: 0, ..DetectConfig::default() };
    let findings = office_then_with(&config, &home);
    assert_eq!(findings.len(), 1, "{}", show(&findings));
}

#[test]
fn new_network_reports_a_held_network_on_a_second_sign() {
    // Back on the office network an hour after the new one was used: two parties at once. The
    // finding carries the new network's events, gathered while it was held.
    let findings = office_then(&[
        (9 * 3600, "10.0.0.1", "GET /v1/orders/{id}", None),
        (10 * 3600, "198.51.100.7", "GET /v1/orders/{id}", None),
        (10 * 3600 + 60, "198.51.100.7", "GET /v1/orders/{id}", None),
        (11 * 3600, "10.0.0.2", "GET /v1/orders/{id}", None),
    ]);
    expect![[r#"
        new_network medium n=2 evidence=ev000266..ev000267 | token tokA read orders from 198.51.100.7 in 198.51.100.0/24, a network it never used in 265 requests over 15 days (usual: 10.0.0.0/24), going back and forth with 10.0.0.0/24 within 4 hours (two parties, not a move)
    "#]]
    .assert_eq(&show(&findings));
    // Another client on the held network later that day.
    let findings = office_then(&[
        (9 * 3600, "198.51.100.7", "GET /v1/orders/{id}", None),
        (14 * 3600, "198.51.100.7", "GET /v1/orders/{id}", Some("curl/8.5.0")),
    ]);
    expect![[r#"
        new_network medium n=2 evidence=ev000265..ev000266 | token tokA read orders from 198.51.100.7 in 198.51.100.0/24, a network it never used in 264 requests over 15 days (usual: 10.0.0.0/24), with a client it never used (curl/8.5.0)
    "#]]
    .assert_eq(&show(&findings));
    // A second new network within 30 days of a held one, and a route the token never called.
    let findings = office_then(&[
        (9 * 3600, "198.51.100.7", "GET /v1/orders/{id}", None),
        (DAY + 9 * 3600, "203.0.113.9", "GET /v1/orders/{id}", None),
        (2 * DAY + 9 * 3600, "192.0.2.9", "DELETE /v1/orders/{id}", None),
    ]);
    expect![[r#"
        new_network medium n=1 evidence=ev000265..ev000265 | token tokA read orders from 198.51.100.7 in 198.51.100.0/24, a network it never used in 264 requests over 15 days (usual: 10.0.0.0/24), one of two new networks within 30 days (the other: 203.0.113.0/24)
        new_network medium n=1 evidence=ev000266..ev000266 | token tokA read orders from 203.0.113.9 in 203.0.113.0/24, a network it never used in 265 requests over 16 days (usual: 10.0.0.0/24, 198.51.100.0/24), one of two new networks within 30 days (the other: 198.51.100.0/24)
        new_network medium n=1 evidence=ev000267..ev000267 | token tokA read orders from 192.0.2.9 in 192.0.2.0/24, a network it never used in 266 requests over 17 days (usual: 10.0.0.0/24, 198.51.100.0/24, 203.0.113.0/24), calling DELETE /v1/orders/{id}, a route it never called, one of two new networks within 30 days (the other: 198.51.100.0/24)
    "#]]
    .assert_eq(&show(&findings));
}

#[test]
fn off_hours_gives_the_evening_more_room_than_the_morning() {
    // Office hours 09–17 UTC (last active hour 16): phi data read at 19:30 continues the day
    // (three hours after), at 20:30 it does not; in the morning two hours (07:00) is the limit.
    let at = |t: i64| {
        let mut g = Gen::new();
        let mut events = Vec::new();
        g.office("tokA", 15, &mut events);
        events.push(g.ev(
            15 * DAY + t,
            Some("tokA"),
            "10.0.0.1",
            "GET /v1/orders/{id}",
            "/v1/orders/1",
            Reason::Ok,
            &["phi"],
        ));
        let findings = run(&DetectConfig::default(), &mut events);
        findings.iter().filter(|f| f.kind == FindingType::OffHours).count()
    };
    assert_eq!(at(19 * 3600 + 1800), 0);
    assert_eq!(at(20 * 3600 + 1800), 1);
    assert_eq!(at(7 * 3600 + 1800), 0);
    assert_eq!(at(6 * 3600 + 1800), 1);
}

// ---- The compliance harness: every detector, against the rules of docs/detectors.md ----

fn mixed_stream() -> Vec<Event> {
    let mut all = Vec::new();
    for (_, events) in scenarios() {
        all.extend(events);
    }
    all.sort_by_key(|e| (e.time, e.seq));
    all
}

fn each_detector(config: &DetectConfig) -> Vec<Box<dyn Detector>> {
    detectors::all(config)
}

#[test]
fn compliance_deterministic() {
    let events = mixed_stream();
    for i in 0..each_detector(&DetectConfig::default()).len() {
        let run_once = || {
            let mut d = each_detector(&DetectConfig::default()).remove(i);
            let mut out = Vec::new();
            for e in &events {
                d.observe(e, &mut out);
            }
            out
        };
        let (a, b) = (run_once(), run_once());
        assert_eq!(a, b, "{} is not deterministic", each_detector(&DetectConfig::default())[i].name());
    }
}

#[test]
fn compliance_findings_carry_evidence_from_the_stream() {
    let events = mixed_stream();
    let ids: BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let mut names = BTreeSet::new();
    for mut d in each_detector(&DetectConfig::default()) {
        let mut out = Vec::new();
        for e in &events {
            d.observe(e, &mut out);
        }
        for f in &out {
            names.insert(d.name());
            assert_eq!(f.kind.as_str(), d.name(), "a detector emits only its own type");
            assert!(!f.evidence_event_ids.is_empty(), "{} emitted a finding without evidence", d.name());
            assert!(
                f.evidence_event_ids.iter().all(|id| ids.contains(id.as_str())),
                "{}: evidence not from the stream",
                d.name()
            );
            assert!(f.evidence_event_ids.len() as u64 <= f.event_count);
            assert!(f.evidence_event_ids.len() <= MAX_EVIDENCE);
            assert!(f.first_seen <= f.last_seen);
            assert!(!f.summary.is_empty());
            assert!(f.id.starts_with("fd_") && f.id.len() == 23, "{}", f.id);
        }
    }
    assert_eq!(names.len(), FindingType::ALL.len(), "every detector fired in the mixed stream: {names:?}");
}

#[test]
fn compliance_repeated_activity_extends_one_finding() {
    for (name, mut events) in scenarios() {
        // Repeat the misuse part: each repeated event must extend, not multiply, findings.
        let findings = run(&DetectConfig::default(), &mut events);
        let of_type: Vec<&Finding> = findings.iter().filter(|f| f.kind.as_str() == name).collect();
        assert_eq!(of_type.len(), 1, "{name}: {} findings of its type\n{}", of_type.len(), show(&findings));
    }
}

#[test]
fn compliance_state_is_bounded() {
    let config = DetectConfig { max_keys: 50, min_history_events: 1, min_history_days: 0, ..DetectConfig::default() };
    let mut g = Gen::new();
    let mut detectors = each_detector(&config);
    let mut out = Vec::new();
    for i in 0..5_000i64 {
        let token = format!("tok{i}");
        let ip = format!("10.{}.{}.1", i / 250, i % 250);
        let reason = if i % 3 == 0 { Reason::UnknownToken } else { Reason::Ok };
        let e = g.ev(i * 10, Some(&token), &ip, "GET /v1/orders/{id}", &format!("/v1/orders/{i}"), reason, &["pii"]);
        for d in &mut detectors {
            d.observe(&e, &mut out);
            assert!(
                d.tracked() <= d.bound(),
                "{} tracks {} keys, above its bound {}",
                d.name(),
                d.tracked(),
                d.bound()
            );
            assert_eq!(d.bound(), 50);
        }
    }
}

#[test]
fn compliance_replay_gives_the_same_ids() {
    let mut a = mixed_stream();
    let mut b = mixed_stream();
    let fa: Vec<String> = run(&DetectConfig::default(), &mut a).into_iter().map(|f| f.id).collect();
    let fb: Vec<String> = run(&DetectConfig::default(), &mut b).into_iter().map(|f| f.id).collect();
    assert_eq!(fa, fb);
}
