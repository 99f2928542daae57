//! The configuration schema: the [`Config`] struct, its defaults, the registry of keys and the
//! rules that relate keys to each other. This file is the one place to edit to add a key.
//!
//! # Adding a key
//! 1. Add the field, with a doc comment that states its default, to the struct of its section
//!    (add a section struct and a field on [`Config`] for a new section).
//! 2. Give it its default in [`Config::defaults`].
//! 3. Add one line to the `keys!` invocation: `"section.key" => section.key;` (or
//!    `"section.key" => section.key, check = some_fn;` if the key has a range or shape rule
//!    beyond its type; `some_fn` takes the parsed value and returns `Result<(), String>`).
//!    The environment variable and flag names are derived from the path. A field of a new type
//!    needs an implementation of `value::Value`.
//! 4. Document it in `docs/config.example.toml` and `docs/configuration.md`; the crate's tests
//!    fail until both mention it.
//!
//! Rules that involve more than one key go in [`cross_checks`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ErrorKind;
use crate::value::{Input, Problem, Value};

/// tokentrail's whole configuration, after file, environment, flags and validation.
///
/// Every field has a default, so [`Config::defaults`] is a working configuration on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `data_dir`: where the embedded store, the signing key, the hashing pepper and the
    /// bootstrap admin token live. Default `./tokentrail-data`, relative to the working directory.
    pub data_dir: PathBuf,
    /// `listen`: address of the admin API. Default `127.0.0.1:8720`.
    pub listen: SocketAddr,
    /// `node`: this node's name, recorded in every event. Default: the hostname the caller passes
    /// in [`Defaults`], or `local`.
    pub node: String,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[tokens]`: token format and lifetimes.
    pub tokens: TokenConfig,
    /// `[limits]`: request limits.
    pub limits: LimitsConfig,
    /// `[ledger]`: the audit ledger.
    pub ledger: LedgerConfig,
    /// `policy`: the route policy file (TOML, docs/policy.md). Default: none, so every request
    /// through the gateway, `/v1/verify` with a method and path, or `/v1/authz` is denied
    /// `route_not_found`.
    pub policy: Option<PathBuf>,
    /// `[gateway]`: the reverse proxy in front of an API.
    pub gateway: GatewayConfig,
    /// `[detect]`: the detectors (docs/detectors.md).
    pub detect: DetectSection,
    /// `[alerts]`: where findings are sent.
    pub alerts: AlertsConfig,
    /// `[reports]`: least-privilege analysis and compliance reports.
    pub reports: ReportsConfig,
}

/// The `[reports]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportsConfig {
    /// `reports.window`: the window of observed use for least-privilege analysis. Default `90d`.
    pub window: Duration,
    /// `reports.unused_for`: a token unused this long is recommended for revocation. Default `30d`.
    pub unused_for: Duration,
    /// `reports.max_secret_age`: a secret older than this is recommended for rotation. Default `90d`.
    pub max_secret_age: Duration,
}

