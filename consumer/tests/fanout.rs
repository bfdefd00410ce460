//! Enhanced fan-out against real kinesis-mock (its TLS port, trusted through
//! `--kinesis-ca-file` with a CA made here), dynalite and redis-server: the real
//! consumer binary with `--fan-out` reads while a writer puts consecutive trade ids,
//! is restarted (resumes after the last record: nothing counted twice), and reads
//! through a split (parent to its end, then the children). Counts must be exact. The
//! 5-minute renewal is unit-tested in `shard::fanout` (too slow to wait for here).

mod e2e_support;
mod fleet_support;

use std::path::Path;
use std::time::Duration;

use e2e_support::{create_stream, Stack, STREAM};
use fleet_support::*;
use tradeflow_shared::testkit;

/// The test CA and server certificate (testkit), in kinesis-mock's `server.json` shape;
/// returns (server.json path, CA PEM path).
fn make_certs(dir: &Path) -> (String, String) {
    testkit::tls_certificates(dir);
    let key = std::fs::read_to_string(dir.join("server.key")).unwrap();
    let cert = std::fs::read_to_string(dir.join("server.pem")).unwrap();
    let json = serde_json::json!({ "server": { "key": key, "cert": cert } });
    let path = dir.join("server.json");
    std::fs::write(&path, json.to_string()).unwrap();
    (
        path.display().to_string(),
        dir.join("ca.pem").display().to_string(),
    )
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn total(stack: &Stack, syms: &[String]) -> u64 {
    let want = syms.iter().map(|s| (s.clone(), 0)).collect();
    stack.counts(&want).await.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_reads_exactly_across_restart_renewals_and_a_split() {
    testkit::local_aws_env();
    let dir = tempfile::tempdir().expect("temp dir");
    let (server_json, ca) = make_certs(dir.path());
    // kinesis-mock reads its TLS certificate from here (inherited by the child).
    std::env::set_var("KINESIS_MOCK_CERT_PATH", &server_json);
    let stack = Stack {
        redis: testkit::redis(),
        dynamodb: testkit::dynalite(),
        kinesis: testkit::kinesis_mock(),
        dir,
    };
    let kin = stack.kinesis_client().await;
    create_stream(&kin, STREAM, 1).await;
    let tls = format!(
        "https://127.0.0.1:{}",
        stack.kinesis.tls_port.expect("kinesis-mock TLS port")
    );
    let fan_out_args = |name: &'static str| {
        vec![
            "--fan-out".to_string(),
            name.to_string(),
            "--kinesis-endpoint".to_string(),
            tls.clone(),
            "--kinesis-ca-file".to_string(),
            ca.clone(),
        ]
    };

    let routes = routes(&kin, 4).await;
    let syms: Vec<String> = routes.iter().map(|r| r.symbol.clone()).collect();
    let writer = Writer::start(
        kin.clone(),
        routes,
        Format::Json,
        Duration::from_millis(100),
        None,
    );

    let mut first = consumer(&stack, "f1", &strs(&fan_out_args("fanout-one")));
    wait_for(
        "the first consumer to count",
        Duration::from_secs(60),
        || async { (total(&stack, &syms).await >= 80).then_some(()) },
    )
    .await;
    let addr = metrics_addr(&first).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let subs = scrape(&addr, "tradeflow_consumer_fanout_subscriptions_total");
    assert!(subs >= 1.0, "no subscription counted: {subs}");
    assert!(
        first.terminate(Duration::from_secs(20)),
        "f1 did not stop cleanly:\n{}",
        first.output()
    );

    // Restart while the writer goes on: the new process resumes after the last record.
    // It subscribes as another stream consumer because kinesis-mock keeps the stopped
    // process's subscription for its full 5 minutes (ResourceInUse until then; the
    // reader retries that with backoff, as after a lease move on AWS).
    let second = consumer(&stack, "f2", &strs(&fan_out_args("fanout-two")));
    let addr = metrics_addr(&second).await;
    let before = total(&stack, &syms).await;
    wait_for(
        "the second consumer to count",
        Duration::from_secs(60),
        || async { (total(&stack, &syms).await >= before + 40).then_some(()) },
    )
    .await;

    // Split while subscribed: the parent ends (ChildShards), then the children are read.
    let parent = kin
        .list_shards()
        .stream_name(STREAM)
        .send()
        .await
        .expect("ListShards")
        .shards()[0]
        .shard_id()
        .to_string();
    kin.split_shard()
        .stream_name(STREAM)
        .shard_to_split(&parent)
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .expect("SplitShard");
    let after_split = total(&stack, &syms).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while total(&stack, &syms).await < after_split + 80 {
        assert!(
            std::time::Instant::now() < deadline,
            "no records read after the split:\n{}",
            second.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last_ids = writer.stop().await;
    assert_exact(&stack, &last_ids, &[&first, &second]).await;

    assert!(
        !events_with(&second, "checkpointed SHARD_END").is_empty(),
        "the parent was not finished:\n{}",
        second.output()
    );
    assert_eq!(
        scrape(&addr, "tradeflow_consumer_duplicates_skipped_total"),
        0.0,
        "the restart re-delivered records"
    );
}
