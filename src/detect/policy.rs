use serde::{Deserialize, Serialize};

use crate::finding::{Rule, Severity};

/// What a traveller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// `userIdentity.accessKeyId`: one key, one traveller (Datadog's and Panther's choice).
    #[default]
    AccessKey,
    /// The IAM user, role session or root ARN, so that the rotating `ASIA` keys of an SSO
    /// user or a role session count as one traveller.
    Principal,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::AccessKey => "access_key",
            SubjectKind::Principal => "principal",
        }
    }
}

/// Datadog's "baseline user locations": places a subject used during its learning period
/// are home; travel back to them does not alert.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselinePolicy {
    /// From the subject's first sighting; 0 to 30 days.
    pub learning_ms: i64,
    /// A baseline place unseen this long is forgotten.
    pub forget_after_ms: i64,
}

/// Every knob of detection, built once by an entry point (CLI flags or Lambda
/// environment) and borrowed from then on.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub subject: SubjectKind,
    /// Alert only when the (effective) distance is over this.
    pub min_distance_km: f64,
    /// ... and the speed needed to cover it is over this.
    pub min_speed_kmh: f64,
    /// Subtract both locations' accuracy radii from the distance before judging.
    pub use_accuracy_radius: bool,
    /// Two places within this time of each other are reported as concurrent use (a
    /// cloned credential) rather than travel.
    pub concurrent_window_ms: i64,
    /// How much history a subject keeps, in event time.
    pub history_window_ms: i64,
    /// Upper bound on the stays a subject keeps, so a state item stays well under
    /// DynamoDB's 400 KB.
    pub max_stays: usize,
    /// Longest gap between two sightings of one stay. A late event that lands inside a
    /// stay at another place is judged as this far from it at most, so it must not exceed
    /// the time the shortest impossible hop takes (`min_distance_km / min_speed_kmh`):
    /// then such a verdict is the one the events would have had in order.
    pub max_stay_gap_ms: i64,
    /// An event stamped more than this after its log object was written is a record from
    /// the future (forged, or a broken clock): it is reported, never judged.
    pub future_tolerance_ms: i64,
    pub baseline: Option<BaselinePolicy>,
    /// One finding per subject and place pair within this window.
    pub dedup_window_ms: i64,
    /// Which rules run, and the knobs of the account-level ones.
    pub rules: RulePolicy,
}

/// A set of [`Rule`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleSet(u8);

impl RuleSet {
    pub const fn all() -> RuleSet {
        RuleSet(0b1_1111)
    }

    pub const fn none() -> RuleSet {
        RuleSet(0)
    }

    fn bit(rule: Rule) -> u8 {
        1 << Rule::ALL
            .iter()
            .position(|r| *r == rule)
            .expect("every rule is in Rule::ALL")
    }

    pub fn with(mut self, rule: Rule) -> RuleSet {
        self.0 |= RuleSet::bit(rule);
        self
    }

    pub fn contains(self, rule: Rule) -> bool {
        self.0 & RuleSet::bit(rule) != 0
    }

    /// The account-level rules, which read and write tallies.
    pub fn any_tallied(self) -> bool {
        TALLIED.iter().any(|r| self.contains(*r))
    }

    pub fn iter(self) -> impl Iterator<Item = Rule> {
        Rule::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// `impossible_travel,unusual_error_code` (also `all`), naming a bad id.
    pub fn parse(list: &str) -> Result<RuleSet, String> {
        let mut set = RuleSet::none();
        for id in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if id == "all" {
                set = RuleSet::all();
                continue;
            }
            let rule = Rule::parse(id).ok_or_else(|| {
                let known: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown rule {id:?}: known rules are {}", known.join(", "))
            })?;
            set = set.with(rule);
        }
        if set == RuleSet::none() {
            return Err("no rule selected".to_owned());
        }
        Ok(set)
    }
}

impl Default for RuleSet {
    fn default() -> RuleSet {
        RuleSet::all()
    }
}

impl std::fmt::Display for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.iter().map(|r| r.as_str()).collect();
        f.write_str(&ids.join(","))
    }
}

const TALLIED: [Rule; 3] = [
    Rule::UnusualCityForCommand,
    Rule::UnusualErrorCode,
    Rule::LongTermAccessKeyAuth,
];

/// The knobs of the account-level rules. Every time is event time.
#[derive(Debug, Clone, PartialEq)]
pub struct RulePolicy {
    pub enabled: RuleSet,
    /// Nothing rare is reported until this long after an account's first event.
    pub learning_ms: i64,
    /// How far back "seen before" looks, in whole UTC days.
    pub lookback_days: i64,
    /// A call from a city, or an error code, seen fewer times than this within the
    /// lookback is rare.
    pub min_seen: u32,
    /// Rare calls of one principal from one city (or with one error code) within one
    /// such window are one finding.
    pub group_window_ms: i64,
    /// One `long_term_access_key_auth` finding per key and source address per window
    /// (Panther's dedup period).
    pub key_auth_window_ms: i64,
    /// A long-term key's address is new when the key was not used from it this many
    /// days before (Elastic's new-terms window).
    pub new_address_days: i64,
    /// Findings below this are raised and remembered but not built: the CLI does not
    /// print them, and on a busy trail the informational ones are most of all findings.
    /// The Lambda reports everything (`Info`).
    pub report_min: Severity,
}

impl Default for RulePolicy {
    fn default() -> RulePolicy {
        RulePolicy {
            enabled: RuleSet::all(),
            learning_ms: 48 * HOUR_MS,
            lookback_days: 30,
            min_seen: 1,
            group_window_ms: 60 * MINUTE_MS,
            key_auth_window_ms: 60 * MINUTE_MS,
            new_address_days: 10,
            report_min: Severity::Info,
        }
    }
}

