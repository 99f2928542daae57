//! Enforcement (issue 4) end to end over real HTTP: the gateway in front of a test upstream,
//! `/v1/verify` and `/v1/authz`, in this process and through the `tokentrail` binary.
//!
//! Every reason code of PRODUCT.md is produced through the gateway, each answer is checked (status,
//! problem+json with `reason` and `event_id`, `WWW-Authenticate`, `Retry-After`,
//! `Tokentrail-Event-Id`) together with exactly one audit event naming the same reason, and the
//! upstream's log shows what reached it: never a credential, never a denied request. Changes to a
//! token apply to the very next request; an injected ledger failure makes `deny` routes answer 503
//! and `allow` routes spool, and the spool is replayed in order into a ledger that verifies; the
//! route policy reloads on change and on SIGHUP and survives an invalid rewrite.
//!
//! No assertion depends on how long anything took: waits poll with a deadline.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use hyper::Method;
use proto::EventView;
use serde_json::{Value, json};

use crate::testkit::{
    EVENTUALLY, Http, ProcessServer, Reply, TestServer, assert_problem, eventually, gateway_config, json_body,
    send_json,
};
use crate::upstream::{CREATED_BODY, Upstream};

/// The route policy most tests run with.
const POLICY: &str = r#"
[[route]]
method = ["GET", "HEAD"]
path = "/v1/patients/{id}"
resource = "patients"
action = "read"
sensitivity = ["phi"]

[[route]]
method = ["PUT", "PATCH"]
path = "/v1/patients/{id}"
resource = "patients"
action = "write"
sensitivity = ["phi"]

[[route]]
method = "POST"
path = "/v1/orders/created"
resource = "orders"
action = "write"
sensitivity = ["financial"]

[[route]]
method = "GET"
path = "/v1/chunked/{n}"
resource = "files"
action = "read"

[[route]]
method = "GET"
path = "/v1/status"
resource = "status"
action = "read"
on_audit_failure = "allow"
"#;

const READ_ROUTE: &str = "GET,HEAD /v1/patients/{id}";
const WRITE_ROUTE: &str = "PUT,PATCH /v1/patients/{id}";

/// A server with a gateway in front of a test upstream.
struct Gw {
    s: TestServer,
    up: Upstream,
    http: Http,
    url: String,
    next: AtomicU32,
}

impl Gw {
    /// A gateway with [`POLICY`], the configuration changed by `tune`.
    async fn start(tune: impl FnOnce(&mut config::Config)) -> Gw {
        Gw::start_full(POLICY, tune, false).await
    }

    /// A gateway with `policy`; with `fail`, store writes fail while `<root>/fail` exists.
    async fn start_full(policy: &str, tune: impl FnOnce(&mut config::Config), fail: bool) -> Gw {
        let up = Upstream::start().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        let mut config = gateway_config(root.path(), policy, &up.url());
        tune(&mut config);
        let trigger = fail.then(|| root.path().join("fail"));
        let s = TestServer::start_config(root, &config, trigger).await;
        let url = s.gateway_url();
        Gw { s, up, http: Http::new(), url, next: AtomicU32::new(1) }
    }

    fn root(&self) -> &Path {
        self.s.root.path()
    }

    /// Issues a token (`name` and `owner` filled in unless given) and returns it with its id.
    async fn token(&self, body: Value) -> (String, String) {
        let mut body = body;
        let fields = body.as_object_mut().expect("a JSON object");
        fields.entry("name").or_insert_with(|| json!("gateway-test"));
        fields.entry("owner").or_insert_with(|| json!("clinic-app"));
        let resp = send_json(&self.s.client, Method::POST, "/v1/tokens", &body).await;
        assert_eq!(resp.status.as_u16(), 201, "create {body}: {}", String::from_utf8_lossy(&resp.body));
        let v = json_body(&resp);
        (v["token"].as_str().expect("token").to_owned(), v["id"].as_str().expect("id").to_owned())
    }

