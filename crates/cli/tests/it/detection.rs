//! Detection (issue 6) end to end: findings raised by the live server from real gateway traffic,
//! listed, filtered, shown, acknowledged and resolved over HTTP and through the CLI; the offline
//! `tokentrail detect` over the server's own export finding exactly what the server found; and the
//! alert sinks (a signed webhook with retries and a dead-letter file, RFC 5424 syslog over UDP and
//! TCP, an NDJSON file), each receiving the findings at or above its minimum severity.
//!
//! The traffic is chosen so that every finding is deterministic and its expected contents follow
//! from what the test sent: a token denied on six routes (`scope_probing`), a revoked token
//! presented again (`revoked_token_use`), well-formed tokens nobody issued from one address
//! (`brute_force`), a token in shadow mode (`shadow_deny`) and an expired token (`expired_token_use`).
//! None of them depends on the time of day or on a learned baseline.
//!
//! Nothing sleeps to make an assertion pass: waits poll with a deadline, and no assertion is about
//! how long something took. The webhook's backoff (1, 2, 4, 8, 16 s) is fixed in the server, so
//! the dead-letter test takes a little over 31 s by itself.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cli::client::RawResponse;
use engine::Clock as _;
use http_body_util::{BodyExt as _, Full};
use hyper::Method;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::testkit::{
    CliOutput, EVENTUALLY, GatewayRig, assert_problem, eventually, field_errors, json_body, run_cli, send_empty,
    send_json, token_id,
};

/// The route policy: seven plain resources and one `phi` route.
const POLICY: &str = r#"
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
path = "/v1/orders/{id}"
resource = "orders"
action = "read"

[[route]]
method = "POST"
path = "/v1/orders"
resource = "orders"
action = "write"

[[route]]
method = "GET"
path = "/v1/invoices/{id}"
resource = "invoices"
action = "read"

[[route]]
method = "GET"
path = "/v1/users/{id}"
resource = "users"
action = "read"

[[route]]
method = "GET"
path = "/v1/shipments/{id}"
resource = "shipments"
action = "read"

[[route]]
method = "GET"
path = "/v1/patients/{id}"
resource = "patients"
action = "read"
sensitivity = ["phi"]
"#;

/// Six distinct routes a token holding only `inventory:read` is denied on (five make probing).
const PROBED: [(&str, &str); 6] = [
    ("POST", "/v1/inventory"),
    ("GET", "/v1/orders/1"),
    ("POST", "/v1/orders"),
    ("GET", "/v1/invoices/1"),
    ("GET", "/v1/users/1"),
    ("GET", "/v1/shipments/1"),
];

/// The owner of every token these tests issue.
const OWNER: &str = "detect-test";

/// How many unknown tokens the brute-force incident presents (the threshold is 20; 80 would make
/// it critical).
const GUESSES: usize = 25;

/// How long the dead-letter test may wait: the server retries after 1, 2, 4, 8 and 16 s.
const DEAD_LETTER_DEADLINE: Duration = Duration::from_secs(90);

/// The shared gateway rig with this module's helpers.
struct Rig(GatewayRig);

impl std::ops::Deref for Rig {
    type Target = GatewayRig;
    fn deref(&self) -> &GatewayRig {
        &self.0
    }
}

impl Rig {
    /// Starts a server with [`POLICY`], its configuration changed by `tune` (which gets the test's
    /// temporary directory, for sink files).
    async fn start(tune: impl FnOnce(&mut config::Config, &Path)) -> Rig {
        Rig(GatewayRig::start(POLICY, tune).await)
    }

    fn root(&self) -> &Path {
        self.s.root.path()
    }

    /// Where undeliverable alerts go: `alerts-dead-letter.ndjson` in the data directory.
    fn dead_letter(&self) -> std::path::PathBuf {
        self.root().join("data").join("alerts-dead-letter.ndjson")
    }

    /// `GET /v1/findings?<query>` (one page of up to 1000); the findings.
    async fn findings(&self, query: &str) -> Vec<Value> {
        let sep = if query.is_empty() { "" } else { "&" };
        let list = self.get(&format!("/v1/findings?limit=1000{sep}{query}")).await;
        assert!(list["next_cursor"].is_null(), "one page: {}", pretty(&list));
        list["findings"].as_array().expect("findings").clone()
    }

    /// `POST /v1/findings/{id}/{action}` with `body`.
    async fn set_status(&self, id: &str, action: &str, body: &Value) -> RawResponse {
        send_json(&self.s.client, Method::POST, &format!("/v1/findings/{id}/{action}"), body).await
    }

    /// Revokes token `id`.
    async fn revoke(&self, id: &str) {
        self.s.client.revoke_token(id, "leaked in a CI log").await.expect("revoke");
    }

    /// Puts token `id` in shadow mode with the proposed scopes `to`.
    async fn shadow(&self, id: &str, to: &[&str]) {
        let resp = send_json(
            &self.s.client,
            Method::POST,
            &format!("/v1/tokens/{id}/narrow"),
            &json!({"to": to, "shadow": true}),
        )
        .await;
        assert_eq!(resp.status.as_u16(), 200, "shadow mode: {}", String::from_utf8_lossy(&resp.body));
    }

    /// Waits until the finding `id` satisfies `done`, and returns it.
    async fn wait_finding(&self, what: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(what, EVENTUALLY, async || {
            let resp = send_empty(&self.s.client, Method::GET, &format!("/v1/findings/{id}")).await;
            let f = (resp.status.as_u16() == 200).then(|| json_body(&resp))?;
            done(&f).then_some(f)
        })
        .await
    }

    /// Waits until exactly one finding of `kind` for token `token` (or any, with `None`) exists and
    /// satisfies `done`, and returns it.
    async fn wait_one(&self, kind: &str, token: Option<&str>, done: impl Fn(&Value) -> bool) -> Value {
        let query = match token {
            Some(t) => format!("type={kind}&token_id={t}"),
            None => format!("type={kind}"),
        };
        eventually(&format!("a {kind} finding ({query})"), EVENTUALLY, async || {
            let fs = self.findings(&query).await;
            assert!(fs.len() <= 1, "one {kind} finding: {}", pretty(&json!(fs)));
            fs.into_iter().next().filter(|f| done(f))
        })
        .await
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} is not a string: {}", pretty(v)))
}

fn ids(findings: &[Value]) -> BTreeSet<String> {
    findings.iter().map(|f| str_of(f, "id").to_owned()).collect()
}

fn evidence(f: &Value) -> Vec<String> {
    serde_json::from_value(f["evidence_event_ids"].clone()).expect("evidence ids")
}

