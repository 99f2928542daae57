//! nginx `auth_request` in front of the test upstream, deciding with tokentrail's `/v1/authz`,
//! end to end with a real nginx (issue 4). The configuration under test is the one in
//! `docs/nginx.md`, taken from the document with only the ports changed, so the documented
//! example is known to work.
//!
//! nginx must be installed (`.ci/run` installs Debian's `nginx-light`); without it the test
//! fails with that message rather than passing silently.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper::Method;
use proto::EventView;
use serde_json::{Value, json};

use crate::testkit::{Http, Reply, TestServer, json_body, send_json, unused_port};
use crate::upstream::Upstream;

/// Where Debian puts nginx.
const NGINX: &str = "/usr/sbin/nginx";

/// How long nginx may take to start or stop.
const NGINX_DEADLINE: Duration = Duration::from_secs(20);

/// The ports of `docs/nginx.md`, replaced by the test's.
const DOC_TOKENTRAIL: &str = "127.0.0.1:8720";
const DOC_API: &str = "127.0.0.1:8080";
const DOC_NGINX: &str = "127.0.0.1:8000";

/// The fenced code block of `doc` whose first line is `first_line`.
fn block(doc: &str, first_line: &str) -> String {
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("```")
            && let Some(first) = lines.next()
            && first.trim() == first_line
        {
            let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            return format!("{first}\n{}\n", body.join("\n"));
        }
    }
    panic!("docs/nginx.md has no code block starting with {first_line:?}");
}

/// The nginx binary, or a failure saying how CI provides it.
fn nginx_binary() -> PathBuf {
    let candidates = [PathBuf::from(NGINX), PathBuf::from("/usr/bin/nginx")];
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "nginx is not installed (looked for {NGINX} and /usr/bin/nginx): this test runs a real nginx; \
             .ci/run must install it (apt-get install nginx-light)"
        )
    })
}

/// Whether this process runs as root (nginx then needs `user root;` so that its workers can
/// read the test's private temporary directory).
fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// A running nginx; stopped (and, failing that, killed) when dropped, also when a test panics.
struct Nginx {
    child: Option<Child>,
    dir: PathBuf,
}

