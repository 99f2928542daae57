//! The `tokentrail` binary as people and scripts use it: the token lifecycle through the CLI
//! against a real server, the output formats, exit codes (0 ok, 1 failure, 2 usage), one-line
//! error messages, completions, `config check`, and an unreachable server.

use std::path::Path;

use proto::{EventList, IssuedToken, TokenList, TokenView};

use crate::testkit::{CliOutput, TestServer, run_cli, token_id, unused_port};

fn issued(out: &CliOutput) -> IssuedToken {
    serde_json::from_value(out.json()).unwrap_or_else(|e| panic!("not an IssuedToken ({e}): {out:#?}"))
}

fn view(out: &CliOutput) -> TokenView {
    serde_json::from_value(out.json()).unwrap_or_else(|e| panic!("not a TokenView ({e}): {out:#?}"))
}

fn token_list(out: &CliOutput) -> TokenList {
    serde_json::from_value(out.json()).unwrap_or_else(|e| panic!("not a TokenList ({e}): {out:#?}"))
}

fn ids(l: &TokenList) -> Vec<&str> {
    l.tokens.iter().map(|t| t.id.as_str()).collect()
}

/// Asserts a failure with `code` whose stderr is one `error: …` line, optionally followed by
/// indented field lines, and returns stderr.
fn one_line_error(out: &CliOutput, code: i32) -> String {
    assert_eq!(out.code, code, "exit code: {out:#?}");
    let mut lines = out.stderr.lines();
    let first = lines.next().unwrap_or_else(|| panic!("an error message on stderr: {out:#?}"));
    assert!(first.starts_with("error: "), "the first line says it is an error: {out:#?}");
    for l in lines {
        assert!(l.starts_with("  "), "lines after the first are indented field lines: {out:#?}");
    }
    assert!(!out.stderr.contains("panicked"), "no panic: {out:#?}");
    out.stderr.clone()
}

