//! geotrail: catch stolen AWS credentials by where they are used.
//!
//! The crate reads as the pipeline: [`cloudtrail`] turns the bytes of a log object into
//! events, [`geo`] turns a source address into a [`geo::Location`], [`detect`] judges a
//! subject's sightings against its history, [`finding`] renders what it found, and
//! [`pipeline`] runs one object through all of it against a [`state::StateStore`] and a
//! [`notify::Notifier`]. The core (`cloudtrail`, `geo`, `detect`, `finding`) does no I/O
//! beyond the bytes it is handed, reads no clock and never logs.

pub mod cli;
pub mod clock;
pub mod cloudtrail;
pub mod detect;
pub mod finding;
pub mod geo;
pub mod notify;
pub mod pipeline;
pub mod settings;
pub mod state;

#[cfg(feature = "aws")]
pub mod aws;

/// Cases for a property test: `GEOTRAIL_PROPTEST_CASES` when set (to run longer by hand),
/// else `default`, which is what CI runs.
#[cfg(test)]
pub(crate) fn proptest_cases(default: u32) -> u32 {
    std::env::var("GEOTRAIL_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
