//! The tamper-evident ledger end to end (issue 3, docs/ledger.md):
//! - every tampering with a real data directory (edit, delete, insert, swap, a personal value,
//!   truncation, rollback, a replaced signing key, a consistent rewrite of leaves and tree nodes)
//!   is caught by `tokentrail audit verify`, which names the first bad position;
//! - erasure removes an owner's and an address's personal values from the events and from the
//!   bytes of the data directory, and the log still verifies;
//! - an independent verifier written from the spec alone (`tools/verify.py`, standard library
//!   only) accepts the checkpoints, leaves and proofs the API serves and rejects tampered ones;
//! - the ledger endpoints answer in their documented shapes and refuse bad parameters.
//!
//! Tampering uses the `sqlite3` shell on copies of the data directory, as an administrator with
//! access to the files would.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cli::client::Client;
use hyper::Method;
use ledger::merkle::{self, Frontier, Hash};
use ledger::note::{Signer, Verifier};
use proto::CreateTokenRequest;
use serde_json::{Value, json};
use store::{SqliteStore, Store, StoredLeaf};

use crate::testkit::{
    CliOutput, ProcessServer, TestServer, assert_problem, field_errors, files_under, json_body, run_cli, send_empty,
    send_json,
};

// ---------------------------------------------------------------------------------------------
// Helpers: files, the sqlite3 shell, the verifier.

/// Copies a directory tree (a data directory with its database, WAL and keys).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let path = entry.expect("a directory entry").path();
        let target = to.join(path.file_name().expect("a file name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
        }
    }
}

fn database(dir: &Path) -> PathBuf {
    engine::DataDir::new(dir).database()
}

