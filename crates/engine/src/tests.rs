//! Use-case tests over a real SQLite store in a temporary directory, with a fixed clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use expect_test::expect;

use super::*;
use ledger::event::Kind;

struct FixedClock(AtomicI64);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_second(self.0.load(Ordering::SeqCst)).unwrap()
    }
}

impl FixedClock {
    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

fn open() -> (tempfile::TempDir, Engine, Arc<FixedClock>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock(AtomicI64::new(1_790_000_000)));
    let (engine, report) = Engine::open(&dir.path().join("data"), Settings::default(), clock.clone()).unwrap();
    assert_eq!(report, OpenReport { created_pepper: true, created_admin_token: true, created_signing_key: true });
    (dir, engine, clock)
}

fn admin(engine: &Engine, dir: &tempfile::TempDir) -> Principal {
    let token = DataDir::new(&dir.path().join("data")).read_admin_token().unwrap().unwrap();
    engine.authenticate(Some(&token), &Scope::tokentrail_admin(), &RequestContext::default()).unwrap()
}

fn new_token(scopes: &[&str]) -> NewToken {
    NewToken {
        name: "ci deploy".into(),
        owner: "team-a".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..NewToken::default()
    }
}

fn reason_of(r: Result<Principal>) -> String {
    match r {
        Ok(p) => format!("ok {}", p.token_id),
        Err(EngineError::Denied(d)) => d.decision.reason.to_string(),
        Err(e) => format!("error {e}"),
    }
}

