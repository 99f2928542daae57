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
//! Reading and parsing the lines costs more than the detectors, so both passes read on a thread of
//! their own and hand events over in bounded batches, in file order: on two cores the parsing and
//! the detectors run side by side, with the same events, order, findings and bad-line numbers as
//! on one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::BufRead;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};

use detect::{DetectConfig, Detection, Finding};
use jiff::Timestamp;
use ledger::event::Event;
use server::ingest::{Lines, parse_line_into};

/// Events held back to put a nearly ordered file in order (about a megabyte). A larger
/// window tolerates more disorder but costs CPU time: an event then leaves the processor's cache
/// before the detectors read it (8,192 took about 10% more than 1,024 over a million simulated
/// events).
pub const WINDOW: usize = 1024;

/// Events the reading thread hands over at a time: few enough to stay in the processor's cache,
/// enough that the channel costs nothing per event.
const BATCH: usize = 256;

/// Batches the reading thread may be ahead by; with [`BATCH`], what bounds the memory of the
/// hand-over (about 2,000 events, 2 MB).
const AHEAD: usize = 8;

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
    event: Event,
}

/// What the reading thread sends: events in file order, or the first bad line (the last message).
type Message = Result<Vec<Read>, BadLine>;

/// Reads events, each with the seq the detectors see (the line number, 0-based, until
/// replaced) and its recorded one, until `each` says stop; `Ok(false)` when it did.
///
/// Reading and parsing run on a thread of their own, [`AHEAD`] batches ahead at most, so that
/// on two cores the detectors (on the calling thread) and the parser share the work; the events
/// still reach `each` one by one in file order, and a bad line ends the reading exactly where it
/// did on one thread, with the same number. Events `each` is done with go into its bin: the
/// reading thread parses the next lines into them.
fn read<R: BufRead + Send>(input: R, each: &mut dyn FnMut(Read, &mut Vec<Event>) -> bool) -> Result<bool, BadLine> {
    std::thread::scope(|s| {
        let (to_detect, from_reader) = sync_channel::<Message>(AHEAD);
        let (to_reader, spent) = channel::<Vec<Event>>();
        s.spawn(move || parse_lines(input, &to_detect, &spent));
        let mut bin = Vec::new();
        for message in &from_reader {
            for r in message? {
                if !each(r, &mut bin) {
                    // Returning drops the receiver: the reading thread stops at its next batch.
                    return Ok(false);
                }
            }
            if bin.len() >= BATCH {
                // Gone only once it has sent everything: then there is nothing to parse into.
                let _ = to_reader.send(std::mem::take(&mut bin));
            }
        }
        Ok(true)
    })
}

/// The reading thread: lines to events, in batches of [`BATCH`], until the end, a bad line, or
/// the detectors stop listening.
///
/// Events the detectors are done with come back and are parsed into again, so that once as many
/// events exist as are in flight (the window, the batches ahead, the bins) a line costs no
/// allocation but for values with escapes and the few fields that come and go.
fn parse_lines<R: BufRead>(input: R, to_detect: &SyncSender<Message>, spent: &Receiver<Vec<Event>>) {
    let mut lines = Lines::new(input);
    let mut batch = Vec::with_capacity(BATCH);
    let mut pool: Vec<Event> = Vec::new();
    let bad = |batch: Vec<Read>, b: BadLine| {
        if batch.is_empty() || to_detect.send(Ok(batch)).is_ok() {
            let _ = to_detect.send(Err(b));
        }
    };
    while let Some((n, line)) = lines.next() {
        let line = match line {
            Ok(line) => line,
            Err(e) => return bad(batch, BadLine::Unreadable(n, e)),
        };
        if line.trim().is_empty() {
            continue;
        }
        if pool.is_empty()
            && let Ok(done) = spent.try_recv()
        {
            pool = done;
        }
        let mut event = pool.pop().unwrap_or_else(blank);
        let head = match parse_line_into(line, &mut event) {
            Ok(head) => head,
            Err(m) => return bad(batch, BadLine::Invalid(n, m)),
        };
        if !head.has_id {
            use std::fmt::Write as _;
            let _ = write!(event.id, "line-{n}");
        }
        event.seq = Some(n - 1);
        batch.push(Read { n, seq: head.seq, event });
        if batch.len() == BATCH && to_detect.send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))).is_err()
        {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = to_detect.send(Ok(batch));
    }
}

