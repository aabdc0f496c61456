//! `SnsNotifier`: one SNS message per finding, shaped for every kind of subscriber.
//!
//! Each message is published with `MessageStructure=json`, so that each protocol gets its
//! own rendering:
//!
//! - `default`, `sqs`, `lambda`: the finding JSON ([`Finding::to_json`]), for machines;
//! - `email`: a plain-text report for people;
//! - `https`: an AWS Chatbot (Amazon Q Developer in chat applications) custom
//!   notification, so that a Chatbot subscription renders it in Slack or Teams.
//!
//! Message attributes `rule`, `severity`, `account_id` (the account called),
//! `credential_account_id` (the account that owns the credential) and `subject` (strings)
//! and `severity_rank` (a number, [`severity_rank`]) let subscriptions filter
//! (`{"severity": ["high", "critical"]}`, `{"severity_rank": [{"numeric": [">=", 2]}]}`).
//!
//! The renderings themselves, and the escaping of attacker-controlled text in them, are
//! the core's ([`crate::finding::render`]); this module is the transport: the message,
//! its size budget, batching and retries. The finding JSON is data and is never altered.

use std::collections::HashMap;
use std::ops::Range;

use aws_sdk_sns::types::{BatchResultErrorEntry, MessageAttributeValue, PublishBatchRequestEntry};
use aws_sdk_sns::Client;
use serde::Serialize;

use super::backoff::Backoff;
use super::batch::{self, is_retriable_call_error, is_retriable_code, send_with_retries};
use super::batch::{AttemptError, EntryFailure};
use crate::finding::render::{
    render_chat, render_email, render_subject, sanitize_plain, truncate_email, ChatNotification,
};
use crate::finding::{Finding, Severity};
use crate::notify::{Notifier, NotifyError};

/// SNS's limit on one message, body and attributes together (and on one PublishBatch).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// PublishBatch takes at most 10 entries.
pub const PUBLISH_BATCH_MAX_ENTRIES: usize = 10;

#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
    backoff: Backoff,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> SnsNotifier {
        SnsNotifier {
            client,
            topic_arn: topic_arn.into(),
            backoff: Backoff::default(),
        }
    }

    /// Replaces the retry policy for throttled calls and failed entries.
    pub fn with_backoff(mut self, backoff: Backoff) -> SnsNotifier {
        self.backoff = backoff;
        self
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    async fn send_batch(
        &self,
        messages: &[SnsMessage],
        indices: Vec<usize>,
    ) -> Result<Vec<EntryFailure>, AttemptError> {
        let mut entries = Vec::with_capacity(indices.len());
        let mut ids = Vec::with_capacity(indices.len());
        for i in indices {
            let Some(m) = messages.get(i) else { continue };
            ids.push(m.finding_id.as_str());
            entries.push(batch_entry(i, m).map_err(|e| AttemptError {
                retriable: false,
                error: backend(
                    &self.topic_arn,
                    format!("building the entry of finding {}", m.finding_id),
                    Some(e.into()),
                ),
            })?);
        }
        let count = entries.len();
        match self
            .client
            .publish_batch()
            .topic_arn(&self.topic_arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => Ok(output.failed().iter().map(entry_failure).collect()),
            Err(err) => {
                let retriable = is_retriable_call_error(&err);
                Err(AttemptError {
                    retriable,
                    error: backend(
                        &self.topic_arn,
                        format!(
                            "PublishBatch of {count} findings ({}) failed",
                            ids.join(", ")
                        ),
                        Some(err.into()),
                    ),
                })
            }
        }
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, findings: &[Finding]) -> Result<(), NotifyError> {
        let mut messages = Vec::with_capacity(findings.len());
        for finding in findings {
            let message = render_sns_message(finding).map_err(|e| {
                let what = format!("finding {} cannot be published", finding.finding_id);
                backend(&self.topic_arn, what, Some(Box::new(e)))
            })?;
            messages.push(message);
        }
        let sink = format!("topic {}", self.topic_arn);
        for range in pack_batches(&messages) {
            let batch = &messages[range];
            let ids: Vec<&str> = batch.iter().map(|m| m.finding_id.as_str()).collect();
            send_with_retries(
                &sink,
                "PublishBatch",
                &ids,
                &self.backoff,
                |indices| self.send_batch(batch, indices),
                tokio::time::sleep,
            )
            .await?;
        }
        Ok(())
    }
}

