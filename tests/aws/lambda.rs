//! The Lambda handler against moto, through the real SDK: CloudTrail objects in a bucket,
//! state in a table, findings published to a topic with SQS queues subscribed to it.
//!
//! The handler is called directly with typed events (parsed from the JSON S3, SQS and
//! EventBridge send), as `bootstrap` calls it; `e2e.rs` goes through the runtime.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;
use geotrail::aws::dynamo::create_table;
use geotrail::aws::lambda::config::LambdaConfig;
use geotrail::aws::lambda::dead_letter::DeadLetterQueue;
use geotrail::aws::lambda::event::Invocation;
use geotrail::aws::lambda::{Handler, ObjectOutcome, ObjectStatus, Response};
use geotrail::aws::DynamoStateStore;
use geotrail::finding::{Finding, Rule, Severity};
use geotrail::geo::GeoDb;
use geotrail::state::{StateStore, Versioned};
use serde::Deserialize;
use serde_json::json;

use super::support::{
    dynamodb_client, email_filter_policy, s3_client, sns_client, sqs_client, subscribed_queue,
    unique_name, RequestCounter,
};

pub(super) const ACCOUNT: &str = "123456789012";
// Fixture addresses (tests/fixtures/geo/README.md).
pub(super) const SYDNEY: &str = "1.128.0.10";
pub(super) const FRANKFURT: &str = "46.101.0.10";
const PARIS: &str = "82.64.0.10";
const LONDON: &str = "81.2.69.10";

pub(super) const MINUTE_MS: i64 = 60_000;
pub(super) const HOUR_MS: i64 = 60 * MINUTE_MS;

/// A recent start time, so items get TTLs in the future as they would in production.
pub(super) fn t0() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    // Whole hours: the same event times for every test of one run.
    (now / HOUR_MS - 72) * HOUR_MS
}

pub(super) fn rfc3339(ms: i64) -> String {
    geotrail::finding::format_rfc3339_ms(ms)
}

/// One CloudTrail record of an IAM user's access key.
pub(super) fn record(
    access_key: &str,
    ip: &str,
    time_ms: i64,
    event_id: &str,
) -> serde_json::Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLE",
            "arn": format!("arn:aws:iam::{ACCOUNT}:user/alice"),
            "accountId": ACCOUNT,
            "accessKeyId": access_key,
            "userName": "alice"
        },
        "eventTime": rfc3339(time_ms),
        "eventSource": "s3.amazonaws.com",
        "eventName": "ListBuckets",
        "awsRegion": "us-east-1",
        "sourceIPAddress": ip,
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": null,
        "responseElements": null,
        "requestID": format!("req-{event_id}"),
        "eventID": event_id,
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management"
    })
}

pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// A CloudTrail log object, gzipped as CloudTrail writes it.
pub(super) fn log_object(records: &[serde_json::Value]) -> Vec<u8> {
    gzip(json!({ "Records": records }).to_string().as_bytes())
}

/// A key as CloudTrail names its objects.
pub(super) fn log_key(name: &str) -> String {
    format!("AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2025/01/01/{ACCOUNT}_CloudTrail_us-east-1_{name}.json.gz")
}

/// S3 notification keys are form-URL-encoded, `+` for a space.
fn form_encode(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'*' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An S3 notification as S3 sends it to Lambda, one record per key.
fn s3_event_json(bucket: &str, keys: &[&str]) -> String {
    let records: Vec<serde_json::Value> = keys
        .iter()
        .map(|key| {
            json!({
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2025-01-01T00:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AROAEXAMPLE"},
                "requestParameters": {"sourceIPAddress": "10.0.0.1"},
                "responseElements": {"x-amz-request-id": "r", "x-amz-id-2": "i"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "geotrail",
                    "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A"}, "arn": format!("arn:aws:s3:::{bucket}")},
                    "object": {"key": form_encode(key), "size": 1024, "eTag": "e", "sequencer": "0A"}
                }
            })
        })
        .collect();
    json!({ "Records": records }).to_string()
}

fn invocation(json: &str) -> Invocation {
    serde_json::from_str(json).expect("the test event parses as the runtime would parse it")
}

pub(super) fn s3_event(bucket: &str, keys: &[&str]) -> Invocation {
    invocation(&s3_event_json(bucket, keys))
}

/// An SQS batch as the event source mapping sends it.
fn sqs_event(messages: &[(&str, String)]) -> Invocation {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("rh-{id}"),
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1735689600000"},
                "messageAttributes": {},
                "md5OfBody": "0",
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:{ACCOUNT}:geotrail-events"),
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    invocation(&json!({ "Records": records }).to_string())
}

/// A bucket, a table, a topic with a raw and an enveloped queue subscribed, and a handler
/// wired to them; every name unique to the test.
pub(super) struct Stack {
    s3: aws_sdk_s3::Client,
    pub(super) sqs: aws_sdk_sqs::Client,
    pub(super) bucket: String,
    pub(super) table: String,
    pub(super) topic_arn: String,
    pub(super) raw_queue: String,
    pub(super) envelope_queue: String,
    /// Where the handler sends objects no retry can judge.
    pub(super) dead_letters: String,
    /// Counts the handler's S3, DynamoDB and SNS requests.
    pub(super) counter: RequestCounter,
    pub(super) geo: Arc<GeoDb>,
}

