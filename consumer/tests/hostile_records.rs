//! Hostile records written straight into the stream (PutRecord to a real ferrokinesis),
//! interleaved with good trades on the same shards, read by the real
//! `tradeflow-consumer` binary. Every bad record must be counted (metric), logged once
//! with its reason, dead-lettered once in Redis, and passed; good records are counted
//! exactly; the shards' positions reach their last records; memory stays bounded; and
//! the Redis password never shows up in the consumer's output.

use crate::e2e_support;
use crate::hostile_support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use e2e_support::{bin, Proc, Stack, STREAM};
use hostile_support::corpus::{corpus, good_trade};
use tradeflow_shared::testkit;

const PASSWORD: &str = "hostile-Pa55word-93";
const PARTITION_KEY: &str = "k";
/// Hash keys that land on the first and the last of two shards.
const HASH_KEYS: [&str; 2] = ["0", "340282366920938463463374607431768211455"];
/// A loose bound on the consumer's peak resident memory after the corpus.
const MAX_HWM_KIB: u64 = 64 * 1024;

/// Where one written record landed.
struct Written {
    shard: String,
    seq: String,
}

async fn put(client: &aws_sdk_kinesis::Client, data: &[u8], shard: usize) -> Written {
    let out = client
        .put_record()
        .stream_name(STREAM)
        .partition_key(PARTITION_KEY)
        .explicit_hash_key(HASH_KEYS[shard])
        .data(Blob::new(data))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutRecord of {} bytes: {e:?}", data.len()));
    Written {
        shard: out.shard_id().to_string(),
        seq: out.sequence_number().to_string(),
    }
}

async fn redis_con(stack: &Stack) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", stack.redis.port);
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

/// The consumer's JSON log lines.
fn log_lines(p: &Proc) -> Vec<serde_json::Value> {
    p.output()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v.get(name)
        .or_else(|| v.get("fields").and_then(|f| f.get(name)))
        .and_then(|s| s.as_str())
        .unwrap_or("")
}

