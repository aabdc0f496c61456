//! A finding in the AWS Security Finding Format (ASFF, schema `2018-10-08`), for
//! Security Hub's `BatchImportFindings` through a custom integration (the account's
//! `product/ACCOUNT/default` product). Pure: [`to_asff`] is a function of the finding, the
//! product and the time of the import, so the AWS adapter only moves it into the SDK's
//! types.
//!
//! The ASFF `Id` is the finding id: deterministic, so an import retried after a failure
//! updates the finding Security Hub already has instead of adding a second one.
//!
//! What ASFF has a place for goes there: the credential as the resource (`AwsIamAccessKey`,
//! with its principal), the call that completed the finding as `Action.AwsApiCallAction`
//! (the API, and the caller's address with its city, country, coordinates and network
//! owner in `RemoteIpDetails`), the address again as `Network.SourceIpV4`/`SourceIpV6`, the
//! triage steps as the remediation. What it has no place for (the other end of a journey,
//! distances and speeds, the rarity rules' counts, the log object) is in `ProductFields`
//! under `geotrail/...` keys.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::cloudtrail::parse_event_time;
use crate::detect::SubjectKind;
use crate::finding::render::cloudtrail_history_url;
use crate::finding::{
    format_rfc3339_ms, CallRef, Finding, PlaceRef, Rule, Severity, TravelEndpoint,
};

/// The only ASFF schema version there is.
pub const SCHEMA_VERSION: &str = "2018-10-08";

/// ASFF's limits, in characters (counted here in UTF-16 code units, never fewer than
/// characters, so the limit holds however the service counts).
pub const MAX_TITLE: usize = 256;
pub const MAX_DESCRIPTION: usize = 1024;
/// `Id` and `GeneratorId`.
pub const MAX_ID: usize = 512;
/// `Remediation.Recommendation.Text`.
pub const MAX_RECOMMENDATION: usize = 512;
/// `ProductFields`: at most 50 pairs, keys of 128 characters, values of 2048.
pub const MAX_PRODUCT_FIELDS: usize = 50;
pub const MAX_PRODUCT_FIELD_KEY: usize = 128;
pub const MAX_PRODUCT_FIELD_VALUE: usize = 2048;
/// `Resources` holds at most 32.
pub const MAX_RESOURCES: usize = 32;
/// Security Hub refuses a finding larger than 240 KB.
pub const MAX_FINDING_BYTES: usize = 240 * 1024;

/// The five namespaces of ASFF's `Types` taxonomy (`namespace/category/classifier`).
pub const TYPE_NAMESPACES: [&str; 5] = [
    "Software and Configuration Checks",
    "TTPs",
    "Effects",
    "Unusual Behaviors",
    "Sensitive Data Identifications",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsffError {
    #[error(
        "{arn:?} is not a Security Hub product ARN (arn:PARTITION:securityhub:REGION:ACCOUNT:product/ACCOUNT/default)"
    )]
    ProductArn { arn: String },
    #[error("finding {finding_id:?}: {reason}")]
    Finding { finding_id: String, reason: String },
}

/// Where the findings are imported: the custom integration's product, and the account
/// and partition it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsffProduct {
    pub product_arn: String,
    pub partition: String,
    pub region: String,
    /// The account that imports: the product ARN's.
    pub account_id: String,
}

