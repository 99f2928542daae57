//! Investigation end to end (issue 5): search, aggregates, explanations, export, token
//! timelines, the live tail and NDJSON ingest, over real servers and the `tokentrail` binary.
//!
//! The heart is a generated trace with known contents: a deterministic generator (xorshift with
//! a fixed seed) writes a few hundred events in the PRODUCT.md NDJSON schema over the three days
//! before the test started, the test ingests them, and it computes every expected answer from the
//! generated lines itself, so the test is its own oracle. Everything a server records by itself
//! (its bootstrap, every read of the log) happens after the trace ends, so a query bounded by
//! `until = end of the trace` sees exactly the trace.
//!
//! Relative times (`15m`, `24h`, `7d`) are relative to the server's clock when it answers: the
//! generator leaves no event within minutes of those boundaries, and the oracle only insists on
//! events that are in (or out) for every moment the request could have been answered at.
//!
//! Checks that can fail independently are collected and reported together, so one broken filter
//! does not hide the others. Nothing sleeps to make an assertion pass: waits poll with a
//! deadline, and no assertion is about how long something took.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::BufRead as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli::client::{Client, RawResponse, query};
use engine::Clock as _;
use http_body_util::BodyExt as _;
use hyper::Method;
use jiff::Timestamp;
use serde_json::{Map, Value, json};
use store::Store as _;
use tempfile::TempDir;

use crate::testkit::{BIN, CliOutput, json_body, read_admin_token, run_cli, send_json, token_id};

// ---------------------------------------------------------------------------------------------
// Servers, clocks and small helpers.

/// The static test files of this module.
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

/// How long a test waits for something the server does by itself (a spool replay, an expiry, an
/// event on a stream) before it fails. It only guards against hangs.
const DEADLINE: Duration = Duration::from_secs(20);

fn data_file(name: &str) -> String {
    format!("{DATA}/{name}")
}

/// The wall clock, through the one door the code base allows.
fn now_us() -> i64 {
    engine::SystemClock.now().as_microsecond()
}

/// The ledger's fixed-width time: `2026-11-27T19:46:31.123456Z`.
fn fixed(us: i64) -> String {
    let whole = Timestamp::from_second(us.div_euclid(1_000_000)).expect("a time in range").to_string();
    format!("{}.{:06}Z", &whole[..19], us.rem_euclid(1_000_000))
}

/// Microseconds since the epoch of an RFC 3339 time (sub-microsecond digits are truncated).
fn parse_us(s: &str) -> i64 {
    let t: Timestamp = s.parse().unwrap_or_else(|e| panic!("{s:?} is not an RFC 3339 time: {e}"));
    t.as_nanosecond().div_euclid(1000) as i64
}

/// All whitespace runs as one space (tables wrap long values over several lines).
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A server in this process on a data directory the test chooses (the test kit's `TestServer`
/// always makes a fresh one; offline ingest needs to stop and restart on the same directory, and
/// some tests need a route policy or injected write failures).
struct Srv {
    addr: String,
    admin_token: String,
    client: Client,
    running: Option<server::Running>,
}

impl Srv {
    async fn start(data_dir: &Path, policy: Option<&Path>, fail_writes_while: Option<PathBuf>) -> Srv {
        let mut config = config::Config::defaults(&config::Defaults { hostname: None });
        config.data_dir = data_dir.to_owned();
        config.listen = "127.0.0.1:0".parse().expect("a socket address");
        config.policy = policy.map(Path::to_owned);
        let running = server::start_with(&config, fail_writes_while).await.expect("the server starts");
        let addr = format!("http://{}", running.addr);
        let admin_token = read_admin_token(data_dir);
        let client = Client::new(&addr, Some(admin_token.clone())).expect("a client");
        Srv { addr, admin_token, client, running: Some(running) }
    }

    fn engine(&self) -> &engine::Engine {
        &self.running.as_ref().expect("the server is running").engine
    }

    /// Events in the ledger, read from the store (reads through the API are events themselves).
    fn event_count(&self) -> u64 {
        self.engine().store().event_count().expect("the event count")
    }

    fn admin_id(&self) -> String {
        token_id(&self.admin_token)
    }

    fn client_with(&self, token: &str) -> Client {
        Client::new(&self.addr, Some(token.to_owned())).expect("a client")
    }

    async fn cli(&self, args: &[&str]) -> CliOutput {
        run_cli(&[("TOKENTRAIL_ADDR", &self.addr), ("TOKENTRAIL_TOKEN", &self.admin_token)], args).await
    }

    async fn get(&self, path_and_query: &str) -> RawResponse {
        self.client.send(Method::GET, path_and_query, None, None).await.expect("the server answers")
    }

    /// A GET that must answer 200 with JSON.
    async fn get_ok(&self, path_and_query: &str) -> Value {
        let r = self.get(path_and_query).await;
        assert_eq!(r.status.as_u16(), 200, "GET {path_and_query}: {}", String::from_utf8_lossy(&r.body));
        json_body(&r)
    }

    async fn ingest(&self, ndjson: &str, skip_invalid: bool) -> RawResponse {
        let q = if skip_invalid { "?skip_invalid=true" } else { "" };
        let body = Some(ndjson.as_bytes().to_vec());
        self.client
            .send(Method::POST, &format!("/v1/audit/ingest{q}"), body, Some("application/x-ndjson"))
            .await
            .expect("the server answers")
    }

    /// Ingests lines that must all be good.
    async fn ingest_ok(&self, lines: &[Value]) {
        let r = self.ingest(&ndjson(lines), false).await;
        assert_eq!(r.status.as_u16(), 200, "ingest: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(json_body(&r)["ingested"], lines.len(), "ingest: {}", String::from_utf8_lossy(&r.body));
    }

    /// Issues a token over HTTP; returns the token string and its details.
    async fn create_token(&self, body: Value) -> (String, Value) {
        let r = send_json(&self.client, Method::POST, "/v1/tokens", &body).await;
        assert_eq!(r.status.as_u16(), 201, "create {body}: {}", String::from_utf8_lossy(&r.body));
        let v = json_body(&r);
        // The token's details are flattened next to the token.
        (v["token"].as_str().expect("the token").to_owned(), v)
    }

    async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("the server stops cleanly");
        }
    }
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Failed checks, reported together at the end of a test.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn fail(&mut self, what: impl Into<String>) {
        self.0.push(what.into());
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn same<T: PartialEq + Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.0.push(format!("{what}:\n      got:  {got:?}\n      want: {want:?}"));
        }
    }

    /// Compares lists of event ids, describing the difference briefly.
    fn same_ids(&mut self, what: &str, got: &[String], want: &[String]) {
        if got != want {
            self.0.push(format!("{what}: {}", id_diff(got, want)));
        }
    }

    fn assert_none(self, context: &str) {
        assert!(self.0.is_empty(), "{} checks of {context} failed:\n  - {}", self.0.len(), self.0.join("\n  - "));
    }
}

fn id_diff(got: &[String], want: &[String]) -> String {
    let g: BTreeSet<&String> = got.iter().collect();
    let w: BTreeSet<&String> = want.iter().collect();
    let missing: Vec<&&String> = w.difference(&g).take(8).collect();
    let extra: Vec<&&String> = g.difference(&w).take(8).collect();
    let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    format!(
        "got {} events, want {}; missing {missing:?}; unexpected {extra:?}; first difference at index {first} \
         (got {:?}, want {:?})",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first)
    )
}

/// A CLI run that must fail with `code` and print one `error: …` line, optionally followed by
/// indented detail lines; returns stderr.
fn cli_error(f: &mut Findings, what: &str, out: &CliOutput, code: i32) -> String {
    f.check(out.code == code, || format!("{what}: exit code {} (want {code}): {out:?}", out.code));
    let mut lines = out.stderr.lines();
    let first = lines.next().unwrap_or_default();
    if code == 1 {
        f.check(first.starts_with("error: "), || format!("{what}: the first stderr line is not `error: …`: {out:?}"));
        f.check(lines.all(|l| l.starts_with("  ")), || format!("{what}: more than one unindented error line: {out:?}"));
    }
    f.check(!out.stderr.contains("panicked"), || format!("{what}: a panic: {out:?}"));
    f.check(out.stdout.is_empty(), || format!("{what}: output on stdout: {out:?}"));
    out.stderr.clone()
}

// ---------------------------------------------------------------------------------------------
// The generated trace and its oracle.

/// One event in normalized form: every field of the export schema (absent ones at their
/// defaults), times in the ledger's microsecond form, no `seq`.
type Ev = BTreeMap<String, Value>;

/// The fields of an exported event and their values when absent.
const FIELDS: [&str; 29] = [
    "id",
    "time",
    "kind",
    "source",
    "token_id",
    "token_fingerprint",
    "owner",
    "source_ip",
    "user_agent",
    "method",
    "path",
    "route",
    "resource",
    "action",
    "sensitivity",
    "decision",
    "reason",
    "status",
    "latency_ms",
    "bytes_out",
    "request_id",
    "node",
    "operation",
    "target",
    "required_scope",
    "granted_scopes",
    "explanation",
    "details",
    "erased",
];

fn default_of(field: &str) -> Value {
    match field {
        "sensitivity" | "granted_scopes" => json!([]),
        "details" => json!({}),
        "erased" => json!(false),
        _ => Value::Null,
    }
}

/// An event (an export line, an API event, or the expected form of an input line) normalized for
/// comparison: `seq` dropped, absent fields at their defaults, times as microseconds.
fn normalize(v: &Value) -> Ev {
    let obj = v.as_object().unwrap_or_else(|| panic!("not an event object: {v}"));
    let mut out: Ev = FIELDS.iter().map(|f| ((*f).to_owned(), default_of(f))).collect();
    for (k, val) in obj {
        match k.as_str() {
            "seq" => {}
            "time" => {
                out.insert(k.clone(), json!(fixed(parse_us(val.as_str().expect("a time string")))));
            }
            _ if val.is_null() => {
                out.insert(k.clone(), default_of(k));
            }
            _ => {
                out.insert(k.clone(), val.clone());
            }
        }
    }
    out
}

/// The fields where two normalized events differ.
fn field_diff(got: &Ev, want: &Ev) -> String {
    let keys: BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    keys.into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| format!("{k}: got {:?}, want {:?}", got.get(k), want.get(k)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn field<'a>(e: &'a Ev, k: &str) -> Option<&'a str> {
    e.get(k).and_then(Value::as_str)
}

fn time_of(e: &Ev) -> i64 {
    parse_us(field(e, "time").expect("a time"))
}

fn id_of(e: &Ev) -> String {
    field(e, "id").expect("an id (bound after ingest)").to_owned()
}

/// xorshift64: deterministic, so every run generates the same trace shape.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
}

const SEED: u64 = 0x7E57_7AC3_0005_0001;
const TRACE_EVENTS: usize = 420;

const REASONS: [&str; 13] = [
    "ok",
    "missing_token",
    "malformed_token",
    "bad_checksum",
    "unknown_token",
    "revoked",
    "expired",
    "not_yet_valid",
    "insufficient_scope",
    "ip_not_allowed",
    "rate_limited",
    "route_not_found",
    "audit_unavailable",
];

/// Token ids (16 base62 characters, as tokentrail's) and their owners; two owners hold two tokens.
const TOKENS: [(&str, &str); 6] = [
    ("GenTokAlpha00001", "team-payments"),
    ("GenTokBravo00002", "team-payments"),
    ("GenTokCharl00003", "team-clinic"),
    ("GenTokDelta00004", "alice@example.com"),
    ("GenTokEcho000005", "bob@example.com"),
    ("GenTokFoxtr00006", "team-clinic"),
];
const ADMIN: (&str, &str) = ("GenAdminTok00001", "sec-team");
const GRANTS: [[&str; 2]; 2] = [["orders:read", "patients:read"], ["orders:write", "reports:read"]];
const FINGERPRINTS: [&str; 3] = ["fp_gen_000000000001", "fp_gen_000000000002", "fp_gen_000000000003"];

/// Addresses in a few IPv4 /24s and IPv6 /48s (two /64s share 2001:db8:a::/48).
const IPS: [&str; 13] = [
    "10.1.2.5",
    "10.1.2.6",
    "10.1.2.77",
    "10.1.3.9",
    "10.1.3.10",
    "192.0.2.44",
    "192.0.2.45",
    "198.51.100.7",
    "2001:db8:a::1",
    "2001:db8:a::2",
    "2001:db8:a:1::3",
    "2001:db8:b::9",
    "2001:db8:b:ff::1",
];

struct Route {
    method: &'static str,
    template: &'static str,
    resource: &'static str,
    action: &'static str,
    sensitivity: &'static [&'static str],
}

const ROUTES: [Route; 6] = [
    Route { method: "GET", template: "/v1/patients/{id}", resource: "patients", action: "read", sensitivity: &["phi"] },
    Route {
        method: "POST",
        template: "/v1/patients",
        resource: "patients",
        action: "write",
        sensitivity: &["phi", "pii"],
    },
    Route { method: "GET", template: "/v1/orders/{id}", resource: "orders", action: "read", sensitivity: &[] },
    Route { method: "POST", template: "/v1/orders", resource: "orders", action: "write", sensitivity: &["financial"] },
    Route {
        method: "DELETE",
        template: "/v1/orders/{id}",
        resource: "orders",
        action: "admin",
        sensitivity: &["financial"],
    },
    Route { method: "GET", template: "/v1/reports", resource: "reports", action: "read", sensitivity: &["pii"] },
];

fn route_text(r: &Route) -> String {
    format!("{} {}", r.method, r.template)
}

/// The many ways a time may be written: the ledger's form, whole seconds, another offset,
/// nanoseconds (truncated to microseconds on ingest).
fn time_text(i: usize, us: i64) -> String {
    let f = fixed(us);
    if us % 1_000_000 == 0 {
        return format!("{}Z", &f[..19]);
    }
    match i % 11 {
        3 => format!("{}+02:00", &fixed(us + 7_200_000_000)[..26]),
        5 => format!("{}-05:00", &fixed(us - 18_000_000_000)[..26]),
        8 => format!("{}250Z", &f[..26]),
        _ => f,
    }
}

