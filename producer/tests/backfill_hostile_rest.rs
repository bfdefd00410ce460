//! The gap backfill against absurd or hostile REST answers (a `Retry-After` of
//! `u64::MAX` seconds, truncated bodies, bodies that are not trade lists): each gap is
//! retried within its deadline or given up with a counted reason, never a panic, and
//! never a symbol held forever — the feed goes on.

use std::sync::Arc;
use std::time::Duration;

use crate::support::rest_front::{backfill_run, ids_by_symbol, Answer, BackfillRun};

const DEADLINE: Duration = Duration::from_secs(4);

/// Per symbol: in order, the newest trade arrived; returns the trades missing.
fn check_feed_went_on(run: &BackfillRun) -> usize {
    let got = ids_by_symbol(run.got.iter().map(|t| &t.trade));
    let tape = ids_by_symbol(run.tape.iter().map(|t| &t.trade));
    let mut missing = 0;
    for (sym, ids) in &tape {
        let have = got.get(sym).cloned().unwrap_or_default();
        assert!(have.windows(2).all(|w| w[0] < w[1]), "{sym:?} out of order");
        assert_eq!(have.last(), ids.last(), "{sym:?} stalled");
        missing += ids.len() - have.len();
    }
    missing
}

fn huge_retry_after() -> Answer {
    Answer::reply(
        "429 Too Many Requests",
        "Retry-After: 18446744073709551615\r\n",
        "{\"code\":-1003}",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_is_bounded_and_the_feed_goes_on() {
    // The first request is told to come back in u64::MAX seconds; the rest succeed.
    let plan = Arc::new(|i| {
        if i == 0 {
            huge_retry_after()
        } else {
            Answer::Pass
        }
    });
    let run = backfill_run(plan, DEADLINE).await;
    check_feed_went_on(&run);
    eprintln!("recovered in {:?}", run.recovered_in);
    // That gap is given up at once (its retry would land past the deadline), not
    // waited for: the symbols are free well within a deadline of the recovery.
    assert!(
        run.recovered_in < Duration::from_secs(15),
        "{:?}",
        run.recovered_in
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_unreadable_answers_are_retried_then_the_gaps_filled() {
    // A 200 cut off mid-body, a Retry-After that is not a number, a 200 announcing a
    // body above the client's limit: each is retried (backoff), then REST answers.
    let plan = Arc::new(|i| match i {
        0 => Answer::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n[{\"id\":1,"
                .to_vec(),
        ),
        1 => Answer::reply("429 Too Many Requests", "Retry-After: soon\r\n", ""),
        2 => Answer::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n["
                .to_vec(),
        ),
        _ => Answer::Pass,
    });
    let run = backfill_run(plan, Duration::from_secs(10)).await;
    assert_eq!(
        check_feed_went_on(&run),
        0,
        "every gap filled after the retries"
    );
    assert_eq!(
        ids_by_symbol(run.got.iter().map(|t| &t.trade)),
        ids_by_symbol(run.tape.iter().map(|t| &t.trade))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_front_that_only_answers_nonsense_never_stalls_the_feed() {
    // Every request gets one of these, round and round: gaps are given up (deadline or
    // "garbage"), counted as gaps downstream; the feed goes on.
    let plan = Arc::new(|i| match i % 5 {
        0 => huge_retry_after(),
        1 => Answer::reply("200 OK", "", "{\"code\":-1121,\"msg\":\"Invalid symbol.\"}"),
        2 => Answer::reply("200 OK", "", "[{\"id\":\"x\"}, 7, null"),
        3 => Answer::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[]".to_vec()),
        _ => Answer::Raw(b"not http at all\r\n\r\n".to_vec()),
    });
    let run = backfill_run(plan, DEADLINE).await;
    assert!(
        check_feed_went_on(&run) > 0,
        "the close must have lost trades that REST could not give back"
    );
}
