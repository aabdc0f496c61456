//! `SnsNotifier` against moto's SNS, delivering to SQS queues subscribed to the topic.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::Message;
use geotrail::aws::dynamo::create_table;
use geotrail::aws::sns::severity_rank;
use geotrail::aws::{DynamoClaims, SnsNotifier};
use geotrail::finding::render::render_subject;
use geotrail::finding::Finding;
use geotrail::notify::claim::{Claim, ClaimPolicy, ClaimStore, ClaimingNotifier, Incident};
use geotrail::notify::Notifier;

use super::support::{
    dynamodb_client, sns_client, sqs_client, subscribed_queue, unique_name, RequestCounter,
};

/// A finding as the detector writes it, from its JSON.
fn finding(id: &str, severity: &str, subject: &str) -> Finding {
    let json = serde_json::json!({
        "finding_id": id,
        "rule": "impossible_travel",
        "severity": severity,
        "title": format!("Impossible travel of {subject} from Sydney, Australia to Frankfurt am Main, Germany"),
        "summary": format!("`{subject}` had activity from Sydney, Australia and Frankfurt am Main, Germany which are approximately 16480km apart within 1 hour. This indicates a potential impossible travel."),
        "triage": ["Confirm with the owner.", "Deactivate the key."],
        "account_id": "123456789012",
        "subject": subject,
        "subject_kind": "access_key",
        "user_identity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/alice", "access_key_id": subject},
        "impossible_travel": {
            "triggering_locations": {
                "first_location": {
                    "event_id": "ev-1", "event_time": "2023-07-10T10:00:00Z", "event_name": "ListBuckets",
                    "event_source": "s3.amazonaws.com", "aws_region": "ap-southeast-2", "ip": "203.0.113.10",
                    "city": "Sydney", "subdivision": "New South Wales", "country": "Australia", "country_code": "AU",
                    "latitude": -33.87, "longitude": 151.21, "accuracy_radius_km": 20, "asn": 64500, "as_org": "Example Net"
                },
                "second_location": {
                    "event_id": "ev-2", "event_time": "2023-07-10T11:00:00Z", "event_name": "GetObject",
                    "event_source": "s3.amazonaws.com", "aws_region": "eu-central-1", "ip": "198.51.100.7",
                    "city": "Frankfurt am Main", "subdivision": "Hesse", "country": "Germany", "country_code": "DE",
                    "latitude": 50.11, "longitude": 8.68, "accuracy_radius_km": 10, "asn": null, "as_org": null
                }
            },
            "travel_distance": 16480.4,
            "effective_distance_km": 16450.4,
            "travel_time_seconds": 3600.0,
            "travel_time_human_readable": "1 hour",
            "speed_kmh": 16450.4,
            "concurrent_use": false
        },
        "geoip": {"database_type": "GeoLite2-City", "build_epoch": 1688000000},
        "source_object": "s3://trail/AWSLogs/123456789012/CloudTrail/eu-central-1/2023/07/10/x.json.gz",
        "event_time": "2023-07-10T11:00:00Z"
    });
    serde_json::from_value(json).expect("the test finding matches the model")
}

/// Receives until `want` messages came, or 10 s passed.
async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, want: usize) -> Vec<Message> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage");
        got.extend(out.messages.unwrap_or_default());
    }
    got
}

/// Attribute name -> (SNS data type, value).
type Attributes = BTreeMap<String, (String, String)>;

fn expected_attributes(f: &Finding) -> Attributes {
    let string = |v: &str| ("String".to_owned(), v.to_owned());
    BTreeMap::from([
        ("rule".to_owned(), string("impossible_travel")),
        ("severity".to_owned(), string(f.severity.as_str())),
        (
            "severity_rank".to_owned(),
            ("Number".to_owned(), severity_rank(f.severity).to_string()),
        ),
        ("account_id".to_owned(), string("123456789012")),
        ("subject".to_owned(), string(&f.subject)),
    ])
}

