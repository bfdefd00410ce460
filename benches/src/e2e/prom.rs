//! Reading the Prometheus text the producer and consumer serve on /metrics (fetched
//! with `testkit::scrape_metrics`) into samples, and summing them by name and label.

/// One sample line: metric name, its labels as written, and the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: String,
    pub value: f64,
}

/// Parses the exposition text; comments and unreadable lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.find('{') {
                Some(i) => (&series[..i], series[i..].to_string()),
                None => (series, String::new()),
            };
            Some(Sample {
                name: name.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

/// Sum of every series of `name` whose labels contain `label_part` (e.g.
/// `op="update_item"`; empty matches all).
pub fn sum(samples: &[Sample], name: &str, label_part: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.labels.contains(label_part))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x_total things\n# TYPE x_total counter\n\
        tradeflow_consumer_dynamodb_requests_total{op=\"update_item\"} 12\n\
        tradeflow_consumer_dynamodb_requests_total{op=\"scan\"} 30\n\
        tradeflow_consumer_dynamodb_requests_total{op=\"put_item\"} 4\n\
        tradeflow_consumer_getrecords_total{shard=\"shardId-000000000000\"} 7\n\
        tradeflow_consumer_getrecords_total{shard=\"shardId-000000000001\"} 5\n\
        tradeflow_consumer_redis_round_trips_total 42\n\
        broken line\n";

    #[test]
    fn sums_by_name_and_label() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 6);
        assert_eq!(
            sum(&s, "tradeflow_consumer_dynamodb_requests_total", ""),
            46.0
        );
        assert_eq!(
            sum(
                &s,
                "tradeflow_consumer_dynamodb_requests_total",
                "op=\"update_item\""
            ),
            12.0
        );
        assert_eq!(sum(&s, "tradeflow_consumer_getrecords_total", ""), 12.0);
        assert_eq!(
            sum(&s, "tradeflow_consumer_redis_round_trips_total", ""),
            42.0
        );
        assert_eq!(sum(&s, "missing", ""), 0.0);
    }
}
