//! `tradeflow-report slack` when things go wrong, against the test kit's local Slack:
//! a refused token is final (clear message, nothing retried, no notice); Redis down is a
//! failed run that still tells the channel; a secret on the command line is refused; a
//! SecureString from moto's Parameter Store (the real SDK path) works for a token and a
//! webhook URL alike.

use crate::redis_common::url;
use crate::report_slack::{block_text, bot_env, fill, market, report, stderr};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ssm::config::Credentials;
use aws_sdk_ssm::types::ParameterType;
use tradeflow_shared::testkit;
use tradeflow_shared::testkit::slack::{Endpoint, Fault, SlackServer};

#[tokio::test]
async fn invalid_auth_is_final_and_says_what_to_check() {
    let redis = testkit::redis();
    fill(&redis, &market()).await;
    let slack = SlackServer::start();
    let mut env = bot_env(&slack);
    env[0].1 = "xoxb-0000-wrong-SECRETtoken".into();
    let (out, took) = report(&url(&redis), &env, &[]).await;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("Slack refused the bot token (invalid_auth)"),
        "{err}"
    );
    assert!(!err.contains("SECRETtoken"), "{err}");
    // Final: one call, no retry, no failure notice (it would be refused too).
    assert_eq!(slack.calls(Endpoint::PostMessage), 1);
    assert!(slack.messages().is_empty());
    eprintln!("invalid_auth: {} ms", took.as_millis());
}

#[tokio::test]
async fn a_missing_channel_is_final_and_names_it() {
    let redis = testkit::redis();
    fill(&redis, &market()).await;
    let slack = SlackServer::start();
    let mut env = bot_env(&slack);
    env[1].1 = "C0NOSUCHCHANNEL".into();
    let (out, _) = report(&url(&redis), &env, &[]).await;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("channel_not_found: check the channel id C0NOSUCHCHANNEL"),
        "{err}"
    );
    assert_eq!(slack.calls(Endpoint::PostMessage), 1);
}

#[tokio::test]
async fn a_rate_limit_past_the_deadline_fails_at_once_and_is_reported() {
    let redis = testkit::redis();
    fill(&redis, &market()).await;
    let slack = SlackServer::start();
    slack.fail_next(
        Endpoint::PostMessage,
        1,
        Fault::RateLimited { retry_after: 120 },
    );
    let (out, took) = report(&url(&redis), &bot_env(&slack), &["--slack-deadline", "30s"]).await;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("still rate limited (HTTP 429, Retry-After 120 s) at the 30 s deadline"),
        "{err}"
    );
    assert!(took < std::time::Duration::from_secs(20), "waited {took:?}");
    // The failure notice went through once the limit was lifted.
    let msgs = slack.messages();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0]["text"]
        .as_str()
        .unwrap()
        .starts_with("tradeflow report failed: Slack chat.postMessage: still rate limited"));
}

#[tokio::test]
async fn redis_unreachable_fails_the_run_and_tells_the_channel() {
    let slack = SlackServer::start();
    let dead = format!("redis://127.0.0.1:{}", testkit::free_port());
    let (out, took) = report(&dead, &bot_env(&slack), &["--redis-timeout", "3s"]).await;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("Redis"), "{err}");
    let msgs = slack.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let text = msgs[0]["text"].as_str().unwrap();
    assert!(text.starts_with("tradeflow report failed: Redis"), "{text}");
    assert!(block_text(&msgs[0]["blocks"]).contains("could not be made"));
    assert_eq!(
        slack.calls(Endpoint::GetUploadUrl),
        0,
        "no chart of nothing"
    );
    eprintln!("Redis unreachable: {} ms", took.as_millis());
}

#[tokio::test]
async fn a_secret_on_the_command_line_is_refused() {
    let redis = testkit::redis();
    let slack = SlackServer::start();
    let env = [("TRADEFLOW_SLACK_CHANNEL", slack.channel().to_string())];
    let token = slack.token().to_string();
    let (out, _) = report(&url(&redis), &env, &["--slack-token", &token]).await;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("set TRADEFLOW_SLACK_TOKEN in the environment"),
        "{err}"
    );
    assert!(!err.contains(&token), "{err}");
    assert_eq!(slack.recorded().len(), 0);
}

#[tokio::test]
async fn the_secret_comes_from_an_ssm_secure_string() {
    let moto = testkit::moto();
    let redis = testkit::redis();
    fill(&redis, &market()).await;
    let slack = SlackServer::start();
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        // Placeholders, given here rather than set in this process's environment (the
        // tests share the process); the report gets them in its own environment.
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .load()
        .await;
    let ssm = tradeflow_shared::secret::ssm_client(&conf, Some(&moto.endpoint()));
    for (name, value) in [
        ("/tradeflow/slack-token", slack.token().to_string()),
        ("/tradeflow/slack-webhook", slack.webhook_url()),
    ] {
        ssm.put_parameter()
            .name(name)
            .value(value)
            .r#type(ParameterType::SecureString)
            .send()
            .await
            .unwrap();
    }
    let aws = |param: &str| {
        vec![
            ("TRADEFLOW_SLACK_SSM_PARAMETER", param.to_string()),
            ("TRADEFLOW_SSM_ENDPOINT", moto.endpoint()),
            ("TRADEFLOW_SLACK_CHANNEL", slack.channel().to_string()),
            ("TRADEFLOW_SLACK_API_URL", slack.api_url()),
            ("AWS_ACCESS_KEY_ID", "local".into()),
            ("AWS_SECRET_ACCESS_KEY", "local".into()),
            ("AWS_REGION", "eu-west-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    };
    let (out, took) = report(
        &url(&redis),
        &aws("/tradeflow/slack-token"),
        &["--no-charts"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(slack.messages().len(), 1);
    let (out, _) = report(&url(&redis), &aws("/tradeflow/slack-webhook"), &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(slack.webhook_posts().len(), 1);
    assert!(slack.uploads().is_empty());
    // A missing parameter: a clear error naming it, and nobody to tell.
    let (out, _) = report(&url(&redis), &aws("/tradeflow/nope"), &[]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("SSM parameter /tradeflow/nope does not exist"),
        "{}",
        stderr(&out)
    );
    eprintln!("SSM token run: {} ms", took.as_millis());
}
