//! The Lambda's configuration: environment variables, read once at cold start.
//!
//! Detection options use the same variable names as the CLI's `env` fallbacks (see
//! [`PolicySettings`]), so one set of names works for both. An empty value counts as
//! unset: CloudFormation cannot leave a variable out conditionally without a lot of
//! ceremony, and an empty optional parameter arrives as `""`.

use std::path::PathBuf;

use clap::ValueEnum;

use crate::cloudtrail::ReadOptions;
use crate::detect::{Policy, PolicyError};
use crate::settings::{PolicySettings, SubjectArg};

pub const TABLE: &str = "GEOTRAIL_TABLE";
pub const TOPIC_ARN: &str = "GEOTRAIL_TOPIC_ARN";
pub const GEOIP: &str = "GEOTRAIL_GEOIP";
pub const GEOIP_ASN: &str = "GEOTRAIL_GEOIP_ASN";
pub const MAX_OBJECT_MIB: &str = "GEOTRAIL_MAX_OBJECT_MIB";
pub const STATE_TTL_DAYS: &str = "GEOTRAIL_STATE_TTL_DAYS";
/// The SQS queue (URL) for objects no retry can judge; unset: such objects fail the
/// invocation or message, and end in Lambda's or the source queue's dead letters.
pub const DEAD_LETTER_QUEUE_URL: &str = "GEOTRAIL_DEAD_LETTER_QUEUE_URL";
/// Security Hub's product ARN for the account's custom integration
/// (`arn:PARTITION:securityhub:REGION:ACCOUNT:product/ACCOUNT/default`); set: every
/// finding is also imported into Security Hub.
pub const SECURITY_HUB_PRODUCT_ARN: &str = "GEOTRAIL_SECURITY_HUB_PRODUCT_ARN";
/// An EventBridge bus (name or ARN); set: every finding is also put on it as an event.
pub const EVENT_BUS: &str = "GEOTRAIL_EVENT_BUS";
/// Set by Lambda; the dimension of the function's metrics.
pub const FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
/// Set by Lambda: the function's memory in MB, which the object limit is derived from.
pub const MEMORY_SIZE: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";

pub const SUBJECT: &str = "GEOTRAIL_SUBJECT";
pub const MIN_DISTANCE_KM: &str = "GEOTRAIL_MIN_DISTANCE_KM";
pub const MIN_SPEED_KMH: &str = "GEOTRAIL_MIN_SPEED_KMH";
pub const NO_ACCURACY_RADIUS: &str = "GEOTRAIL_NO_ACCURACY_RADIUS";
pub const CONCURRENT_MINUTES: &str = "GEOTRAIL_CONCURRENT_MINUTES";
pub const HISTORY_DAYS: &str = "GEOTRAIL_HISTORY_DAYS";
pub const NO_BASELINE: &str = "GEOTRAIL_NO_BASELINE";
pub const LEARNING_HOURS: &str = "GEOTRAIL_LEARNING_HOURS";
pub const FORGET_AFTER_DAYS: &str = "GEOTRAIL_FORGET_AFTER_DAYS";
pub const DEDUP_MINUTES: &str = "GEOTRAIL_DEDUP_MINUTES";
pub const FUTURE_TOLERANCE_MINUTES: &str = "GEOTRAIL_FUTURE_TOLERANCE_MINUTES";
pub const RULES: &str = "GEOTRAIL_RULES";
pub const RARE_LEARNING_HOURS: &str = "GEOTRAIL_RARE_LEARNING_HOURS";
pub const RARE_LOOKBACK_DAYS: &str = "GEOTRAIL_RARE_LOOKBACK_DAYS";
pub const RARE_MIN_SEEN: &str = "GEOTRAIL_RARE_MIN_SEEN";
pub const RARE_GROUP_MINUTES: &str = "GEOTRAIL_RARE_GROUP_MINUTES";
pub const KEY_AUTH_DEDUP_MINUTES: &str = "GEOTRAIL_KEY_AUTH_DEDUP_MINUTES";
pub const NEW_ADDRESS_DAYS: &str = "GEOTRAIL_NEW_ADDRESS_DAYS";

