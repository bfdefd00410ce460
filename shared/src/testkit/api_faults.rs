//! An operation-level fault layer: a loopback HTTP proxy between an AWS SDK client and
//! an emulator (ferrokinesis, kinesis-mock, dynalite). It reads the `X-Amz-Target`
//! header (`Kinesis_20131202.PutRecords`, `DynamoDB_20120810.UpdateItem`) and, by rules
//! that tests change while it runs, on a seeded schedule, answers what AWS answers in a
//! bad minute:
//! - an error in the service's own JSON shape (500 `InternalFailure`, 400
//!   `ProvisionedThroughputExceededException`, `LimitExceededException`,
//!   `ThrottlingException`, `ExpiredIteratorException` …) without forwarding;
//! - a reset before forwarding (nothing happened), or **after** forwarding (the call
//!   took effect; its answer is lost);
//! - a delay before forwarding (longer than the SDK's attempt timeout: the call may land
//!   after the client gave up on it);
//! - a 200 whose body is cut short, and a 500 whose body is not JSON.
//!
//! Every fault injected is counted by operation and kind (`stats`), so a run can say
//! what it survived. Plain HTTP only (the emulators' HTTP ports).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::{Rng, SeedableRng};

/// What the proxy does to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// 500 with the service's internal-error type (`InternalFailure` for Kinesis,
    /// `InternalServerError` for DynamoDB). Not forwarded.
    ServerError,
    /// 400 with the operation's throttling type (Kinesis data plane:
    /// `ProvisionedThroughputExceededException`; Kinesis control plane:
    /// `LimitExceededException`; DynamoDB: `ThrottlingException` or
    /// `ProvisionedThroughputExceededException`). Not forwarded.
    Throttle,
    /// 400 `ExpiredIteratorException` (GetRecords; other operations get `Throttle`).
    ExpiredIterator,
    /// The connection is closed before forwarding: nothing happened.
    ResetBefore,
    /// Forwarded, then the connection is closed: it happened, the answer is lost.
    ResetAfter,
    /// Forwarded after this long.
    Delay(Duration),
    /// Forwarded; a 200 answer is cut in half (declared length kept), others pass.
    Truncate,
    /// 500 whose body is not JSON. Not forwarded.
    Garbage,
}

impl Fault {
    /// A short label for stats and reports.
    pub fn label(&self) -> &'static str {
        match self {
            Fault::ServerError => "500",
            Fault::Throttle => "throttle",
            Fault::ExpiredIterator => "expired_iterator",
            Fault::ResetBefore => "reset_before",
            Fault::ResetAfter => "reset_after",
            Fault::Delay(_) => "delay",
            Fault::Truncate => "truncated",
            Fault::Garbage => "garbage",
        }
    }
}

/// When a rule applies. `op` is an operation name (`PutRecords`), a service and an
/// operation (`DynamoDB.UpdateItem`), a service (`Kinesis.*`), or `*`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub op: String,
    pub fault: Fault,
    /// Share of the matching calls faulted (seeded draw); 1.0: all of them.
    pub probability: f64,
    /// Faults this rule injects at most (then it stops matching).
    pub max_faults: Option<u64>,
}

impl Rule {
    /// Every call of `op` gets `fault`.
    pub fn always(op: &str, fault: Fault) -> Self {
        Rule {
            op: op.into(),
            fault,
            probability: 1.0,
            max_faults: None,
        }
    }

    /// A share of the calls of `op` gets `fault`.
    pub fn sometimes(op: &str, fault: Fault, probability: f64) -> Self {
        Rule {
            probability,
            ..Rule::always(op, fault)
        }
    }

    fn matches(&self, service: &str, op: &str) -> bool {
        let pat = self.op.as_str();
        pat == "*"
            || pat == op
            || pat
                .split_once('.')
                .is_some_and(|(s, o)| s.eq_ignore_ascii_case(service) && (o == "*" || o == op))
    }
}

/// Calls seen and faults injected, by operation (`Kinesis.PutRecords`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub calls: BTreeMap<String, u64>,
    /// (operation, fault label) → count.
    pub faults: BTreeMap<(String, &'static str), u64>,
}

