//! `/v1/audit`: read the audit log. Every read of the log is itself recorded (PCI DSS 10.2.1.3).

use axum::Json;
use axum::extract::{Path, State};
use ledger::event::{Kind, Verdict};
use proto::{EventList, EventView, Problem};
use serde::Deserialize;
use store::{EventQuery, Order};
use token::{Reason, Scope};
use utoipa::IntoParams;

use crate::extract::{Admin, QueryParams};
use crate::problem::ApiError;
use crate::views::event_view;
use crate::{AppState, blocking};

/// Largest page of events.
const MAX_LIMIT: u32 = 1000;

/// Filters of `GET /v1/audit/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// `access` or `admin`.
    pub kind: Option<String>,
    /// The token that acted.
    pub token_id: Option<String>,
    /// Admin events about this token.
    pub target: Option<String>,
    /// Event source (`admin`, `gateway`, …).
    pub source: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// Reason code.
    pub reason: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    pub order: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

fn query(p: &EventParams) -> Result<(EventQuery, String), ApiError> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, message: String| errors.push(proto::FieldError { field: field.to_owned(), message });
    let kind = p.kind.as_deref().and_then(|k| {
        Kind::parse(k).or_else(|| {
            bad("kind", format!("{k:?} is not a kind (access, admin)"));
            None
        })
    });
    let decision = p.decision.as_deref().and_then(|d| {
        Verdict::parse(d).or_else(|| {
            bad("decision", format!("{d:?} is not a decision (allow, deny)"));
            None
        })
    });
    let reason = p.reason.as_deref().and_then(|r| {
        Reason::parse(r).or_else(|| {
            let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
            bad("reason", format!("{r:?} is not a reason code ({})", all.join(", ")));
            None
        })
    });
    let order = match p.order.as_deref() {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(o) => {
            bad("order", format!("{o:?} is not an order (asc, desc)"));
            Order::Desc
        }
    };
    let limit = p.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        bad("limit", format!("must be between 1 and {MAX_LIMIT}"));
    }
    let signature = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{order:?}",
        p.kind, p.token_id, p.target, p.source, p.decision, p.reason
    );
    let after = p.cursor.as_deref().and_then(|c| {
        engine::decode_cursor(c, &signature).or_else(|| {
            bad("cursor", "is not a cursor issued for this query; start again without a cursor".to_owned());
            None
        })
    });
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let q = EventQuery {
        kind,
        token_id: p.token_id.clone(),
        target: p.target.clone(),
        source: p.source.clone(),
        decision,
        reason,
        token_fingerprint: None,
        owner: None,
        source_ip: None,
        route: None,
        resource: None,
        action: None,
        sensitivity: None,
        since: None,
        until: None,
        after,
        order,
        limit,
    };
    Ok((q, signature))
}

/// List audit events, newest first by default.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", params(EventParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = EventList),
        (status = 400, description = "Invalid filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    QueryParams(params): QueryParams<EventParams>,
) -> Result<Json<EventList>, ApiError> {
    let (q, signature) = query(&params)?;
    let engine = state.engine.clone();
    let page = blocking(move || {
        let page = engine.list_events(&q)?;
        engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), 200)?;
        Ok(page)
    })
    .await?;
    Ok(Json(EventList {
        events: page.items.iter().map(event_view).collect(),
        next_cursor: page.next.map(|n| engine::encode_cursor(n, &signature)),
    }))
}

/// One audit event, with its position `seq`.
#[utoipa::path(get, path = "/v1/audit/events/{id}", tag = "audit", params(("id" = String, Path, description = "Event id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = EventView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    let engine = state.engine.clone();
    let event = blocking(move || {
        let e = engine.get_event(&id);
        engine.record_read(
            &admin.principal,
            &admin.ctx,
            &Scope::tokentrail_admin(),
            if e.is_ok() { 200 } else { 404 },
        )?;
        e
    })
    .await?;
    Ok(Json(event_view(&event)))
}
