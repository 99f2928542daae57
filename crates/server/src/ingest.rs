//! Ingest of tokentrail NDJSON (the audit event schema, one event per line) into the ledger,
//! for `POST /v1/audit/ingest` and the offline `tokentrail ingest`.
//!
//! Two passes over the input: the first parses and checks every line (schema, reason codes,
//! times, ids unique in the input and in the ledger) and lists every bad line with its number;
//! only when nothing is wrong (or bad lines are to be skipped) does the second pass append, in
//! batches, parsing on a second thread while the store writes. A bad line therefore never leaves
//! a partly ingested file behind. Memory stays
//! constant in the number of lines, apart from 16 bytes per line that carries its own id.
//!
//! [`parse_line`] is the one reader of such a line (and [`parse_line_into`], the same into an
//! event that is reused); the offline `tokentrail detect` and the simulator's scorer use it too,
//! so its cost is the parsing cost of every NDJSON path.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::sync::mpsc::SyncSender;

use jiff::Timestamp;
use ledger::event::{Event, Kind, Verdict};
use proto::{IngestResult, LineError};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use store::Store;

/// Events appended per transaction. Each transaction writes every index page it touched once,
/// so bigger batches write less per event once the indexes outgrow the cache (the investigate
/// bench's store appends, 1M events: 11.8k events/s in batches of 10,000, 17.8k in batches of
/// 100,000); 50,000 events hold about 50 MB.
const BATCH: usize = 50_000;

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

/// A string field that is only looked at (a time, a code, a name copied into the event): borrowed
/// from the line unless it holds escapes. Reads exactly as `String` does, errors included.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // What `String` expects, so that a wrong type reads the same.
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_string(Visitor).map(Text)
    }
}

/// A list of strings as read: the first few in place (a line's lists hold one to three), the
/// rest in a `Vec`, so that most lines allocate no list. Reads exactly as `Vec<String>` does,
/// errors included.
#[derive(Default)]
struct Texts<'a> {
    first: [Option<Text<'a>>; 4],
    more: Vec<Text<'a>>,
}

impl Texts<'_> {
    fn len(&self) -> usize {
        self.first.iter().flatten().count() + self.more.len()
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.first.iter().flatten().chain(&self.more).map(|t| &*t.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Texts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Texts<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // What `Vec` expects, so that a wrong type reads the same.
                f.write_str("a sequence")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut texts = Texts::default();
                let mut i = 0;
                while let Some(t) = seq.next_element::<Text<'de>>()? {
                    match texts.first.get_mut(i) {
                        Some(slot) => *slot = Some(t),
                        None => texts.more.push(t),
                    }
                    i += 1;
                }
                Ok(texts)
            }
        }
        d.deserialize_seq(Visitor)
    }
}

/// One line as read: `proto::IngestEvent` field for field (the same names, order, defaults and
/// unknown-field rejection, so every error reads the same), but the fields that are only checked
/// or copied are borrowed instead of allocated. `proto::IngestEvent` stays the documented schema;
/// a test keeps the two in step.
///
/// Named as the schema type because serde's messages name the type ("expected struct
/// IngestEvent").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestEvent<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(borrow)]
    time: Text<'a>,
    #[serde(default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    source: Option<Text<'a>>,
    #[serde(default, borrow)]
    token_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    token_fingerprint: Option<Text<'a>>,
    #[serde(default, borrow)]
    owner: Option<Text<'a>>,
    #[serde(default, borrow)]
    source_ip: Option<Text<'a>>,
    #[serde(default, borrow)]
    user_agent: Option<Text<'a>>,
    #[serde(default, borrow)]
    method: Option<Text<'a>>,
    #[serde(default, borrow)]
    path: Option<Text<'a>>,
    #[serde(default, borrow)]
    route: Option<Text<'a>>,
    #[serde(default, borrow)]
    resource: Option<Text<'a>>,
    #[serde(default, borrow)]
    action: Option<Text<'a>>,
    #[serde(default, borrow)]
    sensitivity: Texts<'a>,
    #[serde(default, borrow)]
    decision: Option<Text<'a>>,
    #[serde(borrow)]
    reason: Text<'a>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    latency_ms: Option<f64>,
    #[serde(default)]
    bytes_out: Option<u64>,
    #[serde(default, borrow)]
    request_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    node: Option<Text<'a>>,
    #[serde(default, borrow)]
    operation: Option<Text<'a>>,
    #[serde(default, borrow)]
    target: Option<Text<'a>>,
    #[serde(default, borrow)]
    required_scope: Option<Text<'a>>,
    #[serde(default, borrow)]
    granted_scopes: Texts<'a>,
    #[serde(default, borrow)]
    explanation: Option<Text<'a>>,
    #[serde(default)]
    details: BTreeMap<String, String>,
    /// Ignored on ingest (an ingested event's values are present).
    #[serde(default)]
    #[allow(dead_code)]
    erased: bool,
}

