//! No secrets at rest or in logs (PRODUCT.md): after a run that issues, rotates, uses and
//! misuses tokens through the real binary, the bytes of every file in the data directory
//! (SQLite database, WAL and shared memory included) and of the server's logs contain no issued
//! token and no secret part of one. The one exception is `admin.token`, which holds the bootstrap
//! token by design. Also: the modes of the data directory and its secret files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hyper::Method;
use proto::CreateTokenRequest;

use crate::testkit::{ProcessServer, files_under, token_id, token_secret};

/// A token string and what to look for: the whole token and its secret part.
struct Needle {
    what: String,
    token: String,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Scans every file under `root` for every needle; `admin.token` may hold the bootstrap token.
fn assert_no_secrets(root: &Path, needles: &[Needle], bootstrap: &str, when: &str) -> Vec<PathBuf> {
    let files = files_under(root);
    let mut leaks = Vec::new();
    for path in &files {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let is_admin_file = path.file_name().is_some_and(|n| n == "admin.token");
        for n in needles {
            if is_admin_file && n.token == bootstrap {
                continue;
            }
            for (part, value) in [("token", n.token.clone()), ("secret", token_secret(&n.token))] {
                if contains(&bytes, value.as_bytes()) {
                    leaks.push(format!("{when}: the {part} of {} is in {}", n.what, path.display()));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets found:\n{}", leaks.join("\n"));
    files
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).permissions().mode() & 0o777
}

fn request(name: &str, scopes: &[&str]) -> CreateTokenRequest {
    CreateTokenRequest {
        name: name.to_owned(),
        owner: "team-secrets".to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

/// The same token with its last checksum character changed: a mistyped token whose secret part
/// is still the real secret.
fn mistyped(token: &str) -> String {
    let mut t = token.to_owned();
    let last = t.pop().expect("a character");
    t.push(if last == 'z' { 'y' } else { 'z' });
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_issued_token_reaches_the_data_dir_or_the_logs() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let data = root.path().join("data");
    let log = root.path().join("server.log");
    let server = ProcessServer::start(&data, &log, &["--log-level", "debug"]);
    let bootstrap = server.admin_token();
    let c = server.client();
    let mut needles = vec![Needle { what: "the bootstrap admin token".into(), token: bootstrap.clone() }];
    let mut push = |what: &str, token: &str| needles.push(Needle { what: what.to_owned(), token: token.to_owned() });

    // Issue over HTTP and through the CLI.
    let ops = c.create_token(&request("ops", &["tokentrail:admin"])).await.expect("create").token;
    push("ops", &ops);
    let reader = c.create_token(&request("reader", &["orders:read"])).await.expect("create").token;
    push("reader", &reader);
    let out = server.cli(&["token", "create", "--name", "cli-table", "--owner", "o", "--scope", "orders:write"]).await;
    let cli_table = out.success().stdout.trim().to_owned();
    push("cli-table", &cli_table);
    let out = server
        .cli(&[
            "token",
            "create",
            "--name",
            "cli-json",
            "--owner",
            "o",
            "--scope",
            "tokentrail:admin",
            "--format",
            "json",
        ])
        .await;
    let cli_json = out.json()["token"].as_str().expect("token").to_owned();
    push("cli-json", &cli_json);

    // Rotate several, with and without grace, over HTTP and through the CLI.
    let ops2 = c.rotate_token(&token_id(&ops), Some("1h".into())).await.expect("rotate").token;
    push("ops rotated", &ops2);
    let reader2 = c.rotate_token(&token_id(&reader), None).await.expect("rotate").token;
    push("reader rotated", &reader2);
    let out = server.cli(&["token", "rotate", &token_id(&cli_json), "--format", "json"]).await;
    let cli_json2 = out.json()["token"].as_str().expect("token").to_owned();
    push("cli-json rotated", &cli_json2);
    let out = server.cli(&["token", "rotate", &token_id(&cli_table), "--grace", "2h"]).await;
    let cli_table2 = out.success().stdout.trim().to_owned();
    push("cli-table rotated", &cli_table2);

    // Use them, rightly and wrongly.
    for t in [&ops, &ops2, &cli_json2] {
        server.client_with_token(t).list_tokens("").await.expect("an admin token works");
    }
    let out =
        crate::testkit::run_cli(&[("TOKENTRAIL_ADDR", &server.addr), ("TOKENTRAIL_TOKEN", &ops2)], &["token", "list"])
            .await;
    out.success();
    for t in [&reader, &reader2, &cli_json, &cli_table, &cli_table2] {
        // Rotated away, or without tokentrail:admin: denied, and recorded.
        server.client_with_token(t).list_tokens("").await.expect_err("denied");
    }
    c.revoke_token(&token_id(&reader2), "secrets test").await.expect("revoke");
    server.client_with_token(&reader2).list_tokens("").await.expect_err("revoked");
    for t in [&ops2, &reader2, &bootstrap] {
        // A real token with a mistyped checksum: the secret part is genuine.
        server.client_with_token(&mistyped(t)).list_tokens("").await.expect_err("bad checksum");
        // A real token on a route that does not exist, with a bad body, in a query string.
        let rc = server.client_with_token(t);
        let resp = rc.send(Method::GET, "/v1/nope", None, None).await.expect("answer");
        assert_eq!(resp.status.as_u16(), 404);
        let resp = rc
            .send(Method::POST, "/v1/tokens", Some(b"{not json".to_vec()), Some("application/json"))
            .await
            .expect("answer");
        assert!(resp.status.is_client_error());
        let resp = rc.send(Method::GET, &format!("/v1/tokens?token={t}"), None, None).await.expect("answer");
        assert!(resp.status.is_client_error());
        let resp = rc.send(Method::GET, &format!("/v1/audit/events?cursor={t}"), None, None).await.expect("answer");
        assert!(resp.status.is_client_error());
    }
    // The CLI with a real token that is not an admin token, and a mistyped one.
    let out = crate::testkit::run_cli(
        &[("TOKENTRAIL_ADDR", &server.addr), ("TOKENTRAIL_TOKEN", &cli_table2)],
        &["token", "list"],
    )
    .await;
    assert_eq!(out.code, 1);
    let out = crate::testkit::run_cli(
        &[("TOKENTRAIL_ADDR", &server.addr), ("TOKENTRAIL_TOKEN", &mistyped(&cli_json2))],
        &["token", "show", &token_id(&ops)],
    )
    .await;
    assert_eq!(out.code, 1);
    // (A mistyped token shares its secret part with the real one, which the scan looks for.)

    // While the server runs (the WAL holds recent writes) ...
    let files = assert_no_secrets(root.path(), &needles, &bootstrap, "while running");
    // ... the scan reads what it should: the database holds every token's public id, the log
    // holds request lines, and admin.token holds the bootstrap token.
    let db: Vec<u8> = files
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("tokentrail.db")))
        .flat_map(|p| fs::read(p).expect("read"))
        .collect();
    for n in &needles {
        assert!(contains(&db, token_id(&n.token).as_bytes()), "the scan sees the database: {} id", n.what);
    }
    let log_text = fs::read_to_string(&log).expect("the log");
    assert!(
        log_text.lines().filter(|l| l.contains("\"request\"")).count() > 20,
        "the log has request lines:\n{log_text}"
    );
    assert!(contains(&fs::read(data.join("admin.token")).expect("admin.token"), bootstrap.as_bytes()));

    // ... and after a clean stop.
    let status = server.stop();
    assert!(status.success(), "{status}");
    assert_no_secrets(root.path(), &needles, &bootstrap, "after the stop");

    // The data directory and its secret files are private to the user.
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("pepper")), 0o600, "the pepper");
    assert_eq!(mode(&data.join("admin.token")), 0o600, "admin.token");
}

/// A person pasting a whole token where an id belongs (`tokentrail token show ttk_…`) is a
/// foreseeable mistake. The request fails, but the token must not end up in the audit log's
/// `path`, the log file, or anywhere else on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_pasted_in_place_of_an_id_is_not_stored() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let data = root.path().join("data");
    let log = root.path().join("server.log");
    let server = ProcessServer::start(&data, &log, &["--log-level", "debug"]);
    let bootstrap = server.admin_token();
    let c = server.client();
    let pasted = c.create_token(&request("pasted", &["orders:read"])).await.expect("create").token;
    let out = server.cli(&["token", "show", &pasted]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    let out = server.cli(&["token", "revoke", &pasted, "--reason", "oops"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    // Name the events that hold it, so a failure says where the token went.
    let events = c.list_events("?limit=1000").await.expect("events").events;
    let holders: Vec<String> = events
        .iter()
        .filter_map(|e| {
            let json = serde_json::to_value(e).expect("json");
            let fields: Vec<String> = json
                .as_object()
                .expect("an object")
                .iter()
                .filter(|(_, v)| v.to_string().contains(token_secret(&pasted).as_str()))
                .map(|(k, _)| k.clone())
                .collect();
            (!fields.is_empty()).then(|| format!("event {} ({} {}): {}", e.id, e.kind, e.reason, fields.join(", ")))
        })
        .collect();
    let status = server.stop();
    assert!(status.success(), "{status}");
    assert!(holders.is_empty(), "audit events that store the pasted token:\n{}", holders.join("\n"));
    let needles = [Needle { what: "a token pasted as an id".into(), token: pasted }];
    assert_no_secrets(root.path(), &needles, &bootstrap, "after the stop");
}