/// One generated event: the line as written and its expected normalized form (without the id
/// when the line has none: the ledger assigns it).
fn generate_event(rng: &mut Rng, i: usize, t: i64) -> (Value, Ev) {
    let admin = i % 20 == 7;
    let reason = if admin {
        "ok"
    } else if i < 3 * REASONS.len() {
        REASONS[i % REASONS.len()]
    } else if rng.percent(60) {
        "ok"
    } else {
        REASONS[1 + rng.below(REASONS.len() - 1)]
    };
    let decision = if reason == "ok" { "allow" } else { "deny" };
    let mut l = Map::new();
    let mut put = |k: &str, v: Value| {
        l.insert(k.to_owned(), v);
    };
    if i % 9 != 4 {
        put("id", json!(format!("gen-{i:04}")));
    }
    put("time", json!(time_text(i, t)));
    put("reason", json!(reason));
    if admin || i.is_multiple_of(2) {
        put("kind", json!(if admin { "admin" } else { "access" }));
    }
    let source = if admin {
        Some("admin")
    } else {
        match rng.below(20) {
            0..=11 => Some("gateway"),
            12..=16 => Some("verify"),
            17 => Some("ingest"),
            _ => None,
        }
    };
    if let Some(s) = source {
        put("source", json!(s));
    }
    let ti = rng.below(TOKENS.len());
    let (token, fingerprint) = match reason {
        "missing_token" => (None, None),
        "malformed_token" | "bad_checksum" | "unknown_token" => (None, Some(*rng.pick(&FINGERPRINTS))),
        _ if admin => (Some(ADMIN.0), None),
        _ => (Some(TOKENS[ti].0), None),
    };
    let owner = token.map(|t| if admin { ADMIN.1 } else { TOKENS.iter().find(|(id, _)| *id == t).expect("a token").1 });
    let grants: Vec<&str> = match token {
        Some(_) if admin => vec!["tokentrail:admin"],
        Some(_) => GRANTS[ti % 2].to_vec(),
        None => Vec::new(),
    };
    if let Some(t) = token {
        put("token_id", json!(t));
    }
    if let Some(fp) = fingerprint {
        put("token_fingerprint", json!(fp));
    }
    if let Some(o) = owner {
        put("owner", json!(o));
    }
    let mut details = Map::new();
    let mut stored_path = None;
    if admin {
        let target = TOKENS[rng.below(TOKENS.len())].0;
        put("method", json!("PATCH"));
        put("path", json!(format!("/v1/tokens/{target}")));
        put("route", json!("PATCH /v1/tokens/{id}"));
        put("resource", json!("tokentrail"));
        put("action", json!("admin"));
        put("operation", json!("token.update"));
        put("target", json!(target));
        put("required_scope", json!("tokentrail:admin"));
        details.insert("scopes".into(), json!("orders:read"));
    } else if reason == "route_not_found" {
        put("method", json!("GET"));
        put("path", json!(format!("/v1/unknown/{i}")));
    } else {
        let r = rng.pick(&ROUTES);
        let n = 1000 + rng.below(9000);
        let path = r.template.replace("{id}", &n.to_string());
        if r.template == "/v1/reports" && rng.percent(50) {
            // Query strings are redacted on ingest.
            put("path", json!(format!("{path}?month=2026-10&page={n}")));
            stored_path = Some(path);
        } else {
            put("path", json!(path));
        }
        put("method", json!(r.method));
        put("route", json!(route_text(r)));
        put("resource", json!(r.resource));
        put("action", json!(r.action));
        if !r.sensitivity.is_empty() {
            put("sensitivity", json!(r.sensitivity));
        }
        if token.is_some() {
            put("required_scope", json!(format!("{}:{}", r.resource, r.action)));
        }
    }
    let ip = if admin {
        Some("10.9.0.5")
    } else if rng.percent(4) {
        None
    } else {
        Some(*rng.pick(&IPS))
    };
    if let Some(ip) = ip {
        put("source_ip", json!(ip));
    }
    put("user_agent", json!(format!("gen-agent/{}.0", i % 3)));
    put("request_id", json!(format!("req-gen-{i}")));
    put("node", json!(["node-a", "node-b"][i % 2]));
    let status = match reason {
        "ok" => 200,
        "insufficient_scope" | "ip_not_allowed" | "route_not_found" => 403,
        "rate_limited" => 429,
        "audit_unavailable" => 503,
        _ => 401,
    };
    put("status", json!(status));
    if rng.percent(85) {
        // Whole microseconds survive the round trip exactly.
        put("latency_ms", json!(rng.below(20_000) as f64 / 1000.0));
    }
    if decision == "allow" {
        put("bytes_out", json!(rng.below(50_000)));
    } else if rng.percent(50) {
        put("bytes_out", json!(0));
    }
    if !grants.is_empty() {
        put("granted_scopes", json!(grants));
    }
    put("explanation", json!(format!("generated: {reason}")));
    match reason {
        "revoked" => {
            details.insert("revoked_at".into(), json!(fixed(t - 3_600_000_000)));
            details.insert("revoked_by".into(), json!(ADMIN.0));
            details.insert("revoke_reason".into(), json!("rotated out"));
        }
        "expired" => {
            details.insert("expires_at".into(), json!(fixed(t - 7_205_000_000)));
        }
        "not_yet_valid" => {
            details.insert("not_before".into(), json!(fixed(t + 86_400_000_000)));
        }
        "ip_not_allowed" => {
            details.insert("allowed_cidrs".into(), json!("10.0.0.0/8,2001:db8:f::/48"));
        }
        "rate_limited" => {
            details.insert("rate_limit".into(), json!("100/min"));
            details.insert("retry_after_s".into(), json!("3"));
        }
        _ => {}
    }
    if !details.is_empty() {
        put("details", Value::Object(details));
    }
    if admin || rng.percent(70) {
        put("decision", json!(decision));
    }
    if i % 50 == 13 {
        // Positions are the ledger's: an input `seq` is ignored.
        put("seq", json!(99_999));
    }
    if i == 101 {
        // Erasure is the ledger's business: an input `erased` is ignored (the values are present).
        put("erased", json!(true));
    }
    let mut e = l.clone();
    e.remove("seq");
    e.insert("time".into(), json!(fixed(t)));
    e.entry("kind").or_insert(json!("access"));
    e.entry("source").or_insert(json!("ingest"));
    e.insert("decision".into(), json!(decision));
    e.insert("erased".into(), json!(false));
    if let Some(p) = stored_path {
        e.insert("path".into(), json!(p));
    }
    (Value::Object(l), normalize(&Value::Object(e)))
}

/// The generated trace: what was written and what must come back.
struct Trace {
    /// When the test started: the trace ends a minute before it, servers start after it.
    t0_us: i64,
    /// Every event is earlier than this.
    end_us: i64,
    lines: Vec<Value>,
    /// Normalized expected events, in ingest order; ids bound after ingest.
    expect: Vec<Ev>,
}

impl Trace {
    /// `n` events over the three days before `t0_us`, in time order. No event lies within five
    /// minutes of 15 minutes or 24 hours before `t0_us`, so relative filters are exact as long
    /// as the test runs for less than five minutes; a dozen events lie in the last 10 minutes.
    fn generate(t0_us: i64, n: usize) -> Trace {
        let mut rng = Rng(SEED);
        let mut times: Vec<i64> = Vec::with_capacity(n);
        while times.len() < n {
            let k = times.len();
            let span = if k < 12 { 460 } else { 3 * 86_400 - 200 };
            let offset_s = 130 + rng.below(span) as i64;
            if (540..1260).contains(&offset_s) || (86_040..86_760).contains(&offset_s) {
                continue;
            }
            let frac = if k % 17 == 5 { 0 } else { rng.below(1_000_000) as i64 };
            times.push(t0_us - offset_s * 1_000_000 - frac);
        }
        times.sort_unstable();
        let (lines, expect) = times.iter().enumerate().map(|(i, &t)| generate_event(&mut rng, i, t)).unzip();
        Trace { t0_us, end_us: t0_us - 60_000_000, lines, expect }
    }

    fn end(&self) -> String {
        fixed(self.end_us)
    }

    fn ndjson(&self) -> String {
        ndjson(&self.lines)
    }

    /// Ids of the expected events that satisfy `pred`, in ingest (= ledger) order.
    fn ids(&self, pred: impl Fn(&Ev) -> bool) -> Vec<String> {
        self.expect.iter().filter(|e| pred(e)).map(id_of).collect()
    }

    /// Reads the ingested trace back, checks it field by field against the expectation, and
    /// binds the ids the ledger assigned to lines that had none.
    async fn bind_ids(&mut self, srv: &Srv) {
        let got = fetch_events(srv, &[("until", self.end())], "asc").await.expect("the trace reads back");
        assert_eq!(got.len(), self.expect.len(), "the trace's events in the ledger");
        let mut f = Findings::default();
        let mut assigned = BTreeSet::new();
        for (i, (g, e)) in got.iter().zip(self.expect.iter_mut()).enumerate() {
            let gid = g["id"].as_str().expect("an id").to_owned();
            match field(e, "id") {
                Some(want) => f.same(&format!("the id of line {}", i + 1), gid.as_str(), want),
                None => {
                    f.check(gid.starts_with("ev_") && assigned.insert(gid.clone()), || {
                        format!("line {} had no id; the ledger assigned {gid:?} (want a fresh ev_… id)", i + 1)
                    });
                    e.insert("id".into(), json!(gid));
                }
            }
            let gn = normalize(g);
            f.check(gn == *e, || format!("line {} reads back differently: {}", i + 1, field_diff(&gn, e)));
        }
        f.assert_none("the ingested trace read back through GET /v1/audit/events");
    }
}

/// A fresh server with the generated trace ingested through `tokentrail ingest FILE`.
async fn trace_server() -> (TempDir, Srv, Trace) {
    // The trace ends before the server starts, so nothing the server records lies inside it.
    let mut trace = Trace::generate(now_us(), TRACE_EVENTS);
    let root = tempfile::tempdir().expect("a temporary directory");
    let file = root.path().join("trace.ndjson");
    std::fs::write(&file, trace.ndjson()).expect("write the trace");
    let srv = Srv::start(&root.path().join("data"), None, None).await;
    let out = srv.cli(&["ingest", file.to_str().expect("a UTF-8 path")]).await;
    assert_eq!(out.code, 0, "tokentrail ingest: {out:?}");
    assert_eq!(out.stdout, format!("ingested {TRACE_EVENTS} events (0 lines skipped)\n"), "{out:?}");
    trace.bind_ids(&srv).await;
    (root, srv, trace)
}

/// Every event of a query, following `next_cursor` (pages of 1000).
async fn fetch_events(srv: &Srv, params: &[(&str, String)], order: &str) -> Result<Vec<Value>, String> {
    fetch_pages(srv, params, Some(order), 1000).await
}

async fn fetch_pages(
    srv: &Srv,
    params: &[(&str, String)],
    order: Option<&str>,
    limit: u32,
) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut pairs: Vec<(&str, Option<String>)> = params.iter().map(|(k, v)| (*k, Some(v.clone()))).collect();
        pairs.push(("order", order.map(str::to_owned)));
        pairs.push(("limit", Some(limit.to_string())));
        pairs.push(("cursor", cursor.clone()));
        let path = format!("/v1/audit/events{}", query(&pairs));
        let r = srv.get(&path).await;
        if r.status.as_u16() != 200 {
            return Err(format!("GET {path} answered {}: {}", r.status, String::from_utf8_lossy(&r.body)));
        }
        let page = json_body(&r);
        let events = page["events"].as_array().ok_or_else(|| format!("GET {path}: no events array"))?;
        if events.len() > limit as usize {
            return Err(format!("GET {path}: {} events on a page of {limit}", events.len()));
        }
        out.extend(events.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(out),
        }
        if out.len() > 100_000 {
            return Err(format!("GET {path}: the cursor never ends"));
        }
    }
}

fn ids_of(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["id"].as_str().expect("an id").to_owned()).collect()
}