/// One NDJSON line, checked.
#[derive(Debug)]
pub struct Parsed {
    /// The line's `id`: `None` when one must be assigned (the event's own `id` is empty).
    pub id: Option<String>,
    /// The line's `seq` (a position in the ledger it was exported from; never stored).
    pub seq: Option<u64>,
    /// The event: every present field checked, absent ones defaulted (`kind` access, `source`
    /// ingest, `decision` from the reason).
    pub event: Event,
}

/// One NDJSON line as an event in the PRODUCT.md schema, checked; the error names the field or
/// the column (the caller names the line).
pub fn parse_line(line: &str) -> Result<Parsed, String> {
    let mut event = Event::new(String::new(), Timestamp::UNIX_EPOCH, Kind::Access, "", token::Reason::Ok);
    let head = parse_line_into(line, &mut event)?;
    let id = head.has_id.then(|| std::mem::take(&mut event.id));
    Ok(Parsed { id, seq: head.seq, event })
}

/// What a line says beside its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The line has an `id` (now the event's); without one the event's `id` is empty.
    pub has_id: bool,
    /// The line's `seq` (a position in the ledger it was exported from; never stored).
    pub seq: Option<u64>,
}

/// [`parse_line`] into an event that is already there, reusing its strings' memory: what a
/// reader of many lines does to allocate nothing per line once its events are warm. Every field
/// of `into` is overwritten, with exactly what `parse_line` gives (`seq` `None`, the line's `id`
/// or an empty one); on an error `into` holds a mix of old and new values and is only good for
/// reuse.
pub fn parse_line_into(line: &str, into: &mut Event) -> Result<Head, String> {
    let v: IngestEvent<'_> = serde_json::from_str(line).map_err(|e| {
        // serde counts lines within this one line.
        let text = e.to_string();
        match text.rsplit_once(" at line ") {
            Some((head, _)) => format!("{head} (column {})", e.column()),
            None => text,
        }
    })?;
    let seq = v.seq;
    let has_id = v.id.is_some();
    fill(v, into)?;
    Ok(Head { has_id, seq })
}

/// Checks a line's values and writes them into `e`.
fn fill(v: IngestEvent<'_>, e: &mut Event) -> Result<(), String> {
    let time: Timestamp = v.time.0.parse().map_err(|_| format!("time: {:?} is not an RFC 3339 time", v.time.0))?;
    let kind = match v.kind.as_ref().map(|k| &*k.0) {
        None => Kind::Access,
        Some(k) => Kind::parse(k).ok_or_else(|| format!("kind: {k:?} is not access or admin"))?,
    };
    let reason =
        token::Reason::parse(&v.reason.0).ok_or_else(|| format!("reason: {:?} is not a reason code", v.reason.0))?;
    if let Some(d) = v.decision.as_ref().map(|d| &*d.0) {
        let d = Verdict::parse(d).ok_or_else(|| format!("decision: {d:?} is not allow or deny"))?;
        if d != Verdict::of(reason) {
            return Err(format!("decision: {:?} contradicts reason {:?}", d.as_str(), v.reason.0));
        }
    }
    if let Some(id) = &v.id
        && (id.0.is_empty() || id.0.len() > 128 || id.0.chars().any(char::is_control))
    {
        return Err("id: must be 1 to 128 printable characters".to_owned());
    }
    let source = v.source.as_ref().map_or("ingest", |s| &*s.0);
    if source.is_empty() || source.len() > 64 {
        return Err("source: must be 1 to 64 characters".to_owned());
    }
    // An address never holds a control character: look for one before parsing.
    if let Some(ip) = &v.source_ip
        && ip.0.chars().any(char::is_control)
        && ip.0.parse::<std::net::IpAddr>().is_err()
    {
        return Err("source_ip: must not contain control characters".to_owned());
    }
    let latency_us = match v.latency_ms {
        Some(ms) if ms.is_finite() && ms >= 0.0 => Some((ms * 1000.0).round() as u64),
        Some(ms) => return Err(format!("latency_ms: {ms} is not a duration")),
        None => None,
    };
    // Every field, in the order of `Event`, so that none keeps a value of the event before.
    put(&mut e.id, v.id.as_ref().map_or("", |id| &*id.0));
    e.seq = None;
    e.time = time;
    e.kind = kind;
    put(&mut e.source, source);
    put_some(&mut e.token_id, v.token_id);
    put_some(&mut e.token_fingerprint, v.token_fingerprint);
    put_some(&mut e.owner, v.owner);
    put_some(&mut e.source_ip, v.source_ip);
    put_some(&mut e.user_agent, v.user_agent);
    put_some(&mut e.method, v.method);
    put_some(&mut e.path, v.path.map(|p| Text(without_query_redacted(p.0))));
    put_some(&mut e.route, v.route);
    put_some(&mut e.resource, v.resource);
    put_some(&mut e.action, v.action);
    put_all(&mut e.sensitivity, &v.sensitivity);
    e.decision = Verdict::of(reason);
    e.reason = reason;
    e.status = v.status;
    e.latency_us = latency_us;
    e.bytes_out = v.bytes_out;
    put_some(&mut e.request_id, v.request_id);
    put_some(&mut e.node, v.node);
    put_some(&mut e.operation, v.operation);
    put_some(&mut e.target, v.target);
    put_some(&mut e.required_scope, v.required_scope);
    put_all(&mut e.granted_scopes, &v.granted_scopes);
    put_some(&mut e.explanation, v.explanation);
    e.details = v.details;
    e.erased = false;
    Ok(())
}

