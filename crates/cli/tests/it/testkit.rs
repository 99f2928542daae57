//! The test kit: a real tokentrail server on port 0 with a temporary data directory, either in
//! this process (fast, with access to the engine) or as the real binary (for signals, restarts,
//! logs and the bytes on disk), plus a runner for the CLI binary.
//!
//! Every server lives in its own temporary directory, so tests run in parallel without sharing
//! state. Nothing here sleeps to make an assertion pass: waits poll for a condition with a
//! deadline and fail with the server's log when the deadline passes.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cli::client::{Client, RawResponse};
use hyper::Method;
use serde_json::Value;
use tempfile::TempDir;

/// The `tokentrail` binary built for these tests.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_tokentrail");

/// How long a server may take to start or stop before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// The message the server logs once its admin API accepts connections.
const LISTENING: &str = "tokentrail admin API listening";

/// Reads the bootstrap admin token a server wrote into its data directory.
pub(crate) fn read_admin_token(data_dir: &Path) -> String {
    let path = data_dir.join("admin.token");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())).trim().to_owned()
}

/// The public id part of a token string.
pub(crate) fn token_id(token: &str) -> String {
    token::parse(token).unwrap_or_else(|e| panic!("not a token: {e:?}")).id.to_owned()
}

/// The secret part of a token string (what must never be stored or logged).
pub(crate) fn token_secret(token: &str) -> String {
    token::parse(token).unwrap_or_else(|e| panic!("not a token: {e:?}")).secret.to_owned()
}

/// A server running inside the test process.
pub(crate) struct TestServer {
    /// Holds the data directory (and anything else a test puts there) until the test ends.
    pub(crate) root: TempDir,
    /// The base URL, `http://127.0.0.1:PORT`.
    pub(crate) addr: String,
    /// The bootstrap admin token.
    pub(crate) admin_token: String,
    /// A client authenticated with the bootstrap admin token.
    pub(crate) client: Client,
    running: Option<server::Running>,
}

impl TestServer {
    /// Starts a server with the default configuration on a fresh data directory.
    pub(crate) async fn start() -> TestServer {
        let root = tempfile::tempdir().expect("create a temporary directory");
        let data_dir = root.path().join("data");
        let mut config = config::Config::defaults(&config::Defaults { hostname: None });
        config.data_dir = data_dir.clone();
        config.listen = "127.0.0.1:0".parse().expect("a socket address");
        let running = server::start(&config).await.expect("the server starts");
        let addr = format!("http://{}", running.addr);
        let admin_token = read_admin_token(&data_dir);
        let client = Client::new(&addr, Some(admin_token.clone())).expect("a client");
        TestServer { root, addr, admin_token, client, running: Some(running) }
    }

    /// The engine behind the server, to look at stored state without going through the API
    /// (API reads are themselves recorded as events).
    pub(crate) fn engine(&self) -> &engine::Engine {
        &self.running.as_ref().expect("the server is running").engine
    }

    /// A client of this server with another token, or none.
    pub(crate) fn client_with(&self, token: Option<&str>) -> Client {
        Client::new(&self.addr, token.map(str::to_owned)).expect("a client")
    }

    /// Runs the CLI against this server with the bootstrap admin token in `TOKENTRAIL_TOKEN`.
    pub(crate) async fn cli(&self, args: &[&str]) -> CliOutput {
        run_cli(&[("TOKENTRAIL_ADDR", &self.addr), ("TOKENTRAIL_TOKEN", &self.admin_token)], args).await
    }

    /// Stops the server gracefully.
    pub(crate) async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("the server stops cleanly");
        }
    }
}

/// The outcome of one CLI run.
#[derive(Debug)]
pub(crate) struct CliOutput {
    /// The exit code (-1 if killed by a signal).
    pub(crate) code: i32,
    /// Everything printed on stdout.
    pub(crate) stdout: String,
    /// Everything printed on stderr.
    pub(crate) stderr: String,
}

