//! Conventions checked on every test run: every Rust module starts with a `//!` doc line, the
//! pure crates do not depend on I/O or async crates, and only `proto` derives `Serialize`.

#![allow(clippy::unwrap_used)] // Test code: a failed read should fail the test loudly.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target" || n == "testdata") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn crate_sources() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for e in fs::read_dir(root().join("crates")).unwrap().flatten() {
        let mut files = Vec::new();
        rust_files(&e.path(), &mut files);
        let name = e.file_name().to_string_lossy().into_owned();
        out.extend(files.into_iter().map(|f| (name.clone(), f)));
    }
    assert!(out.len() > 20, "found only {} Rust files; is the layout still crates/*?", out.len());
    out
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let missing: Vec<String> = crate_sources()
        .into_iter()
        .filter(|(_, f)| !fs::read_to_string(f).unwrap().trim_start().starts_with("//!"))
        .map(|(_, f)| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(missing.is_empty(), "modules without a //! doc line (say what the module is for):\n{}", missing.join("\n"));
}

#[test]
fn pure_crates_do_no_io() {
    let banned = ["tokio", "rusqlite", "axum", "hyper", "serde", "tracing", "getrandom", "reqwest"];
    for krate in ["token", "ledger"] {
        let manifest = fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
        let deps = manifest.split("[dependencies]").nth(1).unwrap_or("").split("\n[").next().unwrap_or("");
        for line in deps.lines() {
            let name = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
            assert!(
                !banned.contains(&name),
                "pure crate `{krate}` depends on `{name}`: move the I/O to engine or store"
            );
        }
    }
}

#[test]
fn only_proto_derives_serialize() {
    let offenders: Vec<String> = crate_sources()
        .into_iter()
        .filter(|(krate, f)| {
            krate != "proto"
                && krate != "tidy"
                && fs::read_to_string(f).unwrap().lines().any(|l| l.contains("derive(") && l.contains("Serialize"))
        })
        .map(|(_, f)| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "Serialize derived outside proto (wire types belong in proto):\n{}",
        offenders.join("\n")
    );
}
