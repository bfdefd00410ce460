//! `--help` of `tradeflow-report` never prints a secret taken from the environment:
//! every flag whose value may carry a password hides its environment value (clap shows
//! `[env: NAME=value]` otherwise).

use std::process::Command;

/// Every URL-valued variable the report reads, each holding a password.
const SECRET_ENV: &[(&str, &str)] = &[
    (
        "TRADEFLOW_REDIS_URL",
        "redis://:pw-redis-SECRET@127.0.0.1:6379",
    ),
    (
        "TRADEFLOW_BINANCE_REST_URL",
        "https://u:pw-rest-SECRET@127.0.0.1:1",
    ),
];

fn help_without_secrets(bin: &str, args: &[&str]) {
    let out = Command::new(bin)
        .args(args)
        .envs(SECRET_ENV.iter().copied())
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

#[test]
fn help_never_shows_secrets_from_the_environment() {
    let report = env!("CARGO_BIN_EXE_tradeflow-report");
    for args in [&["--help"][..], &["serve", "--help"], &["reset", "--help"]] {
        help_without_secrets(report, args);
    }
}
