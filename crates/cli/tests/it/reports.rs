//! Least privilege and compliance evidence (issue 7) end to end: real traffic through the gateway
//! in front of the test upstream, then the reports over HTTP and through the CLI.
//!
//! Every expectation is derived from the traffic the test itself sent: the recommendations of a
//! known usage, the exact counts of a what-if replay, shadow mode flagging live writes and apply
//! enforcing them, access-review confirmations, and a compliance report whose JSON, CSV and HTML
//! carry the same numbers, whose integrity statement verifies with the log's key, and whose HTML
//! renders in real headless Chromium (Debian's `chromium`, installed by `.ci/run`).
//!
//! No assertion depends on how long anything took: waits poll with a deadline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cli::client::RawResponse;
use engine::Clock as _;
use hyper::Method;
use proto::EventView;
use serde_json::{Value, json};

use crate::testkit::{
    EVENTUALLY, GatewayRig, assert_problem, eventually, field_errors, json_body, send_empty, send_json, token_id,
};

/// The route policy: orders (financial), inventory, patients (phi).
const POLICY: &str = r#"
[[route]]
method = "GET"
path = "/v1/orders/{id}"
resource = "orders"
action = "read"
sensitivity = ["financial"]

[[route]]
method = "POST"
path = "/v1/orders"
resource = "orders"
action = "write"
sensitivity = ["financial"]

[[route]]
method = "DELETE"
path = "/v1/orders/{id}"
resource = "orders"
action = "admin"

[[route]]
method = "GET"
path = "/v1/inventory/{id}"
resource = "inventory"
action = "read"

[[route]]
method = "POST"
path = "/v1/inventory"
resource = "inventory"
action = "write"

[[route]]
method = "GET"
path = "/v1/patients/{id}"
resource = "patients"
action = "read"
sensitivity = ["phi"]
"#;

/// The shared gateway rig with this module's helpers.
struct Rig(GatewayRig);

impl std::ops::Deref for Rig {
    type Target = GatewayRig;
    fn deref(&self) -> &GatewayRig {
        &self.0
    }
}

impl Rig {
    /// Starts a server with [`POLICY`], the configuration changed by `tune`.
    async fn start(tune: impl FnOnce(&mut config::Config)) -> Rig {
        Rig(GatewayRig::start(POLICY, |c, _| tune(c)).await)
    }

    /// An admin GET that must answer 200 with text.
    async fn get_text(&self, path: &str) -> String {
        let resp = send_empty(&self.s.client, Method::GET, path).await;
        assert_eq!(resp.status.as_u16(), 200, "GET {path}: {}", String::from_utf8_lossy(&resp.body));
        String::from_utf8(resp.body.to_vec()).expect("UTF-8")
    }

    /// `POST /v1/tokens/{id}/narrow`.
    async fn narrow(&self, id: &str, body: Value) -> RawResponse {
        send_json(&self.s.client, Method::POST, &format!("/v1/tokens/{id}/narrow"), &body).await
    }

    /// Events matching `query` (without the `?`), oldest first.
    async fn events(&self, query: &str) -> Vec<EventView> {
        let page = self.s.client.list_events(&format!("?{query}&order=asc&limit=1000")).await.expect("list events");
        assert!(page.next_cursor.is_none(), "more than a page of events for {query}");
        page.events
    }

    /// One event by id.
    async fn event(&self, id: &str) -> EventView {
        self.s.client.get_event(id).await.expect("get the event")
    }

    /// Waits until each token's `last_used_at` (written in batches) is set.
    async fn wait_last_used(&self, ids: &[&str]) {
        for id in ids {
            eventually(&format!("last_used_at of token {id}"), EVENTUALLY, async || {
                self.get(&format!("/v1/tokens/{id}")).await["last_used_at"].is_string().then_some(())
            })
            .await;
        }
    }
}

