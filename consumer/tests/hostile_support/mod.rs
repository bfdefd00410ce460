//! Support for the hostile-input tests: the corpus of bad records.
pub mod corpus;
