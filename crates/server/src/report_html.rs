//! The compliance report as one self-contained HTML file: inline CSS and SVG charts, no
//! scripts and no remote assets, readable on screen and printable (print CSS, page breaks).
//! It renders the same `proto::ComplianceReport` the JSON and CSV forms carry, and must never
//! compute a number of its own: every figure shown comes from the report.
//!
//! The markup also carries the numbers for machines, mirroring the CSV form's
//! `section,key,metric,value` rows: an element with `data-section` opens a section, one with
//! `data-key` a row, and an element with `data-metric` holds one value as its text. Chart bars
//! carry `data-label` and `data-value`. Tests read both, in the file and in a browser's DOM.

use std::collections::BTreeMap;
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

const ALLOW: &str = "#2f7d5b";
const DENY: &str = "#b3412f";

const CSS: &str = r#"
:root { --ink: #1c2430; --muted: #556070; --line: #d5dbe3; --soft: #f4f6f9; --allow: #2f7d5b; --deny: #b3412f;
  --accent: #27548a; --warn: #fff3cd; --warn-ink: #6b4e00; --ok-bg: #e6f4ec; --bad-bg: #fbe9e6; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink);
  background: #fff; margin: 0; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 28px 48px; }
header.top { border-bottom: 3px solid var(--accent); padding-bottom: 14px; margin-bottom: 18px; }
.eyebrow { text-transform: uppercase; letter-spacing: .08em; font-size: 12px; color: var(--accent); font-weight: 600; }
h1 { font-size: 26px; line-height: 1.2; margin: 4px 0 6px; }
h2 { font-size: 19px; margin: 0 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 6px; }
section { margin-top: 34px; }
.meta { color: var(--muted); margin: 0; }
.meta b { color: var(--ink); font-weight: 600; }
.lead { color: var(--muted); margin: 0 0 10px; max-width: 80ch; }
nav.toc { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; margin: 18px 0 0; }
nav.toc ol { margin: 0; padding: 0; list-style: none; display: flex; flex-wrap: wrap; gap: 4px 18px; counter-reset: toc; }
nav.toc li { counter-increment: toc; } nav.toc li::before { content: counter(toc) ". "; color: var(--muted); }
a { color: var(--accent); }
.status { display: flex; align-items: center; gap: 12px; border-radius: 8px; padding: 10px 14px; margin: 16px 0; font-weight: 600; }
.status.ok { background: var(--ok-bg); color: #1d5a3f; border: 1px solid #b6dcc6; }
.status.bad { background: var(--bad-bg); color: #8a2c1e; border: 1px solid #eab8ae; }
.status .mark { font-size: 20px; line-height: 1; }
.status span.note { font-weight: 400; }
dl.cards { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 10px; margin: 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: #fff; }
.card dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card dd { margin: 2px 0 0; font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card.allow dd { color: var(--allow); } .card.deny dd { color: var(--deny); } .card.warn { background: var(--warn); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; caption-side: top; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 7px; text-align: left; vertical-align: top; }
thead th { background: var(--soft); font-weight: 600; border-bottom: 2px solid var(--line); }
tbody th { font-weight: 500; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.id, code, .tid { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .92em; overflow-wrap: anywhere; }
code.nw { white-space: nowrap; overflow-wrap: normal; }
.tid { display: block; color: var(--muted); font-size: .85em; }
td.when { white-space: nowrap; font-variant-numeric: tabular-nums; }
td.none { color: var(--muted); font-style: italic; }
tr.off-hours > * { background: var(--warn); }
.badge { display: inline-block; border-radius: 4px; padding: 0 6px; font-size: 11px; font-weight: 600; line-height: 18px;
  white-space: nowrap; border: 1px solid transparent; }
.badge.warn { background: var(--warn); color: var(--warn-ink); border-color: #f0d98a; }
.badge.deny, .badge.high, .badge.critical { background: var(--bad-bg); color: #8a2c1e; border-color: #eab8ae; }
.badge.allow, .badge.resolved, .badge.active { background: var(--ok-bg); color: #1d5a3f; border-color: #b6dcc6; }
.badge.open { background: var(--warn); color: var(--warn-ink); border-color: #f0d98a; }
.badge.neutral, .badge.acknowledged, .badge.low, .badge.medium, .badge.revoked, .badge.expired { background: var(--soft); color: var(--ink); border-color: var(--line); }
.sub { color: var(--muted); font-size: .9em; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px; overflow-x: auto;
  font-size: .86em; white-space: pre-wrap; overflow-wrap: anywhere; margin: 6px 0 12px; }
figure { margin: 10px 0 18px; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px 6px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart text { font-size: 12px; fill: var(--muted); font-family: inherit; }
svg.chart text.value { fill: var(--ink); font-weight: 600; }
svg.chart .grid { stroke: var(--line); stroke-width: 1; }
svg.chart .axis { stroke: #8a94a3; stroke-width: 1; }
.legend { font-size: 12px; color: var(--muted); margin: 0 0 4px; }
.legend span { display: inline-flex; align-items: center; margin-right: 14px; }
.sw { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 5px; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.cols > figure { margin-top: 0; }
.facts th { width: 45%; color: var(--muted); font-weight: 500; }
footer { margin-top: 40px; padding-top: 10px; border-top: 1px solid var(--line); color: var(--muted); font-size: .86em; }
@media (max-width: 800px) { dl.cards { grid-template-columns: repeat(2, minmax(0, 1fr)); } .cols { grid-template-columns: 1fr; } }
@page { size: A4; margin: 14mm 12mm 16mm; }
@media print {
  html, body { font-size: 10.5px; }
  main { max-width: none; padding: 0; }
  nav.toc { display: none; }
  section { margin-top: 0; }
  section.page { break-before: page; }
  h2, h3, caption, figcaption { break-after: avoid; }
  table { font-size: 9.5px; }
  thead { display: table-header-group; }
  tr, figure, .card, pre, .status { break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  a { color: inherit; text-decoration: none; }
  .cols { grid-template-columns: 1fr 1fr; }
}
"#;

/// `2026-11-27T19:46:31.123456Z` as `2026-11-27 19:46:31Z`: readable, still unambiguous.
fn when(t: &str) -> String {
    match (t.get(..10), t.get(11..19)) {
        (Some(d), Some(h)) if t.as_bytes().get(10) == Some(&b'T') => format!("{d} {h}Z"),
        _ => t.to_owned(),
    }
}

/// One table cell.
enum Cell {
    /// Text.
    Text(String),
    /// Text in a monospace, breakable cell (ids, scopes).
    Id(String),
    /// A time.
    When(String),
    /// Pre-rendered markup (badges, code).
    Raw(String),
    /// A number with the metric name it carries for machines.
    Metric(&'static str, u64),
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

fn badge(class: &str, label: &str) -> String {
    format!("<span class=\"badge {}\">{}</span>", esc(class), esc(label))
}

/// A table. `section` opens a machine-readable section and `keys` give each row's key.
struct Table<'a> {
    id: &'a str,
    caption: &'a str,
    headers: &'a [&'a str],
    numeric: &'a [usize],
    section: Option<&'a str>,
}

impl Table<'_> {
    fn render(&self, out: &mut String, rows: Vec<(Option<String>, Vec<Cell>, bool)>) {
        let section = self.section.map(|s| format!(" data-section=\"{}\"", esc(s))).unwrap_or_default();
        let id = if self.id.is_empty() { String::new() } else { format!(" id=\"{}\"", esc(self.id)) };
        let _ = write!(out, "<table{id}{section}><caption>{}</caption><thead><tr>", esc(self.caption));
        for (i, h) in self.headers.iter().enumerate() {
            let class = if self.numeric.contains(&i) { " class=\"num\"" } else { "" };
            let _ = write!(out, "<th scope=\"col\"{class}>{}</th>", esc(h));
        }
        out.push_str("</tr></thead><tbody>");
        if rows.is_empty() {
            let _ =
                write!(out, "<tr><td class=\"none\" colspan=\"{}\">none in this period</td></tr>", self.headers.len());
        }
        for (key, cells, highlight) in rows {
            let key = key.map(|k| format!(" data-key=\"{}\"", esc(&k))).unwrap_or_default();
            let class = if highlight { " class=\"off-hours\"" } else { "" };
            let _ = write!(out, "<tr{class}{key}>");
            for c in cells {
                let _ = match c {
                    Cell::Text(t) => write!(out, "<td>{}</td>", esc(&t)),
                    Cell::Id(t) => write!(out, "<td class=\"id\">{}</td>", esc(&t)),
                    Cell::When(t) => write!(out, "<td class=\"when\">{}</td>", esc(&when(&t))),
                    Cell::Raw(h) => write!(out, "<td>{h}</td>"),
                    Cell::Metric(m, v) => write!(out, "<td class=\"num\" data-metric=\"{m}\">{v}</td>"),
                };
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
    }
}

/// Token names by id, from the inventory and the least-privilege analysis.
fn names(r: &ComplianceReport) -> BTreeMap<&str, &str> {
    let mut m: BTreeMap<&str, &str> = BTreeMap::new();
    for t in &r.least_privilege.tokens {
        m.insert(&t.token_id, &t.name);
    }
    for t in &r.inventory {
        m.insert(&t.id, &t.name);
    }
    m
}

/// A stat-group table, one machine-readable row per group (the CSV's metrics).
fn groups(out: &mut String, t: &Table<'_>, gs: &[StatGroup], label: impl Fn(&str) -> Cell) {
    let rows = gs
        .iter()
        .map(|g| {
            let cells = vec![
                label(&g.key),
                Cell::Metric("count", g.count),
                Cell::Metric("allowed", g.allowed),
                Cell::Metric("denied", g.denied),
                Cell::Metric("distinct_ips", g.distinct_ips),
                Cell::Metric("bytes", g.bytes),
            ];
            (Some(g.key.clone()), cells, false)
        })
        .collect();
    t.render(out, rows);
}

/// The smallest 1, 2 or 5 times a power of ten that is at least `n` (and at least 1).
fn nice_ceiling(n: u64) -> u64 {
    let mut p = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * p >= n.max(1) {
                return m * p;
            }
        }
        p = p.saturating_mul(10);
    }
}

/// The days of `[from, to)` (UTC) when there are at most `max` of them.
fn days_of_period(from: &str, to: &str, max: usize) -> Option<Vec<String>> {
    let from: jiff::Timestamp = from.parse().ok()?;
    let to: jiff::Timestamp = to.parse().ok()?;
    let utc = jiff::tz::TimeZone::UTC;
    let first = utc.to_datetime(from).date();
    let last = utc.to_datetime(to.checked_sub(jiff::SignedDuration::from_micros(1)).ok()?).date();
    let mut out = Vec::new();
    let mut d = first;
    while d <= last {
        if out.len() == max {
            return None;
        }
        out.push(d.to_string());
        d = d.tomorrow().ok()?;
    }
    Some(out)
}

/// Stacked columns of allowed and denied requests per day over the whole period (days without
/// requests included, when the period is short enough to show every day).
fn per_day_chart(r: &ComplianceReport) -> String {
    let by_day: BTreeMap<&str, &StatGroup> = r.requests_per_day.iter().map(|g| (g.key.as_str(), g)).collect();
    let mut slots: Vec<String> = days_of_period(&r.from, &r.to, 92).unwrap_or_default();
    for g in &r.requests_per_day {
        if !slots.contains(&g.key) {
            slots.push(g.key.clone());
        }
    }
    slots.sort();
    let (w, h) = (1000.0_f64, 260.0_f64);
    let (left, right, top, bottom) = (52.0_f64, 12.0_f64, 14.0_f64, 34.0_f64);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let max = nice_ceiling(r.requests_per_day.iter().map(|g| g.count).max().unwrap_or(0));
    let mut s = format!(
        "<svg class=\"chart\" id=\"chart-requests\" role=\"img\" aria-labelledby=\"chart-requests-title chart-requests-desc\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"xMidYMid meet\"><title id=\"chart-requests-title\">Requests per day</title><desc id=\"chart-requests-desc\">{} requests in the period, {} allowed and {} denied, over {} days; the table below has every value.</desc>",
        r.totals.requests,
        r.totals.allowed,
        r.totals.denied,
        slots.len()
    );
    for i in 0..=4 {
        let v = max * i / 4;
        let y = top + plot_h - plot_h * (i as f64) / 4.0;
        let class = if i == 0 { "axis" } else { "grid" };
        let _ = write!(
            s,
            "<line class=\"{class}\" x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            w - right,
            left - 6.0,
            y + 4.0
        );
    }
    if slots.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no requests in this period</text>",
            left + plot_w / 2.0,
            top + plot_h / 2.0
        );
    }
    let n = slots.len().max(1) as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.7).clamp(1.0, 56.0);
    let label_every = (slots.len() / 12).max(1);
    let base = top + plot_h;
    for (i, day) in slots.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = base;
        if let Some(g) = by_day.get(day.as_str()) {
            for (kind, v, color) in [("allowed", g.allowed, ALLOW), ("denied", g.denied, DENY)] {
                if v == 0 {
                    continue;
                }
                let bh = plot_h * v as f64 / max as f64;
                y -= bh;
                let _ = write!(
                    s,
                    "<rect class=\"bar {kind}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{color}\" data-label=\"{}\" data-value=\"{v}\"><title>{}: {v} {kind}</title></rect>",
                    esc(day),
                    esc(day)
                );
            }
            if g.count > 0 && slots.len() <= 31 {
                let _ = write!(
                    s,
                    "<text class=\"value\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    x + bar / 2.0,
                    y - 4.0,
                    g.count
                );
            }
        }
        if i % label_every == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                h - 12.0,
                esc(day.get(5..).unwrap_or(day))
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// One horizontal bar chart row: a label and stacked segments `(class, value, color)`.
struct BarRow {
    key: String,
    label: String,
    segments: Vec<(&'static str, u64, &'static str)>,
}

/// Horizontal (stacked) bars with a label and the total at the end of each row.
fn bars(id: &str, title: &str, desc: &str, rows: &[BarRow]) -> String {
    // Drawn at about the size it is shown (half the page), so its text stays legible.
    let (width, label_w, bar_w) = (540.0_f64, 190.0_f64, 300.0_f64);
    let row_h = 26.0_f64;
    let h = (rows.len().max(1) as f64) * row_h + 8.0;
    let max = nice_ceiling(rows.iter().map(|r| r.segments.iter().map(|s| s.1).sum::<u64>()).max().unwrap_or(0));
    let mut s = format!(
        "<svg class=\"chart\" id=\"{id}\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" viewBox=\"0 0 {width} {h}\" preserveAspectRatio=\"xMidYMid meet\"><title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>",
        esc(title),
        esc(desc)
    );
    let _ = write!(s, "<line class=\"axis\" x1=\"{label_w}\" y1=\"0\" x2=\"{label_w}\" y2=\"{h}\"/>");
    if rows.is_empty() {
        let _ = write!(s, "<text x=\"{}\" y=\"18\">none in this period</text>", label_w + 8.0);
    }
    for (i, r) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let shown: String = if r.label.chars().count() > 28 {
            r.label.chars().take(27).chain(std::iter::once('…')).collect()
        } else {
            r.label.clone()
        };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            label_w - 8.0,
            y + 15.0,
            esc(&shown)
        );
        let mut x = label_w;
        let mut total = 0;
        for (class, v, color) in &r.segments {
            if *v == 0 {
                continue;
            }
            let bw = bar_w * *v as f64 / max as f64;
            let _ = write!(
                s,
                "<rect class=\"bar {class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"18\" fill=\"{color}\" data-label=\"{}\" data-value=\"{v}\"><title>{}: {v} {class}</title></rect>",
                esc(&r.key),
                esc(&r.label)
            );
            x += bw;
            total += v;
        }
        let _ = write!(s, "<text class=\"value\" x=\"{:.1}\" y=\"{:.1}\">{total}</text>", x + 6.0, y + 14.0);
    }
    s.push_str("</svg>");
    s
}

fn legend() -> String {
    format!(
        "<p class=\"legend\" aria-hidden=\"true\"><span><i class=\"sw\" style=\"background:{ALLOW}\"></i>allowed</span><span><i class=\"sw\" style=\"background:{DENY}\"></i>denied</span></p>"
    )
}

/// A list of events (admin changes, reviews, off-hours access).
fn events(out: &mut String, t: &Table<'_>, evs: &[EventView], names: &BTreeMap<&str, &str>, off_hours: bool) {
    let rows = evs
        .iter()
        .map(|e| {
            let by = e.token_id.clone().unwrap_or_else(|| "-".into());
            let cells = if off_hours {
                vec![
                    Cell::When(e.time.clone()),
                    Cell::Raw(format!(
                        "{} <span class=\"tid\">{}</span>",
                        esc(names.get(by.as_str()).copied().unwrap_or("")),
                        esc(&by)
                    )),
                    text(e.owner.clone().unwrap_or_else(|| "-".into())),
                    text(e.route.clone().or_else(|| e.path.clone()).unwrap_or_default()),
                    text(e.sensitivity.join(", ")),
                    Cell::Raw(format!(
                        "{} {}",
                        badge(&e.decision, &e.decision),
                        if e.decision == "deny" { esc(&e.reason) } else { String::new() }
                    )),
                ]
            } else {
                let target = e.target.clone().unwrap_or_default();
                vec![
                    Cell::When(e.time.clone()),
                    Cell::Raw(format!(
                        "<code class=\"nw\">{}</code>",
                        esc(e.operation.as_deref().unwrap_or(&e.reason))
                    )),
                    Cell::Raw(format!(
                        "{} <span class=\"tid\">{}</span>",
                        esc(names.get(target.as_str()).copied().unwrap_or("")),
                        esc(&target)
                    )),
                    Cell::Raw(format!(
                        "{} <span class=\"tid\">{}</span>",
                        esc(e.owner.as_deref().unwrap_or("")),
                        esc(&by)
                    )),
                    text(e.explanation.clone().unwrap_or_default()),
                ]
            };
            (None, cells, off_hours)
        })
        .collect();
    t.render(out, rows);
}

/// A `<section>` with its heading; `page` starts it on a new page when printed.
fn open_section(o: &mut String, id: &str, title: &str, page: bool) {
    let class = if page { " class=\"page\"" } else { "" };
    let _ = write!(o, "<section id=\"{id}\"{class} aria-labelledby=\"{id}-h\"><h2 id=\"{id}-h\">{}</h2>", esc(title));
}

/// Where each section a control names is in this document.
fn anchor(section: &str) -> (&'static str, &'static str) {
    match section {
        "inventory" => ("#inventory", "token inventory"),
        "least_privilege" => ("#least-privilege", "least privilege"),
        "integrity" => ("#integrity", "integrity statement"),
        "admin_changes" => ("#admin", "administrative changes"),
        "reviews" => ("#reviews", "access reviews"),
        "findings" => ("#findings", "findings"),
        "denials_by_reason" => ("#by-reason", "denied attempts by reason"),
        "off_hours_access" => ("#off-hours", "off-hours access"),
        "sensitive_access" => ("#sensitive", "sensitive data"),
        "access_by_token" => ("#by-token", "access by token"),
        "access_by_owner" => ("#by-owner", "access by owner"),
        "access_by_resource" => ("#by-resource", "access by resource"),
        _ => ("#controls", "this report"),
    }
}

/// Renders the report.
pub fn render(r: &ComplianceReport) -> String {
    let names = names(r);
    let name_of = |id: &str| names.get(id).copied().unwrap_or("").to_owned();
    let mut o = String::with_capacity(64 * 1024);
    let day = |t: &str| t.get(..10).unwrap_or(t).to_owned();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"generator\" content=\"tokentrail\"><title>API token access: compliance report {} to {}</title><style>{CSS}</style></head><body><main>",
        esc(&day(&r.from)),
        esc(&day(&r.to))
    );

    // Header, verdict, headline numbers, contents.
    let i = &r.integrity;
    let _ = write!(
        o,
        "<header class=\"top\"><div class=\"eyebrow\">tokentrail · compliance evidence</div><h1>API token access: compliance report</h1><p class=\"meta\">Period <b>{}</b> to <b>{}</b> (end exclusive) · generated {} · log <code>{}</code></p></header>",
        esc(&when(&r.from)),
        esc(&when(&r.to)),
        esc(&when(&r.generated_at)),
        esc(&i.log)
    );
    if i.verified {
        let _ = write!(
            o,
            "<div class=\"status ok\" role=\"status\"><span class=\"mark\" aria-hidden=\"true\">✓</span><span>The audit log verified intact when this report was made. <span class=\"note\">{} events up to the end of the period{} (see <a href=\"#integrity\">Integrity statement</a>).</span></span></div>",
            i.events_covered,
            if i.checkpoint.is_some() { ", covered by a signed checkpoint" } else { "" }
        );
    } else {
        let _ = write!(
            o,
            "<div class=\"status bad\" role=\"alert\"><span class=\"mark\" aria-hidden=\"true\">✗</span><span>The audit log did NOT verify: {}</span></div>",
            esc(&i.verification)
        );
    }
    let t = &r.totals;
    o.push_str("<dl class=\"cards\" id=\"totals\" data-section=\"totals\">");
    for (metric, label, v, class) in [
        ("requests", "Requests", t.requests, ""),
        ("allowed", "Allowed", t.allowed, " allow"),
        ("denied", "Denied", t.denied, " deny"),
        ("tokens", "Tokens", t.tokens, ""),
        ("sensitive_requests", "Sensitive-data requests", t.sensitive_requests, ""),
        (
            "off_hours_sensitive_requests",
            "Of them off hours",
            t.off_hours_sensitive_requests,
            if t.off_hours_sensitive_requests > 0 { " warn" } else { "" },
        ),
        ("findings", "Findings", t.findings, ""),
        ("admin_changes", "Admin changes", t.admin_changes, ""),
    ] {
        let _ = write!(
            o,
            "<div class=\"card{class}\" data-key=\"-\"><dt>{label}</dt><dd data-metric=\"{metric}\">{v}</dd></div>"
        );
    }
    o.push_str("</dl>");
    o.push_str("<nav class=\"toc\" aria-label=\"Contents\"><ol>");
    for (id, title) in [
        ("integrity", "Integrity statement"),
        ("activity", "Activity"),
        ("access", "Access summary"),
        ("sensitive", "Sensitive data"),
        ("findings", "Findings"),
        ("admin", "Administrative changes"),
        ("least-privilege", "Least privilege"),
        ("inventory", "Token inventory"),
        ("controls", "Controls"),
    ] {
        let _ = write!(o, "<li><a href=\"#{id}\">{title}</a></li>");
    }
    o.push_str("</ol></nav>");

    // Integrity.
    open_section(&mut o, "integrity", "Integrity statement", false);
    o.push_str("<p class=\"lead\">Every event of this report is a leaf of an append-only Merkle log (RFC 6962) whose state is published as signed checkpoints. Anyone holding the verifier key can check that the log still contains every event up to the checkpoint, unaltered.</p>");
    let _ = write!(
        o,
        "<table class=\"facts\" data-section=\"integrity\"><caption>Verification</caption><tbody><tr data-key=\"-\"><th scope=\"row\">Events in the log up to the end of the period</th><td class=\"num\" data-metric=\"events_covered\">{}</td></tr>",
        i.events_covered
    );
    if let Some(size) = i.checkpoint_size {
        let _ = write!(
            o,
            "<tr data-key=\"-\"><th scope=\"row\">Size of the signed checkpoint covering the period</th><td class=\"num\" data-metric=\"checkpoint_size\">{size}</td></tr>"
        );
    }
    let _ = write!(
        o,
        "<tr data-key=\"-\"><th scope=\"row\">Whole log verified when the report was made</th><td class=\"num\"><code data-metric=\"verified\">{}</code></td></tr><tr><th scope=\"row\">Result</th><td>{}</td></tr></tbody></table>",
        i.verified,
        esc(&i.verification)
    );
    match &i.checkpoint {
        Some(note) => {
            let _ = write!(
                o,
                "<h3>The signed checkpoint</h3><p class=\"lead\">Save it as <code>period.note</code>.</p><pre id=\"checkpoint\">{}</pre>",
                esc(note)
            );
        }
        None => o.push_str("<p>No checkpoint covers the period: the log was empty.</p>"),
    }
    let _ = write!(
        o,
        "<h3>Verifier key</h3><pre id=\"verifier-key\">{}</pre><h3>To verify independently</h3><pre>",
        esc(&i.verifier_key)
    );
    for c in &i.commands {
        let _ = writeln!(o, "{}", esc(c));
    }
    o.push_str("</pre></section>");

    // Activity.
    open_section(&mut o, "activity", "Activity", true);
    o.push_str(
        "<figure aria-labelledby=\"fig-requests\"><figcaption id=\"fig-requests\">Requests per day</figcaption>",
    );
    o.push_str(&legend());
    o.push_str(&per_day_chart(r));
    o.push_str("</figure><div class=\"cols\">");
    let denials: Vec<BarRow> = r
        .denials_by_reason
        .iter()
        .map(|g| BarRow { key: g.key.clone(), label: g.key.clone(), segments: vec![("denied", g.count, DENY)] })
        .collect();
    let _ = write!(
        o,
        "<figure aria-labelledby=\"fig-denials\"><figcaption id=\"fig-denials\">Denied attempts by reason</figcaption>{}</figure>",
        bars(
            "chart-denials",
            "Denied attempts by reason",
            &format!("{} denied attempts in the period.", t.denied),
            &denials
        )
    );
    let top: Vec<BarRow> = r
        .access_by_token
        .iter()
        .take(10)
        .map(|g| {
            let name = name_of(&g.key);
            let label = match (g.key.as_str(), name.is_empty()) {
                ("-", _) => "(no token)".to_owned(),
                (_, true) => g.key.clone(),
                (_, false) => format!("{name} · {}", g.key),
            };
            BarRow {
                key: g.key.clone(),
                label,
                segments: vec![("allowed", g.allowed, ALLOW), ("denied", g.denied, DENY)],
            }
        })
        .collect();
    let _ = write!(
        o,
        "<figure aria-labelledby=\"fig-tokens\"><figcaption id=\"fig-tokens\">Top tokens by requests</figcaption>{}{}</figure>",
        legend(),
        bars(
            "chart-tokens",
            "Top tokens by requests",
            "The ten tokens with the most requests, allowed and denied.",
            &top
        )
    );
    o.push_str("</div>");
    groups(
        &mut o,
        &Table {
            id: "per-day",
            caption: "Requests per day (UTC)",
            headers: &["day", "requests", "allowed", "denied", "addresses", "bytes"],
            numeric: &[1, 2, 3, 4, 5],
            section: Some("requests_per_day"),
        },
        &r.requests_per_day,
        |k| text(k),
    );
    o.push_str("</section>");

    // Access summary.
    open_section(&mut o, "access", "Access summary", true);
    let headers =
        |first: &'static str| -> [&'static str; 6] { [first, "requests", "allowed", "denied", "addresses", "bytes"] };
    let token_headers = headers("token");
    groups(
        &mut o,
        &Table {
            id: "by-token",
            caption: "By token",
            headers: &token_headers,
            numeric: &[1, 2, 3, 4, 5],
            section: Some("access_by_token"),
        },
        &r.access_by_token,
        |k| {
            let name = name_of(k);
            if name.is_empty() {
                Cell::Id(k.to_owned())
            } else {
                Cell::Raw(format!("{} <span class=\"tid\">{}</span>", esc(&name), esc(k)))
            }
        },
    );
    for (id, caption, first, section, gs) in [
        ("by-owner", "By owner", "owner", "access_by_owner", &r.access_by_owner),
        ("by-resource", "By resource", "resource", "access_by_resource", &r.access_by_resource),
        ("by-reason", "Denied attempts by reason", "reason", "denials_by_reason", &r.denials_by_reason),
    ] {
        let h = headers(first);
        groups(
            &mut o,
            &Table { id, caption, headers: &h, numeric: &[1, 2, 3, 4, 5], section: Some(section) },
            gs,
            |k| text(k),
        );
    }
    o.push_str("</section>");

    // Sensitive data.
    open_section(&mut o, "sensitive", "Access to sensitive data", true);
    let _ = write!(
        o,
        "<p class=\"lead\">Requests to routes labelled sensitive (<code>pii</code>, <code>phi</code>, <code>financial</code>, …), by token and label. {} of {} were outside business hours; those rows are highlighted and marked.</p>",
        t.off_hours_sensitive_requests, t.sensitive_requests
    );
    let rows = r
        .sensitive_access
        .iter()
        .map(|s| {
            let off = if s.off_hours > 0 { format!(" {}", badge("warn", "off hours")) } else { String::new() };
            let cells = vec![
                Cell::Raw(format!("<code>{}</code>{off}", esc(&s.label))),
                Cell::Raw(format!("{} <span class=\"tid\">{}</span>", esc(&name_of(&s.token_id)), esc(&s.token_id))),
                text(s.owner.clone()),
                Cell::Metric("count", s.count),
                Cell::Metric("denied", s.denied),
                Cell::Metric("off_hours", s.off_hours),
                Cell::When(s.first.clone()),
                Cell::When(s.last.clone()),
            ];
            (Some(format!("{} {}", s.token_id, s.label)), cells, s.off_hours > 0)
        })
        .collect();
    Table {
        id: "sensitive-access",
        caption: "Sensitive-data access by token and label",
        headers: &["label", "token", "owner", "requests", "denied", "off hours", "first", "last"],
        numeric: &[3, 4, 5],
        section: Some("sensitive_access"),
    }
    .render(&mut o, rows);
    let caption = if r.off_hours_access.len() >= 200 {
        "Sensitive access outside business hours (the first 200)"
    } else {
        "Sensitive access outside business hours"
    };
    events(
        &mut o,
        &Table {
            id: "off-hours",
            caption,
            headers: &["time", "token", "owner", "route", "labels", "decision"],
            numeric: &[],
            section: None,
        },
        &r.off_hours_access,
        &names,
        true,
    );
    o.push_str("</section>");

    // Findings.
    open_section(&mut o, "findings", "Findings and their resolution", true);
    let rows = r
        .findings
        .iter()
        .map(|f| {
            let cells = vec![
                Cell::Raw(format!("<code class=\"nw\">{}</code>", esc(&f.kind))),
                Cell::Raw(badge(&f.severity, &f.severity)),
                Cell::Raw(badge(&f.status, &f.status)),
                Cell::When(f.first_seen.clone()),
                text(f.summary.clone()),
                Cell::Metric("events", f.event_count),
                text(f.comment.clone().unwrap_or_default()),
            ];
            (Some(f.id.clone()), cells, false)
        })
        .collect();
    Table {
        id: "findings-table",
        caption: "Findings active in the period",
        headers: &["type", "severity", "status", "first seen", "summary", "events", "resolution"],
        numeric: &[5],
        section: Some("findings"),
    }
    .render(&mut o, rows);
    o.push_str("</section>");

    // Administrative changes and reviews.
    open_section(&mut o, "admin", "Administrative changes", true);
    events(
        &mut o,
        &Table {
            id: "admin-changes",
            caption: "Who created, changed and revoked what",
            headers: &["time", "operation", "on", "by", "details"],
            numeric: &[],
            section: None,
        },
        &r.admin_changes,
        &names,
        false,
    );
    events(
        &mut o,
        &Table {
            id: "reviews",
            caption: "Access reviews: tokens confirmed as still needed",
            headers: &["time", "operation", "token", "by", "details"],
            numeric: &[],
            section: None,
        },
        &r.reviews,
        &names,
        false,
    );
    o.push_str("</section>");

    // Least privilege.
    let lp = &r.least_privilege;
    open_section(&mut o, "least-privilege", "Least privilege", true);
    let _ = write!(
        o,
        "<p class=\"lead\">Granted scopes against the scopes that allowed requests needed over the last {} days, as of {}.</p><dl class=\"cards\" data-section=\"least_privilege\">",
        lp.window_days,
        esc(&when(&lp.generated_at))
    );
    if lp.summary.is_empty() {
        o.push_str("<div class=\"card\"><dt>Recommendations</dt><dd>0</dd></div>");
    }
    for (k, v) in &lp.summary {
        let _ = write!(
            o,
            "<div class=\"card\" data-key=\"-\"><dt>{}</dt><dd data-metric=\"{}\">{v}</dd></div>",
            esc(&k.replace('_', " ")),
            esc(k)
        );
    }
    o.push_str("</dl>");
    let rows = lp
        .recommendations
        .iter()
        .map(|x| {
            let change = match &x.to {
                Some(to) => format!("{} → {}", x.from.join(" "), to.join(" ")),
                None => x.from.join(" "),
            };
            let cells = vec![
                Cell::Raw(format!("{} <span class=\"tid\">{}</span>", esc(&name_of(&x.token_id)), esc(&x.token_id))),
                Cell::Raw(badge("neutral", &x.kind.replace('_', " "))),
                Cell::Id(change),
                text(x.reason.clone()),
                Cell::Raw(format!("<code>{}</code>", esc(&x.command))),
            ];
            (None, cells, false)
        })
        .collect();
    Table {
        id: "recommendations",
        caption: "Recommendations",
        headers: &["token", "change", "scopes", "why", "command"],
        numeric: &[],
        section: None,
    }
    .render(&mut o, rows);
    let rows = lp
        .tokens
        .iter()
        .map(|p| {
            let cells = vec![
                Cell::Raw(format!("{} <span class=\"tid\">{}</span>", esc(&p.name), esc(&p.token_id))),
                text(p.owner.clone()),
                Cell::Id(p.granted.join(" ")),
                Cell::Id(if p.used.is_empty() { "-".into() } else { p.used.join(" ") }),
                Cell::Id(if p.unused.is_empty() { "-".into() } else { p.unused.join(" ") }),
                Cell::When(p.confirmed_at.clone().unwrap_or_else(|| "never".into())),
            ];
            (None, cells, false)
        })
        .collect();
    Table {
        id: "grants",
        caption: "Grants against use, and the last access-review confirmation",
        headers: &["token", "owner", "granted", "used", "unused", "confirmed"],
        numeric: &[],
        section: None,
    }
    .render(&mut o, rows);
    o.push_str("</section>");

    // Inventory.
    open_section(&mut o, "inventory", "Token inventory", true);
    let rows = r
        .inventory
        .iter()
        .map(|t| {
            let expires = match &t.expires_at {
                Some(e) => esc(&when(e)),
                None => badge("warn", "never"),
            };
            let cells = vec![
                Cell::Id(t.id.clone()),
                text(t.name.clone()),
                text(t.owner.clone()),
                Cell::Id(t.scopes.join(" ")),
                Cell::Raw(badge(&t.state, &t.state)),
                Cell::When(t.created_at.clone()),
                Cell::Raw(expires),
                Cell::When(t.last_used_at.clone().unwrap_or_else(|| "-".into())),
            ];
            (None, cells, false)
        })
        .collect();
    Table {
        id: "inventory-table",
        caption: "Tokens that existed during the period",
        headers: &["id", "name", "owner", "scopes", "state", "created", "expires", "last used"],
        numeric: &[],
        section: None,
    }
    .render(&mut o, rows);
    o.push_str("</section>");

    // Controls.
    open_section(&mut o, "controls", "Controls", true);
    o.push_str("<p class=\"lead\">Where this report provides evidence for common control frameworks.</p>");
    let rows = r
        .controls
        .iter()
        .map(|c| {
            let links: Vec<String> = c
                .sections
                .iter()
                .map(|s| {
                    let (href, label) = anchor(s);
                    format!("<a href=\"{href}\">{label}</a>")
                })
                .collect();
            let cells = vec![
                text(c.framework.clone()),
                text(c.control.clone()),
                text(c.title.clone()),
                Cell::Raw(links.join(", ")),
            ];
            (None, cells, false)
        })
        .collect();
    Table {
        id: "controls-table",
        caption: "Control mapping",
        headers: &["framework", "control", "requirement", "evidence in this report"],
        numeric: &[],
        section: None,
    }
    .render(&mut o, rows);
    o.push_str("</section>");
    let _ = writeln!(
        o,
        "<footer>Generated by tokentrail at {} from log <code>{}</code>. This file is self-contained: it loads nothing from anywhere.</footer></main></body></html>",
        esc(&when(&r.generated_at)),
        esc(&i.log)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        let got: Vec<u64> = [0, 1, 2, 3, 7, 10, 11, 99, 101, 4999].iter().map(|n| nice_ceiling(*n)).collect();
        assert_eq!(got, [1, 1, 2, 5, 10, 10, 20, 100, 200, 5000]);
    }

    #[test]
    fn days_of_a_period() {
        let d = days_of_period("2026-11-26T00:00:00Z", "2026-11-28T00:00:00Z", 92);
        assert_eq!(d, Some(vec!["2026-11-26".to_owned(), "2026-11-27".to_owned()]));
        assert_eq!(days_of_period("2026-01-01T00:00:00Z", "2026-12-01T00:00:00Z", 92), None);
        assert_eq!(when("2026-11-27T19:46:31.123456Z"), "2026-11-27 19:46:31Z");
    }
}