/// Asserts a usage error: exit code 2, a message naming `mention`, nothing on stdout.
fn usage_error(out: &CliOutput, mention: &str) {
    assert_eq!(out.code, 2, "usage errors exit with 2: {out:#?}");
    assert!(out.stderr.contains(mention), "stderr names {mention:?}: {out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
}

/// Asserts every line of a table fits 80 columns.
fn fits_80(what: &str, text: &str) {
    assert!(!text.trim().is_empty(), "{what}: no output");
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "{what}: a line is wider than 80 columns:\n{line}\n---\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lifecycle_through_the_cli() {
    let s = TestServer::start().await;
    let admin_id = token_id(&s.admin_token);
    let created = issued(
        &s.cli(&[
            "token",
            "create",
            "--name",
            "ci",
            "--owner",
            "team-a",
            "--scope",
            "orders:read",
            "--scope",
            "orders:write",
            "--label",
            "env=prod",
            "--expires-in",
            "30d",
            "--allow-cidr",
            "10.0.0.0/8",
            "--rate-limit",
            "100/min",
            "--format",
            "json",
        ])
        .await,
    );
    let id = created.details.id.clone();
    assert_eq!(token_id(&created.token), id);
    let t = &created.details;
    assert_eq!((t.name.as_str(), t.owner.as_str(), t.state.as_str()), ("ci", "team-a", "active"));
    assert_eq!(t.scopes, ["orders:read", "orders:write"]);
    assert_eq!(t.labels.get("env").map(String::as_str), Some("prod"));
    assert_eq!(t.allowed_cidrs, ["10.0.0.0/8"]);
    assert_eq!(t.rate_limit.as_deref(), Some("100/min"));
    assert_eq!(t.created_by, admin_id);
    let created_at: jiff::Timestamp = t.created_at.parse().expect("a time");
    let expires_at: jiff::Timestamp = t.expires_at.as_deref().expect("an expiry").parse().expect("a time");
    assert_eq!(expires_at.duration_since(created_at).as_secs(), 30 * 86_400);
    // The API agrees with what the CLI printed.
    assert_eq!(&s.client.get_token(&id).await.expect("show over HTTP"), t);

    let other = issued(
        &s.cli(&[
            "token",
            "create",
            "--name",
            "nightly",
            "--owner",
            "team-b",
            "--scope",
            "users:read",
            "--format",
            "json",
        ])
        .await,
    );

    // List, with each filter.
    let all = token_list(&s.cli(&["token", "list", "--format", "json"]).await);
    assert_eq!(ids(&all), [admin_id.as_str(), id.as_str(), other.details.id.as_str()]);
    assert_eq!(all.next_cursor, None);
    for (args, expected) in [
        (vec!["--owner", "team-a"], vec![id.as_str()]),
        (vec!["--scope", "orders:read"], vec![id.as_str()]),
        (vec!["--scope", "users:read"], vec![other.details.id.as_str()]),
        (vec!["--label", "env=prod"], vec![id.as_str()]),
        (vec!["--label", "env"], vec![id.as_str()]),
        (vec!["--state", "revoked"], vec![]),
    ] {
        let mut full = vec!["token", "list", "--format", "json"];
        full.extend(&args);
        assert_eq!(ids(&token_list(&s.cli(&full).await)), expected, "{args:?}");
    }
    // Pagination through the CLI.
    let p1 = token_list(&s.cli(&["token", "list", "--limit", "2", "--format", "json"]).await);
    assert_eq!(ids(&p1), [admin_id.as_str(), id.as_str()]);
    let cursor = p1.next_cursor.expect("a cursor");
    let p2 = token_list(&s.cli(&["token", "list", "--limit", "2", "--cursor", &cursor, "--format", "json"]).await);
    assert_eq!(ids(&p2), [other.details.id.as_str()]);

    // Show.
    let shown = view(&s.cli(&["token", "show", &id, "--format", "json"]).await);
    assert_eq!(&shown, t);
    assert!(!s.cli(&["token", "show", &id, "--format", "json"]).await.stdout.contains("\"token\""));

    // Update: only what is given changes.
    let u1 = view(&s.cli(&["token", "update", &id, "--name", "ci-2", "--clear-rate-limit", "--format", "json"]).await);
    let expected = TokenView {
        name: "ci-2".into(),
        rate_limit: None,
        updated_at: u1.updated_at.clone(),
        revision: t.revision + 1,
        ..t.clone()
    };
    assert_eq!(u1, expected);
    let u2 = view(
        &s.cli(&[
            "token",
            "update",
            &id,
            "--scope",
            "orders:admin",
            "--clear-cidrs",
            "--no-expiry",
            "--not-before",
            "2020-01-01T00:00:00Z",
            "--format",
            "json",
        ])
        .await,
    );
    assert_eq!(u2.scopes, ["orders:admin"]);
    assert!(u2.allowed_cidrs.is_empty());
    assert_eq!(u2.expires_at, None);
    assert!(u2.not_before.is_some());
    assert_eq!(u2.name, "ci-2");
    let u3 = view(&s.cli(&["token", "update", &id, "--clear-not-before", "--format", "json"]).await);
    assert_eq!(u3.not_before, None);

    // Rotate with a grace period.
    let rotated = issued(&s.cli(&["token", "rotate", &id, "--grace", "1h", "--format", "json"]).await);
    assert_eq!(rotated.details.id, id);
    assert_ne!(rotated.token, created.token);
    assert!(rotated.details.previous_secret_valid_until.is_some());

    // Revoke, then revoke again: a failure (exit 1) with one precise line.
    let revoked = view(&s.cli(&["token", "revoke", &id, "--reason", "leaked in a CI log", "--format", "json"]).await);
    assert_eq!(revoked.state, "revoked");
    assert_eq!(revoked.revoke_reason.as_deref(), Some("leaked in a CI log"));
    let again = s.cli(&["token", "revoke", &id, "--reason", "again"]).await;
    let err = one_line_error(&again, 1);
    assert!(err.contains("409") && err.contains("already_revoked"), "{err}");
    assert!(err.contains(&id), "the message names the token: {err}");
    assert!(again.stdout.is_empty());

    // The audit trail, through the CLI.
    let out = s.cli(&["audit", "query", "--kind", "admin", "--format", "json"]).await;
    let events: EventList = serde_json::from_value(out.json()).expect("an EventList");
    let mut ops: Vec<&str> = events
        .events
        .iter()
        .filter(|e| e.target.as_deref() == Some(id.as_str()))
        .map(|e| e.operation.as_deref().unwrap_or("-"))
        .collect();
    ops.reverse(); // newest first by default
    assert_eq!(ops, ["token.create", "token.update", "token.update", "token.update", "token.rotate", "token.revoke"]);
    for e in events.events.iter().filter(|e| e.target.as_deref() == Some(id.as_str())) {
        assert_eq!((e.kind.as_str(), e.token_id.as_deref()), ("admin", Some(admin_id.as_str())), "{e:?}");
    }
    assert!(events.events.iter().all(|e| e.kind == "admin"), "--kind admin filters");
    let out = s.cli(&["audit", "query", "--kind", "admin", "--limit", "2", "--format", "json"]).await;
    let page: EventList = serde_json::from_value(out.json()).expect("an EventList");
    assert_eq!(page.events.len(), 2);
    assert!(page.next_cursor.is_some());
    let out = s.cli(&["audit", "query", "--kind", "access", "--token", &admin_id, "--format", "json"]).await;
    let reads: EventList = serde_json::from_value(out.json()).expect("an EventList");
    assert!(!reads.events.is_empty(), "the CLI's reads are recorded as access events");
    assert!(reads.events.iter().all(|e| e.kind == "access" && e.token_id.as_deref() == Some(admin_id.as_str())));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_formats_table_csv_and_the_printed_once_token() {
    let s = TestServer::start().await;
    // Table output is the default; create prints the token alone on stdout.
    let out = s
        .cli(&[
            "token",
            "create",
            "--name",
            "deploy",
            "--owner",
            "platform",
            "--scope",
            "orders:read",
            "--label",
            "env=prod",
        ])
        .await;
    out.success();
    let token = out.stdout.trim();
    assert_eq!(out.stdout.lines().count(), 1, "only the token on stdout: {out:#?}");
    let id = token_id(token);
    assert!(out.stderr.contains("shown only once"), "{out:#?}");
    assert!(out.stderr.contains(&id), "details on stderr: {out:#?}");
    // Long values must not widen the table past 80 columns.
    let long_name = "a-very-long-token-name-that-describes-everything-it-does-in-great-detail";
    let long_owner = "the-platform-engineering-team-of-the-payments-division";
    s.cli(&[
        "token",
        "create",
        "--name",
        long_name,
        "--owner",
        long_owner,
        "--scope",
        "orders:read",
        "--scope",
        "orders:write",
        "--scope",
        "billing-statements:read",
        "--scope",
        "customer-profiles:admin",
        "--no-expiry",
        "--format",
        "json",
    ])
    .await
    .success();

    let list = s.cli(&["token", "list"]).await;
    list.success();
    fits_80("token list", &list.stdout);
    assert!(list.stdout.lines().next().is_some_and(|h| h.starts_with("ID")), "a header row: {}", list.stdout);
    assert!(list.stdout.contains(&id), "ids are shown whole: {}", list.stdout);
    assert_eq!(list.stdout.lines().count(), 1 + 3, "a header and three tokens: {}", list.stdout);
    let list = s.cli(&["token", "list", "--format", "text"]).await;
    list.success();
    fits_80("token list --format text", &list.stdout);

    let show = s.cli(&["token", "show", &id, "--format", "table"]).await;
    show.success();
    fits_80("token show", &show.stdout);
    assert!(show.stdout.contains("platform") && show.stdout.contains("env=prod"), "{}", show.stdout);

    let audit = s.cli(&["audit", "query"]).await;
    audit.success();
    fits_80("audit query", &audit.stdout);

    // CSV: a header row, then one row per token, parseable with the same number of columns.
    let csv = s.cli(&["token", "list", "--format", "csv"]).await;
    csv.success();
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 3, "{}", csv.stdout);
    let header: Vec<&str> = lines[0].split(',').collect();
    assert!(header.iter().any(|h| h.eq_ignore_ascii_case("id")), "{}", lines[0]);
    assert!(header.iter().any(|h| h.eq_ignore_ascii_case("name")), "{}", lines[0]);
    assert!(lines.iter().any(|l| l.starts_with(&format!("{id},deploy,platform,"))), "{}", csv.stdout);
    assert!(lines.iter().any(|l| l.contains(long_name) && l.contains(long_owner)), "csv is never shortened");
    for l in &lines[1..] {
        assert_eq!(l.split(',').count(), header.len(), "{l}");
    }
    let csv = s.cli(&["audit", "query", "--format", "csv"]).await;
    csv.success();
    assert!(csv.stdout.lines().count() >= 2, "{}", csv.stdout);

    // Rotation prints the new token alone on stdout too.
    let out = s.cli(&["token", "rotate", &id]).await;
    out.success();
    let new = out.stdout.trim();
    assert_eq!(token_id(new), id);
    assert_ne!(new, token);
    s.stop().await;
}

/// The issue: "tables are readable in an 80-column terminal". A description may be up to 1024
/// characters, so the one-token view must wrap (or shorten) long values rather than print them
/// on one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_show_table_fits_80_columns_with_a_long_description() {
    let s = TestServer::start().await;
    let description = "Deploys the payments service from the main branch; owned by the platform team, \
                       rotated monthly, and used only from the CI runners in the build network.";
    let out = s
        .cli(&[
            "token",
            "create",
            "--name",
            "deploy",
            "--owner",
            "platform",
            "--scope",
            "orders:read",
            "--description",
            description,
            "--format",
            "json",
        ])
        .await;
    let id = issued(&out).details.id;
    let show = s.cli(&["token", "show", &id]).await;
    show.success();
    fits_80("token show", &show.stdout);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_error_messages() {
    let s = TestServer::start().await;
    let before = s.client.list_tokens("").await.expect("list").tokens.len();

    // Usage errors: 2.
    usage_error(&s.cli(&["token", "list", "--bogus"]).await, "--bogus");
    usage_error(&s.cli(&["token", "create", "--name", "a", "--owner", "b"]).await, "--scope");
    usage_error(&s.cli(&["token", "frobnicate"]).await, "frobnicate");
    usage_error(&s.cli(&["token", "list", "--format", "xml"]).await, "xml");
    usage_error(
        &s.cli(&["token", "create", "--name", "a", "--owner", "b", "--scope", "a:read", "--label", "novalue"]).await,
        "novalue",
    );
    usage_error(
        &s.cli(&[
            "token",
            "create",
            "--name",
            "a",
            "--owner",
            "b",
            "--scope",
            "a:read",
            "--expires-in",
            "1d",
            "--no-expiry",
        ])
        .await,
        "--no-expiry",
    );
    usage_error(&s.cli(&["token", "revoke", "0000000000000000"]).await, "--reason");
    usage_error(
        &s.cli(&["token", "update", "x", "--rate-limit", "1/s", "--clear-rate-limit"]).await,
        "--clear-rate-limit",
    );
    usage_error(&run_cli(&[], &[]).await, "Usage");

    // Failures the server reports: 1, with one line (plus indented field lines).
    let out = s.cli(&["token", "show", "0000000000000000"]).await;
    let err = one_line_error(&out, 1);
    assert!(err.contains("not_found") && err.contains("0000000000000000"), "{err}");
    assert_eq!(err.lines().count(), 1);
    let out = s
        .cli(&[
            "token",
            "create",
            "--name",
            "",
            "--owner",
            "o",
            "--scope",
            "orders:fly",
            "--allow-cidr",
            "nope",
            "--rate-limit",
            "lots",
        ])
        .await;
    let err = one_line_error(&out, 1);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].contains("invalid_field") && lines[0].contains("400"), "{err}");
    let fields: Vec<&str> = lines[1..].iter().map(|l| l.trim_start().split(':').next().unwrap_or("")).collect();
    assert_eq!(fields, ["name", "scopes[0]", "allowed_cidrs[0]", "rate_limit"], "one indented line per field: {err}");
    let out =
        s.cli(&["token", "create", "--name", "x", "--owner", "o", "--scope", "a:read", "--expires-in", "400d"]).await;
    let err = one_line_error(&out, 1);
    assert!(err.contains("expires_in") && err.contains("365d"), "{err}");
    assert_eq!(s.client.list_tokens("").await.expect("list").tokens.len(), before, "nothing was created");

    // Authentication problems: 1, naming the reason.
    let addr = s.addr.as_str();
    let out = run_cli(&[("TOKENTRAIL_ADDR", addr)], &["token", "list"]).await;
    let err = one_line_error(&out, 1);
    assert!(err.contains("401") && err.contains("missing_token"), "{err}");
    let out = run_cli(&[("TOKENTRAIL_ADDR", addr), ("TOKENTRAIL_TOKEN", "hunter2")], &["token", "list"]).await;
    let err = one_line_error(&out, 1);
    assert!(err.contains("401") && err.contains("malformed_token"), "{err}");
    let reader = s
        .client
        .create_token(&proto::CreateTokenRequest {
            name: "reader".into(),
            owner: "o".into(),
            scopes: vec!["orders:read".into()],
            ..Default::default()
        })
        .await
        .expect("create");
    let out = run_cli(&[("TOKENTRAIL_ADDR", addr), ("TOKENTRAIL_TOKEN", &reader.token)], &["token", "list"]).await;
    let err = one_line_error(&out, 1);
    assert!(err.contains("403") && err.contains("insufficient_scope"), "{err}");
    assert!(!err.contains(&reader.token), "the token is not echoed: {err}");

    // --token-file, and a missing one.
    let token_file = s.root.path().join("admin-copy.token");
    std::fs::write(&token_file, format!("{}\n", s.admin_token)).expect("write the token file");
    let tf = token_file.to_str().expect("utf-8 path");
    let out = run_cli(&[("TOKENTRAIL_ADDR", addr)], &["--token-file", tf, "token", "list", "--format", "json"]).await;
    assert_eq!(token_list(&out).tokens.len(), before + 1);
    let out =
        run_cli(&[("TOKENTRAIL_ADDR", addr), ("TOKENTRAIL_TOKEN_FILE", tf)], &["token", "list", "--format", "json"])
            .await;
    assert_eq!(token_list(&out).tokens.len(), before + 1, "TOKENTRAIL_TOKEN_FILE works too");
    let out =
        run_cli(&[("TOKENTRAIL_ADDR", addr)], &["--token-file", "/nonexistent/admin.token", "token", "list"]).await;
    let err = one_line_error(&out, 1);
    assert!(err.contains("/nonexistent/admin.token"), "{err}");

    // --addr overrides TOKENTRAIL_ADDR.
    let dead = format!("http://127.0.0.1:{}", unused_port());
    let out = run_cli(
        &[("TOKENTRAIL_ADDR", &dead), ("TOKENTRAIL_TOKEN", &s.admin_token)],
        &["--addr", addr, "token", "list"],
    )
    .await;
    out.success();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_unusable_server_address_is_a_clear_failure() {
    let dead = format!("http://127.0.0.1:{}", unused_port());
    let out = run_cli(&[("TOKENTRAIL_ADDR", &dead), ("TOKENTRAIL_TOKEN", "x")], &["token", "list"]).await;
    let err = one_line_error(&out, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("cannot reach tokentrail at {dead}")), "{err}");
    let out = run_cli(&[], &["--addr", "ftp://127.0.0.1:1", "token", "list"]).await;
    let err = one_line_error(&out, 1);
    assert!(err.contains("http://"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_for_each_shell() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef tokentrail"), ("fish", "complete -c tokentrail")]
    {
        let out = run_cli(&[], &["completions", shell]).await;
        out.success();
        assert!(out.stdout.contains(marker), "{shell}: {marker:?} in the script");
        assert!(out.stdout.contains("token"), "{shell}: the subcommands are completed");
    }
    usage_error(&run_cli(&[], &["completions", "cmd.exe"]).await, "cmd.exe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_accepts_good_files_and_lists_every_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "data_dir = \"/var/lib/tokentrail\"\nlisten = \"127.0.0.1:9000\"\n\n[tokens]\ndefault_lifetime = \"30d\"\n",
    )
    .expect("write");
    let out = run_cli(&[], &["config", "check", good.to_str().expect("utf-8")]).await;
    out.success();
    assert!(out.stdout.contains("ok"), "{out:#?}");

    // The documented example is a valid file.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.example.toml");
    let out = run_cli(&[], &["config", "check", example.to_str().expect("utf-8")]).await;
    out.success();

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        concat!(
            "listen = \"not an address\"\n",
            "colour = \"blue\"\n",
            "\n[tokens]\n",
            "max_lifetime = \"forever\"\n",
            "\n[limits]\n",
            "max_body_bytes = 10\n",
        ),
    )
    .expect("write");
    let out = run_cli(&[], &["config", "check", bad.to_str().expect("utf-8")]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
    for (key, line) in [("listen", 1), ("colour", 2), ("tokens.max_lifetime", 5), ("limits.max_body_bytes", 8)] {
        assert!(
            out.stderr.lines().any(|l| l.contains(&format!("bad.toml:{line}:")) && l.contains(&format!("{key}: "))),
            "the error for {key} (line {line}) is listed: {}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("panicked"));

    let out = run_cli(&[], &["config", "check", "/nonexistent/tokentrail.toml"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("/nonexistent/tokentrail.toml"), "{out:#?}");
}
