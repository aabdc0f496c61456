//! The integration tests, one binary with a module per area.

mod common;
mod cli;
mod scenarios;

#[cfg(feature = "aws")]
mod aws;
