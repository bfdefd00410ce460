//! `tradeflow-report serve` against a real redis-server and a real headless Chromium:
//! the JSON endpoint, that nothing but the page is served, and in the browser that every
//! symbol shows with its count, that the page follows Redis, and that it says so when
//! Redis is down (and recovers). Leaves a screenshot in
//! `target/test-artifacts/report-web.png`.
//!
//! Needs Debian's `chromium` (`apt-get install -y chromium`); fails with that hint when
//! it is missing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tradeflow_shared::testkit::{self, Service};

const SEED: &[(&str, u64)] = &[
    ("BTCUSDT", 5_000),
    ("ETHUSDT", 3_000),
    ("BNBUSDT", 1_200),
    ("SOLUSDT", 800),
    ("ETHBTC", 400),
    ("XRPUSDT", 250),
    ("DOGEUSDT", 100),
    ("1000SATSUSDT", 7),
];

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub(crate) fn redis_cli(redis: &Service) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{}", redis.port))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Writes the keys the consumer's sink writes: index, counts, stats, minute buckets
/// (bucket `k` minutes before the newest trade holds `count/100 + k`).
fn seed(redis: &Service, rows: &[(&str, u64)], newest_ms: u64) {
    let mut con = redis_cli(redis);
    let minute = newest_ms / 60_000;
    for (sym, count) in rows {
        let mut p = redis::pipe();
        p.cmd("SADD").arg("tradeflow:symbols").arg(*sym);
        p.cmd("SET").arg(format!("symbol:{sym}")).arg(*count);
        let price = match *sym {
            "BTCUSDT" => "60000.00000000",
            "ETHBTC" => "0.05000000",
            _ => "2.00000000",
        };
        p.cmd("HSET")
            .arg(format!("tradeflow:stats:{sym}"))
            .arg(&["base", "1.50000000", "quote", "3.0000000000000000"])
            .arg(&["last_price", price, "last_time_ms"])
            .arg(newest_ms);
        for k in 0..60u64 {
            p.cmd("HSET")
                .arg(format!("tradeflow:min:{sym}:{}", minute - k))
                .arg("count")
                .arg(count / 100 + k);
        }
        p.query::<()>(&mut con).unwrap();
    }
}

/// The `tradeflow-report serve` process; killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
}

