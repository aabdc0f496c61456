//! A finding as an OCSF Detection Finding (class 2004, category 2 "Findings"), for the
//! security data lakes and SIEMs that ingest the Open Cybersecurity Schema Framework.
//! Pure: [`to_ocsf`] is a function of the finding, so a replay renders the same event.
//!
//! What OCSF has a place for goes there: every CloudTrail event a finding names is one
//! entry of `evidences` (who called what, from which address, placed where) and one of
//! `finding_info.related_events` (its event id, to join back to the trail); the credential
//! is the affected resource; addresses, the user and the access key are `observables`.
//! What OCSF has no place for (the distances and speeds of a journey, the baselines of
//! the rarity rules, the triage steps as a list) is the rule's own block, unchanged,
//! under `unmapped`.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::cloudtrail::parse_event_time;
use crate::detect::SubjectKind;
use crate::finding::{
    CallRef, Finding, FutureEvent, PlaceRef, Rule, Severity, TravelEndpoint, UserIdentitySummary,
};

/// The OCSF release the events follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.8.0";

const CLASS_UID: u64 = 2004;
const CATEGORY_UID: u64 = 2;
/// A finding is created once and never updated or closed by geotrail.
const ACTIVITY_CREATE: u64 = 1;

/// OCSF observable type ids (the `observable` numbers of the schema's dictionary and
/// objects).
const OBSERVABLE_IP_ADDRESS: u64 = 2;
const OBSERVABLE_USER_NAME: u64 = 4;
const OBSERVABLE_USER_CREDENTIAL_ID: u64 = 19;
const OBSERVABLE_USER_UID: u64 = 31;
const OBSERVABLE_ACCOUNT_UID: u64 = 35;

/// `account.type_id` 10: "AWS Account".
const ACCOUNT_AWS: u64 = 10;

/// The finding as one OCSF Detection Finding event.
pub fn to_ocsf(finding: &Finding) -> Value {
    let (severity_id, severity) = severity(finding.severity);
    // `event_time` is always written by `format_rfc3339_ms`; a finding read from
    // elsewhere with a broken time still gets the required `time`, at the epoch.
    let time = parse_event_time(&finding.event_time).unwrap_or_default();
    let events = evidence_events(finding);
    let user = user(&finding.user_identity);

    let evidences: Vec<Value> = events
        .iter()
        .map(|e| e.to_evidence(&user, &finding.geoip.database_type))
        .collect();
    let related_events: Vec<Value> = events.iter().filter_map(EvidenceEvent::related).collect();

    // A record from the future carries a forged or broken time: the object's own time
    // bounds the finding instead.
    let seen: Vec<i64> = match finding.rule {
        Rule::FutureEventTime => vec![time],
        _ => events.iter().filter_map(|e| e.time_ms).collect(),
    };
    let first_seen = seen.iter().copied().min().unwrap_or(time);
    let last_seen = seen.iter().copied().max().unwrap_or(time);

    let (analytic_type_id, analytic_type) = analytic_type(finding.rule);
    let mut finding_info = json!({
        "uid": finding.finding_id,
        "title": finding.title,
        "desc": finding.summary,
        "analytic": {
            "uid": finding.rule.as_str(),
            "name": finding.rule.as_str(),
            "type_id": analytic_type_id,
            "type": analytic_type,
        },
        "data_sources": ["AWS CloudTrail"],
        "first_seen_time": first_seen,
        "last_seen_time": last_seen,
    });
    if !related_events.is_empty() {
        finding_info["related_events"] = Value::Array(related_events);
    }

    let mut cloud = json!({ "provider": "AWS" });
    // The region of the latest event: the one that completed the finding.
    if let Some(region) = events.last().map(|e| e.region).filter(|r| !r.is_empty()) {
        cloud["region"] = json!(region);
    }
    if let Some(account) = &finding.account_id {
        cloud["account"] = aws_account(account);
    }

    let resource_type = match finding.subject_kind {
        SubjectKind::AccessKey => "AWS IAM access key",
        SubjectKind::Principal => "AWS IAM principal",
    };
    let mut event = json!({
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE,
        "type_name": "Detection Finding: Create",
        "severity_id": severity_id,
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "time": time,
        "message": finding.title,
        "is_alert": true,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "geotrail",
                "vendor_name": "geotrail",
                "version": env!("CARGO_PKG_VERSION"),
            },
            // `cloud` is an attribute of the cloud profile, which the event then declares.
            "profiles": ["cloud"],
            "uid": finding.finding_id,
            "original_time": finding.event_time,
        },
        "finding_info": finding_info,
        "cloud": cloud,
        "resources": [{
            "uid": finding.subject,
            "type": resource_type,
            "owner": user,
        }],
        "observables": observables(finding, &events),
        "unmapped": unmapped(finding),
    });
    if !evidences.is_empty() {
        event["evidences"] = Value::Array(evidences);
    }
    if !finding.triage.is_empty() {
        let steps: Vec<String> = finding
            .triage
            .iter()
            .enumerate()
            .map(|(i, step)| format!("{}. {step}", i + 1))
            .collect();
        event["remediation"] = json!({ "desc": steps.join("\n") });
    }
    event
}

