//! Shared helpers of the benchmark programs in `src/bin`.

use std::time::Duration;

use jiff::Timestamp;
use ledger::event::{Event, Kind};
use token::Reason;

/// A realistic access event (what the gateway records for one request).
pub fn access_event(i: u64, at: Timestamp) -> Event {
    let mut e = Event::new(format!("ev_bench{i:014}"), at, Kind::Access, "gateway", Reason::Ok);
    e.token_id = Some(format!("tok{:013}", i % 1000));
    e.owner = Some(format!("team-{}", i % 37));
    e.source_ip = Some(format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255));
    e.user_agent = Some("client/1.0".to_owned());
    e.method = Some("GET".to_owned());
    e.path = Some(format!("/v1/orders/{}", i % 100_000));
    e.route = Some("GET /v1/orders/{id}".to_owned());
    e.resource = Some("orders".to_owned());
    e.action = Some("read".to_owned());
    e.status = Some(200);
    e.latency_us = Some(800 + i % 400);
    e.bytes_out = Some(512);
    e.request_id = Some(format!("req_{i:016}"));
    e.node = Some("bench".to_owned());
    e.required_scope = Some("orders:read".to_owned());
    e.granted_scopes = vec!["orders:read".to_owned()];
    e.explanation = Some("allowed: orders:read is granted by [orders:read]".to_owned());
    e
}

/// The `p`-th percentile (0-100) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}
