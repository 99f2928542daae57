//! Files: events as NDJSON in the PRODUCT.md schema (through `proto::EventView`, so the lines
//! are exactly what `tokentrail audit export` writes and `tokentrail detect --input` reads),
//! findings as NDJSON or a JSON array, and the labels file.
//!
//! Nothing here derives `Serialize` (wire types live in `proto`); labels and findings are built
//! as `serde_json::Value`s. Parsing is strict about what the scorer needs and names the bad
//! field.

use std::io::{BufRead, Write};

use detect::{Finding, FindingType, Severity};
use jiff::Timestamp;
use ledger::event::{Event, format_time};
use serde_json::{Value, json};

use crate::inject::Injection;
use crate::trace::{Labels, Profile, time_s};
use crate::traffic::Benign;

/// An event's wire form: exactly what the server exports.
pub use server::views::event_view;

/// Writes one event as an NDJSON line.
pub fn write_event(w: &mut impl Write, e: &Event) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, &event_view(e))?;
    w.write_all(b"\n")
}

/// An event from one NDJSON line, read by the server's ingest parser (as `tokentrail detect`
/// reads it, so that the measured parsing cost is that of the product), keeping the line's `id`
/// (which the labels name) and `seq`; the error names the bad field.
pub fn parse_event(line: &str) -> Result<Event, String> {
    let p = server::ingest::parse_line(line)?;
    let mut e = p.event;
    e.id = p.id.ok_or("id: missing")?;
    e.seq = p.seq;
    Ok(e)
}

fn t(us: i64) -> String {
    format_time(Timestamp::from_microsecond(us).unwrap_or_default())
}

/// A finding as JSON (the fields PRODUCT.md lists, plus `event_count` and `details`).
pub fn finding_json(f: &Finding) -> Value {
    json!({
        "id": f.id,
        "type": f.kind.as_str(),
        "severity": f.severity.as_str(),
        "token_id": f.token_id,
        "source_ip": f.source_ip,
        "first_seen": format_time(f.first_seen),
        "last_seen": format_time(f.last_seen),
        "summary": f.summary,
        "evidence_event_ids": f.evidence_event_ids,
        "event_count": f.event_count,
        "details": f.details,
    })
}

fn str_field(v: &Value, k: &str) -> Result<String, String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("{k}: missing or not a string"))
}

fn opt_str(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn time_field(v: &Value, k: &str) -> Result<Timestamp, String> {
    str_field(v, k)?.parse().map_err(|_| format!("{k}: not an RFC 3339 time"))
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A finding from its JSON form (as `tokentrail detect --format json|ndjson` prints it).
pub fn parse_finding(v: &Value) -> Result<Finding, String> {
    let kind = str_field(v, "type")?;
    let kind = FindingType::parse(&kind).ok_or_else(|| format!("type: {kind:?} is not a finding type"))?;
    let severity = str_field(v, "severity")?;
    let severity = Severity::parse(&severity).ok_or_else(|| format!("severity: {severity:?} is not a severity"))?;
    let evidence = strings(v, "evidence_event_ids");
    Ok(Finding {
        id: str_field(v, "id")?,
        kind,
        severity,
        token_id: opt_str(v, "token_id"),
        source_ip: opt_str(v, "source_ip"),
        first_seen: time_field(v, "first_seen")?,
        last_seen: time_field(v, "last_seen")?,
        summary: opt_str(v, "summary").unwrap_or_default(),
        event_count: v.get("event_count").and_then(Value::as_u64).unwrap_or(evidence.len() as u64),
        evidence_event_ids: evidence,
        details: v
            .get("details")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, x)| x.as_str().map(|s| (k.clone(), s.to_owned()))).collect())
            .unwrap_or_default(),
    })
}

/// Findings from a reader: a JSON array, or one JSON object per line.
pub fn read_findings(r: impl BufRead) -> Result<Vec<Finding>, String> {
    let mut text = String::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", i + 1))?;
        text.push_str(&line);
        text.push('\n');
    }
    if text.trim_start().starts_with('[') {
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
        return items
            .iter()
            .enumerate()
            .map(|(i, x)| parse_finding(x).map_err(|m| format!("finding {i}: {m}")))
            .collect();
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push(parse_finding(&v).map_err(|m| format!("line {}: {m}", i + 1))?);
    }
    Ok(out)
}

