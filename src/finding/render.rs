//! The renderings of a finding, one per body: the terminal text ([`render_text`]), the
//! email report ([`render_email`]), the chat notification ([`render_chat`], AWS
//! Chatbot's custom schema, for Slack and Teams) and the one-line subject
//! ([`render_subject`]). The JSON ([`Finding::to_json`]) is the model itself. Pure
//! functions of a [`Finding`]: the CLI and the SNS notifier both render through here.
//!
//! Each body is made of what every finding has (severity, title, summary, identity,
//! triage, the finding id and its log object) and of what its rule's block adds (the two
//! places of an impossible travel). A rule's part of every body is one `RuleRendering`
//! impl, in a file of its own under `render/`, and `rule_rendering` maps the rule to it:
//! adding a rule is that impl and one match arm. A rule without an impl yet still renders
//! everything common, and its block is in the JSON.
//!
//! Findings carry text that an attacker controls: CloudTrail's user names, session names
//! and ARNs, and names from the GeoIP database. Everything rendered for chat goes through
//! [`escape_for_chat`], everything in the email through [`escape_for_email`], and the
//! subject line is folded to ASCII without markup. The terminal text is for the person
//! who ran the scan and is written as the logs say. The finding JSON is data and is never
//! altered.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::detect::SubjectKind;
use crate::finding::{format_rfc3339_ms, Finding, Rule, Severity};

mod escape;
mod future_event_time;
mod impossible_travel;
mod rarity;

use escape::ascii_line;
pub use escape::{escape_for_chat, escape_for_email, sanitize_plain};

/// SNS wants subjects "less than 100 characters", ASCII, on one line; email clients show
/// no more either.
pub const MAX_SUBJECT_CHARS: usize = 99;
/// Slack cuts a section's text at 3000 characters; keep the chat description under it.
const MAX_CHAT_DESCRIPTION_CHARS: usize = 2800;
/// Triage steps shown in chat; the email and the JSON have them all.
const MAX_CHAT_STEPS: usize = 8;
/// No single field from a log needs more than this in a human rendering.
const MAX_FIELD_CHARS: usize = 512;

// ---------------------------------------------------------------------------------------
// What a rule adds

/// What one rule's block of a finding adds to each body. Every part has a default that
/// renders from what all findings have, so a rule can start with an empty impl.
pub(crate) trait RuleRendering {
    /// The subject line after `[SEVERITY] `: ASCII on one line (log text through
    /// [`ascii_line`]). By default, the finding's title.
    fn subject(&self, finding: &Finding) -> String {
        ascii_line(&finding.title)
    }

    /// Lines of the terminal text after the summary, each indented by two spaces.
    fn text(&self, _out: &mut String) {}

    /// A section of the email after the summary, ending with a blank line; log text
    /// through [`plain`].
    fn email(&self, _out: &mut String) {}

    /// The chat title and summary, after the severity. By default, the finding's title.
    fn chat_headline(&self, finding: &Finding) -> ChatHeadline {
        ChatHeadline {
            title: chat(&finding.title),
            summary: chat(&finding.title),
        }
    }

    /// The opening lines of the chat description; log text through [`chat`] or
    /// [`chat_code`]. By default, the finding's summary.
    fn chat_description(&self, finding: &Finding, d: &mut String) {
        let _ = writeln!(
            d,
            "{}",
            chat(&truncate_chars(&finding.summary, 4 * MAX_FIELD_CHARS))
        );
    }

