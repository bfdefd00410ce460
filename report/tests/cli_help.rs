//! `--help` of `tradeflow-report` never prints a secret taken from the environment (the
//! check: `testkit::cli_help`).

use tradeflow_shared::testkit::cli_help::{assert_help_hides, SECRET_URLS};

/// The URL-valued variables the report reads, each holding a password.
const REPORT_VARS: [&str; 2] = ["TRADEFLOW_REDIS_URL", "TRADEFLOW_BINANCE_REST_URL"];

/// The Slack secrets `tradeflow-report slack` reads from the environment.
const SLACK_SECRETS: [(&str, &str); 2] = [
    ("TRADEFLOW_SLACK_TOKEN", "xoxb-1-2-SECRET"),
    (
        "TRADEFLOW_SLACK_WEBHOOK_URL",
        "https://hooks.example/services/T1/B1/SECRET",
    ),
];

#[test]
fn help_never_shows_secrets_from_the_environment() {
    let report = env!("CARGO_BIN_EXE_tradeflow-report");
    let secrets: Vec<(&str, &str)> = SECRET_URLS
        .iter()
        .copied()
        .filter(|(k, _)| REPORT_VARS.contains(k))
        .collect();
    let mut secrets = secrets;
    secrets.extend(SLACK_SECRETS);
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["reset", "--help"],
        &["slack", "--help"],
        &["candles", "--help"],
        &["reconcile", "--help"],
    ] {
        assert_help_hides(report, args, &secrets);
    }
}