impl CliOutput {
    /// Asserts a successful run and returns stdout parsed as JSON.
    pub(crate) fn json(&self) -> Value {
        assert_eq!(self.code, 0, "the command failed: {self:#?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// Asserts a successful run.
    pub(crate) fn success(&self) -> &CliOutput {
        assert_eq!(self.code, 0, "the command failed: {self:#?}");
        self
    }
}

/// Runs the `tokentrail` binary with `args`, with no `TOKENTRAIL_*` variable from the test's
/// own environment and exactly the variables in `env`, in an empty working directory (so the
/// CLI's fallback `./tokentrail-data/admin.token` never applies by accident).
pub(crate) async fn run_cli(env: &[(&str, &str)], args: &[&str]) -> CliOutput {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    // The CLI may talk to a server running on this test's runtime, so wait off its threads.
    tokio::task::spawn_blocking(move || run_cli_blocking(&env, &args)).await.expect("the CLI runner")
}

/// [`run_cli`] for tests without a runtime.
pub(crate) fn run_cli_blocking(env: &[(String, String)], args: &[String]) -> CliOutput {
    let cwd = tempfile::tempdir().expect("create a working directory");
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd.path()).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOKENTRAIL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1").env("COLUMNS", "80");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `tokentrail serve` process.
pub(crate) struct ProcessServer {
    child: Option<Child>,
    /// The base URL, `http://127.0.0.1:PORT`.
    pub(crate) addr: String,
    /// The data directory.
    pub(crate) data_dir: PathBuf,
    /// Where the server's stderr (its JSON log) goes.
    pub(crate) log_path: PathBuf,
}

/// Spawns `tokentrail serve` on `data_dir`, port 0 and JSON logs, with stderr and stdout written
/// to `log_path` and `log_path` + `.stdout`. Returns at once; see [`ProcessServer::start`].
pub(crate) fn spawn_server(data_dir: &Path, log_path: &Path, extra: &[&str]) -> Child {
    let log = File::create(log_path).expect("create the log file");
    let out = File::create(log_path.with_extension("stdout")).expect("create the stdout file");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(log);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOKENTRAIL_") {
            cmd.env_remove(k);
        }
    }
    cmd.spawn().unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"))
}

