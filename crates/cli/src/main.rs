//! The `tokentrail` binary: argument parsing, exit codes (0 ok, 1 failure, 2 usage) and the
//! wiring of each command to the API client, the offline tools, or the server.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::{Args, CommandFactory, Parser, Subcommand};
use cli::client::{Client, ClientError, query};
use cli::investigate::{self, Filters, print};
use cli::output::{self, Format};
use proto::{CreateTokenRequest, IssuedToken, TokenView, UpdateTokenRequest};

#[derive(Parser)]
#[command(
    name = "tokentrail",
    version,
    about = "API token authority and access auditor",
    long_about = "API token authority and access auditor.\n\nStart a server with `tokentrail serve`; the other commands talk to it through \
TOKENTRAIL_ADDR (default http://127.0.0.1:8720) with the admin token in TOKENTRAIL_TOKEN, --token-file, or \
./tokentrail-data/admin.token.",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Address of the tokentrail admin API.
    #[arg(long, global = true, env = "TOKENTRAIL_ADDR", default_value = "http://127.0.0.1:8720", value_name = "URL")]
    addr: String,
    /// File holding the admin token (otherwise TOKENTRAIL_TOKEN, then ./tokentrail-data/admin.token).
    #[arg(long, global = true, env = "TOKENTRAIL_TOKEN_FILE", value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Output format: table (for people), json (for scripts), csv (rows).
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (admin API) on an embedded store.
    Serve(ServeArgs),
    /// Issue and manage tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Check configuration files.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Append events in tokentrail's NDJSON schema to the ledger: through the running server, or
    /// with --data-dir into a stopped server's data directory.
    Ingest(IngestArgs),
    /// What the detectors found.
    #[command(subcommand)]
    Findings(FindingsCmd),
    /// Least-privilege analysis, access reviews and compliance reports.
    #[command(subcommand)]
    Report(ReportCmd),
    /// Run the detectors offline over an NDJSON event file and print the findings.
    Detect {
        /// The events (tokentrail's NDJSON schema, any order).
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// A configuration file whose [detect] section to use.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Tools for tests and benchmarks (not a stable interface).
    #[command(subcommand, hide = true)]
    Debug(DebugCmd),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "TOKENTRAIL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory [default: ./tokentrail-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Admin API listen address [default: 127.0.0.1:8720].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Log filter, e.g. info or tokentrail=debug [default: info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Node name recorded in events [default: the host name].
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Route policy file (docs/policy.md).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The API to put the gateway in front of (http://host:port); starts the gateway.
    #[arg(long, alias = "gateway-upstream", value_name = "URL")]
    upstream: Option<String>,
    /// The gateway's listen address [default: 127.0.0.1:8721].
    #[arg(long, value_name = "ADDR")]
    gateway_listen: Option<String>,
    /// Testing: make every store write fail while this file exists.
    #[arg(long, hide = true, value_name = "FILE")]
    debug_fail_writes_while: Option<PathBuf>,
}

fn label(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("{s:?} is not key=value"))
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Issue a token; it is printed once.
    Create(CreateArgs),
    /// List tokens.
    List(ListArgs),
    /// Show one token.
    Show {
        /// Token id.
        id: String,
    },
    /// A token's timeline: lifecycle, daily use, routes, networks, recent denials.
    Activity {
        /// Token id.
        id: String,
        /// From when: RFC 3339 or relative (default 30d).
        #[arg(long)]
        since: Option<String>,
    },
    /// Change a token's metadata, grants or constraints.
    Update(UpdateArgs),
    /// Revoke a token (final).
    Revoke {
        /// Token id.
        id: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Try (--what-if), shadow (--shadow) or apply (--apply) a narrower grant.
    Narrow {
        /// Token id.
        id: String,
        /// A proposed scope (repeatable).
        #[arg(long = "to", value_name = "SCOPE")]
        to: Vec<String>,
        /// Replay the token's recorded requests against the proposed scopes.
        #[arg(long, conflicts_with_all = ["shadow", "apply"], required_unless_present_any = ["shadow", "apply"])]
        what_if: bool,
        /// Flag live requests the proposed scopes would deny, without enforcing them (no --to ends it).
        #[arg(long, conflicts_with = "apply")]
        shadow: bool,
        /// Switch the token to the proposed scopes.
        #[arg(long)]
        apply: bool,
        /// The what-if window (default 90d).
        #[arg(long)]
        window: Option<String>,
    },
    /// Confirm in an access review that a token is still needed as granted.
    Confirm {
        /// Token id.
        id: String,
        /// A note for the record.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Issue a new secret with the same grants; the new token is printed once.
    Rotate {
        /// Token id.
        id: String,
        /// How long the old secret keeps working (e.g. 1h); none by default.
        #[arg(long)]
        grace: Option<String>,
    },
}

#[derive(Args)]
struct CreateArgs {
    /// Short name.
    #[arg(long)]
    name: String,
    /// Who answers for the token.
    #[arg(long)]
    owner: String,
    /// What the token is for.
    #[arg(long)]
    description: Option<String>,
    /// A granted scope, resource:action (repeatable).
    #[arg(long = "scope", required = true, value_name = "SCOPE")]
    scopes: Vec<String>,
    /// A label key=value (repeatable).
    #[arg(long = "label", value_parser = label, value_name = "KEY=VALUE")]
    labels: Vec<(String, String)>,
    /// Expire after this long: 90s, 12h, 30d [default: the server's default lifetime].
    #[arg(long, conflicts_with_all = ["expires_at", "no_expiry"])]
    expires_in: Option<String>,
    /// Expire at this time (RFC 3339).
    #[arg(long, conflicts_with = "no_expiry")]
    expires_at: Option<String>,
    /// Never expire (must be asked for explicitly).
    #[arg(long)]
    no_expiry: bool,
    /// Not valid before this time (RFC 3339).
    #[arg(long)]
    not_before: Option<String>,
    /// A network the token may be used from (repeatable).
    #[arg(long = "allow-cidr", value_name = "CIDR")]
    allow_cidrs: Vec<String>,
    /// Request budget, e.g. 100/min.
    #[arg(long)]
    rate_limit: Option<String>,
}

#[derive(Args)]
struct ListArgs {
    /// Only tokens of this owner.
    #[arg(long)]
    owner: Option<String>,
    /// Only tokens whose grants imply this scope.
    #[arg(long)]
    scope: Option<String>,
    /// Only tokens in this state: active, revoked, expired, not_yet_valid.
    #[arg(long)]
    state: Option<String>,
    /// Only tokens with this label (key or key=value).
    #[arg(long)]
    label: Option<String>,
    /// Page size (1-1000).
    #[arg(long)]
    limit: Option<u32>,
    /// Continue from a previous page's cursor.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Args)]
struct UpdateArgs {
    /// Token id.
    id: String,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// New owner.
    #[arg(long)]
    owner: Option<String>,
    /// New description.
    #[arg(long)]
    description: Option<String>,
    /// Replace the scopes (repeatable).
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Replace the labels (repeatable key=value).
    #[arg(long = "label", value_parser = label, value_name = "KEY=VALUE")]
    labels: Vec<(String, String)>,
    /// Remove every label.
    #[arg(long, conflicts_with = "labels")]
    clear_labels: bool,
    /// New expiry, from now.
    #[arg(long, conflicts_with_all = ["expires_at", "no_expiry"])]
    expires_in: Option<String>,
    /// New expiry (RFC 3339).
    #[arg(long, conflicts_with = "no_expiry")]
    expires_at: Option<String>,
    /// Remove the expiry.
    #[arg(long)]
    no_expiry: bool,
    /// New not-before time.
    #[arg(long, conflicts_with = "clear_not_before")]
    not_before: Option<String>,
    /// Remove the not-before time.
    #[arg(long)]
    clear_not_before: bool,
    /// Replace the allowed networks (repeatable).
    #[arg(long = "allow-cidr", value_name = "CIDR", conflicts_with = "clear_cidrs")]
    allow_cidrs: Vec<String>,
    /// Allow every network.
    #[arg(long)]
    clear_cidrs: bool,
    /// New rate limit.
    #[arg(long, conflicts_with = "clear_rate_limit")]
    rate_limit: Option<String>,
    /// Remove the rate limit.
    #[arg(long)]
    clear_rate_limit: bool,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// List events, newest first (--format json or csv for every field, including ids).
    Query(QueryArgs),
    /// Count events, grouped: allowed, denied, distinct addresses, bytes.
    Stats {
        /// token, owner, route, resource, reason, decision, source_ip, network, hour or day.
        #[arg(long)]
        group_by: String,
        #[command(flatten)]
        filters: Filters,
        /// How many groups (default 100).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Explain why a request was allowed or denied, and what would fix it.
    Explain {
        /// The event id (from the response's Tokentrail-Event-Id or a problem's event_id).
        event_id: String,
    },
    /// Show the latest events; with -f, keep printing new ones as they are recorded.
    Tail {
        #[command(flatten)]
        filters: Filters,
        /// Keep following.
        #[arg(short, long)]
        follow: bool,
        /// How many recent events to show first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u32,
    },
    /// Stream every matching event, oldest first, as NDJSON or CSV (constant memory).
    Export {
        #[command(flatten)]
        filters: Filters,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Verify a ledger offline: every event, every stored checkpoint, and checkpoints kept elsewhere.
    Verify(VerifyArgs),
    /// Prove that an event is in the log, checked against a signed checkpoint.
    Prove {
        /// The event id.
        event_id: String,
        /// The verifier key to trust (from `tokentrail audit key`, saved elsewhere); without it the
        /// server's own key is used, which proves consistency but not authenticity.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
    /// Print the verifier key of the log's checkpoints (name+keyid+base64).
    Key {
        /// Read it from this data directory instead of asking the server.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Print the latest signed checkpoint; save it outside the server to detect truncation later.
    Checkpoint {
        /// Sign a checkpoint of the current log first.
        #[arg(long)]
        now: bool,
    },
    /// Erase personal values (owner, address, user agent, path, details) of matching events.
    Erase {
        /// Every event whose owner is this.
        #[arg(long, conflicts_with = "source_ip", required_unless_present = "source_ip")]
        owner: Option<String>,
        /// Every event from this address.
        #[arg(long)]
        source_ip: Option<String>,
    },
}

#[derive(Args)]
struct VerifyArgs {
    /// The data directory to verify (the server may be running).
    #[arg(long, value_name = "DIR", default_value = "./tokentrail-data")]
    data_dir: PathBuf,
    /// A signed checkpoint saved outside the data directory (repeatable); detects truncation and rollback.
    #[arg(long = "checkpoint", value_name = "FILE")]
    checkpoints: Vec<PathBuf>,
    /// The verifier key to trust; default: the data directory's own signing key.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
}

#[derive(Args)]
struct QueryArgs {
    #[command(flatten)]
    filters: Filters,
    /// asc or desc (default).
    #[arg(long)]
    order: Option<String>,
    /// How many (1-1000, default 100).
    #[arg(long)]
    limit: Option<u32>,
    /// Continue from a previous page's cursor.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Subcommand)]
enum ReportCmd {
    /// Granted versus used scopes per token, with recommendations and their evidence.
    LeastPrivilege {
        /// The window of observed use (default 90d).
        #[arg(long)]
        window: Option<String>,
        /// Only this owner's tokens.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Each token with its grants, use and recommendation, for an owner to confirm or revoke.
    AccessReview {
        /// Only this owner's tokens.
        #[arg(long)]
        owner: Option<String>,
    },
    /// A period's evidence for auditors: --format html (one self-contained file), json or csv.
    Compliance {
        /// Period start: a date (2026-11-01) or an RFC 3339 time.
        #[arg(long)]
        from: String,
        /// Period end, exclusive (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum FindingsCmd {
    /// List findings, newest first.
    List {
        /// Finding type (off_hours, brute_force, …).
        #[arg(long = "type")]
        kind: Option<String>,
        /// This severity or higher.
        #[arg(long)]
        severity: Option<String>,
        /// open, acknowledged or resolved.
        #[arg(long)]
        status: Option<String>,
        /// Findings of this token.
        #[arg(long = "token", value_name = "ID")]
        token_id: Option<String>,
        /// Active since (RFC 3339 or 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// How many (1-1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue from a previous page's cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one finding with its evidence.
    Show {
        /// Finding id.
        id: String,
    },
    /// Acknowledge a finding.
    Ack {
        /// Finding id.
        id: String,
        /// What you are doing about it.
        #[arg(long)]
        comment: String,
    },
    /// Resolve a finding.
    Resolve {
        /// Finding id.
        id: String,
        /// How it was resolved.
        #[arg(long)]
        comment: String,
    },
}

#[derive(Args)]
struct IngestArgs {
    /// NDJSON files (one event per line).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Write directly into this data directory (the server must be stopped).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Skip bad lines (they are listed) instead of failing.
    #[arg(long)]
    skip_invalid: bool,
}

#[derive(Subcommand)]
enum DebugCmd {
    /// Append events from concurrent writers until killed, printing `ack <seq> <event id>` once
    /// each is durable and `checkpoint <size>` after each signed checkpoint (for crash tests).
    AppendLoad {
        /// The data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Concurrent writers.
        #[arg(long, default_value_t = 4)]
        writers: usize,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check a configuration file; every problem is listed.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tokentrail", &mut buf);
            print(&String::from_utf8_lossy(&buf))
        }
        Command::Config(ConfigCmd::Check { file }) => match config::check_file(&file) {
            Ok(_) => print(&format!("{}: ok\n", file.display())),
            Err(errors) => Err(anyhow!("{} is not a valid configuration:\n{errors}", file.display())),
        },
        Command::Token(cmd) => client_command(&cli.global, |client, format| Box::pin(token(client, format, cmd))),
        Command::Detect { input, config } => detect_offline(&input, config.as_deref(), cli.global.format),
        Command::Report(cmd) => client_command(&cli.global, |client, format| Box::pin(report(client, format, cmd))),
        Command::Findings(cmd) => client_command(&cli.global, |client, format| Box::pin(findings(client, format, cmd))),
        Command::Ingest(args) if args.data_dir.is_some() => ingest_offline(&args),
        Command::Ingest(args) => {
            client_command(&cli.global, |client, format| Box::pin(ingest_online(client, format, args)))
        }
        Command::Debug(DebugCmd::AppendLoad { data_dir, writers }) => append_load(&data_dir, writers),
        Command::Audit(AuditCmd::Verify(args)) => verify(args),
        Command::Audit(AuditCmd::Key { data_dir: Some(dir) }) => {
            let signer = read_signer(&dir)?;
            print(&format!("{}\n", signer.verifier()))
        }
        Command::Audit(cmd) => client_command(&cli.global, |client, format| Box::pin(audit(client, format, cmd))),
    }
}

type BoxFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;

fn client_command(global: &Global, f: impl for<'a> FnOnce(&'a Client, Format) -> BoxFuture<'a>) -> anyhow::Result<()> {
    let token = admin_token(global)?;
    let client = Client::new(&global.addr, token).map_err(|e| anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    rt.block_on(f(&client, global.format))
}

fn admin_token(global: &Global) -> anyhow::Result<Option<String>> {
    let read = |p: &Path| -> anyhow::Result<String> {
        let s = std::fs::read_to_string(p).with_context(|| format!("cannot read the token file {}", p.display()))?;
        Ok(s.trim().to_owned())
    };
    if let Some(p) = &global.token_file {
        return read(p).map(Some);
    }
    if let Ok(t) = std::env::var("TOKENTRAIL_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_owned()));
    }
    let local = Path::new("tokentrail-data/admin.token");
    if local.is_file() {
        return read(local).map(Some);
    }
    Ok(None)
}

fn api(e: ClientError) -> anyhow::Error {
    anyhow!("{e}")
}

fn token_rows(tokens: &[TokenView]) -> Vec<Vec<String>> {
    tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.owner.clone(),
                t.state.clone(),
                t.scopes.join(" "),
                t.expires_at.as_deref().map_or_else(|| "never".to_owned(), |e| output::date(Some(e))),
            ]
        })
        .collect()
}

const TOKEN_HEADERS: [&str; 6] = ["ID", "NAME", "OWNER", "STATE", "SCOPES", "EXPIRES"];

fn token_pairs(t: &TokenView) -> Vec<(&'static str, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut p = vec![
        ("id", t.id.clone()),
        ("name", t.name.clone()),
        ("owner", t.owner.clone()),
        ("state", t.state.clone()),
        ("scopes", t.scopes.join(" ")),
        ("description", t.description.clone()),
        ("labels", if labels.is_empty() { "-".to_owned() } else { labels.join(" ") }),
        ("created_at", format!("{} by {}", t.created_at, t.created_by)),
        ("updated_at", t.updated_at.clone()),
        ("expires_at", t.expires_at.clone().unwrap_or_else(|| "never".to_owned())),
        ("not_before", opt(&t.not_before)),
        ("allowed_cidrs", if t.allowed_cidrs.is_empty() { "any".to_owned() } else { t.allowed_cidrs.join(" ") }),
        ("rate_limit", opt(&t.rate_limit)),
        ("last_used_at", opt(&t.last_used_at)),
        ("secret_created_at", t.secret_created_at.clone()),
    ];
    if !t.shadow_scopes.is_empty() {
        p.push(("shadow_scopes", t.shadow_scopes.join(" ")));
    }
    if let Some(u) = &t.previous_secret_valid_until {
        p.push(("previous_secret_valid_until", u.clone()));
    }
    if let Some(at) = &t.revoked_at {
        p.push(("revoked_at", format!("{at} by {}", t.revoked_by.as_deref().unwrap_or("-"))));
        p.push(("revoke_reason", opt(&t.revoke_reason)));
    }
    p
}

fn show_token(t: &TokenView, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Ndjson => print(&output::json(t)),
        Format::Table | Format::Html => print(&output::pairs(&token_pairs(t))),
        Format::Csv => print(&output::csv(&TOKEN_HEADERS, &token_rows(std::slice::from_ref(t)))),
    }
}

fn show_issued(issued: &IssuedToken, format: Format, verb: &str) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Ndjson => print(&output::json(issued)),
        Format::Table | Format::Html | Format::Csv => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "Token {verb}. Copy it now: it is shown only once.");
            print(&format!("{}\n", issued.token))?;
            let _ = writeln!(err, "\n{}", output::pairs(&token_pairs(&issued.details)).trim_end());
            Ok(())
        }
    }
}

async fn token(client: &Client, format: Format, cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create(a) => {
            let req = CreateTokenRequest {
                name: a.name,
                owner: a.owner,
                description: a.description,
                labels: a.labels.into_iter().collect(),
                scopes: a.scopes,
                expires_at: a.expires_at,
                expires_in: a.expires_in,
                no_expiry: a.no_expiry,
                not_before: a.not_before,
                allowed_cidrs: a.allow_cidrs,
                rate_limit: a.rate_limit,
            };
            let issued = client.create_token(&req).await.map_err(api)?;
            show_issued(&issued, format, "created")
        }
        TokenCmd::List(a) => {
            let q = query(&[
                ("owner", a.owner),
                ("scope", a.scope),
                ("state", a.state),
                ("label", a.label),
                ("limit", a.limit.map(|l| l.to_string())),
                ("cursor", a.cursor),
            ]);
            let list = client.list_tokens(&q).await.map_err(api)?;
            match format {
                Format::Json | Format::Ndjson => print(&output::json(&list)),
                Format::Csv => print(&output::csv(&TOKEN_HEADERS, &token_rows(&list.tokens))),
                Format::Table | Format::Html => {
                    print(&output::table(&TOKEN_HEADERS, &token_rows(&list.tokens), 80, &["ID"]))?;
                    if let Some(c) = &list.next_cursor {
                        let _ = writeln!(std::io::stderr(), "more tokens: add --cursor {c}");
                    }
                    Ok(())
                }
            }
        }
        TokenCmd::Show { id } => show_token(&client.get_token(&id).await.map_err(api)?, format),
        TokenCmd::Activity { id, since } => investigate::run_activity(client, format, &id, since).await,
        TokenCmd::Narrow { id, to, what_if, shadow, apply, window } => {
            let body = proto::NarrowRequest { to, what_if, shadow, apply, window };
            let path = format!("/v1/tokens/{}/narrow", cli::client::encode(&id));
            if what_if {
                let w: proto::WhatIf = client.call(hyper::Method::POST, &path, Some(&body)).await.map_err(api)?;
                return match format {
                    Format::Json | Format::Ndjson => print(&output::json(&w)),
                    _ => {
                        let mut out = format!(
                            "{} of {} recorded requests in the last {} days would have been denied with [{}]\n",
                            w.would_deny,
                            w.considered,
                            w.window_days,
                            w.proposed.join(" ")
                        );
                        let rows: Vec<Vec<String>> =
                            w.by_route.iter().map(|(r, n)| vec![r.clone(), n.to_string()]).collect();
                        if !rows.is_empty() {
                            out += &output::table(&["ROUTE", "WOULD DENY"], &rows, 80, &[]);
                        }
                        print(&out)
                    }
                };
            }
            let t: TokenView = client.call(hyper::Method::POST, &path, Some(&body)).await.map_err(api)?;
            show_token(&t, format)
        }
        TokenCmd::Confirm { id, comment } => {
            let body = proto::ConfirmRequest { comment };
            let resp = client
                .send(
                    hyper::Method::POST,
                    &format!("/v1/tokens/{}/confirm", cli::client::encode(&id)),
                    Some(serde_json::to_vec(&body)?),
                    Some("application/json"),
                )
                .await
                .map_err(api)?;
            if !resp.status.is_success() {
                let p: proto::Problem =
                    serde_json::from_slice(&resp.body).map_err(|_| anyhow!("the server answered {}", resp.status))?;
                return Err(api(ClientError::Problem(resp.status, Box::new(p))));
            }
            print(&format!("confirmed token {id}\n"))
        }
        TokenCmd::Update(a) => {
            let req = UpdateTokenRequest {
                name: a.name,
                owner: a.owner,
                description: a.description,
                labels: if a.clear_labels {
                    Some(BTreeMap::new())
                } else if a.labels.is_empty() {
                    None
                } else {
                    Some(a.labels.into_iter().collect())
                },
                scopes: if a.scopes.is_empty() { None } else { Some(a.scopes) },
                expires_at: a.expires_at,
                expires_in: a.expires_in,
                no_expiry: a.no_expiry.then_some(true),
                not_before: if a.clear_not_before { Some(None) } else { a.not_before.map(Some) },
                allowed_cidrs: if a.clear_cidrs {
                    Some(Vec::new())
                } else if a.allow_cidrs.is_empty() {
                    None
                } else {
                    Some(a.allow_cidrs)
                },
                rate_limit: if a.clear_rate_limit { Some(None) } else { a.rate_limit.map(Some) },
            };
            show_token(&client.update_token(&a.id, &req).await.map_err(api)?, format)
        }
        TokenCmd::Revoke { id, reason } => show_token(&client.revoke_token(&id, &reason).await.map_err(api)?, format),
        TokenCmd::Rotate { id, grace } => {
            let issued = client.rotate_token(&id, grace).await.map_err(api)?;
            show_issued(&issued, format, "rotated")
        }
    }
}

