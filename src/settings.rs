//! The detection options users set, in their units, shared by the CLI (flags, with the
//! same environment variables as fallback) and the Lambda (environment variables).

use clap::{Args, ValueEnum};

use crate::detect::policy_units::{DAY_MS, HOUR_MS, MINUTE_MS};
use crate::detect::{BaselinePolicy, Policy, PolicyError, SubjectKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SubjectArg {
    /// One traveller per access key id (AKIA/ASIA).
    AccessKey,
    /// One traveller per IAM user, role session or root ARN.
    Principal,
}

#[derive(Debug, Clone, Args)]
pub struct PolicySettings {
    /// What a traveller is.
    #[arg(
        long,
        value_enum,
        default_value = "access-key",
        env = "GEOTRAIL_SUBJECT"
    )]
    pub subject: SubjectArg,
    /// Alert only above this distance, in km.
    #[arg(
        long,
        default_value_t = 500.0,
        env = "GEOTRAIL_MIN_DISTANCE_KM",
        value_name = "KM"
    )]
    pub min_distance_km: f64,
    /// Alert only above this speed, in km/h.
    #[arg(
        long,
        default_value_t = 1000.0,
        env = "GEOTRAIL_MIN_SPEED_KMH",
        value_name = "KMH"
    )]
    pub min_speed_kmh: f64,
    /// Judge the plain distance, without subtracting the locations' accuracy radii.
    #[arg(long, env = "GEOTRAIL_NO_ACCURACY_RADIUS")]
    pub no_accuracy_radius: bool,
    /// Report two places used within this many minutes as concurrent use.
    #[arg(
        long,
        default_value_t = 5,
        env = "GEOTRAIL_CONCURRENT_MINUTES",
        value_name = "MINUTES"
    )]
    pub concurrent_minutes: u32,
    /// How much history each subject keeps, in days of event time.
    #[arg(
        long,
        default_value_t = 30,
        env = "GEOTRAIL_HISTORY_DAYS",
        value_name = "DAYS"
    )]
    pub history_days: u32,
    /// Turn off baseline locations: every impossible hop alerts (once per dedup window).
    #[arg(long, env = "GEOTRAIL_NO_BASELINE")]
    pub no_baseline: bool,
    /// Learning period from a subject's first sighting, in hours (0 to 720).
    #[arg(
        long,
        default_value_t = 24.0,
        env = "GEOTRAIL_LEARNING_HOURS",
        value_name = "HOURS"
    )]
    pub learning_hours: f64,
    /// A baseline place unseen this many days is forgotten.
    #[arg(
        long,
        default_value_t = 30,
        env = "GEOTRAIL_FORGET_AFTER_DAYS",
        value_name = "DAYS"
    )]
    pub forget_after_days: u32,
    /// One finding per subject and place pair within this many minutes.
    #[arg(
        long,
        default_value_t = 60,
        env = "GEOTRAIL_DEDUP_MINUTES",
        value_name = "MINUTES"
    )]
    pub dedup_minutes: u32,
    /// An event stamped more than this many minutes after its log object was written is
    /// reported as a record from the future and never judged (0 to 1440).
    #[arg(
        long,
        default_value_t = 60,
        env = "GEOTRAIL_FUTURE_TOLERANCE_MINUTES",
        value_name = "MINUTES"
    )]
    pub future_tolerance_minutes: u32,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            subject: SubjectArg::AccessKey,
            min_distance_km: 500.0,
            min_speed_kmh: 1000.0,
            no_accuracy_radius: false,
            concurrent_minutes: 5,
            history_days: 30,
            no_baseline: false,
            learning_hours: 24.0,
            forget_after_days: 30,
            dedup_minutes: 60,
            future_tolerance_minutes: 60,
        }
    }
}

impl PolicySettings {
    pub fn to_policy(&self) -> Result<Policy, PolicyError> {
        let policy = Policy {
            subject: match self.subject {
                SubjectArg::AccessKey => SubjectKind::AccessKey,
                SubjectArg::Principal => SubjectKind::Principal,
            },
            min_distance_km: self.min_distance_km,
            min_speed_kmh: self.min_speed_kmh,
            use_accuracy_radius: !self.no_accuracy_radius,
            concurrent_window_ms: i64::from(self.concurrent_minutes) * MINUTE_MS,
            history_window_ms: i64::from(self.history_days) * DAY_MS,
            max_stays: Policy::default().max_stays,
            max_stay_gap_ms: 0,
            future_tolerance_ms: i64::from(self.future_tolerance_minutes) * MINUTE_MS,
            baseline: (!self.no_baseline).then(|| BaselinePolicy {
                learning_ms: (self.learning_hours * HOUR_MS as f64).round() as i64,
                forget_after_ms: i64::from(self.forget_after_days) * DAY_MS,
            }),
            dedup_window_ms: i64::from(self.dedup_minutes) * MINUTE_MS,
        };
        if !self.learning_hours.is_finite() {
            return Err(PolicyError::OutOfRange {
                name: "baseline learning period",
                expected: "between 0 and 720 hours",
                value: self.learning_hours.to_string(),
            });
        }
        let policy = Policy {
            max_stay_gap_ms: policy.fitting_stay_gap_ms(),
            ..policy
        };
        policy.validate()?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_give_the_default_policy() {
        assert_eq!(
            PolicySettings::default().to_policy().unwrap(),
            Policy::default()
        );
    }
}