    /// The AWS regions the finding's events were in, the most telling first: one
    /// CloudTrail event-history link each (the history is regional). By default none.
    fn regions(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// The chat title and the notification summary of a finding, escaped.
pub(crate) struct ChatHeadline {
    pub(crate) title: String,
    pub(crate) summary: String,
}

/// A finding whose rule has no rendering of its own, or lacks its block.
struct CommonOnly;

impl RuleRendering for CommonOnly {}

/// The one place a rule meets its rendering.
fn rule_rendering(finding: &Finding) -> &dyn RuleRendering {
    fn block<T: RuleRendering>(block: &Option<T>) -> &dyn RuleRendering {
        match block {
            Some(b) => b,
            None => &CommonOnly,
        }
    }
    match finding.rule {
        Rule::ImpossibleTravel => block(&finding.impossible_travel),
        Rule::FutureEventTime => block(&finding.future_event_time),
        Rule::UnusualCityForCommand => block(&finding.unusual_city_for_command),
        Rule::UnusualErrorCode => block(&finding.unusual_error_code),
        Rule::LongTermAccessKeyAuth => block(&finding.long_term_access_key_auth),
    }
}

// ---------------------------------------------------------------------------------------
// Bounded, escaped fields

/// `text` cut to at most `max_bytes` (on a character boundary), with `marker` appended
/// when anything was cut.
fn truncate_with_marker(text: &str, max_bytes: usize, marker: &str) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let kept = super::cut(text, max_bytes.saturating_sub(marker.len()));
    format!("{kept}{marker}")
}

fn truncate_chars(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Keeps the end of a long ASCII identifier: the distinctive part of an ARN.
fn shorten_front(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    format!("...{}", &s[s.len() - (max - 3)..])
}

fn shorten_back(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    format!("{}...", s[..max - 3].trim_end())
}

/// A log field for the email: escaped and of bounded length.
/// The account that owns the credential, when it is not the account that was called
/// (or that one is unknown): worth a line of its own.
fn other_credential_account(finding: &Finding) -> Option<&str> {
    finding
        .credential_account_id
        .as_deref()
        .filter(|owner| finding.account_id.as_deref() != Some(*owner))
}

fn plain(s: &str) -> String {
    truncate_chars(&escape_for_email(s), MAX_FIELD_CHARS)
}

/// A log field for chat: escaped and of bounded length.
fn chat(s: &str) -> String {
    escape_for_chat(&truncate_chars(s, MAX_FIELD_CHARS))
}

/// A log field as inline code in chat: no emoji (`:aws:` in an ARN), no formatting.
fn chat_code(s: &str) -> String {
    format!("`{}`", chat(s))
}

// ---------------------------------------------------------------------------------------
// Terminal text

/// A readable multi-line rendering for terminals.
pub fn render_text(finding: &Finding) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "[{}] {} ({})",
        finding.severity.as_str().to_uppercase(),
        finding.title,
        finding.finding_id
    );
    let _ = writeln!(out, "  {}", finding.summary);
    rule_rendering(finding).text(&mut out);
    if let Some(arn) = &finding.user_identity.arn {
        let _ = writeln!(out, "  identity {arn}");
    }
    if let Some(account) = &finding.account_id {
        match other_credential_account(finding) {
            Some(owner) => {
                let _ = writeln!(out, "  account  {account} called, key of account {owner}");
            }
            None => {
                let _ = writeln!(out, "  account  {account}");
            }
        }
    }
    let _ = writeln!(out, "  object   {}", finding.source_object);
    let _ = writeln!(
        out,
        "  geoip    {} built {}",
        finding.geoip.database_type,
        format_rfc3339_ms(finding.geoip.build_epoch as i64 * 1000)
    );
    for (i, step) in finding.triage.iter().enumerate() {
        let _ = writeln!(out, "  triage {}. {step}", i + 1);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Subject line

/// "[HIGH] Impossible travel: AKIA... Sydney -> Frankfurt am Main": ASCII, one line,
/// under 100 characters.
pub fn render_subject(finding: &Finding) -> String {
    let severity = finding.severity.as_str().to_ascii_uppercase();
    let body = rule_rendering(finding).subject(finding);
    // Every part is ASCII on one line already; `->` is ours.
    shorten_back(&format!("[{severity}] {body}"), MAX_SUBJECT_CHARS)
}

// ---------------------------------------------------------------------------------------
// CloudTrail console links

/// The CloudTrail console's event history in `region`, filtered by an access key id.
/// `None` unless both look like what AWS issues: they go into a URL unescaped.
pub fn cloudtrail_history_url(region: &str, access_key_id: &str) -> Option<String> {
    let region_ok = (1..=32).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let key_ok = (16..=128).contains(&access_key_id.len())
        && access_key_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    (region_ok && key_ok).then(|| {
        format!("https://{region}.console.aws.amazon.com/cloudtrailv2/home?region={region}#/events?AccessKeyId={access_key_id}")
    })
}

/// The access key of a finding: its subject when it tracks keys, else the key on the
/// triggering event.
fn access_key_of(finding: &Finding) -> Option<&str> {
    match finding.subject_kind {
        SubjectKind::AccessKey => Some(finding.subject.as_str()),
        SubjectKind::Principal => finding.user_identity.access_key_id.as_deref(),
    }
}

/// One event-history link per region the rule names for the finding's events.
fn cloudtrail_links(finding: &Finding) -> Vec<(String, String)> {
    let Some(key) = access_key_of(finding) else {
        return Vec::new();
    };
    let mut regions: Vec<&str> = Vec::new();
    for region in rule_rendering(finding).regions() {
        if !regions.contains(&region) {
            regions.push(region);
        }
    }
    regions
        .into_iter()
        .filter_map(|region| {
            cloudtrail_history_url(region, key).map(|url| (region.to_owned(), url))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Email

/// The plain-text report for email subscribers.
pub fn render_email(finding: &Finding) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "[{}] {}",
        finding.severity.as_str().to_uppercase(),
        plain(&finding.title)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{}",
        truncate_chars(&escape_for_email(&finding.summary), 4 * MAX_FIELD_CHARS)
    );
    let _ = writeln!(out);

    rule_rendering(finding).email(&mut out);

    let _ = writeln!(out, "Who:");
    let _ = writeln!(
        out,
        "  Subject:    {} ({})",
        plain(&finding.subject),
        finding.subject_kind.as_str()
    );
    if let Some(account) = &finding.account_id {
        let _ = writeln!(out, "  Account:    {} (called)", plain(account));
    }
    if let Some(owner) = other_credential_account(finding) {
        let _ = writeln!(out, "  Key owner:  account {}", plain(owner));
    }
    let id = &finding.user_identity;
    for (label, value) in [
        ("Identity", &id.arn),
        ("Type", &id.identity_type),
        ("User name", &id.user_name),
        ("Session", &id.session_name),
        ("Access key", &id.access_key_id),
    ] {
        if let Some(v) = value {
            let _ = writeln!(out, "  {:<11} {}", format!("{label}:"), plain(v));
        }
    }
    let _ = writeln!(out);

    if !finding.triage.is_empty() {
        let _ = writeln!(out, "What to do:");
        for (i, step) in finding.triage.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. {}",
                i + 1,
                truncate_chars(&escape_for_email(step), 4 * MAX_FIELD_CHARS)
            );
        }
        let _ = writeln!(out);
    }

    let links = cloudtrail_links(finding);
    if !links.is_empty() {
        let _ = writeln!(out, "CloudTrail event history for the access key:");
        for (region, url) in links {
            let _ = writeln!(out, "  {region}: {url}");
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "Finding id:  {}", plain(&finding.finding_id));
    let _ = writeln!(out, "Rule:        {}", finding.rule.as_str());
    let _ = writeln!(out, "Log object:  {}", plain(&finding.source_object));
    let _ = writeln!(
        out,
        "GeoIP:       {} (built {})",
        plain(&finding.geoip.database_type),
        format_rfc3339_ms(finding.geoip.build_epoch as i64 * 1000)
    );
    out
}

// ---------------------------------------------------------------------------------------
// AWS Chatbot

/// An AWS Chatbot custom notification (schema: "Custom notifications using Amazon Q
/// Developer in chat applications"); `version` must be "1.0", `source` "custom".
#[derive(Debug, Clone, Serialize)]
pub struct ChatNotification {
    pub version: &'static str,
    pub source: &'static str,
    pub id: String,
    pub content: ChatContent,
    pub metadata: ChatMetadata,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatContent {
    /// Only "client-markdown" is supported: the chat platform's own markdown.
    pub text_type: &'static str,
    pub title: String,
    pub description: String,
    pub next_steps: Vec<String>,
    pub keywords: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMetadata {
    /// Notifications with one thread id are threaded together: one thread per subject.
    pub thread_id: String,
    pub summary: String,
    pub event_type: String,
    pub related_resources: Vec<String>,
    pub additional_context: BTreeMap<String, String>,
}

impl ChatNotification {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ChatNotification always serializes")
    }

    /// The same notification with its description cut to at most `max_bytes`, marked as
    /// cut: the description is the only part of unbounded length in all.
    pub fn with_description_within(&self, max_bytes: usize) -> ChatNotification {
        let mut short = self.clone();
        short.content.description =
            truncate_with_marker(&self.content.description, max_bytes, " _(truncated)_");
        short
    }
}

/// The email cut to at most `max_bytes`, marked as cut.
pub fn truncate_email(email: &str, max_bytes: usize) -> String {
    truncate_with_marker(email, max_bytes, "\n[truncated]")
}

fn severity_emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => ":rotating_light:",
        Severity::Medium => ":warning:",
        Severity::Low | Severity::Info => ":information_source:",
    }
}

/// The chat rendering of a finding, every log-derived field escaped.
pub fn render_chat(finding: &Finding) -> ChatNotification {
    let rule = rule_rendering(finding);
    let severity = finding.severity.as_str().to_uppercase();
    let headline = rule.chat_headline(finding);
    let title = format!(
        "{} [{severity}] {}",
        severity_emoji(finding.severity),
        headline.title
    );
    let summary = format!("[{severity}] {}", headline.summary);

    let mut d = String::new();
    rule.chat_description(finding, &mut d);
    let id = &finding.user_identity;
    match (&id.arn, &id.identity_type) {
        (Some(arn), Some(kind)) => {
            let _ = writeln!(d, "• *Identity* {} ({})", chat_code(arn), chat(kind));
        }
        (Some(arn), None) => {
            let _ = writeln!(d, "• *Identity* {}", chat_code(arn));
        }
        _ => {}
    }
    if let Some(account) = &finding.account_id {
        let _ = writeln!(d, "• *Account* {} (called)", chat_code(account));
    }
    if let Some(owner) = other_credential_account(finding) {
        let _ = writeln!(d, "• *Key owner* account {}", chat_code(owner));
    }
    let _ = writeln!(
        d,
        "• *Finding* {} from {}",
        chat_code(&finding.finding_id),
        chat_code(&finding.source_object)
    );
    let description = truncate_chars(d.trim_end(), MAX_CHAT_DESCRIPTION_CHARS);

    // Bounded, like the description: the chat rendering stays small whatever the finding.
    let mut next_steps: Vec<String> = finding
        .triage
        .iter()
        .take(MAX_CHAT_STEPS)
        .map(|s| chat(s))
        .collect();
    for (region, url) in cloudtrail_links(finding) {
        // Our own markup: the URL and region were validated to contain nothing but
        // [A-Za-z0-9-] around fixed text.
        next_steps.push(format!(
            "Review the key's calls in the <{url}|CloudTrail event history ({region})>"
        ));
    }

    let mut keywords = vec![
        finding.severity.as_str().to_owned(),
        finding.rule.as_str().to_owned(),
    ];
    keywords.extend(finding.account_id.as_deref().map(chat));
    let mut related_resources = vec![chat(&finding.subject)];
    related_resources.extend(id.arn.as_deref().map(chat));
    let mut additional_context = BTreeMap::from([
        ("finding_id".to_owned(), chat(&finding.finding_id)),
        ("subject".to_owned(), chat(&finding.subject)),
        ("source_object".to_owned(), chat(&finding.source_object)),
    ]);
    if let Some(account) = &finding.account_id {
        additional_context.insert("account_id".to_owned(), chat(account));
    }
    if let Some(owner) = &finding.credential_account_id {
        additional_context.insert("credential_account_id".to_owned(), chat(owner));
    }

    ChatNotification {
        version: "1.0",
        source: "custom",
        id: chat(&finding.finding_id),
        content: ChatContent {
            text_type: "client-markdown",
            title,
            description,
            next_steps,
            keywords,
        },
        metadata: ChatMetadata {
            thread_id: thread_id(&finding.subject),
            summary,
            event_type: finding.rule.as_str().to_owned(),
            related_resources,
            additional_context,
        },
    }
}

/// A stable, inert thread id per subject: findings about one key land in one thread.
fn thread_id(subject: &str) -> String {
    let digest = Sha256::digest(subject.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("geotrail-{hex}")
}

#[cfg(test)]
pub(crate) mod samples {
    //! Findings for the rendering tests, here and in the notifiers.

    use crate::detect::SubjectKind;
    use crate::finding::{
        CallRef, CommandEvidence, Finding, FutureEvent, FutureEventTime, ImpossibleTravel,
        LongTermAccessKeyAuth, PlaceCount, PlaceRef, Rule, Severity, TravelEndpoint,
        TriggeringLocations, UnusualCityForCommand, UnusualErrorCode, UserIdentitySummary,
    };
    use crate::geo::GeoDbInfo;

    pub(crate) fn endpoint(
        id: &str,
        time: &str,
        ip: &str,
        city: &str,
        country: &str,
        code: &str,
        region: &str,
    ) -> TravelEndpoint {
        TravelEndpoint {
            event_id: id.to_owned(),
            event_time: time.to_owned(),
            event_name: "DescribeInstances".to_owned(),
            event_source: "ec2.amazonaws.com".to_owned(),
            aws_region: region.to_owned(),
            ip: ip.to_owned(),
            city: Some(city.to_owned()),
            subdivision: None,
            country: Some(country.to_owned()),
            country_code: Some(code.to_owned()),
            latitude: 0.0,
            longitude: 0.0,
            accuracy_radius_km: Some(20),
            asn: Some(64_500),
            as_org: Some("Example Net".to_owned()),
            inferred: false,
        }
    }

    pub(crate) fn sample_finding() -> Finding {
        Finding {
            finding_id: "0123456789abcdef0123456789abcdef".to_owned(),
            rule: Rule::ImpossibleTravel,
            severity: Severity::High,
            title: "Impossible travel of AKIAIOSFODNN7EXAMPLE from Sydney, Australia to Frankfurt am Main, Germany".to_owned(),
            summary: "`AKIAIOSFODNN7EXAMPLE` had activity from Sydney, Australia and Frankfurt am Main, Germany which are approximately 16480km apart within 1 hour. This indicates a potential impossible travel.".to_owned(),
            triage: vec![
                "Confirm with the owner of access key AKIAIOSFODNN7EXAMPLE whether it should be used from both places.".to_owned(),
                "If not, deactivate the access key AKIAIOSFODNN7EXAMPLE.".to_owned(),
            ],
            account_id: Some("123456789012".to_owned()),
            credential_account_id: Some("123456789012".to_owned()),
            subject: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            subject_kind: SubjectKind::AccessKey,
            user_identity: UserIdentitySummary {
                identity_type: Some("IAMUser".to_owned()),
                arn: Some("arn:aws:iam::123456789012:user/alice".to_owned()),
                account_id: Some("123456789012".to_owned()),
                user_name: Some("alice".to_owned()),
                access_key_id: Some("AKIAIOSFODNN7EXAMPLE".to_owned()),
                session_name: None,
            },
            impossible_travel: Some(ImpossibleTravel {
                triggering_locations: TriggeringLocations {
                    first_location: endpoint("ev-1", "2023-07-10T10:00:00Z", "203.0.113.10", "Sydney", "Australia", "AU", "ap-southeast-2"),
                    second_location: endpoint("ev-2", "2023-07-10T11:00:00Z", "198.51.100.7", "Frankfurt am Main", "Germany", "DE", "eu-central-1"),
                },
                travel_distance: 16_480.4,
                effective_distance_km: 16_440.4,
                travel_time_seconds: 3600.0,
                travel_time_human_readable: "1 hour".to_owned(),
                speed_kmh: Some(16_440.4),
                concurrent_use: false,
            }),
            future_event_time: None,
            unusual_city_for_command: None,
            unusual_error_code: None,
            long_term_access_key_auth: None,
            references: Vec::new(),
            geoip: GeoDbInfo { database_type: "GeoLite2-City".to_owned(), build_epoch: 1_688_000_000, ..GeoDbInfo::default() },
            source_object: "s3://trail-bucket/AWSLogs/123456789012/CloudTrail/eu-central-1/2023/07/10/x.json.gz".to_owned(),
            event_time: "2023-07-10T11:00:00Z".to_owned(),
        }
    }

    /// One call of a rarity finding, from the thief's address in Frankfurt.
    pub(crate) fn call(id: &str, time: &str, source: &str, name: &str) -> CallRef {
        CallRef {
            event_id: id.to_owned(),
            event_time: time.to_owned(),
            event_name: name.to_owned(),
            event_source: source.to_owned(),
            aws_region: "eu-central-1".to_owned(),
            source_ip_address: "198.51.100.7".to_owned(),
            place: Some("Frankfurt am Main, Germany".to_owned()),
            error_code: None,
            error_message: None,
            user_agent: Some("aws-cli/2.13.0".to_owned()),
        }
    }

    /// The sample finding's common fields under another rule, without its block.
    fn for_rule(rule: Rule, severity: Severity, title: &str, summary: &str) -> Finding {
        Finding {
            finding_id: format!("sample-{}", rule.as_str()),
            rule,
            severity,
            title: title.to_owned(),
            summary: summary.to_owned(),
            impossible_travel: None,
            references: rule.references().iter().map(|r| (*r).to_owned()).collect(),
            ..sample_finding()
        }
    }

    pub(crate) fn unusual_city_finding() -> Finding {
        let mut f = for_rule(
            Rule::UnusualCityForCommand,
            Severity::Low,
            "Unusual city for ec2:DescribeInstances: alice from Frankfurt am Main, Germany",
            "`arn:aws:iam::123456789012:user/alice` called ec2:DescribeInstances from Frankfurt am Main, Germany, where the account has not called it in the last 30 days.",
        );
        f.subject = "arn:aws:iam::123456789012:user/alice".to_owned();
        f.subject_kind = SubjectKind::Principal;
        f.unusual_city_for_command = Some(UnusualCityForCommand {
            place: PlaceRef {
                name: "Frankfurt am Main, Germany".to_owned(),
                city: Some("Frankfurt am Main".to_owned()),
                subdivision: Some("Hesse".to_owned()),
                country: Some("Germany".to_owned()),
                country_code: Some("DE".to_owned()),
                latitude: 50.1155,
                longitude: 8.6842,
                accuracy_radius_km: Some(20),
                asn: Some(64_500),
                as_org: Some("Example Net".to_owned()),
            },
            commands: vec![CommandEvidence {
                event_source: "ec2.amazonaws.com".to_owned(),
                event_name: "DescribeInstances".to_owned(),
                calls_from_city: 1,
                seen_from_city_before: 0,
                seen_in_account: 12,
                first_seen_in_account: Some("2023-06-20T09:00:00Z".to_owned()),
                usual_places: vec![PlaceCount {
                    place: "Sydney, Australia".to_owned(),
                    count: 12,
                    first_seen: Some("2023-06-20T09:00:00Z".to_owned()),
                    last_seen: Some("2023-07-10T10:00:00Z".to_owned()),
                }],
            }],
            calls: vec![call(
                "ev-2",
                "2023-07-10T11:00:00Z",
                "ec2.amazonaws.com",
                "DescribeInstances",
            )],
            lookback_days: 30,
            min_seen: 1,
        });
        f
    }

    pub(crate) fn unusual_error_finding() -> Finding {
        let mut f = for_rule(
            Rule::UnusualErrorCode,
            Severity::Low,
            "Unusual error AccessDenied for alice",
            "`arn:aws:iam::123456789012:user/alice` got error `AccessDenied` on 1 call(s) (cloudtrail:StopLogging) from 198.51.100.7; in account 123456789012 this error was not seen in the last 30 days.",
        );
        f.subject = "arn:aws:iam::123456789012:user/alice".to_owned();
        f.subject_kind = SubjectKind::Principal;
        let mut denied = call(
            "ev-3",
            "2023-07-10T11:05:00Z",
            "cloudtrail.amazonaws.com",
            "StopLogging",
        );
        denied.error_code = Some("AccessDenied".to_owned());
        denied.error_message =
            Some("User is not authorized to perform: cloudtrail:StopLogging".to_owned());
        f.unusual_error_code = Some(UnusualErrorCode {
            error_code: "AccessDenied".to_owned(),
            calls: vec![denied],
            seen_before: 0,
            days_seen: 0,
            first_seen: None,
            last_seen: None,
            lookback_days: 30,
            min_seen: 1,
        });
        f.event_time = "2023-07-10T11:05:00Z".to_owned();
        f
    }

    pub(crate) fn key_auth_finding() -> Finding {
        let mut f = for_rule(
            Rule::LongTermAccessKeyAuth,
            Severity::Low,
            "Long-term access key AKIAIOSFODNN7EXAMPLE used from a new address 198.51.100.7",
            "Access key `AKIAIOSFODNN7EXAMPLE` of IAM user alice signed a successful call from 198.51.100.7 (Frankfurt am Main, Germany); the key was not used from this address in the 10 days before.",
        );
        f.long_term_access_key_auth = Some(LongTermAccessKeyAuth {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            source_ip_address: "198.51.100.7".to_owned(),
            place: Some("Frankfurt am Main, Germany".to_owned()),
            new_address: true,
            new_address_days: 10,
            address_last_seen: None,
            known_addresses: vec!["203.0.113.10".to_owned()],
            calls: vec![call(
                "ev-2",
                "2023-07-10T11:00:00Z",
                "ec2.amazonaws.com",
                "DescribeInstances",
            )],
            calls_in_window: 1,
            dedup_minutes: 60,
        });
        f
    }

    pub(crate) fn future_event_finding() -> Finding {
        let mut f = for_rule(
            Rule::FutureEventTime,
            Severity::Low,
            "Log records from the future for AKIAIOSFODNN7EXAMPLE",
            "1 record(s) of `AKIAIOSFODNN7EXAMPLE` are stamped after the object was written (2023-07-10T11:10:00Z), up to 2023-07-11T09:00:00Z.",
        );
        f.future_event_time = Some(FutureEventTime {
            object_written_at: "2023-07-10T11:10:00Z".to_owned(),
            tolerance_seconds: 3600,
            count: 1,
            events: vec![FutureEvent {
                event_id: "ev-9".to_owned(),
                event_time: "2023-07-11T09:00:00Z".to_owned(),
                event_name: "GetCallerIdentity".to_owned(),
                event_source: "sts.amazonaws.com".to_owned(),
                aws_region: "us-east-1".to_owned(),
                source_ip_address: "192.0.2.44".to_owned(),
            }],
        });
        f.event_time = "2023-07-10T11:10:00Z".to_owned();
        f
    }

    /// One finding of every rule, in `Rule::ALL` order.
    pub(crate) fn one_finding_per_rule() -> Vec<Finding> {
        Rule::ALL
            .into_iter()
            .map(|rule| match rule {
                Rule::ImpossibleTravel => sample_finding(),
                Rule::UnusualCityForCommand => unusual_city_finding(),
                Rule::UnusualErrorCode => unusual_error_finding(),
                Rule::LongTermAccessKeyAuth => key_auth_finding(),
                Rule::FutureEventTime => future_event_finding(),
            })
            .collect()
    }

    /// A finding whose every log-derived field is hostile.
    pub(crate) fn hostile_finding() -> Finding {
        let evil = "<!channel> @here *boom* `x` <http://evil.example|click> [a](http://evil.example)\nFAKE LINE";
        let mut f = sample_finding();
        f.subject = format!("arn:aws:sts::123456789012:assumed-role/R/{evil}");
        f.subject_kind = SubjectKind::Principal;
        f.user_identity.arn = Some(f.subject.clone());
        f.user_identity.user_name = Some(evil.to_owned());
        f.user_identity.access_key_id = Some("ASIA<evil>".to_owned());
        f.title = format!("Impossible travel of {evil}");
        f.summary = evil.to_owned();
        f.triage = vec![evil.to_owned()];
        f.source_object = format!("s3://b/{evil}");
        if let Some(t) = &mut f.impossible_travel {
            let e = &mut t.triggering_locations.second_location;
            e.city = Some(evil.to_owned());
            e.event_name = evil.to_owned();
            e.as_org = Some(evil.to_owned());
            e.aws_region = "eu-central-1#/evil".to_owned();
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::samples::{hostile_finding, sample_finding};
    use super::*;

    #[test]
    fn email_reads_as_a_report() {
        let email = render_email(&sample_finding());
        for want in [
            "[HIGH] Impossible travel of AKIAIOSFODNN7EXAMPLE",
            "had activity from Sydney",
            "From:\n  Place:     Sydney, Australia (AU)\n  IP:        203.0.113.10 (AS64500 Example Net)",
            "  Time:      2023-07-10T10:00:00Z\n  Event:     ec2.amazonaws.com DescribeInstances in ap-southeast-2 (event id ev-1)",
            "To:\n  Place:     Frankfurt am Main, Germany (DE)\n  IP:        198.51.100.7",
            "Distance:    16480 km (at least 16440 km given the accuracy radii)",
            "Time apart:  1 hour",
            "Speed:       16440 km/h",
            "What to do:\n  1. Confirm with the owner",
            "  2. If not, deactivate",
            "  eu-central-1: https://eu-central-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-central-1#/events?AccessKeyId=AKIAIOSFODNN7EXAMPLE",
            "  ap-southeast-2: https://ap-southeast-2.console.aws.amazon.com/cloudtrailv2/home?region=ap-southeast-2#/events?AccessKeyId=AKIAIOSFODNN7EXAMPLE",
            "Identity:   arn:aws:iam::123456789012:user/alice",
            "Finding id:  0123456789abcdef0123456789abcdef",
        ] {
            assert!(email.contains(want), "email lacks {want:?}:\n{email}");
        }
    }

    #[test]
    fn chat_notification_follows_chatbots_custom_schema() {
        let chat: serde_json::Value =
            serde_json::from_str(&render_chat(&sample_finding()).to_json())
                .expect("chat JSON parses");
        assert_eq!(chat["version"], "1.0");
        assert_eq!(chat["source"], "custom");
        let content = &chat["content"];
        assert_eq!(content["textType"], "client-markdown");
        let title = content["title"].as_str().expect("title");
        assert!(
            title.contains("[HIGH] Impossible travel") && title.contains("`AKIAIOSFODNN7EXAMPLE`"),
            "{title}"
        );
        let description = content["description"].as_str().expect("description");
        assert!(
            description.contains("*Sydney, Australia* → *Frankfurt am Main, Germany*"),
            "{description}"
        );
        assert!(
            description
                .contains("• *From* `203.0.113.10` Sydney, Australia (AU) (AS64500 Example Net)"),
            "{description}"
        );
        assert!(
            description.contains("`arn:aws:iam::123456789012:user/alice`"),
            "{description}"
        );
        let steps: Vec<&str> = content["nextSteps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|s| s.as_str())
            .collect();
        assert_eq!(
            steps.len(),
            4,
            "two triage steps and two regional links: {steps:?}"
        );
        assert!(steps[2].contains("<https://eu-central-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-central-1#/events?AccessKeyId=AKIAIOSFODNN7EXAMPLE|CloudTrail event history (eu-central-1)>"));
        assert_eq!(
            content["keywords"],
            serde_json::json!(["high", "impossible_travel", "123456789012"])
        );
        let meta = &chat["metadata"];
        assert!(meta["threadId"]
            .as_str()
            .is_some_and(|t| t.starts_with("geotrail-")));
        assert_eq!(meta["eventType"], "impossible_travel");
        assert_eq!(
            meta["relatedResources"][1],
            "arn:aws:iam::123456789012:user/alice"
        );
        assert_eq!(
            meta["additionalContext"]["finding_id"],
            "0123456789abcdef0123456789abcdef"
        );
        for key in ["summary", "threadId", "eventType"] {
            assert!(meta[key].is_string(), "{key}");
        }
    }

    #[test]
    fn hostile_fields_reach_no_rendering_as_markup() {
        let f = hostile_finding();
        let chat: serde_json::Value =
            serde_json::from_str(&render_chat(&f).to_json()).expect("chat JSON");
        let mut texts = vec![
            chat["content"]["title"].as_str().expect("title").to_owned(),
            chat["content"]["description"]
                .as_str()
                .expect("description")
                .to_owned(),
            chat["metadata"]["summary"]
                .as_str()
                .expect("summary")
                .to_owned(),
        ];
        for key in ["nextSteps", "keywords"] {
            texts.extend(
                chat["content"][key]
                    .as_array()
                    .expect("list")
                    .iter()
                    .filter_map(|s| s.as_str())
                    .map(str::to_owned),
            );
        }
        texts.extend(
            chat["metadata"]["relatedResources"]
                .as_array()
                .expect("list")
                .iter()
                .filter_map(|s| s.as_str())
                .map(str::to_owned),
        );
        for text in &texts {
            for bad in [
                "<!", "<http", "@here", "@channel", "](http", "*boom*", "\nFAKE", "evil>",
            ] {
                assert!(!text.contains(bad), "chat text {text:?} contains {bad:?}");
            }
        }
        // The region and key failed validation: no link is built from them.
        assert!(!chat["content"]["nextSteps"]
            .to_string()
            .contains("console.aws.amazon.com"));

        let email = render_email(&f);
        let subject = render_subject(&f);
        assert!(
            !email.contains("\nFAKE LINE"),
            "no forged line in the email:\n{email}"
        );
        assert!(
            !email.contains("console.aws.amazon.com"),
            "no URL from a hostile region or key:\n{email}"
        );
        for bad in ["<!", "<http", "@here", "@channel"] {
            assert!(!email.contains(bad), "the email contains {bad:?}:\n{email}");
            assert!(
                !subject.contains(bad),
                "the subject contains {bad:?}: {}",
                subject
            );
        }
        assert!(
            subject.is_ascii() && !subject.contains('\n') && subject.len() <= MAX_SUBJECT_CHARS,
            "{:?}",
            subject
        );
    }

    #[test]
    fn subject_is_short_ascii_on_one_line() {
        let mut f = sample_finding();
        type Change = Box<dyn Fn(&mut Finding)>;
        let cases: Vec<(&str, Change, &str)> = vec![
            ("accents folded", Box::new(|f: &mut Finding| {
                if let Some(t) = &mut f.impossible_travel {
                    t.triggering_locations.first_location.city = Some("São Paulo".into());
                    t.triggering_locations.second_location.city = Some("Zürich".into());
                }
            }), "[HIGH] Impossible travel: AKIAIOSFODNN7EXAMPLE Sao Paulo -> Zurich"),
            ("non-Latin city falls back to the country", Box::new(|f: &mut Finding| {
                if let Some(t) = &mut f.impossible_travel {
                    t.triggering_locations.second_location.city = Some("東京".into());
                    t.triggering_locations.second_location.country = Some("Japan".into());
                }
            }), "[HIGH] Impossible travel: AKIAIOSFODNN7EXAMPLE Sao Paulo -> Japan"),
            ("concurrent", Box::new(|f: &mut Finding| {
                if let Some(t) = &mut f.impossible_travel {
                    t.concurrent_use = true;
                }
            }), "[HIGH] Concurrent use: AKIAIOSFODNN7EXAMPLE Sao Paulo -> Japan"),
            ("long principal keeps its tail", Box::new(|f: &mut Finding| {
                f.subject = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_AdministratorAccess_0123456789abcdef/alice@example.com".into();
            }), "[HIGH] Concurrent use: ...ss_0123456789abcdef/alice@example.com Sao Paulo -> Japan"),
        ];
        for (case, change, want) in cases {
            change(&mut f);
            let subject = render_subject(&f);
            assert_eq!(subject, want, "{case}");
            assert!(subject.len() <= MAX_SUBJECT_CHARS, "{case}");
        }
        if let Some(t) = &mut f.impossible_travel {
            t.triggering_locations.first_location.city = Some("Llanfair\npwllgwyngyll".repeat(10));
        }
        let subject = render_subject(&f);
        assert!(
            subject.len() <= MAX_SUBJECT_CHARS
                && subject.is_ascii()
                && !subject.contains('\n')
                && subject.ends_with("..."),
            "{subject}"
        );
    }

    #[test]
    fn links_only_for_well_formed_regions_and_keys() {
        let cases = [
            ("us-east-1", "AKIAIOSFODNN7EXAMPLE", true),
            ("us-east-1", "ASIAXXXXXXXXXXXXXXXX", true),
            ("us-east-1", "akia-lower", false),
            ("us-east-1#x", "AKIAIOSFODNN7EXAMPLE", false),
            ("", "AKIAIOSFODNN7EXAMPLE", false),
            ("us-east-1", "AKIA|x>", false),
        ];
        for (region, key, ok) in cases {
            assert_eq!(
                cloudtrail_history_url(region, key).is_some(),
                ok,
                "{region} {key}"
            );
        }
    }

    #[test]
    fn text_shows_both_places_the_journey_and_the_triage() {
        let text = render_text(&sample_finding());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "[HIGH] Impossible travel of AKIAIOSFODNN7EXAMPLE from Sydney, Australia to Frankfurt am Main, Germany (0123456789abcdef0123456789abcdef)",
                "  `AKIAIOSFODNN7EXAMPLE` had activity from Sydney, Australia and Frankfurt am Main, Germany which are approximately 16480km apart within 1 hour. This indicates a potential impossible travel.",
                "  from 2023-07-10T10:00:00Z 203.0.113.10 (Sydney, Australia ±20 km) AS64500 Example Net  ec2.amazonaws.com DescribeInstances in ap-southeast-2  event ev-1",
                "  to   2023-07-10T11:00:00Z 198.51.100.7 (Frankfurt am Main, Germany ±20 km) AS64500 Example Net  ec2.amazonaws.com DescribeInstances in eu-central-1  event ev-2",
                "  distance 16480 km (at least 16440 km given the accuracy radii) in 1 hour: 16440 km/h",
                "  identity arn:aws:iam::123456789012:user/alice",
                "  account  123456789012",
                "  object   s3://trail-bucket/AWSLogs/123456789012/CloudTrail/eu-central-1/2023/07/10/x.json.gz",
                "  geoip    GeoLite2-City built 2023-06-29T00:53:20Z",
                "  triage 1. Confirm with the owner of access key AKIAIOSFODNN7EXAMPLE whether it should be used from both places.",
                "  triage 2. If not, deactivate the access key AKIAIOSFODNN7EXAMPLE.",
            ]
        );
        assert_eq!(sample_finding().to_text(), text, "one text rendering");
    }

    #[test]
    fn a_key_used_in_another_account_shows_both_accounts() {
        let mut f = sample_finding();
        f.account_id = Some("210987654321".to_owned());
        assert!(
            render_text(&f).contains("  account  210987654321 called, key of account 123456789012"),
            "{}",
            render_text(&f)
        );
        let email = render_email(&f);
        assert!(
            email.contains("  Account:    210987654321 (called)"),
            "{email}"
        );
        assert!(
            email.contains("  Key owner:  account 123456789012"),
            "{email}"
        );
        let chat: serde_json::Value = serde_json::from_str(&render_chat(&f).to_json()).unwrap();
        let context = &chat["metadata"]["additionalContext"];
        assert_eq!(context["account_id"], "210987654321");
        assert_eq!(context["credential_account_id"], "123456789012");
        // One account: no second line.
        assert!(!render_email(&sample_finding()).contains("Key owner"));
    }

    #[test]
    fn a_finding_without_its_rule_block_renders_what_every_finding_has() {
        // What a new rule's findings look like before the rule has a rendering of its own.
        let mut f = sample_finding();
        f.impossible_travel = None;

        let text = render_text(&f);
        for want in [
            "[HIGH] Impossible travel of AKIAIOSFODNN7EXAMPLE",
            "  `AKIAIOSFODNN7EXAMPLE` had activity from Sydney",
            "  identity arn:aws:iam::123456789012:user/alice",
            "  triage 2. If not, deactivate",
        ] {
            assert!(text.contains(want), "text lacks {want:?}:\n{text}");
        }
        assert!(!text.contains("distance"), "{text}");

        let email = render_email(&f);
        for want in [
            "[HIGH] Impossible travel of AKIAIOSFODNN7EXAMPLE",
            "had activity from Sydney",
            "Who:\n  Subject:    AKIAIOSFODNN7EXAMPLE (access_key)",
            "What to do:\n  1. Confirm with the owner",
            "Finding id:  0123456789abcdef0123456789abcdef",
        ] {
            assert!(email.contains(want), "email lacks {want:?}:\n{email}");
        }
        assert!(!email.contains("From:"), "{email}");

        let subject = render_subject(&f);
        assert!(
            subject.starts_with("[HIGH] Impossible travel of AKIAIOSFODNN7EXAMPLE from Sydney")
                && subject.len() <= MAX_SUBJECT_CHARS,
            "{subject}"
        );

        let chat = render_chat(&f);
        assert_eq!(
            chat.content.title,
            format!(":rotating_light: [HIGH] {}", escape_for_chat(&f.title))
        );
        let description = &chat.content.description;
        assert!(
            description.starts_with("ˋAKIAIOSFODNN7EXAMPLEˋ had activity from Sydney")
                && description.contains("• *Identity* `arn:aws:iam::123456789012:user/alice`"),
            "{description}"
        );
        assert_eq!(chat.content.next_steps.len(), 2, "the triage, and no link");
    }
}