/// The `[detect]` section (every value documented in docs/detectors.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectSection {
    /// `detect.enabled`: run the detectors on the live server. Default true.
    pub enabled: bool,
    /// `detect.replay_days`: days of ledger replayed at start to rebuild baselines. Default 35.
    pub replay_days: u64,
    /// `detect.max_keys`: most keys (tokens, networks) one detector tracks. Default 100000.
    pub max_keys: u64,
    /// `detect.min_history_events`: events before a token's own baseline counts. Default 100.
    pub min_history_events: u64,
    /// `detect.min_history_days`: days before a token's own baseline counts. Default 7.
    pub min_history_days: u64,
    /// `detect.trusted_networks`: networks never reported as new or concurrent. Default none.
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// `detect.off_hours_sensitive_only`: report off-hours access to sensitive routes only. Default true.
    pub off_hours_sensitive_only: bool,
    /// `detect.business_hours`: hours for tokens without history, `Mon-Fri 07-20`. Default that.
    pub business_hours: String,
    /// `detect.timezone`: the IANA time zone of the business hours. Default `UTC`.
    pub timezone: String,
    /// `detect.brute_force_threshold`: bad credentials from one network in 5 minutes. Default 20.
    pub brute_force_threshold: u64,
    /// `detect.dormant_days`: silence before a use is a reactivation. Default 30.
    pub dormant_days: u64,
    /// `detect.enumeration_min_ids`: distinct ids on a route in 5 minutes. Default 50.
    pub enumeration_min_ids: u64,
    /// `detect.volume_min_requests`: requests in 5 minutes before a spike counts. Default 200.
    pub volume_min_requests: u64,
    /// `detect.off_hours_evening_margin_hours`: hours after a token's usual hours that still count
    /// as usual (the morning allows 2). Default 3.
    pub off_hours_evening_margin_hours: u64,
    /// `detect.new_network_back_and_forth`: a token that leaves a network and uses it again within
    /// this time, using a new one in between, is reported for the new one. Default `4h`.
    pub new_network_back_and_forth: Duration,
    /// `detect.new_network_quiet_days`: a token gets at most one new network held without a report
    /// in this many days; 0 holds none (every new network is reported). Default 30.
    pub new_network_quiet_days: u64,
}

/// The `[alerts]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertsConfig {
    /// `alerts.webhook_url`: POST each finding as JSON here (Standard Webhooks signatures). Default none.
    pub webhook_url: Option<String>,
    /// `alerts.webhook_secret`: the signing secret (`whsec_…` base64, or any text). Default none.
    pub webhook_secret: Option<String>,
    /// `alerts.webhook_min_severity`: `low`, `medium`, `high` or `critical`. Default `medium`.
    pub webhook_min_severity: String,
    /// `alerts.syslog`: `udp://host:port` or `tcp://host:port` (RFC 5424). Default none.
    pub syslog: Option<String>,
    /// `alerts.syslog_min_severity`. Default `medium`.
    pub syslog_min_severity: String,
    /// `alerts.file`: append findings as NDJSON to this file, or `-` for stdout. Default none.
    pub file: Option<String>,
    /// `alerts.file_min_severity`. Default `low`.
    pub file_min_severity: String,
}

/// The `[gateway]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// `gateway.upstream`: the API behind the gateway, `http://host:port` (a path prefix is
    /// allowed). Default: none, and then the gateway does not start.
    pub upstream: Option<String>,
    /// `gateway.listen`: the gateway's address. Default `127.0.0.1:8721`.
    pub listen: SocketAddr,
    /// `gateway.credential_header`: a header that may carry the token instead of
    /// `Authorization: Bearer`, such as `X-API-Key`. Default: none.
    pub credential_header: Option<String>,
    /// `gateway.trusted_proxies`: peers whose `X-Forwarded-For` / `X-Real-IP` is believed.
    /// Default: none (the socket's address is the client's).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `gateway.audit_timeout`: how long a request waits for its audit event to be recorded before
    /// the route's `on_audit_failure` applies. Default `2s`.
    pub audit_timeout: Duration,
    /// `gateway.failed_attempts`: failed authentication attempts allowed per source address
    /// (IPv6: per /64) before it is answered `rate_limited`. Default `60/min`.
    pub failed_attempts: token::RateLimit,
}

/// The `[ledger]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerConfig {
    /// `ledger.durability`: `durable` answers a request once its event is committed and synced;
    /// `buffered` answers once it is queued (a crash can lose queued events). Default `durable`.
    pub durability: Durability,
    /// `ledger.checkpoint_interval`: how often a new signed checkpoint is made while the log
    /// grows. Default `1s`.
    pub checkpoint_interval: Duration,
    /// `ledger.queue_capacity`: events waiting to be written before callers wait. Default 10000;
    /// between 1 and 1000000.
    pub queue_capacity: u64,
}

/// When an event counts as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Committed and synced (`durable`).
    Durable,
    /// Queued (`buffered`).
    Buffered,
}