const FINDING_HEADERS: [&str; 6] = ["ID", "TYPE", "SEVERITY", "STATUS", "LAST SEEN", "SUMMARY"];

fn finding_rows(findings: &[proto::FindingView]) -> Vec<Vec<String>> {
    findings
        .iter()
        .map(|f| {
            vec![
                f.id.clone(),
                f.kind.clone(),
                f.severity.clone(),
                f.status.clone(),
                output::seconds(&f.last_seen),
                f.summary.clone(),
            ]
        })
        .collect()
}

fn show_findings(findings: &[proto::FindingView], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Ndjson => print(&output::json(&findings)),
        Format::Csv => print(&output::csv(&FINDING_HEADERS, &finding_rows(findings))),
        Format::Table | Format::Html => {
            if findings.is_empty() {
                return print("no findings\n");
            }
            // ID, type and severity are what one acts on; the summary is shown in full below each.
            let mut out = String::new();
            for f in findings {
                out +=
                    &format!("{}  {}  {}  {}  {}\n", f.id, f.severity, f.kind, f.status, output::seconds(&f.last_seen));
                for line in output::wrap(&f.summary, 76) {
                    out += &format!("    {line}\n");
                }
            }
            print(&out)
        }
    }
}

fn show_finding(f: &proto::FindingView, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Ndjson => print(&output::json(f)),
        Format::Csv => print(&output::csv(&FINDING_HEADERS, &finding_rows(std::slice::from_ref(f)))),
        Format::Table | Format::Html => {
            let mut items = vec![
                ("id", f.id.clone()),
                ("type", f.kind.clone()),
                ("severity", f.severity.clone()),
                ("status", f.status.clone()),
                ("summary", f.summary.clone()),
                ("token", f.token_id.clone().unwrap_or_else(|| "-".into())),
                ("source_ip", f.source_ip.clone().unwrap_or_else(|| "-".into())),
                ("first_seen", f.first_seen.clone()),
                ("last_seen", f.last_seen.clone()),
                ("events", f.event_count.to_string()),
                ("evidence", f.evidence_event_ids.join(" ")),
            ];
            for (k, v) in &f.details {
                items.push(("detail", format!("{k} = {v}")));
            }
            if let Some(c) = &f.comment {
                items.push(("comment", c.clone()));
            }
            print(&output::pairs(&items))
        }
    }
}

