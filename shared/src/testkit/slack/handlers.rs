//! What each endpoint checks, and where the rule comes from (Slack's reference pages at
//! docs.slack.dev/reference/methods/<method>, the Web API's common errors, the incoming
//! webhook error changelog of 2016-05-17, and the Block Kit reference in `blocks.rs`).
//! Rules Slack itself does not enforce but a report must follow are marked "kit rule":
//! they answer an error whose `response_metadata.messages` says so.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::web_api::{
    api, err, err_because, header_str, reject, take_fault, unknown_method, webhook_status,
    FaultStyle,
};
use super::{blocks, multipart, Endpoint, Recorded, Shared, Upload};

/// chat.postMessage: "The text field … accepts up to 40,000 characters" (Slack truncates
/// longer text or answers `msg_too_long`; here it is always refused so a test notices).
pub const MAX_TEXT: usize = 40_000;
/// files.getUploadURLExternal: `alt_txt_too_large`, "longer than the limit of 1000".
const MAX_ALT_TXT: usize = 1000;
/// chat.postMessage: `too_many_attachments`, "A maximum of 100 attachments".
const MAX_ATTACHMENTS: usize = 100;

type St = AxState<Arc<Shared>>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/chat.postMessage", post(post_message))
        .route(
            "/api/files.getUploadURLExternal",
            get(get_upload_url).post(get_upload_url),
        )
        .route("/api/files.completeUploadExternal", post(complete_upload))
        .route("/upload/v1/{file_id}", post(upload))
        .route("/services/{*rest}", post(webhook))
        // Slack's answer to a method it does not have.
        .route("/api/{method}", get(unknown_method).post(unknown_method))
        .with_state(shared)
}

async fn post_message(s: St, m: Method, h: HeaderMap, q: RawQuery, b: Bytes) -> Response {
    api(&s.0, Endpoint::PostMessage, &m, &h, q.0, &b, |sh, args| {
        let channel = channel_by_id_or_name(sh, args.get("channel"))
            .ok_or_else(|| err("channel_not_found"))?;
        message_rules(sh, args).map_err(|(e, why)| err_because(e, why))?;
        let mut st = sh.state.lock().expect("slack state");
        st.next_id += 1;
        let ts = format!("{}.{:06}", 1_700_000_000 + st.next_id, st.next_id);
        Ok(json!({
            "ok": true, "channel": channel, "ts": ts,
            "message": {"type": "message", "bot_id": "B0TRADEFLOW", "ts": ts,
                        "text": args.get("text").cloned().unwrap_or(Value::Null),
                        "blocks": args.get("blocks").cloned().unwrap_or(Value::Null)},
        }))
    })
}

/// The message rules shared by chat.postMessage and the webhook: (error, why).
fn message_rules(sh: &Shared, args: &mut Map<String, Value>) -> Result<(), (&'static str, String)> {
    // A form body carries blocks/attachments as JSON text; parse it in place.
    for key in ["blocks", "attachments"] {
        if let Some(Value::String(raw)) = args.get(key) {
            let parsed: Value = serde_json::from_str(raw)
                .map_err(|e| ("invalid_blocks_format", format!("{key} is not JSON: {e}")))?;
            args.insert(key.into(), parsed);
        }
    }
    let text = match args.get("text") {
        None | Some(Value::Null) => "",
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(("invalid_arguments", "text must be a string".into())),
    };
    let has_blocks = args
        .get("blocks")
        .and_then(Value::as_array)
        .is_some_and(|b| !b.is_empty());
    let attachments = args
        .get("attachments")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    // chat.postMessage: `no_text`, "No message text provided" (text, blocks or attachments).
    if text.is_empty() && !has_blocks && attachments == 0 {
        return Err(("no_text", "no text, blocks or attachments".into()));
    }
    if blocks::chars(text) > MAX_TEXT {
        return Err((
            "msg_too_long",
            format!("text has more than {MAX_TEXT} characters"),
        ));
    }
    if attachments > MAX_ATTACHMENTS {
        return Err((
            "too_many_attachments",
            format!("more than {MAX_ATTACHMENTS}"),
        ));
    }
    if let Some(b) = args.get("blocks") {
        if !b.is_array() {
            return Err(("invalid_blocks_format", "blocks must be an array".into()));
        }
        let problems = blocks::check(b);
        if !problems.is_empty() {
            return Err(("invalid_blocks", problems.join("\n")));
        }
    }
    if has_blocks && text.is_empty() && sh.config.require_fallback_text {
        return Err((
            "no_text",
            "kit rule: blocks without a top-level text fallback (Slack posts it with a \
             warning; notifications and screen readers show nothing)"
                .into(),
        ));
    }
    Ok(())
}

