//! `--help` never prints a secret taken from the environment: every flag whose value may
//! carry a password (URLs, endpoints) must hide its environment value (clap shows
//! `[env: NAME=value]` otherwise). One check for every binary of the workspace.

use std::process::Command;

/// Every URL-valued variable the binaries read, each holding a password.
pub const SECRET_URLS: &[(&str, &str)] = &[
    (
        "TRADEFLOW_REDIS_URL",
        "redis://:pw-redis-SECRET@127.0.0.1:6379",
    ),
    (
        "TRADEFLOW_BINANCE_REST_URL",
        "https://u:pw-rest-SECRET@127.0.0.1:1",
    ),
    ("TRADEFLOW_BINANCE_URL", "wss://u:pw-ws-SECRET@127.0.0.1:1"),
    (
        "TRADEFLOW_KINESIS_ENDPOINT",
        "http://u:pw-kinesis-SECRET@127.0.0.1:1",
    ),
    (
        "TRADEFLOW_DYNAMODB_ENDPOINT",
        "http://u:pw-ddb-SECRET@127.0.0.1:1",
    ),
];

/// Runs `bin args…` (a `--help`) with `secrets` (variable, value holding `SECRET`) in
/// its environment; panics if it fails or shows any of them.
pub fn assert_help_hides(bin: &str, args: &[&str], secrets: &[(&str, &str)]) {
    let out = Command::new(bin)
        .args(args)
        .envs(secrets.iter().copied())
        .output()
        .expect("run --help");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{bin} {args:?}: {text}");
    assert!(
        !text.contains("SECRET"),
        "{bin} {args:?} shows a secret:\n{text}"
    );
}
