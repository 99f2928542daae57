//! The conformance suite every backend must pass unchanged.
//!
//! Each check takes a fresh, empty store. A backend's test module instantiates the suite with
//! [`suite!`] and a constructor; the PostgreSQL backend will do the same.

use std::collections::BTreeMap;

use jiff::Timestamp;
use ledger::event::{Event, Kind, Verdict};
use token::{Pepper, Reason, Scope, TokenRecord, TokenState};

use crate::{EventQuery, Order, Store, StoreError, TokenQuery};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub(crate) fn token(id: &str, owner: &str, scopes: &[&str]) -> TokenRecord {
    let pepper = Pepper::from_bytes([1; 32]);
    TokenRecord {
        id: id.to_owned(),
        name: format!("name of {id}"),
        owner: owner.to_owned(),
        description: "for tests".to_owned(),
        labels: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
        scopes: scopes.iter().map(|s| Scope::parse(s).unwrap()).collect(),
        created_at: t("2026-01-01T00:00:00Z"),
        created_by: "bootstrap".to_owned(),
        updated_at: t("2026-01-01T00:00:00Z"),
        expires_at: Some(t("2027-01-01T00:00:00Z")),
        not_before: None,
        allowed_cidrs: vec!["10.0.0.0/8".parse().unwrap(), "2001:db8::/32".parse().unwrap()],
        rate_limit: Some(token::RateLimit::parse("100/min").unwrap()),
        last_used_at: None,
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
        secret_hash: pepper.hash_secret(id),
        secret_created_at: t("2026-01-01T00:00:00Z"),
        previous_secret: None,
        revision: 1,
        shadow_scopes: Vec::new(),
    }
}

pub(crate) fn admin_event(id: &str, target: &str) -> Event {
    let mut e = Event::new(id.to_owned(), t("2026-01-01T00:00:00.123456Z"), Kind::Admin, "admin", Reason::Ok);
    e.operation = Some("token.create".to_owned());
    e.target = Some(target.to_owned());
    e.token_id = Some("admin0".to_owned());
    e.details = BTreeMap::from([("scopes".to_owned(), "[orders:read]".to_owned())]);
    e
}

pub(crate) fn access_event(id: &str, token: Option<&str>, reason: Reason) -> Event {
    let mut e = Event::new(id.to_owned(), t("2026-02-01T10:00:00Z"), Kind::Access, "gateway", reason);
    e.token_id = token.map(str::to_owned);
    e.source_ip = Some("203.0.113.7".to_owned());
    e.method = Some("GET".to_owned());
    e.path = Some("/v1/orders/1".to_owned());
    e.sensitivity = vec!["pii".to_owned()];
    e.status = Some(reason.http_status());
    e.latency_us = Some(3200);
    e.bytes_out = Some(512);
    e.granted_scopes = vec!["orders:read".to_owned()];
    e.required_scope = Some("orders:write".to_owned());
    e
}

pub(crate) fn round_trips_tokens(store: &dyn Store) {
    let tok = token("tok1", "alice", &["orders:read", "users:write"]);
    let mut ev = admin_event("ev1", "tok1");
    store.insert_token(&tok, &mut ev).unwrap();
    assert_eq!(ev.seq, Some(0));
    assert_eq!(store.get_token("tok1").unwrap(), Some(tok.clone()));
    assert_eq!(store.get_token("nope").unwrap(), None);
    let stored = store.get_event("ev1").unwrap().unwrap();
    assert_eq!(stored, ev);
}

pub(crate) fn refuses_duplicate_token_ids_and_keeps_nothing(store: &dyn Store) {
    store.insert_token(&token("tok1", "alice", &["a:read"]), &mut admin_event("ev1", "tok1")).unwrap();
    let err = store.insert_token(&token("tok1", "bob", &["a:read"]), &mut admin_event("ev2", "tok1")).unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert_eq!(store.event_count().unwrap(), 1, "the failed change's event must not be stored");
    assert_eq!(store.get_token("tok1").unwrap().unwrap().owner, "alice");
}

pub(crate) fn updates_with_optimistic_concurrency(store: &dyn Store) {
    let tok = token("tok1", "alice", &["orders:read"]);
    store.insert_token(&tok, &mut admin_event("ev1", "tok1")).unwrap();
    let mut changed = tok.clone();
    changed.owner = "bob".to_owned();
    changed.scopes = vec![Scope::parse("orders:admin").unwrap()];
    changed.shadow_scopes = vec![Scope::parse("orders:read").unwrap()];
    changed.revision = 2;
    let mut ev = admin_event("ev2", "tok1");
    store.update_token(&changed, 1, &mut ev).unwrap();
    assert_eq!(ev.seq, Some(1));
    assert_eq!(store.get_token("tok1").unwrap(), Some(changed.clone()));

    let mut stale = tok.clone();
    stale.owner = "mallory".to_owned();
    stale.revision = 2;
    let err = store.update_token(&stale, 1, &mut admin_event("ev3", "tok1")).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = store.update_token(&token("zzz", "x", &["a:read"]), 0, &mut admin_event("ev4", "zzz")).unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.event_count().unwrap(), 2);
    assert_eq!(store.get_token("tok1").unwrap().unwrap().owner, "bob");
}

