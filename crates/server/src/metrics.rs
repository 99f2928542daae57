//! Request metrics in the Prometheus text format, kept in memory without a metrics library:
//! a counter per (method, route, status) and a latency histogram per route.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// In-memory request metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Records one answered request. `route` is the template, never the raw path, so the
    /// number of series stays bounded.
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut r = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *r.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        drop(r);
        let secs = elapsed.as_secs_f64();
        let mut l = self.latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = l.entry(route.to_owned()).or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The text exposition, with token and event gauges when the store could be read.
    pub fn render(&self, tokens: Option<&BTreeMap<&'static str, u64>>, events: Option<u64>) -> String {
        let mut out = String::new();
        out.push_str("# HELP tokentrail_http_requests_total HTTP requests answered by the admin API.\n");
        out.push_str("# TYPE tokentrail_http_requests_total counter\n");
        for ((method, route, status), n) in
            self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter()
        {
            let _ = writeln!(
                out,
                "tokentrail_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        out.push_str("# HELP tokentrail_http_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE tokentrail_http_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let route = escape(route);
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tokentrail_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "tokentrail_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "tokentrail_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "tokentrail_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        if let Some(tokens) = tokens {
            out.push_str("# HELP tokentrail_tokens Tokens by state.\n# TYPE tokentrail_tokens gauge\n");
            for (state, n) in tokens {
                let _ = writeln!(out, "tokentrail_tokens{{state=\"{state}\"}} {n}");
            }
        }
        if let Some(n) = events {
            out.push_str(
                "# HELP tokentrail_audit_events Events in the audit log.\n# TYPE tokentrail_audit_events gauge\n",
            );
            let _ = writeln!(out, "tokentrail_audit_events {n}");
        }
        out
    }
}