/// An event to parse into.
fn blank() -> Event {
    Event::new(String::new(), Timestamp::UNIX_EPOCH, ledger::event::Kind::Access, "", token::Reason::Ok)
}

/// The streamed pass; `Ok(None)` when the file is not ordered closely enough.
///
/// One event at a time: each one read, the least held one is observed and dropped once more
/// than `window` are held. (Observing and dropping batches of 1,024 measured the same on the
/// large simulated trace, within the shared machine's noise.)
pub fn stream<R: BufRead + Send>(
    input: R,
    config: &DetectConfig,
    window: usize,
) -> Result<Option<Vec<Finding>>, BadLine> {
    let mut d = Detection::new(config);
    let mut out = detect::Collected::default();
    // Events wait in `slots`; the heap orders their keys (moving a key, not an event).
    let mut slots: Vec<Option<Event>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::new();
    let mut last: Option<Key> = None;
    let mut recorded: Option<bool> = None;
    let mut observe = |heap: &mut BinaryHeap<Reverse<(Key, usize)>>,
                       slots: &mut Vec<Option<Event>>,
                       free: &mut Vec<usize>,
                       last: &mut Option<Key>,
                       bin: &mut Vec<Event>| {
        if let Some(Reverse((key, slot))) = heap.pop()
            && let Some(e) = slots[slot].take()
        {
            free.push(slot);
            *last = Some(key);
            out.add(d.observe(&e));
            bin.push(e);
        }
    };
    let ordered = read(input, &mut |Read { n, seq, event: mut e }, bin| {
        if *recorded.get_or_insert(seq.is_some()) {
            // Every line so far had its seq; one without makes the line numbers decide.
            let Some(seq) = seq else { return false };
            e.seq = Some(seq);
        }
        let key = (e.time, e.seq.unwrap_or_default(), n);
        if last.is_some_and(|l| key < l) {
            return false;
        }
        let slot = match free.pop() {
            Some(s) => {
                slots[s] = Some(e);
                s
            }
            None => {
                slots.push(Some(e));
                slots.len() - 1
            }
        };
        heap.push(Reverse((key, slot)));
        if heap.len() > window {
            observe(&mut heap, &mut slots, &mut free, &mut last, bin);
        }
        true
    })?;
    if !ordered {
        return Ok(None);
    }
    let mut bin = Vec::new();
    while !heap.is_empty() {
        observe(&mut heap, &mut slots, &mut free, &mut last, &mut bin);
    }
    Ok(Some(out.finish()))
}

