//! The pure parts of Binance's websocket protocol as the exchange speaks it: which
//! streams a URL asks for, the SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS requests and
//! their replies, and the message shapes of raw and combined streams.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Binance's limit of streams on one connection.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;

/// How a connection's messages are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `/ws/...`: each message is the event itself.
    Raw,
    /// `/stream?streams=...`: each message is `{"stream":…,"data":…}`.
    Combined,
}

/// Parses a websocket request target into its kind and initial streams (lower case).
/// `None` for a path the exchange does not serve.
pub fn parse_target(target: &str) -> Option<(StreamKind, Vec<String>)> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let names = |s: &str| -> Vec<String> {
        s.split('/')
            .filter(|n| !n.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    if path == "/ws" || path == "/ws/" {
        return Some((StreamKind::Raw, Vec::new()));
    }
    if let Some(rest) = path.strip_prefix("/ws/") {
        return Some((StreamKind::Raw, names(rest)));
    }
    if path == "/stream" || path == "/stream/" {
        let streams = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("streams="))
            .map(names)
            .unwrap_or_default();
        return Some((StreamKind::Combined, streams));
    }
    None
}

/// Whether a request line (`GET /ws/x HTTP/1.1`) is for a websocket path.
pub fn is_websocket_request_line(line: &str) -> bool {
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return false;
    };
    method == "GET" && parse_target(target).is_some()
}

#[derive(Deserialize)]
struct Request<'a> {
    method: Option<&'a str>,
    #[serde(default)]
    params: Vec<String>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

/// What a client's text message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Subscribe {
        streams: Vec<String>,
        id: String,
    },
    Unsubscribe {
        streams: Vec<String>,
        id: String,
    },
    List {
        id: String,
    },
    /// Not a valid request: answered with an error, the connection stays open.
    Invalid {
        id: String,
        msg: String,
    },
}

/// Parses a client's request. `id` is kept as raw JSON (a number or a string).
pub fn parse_command(text: &str) -> Command {
    let Ok(req) = serde_json::from_str::<Request<'_>>(text) else {
        return Command::Invalid {
            id: "null".into(),
            msg: "Invalid JSON".into(),
        };
    };
    let id = req.id.map_or("null".to_string(), |r| r.get().to_string());
    let streams = req.params.iter().map(|s| s.to_lowercase()).collect();
    match req.method {
        Some("SUBSCRIBE") => Command::Subscribe { streams, id },
        Some("UNSUBSCRIBE") => Command::Unsubscribe { streams, id },
        Some("LIST_SUBSCRIPTIONS") => Command::List { id },
        _ => Command::Invalid {
            id,
            msg: "Invalid request: unknown method".into(),
        },
    }
}

