//! A thin HTTP(S) GET client for Binance's public REST market data (prices for the
//! report, historical trades for the producer's gap backfill), and the two pieces every
//! HTTP client of the project is made of ([`https_client`], [`read_reply`]; the report's
//! Slack client POSTs with them). It is the hyper/rustls stack the AWS SDK already
//! brings in, with webpki roots: no second TLS library, and certificate verification is
//! never off. `http://` is accepted for local runs.

pub mod weight;

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A pooled HTTP/1 client over rustls sending bodies of type `B`.
pub type HttpsClient<B> = Client<hyper_rustls::HttpsConnector<HttpConnector>, B>;

/// A client over rustls (aws-lc-rs, the SDK's provider, named explicitly: no reliance
/// on a process-wide default) with webpki roots, HTTP/1, `http://` allowed.
pub fn https_client<B>() -> Result<HttpsClient<B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| format!("TLS setup: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// The reply's status, `Retry-After` and body (an error past `max_body` bytes).
pub async fn read_reply(resp: hyper::Response<Incoming>, max_body: usize) -> Result<Reply, String> {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = Limited::new(resp.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| format!("reading the reply: {e}"))?
        .to_bytes();
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

/// The longest `Retry-After` believed: Binance's longest IP ban (418) is 3 days. A
/// larger number (up to `u64::MAX` seconds from a hostile or broken server) is read as
/// this, so no caller ever adds an absurd duration to an instant.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RestError {
    #[error("{url} is not a usable URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{url} did not answer within {ms} ms")]
    Timeout { url: String, ms: u128 },
    #[error("{url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
}

/// One reply, whatever its status (the caller decides what a 429 or 400 means).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// `Retry-After` in seconds, when the server sent one (Binance does on 429/418),
    /// at most [`MAX_RETRY_AFTER`].
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text for an error message, at most `max` characters.
    pub fn body_excerpt(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        match text.char_indices().nth(max) {
            Some((i, _)) => text[..i].to_string(),
            None => text.into_owned(),
        }
    }
}

/// A REST base URL and a connection pool. Cheap to clone.
#[derive(Clone)]
pub struct RestClient {
    client: HttpsClient<Empty<Bytes>>,
    base: String,
    timeout: Duration,
    max_body: usize,
    user_agent: &'static str,
}

impl RestClient {
    /// `base_url` like `https://data-api.binance.vision` (no path). Every request is
    /// abandoned after `timeout`; bodies over `max_body` bytes are an error.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        max_body: usize,
        user_agent: &'static str,
    ) -> Result<Self, RestError> {
        let invalid = |reason: String| RestError::InvalidUrl {
            url: base_url.to_string(),
            reason,
        };
        let uri: hyper::Uri = base_url.parse().map_err(|e| invalid(format!("{e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(invalid("want http(s)://host[:port]".into()));
        }
        Ok(RestClient {
            client: https_client().map_err(invalid)?,
            base: base_url.trim_end_matches('/').to_string(),
            timeout,
            max_body,
            user_agent,
        })
    }

    /// The full URL of `path_and_query` (for messages; it holds no secret).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// GETs `path_and_query` (starting with `/`) under the base URL.
    pub async fn get(&self, path_and_query: &str) -> Result<Reply, RestError> {
        let url = self.url(path_and_query);
        match tokio::time::timeout(self.timeout, self.send(&url)).await {
            Ok(r) => r,
            Err(_) => Err(RestError::Timeout {
                url,
                ms: self.timeout.as_millis(),
            }),
        }
    }

    async fn send(&self, url: &str) -> Result<Reply, RestError> {
        let unreachable = |reason: String| RestError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let uri: hyper::Uri = url.parse().map_err(|e| RestError::InvalidUrl {
            url: url.to_string(),
            reason: format!("{e}"),
        })?;
        let req = hyper::Request::get(uri)
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, self.user_agent)
            .body(Empty::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        read_reply(resp, self.max_body).await.map_err(unreachable)
    }
}

/// `Retry-After` as delay-seconds, capped at [`MAX_RETRY_AFTER`] (a number too large
/// for `u64` is capped too). An HTTP-date or anything else is `None`: the caller's own
/// backoff applies.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = v.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// An error and its sources on one line ("connection refused" hides two levels down).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_bounded() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        for huge in [
            "18446744073709551615",
            "99999999999999999999999999",
            "259201",
        ] {
            assert_eq!(parse_retry_after(huge), Some(MAX_RETRY_AFTER), "{huge}");
        }
        for other in ["", "soon", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse_retry_after(other), None, "{other}");
        }
    }

    #[test]
    fn urls_are_checked() {
        let t = Duration::from_secs(1);
        assert!(RestClient::new("https://data-api.binance.vision", t, 1024, "t").is_ok());
        assert!(RestClient::new("http://127.0.0.1:9", t, 1024, "t").is_ok());
        for bad in [
            "ftp://x",
            "not a url",
            "/just/a/path",
            "wss://stream.binance.com",
        ] {
            assert!(
                matches!(
                    RestClient::new(bad, t, 1024, "t"),
                    Err(RestError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
        let c = RestClient::new("http://h:1/", t, 1024, "t").unwrap();
        assert_eq!(c.url("/api/v3/x?a=1"), "http://h:1/api/v3/x?a=1");
    }
}
