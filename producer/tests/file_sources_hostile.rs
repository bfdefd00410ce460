//! File sources are never ended by what a line holds: a line that is not UTF-8 or is
//! longer than the line limit (1 MiB) is counted, logged and skipped, and the file is
//! read on.

use crate::support;

use std::io::Write;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tradeflow_producer::source::synthetic::Generator;
use tradeflow_producer::source::{replay, tail, SourceTrade};

/// More than the 1 MiB a line may hold.
const OVER_LIMIT: usize = 2 << 20;

fn trade_line(g: &mut Generator) -> String {
    g.next_trade(1_717_000_000_000).to_json() + "\n"
}

/// A valid trade, padded inside its JSON object to more than the line limit.
fn padded_trade_line(g: &mut Generator) -> String {
    let json = g.next_trade(1_717_000_000_000).to_json();
    format!("{{{}{}\n", " ".repeat(OVER_LIMIT), &json[1..])
}

fn drain(rx: &mut mpsc::Receiver<SourceTrade>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Ok(t) = rx.try_recv() {
        out.push(t.trade.trade_id);
    }
    out
}

#[tokio::test]
async fn a_replay_skips_lines_that_are_not_utf8_or_too_long_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.jsonl");
    let mut g = Generator::new(&support::symbols(&["BTCUSDT"]), 1);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(trade_line(&mut g).as_bytes()).unwrap(); // 1
    f.write_all(b"{\"e\":\"trade\",\"s\":\"\xff\xfe\"}\n")
        .unwrap();
    f.write_all(trade_line(&mut g).as_bytes()).unwrap(); // 2
    f.write_all(padded_trade_line(&mut g).as_bytes()).unwrap(); // 3: too long
    let last = trade_line(&mut g); // 4, without its newline: the file ends in it
    f.write_all(last.trim_end().as_bytes()).unwrap();
    drop(f);

    let (tx, mut rx) = mpsc::channel(64);
    let stats = replay::run(&path, tx, CancellationToken::new())
        .await
        .expect("a bad line never ends a replay");
    assert_eq!(drain(&mut rx), [1, 2, 4]);
    assert_eq!((stats.lines, stats.trades, stats.bad), (5, 3, 2));
}

#[tokio::test]
async fn a_tail_skips_an_over_long_line_up_to_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("transactions.json");
    let mut g = Generator::new(&support::symbols(&["BTCUSDT"]), 1);
    let append = |bytes: &[u8]| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(bytes).unwrap();
    };
    append(trade_line(&mut g).as_bytes()); // 1
                                           // 2, over the limit, written in pieces as a writer would.
    let long = padded_trade_line(&mut g);
    for piece in long.as_bytes().chunks(300 * 1024) {
        append(piece);
    }
    append(b"\xff\xfe not utf-8\n");
    append(trade_line(&mut g).as_bytes()); // 3

    let (tx, mut rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let cfg = tail::TailConfig {
        path: path.clone(),
        from_start: true,
        poll: Duration::from_millis(20),
    };
    let task = tokio::spawn(tail::run(cfg, tx, stop.clone()));
    let mut ids = Vec::new();
    while !ids.contains(&3) {
        let t = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("trade 3 in time: the tail went on past the long line")
            .expect("channel open");
        ids.push(t.trade.trade_id);
    }
    stop.cancel();
    let stats = task.await.unwrap().unwrap();
    assert_eq!(ids, [1, 3]);
    assert_eq!((stats.trades, stats.bad), (2, 2));
}
