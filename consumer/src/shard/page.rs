//! One page of a shard — a GetRecords answer or a SubscribeToShard event, both a list
//! of Kinesis records — to the user records a reader hands out: every aggregate's KPL
//! digest checked side by side, each Kinesis record decoded (a plain JSON trade, or the
//! user records of a KPL aggregate; anything else a poison record the apply step
//! dead-letters), and the records at or before what was already handed out dropped, so
//! a resume inside an aggregate neither skips nor repeats user records.
//!
//! Both readers go through [`HandedOut::take_page`]: a fix here reaches both. Pure (no
//! I/O, no clock); [`Page::report_metrics`] is the one side effect (metrics, a log).

use std::cmp::Ordering;

use aws_sdk_kinesis::types::Record;
use tradeflow_shared::seqnum::BadSequenceNumber;
use tradeflow_shared::{kpl, Position, SequenceNumber};

use super::reader::StartPosition;
use crate::record::{decode_checked, DecodedRecord};

/// A Kinesis record's sequence number (or why it is not one) and its data.
pub type RecordParts<'a> = (Result<SequenceNumber, BadSequenceNumber>, &'a [u8]);

/// A shard's user records handed out so far: only records after `through` are new.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandedOut {
    through: Option<Position>,
}

/// What one page decoded to.
#[derive(Debug, Default)]
pub struct Page {
    /// New user records, in shard order.
    pub records: Vec<DecodedRecord>,
    /// Kinesis records read (before de-aggregation) and their bytes.
    pub kinesis_records: usize,
    pub bytes: usize,
    /// Records passed over because their sequence number does not parse: a service
    /// bug, not data, so there is nothing to key them by. Their errors.
    pub bad_sequence_numbers: Vec<String>,
}

impl HandedOut {
    /// Nothing handed out yet: a resume after a position starts past it.
    pub fn from_start(start: &StartPosition) -> Self {
        HandedOut {
            through: match start {
                StartPosition::After(p) => Some(p.clone()),
                _ => None,
            },
        }
    }

    /// The last user record handed out (or resumed after).
    pub fn through(&self) -> Option<&Position> {
        self.through.as_ref()
    }

    /// Whether a decoded user record comes after everything handed out.
    pub fn is_new(&self, pos: &Position) -> bool {
        self.through.as_ref().is_none_or(|t| pos > t)
    }

    /// Decodes a page and keeps its new user records, which count as handed out from
    /// here on (the caller hands the page out whole).
    pub fn take_page(&mut self, records: &[Record]) -> Page {
        self.take_parts(records.iter().map(|r| {
            (
                SequenceNumber::parse(r.sequence_number()),
                r.data().as_ref(),
            )
        }))
    }

    /// As [`HandedOut::take_page`], from each record's sequence number and data (the
    /// lean GetRecords path reads only those, and parses the number as it reads it).
    pub fn take_parts<'a>(&mut self, records: impl Iterator<Item = RecordParts<'a>>) -> Page {
        let records: Vec<RecordParts<'a>> = records.collect();
        let mut page = Page::default();
        // At least one user record per Kinesis record: no regrowth (and copy) on a plain page.
        page.records.reserve(records.len());
        let datas: Vec<&[u8]> = records.iter().map(|r| r.1).collect();
        let checks = kpl::check_many(&datas);
        for ((seq, data), check) in records.into_iter().zip(checks) {
            let seq = match seq {
                Ok(s) => s,
                Err(e) => {
                    page.bad_sequence_numbers.push(e.to_string());
                    continue;
                }
            };
            page.kinesis_records += 1;
            page.bytes += data.len();
            // Only user records of the resume point's own Kinesis record are compared
            // one by one; an older record is all handed out already, a newer one all new
            // (no comparison per trade of an aggregate).
            let after_sub = match &self.through {
                Some(t) => match seq.cmp(&t.seq) {
                    Ordering::Less => continue,
                    Ordering::Equal => Some(t.sub),
                    Ordering::Greater => None,
                },
                None => None,
            };
            let first_new = page.records.len();
            decode_checked(seq, data, check, &mut page.records);
            if let Some(after) = after_sub {
                let mut kept = first_new;
                for i in first_new..page.records.len() {
                    if page.records[i].pos.sub > after {
                        page.records.swap(kept, i);
                        kept += 1;
                    }
                }
                page.records.truncate(kept);
            }
        }
        if let Some(last) = page.records.last() {
            self.through = Some(last.pos.clone());
        }
        page
    }
}

