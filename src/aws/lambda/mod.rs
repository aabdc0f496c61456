//! The Lambda entry point: S3 notifications in, findings to SNS (and, when configured, to
//! Security Hub and an EventBridge bus), state in DynamoDB.
//!
//! `bootstrap` builds a [`Handler`] once per execution environment (clients, the GeoIP
//! reader, the policy) and hands every invocation to [`Handler::handle`]. The handler:
//!
//! 1. skips digest files by key, before any GetObject;
//! 2. streams each object out of S3 into [`scan_object`] on a blocking thread, a few
//!    at once;
//! 3. commits the scans of the invocation together ([`commit_scans`]: each subject
//!    loaded and saved once for all of them; publish, then save; see `pipeline`'s
//!    documentation for why that order loses no finding);
//! 4. sends every object no retry can judge to the dead-letter queue;
//! 5. logs one summary line per object, and prints the invocation's EMF metrics.
//!
//! What fails what: only faults a retry can fix (throttling, 5xx, network, lost races)
//! fail the invocation, or with SQS only the message that named the object, so the rest
//! of the batch is not redelivered. A notification no retry can decode fails too, so it
//! ends in the dead-letter queue where a person can look at it instead of vanishing. A
//! malformed object is logged with its name and counted, what could be read of it is
//! still judged, and it is not retried: a retry would read the same bytes. An object
//! deleted since its event is a skip.
//!
//! Objects that need a person (access denied, a KMS key the function may not use, a
//! state item too large to save, a panic, an object past the size limit, a subject
//! whose stored state is corrupt) are sent to the dead-letter queue by the function
//! itself, one letter per object with the reason and the request id, and counted in
//! `ObjectsDeadLettered`. Failing the invocation would get them there too, but badly:
//! an S3 or EventBridge invocation is retried twice first, repeating the fault on every
//! object of the event, and Lambda's on-failure record carries the event and the last
//! error, not which object failed and why; an SQS message would be redelivered until
//! the source queue's own redrive policy moves it, with no reason at all. Only when the
//! letter cannot be sent (or no queue is configured) does the object fail its
//! invocation or message instead, so that the platform's retries and dead letters keep
//! it.

pub mod config;
pub mod dead_letter;
pub mod event;
pub mod metrics;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use futures_util::stream::{self, StreamExt};
use futures_util::FutureExt as _;
use serde::Serialize;
use tracing::{error, info, warn};

use self::config::LambdaConfig;
use self::dead_letter::{DeadLetter, DeadLetterQueue};
use self::event::{Decoded, Invocation, Notification, ObjectRef};
use self::metrics::InvocationMetrics;
use super::s3::{S3ObjectSource, S3SourceError};
use super::{
    DynamoClaims, DynamoStateStore, EventBridgeNotifier, SecurityHubNotifier, SnsNotifier,
};
use crate::cloudtrail::{self, ObjectError, ObjectSkip, ReadOptions};
use crate::detect::Policy;
use crate::geo::{GeoCache, GeoDb};
use crate::notify::claim::{ClaimPolicy, ClaimingNotifier};
use crate::notify::Fanout;
use crate::pipeline::{
    commit_scans, scan_object, CommitReport, ConflictRetry, ObjectScan, PipelineError, Quarantined,
    SkipCounts,
};

/// Objects of one invocation read at once. Most of an object's time is waiting on S3,
/// DynamoDB and SNS; a few in flight keep one vCPU busy without piling up memory (each
/// holds one decoder's buffers and its sightings).
pub(crate) const OBJECTS_IN_FLIGHT: usize = 4;
/// Fault lines logged per object; the summary line counts them all.
const MAX_FAULTS_LOGGED: usize = 10;

/// The SDK clients from one loaded configuration.
///
/// S3 uses path-style addressing when an endpoint override is set (`AWS_ENDPOINT_URL`):
/// local emulators answer on one host and cannot resolve `bucket.host` names.
pub fn clients(
    sdk: &SdkConfig,
) -> (
    aws_sdk_s3::Client,
    aws_sdk_dynamodb::Client,
    aws_sdk_sns::Client,
) {
    let s3_config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    (
        aws_sdk_s3::Client::from_conf(s3_config),
        aws_sdk_dynamodb::Client::new(sdk),
        aws_sdk_sns::Client::new(sdk),
    )
}