impl Stack {
    pub(super) async fn new() -> Stack {
        let s3 = s3_client(None).await;
        let bucket = unique_name("geotrail-trail");
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("CreateBucket");
        let table = unique_name("geotrail-state");
        create_table(&dynamodb_client(None).await, &table)
            .await
            .expect("create the state table");
        let sns = sns_client(None).await;
        let topic_arn = sns
            .create_topic()
            .name(unique_name("geotrail-findings"))
            .send()
            .await
            .expect("CreateTopic")
            .topic_arn
            .expect("a topic ARN");
        let sqs = sqs_client().await;
        let raw_queue = subscribed_queue(&sns, &sqs, &topic_arn, true, None).await;
        let envelope_queue = subscribed_queue(&sns, &sqs, &topic_arn, false, None).await;
        let dead_letters = sqs
            .create_queue()
            .queue_name(unique_name("geotrail-dead-letters"))
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .expect("a queue URL");
        let geo = Arc::new(crate::common::mmdb::fixture_geo_db());
        Stack {
            s3,
            sqs,
            bucket,
            table,
            topic_arn,
            raw_queue,
            envelope_queue,
            dead_letters,
            counter: RequestCounter::new(),
            geo,
        }
    }

    /// The configuration `bootstrap` would read, with `extra` variables set over it.
    pub(super) fn config(&self, extra: &[(&str, &str)]) -> LambdaConfig {
        let base = [
            ("GEOTRAIL_TABLE", self.table.as_str()),
            ("GEOTRAIL_TOPIC_ARN", self.topic_arn.as_str()),
            // The handler is given the database; the path is only read by `bootstrap`.
            ("GEOTRAIL_GEOIP", "GeoLite2-City.mmdb"),
            // Most tests here count the findings and writes of travel; the account-level
            // rules add their own (each use of an AKIA key is a long_term_access_key_auth
            // finding, each account and call a tally), so a test that wants them sets
            // GEOTRAIL_RULES itself.
            ("GEOTRAIL_RULES", "impossible_travel,future_event_time"),
        ];
        // The first match wins: `extra` before the base.
        let vars: Vec<(String, String)> = extra
            .iter()
            .chain(&base)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LambdaConfig::from_env(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .expect("test configuration is valid")
    }

    /// A handler as `bootstrap` builds it, its clients counted by `self.counter`.
    pub(super) async fn handler(&self, extra: &[(&str, &str)]) -> Handler {
        self.handler_without_dead_letters(extra)
            .await
            .with_dead_letters(DeadLetterQueue::new(
                sqs_client().await,
                self.dead_letters.clone(),
            ))
    }

    pub(super) async fn handler_without_dead_letters(&self, extra: &[(&str, &str)]) -> Handler {
        let counter = Some(&self.counter);
        Handler::new(
            &self.config(extra),
            Arc::clone(&self.geo),
            s3_client(counter).await,
            dynamodb_client(counter).await,
            sns_client(counter).await,
        )
    }

    /// The dead letters received until `want` came or a few seconds passed, parsed.
    async fn dead_letters(&self, want: usize) -> Vec<serde_json::Value> {
        receive(&self.sqs, &self.dead_letters, want, Duration::from_secs(5))
            .await
            .iter()
            .map(|body| serde_json::from_str(body).expect("a dead letter is JSON"))
            .collect()
    }

    pub(super) async fn put(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("PutObject");
    }

    async fn state(&self, subjects: &[String]) -> foldhash::HashMap<String, Versioned> {
        DynamoStateStore::new(dynamodb_client(None).await, &self.table, 30)
            .load(subjects)
            .await
            .expect("load state")
    }
}

/// Message bodies received until `want` came or `patience` passed.
pub(super) async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    want: usize,
    patience: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + patience;
    let mut got = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        for message in out.messages.unwrap_or_default() {
            if let Some(handle) = &message.receipt_handle {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
            got.extend(message.body);
        }
        if got.len() >= want || Instant::now() >= deadline {
            return got;
        }
    }
}

/// What SQS receives from SNS without raw delivery (moto pretty-prints it).
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
}

pub(super) fn finding(json: &str) -> Finding {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("message is a finding ({e}): {json}"))
}

pub(super) fn objects(response: Response) -> Vec<ObjectOutcome> {
    match response {
        Response::Direct(summary) => summary.objects,
        Response::Sqs(r) => panic!("a direct invocation answered like an SQS batch: {r:?}"),
    }
}

pub(super) fn outcome<'a>(objects: &'a [ObjectOutcome], key: &str) -> &'a ObjectOutcome {
    objects
        .iter()
        .find(|o| o.key == key)
        .unwrap_or_else(|| panic!("no outcome for {key} in {objects:#?}"))
}

/// Sydney, then Frankfurt an hour later: 16,000 km in an hour.
pub(super) fn sydney_then_frankfurt(key: &str, t: i64, id: &str) -> Vec<serde_json::Value> {
    vec![
        record(key, SYDNEY, t, &format!("{id}-syd")),
        record(key, FRANKFURT, t + HOUR_MS, &format!("{id}-fra")),
    ]
}

