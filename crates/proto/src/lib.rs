//! Wire types of tokentrail's HTTP API, versioned under `/v1`.
//!
//! Only these types cross the wire; they carry no logic beyond serde attributes, and are the
//! single source of the OpenAPI schemas. Requests reject unknown fields; responses may gain
//! fields in later versions, so clients must ignore fields they do not know.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`) in PATCH bodies.
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /v1/tokens`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Short human name, 1 to 128 characters.
    pub name: String,
    /// Who answers for the token, 1 to 128 characters.
    pub owner: String,
    /// What the token is for, up to 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Up to 32 labels; keys `[a-z0-9_.-/]{1,64}`, values up to 256 characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Granted scopes, `resource:action`, 1 to 64 of them.
    pub scopes: Vec<String>,
    /// Absolute expiry (RFC 3339). Give at most one of `expires_at`, `expires_in`, `no_expiry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Relative expiry such as `30d`, `12h`, `90s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// Ask explicitly for a token that never expires.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_expiry: bool,
    /// Not valid before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Networks the token may be used from (CIDR or single address); empty means anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<String>,
    /// Request budget such as `100/min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
}

/// `PATCH /v1/tokens/{id}`: absent fields are unchanged; `null` clears an optional field.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTokenRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Replacement labels (the whole set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Replacement scopes (the whole set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// New absolute expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// New relative expiry, from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// Remove the expiry (explicitly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_expiry: Option<bool>,
    /// New not-before time, or `null` to clear it.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub not_before: Option<Option<String>>,
    /// Replacement networks (the whole list; empty means anywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cidrs: Option<Vec<String>>,
    /// New rate limit, or `null` to remove it.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub rate_limit: Option<Option<String>>,
}

/// `POST /v1/tokens/{id}/revoke`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why the token is revoked, 1 to 500 characters; kept in the audit log.
    pub reason: String,
}

/// `POST /v1/tokens/{id}/rotate`; the body may be omitted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old secret keeps working (`1h`, up to the configured maximum); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
}

/// A token as the API shows it; never includes the secret or its hash.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TokenView {
    /// Public id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub owner: String,
    /// Description.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `active`, `revoked`, `expired` or `not_yet_valid`, at the time of the response.
    pub state: String,
    /// Creation time.
    pub created_at: String,
    /// The admin token that created it (`bootstrap` for the first admin token).
    pub created_by: String,
    /// Last change.
    pub updated_at: String,
    /// Expiry, `null` when the token never expires.
    pub expires_at: Option<String>,
    /// Not valid before.
    pub not_before: Option<String>,
    /// Allowed networks; empty means anywhere.
    pub allowed_cidrs: Vec<String>,
    /// Request budget.
    pub rate_limit: Option<String>,
    /// Last use (updated in batches, a few seconds behind).
    pub last_used_at: Option<String>,
    /// Revocation time.
    pub revoked_at: Option<String>,
    /// The admin token that revoked it.
    pub revoked_by: Option<String>,
    /// Why it was revoked.
    pub revoke_reason: Option<String>,
    /// When the current secret was issued.
    pub secret_created_at: String,
    /// Until when the previous secret still works after a rotation.
    pub previous_secret_valid_until: Option<String>,
    /// Changes with every update; used for optimistic concurrency.
    pub revision: u64,
    /// Shadow mode: proposed scopes whose would-be denials are flagged (not enforced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow_scopes: Vec<String>,
}

/// The response to create and rotate: the only time the token string is shown.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// The complete token. Store it now: it cannot be shown again.
    pub token: String,
    /// The token's details.
    #[serde(flatten)]
    pub details: TokenView,
}

