//! The compliance report as one self-contained HTML file: inline CSS and SVG charts, no
//! scripts and no remote assets, readable on screen and printable (print CSS, page breaks).
//! It renders the same `proto::ComplianceReport` the JSON and CSV forms carry.

use std::fmt::Write as _;

use proto::{ComplianceReport, EventView, StatGroup};

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { --ink: #1c2430; --muted: #5b6675; --line: #d9dee5; --allow: #2f7d5b; --deny: #b3412f; --accent: #27548a; --warn: #fff4d6; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
.meta { color: var(--muted); margin-bottom: 16px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f3f5f8; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.off-hours td { background: var(--warn); }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 8px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; } .card b { display: block; font-size: 20px; }
.ok { color: var(--allow); font-weight: 600; } .bad { color: var(--deny); font-weight: 600; }
pre { background: #f6f7f9; border: 1px solid var(--line); padding: 8px; overflow-x: auto; font-size: 12px; white-space: pre-wrap; word-break: break-all; }
.chart { margin: 8px 0; } .chart text { font-size: 11px; fill: var(--muted); }
.legend span { display: inline-block; margin-right: 12px; } .sw { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
code { font-size: 12px; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  h2 { break-before: page; } h2.keep { break-before: auto; }
  table, .chart, pre { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"#;

fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>], numeric: &[usize]) {
    out.push_str("<table><thead><tr>");
    for (i, h) in headers.iter().enumerate() {
        let class = if numeric.contains(&i) { " class=\"num\"" } else { "" };
        let _ = write!(out, "<th{class}>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(out, "<tr><td colspan=\"{}\">none</td></tr>", headers.len());
    }
    for r in rows {
        out.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let class = if numeric.contains(&i) { " class=\"num\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn groups(out: &mut String, first: &str, gs: &[StatGroup]) {
    let rows: Vec<Vec<String>> = gs
        .iter()
        .map(|g| {
            vec![
                g.key.clone(),
                g.count.to_string(),
                g.allowed.to_string(),
                g.denied.to_string(),
                g.distinct_ips.to_string(),
                g.bytes.to_string(),
            ]
        })
        .collect();
    table(out, &[first, "requests", "allowed", "denied", "addresses", "bytes"], &rows, &[1, 2, 3, 4, 5]);
}

/// Stacked bars of allowed and denied requests per day.
fn per_day_chart(gs: &[StatGroup]) -> String {
    let (w, h, pad) = (1000.0_f64, 220.0_f64, 30.0_f64);
    let max = gs.iter().map(|g| g.count).max().unwrap_or(0).max(1) as f64;
    let n = gs.len().max(1) as f64;
    let bw = ((w - pad * 2.0) / n).max(1.0);
    let mut s = format!(
        "<svg class=\"chart\" id=\"chart-requests\" role=\"img\" aria-label=\"Requests per day\" viewBox=\"0 0 {w} {h}\" width=\"100%\">"
    );
    let _ = write!(s, "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>", h - pad, w - pad, h - pad);
    for (i, g) in gs.iter().enumerate() {
        let x = pad + i as f64 * bw;
        let ha = (h - pad * 2.0) * g.allowed as f64 / max;
        let hd = (h - pad * 2.0) * g.denied as f64 / max;
        let base = h - pad;
        let _ = write!(
            s,
            "<rect class=\"bar allowed\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{ha:.1}\" fill=\"#2f7d5b\"><title>{} allowed {}</title></rect>",
            base - ha,
            (bw - 1.0).max(0.5),
            esc(&g.key),
            g.allowed
        );
        let _ = write!(
            s,
            "<rect class=\"bar denied\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{hd:.1}\" fill=\"#b3412f\"><title>{} denied {}</title></rect>",
            base - ha - hd,
            (bw - 1.0).max(0.5),
            esc(&g.key),
            g.denied
        );
        if gs.len() <= 31 || i % (gs.len() / 15).max(1) == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + bw / 2.0,
                h - 10.0,
                esc(g.key.get(5..).unwrap_or(&g.key))
            );
        }
    }
    let _ = write!(s, "<text x=\"{pad}\" y=\"16\">max {} requests/day</text></svg>", max as u64);
    s
}

/// Horizontal bars of one number per key.
fn bars(id: &str, label: &str, items: &[(String, u64)], color: &str) -> String {
    let row = 22.0_f64;
    let h = (items.len().max(1) as f64) * row + 10.0;
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let mut s = format!(
        "<svg class=\"chart\" id=\"{id}\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 1000 {h}\" width=\"100%\">",
        esc(label)
    );
    for (i, (k, v)) in items.iter().enumerate() {
        let y = 5.0 + i as f64 * row;
        let bw = 600.0 * *v as f64 / max;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{:.1}\">{}</text><rect class=\"bar\" x=\"300\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"16\" fill=\"{color}\"><title>{} {v}</title></rect><text x=\"{:.1}\" y=\"{:.1}\">{v}</text>",
            y + 12.0,
            esc(&k.chars().take(40).collect::<String>()),
            esc(k),
            305.0 + bw,
            y + 12.0
        );
    }
    if items.is_empty() {
        s.push_str("<text x=\"0\" y=\"15\">none</text>");
    }
    s.push_str("</svg>");
    s
}

fn events(out: &mut String, evs: &[EventView], off_hours: bool) {
    let rows: Vec<Vec<String>> = evs
        .iter()
        .map(|e| {
            vec![
                e.time.clone(),
                e.operation.clone().unwrap_or_else(|| e.reason.clone()),
                e.target.clone().or_else(|| e.route.clone()).unwrap_or_default(),
                e.token_id.clone().unwrap_or_default(),
                e.owner.clone().unwrap_or_default(),
                e.explanation.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut t = String::new();
    table(&mut t, &["time", "what", "on", "by token", "owner", "details"], &rows, &[]);
    if off_hours {
        t = t.replace("<tr><td>", "<tr class=\"off-hours\"><td>");
    }
    out.push_str(&t);
}

/// Renders the report.
pub fn render(r: &ComplianceReport) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>tokentrail compliance report {} to {}</title><style>{CSS}</style></head><body>",
        esc(&r.from[..10.min(r.from.len())]),
        esc(&r.to[..10.min(r.to.len())])
    );
    let _ = write!(
        o,
        "<h1>API token access: compliance report</h1><div class=\"meta\">Period {} to {} (end exclusive) · generated {} · log <code>{}</code></div>",
        esc(&r.from),
        esc(&r.to),
        esc(&r.generated_at),
        esc(&r.integrity.log)
    );
    let t = &r.totals;
    let _ = write!(
        o,
        "<div class=\"cards\" id=\"totals\"><div class=\"card\"><b>{}</b>requests</div><div class=\"card\"><b>{}</b>allowed</div><div class=\"card\"><b>{}</b>denied</div><div class=\"card\"><b>{}</b>tokens</div><div class=\"card\"><b>{}</b>sensitive-data requests</div><div class=\"card\"><b>{}</b>of them off hours</div><div class=\"card\"><b>{}</b>findings</div><div class=\"card\"><b>{}</b>admin changes</div></div>",
        t.requests,
        t.allowed,
        t.denied,
        t.tokens,
        t.sensitive_requests,
        t.off_hours_sensitive_requests,
        t.findings,
        t.admin_changes
    );

    let i = &r.integrity;
    o.push_str("<h2 class=\"keep\" id=\"integrity\">Integrity statement</h2>");
    let _ = write!(
        o,
        "<p>Every event of this report is a leaf of an append-only Merkle log (RFC 6962) whose state is published as signed checkpoints. The log held <b>{}</b> events up to the end of the period. Verification of the whole log when this report was made: <span class=\"{}\">{}</span>.</p>",
        i.events_covered,
        if i.verified { "ok" } else { "bad" },
        esc(&i.verification)
    );
    match (&i.checkpoint, i.checkpoint_size) {
        (Some(note), Some(size)) => {
            let _ = write!(
                o,
                "<p>The signed checkpoint covering the period (size {size}):</p><pre id=\"checkpoint\">{}</pre>",
                esc(note)
            );
        }
        _ => o.push_str("<p>No checkpoint covers the period (the log is empty).</p>"),
    }
    let _ = write!(
        o,
        "<p>Verifier key of the log's checkpoints:</p><pre>{}</pre><p>To verify independently:</p><pre>",
        esc(&i.verifier_key)
    );
    for c in &i.commands {
        let _ = writeln!(o, "{}", esc(c));
    }
    o.push_str("</pre>");

    o.push_str("<h2 id=\"activity\">Activity</h2><div class=\"legend\"><span><i class=\"sw\" style=\"background:#2f7d5b\"></i>allowed</span><span><i class=\"sw\" style=\"background:#b3412f\"></i>denied</span></div>");
    o.push_str(&per_day_chart(&r.requests_per_day));
    o.push_str("<h3>Denied attempts by reason</h3>");
    let denials: Vec<(String, u64)> = r.denials_by_reason.iter().map(|g| (g.key.clone(), g.count)).collect();
    o.push_str(&bars("chart-denials", "Denials by reason", &denials, "#b3412f"));
    o.push_str("<h3>Top tokens</h3>");
    let top: Vec<(String, u64)> = r.access_by_token.iter().take(15).map(|g| (g.key.clone(), g.count)).collect();
    o.push_str(&bars("chart-tokens", "Top tokens", &top, "#27548a"));

    o.push_str("<h2 id=\"access\">Access summary</h2><h3>By token</h3>");
    groups(&mut o, "token", &r.access_by_token);
    o.push_str("<h3>By owner</h3>");
    groups(&mut o, "owner", &r.access_by_owner);
    o.push_str("<h3>By resource</h3>");
    groups(&mut o, "resource", &r.access_by_resource);
    o.push_str("<h3>Denied attempts by reason</h3>");
    groups(&mut o, "reason", &r.denials_by_reason);

    o.push_str("<h2 id=\"sensitive\">Access to sensitive data</h2>");
    let rows: Vec<Vec<String>> = r
        .sensitive_access
        .iter()
        .map(|s| {
            vec![
                s.label.clone(),
                s.token_id.clone(),
                s.owner.clone(),
                s.count.to_string(),
                s.denied.to_string(),
                s.off_hours.to_string(),
                s.first.clone(),
                s.last.clone(),
            ]
        })
        .collect();
    let mut t = String::new();
    table(&mut t, &["label", "token", "owner", "requests", "denied", "off hours", "first", "last"], &rows, &[3, 4, 5]);
    for s in r.sensitive_access.iter().filter(|s| s.off_hours > 0) {
        let marker = format!("<tr><td>{}</td><td>{}</td>", esc(&s.label), esc(&s.token_id));
        t = t.replacen(
            &marker,
            &format!("<tr class=\"off-hours\"><td>{}</td><td>{}</td>", esc(&s.label), esc(&s.token_id)),
            1,
        );
    }
    o.push_str(&t);
    o.push_str("<h3>Sensitive access outside business hours</h3>");
    events(&mut o, &r.off_hours_access, true);

    o.push_str("<h2 id=\"findings\">Findings and their resolution</h2>");
    let rows: Vec<Vec<String>> = r
        .findings
        .iter()
        .map(|f| {
            vec![
                f.kind.clone(),
                f.severity.clone(),
                f.status.clone(),
                f.first_seen.clone(),
                f.summary.clone(),
                f.comment.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&mut o, &["type", "severity", "status", "first seen", "summary", "resolution"], &rows, &[]);

    o.push_str("<h2 id=\"admin\">Administrative changes</h2>");
    events(&mut o, &r.admin_changes, false);
    o.push_str("<h3>Access reviews</h3>");
    events(&mut o, &r.reviews, false);

    o.push_str("<h2 id=\"least-privilege\">Least privilege</h2>");
    let lp = &r.least_privilege;
    let _ = write!(o, "<p>Window of observed use: {} days. Recommendations: ", lp.window_days);
    if lp.summary.is_empty() {
        o.push_str("none.");
    }
    for (k, v) in &lp.summary {
        let _ = write!(o, "{} {}; ", v, esc(k));
    }
    o.push_str("</p>");
    let rows: Vec<Vec<String>> = lp
        .recommendations
        .iter()
        .map(|x| vec![x.token_id.clone(), x.kind.clone(), x.reason.clone(), x.command.clone()])
        .collect();
    table(&mut o, &["token", "recommendation", "why", "command"], &rows, &[]);

    o.push_str("<h2 id=\"inventory\">Token inventory</h2>");
    let rows: Vec<Vec<String>> = r
        .inventory
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.owner.clone(),
                t.scopes.join(" "),
                t.state.clone(),
                t.created_at.clone(),
                t.expires_at.clone().unwrap_or_else(|| "never".into()),
                t.last_used_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&mut o, &["id", "name", "owner", "scopes", "state", "created", "expires", "last used"], &rows, &[]);

    o.push_str("<h2 id=\"controls\">Controls</h2>");
    let rows: Vec<Vec<String>> = r
        .controls
        .iter()
        .map(|c| vec![c.framework.clone(), c.control.clone(), c.title.clone(), c.sections.join(", ")])
        .collect();
    table(&mut o, &["framework", "control", "requirement", "evidence in this report"], &rows, &[]);
    o.push_str("</body></html>\n");
    o
}