impl Durability {
    /// The value as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Durable => "durable",
            Durability::Buffered => "buffered",
        }
    }
}

/// The `[log]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.format`: `text` for people, `json` for log collectors. Default `text`.
    pub format: LogFormat,
    /// `log.level`: a `tracing` `EnvFilter` directive such as `info` or
    /// `info,tokentrail=debug`. Default `info`.
    pub level: String,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (`text`).
    Text,
    /// One JSON object per line (`json`).
    Json,
}

impl LogFormat {
    /// The name used in configuration: `text` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[tokens]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    /// `tokens.prefix`: the first part of every issued token. Default `ttk`.
    pub prefix: token::Prefix,
    /// `tokens.default_lifetime`: lifetime of a token issued without an expiry. Default `90d`;
    /// at most `tokens.max_lifetime`.
    pub default_lifetime: Duration,
    /// `tokens.max_lifetime`: the longest lifetime a token may be issued with. Default `365d`.
    pub max_lifetime: Duration,
    /// `tokens.max_rotation_grace`: the longest time the old secret of a rotated token may keep
    /// working. Default `7d`.
    pub max_rotation_grace: Duration,
}

/// The `[limits]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `limits.max_body_bytes`: the largest request body the admin API accepts. Default 65536;
    /// between 1024 and 16 MiB.
    pub max_body_bytes: u64,
}

/// Defaults that depend on the machine, read by the caller (the library does no such I/O).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Defaults {
    /// The machine's hostname, the default `node`. `None`, or a name that is not a valid node
    /// name, falls back to `local`.
    pub hostname: Option<String>,
}

/// The node name used when no hostname is known.
pub const FALLBACK_NODE: &str = "local";

impl Config {
    /// The configuration used when nothing is configured.
    pub fn defaults(defaults: &Defaults) -> Config {
        let node = defaults.hostname.as_deref().filter(|h| check_node(h).is_ok()).unwrap_or(FALLBACK_NODE);
        Config {
            data_dir: PathBuf::from("./tokentrail-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8720)),
            node: node.to_owned(),
            log: LogConfig { format: LogFormat::Text, level: "info".to_owned() },
            tokens: TokenConfig {
                prefix: token::Prefix::default(),
                default_lifetime: Duration::from_secs(90 * DAY),
                max_lifetime: Duration::from_secs(365 * DAY),
                max_rotation_grace: Duration::from_secs(7 * DAY),
            },
            limits: LimitsConfig { max_body_bytes: 64 * 1024 },
            ledger: LedgerConfig {
                durability: Durability::Durable,
                checkpoint_interval: Duration::from_secs(1),
                queue_capacity: 10_000,
            },
            policy: None,
            gateway: GatewayConfig {
                upstream: None,
                listen: SocketAddr::from(([127, 0, 0, 1], 8721)),
                credential_header: None,
                trusted_proxies: Vec::new(),
                audit_timeout: Duration::from_secs(2),
                failed_attempts: token::RateLimit { count: 60, per: Duration::from_secs(60) },
            },
            detect: DetectSection {
                enabled: true,
                replay_days: 35,
                max_keys: 100_000,
                min_history_events: 100,
                min_history_days: 7,
                trusted_networks: Vec::new(),
                off_hours_sensitive_only: true,
                business_hours: "Mon-Fri 07-20".to_owned(),
                timezone: "UTC".to_owned(),
                brute_force_threshold: 20,
                dormant_days: 30,
                enumeration_min_ids: 50,
                volume_min_requests: 200,
                off_hours_evening_margin_hours: 3,
                new_network_back_and_forth: Duration::from_secs(4 * 3600),
                new_network_quiet_days: 30,
            },
            reports: ReportsConfig {
                window: Duration::from_secs(90 * DAY),
                unused_for: Duration::from_secs(30 * DAY),
                max_secret_age: Duration::from_secs(90 * DAY),
            },
            alerts: AlertsConfig {
                webhook_url: None,
                webhook_secret: None,
                webhook_min_severity: "medium".to_owned(),
                syslog: None,
                syslog_min_severity: "medium".to_owned(),
                file: None,
                file_min_severity: "low".to_owned(),
            },
        }
    }

    /// Every key with its current value written as TOML (`("listen", "\"127.0.0.1:8720\"")`),
    /// in registry order. For `config show`-style output.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        KEYS.iter().map(|k| (k.path, (k.show)(self))).collect()
    }
}

