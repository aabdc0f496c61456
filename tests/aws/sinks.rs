//! The Lambda's optional sinks against moto, through the real SDK: findings imported
//! into Security Hub (read back with GetFindings), and put on an EventBridge bus whose
//! rules route them by `rule` and `severity` to SQS queues.
//!
//! moto keeps one Security Hub per account and region for the whole run and its
//! GetFindings ignores filters: findings are told apart by their ids and access keys,
//! unique to each test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_securityhub::types::{AwsSecurityFinding, SeverityLabel};
use geotrail::aws::backoff::Backoff;
use geotrail::aws::lambda::{HandlerError, ObjectStatus};
use geotrail::aws::{EventBridgeNotifier, SecurityHubNotifier};
use geotrail::finding::Finding;
use serde_json::{json, Value};

use super::lambda::{
    finding, log_key, log_object, objects, outcome, receive, record, s3_event,
    sydney_then_frankfurt, t0, Stack, ACCOUNT, FRANKFURT, HOUR_MS, SYDNEY,
};
use super::support::{
    decoded_template, dynamodb_client, eventbridge_client, sdk_config, securityhub_client,
    unique_name,
};

fn product_arn() -> String {
    format!("arn:aws:securityhub:us-east-1:{ACCOUNT}:product/{ACCOUNT}/default")
}

/// An access key no other test uses: findings in moto's one Security Hub are told apart
/// by it.
fn unique_key(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("AKIA{prefix}{:012X}", nanos & 0xFFFF_FFFF_FFFF)
}

/// Every finding Security Hub holds, page by page (moto ignores GetFindings' filters).
///
/// On a thread of its own with a large stack: the SDK's debug-build deserializer of an
/// ASFF finding (its `ResourceDetails` alone is 31 KB, moved through builders) needs more
/// than a test thread's 2 MiB.
async fn hub_findings(client: &aws_sdk_securityhub::Client) -> Vec<AwsSecurityFinding> {
    let client = client.clone();
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(all_hub_findings(&client))
        })
        .expect("spawn")
        .join()
        .expect("GetFindings thread")
}

async fn all_hub_findings(client: &aws_sdk_securityhub::Client) -> Vec<AwsSecurityFinding> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .get_findings()
            .max_results(100)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("GetFindings");
        all.extend(page.findings().iter().cloned());
        token = page
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if token.is_none() {
            return all;
        }
    }
}

/// The findings about one access key.
async fn hub_findings_of(
    client: &aws_sdk_securityhub::Client,
    access_key: &str,
) -> Vec<AwsSecurityFinding> {
    hub_findings(client)
        .await
        .into_iter()
        .filter(|f| f.resources().iter().any(|r| r.id() == Some(access_key)))
        .collect()
}

async fn delete_state_item(table: &str, subject: &str) {
    dynamodb_client(None)
        .await
        .delete_item()
        .table_name(table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(subject.to_owned()),
        )
        .send()
        .await
        .expect("DeleteItem");
}

