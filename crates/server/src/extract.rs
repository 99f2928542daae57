//! Request extractors: a JSON body with precise errors, the request context every event records,
//! and the admin principal (authenticated through the engine, denials recorded there).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::{StatusCode, header, request::Parts};
use engine::{Principal, RequestContext};
use serde::de::DeserializeOwned;
use token::Scope;

use crate::problem::ApiError;
use crate::{AppState, blocking};

/// The request id, set by the request middleware on every request.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A JSON request body. Errors say what is wrong and where (line and column), unknown fields
/// are named, and an oversized body is a 413; nothing is stored when a body is rejected.
pub struct JsonBody<T>(pub T);

/// Like [`JsonBody`], but an empty body (no bytes at all) yields the type's default.
pub struct OptionalJsonBody<T>(pub T);

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde accepts a struct written as a JSON array of its fields in order; every request body
    // of this API is an object, so anything else is refused before it reaches serde.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(_) => ApiError::bad_request("invalid body: the request body must be a JSON object"),
            Err(e) => ApiError::bad_request(format!("malformed JSON: {e}")),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "malformed JSON",
            _ => "invalid body",
        };
        ApiError::bad_request(format!("{what}: {e}"))
    })
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request body too large",
                "the request body exceeds the server's limit (limits.max_body_bytes, 64 KiB by default)",
            )
        } else {
            ApiError::bad_request(format!("the request body could not be read: {}", rejection.body_text()))
        }
    })?;
    if !bytes.is_empty() {
        let json = content_type.as_deref().is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
    }
    Ok(bytes)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("the request needs a JSON body"));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

/// The request context of an event: address, user agent, method, path, route, request id.
pub fn context(parts: &Parts) -> RequestContext {
    let source_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip());
    let user_agent =
        parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(512).collect());
    let route = parts.extensions.get::<MatchedPath>().map(|m| format!("{} {}", parts.method, m.as_str()));
    RequestContext {
        source_ip,
        user_agent,
        method: Some(parts.method.to_string()),
        path: Some(parts.uri.path().to_owned()),
        route,
        request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
    }
}

/// The credential in `Authorization: Bearer <token>`; any other scheme counts as malformed
/// (it is passed on so the engine records it as such, fingerprinted).
pub fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?;
    let Ok(text) = value.to_str() else {
        return Some("<non-ascii authorization header>".to_owned());
    };
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token.trim().to_owned()),
        _ => Some(text.to_owned()),
    }
}

/// A caller holding `tokentrail:admin`, with the context of its request.
pub struct Admin {
    /// Who.
    pub principal: Principal,
    /// The request.
    pub ctx: RequestContext,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ctx = context(parts);
        let presented = bearer(parts);
        let engine = state.engine.clone();
        let auth_ctx = ctx.clone();
        let principal =
            blocking(move || engine.authenticate(presented.as_deref(), &Scope::tokentrail_admin(), &auth_ctx)).await?;
        Ok(Admin { principal, ctx })
    }
}

/// Query parameters; unknown names and malformed values are a 400 naming the problem.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::bad_request(format!("invalid query parameters: {}", e.body_text())))
    }
}
