//! A fault-injecting HTTP/1.1 proxy between the producer and a Kinesis emulator. It
//! understands PutRecords (awsJson1.1, what the SDK sends for Kinesis; anything else
//! is counted in `other_content_types`) and can
//! - fail chosen entries: they are NOT forwarded, and the answer merges the emulator's
//!   results for the rest with `ProvisionedThroughputExceededException` /
//!   `InternalFailure` entries for them;
//! - fail whole calls without forwarding them: a 400 throttling error or a 500.
//!
//! Faults are never "applied but answered as failed", so a correct producer writes
//! every trade exactly once through it.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Fail entry k of a call when (call number · 31 + k) % n == 0 (deterministic).
    pub fail_entry_every: Option<u64>,
    /// Fail every n-th PutRecords call as a whole, alternating throttle (400) and 500.
    pub fail_call_every: Option<u64>,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub put_calls: u64,
    pub entries_failed: u64,
    pub calls_throttled: u64,
    pub calls_500: u64,
    pub forwarded: u64,
    pub other_content_types: Vec<String>,
}

pub struct Proxy {
    pub port: u16,
    pub stats: Arc<Mutex<Stats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(upstream_port: u16, plan: Plan) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stats = Arc::new(Mutex::new(Stats::default()));
    let st = stats.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            let (st, plan) = (st.clone(), plan.clone());
            tokio::spawn(async move {
                let _ = serve_conn(conn, upstream_port, plan, st).await;
            });
        }
    });
    Proxy { port, stats, task }
}

struct Request {
    head: Vec<(String, String)>,
    start_line: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..i + 4).collect();
            return Ok(Some(head));
        }
        let mut chunk = [0u8; 8192];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_head(head: &[u8]) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (start, headers)
}

async fn read_body(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: usize,
) -> std::io::Result<Vec<u8>> {
    while buf.len() < len {
        let mut chunk = [0u8; 65536];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf.drain(..len).collect())
}

async fn serve_conn(
    mut conn: TcpStream,
    upstream: u16,
    plan: Plan,
    stats: Arc<Mutex<Stats>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut conn, &mut buf).await? else {
            return Ok(());
        };
        let (start_line, headers) = parse_head(&head);
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body = read_body(&mut conn, &mut buf, len).await?;
        let req = Request {
            head: headers,
            start_line,
            body,
        };
        let (status, ctype, body) = handle(req, upstream, &plan, &stats).await?;
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nx-amzn-requestid: proxy\r\n\r\n",
            body.len()
        );
        conn.write_all(resp.as_bytes()).await?;
        conn.write_all(&body).await?;
    }
}

async fn handle(
    req: Request,
    upstream: u16,
    plan: &Plan,
    stats: &Arc<Mutex<Stats>>,
) -> std::io::Result<(String, String, Vec<u8>)> {
    let target = req.header("x-amz-target").unwrap_or_default().to_string();
    let ctype = req.header("content-type").unwrap_or_default().to_string();
    if !ctype.contains("x-amz-json") {
        stats
            .lock()
            .unwrap()
            .other_content_types
            .push(ctype.clone());
    }
    if !target.ends_with(".PutRecords") {
        return forward(&req, req.body.clone(), upstream).await;
    }
    let call = {
        let mut s = stats.lock().unwrap();
        s.put_calls += 1;
        s.put_calls
    };
    if let Some(n) = plan.fail_call_every {
        if call % n == 0 {
            let throttle = (call / n) % 2 == 1;
            let mut s = stats.lock().unwrap();
            return Ok(if throttle {
                s.calls_throttled += 1;
                (
                    "400 Bad Request".into(),
                    "application/x-amz-json-1.1".into(),
                    json!({"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded for shard (injected)"}).to_string().into_bytes(),
                )
            } else {
                s.calls_500 += 1;
                (
                    "500 Internal Server Error".into(),
                    "application/x-amz-json-1.1".into(),
                    json!({"__type": "InternalFailure", "message": "injected"})
                        .to_string()
                        .into_bytes(),
                )
            });
        }
    }
    let Some(every) = plan.fail_entry_every else {
        stats.lock().unwrap().forwarded += 1;
        return forward(&req, req.body.clone(), upstream).await;
    };
    let mut v: Value = serde_json::from_slice(&req.body).expect("PutRecords JSON");
    let records = v["Records"].as_array().cloned().unwrap_or_default();
    let fail: Vec<bool> = (0..records.len() as u64)
        .map(|k| (call * 31 + k) % every == 0)
        .collect();
    let kept: Vec<Value> = records
        .iter()
        .zip(&fail)
        .filter(|(_, f)| !**f)
        .map(|(r, _)| r.clone())
        .collect();
    let mut upstream_results: Vec<Value> = Vec::new();
    if !kept.is_empty() {
        v["Records"] = Value::Array(kept);
        let (status, _, body) = forward(&req, serde_json::to_vec(&v).unwrap(), upstream).await?;
        if !status.starts_with("200") {
            return Ok((status, "application/x-amz-json-1.1".into(), body));
        }
        stats.lock().unwrap().forwarded += 1;
        let r: Value = serde_json::from_slice(&body).expect("PutRecords answer JSON");
        upstream_results = r["Records"].as_array().cloned().unwrap_or_default();
    }
    let mut up = upstream_results.into_iter();
    let mut failed = 0u64;
    let merged: Vec<Value> = fail
        .iter()
        .enumerate()
        .map(|(k, f)| {
            if *f {
                failed += 1;
                let code = if k % 2 == 0 {
                    "ProvisionedThroughputExceededException"
                } else {
                    "InternalFailure"
                };
                json!({"ErrorCode": code, "ErrorMessage": "injected"})
            } else {
                let r = up.next().expect("one upstream result per kept entry");
                if r.get("ErrorCode").is_some() {
                    failed += 1;
                }
                r
            }
        })
        .collect();
    stats.lock().unwrap().entries_failed += fail.iter().filter(|f| **f).count() as u64;
    let answer = json!({"FailedRecordCount": failed, "Records": merged});
    Ok((
        "200 OK".into(),
        "application/x-amz-json-1.1".into(),
        answer.to_string().into_bytes(),
    ))
}

/// Sends the request upstream on a fresh connection and reads the whole answer.
async fn forward(
    req: &Request,
    body: Vec<u8>,
    upstream: u16,
) -> std::io::Result<(String, String, Vec<u8>)> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).await?;
    let mut head = format!("{}\r\n", req.start_line);
    for (k, v) in &req.head {
        if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("connection") {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    up.write_all(head.as_bytes()).await?;
    up.write_all(&body).await?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).await?;
    let i = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let (start, headers) = parse_head(&raw[..i + 4]);
    let mut body = raw[i + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    let status = start
        .split_once(' ')
        .map(|x| x.1)
        .unwrap_or("502 Bad Gateway")
        .to_string();
    let ctype = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "application/x-amz-json-1.1".into());
    Ok((status, ctype, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&b[..i]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 2 + size + 2).min(b.len())..];
    }
}
