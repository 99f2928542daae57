//! Least privilege and compliance: `/v1/reports/*`, and narrowing or confirming a token.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use proto::{ConfirmRequest, NarrowRequest, Problem};
use serde::Deserialize;
use store::{EventQuery, Order};
use token::Scope;
use utoipa::IntoParams;

use crate::extract::{Admin, JsonBody, OptionalJsonBody, QueryParams};
use crate::problem::ApiError;
use crate::{AppState, blocking, views};

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(vec![proto::FieldError { field: field.to_owned(), message: message.into() }])
}

fn window(state: &AppState, w: Option<&str>) -> Result<insight::Settings, ApiError> {
    let mut s = state.reports.clone();
    if let Some(w) = w {
        s.window = token::parse_duration(w).map_err(|e| bad("window", e.to_string()))?;
    }
    Ok(s)
}

/// The last access-review confirmation per token.
fn confirmations(engine: &engine::Engine) -> Result<BTreeMap<String, jiff::Timestamp>, engine::EngineError> {
    let events = engine.list_events(&EventQuery {
        operation: Some("token.confirm".into()),
        order: Order::Asc,
        limit: 1000,
        ..Default::default()
    })?;
    Ok(events.items.into_iter().filter_map(|e| Some((e.target?, e.time))).collect())
}

/// Parameters of the least-privilege and access-review reports.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PrivilegeParams {
    /// The window of observed use (`90d` by default).
    pub window: Option<String>,
    /// Only this owner's tokens.
    pub owner: Option<String>,
}

async fn privilege_report(
    state: &AppState,
    admin: Admin,
    p: PrivilegeParams,
) -> Result<proto::LeastPrivilegeReport, ApiError> {
    let settings = window(state, p.window.as_deref())?;
    let days = settings.window.as_secs() / 86_400;
    let engine = state.engine.clone();
    blocking(move || {
        let rows = engine.least_privilege(&settings, p.owner.as_deref())?;
        let confirmed = confirmations(&engine)?;
        engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), 200)?;
        Ok(views::least_privilege(&rows, &confirmed, days, engine.now()))
    })
    .await
}

/// Granted versus used scopes per token, with recommendations (narrow, revoke, set_expiry,
/// rotate) and the evidence behind each.
#[utoipa::path(get, path = "/v1/reports/least-privilege", tag = "reports", params(PrivilegeParams),
    security(("bearer" = [])),
    responses((status = 200, body = proto::LeastPrivilegeReport), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn least_privilege(
    State(state): State<AppState>,
    admin: Admin,
    QueryParams(p): QueryParams<PrivilegeParams>,
) -> Result<Json<proto::LeastPrivilegeReport>, ApiError> {
    Ok(Json(privilege_report(&state, admin, p).await?))
}

/// An access review: each token with its grants, use, recommendation and last confirmation.
#[utoipa::path(get, path = "/v1/reports/access-review", tag = "reports", params(PrivilegeParams),
    security(("bearer" = [])),
    responses((status = 200, body = proto::LeastPrivilegeReport)))]
pub async fn access_review(
    State(state): State<AppState>,
    admin: Admin,
    QueryParams(p): QueryParams<PrivilegeParams>,
) -> Result<Json<proto::LeastPrivilegeReport>, ApiError> {
    Ok(Json(privilege_report(&state, admin, p).await?))
}

/// Try (`what_if`), shadow or apply a narrower grant.
#[utoipa::path(post, path = "/v1/tokens/{id}/narrow", tag = "reports", request_body = NarrowRequest,
    params(("id" = String, Path, description = "Token id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "what_if: the replay; shadow/apply: the token", body = proto::WhatIf),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn narrow(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<NarrowRequest>,
) -> Result<Response, ApiError> {
    let modes = [req.what_if, req.shadow, req.apply].iter().filter(|m| **m).count();
    if modes != 1 {
        return Err(bad("what_if", "give exactly one of what_if, shadow and apply"));
    }
    let settings = window(&state, req.window.as_deref())?;
    let engine = state.engine.clone();
    if req.what_if {
        let days = settings.window.as_secs() / 86_400;
        let to = req.to.clone();
        let w = blocking(move || {
            let w = engine.what_if(&id, &to, settings.window)?;
            engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), 200)?;
            Ok((id, w))
        })
        .await?;
        let (id, w) = w;
        return Ok(Json(proto::WhatIf {
            token_id: id,
            proposed: req.to,
            window_days: days,
            considered: w.considered,
            would_deny: w.would_deny,
            would_deny_events: w.would_deny_events,
            by_route: w.by_route,
        })
        .into_response());
    }
    let now = state.engine.now();
    let t = blocking(move || {
        if req.shadow {
            engine.set_shadow(&admin.principal, &admin.ctx, &id, &req.to)
        } else {
            engine.apply_scopes(&admin.principal, &admin.ctx, &id, &req.to)
        }
    })
    .await?;
    Ok(Json(views::token_view(&t, now)).into_response())
}