/// `GET /v1/tokens`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// One page of tokens, in creation order.
    pub tokens: Vec<TokenView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// An audit event (PRODUCT.md "Audit event"), as JSON and as one NDJSON export line.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct EventView {
    /// Unique id.
    pub id: String,
    /// Position in the ledger.
    pub seq: Option<u64>,
    /// RFC 3339 UTC with microseconds.
    pub time: String,
    /// `access` or `admin`.
    pub kind: String,
    /// `gateway`, `verify`, `authz`, `admin`, or an ingest source.
    pub source: String,
    /// The token that made the request.
    pub token_id: Option<String>,
    /// Keyed fingerprint of an unresolvable presented token.
    pub token_fingerprint: Option<String>,
    /// The token's owner.
    pub owner: Option<String>,
    /// Caller address.
    pub source_ip: Option<String>,
    /// Caller user agent.
    pub user_agent: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// Path without query string.
    pub path: Option<String>,
    /// Matched route template.
    pub route: Option<String>,
    /// Resource.
    pub resource: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// Sensitivity labels.
    pub sensitivity: Vec<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// Reason code.
    pub reason: String,
    /// HTTP status answered.
    pub status: Option<u16>,
    /// Milliseconds spent.
    pub latency_ms: Option<f64>,
    /// Response bytes.
    pub bytes_out: Option<u64>,
    /// Request id.
    pub request_id: Option<String>,
    /// Deciding node.
    pub node: Option<String>,
    /// Admin events: `token.create`, `token.update`, `token.revoke`, `token.rotate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Admin events: the token acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The scope the request needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_scope: Option<String>,
    /// The scopes the token held at decision time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_scopes: Vec<String>,
    /// Why the decision came out as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// The failing constraint's values, or the fields an admin action changed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// The personal values (owner, address, user agent, path, explanation, details) were erased.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erased: bool,
}

/// `POST /v1/verify`: is this token good for this request (method and path) or this scope?
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The token the end client presented.
    pub token: String,
    /// The request's method (with `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The request's path (with `method`); the route policy says what it needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Instead of `method` and `path`: the scope the caller needs (`orders:write`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The end client's address, for networks constraints and the audit event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
}

/// The answer of `POST /v1/verify`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    /// Whether the request may proceed.
    pub valid: bool,
    /// `allow` or `deny`.
    pub decision: String,
    /// The reason code.
    pub reason: String,
    /// The token's id, when the token was resolved.
    pub token_id: Option<String>,
    /// The token's owner, when resolved.
    pub owner: Option<String>,
    /// The token's scopes, when resolved.
    pub scopes: Vec<String>,
    /// Why, in one sentence, with the scope required and the constraint that failed.
    pub explanation: String,
    /// The audit event recording this decision.
    pub event_id: String,
}

/// `GET /v1/audit/events/{id}/leaf`: the event's canonical leaf bytes.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LeafView {
    /// The event's position in the log.
    pub index: u64,
    /// Base64 of the canonical leaf bytes (docs/ledger.md).
    pub leaf: String,
}

/// `GET /v1/audit/events/{id}/proof`: an RFC 6962 inclusion proof.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProofView {
    /// The event's position.
    pub index: u64,
    /// The tree size the proof is for (a signed checkpoint's size by default).
    pub tree_size: u64,
    /// Base64 of the leaf hash, SHA-256(0x00 || leaf).
    pub leaf_hash: String,
    /// Base64 hashes of the audit path, bottom up.
    pub hashes: Vec<String>,
}

/// `GET /v1/audit/consistency`: an RFC 6962 consistency proof.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyView {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// Base64 hashes of the proof.
    pub hashes: Vec<String>,
}

/// `POST /v1/audit/erase`: erase personal values (GDPR art. 17). Give exactly one field.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// Every event whose owner is this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Every event from this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
}

/// The result of an erasure.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EraseResult {
    /// How many events had their personal values erased.
    pub erased: u64,
}

/// One group of `GET /v1/audit/stats`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct StatGroup {
    /// The group's key: a token id, owner, route, resource, reason, decision, address, network
    /// (`10.1.2.0/24`, `2001:db8:1::/48`), hour (`2026-11-27T19:00Z`) or day (`2026-11-27`);
    /// `-` when absent or erased.
    pub key: String,
    /// Events.
    pub count: u64,
    /// Allowed events.
    pub allowed: u64,
    /// Denied events.
    pub denied: u64,
    /// Distinct source addresses.
    pub distinct_ips: u64,
    /// Response bytes.
    pub bytes: u64,
}

