//! The Finding model and its renderings.
//!
//! A finding is data: everything a responder needs to judge it without going back to the
//! logs (both locations with IP, time, event, accuracy and network owner; distance, time
//! and speed; the GeoIP database that placed them), and a deterministic `finding_id` so
//! that every hop downstream can deduplicate.

use serde::{Deserialize, Serialize};

use crate::geo::{GeoDbInfo, Location};

pub mod asff;
pub mod ocsf;
pub mod render;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    ImpossibleTravel,
    /// A record stamped after its log object was written: forged, or a broken clock.
    FutureEventTime,
    /// An API call from a city the account has not seen making it.
    UnusualCityForCommand,
    /// An error code the account has not seen returned.
    UnusualErrorCode,
    /// A successful call signed with a long-term IAM user key (`AKIA...`).
    LongTermAccessKeyAuth,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::ImpossibleTravel => "impossible_travel",
            Rule::FutureEventTime => "future_event_time",
            Rule::UnusualCityForCommand => "unusual_city_for_command",
            Rule::UnusualErrorCode => "unusual_error_code",
            Rule::LongTermAccessKeyAuth => "long_term_access_key_auth",
        }
    }

    /// Every rule, in the order `geotrail rules` lists them.
    pub const ALL: [Rule; 5] = [
        Rule::ImpossibleTravel,
        Rule::UnusualCityForCommand,
        Rule::UnusualErrorCode,
        Rule::LongTermAccessKeyAuth,
        Rule::FutureEventTime,
    ];

    pub fn parse(s: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The public rules this one answers to, for a finding's `references`.
    pub fn references(self) -> &'static [&'static str] {
        match self {
            Rule::ImpossibleTravel => &[
                "Datadog: User travel was impossible in AWS CloudTrail IAM log (fc6-4t7-vx9), with baseline user locations",
            ],
            Rule::FutureEventTime => &[],
            Rule::UnusualCityForCommand => &[
                "Elastic: Unusual City For an AWS Command (machine learning job rare_method_for_a_city)",
            ],
            Rule::UnusualErrorCode => &[
                "Elastic: Unusual error in a CloudTrail message (machine learning job rare_error_code)",
            ],
            Rule::LongTermAccessKeyAuth => &[
                "Panther: AWS.CloudTrail.UserAccessKeyAuth",
                "Elastic: AWS long-term access key first seen from source IP",
            ],
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Severity, String> {
        [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str() == s.to_ascii_lowercase())
        .ok_or_else(|| format!("unknown severity {s:?}: one of info, low, medium, high, critical"))
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made the calls, as CloudTrail's `userIdentity` said on the triggering event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserIdentitySummary {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The role session name of an assumed role (the last part of its ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
}

/// A [`UserIdentitySummary`] held in one allocation, for what waits to be judged: an
/// organisation's object names a thousand or more keys, each with its own identity, and
/// the summary's six strings were a tenth of an object's memory in flight. Built into a
/// summary only for a finding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactIdentity {
    /// The present fields, one after another, in the order of [`IdentityField`].
    text: Box<str>,
    /// Where each field ends in `text`; an absent field is empty and its bit in `present`
    /// is clear.
    ends: [u32; IdentityField::COUNT],
    present: u8,
}

/// The fields of a [`UserIdentitySummary`], in [`CompactIdentity`]'s order.
#[derive(Debug, Clone, Copy)]
pub enum IdentityField {
    Type,
    Arn,
    AccountId,
    UserName,
    AccessKeyId,
    SessionName,
}

impl IdentityField {
    const COUNT: usize = 6;
}

impl CompactIdentity {
    /// Longest field kept, in bytes. AWS allows 2,048 characters for an ARN and less for
    /// the rest, so only a forged record reaches it; it is cut at a character boundary,
    /// which also bounds what such a record can make every finding about it carry.
    pub const MAX_FIELD: usize = 64 * 1024;

    /// From the fields in [`IdentityField`]'s order.
    pub fn new(fields: [Option<&str>; IdentityField::COUNT]) -> CompactIdentity {
        let mut text = String::with_capacity(
            fields
                .iter()
                .map(|f| f.map_or(0, |f| f.len().min(Self::MAX_FIELD)))
                .sum(),
        );
        let mut ends = [0; IdentityField::COUNT];
        let mut present = 0;
        for (i, field) in fields.into_iter().enumerate() {
            if let Some(field) = field {
                text.push_str(cut(field, Self::MAX_FIELD));
                present |= 1 << i;
            }
            // At most six fields of `MAX_FIELD` bytes: far inside `u32`.
            ends[i] = text.len() as u32;
        }
        CompactIdentity {
            text: text.into_boxed_str(),
            ends,
            present,
        }
    }

    pub fn get(&self, field: IdentityField) -> Option<&str> {
        let i = field as usize;
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.text[start..self.ends[i] as usize])
    }

    pub fn identity_type(&self) -> Option<&str> {
        self.get(IdentityField::Type)
    }

    pub fn arn(&self) -> Option<&str> {
        self.get(IdentityField::Arn)
    }

    pub fn account_id(&self) -> Option<&str> {
        self.get(IdentityField::AccountId)
    }

    pub fn user_name(&self) -> Option<&str> {
        self.get(IdentityField::UserName)
    }

    pub fn access_key_id(&self) -> Option<&str> {
        self.get(IdentityField::AccessKeyId)
    }

    pub fn session_name(&self) -> Option<&str> {
        self.get(IdentityField::SessionName)
    }

    pub fn summary(&self) -> UserIdentitySummary {
        let owned = |field| self.get(field).map(str::to_owned);
        UserIdentitySummary {
            identity_type: owned(IdentityField::Type),
            arn: owned(IdentityField::Arn),
            account_id: owned(IdentityField::AccountId),
            user_name: owned(IdentityField::UserName),
            access_key_id: owned(IdentityField::AccessKeyId),
            session_name: owned(IdentityField::SessionName),
        }
    }
}

