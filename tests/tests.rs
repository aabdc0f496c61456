//! The integration tests, one binary with a module per area.

mod cli;
mod common;
mod scenarios;

#[cfg(feature = "aws")]
mod aws;
