//! The server itself, driven by a plain HTTP client (hyper-util's, already in the tree).

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::*;

mod files;
mod messages;

pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: axum::http::HeaderMap,
    pub(super) body: Bytes,
}

impl Answer {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The Web API's `error`, or "ok".
    pub(super) fn error(&self) -> String {
        let v = self.json();
        assert_eq!(self.status, 200, "Web API errors are HTTP 200: {v}");
        match v["ok"].as_bool() {
            Some(true) => "ok".into(),
            _ => v["error"].as_str().expect("error string").to_string(),
        }
    }
}

pub(super) async fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = axum::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::new(body.into())).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// chat.postMessage with a JSON body and the bearer token.
pub(super) async fn post(slack: &SlackServer, body: Value) -> Answer {
    let auth = format!("Bearer {}", slack.token());
    let url = format!("{}chat.postMessage", slack.api_url());
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json; charset=utf-8"),
    ];
    call("POST", &url, &h, body.to_string()).await
}

pub(super) fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}
