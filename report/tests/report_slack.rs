//! `tradeflow-report slack` end to end: Redis filled by the consumer's real sink, the
//! binary run as the timer runs it, and the test kit's local Slack
//! (`testkit::slack`), which checks every request against Slack's documented rules
//! (Block Kit limits, the upload flow, the auth header) and records what it accepted.
//! The charts are decoded back and left in `target/test-artifacts/` with the message's
//! Block Kit JSON, for a person to look at.

use crate::redis_common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis_common::*;
use serde_json::Value;
use tradeflow_consumer::apply::fold;
use tradeflow_shared::testkit::slack::{Endpoint, Fault, SlackServer};
use tradeflow_shared::testkit::{self, Service};
use tradeflow_shared::{Fixed8, Symbol, Trade};

pub const P: &str = "tf:";

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `n` trades of `sym` at `price`, spread over the last `minutes` minutes (newest 2 s ago).
pub fn trades(sym: &str, n: u64, price: &str, minutes: u64) -> Vec<Trade> {
    let now = now_ms() - 2_000;
    (1..=n)
        .map(|id| Trade {
            symbol: Symbol::new(sym).unwrap(),
            trade_id: id,
            price: Fixed8::parse(price).unwrap(),
            qty: Fixed8::parse("0.5").unwrap(),
            trade_time_ms: now - (n - id) * minutes * 60_000 / n.max(1),
            event_time_ms: now,
            buyer_is_maker: id % 2 == 0,
        })
        .collect()
}

/// Applies `trades` through the consumer's sink, 500 per batch.
pub async fn fill(redis: &Service, trades: &[Trade]) {
    let sink = sink(redis, P).await;
    for chunk in shard_of(trades).chunks(500) {
        sink.apply(STREAM, "shardId-0", &fold(chunk)).await.unwrap();
    }
}

/// A realistic hour: priced pairs (direct and through BTC) and one pair without a price.
pub fn market() -> Vec<Trade> {
    let mut t = trades("BTCUSDT", 900, "60000", 50);
    t.extend(trades("ETHUSDT", 600, "3000", 50));
    t.extend(trades("BNBUSDT", 300, "600", 40));
    t.extend(trades("ETHBTC", 200, "0.05", 30));
    t.extend(trades("SOLUSDT", 120, "150", 20));
    t.extend(trades("XYZQQQ", 80, "1", 10));
    t.extend(trades("DOGEUSDT", 40, "0.1", 5));
    t
}

