//! Benchmarks of tradeflow (see benches/README.md).