pub(crate) fn lists_tokens_with_filters_and_pages(store: &dyn Store) {
    let now = t("2026-06-01T00:00:00Z");
    let mut revoked = token("t-revoked", "alice", &["orders:read"]);
    revoked.revoked_at = Some(t("2026-03-01T00:00:00Z"));
    let mut expired = token("t-expired", "bob", &["*:admin"]);
    expired.expires_at = Some(t("2026-05-01T00:00:00Z"));
    let mut future = token("t-future", "bob", &["orders:write"]);
    future.not_before = Some(t("2026-07-01T00:00:00Z"));
    let mut unlabelled = token("t-admin", "carol", &["tokentrail:admin"]);
    unlabelled.labels.clear();
    unlabelled.expires_at = None;
    let all = [token("t-active", "alice", &["orders:admin"]), revoked, expired, future, unlabelled];
    for (i, tok) in all.iter().enumerate() {
        store.insert_token(tok, &mut admin_event(&format!("ev{i}"), &tok.id)).unwrap();
    }
    let q = |f: &dyn Fn(&mut TokenQuery)| {
        let mut query = TokenQuery { owner: None, scope: None, state: None, label: None, after: None, limit: 100, now };
        f(&mut query);
        store.list_tokens(&query).unwrap().items.iter().map(|t| t.id.clone()).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(q(&|_| {}), "t-active t-revoked t-expired t-future t-admin");
    assert_eq!(q(&|q| q.owner = Some("bob".into())), "t-expired t-future");
    assert_eq!(q(&|q| q.state = Some(TokenState::Active)), "t-active t-admin");
    assert_eq!(q(&|q| q.state = Some(TokenState::Revoked)), "t-revoked");
    assert_eq!(q(&|q| q.state = Some(TokenState::Expired)), "t-expired");
    assert_eq!(q(&|q| q.state = Some(TokenState::NotYetValid)), "t-future");
    assert_eq!(q(&|q| q.scope = Some(Scope::parse("orders:read").unwrap())), "t-active t-revoked t-expired t-future");
    assert_eq!(q(&|q| q.scope = Some(Scope::parse("orders:write").unwrap())), "t-active t-expired t-future");
    assert_eq!(q(&|q| q.scope = Some(Scope::parse("users:read").unwrap())), "t-expired");
    assert_eq!(q(&|q| q.scope = Some(Scope::parse("tokentrail:admin").unwrap())), "t-admin");
    assert_eq!(q(&|q| q.scope = Some(Scope::parse("tokentrail:verify").unwrap())), "t-admin");
    assert_eq!(q(&|q| q.label = Some(("env".into(), None))), "t-active t-revoked t-expired t-future");
    assert_eq!(q(&|q| q.label = Some(("env".into(), Some("prod".into())))), "t-active t-revoked t-expired t-future");
    assert_eq!(q(&|q| q.label = Some(("env".into(), Some("dev".into())))), "");

    // Pages of two, following `next`, visit every token once, in order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_tokens(&TokenQuery { owner: None, scope: None, state: None, label: None, after, limit: 2, now })
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|t| t.id.clone()));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.join(" "), "t-active t-revoked t-expired t-future t-admin");

    let counts = store.count_tokens(now).unwrap();
    assert_eq!(counts.get("active"), Some(&2));
    assert_eq!(counts.get("revoked"), Some(&1));
    assert_eq!(counts.get("expired"), Some(&1));
    assert_eq!(counts.get("not_yet_valid"), Some(&1));
}

