//! The investigation commands: query, stats, explain, activity, tail and export of the audit
//! log, and ingest (through the API, or offline into a stopped server's data directory).

use std::io::{IsTerminal as _, Write as _};

use anyhow::{Context as _, anyhow};
use proto::EventView;

use crate::client::{Client, ClientError, query};
use crate::output::{self, Format};

/// The filters every audit command takes, as query parameters.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Filters {
    /// access or admin.
    #[arg(long)]
    pub kind: Option<String>,
    /// Events of this token.
    #[arg(long = "token", value_name = "ID")]
    pub token_id: Option<String>,
    /// Events of an unresolved credential with this fingerprint (fp_…).
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Events of this owner.
    #[arg(long)]
    pub owner: Option<String>,
    /// Events from this address or network (10.0.0.0/8).
    #[arg(long, value_name = "IP|CIDR")]
    pub source_ip: Option<String>,
    /// Events of this route template ("GET /v1/patients/{id}").
    #[arg(long)]
    pub route: Option<String>,
    /// Events on this resource.
    #[arg(long)]
    pub resource: Option<String>,
    /// Events with this action.
    #[arg(long)]
    pub action: Option<String>,
    /// Events carrying this sensitivity label.
    #[arg(long)]
    pub sensitivity: Option<String>,
    /// allow or deny.
    #[arg(long)]
    pub decision: Option<String>,
    /// A reason code.
    #[arg(long)]
    pub reason: Option<String>,
    /// Events from this source (admin, gateway, verify, authz, …).
    #[arg(long)]
    pub source: Option<String>,
    /// From: RFC 3339, or 15m, 24h, 7d ago.
    #[arg(long)]
    pub since: Option<String>,
    /// Until: RFC 3339, or 15m, 24h, 7d ago.
    #[arg(long)]
    pub until: Option<String>,
}

impl Filters {
    /// The filters as query pairs.
    pub fn pairs(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("kind", self.kind.clone()),
            ("token_id", self.token_id.clone()),
            ("fingerprint", self.fingerprint.clone()),
            ("owner", self.owner.clone()),
            ("source_ip", self.source_ip.clone()),
            ("route", self.route.clone()),
            ("resource", self.resource.clone()),
            ("action", self.action.clone()),
            ("sensitivity", self.sensitivity.clone()),
            ("decision", self.decision.clone()),
            ("reason", self.reason.clone()),
            ("source", self.source.clone()),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
        ]
    }
}

fn api(e: ClientError) -> anyhow::Error {
    anyhow!("{e}")
}

