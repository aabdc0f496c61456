//! End to end: the real `bootstrap` binary under `cargo lambda watch` (the Lambda runtime
//! API emulator), invoked with `cargo lambda invoke --data-file` on an S3 event, against
//! moto: the finding must come out of an SQS queue subscribed to the topic.
//!
//! The first invoke builds `bootstrap`, which takes minutes on a cold target directory.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use geotrail::aws::dynamo::create_table;
use geotrail::finding::{Finding, Rule};
use serde::Deserialize;
use serde_json::json;

use super::support::{
    dynamodb_client, endpoint, s3_client, sns_client, sqs_client, subscribed_queue, unique_name,
    REGION,
};

/// Building `bootstrap` from a cold target directory, then the invocation itself.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const WATCH_START_TIMEOUT: Duration = Duration::from_secs(60);

/// cargo-lambda from PATH (`.ci/test` puts `.venv/bin` first) or the repository's `.venv`.
fn cargo_lambda() -> PathBuf {
    let in_venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/cargo-lambda");
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("cargo-lambda"))
        .find(|candidate| candidate.is_file());
    on_path
        .or_else(|| in_venv.is_file().then_some(in_venv))
        .unwrap_or_else(|| {
            panic!(
            "cargo-lambda is not installed: run the test suite with `.ci/test`, which installs it \
             (pip `cargo-lambda`) into .venv and puts it on PATH"
        )
        })
}

/// Stops `cargo lambda watch` and everything it started (cargo, the function) however
/// the test ends: they share a process group of their own.
struct WatchGuard {
    child: Child,
    log: PathBuf,
}

impl WatchGuard {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

#[derive(Deserialize)]
struct Summary {
    objects: Vec<ObjectLine>,
}

#[derive(Deserialize)]
struct ObjectLine {
    key: String,
    status: String,
    events: u64,
    findings: Vec<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_under_cargo_lambda_watch_turns_an_s3_event_into_a_published_finding() {
    let cargo_lambda = cargo_lambda();
    let moto = endpoint();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (city_db, asn_db) = crate::common::mmdb::write_fixture_dbs(dir.path());

    // The stack: bucket with one CloudTrail object, table, topic, a raw queue on the topic.
    let (bucket, table, key) = (
        unique_name("geotrail-e2e"),
        unique_name("geotrail-e2e-state"),
        "AWSLogs/123456789012/CloudTrail/us-east-1/2025/01/01/e2e a.json.gz",
    );
    let s3 = s3_client(None).await;
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    create_table(&dynamodb_client(None).await, &table)
        .await
        .expect("create the state table");
    let sns = sns_client(None).await;
    let topic_arn = sns
        .create_topic()
        .name(unique_name("geotrail-e2e"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("ARN");
    let sqs = sqs_client().await;
    let queue = subscribed_queue(&sns, &sqs, &topic_arn, true, None).await;

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let t = (now_ms / 3_600_000 - 48) * 3_600_000;
    let record = |ip: &str, ms: i64, id: &str| {
        json!({
            "eventVersion": "1.09",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/e2e",
                "accountId": "123456789012", "accessKeyId": "AKIAE2ETEST000000001", "userName": "e2e"},
            "eventTime": geotrail::finding::format_rfc3339_ms(ms),
            "eventSource": "iam.amazonaws.com", "eventName": "ListUsers", "awsRegion": "us-east-1",
            "sourceIPAddress": ip, "userAgent": "aws-cli/2", "eventID": id,
            "eventType": "AwsApiCall", "recipientAccountId": "123456789012"
        })
    };
    // Sydney, then London 30 minutes later.
    let log = json!({"Records": [record("1.128.0.1", t, "e2e-1"), record("81.2.69.1", t + 1_800_000, "e2e-2")]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, log.to_string().as_bytes()).expect("gzip");
    s3.put_object()
        .bucket(&bucket)
        .key(key)
        .body(gz.finish().expect("gzip").into())
        .send()
        .await
        .expect("PutObject");

    // The S3 notification, key form-URL-encoded as S3 writes it.
    let event = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION, "eventName": "ObjectCreated:Put",
        "eventTime": "2025-01-01T00:00:00.000Z",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": {"key": key.replace(' ', "+"), "size": 1}}
    }]});
    let event_file = dir.path().join("s3-event.json");
    std::fs::write(&event_file, event.to_string()).expect("write the event file");

