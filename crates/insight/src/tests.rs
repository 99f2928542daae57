//! Scenarios with known use and the exact recommendations they must produce.

use std::collections::BTreeMap;

use expect_test::expect;
use jiff::Timestamp;
use token::{Pepper, Scope, TokenRecord};

use super::*;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn token(id: &str, scopes: &[&str], created: &str, expires: Option<&str>) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        name: id.into(),
        owner: "team".into(),
        description: String::new(),
        labels: BTreeMap::new(),
        scopes: scopes.iter().map(|s| Scope::parse(s).unwrap()).collect(),
        created_at: t(created),
        created_by: "admin".into(),
        updated_at: t(created),
        expires_at: expires.map(t),
        not_before: None,
        allowed_cidrs: Vec::new(),
        rate_limit: None,
        last_used_at: None,
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
        secret_hash: Pepper::from_bytes([1; 32]).hash_secret("x"),
        secret_created_at: t(created),
        previous_secret: None,
        revision: 1,
        shadow_scopes: Vec::new(),
    }
}

fn usage(pairs: &[(&str, u64)], last: Option<&str>) -> Usage {
    let scopes: BTreeMap<Scope, u64> = pairs.iter().map(|(s, n)| (Scope::parse(s).unwrap(), *n)).collect();
    Usage { allowed: scopes.values().sum(), denied: 0, last_used: last.map(t), scopes }
}