/// The gzip-bomb guard when neither `GEOTRAIL_MAX_OBJECT_MIB` nor the function's memory
/// is known (outside Lambda): CloudTrail objects are a few MiB decompressed.
pub const DEFAULT_MAX_OBJECT_MIB: u64 = 1024;
/// Function memory not available to objects: the runtime, the binary, and the GeoIP
/// database's pages (DB-IP City Lite is ~104 MB, all of it touched in time).
const RESERVED_MEMORY_MB: u64 = 192;
/// The smallest derived object limit: a large hour of a busy account's logs.
const MIN_DERIVED_OBJECT_MIB: u64 = 16;
/// State kept this many days after an item's latest event beyond what detection still
/// reads (history window, baseline memory, the rules' lookback), when
/// `GEOTRAIL_STATE_TTL_DAYS` is unset: a margin for late-delivered logs.
const TTL_MARGIN_DAYS: u32 = 7;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{name} is not set: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("{name}={value:?} is not valid: expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// A detection option the policy rejects, named by the variable that set it.
    #[error("{name}={value:?} is not valid: {source}")]
    Policy {
        name: &'static str,
        value: String,
        #[source]
        source: PolicyError,
    },
    /// Values that are valid alone but not together (a dedup window longer than history).
    #[error("detection options do not fit together ({given}): {source}")]
    PolicyCombination {
        given: String,
        #[source]
        source: PolicyError,
    },
    #[error("{name}={value} is shorter than what detection still reads ({needed_days} days: {reason}); state would expire while needed")]
    TtlTooShort {
        name: &'static str,
        value: u32,
        needed_days: u32,
        reason: &'static str,
    },
}

/// Everything the Lambda needs to know, validated.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub table: String,
    pub topic_arn: String,
    /// The City database (GeoLite2/GeoIP2 City or DB-IP City Lite).
    pub geoip: PathBuf,
    pub geoip_asn: Option<PathBuf>,
    pub max_object_mib: u64,
    /// Where `max_object_mib` came from, for the message that refuses an object.
    pub max_object_origin: String,
    pub state_ttl_days: u32,
    /// Where objects no retry can judge are sent, with the reason.
    pub dead_letter_queue_url: Option<String>,
    /// Where findings are imported into Security Hub, if anywhere (validated).
    pub security_hub_product_arn: Option<String>,
    /// The EventBridge bus findings are put on, if any.
    pub event_bus: Option<String>,
    /// The metrics' `FunctionName` dimension: Lambda's name for the function, or
    /// `geotrail` outside Lambda.
    pub function_name: String,
    /// As the variables set them; [`LambdaConfig::policy`] is the checked policy.
    pub settings: PolicySettings,
    pub policy: Policy,
}