impl Default for Config {
    /// [`Config::defaults`] with no hostname, so `node` is `local`.
    fn default() -> Self {
        Config::defaults(&Defaults::default())
    }
}

const DAY: u64 = 86_400;

/// One configuration key: its dotted path and how to set and show it.
pub(crate) struct Key {
    /// The dotted path, `tokens.default_lifetime`.
    pub(crate) path: &'static str,
    /// Parses, checks and stores a value; on error, says what was expected.
    pub(crate) set: fn(&mut Config, Input<'_, '_>) -> Result<(), Problem>,
    /// The current value as TOML.
    pub(crate) show: fn(&Config) -> String,
}

/// Parses `input` as the type of `_field`; lets `keys!` avoid naming each field's type.
fn parse_like<T: Value>(_field: &T, input: Input<'_, '_>) -> Result<T, Problem> {
    input.parse()
}

/// Builds [`KEYS`]: each line names a key's path and the field it sets, optionally with a check
/// that runs on the parsed value.
macro_rules! keys {
    ($($path:literal => $($field:ident).+ $(, check = $check:path)?;)*) => {
        /// Every configuration key, in the order documented.
        pub(crate) const KEYS: &[Key] = &[$(
            Key {
                path: $path,
                set: |config, input| {
                    let value = parse_like(&config.$($field).+, input)?;
                    $( $check(&value).map_err(|m| (ErrorKind::InvalidValue, m))?; )?
                    config.$($field).+ = value;
                    Ok(())
                },
                show: |config| Value::to_toml(&config.$($field).+),
            },
        )*];
    };
}

keys! {
    "data_dir" => data_dir;
    "listen" => listen;
    "node" => node, check = check_node;
    "log.format" => log.format;
    "log.level" => log.level, check = check_log_level;
    "tokens.prefix" => tokens.prefix;
    "tokens.default_lifetime" => tokens.default_lifetime;
    "tokens.max_lifetime" => tokens.max_lifetime;
    "tokens.max_rotation_grace" => tokens.max_rotation_grace;
    "limits.max_body_bytes" => limits.max_body_bytes, check = check_max_body_bytes;
    "ledger.durability" => ledger.durability;
    "ledger.checkpoint_interval" => ledger.checkpoint_interval;
    "ledger.queue_capacity" => ledger.queue_capacity, check = check_queue_capacity;
    "policy" => policy;
    "gateway.upstream" => gateway.upstream, check = check_upstream;
    "gateway.listen" => gateway.listen;
    "gateway.credential_header" => gateway.credential_header, check = check_header;
    "gateway.trusted_proxies" => gateway.trusted_proxies;
    "gateway.audit_timeout" => gateway.audit_timeout;
    "gateway.failed_attempts" => gateway.failed_attempts;
    "detect.enabled" => detect.enabled;
    "detect.replay_days" => detect.replay_days, check = check_days;
    "detect.max_keys" => detect.max_keys, check = check_positive;
    "detect.min_history_events" => detect.min_history_events;
    "detect.min_history_days" => detect.min_history_days, check = check_days;
    "detect.trusted_networks" => detect.trusted_networks;
    "detect.off_hours_sensitive_only" => detect.off_hours_sensitive_only;
    "detect.business_hours" => detect.business_hours, check = check_business_hours;
    "detect.timezone" => detect.timezone, check = check_timezone_name;
    "detect.brute_force_threshold" => detect.brute_force_threshold, check = check_positive;
    "detect.dormant_days" => detect.dormant_days, check = check_days;
    "detect.enumeration_min_ids" => detect.enumeration_min_ids, check = check_positive;
    "detect.volume_min_requests" => detect.volume_min_requests, check = check_positive;
    "detect.off_hours_evening_margin_hours" => detect.off_hours_evening_margin_hours, check = check_evening_margin;
    "detect.new_network_back_and_forth" => detect.new_network_back_and_forth, check = check_back_and_forth;
    "detect.new_network_quiet_days" => detect.new_network_quiet_days, check = check_quiet_days;
    "alerts.webhook_url" => alerts.webhook_url, check = check_http_url;
    "alerts.webhook_secret" => alerts.webhook_secret;
    "alerts.webhook_min_severity" => alerts.webhook_min_severity, check = check_severity;
    "alerts.syslog" => alerts.syslog, check = check_syslog;
    "alerts.syslog_min_severity" => alerts.syslog_min_severity, check = check_severity;
    "alerts.file" => alerts.file;
    "alerts.file_min_severity" => alerts.file_min_severity, check = check_severity;
    "reports.window" => reports.window;
    "reports.unused_for" => reports.unused_for;
    "reports.max_secret_age" => reports.max_secret_age;
}

