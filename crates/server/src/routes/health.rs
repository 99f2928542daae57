//! Liveness, readiness, metrics and the OpenAPI document. Unauthenticated: they reveal no
//! token, owner or event, only counts (keep the admin listener on a private address).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use proto::Health;

use crate::{AppState, blocking};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".to_owned(), store: None, detail: None })
}

/// Readiness: the store can be read.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "The store cannot be used", body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let engine = state.engine.clone();
    let backend = state.engine.store().backend().to_owned();
    match blocking(move || Ok(engine.store().ping()?)).await {
        Ok(()) => (StatusCode::OK, Json(Health { status: "ok".to_owned(), store: Some(backend), detail: None })),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health { status: "unavailable".to_owned(), store: Some(backend), detail: e.detail.clone() }),
        ),
    }
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let engine = state.engine.clone();
    let gauges = blocking(move || Ok((engine.token_counts()?, engine.store().event_count()?))).await.ok();
    let mut body = state.metrics.render(gauges.as_ref().map(|(c, _)| c), gauges.as_ref().map(|(_, n)| *n));
    state.auditor.render_metrics(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document())
}
