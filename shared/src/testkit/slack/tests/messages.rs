//! chat.postMessage and the webhook: what is accepted, recorded, and refused.

use std::time::Instant;

use serde_json::{json, Value};

use super::{call, post, section};
use crate::testkit::slack::SlackServer;

#[tokio::test]
async fn valid_messages_are_recorded_and_answered_as_slack_does() {
    let t0 = Instant::now();
    let slack = SlackServer::start();
    let msg = json!({
        "channel": slack.channel(),
        "text": "tradeflow: 1,234 trades in the last hour",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "tradeflow hourly report"}},
            section("*BTCUSDT* 1,000 trades"),
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Trades*\n1,234"}]},
            {"type": "divider"},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "fresh 3 s ago"}]},
        ],
    });
    let a = post(&slack, msg.clone()).await;
    assert_eq!(a.error(), "ok", "{}", a.text());
    let v = a.json();
    assert_eq!(v["channel"], "C0TRADEFLOW");
    assert!(v["ts"].as_str().unwrap().contains('.'));
    // By channel name too, and as a form body with the token as a parameter.
    let a = post(
        &slack,
        json!({"channel": "#tradeflow-reports", "text": "plain"}),
    )
    .await;
    assert_eq!(a.error(), "ok");
    let form = format!(
        "token={}&channel=C0TRADEFLOW&text=from+a+form",
        slack.token()
    );
    let url = format!("{}chat.postMessage", slack.api_url());
    let a = call(
        "POST",
        &url,
        &[("content-type", "application/x-www-form-urlencoded")],
        form,
    )
    .await;
    assert_eq!(a.error(), "ok");

    let posts = slack.messages();
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[0], msg, "recorded as sent");
    assert_eq!(posts[2]["text"], "from a form");
    assert!(posts[2].get("token").is_none(), "the token is not kept");

    let hook = call(
        "POST",
        &slack.webhook_url(),
        &[("content-type", "application/json")],
        json!({"text": "report failed: Redis unreachable"}).to_string(),
    )
    .await;
    assert_eq!((hook.status, hook.text().as_str()), (200, "ok"));
    assert_eq!(
        slack.webhook_posts(),
        [json!({"text": "report failed: Redis unreachable"})]
    );
    assert!(slack.rejections().is_empty(), "{:?}", slack.rejections());
    eprintln!("valid messages: {:?}", t0.elapsed());
}