/// The claim channel of Security Hub's imports (SNS keeps the unprefixed keys it always had).
pub const SECURITY_HUB_CHANNEL: &str = "securityhub";
/// The claim channel of the EventBridge bus's events.
pub const EVENT_BUS_CHANNEL: &str = "eventbridge";

/// Where findings go: the SNS topic, and Security Hub and an EventBridge bus when
/// configured, each behind incident claims of its own in the state table, so that each
/// delivers each incident once and a failure of one is retried without repeating the
/// others' deliveries.
pub type FindingSinks = Fanout<
    ClaimingNotifier<DynamoClaims, SnsNotifier>,
    Fanout<
        Option<ClaimingNotifier<DynamoClaims, SecurityHubNotifier>>,
        Option<ClaimingNotifier<DynamoClaims, EventBridgeNotifier>>,
    >,
>;

/// Everything an invocation borrows, built once per execution environment.
#[derive(Debug, Clone)]
pub struct Handler {
    source: S3ObjectSource,
    store: DynamoStateStore,
    notifier: FindingSinks,
    claims: DynamoClaims,
    claim_policy: ClaimPolicy,
    geo: Arc<GeoDb>,
    policy: Arc<Policy>,
    read_options: ReadOptions,
    /// Where the decoded-size limit came from, for the message that refuses an object.
    max_object_origin: String,
    function_name: String,
    dead_letters: Option<DeadLetterQueue>,
    conflict_retry: ConflictRetry,
}

impl Handler {
    pub fn new(
        config: &LambdaConfig,
        geo: Arc<GeoDb>,
        s3: aws_sdk_s3::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        sns: aws_sdk_sns::Client,
    ) -> Handler {
        Handler {
            source: S3ObjectSource::new(s3),
            store: DynamoStateStore::new(
                dynamodb.clone(),
                config.table.clone(),
                i64::from(config.state_ttl_days),
            ),
            notifier: Fanout::new(
                ClaimingNotifier::new(
                    DynamoClaims::new(dynamodb.clone(), config.table.clone()),
                    SnsNotifier::new(sns, config.topic_arn.clone()),
                    ClaimPolicy::for_detection(&config.policy),
                ),
                Fanout::new(None, None),
            ),
            claims: DynamoClaims::new(dynamodb.clone(), config.table.clone()),
            claim_policy: ClaimPolicy::for_detection(&config.policy),
            geo,
            policy: Arc::new(config.policy.clone()),
            read_options: config.read_options(),
            max_object_origin: config.max_object_origin.clone(),
            function_name: config.function_name.clone(),
            dead_letters: None,
            conflict_retry: ConflictRetry::default(),
        }
    }

    /// Also imports every finding into Security Hub.
    pub fn with_security_hub(mut self, hub: SecurityHubNotifier) -> Handler {
        let (topic, rest) = self.notifier.into_parts();
        let (_, bus) = rest.into_parts();
        let hub = ClaimingNotifier::new(self.claims.clone(), hub, self.claim_policy)
            .with_channel(SECURITY_HUB_CHANNEL);
        self.notifier = Fanout::new(topic, Fanout::new(Some(hub), bus));
        self
    }

    /// Also puts every finding on an EventBridge bus.
    pub fn with_event_bus(mut self, events: EventBridgeNotifier) -> Handler {
        let (topic, rest) = self.notifier.into_parts();
        let (hub, _) = rest.into_parts();
        let bus = ClaimingNotifier::new(self.claims.clone(), events, self.claim_policy)
            .with_channel(EVENT_BUS_CHANNEL);
        self.notifier = Fanout::new(topic, Fanout::new(hub, Some(bus)));
        self
    }

    /// Sends objects no retry can judge to this queue (see the module documentation).
    pub fn with_dead_letters(mut self, queue: DeadLetterQueue) -> Handler {
        self.dead_letters = Some(queue);
        self
    }

