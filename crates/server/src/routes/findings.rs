//! `/v1/findings`: what the detectors found, and acknowledging or resolving it (audited).

use axum::Json;
use axum::extract::{Path, State};
use proto::{FindingComment, FindingList, FindingView, Problem};
use serde::Deserialize;
use store::FindingQuery;
use token::Scope;
use utoipa::IntoParams;

use crate::extract::{Admin, JsonBody, QueryParams};
use crate::problem::ApiError;
use crate::views::finding_view;
use crate::{AppState, blocking};

/// Filters of `GET /v1/findings`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FindingParams {
    /// Finding type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// This severity or higher: low, medium, high, critical.
    pub severity: Option<String>,
    /// open, acknowledged, resolved.
    pub status: Option<String>,
    /// The token involved.
    pub token_id: Option<String>,
    /// Active since: RFC 3339 or relative (`24h`).
    pub since: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

/// Findings, newest first.
#[utoipa::path(get, path = "/v1/findings", tag = "findings", params(FindingParams), security(("bearer" = [])),
    responses((status = 200, body = FindingList), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    QueryParams(p): QueryParams<FindingParams>,
) -> Result<Json<FindingList>, ApiError> {
    let mut errors = Vec::new();
    let mut bad = |f: &str, m: String| errors.push(proto::FieldError { field: f.to_owned(), message: m });
    if let Some(k) = &p.kind
        && detect::FindingType::parse(k).is_none()
    {
        let all: Vec<&str> = detect::FindingType::ALL.iter().map(|t| t.as_str()).collect();
        bad("type", format!("{k:?} is not a finding type ({})", all.join(", ")));
    }
    let severities: Vec<String> = match p.severity.as_deref() {
        None => Vec::new(),
        Some(s) => match SEVERITIES.iter().position(|x| *x == s) {
            Some(i) => SEVERITIES[i..].iter().map(|s| s.to_string()).collect(),
            None => {
                bad("severity", format!("{s:?} is not a severity (low, medium, high, critical)"));
                Vec::new()
            }
        },
    };
    if let Some(s) = &p.status
        && !["open", "acknowledged", "resolved"].contains(&s.as_str())
    {
        bad("status", format!("{s:?} is not a status (open, acknowledged, resolved)"));
    }
    let since =
        p.since.as_deref().and_then(|s| match engine::investigate::parse_time("since", s, state.engine.now()) {
            Ok(t) => Some(t),
            Err(e) => {
                bad("since", e.message);
                None
            }
        });
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        bad("limit", "must be between 1 and 1000".to_owned());
    }
    let signature = format!("{:?}|{:?}|{:?}|{:?}|{:?}", p.kind, p.severity, p.status, p.token_id, p.since);
    let after = p.cursor.as_deref().and_then(|c| {
        engine::decode_cursor(c, &signature).or_else(|| {
            bad("cursor", "is not a cursor issued for this query".to_owned());
            None
        })
    });
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let q = FindingQuery { kind: p.kind, severities, status: p.status, token_id: p.token_id, since, after, limit };
    let engine = state.engine.clone();
    let page = blocking(move || {
        let page = engine.list_findings(&q)?;
        engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), 200)?;
        Ok(page)
    })
    .await?;
    Ok(Json(FindingList {
        findings: page.items.iter().map(finding_view).collect(),
        next_cursor: page.next.map(|n| engine::encode_cursor(n, &signature)),
    }))
}

/// One finding.
#[utoipa::path(get, path = "/v1/findings/{id}", tag = "findings", params(("id" = String, Path, description = "Finding id")),
    security(("bearer" = [])),
    responses((status = 200, body = FindingView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<FindingView>, ApiError> {
    let engine = state.engine.clone();
    let f = blocking(move || {
        let f = engine.get_finding(&id);
        engine.record_read(
            &admin.principal,
            &admin.ctx,
            &Scope::tokentrail_admin(),
            if f.is_ok() { 200 } else { 404 },
        )?;
        f
    })
    .await?;
    Ok(Json(finding_view(&f)))
}

async fn set_status(
    state: AppState,
    admin: Admin,
    id: String,
    status: &'static str,
    comment: String,
) -> Result<Json<FindingView>, ApiError> {
    let engine = state.engine.clone();
    let f = blocking(move || engine.set_finding_status(&admin.principal, &admin.ctx, &id, status, &comment)).await?;
    Ok(Json(finding_view(&f)))
}

/// Acknowledge a finding (someone is on it), with a comment; an audited admin action.
#[utoipa::path(post, path = "/v1/findings/{id}/ack", tag = "findings", request_body = FindingComment,
    params(("id" = String, Path, description = "Finding id")), security(("bearer" = [])),
    responses((status = 200, body = FindingView), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn ack(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<FindingComment>,
) -> Result<Json<FindingView>, ApiError> {
    set_status(state, admin, id, "acknowledged", body.comment).await
}

/// Resolve a finding, with a comment saying how; an audited admin action. New activity of the
/// same incident reopens it.
#[utoipa::path(post, path = "/v1/findings/{id}/resolve", tag = "findings", request_body = FindingComment,
    params(("id" = String, Path, description = "Finding id")), security(("bearer" = [])),
    responses((status = 200, body = FindingView), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn resolve(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<FindingComment>,
) -> Result<Json<FindingView>, ApiError> {
    set_status(state, admin, id, "resolved", body.comment).await
}
