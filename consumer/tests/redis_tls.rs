//! `rediss://` with a password against a real redis-server speaking TLS only, its
//! certificate signed by a private CA given with `ca_file`; the password never shows.

use crate::redis_common;

use redis_common::*;
use tradeflow_consumer::apply::{fold, RedisSink, SinkConfig};
use tradeflow_shared::testkit;

const PASSWORD: &str = "tls-Secret-93";

#[tokio::test]
async fn rediss_with_password_and_private_ca_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = testkit::redis_tls(dir.path(), PASSWORD);
    let port = server.port;
    let cfg = SinkConfig {
        url: format!("rediss://:{PASSWORD}@127.0.0.1:{port}"),
        ca_file: Some(dir.path().join("ca.pem")),
        ..SinkConfig::default()
    };
    let sink = RedisSink::connect(&cfg).await.expect("TLS connection");
    assert!(!sink.url().contains(PASSWORD));
    assert!(!format!("{cfg:?}").contains(PASSWORD));
    let o = apply_retrying(&sink, "shardId-0", &fold(&shard_of(&[trade("BTCUSDT", 1)]))).await;
    assert_eq!(o.trades_applied, 1);

    // Without the CA the server's certificate is not trusted: a clear error, no secret.
    let untrusted = SinkConfig {
        ca_file: None,
        ..cfg.clone()
    };
    let err = RedisSink::connect(&untrusted)
        .await
        .err()
        .expect("must fail");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
}