async fn findings(client: &Client, format: Format, cmd: FindingsCmd) -> anyhow::Result<()> {
    match cmd {
        FindingsCmd::List { kind, severity, status, token_id, since, limit, cursor } => {
            let q = query(&[
                ("type", kind),
                ("severity", severity),
                ("status", status),
                ("token_id", token_id),
                ("since", since),
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor),
            ]);
            let list: proto::FindingList =
                client.call(hyper::Method::GET, &format!("/v1/findings{q}"), None::<&()>).await.map_err(api)?;
            if matches!(format, Format::Json | Format::Ndjson) {
                return print(&output::json(&list));
            }
            show_findings(&list.findings, format)?;
            if let Some(c) = &list.next_cursor {
                let _ = writeln!(std::io::stderr(), "more findings: add --cursor {c}");
            }
            Ok(())
        }
        FindingsCmd::Show { id } => {
            let f: proto::FindingView = client
                .call(hyper::Method::GET, &format!("/v1/findings/{}", cli::client::encode(&id)), None::<&()>)
                .await
                .map_err(api)?;
            show_finding(&f, format)
        }
        FindingsCmd::Ack { id, comment } => {
            let body = proto::FindingComment { comment };
            let f: proto::FindingView = client
                .call(hyper::Method::POST, &format!("/v1/findings/{}/ack", cli::client::encode(&id)), Some(&body))
                .await
                .map_err(api)?;
            show_finding(&f, format)
        }
        FindingsCmd::Resolve { id, comment } => {
            let body = proto::FindingComment { comment };
            let f: proto::FindingView = client
                .call(hyper::Method::POST, &format!("/v1/findings/{}/resolve", cli::client::encode(&id)), Some(&body))
                .await
                .map_err(api)?;
            show_finding(&f, format)
        }
    }
}