fn time(v: &Value, key: &str) -> Timestamp {
    str_of(v, key).parse().unwrap_or_else(|e| panic!("{key} is not a time ({e}): {}", pretty(v)))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A well-formed token with a valid checksum that nobody issued.
fn forged() -> String {
    let mut fill = |b: &mut [u8]| engine::os_random(b).expect("random bytes");
    token::TokenString::generate(&token::Prefix::default(), &mut fill).expose().to_owned()
}

// ---------------------------------------------------------------------------------------------
// The incidents and the findings they must raise.

/// What [`raise_incidents`] did: each incident's token and the events that show it.
struct Incidents {
    prober: String,
    probes: Vec<String>,
    leaked: String,
    /// The revoked token itself, to present it again.
    leaked_token: String,
    revoked_uses: Vec<String>,
    guesses: Vec<String>,
    writer: String,
    shadow_writes: Vec<String>,
}

/// Sends the traffic of four incidents through the gateway, one after the other.
async fn raise_incidents(rig: &Rig) -> Incidents {
    // scope_probing: a token holding inventory:read, denied on six other routes.
    let (t, prober) = rig.token("prober", OWNER, &["inventory:read"], json!({})).await;
    rig.allowed("GET", "/v1/inventory/1", &t).await;
    let mut probes = Vec::new();
    for (m, p) in PROBED {
        probes.push(rig.denied(m, p, Some(&t), 403, "insufficient_scope").await);
    }

    // revoked_token_use: a token used, revoked, and presented three more times on a phi route.
    let (leaked_token, leaked) = rig.token("leaked", OWNER, &["patients:read"], json!({})).await;
    rig.allowed("GET", "/v1/patients/1", &leaked_token).await;
    rig.revoke(&leaked).await;
    let mut revoked_uses = Vec::new();
    for i in 2..5 {
        revoked_uses.push(rig.denied("GET", &format!("/v1/patients/{i}"), Some(&leaked_token), 401, "revoked").await);
    }

    // brute_force: well-formed tokens nobody issued, all from 127.0.0.1.
    let mut guesses = Vec::new();
    for _ in 0..GUESSES {
        guesses.push(rig.denied("GET", "/v1/inventory/7", Some(&forged()), 401, "unknown_token").await);
    }

    // shadow_deny: a writer whose proposed scopes (orders:read) would deny its write.
    let (t, writer) = rig.token("writer", OWNER, &["orders:write"], json!({})).await;
    rig.shadow(&writer, &["orders:read"]).await;
    let shadow_writes = vec![rig.allowed("POST", "/v1/orders", &t).await];

    Incidents { prober, probes, leaked, leaked_token, revoked_uses, guesses, writer, shadow_writes }
}

/// What one finding of [`raise_incidents`] must be.
struct Expected<'a> {
    kind: &'a str,
    severity: &'a str,
    token: Option<&'a str>,
    /// Parts of the summary, with the numbers.
    fragments: Vec<&'a str>,
    /// Exactly the evidence.
    events: &'a [String],
}

/// Waits until the server has found the four incidents in full, checks every finding against the
/// traffic that raised it, and returns them by type.
async fn expect_incident_findings(rig: &Rig, inc: &Incidents) -> BTreeMap<String, Value> {
    let expected_counts: BTreeMap<&str, u64> = [
        ("scope_probing", inc.probes.len() as u64),
        ("revoked_token_use", inc.revoked_uses.len() as u64),
        ("brute_force", GUESSES as u64),
        ("shadow_deny", 1),
    ]
    .into();
    let all = eventually("the four incidents' findings, complete", EVENTUALLY, async || {
        let fs = rig.findings("").await;
        let counts: BTreeMap<&str, u64> =
            fs.iter().map(|f| (str_of(f, "type"), f["event_count"].as_u64().unwrap_or(0))).collect();
        (counts == expected_counts && fs.len() == expected_counts.len()).then_some(fs)
    })
    .await;
    let by_type: BTreeMap<String, Value> = all.iter().map(|f| (str_of(f, "type").to_owned(), f.clone())).collect();

    let probing_summary = format!("on {} distinct routes within 10 minutes", PROBED.len());
    let revoked_summary = format!("was presented {} times, last from 127.0.0.1", inc.revoked_uses.len());
    let brute_summary = format!("{GUESSES} bad credentials");
    let expectations = [
        Expected {
            kind: "scope_probing",
            severity: "high",
            token: Some(&inc.prober),
            fragments: vec![&probing_summary, "(it holds [inventory:read])"],
            events: &inc.probes,
        },
        Expected {
            kind: "revoked_token_use",
            // high, raised one level because the route is phi.
            severity: "critical",
            token: Some(&inc.leaked),
            fragments: vec![&revoked_summary, "revoked at"],
            events: &inc.revoked_uses,
        },
        Expected {
            kind: "brute_force",
            severity: "high",
            token: None,
            fragments: vec![&brute_summary, "127.0.0.0/24", "within 5 minutes"],
            events: &inc.guesses,
        },
        Expected {
            kind: "shadow_deny",
            severity: "low",
            token: Some(&inc.writer),
            fragments: vec!["[orders:read]", "POST /v1/orders"],
            events: &inc.shadow_writes,
        },
    ];
    for Expected { kind, severity, token, fragments, events } in expectations {
        let f = &by_type[kind];
        let text = pretty(f);
        assert!(str_of(f, "id").starts_with("fd_"), "{text}");
        assert_eq!(str_of(f, "severity"), severity, "{text}");
        assert_eq!(f["token_id"].as_str(), token, "{text}");
        assert_eq!(f["source_ip"], "127.0.0.1", "{text}");
        assert_eq!(str_of(f, "status"), "open", "{text}");
        assert!(f.get("comment").is_none_or(Value::is_null), "{text}");
        let summary = str_of(f, "summary");
        for fragment in fragments {
            assert!(summary.contains(fragment), "the summary of {kind} lacks {fragment:?}: {text}");
        }
        if let Some(t) = token {
            assert!(summary.contains(t), "the summary names the token: {text}");
        }
        // The evidence is exactly the events of the incident, each one in the log with the reason
        // that makes it evidence; first and last seen are the first and last of their times.
        assert_eq!(sorted(evidence(f)), sorted(events.to_vec()), "the evidence of {kind}: {text}");
        let mut times = Vec::new();
        for id in events {
            let e = rig.s.client.get_event(id).await.unwrap_or_else(|e| panic!("evidence {id} of {kind}: {e}"));
            assert_eq!(e.token_id.as_deref(), token, "{e:#?}");
            let reason = match kind {
                "scope_probing" => "insufficient_scope",
                "revoked_token_use" => "revoked",
                "brute_force" => "unknown_token",
                _ => "ok",
            };
            assert_eq!(e.reason, reason, "{e:#?}");
            times.push(e.time.parse::<Timestamp>().expect("an event time"));
        }
        let (first, last) = (times.iter().min().expect("evidence"), times.iter().max().expect("evidence"));
        assert_eq!((time(f, "first_seen"), time(f, "last_seen")), (*first, *last), "{text}");
    }
    by_type
}