#[tokio::test]
async fn a_finding_reaches_raw_and_enveloped_subscribers_and_the_table_holds_the_new_state() {
    let stack = Stack::new().await;
    let handler = stack.handler(&[]).await;
    let access_key = "AKIALAMBDATEST000001";
    let mut records = sydney_then_frankfurt(access_key, t0(), "ev");
    // Skips are counted, not judged.
    records.push(record(
        access_key,
        "10.1.2.3",
        t0() + 2 * HOUR_MS,
        "ev-private",
    ));
    records.push(record(
        access_key,
        "AWS Internal",
        t0() + 2 * HOUR_MS,
        "ev-internal",
    ));
    // A space and a plus in the key: the notification encodes them as `+` and `%2B`.
    let key = log_key("20250101T0000Z_a b+c");
    stack.put(&key, log_object(&records)).await;

    let response = handler
        .handle(s3_event(&stack.bucket, &[&key]))
        .await
        .expect("nothing to retry");

    let objects = objects(response);
    let o = outcome(&objects, &key);
    assert_eq!(o.status, ObjectStatus::Done, "{o:#?}");
    assert_eq!(
        (o.events, o.sightings, o.skipped.total()),
        (4, 2, 2),
        "{o:#?}"
    );
    assert_eq!(o.findings.len(), 1, "{o:#?}");

    let raw = receive(&stack.sqs, &stack.raw_queue, 1, Duration::from_secs(10)).await;
    assert_eq!(raw.len(), 1, "one raw message: {raw:?}");
    let published = finding(&raw[0]);
    assert_eq!(published.finding_id, o.findings[0]);
    assert_eq!(published.subject, access_key);
    assert_eq!(
        published.source_object,
        format!("s3://{}/{key}", stack.bucket)
    );
    let places = &published
        .impossible_travel
        .as_ref()
        .expect("an impossible-travel finding")
        .triggering_locations;
    assert_eq!(
        (
            places.first_location.city.as_deref(),
            places.second_location.city.as_deref()
        ),
        (Some("Sydney"), Some("Frankfurt am Main"))
    );

    let enveloped = receive(
        &stack.sqs,
        &stack.envelope_queue,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(enveloped.len(), 1, "one enveloped message: {enveloped:?}");
    let envelope: Envelope = serde_json::from_str(&enveloped[0]).expect("an SNS envelope");
    assert_eq!(envelope.kind, "Notification");
    assert_eq!(finding(&envelope.message).finding_id, published.finding_id);

    let state = stack.state(&[access_key.to_owned()]).await;
    let saved = &state[access_key];
    assert_eq!(saved.version, 1);
    let ids: Vec<String> = saved
        .state
        .stays
        .iter()
        .flat_map(|s| [s.first().id.to_string(), s.last().id.to_string()])
        .collect();
    assert!(
        ids.iter().any(|id| id == "ev-syd") && ids.iter().any(|id| id == "ev-fra"),
        "both sightings saved: {ids:?}"
    );
    assert!(
        saved
            .state
            .alerted_finding_ids()
            .any(|id| id == published.finding_id),
        "the alert is remembered"
    );
}

#[tokio::test]
async fn an_unusual_city_for_a_command_reaches_sqs_and_the_email_filter_leaves_out_info_findings() {
    let stack = Stack::new().await;
    // A queue with the filter policy the template gives the email subscription.
    let emailed_queue = subscribed_queue(
        &sns_client(None).await,
        &stack.sqs,
        &stack.topic_arn,
        true,
        Some(&email_filter_policy()),
    )
    .await;
    // One hour of learning from the account's first call: the second call from Paris,
    // after it, is not unusual (Paris made it once before); the call from London is.
    let handler = stack
        .handler(&[
            ("GEOTRAIL_RULES", "all"),
            ("GEOTRAIL_RARE_LEARNING_HOURS", "1"),
        ])
        .await;
    let access_key = "AKIALAMBDARARE000001";
    let t = t0();
    let records = [
        record(access_key, PARIS, t, "rare-paris-1"),
        record(access_key, PARIS, t + 2 * HOUR_MS, "rare-paris-2"),
        record(access_key, LONDON, t + 3 * HOUR_MS, "rare-london"),
    ];
    let key = log_key("20250101T0000Z_rare");
    stack.put(&key, log_object(&records)).await;

    let response = handler
        .handle(s3_event(&stack.bucket, &[&key]))
        .await
        .expect("nothing to retry");
    let objects = objects(response);
    let o = outcome(&objects, &key);
    assert_eq!(o.status, ObjectStatus::Done, "{o:#?}");

    let published: Vec<Finding> = receive(
        &stack.sqs,
        &stack.raw_queue,
        o.findings.len(),
        Duration::from_secs(10),
    )
    .await
    .iter()
    .map(|body| finding(body))
    .collect();
    let mut published_ids: Vec<&str> = published.iter().map(|f| f.finding_id.as_str()).collect();
    let mut reported: Vec<&str> = o.findings.iter().map(String::as_str).collect();
    published_ids.sort_unstable();
    reported.sort_unstable();
    assert_eq!(published_ids, reported, "SQS gets every finding");

    let unusual: Vec<&Finding> = published
        .iter()
        .filter(|f| f.rule == Rule::UnusualCityForCommand)
        .collect();
    assert_eq!(unusual.len(), 1, "{published:#?}");
    let u = unusual[0];
    assert_eq!(u.severity, Severity::Low);
    // The account-level rules' subject is the principal.
    assert_eq!(u.subject, format!("arn:aws:iam::{ACCOUNT}:user/alice"));
    assert_eq!(u.user_identity.access_key_id.as_deref(), Some(access_key));
    assert_eq!(u.source_object, format!("s3://{}/{key}", stack.bucket));
    let city = u
        .unusual_city_for_command
        .as_ref()
        .expect("the rule's own block");
    assert_eq!(city.place.city.as_deref(), Some("London"));
    let calls: Vec<&str> = city.calls.iter().map(|c| c.event_id.as_str()).collect();
    assert_eq!(calls, ["rare-london"]);
    let [command] = &city.commands[..] else {
        panic!("one call: {:#?}", city.commands);
    };
    assert_eq!(
        (command.event_source.as_str(), command.event_name.as_str()),
        ("s3.amazonaws.com", "ListBuckets")
    );
    assert_eq!(command.seen_from_city_before, 0);
    let usual: Vec<(&str, u64)> = command
        .usual_places
        .iter()
        .map(|p| (p.place.as_str(), p.count))
        .collect();
    assert!(
        matches!(&usual[..], [(paris, 2)] if paris.starts_with("Paris")),
        "the evidence names where the call usually comes from: {usual:?}"
    );

    // The long-term key's first use, in the account's learning period, is informational.
    let info: Vec<&Finding> = published
        .iter()
        .filter(|f| f.severity == Severity::Info)
        .collect();
    assert!(
        !info.is_empty() && info.iter().all(|f| f.rule == Rule::LongTermAccessKeyAuth),
        "{published:#?}"
    );
    // moto delivers while the publish call runs: whatever the filter lets through is there.
    let mut emailed: Vec<String> = receive(
        &stack.sqs,
        &emailed_queue,
        published.len(),
        Duration::from_secs(3),
    )
    .await
    .iter()
    .map(|body| finding(body).finding_id)
    .collect();
    let mut want: Vec<String> = published
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .map(|f| f.finding_id.clone())
        .collect();
    emailed.sort_unstable();
    want.sort_unstable();
    assert!(want.contains(&u.finding_id));
    assert_eq!(
        emailed, want,
        "the email filter lets through every finding but the informational ones"
    );
}

#[tokio::test]
async fn the_same_event_again_publishes_nothing() {
    let stack = Stack::new().await;
    let handler = stack.handler(&[]).await;
    let key = log_key("replay");
    stack
        .put(
            &key,
            log_object(&sydney_then_frankfurt("AKIALAMBDAREPLAY0001", t0(), "rp")),
        )
        .await;
    let event = s3_event_json(&stack.bucket, &[&key]);

    let first = objects(
        handler
            .handle(invocation(&event))
            .await
            .expect("first delivery"),
    );
    assert_eq!(first[0].findings.len(), 1);
    assert_eq!(
        receive(&stack.sqs, &stack.raw_queue, 1, Duration::from_secs(10))
            .await
            .len(),
        1
    );

    // S3 delivers at least once; Lambda retries.
    let again = objects(handler.handle(invocation(&event)).await.expect("replay"));
    assert_eq!(again[0].status, ObjectStatus::Done);
    assert!(
        again[0].findings.is_empty(),
        "a replay finds nothing new: {:?}",
        again[0]
    );
    assert_eq!(again[0].subjects_saved, 0, "and writes nothing");
    let extra = receive(&stack.sqs, &stack.raw_queue, 1, Duration::from_secs(2)).await;
    assert!(extra.is_empty(), "no message for a replay: {extra:?}");
}

#[tokio::test]
async fn two_handlers_racing_on_the_same_subjects_lose_no_update() {
    let stack = Stack::new().await;
    // Two Lambdas: their own clients, one table.
    let (first, second) = (stack.handler(&[]).await, stack.handler(&[]).await);
    let subjects: Vec<String> = (0..40).map(|i| format!("AKIALAMBDARACE{i:06}")).collect();
    let start = t0();
    // The same subjects in Sydney in one object and in Paris three days later in the
    // other: possible travel, so each subject's history must end with two stays.
    let (key_a, key_b) = (log_key("race-a"), log_key("race-b"));
    let sydney: Vec<_> = subjects
        .iter()
        .map(|s| record(s, SYDNEY, start, &format!("{s}-a")))
        .collect();
    let paris: Vec<_> = subjects
        .iter()
        .map(|s| record(s, PARIS, start + 72 * HOUR_MS, &format!("{s}-b")))
        .collect();
    stack.put(&key_a, log_object(&sydney)).await;
    stack.put(&key_b, log_object(&paris)).await;

    let (a, b) = tokio::join!(
        first.handle(s3_event(&stack.bucket, &[&key_a])),
        second.handle(s3_event(&stack.bucket, &[&key_b]))
    );
    let (a, b) = (
        objects(a.expect("first handler")),
        objects(b.expect("second handler")),
    );
    let conflicts = a[0].conflicts + b[0].conflicts;
    assert_eq!(
        a[0].subjects_saved + b[0].subjects_saved,
        2 * subjects.len(),
        "every subject saved by both"
    );

    let state = stack.state(&subjects).await;
    for subject in &subjects {
        let saved = &state[subject];
        let ids: Vec<String> = saved
            .state
            .stays
            .iter()
            .map(|s| s.first().id.to_string())
            .collect();
        assert_eq!(
            ids,
            [format!("{subject}-a"), format!("{subject}-b")],
            "both objects' sightings of {subject} ({conflicts} conflicts in the race)"
        );
        assert_eq!(
            saved.version, 2,
            "{subject} was written once by each handler"
        );
    }
}

#[tokio::test]
async fn a_malformed_object_is_named_and_the_other_objects_of_the_event_are_processed() {
    let stack = Stack::new().await;
    // A 1 MiB decompression cap, so a small gzip bomb trips it.
    let handler = stack.handler(&[("GEOTRAIL_MAX_OBJECT_MIB", "1")]).await;
    let (good_1, truncated, bomb, good_2) = (
        log_key("good-1"),
        log_key("truncated"),
        log_key("bomb"),
        log_key("good-2"),
    );
    stack
        .put(
            &good_1,
            log_object(&sydney_then_frankfurt("AKIALAMBDAGOOD000001", t0(), "g1")),
        )
        .await;
    // Valid records, then the object stops mid-record.
    let mut cut =
        json!({"Records": sydney_then_frankfurt("AKIALAMBDACUT0000001", t0(), "cut")}).to_string();
    cut.truncate(cut.len() - 40);
    stack.put(&truncated, gzip(cut.as_bytes())).await;
    // 3 MiB of whitespace inside a valid log decompresses past the cap.
    let padded = format!(
        "{{\"Records\":[{}{}]}}",
        " ".repeat(3 << 20),
        record("AKIALAMBDABOMB000001", SYDNEY, t0(), "b")
    );
    stack.put(&bomb, gzip(padded.as_bytes())).await;
    stack
        .put(
            &good_2,
            log_object(&sydney_then_frankfurt("AKIALAMBDAGOOD000002", t0(), "g2")),
        )
        .await;

    let report = handler
        .process(s3_event(
            &stack.bucket,
            &[&good_1, &truncated, &bomb, &good_2],
        ))
        .await;
    let report_metrics = report.metrics.clone();
    let response = report
        .into_response()
        .expect("malformed objects are not retried");
    let objects = objects(response);

    for key in [&good_1, &good_2] {
        let o = outcome(&objects, key);
        assert_eq!(
            (o.status, o.findings.len()),
            (ObjectStatus::Done, 1),
            "{o:#?}"
        );
    }
    for (key, want) in [
        (&truncated, "truncated"),
        (&bomb, "exceeds the limit of 1048576 bytes"),
    ] {
        let o = outcome(&objects, key);
        assert_eq!(o.status, ObjectStatus::Malformed, "{o:#?}");
        let name = format!("s3://{}/{key}", stack.bucket);
        assert!(
            o.faults
                .iter()
                .any(|f| f.starts_with(&name) && f.contains(want)),
            "a fault naming {name} and saying {want:?}: {:?}",
            o.faults
        );
    }
    let o = outcome(&objects, &bomb);
    let error = o.error.as_deref().unwrap_or_default();
    assert!(o.too_large, "{o:#?}");
    assert!(
        error.starts_with(&format!(
            "s3://{}/{bomb} decodes to more than 1 MiB",
            stack.bucket
        )) && error.contains("GEOTRAIL_MAX_OBJECT_MIB=1"),
        "{error}"
    );
    assert_eq!(report_metrics.objects_too_large, 1);
    assert_eq!(
        receive(&stack.sqs, &stack.raw_queue, 2, Duration::from_secs(10))
            .await
            .len(),
        2
    );
    // The rest of the bomb was never judged: a person may raise the limit and redrive it.
    // A truncated object would read the same after a redrive: logged and counted only.
    assert!(o.dead_lettered, "{o:#?}");
    assert_eq!(report_metrics.objects_dead_lettered, 1);
    let letters = stack.dead_letters(2).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0]["detail"]["object"]["key"], bomb.as_str());
    assert!(
        letters[0]["geotrail"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("decodes to more than 1 MiB")),
        "{letters:#?}"
    );
}