fn backend(
    topic: &str,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> NotifyError {
    NotifyError::Backend {
        notifier: format!("topic {topic}"),
        message,
        source,
    }
}

fn batch_entry(
    index: usize,
    m: &SnsMessage,
) -> Result<PublishBatchRequestEntry, aws_sdk_sns::error::BuildError> {
    let mut attributes = HashMap::with_capacity(m.attributes.len());
    for a in &m.attributes {
        attributes.insert(
            a.name.to_owned(),
            MessageAttributeValue::builder()
                .data_type(a.data_type.as_str())
                .string_value(&a.value)
                .build()?,
        );
    }
    PublishBatchRequestEntry::builder()
        // Unique within the batch is all SNS asks; the index maps failures back.
        .id(format!("m{index}"))
        .message(&m.message_json)
        .message_structure("json")
        .subject(&m.subject)
        .set_message_attributes(Some(attributes))
        .build()
}

/// A failed entry of PublishBatch, by its index in the batch (its id is `m{index}`):
/// retried unless SNS blames the sender, and even then when its code is throttling or a
/// server fault.
fn entry_failure(f: &BatchResultErrorEntry) -> EntryFailure {
    EntryFailure {
        index: f.id().strip_prefix('m').and_then(|n| n.parse().ok()),
        reported: f.id().to_owned(),
        code: f.code().to_owned(),
        message: f.message().map(str::to_owned),
        retriable: !f.sender_fault() || is_retriable_code(f.code()),
    }
}

/// Splits messages into PublishBatch calls: at most 10 entries, and at most 256 KB in
/// all, which SNS enforces on the whole batch as well as on each message.
fn pack_batches(messages: &[SnsMessage]) -> Vec<Range<usize>> {
    let sizes: Vec<usize> = messages.iter().map(SnsMessage::size).collect();
    batch::pack(&sizes, PUBLISH_BATCH_MAX_ENTRIES, MAX_MESSAGE_BYTES)
}

/// One finding, ready for `Publish`/`PublishBatch` with `MessageStructure=json`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnsMessage {
    pub finding_id: String,
    /// ASCII, one line, at most [`MAX_SUBJECT_CHARS`](crate::finding::render::MAX_SUBJECT_CHARS).
    pub subject: String,
    /// `{"default": ..., "sqs": ..., "lambda": ..., "email": ..., "https": ...}`.
    pub message_json: String,
    /// Message attributes, none empty.
    pub attributes: Vec<MessageAttribute>,
}

/// One SNS message attribute, for subscription filter policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttribute {
    pub name: &'static str,
    pub data_type: AttributeType,
    /// SNS carries numbers as strings too.
    pub value: String,
}

/// The SNS data types geotrail publishes. Numeric filter conditions (`{"numeric": ...}`)
/// match only attributes of type `Number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    String,
    Number,
}

impl AttributeType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeType::String => "String",
            AttributeType::Number => "Number",
        }
    }
}

impl SnsMessage {
    /// What SNS counts against [`MAX_MESSAGE_BYTES`] (the subject included, to be safe).
    pub fn size(&self) -> usize {
        self.message_json.len()
            + self.subject.len()
            + self
                .attributes
                .iter()
                .map(|a| a.name.len() + a.data_type.as_str().len() + a.value.len())
                .sum::<usize>()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("finding {finding_id}: its JSON makes a {bytes}-byte SNS message, over the {limit}-byte limit")]
    TooLarge {
        finding_id: String,
        bytes: usize,
        limit: usize,
    },
}

#[derive(Serialize)]
struct StructuredMessage<'a> {
    default: &'a str,
    sqs: &'a str,
    lambda: &'a str,
    email: &'a str,
    https: &'a str,
}