pub(crate) fn appends_events_gap_free_and_lists_them(store: &dyn Store) {
    let mut batch: Vec<Event> = (0..5)
        .map(|i| {
            let reason = if i % 2 == 0 { Reason::Ok } else { Reason::InsufficientScope };
            access_event(&format!("a{i}"), Some("tok1"), reason)
        })
        .collect();
    store.append(&mut batch).unwrap();
    assert_eq!(batch.iter().map(|e| e.seq.unwrap()).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    let mut more = vec![access_event("b0", None, Reason::UnknownToken)];
    store.append(&mut more).unwrap();
    assert_eq!(more[0].seq, Some(5));
    assert_eq!(store.event_count().unwrap(), 6);

    let dup = store.append(&mut [access_event("a1", None, Reason::Ok), access_event("c9", None, Reason::Ok)]);
    assert!(matches!(dup, Err(StoreError::Duplicate(_))), "{dup:?}");
    assert_eq!(store.event_count().unwrap(), 6, "a failed batch stores nothing");
    assert!(store.get_event("c9").unwrap().is_none());

    let ids =
        |q: EventQuery| store.list_events(&q).unwrap().items.into_iter().map(|e| e.id).collect::<Vec<_>>().join(" ");
    assert_eq!(ids(EventQuery::default()), "b0 a4 a3 a2 a1 a0");
    assert_eq!(ids(EventQuery { order: Order::Asc, limit: 2, ..Default::default() }), "a0 a1");
    assert_eq!(ids(EventQuery { order: Order::Asc, after: Some(1), limit: 2, ..Default::default() }), "a2 a3");
    assert_eq!(ids(EventQuery { after: Some(4), ..Default::default() }), "a3 a2 a1 a0");
    assert_eq!(ids(EventQuery { reason: Some(Reason::InsufficientScope), ..Default::default() }), "a3 a1");
    assert_eq!(ids(EventQuery { token_id: Some("tok1".into()), limit: 3, ..Default::default() }), "a4 a3 a2");
    assert_eq!(ids(EventQuery { kind: Some(Kind::Admin), ..Default::default() }), "");
    let page = store.list_events(&EventQuery { limit: 4, ..Default::default() }).unwrap();
    assert_eq!(page.next, Some(2));
    let roundtrip = store.get_event("a3").unwrap().unwrap();
    let mut want = access_event("a3", Some("tok1"), Reason::InsufficientScope);
    want.seq = Some(3);
    assert_eq!(roundtrip, want);
}

pub(crate) fn last_used_only_moves_forward(store: &dyn Store) {
    store.insert_token(&token("tok1", "alice", &["a:read"]), &mut admin_event("ev1", "tok1")).unwrap();
    store.record_last_used(&[("tok1".into(), t("2026-02-02T00:00:00Z"))]).unwrap();
    store
        .record_last_used(&[("tok1".into(), t("2026-02-01T00:00:00Z")), ("ghost".into(), t("2026-02-01T00:00:00Z"))])
        .unwrap();
    let tok = store.get_token("tok1").unwrap().unwrap();
    assert_eq!(tok.last_used_at, Some(t("2026-02-02T00:00:00Z")));
    assert_eq!(tok.revision, 1, "last use is not a change of grants");
}

pub(crate) fn keeps_metadata(store: &dyn Store) {
    assert_eq!(store.meta_get("k").unwrap(), None);
    store.meta_set("k", "v1").unwrap();
    store.meta_set("k", "v2").unwrap();
    assert_eq!(store.meta_get("k").unwrap().as_deref(), Some("v2"));
    store.ping().unwrap();
}

fn stored_root(store: &dyn Store) -> ledger::merkle::Hash {
    let size = store.event_count().unwrap();
    let ids = ledger::merkle::nodes_for_root(size);
    let nodes = store.tree_nodes(&ids).unwrap();
    ledger::merkle::root(size, &nodes).unwrap()
}

/// Recomputes every leaf from what is stored and checks it against the stored leaf hash and the
/// stored tree; returns the recomputed tree.
fn recompute(store: &dyn Store) -> ledger::merkle::MemoryTree {
    let mut tree = ledger::merkle::MemoryTree::new();
    let leaves = store.leaves(0, 10_000).unwrap();
    for (i, l) in leaves.iter().enumerate() {
        assert_eq!(l.event.seq, Some(i as u64));
        let bytes = ledger::leaf::encode(&l.event, i as u64, &l.commitments);
        assert_eq!(ledger::merkle::leaf_hash(&bytes), l.leaf_hash, "leaf {i}");
        if let Some(salt) = l.salt {
            assert_eq!(
                ledger::leaf::Personal::of(&l.event).commitments(&salt),
                l.commitments,
                "personal values of {i}"
            );
        }
        tree.push(l.leaf_hash).unwrap();
    }
    tree
}

pub(crate) fn builds_the_merkle_tree_as_it_appends(store: &dyn Store) {
    store.insert_token(&token("tok1", "alice", &["a:read"]), &mut admin_event("ev-admin", "tok1")).unwrap();
    for batch in 0..7 {
        let mut events: Vec<Event> =
            (0..batch).map(|i| access_event(&format!("b{batch}-{i}"), Some("tok1"), Reason::Ok)).collect();
        store.append(&mut events).unwrap();
        let tree = recompute(store);
        assert_eq!(tree.size(), store.event_count().unwrap());
        assert_eq!(stored_root(store), tree.root(), "after batch {batch}");
    }
    // A failed batch leaves the tree as it was, and the next append continues it correctly.
    let dup = store.append(&mut [access_event("fresh", None, Reason::Ok), access_event("b3-0", None, Reason::Ok)]);
    assert!(dup.is_err());
    store.append(&mut [access_event("after", None, Reason::Ok)]).unwrap();
    assert_eq!(stored_root(store), recompute(store).root());
    // Proofs from stored nodes verify against the recomputed root.
    let tree = recompute(store);
    let size = tree.size();
    for index in 0..size {
        let ids = ledger::merkle::nodes_for_inclusion(index, size).unwrap();
        let nodes = store.tree_nodes(&ids).unwrap();
        let proof = ledger::merkle::inclusion_proof(index, size, &nodes).unwrap();
        ledger::merkle::verify_inclusion(index, size, &tree.leaf_hash(index).unwrap(), &proof, &tree.root()).unwrap();
    }
}

pub(crate) fn appends_a_bulk_load_whole_or_not_at_all(store: &dyn Store) {
    use crate::Batch;
    let batch = |prefix: &str, n: usize| -> Vec<Event> {
        (0..n).map(|i| access_event(&format!("{prefix}{i}"), Some("tok1"), Reason::Ok)).collect()
    };
    store.append(&mut batch("first-", 2)).unwrap();
    let root = stored_root(store);
    // Given up after two batches: none of them is stored, and the tree is as it was.
    let mut given = vec![Batch::Events(batch("x", 3)), Batch::Events(batch("y", 2)), Batch::Abort].into_iter();
    assert_eq!(store.append_all(0, &mut |_| given.next().unwrap_or(Batch::End)).unwrap(), None);
    assert_eq!(store.event_count().unwrap(), 2);
    assert!(store.get_event("x0").unwrap().is_none());
    assert_eq!(stored_root(store), root);
    // A batch that cannot be appended fails the whole load.
    let mut given = vec![Batch::Events(batch("z", 2)), Batch::Events(batch("first-", 1)), Batch::End].into_iter();
    let dup = store.append_all(0, &mut |_| given.next().unwrap_or(Batch::End));
    assert!(matches!(dup, Err(StoreError::Duplicate(_))), "{dup:?}");
    assert_eq!(store.event_count().unwrap(), 2);
    assert!(store.get_event("z0").unwrap().is_none());
    // Every batch, an empty one among them, in order; the log and its tree continue after it.
    // Meanwhile the source finds what the log held before, through the load.
    let mut given =
        vec![Batch::Events(batch("a", 3)), Batch::Events(Vec::new()), Batch::Events(batch("b", 4))].into_iter();
    let asked: Vec<String> = ["first-1", "x0", "first-0", "z0"].map(String::from).to_vec();
    let mut found = Vec::new();
    let loaded = store.append_all(0, &mut |load| {
        let mut ids: Vec<String> = load.existing_ids(&asked).unwrap().into_iter().collect();
        ids.sort();
        found.push(ids.join(" "));
        given.next().unwrap_or(Batch::End)
    });
    assert_eq!(loaded.unwrap(), Some(7));
    assert_eq!(found, ["first-0 first-1"; 4]);
    store.append(&mut batch("last-", 1)).unwrap();
    let ids = store
        .list_events(&EventQuery { order: Order::Asc, ..Default::default() })
        .unwrap()
        .items
        .into_iter()
        .map(|e| format!("{}@{}", e.id, e.seq.unwrap()))
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(ids, "first-0@0 first-1@1 a0@2 a1@3 a2@4 b0@5 b1@6 b2@7 b3@8 last-0@9");
    assert_eq!(stored_root(store), recompute(store).root());
    let stats = store.stats(&EventQuery::default(), crate::GroupBy::Token, 10).unwrap();
    assert_eq!(stats.iter().map(|r| r.count).sum::<u64>(), 10, "the rollup counts the bulk load: {stats:?}");
}

pub(crate) fn finds_what_a_large_announced_bulk_load_appended(store: &dyn Store) {
    use crate::Batch;
    // Announced as large (a backend may index it at the end), then abandoned, then completed:
    // every query and aggregate sees exactly the committed events.
    let events = varied_events();
    let (first, rest) = events.split_at(100);
    store.append(&mut first.to_vec()).unwrap();
    let mut given = vec![Batch::Events(rest[..50].to_vec()), Batch::Abort].into_iter();
    assert_eq!(store.append_all(1_000_000, &mut |_| given.next().unwrap_or(Batch::End)).unwrap(), None);
    assert_eq!(store.event_count().unwrap(), 100);
    aggregates_agree_with_the_events_so_far(store);
    let mut given: Vec<Batch> = rest.chunks(70).map(|c| Batch::Events(c.to_vec())).collect();
    given.reverse();
    assert_eq!(store.append_all(1_000_000, &mut |_| given.pop().unwrap_or(Batch::End)).unwrap(), Some(300));
    assert_eq!(store.event_count().unwrap(), 400);
    aggregates_agree_with_the_events_so_far(store);
    let page =
        store.list_events(&EventQuery { token_id: Some("tokB".into()), limit: 1000, ..Default::default() }).unwrap();
    let want = events.iter().filter(|e| e.token_id.as_deref() == Some("tokB")).count();
    assert_eq!(page.items.len(), want);
    assert!(store.get_event("v399").unwrap().is_some());
}

pub(crate) fn keeps_personal_values_beside_the_leaf_and_erases_them(store: &dyn Store) {
    let mut a = access_event("a", Some("tok1"), Reason::Ok);
    a.owner = Some("alice@example.com".into());
    a.user_agent = Some("curl/8".into());
    let mut b = access_event("b", Some("tok2"), Reason::Ok);
    b.owner = Some("bob".into());
    b.source_ip = Some("198.51.100.1".into());
    store.append(&mut [a.clone(), b]).unwrap();
    let root_before = stored_root(store);
    assert_eq!(store.get_event("a").unwrap().unwrap().user_agent.as_deref(), Some("curl/8"));

    let mut record = admin_event("erase-1", "-");
    record.operation = Some("audit.erase".into());
    let n = store.erase(&crate::Erasure::Owner("alice@example.com".into()), &mut record).unwrap();
    assert_eq!(n, 1);
    let erased = store.get_event("a").unwrap().unwrap();
    assert!(erased.erased);
    assert_eq!((erased.owner, erased.user_agent, erased.source_ip, erased.path), (None, None, None, None));
    assert_eq!(erased.token_id.as_deref(), Some("tok1"), "non-personal fields stay");
    assert!(!store.get_event("b").unwrap().unwrap().erased);
    let n = store.erase(&crate::Erasure::SourceIp("198.51.100.1".into()), &mut admin_event("erase-2", "-")).unwrap();
    assert_eq!(n, 1);
    // The log still verifies, and the first two leaves are unchanged.
    let tree = recompute(store);
    let first_two =
        ledger::merkle::MemoryTree::from_leaf_hashes([tree.leaf_hash(0).unwrap(), tree.leaf_hash(1).unwrap()]).unwrap();
    assert_eq!(first_two.root(), root_before);
    assert_eq!(stored_root(store), tree.root());
}

pub(crate) fn keeps_one_checkpoint_per_size(store: &dyn Store) {
    assert_eq!(store.latest_checkpoint().unwrap(), None);
    let cp = |size: u64, root: u8| crate::StoredCheckpoint {
        size,
        root: [root; 32],
        note: format!("note {size}\n"),
        created_at: t("2026-01-01T00:00:00Z"),
    };
    store.put_checkpoint(&cp(3, 1)).unwrap();
    store.put_checkpoint(&cp(5, 2)).unwrap();
    store.put_checkpoint(&cp(3, 1)).unwrap();
    let err = store.put_checkpoint(&cp(3, 9)).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.latest_checkpoint().unwrap(), Some(cp(5, 2)));
    assert_eq!(store.checkpoints().unwrap(), vec![cp(3, 1), cp(5, 2)]);
}