async fn report(client: &Client, format: Format, cmd: ReportCmd) -> anyhow::Result<()> {
    match cmd {
        ReportCmd::LeastPrivilege { window, owner } => {
            let q = query(&[("window", window), ("owner", owner)]);
            let r: proto::LeastPrivilegeReport = client
                .call(hyper::Method::GET, &format!("/v1/reports/least-privilege{q}"), None::<&()>)
                .await
                .map_err(api)?;
            show_privilege(&r, format, false)
        }
        ReportCmd::AccessReview { owner } => {
            let q = query(&[("owner", owner)]);
            let r: proto::LeastPrivilegeReport = client
                .call(hyper::Method::GET, &format!("/v1/reports/access-review{q}"), None::<&()>)
                .await
                .map_err(api)?;
            show_privilege(&r, format, true)
        }
        ReportCmd::Compliance { from, to, out } => {
            // A table on a terminal is a summary; the report itself is a file (HTML by default).
            let summary = format == Format::Table && out.is_none();
            let fmt = match format {
                Format::Csv => "csv",
                Format::Json | Format::Ndjson => "json",
                Format::Table if summary => "json",
                Format::Html | Format::Table => "html",
            };
            let q = query(&[("from", Some(from)), ("to", to), ("format", Some(fmt.to_owned()))]);
            let resp = client
                .send(hyper::Method::GET, &format!("/v1/reports/compliance{q}"), None, None)
                .await
                .map_err(api)?;
            if !resp.status.is_success() {
                let p: proto::Problem =
                    serde_json::from_slice(&resp.body).map_err(|_| anyhow!("the server answered {}", resp.status))?;
                return Err(api(ClientError::Problem(resp.status, Box::new(p))));
            }
            if summary {
                let r: proto::ComplianceReport = serde_json::from_slice(&resp.body).context("the server's answer")?;
                return print(&compliance_summary(&r));
            }
            match out {
                Some(path) => {
                    std::fs::write(&path, &resp.body).with_context(|| format!("cannot write {}", path.display()))?;
                    let _ = writeln!(std::io::stderr(), "wrote {} ({} bytes)", path.display(), resp.body.len());
                    Ok(())
                }
                None => print(&String::from_utf8_lossy(&resp.body)),
            }
        }
    }
}