// ---------------------------------------------------------------------------------------------
// 1. Findings over HTTP and through the CLI.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_findings_are_listed_filtered_shown_acknowledged_and_resolved_over_http_and_the_cli() {
    let rig = Rig::start(|_, _| {}).await;
    let inc = raise_incidents(&rig).await;
    let found = expect_incident_findings(&rig, &inc).await;
    let id_of = |kind: &str| str_of(&found[kind], "id").to_owned();
    let (probing, revoked, brute, shadow) =
        (id_of("scope_probing"), id_of("revoked_token_use"), id_of("brute_force"), id_of("shadow_deny"));
    let all = rig.findings("").await;
    let every: BTreeSet<String> = ids(&all);
    let set = |v: &[&String]| v.iter().map(|s| (*s).clone()).collect::<BTreeSet<String>>();

    // Filters, each alone and together.
    let since_brute = str_of(&found["brute_force"], "last_seen").to_owned();
    let active_since_brute: BTreeSet<String> = all
        .iter()
        .filter(|f| time(f, "last_seen") >= time(&found["brute_force"], "last_seen"))
        .map(|f| str_of(f, "id").to_owned())
        .collect();
    assert!(active_since_brute.contains(&brute) && !active_since_brute.contains(&probing));
    let cases: Vec<(String, BTreeSet<String>)> = vec![
        ("type=brute_force".into(), set(&[&brute])),
        ("type=scope_probing".into(), set(&[&probing])),
        ("type=revoked_token_use".into(), set(&[&revoked])),
        ("type=shadow_deny".into(), set(&[&shadow])),
        ("type=off_hours".into(), set(&[])),
        ("severity=low".into(), every.clone()),
        ("severity=medium".into(), set(&[&probing, &revoked, &brute])),
        ("severity=high".into(), set(&[&probing, &revoked, &brute])),
        ("severity=critical".into(), set(&[&revoked])),
        ("status=open".into(), every.clone()),
        ("status=acknowledged".into(), set(&[])),
        ("status=resolved".into(), set(&[])),
        (format!("token_id={}", inc.prober), set(&[&probing])),
        (format!("token_id={}", inc.leaked), set(&[&revoked])),
        ("token_id=AAAAAAAAAAAAAAAA".into(), set(&[])),
        ("since=1h".into(), every.clone()),
        ("since=2999-01-01T00:00:00Z".into(), set(&[])),
        (format!("since={since_brute}"), active_since_brute),
        (format!("type=revoked_token_use&severity=critical&status=open&token_id={}", inc.leaked), set(&[&revoked])),
        (format!("type=revoked_token_use&token_id={}", inc.prober), set(&[])),
        ("type=brute_force&severity=critical".into(), set(&[])),
    ];
    for (query, expected) in &cases {
        let got = rig.findings(query).await;
        assert_eq!(&ids(&got), expected, "GET /v1/findings?{query}: {}", pretty(&json!(got)));
        for f in &got {
            assert!(all.contains(f), "a filtered finding is the same as unfiltered: {}", pretty(f));
        }
    }

    // Pages: one finding per page, following the cursor, gives the whole list in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map_or_else(|| "limit=1".to_owned(), |c| format!("limit=1&cursor={c}"));
        let page = rig.get(&format!("/v1/findings?{q}")).await;
        paged.extend(page["findings"].as_array().expect("findings").iter().cloned());
        assert!(paged.len() <= all.len(), "the pages end");
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, all);

    // Bad filters: 400 problem+json naming every bad field at once.
    let bad: [(&str, &[&str]); 8] = [
        ("type=phishing", &["type"]),
        ("severity=urgent", &["severity"]),
        ("status=closed", &["status"]),
        ("since=yesterday", &["since"]),
        ("limit=0", &["limit"]),
        ("cursor=nonsense", &["cursor"]),
        ("type=phishing&severity=urgent&status=closed&since=yesterday", &["type", "severity", "status", "since"]),
        ("type=brute_force&severity=HIGH", &["severity"]),
    ];
    for (query, fields) in bad {
        let resp = send_empty(&rig.s.client, Method::GET, &format!("/v1/findings?{query}")).await;
        let p = assert_problem(&resp, 400, "invalid_field");
        let got: BTreeSet<String> = field_errors(&p).into_iter().map(|(f, _)| f).collect();
        let want: BTreeSet<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        assert_eq!(got, want, "GET /v1/findings?{query}: {}", pretty(&p));
    }
    let resp = send_empty(&rig.s.client, Method::GET, "/v1/findings?colour=red").await;
    let p = assert_problem(&resp, 400, "invalid_request");
    assert!(str_of(&p, "detail").contains("colour"), "the unknown parameter is named: {}", pretty(&p));

    // One finding; unknown ids are 404 for reading, acknowledging and resolving.
    for f in &all {
        assert_eq!(&rig.get(&format!("/v1/findings/{}", str_of(f, "id"))).await, f);
    }
    let nobody = "fd_00000000000000000000";
    assert_problem(&send_empty(&rig.s.client, Method::GET, &format!("/v1/findings/{nobody}")).await, 404, "not_found");
    for action in ["ack", "resolve"] {
        let resp = rig.set_status(nobody, action, &json!({"comment": "nothing to see"})).await;
        assert_problem(&resp, 404, "not_found");
    }

    // Bad comments change nothing.
    let bad_comments: [(Value, &str); 4] = [
        (json!({"comment": ""}), "invalid_field"),
        (json!({"comment": "   "}), "invalid_field"),
        (json!({"comment": "x".repeat(1001)}), "invalid_field"),
        (json!({"comment": "ok", "severity": "low"}), "invalid_request"),
    ];
    for (body, code) in bad_comments {
        let resp = rig.set_status(&brute, "ack", &body).await;
        let p = assert_problem(&resp, 400, code);
        if code == "invalid_field" {
            let fields: Vec<String> = field_errors(&p).into_iter().map(|(f, _)| f).collect();
            assert_eq!(fields, ["comment"], "{}", pretty(&p));
        }
    }
    let resp = rig.set_status(&brute, "ack", &json!({})).await;
    assert_eq!(resp.status.as_u16(), 400, "a missing comment: {}", String::from_utf8_lossy(&resp.body));
    assert_eq!(rig.get(&format!("/v1/findings/{brute}")).await, found["brute_force"], "bad requests changed it");

    // Acknowledge and resolve over HTTP.
    let ack_comment = "blocking 127.0.0.0/24 at the edge";
    let resp = rig.set_status(&brute, "ack", &json!({"comment": ack_comment})).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    let acked = json_body(&resp);
    assert_eq!((str_of(&acked, "status"), acked["comment"].as_str()), ("acknowledged", Some(ack_comment)));
    assert_eq!(rig.get(&format!("/v1/findings/{brute}")).await, acked);
    let mut unchanged = found["brute_force"].clone();
    for k in ["status", "comment", "status_changed_at"] {
        unchanged[k] = acked[k].clone();
    }
    assert_eq!(acked, unchanged, "acknowledging changes only the status, comment and time");
    assert!(time(&acked, "status_changed_at") >= time(&acked, "last_seen"));
    let resolve_comment = "least privilege: the token now holds what it needs";
    let resp = rig.set_status(&probing, "resolve", &json!({"comment": resolve_comment})).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    let resolved = json_body(&resp);
    assert_eq!((str_of(&resolved, "status"), resolved["comment"].as_str()), ("resolved", Some(resolve_comment)));
    assert_eq!(ids(&rig.findings("status=acknowledged").await), set(&[&brute]));
    assert_eq!(ids(&rig.findings("status=resolved").await), set(&[&probing]));
    assert_eq!(ids(&rig.findings("status=open").await), set(&[&revoked, &shadow]));

    // The CLI: lists equal to the API's, show, ack and resolve.
    let api_list = rig.get("/v1/findings").await;
    let cli_list = rig.s.cli(&["findings", "list", "--format", "json"]).await.json();
    assert_eq!(cli_list, api_list, "`findings list --format json` is the API's answer");
    let api_filtered = rig.get(&format!("/v1/findings?severity=critical&status=open&token_id={}", inc.leaked)).await;
    let cli_filtered = rig
        .s
        .cli(&[
            "findings",
            "list",
            "--severity",
            "critical",
            "--status",
            "open",
            "--token",
            &inc.leaked,
            "--format",
            "json",
        ])
        .await
        .json();
    assert_eq!(cli_filtered, api_filtered);
    assert_eq!(ids(cli_filtered["findings"].as_array().expect("findings")), set(&[&revoked]));
    let cli_typed = rig.s.cli(&["findings", "list", "--type", "brute_force", "--format", "json"]).await.json();
    assert_eq!(ids(cli_typed["findings"].as_array().expect("findings")), set(&[&brute]));
    let table = rig.s.cli(&["findings", "list"]).await;
    table.success();
    for f in all.iter() {
        let (id, kind) = (str_of(f, "id"), str_of(f, "type"));
        assert!(table.stdout.lines().any(|l| l.contains(id) && l.contains(kind)), "{id} {kind} in:\n{}", table.stdout);
    }
    let shown = rig.s.cli(&["findings", "show", &revoked, "--format", "json"]).await.json();
    assert_eq!(shown, rig.get(&format!("/v1/findings/{revoked}")).await);
    let shown = rig.s.cli(&["findings", "show", &revoked]).await;
    shown.success();
    // The table wraps long values, so compare with the whitespace collapsed.
    let flat = shown.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for text in [revoked.as_str(), "revoked_token_use", "critical", str_of(&found["revoked_token_use"], "summary")] {
        assert!(flat.contains(text), "{text:?} in:\n{}", shown.stdout);
    }
    for e in &inc.revoked_uses {
        assert!(shown.stdout.contains(e.as_str()), "the evidence {e} in:\n{}", shown.stdout);
    }

    let cli_ack = "expected: the narrowing is not applied yet";
    let acked = rig.s.cli(&["findings", "ack", &shadow, "--comment", cli_ack, "--format", "json"]).await.json();
    assert_eq!((str_of(&acked, "status"), acked["comment"].as_str()), ("acknowledged", Some(cli_ack)));
    assert_eq!(rig.get(&format!("/v1/findings/{shadow}")).await, acked);
    let cli_resolve = "rotated the token and told its owner";
    let out = rig.s.cli(&["findings", "resolve", &revoked, "--comment", cli_resolve]).await;
    out.success();
    let flat = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("resolved") && flat.contains(cli_resolve), "{out:#?}");
    let now_resolved = rig.get(&format!("/v1/findings/{revoked}")).await;
    assert_eq!((str_of(&now_resolved, "status"), now_resolved["comment"].as_str()), ("resolved", Some(cli_resolve)));

    // CLI errors: one line on stderr naming the problem, a non-zero exit.
    let out = rig.s.cli(&["findings", "show", nobody]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains(nobody), "{out:#?}");
    let out = rig.s.cli(&["findings", "list", "--severity", "urgent"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("severity"), "{out:#?}");
    let out = rig.s.cli(&["findings", "ack", &shadow]).await;
    assert_eq!(out.code, 2, "a missing --comment is a usage error: {out:#?}");
    let out = rig.s.cli(&["findings", "ack", &shadow, "--comment", ""]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("comment"), "{out:#?}");

    // Each change is one admin event, by the admin token, naming the finding, the change and the
    // comment; the refused requests left none.
    let admin = rig.s.client.list_events("?kind=admin&order=asc&limit=1000").await.expect("admin events");
    let changes: Vec<(String, String, String, String)> = admin
        .events
        .iter()
        .filter(|e| e.operation.as_deref().is_some_and(|o| o.starts_with("finding.")))
        .map(|e| {
            assert_eq!(e.token_id.as_deref(), Some(token_id(&rig.s.admin_token).as_str()), "{e:#?}");
            assert_eq!((e.decision.as_str(), e.reason.as_str(), e.status), ("allow", "ok", Some(200)), "{e:#?}");
            (
                e.operation.clone().unwrap_or_default(),
                e.target.clone().unwrap_or_default(),
                e.details.get("status").cloned().unwrap_or_default(),
                e.details.get("comment").cloned().unwrap_or_default(),
            )
        })
        .collect();
    let change = |op: &str, id: &str, status: &str, comment: &str| {
        (op.to_owned(), id.to_owned(), status.to_owned(), comment.to_owned())
    };
    assert_eq!(
        changes,
        [
            change("finding.ack", &brute, "open -> acknowledged", ack_comment),
            change("finding.resolve", &probing, "open -> resolved", resolve_comment),
            change("finding.ack", &shadow, "open -> acknowledged", cli_ack),
            change("finding.resolve", &revoked, "open -> resolved", cli_resolve),
        ]
    );
    let per_target = rig.s.client.list_events(&format!("?kind=admin&target={revoked}")).await.expect("events");
    assert_eq!(per_target.events.len(), 1, "{per_target:#?}");

    // New activity reopens a resolved finding: the revoked token presented once more.
    let t_again = rig.denied("GET", "/v1/patients/9", Some(&inc.leaked_token), 401, "revoked").await;
    let reopened = rig
        .wait_finding("the revoked token's finding reopened", &revoked, |f| {
            f["status"] == "open" && f["event_count"] == inc.revoked_uses.len() as u64 + 1
        })
        .await;
    assert!(evidence(&reopened).contains(&t_again), "{}", pretty(&reopened));
    assert!(str_of(&reopened, "summary").contains(&format!("presented {} times", inc.revoked_uses.len() + 1)));
    assert_eq!(ids(&rig.findings("status=open").await), set(&[&revoked]));
}