/// Applies a command to a connection's subscriptions and returns the reply text.
pub fn apply_command(subs: &mut BTreeSet<String>, cmd: Command) -> String {
    match cmd {
        Command::Subscribe { streams, id } => {
            let new = streams.iter().filter(|s| !subs.contains(*s)).count();
            if subs.len() + new > MAX_STREAMS_PER_CONNECTION {
                return error_reply(&id, 2, "Invalid request: too many streams");
            }
            subs.extend(streams);
            format!(r#"{{"result":null,"id":{id}}}"#)
        }
        Command::Unsubscribe { streams, id } => {
            for s in &streams {
                subs.remove(s);
            }
            format!(r#"{{"result":null,"id":{id}}}"#)
        }
        Command::List { id } => {
            let list = serde_json::to_string(&subs.iter().collect::<Vec<_>>())
                .unwrap_or_else(|_| "[]".into());
            format!(r#"{{"result":{list},"id":{id}}}"#)
        }
        Command::Invalid { id, msg } => error_reply(&id, 2, &msg),
    }
}

fn error_reply(id: &str, code: i32, msg: &str) -> String {
    let msg = serde_json::to_string(msg).unwrap_or_else(|_| "\"error\"".into());
    format!(r#"{{"error":{{"code":{code},"msg":{msg}}},"id":{id}}}"#)
}

/// A trade event as sent on a connection of the given kind.
pub fn frame_trade(kind: StreamKind, stream: &str, json: &str) -> String {
    match kind {
        StreamKind::Raw => json.to_string(),
        StreamKind::Combined => format!(r#"{{"stream":"{stream}","data":{json}}}"#),
    }
}

/// The `serverShutdown` notice as sent on a connection of the given kind.
pub fn frame_server_shutdown(kind: StreamKind, now_ms: u64) -> String {
    let ev = format!(r#"{{"e":"serverShutdown","E":{now_ms}}}"#);
    match kind {
        StreamKind::Raw => ev,
        StreamKind::Combined => format!(r#"{{"stream":"!serverShutdown","data":{ev}}}"#),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::{decode_event, Event};

    #[test]
    fn targets() {
        assert_eq!(parse_target("/ws"), Some((StreamKind::Raw, vec![])));
        assert_eq!(
            parse_target("/ws/BTCUSDT@trade"),
            Some((StreamKind::Raw, vec!["btcusdt@trade".into()]))
        );
        assert_eq!(
            parse_target("/stream?streams=btcusdt@trade/ethbtc@trade&timeUnit=MILLISECOND"),
            Some((
                StreamKind::Combined,
                vec!["btcusdt@trade".into(), "ethbtc@trade".into()]
            ))
        );
        assert_eq!(parse_target("/api/v3/ticker/price"), None);
        assert!(is_websocket_request_line(
            "GET /stream?streams=a@trade HTTP/1.1"
        ));
        assert!(!is_websocket_request_line(
            "POST /control/close-all HTTP/1.1"
        ));
        assert!(!is_websocket_request_line(
            "GET /api/v3/exchangeInfo HTTP/1.1"
        ));
    }

    #[test]
    fn subscribe_list_unsubscribe() {
        let mut subs = BTreeSet::new();
        let r = apply_command(
            &mut subs,
            parse_command(
                r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","ETHBTC@trade"],"id":1}"#,
            ),
        );
        assert_eq!(r, r#"{"result":null,"id":1}"#);
        assert_eq!(decode_event(&r).unwrap(), Event::ControlReply);
        let r = apply_command(
            &mut subs,
            parse_command(r#"{"method":"LIST_SUBSCRIPTIONS","id":"x"}"#),
        );
        assert_eq!(r, r#"{"result":["btcusdt@trade","ethbtc@trade"],"id":"x"}"#);
        apply_command(
            &mut subs,
            parse_command(r#"{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":3}"#),
        );
        assert_eq!(subs.len(), 1);
    }

    #[test]
    fn bad_requests_get_errors() {
        let mut subs = BTreeSet::new();
        let r = apply_command(&mut subs, parse_command("garbage"));
        assert!(r.contains(r#""error""#), "{r}");
        let r = apply_command(&mut subs, parse_command(r#"{"method":"NOPE","id":4}"#));
        assert!(r.contains(r#""id":4"#), "{r}");
        let many: Vec<String> = (0..1025).map(|i| format!("s{i}@trade")).collect();
        let r = apply_command(
            &mut subs,
            Command::Subscribe {
                streams: many,
                id: "5".into(),
            },
        );
        assert!(r.contains("too many"), "{r}");
        assert!(subs.is_empty());
    }

    #[test]
    fn frames_decode() {
        let json = r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1717000000120,"m":true,"M":true}"#;
        let c = frame_trade(StreamKind::Combined, "btcusdt@trade", json);
        assert!(matches!(decode_event(&c).unwrap(), Event::Trade { json: j, .. } if j == json));
        for kind in [StreamKind::Raw, StreamKind::Combined] {
            assert_eq!(
                decode_event(&frame_server_shutdown(kind, 1_717_000_000_000)).unwrap(),
                Event::ServerShutdown
            );
        }
    }
}