/// The compliance report's headline for a terminal, and how to get the whole report.
fn compliance_summary(r: &proto::ComplianceReport) -> String {
    let t = &r.totals;
    let i = &r.integrity;
    let rows = [
        ("period", format!("{} to {}", r.from, r.to)),
        ("requests", format!("{} ({} allowed, {} denied)", t.requests, t.allowed, t.denied)),
        ("tokens", t.tokens.to_string()),
        (
            "sensitive",
            format!("{} requests, {} outside business hours", t.sensitive_requests, t.off_hours_sensitive_requests),
        ),
        ("findings", t.findings.to_string()),
        ("admin changes", t.admin_changes.to_string()),
        ("reviews", r.reviews.len().to_string()),
        ("recommendations", r.least_privilege.recommendations.len().to_string()),
        ("integrity", format!("{} ({})", if i.verified { "verified" } else { "NOT VERIFIED" }, i.verification)),
    ];
    let mut out: String = rows.iter().map(|(k, v)| format!("{k:<16} {v}\n")).collect();
    out += "\nthe whole report: add --format html --out report.html (or --format json|csv)\n";
    out
}

fn show_privilege(r: &proto::LeastPrivilegeReport, format: Format, review: bool) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Ndjson => print(&output::json(r)),
        Format::Csv => {
            let rows: Vec<Vec<String>> = r
                .recommendations
                .iter()
                .map(|x| {
                    vec![
                        x.token_id.clone(),
                        x.kind.clone(),
                        x.from.join(" "),
                        x.to.clone().map(|t| t.join(" ")).unwrap_or_default(),
                        x.reason.clone(),
                        x.command.clone(),
                    ]
                })
                .collect();
            print(&output::csv(&["TOKEN", "KIND", "FROM", "TO", "REASON", "COMMAND"], &rows))
        }
        Format::Table | Format::Html => {
            let mut out = String::new();
            for t in &r.tokens {
                if !review && t.recommendations.is_empty() {
                    continue;
                }
                out += &format!("{}  {} ({}, {})\n", t.token_id, t.name, t.owner, t.state);
                out += &format!(
                    "    granted  {}\n    used     {}\n",
                    t.granted.join(" "),
                    if t.used.is_empty() { "-".into() } else { t.used.join(" ") }
                );
                if review {
                    out += &format!("    confirmed {}\n", t.confirmed_at.clone().unwrap_or_else(|| "never".into()));
                }
                for x in &t.recommendations {
                    for (i, line) in output::wrap(&format!("{}: {}", x.kind, x.reason), 72).into_iter().enumerate() {
                        out += &format!("    {}{line}\n", if i == 0 { "→ " } else { "  " });
                    }
                    out += &format!("      $ {}\n", x.command);
                }
                if review && t.recommendations.is_empty() {
                    let verdict = if t.used.is_empty() { "not used in the window yet" } else { "fits its use" };
                    out += &format!("    → {verdict}; confirm with: tokentrail token confirm {}\n", t.token_id);
                }
            }
            if out.is_empty() {
                out = format!("every token's grants fit its use over the last {} days\n", r.window_days);
            }
            print(&out)
        }
    }
}

