//! Starts the real local servers the integration tests run against — redis-server,
//! dynalite (DynamoDB), ferrokinesis and kinesis-mock (Kinesis) — each on a free
//! loopback port, with its state in a temporary folder, and supervises every other
//! process a test starts ([`Process`]). Everything started here is stopped by its pid
//! when dropped, so a failing test leaves nothing behind.
//!
//! Where the programs are: `scripts/install-tools` puts them under `<workspace>/.tools`
//! (`TRADEFLOW_TOOLS` overrides); redis-server comes from the PATH.

use std::path::{Path, PathBuf};

pub mod api_faults;
mod binaries;
pub mod cli_help;
mod clients;
mod ferrokinesis;
mod http;
mod moto;
mod ports;
pub mod process;
mod redis_cluster;
pub mod rest_front;
mod servers;
mod service;
pub mod slack;
mod stream;
mod tls;
mod valkey;
pub mod wait;

pub use binaries::{binary_env, consumer_args, local_aws_env};
pub use clients::{clients_at, kinesis_client_at};
pub use ferrokinesis::{cut_torn_wal, ferrokinesis_wal, wait_ferrokinesis_up};
pub use http::{get, http_get, scrape_metrics, scrape_metrics_within, sum_metric};
pub use moto::moto;
pub use process::Process;
pub use redis_cluster::{ClusterSecurity, RedisCluster};
pub use servers::{dynalite, ferrokinesis, ferrokinesis_volatile, kinesis_mock, redis, redis_tls};
pub use service::Service;
pub use slack::SlackServer;
pub use stream::{create_active_stream, create_stream_at, wait_stream_active};
pub use tls::tls_certificates;
pub use valkey::{valkey, valkey_server};
pub use wait::{poll, poll_blocking, wait_for, wait_for_port, wait_until, wait_until_every};

/// The folder the test tools were installed into.
pub fn tools_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TRADEFLOW_TOOLS") {
        return PathBuf::from(dir);
    }
    workspace_root().join(".tools")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shared/ has a parent")
        .to_path_buf()
}

/// A loopback port nobody listens on, reserved for this test process (see `ports`).
pub fn free_port() -> u16 {
    ports::reserve()
}

/// `program` as found on the PATH (itself, for the error, when it is not there).
pub fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// `args` as owned strings (a command line).
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}
