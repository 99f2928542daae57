//! The real binary across a restart: SIGTERM stops it cleanly (exit 0), starting again on the
//! same data directory keeps tokens, events and the admin token, and a second server cannot
//! open a data directory that is in use.

use proto::{CreateTokenRequest, TokenView};

use crate::testkit::{ProcessServer, spawn_server, wait_exit};

fn without_last_use(mut tokens: Vec<TokenView>) -> Vec<TokenView> {
    // Written in the background; compared separately below.
    for t in &mut tokens {
        t.last_used_at = None;
    }
    tokens
}

fn new_token(name: &str, scopes: &[&str]) -> CreateTokenRequest {
    CreateTokenRequest {
        name: name.to_owned(),
        owner: "team-restart".to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_and_the_data_dir_is_exclusive() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let data = root.path().join("data");
    let first = ProcessServer::start(&data, &root.path().join("server-1.log"), &[]);
    let admin = first.admin_token();
    let c = first.client();
    let ops = c.create_token(&new_token("ops", &["tokentrail:admin"])).await.expect("create ops");
    let gone = c.create_token(&new_token("gone", &["orders:read"])).await.expect("create gone");
    c.revoke_token(&gone.details.id, "restart test").await.expect("revoke");
    let rotating = c.create_token(&new_token("rotating", &["tokentrail:admin"])).await.expect("create rotating");
    let rotated = c.rotate_token(&rotating.details.id, Some("1h".to_owned())).await.expect("rotate");
    first.client_with_token(&ops.token).list_tokens("").await.expect("ops works before the restart");

    // A second server on the same data directory fails at once, with a clear message.
    let log2 = root.path().join("server-2.log");
    let mut second = spawn_server(&data, &log2, &[]);
    let status = wait_exit(&mut second, &log2);
    let log = std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(!status.success(), "a second server on a data dir in use must fail; its log:\n{log}");
    assert!(log.contains("in use by another tokentrail process"), "a clear error: {log}");
    assert!(!log.contains("panicked"), "{log}");
    // The first server is unaffected.
    let tokens_before = without_last_use(c.list_tokens("?limit=1000").await.expect("list").tokens);
    let events_before = c.list_events("?kind=admin&order=asc&limit=1000").await.expect("events").events;
    assert_eq!(tokens_before.len(), 4);
    assert_eq!(events_before.len(), 1 + 3 + 1 + 1, "bootstrap, three creates, a revoke, a rotation");

    // SIGTERM: a clean stop.
    let log1 = first.log_path.clone();
    let status = first.stop();
    let log = std::fs::read_to_string(&log1).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "SIGTERM stops the server with exit 0 ({status}); its log:\n{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("tokentrail stopped"), "{log}");

    // Start again on the same data directory.
    let again = ProcessServer::start(&data, &root.path().join("server-3.log"), &[]);
    assert_eq!(again.admin_token(), admin, "the bootstrap token is kept");
    assert!(!again.log().contains("created the bootstrap admin token"), "no second bootstrap: {}", again.log());
    let c = again.client();
    let tokens_after = c.list_tokens("?limit=1000").await.expect("the admin token still works").tokens;
    let ops_after = tokens_after.iter().find(|t| t.id == ops.details.id).expect("ops is still there");
    assert!(ops_after.last_used_at.is_some(), "the last use before the stop was written: {ops_after:?}");
    assert_eq!(without_last_use(tokens_after), tokens_before, "every token is kept as it was");
    let events_after = c.list_events("?kind=admin&order=asc&limit=1000").await.expect("events").events;
    assert_eq!(events_after, events_before, "every admin event is kept as it was");

    // Secrets keep working (or not) exactly as before.
    again.client_with_token(&ops.token).list_tokens("").await.expect("ops still works");
    again.client_with_token(&rotated.token).list_tokens("").await.expect("the rotated secret works");
    again
        .client_with_token(&rotating.token)
        .list_tokens("")
        .await
        .expect("the old secret is still in its grace period");
    let err = again.client_with_token(&gone.token).list_tokens("").await.expect_err("a revoked token stays revoked");
    assert!(err.to_string().contains("reason=revoked"), "{err}");

    // New changes continue the log after the old positions.
    let last_seq = events_before.iter().filter_map(|e| e.seq).max().expect("positions");
    let later = c.create_token(&new_token("later", &["orders:read"])).await.expect("create after restart");
    let events = c.list_events(&format!("?kind=admin&target={}", later.details.id)).await.expect("events").events;
    assert_eq!(events.len(), 1);
    assert!(events[0].seq.is_some_and(|s| s > last_seq), "positions keep increasing: {:?} > {last_seq}", events[0].seq);

    let status = again.stop();
    assert_eq!(status.code(), Some(0), "{status}");
}
