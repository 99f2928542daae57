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
        shadow_scopes: t.shadow_scopes.iter().map(ToString::to_string).collect(),
    }
}

/// An event as the API and NDJSON export show it.
pub fn event_view(e: &Event) -> proto::EventView {
    into_event_view(e.clone())
}

/// [`event_view`] taking the event, so that its strings move instead of being copied (pages and
/// exports).
pub fn into_event_view(e: Event) -> proto::EventView {
    proto::EventView {
        id: e.id,
        seq: e.seq,
        time: format_time(e.time),
        kind: e.kind.as_str().to_owned(),
        source: e.source,
        token_id: e.token_id,
        token_fingerprint: e.token_fingerprint,
        owner: e.owner,
        source_ip: e.source_ip,
        user_agent: e.user_agent,
        method: e.method,
        path: e.path,
        route: e.route,
        resource: e.resource,
        action: e.action,
        sensitivity: e.sensitivity,
        decision: e.decision.as_str().to_owned(),
        reason: e.reason.as_str().to_owned(),
        status: e.status,
        latency_ms: e.latency_us.map(|us| us as f64 / 1000.0),
        bytes_out: e.bytes_out,
        request_id: e.request_id,
        node: e.node,
        operation: e.operation,
        target: e.target,
        required_scope: e.required_scope,
        granted_scopes: e.granted_scopes,
        explanation: e.explanation,
        details: e.details,
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

/// A recommendation as the API shows it.
pub fn recommendation(r: &insight::Recommendation) -> proto::Recommendation {
    let list = |v: &[token::Scope]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    proto::Recommendation {
        token_id: r.token_id.clone(),
        kind: r.kind.as_str().to_owned(),
        from: list(&r.from),
        to: r.to.as_deref().map(list),
        reason: r.reason.clone(),
        evidence: r.evidence.clone(),
        command: r.command.clone(),
    }
}

/// The least-privilege report.
pub fn least_privilege(
    rows: &[(token::TokenRecord, insight::TokenPrivilege)],
    confirmed: &std::collections::BTreeMap<String, Timestamp>,
    window_days: u64,
    now: Timestamp,
) -> proto::LeastPrivilegeReport {
    let list = |v: &[token::Scope]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    let mut all = Vec::new();
    let mut summary = std::collections::BTreeMap::new();
    let tokens = rows
        .iter()
        .map(|(t, p)| {
            let recs: Vec<proto::Recommendation> = p.recommendations.iter().map(recommendation).collect();
            for r in &recs {
                *summary.entry(r.kind.clone()).or_insert(0u64) += 1;
            }
            all.extend(recs.iter().cloned());
            proto::TokenPrivilege {
                token_id: t.id.clone(),
                name: t.name.clone(),
                owner: t.owner.clone(),
                state: t.state(now).as_str().to_owned(),
                granted: list(&p.granted),
                used: list(&p.used),
                unused: list(&p.unused),
                last_used_at: t.last_used_at.map(format_time),
                confirmed_at: confirmed.get(&t.id).copied().map(format_time),
                recommendations: recs,
            }
        })
        .collect();
    proto::LeastPrivilegeReport { generated_at: format_time(now), window_days, tokens, recommendations: all, summary }
}

/// Controls of SOC 2, HIPAA, PCI DSS 4.0 and GDPR, and the report sections that serve them.
pub fn controls() -> Vec<proto::ControlMapping> {
    let c = |framework: &str, control: &str, title: &str, sections: &[&str]| proto::ControlMapping {
        framework: framework.to_owned(),
        control: control.to_owned(),
        title: title.to_owned(),
        sections: sections.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        c(
            "SOC 2",
            "CC6.1",
            "Logical access: credentials are issued, scoped and protected",
            &["inventory", "least_privilege", "integrity"],
        ),
        c(
            "SOC 2",
            "CC6.2",
            "Access is granted, changed and removed under authorization",
            &["admin_changes", "reviews", "least_privilege"],
        ),
        c(
            "SOC 2",
            "CC7.2",
            "Anomalies are detected and evaluated",
            &["findings", "denials_by_reason", "off_hours_access"],
        ),
        c(
            "HIPAA",
            "§164.312(b)",
            "Audit controls: activity in systems with ePHI is recorded and examined",
            &["sensitive_access", "access_by_token", "integrity"],
        ),
        c(
            "PCI DSS 4.0",
            "10.2",
            "Audit logs record user activity and access to cardholder data",
            &["access_by_token", "sensitive_access", "admin_changes"],
        ),
        c("PCI DSS 4.0", "10.5", "Audit log history is retained and protected from modification", &["integrity"]),
        c(
            "GDPR",
            "Art. 30",
            "Records of processing: who accessed personal data, when",
            &["sensitive_access", "access_by_owner"],
        ),
        c(
            "GDPR",
            "Art. 32",
            "Security of processing: access control, monitoring, integrity",
            &["least_privilege", "findings", "integrity"],
        ),
    ]
}

/// The compliance report as JSON (and the source of the CSV and HTML forms).
pub fn compliance(
    c: &engine::report::Compliance,
    lp: proto::LeastPrivilegeReport,
    data_dir_hint: &str,
) -> proto::ComplianceReport {
    let sensitive_requests: u64 = c.sensitive.iter().map(|s| s.count).sum();
    let off_hours: u64 = c.sensitive.iter().map(|s| s.off_hours).sum();
    let integrity = &c.integrity;
    let (verified, verification) = match &integrity.verification {
        Ok(v) => (true, format!("ok: {} events ({} erased), {} stored checkpoints", v.events, v.erased, v.checkpoints)),
        Err(f) => (false, format!("FAILED: {f}")),
    };
    let commands = vec![
        "tokentrail audit key > verifier.key   # compare with the key published to you".to_owned(),
        "save the checkpoint below as period.note".to_owned(),
        format!(
            "tokentrail audit verify --data-dir {data_dir_hint} --key \"$(cat verifier.key)\" --checkpoint period.note"
        ),
        "tokentrail audit prove EVENT_ID --key \"$(cat verifier.key)\"   # any event of this report".to_owned(),
    ];
    proto::ComplianceReport {
        from: format_time(c.from),
        to: format_time(c.to),
        generated_at: format_time(c.generated_at),
        totals: proto::ReportTotals {
            requests: c.totals.count,
            allowed: c.totals.allowed,
            denied: c.totals.denied,
            tokens: c.inventory.len() as u64,
            findings: c.findings.len() as u64,
            admin_changes: c.admin_changes.len() as u64,
            sensitive_requests,
            off_hours_sensitive_requests: off_hours,
        },
        inventory: c
            .inventory
            .iter()
            .map(|t| proto::InventoryRow {
                id: t.id.clone(),
                name: t.name.clone(),
                owner: t.owner.clone(),
                scopes: t.scopes.iter().map(ToString::to_string).collect(),
                state: t.state(c.generated_at).as_str().to_owned(),
                created_at: format_time(t.created_at),
                expires_at: t.expires_at.map(format_time),
                last_used_at: t.last_used_at.map(format_time),
            })
            .collect(),
        access_by_token: c.by_token.iter().map(stat_group).collect(),
        access_by_owner: c.by_owner.iter().map(stat_group).collect(),
        access_by_resource: c.by_resource.iter().map(stat_group).collect(),
        requests_per_day: c.per_day.iter().map(stat_group).collect(),
        denials_by_reason: c.denials_by_reason.iter().map(stat_group).collect(),
        sensitive_access: c
            .sensitive
            .iter()
            .map(|s| proto::SensitiveAccess {
                token_id: s.token_id.clone(),
                owner: s.owner.clone(),
                label: s.label.clone(),
                count: s.count,
                denied: s.denied,
                off_hours: s.off_hours,
                first: format_time(s.first),
                last: format_time(s.last),
            })
            .collect(),
        off_hours_access: c.off_hours_events.iter().map(event_view).collect(),
        findings: c.findings.iter().map(finding_view).collect(),
        admin_changes: c.admin_changes.iter().map(event_view).collect(),
        reviews: c.reviews.iter().map(event_view).collect(),
        least_privilege: lp,
        integrity: proto::IntegrityStatement {
            log: integrity.origin.clone(),
            verifier_key: integrity.verifier_key.clone(),
            checkpoint: integrity.checkpoint.as_ref().map(|c| c.note.clone()),
            checkpoint_size: integrity.checkpoint.as_ref().map(|c| c.size),
            events_covered: integrity.events_covered,
            verified,
            verification,
            commands,
        },
        controls: controls(),
    }
}

/// The compliance report as CSV: one row per number (`section,key,metric,value`), carrying
/// the same numbers as the JSON.
pub fn compliance_csv(r: &proto::ComplianceReport) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    let t = &r.totals;
    for (k, v) in [
        ("requests", t.requests),
        ("allowed", t.allowed),
        ("denied", t.denied),
        ("tokens", t.tokens),
        ("findings", t.findings),
        ("admin_changes", t.admin_changes),
        ("sensitive_requests", t.sensitive_requests),
        ("off_hours_sensitive_requests", t.off_hours_sensitive_requests),
    ] {
        rows.push(["totals".into(), "-".into(), k.into(), v.to_string()]);
    }
    let groups = |rows: &mut Vec<[String; 4]>, section: &str, gs: &[proto::StatGroup]| {
        for g in gs {
            for (m, v) in [
                ("count", g.count),
                ("allowed", g.allowed),
                ("denied", g.denied),
                ("distinct_ips", g.distinct_ips),
                ("bytes", g.bytes),
            ] {
                rows.push([section.into(), g.key.clone(), m.into(), v.to_string()]);
            }
        }
    };
    groups(&mut rows, "access_by_token", &r.access_by_token);
    groups(&mut rows, "access_by_owner", &r.access_by_owner);
    groups(&mut rows, "access_by_resource", &r.access_by_resource);
    groups(&mut rows, "requests_per_day", &r.requests_per_day);
    groups(&mut rows, "denials_by_reason", &r.denials_by_reason);
    for s in &r.sensitive_access {
        let key = format!("{} {}", s.token_id, s.label);
        for (m, v) in [("count", s.count), ("denied", s.denied), ("off_hours", s.off_hours)] {
            rows.push(["sensitive_access".into(), key.clone(), m.into(), v.to_string()]);
        }
    }
    for f in &r.findings {
        rows.push([
            "findings".into(),
            f.id.clone(),
            format!("{} {} {}", f.kind, f.severity, f.status),
            f.event_count.to_string(),
        ]);
    }
    for (k, v) in &r.least_privilege.summary {
        rows.push(["least_privilege".into(), "-".into(), k.clone(), v.to_string()]);
    }
    rows.push(["integrity".into(), "-".into(), "verified".into(), r.integrity.verified.to_string()]);
    rows.push(["integrity".into(), "-".into(), "events_covered".into(), r.integrity.events_covered.to_string()]);
    if let Some(size) = r.integrity.checkpoint_size {
        rows.push(["integrity".into(), "-".into(), "checkpoint_size".into(), size.to_string()]);
    }
    let quote =
        |s: &str| if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() };
    let mut out = String::from("section,key,metric,value\n");
    for row in rows {
        out += &row.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    out
}
