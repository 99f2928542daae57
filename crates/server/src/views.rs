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

/// A stats row as the API shows it.
pub fn stat_group(r: &store::StatRow) -> proto::StatGroup {
    proto::StatGroup {
        key: r.key.clone(),
        count: r.count,
        allowed: r.allowed,
        denied: r.denied,
        distinct_ips: r.distinct_ips,
        bytes: r.bytes,
    }
}

/// An explanation as the API shows it.
pub fn explanation(x: &engine::investigate::Explained) -> proto::Explanation {
    proto::Explanation {
        event: event_view(&x.event),
        summary: x.summary.clone(),
        decision: x.event.decision.as_str().to_owned(),
        reason: x.event.reason.as_str().to_owned(),
        required_scope: x.event.required_scope.clone(),
        granted_scopes: x.event.granted_scopes.clone(),
        constraint: x.constraint.clone(),
        fix: x.fix.clone(),
        fingerprint: x.fingerprint.as_ref().map(|f| proto::FingerprintView {
            fingerprint: f.fingerprint.clone(),
            count: f.count,
            addresses: f.addresses.clone(),
            first_seen: f.first_seen.map(format_time),
            last_seen: f.last_seen.map(format_time),
        }),
    }
}

/// A token's timeline as the API shows it.
pub fn activity(a: &engine::investigate::Activity, now: Timestamp) -> proto::Activity {
    proto::Activity {
        token: token_view(&a.token, now),
        lifecycle: a.lifecycle.iter().map(event_view).collect(),
        daily: a.daily.iter().map(stat_group).collect(),
        routes: a.routes.iter().map(stat_group).collect(),
        resources: a.resources.iter().map(stat_group).collect(),
        networks: a.networks.iter().map(stat_group).collect(),
        recent_denials: a.recent_denials.iter().map(event_view).collect(),
        last_seen: a.last_seen.map(format_time),
        last_used_at: a.token.last_used_at.map(format_time),
    }
}

/// An ingested line as an event: every present field checked, absent ones defaulted (`kind`
/// access, `source` ingest, `decision` from the reason). `id` is `None` when it must be assigned.
pub fn ingest_event(v: proto::IngestEvent) -> Result<(Option<String>, Event), String> {
    use ledger::event::{Kind, Verdict};
    let time: Timestamp = v.time.parse().map_err(|_| format!("time: {:?} is not an RFC 3339 time", v.time))?;
    let kind = match v.kind.as_deref() {
        None => Kind::Access,
        Some(k) => Kind::parse(k).ok_or_else(|| format!("kind: {k:?} is not access or admin"))?,
    };
    let reason =
        token::Reason::parse(&v.reason).ok_or_else(|| format!("reason: {:?} is not a reason code", v.reason))?;
    if let Some(d) = &v.decision {
        let d = Verdict::parse(d).ok_or_else(|| format!("decision: {d:?} is not allow or deny"))?;
        if d != Verdict::of(reason) {
            return Err(format!("decision: {:?} contradicts reason {:?}", d.as_str(), v.reason));
        }
    }
    if let Some(id) = &v.id
        && (id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
    {
        return Err("id: must be 1 to 128 printable characters".to_owned());
    }
    let source = v.source.unwrap_or_else(|| "ingest".to_owned());
    if source.is_empty() || source.len() > 64 {
        return Err("source: must be 1 to 64 characters".to_owned());
    }
    if let Some(ip) = &v.source_ip
        && ip.parse::<std::net::IpAddr>().is_err()
        && ip.chars().any(char::is_control)
    {
        return Err("source_ip: must not contain control characters".to_owned());
    }
    let latency_us = match v.latency_ms {
        Some(ms) if ms.is_finite() && ms >= 0.0 => Some((ms * 1000.0).round() as u64),
        Some(ms) => return Err(format!("latency_ms: {ms} is not a duration")),
        None => None,
    };
    let mut e = Event::new(String::new(), time, kind, &source, reason);
    e.token_id = v.token_id;
    e.token_fingerprint = v.token_fingerprint;
    e.owner = v.owner;
    e.source_ip = v.source_ip;
    e.user_agent = v.user_agent;
    e.method = v.method;
    e.path = v.path.map(|p| token::redact_path(p.split('?').next().unwrap_or(&p)).into_owned());
    e.route = v.route;
    e.resource = v.resource;
    e.action = v.action;
    e.sensitivity = v.sensitivity;
    e.status = v.status;
    e.latency_us = latency_us;
    e.bytes_out = v.bytes_out;
    e.request_id = v.request_id;
    e.node = v.node;
    e.operation = v.operation;
    e.target = v.target;
    e.required_scope = v.required_scope;
    e.granted_scopes = v.granted_scopes;
    e.explanation = v.explanation;
    e.details = v.details;
    Ok((v.id, e))
}

/// A finding as the API, the offline `detect` and the alert sinks show it.
pub fn finding_view(f: &store::FindingRecord) -> proto::FindingView {
    proto::FindingView {
        id: f.id.clone(),
        kind: f.kind.clone(),
        severity: f.severity.clone(),
        status: f.status.clone(),
        token_id: f.token_id.clone(),
        source_ip: f.source_ip.clone(),
        first_seen: format_time(f.first_seen),
        last_seen: format_time(f.last_seen),
        summary: f.summary.clone(),
        evidence_event_ids: f.evidence.clone(),
        event_count: f.event_count,
        details: f.details.clone(),
        comment: f.comment.clone(),
        status_changed_at: format_time(f.status_changed_at),
    }
}