/// A small trace with known answers: 12 events over 3 hours from two tokens and three addresses.
fn trace(store: &dyn Store) {
    let mut events = Vec::new();
    for i in 0..12u32 {
        let reason = match i % 4 {
            0 | 1 => Reason::Ok,
            2 => Reason::InsufficientScope,
            _ => Reason::UnknownToken,
        };
        let mut e = access_event(&format!("t{i:02}"), Some(if i % 2 == 0 { "tokA" } else { "tokB" }), reason);
        e.time = t("2026-03-01T10:00:00Z").checked_add(jiff::SignedDuration::from_mins(i64::from(i) * 15)).unwrap();
        e.owner = Some(if i % 2 == 0 { "alice" } else { "bob" }.to_owned());
        e.source_ip = Some(
            match i % 3 {
                0 => "10.1.2.3",
                1 => "10.1.2.200",
                _ => "2001:db8:5::9",
            }
            .to_owned(),
        );
        e.route = Some(if i < 6 { "GET /v1/orders/{id}" } else { "POST /v1/orders" }.to_owned());
        e.resource = Some("orders".to_owned());
        e.action = Some(if i < 6 { "read" } else { "write" }.to_owned());
        e.sensitivity = if i % 3 == 0 { vec!["pii".to_owned(), "financial".to_owned()] } else { Vec::new() };
        e.bytes_out = Some(100);
        events.push(e);
    }
    store.append(&mut events).unwrap();
}

pub(crate) fn filters_events_by_every_field(store: &dyn Store) {
    trace(store);
    let ids = |f: &dyn Fn(&mut EventQuery)| {
        let mut q = EventQuery { order: Order::Asc, limit: 100, ..Default::default() };
        f(&mut q);
        store.list_events(&q).unwrap().items.into_iter().map(|e| e.id).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(ids(&|q| q.owner = Some("bob".into())), "t01 t03 t05 t07 t09 t11");
    assert_eq!(ids(&|q| q.source_ip = Some("10.1.2.0/24".parse().unwrap())), "t00 t01 t03 t04 t06 t07 t09 t10");
    assert_eq!(ids(&|q| q.source_ip = Some("10.1.2.200/32".parse().unwrap())), "t01 t04 t07 t10");
    assert_eq!(ids(&|q| q.source_ip = Some("2001:db8::/32".parse().unwrap())), "t02 t05 t08 t11");
    // Small pages walk a common network through the log and look a rare one up by address;
    // both give every match once, in order, in both directions.
    let paged = |net: &str, order: Order| {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let q = EventQuery { source_ip: Some(net.parse().unwrap()), order, after, limit: 2, ..Default::default() };
            let page = store.list_events(&q).unwrap();
            out.extend(page.items.into_iter().map(|e| e.id));
            match page.next {
                Some(n) => after = Some(n),
                None => return out.join(" "),
            }
        }
    };
    assert_eq!(paged("10.1.2.0/24", Order::Asc), "t00 t01 t03 t04 t06 t07 t09 t10");
    assert_eq!(paged("10.1.2.0/24", Order::Desc), "t10 t09 t07 t06 t04 t03 t01 t00");
    assert_eq!(paged("10.1.2.200/32", Order::Desc), "t10 t07 t04 t01");
    assert_eq!(paged("::/0", Order::Asc), "t02 t05 t08 t11");
    assert_eq!(paged("192.0.2.0/24", Order::Asc), "");
    // Narrower than a /24, wider than a /24, inside one IPv6 /48 and wider than one.
    assert_eq!(paged("10.1.2.192/26", Order::Desc), "t10 t07 t04 t01");
    assert_eq!(paged("10.1.0.0/16", Order::Asc), "t00 t01 t03 t04 t06 t07 t09 t10");
    assert_eq!(paged("2001:db8:5::/48", Order::Desc), "t11 t08 t05 t02");
    assert_eq!(paged("2001:db8:5:1::/64", Order::Desc), "");
    assert_eq!(paged("2001:db8::/32", Order::Asc), "t02 t05 t08 t11");
    assert_eq!(ids(&|q| q.route = Some("POST /v1/orders".into())), "t06 t07 t08 t09 t10 t11");
    assert_eq!(ids(&|q| q.action = Some("read".into())), "t00 t01 t02 t03 t04 t05");
    assert_eq!(ids(&|q| q.sensitivity = Some("financial".into())), "t00 t03 t06 t09");
    assert_eq!(ids(&|q| q.reason = Some(Reason::UnknownToken)), "t03 t07 t11");
    assert_eq!(ids(&|q| q.decision = Some(ledger::event::Verdict::Deny)), "t02 t03 t06 t07 t10 t11");
    assert_eq!(
        ids(&|q| {
            q.since = Some(t("2026-03-01T11:00:00Z"));
            q.until = Some(t("2026-03-01T12:00:00Z"));
        }),
        "t04 t05 t06 t07"
    );
    assert_eq!(
        ids(&|q| {
            q.owner = Some("alice".into());
            q.source_ip = Some("10.0.0.0/8".parse().unwrap());
            q.sensitivity = Some("pii".into());
        }),
        "t00 t06"
    );
}