#[tokio::test]
async fn digest_files_are_skipped_before_any_get_and_deleted_objects_are_skipped() {
    let stack = Stack::new().await;
    let handler = stack.handler(&[]).await;
    let digest = format!(
        "AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2025/01/01/{ACCOUNT}_CloudTrail-Digest_us-east-1_trail_us-east-1_20250101T000000Z.json.gz"
    );
    let deleted = log_key("deleted-since-the-event");

    let response = handler
        .handle(s3_event(&stack.bucket, &[&digest, &deleted]))
        .await
        .expect("nothing to retry");
    let objects = objects(response);
    assert_eq!(
        outcome(&objects, &digest).status,
        ObjectStatus::Skipped {
            reason: "digest_file"
        }
    );
    assert_eq!(
        outcome(&objects, &deleted).status,
        ObjectStatus::Skipped {
            reason: "object_deleted"
        }
    );
    assert_eq!(
        stack.counter.count("GetObject"),
        1,
        "only the deleted object was asked for: {:?}",
        stack.counter.snapshot()
    );
}

#[tokio::test]
async fn an_sqs_batch_reports_only_the_bad_message_in_batch_item_failures() {
    let stack = Stack::new().await;
    let handler = stack.handler(&[]).await;
    let (key_1, key_2) = (log_key("sqs-1"), log_key("sqs-2"));
    stack
        .put(
            &key_1,
            log_object(&sydney_then_frankfurt("AKIALAMBDASQS0000001", t0(), "q1")),
        )
        .await;
    stack
        .put(
            &key_2,
            log_object(&sydney_then_frankfurt("AKIALAMBDASQS0000002", t0(), "q2")),
        )
        .await;
    // CloudTrail's own notification, through an SNS topic with envelope delivery.
    let cloudtrail = json!({"s3Bucket": stack.bucket, "s3ObjectKey": [key_2]}).to_string();
    let sns_envelope = json!({"Type": "Notification", "MessageId": "n", "TopicArn": "arn:aws:sns:us-east-1:123456789012:trail", "Message": cloudtrail}).to_string();
    let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2025-01-01T00:00:00Z","Bucket":"b"}"#;

    let event = sqs_event(&[
        ("m-s3", s3_event_json(&stack.bucket, &[&key_1])),
        ("m-bad", "this is not a notification".to_owned()),
        ("m-cloudtrail", sns_envelope),
        ("m-test", test_event.to_owned()),
    ]);
    let response = handler
        .handle(event)
        .await
        .expect("an SQS batch answers with its failures");

    let json = serde_json::to_string(&response).expect("the response serializes");
    assert_eq!(
        json,
        r#"{"batchItemFailures":[{"itemIdentifier":"m-bad"}]}"#
    );
    let findings = receive(&stack.sqs, &stack.raw_queue, 2, Duration::from_secs(10)).await;
    let subjects: std::collections::BTreeSet<String> =
        findings.iter().map(|m| finding(m).subject).collect();
    assert_eq!(
        subjects.into_iter().collect::<Vec<_>>(),
        ["AKIALAMBDASQS0000001", "AKIALAMBDASQS0000002"],
        "the good messages' objects were processed"
    );
}