impl Server {
    pub(crate) fn start(redis_port: u16) -> Server {
        let port = testkit::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_tradeflow-report"))
            .args(["--redis-url", &format!("redis://127.0.0.1:{redis_port}")])
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tradeflow-report serve");
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 request (`Connection: close`): (status, headers, body).
pub(crate) fn http(port: u16, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("http response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn snapshot(server: &Server) -> (u16, serde_json::Value) {
    let (status, _, body) = http(server.port, "GET", "/api/snapshot");
    (status, serde_json::from_str(&body).expect("JSON body"))
}

/// Calls per command since the last `CONFIG RESETSTAT` (`INFO commandstats`).
pub(crate) fn command_calls(con: &mut redis::Connection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// The snapshot is cached for 1 s across viewers: wait it out before the next read.
pub(crate) fn past_cache() {
    std::thread::sleep(Duration::from_millis(1_100));
}

#[test]
fn json_snapshot_and_nothing_but_the_page() {
    let redis = testkit::redis();
    let newest = now_ms() - 5_000;
    seed(&redis, SEED, newest);
    let server = Server::start(redis.port);

    let (status, snap) = snapshot(&server);
    assert_eq!(status, 200, "{snap}");
    assert_eq!(snap["ok"], true);
    let total: u64 = SEED.iter().map(|(_, c)| c).sum();
    assert_eq!(snap["total_trades"], total);
    assert_eq!(snap["newest_trade_ms"], newest);
    assert!(snap["age_ms"].as_u64().unwrap() >= 5_000);
    let syms = snap["symbols"].as_array().unwrap();
    let got: Vec<(String, u64)> = syms
        .iter()
        .map(|s| {
            (
                s["symbol"].as_str().unwrap().to_string(),
                s["trades"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = SEED.iter().map(|(s, c)| (s.to_string(), *c)).collect();
    assert_eq!(got, want, "every symbol, most trades first");
    // The report's valuation: 1.5 BTC at 60,000; 1.5 ETH at 2 USD; ETH via BTC.
    assert_eq!(syms[0]["usd_value"], "90000.00");
    assert_eq!(syms[1]["usd_value"], "3.00");
    // Per-minute series of the top 5 over the hour ending at the newest trade.
    let m = &snap["minutes"];
    assert_eq!(m["start_minute"], newest / 60_000 - 59);
    let series = m["series"].as_array().unwrap();
    assert_eq!(series.len(), 5);
    assert_eq!(series[0]["symbol"], "BTCUSDT");
    let counts: Vec<u64> = series[0]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    let expect: Vec<u64> = (0..60u64).rev().map(|k| 50 + k).collect();
    assert_eq!(counts, expect);

    // Redis cost of one refresh, counted by Redis itself: 3 round trips,
    // SMEMBERS + MULTI/MGET/EXEC + one HMGET per symbol + 60 HGET per charted symbol.
    past_cache();
    let mut con = redis_cli(&redis);
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .unwrap();
    assert_eq!(snapshot(&server).0, 200);
    let stats = command_calls(&mut con);
    let s = SEED.len() as u64;
    let want_calls: BTreeMap<String, u64> = [
        ("smembers", 1),
        ("multi", 1),
        ("mget", 1),
        ("hmget", s),
        ("exec", 1),
        ("hget", 5 * 60),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let got_calls: BTreeMap<String, u64> = stats
        .into_iter()
        .filter(|(k, _)| k != "config|resetstat" && k != "info")
        .collect();
    assert_eq!(got_calls, want_calls);
    println!(
        "Redis commands per refresh with {s} symbols: {}",
        got_calls.values().sum::<u64>()
    );
    // Viewers share refreshes: five quick reads cost fewer than five refreshes.
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .unwrap();
    for _ in 0..5 {
        assert_eq!(snapshot(&server).0, 200);
    }
    let refreshes = command_calls(&mut con)
        .get("smembers")
        .copied()
        .unwrap_or(0);
    assert!(refreshes < 5, "{refreshes} refreshes for 5 quick reads");

    // The page and its two assets, embedded; page weight is printed for the docs.
    let mut weight = 0;
    for (path, ctype) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let (status, head, body) = http(server.port, "GET", path);
        assert_eq!(status, 200, "{path}");
        assert!(head.contains(&format!("content-type: {ctype}")), "{head}");
        assert!(head.contains("content-security-policy: default-src 'none'"));
        // Nothing loaded from elsewhere (the SVG namespace is a name, not a fetch).
        let body_no_ns = body.replace("http://www.w3.org/2000/svg", "");
        assert!(!body_no_ns.contains("http:") && !body_no_ns.contains("https:"));
        weight += body.len();
    }
    println!("page weight on first load: {weight} bytes (HTML + JS + CSS)");
    assert!(weight < 32 * 1024, "page grew to {weight} bytes");
    // Nothing else.
    for path in [
        "/etc/passwd",
        "/api",
        "/api/snapshot/x",
        "/metrics",
        "/../Cargo.toml",
    ] {
        assert_eq!(http(server.port, "GET", path).0, 404, "{path}");
    }
    assert_eq!(http(server.port, "POST", "/api/snapshot").0, 405);
    assert_eq!(http(server.port, "DELETE", "/").0, 405);
}

#[test]
fn starts_while_redis_is_down_and_says_so() {
    let mut redis = testkit::redis();
    seed(&redis, &SEED[..2], now_ms());
    redis.stop();
    let server = Server::start(redis.port);
    let (status, snap) = snapshot(&server);
    assert_eq!(status, 503);
    assert_eq!(snap["ok"], false);
    let err = snap["error"].as_str().unwrap();
    assert!(err.contains("Redis unreachable"), "{err}");
    assert!(err.contains("connection refused"), "{err}");

    redis.start();
    past_cache();
    let (status, snap) = snapshot(&server);
    assert_eq!(status, 200, "{snap}");
    assert_eq!(snap["total_trades"], 8_000);
}

// ---- in a real browser ----

pub(crate) fn chromium(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `chromium` ({e}): this test drives a real headless browser; \
                 install it with `apt-get install -y chromium`"
            )
        });
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn dump_dom(url: &str) -> String {
    chromium(&["--dump-dom"], url)
}

/// The attributes of every treemap tile (`<g class="tile…" …>`), whatever their order.
fn tile_attrs(dom: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for part in dom.split("<g ").skip(1) {
        let tag = &part[..part.find('>').unwrap_or(part.len())];
        let mut attrs = BTreeMap::new();
        for kv in tag.split("\" ") {
            if let Some((k, v)) = kv.split_once("=\"") {
                attrs.insert(k.trim().to_string(), v.trim_end_matches('"').to_string());
            }
        }
        if attrs.get("class").is_some_and(|c| c.starts_with("tile")) {
            out.push(attrs);
        }
    }
    out
}

/// Treemap tiles in the DOM: symbol → count (from the tiles' data attributes).
fn tiles(dom: &str) -> BTreeMap<String, u64> {
    tile_attrs(dom)
        .into_iter()
        .map(|a| (a["data-symbol"].clone(), a["data-count"].parse().unwrap()))
        .collect()
}

/// The tile's class (`tile`, `tile top`).
fn tile_class(dom: &str, sym: &str) -> String {
    tile_attrs(dom)
        .into_iter()
        .find(|a| a["data-symbol"] == sym)
        .map(|a| a["class"].clone())
        .unwrap_or_default()
}

/// Counts with thousands separators, as the page prints them.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The text from after `prefix` up to the next `"`.
pub(crate) fn attr_after(dom: &str, prefix: &str) -> Option<String> {
    let start = dom.find(prefix)? + prefix.len();
    Some(dom[start..start + dom[start..].find('"')?].to_string())
}

fn notice_hidden(dom: &str) -> bool {
    dom.contains(r#"id="notice" class="notice" role="alert" hidden="""#)
}

pub(crate) fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn browser_shows_every_symbol_follows_redis_and_flags_it_down() {
    let mut redis = testkit::redis();
    let newest = now_ms() - 3_000;
    seed(&redis, SEED, newest);
    let server = Server::start(redis.port);
    let page = server.url("/");

    let dom = dump_dom(&page);
    let want: BTreeMap<String, u64> = SEED.iter().map(|(s, c)| (s.to_string(), *c)).collect();
    assert_eq!(tiles(&dom), want, "every symbol with its count");
    let total: u64 = SEED.iter().map(|(_, c)| c).sum();
    assert!(
        dom.contains(&format!("Transactions (N={})", grouped(total))),
        "title with the total"
    );
    // The top 3 are highlighted, the rest not.
    for (sym, _) in &SEED[..3] {
        assert_eq!(tile_class(&dom, sym), "tile top", "{sym}");
    }
    assert_eq!(tile_class(&dom, "SOLUSDT"), "tile");
    assert!(dom.contains("Newest trade "), "freshness line");
    assert!(
        dom.contains(r#"<polyline class="line c0" points="#),
        "minute chart"
    );
    assert!(dom.contains(r#"data-symbol="BTCUSDT"></polyline>"#));
    assert!(dom.contains("$90,000"), "USD bars");
    assert!(notice_hidden(&dom));
    // The page redrew several times within one load, updating the same SVG elements
    // (all tiles still the ones made by the first draw: no rebuild, no flicker).
    let refreshes: u32 = attr_after(&dom, "<body data-refreshes=\"")
        .expect("refresh counter")
        .parse()
        .unwrap();
    println!("draws within one page load: {refreshes}");
    assert!(refreshes >= 2, "only {refreshes} refresh(es)");
    let born: Vec<String> = tile_attrs(&dom)
        .into_iter()
        .map(|a| a["data-born"].clone())
        .collect();
    assert_eq!(born, vec!["1".to_string(); SEED.len()]);

    // Redis changes: the page follows.
    {
        let mut con = redis_cli(&redis);
        let _: () = redis::cmd("INCRBY")
            .arg("symbol:DOGEUSDT")
            .arg(9_900)
            .query(&mut con)
            .unwrap();
        seed(&redis, &[("ADAUSDT", 42)], newest + 1_000);
    }
    past_cache();
    let dom = dump_dom(&page);
    let mut want2 = want.clone();
    want2.insert("DOGEUSDT".into(), 10_000);
    want2.insert("ADAUSDT".into(), 42);
    assert_eq!(tiles(&dom), want2);
    assert!(dom.contains(&format!("Transactions (N={})", grouped(total + 9_942))));
    // DOGEUSDT is now first, so highlighted; BNBUSDT dropped to 4th.
    assert_eq!(tile_class(&dom, "DOGEUSDT"), "tile top");
    assert_eq!(tile_class(&dom, "BNBUSDT"), "tile");

    let shot = artifacts_dir().join("report-web.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            "--window-size=1280,1000",
            &format!("--screenshot={}", shot.display()),
        ],
        &page,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);

    // Redis down: a visible notice, not a blank page.
    redis.stop();
    past_cache();
    let dom = dump_dom(&page);
    assert!(!notice_hidden(&dom), "notice shown");
    assert!(dom.contains("Redis unreachable"), "notice text");

    // And back.
    redis.start();
    past_cache();
    let dom = dump_dom(&page);
    assert!(notice_hidden(&dom));
    assert_eq!(tiles(&dom), want2);
}
