//! The polling reader against a real Kinesis emulator (ferrokinesis): pages sized to a
//! byte target as the record size changes, a read budget far smaller than the data,
//! every record handed out once and in order.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tradeflow_consumer::shard::budget::ReadBudget;
use tradeflow_consumer::shard::reader::{ReaderConfig, ShardReader, StartPosition};
use tradeflow_shared::testkit;

const TARGET: usize = 64 * 1024;

fn record(i: usize, size: usize) -> Vec<u8> {
    // Not trades: each becomes a poison item carrying its data, which is all we need.
    let mut d = format!("record {i:06} ").into_bytes();
    d.resize(size, b'x');
    d
}

#[tokio::test]
async fn pages_follow_the_record_size_within_a_small_budget() {
    testkit::local_aws_env();
    let emulator = testkit::ferrokinesis_volatile(&[]);
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let client = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::config::Builder::from(&conf)
            .endpoint_url(emulator.endpoint())
            .build(),
    );
    testkit::create_active_stream(&client, "pages", 1)
        .await
        .unwrap();
    // 1,500 small records, then 300 of 20 KiB, then small ones again.
    let sizes: Vec<usize> = (0..1500)
        .map(|_| 150)
        .chain((0..300).map(|_| 20 * 1024))
        .chain((0..500).map(|_| 150))
        .collect();
    for (chunk_no, chunk) in sizes.chunks(100).enumerate() {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(j, &size)| {
                PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .data(Blob::new(record(chunk_no * 100 + j, size)))
                    .build()
                    .unwrap()
            })
            .collect::<Vec<_>>();
        let out = client
            .put_records()
            .stream_name("pages")
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
    let shard = client
        .list_shards()
        .stream_name("pages")
        .send()
        .await
        .unwrap()
        .shards()[0]
        .shard_id()
        .to_string();

    // Budget for one page at a time (4 × target): the reader must still finish.
    let budget = ReadBudget::new(4 * TARGET);
    let cfg = ReaderConfig {
        page_target_bytes: TARGET,
        budget: budget.clone(),
        min_call_interval: Duration::from_millis(5),
        idle_interval: Duration::from_millis(20),
        idle_max_wait: Duration::from_millis(80),
        ..ReaderConfig::default()
    };
    let mut reader = ShardReader::new(client, "pages", &shard, StartPosition::TrimHorizon, cfg);
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut pages: Vec<(usize, usize)> = Vec::new(); // (records, bytes)
    while seen.len() < sizes.len() {
        let batch = tokio::time::timeout(Duration::from_secs(30), reader.next_batch())
            .await
            .expect("a page within 30 s")
            .unwrap();
        assert_eq!(budget.available_kib(), 0, "the page holds the whole budget");
        if batch.kinesis_records > 0 {
            pages.push((batch.kinesis_records, batch.bytes));
        }
        for r in &batch.records {
            match &r.item {
                tradeflow_consumer::record::Item::Poison(p) => seen.push(p.data.clone()),
                other => panic!("unexpected item {other:?}"),
            }
        }
        drop(batch);
        assert_eq!(
            budget.available_kib(),
            256,
            "dropping the page gives it back"
        );
    }
    // Every record once, in order (poison data is cut at 4 KiB; compare the prefix).
    assert_eq!(seen.len(), sizes.len());
    for (i, (data, &size)) in seen.iter().zip(&sizes).enumerate() {
        let want = record(i, size);
        assert_eq!(data[..], want[..want.len().min(data.len())], "record {i}");
    }
    // Pages stay near the target once a size is known: a page may overshoot only
    // when the record size has just grown (the first page of the large records).
    let over: Vec<&(usize, usize)> = pages.iter().filter(|(_, b)| *b > TARGET).collect();
    assert!(
        over.len() <= 1,
        "pages over the target: {over:?} of {pages:?}"
    );
    let small_pages = pages.iter().filter(|(n, _)| *n > 100).count();
    assert!(
        small_pages >= 3,
        "small records come many to a page: {pages:?}"
    );
}
