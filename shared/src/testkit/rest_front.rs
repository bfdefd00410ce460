//! A REST front that misbehaves on purpose, for tests of REST clients (the producer's
//! gap backfill, the report's reconcile): each request's answer is chosen by a plan —
//! passed to the real upstream (the local exchange), or a status with headers and a
//! body (429 with `Retry-After`, 418, 5xx, a body that is not what was asked for), or
//! raw bytes (a truncated reply). Plain HTTP on a free loopback port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the front answers to one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Passed to the exchange; its reply is sent back as a 200.
    Pass,
    /// `status` (e.g. "429 Too Many Requests"), extra header lines (each ending in
    /// `\r\n`), and a body with a correct Content-Length.
    Reply(&'static str, String, String),
    /// Bytes written as they are, then the connection is closed (a truncated body).
    Raw(Vec<u8>),
}

impl Answer {
    pub fn reply(status: &'static str, headers: &str, body: &str) -> Answer {
        Answer::Reply(status, headers.to_string(), body.to_string())
    }
}

/// The plan: the answer to the `i`-th request (from 0).
pub type Plan = Arc<dyn Fn(u64) -> Answer + Send + Sync>;

/// Starts the front on a free loopback port; it lives as long as the test's runtime.
pub async fn start(exchange: SocketAddr, plan: Plan) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = crate::rest::RestClient::new(
        &format!("http://{exchange}"),
        Duration::from_secs(5),
        1 << 24,
        "flaky-rest",
    )
    .unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (upstream, seen, plan) = (upstream.clone(), seen.clone(), plan.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, extra, body) = match plan(seen.fetch_add(1, Ordering::SeqCst)) {
                    Answer::Raw(bytes) => {
                        let _ = sock.write_all(&bytes).await;
                        return;
                    }
                    Answer::Reply(status, extra, body) => (status, extra, body),
                    Answer::Pass => {
                        let r = upstream.get(&path).await.unwrap();
                        let body = String::from_utf8_lossy(&r.body).to_string();
                        ("200 OK", String::new(), body)
                    }
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}