#[tokio::test]
async fn an_impossible_travel_is_imported_into_security_hub_once_and_replays_import_nothing() {
    let stack = Stack::new().await;
    let hub = securityhub_client(Some(&stack.counter)).await;
    let handler = stack.handler(&[]).await.with_security_hub(
        SecurityHubNotifier::new(hub.clone(), &product_arn()).expect("a product ARN"),
    );
    let key = unique_key("HUB");
    let object = log_key(&format!("20250101T0100Z_{key}"));
    stack
        .put(
            &object,
            log_object(&sydney_then_frankfurt(&key, t0(), "hub")),
        )
        .await;
    let event = s3_event(&stack.bucket, &[&object]);

    let response = handler
        .handle(event.clone())
        .await
        .expect("nothing to retry");
    let objects = objects(response);
    let o = outcome(&objects, &object);
    assert_eq!(o.status, ObjectStatus::Done, "{o:#?}");
    assert_eq!(o.findings.len(), 1, "{o:#?}");
    let id = o.findings[0].clone();
    assert_eq!(stack.counter.count("BatchImportFindings"), 1);

    let found = hub_findings_of(&hub, &key).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(f.id(), Some(id.as_str()));
    assert_eq!(f.product_arn(), Some(product_arn().as_str()));
    assert_eq!(f.generator_id(), Some("geotrail/impossible_travel"));
    assert_eq!(f.aws_account_id(), Some(ACCOUNT));
    assert_eq!(f.schema_version(), Some("2018-10-08"));
    // 16,000 km in an hour.
    assert_eq!(
        f.severity().and_then(|s| s.label()),
        Some(&SeverityLabel::High)
    );
    assert!(
        f.types()
            .contains(&"TTPs/Initial Access/Impossible Travel".to_owned()),
        "{:?}",
        f.types()
    );
    let resource = &f.resources()[0];
    assert_eq!(
        (resource.r#type(), resource.id()),
        (Some("AwsIamAccessKey"), Some(key.as_str()))
    );
    let call = f
        .action()
        .and_then(|a| a.aws_api_call_action())
        .expect("the API call action");
    let remote = call.remote_ip_details().expect("the caller's address");
    assert_eq!(remote.ip_address_v4(), Some(FRANKFURT));
    assert_eq!(
        remote.city().and_then(|c| c.city_name()),
        Some("Frankfurt am Main")
    );
    assert_eq!(remote.country().and_then(|c| c.country_code()), Some("DE"));
    assert!(remote.geo_location().and_then(|g| g.lat()).is_some());
    assert_eq!(call.api(), Some("ListBuckets"));
    assert_eq!(f.network().and_then(|n| n.source_ipv4()), Some(FRANKFURT));
    let fields = f.product_fields().expect("product fields");
    assert_eq!(
        fields.get("geotrail/from/ip").map(String::as_str),
        Some(SYDNEY)
    );
    assert_eq!(
        fields.get("geotrail/finding_id").map(String::as_str),
        Some(id.as_str())
    );

    // SNS got it as always.
    let raw = receive(&stack.sqs, &stack.raw_queue, 1, Duration::from_secs(10)).await;
    assert_eq!(raw.len(), 1, "{raw:?}");
    assert_eq!(finding(&raw[0]).finding_id, id);

    // A replay: the state knows the hop, nothing is raised or imported.
    let objects_again = super::lambda::objects(
        handler
            .handle(event.clone())
            .await
            .expect("nothing to retry"),
    );
    assert!(outcome(&objects_again, &object).findings.is_empty());
    assert_eq!(stack.counter.count("BatchImportFindings"), 1);

    // The subject's state lost (restored from an old backup, deleted by hand): the hop
    // is raised again with the same id, and the claims keep it from both sinks.
    delete_state_item(&stack.table, &key).await;
    let objects_lost =
        super::lambda::objects(handler.handle(event).await.expect("nothing to retry"));
    assert_eq!(
        outcome(&objects_lost, &object).findings,
        std::slice::from_ref(&id),
        "raised again"
    );
    assert_eq!(
        stack.counter.count("BatchImportFindings"),
        1,
        "not imported again"
    );
    let found = hub_findings_of(&hub, &key).await;
    assert_eq!(found.len(), 1, "one finding in Security Hub: {found:#?}");
    let again = receive(&stack.sqs, &stack.raw_queue, 1, Duration::from_secs(2)).await;
    assert!(again.is_empty(), "not published again: {again:?}");
}

#[tokio::test]
async fn a_failed_import_fails_the_object_and_its_retry_imports_without_publishing_twice() {
    let stack = Stack::new().await;
    let key = unique_key("RETRY");
    let object = log_key(&format!("20250101T0200Z_{key}"));
    stack
        .put(
            &object,
            log_object(&sydney_then_frankfurt(&key, t0(), "retry")),
        )
        .await;
    let event = s3_event(&stack.bucket, &[&object]);

    // Security Hub unreachable: nothing listens on port 1.
    let unreachable = aws_sdk_securityhub::Client::from_conf(
        aws_sdk_securityhub::config::Builder::from(&sdk_config().await)
            .endpoint_url("http://127.0.0.1:1")
            .retry_config(aws_sdk_securityhub::config::retry::RetryConfig::disabled())
            .build(),
    );
    let once = Backoff {
        max_attempts: 1,
        ..Backoff::default()
    };
    let failing = stack.handler(&[]).await.with_security_hub(
        SecurityHubNotifier::new(unreachable, &product_arn())
            .unwrap()
            .with_backoff(once),
    );
    let err = failing
        .handle(event.clone())
        .await
        .expect_err("the import failed: the object is retried");
    let HandlerError::Retry { problems } = &err;
    let text = problems.join("; ");
    assert!(
        text.contains(&object)
            && text.contains("Security Hub")
            && text.contains("claiming notifier (securityhub)"),
        "{text}"
    );
    let raw = receive(&stack.sqs, &stack.raw_queue, 1, Duration::from_secs(10)).await;
    assert_eq!(raw.len(), 1, "SNS delivered regardless: {raw:?}");
    let id = finding(&raw[0]).finding_id;

    // The retry, with Security Hub back.
    let hub = securityhub_client(Some(&stack.counter)).await;
    let handler = stack
        .handler(&[])
        .await
        .with_security_hub(SecurityHubNotifier::new(hub.clone(), &product_arn()).unwrap());
    let objects = objects(handler.handle(event).await.expect("nothing to retry"));
    assert_eq!(
        outcome(&objects, &object).findings,
        std::slice::from_ref(&id)
    );
    assert_eq!(stack.counter.count("BatchImportFindings"), 1);
    let found = hub_findings_of(&hub, &key).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].id(), Some(id.as_str()));
    let again = receive(&stack.sqs, &stack.raw_queue, 1, Duration::from_secs(2)).await;
    assert!(again.is_empty(), "the topic's claim held: {again:?}");
}