pub(crate) fn aggregates_events(store: &dyn Store) {
    use crate::GroupBy;
    trace(store);
    let show = |g: GroupBy, f: &dyn Fn(&mut EventQuery)| {
        let mut q = EventQuery::default();
        f(&mut q);
        store
            .stats(&q, g, 100)
            .unwrap()
            .iter()
            .map(|r| format!("{}={}/{}/{}/{}/{}", r.key, r.count, r.allowed, r.denied, r.distinct_ips, r.bytes))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(show(GroupBy::Token, &|_| {}), "tokA=6/3/3/3/600 tokB=6/3/3/3/600");
    assert_eq!(
        show(GroupBy::Reason, &|_| {}),
        "ok=6/6/0/3/600 insufficient_scope=3/0/3/3/300 unknown_token=3/0/3/3/300"
    );
    assert_eq!(show(GroupBy::Network, &|_| {}), "10.1.2.0/24=8/4/4/2/800 2001:db8:5::/48=4/2/2/1/400");
    assert_eq!(
        show(GroupBy::Hour, &|_| {}),
        "2026-03-01T10:00Z=4/2/2/3/400 2026-03-01T11:00Z=4/2/2/3/400 2026-03-01T12:00Z=4/2/2/3/400"
    );
    assert_eq!(show(GroupBy::Day, &|q| q.owner = Some("alice".into())), "2026-03-01=6/3/3/3/600");
    assert_eq!(
        show(GroupBy::Decision, &|q| q.route = Some("POST /v1/orders".into())),
        "deny=4/0/4/3/400 allow=2/2/0/2/200"
    );
    assert_eq!(
        show(GroupBy::SourceIp, &|q| q.token_id = Some("tokA".into())),
        "10.1.2.200=2/1/1/1/200 10.1.2.3=2/1/1/1/200 2001:db8:5::9=2/1/1/1/200"
    );
}

pub(crate) fn keeps_findings_and_their_status(store: &dyn Store) {
    use crate::{FindingChange, FindingQuery, FindingRecord};
    let f = |id: &str, kind: &str, last: &str, count: u64| FindingRecord {
        id: id.to_owned(),
        kind: kind.to_owned(),
        severity: "high".to_owned(),
        status: "open".to_owned(),
        token_id: Some("tokA".to_owned()),
        source_ip: Some("203.0.113.5".to_owned()),
        first_seen: t("2026-03-01T10:00:00Z"),
        last_seen: t(last),
        summary: format!("{kind} {count}"),
        evidence: (0..count).map(|i| format!("ev{i}")).collect(),
        event_count: count,
        details: BTreeMap::new(),
        comment: None,
        status_changed_at: t("2026-03-01T10:00:00Z"),
    };
    let new = |id: &str| FindingChange { id: id.to_owned(), previous_severity: None };
    assert_eq!(
        store
            .upsert_findings(&[
                f("fd1", "brute_force", "2026-03-01T10:05:00Z", 3),
                f("fd2", "off_hours", "2026-03-01T11:00:00Z", 1)
            ])
            .unwrap(),
        [new("fd1"), new("fd2")]
    );
    // Extending keeps it one finding.
    assert!(store.upsert_findings(&[f("fd1", "brute_force", "2026-03-01T10:09:00Z", 7)]).unwrap().is_empty());
    let got = store.get_finding("fd1").unwrap().unwrap();
    assert_eq!((got.event_count, got.evidence.len(), got.status.as_str()), (7, 7, "open"));
    // A change of severity is reported with the severity before (alerts with a higher minimum
    // learn of it); the same severity again is not.
    let critical = FindingRecord { severity: "critical".into(), ..f("fd2", "off_hours", "2026-03-01T11:30:00Z", 2) };
    assert_eq!(
        store.upsert_findings(std::slice::from_ref(&critical)).unwrap(),
        [FindingChange { id: "fd2".into(), previous_severity: Some("high".into()) }]
    );
    assert!(store.upsert_findings(&[critical]).unwrap().is_empty());
    assert_eq!(got.last_seen, t("2026-03-01T10:09:00Z"));
    // Resolving records an admin event; later activity reopens it, earlier replays do not.
    let mut ev = admin_event("resolve-1", "fd1");
    store.set_finding_status("fd1", "resolved", "blocked the network", t("2026-03-01T12:00:00Z"), &mut ev).unwrap();
    assert!(ev.seq.is_some());
    assert!(store.upsert_findings(&[f("fd1", "brute_force", "2026-03-01T10:09:00Z", 7)]).unwrap().is_empty());
    assert_eq!(store.get_finding("fd1").unwrap().unwrap().status, "resolved");
    assert_eq!(store.upsert_findings(&[f("fd1", "brute_force", "2026-03-01T13:00:00Z", 9)]).unwrap(), [new("fd1")]);
    let reopened = store.get_finding("fd1").unwrap().unwrap();
    assert_eq!((reopened.status.as_str(), reopened.comment.as_deref()), ("open", Some("blocked the network")));
    let err = store
        .set_finding_status("nope", "resolved", "x", t("2026-03-01T12:00:00Z"), &mut admin_event("r2", "-"))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
    let ids = |q: FindingQuery| {
        store.list_findings(&q).unwrap().items.into_iter().map(|f| f.id).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(ids(FindingQuery { limit: 10, ..Default::default() }), "fd2 fd1");
    assert_eq!(ids(FindingQuery { kind: Some("off_hours".into()), limit: 10, ..Default::default() }), "fd2");
    assert_eq!(ids(FindingQuery { severities: vec!["low".into()], limit: 10, ..Default::default() }), "");
    assert_eq!(ids(FindingQuery { since: Some(t("2026-03-01T12:30:00Z")), limit: 10, ..Default::default() }), "fd1");
    let page = store.list_findings(&FindingQuery { limit: 1, ..Default::default() }).unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(ids(FindingQuery { after: page.next, limit: 10, ..Default::default() }), "fd1");
}

pub(crate) fn sums_scope_use_per_token(store: &dyn Store) {
    trace(store);
    let mut rows = store.scope_usage(t("2026-03-01T10:30:00Z")).unwrap();
    rows.sort();
    let shown: Vec<String> = rows
        .iter()
        .map(|u| format!("{} {} {} {}", u.token_id, u.scope.as_deref().unwrap_or("-"), u.count, u.last))
        .collect();
    assert_eq!(shown, expected_usage());
}

/// Events over five days with every dimension varying (a small linear congruential sequence),
/// for comparing aggregates with the events they count.
fn varied_trace(store: &dyn Store) {
    store.append(&mut varied_events()).unwrap();
}

/// 400 events over five days, varied in every dimension stats and the filters look at.
fn varied_events() -> Vec<Event> {
    let mut x: u64 = 7;
    let mut next = |n: u64| {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % n
    };
    let mut events = Vec::new();
    for i in 0..400u32 {
        let reason =
            [Reason::Ok, Reason::Ok, Reason::Ok, Reason::InsufficientScope, Reason::UnknownToken][next(5) as usize];
        let tok = ["tokA", "tokB", "tokC", "tokD"][next(4) as usize];
        let mut e = access_event(&format!("v{i:03}"), (reason != Reason::UnknownToken).then_some(tok), reason);
        if reason == Reason::UnknownToken {
            e.token_fingerprint = Some(format!("fp{}", next(3)));
        }
        // 2026-03-01T00:00Z plus up to five days, in seconds.
        e.time =
            t("2026-03-01T00:00:00Z").checked_add(jiff::SignedDuration::from_secs(next(5 * 86_400) as i64)).unwrap();
        e.owner = [Some("alice"), Some("bob"), Some("carol"), None][next(4) as usize].map(str::to_owned);
        e.source_ip = [
            Some("10.1.2.3"),
            Some("10.1.2.200"),
            Some("10.9.0.1"),
            Some("2001:db8:5::9"),
            Some("2001:db8:7::1"),
            None,
        ][next(6) as usize]
            .map(str::to_owned);
        let route = next(3);
        e.route = Some(["GET /v1/orders/{id}", "POST /v1/orders", "GET /v1/patients/{id}"][route as usize].to_owned());
        e.resource = Some(["orders", "orders", "patients"][route as usize].to_owned());
        e.action = Some(["read", "write", "read"][route as usize].to_owned());
        e.sensitivity = match next(3) {
            0 => Vec::new(),
            1 => vec!["pii".to_owned()],
            _ => vec!["phi".to_owned(), "pii".to_owned()],
        };
        e.bytes_out = (next(4) != 0).then(|| next(1000));
        events.push(e);
    }
    events
}

/// Every group of `stats`, recomputed from the events `list_events` returns for the same query.
fn stats_from_events(
    store: &dyn Store,
    q: &EventQuery,
    g: crate::GroupBy,
) -> BTreeMap<String, (u64, u64, u64, u64, u64)> {
    use crate::GroupBy as G;
    let mut groups: BTreeMap<String, (u64, u64, u64, std::collections::BTreeSet<String>, u64)> = BTreeMap::new();
    let mut page = EventQuery { order: Order::Asc, limit: 1000, ..q.clone() };
    loop {
        let got = store.list_events(&page).unwrap();
        for e in &got.items {
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
            let key = match g {
                G::Token => dash(&e.token_id.clone().or_else(|| e.token_fingerprint.clone())),
                G::Owner => dash(&e.owner),
                G::Route => dash(&e.route),
                G::Resource => dash(&e.resource),
                G::Reason => e.reason.as_str().to_owned(),
                G::Decision => e.decision.as_str().to_owned(),
                G::SourceIp => dash(&e.source_ip),
                G::Network => match e.source_ip.as_deref().map(|s| s.parse::<std::net::IpAddr>().unwrap()) {
                    Some(std::net::IpAddr::V4(a)) => ipnet::Ipv4Net::new(a, 24).unwrap().trunc().to_string(),
                    Some(std::net::IpAddr::V6(a)) => ipnet::Ipv6Net::new(a, 48).unwrap().trunc().to_string(),
                    None => "-".to_owned(),
                },
                G::Hour => e.time.strftime("%Y-%m-%dT%H:00Z").to_string(),
                G::Day => e.time.strftime("%Y-%m-%d").to_string(),
            };
            let cell = groups.entry(key).or_default();
            cell.0 += 1;
            cell.1 += u64::from(e.decision == Verdict::Allow);
            cell.2 += u64::from(e.decision == Verdict::Deny);
            if let Some(ip) = &e.source_ip {
                cell.3.insert(ip.clone());
            }
            cell.4 += e.bytes_out.unwrap_or(0);
        }
        match got.next {
            Some(n) => page.after = Some(n),
            None => break,
        }
    }
    groups.into_iter().map(|(k, (n, a, d, ips, b))| (k, (n, a, d, ips.len() as u64, b))).collect()
}

/// `stats` agrees with the events it counts for every grouping, filter and time window (whole
/// days, partial days at either edge, less than a day, open ends), also after an erasure.
pub(crate) fn aggregates_agree_with_the_events(store: &dyn Store) {
    varied_trace(store);
    aggregates_agree_with_the_events_so_far(store);
    let mut ev = admin_event("erase1", "tokA");
    assert!(store.erase(&crate::Erasure::Owner("carol".into()), &mut ev).unwrap() > 0);
    let mut ev = admin_event("erase2", "tokA");
    assert!(store.erase(&crate::Erasure::SourceIp("10.9.0.1".into()), &mut ev).unwrap() > 0);
    aggregates_agree_with_the_events_so_far(store);
}

fn aggregates_agree_with_the_events_so_far(store: &dyn Store) {
    use crate::GroupBy as G;
    let windows: [(Option<&str>, Option<&str>); 6] = [
        (None, None),
        (Some("2026-03-02T00:00:00Z"), None),
        (None, Some("2026-03-04T00:00:00Z")),
        (Some("2026-03-01T13:17:00Z"), Some("2026-03-04T05:00:00Z")),
        (Some("2026-03-02T10:00:00Z"), Some("2026-03-02T20:00:00Z")),
        (Some("2026-03-02T10:00:00Z"), Some("2026-03-03T20:00:00Z")),
    ];
    let filters: [&dyn Fn(&mut EventQuery); 8] = [
        &|_| {},
        &|q| q.token_id = Some("tokB".into()),
        &|q| q.owner = Some("carol".into()),
        &|q| q.source_ip = Some("10.0.0.0/8".parse().unwrap()),
        &|q| q.source_ip = Some("::/0".parse().unwrap()),
        &|q| q.sensitivity = Some("phi".into()),
        &|q| q.reason = Some(Reason::InsufficientScope),
        &|q| {
            q.decision = Some(Verdict::Allow);
            q.route = Some("GET /v1/patients/{id}".into());
        },
    ];
    let groups =
        [G::Token, G::Owner, G::Route, G::Resource, G::Reason, G::Decision, G::SourceIp, G::Network, G::Hour, G::Day];
    {
        for (since, until) in windows {
            for (fi, f) in filters.iter().enumerate() {
                let mut q = EventQuery { since: since.map(t), until: until.map(t), ..Default::default() };
                f(&mut q);
                for g in groups {
                    let got: BTreeMap<String, (u64, u64, u64, u64, u64)> = store
                        .stats(&q, g, 1000)
                        .unwrap()
                        .into_iter()
                        .map(|r| (r.key, (r.count, r.allowed, r.denied, r.distinct_ips, r.bytes)))
                        .collect();
                    assert_eq!(got, stats_from_events(store, &q, g), "{since:?}..{until:?}, filter {fi}, {g:?}");
                }
            }
        }
    }
}

fn expected_usage() -> Vec<String> {
    // From `trace`: allowed events are i = 4, 5, 8, 9 after 10:30 (i >= 2): tokA has i = 4 and 8,
    // tokB has 5 and 9; each access event requires orders:write (set by access_event).
    vec!["tokA orders:write 2 2026-03-01T12:00:00Z".to_owned(), "tokB orders:write 2 2026-03-01T12:15:00Z".to_owned()]
}

/// Instantiates every conformance check as a `#[test]` for one backend.
macro_rules! suite {
    ($make:expr) => {
        #[test]
        fn round_trips_tokens() {
            let (_guard, store) = $make;
            $crate::conformance::round_trips_tokens(&store);
        }
        #[test]
        fn refuses_duplicate_token_ids_and_keeps_nothing() {
            let (_guard, store) = $make;
            $crate::conformance::refuses_duplicate_token_ids_and_keeps_nothing(&store);
        }
        #[test]
        fn updates_with_optimistic_concurrency() {
            let (_guard, store) = $make;
            $crate::conformance::updates_with_optimistic_concurrency(&store);
        }
        #[test]
        fn lists_tokens_with_filters_and_pages() {
            let (_guard, store) = $make;
            $crate::conformance::lists_tokens_with_filters_and_pages(&store);
        }
        #[test]
        fn appends_events_gap_free_and_lists_them() {
            let (_guard, store) = $make;
            $crate::conformance::appends_events_gap_free_and_lists_them(&store);
        }
        #[test]
        fn last_used_only_moves_forward() {
            let (_guard, store) = $make;
            $crate::conformance::last_used_only_moves_forward(&store);
        }
        #[test]
        fn builds_the_merkle_tree_as_it_appends() {
            let (_guard, store) = $make;
            $crate::conformance::builds_the_merkle_tree_as_it_appends(&store);
        }
        #[test]
        fn appends_a_bulk_load_whole_or_not_at_all() {
            let (_guard, store) = $make;
            $crate::conformance::appends_a_bulk_load_whole_or_not_at_all(&store);
        }
        #[test]
        fn finds_what_a_large_announced_bulk_load_appended() {
            let (_guard, store) = $make;
            $crate::conformance::finds_what_a_large_announced_bulk_load_appended(&store);
        }
        #[test]
        fn keeps_personal_values_beside_the_leaf_and_erases_them() {
            let (_guard, store) = $make;
            $crate::conformance::keeps_personal_values_beside_the_leaf_and_erases_them(&store);
        }
        #[test]
        fn keeps_one_checkpoint_per_size() {
            let (_guard, store) = $make;
            $crate::conformance::keeps_one_checkpoint_per_size(&store);
        }
        #[test]
        fn filters_events_by_every_field() {
            let (_guard, store) = $make;
            $crate::conformance::filters_events_by_every_field(&store);
        }
        #[test]
        fn aggregates_events() {
            let (_guard, store) = $make;
            $crate::conformance::aggregates_events(&store);
        }
        #[test]
        fn aggregates_agree_with_the_events() {
            let (_guard, store) = $make;
            $crate::conformance::aggregates_agree_with_the_events(&store);
        }
        #[test]
        fn keeps_findings_and_their_status() {
            let (_guard, store) = $make;
            $crate::conformance::keeps_findings_and_their_status(&store);
        }
        #[test]
        fn sums_scope_use_per_token() {
            let (_guard, store) = $make;
            $crate::conformance::sums_scope_use_per_token(&store);
        }
        #[test]
        fn keeps_metadata() {
            let (_guard, store) = $make;
            $crate::conformance::keeps_metadata(&store);
        }
    };
}
pub(crate) use suite;

mod sqlite {
    use crate::{SqliteStore, Store};

    fn make() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        (dir, store)
    }

    super::suite!(make());

    #[test]
    fn events_table_refuses_updates_and_deletes() {
        let (_dir, store) = make();
        store.append(&mut [super::access_event("a0", None, token::Reason::Ok)]).unwrap();
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        let upd = conn.execute("UPDATE events SET reason = 'ok' WHERE seq = 0", []);
        assert!(upd.unwrap_err().to_string().contains("append-only"));
        let del = conn.execute("DELETE FROM events", []);
        assert!(del.unwrap_err().to_string().contains("append-only"));
    }

    /// A store holding `varied_trace`, taken back to an older schema by `downgrade` and opened
    /// again: its stats by `groups` over the whole log are what they were, and agree with the
    /// events.
    fn migrates_from(downgrade: &str, groups: [crate::GroupBy; 3]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let all = |store: &SqliteStore| groups.map(|g| store.stats(&crate::EventQuery::default(), g, 1000).unwrap());
        let before = {
            let store = SqliteStore::open(&path).unwrap();
            super::varied_trace(&store);
            all(&store)
        };
        assert!(before[0].iter().map(|r| r.count).sum::<u64>() > 100, "{:?}", before[0]);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(downgrade).unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(all(&store), before);
        super::aggregates_agree_with_the_events_so_far(&store);
    }

    #[test]
    fn a_store_of_schema_4_is_migrated_and_gets_a_rollup_on_opening() {
        // Schema 4: no rollup, the index of whole addresses. Opening migrates and counts every
        // stored event into the rollup.
        migrates_from(
            "DROP TABLE event_rollup; DROP TABLE rollup_dims; DELETE FROM meta WHERE key = 'rollup_size'; DROP INDEX event_personal_net; \
             CREATE INDEX event_personal_ip_bin ON event_personal(ip_bin) WHERE ip_bin IS NOT NULL; \
             PRAGMA user_version = 4;",
            [crate::GroupBy::Token, crate::GroupBy::Network, crate::GroupBy::Day],
        );
    }

    #[test]
    fn a_large_bulk_load_leaves_the_indexes_as_they_were() {
        let (_dir, store) = make();
        let indexes = || -> Vec<(String, String)> {
            let conn = rusqlite::Connection::open(store.path()).unwrap();
            let mut stmt = conn
                .prepare("SELECT name, COALESCE(sql, '') FROM sqlite_master WHERE type = 'index' ORDER BY name")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<rusqlite::Result<_>>().unwrap()
        };
        let before = indexes();
        assert!(before.iter().any(|(n, _)| n == "event_personal_net"), "{before:?}");
        // The load rebuilds them (announced as large as the log or larger), an abandoned load
        // rolls their drop back.
        for (expected, end) in
            [(1_000_000, crate::Batch::Abort), (1_000_000, crate::Batch::End), (0, crate::Batch::End)]
        {
            let mut given = vec![crate::Batch::Events(super::varied_events()), end].into_iter();
            if store.event_count().unwrap() > 0 {
                given = vec![crate::Batch::End].into_iter();
            }
            store.append_all(expected, &mut |_| given.next().unwrap_or(crate::Batch::End)).unwrap();
            assert_eq!(indexes(), before, "after a load announced as {expected}");
        }
        assert_eq!(store.event_count().unwrap(), 400);
    }

    #[test]
    fn a_large_bulk_load_writes_through_a_rollback_journal_unless_another_connection_is_open() {
        let (_dir, store) = make();
        let path = store.path().to_owned();
        let file = |suffix: &str| std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        let mode = || -> String {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap()
        };
        let events = super::varied_events();
        // Alone with the database: a rollback journal exists while the load writes, no write-
        // ahead log, and afterwards the store is back in WAL mode.
        let mut seen = Vec::new();
        let mut given =
            vec![crate::Batch::Events(events[..200].to_vec()), crate::Batch::Events(events[200..300].to_vec())]
                .into_iter();
        let loaded = store.append_all(1_000_000, &mut |_| {
            seen.push((file("-journal").exists(), file("-wal").exists()));
            given.next().unwrap_or(crate::Batch::End)
        });
        assert_eq!(loaded.unwrap(), Some(300));
        // Asked for the first batch, then the second and the end while (or after) the sealed
        // batches are written.
        assert_eq!(seen.last(), Some(&(true, false)), "(journal, wal) at each batch: {seen:?}");
        assert_eq!(mode(), "wal");
        assert!(!file("-journal").exists());
        // Another connection holding a read open: the load goes through the WAL as usual.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN; SELECT COUNT(*) FROM events;").unwrap();
        let mut seen = Vec::new();
        let mut given = vec![crate::Batch::Events(events[300..].to_vec())].into_iter();
        let loaded = store.append_all(1_000_000, &mut |_| {
            seen.push(file("-journal").exists());
            given.next().unwrap_or(crate::Batch::End)
        });
        assert_eq!(loaded.unwrap(), Some(100));
        assert!(seen.iter().all(|j| !j), "{seen:?}");
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(mode(), "wal");
        assert_eq!(store.event_count().unwrap(), 400);
        assert_eq!(super::stored_root(&store), super::recompute(&store).root());
    }

    #[test]
    fn a_database_held_by_a_bulk_load_is_refused_with_what_holds_it() {
        // What a large bulk load holds once it writes pages through its rollback journal: the
        // database's exclusive lock. Opening the store meanwhile waits out the busy timeout,
        // then says what holds it and that it ends by itself.
        let (_dir, store) = make();
        let path = store.path().to_owned();
        drop(store);
        let holder = rusqlite::Connection::open(&path).unwrap();
        let mode: String = holder.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete");
        holder.execute_batch("BEGIN EXCLUSIVE; INSERT INTO meta (key, value) VALUES ('held', '1');").unwrap();
        let refused = SqliteStore::open(&path).map(|_| ());
        let Err(crate::StoreError::Unavailable(m)) = refused else { panic!("{refused:?}") };
        assert!(m.contains("database is locked") && m.contains("bulk `tokentrail ingest --data-dir`"), "{m}");
        holder.execute_batch("ROLLBACK").unwrap();
        drop(holder);
        assert_eq!(SqliteStore::open(&path).unwrap().event_count().unwrap(), 0);
    }

    #[test]
    fn an_erased_value_leaves_no_byte_in_the_database_files() {
        // Thousands of events from an always-on service and people: by day the service makes a
        // twentieth of the traffic, at night four fifths. Erasing the service's owner empties the
        // night's pages, and SQLite moves rows between pages to fill them. Moving rewrites a page
        // without clearing what its old cells left behind (secure_delete zeroes deleted cells and
        // freed pages, not that gap), so a copy of a row erased a moment later could survive.
        // Which pages get rearranged depends on the exact rows, so several traces are tried:
        // (events per day or night, the service's share at night and by day, in %). Without the
        // compaction after erasure, the first two leave a copy.
        for (block, night_share, day_share) in [(400, 90, 5), (2000, 85, 5), (1, 70, 70), (400, 80, 5)] {
            erase_and_scan(block, night_share, day_share);
        }
    }

    fn erase_and_scan(block: u32, night_share: u64, day_share: u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).unwrap();
        const GONE: &str = "forget-me-4d1c@example.com";
        const GONE_IP: &str = "192.0.2.201";
        let mut x: u64 = 11;
        let mut next = |n: u64| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % n
        };
        let mut events = Vec::new();
        let mut i = 0u32;
        while i < 12_000 {
            let share = if (i / block) % 2 == 1 { night_share } else { day_share };
            for _ in 0..block {
                let who = if next(100) < share { 0 } else { 1 + next(9) };
                let mut e = super::access_event(&format!("r{i:05}"), Some(&format!("tok{who}")), token::Reason::Ok);
                if who == 0 {
                    e.owner = Some(GONE.to_owned());
                    e.source_ip = Some(GONE_IP.to_owned());
                } else {
                    e.owner = Some(format!("owner-{who}@example.com"));
                    e.source_ip = Some(format!("198.51.100.{}", next(250)));
                }
                e.user_agent = Some(format!("client/{}.{} (batch worker)", who, next(9)));
                e.path = Some(format!("/v1/orders/{}", next(1_000_000)));
                events.push(e);
                i += 1;
            }
            if events.len() >= 500 {
                store.append(&mut events).unwrap();
                events.clear();
            }
        }
        store.append(&mut events).unwrap();
        let n = store.erase(&crate::Erasure::Owner(GONE.into()), &mut super::admin_event("erase", "-")).unwrap();
        assert!(n > 500, "the trace erases enough rows to rearrange pages: {n}");
        store.erase(&crate::Erasure::SourceIp(GONE_IP.into()), &mut super::admin_event("erase-ip", "-")).unwrap();
        let ip_bin = GONE_IP.parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped().octets();
        let scan = || -> Vec<String> {
            let mut found = Vec::new();
            for suffix in ["", "-wal"] {
                let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
                let bytes = std::fs::read(&file).unwrap_or_default();
                for (label, needle) in
                    [("owner", GONE.as_bytes()), ("address", GONE_IP.as_bytes()), ("address bytes", &ip_bin[..])]
                {
                    let count = bytes.windows(needle.len()).filter(|w| *w == needle).count();
                    if count > 0 {
                        found.push(format!("the erased {label} occurs {count} times in {}", file.display()));
                    }
                }
            }
            found
        };
        let trace = format!("{block} events per day or night, {night_share}% at night, {day_share}% by day");
        assert_eq!(scan(), Vec::<String>::new(), "while open; {trace}");
        assert!(store.get_event("r00000").unwrap().is_some());
        drop(store);
        assert_eq!(scan(), Vec::<String>::new(), "after closing; {trace}");
    }

    #[test]
    fn a_store_of_schema_6_gets_its_combinations_totals_from_their_days() {
        // Schema 6 has the daily rollup but no totals per combination: the migration sums them
        // from the days, so stats over the whole log (which read the totals) stay right.
        migrates_from(
            "ALTER TABLE rollup_dims DROP COLUMN n; ALTER TABLE rollup_dims DROP COLUMN bytes; PRAGMA user_version = 6;",
            [crate::GroupBy::Token, crate::GroupBy::Owner, crate::GroupBy::Network],
        );
    }

    #[test]
    fn reopening_keeps_everything_and_does_not_migrate_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            super::round_trips_tokens(&store);
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.event_count().unwrap(), 1);
        assert!(store.get_token("tok1").unwrap().is_some());
        // The frontier is read back from stored nodes: appending after a reopen continues the tree.
        store.append(&mut [super::access_event("x", None, token::Reason::Ok)]).unwrap();
        assert_eq!(super::stored_root(&store), super::recompute(&store).root());
    }
}