fn detect_offline(input: &Path, config_file: Option<&Path>, format: Format) -> anyhow::Result<()> {
    use cli::offline::{self, BadLine};
    let config = match config_file {
        Some(f) => config::check_file(f).map_err(|e| anyhow!("{} is not a valid configuration:\n{e}", f.display()))?,
        None => config::Config::default(),
    };
    let detect_config = server::detect_config(&config)?;
    let open = || -> anyhow::Result<_> {
        let file = std::fs::File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        Ok((file, regular))
    };
    let bad = |b: BadLine| match b {
        BadLine::Unreadable(n, e) => {
            anyhow::Error::new(e).context(format!("{}: cannot read line {n}", input.display()))
        }
        BadLine::Invalid(n, m) => anyhow!("{}: line {n}: {m}", input.display()),
    };
    // A regular file can be read twice: streamed first, sorted whole only if it is out of order.
    let (file, regular) = open()?;
    let found = if regular {
        match offline::stream(file, &detect_config, offline::WINDOW).map_err(bad)? {
            Some(found) => found,
            None => offline::whole(open()?.0, &detect_config).map_err(bad)?,
        }
    } else {
        offline::whole(file, &detect_config).map_err(bad)?
    };
    let findings: Vec<proto::FindingView> =
        found.iter().map(|f| server::views::finding_view(&engine::detection::record_of(f))).collect();
    match format {
        Format::Ndjson => print(&findings.iter().map(|f| format!("{}\n", proto::to_json(f))).collect::<String>()),
        other => show_findings(&findings, other),
    }
}

fn progress_line(what: &str, n: u64) {
    use std::io::IsTerminal as _;
    if std::io::stderr().is_terminal() {
        let _ = write!(std::io::stderr(), "\r{what} {n} lines");
    }
}

fn report_ingest(r: &proto::IngestResult, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Ndjson => print(&output::json(r)),
        _ => {
            for e in &r.errors {
                let _ = writeln!(std::io::stderr(), "skipped line {}: {}", e.line, e.message);
            }
            let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
            print(&format!(
                "ingested {} ({} skipped)\n",
                plural(r.ingested, "event", "events"),
                plural(r.skipped, "line", "lines")
            ))
        }
    }
}

fn invalid_lines(file: &Path, errors: &[proto::LineError], total: usize) -> anyhow::Error {
    let lines = if total == 1 { "line" } else { "lines" };
    let mut msg = format!("{}: {total} bad {lines}; nothing was ingested (--skip-invalid skips them)", file.display());
    for e in errors.iter().take(20) {
        msg += &format!("\n  line {}: {}", e.line, e.message);
    }
    if total > 20 {
        msg += &format!("\n  … and {} more", total - 20);
    }
    anyhow!(msg)
}

fn ingest_offline(args: &IngestArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    let dir = args.data_dir.as_deref().ok_or_else(|| anyhow!("--data-dir is required"))?;
    let (engine, _) = engine::Engine::open(dir, engine::Settings::default(), Arc::new(engine::SystemClock))
        .map_err(|e| anyhow!("{e}"))?;
    let open = |file: &Path| -> Result<std::io::BufReader<std::fs::File>, String> {
        std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))
    };
    // One pass and one transaction over every file: a bad line anywhere leaves the ledger as it
    // was (the server is stopped, so nothing else waits for the transaction).
    let inputs = args.files.iter().map(|f| open(f)).collect::<Result<Vec<_>, _>>().map_err(|e| anyhow!(e))?;
    // About how many events the files hold (an event's line is some 600 bytes), so that a load
    // larger than the ledger is indexed at the end.
    let expected = args.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len() / 600).sum();
    let mut new_id = || engine::event_id(engine.now()).map_err(|e| e.to_string());
    let options = server::ingest::Options { skip_invalid: args.skip_invalid };
    let total = server::ingest::ingest_exclusive(inputs, expected, engine.store(), options, &mut new_id, &mut |n| {
        progress_line("ingested", n)
    })
    .map_err(|(k, failure)| {
        let file = k.and_then(|k| args.files.get(k));
        match (failure, file) {
            (server::ingest::IngestFailure::Invalid { errors, total }, Some(file)) => {
                invalid_lines(file, &errors, total)
            }
            (server::ingest::IngestFailure::Invalid { total, .. }, None) => {
                anyhow!("{total} bad lines; nothing was ingested")
            }
            (server::ingest::IngestFailure::Io(m), Some(file)) => {
                anyhow!("{}: {m}; nothing was ingested", file.display())
            }
            (server::ingest::IngestFailure::Io(m), None) => anyhow!("{m}; nothing was ingested"),
        }
    })?;
    progress_line("done:", 0);
    engine.checkpoint().map_err(|e| anyhow!("{e}"))?;
    report_ingest(&total, Format::Table)
}

