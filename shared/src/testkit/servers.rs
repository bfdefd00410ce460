//! The servers the tests run against, each on a free loopback port with its state in a
//! temporary folder: redis-server, dynalite (DynamoDB), ferrokinesis and kinesis-mock
//! (Kinesis). Where the programs come from: `super::tools_dir` and the PATH.

use std::path::Path;

use super::service::{Service, Spec};
use super::{free_port, strings, tls_certificates, tools_dir, which};

/// redis-server's flags for `port` on loopback with its data in `dir`: AOF with
/// `appendfsync everysec` (as in production), no RDB snapshots, in the foreground.
pub(crate) fn redis_args(port: u16, dir: &Path) -> Vec<String> {
    strings(&[
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
    ])
}

/// redis-server on loopback with AOF (`appendfsync everysec`), as in production.
pub fn redis() -> Service {
    let port = free_port();
    let spec = Spec::new("redis", which("redis-server"), port);
    let args = redis_args(port, spec.state_dir());
    spec.args(args).launch()
}

/// redis-server speaking TLS only (`port` is its TLS port) with `password`, its
/// certificate from [`tls_certificates`] in `certs` (written here); clients need the
/// private CA `certs/ca.pem`.
pub fn redis_tls(certs: &Path, password: &str) -> Service {
    tls_certificates(certs);
    let port = free_port();
    let spec = Spec::new("redis-tls", which("redis-server"), port);
    let c = certs.display();
    let args = strings(&[
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--tls-cert-file",
        &format!("{c}/server.pem"),
        "--tls-key-file",
        &format!("{c}/server.key"),
        "--tls-ca-cert-file",
        &format!("{c}/ca.pem"),
        "--tls-auth-clients",
        "no",
        "--requirepass",
        password,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &spec.state_dir().display().to_string(),
        "--daemonize",
        "no",
    ]);
    spec.args(args).launch()
}

/// dynalite keeping its tables on disk (they survive a restart).
pub fn dynalite() -> Service {
    let port = free_port();
    let spec = Spec::new(
        "dynalite",
        tools_dir().join("node_modules/.bin/dynalite"),
        port,
    );
    let db = spec.state_dir().join("db").display().to_string();
    spec.args(strings(&["--port", &port.to_string(), "--path", &db]))
        .launch()
}

/// ferrokinesis with a write-ahead log (survives kill -9) and the given extra flags
/// (for instance `--enforce-limits`).
pub fn ferrokinesis(extra: &[&str]) -> Service {
    ferrokinesis_with(true, extra)
}

/// ferrokinesis holding its streams in memory only: no write-ahead log (which grows by
/// the whole stream's state at every reshard), but a restart loses everything.
pub fn ferrokinesis_volatile(extra: &[&str]) -> Service {
    ferrokinesis_with(false, extra)
}

fn ferrokinesis_with(durable: bool, extra: &[&str]) -> Service {
    let port = free_port();
    let spec = Spec::new("ferrokinesis", tools_dir().join("bin/ferrokinesis"), port);
    let mut args = vec!["--port".into(), port.to_string()];
    if durable {
        args.push("--state-dir".into());
        args.push(spec.state_dir().join("state").display().to_string());
    }
    args.extend(strings(extra));
    spec.args(args).launch()
}

/// kinesis-mock (npm `kinesis-local`): fills `ChildShards`, serves TLS and fan-out.
/// Keep its streams small: its writes slow down as a shard fills.
pub fn kinesis_mock() -> Service {
    let port = free_port();
    let tls_port = free_port();
    let pkg = tools_dir().join("node_modules/kinesis-local");
    let mut envs: Vec<(String, String)> = vec![
        ("KINESIS_MOCK_PLAIN_PORT".into(), port.to_string()),
        ("KINESIS_MOCK_TLS_PORT".into(), tls_port.to_string()),
        ("LOG_LEVEL".into(), "WARN".into()),
    ];
    for v in [
        "CREATE_STREAM_DURATION",
        "DELETE_STREAM_DURATION",
        "REGISTER_STREAM_CONSUMER_DURATION",
        "START_STREAM_ENCRYPTION_DURATION",
        "STOP_STREAM_ENCRYPTION_DURATION",
        "DEREGISTER_STREAM_CONSUMER_DURATION",
        "MERGE_SHARDS_DURATION",
        "SPLIT_SHARD_DURATION",
        "UPDATE_SHARD_COUNT_DURATION",
        "UPDATE_STREAM_MODE_DURATION",
    ] {
        envs.push((v.into(), "0ms".into()));
    }
    Spec::new("kinesis-mock", which("node"), port)
        .args(vec![pkg.join("main.js").display().to_string()])
        .envs(envs)
        .cwd(pkg)
        .tls_port(tls_port)
        .launch()
}
