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
use crate::views::{event_view, into_event_view};
use crate::{AppState, blocking};

/// Largest page of events.
const MAX_LIMIT: u32 = 1000;

/// Filters of `GET /v1/audit/events`, `/v1/audit/stats` and `/v1/audit/stream`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// `access` or `admin`.
    pub kind: Option<String>,
    /// The token that acted.
    pub token_id: Option<String>,
    /// The keyed fingerprint of an unresolved credential (`fp_…`).
    pub fingerprint: Option<String>,
    /// The token's owner.
    pub owner: Option<String>,
    /// An address or a network (`10.0.0.0/8`, `2001:db8::/32`).
    pub source_ip: Option<String>,
    /// Route template, e.g. `GET /v1/patients/{id}`.
    pub route: Option<String>,
    /// Resource.
    pub resource: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// A sensitivity label (`phi`, `pii`, …).
    pub sensitivity: Option<String>,
    /// Admin events about this token.
    pub target: Option<String>,
    /// Event source (`admin`, `gateway`, `verify`, `authz`, an ingest source).
    pub source: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// Reason code.
    pub reason: Option<String>,
    /// From this time: RFC 3339, or relative (`15m`, `24h`, `7d` ago).
    pub since: Option<String>,
    /// Before this time: RFC 3339, or relative.
    pub until: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    pub order: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (events: 1 to 1000, default 100; stats: groups, default 100).
    pub limit: Option<u32>,
    /// Stats only: token, owner, route, resource, reason, decision, source_ip, network, hour, day.
    pub group_by: Option<String>,
}

/// Which endpoint the parameters are for (each takes a subset).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    Events,
    Stats,
    Stream,
    Export,
}

/// The store query for the parameters; every problem is listed.
pub(crate) fn query(p: &EventParams, now: jiff::Timestamp, use_: Use) -> Result<(EventQuery, String), ApiError> {
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
    let source_ip = p.source_ip.as_deref().and_then(|s| match token::parse_cidr(s) {
        Ok(n) => Some(n),
        Err(e) => {
            bad("source_ip", e.to_string());
            None
        }
    });
    let mut time = |field: &str, v: &Option<String>| {
        v.as_deref().and_then(|s| match engine::investigate::parse_time(field, s, now) {
            Ok(t) => Some(t),
            Err(e) => {
                bad(&e.field, e.message);
                None
            }
        })
    };
    let since = time("since", &p.since);
    let until = time("until", &p.until);
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        bad("until", "must be after since".to_owned());
    }
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
    if use_ != Use::Stats && p.group_by.is_some() {
        bad("group_by", "only /v1/audit/stats groups events".to_owned());
    }
    if use_ != Use::Events && p.cursor.is_some() {
        bad("cursor", "cursor applies to /v1/audit/events only".to_owned());
    }
    if use_ != Use::Events && p.order.is_some() {
        bad("order", "order applies to /v1/audit/events only".to_owned());
    }
    if use_ == Use::Export && p.limit.is_some() {
        bad("limit", "an export has every matching event; filter by time to take fewer".to_owned());
    }
    let signature = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{order:?}",
        p.kind,
        p.token_id,
        p.fingerprint,
        p.owner,
        p.source_ip,
        p.route,
        p.resource,
        p.action,
        p.sensitivity,
        p.target,
        p.source,
        p.decision,
        p.reason,
        since.map(|t| t.as_microsecond()),
        until.map(|t| t.as_microsecond())
    );
    let after = p.cursor.as_deref().filter(|_| use_ == Use::Events).and_then(|c| {
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
        token_fingerprint: p.fingerprint.clone(),
        owner: p.owner.clone(),
        source_ip,
        route: p.route.clone(),
        resource: p.resource.clone(),
        action: p.action.clone(),
        sensitivity: p.sensitivity.clone(),
        sensitive_only: false,
        operation: None,
        since,
        until,
        after,
        order,
        by_time: false,
        limit,
    };
    Ok((q, signature))
}