/// Every event kept and sorted: any order, any input.
pub fn whole<R: BufRead + Send>(input: R, config: &DetectConfig) -> Result<Vec<Finding>, BadLine> {
    let mut events = Vec::new();
    let mut recorded_seqs = Vec::new();
    read(input, &mut |Read { seq, event: e, .. }, _| {
        recorded_seqs.push(seq);
        events.push(e);
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
    use super::*;
    use server::ingest::parse_line;

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

    fn text(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    fn both(lines: &[String], window: usize) -> (Option<Vec<Finding>>, Vec<Finding>) {
        let t = text(lines);
        let config = DetectConfig::default();
        let streamed = stream(t.as_bytes(), &config, window).expect("good lines");
        let whole = whole(t.as_bytes(), &config).expect("good lines");
        (streamed, whole)
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

    /// The reading before it had a thread of its own: every line parsed in turn on this thread,
    /// then all of them sorted (`detect::run`); the number of the first bad line.
    fn one_thread(text: &str) -> Result<Vec<Finding>, u64> {
        let mut events = Vec::new();
        let mut recorded = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            let p = parse_line(line).map_err(|_| n)?;
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

    #[test]
    fn the_reading_thread_finds_what_one_thread_finds_over_many_batches_in_order_or_not() {
        // Many batches, findings all along, and a last batch that is not full.
        let count = 20 * BATCH as u64 + 37;
        for with_seq in [false, true] {
            let mut l = bursts(count, with_seq);
            let want = one_thread(&text(&l)).expect("good lines");
            assert!(want.len() > 1, "the events give findings: {want:?}");
            let (s, w) = both(&l, WINDOW);
            assert_eq!(s.as_ref(), Some(&want));
            assert_eq!(w, want);
            // Out of order within the window, across batch boundaries: streamed, same findings.
            for i in (BATCH - 3..l.len() - 8).step_by(BATCH) {
                l.swap(i, i + 7);
            }
            let want = one_thread(&text(&l)).expect("good lines");
            let (s, w) = both(&l, WINDOW);
            assert_eq!(s.as_ref(), Some(&want));
            assert_eq!(w, want);
            // Out of order beyond it: only sorting the whole file gives them.
            let last = l.len() - 1;
            l.swap(3, last);
            let want = one_thread(&text(&l)).expect("good lines");
            let (s, w) = both(&l, WINDOW);
            assert_eq!(s, None);
            assert_eq!(w, want);
        }
    }

    #[test]
    fn a_bad_line_far_into_the_file_keeps_its_number_and_disorder_before_it_comes_first() {
        let mut l = bursts(9 * BATCH as u64, false);
        let bad = 5 * BATCH + 17;
        l[bad - 1] = "{\"time\":1}".to_owned();
        let t = text(&l);
        assert_eq!(one_thread(&t).map(|_| ()), Err(bad as u64));
        let config = DetectConfig::default();
        for got in [stream(t.as_bytes(), &config, WINDOW).map(|_| ()), whole(t.as_bytes(), &config).map(|_| ())] {
            match got {
                Err(BadLine::Invalid(n, m)) => {
                    assert_eq!(n, bad as u64);
                    assert_eq!(m, "invalid type: integer `1`, expected a string (column 9)");
                }
                other => panic!("{other:?}"),
            }
        }
        // An event out of order before the bad line: the streamed pass stops there, as it did
        // on one thread, and the whole file's reading then names the bad line.
        l.swap(10, bad - 10);
        let t = text(&l);
        assert!(matches!(stream(t.as_bytes(), &config, WINDOW), Ok(None)));
        assert!(matches!(whole(t.as_bytes(), &config), Err(BadLine::Invalid(n, _)) if n == bad as u64));
        // A line that is not UTF-8 far into the file.
        let mut bytes = text(&bursts(3 * BATCH as u64, false)).into_bytes();
        bytes.extend_from_slice(b"\xff\n");
        let unreadable = 3 * BATCH as u64 + 1;
        assert!(matches!(stream(&bytes[..], &config, WINDOW), Err(BadLine::Unreadable(n, _)) if n == unreadable));
        assert!(matches!(whole(&bytes[..], &config), Err(BadLine::Unreadable(n, _)) if n == unreadable));
    }

    #[test]
    fn a_bad_line_is_named_with_the_ingest_wording() {
        let mut l = lines(5, false);
        l[3] = r#"{"time":"2026-01-01T00:00:00Z"}"#.to_owned();
        let t = text(&l);
        for got in [
            stream(t.as_bytes(), &DetectConfig::default(), 4).map(|_| ()),
            whole(t.as_bytes(), &DetectConfig::default()).map(|_| ()),
        ] {
            match got {
                Err(BadLine::Invalid(4, m)) => assert_eq!(m, "missing field `reason` (column 31)"),
                other => panic!("{other:?}"),
            }
        }
        let bad = b"{}\n\xff\n";
        assert!(matches!(whole(&bad[..], &DetectConfig::default()), Err(BadLine::Invalid(1, _))));
        let unreadable = b"\n\xff\n";
        assert!(matches!(stream(&unreadable[..], &DetectConfig::default(), 4), Err(BadLine::Unreadable(2, _))));
    }
}
