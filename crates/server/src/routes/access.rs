//! `/v1/verify` (for services that check tokens themselves) and `/v1/authz` (for nginx
//! `auth_request`, Envoy `ext_authz` in HTTP mode and Traefik `forwardAuth`). Both decide with
//! the same engine call as the gateway and are audited the same way.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use engine::access::{AccessRequest, Required};
use policy::OnAuditFailure;
use proto::{FieldError, Problem, VerifyRequest, VerifyResponse};
use token::{Reason, Scope};

use crate::extract::{JsonBody, bearer};
use crate::gateway::{self, EVENT_ID, OWNER, TOKEN_ID};
use crate::problem::ApiError;
use crate::{AppState, blocking};

/// Decide whether a token may make a request (`method` + `path`, through the route policy) or
/// hold a scope. The caller authenticates with a token holding `tokentrail:verify`.
#[utoipa::path(post, path = "/v1/verify", tag = "access", request_body = VerifyRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "The decision (valid or not), recorded as an event", body = VerifyResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "The caller's own token is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks tokentrail:verify", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    JsonBody(req): JsonBody<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let caller_ctx = engine::RequestContext {
        source_ip: Some(peer.ip()),
        user_agent: headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_owned),
        method: Some(method.to_string()),
        path: Some(uri.path().to_owned()),
        route: Some("POST /v1/verify".to_owned()),
        request_id: None,
    };
    let caller_token = bearer_of(&headers);

    // The body is checked here, but its errors are answered only to an authenticated caller.
    let mut errors = Vec::new();
    let source_ip = match req.source_ip.as_deref().map(str::parse::<IpAddr>) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            errors.push(FieldError { field: "source_ip".into(), message: "is not an IP address".into() });
            None
        }
    };
    let scope = match req.scope.as_deref().map(Scope::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            errors.push(FieldError { field: "scope".into(), message: e.to_string() });
            None
        }
    };
    match (&req.method, &req.path, &req.scope) {
        (Some(_), Some(_), None) | (None, None, Some(_)) => {}
        _ => errors.push(FieldError { field: "scope".into(), message: "give either method and path, or scope".into() }),
    }
    let engine = state.engine.clone();
    let request_id = gateway::request_id(&headers);
    // One trip to the blocking pool: authenticate the caller (through the token cache), then
    // decide.
    let outcome = blocking(move || {
        let caller = engine.authenticate(caller_token.as_deref(), &Scope::tokentrail_verify(), &caller_ctx)?;
        if !errors.is_empty() {
            return Ok(Err(errors));
        }
        let required = match (&scope, &req.method, &req.path) {
            (Some(s), _, _) => Required::Scope(s),
            (None, Some(m), Some(p)) => Required::Route { method: m, path: p },
            _ => Required::Route { method: "", path: "" },
        };
        let mut o = engine.decide_access(&AccessRequest {
            source: "verify",
            credential: Some(&req.token),
            required,
            source_ip,
            user_agent: None,
            request_id: Some(&request_id),
        })?;
        o.event.details.insert("caller".to_owned(), caller.token_id.clone());
        Ok(Ok(o))
    })
    .await?
    .map_err(ApiError::invalid)?;
    let mut outcome = outcome;
    if outcome.decision.allowed() && outcome.on_audit_failure == OnAuditFailure::Deny && !state.auditor.healthy() {
        outcome.decision.reason = Reason::AuditUnavailable;
        outcome.decision.explanation.message = "the audit ledger cannot record requests right now".to_owned();
        outcome.event.reason = Reason::AuditUnavailable;
        outcome.event.decision = ledger::event::Verdict::Deny;
        outcome.event.explanation = Some(outcome.decision.explanation.message.clone());
    }
    let event_id = outcome.event.id.clone();
    if state.auditor.record(outcome.event.clone()).await.is_err() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "The audit ledger cannot record this request",
            "neither the ledger nor its spool can record events",
        ));
    }
    let d = &outcome.decision;
    Ok(Json(VerifyResponse {
        valid: d.allowed(),
        decision: if d.allowed() { "allow" } else { "deny" }.to_owned(),
        reason: d.reason.as_str().to_owned(),
        token_id: outcome.token.as_ref().map(|t| t.id.clone()),
        owner: outcome.token.as_ref().map(|t| t.owner.clone()),
        scopes: outcome.token.as_ref().map(|t| t.scopes.iter().map(ToString::to_string).collect()).unwrap_or_default(),
        explanation: d.explanation.message.clone(),
        event_id,
    }))
}

