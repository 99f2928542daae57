//! NDJSON parsing benchmark: the ingest's line parser (`server::ingest::parse_line`, which
//! `tokentrail ingest`, `POST /v1/audit/ingest`, the offline `detect` and the simulator use) next
//! to two baselines over the same lines in the same run: `serde_json::Value` (a generic parse
//! that checks nothing) and the owned `proto::IngestEvent` (the schema type, allocating every
//! string, without the checks). Lines come from a file (an export, or the simulator's
//! `--events`) or, without one, from `access_event` as the server exports it.
//!
//! `cargo run --release -p bench --bin parse -- [FILE.ndjson] [lines]`

#![allow(clippy::print_stdout)] // A benchmark reports on stdout.

use std::io::BufRead as _;
use std::time::Instant;

use anyhow::Context as _;
use bench::access_event;
use jiff::Timestamp;

/// Nanoseconds per line of the best of `rounds` runs of `f` over every line.
fn per_line(lines: &[String], rounds: usize, f: &mut dyn FnMut(&str) -> bool) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let t = Instant::now();
        for l in lines {
            anyhow::ensure!(f(l), "a line did not parse: {l}");
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / lines.len().max(1) as f64);
    }
    Ok(best)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(2).map(|s| s.parse()).transpose().context("lines")?.unwrap_or(200_000);
    let lines: Vec<String> = match args.get(1) {
        Some(file) => {
            let f = std::fs::File::open(file).with_context(|| format!("cannot read {file}"))?;
            std::io::BufReader::new(f).lines().take(n).collect::<Result<_, _>>()?
        }
        None => {
            let start = Timestamp::from_second(1_790_000_000)?;
            (0..n as u64)
                .map(|i| {
                    let at = start.checked_add(jiff::SignedDuration::from_millis(i as i64 * 37))?;
                    Ok(proto::to_json(&server::views::event_view(&access_event(i, at))))
                })
                .collect::<anyhow::Result<_>>()?
        }
    };
    let bytes: usize = lines.iter().map(String::len).sum();
    println!("{} lines, {:.0} bytes each on average", lines.len(), bytes as f64 / lines.len().max(1) as f64);
    let rounds = 5;
    let value =
        per_line(&lines, rounds, &mut |l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object()))?;
    let schema = per_line(&lines, rounds, &mut |l| serde_json::from_str::<proto::IngestEvent>(l).is_ok())?;
    let ours = per_line(&lines, rounds, &mut |l| server::ingest::parse_line(l).is_ok())?;
    println!("serde_json::Value (baseline):          {value:7.0} ns/line");
    println!("proto::IngestEvent, unchecked:         {schema:7.0} ns/line  ({:.2}× the baseline)", schema / value);
    println!(
        "server::ingest::parse_line, checked:   {ours:7.0} ns/line  ({:.2}× the baseline) = {:.0} lines/s",
        ours / value,
        1e9 / ours
    );
    Ok(())
}