fn check_node(node: &str) -> Result<(), String> {
    let ok = (1..=253).contains(&node.chars().count()) && !node.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(format!("{node:?} is not a node name: expected 1 to 253 characters without spaces")) }
}

fn check_log_level(level: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_=,:.-".contains(c);
    if !level.is_empty() && level.chars().all(allowed) {
        Ok(())
    } else {
        Err(format!(
            "{level:?} is not a log filter: expected a directive such as \"info\" or \
             \"info,tokentrail=debug\" (letters, digits and _ = , : . -)"
        ))
    }
}

const MIN_BODY_BYTES: u64 = 1024;
const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

fn check_days(n: &u64) -> Result<(), String> {
    if (1..=3650).contains(n) { Ok(()) } else { Err(format!("{n} is out of range: between 1 and 3650 days")) }
}

fn check_quiet_days(n: &u64) -> Result<(), String> {
    if *n <= 3650 { Ok(()) } else { Err(format!("{n} is out of range: between 0 and 3650 days")) }
}

fn check_evening_margin(n: &u64) -> Result<(), String> {
    if *n <= 12 { Ok(()) } else { Err(format!("{n} is out of range: between 0 and 12 hours")) }
}

fn check_back_and_forth(d: &Duration) -> Result<(), String> {
    if *d <= Duration::from_secs(86_400) { Ok(()) } else { Err("must be at most 24h".to_owned()) }
}

fn check_positive(n: &u64) -> Result<(), String> {
    if *n >= 1 { Ok(()) } else { Err("must be at least 1".to_owned()) }
}

#[allow(clippy::ptr_arg)] // The registry passes the field by reference.
fn check_severity(s: &String) -> Result<(), String> {
    match s.as_str() {
        "low" | "medium" | "high" | "critical" => Ok(()),
        _ => Err(format!("{s:?} is not a severity: low, medium, high or critical")),
    }
}

/// `Mon-Fri 07-20`: a day range and an hour range (end exclusive, up to 24).
pub fn parse_business_hours(s: &str) -> Result<([bool; 7], u8, u8), String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let bad = || format!("{s:?} is not business hours such as \"Mon-Fri 07-20\"");
    let (days, hours) = s.trim().split_once(' ').ok_or_else(bad)?;
    let day = |d: &str| DAYS.iter().position(|x| x.eq_ignore_ascii_case(d)).ok_or_else(bad);
    let (d0, d1) = match days.split_once('-') {
        Some((a, b)) => (day(a)?, day(b)?),
        None => (day(days)?, day(days)?),
    };
    let (h0, h1) = hours.trim().split_once('-').ok_or_else(bad)?;
    let (h0, h1): (u8, u8) = (h0.parse().map_err(|_| bad())?, h1.parse().map_err(|_| bad())?);
    if h0 >= h1 || h1 > 24 {
        return Err(bad());
    }
    let mut set = [false; 7];
    let mut d = d0;
    loop {
        set[d] = true;
        if d == d1 {
            break;
        }
        d = (d + 1) % 7;
    }
    Ok((set, h0, h1))
}