impl RulePolicy {
    /// How many of each day's earliest times a tally keeps: enough for `min_seen`.
    pub fn keep_times(&self) -> usize {
        self.min_seen.clamp(1, 16) as usize
    }
}

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            subject: SubjectKind::AccessKey,
            min_distance_km: 500.0,
            min_speed_kmh: 1000.0,
            use_accuracy_radius: true,
            concurrent_window_ms: 5 * MINUTE_MS,
            history_window_ms: 30 * DAY_MS,
            max_stays: 128,
            max_stay_gap_ms: 15 * MINUTE_MS,
            future_tolerance_ms: HOUR_MS,
            baseline: Some(BaselinePolicy {
                learning_ms: DAY_MS,
                forget_after_ms: 30 * DAY_MS,
            }),
            dedup_window_ms: 60 * MINUTE_MS,
            rules: RulePolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("{name} must be {expected}, got {value}")]
    OutOfRange {
        name: &'static str,
        expected: &'static str,
        value: String,
    },
}

impl Policy {
    /// How long covering `min_distance_km` at `min_speed_kmh` takes: any hop faster than
    /// the policy's limits is at least this short.
    pub fn shortest_impossible_hop_ms(&self) -> i64 {
        (self.min_distance_km / self.min_speed_kmh * HOUR_MS as f64).floor() as i64
    }

    /// The stay gap for these thresholds: 15 minutes, or less where a shorter hop is
    /// already impossible (a `min_distance_km` under 250 km at 1,000 km/h).
    pub fn fitting_stay_gap_ms(&self) -> i64 {
        (15 * MINUTE_MS)
            .min(self.shortest_impossible_hop_ms())
            .max(0)
    }

    /// Checks the bounds that keep detection meaningful; entry points call it once.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |name, expected, value: String| {
            Err(PolicyError::OutOfRange {
                name,
                expected,
                value,
            })
        };
        if !(self.min_distance_km.is_finite() && self.min_distance_km >= 0.0) {
            return bad(
                "min distance (km)",
                "a non-negative number",
                self.min_distance_km.to_string(),
            );
        }
        if !(self.min_speed_kmh.is_finite() && self.min_speed_kmh > 0.0) {
            return bad(
                "min speed (km/h)",
                "a positive number",
                self.min_speed_kmh.to_string(),
            );
        }
        if self.history_window_ms < HOUR_MS || self.history_window_ms > 366 * DAY_MS {
            return bad(
                "history window",
                "between 1 hour and 366 days",
                format!("{} ms", self.history_window_ms),
            );
        }
        if self.dedup_window_ms < 0 || self.dedup_window_ms > self.history_window_ms {
            return bad(
                "dedup window",
                "between 0 and the history window",
                format!("{} ms", self.dedup_window_ms),
            );
        }
        if !(0..=self.shortest_impossible_hop_ms()).contains(&self.max_stay_gap_ms) {
            return bad(
                "max stay gap",
                "between 0 and the time the shortest impossible hop takes (min distance / min speed)",
                format!("{} ms", self.max_stay_gap_ms),
            );
        }
        if !(0..=DAY_MS).contains(&self.future_tolerance_ms) {
            return bad(
                "future tolerance",
                "between 0 and 1 day",
                format!("{} ms", self.future_tolerance_ms),
            );
        }
        if self.max_stays < 2 || self.max_stays > 1000 {
            return bad(
                "max stays",
                "between 2 and 1000",
                self.max_stays.to_string(),
            );
        }
        let r = &self.rules;
        if !(0..=30 * DAY_MS).contains(&r.learning_ms) {
            return bad(
                "rules' learning period",
                "between 0 and 30 days",
                format!("{} ms", r.learning_ms),
            );
        }
        if !(1..=366).contains(&r.lookback_days) {
            return bad(
                "rules' lookback",
                "between 1 and 366 days",
                format!("{} days", r.lookback_days),
            );
        }
        if !(1..=16).contains(&r.min_seen) {
            return bad("min seen", "between 1 and 16", r.min_seen.to_string());
        }
        for (name, window) in [
            ("rules' grouping window", r.group_window_ms),
            ("access key dedup window", r.key_auth_window_ms),
        ] {
            if !(MINUTE_MS..=DAY_MS).contains(&window) {
                return bad(name, "between 1 minute and 1 day", format!("{window} ms"));
            }
        }
        if !(1..=r.lookback_days).contains(&r.new_address_days) {
            return bad(
                "new address window",
                "between 1 day and the rules' lookback",
                format!("{} days", r.new_address_days),
            );
        }
        if let Some(b) = &self.baseline {
            if !(0..=30 * DAY_MS).contains(&b.learning_ms) {
                return bad(
                    "baseline learning period",
                    "between 0 and 30 days",
                    format!("{} ms", b.learning_ms),
                );
            }
            if b.forget_after_ms < DAY_MS {
                return bad(
                    "baseline forget-after",
                    "at least 1 day",
                    format!("{} ms", b.forget_after_ms),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_datadogs_thresholds_and_valid() {
        let p = Policy::default();
        assert_eq!((p.min_distance_km, p.min_speed_kmh), (500.0, 1000.0));
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn learning_period_over_30_days_is_rejected() {
        let p = Policy {
            baseline: Some(BaselinePolicy {
                learning_ms: 31 * DAY_MS,
                forget_after_ms: 30 * DAY_MS,
            }),
            ..Policy::default()
        };
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("learning period"));
    }
}