#[tokio::test]
async fn a_message_whose_object_cannot_be_committed_is_retried_and_its_neighbours_are_not() {
    let stack = Stack::new().await;
    // A table that does not exist: every state read fails, as under a DynamoDB outage.
    let handler = stack.handler(&[]).await.with_store(DynamoStateStore::new(
        dynamodb_client(None).await,
        unique_name("geotrail-missing"),
        30,
    ));
    let key = log_key("no-table");
    stack
        .put(
            &key,
            log_object(&sydney_then_frankfurt("AKIALAMBDANOTABLE001", t0(), "nt")),
        )
        .await;
    let digest = format!(
        "AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2025/01/01/x_CloudTrail-Digest_x.json.gz"
    );
    let in_missing_bucket =
        json!({"s3Bucket": unique_name("geotrail-no-bucket"), "s3ObjectKey": [log_key("x")]});

    let report = handler
        .process_request(
            sqs_event(&[
                ("m-retry", s3_event_json(&stack.bucket, &[&key])),
                ("m-digest", s3_event_json(&stack.bucket, &[&digest])),
                ("m-no-bucket", in_missing_bucket.to_string()),
            ]),
            Some("request-1"),
        )
        .await;

    assert_eq!(report.failed_messages, ["m-retry"], "{:#?}", report.objects);
    let failed = outcome(&report.objects, &key);
    assert_eq!(failed.status, ObjectStatus::Failed { retry: true });
    let error = failed.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&format!("s3://{}/{key}", stack.bucket)),
        "the error names the object: {error}"
    );
    // A bucket that does not exist is a configuration fault, not a retry.
    let missing = report
        .objects
        .iter()
        .find(|o| o.key == log_key("x"))
        .expect("the missing bucket's object");
    assert_eq!(
        missing.status,
        ObjectStatus::Failed { retry: false },
        "{missing:#?}"
    );
    assert_eq!(
        (
            report.metrics.objects_failed,
            report.metrics.objects_retried,
            report.metrics.objects_dead_lettered,
        ),
        (2, 1, 1)
    );
    // ... it goes to the dead letters, with the object, the reason and the request id.
    assert!(missing.dead_lettered, "{missing:#?}");
    let letters = stack.dead_letters(1).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let why = &letters[0]["geotrail"];
    assert_eq!(why["request_id"], "request-1");
    assert_eq!(why["message_id"], "m-no-bucket");
    assert_eq!(letters[0]["detail"]["object"]["key"], log_key("x").as_str());
    assert!(
        why["reason"]
            .as_str()
            .is_some_and(|r| r.contains("NoSuchBucket")),
        "{why}"
    );
}