/// `v` with each token id replaced by `<name>` (in strings and keys) and the times at `time_keys`
/// replaced by `<time>` after checking that they are RFC 3339 times.
fn redact(v: &Value, names: &[(&str, &str)], time_keys: &[&str]) -> Value {
    let text = |s: &str| names.iter().fold(s.to_owned(), |acc, (id, name)| acc.replace(id, &format!("<{name}>")));
    match v {
        Value::String(s) => Value::String(text(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| redact(x, names, time_keys)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let x = match x {
                        Value::String(t) if time_keys.contains(&k.as_str()) => {
                            t.parse::<jiff::Timestamp>().unwrap_or_else(|e| panic!("{k}: {t:?} is not a time: {e}"));
                            json!("<time>")
                        }
                        x => redact(x, names, time_keys),
                    };
                    (text(k), x)
                })
                .collect(),
        ),
        v => v.clone(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON")
}

/// The token entry of a least-privilege report.
fn entry<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["token_id"] == id)
        .unwrap_or_else(|| panic!("token {id} is not in the report: {}", pretty(report)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_recommends_exactly_what_real_traffic_shows() {
    let rig = Rig::start(|_| {}).await;
    let (reader, reader_id) = rig.token("reader-admin", "shop", &["orders:admin"], json!({})).await;
    let (wild, wild_id) = rig.token("wild-writer", "shop", &["*:write"], json!({})).await;
    let (_idle, idle_id) = rig.token("idle", "shop", &["orders:read"], json!({})).await;
    let (forever, forever_id) = rig.token("forever", "shop", &["inventory:read"], json!({ "no_expiry": true })).await;
    let (exact, exact_id) = rig.token("exact", "shop", &["orders:read", "inventory:write"], json!({})).await;

    for i in 1..=3 {
        rig.allowed("GET", &format!("/v1/orders/{i}"), &reader).await;
    }
    rig.allowed("POST", "/v1/orders", &wild).await;
    rig.allowed("POST", "/v1/orders", &wild).await;
    rig.allowed("GET", "/v1/inventory/7", &wild).await;
    rig.allowed("GET", "/v1/inventory/8", &forever).await;
    rig.allowed("GET", "/v1/orders/9", &exact).await;
    rig.allowed("POST", "/v1/inventory", &exact).await;
    // Denied attempts are not use: they must not make a grant look needed.
    rig.denied("DELETE", "/v1/orders/9", Some(&exact), 403, "insufficient_scope").await;
    rig.denied("POST", "/v1/orders", Some(&forever), 403, "insufficient_scope").await;
    rig.wait_last_used(&[&reader_id, &wild_id, &forever_id, &exact_id]).await;

    let report = rig.get("/v1/reports/least-privilege?owner=shop").await;
    let names = [
        (reader_id.as_str(), "reader-admin"),
        (wild_id.as_str(), "wild-writer"),
        (idle_id.as_str(), "idle"),
        (forever_id.as_str(), "forever"),
        (exact_id.as_str(), "exact"),
    ];
    let got = redact(&report, &names, &["generated_at", "last_used_at"]);
    let narrow_reader = json!({
        "token_id": "<reader-admin>",
        "kind": "narrow",
        "from": ["orders:admin"],
        "to": ["orders:read"],
        "reason": "3 allowed requests in 90 days needed only orders:read; granted orders:admin",
        "evidence": { "allowed_requests": "3", "used orders:read": "3", "window_days": "90" },
        "command": "tokentrail token narrow <reader-admin> --to orders:read --what-if",
    });
    let narrow_wild = json!({
        "token_id": "<wild-writer>",
        "kind": "narrow",
        "from": ["*:write"],
        "to": ["inventory:read", "orders:write"],
        "reason": "3 allowed requests in 90 days needed only inventory:read orders:write; granted *:write",
        "evidence": {
            "allowed_requests": "3",
            "used inventory:read": "1",
            "used orders:write": "2",
            "window_days": "90",
        },
        "command": "tokentrail token narrow <wild-writer> --to inventory:read --to orders:write --what-if",
    });
    let expiry_forever = json!({
        "token_id": "<forever>",
        "kind": "set_expiry",
        "from": ["inventory:read"],
        "reason": "the token never expires",
        "evidence": {},
        "command": "tokentrail token update <forever> --expires-in 90d",
    });
    let expected = json!({
        "generated_at": "<time>",
        "window_days": 90,
        "tokens": [
            {
                "token_id": "<reader-admin>", "name": "reader-admin", "owner": "shop", "state": "active",
                "granted": ["orders:admin"], "used": ["orders:read"], "unused": [],
                "last_used_at": "<time>", "recommendations": [narrow_reader],
            },
            {
                "token_id": "<wild-writer>", "name": "wild-writer", "owner": "shop", "state": "active",
                "granted": ["*:write"], "used": ["inventory:read", "orders:write"], "unused": [],
                "last_used_at": "<time>", "recommendations": [narrow_wild],
            },
            {
                // Never used, but younger than reports.unused_for (30 days): nothing yet.
                "token_id": "<idle>", "name": "idle", "owner": "shop", "state": "active",
                "granted": ["orders:read"], "used": [], "unused": ["orders:read"],
                "last_used_at": null, "recommendations": [],
            },
            {
                "token_id": "<forever>", "name": "forever", "owner": "shop", "state": "active",
                "granted": ["inventory:read"], "used": ["inventory:read"], "unused": [],
                "last_used_at": "<time>", "recommendations": [expiry_forever],
            },
            {
                // Exactly what it uses (its denied DELETE is not use): nothing to change.
                "token_id": "<exact>", "name": "exact", "owner": "shop", "state": "active",
                "granted": ["orders:read", "inventory:write"], "used": ["inventory:write", "orders:read"],
                "unused": [], "last_used_at": "<time>", "recommendations": [],
            },
        ],
        "recommendations": [narrow_reader, narrow_wild, expiry_forever],
        "summary": { "narrow": 2, "set_expiry": 1 },
    });
    assert_eq!(got, expected, "the least-privilege report:\n{}", pretty(&got));

    // The CLI's JSON is the API's.
    let cli = rig.s.cli(&["report", "least-privilege", "--owner", "shop", "--format", "json"]).await.json();
    assert_eq!(redact(&cli, &names, &["generated_at", "last_used_at"]), expected);
    // The table for people lists the tokens with something to change, each with its command.
    let table = rig.s.cli(&["report", "least-privilege", "--owner", "shop"]).await;
    let table = &table.success().stdout;
    for id in [&reader_id, &wild_id, &forever_id] {
        assert!(table.contains(id.as_str()), "{id} missing from:\n{table}");
    }
    for id in [&idle_id, &exact_id] {
        assert!(!table.contains(id.as_str()), "{id} has nothing to change, yet it is listed:\n{table}");
    }
    assert!(table.contains(&format!("$ tokentrail token narrow {reader_id} --to orders:read --what-if")), "{table}");
    // CSV: one row per recommendation.
    let csv = rig.s.cli(&["report", "least-privilege", "--owner", "shop", "--format", "csv"]).await;
    let lines: Vec<&str> = csv.success().stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"TOKEN,KIND,FROM,TO,REASON,COMMAND"), "{}", csv.stdout);
    assert_eq!(lines.len(), 4, "a header and three recommendations: {}", csv.stdout);
    assert!(lines[2].starts_with(&format!("{wild_id},narrow,*:write,inventory:read orders:write,")), "{}", csv.stdout);

    // Without the owner filter the bootstrap admin token is there too: it is used exactly as
    // granted (the admin API), and it never expires.
    let all = rig.get("/v1/reports/least-privilege").await;
    let admin = entry(&all, &token_id(&rig.s.admin_token));
    assert_eq!(admin["granted"], json!(["tokentrail:admin"]), "{}", pretty(admin));
    assert_eq!(admin["used"], json!(["tokentrail:admin"]), "{}", pretty(admin));
    let kinds: Vec<&Value> = admin["recommendations"].as_array().expect("recs").iter().map(|r| &r["kind"]).collect();
    assert_eq!(kinds, [&json!("set_expiry")], "{}", pretty(admin));
    assert_eq!(all["tokens"].as_array().map(Vec::len), Some(6), "{}", pretty(&all));

    // Bad input.
    let resp = send_empty(&rig.s.client, Method::GET, "/v1/reports/least-privilege?window=forever").await;
    assert_eq!(field_errors(&assert_problem(&resp, 400, "invalid_field"))[0].0, "window");
    let resp = send_empty(&rig.s.client, Method::GET, "/v1/reports/least-privilege?colour=blue").await;
    assert_eq!(resp.status.as_u16(), 400, "{}", String::from_utf8_lossy(&resp.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_used_token_is_recommended_for_revocation_once_unused_for_has_passed() {
    let rig = Rig::start(|c| c.reports.unused_for = Duration::from_secs(1)).await;
    let (_t, id) = rig.token("forgotten", "shop", &["orders:read"], json!({ "no_expiry": true })).await;
    let recs = eventually("a revoke recommendation", EVENTUALLY, async || {
        let r = rig.get("/v1/reports/least-privilege?owner=shop").await;
        let recs = entry(&r, &id)["recommendations"].clone();
        recs.as_array()?.iter().any(|x| x["kind"] == "revoke").then_some(recs)
    })
    .await;
    // Revoking makes every other change moot: the token's missing expiry is not mentioned.
    let expected = json!([{
        "token_id": "<forgotten>",
        "kind": "revoke",
        "from": ["orders:read"],
        "reason": "never used since it was created, less than a day ago",
        "evidence": { "created_days_ago": "0" },
        "command": "tokentrail token revoke <forgotten> --reason \"unused\"",
    }]);
    assert_eq!(redact(&recs, &[(&id, "forgotten")], &[]), expected, "{}", pretty(&recs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_for_shorter_than_a_day_does_not_flag_tokens_in_use() {
    // reports.unused_for = 12h: a token created a moment ago, and one used a moment ago, have
    // not been unused for 12 hours.
    let rig = Rig::start(|c| c.reports.unused_for = Duration::from_secs(12 * 3600)).await;
    let (busy, busy_id) = rig.token("busy", "shop", &["orders:read"], json!({})).await;
    let (_new, new_id) = rig.token("new", "shop", &["orders:read"], json!({})).await;
    rig.allowed("GET", "/v1/orders/1", &busy).await;
    rig.wait_last_used(&[&busy_id]).await;
    let r = rig.get("/v1/reports/least-privilege?owner=shop").await;
    for id in [&busy_id, &new_id] {
        let recs = &entry(&r, id)["recommendations"];
        assert_eq!(
            recs,
            &json!([]),
            "token {id} is recommended for revocation with unused_for = 12h: {}",
            pretty(recs)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_replays_the_recorded_history_with_exact_counts() {
    let rig = Rig::start(|_| {}).await;
    let (t, id) = rig.token("mixed", "shop", &["orders:write"], json!({})).await;
    const READS: u64 = 4;
    const WRITES: u64 = 3;
    for i in 1..=READS {
        rig.allowed("GET", &format!("/v1/orders/{i}"), &t).await;
    }
    let mut writes = Vec::new();
    for _ in 0..WRITES {
        writes.push(rig.allowed("POST", "/v1/orders", &t).await);
    }
    // A denied request was never allowed, so no narrower grant can break it: not considered.
    rig.denied("DELETE", "/v1/orders/1", Some(&t), 403, "insufficient_scope").await;

    // The writes as the events API shows them are the ones the gateway named.
    let allowed = rig.events(&format!("token_id={id}&kind=access&decision=allow")).await;
    let api_writes: Vec<String> =
        allowed.iter().filter(|e| e.method.as_deref() == Some("POST")).map(|e| e.id.clone()).collect();
    assert_eq!(api_writes, writes);
    assert_eq!(allowed.len() as u64, READS + WRITES);

    let resp = rig.narrow(&id, json!({ "to": ["orders:read"], "what_if": true })).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    let expected = json!({
        "token_id": id,
        "proposed": ["orders:read"],
        "window_days": 90,
        "considered": READS + WRITES,
        "would_deny": WRITES,
        "would_deny_events": writes,
        "by_route": { "POST /v1/orders": WRITES },
    });
    assert_eq!(json_body(&resp), expected);

    // The same through the CLI, as JSON and as a sentence.
    let cli = rig.s.cli(&["token", "narrow", &id, "--to", "orders:read", "--what-if", "--format", "json"]).await;
    assert_eq!(cli.json(), expected);
    let text = rig.s.cli(&["token", "narrow", &id, "--to", "orders:read", "--what-if"]).await;
    let text = &text.success().stdout;
    assert!(
        text.starts_with("3 of 7 recorded requests in the last 90 days would have been denied with [orders:read]\n"),
        "{text}"
    );
    assert!(text.contains("POST /v1/orders") && text.contains('3'), "{text}");

    // A grant that covers everything would deny nothing; the window is the one asked for.
    let resp = rig.narrow(&id, json!({ "to": ["orders:write"], "what_if": true, "window": "1d" })).await;
    let v = json_body(&resp);
    assert_eq!(
        (v["would_deny"].clone(), v["considered"].clone(), v["window_days"].clone(), v["by_route"].clone()),
        (json!(0), json!(READS + WRITES), json!(1), json!({})),
        "{}",
        pretty(&v)
    );
    // Two proposed scopes; the reads of another resource are not this token's.
    let resp = rig.narrow(&id, json!({ "to": ["inventory:write", "orders:read"], "what_if": true })).await;
    assert_eq!(json_body(&resp)["would_deny"], json!(WRITES));

    // A what-if changes nothing: same scopes, same revision, no admin event but the creation.
    let token = rig.get(&format!("/v1/tokens/{id}")).await;
    assert_eq!((token["scopes"].clone(), token["revision"].clone()), (json!(["orders:write"]), json!(1)));
    assert!(token.get("shadow_scopes").is_none(), "not in shadow mode: {}", pretty(&token));
    let admin: Vec<Option<String>> =
        rig.events(&format!("kind=admin&target={id}")).await.into_iter().map(|e| e.operation).collect();
    assert_eq!(admin, [Some("token.create".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_flags_live_requests_and_apply_enforces_the_narrower_grant() {
    let rig = Rig::start(|_| {}).await;
    let (t, id) = rig.token("writer", "shop", &["orders:write"], json!({})).await;

    let resp = rig.narrow(&id, json!({ "to": ["orders:read"], "shadow": true })).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    let v = json_body(&resp);
    assert_eq!((v["scopes"].clone(), v["shadow_scopes"].clone()), (json!(["orders:write"]), json!(["orders:read"])));

    // Decisions keep the real scopes: writes are forwarded, and their events say what the proposed
    // scopes would have done. Reads, which the proposed scopes allow, carry no such flag.
    let w1 = rig.allowed("POST", "/v1/orders", &t).await;
    let read = rig.allowed("GET", "/v1/orders/1", &t).await;
    let w2 = rig.allowed("POST", "/v1/orders", &t).await;
    for w in [&w1, &w2] {
        let e = rig.event(w).await;
        assert_eq!(e.details.get("shadow_decision").map(String::as_str), Some("deny"), "{e:#?}");
        assert_eq!(e.details.get("shadow_scopes").map(String::as_str), Some("orders:read"), "{e:#?}");
        assert_eq!((e.decision.as_str(), e.reason.as_str()), ("allow", "ok"));
    }
    let e = rig.event(&read).await;
    assert!(!e.details.contains_key("shadow_decision"), "a read flagged: {e:#?}");

    // The detectors (every 250 ms) raise a shadow_deny finding with both writes as evidence (one
    // per token and UTC day: two if the writes straddle midnight).
    let findings = eventually("shadow_deny findings covering both writes", EVENTUALLY, async || {
        let list = rig.get(&format!("/v1/findings?type=shadow_deny&token_id={id}")).await;
        let fs = list["findings"].as_array()?.clone();
        (fs.iter().filter_map(|f| f["event_count"].as_u64()).sum::<u64>() == 2).then_some(fs)
    })
    .await;
    let mut evidence = Vec::new();
    for f in &findings {
        assert_eq!((f["type"].as_str(), f["severity"].as_str()), (Some("shadow_deny"), Some("low")), "{}", pretty(f));
        assert_eq!(f["token_id"], json!(id));
        let summary = f["summary"].as_str().expect("summary");
        assert!(summary.contains("[orders:read]") && summary.contains("POST /v1/orders"), "{summary}");
        evidence.extend(serde_json::from_value::<Vec<String>>(f["evidence_event_ids"].clone()).expect("ids"));
    }
    evidence.sort();
    let mut writes = vec![w1.clone(), w2.clone()];
    writes.sort();
    assert_eq!(evidence, writes, "{}", pretty(&json!(findings)));

    // Bad input: precise 400s and 404s, and nothing changes.
    let bad = [
        (json!({ "to": ["orders:read"], "shadow": true, "apply": true }), "what_if"),
        (json!({ "to": ["orders:read"], "what_if": true, "apply": true }), "what_if"),
        (json!({ "to": ["orders:read"] }), "what_if"),
        (json!({ "to": ["orders"], "apply": true }), "to[0]"),
        (json!({ "to": ["orders:read", "orders:fly"], "what_if": true }), "to[1]"),
        (json!({ "to": [], "apply": true }), "to"),
        (json!({ "to": ["orders:read"], "what_if": true, "window": "soon" }), "window"),
    ];
    for (body, field) in bad {
        let resp = rig.narrow(&id, body.clone()).await;
        let p = assert_problem(&resp, 400, "invalid_field");
        let fields: Vec<String> = field_errors(&p).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, [field], "{body}: {}", pretty(&p));
    }
    let resp = rig.narrow(&id, json!({ "to": ["orders:read"], "apply": true, "force": true })).await;
    let p = assert_problem(&resp, 400, "invalid_request");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("force")), "{}", pretty(&p));
    for mode in ["what_if", "shadow", "apply"] {
        let resp = rig.narrow("AAAAAAAAAAAAAAAA", json!({ "to": ["orders:read"], mode: true })).await;
        assert_problem(&resp, 404, "not_found");
    }
    let cli = rig.s.cli(&["token", "narrow", &id, "--to", "orders:read", "--what-if", "--apply"]).await;
    assert_eq!(cli.code, 2, "two modes are a usage error: {cli:#?}");
    let cli = rig.s.cli(&["token", "narrow", &id, "--to", "orders:read"]).await;
    assert_eq!(cli.code, 2, "no mode is a usage error: {cli:#?}");
    let cli = rig.s.cli(&["token", "narrow", &id, "--to", "orders", "--apply"]).await;
    assert_eq!(cli.code, 1, "{cli:#?}");
    assert!(cli.stderr.contains("to[0]"), "the error names the field: {cli:#?}");
    let token = rig.get(&format!("/v1/tokens/{id}")).await;
    assert_eq!(
        (token["scopes"].clone(), token["shadow_scopes"].clone()),
        (json!(["orders:write"]), json!(["orders:read"]))
    );

    // Apply through the CLI: the proposed scopes become the real ones, shadow mode ends.
    let applied =
        rig.s.cli(&["token", "narrow", &id, "--to", "orders:read", "--apply", "--format", "json"]).await.json();
    assert_eq!(applied["scopes"], json!(["orders:read"]), "{}", pretty(&applied));
    assert!(applied.get("shadow_scopes").is_none(), "shadow mode ended: {}", pretty(&applied));
    rig.denied("POST", "/v1/orders", Some(&t), 403, "insufficient_scope").await;
    let read = rig.allowed("GET", "/v1/orders/2", &t).await;
    assert!(!rig.event(&read).await.details.contains_key("shadow_decision"));

    // Both changes are audited admin actions with the before and after.
    let admin = rig.events(&format!("kind=admin&target={id}")).await;
    let ops: Vec<&str> = admin.iter().filter_map(|e| e.operation.as_deref()).collect();
    assert_eq!(ops, ["token.create", "token.shadow", "token.narrow"]);
    let shadow = &admin[1];
    assert_eq!(shadow.details.get("shadow_scopes").map(String::as_str), Some(" -> orders:read"), "{shadow:#?}");
    let narrow = &admin[2];
    assert_eq!(narrow.details.get("scopes").map(String::as_str), Some("orders:write -> orders:read"), "{narrow:#?}");
    assert_eq!(narrow.details.get("shadow_scopes").map(String::as_str), Some("orders:read -> "), "{narrow:#?}");
    assert_eq!(narrow.token_id.as_deref(), Some(token_id(&rig.s.admin_token).as_str()));

    // A revoked token cannot be narrowed.
    rig.s.client.revoke_token(&id, "done").await.expect("revoke");
    let resp = rig.narrow(&id, json!({ "to": ["orders:read"], "apply": true })).await;
    assert_problem(&resp, 409, "token_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_review_confirmation_is_audited_and_shown_in_the_reports() {
    let rig = Rig::start(|_| {}).await;
    let from = rig.s.engine().now().to_string();
    let (_t, id) = rig.token("partner-feed", "partners", &["orders:read"], json!({})).await;
    let (_u, other) = rig.token("unreviewed", "partners", &["inventory:read"], json!({})).await;

    let before = rig.get("/v1/reports/access-review?owner=partners").await;
    assert!(entry(&before, &id).get("confirmed_at").is_none(), "{}", pretty(&before));

    let out = rig.s.cli(&["token", "confirm", &id, "--comment", "still needed for the nightly sync"]).await;
    assert_eq!(out.success().stdout, format!("confirmed token {id}\n"));
    let confirms = rig.events(&format!("kind=admin&target={id}")).await;
    let confirm: Vec<&EventView> =
        confirms.iter().filter(|e| e.operation.as_deref() == Some("token.confirm")).collect();
    assert_eq!(confirm.len(), 1, "{confirms:#?}");
    let first = confirm[0].clone();
    assert_eq!(first.details.get("comment").map(String::as_str), Some("still needed for the nightly sync"));
    assert_eq!(first.details.get("scopes").map(String::as_str), Some("orders:read"));
    assert_eq!(first.token_id.as_deref(), Some(token_id(&rig.s.admin_token).as_str()));

    let review = rig.get("/v1/reports/access-review?owner=partners").await;
    assert_eq!(entry(&review, &id)["confirmed_at"], json!(first.time), "{}", pretty(&review));
    assert!(entry(&review, &other).get("confirmed_at").is_none(), "{}", pretty(&review));
    let table = rig.s.cli(&["report", "access-review", "--owner", "partners"]).await;
    let table = &table.success().stdout;
    assert!(table.contains(&format!("confirmed {}", first.time)), "{table}");
    assert!(table.contains("confirmed never"), "{table}");

    // Over HTTP: 204 without a body (the comment is optional); the latest confirmation counts.
    let resp = send_empty(&rig.s.client, Method::POST, &format!("/v1/tokens/{id}/confirm")).await;
    assert_eq!(resp.status.as_u16(), 204, "{}", String::from_utf8_lossy(&resp.body));
    assert!(resp.body.is_empty());
    let confirms: Vec<EventView> = rig
        .events(&format!("kind=admin&target={id}"))
        .await
        .into_iter()
        .filter(|e| e.operation.as_deref() == Some("token.confirm"))
        .collect();
    assert_eq!(confirms.len(), 2);
    let review = rig.get("/v1/reports/access-review?owner=partners").await;
    assert_eq!(entry(&review, &id)["confirmed_at"], json!(confirms[1].time));

    // Bad input.
    let resp = send_json(&rig.s.client, Method::POST, "/v1/tokens/AAAAAAAAAAAAAAAA/confirm", &json!({})).await;
    assert_problem(&resp, 404, "not_found");
    let long = "x".repeat(1001);
    let resp =
        send_json(&rig.s.client, Method::POST, &format!("/v1/tokens/{id}/confirm"), &json!({ "comment": long })).await;
    assert_eq!(field_errors(&assert_problem(&resp, 400, "invalid_field"))[0].0, "comment");
    let resp =
        send_json(&rig.s.client, Method::POST, &format!("/v1/tokens/{id}/confirm"), &json!({ "note": "x" })).await;
    assert_problem(&resp, 400, "invalid_request");
    let cli = rig.s.cli(&["token", "confirm", "AAAAAAAAAAAAAAAA"]).await;
    assert_eq!(cli.code, 1, "{cli:#?}");

    // The next compliance report lists both reviews, also among the admin changes.
    let report = rig.get(&format!("/v1/reports/compliance?from={from}")).await;
    let ids = |v: &Value| -> Vec<String> {
        v.as_array().expect("events").iter().map(|e| e["id"].as_str().expect("id").to_owned()).collect()
    };
    let reviews = ids(&report["reviews"]);
    assert_eq!(reviews, [confirms[0].id.clone(), confirms[1].id.clone()], "{}", pretty(&report["reviews"]));
    let admin = ids(&report["admin_changes"]);
    assert!(reviews.iter().all(|r| admin.contains(r)), "{admin:?}");
    assert_eq!(entry(&report["least_privilege"], &id)["confirmed_at"], json!(confirms[1].time));
}

// The compliance report.

/// The business hours of a week whose working days are neither today nor tomorrow (UTC), so
/// every request of a test is outside them whenever it runs.
fn hours_excluding_today(now: jiff::Timestamp) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let today =
        usize::try_from(jiff::tz::TimeZone::UTC.to_datetime(now).weekday().to_monday_zero_offset()).expect("a weekday");
    format!("{}-{} 00-24", DAYS[(today + 2) % 7], DAYS[(today + 6) % 7])
}

/// The numbers of a compliance report keyed `(section, key, metric)`: exactly the rows its CSV
/// form must have, derived here from the JSON form.
fn numbers(r: &Value) -> BTreeMap<(String, String, String), String> {
    let mut out = BTreeMap::new();
    let mut put = |s: &str, k: &str, m: &str, v: &Value| {
        let v = match v {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let old = out.insert((s.to_owned(), k.to_owned(), m.to_owned()), v);
        assert!(old.is_none(), "({s}, {k}, {m}) twice");
    };
    for (k, v) in r["totals"].as_object().expect("totals") {
        put("totals", "-", k, v);
    }
    for section in ["access_by_token", "access_by_owner", "access_by_resource", "requests_per_day", "denials_by_reason"]
    {
        for g in r[section].as_array().expect(section) {
            for m in ["count", "allowed", "denied", "distinct_ips", "bytes"] {
                put(section, g["key"].as_str().expect("key"), m, &g[m]);
            }
        }
    }
    for s in r["sensitive_access"].as_array().expect("sensitive_access") {
        let key = format!("{} {}", s["token_id"].as_str().expect("token"), s["label"].as_str().expect("label"));
        for m in ["count", "denied", "off_hours"] {
            put("sensitive_access", &key, m, &s[m]);
        }
    }
    for f in r["findings"].as_array().expect("findings") {
        let metric = format!(
            "{} {} {}",
            f["type"].as_str().expect("type"),
            f["severity"].as_str().expect("severity"),
            f["status"].as_str().expect("status")
        );
        put("findings", f["id"].as_str().expect("id"), &metric, &f["event_count"]);
    }
    for (k, v) in r["least_privilege"]["summary"].as_object().expect("summary") {
        put("least_privilege", "-", k, v);
    }
    let i = &r["integrity"];
    put("integrity", "-", "verified", &i["verified"]);
    put("integrity", "-", "events_covered", &i["events_covered"]);
    if !i["checkpoint_size"].is_null() {
        put("integrity", "-", "checkpoint_size", &i["checkpoint_size"]);
    }
    out
}

/// Parses the CSV form (`section,key,metric,value`, RFC 4180 quoting) into the same shape.
fn csv_numbers(csv: &str) -> BTreeMap<(String, String, String), String> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("section,key,metric,value"), "the CSV header:\n{csv}");
    let mut out = BTreeMap::new();
    for line in lines {
        let cells = csv_cells(line);
        assert_eq!(cells.len(), 4, "a row of four cells: {line:?}");
        let key = (cells[0].clone(), cells[1].clone(), cells[2].clone());
        assert!(out.insert(key, cells[3].clone()).is_none(), "a row twice: {line:?}");
    }
    out
}

fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().expect("a cell").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().expect("a cell").push(c),
        }
    }
    cells
}

/// The numbers the HTML form carries, read from its markup: an element with
/// `data-section="S"` opens section S, `data-key="K"` a row, and an element with
/// `data-metric="M"` holds the value as its text. Works on the file and on Chromium's DOM.
fn html_numbers(html: &str) -> BTreeMap<(String, String, String), String> {
    let mut out = BTreeMap::new();
    let (mut section, mut key) = (String::new(), String::new());
    let mut rest = html;
    while let Some(at) = rest.find("data-") {
        rest = &rest[at + 5..];
        let Some((name, after)) = rest.split_once("=\"") else { break };
        if name.contains(|c: char| !c.is_ascii_alphabetic() && c != '-') {
            continue;
        }
        let (value, after) = after.split_once('"').expect("a closed attribute");
        let value = unescape(value);
        match name {
            "section" => (section, key) = (value, String::new()),
            "key" => key = value,
            "metric" => {
                let text = after.split_once('>').expect("a tag").1.split('<').next().expect("text");
                let k = (section.clone(), key.clone(), value);
                assert!(out.insert(k.clone(), unescape(text.trim())).is_none(), "{k:?} twice in the HTML");
            }
            _ => {}
        }
        rest = after;
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// The CSV numbers as the HTML names them: findings show their event count as `events`.
fn as_html(csv: &BTreeMap<(String, String, String), String>) -> BTreeMap<(String, String, String), String> {
    csv.iter()
        .map(|((s, k, m), v)| {
            let m = if s == "findings" { "events".to_owned() } else { m.clone() };
            ((s.clone(), k.clone(), m), v.clone())
        })
        .collect()
}

/// A stat group of a report section by key.
fn group<'a>(r: &'a Value, section: &str, key: &str) -> &'a Value {
    r[section]
        .as_array()
        .expect(section)
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {section}: {}", pretty(&r[section])))
}

/// `(count, allowed, denied)` of a stat group.
fn cad(g: &Value) -> (u64, u64, u64) {
    let n = |m: &str| g[m].as_u64().unwrap_or_else(|| panic!("{m} of {g}"));
    (n("count"), n("allowed"), n("denied"))
}

/// The traffic of the compliance tests, with what it must add up to.
struct Traffic {
    clinic: String,
    batch: String,
    gone: String,
    /// Event ids of sensitive requests (all of them outside business hours).
    sensitive: Vec<String>,
    /// The end of the period: just after the traffic.
    to: jiff::Timestamp,
}

/// Sends the compliance scenario's traffic.
async fn compliance_traffic(rig: &Rig) -> Traffic {
    let (clinic, clinic_id) = rig.token("clinic", "hospital", &["patients:read", "orders:read"], json!({})).await;
    let (batch, batch_id) = rig.token("batch", "warehouse", &["inventory:write"], json!({})).await;
    let (gone, gone_id) = rig.token("gone", "legacy", &["orders:read"], json!({})).await;
    rig.s.client.revoke_token(&gone_id, "replaced by clinic").await.expect("revoke");
    let mut sensitive = Vec::new();
    for i in 1..=3 {
        sensitive.push(rig.allowed("GET", &format!("/v1/patients/{i}"), &clinic).await);
    }
    for i in 1..=2 {
        sensitive.push(rig.allowed("GET", &format!("/v1/orders/{i}"), &clinic).await);
    }
    sensitive.push(rig.denied("POST", "/v1/orders", Some(&clinic), 403, "insufficient_scope").await);
    rig.denied("GET", "/v1/nothing/here", Some(&clinic), 403, "route_not_found").await;
    rig.allowed("POST", "/v1/inventory", &batch).await;
    rig.allowed("POST", "/v1/inventory", &batch).await;
    sensitive.push(rig.denied("GET", "/v1/patients/1", Some(&batch), 403, "insufficient_scope").await);
    sensitive.push(rig.denied("GET", "/v1/orders/1", None, 401, "missing_token").await);
    sensitive.push(rig.denied("GET", "/v1/orders/1", Some(&gone), 401, "revoked").await);
    // The period ends here, before the admin API's own reads below (they are access events too).
    let to = rig.s.engine().now();
    // The detectors follow the ledger in order: once the last request has raised its finding,
    // every finding about this traffic is there.
    eventually("a revoked_token_use finding", EVENTUALLY, async || {
        let list = rig.get(&format!("/v1/findings?type=revoked_token_use&token_id={gone_id}")).await;
        list["findings"].as_array().is_some_and(|f| !f.is_empty()).then_some(())
    })
    .await;
    Traffic { clinic: clinic_id, batch: batch_id, gone: gone_id, sensitive, to }
}

/// JSON, CSV and HTML of the same period, fetched while nothing in the period changed: the
/// detectors may still be adding findings about it, so a JSON is fetched before and after the
/// other two and the three are kept only when both JSONs carry the same numbers.
async fn same_period(rig: &Rig, query: &str) -> (Value, String, String) {
    eventually("three forms of an unchanging report", EVENTUALLY, async || {
        let before = rig.get(&format!("/v1/reports/compliance?{query}&format=json")).await;
        let csv = rig.get_text(&format!("/v1/reports/compliance?{query}&format=csv")).await;
        let html = rig.get_text(&format!("/v1/reports/compliance?{query}&format=html")).await;
        let after = rig.get(&format!("/v1/reports/compliance?{query}")).await;
        (numbers(&before) == numbers(&after)).then_some((after, csv, html))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compliance_report_carries_the_same_numbers_as_json_csv_and_html_and_proves_its_integrity() {
    let mut hours = String::new();
    let rig = Rig::start(|c| {
        hours = hours_excluding_today(engine::SystemClock.now());
        c.detect.business_hours = hours.clone();
    })
    .await;
    let from_day = jiff::tz::TimeZone::UTC.to_datetime(rig.s.engine().now()).date().yesterday().expect("a date");
    let t = compliance_traffic(&rig).await;
    let to = t.to;
    let query = format!("from={from_day}&to={to}");
    // A checkpoint that covers the period, signed before any report asks for one.
    let resp = send_empty(&rig.s.client, Method::POST, "/v1/audit/checkpoint").await;
    assert!(resp.status.is_success(), "{}", String::from_utf8_lossy(&resp.body));

    let (r, csv, html) = same_period(&rig, &query).await;
    let ctx = || format!("business hours {hours}; the report:\n{}", pretty(&r));

    // The numbers, as the traffic above makes them.
    let admin_id = token_id(&rig.s.admin_token);
    assert_eq!(r["from"], json!(format!("{from_day}T00:00:00.000000Z")), "{}", ctx());
    let totals = &r["totals"];
    let expected_totals = json!({
        "requests": 12, "allowed": 7, "denied": 5,
        "tokens": 4, // clinic, batch, gone (revoked in the period) and the bootstrap admin
        "findings": r["findings"].as_array().expect("findings").len(),
        "admin_changes": 5, // the bootstrap token's creation, three more and one revocation
        "sensitive_requests": 9, "off_hours_sensitive_requests": 9,
    });
    assert_eq!(totals, &expected_totals, "{}", ctx());
    assert_eq!(cad(group(&r, "access_by_token", &t.clinic)), (7, 5, 2), "{}", ctx());
    assert_eq!(cad(group(&r, "access_by_token", &t.batch)), (3, 2, 1), "{}", ctx());
    assert_eq!(cad(group(&r, "access_by_token", &t.gone)), (1, 0, 1), "{}", ctx());
    assert_eq!(cad(group(&r, "access_by_token", "-")), (1, 0, 1), "{}", ctx());
    assert_eq!(r["access_by_token"].as_array().map(Vec::len), Some(4), "no admin reads in the period: {}", ctx());
    assert_eq!(cad(group(&r, "access_by_owner", "hospital")), (7, 5, 2), "{}", ctx());
    assert_eq!(cad(group(&r, "access_by_owner", "warehouse")), (3, 2, 1), "{}", ctx());
    assert_eq!(cad(group(&r, "access_by_owner", "legacy")), (1, 0, 1), "{}", ctx());
    assert_eq!(cad(group(&r, "access_by_resource", "patients")), (4, 3, 1), "{}", ctx());
    assert_eq!(cad(group(&r, "access_by_resource", "inventory")), (2, 2, 0), "{}", ctx());
    assert_eq!(cad(group(&r, "access_by_resource", "orders")), (5, 2, 3), "{}", ctx());
    let reasons: BTreeMap<&str, u64> = r["denials_by_reason"]
        .as_array()
        .expect("denials")
        .iter()
        .map(|g| (g["key"].as_str().expect("key"), g["count"].as_u64().expect("count")))
        .collect();
    let expected_reasons: BTreeMap<&str, u64> =
        [("insufficient_scope", 2), ("missing_token", 1), ("revoked", 1), ("route_not_found", 1)].into();
    assert_eq!(reasons, expected_reasons, "{}", ctx());
    let days: u64 = r["requests_per_day"].as_array().expect("days").iter().map(|g| g["count"].as_u64().unwrap()).sum();
    assert_eq!(days, 12);

    // Sensitive data: by token and label, every request outside business hours.
    let sensitive: BTreeMap<String, (u64, u64, u64)> = r["sensitive_access"]
        .as_array()
        .expect("sensitive")
        .iter()
        .map(|s| {
            let n = |m: &str| s[m].as_u64().expect(m);
            (
                format!("{} {}", s["token_id"].as_str().unwrap(), s["label"].as_str().unwrap()),
                (n("count"), n("denied"), n("off_hours")),
            )
        })
        .collect();
    let expected_sensitive: BTreeMap<String, (u64, u64, u64)> = [
        (format!("{} phi", t.clinic), (3, 0, 3)),
        (format!("{} financial", t.clinic), (3, 1, 3)),
        (format!("{} phi", t.batch), (1, 1, 1)),
        (format!("{} financial", t.gone), (1, 1, 1)),
        ("- financial".to_owned(), (1, 1, 1)),
    ]
    .into();
    assert_eq!(sensitive, expected_sensitive, "{}", ctx());
    let off: Vec<&str> =
        r["off_hours_access"].as_array().expect("off").iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(off, t.sensitive.iter().map(String::as_str).collect::<Vec<_>>(), "{}", ctx());

    // Administrative changes and the least-privilege status.
    let ops: Vec<(&str, &str)> = r["admin_changes"]
        .as_array()
        .expect("admin")
        .iter()
        .map(|e| (e["operation"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ops,
        [
            ("token.create", admin_id.as_str()),
            ("token.create", t.clinic.as_str()),
            ("token.create", t.batch.as_str()),
            ("token.create", t.gone.as_str()),
            ("token.revoke", t.gone.as_str()),
        ],
        "{}",
        ctx()
    );
    let states: BTreeMap<&str, &str> = r["inventory"]
        .as_array()
        .expect("inventory")
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["state"].as_str().unwrap()))
        .collect();
    let expected_states: BTreeMap<&str, &str> = [
        (t.clinic.as_str(), "active"),
        (t.batch.as_str(), "active"),
        (t.gone.as_str(), "revoked"),
        (admin_id.as_str(), "active"),
    ]
    .into();
    assert_eq!(states, expected_states, "{}", ctx());
    assert!(r["least_privilege"]["summary"].as_object().is_some_and(|s| !s.is_empty()), "{}", ctx());

    // The integrity statement: a signed checkpoint covering every event of the period, which
    // verifies with the key `tokentrail audit key` prints.
    let i = &r["integrity"];
    let last = rig.events(&format!("until={to}")).await.into_iter().filter_map(|e| e.seq).max().expect("events");
    assert_eq!(i["events_covered"], json!(last + 1), "{}", pretty(i));
    assert_eq!(i["verified"], json!(true), "{}", pretty(i));
    assert!(i["verification"].as_str().is_some_and(|v| v.starts_with("ok: ")), "{}", pretty(i));
    let key = rig.s.cli(&["audit", "key"]).await;
    let key = key.success().stdout.trim();
    assert_eq!(i["verifier_key"], json!(key));
    let verifier: ledger::note::Verifier = key.parse().expect("a verifier key");
    let note = i["checkpoint"].as_str().expect("a checkpoint");
    let origin = i["log"].as_str().expect("the log's name");
    let cp = ledger::checkpoint::open_checkpoint(note, origin, &[verifier]).expect("the checkpoint verifies");
    assert_eq!(Some(cp.size()), i["checkpoint_size"].as_u64(), "{}", pretty(i));
    assert!(cp.size() > last, "the checkpoint (size {}) covers the period's last event ({last})", cp.size());
    let commands = i["commands"].as_array().expect("commands");
    assert!(
        commands.iter().any(|c| c.as_str().is_some_and(|c| c.starts_with("tokentrail audit verify"))),
        "{}",
        pretty(i)
    );

    // The controls mapping.
    let controls: Vec<(&str, &str)> = r["controls"]
        .as_array()
        .expect("controls")
        .iter()
        .map(|c| (c["framework"].as_str().unwrap(), c["control"].as_str().unwrap()))
        .collect();
    assert_eq!(
        controls,
        [
            ("SOC 2", "CC6.1"),
            ("SOC 2", "CC6.2"),
            ("SOC 2", "CC7.2"),
            ("HIPAA", "§164.312(b)"),
            ("PCI DSS 4.0", "10.2"),
            ("PCI DSS 4.0", "10.5"),
            ("GDPR", "Art. 30"),
            ("GDPR", "Art. 32"),
        ]
    );
    for c in r["controls"].as_array().expect("controls") {
        for s in c["sections"].as_array().expect("sections") {
            let s = s.as_str().expect("a section");
            assert!(r.get(s).is_some(), "control {} names section {s}, which the report does not have", c["control"]);
        }
    }

    // CSV and HTML carry exactly the JSON's numbers.
    let from_json = numbers(&r);
    assert_eq!(csv_numbers(&csv), from_json, "CSV against JSON; the CSV:\n{csv}");
    assert_eq!(html_numbers(&html), as_html(&from_json), "HTML against JSON");

    // The CLI writes the same report to files.
    let dir = tempfile::tempdir().expect("a directory");
    let (from_s, to_s) = (from_day.to_string(), to.to_string());
    for format in ["json", "csv", "html"] {
        let out = dir.path().join(format!("report.{format}"));
        let args = ["report", "compliance", "--from", &from_s, "--to", &to_s, "--format", format, "--out"];
        let run = rig.s.cli(&[&args[..], &[out.to_str().expect("a path")]].concat()).await;
        run.success();
        let text = std::fs::read_to_string(&out).expect("the report file");
        let got = match format {
            "json" => numbers(&serde_json::from_str(&text).expect("JSON")),
            "csv" => csv_numbers(&text),
            _ => html_numbers(&text),
        };
        let want = if format == "html" { as_html(&from_json) } else { from_json.clone() };
        assert_eq!(got, want, "tokentrail report compliance --format {format}");
    }

    // Without --format or --out, a terminal gets the headline numbers, not a page of HTML.
    let summary = rig.s.cli(&["report", "compliance", "--from", &from_s, "--to", &to_s]).await;
    summary.success();
    let t = &r["totals"];
    let want = format!("requests         {} ({} allowed, {} denied)\n", t["requests"], t["allowed"], t["denied"]);
    assert!(summary.stdout.contains(&want), "{want:?} in {}", summary.stdout);
    assert!(summary.stdout.contains("integrity        verified ("), "{}", summary.stdout);
    assert!(!summary.stdout.contains('<'), "{}", summary.stdout);

    // Bad periods and formats: precise 400s.
    let bad = [
        ("to=2030-01-01", "from"),
        ("from=yesterday", "from"),
        ("from=2026-02-30", "from"),
        (&*format!("from={from_day}&to=later"), "to"),
        (&*format!("from={to}&to={from_day}"), "to"),
        (&*format!("from={from_day}&format=pdf"), "format"),
    ];
    for (q, field) in bad {
        let resp = send_empty(&rig.s.client, Method::GET, &format!("/v1/reports/compliance?{q}")).await;
        let p = assert_problem(&resp, 400, "invalid_field");
        assert_eq!(field_errors(&p)[0].0, field, "{q}: {}", pretty(&p));
    }
    let resp =
        send_empty(&rig.s.client, Method::GET, &format!("/v1/reports/compliance?from={from_day}&colour=red")).await;
    assert_eq!(resp.status.as_u16(), 400);
    let cli = rig.s.cli(&["report", "compliance", "--from", "last tuesday", "--format", "json"]).await;
    assert_eq!(cli.code, 1, "{cli:#?}");
    assert!(cli.stderr.contains("from"), "{cli:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_access_inside_business_hours_is_not_counted_as_off_hours() {
    let rig = Rig::start(|c| c.detect.business_hours = "Mon-Sun 00-24".to_owned()).await;
    let from = rig.s.engine().now();
    let (t, _) = rig.token("clinic", "hospital", &["patients:read"], json!({})).await;
    rig.allowed("GET", "/v1/patients/1", &t).await;
    rig.allowed("GET", "/v1/patients/2", &t).await;
    let to = rig.s.engine().now();
    let r = rig.get(&format!("/v1/reports/compliance?from={from}&to={to}")).await;
    assert_eq!(r["totals"]["sensitive_requests"], json!(2), "{}", pretty(&r["totals"]));
    assert_eq!(r["totals"]["off_hours_sensitive_requests"], json!(0), "{}", pretty(&r["totals"]));
    assert_eq!(r["off_hours_access"], json!([]));
}

// The HTML report in a real browser.

/// Where Debian's `chromium` is, or a failure naming the package.
fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("headless Chromium is needed for this test: install Debian's `chromium` package (.ci/run does)")
    })
}

/// One Chromium run with the flags that work headless as root; returns stdout. Fails the test if
/// Chromium fails or hangs.
fn run_chromium(profile: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start chromium: {e}"));
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("chromium's output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &id.to_string()]).status();
            panic!("chromium {args:?} did not finish within 60 s");
        }
    };
    assert!(
        out.status.success(),
        "chromium {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR", "not a PNG");
    let n = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes"));
    (n(16), n(20))
}

/// The `rect` bars of the SVG with this id: `(class, data-label, data-value)`.
fn bars_of(dom: &str, id: &str) -> Vec<(String, String, u64)> {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let svg = &dom[start..start + dom[start..].find("</svg>").expect("the SVG ends")];
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(unescape(&tag[at..at + tag[at..].find('"')?]))
    };
    svg.split("<rect")
        .skip(1)
        .map(|t| &t[..t.find('>').expect("a tag")])
        .filter(|t| attr(t, "class").is_some_and(|c| c.split(' ').any(|c| c == "bar")))
        .map(|t| {
            let value = attr(t, "data-value").expect("data-value").parse().expect("a number");
            let height = attr(t, "height").and_then(|h| h.parse::<f64>().ok()).unwrap_or(0.0);
            let width = attr(t, "width").and_then(|w| w.parse::<f64>().ok()).unwrap_or(0.0);
            assert!(height > 0.0 && width > 0.0, "a bar that cannot be seen in #{id}: <rect{t}>");
            (attr(t, "class").expect("class"), attr(t, "data-label").expect("data-label"), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_headless_chromium_with_its_charts() {
    chromium();
    let rig = Rig::start(|c| c.detect.business_hours = hours_excluding_today(engine::SystemClock.now())).await;
    let from_day = jiff::tz::TimeZone::UTC.to_datetime(rig.s.engine().now()).date().yesterday().expect("a date");
    let t = compliance_traffic(&rig).await;
    let to = t.to;
    let query = format!("from={from_day}&to={to}");
    let (r, _, _) = same_period(&rig, &query).await;

    let dir = tempfile::tempdir().expect("a directory");
    let report = dir.path().join("report.html");
    let (from_s, to_s) = (from_day.to_string(), to.to_string());
    let out = report.to_str().expect("a path");
    rig.s
        .cli(&["report", "compliance", "--from", &from_s, "--to", &to_s, "--format", "html", "--out", out])
        .await
        .success();
    let html = std::fs::read_to_string(&report).expect("the report");

    // One self-contained file: no scripts, no stylesheets or images from elsewhere.
    for needle in ["<script", "<link", "<img", "<iframe", "<object", "@import"] {
        assert!(!html.to_ascii_lowercase().contains(needle), "the report contains {needle}");
    }
    for attr in ["src=", "href=", "url("] {
        for (at, _) in html.match_indices(attr) {
            let value = html[at + attr.len()..].trim_start_matches(['"', '\'']);
            assert!(
                !value.starts_with("http:") && !value.starts_with("https:") && !value.starts_with("//"),
                "a remote asset: {}",
                &html[at..(at + 80).min(html.len())]
            );
        }
    }

    let url = format!("file://{}", report.display());
    let dom = run_chromium(&dir.path().join("profile-dom"), &["--dump-dom", &url]);
    assert!(dom.trim_end().ends_with("</html>"), "the DOM is complete: {}", &dom[dom.len().saturating_sub(200)..]);
    for section in [
        "integrity",
        "activity",
        "access",
        "sensitive",
        "findings",
        "admin",
        "least-privilege",
        "inventory",
        "controls",
    ] {
        assert!(dom.contains(&format!("id=\"{section}\"")), "section #{section} is missing from the DOM");
    }
    // The DOM carries the JSON's numbers (the totals and every table).
    let from_json = as_html(&numbers(&r));
    let from_dom = html_numbers(&dom);
    assert_eq!(from_dom, from_json, "the numbers in Chromium's DOM");
    assert!(dom.contains(&t.clinic), "the clinic token is named");

    // The charts have one bar per non-zero value, with the data's values.
    let mut want: Vec<(String, String, u64)> = Vec::new();
    for g in r["requests_per_day"].as_array().expect("days") {
        for kind in ["allowed", "denied"] {
            let n = g[kind].as_u64().expect("a number");
            if n > 0 {
                want.push((format!("bar {kind}"), g["key"].as_str().expect("key").to_owned(), n));
            }
        }
    }
    assert_eq!(bars_of(&dom, "chart-requests"), want, "#chart-requests");
    let want: Vec<(String, String, u64)> = r["denials_by_reason"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|g| ("bar denied".to_owned(), g["key"].as_str().unwrap().to_owned(), g["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(bars_of(&dom, "chart-denials"), want, "#chart-denials");
    let mut want: Vec<(String, String, u64)> = Vec::new();
    for g in r["access_by_token"].as_array().expect("tokens").iter().take(10) {
        for kind in ["allowed", "denied"] {
            let n = g[kind].as_u64().expect("a number");
            if n > 0 {
                want.push((format!("bar {kind}"), g["key"].as_str().unwrap().to_owned(), n));
            }
        }
    }
    assert_eq!(bars_of(&dom, "chart-tokens"), want, "#chart-tokens");

    // A screenshot that is not blank: compared with a blank page of the same size, same run.
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body></body></html>")
        .expect("write the blank page");
    let shot = |name: &str, page: &Path| {
        let png = dir.path().join(name);
        let arg = format!("--screenshot={}", png.display());
        run_chromium(
            &dir.path().join(format!("profile-{name}")),
            &[&arg, "--window-size=1200,2000", &format!("file://{}", page.display())],
        );
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot {}: {e}", png.display()))
    };
    let page = shot("report.png", &report);
    let empty = shot("blank.png", &blank);
    assert_eq!(png_size(&page), (1200, 2000));
    assert_eq!(png_size(&empty), (1200, 2000));
    assert_ne!(page, empty, "the report's screenshot is the blank page's");
    assert!(
        page.len() > empty.len() * 4,
        "the report's screenshot ({} bytes) is not much larger than a blank page's ({} bytes)",
        page.len(),
        empty.len()
    );

    // Printed, it breaks into pages (print CSS: each major section starts a page).
    let pdf = dir.path().join("report.pdf");
    let arg = format!("--print-to-pdf={}", pdf.display());
    run_chromium(&dir.path().join("profile-pdf"), &["--no-pdf-header-footer", &arg, &url]);
    let pdf = std::fs::read(&pdf).expect("the PDF");
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    let pages = pdf
        .windows(b"/Type /Page\n".len())
        .filter(|w| w.starts_with(b"/Type /Page") && !w.starts_with(b"/Type /Pages"))
        .count();
    assert!(pages >= 3, "the printed report has {pages} pages");
    // To look at what the test saw: REPORTS_KEEP_DIR=/some/dir keeps the HTML, PNG and PDF.
    if let Some(keep) = std::env::var_os("REPORTS_KEEP_DIR") {
        for name in ["report.html", "report.png", "report.pdf"] {
            std::fs::copy(dir.path().join(name), Path::new(&keep).join(name)).expect("keep a file");
        }
    }
}
