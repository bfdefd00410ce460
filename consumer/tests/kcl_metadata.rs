//! A KCL 3.5 lease table in its single-table layout keeps worker metrics and coordinator
//! state beside the leases, told apart by `entityType`. Rows written here exactly as the
//! KCL 3.5 writes them (kcl-rs 0.1.4 has that layout off and no switch for it) must be
//! read without error, never taken for leases, and left untouched.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use tradeflow_consumer::lease::{InitialPosition, LeaseTable};
use tradeflow_consumer::shard::discovery::sync_leases;
use tradeflow_shared::aws::{dynamodb_client, kinesis_client, sdk_config, AwsArgs};
use tradeflow_shared::testkit;

type Item = HashMap<String, AttributeValue>;

fn item(pairs: Vec<(&str, AttributeValue)>) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.into())
}

/// The non-lease rows of a KCL 3.5 lease table (attribute names from the KCL's
/// WorkerMetricStats, MigrationState, TableMigrationState and leader lock).
fn kcl_3_5_metadata() -> Vec<Item> {
    let history = AttributeValue::L(vec![AttributeValue::M(item(vec![
        ("cv", s("CLIENT_VERSION_UPGRADE_FROM_2X")),
        ("mb", s("worker-a:1f6c")),
        ("mts", n("1733100000000")),
    ]))]);
    vec![
        item(vec![
            ("leaseKey", s("worker-a:1f6c")),
            ("entityType", s("WORKER_METRIC_STATS")),
            ("lut", n("1733200000")),
            (
                "sts",
                AttributeValue::M(item(vec![(
                    "CPU",
                    AttributeValue::L(vec![n("12.5"), n("14.0"), n("-1.0")]),
                )])),
            ),
            (
                "opr",
                AttributeValue::M(item(vec![("CPU", AttributeValue::L(vec![n("100")]))])),
            ),
            ("sup", n("1")),
            ("slu", n("1733200000")),
        ]),
        item(vec![
            ("leaseKey", s("Migration3.0")),
            ("entityType", s("CLIENT_VERSION_MIGRATION")),
            ("cv", s("CLIENT_VERSION_3X")),
            ("mb", s("worker-a:1f6c")),
            ("mts", n("1733100500000")),
            ("h", history),
        ]),
        item(vec![
            ("leaseKey", s("TableMigration3.5")),
            ("entityType", s("TABLE_MIGRATION")),
            ("tm", s("TABLE_MIGRATION_STATUS_COMPLETE")),
            ("mb", s("worker-a:1f6c")),
            ("mts", n("1733100600000")),
        ]),
        item(vec![
            ("leaseKey", s("Leader")),
            ("entityType", s("LEADER")),
            ("ownerName", s("worker-a:1f6c")),
            ("leaseDuration", s("20000")),
            (
                "recordVersionNumber",
                s("7d3c2a64-2c1e-4a53-9d4f-0b8e5f1c2a90"),
            ),
        ]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcl_3_5_metadata_rows_are_not_leases_and_stay_untouched() {
    testkit::local_aws_env();
    let ddb_s = testkit::dynalite();
    let kin_s = testkit::ferrokinesis(&["--create-stream-ms", "0"]);
    let args = AwsArgs {
        region: "eu-west-1".into(),
        kinesis_endpoint: Some(kin_s.endpoint()),
        dynamodb_endpoint: Some(ddb_s.endpoint()),
    };
    let conf = sdk_config(&args).await;
    let ddb = dynamodb_client(&conf, &args);
    let kin = kinesis_client(&conf, &args);
    testkit::create_active_stream(&kin, "kcl35", 2)
        .await
        .unwrap();
    let table = LeaseTable::new(ddb.clone(), "kcl35-app");
    table.ensure_table().await.unwrap();
    let meta = kcl_3_5_metadata();
    for i in &meta {
        ddb.put_item()
            .table_name("kcl35-app")
            .set_item(Some(i.clone()))
            .send()
            .await
            .unwrap();
    }

    // As stored (DynamoDB normalises numbers: 14.0 reads back as 14).
    let mut stored = Vec::new();
    for i in &meta {
        let key = i["leaseKey"].clone();
        let got = read(&ddb, &key).await;
        assert!(got.is_some());
        stored.push((key, got));
    }

    // The KCL 3.5 application wrote its state but no lease yet: no lease is listed, so
    // the shards are bootstrapped at the configured position, as on an empty table.
    let rows = table.list().await.unwrap();
    assert!(rows.is_empty(), "metadata read as leases: {rows:?}");
    let out = sync_leases(&table, &kin, "kcl35", &rows, InitialPosition::Latest)
        .await
        .unwrap();
    assert_eq!(out.created.len(), 2);
    for l in table.list().await.unwrap() {
        assert_eq!(l.checkpoint.as_deref(), Some("LATEST"), "{}", l.shard_id);
    }
    // A second sync, now with the leases, changes nothing and reads every row fine.
    let rows = table.list().await.unwrap();
    assert_eq!(rows.len(), 2);
    let out = sync_leases(&table, &kin, "kcl35", &rows, InitialPosition::Latest)
        .await
        .unwrap();
    assert!(out.created.is_empty() && out.deleted.is_empty() && out.unknown.is_empty());

    for (key, want) in &stored {
        assert_eq!(&read(&ddb, key).await, want, "{key:?} changed");
        // Not a lease, not even when asked for by key.
        assert!(table.get(key.as_s().unwrap()).await.unwrap().is_none());
    }
}

async fn read(ddb: &aws_sdk_dynamodb::Client, key: &AttributeValue) -> Option<Item> {
    ddb.get_item()
        .table_name("kcl35-app")
        .key("leaseKey", key.clone())
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item()
        .cloned()
}