/// List audit events, newest first.
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
    let (q, signature) = query(&params, state.engine.now(), Use::Events)?;
    let engine = state.engine.clone();
    let page = blocking(move || {
        let page = engine.list_events(&q)?;
        engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), 200)?;
        Ok(page)
    })
    .await?;
    Ok(Json(EventList {
        events: page.items.into_iter().map(into_event_view).collect(),
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

/// Parameters of `GET /v1/tokens/{id}/activity`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActivityParams {
    /// From when: RFC 3339 or relative (`30d`, the default).
    pub since: Option<String>,
}

fn group_by(s: Option<&str>) -> Result<store::GroupBy, ApiError> {
    use store::GroupBy as G;
    let g = match s {
        Some("token") => G::Token,
        Some("owner") => G::Owner,
        Some("route") => G::Route,
        Some("resource") => G::Resource,
        Some("reason") => G::Reason,
        Some("decision") => G::Decision,
        Some("source_ip") => G::SourceIp,
        Some("network") => G::Network,
        Some("hour") => G::Hour,
        Some("day") => G::Day,
        other => {
            let message = match other {
                None => "is required".to_owned(),
                Some(o) => format!("{o:?} is not a grouping"),
            };
            return Err(ApiError::invalid(vec![proto::FieldError {
                field: "group_by".into(),
                message: format!(
                    "{message} (token, owner, route, resource, reason, decision, source_ip, network, hour, day)"
                ),
            }]));
        }
    };
    Ok(g)
}

/// Counts of the matching events, grouped: allowed, denied, distinct addresses, bytes.
#[utoipa::path(get, path = "/v1/audit/stats", tag = "audit", params(EventParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = proto::Stats),
        (status = 400, description = "Invalid filter or grouping", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stats(
    State(state): State<AppState>,
    admin: Admin,
    QueryParams(params): QueryParams<EventParams>,
) -> Result<Json<proto::Stats>, ApiError> {
    let g = group_by(params.group_by.as_deref())?;
    let (q, _) = query(&params, state.engine.now(), Use::Stats)?;
    let engine = state.engine.clone();
    let limit = q.limit;
    let rows = blocking(move || {
        let rows = engine.store().stats(&q, g, limit)?;
        engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), 200)?;
        Ok(rows)
    })
    .await?;
    Ok(Json(proto::Stats {
        group_by: params.group_by.unwrap_or_default(),
        groups: rows.iter().map(crate::views::stat_group).collect(),
    }))
}

/// Why a request was allowed or denied: the scope required and granted then, the failing
/// constraint with its values, a concrete fix, and for an unresolvable credential how often and
/// from where it was presented.
#[utoipa::path(get, path = "/v1/audit/events/{id}/explain", tag = "audit", params(("id" = String, Path, description = "Event id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = proto::Explanation),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn explain(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<proto::Explanation>, ApiError> {
    let engine = state.engine.clone();
    let x = blocking(move || {
        let x = engine.explain(&id);
        engine.record_read(
            &admin.principal,
            &admin.ctx,
            &Scope::tokentrail_admin(),
            if x.is_ok() { 200 } else { 404 },
        )?;
        x
    })
    .await?;
    Ok(Json(crate::views::explanation(&x)))
}

/// A token's timeline: lifecycle, daily allowed/denied counts, routes, resources and networks
/// used, recent denials, last use.
#[utoipa::path(get, path = "/v1/tokens/{id}/activity", tag = "tokens",
    params(("id" = String, Path, description = "Token id"), ActivityParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = proto::Activity),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn activity(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    QueryParams(p): QueryParams<ActivityParams>,
) -> Result<Json<proto::Activity>, ApiError> {
    let now = state.engine.now();
    let since = engine::investigate::parse_time("since", p.since.as_deref().unwrap_or("30d"), now)
        .map_err(|e| ApiError::invalid(vec![proto::FieldError { field: e.field, message: e.message }]))?;
    let engine = state.engine.clone();
    let a = blocking(move || {
        let a = engine.activity(&id, Some(since));
        engine.record_read(
            &admin.principal,
            &admin.ctx,
            &Scope::tokentrail_admin(),
            if a.is_ok() { 200 } else { 404 },
        )?;
        a
    })
    .await?;
    Ok(Json(crate::views::activity(&a, now)))
}

