//! A small typed client of the admin API over plain HTTP/1.1 (hyper), used by the CLI and by
//! the integration tests. It never prints or logs the token it sends.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::client::legacy::{Client as Hyper, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use proto::{
    CreateTokenRequest, EventList, EventView, IssuedToken, Problem, RevokeRequest, RotateRequest, TokenList, TokenView,
    UpdateTokenRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a call can fail with.
#[derive(Debug)]
pub enum ClientError {
    /// The address is not usable.
    Address(String),
    /// The server could not be reached.
    Connect(String),
    /// The server answered with a problem.
    Problem(StatusCode, Box<Problem>),
    /// The server answered something unexpected.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Address(m) | ClientError::Connect(m) | ClientError::Protocol(m) => f.write_str(m),
            ClientError::Problem(status, p) => {
                write!(f, "{} ({}, {})", p.title, status.as_u16(), p.code)?;
                if let Some(r) = &p.reason {
                    write!(f, " reason={r}")?;
                }
                if p.errors.is_empty()
                    && let Some(d) = &p.detail
                {
                    write!(f, ": {d}")?;
                }
                for e in &p.errors {
                    write!(f, "\n  {}: {}", e.field, e.message)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// A raw response.
#[derive(Debug)]
pub struct RawResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

/// A client of one tokentrail server.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: Hyper<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Percent-encodes a query value or path segment.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `?k=v&…` from the pairs whose value is present.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

impl Client {
    /// A client of the server at `addr` (`http://host:port`), authenticating with `token`.
    pub fn new(addr: &str, token: Option<String>) -> Result<Client, ClientError> {
        let base = addr.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::Address(format!("{addr:?} is not a URL such as http://127.0.0.1:8720")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(ClientError::Address(
                    "the CLI speaks plain HTTP; reach a remote server through an SSH tunnel or a local TLS-terminating proxy".to_owned(),
                ));
            }
            _ => return Err(ClientError::Address(format!("{addr:?} must start with http://"))),
        }
        if uri.host().is_none() {
            return Err(ClientError::Address(format!("{addr:?} has no host")));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = Hyper::builder(TokioExecutor::new()).build(connector);
        Ok(Client { base, token, http })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns the raw response, whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Result<RawResponse, ClientError> {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req = req.header(header::USER_AGENT, concat!("tokentrail-cli/", env!("CARGO_PKG_VERSION")));
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Address(format!("cannot build the request: {e}")))?;
        let resp = self.http.request(req).await.map_err(|e| {
            let mut msg = format!("cannot reach tokentrail at {}", self.base);
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            ClientError::Connect(format!("{msg} (is `tokentrail serve` running? set TOKENTRAIL_ADDR or --addr)"))
        })?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(format!("reading the response failed: {e}")))?
            .to_bytes();
        Ok(RawResponse { status: parts.status, headers: parts.headers, body })
    }

    /// Sends JSON (or nothing) and decodes a JSON answer; a problem becomes [`ClientError::Problem`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let bytes = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ClientError::Protocol(e.to_string()))?),
            None => None,
        };
        let ct = bytes.as_ref().map(|_| "application/json");
        let resp = self.send(method, path, bytes, ct).await?;
        if !resp.status.is_success() {
            return Err(match serde_json::from_slice::<Problem>(&resp.body) {
                Ok(p) => ClientError::Problem(resp.status, Box::new(p)),
                Err(_) => ClientError::Protocol(format!(
                    "the server answered {} with a body that is not a problem document",
                    resp.status
                )),
            });
        }
        serde_json::from_slice(&resp.body)
            .map_err(|e| ClientError::Protocol(format!("the server's answer could not be read: {e}")))
    }

    /// A text answer (signed notes, keys); a problem becomes [`ClientError::Problem`].
    pub async fn text(&self, method: Method, path: &str) -> Result<String, ClientError> {
        let resp = self.send(method, path, None, None).await?;
        if !resp.status.is_success() {
            return Err(match serde_json::from_slice::<Problem>(&resp.body) {
                Ok(p) => ClientError::Problem(resp.status, Box::new(p)),
                Err(_) => ClientError::Protocol(format!("the server answered {}", resp.status)),
            });
        }
        String::from_utf8(resp.body.to_vec()).map_err(|_| ClientError::Protocol("the answer is not UTF-8 text".into()))
    }

    /// `GET /v1/audit/events/{id}/proof?size=N`.
    pub async fn proof(&self, id: &str, size: Option<u64>) -> Result<proto::ProofView, ClientError> {
        let q = query(&[("size", size.map(|s| s.to_string()))]);
        self.call(Method::GET, &format!("/v1/audit/events/{}/proof{q}", encode(id)), None::<&()>).await
    }

    /// `GET /v1/audit/events/{id}/leaf`.
    pub async fn leaf(&self, id: &str) -> Result<proto::LeafView, ClientError> {
        self.call(Method::GET, &format!("/v1/audit/events/{}/leaf", encode(id)), None::<&()>).await
    }

