//! The tail source follows a growing file through rotation and truncation, reading
//! only complete lines and skipping bad ones.

use crate::support;

use std::io::Write;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tradeflow_producer::source::synthetic::Generator;
use tradeflow_producer::source::tail::{run, TailConfig};

fn append(path: &std::path::Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

async fn next(rx: &mut mpsc::Receiver<tradeflow_producer::source::SourceTrade>) -> u64 {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a trade in time")
        .expect("channel open")
        .trade
        .trade_id
}

#[tokio::test]
async fn follows_growth_rotation_and_truncation() {
    let dir = std::env::temp_dir().join(format!("tradeflow-tail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("transactions.json");
    let _ = std::fs::remove_file(&path);
    let mut g = Generator::new(&support::symbols(&["BTCUSDT"]), 1);
    let mut line = || g.next_trade(1_717_000_000_000).to_json() + "\n";
    append(&path, &line()); // before the start: skipped (tail from the end)

    let (tx, mut rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let cfg = TailConfig {
        path: path.clone(),
        from_start: false,
        poll: Duration::from_millis(20),
    };
    let task = tokio::spawn(run(cfg, tx, stop.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Growth, with a line written in two parts and a bad line.
    let l2 = line();
    let (a, b) = l2.split_at(10);
    append(&path, a);
    tokio::time::sleep(Duration::from_millis(60)).await;
    append(&path, &format!("{b}{{not json\n"));
    assert_eq!(next(&mut rx).await, 2);

    // Rotation: the old file is renamed, a new one starts.
    std::fs::rename(&path, dir.join("transactions.json.1")).unwrap();
    append(&path, &line());
    assert_eq!(next(&mut rx).await, 3);

    // Truncation: the file is emptied and written again.
    append(&path, &line());
    assert_eq!(next(&mut rx).await, 4);
    std::fs::write(&path, "").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&path, &line());
    assert_eq!(next(&mut rx).await, 5);

    stop.cancel();
    let stats = task.await.unwrap().unwrap();
    assert_eq!(stats.trades, 4);
    assert_eq!(stats.bad, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
