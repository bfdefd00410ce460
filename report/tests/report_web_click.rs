//! The candle chart follows real clicks in a real headless Chromium (driven over the
//! DevTools protocol, `cdp`): a click on a treemap tile charts that symbol, a click on
//! an interval button changes the interval, and a reload keeps both (the URL hash).

use crate::cdp::Browser;
use crate::kline_seed::expected;
use crate::report_web::Server;
use crate::report_web_candles::seeded;

use serde_json::{json, Value};
use tradeflow_shared::kline::Interval;

/// The chart's candles as (open time, open, high, low, close, trades).
const DRAWN: &str = "[...document.querySelectorAll('#candles g.candle')].map((g) => \
    ['open-time', 'open', 'high', 'low', 'close', 'trades'].map((k) => g.getAttribute('data-' + k)))";

fn as_drawn(want: &[Value]) -> Value {
    want.iter()
        .map(|k| json!([k[0].to_string(), k[1], k[2], k[3], k[4], k[8].to_string()]))
        .collect()
}

/// True once the chart shows `sym` at `iv` (false while the page is still loading).
fn charted(sym: &str, iv: &str) -> String {
    format!(
        "((c) => !!c && c.getAttribute('data-symbol') === '{sym}' && \
         c.getAttribute('data-interval') === '{iv}')(document.querySelector('#candles'))"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_on_a_tile_charts_its_symbol_and_a_reload_keeps_it() {
    let s = tokio::task::spawn_blocking(seeded).await.unwrap();
    let server = tokio::task::spawn_blocking({
        let port = s.redis.port;
        move || Server::start(port)
    })
    .await
    .unwrap();
    let mut b = Browser::open(&server.url("/")).await;
    b.wait_for(&charted("BTCUSDT", "1m"), "the top symbol charted")
        .await;

    // A click on ETHUSDT's tile, where a mouse would click it.
    let (x, y) = b
        .centre("#treemap g.tile[data-symbol='ETHUSDT'] rect")
        .await;
    b.click(x, y).await;
    b.wait_for(&charted("ETHUSDT", "1m"), "ETHUSDT charted after the click")
        .await;
    assert_eq!(b.eval("location.hash").await, "#symbol=ETHUSDT&interval=1m");
    assert_eq!(
        b.eval(
            "document.querySelector('#treemap g.tile[data-chosen]').getAttribute('data-symbol')"
        )
        .await,
        "ETHUSDT"
    );
    assert_eq!(
        b.eval(DRAWN).await,
        as_drawn(&expected(Interval::M1, &s.eth))
    );

    // The 5m button.
    let (x, y) = b.centre("#intervals button[data-interval='5m']").await;
    b.click(x, y).await;
    b.wait_for(&charted("ETHUSDT", "5m"), "5m after its button")
        .await;
    assert_eq!(
        b.eval(DRAWN).await,
        as_drawn(&expected(Interval::M5, &s.eth))
    );

    // A reload keeps the choice (the mark tells the old document from the new one).
    b.eval("window.beforeReload = true").await;
    b.call("Page.reload", json!({})).await;
    b.wait_for(
        "!window.beforeReload && !!document.body && document.body.dataset.candleDraws !== undefined",
        "the reloaded page's chart",
    )
    .await;
    assert_eq!(b.eval("location.hash").await, "#symbol=ETHUSDT&interval=5m");
    b.wait_for(&charted("ETHUSDT", "5m"), "the choice kept")
        .await;
    b.close().await;
    drop(server);
}
