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

/// Starts `cargo lambda watch` with `env` (plus the SDK settings that point the function
/// at moto), running up to `concurrency` function processes; returns once it listens.
fn start_watch(dir: &Path, env: &[(&str, &str)], concurrency: usize) -> (WatchGuard, u16) {
    let moto = endpoint();
    let env_file = dir.join(format!("function-{}.env", unique_name("env")));
    let sdk = [
        ("AWS_ENDPOINT_URL", moto.as_str()),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
    ];
    let env_text: String = env
        .iter()
        .chain(&sdk)
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(&env_file, env_text).expect("write the env file");

    let port = free_port();
    // Outside the crate: the watcher rebuilds on every change under it, its own log included.
    let log_path = dir.join(format!("watch-{port}.log"));
    let log_file = std::fs::File::create(&log_path).expect("create the watch log");
    let mut watch = Command::new(cargo_lambda());
    watch
        .args([
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
            "--concurrency",
            &concurrency.to_string(),
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
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < WATCH_START_TIMEOUT,
            "cargo lambda watch did not listen on {port}; its log:\n{}",
            guard.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (guard, port)
}

/// Invokes the function through the emulator's Invoke API, as `cargo lambda invoke`
/// does, without a process per call: several calls can start at the same instant.
/// Returns the function's response body.
fn invoke_http(port: u16, payload: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the emulator");
    stream
        .set_read_timeout(Some(INVOKE_TIMEOUT))
        .expect("read timeout");
    // HTTP/1.0: the answer ends when the connection closes, no chunked encoding to undo.
    write!(
        stream,
        "POST /2015-03-31/functions/bootstrap/invocations HTTP/1.0\r\n\
         Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    )
    .expect("send the invocation");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP response: {response}"));
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}\n{body}"
    );
    body.to_owned()
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
    #[serde(default)]
    conflicts: u64,
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_under_cargo_lambda_watch_turns_an_s3_event_into_a_published_finding() {
    let cargo_lambda = cargo_lambda();
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

    // Configuration as the SAM template sets it.
    let env = [
        ("GEOTRAIL_TABLE", table.as_str()),
        ("GEOTRAIL_TOPIC_ARN", topic_arn.as_str()),
        ("GEOTRAIL_GEOIP", city_db.to_str().expect("UTF-8 temp path")),
        (
            "GEOTRAIL_GEOIP_ASN",
            asn_db.to_str().expect("UTF-8 temp path"),
        ),
    ];
    let (guard, port) = start_watch(dir.path(), &env, 1);

    let mut invoke = Command::new(&cargo_lambda)
        .args([
            "lambda",
            "invoke",
            "bootstrap",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
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

/// A CloudTrail record of access key `key` from `ip` at `ms`.
fn trail_record(key: &str, ip: &str, ms: i64, id: &str) -> serde_json::Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/race",
            "accountId": "123456789012", "accessKeyId": key, "userName": "race"},
        "eventTime": geotrail::finding::format_rfc3339_ms(ms),
        "eventSource": "iam.amazonaws.com", "eventName": "ListUsers", "awsRegion": "us-east-1",
        "sourceIPAddress": ip, "userAgent": "aws-cli/2", "eventID": id,
        "eventType": "AwsApiCall", "recipientAccountId": "123456789012"
    })
}

fn gzip_json(value: &serde_json::Value) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, value.to_string().as_bytes()).expect("gzip");
    gz.finish().expect("gzip")
}