impl Page {
    /// Records the page's metrics for `shard`, and logs each bad sequence number.
    pub fn report_metrics(&self, shard: &str, millis_behind_latest: Option<i64>) {
        for e in &self.bad_sequence_numbers {
            tracing::error!(shard, error = %e, "record with invalid sequence number");
            metrics::counter!("tradeflow_consumer_bad_sequence_numbers_total").increment(1);
        }
        if let Some(ms) = millis_behind_latest {
            metrics::gauge!("tradeflow_consumer_millis_behind_latest", "shard" => shard.to_string())
                .set(ms as f64);
        }
        metrics::counter!("tradeflow_consumer_records_read_total", "shard" => shard.to_string())
            .increment(self.kinesis_records as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Item;
    use crate::shard::test_support::{kinesis_record, pos};
    use tradeflow_shared::kpl::Aggregator;

    fn trade(id: u64) -> String {
        format!(
            r#"{{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":{id},"p":"1.5","q":"2","T":1717000000120,"m":true,"M":true}}"#
        )
    }

    fn aggregate(ids: &[u64]) -> Vec<u8> {
        let mut a = Aggregator::new();
        for id in ids {
            a.push("BTCUSDT", trade(*id).as_bytes());
        }
        a.finish()
    }

    /// (sequence number, sub-sequence number, trade id) of each record handed out.
    fn ids(page: &Page) -> Vec<(&str, u64, u64)> {
        page.records
            .iter()
            .map(|r| {
                let Item::Trade(t) = &r.item else {
                    panic!("not a trade: {r:?}")
                };
                (r.pos.seq.as_str(), r.pos.sub, t.trade_id)
            })
            .collect()
    }

    #[test]
    fn plain_and_aggregated_records_decode_in_shard_order() {
        let agg = aggregate(&[2, 3]);
        let page = HandedOut::default().take_page(&[
            kinesis_record("10", trade(1).as_bytes()),
            kinesis_record("11", &agg),
        ]);
        assert_eq!(ids(&page), [("10", 0, 1), ("11", 0, 2), ("11", 1, 3)]);
        assert_eq!(page.kinesis_records, 2);
        assert_eq!(page.bytes, trade(1).len() + agg.len());
        assert!(page.bad_sequence_numbers.is_empty());
    }

    #[test]
    fn broken_aggregates_and_bad_json_are_poison_records_not_errors() {
        let mut broken = aggregate(&[1, 2]);
        let n = broken.len();
        broken[n - 1] ^= 0xff;
        let page = HandedOut::default().take_page(&[
            kinesis_record("10", &broken),
            kinesis_record("11", b"{not json"),
        ]);
        let kinds: Vec<&str> = page
            .records
            .iter()
            .map(|r| match &r.item {
                Item::Poison(p) => p.kind,
                other => panic!("not poison: {other:?}"),
            })
            .collect();
        // The whole broken aggregate is one poison record (never read as plain).
        assert_eq!(kinds, ["kpl_aggregate", "json"]);
        assert_eq!(page.kinesis_records, 2);
    }

    #[test]
    fn a_resume_inside_an_aggregate_keeps_only_its_later_sub_records() {
        // Sub-records 0..=2 of 500 were applied before the restart.
        let mut handed = HandedOut::from_start(&StartPosition::After(pos("500", 2)));
        let page = handed.take_page(&[
            kinesis_record("499", trade(1).as_bytes()),
            kinesis_record("500", &aggregate(&[10, 11, 12, 13, 14])),
            kinesis_record("501", trade(20).as_bytes()),
        ]);
        assert_eq!(ids(&page), [("500", 3, 13), ("500", 4, 14), ("501", 0, 20)]);
        // Filtered records were still read.
        assert_eq!(page.kinesis_records, 3);
        assert_eq!(handed.through(), Some(&pos("501", 0)));
    }

    #[test]
    fn a_page_read_again_hands_nothing_out_twice() {
        // A new iterator or subscription AT the last record handed out reads it again.
        let mut handed = HandedOut::default();
        let first = handed.take_page(&[kinesis_record("7", &aggregate(&[1, 2]))]);
        assert_eq!(first.records.len(), 2);
        let again = handed.take_page(&[
            kinesis_record("7", &aggregate(&[1, 2])),
            kinesis_record("8", trade(3).as_bytes()),
        ]);
        assert_eq!(ids(&again), [("8", 0, 3)]);
    }

    #[test]
    fn an_empty_page_moves_nothing() {
        let mut handed = HandedOut::from_start(&StartPosition::After(pos("5", 1)));
        let page = handed.take_page(&[]);
        assert!(page.records.is_empty());
        assert_eq!(page.kinesis_records, 0);
        assert_eq!(handed.through(), Some(&pos("5", 1)));
        assert_eq!(
            HandedOut::from_start(&StartPosition::TrimHorizon).through(),
            None
        );
    }

    #[test]
    fn records_with_a_bad_sequence_number_are_passed_over_and_reported() {
        let page = HandedOut::default().take_page(&[
            kinesis_record("not-a-number", trade(1).as_bytes()),
            kinesis_record("12", trade(2).as_bytes()),
        ]);
        assert_eq!(ids(&page), [("12", 0, 2)]);
        assert_eq!(page.kinesis_records, 1);
        assert_eq!(page.bytes, trade(2).len());
        assert_eq!(page.bad_sequence_numbers.len(), 1);
    }
}