fn bearer_of(headers: &HeaderMap) -> Option<String> {
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    parts.headers = headers.clone();
    bearer(&parts)
}

/// The authorization decision for a proxy: 200 with `Tokentrail-Token-Id`, `Tokentrail-Owner`
/// and `Tokentrail-Event-Id`, or 401/403/429. The original request comes from
/// `X-Original-Method`/`X-Original-URI` (nginx), `X-Forwarded-Method`/`X-Forwarded-Uri`
/// (Traefik), or, for Envoy, this request's own method and its path after `/v1/authz`.
#[utoipa::path(get, path = "/v1/authz", tag = "access",
    responses(
        (status = 200, description = "Allowed; identity in Tokentrail-Token-Id and Tokentrail-Owner"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn authz(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let nginx = header("x-original-uri").is_some();
    let (orig_method, orig_uri) = match (header("x-original-method"), header("x-original-uri")) {
        (Some(m), Some(u)) => (m, u),
        (None, Some(u)) => ("GET".to_owned(), u),
        _ => match (header("x-forwarded-method"), header("x-forwarded-uri")) {
            (Some(m), Some(u)) => (m, u),
            _ => {
                let rest = uri.path().strip_prefix("/v1/authz").unwrap_or("");
                (method.to_string(), if rest.is_empty() { "/".to_owned() } else { rest.to_owned() })
            }
        },
    };
    let path = orig_uri.split('?').next().unwrap_or("/").to_owned();
    let client_ip = state.addresses.resolve_preferring(peer.ip(), &headers, true);
    let presented = gateway::credential(&headers, state.credential_header.as_ref());
    let request_id = Some(gateway::request_id(&headers));
    let user_agent = header("user-agent");
    let engine = state.engine.clone();
    let decided = blocking(move || {
        engine.decide_access(&AccessRequest {
            source: "authz",
            credential: presented.as_deref(),
            required: Required::Route { method: &orig_method, path: &path },
            source_ip: Some(client_ip),
            user_agent: user_agent.as_deref(),
            request_id: request_id.as_deref(),
        })
    })
    .await;
    let mut outcome = match decided {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let mut status = StatusCode::from_u16(outcome.decision.reason.http_status()).unwrap_or(StatusCode::FORBIDDEN);
    if outcome.decision.allowed() && outcome.on_audit_failure == OnAuditFailure::Deny && !state.auditor.healthy() {
        state.auditor.unavailable_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        outcome.decision.reason = Reason::AuditUnavailable;
        outcome.decision.explanation.message = "the audit ledger cannot record requests right now".to_owned();
        outcome.event.reason = Reason::AuditUnavailable;
        outcome.event.decision = ledger::event::Verdict::Deny;
        outcome.event.explanation = Some(outcome.decision.explanation.message.clone());
        status = StatusCode::SERVICE_UNAVAILABLE;
    }
    // nginx's auth_request treats anything but 2xx, 401 and 403 as an error: a rate limit is a
    // 403 there, with the reason in Tokentrail-Reason.
    if nginx && status == StatusCode::TOO_MANY_REQUESTS {
        status = StatusCode::FORBIDDEN;
    }
    outcome.event.status = Some(status.as_u16());
    let recorded = state.auditor.record(outcome.event.clone()).await;
    if recorded.is_err() && outcome.decision.allowed() {
        status = StatusCode::SERVICE_UNAVAILABLE;
    }
    let mut resp = if outcome.decision.allowed() && status.is_success() {
        let mut r = StatusCode::OK.into_response();
        if let Some(t) = &outcome.token {
            if let Ok(v) = HeaderValue::from_str(&t.id) {
                r.headers_mut().insert(TOKEN_ID, v);
            }
            if let Ok(v) = HeaderValue::from_str(&t.owner) {
                r.headers_mut().insert(OWNER, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&outcome.event.id) {
            r.headers_mut().insert(EVENT_ID, v);
        }
        r
    } else {
        let r = gateway::denial_response(&outcome, status, "");
        let (parts, body) = r.into_parts();
        Response::from_parts(parts, axum::body::Body::new(body))
    };
    if let Ok(v) = HeaderValue::from_str(outcome.decision.reason.as_str()) {
        resp.headers_mut().insert("tokentrail-reason", v);
    }
    resp
}
