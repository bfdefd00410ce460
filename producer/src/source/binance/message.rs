//! What one websocket message means to the group (`Msg`). Messages that are not trades
//! are counted (`tradeflow_producer_bad_input_total`, `source="binance"`) and logged
//! here, never fatal.

use metrics::counter;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tradeflow_shared::{decode_event, Event};

use super::conn::clip;
use super::group_state::Msg;
use crate::metrics::{self as m, BAD_INPUT, WS_MESSAGES};
use crate::source::SourceTrade;

const SOURCE: &str = "binance";

/// Reads what connection `conn` received (`None`: the stream ended).
pub(super) fn read(conn: u64, msg: Option<Result<Message, WsError>>) -> Msg<SourceTrade> {
    let msg = match msg {
        None => return Msg::Ended("eof"),
        Some(Err(WsError::Capacity(e))) => {
            counter!(BAD_INPUT, "source" => SOURCE, "kind" => "oversized_frame").increment(1);
            tracing::warn!(conn, error = %e, "oversized frame: connection dropped");
            return Msg::Ended("oversized");
        }
        Some(Err(e)) => {
            tracing::debug!(conn, error = %e, "websocket error");
            return Msg::Ended("error");
        }
        Some(Ok(m)) => m,
    };
    counter!(WS_MESSAGES).increment(1);
    match msg {
        Message::Text(text) => match decode_event(&text) {
            Ok(Event::Trade { trade, json }) => Msg::Trade(SourceTrade {
                trade,
                json: json.to_string(),
            }),
            Ok(Event::ControlReply) => {
                if text.contains(r#""error""#) {
                    m::bad_input(SOURCE, "subscribe_error");
                    tracing::error!(conn, reply = %clip(&text), "subscription refused");
                }
                Msg::Ack
            }
            Ok(Event::ServerShutdown) => {
                tracing::info!(conn, "server announced shutdown");
                Msg::ServerShutdown
            }
            Ok(Event::Other { event_type }) => {
                m::bad_input(SOURCE, "other_event");
                tracing::debug!(conn, %event_type, "ignored event");
                Msg::Other
            }
            Err(e) => {
                m::bad_input(SOURCE, e.kind());
                tracing::warn!(conn, error = %e, message = %clip(&text), "message is not a trade; skipped");
                Msg::Other
            }
        },
        Message::Binary(b) => {
            m::bad_input(SOURCE, "binary_frame");
            tracing::warn!(conn, bytes = b.len(), "binary frame; skipped");
            Msg::Other
        }
        Message::Close(frame) => {
            tracing::info!(conn, ?frame, "server closed the connection");
            Msg::Ended("closed")
        }
        // tungstenite answers pings itself, echoing the payload.
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Msg::Other,
    }
}