impl LambdaConfig {
    /// Reads the configuration through `lookup` (`main` passes the process environment;
    /// tests a map). Every error names the variable and the value it had.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<LambdaConfig, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str, hint: &'static str| {
            get(name).ok_or(ConfigError::Missing { name, hint })
        };

        let table = required(TABLE, "the DynamoDB table that holds each subject's state")?;
        let topic_arn = required(
            TOPIC_ARN,
            "the ARN of the SNS topic findings are published to",
        )?;
        if !topic_arn.starts_with("arn:") {
            return Err(ConfigError::Invalid {
                name: TOPIC_ARN,
                value: topic_arn,
                expected: "an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
            });
        }
        let geoip = PathBuf::from(required(
            GEOIP,
            "the path of the GeoIP City database (.mmdb)",
        )?);
        let geoip_asn = get(GEOIP_ASN).map(PathBuf::from);
        let (max_object_mib, max_object_origin) = match (get(MAX_OBJECT_MIB), get(MEMORY_SIZE)) {
            (Some(v), _) => {
                let mib = parse::<u64>(MAX_OBJECT_MIB, &v, "a whole number of MiB, 1 or more")
                    .and_then(|n| {
                        positive(MAX_OBJECT_MIB, &v, n, "a whole number of MiB, 1 or more")
                    })?;
                (mib, format!("{MAX_OBJECT_MIB}={mib}"))
            }
            (None, Some(v)) => {
                let mb = parse::<u64>(MEMORY_SIZE, &v, "the function's memory in MB")?;
                (
                    max_object_mib_for_memory(mb),
                    format!("derived from {mb} MB of function memory; {MAX_OBJECT_MIB} sets it"),
                )
            }
            (None, None) => (
                DEFAULT_MAX_OBJECT_MIB,
                format!("the default; {MAX_OBJECT_MIB} sets it"),
            ),
        };

        let (settings, given) = policy_settings(&get)?;
        let policy = settings
            .to_policy()
            .map_err(|source| blame(&given, source))?;

        let (needed_days, reason) = needed_state_days(&settings, &policy);
        let state_ttl_days = match get(STATE_TTL_DAYS) {
            None => default_state_ttl_days(&settings, &policy),
            Some(v) => {
                let days = parse::<u32>(STATE_TTL_DAYS, &v, "a whole number of days")?;
                if days < needed_days {
                    return Err(ConfigError::TtlTooShort {
                        name: STATE_TTL_DAYS,
                        value: days,
                        needed_days,
                        reason,
                    });
                }
                days
            }
        };

        let function_name = get(FUNCTION_NAME).unwrap_or_else(|| "geotrail".to_owned());
        let dead_letter_queue_url = get(DEAD_LETTER_QUEUE_URL);
        if let Some(url) = &dead_letter_queue_url {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                return Err(ConfigError::Invalid {
                    name: DEAD_LETTER_QUEUE_URL,
                    value: url.clone(),
                    expected: "an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)",
                });
            }
        }

        let security_hub_product_arn = get(SECURITY_HUB_PRODUCT_ARN);
        if let Some(arn) = &security_hub_product_arn {
            if crate::finding::asff::AsffProduct::parse(arn).is_err() {
                return Err(ConfigError::Invalid {
                    name: SECURITY_HUB_PRODUCT_ARN,
                    value: arn.clone(),
                    expected: "a Security Hub product ARN (arn:aws:securityhub:REGION:ACCOUNT:product/ACCOUNT/default)",
                });
            }
        }
        let event_bus = get(EVENT_BUS).map(|b| b.trim().to_owned());
        if let Some(bus) = &event_bus {
            if !is_event_bus(bus) {
                return Err(ConfigError::Invalid {
                    name: EVENT_BUS,
                    value: bus.clone(),
                    expected: "an EventBridge bus name (letters, digits, . - _ /; up to 256) or an event-bus ARN",
                });
            }
        }

        Ok(LambdaConfig {
            table,
            topic_arn,
            geoip,
            geoip_asn,
            max_object_mib,
            max_object_origin,
            state_ttl_days,
            dead_letter_queue_url,
            security_hub_product_arn,
            event_bus,
            function_name,
            settings,
            policy,
        })
    }

    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            max_decompressed_bytes: Some(self.max_object_mib.saturating_mul(1024 * 1024)),
            ..ReadOptions::default()
        }
    }
}

/// What `PutEvents` takes as `EventBusName`: a bus's name or ARN.
fn is_event_bus(bus: &str) -> bool {
    if bus.starts_with("arn:") {
        return bus.contains(":events:") && bus.contains(":event-bus/");
    }
    (1..=256).contains(&bus.len())
        && bus
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'))
}

/// The TTL the Lambda gives items by default for these settings: what they need, and a
/// margin. `geotrail scan --table` writes with it too, so seeded items live as long.
pub fn default_state_ttl_days(settings: &PolicySettings, policy: &Policy) -> u32 {
    needed_state_days(settings, policy)
        .0
        .saturating_add(TTL_MARGIN_DAYS)
}

/// The days an item must outlive its latest event time, and what needs them. Detection
/// reads a subject's history window and (with baselines) remembers places for
/// forget_after_days; the account-level rules look back over their lookback from a
/// tally's latest event (which covers the new-address window, never longer). One TTL
/// serves subjects and tallies alike, so it must cover all three.
fn needed_state_days(settings: &PolicySettings, policy: &Policy) -> (u32, &'static str) {
    let mut needed = (settings.history_days, "the history window");
    if !settings.no_baseline && settings.forget_after_days > needed.0 {
        needed = (
            settings.forget_after_days,
            "the baseline forget-after period",
        );
    }
    if policy.rules.enabled.any_tallied() && settings.rare_lookback_days > needed.0 {
        needed = (settings.rare_lookback_days, "the rules' lookback");
    }
    needed
}

