//! The offline `tokentrail detect --input FILE`: NDJSON events through the detectors.
//!
//! The detectors take events in (time, seq) order, where seq is each line's recorded `seq` when
//! every line has one (an export of a ledger: ties in time then fall as the live server saw
//! them) and the line number otherwise; equal keys keep the file's order. That is
//! `detect::run` over every event of the file, sorted.
//!
//! Keeping every event costs about a kilobyte each (10 GB for 8 million), and most files are in
//! that order already or nearly (an export is in ledger order, whose times differ only by the
//! nodes' jitter). So a regular file is streamed: the last [`WINDOW`] events wait unobserved,
//! and the others go to the detectors in key order. The result is exactly the full sort's
//! whenever no event arrives after one with a greater key was observed, and that is checked: if
//! it happens, or a `seq` is missing after lines that had one, the file is read again and sorted
//! whole, as a pipe always is.
//!
//! Parsing the lines costs more than the detectors, so both passes read and parse on threads of
//! their own: one reads blocks of whole lines and deals them out in turn to two or more parsers,
//! and the detectors (on the calling thread) take the parsed blocks back in the same turn. The
//! detectors see the same events in the same order as on one thread, so the findings and the
//! number of a bad line are the same; every hand-over is bounded, so memory stays a few megabytes
//! above the detectors' own.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use detect::{DetectConfig, Detection, Finding};
use jiff::Timestamp;
use ledger::event::Event;
use server::ingest::parse_line_into;

/// Events held back to put a nearly ordered file in order (about a megabyte). A larger
/// window tolerates more disorder but costs CPU time: an event then leaves the processor's cache
/// before the detectors read it (8,192 took about 10% more than 1,024 over a million simulated
/// events).
pub const WINDOW: usize = 1024;

/// How the input is read: blocks of this many bytes (whole lines), parsed on this many threads.
#[derive(Clone, Copy, Debug)]
struct Reading {
    block: usize,
    parsers: usize,
}

impl Reading {
    /// 256 KiB blocks (about 400 events of the simulator's), and one parser per core but one for
    /// the detectors, at least two and at most four. Two parsers on two cores are not for more
    /// parallelism but for balance: the scheduler shares the cores among the parsers and the
    /// detectors, so neither side waits for the other, whichever costs more. Smaller blocks mean
    /// more hand-overs: over the large simulated trace on a quiet machine, 64 KiB blocks switched
    /// threads 4.5 times as often and took 10-25% longer; 1 MiB blocks took more CPU time (a block
    /// and its events no longer stay in a core's cache until the detectors read them).
    fn new() -> Reading {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Reading { block: 256 << 10, parsers: cores.saturating_sub(1).clamp(2, 4) }
    }
}

/// Blocks or parsed blocks a thread may be ahead by, per parser: with [`Reading`], what bounds
/// the memory of the hand-over (a few megabytes).
const AHEAD: usize = 2;

/// Events the detectors are done with, returned to the parsers together (one lock per this many).
const RETURNED: usize = 256;

/// A line (1-based) that cannot be read or is not an event.
#[derive(Debug)]
pub enum BadLine {
    /// Not UTF-8, or reading failed.
    Unreadable(u64, std::io::Error),
    /// What is wrong, in the ingest's words.
    Invalid(u64, String),
}

/// Detection order: time, seq, then the line.
type Key = (Timestamp, u64, u64);

/// One event as read: its line (1-based), its recorded seq, and the event with its seq set to
/// the line number (0-based).
struct Read {
    n: u64,
    seq: Option<u64>,
    event: Box<Event>,
}

/// Whole lines of the input and the number of the first, or the error that ended the reading
/// and the number of the line it was reading.
type Block = Result<(u64, Vec<u8>), (u64, std::io::Error)>;

/// One block's events in file order, and the bad line that ended it if one did (the last
/// message of its parser).
struct Parsed {
    events: Vec<Read>,
    bad: Option<BadLine>,
}

/// Events the detectors are done with, for the parsers to parse into again. Boxed, so that
/// handing one on moves a pointer, not the event's 600 bytes.
type Pool = Arc<Mutex<Vec<Vec<Box<Event>>>>>;

