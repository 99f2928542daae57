//! The admin API over real HTTP: the token lifecycle, list filters and pagination, rotation,
//! the admin audit trail, every bad input of issue 2 (each a precise problem+json that changes
//! nothing stored), and the operational endpoints.

use std::collections::BTreeSet;

use hyper::Method;
use jiff::Timestamp;
use proto::{EventView, IssuedToken, TokenList, TokenView};
use serde_json::{Value, json};

use crate::testkit::{
    TestServer, assert_problem, field_errors, json_body, send_empty, send_json, token_id, token_secret,
};

/// A valid create body for a token owned by `owner` with `scopes`.
fn create_body(name: &str, owner: &str, scopes: &[&str]) -> Value {
    json!({ "name": name, "owner": owner, "scopes": scopes })
}

/// Creates a token and returns the issued token (asserting the 201).
async fn create(s: &TestServer, body: &Value) -> IssuedToken {
    let resp = send_json(&s.client, Method::POST, "/v1/tokens", body).await;
    assert_eq!(resp.status.as_u16(), 201, "create failed: {}", String::from_utf8_lossy(&resp.body));
    serde_json::from_slice(&resp.body).expect("an IssuedToken")
}

/// Every admin event, oldest first.
async fn admin_events(s: &TestServer) -> Vec<EventView> {
    s.client.list_events("?kind=admin&order=asc&limit=1000").await.expect("list admin events").events
}

/// What a rejected request must leave untouched: every stored token (secret hash included) and
/// the admin audit trail. `last_used_at` is written in the background by the server's flusher,
/// so it is left out of the comparison.
#[derive(Debug, PartialEq)]
struct Stored {
    tokens: Vec<token::TokenRecord>,
    admin_events: Vec<EventView>,
}