/// OCSF's `severity_id` and its caption.
fn severity(severity: Severity) -> (u64, &'static str) {
    match severity {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// OCSF's `analytic.type_id` and its caption: how the rule decides.
fn analytic_type(rule: Rule) -> (u64, &'static str) {
    match rule {
        // Judged against the subject's own baseline places.
        Rule::ImpossibleTravel => (2, "Behavioral"),
        // Rare within the account's lookback: counts, not a fixed condition.
        Rule::UnusualCityForCommand | Rule::UnusualErrorCode => (3, "Statistical"),
        Rule::LongTermAccessKeyAuth | Rule::FutureEventTime => (1, "Rule"),
    }
}

fn aws_account(uid: &str) -> Value {
    json!({ "uid": uid, "type_id": ACCOUNT_AWS, "type": "AWS Account" })
}

/// CloudTrail's `userIdentity` as an OCSF user.
fn user(identity: &UserIdentitySummary) -> Value {
    let mut user = Map::new();
    if let Some(arn) = &identity.arn {
        user.insert("uid".into(), json!(arn));
    }
    // A role session has no user name; its session name is what names the person.
    if let Some(name) = identity
        .user_name
        .as_ref()
        .or(identity.session_name.as_ref())
    {
        user.insert("name".into(), json!(name));
    }
    let (type_id, type_name) = match identity.identity_type.as_deref() {
        Some("IAMUser") => (1, "User"),
        Some("Root") => (2, "Admin"),
        Some("AWSService") => (4, "Service"),
        // OCSF has no role sessions or federated users: "Other" keeps CloudTrail's word.
        Some(other) => (99, other),
        None => (0, "Unknown"),
    };
    user.insert("type_id".into(), json!(type_id));
    user.insert("type".into(), json!(type_name));
    if let Some(account) = &identity.account_id {
        user.insert("account".into(), aws_account(account));
    }
    if let Some(key) = &identity.access_key_id {
        // `credential_uid` is deprecated since OCSF 1.6 for `programmatic_credentials`,
        // but it is what readers of the earlier 1.x releases look for.
        user.insert("credential_uid".into(), json!(key));
        user.insert(
            "programmatic_credentials".into(),
            json!([{ "uid": key, "type": "AWS Access Key" }]),
        );
    }
    Value::Object(user)
}

/// One CloudTrail event a finding names, whichever block it came from.
struct EvidenceEvent<'a> {
    /// What the event is to the finding: `first_location`, `call`, ...
    role: &'static str,
    event_id: &'a str,
    event_time: &'a str,
    time_ms: Option<i64>,
    event_name: &'a str,
    event_source: &'a str,
    region: &'a str,
    source: &'a str,
    place: Option<Place<'a>>,
    /// A place name without its parts (the rarity rules' calls outside a city finding).
    place_name: Option<&'a str>,
    error: Option<(&'a str, Option<&'a str>)>,
    user_agent: Option<&'a str>,
    inferred: bool,
}

/// Where the GeoIP database placed an address.
struct Place<'a> {
    name: String,
    city: Option<&'a str>,
    country_code: Option<&'a str>,
    latitude: f64,
    longitude: f64,
    asn: Option<u32>,
    as_org: Option<&'a str>,
}

impl<'a> Place<'a> {
    fn of_endpoint(e: &'a TravelEndpoint) -> Place<'a> {
        Place {
            name: e.display_place(),
            city: e.city.as_deref(),
            country_code: e.country_code.as_deref(),
            latitude: e.latitude,
            longitude: e.longitude,
            asn: e.asn,
            as_org: e.as_org.as_deref(),
        }
    }

    fn of_place(p: &'a PlaceRef) -> Place<'a> {
        Place {
            name: p.name.clone(),
            city: p.city.as_deref(),
            country_code: p.country_code.as_deref(),
            latitude: p.latitude,
            longitude: p.longitude,
            asn: p.asn,
            as_org: p.as_org.as_deref(),
        }
    }

    /// OCSF's `location`, or `None` when it would name neither a city nor a country
    /// (the schema wants one of them).
    fn location(&self, provider: &str) -> Option<Value> {
        let mut location = Map::new();
        if let Some(city) = self.city {
            location.insert("city".into(), json!(city));
        }
        // OCSF's `country` is the ISO 3166-1 alpha-2 code, not the name.
        if let Some(code) = self.country_code {
            location.insert("country".into(), json!(code));
        }
        if location.is_empty() {
            return None;
        }
        location.insert("desc".into(), json!(self.name));
        location.insert("lat".into(), json!(self.latitude));
        location.insert("long".into(), json!(self.longitude));
        // GeoJSON order: longitude first.
        location.insert("coordinates".into(), json!([self.longitude, self.latitude]));
        if !provider.is_empty() {
            location.insert("provider".into(), json!(provider));
        }
        Some(Value::Object(location))
    }

    fn autonomous_system(&self) -> Option<Value> {
        let mut system = Map::new();
        if let Some(number) = self.asn {
            system.insert("number".into(), json!(number));
        }
        if let Some(name) = self.as_org {
            system.insert("name".into(), json!(name));
        }
        (!system.is_empty()).then_some(Value::Object(system))
    }
}

impl<'a> EvidenceEvent<'a> {
    fn of_endpoint(role: &'static str, e: &'a TravelEndpoint) -> EvidenceEvent<'a> {
        EvidenceEvent {
            role,
            event_id: &e.event_id,
            event_time: &e.event_time,
            time_ms: parse_event_time(&e.event_time),
            event_name: &e.event_name,
            event_source: &e.event_source,
            region: &e.aws_region,
            source: &e.ip,
            place: Some(Place::of_endpoint(e)),
            place_name: None,
            error: None,
            user_agent: None,
            inferred: e.inferred,
        }
    }

    fn of_call(c: &'a CallRef, place: Option<&'a PlaceRef>) -> EvidenceEvent<'a> {
        EvidenceEvent {
            role: "call",
            event_id: &c.event_id,
            event_time: &c.event_time,
            time_ms: parse_event_time(&c.event_time),
            event_name: &c.event_name,
            event_source: &c.event_source,
            region: &c.aws_region,
            source: &c.source_ip_address,
            place: place.map(Place::of_place),
            place_name: c.place.as_deref(),
            error: c
                .error_code
                .as_deref()
                .map(|code| (code, c.error_message.as_deref())),
            user_agent: c.user_agent.as_deref(),
            inferred: false,
        }
    }