impl Stats {
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Faults injected into `op` (the bare operation name), every kind together.
    pub fn faults_for(&self, op: &str) -> u64 {
        self.faults
            .iter()
            .filter(|((o, _), _)| o.rsplit('.').next() == Some(op))
            .map(|(_, n)| n)
            .sum()
    }

    /// Adds `other` (another proxy's stats) into this.
    pub fn merge(&mut self, other: &Stats) {
        for (k, v) in &other.calls {
            *self.calls.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.faults {
            *self.faults.entry(k.clone()).or_default() += v;
        }
    }
}

struct State {
    upstream: String,
    rules: Mutex<Vec<(Rule, u64)>>,
    rng: Mutex<rand::rngs::StdRng>,
    stats: Mutex<Stats>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

/// A running proxy; stopped when dropped.
pub struct FaultProxy {
    pub port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (`http://127.0.0.1:PORT`), on a free loopback
    /// port, with no rules yet; `seed` fixes which calls a probabilistic rule faults.
    pub async fn start(upstream: &str, seed: u64) -> std::io::Result<FaultProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            rules: Mutex::new(Vec::new()),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
            stats: Mutex::new(Stats::default()),
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(5))
                .build_http(),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    // An error here is a fault we injected (or the client going away).
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(conn), service)
                        .await;
                });
            }
        });
        Ok(FaultProxy { port, state, task })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the rules (the first matching rule decides a call).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.state.rules.lock().expect("rules") = rules.into_iter().map(|r| (r, 0)).collect();
    }

    /// No more faults: every call is forwarded as it is.
    pub fn clear(&self) {
        self.set_rules(Vec::new());
    }

    pub fn stats(&self) -> Stats {
        self.state.stats.lock().expect("stats").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Aborts the connection (hyper closes it without an answer when the service fails).
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the fault proxy")
    }
}
impl std::error::Error for Reset {}

type Answer = Result<Response<Full<Bytes>>, Reset>;

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Answer {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (service, op) = split_target(&target);
    let name = format!("{service}.{op}");
    st.stats
        .lock()
        .expect("stats")
        .calls
        .entry(name.clone())
        .and_modify(|n| *n += 1)
        .or_insert(1);
    // An expired iterator only exists for GetRecords; elsewhere it is a throttle, and
    // counted as what it was.
    let fault = choose(&st, service, op).map(|f| match f {
        Fault::ExpiredIterator if op != "GetRecords" => Fault::Throttle,
        f => f,
    });
    if let Some(f) = fault {
        *st.stats
            .lock()
            .expect("stats")
            .faults
            .entry((name.clone(), f.label()))
            .or_default() += 1;
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Err(Reset);
    };
    match fault {
        Some(Fault::ServerError) => Ok(aws_error(service, 500, internal_type(service))),
        Some(Fault::Throttle) => Ok(aws_error(service, 400, throttle_type(service, op))),
        Some(Fault::ExpiredIterator) => Ok(aws_error(service, 400, "ExpiredIteratorException")),
        Some(Fault::Garbage) => Ok(Response::builder()
            .status(500)
            .header("content-type", "text/html")
            .body(Full::new(Bytes::from_static(
                b"<html><body>502 Bad Gateway (injected)</body></html>\n{\"__type\":",
            )))
            .expect("static response")),
        Some(Fault::ResetBefore) => Err(Reset),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            forward(&st, parts, body).await
        }
        Some(Fault::ResetAfter) => {
            let _ = forward(&st, parts, body).await;
            Err(Reset)
        }
        Some(Fault::Truncate) => {
            let answer = forward(&st, parts, body).await?;
            if answer.status() != StatusCode::OK {
                return Ok(answer);
            }
            let (mut head, body) = answer.into_parts();
            let full = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let cut = full.slice(..full.len() / 2);
            // The declared length stays that of the whole body: the client sees the
            // connection end in the middle of the answer.
            head.headers.insert(
                hyper::header::CONTENT_LENGTH,
                hyper::header::HeaderValue::from(full.len()),
            );
            Ok(Response::from_parts(head, Full::new(cut)))
        }
        None => forward(&st, parts, body).await,
    }
}

