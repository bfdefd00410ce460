//! One websocket connection to the stream endpoint: opened within the attempt limit,
//! subscribed at Binance's control-message rate, closed with a handshake.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::SinkExt;
use metrics::gauge;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::group_state::Link;
use super::limits::{connection_requests, AttemptWindow, CONTROL_SPACING};
use super::{BinanceConfig, BinanceError};
use crate::metrics::WS_CONNECTIONS;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One open connection: the socket. What is known of it is in its `Link`
/// (`group_state.rs`).
pub(super) struct Conn {
    pub(super) ws: Ws,
    pub(super) id: u64,
    opened: Instant,
    /// SUBSCRIBE messages sent (each is answered).
    subscribes: usize,
}

impl Conn {
    /// The facts the group's state machine starts this connection with.
    pub(super) fn link(&self) -> Link {
        Link::new(self.id, self.opened, self.subscribes)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        gauge!(WS_CONNECTIONS).decrement(1.0);
    }
}

/// Starts the old connection's close handshake (sending the close frame may itself
/// take up to `limit`).
pub(super) async fn start_drain(cur: &mut Conn, limit: Duration) {
    let _ = timeout(limit, cur.ws.close(None)).await;
}

/// Closes a connection given up on, allowing the handshake half a second.
pub(super) async fn close_briefly(mut conn: Conn) {
    let _ = timeout(Duration::from_millis(500), conn.ws.close(None)).await;
}

/// At most 256 bytes of a message, for logs.
pub(super) fn clip(s: &str) -> &str {
    let mut end = s.len().min(256);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(super) async fn connect(
    cfg: Arc<BinanceConfig>,
    limiter: Arc<Mutex<AttemptWindow>>,
    streams: Vec<String>,
    group: usize,
    id: u64,
) -> Result<Conn, BinanceError> {
    loop {
        let allowed = limiter
            .lock()
            .map_err(|_| BinanceError::Config("attempt limiter poisoned"))?
            .try_acquire(Instant::now());
        match allowed {
            Ok(()) => break,
            Err(at) => {
                tracing::warn!(group, wait = ?(at - Instant::now()), "connection attempt limit reached; waiting");
                sleep_until(at).await;
            }
        }
    }
    let (url, subscribes) = connection_requests(&cfg.url, &streams, 1);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(cfg.max_frame_bytes))
        .max_frame_size(Some(cfg.max_frame_bytes));
    let (ws, _) = timeout(
        cfg.connect_timeout,
        tokio_tungstenite::connect_async_with_config(url, Some(ws_config), true),
    )
    .await
    .map_err(|_| BinanceError::ConnectTimeout)??;
    gauge!(WS_CONNECTIONS).increment(1.0);
    let mut conn = Conn {
        ws,
        id,
        opened: Instant::now(),
        subscribes: subscribes.len(),
    };
    for (i, msg) in subscribes.into_iter().enumerate() {
        if i > 0 {
            // Binance allows 5 incoming messages per second, pongs included.
            tokio::time::sleep(CONTROL_SPACING).await;
        }
        conn.ws.send(Message::text(msg)).await?;
    }
    tracing::info!(
        group,
        conn = id,
        streams = streams.len(),
        "websocket connected"
    );
    Ok(conn)
}

/// The URL for logs: any `user:password@` is replaced by `***@` (a proxy or gateway URL
/// may carry credentials; logs must not).
pub(super) fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map(|i| start + i)
        .unwrap_or(url.len());
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]).into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod url_tests {
    use super::without_userinfo;

    #[test]
    fn userinfo_is_never_shown() {
        assert_eq!(
            without_userinfo("wss://u:p4ss@host:9443/ws?x=a@b"),
            "wss://***@host:9443/ws?x=a@b"
        );
        assert_eq!(without_userinfo("ws://:p@127.0.0.1"), "ws://***@127.0.0.1");
        assert_eq!(
            without_userinfo("wss://stream.binance.com:9443"),
            "wss://stream.binance.com:9443"
        );
        assert_eq!(without_userinfo("ws://h/p@q"), "ws://h/p@q");
    }
}
