//! tradeflow-producer: parse and validate the flags, start logging, metrics and the
//! signal handler, then run the pipeline. Exit 0 after a clean drain.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tradeflow_producer::config::Config;
use tradeflow_producer::pipeline;
use tradeflow_shared::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.validate().context("invalid configuration")?;
    telemetry::init_tracing(&config.telemetry);
    let shutdown = tradeflow_shared::shutdown::on_signals();
    let health = telemetry::Health::new();
    let addr = config
        .telemetry
        .metrics_addr
        .clone()
        .unwrap_or_else(|| "127.0.0.1:9464".to_string());
    let server = if addr.is_empty() {
        None
    } else {
        let handle = telemetry::install_metrics().context("installing the metrics recorder")?;
        // Descriptions (and zeroed counters) need the recorder installed first.
        tradeflow_producer::metrics::describe();
        let stop = shutdown.child_token();
        let (_, task) = telemetry::serve(
            &addr,
            handle,
            health.clone(),
            Duration::from_secs(60),
            stop.clone(),
        )
        .await
        .with_context(|| format!("serving metrics on {addr}"))?;
        Some((stop, task))
    };
    let report = pipeline::run_with_health(config, shutdown, health).await;
    if let Some((stop, task)) = server {
        stop.cancel();
        let _ = task.await;
    }
    let report = report.context("producer failed")?;
    if report.lost > 0 {
        anyhow::bail!(
            "{} accepted trades were not written (see the log)",
            report.lost
        );
    }
    Ok(())
}
