//! Helpers shared by the producer's integration tests: a Kinesis client for a local
//! emulator, stream creation, reading a whole stream back, and checking trades.
#![allow(dead_code)]

pub mod feed;
pub mod proxy;
pub mod rest_front;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use tradeflow_shared::aws::AwsArgs;

pub fn aws_args(endpoint: &str) -> AwsArgs {
    AwsArgs {
        region: "eu-west-1".into(),
        kinesis_endpoint: Some(endpoint.to_string()),
        dynamodb_endpoint: None,
    }
}

pub async fn client(endpoint: &str) -> Client {
    tradeflow_shared::testkit::local_aws_env();
    let args = aws_args(endpoint);
    let conf = tradeflow_shared::aws::sdk_config(&args).await;
    tradeflow_shared::aws::kinesis_client(&conf, &args)
}

pub async fn create_stream(c: &Client, name: &str, shards: i32) {
    c.create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("create stream");
    for _ in 0..200 {
        let d = c
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("describe stream");
        if d.stream_description_summary()
            .map(|s| s.stream_status().as_str())
            == Some("ACTIVE")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {name} never became ACTIVE");
}

/// One record as read back.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub shard: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Every record of every shard, each shard in sequence order.
pub async fn read_stream(c: &Client, name: &str) -> Vec<ReadRecord> {
    let shards = c
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .expect("list shards");
    let mut out = Vec::new();
    for s in shards.shards() {
        let mut it = c
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(s.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator")
            .shard_iterator()
            .map(str::to_string);
        let mut empty = 0;
        while let Some(i) = it {
            let r = c
                .get_records()
                .shard_iterator(&i)
                .limit(10_000)
                .send()
                .await
                .expect("get records");
            if r.records().is_empty() {
                empty += 1;
                if empty >= 2 {
                    break;
                }
            }
            for rec in r.records() {
                out.push(ReadRecord {
                    shard: s.shard_id().to_string(),
                    partition_key: rec.partition_key().unwrap_or_default().to_string(),
                    data: rec.data().as_ref().to_vec(),
                });
            }
            it = r.next_shard_iterator().map(str::to_string);
        }
    }
    out
}

/// Every trade in the records (de-aggregating KPL aggregates) as (symbol, shard, id), in
/// the records' order. Panics on anything that is not a trade, or a trade whose record's
/// partition key is not its symbol.
pub fn trades(records: &[ReadRecord]) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    for r in records {
        let datas: Vec<Vec<u8>> = if tradeflow_shared::kpl::has_magic(&r.data) {
            tradeflow_shared::kpl::deaggregate(&r.data)
                .expect("valid aggregate")
                .iter()
                .map(|u| u.data.to_vec())
                .collect()
        } else {
            vec![r.data.clone()]
        };
        for d in datas {
            match tradeflow_shared::decode_bytes(&d).expect("a trade") {
                tradeflow_shared::Event::Trade { trade, .. } => {
                    let sym = trade.symbol.as_str().to_string();
                    assert_eq!(r.partition_key, sym, "partition key is the symbol");
                    out.push((sym, r.shard.clone(), trade.trade_id));
                }
                other => panic!("not a trade: {other:?}"),
            }
        }
    }
    out
}

/// The trades in the records as symbol → trade ids in stream order. Panics as `trades`
/// does, and on a symbol found on two shards.
pub fn trades_by_symbol(records: &[ReadRecord]) -> BTreeMap<String, Vec<u64>> {
    let mut by: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut shard_of: BTreeMap<String, String> = BTreeMap::new();
    for (sym, shard, id) in trades(records) {
        let prev = shard_of.entry(sym.clone()).or_insert(shard.clone());
        assert_eq!(prev, &shard, "{sym} on two shards");
        by.entry(sym).or_default().push(id);
    }
    by
}

/// Asserts each symbol's ids are exactly `1..=n` in order, and returns the total.
pub fn assert_exactly_once_in_order(by: &BTreeMap<String, Vec<u64>>) -> u64 {
    let mut total = 0;
    for (sym, ids) in by {
        let want: Vec<u64> = (1..=ids.len() as u64).collect();
        assert_eq!(
            ids, &want,
            "{sym}: trades missing, duplicated or out of order"
        );
        total += ids.len() as u64;
    }
    total
}

pub fn symbols(names: &[&str]) -> Vec<tradeflow_shared::Symbol> {
    names
        .iter()
        .map(|s| tradeflow_shared::Symbol::new(s).unwrap())
        .collect()
}

pub struct ReadRecordsAndReport {
    pub records: Vec<ReadRecord>,
    pub report: tradeflow_producer::pipeline::Report,
}

/// Runs the reference Python `aws_kinesis_agg` deaggregator over the records; returns
/// `partition key \t data` per user record. The library is installed with
/// `pip install --target <tools>/python-agg aws_kinesis_agg` (done here if missing).
pub fn python_deaggregate(records: &[ReadRecord]) -> Vec<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let target = tradeflow_shared::testkit::tools_dir().join("python-agg");
    if !target.join("aws_kinesis_agg").exists() {
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&target)
            .arg("aws_kinesis_agg")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "cannot install aws_kinesis_agg into {}",
            target.display()
        );
    }
    let script = r#"
import base64, json, sys
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
for line in sys.stdin:
    pk, hexdata = line.rstrip("\n").split("\t")
    rec = {"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": pk,
           "sequenceNumber": "1", "approximateArrivalTimestamp": 0,
           "data": base64.b64encode(bytes.fromhex(hexdata)).decode()}}
    for u in iter_deaggregate_records([rec]):
        k = u["kinesis"]
        assert "subSequenceNumber" in k, "not de-aggregated"
        sys.stdout.write(k["partitionKey"] + "\t" + base64.b64decode(k["data"]).decode() + "\n")
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PYTHONPATH", &target)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut input = String::new();
    for r in records {
        let hex: String = r.data.iter().map(|b| format!("{b:02x}")).collect();
        input.push_str(&format!("{}\t{}\n", r.partition_key, hex));
    }
    // Written from another thread: the output is larger than a pipe buffer.
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "python deaggregation failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}