#[tokio::test]
async fn findings_reach_subscribed_queues_raw_and_enveloped_with_their_attributes() {
    let counter = RequestCounter::new();
    let sns = sns_client(Some(&counter)).await;
    let sqs = sqs_client().await;
    let topic_arn = sns
        .create_topic()
        .name(unique_name("geotrail-findings"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("a topic ARN");
    let raw_queue = subscribed_queue(&sns, &sqs, &topic_arn, true, None).await;
    let envelope_queue = subscribed_queue(&sns, &sqs, &topic_arn, false, None).await;
    let high_only_queue = subscribed_queue(
        &sns,
        &sqs,
        &topic_arn,
        true,
        Some(r#"{"severity": ["high", "critical"]}"#),
    )
    .await;
    let high_rank_queue = subscribed_queue(
        &sns,
        &sqs,
        &topic_arn,
        true,
        Some(r#"{"severity_rank": [{"numeric": [">=", 3]}]}"#),
    )
    .await;

    let findings = [
        finding(
            "f0000000000000000000000000000001",
            "high",
            "AKIAHIGH000000000001",
        ),
        finding(
            "f0000000000000000000000000000002",
            "low",
            "AKIALOW0000000000002",
        ),
    ];
    let by_id: HashMap<&str, &Finding> = findings
        .iter()
        .map(|f| (f.finding_id.as_str(), f))
        .collect();
    counter.reset();
    SnsNotifier::new(sns.clone(), topic_arn.clone())
        .publish(&findings)
        .await
        .expect("publish");
    assert_eq!(
        counter.count("PublishBatch"),
        1,
        "two findings, one batch: {:?}",
        counter.snapshot()
    );

    // Raw delivery: the body is the `sqs` rendering, the finding JSON itself; the
    // attributes become SQS message attributes.
    let raw = receive(&sqs, &raw_queue, 2).await;
    assert_eq!(raw.len(), 2, "raw queue: {raw:?}");
    for m in &raw {
        let got: Finding =
            serde_json::from_str(m.body().expect("a body")).expect("the body is a finding");
        let want = by_id
            .get(got.finding_id.as_str())
            .expect("a published finding");
        assert_eq!(&got, *want);
        let attributes: Attributes = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            (
                                v.data_type().to_owned(),
                                v.string_value().unwrap_or_default().to_owned(),
                            ),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            attributes,
            expected_attributes(want),
            "raw attributes of {}",
            want.finding_id
        );
    }

    // Envelope delivery: SNS's JSON (pretty-printed by moto: parse, don't compare text)
    // with the finding JSON as `Message`, the subject and the attributes.
    let enveloped = receive(&sqs, &envelope_queue, 2).await;
    assert_eq!(enveloped.len(), 2, "envelope queue: {enveloped:?}");
    for m in &enveloped {
        let envelope: serde_json::Value =
            serde_json::from_str(m.body().expect("a body")).expect("the envelope is JSON");
        assert_eq!(envelope["Type"], "Notification");
        assert_eq!(envelope["TopicArn"], topic_arn.as_str());
        let got: Finding =
            serde_json::from_str(envelope["Message"].as_str().expect("Message is a string"))
                .expect("Message is the finding JSON");
        let want = by_id
            .get(got.finding_id.as_str())
            .expect("a published finding");
        assert_eq!(&got, *want);
        assert_eq!(envelope["Subject"], render_subject(want).as_str());
        let attributes: Attributes = envelope["MessageAttributes"]
            .as_object()
            .expect("MessageAttributes")
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    (
                        v["Type"].as_str().unwrap_or_default().to_owned(),
                        v["Value"].as_str().unwrap_or_default().to_owned(),
                    ),
                )
            })
            .collect();
        assert_eq!(
            attributes,
            expected_attributes(want),
            "envelope attributes of {}",
            want.finding_id
        );
    }

    // A filter policy on the severity attribute, or a numeric one on its rank, lets only
    // the high finding through.
    for queue in [&high_only_queue, &high_rank_queue] {
        let filtered = receive(&sqs, queue, 1).await;
        let ids: Vec<String> = filtered
            .iter()
            .map(|m| {
                serde_json::from_str::<Finding>(m.body().unwrap_or_default())
                    .expect("a finding")
                    .finding_id
            })
            .collect();
        assert_eq!(ids, ["f0000000000000000000000000000001"], "{queue}");
    }
}

#[tokio::test]
async fn more_than_ten_findings_go_out_in_batches_of_ten() {
    let counter = RequestCounter::new();
    let sns = sns_client(Some(&counter)).await;
    let sqs = sqs_client().await;
    let topic_arn = sns
        .create_topic()
        .name(unique_name("geotrail-batch"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("ARN");
    let queue = subscribed_queue(&sns, &sqs, &topic_arn, true, None).await;
    let findings: Vec<Finding> = (0..23)
        .map(|i| {
            finding(
                &format!("batch{i:027}"),
                "medium",
                &format!("AKIABATCH{i:011}"),
            )
        })
        .collect();
    counter.reset();
    SnsNotifier::new(sns, topic_arn)
        .publish(&findings)
        .await
        .expect("publish");
    assert_eq!(counter.count("PublishBatch"), 3, "{:?}", counter.snapshot());
    let mut ids: Vec<String> = receive(&sqs, &queue, 23)
        .await
        .iter()
        .map(|m| {
            serde_json::from_str::<Finding>(m.body().unwrap_or_default())
                .expect("a finding")
                .finding_id
        })
        .collect();
    ids.sort();
    let want: Vec<String> = findings.iter().map(|f| f.finding_id.clone()).collect();
    assert_eq!(ids, want, "every finding delivered once");
}

#[tokio::test]
async fn publishing_to_a_missing_topic_fails_naming_it() {
    let sns = sns_client(None).await;
    let topic_arn = format!(
        "arn:aws:sns:us-east-1:123456789012:{}",
        unique_name("geotrail-missing")
    );
    let notifier = SnsNotifier::new(sns, topic_arn.clone());
    notifier
        .publish(&[])
        .await
        .expect("nothing to publish is not an error");
    let err = notifier
        .publish(&[finding(
            "f0000000000000000000000000000009",
            "high",
            "AKIAMISSING000000001",
        )])
        .await
        .expect_err("no such topic");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("topic {topic_arn}"))
            && msg.contains("f0000000000000000000000000000009"),
        "{msg}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the SDK error is kept as the source"
    );
}

