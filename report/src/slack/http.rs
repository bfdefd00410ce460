//! A thin HTTPS POST client for Slack: the hyper/rustls (aws-lc-rs) stack the AWS SDK
//! already brings, webpki roots, HTTP/1; `http://` is accepted for the local test
//! server. Every request is bounded by one timeout. Errors never hold the URL (a webhook
//! URL is a secret) nor the token: the caller names what was called.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use tradeflow_shared::rest::{error_chain, https_client, read_reply, HttpsClient};
use tradeflow_shared::secret::Secret;

/// Status, `Retry-After` and body: the project's one reply type.
pub use tradeflow_shared::rest::Reply;

/// Slack's answers are small JSON or text; anything far larger is not Slack.
const MAX_REPLY: usize = 1024 * 1024;

/// What a request carries.
pub enum Body {
    /// `application/json; charset=utf-8` (chat.postMessage, the webhook).
    Json(Vec<u8>),
    /// `application/x-www-form-urlencoded` (the files.* methods).
    Form(Vec<(&'static str, String)>),
    /// The file's bytes, to the upload URL.
    Raw(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("could not be reached: {0}")]
    Unreachable(String),
    #[error("not a usable URL (http(s)://host/...)")]
    InvalidUrl,
}

#[derive(Clone)]
pub struct Http {
    client: HttpsClient<Full<Bytes>>,
    timeout: Duration,
}

impl Http {
    pub fn new(timeout: Duration) -> Result<Self, HttpError> {
        Ok(Http {
            client: https_client().map_err(HttpError::Unreachable)?,
            timeout,
        })
    }

    /// POSTs `body` to `url`, with `Authorization: Bearer <token>` when given.
    pub async fn post(
        &self,
        url: &str,
        token: Option<&Secret>,
        body: Body,
    ) -> Result<Reply, HttpError> {
        match tokio::time::timeout(self.timeout, self.send(url, token, body)).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(self.timeout.as_millis())),
        }
    }

    async fn send(
        &self,
        url: &str,
        token: Option<&Secret>,
        body: Body,
    ) -> Result<Reply, HttpError> {
        let uri: hyper::Uri = url.parse().map_err(|_| HttpError::InvalidUrl)?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(HttpError::InvalidUrl);
        }
        let (ctype, bytes) = match body {
            Body::Json(b) => ("application/json; charset=utf-8", b),
            Body::Form(pairs) => (
                "application/x-www-form-urlencoded",
                form_encode(&pairs).into_bytes(),
            ),
            Body::Raw(b) => ("application/octet-stream", b),
        };
        let mut req = hyper::Request::post(uri)
            .header(CONTENT_TYPE, ctype)
            .header(USER_AGENT, "tradeflow-report");
        if let Some(t) = token {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                HttpError::Unreachable("the token is not a valid header value".into())
            })?;
            // Kept out of any debug output of the request.
            v.set_sensitive(true);
            req = req.header(AUTHORIZATION, v);
        }
        let req = req
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| HttpError::Unreachable(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| HttpError::Unreachable(error_chain(&e)))?;
        read_reply(resp, MAX_REPLY)
            .await
            .map_err(HttpError::Unreachable)
    }
}

/// `application/x-www-form-urlencoded` (RFC 3986 unreserved kept, space as `%20`).
pub fn form_encode(pairs: &[(&str, String)]) -> String {
    let enc = |s: &str| {
        let mut o = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                o.push(b as char);
            } else {
                o.push_str(&format!("%{b:02X}"));
            }
        }
        o
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    #[test]
    fn forms_are_encoded() {
        let f = super::form_encode(&[("files", r#"[{"id":"F1"}]"#.into()), ("a b", "é&=".into())]);
        assert_eq!(
            f,
            "files=%5B%7B%22id%22%3A%22F1%22%7D%5D&a%20b=%C3%A9%26%3D"
        );
    }
}