    /// A fresh request id, so a request's event can be found.
    fn rid(&self) -> String {
        format!("rq-{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends a request through the gateway with `headers` and a fresh `X-Request-Id`.
    async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Sent {
        let rid = self.rid();
        let mut all = headers.to_vec();
        all.push(("x-request-id", &rid));
        let reply = self.http.send(method, &format!("{}{path}", self.url), &all, b"").await;
        Sent { reply, rid }
    }

    /// Sends a request through the gateway with `Authorization: Bearer <token>`.
    async fn bearer(&self, method: &str, path: &str, token: &str) -> Sent {
        self.call(method, path, &[("authorization", &format!("Bearer {token}"))]).await
    }

    /// The events of `source`, oldest first.
    async fn events(&self, source: &str) -> Vec<EventView> {
        events(&self.s, source).await
    }

    /// The one gateway event of the request with id `rid`.
    async fn event(&self, rid: &str) -> EventView {
        one_event(&self.events("gateway").await, rid)
    }
}

/// A request sent and its answer.
struct Sent {
    reply: Reply,
    rid: String,
}

/// The events of `source`, oldest first.
async fn events(s: &TestServer, source: &str) -> Vec<EventView> {
    let page = s.client.list_events(&format!("?source={source}&order=asc&limit=1000")).await.expect("list events");
    assert!(page.next_cursor.is_none(), "more than a page of {source} events");
    page.events
}

/// The one event of `events` with request id `rid`.
fn one_event(events: &[EventView], rid: &str) -> EventView {
    let found: Vec<&EventView> = events.iter().filter(|e| e.request_id.as_deref() == Some(rid)).collect();
    assert_eq!(found.len(), 1, "exactly one event for request {rid}: {found:#?}");
    found[0].clone()
}

/// Checks a denial answered by the gateway and its one event; returns the event.
async fn denied(gw: &Gw, sent: &Sent, status: u16, reason: &str) -> EventView {
    let r = &sent.reply;
    let event_id = check_denial(r, status, reason);
    let e = gw.event(&sent.rid).await;
    check_denied_event(&e, &event_id, "gateway", status, reason);
    e
}

/// Checks a problem+json denial (status, reason, event id, and the headers its status calls
/// for); returns the event id.
fn check_denial(r: &Reply, status: u16, reason: &str) -> String {
    let text = r.text();
    assert_eq!(r.status, status, "expected {status} {reason}; got: {text}");
    assert_eq!(r.header("content-type"), Some("application/problem+json"), "{text}");
    let body = r.json();
    assert_eq!(body["reason"], reason, "{text}");
    assert_eq!(body["status"], status, "{text}");
    assert!(body["type"].as_str().is_some_and(|t| t.starts_with("urn:tokentrail:problem:")), "{text}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "an explanation: {text}");
    let event_id = r.header("tokentrail-event-id").expect("Tokentrail-Event-Id on every answer").to_owned();
    assert_eq!(body["event_id"], event_id.as_str(), "the body names the event of the header: {text}");
    match status {
        401 => {
            let w = r.header("www-authenticate").expect("WWW-Authenticate on a 401");
            assert!(w.starts_with("Bearer realm=\"tokentrail\""), "{w}");
            if reason != "missing_token" {
                assert!(w.contains("error=\"invalid_token\""), "{w}");
            }
        }
        429 => {
            let wait: u64 = r.header("retry-after").expect("Retry-After on a 429").parse().expect("seconds");
            assert!(wait >= 1, "Retry-After {wait}");
        }
        _ => {}
    }
    event_id
}

fn check_denied_event(e: &EventView, event_id: &str, source: &str, status: u16, reason: &str) {
    assert_eq!(e.id, event_id, "{e:#?}");
    assert_eq!(e.kind, "access", "{e:#?}");
    assert_eq!(e.source, source, "{e:#?}");
    assert_eq!(e.decision, "deny", "{e:#?}");
    assert_eq!(e.reason, reason, "{e:#?}");
    assert_eq!(e.status, Some(status), "{e:#?}");
    assert!(e.explanation.as_deref().is_some_and(|x| !x.is_empty()), "an explanation: {e:#?}");
    assert!(e.seq.is_some(), "recorded in the ledger: {e:#?}");
}

/// Checks an allowed request answered by the upstream with `status` and its one event.
async fn allowed(gw: &Gw, sent: &Sent, status: u16) -> EventView {
    let r = &sent.reply;
    assert_eq!(r.status, status, "expected {status} from the upstream; got: {}", r.text());
    let event_id = r.header("tokentrail-event-id").expect("Tokentrail-Event-Id on every answer");
    let e = gw.event(&sent.rid).await;
    assert_eq!(e.id, event_id);
    assert_eq!((e.source.as_str(), e.decision.as_str(), e.reason.as_str()), ("gateway", "allow", "ok"), "{e:#?}");
    assert_eq!(e.status, Some(status), "the upstream's status: {e:#?}");
    assert!(e.latency_ms.is_some_and(|l| l >= 0.0), "a latency: {e:#?}");
    assert!(e.explanation.as_deref().is_some_and(|x| !x.is_empty()), "an explanation: {e:#?}");
    assert!(e.token_id.is_some() && e.owner.is_some(), "{e:#?}");
    e
}

/// `token` with one character of its secret changed: the checksum no longer matches.
fn with_bad_checksum(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = token.len() - token::format::CHECKSUM_LEN - 1;
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).expect("ASCII")
}

/// A well-formed token with a valid checksum: with `id`, or a fresh id.
fn forged(id: Option<&str>) -> String {
    let mut fill = |b: &mut [u8]| engine::os_random(b).expect("random bytes");
    let prefix = token::Prefix::default();
    let t = match id {
        Some(id) => token::TokenString::with_id(&prefix, id, &mut fill),
        None => token::TokenString::generate(&prefix, &mut fill),
    };
    t.expose().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_reason_code_through_the_gateway() {
    let gw = Gw::start(|_| {}).await;
    let (reader, reader_id) = gw.token(json!({"scopes": ["patients:read"]})).await;

    // ok: forwarded with the query string; the event has the route, the request's path without
    // its query, the upstream's status and the response size.
    let sent = gw.bearer("GET", "/v1/patients/42?name=alice", &reader).await;
    let e = allowed(&gw, &sent, 200).await;
    assert_eq!(gw.up.last().target, "/v1/patients/42?name=alice");
    assert_eq!(e.token_id.as_deref(), Some(reader_id.as_str()));
    assert_eq!(e.owner.as_deref(), Some("clinic-app"));
    assert_eq!(e.method.as_deref(), Some("GET"));
    assert_eq!(e.path.as_deref(), Some("/v1/patients/42"), "query strings are redacted");
    assert_eq!(e.route.as_deref(), Some(READ_ROUTE));
    assert_eq!((e.resource.as_deref(), e.action.as_deref()), (Some("patients"), Some("read")));
    assert_eq!(e.sensitivity, ["phi"]);
    assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(e.required_scope.as_deref(), Some("patients:read"));
    assert_eq!(e.granted_scopes, ["patients:read"]);
    assert_eq!(e.user_agent, None, "this client sends no User-Agent");
    let length: u64 = sent.reply.header("content-length").expect("the upstream's Content-Length").parse().expect("n");
    assert_eq!(length, sent.reply.body.len() as u64);
    assert_eq!(e.bytes_out, Some(length), "bytes_out is the response size: {e:#?}");

    // A token pasted into the path never reaches the audit log.
    let sent = gw.bearer("GET", &format!("/v1/patients/{reader}"), &reader).await;
    let e = allowed(&gw, &sent, 200).await;
    assert_eq!(e.path.as_deref(), Some("/v1/patients/<redacted>"), "{e:#?}");

    // ip_not_allowed's counterpart: a token fenced to networks that include 127.0.0.1 passes.
    let (local, _) = gw.token(json!({"scopes": ["patients:read"], "allowed_cidrs": ["127.0.0.0/8", "::1/128"]})).await;
    allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &local).await, 200).await;

    // rate_limited (the token's own limit, 2/min): two pass, the third is 429 with Retry-After.
    let (limited, limited_id) = gw.token(json!({"scopes": ["patients:read"], "rate_limit": "2/min"})).await;
    allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &limited).await, 200).await;
    allowed(&gw, &gw.bearer("GET", "/v1/patients/2", &limited).await, 200).await;

    // From here on nothing may reach the upstream.
    let reached = gw.up.count();

    let e = denied(&gw, &gw.bearer("GET", "/v1/patients/3", &limited).await, 429, "rate_limited").await;
    assert_eq!(e.token_id.as_deref(), Some(limited_id.as_str()));
    assert_eq!(e.details.get("rate_limit").map(String::as_str), Some("2/min"), "{e:#?}");
    assert!(e.details.contains_key("retry_after_s"), "{e:#?}");
    assert_eq!(e.route.as_deref(), Some(READ_ROUTE));
    assert_eq!(e.sensitivity, ["phi"]);

    // missing_token: no credential at all.
    let e = denied(&gw, &gw.call("GET", "/v1/patients/42", &[]).await, 401, "missing_token").await;
    assert_eq!((e.token_id.as_deref(), e.token_fingerprint.as_deref()), (None, None), "{e:#?}");
    assert_eq!(e.route.as_deref(), Some(READ_ROUTE));
    assert_eq!(e.sensitivity, ["phi"]);
    assert_eq!(e.path.as_deref(), Some("/v1/patients/42"));

    // malformed_token: not shaped like a token, or another scheme.
    let e = denied(&gw, &gw.bearer("GET", "/v1/patients/42", "not-a-token").await, 401, "malformed_token").await;
    assert!(e.token_fingerprint.is_some(), "guesses correlate by fingerprint: {e:#?}");
    assert_eq!(e.route.as_deref(), Some(READ_ROUTE));
    let basic = gw.call("GET", "/v1/patients/42", &[("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")]).await;
    denied(&gw, &basic, 401, "malformed_token").await;

    // bad_checksum: one character of a real token changed.
    let e =
        denied(&gw, &gw.bearer("GET", "/v1/patients/42", &with_bad_checksum(&reader)).await, 401, "bad_checksum").await;
    assert_eq!(e.token_id, None, "{e:#?}");
    assert_eq!(e.sensitivity, ["phi"]);

    // unknown_token: a well-formed token nobody issued, and a real id with another secret.
    let e = denied(&gw, &gw.bearer("GET", "/v1/patients/42", &forged(None)).await, 401, "unknown_token").await;
    assert_eq!(e.token_id, None, "{e:#?}");
    assert!(e.token_fingerprint.is_some(), "{e:#?}");
    let e =
        denied(&gw, &gw.bearer("GET", "/v1/patients/42", &forged(Some(&reader_id))).await, 401, "unknown_token").await;
    assert_eq!(e.token_id, None, "a wrong secret does not name the token: {e:#?}");

    // revoked.
    let (gone, gone_id) = gw.token(json!({"scopes": ["patients:read"]})).await;
    gw.s.client.revoke_token(&gone_id, "left the company").await.expect("revoke");
    let e = denied(&gw, &gw.bearer("GET", "/v1/patients/42", &gone).await, 401, "revoked").await;
    assert_eq!(e.token_id.as_deref(), Some(gone_id.as_str()));
    assert_eq!(e.details.get("revoke_reason").map(String::as_str), Some("left the company"), "{e:#?}");
    assert!(e.details.contains_key("revoked_at"), "{e:#?}");

    // not_yet_valid: not_before an hour from now (by the server's own clock).
    let later = s_now(&gw.s).checked_add(jiff::SignedDuration::from_hours(1)).expect("a time");
    let (early, _) = gw.token(json!({"scopes": ["patients:read"], "not_before": later.to_string()})).await;
    let e = denied(&gw, &gw.bearer("GET", "/v1/patients/42", &early).await, 401, "not_yet_valid").await;
    assert!(e.details.contains_key("not_before"), "{e:#?}");

    // insufficient_scope: the read token tries to write.
    let sent = gw.bearer("PUT", "/v1/patients/42", &reader).await;
    let e = denied(&gw, &sent, 403, "insufficient_scope").await;
    let w = sent.reply.header("www-authenticate").expect("WWW-Authenticate names the scope");
    assert!(w.contains("error=\"insufficient_scope\"") && w.contains("scope=\"patients:write\""), "{w}");
    assert_eq!(e.route.as_deref(), Some(WRITE_ROUTE));
    assert_eq!((e.resource.as_deref(), e.action.as_deref()), (Some("patients"), Some("write")));
    assert_eq!(e.required_scope.as_deref(), Some("patients:write"));
    assert_eq!(e.granted_scopes, ["patients:read"]);
    assert!(e.explanation.as_deref().is_some_and(|x| x.contains("patients:write")), "{e:#?}");

    // ip_not_allowed: IPv4 and IPv6 networks that exclude 127.0.0.1.
    let (fenced, _) =
        gw.token(json!({"scopes": ["patients:read"], "allowed_cidrs": ["10.0.0.0/8", "2001:db8::/32"]})).await;
    let e = denied(&gw, &gw.bearer("GET", "/v1/patients/42", &fenced).await, 403, "ip_not_allowed").await;
    assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(e.details.get("allowed_cidrs").map(String::as_str), Some("10.0.0.0/8,2001:db8::/32"), "{e:#?}");

    // route_not_found: no route, and a path the policy refuses to interpret.
    let e = denied(&gw, &gw.bearer("GET", "/v1/billing", &reader).await, 403, "route_not_found").await;
    assert_eq!(e.route, None, "{e:#?}");
    assert!(e.sensitivity.is_empty(), "{e:#?}");
    assert_eq!(e.path.as_deref(), Some("/v1/billing"));
    denied(&gw, &gw.bearer("GET", "/v1//patients/42", &reader).await, 403, "route_not_found").await;
    denied(&gw, &gw.bearer("DELETE", "/v1/patients/42", &reader).await, 403, "route_not_found").await;

    assert_eq!(gw.up.count(), reached, "a denied request never reaches the upstream: {:#?}", gw.up.seen());

    // One event per attempt, nothing else.
    let all = gw.events("gateway").await;
    assert_eq!(all.len() as u32, gw.next.load(Ordering::Relaxed) - 1, "one event per request: {all:#?}");
    gw.s.stop().await;
}