/// Whether `ip` is in `net` (an address or a CIDR), by the usual rule: an IPv4 address is in no
/// IPv6 network and the other way round.
fn in_net(ip: &str, net: &str) -> bool {
    let (addr, len) = match net.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().expect("a network"), l.parse::<u32>().expect("a prefix length")),
        None => {
            let a = net.parse::<IpAddr>().expect("an address");
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let ip: IpAddr = ip.parse().expect("an address");
    match (ip, addr) {
        (IpAddr::V4(x), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(x) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(x), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(x) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Checks one query of `GET /v1/audit/events` against the oracle, oldest first (`order=asc`)
/// and in the default order (newest first). `until` is the end of the trace unless given.
async fn check_filter(
    f: &mut Findings,
    srv: &Srv,
    trace: &Trace,
    name: &str,
    params: &[(&str, &str)],
    pred: impl Fn(&Ev) -> bool,
) {
    let mut p: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    if !params.iter().any(|(k, _)| *k == "until") {
        p.push(("until", trace.end()));
    }
    let want = trace.ids(|e| time_of(e) < trace.end_us && pred(e));
    match fetch_pages(srv, &p, Some("asc"), 1000).await {
        Ok(got) => f.same_ids(&format!("{name} (asc)"), &ids_of(&got), &want),
        Err(e) => f.fail(format!("{name}: {e}")),
    }
    let mut desc = want.clone();
    desc.reverse();
    match fetch_pages(srv, &p, None, 1000).await {
        Ok(got) => f.same_ids(&format!("{name} (default order, newest first)"), &ids_of(&got), &desc),
        Err(e) => f.fail(format!("{name}: {e}")),
    }
}

/// Checks a query with relative times: events that are in for every moment the server could
/// have answered at must be there, events that are out for every such moment must not.
async fn check_relative(
    f: &mut Findings,
    srv: &Srv,
    trace: &Trace,
    name: &str,
    since: Option<(&str, i64)>,
    until: Option<(&str, i64)>,
) {
    let mut p: Vec<(&str, String)> = Vec::new();
    if let Some((text, _)) = since {
        p.push(("since", text.to_owned()));
    }
    match until {
        Some((text, _)) => p.push(("until", text.to_owned())),
        None => p.push(("until", trace.end())),
    }
    let (since_ago_s, until_ago_s) = (since.map(|(_, s)| s), until.map(|(_, s)| s));
    let before = now_us();
    let got = fetch_pages(srv, &p, Some("asc"), 1000).await;
    let after = now_us();
    let got = match got {
        Ok(g) => ids_of(&g),
        Err(e) => return f.fail(format!("{name}: {e}")),
    };
    let end = |t: i64| t < trace.end_us;
    let sure = trace.ids(|e| {
        let t = time_of(e);
        end(t)
            && since_ago_s.is_none_or(|s| t >= after - s * 1_000_000)
            && until_ago_s.is_none_or(|u| t < before - u * 1_000_000)
    });
    let maybe = trace.ids(|e| {
        let t = time_of(e);
        end(t)
            && since_ago_s.is_none_or(|s| t >= before - s * 1_000_000)
            && until_ago_s.is_none_or(|u| t < after - u * 1_000_000)
    });
    f.check(!sure.is_empty(), || format!("{name}: the trace has no event that is surely in (generator bug)"));
    let in_order: Vec<String> = maybe.iter().filter(|id| got.contains(id)).cloned().collect();
    f.check(in_order == got && sure.iter().all(|id| got.contains(id)), || format!("{name}: {}", id_diff(&got, &sure)));
}

// ---------------------------------------------------------------------------------------------
// Search: every filter, order, limits and combinations against the oracle.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_of_the_event_search_matches_the_generated_trace() {
    let (_root, srv, trace) = trace_server().await;
    let t = &trace;
    let mut f = Findings::default();

    // Everything, and each value of each equality filter.
    check_filter(&mut f, &srv, t, "no filter", &[], |_| true).await;
    for (id, _) in TOKENS.iter().chain([&ADMIN]) {
        check_filter(&mut f, &srv, t, &format!("token_id={id}"), &[("token_id", id)], |e| {
            field(e, "token_id") == Some(id)
        })
        .await;
    }
    check_filter(&mut f, &srv, t, "token_id=unknown", &[("token_id", "NoSuchToken00000")], |_| false).await;
    let owners: BTreeSet<&str> = TOKENS.iter().chain([&ADMIN]).map(|(_, o)| *o).collect();
    for o in owners {
        check_filter(&mut f, &srv, t, &format!("owner={o}"), &[("owner", o)], |e| field(e, "owner") == Some(o)).await;
    }
    for fp in FINGERPRINTS {
        check_filter(&mut f, &srv, t, &format!("fingerprint={fp}"), &[("fingerprint", fp)], |e| {
            field(e, "token_fingerprint") == Some(fp)
        })
        .await;
    }
    let nets = [
        "10.1.2.5",
        "2001:db8:a::1",
        "2001:0db8:000a:0000::0001",
        "10.1.2.0/24",
        "10.1.0.0/16",
        "192.0.2.0/24",
        "0.0.0.0/0",
        "2001:db8:a::/48",
        "2001:db8:b:ff::/64",
        "2001:db8::/32",
        "::/0",
    ];
    for net in nets {
        check_filter(&mut f, &srv, t, &format!("source_ip={net}"), &[("source_ip", net)], |e| {
            field(e, "source_ip").is_some_and(|ip| in_net(ip, net))
        })
        .await;
    }
    let mut routes: Vec<String> = ROUTES.iter().map(route_text).collect();
    routes.extend(["PATCH /v1/tokens/{id}".to_owned(), "GET /v1/nowhere".to_owned()]);
    for r in &routes {
        check_filter(&mut f, &srv, t, &format!("route={r}"), &[("route", r)], |e| field(e, "route") == Some(r)).await;
    }
    for r in ["patients", "orders", "reports", "tokentrail"] {
        check_filter(&mut f, &srv, t, &format!("resource={r}"), &[("resource", r)], |e| {
            field(e, "resource") == Some(r)
        })
        .await;
    }
    for a in ["read", "write", "admin"] {
        check_filter(&mut f, &srv, t, &format!("action={a}"), &[("action", a)], |e| field(e, "action") == Some(a))
            .await;
    }
    for s in ["phi", "pii", "financial", "secret"] {
        check_filter(&mut f, &srv, t, &format!("sensitivity={s}"), &[("sensitivity", s)], |e| {
            e["sensitivity"].as_array().is_some_and(|l| l.iter().any(|x| x == s))
        })
        .await;
    }
    for d in ["allow", "deny"] {
        check_filter(&mut f, &srv, t, &format!("decision={d}"), &[("decision", d)], |e| {
            field(e, "decision") == Some(d)
        })
        .await;
    }
    for r in REASONS {
        f.check(t.expect.iter().any(|e| field(e, "reason") == Some(r)), || format!("the trace lacks reason {r}"));
        check_filter(&mut f, &srv, t, &format!("reason={r}"), &[("reason", r)], |e| field(e, "reason") == Some(r))
            .await;
    }
    for k in ["access", "admin"] {
        check_filter(&mut f, &srv, t, &format!("kind={k}"), &[("kind", k)], |e| field(e, "kind") == Some(k)).await;
    }
    for s in ["gateway", "verify", "ingest", "admin"] {
        check_filter(&mut f, &srv, t, &format!("source={s}"), &[("source", s)], |e| field(e, "source") == Some(s))
            .await;
    }

    // Absolute times: `since` includes its instant, `until` excludes it; any offset is accepted.
    let n = t.expect.len();
    let (ta, tb) = (time_of(&t.expect[n / 3]), time_of(&t.expect[2 * n / 3]));
    let (sa, sb) = (fixed(ta), fixed(tb));
    check_filter(&mut f, &srv, t, "since=<an event's exact time>", &[("since", &sa)], |e| time_of(e) >= ta).await;
    check_filter(&mut f, &srv, t, "until=<an event's exact time>", &[("until", &sb)], |e| time_of(e) < tb).await;
    let sa_offset = format!("{}+02:00", &fixed(ta + 7_200_000_000)[..26]);
    check_filter(&mut f, &srv, t, "since (+02:00) and until", &[("since", &sa_offset), ("until", &sb)], |e| {
        (ta..tb).contains(&time_of(e))
    })
    .await;
    let day_ago_whole = (t.t0_us - 2 * 86_400_000_000).div_euclid(1_000_000) * 1_000_000;
    let whole = format!("{}Z", &fixed(day_ago_whole)[..19]);
    check_filter(&mut f, &srv, t, "since=<whole seconds>", &[("since", &whole)], |e| time_of(e) >= day_ago_whole).await;

    // Relative times.
    check_relative(&mut f, &srv, t, "since=15m", Some(("15m", 15 * 60)), None).await;
    check_relative(&mut f, &srv, t, "since=24h", Some(("24h", 86_400)), None).await;
    check_relative(&mut f, &srv, t, "since=7d", Some(("7d", 7 * 86_400)), None).await;
    check_relative(&mut f, &srv, t, "since=1440m", Some(("1440m", 86_400)), None).await;
    check_relative(&mut f, &srv, t, "until=24h", None, Some(("24h", 86_400))).await;
    check_relative(&mut f, &srv, t, "since=7d&until=1d", Some(("7d", 7 * 86_400)), Some(("1d", 86_400))).await;
    for rel in ["15m", "24h", "7d"] {
        let r = srv.get(&format!("/v1/audit/events{}", query(&[("since", Some(rel.to_owned()))]))).await;
        f.check(r.status.as_u16() == 200, || format!("since={rel}: {}", String::from_utf8_lossy(&r.body)));
    }
    let out = srv
        .cli(&[
            "audit",
            "query",
            "--since",
            "24h",
            "--until",
            &t.end(),
            "--order",
            "asc",
            "--limit",
            "1000",
            "--format",
            "json",
        ])
        .await;
    if out.code == 0 {
        let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
        let got = ids_of(v["events"].as_array().expect("events"));
        let want = t.ids(|e| time_of(e) >= t.t0_us - 86_400_000_000 && time_of(e) < t.end_us);
        f.same_ids("audit query --since 24h (CLI)", &got, &want);
    } else {
        f.fail(format!("audit query --since 24h: {out:?}"));
    }

    // Combinations.
    check_filter(
        &mut f,
        &srv,
        t,
        "token_id & decision=deny",
        &[("token_id", TOKENS[0].0), ("decision", "deny")],
        |e| field(e, "token_id") == Some(TOKENS[0].0) && field(e, "decision") == Some("deny"),
    )
    .await;
    check_filter(
        &mut f,
        &srv,
        t,
        "source_ip=10.1.0.0/16 & sensitivity=phi & since",
        &[("source_ip", "10.1.0.0/16"), ("sensitivity", "phi"), ("since", &sa)],
        |e| {
            field(e, "source_ip").is_some_and(|ip| in_net(ip, "10.1.0.0/16"))
                && e["sensitivity"].as_array().is_some_and(|l| l.iter().any(|x| x == "phi"))
                && time_of(e) >= ta
        },
    )
    .await;
    check_filter(
        &mut f,
        &srv,
        t,
        "owner & route & reason=ok",
        &[("owner", "team-payments"), ("route", "GET /v1/orders/{id}"), ("reason", "ok")],
        |e| {
            field(e, "owner") == Some("team-payments")
                && field(e, "route") == Some("GET /v1/orders/{id}")
                && field(e, "reason") == Some("ok")
        },
    )
    .await;
    check_filter(&mut f, &srv, t, "kind=admin & source=admin", &[("kind", "admin"), ("source", "admin")], |e| {
        field(e, "kind") == Some("admin") && field(e, "source") == Some("admin")
    })
    .await;
    check_filter(
        &mut f,
        &srv,
        t,
        "resource & action & decision & IPv6 network",
        &[("resource", "orders"), ("action", "read"), ("decision", "allow"), ("source_ip", "2001:db8::/32")],
        |e| {
            field(e, "resource") == Some("orders")
                && field(e, "action") == Some("read")
                && field(e, "decision") == Some("allow")
                && field(e, "source_ip").is_some_and(|ip| in_net(ip, "2001:db8::/32"))
        },
    )
    .await;
    check_filter(
        &mut f,
        &srv,
        t,
        "fingerprint & IPv4 network & kind & source",
        &[("fingerprint", FINGERPRINTS[0]), ("source_ip", "0.0.0.0/0"), ("kind", "access"), ("source", "gateway")],
        |e| {
            field(e, "token_fingerprint") == Some(FINGERPRINTS[0])
                && field(e, "source_ip").is_some_and(|ip| in_net(ip, "0.0.0.0/0"))
                && field(e, "source") == Some("gateway")
        },
    )
    .await;
    check_filter(
        &mut f,
        &srv,
        t,
        "reason=expired & token_id & since & until",
        &[("reason", "expired"), ("token_id", TOKENS[3].0), ("since", &sa), ("until", &sb)],
        |e| {
            field(e, "reason") == Some("expired")
                && field(e, "token_id") == Some(TOKENS[3].0)
                && (ta..tb).contains(&time_of(e))
        },
    )
    .await;

    // Order and limits. A small filter paged one event at a time follows the cursor exactly.
    let end = t.end();
    let all = t.ids(|_| true);
    let p = |extra: &[(&str, &str)]| {
        let mut v: Vec<(&str, Option<String>)> = vec![("until", Some(end.clone()))];
        v.extend(extra.iter().map(|(k, x)| (*k, Some((*x).to_owned()))));
        format!("/v1/audit/events{}", query(&v))
    };
    let one = srv.get_ok(&p(&[("limit", "1")])).await;
    f.same("limit=1: the newest event", ids_of(one["events"].as_array().expect("events")), vec![all[n - 1].clone()]);
    f.check(one["next_cursor"].is_string(), || format!("limit=1: no next_cursor: {one}"));
    let one = srv.get_ok(&p(&[("limit", "1"), ("order", "asc")])).await;
    f.same(
        "limit=1&order=asc: the oldest event",
        ids_of(one["events"].as_array().expect("events")),
        vec![all[0].clone()],
    );
    let page = srv.get_ok(&p(&[("limit", "1000"), ("order", "desc")])).await;
    let mut rev = all.clone();
    rev.reverse();
    f.same_ids("limit=1000&order=desc", &ids_of(page["events"].as_array().expect("events")), &rev);
    f.check(page["next_cursor"].is_null(), || "limit=1000 over the whole trace: a next_cursor".to_owned());
    let exact = n.to_string();
    let page = srv.get_ok(&p(&[("limit", &exact), ("order", "asc")])).await;
    f.check(page["events"].as_array().is_some_and(|e| e.len() == n) && page["next_cursor"].is_null(), || {
        format!(
            "limit=<exactly the number of matches>: want every event and no next_cursor, got {} and {}",
            page["events"].as_array().map_or(0, Vec::len),
            page["next_cursor"]
        )
    });
    let short = (n - 1).to_string();
    let page = srv.get_ok(&p(&[("limit", &short), ("order", "asc")])).await;
    f.check(page["next_cursor"].is_string(), || "limit=<one fewer than the matches>: no next_cursor".to_owned());
    for bad in ["0", "1001"] {
        let r = srv.get(&p(&[("limit", bad)])).await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        f.check(r.status.as_u16() == 400 && body.contains("\"field\":\"limit\""), || {
            format!("limit={bad}: want a 400 naming limit, got {}: {body}", r.status)
        });
    }
    let small: Vec<(&str, String)> =
        vec![("token_id", TOKENS[3].0.to_owned()), ("decision", "deny".to_owned()), ("until", t.end())];
    let want = t.ids(|e| field(e, "token_id") == Some(TOKENS[3].0) && field(e, "decision") == Some("deny"));
    match fetch_pages(&srv, &small, Some("asc"), 1).await {
        Ok(got) => f.same_ids("token_id & decision=deny, one event per page", &ids_of(&got), &want),
        Err(e) => f.fail(e),
    }
    f.assert_none("GET /v1/audit/events against the generated trace");
}

// ---------------------------------------------------------------------------------------------
// Pagination across appends, and cursors that belong to another query.

/// A gateway allow event appended during pagination (its time inside the trace's span).
fn appended(id: &str, source: &str, time_us: i64) -> Value {
    json!({"id": id, "time": fixed(time_us), "source": source, "reason": "ok", "decision": "allow",
           "token_id": TOKENS[0].0, "owner": TOKENS[0].1, "source_ip": "10.1.2.5"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_sees_every_event_once_while_events_are_appended() {
    let (_root, srv, trace) = trace_server().await;
    let mut f = Findings::default();
    let matching = |e: &Ev| field(e, "source") == Some("gateway") && field(e, "decision") == Some("allow");
    let mut initial = trace.ids(matching);
    assert!(initial.len() > 40, "the trace has {} gateway allows", initial.len());
    let old = trace.t0_us - 3 * 3_600_000_000;

    for order in ["asc", "desc"] {
        let mut seen: Vec<String> = Vec::new();
        let mut added: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 1.. {
            let pairs = [
                ("source", Some("gateway".to_owned())),
                ("decision", Some("allow".to_owned())),
                ("order", Some(order.to_owned())),
                ("limit", Some("7".to_owned())),
                ("cursor", cursor.clone()),
            ];
            let list = srv.get_ok(&format!("/v1/audit/events{}", query(&pairs))).await;
            seen.extend(ids_of(list["events"].as_array().expect("events")));
            if page <= 5 {
                // Two matching events, one that does not match (another source), and a read of
                // the log (an admin access event) between pages.
                let (a, b) = (format!("app-{order}-{page}-a"), format!("app-{order}-{page}-b"));
                srv.ingest_ok(&[
                    appended(&a, "gateway", old + page),
                    appended(&format!("app-{order}-{page}-x"), "verify", old + page),
                    appended(&b, "gateway", old - page),
                ])
                .await;
                added.extend([a, b]);
                srv.get_ok("/v1/audit/events?limit=1").await;
            }
            match list["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
            assert!(page < 500, "the cursor never ends");
        }
        let want: Vec<String> = if order == "asc" {
            // Oldest first: events appended behind the cursor are reached at the end, in order.
            initial.iter().chain(&added).cloned().collect()
        } else {
            // Newest first: the walk started at the newest event; later ones are not in it.
            initial.iter().rev().cloned().collect()
        };
        f.same_ids(&format!("order={order}, 7 per page, appending between pages"), &seen, &want);
        let unique: BTreeSet<&String> = seen.iter().collect();
        f.check(unique.len() == seen.len(), || format!("order={order}: an event was seen twice"));
        // What this walk appended exists when the next one starts.
        initial.extend(added);
    }

    // A cursor belongs to its query: another filter, another order or another time range is a
    // 400 naming `cursor`; a changed page size is the same query.
    let first = srv.get_ok("/v1/audit/events?source=gateway&decision=allow&limit=5").await;
    let c = first["next_cursor"].as_str().expect("a cursor").to_owned();
    let since = fixed(trace.t0_us - 86_400_000_000);
    let others = [
        query(&[("source", Some("verify".into())), ("decision", Some("allow".into())), ("cursor", Some(c.clone()))]),
        query(&[("source", Some("gateway".into())), ("cursor", Some(c.clone()))]),
        query(&[
            ("source", Some("gateway".into())),
            ("decision", Some("allow".into())),
            ("order", Some("asc".into())),
            ("cursor", Some(c.clone())),
        ]),
        query(&[
            ("source", Some("gateway".into())),
            ("decision", Some("allow".into())),
            ("since", Some(since)),
            ("cursor", Some(c.clone())),
        ]),
    ];
    let mut tampered = c.clone();
    let last = tampered.pop().expect("a character");
    tampered.push(if last == '0' { '1' } else { '0' });
    let malformed = ["banana", "", "c", "c1", "c1.", "cZZ.00000000", "c1.0000000g", &tampered, &format!("{c}x")];
    let mut cases: Vec<(String, String)> =
        others.iter().map(|q| (format!("a cursor of another query: {q}"), q.clone())).collect();
    for m in malformed {
        let q = query(&[
            ("source", Some("gateway".into())),
            ("decision", Some("allow".into())),
            ("cursor", Some(m.into())),
        ]);
        cases.push((format!("a malformed cursor {m:?}"), q));
    }
    for (what, q) in cases {
        let r = srv.get(&format!("/v1/audit/events{q}")).await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let named = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["errors"].as_array().map(|e| e.iter().any(|x| x["field"] == "cursor")))
            .unwrap_or(false);
        f.check(r.status.as_u16() == 400 && named, || {
            format!("{what}: want a 400 naming cursor, got {}: {body}", r.status)
        });
    }
    let same = srv.get_ok(&format!("/v1/audit/events?source=gateway&decision=allow&limit=9&cursor={c}")).await;
    // Newest first, the second page (of another size) continues right after the first.
    let want: Vec<String> = initial.iter().rev().skip(5).take(9).cloned().collect();
    f.same_ids("the same query with another page size", &ids_of(same["events"].as_array().expect("events")), &want);
    f.same_ids(
        "the first page",
        &ids_of(first["events"].as_array().expect("events")),
        &initial.iter().rev().take(5).cloned().collect::<Vec<_>>(),
    );
    let out = srv.cli(&["audit", "query", "--source", "gateway", "--cursor", "banana"]).await;
    let err = cli_error(&mut f, "audit query --cursor banana", &out, 1);
    f.check(err.contains("cursor"), || format!("audit query --cursor banana names the cursor: {err}"));
    f.assert_none("pagination");
}

// ---------------------------------------------------------------------------------------------
// Stats for every grouping, with filters, against the oracle.

/// The key an event is grouped under, as the API writes it.
fn group_key(e: &Ev, by: &str) -> String {
    let opt = |k: &str| field(e, k).unwrap_or("-").to_owned();
    match by {
        "token" => field(e, "token_id").or_else(|| field(e, "token_fingerprint")).unwrap_or("-").to_owned(),
        "network" => field(e, "source_ip").map_or_else(
            || "-".to_owned(),
            |ip| match ip.parse::<IpAddr>().expect("an address") {
                IpAddr::V4(v4) => {
                    let o = v4.octets();
                    format!("{}.{}.{}.0/24", o[0], o[1], o[2])
                }
                IpAddr::V6(v6) => {
                    let mut s = v6.segments();
                    s[3..].fill(0);
                    format!("{}/48", std::net::Ipv6Addr::from(s))
                }
            },
        ),
        "hour" => {
            let h = time_of(e).div_euclid(3_600_000_000) * 3600;
            format!("{}:00Z", &Timestamp::from_second(h).expect("a time").to_string()[..13])
        }
        "day" => {
            let d = time_of(e).div_euclid(86_400_000_000) * 86_400;
            Timestamp::from_second(d).expect("a time").to_string()[..10].to_owned()
        }
        "source_ip" => opt("source_ip"),
        other => opt(other),
    }
}

/// Groups of the oracle: key -> [count, allowed, denied, distinct addresses, bytes].
fn stat_oracle<'a>(events: impl Iterator<Item = &'a Ev>, by: &str) -> BTreeMap<String, [u64; 5]> {
    let mut groups: BTreeMap<String, ([u64; 5], BTreeSet<String>)> = BTreeMap::new();
    for e in events {
        let g = groups.entry(group_key(e, by)).or_default();
        g.0[0] += 1;
        if field(e, "decision") == Some("allow") {
            g.0[1] += 1;
        } else {
            g.0[2] += 1;
        }
        if let Some(ip) = field(e, "source_ip") {
            g.1.insert(ip.to_owned());
        }
        g.0[4] += e["bytes_out"].as_u64().unwrap_or(0);
    }
    groups
        .into_iter()
        .map(|(k, (mut v, ips))| {
            v[3] = ips.len() as u64;
            (k, v)
        })
        .collect()
}

fn stat_rows(stats: &Value) -> Vec<(String, [u64; 5])> {
    let n = |g: &Value, k: &str| g[k].as_u64().unwrap_or(u64::MAX);
    stats["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            let key = g["key"].as_str().expect("a key").to_owned();
            (key, [n(g, "count"), n(g, "allowed"), n(g, "denied"), n(g, "distinct_ips"), n(g, "bytes")])
        })
        .collect()
}

const GROUPINGS: [&str; 10] =
    ["token", "owner", "route", "resource", "reason", "decision", "source_ip", "network", "hour", "day"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_for_every_grouping_match_the_oracle() {
    let (_root, srv, trace) = trace_server().await;
    let t = &trace;
    let mut f = Findings::default();
    let since = fixed(t.t0_us - 86_400_000_000 - 1_800_000_000);
    let since_us = parse_us(&since);
    type Pred = Box<dyn Fn(&Ev) -> bool>;
    /// A grouping, its filters, and the oracle's predicate for them.
    type Case = (&'static str, Vec<(&'static str, String)>, Pred);
    let filtered: [Case; 10] = [
        ("token", vec![("decision", "deny".into())], Box::new(|e| field(e, "decision") == Some("deny"))),
        (
            "owner",
            vec![("sensitivity", "phi".into())],
            Box::new(|e| e["sensitivity"].as_array().is_some_and(|l| l.iter().any(|x| x == "phi"))),
        ),
        ("route", vec![("source", "gateway".into())], Box::new(|e| field(e, "source") == Some("gateway"))),
        (
            "resource",
            vec![("source_ip", "10.1.0.0/16".into())],
            Box::new(|e| field(e, "source_ip").is_some_and(|ip| in_net(ip, "10.1.0.0/16"))),
        ),
        ("reason", vec![("token_id", TOKENS[0].0.into())], Box::new(|e| field(e, "token_id") == Some(TOKENS[0].0))),
        (
            "decision",
            vec![("kind", "access".into()), ("source_ip", "2001:db8::/32".into())],
            Box::new(|e| {
                field(e, "kind") == Some("access")
                    && field(e, "source_ip").is_some_and(|ip| in_net(ip, "2001:db8::/32"))
            }),
        ),
        ("source_ip", vec![("resource", "orders".into())], Box::new(|e| field(e, "resource") == Some("orders"))),
        ("network", vec![("reason", "ok".into())], Box::new(|e| field(e, "reason") == Some("ok"))),
        ("hour", vec![("since", since.clone())], Box::new(move |e| time_of(e) >= since_us)),
        ("day", vec![("owner", "team-clinic".into())], Box::new(|e| field(e, "owner") == Some("team-clinic"))),
    ];
    let everything: Pred = Box::new(|_| true);
    for (by, filters, pred) in filtered
        .iter()
        .map(|(b, fs, p)| (*b, fs.clone(), p))
        .chain(GROUPINGS.iter().map(|b| (*b, Vec::new(), &everything)))
    {
        let mut pairs: Vec<(&str, Option<String>)> =
            vec![("group_by", Some(by.to_owned())), ("until", Some(t.end())), ("limit", Some("1000".into()))];
        pairs.extend(filters.iter().map(|(k, v)| (*k, Some(v.clone()))));
        let path = format!("/v1/audit/stats{}", query(&pairs));
        let what = format!("GET {path}");
        let r = srv.get(&path).await;
        if r.status.as_u16() != 200 {
            f.fail(format!("{what}: {} {}", r.status, String::from_utf8_lossy(&r.body)));
            continue;
        }
        let stats = json_body(&r);
        f.same(&format!("{what}: group_by"), stats["group_by"].as_str(), Some(by));
        let rows = stat_rows(&stats);
        let want = stat_oracle(t.expect.iter().filter(|e| time_of(e) < t.end_us && pred(e)), by);
        let got: BTreeMap<String, [u64; 5]> = rows.iter().cloned().collect();
        f.check(got.len() == rows.len(), || format!("{what}: a key appears twice: {rows:?}"));
        for (k, w) in &want {
            match got.get(k) {
                Some(g) if g == w => {}
                Some(g) => {
                    f.fail(format!("{what}: group {k:?}: got [count, allowed, denied, ips, bytes] = {g:?}, want {w:?}"))
                }
                None => f.fail(format!("{what}: group {k:?} is missing (want {w:?})")),
            }
        }
        for k in got.keys().filter(|k| !want.contains_key(*k)) {
            f.fail(format!("{what}: unexpected group {k:?}: {:?}", got[k]));
        }
        if by == "hour" || by == "day" {
            f.check(rows.windows(2).all(|w| w[0].0 < w[1].0), || format!("{what}: time groups are not in time order"));
        } else {
            f.check(rows.windows(2).all(|w| w[0].1[0] >= w[1].1[0]), || {
                format!("{what}: groups are not by count, largest first")
            });
        }
    }

    // The CLI shows the same numbers (JSON equal to the API's; CSV rows with the same counts).
    let out = srv.cli(&["audit", "stats", "--group-by", "network", "--until", &t.end(), "--format", "json"]).await;
    let http = srv.get_ok(&format!("/v1/audit/stats?group_by=network&until={}", cli::client::encode(&t.end()))).await;
    match serde_json::from_str::<Value>(&out.stdout) {
        Ok(v) if out.code == 0 => {
            f.same("audit stats --group-by network --format json equals the API", v, http.clone())
        }
        _ => f.fail(format!("audit stats --format json: {out:?}")),
    }
    let out = srv.cli(&["audit", "stats", "--group-by", "network", "--until", &t.end(), "--format", "csv"]).await;
    let rows = parse_csv(&out.stdout);
    f.same(
        "audit stats --format csv header",
        rows.first().cloned(),
        Some(["NETWORK", "COUNT", "ALLOWED", "DENIED", "IPS", "BYTES"].map(String::from).to_vec()),
    );
    let want: Vec<Vec<String>> = stat_rows(&http)
        .into_iter()
        .map(|(k, v)| std::iter::once(k).chain(v.iter().map(u64::to_string)).collect())
        .collect();
    f.same("audit stats --format csv rows", rows.get(1..).map(<[Vec<String>]>::to_vec), Some(want));

    // Groupings that do not exist, or none.
    for (q, what) in
        [("group_by=banana", "an unknown grouping"), ("", "no grouping"), ("group_by=", "an empty grouping")]
    {
        let r = srv.get(&format!("/v1/audit/stats?{q}")).await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        f.check(r.status.as_u16() == 400 && body.contains("\"field\":\"group_by\""), || {
            format!("{what} ({q}): want a 400 naming group_by, got {}: {body}", r.status)
        });
    }
    f.assert_none("GET /v1/audit/stats against the generated trace");
}

/// A CSV document as rows of cells (RFC 4180 quoting).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    cell.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => cell.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut cell)),
            '\n' => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            '\r' => {}
            _ => cell.push(c),
        }
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Export: the same events as the query, and a trace that comes back out as it went in.

/// Every event id `audit query` returns for `filters` up to the end of the trace, oldest first,
/// following the cursors the CLI prints.
async fn cli_query_all(srv: &Srv, filters: &[&str], until: &str) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args =
            vec!["audit", "query", "--until", until, "--order", "asc", "--limit", "1000", "--format", "json"];
        args.extend(filters);
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let out = srv.cli(&args).await;
        if out.code != 0 {
            return Err(format!("audit query: {out:?}"));
        }
        let v: Value = serde_json::from_str(&out.stdout).map_err(|e| format!("audit query --format json: {e}"))?;
        ids.extend(ids_of(v["events"].as_array().ok_or("no events")?));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(ids),
        }
    }
}