/// The log's JSON lines (lines that are not JSON are skipped: a panic message, for instance).
pub(crate) fn log_lines(log_path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(log_path).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

impl ProcessServer {
    /// Starts a server and waits until it logs its address. `extra` are more `serve` flags.
    pub(crate) fn start(data_dir: &Path, log_path: &Path, extra: &[&str]) -> ProcessServer {
        let mut child = spawn_server(data_dir, log_path, extra);
        let started = Instant::now();
        let addr = loop {
            let found = log_lines(log_path)
                .into_iter()
                .find_map(|v| (v["message"] == LISTENING).then(|| v["addr"].as_str().map(str::to_owned)).flatten());
            if let Some(addr) = found {
                break addr;
            }
            if let Some(status) = child.try_wait().expect("poll the server") {
                panic!(
                    "the server exited ({status}) before listening; its log:\n{}",
                    fs::read_to_string(log_path).unwrap_or_default()
                );
            }
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not log {LISTENING:?} within {DEADLINE:?}; its log:\n{}",
                    fs::read_to_string(log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        ProcessServer {
            child: Some(child),
            addr: format!("http://{addr}"),
            data_dir: data_dir.to_owned(),
            log_path: log_path.to_owned(),
        }
    }

    /// The bootstrap admin token.
    pub(crate) fn admin_token(&self) -> String {
        read_admin_token(&self.data_dir)
    }

    /// A client with the bootstrap admin token.
    pub(crate) fn client(&self) -> Client {
        Client::new(&self.addr, Some(self.admin_token())).expect("a client")
    }

    /// A client with another token.
    pub(crate) fn client_with_token(&self, token: &str) -> Client {
        Client::new(&self.addr, Some(token.to_owned())).expect("a client")
    }

    /// The log as text.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs the CLI against this server with the bootstrap admin token in `TOKENTRAIL_TOKEN`.
    pub(crate) async fn cli(&self, args: &[&str]) -> CliOutput {
        let token = self.admin_token();
        run_cli(&[("TOKENTRAIL_ADDR", &self.addr), ("TOKENTRAIL_TOKEN", &token)], args).await
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub(crate) fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        terminate(&mut child, &self.log_path)
    }
}

/// Sends SIGTERM to `child` and waits (with the deadline) for it to exit.
pub(crate) fn terminate(child: &mut Child, log_path: &Path) -> ExitStatus {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(sent.success(), "kill -TERM failed: {sent}");
    wait_exit(child, log_path)
}

/// Waits (with the deadline) for `child` to exit by itself.
pub(crate) fn wait_exit(child: &mut Child, log_path: &Path) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll the server") {
            return status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server did not exit within {DEADLINE:?}; its log:\n{}",
                fs::read_to_string(log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        // A failed test must not leave a server behind.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A response body as JSON.
pub(crate) fn json_body(resp: &RawResponse) -> Value {
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
        panic!("the {} response is not JSON ({e}): {}", resp.status, String::from_utf8_lossy(&resp.body))
    })
}

/// Sends a JSON value with `Content-Type: application/json`.
pub(crate) async fn send_json(client: &Client, method: Method, path: &str, body: &Value) -> RawResponse {
    let bytes = serde_json::to_vec(body).expect("serialize");
    client.send(method, path, Some(bytes), Some("application/json")).await.expect("the server answers")
}

/// Sends a request without a body.
pub(crate) async fn send_empty(client: &Client, method: Method, path: &str) -> RawResponse {
    client.send(method, path, None, None).await.expect("the server answers")
}

/// Asserts that `resp` is an RFC 9457 problem with this status and code, and returns its body.
/// Checks the content type, `type`, `status`, `title` and a non-empty `detail`.
pub(crate) fn assert_problem(resp: &RawResponse, status: u16, code: &str) -> Value {
    let body_text = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(resp.status.as_u16(), status, "unexpected status; body: {body_text}");
    let ct = resp.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(ct, "application/problem+json", "content type of a {status}; body: {body_text}");
    let body = json_body(resp);
    assert_eq!(body["type"], format!("urn:tokentrail:problem:{code}"), "{body_text}");
    assert_eq!(body["code"], code, "{body_text}");
    assert_eq!(body["status"], status, "{body_text}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "a title: {body_text}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "a detail: {body_text}");
    body
}

/// The `(field, message)` pairs of a problem's `errors`.
pub(crate) fn field_errors(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    (e["field"].as_str().expect("field").to_owned(), e["message"].as_str().expect("message").to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A `127.0.0.1` port nobody listens on (bound, then released).
pub(crate) fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("an address").port()
}

// Enforcement (issue 4): servers with a gateway, a plain HTTP client that sends any header, and
// polling with a deadline.

/// How long a test may wait for a condition that the server reaches by itself (a policy reload,
/// a spool replay, a token's expiry).
pub(crate) const EVENTUALLY: Duration = Duration::from_secs(20);

/// How long one HTTP exchange may take before the test fails: generous, because it only guards
/// against a hang; no test asserts on how long anything took.
const HTTP_DEADLINE: Duration = Duration::from_secs(30);

/// A configuration for an in-process server with a gateway: the data directory in
/// `root/data`, the admin API and the gateway on `127.0.0.1:0`, the route policy `policy`
/// written to `root/policy.toml`, forwarding to `upstream`.
pub(crate) fn gateway_config(root: &Path, policy: &str, upstream: &str) -> config::Config {
    let policy_path = root.join("policy.toml");
    fs::write(&policy_path, policy).expect("write the policy");
    let mut config = config::Config::defaults(&config::Defaults { hostname: None });
    config.data_dir = root.join("data");
    config.listen = "127.0.0.1:0".parse().expect("a socket address");
    config.policy = Some(policy_path);
    config.gateway.upstream = Some(upstream.to_owned());
    config.gateway.listen = "127.0.0.1:0".parse().expect("a socket address");
    config
}

impl TestServer {
    /// Starts a server with `config`, whose data directory is inside `root`, optionally with
    /// store writes failing while the file `fail_writes_while` exists.
    pub(crate) async fn start_config(
        root: TempDir,
        config: &config::Config,
        fail_writes_while: Option<PathBuf>,
    ) -> TestServer {
        let running = server::start_with(config, fail_writes_while).await.expect("the server starts");
        let addr = format!("http://{}", running.addr);
        let admin_token = read_admin_token(&config.data_dir);
        let client = Client::new(&addr, Some(admin_token.clone())).expect("a client");
        TestServer { root, addr, admin_token, client, running: Some(running) }
    }

    /// The gateway's base URL, `http://127.0.0.1:PORT` (or `http://[::1]:PORT`).
    pub(crate) fn gateway_url(&self) -> String {
        let running = self.running.as_ref().expect("the server is running");
        format!("http://{}", running.gateway_addr.expect("the gateway runs"))
    }
}

/// One HTTP answer, from any server.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Status code.
    pub(crate) status: u16,
    /// The HTTP version it came with.
    pub(crate) version: hyper::Version,
    /// Headers.
    pub(crate) headers: hyper::HeaderMap,
    /// The whole body.
    pub(crate) body: hyper::body::Bytes,
}

impl Reply {
    /// The single value of header `name`, if present (panics if it is not text).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap_or_else(|_| panic!("header {name} is not text")))
    }

    /// The body as text (lossy).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the {} answer is not JSON ({e}): {}", self.status, self.text()))
    }
}

/// A plain HTTP client that sends exactly the headers it is given (the admin client always adds
/// its own `Authorization`).
pub(crate) struct Http {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<hyper::body::Bytes>,
    >,
}

impl Http {
    /// HTTP/1.1 with keep-alive.
    pub(crate) fn new() -> Http {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Http { client }
    }

    /// HTTP/2 with prior knowledge (h2c without an upgrade).
    pub(crate) fn http2() -> Http {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
        Http { client }
    }