    /// Replaces how long lost save races are retried.
    pub fn with_conflict_retry(mut self, retry: ConflictRetry) -> Handler {
        self.conflict_retry = retry;
        self
    }

    /// Replaces the state store (tests give it a shorter backoff).
    pub fn with_store(mut self, store: DynamoStateStore) -> Handler {
        self.store = store;
        self
    }

    /// Handles one invocation, prints its EMF metrics, and answers Lambda: a direct
    /// invocation fails as a whole when something must be retried; an SQS batch lists
    /// the messages to redeliver.
    pub async fn handle(&self, invocation: Invocation) -> Result<Response, HandlerError> {
        self.handle_request(invocation, None).await
    }

    /// [`Handler::handle`], with Lambda's request id for the dead letters.
    pub async fn handle_request(
        &self,
        invocation: Invocation,
        request_id: Option<&str>,
    ) -> Result<Response, HandlerError> {
        let report = self.process_request(invocation, request_id).await;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // EMF goes to standard output as a line of its own, outside the tracing format.
        println!("{}", report.metrics.to_emf(&self.function_name, now_ms));
        report.into_response()
    }

    /// Handles one invocation and reports what happened to every object, without
    /// deciding the answer to Lambda ([`Handler::handle`] does).
    pub async fn process(&self, invocation: Invocation) -> InvocationReport {
        self.process_request(invocation, None).await
    }

    /// [`Handler::process`], with Lambda's request id for the dead letters.
    pub async fn process_request(
        &self,
        invocation: Invocation,
        request_id: Option<&str>,
    ) -> InvocationReport {
        let started = Instant::now();
        let Decoded {
            from_sqs,
            deliveries,
        } = invocation.decode();
        let mut report = InvocationReport {
            from_sqs,
            ..InvocationReport::default()
        };

        // Flatten to (delivery, object) so objects of different messages run side by side.
        let mut work: Vec<(usize, ObjectRef)> = Vec::new();
        for (index, delivery) in deliveries.iter().enumerate() {
            let message_id = delivery.message_id.as_deref();
            match &delivery.content {
                Ok(Notification { objects, ignored }) => {
                    for reason in ignored {
                        info!(
                            message_id,
                            reason = reason.as_str(),
                            "notification names nothing to read"
                        );
                    }
                    work.extend(objects.iter().map(|o| (index, o.clone())));
                }
                Err(err) => {
                    // A message no retry will decode: left to fail into the DLQ, where a
                    // person can look at it, rather than dropped.
                    error!(message_id, error = %err, "undecodable notification");
                }
            }
        }

        let mut outcomes: Vec<(usize, ObjectOutcome)> = Vec::with_capacity(work.len());
        let mut group: Vec<(usize, ObjectOutcome, ObjectScan)> = Vec::new();
        let mut group_bytes = 0u64;
        let mut reads = stream::iter(work)
            .map(|(index, object)| async move {
                let (outcome, scan) = self.read_object(object).await;
                (index, outcome, scan)
            })
            .buffered(OBJECTS_IN_FLIGHT);
        while let Some((index, outcome, scan)) = reads.next().await {
            let Some(scan) = scan else {
                outcomes.push((index, outcome));
                continue;
            };
            group_bytes += scan.summary.as_ref().map_or(0, |s| s.bytes_decoded);
            group.push((index, outcome, scan));
            // Scans wait for one commit only up to one object limit of decoded bytes, so
            // that a large batch does not hold every object's sightings at once; the
            // objects of a typical invocation (a few MiB each) are committed together.
            if group_bytes >= self.read_options.max_decompressed_bytes.unwrap_or(u64::MAX) {
                outcomes.extend(self.commit_group(std::mem::take(&mut group)).await);
                group_bytes = 0;
            }
        }
        drop(reads);
        outcomes.extend(self.commit_group(group).await);

        for (index, outcome) in &mut outcomes {
            let message_id = deliveries[*index].message_id.as_deref();
            self.dead_letter(outcome, request_id, message_id).await;
            outcome.log();
        }

        let mut failed_deliveries = vec![false; deliveries.len()];
        for (index, delivery) in deliveries.iter().enumerate() {
            if let Err(err) = &delivery.content {
                failed_deliveries[index] = true;
                report.undecodable.push(format!(
                    "{}{err}",
                    message_prefix(delivery.message_id.as_deref())
                ));
            }
        }
        for (index, outcome) in &outcomes {
            if outcome.retry() {
                failed_deliveries[*index] = true;
            }
        }
        report.failed_messages = deliveries
            .iter()
            .zip(&failed_deliveries)
            .filter(|(_, failed)| **failed)
            .filter_map(|(d, _)| d.message_id.clone())
            .collect();
        report.objects = outcomes.into_iter().map(|(_, o)| o).collect();
        report.metrics = metrics_of(&report.objects, started);
        report
    }

