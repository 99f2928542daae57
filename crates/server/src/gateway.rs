//! The gateway: a reverse proxy that decides every request with the engine, records it, and
//! forwards only what is allowed.
//!
//! - The credential comes from `Authorization: Bearer <token>` or the configured header; it is
//!   removed before forwarding, and `Tokentrail-Token-Id` / `Tokentrail-Owner` are added.
//! - A denial is answered here (401 with `WWW-Authenticate`, 403, or 429 with `Retry-After`) as
//!   problem+json with the reason code, and never reaches the upstream.
//! - The client address is the socket's, or from `X-Forwarded-For`/`X-Real-IP` only when the
//!   peer is a trusted proxy.
//! - Every answer carries `Tokentrail-Event-Id`. In durable mode it is released only once its
//!   event is recorded; the upstream's status, latency and response size are in the event.
//! - When the ledger cannot write, routes with `on_audit_failure = "deny"` are answered 503
//!   `audit_unavailable` without forwarding; `allow` routes are forwarded and their events
//!   spooled (see `auditor`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use engine::Engine;
use engine::access::{AccessOutcome, AccessRequest, Required};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;
use policy::OnAuditFailure;
use token::Reason;

use crate::auditor::{Auditor, Recorded};

/// A boxed response body.
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Responses without a `Content-Length` up to this size are buffered so that their exact size is
/// in the event; larger ones are streamed and recorded without a size.
const MAX_BUFFERED: usize = 1 << 20;

pub(crate) const TOKEN_ID: HeaderName = HeaderName::from_static("tokentrail-token-id");
pub(crate) const OWNER: HeaderName = HeaderName::from_static("tokentrail-owner");
pub(crate) const EVENT_ID: HeaderName = HeaderName::from_static("tokentrail-event-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop headers (RFC 9110 section 7.6.1) that a proxy must not forward.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Where the client's address comes from.
#[derive(Clone, Debug, Default)]
pub struct ClientAddress {
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl ClientAddress {
    /// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
    /// right-most `X-Forwarded-For` address that is not itself a trusted proxy, else `X-Real-IP`.
    pub fn resolve(&self, peer: IpAddr, headers: &hyper::HeaderMap) -> IpAddr {
        self.resolve_preferring(peer, headers, false)
    }

    /// [`ClientAddress::resolve`], but `X-Real-IP` first when `real_ip_first`: an auth
    /// subrequest (nginx) carries the client's own `X-Forwarded-For` along, while `X-Real-IP`
    /// is set by the proxy itself.
    pub fn resolve_preferring(&self, peer: IpAddr, headers: &hyper::HeaderMap, real_ip_first: bool) -> IpAddr {
        let peer = peer.to_canonical();
        if !token::cidr_contains(&self.trusted_proxies, peer) {
            return peer;
        }
        let real_ip =
            headers.get("x-real-ip").and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse::<IpAddr>().ok());
        if real_ip_first && let Some(ip) = real_ip {
            return ip.to_canonical();
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .collect();
        if let Some(ip) = forwarded.iter().rev().find(|ip| !token::cidr_contains(&self.trusted_proxies, **ip)) {
            return ip.to_canonical();
        }
        headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map_or(peer, |ip| ip.to_canonical())
    }
}

/// Reads the credential: `Authorization: Bearer <token>` first, then the configured header.
/// Another authorization scheme counts as a malformed credential.
pub fn credential(headers: &hyper::HeaderMap, extra: Option<&HeaderName>) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let Ok(text) = v.to_str() else { return Some("<non-ascii authorization header>".to_owned()) };
        return Some(match text.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim().to_owned(),
            _ => text.to_owned(),
        });
    }
    let v = headers.get(extra?)?;
    Some(v.to_str().map_or_else(|_| "<non-ascii credential header>".to_owned(), |s| s.trim().to_owned()))
}

