//! A test upstream: the API that the gateway (or nginx) forwards to. It records every request it
//! receives (method, target, every header) so tests can assert on exactly what reached it, and
//! answers:
//! - `…/created`: 201 with a fixed body and a `Content-Length`;
//! - `/v1/chunked/{n}`: 200 with `n` bytes, chunked, without a `Content-Length`;
//! - anything else: 200 with a JSON echo of what it received (with a `Content-Length`).
//!
//! It must never do anything clever: the point is to see the gateway's output unaltered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// The body of `…/created`.
pub(crate) const CREATED_BODY: &str = "{\"created\":true}";

/// Size of each chunk of a chunked answer.
const CHUNK: usize = 64 * 1024;

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    /// The method.
    pub(crate) method: String,
    /// The request target (path and query).
    pub(crate) target: String,
    /// Every header, in order, names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    /// The size of the request body.
    pub(crate) body_len: usize,
}

impl Seen {
    /// The values of header `name` (any case).
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The single value of header `name`, if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "header {name} reached the upstream {} times: {self:#?}", all.len());
        all.first().copied()
    }
}

/// A running test upstream; stops accepting when dropped.
pub(crate) struct Upstream {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts an upstream on `127.0.0.1:0` (HTTP/1.1 and HTTP/2, like any API server).
    pub(crate) async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the test upstream");
        let addr = listener.local_addr().expect("the upstream's address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let log = log.clone();
                let service = hyper::service::service_fn(move |req| {
                    let log = log.clone();
                    async move { Ok::<_, Infallible>(answer(req, &log).await) }
                });
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Upstream { addr, seen, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests reached it so far.
    pub(crate) fn count(&self) -> usize {
        self.seen.lock().expect("the upstream's log").len()
    }

    /// Every request so far, oldest first.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("the upstream's log").clone()
    }

    /// The last request that reached it.
    pub(crate) fn last(&self) -> Seen {
        self.seen().pop().expect("a request reached the upstream")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn answer(req: Request<Incoming>, log: &Mutex<Vec<Seen>>) -> Response<Body> {
    let mut seen = Seen {
        method: req.method().to_string(),
        target: req.uri().path_and_query().map_or_else(|| req.uri().to_string(), |p| p.as_str().to_owned()),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body_len: 0,
    };
    seen.body_len = req.into_body().collect().await.map_or(0, |b| b.to_bytes().len());
    log.lock().expect("the upstream's log").push(seen.clone());
    let path = seen.target.split('?').next().unwrap_or("/").to_owned();
    if path.ends_with("/created") {
        return Response::builder()
            .status(201)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(CREATED_BODY.as_bytes())).boxed())
            .expect("a response");
    }
    if let Some(n) = path.strip_prefix("/v1/chunked/").and_then(|n| n.parse::<usize>().ok()) {
        return Response::builder()
            .status(200)
            .header("content-type", "application/octet-stream")
            .body(Chunked { left: n }.boxed())
            .expect("a response");
    }
    let mut headers = serde_json::Map::new();
    for (n, v) in &seen.headers {
        let entry = headers.entry(n.clone()).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = entry {
            a.push(Value::String(v.clone()));
        }
    }
    let echo = json!({ "method": seen.method, "target": seen.target, "headers": headers });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(echo.to_string())).boxed())
        .expect("a response")
}

/// A body of `left` bytes of unknown size: hyper sends it chunked, without `Content-Length`.
struct Chunked {
    left: usize,
}

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n])))))
    }
}