#[tokio::test]
async fn without_a_dead_letter_queue_an_object_no_retry_can_judge_fails_its_message() {
    let stack = Stack::new().await;
    let handler = stack.handler_without_dead_letters(&[]).await;
    let in_missing_bucket =
        json!({"s3Bucket": unique_name("geotrail-no-bucket"), "s3ObjectKey": [log_key("x")]});
    let report = handler
        .process(sqs_event(&[("m-no-bucket", in_missing_bucket.to_string())]))
        .await;
    // Left to the source queue's redrive policy rather than dropped as a success.
    assert_eq!(
        report.failed_messages,
        ["m-no-bucket"],
        "{:#?}",
        report.objects
    );
    let o = &report.objects[0];
    assert_eq!(o.status, ObjectStatus::Failed { retry: false });
    assert!(!o.dead_lettered);
    assert!(
        o.dead_letter_failed
            .as_deref()
            .is_some_and(|why| why.contains("no dead-letter queue")),
        "{o:#?}"
    );
}

/// Serves one GetObject whose body stops halfway: a 200 with a Content-Length, half the
/// bytes, then the connection closes, as when a network path drops mid-download.
fn serve_half_an_object(body: Vec<u8>) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut request = [0u8; 8192];
        let _ = stream.read(&mut request);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body[..body.len() / 2]);
        let _ = stream.flush();
        // Dropping the stream closes the connection short of Content-Length.
    });
    url
}

#[tokio::test]
async fn a_connection_dropped_mid_body_is_retried_not_reported_as_a_malformed_object() {
    let stack = Stack::new().await;
    let subjects: Vec<String> = (0..200).map(|i| format!("AKIALAMBDADROP{i:06}")).collect();
    let records: Vec<_> = subjects
        .iter()
        .map(|s| record(s, SYDNEY, t0(), &format!("{s}-d")))
        .collect();
    let url = serve_half_an_object(log_object(&records));
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&super::support::sdk_config().await)
            .endpoint_url(url)
            .force_path_style(true)
            .build(),
    );
    let handler = Handler::new(
        &stack.config(&[]),
        Arc::clone(&stack.geo),
        s3,
        dynamodb_client(None).await,
        sns_client(None).await,
    );
    let key = log_key("dropped");

    let report = handler.process(s3_event(&stack.bucket, &[&key])).await;

    let o = outcome(&report.objects, &key);
    assert_eq!(o.status, ObjectStatus::Failed { retry: true }, "{o:#?}");
    let error = o.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&format!("s3://{}/{key}", stack.bucket)) && error.contains("bytes"),
        "{error}"
    );
    assert_eq!(
        o.subjects_saved, 0,
        "nothing of a half-read object is committed"
    );
    assert!(
        report.into_response().is_err(),
        "the invocation fails so Lambda retries it"
    );
}

#[tokio::test]
async fn eventbridge_object_created_events_are_processed_with_keys_as_stored() {
    let stack = Stack::new().await;
    let handler = stack.handler(&[]).await;
    let key = log_key("eventbridge a+b");
    stack
        .put(
            &key,
            log_object(&sydney_then_frankfurt("AKIALAMBDAEVENTBR001", t0(), "eb")),
        )
        .await;
    let event = json!({
        "version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
        "account": ACCOUNT, "time": "2025-01-01T00:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{}", stack.bucket)],
        "detail": {"version": "0", "bucket": {"name": stack.bucket}, "object": {"key": key, "size": 1}, "reason": "PutObject"}
    });

    let objects = objects(
        handler
            .handle(invocation(&event.to_string()))
            .await
            .expect("nothing to retry"),
    );
    assert_eq!(
        (objects[0].status, objects[0].findings.len()),
        (ObjectStatus::Done, 1),
        "{objects:#?}"
    );
}