    fn of_future(e: &'a FutureEvent) -> EvidenceEvent<'a> {
        EvidenceEvent {
            role: "future_event",
            event_id: &e.event_id,
            event_time: &e.event_time,
            time_ms: parse_event_time(&e.event_time),
            event_name: &e.event_name,
            event_source: &e.event_source,
            region: &e.aws_region,
            source: &e.source_ip_address,
            place: None,
            place_name: None,
            error: None,
            user_agent: None,
            inferred: false,
        }
    }

    /// The address, when CloudTrail's `sourceIPAddress` is one: for calls AWS services
    /// make on a caller's behalf it is the service's name instead.
    fn ip(&self) -> Option<&'a str> {
        self.source.parse::<IpAddr>().is_ok().then_some(self.source)
    }

    fn to_evidence(&self, user: &Value, provider: &str) -> Value {
        let mut evidence = json!({
            "name": self.role,
            "actor": { "user": user },
        });
        if !self.event_id.is_empty() {
            evidence["uid"] = json!(self.event_id);
        }
        if !self.event_name.is_empty() {
            let mut api = json!({
                "operation": self.event_name,
                "service": { "name": self.event_source },
            });
            if let Some((code, message)) = self.error {
                api["response"] = json!({ "error": code });
                if let Some(message) = message {
                    api["response"]["error_message"] = json!(message);
                }
            }
            evidence["api"] = api;
        }
        let mut endpoint = Map::new();
        match self.ip() {
            Some(ip) => {
                endpoint.insert("ip".into(), json!(ip));
            }
            None if !self.source.is_empty() => {
                endpoint.insert("name".into(), json!(self.source));
            }
            None => {}
        }
        if !endpoint.is_empty() {
            if let Some(place) = &self.place {
                if let Some(location) = place.location(provider) {
                    endpoint.insert("location".into(), location);
                }
                if let Some(system) = place.autonomous_system() {
                    endpoint.insert("autonomous_system".into(), system);
                }
            }
            evidence["src_endpoint"] = Value::Object(endpoint);
        }
        if let Some(agent) = self.user_agent {
            evidence["http_request"] = json!({ "user_agent": agent });
        }
        // What the evidence object has no attribute for.
        let mut data = json!({ "event_time": self.event_time, "aws_region": self.region });
        if let Some(name) = self.place_name {
            data["place"] = json!(name);
        }
        if self.inferred {
            data["inferred"] = json!(true);
        }
        evidence["data"] = data;
        evidence
    }

    /// The event as a related event of the finding; an inferred place has none.
    fn related(&self) -> Option<Value> {
        if self.event_id.is_empty() {
            return None;
        }
        let mut related = json!({
            "uid": self.event_id,
            "product": { "name": "CloudTrail", "vendor_name": "AWS" },
        });
        if !self.event_name.is_empty() {
            related["title"] = json!(format!("{} {}", self.event_source, self.event_name));
        }
        if let Some(t) = self.time_ms {
            related["first_seen_time"] = json!(t);
            related["last_seen_time"] = json!(t);
        }
        Some(related)
    }
}

/// The events the finding's rule block names, in its order (event time).
fn evidence_events(finding: &Finding) -> Vec<EvidenceEvent<'_>> {
    let mut events = Vec::new();
    if let Some(travel) = &finding.impossible_travel {
        let t = &travel.triggering_locations;
        events.push(EvidenceEvent::of_endpoint(
            "first_location",
            &t.first_location,
        ));
        events.push(EvidenceEvent::of_endpoint(
            "second_location",
            &t.second_location,
        ));
    }
    if let Some(city) = &finding.unusual_city_for_command {
        // Every call of the finding is from its city.
        events.extend(
            city.calls
                .iter()
                .map(|c| EvidenceEvent::of_call(c, Some(&city.place))),
        );
    }
    if let Some(error) = &finding.unusual_error_code {
        events.extend(error.calls.iter().map(|c| EvidenceEvent::of_call(c, None)));
    }
    if let Some(auth) = &finding.long_term_access_key_auth {
        events.extend(auth.calls.iter().map(|c| EvidenceEvent::of_call(c, None)));
    }
    if let Some(future) = &finding.future_event_time {
        events.extend(future.events.iter().map(EvidenceEvent::of_future));
    }
    events
}