/// The largest decoded object a function of `memory_mb` reads without running out of
/// memory with [`OBJECTS_IN_FLIGHT`](super::OBJECTS_IN_FLIGHT) such objects at once.
///
/// Streaming keeps the bytes out of memory, but not what they turn into: a scan holds
/// about 2/3 of a byte of sightings per decoded byte (66 MiB of heap for a 100 MiB
/// object, measured; see the README's "Speed and memory"). Equal to the memory, as the
/// limit once was by default, four such objects would need 2.6 times what there is.
pub fn max_object_mib_for_memory(memory_mb: u64) -> u64 {
    let per_object = memory_mb.saturating_sub(RESERVED_MEMORY_MB) / super::OBJECTS_IN_FLIGHT as u64;
    (per_object * 3 / 2).max(MIN_DERIVED_OBJECT_MIB)
}

/// Sets one detection option from its variable's value.
type Apply = fn(&mut PolicySettings, &'static str, &str) -> Result<(), ConfigError>;
/// A detection variable that was set: name, how it applies, value.
type GivenOption = (&'static str, Apply, String);

/// Detection options from their variables, on top of the defaults; also returns the
/// variables that were given, for messages.
fn policy_settings(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<(PolicySettings, Vec<GivenOption>), ConfigError> {
    const OPTIONS: &[(&str, Apply)] = &[
        (SUBJECT, |s, n, v| {
            s.subject = SubjectArg::from_str(v, true)
                .map_err(|_| invalid(n, v, "access-key or principal"))?;
            Ok(())
        }),
        (MIN_DISTANCE_KM, |s, n, v| {
            s.min_distance_km = parse(n, v, "a number of km")?;
            Ok(())
        }),
        (MIN_SPEED_KMH, |s, n, v| {
            s.min_speed_kmh = parse(n, v, "a number of km/h")?;
            Ok(())
        }),
        (NO_ACCURACY_RADIUS, |s, n, v| {
            s.no_accuracy_radius = flag(n, v)?;
            Ok(())
        }),
        (CONCURRENT_MINUTES, |s, n, v| {
            s.concurrent_minutes = parse(n, v, "a whole number of minutes")?;
            Ok(())
        }),
        (HISTORY_DAYS, |s, n, v| {
            s.history_days = parse(n, v, "a whole number of days")?;
            Ok(())
        }),
        (NO_BASELINE, |s, n, v| {
            s.no_baseline = flag(n, v)?;
            Ok(())
        }),
        (LEARNING_HOURS, |s, n, v| {
            s.learning_hours = parse(n, v, "a number of hours")?;
            Ok(())
        }),
        (FORGET_AFTER_DAYS, |s, n, v| {
            s.forget_after_days = parse(n, v, "a whole number of days")?;
            Ok(())
        }),
        (DEDUP_MINUTES, |s, n, v| {
            s.dedup_minutes = parse(n, v, "a whole number of minutes")?;
            Ok(())
        }),
        (FUTURE_TOLERANCE_MINUTES, |s, n, v| {
            s.future_tolerance_minutes = parse(n, v, "a whole number of minutes")?;
            Ok(())
        }),
        (RULES, |s, _, v| {
            s.rules = v.to_owned();
            Ok(())
        }),
        (RARE_LEARNING_HOURS, |s, n, v| {
            s.rare_learning_hours = parse(n, v, "a whole number of hours")?;
            Ok(())
        }),
        (RARE_LOOKBACK_DAYS, |s, n, v| {
            s.rare_lookback_days = parse(n, v, "a whole number of days")?;
            Ok(())
        }),
        (RARE_MIN_SEEN, |s, n, v| {
            s.rare_min_seen = parse(n, v, "a whole number")?;
            Ok(())
        }),
        (RARE_GROUP_MINUTES, |s, n, v| {
            s.rare_group_minutes = parse(n, v, "a whole number of minutes")?;
            Ok(())
        }),
        (KEY_AUTH_DEDUP_MINUTES, |s, n, v| {
            s.key_auth_dedup_minutes = parse(n, v, "a whole number of minutes")?;
            Ok(())
        }),
        (NEW_ADDRESS_DAYS, |s, n, v| {
            s.new_address_days = parse(n, v, "a whole number of days")?;
            Ok(())
        }),
    ];

    let mut settings = PolicySettings::default();
    let mut given = Vec::new();
    for (name, apply) in OPTIONS {
        let Some(value) = get(name) else { continue };
        let value = value.trim().to_owned();
        apply(&mut settings, name, &value)?;
        given.push((*name, *apply, value));
    }
    Ok((settings, given))
}

/// Pins a policy error on the variable that caused it.
///
/// The policy checks its ranges as a whole and names its own fields, not variables. A
/// variable that the defaults also refuse when applied alone is the culprit; when none
/// is, the values only clash together and all given ones are listed.
fn blame(given: &[GivenOption], source: PolicyError) -> ConfigError {
    for (name, apply, value) in given {
        let mut alone = PolicySettings::default();
        if apply(&mut alone, name, value).is_ok() {
            if let Err(source) = alone.to_policy() {
                return ConfigError::Policy {
                    name,
                    value: value.clone(),
                    source,
                };
            }
        }
    }
    ConfigError::PolicyCombination {
        given: given
            .iter()
            .map(|(n, _, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        source,
    }
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        expected,
    }
}

fn parse<T: std::str::FromStr>(
    name: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(name, value, expected))
}

fn positive(
    name: &'static str,
    value: &str,
    n: u64,
    expected: &'static str,
) -> Result<u64, ConfigError> {
    if n == 0 {
        Err(invalid(name, value, expected))
    } else {
        Ok(n)
    }
}

/// Strict where clap is lenient: a typo such as `ture` is an error, not `true`.
fn flag(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(name, value, "true or false")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::detect::SubjectKind;

    const REQUIRED: &[(&str, &str)] = &[
        (TABLE, "geotrail-state"),
        (
            TOPIC_ARN,
            "arn:aws:sns:us-east-1:123456789012:geotrail-findings",
        ),
        (GEOIP, "/opt/geoip/GeoLite2-City.mmdb"),
    ];

    fn config(extra: &[(&str, &str)]) -> Result<LambdaConfig, ConfigError> {
        let vars: HashMap<String, String> = REQUIRED
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LambdaConfig::from_env(|name| vars.get(name).cloned())
    }

    #[test]
    fn security_hub_and_the_event_bus_are_off_unless_named_and_checked_when_named() {
        let c = config(&[]).unwrap();
        assert_eq!((c.security_hub_product_arn, c.event_bus), (None, None));
        let arn = "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default";
        let c = config(&[(SECURITY_HUB_PRODUCT_ARN, arn), (EVENT_BUS, "findings")]).unwrap();
        assert_eq!(c.security_hub_product_arn.as_deref(), Some(arn));
        assert_eq!(c.event_bus.as_deref(), Some("findings"));
        let c = config(&[(SECURITY_HUB_PRODUCT_ARN, ""), (EVENT_BUS, " ")]).unwrap();
        assert_eq!((c.security_hub_product_arn, c.event_bus), (None, None));
        let bus_arn = "arn:aws:events:us-east-1:123456789012:event-bus/findings";
        assert!(config(&[(EVENT_BUS, bus_arn)]).is_ok());

        for (name, value) in [
            (
                SECURITY_HUB_PRODUCT_ARN,
                "arn:aws:securityhub:us-east-1:123456789012:hub/default",
            ),
            (SECURITY_HUB_PRODUCT_ARN, "Enabled"),
            (EVENT_BUS, "my bus"),
            (EVENT_BUS, "arn:aws:sns:us-east-1:123456789012:t"),
        ] {
            let err = config(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(value), "{err}");
        }
    }

    #[test]
    fn required_variables_alone_give_the_default_policy() {
        let c = config(&[]).unwrap();
        assert_eq!(c.policy, Policy::default());
        assert_eq!(c.max_object_mib, 1024);
        assert_eq!(c.read_options().max_decompressed_bytes, Some(1 << 30));
        assert_eq!(c.geoip_asn, None);
        assert_eq!(c.state_ttl_days, 30 + TTL_MARGIN_DAYS);
    }

    #[test]
    fn the_object_limit_follows_the_function_memory_unless_set() {
        /// (case, variables, limit in MiB, what the origin says)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u64, &'a str);
        let cases: &[Case] = &[
            ("outside Lambda", &[], 1024, "default"),
            ("1024 MB", &[(MEMORY_SIZE, "1024")], 312, "1024 MB"),
            ("256 MB", &[(MEMORY_SIZE, "256")], 24, "256 MB"),
            ("128 MB", &[(MEMORY_SIZE, "128")], 16, "128 MB"),
            ("10240 MB", &[(MEMORY_SIZE, "10240")], 3768, "10240 MB"),
            (
                "override",
                &[(MEMORY_SIZE, "1024"), (MAX_OBJECT_MIB, "2048")],
                2048,
                "GEOTRAIL_MAX_OBJECT_MIB=2048",
            ),
        ];
        for (case, vars, mib, origin) in cases {
            let c = config(vars).unwrap_or_else(|e| panic!("case {case}: {e}"));
            assert_eq!(c.max_object_mib, *mib, "case {case}");
            assert!(
                c.max_object_origin.contains(origin),
                "case {case}: {}",
                c.max_object_origin
            );
        }
        for mb in [256, 1024, 1769, 10240] {
            let objects = max_object_mib_for_memory(mb) * 2 / 3 * 4;
            assert!(objects < mb, "{mb} MB: four objects' sightings fit");
        }
    }

    #[test]
    fn each_missing_required_variable_is_named() {
        for (missing, _) in REQUIRED {
            let vars: HashMap<&str, &str> = REQUIRED
                .iter()
                .copied()
                .filter(|(k, _)| k != missing)
                .collect();
            let err = LambdaConfig::from_env(|n| vars.get(n).map(|v| v.to_string())).unwrap_err();
            assert!(err.to_string().contains(missing), "case {missing}: {err}");
        }
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = config(&[(GEOIP_ASN, ""), (MIN_DISTANCE_KM, " "), (NO_BASELINE, "")]).unwrap();
        assert_eq!(c.geoip_asn, None);
        assert_eq!(c.policy, Policy::default());
    }

    #[test]
    fn detection_options_reach_the_policy() {
        let c = config(&[
            (SUBJECT, "principal"),
            (MIN_DISTANCE_KM, "800"),
            (MIN_SPEED_KMH, "900.5"),
            (NO_ACCURACY_RADIUS, "true"),
            (CONCURRENT_MINUTES, "10"),
            (HISTORY_DAYS, "14"),
            (LEARNING_HOURS, "48"),
            (FORGET_AFTER_DAYS, "10"),
            (DEDUP_MINUTES, "120"),
            (GEOIP_ASN, "/opt/geoip/GeoLite2-ASN.mmdb"),
            (MAX_OBJECT_MIB, "64"),
        ])
        .unwrap();
        let p = &c.policy;
        assert_eq!(p.subject, SubjectKind::Principal);
        assert_eq!((p.min_distance_km, p.min_speed_kmh), (800.0, 900.5));
        assert!(!p.use_accuracy_radius);
        assert_eq!(p.concurrent_window_ms, 10 * 60_000);
        assert_eq!(p.history_window_ms, 14 * 86_400_000);
        assert_eq!(p.dedup_window_ms, 120 * 60_000);
        let b = p.baseline.as_ref().expect("baseline on by default");
        assert_eq!(
            (b.learning_ms, b.forget_after_ms),
            (48 * 3_600_000, 10 * 86_400_000)
        );
        assert_eq!(c.read_options().max_decompressed_bytes, Some(64 << 20));
        assert_eq!(
            c.geoip_asn,
            Some(PathBuf::from("/opt/geoip/GeoLite2-ASN.mmdb"))
        );
        assert_eq!(
            c.state_ttl_days,
            30 + TTL_MARGIN_DAYS,
            "the rules' default 30-day lookback outlasts this history and forget-after"
        );
        assert!(config(&[(NO_BASELINE, "yes")])
            .unwrap()
            .policy
            .baseline
            .is_none());
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let cases: &[(&str, &str)] = &[
            (TOPIC_ARN, "geotrail-findings"),
            (SUBJECT, "user"),
            (MIN_DISTANCE_KM, "far"),
            (MIN_DISTANCE_KM, "-5"),
            (MIN_SPEED_KMH, "0"),
            (NO_ACCURACY_RADIUS, "ture"),
            (CONCURRENT_MINUTES, "-1"),
            (HISTORY_DAYS, "400"),
            (NO_BASELINE, "maybe"),
            (LEARNING_HOURS, "1000"),
            (LEARNING_HOURS, "NaN"),
            (FORGET_AFTER_DAYS, "0"),
            (DEDUP_MINUTES, "1.5"),
            (MAX_OBJECT_MIB, "0"),
            (MAX_OBJECT_MIB, "1GiB"),
            (MEMORY_SIZE, "1 GB"),
            (STATE_TTL_DAYS, "soon"),
        ];
        for (name, value) in cases {
            let err =
                config(&[(name, value)]).expect_err(&format!("{name}={value} should be refused"));
            let msg = err.to_string();
            assert!(
                msg.contains(name) && msg.contains(value),
                "case {name}={value}: {msg}"
            );
        }
    }

    #[test]
    fn options_valid_alone_but_not_together_list_what_was_given() {
        // A 2-day history cannot hold a 3-day dedup window.
        let err = config(&[(HISTORY_DAYS, "2"), (DEDUP_MINUTES, "4320")]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("GEOTRAIL_HISTORY_DAYS=2") && msg.contains("GEOTRAIL_DEDUP_MINUTES=4320"),
            "{msg}"
        );
    }

    #[test]
    fn a_long_dedup_window_is_fine_with_a_history_long_enough_for_it() {
        // 60 days of dedup would not fit the default 30-day history, but fits 90 days.
        let c = config(&[(HISTORY_DAYS, "90"), (DEDUP_MINUTES, "86400")]).unwrap();
        assert_eq!(c.policy.dedup_window_ms, 60 * 86_400_000);
    }

    #[test]
    fn the_derived_ttl_covers_history_baseline_and_the_rules_lookback() {
        /// (case, variables, days before the margin)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u32);
        let cases: &[Case] = &[
            ("defaults", &[], 30),
            (
                "short history, rules on",
                &[(HISTORY_DAYS, "14"), (FORGET_AFTER_DAYS, "10")],
                30,
            ),
            (
                "short history, no account-level rule",
                &[
                    (HISTORY_DAYS, "14"),
                    (FORGET_AFTER_DAYS, "10"),
                    (RULES, "impossible_travel"),
                ],
                14,
            ),
            ("long lookback", &[(RARE_LOOKBACK_DAYS, "90")], 90),
            (
                "long lookback, one account-level rule",
                &[(RULES, "unusual_error_code"), (RARE_LOOKBACK_DAYS, "90")],
                90,
            ),
            (
                "long lookback, only impossible travel",
                &[(RULES, "impossible_travel"), (RARE_LOOKBACK_DAYS, "90")],
                30,
            ),
            (
                "forget-after longest",
                &[(FORGET_AFTER_DAYS, "60"), (RARE_LOOKBACK_DAYS, "45")],
                60,
            ),
            (
                "forget-after ignored without baselines",
                &[
                    (FORGET_AFTER_DAYS, "60"),
                    (NO_BASELINE, "true"),
                    (RARE_LOOKBACK_DAYS, "45"),
                ],
                45,
            ),
        ];
        for (case, vars, days) in cases {
            let c = config(vars).unwrap_or_else(|e| panic!("case {case}: {e}"));
            assert_eq!(c.state_ttl_days, days + TTL_MARGIN_DAYS, "case {case}");
        }
    }

    #[test]
    fn a_ttl_shorter_than_the_rules_lookback_is_refused() {
        let err = config(&[(RARE_LOOKBACK_DAYS, "60"), (STATE_TTL_DAYS, "40")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::TtlTooShort {
                name: STATE_TTL_DAYS,
                value: 40,
                needed_days: 60,
                reason: "the rules' lookback",
            }
        );
        let only_travel = config(&[
            (RULES, "impossible_travel"),
            (RARE_LOOKBACK_DAYS, "60"),
            (STATE_TTL_DAYS, "40"),
        ])
        .unwrap();
        assert_eq!(only_travel.state_ttl_days, 40);
    }

    #[test]
    fn a_ttl_shorter_than_the_history_window_is_refused() {
        let err = config(&[(STATE_TTL_DAYS, "7")]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::TtlTooShort {
                    needed_days: 30,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("GEOTRAIL_STATE_TTL_DAYS=7"),
            "{err}"
        );
        assert_eq!(
            config(&[(STATE_TTL_DAYS, "90")]).unwrap().state_ttl_days,
            90
        );
    }
}
