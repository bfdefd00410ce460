//! The upload flow and the injected faults.

use serde_json::{json, Value};

use super::{call, post, Answer};
use crate::testkit::slack::{Endpoint, Fault, SlackServer};

async fn upload_url(slack: &SlackServer, filename: &str, length: usize) -> Answer {
    let auth = format!("Bearer {}", slack.token());
    let url = format!("{}files.getUploadURLExternal", slack.api_url());
    let form = format!("filename={filename}&length={length}&alt_txt=Trades+per+symbol");
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    call("POST", &url, &h, form).await
}

async fn complete(slack: &SlackServer, body: Value) -> Answer {
    let auth = format!("Bearer {}", slack.token());
    let url = format!("{}files.completeUploadExternal", slack.api_url());
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    call("POST", &url, &h, body.to_string()).await
}

#[tokio::test]
async fn files_go_through_the_three_step_upload_flow() {
    let slack = SlackServer::start();
    let png: Vec<u8> = [b"\x89PNG\r\n\x1a\n".as_slice(), &[0u8, 1, 2, 255, 13, 10]].concat();

    // 1. URL and id; 2. raw bytes; 3. share to the channel.
    let a = upload_url(&slack, "treemap.png", png.len()).await;
    assert_eq!(a.error(), "ok", "{}", a.text());
    let (up_url, id) = (
        a.json()["upload_url"].as_str().unwrap().to_string(),
        a.json()["file_id"].as_str().unwrap().to_string(),
    );
    let u = call(
        "POST",
        &up_url,
        &[("content-type", "application/octet-stream")],
        png.clone(),
    )
    .await;
    assert_eq!((u.status, u.text()), (200, format!("OK - {}", png.len())));
    let done = complete(
        &slack,
        json!({"files": [{"id": id, "title": "Trades per symbol"}],
        "channel_id": slack.channel(), "initial_comment": "hourly charts"}),
    )
    .await;
    assert_eq!(done.error(), "ok", "{}", done.text());
    assert_eq!(done.json()["files"][0]["id"], id.as_str());

    // The same with a GET for the URL and a multipart upload.
    let auth = format!("Bearer {}", slack.token());
    let q = format!(
        "{}files.getUploadURLExternal?filename=tpm.png&length={}",
        slack.api_url(),
        png.len()
    );
    let a = call("GET", &q, &[("authorization", auth.as_str())], "").await;
    assert_eq!(a.error(), "ok");
    let (up2, id2) = (
        a.json()["upload_url"].as_str().unwrap().to_string(),
        a.json()["file_id"].as_str().unwrap().to_string(),
    );
    let mut body = b"--b0und\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"tpm.png\"\r\nContent-Type: image/png\r\n\r\n".to_vec();
    body.extend(&png);
    body.extend(b"\r\n--b0und--\r\n");
    let u = call(
        "POST",
        &up2,
        &[("content-type", "multipart/form-data; boundary=b0und")],
        body,
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.text());
    let done = complete(
        &slack,
        json!({"files": [{"id": id2}], "channel_id": slack.channel()}),
    )
    .await;
    assert_eq!(done.error(), "ok");

    let ups = slack.uploads();
    assert_eq!(ups.len(), 2);
    assert_eq!(
        ups[0].bytes.as_deref(),
        Some(png.as_slice()),
        "raw bytes kept"
    );
    assert_eq!(
        ups[1].bytes.as_deref(),
        Some(png.as_slice()),
        "multipart bytes kept"
    );
    assert_eq!(
        (ups[0].sent_as, ups[1].sent_as),
        (Some("raw"), Some("multipart"))
    );
    assert_eq!(ups[0].filename, "treemap.png");
    assert_eq!(ups[0].alt_txt.as_deref(), Some("Trades per symbol"));
    assert_eq!(ups[0].title.as_deref(), Some("Trades per symbol"));
    assert_eq!(ups[0].channel.as_deref(), Some("C0TRADEFLOW"));
    assert_eq!(
        ups[0].completed.as_ref().unwrap()["initial_comment"],
        "hourly charts"
    );

    // Refusals: length 0, no filename, wrong byte count, unknown or unfinished ids,
    // a second completion, no channel, an unknown channel.
    assert_eq!(
        upload_url(&slack, "x.png", 0).await.error(),
        "missing_argument"
    );
    assert_eq!(upload_url(&slack, "", 3).await.error(), "invalid_arguments");
    let a = upload_url(&slack, "short.png", 10).await;
    let (up3, id3) = (
        a.json()["upload_url"].as_str().unwrap().to_string(),
        a.json()["file_id"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        call("POST", &up3, &[], vec![1u8; 9]).await.status,
        400,
        "9 bytes of 10"
    );
    let c = slack.channel().to_string();
    for (body, want) in [
        (
            json!({"files": [{"id": "F0NOSUCH"}], "channel_id": c}),
            "file_not_found",
        ),
        (
            json!({"files": [{"id": id3}], "channel_id": c}),
            "file_not_found",
        ),
        (
            json!({"files": [{"id": id}], "channel_id": c}),
            "file_not_found",
        ),
        (json!({"files": [], "channel_id": c}), "invalid_arguments"),
        (json!({"files": [{"id": id3}]}), "invalid_arguments"),
        (
            json!({"files": [{"id": id3}], "channel_id": "C0NOSUCH"}),
            "channel_not_found",
        ),
    ] {
        assert_eq!(complete(&slack, body.clone()).await.error(), want, "{body}");
    }
    assert_eq!(
        call("POST", &up3, &[], vec![1u8; 10]).await.status,
        200,
        "then all 10"
    );
    assert_eq!(
        call("POST", &up3, &[], vec![1u8; 10]).await.status,
        400,
        "only once"
    );
}

#[tokio::test]
async fn errors_are_injected_on_demand() {
    let slack = SlackServer::start();
    let msg = json!({"channel": slack.channel(), "text": "x"});
    slack.fail_next(
        Endpoint::PostMessage,
        2,
        Fault::RateLimited { retry_after: 3 },
    );
    slack.fail_next(
        Endpoint::PostMessage,
        1,
        Fault::Error("invalid_auth".into()),
    );
    for _ in 0..2 {
        let a = post(&slack, msg.clone()).await;
        assert_eq!(a.status, 429);
        assert_eq!(a.headers["retry-after"], "3");
        assert_eq!(a.json(), json!({"ok": false, "error": "ratelimited"}));
    }
    assert_eq!(post(&slack, msg.clone()).await.error(), "invalid_auth");
    assert_eq!(post(&slack, msg.clone()).await.error(), "ok");
    assert_eq!(
        (slack.calls(Endpoint::PostMessage), slack.messages().len()),
        (4, 1)
    );

    slack.fail_next(
        Endpoint::Webhook,
        1,
        Fault::Error("channel_not_found".into()),
    );
    slack.fail_next(Endpoint::Webhook, 1, Fault::RateLimited { retry_after: 1 });
    slack.fail_next(Endpoint::Webhook, 1, Fault::Status(503));
    let hook_url = slack.webhook_url();
    let hook = |body: &'static str| {
        call(
            "POST",
            &hook_url,
            &[("content-type", "application/json")],
            body,
        )
    };
    let a = hook("{\"text\":\"x\"}").await;
    assert_eq!((a.status, a.text().as_str()), (404, "channel_not_found"));
    let a = hook("{\"text\":\"x\"}").await;
    assert_eq!(
        (a.status, a.headers["retry-after"].to_str().unwrap()),
        (429, "1")
    );
    assert_eq!(hook("{\"text\":\"x\"}").await.status, 503);
    assert_eq!(hook("{\"text\":\"x\"}").await.status, 200);

    slack.fail_next(
        Endpoint::GetUploadUrl,
        1,
        Fault::Error("ratelimited".into()),
    );
    assert_eq!(upload_url(&slack, "a.png", 1).await.error(), "ratelimited");
}