/// `*to = from.to_owned()` in the memory `to` already has.
fn put(to: &mut String, from: &str) {
    to.clear();
    to.push_str(from);
}

/// An optional string field, in the memory the field already has when it had a value.
fn put_some(to: &mut Option<String>, from: Option<Text<'_>>) {
    match (to.as_mut(), from) {
        (Some(s), Some(t)) => put(s, &t.0),
        (None, Some(t)) => *to = Some(t.0.into_owned()),
        (_, None) => *to = None,
    }
}

/// A list of strings, in the memory of the strings the list already has.
fn put_all(to: &mut Vec<String>, from: &Texts<'_>) {
    to.truncate(from.len());
    for (i, t) in from.iter().enumerate() {
        match to.get_mut(i) {
            Some(s) => put(s, t),
            None => to.push(t.to_owned()),
        }
    }
}

/// The path without its query string, credentials in it redacted; the path itself (no copy) when
/// that changes nothing, as for nearly every path.
fn without_query_redacted(p: Cow<'_, str>) -> Cow<'_, str> {
    let cut = p.split('?').next().unwrap_or(&p);
    match token::redact_path(cut) {
        Cow::Borrowed(same) if same.len() == p.len() => p,
        changed => Cow::Owned(changed.into_owned()),
    }
}

/// `BufRead::lines` without a new `String` per line: one buffer, reused.
pub struct Lines<R> {
    input: R,
    buf: String,
    n: u64,
}

impl<R: BufRead> Lines<R> {
    /// Lines of `input`.
    pub fn new(input: R) -> Lines<R> {
        Lines { input, buf: String::new(), n: 0 }
    }

    /// The next line (1-based number, text without `\n` or `\r\n`), `None` at the end.
    #[allow(clippy::should_implement_trait)] // It lends its buffer, which `Iterator` cannot.
    pub fn next(&mut self) -> Option<(u64, std::io::Result<&str>)> {
        self.buf.clear();
        self.n += 1;
        match self.input.read_line(&mut self.buf) {
            Ok(0) => None,
            Ok(_) => {
                let mut line = self.buf.as_str();
                if let Some(l) = line.strip_suffix('\n') {
                    line = l.strip_suffix('\r').unwrap_or(l);
                }
                Some((self.n, Ok(line)))
            }
            Err(e) => Some((self.n, Err(e))),
        }
    }
}

fn parse(line: &str) -> Result<(Option<String>, Event), String> {
    parse_line(line).map(|p| (p.id, p.event))
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
    let mut input = Lines::new(input);
    while let Some((n, line)) = input.next() {
        lines = n;
        let line = line.map_err(|e| format!("line {n}: cannot read: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse(line) {
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

/// A line's number and its event (and id), or what is wrong with it.
type ParsedLine = (u64, Result<(Option<String>, Event), String>);

/// What [`read_parsed`] hands over.
enum Read {
    /// Parsed lines of input `.0`.
    Lines(usize, Vec<ParsedLine>),
    /// Input `.0` could not be read.
    Failed(usize, String),
}

/// The reading thread of both appending paths: every line of `inputs` in order, parsed, in
/// chunks of [`CHUNK`], but blank lines and those `skip(input, line)` names. It stops at a read
/// failure, or when the receiver of `send` is gone.
fn read_parsed<R: BufRead>(inputs: Vec<R>, skip: &dyn Fn(usize, u64) -> bool, send: &SyncSender<Read>) {
    for (k, input) in inputs.into_iter().enumerate() {
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut lines = Lines::new(input);
        while let Some((n, line)) = lines.next() {
            match line {
                Err(e) => {
                    let _ = send.send(Read::Failed(k, format!("line {n}: cannot read: {e}")));
                    return;
                }
                Ok(line) if line.trim().is_empty() || skip(k, n) => continue,
                Ok(line) => chunk.push((n, parse(line))),
            }
            if chunk.len() >= CHUNK
                && send.send(Read::Lines(k, std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))).is_err()
            {
                return;
            }
        }
        if !chunk.is_empty() && send.send(Read::Lines(k, chunk)).is_err() {
            return;
        }
    }
}

/// Events the reader hands over at a time: small, so that the reader's lead costs little memory.
const CHUNK: usize = 4096;

/// Appends every good line (skipping the `bad` ones) in batches through `append`, assigning ids
/// where absent. Returns how many were appended.
///
/// Lines are read and parsed on a second thread while this one appends, so parsing and the
/// store's writes overlap; the reader stays at most two chunks ahead of the batch being built.
pub fn append<R: BufRead + Send>(
    input: R,
    bad: &HashSet<u64>,
    new_id: &mut dyn FnMut() -> Result<String, String>,
    append: &mut dyn FnMut(Vec<Event>) -> Result<(), String>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, String> {
    std::thread::scope(|scope| {
        let (send, chunks) = std::sync::mpsc::sync_channel::<Read>(2);
        scope.spawn(move || read_parsed(vec![input], &|_, n| bad.contains(&n), &send));
        // Leaving early drops `chunks`, which ends the reader at its next send.
        let mut batch = Vec::with_capacity(BATCH);
        let mut total = 0u64;
        for read in chunks {
            let lines = match read {
                Read::Lines(_, lines) => lines,
                Read::Failed(_, m) => return Err(m),
            };
            for (n, parsed) in lines {
                let (id, mut e) = parsed.map_err(|m| format!("line {n} changed while ingesting: {m}"))?;
                e.id = match id {
                    Some(id) => id,
                    None => new_id()?,
                };
                batch.push(e);
            }
            if batch.len() >= BATCH {
                total += batch.len() as u64;
                append(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))?;
                progress(total);
            }
        }
        if !batch.is_empty() {
            total += batch.len() as u64;
            append(batch)?;
            progress(total);
        }
        Ok(total)
    })
}

/// The whole ingest over an input that can be read twice.
pub fn run<R: BufRead + Send>(
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

/// The offline ingest (`tokentrail ingest --data-dir`): every input in one pass and one
/// transaction, into a store that is this ingest's alone (the server stopped).
///
/// Lines are read and parsed on a second thread. Ids are checked as they come, against the
/// lines before them (in every input) and the ledger, and good lines are appended in batches of
/// one transaction ([`Store::append_all`]), which commits only at the end: a bad line (unless
/// skipped) or a failure anywhere stores nothing. After the first bad line nothing more is
/// appended, but the rest is still read so that every bad line is listed. Against [`run`]'s
/// two passes this parses each line once and commits once; the price is that other writers
/// wait until the end, which is why it is for a stopped server only.
///
/// `expected` is about how many events the inputs hold (0: unknown), for the store to choose how
/// to index them ([`Store::append_all`]). A failure names the input it is about (its index in
/// `inputs`), when it is about one.
pub fn ingest_exclusive<R: BufRead + Send>(
    inputs: Vec<R>,
    expected: u64,
    store: &dyn Store,
    options: Options,
    new_id: &mut dyn FnMut() -> Result<String, String>,
    progress: &mut dyn FnMut(u64),
) -> Result<IngestResult, (Option<usize>, IngestFailure)> {
    std::thread::scope(|scope| {
        let (send, reads) = std::sync::mpsc::sync_channel::<Read>(2);
        scope.spawn(move || read_parsed(inputs, &|_, _| false, &send));

        // The store is this ingest's alone, so what it holds now is all an id can clash with
        // besides the lines before it.
        let ledger_empty = store.event_count().is_ok_and(|n| n == 0);
        let mut seen: HashSet<[u8; 16]> = HashSet::new();
        let mut errors: Vec<(usize, LineError)> = Vec::new();
        let mut fatal: Option<(Option<usize>, String)> = None;
        let mut batch: Vec<Event> = Vec::with_capacity(BATCH);
        let mut handed = 0u64;
        let mut ended = false;
        let mut next = |load: &dyn store::Load| -> store::Batch {
            if ended {
                return store::Batch::End;
            }
            // Appending stops at the first fatal failure, or bad line unless bad lines are skipped.
            let stopped =
                |fatal: &Option<_>, errors: &Vec<_>| fatal.is_some() || (!errors.is_empty() && !options.skip_invalid);
            loop {
                let Ok(read) = reads.recv() else {
                    ended = true;
                    if stopped(&fatal, &errors) {
                        return store::Batch::Abort;
                    }
                    handed += batch.len() as u64;
                    progress(handed);
                    return store::Batch::Events(std::mem::take(&mut batch));
                };
                let (k, lines) = match read {
                    Read::Lines(k, lines) => (k, lines),
                    Read::Failed(k, m) => {
                        fatal = Some((Some(k), m));
                        ended = true;
                        return store::Batch::Abort;
                    }
                };
                let mut good = Vec::with_capacity(lines.len());
                for (n, parsed) in lines {
                    match parsed {
                        Err(m) => errors.push((k, LineError { line: n, message: m })),
                        Ok((Some(id), _)) if !seen.insert(id_key(&id)) => errors.push((
                            k,
                            LineError { line: n, message: format!("id: {id:?} appears twice in the input") },
                        )),
                        Ok(p) => good.push((n, p)),
                    }
                }
                // An empty ledger holds none of them: no lookups on the writing thread.
                let ids: Vec<String> =
                    if ledger_empty { Vec::new() } else { good.iter().filter_map(|(_, (id, _))| id.clone()).collect() };
                let existing = match load.existing_ids(&ids) {
                    Ok(found) => found,
                    Err(e) => {
                        fatal = Some((None, e.to_string()));
                        ended = true;
                        return store::Batch::Abort;
                    }
                };
                for (n, (id, mut e)) in good {
                    if let Some(id) = id.as_ref().filter(|id| existing.contains(*id)) {
                        errors
                            .push((k, LineError { line: n, message: format!("id: {id:?} is already in the ledger") }));
                        continue;
                    }
                    if stopped(&fatal, &errors) {
                        continue;
                    }
                    e.id = match id {
                        Some(id) => id,
                        None => match new_id() {
                            Ok(id) => id,
                            Err(m) => {
                                fatal = Some((None, m));
                                ended = true;
                                return store::Batch::Abort;
                            }
                        },
                    };
                    batch.push(e);
                }
                if stopped(&fatal, &errors) {
                    batch.clear();
                } else if batch.len() >= BATCH {
                    handed += batch.len() as u64;
                    progress(handed);
                    return store::Batch::Events(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            }
        };
        let stored = store.append_all(expected, &mut next);
        // The reader may still be reading (after an early end): without `reads`, its next send
        // fails and it stops, so the scope can end.
        drop(reads);
        errors.sort_by_key(|(k, e)| (*k, e.line));
        match stored {
            Err(e) => Err((None, IngestFailure::Io(e.to_string()))),
            Ok(Some(ingested)) => Ok(IngestResult {
                ingested,
                skipped: errors.len() as u64,
                errors: errors.into_iter().map(|(_, e)| e).collect(),
            }),
            Ok(None) => match fatal {
                Some((k, m)) => Err((k, IngestFailure::Io(m))),
                None => {
                    let k = errors.first().map_or(0, |(k, _)| *k);
                    let mut listed: Vec<LineError> =
                        errors.into_iter().filter(|(i, _)| *i == k).map(|(_, e)| e).collect();
                    let total = listed.len();
                    listed.truncate(MAX_LISTED);
                    Err((Some(k), IngestFailure::Invalid { errors: listed, total }))
                }
            },
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An ingestable line: event `id` (none: one is assigned) at second `i` of a day.
    fn line(id: Option<&str>, i: usize) -> String {
        let id = id.map(|id| format!(r#""id":"{id}","#)).unwrap_or_default();
        format!(
            r#"{{{id}"time":"2026-03-01T{:02}:{:02}:{:02}Z","reason":"ok","token_id":"tk_{}","source_ip":"10.0.0.{}"}}"#,
            i / 3600 % 24,
            i / 60 % 60,
            i % 60,
            i % 7,
            i % 250
        )
    }

    fn ids(store: &store::SqliteStore) -> Vec<String> {
        let q = store::EventQuery { order: store::Order::Asc, limit: 1000, ..Default::default() };
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = store.list_events(&store::EventQuery { after, ..q.clone() }).expect("list");
            out.extend(page.items.into_iter().map(|e| e.id));
            match page.next {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
    }

    fn exclusive(
        store: &store::SqliteStore,
        inputs: &[String],
        skip_invalid: bool,
    ) -> Result<IngestResult, (Option<usize>, IngestFailure)> {
        let mut n = 0;
        let mut new_id = || {
            n += 1;
            Ok(format!("assigned-{n}"))
        };
        let inputs = inputs.iter().map(|t| std::io::Cursor::new(t.as_bytes())).collect();
        ingest_exclusive(inputs, 0, store, Options { skip_invalid }, &mut new_id, &mut |_| {})
    }

    #[test]
    fn the_exclusive_ingest_stores_every_file_or_nothing_and_lists_every_bad_line() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = store::SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let mut seed = vec![Event::new(
            "kept".into(),
            "2026-03-01T00:00:00Z".parse().expect("time"),
            ledger::event::Kind::Access,
            "x",
            token::Reason::Ok,
        )];
        store.append(&mut seed).expect("append");

        // More lines than a chunk, with ids and without: bad lines past the first chunk, an id
        // repeated across files, and one already in the ledger.
        let first: Vec<String> = (0..CHUNK + 500).map(|i| line((i % 3 != 0).then_some(&*format!("a{i}")), i)).collect();
        let mut second: Vec<String> = (0..20).map(|i| line(Some(&format!("b{i}")), i)).collect();
        second[3] = line(Some("a1"), 3);
        second[7] = "{not json".to_owned();
        second[11] = line(Some("kept"), 11);
        second[15] = r#"{"time":"yesterday","reason":"ok"}"#.to_owned();
        let inputs = [first.join("\n"), format!("{}\n\n", second.join("\n"))];
        match exclusive(&store, &inputs, false) {
            Err((Some(1), IngestFailure::Invalid { errors, total })) => {
                let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
                assert_eq!((lines, total), (vec![4, 8, 12, 16], 4));
                assert!(errors[0].message.contains("appears twice"), "{:?}", errors[0]);
                assert!(errors[2].message.contains("already in the ledger"), "{:?}", errors[2]);
            }
            other => panic!("expected the second file's bad lines, got {other:?}"),
        }
        assert_eq!(ids(&store), ["kept"], "a failed ingest stores nothing, not even the good first file");

        // A bad line deep in the first file fails it, with its number.
        let mut bad_first = first.clone();
        bad_first[CHUNK + 100] = "[]".to_owned();
        match exclusive(&store, &[bad_first.join("\n")], false) {
            Err((Some(0), IngestFailure::Invalid { errors, total: 1 })) => {
                assert_eq!(errors[0].line, CHUNK as u64 + 101);
            }
            other => panic!("expected one bad line, got {other:?}"),
        }
        assert_eq!(ids(&store), ["kept"]);

        // Skipping: every good line, in order, the bad ones listed.
        let r = exclusive(&store, &inputs, true).expect("ingest");
        assert_eq!((r.ingested, r.skipped), (CHUNK as u64 + 500 + 16, 4));
        let stored = ids(&store);
        assert_eq!(stored.len(), 1 + CHUNK + 500 + 16);
        assert_eq!(&stored[..4], ["kept", "assigned-1", "a1", "a2"]);
        assert_eq!(&stored[stored.len() - 2..], ["b18", "b19"]);
        assert!(!stored.contains(&"b3".to_owned()) && stored.contains(&"b4".to_owned()));
        let tree = ledger::merkle::nodes_for_root(stored.len() as u64);
        assert_eq!(store.tree_nodes(&tree).expect("nodes").len(), tree.len(), "the tree covers every event");
    }

    /// The reader before it borrowed: `proto::IngestEvent` through serde, then the same checks.
    /// The borrowing reader must agree with it on every line, errors included.
    fn owned(line: &str) -> Result<(Option<String>, Option<u64>, Event), String> {
        use ledger::event::{Kind, Verdict};
        let v: proto::IngestEvent = serde_json::from_str(line).map_err(|e| {
            let text = e.to_string();
            match text.rsplit_once(" at line ") {
                Some((head, _)) => format!("{head} (column {})", e.column()),
                None => text,
            }
        })?;
        let time: Timestamp = v.time.parse().map_err(|_| format!("time: {:?} is not an RFC 3339 time", v.time))?;
        let kind = match v.kind.as_deref() {
            None => Kind::Access,
            Some(k) => Kind::parse(k).ok_or_else(|| format!("kind: {k:?} is not access or admin"))?,
        };
        let reason =
            token::Reason::parse(&v.reason).ok_or_else(|| format!("reason: {:?} is not a reason code", v.reason))?;
        if let Some(d) = &v.decision {
            let d = Verdict::parse(d).ok_or_else(|| format!("decision: {d:?} is not allow or deny"))?;
            if d != Verdict::of(reason) {
                return Err(format!("decision: {:?} contradicts reason {:?}", d.as_str(), v.reason));
            }
        }
        if let Some(id) = &v.id
            && (id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
        {
            return Err("id: must be 1 to 128 printable characters".to_owned());
        }
        let source = v.source.unwrap_or_else(|| "ingest".to_owned());
        if source.is_empty() || source.len() > 64 {
            return Err("source: must be 1 to 64 characters".to_owned());
        }
        if let Some(ip) = &v.source_ip
            && ip.parse::<std::net::IpAddr>().is_err()
            && ip.chars().any(char::is_control)
        {
            return Err("source_ip: must not contain control characters".to_owned());
        }
        let latency_us = match v.latency_ms {
            Some(ms) if ms.is_finite() && ms >= 0.0 => Some((ms * 1000.0).round() as u64),
            Some(ms) => return Err(format!("latency_ms: {ms} is not a duration")),
            None => None,
        };
        let mut e = Event::new(String::new(), time, kind, &source, reason);
        e.token_id = v.token_id;
        e.token_fingerprint = v.token_fingerprint;
        e.owner = v.owner;
        e.source_ip = v.source_ip;
        e.user_agent = v.user_agent;
        e.method = v.method;
        e.path = v.path.map(|p| token::redact_path(p.split('?').next().unwrap_or(&p)).into_owned());
        e.route = v.route;
        e.resource = v.resource;
        e.action = v.action;
        e.sensitivity = v.sensitivity;
        e.status = v.status;
        e.latency_us = latency_us;
        e.bytes_out = v.bytes_out;
        e.request_id = v.request_id;
        e.node = v.node;
        e.operation = v.operation;
        e.target = v.target;
        e.required_scope = v.required_scope;
        e.granted_scopes = v.granted_scopes;
        e.explanation = v.explanation;
        e.details = v.details;
        Ok((v.id, v.seq, e))
    }

    const FULL: &str = r#"{"id":"ev_1","seq":7,"time":"2026-01-20T21:54:02.564832Z","kind":"access","source":"gateway","token_id":"tk_in3lGs9VmP7EXk","token_fingerprint":null,"owner":"carmen@example.com","source_ip":"62.169.26.136","user_agent":"Mozilla/5.0","method":"GET","path":"/v1/customers/238681","route":"GET /v1/customers/{id}","resource":"customers","action":"read","sensitivity":["pii"],"decision":"allow","reason":"ok","status":200,"latency_ms":15.506,"bytes_out":5373,"request_id":"req_3a","node":"tt-node-1","operation":null,"target":null,"required_scope":"customers:read","granted_scopes":["customers:write","orders:write"],"explanation":"why","details":{"a":"b"},"erased":false}"#;

    #[test]
    fn the_borrowing_reader_agrees_with_the_owned_one_on_good_and_bad_lines() {
        let min = |extra: &str| format!(r#"{{"time":"2026-01-01T00:00:00Z","reason":"ok"{extra}}}"#);
        let mut lines: Vec<String> = vec![
            FULL.to_owned(),
            FULL.replace("\"kind\":\"access\"", "\"kind\":\"admin\""),
            FULL.replace("gateway", "ga\\u0074eway"),
            FULL.replace("21:54:02.564832Z", "21:54:02.564832\\u005a"),
            FULL.replace("\"reason\":\"ok\"", "\"reason\":\"o\\u006b\""),
            FULL.replace("\"decision\":\"allow\"", "\"decision\":\"\\u0061llow\""),
            FULL.replace("\"decision\":\"allow\"", "\"decision\":\"deny\""),
            FULL.replace("\"decision\":\"allow\"", "\"decision\":\"maybe\""),
            FULL.replace("\"decision\":\"allow\"", "\"decision\":7"),
            FULL.replace("\"kind\":\"access\"", "\"kind\":\"user\""),
            FULL.replace("\"kind\":\"access\"", "\"kind\":5"),
            FULL.replace("\"kind\":\"access\"", "\"kind\":null"),
            FULL.replace("\"source\":\"gateway\"", "\"source\":\"\""),
            FULL.replace("\"source\":\"gateway\"", "\"source\":null"),
            FULL.replace("\"source\":\"gateway\"", "\"source\":[]"),
            FULL.replace("\"source\":\"gateway\"", &format!("\"source\":\"{}\"", "s".repeat(65))),
            FULL.replace("\"id\":\"ev_1\"", "\"id\":\"\""),
            FULL.replace("\"id\":\"ev_1\"", "\"id\":\"ev\\u0001\""),
            FULL.replace("\"id\":\"ev_1\"", &format!("\"id\":\"{}\"", "i".repeat(129))),
            FULL.replace("62.169.26.136", "62.169.26.136\\u0000"),
            FULL.replace("62.169.26.136", "not an address"),
            FULL.replace("/v1/customers/238681", "/v1/customers/238681?q=1"),
            FULL.replace("15.506", "-1"),
            FULL.replace("\"status\":200", "\"status\":\"tt_secret\""),
            FULL.replace("\"status\":200", "\"status\":70000"),
            FULL.replace("\"seq\":7", "\"seq\":-7"),
            FULL.replace("\"details\":{\"a\":\"b\"}", "\"details\":{\"a\":1}"),
            FULL.replace("\"erased\":false", "\"erased\":true"),
            FULL.replace("\"erased\":false", "\"nope\":1"),
            FULL.replace("\"erased\":false", "\"time\":\"2026-01-01T00:00:00Z\""),
            FULL.replace("2026-01-20T21:54:02.564832Z", "yesterday"),
            FULL.replace("\"time\":\"2026-01-20T21:54:02.564832Z\"", "\"time\":5"),
            FULL.replace("\"reason\":\"ok\"", "\"reason\":\"denied\""),
            FULL.replace("\"reason\":\"ok\"", "\"reason\":null"),
            format!("{FULL} x"),
            format!("{FULL}\r"),
            FULL[..FULL.len() - 10].to_owned(),
            FULL.replace("gateway", "ga\\uZZZZteway"),
            min(""),
            min(r#","source":"Zürich ☃""#),
            min(r#","decision":"deny""#),
            min(r#","sensitivity":[],"granted_scopes":["a:read","b:read","c:read","d:read","e:read","f:read"]"#),
            min(r#","sensitivity":["pii","phi","pci","financial","secret"],"granted_scopes":["a\u003aread"]"#),
            min(r#","sensitivity":null"#),
            min(r#","sensitivity":"pii""#),
            min(r#","granted_scopes":{"a":"b"}"#),
            min(r#","granted_scopes":["a:read",7]"#),
            min(r#","granted_scopes":["a:read","b:read","c:read","d:read",null]"#),
            min(r#","sensitivity":["pii",]"#),
            r#"{"reason":"ok"}"#.to_owned(),
            r#"{"time":"2026-01-01T00:00:00Z"}"#.to_owned(),
            "{}".to_owned(),
            "[]".to_owned(),
            "null".to_owned(),
            "not json".to_owned(),
            String::new(),
        ];
        for reason in ["expired", "revoked", "insufficient_scope", "unknown_token"] {
            lines.push(format!(r#"{{"time":"2026-01-01T00:00:00Z","reason":"{reason}"}}"#));
        }
        // An event that held every field, with more list entries than any line here.
        let mut dirty = parse_line(FULL).expect("a good line").event;
        dirty.id = "ev_old".to_owned();
        dirty.seq = Some(9);
        dirty.operation = Some("token.revoke".to_owned());
        dirty.target = Some("tk_old".to_owned());
        dirty.sensitivity = vec!["phi".to_owned(), "pci".to_owned(), "pii".to_owned()];
        dirty.granted_scopes.push("admin:*".to_owned());
        dirty.erased = true;
        // And one event reused from line to line, as the offline `detect` does.
        let mut carried = dirty.clone();
        let mut errors = 0;
        for line in &lines {
            let new = parse_line(line).map(|p| (p.id, p.seq, p.event));
            assert_eq!(new, owned(line), "{line}");
            errors += usize::from(new.is_err());
            for reused in [&mut dirty.clone(), &mut carried] {
                let into = parse_line_into(line, reused);
                match (&new, into) {
                    (Ok((id, seq, e)), Ok(head)) => {
                        assert_eq!(head, Head { has_id: id.is_some(), seq: *seq }, "{line}");
                        let mut want = e.clone();
                        want.id = id.clone().unwrap_or_default();
                        assert_eq!(*reused, want, "{line}");
                    }
                    (Err(a), Err(b)) => assert_eq!(*a, b, "{line}"),
                    (a, b) => panic!("{line}: {a:?} against {b:?}"),
                }
            }
        }
        // Both kinds were exercised.
        assert!(errors > 20 && errors < lines.len() - 5, "{errors} of {} lines were bad", lines.len());
    }

    #[test]
    fn the_reader_takes_exactly_the_fields_of_the_documented_schema_in_its_order() {
        let line = r#"{"nope":1}"#;
        let documented = serde_json::from_str::<proto::IngestEvent>(line).expect_err("an unknown field").to_string();
        let err = parse_line(line).expect_err("an unknown field");
        assert_eq!(
            documented,
            "unknown field `nope`, expected one of `id`, `seq`, `time`, `kind`, `source`, `token_id`, `token_fingerprint`, `owner`, `source_ip`, `user_agent`, `method`, `path`, `route`, `resource`, `action`, `sensitivity`, `decision`, `reason`, `status`, `latency_ms`, `bytes_out`, `request_id`, `node`, `operation`, `target`, `required_scope`, `granted_scopes`, `explanation`, `details`, `erased` at line 1 column 7"
        );
        assert_eq!(err, documented.replace(" at line 1 column 7", " (column 7)"));
    }

    #[test]
    fn lines_reads_what_bufread_lines_reads_with_their_numbers() {
        for text in ["", "a", "a\n", "a\r\nb\n\nc", "\r\n\r\n", "x\ry\n"] {
            let mut lines = Lines::new(text.as_bytes());
            let mut got = Vec::new();
            while let Some((n, line)) = lines.next() {
                got.push((n, line.expect("UTF-8").to_owned()));
            }
            let want: Vec<(u64, String)> =
                text.as_bytes().lines().enumerate().map(|(i, l)| (i as u64 + 1, l.expect("UTF-8"))).collect();
            assert_eq!(got, want, "{text:?}");
        }
        let mut bad = Lines::new(&b"ok\n\xff\n"[..]);
        assert!(matches!(bad.next(), Some((1, Ok("ok")))));
        assert!(matches!(bad.next(), Some((2, Err(_)))));
    }

    #[test]
    fn a_path_keeps_its_text_without_the_query_and_with_credentials_redacted() {
        assert_eq!(without_query_redacted("/v1/orders/1".into()), "/v1/orders/1");
        assert_eq!(without_query_redacted("/v1/orders/1?x=tt_a".into()), "/v1/orders/1");
        assert_eq!(without_query_redacted("".into()), "");
    }
}