#[tokio::test]
async fn per_object_requests_are_one_batch_read_per_100_subjects_and_one_write_per_changed_subject()
{
    let stack = Stack::new().await;
    let handler = stack.handler(&[]).await;
    let subjects: Vec<String> = (0..150).map(|i| format!("AKIALAMBDACOST{i:06}")).collect();
    let start = t0();
    let first: Vec<_> = subjects
        .iter()
        .map(|s| record(s, LONDON, start, &format!("{s}-1")))
        .collect();
    let key_1 = log_key("cost-1");
    stack.put(&key_1, log_object(&first)).await;

    let o = objects(
        handler
            .handle(s3_event(&stack.bucket, &[&key_1]))
            .await
            .expect("first object"),
    );
    assert_eq!(o[0].subjects_saved, 150);
    let counts = stack.counter.snapshot();
    // Exactly, not at most: moto never leaves keys unprocessed, so there are no retries.
    assert_eq!(
        stack.counter.count("BatchGetItem"),
        2,
        "ceil(150/100) reads: {counts:?}"
    );
    assert_eq!(
        stack.counter.count("PutItem"),
        150,
        "one write per new subject: {counts:?}"
    );
    assert_eq!(stack.counter.count("GetObject"), 1, "{counts:?}");
    assert_eq!(
        stack.counter.count("Publish") + stack.counter.count("PublishBatch"),
        0,
        "no finding, no publish: {counts:?}"
    );

    // The same 150 subjects again, but only 30 seen anywhere new (Paris, two days on):
    // the other 120 are replays of known events and are not written.
    stack.counter.reset();
    let mut second: Vec<_> = subjects
        .iter()
        .map(|s| record(s, LONDON, start, &format!("{s}-1")))
        .collect();
    second.extend(
        subjects
            .iter()
            .take(30)
            .map(|s| record(s, PARIS, start + 48 * HOUR_MS, &format!("{s}-2"))),
    );
    let key_2 = log_key("cost-2");
    stack.put(&key_2, log_object(&second)).await;

    let o = objects(
        handler
            .handle(s3_event(&stack.bucket, &[&key_2]))
            .await
            .expect("second object"),
    );
    assert_eq!((o[0].subjects, o[0].subjects_saved), (150, 30));
    let counts = stack.counter.snapshot();
    assert_eq!(
        stack.counter.count("BatchGetItem"),
        2,
        "ceil(150/100) reads: {counts:?}"
    );
    assert_eq!(
        stack.counter.count("PutItem"),
        30,
        "one write per changed subject: {counts:?}"
    );
    let dynamodb_total = stack.counter.count("BatchGetItem") + stack.counter.count("PutItem");
    assert_eq!(
        dynamodb_total, 32,
        "nothing else touches DynamoDB: {counts:?}"
    );
}

/// Per-object work for the README's cost estimate. Run in release:
/// `cargo test --release --test tests -- --ignored --nocapture measure_handler`.
///
/// Steady state: every subject already has state, and each object is the next five
/// minutes of a trail (what CloudTrail delivers per region), mostly from each subject's
/// usual city, with the usual share of AWS-service and private sources.
#[tokio::test]
#[ignore = "a measurement, not a check: prints per-object figures"]
async fn measure_handler_time_per_object() {
    use geotrail::cloudtrail::ReadOptions;
    use geotrail::geo::GeoCache;
    use geotrail::pipeline::scan_object;

    const OBJECTS: i64 = 10;
    // /16 networks of eight fixture cities; each subject lives in one.
    let homes = [
        "1.128.0", "46.101.0", "82.64.0", "81.2.69", "72.229.0", "126.0.0", "77.160.0", "99.224.0",
    ];
    println!("events subjects | gz_bytes | scan_ms (CPU) | handler_ms | BatchGetItem PutItem GetObject | item_bytes");
    for (events, subjects) in [(500usize, 20usize), (5_000, 100)] {
        let stack = Stack::new().await;
        let handler = stack.handler(&[]).await;
        let names: Vec<String> = (0..subjects)
            .map(|i| format!("AKIAMEASURE{subjects:03}{i:06}"))
            .collect();
        let object = |n: i64| -> Vec<serde_json::Value> {
            let start = t0() + n * 5 * MINUTE_MS;
            (0..events)
                .map(|i| {
                    let subject = &names[i % subjects];
                    // A prime period, so skips spread over all subjects.
                    let ip = match i % 23 {
                        0 | 1 => "ec2.amazonaws.com".to_owned(),
                        2 => "10.0.3.7".to_owned(),
                        _ => format!("{}.{}", homes[(i % subjects) % homes.len()], 10 + i % 200),
                    };
                    let t = start + (i as i64 * 5 * MINUTE_MS) / events as i64;
                    record(subject, &ip, t, &format!("m{n}-{i}"))
                })
                .collect()
        };
        // Warm-up: creates every subject's state.
        let key = log_key(&format!("measure-{events}-0"));
        stack.put(&key, log_object(&object(0))).await;
        handler
            .handle(s3_event(&stack.bucket, &[&key]))
            .await
            .expect("warm-up");

        let (mut scan_ms, mut handler_ms, mut gz_bytes) = (0.0, 0.0, 0usize);
        stack.counter.reset();
        for n in 1..=OBJECTS {
            let body = log_object(&object(n));
            gz_bytes += body.len();
            let started = Instant::now();
            let mut cache = GeoCache::new(&stack.geo);
            let scan = scan_object(
                "measure",
                body.as_slice(),
                i64::MAX,
                &mut cache,
                &stack.config(&[]).policy,
                &ReadOptions::default(),
            );
            scan_ms += started.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(scan.events, events as u64);

            let key = log_key(&format!("measure-{events}-{n}"));
            stack.put(&key, body).await;
            let started = Instant::now();
            let o = objects(
                handler
                    .handle(s3_event(&stack.bucket, &[&key]))
                    .await
                    .expect("steady state"),
            );
            handler_ms += started.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(o[0].status, ObjectStatus::Done);
        }
        let state = stack.state(&names).await;
        let item_bytes = state
            .values()
            .map(|v| serde_json::to_string(&v.state).expect("state JSON").len())
            .sum::<usize>()
            / names.len();
        let per = |op: &str| stack.counter.count(op) as f64 / OBJECTS as f64;
        println!(
            "{events} {subjects} | {} | {:.2} | {:.1} | {:.1} {:.1} {:.1} | {item_bytes}",
            gz_bytes / OBJECTS as usize,
            scan_ms / OBJECTS as f64,
            handler_ms / OBJECTS as f64,
            per("BatchGetItem"),
            per("PutItem"),
            per("GetObject"),
        );
    }
}