// ---------------------------------------------------------------------------------------------
// 2. The same findings online and offline.

/// Runs `tokentrail detect` (offline: no server, no token) with `args`.
async fn detect(args: &[&str]) -> CliOutput {
    let mut all = vec!["detect"];
    all.extend_from_slice(args);
    run_cli(&[], &all).await
}

/// Writes `lines` (each without its newline) to `root/name` and returns the path as text.
fn write_lines(root: &Path, name: &str, lines: &[&str]) -> String {
    let path = root.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).expect("write an event file");
    path.to_str().expect("a UTF-8 path").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_detect_over_the_export_finds_what_the_live_server_found() {
    let rig = Rig::start(|_, _| {}).await;
    let inc = raise_incidents(&rig).await;
    expect_incident_findings(&rig, &inc).await;
    let online = rig.findings("").await;

    let export = rig.s.cli(&["audit", "export", "--format", "ndjson"]).await;
    export.success();
    let lines: Vec<&str> = export.stdout.lines().collect();
    let exported: BTreeSet<String> =
        lines.iter().map(|l| str_of(&serde_json::from_str(l).expect("an NDJSON line"), "id").to_owned()).collect();
    for f in &online {
        for e in evidence(f) {
            assert!(exported.contains(&e), "the export has the evidence {e}");
        }
    }
    let input = write_lines(rig.root(), "export.ndjson", &lines);

    // What is fair to compare: detectors are deterministic and a finding's id is a hash of its type,
    // its key (token, network) and its first event, so the offline run must give the very same
    // findings: same ids, types, severities, tokens, addresses, first and last seen, summaries,
    // evidence, counts and details. Status, comment and status_changed_at are the live server's
    // lifecycle; nothing was acknowledged here, so they agree too (open, none, first seen) and the
    // whole finding is compared. Order is not part of the contract (the API lists newest first,
    // `detect` in order of first emission), so both are sorted by id.
    let by_id = |v: &[Value]| -> BTreeMap<String, Value> {
        v.iter().map(|f| (str_of(f, "id").to_owned(), f.clone())).collect()
    };
    let out = detect(&["--input", &input, "--format", "json"]).await;
    let offline = out.json();
    let offline = offline.as_array().expect("`detect --format json` prints a JSON array").clone();
    assert_eq!(
        by_id(&offline),
        by_id(&online),
        "offline:\n{}\nonline:\n{}",
        pretty(&json!(offline)),
        pretty(&json!(online))
    );

    // The file in another order gives the same findings (detect sorts by time).
    let mut shuffled = lines.clone();
    shuffled.reverse();
    let third = shuffled.len() / 3;
    shuffled.rotate_left(third);
    assert_ne!(shuffled, lines);
    let shuffled_input = write_lines(rig.root(), "shuffled.ndjson", &shuffled);
    let again = detect(&["--input", &shuffled_input, "--format", "json"]).await.json();
    assert_eq!(again, json!(offline), "a shuffled file");

    // NDJSON: one finding per line, the same findings; a table names each of them.
    let out = detect(&["--input", &input, "--format", "ndjson"]).await;
    out.success();
    let nd: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).expect("an NDJSON finding")).collect();
    assert_eq!(nd, offline);
    let out = detect(&["--input", &input, "--format", "table"]).await;
    out.success();
    for f in &offline {
        let (id, kind, severity) = (str_of(f, "id"), str_of(f, "type"), str_of(f, "severity"));
        assert!(
            out.stdout.lines().any(|l| l.contains(id) && l.contains(kind) && l.contains(severity)),
            "{id} {kind} {severity} in:\n{}",
            out.stdout
        );
    }

    // A configuration's [detect] section is used: a higher brute-force threshold finds no guessing.
    let cfg = rig.root().join("detect.toml");
    std::fs::write(&cfg, format!("[detect]\nbrute_force_threshold = {}\n", GUESSES + 1)).expect("write a config");
    let out = detect(&["--input", &input, "--config", cfg.to_str().expect("UTF-8"), "--format", "json"]).await;
    let tuned = out.json();
    let kinds: BTreeSet<&str> = tuned.as_array().expect("an array").iter().map(|f| str_of(f, "type")).collect();
    assert_eq!(kinds, BTreeSet::from(["scope_probing", "revoked_token_use", "shadow_deny"]), "{}", pretty(&tuned));

    // Nothing to find: exit 0 and an empty array, for only allowed plain requests and for no events.
    let benign: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            let e: Value = serde_json::from_str(l).expect("JSON");
            e["reason"] == "ok" && e["details"].get("shadow_decision").is_none()
        })
        .collect();
    assert!(benign.len() >= 4, "allowed requests in the export");
    let benign_input = write_lines(rig.root(), "benign.ndjson", &benign);
    assert_eq!(detect(&["--input", &benign_input, "--format", "json"]).await.json(), json!([]));
    let empty = rig.root().join("empty.ndjson");
    std::fs::write(&empty, "").expect("write");
    let out = detect(&["--input", empty.to_str().expect("UTF-8"), "--format", "json"]).await;
    assert_eq!(out.json(), json!([]));
    let out = detect(&["--input", &benign_input]).await;
    assert_eq!(out.code, 0, "nothing found is a success: {out:#?}");
    assert_eq!(out.stdout, "no findings\n", "a table says so when there is nothing");

    // Bad input: a precise one-line error naming the file and the line, a non-zero exit, nothing
    // on stdout.
    let broken: [(usize, &str, &str); 4] = [
        (3, "{\"time\": \"2026-11-27T10:00:00Z\", \"reason\": \"ok\"", "line 3"),
        (2, "{\"time\": \"2026-11-27T10:00:00Z\", \"reason\": \"maybe\"}", "reason"),
        (5, "{\"time\": \"yesterday\", \"reason\": \"ok\"}", "time"),
        (4, "{\"time\": \"2026-11-27T10:00:00Z\", \"reason\": \"ok\", \"colour\": \"red\"}", "colour"),
    ];
    for (n, bad, what) in broken {
        let mut copy = lines.clone();
        copy.insert(n - 1, bad);
        let path = write_lines(rig.root(), "broken.ndjson", &copy);
        let out = detect(&["--input", &path, "--format", "json"]).await;
        assert_eq!(out.code, 1, "{bad}: {out:#?}");
        assert!(out.stdout.is_empty(), "{out:#?}");
        let err = out.stderr.trim();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(&path) && err.contains(&format!("line {n}")) && err.contains(what), "{bad}: {err}");
    }
    let out = detect(&["--input", &rig.root().join("missing.ndjson").display().to_string()]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("missing.ndjson"), "{out:#?}");
}

