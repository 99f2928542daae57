//! `/v1/audit` ledger endpoints: signed checkpoints, leaves, inclusion and consistency proofs,
//! the verifier key, and erasure of personal values. Reads are recorded like every admin read.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use proto::{ConsistencyView, EraseRequest, EraseResult, FieldError, LeafView, Problem, ProofView};
use serde::Deserialize;
use token::Scope;
use utoipa::IntoParams;

use crate::extract::{Admin, JsonBody, QueryParams};
use crate::problem::ApiError;
use crate::{AppState, blocking};

const NOTE: &str = "text/plain; charset=utf-8";

/// Query of `GET /v1/audit/events/{id}/proof`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProofParams {
    /// Tree size to prove inclusion in; default: the latest signed checkpoint (one is signed on
    /// demand when the event is newer).
    pub size: Option<u64>,
}

/// Query of `GET /v1/audit/consistency`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// The older tree size (at least 1).
    pub from: u64,
    /// The newer tree size (at most the log size).
    pub to: u64,
}

fn read<T: Send + 'static>(
    state: &AppState,
    admin: Admin,
    f: impl FnOnce(&engine::Engine) -> Result<T, engine::EngineError> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, ApiError>> {
    let engine = state.engine.clone();
    blocking(move || {
        let out = f(&engine);
        let status = if out.is_ok() { 200 } else { 400 };
        engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), status)?;
        out
    })
}

/// The latest signed checkpoint (C2SP tlog-checkpoint in a signed note), as text.
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "ledger", security(("bearer" = [])),
    responses((status = 200, description = "The signed note", content_type = "text/plain"),
              (status = 404, description = "The log is empty", body = Problem, content_type = "application/problem+json")))]
pub async fn checkpoint(State(state): State<AppState>, admin: Admin) -> Result<impl IntoResponse, ApiError> {
    let cp = read(&state, admin, |e| e.latest_checkpoint()).await?;
    Ok(([(header::CONTENT_TYPE, NOTE)], cp.note))
}

/// Signs a checkpoint of the log now (if it grew) and returns it.
#[utoipa::path(post, path = "/v1/audit/checkpoint", tag = "ledger", security(("bearer" = [])),
    responses((status = 200, description = "The signed note", content_type = "text/plain")))]
pub async fn sign_checkpoint(State(state): State<AppState>, admin: Admin) -> Result<impl IntoResponse, ApiError> {
    let cp = read(&state, admin, |e| {
        e.checkpoint()?.ok_or_else(|| engine::EngineError::NotFound("checkpoint (the log is empty)".into()))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, NOTE)], cp.note))
}

/// The verifier key of this log's checkpoints: `name+hex(keyID)+base64(0x01 || public key)`.
#[utoipa::path(get, path = "/v1/audit/key", tag = "ledger", security(("bearer" = [])),
    responses((status = 200, description = "The verifier key", content_type = "text/plain")))]
pub async fn key(State(state): State<AppState>, admin: Admin) -> Result<impl IntoResponse, ApiError> {
    let key = read(&state, admin, |e| Ok(e.verifier_key())).await?;
    Ok(([(header::CONTENT_TYPE, NOTE)], format!("{key}\n")))
}

/// An event's canonical leaf bytes (docs/ledger.md).
#[utoipa::path(get, path = "/v1/audit/events/{id}/leaf", tag = "ledger", security(("bearer" = [])),
    params(("id" = String, Path, description = "Event id")),
    responses((status = 200, body = LeafView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn leaf(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<LeafView>, ApiError> {
    let (index, bytes) = read(&state, admin, move |e| e.leaf(&id)).await?;
    Ok(Json(LeafView { index, leaf: BASE64.encode(bytes) }))
}

/// An inclusion proof of an event.
#[utoipa::path(get, path = "/v1/audit/events/{id}/proof", tag = "ledger", security(("bearer" = [])),
    params(("id" = String, Path, description = "Event id"), ProofParams),
    responses((status = 200, body = ProofView),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn proof(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ProofParams>,
) -> Result<Json<ProofView>, ApiError> {
    let p = read(&state, admin, move |e| e.inclusion_proof(&id, q.size)).await?;
    Ok(Json(ProofView {
        index: p.index,
        tree_size: p.tree_size,
        leaf_hash: BASE64.encode(p.leaf_hash),
        hashes: p.hashes.iter().map(|h| BASE64.encode(h)).collect(),
    }))
}

/// A consistency proof between two tree sizes.
#[utoipa::path(get, path = "/v1/audit/consistency", tag = "ledger", security(("bearer" = [])),
    params(ConsistencyParams),
    responses((status = 200, body = ConsistencyView), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn consistency(
    State(state): State<AppState>,
    admin: Admin,
    QueryParams(q): QueryParams<ConsistencyParams>,
) -> Result<Json<ConsistencyView>, ApiError> {
    let (from, to) = (q.from, q.to);
    let hashes = read(&state, admin, move |e| e.consistency_proof(from, to)).await?;
    Ok(Json(ConsistencyView { from, to, hashes: hashes.iter().map(|h| BASE64.encode(h)).collect() }))
}

/// Erases the personal values of every event of an owner or from an address. The events stay in
/// the log, which still verifies; the erasure is recorded as an admin action.
#[utoipa::path(post, path = "/v1/audit/erase", tag = "ledger", security(("bearer" = [])), request_body = EraseRequest,
    responses((status = 200, body = EraseResult), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn erase(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(req): JsonBody<EraseRequest>,
) -> Result<Json<EraseResult>, ApiError> {
    let erasure = match (req.owner, req.source_ip) {
        (Some(o), None) => store::Erasure::Owner(o),
        (None, Some(ip)) => store::Erasure::SourceIp(ip),
        _ => {
            return Err(ApiError::invalid(vec![FieldError {
                field: "owner".into(),
                message: "give exactly one of owner and source_ip".into(),
            }]));
        }
    };
    let engine = state.engine.clone();
    let erased = blocking(move || engine.erase(&admin.principal, &admin.ctx, &erasure)).await?;
    Ok(Json(EraseResult { erased }))
}