/// Reads events, each with the seq the detectors see (the line number, 0-based, until
/// replaced) and its recorded one, until `each` says stop; `Ok(false)` when it did.
///
/// A thread reads blocks of whole lines and deals them out in turn to the parsing threads, and
/// the events come back to `each` (the detectors, on the calling thread) taking the parsers in the
/// same turn, so in file order; the first bad line ends the reading where it did on one thread,
/// with the same number. Every hand-over is bounded. Events `each` is done with go into its bin,
/// and the parsers parse the next lines into them.
///
/// The threads are not joined when `each` stops or a line is bad: they end at their next
/// hand-over, and a reader waiting on a pipe that stays open must not keep the error from being
/// reported.
fn read<R: std::io::Read + Send + 'static>(
    input: R,
    how: Reading,
    each: &mut dyn FnMut(Read, &mut Vec<Box<Event>>) -> bool,
) -> Result<bool, BadLine> {
    let pool: Pool = Arc::default();
    let (spare_blocks, spent_blocks) = channel::<Vec<u8>>();
    let mut to_parsers = Vec::new();
    let mut from_parsers = Vec::new();
    let mut parsers = Vec::new();
    for _ in 0..how.parsers {
        let (to_parser, blocks) = sync_channel::<Block>(AHEAD);
        let (to_detect, parsed) = sync_channel::<Parsed>(AHEAD);
        let (pool, spare_blocks) = (Arc::clone(&pool), spare_blocks.clone());
        parsers.push(spawn("detect-parse", move || parse_blocks(&blocks, &to_detect, &pool, &spare_blocks)));
        to_parsers.push(to_parser);
        from_parsers.push(parsed);
    }
    drop(spare_blocks);
    let reader = spawn("detect-read", move || read_blocks(input, how.block, &to_parsers, &spent_blocks));
    let mut bin = Vec::new();
    for turn in (0..how.parsers).cycle() {
        // Closed in turn: the reader has dealt out every block (or a parser died; see below).
        let Ok(block) = from_parsers[turn].recv() else { break };
        for r in block.events {
            if !each(r, &mut bin) {
                return Ok(false);
            }
        }
        if let Some(bad) = block.bad {
            return Err(bad);
        }
        if bin.len() >= RETURNED
            && let Ok(mut pool) = pool.lock()
        {
            pool.push(std::mem::take(&mut bin));
        }
    }
    // Everything was read, unless a thread panicked: then so does this one, as with one thread.
    for t in parsers.into_iter().chain([reader]) {
        if let Err(panic) = t.join() {
            std::panic::resume_unwind(panic);
        }
    }
    Ok(true)
}

/// A thread with a name (for profiles), like `std::thread::spawn`: a system that cannot start one
/// more thread is out of resources, not given bad input.
fn spawn<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f).expect("the system starts a thread")
}

/// The reading thread: blocks of about `size` bytes of whole lines (a longer line makes a longer
/// block), dealt out to the parsers in turn, until the end, an error, or the parsers stop
/// listening.
fn read_blocks<R: std::io::Read>(
    mut input: R,
    size: usize,
    to_parsers: &[SyncSender<Block>],
    spent: &Receiver<Vec<u8>>,
) {
    let mut turns = (0..to_parsers.len()).cycle();
    let mut deal = |b: Block| turns.next().is_some_and(|t| to_parsers[t].send(b).is_ok());
    let mut line = 1u64;
    // The part of a line read after the last whole line.
    let mut rest: Vec<u8> = Vec::new();
    loop {
        let mut block = spent.try_recv().unwrap_or_default();
        block.clear();
        block.append(&mut rest);
        // Read on until the block ends a line, looking for the end only in what was just read
        // (the rest of the last block has none), so a line of any length costs linear time.
        let (read, whole) = loop {
            let from = block.len();
            let read = fill(&mut input, &mut block, size);
            let end = match &read {
                Ok(true) => Some(block.len()),
                Ok(false) | Err(_) => block[from..].iter().rposition(|&b| b == b'\n').map(|i| from + i + 1),
            };
            match (read, end) {
                (Ok(false), None) => {}
                (read, end) => break (read, end.unwrap_or(0)),
            }
        };
        rest.extend_from_slice(&block[whole..]);
        block.truncate(whole);
        if !block.is_empty() {
            let lines = newlines(&block);
            if !deal(Ok((line, block))) {
                return;
            }
            line += lines;
        }
        match read {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                deal(Err((line, e)));
                return;
            }
        }
    }
}

