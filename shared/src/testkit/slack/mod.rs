//! A local Slack for tests: the three Web API methods of Slack's current file upload
//! flow and of posting a message, the upload URL they hand out, and an incoming
//! webhook, on a free loopback port. It checks what it receives against Slack's
//! documented rules and answers as Slack does (HTTP 200 `{"ok":false,"error":…}` for
//! Web API errors; plain-text bodies with 4xx for webhooks), records every accepted
//! request for the test to read, and fails calls on demand (429 + Retry-After, or a
//! given error). See `handlers.rs` for the rules and where each comes from.
//!
//! ```ignore
//! let slack = SlackServer::start();
//! // report --slack-api-url slack.api_url() --slack-token slack.token() --slack-channel slack.channel()
//! slack.fail_next(Endpoint::PostMessage, 1, Fault::RateLimited { retry_after: 1 });
//! let posts = slack.messages();            // accepted chat.postMessage bodies (JSON)
//! let files = slack.uploads();             // bytes + completeUploadExternal of each file
//! ```
//!
//! The server runs on its own thread and runtime, so sync and async tests alike can use
//! it; dropping the `SlackServer` stops it.

mod blocks;
mod handlers;
mod multipart;
#[cfg(test)]
mod tests;
mod web_api;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;

pub use blocks::check as check_blocks;

/// The endpoints the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /api/chat.postMessage`
    PostMessage,
    /// `GET|POST /api/files.getUploadURLExternal`
    GetUploadUrl,
    /// `POST` to the `upload_url` getUploadURLExternal answered.
    Upload,
    /// `POST /api/files.completeUploadExternal`
    CompleteUpload,
    /// `POST /services/T…/B…/…`, the incoming webhook.
    Webhook,
}

/// What an injected failure answers instead of handling the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After: <seconds>` (body `{"ok":false,"error":"ratelimited"}`
    /// from the Web API, `rate_limited` from the webhook).
    RateLimited { retry_after: u64 },
    /// This Slack error: HTTP 200 `{"ok":false,"error":…}` from the Web API; from the
    /// webhook, the plain text with the status Slack uses for it (404 channel_not_found…).
    Error(String),
    /// A bare HTTP status with an empty body (a 500 or 503 from Slack's edge).
    Status(u16),
}

/// A channel the workspace has. Messages may name it by id or by `#name`; file shares
/// (`channel_id`) by id only.
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The bot token the Web API accepts (`Authorization: Bearer …`).
    pub bot_token: String,
    pub channels: Vec<Channel>,
    /// The incoming webhook's path: `/services/<team>/<bot>/<secret>`.
    pub webhook_path: String,
    /// Refuse messages with `blocks` but no top-level `text`. Slack itself posts them
    /// (and warns): the text is what notifications and screen readers show, so a report
    /// must send it. On by default.
    pub require_fallback_text: bool,
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            bot_token: "xoxb-1000000001-2000000002-tradeflowTESTtoken".into(),
            channels: vec![Channel {
                id: "C0TRADEFLOW".into(),
                name: "tradeflow-reports".into(),
            }],
            webhook_path: "/services/T0TRADEFLOW/B0TRADEFLOW/testkitWebhookSecret0001".into(),
            require_fallback_text: true,
        }
    }
}

/// One accepted request, as parsed (JSON body, or form/query arguments as strings).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub endpoint: Endpoint,
    pub body: Value,
}

/// A file of the upload flow, from getUploadURLExternal to completeUploadExternal.
#[derive(Debug, Clone)]
pub struct Upload {
    pub file_id: String,
    pub filename: String,
    /// The `length` given to getUploadURLExternal (the bytes had to match it).
    pub length: usize,
    pub alt_txt: Option<String>,
    /// The uploaded bytes (None until uploaded).
    pub bytes: Option<Vec<u8>>,
    /// "raw" or "multipart".
    pub sent_as: Option<&'static str>,
    /// Title from completeUploadExternal's `files` entry.
    pub title: Option<String>,
    /// The channel it was shared to (None until completed).
    pub channel: Option<String>,
    /// The whole completeUploadExternal request (initial_comment, blocks…).
    pub completed: Option<Value>,
}

/// A call the server refused, with the error it answered (for a failing test's message).
#[derive(Debug, Clone)]
pub struct Rejection {
    pub endpoint: Endpoint,
    pub error: String,
    pub details: Vec<String>,
}

#[derive(Default)]
struct State {
    recorded: Vec<Recorded>,
    uploads: Vec<Upload>,
    rejections: Vec<Rejection>,
    faults: HashMap<Endpoint, VecDeque<Fault>>,
    calls: HashMap<Endpoint, usize>,
    next_id: u64,
}

struct Shared {
    config: SlackConfig,
    base: String,
    state: Mutex<State>,
}

/// The running server; stopped when dropped.
pub struct SlackServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlackServer {
    /// With the default token, channel and webhook path (`SlackConfig::default()`).
    pub fn start() -> Self {
        Self::start_with(SlackConfig::default())
    }

    pub fn start_with(config: SlackConfig) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            config,
            base: format!("http://{addr}"),
            state: Mutex::new(State::default()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = handlers::router(shared.clone());
        let thread = std::thread::Builder::new()
            .name("slack-testkit".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        r = axum::serve(listener, app) => r.expect("slack test server"),
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime ends every open connection's task.
            })
            .expect("spawn slack test server");
        SlackServer {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Web API base, as `https://slack.com/api/` is for the real one (ends in `/`).
    pub fn api_url(&self) -> String {
        format!("{}/api/", self.shared.base)
    }

    /// The incoming webhook's URL.
    pub fn webhook_url(&self) -> String {
        format!("{}{}", self.shared.base, self.shared.config.webhook_path)
    }

    pub fn token(&self) -> &str {
        &self.shared.config.bot_token
    }

    /// The first channel's id.
    pub fn channel(&self) -> &str {
        &self.shared.config.channels[0].id
    }

    /// Every accepted request, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.state().recorded.clone()
    }

    /// The accepted requests of one endpoint, in order.
    pub fn recorded_at(&self, endpoint: Endpoint) -> Vec<Value> {
        let s = self.state();
        let it = s.recorded.iter().filter(|r| r.endpoint == endpoint);
        it.map(|r| r.body.clone()).collect()
    }

    /// Accepted chat.postMessage bodies.
    pub fn messages(&self) -> Vec<Value> {
        self.recorded_at(Endpoint::PostMessage)
    }

    /// Accepted webhook payloads.
    pub fn webhook_posts(&self) -> Vec<Value> {
        self.recorded_at(Endpoint::Webhook)
    }

    /// Every file of the upload flow (also those never uploaded or completed).
    pub fn uploads(&self) -> Vec<Upload> {
        self.state().uploads.clone()
    }

    /// Every call the rules refused (not the injected faults).
    pub fn rejections(&self) -> Vec<Rejection> {
        self.state().rejections.clone()
    }

    /// How many calls reached `endpoint`, refused and faulted ones included.
    pub fn calls(&self, endpoint: Endpoint) -> usize {
        self.state().calls.get(&endpoint).copied().unwrap_or(0)
    }

    /// The next `n` calls of `endpoint` get `fault` (queued after any already set).
    pub fn fail_next(&self, endpoint: Endpoint, n: usize, fault: Fault) {
        let mut s = self.state();
        let q = s.faults.entry(endpoint).or_default();
        q.extend(std::iter::repeat_n(fault, n));
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("slack state")
    }
}

impl Drop for SlackServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
