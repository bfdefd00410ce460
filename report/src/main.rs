//! `tradeflow-report`: thin binary; the work is in the `tradeflow_report` library.

use clap::Parser;
use tradeflow_report::{run, Args};
use tradeflow_shared::telemetry::{init_tracing, LogFormat, TelemetryArgs};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Warnings (e.g. skipped price entries) on stderr; stdout stays the report.
    init_tracing(&TelemetryArgs {
        log_format: LogFormat::Text,
        log: std::env::var("TRADEFLOW_LOG").unwrap_or_else(|_| "warn".into()),
        metrics_addr: None,
        stall_timeout: std::time::Duration::from_secs(60),
    });
    Ok(run(args, tradeflow_shared::shutdown::on_signals()).await?)
}