#[test]
fn recommendations_for_known_use() {
    let now = t("2026-06-01T00:00:00Z");
    let s = Settings::default();
    let cases = vec![
        (
            "admin grant used only for reads",
            token("t1", &["orders:admin"], "2026-04-01T00:00:00Z", Some("2026-09-01T00:00:00Z")),
            usage(&[("orders:read", 120)], Some("2026-05-31T00:00:00Z")),
        ),
        (
            "wildcard used on two resources",
            token("t2", &["*:write"], "2026-04-01T00:00:00Z", Some("2026-09-01T00:00:00Z")),
            usage(&[("orders:read", 50), ("users:write", 3)], Some("2026-05-30T00:00:00Z")),
        ),
        (
            "exactly what it uses",
            token("t3", &["orders:read", "users:write"], "2026-04-01T00:00:00Z", Some("2026-09-01T00:00:00Z")),
            usage(&[("orders:read", 5), ("users:write", 1)], Some("2026-05-30T00:00:00Z")),
        ),
        (
            "one of two grants unused",
            token("t4", &["orders:read", "billing:admin"], "2026-04-01T00:00:00Z", Some("2026-09-01T00:00:00Z")),
            usage(&[("orders:read", 9)], Some("2026-05-30T00:00:00Z")),
        ),
        (
            "never used",
            token("t5", &["orders:read"], "2026-03-01T00:00:00Z", Some("2026-09-01T00:00:00Z")),
            usage(&[], None),
        ),
        (
            "new and not used yet",
            token("t6", &["orders:read"], "2026-05-25T00:00:00Z", Some("2026-09-01T00:00:00Z")),
            usage(&[], None),
        ),
        (
            "idle for 40 days",
            token("t7", &["orders:read"], "2026-01-01T00:00:00Z", Some("2026-09-01T00:00:00Z")),
            usage(&[], Some("2026-04-22T00:00:00Z")),
        ),
        (
            "no expiry and an old secret",
            token("t8", &["orders:read"], "2026-01-01T00:00:00Z", None),
            usage(&[("orders:read", 4)], Some("2026-05-30T00:00:00Z")),
        ),
        (
            "expiry beyond the maximum",
            token("t9", &["orders:read"], "2026-05-01T00:00:00Z", Some("2028-01-01T00:00:00Z")),
            usage(&[("orders:read", 4)], Some("2026-05-30T00:00:00Z")),
        ),
    ];
    let mut out = String::new();
    for (name, tok, use_) in cases {
        let a = analyse(&tok, &use_, now, &s);
        out +=
            &format!("{name}: granted [{}] used [{}] unused [{}]\n", list(&a.granted), list(&a.used), list(&a.unused));
        for r in &a.recommendations {
            let to = r.to.as_ref().map(|v| format!(" -> [{}]", list(v))).unwrap_or_default();
            out += &format!("  {}{to}: {}\n    $ {}\n", r.kind.as_str(), r.reason, r.command);
        }
    }
    expect![[r#"
        admin grant used only for reads: granted [orders:admin] used [orders:read] unused []
          narrow -> [orders:read]: 120 allowed requests in 90 days needed only orders:read; granted orders:admin
            $ tokentrail token narrow t1 --to orders:read --what-if
        wildcard used on two resources: granted [*:write] used [orders:read users:write] unused []
          narrow -> [orders:read users:write]: 53 allowed requests in 90 days needed only orders:read users:write; granted *:write
            $ tokentrail token narrow t2 --to orders:read --to users:write --what-if
        exactly what it uses: granted [orders:read users:write] used [orders:read users:write] unused []
        one of two grants unused: granted [orders:read billing:admin] used [orders:read] unused [billing:admin]
          narrow -> [orders:read]: 9 allowed requests in 90 days needed only orders:read; granted orders:read billing:admin
            $ tokentrail token narrow t4 --to orders:read --what-if
        never used: granted [orders:read] used [] unused [orders:read]
          revoke: never used in the 92 days since it was created
            $ tokentrail token revoke t5 --reason "unused"
        new and not used yet: granted [orders:read] used [] unused [orders:read]
        idle for 40 days: granted [orders:read] used [] unused [orders:read]
          revoke: unused for 40 days
            $ tokentrail token revoke t7 --reason "unused"
        no expiry and an old secret: granted [orders:read] used [orders:read] unused []
          set_expiry: the token never expires
            $ tokentrail token update t8 --expires-in 90d
          rotate: the secret is 151 days old (maximum 90 days)
            $ tokentrail token rotate t8 --grace 1h
        expiry beyond the maximum: granted [orders:read] used [orders:read] unused []
          set_expiry: the expiry is beyond the maximum lifetime of 365 days
            $ tokentrail token update t9 --expires-in 365d
    "#]].assert_eq(&out);
}

#[test]
fn what_if_counts_the_requests_a_narrower_grant_would_deny() {
    let rec = |id: &str, scope: &str, route: &str| Recorded {
        event_id: id.into(),
        required: Scope::parse(scope).unwrap(),
        route: route.into(),
    };
    let history = vec![
        rec("e1", "orders:read", "GET /v1/orders/{id}"),
        rec("e2", "orders:read", "GET /v1/orders/{id}"),
        rec("e3", "orders:write", "POST /v1/orders"),
        rec("e4", "users:read", "GET /v1/users/{id}"),
        rec("e5", "orders:write", "POST /v1/orders"),
    ];
    let w = what_if(&[Scope::parse("orders:read").unwrap()], &history);
    assert_eq!(w.considered, 5);
    assert_eq!(w.would_deny, 3);
    assert_eq!(w.would_deny_events, ["e3", "e4", "e5"]);
    assert_eq!(w.by_route.get("POST /v1/orders"), Some(&2));
    assert_eq!(w.by_route.get("GET /v1/users/{id}"), Some(&1));
    let none = what_if(&[Scope::parse("orders:write").unwrap(), Scope::parse("users:read").unwrap()], &history);
    assert_eq!(none.would_deny, 0);
}

#[test]
fn covering_keeps_the_highest_action_per_resource() {
    let used: BTreeMap<Scope, u64> =
        ["orders:read", "orders:write", "users:read", "tokentrail:verify", "tokentrail:admin"]
            .iter()
            .map(|s| (Scope::parse(s).unwrap(), 1))
            .collect();
    assert_eq!(list(&covering(&used)), "orders:write tokentrail:admin users:read");
}

#[test]
fn limits_shorter_than_a_day_are_compared_exactly() {
    let now = t("2026-06-01T12:00:00Z");
    let s = Settings {
        unused_for: Duration::from_secs(12 * 3600),
        max_secret_age: Duration::from_secs(6 * 3600),
        ..Settings::default()
    };
    let kinds = |tok: &TokenRecord, u: &Usage| -> Vec<(Kind, String)> {
        analyse(tok, u, now, &s).recommendations.into_iter().map(|r| (r.kind, r.reason)).collect()
    };
    let expiry = Some("2026-06-20T00:00:00Z");
    // Used a minute ago, created an hour ago: neither idle nor old.
    let busy = token("busy", &["orders:read"], "2026-06-01T11:00:00Z", expiry);
    assert_eq!(kinds(&busy, &usage(&[("orders:read", 3)], Some("2026-06-01T11:59:00Z"))), vec![]);
    // Created 13 hours ago, never used: idle for longer than 12 hours.
    let idle = token("idle", &["orders:read"], "2026-05-31T23:00:00Z", expiry);
    assert_eq!(
        kinds(&idle, &usage(&[], None)),
        vec![(Kind::Revoke, "never used since it was created, less than a day ago".to_owned())]
    );
    // Used 11 hours ago with a secret 7 hours old: not idle, but due for rotation.
    let mut old = token("old", &["orders:read"], "2026-05-01T00:00:00Z", expiry);
    old.secret_created_at = t("2026-06-01T05:00:00Z");
    assert_eq!(
        kinds(&old, &usage(&[("orders:read", 1)], Some("2026-06-01T01:00:00Z"))),
        vec![(Kind::Rotate, "the secret is less than a day old (maximum 6h)".to_owned())]
    );
}
