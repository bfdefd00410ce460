//! `tradeflow-report`: thin binary; the work is in the `tradeflow_report` library.

use std::process::ExitCode;

use clap::Parser;
use tradeflow_report::{run, Args};
use tradeflow_shared::telemetry::{init_tracing, LogFormat, TelemetryArgs};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Warnings (e.g. skipped price entries) on stderr; stdout stays the report.
    init_tracing(&TelemetryArgs {
        log_format: LogFormat::Text,
        log: std::env::var("TRADEFLOW_LOG").unwrap_or_else(|_| "warn".into()),
        metrics_addr: None,
        stall_timeout: std::time::Duration::from_secs(60),
    });
    match run(args, tradeflow_shared::shutdown::on_signals()).await {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            // As `main() -> anyhow::Result` prints it; exit status 1.
            eprintln!("Error: {:?}", anyhow::Error::new(e));
            ExitCode::FAILURE
        }
    }
}