/// Confirm a token in an access review (an audited admin action shown in the next report).
#[utoipa::path(post, path = "/v1/tokens/{id}/confirm", tag = "reports", request_body(content = ConfirmRequest, description = "Optional"),
    params(("id" = String, Path, description = "Token id")), security(("bearer" = [])),
    responses((status = 204, description = "Recorded"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn confirm(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    OptionalJsonBody(req): OptionalJsonBody<ConfirmRequest>,
) -> Result<axum::http::StatusCode, ApiError> {
    let engine = state.engine.clone();
    let comment = req.comment.unwrap_or_default();
    blocking(move || engine.confirm_token(&admin.principal, &admin.ctx, &id, &comment)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Parameters of the compliance report.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ComplianceParams {
    /// Period start: a date (`2026-11-01`) or an RFC 3339 time.
    pub from: Option<String>,
    /// Period end, exclusive: a date or an RFC 3339 time. Default: now.
    pub to: Option<String>,
    /// `json` (default), `csv` or `html`.
    pub format: Option<String>,
}

/// A date (`2026-11-01`, midnight UTC) or an RFC 3339 time.
pub fn parse_day_or_time(field: &str, s: &str) -> Result<jiff::Timestamp, ApiError> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    s.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| jiff::tz::TimeZone::UTC.to_timestamp(d.to_datetime(jiff::civil::Time::midnight())).ok())
        .ok_or_else(|| bad(field, format!("{s:?} is neither a date (2026-11-01) nor an RFC 3339 time")))
}

/// The compliance report of a period: inventory, access, sensitive data, denials, findings,
/// admin changes, reviews, least privilege, an integrity statement and the control mapping.
#[utoipa::path(get, path = "/v1/reports/compliance", tag = "reports", params(ComplianceParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "JSON, CSV or a self-contained HTML file", body = proto::ComplianceReport),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn compliance(
    State(state): State<AppState>,
    admin: Admin,
    QueryParams(p): QueryParams<ComplianceParams>,
) -> Result<Response, ApiError> {
    let from = parse_day_or_time("from", p.from.as_deref().ok_or_else(|| bad("from", "is required"))?)?;
    let to = match p.to.as_deref() {
        Some(t) => parse_day_or_time("to", t)?,
        None => state.engine.now(),
    };
    let format = p.format.unwrap_or_else(|| "json".to_owned());
    if !["json", "csv", "html"].contains(&format.as_str()) {
        return Err(bad("format", format!("{format:?} is not json, csv or html")));
    }
    let report = build_compliance(&state, admin, from, to).await?;
    Ok(match format.as_str() {
        "csv" => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], views::compliance_csv(&report)).into_response(),
        "html" => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], crate::report_html::render(&report)).into_response()
        }
        _ => Json(report).into_response(),
    })
}

/// Gathers and renders the compliance report as JSON.
pub(crate) async fn build_compliance(
    state: &AppState,
    admin: Admin,
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> Result<proto::ComplianceReport, ApiError> {
    let settings = state.reports.clone();
    let days = settings.window.as_secs() / 86_400;
    let engine = state.engine.clone();
    let dir = state.data_dir.clone();
    blocking(move || {
        let c = engine.compliance(from, to, &settings)?;
        let confirmed = confirmations(&engine)?;
        let lp = views::least_privilege(&c.privilege, &confirmed, days, engine.now());
        engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), 200)?;
        Ok(views::compliance(&c, lp, &dir))
    })
    .await
}