/// An NDJSON export line without its `"seq":N,` (positions differ between ledgers).
fn without_seq(line: &str) -> String {
    let Some(at) = line.find("\"seq\":") else { return line.to_owned() };
    let rest = &line[at + 6..];
    let value_len = rest.find(',').unwrap_or(rest.len());
    format!("{}{}", &line[..at], &rest[(value_len + 1).min(rest.len())..])
}

/// What ingest does not keep, on purpose, and the test expects accordingly: `seq` (positions
/// are the ledger's), `erased` (an ingested event carries its values; erasure happens in the
/// ledger), the query string of `path` (redacted like every recorded path), digits of `time`
/// below the microsecond and its offset (times are stored as UTC microseconds), and
/// `latency_ms` below the microsecond. Absent fields are filled in: an `id` (`ev_…`), `kind`
/// `access`, `source` `ingest`, and `decision` from the reason. Everything else comes back
/// unchanged, and an export ingested again exports to the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_carries_exactly_what_query_returns_and_the_trace_round_trips() {
    let (root, srv, trace) = trace_server().await;
    let mut f = Findings::default();
    // More than one export page (1000 events): 700 more after the trace.
    let bulk: Vec<Value> = (0..700)
        .map(|i| {
            json!({"id": format!("bulk-{i:04}"), "time": fixed(trace.t0_us - 7_200_000_000 + i * 1000),
                   "source": "bulk", "reason": "ok", "token_id": TOKENS[1].0, "source_ip": "10.1.3.9", "bytes_out": i})
        })
        .collect();
    srv.ingest_ok(&bulk).await;
    let end = trace.end();
    let bulk_ids: Vec<String> = (0..700).map(|i| format!("bulk-{i:04}")).collect();
    let everything: Vec<String> = trace.ids(|_| true).into_iter().chain(bulk_ids.iter().cloned()).collect();
    let filtered = ["--owner", "team-payments", "--decision", "deny", "--source-ip", "10.1.0.0/16"];
    let filtered_want = trace.ids(|e| {
        field(e, "owner") == Some("team-payments")
            && field(e, "decision") == Some("deny")
            && field(e, "source_ip").is_some_and(|ip| in_net(ip, "10.1.0.0/16"))
    });
    let mut full_export = String::new();
    for (filters, want) in [(&[][..], &everything), (&filtered[..], &filtered_want)] {
        let what = format!("audit export {}", filters.join(" "));
        let queried = cli_query_all(&srv, filters, &end).await.unwrap_or_else(|e| panic!("{e}"));
        f.same_ids(&format!("audit query {} against the oracle", filters.join(" ")), &queried, want);
        let mut args = vec!["audit", "export", "--until", &end];
        args.extend(filters);
        let out = srv.cli(&args).await;
        if out.code != 0 {
            f.fail(format!("{what}: {out:?}"));
            continue;
        }
        let lines: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).expect("an NDJSON line")).collect();
        f.same_ids(&format!("{what} (NDJSON) against audit query"), &ids_of(&lines), &queried);
        if filters.is_empty() {
            full_export = out.stdout.clone();
        }
        args.extend(["--format", "csv"]);
        let out = srv.cli(&args).await;
        let rows = parse_csv(&out.stdout);
        f.check(out.code == 0, || format!("{what} --format csv: {out:?}"));
        f.same(
            &format!("{what} --format csv header"),
            rows.first().cloned().unwrap_or_default(),
            ["seq", "TIME", "REASON", "TOKEN", "WHAT", "SOURCE IP", "KIND", "ID"].map(String::from).to_vec(),
        );
        let csv_ids: Vec<String> = rows.iter().skip(1).map(|r| r.last().cloned().unwrap_or_default()).collect();
        f.same_ids(&format!("{what} --format csv against audit query"), &csv_ids, &queried);
        for (row, e) in rows.iter().skip(1).zip(&lines) {
            let s = |k: &str| e[k].as_str().map(str::to_owned);
            let what_col = match (s("operation"), s("target")) {
                (Some(op), Some(t)) => format!("{op} {t}"),
                (Some(op), None) => op,
                _ => s("route").or_else(|| s("path")).unwrap_or_default(),
            };
            let want_row = vec![
                e["seq"].to_string(),
                s("time").unwrap_or_default(),
                s("reason").unwrap_or_default(),
                s("token_id").or_else(|| s("token_fingerprint")).unwrap_or_else(|| "-".into()),
                what_col,
                s("source_ip").unwrap_or_else(|| "-".into()),
                s("kind").unwrap_or_default(),
                s("id").unwrap_or_default(),
            ];
            if *row != want_row {
                f.fail(format!("{what} --format csv: row {row:?}, the NDJSON event says {want_row:?}"));
                break;
            }
        }
    }

    // Field by field: the trace comes out as it went in (times in microseconds, `seq` aside).
    let exported: Vec<Value> = full_export.lines().map(|l| serde_json::from_str(l).expect("NDJSON")).collect();
    for (i, (g, e)) in exported.iter().zip(&trace.expect).enumerate() {
        let gn = normalize(g);
        f.check(gn == *e, || {
            format!("exported line {} differs from input line {}: {}", i + 1, i + 1, field_diff(&gn, e))
        });
    }
    for (g, b) in exported.iter().skip(trace.expect.len()).zip(&bulk) {
        let mut want = b.as_object().expect("an object").clone();
        want.insert("kind".into(), json!("access"));
        want.insert("decision".into(), json!("allow"));
        let (gn, wn) = (normalize(g), normalize(&Value::Object(want)));
        if gn != wn {
            f.fail(format!("exported bulk event {}: {}", b["id"], field_diff(&gn, &wn)));
            break;
        }
    }

    // --out writes the same bytes as stdout.
    let out_file = root.path().join("export.ndjson");
    let out = srv.cli(&["audit", "export", "--until", &end, "--out", out_file.to_str().expect("UTF-8")]).await;
    f.check(out.code == 0 && out.stdout.is_empty(), || format!("audit export --out: {out:?}"));
    f.check(std::fs::read_to_string(&out_file).ok().as_deref() == Some(full_export.as_str()), || {
        "audit export --out FILE wrote other bytes than audit export to stdout".to_owned()
    });

    // Byte for byte: the export ingested into another ledger exports to the same lines (but for
    // the positions, which are each ledger's own).
    let other_root = tempfile::tempdir().expect("a temporary directory");
    let other = Srv::start(&other_root.path().join("data"), None, None).await;
    let out = other.cli(&["ingest", out_file.to_str().expect("UTF-8")]).await;
    f.same(
        "ingest of the export",
        out.stdout.as_str(),
        format!("ingested {} events (0 lines skipped)\n", everything.len()).as_str(),
    );
    let again = other.cli(&["audit", "export", "--until", &end]).await;
    let first: Vec<String> = full_export.lines().map(without_seq).collect();
    let second: Vec<String> = again.stdout.lines().map(without_seq).collect();
    f.same("lines exported after export -> ingest -> export", second.len(), first.len());
    if let Some(i) = first.iter().zip(&second).position(|(a, b)| a != b) {
        f.fail(format!(
            "export -> ingest -> export changed line {}:\n      before: {}\n      after:  {}",
            i + 1,
            first[i],
            second[i]
        ));
    }
    f.assert_none("audit export");
}

