//! Ingest of tokentrail NDJSON (the audit event schema, one event per line) into the ledger,
//! for `POST /v1/audit/ingest` and the offline `tokentrail ingest`.
//!
//! Two passes over the input: the first parses and checks every line (schema, reason codes,
//! times, ids unique in the input and in the ledger) and lists every bad line with its number;
//! only when nothing is wrong (or bad lines are to be skipped) does the second pass append, in
//! batches. A bad line therefore never leaves a partly ingested file behind. Memory stays
//! constant in the number of lines, apart from 16 bytes per line that carries its own id.

use std::collections::HashSet;
use std::io::BufRead;

use ledger::event::Event;
use proto::{IngestResult, LineError};
use sha2::{Digest, Sha256};
use store::Store;

use crate::views;

/// Events appended per transaction.
const BATCH: usize = 10_000;

/// How an ingest treats bad lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Skip bad lines instead of failing.
    pub skip_invalid: bool,
}

/// The first errors of a failed ingest (at most this many are listed).
const MAX_LISTED: usize = 1000;

fn id_key(id: &str) -> [u8; 16] {
    let h = Sha256::digest(id.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&h[..16]);
    k
}

/// One NDJSON line as an event in the PRODUCT.md schema, unchecked; the error names the column
/// (the caller names the line).
pub fn parse_json(line: &str) -> Result<proto::IngestEvent, String> {
    serde_json::from_str(line).map_err(|e| {
        // serde counts lines within this one line.
        let text = e.to_string();
        match text.rsplit_once(" at line ") {
            Some((head, _)) => format!("{head} (column {})", e.column()),
            None => text,
        }
    })
}

fn parse(line: &str) -> Result<(Option<String>, Event), String> {
    views::ingest_event(parse_json(line)?)
}

/// Checks every line; returns the bad ones (1-based numbers). `progress(lines)` is called now
/// and then.
pub fn check<R: BufRead>(
    input: R,
    store: &dyn Store,
    progress: &mut dyn FnMut(u64),
) -> Result<(u64, Vec<LineError>), String> {
    let mut errors = Vec::new();
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut pending: Vec<(u64, String)> = Vec::new();
    let mut lines = 0u64;
    let flush = |pending: &mut Vec<(u64, String)>, errors: &mut Vec<LineError>| -> Result<(), String> {
        if pending.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = pending.iter().map(|(_, id)| id.clone()).collect();
        let existing = store.existing_ids(&ids).map_err(|e| e.to_string())?;
        for (line, id) in pending.drain(..) {
            if existing.contains(&id) {
                errors.push(LineError { line, message: format!("id: {id:?} is already in the ledger") });
            }
        }
        Ok(())
    };
    for (i, line) in input.lines().enumerate() {
        let n = i as u64 + 1;
        lines = n;
        let line = line.map_err(|e| format!("line {n}: cannot read: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse(&line) {
            Err(m) => errors.push(LineError { line: n, message: m }),
            Ok((Some(id), _)) => {
                if !seen.insert(id_key(&id)) {
                    errors.push(LineError { line: n, message: format!("id: {id:?} appears twice in the input") });
                } else {
                    pending.push((n, id));
                }
            }
            Ok((None, _)) => {}
        }
        if pending.len() >= 500 {
            flush(&mut pending, &mut errors)?;
        }
        if n.is_multiple_of(100_000) {
            progress(n);
        }
    }
    flush(&mut pending, &mut errors)?;
    progress(lines);
    errors.sort_by_key(|e| e.line);
    Ok((lines, errors))
}

/// Appends every good line (skipping the `bad` ones) in batches through `append`, assigning ids
/// where absent. Returns how many were appended.
pub fn append<R: BufRead>(
    input: R,
    bad: &HashSet<u64>,
    new_id: &mut dyn FnMut() -> Result<String, String>,
    append: &mut dyn FnMut(Vec<Event>) -> Result<(), String>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, String> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut total = 0u64;
    for (i, line) in input.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.map_err(|e| format!("line {n}: cannot read: {e}"))?;
        if line.trim().is_empty() || bad.contains(&n) {
            continue;
        }
        let (id, mut e) = parse(&line).map_err(|m| format!("line {n} changed while ingesting: {m}"))?;
        e.id = match id {
            Some(id) => id,
            None => new_id()?,
        };
        batch.push(e);
        if batch.len() >= BATCH {
            total += batch.len() as u64;
            append(std::mem::take(&mut batch))?;
            progress(total);
        }
    }
    if !batch.is_empty() {
        total += batch.len() as u64;
        append(batch)?;
        progress(total);
    }
    Ok(total)
}

/// The whole ingest over an input that can be read twice.
pub fn run<R: BufRead>(
    open: &mut dyn FnMut() -> Result<R, String>,
    store: &dyn Store,
    options: Options,
    new_id: &mut dyn FnMut() -> Result<String, String>,
    append_batch: &mut dyn FnMut(Vec<Event>) -> Result<(), String>,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<IngestResult, IngestFailure> {
    let (_, errors) =
        check(open().map_err(IngestFailure::Io)?, store, &mut |n| progress("checked", n)).map_err(IngestFailure::Io)?;
    if !errors.is_empty() && !options.skip_invalid {
        let total = errors.len();
        let mut listed = errors;
        listed.truncate(MAX_LISTED);
        return Err(IngestFailure::Invalid { errors: listed, total });
    }
    let bad: HashSet<u64> = errors.iter().map(|e| e.line).collect();
    let ingested =
        append(open().map_err(IngestFailure::Io)?, &bad, new_id, append_batch, &mut |n| progress("ingested", n))
            .map_err(IngestFailure::Io)?;
    Ok(IngestResult { ingested, skipped: errors.len() as u64, errors })
}

/// Why an ingest stored nothing (or, for `Io` during the second pass, stopped).
#[derive(Debug)]
pub enum IngestFailure {
    /// Bad lines; nothing was appended.
    Invalid {
        /// The first bad lines.
        errors: Vec<LineError>,
        /// How many lines were bad.
        total: usize,
    },
    /// Reading the input or writing the ledger failed.
    Io(String),
}