/// Renders the SNS message of one finding: subject, the per-protocol JSON and the
/// attributes. The finding JSON is never cut; when the whole would pass SNS's 256 KB,
/// the email and chat renderings are shortened, and a finding whose JSON alone is too
/// big is an error naming it.
pub fn render_sns_message(finding: &Finding) -> Result<SnsMessage, RenderError> {
    let json = escape_xml_invalid(&finding.to_json());
    let subject = render_subject(finding);
    let attributes = message_attributes(finding);
    let mut message = SnsMessage {
        finding_id: finding.finding_id.clone(),
        subject,
        message_json: String::new(),
        attributes,
    };
    let assemble = |email: &str, https: &str| {
        serde_json::to_string(&StructuredMessage {
            default: &json,
            sqs: &json,
            lambda: &json,
            email,
            https,
        })
        .expect("a struct of strings always serializes")
    };

    let email = escape_xml_invalid(&render_email(finding));
    let chat = render_chat(finding);
    message.message_json = assemble(&email, &chat_json(&chat));
    if message.size() <= MAX_MESSAGE_BYTES {
        return Ok(message);
    }

    message.message_json = assemble("", "");
    let bare = message.size();
    if bare > MAX_MESSAGE_BYTES {
        return Err(RenderError::TooLarge {
            finding_id: finding.finding_id.clone(),
            bytes: bare,
            limit: MAX_MESSAGE_BYTES,
        });
    }
    // The two text renderings share what is left; each is measured as it will be encoded.
    let share = (MAX_MESSAGE_BYTES - bare) / 2;
    let email = shrink_to_fit(email.len(), share, |cap| truncate_email(&email, cap));
    let https = shrink_to_fit(chat.content.description.len(), share, |cap| {
        chat_json(&chat.with_description_within(cap))
    });
    message.message_json = assemble(&email, &https);
    if message.size() > MAX_MESSAGE_BYTES {
        // Only reachable if the chat rendering's fixed parts alone overflow: drop it.
        message.message_json = assemble(&email, "");
    }
    Ok(message)
}

/// The longest rendering `render(cap)` whose JSON-string encoding fits `budget` bytes,
/// found by shrinking `cap` in proportion to the overshoot; "" if none does.
fn shrink_to_fit(full_len: usize, budget: usize, render: impl Fn(usize) -> String) -> String {
    let mut cap = full_len;
    for _ in 0..16 {
        let text = render(cap);
        let encoded = serde_json::to_string(&text).map_or(usize::MAX, |s| s.len());
        if encoded <= budget {
            return text;
        }
        let scaled = (cap as u128 * budget as u128 * 9 / 10 / encoded.max(1) as u128) as usize;
        cap = scaled.min(cap.saturating_sub(1));
        if cap == 0 {
            break;
        }
    }
    String::new()
}

/// SNS bodies must be valid XML characters; JSON allows U+FFFE and U+FFFF raw, so write
/// them as escapes (they can only occur inside JSON strings, where that is equivalent).
fn escape_xml_invalid(json: &str) -> String {
    if !json.contains(['\u{FFFE}', '\u{FFFF}']) {
        return json.to_owned();
    }
    json.replace('\u{FFFE}', "\\ufffe")
        .replace('\u{FFFF}', "\\uffff")
}

/// `rule`, `severity`, `severity_rank`, `account_id`, `credential_account_id`, `subject`,
/// skipping empty values (SNS refuses them).
pub fn message_attributes(finding: &Finding) -> Vec<MessageAttribute> {
    let string = |name, value: &str| MessageAttribute {
        name,
        data_type: AttributeType::String,
        value: sanitize_plain(value).trim().to_owned(),
    };
    let candidates = [
        string("rule", finding.rule.as_str()),
        string("severity", finding.severity.as_str()),
        MessageAttribute {
            name: "severity_rank",
            data_type: AttributeType::Number,
            value: severity_rank(finding.severity).to_string(),
        },
        string(
            "account_id",
            finding.account_id.as_deref().unwrap_or_default(),
        ),
        string(
            "credential_account_id",
            finding.credential_account_id.as_deref().unwrap_or_default(),
        ),
        string("subject", &finding.subject),
    ];
    candidates
        .into_iter()
        .filter(|a| !a.value.is_empty())
        .collect()
}

