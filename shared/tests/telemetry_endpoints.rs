//! The metrics/health server exposes /metrics, /healthz and /readyz and nothing else:
//! other paths are 404, other methods 405, both with empty bodies; it listens on the
//! configured address only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tradeflow_shared::telemetry::{self, Health};

/// One raw HTTP/1.1 request (`Connection: close`); returns (status, headers, body).
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {raw:?}"));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// One recorder per test process: the tests here share it.
fn handle() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| telemetry::install_metrics().expect("recorder"))
        .clone()
}

async fn start(addr: &str) -> (SocketAddr, CancellationToken) {
    let handle = handle();
    metrics::counter!("tradeflow_test_endpoint_total").increment(1);
    let stop = CancellationToken::new();
    let (local, _task) = telemetry::serve(
        addr,
        handle,
        Health::new(),
        Duration::from_secs(5),
        stop.clone(),
    )
    .await
    .expect("serve");
    (local, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_metrics_and_health_are_served() {
    let (addr, stop) = start("127.0.0.1:0").await;
    let r = tokio::task::spawn_blocking(move || {
        let (status, _, body) = request(addr, "GET", "/metrics");
        assert_eq!(status, 200);
        assert!(body.contains("tradeflow_test_endpoint_total"), "{body}");
        assert_eq!(request(addr, "GET", "/healthz").0, 200);
        // Never progressed: not ready.
        assert_eq!(request(addr, "GET", "/readyz").0, 503);

        for path in [
            "/",
            "/debug",
            "/debug/pprof",
            "/metrics/../x",
            "/metrics/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/metrics/",
            "//metrics",
            "/.env",
            "/admin",
            "/healthz/x",
        ] {
            let (status, head, body) = request(addr, "GET", path);
            assert_eq!(status, 404, "GET {path}: {head}");
            assert!(body.is_empty(), "GET {path} leaked a body: {body:?}");
            assert!(!head.contains("\r\nserver:"), "GET {path}: {head}");
        }
        for (method, path) in [
            ("POST", "/metrics"),
            ("PUT", "/metrics"),
            ("DELETE", "/healthz"),
            ("POST", "/readyz"),
            ("PATCH", "/healthz"),
        ] {
            let (status, head, body) = request(addr, method, path);
            assert_eq!(status, 405, "{method} {path}: {head}");
            assert!(body.is_empty(), "{method} {path} leaked a body: {body:?}");
        }
        // HEAD of a known path answers without a body.
        let (status, _, body) = request(addr, "HEAD", "/healthz");
        assert_eq!(status, 200);
        assert!(body.is_empty());
    })
    .await;
    stop.cancel();
    r.expect("requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_the_configured_address_only() {
    let (addr, stop) = start("127.0.0.1:0").await;
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    // Another loopback address, same port: nobody listens there.
    let other: SocketAddr = format!("127.0.0.2:{}", addr.port()).parse().unwrap();
    let refused = tokio::task::spawn_blocking(move || {
        TcpStream::connect_timeout(&other, Duration::from_secs(2)).is_err()
    })
    .await
    .unwrap();
    assert!(
        refused,
        "the server answered on {other}, not only on {addr}"
    );
    stop.cancel();

    let (addr2, stop2) = start("127.0.0.2:0").await;
    assert_eq!(addr2.ip().to_string(), "127.0.0.2");
    let ok = tokio::task::spawn_blocking(move || request(addr2, "GET", "/healthz").0)
        .await
        .unwrap();
    assert_eq!(ok, 200);
    stop2.cancel();

    // A bad address is an error, not a panic.
    let bad = telemetry::serve(
        "not-an-address",
        handle(),
        Health::new(),
        Duration::from_secs(5),
        CancellationToken::new(),
    )
    .await;
    assert!(bad.is_err());
}