/// Runs `tradeflow-report slack` with `env` (Redis and the key prefix set here).
pub async fn report(redis_url: &str, env: &[(&str, String)], args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tradeflow-report"));
    cmd.arg("slack")
        .args(args)
        .env("TRADEFLOW_REDIS_URL", redis_url)
        .env("TRADEFLOW_KEY_PREFIX", P)
        .env("TRADEFLOW_LOG", "warn")
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    for v in [
        "TRADEFLOW_SLACK_TOKEN",
        "TRADEFLOW_SLACK_WEBHOOK_URL",
        "TRADEFLOW_SLACK_SSM_PARAMETER",
        "TRADEFLOW_SLACK_CHANNEL",
        "TRADEFLOW_REPORT_PRICES",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the report finishes within a minute")
        .unwrap();
    (out, started.elapsed())
}

/// The environment for a bot token posting to the kit's channel.
pub fn bot_env(slack: &SlackServer) -> Vec<(&'static str, String)> {
    vec![
        ("TRADEFLOW_SLACK_TOKEN", slack.token().to_string()),
        ("TRADEFLOW_SLACK_CHANNEL", slack.channel().to_string()),
        ("TRADEFLOW_SLACK_API_URL", slack.api_url()),
    ]
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every mrkdwn/plain text of a message's blocks, one string.
pub fn block_text(blocks: &Value) -> String {
    let mut out = String::new();
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(t)) = m.get("text") {
                    out.push_str(t);
                    out.push('\n');
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(blocks, &mut out);
    out
}

/// Decodes a PNG: (width, height, distinct colours among a sample of pixels).
pub fn decode_png(bytes: &[u8]) -> (u32, u32, usize) {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = dec.read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let px = &buf[..info.buffer_size()];
    let colours: std::collections::HashSet<&[u8]> = px.chunks(3).step_by(97).collect();
    (info.width, info.height, colours.len())
}

#[tokio::test]
async fn bot_posts_the_report_and_its_charts_from_redis() {
    let redis = testkit::redis();
    fill(&redis, &market()).await;
    let slack = SlackServer::start();
    // Slack's edge hiccups on the way: a 429 (Retry-After: 0) and a 503, both retried.
    slack.fail_next(
        Endpoint::GetUploadUrl,
        1,
        Fault::RateLimited { retry_after: 0 },
    );
    slack.fail_next(Endpoint::CompleteUpload, 1, Fault::Status(503));
    let (out, took) = report(&url(&redis), &bot_env(&slack), &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(slack.rejections().is_empty(), "{:?}", slack.rejections());
    assert!(!stderr(&out).contains(slack.token()));
    assert_eq!(slack.calls(Endpoint::GetUploadUrl), 3, "2 files, 1 retry");
    assert_eq!(slack.calls(Endpoint::CompleteUpload), 2, "1 call, 1 retry");

    let msgs = slack.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = &msgs[0];
    assert_eq!(m["channel"], slack.channel());
    let text = block_text(&m["blocks"]);
    for want in [
        "*Trades*\n2,240",
        "*Symbols*\n7",
        "*Top 7 by trades*\n1. *BTCUSDT* 900 · 40.2 %",
        // 450 BTC at 60,000.
        "*Top 6 by USD value*\n1. *BTCUSDT* $27,000,000.00 · 900 trades",
        // 100 ETH at 0.05 BTC = 3,000 USD: through BTC.
        "*ETHBTC* $300,000.00 · 200 trades",
        "*Unvalued* (1 without a USD price)\nXYZQQQ",
        "*Trades per minute, last hour*",
        "USD prices: redis",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .starts_with("tradeflow report: 2,240 trades in 7 symbols"),
        "{}",
        m["text"]
    );
    std::fs::write(
        artifacts().join("slack-message.json"),
        serde_json::to_string_pretty(m).unwrap(),
    )
    .unwrap();

    let ups = slack.uploads();
    assert_eq!(ups.len(), 2, "{ups:?}");
    for (u, (w, h)) in ups.iter().zip([(1200, 700), (1200, 560)]) {
        assert_eq!(u.channel.as_deref(), Some(slack.channel()), "{u:?}");
        let bytes = u.bytes.as_ref().expect("uploaded");
        let (dw, dh, colours) = decode_png(bytes);
        assert_eq!((dw, dh), (w, h), "{}", u.filename);
        assert!(
            colours > 4,
            "{} looks empty ({colours} colours)",
            u.filename
        );
        std::fs::write(artifacts().join(format!("slack-{}", u.filename)), bytes).unwrap();
    }
    assert_eq!(ups[0].filename, "tradeflow-treemap.png");
    let alt = ups[0].alt_txt.as_deref().unwrap();
    assert!(
        alt.contains("N=2,240") && alt.contains("BTCUSDT 900"),
        "{alt}"
    );
    assert!(ups[1]
        .alt_txt
        .as_deref()
        .unwrap()
        .contains("BTCUSDT 900 trades"));
    eprintln!("bot end to end: {} ms", took.as_millis());
}

#[tokio::test]
async fn webhook_posts_text_only_and_waits_out_a_429() {
    let redis = testkit::redis();
    fill(&redis, &market()).await;
    let slack = SlackServer::start();
    slack.fail_next(Endpoint::Webhook, 1, Fault::RateLimited { retry_after: 1 });
    let env = [("TRADEFLOW_SLACK_WEBHOOK_URL", slack.webhook_url())];
    let (out, took) = report(&url(&redis), &env, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(slack.calls(Endpoint::Webhook), 2);
    assert!(took >= Duration::from_secs(1), "waited {took:?}");
    let posts = slack.webhook_posts();
    assert_eq!(posts.len(), 1);
    assert!(block_text(&posts[0]["blocks"]).contains("*BTCUSDT* 900"));
    assert!(slack.uploads().is_empty());
    assert!(
        !stderr(&out).contains("testkitWebhookSecret"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn empty_redis_says_so_without_charts() {
    let redis = testkit::redis();
    let slack = SlackServer::start();
    let (out, _) = report(&url(&redis), &bot_env(&slack), &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let msgs = slack.messages();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0]["text"]
        .as_str()
        .unwrap()
        .contains("Redis holds no trades yet"));
    assert_eq!(slack.calls(Endpoint::GetUploadUrl), 0);
}

#[tokio::test]
async fn five_thousand_symbols_make_a_bounded_message_and_chart() {
    let redis = testkit::redis();
    let mut all = Vec::new();
    for i in 0..5_000u64 {
        // Half priced (…USDT), half not (…QQQ); counts 1..=3 so the ranking has ties.
        let sym = if i % 2 == 0 {
            format!("S{i}USDT")
        } else {
            format!("S{i}QQQ")
        };
        all.extend(trades(&sym, 1 + i % 3, "2", 30));
    }
    fill(&redis, &all).await;
    let slack = SlackServer::start();
    let (out, took) = report(&url(&redis), &bot_env(&slack), &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(slack.rejections().is_empty(), "{:?}", slack.rejections());
    let m = &slack.messages()[0];
    let blocks = m["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50);
    let text = block_text(&m["blocks"]);
    assert!(text.contains("…and 4,990 more symbols"), "{text}");
    assert!(
        text.contains("*Unvalued* (2,500 without a USD price)"),
        "{text}"
    );
    assert!(text.contains("…and 2,460 more symbols"), "{text}");
    let ups = slack.uploads();
    let alt = ups[0].alt_txt.as_deref().unwrap();
    assert!(alt.contains("N=9,999"), "{alt}");
    assert!(decode_png(ups[0].bytes.as_ref().unwrap()).2 > 4);
    std::fs::write(
        artifacts().join("slack-treemap-5000.png"),
        ups[0].bytes.as_ref().unwrap(),
    )
    .unwrap();
    eprintln!("5,000 symbols: {} ms", took.as_millis());
}