/// Writes to stdout; a closed pipe ends quietly.
pub fn print(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// The columns of event tables and CSV.
pub const EVENT_HEADERS: [&str; 7] = ["TIME", "REASON", "TOKEN", "WHAT", "SOURCE IP", "KIND", "ID"];
/// The table shows the columns that fit 80 characters; csv and json carry every field.
const EVENT_TABLE_COLUMNS: usize = 4;

/// One row per event, in [`EVENT_HEADERS`] order.
pub fn event_rows(events: &[EventView]) -> Vec<Vec<String>> {
    events
        .iter()
        .map(|e| {
            let what = match (&e.operation, &e.target) {
                (Some(op), Some(t)) => format!("{op} {t}"),
                (Some(op), None) => op.clone(),
                _ => e.route.clone().or_else(|| e.path.clone()).unwrap_or_default(),
            };
            vec![
                e.time.clone(),
                e.reason.clone(),
                e.token_id.clone().or_else(|| e.token_fingerprint.clone()).unwrap_or_else(|| "-".to_owned()),
                what,
                e.source_ip.clone().unwrap_or_else(|| "-".to_owned()),
                e.kind.clone(),
                e.id.clone(),
            ]
        })
        .collect()
}

/// Events as a table that fits 80 columns.
pub fn event_table(events: &[EventView]) -> String {
    let rows: Vec<Vec<String>> = event_rows(events)
        .into_iter()
        .map(|mut r| {
            r[0] = output::seconds(&r[0]);
            r.truncate(EVENT_TABLE_COLUMNS);
            r
        })
        .collect();
    output::table(&EVENT_HEADERS[..EVENT_TABLE_COLUMNS], &rows, 80, &["TIME", "TOKEN"])
}

/// `audit query`.
pub async fn run_query(
    client: &Client,
    format: Format,
    filters: &Filters,
    order: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
) -> anyhow::Result<()> {
    let mut pairs = filters.pairs();
    pairs.push(("order", order));
    pairs.push(("limit", limit.map(|l| l.to_string())));
    pairs.push(("cursor", cursor));
    let list = client.list_events(&query(&pairs)).await.map_err(api)?;
    match format {
        Format::Json | Format::Ndjson => print(&output::json(&list)),
        Format::Csv => print(&output::csv(&EVENT_HEADERS, &event_rows(&list.events))),
        Format::Table | Format::Html => {
            print(&event_table(&list.events))?;
            if let Some(c) = &list.next_cursor {
                let _ = writeln!(std::io::stderr(), "more events: add --cursor {c}");
            }
            Ok(())
        }
    }
}

/// `audit stats`.
pub async fn run_stats(
    client: &Client,
    format: Format,
    filters: &Filters,
    group_by: &str,
    limit: Option<u32>,
) -> anyhow::Result<()> {
    let mut pairs = filters.pairs();
    pairs.push(("group_by", Some(group_by.to_owned())));
    pairs.push(("limit", limit.map(|l| l.to_string())));
    let stats: proto::Stats = client
        .call(hyper::Method::GET, &format!("/v1/audit/stats{}", query(&pairs)), None::<&()>)
        .await
        .map_err(api)?;
    let headers =
        [group_by.to_uppercase(), "COUNT".into(), "ALLOWED".into(), "DENIED".into(), "IPS".into(), "BYTES".into()];
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = stats
        .groups
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
    match format {
        Format::Json | Format::Ndjson => print(&output::json(&stats)),
        Format::Csv => print(&output::csv(&headers, &rows)),
        Format::Table | Format::Html => print(&output::table(&headers, &rows, 80, &[])),
    }
}

/// `audit explain`.
pub async fn run_explain(client: &Client, format: Format, event_id: &str) -> anyhow::Result<()> {
    let x: proto::Explanation = client
        .call(hyper::Method::GET, &format!("/v1/audit/events/{}/explain", crate::client::encode(event_id)), None::<&()>)
        .await
        .map_err(api)?;
    if matches!(format, Format::Json | Format::Ndjson) {
        return print(&output::json(&x));
    }
    let e = &x.event;
    let mut items: Vec<(&str, String)> = vec![
        ("event", format!("{} at {} ({})", e.id, e.time, e.source)),
        ("request", format!("{} {}", e.method.clone().unwrap_or_default(), e.path.clone().unwrap_or_default())),
        ("decision", format!("{} ({})", x.decision, x.reason)),
        ("why", x.summary.clone()),
    ];
    if let Some(s) = &x.required_scope {
        items.push(("required", s.clone()));
    }
    if !x.granted_scopes.is_empty() {
        items.push(("granted", x.granted_scopes.join(" ")));
    }
    for (k, v) in &x.constraint {
        items.push(("constraint", format!("{k} = {v}")));
    }
    if let Some(f) = &x.fix {
        items.push(("fix", f.clone()));
    }
    if let Some(fp) = &x.fingerprint {
        let addrs: Vec<String> = fp.addresses.iter().map(|(a, n)| format!("{a} ({n})")).collect();
        items.push((
            "credential",
            format!(
                "fingerprint {} presented {} times from {} between {} and {}",
                fp.fingerprint,
                fp.count,
                addrs.join(", "),
                fp.first_seen.clone().unwrap_or_default(),
                fp.last_seen.clone().unwrap_or_default()
            ),
        ));
    }
    print(&output::pairs(&items))
}

/// `token activity`.
pub async fn run_activity(client: &Client, format: Format, id: &str, since: Option<String>) -> anyhow::Result<()> {
    let q = query(&[("since", since)]);
    let a: proto::Activity = client
        .call(hyper::Method::GET, &format!("/v1/tokens/{}/activity{q}", crate::client::encode(id)), None::<&()>)
        .await
        .map_err(api)?;
    if matches!(format, Format::Json | Format::Ndjson) {
        return print(&output::json(&a));
    }
    let mut out = String::new();
    let t = &a.token;
    out += &output::pairs(&[
        ("token", format!("{} ({}) owned by {}, {}", t.id, t.name, t.owner, t.state)),
        ("scopes", t.scopes.join(" ")),
        ("last seen", a.last_seen.clone().unwrap_or_else(|| "never".into())),
    ]);
    out += "\nlifecycle\n";
    for e in &a.lifecycle {
        out += &format!(
            "  {}  {}  by {}\n",
            output::seconds(&e.time),
            e.operation.clone().unwrap_or_default(),
            e.token_id.clone().unwrap_or_else(|| "-".into())
        );
    }
    let groups = |title: &str, gs: &[proto::StatGroup]| {
        let rows: Vec<Vec<String>> =
            gs.iter().map(|g| vec![g.key.clone(), g.allowed.to_string(), g.denied.to_string()]).collect();
        format!("\n{title}\n{}", output::table(&["KEY", "ALLOWED", "DENIED"], &rows, 80, &[]))
    };
    out += &groups("daily", &a.daily);
    out += &groups("routes", &a.routes);
    out += &groups("resources", &a.resources);
    out += &groups("networks", &a.networks);
    out += "\nrecent denials\n";
    out += &event_table(&a.recent_denials);
    print(&out)
}

/// `audit tail`: the last `n` events, then (with `follow`) new ones as they are recorded.
pub async fn run_tail(client: &Client, format: Format, filters: &Filters, n: u32, follow: bool) -> anyhow::Result<()> {
    let mut pairs = filters.pairs();
    pairs.push(("limit", Some(n.max(1).to_string())));
    let mut list = client.list_events(&query(&pairs)).await.map_err(api)?;
    list.events.reverse();
    let show = |e: &EventView| -> String {
        match format {
            Format::Json | Format::Ndjson => format!("{}\n", proto::to_json(e)),
            Format::Csv => output::csv(&EVENT_HEADERS, &event_rows(std::slice::from_ref(e)))
                .lines()
                .nth(1)
                .map(|l| format!("{l}\n"))
                .unwrap_or_default(),
            Format::Table | Format::Html => {
                let r = &event_rows(std::slice::from_ref(e))[0];
                format!("{}  {:<18} {:<16} {}\n", output::seconds(&r[0]), r[1], r[2], r[3])
            }
        }
    };
    if format == Format::Csv {
        print(&format!("{}\n", EVENT_HEADERS.join(",")))?;
    }
    for e in &list.events {
        print(&show(e))?;
    }
    if !follow {
        return Ok(());
    }
    let mut failed = None;
    // Resume right after the newest event listed, so nothing recorded meanwhile is missed.
    let resume = list.events.last().and_then(|e| e.seq).map(|s| s.to_string());
    client
        .follow(&format!("/v1/audit/stream{}", query(&filters.pairs())), resume.as_deref(), &mut |_, data| {
            match serde_json::from_str::<EventView>(data) {
                Ok(e) => print(&show(&e)).is_ok(),
                Err(err) => {
                    failed = Some(err.to_string());
                    false
                }
            }
        })
        .await
        .map_err(api)?;
    match failed {
        Some(e) => Err(anyhow!("the stream sent an unreadable event: {e}")),
        None => Ok(()),
    }
}

/// `audit export`: every matching event, oldest first, as NDJSON (the API's event JSON, one per
/// line, copied as the server streams it from `/v1/audit/export`) or CSV; constant memory.
pub async fn run_export(
    client: &Client,
    filters: &Filters,
    csv: bool,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut sink: Box<dyn std::io::Write> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let terminal = std::io::stderr().is_terminal();
    // CSV's header goes out once the server has accepted the filters, so that a refused
    // export writes nothing.
    let header = format!("seq,{}\n", EVENT_HEADERS.join(","));
    let mut headed = !csv;
    let mut total = 0u64;
    let mut reported = 0u64;
    let started = std::time::Instant::now();
    // CSV: the part of a line a chunk ended in, until the rest arrives.
    let mut partial: Vec<u8> = Vec::new();
    // Why writing stopped the transfer, to tell a closed pipe (`| head`: not an error) apart.
    let mut unwritten: Option<std::io::Error> = None;
    let mut write = |sink: &mut dyn std::io::Write, bytes: &[u8]| -> Result<(), String> {
        sink.write_all(bytes).map_err(|e| {
            unwritten = Some(e);
            "cannot write the export".to_owned()
        })
    };
    let path = format!("/v1/audit/export{}", query(&filters.pairs()));
    let result = client
        .download(&path, "application/x-ndjson", &mut |chunk| {
            if !headed {
                headed = true;
                write(&mut *sink, header.as_bytes())?;
            }
            total += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            if csv {
                let mut rest = chunk;
                while let Some(end) = rest.iter().position(|b| *b == b'\n') {
                    partial.extend_from_slice(&rest[..end]);
                    let e: EventView = serde_json::from_slice(&partial)
                        .map_err(|e| format!("the server sent an unreadable event: {e}"))?;
                    let row = output::csv(&EVENT_HEADERS, &event_rows(std::slice::from_ref(&e)));
                    let line = row.lines().nth(1).unwrap_or_default();
                    let seq = e.seq.map(|s| s.to_string()).unwrap_or_default();
                    write(&mut *sink, format!("{seq},{line}\n").as_bytes())?;
                    partial.clear();
                    rest = &rest[end + 1..];
                }
                partial.extend_from_slice(rest);
            } else {
                write(&mut *sink, chunk)?;
            }
            if terminal && total >= reported + 10_000 {
                reported = total;
                let rate = total as f64 / started.elapsed().as_secs_f64().max(0.001);
                let _ = write!(std::io::stderr(), "\rexported {total} events ({rate:.0}/s)");
            }
            Ok(())
        })
        .await;
    let flushed = match result {
        Ok(()) if !partial.is_empty() => return Err(anyhow!("the export ended inside an event")),
        Ok(()) if !headed => sink.write_all(header.as_bytes()).and_then(|()| sink.flush()),
        Ok(()) => sink.flush(),
        Err(e) => match unwritten.take() {
            Some(io) => Err(io),
            None => return Err(api(e)),
        },
    };
    match flushed {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        other => other.context("cannot write the export")?,
    }
    if terminal {
        let _ = writeln!(std::io::stderr());
    }
    Ok(())
}