/// Live events as Server-Sent Events (`event: audit`, `id:` the position, `data:` the event
/// JSON), filtered like `/v1/audit/events`. Starts after the newest event, or after
/// `Last-Event-ID` when the client resumes.
#[utoipa::path(get, path = "/v1/audit/stream", tag = "audit", params(EventParams),
    security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream of events", content_type = "text/event-stream")))]
pub async fn stream(
    State(state): State<AppState>,
    admin: Admin,
    headers: axum::http::HeaderMap,
    QueryParams(params): QueryParams<EventParams>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    let (mut q, _) = query(&params, state.engine.now(), Use::Stream)?;
    q.order = Order::Asc;
    q.limit = 500;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<i64>().ok());
    let engine = state.engine.clone();
    let start = blocking(move || {
        engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), 200)?;
        Ok(engine.store().event_count()? as i64 - 1)
    })
    .await?;
    let after = resume.unwrap_or(start);
    let engine = state.engine.clone();
    let events = futures_util::stream::unfold(
        (engine, q, after, std::collections::VecDeque::<ledger::event::Event>::new()),
        |(engine, q, mut after, mut buffer)| async move {
            loop {
                if let Some(e) = buffer.pop_front() {
                    let seq = e.seq.unwrap_or(0);
                    let data = proto::to_json(&into_event_view(e));
                    let item = SseEvent::default().event("audit").id(seq.to_string()).data(data);
                    return Some((Ok::<_, std::convert::Infallible>(item), (engine, q, after, buffer)));
                }
                let mut page_q = q.clone();
                page_q.after = Some(after);
                let e2 = engine.clone();
                // The count is read before the query: every position below it was committed
                // when the query ran, so when nothing matched, skipping to it loses nothing.
                let polled = tokio::task::spawn_blocking(move || {
                    let n = e2.store().event_count()?;
                    Ok::<_, store::StoreError>((n, e2.list_events(&page_q)))
                })
                .await;
                match polled {
                    Ok(Ok((_, Ok(page)))) if !page.items.is_empty() => {
                        after = page.items.last().and_then(|e| e.seq).map_or(after, |s| s as i64);
                        buffer.extend(page.items);
                    }
                    Ok(Ok((n, Ok(_)))) => {
                        after = after.max(n as i64 - 1);
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
                }
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// Every matching event, oldest first, as NDJSON: one event per line, each the JSON of
/// `/v1/audit/events`. The export ends at the newest event when it started, so it is a
/// consistent cut of the log while events are appended; it streams with constant memory. One
/// read of the log is recorded.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(EventParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One event per line", content_type = "application/x-ndjson"),
        (status = 400, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(state): State<AppState>,
    admin: Admin,
    QueryParams(params): QueryParams<EventParams>,
) -> Result<axum::response::Response, ApiError> {
    let (mut q, _) = query(&params, state.engine.now(), Use::Export)?;
    q.order = Order::Asc;
    q.limit = MAX_LIMIT;
    let engine = state.engine.clone();
    // The end is read before the read is recorded, so the export does not hold its own record.
    let end = blocking(move || {
        let end = engine.store().event_count()?;
        engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), 200)?;
        Ok(end)
    })
    .await?;
    // Pages are read and written out on a blocking thread, a few chunks ahead of the socket.
    let (send, chunks) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut after = None;
        loop {
            let page = match engine.list_events(&EventQuery { after, ..q.clone() }) {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "an export stopped: reading the log failed");
                    // The body ends in an error, so the client sees a broken transfer, not an end.
                    let _ = send.blocking_send(Err(std::io::Error::other("reading the log failed")));
                    return;
                }
            };
            let mut out = Vec::with_capacity(page.items.len() * 640);
            let mut done = page.next.is_none();
            for e in page.items {
                if e.seq.is_none_or(|s| s >= end) {
                    done = true;
                    break;
                }
                // Serializing plain data into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, &into_event_view(e));
                out.push(b'\n');
            }
            if !out.is_empty() && send.blocking_send(Ok(bytes::Bytes::from(out))).is_err() {
                return; // The client went away.
            }
            if done {
                return;
            }
            after = page.next;
        }
    });
    let body =
        futures_util::stream::unfold(chunks, |mut chunks| async move { chunks.recv().await.map(|c| (c, chunks)) });
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(axum::body::Body::from_stream(body))
        .map_err(|e| ApiError::internal(&format!("cannot build the export response: {e}")))
}