/// `Kinesis_20131202.PutRecords` → ("Kinesis", "PutRecords").
fn split_target(target: &str) -> (&'static str, &str) {
    let (svc, op) = target.split_once('.').unwrap_or(("", target));
    let service = if svc.starts_with("Kinesis") {
        "Kinesis"
    } else if svc.starts_with("DynamoDB") {
        "DynamoDB"
    } else {
        "Other"
    };
    (service, op)
}

fn choose(st: &State, service: &str, op: &str) -> Option<Fault> {
    let mut rules = st.rules.lock().expect("rules");
    let mut rng = st.rng.lock().expect("rng");
    for (rule, used) in rules.iter_mut() {
        if !rule.matches(service, op) || rule.max_faults.is_some_and(|m| *used >= m) {
            continue;
        }
        if rule.probability >= 1.0 || rng.random::<f64>() < rule.probability {
            *used += 1;
            return Some(rule.fault);
        }
        // A rule that matched but drew "no fault" decides the call: later rules are
        // for other operations or other phases, not second chances.
        return None;
    }
    None
}

fn internal_type(service: &str) -> &'static str {
    if service == "DynamoDB" {
        "com.amazonaws.dynamodb.v20120810#InternalServerError"
    } else {
        "InternalFailure"
    }
}

fn throttle_type(service: &str, op: &str) -> &'static str {
    match (service, op) {
        ("DynamoDB", "Scan" | "Query" | "GetItem") => {
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
        }
        ("DynamoDB", _) => "com.amazonaws.dynamodb.v20120810#ThrottlingException",
        (_, "PutRecords" | "PutRecord" | "GetRecords" | "GetShardIterator") => {
            "ProvisionedThroughputExceededException"
        }
        _ => "LimitExceededException",
    }
}

fn aws_error(service: &str, status: u16, kind: &str) -> Response<Full<Bytes>> {
    let ctype = if service == "DynamoDB" {
        "application/x-amz-json-1.0"
    } else {
        "application/x-amz-json-1.1"
    };
    let short = kind.rsplit('#').next().unwrap_or(kind);
    let body = serde_json::json!({"__type": kind, "message": format!("{short} (injected by the fault proxy)")});
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("x-amzn-errortype", short)
        .header("x-amzn-requestid", "fault-proxy")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("error response")
}

async fn forward(st: &State, parts: hyper::http::request::Parts, body: Bytes) -> Answer {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri: hyper::Uri = format!("{}{}", st.upstream, path)
        .parse()
        .map_err(|_| Reset)?;
    let mut req = Request::builder().method(parts.method).uri(uri);
    for (k, v) in parts.headers.iter() {
        req = req.header(k, v);
    }
    let req = req.body(Full::new(body)).map_err(|_| Reset)?;
    // The emulator unreachable (restarting): the client sees a reset, as it would.
    let answer = st.client.request(req).await.map_err(|_| Reset)?;
    let (head, body) = answer.into_parts();
    let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
    Ok(Response::from_parts(head, Full::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_rules_match_by_service_and_operation() {
        assert_eq!(
            split_target("Kinesis_20131202.PutRecords"),
            ("Kinesis", "PutRecords")
        );
        assert_eq!(split_target("DynamoDB_20120810.Scan"), ("DynamoDB", "Scan"));
        assert!(Rule::always("*", Fault::Throttle).matches("Kinesis", "ListShards"));
        assert!(Rule::always("ListShards", Fault::Throttle).matches("Kinesis", "ListShards"));
        assert!(Rule::always("Kinesis.*", Fault::Throttle).matches("Kinesis", "GetRecords"));
        assert!(!Rule::always("Kinesis.*", Fault::Throttle).matches("DynamoDB", "Scan"));
        assert!(
            Rule::always("DynamoDB.UpdateItem", Fault::Throttle).matches("DynamoDB", "UpdateItem")
        );
        assert!(
            !Rule::always("DynamoDB.UpdateItem", Fault::Throttle).matches("DynamoDB", "PutItem")
        );
        assert_eq!(
            throttle_type("Kinesis", "ListShards"),
            "LimitExceededException"
        );
        assert_eq!(
            throttle_type("Kinesis", "PutRecords"),
            "ProvisionedThroughputExceededException"
        );
    }
}
