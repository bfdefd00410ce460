//! Waiting for something to become true, with a deadline: the one polling loop the
//! tests, the chaos run and the benchmarks share. `poll`/`poll_blocking` say `None` when
//! time ran out (the caller decides what that means); `wait_for`/`wait_until` panic
//! naming what they waited for, as a test wants.

use std::future::Future;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How often `wait_for` and `wait_until` look.
const EVERY: Duration = Duration::from_millis(100);

/// Calls `f` every `every` until it gives `Some`, at least once; `None` once `limit`
/// has passed without it.
pub async fn poll<T, F, Fut>(limit: Duration, every: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`poll`] for code that is not async (it sleeps the thread).
pub fn poll_blocking<T>(
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Polls `f` every 100 ms until it gives `Some`; panics naming `what` after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll(limit, EVERY, f)
        .await
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Polls `f` every 100 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until_every(what, limit, EVERY, f).await
}

/// [`wait_until`], looking every `every`.
pub async fn wait_until_every<F, Fut>(what: &str, limit: Duration, every: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(limit, every, || {
        let holds = f();
        async move { holds.await.then_some(()) }
    })
    .await
    .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Waits up to `limit` for something to accept connections on loopback `port`.
pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    poll_blocking(limit, Duration::from_millis(50), || {
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    })
    .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_until_some_or_gives_up() {
        let mut n = 0;
        let got = poll_blocking(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(got, Some(3));
        let t = Instant::now();
        assert_eq!(
            poll_blocking(
                Duration::from_millis(50),
                Duration::from_millis(5),
                || None::<()>
            ),
            None
        );
        assert!(t.elapsed() >= Duration::from_millis(50));
        // A zero limit still looks once.
        assert_eq!(
            poll_blocking(Duration::ZERO, Duration::ZERO, || Some(1)),
            Some(1)
        );
    }

    #[tokio::test]
    async fn async_waits() {
        let mut n = 0;
        wait_until("the third call", Duration::from_secs(5), || {
            n += 1;
            let done = n >= 3;
            async move { done }
        })
        .await;
        assert_eq!(n, 3);
        let none = poll(
            Duration::from_millis(20),
            Duration::from_millis(5),
            || async { None::<u8> },
        )
        .await;
        assert_eq!(none, None);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out waiting for nothing")]
    async fn wait_for_panics_with_what() {
        wait_for("nothing", Duration::from_millis(10), || async {
            None::<()>
        })
        .await;
    }

    #[test]
    fn ports() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(wait_for_port(port, Duration::from_secs(1)));
        drop(l);
        assert!(!wait_for_port(port, Duration::from_millis(100)));
    }
}