/// The pivots: each address, the user, its ARN and access key, and the account called.
/// A value is listed once, named by the first attribute that holds it.
fn observables(finding: &Finding, events: &[EvidenceEvent<'_>]) -> Vec<Value> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut add = |type_id: u64, name: String, value: &str| {
        if seen.insert((type_id, value.to_owned())) {
            out.push(json!({ "type_id": type_id, "name": name, "value": value }));
        }
    };
    for (i, e) in events.iter().enumerate() {
        if let Some(ip) = e.ip() {
            add(
                OBSERVABLE_IP_ADDRESS,
                format!("evidences[{i}].src_endpoint.ip"),
                ip,
            );
        }
    }
    let id = &finding.user_identity;
    if let Some(name) = id.user_name.as_ref().or(id.session_name.as_ref()) {
        add(
            OBSERVABLE_USER_NAME,
            "resources[0].owner.name".to_owned(),
            name,
        );
    }
    if let Some(arn) = &id.arn {
        add(
            OBSERVABLE_USER_UID,
            "resources[0].owner.uid".to_owned(),
            arn,
        );
    }
    if let Some(key) = &id.access_key_id {
        add(
            OBSERVABLE_USER_CREDENTIAL_ID,
            "resources[0].owner.credential_uid".to_owned(),
            key,
        );
    }
    if let Some(account) = &finding.account_id {
        add(
            OBSERVABLE_ACCOUNT_UID,
            "cloud.account.uid".to_owned(),
            account,
        );
    }
    out
}

/// geotrail's own data: what identifies the finding here, and the rule's block whole.
fn unmapped(finding: &Finding) -> Value {
    let mut unmapped = json!({
        "rule": finding.rule.as_str(),
        "subject": finding.subject,
        "subject_kind": finding.subject_kind.as_str(),
        "source_object": finding.source_object,
        "triage": finding.triage,
        "geoip": finding.geoip,
        "user_identity": finding.user_identity,
    });
    if !finding.references.is_empty() {
        unmapped["references"] = json!(finding.references);
    }
    if let Some(owner) = &finding.credential_account_id {
        unmapped["credential_account_id"] = json!(owner);
    }
    let block = match finding.rule {
        Rule::ImpossibleTravel => serde_json::to_value(&finding.impossible_travel),
        Rule::UnusualCityForCommand => serde_json::to_value(&finding.unusual_city_for_command),
        Rule::UnusualErrorCode => serde_json::to_value(&finding.unusual_error_code),
        Rule::LongTermAccessKeyAuth => serde_json::to_value(&finding.long_term_access_key_auth),
        Rule::FutureEventTime => serde_json::to_value(&finding.future_event_time),
    }
    .expect("a finding's block always serializes");
    if !block.is_null() {
        unmapped[finding.rule.as_str()] = block;
    }
    unmapped
}

#[cfg(test)]
mod tests {
    //! The events checked against the OCSF 1.8.0 schema, as published in the
    //! `ocsf/ocsf-schema` repository at tag `1.8.0`: each object's attributes below are
    //! those of its file (named above it, with the files it extends), with the type of the
    //! schema's `dictionary.json` (or the object's own) and its `"requirement":
    //! "required"`; `at_least_one` is the object's `constraints`. Only the attributes
    //! geotrail writes are listed besides the required ones, and an attribute not listed
    //! fails the check: a misspelt or misplaced attribute is caught too.

    use super::*;
    use crate::finding::render::samples::{
        future_event_finding, one_finding_per_rule, sample_finding, unusual_city_finding,
        unusual_error_finding,
    };

    #[derive(Debug, Clone, Copy)]
    enum Ty {
        Str,
        /// `integer_t`, `long_t` and `timestamp_t` (epoch milliseconds).
        Int,
        Float,
        Bool,
        /// `ip_t`: a string that is an IPv4 or IPv6 address.
        Ip,
        /// `json_t` and the `object` type of `unmapped`: anything.
        Json,
        Obj(&'static str),
    }
    use Ty::*;

