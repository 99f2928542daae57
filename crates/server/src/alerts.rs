//! Alert sinks: new and reopened findings go to a webhook (Standard Webhooks signatures,
//! retries with backoff, a dead-letter file), to syslog (RFC 5424 over UDP or TCP), and to an
//! NDJSON file or standard output, each with a minimum severity. Delivery never blocks
//! detection: each alert is sent by its own task.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use engine::Clock as _;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

use crate::views::finding_view;

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

fn rank(s: &str) -> usize {
    SEVERITIES.iter().position(|x| *x == s).unwrap_or(0)
}

enum Sink {
    Webhook { url: hyper::Uri, key: Vec<u8>, min: usize },
    Syslog { tcp: bool, addr: String, min: usize },
    File { path: Option<PathBuf>, min: usize },
}

/// The configured sinks.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    sinks: Vec<Sink>,
    dead_letter: PathBuf,
    node: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// The Standard Webhooks signature of a message: `v1,base64(HMAC-SHA256(key, id.timestamp.body))`.
pub fn sign_webhook(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    #[allow(clippy::expect_used)] // HMAC accepts keys of every length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The key of a webhook secret: `whsec_<base64>` decodes to bytes, anything else is the bytes.
pub fn webhook_key(secret: &str) -> Vec<u8> {
    secret.strip_prefix("whsec_").and_then(|b| B64.decode(b).ok()).unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// An RFC 5424 message for a finding (facility 13, log audit).
pub fn syslog_message(f: &proto::FindingView, node: &str, now: &str) -> String {
    let sev = match f.severity.as_str() {
        "critical" => 2,
        "high" => 3,
        "medium" => 4,
        _ => 5,
    };
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace(']', "\\]");
    format!(
        "<{}>1 {now} {node} tokentrail - finding [tokentrail@32473 id=\"{}\" type=\"{}\" severity=\"{}\" token=\"{}\" source_ip=\"{}\"] {}",
        13 * 8 + sev,
        esc(&f.id),
        esc(&f.kind),
        esc(&f.severity),
        esc(f.token_id.as_deref().unwrap_or("-")),
        esc(f.source_ip.as_deref().unwrap_or("-")),
        f.summary
    )
}

impl Alerts {
    /// The sinks a configuration asks for.
    pub fn new(config: &config::AlertsConfig, data_dir: &Path, node: &str) -> anyhow::Result<Alerts> {
        let mut sinks = Vec::new();
        if let Some(url) = &config.webhook_url {
            sinks.push(Sink::Webhook {
                url: url.parse()?,
                key: webhook_key(config.webhook_secret.as_deref().unwrap_or("")),
                min: rank(&config.webhook_min_severity),
            });
        }
        if let Some(s) = &config.syslog {
            let (tcp, addr) = match s.strip_prefix("tcp://") {
                Some(a) => (true, a.to_owned()),
                None => (false, s.trim_start_matches("udp://").to_owned()),
            };
            sinks.push(Sink::Syslog { tcp, addr, min: rank(&config.syslog_min_severity) });
        }
        if let Some(f) = &config.file {
            let path = if f == "-" { None } else { Some(PathBuf::from(f)) };
            sinks.push(Sink::File { path, min: rank(&config.file_min_severity) });
        }
        let http = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Ok(Alerts {
            inner: Arc::new(Inner {
                sinks,
                dead_letter: data_dir.join("alerts-dead-letter.ndjson"),
                node: node.to_owned(),
                http,
            }),
        })
    }

    /// Sends findings to every sink whose minimum severity they reach (in the background).
    pub fn send_findings(&self, findings: &[engine::detection::ChangedFinding]) {
        for c in findings {
            let view = finding_view(&c.finding);
            for (i, sink) in self.inner.sinks.iter().enumerate() {
                let min = match sink {
                    Sink::Webhook { min, .. } | Sink::Syslog { min, .. } | Sink::File { min, .. } => *min,
                };
                // A sink hears of a finding once per open period: when it is new or reopened at
                // or above the sink's minimum, or when it escalates across that minimum.
                let already_sent = c.previous_severity.as_deref().is_some_and(|p| rank(p) >= min);
                if rank(&view.severity) < min || already_sent {
                    continue;
                }
                let inner = self.inner.clone();
                let view = view.clone();
                tokio::spawn(async move { inner.deliver(i, view).await });
            }
        }
    }
}

impl Inner {
    async fn deliver(&self, sink: usize, f: proto::FindingView) {
        let body = proto::to_json(&f);
        let now = engine::SystemClock.now();
        let result = match &self.sinks[sink] {
            Sink::Webhook { url, key, .. } => {
                let id = format!("msg_{}_{}", f.id, f.event_count);
                let mut delay = Duration::from_secs(1);
                let mut last_err = String::new();
                for attempt in 0..6 {
                    if attempt > 0 {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    let ts = engine::SystemClock.now().as_second();
                    let req = hyper::Request::post(url.clone())
                        .header("content-type", "application/json")
                        .header("webhook-id", &id)
                        .header("webhook-timestamp", ts.to_string())
                        .header("webhook-signature", sign_webhook(key, &id, ts, &body))
                        .header("user-agent", concat!("tokentrail/", env!("CARGO_PKG_VERSION")))
                        .body(Full::new(Bytes::from(body.clone())));
                    let Ok(req) = req else { break };
                    match tokio::time::timeout(Duration::from_secs(10), self.http.request(req)).await {
                        Ok(Ok(r)) if r.status().is_success() => {
                            last_err.clear();
                            break;
                        }
                        Ok(Ok(r)) => last_err = format!("the webhook answered {}", r.status()),
                        Ok(Err(e)) => last_err = format!("the webhook could not be reached: {e}"),
                        Err(_) => last_err = "the webhook did not answer within 10 s".to_owned(),
                    }
                }
                if last_err.is_empty() { Ok(()) } else { Err(last_err) }
            }
            Sink::Syslog { tcp, addr, .. } => {
                let msg = syslog_message(&f, &self.node, &ledger::event::format_time(now));
                if *tcp {
                    async {
                        use tokio::io::AsyncWriteExt as _;
                        let mut s = tokio::net::TcpStream::connect(addr).await?;
                        s.write_all(format!("{} {msg}", msg.len()).as_bytes()).await?;
                        s.flush().await
                    }
                    .await
                    .map_err(|e| format!("syslog over TCP to {addr}: {e}"))
                } else {
                    async {
                        let s = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
                        s.send_to(msg.as_bytes(), addr).await.map(|_| ())
                    }
                    .await
                    .map_err(|e| format!("syslog over UDP to {addr}: {e}"))
                }
            }
            Sink::File { path, .. } => {
                let line = format!("{body}\n");
                match path {
                    None => std::io::stdout().lock().write_all(line.as_bytes()).map_err(|e| e.to_string()),
                    Some(p) => std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .and_then(|mut file| file.write_all(line.as_bytes()))
                        .map_err(|e| format!("{}: {e}", p.display())),
                }
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, finding = %f.id, "an alert could not be delivered; it goes to the dead-letter file");
            let line = serde_json::json!({"error": error, "finding": serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()});
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.dead_letter)
                .and_then(|mut file| writeln!(file, "{line}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_signature() {
        // The example of the Standard Webhooks specification.
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = r#"{"test": 2432232314}"#;
        let sig = sign_webhook(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn syslog_frames() {
        let f = proto::FindingView {
            id: "fd_1".into(),
            kind: "brute_force".into(),
            severity: "high".into(),
            status: "open".into(),
            token_id: None,
            source_ip: Some("203.0.113.5".into()),
            first_seen: "x".into(),
            last_seen: "x".into(),
            summary: "30 bad credentials".into(),
            evidence_event_ids: vec![],
            event_count: 30,
            details: Default::default(),
            comment: None,
            status_changed_at: "x".into(),
        };
        assert_eq!(
            syslog_message(&f, "node1", "2026-11-27T10:00:00.000000Z"),
            "<107>1 2026-11-27T10:00:00.000000Z node1 tokentrail - finding [tokentrail@32473 id=\"fd_1\" type=\"brute_force\" severity=\"high\" token=\"-\" source_ip=\"203.0.113.5\"] 30 bad credentials"
        );
    }
}