    /// Commits the scans of `group` together and records each object's result.
    async fn commit_group(
        &self,
        group: Vec<(usize, ObjectOutcome, ObjectScan)>,
    ) -> Vec<(usize, ObjectOutcome)> {
        if group.is_empty() {
            return Vec::new();
        }
        let started = Instant::now();
        let (mut outcomes, scans): (Vec<(usize, ObjectOutcome)>, Vec<ObjectScan>) = group
            .into_iter()
            .map(|(index, outcome, scan)| ((index, outcome), scan))
            .unzip();
        // Boxed: the commit's future is deep enough to overflow the compiler's layout
        // recursion limit in the binary that awaits it.
        let committed = std::panic::AssertUnwindSafe(Box::pin(commit_scans(
            &scans,
            &self.policy,
            self.geo.info(),
            &self.store,
            &self.notifier,
            &self.conflict_retry,
        )))
        .catch_unwind()
        .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match committed {
            Ok(results) => {
                for ((_, outcome), result) in outcomes.iter_mut().zip(results) {
                    outcome.record_commit(result);
                    outcome.duration_ms += elapsed_ms;
                }
            }
            Err(panic) => {
                // A bug that a retry would only repeat: every object of the commit goes to
                // the dead letters with the panic's message.
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                for (_, outcome) in &mut outcomes {
                    outcome.fail(&Panicked(format!("commit panicked: {message}")), false);
                    outcome.duration_ms += elapsed_ms;
                }
            }
        }
        outcomes
    }

    /// Sends `outcome`'s object to the dead letters if it needs a person; when that is
    /// impossible, fails it for a retry instead, so the platform's dead letters keep it.
    async fn dead_letter(
        &self,
        outcome: &mut ObjectOutcome,
        request_id: Option<&str>,
        message_id: Option<&str>,
    ) {
        let Some(reason) = outcome.needs_person() else {
            return;
        };
        let Some(queue) = &self.dead_letters else {
            outcome.dead_letter_failed = Some("no dead-letter queue is configured".to_owned());
            return;
        };
        let mut letter = DeadLetter::new(&outcome.object, reason, &self.function_name);
        letter.geotrail.request_id = request_id.map(str::to_owned);
        letter.geotrail.message_id = message_id.map(str::to_owned);
        match queue.send(&letter).await {
            Ok(()) => outcome.dead_lettered = true,
            Err(err) => outcome.dead_letter_failed = Some(error_chain(&err)),
        }
    }

    /// Reads one object into a scan; `None` when there is nothing to commit (skipped,
    /// or failed before the scan), the outcome then says why.
    async fn read_object(&self, object: ObjectRef) -> (ObjectOutcome, Option<ObjectScan>) {
        let started = Instant::now();
        let mut outcome = ObjectOutcome::new(object);
        let scan = self.scan(&mut outcome).await;
        outcome.duration_ms = started.elapsed().as_millis() as u64;
        (outcome, scan)
    }

