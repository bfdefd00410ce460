//! `--help` of the consumer's binary never prints a secret taken from the environment
//! (the check: `testkit::cli_help`).

use tradeflow_shared::testkit::cli_help::{assert_help_hides, SECRET_URLS};

#[test]
fn help_never_shows_secrets_from_the_environment() {
    let consumer = env!("CARGO_BIN_EXE_tradeflow-consumer");
    assert_help_hides(consumer, &["--help"], SECRET_URLS);
}