async fn ingest_online(client: &Client, format: Format, args: IngestArgs) -> anyhow::Result<()> {
    let mut total = proto::IngestResult { ingested: 0, skipped: 0, errors: Vec::new() };
    let mut bodies = Vec::new();
    for file in &args.files {
        bodies.push(std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?);
    }
    let skip = if args.skip_invalid { "&skip_invalid=true" } else { "" };
    // Every file is checked (dry run) before any is sent for real.
    for dry in [true, false] {
        for (file, body) in args.files.iter().zip(&bodies) {
            let q = format!("?dry_run={dry}{skip}");
            let resp = client
                .send(
                    hyper::Method::POST,
                    &format!("/v1/audit/ingest{q}"),
                    Some(body.clone()),
                    Some("application/x-ndjson"),
                )
                .await
                .map_err(api)?;
            if !resp.status.is_success() {
                let p: proto::Problem = serde_json::from_slice(&resp.body)
                    .map_err(|_| anyhow!("the server answered {} to the ingest of {}", resp.status, file.display()))?;
                let lines: Vec<proto::LineError> = p
                    .errors
                    .iter()
                    .map(|e| proto::LineError {
                        line: e.field.trim_start_matches("line ").parse().unwrap_or(0),
                        message: e.message.clone(),
                    })
                    .collect();
                if lines.is_empty() {
                    return Err(api(ClientError::Problem(resp.status, Box::new(p))));
                }
                let n = lines.len();
                return Err(invalid_lines(file, &lines, n));
            }
            if !dry {
                let r: proto::IngestResult = serde_json::from_slice(&resp.body).context("the server's answer")?;
                total.ingested += r.ingested;
                total.skipped += r.skipped;
                total.errors.extend(r.errors);
            }
        }
    }
    report_ingest(&total, format)
}

fn append_load(dir: &Path, writers: usize) -> anyhow::Result<()> {
    use std::sync::{Arc, Mutex};
    let (engine, _) = engine::Engine::open(dir, engine::Settings::default(), Arc::new(engine::SystemClock))
        .map_err(|e| anyhow!("{e}"))?;
    let engine = Arc::new(engine);
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let say = |out: &Mutex<std::io::Stdout>, line: String| {
        let mut o = out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (engine, out) = (engine.clone(), out.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                for i in 0u64.. {
                    let now = engine.now();
                    let mut e = ledger::event::Event::new(
                        engine::event_id(now).map_err(|e| anyhow!("{e}"))?,
                        now,
                        ledger::event::Kind::Access,
                        "gateway",
                        token::Reason::Ok,
                    );
                    e.owner = Some(format!("writer-{w}"));
                    e.source_ip = Some(format!("10.0.{w}.{}", i % 250));
                    e.path = Some(format!("/v1/orders/{i}"));
                    let id = e.id.clone();
                    let seq = engine.record_blocking(e).map_err(|e| anyhow!("{e}"))?;
                    say(&out, format!("ack {} {id}", seq.unwrap_or(u64::MAX)));
                }
                Ok(())
            })
        })
        .collect();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if let Some(cp) = engine.checkpoint().map_err(|e| anyhow!("{e}"))? {
            say(&out, format!("checkpoint {}", cp.size));
        }
        if threads.iter().any(std::thread::JoinHandle::is_finished) {
            return Err(anyhow!("a writer stopped"));
        }
    }
}

fn read_signer(dir: &Path) -> anyhow::Result<ledger::note::Signer> {
    let path = engine::DataDir::new(dir).signing_key();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read the signing key {}", path.display()))?;
    ledger::note::Signer::parse(text.trim()).map_err(|e| anyhow!("{} is not a signing key: {e}", path.display()))
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let data = engine::DataDir::new(&args.data_dir);
    if !data.database().is_file() {
        return Err(anyhow!("{} holds no tokentrail database", args.data_dir.display()));
    }
    let trusted = match &args.key {
        Some(k) => ledger::note::Verifier::parse(k.trim()).map_err(|e| anyhow!("--key is not a verifier key: {e}"))?,
        None => {
            let v = read_signer(&args.data_dir)?.verifier();
            let _ = writeln!(
                std::io::stderr(),
                "note: trusting the signing key in {}; pass --key with the verifier key kept elsewhere for an independent check",
                args.data_dir.display()
            );
            v
        }
    };
    let mut external = Vec::new();
    for path in &args.checkpoints {
        let note =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
        external.push(engine::verify::ExternalCheckpoint { label: path.display().to_string(), note });
    }
    let store = store::SqliteStore::open(&data.database()).map_err(|e| anyhow!("cannot open the database: {e}"))?;
    let terminal = std::io::stderr().is_terminal();
    let mut last_shown = 0u64;
    let mut progress = |done: u64, total: u64| {
        if terminal && (done - last_shown >= 100_000 || done == total) {
            last_shown = done;
            let _ = write!(std::io::stderr(), "\rverifying: {done}/{total} events ({}%)", done * 100 / total.max(1));
        }
    };
    let result = engine::verify::verify(&store, &[trusted], &external, &mut progress);
    if terminal && last_shown > 0 {
        let _ = writeln!(std::io::stderr());
    }
    match result {
        Ok(v) => {
            use base64::Engine as _;
            print(&format!(
                "ok: {} events ({} erased), {} stored checkpoints, {} external checkpoints; root {}\n",
                v.events,
                v.erased,
                v.checkpoints,
                v.external,
                base64::engine::general_purpose::STANDARD.encode(v.root)
            ))
        }
        Err(f) => Err(anyhow!("the ledger does not verify: {f}")),
    }
}