/// The `/proc` peak resident set of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_are_dead_lettered_once_and_good_ones_counted_exactly() {
    let stack = Stack::start(2).await;
    let mut con = {
        let client = redis::Client::open(stack.redis_url()).expect("redis url");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(PASSWORD)
            .query_async(&mut c)
            .await
            .expect("CONFIG SET requirepass");
        redis_con(&stack).await
    };
    let kinesis = stack.kinesis_client().await;
    // The oversized entries are the largest records Kinesis takes (data plus partition
    // key at 1 MiB); data above 1 MiB is refused at the door (ferrokinesis checks the
    // data alone).
    let too_big = kinesis
        .put_record()
        .stream_name(STREAM)
        .partition_key(PARTITION_KEY)
        .data(Blob::new(vec![
            b'x';
            hostile_support::corpus::MAX_RECORD_BYTES + 1
        ]))
        .send()
        .await;
    assert!(too_big.is_err(), "a record above 1 MiB was accepted");

    // Good trades around every bad record, alternating shards; each shard ends with a
    // good plain record so its final position is known.
    let entries = corpus(PARTITION_KEY.len());
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_seq: HashMap<String, String> = HashMap::new();
    let mut bad_at: Vec<Written> = Vec::new();
    let mut next_id = 1u64;
    let mut good = |shard: usize| {
        let sym = ["GOODAUSDT", "GOODBUSDT"][shard];
        next_id += 1;
        (sym, good_trade(sym, next_id))
    };
    for (i, e) in entries.iter().enumerate() {
        let shard = i % 2;
        let (sym, g) = good(shard);
        put(&kinesis, g.as_bytes(), shard).await;
        *expected.entry(sym.into()).or_default() += 1;
        bad_at.push(put(&kinesis, &e.data, shard).await);
        for (sym, _) in &e.good_inside {
            *expected.entry(sym.clone()).or_default() += 1;
        }
    }
    for shard in 0..2 {
        let (sym, g) = good(shard);
        let w = put(&kinesis, g.as_bytes(), shard).await;
        *expected.entry(sym.into()).or_default() += 1;
        last_seq.insert(w.shard, w.seq);
    }

    let mut env = stack.env();
    env.retain(|(k, _)| k != "TRADEFLOW_REDIS_URL");
    env.push((
        "TRADEFLOW_REDIS_URL".into(),
        format!("redis://:{PASSWORD}@127.0.0.1:{}", stack.redis.port),
    ));
    env.push(("TRADEFLOW_LOG_FORMAT".into(), "json".into()));
    let mut consumer = Proc::spawn(
        "consumer-hostile",
        &bin("tradeflow-consumer"),
        &testkit::consumer_args(STREAM, "tradeflow-hostile", "hostile-1", &[]),
        &env,
        stack.dir.path(),
    );

    // Wait until both shards' positions reach their last records.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut done = true;
        for (shard, seq) in &last_seq {
            let at: Option<String> = redis::cmd("HGET")
                .arg(format!("tradeflow:pos:{STREAM}:{shard}"))
                .arg("seq")
                .query_async(&mut con)
                .await
                .expect("HGET position");
            done &= at.as_deref() == Some(seq.as_str());
        }
        if done {
            break;
        }
        assert!(
            consumer.is_running(),
            "consumer exited:\n{}",
            consumer.output()
        );
        assert!(
            Instant::now() < deadline,
            "a shard is stuck before its last record:\n{}",
            consumer.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Good trades: exactly counted.
    for (sym, n) in &expected {
        let got: Option<u64> = redis::cmd("GET")
            .arg(format!("symbol:{sym}"))
            .query_async(&mut con)
            .await
            .expect("GET count");
        assert_eq!(got.unwrap_or(0), *n, "{sym}");
    }
    let symbols: Vec<String> = redis::cmd("SMEMBERS")
        .arg("tradeflow:symbols")
        .query_async(&mut con)
        .await
        .expect("SMEMBERS");
    let mut symbols_sorted = symbols.clone();
    symbols_sorted.sort();
    assert_eq!(
        symbols_sorted,
        expected.keys().cloned().collect::<Vec<_>>(),
        "no bad record may create a symbol"
    );

    // Dead letters: one per bad record, at its position, with its kind and a reason.
    let dead: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("tradeflow:dead_letter")
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .expect("XRANGE dead letters");
    let mut by_pos: HashMap<(String, String), Vec<HashMap<String, redis::Value>>> = HashMap::new();
    for id in dead.ids {
        let get = |k: &str| -> String {
            match id.map.get(k) {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("dead letter field {k}: {other:?}"),
            }
        };
        let key = (get("seq"), get("sub"));
        by_pos.entry(key).or_default().push(id.map.clone());
    }
    assert_eq!(
        by_pos.values().map(Vec::len).sum::<usize>(),
        entries.len(),
        "one dead letter per bad record, no more"
    );
    let logs = log_lines(&consumer);
    let poison_logs: Vec<&serde_json::Value> = logs
        .iter()
        .filter(|l| field(l, "message") == "poison record dead-lettered")
        .collect();
    let mut per_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for (e, w) in entries.iter().zip(&bad_at) {
        let key = (w.seq.clone(), e.sub.to_string());
        let letters = by_pos.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(letters.len(), 1, "{}: dead letters {letters:?}", e.name);
        let text = |k: &str| match letters[0].get(k) {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("{}: field {k}: {other:?}", e.name),
        };
        assert_eq!(
            text("kind"),
            e.kind,
            "{}: reason {}",
            e.name,
            text("reason")
        );
        assert!(!text("reason").is_empty(), "{}", e.name);
        assert_eq!(text("shard"), w.shard, "{}", e.name);
        let position = format!("{}/{}", w.seq, e.sub);
        let logged: Vec<_> = poison_logs
            .iter()
            .filter(|l| field(l, "position") == position)
            .collect();
        assert_eq!(logged.len(), 1, "{}: logged {logged:?}", e.name);
        assert_eq!(field(logged[0], "kind"), e.kind, "{}", e.name);
        assert!(!field(logged[0], "reason").is_empty(), "{}", e.name);
        *per_kind.entry(e.kind).or_default() += 1;
    }
    assert_eq!(poison_logs.len(), entries.len(), "poison logged once each");

    // The counter, by kind, as scraped.
    let addr = logs
        .iter()
        .find(|l| field(l, "message").starts_with("serving /metrics"))
        .map(|l| field(l, "local").to_string())
        .expect("metrics address logged");
    let scrape = e2e_support::scrape(&addr);
    for (kind, n) in &per_kind {
        let series = format!("tradeflow_consumer_poison_records_total{{kind=\"{kind}\"}} {n}");
        assert!(
            scrape.lines().any(|l| l == series),
            "missing `{series}` in:\n{}",
            scrape
                .lines()
                .filter(|l| l.contains("poison"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // No panic, bounded memory, no password in the output.
    let hwm = vm_hwm_kib(consumer.pid().expect("consumer running"));
    let out = consumer.output();
    assert!(!out.contains("panicked"), "{out}");
    assert!(!out.contains(PASSWORD), "the Redis password was logged");
    assert!(
        hwm < MAX_HWM_KIB,
        "consumer peak RSS {hwm} KiB (bound {MAX_HWM_KIB} KiB)"
    );
    eprintln!("consumer VmHWM after the corpus: {hwm} KiB");
    assert!(
        consumer.terminate(Duration::from_secs(20)),
        "consumer did not exit 0 on SIGTERM:\n{}",
        consumer.output()
    );
}

/// Regression: a shard whose first batch holds poison used to fail the Lua script
/// (HMGET's missing position is `false`, not `nil`) and stay stuck forever.
#[tokio::test]
async fn poison_in_a_fresh_shards_first_batch_is_dead_lettered() {
    use tradeflow_consumer::apply::{fold, RedisSink, SinkConfig};
    use tradeflow_consumer::record::decode_record;
    use tradeflow_shared::SequenceNumber;

    let redis = tradeflow_shared::testkit::redis();
    let sink = RedisSink::connect(&SinkConfig {
        url: format!("redis://127.0.0.1:{}", redis.port),
        ..SinkConfig::default()
    })
    .await
    .expect("connect");
    let mut recs = Vec::new();
    decode_record(&SequenceNumber::parse("5").unwrap(), b"{bad", &mut recs);
    decode_record(
        &SequenceNumber::parse("6").unwrap(),
        good_trade("FRESHUSDT", 1).as_bytes(),
        &mut recs,
    );
    let o = sink
        .apply("s", "shardId-0", &fold(&recs))
        .await
        .expect("first batch with poison applies");
    assert_eq!((o.poison, o.trades_applied), (1, 1));
    // Read again (a restart): nothing written twice.
    let again = sink.apply("s", "shardId-0", &fold(&recs)).await.unwrap();
    assert_eq!((again.poison, again.trades_applied), (0, 0));
}

mod decoding_never_panics {
    use proptest::prelude::*;
    use tradeflow_consumer::record::{decode_record, Item, POISON_KEEP_BYTES};
    use tradeflow_shared::kpl::{Aggregator, MAGIC};
    use tradeflow_shared::SequenceNumber;

    fn check(data: &[u8]) -> Result<(), TestCaseError> {
        let mut out = Vec::new();
        decode_record(&SequenceNumber::parse("42").unwrap(), data, &mut out);
        // Every record yields at least one item, and kept-aside data stays bounded.
        prop_assert!(!out.is_empty());
        for (i, r) in out.iter().enumerate() {
            if out.len() > 1 {
                prop_assert_eq!(r.pos.sub, i as u64);
            }
            if let Item::Poison(p) = &r.item {
                prop_assert!(p.data.len() <= POISON_KEEP_BYTES);
                prop_assert!(!p.reason.is_empty());
            }
        }
        let _ = tradeflow_shared::decode_bytes(data);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            check(&data)?;
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&data);
            check(&with_magic)?;
        }

        #[test]
        fn arbitrary_json_like_text(s in r#"[\[\]{}":,0-9a-zA-Z.\-eE \\]{0,300}"#) {
            check(s.as_bytes())?;
        }

        #[test]
        fn aggregates_of_arbitrary_user_records(
            recs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..128), 1..20)
        ) {
            let mut a = Aggregator::new();
            for r in &recs {
                a.push("K", r);
            }
            let bytes = a.finish();
            let mut out = Vec::new();
            decode_record(&SequenceNumber::parse("7").unwrap(), &bytes, &mut out);
            prop_assert_eq!(out.len(), recs.len());
            check(&bytes)?;
        }
    }
}
