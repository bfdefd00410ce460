//! The lean GetRecords path (records read from the raw body, `shard::lean`) against
//! both emulators, ferrokinesis and kinesis-mock, behind the fault proxy answering a
//! share of the GetRecords calls with throttling, an expired iterator, a 500 or a 200
//! cut short: every record — plain trades, KPL aggregates, a poison record whose
//! base64 holds `+` and `/` — is handed out once, in order, with its exact data, and
//! the pages were read the lean way.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tradeflow_consumer::record::Item;
use tradeflow_consumer::shard::reader::{ReaderConfig, ShardReader, StartPosition};
use tradeflow_shared::kpl::Aggregator;
use tradeflow_shared::testkit::api_faults::{Fault, FaultProxy, Rule};
use tradeflow_shared::testkit::{self, Service};

fn trade(id: u64) -> String {
    format!(
        r#"{{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":{id},"p":"1.5","q":"2","T":1717000000120,"m":true,"M":true}}"#
    )
}

/// What each user record should come out as: a trade id, or poison data.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    Trade(u64),
    Poison(Vec<u8>),
}

/// 300 plain trades, 5 aggregates of 20, and a poison record, put in that order.
fn records() -> (Vec<Vec<u8>>, Vec<Want>) {
    let mut datas = Vec::new();
    let mut want = Vec::new();
    for id in 0..300 {
        datas.push(trade(id).into_bytes());
        want.push(Want::Trade(id));
    }
    for a in 0..5 {
        let mut agg = Aggregator::new();
        for j in 0..20 {
            let id = 1_000 + a * 20 + j;
            agg.push("BTCUSDT", trade(id).as_bytes());
            want.push(Want::Trade(id));
        }
        datas.push(agg.finish());
    }
    // 0xfb 0xff 0xbf encodes as "+/+/": the characters a JSON writer may escape.
    let poison = [0xfb, 0xff, 0xbf].repeat(40);
    datas.push(poison.clone());
    want.push(Want::Poison(poison));
    (datas, want)
}

async fn read_all_through_faults(emulator: &Service, stream: &str) {
    testkit::local_aws_env();
    let direct = testkit::kinesis_client_at(&emulator.endpoint()).await;
    testkit::create_active_stream(&direct, stream, 1)
        .await
        .unwrap();
    let (datas, want) = records();
    for chunk in datas.chunks(100) {
        let entries = chunk
            .iter()
            .map(|d| {
                PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .data(Blob::new(d.clone()))
                    .build()
                    .unwrap()
            })
            .collect::<Vec<_>>();
        let out = direct
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
    let shard = direct
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap()
        .shards()[0]
        .shard_id()
        .to_string();

    let proxy = FaultProxy::start(&emulator.endpoint(), 24).await.unwrap();
    // The first matching rule decides a call: one fault kind at a time, in turn.
    let kinds = [
        Fault::Throttle,
        Fault::ExpiredIterator,
        Fault::ServerError,
        Fault::Truncate,
    ];
    let client = testkit::kinesis_client_at(&proxy.endpoint()).await;
    let cfg = ReaderConfig {
        // Small pages: many calls, so every fault kind is met.
        max_records: 25,
        min_call_interval: Duration::from_millis(5),
        idle_interval: Duration::from_millis(20),
        idle_max_wait: Duration::from_millis(80),
        max_backoff: Duration::from_millis(50),
        ..ReaderConfig::default()
    };
    let mut reader = ShardReader::new(client, stream, &shard, StartPosition::TrimHorizon, cfg);
    let mut got = Vec::new();
    let mut turn = 0;
    while got.len() < want.len() {
        proxy.set_rules(vec![Rule::sometimes(
            "GetRecords",
            kinds[turn % kinds.len()],
            0.5,
        )]);
        turn += 1;
        let batch = tokio::time::timeout(Duration::from_secs(60), reader.next_batch())
            .await
            .expect("a page within 60 s")
            .unwrap();
        for r in &batch.records {
            got.push(match &r.item {
                Item::Trade(t) => Want::Trade(t.trade_id),
                Item::Poison(p) => Want::Poison(p.data.clone()),
                Item::Ignored => panic!("ignored item at {:?}", r.pos),
            });
        }
    }
    assert_eq!(got, want, "every record once, in order, exact");
    let stats = proxy.stats();
    for kind in ["throttle", "expired_iterator", "500", "truncated"] {
        let n: u64 = stats
            .faults
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, n)| n)
            .sum();
        assert!(n > 0, "no {kind} fault was injected: {stats:?}");
    }
    assert!(
        reader.lean_pages() > 0,
        "no page was read the lean way ({} pages)",
        reader.lean_pages()
    );
}

#[tokio::test]
async fn lean_get_records_through_faults_ferrokinesis() {
    let emulator = testkit::ferrokinesis_volatile(&[]);
    read_all_through_faults(&emulator, "lean-ferro").await;
}

#[tokio::test]
async fn lean_get_records_through_faults_kinesis_mock() {
    let emulator = testkit::kinesis_mock();
    read_all_through_faults(&emulator, "lean-mock").await;
}
