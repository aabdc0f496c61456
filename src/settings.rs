//! The detection options users set, in their units, shared by the CLI (flags, with the
//! same environment variables as fallback) and the Lambda (environment variables).

use clap::{Args, ValueEnum};

use crate::detect::policy_units::{DAY_MS, HOUR_MS, MINUTE_MS};
use crate::detect::{BaselinePolicy, Policy, PolicyError, RulePolicy, RuleSet, SubjectKind};

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
    /// The rules to run, comma-separated ids or `all` (see `geotrail rules`).
    #[arg(
        long,
        default_value = "all",
        env = "GEOTRAIL_RULES",
        value_name = "IDS"
    )]
    pub rules: String,
    /// unusual_city_for_command, unusual_error_code, and the new-address judgement of
    /// long_term_access_key_auth stay silent this many hours after an account's first
    /// event (0 to 720).
    #[arg(
        long,
        default_value_t = 48,
        env = "GEOTRAIL_RARE_LEARNING_HOURS",
        value_name = "HOURS"
    )]
    pub rare_learning_hours: u32,
    /// How many days back "seen before" looks for the rarity rules (1 to 366).
    #[arg(
        long,
        default_value_t = 30,
        env = "GEOTRAIL_RARE_LOOKBACK_DAYS",
        value_name = "DAYS"
    )]
    pub rare_lookback_days: u32,
    /// A call from a city, or an error code, seen fewer times than this within the
    /// lookback is rare (1 to 16).
    #[arg(
        long,
        default_value_t = 1,
        env = "GEOTRAIL_RARE_MIN_SEEN",
        value_name = "N"
    )]
    pub rare_min_seen: u32,
    /// Rare calls of one principal from one city, or with one error code, within this
    /// many minutes are one finding.
    #[arg(
        long,
        default_value_t = 60,
        env = "GEOTRAIL_RARE_GROUP_MINUTES",
        value_name = "MINUTES"
    )]
    pub rare_group_minutes: u32,
    /// One long_term_access_key_auth finding per key and source address per this many
    /// minutes (Panther's dedup period).
    #[arg(
        long,
        default_value_t = 60,
        env = "GEOTRAIL_KEY_AUTH_DEDUP_MINUTES",
        value_name = "MINUTES"
    )]
    pub key_auth_dedup_minutes: u32,
    /// A long-term key's source address is new when the key was not used from it this
    /// many days before.
    #[arg(
        long,
        default_value_t = 10,
        env = "GEOTRAIL_NEW_ADDRESS_DAYS",
        value_name = "DAYS"
    )]
    pub new_address_days: u32,
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
            rules: "all".to_owned(),
            rare_learning_hours: 48,
            rare_lookback_days: 30,
            rare_min_seen: 1,
            rare_group_minutes: 60,
            key_auth_dedup_minutes: 60,
            new_address_days: 10,
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
            rules: RulePolicy {
                enabled: RuleSet::parse(&self.rules).map_err(|e| PolicyError::OutOfRange {
                    name: "rules",
                    expected: "comma-separated rule ids or all",
                    value: e,
                })?,
                learning_ms: i64::from(self.rare_learning_hours) * HOUR_MS,
                lookback_days: i64::from(self.rare_lookback_days),
                min_seen: self.rare_min_seen,
                group_window_ms: i64::from(self.rare_group_minutes) * MINUTE_MS,
                key_auth_window_ms: i64::from(self.key_auth_dedup_minutes) * MINUTE_MS,
                new_address_days: i64::from(self.new_address_days),
                report_min: crate::finding::Severity::Info,
            },
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