/// `GET /v1/audit/stats`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// The grouping.
    pub group_by: String,
    /// Groups: largest first, or in time order for `hour` and `day`.
    pub groups: Vec<StatGroup>,
}

/// Where an unresolved credential was presented.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FingerprintView {
    /// The keyed fingerprint.
    pub fingerprint: String,
    /// How often it was presented.
    pub count: u64,
    /// From which addresses, most frequent first: `[address, count]`.
    pub addresses: Vec<(String, u64)>,
    /// First presentation.
    pub first_seen: Option<String>,
    /// Last presentation.
    pub last_seen: Option<String>,
}

/// `GET /v1/audit/events/{id}/explain`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    /// The event explained.
    pub event: EventView,
    /// One sentence: what happened and why.
    pub summary: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// The reason code.
    pub reason: String,
    /// The scope the request needed.
    pub required_scope: Option<String>,
    /// The scopes the token held then.
    pub granted_scopes: Vec<String>,
    /// The failing constraint's values and derived facts (`expired_ago`).
    pub constraint: BTreeMap<String, String>,
    /// A concrete change that would make such a request succeed.
    pub fix: Option<String>,
    /// For an unresolved credential: how often and from where it was presented.
    pub fingerprint: Option<FingerprintView>,
}

/// `GET /v1/tokens/{id}/activity`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Activity {
    /// The token now.
    pub token: TokenView,
    /// Created, updated, rotated, revoked: by whom and when, oldest first.
    pub lifecycle: Vec<EventView>,
    /// Allowed and denied requests per day.
    pub daily: Vec<StatGroup>,
    /// Routes used.
    pub routes: Vec<StatGroup>,
    /// Resources used.
    pub resources: Vec<StatGroup>,
    /// Networks used from.
    pub networks: Vec<StatGroup>,
    /// The latest denials, newest first.
    pub recent_denials: Vec<EventView>,
    /// The last request seen with the token.
    pub last_seen: Option<String>,
    /// `last_used_at` of the token record.
    pub last_used_at: Option<String>,
}

/// One line of an NDJSON ingest: the audit event schema, where every field but `time` and
/// `reason` may be absent.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestEvent {
    /// Kept when present and unique; assigned otherwise.
    #[serde(default)]
    pub id: Option<String>,
    /// Ignored: positions are assigned by the ledger.
    #[serde(default)]
    pub seq: Option<u64>,
    /// RFC 3339.
    pub time: String,
    /// `access` (default) or `admin`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Kept; `ingest` when absent.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub token_id: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub token_fingerprint: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub owner: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub source_ip: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub user_agent: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub method: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub path: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub route: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub resource: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub action: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub sensitivity: Vec<String>,
    /// Must agree with `reason` when present.
    #[serde(default)]
    pub decision: Option<String>,
    /// A reason code.
    pub reason: String,
    #[serde(default)]
    #[allow(missing_docs)]
    pub status: Option<u16>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub latency_ms: Option<f64>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub bytes_out: Option<u64>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub request_id: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub node: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub operation: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub target: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub required_scope: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub granted_scopes: Vec<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub explanation: Option<String>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub details: BTreeMap<String, String>,
    /// Ignored on ingest (an ingested event's values are present).
    #[serde(default)]
    pub erased: bool,
}

/// One rejected line of an ingest.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

/// The result of an ingest.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct IngestResult {
    /// Events appended.
    pub ingested: u64,
    /// Lines skipped (with `skip_invalid`).
    pub skipped: u64,
    /// The rejected lines (all of them when the ingest failed, the skipped ones otherwise).
    pub errors: Vec<LineError>,
}

/// A finding of the detectors (docs/detectors.md).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct FindingView {
    /// Stable id.
    pub id: String,
    /// `off_hours`, `new_network`, `concurrent_networks`, `brute_force`, `scope_probing`,
    /// `revoked_token_use`, `expired_token_use`, `dormant_reactivation`, `enumeration`,
    /// `volume_spike`, `first_sensitive_access`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `low`, `medium`, `high`, `critical`.
    pub severity: String,
    /// `open`, `acknowledged`, `resolved`.
    pub status: String,
    /// The token involved.
    pub token_id: Option<String>,
    /// The address involved.
    pub source_ip: Option<String>,
    /// First event.
    pub first_seen: String,
    /// Latest event.
    pub last_seen: String,
    /// One sentence with the numbers.
    pub summary: String,
    /// The events that show it (the first 50).
    pub evidence_event_ids: Vec<String>,
    /// How many events showed it.
    pub event_count: u64,
    /// Values behind it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// The comment of the last acknowledgement or resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When the status last changed.
    pub status_changed_at: String,
}