    struct ObjectDef {
        name: &'static str,
        /// (name, type, is an array, required)
        attrs: &'static [(&'static str, Ty, bool, bool)],
        at_least_one: &'static [&'static str],
    }

    #[rustfmt::skip]
    const SCHEMA: &[ObjectDef] = &[
        // events/base_event.json, events/findings/finding.json, events/findings/detection_finding.json, profiles/cloud.json
        ObjectDef { name: "detection_finding", attrs: &[
            ("activity_id", Int, false, true),
            ("activity_name", Str, false, false),
            ("category_name", Str, false, false),
            ("category_uid", Int, false, true),
            ("class_name", Str, false, false),
            ("class_uid", Int, false, true),
            // Required by the cloud profile, which the event declares in `metadata.profiles`.
            ("cloud", Obj("cloud"), false, true),
            ("evidences", Obj("evidences"), true, false),
            ("finding_info", Obj("finding_info"), false, true),
            ("is_alert", Bool, false, false),
            ("message", Str, false, false),
            ("metadata", Obj("metadata"), false, true),
            ("observables", Obj("observable"), true, false),
            ("remediation", Obj("remediation"), false, false),
            ("resources", Obj("resource_details"), true, false),
            ("severity", Str, false, false),
            ("severity_id", Int, false, true),
            ("status", Str, false, false),
            ("status_id", Int, false, false),
            ("time", Int, false, true),
            ("type_name", Str, false, false),
            ("type_uid", Int, false, true),
            ("unmapped", Json, false, false),
        ], at_least_one: &[] },
        // objects/metadata.json <- objects/object.json
        ObjectDef { name: "metadata", attrs: &[
            ("original_time", Str, false, false),
            ("product", Obj("product"), false, true),
            ("profiles", Str, true, false),
            ("uid", Str, false, false),
            ("version", Str, false, true),
        ], at_least_one: &[] },
        // objects/product.json <- objects/_entity.json <- objects/object.json
        ObjectDef { name: "product", attrs: &[
            ("name", Str, false, false),
            ("vendor_name", Str, false, false),
            ("version", Str, false, false),
        ], at_least_one: &["name", "uid"] },
        // objects/finding_info.json <- objects/object.json
        ObjectDef { name: "finding_info", attrs: &[
            ("analytic", Obj("analytic"), false, false),
            ("data_sources", Str, true, false),
            ("desc", Str, false, false),
            ("first_seen_time", Int, false, false),
            ("last_seen_time", Int, false, false),
            ("related_events", Obj("related_event"), true, false),
            // Required up to OCSF 1.3.0, recommended since: required here so that readers
            // of the earlier 1.x releases accept the event too.
            ("title", Str, false, true),
            ("uid", Str, false, true),
        ], at_least_one: &[] },
        // objects/analytic.json <- objects/_entity.json <- objects/object.json
        ObjectDef { name: "analytic", attrs: &[
            ("name", Str, false, false),
            ("type", Str, false, false),
            ("type_id", Int, false, true),
            ("uid", Str, false, false),
        ], at_least_one: &["name", "uid"] },
        // objects/related_event.json <- objects/object.json
        ObjectDef { name: "related_event", attrs: &[
            ("first_seen_time", Int, false, false),
            ("last_seen_time", Int, false, false),
            ("product", Obj("product"), false, false),
            ("title", Str, false, false),
            ("uid", Str, false, true),
        ], at_least_one: &[] },
        // objects/cloud.json <- objects/object.json
        ObjectDef { name: "cloud", attrs: &[
            ("account", Obj("account"), false, false),
            ("provider", Str, false, true),
            ("region", Str, false, false),
        ], at_least_one: &[] },
        // objects/account.json <- objects/_entity.json <- objects/object.json
        ObjectDef { name: "account", attrs: &[
            ("type", Str, false, false),
            ("type_id", Int, false, false),
            ("uid", Str, false, false),
        ], at_least_one: &["name", "uid"] },
        // objects/resource_details.json <- objects/_resource.json <- objects/_entity.json <- objects/object.json
        ObjectDef { name: "resource_details", attrs: &[
            ("owner", Obj("user"), false, false),
            ("type", Str, false, false),
            ("uid", Str, false, false),
        ], at_least_one: &["name", "uid"] },
        // objects/user.json <- objects/_entity.json <- objects/object.json
        ObjectDef { name: "user", attrs: &[
            ("account", Obj("account"), false, false),
            ("credential_uid", Str, false, false),
            ("name", Str, false, false),
            ("programmatic_credentials", Obj("programmatic_credential"), true, false),
            ("type", Str, false, false),
            ("type_id", Int, false, false),
            ("uid", Str, false, false),
        ], at_least_one: &["account", "name", "uid"] },
        // objects/programmatic_credential.json <- objects/object.json
        ObjectDef { name: "programmatic_credential", attrs: &[
            ("type", Str, false, false),
            ("uid", Str, false, true),
        ], at_least_one: &[] },
        // objects/observable.json <- objects/object.json
        ObjectDef { name: "observable", attrs: &[
            ("name", Str, false, false),
            ("type_id", Int, false, true),
            ("value", Str, false, false),
        ], at_least_one: &[] },
        // objects/evidences.json <- objects/_entity.json <- objects/object.json
        ObjectDef { name: "evidences", attrs: &[
            ("actor", Obj("actor"), false, false),
            ("api", Obj("api"), false, false),
            ("data", Json, false, false),
            ("http_request", Obj("http_request"), false, false),
            ("name", Str, false, false),
            ("src_endpoint", Obj("network_endpoint"), false, false),
            ("uid", Str, false, false),
        ], at_least_one: &["actor", "api", "connection_info", "data", "database", "databucket", "device", "dst_endpoint", "email", "file", "process", "query", "resources", "src_endpoint", "url", "user", "job", "script"] },
        // objects/actor.json <- objects/object.json
        ObjectDef { name: "actor", attrs: &[
            ("user", Obj("user"), false, false),
        ], at_least_one: &["process", "user", "invoked_by", "session", "app_name", "app_uid"] },
        // objects/api.json <- objects/object.json
        ObjectDef { name: "api", attrs: &[
            ("operation", Str, false, true),
            ("response", Obj("response"), false, false),
            ("service", Obj("service"), false, false),
        ], at_least_one: &[] },
        // objects/service.json <- objects/_entity.json <- objects/object.json
        ObjectDef { name: "service", attrs: &[
            ("name", Str, false, false),
        ], at_least_one: &["name", "uid"] },
        // objects/response.json <- objects/object.json
        ObjectDef { name: "response", attrs: &[
            ("error", Str, false, false),
            ("error_message", Str, false, false),
        ], at_least_one: &[] },
        // objects/network_endpoint.json <- objects/endpoint.json <- objects/_entity.json <- objects/object.json
        ObjectDef { name: "network_endpoint", attrs: &[
            ("autonomous_system", Obj("autonomous_system"), false, false),
            ("ip", Ip, false, false),
            ("location", Obj("location"), false, false),
            ("name", Str, false, false),
        ], at_least_one: &["ip", "uid", "name", "hostname", "svc_name", "instance_uid", "interface_uid", "interface_name", "domain"] },
        // objects/location.json <- objects/object.json
        ObjectDef { name: "location", attrs: &[
            ("city", Str, false, false),
            ("coordinates", Float, true, false),
            ("country", Str, false, false),
            ("desc", Str, false, false),
            ("lat", Float, false, false),
            ("long", Float, false, false),
            ("provider", Str, false, false),
        ], at_least_one: &["city", "country", "postal_code", "region"] },
        // objects/autonomous_system.json <- objects/object.json
        ObjectDef { name: "autonomous_system", attrs: &[
            ("name", Str, false, false),
            ("number", Int, false, false),
        ], at_least_one: &["number", "name"] },
        // objects/http_request.json <- objects/object.json
        ObjectDef { name: "http_request", attrs: &[
            ("user_agent", Str, false, false),
        ], at_least_one: &[] },
        // objects/remediation.json <- objects/object.json
        ObjectDef { name: "remediation", attrs: &[
            ("desc", Str, false, true),
        ], at_least_one: &[] },
    ];

    fn def(name: &str) -> &'static ObjectDef {
        SCHEMA
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no definition of {name}"))
    }

    /// Every way `value` (at `path`) breaks the definition of `object`.
    fn check(value: &Value, object: &str, path: &str, errors: &mut Vec<String>) {
        let def = def(object);
        let Some(map) = value.as_object() else {
            errors.push(format!("{path}: a {object} must be an object, got {value}"));
            return;
        };
        for (name, _, _, required) in def.attrs {
            if *required && map.get(*name).is_none_or(Value::is_null) {
                errors.push(format!("{path}.{name}: required by {object}, missing"));
            }
        }
        if !def.at_least_one.is_empty() && !def.at_least_one.iter().any(|a| map.contains_key(*a)) {
            errors.push(format!(
                "{path}: a {object} needs one of {:?}",
                def.at_least_one
            ));
        }
        for (key, v) in map {
            let at = format!("{path}.{key}");
            let Some((_, ty, array, required)) = def.attrs.iter().find(|a| a.0 == key) else {
                errors.push(format!("{at}: not an attribute of {object}"));
                continue;
            };
            if *array {
                match v.as_array() {
                    Some(items) => {
                        for (i, item) in items.iter().enumerate() {
                            check_type(item, *ty, *required, &format!("{at}[{i}]"), errors);
                        }
                    }
                    None => errors.push(format!("{at}: must be an array, got {v}")),
                }
            } else {
                check_type(v, *ty, *required, &at, errors);
            }
        }
    }

    fn check_type(v: &Value, ty: Ty, required: bool, at: &str, errors: &mut Vec<String>) {
        let ok = match ty {
            // A required string that is empty says nothing.
            Str => v.as_str().is_some_and(|s| !required || !s.is_empty()),
            Int => v.is_i64() || v.is_u64(),
            Float => v.is_number(),
            Bool => v.is_boolean(),
            Ip => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
            Json => true,
            Obj(object) => {
                check(v, object, at, errors);
                true
            }
        };
        if !ok {
            errors.push(format!("{at}: not a {ty:?}: {v}"));
        }
    }

    fn violations(event: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        check(event, "detection_finding", "", &mut errors);
        errors
    }

    #[test]
    fn every_rules_finding_is_a_valid_detection_finding() {
        let findings = one_finding_per_rule();
        let rules: Vec<Rule> = findings.iter().map(|f| f.rule).collect();
        assert_eq!(rules, Rule::ALL, "one sample per rule");
        for f in &findings {
            let event = to_ocsf(f);
            let errors = violations(&event);
            assert!(errors.is_empty(), "{}: {errors:#?}\n{event:#}", f.rule);

            assert_eq!(event["class_uid"], 2004, "{}", f.rule);
            assert_eq!(event["category_uid"], 2);
            assert_eq!(event["activity_id"], 1);
            assert_eq!(
                event["type_uid"].as_u64(),
                Some(event["class_uid"].as_u64().unwrap() * 100 + 1)
            );
            assert_eq!(event["metadata"]["version"], OCSF_VERSION);
            assert_eq!(event["metadata"]["product"]["name"], "geotrail");
            assert_eq!(
                event["metadata"]["product"]["version"],
                env!("CARGO_PKG_VERSION")
            );
            assert_eq!(event["metadata"]["profiles"], json!(["cloud"]));
            assert_eq!(event["finding_info"]["uid"], f.finding_id.as_str());
            assert_eq!(event["finding_info"]["desc"], f.summary.as_str());
            assert_eq!(event["finding_info"]["analytic"]["uid"], f.rule.as_str());
            assert_eq!(
                event["time"].as_i64(),
                parse_event_time(&f.event_time),
                "{}",
                f.rule
            );
            assert_eq!(event["cloud"]["provider"], "AWS");
            assert_eq!(event["cloud"]["account"]["uid"], "123456789012");
            assert!(
                event["evidences"].as_array().is_some_and(|e| !e.is_empty()),
                "{}: the events are the evidence",
                f.rule
            );
            assert_eq!(event["unmapped"]["rule"], f.rule.as_str());
            assert!(
                event["unmapped"][f.rule.as_str()].is_object(),
                "{}: the rule's block is kept",
                f.rule
            );
            // The pivots every finding has: the user and the access key.
            let observed = |type_id: u64, value: &str| {
                event["observables"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|o| o["type_id"] == type_id && o["value"] == value)
            };
            assert!(observed(OBSERVABLE_USER_NAME, "alice"), "{}", f.rule);
            assert!(
                observed(OBSERVABLE_USER_CREDENTIAL_ID, "AKIAIOSFODNN7EXAMPLE"),
                "{}",
                f.rule
            );
            assert!(
                observed(OBSERVABLE_USER_UID, "arn:aws:iam::123456789012:user/alice"),
                "{}",
                f.rule
            );
        }
    }

    #[test]
    fn the_check_fails_on_every_missing_required_attribute() {
        // Each required attribute the events carry, removed in turn, must be reported:
        // the check above cannot pass an event that lacks one.
        fn required_paths(
            value: &Value,
            object: &str,
            path: Vec<String>,
            out: &mut Vec<Vec<String>>,
        ) {
            let def = def(object);
            for (name, ty, array, required) in def.attrs {
                let Some(v) = value.get(*name) else { continue };
                let mut here = path.clone();
                here.push((*name).to_owned());
                if *required {
                    out.push(here.clone());
                }
                if let Obj(child) = ty {
                    if *array {
                        for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                            let mut at = here.clone();
                            at.push(i.to_string());
                            required_paths(item, child, at, out);
                        }
                    } else {
                        required_paths(v, child, here, out);
                    }
                }
            }
        }
        fn remove(value: &mut Value, path: &[String]) {
            let (last, parents) = path.split_last().unwrap();
            let mut v = value;
            for p in parents {
                v = match p.parse::<usize>() {
                    Ok(i) if v.is_array() => &mut v[i],
                    _ => &mut v[p.as_str()],
                };
            }
            v.as_object_mut().unwrap().remove(last);
        }

        let mut checked = 0;
        for f in one_finding_per_rule() {
            let event = to_ocsf(&f);
            let mut paths = Vec::new();
            required_paths(&event, "detection_finding", Vec::new(), &mut paths);
            for path in paths {
                let mut broken = event.clone();
                remove(&mut broken, &path);
                assert!(
                    !violations(&broken).is_empty(),
                    "{}: without {} the event still passed",
                    f.rule,
                    path.join(".")
                );
                checked += 1;
            }
        }
        // The class's eight, cloud's two, metadata's two and finding_info's two at least.
        assert!(checked >= 5 * 14, "{checked}");

        let mut wrong_type = to_ocsf(&sample_finding());
        wrong_type["time"] = json!("2023-07-10T11:00:00Z");
        assert!(!violations(&wrong_type).is_empty(), "time is epoch ms");
        let mut misplaced = to_ocsf(&sample_finding());
        misplaced["src_endpoint"] = json!({ "ip": "198.51.100.7" });
        assert!(
            !violations(&misplaced).is_empty(),
            "a Detection Finding has no src_endpoint of its own"
        );
    }

    #[test]
    fn impossible_travel_puts_both_places_in_ocsfs_location() {
        let event = to_ocsf(&sample_finding());
        let evidences = event["evidences"].as_array().unwrap();
        assert_eq!(evidences.len(), 2);
        let from = &evidences[0];
        assert_eq!(from["name"], "first_location");
        assert_eq!(from["uid"], "ev-1");
        assert_eq!(from["src_endpoint"]["ip"], "203.0.113.10");
        let location = &from["src_endpoint"]["location"];
        assert_eq!(location["city"], "Sydney");
        assert_eq!(location["country"], "AU");
        assert_eq!(location["desc"], "Sydney, Australia");
        assert_eq!(location["provider"], "GeoLite2-City");
        assert_eq!(
            from["src_endpoint"]["autonomous_system"],
            json!({ "number": 64_500, "name": "Example Net" })
        );
        assert_eq!(from["api"]["operation"], "DescribeInstances");
        assert_eq!(from["api"]["service"]["name"], "ec2.amazonaws.com");
        assert_eq!(from["actor"]["user"]["name"], "alice");
        assert_eq!(from["actor"]["user"]["type_id"], 1);
        assert_eq!(
            from["actor"]["user"]["credential_uid"],
            "AKIAIOSFODNN7EXAMPLE"
        );
        assert_eq!(evidences[1]["src_endpoint"]["location"]["country"], "DE");

        let info = &event["finding_info"];
        // 2023-07-10T10:00:00Z and 11:00:00Z.
        assert_eq!(info["first_seen_time"], 1_688_983_200_000_i64);
        assert_eq!(info["last_seen_time"], 1_688_986_800_000_i64);
        assert_eq!(event["time"], 1_688_986_800_000_i64);
        let related: Vec<&Value> = info["related_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["uid"])
            .collect();
        assert_eq!(related, [&json!("ev-1"), &json!("ev-2")]);
        assert_eq!(event["severity_id"], 4);
        assert_eq!(event["cloud"]["region"], "eu-central-1");
        let ips: Vec<&Value> = event["observables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["type_id"] == OBSERVABLE_IP_ADDRESS)
            .map(|o| &o["value"])
            .collect();
        assert_eq!(ips, [&json!("203.0.113.10"), &json!("198.51.100.7")]);
        assert_eq!(
            event["unmapped"]["impossible_travel"]["speed_kmh"],
            16_440.4
        );
        assert!(event["remediation"]["desc"]
            .as_str()
            .unwrap()
            .starts_with("1. Confirm with the owner"));
    }

    #[test]
    fn an_inferred_place_is_evidence_but_no_related_event() {
        let mut f = sample_finding();
        if let Some(t) = &mut f.impossible_travel {
            t.triggering_locations.first_location.event_id = String::new();
            t.triggering_locations.first_location.inferred = true;
        }
        let event = to_ocsf(&f);
        assert!(violations(&event).is_empty(), "{:#?}", violations(&event));
        assert_eq!(event["evidences"].as_array().unwrap().len(), 2);
        assert_eq!(event["evidences"][0]["data"]["inferred"], true);
        assert!(event["evidences"][0].get("uid").is_none());
        assert_eq!(
            event["finding_info"]["related_events"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn the_rarity_rules_map_their_calls() {
        let city = to_ocsf(&unusual_city_finding());
        let location = &city["evidences"][0]["src_endpoint"]["location"];
        assert_eq!(location["city"], "Frankfurt am Main");
        assert_eq!(location["lat"], 50.1155);
        assert_eq!(location["long"], 8.6842);
        assert_eq!(location["coordinates"], json!([8.6842, 50.1155]));
        assert_eq!(
            city["evidences"][0]["http_request"]["user_agent"],
            "aws-cli/2.13.0"
        );
        assert_eq!(city["finding_info"]["analytic"]["type_id"], 3);
        assert_eq!(city["resources"][0]["type"], "AWS IAM principal");

        let error = to_ocsf(&unusual_error_finding());
        let api = &error["evidences"][0]["api"];
        assert_eq!(api["operation"], "StopLogging");
        assert_eq!(api["response"]["error"], "AccessDenied");
        // The rule gives only a place name here: no structured location is made up.
        let endpoint = &error["evidences"][0]["src_endpoint"];
        assert_eq!(endpoint["ip"], "198.51.100.7");
        assert!(endpoint.get("location").is_none());
        assert_eq!(
            error["evidences"][0]["data"]["place"],
            "Frankfurt am Main, Germany"
        );
    }

    #[test]
    fn a_record_from_the_future_is_dated_by_its_object() {
        let f = future_event_finding();
        let event = to_ocsf(&f);
        let written = parse_event_time("2023-07-10T11:10:00Z").unwrap();
        assert_eq!(event["time"], written);
        assert_eq!(event["finding_info"]["first_seen_time"], written);
        assert_eq!(event["finding_info"]["last_seen_time"], written);
        // The forged time is still shown where it belongs: on the event itself.
        assert_eq!(
            event["evidences"][0]["data"]["event_time"],
            "2023-07-11T09:00:00Z"
        );
        assert_eq!(event["cloud"]["region"], "us-east-1");
    }

    #[test]
    fn severities_map_to_ocsfs_ids() {
        let cases = [
            (Severity::Info, 1, "Informational"),
            (Severity::Low, 2, "Low"),
            (Severity::Medium, 3, "Medium"),
            (Severity::High, 4, "High"),
            (Severity::Critical, 5, "Critical"),
        ];
        for (severity, id, caption) in cases {
            let mut f = sample_finding();
            f.severity = severity;
            let event = to_ocsf(&f);
            assert_eq!(event["severity_id"], id, "{severity}");
            assert_eq!(event["severity"], caption, "{severity}");
        }
    }

    #[test]
    fn a_service_name_as_source_is_no_ip() {
        let mut f = sample_finding();
        if let Some(t) = &mut f.impossible_travel {
            t.triggering_locations.first_location.ip = "ec2.amazonaws.com".to_owned();
        }
        let event = to_ocsf(&f);
        assert!(violations(&event).is_empty(), "{:#?}", violations(&event));
        let endpoint = &event["evidences"][0]["src_endpoint"];
        assert_eq!(endpoint["name"], "ec2.amazonaws.com");
        assert!(endpoint.get("ip").is_none());
    }
}
