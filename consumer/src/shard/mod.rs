//! Shards: discovery and lineage (which shards exist, which are children of which),
//! and the polling reader.
pub mod discovery;
pub mod reader;