/// Events of the same time (logs with whole seconds, or two requests in one microsecond) are
/// ordered by their recorded `seq`, the ledger's order that the live server detected them in, so a
/// shuffled export still gives the same findings with the same ids (docs/detectors.md rule 2).
/// Today `detect` replaces each line's `seq` with its line number before sorting
/// (crates/cli/src/main.rs `detect_offline`), so ties keep the file's order and a finding's id,
/// a hash of its first event, changes with it; this fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_detect_orders_events_of_the_same_time_by_their_recorded_seq() {
    let root = tempfile::tempdir().expect("a temporary directory");
    // 25 guesses from one address within one second, as a log with whole seconds records them.
    let lines: Vec<String> = (1..=GUESSES)
        .map(|i| {
            json!({
                "id": format!("ev_guess_{i:02}"), "seq": 100 + i, "time": "2026-11-27T10:00:00Z",
                "kind": "access", "source": "gateway", "source_ip": "203.0.113.9",
                "token_fingerprint": format!("fp_{i:024x}"), "method": "GET", "path": "/v1/inventory/1",
                "decision": "deny", "reason": "unknown_token", "status": 401,
            })
            .to_string()
        })
        .collect();
    let in_order: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut reversed = in_order.clone();
    reversed.reverse();
    let a = detect(&["--input", &write_lines(root.path(), "in-order.ndjson", &in_order), "--format", "json"]).await;
    let b = detect(&["--input", &write_lines(root.path(), "reversed.ndjson", &reversed), "--format", "json"]).await;
    let (a, b) = (a.json(), b.json());
    let found = a.as_array().expect("an array");
    assert_eq!(found.len(), 1, "one brute_force finding: {}", pretty(&a));
    assert_eq!(found[0]["type"], "brute_force");
    assert_eq!(found[0]["evidence_event_ids"][0], "ev_guess_01", "the first guess by seq: {}", pretty(&a));
    assert_eq!(b, a, "the same events in another order (right: in seq order)");
}

// ---------------------------------------------------------------------------------------------
// 3. Alerts to a webhook.

/// One request the webhook receiver got, and how it answered.
#[derive(Clone, Debug)]
struct Delivery {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    answered: u16,
}

impl Delivery {
    /// The single value of header `name` (lower case).
    fn header(&self, name: &str) -> &str {
        let all: Vec<&str> = self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        assert_eq!(all.len(), 1, "exactly one {name} header: {self:#?}");
        all[0]
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("the webhook body is not JSON ({e}): {self:#?}"))
    }
}

