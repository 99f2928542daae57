//! Running detection over a stream of NDJSON events while measuring it: time spent parsing and
//! detecting, keys tracked, and the process's resident memory before and after.
//!
//! Memory is read from `/proc/self/status` (Linux) because the workspace forbids the unsafe
//! code a counting allocator would need. Fed line by line, the process holds nothing but the
//! detectors' state and the findings, so the growth of its resident set over the run,
//! less an estimate of the findings' size, divided by the keys tracked at the peak, is the
//! bytes a tracked key costs (an upper bound: the allocator keeps freed memory).

use std::io::BufRead;
use std::time::{Duration, Instant};

use detect::{DetectConfig, Detection, Finding};

use crate::wire::parse_event;

/// What a run measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Findings, merged to their latest state, in order of first emission (as `detect::run`).
    pub findings: Vec<Finding>,
    /// Events read.
    pub events: u64,
    /// Time spent parsing JSON into events.
    pub parse: Duration,
    /// Time spent in the detectors.
    pub detect: Duration,
    /// Keys per detector when the total was largest.
    pub peak_keys: Vec<(&'static str, usize)>,
    /// Resident memory before detection started, bytes.
    pub rss_before: Option<u64>,
    /// Resident memory at the end, bytes.
    pub rss_after: Option<u64>,
    /// Peak resident memory of the process, bytes.
    pub rss_peak: Option<u64>,
    /// CPU time of the detecting thread over the whole run (reading, parsing, detecting), when
    /// the kernel reports it: unlike wall-clock rates, not lowered by other processes.
    pub cpu: Option<Duration>,
}

impl Measured {
    /// Events per second, parsing included.
    pub fn rate_with_parse(&self) -> f64 {
        self.events as f64 / (self.parse + self.detect).as_secs_f64().max(1e-9)
    }

    /// Events per second in the detectors alone.
    pub fn rate_detect(&self) -> f64 {
        self.events as f64 / self.detect.as_secs_f64().max(1e-9)
    }

    /// Keys tracked at the peak, all detectors.
    pub fn total_keys(&self) -> usize {
        self.peak_keys.iter().map(|(_, n)| n).sum()
    }

    /// An estimate of the bytes the findings held by this run take.
    pub fn findings_bytes(&self) -> u64 {
        self.findings
            .iter()
            .map(|f| {
                let strings = f.id.len()
                    + f.summary.len()
                    + f.token_id.as_ref().map_or(0, String::len)
                    + f.source_ip.as_ref().map_or(0, String::len)
                    + f.evidence_event_ids.iter().map(|e| e.len() + 24).sum::<usize>()
                    + f.details.iter().map(|(k, v)| k.len() + v.len() + 64).sum::<usize>();
                (std::mem::size_of::<Finding>() + strings + 64) as u64
            })
            .sum()
    }

    /// Resident memory the detectors' state took (growth less the findings), bytes.
    pub fn state_bytes(&self) -> Option<u64> {
        let grown = self.rss_peak.max(self.rss_after)?.saturating_sub(self.rss_before?);
        Some(grown.saturating_sub(self.findings_bytes()))
    }
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
pub fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// CPU time the calling thread has used (`/proc/thread-self/schedstat`, nanoseconds).
pub fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Feeds detection from NDJSON lines, timing parse and detection apart.
pub fn detect_ndjson(reader: impl BufRead, config: &DetectConfig) -> Result<Measured, String> {
    let mut reader = reader;
    let mut m = Measured { rss_before: proc_status("VmRSS"), ..Measured::default() };
    let cpu_before = thread_cpu();
    let mut d = Detection::new(config);
    let mut collected = detect::Collected::default();
    let mut line = String::new();
    let mut peak = 0;
    let mut n_line = 0u64;
    loop {
        line.clear();
        n_line += 1;
        if reader.read_line(&mut line).map_err(|e| format!("line {n_line}: {e}"))? == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let t0 = Instant::now();
        let e = parse_event(&line).map_err(|m| format!("line {n_line}: {m}"))?;
        let t1 = Instant::now();
        let found = d.observe(&e);
        let t2 = Instant::now();
        m.parse += t1 - t0;
        m.detect += t2 - t1;
        m.events += 1;
        collected.add(found);
        if m.events.is_multiple_of(50_000) {
            let keys: Vec<(&'static str, usize)> = d.state().into_iter().map(|(n, k, _)| (n, k)).collect();
            let total: usize = keys.iter().map(|(_, k)| k).sum();
            if total >= peak {
                peak = total;
                m.peak_keys = keys;
            }
        }
    }
    let keys: Vec<(&'static str, usize)> = d.state().into_iter().map(|(n, k, _)| (n, k)).collect();
    if keys.iter().map(|(_, k)| k).sum::<usize>() >= peak {
        m.peak_keys = keys;
    }
    m.cpu = thread_cpu().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    m.rss_after = proc_status("VmRSS");
    m.rss_peak = proc_status("VmHWM");
    m.findings = collected.finish();
    Ok(m)
}

/// The measurements as lines a person reads.
pub fn render(m: &Measured, tokens: usize) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut o = format!(
        "detection ({} build): {} events; {:.0} events/s with JSON parsing, {:.0} events/s in the detectors alone \
         (parse {:.2} µs/event, detect {:.2} µs/event)\n",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        m.events,
        m.rate_with_parse(),
        m.rate_detect(),
        m.parse.as_secs_f64() * 1e6 / m.events.max(1) as f64,
        m.detect.as_secs_f64() * 1e6 / m.events.max(1) as f64,
    );
    if let Some(cpu) = m.cpu {
        o.push_str(&format!(
            "CPU time of the detecting thread: {:.1} s for reading, parsing and detecting = {:.0} events per CPU-second\n",
            cpu.as_secs_f64(),
            m.events as f64 / cpu.as_secs_f64().max(1e-9)
        ));
    }
    let keys: Vec<String> = m.peak_keys.iter().map(|(n, k)| format!("{n} {k}")).collect();
    o.push_str(&format!("keys tracked at the peak: {} ({})\n", m.total_keys(), keys.join(", ")));
    if let (Some(before), Some(after), Some(peak), Some(state)) =
        (m.rss_before, m.rss_after, m.rss_peak, m.state_bytes())
    {
        let per_key = state as f64 / m.total_keys().max(1) as f64;
        let per_token = state as f64 / tokens.max(1) as f64;
        o.push_str(&format!(
            "memory: resident {:.1} MiB before, {:.1} MiB after, {:.1} MiB peak; detector state ≈ {:.1} MiB \
             (findings ≈ {:.1} MiB excluded) ≈ {:.0} bytes per tracked key, {:.0} bytes per token\n",
            mib(before),
            mib(after),
            mib(peak),
            mib(state),
            mib(m.findings_bytes()),
            per_key,
            per_token
        ));
    } else {
        o.push_str("memory: not measured (no /proc/self/status)\n");
    }
    o
}