/// `GET /v1/findings`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FindingList {
    /// Newest first.
    pub findings: Vec<FindingView>,
    /// Pass as `cursor` to continue.
    pub next_cursor: Option<String>,
}

/// `POST /v1/findings/{id}/ack` and `/resolve`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FindingComment {
    /// Why (1 to 1000 characters); kept with the finding and in the audit log.
    pub comment: String,
}

/// One least-privilege recommendation.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Recommendation {
    /// The token.
    pub token_id: String,
    /// `narrow`, `revoke`, `set_expiry` or `rotate`.
    pub kind: String,
    /// The grants now.
    pub from: Vec<String>,
    /// The grants after (for `narrow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<String>>,
    /// Why, with the numbers.
    pub reason: String,
    /// The facts behind it.
    pub evidence: BTreeMap<String, String>,
    /// The command that applies it (or tries it first, with `--what-if`).
    pub command: String,
}

/// One token's grants against its use.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TokenPrivilege {
    /// Token id.
    pub token_id: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub owner: String,
    /// State now.
    pub state: String,
    /// Granted scopes.
    pub granted: Vec<String>,
    /// The scopes that cover what was used in the window.
    pub used: Vec<String>,
    /// Granted scopes no request needed.
    pub unused: Vec<String>,
    /// Last use.
    pub last_used_at: Option<String>,
    /// The last access-review confirmation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<String>,
    /// Recommendations (empty: the grants fit the use).
    pub recommendations: Vec<Recommendation>,
}

/// `GET /v1/reports/least-privilege` and `/access-review`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LeastPrivilegeReport {
    /// When it was made.
    pub generated_at: String,
    /// The window of observed use, in days.
    pub window_days: u64,
    /// Every token analysed.
    pub tokens: Vec<TokenPrivilege>,
    /// Every recommendation, flat.
    pub recommendations: Vec<Recommendation>,
    /// Recommendations per kind.
    pub summary: BTreeMap<String, u64>,
}

/// `POST /v1/tokens/{id}/narrow`: try, shadow or apply a narrower grant. Give exactly one mode.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NarrowRequest {
    /// The proposed scopes.
    pub to: Vec<String>,
    /// Replay the window's recorded requests against them.
    #[serde(default)]
    pub what_if: bool,
    /// Record them on the token: decisions keep the real scopes, requests they would deny are
    /// flagged. An empty `to` with `shadow` ends shadow mode.
    #[serde(default)]
    pub shadow: bool,
    /// Switch the token to them (ends shadow mode).
    #[serde(default)]
    pub apply: bool,
    /// What-if window (`90d` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// The answer of a what-if.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WhatIf {
    /// The token.
    pub token_id: String,
    /// The proposed scopes.
    pub proposed: Vec<String>,
    /// The window, in days.
    pub window_days: u64,
    /// Allowed requests replayed.
    pub considered: u64,
    /// How many the proposed scopes would have denied.
    pub would_deny: u64,
    /// Their event ids (the first 1000).
    pub would_deny_events: Vec<String>,
    /// Per route.
    pub by_route: BTreeMap<String, u64>,
}

/// `POST /v1/tokens/{id}/confirm`: an access review's confirmation.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// Optional note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A token as a compliance inventory shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct InventoryRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub owner: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// State at the report's time.
    pub state: String,
    /// Created.
    pub created_at: String,
    /// Expiry.
    pub expires_at: Option<String>,
    /// Last use.
    pub last_used_at: Option<String>,
}