    /// `POST /v1/audit/erase`.
    pub async fn erase(&self, req: &proto::EraseRequest) -> Result<proto::EraseResult, ClientError> {
        self.call(Method::POST, "/v1/audit/erase", Some(req)).await
    }

    /// Starts a GET whose body is read as it arrives; a problem becomes [`ClientError::Problem`].
    async fn open_stream(
        &self,
        path: &str,
        accept: &str,
        last_event_id: Option<&str>,
    ) -> Result<hyper::body::Incoming, ClientError> {
        let mut req = Request::builder().method(Method::GET).uri(format!("{}{path}", self.base));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        req = req.header(header::ACCEPT, accept);
        req = req.header(header::USER_AGENT, concat!("tokentrail-cli/", env!("CARGO_PKG_VERSION")));
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Address(format!("cannot build the request: {e}")))?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| ClientError::Connect(format!("cannot reach tokentrail at {}: {e}", self.base)))?;
        let (parts, body) = resp.into_parts();
        if !parts.status.is_success() {
            let bytes = body.collect().await.map_err(|e| ClientError::Protocol(e.to_string()))?.to_bytes();
            return Err(match serde_json::from_slice::<Problem>(&bytes) {
                Ok(p) => ClientError::Problem(parts.status, Box::new(p)),
                Err(_) => ClientError::Protocol(format!("the server answered {}", parts.status)),
            });
        }
        Ok(body)
    }

    /// Reads a long answer (an export) as it arrives, handing each piece to `on_chunk`; stops
    /// with its error when it fails. A transfer the server broke off is an error, not an end.
    pub async fn download(
        &self,
        path: &str,
        accept: &str,
        on_chunk: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), ClientError> {
        let mut body = self.open_stream(path, accept, None).await?;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Protocol(format!("the transfer broke off: {e}")))?;
            if let Ok(chunk) = frame.into_data() {
                on_chunk(&chunk).map_err(ClientError::Protocol)?;
            }
        }
        Ok(())
    }

    /// Follows a Server-Sent Events stream, calling `on_event(id, data)` for each event until
    /// it returns false or the stream ends.
    pub async fn follow(
        &self,
        path: &str,
        last_event_id: Option<&str>,
        on_event: &mut dyn FnMut(&str, &str) -> bool,
    ) -> Result<(), ClientError> {
        let mut body = self.open_stream(path, "text/event-stream", last_event_id).await?;
        let mut pending = String::new();
        let (mut id, mut data) = (String::new(), String::new());
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Protocol(format!("the stream broke: {e}")))?;
            let Ok(chunk) = frame.into_data() else { continue };
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(pos) = pending.find('\n') {
                let line: String = pending.drain(..=pos).collect();
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !data.is_empty() && !on_event(&id, &data) {
                        return Ok(());
                    }
                    data.clear();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
        }
        Ok(())
    }

    /// `POST /v1/tokens`.
    pub async fn create_token(&self, req: &CreateTokenRequest) -> Result<IssuedToken, ClientError> {
        self.call(Method::POST, "/v1/tokens", Some(req)).await
    }

    /// `GET /v1/tokens` with a query string built by [`query`].
    pub async fn list_tokens(&self, query: &str) -> Result<TokenList, ClientError> {
        self.call(Method::GET, &format!("/v1/tokens{query}"), None::<&()>).await
    }

    /// `GET /v1/tokens/{id}`.
    pub async fn get_token(&self, id: &str) -> Result<TokenView, ClientError> {
        self.call(Method::GET, &format!("/v1/tokens/{}", encode(id)), None::<&()>).await
    }

    /// `PATCH /v1/tokens/{id}`.
    pub async fn update_token(&self, id: &str, req: &UpdateTokenRequest) -> Result<TokenView, ClientError> {
        self.call(Method::PATCH, &format!("/v1/tokens/{}", encode(id)), Some(req)).await
    }

    /// `POST /v1/tokens/{id}/revoke`.
    pub async fn revoke_token(&self, id: &str, reason: &str) -> Result<TokenView, ClientError> {
        let body = RevokeRequest { reason: reason.to_owned() };
        self.call(Method::POST, &format!("/v1/tokens/{}/revoke", encode(id)), Some(&body)).await
    }

    /// `POST /v1/tokens/{id}/rotate`.
    pub async fn rotate_token(&self, id: &str, grace: Option<String>) -> Result<IssuedToken, ClientError> {
        let body = RotateRequest { grace };
        self.call(Method::POST, &format!("/v1/tokens/{}/rotate", encode(id)), Some(&body)).await
    }

    /// `GET /v1/audit/events` with a query string built by [`query`].
    pub async fn list_events(&self, query: &str) -> Result<EventList, ClientError> {
        self.call(Method::GET, &format!("/v1/audit/events{query}"), None::<&()>).await
    }

    /// `GET /v1/audit/events/{id}`.
    pub async fn get_event(&self, id: &str) -> Result<EventView, ClientError> {
        self.call(Method::GET, &format!("/v1/audit/events/{}", encode(id)), None::<&()>).await
    }
}
