//! The detectors: pure functions of (state, sighting, policy) -> (state, findings).
//!
//! Nothing here reads a clock: "now" is always the event time of what is being judged,
//! so a backfill, a replay and a live run all decide the same way.

mod history;
mod policy;

pub use history::{
    Effect, FindingContext, Observation, Place, Point, Sighting, Stay, SubjectState,
};
pub use policy::{BaselinePolicy, Policy, PolicyError, SubjectKind};

/// Millisecond lengths of the units policies are written in.
pub mod policy_units {
    pub use super::policy::{DAY_MS, HOUR_MS, MINUTE_MS};
}
