//! Domain values to wire types. The one place where `TokenRecord` and `Event` become JSON
//! shapes, so the API, the CLI's offline commands and exports agree byte for byte.

use jiff::Timestamp;
use ledger::event::{Event, format_time};
use token::TokenRecord;

/// A token as the API shows it, with its state at `now`.
pub fn token_view(t: &TokenRecord, now: Timestamp) -> proto::TokenView {
    proto::TokenView {
        id: t.id.clone(),
        name: t.name.clone(),
        owner: t.owner.clone(),
        description: t.description.clone(),
        labels: t.labels.clone(),
        scopes: t.scopes.iter().map(ToString::to_string).collect(),
        state: t.state(now).as_str().to_owned(),
        created_at: format_time(t.created_at),
        created_by: t.created_by.clone(),
        updated_at: format_time(t.updated_at),
        expires_at: t.expires_at.map(format_time),
        not_before: t.not_before.map(format_time),
        allowed_cidrs: t.allowed_cidrs.iter().map(ToString::to_string).collect(),
        rate_limit: t.rate_limit.map(|r| r.to_string()),
        last_used_at: t.last_used_at.map(format_time),
        revoked_at: t.revoked_at.map(format_time),
        revoked_by: t.revoked_by.clone(),
        revoke_reason: t.revoke_reason.clone(),
        secret_created_at: format_time(t.secret_created_at),
        previous_secret_valid_until: t.previous_secret.filter(|(_, until)| *until > now).map(|(_, u)| format_time(u)),
        revision: t.revision,
    }
}

/// An event as the API and NDJSON export show it.
pub fn event_view(e: &Event) -> proto::EventView {
    proto::EventView {
        id: e.id.clone(),
        seq: e.seq,
        time: format_time(e.time),
        kind: e.kind.as_str().to_owned(),
        source: e.source.clone(),
        token_id: e.token_id.clone(),
        token_fingerprint: e.token_fingerprint.clone(),
        owner: e.owner.clone(),
        source_ip: e.source_ip.clone(),
        user_agent: e.user_agent.clone(),
        method: e.method.clone(),
        path: e.path.clone(),
        route: e.route.clone(),
        resource: e.resource.clone(),
        action: e.action.clone(),
        sensitivity: e.sensitivity.clone(),
        decision: e.decision.as_str().to_owned(),
        reason: e.reason.as_str().to_owned(),
        status: e.status,
        latency_ms: e.latency_us.map(|us| us as f64 / 1000.0),
        bytes_out: e.bytes_out,
        request_id: e.request_id.clone(),
        node: e.node.clone(),
        operation: e.operation.clone(),
        target: e.target.clone(),
        required_scope: e.required_scope.clone(),
        granted_scopes: e.granted_scopes.clone(),
        explanation: e.explanation.clone(),
        details: e.details.clone(),
        erased: e.erased,
    }
}

/// An event from its wire form (spool files; NDJSON ingest). Every field is checked; the error
/// names the first bad one.
pub fn event_from_view(v: &proto::EventView) -> Result<Event, String> {
    use ledger::event::{Kind, Verdict};
    let time: Timestamp = v.time.parse().map_err(|_| format!("time: {:?} is not an RFC 3339 time", v.time))?;
    let kind = Kind::parse(&v.kind).ok_or_else(|| format!("kind: {:?} is not access or admin", v.kind))?;
    let reason =
        token::Reason::parse(&v.reason).ok_or_else(|| format!("reason: {:?} is not a reason code", v.reason))?;
    let decision =
        Verdict::parse(&v.decision).ok_or_else(|| format!("decision: {:?} is not allow or deny", v.decision))?;
    if decision != Verdict::of(reason) {
        return Err(format!("decision: {:?} contradicts reason {:?}", v.decision, v.reason));
    }
    if v.id.is_empty() || v.id.len() > 128 {
        return Err("id: must be 1 to 128 characters".to_owned());
    }
    if v.source.is_empty() {
        return Err("source: must not be empty".to_owned());
    }
    let latency_us = match v.latency_ms {
        Some(ms) if ms.is_finite() && ms >= 0.0 => Some((ms * 1000.0).round() as u64),
        Some(ms) => return Err(format!("latency_ms: {ms} is not a duration")),
        None => None,
    };
    let mut e = Event::new(v.id.clone(), time, kind, &v.source, reason);
    e.decision = decision;
    e.seq = v.seq;
    e.token_id.clone_from(&v.token_id);
    e.token_fingerprint.clone_from(&v.token_fingerprint);
    e.owner.clone_from(&v.owner);
    e.source_ip.clone_from(&v.source_ip);
    e.user_agent.clone_from(&v.user_agent);
    e.method.clone_from(&v.method);
    e.path.clone_from(&v.path);
    e.route.clone_from(&v.route);
    e.resource.clone_from(&v.resource);
    e.action.clone_from(&v.action);
    e.sensitivity.clone_from(&v.sensitivity);
    e.status = v.status;
    e.latency_us = latency_us;
    e.bytes_out = v.bytes_out;
    e.request_id.clone_from(&v.request_id);
    e.node.clone_from(&v.node);
    e.operation.clone_from(&v.operation);
    e.target.clone_from(&v.target);
    e.required_scope.clone_from(&v.required_scope);
    e.granted_scopes.clone_from(&v.granted_scopes);
    e.explanation.clone_from(&v.explanation);
    e.details.clone_from(&v.details);
    e.erased = v.erased;
    Ok(e)
}
