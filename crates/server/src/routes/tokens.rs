//! `/v1/tokens`: issue, list, show, update, revoke and rotate tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use proto::{
    CreateTokenRequest, IssuedToken, Problem, RevokeRequest, RotateRequest, TokenList, TokenView, UpdateTokenRequest,
};
use serde::Deserialize;
use token::Scope;
use utoipa::IntoParams;

use crate::extract::{Admin, JsonBody, OptionalJsonBody, QueryParams};
use crate::problem::ApiError;
use crate::views::token_view;
use crate::{AppState, blocking};

/// Filters of `GET /v1/tokens`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Exact owner.
    pub owner: Option<String>,
    /// Tokens whose grants imply this scope (e.g. `orders:read` also finds `orders:admin` and `*:read`).
    pub scope: Option<String>,
    /// `active`, `revoked`, `expired` or `not_yet_valid`.
    pub state: Option<String>,
    /// `key` or `key=value`.
    pub label: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// Issue a token. The response is the only time the token string is shown.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateTokenRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; store `token` now, it is never shown again", body = IssuedToken),
        (status = 400, description = "Invalid request; every invalid field is listed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks tokentrail:admin", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(req): JsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let engine = state.engine.clone();
    let new = engine::NewToken {
        name: req.name,
        owner: req.owner,
        description: req.description,
        labels: req.labels,
        scopes: req.scopes,
        expires_at: req.expires_at,
        expires_in: req.expires_in,
        no_expiry: req.no_expiry,
        not_before: req.not_before,
        allowed_cidrs: req.allowed_cidrs,
        rate_limit: req.rate_limit,
    };
    let (record, token, _) = blocking(move || engine.create_token(&admin.principal, &admin.ctx, new)).await?;
    let details = token_view(&record, state.engine.now());
    Ok((StatusCode::CREATED, Json(IssuedToken { token: token.expose().to_owned(), details })))
}

/// List tokens, filtered, in creation order.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TokenList),
        (status = 400, description = "Invalid filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    QueryParams(q): QueryParams<ListParams>,
) -> Result<Json<TokenList>, ApiError> {
    let engine = state.engine.clone();
    let filter = engine::TokenFilter {
        owner: q.owner,
        scope: q.scope,
        state: q.state,
        label: q.label,
        cursor: q.cursor,
        limit: q.limit,
    };
    let (tokens, next) = blocking(move || {
        let page = engine.list_tokens(&filter)?;
        engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), 200)?;
        Ok(page)
    })
    .await?;
    let now = state.engine.now();
    Ok(Json(TokenList { tokens: tokens.iter().map(|t| token_view(t, now)).collect(), next_cursor: next }))
}

/// Show one token.
#[utoipa::path(get, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path, description = "Token id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TokenView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let engine = state.engine.clone();
    let record = blocking(move || {
        let t = engine.get_token(&id);
        let status = if t.is_ok() { 200 } else { 404 };
        engine.record_read(&admin.principal, &admin.ctx, &Scope::tokentrail_admin(), status)?;
        t
    })
    .await?;
    Ok(Json(token_view(&record, state.engine.now())))
}

/// Change a token: absent fields stay, `null` clears `not_before` or `rate_limit`.
#[utoipa::path(patch, path = "/v1/tokens/{id}", tag = "tokens", request_body = UpdateTokenRequest,
    params(("id" = String, Path, description = "Token id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TokenView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Revoked, or changed concurrently", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateTokenRequest>,
) -> Result<Json<TokenView>, ApiError> {
    let engine = state.engine.clone();
    let patch = engine::TokenPatch {
        name: req.name,
        owner: req.owner,
        description: req.description,
        labels: req.labels,
        scopes: req.scopes,
        expires_at: req.expires_at,
        expires_in: req.expires_in,
        no_expiry: req.no_expiry,
        not_before: req.not_before,
        allowed_cidrs: req.allowed_cidrs,
        rate_limit: req.rate_limit,
    };
    let record = blocking(move || engine.update_token(&admin.principal, &admin.ctx, &id, patch)).await?;
    Ok(Json(token_view(&record, state.engine.now())))
}

/// Revoke a token, with a reason kept in the audit log. Revoking twice is a 409.
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "tokens", request_body = RevokeRequest,
    params(("id" = String, Path, description = "Token id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TokenView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already revoked", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RevokeRequest>,
) -> Result<Json<TokenView>, ApiError> {
    let engine = state.engine.clone();
    let record = blocking(move || engine.revoke_token(&admin.principal, &admin.ctx, &id, &req.reason)).await?;
    Ok(Json(token_view(&record, state.engine.now())))
}

/// Issue a new secret with identical grants. The old secret stops working at once, or after
/// `grace`. The response is the only time the new token string is shown.
#[utoipa::path(post, path = "/v1/tokens/{id}/rotate", tag = "tokens", request_body(content = RotateRequest, description = "Optional"),
    params(("id" = String, Path, description = "Token id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = IssuedToken),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Revoked", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    OptionalJsonBody(req): OptionalJsonBody<RotateRequest>,
) -> Result<Json<IssuedToken>, ApiError> {
    let engine = state.engine.clone();
    let (record, token) =
        blocking(move || engine.rotate_token(&admin.principal, &admin.ctx, &id, req.grace.as_deref())).await?;
    let details = token_view(&record, state.engine.now());
    Ok(Json(IssuedToken { token: token.expose().to_owned(), details }))
}