#[allow(clippy::ptr_arg)] // The registry passes the field by reference.
fn check_business_hours(s: &String) -> Result<(), String> {
    parse_business_hours(s).map(|_| ())
}

#[allow(clippy::ptr_arg)] // The registry passes the field by reference.
fn check_timezone_name(s: &String) -> Result<(), String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
    if ok { Ok(()) } else { Err(format!("{s:?} is not an IANA time zone name such as Europe/Berlin")) }
}

fn check_http_url(u: &Option<String>) -> Result<(), String> {
    let Some(u) = u else { return Ok(()) };
    if u.starts_with("https://") {
        return Err(format!("{u:?}: https webhooks are not supported yet; use http:// (for example a local relay)"));
    }
    if u.starts_with("http://") && u.len() > 8 { Ok(()) } else { Err(format!("{u:?} is not an http:// URL")) }
}

fn check_syslog(s: &Option<String>) -> Result<(), String> {
    let Some(s) = s else { return Ok(()) };
    let rest = s.strip_prefix("udp://").or_else(|| s.strip_prefix("tcp://"));
    match rest.and_then(|r| r.rsplit_once(':')) {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{s:?} is not udp://host:port or tcp://host:port")),
    }
}

fn check_upstream(u: &Option<String>) -> Result<(), String> {
    let Some(u) = u else { return Ok(()) };
    let rest = u
        .strip_prefix("http://")
        .ok_or_else(|| format!("{u:?} must start with http:// (TLS to the upstream is not supported yet)"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || authority.contains(['@', '?', '#', ' ']) {
        return Err(format!("{u:?} is not an upstream URL such as http://127.0.0.1:8080"));
    }
    Ok(())
}

fn check_header(h: &Option<String>) -> Result<(), String> {
    let Some(h) = h else { return Ok(()) };
    let valid = !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let reserved = h.eq_ignore_ascii_case("authorization");
    if !valid || reserved {
        return Err(format!("{h:?} is not a header name such as X-API-Key (Authorization is always read)"));
    }
    Ok(())
}

fn check_queue_capacity(n: &u64) -> Result<(), String> {
    if (1..=1_000_000).contains(n) { Ok(()) } else { Err(format!("{n} is out of range: between 1 and 1000000")) }
}

fn check_max_body_bytes(n: &u64) -> Result<(), String> {
    if (MIN_BODY_BYTES..=MAX_BODY_BYTES).contains(n) {
        Ok(())
    } else {
        Err(format!("{n} is out of range: expected between {MIN_BODY_BYTES} and {MAX_BODY_BYTES} (16 MiB)"))
    }
}

/// A broken rule between keys: the keys involved and why. The error is reported at the first of
/// `keys` that the user set (or the first, if none was), so `message` must read well whichever
/// key it is shown under: name every key it mentions.
pub(crate) struct Conflict {
    pub(crate) keys: &'static [&'static str],
    pub(crate) message: String,
}

/// Rules that involve more than one key, checked after all layers are applied.
pub(crate) fn cross_checks(config: &Config) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    let tokens = &config.tokens;
    if tokens.default_lifetime > tokens.max_lifetime {
        conflicts.push(Conflict {
            keys: &["tokens.default_lifetime", "tokens.max_lifetime"],
            message: format!(
                "tokens.default_lifetime ({}) is longer than tokens.max_lifetime ({}): expected \
                 the default lifetime to be at most the maximum",
                token::format_duration(tokens.default_lifetime),
                token::format_duration(tokens.max_lifetime),
            ),
        });
    }
    conflicts
}