/// Query of `POST /v1/audit/ingest`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IngestParams {
    /// Skip bad lines instead of failing the whole ingest.
    pub skip_invalid: Option<bool>,
    /// Only check the lines; write nothing (for checking several files before ingesting any).
    pub dry_run: Option<bool>,
}

/// Appends events in tokentrail's NDJSON schema (one per line). Every line is checked first: a
/// bad line fails the whole ingest with every bad line listed by number, and nothing is written
/// (or, with `skip_invalid=true`, bad lines are skipped and listed). Up to 64 MiB per request.
#[utoipa::path(post, path = "/v1/audit/ingest", tag = "audit", params(IngestParams),
    request_body(content = String, content_type = "application/x-ndjson", description = "One event per line"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = proto::IngestResult),
        (status = 400, description = "Bad lines; nothing was written", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ingest(
    State(state): State<AppState>,
    admin: Admin,
    QueryParams(params): QueryParams<IngestParams>,
    body: axum::body::Bytes,
) -> Result<Json<proto::IngestResult>, ApiError> {
    let engine = state.engine.clone();
    let options = crate::ingest::Options { skip_invalid: params.skip_invalid.unwrap_or(false) };
    let dry_run = params.dry_run.unwrap_or(false);
    let result = blocking(move || {
        if dry_run {
            let (_, errors) = crate::ingest::check(std::io::Cursor::new(body.clone()), engine.store(), &mut |_| {})
                .map_err(engine::EngineError::Unavailable)?;
            if !errors.is_empty() && !options.skip_invalid {
                let total = errors.len();
                return Ok(Err(crate::ingest::IngestFailure::Invalid { errors, total }));
            }
            return Ok(Ok(proto::IngestResult { ingested: 0, skipped: errors.len() as u64, errors }));
        }
        let mut open = || Ok(std::io::Cursor::new(body.clone()));
        let mut new_id = || engine::event_id(engine.now()).map_err(|e| e.to_string());
        let recorder_engine = engine.clone();
        let mut append = |batch: Vec<ledger::event::Event>| {
            recorder_engine.record_batch_blocking(batch).map(|_| ()).map_err(|e| e.to_string())
        };
        let outcome = crate::ingest::run(&mut open, engine.store(), options, &mut new_id, &mut append, &mut |_, _| {});
        Ok(outcome)
    })
    .await?;
    match result {
        Ok(r) if dry_run => Ok(Json(r)),
        Ok(r) => {
            let engine = state.engine.clone();
            let (ingested, skipped) = (r.ingested, r.skipped);
            blocking(move || engine.record_admin_note(&admin.principal, &admin.ctx, "audit.ingest", ingested, skipped))
                .await?;
            Ok(Json(r))
        }
        Err(crate::ingest::IngestFailure::Invalid { errors, total }) => {
            let mut e = ApiError::invalid(
                errors
                    .iter()
                    .map(|l| proto::FieldError { field: format!("line {}", l.line), message: l.message.clone() })
                    .collect(),
            );
            let lines = if total == 1 { "line" } else { "lines" };
            e.detail = Some(format!("{total} bad {lines}; nothing was written (pass skip_invalid=true to skip them)"));
            Err(e)
        }
        Err(crate::ingest::IngestFailure::Io(m)) => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The ingest could not be completed",
            m,
        )),
    }
}
