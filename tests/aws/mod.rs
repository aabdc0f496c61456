//! The AWS adapters against a local moto server, through the real SDK (`.ci/test` starts
//! moto and sets `GEOTRAIL_TEST_AWS_ENDPOINT`).

mod backfill;
mod dynamo;
mod e2e;
mod lambda;
mod sinks;
mod sns;
pub mod support;
