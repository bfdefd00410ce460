//! `tradeflow-report`: thin binary; the work is in `tradeflow_consumer::report`.

use clap::Parser;
use tradeflow_consumer::report::{run, Args};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    run(args, tradeflow_shared::shutdown::on_signals()).await
}