async fn stored(s: &TestServer) -> Stored {
    let filter = engine::TokenFilter { limit: Some(1000), ..Default::default() };
    let (mut tokens, next) = s.engine().list_tokens(&filter).expect("list tokens from the engine");
    assert!(next.is_none());
    for t in &mut tokens {
        t.last_used_at = None;
    }
    Stored { tokens, admin_events: admin_events(s).await }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s:?} is not a timestamp: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lifecycle_create_show_list_update_revoke() {
    let s = TestServer::start().await;
    let admin_id = token_id(&s.admin_token);

    // Create, with every field.
    let body = json!({
        "name": "ci",
        "owner": "team-a",
        "description": "deploys from CI",
        "labels": {"env": "prod"},
        "scopes": ["orders:read", "orders:write"],
        "expires_in": "30d",
        "not_before": "2020-01-01T00:00:00Z",
        "allowed_cidrs": ["10.0.0.0/8", "2001:db8::/32"],
        "rate_limit": "100/min",
    });
    let resp = send_json(&s.client, Method::POST, "/v1/tokens", &body).await;
    assert_eq!(resp.status.as_u16(), 201, "{}", String::from_utf8_lossy(&resp.body));
    let raw = json_body(&resp);
    let token = raw["token"].as_str().expect("the create response carries `token`").to_owned();
    let id = raw["id"].as_str().expect("the create response carries `id`").to_owned();
    assert!(token.starts_with(&format!("ttk_{id}_")), "{token} has the form ttk_<id>_…");
    assert_eq!(token_id(&token), id);
    let issued: IssuedToken = serde_json::from_value(raw).expect("an IssuedToken");
    let t = &issued.details;
    assert_eq!(t.name, "ci");
    assert_eq!(t.owner, "team-a");
    assert_eq!(t.description, "deploys from CI");
    assert_eq!(t.labels.get("env").map(String::as_str), Some("prod"));
    assert_eq!(t.scopes, ["orders:read", "orders:write"]);
    assert_eq!(t.state, "active");
    assert_eq!(t.created_by, admin_id);
    assert_eq!(t.allowed_cidrs, ["10.0.0.0/8", "2001:db8::/32"]);
    assert_eq!(t.rate_limit.as_deref(), Some("100/min"));
    assert_eq!(t.not_before.as_deref().map(ts), Some(ts("2020-01-01T00:00:00Z")));
    let expires = ts(t.expires_at.as_deref().expect("an expiry"));
    assert_eq!(expires.duration_since(ts(&t.created_at)).as_secs(), 30 * 86_400, "expires_in 30d");
    assert_eq!(t.revision, 1);
    assert_eq!((&t.revoked_at, &t.revoked_by, &t.revoke_reason), (&None, &None, &None));
    assert_eq!(t.previous_secret_valid_until, None);

    // Show: the same token, without the secret.
    let resp = send_empty(&s.client, Method::GET, &format!("/v1/tokens/{id}")).await;
    assert_eq!(resp.status.as_u16(), 200);
    let raw = json_body(&resp);
    assert!(raw.get("token").is_none(), "show must not carry `token`: {raw}");
    assert!(!String::from_utf8_lossy(&resp.body).contains(&token_secret(&token)), "show leaks the secret");
    let shown: TokenView = serde_json::from_value(raw).expect("a TokenView");
    assert_eq!(&shown, t);

    // List: contains it, without the secret.
    let resp = send_empty(&s.client, Method::GET, "/v1/tokens").await;
    assert_eq!(resp.status.as_u16(), 200);
    assert!(!String::from_utf8_lossy(&resp.body).contains(&token_secret(&token)), "list leaks the secret");
    let raw = json_body(&resp);
    for item in raw["tokens"].as_array().expect("tokens") {
        assert!(item.get("token").is_none(), "list items must not carry `token`: {item}");
    }
    let list: TokenList = serde_json::from_value(raw).expect("a TokenList");
    assert_eq!(list.tokens.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [admin_id.as_str(), id.as_str()]);
    assert_eq!(list.next_cursor, None);

    // PATCH one field: the others stay.
    let path = format!("/v1/tokens/{id}");
    let resp = send_json(&s.client, Method::PATCH, &path, &json!({"name": "ci-2"})).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    let v1: TokenView = serde_json::from_slice(&resp.body).expect("a TokenView");
    assert_eq!(v1.name, "ci-2");
    assert_eq!(v1.revision, 2);
    let expected = TokenView { name: "ci-2".into(), updated_at: v1.updated_at.clone(), revision: 2, ..t.clone() };
    assert_eq!(v1, expected, "only the name (and updated_at, revision) changed");

    // PATCH with nulls clears rate_limit and not_before.
    let resp = send_json(&s.client, Method::PATCH, &path, &json!({"rate_limit": null, "not_before": null})).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    let v2: TokenView = serde_json::from_slice(&resp.body).expect("a TokenView");
    let expected =
        TokenView { rate_limit: None, not_before: None, updated_at: v2.updated_at.clone(), revision: 3, ..v1.clone() };
    assert_eq!(v2, expected);

    // PATCH replaces whole sets.
    let patch = json!({"scopes": ["orders:admin"], "labels": {"env": "dev", "team": "a"}, "allowed_cidrs": []});
    let resp = send_json(&s.client, Method::PATCH, &path, &patch).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    let v3: TokenView = serde_json::from_slice(&resp.body).expect("a TokenView");
    assert_eq!(v3.scopes, ["orders:admin"]);
    assert_eq!(v3.labels.len(), 2);
    assert_eq!(v3.labels.get("env").map(String::as_str), Some("dev"));
    assert!(v3.allowed_cidrs.is_empty());
    assert_eq!(v3.revision, 4);

    // An empty PATCH changes nothing and records nothing.
    let before = stored(&s).await;
    let resp = send_json(&s.client, Method::PATCH, &path, &json!({})).await;
    assert_eq!(resp.status.as_u16(), 200);
    let v4: TokenView = serde_json::from_slice(&resp.body).expect("a TokenView");
    assert_eq!(v4.revision, 4);
    assert_eq!(stored(&s).await, before, "an empty PATCH stores nothing");

    // Revoke with a reason.
    let resp =
        send_json(&s.client, Method::POST, &format!("{path}/revoke"), &json!({"reason": "leaked in a CI log"})).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    let revoked: TokenView = serde_json::from_slice(&resp.body).expect("a TokenView");
    assert_eq!(revoked.state, "revoked");
    assert_eq!(revoked.revoke_reason.as_deref(), Some("leaked in a CI log"));
    assert_eq!(revoked.revoked_by.as_deref(), Some(admin_id.as_str()));
    assert!(revoked.revoked_at.is_some());
    assert_eq!(s.client.get_token(&id).await.expect("show").state, "revoked");

    // Revoking twice is a conflict that keeps the first reason.
    let before = stored(&s).await;
    let resp = send_json(&s.client, Method::POST, &format!("{path}/revoke"), &json!({"reason": "again"})).await;
    let p = assert_problem(&resp, 409, "already_revoked");
    assert!(p["detail"].as_str().expect("detail").contains(&format!("token {id} was already revoked")), "{p}");
    assert_eq!(stored(&s).await, before, "revoking twice stores nothing");
    assert_eq!(s.client.get_token(&id).await.expect("show").revoke_reason.as_deref(), Some("leaked in a CI log"));

    // A revoked token cannot be changed or rotated.
    let resp = send_json(&s.client, Method::PATCH, &path, &json!({"name": "zombie"})).await;
    assert_problem(&resp, 409, "token_revoked");
    let resp = send_empty(&s.client, Method::POST, &format!("{path}/rotate")).await;
    assert_problem(&resp, 409, "token_revoked");
    assert_eq!(stored(&s).await, before, "refused changes store nothing");

    // One admin event per change, each naming who, what, from where.
    let events = admin_events(&s).await;
    let ours: Vec<&EventView> = events.iter().filter(|e| e.target.as_deref() == Some(id.as_str())).collect();
    let ops: Vec<&str> = ours.iter().map(|e| e.operation.as_deref().unwrap_or("-")).collect();
    assert_eq!(ops, ["token.create", "token.update", "token.update", "token.update", "token.revoke"]);
    for e in &ours {
        assert_eq!(e.kind, "admin");
        assert_eq!(e.source, "admin");
        assert_eq!(e.token_id.as_deref(), Some(admin_id.as_str()), "the acting admin token: {e:?}");
        assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"), "{e:?}");
        assert_eq!((e.decision.as_str(), e.reason.as_str()), ("allow", "ok"));
        assert!(e.seq.is_some(), "admin events have a position: {e:?}");
        assert!(e.user_agent.as_deref().is_some_and(|ua| ua.starts_with("tokentrail-cli/")), "{e:?}");
    }
    assert_eq!(ours[0].method.as_deref(), Some("POST"));
    assert_eq!(ours[0].path.as_deref(), Some("/v1/tokens"));
    assert_eq!(ours[1].details.get("name").map(String::as_str), Some("ci -> ci-2"));
    assert_eq!(ours[4].details.get("revoke_reason").map(String::as_str), Some("leaked in a CI log"));
    let seqs: Vec<u64> = ours.iter().filter_map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "positions increase: {seqs:?}");
    // The bootstrap token's creation is the first admin event.
    assert_eq!(events[0].operation.as_deref(), Some("token.create"));
    assert_eq!(events[0].target.as_deref(), Some(admin_id.as_str()));
    // Filtering by target gives the same events.
    let by_target = s.client.list_events(&format!("?kind=admin&order=asc&target={id}")).await.expect("events");
    assert_eq!(by_target.events.iter().collect::<Vec<_>>(), ours);
    // One event by id.
    let one = s.client.get_event(&ours[0].id).await.expect("one event");
    assert_eq!(&one, ours[0]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_replaces_the_secret_at_once_or_after_a_grace_period() {
    let s = TestServer::start().await;
    let admin_id = token_id(&s.admin_token);
    // An admin-scoped token, so that its secret can be tried against the admin API.
    let a =
        create(&s, &json!({"name": "ops", "owner": "ops", "scopes": ["tokentrail:admin"], "labels": {"k": "v"}})).await;
    let id = a.details.id.clone();
    s.client_with(Some(&a.token)).list_tokens("").await.expect("the new admin token works");

    // Without grace: the old secret stops working at once.
    let resp = send_empty(&s.client, Method::POST, &format!("/v1/tokens/{id}/rotate")).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    let b: IssuedToken = serde_json::from_slice(&resp.body).expect("an IssuedToken");
    assert_eq!(b.details.id, id, "rotation keeps the id");
    assert_ne!(token_secret(&b.token), token_secret(&a.token));
    assert_eq!(b.details.scopes, a.details.scopes, "identical grants");
    assert_eq!(b.details.labels, a.details.labels);
    assert_eq!(b.details.expires_at, a.details.expires_at);
    assert_eq!(b.details.previous_secret_valid_until, None);
    let resp = send_empty(&s.client_with(Some(&a.token)), Method::GET, "/v1/tokens").await;
    let p = assert_problem(&resp, 401, "unauthorized");
    assert_eq!(p["reason"], "unknown_token", "{p}");
    s.client_with(Some(&b.token)).list_tokens("").await.expect("the new secret works");

    // With grace: both secrets work.
    let resp = send_json(&s.client, Method::POST, &format!("/v1/tokens/{id}/rotate"), &json!({"grace": "1h"})).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", String::from_utf8_lossy(&resp.body));
    let c: IssuedToken = serde_json::from_slice(&resp.body).expect("an IssuedToken");
    let until = ts(c.details.previous_secret_valid_until.as_deref().expect("a grace period is shown"));
    assert_eq!(until.duration_since(ts(&c.details.secret_created_at)).as_secs(), 3600);
    s.client_with(Some(&b.token)).list_tokens("").await.expect("the old secret works during the grace period");
    s.client_with(Some(&c.token)).list_tokens("").await.expect("the new secret works");

    // Rotating again without grace ends the previous grace period too.
    let d = s.client.rotate_token(&id, None).await.expect("rotate");
    for old in [&b.token, &c.token] {
        let resp = send_empty(&s.client_with(Some(old)), Method::GET, "/v1/tokens").await;
        assert_eq!(assert_problem(&resp, 401, "unauthorized")["reason"], "unknown_token");
    }
    s.client_with(Some(&d.token)).list_tokens("").await.expect("the newest secret works");

    // Each rotation is an admin event with its grace period.
    let events = admin_events(&s).await;
    let rotations: Vec<&EventView> = events.iter().filter(|e| e.operation.as_deref() == Some("token.rotate")).collect();
    let graces: Vec<&str> = rotations.iter().map(|e| e.details.get("grace").map_or("-", String::as_str)).collect();
    assert_eq!(graces, ["none", "1h", "none"]);
    for e in rotations {
        assert_eq!(e.target.as_deref(), Some(id.as_str()));
        assert_eq!(e.token_id.as_deref(), Some(admin_id.as_str()));
        assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_cursor_pagination() {
    let s = TestServer::start().await;
    let admin_id = token_id(&s.admin_token);
    let mk = |name: &str, owner: &str, scopes: &[&str], labels: Value| {
        let mut b = create_body(name, owner, scopes);
        b["labels"] = labels;
        b
    };
    let a1 = create(&s, &mk("a1", "alpha", &["orders:read"], json!({"env": "prod"}))).await.details.id;
    let a2 = create(&s, &mk("a2", "alpha", &["orders:admin"], json!({"env": "dev"}))).await.details.id;
    let a3 = create(&s, &mk("a3", "alpha", &["users:write"], json!({}))).await.details.id;
    let a4 = create(&s, &mk("a4", "alpha", &["*:read"], json!({"env": "prod"}))).await.details.id;
    let b1 = create(&s, &mk("b1", "beta", &["users:read"], json!({"team": "x"}))).await.details.id;
    let b2 = create(&s, &mk("b2", "beta", &["orders:write"], json!({}))).await.details.id;
    s.client.revoke_token(&a3, "not needed").await.expect("revoke");

    let ids = |l: &TokenList| l.tokens.iter().map(|t| t.id.clone()).collect::<Vec<String>>();
    let list = |q: &str| {
        let q = q.to_owned();
        let c = s.client.clone();
        async move { c.list_tokens(&q).await.unwrap_or_else(|e| panic!("list {q}: {e}")) }
    };
    assert_eq!(ids(&list("?owner=alpha").await), vec![a1.clone(), a2.clone(), a3.clone(), a4.clone()]);
    assert_eq!(ids(&list("?owner=beta").await), vec![b1.clone(), b2.clone()]);
    assert!(ids(&list("?owner=nobody").await).is_empty());
    // A scope filter finds every token whose grants imply it.
    assert_eq!(ids(&list("?scope=orders:read").await), vec![a1.clone(), a2.clone(), a4.clone(), b2.clone()]);
    assert_eq!(ids(&list("?scope=orders:write").await), vec![a2.clone(), b2.clone()]);
    assert_eq!(ids(&list("?scope=tokentrail:admin").await), vec![admin_id.clone()]);
    assert_eq!(ids(&list("?state=revoked").await), vec![a3.clone()]);
    assert_eq!(ids(&list("?state=active&owner=alpha").await), vec![a1.clone(), a2.clone(), a4.clone()]);
    assert_eq!(ids(&list("?label=env").await), vec![a1.clone(), a2.clone(), a4.clone()]);
    assert_eq!(ids(&list("?label=env%3Dprod").await), vec![a1.clone(), a4.clone()]);
    assert_eq!(ids(&list("?owner=beta&label=team%3Dx").await), vec![b1.clone()]);

    // Pagination walks every token exactly once, in creation order.
    let all = ids(&list("").await);
    assert_eq!(all.len(), 7);
    for limit in [1, 2, 3, 7] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let q = match &cursor {
                Some(c) => format!("?limit={limit}&cursor={}", cli::client::encode(c)),
                None => format!("?limit={limit}"),
            };
            let page = list(&q).await;
            assert!(page.tokens.len() <= limit, "page larger than limit {limit}");
            seen.extend(ids(&page));
            pages += 1;
            assert!(pages <= all.len() + 1, "pagination does not end");
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, all, "limit {limit}");
    }
    // Filtered pagination.
    let p1 = list("?owner=alpha&limit=3").await;
    assert_eq!(ids(&p1), vec![a1.clone(), a2.clone(), a3.clone()]);
    let cursor = p1.next_cursor.expect("a second page");
    let p2 = list(&format!("?owner=alpha&limit=3&cursor={}", cli::client::encode(&cursor))).await;
    assert_eq!(ids(&p2), vec![a4.clone()]);

    // A cursor is bound to its query.
    for q in [
        format!("?owner=beta&limit=3&cursor={}", cli::client::encode(&cursor)),
        format!("?limit=3&cursor={}", cli::client::encode(&cursor)),
        "?cursor=garbage".to_owned(),
    ] {
        let resp = send_empty(&s.client, Method::GET, &format!("/v1/tokens{q}")).await;
        let p = assert_problem(&resp, 400, "invalid_field");
        let fields: Vec<String> = field_errors(&p).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["cursor"], "{q}: {p}");
    }
    s.stop().await;
}