/// Several `bootstrap` processes (one `cargo lambda watch` running up to four) take the
/// objects of one subject at the same instant, one object per invocation, as S3 would
/// deliver them. The subject's impossible hop is split across objects: Sydney in one,
/// committed first, then Frankfurt in each of the others, an hour apart (each in its own
/// dedup window: on stale state, a finding id of its own for the same incident). Each
/// object also carries a few hundred other subjects, which widens the window between each
/// process's load and its save. Rounds repeat with a fresh subject until saves have
/// conflicted; every round must end with exactly one message for its subject on the
/// queue, and every object done.
#[tokio::test(flavor = "multi_thread")]
async fn racing_lambda_processes_on_one_impossible_hop_publish_exactly_one_message() {
    const PROCESSES: usize = 4;
    const OBJECTS: usize = 8;
    const FILLERS: usize = 250;
    const MAX_ROUNDS: usize = 6;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (city_db, asn_db) = crate::common::mmdb::write_fixture_dbs(dir.path());
    let (bucket, table) = (
        unique_name("geotrail-race"),
        unique_name("geotrail-race-state"),
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
        .name(unique_name("geotrail-race"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("ARN");
    let sqs = sqs_client().await;
    let queue = subscribed_queue(&sns, &sqs, &topic_arn, true, None).await;
    let dead_letters = sqs
        .create_queue()
        .queue_name(unique_name("geotrail-race-dlq"))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("a queue URL");
    let env = [
        ("GEOTRAIL_TABLE", table.as_str()),
        ("GEOTRAIL_TOPIC_ARN", topic_arn.as_str()),
        ("GEOTRAIL_GEOIP", city_db.to_str().expect("UTF-8 temp path")),
        (
            "GEOTRAIL_GEOIP_ASN",
            asn_db.to_str().expect("UTF-8 temp path"),
        ),
        ("GEOTRAIL_DEAD_LETTER_QUEUE_URL", dead_letters.as_str()),
        // One incident at stake: the account-level rules would add their own findings.
        ("GEOTRAIL_RULES", "impossible_travel,future_event_time"),
    ];
    let (guard, port) = start_watch(dir.path(), &env, PROCESSES);

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let (sydney, frankfurt, london) = ("1.128.0.1", "46.101.0.1", "81.2.69.1");
    let mut conflicts = 0;
    let mut subjects = Vec::new();
    for round in 0..MAX_ROUNDS {
        // Sorts after the fillers: its save comes last in each process's batch of saves.
        let subject = format!("AKIAZRACE{round:011}");
        let t = (now_ms / 3_600_000 - 48 - 4 * round as i64) * 3_600_000;
        let mut keys = Vec::new();
        for n in 0..OBJECTS {
            let mut records: Vec<serde_json::Value> = (0..FILLERS)
                .map(|i| {
                    trail_record(
                        &format!("AKIAFILL{round:02}{n:02}{i:06}"),
                        london,
                        t,
                        &format!("fill-{round}-{n}-{i}"),
                    )
                })
                .collect();
            // Sydney first, then Frankfurt 20 minutes later, and an hour later in each
            // next object: every Frankfurt object makes the hop impossible on its own,
            // each in a dedup window of its own.
            let (ip, at) = match n {
                0 => (sydney, t),
                _ => (frankfurt, t + (20 + 60 * (n as i64 - 1)) * 60_000),
            };
            records.push(trail_record(&subject, ip, at, &format!("race-{round}-{n}")));
            let key = format!(
                "AWSLogs/123456789012/CloudTrail/us-east-1/2025/01/01/race-{round}-{n}.json.gz"
            );
            s3.put_object()
                .bucket(&bucket)
                .key(&key)
                .body(gzip_json(&json!({ "Records": records })).into())
                .send()
                .await
                .expect("PutObject");
            keys.push(key);
        }
        // The first invocation of a process builds and starts it: warm them all first,
        // with S3's test event, which names nothing, so the race is between running
        // processes.
        if round == 0 {
            let warm: Vec<_> = (0..PROCESSES)
                .map(|_| {
                    std::thread::spawn(move || {
                        invoke_http(port, r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#);
                    })
                })
                .collect();
            for w in warm {
                w.join().expect("warm-up invocation");
            }
        }
        let event = |key: &str| {
            json!({"Records": [{
                "eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "awsRegion": REGION,
                "s3": {"bucket": {"name": bucket}, "object": {"key": key}}
            }]})
            .to_string()
        };
        // Sydney is saved first; then every process loads it, and none sees the others'
        // alert marks until it saves: without claims, each would publish its own id.
        let mut bodies = vec![invoke_http(port, &event(&keys[0]))];
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(OBJECTS - 1));
        let calls: Vec<_> = keys[1..]
            .iter()
            .map(|key| {
                let event = event(key);
                let barrier = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    invoke_http(port, &event)
                })
            })
            .collect();
        bodies.extend(
            calls
                .into_iter()
                .map(|c| c.join().expect("invocation thread")),
        );
        for body in bodies {
            let summary: Summary = serde_json::from_str(&body).unwrap_or_else(|e| {
                panic!("a summary ({e}): {body}\nwatch log:\n{}", guard.log_text())
            });
            for object in &summary.objects {
                assert_eq!(object.status, "done", "{body}");
                conflicts += object.conflicts;
            }
        }
        subjects.push(subject);
        if conflicts > 0 {
            break;
        }
    }
    println!(
        "{conflicts} save conflicts in {} rounds of {OBJECTS} objects on {PROCESSES} processes",
        subjects.len()
    );
    assert!(
        conflicts > 0,
        "{} rounds of {OBJECTS} objects on {PROCESSES} processes never conflicted",
        subjects.len()
    );

    // Every subject's incident exactly once: wait for one message each, then a little
    // longer for any duplicate.
    let mut messages: Vec<Finding> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut quiet_until = None;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        for m in out.messages.unwrap_or_default() {
            messages.push(serde_json::from_str(m.body().unwrap_or_default()).expect("a finding"));
            if let Some(handle) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(&queue)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
        }
        if messages.len() >= subjects.len() && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_secs(3));
        }
        if quiet_until.is_some_and(|q| Instant::now() >= q) || Instant::now() >= deadline {
            break;
        }
    }
    let mut per_subject: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in &messages {
        per_subject
            .entry(f.subject.clone())
            .or_default()
            .push(f.finding_id.clone());
    }
    for subject in &subjects {
        assert_eq!(
            per_subject.get(subject).map(Vec::len),
            Some(1),
            "exactly one message for {subject} ({conflicts} conflicts): {per_subject:#?}"
        );
    }
    assert_eq!(per_subject.len(), subjects.len(), "{per_subject:#?}");
    drop(guard);
}