/// The labels as JSON.
pub fn labels_json(l: &Labels) -> Value {
    json!({
        "seed": l.seed,
        "tokens": l.tokens,
        "weeks": l.weeks,
        "start": format_time(time_s(l.start_s)),
        "end": format_time(time_s(l.end_s)),
        "warmup_end": format_time(time_s(l.warmup_end_s)),
        "events": l.events,
        "token_days": l.token_days,
        "token_days_all": l.token_days_all,
        "injections": l.injections.iter().map(|i| json!({
            "id": i.id,
            "type": i.kind.as_str(),
            "token_id": i.token_id,
            "source_ip": i.source_ip,
            "network": i.network,
            "start": t(i.start_us),
            "end": t(i.end_us),
            "description": i.description,
            "event_ids": i.event_ids,
        })).collect::<Vec<_>>(),
        "benign": l.benign.iter().map(|b| json!({
            "kind": b.kind, "token_id": b.token_id, "start": t(b.start_us), "end": t(b.end_us),
        })).collect::<Vec<_>>(),
        "skipped": l.skipped,
        "profiles": l.profiles.iter().map(|p| json!({
            "token_id": p.token_id,
            "owner": p.owner,
            "archetype": p.archetype,
            "role": p.role,
            "zone": p.zone,
            "created_at": format_time(time_s(p.created_s)),
            "end": p.end.as_ref().map(|(k, at)| json!({"kind": k, "at": format_time(time_s(*at))})),
            "networks": p.networks,
            "sensitive": p.sensitive,
        })).collect::<Vec<_>>(),
    })
}

fn u64_field(v: &Value, k: &str) -> Result<u64, String> {
    v.get(k).and_then(Value::as_u64).ok_or_else(|| format!("{k}: missing or not a number"))
}

fn secs(v: &Value, k: &str) -> Result<i64, String> {
    Ok(time_field(v, k)?.as_second())
}

fn micros(v: &Value, k: &str) -> Result<i64, String> {
    Ok(time_field(v, k)?.as_microsecond())
}

fn array<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// Labels from their JSON form.
pub fn parse_labels(v: &Value) -> Result<Labels, String> {
    let injections = array(v, "injections")
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let kind = str_field(i, "type")?;
            Ok(Injection {
                id: str_field(i, "id")?,
                kind: FindingType::parse(&kind).ok_or_else(|| format!("type: {kind:?} is not a finding type"))?,
                token_id: opt_str(i, "token_id"),
                source_ip: str_field(i, "source_ip")?,
                network: str_field(i, "network")?,
                start_us: micros(i, "start")?,
                end_us: micros(i, "end")?,
                event_ids: strings(i, "event_ids"),
                description: opt_str(i, "description").unwrap_or_default(),
            })
            .map_err(|m: String| format!("injections[{n}].{m}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let benign = array(v, "benign")
        .iter()
        .map(|b| {
            Ok(Benign {
                kind: str_field(b, "kind")?,
                token_id: str_field(b, "token_id")?,
                start_us: micros(b, "start")?,
                end_us: micros(b, "end")?,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|m| format!("benign: {m}"))?;
    let profiles = array(v, "profiles")
        .iter()
        .map(|p| {
            let end = match p.get("end") {
                Some(e) if e.is_object() => Some((str_field(e, "kind")?, secs(e, "at")?)),
                _ => None,
            };
            Ok(Profile {
                token_id: str_field(p, "token_id")?,
                owner: str_field(p, "owner")?,
                archetype: str_field(p, "archetype")?,
                role: str_field(p, "role")?,
                zone: str_field(p, "zone")?,
                created_s: secs(p, "created_at")?,
                end,
                networks: strings(p, "networks"),
                sensitive: p.get("sensitive").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|m| format!("profiles: {m}"))?;
    Ok(Labels {
        seed: u64_field(v, "seed")?,
        tokens: u64_field(v, "tokens")? as usize,
        weeks: u64_field(v, "weeks")? as u32,
        start_s: secs(v, "start")?,
        end_s: secs(v, "end")?,
        warmup_end_s: secs(v, "warmup_end")?,
        events: u64_field(v, "events")?,
        token_days: u64_field(v, "token_days")?,
        token_days_all: u64_field(v, "token_days_all")?,
        profiles,
        injections,
        benign,
        skipped: strings(v, "skipped"),
    })
}