/// Runs an SQL script with the `sqlite3` shell and returns its output; fails the test on any error.
fn sqlite3(db: &Path, script: &str) -> String {
    let mut child = Command::new("sqlite3")
        .arg("-bail")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the sqlite3 shell ({e}); install it: apt-get install -y sqlite3"));
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write the script");
    let out = child.wait_with_output().expect("sqlite3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "sqlite3 {} failed: {stderr}\nscript:\n{script}", db.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The columns of a table except `except`, comma-separated.
fn columns(db: &Path, table: &str, except: &[&str]) -> String {
    let names = sqlite3(db, &format!("SELECT name FROM pragma_table_info('{table}');"));
    let names: Vec<&str> = names.lines().filter(|n| !except.contains(n)).collect();
    assert!(names.len() > 3, "the columns of {table}: {names:?}");
    names.join(", ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every stored leaf of a data directory, in position order.
fn stored_leaves(dir: &Path) -> Vec<StoredLeaf> {
    let store = SqliteStore::open(&database(dir)).expect("open the store");
    let n = store.event_count().expect("event count");
    let leaves = store.leaves(0, u32::try_from(n).expect("a small log")).expect("leaves");
    assert_eq!(leaves.len() as u64, n);
    leaves
}

/// The leaf hash of a stored event placed at `pos`, computed as the writer computes it.
fn leaf_hash_at(l: &StoredLeaf, pos: u64) -> Hash {
    merkle::leaf_hash(&ledger::leaf::encode(&l.event, pos, &l.commitments))
}

/// SQL that replaces every stored tree node with those of `leaf_hashes`, and the tree's root.
fn rewrite_tree_sql(leaf_hashes: &[Hash]) -> (String, Hash) {
    let mut sql = String::from("DROP TRIGGER merkle_nodes_no_delete;\nDELETE FROM merkle_nodes;\n");
    let mut frontier = Frontier::new();
    let mut nodes = Vec::new();
    for h in leaf_hashes {
        nodes.clear();
        frontier.append(*h, &mut nodes).expect("a small tree");
        for n in nodes.iter().filter(|n| n.id.level > 0) {
            sql.push_str(&format!(
                "INSERT INTO merkle_nodes (level, idx, hash) VALUES ({}, {}, X'{}');\n",
                n.id.level,
                n.id.index,
                hex(&n.hash)
            ));
        }
    }
    (sql, frontier.root())
}

/// `tokentrail audit verify` on `dir`, with saved checkpoints and a trusted key.
async fn verify(dir: &Path, checkpoints: &[&Path], key: Option<&str>) -> CliOutput {
    let mut args = vec!["audit".to_owned(), "verify".to_owned(), "--data-dir".to_owned(), dir.display().to_string()];
    for c in checkpoints {
        args.extend(["--checkpoint".to_owned(), c.display().to_string()]);
    }
    if let Some(k) = key {
        args.extend(["--key".to_owned(), k.to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_cli(&[], &args).await
}

fn token_request(name: &str, owner: &str, scopes: &[&str]) -> CreateTokenRequest {
    CreateTokenRequest {
        name: name.to_owned(),
        owner: owner.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

/// Traffic that leaves admin events, allowed reads and denials of several kinds in the log.
async fn traffic(addr: &str, admin: &Client, round: &str) {
    let reader = admin
        .create_token(&token_request(&format!("reader-{round}"), "team-ledger", &["orders:read"]))
        .await
        .expect("create a reader token");
    let as_reader = Client::new(addr, Some(reader.token.clone())).expect("a client");
    for _ in 0..3 {
        let r = send_empty(&as_reader, Method::GET, "/v1/tokens").await;
        assert_eq!(r.status.as_u16(), 403, "insufficient scope");
    }
    let anonymous = Client::new(addr, None).expect("a client");
    assert_eq!(send_empty(&anonymous, Method::GET, "/v1/tokens").await.status.as_u16(), 401, "missing token");
    let garbage = Client::new(addr, Some("ttk_not_a_token".to_owned())).expect("a client");
    assert_eq!(send_empty(&garbage, Method::GET, "/v1/tokens").await.status.as_u16(), 401, "malformed token");
    admin.list_tokens("").await.expect("list tokens");
    admin.list_events("?limit=5").await.expect("list events");
    let gone = admin
        .create_token(&token_request(&format!("gone-{round}"), "team-ledger", &["tokentrail:admin"]))
        .await
        .expect("create");
    admin.revoke_token(&gone.details.id, "ledger test").await.expect("revoke");
    let as_gone = Client::new(addr, Some(gone.token.clone())).expect("a client");
    assert_eq!(send_empty(&as_gone, Method::GET, "/v1/tokens").await.status.as_u16(), 401, "revoked token");
}

fn signer_of(dir: &Path) -> Signer {
    let path = engine::DataDir::new(dir).signing_key();
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Signer::parse(text.trim()).expect("a signing key")
}

// ---------------------------------------------------------------------------------------------
// The tamper suite.

/// A real data directory, made by the `tokentrail` binary in two runs, stopped with SIGTERM.
struct Fixture {
    root: tempfile::TempDir,
    /// The data directory after both runs.
    data: PathBuf,
    /// A copy taken after the first run (for the rollback).
    early: PathBuf,
    early_events: u64,
    /// The verifier key printed by `tokentrail audit key`, kept "elsewhere".
    key: String,
    /// A checkpoint printed by `tokentrail audit checkpoint --now` during the second run.
    external: PathBuf,
    external_size: u64,
    /// The signing key file of another, unrelated server.
    other_signing_key: PathBuf,
}

async fn make_fixture() -> Fixture {
    let root = tempfile::tempdir().expect("a temporary directory");
    let data = root.path().join("data");

    let first = ProcessServer::start(&data, &root.path().join("server-1.log"), &[]);
    traffic(&first.addr, &first.client(), "one").await;
    let status = first.stop();
    assert_eq!(status.code(), Some(0), "SIGTERM stops the server cleanly");
    let early = root.path().join("early");
    copy_dir(&data, &early);
    let early_events = stored_leaves(&early).len() as u64;

    let second = ProcessServer::start(&data, &root.path().join("server-2.log"), &[]);
    traffic(&second.addr, &second.client(), "two").await;
    let key = second.cli(&["audit", "key"]).await;
    let key = key.success().stdout.trim().to_owned();
    let cp = second.cli(&["audit", "checkpoint", "--now"]).await;
    let note = cp.success().stdout.clone();
    let external = root.path().join("elsewhere.note");
    fs::write(&external, &note).expect("save the checkpoint");
    let verifier = Verifier::parse(&key).expect("`audit key` prints a verifier key");
    let opened = ledger::checkpoint::open_checkpoint(&note, verifier.name(), std::slice::from_ref(&verifier))
        .expect("`audit checkpoint` prints a checkpoint signed by that key");
    traffic(&second.addr, &second.client(), "three").await;
    let status = second.stop();
    assert_eq!(status.code(), Some(0), "SIGTERM stops the server cleanly");

    let other = root.path().join("other");
    let third = ProcessServer::start(&other, &root.path().join("server-3.log"), &[]);
    third.stop();
    let other_signing_key = engine::DataDir::new(&other).signing_key();

    Fixture { data, early, early_events, key, external, external_size: opened.size(), other_signing_key, root }
}

/// What `audit verify` must say about a tampered copy.
struct Expect {
    /// The first bad position, where it can be named.
    position: Option<u64>,
    /// Fragments the message must contain.
    says: Vec<String>,
}

impl Expect {
    fn at(position: u64, says: &[&str]) -> Expect {
        Expect { position: Some(position), says: says.iter().map(|s| (*s).to_owned()).collect() }
    }

    fn anywhere(says: &[&str]) -> Expect {
        Expect { position: None, says: says.iter().map(|s| (*s).to_owned()).collect() }
    }
}

/// Checks one verification result; returns a description of what is wrong, if anything.
fn judge(case: &str, out: &CliOutput, expect: &Expect) -> Option<String> {
    let mut wrong = Vec::new();
    if out.code != 1 {
        wrong.push(format!("exit code {} (want 1)", out.code));
    }
    if !out.stderr.contains("the ledger does not verify") {
        wrong.push("no \"the ledger does not verify\"".to_owned());
    }
    if let Some(p) = expect.position
        && !out.stderr.contains(&format!("position {p}:"))
    {
        wrong.push(format!("does not name position {p}"));
    }
    for s in &expect.says {
        if !out.stderr.contains(s.as_str()) {
            wrong.push(format!("does not say {s:?}"));
        }
    }
    if out.stderr.contains("panicked") {
        wrong.push("panicked".to_owned());
    }
    (!wrong.is_empty())
        .then(|| format!("{case}: {}\n  stdout: {}\n  stderr: {}", wrong.join("; "), out.stdout, out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tampering_is_caught_and_names_the_first_bad_position() {
    let fx = make_fixture().await;
    let cases = fx.root.path().join("cases");
    let copy = |name: &str, from: &Path| -> PathBuf {
        let to = cases.join(name);
        copy_dir(from, &to);
        to
    };
    let key = fx.key.as_str();
    let external = fx.external.as_path();

    // The layout of the log, read from a copy.
    let leaves = stored_leaves(&copy("layout", &fx.data));
    let n = leaves.len() as u64;
    let checkpoint_sizes: Vec<u64> = {
        let store = SqliteStore::open(&database(&cases.join("layout"))).expect("open");
        store.checkpoints().expect("checkpoints").iter().map(|c| c.size).collect()
    };
    assert_eq!(checkpoint_sizes.last(), Some(&n), "the SIGTERM checkpoint covers every event");
    assert!(checkpoint_sizes.contains(&fx.early_events), "the first run's SIGTERM checkpoint covers its events");
    let denials: Vec<u64> =
        leaves.iter().filter(|l| l.event.decision.as_str() == "deny").filter_map(|l| l.event.seq).collect();
    assert!(denials.len() >= 15, "the traffic left denials: {denials:?}");
    assert!(
        n > 30 && fx.external_size > fx.early_events + 5 && n > fx.external_size + 5,
        "a log worth tampering with: {n} events, {} in the first run, {} in the saved checkpoint",
        fx.early_events,
        fx.external_size
    );
    // A denied access from the first run: an attacker would like it to read "allow".
    let deny = denials[1];
    let mid = n / 2;
    let id_at = |pos: u64| leaves[pos as usize].event.id.clone();

    // The untouched copy passes, with the saved key and checkpoint and without them.
    let intact = copy("intact", &fx.data);
    let out = verify(&intact, &[external], Some(key)).await;
    let store = SqliteStore::open(&database(&intact)).expect("open");
    let root = store.latest_checkpoint().expect("read").expect("a checkpoint").root;
    drop(store);
    assert_eq!(out.code, 0, "the untouched copy verifies: {out:#?}");
    assert_eq!(
        out.stdout,
        format!(
            "ok: {n} events (0 erased), {} stored checkpoints, 1 external checkpoints; root {}\n",
            checkpoint_sizes.len(),
            B64.encode(root)
        ),
        "one summary line"
    );
    let out = verify(&intact, &[], None).await;
    assert_eq!(out.code, 0, "the untouched copy verifies with its own key: {out:#?}");
    assert!(out.stderr.contains("trusting the signing key in"), "says whose key it trusts: {out:#?}");

    let mut failures: Vec<String> = Vec::new();
    let check = |failures: &mut Vec<String>, case: &str, out: &CliOutput, expect: Expect| {
        if let Some(f) = judge(case, out, &expect) {
            failures.push(f);
        }
    };

    // 1. A field of one event edited: the denial now reads as an allowed access.
    let dir = copy("edit", &fx.data);
    sqlite3(
        &database(&dir),
        &format!(
            "DROP TRIGGER events_no_update;
             UPDATE events SET decision = 'allow', reason = 'ok', status = 200 WHERE seq = {deny};"
        ),
    );
    let out = verify(&dir, &[external], Some(key)).await;
    check(&mut failures, "edit a field", &out, Expect::at(deny, &[&id_at(deny), "leaf hash does not match"]));

    // 2. An event deleted.
    let dir = copy("delete", &fx.data);
    sqlite3(
        &database(&dir),
        &format!(
            "DROP TRIGGER events_no_delete;
             DELETE FROM events WHERE seq = {mid}; DELETE FROM event_personal WHERE seq = {mid};"
        ),
    );
    let out = verify(&dir, &[external], Some(key)).await;
    check(&mut failures, "delete an event", &out, Expect::at(mid, &["missing"]));

    // 3. A forged event inserted at `mid`, with a correctly computed leaf hash for its position
    //    (a copy of the denial under a new id); the later events shift by one. The forgery itself
    //    matches its leaf hash, so the first bad position is the first shifted event.
    let dir = copy("insert", &fx.data);
    let mut forged = leaves[deny as usize].clone();
    forged.event.id = "ev_forged00000000000000".to_owned();
    let forged_hash = leaf_hash_at(&forged, mid);
    // Every column is copied, whatever columns the schema has grown.
    let db = database(&dir);
    let event_columns = columns(&db, "events", &["seq", "id", "leaf_hash"]);
    let personal_columns = columns(&db, "event_personal", &["seq"]);
    sqlite3(
        &db,
        &format!(
            "DROP TRIGGER events_no_update; DROP TRIGGER event_personal_no_update;
             UPDATE events SET seq = -seq - 1 WHERE seq >= {mid}; UPDATE events SET seq = -seq WHERE seq < 0;
             UPDATE event_personal SET seq = -seq - 1 WHERE seq >= {mid};
             UPDATE event_personal SET seq = -seq WHERE seq < 0;
             INSERT INTO events (seq, id, {event_columns}, leaf_hash)
                 SELECT {mid}, '{}', {event_columns}, X'{}' FROM events WHERE seq = {deny};
             INSERT INTO event_personal (seq, {personal_columns})
                 SELECT {mid}, {personal_columns} FROM event_personal WHERE seq = {deny};",
            forged.event.id,
            hex(&forged_hash)
        ),
    );
    let out = verify(&dir, &[external], Some(key)).await;
    check(&mut failures, "insert an event", &out, Expect::at(mid + 1, &[&id_at(mid), "leaf hash does not match"]));

    // 4. Two events swapped (both rows keep their leaf hashes and personal values).
    let (a, b) = (deny + 1, mid + 3);
    let dir = copy("swap", &fx.data);
    let mut swap = String::from("DROP TRIGGER events_no_update; DROP TRIGGER event_personal_no_update;\n");
    for table in ["events", "event_personal"] {
        swap.push_str(&format!(
            "UPDATE {table} SET seq = -1 WHERE seq = {a}; UPDATE {table} SET seq = {a} WHERE seq = {b};
             UPDATE {table} SET seq = {b} WHERE seq = -1;\n"
        ));
    }
    sqlite3(&database(&dir), &swap);
    let out = verify(&dir, &[external], Some(key)).await;
    check(&mut failures, "swap two events", &out, Expect::at(a, &[&id_at(b), "leaf hash does not match"]));

    // 5. A personal value edited: the caller's address of the denial.
    let dir = copy("personal", &fx.data);
    sqlite3(
        &database(&dir),
        &format!(
            "DROP TRIGGER event_personal_no_update;
             UPDATE event_personal SET source_ip = '203.0.113.9' WHERE seq = {deny};"
        ),
    );
    let out = verify(&dir, &[external], Some(key)).await;
    check(&mut failures, "edit a personal value", &out, Expect::at(deny, &[&id_at(deny), "personal values"]));

    // 6. The tail truncated, thoroughly: the last events, their tree nodes and every checkpoint
    //    covering them. Internally consistent, so only the checkpoint kept elsewhere catches it.
    let keep = fx.external_size - 3;
    let dir = copy("truncate", &fx.data);
    sqlite3(
        &database(&dir),
        &format!(
            "DROP TRIGGER events_no_delete; DROP TRIGGER merkle_nodes_no_delete;
             DELETE FROM events WHERE seq >= {keep}; DELETE FROM event_personal WHERE seq >= {keep};
             DELETE FROM merkle_nodes WHERE (idx + 1) * (1 << level) > {keep};
             DELETE FROM checkpoints WHERE size > {keep};"
        ),
    );
    let out = verify(&dir, &[], Some(key)).await;
    assert_eq!(out.code, 0, "the truncation is internally consistent (else this case tests nothing): {out:#?}");
    let out = verify(&dir, &[external], Some(key)).await;
    let label = external.display().to_string();
    check(&mut failures, "truncate the tail", &out, Expect::at(keep, &[&label, "truncation or rollback"]));

    // 7. An older copy of the database restored (rollback), checked against the newer checkpoint.
    let dir = copy("rollback", &fx.early);
    let out = verify(&dir, &[], Some(key)).await;
    assert_eq!(out.code, 0, "the old copy is a valid older log (else this case tests nothing): {out:#?}");
    let out = verify(&dir, &[external], Some(key)).await;
    check(
        &mut failures,
        "restore an older copy",
        &out,
        Expect::at(fx.early_events, &[&label, "truncation or rollback"]),
    );

    // 8. The signing key replaced by another server's: the stored checkpoints no longer verify
    //    with the key in the data directory (no --key: the verifier trusts that file).
    let dir = copy("new-key", &fx.data);
    fs::copy(&fx.other_signing_key, engine::DataDir::new(&dir).signing_key()).expect("replace the key");
    let out = verify(&dir, &[], None).await;
    check(
        &mut failures,
        "replace the signing key",
        &out,
        Expect::anywhere(&["does not verify with the trusted key", "signing key"]),
    );

    // 9. A consistent rewrite: the denial edited, its stored leaf hash recomputed, and every
    //    stored tree node rebuilt. Only the signed checkpoints can tell.
    let mut edited = leaves.clone();
    edited[deny as usize].event.decision = ledger::event::Verdict::Allow;
    edited[deny as usize].event.reason = token::Reason::Ok;
    edited[deny as usize].event.status = Some(200);
    let hashes: Vec<Hash> = edited.iter().enumerate().map(|(i, l)| leaf_hash_at(l, i as u64)).collect();
    for (i, l) in leaves.iter().enumerate().filter(|(i, _)| *i as u64 != deny) {
        assert_eq!(hashes[i], l.leaf_hash, "the test recomputes leaf hashes as the writer does");
    }
    let (tree_sql, forged_root) = rewrite_tree_sql(&hashes);
    let rewrite = format!(
        "DROP TRIGGER events_no_update;
         UPDATE events SET decision = 'allow', reason = 'ok', status = 200, leaf_hash = X'{}' WHERE seq = {deny};
         {tree_sql}",
        hex(&hashes[deny as usize])
    );
    let dir = copy("rewrite", &fx.data);
    sqlite3(&database(&dir), &rewrite);
    let first_covering = *checkpoint_sizes.iter().find(|s| **s > deny).expect("a checkpoint covers the denial");
    let out = verify(&dir, &[], Some(key)).await;
    let named = format!("the stored checkpoint for size {first_covering} does not match the log");
    check(&mut failures, "rewrite a leaf, its hash and the tree", &out, Expect::anywhere(&[&named]));
    let reported: Option<u64> =
        out.stderr.split("position ").nth(1).and_then(|rest| rest.split(':').next()).and_then(|p| p.parse().ok());
    if let Some(p) = reported
        && !(deny..first_covering).contains(&p)
    {
        failures.push(format!(
            "rewrite: reported position {p} is outside {deny}..{first_covering} (the edit up to the checkpoint that catches it): {}",
            out.stderr
        ));
    }

    // 10. The same rewrite, re-signed: every checkpoint replaced by one signed with a new key
    //     that also replaces signing.key. Only a key or a checkpoint kept elsewhere catches it.
    let dir = copy("re-signed", &fx.data);
    let new_signer = signer_of(&fx.root.path().join("other"));
    let note = ledger::checkpoint::sign_checkpoint(new_signer.name(), n, &forged_root, &new_signer).expect("sign");
    sqlite3(
        &database(&dir),
        &format!(
            "{rewrite}
             DELETE FROM checkpoints;
             INSERT INTO checkpoints (size, root, note, created_us) VALUES ({n}, X'{}', '{}', 0);",
            hex(&forged_root),
            note.replace('\'', "''")
        ),
    );
    fs::copy(&fx.other_signing_key, engine::DataDir::new(&dir).signing_key()).expect("replace the key");
    let out = verify(&dir, &[], None).await;
    assert_eq!(
        out.code, 0,
        "trusting the replaced key, the forgery is consistent (documented: only --key or a saved checkpoint catch it): {out:#?}"
    );
    let out = verify(&dir, &[], Some(key)).await;
    check(
        &mut failures,
        "rewrite and re-sign, with --key",
        &out,
        Expect::anywhere(&["does not verify with the trusted key"]),
    );
    let out = verify(&dir, &[external], None).await;
    check(
        &mut failures,
        "rewrite and re-sign, with a saved checkpoint",
        &out,
        Expect::anywhere(&[&format!("checkpoint {label} does not verify with the trusted key")]),
    );

    assert!(failures.is_empty(), "tampering not caught as expected:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Erasure.

const ERASED_OWNER: &str = "erase-me-owner-7f3a";
/// A loopback address (all of 127.0.0.0/8 reaches this host on Linux), so the requests really come
/// from it; distinctive enough that no other byte sequence in the data directory matches it.
const ERASED_IP: &str = "127.198.51.77";
const ERASED_AGENT: &str = "erase-me-agent-5c1d";
const ERASED_PATH: &str = "erase-me-path-91c2";

/// Sends one HTTP/1.1 request from a chosen local address; returns the status code.
async fn request_from(source: &str, addr: &str, path: &str, token: Option<&str>) -> u16 {
    let server: std::net::SocketAddr = addr.trim_start_matches("http://").parse().expect("a socket address");
    let local = std::net::SocketAddr::new(source.parse().expect("an address"), 0);
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.bind(local).unwrap_or_else(|e| panic!("cannot bind {local}: {e} (needs the 127.0.0.0/8 loopback network)"));
    let stream = socket.connect(server).await.expect("connect");
    let mut stream = stream.into_std().expect("a std stream");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {ERASED_AGENT}\r\n{auth}Connection: close\r\n\r\n",
        server
    );
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        stream.set_nonblocking(false).expect("blocking");
        stream.write_all(request.as_bytes()).expect("send");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("receive");
        let text = String::from_utf8_lossy(&response);
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an HTTP response: {text}"))
    })
    .await
    .expect("the request")
}

/// An erased value to look for: its bytes on disk and how a `.dump` of the database shows it.
struct Needle {
    label: String,
    bytes: Vec<u8>,
    in_dump: String,
}

impl Needle {
    fn text(s: &str) -> Needle {
        Needle { label: format!("{s:?}"), bytes: s.as_bytes().to_vec(), in_dump: s.to_owned() }
    }

    /// The 16-byte form the store keeps for address ranges (IPv4 mapped into IPv6).
    fn ip_bin(ip: &str) -> Needle {
        let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
        let bytes = ip.to_ipv6_mapped().octets().to_vec();
        Needle { label: format!("{ip} as 16 bytes"), in_dump: format!("X'{}'", hex(&bytes)), bytes }
    }
}

/// Where each needle occurs under `dir`, and, for the database, which stored rows hold it.
fn find_needles(dir: &Path, needles: &[Needle], scratch: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for path in files_under(dir) {
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for needle in needles {
            let count = bytes.windows(needle.bytes.len()).filter(|w| *w == needle.bytes.as_slice()).count();
            if count > 0 {
                found.push(format!("{} occurs {count} times in {}", needle.label, path.display()));
            }
        }
    }
    if !found.is_empty() {
        // Say which live rows still hold them (bytes in free pages or old WAL frames do not
        // show in a dump).
        let _ = fs::remove_dir_all(scratch);
        copy_dir(dir, scratch);
        let dump = sqlite3(&database(scratch), ".dump");
        for needle in needles {
            for line in dump.lines().filter(|l| l.contains(&needle.in_dump)) {
                let short: String = line.chars().take(300).collect();
                found.push(format!("  live row with {}: {short}", needle.label));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_personal_values_and_the_log_still_verifies() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let data = root.path().join("data");
    let s = ProcessServer::start(&data, &root.path().join("server.log"), &[]);
    let admin = s.client();
    let key = s.cli(&["audit", "key"]).await.success().stdout.trim().to_owned();

    // Three denials of a token whose owner asks to be forgotten.
    let subject = admin
        .create_token(&token_request("erasure-subject", ERASED_OWNER, &["orders:read"]))
        .await
        .expect("create a token");
    let as_subject = s.client_with_token(&subject.token);
    for _ in 0..3 {
        assert_eq!(send_empty(&as_subject, Method::GET, "/v1/tokens").await.status.as_u16(), 403);
    }
    // Three requests from an address that asks to be forgotten: two denials and an allowed read.
    let bootstrap = s.admin_token();
    assert_eq!(request_from(ERASED_IP, &s.addr, &format!("/v1/tokens/{ERASED_PATH}"), None).await, 401);
    assert_eq!(request_from(ERASED_IP, &s.addr, "/v1/tokens", Some("ttk_nope")).await, 401);
    assert_eq!(request_from(ERASED_IP, &s.addr, "/v1/tokens", Some(&bootstrap)).await, 200);

    let all = admin.list_events("?limit=1000&order=asc").await.expect("events").events;
    let by_owner: Vec<String> =
        all.iter().filter(|e| e.owner.as_deref() == Some(ERASED_OWNER)).map(|e| e.id.clone()).collect();
    let by_ip: Vec<String> =
        all.iter().filter(|e| e.source_ip.as_deref() == Some(ERASED_IP)).map(|e| e.id.clone()).collect();
    assert_eq!(by_owner.len(), 3, "the subject's denials are recorded with its owner");
    assert_eq!(by_ip.len(), 3, "the requests are recorded with their address: {all:#?}");
    let ip_event = all.iter().find(|e| e.id == by_ip[0]).expect("an event");
    assert_eq!(ip_event.user_agent.as_deref(), Some(ERASED_AGENT));
    assert!(ip_event.path.as_deref().is_some_and(|p| p.contains(ERASED_PATH)), "{ip_event:#?}");
    let untouched_id =
        all.iter().find(|e| e.source_ip.as_deref() == Some("127.0.0.1")).expect("another event").id.clone();

    let out = s.cli(&["audit", "erase", "--owner", ERASED_OWNER, "--format", "json"]).await;
    // The three denials, and the admin event that created the token for this owner.
    assert_eq!(out.json(), json!({"erased": 4}));
    let out = s.cli(&["audit", "erase", "--source-ip", ERASED_IP]).await;
    assert_eq!(out.success().stdout, "erased the personal values of 3 events\n");

    // The log still verifies (the server is running), counting the erased events.
    let out = verify(&data, &[], Some(&key)).await;
    assert_eq!(out.code, 0, "the log verifies after erasure: {out:#?}");
    assert!(out.stdout.contains("events (7 erased)"), "{}", out.stdout);

    // The events read "erased" and hold no personal value; the rest of them is intact.
    for id in by_owner.iter().chain(&by_ip) {
        let resp = send_empty(&admin, Method::GET, &format!("/v1/audit/events/{id}")).await;
        assert_eq!(resp.status.as_u16(), 200);
        let e = json_body(&resp);
        assert_eq!(e["erased"], true, "{e}");
        for field in ["owner", "source_ip", "user_agent", "path"] {
            assert!(e[field].is_null(), "{field} of an erased event: {e}");
        }
        assert!(e.get("explanation").is_none_or(Value::is_null), "{e}");
        assert!(e.get("details").is_none_or(|d| d.as_object().is_some_and(|m| m.is_empty())), "{e}");
        assert_eq!(e["decision"], if e["reason"] == "ok" { "allow" } else { "deny" }, "{e}");
        assert!(e["seq"].is_u64(), "{e}");
    }
    let other = json_body(&send_empty(&admin, Method::GET, &format!("/v1/audit/events/{untouched_id}")).await);
    assert_eq!(other["source_ip"], "127.0.0.1", "other events keep their values: {other}");
    assert!(other.get("erased").is_none_or(|v| v == false), "{other}");

    // No byte of the data directory holds an erased value, while running and after a stop.
    let needles = [
        Needle::text(ERASED_OWNER),
        Needle::text(ERASED_IP),
        Needle::ip_bin(ERASED_IP),
        Needle::text(ERASED_AGENT),
        Needle::text(ERASED_PATH),
    ];
    let running = find_needles(&data, &needles, &root.path().join("scan-running"));
    let status = s.stop();
    assert_eq!(status.code(), Some(0));
    let out = verify(&data, &[], Some(&key)).await;
    assert_eq!(out.code, 0, "the log verifies after the stop: {out:#?}");
    let stopped = find_needles(&data, &needles, &root.path().join("scan-stopped"));
    assert!(
        running.is_empty() && stopped.is_empty(),
        "erased values remain in the data directory\nwhile running:\n{}\nafter the stop:\n{}",
        running.join("\n"),
        stopped.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The independent verifier.

const VERIFY_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/verify.py");
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ledger/testdata/merkle-vectors/testdata");

fn python_available() -> bool {
    Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Runs `python3 tools/verify.py ARGS`; returns the exit code, stdout and stderr.
fn verify_py(args: &[&str]) -> CliOutput {
    let out = Command::new("python3").arg(VERIFY_PY).args(args).output().expect("run python3");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A copy of a JSON document with one change.
fn changed(v: &Value, f: impl FnOnce(&mut Value)) -> Value {
    let mut v = v.clone();
    f(&mut v);
    v
}

/// A base64 hash with its first bit flipped.
fn flip(b64: &Value) -> Value {
    let mut bytes = B64.decode(b64.as_str().expect("a base64 string")).expect("base64");
    bytes[0] ^= 0x80;
    Value::String(B64.encode(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_independent_python_verifier_accepts_what_the_api_serves() {
    if !python_available() {
        eprintln!("SKIPPED: python3 is not installed, so tools/verify.py cannot run");
        return;
    }
    let out = verify_py(&["selftest"]);
    assert_eq!(out.code, 0, "the verifier's own known-answer tests: {out:#?}");
    let out = verify_py(&["vectors", VECTORS]);
    assert_eq!(out.code, 0, "the transparency-dev vectors: {out:#?}");
    let counts: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert!(counts["inclusion"].as_u64() > Some(90) && counts["consistency"].as_u64() > Some(90), "{counts}");

    let s = TestServer::start().await;
    let c = &s.client;
    let dir = s.root.path().join("verify-py");
    fs::create_dir_all(&dir).expect("create");
    let file = |name: &str, text: &str| -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).expect("write");
        p
    };
    let write_json = |name: &str, v: &Value| file(name, &serde_json::to_string(v).expect("JSON"));

    traffic(&s.addr, c, "py-one").await;
    let key = c.text(Method::GET, "/v1/audit/key").await.expect("the key");
    let key_file = file("key.txt", &key);
    let key_arg = format!("@{}", key_file.display());
    let note1 = c.text(Method::POST, "/v1/audit/checkpoint").await.expect("a checkpoint");
    let cp1 = file("cp1.note", &note1);
    traffic(&s.addr, c, "py-two").await;
    let note2 = c.text(Method::POST, "/v1/audit/checkpoint").await.expect("a checkpoint");
    let cp2 = file("cp2.note", &note2);
    let size = |note: &str| -> u64 { note.lines().nth(1).and_then(|l| l.parse().ok()).expect("a size line") };
    let (size1, size2) = (size(&note1), size(&note2));
    assert!(size1 < size2);

    for (cp, sz) in [(&cp1, size1), (&cp2, size2)] {
        let out = verify_py(&["checkpoint", "--key", &key_arg, "--checkpoint", path_str(cp)]);
        assert_eq!(out.code, 0, "{out:#?}");
        let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert_eq!(v["size"], sz);
    }

    // Inclusion of events of every kind, in both checkpoints where they are covered.
    let events = c.list_events("?order=asc&limit=1000").await.expect("events").events;
    let picks: Vec<&proto::EventView> = [0, 1, 2, size1 / 2, size1 - 1, size1, size2 - 2, size2 - 1]
        .iter()
        .map(|i| events.iter().find(|e| e.seq == Some(*i)).expect("an event at that position"))
        .collect();
    let mut decoded_fields = 0;
    for e in &picks {
        let seq = e.seq.expect("a position");
        let leaf = json_body(&send_empty(c, Method::GET, &format!("/v1/audit/events/{}/leaf", e.id)).await);
        let leaf_file = write_json(&format!("leaf-{seq}.json"), &leaf);

        // The leaf decodes per docs/ledger.md into exactly the event's non-personal fields.
        let out = verify_py(&["decode-leaf", path_str(&leaf_file)]);
        assert_eq!(out.code, 0, "{out:#?}");
        let d: Value = serde_json::from_str(&out.stdout).expect("JSON");
        let ev = serde_json::to_value(e).expect("JSON");
        for field in [
            "id",
            "seq",
            "time",
            "kind",
            "source",
            "token_id",
            "token_fingerprint",
            "method",
            "route",
            "resource",
            "action",
            "sensitivity",
            "decision",
            "reason",
            "status",
            "bytes_out",
            "request_id",
            "node",
            "operation",
            "target",
            "required_scope",
            "granted_scopes",
        ] {
            let api = ev.get(field).cloned().unwrap_or(Value::Null);
            let api = if api.is_null() && field == "granted_scopes" { json!([]) } else { api };
            assert_eq!(d[field], api, "leaf field {field} of event {seq}: {d} vs {ev}");
            decoded_fields += 1;
        }
        assert_eq!(d["latency_us"].as_f64().map(|us| us / 1000.0), e.latency_ms, "latency of event {seq}");

        for (cp, sz) in [(&cp1, size1), (&cp2, size2)] {
            if seq >= sz {
                continue;
            }
            let proof =
                json_body(&send_empty(c, Method::GET, &format!("/v1/audit/events/{}/proof?size={sz}", e.id)).await);
            let proof_file = write_json(&format!("proof-{seq}-{sz}.json"), &proof);
            let args = ["inclusion", "--key", &key_arg, "--checkpoint", path_str(cp), "--leaf", path_str(&leaf_file)];
            let out = verify_py(&[&args[..], &["--proof", path_str(&proof_file)]].concat());
            assert_eq!(out.code, 0, "inclusion of event {seq} in size {sz}: {out:#?}");

            // Tampered proofs are refused (for two events; each run of the verifier takes a while).
            if sz != size2 || !(seq == 0 || seq == size2 - 1) {
                continue;
            }
            let mut bad = vec![
                ("a changed index", changed(&proof, |p| p["index"] = json!(seq ^ 1))),
                ("a changed leaf hash", changed(&proof, |p| p["leaf_hash"] = flip(&p["leaf_hash"]))),
                ("another tree size", changed(&proof, |p| p["tree_size"] = json!(sz + 1))),
            ];
            if proof["hashes"].as_array().is_some_and(|h| !h.is_empty()) {
                bad.push(("a changed path hash", changed(&proof, |p| p["hashes"][0] = flip(&p["hashes"][0]))));
                bad.push((
                    "a shortened path",
                    changed(&proof, |p| {
                        p["hashes"].as_array_mut().expect("hashes").pop();
                    }),
                ));
            }
            for (what, p) in bad {
                let f = write_json("bad-proof.json", &p);
                let out = verify_py(&[&args[..], &["--proof", path_str(&f)]].concat());
                assert_eq!(out.code, 1, "{what} must be refused: {out:#?}");
                assert!(out.stderr.contains("NOT VERIFIED"), "{out:#?}");
            }
        }
    }
    assert!(decoded_fields > 100);

    // A changed leaf byte, a changed checkpoint, a bad signature, another key: all refused.
    let e = picks[3];
    let seq = e.seq.expect("a position");
    let leaf_file = dir.join(format!("leaf-{seq}.json"));
    let proof_file = dir.join(format!("proof-{seq}-{size2}.json"));
    let leaf: Value = serde_json::from_str(&fs::read_to_string(&leaf_file).expect("read")).expect("JSON");
    let mut leaf_bytes = B64.decode(leaf["leaf"].as_str().expect("leaf")).expect("base64");
    let last = leaf_bytes.len() - 1;
    leaf_bytes[last] ^= 1;
    let bad_leaf = write_json("bad-leaf.json", &json!({"index": seq, "leaf": B64.encode(&leaf_bytes)}));
    let other_key = Signer::from_seed(Verifier::parse(key.trim()).expect("key").name(), &[7u8; 32])
        .expect("a signer")
        .verifier()
        .to_string();
    let mut lines: Vec<String> = note2.lines().map(str::to_owned).collect();
    lines[1] = (size2 + 1).to_string();
    let bad_size = file("bad-size.note", &(lines.join("\n") + "\n"));
    let mut lines: Vec<String> = note2.lines().map(str::to_owned).collect();
    let sig_line = lines.last_mut().expect("a signature line");
    let (head, sig) = sig_line.rsplit_once(' ').expect("name and signature");
    let mut sig_bytes = B64.decode(sig).expect("base64");
    sig_bytes[10] ^= 1;
    *sig_line = format!("{head} {}", B64.encode(&sig_bytes));
    let bad_sig = file("bad-sig.note", &(lines.join("\n") + "\n"));
    let hyphen = file("hyphen.note", &note2.replace('\u{2014}', "-"));
    let good = |cp: &Path, leaf: &Path, key: &str| {
        verify_py(&[
            "inclusion",
            "--key",
            key,
            "--checkpoint",
            path_str(cp),
            "--leaf",
            path_str(leaf),
            "--proof",
            path_str(&proof_file),
        ])
    };
    assert_eq!(good(&cp2, &leaf_file, &key_arg).code, 0);
    for (what, out) in [
        ("a changed leaf byte", good(&cp2, &bad_leaf, &key_arg)),
        ("a checkpoint with another size", good(&bad_size, &leaf_file, &key_arg)),
        ("a changed signature", good(&bad_sig, &leaf_file, &key_arg)),
        ("a hyphen instead of the em dash", good(&hyphen, &leaf_file, &key_arg)),
        ("another key of the same name", good(&cp2, &leaf_file, &other_key)),
        ("the older checkpoint", good(&cp1, &leaf_file, &key_arg)),
    ] {
        assert_eq!(out.code, 1, "{what} must be refused: {out:#?}");
        assert!(out.stderr.contains("NOT VERIFIED"), "{what}: {out:#?}");
    }

    // Consistency between the two checkpoints, and refusals of tampered proofs.
    let cons = json_body(&send_empty(c, Method::GET, &format!("/v1/audit/consistency?from={size1}&to={size2}")).await);
    let cons_file = write_json("consistency.json", &cons);
    let consistency = |old: &Path, new: &Path, proof: &Path| {
        verify_py(&[
            "consistency",
            "--key",
            &key_arg,
            "--old",
            path_str(old),
            "--new",
            path_str(new),
            "--proof",
            path_str(proof),
        ])
    };
    let out = consistency(&cp1, &cp2, &cons_file);
    assert_eq!(out.code, 0, "consistency {size1} -> {size2}: {out:#?}");
    let bad_cons = write_json("bad-consistency.json", &changed(&cons, |p| p["hashes"][0] = flip(&p["hashes"][0])));
    for (what, out) in [
        ("a changed hash", consistency(&cp1, &cp2, &bad_cons)),
        ("the checkpoints swapped", consistency(&cp2, &cp1, &cons_file)),
        ("a forged newer checkpoint", consistency(&cp1, &bad_sig, &cons_file)),
    ] {
        assert_eq!(out.code, 1, "{what} must be refused: {out:#?}");
    }
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The HTTP endpoints.

fn content_type(resp: &cli::client::RawResponse) -> String {
    resp.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

fn hash_of(v: &Value) -> Hash {
    B64.decode(v.as_str().expect("a base64 string")).expect("base64").try_into().expect("32 bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_endpoints_answer_in_their_documented_shapes() {
    let s = TestServer::start().await;
    let c = &s.client;
    traffic(&s.addr, c, "http").await;

    // The key and checkpoints are text/plain; the checkpoint verifies with the key.
    let resp = send_empty(c, Method::GET, "/v1/audit/key").await;
    assert_eq!(resp.status.as_u16(), 200);
    assert!(content_type(&resp).starts_with("text/plain"), "{}", content_type(&resp));
    let key_text = String::from_utf8(resp.body.to_vec()).expect("UTF-8");
    assert!(key_text.ends_with('\n') && key_text.lines().count() == 1, "one line: {key_text:?}");
    let verifier = Verifier::parse(key_text.trim()).expect("a verifier key");
    assert!(verifier.name().starts_with("tokentrail/"), "{}", verifier.name());

    let open = |note: &str| {
        ledger::checkpoint::open_checkpoint(note, verifier.name(), std::slice::from_ref(&verifier))
            .unwrap_or_else(|e| panic!("the checkpoint does not verify ({e}): {note}"))
    };
    let resp = send_empty(c, Method::POST, "/v1/audit/checkpoint").await;
    assert_eq!(resp.status.as_u16(), 200);
    assert!(content_type(&resp).starts_with("text/plain"), "{}", content_type(&resp));
    let note1 = String::from_utf8(resp.body.to_vec()).expect("UTF-8");
    let cp1 = open(&note1);
    let lines: Vec<&str> = note1.split('\n').collect();
    assert_eq!(lines.len(), 6, "origin, size, root, blank, signature, and the final newline: {note1:?}");
    assert_eq!(lines[0], verifier.name());
    assert_eq!(lines[3], "");
    assert!(lines[4].starts_with(&format!("\u{2014} {} ", verifier.name())), "{:?}", lines[4]);
    let n1 = s.engine().store().event_count().expect("count");
    assert_eq!(cp1.size(), n1 - 1, "POST signs the log as it was before its own read is recorded");

    let resp = send_empty(c, Method::GET, "/v1/audit/checkpoint").await;
    assert_eq!(resp.status.as_u16(), 200);
    assert!(content_type(&resp).starts_with("text/plain"));
    let latest = open(std::str::from_utf8(&resp.body).expect("UTF-8"));
    assert!(latest.size() >= cp1.size());

    traffic(&s.addr, c, "http-2").await;
    let note2 = c.text(Method::POST, "/v1/audit/checkpoint").await.expect("a checkpoint");
    let cp2 = open(&note2);
    assert!(cp2.size() > cp1.size());

    // Leaves and inclusion proofs.
    let events = c.list_events("?order=asc&limit=1000").await.expect("events").events;
    let stored = s.engine().store().checkpoints().expect("checkpoints");
    for e in events.iter().filter(|e| e.seq.is_some_and(|q| q < cp1.size())).step_by(5) {
        let index = e.seq.expect("a position");
        let resp = send_empty(c, Method::GET, &format!("/v1/audit/events/{}/leaf", e.id)).await;
        assert_eq!(resp.status.as_u16(), 200);
        assert_eq!(content_type(&resp), "application/json");
        let leaf = json_body(&resp);
        assert_eq!(keys(&leaf), ["index", "leaf"]);
        assert_eq!(leaf["index"], index);
        let bytes = B64.decode(leaf["leaf"].as_str().expect("base64")).expect("base64");
        assert_eq!(&bytes[..4], b"TTL\x01", "magic and version");
        assert_eq!(bytes[4..12], index.to_be_bytes(), "the position is in the leaf");
        let leaf_hash = merkle::leaf_hash(&bytes);

        for size in [None, Some(cp1.size()), Some(cp2.size())] {
            let path = match size {
                Some(sz) => format!("/v1/audit/events/{}/proof?size={sz}", e.id),
                None => format!("/v1/audit/events/{}/proof", e.id),
            };
            let resp = send_empty(c, Method::GET, &path).await;
            assert_eq!(resp.status.as_u16(), 200, "{path}");
            let proof = json_body(&resp);
            assert_eq!(keys(&proof), ["hashes", "index", "leaf_hash", "tree_size"]);
            assert_eq!(proof["index"], index);
            assert_eq!(hash_of(&proof["leaf_hash"]), leaf_hash, "leaf_hash = SHA-256(0x00 || leaf)");
            let tree_size = proof["tree_size"].as_u64().expect("a size");
            let root = match size {
                Some(sz) => {
                    assert_eq!(tree_size, sz);
                    if sz == cp1.size() { *cp1.root() } else { *cp2.root() }
                }
                None => {
                    // The default is the latest checkpoint: a signed one.
                    let all = s.engine().store().checkpoints().expect("checkpoints");
                    all.iter().find(|c| c.size == tree_size).map(|c| c.root).unwrap_or_else(|| {
                        panic!("the default proof size {tree_size} is not a signed checkpoint's: {stored:?}")
                    })
                }
            };
            let hashes: Vec<Hash> = proof["hashes"].as_array().expect("hashes").iter().map(hash_of).collect();
            merkle::verify_inclusion(index, tree_size, &leaf_hash, &hashes, &root)
                .unwrap_or_else(|err| panic!("the proof of {index} in {tree_size} does not verify: {err}"));
        }
    }

    // A consistency proof between the two checkpoints.
    let resp =
        send_empty(c, Method::GET, &format!("/v1/audit/consistency?from={}&to={}", cp1.size(), cp2.size())).await;
    assert_eq!(resp.status.as_u16(), 200);
    let cons = json_body(&resp);
    assert_eq!(keys(&cons), ["from", "hashes", "to"]);
    assert_eq!((cons["from"].as_u64(), cons["to"].as_u64()), (Some(cp1.size()), Some(cp2.size())));
    let hashes: Vec<Hash> = cons["hashes"].as_array().expect("hashes").iter().map(hash_of).collect();
    merkle::verify_consistency(cp1.size(), cp2.size(), cp1.root(), cp2.root(), &hashes).expect("consistent");

    // Bad parameters: precise 400s; unknown events: 404; nothing is recorded as an erasure.
    let some = &events[3];
    let idx = some.seq.expect("a position");
    let n = s.engine().store().event_count().expect("count");
    let proof = |q: &str| format!("/v1/audit/events/{}/proof?{q}", some.id);
    for (path, field) in [
        (proof("size=0"), "size"),
        (proof(&format!("size={idx}")), "size"),
        (proof(&format!("size={}", n + 1000)), "size"),
        ("/v1/audit/consistency?from=0&to=1".to_owned(), "from"),
        (format!("/v1/audit/consistency?from={}&to={}", cp2.size(), cp1.size()), "from"),
        (format!("/v1/audit/consistency?from=1&to={}", n + 1000), "from"),
    ] {
        let resp = send_empty(c, Method::GET, &path).await;
        let p = assert_problem(&resp, 400, "invalid_field");
        let fields: Vec<String> = field_errors(&p).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, [field], "{path}: {p}");
    }
    for path in [
        proof("size=lots"),
        proof("colour=red"),
        "/v1/audit/consistency".to_owned(),
        "/v1/audit/consistency?from=1".to_owned(),
        "/v1/audit/consistency?from=x&to=2".to_owned(),
    ] {
        let resp = send_empty(c, Method::GET, &path).await;
        assert_problem(&resp, 400, "invalid_request");
    }
    for path in
        ["/v1/audit/events/ev_nope/leaf", "/v1/audit/events/ev_nope/proof", "/v1/audit/events/ev_nope/proof?size=2"]
    {
        let resp = send_empty(c, Method::GET, path).await;
        assert_problem(&resp, 404, "not_found");
    }
    let erasures_before = c.list_events("?limit=1000").await.expect("events").events;
    let erasures_before = erasures_before.iter().filter(|e| e.operation.as_deref() == Some("audit.erase")).count();
    for (what, body) in [
        ("both fields", json!({"owner": "a", "source_ip": "10.0.0.1"})),
        ("neither field", json!({})),
        ("an empty owner", json!({"owner": ""})),
    ] {
        let resp = send_json(c, Method::POST, "/v1/audit/erase", &body).await;
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        assert_eq!(resp.status.as_u16(), 400, "{what}: {text}");
        assert_problem(&resp, 400, "invalid_field");
    }
    let resp = send_json(c, Method::POST, "/v1/audit/erase", &json!({"owner": "a", "colour": "red"})).await;
    assert_problem(&resp, 400, "invalid_request");
    let after = c.list_events("?limit=1000").await.expect("events").events;
    assert_eq!(
        after.iter().filter(|e| e.operation.as_deref() == Some("audit.erase")).count(),
        erasures_before,
        "a refused erasure records no erasure"
    );

    // The ledger endpoints need the admin scope.
    let anonymous = s.client_with(None);
    for (method, path) in [
        (Method::GET, "/v1/audit/key"),
        (Method::GET, "/v1/audit/checkpoint"),
        (Method::POST, "/v1/audit/checkpoint"),
        (Method::GET, "/v1/audit/consistency?from=1&to=2"),
    ] {
        let resp = send_empty(&anonymous, method, path).await;
        assert_problem(&resp, 401, "unauthorized");
    }
    let reader = c.create_token(&token_request("reader", "team-http", &["orders:read"])).await.expect("create");
    let as_reader = s.client_with(Some(&reader.token));
    let resp = send_empty(&as_reader, Method::GET, &format!("/v1/audit/events/{}/leaf", some.id)).await;
    assert_problem(&resp, 403, "forbidden");
    let resp = send_json(&as_reader, Method::POST, "/v1/audit/erase", &json!({"owner": "team-http"})).await;
    assert_problem(&resp, 403, "forbidden");
    s.stop().await;
}