async fn prove(client: &Client, event_id: &str, key: Option<String>) -> anyhow::Result<()> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    let decode = |s: &str| -> anyhow::Result<ledger::merkle::Hash> {
        B64.decode(s).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| anyhow!("the server sent a malformed hash"))
    };
    let event = client.get_event(event_id).await.map_err(api)?;
    let index = event.seq.ok_or_else(|| anyhow!("the event has no position"))?;
    let (key_text, independent) = match key {
        Some(k) => (k, true),
        None => (client.text(hyper::Method::GET, "/v1/audit/key").await.map_err(api)?, false),
    };
    let verifier = ledger::note::Verifier::parse(key_text.trim()).map_err(|e| anyhow!("not a verifier key: {e}"))?;
    let mut note = client.text(hyper::Method::GET, "/v1/audit/checkpoint").await.map_err(api)?;
    let mut cp = ledger::checkpoint::open_checkpoint(&note, verifier.name(), std::slice::from_ref(&verifier))
        .map_err(|e| anyhow!("the checkpoint does not verify with the key: {e}"))?;
    if cp.size() <= index {
        note = client.text(hyper::Method::POST, "/v1/audit/checkpoint").await.map_err(api)?;
        cp = ledger::checkpoint::open_checkpoint(&note, verifier.name(), std::slice::from_ref(&verifier))
            .map_err(|e| anyhow!("the checkpoint does not verify with the key: {e}"))?;
    }
    let proof = client.proof(event_id, Some(cp.size())).await.map_err(api)?;
    let leaf = client.leaf(event_id).await.map_err(api)?;
    let leaf_bytes = B64.decode(&leaf.leaf).map_err(|_| anyhow!("the server sent a malformed leaf"))?;
    let leaf_hash = ledger::merkle::leaf_hash(&leaf_bytes);
    if leaf_hash != decode(&proof.leaf_hash)? || proof.index != index || leaf.index != index {
        return Err(anyhow!("the server's leaf does not match its proof"));
    }
    let hashes: Vec<ledger::merkle::Hash> = proof.hashes.iter().map(|h| decode(h)).collect::<anyhow::Result<_>>()?;
    ledger::merkle::verify_inclusion(index, cp.size(), &leaf_hash, &hashes, cp.root())
        .map_err(|e| anyhow!("the inclusion proof does not verify: {e}"))?;
    let mut out = format!(
        "event {event_id} is at position {index} of the log {}\ncheckpoint: size {}, signature by {} verified\ninclusion proof: {} hashes, verified against the checkpoint's root\n",
        cp.origin(),
        cp.size(),
        verifier,
        hashes.len()
    );
    if !independent {
        out.push_str("note: the key came from the server itself; pass --key with a copy kept elsewhere for an independent check\n");
    }
    print(&out)
}

async fn audit(client: &Client, format: Format, cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Verify(_) => Err(anyhow!("verify runs offline")),
        AuditCmd::Prove { event_id, key } => prove(client, &event_id, key).await,
        AuditCmd::Key { .. } => print(&client.text(hyper::Method::GET, "/v1/audit/key").await.map_err(api)?),
        AuditCmd::Checkpoint { now } => {
            let method = if now { hyper::Method::POST } else { hyper::Method::GET };
            print(&client.text(method, "/v1/audit/checkpoint").await.map_err(api)?)
        }
        AuditCmd::Erase { owner, source_ip } => {
            let r = client.erase(&proto::EraseRequest { owner, source_ip }).await.map_err(api)?;
            match format {
                Format::Json | Format::Ndjson => print(&output::json(&r)),
                _ => print(&format!("erased the personal values of {} events\n", r.erased)),
            }
        }
        AuditCmd::Query(a) => investigate::run_query(client, format, &a.filters, a.order, a.limit, a.cursor).await,
        AuditCmd::Stats { group_by, filters, limit } => {
            investigate::run_stats(client, format, &filters, &group_by, limit).await
        }
        AuditCmd::Explain { event_id } => investigate::run_explain(client, format, &event_id).await,
        AuditCmd::Tail { filters, follow, lines } => {
            investigate::run_tail(client, format, &filters, lines, follow).await
        }
        AuditCmd::Export { filters, out } => {
            let csv = match format {
                Format::Csv => true,
                Format::Json | Format::Ndjson | Format::Table | Format::Html => false,
            };
            investigate::run_export(client, &filters, csv, out.as_deref()).await
        }
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.to_string_lossy().into_owned();
            k.starts_with(config::ENV_PREFIX).then(|| (k, v.to_string_lossy().into_owned()))
        })
        .collect();
    let mut flags: Vec<(&str, String)> = Vec::new();
    if let Some(d) = args.data_dir {
        flags.push(("data_dir", d.to_string_lossy().into_owned()));
    }
    if let Some(l) = args.listen {
        flags.push(("listen", l));
    }
    if let Some(f) = args.log_format {
        flags.push(("log.format", f));
    }
    if let Some(l) = args.log_level {
        flags.push(("log.level", l));
    }
    if let Some(n) = args.node {
        flags.push(("node", n));
    }
    if let Some(p) = args.policy {
        flags.push(("policy", p.to_string_lossy().into_owned()));
    }
    if let Some(u) = args.upstream {
        flags.push(("gateway.upstream", u));
    }
    if let Some(l) = args.gateway_listen {
        flags.push(("gateway.listen", l));
    }
    let config = config::load(args.config.as_deref(), &env, &flags, config::Defaults { hostname: hostname() })
        .map_err(|errors| anyhow!("invalid configuration:\n{errors}"))?;
    server::init_logging(config.log.format, &config.log.level)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    rt.block_on(async move {
        let mut running = server::start_with(&config, args.debug_fail_writes_while).await?;
        tokio::select! {
            () = server::shutdown_signal() => running.stop().await,
            r = running.wait() => r,
        }
    })
}
