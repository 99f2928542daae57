//! Errors as RFC 9457 `application/problem+json` responses.
//!
//! Every error a handler returns becomes an [`ApiError`] with a stable code; its `type` is
//! `urn:tokentrail:problem:<code>`. Internal errors are logged with their detail and answered
//! with a generic message, so no internal detail (and never a secret) reaches a caller.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::EngineError;
use proto::{FieldError, Problem};

/// An error answered as problem+json (boxed: errors are rare, results stay small).
#[derive(Debug)]
pub struct ApiError(Box<ProblemParts>);

/// The parts of an [`ApiError`].
#[derive(Debug)]
pub struct ProblemParts {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Summary of the problem type.
    pub title: &'static str,
    /// This occurrence.
    pub detail: Option<String>,
    /// Invalid fields.
    pub errors: Vec<FieldError>,
    /// The reason code of a denial.
    pub reason: Option<String>,
    /// The event that recorded a denial.
    pub event_id: Option<String>,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    /// A problem with a status, code, title and detail.
    pub fn new(status: StatusCode, code: &'static str, title: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError(Box::new(ProblemParts {
            status,
            code,
            title,
            detail: Some(detail.into()),
            errors: Vec::new(),
            reason: None,
            event_id: None,
            headers: Vec::new(),
        }))
    }

    /// 400 for a request that cannot be read (syntax, types, unknown fields).
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", "The request could not be read", detail)
    }

    /// 400 listing every invalid field.
    pub fn invalid(errors: Vec<FieldError>) -> ApiError {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", "Some fields are invalid", detail);
        e.errors = errors;
        e
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "Not found", format!("{} does not exist", what.into()))
    }

    /// 500 with a generic message; the detail goes to the log only.
    pub fn internal(detail: &str) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server failed to handle the request; the details are in its log",
        )
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Invalid(errors) => ApiError::invalid(
                errors.into_iter().map(|e| FieldError { field: e.field, message: e.message }).collect(),
            ),
            EngineError::NotFound(what) => ApiError::not_found(what),
            EngineError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, "The request conflicts with the current state", message)
            }
            EngineError::Denied(denial) => {
                let reason = denial.decision.reason;
                let status = StatusCode::from_u16(reason.http_status()).unwrap_or(StatusCode::FORBIDDEN);
                let (code, title) = if status == StatusCode::UNAUTHORIZED {
                    ("unauthorized", "Authentication failed")
                } else if status == StatusCode::TOO_MANY_REQUESTS {
                    ("rate_limited", "Too many requests")
                } else {
                    ("forbidden", "Not allowed")
                };
                let mut err = ApiError::new(status, code, title, denial.decision.explanation.message.clone());
                err.reason = Some(reason.as_str().to_owned());
                err.event_id = Some(denial.event_id.clone());
                if status == StatusCode::UNAUTHORIZED {
                    let error = if reason == token::Reason::MissingToken { "" } else { ", error=\"invalid_token\"" };
                    err.headers.push((header::WWW_AUTHENTICATE, format!("Bearer realm=\"tokentrail\"{error}")));
                } else if status == StatusCode::FORBIDDEN && reason == token::Reason::InsufficientScope {
                    let scope = denial
                        .decision
                        .explanation
                        .required_scope
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    err.headers.push((
                        header::WWW_AUTHENTICATE,
                        format!("Bearer realm=\"tokentrail\", error=\"insufficient_scope\", scope=\"{scope}\""),
                    ));
                }
                err
            }
            EngineError::Unavailable(m) => {
                tracing::error!(error = %m, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Temporarily unavailable",
                    "the store cannot be used right now; retry later",
                )
            }
            EngineError::Internal(m) => ApiError::internal(&m),
        }
    }
}

impl std::ops::Deref for ApiError {
    type Target = ProblemParts;
    fn deref(&self) -> &ProblemParts {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ProblemParts {
        &mut self.0
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = *self.0;
        let body = Problem {
            kind: format!("urn:tokentrail:problem:{}", this.code),
            title: this.title.to_owned(),
            status: this.status.as_u16(),
            detail: this.detail,
            instance: None,
            code: this.code.to_owned(),
            reason: this.reason,
            errors: this.errors,
            event_id: this.event_id,
        };
        let mut resp = (this.status, proto::to_json(&body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        for (name, value) in this.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}