impl From<&UserIdentitySummary> for CompactIdentity {
    fn from(s: &UserIdentitySummary) -> CompactIdentity {
        CompactIdentity::new([
            s.identity_type.as_deref(),
            s.arn.as_deref(),
            s.account_id.as_deref(),
            s.user_name.as_deref(),
            s.access_key_id.as_deref(),
            s.session_name.as_deref(),
        ])
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One end of a journey: the event and where its source address placed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TravelEndpoint {
    pub event_id: String,
    /// RFC 3339, UTC.
    pub event_time: String,
    pub event_name: String,
    pub event_source: String,
    pub aws_region: String,
    pub ip: String,
    pub city: Option<String>,
    pub subdivision: Option<String>,
    pub country: Option<String>,
    pub country_code: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    pub accuracy_radius_km: Option<u16>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
    /// The subject was in continuous use at this place around `event_time` but no single
    /// recorded event is there: a later-arriving event split a stay, and the stay's
    /// longest gap bounds the time (the event fields name the stay's nearest recorded
    /// event; `event_id` is empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inferred: bool,
}

impl TravelEndpoint {
    pub fn display_place(&self) -> String {
        crate::geo::place_name(
            self.city.as_deref(),
            self.country.as_deref(),
            self.country_code.as_deref(),
        )
    }

    pub fn from_location(event: crate::detect::Point, location: &Location) -> TravelEndpoint {
        TravelEndpoint {
            inferred: event.is_inferred(),
            event_time: format_rfc3339_ms(event.t),
            event_id: event.id.to_string(),
            event_name: event.call.name.to_string(),
            event_source: event.call.source.to_string(),
            aws_region: event.call.region.to_string(),
            ip: event.ip.to_string(),
            city: location.city.clone(),
            subdivision: location.subdivision.clone(),
            country: location.country.clone(),
            country_code: location.country_code.clone(),
            latitude: location.latitude,
            longitude: location.longitude,
            accuracy_radius_km: location.accuracy_radius_km,
            asn: location.asn,
            as_org: location.as_org.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggeringLocations {
    pub first_location: TravelEndpoint,
    pub second_location: TravelEndpoint,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpossibleTravel {
    pub triggering_locations: TriggeringLocations,
    /// Great-circle distance between the two points, km.
    pub travel_distance: f64,
    /// The distance less both accuracy radii (when enabled): the least the subject must
    /// have travelled, km. Speed is computed from this.
    pub effective_distance_km: f64,
    pub travel_time_seconds: f64,
    pub travel_time_human_readable: String,
    /// Infinite speeds (both events in the same second) are reported as `null`.
    pub speed_kmh: Option<f64>,
    /// Both places were used within minutes of each other: two holders of one
    /// credential rather than one traveller.
    pub concurrent_use: bool,
}

/// Records of one subject in one log object stamped after the object was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FutureEventTime {
    /// RFC 3339: when the object was written (S3's `LastModified`, the time in
    /// CloudTrail's object name, or the clock of the scan when neither is known).
    pub object_written_at: String,
    pub tolerance_seconds: i64,
    /// How many of the subject's records in the object were from the future.
    pub count: u64,
    /// The first few of them, in event time.
    pub events: Vec<FutureEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FutureEvent {
    pub event_id: String,
    pub event_time: String,
    pub event_name: String,
    pub event_source: String,
    pub aws_region: String,
    pub source_ip_address: String,
}

/// One call a rarity finding lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRef {
    pub event_id: String,
    /// RFC 3339, UTC.
    pub event_time: String,
    pub event_name: String,
    pub event_source: String,
    pub aws_region: String,
    pub source_ip_address: String,
    /// "Sydney, Australia", when the address was placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Where a city is, as the GeoIP database placed the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceRef {
    /// "Sydney, Australia".
    pub name: String,
    pub city: Option<String>,
    pub subdivision: Option<String>,
    pub country: Option<String>,
    pub country_code: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    pub accuracy_radius_km: Option<u16>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
}

impl PlaceRef {
    pub fn from_location(location: &Location) -> PlaceRef {
        PlaceRef {
            name: location.display_name(),
            city: location.city.clone(),
            subdivision: location.subdivision.clone(),
            country: location.country.clone(),
            country_code: location.country_code.clone(),
            latitude: location.latitude,
            longitude: location.longitude,
            accuracy_radius_km: location.accuracy_radius_km,
            asn: location.asn,
            as_org: location.as_org.clone(),
        }
    }
}

/// How often something was seen from one place within the lookback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceCount {
    pub place: String,
    pub count: u64,
    /// The earliest sighting still within the lookback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// The evidence for one call that was unusual from the finding's city.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEvidence {
    pub event_source: String,
    pub event_name: String,
    /// Calls of this API from the city in this finding's events.
    pub calls_from_city: u64,
    /// Calls of this API from the city before the first of them, within the lookback.
    pub seen_from_city_before: u64,
    /// Calls of this API in the account from anywhere, within the lookback.
    pub seen_in_account: u64,
    /// The earliest call of this API in the account still within the lookback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen_in_account: Option<String>,
    /// The cities this API is usually called from, most calls first.
    pub usual_places: Vec<PlaceCount>,
}

/// `unusual_city_for_command`: calls a principal made from a city the account has not
/// seen making them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnusualCityForCommand {
    pub place: PlaceRef,
    pub commands: Vec<CommandEvidence>,
    /// The unusual calls, in event time (the first few).
    pub calls: Vec<CallRef>,
    pub lookback_days: i64,
    pub min_seen: u32,
}

/// `unusual_error_code`: an error code the account has not seen returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnusualErrorCode {
    pub error_code: String,
    /// The calls that got it, in event time (the first few).
    pub calls: Vec<CallRef>,
    /// Returned before the first of these calls, within the lookback.
    pub seen_before: u64,
    /// Days within the lookback on which it was returned (a cadence: weekly jobs).
    pub days_seen: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    pub lookback_days: i64,
    pub min_seen: u32,
}

/// `long_term_access_key_auth`: a successful call signed with a long-term key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongTermAccessKeyAuth {
    pub access_key_id: String,
    pub source_ip_address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    /// The key was not used from this address within `new_address_days` before.
    pub new_address: bool,
    pub new_address_days: i64,
    /// The last use of the key from this address before this window, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_last_seen: Option<String>,
    /// Other addresses the key was used from within `new_address_days` (the first few).
    pub known_addresses: Vec<String>,
    /// The first call of the key from this address in the dedup window.
    pub calls: Vec<CallRef>,
    /// Calls of the key from this address in the window, as far as this object shows.
    pub calls_in_window: u64,
    pub dedup_minutes: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub finding_id: String,
    pub rule: Rule,
    pub severity: Severity,
    pub title: String,
    pub summary: String,
    pub triage: Vec<String>,
    /// The account that was called: CloudTrail's `recipientAccountId` of the subject's
    /// latest event in the object that raised the finding. With an organization trail
    /// or a role used across accounts, not necessarily the credential's own account.
    pub account_id: Option<String>,
    /// The account that owns the credential (`userIdentity.accountId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_account_id: Option<String>,
    /// What the detector tracked: an access key id, or a principal ARN.
    pub subject: String,
    pub subject_kind: crate::detect::SubjectKind,
    pub user_identity: UserIdentitySummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impossible_travel: Option<ImpossibleTravel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub future_event_time: Option<FutureEventTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unusual_city_for_command: Option<UnusualCityForCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unusual_error_code: Option<UnusualErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_term_access_key_auth: Option<LongTermAccessKeyAuth>,
    /// The public rules this finding's rule answers to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    pub geoip: GeoDbInfo,
    /// The log object whose event raised the finding (`s3://bucket/key` or a path).
    pub source_object: String,
    /// RFC 3339 time of the later event: findings carry event time, not wall-clock time,
    /// so that a replay renders byte-identical JSON.
    pub event_time: String,
}

impl Finding {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Finding always serializes")
    }

