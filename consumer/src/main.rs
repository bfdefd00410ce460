//! `tradeflow-consumer`: parse flags, start logs and metrics, run the worker until
//! SIGINT/SIGTERM, drain, exit.

use std::time::Duration;

use clap::Parser;
use tradeflow_consumer::config::Config;
use tradeflow_shared::telemetry::{self, Health};

fn main() -> anyhow::Result<()> {
    // Before any thread allocates (see `allocator`).
    let tuned = tradeflow_consumer::allocator::keep_page_buffers();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(tuned))
}

async fn run(allocator_tuned: bool) -> anyhow::Result<()> {
    let cfg = Config::parse();
    telemetry::init_tracing(&cfg.telemetry);
    if !allocator_tuned {
        tracing::debug!("not glibc: page buffers left to the allocator's defaults");
    }
    if let Err(e) = cfg.validate() {
        anyhow::bail!("invalid configuration: {e}");
    }
    let shutdown = tradeflow_shared::shutdown::on_signals();
    let health = Health::new();
    let metrics = telemetry::install_metrics()?;
    tradeflow_consumer::metrics::describe();
    let mut http = None;
    if let Some(addr) = cfg
        .telemetry
        .metrics_addr
        .as_deref()
        .filter(|a| !a.is_empty())
    {
        let stale = cfg.failover_time * 3;
        http = Some(
            telemetry::serve(addr, metrics, health.clone(), stale, shutdown.clone())
                .await?
                .1,
        );
    }
    let result = tradeflow_consumer::worker::run(cfg, health, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(h) = http {
        let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
    }
    result
}