/// One bad request and the problem it must get.
struct Bad {
    what: &'static str,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    content_type: Option<&'static str>,
    status: u16,
    code: &'static str,
    /// Text the detail must contain.
    detail: &'static str,
    /// For `invalid_field`: every field named in `errors`, in order.
    fields: &'static [&'static str],
}

impl Bad {
    /// A request without a body; by default it expects `400 invalid_request`.
    fn new(what: &'static str, method: Method, path: impl Into<String>) -> Bad {
        Bad {
            what,
            method,
            path: path.into(),
            body: None,
            content_type: None,
            status: 400,
            code: "invalid_request",
            detail: "",
            fields: &[],
        }
    }

    fn post(what: &'static str, path: impl Into<String>) -> Bad {
        Bad::new(what, Method::POST, path)
    }

    fn patch(what: &'static str, path: impl Into<String>) -> Bad {
        Bad::new(what, Method::PATCH, path)
    }

    fn get(what: &'static str, path: impl Into<String>) -> Bad {
        Bad::new(what, Method::GET, path)
    }

    /// Sends `value` as `application/json`.
    fn json(self, value: Value) -> Bad {
        self.bytes(&serde_json::to_vec(&value).expect("json"), Some("application/json"))
    }

    /// Sends these bytes with this content type.
    fn bytes(mut self, body: &[u8], content_type: Option<&'static str>) -> Bad {
        self.body = Some(body.to_vec());
        self.content_type = content_type;
        self
    }