/// A problem+json body for a denial, with the headers its status calls for.
pub fn denial_response(outcome: &AccessOutcome, status: StatusCode, request_id: &str) -> Response<Body> {
    let reason = outcome.decision.reason;
    let (code, title) = match status.as_u16() {
        401 => ("unauthorized", "Authentication failed"),
        429 => ("rate_limited", "Too many requests"),
        503 => ("audit_unavailable", "The audit ledger cannot record this request"),
        _ => ("forbidden", "Not allowed"),
    };
    let problem = proto::Problem {
        kind: format!("urn:tokentrail:problem:{code}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail: Some(outcome.decision.explanation.message.clone()),
        instance: None,
        code: code.to_owned(),
        reason: Some(reason.as_str().to_owned()),
        errors: Vec::new(),
        event_id: Some(outcome.event.id.clone()),
    };
    let mut resp = Response::new(full(proto::to_json(&problem)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&outcome.event.id) {
        h.insert(EVENT_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID, v);
    }
    if status == StatusCode::UNAUTHORIZED {
        let v = if reason == Reason::MissingToken {
            "Bearer realm=\"tokentrail\"".to_owned()
        } else {
            format!("Bearer realm=\"tokentrail\", error=\"invalid_token\", error_description=\"{reason}\"")
        };
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
    } else if reason == Reason::InsufficientScope {
        let scope = outcome.event.required_scope.clone().unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(&format!(
            "Bearer realm=\"tokentrail\", error=\"insufficient_scope\", scope=\"{scope}\""
        )) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
    }
    if let Some(wait) = outcome.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
    }
    resp
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

/// The gateway's shared state.
pub struct Gateway {
    engine: Arc<Engine>,
    auditor: Arc<Auditor>,
    client: Client<HttpConnector, Incoming>,
    upstream: Uri,
    base_path: String,
    credential_header: Option<HeaderName>,
    addresses: ClientAddress,
}

impl Gateway {
    /// A gateway forwarding to `upstream` (`http://host:port[/prefix]`).
    pub fn new(
        engine: Arc<Engine>,
        auditor: Arc<Auditor>,
        upstream: &str,
        credential_header: Option<&str>,
        trusted_proxies: Vec<IpNet>,
    ) -> anyhow::Result<Gateway> {
        let uri: Uri = upstream.parse()?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let upstream = Uri::builder()
            .scheme(uri.scheme_str().unwrap_or("http"))
            .authority(uri.authority().map(|a| a.as_str()).unwrap_or("127.0.0.1"))
            .path_and_query("/")
            .build()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector);
        Ok(Gateway {
            engine,
            auditor,
            client,
            upstream,
            base_path,
            credential_header: credential_header.map(HeaderName::try_from).transpose()?,
            addresses: ClientAddress { trusted_proxies },
        })
    }

    async fn record(&self, event: ledger::event::Event) -> bool {
        match self.auditor.record(event).await {
            Ok(Recorded::Ledger | Recorded::Spooled) => true,
            Err(lost) => {
                tracing::error!(error = %lost.0, "an audit event could not be recorded anywhere");
                false
            }
        }
    }

    /// Handles one request end to end.
    pub async fn handle(self: Arc<Self>, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let client_ip = self.addresses.resolve(peer.ip(), req.headers());
        let presented = credential(req.headers(), self.credential_header.as_ref());
        let request_id = request_id(req.headers());
        let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        let access = AccessRequest {
            source: "gateway",
            credential: presented.as_deref(),
            required: Required::Route { method: &method, path: &path },
            source_ip: Some(client_ip),
            user_agent: user_agent.as_deref(),
            request_id: Some(&request_id),
        };
        let mut outcome = match self.engine.decide_access(&access) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "the decision could not be made");
                let mut r = Response::new(full("tokentrail could not decide this request\n"));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return r;
            }
        };
        if !outcome.decision.allowed() {
            let status = StatusCode::from_u16(outcome.decision.reason.http_status()).unwrap_or(StatusCode::FORBIDDEN);
            outcome.event.latency_us = Some(elapsed_us(started));
            let resp = denial_response(&outcome, status, &request_id);
            outcome.event.bytes_out = Some(body_len(&resp));
            if !self.record(outcome.event.clone()).await {
                return self.unavailable(outcome, &request_id).await;
            }
            return resp;
        }
        if outcome.on_audit_failure == OnAuditFailure::Deny && !self.auditor.healthy() {
            return self.unavailable(outcome, &request_id).await;
        }

        // Forward: the credential stays here; the upstream learns who called.
        let headers = req.headers_mut();
        headers.remove(header::AUTHORIZATION);
        if let Some(h) = &self.credential_header {
            headers.remove(h);
        }
        strip_hop_by_hop(headers);
        headers.remove(TOKEN_ID);
        headers.remove(OWNER);
        if let Some(t) = &outcome.token {
            if let Ok(v) = HeaderValue::from_str(&t.id) {
                headers.insert(TOKEN_ID, v);
            }
            if let Ok(v) = HeaderValue::from_str(&t.owner) {
                headers.insert(OWNER, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert(REQUEST_ID, v);
        }
        let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {}", peer.ip().to_canonical()),
            None => peer.ip().to_canonical().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
            headers.insert("x-forwarded-for", v);
        }
        let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let target = format!("{}{}", self.base_path, path_and_query);
        let mut parts = self.upstream.clone().into_parts();
        parts.path_and_query = target.parse().ok();
        match Uri::from_parts(parts) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => {
                return self.bad_gateway(outcome, started, &request_id, "the request URI cannot be forwarded").await;
            }
        }
        *req.version_mut() = hyper::Version::HTTP_11;
        let upstream = match self.client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the upstream could not be reached");
                return self.bad_gateway(outcome, started, &request_id, "the upstream could not be reached").await;
            }
        };
        let (mut head, body) = upstream.into_parts();
        head.version = hyper::Version::HTTP_11;
        strip_hop_by_hop(&mut head.headers);
        let length =
            head.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<u64>().ok());
        let (body, bytes_out): (Body, Option<u64>) = match length {
            Some(n) => (body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>).boxed(), Some(n)),
            None => buffer_or_stream(body).await,
        };
        outcome.event.status = Some(head.status.as_u16());
        outcome.event.latency_us = Some(elapsed_us(started));
        // A HEAD response announces a length but sends no body.
        outcome.event.bytes_out = if method == "HEAD" { Some(0) } else { bytes_out };
        if bytes_out.is_none() {
            outcome
                .event
                .details
                .insert("bytes_out".to_owned(), "streamed (over 1 MiB without Content-Length)".to_owned());
        }
        let event_id = outcome.event.id.clone();
        if !self.record(outcome.event).await {
            tracing::error!(event = %event_id, "an allowed request's event was lost");
        }
        if let Ok(v) = HeaderValue::from_str(&event_id) {
            head.headers.insert(EVENT_ID, v);
        }
        Response::from_parts(head, body)
    }

    /// Answers 503 `audit_unavailable`, after the event saying so is in the spool (synced).
    async fn unavailable(&self, mut outcome: AccessOutcome, request_id: &str) -> Response<Body> {
        self.auditor.unavailable_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        outcome.decision.reason = Reason::AuditUnavailable;
        outcome.decision.explanation.message =
            "the audit ledger cannot record requests right now; nothing was forwarded".to_owned();
        outcome.event.reason = Reason::AuditUnavailable;
        outcome.event.decision = ledger::event::Verdict::Deny;
        outcome.event.status = Some(503);
        outcome.event.explanation = Some(outcome.decision.explanation.message.clone());
        outcome.retry_after = Some(std::time::Duration::from_secs(1));
        let resp = denial_response(&outcome, StatusCode::SERVICE_UNAVAILABLE, request_id);
        // The ledger is down: this goes to the spool, before the answer leaves.
        if let Err(lost) = self.auditor.record(outcome.event).await {
            tracing::error!(error = %lost.0, "a refused request's event could not be recorded anywhere");
        }
        resp
    }

    async fn bad_gateway(
        &self,
        mut outcome: AccessOutcome,
        started: Instant,
        request_id: &str,
        why: &str,
    ) -> Response<Body> {
        outcome.event.status = Some(502);
        outcome.event.latency_us = Some(elapsed_us(started));
        outcome.event.details.insert("upstream_error".to_owned(), why.to_owned());
        let event_id = outcome.event.id.clone();
        self.record(outcome.event).await;
        let mut r = Response::new(full(format!("{why}\n")));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        if let Ok(v) = HeaderValue::from_str(&event_id) {
            r.headers_mut().insert(EVENT_ID, v);
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            r.headers_mut().insert(REQUEST_ID, v);
        }
        r
    }
}

