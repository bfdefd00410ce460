//! The Web API's common path: the injected faults, the arguments (JSON, form or query),
//! the token, and Slack's way of answering (HTTP 200 `{"ok":false,"error":…}`).

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{Endpoint, Fault, Recorded, Rejection, Shared};

/// A refusal: the Slack error string, and the lines Slack puts beside it.
pub(super) struct ApiError {
    pub(super) error: String,
    pub(super) details: Vec<String>,
}

pub(super) fn err(error: &str) -> ApiError {
    ApiError {
        error: error.into(),
        details: vec![],
    }
}

pub(super) fn err_because(error: &str, why: impl Into<String>) -> ApiError {
    ApiError {
        error: error.into(),
        details: vec![why.into()],
    }
}

pub(super) async fn unknown_method() -> Response {
    json_response(
        StatusCode::OK,
        json!({"ok": false, "error": "unknown_method"}),
    )
}

/// The Web API's common path: count, injected fault, arguments, token, then `handle`.
pub(super) fn api(
    sh: &Shared,
    endpoint: Endpoint,
    method: &Method,
    headers: &HeaderMap,
    query: Option<String>,
    body: &[u8],
    handle: impl FnOnce(&Shared, &mut Map<String, Value>) -> Result<Value, ApiError>,
) -> Response {
    if let Some(r) = take_fault(sh, endpoint, FaultStyle::Api) {
        return r;
    }
    let outcome = arguments(method, headers, query, body).and_then(|(mut args, json)| {
        authenticate(sh, headers, &args, json)?;
        args.remove("token");
        let answer = handle(sh, &mut args)?;
        Ok((args, answer))
    });
    match outcome {
        Ok((args, answer)) => {
            let mut st = sh.state.lock().expect("slack state");
            st.recorded.push(Recorded {
                endpoint,
                body: Value::Object(args),
            });
            json_response(StatusCode::OK, answer)
        }
        Err(e) => {
            reject(sh, endpoint, &e.error, e.details.clone());
            let mut body = json!({"ok": false, "error": e.error});
            if !e.details.is_empty() {
                if e.error == "invalid_blocks" {
                    body["errors"] = json!(e.details[0].lines().collect::<Vec<_>>());
                }
                let msgs: Vec<String> = e
                    .details
                    .iter()
                    .flat_map(|d| d.lines())
                    .map(|l| format!("[ERROR] {l}"))
                    .collect();
                body["response_metadata"] = json!({"messages": msgs});
            }
            json_response(StatusCode::OK, body)
        }
    }
}

/// The arguments (and whether they came as JSON). The Web API takes
/// application/json or application/x-www-form-urlencoded bodies, and a GET's query;
/// the common errors are: `missing_post_type` (a body without Content-Type),
/// `invalid_post_type` (another type), `invalid_json`, `json_not_object`.
fn arguments(
    method: &Method,
    headers: &HeaderMap,
    query: Option<String>,
    body: &[u8],
) -> Result<(Map<String, Value>, bool), ApiError> {
    let form = |bytes: &[u8]| -> Map<String, Value> {
        form_urlencoded::parse(bytes)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect()
    };
    if method == Method::GET {
        return Ok((form(query.unwrap_or_default().as_bytes()), false));
    }
    let ctype = header_str(headers, header::CONTENT_TYPE).to_ascii_lowercase();
    let mime = ctype.split(';').next().unwrap_or("").trim();
    match mime {
        "" if body.is_empty() => Ok((Map::new(), false)),
        "" => Err(err("missing_post_type")),
        "application/json" => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok((m, true)),
            Ok(_) => Err(err("json_not_object")),
            Err(e) => Err(err_because("invalid_json", e.to_string())),
        },
        "application/x-www-form-urlencoded" => Ok((form(body), false)),
        other => Err(err_because(
            "invalid_post_type",
            format!("Content-Type {other}"),
        )),
    }
}

/// "Tokens should be passed as an HTTP Authorization header or alternatively, as a POST
/// parameter"; a JSON body must use the header. None: `not_authed`; wrong: `invalid_auth`.
fn authenticate(
    sh: &Shared,
    headers: &HeaderMap,
    args: &Map<String, Value>,
    json: bool,
) -> Result<(), ApiError> {
    let from_header = headers.get(header::AUTHORIZATION).map(|v| {
        let v = v.to_str().unwrap_or("");
        v.strip_prefix("Bearer ")
            .unwrap_or("\u{0}not a bearer token")
            .to_string()
    });
    let from_args = (!json)
        .then(|| args.get("token").and_then(Value::as_str))
        .flatten();
    let token = match (from_header.as_deref(), from_args) {
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => return Err(err("not_authed")),
    };
    if token != sh.config.bot_token {
        return Err(err("invalid_auth"));
    }
    Ok(())
}

#[derive(Clone, Copy)]
pub(super) enum FaultStyle {
    Api,
    Upload,
    Webhook,
}

/// Counts the call and answers the next injected fault of `endpoint`, if any.
pub(super) fn take_fault(sh: &Shared, endpoint: Endpoint, style: FaultStyle) -> Option<Response> {
    let fault = {
        let mut st = sh.state.lock().expect("slack state");
        *st.calls.entry(endpoint).or_default() += 1;
        st.faults.get_mut(&endpoint)?.pop_front()?
    };
    Some(match (fault, style) {
        (Fault::RateLimited { retry_after }, style) => {
            let body = match style {
                FaultStyle::Api => json!({"ok": false, "error": "ratelimited"}).to_string(),
                _ => "rate_limited".to_string(),
            };
            let ctype = match style {
                FaultStyle::Api => "application/json; charset=utf-8",
                _ => "text/plain; charset=utf-8",
            };
            (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::RETRY_AFTER, retry_after.to_string()),
                    (header::CONTENT_TYPE, ctype.into()),
                ],
                body,
            )
                .into_response()
        }
        (Fault::Error(e), FaultStyle::Api) => {
            json_response(StatusCode::OK, json!({"ok": false, "error": e}))
        }
        (Fault::Error(e), FaultStyle::Webhook) => (webhook_status(&e), e).into_response(),
        (Fault::Error(e), FaultStyle::Upload) => (StatusCode::BAD_REQUEST, e).into_response(),
        (Fault::Status(code), _) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
    })
}

pub(super) fn reject(sh: &Shared, endpoint: Endpoint, error: &str, details: Vec<String>) {
    let mut st = sh.state.lock().expect("slack state");
    st.rejections.push(Rejection {
        endpoint,
        error: error.to_string(),
        details,
    });
}

pub(super) fn header_str(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// The webhook's status for an error (see handlers.rs, `webhook`).
pub(super) fn webhook_status(error: &str) -> StatusCode {
    match error {
        "action_prohibited" | "invalid_token" => StatusCode::FORBIDDEN,
        "channel_not_found" | "no_service" => StatusCode::NOT_FOUND,
        "channel_is_archived" => StatusCode::GONE,
        "rollup_error" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}