/// A topic with a raw queue subscribed, a state table, and SNS behind claims in it.
async fn claiming_stack(
    pending_timeout: Duration,
) -> (
    ClaimingNotifier<DynamoClaims, SnsNotifier>,
    aws_sdk_sqs::Client,
    String,
) {
    let sns = sns_client(None).await;
    let sqs = sqs_client().await;
    let topic_arn = sns
        .create_topic()
        .name(unique_name("geotrail-findings"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("a topic ARN");
    let queue = subscribed_queue(&sns, &sqs, &topic_arn, true, None).await;
    let dynamodb = dynamodb_client(None).await;
    let table = unique_name("geotrail-state");
    create_table(&dynamodb, &table).await.expect("create table");
    let notifier = ClaimingNotifier::new(
        DynamoClaims::new(dynamodb, table),
        SnsNotifier::new(sns, topic_arn),
        ClaimPolicy {
            pending_timeout,
            reopen_after: Some(Duration::from_secs(3600)),
            lifetime: Duration::from_secs(86_400),
            wait_for_holder: Duration::from_millis(300),
        },
    );
    (notifier, sqs, queue)
}

/// The same hop of a pair, with the id it would get in another dedup window.
fn same_incident_other_id(f: &Finding, id: &str) -> Finding {
    let mut other = f.clone();
    other.finding_id = id.to_owned();
    other
}

#[tokio::test]
async fn one_incident_published_twice_under_two_finding_ids_reaches_subscribers_once() {
    let (notifier, sqs, queue) = claiming_stack(Duration::from_secs(120)).await;
    let first = finding(
        "f1000000000000000000000000000001",
        "high",
        "AKIACLAIM00000000001",
    );
    let second = same_incident_other_id(&first, "f1000000000000000000000000000002");
    notifier
        .publish(std::slice::from_ref(&first))
        .await
        .expect("first");
    notifier
        .publish(std::slice::from_ref(&second))
        .await
        .expect("second");
    // A different incident of the same places: a hop three hours later.
    let mut later = same_incident_other_id(&first, "f1000000000000000000000000000003");
    later.event_time = "2023-07-10T14:00:00Z".to_owned();
    notifier
        .publish(std::slice::from_ref(&later))
        .await
        .expect("later");

    let got = receive(&sqs, &queue, 3).await;
    let ids: Vec<String> = got
        .iter()
        .map(|m| {
            serde_json::from_str::<Finding>(m.body().unwrap())
                .unwrap()
                .finding_id
        })
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        ids.contains(&first.finding_id) && ids.contains(&later.finding_id),
        "{ids:?}"
    );
}

#[tokio::test]
async fn a_claim_pending_past_its_timeout_is_retaken_and_a_fresh_one_fails_the_publish() {
    let timeout = Duration::from_secs(2);
    let (notifier, sqs, queue) = claiming_stack(timeout).await;
    let f = finding(
        "f2000000000000000000000000000001",
        "high",
        "AKIACLAIM00000000002",
    );
    let incident = Incident::of(&f);
    // Another invocation claimed it and has not published yet.
    let now = geotrail::clock::epoch_ms_now();
    let taken = notifier
        .claims()
        .claim(&incident, "crashed", now, &ClaimPolicy::default())
        .await
        .expect("claim");
    assert_eq!(taken, Claim::Taken);
    let err = notifier
        .publish(std::slice::from_ref(&f))
        .await
        .expect_err("held by another");
    assert!(err.to_string().contains("still being published"), "{err}");
    assert!(
        receive(&sqs, &queue, 1).await.is_empty(),
        "nothing sent while held"
    );

    // It crashed: after the timeout the claim is retaken and the finding sent, once.
    tokio::time::sleep(timeout).await;
    notifier
        .publish(std::slice::from_ref(&f))
        .await
        .expect("retaken");
    notifier
        .publish(std::slice::from_ref(&f))
        .await
        .expect("already sent");
    assert_eq!(receive(&sqs, &queue, 2).await.len(), 1);
}