impl AsffProduct {
    /// Parses `arn:PARTITION:securityhub:REGION:ACCOUNT:product/OWNER/NAME`.
    pub fn parse(product_arn: &str) -> Result<AsffProduct, AsffError> {
        let err = || AsffError::ProductArn {
            arn: product_arn.to_owned(),
        };
        let parts: Vec<&str> = product_arn.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(err());
        };
        let product = resource.strip_prefix("product/").ok_or_else(err)?;
        let valid = arn == "arn"
            && partition.starts_with("aws")
            && service == "securityhub"
            && !region.is_empty()
            && is_account_id(account)
            && product.split('/').count() == 2
            && product.split('/').all(|p| !p.is_empty());
        if !valid {
            return Err(err());
        }
        Ok(AsffProduct {
            product_arn: product_arn.to_owned(),
            partition: partition.to_owned(),
            region: region.to_owned(),
            account_id: account.to_owned(),
        })
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// One ASFF finding, serialized with ASFF's attribute names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffFinding {
    pub schema_version: String,
    pub id: String,
    pub product_arn: String,
    pub product_name: String,
    pub company_name: String,
    pub generator_id: String,
    pub aws_account_id: String,
    pub types: Vec<String>,
    pub first_observed_at: String,
    pub last_observed_at: String,
    pub created_at: String,
    pub updated_at: String,
    pub severity: AsffSeverity,
    pub title: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediation: Option<AsffRemediation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    pub product_fields: BTreeMap<String, String>,
    pub resources: Vec<AsffResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<AsffNetwork>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<AsffAction>,
    pub finding_provider_fields: AsffProviderFields,
    pub workflow: AsffWorkflow,
    pub record_state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffSeverity {
    /// `INFORMATIONAL`, `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`.
    pub label: String,
    /// geotrail's own word for it.
    pub original: String,
}

/// Security Hub ignores `Severity` and `Types` on an update from the provider; these are
/// what it takes instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffProviderFields {
    pub severity: AsffSeverity,
    pub types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffRemediation {
    pub recommendation: AsffRecommendation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffRecommendation {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffWorkflow {
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffResource {
    #[serde(rename = "Type")]
    pub kind: String,
    pub id: String,
    pub partition: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<AsffResourceDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffResourceDetails {
    pub aws_iam_access_key: AsffAccessKeyDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffAccessKeyDetails {
    pub access_key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffNetwork {
    /// `IN`: the caller reached AWS.
    pub direction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip_v4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip_v6: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffAction {
    /// `AWS_API_CALL`.
    pub action_type: String,
    pub aws_api_call_action: AsffApiCall,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffApiCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// `remoteip`: a call from an address, not a domain.
    pub caller_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip_details: Option<AsffRemoteIp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffRemoteIp {
    /// ASFF has no IPv6 field here: an IPv6 caller is in `Network.SourceIpV6` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address_v4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<AsffCity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<AsffCountry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_location: Option<AsffGeoLocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<AsffOrganization>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffCity {
    pub city_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffCountry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffGeoLocation {
    pub lon: f64,
    pub lat: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffOrganization {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn_org: Option<String>,
}

impl AsffFinding {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an ASFF finding always serializes")
    }
}

/// ASFF's severity label for a geotrail severity.
pub fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "INFORMATIONAL",
        Severity::Low => "LOW",
        Severity::Medium => "MEDIUM",
        Severity::High => "HIGH",
        Severity::Critical => "CRITICAL",
    }
}

/// The finding's `Types`, in ASFF's `namespace/category/classifier` taxonomy.
pub fn types(finding: &Finding) -> Vec<String> {
    let mut types: Vec<&str> = match finding.rule {
        Rule::ImpossibleTravel => vec![
            "TTPs/Initial Access/Impossible Travel",
            "Unusual Behaviors/User/Impossible Travel",
        ],
        Rule::UnusualCityForCommand => {
            vec!["Unusual Behaviors/User/Unusual City For an AWS Command"]
        }
        Rule::UnusualErrorCode => vec!["Unusual Behaviors/User/Unusual Error Code"],
        Rule::LongTermAccessKeyAuth => vec![
            "Software and Configuration Checks/AWS Security Best Practices/Long-Term Access Key Use",
        ],
        // A record stamped after its object was written: a forged time hides a call from
        // rules that judge by time.
        Rule::FutureEventTime => vec!["TTPs/Defense Evasion/CloudTrail Record From the Future"],
    };
    let new_address = finding
        .long_term_access_key_auth
        .as_ref()
        .is_some_and(|a| a.new_address);
    if new_address {
        types.push("Unusual Behaviors/User/Long-Term Access Key From a New Address");
    }
    types.into_iter().map(str::to_owned).collect()
}

/// The finding as an ASFF finding of `product`, imported at `now_ms` (epoch ms).
///
/// `AwsAccountId` is the account the finding is about (the account called), unless that
/// is not the importing account: a custom integration may only import findings of its
/// own account (Security Hub refuses the others), so a finding about another account (an
/// organization trail, a role used across accounts) is imported under the product's
/// account, with the account called as an `AwsAccount` resource and in `ProductFields`.
pub fn to_asff(
    finding: &Finding,
    product: &AsffProduct,
    now_ms: i64,
) -> Result<AsffFinding, AsffError> {
    let refuse = |reason: String| AsffError::Finding {
        finding_id: finding.finding_id.clone(),
        reason,
    };
    if finding.finding_id.trim().is_empty() || utf16_len(&finding.finding_id) > MAX_ID {
        return Err(refuse(format!(
            "an ASFF Id must be 1 to {MAX_ID} characters"
        )));
    }
    let created_ms = parse_event_time(&finding.event_time).ok_or_else(|| {
        refuse(format!(
            "event_time {:?} is not an RFC 3339 time, and CreatedAt needs one",
            finding.event_time
        ))
    })?;
    let events = events(finding);
    // A record from the future carries a forged or broken time: the object's own time
    // bounds the finding instead (as in the OCSF rendering).
    let seen: Vec<i64> = match finding.rule {
        Rule::FutureEventTime => vec![created_ms],
        _ => events.iter().filter_map(|e| e.time_ms).collect(),
    };
    let first_seen = seen.iter().copied().min().unwrap_or(created_ms);
    let last_seen = seen.iter().copied().max().unwrap_or(created_ms);

    let called = finding
        .account_id
        .as_deref()
        .filter(|a| !a.trim().is_empty());
    let foreign_account = called.filter(|a| *a != product.account_id);

    let severity = AsffSeverity {
        label: severity_label(finding.severity).to_owned(),
        original: finding.severity.as_str().to_owned(),
    };
    let types = types(finding);
    let title = fit_or(&finding.title, finding.rule.as_str(), MAX_TITLE);
    let description = fit_or(&finding.summary, &title, MAX_DESCRIPTION);
    // The event that completed the finding: its region names the resource's.
    let trigger = events.last();
    let region = trigger
        .map(|e| e.region)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);

    let mut resources = credential_resources(finding, product, region.as_deref());
    if let Some(account) = foreign_account {
        resources.push(AsffResource {
            kind: "AwsAccount".to_owned(),
            id: format!("AWS::::Account:{account}"),
            partition: product.partition.clone(),
            region: None,
            details: None,
        });
    }
    resources.truncate(MAX_RESOURCES);

    let (network, action) = match trigger {
        Some(e) => (e.network(), Some(e.action(first_seen, last_seen))),
        None => (None, None),
    };
    let source_url = region.as_deref().and_then(|r| {
        let key = match finding.subject_kind {
            SubjectKind::AccessKey => Some(finding.subject.as_str()),
            SubjectKind::Principal => finding.user_identity.access_key_id.as_deref(),
        }?;
        cloudtrail_history_url(r, key)
    });
    let remediation = (!finding.triage.is_empty()).then(|| {
        let steps: Vec<String> = finding
            .triage
            .iter()
            .enumerate()
            .map(|(i, step)| format!("{}. {step}", i + 1))
            .collect();
        AsffRemediation {
            recommendation: AsffRecommendation {
                text: fit(&steps.join(" "), MAX_RECOMMENDATION),
            },
        }
    });

    let asff = AsffFinding {
        schema_version: SCHEMA_VERSION.to_owned(),
        id: finding.finding_id.clone(),
        product_arn: product.product_arn.clone(),
        product_name: "geotrail".to_owned(),
        company_name: "geotrail".to_owned(),
        generator_id: format!("geotrail/{}", finding.rule.as_str()),
        aws_account_id: match called {
            Some(a) if foreign_account.is_none() => a.to_owned(),
            _ => product.account_id.clone(),
        },
        types: types.clone(),
        first_observed_at: format_rfc3339_ms(first_seen),
        last_observed_at: format_rfc3339_ms(last_seen),
        created_at: format_rfc3339_ms(created_ms),
        // Never before CreatedAt, whatever the clocks say.
        updated_at: format_rfc3339_ms(now_ms.max(created_ms)),
        severity: severity.clone(),
        title,
        description,
        remediation,
        source_url,
        product_fields: product_fields(finding),
        resources,
        network,
        action,
        finding_provider_fields: AsffProviderFields { severity, types },
        workflow: AsffWorkflow {
            status: "NEW".to_owned(),
        },
        record_state: "ACTIVE".to_owned(),
    };
    let bytes = asff.to_json().len();
    if bytes > MAX_FINDING_BYTES {
        return Err(refuse(format!(
            "its ASFF is {bytes} bytes, over Security Hub's {MAX_FINDING_BYTES}-byte limit"
        )));
    }
    Ok(asff)
}

/// The credential: the access key (with its principal) when the subject is a key, else
/// the principal; and the other of the two when the event names it.
fn credential_resources(
    finding: &Finding,
    product: &AsffProduct,
    region: Option<&str>,
) -> Vec<AsffResource> {
    let id = &finding.user_identity;
    let key_resource = |key: &str| AsffResource {
        kind: "AwsIamAccessKey".to_owned(),
        id: key.to_owned(),
        partition: product.partition.clone(),
        region: region.map(str::to_owned),
        details: Some(AsffResourceDetails {
            aws_iam_access_key: AsffAccessKeyDetails {
                access_key_id: key.to_owned(),
                account_id: id
                    .account_id
                    .clone()
                    .or_else(|| finding.credential_account_id.clone()),
                principal_name: id.user_name.clone().or_else(|| id.session_name.clone()),
                principal_type: id.identity_type.clone(),
            },
        }),
    };
    let principal_resource = |arn: &str| AsffResource {
        // IAM users have a resource type of their own; role sessions, federated users
        // and the root user do not.
        kind: if arn.starts_with("arn:") && arn.contains(":user/") {
            "AwsIamUser"
        } else {
            "Other"
        }
        .to_owned(),
        id: arn.to_owned(),
        partition: product.partition.clone(),
        region: None,
        details: None,
    };
    let mut resources = Vec::new();
    match finding.subject_kind {
        SubjectKind::AccessKey => {
            resources.push(key_resource(&finding.subject));
            if let Some(arn) = id.arn.as_deref().filter(|a| !a.is_empty()) {
                resources.push(principal_resource(arn));
            }
        }
        SubjectKind::Principal => {
            resources.push(principal_resource(&finding.subject));
            if let Some(key) = id.access_key_id.as_deref().filter(|k| !k.is_empty()) {
                resources.push(key_resource(key));
            }
        }
    }
    resources
}

/// What identifies the finding here, and the rule's evidence ASFF has no attribute for.
fn product_fields(finding: &Finding) -> BTreeMap<String, String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut add = |key: &str, value: String| {
        if !value.is_empty() {
            fields.push((format!("geotrail/{key}"), value));
        }
    };
    add("rule", finding.rule.as_str().to_owned());
    add("finding_id", finding.finding_id.clone());
    add("severity", finding.severity.as_str().to_owned());
    add("subject", finding.subject.clone());
    add("subject_kind", finding.subject_kind.as_str().to_owned());
    add("event_time", finding.event_time.clone());
    add("source_object", finding.source_object.clone());
    add("account_id", finding.account_id.clone().unwrap_or_default());
    add(
        "credential_account_id",
        finding.credential_account_id.clone().unwrap_or_default(),
    );
    add(
        "principal_arn",
        finding.user_identity.arn.clone().unwrap_or_default(),
    );
    add(
        "geoip_database",
        format!(
            "{} (built {})",
            finding.geoip.database_type,
            format_rfc3339_ms(finding.geoip.build_epoch as i64 * 1000)
        ),
    );
    if let Some(travel) = &finding.impossible_travel {
        let t = &travel.triggering_locations;
        for (end, e) in [("from", &t.first_location), ("to", &t.second_location)] {
            add(&format!("{end}/ip"), e.ip.clone());
            add(&format!("{end}/place"), e.display_place());
            add(&format!("{end}/event_time"), e.event_time.clone());
            add(
                &format!("{end}/event"),
                format!("{} {}", e.event_source, e.event_name),
            );
            add(&format!("{end}/event_id"), e.event_id.clone());
        }
        add("distance_km", format!("{:.0}", travel.travel_distance));
        add(
            "effective_distance_km",
            format!("{:.0}", travel.effective_distance_km),
        );
        add("travel_time", travel.travel_time_human_readable.clone());
        add(
            "speed_kmh",
            travel
                .speed_kmh
                .map_or("infinite".to_owned(), |s| format!("{s:.0}")),
        );
        add("concurrent_use", travel.concurrent_use.to_string());
    }
    if let Some(city) = &finding.unusual_city_for_command {
        add("place", city.place.name.clone());
        add("calls", calls(&city.calls));
        add("lookback_days", city.lookback_days.to_string());
    }
    if let Some(error) = &finding.unusual_error_code {
        add("error_code", error.error_code.clone());
        add("calls", calls(&error.calls));
        add("seen_before", error.seen_before.to_string());
        add("days_seen", error.days_seen.to_string());
        add("lookback_days", error.lookback_days.to_string());
    }
    if let Some(auth) = &finding.long_term_access_key_auth {
        add("source_ip", auth.source_ip_address.clone());
        add("place", auth.place.clone().unwrap_or_default());
        add("new_address", auth.new_address.to_string());
        add("known_addresses", auth.known_addresses.join(", "));
        add("calls_in_window", auth.calls_in_window.to_string());
    }
    if let Some(future) = &finding.future_event_time {
        add("object_written_at", future.object_written_at.clone());
        add("future_records", future.count.to_string());
        add(
            "future_event_times",
            future
                .events
                .iter()
                .map(|e| e.event_time.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    fields
        .into_iter()
        .take(MAX_PRODUCT_FIELDS)
        .map(|(k, v)| {
            (
                fit(&k, MAX_PRODUCT_FIELD_KEY),
                fit(&v, MAX_PRODUCT_FIELD_VALUE),
            )
        })
        .collect()
}

fn calls(calls: &[CallRef]) -> String {
    calls
        .iter()
        .map(|c| format!("{} {} at {}", c.event_source, c.event_name, c.event_time))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One event the finding names, with what ASFF can say of its caller.
struct Event<'a> {
    time_ms: Option<i64>,
    time: &'a str,
    name: &'a str,
    source: &'a str,
    region: &'a str,
    ip: &'a str,
    place: Option<&'a TravelEndpoint>,
    city: Option<&'a PlaceRef>,
}

impl Event<'_> {
    fn addr(&self) -> Option<IpAddr> {
        self.ip.parse().ok()
    }

    fn network(&self) -> Option<AsffNetwork> {
        let addr = self.addr()?;
        Some(AsffNetwork {
            direction: "IN".to_owned(),
            source_ip_v4: addr.is_ipv4().then(|| self.ip.to_owned()),
            source_ip_v6: addr.is_ipv6().then(|| self.ip.to_owned()),
        })
    }

    fn action(&self, first_seen: i64, last_seen: i64) -> AsffAction {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        AsffAction {
            action_type: "AWS_API_CALL".to_owned(),
            aws_api_call_action: AsffApiCall {
                api: non_empty(self.name),
                service_name: non_empty(self.source),
                caller_type: "remoteip".to_owned(),
                remote_ip_details: self.remote_ip(),
                first_seen: Some(format_rfc3339_ms(first_seen)),
                last_seen: Some(format_rfc3339_ms(last_seen)),
            },
        }
    }

    fn remote_ip(&self) -> Option<AsffRemoteIp> {
        let (city, country_code, country, lat, lon, asn, as_org) = match (self.place, self.city) {
            (Some(e), _) => (
                e.city.as_deref(),
                e.country_code.as_deref(),
                e.country.as_deref(),
                e.latitude,
                e.longitude,
                e.asn,
                e.as_org.as_deref(),
            ),
            (None, Some(p)) => (
                p.city.as_deref(),
                p.country_code.as_deref(),
                p.country.as_deref(),
                p.latitude,
                p.longitude,
                p.asn,
                p.as_org.as_deref(),
            ),
            (None, None) => {
                return self.addr().filter(IpAddr::is_ipv4).map(|_| AsffRemoteIp {
                    ip_address_v4: Some(self.ip.to_owned()),
                    city: None,
                    country: None,
                    geo_location: None,
                    organization: None,
                })
            }
        };
        let located = city.is_some() || country_code.is_some() || country.is_some();
        Some(AsffRemoteIp {
            ip_address_v4: self
                .addr()
                .filter(IpAddr::is_ipv4)
                .map(|_| self.ip.to_owned()),
            city: city.map(|c| AsffCity {
                city_name: c.to_owned(),
            }),
            country: (country_code.is_some() || country.is_some()).then(|| AsffCountry {
                country_code: country_code.map(str::to_owned),
                country_name: country.map(str::to_owned),
            }),
            // Coordinates of a place the database could not name are no location.
            geo_location: located.then_some(AsffGeoLocation { lon, lat }),
            organization: (asn.is_some() || as_org.is_some()).then(|| AsffOrganization {
                asn: asn.and_then(|n| i32::try_from(n).ok()),
                asn_org: as_org.map(str::to_owned),
            }),
        })
    }
}

fn call<'a>(c: &'a CallRef, city: Option<&'a PlaceRef>) -> Event<'a> {
    Event {
        time_ms: parse_event_time(&c.event_time),
        time: &c.event_time,
        name: &c.event_name,
        source: &c.event_source,
        region: &c.aws_region,
        ip: &c.source_ip_address,
        place: None,
        city,
    }
}

/// The events the rule's block names, in its order (event time).
fn events(finding: &Finding) -> Vec<Event<'_>> {
    let mut events = Vec::new();
    if let Some(travel) = &finding.impossible_travel {
        let t = &travel.triggering_locations;
        for e in [&t.first_location, &t.second_location] {
            events.push(Event {
                time_ms: parse_event_time(&e.event_time),
                time: &e.event_time,
                name: &e.event_name,
                source: &e.event_source,
                region: &e.aws_region,
                ip: &e.ip,
                place: Some(e),
                city: None,
            });
        }
    }
    if let Some(city) = &finding.unusual_city_for_command {
        events.extend(city.calls.iter().map(|c| call(c, Some(&city.place))));
    }
    if let Some(error) = &finding.unusual_error_code {
        events.extend(error.calls.iter().map(|c| call(c, None)));
    }
    if let Some(auth) = &finding.long_term_access_key_auth {
        events.extend(auth.calls.iter().map(|c| call(c, None)));
    }
    if let Some(future) = &finding.future_event_time {
        events.extend(future.events.iter().map(|e| Event {
            time_ms: parse_event_time(&e.event_time),
            time: &e.event_time,
            name: &e.event_name,
            source: &e.event_source,
            region: &e.aws_region,
            ip: &e.source_ip_address,
            place: None,
            city: None,
        }));
    }
    events.retain(|e| !e.time.is_empty() || !e.name.is_empty());
    events
}

/// Length as UTF-16 code units.
fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// `text` cut to `max` UTF-16 code units on a character boundary, ending in `…` when cut.
pub fn fit(text: &str, max: usize) -> String {
    if utf16_len(text) <= max {
        return text.to_owned();
    }
    let budget = max.saturating_sub('…'.len_utf16());
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        if used + c.len_utf16() > budget {
            break;
        }
        used += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

/// [`fit`], or `fallback` when `text` is blank: the attribute is required non-empty.
fn fit_or(text: &str, fallback: &str, max: usize) -> String {
    if text.trim().is_empty() {
        fit(fallback, max)
    } else {
        fit(text, max)
    }
}

#[cfg(test)]
mod tests {
    //! The required top-level attributes are those of AWS's "Required top-level ASFF
    //! attributes" (Security Hub user guide): AwsAccountId, CreatedAt, Description,
    //! GeneratorId, Id, ProductArn, Resources (each with Type and Id), SchemaVersion,
    //! Severity (with Label), Title, Types, UpdatedAt. The limits are the
    //! `AwsSecurityFinding` API reference's.

    use serde_json::{json, Value};

    use super::*;
    use crate::finding::render::samples::{
        key_auth_finding, one_finding_per_rule, sample_finding, unusual_city_finding,
    };

    const PRODUCT_ARN: &str =
        "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default";
    /// 2023-07-11T00:00:00Z: after every sample's events.
    const NOW: i64 = 1_689_033_600_000;

    const REQUIRED: [&str; 12] = [
        "AwsAccountId",
        "CreatedAt",
        "Description",
        "GeneratorId",
        "Id",
        "ProductArn",
        "Resources",
        "SchemaVersion",
        "Severity",
        "Title",
        "Types",
        "UpdatedAt",
    ];
    const LABELS: [&str; 5] = ["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"];

    fn product() -> AsffProduct {
        AsffProduct::parse(PRODUCT_ARN).expect("a product ARN")
    }

    fn asff(f: &Finding) -> Value {
        serde_json::from_str(&to_asff(f, &product(), NOW).expect("maps").to_json()).unwrap()
    }

    fn len(v: &Value) -> usize {
        v.as_str().map_or(0, utf16_len)
    }

    /// Every way `v` breaks ASFF's required attributes and limits.
    fn violations(v: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        for name in REQUIRED {
            let empty = match &v[name] {
                Value::Null => true,
                Value::String(s) => s.trim().is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                _ => false,
            };
            if empty {
                errors.push(format!("{name}: required, missing or empty"));
            }
        }
        if v["SchemaVersion"] != SCHEMA_VERSION {
            errors.push(format!("SchemaVersion {}", v["SchemaVersion"]));
        }
        if !v["AwsAccountId"].as_str().is_some_and(is_account_id) {
            errors.push(format!("AwsAccountId {}", v["AwsAccountId"]));
        }
        if !v["Severity"]["Label"]
            .as_str()
            .is_some_and(|l| LABELS.contains(&l))
        {
            errors.push(format!("Severity.Label {}", v["Severity"]["Label"]));
        }
        for (name, max) in [
            ("Title", MAX_TITLE),
            ("Description", MAX_DESCRIPTION),
            ("Id", MAX_ID),
            ("GeneratorId", MAX_ID),
        ] {
            if len(&v[name]) > max {
                errors.push(format!("{name}: {} characters, over {max}", len(&v[name])));
            }
        }
        for name in [
            "CreatedAt",
            "UpdatedAt",
            "FirstObservedAt",
            "LastObservedAt",
        ] {
            if let Some(t) = v.get(name) {
                if t.as_str().and_then(parse_event_time).is_none() {
                    errors.push(format!("{name}: not an RFC 3339 time: {t}"));
                }
            }
        }
        let types = v["Types"].as_array().cloned().unwrap_or_default();
        if types.len() > 50 {
            errors.push(format!("Types: {} of at most 50", types.len()));
        }
        for t in &types {
            let parts: Vec<&str> = t.as_str().unwrap_or("").split('/').collect();
            if !(2..=3).contains(&parts.len())
                || !TYPE_NAMESPACES.contains(&parts[0])
                || parts.iter().any(|p| p.is_empty())
            {
                errors.push(format!("Types: {t} is not namespace/category[/classifier]"));
            }
        }
        let resources = v["Resources"].as_array().cloned().unwrap_or_default();
        if resources.len() > MAX_RESOURCES {
            errors.push(format!(
                "Resources: {} of at most {MAX_RESOURCES}",
                resources.len()
            ));
        }
        for (i, r) in resources.iter().enumerate() {
            for name in ["Type", "Id"] {
                if r[name].as_str().is_none_or(|s| s.trim().is_empty()) {
                    errors.push(format!("Resources[{i}].{name}: required, missing or empty"));
                }
            }
        }
        if let Some(fields) = v["ProductFields"].as_object() {
            if fields.len() > MAX_PRODUCT_FIELDS {
                errors.push(format!("ProductFields: {} pairs", fields.len()));
            }
            for (k, val) in fields {
                if utf16_len(k) > MAX_PRODUCT_FIELD_KEY || len(val) > MAX_PRODUCT_FIELD_VALUE {
                    errors.push(format!("ProductFields.{k}: too long"));
                }
            }
        }
        errors
    }

    #[test]
    fn every_rules_finding_has_asffs_required_attributes_within_its_limits() {
        let findings = one_finding_per_rule();
        let rules: Vec<Rule> = findings.iter().map(|f| f.rule).collect();
        assert_eq!(rules, Rule::ALL, "one sample per rule");
        for f in &findings {
            let v = asff(f);
            let errors = violations(&v);
            assert!(errors.is_empty(), "{}: {errors:#?}\n{v:#}", f.rule);
            assert_eq!(v["Id"], f.finding_id.as_str(), "{}", f.rule);
            assert_eq!(v["ProductArn"], PRODUCT_ARN);
            assert_eq!(v["GeneratorId"], format!("geotrail/{}", f.rule));
            assert_eq!(v["AwsAccountId"], "123456789012");
            assert_eq!(v["Title"], f.title.as_str());
            assert_eq!(v["Description"], f.summary.as_str());
            assert_eq!(v["Severity"]["Label"], severity_label(f.severity));
            assert_eq!(v["Severity"]["Original"], f.severity.as_str());
            assert_eq!(v["FindingProviderFields"]["Severity"], v["Severity"]);
            assert_eq!(v["FindingProviderFields"]["Types"], v["Types"]);
            assert_eq!(v["RecordState"], "ACTIVE");
            assert_eq!(v["Workflow"]["Status"], "NEW");
            assert_eq!(v["ProductFields"]["geotrail/rule"], f.rule.as_str());
            assert_eq!(
                v["ProductFields"]["geotrail/finding_id"],
                f.finding_id.as_str()
            );
            // The subject first, the other half of the credential after it.
            let (key, user) = match f.subject_kind {
                SubjectKind::AccessKey => (&v["Resources"][0], &v["Resources"][1]),
                SubjectKind::Principal => (&v["Resources"][1], &v["Resources"][0]),
            };
            assert_eq!(key["Type"], "AwsIamAccessKey", "{}", f.rule);
            assert_eq!(key["Id"], "AKIAIOSFODNN7EXAMPLE");
            assert_eq!(key["Details"]["AwsIamAccessKey"]["PrincipalName"], "alice");
            assert_eq!(user["Type"], "AwsIamUser", "{}", f.rule);
            assert_eq!(user["Id"], "arn:aws:iam::123456789012:user/alice");
            assert_eq!(v["Action"]["ActionType"], "AWS_API_CALL", "{}", f.rule);
            assert!(
                v["FirstObservedAt"].as_str() <= v["LastObservedAt"].as_str(),
                "{}: {v:#}",
                f.rule
            );
        }
    }

    #[test]
    fn the_check_fails_without_each_required_attribute() {
        // Each required attribute removed in turn must be reported: the check above
        // cannot pass a finding that lacks one.
        let mut checked = 0;
        for f in one_finding_per_rule() {
            let v = asff(&f);
            let mut paths: Vec<Vec<String>> =
                REQUIRED.iter().map(|n| vec![(*n).to_owned()]).collect();
            paths.push(vec!["Severity".into(), "Label".into()]);
            for i in 0..v["Resources"].as_array().unwrap().len() {
                for name in ["Type", "Id"] {
                    paths.push(vec!["Resources".into(), i.to_string(), name.into()]);
                }
            }
            for path in paths {
                let mut broken = v.clone();
                let (last, parents) = path.split_last().unwrap();
                let mut at = &mut broken;
                for p in parents {
                    at = match p.parse::<usize>() {
                        Ok(i) => &mut at[i],
                        Err(_) => &mut at[p.as_str()],
                    };
                }
                assert!(
                    at.as_object_mut().unwrap().remove(last).is_some(),
                    "{path:?}"
                );
                assert!(
                    !violations(&broken).is_empty(),
                    "{}: without {} the finding still passed",
                    f.rule,
                    path.join(".")
                );
                checked += 1;
            }
        }
        assert!(checked >= 5 * (12 + 1 + 4), "{checked}");
        let mut long = asff(&sample_finding());
        long["Title"] = json!("x".repeat(MAX_TITLE + 1));
        assert!(!violations(&long).is_empty(), "a title over the limit");
    }

    #[test]
    fn title_and_description_are_cut_on_character_boundaries_within_the_limits() {
        let mut f = sample_finding();
        // Two-byte, three-byte and four-byte (two UTF-16 units) characters.
        f.title = "é€🙂".repeat(200);
        f.summary = "Ä🙂z".repeat(1000);
        let a = to_asff(&f, &product(), NOW).unwrap();
        assert!(utf16_len(&a.title) <= MAX_TITLE, "{}", utf16_len(&a.title));
        assert!(utf16_len(&a.description) <= MAX_DESCRIPTION);
        assert!(a.title.ends_with('…') && a.description.ends_with('…'));
        assert!(a.title.starts_with("é€🙂é€🙂"));
        // Nothing is cut that fits.
        assert!(utf16_len(&a.title) >= MAX_TITLE - 3);
        assert_eq!(fit("short", 10), "short");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("ab🙂", 3), "ab…");

        f.summary = "  ".to_owned();
        let a = to_asff(&f, &product(), NOW).unwrap();
        assert_eq!(
            a.description, a.title,
            "a blank summary falls back to the title"
        );
    }

    #[test]
    fn severities_map_to_asff_labels() {
        let cases = [
            (Severity::Info, "INFORMATIONAL"),
            (Severity::Low, "LOW"),
            (Severity::Medium, "MEDIUM"),
            (Severity::High, "HIGH"),
            (Severity::Critical, "CRITICAL"),
        ];
        for (severity, label) in cases {
            let mut f = sample_finding();
            f.severity = severity;
            assert_eq!(asff(&f)["Severity"]["Label"], label, "{severity}");
        }
    }

    #[test]
    fn impossible_travel_puts_the_later_call_and_its_place_in_the_action() {
        let mut f = sample_finding();
        if let Some(t) = &mut f.impossible_travel {
            t.triggering_locations.second_location.latitude = 50.1155;
            t.triggering_locations.second_location.longitude = 8.6842;
        }
        let v = asff(&f);
        let call = &v["Action"]["AwsApiCallAction"];
        assert_eq!(call["Api"], "DescribeInstances");
        assert_eq!(call["ServiceName"], "ec2.amazonaws.com");
        assert_eq!(call["CallerType"], "remoteip");
        assert_eq!(call["FirstSeen"], "2023-07-10T10:00:00Z");
        assert_eq!(call["LastSeen"], "2023-07-10T11:00:00Z");
        let ip = &call["RemoteIpDetails"];
        assert_eq!(ip["IpAddressV4"], "198.51.100.7");
        assert_eq!(ip["City"]["CityName"], "Frankfurt am Main");
        assert_eq!(ip["Country"]["CountryCode"], "DE");
        assert_eq!(ip["Country"]["CountryName"], "Germany");
        assert_eq!(ip["GeoLocation"], json!({ "Lon": 8.6842, "Lat": 50.1155 }));
        assert_eq!(
            ip["Organization"],
            json!({ "Asn": 64_500, "AsnOrg": "Example Net" })
        );
        assert_eq!(
            v["Network"],
            json!({ "Direction": "IN", "SourceIpV4": "198.51.100.7" })
        );
        assert_eq!(v["FirstObservedAt"], "2023-07-10T10:00:00Z");
        assert_eq!(v["LastObservedAt"], "2023-07-10T11:00:00Z");
        assert_eq!(v["CreatedAt"], "2023-07-10T11:00:00Z");
        assert_eq!(v["UpdatedAt"], "2023-07-11T00:00:00Z");
        assert_eq!(v["Resources"][0]["Region"], "eu-central-1");
        assert_eq!(v["Resources"][0]["Partition"], "aws");
        let fields = &v["ProductFields"];
        assert_eq!(fields["geotrail/from/ip"], "203.0.113.10");
        assert_eq!(fields["geotrail/from/place"], "Sydney, Australia");
        assert_eq!(fields["geotrail/to/ip"], "198.51.100.7");
        assert_eq!(fields["geotrail/effective_distance_km"], "16440");
        assert_eq!(
            v["Types"],
            json!([
                "TTPs/Initial Access/Impossible Travel",
                "Unusual Behaviors/User/Impossible Travel"
            ])
        );
        assert!(v["SourceUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://eu-central-1.console.aws.amazon.com/cloudtrailv2/"));
        assert!(v["Remediation"]["Recommendation"]["Text"]
            .as_str()
            .unwrap()
            .starts_with("1. Confirm with the owner"));
    }

    #[test]
    fn an_ipv6_caller_is_in_the_network_only() {
        let mut f = sample_finding();
        if let Some(t) = &mut f.impossible_travel {
            t.triggering_locations.second_location.ip = "2001:db8::7".to_owned();
        }
        let v = asff(&f);
        assert_eq!(v["Network"]["SourceIpV6"], "2001:db8::7");
        assert!(v["Network"].get("SourceIpV4").is_none());
        let ip = &v["Action"]["AwsApiCallAction"]["RemoteIpDetails"];
        assert!(ip.get("IpAddressV4").is_none());
        assert_eq!(ip["City"]["CityName"], "Frankfurt am Main");
    }

    #[test]
    fn a_finding_about_another_account_is_imported_under_the_products() {
        let mut f = sample_finding();
        f.account_id = Some("999999999999".to_owned());
        let v = asff(&f);
        assert!(violations(&v).is_empty(), "{:#?}", violations(&v));
        assert_eq!(v["AwsAccountId"], "123456789012");
        assert_eq!(v["ProductFields"]["geotrail/account_id"], "999999999999");
        let last = v["Resources"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            last,
            json!({ "Type": "AwsAccount", "Id": "AWS::::Account:999999999999", "Partition": "aws" })
        );

        f.account_id = None;
        let v = asff(&f);
        assert_eq!(v["AwsAccountId"], "123456789012");
        assert!(v["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["Type"] != "AwsAccount"));
    }

    #[test]
    fn the_rarity_rules_and_key_use_map_their_first_call() {
        let v = asff(&unusual_city_finding());
        let ip = &v["Action"]["AwsApiCallAction"]["RemoteIpDetails"];
        assert_eq!(ip["City"]["CityName"], "Frankfurt am Main");
        assert_eq!(ip["GeoLocation"], json!({ "Lon": 8.6842, "Lat": 50.1155 }));
        assert_eq!(
            v["ProductFields"]["geotrail/place"],
            "Frankfurt am Main, Germany"
        );

        let mut key = key_auth_finding();
        if let Some(a) = &mut key.long_term_access_key_auth {
            a.new_address = true;
        }
        let v = asff(&key);
        assert!(v["Types"].as_array().unwrap().contains(&json!(
            "Unusual Behaviors/User/Long-Term Access Key From a New Address"
        )));
        assert_eq!(v["ProductFields"]["geotrail/new_address"], "true");
    }

    #[test]
    fn bad_input_is_refused_naming_the_finding_or_the_arn() {
        let mut f = sample_finding();
        f.event_time = "yesterday".to_owned();
        let err = to_asff(&f, &product(), NOW).unwrap_err().to_string();
        assert!(
            err.contains(&f.finding_id) && err.contains("CreatedAt"),
            "{err}"
        );

        let mut f = sample_finding();
        f.finding_id = "x".repeat(MAX_ID + 1);
        assert!(to_asff(&f, &product(), NOW).is_err());

        for arn in [
            "",
            "arn:aws:sns:us-east-1:123456789012:topic",
            "arn:aws:securityhub:us-east-1:12345:product/12345/default",
            "arn:aws:securityhub:us-east-1:123456789012:hub/default",
            "arn:aws:securityhub::123456789012:product/123456789012/default",
        ] {
            let err = AsffProduct::parse(arn).expect_err(arn).to_string();
            assert!(err.contains(&format!("{arn:?}")), "{err}");
        }
        let p = AsffProduct::parse(
            "arn:aws-us-gov:securityhub:us-gov-west-1:123456789012:product/123456789012/default",
        )
        .unwrap();
        assert_eq!(
            (p.partition.as_str(), p.account_id.as_str()),
            ("aws-us-gov", "123456789012")
        );
    }
}