#[tokio::test]
async fn a_corrupt_state_item_quarantines_its_subject_and_the_object_goes_to_the_dead_letters() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let stack = Stack::new().await;
    let handler = stack.handler(&[]).await;
    let (rotten, healthy) = ("AKIALAMBDAROTTEN0001", "AKIALAMBDAHEALTHY001");
    // What a foreign writer or a bad migration could leave: not a state at all.
    let garbage = HashMap::from([
        ("pk".to_owned(), AttributeValue::S(rotten.to_owned())),
        ("version".to_owned(), AttributeValue::N("7".to_owned())),
        (
            "state".to_owned(),
            AttributeValue::S("{\"subject\": 42".to_owned()),
        ),
    ]);
    let raw = dynamodb_client(None).await;
    raw.put_item()
        .table_name(&stack.table)
        .set_item(Some(garbage.clone()))
        .send()
        .await
        .expect("PutItem");
    let key = log_key("rotten-and-healthy");
    let mut records = sydney_then_frankfurt(rotten, t0(), "r");
    records.extend(sydney_then_frankfurt(healthy, t0(), "h"));
    stack.put(&key, log_object(&records)).await;

    let report = handler
        .process_request(s3_event(&stack.bucket, &[&key]), Some("request-q"))
        .await;
    let metrics = report.metrics.clone();
    let objects = objects(report.into_response().expect("nothing to retry"));
    let o = outcome(&objects, &key);
    assert_eq!(o.status, ObjectStatus::Done, "{o:#?}");
    assert_eq!(
        o.findings.len(),
        1,
        "the healthy subject was judged: {o:#?}"
    );
    assert_eq!(o.quarantined.len(), 1, "{o:#?}");
    assert_eq!(o.quarantined[0].subject, rotten);
    assert!(o.dead_lettered, "{o:#?}");
    assert_eq!(
        (
            metrics.subjects_quarantined,
            metrics.objects_failed,
            metrics.objects_dead_lettered
        ),
        (1, 1, 1)
    );
    let published = receive(&stack.sqs, &stack.raw_queue, 1, Duration::from_secs(10)).await;
    assert_eq!(published.len(), 1);
    assert_eq!(finding(&published[0]).subject, healthy);

    let letters = stack.dead_letters(1).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0]["detail"]["object"]["key"], key.as_str());
    assert_eq!(letters[0]["geotrail"]["request_id"], "request-q");
    let reason = letters[0]["geotrail"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains(rotten) && reason.contains("corrupt"),
        "{reason}"
    );

    // The item is left as it was, for a person to repair; then the redrive judges it.
    let item = raw
        .get_item()
        .table_name(&stack.table)
        .key("pk", AttributeValue::S(rotten.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("still there");
    assert_eq!(item, garbage);
}

#[tokio::test]
async fn twenty_four_objects_of_one_key_in_one_event_take_one_read_and_one_write() {
    let stack = Stack::new().await;
    let handler = stack.handler(&[]).await;
    let subject = "AKIALAMBDABUSYKEY001";
    let start = t0() - 24 * HOUR_MS;
    let mut keys = Vec::new();
    for hour in 0..24 {
        let key = log_key(&format!("busy-{hour:02}"));
        let t = start + hour * HOUR_MS;
        let mut records = vec![record(subject, LONDON, t, &format!("busy-{hour}"))];
        if hour == 12 {
            // Sydney 30 minutes later: one impossible hop in the day.
            records.push(record(subject, SYDNEY, t + 30 * MINUTE_MS, "busy-syd"));
        }
        stack.put(&key, log_object(&records)).await;
        keys.push(key);
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    stack.counter.reset();
    let response = handler
        .handle(s3_event(&stack.bucket, &refs))
        .await
        .expect("no object fails");
    let objects = objects(response);
    assert_eq!(objects.len(), 24);
    for o in &objects {
        assert_eq!((o.status, o.conflicts), (ObjectStatus::Done, 0), "{o:#?}");
    }
    let counts = stack.counter.snapshot();
    assert_eq!(stack.counter.count("BatchGetItem"), 1, "{counts:?}");
    // One save of the subject, and the finding's claim (then marked sent).
    assert_eq!(stack.counter.count("PutItem"), 2, "{counts:?}");
    assert_eq!(stack.counter.count("UpdateItem"), 1, "{counts:?}");
    let with_findings: Vec<&str> = objects
        .iter()
        .filter(|o| !o.findings.is_empty())
        .map(|o| o.key.as_str())
        .collect();
    assert_eq!(with_findings, [keys[12].as_str()]);
    let published = receive(&stack.sqs, &stack.raw_queue, 1, Duration::from_secs(10)).await;
    assert_eq!(published.len(), 1);
    assert!(finding(&published[0]).source_object.ends_with(&keys[12]));
}
