//! `--help` of `tradeflow-report` never prints a secret taken from the environment (the
//! check: `testkit::cli_help`).

use tradeflow_shared::testkit::cli_help::{assert_help_hides, SECRET_URLS};

/// The URL-valued variables the report reads, each holding a password.
const REPORT_VARS: [&str; 2] = ["TRADEFLOW_REDIS_URL", "TRADEFLOW_BINANCE_REST_URL"];

#[test]
fn help_never_shows_secrets_from_the_environment() {
    let report = env!("CARGO_BIN_EXE_tradeflow-report");
    let secrets: Vec<(&str, &str)> = SECRET_URLS
        .iter()
        .copied()
        .filter(|(k, _)| REPORT_VARS.contains(k))
        .collect();
    for args in [&["--help"][..], &["serve", "--help"], &["reset", "--help"]] {
        assert_help_hides(report, args, &secrets);
    }
}