/// Issue 5 documents `tokentrail audit export [filters] --format ndjson|csv`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_takes_format_ndjson_as_documented() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let srv = Srv::start(&root.path().join("data"), None, None).await;
    let t = now_us() - 3_600_000_000;
    srv.ingest_ok(&[appended("nd-1", "nd", t), appended("nd-2", "nd", t + 1)]).await;
    let default = srv.cli(&["audit", "export", "--source", "nd"]).await;
    assert_eq!(default.code, 0, "{default:?}");
    let ndjson = srv.cli(&["audit", "export", "--source", "nd", "--format", "ndjson"]).await;
    assert_eq!(ndjson.code, 0, "audit export --format ndjson is refused: {ndjson:?}");
    assert_eq!(ndjson.stdout, default.stdout);
}

/// `GET /v1/audit/export`: every matching event oldest first, as the pages show them, ending at
/// the log's size when the export began (so its own recorded read is not in it); the filters of
/// `/v1/audit/events`, but no cursor, order or limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_endpoint_streams_a_consistent_cut_of_the_log() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let srv = Srv::start(&root.path().join("data"), None, None).await;
    let t = now_us() - 3_600_000_000;
    // More than one page of the store's (1000), so the export crosses pages.
    let lines: Vec<Value> = (0..2300).map(|i| appended(&format!("cut-{i}"), "cut", t + i)).collect();
    srv.ingest_ok(&lines).await;

    let events = |r: &RawResponse| -> Vec<Value> {
        String::from_utf8_lossy(&r.body)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("an export line is JSON: {e}: {l}")))
            .collect()
    };
    // Filtered: exactly what the pages of /v1/audit/events return, in the same JSON.
    let r = srv.get("/v1/audit/export?source=cut").await;
    assert_eq!(r.status.as_u16(), 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/x-ndjson"));
    let exported = events(&r);
    let paged =
        fetch_events(&srv, &[("source", "cut".to_owned())], "asc").await.expect("the pages of /v1/audit/events");
    assert_eq!(exported.len(), 2300);
    assert_eq!(exported, paged);

    // Unfiltered: everything up to the export's start. Each export records one read of the log
    // after taking its end, so the next export holds exactly one more event: that read.
    let first = events(&srv.get("/v1/audit/export").await);
    let second = events(&srv.get("/v1/audit/export").await);
    assert_eq!(second.len(), first.len() + 1);
    assert_eq!(second[..first.len()], first[..]);
    let read = &second[first.len()];
    assert_eq!(
        (read["route"].as_str(), read["source"].as_str()),
        (Some("GET /v1/audit/export"), Some("admin")),
        "{read}"
    );
    let seqs: Vec<u64> = second.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (0..second.len() as u64).collect::<Vec<_>>(), "every position, in order");

    // What it does not take, and bad filters: problems naming each field.
    let r = srv.get("/v1/audit/export?limit=10&cursor=abc&order=desc&since=yesterday").await;
    assert_eq!(r.status.as_u16(), 400);
    let body = json_body(&r);
    let mut fields: Vec<&str> =
        body["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["cursor", "limit", "order", "since"], "{body}");
    let anon = Client::new(&srv.addr, None).expect("a client");
    let r = anon.send(Method::GET, "/v1/audit/export", None, None).await.expect("an answer");
    assert_eq!(r.status.as_u16(), 401);
    // The CLI writes nothing, not even CSV's header, for an export the server refused; a match
    // of nothing is the header alone.
    let refused = srv.cli(&["audit", "export", "--format", "csv", "--since", "yesterday"]).await;
    assert_eq!((refused.code, refused.stdout.as_str()), (1, ""), "{refused:?}");
    let none = srv.cli(&["audit", "export", "--format", "csv", "--source", "no-such-source"]).await;
    assert_eq!((none.code, none.stdout.lines().count()), (0, 1), "{none:?}");
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Offline ingest into a stopped data directory gives the same ledger contents.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_ingest_into_a_stopped_data_directory_matches_the_online_ingest() {
    let (root, online, trace) = trace_server().await;
    let mut f = Findings::default();
    let file = root.path().join("trace.ndjson");
    let file = file.to_str().expect("UTF-8");
    let other_root = tempfile::tempdir().expect("a temporary directory");
    let dir = other_root.path().join("data");
    let dir_s = dir.to_str().expect("UTF-8");

    // While a server holds the directory, the offline ingest refuses and writes nothing.
    let srv = Srv::start(&dir, None, None).await;
    let before = srv.event_count();
    let out = run_cli(&[], &["ingest", "--data-dir", dir_s, file]).await;
    cli_error(&mut f, "ingest --data-dir on a running server's directory", &out, 1);
    f.same("events after the refused offline ingest", srv.event_count(), before);
    srv.stop().await;

    let out = run_cli(&[], &["ingest", "--data-dir", dir_s, file]).await;
    f.same(
        "offline ingest",
        (out.code, out.stdout.as_str()),
        (0, format!("ingested {TRACE_EVENTS} events (0 lines skipped)\n").as_str()),
    );
    let verified = run_cli(&[], &["audit", "verify", "--data-dir", dir_s]).await;
    f.check(verified.code == 0, || format!("the ledger verifies after an offline ingest: {verified:?}"));

    let srv = Srv::start(&dir, None, None).await;
    let got = fetch_events(&srv, &[("until", trace.end())], "asc").await.expect("the trace");
    f.same("events of the offline ingest", got.len(), trace.expect.len());
    for (i, (g, e)) in got.iter().zip(&trace.expect).enumerate() {
        let (mut gn, mut en) = (normalize(g), e.clone());
        if trace.lines[i].get("id").is_none() {
            // Assigned ids differ between ledgers.
            f.check(field(&gn, "id").is_some_and(|id| id.starts_with("ev_")), || {
                format!("line {}: assigned id {:?}", i + 1, gn["id"])
            });
            gn.remove("id");
            en.remove("id");
        }
        f.check(gn == en, || format!("line {} (offline) differs: {}", i + 1, field_diff(&gn, &en)));
    }
    for by in ["token", "network", "day"] {
        let q = format!("/v1/audit/stats?group_by={by}&until={}", cli::client::encode(&trace.end()));
        f.same(&format!("stats by {by}, offline against online"), srv.get_ok(&q).await, online.get_ok(&q).await);
    }
    f.assert_none("offline ingest");
}

// ---------------------------------------------------------------------------------------------
// Explain every reason code, produced for real through /v1/verify.

const POLICY: &str = r#"
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
sensitivity = ["financial"]
"#;

/// `POST /v1/verify` as `caller` (a token holding `tokentrail:verify`); returns the answer.
async fn verify(srv: &Srv, caller: &str, body: Value) -> Value {
    let r = send_json(&srv.client_with(caller), Method::POST, "/v1/verify", &body).await;
    assert_eq!(r.status.as_u16(), 200, "verify {body}: {}", String::from_utf8_lossy(&r.body));
    json_body(&r)
}

/// The explanation of an event over HTTP; `tokentrail audit explain ID --format json` must say
/// the same, and its table must carry the summary and the fix.
async fn explain(f: &mut Findings, srv: &Srv, what: &str, id: &str) -> Value {
    let x = srv.get_ok(&format!("/v1/audit/events/{}/explain", cli::client::encode(id))).await;
    let out = srv.cli(&["audit", "explain", id, "--format", "json"]).await;
    match serde_json::from_str::<Value>(&out.stdout) {
        Ok(v) if out.code == 0 => f.same(&format!("{what}: audit explain --format json equals the API"), &v, &x),
        _ => f.fail(format!("{what}: audit explain {id} --format json: {out:?}")),
    }
    let table = srv.cli(&["audit", "explain", id]).await;
    let flat = collapse(&table.stdout);
    for key in ["summary", "fix"] {
        if let Some(s) = x[key].as_str() {
            f.check(table.code == 0 && flat.contains(&collapse(s)), || {
                format!("{what}: the table of audit explain lacks the {key} {s:?}:\n{}", table.stdout)
            });
        }
    }
    x
}

/// Checks an explanation: reason and decision, words of the summary and of the fix (none when
/// `fix` is empty), and constraint values.
fn check_explanation(
    f: &mut Findings,
    what: &str,
    x: &Value,
    reason: &str,
    summary: &[&str],
    fix: &[&str],
    constraint: &[(&str, &str)],
) {
    let decision = if reason == "ok" { "allow" } else { "deny" };
    f.same(&format!("{what}: reason"), x["reason"].as_str(), Some(reason));
    f.same(&format!("{what}: event reason"), x["event"]["reason"].as_str(), Some(reason));
    f.same(&format!("{what}: decision"), x["decision"].as_str(), Some(decision));
    let s = x["summary"].as_str().unwrap_or_default();
    if reason != "ok" {
        f.check(s.starts_with(&format!("denied ({reason})")), || {
            format!("{what}: the summary names the reason: {s:?}")
        });
    }
    for w in summary {
        f.check(s.contains(w), || format!("{what}: the summary {s:?} lacks {w:?}"));
    }
    match x["fix"].as_str() {
        Some(fx) => {
            f.check(!fix.is_empty(), || format!("{what}: a fix where none applies: {fx:?}"));
            for w in fix {
                f.check(fx.contains(w), || format!("{what}: the fix {fx:?} lacks {w:?}"));
            }
        }
        None => f.check(fix.is_empty(), || format!("{what}: no fix: {x}")),
    }
    for (k, v) in constraint {
        f.same(&format!("{what}: constraint {k}"), x["constraint"][*k].as_str(), Some(*v));
    }
}

/// The `tokentrail token update …` command a fix suggests, as CLI arguments.
fn fix_command(fix: &str) -> Option<Vec<String>> {
    let at = fix.find("tokentrail token update")?;
    let rest = &fix[at + "tokentrail ".len()..];
    let end = rest.find(')').unwrap_or(rest.len());
    Some(rest[..end].split_whitespace().map(str::to_owned).collect())
}

/// Applies the fix an explanation suggests with the CLI, then checks that the same request is
/// allowed.
async fn apply_fix(f: &mut Findings, srv: &Srv, what: &str, x: &Value, caller: &str, request: Value) {
    let Some(args) = x["fix"].as_str().and_then(fix_command) else {
        return f.fail(format!("{what}: the fix names no command: {}", x["fix"]));
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = srv.cli(&args).await;
    f.check(out.code == 0, || format!("{what}: the suggested `tokentrail {}` fails: {out:?}", args.join(" ")));
    let again = verify(srv, caller, request).await;
    f.same(&format!("{what}: the request after applying the fix"), again["reason"].as_str(), Some("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_reason_the_values_and_a_fix_that_works_for_every_reason_code() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let policy = root.path().join("policy.toml");
    std::fs::write(&policy, POLICY).expect("write the policy");
    let srv = Srv::start(&root.path().join("data"), Some(&policy), None).await;
    let admin = srv.admin_id();
    let mut f = Findings::default();
    let (caller, _) =
        srv.create_token(json!({"name": "checker", "owner": "svc-checker", "scopes": ["tokentrail:verify"]})).await;
    let c = caller.as_str();
    let token = |name: &str, extra: Value| {
        let mut body = json!({"name": name, "owner": "team-payments", "scopes": ["orders:read"]});
        body.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
        body
    };
    let (reader, rd) = srv.create_token(token("reader", json!({}))).await;
    let rid = rd["id"].as_str().expect("an id").to_owned();
    let mut seen_reasons = BTreeSet::new();

    // ok
    let get42 = json!({"token": reader, "method": "GET", "path": "/v1/orders/42", "source_ip": "10.1.2.3"});
    let v = verify(&srv, c, get42).await;
    let x = explain(&mut f, &srv, "ok", v["event_id"].as_str().expect("an event id")).await;
    check_explanation(&mut f, "ok", &x, "ok", &["allowed", "orders:read"], &[], &[]);
    f.same("ok: required_scope", x["required_scope"].as_str(), Some("orders:read"));
    f.same("ok: granted_scopes", &x["granted_scopes"], &json!(["orders:read"]));
    f.check(x["fingerprint"].is_null(), || format!("ok: a fingerprint: {x}"));
    seen_reasons.insert(x["reason"].as_str().unwrap_or_default().to_owned());

    // missing_token: nothing was presented, so there is no fingerprint.
    let v = verify(&srv, c, json!({"token": "", "scope": "orders:read"})).await;
    let x = explain(&mut f, &srv, "missing_token", v["event_id"].as_str().expect("an event id")).await;
    check_explanation(&mut f, "missing_token", &x, "missing_token", &["no token"], &["Authorization: Bearer"], &[]);
    f.check(x["fingerprint"].is_null(), || format!("missing_token: a fingerprint: {x}"));
    seen_reasons.insert(x["reason"].as_str().unwrap_or_default().to_owned());

    // malformed_token and bad_checksum: fingerprinted, with where they came from.
    let mut typo = reader.clone();
    let last = typo.pop().expect("a character");
    typo.push(if last == 'A' { 'B' } else { 'A' });
    for (reason, presented, ip, words) in [
        ("malformed_token", "not-a-token", "198.51.100.1", ["not shaped like a tokentrail token"]),
        ("bad_checksum", typo.as_str(), "198.51.100.2", ["checksum"]),
    ] {
        let v = verify(&srv, c, json!({"token": presented, "scope": "orders:read", "source_ip": ip})).await;
        let x = explain(&mut f, &srv, reason, v["event_id"].as_str().expect("an event id")).await;
        check_explanation(&mut f, reason, &x, reason, &words, &["token"], &[]);
        f.same(&format!("{reason}: fingerprint count"), x["fingerprint"]["count"].as_u64(), Some(1));
        f.same(&format!("{reason}: fingerprint addresses"), &x["fingerprint"]["addresses"], &json!([[ip, 1]]));
        seen_reasons.insert(x["reason"].as_str().unwrap_or_default().to_owned());
    }

    // unknown_token: a rotated-away secret, presented three times from two addresses.
    let (old, od) = srv.create_token(token("rotated", json!({}))).await;
    let oid = od["id"].as_str().expect("an id").to_owned();
    let r = send_json(&srv.client, Method::POST, &format!("/v1/tokens/{oid}/rotate"), &json!({})).await;
    assert_eq!(r.status.as_u16(), 200, "rotate: {}", String::from_utf8_lossy(&r.body));
    let mut guesses = Vec::new();
    for ip in ["203.0.113.5", "2001:db8::7", "203.0.113.5"] {
        let v = verify(&srv, c, json!({"token": old, "scope": "orders:read", "source_ip": ip})).await;
        f.same("the old secret after rotation", v["reason"].as_str(), Some("unknown_token"));
        guesses.push(v["event_id"].as_str().expect("an event id").to_owned());
    }
    let x = explain(&mut f, &srv, "unknown_token", &guesses[2]).await;
    check_explanation(
        &mut f,
        "unknown_token",
        &x,
        "unknown_token",
        &["no token with this id and secret"],
        &["rotated"],
        &[],
    );
    let fp = &x["fingerprint"];
    f.same("unknown_token: presentations of the fingerprint", fp["count"].as_u64(), Some(3));
    f.same("unknown_token: where from", &fp["addresses"], &json!([["203.0.113.5", 2], ["2001:db8::7", 1]]));
    let first = srv.get_ok(&format!("/v1/audit/events/{}", guesses[0])).await;
    f.same("unknown_token: first_seen", &fp["first_seen"], &first["time"]);
    f.same("unknown_token: last_seen", &fp["last_seen"], &x["event"]["time"]);
    f.check(x["event"]["token_id"].is_null() && x["event"]["token_fingerprint"] == fp["fingerprint"], || {
        format!("unknown_token: the event carries the fingerprint, not the token id: {}", x["event"])
    });
    seen_reasons.insert(x["reason"].as_str().unwrap_or_default().to_owned());

    // revoked: by whom, when, why.
    let (doomed, dd) = srv.create_token(token("doomed", json!({}))).await;
    let did = dd["id"].as_str().expect("an id").to_owned();
    let r = send_json(
        &srv.client,
        Method::POST,
        &format!("/v1/tokens/{did}/revoke"),
        &json!({"reason": "leaked in a CI log"}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "revoke: {}", String::from_utf8_lossy(&r.body));
    let revoked_at = json_body(&r)["revoked_at"].as_str().expect("revoked_at").to_owned();
    let v = verify(&srv, c, json!({"token": doomed, "scope": "orders:read"})).await;
    let x = explain(&mut f, &srv, "revoked", v["event_id"].as_str().expect("an event id")).await;
    check_explanation(
        &mut f,
        "revoked",
        &x,
        "revoked",
        &[&revoked_at, &admin, "leaked in a CI log"],
        &["issue a new token"],
        &[("revoked_by", &admin), ("revoke_reason", "leaked in a CI log"), ("revoked_at", &revoked_at)],
    );
    f.check(x["constraint"]["revoked_ago"].is_string(), || format!("revoked: no revoked_ago: {x}"));
    seen_reasons.insert(x["reason"].as_str().unwrap_or_default().to_owned());

    // expired: when, how long before, and a fix that extends it.
    let (short, sd) = srv.create_token(token("short-lived", json!({"expires_in": "1s"}))).await;
    let sid = sd["id"].as_str().expect("an id").to_owned();
    let expires_at = sd["expires_at"].as_str().expect("expires_at").to_owned();
    let started = Instant::now();
    let expired = loop {
        let v = verify(&srv, c, json!({"token": short, "scope": "orders:read"})).await;
        if v["reason"] == "expired" {
            break v;
        }
        assert!(started.elapsed() < DEADLINE, "the 1s token never expired: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let x = explain(&mut f, &srv, "expired", expired["event_id"].as_str().expect("an event id")).await;
    let update = format!("tokentrail token update {sid} --expires-in");
    check_explanation(
        &mut f,
        "expired",
        &x,
        "expired",
        &[&expires_at, "before the request"],
        &[&update],
        &[("expires_at", &expires_at)],
    );
    f.check(x["constraint"]["expired_ago"].is_string(), || format!("expired: no expired_ago: {x}"));
    apply_fix(&mut f, &srv, "expired", &x, c, json!({"token": short, "scope": "orders:read"})).await;
    seen_reasons.insert(x["reason"].as_str().unwrap_or_default().to_owned());

    // not_yet_valid
    let not_before = fixed(now_us() + 3_600_000_000);
    let (future, fd) = srv.create_token(token("future", json!({"not_before": not_before}))).await;
    let nb = fd["not_before"].as_str().expect("not_before").to_owned();
    let v = verify(&srv, c, json!({"token": future, "scope": "orders:read"})).await;
    let x = explain(&mut f, &srv, "not_yet_valid", v["event_id"].as_str().expect("an event id")).await;
    check_explanation(
        &mut f,
        "not_yet_valid",
        &x,
        "not_yet_valid",
        &[&nb],
        &["--clear-not-before"],
        &[("not_before", &nb)],
    );
    apply_fix(&mut f, &srv, "not_yet_valid", &x, c, json!({"token": future, "scope": "orders:read"})).await;
    seen_reasons.insert(x["reason"].as_str().unwrap_or_default().to_owned());

    // insufficient_scope: through the route policy; the fix grants exactly the missing scope.
    let post = json!({"token": reader, "method": "POST", "path": "/v1/orders", "source_ip": "10.1.2.3"});
    let v = verify(&srv, c, post.clone()).await;
    let x = explain(&mut f, &srv, "insufficient_scope", v["event_id"].as_str().expect("an event id")).await;
    let has = format!("token {rid} has [orders:read]");
    check_explanation(
        &mut f,
        "insufficient_scope",
        &x,
        "insufficient_scope",
        &["POST /v1/orders needs orders:write", &has],
        &["grant orders:write", &format!("tokentrail token update {rid}")],
        &[],
    );
    f.same("insufficient_scope: required_scope", x["required_scope"].as_str(), Some("orders:write"));
    f.same("insufficient_scope: granted_scopes", &x["granted_scopes"], &json!(["orders:read"]));
    f.same("insufficient_scope: sensitivity of the route", &x["event"]["sensitivity"], &json!(["financial"]));
    apply_fix(&mut f, &srv, "insufficient_scope", &x, c, post).await;
    seen_reasons.insert(x["reason"].as_str().unwrap_or_default().to_owned());

    // ip_not_allowed: the allowed networks, the caller's address, and a fix that adds it.
    let (fenced, fcd) = srv.create_token(token("fenced", json!({"allowed_cidrs": ["10.0.0.0/8"]}))).await;
    let fid = fcd["id"].as_str().expect("an id").to_owned();
    let from_outside = json!({"token": fenced, "method": "GET", "path": "/v1/orders/1", "source_ip": "192.0.2.7"});
    let v = verify(&srv, c, from_outside.clone()).await;
    let x = explain(&mut f, &srv, "ip_not_allowed", v["event_id"].as_str().expect("an event id")).await;
    check_explanation(
        &mut f,
        "ip_not_allowed",
        &x,
        "ip_not_allowed",
        &["192.0.2.7", "[10.0.0.0/8]", &fid],
        &["--allow-cidr 10.0.0.0/8", "--allow-cidr 192.0.2.7"],
        &[("allowed_cidrs", "10.0.0.0/8")],
    );
    apply_fix(&mut f, &srv, "ip_not_allowed", &x, c, from_outside).await;
    let inside =
        verify(&srv, c, json!({"token": fenced, "method": "GET", "path": "/v1/orders/1", "source_ip": "10.1.1.1"}))
            .await;
    f.same("ip_not_allowed: the networks allowed before stay allowed", inside["reason"].as_str(), Some("ok"));
    seen_reasons.insert(x["reason"].as_str().unwrap_or_default().to_owned());

    // rate_limited: the token's own limit.
    let (limited, _) = srv.create_token(token("limited", json!({"rate_limit": "1/min"}))).await;
    let first = verify(&srv, c, json!({"token": limited, "scope": "orders:read"})).await;
    f.same("the first request within the limit", first["reason"].as_str(), Some("ok"));
    let v = verify(&srv, c, json!({"token": limited, "scope": "orders:read"})).await;
    let x = explain(&mut f, &srv, "rate_limited", v["event_id"].as_str().expect("an event id")).await;
    check_explanation(
        &mut f,
        "rate_limited",
        &x,
        "rate_limited",
        &["1/min"],
        &["--rate-limit"],
        &[("rate_limit", "1/min")],
    );
    let retry = x["constraint"]["retry_after_s"].as_str().and_then(|s| s.parse::<u64>().ok());
    f.check(retry.is_some_and(|s| (1..=60).contains(&s)), || format!("rate_limited: retry_after_s {retry:?}"));
    seen_reasons.insert(x["reason"].as_str().unwrap_or_default().to_owned());

    // route_not_found
    let v = verify(&srv, c, json!({"token": reader, "method": "GET", "path": "/v1/nowhere/7"})).await;
    let x = explain(&mut f, &srv, "route_not_found", v["event_id"].as_str().expect("an event id")).await;
    check_explanation(&mut f, "route_not_found", &x, "route_not_found", &["GET /v1/nowhere/7"], &["[[route]]"], &[]);
    seen_reasons.insert(x["reason"].as_str().unwrap_or_default().to_owned());
    f.same("reason codes explained here (audit_unavailable has its own test)", seen_reasons.len(), REASONS.len() - 1);

    // An admin event: what was done, by which token.
    let created = srv.get_ok(&format!("/v1/audit/events?kind=admin&target={rid}&order=asc&limit=1")).await;
    let cid = created["events"][0]["id"].as_str().expect("the token.create event").to_owned();
    let x = explain(&mut f, &srv, "token.create", &cid).await;
    let s = x["summary"].as_str().unwrap_or_default();
    f.check(s.contains("token.create") && s.contains(&admin) && x["fix"].is_null(), || format!("token.create: {x}"));

    // Events ingested from elsewhere are explained from what they carry.
    let out = srv.cli(&["ingest", &data_file("explain-ingested.ndjson")]).await;
    f.same("ingest explain-ingested.ndjson", out.code, 0);
    let x = explain(&mut f, &srv, "ingested insufficient_scope", "ext-scope").await;
    check_explanation(
        &mut f,
        "ingested insufficient_scope",
        &x,
        "insufficient_scope",
        &["DELETE /v1/orders/{id} needs orders:admin", "token ExtTok0000000001 has [orders:read, orders:write]"],
        &[
            "grant orders:admin: tokentrail token update ExtTok0000000001 --scope orders:read --scope orders:write --scope orders:admin",
        ],
        &[],
    );
    let x = explain(&mut f, &srv, "ingested ip_not_allowed", "ext-ip").await;
    check_explanation(
        &mut f,
        "ingested ip_not_allowed",
        &x,
        "ip_not_allowed",
        &["203.0.113.50", "10.0.0.0/8,192.168.0.0/16"],
        &["--allow-cidr 10.0.0.0/8 --allow-cidr 192.168.0.0/16 --allow-cidr 203.0.113.50"],
        &[("allowed_cidrs", "10.0.0.0/8,192.168.0.0/16")],
    );
    let x = explain(&mut f, &srv, "ingested revoked", "ext-revoked").await;
    check_explanation(
        &mut f,
        "ingested revoked",
        &x,
        "revoked",
        &["revoked at 2026-10-01T12:00:00Z by alice (left the company)"],
        &["issue a new token"],
        &[("revoked_by", "alice"), ("revoked_ago", "2d 0h")],
    );
    let x = explain(&mut f, &srv, "ingested expired", "ext-expired").await;
    check_explanation(
        &mut f,
        "ingested expired",
        &x,
        "expired",
        &["expired at 2026-10-01T12:00:00Z, 2d 0h before the request"],
        &["tokentrail token update ExtTok0000000004 --expires-in 30d"],
        &[("expired_ago", "2d 0h")],
    );
    let x = explain(&mut f, &srv, "ingested unknown_token", "ext-guess-2").await;
    f.same("ingested unknown_token: fingerprint count", x["fingerprint"]["count"].as_u64(), Some(2));
    f.same(
        "ingested unknown_token: addresses",
        &x["fingerprint"]["addresses"],
        &json!([["198.51.100.20", 1], ["203.0.113.50", 1]]),
    );
    f.same(
        "ingested unknown_token: first_seen",
        x["fingerprint"]["first_seen"].as_str(),
        Some("2026-10-03T12:00:03.000000Z"),
    );

    // An event that does not exist.
    let r = srv.get("/v1/audit/events/ev_doesnotexist/explain").await;
    f.same("explain of a missing event: status", r.status.as_u16(), 404);
    let out = srv.cli(&["audit", "explain", "ev_doesnotexist"]).await;
    cli_error(&mut f, "audit explain ev_doesnotexist", &out, 1);
    f.assert_none("explanations");
}

/// `audit_unavailable` for real: store writes fail while a file exists, so the ledger cannot
/// record; the decision is spooled, replayed once writes work again, and then explained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_audit_unavailable_after_a_real_ledger_failure() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let fail = root.path().join("fail-writes");
    let srv = Srv::start(&root.path().join("data"), None, Some(fail.clone())).await;
    let (caller, _) =
        srv.create_token(json!({"name": "checker", "owner": "svc", "scopes": ["tokentrail:verify"]})).await;
    let (tok, _) = srv.create_token(json!({"name": "app", "owner": "team-app", "scopes": ["orders:read"]})).await;
    let request = json!({"token": tok, "scope": "orders:read", "source_ip": "10.4.0.1"});
    std::fs::write(&fail, "").expect("create the failure switch");
    // The first request finds the ledger failing (its event is spooled); from then on requests
    // are refused until the spool has been replayed.
    let started = Instant::now();
    let refused = loop {
        let v = verify(&srv, &caller, request.clone()).await;
        if v["reason"] == "audit_unavailable" {
            break v;
        }
        assert!(started.elapsed() < DEADLINE, "never audit_unavailable: {v}");
    };
    std::fs::remove_file(&fail).expect("remove the failure switch");
    let id = refused["event_id"].as_str().expect("an event id").to_owned();
    let started = Instant::now();
    while srv.get(&format!("/v1/audit/events/{id}")).await.status.as_u16() != 200 {
        assert!(started.elapsed() < DEADLINE, "the spool was never replayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut f = Findings::default();
    let x = explain(&mut f, &srv, "audit_unavailable", &id).await;
    check_explanation(&mut f, "audit_unavailable", &x, "audit_unavailable", &["could not record"], &["disk"], &[]);
    f.same("audit_unavailable: the request's address", x["event"]["source_ip"].as_str(), Some("10.4.0.1"));
    f.assert_none("the audit_unavailable explanation");
}

// ---------------------------------------------------------------------------------------------
// A token's timeline.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_activity_shows_lifecycle_daily_counts_routes_networks_denials_and_last_use() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let srv = Srv::start(&root.path().join("data"), None, None).await;
    let admin = srv.admin_id();
    let mut f = Findings::default();
    let (caller, _) =
        srv.create_token(json!({"name": "checker", "owner": "svc", "scopes": ["tokentrail:verify"]})).await;
    let c = caller.as_str();

    // The lifecycle, through the CLI: create, update, use, rotate, use, revoke, attempt.
    let out = srv
        .cli(&[
            "token",
            "create",
            "--name",
            "timeline",
            "--owner",
            "team-timeline",
            "--scope",
            "orders:read",
            "--format",
            "json",
        ])
        .await;
    let issued: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("token create ({e}): {out:?}"));
    let tok = issued["token"].as_str().expect("a token").to_owned();
    let id = issued["id"].as_str().expect("an id").to_owned();
    let out = srv.cli(&["token", "update", &id, "--scope", "orders:read", "--scope", "reports:read"]).await;
    assert_eq!(out.code, 0, "token update: {out:?}");
    for (scope, ip) in [
        ("orders:read", "10.1.2.3"),
        ("orders:read", "10.1.2.3"),
        ("orders:read", "2001:db8:5::1"),
        ("reports:read", "10.1.2.3"),
    ] {
        let v = verify(&srv, c, json!({"token": tok, "scope": scope, "source_ip": ip})).await;
        assert_eq!(v["reason"], "ok", "{v}");
    }
    for _ in 0..2 {
        let v = verify(&srv, c, json!({"token": tok, "scope": "orders:write", "source_ip": "10.1.2.3"})).await;
        assert_eq!(v["reason"], "insufficient_scope", "{v}");
    }
    let out = srv.cli(&["token", "rotate", &id, "--format", "json"]).await;
    let rotated: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("token rotate ({e}): {out:?}"));
    let tok = rotated["token"].as_str().expect("a token").to_owned();
    let v = verify(&srv, c, json!({"token": tok, "scope": "orders:read", "source_ip": "10.1.2.3"})).await;
    assert_eq!(v["reason"], "ok", "{v}");
    let out = srv.cli(&["token", "revoke", &id, "--reason", "the timeline is over"]).await;
    assert_eq!(out.code, 0, "token revoke: {out:?}");
    let v = verify(&srv, c, json!({"token": tok, "scope": "orders:read", "source_ip": "10.1.2.3"})).await;
    assert_eq!(v["reason"], "revoked", "{v}");
    let newest_denial = v["event_id"].as_str().expect("an event id").to_owned();

    // History from another system, ingested afterwards: older than everything above.
    let now = now_us();
    srv.ingest_ok(&[
        json!({"id": "tl-hist-1", "time": fixed(now - 2 * 86_400_000_000), "source": "cloud-gw", "token_id": id,
               "owner": "team-timeline", "source_ip": "192.0.2.9", "method": "GET", "path": "/v1/orders/1",
               "route": "GET /v1/orders/{id}", "resource": "orders", "action": "read", "reason": "ok", "bytes_out": 100}),
        json!({"id": "tl-hist-2", "time": fixed(now - 86_400_000_000), "source": "cloud-gw", "token_id": id,
               "owner": "team-timeline", "source_ip": "192.0.2.9", "method": "POST", "path": "/v1/orders",
               "route": "POST /v1/orders", "resource": "orders", "action": "write", "reason": "insufficient_scope"}),
    ])
    .await;

    // last_used_at is written in batches: wait for it.
    let started = Instant::now();
    let a = loop {
        let a = srv.get_ok(&format!("/v1/tokens/{id}/activity")).await;
        if a["last_used_at"].is_string() {
            break a;
        }
        assert!(started.elapsed() < DEADLINE, "last_used_at was never written: {a}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The oracle: the token's access events, read back.
    let events =
        fetch_events(&srv, &[("token_id", id.clone()), ("kind", "access".into())], "asc").await.expect("events");
    let evs: Vec<Ev> = events.iter().map(normalize).collect();
    f.same("the token's access events", evs.len(), 10);
    let allowed = evs.iter().filter(|e| field(e, "decision") == Some("allow")).count();
    f.same("allowed", allowed, 6);
    let groups = |by: &str| -> Vec<(String, [u64; 5])> {
        let mut g: Vec<(String, [u64; 5])> = stat_oracle(evs.iter(), by).into_iter().collect();
        if by != "day" {
            g.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then(a.0.cmp(&b.0)));
        }
        g
    };
    let got = |k: &str| -> Vec<(String, [u64; 5])> { stat_rows(&json!({"groups": a[k].clone()})) };
    f.same("daily", got("daily"), groups("day"));
    f.check(got("daily").len() >= 3, || format!("the events span three days: {:?}", got("daily")));
    let sorted = |mut v: Vec<(String, [u64; 5])>| {
        v.sort();
        v
    };
    f.same("routes", sorted(got("routes")), sorted(groups("route")));
    f.same("resources", sorted(got("resources")), sorted(groups("resource")));
    f.same("networks", sorted(got("networks")), sorted(groups("network")));
    let nets: BTreeSet<String> = got("networks").into_iter().map(|(k, _)| k).collect();
    f.same("networks seen", nets, ["10.1.2.0/24", "192.0.2.0/24", "2001:db8:5::/48"].map(String::from).into());

    // Lifecycle: created, updated, rotated, revoked, each by the admin token, in order.
    let lifecycle = a["lifecycle"].as_array().cloned().unwrap_or_default();
    let ops: Vec<&str> = lifecycle.iter().filter_map(|e| e["operation"].as_str()).collect();
    f.same("lifecycle operations", ops, vec!["token.create", "token.update", "token.rotate", "token.revoke"]);
    f.check(lifecycle.iter().all(|e| e["token_id"] == admin.as_str() && e["target"] == id.as_str()), || {
        format!("every lifecycle event names who (the admin token {admin}) and the token: {lifecycle:?}")
    });
    f.same(
        "the revocation's reason",
        lifecycle.last().and_then(|e| e["details"]["revoke_reason"].as_str()),
        Some("the timeline is over"),
    );

    // Recent denials, newest first, and the last time the token was seen: by event time.
    let mut denials: Vec<&Ev> = evs.iter().filter(|e| field(e, "decision") == Some("deny")).collect();
    denials.sort_by_key(|e| std::cmp::Reverse(time_of(e)));
    let want: Vec<String> = denials.iter().map(|e| id_of(e)).collect();
    f.same_ids("recent denials, newest first", &ids_of(a["recent_denials"].as_array().expect("denials")), &want);
    f.same("the newest denial is the attempt after revocation", want.first(), Some(&newest_denial));
    let last = evs.iter().map(time_of).max().map(fixed);
    f.same("last_seen is the newest event's time", a["last_seen"].as_str().map(str::to_owned), last);
    f.check(a["token"]["state"] == "revoked" && a["token"]["revoked_by"] == admin.as_str(), || {
        format!("the token as it is now: {}", a["token"])
    });

    // A narrower window, and the CLI's JSON.
    let narrow = srv.get_ok(&format!("/v1/tokens/{id}/activity?since=36h")).await;
    let days: Vec<String> =
        stat_rows(&json!({"groups": narrow["daily"].clone()})).into_iter().map(|(k, _)| k).collect();
    let recent = stat_oracle(evs.iter().filter(|e| time_of(e) > now - 36 * 3_600_000_000), "day");
    f.same("since=36h leaves out the two-day-old event", days, recent.into_keys().collect::<Vec<_>>());
    let out = srv.cli(&["token", "activity", &id, "--format", "json"]).await;
    let again = srv.get_ok(&format!("/v1/tokens/{id}/activity")).await;
    match serde_json::from_str::<Value>(&out.stdout) {
        Ok(v) if out.code == 0 => f.same("token activity --format json equals the API", v, again),
        _ => f.fail(format!("token activity --format json: {out:?}")),
    }
    let table = srv.cli(&["token", "activity", &id]).await;
    f.check(table.code == 0 && table.stdout.contains("token.revoke") && table.stdout.contains("10.1.2.0/24"), || {
        format!("token activity (table): {table:?}")
    });
    let r = srv.get("/v1/tokens/NoSuchToken00000/activity").await;
    f.same("activity of a token that does not exist", r.status.as_u16(), 404);
    let r = srv.get(&format!("/v1/tokens/{id}/activity?since=banana")).await;
    f.check(r.status.as_u16() == 400 && String::from_utf8_lossy(&r.body).contains("\"field\":\"since\""), || {
        format!("activity?since=banana: {} {}", r.status, String::from_utf8_lossy(&r.body))
    });
    f.assert_none("token activity");
}

// ---------------------------------------------------------------------------------------------
// The live tail.

/// A Server-Sent Events stream read with a plain HTTP client.
struct Sse {
    body: hyper::body::Incoming,
    buf: String,
}

impl Sse {
    async fn connect(srv: &Srv, path: &str, last_event_id: Option<&str>) -> Sse {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<hyper::body::Bytes>>();
        let mut req = hyper::Request::get(format!("{}{path}", srv.addr))
            .header("authorization", format!("Bearer {}", srv.admin_token))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let req = req.body(http_body_util::Full::new(hyper::body::Bytes::new())).expect("a request");
        let resp = tokio::time::timeout(DEADLINE, client.request(req))
            .await
            .unwrap_or_else(|_| panic!("GET {path}: no answer"))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "GET {path}");
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(ct.starts_with("text/event-stream"), "GET {path}: content type {ct:?}");
        Sse { body: resp.into_body(), buf: String::new() }
    }

    /// The next `audit` event: its `id:` field and its data; `None` if none comes in time.
    async fn next(&mut self, within: Duration) -> Option<(String, Value)> {
        let until = Instant::now() + within;
        loop {
            while let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let (mut event, mut id, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.as_deref() == Some("audit") {
                    let v =
                        serde_json::from_str(&data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
                    return Some((id.unwrap_or_default(), v));
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.body.frame()).await {
                Err(_) | Ok(None) => return None,
                Ok(Some(Err(e))) => panic!("the stream failed: {e}"),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&data));
                    }
                }
            }
        }
    }

    /// The next `n` events' ids (fails the test if they do not come).
    async fn take(&mut self, n: usize) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        while out.len() < n {
            let e = self.next(DEADLINE).await;
            out.push(e.unwrap_or_else(|| panic!("only {} of {n} events arrived: {out:?}", out.len())));
        }
        out
    }
}

/// A child process killed when dropped (a failed test must not leave it behind).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_streams_matching_events_resumes_and_follows() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let srv = Srv::start(&root.path().join("data"), None, None).await;
    let t = now_us() - 3_600_000_000;
    let mut seed: Vec<Value> = (0..7).map(|i| appended(&format!("tail-a-{i}"), "tail-a", t + i)).collect();
    seed.push(appended("tail-b-0", "tail-b", t));
    srv.ingest_ok(&seed).await;

    // tail -n 5: the last five matching events, oldest first.
    let out = srv.cli(&["audit", "tail", "-n", "5", "--source", "tail-a", "--format", "json"]).await;
    assert_eq!(out.code, 0, "audit tail -n 5: {out:?}");
    let tail: Vec<String> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON")["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(tail, (2..7).map(|i| format!("tail-a-{i}")).collect::<Vec<_>>(), "{out:?}");
    let table = srv.cli(&["audit", "tail", "-n", "5", "--source", "tail-a"]).await;
    assert_eq!(table.stdout.lines().count(), 5, "audit tail -n 5 (table): {table:?}");

    // The stream: only events appended after connecting, only matching ones, `id:` = position.
    let mut stream = Sse::connect(&srv, "/v1/audit/stream?source=tail-a", None).await;
    srv.ingest_ok(&[
        appended("tail-a-7", "tail-a", t),
        appended("tail-b-1", "tail-b", t),
        appended("tail-a-8", "tail-a", t),
    ])
    .await;
    srv.ingest_ok(&[appended("tail-a-9", "tail-a", t)]).await;
    let got = stream.take(3).await;
    let ids: Vec<&str> = got.iter().map(|(_, e)| e["id"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        ids,
        ["tail-a-7", "tail-a-8", "tail-a-9"],
        "the stream (tail-b-1 lies between 7 and 8 and must not come)"
    );
    for (id, e) in &got {
        assert_eq!(id, &e["seq"].to_string(), "the SSE id is the position: {e}");
    }
    let seq_of = |i: usize| got[i].1["seq"].as_u64().expect("a position");

    // Last-Event-ID resumes right after that position.
    let mut resumed = Sse::connect(&srv, "/v1/audit/stream?source=tail-a", Some(&seq_of(0).to_string())).await;
    let again: Vec<String> =
        resumed.take(2).await.iter().map(|(_, e)| e["id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(again, ["tail-a-8", "tail-a-9"], "resumed after tail-a-7");
    let seventh = srv.get_ok("/v1/audit/events/tail-a-2").await["seq"].to_string();
    let mut resumed = Sse::connect(&srv, "/v1/audit/stream?source=tail-a", Some(&seventh)).await;
    let again: Vec<String> =
        resumed.take(7).await.iter().map(|(_, e)| e["id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(again, (3..10).map(|i| format!("tail-a-{i}")).collect::<Vec<_>>(), "resumed after tail-a-2");
    let r = srv.get("/v1/audit/stream?reason=bogus").await;
    assert_eq!(r.status.as_u16(), 400, "a bad filter is refused before streaming");

    // tail -f as a child process: it prints the last event, then new matching ones. Events are
    // appended until one arrives (the stream starts when the child connects, which the test
    // cannot see), and nothing that does not match may appear.
    srv.ingest_ok(&[appended("tail-f-seed", "tail-f", t)]).await;
    let mut cmd = Command::new(BIN);
    cmd.args(["audit", "tail", "-f", "-n", "1", "--source", "tail-f", "--format", "json"])
        .env("TOKENTRAIL_ADDR", &srv.addr)
        .env("TOKENTRAIL_TOKEN", &srv.admin_token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOKENTRAIL_") && k != "TOKENTRAIL_ADDR" && k != "TOKENTRAIL_TOKEN" {
            cmd.env_remove(k);
        }
    }
    let mut child = Killed(cmd.spawn().expect("start tokentrail audit tail -f"));
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<Value> = Vec::new();
    let started = Instant::now();
    // First the last matching event; only then are new ones appended.
    while lines.is_empty() {
        while let Ok(l) = rx.try_recv() {
            lines.push(serde_json::from_str(&l).unwrap_or_else(|e| panic!("tail -f printed {l:?}: {e}")));
        }
        assert!(started.elapsed() < DEADLINE, "tail -f printed nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for k in 0.. {
        srv.ingest_ok(&[appended(&format!("tail-g-{k}"), "tail-g", t), appended(&format!("tail-f-{k}"), "tail-f", t)])
            .await;
        let polled = Instant::now();
        while polled.elapsed() < Duration::from_millis(300) {
            while let Ok(l) = rx.try_recv() {
                lines.push(serde_json::from_str(&l).unwrap_or_else(|e| panic!("tail -f printed {l:?}: {e}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if lines.len() >= 2 {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "tail -f printed no new event: {lines:?}");
    }
    drop(child);
    let ids: Vec<&str> = lines.iter().map(|e| e["id"].as_str().unwrap_or_default()).collect();
    assert_eq!(ids[0], "tail-f-seed", "tail -f -n 1 starts with the latest event: {ids:?}");
    assert!(lines.iter().all(|e| e["source"] == "tail-f"), "only matching events: {ids:?}");
    let ks: Vec<usize> = ids[1..]
        .iter()
        .map(|id| id.strip_prefix("tail-f-").and_then(|k| k.parse().ok()).expect("a new event"))
        .collect();
    assert!(ks.windows(2).all(|w| w[0] < w[1]), "new events in order, each once: {ids:?}");
}

// ---------------------------------------------------------------------------------------------
// Ingest: every bad line reported by number, nothing written unless asked to skip.

/// The bad lines of `ingest-bad-lines.ndjson` and a word each message must contain.
const BAD_LINES: [(u64, &str); 8] = [
    (2, "EOF"),
    (3, "unknown field `colour`"),
    (4, "time"),
    (5, "denied"),
    (6, "contradicts"),
    (8, "twice"),
    (9, "already in the ledger"),
    (13, "kind"),
];

/// Checks `tokentrail ingest` stderr listing every bad line of the file, in order.
fn check_listed(f: &mut Findings, what: &str, stderr: &str, prefix: &str) {
    let listed: Vec<(u64, String)> = stderr
        .lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix(prefix)?;
            let (n, msg) = rest.split_once(": ")?;
            Some((n.parse().ok()?, msg.to_owned()))
        })
        .collect();
    let numbers: Vec<u64> = listed.iter().map(|(n, _)| *n).collect();
    f.same(&format!("{what}: the lines listed"), numbers, BAD_LINES.iter().map(|(n, _)| *n).collect());
    for ((n, msg), (_, word)) in listed.iter().zip(BAD_LINES) {
        f.check(msg.contains(word), || format!("{what}: line {n}: {msg:?} does not mention {word:?}"));
    }
}

/// What the good lines of `ingest-bad-lines.ndjson` (1, 7, 10, 12) look like once ingested,
/// after the seed line.
async fn check_good_lines(f: &mut Findings, what: &str, srv: &Srv) {
    let window = [("since", "2026-09-01T09:00:00Z".to_owned()), ("until", "2026-09-02T00:00:00Z".to_owned())];
    let got = fetch_events(srv, &window, "asc").await.expect("events");
    let ids = ids_of(&got);
    let want_named = ["seeded-1", "bad-file-good-1", "bad-file-good-7"];
    f.check(
        ids.len() == 5 && ids[..3] == want_named && ids[4] == "bad-file-good-12" && ids[3].starts_with("ev_"),
        || format!("{what}: the ingested events {ids:?}"),
    );
    f.check(got.get(3).is_some_and(|e| e["request_id"] == "bad-file-line-10"), || {
        format!("{what}: line 10 became {:?}", got.get(3))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_reports_every_bad_line_and_writes_nothing_unless_skipping() {
    let bad = data_file("ingest-bad-lines.ndjson");
    let seed = data_file("ingest-seed.ndjson");
    let mut f = Findings::default();
    let root = tempfile::tempdir().expect("a temporary directory");
    // More good events, to show a failing run of several files writes none of them.
    let more = root.path().join("more.ndjson");
    let more_lines: Vec<Value> =
        (0..3).map(|i| appended(&format!("more-{i}"), "more", parse_us("2026-09-01T08:00:00Z") + i)).collect();
    std::fs::write(&more, ndjson(&more_lines)).expect("write");
    let more = more.to_str().expect("UTF-8");

    // Online, through the CLI.
    let srv = Srv::start(&root.path().join("data"), None, None).await;
    assert_eq!(srv.cli(&["ingest", &seed]).await.code, 0);
    let before = srv.event_count();
    let out = srv.cli(&["ingest", &bad]).await;
    let err = cli_error(&mut f, "ingest (a file with bad lines)", &out, 1);
    f.check(
        err.lines().next().is_some_and(|l| l.contains("ingest-bad-lines.ndjson") && l.contains("8 bad lines")),
        || format!("the first line names the file and the count: {err}"),
    );
    check_listed(&mut f, "ingest", &err, "line ");
    f.same("events after a failed ingest", srv.event_count(), before);

    // Online, over HTTP.
    let r = srv.ingest(&std::fs::read_to_string(&bad).expect("read"), false).await;
    let body = json_body(&r);
    f.same("POST /v1/audit/ingest with bad lines: status", r.status.as_u16(), 400);
    f.same("POST /v1/audit/ingest: code", body["code"].as_str(), Some("invalid_field"));
    let fields: Vec<&str> =
        body["errors"].as_array().map(|e| e.iter().filter_map(|x| x["field"].as_str()).collect()).unwrap_or_default();
    let want: Vec<String> = BAD_LINES.iter().map(|(n, _)| format!("line {n}")).collect();
    f.same("POST /v1/audit/ingest: errors", fields.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), want);
    f.check(
        body["detail"].as_str().is_some_and(|d| d.contains("8 bad lines") && d.contains("nothing was written")),
        || format!("POST /v1/audit/ingest: detail {}", body["detail"]),
    );
    f.same("events after a failed HTTP ingest", srv.event_count(), before);

    // Several files, one of them bad: the run fails, so nothing of it is written.
    let out = srv.cli(&["ingest", more, &bad]).await;
    let err = cli_error(&mut f, "ingest GOOD BAD", &out, 1);
    f.check(err.contains("nothing was ingested"), || format!("ingest GOOD BAD says nothing was ingested: {err}"));
    f.same("events after `ingest GOOD BAD` failed saying nothing was ingested", srv.event_count(), before);

    // --skip-invalid: the good lines are ingested, the others listed.
    let out = srv.cli(&["ingest", "--skip-invalid", &bad]).await;
    f.same("ingest --skip-invalid", (out.code, out.stdout.as_str()), (0, "ingested 4 events (8 lines skipped)\n"));
    check_listed(&mut f, "ingest --skip-invalid", &out.stderr, "skipped line ");
    check_good_lines(&mut f, "online --skip-invalid", &srv).await;
    // Again over HTTP: now the named good lines are in the ledger too.
    let r = srv.ingest(&std::fs::read_to_string(&bad).expect("read"), true).await;
    let body = json_body(&r);
    let lines: Vec<u64> =
        body["errors"].as_array().map(|e| e.iter().filter_map(|x| x["line"].as_u64()).collect()).unwrap_or_default();
    f.same("POST /v1/audit/ingest?skip_invalid=true: ingested", body["ingested"].as_u64(), Some(1));
    f.same("POST /v1/audit/ingest?skip_invalid=true: skipped lines", lines, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13]);
    srv.stop().await;

    // Offline, into a stopped data directory: the same reports, nothing half-written.
    let root2 = tempfile::tempdir().expect("a temporary directory");
    let dir = root2.path().join("data");
    Srv::start(&dir, None, None).await.stop().await;
    let dir_s = dir.to_str().expect("UTF-8");
    let count = || {
        store::SqliteStore::open(&engine::DataDir::new(&dir).database()).expect("open").event_count().expect("count")
    };
    assert_eq!(run_cli(&[], &["ingest", "--data-dir", dir_s, &seed]).await.code, 0);
    let before = count();
    let out = run_cli(&[], &["ingest", "--data-dir", dir_s, &bad]).await;
    let err = cli_error(&mut f, "ingest --data-dir (a file with bad lines)", &out, 1);
    check_listed(&mut f, "ingest --data-dir", &err, "line ");
    f.same("events after a failed offline ingest", count(), before);
    let out = run_cli(&[], &["ingest", "--data-dir", dir_s, more, &bad]).await;
    let err = cli_error(&mut f, "ingest --data-dir GOOD BAD", &out, 1);
    f.check(err.contains("nothing was ingested"), || format!("ingest --data-dir GOOD BAD: {err}"));
    f.same("events after `ingest --data-dir GOOD BAD` failed saying nothing was ingested", count(), before);
    let before = count();
    let out = run_cli(&[], &["ingest", "--data-dir", dir_s, "--skip-invalid", &bad]).await;
    f.same(
        "ingest --data-dir --skip-invalid",
        (out.code, out.stdout.as_str()),
        (0, "ingested 4 events (8 lines skipped)\n"),
    );
    check_listed(&mut f, "ingest --data-dir --skip-invalid", &out.stderr, "skipped line ");
    f.same("events after the offline --skip-invalid", count(), before + 4);
    let verified = run_cli(&[], &["audit", "verify", "--data-dir", dir_s]).await;
    f.check(verified.code == 0, || format!("the ledger verifies: {verified:?}"));
    let srv = Srv::start(&dir, None, None).await;
    // `more` may have been written by the failed multi-file run: look only at what is checked.
    let got = fetch_events(&srv, &[("until", "2026-09-02T00:00:00Z".to_owned()), ("source", "gateway".into())], "asc")
        .await
        .expect("events");
    f.same("offline: the gateway events of the seed and the good lines", got.len(), 3);
    f.assert_none("ingest error reporting");
}

// ---------------------------------------------------------------------------------------------
// Bad input: precise problems naming the field, one-line CLI errors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_times_networks_cursors_and_limits_are_precise_errors() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let srv = Srv::start(&root.path().join("data"), None, None).await;
    let mut f = Findings::default();
    let invalid: &[(&str, &[&str])] = &[
        ("/v1/audit/events?since=yesterday", &["since"]),
        ("/v1/audit/events?since=15x", &["since"]),
        ("/v1/audit/events?until=2026-13-01T00:00:00Z", &["until"]),
        ("/v1/audit/events?since=2026-11-01T00:00:00Z&until=2026-10-01T00:00:00Z", &["until"]),
        ("/v1/audit/events?source_ip=10.0.0.1/8", &["source_ip"]),
        ("/v1/audit/events?source_ip=banana", &["source_ip"]),
        ("/v1/audit/events?source_ip=10.0.0.0/33", &["source_ip"]),
        ("/v1/audit/events?source_ip=2001:db8::1/32", &["source_ip"]),
        ("/v1/audit/events?cursor=banana", &["cursor"]),
        ("/v1/audit/events?limit=0", &["limit"]),
        ("/v1/audit/events?limit=1001", &["limit"]),
        ("/v1/audit/events?reason=denied", &["reason"]),
        ("/v1/audit/events?kind=user", &["kind"]),
        ("/v1/audit/events?decision=maybe", &["decision"]),
        ("/v1/audit/events?order=up", &["order"]),
        ("/v1/audit/events?group_by=token", &["group_by"]),
        (
            "/v1/audit/events?since=x&until=y&limit=0&source_ip=banana&reason=nope&kind=k&decision=d",
            &["since", "until", "limit", "source_ip", "reason", "kind", "decision"],
        ),
        ("/v1/audit/stats?group_by=banana", &["group_by"]),
        ("/v1/audit/stats", &["group_by"]),
        ("/v1/audit/stats?group_by=token&limit=0", &["limit"]),
        ("/v1/audit/stats?group_by=token&since=later", &["since"]),
        ("/v1/audit/stats?group_by=token&order=asc", &["order"]),
        ("/v1/audit/stats?group_by=token&cursor=c1.00000000", &["cursor"]),
        ("/v1/audit/stream?reason=bogus", &["reason"]),
        ("/v1/audit/stream?order=asc", &["order"]),
        ("/v1/tokens/AnyTokenId000000/activity?since=banana", &["since"]),
    ];
    for (path, fields) in invalid {
        let r = srv.get(path).await;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let mut got: Vec<String> = body["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|x| x["field"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        got.sort();
        // Two messages about one field are fine; the field must be the one at fault.
        got.dedup();
        let mut want: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        let messages_ok = body["errors"]
            .as_array()
            .is_some_and(|e| e.iter().all(|x| x["message"].as_str().is_some_and(|m| !m.is_empty())));
        f.check(
            r.status.as_u16() == 400
                && ct == "application/problem+json"
                && body["code"] == "invalid_field"
                && got == want
                && messages_ok,
            || {
                format!(
                    "GET {path}: want a 400 problem naming {want:?}, got {} ({ct}) naming {got:?}: {text}",
                    r.status
                )
            },
        );
    }
    // Names that are not filters, and values that are not numbers, cannot be read at all.
    let unreadable = [
        ("/v1/audit/events?bogus=1", "bogus"),
        ("/v1/audit/events?tokenid=x", "tokenid"),
        ("/v1/audit/events?limit=-1", "limit"),
        ("/v1/audit/events?limit=abc", "limit"),
        ("/v1/audit/stats?group_by=token&colour=red", "colour"),
        ("/v1/audit/stream?bogus=1", "bogus"),
        ("/v1/tokens/AnyTokenId000000/activity?until=x", "until"),
    ];
    for (path, name) in unreadable {
        let r = srv.get(path).await;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        f.check(
            r.status.as_u16() == 400
                && body["code"] == "invalid_request"
                && body["detail"].as_str().is_some_and(|d| d.contains(name)),
            || format!("GET {path}: want a 400 invalid_request naming {name:?}, got {}: {text}", r.status),
        );
    }
    let r = srv.ingest("", false).await;
    f.check(r.status.as_u16() == 200 && json_body(&r)["ingested"] == 0, || {
        format!("an empty ingest: {}", String::from_utf8_lossy(&r.body))
    });
    let r = srv
        .client
        .send(Method::POST, "/v1/audit/ingest?skip_invalid=maybe", Some(b"".to_vec()), Some("application/x-ndjson"))
        .await
        .expect("an answer");
    f.check(r.status.as_u16() == 400 && String::from_utf8_lossy(&r.body).contains("skip_invalid"), || {
        format!("ingest?skip_invalid=maybe: {} {}", r.status, String::from_utf8_lossy(&r.body))
    });

    // The CLI: one error line (then the fields, indented) and exit 1; usage errors exit 2.
    let failures: [(&[&str], &[&str]); 7] = [
        (&["audit", "query", "--source-ip", "10.0.0.1/8"], &["source_ip", "10.0.0.0/8"]),
        (
            &["audit", "query", "--since", "yesterday", "--reason", "nope", "--limit", "0"],
            &["since", "reason", "limit"],
        ),
        (&["audit", "query", "--cursor", "banana"], &["cursor"]),
        (&["audit", "stats", "--group-by", "banana"], &["group_by"]),
        (&["audit", "explain", "ev_nope"], &["ev_nope"]),
        (&["token", "activity", "NoSuchToken00000"], &["NoSuchToken00000"]),
        (&["audit", "tail", "--kind", "user"], &["kind"]),
    ];
    for (args, words) in failures {
        let out = srv.cli(args).await;
        let what = args.join(" ");
        let err = cli_error(&mut f, &what, &out, 1);
        for w in words {
            f.check(err.contains(w), || format!("{what}: the error does not name {w:?}: {err}"));
        }
    }
    let usage: [&[&str]; 6] = [
        &["audit", "query", "--bogus"],
        &["audit", "stats"],
        &["audit", "query", "--limit", "abc"],
        &["audit", "tail", "-n", "x"],
        &["ingest"],
        &["audit", "export", "--format", "xml"],
    ];
    for args in usage {
        let out = srv.cli(args).await;
        cli_error(&mut f, &args.join(" "), &out, 2);
    }
    f.assert_none("bad input");
}