/// Sensitive-data access by one token to one label.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SensitiveAccess {
    /// Token.
    pub token_id: String,
    /// Owner.
    pub owner: String,
    /// Label (`phi`, `pii`, `financial`, …).
    pub label: String,
    /// Requests.
    pub count: u64,
    /// Denied among them.
    pub denied: u64,
    /// Outside business hours among them.
    pub off_hours: u64,
    /// First.
    pub first: String,
    /// Last.
    pub last: String,
}

/// The integrity statement of a compliance report.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct IntegrityStatement {
    /// The log's name (checkpoint origin).
    pub log: String,
    /// The verifier key of its checkpoints.
    pub verifier_key: String,
    /// The signed checkpoint (C2SP signed note) that covers every event of the period.
    pub checkpoint: Option<String>,
    /// Its tree size.
    pub checkpoint_size: Option<u64>,
    /// Events in the log up to the end of the period.
    pub events_covered: u64,
    /// Whether the whole log verified when the report was made.
    pub verified: bool,
    /// The verification's one-line result.
    pub verification: String,
    /// The commands an auditor runs to check it independently.
    pub commands: Vec<String>,
}

/// Which report sections serve a control.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ControlMapping {
    /// SOC 2, HIPAA, PCI DSS 4.0, GDPR.
    pub framework: String,
    /// The control (`CC6.1`, `§164.312(b)`, …).
    pub control: String,
    /// What it asks for.
    pub title: String,
    /// The sections of this report that are its evidence.
    pub sections: Vec<String>,
}

/// Headline numbers of a compliance report.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ReportTotals {
    /// Access requests in the period.
    pub requests: u64,
    /// Allowed.
    pub allowed: u64,
    /// Denied.
    pub denied: u64,
    /// Tokens in the inventory.
    pub tokens: u64,
    /// Findings active in the period.
    pub findings: u64,
    /// Admin changes in the period.
    pub admin_changes: u64,
    /// Sensitive-data requests.
    pub sensitive_requests: u64,
    /// Of which outside business hours.
    pub off_hours_sensitive_requests: u64,
}

/// `GET /v1/reports/compliance?format=json`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ComplianceReport {
    /// Period start (inclusive).
    pub from: String,
    /// Period end (exclusive).
    pub to: String,
    /// When it was made.
    pub generated_at: String,
    /// Headline numbers.
    pub totals: ReportTotals,
    /// Tokens that existed in the period.
    pub inventory: Vec<InventoryRow>,
    /// Access per token.
    pub access_by_token: Vec<StatGroup>,
    /// Access per owner.
    pub access_by_owner: Vec<StatGroup>,
    /// Access per resource.
    pub access_by_resource: Vec<StatGroup>,
    /// Access per day.
    pub requests_per_day: Vec<StatGroup>,
    /// Denied attempts per reason.
    pub denials_by_reason: Vec<StatGroup>,
    /// Sensitive-data access by token and label.
    pub sensitive_access: Vec<SensitiveAccess>,
    /// Sensitive accesses outside business hours (the first 200).
    pub off_hours_access: Vec<EventView>,
    /// Findings raised or active in the period, with how they were resolved.
    pub findings: Vec<FindingView>,
    /// Admin changes: who created, changed, revoked what.
    pub admin_changes: Vec<EventView>,
    /// Access-review confirmations.
    pub reviews: Vec<EventView>,
    /// Least-privilege status now.
    pub least_privilege: LeastPrivilegeReport,
    /// The integrity statement.
    pub integrity: IntegrityStatement,
    /// Controls and the sections that are their evidence.
    pub controls: Vec<ControlMapping>,
}

/// `GET /v1/audit/events`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    /// One page of events.
    pub events: Vec<EventView>,
    /// Pass as `cursor` to continue; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One invalid field of a request.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct FieldError {
    /// The field, e.g. `scopes[1]`.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// An RFC 9457 problem detail (`application/problem+json`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A stable URI naming the problem type: `urn:tokentrail:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong in this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The stable code (also the last part of `type`), for searching and scripting.
    pub code: String,
    /// For authentication and authorization failures: the reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every invalid field, when the request body or query was invalid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The audit event that recorded a denied request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` (readiness only).
    pub status: String,
    /// The store backend (readiness only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// What is wrong when not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The JSON of a value as the API writes it (compact).
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