    // Configuration as the SAM template sets it; SDK settings point the function at moto.
    let env_file = dir.path().join("function.env");
    let env = [
        ("GEOTRAIL_TABLE", table.as_str()),
        ("GEOTRAIL_TOPIC_ARN", topic_arn.as_str()),
        ("GEOTRAIL_GEOIP", city_db.to_str().expect("UTF-8 temp path")),
        (
            "GEOTRAIL_GEOIP_ASN",
            asn_db.to_str().expect("UTF-8 temp path"),
        ),
        ("AWS_ENDPOINT_URL", moto.as_str()),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
    ];
    let env_text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&env_file, env_text).expect("write the env file");

    let port = free_port().to_string();
    // Outside the crate: the watcher rebuilds on every change under it, its own log included.
    let log_path = dir.path().join("watch.log");
    let log_file = std::fs::File::create(&log_path).expect("create the watch log");
    let mut watch = Command::new(&cargo_lambda);
    watch
        .args([
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port,
        ])
        .args(["--bin", "bootstrap", "--env-file"])
        .arg(&env_file)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log handle"))
        .stderr(log_file);
    std::os::unix::process::CommandExt::process_group(&mut watch, 0);
    let guard = WatchGuard {
        child: watch.spawn().expect("start cargo lambda watch"),
        log: log_path,
    };

    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("port"))).is_err() {
        assert!(
            started.elapsed() < WATCH_START_TIMEOUT,
            "cargo lambda watch did not listen on {port}; its log:\n{}",
            guard.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut invoke = Command::new(&cargo_lambda)
        .args([
            "lambda",
            "invoke",
            "bootstrap",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port,
        ])
        .args(["--output-format", "json", "--data-file"])
        .arg(&event_file)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cargo lambda invoke");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = invoke.try_wait().expect("wait for cargo lambda invoke") {
            break status;
        }
        if started.elapsed() > INVOKE_TIMEOUT {
            let _ = invoke.kill();
            panic!(
                "no answer from bootstrap in {INVOKE_TIMEOUT:?}; watch log:\n{}",
                guard.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let output = invoke.wait_with_output().expect("invoke output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        status.success(),
        "cargo lambda invoke failed: {}\n{}\nwatch log:\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr),
        guard.log_text()
    );
    let summary: Summary = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the response is the handler's summary ({e}): {stdout}"));
    assert_eq!(summary.objects.len(), 1, "{stdout}");
    let object = &summary.objects[0];
    assert_eq!(
        (object.key.as_str(), object.status.as_str(), object.events),
        (key, "done", 2),
        "{stdout}"
    );
    // With every rule on, as the template deploys it, the AKIA key's uses are
    // long_term_access_key_auth findings besides the travel.
    assert!(!object.findings.is_empty(), "{stdout}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bodies = Vec::new();
    while bodies.len() < object.findings.len() && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(&queue)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        bodies.extend(
            out.messages
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.body),
        );
    }
    assert_eq!(
        bodies.len(),
        object.findings.len(),
        "each finding on the queue; watch log:\n{}",
        guard.log_text()
    );
    let findings: Vec<Finding> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).expect("the message is a finding"))
        .collect();
    let mut ids: Vec<&str> = findings.iter().map(|f| f.finding_id.as_str()).collect();
    let mut reported: Vec<&str> = object.findings.iter().map(String::as_str).collect();
    ids.sort_unstable();
    reported.sort_unstable();
    assert_eq!(ids, reported);
    let travel: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.rule == Rule::ImpossibleTravel)
        .collect();
    let [finding] = &travel[..] else {
        panic!("one impossible_travel finding: {findings:#?}");
    };
    assert_eq!(finding.subject, "AKIAE2ETEST000000001");

    // The function's JSON logs carry the object's summary line.
    let log = guard.log_text();
    assert!(
        log.contains("\"object processed\"") && log.contains(&bucket),
        "summary log line with the bucket:\n{log}"
    );
    drop(guard);
}
