//! Logs (tracing, text or JSON), Prometheus metrics and the health endpoints, set up the
//! same way by every binary.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::watchdog::Watchdog;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags every binary shares.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log format.
    #[arg(long, env = "TRADEFLOW_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info,tradeflow_consumer=debug`.
    #[arg(long, env = "TRADEFLOW_LOG", default_value = "info")]
    pub log: String,
    /// Address of the /metrics, /healthz and /readyz endpoints. Empty disables them.
    #[arg(long, env = "TRADEFLOW_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// A part with work pending and no progress for this long is reported stalled:
    /// /readyz fails naming it, `tradeflow_<binary>_stalled{part}` counts it, a log line
    /// says so.
    #[arg(long, env = "TRADEFLOW_STALL_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,
}

/// Starts logging to stderr. Safe to call twice (the second call is ignored).
pub fn init_tracing(args: &TelemetryArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Latency buckets (seconds) for calls to AWS and Redis: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Size buckets (records per call or batch).
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0, 10000.0,
];

/// Installs the global Prometheus recorder. Returns the handle that renders a scrape.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_records".into()), COUNT_BUCKETS)?
        .install_recorder()?;
    Ok(handle)
}

/// Liveness and readiness as the process sees them. `ready` means connected; progress
/// is a heartbeat the main loop bumps whenever it moves data or finds nothing to move.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    last_progress_ms: AtomicU64,
    /// Parts with work pending and no progress make the process not ready.
    watchdog: std::sync::OnceLock<Arc<Watchdog>>,
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Health::default())
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn progress(&self) {
        self.last_progress_ms.store(now_ms(), Ordering::Relaxed);
    }
    /// Ready when connected, the heartbeat is younger than `stale` and no watched part
    /// is stalled.
    pub fn is_ready(&self, stale: Duration) -> bool {
        self.readiness(stale).is_ok()
    }

    /// As `is_ready`, saying why not.
    pub fn readiness(&self, stale: Duration) -> Result<(), String> {
        let last = self.last_progress_ms.load(Ordering::Relaxed);
        if !self.ready.load(Ordering::Relaxed) || last == 0 {
            return Err("not connected".into());
        }
        if now_ms().saturating_sub(last) > stale.as_millis() as u64 {
            return Err(format!("no heartbeat for more than {} s", stale.as_secs()));
        }
        if let Some(stalled) = self.watchdog.get().map(|w| w.stalled()) {
            if !stalled.is_empty() {
                return Err(format!("stalled: {}", stalled.join(", ")));
            }
        }
        Ok(())
    }

    /// Makes `watchdog`'s stalls part of readiness (once; later calls are ignored).
    pub fn watch_with(&self, watchdog: Arc<Watchdog>) {
        let _ = self.watchdog.set(watchdog);
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Clone)]
struct HttpState {
    metrics: PrometheusHandle,
    health: Arc<Health>,
    stale: Duration,
}

/// Serves `/metrics`, `/healthz` and `/readyz` (nothing else) until `shutdown`.
/// Returns the bound address (useful with port 0).
pub async fn serve(
    addr: &str,
    metrics: PrometheusHandle,
    health: Arc<Health>,
    stale: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<HttpState>| async move { s.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<HttpState>| async move {
                match s.health.readiness(s.stale) {
                    Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                    Err(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
                }
            }),
        )
        .with_state(HttpState {
            metrics,
            health,
            stale,
        });
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    tracing::info!(%local, "serving /metrics, /healthz, /readyz");
    Ok((local, task))
}