#[test]
fn lifecycle_create_authenticate_rotate_revoke() {
    let (dir, engine, clock) = open();
    let by = admin(&engine, &dir);
    let ctx = RequestContext::default();
    let (rec, tok, ev) = engine.create_token(&by, &ctx, new_token(&["orders:write"])).unwrap();
    assert_eq!(ev.operation.as_deref(), Some("token.create"));
    assert_eq!(rec.expires_at, add(engine.now(), 90 * 86_400));
    let need = Scope::parse("orders:read").unwrap();
    assert_eq!(reason_of(engine.authenticate(Some(tok.expose()), &need, &ctx)), format!("ok {}", rec.id));

    let (_, rotated) = engine.rotate_token(&by, &ctx, &rec.id, Some("60s")).unwrap();
    assert_eq!(rotated.id(), tok.id());
    assert!(reason_of(engine.authenticate(Some(tok.expose()), &need, &ctx)).starts_with("ok"), "grace");
    clock.advance(61);
    assert_eq!(reason_of(engine.authenticate(Some(tok.expose()), &need, &ctx)), "unknown_token");
    assert!(reason_of(engine.authenticate(Some(rotated.expose()), &need, &ctx)).starts_with("ok"));

    engine.revoke_token(&by, &ctx, &rec.id, "leaked").unwrap();
    assert_eq!(reason_of(engine.authenticate(Some(rotated.expose()), &need, &ctx)), "revoked");
    let again = engine.revoke_token(&by, &ctx, &rec.id, "again").unwrap_err();
    assert!(matches!(again, EngineError::Conflict { code: "already_revoked", .. }), "{again:?}");
    let rotate_revoked = engine.rotate_token(&by, &ctx, &rec.id, None).unwrap_err();
    assert!(matches!(rotate_revoked, EngineError::Conflict { code: "token_revoked", .. }));

    // Every change and every denial is an event, in order.
    let page = engine.list_events(&EventQuery { order: store::Order::Asc, ..Default::default() }).unwrap();
    let kinds: Vec<String> = page
        .items
        .iter()
        .map(|e| format!("{}:{}:{}", e.kind.as_str(), e.operation.as_deref().unwrap_or("-"), e.reason))
        .collect();
    expect![[r#"
        admin:token.create:ok
        admin:token.create:ok
        admin:token.rotate:ok
        access:-:unknown_token
        admin:token.revoke:ok
        access:-:revoked"#]]
    .assert_eq(&kinds.join("\n"));
    let denied = &page.items[3];
    assert!(denied.token_fingerprint.as_deref().unwrap().starts_with("fp_"));
    assert_eq!(page.items[5].details.get("revoke_reason").map(String::as_str), Some("leaked"));
}

fn add(t: Timestamp, secs: i64) -> Option<Timestamp> {
    Some(t.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap())
}

#[test]
fn validation_reports_every_problem_at_once_and_stores_nothing() {
    let (dir, engine, _) = open();
    let by = admin(&engine, &dir);
    let before = engine.store().event_count().unwrap();
    let bad = NewToken {
        name: String::new(),
        owner: "x".repeat(129),
        description: Some("line\u{7}".into()),
        labels: [("Bad Key".to_string(), "v".to_string())].into(),
        scopes: vec!["orders:fly".into(), ":read".into(), "a b:read".into()],
        expires_at: Some("2020-01-01T00:00:00Z".into()),
        not_before: Some("tomorrow".into()),
        allowed_cidrs: vec!["10.0.0.1/8".into(), "banana".into()],
        rate_limit: Some("fast".into()),
        ..NewToken::default()
    };
    let err = engine.create_token(&by, &RequestContext::default(), bad).unwrap_err();
    let EngineError::Invalid(errors) = err else { panic!("{err:?}") };
    let text: String = errors.iter().map(|e| format!("{}: {}\n", e.field, e.message)).collect();
    expect![[r#"
        name: must not be empty
        owner: must be at most 128 characters (got 129)
        description: must not contain control characters
        labels.Bad Key: label keys are 1-63 characters: lowercase letters, digits and _ . : / -, starting with a letter or digit
        scopes[0]: scope "orders:fly": unknown action "fly" (expected read, write or admin)
        scopes[1]: scope ":read" has an empty resource
        scopes[2]: scope "a b:read": the resource may contain only lowercase letters, digits, '_', '-' and '.', or be '*'
        allowed_cidrs[0]: "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?
        allowed_cidrs[1]: "banana" is not an IP network: use CIDR notation such as 10.0.0.0/8 or 2001:db8::/32
        rate_limit: "fast" is not a rate limit: use <count>/<s|sec|min|h|hour|d|day> (for example 100/min)
        expires_at: 2020-01-01T00:00:00Z is in the past
        not_before: "tomorrow" is not an RFC 3339 time such as 2026-12-31T23:59:59Z
    "#]].assert_eq(&text);
    assert_eq!(engine.store().event_count().unwrap(), before);

    let cases = [
        (Some("2099-01-01T00:00:00Z"), None, false),
        (None, Some("400d"), false),
        (None, Some("soon"), false),
        (Some("2030-01-01T00:00:00Z"), Some("1d"), false),
        (None, None, true),
    ];
    let mut out = String::new();
    for (at, within, never) in cases {
        let t = NewToken {
            expires_at: at.map(Into::into),
            expires_in: within.map(Into::into),
            no_expiry: never,
            ..new_token(&["a:read"])
        };
        out += &match engine.create_token(&by, &RequestContext::default(), t) {
            Ok((r, _, _)) => {
                format!("ok expires_at={:?}\n", r.expires_at.map(ledger::event::format_time))
            }
            Err(EngineError::Invalid(e)) => format!("{}: {}\n", e[0].field, e[0].message),
            Err(e) => format!("{e}\n"),
        };
    }
    expect![[r#"
        expires_at: 2099-01-01T00:00:00Z is beyond the maximum lifetime of 365d from now
        expires_in: 400d is beyond the maximum lifetime of 365d
        expires_in: "soon" is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)
        expires_at: give at most one of expires_at, expires_in and no_expiry
        ok expires_at=None
    "#]]
    .assert_eq(&out);
}

#[test]
fn update_changes_only_what_is_given_and_records_the_diff() {
    let (dir, engine, _) = open();
    let by = admin(&engine, &dir);
    let ctx = RequestContext::default();
    let mut new = new_token(&["orders:read"]);
    new.rate_limit = Some("10/s".into());
    let (rec, tok, _) = engine.create_token(&by, &ctx, new).unwrap();
    let patch = TokenPatch {
        scopes: Some(vec!["orders:write".into()]),
        rate_limit: Some(None),
        allowed_cidrs: Some(vec!["10.0.0.0/8".into()]),
        ..TokenPatch::default()
    };
    let updated = engine.update_token(&by, &ctx, &rec.id, patch).unwrap();
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.name, rec.name);
    assert_eq!(updated.rate_limit, None);
    let last = engine.list_events(&EventQuery { limit: 1, ..Default::default() }).unwrap().items.remove(0);
    let details: String = last.details.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    expect![[r#"
        allowed_cidrs:  -> 10.0.0.0/8
        rate_limit: 10/s -> none
        scopes: orders:read -> orders:write
    "#]]
    .assert_eq(&details);
    // The scope change applies to the very next request, from an allowed network only.
    let write = Scope::parse("orders:write").unwrap();
    let inside = RequestContext { source_ip: Some("10.1.2.3".parse().unwrap()), ..Default::default() };
    let outside = RequestContext { source_ip: Some("192.0.2.1".parse().unwrap()), ..Default::default() };
    assert!(reason_of(engine.authenticate(Some(tok.expose()), &write, &inside)).starts_with("ok"));
    assert_eq!(reason_of(engine.authenticate(Some(tok.expose()), &write, &outside)), "ip_not_allowed");
    // An empty patch changes nothing and records nothing.
    let n = engine.store().event_count().unwrap();
    engine.update_token(&by, &ctx, &rec.id, TokenPatch::default()).unwrap();
    assert_eq!(engine.store().event_count().unwrap(), n);
}

#[test]
fn list_filters_and_cursor_binding() {
    let (dir, engine, _) = open();
    let by = admin(&engine, &dir);
    for i in 0..5 {
        let mut t = new_token(&["orders:read"]);
        t.owner = if i % 2 == 0 { "even".into() } else { "odd".into() };
        engine.create_token(&by, &RequestContext::default(), t).unwrap();
    }
    let filter = TokenFilter { owner: Some("even".into()), limit: Some(2), ..Default::default() };
    let (first, cursor) = engine.list_tokens(&filter).unwrap();
    assert_eq!(first.len(), 2);
    let cursor = cursor.unwrap();
    let (rest, end) = engine.list_tokens(&TokenFilter { cursor: Some(cursor.clone()), ..filter.clone() }).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(end, None);
    let other = TokenFilter { owner: Some("odd".into()), cursor: Some(cursor), ..Default::default() };
    let err = engine.list_tokens(&other).unwrap_err();
    assert!(matches!(err, EngineError::Invalid(ref e) if e[0].field == "cursor"), "{err:?}");
    let bad =
        TokenFilter { state: Some("sleeping".into()), scope: Some("x".into()), limit: Some(0), ..Default::default() };
    let EngineError::Invalid(e) = engine.list_tokens(&bad).unwrap_err() else { panic!() };
    assert_eq!(e.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["scope", "state", "limit"]);
}

#[test]
fn reopen_keeps_the_bootstrap_token_and_does_not_issue_another() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock(AtomicI64::new(1_790_000_000)));
    let data = dir.path().join("data");
    let first = {
        let (engine, _) = Engine::open(&data, Settings::default(), clock.clone()).unwrap();
        let t = DataDir::new(&data).read_admin_token().unwrap().unwrap();
        assert!(engine.authenticate(Some(&t), &Scope::tokentrail_admin(), &RequestContext::default()).is_ok());
        t
    };
    let (engine, report) = Engine::open(&data, Settings::default(), clock).unwrap();
    assert_eq!(report, OpenReport { created_pepper: false, created_admin_token: false, created_signing_key: false });
    assert_eq!(DataDir::new(&data).read_admin_token().unwrap().unwrap(), first);
    assert!(engine.authenticate(Some(&first), &Scope::tokentrail_admin(), &RequestContext::default()).is_ok());
    assert_eq!(engine.store().count_tokens(engine.now()).unwrap().get("active"), Some(&1));
}

#[test]
fn a_second_engine_on_the_same_directory_is_refused() {
    let (dir, _engine, clock) = open();
    let err = Engine::open(&dir.path().join("data"), Settings::default(), clock).err().unwrap();
    assert!(err.to_string().contains("in use by another tokentrail process"), "{err}");
}

#[cfg(unix)]
#[test]
fn secret_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _engine, _) = open();
    let data = DataDir::new(&dir.path().join("data"));
    for p in [data.pepper(), data.admin_token()] {
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "{}", p.display());
    }
    assert_eq!(std::fs::metadata(data.root()).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn last_use_is_batched() {
    let (dir, engine, clock) = open();
    let by = admin(&engine, &dir);
    let (rec, tok, _) = engine.create_token(&by, &RequestContext::default(), new_token(&["a:read"])).unwrap();
    let need = Scope::parse("a:read").unwrap();
    engine.authenticate(Some(tok.expose()), &need, &RequestContext::default()).unwrap();
    assert_eq!(engine.get_token(&rec.id).unwrap().last_used_at, None, "not written per request");
    let used_at = engine.now();
    clock.advance(5);
    assert!(engine.flush_last_used().unwrap() >= 1);
    assert_eq!(engine.get_token(&rec.id).unwrap().last_used_at, Some(used_at));
}

fn access(engine: &Engine, owner: &str, ip: &str) -> Event {
    let mut e = engine.new_event(Kind::Access, "gateway", Reason::Ok).unwrap();
    e.owner = Some(owner.to_owned());
    e.source_ip = Some(ip.to_owned());
    e.path = Some("/v1/orders/1".to_owned());
    e
}

#[test]
fn checkpoints_and_proofs_verify_with_the_published_key() {
    let (_dir, engine, _) = open();
    for i in 0..20 {
        engine.record_blocking(access(&engine, "alice", &format!("10.0.0.{i}"))).unwrap();
    }
    let cp = engine.checkpoint().unwrap().unwrap();
    let n = engine.store().event_count().unwrap();
    assert_eq!(cp.size, n);
    assert_eq!(engine.checkpoint().unwrap().unwrap(), cp, "no new checkpoint while the log did not grow");
    let verifier = ledger::note::Verifier::parse(&engine.verifier_key()).unwrap();
    let opened = ledger::checkpoint::open_checkpoint(&cp.note, engine.origin(), &[verifier]).unwrap();
    assert_eq!(opened.size(), n);
    for e in engine.list_events(&EventQuery { limit: 1000, ..Default::default() }).unwrap().items {
        let proof = engine.inclusion_proof(&e.id, None).unwrap();
        let (index, leaf) = engine.leaf(&e.id).unwrap();
        assert_eq!(index, proof.index);
        assert_eq!(ledger::merkle::leaf_hash(&leaf), proof.leaf_hash);
        ledger::merkle::verify_inclusion(index, proof.tree_size, &proof.leaf_hash, &proof.hashes, opened.root())
            .unwrap();
    }
    // A newer event gets a fresh checkpoint on demand.
    engine.record_blocking(access(&engine, "bob", "10.1.1.1")).unwrap();
    let newest = engine.list_events(&EventQuery { limit: 1, ..Default::default() }).unwrap().items.remove(0);
    let proof = engine.inclusion_proof(&newest.id, None).unwrap();
    assert_eq!(proof.tree_size, n + 1);
    let cp2 = engine.latest_checkpoint().unwrap();
    let consistency = engine.consistency_proof(cp.size, cp2.size).unwrap();
    ledger::merkle::verify_consistency(cp.size, cp2.size, &cp.root, &cp2.root, &consistency).unwrap();
    assert!(matches!(engine.consistency_proof(0, 3), Err(EngineError::Invalid(_))));
    assert!(matches!(engine.inclusion_proof(&newest.id, Some(1)), Err(EngineError::Invalid(_))));
}

#[test]
fn concurrent_writers_get_gap_free_positions() {
    let (_dir, engine, _) = open();
    let engine = Arc::new(engine);
    let before = engine.store().event_count().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let e = access(&engine, &format!("w{t}"), &format!("10.0.{t}.{i}"));
                        engine.recorder.submit_blocking(vec![e]).unwrap().wait_blocking().unwrap().unwrap()[0]
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    seqs.sort_unstable();
    let want: Vec<u64> = (before..before + 400).collect();
    assert_eq!(seqs, want);
    let verified = verify::verify(engine.store(), &[trusted(&engine)], &[], &mut |_, _| {}).unwrap();
    assert_eq!(verified.events, before + 400);
}

fn trusted(engine: &Engine) -> ledger::note::Verifier {
    ledger::note::Verifier::parse(&engine.verifier_key()).unwrap()
}

#[test]
fn erasure_removes_personal_values_and_the_log_still_verifies() {
    let (dir, engine, _) = open();
    let by = admin(&engine, &dir);
    engine.record_blocking(access(&engine, "alice@example.com", "203.0.113.5")).unwrap();
    engine.record_blocking(access(&engine, "bob", "198.51.100.7")).unwrap();
    engine.checkpoint().unwrap();
    let n = engine.erase(&by, &RequestContext::default(), &store::Erasure::Owner("alice@example.com".into())).unwrap();
    assert_eq!(n, 1);
    let n = engine.erase(&by, &RequestContext::default(), &store::Erasure::SourceIp("198.51.100.7".into())).unwrap();
    assert_eq!(n, 1);
    engine.checkpoint().unwrap();
    let v = verify::verify(engine.store(), &[trusted(&engine)], &[], &mut |_, _| {}).unwrap();
    assert!(v.erased >= 2, "{v:?}");
    let events = engine.list_events(&EventQuery { limit: 100, ..Default::default() }).unwrap().items;
    let erased: Vec<&Event> = events.iter().filter(|e| e.erased).collect();
    assert!(erased.iter().all(|e| e.owner.is_none() && e.source_ip.is_none()));
    let erase_events: Vec<&Event> = events.iter().filter(|e| e.operation.as_deref() == Some("audit.erase")).collect();
    assert_eq!(erase_events.len(), 2, "each erasure is an audited admin action");
    assert!(matches!(
        engine.erase(&by, &RequestContext::default(), &store::Erasure::Owner(" ".into())),
        Err(EngineError::Invalid(_))
    ));
}

#[test]
fn verify_names_a_changed_personal_value_and_a_foreign_key() {
    let (dir, engine, _) = open();
    engine.record_blocking(access(&engine, "alice", "203.0.113.5")).unwrap();
    engine.checkpoint().unwrap();
    let db = DataDir::new(&dir.path().join("data")).database();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let seq: i64 = conn.query_row("SELECT seq FROM event_personal WHERE owner = 'alice'", [], |r| r.get(0)).unwrap();
    // An attacker with the database file can drop the guard and change a value.
    conn.execute("DROP TRIGGER event_personal_no_update", []).unwrap();
    conn.execute("UPDATE event_personal SET owner = 'mallory' WHERE owner = 'alice'", []).unwrap();
    let f = verify::verify(engine.store(), &[trusted(&engine)], &[], &mut |_, _| {}).unwrap_err();
    assert_eq!(f.position, Some(seq as u64));
    assert!(f.message.contains("personal values"), "{f}");
    let other = ledger::note::Signer::from_seed("tokentrail/other", &[5; 32]).unwrap().verifier();
    let f = verify::verify(engine.store(), &[other], &[], &mut |_, _| {}).unwrap_err();
    assert!(f.message.contains("does not verify with the trusted key"), "{f}");
}

/// Explain for every reason code, from events produced by the real decision path.
#[test]
fn explain_every_reason_code() {
    use crate::access::{AccessRequest, Required};
    let (dir, engine, clock) = open();
    let by = admin(&engine, &dir);
    let ctx = RequestContext::default();
    engine.set_policy(
        policy::Policy::parse(
            "[[route]]\nmethod = \"GET\"\npath = \"/v1/orders/{id}\"\nresource = \"orders\"\naction = \"read\"\nsensitivity = [\"pii\"]\n",
            "policy.toml",
        )
        .unwrap(),
    );
    let mk = |scopes: &[&str], f: &dyn Fn(&mut NewToken)| {
        let mut n = new_token(scopes);
        f(&mut n);
        let (r, t, _) = engine.create_token(&by, &ctx, n).unwrap();
        (r.id, t.expose().to_owned())
    };
    let (_, good) = mk(&["orders:read"], &|_| {});
    let (_, weak) = mk(&["users:read"], &|_| {});
    let (revoked_id, revoked) = mk(&["orders:read"], &|_| {});
    engine.revoke_token(&by, &ctx, &revoked_id, "left the company").unwrap();
    let (_, expiring) = mk(&["orders:read"], &|n| n.expires_in = Some("60s".into()));
    let (_, future) = mk(&["orders:read"], &|n| {
        n.not_before = Some("2099-01-01T00:00:00Z".into());
        n.no_expiry = true;
    });
    let (_, fenced) = mk(&["orders:read"], &|n| n.allowed_cidrs = vec!["10.0.0.0/8".into()]);
    let (_, limited) = mk(&["orders:read"], &|n| n.rate_limit = Some("1/min".into()));
    clock.advance(120);
    let typo = format!("{}{}", &good[..good.len() - 1], if good.ends_with('0') { '1' } else { '0' });
    let unknown = {
        let p = token::parse(&good).unwrap();
        token::TokenString::with_id(&Prefix::default(), p.id, &mut |b: &mut [u8]| b.fill(7)).expose().to_owned()
    };
    let cases: Vec<(&str, Option<&str>, &str)> = vec![
        ("ok", Some(&good), "/v1/orders/1"),
        ("missing", None, "/v1/orders/1"),
        ("malformed", Some("hunter2"), "/v1/orders/1"),
        ("checksum", Some(&typo), "/v1/orders/1"),
        ("unknown", Some(&unknown), "/v1/orders/1"),
        ("unknown again", Some(&unknown), "/v1/orders/2"),
        ("revoked", Some(&revoked), "/v1/orders/1"),
        ("expired", Some(&expiring), "/v1/orders/1"),
        ("not yet valid", Some(&future), "/v1/orders/1"),
        ("scope", Some(&weak), "/v1/orders/1"),
        ("network", Some(&fenced), "/v1/orders/1"),
        ("limit 1", Some(&limited), "/v1/orders/1"),
        ("limit 2", Some(&limited), "/v1/orders/1"),
        ("no route", Some(&good), "/v2/elsewhere"),
    ];
    let mut out = String::new();
    for (name, cred, path) in cases {
        let o = engine
            .decide_access(&AccessRequest {
                source: "gateway",
                credential: cred,
                required: Required::Route { method: "GET", path },
                source_ip: Some("203.0.113.9".parse().unwrap()),
                user_agent: None,
                request_id: None,
            })
            .unwrap();
        let id = o.event.id.clone();
        engine.record_blocking(o.event).unwrap();
        let x = engine.explain(&id).unwrap();
        let mut text = format!("{name}: {}\n", x.summary);
        if let Some(f) = &x.fix {
            text += &format!("  fix: {f}\n");
        }
        if let Some(fp) = &x.fingerprint {
            text += &format!("  fingerprint seen {} times from {:?}\n", fp.count, fp.addresses);
        }
        out += &text;
    }
    // Token ids are random: name them.
    let mut named = out;
    for e in engine
        .store()
        .list_tokens(&store::TokenQuery {
            owner: None,
            scope: None,
            state: None,
            label: None,
            after: None,
            limit: 100,
            now: engine.now(),
        })
        .unwrap()
        .items
    {
        named = named.replace(&e.id, "<id>");
    }
    let named: String = named
        .lines()
        .map(|l| {
            l.split(" by ")
                .next()
                .map(|head| {
                    if l.contains("was revoked at") {
                        format!("{head} by <admin> (left the company)")
                    } else {
                        l.to_owned()
                    }
                })
                .unwrap_or_default()
        })
        .map(|l| {
            // Times move with the fixed clock; keep them, but hide the sub-second part.
            l.split(' ')
                .map(|w| if w.len() > 20 && w.contains('T') && w.contains(':') { "<time>" } else { w })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    expect![[r#"
        ok: allowed: orders:read is granted by [orders:read]
        missing: denied (missing_token): the request carried no token
          fix: send the token as `Authorization: Bearer <token>`
        malformed: denied (malformed_token): the credential is not shaped like a tokentrail token
          fix: send the whole token (prefix_id_secret), without quotes or a second scheme word
          fingerprint seen 1 times from [("203.0.113.9", 1)]
        checksum: denied (bad_checksum): the token's checksum does not match: it was mistyped or truncated
          fix: copy the token again from where it was stored
          fingerprint seen 1 times from [("203.0.113.9", 1)]
        unknown: denied (unknown_token): no token with this id and secret exists
          fix: the token was never issued here, or it was rotated: use the current secret, or issue a new token
          fingerprint seen 1 times from [("203.0.113.9", 1)]
        unknown again: denied (unknown_token): no token with this id and secret exists
          fix: the token was never issued here, or it was rotated: use the current secret, or issue a new token
          fingerprint seen 2 times from [("203.0.113.9", 2)]
        revoked: denied (revoked): token <id> was revoked at <time> by <admin> (left the company)
          fix: revocation is final: issue a new token (tokentrail token create …) and replace this one
        expired: denied (expired): token <id> expired at <time> 1m 0s before the request
          fix: extend it (tokentrail token update <id> --expires-in 30d) or rotate to a new token
        not yet valid: denied (not_yet_valid): token <id> is valid only from <time> 26399d 9h after the request
          fix: wait until then, or move it: tokentrail token update <id> --clear-not-before
        scope: denied (insufficient_scope): GET /v1/orders/{id} needs orders:read; token <id> has [users:read]
          fix: grant orders:read: tokentrail token update <id> --scope users:read --scope orders:read
        network: denied (ip_not_allowed): 203.0.113.9 is not in token <id>'s allowed networks [10.0.0.0/8]
          fix: add the caller's network: tokentrail token update <id> --allow-cidr 10.0.0.0/8 --allow-cidr 203.0.113.9
        limit 1: allowed: orders:read is granted by [orders:read]
        limit 2: denied (rate_limited): token <id> was over its rate limit of 1/min
          fix: retry after 60s, or raise it: tokentrail token update <id> --rate-limit <count/unit>
        no route: denied (route_not_found): no route of the policy matches GET /v2/elsewhere
          fix: add a [[route]] for this method and path to the route policy (docs/policy.md)"#]]
    .assert_eq(&named);
}

#[test]
fn online_detection_follows_the_ledger_and_survives_a_restart() {
    use crate::access::{AccessRequest, Required};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock(AtomicI64::new(1_790_000_000)));
    let data = dir.path().join("data");
    let guess = |engine: &Engine, i: u32| {
        let fake = format!("ttk_{:016}_{}", i, "x".repeat(38));
        let o = engine
            .decide_access(&AccessRequest {
                source: "gateway",
                credential: Some(&fake),
                required: Required::Route { method: "GET", path: "/v1/x" },
                source_ip: Some(format!("198.51.100.{}", i % 5).parse().unwrap()),
                user_agent: None,
                request_id: None,
            })
            .unwrap();
        engine.record_blocking(o.event).unwrap();
    };
    let first_id = {
        let settings = Settings {
            failed_attempts: limits::Budget { count: 1000, per: Duration::from_secs(60) },
            ..Settings::default()
        };
        let (engine, _) = Engine::open(&data, settings, clock.clone()).unwrap();
        for i in 0..25 {
            guess(&engine, i);
        }
        let fresh = engine.detect_step(10_000).unwrap();
        assert_eq!(fresh.len(), 1, "{fresh:?}");
        assert_eq!((fresh[0].finding.kind.as_str(), fresh[0].previous_severity.as_ref()), ("brute_force", None));
        assert!(engine.detect_step(10_000).unwrap().is_empty(), "nothing new");
        let by = admin(&engine, &dir);
        let f = engine
            .set_finding_status(&by, &RequestContext::default(), &fresh[0].finding.id, "acknowledged", "looking")
            .unwrap();
        assert_eq!(f.status, "acknowledged");
        assert!(matches!(
            engine.set_finding_status(&by, &RequestContext::default(), &fresh[0].finding.id, "resolved", " "),
            Err(EngineError::Invalid(_))
        ));
        fresh[0].finding.id.clone()
    };
    clock.advance(30);
    // After a restart the baseline is replayed: more guessing extends the same finding.
    let settings = Settings {
        failed_attempts: limits::Budget { count: 1000, per: Duration::from_secs(60) },
        ..Settings::default()
    };
    let (engine, _) = Engine::open(&data, settings, clock).unwrap();
    for i in 25..30 {
        guess(&engine, i);
    }
    assert!(engine.detect_step(10_000).unwrap().is_empty(), "an extension is not a new finding");
    let f = engine.get_finding(&first_id).unwrap();
    assert_eq!(f.status, "acknowledged", "a replay keeps the status");
    assert_eq!(f.event_count, 30);
    let admin_events = engine.list_events(&EventQuery { kind: Some(Kind::Admin), ..Default::default() }).unwrap().items;
    assert!(admin_events.iter().any(|e| e.operation.as_deref() == Some("finding.ack")));
}

#[test]
fn event_ids_sort_by_time_and_stay_unique() {
    let t0: Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
    let mut ids = Vec::new();
    for us in [0i64, 1, 61, 1_000_000, 86_400_000_000] {
        let at = Timestamp::from_microsecond(t0.as_microsecond() + us).unwrap();
        let a = event_id(at).unwrap();
        let b = event_id(at).unwrap();
        assert_eq!(a.len(), 23, "{a}");
        assert!(a.starts_with("ev_") && a[3..].bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b, "two ids made in the same microsecond");
        assert_eq!(a[..12], b[..12], "the time part of {a} and {b}");
        ids.push(a);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ids made later sort later");
}

/// The token cache never outlives a change: an erased owner's name does not come back into new
/// events from a cached record, and a revoked admin token stops authenticating at once.
#[test]
fn cached_tokens_follow_erasure_and_revocation() {
    use crate::access::{AccessRequest, Required};
    let (dir, engine, _) = open();
    let by = admin(&engine, &dir);
    let ctx = RequestContext::default();
    let mut n = new_token(&["orders:read"]);
    n.owner = "carol@example.com".into();
    let (_, secret, _) = engine.create_token(&by, &ctx, n).unwrap();
    let decide = || {
        engine
            .decide_access(&AccessRequest {
                source: "verify",
                credential: Some(secret.expose()),
                required: Required::Scope(&Scope::parse("orders:read").unwrap()),
                source_ip: None,
                user_agent: None,
                request_id: None,
            })
            .unwrap()
    };
    assert_eq!(decide().event.owner.as_deref(), Some("carol@example.com"));
    engine.erase(&by, &ctx, &store::Erasure::Owner("carol@example.com".into())).unwrap();
    assert_eq!(decide().event.owner.as_deref(), Some("erased"));

    let mut n = new_token(&["tokentrail:admin"]);
    n.no_expiry = true;
    let (second, second_secret, _) = engine.create_token(&by, &ctx, n).unwrap();
    let admin_scope = Scope::tokentrail_admin();
    engine.authenticate(Some(second_secret.expose()), &admin_scope, &ctx).unwrap();
    engine.revoke_token(&by, &ctx, &second.id, "rotated out").unwrap();
    let denied = engine.authenticate(Some(second_secret.expose()), &admin_scope, &ctx).unwrap_err();
    assert!(matches!(denied, EngineError::Denied(ref d) if d.decision.reason == Reason::Revoked), "{denied:?}");
}
