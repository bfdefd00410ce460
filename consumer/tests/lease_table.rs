//! The lease table seam against a real DynamoDB emulator (dynalite): layout, fencing,
//! release/take, and adoption of items written by the Java KCL 2.x/3.x.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use tradeflow_consumer::lease::model::attr;
use tradeflow_consumer::lease::{
    Checkpoint, InitialPosition, Lease, LeaseTable, TableState, Write,
};
use tradeflow_shared::aws::{dynamodb_client, sdk_config, AwsArgs};
use tradeflow_shared::testkit;
use tradeflow_shared::{Position, SequenceNumber};

async fn client(ddb: &testkit::Service) -> aws_sdk_dynamodb::Client {
    testkit::local_aws_env();
    let args = AwsArgs {
        region: "eu-west-1".into(),
        kinesis_endpoint: None,
        dynamodb_endpoint: Some(ddb.endpoint()),
    };
    dynamodb_client(&sdk_config(&args).await, &args)
}

async fn raw(
    c: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
) -> HashMap<String, AttributeValue> {
    c.get_item()
        .table_name(table)
        .key(attr::LEASE_KEY, AttributeValue::S(key.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item()
        .cloned()
        .expect("row exists")
}

#[tokio::test]
async fn table_is_created_with_the_kcl_layout() {
    let ddb = testkit::dynalite();
    let c = client(&ddb).await;
    let t = LeaseTable::new(c.clone(), "tradeflow-app");
    assert_eq!(t.ensure_table().await.unwrap(), TableState::Created);
    assert_eq!(t.ensure_table().await.unwrap(), TableState::Existed);

    let desc = c
        .describe_table()
        .table_name("tradeflow-app")
        .send()
        .await
        .unwrap();
    let td = desc.table().unwrap();
    let ks = td.key_schema();
    assert_eq!(ks.len(), 1);
    assert_eq!(ks[0].attribute_name(), "leaseKey");
    assert_eq!(ks[0].key_type().as_str(), "HASH");
    assert_eq!(td.attribute_definitions()[0].attribute_type().as_str(), "S");

    let mut l = Lease::new("shardId-000000000002", &Checkpoint::TrimHorizon);
    l.parents = vec!["shardId-000000000000".into(), "shardId-000000000001".into()];
    l.starting_hash_key = Some("0".into());
    l.ending_hash_key = Some("340282366920938463463374607431768211455".into());
    assert!(t.create_if_absent(&l).await.unwrap());
    assert!(!t.create_if_absent(&l).await.unwrap(), "put only if absent");

    let item = raw(&c, "tradeflow-app", "shardId-000000000002").await;
    assert!(item["leaseKey"].is_s());
    assert!(!item.contains_key("leaseOwner"), "free lease has no owner");
    assert_eq!(item["leaseCounter"].as_n().unwrap(), "0");
    assert_eq!(item["checkpoint"].as_s().unwrap(), "TRIM_HORIZON");
    assert!(item["checkpointSubSequenceNumber"].is_n());
    assert!(item["ownerSwitchesSinceCheckpoint"].is_n());
    assert_eq!(item["parentShardId"].as_ss().unwrap().len(), 2);
    assert!(item["startingHashKey"].is_s() && item["endingHashKey"].is_s());

    assert_eq!(t.list().await.unwrap(), vec![l]);
}

#[tokio::test]
async fn writes_are_fenced_by_owner_and_counter() {
    let ddb = testkit::dynalite();
    let c = client(&ddb).await;
    let t = LeaseTable::new(c.clone(), "fencing");
    t.ensure_table().await.unwrap();
    t.create_if_absent(&Lease::new("s-1", &Checkpoint::TrimHorizon))
        .await
        .unwrap();

    assert_eq!(
        t.take("s-1", 0, "a").await.unwrap(),
        Write::Done { counter: 1 }
    );
    assert_eq!(
        t.renew("s-1", 1, "a").await.unwrap(),
        Write::Done { counter: 2 }
    );
    // b steals at the counter it saw.
    assert_eq!(
        t.take("s-1", 2, "b").await.unwrap(),
        Write::Done { counter: 3 }
    );
    // a's writes at its last counter are refused.
    assert_eq!(t.renew("s-1", 2, "a").await.unwrap(), Write::Conflict);
    let seq =
        SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898").unwrap();
    let cp = Checkpoint::At(Position::new(seq, 4));
    assert_eq!(
        t.checkpoint("s-1", 2, "a", &cp, &[]).await.unwrap(),
        Write::Conflict
    );
    // Even with the right counter, a is not the owner.
    assert_eq!(
        t.checkpoint("s-1", 3, "a", &cp, &[]).await.unwrap(),
        Write::Conflict
    );

    assert_eq!(
        t.checkpoint("s-1", 3, "b", &cp, &["s-2".into()])
            .await
            .unwrap(),
        Write::Done { counter: 4 }
    );
    let l = t.get("s-1").await.unwrap().unwrap();
    assert_eq!(l.owner.as_deref(), Some("b"));
    assert_eq!(l.owner_switches, 0, "checkpoint resets owner switches");
    assert_eq!(l.children, vec!["s-2".to_string()]);
    assert_eq!(
        Checkpoint::parse(
            l.checkpoint.as_deref().unwrap(),
            l.checkpoint_sub,
            InitialPosition::Latest
        )
        .unwrap(),
        cp
    );
}

#[tokio::test]
async fn released_lease_is_free_for_another_worker() {
    let ddb = testkit::dynalite();
    let c = client(&ddb).await;
    let t = LeaseTable::new(c.clone(), "release");
    t.ensure_table().await.unwrap();
    t.create_if_absent(&Lease::new("s-1", &Checkpoint::Latest))
        .await
        .unwrap();
    assert_eq!(
        t.take("s-1", 0, "a").await.unwrap(),
        Write::Done { counter: 1 }
    );
    assert_eq!(t.release("s-1", 0, "a").await.unwrap(), Write::Conflict);
    assert_eq!(
        t.release("s-1", 1, "a").await.unwrap(),
        Write::Done { counter: 2 }
    );
    let l = t.get("s-1").await.unwrap().unwrap();
    assert_eq!(l.owner, None);
    assert_eq!(
        t.take("s-1", 2, "b").await.unwrap(),
        Write::Done { counter: 3 }
    );
    let l = t.get("s-1").await.unwrap().unwrap();
    assert_eq!((l.owner.as_deref(), l.owner_switches), (Some("b"), 2));
}

/// Items exactly as the Java KCL writes them: 2.x with a pending checkpoint field
/// absent, 3.x with its extra attributes. Ours must read them and keep the extras.
#[tokio::test]
async fn adopts_java_kcl_items_and_keeps_unknown_attributes() {
    let ddb = testkit::dynalite();
    let c = client(&ddb).await;
    let t = LeaseTable::new(c.clone(), "java-app");
    t.ensure_table().await.unwrap();
    let s = |v: &str| AttributeValue::S(v.into());
    let n = |v: &str| AttributeValue::N(v.into());
    let seq = "49590338271490256608559692538361571095921575989136588898";
    let v2: HashMap<String, AttributeValue> = [
        ("leaseKey", s("shardId-000000000000")),
        ("leaseOwner", s("java-host-1@abc")),
        ("leaseCounter", n("1234")),
        ("checkpoint", s(seq)),
        ("checkpointSubSequenceNumber", n("3")),
        ("ownerSwitchesSinceCheckpoint", n("1")),
        ("startingHashKey", s("0")),
        (
            "endingHashKey",
            s("170141183460469231731687303715884105727"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut v3 = v2.clone();
    v3.insert("leaseKey".into(), s("shardId-000000000001"));
    v3.insert("checkpoint".into(), s("SHARD_END"));
    v3.insert(
        "childShardIds".into(),
        AttributeValue::Ss(vec!["shardId-000000000002".into()]),
    );
    v3.insert("entityType".into(), s("LEASE"));
    v3.insert("throughputKBps".into(), n("12.5"));
    v3.insert("checkpointOwner".into(), s("java-host-2@def"));
    for item in [v2, v3] {
        c.put_item()
            .table_name("java-app")
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }

    let leases = t.list().await.unwrap();
    assert_eq!(leases.len(), 2);
    let l0 = leases.iter().find(|l| l.shard_id.ends_with('0')).unwrap();
    assert_eq!(l0.counter, 1234);
    assert_eq!(
        Checkpoint::parse(
            l0.checkpoint.as_deref().unwrap(),
            l0.checkpoint_sub,
            InitialPosition::Latest
        )
        .unwrap(),
        Checkpoint::At(Position::new(SequenceNumber::parse(seq).unwrap(), 3))
    );
    let l1 = leases.iter().find(|l| l.shard_id.ends_with('1')).unwrap();
    assert!(l1.is_shard_end());

    // Take, renew, checkpoint and release the 3.x row: its extras survive.
    assert_eq!(
        t.take("shardId-000000000001", 1234, "rust").await.unwrap(),
        Write::Done { counter: 1235 }
    );
    t.renew("shardId-000000000001", 1235, "rust").await.unwrap();
    t.checkpoint(
        "shardId-000000000001",
        1236,
        "rust",
        &Checkpoint::ShardEnd,
        &[],
    )
    .await
    .unwrap();
    t.release("shardId-000000000001", 1237, "rust")
        .await
        .unwrap();
    let item = raw(&c, "java-app", "shardId-000000000001").await;
    assert_eq!(item["entityType"].as_s().unwrap(), "LEASE");
    assert_eq!(item["throughputKBps"].as_n().unwrap(), "12.5");
    assert_eq!(item["checkpointOwner"].as_s().unwrap(), "java-host-2@def");
    assert_eq!(item["leaseCounter"].as_n().unwrap(), "1238");
    assert!(!item.contains_key("leaseOwner"));
}
