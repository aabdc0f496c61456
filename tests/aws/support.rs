//! What every AWS test needs: SDK configs pointed at the moto server started by
//! `.ci/test`, unique resource names, and a request counter.

// Each test module uses a different part of this.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

pub const ENDPOINT_VAR: &str = "GEOTRAIL_TEST_AWS_ENDPOINT";
pub const REGION: &str = "us-east-1";
/// moto's default account.
pub const ACCOUNT_ID: &str = "123456789012";

/// The moto server's URL. Panics (the test fails) when the suite was not started by
/// `.ci/test`: an AWS test that silently skips proves nothing.
pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{ENDPOINT_VAR} is not set: run the test suite with `.ci/test`, which starts a local \
             moto server and points the AWS tests at it"
        ),
    }
}

/// An SDK config for moto: its endpoint, test credentials, us-east-1. Nothing is read
/// from the machine's AWS profile.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "geotrail-tests",
        ))
        .load()
        .await
}

pub async fn dynamodb_client(counter: Option<&RequestCounter>) -> aws_sdk_dynamodb::Client {
    let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk_config().await);
    if let Some(counter) = counter {
        config = config.interceptor(counter.clone());
    }
    aws_sdk_dynamodb::Client::from_conf(config.build())
}

pub async fn sns_client(counter: Option<&RequestCounter>) -> aws_sdk_sns::Client {
    let mut config = aws_sdk_sns::config::Builder::from(&sdk_config().await);
    if let Some(counter) = counter {
        config = config.interceptor(counter.clone());
    }
    aws_sdk_sns::Client::from_conf(config.build())
}

pub async fn securityhub_client(counter: Option<&RequestCounter>) -> aws_sdk_securityhub::Client {
    let mut config = aws_sdk_securityhub::config::Builder::from(&sdk_config().await);
    if let Some(counter) = counter {
        config = config.interceptor(counter.clone());
    }
    aws_sdk_securityhub::Client::from_conf(config.build())
}

pub async fn eventbridge_client(counter: Option<&RequestCounter>) -> aws_sdk_eventbridge::Client {
    let mut config = aws_sdk_eventbridge::config::Builder::from(&sdk_config().await);
    if let Some(counter) = counter {
        config = config.interceptor(counter.clone());
    }
    aws_sdk_eventbridge::Client::from_conf(config.build())
}

pub async fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config().await)
}

/// S3 through moto needs path-style addressing (`http://127.0.0.1:PORT/bucket/key`).
pub async fn s3_client(counter: Option<&RequestCounter>) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::config::Builder::from(&sdk_config().await).force_path_style(true);
    if let Some(counter) = counter {
        config = config.interceptor(counter.clone());
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// A name no other test (or earlier run against the same server) uses: tests run in
/// parallel against one moto server. Lowercase alphanumerics and hyphens, valid for
/// tables, topics, queues and buckets alike.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// Counts the HTTP requests a client sends, by operation (`"BatchGetItem"`, `"PutItem"`,
/// ...): retries count, as they are billed. Attach one counter to any number of
/// clients with `.interceptor(counter.clone())` on their config builder (or use the
/// `*_client(Some(&counter))` helpers); clones share their counts.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl RequestCounter {
    pub fn new() -> RequestCounter {
        RequestCounter::default()
    }

    /// Requests sent for one operation.
    pub fn count(&self, operation: &str) -> usize {
        self.lock().get(operation).copied().unwrap_or(0)
    }

    /// Requests sent for every operation.
    pub fn total(&self) -> usize {
        self.lock().values().sum()
    }

    /// Operation -> requests, for assertion messages.
    pub fn snapshot(&self) -> BTreeMap<String, usize> {
        self.lock().clone()
    }

    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        // A test that panicked while holding the lock has failed already; its counts
        // are still the best information there is.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    // Once per attempt, just before the request goes on the wire.
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", |m| m.name())
            .to_owned();
        *self.lock().entry(operation).or_insert(0) += 1;
        Ok(())
    }
}

/// A queue subscribed to `topic_arn`; returns its URL.
pub async fn subscribed_queue(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    topic_arn: &str,
    raw: bool,
    filter_policy: Option<&str>,
) -> String {
    let url = sqs
        .create_queue()
        .queue_name(unique_name("geotrail-q"))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("a queue URL");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes");
    let arn = attrs
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .expect("a queue ARN");
    let mut subscribe = sns
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(arn);
    // Envelope delivery is the default; moto treats any RawMessageDelivery value as on.
    if raw {
        subscribe = subscribe.attributes("RawMessageDelivery", "true");
    }
    if let Some(policy) = filter_policy {
        subscribe = subscribe.attributes("FilterPolicy", policy);
    }
    subscribe.send().await.expect("Subscribe");
    url
}

/// The filter policy `template.yaml` gives the email subscription, as a deployment with
/// the default parameters would set it: `Ref`s to parameters and `Fn::FindInMap` resolved.
///
/// The template is read with cfn-lint's decoder (from `.venv`, installed by `.ci/test`),
/// which knows CloudFormation's short forms (`!Ref`, `!FindInMap`).
pub fn email_filter_policy() -> String {
    let template = decoded_template();
    let subscription = &template["Resources"]["AlertEmailSubscription"]["Properties"];
    assert_eq!(
        subscription["FilterPolicyScope"], "MessageAttributes",
        "the email filter is on message attributes: {subscription}"
    );
    let policy = resolve(&template, &subscription["FilterPolicy"]);
    assert!(
        policy.is_object(),
        "the email subscription has a filter policy: {subscription}"
    );
    policy.to_string()
}

pub fn decoded_template() -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the tests with `.ci/test`, which installs cfn-lint there",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import json, sys\n\
             from cfnlint.decode import decode\n\
             template, problems = decode(sys.argv[1])\n\
             assert not problems, problems\n\
             print(json.dumps(template))",
        ])
        .arg(root.join("template.yaml"))
        .output()
        .expect("run cfn-lint's decoder");
    assert!(
        out.status.success(),
        "decoding template.yaml failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the decoded template is JSON")
}

/// `Ref` to a parameter (its default) and `Fn::FindInMap`, recursively; anything else
/// as written.
fn resolve(template: &serde_json::Value, value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("Ref") => {
            let name = map["Ref"].as_str().expect("Ref names a string");
            let default = &template["Parameters"][name]["Default"];
            assert!(!default.is_null(), "parameter {name} has no default");
            default.clone()
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("Fn::FindInMap") => {
            let args: Vec<Value> = map["Fn::FindInMap"]
                .as_array()
                .expect("FindInMap takes a list")
                .iter()
                .map(|a| resolve(template, a))
                .collect();
            let [m, top, second] = &args[..] else {
                panic!("FindInMap takes three arguments: {args:?}");
            };
            let found = &template["Mappings"][m.as_str().expect("a map name")]
                [top.as_str().expect("a top-level key")][second.as_str().expect("a key")];
            assert!(!found.is_null(), "no mapping value for {args:?}");
            found.clone()
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), resolve(template, v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(template, v)).collect()),
        other => other.clone(),
    }
}
