//! Support shared by the integration tests (`mod common;` in `tests/tests.rs`).

pub mod mmdb;
pub mod trail;
