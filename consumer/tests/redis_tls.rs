//! `rediss://` with a password against a real redis-server speaking TLS only, its
//! certificate signed by a private CA given with `ca_file`; the password never shows.

use crate::redis_common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_common::*;
use tradeflow_consumer::apply::{fold, RedisSink, SinkConfig};
use tradeflow_shared::testkit;

const PASSWORD: &str = "tls-Secret-93";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn rediss_with_password_and_private_ca_works() {
    let dir = tempfile::tempdir().unwrap();
    testkit::tls_certificates(dir.path());
    let port = testkit::free_port();
    let d = dir.path().display().to_string();
    let _server = Server(
        Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--tls-cert-file", &format!("{d}/server.pem")])
            .args(["--tls-key-file", &format!("{d}/server.key")])
            .args(["--tls-ca-cert-file", &format!("{d}/ca.pem")])
            .args(["--tls-auth-clients", "no", "--requirepass", PASSWORD])
            .args(["--save", "", "--appendonly", "no", "--dir", &d])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server (TLS) did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