/// The server's clock (so a test never reads the wall clock itself).
fn s_now(s: &TestServer) -> jiff::Timestamp {
    s.engine().now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_applies_from_the_boundary_on() {
    let gw = Gw::start(|_| {}).await;
    let (short, short_id) = gw.token(json!({"scopes": ["patients:read"], "expires_in": "2s"})).await;
    let view = gw.s.client.get_token(&short_id).await.expect("show");
    let expires_at: jiff::Timestamp = view.expires_at.expect("an expiry").parse().expect("a time");

    // Ask until the answer changes; every answer before is `ok`, decided before the expiry.
    let mut before = Vec::new();
    let last = eventually("the token to expire", EVENTUALLY, async || {
        let sent = gw.bearer("GET", "/v1/patients/42", &short).await;
        if sent.reply.status == 200 {
            before.push(sent.rid);
            None
        } else {
            Some(sent)
        }
    })
    .await;
    let e = denied(&gw, &last, 401, "expired").await;
    assert_eq!(e.token_id.as_deref(), Some(short_id.as_str()));
    let time = |e: &EventView| e.time.parse::<jiff::Timestamp>().expect("a time");
    assert!(time(&e) >= expires_at, "expired is decided at or after {expires_at}: {e:#?}");
    assert!(e.details.contains_key("expires_at"), "{e:#?}");
    for rid in &before {
        let ok = gw.event(rid).await;
        assert!(time(&ok) < expires_at, "allowed only before {expires_at}: {ok:#?}");
    }
    gw.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_never_reaches_the_upstream() {
    let gw = Gw::start(|c| c.gateway.credential_header = Some("X-API-Key".to_owned())).await;
    let (reader, reader_id) = gw.token(json!({"scopes": ["patients:read"], "owner": "lab-robot"})).await;
    let secret = crate::testkit::token_secret(&reader);

    // Authorization: Bearer, with spoofed identity headers and a hop-by-hop header.
    let sent = gw
        .call(
            "GET",
            "/v1/patients/1",
            &[
                ("authorization", &format!("Bearer {reader}")),
                ("tokentrail-token-id", "someone-else"),
                ("tokentrail-owner", "root"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("x-custom", "kept"),
            ],
        )
        .await;
    allowed(&gw, &sent, 200).await;
    let seen = gw.up.last();
    assert_eq!(seen.header("authorization"), None, "{seen:#?}");
    assert_eq!(seen.header("tokentrail-token-id"), Some(reader_id.as_str()), "{seen:#?}");
    assert_eq!(seen.header("tokentrail-owner"), Some("lab-robot"), "{seen:#?}");
    assert_eq!(seen.header("x-request-id"), Some(sent.rid.as_str()), "{seen:#?}");
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "{seen:#?}");
    assert_eq!(seen.header("x-hop"), None, "hop-by-hop headers stay: {seen:#?}");
    assert_eq!(seen.header("x-custom"), Some("kept"), "{seen:#?}");

    // The configured header.
    let sent = gw.call("GET", "/v1/patients/2", &[("x-api-key", &reader)]).await;
    allowed(&gw, &sent, 200).await;
    let seen = gw.up.last();
    assert_eq!(seen.header("x-api-key"), None, "{seen:#?}");
    assert_eq!(seen.header("authorization"), None, "{seen:#?}");
    assert_eq!(seen.header("tokentrail-token-id"), Some(reader_id.as_str()), "{seen:#?}");

    // Both: Authorization wins, and both are removed.
    let sent = gw
        .call("GET", "/v1/patients/3", &[("authorization", &format!("Bearer {reader}")), ("x-api-key", "junk")])
        .await;
    allowed(&gw, &sent, 200).await;
    let seen = gw.up.last();
    assert_eq!((seen.header("authorization"), seen.header("x-api-key")), (None, None), "{seen:#?}");

    // Denied through either header: nothing reaches the upstream.
    let reached = gw.up.count();
    denied(&gw, &gw.call("PUT", "/v1/patients/2", &[("x-api-key", &reader)]).await, 403, "insufficient_scope").await;
    denied(&gw, &gw.call("GET", "/v1/patients/2", &[("x-api-key", "ttk_nope")]).await, 401, "malformed_token").await;
    assert_eq!(gw.up.count(), reached);

    // The secret appears nowhere in what the upstream received.
    for seen in gw.up.seen() {
        for (name, value) in &seen.headers {
            assert!(!value.contains(&secret), "the secret reached the upstream in {name}: {seen:#?}");
        }
        assert!(!seen.target.contains(&secret));
    }
    gw.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_scope_changes_and_rotation_apply_to_the_next_request() {
    let gw = Gw::start(|_| {}).await;

    // Revoke, then retry at once: denied.
    let (t, id) = gw.token(json!({"scopes": ["patients:read"]})).await;
    allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &t).await, 200).await;
    gw.s.client.revoke_token(&id, "incident 7").await.expect("revoke");
    denied(&gw, &gw.bearer("GET", "/v1/patients/1", &t).await, 401, "revoked").await;

    // Scope changes: granted and taken away, each for the very next request.
    let (t, id) = gw.token(json!({"scopes": ["patients:read"]})).await;
    allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &t).await, 200).await;
    denied(&gw, &gw.bearer("PUT", "/v1/patients/1", &t).await, 403, "insufficient_scope").await;
    let patch = |scopes: &[&str]| json!({ "scopes": scopes });
    let r = send_json(&gw.s.client, Method::PATCH, &format!("/v1/tokens/{id}"), &patch(&["patients:write"])).await;
    assert_eq!(r.status.as_u16(), 200, "{}", String::from_utf8_lossy(&r.body));
    allowed(&gw, &gw.bearer("PUT", "/v1/patients/1", &t).await, 200).await;
    allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &t).await, 200).await;
    let r = send_json(&gw.s.client, Method::PATCH, &format!("/v1/tokens/{id}"), &patch(&["status:read"])).await;
    assert_eq!(r.status.as_u16(), 200, "{}", String::from_utf8_lossy(&r.body));
    let e = denied(&gw, &gw.bearer("GET", "/v1/patients/1", &t).await, 403, "insufficient_scope").await;
    assert_eq!(e.granted_scopes, ["status:read"]);
    allowed(&gw, &gw.bearer("GET", "/v1/status", &t).await, 200).await;

    // A network fence added by PATCH applies at once too.
    let r =
        send_json(&gw.s.client, Method::PATCH, &format!("/v1/tokens/{id}"), &json!({"allowed_cidrs": ["10.0.0.0/8"]}))
            .await;
    assert_eq!(r.status.as_u16(), 200, "{}", String::from_utf8_lossy(&r.body));
    denied(&gw, &gw.bearer("GET", "/v1/status", &t).await, 403, "ip_not_allowed").await;

    // Rotation without grace: the old secret is unknown at once, the new one works.
    let (old, id) = gw.token(json!({"scopes": ["patients:read"]})).await;
    allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &old).await, 200).await;
    let new = gw.s.client.rotate_token(&id, None).await.expect("rotate").token;
    denied(&gw, &gw.bearer("GET", "/v1/patients/1", &old).await, 401, "unknown_token").await;
    let e = allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &new).await, 200).await;
    assert_eq!(e.token_id.as_deref(), Some(id.as_str()));

    // With a grace period both work until it ends.
    let newer = gw.s.client.rotate_token(&id, Some("1h".to_owned())).await.expect("rotate").token;
    allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &new).await, 200).await;
    allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &newer).await, 200).await;
    gw.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_events_record_the_upstreams_status_latency_and_size() {
    let gw = Gw::start(|_| {}).await;
    let (t, _) = gw.token(json!({"scopes": ["orders:write", "files:read"]})).await;

    // 201 with a fixed body; the request body is forwarded whole.
    let upload = vec![b'o'; 100_000];
    let rid = gw.rid();
    let headers = [("authorization", format!("Bearer {t}")), ("x-request-id", rid.clone())];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = gw.http.send("POST", &format!("{}/v1/orders/created", gw.url), &headers, &upload).await;
    let sent = Sent { reply, rid };
    let e = allowed(&gw, &sent, 201).await;
    assert_eq!(gw.up.last().body_len, upload.len(), "the request body reaches the upstream whole");
    assert_eq!(sent.reply.text(), CREATED_BODY);
    assert_eq!(e.bytes_out, Some(CREATED_BODY.len() as u64), "{e:#?}");
    assert_eq!(e.route.as_deref(), Some("POST /v1/orders/created"));
    assert_eq!(e.sensitivity, ["financial"]);
    assert_eq!(gw.up.last().method, "POST");

    // Chunked, small: buffered, so the exact size is known.
    let sent = gw.bearer("GET", "/v1/chunked/10000", &t).await;
    let e = allowed(&gw, &sent, 200).await;
    assert_eq!(sent.reply.body.len(), 10_000);
    assert_eq!(e.bytes_out, Some(10_000), "{e:#?}");

    // Chunked, over 1 MiB: streamed whole to the client, recorded without a size and with a note.
    let big = 3 * 512 * 1024 + 7;
    let sent = gw.bearer("GET", &format!("/v1/chunked/{big}"), &t).await;
    let e = allowed(&gw, &sent, 200).await;
    assert_eq!(sent.reply.body.len(), big, "the whole body arrives");
    assert!(sent.reply.body.iter().all(|b| *b == b'x'), "unaltered");
    assert_eq!(sent.reply.header("content-length"), None);
    assert_eq!(e.bytes_out, None, "{e:#?}");
    let note = e.details.get("bytes_out").expect("a note on the missing size");
    assert!(note.contains("streamed"), "{note}");
    gw.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_limited_per_source_address() {
    let gw = Gw::start(|c| {
        c.gateway.failed_attempts = token::RateLimit::parse("3/min").expect("a rate");
        c.gateway.trusted_proxies = vec![token::parse_cidr("127.0.0.1/32").expect("a network")];
    })
    .await;
    let (good, _) = gw.token(json!({"scopes": ["patients:read"]})).await;
    let from = |ip: &'static str| ("x-forwarded-for", ip);
    let auth = |t: &str| format!("Bearer {t}");

    // Requests without a credential are not guesses: they spend nothing.
    for _ in 0..5 {
        denied(&gw, &gw.call("GET", "/v1/patients/1", &[from("203.0.113.9")]).await, 401, "missing_token").await;
    }
    // Three failed attempts are allowed...
    let guesses = [
        ("not-a-token".to_owned(), "malformed_token"),
        (with_bad_checksum(&good), "bad_checksum"),
        (forged(None), "unknown_token"),
    ];
    for (guess, reason) in &guesses {
        let sent = gw.call("GET", "/v1/patients/1", &[from("203.0.113.9"), ("authorization", &auth(guess))]).await;
        denied(&gw, &sent, 401, reason).await;
    }
    // ...then the address is refused, even with a valid token, before any lookup.
    let reached = gw.up.count();
    let sent = gw.call("GET", "/v1/patients/1", &[from("203.0.113.9"), ("authorization", &auth(&good))]).await;
    let e = denied(&gw, &sent, 429, "rate_limited").await;
    assert_eq!(e.source_ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(e.token_id, None, "no lookup: {e:#?}");
    assert!(e.explanation.as_deref().is_some_and(|x| x.contains("failed attempts")), "{e:#?}");
    let sent = gw.call("GET", "/v1/patients/1", &[from("203.0.113.9"), ("authorization", &auth(&forged(None)))]).await;
    denied(&gw, &sent, 429, "rate_limited").await;
    assert_eq!(gw.up.count(), reached);

    // Other addresses, and the proxy itself, are not affected.
    let sent = gw.call("GET", "/v1/patients/1", &[from("203.0.113.10"), ("authorization", &auth(&good))]).await;
    allowed(&gw, &sent, 200).await;
    allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &good).await, 200).await;

    // IPv6 addresses share a budget per /64.
    for (i, (guess, reason)) in guesses.iter().enumerate() {
        let ip = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"][i];
        let sent = gw.call("GET", "/v1/patients/1", &[from(ip), ("authorization", &auth(guess))]).await;
        denied(&gw, &sent, 401, reason).await;
    }
    let sent = gw.call("GET", "/v1/patients/1", &[from("2001:db8:1:2::99"), ("authorization", &auth(&good))]).await;
    denied(&gw, &sent, 429, "rate_limited").await;
    let sent = gw.call("GET", "/v1/patients/1", &[from("2001:db8:1:3::1"), ("authorization", &auth(&good))]).await;
    allowed(&gw, &sent, 200).await;
    gw.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_addresses_from_trusted_proxies_only() {
    let trusted =
        Gw::start(|c| c.gateway.trusted_proxies = vec![token::parse_cidr("127.0.0.1/32").expect("a net")]).await;
    let (net4, _) = trusted.token(json!({"scopes": ["patients:read"], "allowed_cidrs": ["203.0.113.0/24"]})).await;
    let (net6, _) = trusted.token(json!({"scopes": ["patients:read"], "allowed_cidrs": ["2001:db8::/32"]})).await;
    let with = |t: &str, extra: &[(&'static str, &'static str)]| {
        let mut h = vec![("authorization".to_owned(), format!("Bearer {t}"))];
        h.extend(extra.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
        h
    };
    async fn go(gw: &Gw, headers: Vec<(String, String)>) -> Sent {
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        gw.call("GET", "/v1/patients/5", &h).await
    }

    // The right-most address that is not a trusted proxy is the client.
    let sent = go(&trusted, with(&net4, &[("x-forwarded-for", "203.0.113.7")])).await;
    let e = allowed(&trusted, &sent, 200).await;
    assert_eq!(e.source_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(trusted.up.last().header("x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"), "the chain grows");
    let sent = go(&trusted, with(&net4, &[("x-forwarded-for", "198.51.100.1, 203.0.113.7, 127.0.0.1")])).await;
    assert_eq!(allowed(&trusted, &sent, 200).await.source_ip.as_deref(), Some("203.0.113.7"));
    // A client cannot hide behind an address it writes itself to the left.
    let sent = go(&trusted, with(&net4, &[("x-forwarded-for", "203.0.113.7, 198.51.100.1")])).await;
    let e = denied(&trusted, &sent, 403, "ip_not_allowed").await;
    assert_eq!(e.source_ip.as_deref(), Some("198.51.100.1"));
    // X-Real-IP when there is no X-Forwarded-For.
    let sent = go(&trusted, with(&net4, &[("x-real-ip", "203.0.113.8")])).await;
    assert_eq!(allowed(&trusted, &sent, 200).await.source_ip.as_deref(), Some("203.0.113.8"));
    // IPv6 networks.
    let sent = go(&trusted, with(&net6, &[("x-forwarded-for", "2001:db8::7")])).await;
    assert_eq!(allowed(&trusted, &sent, 200).await.source_ip.as_deref(), Some("2001:db8::7"));
    let sent = go(&trusted, with(&net6, &[("x-forwarded-for", "2001:db9::7")])).await;
    assert_eq!(denied(&trusted, &sent, 403, "ip_not_allowed").await.source_ip.as_deref(), Some("2001:db9::7"));
    // Without a forwarding header, the proxy's own address.
    let sent = go(&trusted, with(&net4, &[])).await;
    assert_eq!(denied(&trusted, &sent, 403, "ip_not_allowed").await.source_ip.as_deref(), Some("127.0.0.1"));

    // An untrusted peer's forwarding headers are ignored.
    let untrusted = Gw::start(|_| {}).await;
    let (net4, _) = untrusted.token(json!({"scopes": ["patients:read"], "allowed_cidrs": ["203.0.113.0/24"]})).await;
    let (lo4, _) = untrusted.token(json!({"scopes": ["patients:read"], "allowed_cidrs": ["127.0.0.1"]})).await;
    for spoof in [("x-forwarded-for", "203.0.113.7"), ("x-real-ip", "203.0.113.7")] {
        let sent = go(&untrusted, with(&net4, &[spoof])).await;
        assert_eq!(denied(&untrusted, &sent, 403, "ip_not_allowed").await.source_ip.as_deref(), Some("127.0.0.1"));
        let sent = go(&untrusted, with(&lo4, &[spoof])).await;
        assert_eq!(allowed(&untrusted, &sent, 200).await.source_ip.as_deref(), Some("127.0.0.1"));
    }
    // The same for /v1/authz.
    let authz = untrusted
        .http
        .send(
            "GET",
            &format!("{}/v1/authz", untrusted.s.addr),
            &[
                ("authorization", &format!("Bearer {net4}")),
                ("x-original-method", "GET"),
                ("x-original-uri", "/v1/patients/5"),
                ("x-real-ip", "203.0.113.7"),
            ],
            b"",
        )
        .await;
    assert_eq!(authz.status, 403, "{}", authz.text());
    assert_eq!(authz.header("tokentrail-reason"), Some("ip_not_allowed"));

    // A gateway on ::1 sees the IPv6 peer.
    let v6 = Gw::start(|c| c.gateway.listen = "[::1]:0".parse().expect("an address")).await;
    assert!(v6.url.starts_with("http://[::1]:"), "{}", v6.url);
    let (lo6, _) = v6.token(json!({"scopes": ["patients:read"], "allowed_cidrs": ["::1/128"]})).await;
    let (lo4, _) =
        v6.token(json!({"scopes": ["patients:read"], "allowed_cidrs": ["127.0.0.0/8", "2001:db8::/32"]})).await;
    let e = allowed(&v6, &v6.bearer("GET", "/v1/patients/6", &lo6).await, 200).await;
    assert_eq!(e.source_ip.as_deref(), Some("::1"));
    assert_eq!(v6.up.last().header("x-forwarded-for"), Some("::1"));
    let e = denied(&v6, &v6.bearer("GET", "/v1/patients/6", &lo4).await, 403, "ip_not_allowed").await;
    assert_eq!(e.source_ip.as_deref(), Some("::1"));

    trusted.s.stop().await;
    untrusted.s.stop().await;
    v6.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge() {
    let gw = Gw::start(|_| {}).await;
    let (t, id) = gw.token(json!({"scopes": ["patients:read"]})).await;
    let h2 = Http::http2();
    let url = format!("{}/v1/patients/9", gw.url);
    let r = h2.send("GET", &url, &[("authorization", &format!("Bearer {t}")), ("x-request-id", "h2-ok")], b"").await;
    assert_eq!(r.version, hyper::Version::HTTP_2);
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["target"], "/v1/patients/9");
    assert_eq!(echo["headers"]["tokentrail-token-id"][0], id.as_str());
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    let e = gw.event("h2-ok").await;
    assert_eq!((e.reason.as_str(), e.status), ("ok", Some(200)));
    assert_eq!(r.header("tokentrail-event-id"), Some(e.id.as_str()));

    let r = h2.send("GET", &url, &[("x-request-id", "h2-denied")], b"").await;
    assert_eq!(r.version, hyper::Version::HTTP_2);
    let event_id = check_denial(&r, 401, "missing_token");
    assert_eq!(gw.event("h2-denied").await.id, event_id);
    gw.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_decides_and_records_one_event_per_decision() {
    let gw = Gw::start(|_| {}).await;
    let s = &gw.s;
    let (service, service_id) = gw.token(json!({"scopes": ["tokentrail:verify"], "owner": "billing-svc"})).await;
    let (reader, reader_id) = gw.token(json!({"scopes": ["patients:read"]})).await;
    let (fenced, _) = gw.token(json!({"scopes": ["patients:read"], "allowed_cidrs": ["10.0.0.0/8"]})).await;
    let caller = s.client_with(Some(&service));
    let verify = async |body: Value| send_json(&caller, Method::POST, "/v1/verify", &body).await;

    // The caller needs tokentrail:verify.
    let body = json!({"token": reader, "scope": "patients:read"});
    let r = send_json(&s.client_with(None), Method::POST, "/v1/verify", &body).await;
    assert_problem(&r, 401, "unauthorized");
    assert!(r.headers.contains_key("www-authenticate"));
    let r = send_json(&s.client_with(Some(&reader)), Method::POST, "/v1/verify", &body).await;
    let p = assert_problem(&r, 403, "forbidden");
    assert_eq!(p["reason"], "insufficient_scope");
    assert!(events(s, "verify").await.is_empty(), "no decision was made");

    // Decisions: each is one event with source verify.
    let mut decided = Vec::new();
    let cases = [
        (json!({"token": reader, "method": "GET", "path": "/v1/patients/42"}), true, "ok"),
        (json!({"token": reader, "scope": "patients:read"}), true, "ok"),
        (json!({"token": reader, "scope": "patients:write"}), false, "insufficient_scope"),
        (json!({"token": reader, "method": "GET", "path": "/v1/nowhere"}), false, "route_not_found"),
        (json!({"token": "garbage", "scope": "patients:read"}), false, "malformed_token"),
        (json!({"token": fenced, "scope": "patients:read", "source_ip": "203.0.113.9"}), false, "ip_not_allowed"),
        (json!({"token": fenced, "scope": "patients:read", "source_ip": "10.1.2.3"}), true, "ok"),
    ];
    for (body, valid, reason) in &cases {
        let r = verify(body.clone()).await;
        assert_eq!(r.status.as_u16(), 200, "{body}: {}", String::from_utf8_lossy(&r.body));
        let v = json_body(&r);
        assert_eq!(v["valid"], *valid, "{body}: {v}");
        assert_eq!(v["decision"], if *valid { "allow" } else { "deny" }, "{v}");
        assert_eq!(v["reason"], *reason, "{body}: {v}");
        assert!(v["explanation"].as_str().is_some_and(|x| !x.is_empty()), "{v}");
        for field in ["token_id", "owner", "scopes", "event_id"] {
            assert!(v.get(field).is_some(), "{field} in {v}");
        }
        decided.push((v, *reason));
    }
    let first = &decided[0].0;
    assert_eq!(first["token_id"], reader_id.as_str());
    assert_eq!(first["owner"], "clinic-app");
    assert_eq!(first["scopes"], json!(["patients:read"]));
    assert_eq!(decided[4].0["token_id"], Value::Null, "a malformed token names nobody");

    let recorded = events(s, "verify").await;
    assert_eq!(recorded.len(), cases.len(), "one event per decision: {recorded:#?}");
    for ((v, reason), e) in decided.iter().zip(&recorded) {
        assert_eq!(v["event_id"], e.id.as_str());
        assert_eq!(e.reason, *reason);
        assert_eq!(e.details.get("caller").map(String::as_str), Some(service_id.as_str()), "{e:#?}");
        assert!(e.explanation.is_some(), "{e:#?}");
    }
    assert_eq!(recorded[0].route.as_deref(), Some(READ_ROUTE));
    assert_eq!(recorded[0].sensitivity, ["phi"]);
    assert_eq!(recorded[0].path.as_deref(), Some("/v1/patients/42"));
    assert_eq!(recorded[2].required_scope.as_deref(), Some("patients:write"));
    assert_eq!(recorded[5].source_ip.as_deref(), Some("203.0.113.9"));

    // Bad bodies: 400, and no decision is recorded.
    let bad = [
        json!({"token": reader}),
        json!({"token": reader, "method": "GET"}),
        json!({"token": reader, "path": "/v1/patients/1"}),
        json!({"token": reader, "method": "GET", "path": "/v1/patients/1", "scope": "patients:read"}),
        json!({"token": reader, "scope": "patients"}),
        json!({"token": reader, "scope": "Patients:READ"}),
        json!({"token": reader, "scope": "patients:read", "source_ip": "not-an-ip"}),
        json!({"token": reader, "scope": "patients:read", "extra": 1}),
        json!({"scope": "patients:read"}),
    ];
    for body in &bad {
        let r = verify(body.clone()).await;
        assert_eq!(r.status.as_u16(), 400, "{body}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{body}"
        );
    }
    let r = caller.send(Method::POST, "/v1/verify", Some(b"{not json".to_vec()), Some("application/json")).await;
    assert_eq!(r.expect("an answer").status.as_u16(), 400);
    assert_eq!(events(s, "verify").await.len(), cases.len(), "bad bodies decide nothing");
    gw.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_for_nginx_and_envoy() {
    let gw = Gw::start(|c| c.gateway.trusted_proxies = vec![token::parse_cidr("127.0.0.1/32").expect("a net")]).await;
    let (reader, reader_id) = gw.token(json!({"scopes": ["patients:read"], "owner": "ward-3"})).await;
    let (limited, _) = gw.token(json!({"scopes": ["patients:read"], "rate_limit": "2/min"})).await;
    let (limited_envoy, _) = gw.token(json!({"scopes": ["patients:read"], "rate_limit": "1/min"})).await;
    let base = gw.s.addr.clone();
    let n = AtomicU32::new(0);
    let authz = async |method: &str, path: &str, token: Option<&str>, nginx: Option<(&str, &str)>| {
        let rid = format!("authz-{}", n.fetch_add(1, Ordering::Relaxed));
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut h: Vec<(&str, &str)> = vec![("x-request-id", &rid)];
        if let Some(b) = &bearer {
            h.push(("authorization", b));
        }
        if let Some((m, uri)) = nginx {
            h.extend([("x-original-method", m), ("x-original-uri", uri), ("x-real-ip", "198.51.100.20")]);
        }
        let reply = gw.http.send(method, &format!("{base}{path}"), &h, b"").await;
        Sent { reply, rid }
    };
    let event = async |rid: &str| one_event(&events(&gw.s, "authz").await, rid);
    let reached = gw.up.count();

    // nginx style: the original request in headers, the client from X-Real-IP of a trusted peer.
    let ok = authz("GET", "/v1/authz", Some(&reader), Some(("GET", "/v1/patients/42?full=1"))).await;
    assert_eq!(ok.reply.status, 200, "{}", ok.reply.text());
    assert_eq!(ok.reply.header("tokentrail-token-id"), Some(reader_id.as_str()));
    assert_eq!(ok.reply.header("tokentrail-owner"), Some("ward-3"));
    let e = event(&ok.rid).await;
    assert_eq!(ok.reply.header("tokentrail-event-id"), Some(e.id.as_str()));
    assert_eq!((e.source.as_str(), e.decision.as_str(), e.reason.as_str()), ("authz", "allow", "ok"));
    assert_eq!((e.method.as_deref(), e.path.as_deref()), (Some("GET"), Some("/v1/patients/42")));
    assert_eq!(e.route.as_deref(), Some(READ_ROUTE));
    assert_eq!(e.sensitivity, ["phi"]);
    assert_eq!(e.source_ip.as_deref(), Some("198.51.100.20"));
    assert_eq!(e.status, Some(200));

    let none = authz("GET", "/v1/authz", None, Some(("GET", "/v1/patients/42"))).await;
    let id = check_denial(&none.reply, 401, "missing_token");
    check_denied_event(&event(&none.rid).await, &id, "authz", 401, "missing_token");

    let scope = authz("GET", "/v1/authz", Some(&reader), Some(("PUT", "/v1/patients/42"))).await;
    let id = check_denial(&scope.reply, 403, "insufficient_scope");
    let e = event(&scope.rid).await;
    check_denied_event(&e, &id, "authz", 403, "insufficient_scope");
    assert_eq!(e.route.as_deref(), Some(WRITE_ROUTE));

    let route = authz("GET", "/v1/authz", Some(&reader), Some(("GET", "/v1/elsewhere"))).await;
    check_denial(&route.reply, 403, "route_not_found");

    // nginx treats a 429 as an error: rate limited is a 403 there, with the reason in a header.
    for _ in 0..2 {
        let r = authz("GET", "/v1/authz", Some(&limited), Some(("GET", "/v1/patients/1"))).await;
        assert_eq!(r.reply.status, 200, "{}", r.reply.text());
    }
    let r = authz("GET", "/v1/authz", Some(&limited), Some(("GET", "/v1/patients/1"))).await;
    assert_eq!(r.reply.status, 403, "{}", r.reply.text());
    assert_eq!(r.reply.header("tokentrail-reason"), Some("rate_limited"));
    assert_eq!(r.reply.json()["reason"], "rate_limited");
    let e = event(&r.rid).await;
    assert_eq!((e.reason.as_str(), e.status), ("rate_limited", Some(403)), "{e:#?}");

    // Envoy style: the original method, the original path after /v1/authz.
    let ok = authz("GET", "/v1/authz/v1/patients/42", Some(&reader), None).await;
    assert_eq!(ok.reply.status, 200, "{}", ok.reply.text());
    assert_eq!(ok.reply.header("tokentrail-token-id"), Some(reader_id.as_str()));
    let e = event(&ok.rid).await;
    assert_eq!((e.method.as_deref(), e.path.as_deref()), (Some("GET"), Some("/v1/patients/42")));
    assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"));
    let put = authz("PUT", "/v1/authz/v1/patients/42", Some(&reader), None).await;
    let id = check_denial(&put.reply, 403, "insufficient_scope");
    let e = event(&put.rid).await;
    check_denied_event(&e, &id, "authz", 403, "insufficient_scope");
    assert_eq!(e.method.as_deref(), Some("PUT"));
    let r = authz("GET", "/v1/authz/v1/patients/1", Some(&limited_envoy), None).await;
    assert_eq!(r.reply.status, 200, "{}", r.reply.text());
    let r = authz("GET", "/v1/authz/v1/patients/1", Some(&limited_envoy), None).await;
    let id = check_denial(&r.reply, 429, "rate_limited");
    check_denied_event(&event(&r.rid).await, &id, "authz", 429, "rate_limited");

    // Traefik forwardAuth style.
    let rid = "authz-traefik";
    let r = gw
        .http
        .send(
            "GET",
            &format!("{base}/v1/authz"),
            &[
                ("authorization", &format!("Bearer {reader}")),
                ("x-forwarded-method", "PATCH"),
                ("x-forwarded-uri", "/v1/patients/7"),
                ("x-request-id", rid),
            ],
            b"",
        )
        .await;
    check_denial(&r, 403, "insufficient_scope");
    assert_eq!(event(rid).await.method.as_deref(), Some("PATCH"));

    let all = events(&gw.s, "authz").await;
    assert_eq!(all.len() as u32, n.load(Ordering::Relaxed) + 1, "one event per decision: {all:#?}");
    assert_eq!(gw.up.count(), reached, "authz never forwards anything");

    // A request id is taken only when short and printable, as by the gateway and the admin API:
    // nginx passes every header of the client on, so this one comes from the client.
    let long = "r".repeat(300);
    let r = gw
        .http
        .send(
            "GET",
            &format!("{base}/v1/authz"),
            &[
                ("authorization", &format!("Bearer {reader}")),
                ("x-original-uri", "/v1/patients/7"),
                ("x-request-id", &long),
            ],
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = gw.s.client.get_event(r.header("tokentrail-event-id").expect("an event id")).await.expect("the event");
    assert_ne!(e.request_id.as_deref(), Some(long.as_str()), "a 300-character X-Request-Id is recorded verbatim");

    gw.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_ledger_denies_or_spools_and_replays_in_order() {
    let gw = Gw::start_full(POLICY, |c| c.gateway.audit_timeout = std::time::Duration::from_secs(1), true).await;
    let (t, _) = gw.token(json!({"scopes": ["patients:read", "status:read"]})).await;
    allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &t).await, 200).await;
    let trigger = gw.root().join("fail");
    let spool = gw.s.root.path().join("data").join("spool.ndjson");
    let spool_lines = || std::fs::read_to_string(&spool).map(|s| s.lines().count()).unwrap_or(0);
    let spool_ids = || -> Vec<String> {
        std::fs::read_to_string(&spool)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line")["id"].as_str().expect("id").to_owned())
            .collect()
    };

    // The ledger fails: the first request notices (its event goes to the spool).
    std::fs::write(&trigger, b"").expect("create the trigger");
    let mut decided: Vec<String> = Vec::new();
    let first = gw.call("GET", "/v1/status", &[]).await;
    decided.push(check_denial(&first.reply, 401, "missing_token"));
    assert!(spool.exists(), "the event was spooled");

    let reached = gw.up.count();
    let mut forwarded = 0;
    let mut size = std::fs::metadata(&spool).expect("the spool").len();
    for round in 0..3 {
        // A `deny` route answers 503 and forwards nothing.
        let sent = gw.bearer("GET", &format!("/v1/patients/{round}"), &t).await;
        decided.push(check_denial(&sent.reply, 503, "audit_unavailable"));
        assert_eq!(gw.up.count(), reached + forwarded, "a deny route forwards nothing");
        let want = decided.len();
        eventually("the 503's event in the spool", EVENTUALLY, async || (spool_lines() >= want).then_some(())).await;

        // An `allow` route is forwarded and its event spooled.
        let sent = gw.bearer("GET", "/v1/status", &t).await;
        assert_eq!(sent.reply.status, 200, "{}", sent.reply.text());
        forwarded += 1;
        assert_eq!(gw.up.count(), reached + forwarded, "an allow route is forwarded");
        assert_eq!(gw.up.last().header("tokentrail-token-id").map(str::len), Some(16));
        decided.push(sent.reply.header("tokentrail-event-id").expect("an event id").to_owned());
        let now = std::fs::metadata(&spool).expect("the spool").len();
        assert!(now > size, "the spool grows");
        size = now;
    }
    // verify and authz decide like the gateway: a deny route is audit_unavailable.
    let r = send_json(
        &gw.s.client,
        Method::POST,
        "/v1/verify",
        &json!({"token": t, "method": "GET", "path": "/v1/patients/1"}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", String::from_utf8_lossy(&r.body));
    let v = json_body(&r);
    assert_eq!((v["valid"].as_bool(), v["reason"].as_str()), (Some(false), Some("audit_unavailable")), "{v}");
    decided.push(v["event_id"].as_str().expect("an event id").to_owned());
    let r = gw
        .http
        .send(
            "GET",
            &format!("{}/v1/authz", gw.s.addr),
            &[("authorization", &format!("Bearer {t}")), ("x-original-uri", "/v1/patients/1")],
            b"",
        )
        .await;
    decided.push(check_denial(&r, 503, "audit_unavailable"));
    assert_eq!(r.header("tokentrail-reason"), Some("audit_unavailable"));

    // A denial on an allow route is spooled too, and authz keeps answering on it.
    let sent = gw.bearer("GET", "/v1/status", "garbage").await;
    decided.push(check_denial(&sent.reply, 401, "malformed_token"));
    let r = gw
        .http
        .send(
            "GET",
            &format!("{}/v1/authz", gw.s.addr),
            &[("authorization", &format!("Bearer {t}")), ("x-original-uri", "/v1/status")],
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    decided.push(r.header("tokentrail-event-id").expect("an event id").to_owned());
    assert_eq!(spool_ids(), decided, "the spool holds every event, in the order decided");

    // Writing works again: the spool is replayed, in order, and removed.
    std::fs::remove_file(&trigger).expect("remove the trigger");
    eventually("the spool to be replayed", EVENTUALLY, async || (!spool.exists()).then_some(())).await;
    let store = gw.s.engine().store();
    let seqs: Vec<u64> = decided
        .iter()
        .map(|id| {
            let e = store.get_event(id).expect("read").unwrap_or_else(|| panic!("spooled event {id} is in the ledger"));
            e.seq.expect("a position")
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ledger positions follow the decisions: {seqs:?}");
    let mut all = gw.events("gateway").await;
    all.extend(events(&gw.s, "verify").await);
    all.extend(events(&gw.s, "authz").await);
    for id in &decided {
        assert_eq!(all.iter().filter(|e| &e.id == id).count(), 1, "exactly once: {id}");
    }
    let unavailable: Vec<&EventView> =
        all.iter().filter(|e| e.source == "gateway" && e.reason == "audit_unavailable").collect();
    assert_eq!(unavailable.len(), 3, "{unavailable:#?}");
    assert!(unavailable.iter().all(|e| e.status == Some(503) && e.route.as_deref() == Some(READ_ROUTE)));

    // Deny routes work again, and the ledger verifies.
    allowed(&gw, &gw.bearer("GET", "/v1/patients/1", &t).await, 200).await;
    let verifier = ledger::note::Verifier::parse(&gw.s.engine().verifier_key()).expect("the verifier key");
    let verified = engine::verify::verify(store, std::slice::from_ref(&verifier), &[], &mut |_, _| {});
    assert!(verified.is_ok(), "the ledger verifies after the replay: {verified:?}");

    // The issue asks for metrics on both paths.
    let metrics = gw.s.client.text(Method::GET, "/metrics").await.expect("metrics");
    let series = |word: &str| metrics.lines().any(|l| !l.starts_with('#') && l.contains(word));
    assert!(
        series("spool") && series("unavailable"),
        "/metrics exposes the spooled events and the audit_unavailable answers:\n{metrics}"
    );
    gw.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_reloads_when_its_file_changes() {
    let gw = Gw::start(|_| {}).await;
    let (t, _) = gw.token(json!({"scopes": ["patients:read", "billing:read"]})).await;
    denied(&gw, &gw.bearer("GET", "/v1/billing/7", &t).await, 403, "route_not_found").await;
    let policy = gw.root().join("policy.toml");
    let billing = "\n[[route]]\nmethod = \"GET\"\npath = \"/v1/billing/{id}\"\nresource = \"billing\"\naction = \"read\"\nsensitivity = [\"financial\"]\n";
    replace(&policy, &format!("{POLICY}{billing}"), None);
    let sent = eventually("the new route to be in force", EVENTUALLY, async || {
        let sent = gw.bearer("GET", "/v1/billing/7", &t).await;
        (sent.reply.status != 403).then_some(sent)
    })
    .await;
    let e = allowed(&gw, &sent, 200).await;
    assert_eq!(e.route.as_deref(), Some("GET /v1/billing/{id}"));
    assert_eq!(e.sensitivity, ["financial"]);
    gw.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_recorded_502() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let nowhere = format!("http://127.0.0.1:{}", crate::testkit::unused_port());
    let config = gateway_config(root.path(), POLICY, &nowhere);
    let s = TestServer::start_config(root, &config, None).await;
    let issued = send_json(
        &s.client,
        Method::POST,
        "/v1/tokens",
        &json!({"name": "n", "owner": "o", "scopes": ["patients:read"]}),
    )
    .await;
    let t = json_body(&issued)["token"].as_str().expect("a token").to_owned();
    let r = Http::new()
        .send(
            "GET",
            &format!("{}/v1/patients/1", s.gateway_url()),
            &[("authorization", &format!("Bearer {t}")), ("x-request-id", "to-nowhere")],
            b"",
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    let e = one_event(&events(&s, "gateway").await, "to-nowhere");
    assert_eq!(r.header("tokentrail-event-id"), Some(e.id.as_str()));
    assert_eq!(e.status, Some(502), "{e:#?}");
    assert!(e.details.contains_key("upstream_error"), "{e:#?}");
    s.stop().await;
}

/// The policy of the process test: reads of patients, and `/v1/status` that keeps answering
/// while the ledger is down.
const PROCESS_POLICY: &str = r#"
[[route]]
method = "GET"
path = "/v1/patients/{id}"
resource = "patients"
action = "read"
sensitivity = ["phi"]

[[route]]
method = "GET"
path = "/v1/status"
resource = "status"
action = "read"
on_audit_failure = "allow"
"#;

/// Replaces `path` with `content` at once (write a sibling, rename over), as editors and config
/// tools do, so the server never reads a half-written file; with `mtime`, the new file keeps that
/// modification time.
fn replace(path: &Path, content: &str, mtime: Option<std::time::SystemTime>) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).expect("write the new policy");
    if let Some(t) = mtime {
        std::fs::File::options().write(true).open(&next).and_then(|f| f.set_modified(t)).expect("set the mtime");
    }
    std::fs::rename(&next, path).expect("replace the policy");
}

fn route(path: &str) -> String {
    format!("\n[[route]]\nmethod = \"GET\"\npath = \"{path}\"\nresource = \"patients\"\naction = \"read\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_gateway_reloads_on_sighup_and_survives_an_invalid_policy() {
    let up = Upstream::start().await;
    let root = tempfile::tempdir().expect("a temporary directory");
    let policy = root.path().join("policy.toml");
    std::fs::write(&policy, PROCESS_POLICY).expect("write the policy");
    let trigger = root.path().join("fail");
    let upstream = up.url();
    let server = ProcessServer::start(
        &root.path().join("data"),
        &root.path().join("server.log"),
        &[
            "--policy",
            policy.to_str().expect("a UTF-8 path"),
            "--upstream",
            &upstream,
            "--gateway-listen",
            "127.0.0.1:0",
            "--debug-fail-writes-while",
            trigger.to_str().expect("a UTF-8 path"),
        ],
    );
    let listening = server.wait_for_log("tokentrail gateway listening", 1).await;
    let gateway = format!("http://{}", listening[0]["addr"].as_str().expect("the gateway's address"));
    let http = Http::new();
    let get = async |path: &str, token: &str| {
        http.send("GET", &format!("{gateway}{path}"), &[("authorization", &format!("Bearer {token}"))], b"").await
    };

    // A token from the CLI, fenced to 127.0.0.1, expiring in an hour.
    let out = server
        .cli(&[
            "token",
            "create",
            "--name",
            "cli",
            "--owner",
            "ops",
            "--scope",
            "patients:read",
            "--scope",
            "status:read",
            "--allow-cidr",
            "127.0.0.1/32",
            "--expires-in",
            "1h",
            "--format",
            "json",
        ])
        .await;
    let issued = out.json();
    let t = issued["token"].as_str().expect("the token").to_owned();
    let r = get("/v1/patients/1", &t).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().header("authorization"), None);
    let event_id = r.header("tokentrail-event-id").expect("an event id").to_owned();
    let out = server.cli(&["audit", "query", "--source", "gateway", "--format", "json"]).await;
    let listed = out.json();
    let events = listed["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{listed}");
    assert_eq!(events[0]["id"], event_id.as_str());
    assert_eq!(events[0]["reason"], "ok");
    assert_eq!(events[0]["route"], "GET /v1/patients/{id}");
    check_denial(&get("/v1/other", &t).await, 403, "route_not_found");

    // A changed file is reloaded.
    replace(&policy, &format!("{PROCESS_POLICY}{}", route("/v1/other")), None);
    server.wait_for_log("route policy reloaded", 1).await;
    let r = get("/v1/other", &t).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // An invalid file is rejected and the policy in force stays.
    replace(&policy, &format!("{}\n[[route]]\nmethd = \"GET\"\n", route("/v1/only")), None);
    let rejected = server.wait_for_log("the new route policy is invalid; the previous one stays in force", 1).await;
    let error = rejected[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("methd"), "every problem is named: {error}");
    assert_eq!(get("/v1/patients/1", &t).await.status, 200);
    assert_eq!(get("/v1/other", &t).await.status, 200);
    check_denial(&get("/v1/only", &t).await, 403, "route_not_found");

    // SIGHUP reloads even when the file looks unchanged (same modification time).
    let seen = std::fs::metadata(&policy).and_then(|m| m.modified()).expect("an mtime");
    replace(&policy, &format!("{PROCESS_POLICY}{}", route("/v1/hup")), Some(seen));
    check_denial(&get("/v1/hup", &t).await, 403, "route_not_found");
    let hup = std::process::Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().expect("kill");
    assert!(hup.success());
    server.wait_for_log("route policy reloaded", 2).await;
    let r = get("/v1/hup", &t).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // --debug-fail-writes-while: a deny route answers 503, an allow route is forwarded and
    // spooled, and after recovery the log verifies with every event in it.
    std::fs::write(&trigger, b"").expect("create the trigger");
    let noticed = get("/v1/status", &t).await;
    assert_eq!(noticed.status, 200, "{}", noticed.text());
    let reached = up.count();
    let unavailable = get("/v1/patients/1", &t).await;
    let unavailable_id = check_denial(&unavailable, 503, "audit_unavailable");
    assert_eq!(up.count(), reached);
    let spool = server.data_dir.join("spool.ndjson");
    let spooled = || std::fs::read_to_string(&spool).map(|s| s.lines().count()).unwrap_or(0);
    server.wait_until("both events in the spool", || spooled() >= 2).await;
    std::fs::remove_file(&trigger).expect("remove the trigger");
    server.wait_until("the spool to be replayed", || !spool.exists()).await;
    let data_dir = server.data_dir.to_str().expect("a UTF-8 path").to_owned();
    let verified = server.cli(&["audit", "verify", "--data-dir", &data_dir]).await;
    verified.success();
    for id in [noticed.header("tokentrail-event-id").expect("an event id"), unavailable_id.as_str()] {
        let out = server.cli(&["audit", "query", "--source", "gateway", "--limit", "1000", "--format", "json"]).await;
        let listed = out.json();
        let found = listed["events"].as_array().expect("events").iter().filter(|e| e["id"] == id).count();
        assert_eq!(found, 1, "{id} is in the ledger once");
    }
    assert!(!server.log().contains(&t), "the token never reaches the log");
    let status = server.stop();
    assert!(status.success(), "{status}");
}
