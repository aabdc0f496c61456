//! The detectors: pure functions of (state, sighting, policy) -> (state, findings).
//!
//! Nothing here reads a clock: "now" is always the event time of what is being judged,
//! so a backfill, a replay and a live run all decide the same way.

mod event_id;
mod explain;
mod future;
mod history;
mod policy;
pub mod rarity;
pub mod tally;

pub use event_id::EventId;
pub use explain::{AlertExplained, Explanation, HabitExplained, PlaceExplained, StayExplained};
pub use future::{future_time_finding, FutureRecords, MAX_FUTURE_EVENTS_LISTED};
pub use history::{
    AlertMark, Call, Effect, FindingContext, Observation, Place, Point, Sighting, Stay,
    SubjectState, Transition, STATE_VERSION,
};
pub use policy::{BaselinePolicy, Policy, PolicyError, RulePolicy, RuleSet, SubjectKind};

/// Millisecond lengths of the units policies are written in.
pub mod policy_units {
    pub use super::policy::{DAY_MS, HOUR_MS, MINUTE_MS};
}