/// A webhook receiver on 127.0.0.1 that records every request and answers 500 to the first
/// `failures` of them, 200 after.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(failures: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the webhook receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let seen: Arc<Mutex<Vec<Delivery>>> = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let log = log.clone();
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let mut seen = log.lock().expect("the receiver's log");
                        let answered = if seen.len() < failures { 500 } else { 200 };
                        seen.push(Delivery {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_owned(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(n, v)| {
                                    (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())
                                })
                                .collect(),
                            body: String::from_utf8_lossy(&body).into_owned(),
                            answered,
                        });
                        let resp = hyper::Response::builder().status(answered).body(Full::new(Bytes::new()));
                        Ok::<_, Infallible>(resp.expect("a response"))
                    }
                });
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Receiver { addr, seen, task }
    }

    /// The URL to configure.
    fn url(&self) -> String {
        format!("http://{}/hooks/tokentrail", self.addr)
    }

    /// Every request so far, oldest first.
    fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().expect("the receiver's log").clone()
    }

    /// Waits until at least `n` requests arrived, and returns them all.
    async fn wait(&self, what: &str, n: usize, deadline: Duration) -> Vec<Delivery> {
        eventually(what, deadline, async || {
            let d = self.deliveries();
            (d.len() >= n).then_some(d)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// HMAC-SHA256 of `message` under `key` (at most 32 bytes).
///
/// The test crate has no `hmac` or `sha2` dependency, and the alert code's own `sign_webhook`
/// must not be what checks it. `token::Pepper::hash_secret` is HMAC-SHA256 under a 32-byte key,
/// implemented apart from the alerts; HMAC pads a key shorter than its 64-byte block with zeros,
/// so a shorter key padded to 32 bytes gives the same MAC. The Standard Webhooks example below
/// checks this helper.
fn hmac_sha256(key: &[u8], message: &str) -> [u8; 32] {
    assert!(key.len() <= 32, "a key of at most 32 bytes");
    let mut k = [0u8; 32];
    k[..key.len()].copy_from_slice(key);
    token::Pepper::from_bytes(k).hash_secret(message).0
}

/// The Standard Webhooks signature of a message: `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`.
fn signature(key: &[u8], id: &str, timestamp: &str, body: &str) -> String {
    format!("v1,{}", B64.encode(hmac_sha256(key, &format!("{id}.{timestamp}.{body}"))))
}

/// Checks a delivery's Standard Webhooks headers: an id, a timestamp in seconds, and a
/// `webhook-signature` (space-separated list) holding the signature under `key`.
fn assert_signed(d: &Delivery, key: &[u8]) {
    let id = d.header("webhook-id");
    assert!(!id.is_empty(), "{d:#?}");
    let ts = d.header("webhook-timestamp");
    let secs: i64 = ts.parse().unwrap_or_else(|e| panic!("webhook-timestamp {ts:?} ({e}): {d:#?}"));
    // Seconds, not milliseconds: within a day of now (a unit check, not a timing one).
    let now = engine::SystemClock.now().as_second();
    assert!((secs - now).abs() < 86_400, "webhook-timestamp {secs} is not seconds since the epoch near {now}");
    let expected = signature(key, id, ts, &d.body);
    let sigs: Vec<&str> = d.header("webhook-signature").split(' ').collect();
    assert!(sigs.contains(&expected.as_str()), "no valid signature: expected {expected} in {sigs:?}: {d:#?}");
    // The check can fail: another key, or another body, gives another signature.
    assert!(!sigs.contains(&signature(b"another key", id, ts, &d.body).as_str()));
    assert!(!sigs.contains(&signature(key, id, ts, &format!("{} ", d.body)).as_str()));
}

#[test]
fn the_signature_helper_matches_the_standard_webhooks_example() {
    let key = B64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("base64");
    assert_eq!(
        signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", r#"{"test": 2432232314}"#),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

/// Reads an NDJSON file's lines as JSON (none if it does not exist yet).
fn ndjson(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{} ({e}): {l}", path.display()))).collect()
}

/// Waits until the NDJSON file has at least `n` lines, and returns them.
async fn wait_lines(path: &Path, what: &str, n: usize) -> Vec<Value> {
    eventually(what, EVENTUALLY, async || {
        let lines = ndjson(path);
        (lines.len() >= n).then_some(lines)
    })
    .await
}

/// A revoked token presented once on a plain route: one `revoked_token_use` finding of severity
/// high. Returns the finding once the server has it.
async fn revoked_once(rig: &Rig, name: &str) -> (String, Value) {
    let (t, id) = rig.token(name, OWNER, &["inventory:read"], json!({})).await;
    rig.revoke(&id).await;
    rig.denied("GET", "/v1/inventory/3", Some(&t), 401, "revoked").await;
    let f = rig.wait_one("revoked_token_use", Some(&id), |_| true).await;
    assert_eq!(str_of(&f, "severity"), "high", "{}", pretty(&f));
    (t, f)
}

/// A token in shadow mode making one write its proposed scopes would deny: one `shadow_deny`
/// finding of severity low.
async fn shadow_once(rig: &Rig) -> Value {
    let (t, id) = rig.token("writer", OWNER, &["orders:write"], json!({})).await;
    rig.shadow(&id, &["orders:read"]).await;
    rig.allowed("POST", "/v1/orders", &t).await;
    let f = rig.wait_one("shadow_deny", Some(&id), |_| true).await;
    assert_eq!(str_of(&f, "severity"), "low", "{}", pretty(&f));
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_gets_signed_findings_at_or_above_its_minimum_severity_and_reopened_ones_again() {
    let hook = Receiver::start(0).await;
    let key: Vec<u8> = (1..=32).collect();
    let secret = format!("whsec_{}", B64.encode(&key));
    let rig = Rig::start(|c, root| {
        c.alerts.webhook_url = Some(hook.url());
        c.alerts.webhook_secret = Some(secret.clone());
        c.alerts.webhook_min_severity = "high".into();
        // A second sink that takes everything shows when the alerts of a finding were dispatched.
        c.alerts.file = Some(root.join("all.ndjson").display().to_string());
        c.alerts.file_min_severity = "low".into();
    })
    .await;
    let all_file = rig.root().join("all.ndjson");

    // A low finding goes to the file but not to the webhook. Once the file has it, its alerts have
    // been dispatched (one call sends a finding to every sink), so a webhook request for it would
    // have been started already.
    let low = shadow_once(&rig).await;
    let lines = wait_lines(&all_file, "the low finding in the file sink", 1).await;
    assert_eq!(lines[0]["id"], low["id"]);

    // A high finding goes to the webhook: a signed POST of the finding as the API shows it.
    let (token, high) = revoked_once(&rig, "leaked").await;
    let first = hook.wait("the high finding at the webhook", 1, EVENTUALLY).await;
    wait_lines(&all_file, "the high finding in the file sink", 2).await;
    let d = &first[0];
    assert_eq!((d.method.as_str(), d.path.as_str()), ("POST", "/hooks/tokentrail"), "{d:#?}");
    assert!(d.header("content-type").starts_with("application/json"), "{d:#?}");
    assert_signed(d, &key);
    assert_eq!(d.json(), rig.get(&format!("/v1/findings/{}", str_of(&high, "id"))).await, "the body is the finding");
    assert_eq!(d.json()["type"], "revoked_token_use");

    // Resolved, then the token is presented again: the reopened finding is sent again, as a new
    // message (another webhook-id) with the new count.
    let resp = rig.set_status(str_of(&high, "id"), "resolve", &json!({"comment": "rotated"})).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    rig.denied("GET", "/v1/inventory/4", Some(&token), 401, "revoked").await;
    let all = hook.wait("the reopened finding at the webhook", 2, EVENTUALLY).await;
    let again = &all[1];
    assert_signed(again, &key);
    let body = again.json();
    assert_eq!((&body["id"], &body["status"], &body["event_count"]), (&high["id"], &json!("open"), &json!(2)));
    assert_ne!(again.header("webhook-id"), d.header("webhook-id"), "a new message has a new id");
    // What the detectors found agrees with the API; the lifecycle fields of a reopened finding are
    // the subject of the_alert_for_a_reopened_finding_is_the_finding_as_stored.
    let stored = rig.get(&format!("/v1/findings/{}", str_of(&high, "id"))).await;
    assert_eq!(without(&body, LIFECYCLE), without(&stored, LIFECYCLE));

    // Never the low finding; every request was answered at once, so there was nothing to retry.
    let sent: Vec<Value> = hook.deliveries().iter().map(|d| d.json()["id"].clone()).collect();
    assert_eq!(sent, [high["id"].clone(), high["id"].clone()], "only the high finding, twice");
    assert!(!rig.dead_letter().exists());
    let file_ids: Vec<Value> = ndjson(&all_file).iter().map(|l| l["id"].clone()).collect();
    assert_eq!(file_ids, [low["id"].clone(), high["id"].clone(), high["id"].clone()]);
}

/// The fields of a finding that only its handling on the live server changes.
const LIFECYCLE: &[&str] = &["status", "comment", "status_changed_at"];

/// `v` without the keys `keys`.
fn without(v: &Value, keys: &[&str]) -> Value {
    let mut v = v.clone();
    let o = v.as_object_mut().expect("an object");
    for k in keys {
        o.remove(*k);
    }
    v
}

/// The alert for a reopened finding is sent as the API would show it at that moment: its status
/// changed when it was reopened, and the store keeps the comment of the resolution. Today the
/// alert carries the detectors' fresh record instead (crates/engine/src/detection.rs `record_of`:
/// `status_changed_at` = `first_seen`, no comment), so this fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_for_a_reopened_finding_is_the_finding_as_stored() {
    let hook = Receiver::start(0).await;
    let rig = Rig::start(|c, _| {
        c.alerts.webhook_url = Some(hook.url());
        c.alerts.webhook_secret = Some("s3cret".to_owned());
    })
    .await;
    let (token, f) = revoked_once(&rig, "leaked").await;
    let id = str_of(&f, "id").to_owned();
    hook.wait("the new finding at the webhook", 1, EVENTUALLY).await;
    let resp = rig.set_status(&id, "resolve", &json!({"comment": "rotated"})).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    rig.denied("GET", "/v1/inventory/4", Some(&token), 401, "revoked").await;
    let all = hook.wait("the reopened finding at the webhook", 2, EVENTUALLY).await;
    let body = all[1].json();
    let stored = rig.get(&format!("/v1/findings/{id}")).await;
    assert_eq!(stored["status"], "open", "reopened: {}", pretty(&stored));
    assert_eq!(body, stored, "the reopened finding's alert (left) and the API (right)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_webhook_delivery_is_retried_with_backoff_until_it_succeeds() {
    let hook = Receiver::start(2).await;
    let secret = "a plain-text secret"; // without whsec_, the text's bytes are the key
    let rig = Rig::start(|c, _| {
        c.alerts.webhook_url = Some(hook.url());
        c.alerts.webhook_secret = Some(secret.to_owned());
    })
    .await;
    let (_, f) = revoked_once(&rig, "leaked").await;
    let all = hook.wait("two failures and a success", 3, EVENTUALLY).await;
    let answered: Vec<u16> = all.iter().map(|d| d.answered).collect();
    assert_eq!(answered, [500, 500, 200]);
    for d in &all {
        assert_signed(d, secret.as_bytes());
        assert_eq!(d.header("webhook-id"), all[0].header("webhook-id"), "one message, retried");
        assert_eq!(d.body, all[0].body, "the same body each time");
    }
    assert_eq!(all[0].json()["id"], f["id"]);
    // Backoff: each attempt is signed when it is made, in whole seconds; the waits before the
    // second and third attempts are at least 1 and 2 s (lower bounds, which a slow machine cannot
    // break).
    let ts: Vec<i64> = all.iter().map(|d| d.header("webhook-timestamp").parse().expect("seconds")).collect();
    assert!(ts[1] - ts[0] >= 1 && ts[2] - ts[1] >= 2, "backoff between attempts: {ts:?}");
    assert!(!rig.dead_letter().exists(), "delivered: no dead letter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_webhook_alert_goes_to_the_dead_letter_file_after_the_retries() {
    let hook = Receiver::start(usize::MAX).await;
    let rig = Rig::start(|c, _| {
        c.alerts.webhook_url = Some(hook.url());
        c.alerts.webhook_secret = Some("s3cret".to_owned());
    })
    .await;
    let (_, f) = revoked_once(&rig, "leaked").await;
    let dead = rig.dead_letter();
    let lines = eventually("the dead-letter file", DEAD_LETTER_DEADLINE, async || {
        let lines = ndjson(&dead);
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 1, "{}", pretty(&json!(lines)));
    let line = &lines[0];
    assert_eq!(line["finding"]["id"], f["id"], "{}", pretty(line));
    assert_eq!(line["finding"]["type"], "revoked_token_use", "{}", pretty(line));
    assert!(str_of(line, "error").contains("500"), "the error says what went wrong: {}", pretty(line));
    // Written after the last attempt: one and five retries (after 1, 2, 4, 8 and 16 s), all failed.
    let all = hook.deliveries();
    assert_eq!(all.len(), 6, "{all:#?}");
    for d in &all {
        assert_eq!(d.answered, 500);
        assert_eq!(d.header("webhook-id"), all[0].header("webhook-id"));
        assert_signed(d, b"s3cret");
    }
}

/// A finding that opens below a sink's minimum severity and then escalates to it (brute force:
/// high at the threshold, critical at four times it) must reach the sink. Today the sinks are only
/// given new and reopened findings, filtered by their severity when they opened, so this fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_that_escalates_to_the_webhook_minimum_severity_is_delivered() {
    let hook = Receiver::start(0).await;
    let rig = Rig::start(|c, _| {
        c.alerts.webhook_url = Some(hook.url());
        c.alerts.webhook_secret = Some("s3cret".to_owned());
        c.alerts.webhook_min_severity = "critical".into();
        c.detect.brute_force_threshold = 5;
    })
    .await;
    for _ in 0..5 {
        rig.denied("GET", "/v1/inventory/7", Some(&forged()), 401, "unknown_token").await;
    }
    let f = rig.wait_one("brute_force", None, |f| f["severity"] == "high").await;
    for _ in 0..15 {
        rig.denied("GET", "/v1/inventory/7", Some(&forged()), 401, "unknown_token").await;
    }
    let f = rig
        .wait_finding("the brute force escalated to critical", str_of(&f, "id"), |f| f["severity"] == "critical")
        .await;
    let got = hook.wait("the critical brute-force finding at the webhook (min severity critical)", 1, EVENTUALLY).await;
    assert_eq!((&got[0].json()["id"], &got[0].json()["severity"]), (&f["id"], &json!("critical")));
}

// ---------------------------------------------------------------------------------------------
// 4. The NDJSON file and syslog.

/// One RFC 5424 message, split into its parts.
#[derive(Debug)]
struct Syslog {
    pri: u32,
    timestamp: String,
    host: String,
    app: String,
    procid: String,
    msgid: String,
    sd_id: String,
    params: BTreeMap<String, String>,
    msg: String,
}

/// Parses `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD-ID NAME="VALUE"...] MSG` (one structured
/// data element, whose values escape `"`, `\` and `]` with a backslash).
fn parse_syslog(frame: &str) -> Syslog {
    let bad = |what: &str| -> ! { panic!("not an RFC 5424 message ({what}): {frame:?}") };
    let rest = frame.strip_prefix('<').unwrap_or_else(|| bad("<PRI>"));
    let (pri, rest) = rest.split_once('>').unwrap_or_else(|| bad("<PRI>"));
    if pri.is_empty() || pri.len() > 3 || !pri.bytes().all(|b| b.is_ascii_digit()) {
        bad("PRI digits");
    }
    let pri: u32 = pri.parse().unwrap_or_else(|_| bad("PRI"));
    let rest = rest.strip_prefix("1 ").unwrap_or_else(|| bad("VERSION 1"));
    let mut head = rest.splitn(6, ' ');
    let mut field = |what: &str| head.next().filter(|s| !s.is_empty()).unwrap_or_else(|| bad(what)).to_owned();
    let (timestamp, host, app, procid, msgid) =
        (field("TIMESTAMP"), field("HOSTNAME"), field("APP-NAME"), field("PROCID"), field("MSGID"));
    let sd = field("STRUCTURED-DATA");
    let mut chars = sd.chars().peekable();
    if chars.next() != Some('[') {
        bad("[");
    }
    let mut sd_id = String::new();
    while let Some(c) = chars.next_if(|c| *c != ' ' && *c != ']') {
        sd_id.push(c);
    }
    let mut params = BTreeMap::new();
    loop {
        match chars.next() {
            Some(']') => break,
            Some(' ') => {}
            _ => bad("SD-PARAM"),
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=') {
            name.push(c);
        }
        if chars.next() != Some('=') || chars.next() != Some('"') {
            bad("PARAM-NAME=\"");
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some(c @ ('"' | '\\' | ']')) => value.push(c),
                    Some(c) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => bad("escape"),
                },
                Some('"') => break,
                Some(']') => bad("an unescaped ] in a value"),
                Some(c) => value.push(c),
                None => bad("PARAM-VALUE"),
            }
        }
        params.insert(name, value);
    }
    let msg: String = chars.collect();
    let msg = msg.strip_prefix(' ').unwrap_or_else(|| bad("SP MSG")).to_owned();
    Syslog { pri, timestamp, host, app, procid, msgid, sd_id, params, msg }
}

/// The PRI of a finding: facility 13 (log audit) and the severity's syslog level (critical 2,
/// high 3 error, medium 4 warning, low 5 notice), as crates/server/src/alerts.rs documents.
fn pri_of(severity: &str) -> u32 {
    13 * 8
        + match severity {
            "critical" => 2,
            "high" => 3,
            "medium" => 4,
            "low" => 5,
            other => panic!("not a severity: {other}"),
        }
}

/// Checks a syslog message against the finding `f` as the file sink wrote it (the same snapshot).
fn assert_syslog_of(m: &Syslog, f: &Value, node: &str) {
    let text = format!("{m:#?}\n{}", pretty(f));
    assert_eq!(m.pri, pri_of(str_of(f, "severity")), "{text}");
    m.timestamp.parse::<Timestamp>().unwrap_or_else(|e| panic!("TIMESTAMP ({e}): {text}"));
    assert_eq!(
        (m.host.as_str(), m.app.as_str(), m.procid.as_str(), m.msgid.as_str()),
        (node, "tokentrail", "-", "finding")
    );
    assert_eq!(m.sd_id, "tokentrail@32473", "{text}");
    let expected: BTreeMap<String, String> = [
        ("id", str_of(f, "id")),
        ("type", str_of(f, "type")),
        ("severity", str_of(f, "severity")),
        ("token", f["token_id"].as_str().unwrap_or("-")),
        ("source_ip", f["source_ip"].as_str().unwrap_or("-")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(m.params, expected, "{text}");
    assert_eq!(m.msg, str_of(f, "summary"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_and_udp_syslog_sinks_get_one_record_per_finding_with_its_severity() {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind a syslog socket");
    let syslog = format!("udp://{}", udp.local_addr().expect("an address"));
    let node = "detect-node";
    let rig = Rig::start(|c, root| {
        c.node = node.to_owned();
        c.alerts.file = Some(root.join("findings.ndjson").display().to_string());
        c.alerts.syslog = Some(syslog);
        c.alerts.syslog_min_severity = "low".into();
    })
    .await;
    let file = rig.root().join("findings.ndjson");

    // Five findings, one of each severity and two high ones: the four incidents and an expired
    // token presented (medium), which was never used before, so no grace applies.
    let (expiring, expiring_id) = rig.token("expiring", OWNER, &["inventory:read"], json!({"expires_in": "1s"})).await;
    let inc = raise_incidents(&rig).await;
    let mut found = expect_incident_findings(&rig, &inc).await;
    eventually("the token to expire", EVENTUALLY, async || {
        (rig.get(&format!("/v1/tokens/{expiring_id}")).await["state"] == "expired").then_some(())
    })
    .await;
    rig.denied("GET", "/v1/inventory/5", Some(&expiring), 401, "expired").await;
    let expired = rig.wait_one("expired_token_use", Some(&expiring_id), |_| true).await;
    assert_eq!(str_of(&expired, "severity"), "medium", "{}", pretty(&expired));
    found.insert("expired_token_use".into(), expired);
    let final_ids: BTreeSet<String> = found.values().map(|f| str_of(f, "id").to_owned()).collect();

    // The file: one line per finding, each the finding as it was when it opened.
    let lines = wait_lines(&file, "a line per finding in the file sink", found.len()).await;
    assert_eq!(lines.len(), found.len(), "{}", pretty(&json!(lines)));
    assert_eq!(ids(&lines), final_ids);
    let by_id: BTreeMap<String, Value> = found.values().map(|f| (str_of(f, "id").to_owned(), f.clone())).collect();
    for line in &lines {
        let now = &by_id[str_of(line, "id")];
        for k in ["type", "severity", "token_id", "source_ip", "first_seen"] {
            assert_eq!(line[k], now[k], "{k}: {}", pretty(line));
        }
        let (then, later) = (evidence(line), evidence(now));
        assert!(!then.is_empty() && later.starts_with(&then), "the evidence so far: {}", pretty(line));
        assert_eq!(line["status"], "open");
    }

    // Syslog: one datagram per finding, with the PRI of its severity.
    let mut frames: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 65536];
    eventually("a syslog message per finding", EVENTUALLY, async || {
        while let Ok((n, _)) = udp.try_recv_from(&mut buf) {
            frames.push(String::from_utf8(buf[..n].to_vec()).expect("a UTF-8 syslog message"));
        }
        (frames.len() >= found.len()).then_some(())
    })
    .await;
    assert_eq!(frames.len(), found.len(), "{frames:#?}");
    let by_line: BTreeMap<String, Value> = lines.iter().map(|l| (str_of(l, "id").to_owned(), l.clone())).collect();
    let mut seen = BTreeSet::new();
    for frame in &frames {
        let m = parse_syslog(frame);
        let id = m.params.get("id").cloned().unwrap_or_default();
        assert!(seen.insert(id.clone()), "one message per finding: {frames:#?}");
        assert_syslog_of(&m, &by_line[&id], node);
    }
    let pris: BTreeSet<u32> = frames.iter().map(|f| parse_syslog(f).pri).collect();
    assert_eq!(pris, BTreeSet::from([106, 107, 108, 109]), "every severity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tcp_sends_octet_counted_frames_at_or_above_its_minimum_severity() {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a syslog listener");
    let syslog = format!("tcp://{}", listener.local_addr().expect("an address"));
    let received: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let _ = stream.read_to_end(&mut bytes).await;
                sink.lock().expect("the syslog log").extend(bytes);
            });
        }
    });
    let node = "detect-tcp";
    let rig = Rig::start(|c, root| {
        c.node = node.to_owned();
        c.alerts.syslog = Some(syslog);
        c.alerts.syslog_min_severity = "high".into();
        c.alerts.file = Some(root.join("all.ndjson").display().to_string());
    })
    .await;
    let file = rig.root().join("all.ndjson");

    // The low finding is dispatched (the file has it) but not sent; then a high one is.
    let low = shadow_once(&rig).await;
    wait_lines(&file, "the low finding in the file", 1).await;
    let (_, high) = revoked_once(&rig, "leaked").await;
    let lines = wait_lines(&file, "the high finding in the file", 2).await;
    let bytes = eventually("a syslog frame over TCP", EVENTUALLY, async || {
        let b = received.lock().expect("the syslog log").clone();
        (!b.is_empty()).then_some(b)
    })
    .await;
    task.abort();

    // Octet counting (RFC 6587): `LEN SP MSG`, LEN the byte length of MSG; a single frame.
    let text = String::from_utf8(bytes).expect("UTF-8");
    let (len, msg) = text.split_once(' ').unwrap_or_else(|| panic!("not octet-counted: {text:?}"));
    let len: usize = len.parse().unwrap_or_else(|e| panic!("the frame length {len:?} ({e}): {text:?}"));
    assert_eq!(len, msg.len(), "one frame of exactly LEN bytes: {text:?}");
    let m = parse_syslog(msg);
    assert_eq!(m.params.get("id"), high["id"].as_str().map(str::to_owned).as_ref(), "{m:#?}");
    assert_ne!(m.params.get("id").map(String::as_str), low["id"].as_str());
    assert_syslog_of(&m, &lines[1], node);
    assert_eq!(m.pri, 107);
}
