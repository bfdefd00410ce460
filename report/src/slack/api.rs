//! Talking to Slack as Slack documents it: the incoming webhook (plain-text errors with
//! a 4xx status), and the Web API with a bot token (HTTP 200 `{"ok":false,"error":…}`):
//! `chat.postMessage`, and the current file upload flow `files.getUploadURLExternal` →
//! POST the bytes to the `upload_url` → `files.completeUploadExternal`.
//!
//! Rate limits: a 429 is retried after its `Retry-After` (1 s without one) as long as
//! the retry would start before the run's deadline; a 5xx from Slack's edge likewise,
//! with a growing pause. Errors that no retry can fix (a bad token, a missing channel, a
//! deleted webhook) are final and say what to check. No error holds the token or the
//! webhook URL.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tradeflow_shared::secret::Secret;

use super::http::{Body, Http, HttpError, Reply};
use crate::chart::Png;

/// Where the report goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// An incoming webhook: its channel is fixed, text and blocks only (no files).
    Webhook(Secret),
    /// A bot token and the channel id to post in (with the charts).
    Bot { token: Secret, channel: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// Slack does not accept the credentials: no retry or failure message can get through.
    #[error("Slack refused the {what} ({code}): check the secret (a bot token xoxb-… with chat:write and files:write, or a live webhook URL)")]
    Auth { what: &'static str, code: String },
    /// The channel is missing, archived, or the app is not in it.
    #[error("Slack {what}: {code}: check the channel id {channel} and invite the app to it (/invite @app)")]
    Channel {
        what: &'static str,
        code: String,
        channel: String,
    },
    /// Any other error Slack answered (with its details, e.g. `invalid_blocks`).
    #[error("Slack {what} failed: {code}{details}")]
    Api {
        what: &'static str,
        code: String,
        details: String,
    },
    #[error("Slack {what}: still rate limited (HTTP 429, Retry-After {retry_after_s} s) at the {deadline_s} s deadline after {attempts} attempts")]
    RateLimited {
        what: &'static str,
        retry_after_s: u64,
        deadline_s: u64,
        attempts: u32,
    },
    #[error("Slack {what}: HTTP {status}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("Slack {what}: {source}")]
    Transport {
        what: &'static str,
        source: HttpError,
    },
}

impl SlackError {
    /// Whether a later message (the failure notice) could get through at all.
    pub fn is_final(&self) -> bool {
        matches!(self, SlackError::Auth { .. } | SlackError::Channel { .. })
    }
}

/// Web API codes that mean the credentials are refused (docs: the methods' errors).
const AUTH_CODES: &[&str] = &[
    "not_authed",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "not_allowed_token_type",
    "ekm_access_denied",
];
const CHANNEL_CODES: &[&str] = &[
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "channel_is_archived",
];

pub struct Slack {
    http: Http,
    /// The Web API base, ending in `/` (`https://slack.com/api/`).
    api: String,
    dest: Destination,
    deadline: Instant,
    budget: Duration,
}

impl Slack {
    /// Every call (retries included) must start before `budget` from now has passed.
    pub fn new(http: Http, api: &str, dest: Destination, budget: Duration) -> Self {
        let mut api = api.to_string();
        if !api.ends_with('/') {
            api.push('/');
        }
        Slack {
            http,
            api,
            dest,
            deadline: Instant::now() + budget,
            budget,
        }
    }

    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    /// Posts a message (`text` is the notification/screen-reader fallback). Returns the
    /// message's `ts` with a bot token.
    pub async fn post(&self, text: &str, blocks: &Value) -> Result<Option<String>, SlackError> {
        match &self.dest {
            Destination::Webhook(url) => {
                let body = json!({"text": text, "blocks": blocks, "unfurl_links": false});
                let reply = self
                    .call("webhook", url.expose(), None, || {
                        Body::Json(body.to_string().into_bytes())
                    })
                    .await?;
                webhook_outcome(&reply)?;
                Ok(None)
            }
            Destination::Bot { token, channel } => {
                let body = json!({"channel": channel, "text": text, "blocks": blocks,
                                  "unfurl_links": false, "unfurl_media": false});
                let url = format!("{}chat.postMessage", self.api);
                let reply = self
                    .call("chat.postMessage", &url, Some(token), || {
                        Body::Json(body.to_string().into_bytes())
                    })
                    .await?;
                let v = api_outcome("chat.postMessage", &reply, channel)?;
                Ok(v.get("ts").and_then(Value::as_str).map(str::to_string))
            }
        }
    }

    /// Uploads `files` and shares them in the channel in one message with `comment`
    /// (bot token only; a webhook cannot carry files). Returns the file ids.
    pub async fn upload(&self, files: &[Png], comment: &str) -> Result<Vec<String>, SlackError> {
        let Destination::Bot { token, channel } = &self.dest else {
            return Ok(Vec::new());
        };
        let mut shared = Vec::new();
        for f in files {
            let url = format!("{}files.getUploadURLExternal", self.api);
            let form = vec![
                ("filename", f.name.clone()),
                ("length", f.bytes.len().to_string()),
                ("alt_txt", f.alt.chars().take(1000).collect::<String>()),
            ];
            let reply = self
                .call("files.getUploadURLExternal", &url, Some(token), || {
                    Body::Form(form.clone())
                })
                .await?;
            let v = api_outcome("files.getUploadURLExternal", &reply, channel)?;
            let (Some(upload_url), Some(id)) = (
                v.get("upload_url").and_then(Value::as_str),
                v.get("file_id").and_then(Value::as_str),
            ) else {
                return Err(SlackError::Api {
                    what: "files.getUploadURLExternal",
                    code: "no upload_url or file_id in the answer".into(),
                    details: String::new(),
                });
            };
            // The upload URL is pre-signed: the token is not sent there.
            let reply = self
                .call("file upload", upload_url, None, || {
                    Body::Raw(f.bytes.clone())
                })
                .await?;
            if !(200..300).contains(&reply.status) {
                return Err(SlackError::Status {
                    what: "file upload",
                    status: reply.status,
                    body: reply.body_excerpt(200),
                });
            }
            shared.push((id.to_string(), f.alt.chars().take(250).collect::<String>()));
        }
        if shared.is_empty() {
            return Ok(Vec::new());
        }
        let files_json: Vec<Value> = shared
            .iter()
            .zip(files)
            .map(|((id, _), f)| json!({"id": id, "title": title_of(f)}))
            .collect();
        let url = format!("{}files.completeUploadExternal", self.api);
        let form = vec![
            ("files", Value::Array(files_json).to_string()),
            ("channel_id", channel.clone()),
            ("initial_comment", comment.to_string()),
        ];
        let reply = self
            .call("files.completeUploadExternal", &url, Some(token), || {
                Body::Form(form.clone())
            })
            .await?;
        api_outcome("files.completeUploadExternal", &reply, channel)?;
        Ok(shared.into_iter().map(|(id, _)| id).collect())
    }

    /// One call, retried on 429 (after Retry-After) and 5xx while the deadline allows.
    async fn call(
        &self,
        what: &'static str,
        url: &str,
        token: Option<&Secret>,
        body: impl Fn() -> Body,
    ) -> Result<Reply, SlackError> {
        let mut attempts = 0u32;
        let mut pause = Duration::from_millis(500);
        loop {
            attempts += 1;
            let reply = self
                .http
                .post(url, token, body())
                .await
                .map_err(|source| SlackError::Transport { what, source })?;
            let wait = match reply.status {
                429 => reply.retry_after.unwrap_or(Duration::from_secs(1)),
                500..=599 => {
                    pause = (pause * 2).min(Duration::from_secs(8));
                    pause
                }
                _ => return Ok(reply),
            };
            if Instant::now() + wait > self.deadline {
                return Err(match reply.status {
                    429 => SlackError::RateLimited {
                        what,
                        retry_after_s: wait.as_secs(),
                        deadline_s: self.budget.as_secs(),
                        attempts,
                    },
                    status => SlackError::Status {
                        what,
                        status,
                        body: reply.body_excerpt(200),
                    },
                });
            }
            tracing::warn!(
                call = what,
                status = reply.status,
                wait_ms = wait.as_millis() as u64,
                "Slack asks to wait; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// The file's title in the channel: its alt text up to the first `:`.
fn title_of(f: &Png) -> String {
    f.alt
        .split(':')
        .next()
        .unwrap_or(&f.name)
        .chars()
        .take(200)
        .collect()
}

/// A webhook's answer: 200 `ok`, or a plain-text error whose status says its kind.
fn webhook_outcome(reply: &Reply) -> Result<(), SlackError> {
    if reply.status == 200 {
        return Ok(());
    }
    let code = reply.body_excerpt(200).trim().to_string();
    Err(match (reply.status, code.as_str()) {
        (403, _) | (404, "no_service") | (_, "invalid_token") => SlackError::Auth {
            what: "webhook",
            code: format!("HTTP {} {code}", reply.status),
        },
        (404 | 410, _) => SlackError::Channel {
            what: "webhook",
            code: format!("HTTP {} {code}", reply.status),
            channel: "of the webhook".into(),
        },
        _ => SlackError::Status {
            what: "webhook",
            status: reply.status,
            body: code,
        },
    })
}

/// A Web API answer: `{"ok":true,…}`, or the error it names (with Slack's details).
fn api_outcome(what: &'static str, reply: &Reply, channel: &str) -> Result<Value, SlackError> {
    let v: Value = match serde_json::from_slice(&reply.body) {
        Ok(v) => v,
        Err(_) => {
            return Err(SlackError::Status {
                what,
                status: reply.status,
                body: reply.body_excerpt(200),
            })
        }
    };
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(v);
    }
    let code = v
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no error code")
        .to_string();
    if AUTH_CODES.contains(&code.as_str()) {
        return Err(SlackError::Auth {
            what: "bot token",
            code,
        });
    }
    if CHANNEL_CODES.contains(&code.as_str()) {
        return Err(SlackError::Channel {
            what,
            code,
            channel: channel.to_string(),
        });
    }
    let details: Vec<&str> = v
        .pointer("/response_metadata/messages")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Err(SlackError::Api {
        what,
        code,
        details: if details.is_empty() {
            String::new()
        } else {
            format!(" ({})", details.join("; "))
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            retry_after: None,
            body: body.to_string().into(),
        }
    }

    #[test]
    fn slack_errors_are_classified() {
        let e = api_outcome(
            "chat.postMessage",
            &reply(200, r#"{"ok":false,"error":"invalid_auth"}"#),
            "C1",
        )
        .unwrap_err();
        assert!(e.is_final());
        assert!(e.to_string().contains("invalid_auth"), "{e}");
        let e = api_outcome(
            "chat.postMessage",
            &reply(200, r#"{"ok":false,"error":"channel_not_found"}"#),
            "C1",
        )
        .unwrap_err();
        assert!(e.is_final() && e.to_string().contains("C1"), "{e}");
        let e = api_outcome(
            "chat.postMessage",
            &reply(200, r#"{"ok":false,"error":"invalid_blocks","response_metadata":{"messages":["[ERROR] x"]}}"#),
            "C1",
        )
        .unwrap_err();
        assert!(!e.is_final());
        assert!(e.to_string().ends_with("invalid_blocks ([ERROR] x)"), "{e}");
        assert!(webhook_outcome(&reply(200, "ok")).is_ok());
        assert!(webhook_outcome(&reply(403, "invalid_token"))
            .unwrap_err()
            .is_final());
        assert!(webhook_outcome(&reply(404, "no_service"))
            .unwrap_err()
            .is_final());
        assert!(webhook_outcome(&reply(410, "channel_is_archived"))
            .unwrap_err()
            .is_final());
        assert!(!webhook_outcome(&reply(400, "invalid_payload"))
            .unwrap_err()
            .is_final());
    }
}
