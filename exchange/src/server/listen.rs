//! One listening port for everything: each connection is sniffed (websocket path or
//! plain HTTP) and handed to the websocket handler or the REST router; `/control`
//! commands land in `control`.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ws::handle_ws;
use super::{stats, Fault, Shared};
use crate::protocol;

pub(super) async fn serve_shared(
    shared: Arc<Shared>,
    listener: TcpListener,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let tracker = TaskTracker::new();
    let (http_tx, http_rx) = mpsc::channel(64);
    let router = crate::http::router(Arc::new(crate::http::HttpState {
        prices: Box::new({
            let s = shared.clone();
            move || s.prices.lock().map(|p| p.clone()).unwrap_or_default()
        }),
        control: Box::new({
            let s = shared.clone();
            move |cmd: &str| control(&s, cmd)
        }),
        history: shared.history.clone(),
        klines: shared.klines.clone(),
    }));
    let http = axum::serve(crate::http::ChannelListener { rx: http_rx, addr }, router)
        .with_graceful_shutdown(cancel.clone().cancelled_owned());
    tracker.spawn(async move {
        if let Err(e) = http.await {
            tracing::warn!(error = %e, "http server ended");
        }
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let (shared, cancel, http_tx) = (shared.clone(), cancel.clone(), http_tx.clone());
        tracker.spawn(async move {
            match sniff(&stream).await {
                Some(true) => handle_ws(shared, stream, cancel).await,
                Some(false) => {
                    let _ = http_tx.send((stream, peer)).await;
                }
                None => {}
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Peeks at the request line: `Some(true)` for a websocket path, `Some(false)` for
/// plain HTTP, `None` if the client sent nothing usable in time.
async fn sniff(stream: &TcpStream) -> Option<bool> {
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]);
            return Some(protocol::is_websocket_request_line(&line));
        }
        if n == buf.len() || Instant::now() >= deadline {
            return Some(false);
        }
        // The request line is still arriving; peek does not wait for more bytes.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn control(shared: &Shared, cmd: &str) -> Option<String> {
    match cmd {
        "pause" => {
            shared.paused.send_replace(true);
        }
        "resume" => {
            shared.paused.send_replace(false);
        }
        "stats" => return serde_json::to_string(&stats(shared)).ok(),
        other => {
            let _ = shared.faults.send(Fault::from_name(other)?);
        }
    }
    Some("{\"ok\":true}".into())
}