    /// The finding as an OCSF Detection Finding: [`ocsf::to_ocsf`].
    pub fn to_ocsf_json(&self) -> String {
        ocsf::to_ocsf(self).to_string()
    }

    /// A readable multi-line rendering for terminals: [`render::render_text`].
    pub fn to_text(&self) -> String {
        render::render_text(self)
    }
}

/// "2 hours 5 minutes", "20 minutes", "45 seconds", "0 seconds".
pub fn human_duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    let unit = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let parts: Vec<String> = [(d, "day"), (h, "hour"), (m, "minute")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, w)| unit(n, w))
        .collect();
    match (parts.is_empty(), d + h > 0) {
        (true, _) => unit(s, "second"),
        // Seconds are noise next to hours.
        (false, true) => parts.join(" "),
        (false, false) if s > 0 => format!("{} {}", parts.join(" "), unit(s, "second")),
        (false, false) => parts.join(" "),
    }
}

/// Unix epoch milliseconds -> `2023-07-10T11:40:12Z` (`.123` only when not whole seconds).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
    if millis == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
    }
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compact_identity_gives_back_the_summary_it_holds() {
        let full = UserIdentitySummary {
            identity_type: Some("AssumedRole".into()),
            arn: Some("arn:aws:sts::123456789012:assumed-role/Deploy/ci-7".into()),
            account_id: Some("123456789012".into()),
            user_name: Some("Deploy".into()),
            access_key_id: Some("ASIAEXAMPLEEXAMPLE01".into()),
            session_name: Some("ci-7".into()),
        };
        // Absent and empty are different: an empty field stays an empty string.
        let sparse = UserIdentitySummary {
            arn: Some(String::new()),
            access_key_id: Some("AKIAEXAMPLEEXAMPLE02".into()),
            ..Default::default()
        };
        for summary in [full, sparse, UserIdentitySummary::default()] {
            let compact = CompactIdentity::from(&summary);
            assert_eq!(compact.summary(), summary);
            assert_eq!(compact.arn(), summary.arn.as_deref());
            assert_eq!(compact.access_key_id(), summary.access_key_id.as_deref());
        }
        assert_eq!(
            CompactIdentity::from(&UserIdentitySummary::default()),
            CompactIdentity::default()
        );
    }

    #[test]
    fn a_forged_over_long_identity_field_is_cut_at_a_character_boundary() {
        // Three bytes a character, so the limit falls inside one.
        let arn = "\u{20ac}".repeat(CompactIdentity::MAX_FIELD / 3 + 10);
        let compact = CompactIdentity::new([None, Some(&arn), None, None, Some("AKIAX"), None]);
        let kept = compact.arn().unwrap();
        assert!(kept.len() <= CompactIdentity::MAX_FIELD);
        assert!(kept.len() > CompactIdentity::MAX_FIELD - 3);
        assert!(arn.starts_with(kept));
        assert_eq!(
            compact.access_key_id(),
            Some("AKIAX"),
            "later fields unharmed"
        );
    }

    #[test]
    fn human_duration_reads_like_datadogs() {
        let cases = [
            (0.0, "0 seconds"),
            (1.0, "1 second"),
            (45.0, "45 seconds"),
            (1200.0, "20 minutes"),
            (1261.0, "21 minutes 1 second"),
            (9.0 * 3600.0 + 60.0 + 5.0, "9 hours 1 minute"),
            (86_400.0 * 2.0 + 3600.0, "2 days 1 hour"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs} s");
        }
    }

    #[test]
    fn rfc3339_formatting_round_trips_known_instants() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (1_688_989_212_000, "2023-07-10T11:40:12Z"),
            (1_688_989_212_345, "2023-07-10T11:40:12.345Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
            (-1000, "1969-12-31T23:59:59Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_rfc3339_ms(ms), want, "{ms}");
        }
    }
}