#[tokio::test]
async fn invalid_web_api_calls_get_slacks_errors() {
    let slack = SlackServer::start();
    let url = format!("{}chat.postMessage", slack.api_url());
    let json_ct = ("content-type", "application/json");
    let ok = json!({"channel": slack.channel(), "text": "hi"}).to_string();
    // Authentication and encoding.
    assert_eq!(
        call("POST", &url, &[json_ct], ok.clone()).await.error(),
        "not_authed"
    );
    let a = call(
        "POST",
        &url,
        &[json_ct, ("authorization", "Bearer xoxb-wrong")],
        ok.clone(),
    )
    .await;
    assert_eq!(a.error(), "invalid_auth");
    // A JSON body must carry its token in the header, not the body.
    let in_body = json!({"token": slack.token(), "channel": slack.channel(), "text": "x"});
    assert_eq!(
        call("POST", &url, &[json_ct], in_body.to_string())
            .await
            .error(),
        "not_authed"
    );
    let auth = format!("Bearer {}", slack.token());
    let a_h = ("authorization", auth.as_str());
    assert_eq!(
        call("POST", &url, &[a_h], ok.clone()).await.error(),
        "missing_post_type"
    );
    let a = call(
        "POST",
        &url,
        &[a_h, ("content-type", "text/csv")],
        ok.clone(),
    )
    .await;
    assert_eq!(a.error(), "invalid_post_type");
    assert_eq!(
        call("POST", &url, &[a_h, json_ct], "{\"channel\":")
            .await
            .error(),
        "invalid_json"
    );
    assert_eq!(
        call("POST", &url, &[a_h, json_ct], "[1]").await.error(),
        "json_not_object"
    );

    // Message rules.
    let ch = slack.channel().to_string();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"text": "no channel"}), "channel_not_found"),
        (
            json!({"channel": "C0NOSUCH", "text": "x"}),
            "channel_not_found",
        ),
        (json!({"channel": ch}), "no_text"),
        (
            json!({"channel": ch, "text": "x".repeat(40_001)}),
            "msg_too_long",
        ),
        (
            json!({"channel": ch, "text": "t", "blocks": vec![section("a"); 51]}),
            "invalid_blocks",
        ),
        (
            json!({"channel": ch, "text": "t", "blocks": [section(&"s".repeat(3001))]}),
            "invalid_blocks",
        ),
        (
            json!({"channel": ch, "text": "t", "blocks": [{"type": "header",
            "text": {"type": "plain_text", "text": "h".repeat(151)}}]}),
            "invalid_blocks",
        ),
        (
            json!({"channel": ch, "text": "t", "blocks": [{"type": "section",
            "fields": vec![json!({"type": "mrkdwn", "text": "f"}); 11]}]}),
            "invalid_blocks",
        ),
        (
            json!({"channel": ch, "text": "t", "blocks": "[not json"}),
            "invalid_blocks_format",
        ),
        (
            json!({"channel": ch, "blocks": [section("no fallback text")]}),
            "no_text",
        ),
    ];
    for (body, want) in &cases {
        let a = post(&slack, body.clone()).await;
        let shown: String = body.to_string().chars().take(120).collect();
        assert_eq!(a.error(), *want, "{shown}: {}", a.text());
    }
    // Exactly at the limits is fine.
    let at_limits = json!({"channel": ch, "text": "x".repeat(40_000), "blocks": [
        section(&"s".repeat(3000)),
        {"type": "header", "text": {"type": "plain_text", "text": "h".repeat(150)}}]});
    assert_eq!(post(&slack, at_limits).await.error(), "ok");
    // invalid_blocks says where, as Slack does.
    let a = post(
        &slack,
        json!({"channel": ch, "text": "t", "blocks": [section(&"s".repeat(3001))]}),
    )
    .await;
    assert_eq!(
        a.json()["errors"],
        json!(["must be less than 3001 characters [json-pointer:/blocks/0/text/text]"])
    );
    assert_eq!(
        slack.messages().len(),
        1,
        "only the valid message is recorded"
    );
    let unknown = call(
        "POST",
        &format!("{}chat.postMessagee", slack.api_url()),
        &[a_h],
        "",
    )
    .await;
    assert_eq!(unknown.error(), "unknown_method");
}

#[tokio::test]
async fn the_webhook_checks_its_path_and_payload() {
    let slack = SlackServer::start();
    let url = slack.webhook_url();
    let json_ct = [("content-type", "application/json")];
    let wrong_secret = format!("{}X", url);
    let a = call("POST", &wrong_secret, &json_ct, "{\"text\":\"x\"}").await;
    assert_eq!((a.status, a.text().as_str()), (403, "invalid_token"));
    let other = format!("http://{}/services/T1/B1/abc", slack.addr());
    let a = call("POST", &other, &json_ct, "{\"text\":\"x\"}").await;
    assert_eq!((a.status, a.text().as_str()), (404, "no_service"));
    for (ct, body, status, want) in [
        ("application/json", "{\"text\":", 400, "invalid_payload"),
        ("text/plain", "{\"text\":\"x\"}", 400, "invalid_payload"),
        ("application/json", "{}", 400, "no_text"),
        (
            "application/json",
            "{\"blocks\":[{\"type\":\"divider\"}]}",
            400,
            "no_text",
        ),
    ] {
        let a = call("POST", &url, &[("content-type", ct)], body).await;
        assert_eq!((a.status, a.text().as_str()), (status, want), "{body}");
    }
    let long = json!({"text": "x".repeat(40_001)}).to_string();
    assert_eq!(
        call("POST", &url, &json_ct, long).await.text(),
        "msg_too_long"
    );
    let bad = json!({"text": "t", "blocks": [section(&"s".repeat(3001))]}).to_string();
    assert_eq!(
        call("POST", &url, &json_ct, bad).await.text(),
        "invalid_blocks"
    );
    // Form-encoded with the JSON in `payload`, as Slack also accepts.
    let form = "payload=%7B%22text%22%3A%22via+form%22%7D";
    let a = call(
        "POST",
        &url,
        &[("content-type", "application/x-www-form-urlencoded")],
        form,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(slack.webhook_posts(), [json!({"text": "via form"})]);
}

#[test]
fn the_server_stops_when_dropped() {
    let slack = SlackServer::start();
    let addr = slack.addr();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(slack);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening on {addr}"
    );
}
