//! The HTTP edge of tokentrail: the admin API (axum), health, metrics and the OpenAPI document,
//! and the lifecycle of a running server (start, graceful shutdown, background flushes).
//!
//! Handlers translate wire types (`proto`) to engine calls and back; business rules live in
//! `engine`, and errors leave as RFC 9457 problem+json through [`problem::ApiError`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::{Engine, EngineError, Settings, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod alerts;
pub mod auditor;
pub mod extract;
pub mod gateway;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod report_html;
pub mod routes;
pub mod views;

use extract::RequestId;
use problem::ApiError;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub engine: Arc<Engine>,
    /// Request metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// Records access decisions (ledger, else spool).
    pub auditor: Arc<auditor::Auditor>,
    /// Where client addresses come from (trusted proxies).
    pub addresses: gateway::ClientAddress,
    /// The extra credential header, if configured.
    pub credential_header: Option<axum::http::HeaderName>,
    /// Least-privilege analysis settings.
    pub reports: insight::Settings,
    /// The data directory, for the commands a report prints.
    pub data_dir: String,
}

/// Runs a blocking engine call off the async threads and maps its error to a problem.
pub async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, EngineError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(&format!("blocking task failed: {e}"))),
    }
}

/// A thread of its own that runs jobs at the lowest CPU priority the system gives (nice 19 on
/// Linux): the detectors'. On a busy core a request then always goes first, and detection falls
/// behind instead, to catch up from the ledger later. It ends when its owner is dropped.
struct LowPriority {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl LowPriority {
    fn start(name: &str) -> LowPriority {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let spawned = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            lower_this_threads_priority();
            for job in queue {
                job();
            }
        });
        if let Err(e) = spawned {
            // `run` then answers `None`, as for a job that panicked: the caller stops.
            tracing::error!(error = %e, "cannot start the detection thread");
        }
        LowPriority { jobs }
    }

    /// Runs `f` on the thread and waits for its result; `None` when the thread is gone.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .ok()?;
        rx.await.ok()
    }
}

#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    // On Linux a thread's own id names it alone to setpriority.
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::warn!(error = %e, "cannot lower the detection thread's priority; it competes with requests");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

const REQUEST_ID: &str = "x-request-id";

/// Assigns a request id (the caller's `X-Request-Id` when it is short and printable), echoes it,
/// records metrics, and logs one line per request: method, route, status, time. Never headers,
/// bodies or query strings, so no credential reaches the log.
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let given = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let id = match given {
        Some(id) => id,
        None => engine::random_id("req_", 16).unwrap_or_else(|_| "req_unavailable".to_owned()),
    };
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let mut resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    state.metrics.observe(&method, &route, status, elapsed);
    tracing::info!(
        target: "tokentrail::http",
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = %id,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "No such endpoint", "see /openapi.json for the endpoints")
}

async fn method_not_allowed(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            "this endpoint does not take that method; see /openapi.json",
        )
        .into_response();
    }
    resp
}