/// How many `\n` there are: counted in runs short enough for an 8-bit count, which the compiler
/// turns into vector code (7 times as fast as counting into a `usize`, measured).
fn newlines(bytes: &[u8]) -> u64 {
    bytes.chunks(255).map(|run| u64::from(run.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n')))).sum()
}

/// Appends up to `size` bytes of `input` to `block`; `Ok(true)` at the end of the input.
///
/// Stops early after a read that returned less than it was asked for and brought the end of a
/// line, as a pipe's read does when its writer pauses: the lines that have come are parsed now,
/// not when a block's worth has come (a bad line is reported as soon as it is written, as
/// reading line by line did). A file's reads return all they are asked for but at its end.
fn fill<R: std::io::Read>(input: &mut R, block: &mut Vec<u8>, size: usize) -> std::io::Result<bool> {
    let start = block.len();
    block.resize(start + size, 0);
    let mut filled = start;
    let result = loop {
        if filled == block.len() {
            break Ok(false);
        }
        match input.read(&mut block[filled..]) {
            Ok(0) => break Ok(true),
            Ok(k) => {
                let short = filled + k < block.len();
                filled += k;
                if short && block[filled - k..filled].contains(&b'\n') {
                    break Ok(false);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    block.truncate(filled);
    result
}

/// A parsing thread: each block it is dealt to one message of events, until the reading ends,
/// a line is bad, or the detectors stop listening.
fn parse_blocks(
    blocks: &Receiver<Block>,
    to_detect: &SyncSender<Parsed>,
    pool: &Pool,
    spent_blocks: &std::sync::mpsc::Sender<Vec<u8>>,
) {
    let mut spare: Vec<Box<Event>> = Vec::new();
    for block in blocks {
        let (first, bytes) = match block {
            Ok(b) => b,
            Err((n, e)) => {
                let _ = to_detect.send(Parsed { events: Vec::new(), bad: Some(BadLine::Unreadable(n, e)) });
                return;
            }
        };
        let parsed = parse_block(first, &bytes, &mut spare, pool);
        let _ = spent_blocks.send(bytes);
        let last = parsed.bad.is_some();
        if to_detect.send(parsed).is_err() || last {
            return;
        }
    }
}

/// The block's lines (the first numbered `first`) as events, parsed into `spare` events where
/// there are some (refilled from the pool).
#[allow(clippy::vec_box, reason = "events are handed on as pointers; see `Pool`")]
fn parse_block(first: u64, bytes: &[u8], spare: &mut Vec<Box<Event>>, pool: &Pool) -> Parsed {
    // Room for lines of 256 bytes: more than a block holds of the simulator's (about 640 each).
    let mut events = Vec::with_capacity(bytes.len() / 256);
    // Bytes that are not UTF-8 make their line unreadable; the lines before it are read.
    let (text, unreadable) = match std::str::from_utf8(bytes) {
        Ok(text) => (text, false),
        Err(e) => (std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(), true),
    };
    let mut n = first - 1;
    let mut rest = text;
    while !rest.is_empty() {
        // Lines end at `\n` or `\r\n`; the last one of the input may have no end.
        let line = match rest.find('\n') {
            Some(end) => {
                let line = &rest[..end];
                rest = &rest[end + 1..];
                line.strip_suffix('\r').unwrap_or(line)
            }
            // The line with the bytes that are not UTF-8.
            None if unreadable => break,
            None => std::mem::take(&mut rest),
        };
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        if spare.is_empty()
            && let Ok(mut pool) = pool.lock()
        {
            *spare = pool.pop().unwrap_or_default();
        }
        let mut event = spare.pop().unwrap_or_else(blank);
        let head = match parse_line_into(line, &mut event) {
            Ok(head) => head,
            Err(m) => return Parsed { events, bad: Some(BadLine::Invalid(n, m)) },
        };
        if !head.has_id {
            use std::fmt::Write as _;
            let _ = write!(event.id, "line-{n}");
        }
        event.seq = Some(n - 1);
        events.push(Read { n, seq: head.seq, event });
    }
    let bad = unreadable.then(|| {
        // What `BufRead::read_line` says.
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, "stream did not contain valid UTF-8");
        BadLine::Unreadable(n + 1, e)
    });
    Parsed { events, bad }
}

/// An event to parse into.
fn blank() -> Box<Event> {
    Box::new(Event::new(String::new(), Timestamp::UNIX_EPOCH, ledger::event::Kind::Access, "", token::Reason::Ok))
}

/// The streamed pass; `Ok(None)` when the file is not ordered closely enough.
///
/// One event at a time: each one read, the least held one is observed and dropped once more
/// than `window` are held. (Observing and dropping batches of 1,024 measured the same on the
/// large simulated trace, within the shared machine's noise.)
pub fn stream<R: std::io::Read + Send + 'static>(
    input: R,
    config: &DetectConfig,
    window: usize,
) -> Result<Option<Vec<Finding>>, BadLine> {
    stream_with(input, config, window, Reading::new())
}

fn stream_with<R: std::io::Read + Send + 'static>(
    input: R,
    config: &DetectConfig,
    window: usize,
    how: Reading,
) -> Result<Option<Vec<Finding>>, BadLine> {
    let mut d = Detection::new(config);
    let mut out = detect::Collected::default();
    let mut held = Held::default();
    let mut last: Option<Key> = None;
    let mut recorded: Option<bool> = None;
    let mut observe = |held: &mut Held, last: &mut Option<Key>, bin: &mut Vec<Box<Event>>| {
        if let Some((key, e)) = held.pop() {
            *last = Some(key);
            out.add(d.observe(&e));
            bin.push(e);
        }
    };
    let ordered = read(input, how, &mut |Read { n, seq, event: mut e }, bin| {
        if *recorded.get_or_insert(seq.is_some()) {
            // Every line so far had its seq; one without makes the line numbers decide.
            let Some(seq) = seq else { return false };
            e.seq = Some(seq);
        }
        let key = (e.time, e.seq.unwrap_or_default(), n);
        if last.is_some_and(|l| key < l) {
            return false;
        }
        held.push(key, e);
        if held.len() > window {
            observe(&mut held, &mut last, bin);
        }
        true
    })?;
    if !ordered {
        return Ok(None);
    }
    let mut bin = Vec::new();
    while held.len() > 0 {
        observe(&mut held, &mut last, &mut bin);
    }
    Ok(Some(out.finish()))
}

/// The events waiting to be observed, least key first. Keys are distinct (they end with the line
/// number). Those that arrive in order, as nearly all do, queue in `run` at no cost; one that
/// arrives before an event already waiting goes to the heap.
#[derive(Default)]
struct Held {
    run: std::collections::VecDeque<(Key, Box<Event>)>,
    heap: BinaryHeap<Reverse<ByKey>>,
}

/// An event ordered by its key alone.
struct ByKey(Key, Box<Event>);

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for ByKey {}

impl PartialOrd for ByKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl Held {
    fn len(&self) -> usize {
        self.run.len() + self.heap.len()
    }

    fn push(&mut self, key: Key, e: Box<Event>) {
        match self.run.back() {
            Some((back, _)) if key < *back => self.heap.push(Reverse(ByKey(key, e))),
            _ => self.run.push_back((key, e)),
        }
    }

    /// The event with the least key.
    fn pop(&mut self) -> Option<(Key, Box<Event>)> {
        match (self.run.front(), self.heap.peek()) {
            (Some((front, _)), Some(Reverse(top))) if top.0 < *front => self.heap.pop().map(|Reverse(b)| (b.0, b.1)),
            (Some(_), _) => self.run.pop_front(),
            (None, _) => self.heap.pop().map(|Reverse(b)| (b.0, b.1)),
        }
    }
}

/// Every event kept and sorted: any order, any input.
pub fn whole<R: std::io::Read + Send + 'static>(input: R, config: &DetectConfig) -> Result<Vec<Finding>, BadLine> {
    whole_with(input, config, Reading::new())
}

fn whole_with<R: std::io::Read + Send + 'static>(
    input: R,
    config: &DetectConfig,
    how: Reading,
) -> Result<Vec<Finding>, BadLine> {
    let mut events = Vec::new();
    let mut recorded_seqs = Vec::new();
    read(input, how, &mut |Read { seq, event: e, .. }, _| {
        recorded_seqs.push(seq);
        events.push(*e);
        true
    })?;
    if recorded_seqs.iter().all(Option::is_some) {
        for (e, seq) in events.iter_mut().zip(recorded_seqs) {
            e.seq = seq;
        }
    }
    Ok(detect::run(config, &mut events))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use server::ingest::{Lines, parse_line};

    /// Bad-credential events from one network (brute force): which ones are evidence, and the
    /// first and last seen, depend on the order they are observed in.
    fn lines(n: u64, with_seq: bool) -> Vec<String> {
        (0..n)
            .map(|i| {
                // Pairs share a second, so ties are decided by seq (or line).
                let t = Timestamp::from_second(1_790_000_000 + (i / 2) as i64).expect("a time");
                let seq = if with_seq { format!(r#""seq":{},"#, 1000 - i) } else { String::new() };
                format!(
                    r#"{{"id":"ev{i}",{seq}"time":"{t}","reason":"unknown_token","source_ip":"203.0.113.{}"}}"#,
                    i % 7
                )
            })
            .collect()
    }

    /// Like [`lines`], many of them: bursts of 300 guesses two hours apart (a finding each), the
    /// recorded seqs falling as the lines rise.
    fn bursts(n: u64, with_seq: bool) -> Vec<String> {
        (0..n)
            .map(|i| {
                let t = Timestamp::from_second(1_790_000_000 + (i / 2 + i / 300 * 7200) as i64).expect("a time");
                let seq = if with_seq { format!(r#""seq":{},"#, 10 * n - i) } else { String::new() };
                format!(
                    r#"{{"id":"ev{i}",{seq}"time":"{t}","reason":"unknown_token","source_ip":"203.0.113.{}"}}"#,
                    i % 7
                )
            })
            .collect()
    }

    fn text(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    fn input(bytes: &[u8]) -> Cursor<Vec<u8>> {
        Cursor::new(bytes.to_vec())
    }

    fn both(lines: &[String], window: usize) -> (Option<Vec<Finding>>, Vec<Finding>) {
        let t = text(lines);
        let config = DetectConfig::default();
        let streamed = stream(input(t.as_bytes()), &config, window).expect("good lines");
        let whole = whole(input(t.as_bytes()), &config).expect("good lines");
        (streamed, whole)
    }

    /// A bad line as a number and what is said about it.
    fn said(b: &BadLine) -> (u64, String) {
        match b {
            BadLine::Unreadable(n, e) => (*n, format!("unreadable: {e}")),
            BadLine::Invalid(n, m) => (*n, m.clone()),
        }
    }

    /// The reading before it had threads of its own: `BufRead::read_line` line by line, each line
    /// parsed in turn on this thread, then every event sorted (`detect::run`).
    fn one_thread<R: std::io::BufRead>(input: R) -> Result<Vec<Finding>, (u64, String)> {
        let mut events = Vec::new();
        let mut recorded = Vec::new();
        let mut lines = Lines::new(input);
        while let Some((n, line)) = lines.next() {
            let line = line.map_err(|e| said(&BadLine::Unreadable(n, e)))?;
            if line.trim().is_empty() {
                continue;
            }
            let p = parse_line(line).map_err(|m| (n, m))?;
            let mut e = p.event;
            e.id = p.id.unwrap_or_else(|| format!("line-{n}"));
            e.seq = Some(n - 1);
            recorded.push(p.seq);
            events.push(e);
        }
        if recorded.iter().all(Option::is_some) {
            for (e, seq) in events.iter_mut().zip(recorded) {
                e.seq = seq;
            }
        }
        Ok(detect::run(&DetectConfig::default(), &mut events))
    }

    /// Blocks of one byte (every line longer than a block), of parts of lines, of a few lines,
    /// and the default; one parser to three.
    fn readings() -> Vec<Reading> {
        let default = Reading::new().block;
        [(1, 2), (150, 1), (150, 3), (1000, 2), (default, 1), (default, 2)]
            .into_iter()
            .map(|(block, parsers)| Reading { block, parsers })
            .collect()
    }

    #[test]
    fn streaming_finds_what_sorting_the_whole_file_finds_when_the_file_is_nearly_ordered() {
        let mut ordered = lines(120, false);
        let (s, w) = both(&ordered, 4);
        assert!(!w.is_empty(), "the events give findings");
        assert_eq!(s.as_ref(), Some(&w));
        // Swapped neighbours and a blank line: within the window.
        ordered.swap(10, 12);
        ordered.swap(50, 51);
        ordered.insert(30, String::new());
        let (s, w) = both(&ordered, 4);
        assert_eq!(s.as_ref(), Some(&w));
        // An event later than the window: read whole.
        ordered.swap(20, 90);
        let (s, _) = both(&ordered, 4);
        assert_eq!(s, None);
        assert!(both(&ordered, 1000).0.is_some());
    }

    #[test]
    fn recorded_seqs_order_ties_in_time_when_every_line_has_one() {
        // Seqs fall as lines rise: each tie in time is reversed against the file.
        let recorded = lines(120, true);
        let (s, w) = both(&recorded, 4);
        assert!(!w.is_empty(), "the events give findings");
        assert_eq!(s.as_ref(), Some(&w));
        let plain = lines(120, false);
        assert_ne!(Some(w), both(&plain, 4).0, "seq decided the order");
        // A line without one after lines with one: the line numbers decide, read whole.
        let mut mixed = recorded.clone();
        mixed[60] = plain[60].clone();
        assert_eq!(both(&mixed, 4).0, None);
        // Lines without, then with: the line numbers decide, and streaming stays exact.
        let mut mixed = plain.clone();
        mixed[60] = recorded[60].clone();
        let (s, w) = both(&mixed, 4);
        assert_eq!(s, Some(w));
    }

    #[test]
    fn a_bad_line_is_named_with_the_ingest_wording() {
        let mut l = lines(5, false);
        l[3] = r#"{"time":"2026-01-01T00:00:00Z"}"#.to_owned();
        let t = text(&l);
        for got in [
            stream(input(t.as_bytes()), &DetectConfig::default(), 4).map(|_| ()),
            whole(input(t.as_bytes()), &DetectConfig::default()).map(|_| ()),
        ] {
            match got {
                Err(BadLine::Invalid(4, m)) => assert_eq!(m, "missing field `reason` (column 31)"),
                other => panic!("{other:?}"),
            }
        }
        let bad = b"{}\n\xff\n";
        assert!(matches!(whole(input(bad), &DetectConfig::default()), Err(BadLine::Invalid(1, _))));
        let unreadable = b"\n\xff\n";
        let got = stream(input(unreadable), &DetectConfig::default(), 4);
        assert!(
            matches!(&got, Err(BadLine::Unreadable(2, e)) if e.to_string() == "stream did not contain valid UTF-8")
        );
    }

    #[test]
    fn the_threads_find_what_one_thread_finds_however_the_file_is_cut_in_order_or_not() {
        let config = DetectConfig::default();
        for with_seq in [false, true] {
            let mut l = bursts(5000, with_seq);
            // Lines ending in `\r\n`, blank ones, one with only spaces, and a last line without
            // an end: all as `BufRead::read_line` reads them.
            l[7].push('\r');
            l.insert(100, String::new());
            l.insert(200, "  \r".to_owned());
            let mut in_order = text(&l);
            in_order.pop();
            // Out of order within the window, and beyond it.
            let mut near = l.clone();
            for i in (10..near.len() - 8).step_by(97) {
                near.swap(i, i + 7);
            }
            let mut far = l.clone();
            far.swap(3, 4000);
            for (what, t, streams) in
                [("in order", in_order, true), ("near", text(&near), true), ("far", text(&far), false)]
            {
                let want = one_thread(t.as_bytes()).expect("good lines");
                assert!(want.len() > 10, "{what}: the events give findings: {want:?}");
                for how in readings() {
                    let streamed = stream_with(input(t.as_bytes()), &config, WINDOW, how).expect("good lines");
                    assert_eq!(streamed.as_ref(), streams.then_some(&want), "{what}, {how:?}");
                    assert_eq!(
                        whole_with(input(t.as_bytes()), &config, how).expect("good lines"),
                        want,
                        "{what}, {how:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn held_events_leave_least_key_first_whatever_order_they_came_in() {
        // Runs in order, neighbours swapped, a few from far back: against a sorted set.
        let mut held = Held::default();
        let mut model = std::collections::BTreeSet::new();
        let mut x = 12345u64;
        for n in 0..5000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let t = match x >> 60 {
                0 => n as i64 - 40,
                1..=3 => n as i64 - 2,
                _ => n as i64,
            };
            let key = (Timestamp::from_second(1_790_000_000 + t).expect("a time"), 0, n);
            held.push(key, blank());
            model.insert(key);
            if held.len() > 64 || x >> 63 == 1 {
                assert_eq!(held.pop().map(|(k, _)| k), model.pop_first());
            }
            assert_eq!(held.len(), model.len());
        }
        while let Some(k) = model.pop_first() {
            assert_eq!(held.pop().map(|(k, _)| k), Some(k));
        }
        assert!(held.pop().is_none());
    }

    /// A pipe whose writer writes `lines` one at a time, then goes quiet: a read after the last
    /// line waits for `quiet` (30 s at most, then notes in `waited_out` that it gave up) and
    /// fails.
    struct Trickle {
        /// Last first.
        lines: Vec<String>,
        written: Cursor<Vec<u8>>,
        quiet: Receiver<()>,
        waited_out: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Trickle {
        fn new(lines: &[String], quiet: Receiver<()>) -> (Trickle, Arc<std::sync::atomic::AtomicBool>) {
            let waited_out = Arc::default();
            let lines = lines.iter().rev().cloned().collect();
            (Trickle { lines, written: Cursor::default(), quiet, waited_out: Arc::clone(&waited_out) }, waited_out)
        }
    }

    impl std::io::Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.written.position() == self.written.get_ref().len() as u64 {
                let Some(line) = self.lines.pop() else {
                    if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        self.quiet.recv_timeout(std::time::Duration::from_secs(30))
                    {
                        self.waited_out.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    return Err(std::io::Error::other("the writer is quiet"));
                };
                self.written = Cursor::new(format!("{line}\n").into_bytes());
            }
            self.written.read(buf)
        }
    }

    #[test]
    fn lines_from_a_pipe_are_parsed_as_they_come_not_when_a_block_is_full() {
        let config = DetectConfig::default();
        let mut l = lines(40, false);
        // The reference reads from a writer that has closed its end.
        let closed = |l: &[String]| Trickle::new(l, channel().1).0;
        let want = one_thread(std::io::BufReader::new(closed(&l)));
        assert_eq!(want.as_ref().map(|_| ()), Err(&(41, "unreadable: the writer is quiet".to_owned())));
        // A bad line is reported when it comes, while the writer is still quiet: not when a
        // block's worth has come or the writer closes.
        l[29] = "not json".to_owned();
        let want = one_thread(std::io::BufReader::new(closed(&l))).map(|_| ());
        assert_eq!(want, Err((30, "expected ident (column 2)".to_owned())));
        for how in readings() {
            for streamed in [false, true] {
                let (go_on, quiet) = channel();
                let (pipe, waited_out) = Trickle::new(&l, quiet);
                let got = if streamed {
                    stream_with(pipe, &config, WINDOW, how).map(|_| ())
                } else {
                    whole_with(pipe, &config, how).map(|_| ())
                };
                assert!(!waited_out.load(std::sync::atomic::Ordering::SeqCst), "{how:?}: waited for the writer");
                assert_eq!(got.as_ref().map_err(said), want.as_ref().map_err(Clone::clone), "{how:?}");
                drop(go_on);
            }
        }
    }

    #[test]
    fn newlines_are_counted_across_runs_of_every_length() {
        let bytes: Vec<u8> = (0..3000u32).map(|i| if i % 7 == 0 || i % 255 == 254 { b'\n' } else { b'x' }).collect();
        for end in [0, 1, 254, 255, 256, 510, 511, 2999, 3000] {
            let want = bytes[..end].iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(newlines(&bytes[..end]), want, "{end}");
        }
        assert_eq!(newlines(&[b'\n'; 1000]), 1000);
    }

    /// Reads `bytes`, but fails with `error` once `at` bytes are read, and is interrupted on
    /// every third call (which every reader retries).
    struct Failing {
        bytes: Cursor<Vec<u8>>,
        at: u64,
        calls: u32,
    }

    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let left = self.at.saturating_sub(self.bytes.position());
            if left == 0 {
                return Err(std::io::Error::other("the disk is gone"));
            }
            let max = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.bytes.read(&mut buf[..max])
        }
    }

    #[test]
    fn the_first_bad_line_keeps_its_number_and_words_and_disorder_before_it_comes_first() {
        let config = DetectConfig::default();
        let good = bursts(3000, false);
        let mut bad = good.clone();
        bad[1717] = r#"{"time":1}"#.to_owned();
        let mut not_utf8 = text(&good).into_bytes();
        let at = not_utf8.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(2021).map_or(0, |(i, _)| i);
        not_utf8[at - 5] = 0xff;
        let mut first_byte = text(&good).into_bytes();
        first_byte.insert(at + 1, 0xc3);
        let cases: [(&str, Vec<u8>); 3] =
            [("invalid", text(&bad).into_bytes()), ("not UTF-8", not_utf8), ("not UTF-8 first", first_byte)];
        for (what, bytes) in cases {
            let Err(want) = one_thread(&bytes[..]) else { panic!("{what}: a bad line") };
            assert!(want.0 > 1000, "{what}: {want:?}");
            for how in readings() {
                for got in [
                    stream_with(input(&bytes), &config, WINDOW, how).map(|_| ()),
                    whole_with(input(&bytes), &config, how).map(|_| ()),
                ] {
                    assert_eq!(got.as_ref().map_err(said), Err(want.clone()), "{what}, {how:?}");
                }
            }
        }
        assert_eq!(
            one_thread(text(&bad).as_bytes()).map(|_| ()),
            Err((1718, "invalid type: integer `1`, expected a string (column 9)".to_owned()))
        );
        // An event out of order before the bad line: the streamed pass stops there, as it did
        // on one thread, and reading the whole file then names the bad line.
        bad.swap(10, 1700);
        let t = text(&bad);
        for how in readings() {
            assert!(matches!(stream_with(input(t.as_bytes()), &config, WINDOW, how), Ok(None)), "{how:?}");
            let got = whole_with(input(t.as_bytes()), &config, how);
            assert!(matches!(got, Err(BadLine::Invalid(1718, _))), "{how:?}");
        }
        // Reading fails: in the middle of a line, and right after one.
        let t = text(&good).into_bytes();
        let end_of_line_900 = t.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(899).map_or(0, |(i, _)| i);
        for at in [t.len() as u64 / 2, end_of_line_900 as u64 + 1] {
            let failing = || Failing { bytes: Cursor::new(t.clone()), at, calls: 0 };
            let Err(want) = one_thread(std::io::BufReader::new(failing())) else { panic!("a failure") };
            assert!(want.1.ends_with("the disk is gone"), "{want:?}");
            for how in readings() {
                let got = whole_with(failing(), &config, how).map(|_| ());
                assert_eq!(got.as_ref().map_err(said), Err(want.clone()), "{at}, {how:?}");
            }
        }
    }
}