    /// Expects `400 invalid_request` whose detail contains `detail`.
    fn unreadable(self, detail: &'static str) -> Bad {
        self.expect(400, "invalid_request", detail)
    }

    /// Expects `400 invalid_field` naming exactly `fields`, with `detail` in the detail.
    fn fields(mut self, fields: &'static [&'static str], detail: &'static str) -> Bad {
        self.fields = fields;
        self.expect(400, "invalid_field", detail)
    }

    fn expect(mut self, status: u16, code: &'static str, detail: &'static str) -> Bad {
        self.status = status;
        self.code = code;
        self.detail = detail;
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_a_precise_problem_and_changes_nothing() {
    let s = TestServer::start().await;
    let existing = create(&s, &create_body("kept", "team-a", &["orders:read"])).await.details.id;
    let revoked = create(&s, &create_body("gone", "team-a", &["orders:read"])).await.details.id;
    s.client.revoke_token(&revoked, "test").await.expect("revoke");
    let one = format!("/v1/tokens/{existing}");
    let revoke = format!("{one}/revoke");
    let rotate = format!("{one}/rotate");
    let ok = create_body("ci", "team-a", &["orders:read"]);
    let ok_bytes = serde_json::to_vec(&ok).expect("json");
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let json = Some("application/json");
    let tokens = "/v1/tokens";
    let unknown = "/v1/tokens/0000000000000000";
    let cases = vec![
        // Bodies that cannot be read.
        Bad::post("malformed JSON", tokens).bytes(br#"{"name": "ci", "owner": "#, json).unreadable("malformed JSON"),
        Bad::post("not JSON at all", tokens).bytes(b"name=ci", json).unreadable("malformed JSON"),
        Bad::post("an empty array", tokens).bytes(b"[]", json).unreadable("invalid body"),
        Bad::post("no body", tokens).bytes(b"", json).unreadable("needs a JSON body"),
        Bad::post("unknown field", tokens).json(with("colour", json!("red"))).unreadable("unknown field `colour`"),
        Bad::post("wrong type", tokens).json(with("name", json!(5))).unreadable("invalid type: integer `5`"),
        Bad::post("scopes as a string", tokens)
            .json(with("scopes", json!("a:read")))
            .unreadable("invalid type: string"),
        Bad::post("missing scopes", tokens)
            .json(json!({"name": "ci", "owner": "o"}))
            .unreadable("missing field `scopes`"),
        // Values that break a rule: every field is named.
        Bad::post("empty name", tokens).json(with("name", json!(""))).fields(&["name"], "must not be empty"),
        Bad::post("blank name", tokens).json(with("name", json!("   "))).fields(&["name"], "only whitespace"),
        Bad::post("overlong name", tokens)
            .json(with("name", json!("n".repeat(129))))
            .fields(&["name"], "at most 128 characters (got 129)"),
        Bad::post("empty owner", tokens).json(with("owner", json!(""))).fields(&["owner"], "must not be empty"),
        Bad::post("no scopes", tokens).json(with("scopes", json!([]))).fields(&["scopes"], "at least one scope"),
        Bad::post("invalid scopes", tokens)
            .json(with("scopes", json!(["orders:read", "orders:fly", ":read", "a b:read"])))
            .fields(&["scopes[1]", "scopes[2]", "scopes[3]"], "unknown action \"fly\""),
        Bad::post("invalid CIDRs", tokens)
            .json(with("allowed_cidrs", json!(["10.0.0.0/33", "10.0.0.0/8", "300.1.2.3", "fe80::/129", "10.0.0.1/8"])))
            .fields(
                &["allowed_cidrs[0]", "allowed_cidrs[2]", "allowed_cidrs[3]", "allowed_cidrs[4]"],
                "is not an IP network",
            ),
        Bad::post("expiry in the past", tokens)
            .json(with("expires_at", json!("2020-01-01T00:00:00Z")))
            .fields(&["expires_at"], "is in the past"),
        Bad::post("expiry beyond the maximum", tokens)
            .json(with("expires_at", json!("2999-01-01T00:00:00Z")))
            .fields(&["expires_at"], "beyond the maximum lifetime of 365d"),
        Bad::post("relative expiry beyond the maximum", tokens)
            .json(with("expires_in", json!("366d")))
            .fields(&["expires_in"], "beyond the maximum lifetime of 365d"),
        Bad::post("expiry not a time", tokens)
            .json(with("expires_at", json!("tomorrow")))
            .fields(&["expires_at"], "not an RFC 3339 time"),
        Bad::post("expiry not a duration", tokens)
            .json(with("expires_in", json!("1 year")))
            .fields(&["expires_in"], "not a duration"),
        Bad::post("two expiries", tokens)
            .json(json!({"name": "ci", "owner": "o", "scopes": ["a:read"], "expires_in": "1d", "no_expiry": true}))
            .fields(&["expires_at"], "at most one of"),
        Bad::post("bad rate limit", tokens)
            .json(with("rate_limit", json!("lots")))
            .fields(&["rate_limit"], "not a rate limit"),
        Bad::post("not_before after the expiry", tokens)
            .json(json!({
                "name": "c", "owner": "o", "scopes": ["a:read"],
                "expires_in": "1d", "not_before": "2999-01-01T00:00:00Z",
            }))
            .fields(&["not_before"], "before the expiry"),
        Bad::post("bad label key", tokens)
            .json(with("labels", json!({"Env": "prod"})))
            .fields(&["labels.Env"], "label keys"),
        Bad::post("overlong description", tokens)
            .json(with("description", json!("d".repeat(1025))))
            .fields(&["description"], "at most 1024"),
        Bad::post("everything wrong at once", tokens)
            .json(json!({
                "name": "", "owner": "o", "scopes": ["orders:fly"], "allowed_cidrs": ["nope"],
                "rate_limit": "x", "expires_at": "2020-01-01T00:00:00Z",
            }))
            .fields(&["name", "scopes[0]", "allowed_cidrs[0]", "rate_limit", "expires_at"], "name: must not be empty"),
        // Transport-level problems.
        Bad::post("wrong content type", tokens).bytes(&ok_bytes, Some("text/plain")).expect(
            415,
            "unsupported_media_type",
            "Content-Type: application/json",
        ),
        Bad::post("no content type", tokens).bytes(&ok_bytes, None).expect(
            415,
            "unsupported_media_type",
            "Content-Type: application/json",
        ),
        Bad::post("oversized body", tokens).json(with("description", json!("d".repeat(70 * 1024)))).expect(
            413,
            "payload_too_large",
            "64 KiB",
        ),
        // PATCH.
        Bad::patch("PATCH unknown field", &one).json(json!({"nmae": "x"})).unreadable("unknown field `nmae`"),
        Bad::patch("PATCH wrong type", &one).json(json!({"rate_limit": 5})).unreadable("invalid type"),
        Bad::patch("PATCH empty name", &one).json(json!({"name": ""})).fields(&["name"], "must not be empty"),
        Bad::patch("PATCH invalid scopes", &one)
            .json(json!({"scopes": [":read", "a b:read"]}))
            .fields(&["scopes[0]", "scopes[1]"], "empty resource"),
        Bad::patch("PATCH no_expiry false", &one)
            .json(json!({"no_expiry": false}))
            .fields(&["no_expiry"], "only `true`"),
        Bad::patch("PATCH expiry in the past", &one)
            .json(json!({"expires_at": "2001-01-01T00:00:00Z"}))
            .fields(&["expires_at"], "is in the past"),
        Bad::patch("PATCH invalid CIDR", &one)
            .json(json!({"allowed_cidrs": ["10.0.0.0/8", "x"]}))
            .fields(&["allowed_cidrs[1]"], "not an IP network"),
        Bad::patch("PATCH wrong content type", &one).bytes(br#"{"name":"x"}"#, Some("text/plain")).expect(
            415,
            "unsupported_media_type",
            "application/json",
        ),
        // Revoke and rotate.
        Bad::post("revoke without reason", &revoke).json(json!({})).unreadable("missing field `reason`"),
        Bad::post("revoke with empty reason", &revoke)
            .json(json!({"reason": ""}))
            .fields(&["reason"], "must not be empty"),
        Bad::post("revoke with overlong reason", &revoke)
            .json(json!({"reason": "r".repeat(501)}))
            .fields(&["reason"], "at most 500"),
        Bad::post("rotate with too long a grace", &rotate)
            .json(json!({"grace": "8d"}))
            .fields(&["grace"], "at most 1w"),
        Bad::post("rotate with a bad grace", &rotate)
            .json(json!({"grace": "soon"}))
            .fields(&["grace"], "not a duration"),
        Bad::post("rotate with a wrong type", &rotate).json(json!({"grace": 3600})).unreadable("invalid type"),
        // Unknown ids and state conflicts.
        Bad::get("show unknown id", unknown).expect(404, "not_found", "token 0000000000000000 does not exist"),
        Bad::patch("PATCH unknown id", unknown).json(json!({"name": "x"})).expect(404, "not_found", "does not exist"),
        Bad::post("revoke unknown id", format!("{unknown}/revoke")).json(json!({"reason": "x"})).expect(
            404,
            "not_found",
            "does not exist",
        ),
        Bad::post("rotate unknown id", format!("{unknown}/rotate")).expect(404, "not_found", "does not exist"),
        Bad::get("unknown event id", "/v1/audit/events/ev_nope").expect(404, "not_found", "does not exist"),
        Bad::post("revoke twice", format!("/v1/tokens/{revoked}/revoke")).json(json!({"reason": "again"})).expect(
            409,
            "already_revoked",
            "already revoked",
        ),
        Bad::patch("PATCH a revoked token", format!("/v1/tokens/{revoked}")).json(json!({"name": "x"})).expect(
            409,
            "token_revoked",
            "is revoked",
        ),
        Bad::post("rotate a revoked token", format!("/v1/tokens/{revoked}/rotate")).expect(
            409,
            "token_revoked",
            "is revoked",
        ),
        // Routes and query strings.
        Bad::get("unknown route", "/v1/nope").expect(404, "route_not_found", "openapi.json"),
        Bad::post("unknown route with a body", "/v2/tokens").json(ok.clone()).expect(
            404,
            "route_not_found",
            "openapi.json",
        ),
        Bad::new("wrong method", Method::DELETE, &one).expect(405, "method_not_allowed", "method"),
        Bad::get("unknown query parameter", "/v1/tokens?colour=red").unreadable("colour"),
        Bad::get("non-numeric limit", "/v1/tokens?limit=lots").unreadable("limit"),
        Bad::get("limit 0", "/v1/tokens?limit=0").fields(&["limit"], "between 1 and 1000"),
        Bad::get("limit too big", "/v1/tokens?limit=1001").fields(&["limit"], "between 1 and 1000"),
        Bad::get("unknown state", "/v1/tokens?state=zombie").fields(&["state"], "not a state"),
        Bad::get("bad scope filter", "/v1/tokens?scope=orders:fly").fields(&["scope"], "unknown action"),
        Bad::get("unknown audit parameter", "/v1/audit/events?colour=red").unreadable("colour"),
        Bad::get("bad audit filters", "/v1/audit/events?kind=both&decision=maybe&reason=nope&order=up")
            .fields(&["kind", "decision", "reason", "order"], "not a kind"),
    ];
    for case in cases {
        let before = stored(&s).await;
        let resp =
            s.client.send(case.method.clone(), &case.path, case.body, case.content_type).await.expect("an answer");
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        assert_eq!(resp.status.as_u16(), case.status, "{}: {text}", case.what);
        let p = assert_problem(&resp, case.status, case.code);
        let detail = p["detail"].as_str().unwrap_or("");
        assert!(detail.contains(case.detail), "{}: detail {detail:?} should contain {:?}", case.what, case.detail);
        let got: Vec<String> = field_errors(&p).into_iter().map(|(f, _)| f).collect();
        assert_eq!(got, case.fields, "{}: the fields named in `errors`: {text}", case.what);
        for (f, m) in field_errors(&p) {
            assert!(!m.is_empty(), "{}: field {f} has a message", case.what);
        }
        assert_eq!(stored(&s).await, before, "{}: nothing stored may change", case.what);
    }
    // The boundary itself is accepted: a 128-character name.
    let t = create(&s, &with("name", json!("n".repeat(128)))).await;
    assert_eq!(t.details.name.chars().count(), 128);
    s.stop().await;
}

/// Request bodies are JSON objects with named fields (unknown names are rejected). serde's
/// derived `Deserialize` also accepts a struct as a positional array, which would let a client
/// create or revoke tokens without naming a single field; such a body must be a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positional_arrays_are_not_request_bodies() {
    let s = TestServer::start().await;
    let existing = create(&s, &create_body("kept", "team-a", &["orders:read"])).await.details.id;
    let cases: Vec<(&str, String, &[u8])> = vec![
        (
            "create",
            "/v1/tokens".to_owned(),
            br#"["ci", "team-a", null, {}, ["orders:read"], null, null, false, null, [], null]"#,
        ),
        ("update", format!("/v1/tokens/{existing}"), br#"["renamed"]"#),
        ("revoke", format!("/v1/tokens/{existing}/revoke"), br#"["compromised"]"#),
    ];
    let mut accepted = Vec::new();
    for (what, path, body) in cases {
        let before = stored(&s).await;
        let method = if what == "update" { Method::PATCH } else { Method::POST };
        let resp = s.client.send(method, &path, Some(body.to_vec()), Some("application/json")).await.expect("answer");
        if resp.status.as_u16() == 400 {
            assert_problem(&resp, 400, "invalid_request");
            assert_eq!(stored(&s).await, before, "{what}: nothing stored may change");
        } else {
            accepted.push(format!("{what} {path}: {} {}", resp.status, String::from_utf8_lossy(&resp.body)));
        }
    }
    assert!(accepted.is_empty(), "array bodies were accepted (expected 400 invalid_request):\n{}", accepted.join("\n"));
    s.stop().await;
}

/// A token-shaped string built from a deterministic byte source (not a real secret).
fn made_up_token(id: Option<&str>) -> String {
    let mut n = 0u8;
    let mut fill = |b: &mut [u8]| {
        for x in b {
            n = n.wrapping_add(37);
            *x = n;
        }
    };
    let prefix = token::Prefix::default();
    match id {
        Some(id) => token::TokenString::with_id(&prefix, id, &mut fill).expose().to_owned(),
        None => token::TokenString::generate(&prefix, &mut fill).expose().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_admin_calls_are_problems_and_access_events() {
    let s = TestServer::start().await;
    let admin_id = token_id(&s.admin_token);
    let reader = create(&s, &create_body("reader", "team-a", &["orders:read", "tokentrail:verify"])).await;
    let revoked = create(&s, &create_body("revoked-admin", "ops", &["tokentrail:admin"])).await;
    s.client.revoke_token(&revoked.details.id, "left the company").await.expect("revoke");
    let mut future = create_body("future-admin", "ops", &["tokentrail:admin"]);
    future["not_before"] = json!("2099-01-01T00:00:00Z");
    future["no_expiry"] = json!(true);
    let future = create(&s, &future).await;
    let mut elsewhere = create_body("vpn-admin", "ops", &["tokentrail:admin"]);
    elsewhere["allowed_cidrs"] = json!(["10.0.0.0/8"]);
    let elsewhere = create(&s, &elsewhere).await;
    let mut typo = s.admin_token.clone();
    let last = typo.pop().expect("a last character");
    typo.push(if last == 'A' { 'B' } else { 'A' });

    // (what, token, status, reason, the token id the event names)
    type Case<'a> = (&'a str, Option<String>, u16, &'a str, Option<String>);
    let cases: Vec<Case<'_>> = vec![
        ("no token", None, 401, "missing_token", None),
        ("not a token", Some("hunter2".to_owned()), 401, "malformed_token", None),
        ("a mistyped token", Some(typo), 401, "bad_checksum", None),
        ("a made-up token", Some(made_up_token(None)), 401, "unknown_token", None),
        ("a guessed secret for a real id", Some(made_up_token(Some(&admin_id))), 401, "unknown_token", None),
        (
            "a token without tokentrail:admin",
            Some(reader.token.clone()),
            403,
            "insufficient_scope",
            Some(reader.details.id.clone()),
        ),
        ("a revoked admin token", Some(revoked.token.clone()), 401, "revoked", Some(revoked.details.id.clone())),
        (
            "a not-yet-valid admin token",
            Some(future.token.clone()),
            401,
            "not_yet_valid",
            Some(future.details.id.clone()),
        ),
        (
            "an admin token from the wrong network",
            Some(elsewhere.token.clone()),
            403,
            "ip_not_allowed",
            Some(elsewhere.details.id.clone()),
        ),
    ];
    let create_req = serde_json::to_vec(&create_body("sneaky", "x", &["orders:admin"])).expect("json");
    for (what, presented, code, reason, event_token) in cases {
        let before = stored(&s).await;
        let c = s.client_with(presented.as_deref());
        let resp = c
            .send(Method::POST, "/v1/tokens", Some(create_req.clone()), Some("application/json"))
            .await
            .expect("answer");
        let p = assert_problem(&resp, code, if code == 401 { "unauthorized" } else { "forbidden" });
        assert_eq!(p["reason"], reason, "{what}: {p}");
        let www = resp.headers.get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_owned);
        match reason {
            "missing_token" => assert_eq!(www.as_deref(), Some("Bearer realm=\"tokentrail\""), "{what}"),
            "insufficient_scope" => assert_eq!(
                www.as_deref(),
                Some("Bearer realm=\"tokentrail\", error=\"insufficient_scope\", scope=\"tokentrail:admin\""),
                "{what}"
            ),
            _ if code == 401 => {
                assert_eq!(www.as_deref(), Some("Bearer realm=\"tokentrail\", error=\"invalid_token\""), "{what}")
            }
            _ => {}
        }
        if let Some(t) = &presented
            && token::parse(t).is_ok()
        {
            let body = String::from_utf8_lossy(&resp.body);
            assert!(!body.contains(&token_secret(t)), "{what}: the secret is echoed");
        }
        // Nothing changed, but the denial is on record.
        assert_eq!(stored(&s).await, before, "{what}: a denied request stores no change");
        let event_id = p["event_id"].as_str().unwrap_or_else(|| panic!("{what}: the problem names its event: {p}"));
        let e = s.client.get_event(event_id).await.expect("the denial event");
        assert_eq!(e.kind, "access", "{what}");
        assert_eq!(e.source, "admin", "{what}");
        assert_eq!(e.decision, "deny", "{what}");
        assert_eq!(e.reason, reason, "{what}");
        assert_eq!(e.status, Some(code), "{what}");
        assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"), "{what}");
        assert_eq!(e.method.as_deref(), Some("POST"), "{what}");
        assert_eq!(e.path.as_deref(), Some("/v1/tokens"), "{what}");
        assert_eq!(e.token_id, event_token, "{what}");
        assert!(e.explanation.as_deref().is_some_and(|x| !x.is_empty()), "{what}: an explanation");
        match (&presented, &event_token) {
            (None, _) => assert_eq!(e.token_fingerprint, None, "{what}"),
            (Some(_), None) => assert!(e.token_fingerprint.is_some(), "{what}: unresolved tokens are fingerprinted"),
            (Some(_), Some(_)) => {}
        }
        if reason == "insufficient_scope" {
            assert_eq!(e.required_scope.as_deref(), Some("tokentrail:admin"));
            assert_eq!(e.granted_scopes, ["orders:read", "tokentrail:verify"]);
        }
        // The same denial is found by filtering.
        let found = s.client.list_events(&format!("?kind=access&decision=deny&reason={reason}")).await.expect("events");
        assert!(found.events.iter().any(|x| x.id == event_id), "{what}: filter by reason finds the event");
    }
    // Guessing the same wrong token twice gives the same fingerprint (correlation without storage).
    let guess = made_up_token(None);
    let mut prints = BTreeSet::new();
    for _ in 0..2 {
        let resp = send_empty(&s.client_with(Some(&guess)), Method::GET, "/v1/tokens").await;
        let p = assert_problem(&resp, 401, "unauthorized");
        let e = s.client.get_event(p["event_id"].as_str().expect("event id")).await.expect("event");
        prints.insert(e.token_fingerprint.expect("a fingerprint"));
    }
    assert_eq!(prints.len(), 1, "the same guess, the same fingerprint");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_request_ids() {
    let s = TestServer::start().await;
    let anon = s.client_with(None);
    let resp = send_empty(&anon, Method::GET, "/healthz").await;
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(json_body(&resp)["status"], "ok");
    let resp = send_empty(&anon, Method::GET, "/readyz").await;
    assert_eq!(resp.status.as_u16(), 200);
    let ready = json_body(&resp);
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["store"], "sqlite");

    // Two active tokens (the bootstrap one and one more), one revoked.
    create(&s, &create_body("m1", "o", &["a:read"])).await;
    let gone = create(&s, &create_body("m2", "o", &["a:read"])).await;
    s.client.revoke_token(&gone.details.id, "metrics test").await.expect("revoke");
    let resp = send_empty(&anon, Method::GET, "/metrics").await;
    assert_eq!(resp.status.as_u16(), 200);
    let ct = resp.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    assert!(text.contains("# TYPE tokentrail_http_requests_total counter"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("tokentrail_http_requests_total{")
            && l.contains("method=\"POST\"")
            && l.contains("route=\"/v1/tokens\"")
            && l.contains("status=\"201\"")
            && l.ends_with(" 2")),
        "two creates counted: {text}"
    );
    assert!(text.lines().any(|l| l == "tokentrail_tokens{state=\"active\"} 2"), "{text}");
    assert!(text.lines().any(|l| l == "tokentrail_tokens{state=\"revoked\"} 1"), "{text}");
    assert!(text.contains("tokentrail_http_request_duration_seconds_bucket{"), "{text}");
    // Every sample line is `name{labels} value` or `name value` with a numeric value.
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "not a Prometheus sample: {line}");
    }

    // Every response carries a request id; a caller's id is echoed.
    let resp = send_empty(&anon, Method::GET, "/healthz").await;
    assert!(resp.headers.get("x-request-id").is_some_and(|v| !v.is_empty()));
    s.stop().await;
}

/// Every route the server has, by path and method: keep in step with `server::app`, so that a
/// route added without documentation, or documentation of a route that was removed, fails here.
const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/tokens", &["get", "post"]),
    ("/v1/tokens/{id}", &["get", "patch"]),
    ("/v1/tokens/{id}/revoke", &["post"]),
    ("/v1/tokens/{id}/rotate", &["post"]),
    ("/v1/audit/events", &["get"]),
    ("/v1/audit/events/{id}", &["get"]),
    ("/v1/audit/events/{id}/leaf", &["get"]),
    ("/v1/audit/events/{id}/proof", &["get"]),
    ("/v1/audit/consistency", &["get"]),
    ("/v1/audit/checkpoint", &["get", "post"]),
    ("/v1/audit/key", &["get"]),
    ("/v1/audit/erase", &["post"]),
    ("/v1/audit/events/{id}/explain", &["get"]),
    ("/v1/audit/stats", &["get"]),
    ("/v1/audit/stream", &["get"]),
    ("/v1/audit/export", &["get"]),
    ("/v1/audit/ingest", &["post"]),
    ("/v1/tokens/{id}/activity", &["get"]),
    ("/v1/reports/least-privilege", &["get"]),
    ("/v1/reports/access-review", &["get"]),
    ("/v1/reports/compliance", &["get"]),
    ("/v1/tokens/{id}/narrow", &["post"]),
    ("/v1/tokens/{id}/confirm", &["post"]),
    ("/v1/findings", &["get"]),
    ("/v1/findings/{id}", &["get"]),
    ("/v1/findings/{id}/ack", &["post"]),
    ("/v1/findings/{id}/resolve", &["post"]),
    ("/v1/verify", &["post"]),
    ("/v1/authz", &["get"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
    ("/openapi.json", &["get"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route() {
    let s = TestServer::start().await;
    let anon = s.client_with(None);
    let resp = send_empty(&anon, Method::GET, "/openapi.json").await;
    assert_eq!(resp.status.as_u16(), 200);
    let doc = json_body(&resp);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "OpenAPI 3.1: {}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in ROUTES {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} is not documented"));
        for m in *methods {
            let op = item.get(*m).unwrap_or_else(|| panic!("{m} {path} is not documented"));
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{m} {path} documents responses");
        }
    }
    // Nothing is documented that is not in the list above.
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let known: BTreeSet<&str> = ROUTES.iter().map(|(p, _)| *p).collect();
    assert_eq!(documented, known, "documented paths versus the routes listed in this test");
    // The server has every documented route: nothing answers route_not_found or 405. (Probed
    // without a token and without a body, so nothing can change.)
    for (path, item) in paths {
        let concrete = path.replace("{id}", "0000000000000000");
        for m in ["get", "post", "put", "patch", "delete"].into_iter().filter(|m| item.get(*m).is_some()) {
            let method = Method::from_bytes(m.to_ascii_uppercase().as_bytes()).expect("a method");
            let resp = send_empty(&anon, method, &concrete).await;
            assert_ne!(resp.status.as_u16(), 405, "{m} {path} is documented but not served");
            if resp.status.as_u16() == 404 {
                assert_ne!(json_body(&resp)["code"], "route_not_found", "{m} {path} is documented but not served");
            }
        }
    }
    // The request and problem schemas come from the wire types.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in ["CreateTokenRequest", "UpdateTokenRequest", "IssuedToken", "TokenView", "Problem", "EventView"] {
        assert!(schemas.contains_key(name), "schema {name} is documented");
    }
    s.stop().await;
}