/// The admin API router.
pub fn app(state: AppState, max_body_bytes: usize) -> Router {
    use routes::{access, audit, findings, health, ledger, reports, tokens};
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{id}", get(tokens::show).patch(tokens::update))
        .route("/v1/tokens/{id}/revoke", post(tokens::revoke))
        .route("/v1/tokens/{id}/rotate", post(tokens::rotate))
        .route("/v1/audit/events", get(audit::list))
        .route("/v1/audit/events/{id}", get(audit::show))
        .route("/v1/audit/events/{id}/explain", get(audit::explain))
        .route("/v1/audit/stats", get(audit::stats))
        .route("/v1/audit/stream", get(audit::stream))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/audit/ingest", post(audit::ingest).layer(DefaultBodyLimit::max(64 << 20)))
        .route("/v1/tokens/{id}/activity", get(audit::activity))
        .route("/v1/audit/events/{id}/leaf", get(ledger::leaf))
        .route("/v1/audit/events/{id}/proof", get(ledger::proof))
        .route("/v1/audit/consistency", get(ledger::consistency))
        .route("/v1/audit/checkpoint", get(ledger::checkpoint).post(ledger::sign_checkpoint))
        .route("/v1/audit/key", get(ledger::key))
        .route("/v1/audit/erase", post(ledger::erase))
        .route("/v1/reports/least-privilege", get(reports::least_privilege))
        .route("/v1/reports/access-review", get(reports::access_review))
        .route("/v1/reports/compliance", get(reports::compliance))
        .route("/v1/tokens/{id}/narrow", post(reports::narrow))
        .route("/v1/tokens/{id}/confirm", post(reports::confirm))
        .route("/v1/findings", get(findings::list))
        .route("/v1/findings/{id}", get(findings::show))
        .route("/v1/findings/{id}/ack", post(findings::ack))
        .route("/v1/findings/{id}/resolve", post(findings::resolve))
        .route("/v1/verify", post(access::verify))
        .route("/v1/authz", axum::routing::any(access::authz))
        .route("/v1/authz/{*rest}", axum::routing::any(access::authz))
        .fallback(not_found)
        .layer(middleware::from_fn(method_not_allowed))
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Sets up logging: human-readable text or JSON lines, filtered by `level` (an `EnvFilter`
/// directive such as `info` or `tokentrail=debug`).
pub fn init_logging(format: config::LogFormat, level: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(level).with_context(|| format!("invalid log level {level:?}"))?;
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// A running server.
pub struct Running {
    /// The admin API's address (useful with port 0).
    pub addr: SocketAddr,
    /// The gateway's address, when it runs.
    pub gateway_addr: Option<SocketAddr>,
    /// The engine, for in-process tests.
    pub engine: Arc<Engine>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Asks the server to stop: no new connections, in-flight requests finish, pending
    /// last-use times are written, the store is closed. Waits until all of that is done.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("server task failed")?
    }

    /// Waits until the server stops by itself (it only does on error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("server task failed")?
    }
}

/// The detector settings a config asks for (the time zone is looked up in the system's tz
/// database).
pub fn detect_config(config: &config::Config) -> anyhow::Result<detect::DetectConfig> {
    let d = &config.detect;
    let (days, start_hour, end_hour) =
        config::parse_business_hours(&d.business_hours).map_err(|e| anyhow::anyhow!("detect.business_hours: {e}"))?;
    let tz = jiff::tz::TimeZone::get(&d.timezone)
        .map_err(|e| anyhow::anyhow!("detect.timezone: {:?} is not a known time zone: {e}", d.timezone))?;
    Ok(detect::DetectConfig {
        trusted_networks: d.trusted_networks.clone(),
        max_keys: usize::try_from(d.max_keys).unwrap_or(usize::MAX),
        min_history_events: d.min_history_events,
        min_history_days: u32::try_from(d.min_history_days).unwrap_or(u32::MAX),
        off_hours_sensitive_only: d.off_hours_sensitive_only,
        business_hours: detect::config::BusinessHours { days, start_hour, end_hour, tz },
        brute_force_threshold: usize::try_from(d.brute_force_threshold).unwrap_or(usize::MAX),
        dormant_days: u32::try_from(d.dormant_days).unwrap_or(u32::MAX),
        enumeration_min_ids: usize::try_from(d.enumeration_min_ids).unwrap_or(usize::MAX),
        volume_min_requests: d.volume_min_requests,
        off_hours_evening_margin_hours: u8::try_from(d.off_hours_evening_margin_hours).unwrap_or(u8::MAX),
        new_network_back_and_forth_s: i64::try_from(d.new_network_back_and_forth.as_secs()).unwrap_or(i64::MAX),
        new_network_quiet_days: u32::try_from(d.new_network_quiet_days).unwrap_or(u32::MAX),
        ..detect::DetectConfig::default()
    })
}

/// The engine settings a config asks for.
pub fn settings(config: &config::Config) -> anyhow::Result<Settings> {
    Ok(Settings {
        prefix: config.tokens.prefix.clone(),
        default_lifetime: config.tokens.default_lifetime,
        max_lifetime: config.tokens.max_lifetime,
        max_rotation_grace: config.tokens.max_rotation_grace,
        node: config.node.clone(),
        failed_attempts: engine::limits::Budget {
            count: config.gateway.failed_attempts.count,
            per: config.gateway.failed_attempts.per,
        },
        fail_writes_while: None,
        detect: detect_config(config)?,
        detect_replay_days: u32::try_from(config.detect.replay_days).unwrap_or(35),
        durability: match config.ledger.durability {
            config::Durability::Durable => engine::recorder::Durability::Durable,
            config::Durability::Buffered => engine::recorder::Durability::Buffered,
        },
        queue_capacity: usize::try_from(config.ledger.queue_capacity).unwrap_or(10_000),
    })
}

/// Loads the route policy file, listing every problem.
fn load_policy(path: &std::path::Path) -> anyhow::Result<policy::Policy> {
    policy::Policy::load(path).map_err(|errors| anyhow::anyhow!("invalid route policy {}:\n{errors}", path.display()))
}

/// Reloads the policy on SIGHUP and when the file changes (checked every two seconds). An invalid
/// file is logged with every problem and the policy in force stays.
fn watch_policy(engine: Arc<Engine>, path: std::path::PathBuf, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen = modified(&path);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let forced = tokio::select! {
                () = hangup => true,
                _ = tick.tick() => false,
                _ = stop.changed() => return,
            };
            let now = modified(&path);
            if !forced && now == seen {
                continue;
            }
            seen = now;
            // A file being rewritten in place can be read half-written (even empty, which is a
            // valid deny-all policy): apply it only once two reads a moment apart agree.
            let first = std::fs::read(&path).ok();
            tokio::time::sleep(Duration::from_millis(300)).await;
            if std::fs::read(&path).ok() != first {
                seen = None;
                continue;
            }
            match load_policy(&path) {
                Ok(p) => {
                    let routes = p.routes().len();
                    engine.set_policy(p);
                    tracing::info!(path = %path.display(), routes, "route policy reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "the new route policy is invalid; the previous one stays in force")
                }
            }
        }
    });
}