async fn get_upload_url(s: St, m: Method, h: HeaderMap, q: RawQuery, b: Bytes) -> Response {
    api(&s.0, Endpoint::GetUploadUrl, &m, &h, q.0, &b, |sh, args| {
        // Required: filename, length (docs: "Name of the file", "Size in bytes").
        let filename = match args.get("filename").and_then(Value::as_str) {
            Some(f) if !f.is_empty() => f.to_string(),
            _ => return Err(err_because("invalid_arguments", "filename is required")),
        };
        let length = match args.get("length") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| err_because("invalid_arguments", "length must be a whole number"))?;
        // `missing_argument`: "Typically only occurs when the length provided is 0".
        if length == 0 {
            return Err(err_because("missing_argument", "length is 0"));
        }
        let alt_txt = args
            .get("alt_txt")
            .and_then(Value::as_str)
            .map(str::to_string);
        if alt_txt
            .as_deref()
            .is_some_and(|a| blocks::chars(a) > MAX_ALT_TXT)
        {
            return Err(err("alt_txt_too_large"));
        }
        let mut st = sh.state.lock().expect("slack state");
        st.next_id += 1;
        let file_id = format!("F0TF{:08}", st.next_id);
        st.uploads.push(Upload {
            file_id: file_id.clone(),
            filename,
            length: length as usize,
            alt_txt,
            bytes: None,
            sent_as: None,
            title: None,
            channel: None,
            completed: None,
        });
        Ok(
            json!({"ok": true, "upload_url": format!("{}/upload/v1/{file_id}", sh.base),
                  "file_id": file_id}),
        )
    })
}

async fn complete_upload(s: St, m: Method, h: HeaderMap, q: RawQuery, b: Bytes) -> Response {
    api(
        &s.0,
        Endpoint::CompleteUpload,
        &m,
        &h,
        q.0,
        &b,
        |sh, args| {
            // `files`: required array of {id, title?}; a form body sends it as JSON text.
            let files = match args.get("files") {
                Some(Value::Array(a)) => a.clone(),
                Some(Value::String(raw)) => match serde_json::from_str::<Value>(raw) {
                    Ok(Value::Array(a)) => a,
                    _ => {
                        return Err(err_because(
                            "invalid_arguments",
                            "files is not a JSON array",
                        ))
                    }
                },
                _ => return Err(err_because("invalid_arguments", "files is required")),
            };
            if files.is_empty() {
                return Err(err_because("invalid_arguments", "files is empty"));
            }
            // channel_id (an id) or channels (comma-separated ids); unknown → channel_not_found.
            let wanted: Vec<String> = match (args.get("channel_id"), args.get("channels")) {
                (Some(Value::String(c)), _) => vec![c.clone()],
                (None, Some(Value::String(cs))) => {
                    cs.split(',').map(|c| c.trim().to_string()).collect()
                }
                _ => {
                    return Err(err_because(
                        "invalid_arguments",
                        "kit rule: no channel_id: Slack would keep the file private, unseen",
                    ))
                }
            };
            if let Some(bad) = wanted
                .iter()
                .find(|c| !sh.config.channels.iter().any(|k| &k.id == *c))
            {
                return Err(err_because(
                    "channel_not_found",
                    format!("{bad} is not a channel id"),
                ));
            }
            if let Some(b) = args.get("blocks") {
                let b = match b {
                    Value::String(raw) => serde_json::from_str(raw).unwrap_or(Value::Null),
                    other => other.clone(),
                };
                let problems = blocks::check(&b);
                if !problems.is_empty() {
                    return Err(err_because("invalid_blocks", problems.join("\n")));
                }
            }
            let mut st = sh.state.lock().expect("slack state");
            // Every id must be one getUploadURLExternal gave, uploaded, not yet completed
            // ("This method can only be called once").
            for f in &files {
                let id = f.get("id").and_then(Value::as_str).unwrap_or_default();
                let why = match st.uploads.iter().find(|u| u.file_id == id) {
                    None => Some(format!(
                        "{id:?} was not given by files.getUploadURLExternal"
                    )),
                    Some(u) if u.bytes.is_none() => Some(format!("{id} was never uploaded")),
                    Some(u) if u.completed.is_some() => Some(format!("{id} is already completed")),
                    Some(_) => None,
                };
                if let Some(why) = why {
                    return Err(err_because("file_not_found", why));
                }
            }
            let mut answer = Vec::new();
            for f in &files {
                let id = f["id"].as_str().unwrap_or_default();
                let u = st
                    .uploads
                    .iter_mut()
                    .find(|u| u.file_id == id)
                    .expect("checked");
                u.title = f.get("title").and_then(Value::as_str).map(str::to_string);
                u.channel = Some(wanted.join(","));
                u.completed = Some(Value::Object(args.clone()));
                answer.push(json!({"id": id, "title": u.title.clone().unwrap_or_else(|| u.filename.clone())}));
            }
            Ok(json!({"ok": true, "files": answer}))
        },
    )
}

