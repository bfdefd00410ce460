//! Plain HTTP GETs on loopback without a client library: an emulator's health endpoint,
//! and the Prometheus text our binaries serve on /metrics (with the sum of a metric's
//! series, which is what the tests and the chaos run read from it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a GET waits for its answer unless told otherwise.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET path` from `addr` (`127.0.0.1:port`), HTTP/1.0 so the answer is never chunked:
/// (status, body). `timeout` bounds each read.
pub fn get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(timeout))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    c.write_all(request.as_bytes())?;
    let mut text = String::new();
    c.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {text:.80}")))?;
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Ok((status, body))
}

/// A GET on loopback `port`: (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    get(&format!("127.0.0.1:{port}"), path, READ_TIMEOUT)
}

/// The text of `http://addr/metrics`; an error unless it answered 200.
pub fn scrape_metrics(addr: &str) -> std::io::Result<String> {
    scrape_metrics_within(addr, READ_TIMEOUT)
}

/// [`scrape_metrics`] with its own read timeout (a paused process accepts the
/// connection and never answers).
pub fn scrape_metrics_within(addr: &str, timeout: Duration) -> std::io::Result<String> {
    match get(addr, "/metrics", timeout)? {
        (200, body) => Ok(body),
        (status, _) => Err(std::io::Error::other(format!(
            "unexpected /metrics answer from {addr}: HTTP {status}"
        ))),
    }
}

/// Sum of every series of `metric` in a Prometheus text (0 when absent); series of other
/// metrics that merely start with the same name are left out.
pub fn sum_metric(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_of_one_metric_only() {
        let body = "# HELP x\nm_total{a=\"1\"} 2\nm_total{a=\"2\"} 3\nm_total_other 9\nm_total 1\n";
        assert_eq!(sum_metric(body, "m_total"), 6.0);
        assert_eq!(sum_metric(body, "absent"), 0.0);
    }

    #[test]
    fn gets_status_and_body() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for answer in ["HTTP/1.0 200 OK\r\n\r\nm 1\n", "HTTP/1.0 503 No\r\n\r\n"] {
                let (mut s, _) = l.accept().unwrap();
                let mut req = [0u8; 512];
                let n = s.read(&mut req).unwrap();
                assert!(req[..n].starts_with(b"GET /metrics HTTP/1.0\r\n"));
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        assert_eq!(scrape_metrics(&addr).unwrap(), "m 1\n");
        assert!(scrape_metrics(&addr).is_err());
        server.join().unwrap();
    }
}