/// The `severity_rank` attribute: 0 for info up to 4 for critical, so that one numeric
/// condition selects a minimum severity. Subscriptions' filter policies hold these
/// numbers: they are part of the published interface and never change meaning.
pub fn severity_rank(severity: Severity) -> u8 {
    match severity {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

/// The chat notification as the `https` body.
fn chat_json(chat: &ChatNotification) -> String {
    escape_xml_invalid(&chat.to_json())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::finding::render::samples::{hostile_finding, sample_finding};
    use crate::finding::render::MAX_SUBJECT_CHARS;

    #[test]
    fn message_carries_the_finding_json_for_machines_and_renderings_for_people() {
        let f = sample_finding();
        let m = render_sns_message(&f).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&m.message_json).expect("message is JSON");
        for key in ["default", "sqs", "lambda"] {
            let inner: Finding =
                serde_json::from_str(v[key].as_str().expect("a string")).expect("the finding JSON");
            assert_eq!(inner, f, "{key}");
        }
        assert!(v["email"]
            .as_str()
            .expect("email text")
            .contains("Frankfurt am Main"));
        let chat: serde_json::Value =
            serde_json::from_str(v["https"].as_str().expect("chat JSON")).expect("chat is JSON");
        assert_eq!(chat["version"], "1.0");
        assert_eq!(
            m.subject,
            "[HIGH] Impossible travel: AKIAIOSFODNN7EXAMPLE Sydney -> Frankfurt am Main"
        );
        let attributes: Vec<(&str, &str, &str)> = m
            .attributes
            .iter()
            .map(|a| (a.name, a.data_type.as_str(), a.value.as_str()))
            .collect();
        assert_eq!(
            attributes,
            [
                ("rule", "String", "impossible_travel"),
                ("severity", "String", "high"),
                ("severity_rank", "Number", "3"),
                ("account_id", "String", "123456789012"),
                ("credential_account_id", "String", "123456789012"),
                ("subject", "String", "AKIAIOSFODNN7EXAMPLE")
            ]
        );
        assert!(m.size() < MAX_MESSAGE_BYTES);
    }

    #[test]
    fn bodies_are_the_core_renderings_and_the_finding_json_is_untouched() {
        // The core's tests show these renderings inert for a hostile finding; here, that
        // the message carries exactly them, and the finding JSON round-trips untouched.
        let f = hostile_finding();
        let m = render_sns_message(&f).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&m.message_json).expect("JSON");

        let chat: serde_json::Value =
            serde_json::from_str(v["https"].as_str().expect("chat")).expect("chat JSON");
        let core_chat: serde_json::Value =
            serde_json::from_str(&render_chat(&f).to_json()).expect("core chat JSON");
        assert_eq!(chat, core_chat);
        assert_eq!(v["email"].as_str().expect("email"), render_email(&f));
        assert_eq!(m.subject, render_subject(&f));
        assert!(
            m.subject.is_ascii()
                && !m.subject.contains('\n')
                && m.subject.len() <= MAX_SUBJECT_CHARS,
            "{:?}",
            m.subject
        );

        // The finding JSON is data: it round-trips untouched.
        let inner: Finding =
            serde_json::from_str(v["default"].as_str().expect("default")).expect("finding");
        assert_eq!(inner, f);
    }

    #[test]
    fn empty_attributes_are_left_out() {
        let mut f = sample_finding();
        f.account_id = Some(String::new());
        let names: Vec<&str> = message_attributes(&f).into_iter().map(|a| a.name).collect();
        assert_eq!(
            names,
            [
                "rule",
                "severity",
                "severity_rank",
                "credential_account_id",
                "subject"
            ]
        );
        f.account_id = None;
        f.credential_account_id = None;
        assert_eq!(message_attributes(&f).len(), 4);
    }

    #[test]
    fn every_severity_carries_its_rank_as_a_number() {
        let ranked = [
            (Severity::Info, "0"),
            (Severity::Low, "1"),
            (Severity::Medium, "2"),
            (Severity::High, "3"),
            (Severity::Critical, "4"),
        ];
        for (severity, rank) in ranked {
            let mut f = sample_finding();
            f.severity = severity;
            let attributes = message_attributes(&f);
            let got = attributes
                .iter()
                .find(|a| a.name == "severity_rank")
                .unwrap_or_else(|| panic!("{severity}: no severity_rank in {attributes:?}"));
            assert_eq!(
                (got.data_type, got.value.as_str()),
                (AttributeType::Number, rank),
                "{severity}"
            );
        }
    }

    #[test]
    fn oversized_text_is_truncated_but_the_json_never_is() {
        let mut f = sample_finding();
        // ~68 KB of triage (with characters JSON escapes): three copies of the JSON fit in
        // 256 KB, the email on top does not.
        f.triage = (0..65)
            .map(|i| format!("step {i}: {}{}", "x".repeat(1000), "\"<é".repeat(10)))
            .collect();
        let m = render_sns_message(&f).expect("fits after truncating the texts");
        assert!(m.size() <= MAX_MESSAGE_BYTES, "size {}", m.size());
        let v: serde_json::Value = serde_json::from_str(&m.message_json).expect("JSON");
        let inner: Finding =
            serde_json::from_str(v["sqs"].as_str().expect("sqs")).expect("finding");
        assert_eq!(inner, f, "the finding JSON is complete");
        assert!(v["email"].as_str().expect("email").ends_with("[truncated]"));
    }

    #[test]
    fn a_finding_whose_json_alone_is_too_big_is_refused_by_id() {
        let mut f = sample_finding();
        f.summary = "x".repeat(MAX_MESSAGE_BYTES / 2);
        let err = render_sns_message(&f).expect_err("three copies of 128 KB cannot fit");
        assert!(err.to_string().contains(&f.finding_id), "{err}");
    }

    fn message(id: &str, bytes: usize) -> SnsMessage {
        SnsMessage {
            finding_id: id.to_owned(),
            subject: String::new(),
            message_json: "x".repeat(bytes),
            attributes: Vec::new(),
        }
    }

    #[test]
    fn batches_hold_at_most_ten_entries_and_256_kb() {
        // (case, message sizes, batches as (start, end))
        type Case<'a> = (&'a str, &'a [usize], &'a [(usize, usize)]);
        let cases: [Case; 6] = [
            ("none", &[], &[]),
            ("one", &[100], &[(0, 1)]),
            ("ten small", &[100; 10], &[(0, 10)]),
            (
                "twenty-three small",
                &[100; 23],
                &[(0, 10), (10, 20), (20, 23)],
            ),
            (
                "big ones alone",
                &[200_000, 200_000, 60_000, 10_000],
                &[(0, 1), (1, 3), (3, 4)],
            ),
            (
                "exactly the limit",
                &[MAX_MESSAGE_BYTES / 2, MAX_MESSAGE_BYTES / 2, 1],
                &[(0, 2), (2, 3)],
            ),
        ];
        for (case, sizes, want) in cases {
            let want: Vec<Range<usize>> = want.iter().map(|&(a, b)| a..b).collect();
            let messages: Vec<SnsMessage> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| message(&i.to_string(), n))
                .collect();
            assert_eq!(pack_batches(&messages), want, "{case}");
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
            .block_on(f)
    }

    /// An entry PublishBatch reports failed, as SNS answers it.
    fn failure(id: &str, code: &str, sender_fault: bool) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .code(code)
            .message("nope")
            .sender_fault(sender_fault)
            .build()
            .expect("a failed entry")
    }

    type Script = Vec<Result<Vec<BatchResultErrorEntry>, AttemptError>>;

    /// Publishes `n` messages through the shared retry loop, SNS's answers scripted.
    fn run_script(
        script: Script,
        n: usize,
        backoff: Backoff,
    ) -> (Result<(), NotifyError>, Vec<Vec<usize>>, usize) {
        let ids: Vec<String> = (0..n).map(|i| format!("finding-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let script = RefCell::new(script.into_iter().rev().collect::<Vec<_>>());
        let sent = RefCell::new(Vec::new());
        let sleeps = RefCell::new(0);
        let result = run(send_with_retries(
            "topic arn:aws:sns:us-east-1:123456789012:t",
            "PublishBatch",
            &ids,
            &backoff,
            |indices| {
                sent.borrow_mut().push(indices);
                let answer = script.borrow_mut().pop().unwrap_or(Ok(Vec::new()));
                std::future::ready(answer.map(|failed| failed.iter().map(entry_failure).collect()))
            },
            |_| {
                *sleeps.borrow_mut() += 1;
                std::future::ready(())
            },
        ));
        (result, sent.into_inner(), sleeps.into_inner())
    }

    fn throttled() -> AttemptError {
        AttemptError {
            retriable: true,
            error: NotifyError::Backend {
                notifier: "topic t".into(),
                message: "Throttled".into(),
                source: None,
            },
        }
    }

    #[test]
    fn failed_entries_are_retried_when_retriable_and_reported_by_finding_otherwise() {
        let backoff = Backoff {
            max_attempts: 4,
            ..Backoff::default()
        };
        // (case, script, entries, ok, calls: the indices sent each time)
        type Case = (&'static str, Script, usize, bool, Vec<Vec<usize>>);
        let cases: Vec<Case> = vec![
            (
                "all accepted",
                vec![Ok(vec![])],
                3,
                true,
                vec![vec![0, 1, 2]],
            ),
            (
                "a throttled entry is sent again alone",
                vec![Ok(vec![failure("m1", "Throttled", true)]), Ok(vec![])],
                3,
                true,
                vec![vec![0, 1, 2], vec![1]],
            ),
            (
                "a server fault is retried",
                vec![
                    Ok(vec![
                        failure("m0", "InternalError", false),
                        failure("m2", "InternalError", false),
                    ]),
                    Ok(vec![]),
                ],
                3,
                true,
                vec![vec![0, 1, 2], vec![0, 2]],
            ),
            (
                "KMS behind the topic is retried, whoever SNS blames",
                vec![Ok(vec![failure("m0", "KMSUnavailable", true)]), Ok(vec![])],
                2,
                true,
                vec![vec![0, 1], vec![0]],
            ),
            (
                "a throttled call is retried whole",
                vec![Err(throttled()), Ok(vec![])],
                2,
                true,
                vec![vec![0, 1], vec![0, 1]],
            ),
            (
                "a refused entry fails the publish",
                vec![Ok(vec![failure("m1", "InvalidParameter", true)])],
                3,
                false,
                vec![vec![0, 1, 2]],
            ),
            (
                "retries are bounded",
                vec![
                    Err(throttled()),
                    Err(throttled()),
                    Err(throttled()),
                    Err(throttled()),
                    Err(throttled()),
                ],
                1,
                false,
                vec![vec![0]; 4],
            ),
            (
                "an unknown entry id is an error, not a silent loss",
                vec![Ok(vec![failure("zz", "Throttled", true)])],
                1,
                false,
                vec![vec![0]],
            ),
            (
                "an id of an entry not sent is an error, not a silent loss",
                vec![
                    Ok(vec![failure("m1", "Throttled", true)]),
                    Ok(vec![failure("m0", "Throttled", true)]),
                ],
                2,
                false,
                vec![vec![0, 1], vec![1]],
            ),
        ];
        for (case, script, n, ok, calls) in cases {
            let (result, sent, sleeps) = run_script(script, n, backoff);
            assert_eq!(result.is_ok(), ok, "{case}: {result:?}");
            assert_eq!(sent, calls, "{case}");
            assert_eq!(
                sleeps,
                calls.len() - 1,
                "{case}: one backoff before each retry"
            );
        }
    }

    #[test]
    fn a_refused_entry_names_its_finding_and_the_topic() {
        let (result, _, _) = run_script(
            vec![Ok(vec![failure("m1", "InvalidParameter", true)])],
            2,
            Backoff::default(),
        );
        let msg = result.expect_err("refused").to_string();
        assert!(
            msg.contains("finding-1")
                && msg.contains("InvalidParameter")
                && msg.contains("topic arn:aws:sns")
                && !msg.contains("finding-0"),
            "{msg}"
        );
    }
}