/// A queue EventBridge delivers to; returns its URL and ARN.
async fn queue(sqs: &aws_sdk_sqs::Client) -> (String, String) {
    let url = sqs
        .create_queue()
        .queue_name(unique_name("geotrail-eb"))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("a queue URL");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("a queue ARN");
    (url, arn)
}

/// A rule on `bus` with `pattern`, targeting a new queue; returns the queue's URL.
async fn routed_queue(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    bus: &str,
    pattern: &str,
) -> String {
    let (url, arn) = queue(sqs).await;
    let rule = unique_name("gt-rule");
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(bus)
        .event_pattern(pattern)
        .send()
        .await
        .expect("PutRule");
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .expect("a target"),
        )
        .send()
        .await
        .expect("PutTargets");
    url
}

/// An EventBridge event as SQS receives it: the envelope and the finding in `detail`.
fn event_finding(body: &str) -> (Value, Finding) {
    let event: Value = serde_json::from_str(body).expect("an event is JSON");
    let finding: Finding =
        serde_json::from_value(event["detail"].clone()).expect("the detail is a finding");
    (event, finding)
}

#[tokio::test]
async fn eventbridge_rules_route_findings_by_rule_and_severity() {
    let stack = Stack::new().await;
    let events = eventbridge_client(Some(&stack.counter)).await;
    let bus = unique_name("geotrail-bus");
    events
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("CreateEventBus");
    let urgent = routed_queue(
        &events,
        &stack.sqs,
        &bus,
        r#"{"source":["geotrail"],"detail":{"rule":["impossible_travel"],"severity":["high","critical"]}}"#,
    )
    .await;
    let mild_travel = routed_queue(
        &events,
        &stack.sqs,
        &bus,
        r#"{"source":["geotrail"],"detail":{"rule":["impossible_travel"],"severity":["low"]}}"#,
    )
    .await;
    let key_use = routed_queue(
        &events,
        &stack.sqs,
        &bus,
        r#"{"source":["geotrail"],"detail-type":["geotrail finding"],"detail":{"rule":["long_term_access_key_auth"]}}"#,
    )
    .await;
    let handler = stack
        .handler(&[(
            "GEOTRAIL_RULES",
            "impossible_travel,long_term_access_key_auth",
        )])
        .await
        .with_event_bus(EventBridgeNotifier::new(events, &bus));

    // A long-term key from Sydney, then from Frankfurt an hour later: one impossible
    // travel (high) and a key use per address (info).
    let key = unique_key("BUS");
    let object = log_key(&format!("20250101T0300Z_{key}"));
    let mut records = sydney_then_frankfurt(&key, t0(), "bus");
    records.push(record(&key, FRANKFURT, t0() + HOUR_MS + 1000, "bus-fra-2"));
    stack.put(&object, log_object(&records)).await;
    let event = s3_event(&stack.bucket, &[&object]);
    let objects = objects(
        handler
            .handle(event.clone())
            .await
            .expect("nothing to retry"),
    );
    let o = outcome(&objects, &object);
    assert_eq!(o.findings.len(), 3, "{o:#?}");
    assert_eq!(stack.counter.count("PutEvents"), 3, "one event per finding");

    let got = receive(&stack.sqs, &urgent, 2, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1, "only the impossible travel: {got:#?}");
    let (envelope, travel) = event_finding(&got[0]);
    assert_eq!(envelope["source"], "geotrail");
    assert_eq!(envelope["detail-type"], "geotrail finding");
    assert_eq!(travel.rule.as_str(), "impossible_travel");
    assert_eq!(travel.severity.as_str(), "high");
    assert_eq!(travel.subject, key);
    assert!(o.findings.contains(&travel.finding_id));

    let none = receive(&stack.sqs, &mild_travel, 1, Duration::from_secs(1)).await;
    assert!(
        none.is_empty(),
        "a high finding does not match low: {none:#?}"
    );

    let uses = receive(&stack.sqs, &key_use, 2, Duration::from_secs(5)).await;
    assert_eq!(uses.len(), 2, "{uses:#?}");
    for body in &uses {
        let (_, f) = event_finding(body);
        assert_eq!(f.rule.as_str(), "long_term_access_key_auth");
        assert!(o.findings.contains(&f.finding_id));
    }

    // A replay puts nothing.
    handler.handle(event).await.expect("nothing to retry");
    assert_eq!(stack.counter.count("PutEvents"), 3);
    let later = receive(&stack.sqs, &urgent, 1, Duration::from_secs(1)).await;
    assert!(later.is_empty(), "{later:#?}");
}