    async fn scan(&self, outcome: &mut ObjectOutcome) -> Option<ObjectScan> {
        let ObjectRef { bucket, key } = outcome.object.clone();
        if let Some(skip) = cloudtrail::skip_by_name(&key) {
            let reason = match skip {
                ObjectSkip::Digest => "digest_file",
                ObjectSkip::ConfigWritabilityCheck => "config_writability_check",
            };
            outcome.status = ObjectStatus::Skipped { reason };
            return None;
        }
        let object = match self.source.open(&bucket, &key).await {
            Ok(object) => object,
            Err(S3SourceError::NotFound { .. }) => {
                outcome.status = ObjectStatus::Skipped {
                    reason: "object_deleted",
                };
                return None;
            }
            Err(err) => {
                outcome.fail(&err, err.is_transient());
                return None;
            }
        };

        // S3's clock, which no writer of the object controls; a wall clock is the last resort.
        let written_at_ms = object
            .last_modified_ms
            .or_else(|| cloudtrail::written_at_from_name(&key))
            .unwrap_or_else(crate::clock::epoch_ms_now);
        let mut reader = object.into_reader();
        let (geo, policy, options) = (
            Arc::clone(&self.geo),
            Arc::clone(&self.policy),
            self.read_options.clone(),
        );
        let name = outcome.object.to_string();
        // Decompression and parsing are CPU work: off the async threads.
        let scanned = tokio::task::spawn_blocking(move || {
            let mut cache = GeoCache::new(&geo);
            let scan = scan_object(
                &name,
                &mut reader,
                written_at_ms,
                &mut cache,
                &policy,
                &options,
            );
            (scan, reader.take_failure())
        })
        .await;
        let scan = match scanned {
            Ok((_, Some(network))) => {
                // The connection dropped mid-body: the decoder saw a truncated stream,
                // but the bytes are fine and a retry reads them whole.
                outcome.fail(&network, true);
                return None;
            }
            Ok((scan, None)) => scan,
            // A panic in the scan is a bug that a retry would only repeat.
            Err(join) => {
                outcome.fail(&Panicked(format!("scan failed: {join}")), false);
                return None;
            }
        };
        outcome.record_scan(&scan, &self.max_object_origin);
        if scan.subjects.is_empty() {
            outcome.record_commit(Ok(CommitReport::default()));
            return None;
        }
        Some(scan)
    }
}

/// A panic, caught and reported as the object's error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Panicked(String);

fn message_prefix(message_id: Option<&str>) -> String {
    message_id
        .map(|id| format!("SQS message {id}: "))
        .unwrap_or_default()
}

fn metrics_of(objects: &[ObjectOutcome], started: Instant) -> InvocationMetrics {
    let mut m = InvocationMetrics {
        objects: objects.len() as u64,
        ..InvocationMetrics::default()
    };
    for o in objects {
        match o.status {
            ObjectStatus::Skipped { .. } => m.objects_skipped += 1,
            ObjectStatus::Malformed | ObjectStatus::Failed { .. } => m.objects_failed += 1,
            ObjectStatus::Done if !o.quarantined.is_empty() => m.objects_failed += 1,
            ObjectStatus::Pending | ObjectStatus::Done => {}
        }
        m.subjects_quarantined += o.quarantined.len() as u64;
        if o.dead_lettered {
            m.objects_dead_lettered += 1;
        }
        if o.retry() {
            m.objects_retried += 1;
        }
        if o.too_large {
            m.objects_too_large += 1;
        }
        m.records_too_large += o.records_too_large;
        m.events += o.events;
        m.skipped.merge(&o.skipped);
        m.findings += o.findings.len() as u64;
        m.state_conflicts += o.conflicts;
    }
    m.duration_ms = started.elapsed().as_millis() as u64;
    m
}

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ObjectStatus {
    /// Not finished (only seen inside the handler).
    Pending,
    /// Read whole and committed.
    Done,
    /// Not read, for the reason given: nothing to do, no retry.
    Skipped { reason: &'static str },
    /// Read with faults; what could be read was committed. Not retried.
    Malformed,
    /// Not (fully) processed; `retry`: the invocation or message is failed for it.
    Failed { retry: bool },
}

/// What happened to one object, with the counts of its summary log line.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectOutcome {
    pub bucket: String,
    pub key: String,
    #[serde(flatten)]
    pub status: ObjectStatus,
    pub events: u64,
    pub sightings: u64,
    pub subjects: u64,
    pub subjects_saved: usize,
    #[serde(skip)]
    pub skipped: SkipCounts,
    /// Ids of the findings this processing published.
    pub findings: Vec<String>,
    pub conflicts: u64,
    /// Decoded past the object limit: refused from there on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub too_large: bool,
    /// Records over the record limit, refused unread.
    #[serde(skip_serializing_if = "is_zero")]
    pub records_too_large: u64,
    /// Faults in the object's bytes, each naming the object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<String>,
    /// Why processing stopped, naming the object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Subjects whose stored state is corrupt: not judged, their items left alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<Quarantined>,
    /// Sent to the dead-letter queue, with the reason.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dead_lettered: bool,
    /// Why the object needed the dead-letter queue and could not be sent there: it is
    /// failed for a retry instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_failed: Option<String>,
    pub duration_ms: u64,
    #[serde(skip)]
    object: ObjectRef,
}