/// The caller's `X-Request-Id` when it is 1 to 128 printable characters, else a new one.
pub fn request_id(headers: &hyper::HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| engine::random_id("req_", 16).unwrap_or_default(), str::to_owned)
}

fn elapsed_us(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn body_len(resp: &Response<Body>) -> u64 {
    hyper::body::Body::size_hint(resp.body()).exact().unwrap_or(0)
}

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
}

/// Buffers a body of unknown length up to [`MAX_BUFFERED`] to learn its size; beyond that,
/// streams the rest and reports no size.
async fn buffer_or_stream(mut body: Incoming) -> (Body, Option<u64>) {
    let mut buf = bytes::BytesMut::new();
    loop {
        match body.frame().await {
            None => {
                let n = buf.len() as u64;
                return (full(buf.freeze()), Some(n));
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the upstream's response body failed");
                let n = buf.len() as u64;
                return (full(buf.freeze()), Some(n));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
                if buf.len() > MAX_BUFFERED {
                    let head = http_body_util::Full::new(buf.freeze()).map_err(|never| match never {});
                    let rest = body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
                    let chained = StreamChain { first: Some(head), rest };
                    return (chained.boxed(), None);
                }
            }
        }
    }
}

/// A body that yields one buffered chunk and then the rest of a stream.
struct StreamChain<A, B> {
    first: Option<A>,
    rest: B,
}

impl<A, B> hyper::body::Body for StreamChain<A, B>
where
    A: hyper::body::Body<Data = Bytes, Error = Box<dyn std::error::Error + Send + Sync>> + Unpin,
    B: hyper::body::Body<Data = Bytes, Error = Box<dyn std::error::Error + Send + Sync>> + Unpin,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if let Some(first) = self.first.as_mut() {
            match std::pin::Pin::new(first).poll_frame(cx) {
                std::task::Poll::Ready(None) => self.first = None,
                other => return other,
            }
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }
}

/// Serves the gateway on `listener` until `shutdown` turns true; in-flight requests finish.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a gateway connection failed");
                    continue;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let gw = gateway.clone();
        let service = hyper::service::service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, std::convert::Infallible>(gw.handle(req, peer).await) }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "gateway connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