#[test]
fn the_template_grants_each_sink_one_action_on_one_resource_and_only_when_it_is_on() {
    let template = decoded_template();
    assert_eq!(template["Parameters"]["SecurityHub"]["Default"], "Disabled");
    assert_eq!(
        template["Parameters"]["FindingsEventBusName"]["Default"],
        ""
    );
    let function = &template["Resources"]["GeotrailFunction"]["Properties"];
    let statements = function["Policies"][0]["Statement"]
        .as_array()
        .expect("the function's policy statements");
    let when = |condition: &str| -> Vec<Value> {
        statements
            .iter()
            .filter_map(|s| s.get("Fn::If"))
            .filter(|f| f[0] == condition)
            .map(|f| {
                assert_eq!(f[2], json!({ "Ref": "AWS::NoValue" }), "{f}");
                f[1].clone()
            })
            .collect()
    };
    let product = "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/${AWS::AccountId}/default";
    assert_eq!(
        when("SecurityHubEnabled"),
        [json!({
            "Effect": "Allow",
            "Action": "securityhub:BatchImportFindings",
            "Resource": { "Fn::Sub": product },
        })]
    );
    assert_eq!(
        when("HasFindingsEventBus"),
        [json!({
            "Effect": "Allow",
            "Action": "events:PutEvents",
            "Resource": { "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${FindingsEventBusName}" },
        })]
    );
    // Nothing else in the policy names either service.
    let policy = serde_json::to_string(statements).unwrap();
    assert_eq!(policy.matches("securityhub:").count(), 2, "{policy}");
    assert_eq!(policy.matches("events:").count(), 2, "{policy}");

    let env = &function["Environment"]["Variables"];
    assert_eq!(
        env["GEOTRAIL_SECURITY_HUB_PRODUCT_ARN"],
        json!({ "Fn::If": ["SecurityHubEnabled", { "Fn::Sub": product }, ""] })
    );
    assert_eq!(
        env["GEOTRAIL_EVENT_BUS"],
        json!({ "Ref": "FindingsEventBusName" })
    );
}