impl Nginx {
    /// Writes `nginx.conf` around the server configuration `server_conf` into `dir`, starts
    /// nginx in the foreground and waits until it accepts connections on `port`.
    fn start(dir: &Path, server_conf: &str, port: u16) -> Nginx {
        let bin = nginx_binary();
        let temp = dir.join("temp");
        fs::create_dir_all(&temp).expect("create nginx's temporary directory");
        let d = dir.display();
        let t = temp.display();
        let conf = format!(
            "{user}worker_processes 1;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             access_log {d}/access.log;\n\
             client_body_temp_path {t}/body;\n\
             proxy_temp_path {t}/proxy;\n\
             fastcgi_temp_path {t}/fastcgi;\n\
             uwsgi_temp_path {t}/uwsgi;\n\
             scgi_temp_path {t}/scgi;\n\
             {server_conf}\n\
             }}\n",
            user = if running_as_root() { "user root;\n" } else { "" },
        );
        fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        let stderr = fs::File::create(dir.join("stderr.log")).expect("create nginx's stderr file");
        let child = Command::new(&bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg(format!("daemon off; pid {d}/nginx.pid;"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut nginx = Nginx { child: Some(child), dir: dir.to_owned() };
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            if let Some(status) = nginx.child.as_mut().and_then(|c| c.try_wait().expect("poll nginx")) {
                panic!("nginx exited ({status}) before listening:\n{}", nginx.logs());
            }
            assert!(
                started.elapsed() < NGINX_DEADLINE,
                "nginx did not listen within {NGINX_DEADLINE:?}:\n{}",
                nginx.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// nginx's error log and stderr.
    fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("error.log:\n{}\nstderr:\n{}", read("error.log"), read("stderr.log"))
    }

    /// Fast shutdown (SIGTERM: the master stops its workers), then SIGKILL if that takes too long.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let started = Instant::now();
        while started.elapsed() < NGINX_DEADLINE {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request through nginx that must be denied: method, path, token, extra headers, the status
/// nginx answers and the reason tokentrail gives.
type Denial<'a> = (&'a str, &'a str, Option<&'a str>, &'a [(&'a str, &'a str)], u16, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_with_the_documented_configuration() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/nginx.md");
    let doc = fs::read_to_string(&doc_path).unwrap_or_else(|e| panic!("read {}: {e}", doc_path.display()));
    let up = Upstream::start().await;
    let root = tempfile::tempdir().expect("a temporary directory");

    // tokentrail with the documented configuration and policy; only the addresses change.
    let config_path = root.path().join("tokentrail.toml");
    let policy_path = root.path().join("policy.toml");
    fs::write(&config_path, block(&doc, "# tokentrail.toml")).expect("write tokentrail.toml");
    fs::write(&policy_path, block(&doc, "# policy.toml")).expect("write policy.toml");
    let flags = [
        ("data_dir", root.path().join("data").to_string_lossy().into_owned()),
        ("listen", "127.0.0.1:0".to_owned()),
        ("policy", policy_path.to_string_lossy().into_owned()),
    ];
    let config = config::load(Some(&config_path), &[], &flags, config::Defaults { hostname: None })
        .unwrap_or_else(|e| panic!("the documented tokentrail.toml does not load:\n{e}"));
    let s = TestServer::start_config(root, &config, None).await;
    let tokentrail = s.addr.trim_start_matches("http://").to_owned();

    // nginx with the documented server configuration.
    let port = unused_port();
    let server_conf = block(&doc, "# /etc/nginx/conf.d/api.conf (inside the http block)");
    for placeholder in [DOC_TOKENTRAIL, DOC_API, DOC_NGINX] {
        assert!(server_conf.contains(placeholder), "docs/nginx.md no longer mentions {placeholder}");
    }
    let server_conf = server_conf
        .replace(DOC_TOKENTRAIL, &tokentrail)
        .replace(DOC_API, &up.addr.to_string())
        .replace(DOC_NGINX, &format!("127.0.0.1:{port}"));
    let nginx_dir = s.root.path().join("nginx");
    fs::create_dir_all(&nginx_dir).expect("create nginx's directory");
    let mut nginx = Nginx::start(&nginx_dir, &server_conf, port);

    let token = async |body: Value| {
        let r = send_json(&s.client, Method::POST, "/v1/tokens", &body).await;
        assert_eq!(r.status.as_u16(), 201, "{}", String::from_utf8_lossy(&r.body));
        let v = json_body(&r);
        (v["token"].as_str().expect("token").to_owned(), v["id"].as_str().expect("id").to_owned())
    };
    let (reader, reader_id) = token(json!({"name": "ward", "owner": "clinic", "scopes": ["patients:read"]})).await;
    let (fenced, _) =
        token(json!({"name": "f", "owner": "o", "scopes": ["patients:read"], "allowed_cidrs": ["203.0.113.0/24"]}))
            .await;
    let (limited, _) =
        token(json!({"name": "l", "owner": "o", "scopes": ["patients:read"], "rate_limit": "1/min"})).await;
    let (health, _) = token(json!({"name": "h", "owner": "o", "scopes": ["health:read"]})).await;

    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut attempts = 0;
    let mut send = async |method: &str, path: &str, token: Option<&str>, extra: &[(&str, &str)]| -> (Reply, String) {
        attempts += 1;
        let rid = format!("nginx-{attempts}");
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = vec![("x-request-id", &rid)];
        if let Some(b) = &bearer {
            headers.push(("authorization", b));
        }
        headers.extend_from_slice(extra);
        (http.send(method, &format!("{base}{path}"), &headers, b"").await, rid)
    };
    let authz_events = async || -> Vec<EventView> {
        s.client.list_events("?source=authz&order=asc&limit=1000").await.expect("list events").events
    };
    let one = |events: &[EventView], rid: &str| -> EventView {
        let found: Vec<&EventView> = events.iter().filter(|e| e.request_id.as_deref() == Some(rid)).collect();
        assert_eq!(found.len(), 1, "one authz event for {rid}: {found:#?}");
        found[0].clone()
    };

    // A valid token: the upstream answers, knows who called, and never sees the credential.
    let (r, rid) = send("GET", "/v1/patients/42?full=1", Some(&reader), &[("tokentrail-token-id", "forged")]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), nginx.logs());
    let seen = up.last();
    assert_eq!(seen.target, "/v1/patients/42?full=1");
    assert_eq!(seen.header("tokentrail-token-id"), Some(reader_id.as_str()), "{seen:#?}");
    assert_eq!(seen.header("tokentrail-owner"), Some("clinic"), "{seen:#?}");
    assert_eq!(seen.header("authorization"), None, "{seen:#?}");
    let e = one(&authz_events().await, &rid);
    assert_eq!(r.header("tokentrail-event-id"), Some(e.id.as_str()));
    assert_eq!((e.decision.as_str(), e.reason.as_str(), e.status), ("allow", "ok", Some(200)));
    assert_eq!((e.method.as_deref(), e.path.as_deref()), (Some("GET"), Some("/v1/patients/42")));
    assert_eq!(e.route.as_deref(), Some("GET,HEAD /v1/patients/{id}"));
    assert_eq!(e.sensitivity, ["phi"]);
    assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(e.token_id.as_deref(), Some(reader_id.as_str()));

    // Denials: nginx answers them, nothing reaches the upstream, each is one event.
    let reached = up.count();
    let denials: [Denial<'_>; 6] = [
        ("GET", "/v1/patients/42", None, &[], 401, "missing_token"),
        ("GET", "/v1/patients/42", Some("ttk_garbage"), &[], 401, "malformed_token"),
        ("PUT", "/v1/patients/42", Some(reader.as_str()), &[], 403, "insufficient_scope"),
        ("GET", "/v1/billing", Some(reader.as_str()), &[], 403, "route_not_found"),
        // The client cannot ask about another request, nor choose its own address.
        ("GET", "/v1/patients/42", Some(health.as_str()), &[("x-original-uri", "/healthz")], 403, "insufficient_scope"),
        ("GET", "/v1/patients/42", Some(fenced.as_str()), &[("x-forwarded-for", "203.0.113.7")], 403, "ip_not_allowed"),
    ];
    let mut denied_ids = Vec::new();
    for (method, path, token, extra, status, reason) in denials {
        let (r, rid) = send(method, path, token, extra).await;
        assert_eq!(r.status, status, "{method} {path} ({reason}): {}", r.text());
        assert_eq!(r.header("tokentrail-reason"), Some(reason), "{method} {path}");
        if status == 401 {
            let w = r.header("www-authenticate").expect("nginx passes WWW-Authenticate on");
            assert!(w.starts_with("Bearer realm=\"tokentrail\""), "{w}");
        }
        denied_ids.push((rid, r.header("tokentrail-event-id").map(str::to_owned), method, status, reason));
    }
    let events = authz_events().await;
    for (rid, event_id, method, status, reason) in &denied_ids {
        let e = one(&events, rid);
        assert_eq!(event_id.as_deref(), Some(e.id.as_str()), "the client learns the event id");
        assert_eq!((e.decision.as_str(), e.reason.as_str(), e.status), ("deny", *reason, Some(*status)), "{e:#?}");
        assert_eq!(e.method.as_deref(), Some(*method));
        assert!(e.explanation.as_deref().is_some_and(|x| !x.is_empty()), "{e:#?}");
    }
    assert_eq!(one(&events, &denied_ids[4].0).path.as_deref(), Some("/v1/patients/42"));
    assert_eq!(one(&events, &denied_ids[5].0).source_ip.as_deref(), Some("127.0.0.1"));

    // A rate limit is a 403 for nginx, with the reason.
    let (r, _) = send("GET", "/v1/patients/1", Some(&limited), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (r, rid) = send("GET", "/v1/patients/1", Some(&limited), &[]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("tokentrail-reason"), Some("rate_limited"));
    assert_eq!(one(&authz_events().await, &rid).reason, "rate_limited");
    assert_eq!(up.count(), reached + 1, "only the allowed request reached the upstream");

    // Exactly one event per attempt.
    assert_eq!(authz_events().await.len(), attempts, "one authz event per request through nginx");
    nginx.stop();
    s.stop().await;
}