/// The upload URL: raw bytes or multipart/form-data ("Files can be sent as raw bytes or
/// can be multipart form encoded"); their count must be the `length` announced. Slack
/// answers 200 with `OK - <bytes>`; a non-200 is a failed upload.
async fn upload(s: St, Path(file_id): Path<String>, h: HeaderMap, b: Bytes) -> Response {
    let sh = &s.0;
    if let Some(r) = take_fault(sh, Endpoint::Upload, FaultStyle::Upload) {
        return r;
    }
    let ctype = header_str(&h, header::CONTENT_TYPE);
    let (bytes, sent_as) = match multipart::boundary(ctype) {
        Some(boundary) => match multipart::parse(&b, &boundary) {
            Ok(parts) => match file_part(parts) {
                Some(data) => (data, "multipart"),
                None => return reject_upload(sh, "no file part in the multipart body"),
            },
            Err(e) => return reject_upload(sh, &format!("bad multipart body: {e}")),
        },
        None => (b.to_vec(), "raw"),
    };
    let mut st = sh.state.lock().expect("slack state");
    let Some(u) = st.uploads.iter_mut().find(|u| u.file_id == file_id) else {
        drop(st);
        return reject_upload(sh, &format!("no upload {file_id}"));
    };
    let why = if u.bytes.is_some() {
        Some(format!("{file_id} was already uploaded"))
    } else if bytes.len() != u.length {
        Some(format!(
            "{} bytes sent, length was {}",
            bytes.len(),
            u.length
        ))
    } else {
        None
    };
    if let Some(why) = why {
        drop(st);
        return reject_upload(sh, &why);
    }
    let n = bytes.len();
    u.bytes = Some(bytes);
    u.sent_as = Some(sent_as);
    let body = json!({"file_id": file_id, "bytes": n, "sent_as": sent_as});
    st.recorded.push(Recorded {
        endpoint: Endpoint::Upload,
        body,
    });
    (StatusCode::OK, format!("OK - {n}")).into_response()
}

/// The part holding the file: the one with a filename, else the one named file.
fn file_part(parts: Vec<multipart::Part>) -> Option<Vec<u8>> {
    let mut parts = parts;
    let at = parts
        .iter()
        .position(|p| p.filename.is_some())
        .or_else(|| {
            parts
                .iter()
                .position(|p| matches!(p.name.as_deref(), Some("file" | "filename")))
        })?;
    Some(parts.swap_remove(at).data)
}

fn reject_upload(sh: &Shared, why: &str) -> Response {
    reject(sh, Endpoint::Upload, "upload_failed", vec![why.to_string()]);
    (StatusCode::BAD_REQUEST, why.to_string()).into_response()
}

/// The incoming webhook. Errors are plain text with these statuses (Slack changelog
/// "Improving error conditions for Incoming Webhooks", 2016-05-17): invalid_payload
/// 400, action_prohibited 403, channel_not_found 404, channel_is_archived 410,
/// rollup_error 500; and from the webhook guide: no_text 400, no_service 404 (no such
/// webhook), invalid_token 403 (a revoked or wrong secret).
async fn webhook(s: St, Path(rest): Path<String>, h: HeaderMap, b: Bytes) -> Response {
    let sh = &s.0;
    if let Some(r) = take_fault(sh, Endpoint::Webhook, FaultStyle::Webhook) {
        return r;
    }
    let want = sh.config.webhook_path.trim_start_matches("/services/");
    if rest != want {
        let same_app = rest.rsplit_once('/').map(|x| x.0) == want.rsplit_once('/').map(|x| x.0);
        let error = if same_app {
            "invalid_token"
        } else {
            "no_service"
        };
        return webhook_reject(sh, error, format!("no webhook at /services/{rest}"));
    }
    // JSON, or a form with the JSON in `payload` (both documented).
    let ctype = header_str(&h, header::CONTENT_TYPE).to_ascii_lowercase();
    let raw: Option<Vec<u8>> = if ctype.starts_with("application/json") {
        Some(b.to_vec())
    } else if ctype.starts_with("application/x-www-form-urlencoded") {
        form_urlencoded::parse(&b)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned().into_bytes())
    } else {
        None
    };
    let mut args = match raw.as_deref().map(serde_json::from_slice::<Value>) {
        Some(Ok(Value::Object(m))) => m,
        _ => return webhook_reject(sh, "invalid_payload", "not a JSON object".into()),
    };
    if let Err((error, why)) = message_rules(sh, &mut args) {
        return webhook_reject(sh, error, why);
    }
    let mut st = sh.state.lock().expect("slack state");
    st.recorded.push(Recorded {
        endpoint: Endpoint::Webhook,
        body: Value::Object(args),
    });
    (StatusCode::OK, "ok").into_response()
}

fn webhook_reject(sh: &Shared, error: &str, why: String) -> Response {
    reject(sh, Endpoint::Webhook, error, vec![why]);
    (webhook_status(error), error.to_string()).into_response()
}

fn channel_by_id_or_name(sh: &Shared, channel: Option<&Value>) -> Option<String> {
    let c = channel?.as_str()?;
    let name = c.trim_start_matches('#');
    sh.config
        .channels
        .iter()
        .find(|k| k.id == c || k.name == name)
        .map(|k| k.id.clone())
}
