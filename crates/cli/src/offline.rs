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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::BufRead;

use detect::{DetectConfig, Detection, Finding};
use jiff::Timestamp;
use ledger::event::Event;
use server::ingest::{Lines, parse_line};

/// Events held back to put a nearly ordered file in order (about a megabyte). A larger
/// window tolerates more disorder but costs CPU time: an event then leaves the processor's cache
/// before the detectors read it (8,192 took about 10% more than 1,024 over a million simulated
/// events).
pub const WINDOW: usize = 1024;

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

/// Reads events, each with the seq the detectors see (the line number, 0-based, until
/// replaced) and its recorded one, until `each` says stop; `Ok(false)` when it did.
fn read<R: BufRead>(input: R, each: &mut dyn FnMut(u64, Option<u64>, Event) -> bool) -> Result<bool, BadLine> {
    let mut lines = Lines::new(input);
    while let Some((n, line)) = lines.next() {
        let line = line.map_err(|e| BadLine::Unreadable(n, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let p = parse_line(line).map_err(|m| BadLine::Invalid(n, m))?;
        let mut e = p.event;
        e.id = p.id.unwrap_or_else(|| format!("line-{n}"));
        e.seq = Some(n - 1);
        if !each(n, p.seq, e) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The streamed pass; `Ok(None)` when the file is not ordered closely enough.
///
/// One event at a time: each one read, the least held one is observed and dropped once more
/// than `window` are held. (Observing and dropping batches of 1,024 measured the same on the
/// large simulated trace, within the shared machine's noise.)
pub fn stream<R: BufRead>(input: R, config: &DetectConfig, window: usize) -> Result<Option<Vec<Finding>>, BadLine> {
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
                       last: &mut Option<Key>| {
        if let Some(Reverse((key, slot))) = heap.pop()
            && let Some(e) = slots[slot].take()
        {
            free.push(slot);
            *last = Some(key);
            out.add(d.observe(&e));
        }
    };
    let ordered = read(input, &mut |n, seq, mut e| {
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
            observe(&mut heap, &mut slots, &mut free, &mut last);
        }
        true
    })?;
    if !ordered {
        return Ok(None);
    }
    while !heap.is_empty() {
        observe(&mut heap, &mut slots, &mut free, &mut last);
    }
    Ok(Some(out.finish()))
}

/// Every event kept and sorted: any order, any input.
pub fn whole<R: BufRead>(input: R, config: &DetectConfig) -> Result<Vec<Finding>, BadLine> {
    let mut events = Vec::new();
    let mut recorded_seqs = Vec::new();
    read(input, &mut |_, seq, e| {
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