    /// Sends one request to `url` with `headers` and `body`; fails the test if no answer comes.
    pub(crate) async fn send(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req
            .body(http_body_util::Full::new(hyper::body::Bytes::copy_from_slice(body)))
            .unwrap_or_else(|e| panic!("cannot build {method} {url}: {e}"));
        let exchange = async {
            let resp = self.client.request(req).await.unwrap_or_else(|e| panic!("{method} {url} failed: {e:?}"));
            let (parts, body) = resp.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .unwrap_or_else(|e| panic!("reading the answer to {method} {url} failed: {e}"))
                .to_bytes();
            Reply { status: parts.status.as_u16(), version: parts.version, headers: parts.headers, body }
        };
        tokio::time::timeout(HTTP_DEADLINE, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {url} got no answer within {HTTP_DEADLINE:?}"))
    }
}

/// Calls `probe` every 50 ms until it returns `Some`, and returns that; fails the test with
/// `what` if `deadline` passes first.
pub(crate) async fn eventually<T>(what: &str, deadline: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(started.elapsed() < deadline, "gave up after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl ProcessServer {
    /// Waits until the log has `n` lines whose message is `message`, and returns them.
    pub(crate) async fn wait_for_log(&self, message: &str, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let lines: Vec<Value> = log_lines(&self.log_path).into_iter().filter(|v| v["message"] == message).collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                started.elapsed() < EVENTUALLY,
                "gave up after {EVENTUALLY:?} waiting for {n} log lines {message:?}; the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `done` holds; on the deadline, fails with `what` and the server's log.
    pub(crate) async fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < EVENTUALLY,
                "gave up after {EVENTUALLY:?} waiting for {what}; the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id, for signals.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }
}

/// A server with its gateway in front of the recording test upstream, and the requests the
/// scenario tests make of it. Test modules wrap it to add their own helpers.
pub(crate) struct GatewayRig {
    pub(crate) s: TestServer,
    _up: crate::upstream::Upstream,
    pub(crate) http: Http,
    pub(crate) url: String,
}

impl GatewayRig {
    /// Starts a server with the route `policy`, its configuration changed by `tune` (which also
    /// gets the test's temporary directory, e.g. for sink files).
    pub(crate) async fn start(policy: &str, tune: impl FnOnce(&mut config::Config, &Path)) -> GatewayRig {
        let up = crate::upstream::Upstream::start().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        let mut config = gateway_config(root.path(), policy, &up.url());
        tune(&mut config, root.path());
        let s = TestServer::start_config(root, &config, None).await;
        let url = s.gateway_url();
        GatewayRig { s, _up: up, http: Http::new(), url }
    }

    /// Issues a token; `more` adds fields to the request. Returns the token and its id.
    pub(crate) async fn token(&self, name: &str, owner: &str, scopes: &[&str], more: Value) -> (String, String) {
        let mut body = serde_json::json!({ "name": name, "owner": owner, "scopes": scopes });
        if let (Some(b), Some(m)) = (body.as_object_mut(), more.as_object()) {
            b.extend(m.clone());
        }
        let resp = send_json(&self.s.client, Method::POST, "/v1/tokens", &body).await;
        assert_eq!(resp.status.as_u16(), 201, "create {body}: {}", String::from_utf8_lossy(&resp.body));
        let v = json_body(&resp);
        (v["token"].as_str().expect("token").to_owned(), v["id"].as_str().expect("id").to_owned())
    }

    /// Sends a request through the gateway, with `Authorization: Bearer <token>` when given.
    pub(crate) async fn call(&self, method: &str, path: &str, token: Option<&str>) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.http.send(method, &format!("{}{path}", self.url), &headers, b"").await
    }

    /// A request the gateway must forward; returns its event id.
    pub(crate) async fn allowed(&self, method: &str, path: &str, token: &str) -> String {
        let r = self.call(method, path, Some(token)).await;
        assert_eq!(r.status, 200, "{method} {path} was not forwarded: {}", r.text());
        r.header("tokentrail-event-id").expect("Tokentrail-Event-Id").to_owned()
    }

    /// A request the gateway must deny with `status` and `reason`; returns its event id.
    pub(crate) async fn denied(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        status: u16,
        reason: &str,
    ) -> String {
        let r = self.call(method, path, token).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["reason"], reason, "{method} {path}: {}", r.text());
        r.header("tokentrail-event-id").expect("Tokentrail-Event-Id").to_owned()
    }

    /// An admin GET that must answer 200 with JSON.
    pub(crate) async fn get(&self, path: &str) -> Value {
        let resp = send_empty(&self.s.client, Method::GET, path).await;
        assert_eq!(resp.status.as_u16(), 200, "GET {path}: {}", String::from_utf8_lossy(&resp.body));
        json_body(&resp)
    }
}