impl ObjectOutcome {
    fn new(object: ObjectRef) -> ObjectOutcome {
        ObjectOutcome {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            status: ObjectStatus::Pending,
            events: 0,
            sightings: 0,
            subjects: 0,
            subjects_saved: 0,
            skipped: SkipCounts::default(),
            findings: Vec::new(),
            conflicts: 0,
            too_large: false,
            records_too_large: 0,
            faults: Vec::new(),
            error: None,
            quarantined: Vec::new(),
            dead_lettered: false,
            dead_letter_failed: None,
            duration_ms: 0,
            object,
        }
    }

    /// The invocation (or SQS message) must fail so this object is read again, or, when
    /// it needed the dead letters and could not get there, kept by the platform's.
    pub fn retry(&self) -> bool {
        matches!(self.status, ObjectStatus::Failed { retry: true })
            || self.dead_letter_failed.is_some()
    }

    /// Why a person must look at the object and redrive it, if they must: it was not
    /// judged (or not all of it), and reading it again as it is would not change that.
    fn needs_person(&self) -> Option<String> {
        if matches!(self.status, ObjectStatus::Failed { retry: false }) {
            return self.error.clone();
        }
        if self.too_large {
            return self.error.clone();
        }
        if !self.quarantined.is_empty() {
            let subjects: Vec<String> = self
                .quarantined
                .iter()
                .map(|q| format!("subject {}: {}", q.subject, q.reason))
                .collect();
            return Some(format!(
                "{}: not judged for {} subject(s) whose stored state is unreadable: {}",
                self.object,
                subjects.len(),
                subjects.join("; ")
            ));
        }
        None
    }

    fn record_commit(&mut self, committed: Result<CommitReport, PipelineError>) {
        match committed {
            Ok(commit) => {
                self.findings = commit
                    .findings
                    .iter()
                    .map(|f| f.finding_id.clone())
                    .collect();
                self.conflicts = commit.conflicts;
                self.subjects_saved = commit.subjects_saved;
                self.quarantined = commit.quarantined;
                if self.status == ObjectStatus::Pending {
                    self.status = ObjectStatus::Done;
                }
            }
            Err(err) => self.fail(&err, err.is_transient()),
        }
    }

    fn fail(&mut self, err: &dyn std::error::Error, retry: bool) {
        // Every error type on this path names the object already, except a join error.
        let text = error_chain(err);
        let name = self.object.to_string();
        self.error = Some(if text.contains(&name) {
            text
        } else {
            format!("{name}: {text}")
        });
        self.status = ObjectStatus::Failed { retry };
    }