/// Opens the data directory and starts serving the admin API (and the gateway when an upstream
/// is configured).
pub async fn start(config: &config::Config) -> anyhow::Result<Running> {
    start_with(config, None).await
}

/// [`start`], with testing hooks: `fail_writes_while` makes every store write fail while that
/// file exists (an injected I/O failure).
pub async fn start_with(
    config: &config::Config,
    fail_writes_while: Option<std::path::PathBuf>,
) -> anyhow::Result<Running> {
    let data_dir = config.data_dir.clone();
    let mut settings = settings(config)?;
    settings.fail_writes_while = fail_writes_while;
    let policy = config.policy.as_deref().map(load_policy).transpose()?;
    let (engine, report) =
        tokio::task::spawn_blocking(move || Engine::open(&data_dir, settings, Arc::new(SystemClock)))
            .await
            .context("opening the data directory")?
            .with_context(|| format!("cannot open the data directory {}", config.data_dir.display()))?;
    if let Some(p) = policy {
        engine.set_policy(p);
    }
    let engine = Arc::new(engine);
    if report.created_admin_token {
        tracing::info!(
            path = %engine::DataDir::new(&config.data_dir).admin_token().display(),
            "created the bootstrap admin token (the file is readable only by this user)"
        );
    }
    let listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), store = engine.store().backend(), "tokentrail admin API listening");
    let auditor = auditor::Auditor::new(engine.clone(), &config.data_dir, config.gateway.audit_timeout);
    let addresses = gateway::ClientAddress { trusted_proxies: config.gateway.trusted_proxies.clone() };
    let credential_header =
        config.gateway.credential_header.as_deref().map(axum::http::HeaderName::try_from).transpose()?;
    let state = AppState {
        engine: engine.clone(),
        metrics: Arc::new(metrics::Metrics::default()),
        auditor: auditor.clone(),
        addresses: addresses.clone(),
        credential_header,
        reports: insight::Settings {
            window: config.reports.window,
            unused_for: config.reports.unused_for,
            max_lifetime: config.tokens.max_lifetime,
            max_secret_age: config.reports.max_secret_age,
        },
        data_dir: config.data_dir.display().to_string(),
    };
    let max_body = usize::try_from(config.limits.max_body_bytes).unwrap_or(usize::MAX);
    let router = app(state, max_body);
    let (tx, mut rx) = watch::channel(false);
    if let Some(path) = &config.policy {
        watch_policy(engine.clone(), path.clone(), rx.clone());
    }
    let gateway_task = match &config.gateway.upstream {
        Some(upstream) => {
            let gw = Arc::new(gateway::Gateway::new(
                engine.clone(),
                auditor.clone(),
                upstream,
                config.gateway.credential_header.as_deref(),
                config.gateway.trusted_proxies.clone(),
            )?);
            let listener = TcpListener::bind(config.gateway.listen)
                .await
                .with_context(|| format!("cannot listen on {} (gateway)", config.gateway.listen))?;
            let gw_addr = listener.local_addr()?;
            tracing::info!(addr = %gw_addr, %upstream, "tokentrail gateway listening");
            Some((gw_addr, tokio::spawn(gateway::serve(gw, listener, rx.clone()))))
        }
        None => None,
    };
    let gateway_addr = gateway_task.as_ref().map(|(a, _)| *a);
    let alerts = alerts::Alerts::new(&config.alerts, &config.data_dir, &config.node)?;
    let detector = if config.detect.enabled {
        let e = engine.clone();
        let mut stop = rx.clone();
        let alerts = alerts.clone();
        let worker = LowPriority::start("tt-detect");
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                // Catch up in bounded steps, so a backlog never holds the writer or a request.
                loop {
                    let engine = e.clone();
                    match worker.run(move || engine.detect_step(5000)).await {
                        Some(Ok(fresh)) if !fresh.is_empty() => alerts.send_findings(&fresh),
                        Some(Ok(_)) => break,
                        Some(Err(err)) => {
                            tracing::warn!(error = %err, "detection could not read the ledger; will retry");
                            break;
                        }
                        None => break,
                    }
                }
            }
        }))
    } else {
        None
    };
    let replay_auditor = auditor.clone();
    let mut replay_rx = rx.clone();
    let replayer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = replay_rx.changed() => break,
            }
            let a = replay_auditor.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || a.replay()).await {
                tracing::debug!(error = %e, "the spool could not be replayed yet");
            }
        }
    });
    let flusher_engine = engine.clone();
    let mut flush_rx = rx.clone();
    let flusher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = flush_rx.changed() => break,
            }
            let e = flusher_engine.clone();
            if let Ok(Err(err)) = tokio::task::spawn_blocking(move || e.flush_last_used()).await {
                tracing::warn!(error = %err, "could not record last-use times; will retry");
            }
        }
    });
    let checkpoint_engine = engine.clone();
    let mut checkpoint_rx = rx.clone();
    let every = config.ledger.checkpoint_interval;
    let checkpointer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = checkpoint_rx.changed() => break,
            }
            let e = checkpoint_engine.clone();
            if let Ok(Err(err)) = tokio::task::spawn_blocking(move || e.checkpoint()).await {
                tracing::warn!(error = %err, "could not sign a checkpoint; will retry");
            }
        }
    });
    let task_engine = engine.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await;
        if let Some((_, g)) = gateway_task {
            let _ = g.await;
        }
        let _ = flusher.await;
        let _ = checkpointer.await;
        let _ = replayer.await;
        if let Some(d) = detector {
            let _ = d.await;
        }
        let e = task_engine.clone();
        match tokio::task::spawn_blocking(move || e.flush_last_used().and_then(|_| e.checkpoint())).await {
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "could not record last-use times or sign the final checkpoint")
            }
            Err(err) => tracing::warn!(error = %err, "the shutdown flush failed"),
            Ok(Ok(_)) => {}
        }
        tracing::info!("tokentrail stopped");
        served.context("the admin API failed")
    });
    Ok(Running { addr, gateway_addr, engine, shutdown: tx, task })
}

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = term => tracing::info!("SIGTERM received; shutting down"),
    }
}
