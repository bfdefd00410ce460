//! One websocket connection: the trades of its subscribed streams, live
//! SUBSCRIBE/UNSUBSCRIBE, pings and pong checks, the incoming message rate limit, the
//! 24-hour cut, and the faults injected while it is open.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{http, Message};
use tokio_util::sync::CancellationToken;

use super::{bump, Fault, Shared};
use crate::protocol::{self, MAX_STREAMS_PER_CONNECTION};

struct OpenGuard<'a>(&'a Shared);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        let n = self
            .0
            .counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed)
            - 1;
        self.0.open.send_replace(n);
    }
}

// The handshake callback's error type is tungstenite's, large or not.
#[allow(clippy::result_large_err)]
pub(super) async fn handle_ws(shared: Arc<Shared>, stream: TcpStream, cancel: CancellationToken) {
    // Subscribed before the handshake completes: a client receives every trade emitted
    // from the moment its connection is established.
    let mut trades = shared.trades.subscribe();
    let mut faults = shared.faults.subscribe();
    let mut target = String::new();
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        target = req.uri().to_string();
        if protocol::parse_target(&target).is_none() {
            let mut e = ErrorResponse::new(Some("not found".into()));
            *e.status_mut() = http::StatusCode::NOT_FOUND;
            return Err(e);
        }
        Ok(resp)
    };
    let ws_config =
        WebSocketConfig::default().max_message_size(Some(shared.config.max_client_message));
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config)).await
    else {
        return;
    };
    let Some((kind, initial)) = protocol::parse_target(&target) else {
        return;
    };
    if initial.len() > MAX_STREAMS_PER_CONNECTION {
        return;
    }
    let c = &shared.counters;
    bump(&c.connections_total);
    let open = c.connections_open.fetch_add(1, Ordering::Relaxed) + 1;
    shared.open.send_replace(open);
    let _guard = OpenGuard(&shared);
    let mut subs: BTreeSet<String> = initial.into_iter().collect();
    if !subs.is_empty() {
        shared.started.send_replace(true);
    }

    let cfg = &shared.config;
    let opened = Instant::now();
    let age_deadline = opened + cfg.max_connection_age;
    let mut ping_timer = tokio::time::interval_at(opened + cfg.ping_interval, cfg.ping_interval);
    let mut ping_seq: u64 = 0;
    let mut last_ping: Option<Vec<u8>> = None;
    let mut unanswered_since: Option<Instant> = None;
    let mut silent_since: Option<Instant> = None;
    let mut closing_at: Option<Instant> = None;
    let mut arrivals: VecDeque<Instant> = VecDeque::new();
    let far = || Instant::now() + Duration::from_secs(365 * 24 * 3600);

    loop {
        let pong_deadline = unanswered_since.map_or_else(far, |t| t + cfg.pong_timeout);
        // A silent connection is given up after the pong timeout (the client must
        // have left by then).
        let silent_deadline = silent_since.map_or_else(far, |t| t + cfg.pong_timeout);
        let silent = silent_since.is_some();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(age_deadline) => {
                bump(&c.age_closes);
                if !silent {
                    let _ = ws.close(None).await;
                }
                return;
            }
            _ = tokio::time::sleep_until(closing_at.unwrap_or_else(far)) => {
                let _ = ws.close(None).await;
                return;
            }
            _ = tokio::time::sleep_until(silent_deadline) => return,
            _ = tokio::time::sleep_until(pong_deadline), if !silent => {
                bump(&c.pong_timeouts);
                return;
            }
            f = faults.recv() => match f {
                Ok(Fault::CloseAll) => return,
                Ok(Fault::Silence) => silent_since = silent_since.or(Some(Instant::now())),
                Ok(fault) if !silent => {
                    let msg = match fault {
                        Fault::ServerShutdown => {
                            closing_at = closing_at.or(Some(Instant::now() + cfg.shutdown_grace));
                            Message::text(protocol::frame_server_shutdown(
                                kind,
                                tradeflow_shared::telemetry::now_ms(),
                            ))
                        }
                        Fault::Garbage => Message::text("}{ not json \u{1}"),
                        Fault::Binary => Message::binary(vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2]),
                        _ => Message::text(huge_text(cfg.huge_frame_bytes)),
                    };
                    if ws.send(msg).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ping_timer.tick(), if !silent => {
                ping_seq += 1;
                let payload = format!("ping-{ping_seq}").into_bytes();
                last_ping = Some(payload.clone());
                unanswered_since = unanswered_since.or(Some(Instant::now()));
                bump(&c.pings_sent);
                if ws.send(Message::Ping(payload.into())).await.is_err() {
                    return;
                }
            }
            msg = ws.next(), if !silent => {
                let Some(Ok(msg)) = msg else { return };
                if !matches!(msg, Message::Close(_) | Message::Frame(_)) {
                    bump(&c.client_messages);
                    let now = Instant::now();
                    arrivals.push_back(now);
                    while arrivals.front().is_some_and(|t| now - *t >= Duration::from_secs(1)) {
                        arrivals.pop_front();
                    }
                    if cfg.max_incoming_per_sec.is_some_and(|max| arrivals.len() > max) {
                        bump(&c.rate_violations);
                        tracing::warn!("client over the incoming message rate: disconnected");
                        return;
                    }
                }
                match msg {
                    Message::Text(text) => {
                        let reply = protocol::apply_command(&mut subs, protocol::parse_command(&text));
                        if !subs.is_empty() {
                            shared.started.send_replace(true);
                        }
                        if ws.send(Message::text(reply)).await.is_err() {
                            return;
                        }
                    }
                    Message::Pong(p) => {
                        if last_ping.as_deref() == Some(&p[..]) {
                            bump(&c.pongs_matched);
                            unanswered_since = None;
                        } else {
                            bump(&c.pongs_mismatched);
                        }
                    }
                    Message::Close(_) => return,
                    _ => {}
                }
            }
            item = trades.recv(), if !silent => match item {
                Ok(item) => {
                    if subs.contains(&*item.stream) {
                        let text = protocol::frame_trade(kind, &item.stream, &item.json);
                        if ws.send(Message::text(text)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    bump(&c.lagged_closes);
                    tracing::warn!(missed = n, "client too slow: disconnected");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

fn huge_text(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 32);
    s.push_str(r#"{"e":"trade","pad":""#);
    while s.len() < bytes {
        s.push_str("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    }
    s.push_str(r#""}"#);
    s
}