    fn record_scan(&mut self, scan: &ObjectScan, max_object_origin: &str) {
        self.events = scan.events;
        self.sightings = scan.sighting_count() as u64;
        self.subjects = scan.subjects.len() as u64;
        self.skipped = scan.skipped.clone();
        if let Some(reason) = scan.skipped_object {
            self.status = ObjectStatus::Skipped { reason };
        }
        if scan.has_faults() {
            self.faults = scan.fault_messages();
            self.status = ObjectStatus::Malformed;
        }
        self.records_too_large = scan.summary.as_ref().map_or(0, |s| s.oversized_records);
        if let Some(ObjectError::TooLarge { limit }) = &scan.error {
            // Refused, not failed for a retry: the same bytes would be refused again.
            self.too_large = true;
            self.error = Some(format!(
                "{} decodes to more than {} MiB, the object limit ({max_object_origin}): \
                 refused after its first {} events",
                self.object,
                limit >> 20,
                scan.events
            ));
        }
    }

    /// One line per object, fields not prose; faults as lines of their own (capped),
    /// each with bucket and key. Never any CloudTrail record content beyond counts and
    /// the reader's own error messages.
    fn log(&self) {
        let (bucket, key) = (self.bucket.as_str(), self.key.as_str());
        for fault in self.faults.iter().take(MAX_FAULTS_LOGGED) {
            warn!(bucket, key, fault = fault.as_str(), "malformed object");
        }
        let status = match self.status {
            ObjectStatus::Pending => "pending",
            ObjectStatus::Done => "done",
            ObjectStatus::Skipped { .. } => "skipped",
            ObjectStatus::Malformed => "malformed",
            ObjectStatus::Failed { retry: true } => "retry",
            ObjectStatus::Failed { retry: false } => "failed",
        };
        let skip_reason = match self.status {
            ObjectStatus::Skipped { reason } => Some(reason),
            _ => None,
        };
        let (events, sightings, skipped, findings, conflicts, duration_ms) = (
            self.events,
            self.sightings,
            self.skipped.total(),
            self.findings.len(),
            self.conflicts,
            self.duration_ms,
        );
        let faults = self.faults.len();
        for q in &self.quarantined {
            error!(
                bucket,
                key,
                subject = q.subject.as_str(),
                reason = q.reason.as_str(),
                "subject quarantined: its stored state is unreadable, its sightings were not judged"
            );
        }
        let dead_lettered = self.dead_lettered;
        if let Some(why) = &self.dead_letter_failed {
            error!(
                bucket,
                key,
                error = why.as_str(),
                "object needs a person but is not in the dead-letter queue: failed for a retry"
            );
        }
        match &self.error {
            Some(error) => error!(
                bucket,
                key,
                status,
                events,
                sightings,
                skipped,
                findings,
                conflicts,
                dead_lettered,
                duration_ms,
                error = error.as_str(),
                "object failed"
            ),
            None => info!(
                bucket,
                key,
                status,
                skip_reason,
                events,
                sightings,
                skipped,
                findings,
                conflicts,
                faults,
                dead_lettered,
                duration_ms,
                "object processed"
            ),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `err: cause: cause`, as `{:#}` would with anyhow.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Errors that embed their source's text already (the S3 one does) add nothing.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What one invocation did.
#[derive(Debug, Default)]
pub struct InvocationReport {
    pub from_sqs: bool,
    pub objects: Vec<ObjectOutcome>,
    /// Notifications that could not be decoded, with their SQS message ids.
    pub undecodable: Vec<String>,
    /// SQS message ids to redeliver (undecodable, or naming an object to retry).
    pub failed_messages: Vec<String>,
    pub metrics: InvocationMetrics,
}

impl InvocationReport {
    /// The answer to Lambda.
    pub fn into_response(self) -> Result<Response, HandlerError> {
        if self.from_sqs {
            let mut response = SqsBatchResponse::default();
            response.batch_item_failures = self
                .failed_messages
                .into_iter()
                .map(|id| {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    failure
                })
                .collect();
            return Ok(Response::Sqs(response));
        }
        let mut problems: Vec<String> = self.undecodable;
        problems.extend(
            self.objects
                .iter()
                .filter(|o| o.retry())
                .filter_map(|o| o.error.clone()),
        );
        if !problems.is_empty() {
            return Err(HandlerError::Retry { problems });
        }
        Ok(Response::Direct(InvocationSummary {
            objects: self.objects,
        }))
    }
}

/// The function's result.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// For an SQS event source mapping with `ReportBatchItemFailures`: exactly
    /// `{"batchItemFailures": [{"itemIdentifier": ...}]}`.
    Sqs(SqsBatchResponse),
    /// For direct invocations (S3, EventBridge, SNS, `cargo lambda invoke`): what was done.
    Direct(InvocationSummary),
}

#[derive(Debug, Serialize)]
pub struct InvocationSummary {
    pub objects: Vec<ObjectOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Lambda retries the invocation, then sends it to the on-failure destination.
    #[error("{} to retry: {}", problems.len(), problems.join("; "))]
    Retry { problems: Vec<String> },
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(err: HandlerError) -> lambda_runtime::Diagnostic {
        lambda_runtime::Diagnostic {
            error_type: "geotrail::Retry".to_owned(),
            error_message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(key: &str, status: ObjectStatus) -> ObjectOutcome {
        let mut o = ObjectOutcome::new(ObjectRef::new("trail", key));
        o.status = status;
        o
    }

    #[test]
    fn a_direct_invocation_answers_with_each_objects_status() {
        let report = InvocationReport {
            objects: vec![
                outcome("a.json.gz", ObjectStatus::Done),
                outcome(
                    "b.json.gz",
                    ObjectStatus::Skipped {
                        reason: "digest_file",
                    },
                ),
                outcome("c.json.gz", ObjectStatus::Failed { retry: false }),
            ],
            ..InvocationReport::default()
        };
        let json =
            serde_json::to_string(&report.into_response().expect("nothing to retry")).unwrap();
        for want in [
            r#""key":"a.json.gz","status":"done""#,
            r#""key":"b.json.gz","status":"skipped","reason":"digest_file""#,
            r#""key":"c.json.gz","status":"failed","retry":false"#,
        ] {
            assert!(json.contains(want), "{want} in {json}");
        }
    }

    #[test]
    fn a_direct_invocation_fails_naming_every_object_to_retry() {
        let mut retry = outcome("a.json.gz", ObjectStatus::Pending);
        retry.fail(&std::io::Error::other("connection reset"), true);
        let report = InvocationReport {
            objects: vec![retry, outcome("b.json.gz", ObjectStatus::Done)],
            undecodable: vec![
                "invocation payload is not an S3, SNS, CloudTrail or EventBridge notification"
                    .into(),
            ],
            ..InvocationReport::default()
        };
        let err = report
            .into_response()
            .expect_err("a retry is needed")
            .to_string();
        assert!(err.starts_with("2 to retry"), "{err}");
        assert!(
            err.contains("s3://trail/a.json.gz: connection reset"),
            "{err}"
        );
        assert!(err.contains("not an S3, SNS"), "{err}");
    }

    #[test]
    fn an_sqs_batch_with_nothing_failed_answers_an_empty_list() {
        let report = InvocationReport {
            from_sqs: true,
            ..InvocationReport::default()
        };
        let json = serde_json::to_string(&report.into_response().unwrap()).unwrap();
        assert_eq!(json, r#"{"batchItemFailures":[]}"#);
    }

    #[test]
    fn metrics_count_objects_by_outcome() {
        let mut done = outcome("a", ObjectStatus::Done);
        done.events = 10;
        done.findings = vec!["f1".into()];
        done.conflicts = 2;
        let objects = [
            done,
            outcome(
                "b",
                ObjectStatus::Skipped {
                    reason: "object_deleted",
                },
            ),
            ObjectOutcome {
                too_large: true,
                records_too_large: 3,
                ..outcome("c", ObjectStatus::Malformed)
            },
            outcome("d", ObjectStatus::Failed { retry: true }),
        ];
        let m = metrics_of(&objects, Instant::now());
        assert_eq!(
            (
                m.objects,
                m.objects_skipped,
                m.objects_failed,
                m.objects_retried,
                m.events,
                m.findings,
                m.state_conflicts
            ),
            (4, 1, 2, 1, 10, 1, 2)
        );
        assert_eq!((m.objects_too_large, m.records_too_large), (1, 3));
    }
}
