//! Bounds the memory the polling readers hold. A GetRecords answer may carry up to
//! 10,000 records or 10 MB, so a worker catching up on 64 shards at once could hold
//! hundreds of MB. Instead:
//! - each page is sized to a byte target: the call's `Limit` comes from the shard's
//!   recent bytes per record (`PageSizer`, pure);
//! - pages in flight (asked for, decoded, not yet applied) share one budget over all
//!   shards of the worker (`ReadBudget`): a reader waits for room before it calls.
//!
//! At the default 2 MiB target and 5 calls a second a shard can still be read at
//! 10 MB/s, five times what Kinesis serves per shard.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest record Kinesis accepts: the size assumed before a shard's first answer.
const MAX_RECORD_BYTES: f64 = 1024.0 * 1024.0;

/// Sizes the next GetRecords page from what the shard's pages held.
#[derive(Debug, Clone)]
pub struct PageSizer {
    target_bytes: usize,
    max_records: i32,
    bytes_per_record: Option<f64>,
}

impl PageSizer {
    pub fn new(target_bytes: usize, max_records: i32) -> Self {
        PageSizer {
            target_bytes: target_bytes.max(1),
            max_records: max_records.max(1),
            bytes_per_record: None,
        }
    }

    /// The `Limit` of the next call: as many records as fit the target at the shard's
    /// recent record size (the largest possible size until one page was seen).
    pub fn limit(&self) -> i32 {
        let per = self.bytes_per_record.unwrap_or(MAX_RECORD_BYTES).max(1.0);
        let n = (self.target_bytes as f64 / per).floor();
        (n.min(self.max_records as f64) as i32).max(1)
    }

    /// Learns from a page: its record count, bytes and largest record. Growth counts
    /// at once, at the largest record (the next page must not overshoot: pages of
    /// mixed sizes would hide it in the mean); shrinking is averaged toward the mean.
    pub fn observe(&mut self, records: usize, bytes: usize, largest: usize) {
        if records == 0 {
            return;
        }
        let mean = bytes as f64 / records as f64;
        self.bytes_per_record = Some(match self.bytes_per_record {
            Some(before) if largest as f64 > before => largest as f64,
            Some(before) => (before + mean) / 2.0,
            None => (largest as f64).max(mean),
        });
    }

    /// Bytes one page may occupy in memory while in flight: the answer's body (base64,
    /// 4/3 of the data, in a buffer grown by doubling) and its parsed records overlap
    /// while it is parsed, then the records and their decoded trades. Four times the
    /// target covers the peak (measured: RSS per page in flight).
    pub fn reservation(&self) -> usize {
        self.target_bytes.saturating_mul(4)
    }
}

/// The worker-wide budget of page memory, in KiB.
#[derive(Debug, Clone)]
pub struct ReadBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
}

impl ReadBudget {
    pub fn new(total_bytes: usize) -> Self {
        let total_kib = (total_bytes / 1024).clamp(1, u32::MAX as usize) as u32;
        ReadBudget {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Room for a page of `bytes` (at most the whole budget, so a page larger than
    /// the budget still goes, alone). Held until the page is applied and dropped.
    pub async fn reserve(&self, bytes: usize) -> OwnedSemaphorePermit {
        let kib = (bytes.div_ceil(1024)).clamp(1, self.total_kib as usize) as u32;
        if let Ok(p) = self.permits.clone().try_acquire_many_owned(kib) {
            return p;
        }
        metrics::counter!("tradeflow_consumer_read_budget_waits_total").increment(1);
        self.permits
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("the budget's semaphore is never closed")
    }

    /// KiB not reserved right now (for tests and the gauge).
    pub fn available_kib(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_page_assumes_the_largest_records() {
        let s = PageSizer::new(2 << 20, 10_000);
        assert_eq!(s.limit(), 2);
        assert_eq!(PageSizer::new(100, 10_000).limit(), 1);
    }

    #[test]
    fn limit_follows_the_record_size() {
        let mut s = PageSizer::new(2 << 20, 10_000);
        s.observe(2, 2 * 200, 200);
        assert_eq!(s.limit(), 10_000, "small records: capped by max_records");
        // A mixed page: growth is taken at its largest record, not its mean.
        s.observe(10, 9 * 200 + 100 * 1024, 100 * 1024);
        assert_eq!(s.limit(), 20);
        s.observe(20, 20 * 10 * 1024, 10 * 1024);
        assert_eq!(
            s.limit(),
            37,
            "smaller ones are averaged: (100 + 10) / 2 KiB"
        );
        s.observe(0, 0, 0);
        assert_eq!(s.limit(), 37, "an empty page teaches nothing");
    }

    #[test]
    fn limit_never_leaves_the_service_range() {
        let mut s = PageSizer::new(usize::MAX / 4, 10_000);
        s.observe(1, 1, 1);
        assert_eq!(s.limit(), 10_000);
        let mut s = PageSizer::new(1, 0);
        s.observe(1, usize::MAX / 2, usize::MAX / 2);
        assert_eq!(s.limit(), 1);
    }

    #[tokio::test]
    async fn pages_wait_for_room_and_a_huge_one_goes_alone() {
        let b = ReadBudget::new(8 * 1024);
        let first = b.reserve(6 * 1024).await;
        assert_eq!(b.available_kib(), 2);
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve(4 * 1024).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no room yet");
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(b.available_kib(), 4);
        drop(second);
        // Larger than the whole budget: takes all of it rather than waiting for ever.
        let all = b.reserve(100 * 1024 * 1024).await;
        assert_eq!(b.available_kib(), 0);
        drop(all);
        assert_eq!(b.available_kib(), 8);
    }
}
