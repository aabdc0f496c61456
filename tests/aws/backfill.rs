//! `geotrail scan s3://...`, the binary, against a generated trail in a moto bucket:
//! selection by the time in the names, state in the Lambda's table, resuming.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_dynamodb::types::AttributeValue;
use geotrail::aws::dynamo::create_table;
use serde_json::Value;

use super::support::{dynamodb_client, s3_client, unique_name};
use crate::common::mmdb::write_fixture_dbs;
use crate::common::trail::{gzip, object, record, ACCOUNT};

const HOME_KEY: &str = "AKIABACKFILLHOME0001";
const OTHER_KEY: &str = "AKIABACKFILLOTHER001";
const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];
const DAYS: [&str; 5] = [
    "2026-03-01",
    "2026-03-02",
    "2026-03-03",
    "2026-03-04",
    "2026-03-05",
];
const SYDNEY: &str = "1.128.10.20";
const FRANKFURT: &str = "46.101.10.20";
const LONDON: &str = "81.2.69.142";

/// One generated log object: its key and what it holds.
struct TrailObject {
    key: String,
    records: Vec<Value>,
}

fn object_key(region: &str, day: &str, hhmm: &str) -> String {
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/{region}/{}/{ACCOUNT}_CloudTrail_{region}_{}T{hhmm}Z_{}.json.gz",
        day.replace('-', "/"),
        day.replace('-', ""),
        &unique_name("o")[..12].replace('-', "x"),
    )
}

/// Five days of two regions, an object every six hours, `HOME_KEY` used from Sydney in
/// each; on 2026-03-03 it is used from Frankfurt 18 minutes after Sydney (the incident in
/// range); on 2026-03-05 `OTHER_KEY` goes from Sydney to London (out of range).
fn generated_trail() -> Vec<TrailObject> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut event = |key: &str, ip: &str, day: &str, hhmm: &str| {
        n += 1;
        let time = format!("{day}T{}:{}:00Z", &hhmm[..2], &hhmm[2..]);
        record(&format!("evt-{n:04}"), &time, key, "user", ip, "ListUsers")
    };
    for day in DAYS {
        for region in REGIONS {
            for (name, at) in [
                ("0005", "0002"),
                ("0605", "0602"),
                ("1205", "1202"),
                ("1805", "1802"),
            ] {
                let mut records = vec![event(HOME_KEY, SYDNEY, day, at)];
                if day == "2026-03-05" && region == "us-east-1" && name == "0605" {
                    records.push(event(OTHER_KEY, SYDNEY, day, "0603"));
                }
                out.push(TrailObject {
                    key: object_key(region, day, name),
                    records,
                });
            }
        }
    }
    out.push(TrailObject {
        key: object_key("eu-west-1", "2026-03-03", "1230"),
        records: vec![event(HOME_KEY, FRANKFURT, "2026-03-03", "1220")],
    });
    out.push(TrailObject {
        key: object_key("eu-west-1", "2026-03-05", "0630"),
        records: vec![event(OTHER_KEY, LONDON, "2026-03-05", "0620")],
    });
    out
}

fn in_range(key: &str, since: &str, until: &str) -> bool {
    let name = key.rsplit('/').next().unwrap();
    let stamp = name.split('_').nth(3).unwrap();
    let day = format!("{}-{}-{}", &stamp[..4], &stamp[4..6], &stamp[6..8]);
    day.as_str() >= since && day.as_str() < until
}

/// A bucket holding the generated trail, and a digest beside it that must never be read.
async fn bucket_with(trail: &[TrailObject]) -> String {
    let s3 = s3_client(None).await;
    let bucket = unique_name("geotrail-trail");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    for o in trail {
        put(&s3, &bucket, &o.key, gzip(&object(&o.records))).await;
    }
    let digest = format!(
        "AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2026/03/02/{ACCOUNT}_CloudTrail-Digest_us-east-1_t_us-east-1_20260302T0105Z.json.gz"
    );
    put(&s3, &bucket, &digest, b"not even json".to_vec()).await;
    bucket
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap();
}

async fn new_table() -> String {
    let table = unique_name("geotrail-backfill");
    create_table(&dynamodb_client(None).await, &table)
        .await
        .unwrap();
    table
}

/// `geotrail scan` (or another command) with the fixture GeoIP databases, in `dir`; the
/// SDK's standard variables `.ci/test` sets point it at moto.
fn geotrail(dir: &Path, command: &str, args: &[&str]) -> (Output, String, String) {
    let (city, asn) = write_fixture_dbs(dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geotrail"));
    cmd.arg(command);
    if command == "scan" {
        cmd.arg("--geoip")
            .arg(&city)
            .arg("--geoip-asn")
            .arg(&asn)
            .args(["--rules", "impossible_travel", "--format", "jsonl"]);
    }
    cmd.args(args).current_dir(dir);
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("GEOTRAIL_")) {
        cmd.env_remove(name);
    }
    let out = cmd.output().expect("run geotrail");
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    (out, stdout, stderr)
}

/// The objects the summary says were read.
fn objects_read(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("geotrail: ")?;
            let (n, after) = rest.split_once(' ')?;
            after.starts_with("objects (").then(|| n.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no summary line in {stderr}"))
}

/// (rule, subject, finding id) of each finding printed.
fn findings(stdout: &str) -> BTreeSet<(String, String, String)> {
    stdout
        .lines()
        .map(|l| {
            let f: Value = serde_json::from_str(l).expect("one finding per line");
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["subject"].as_str().unwrap().to_owned(),
                f["finding_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn explain(dir: &Path, subject: &str, store: &[&str]) -> Value {
    let mut args = vec![subject, "--format", "json"];
    args.extend_from_slice(store);
    let (out, stdout, stderr) = geotrail(dir, "explain", &args);
    assert!(out.status.success(), "explain {subject}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn place_names(explained: &Value) -> BTreeSet<String> {
    explained["places"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

fn state_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[tokio::test]
async fn a_backfill_reads_only_the_days_in_range_and_finds_the_incident_there() {
    let trail = generated_trail();
    let bucket = bucket_with(&trail).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/AWSLogs/");
    let (out, stdout, stderr) = geotrail(
        dir.path(),
        "scan",
        &[
            &url,
            "--no-state",
            "--since",
            "2026-03-02",
            "--until",
            "2026-03-04T00:00:00Z",
        ],
    );
    assert!(out.status.success(), "{stderr}");
    let expected = trail
        .iter()
        .filter(|o| in_range(&o.key, "2026-03-02", "2026-03-04"))
        .count() as u64;
    assert_eq!(expected, 17);
    assert_eq!(objects_read(&stderr), expected, "{stderr}");
    // Two regions of one account: two listings, the digest folder not among them.
    assert!(
        stderr.contains(&format!("{url}: {expected} objects to read"))
            && stderr.contains("from 2 listings"),
        "{stderr}"
    );
    let found = findings(&stdout);
    let subjects: Vec<(&str, &str)> = found
        .iter()
        .map(|(rule, subject, _)| (rule.as_str(), subject.as_str()))
        .collect();
    assert_eq!(subjects, [("impossible_travel", HOME_KEY)], "{stdout}");
    let f: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let locations = &f["impossible_travel"]["triggering_locations"];
    assert_eq!(locations["first_location"]["city"], "Sydney");
    assert_eq!(locations["second_location"]["city"], "Frankfurt am Main");
    assert!(
        f["source_object"].as_str().unwrap().starts_with(&format!(
            "s3://{bucket}/AWSLogs/{ACCOUNT}/CloudTrail/eu-west-1/2026/03/03/"
        )),
        "{f}"
    );

    // The same selection from a region's folder and from the bucket's root.
    for (prefix, listings) in [
        (format!("AWSLogs/{ACCOUNT}/CloudTrail/eu-west-1/"), 1),
        (String::new(), 2),
    ] {
        let url = format!("s3://{bucket}/{prefix}");
        let (out, _, stderr) = geotrail(
            dir.path(),
            "scan",
            &[
                &url,
                "--no-state",
                "--since",
                "2026-03-02",
                "--until",
                "2026-03-04",
            ],
        );
        assert!(out.status.success(), "{stderr}");
        let want = trail
            .iter()
            .filter(|o| o.key.starts_with(&prefix) && in_range(&o.key, "2026-03-02", "2026-03-04"))
            .count() as u64;
        assert_eq!(objects_read(&stderr), want, "{url}: {stderr}");
        assert!(
            stderr.contains(&format!("from {listings} listings")),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn a_prefix_outside_the_layout_is_listed_whole_and_filtered_by_name_time() {
    let trail = generated_trail();
    let s3 = s3_client(None).await;
    let bucket = unique_name("geotrail-flat");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    for o in &trail {
        let file = o.key.rsplit('/').next().unwrap();
        put(
            &s3,
            &bucket,
            &format!("export/{file}"),
            gzip(&object(&o.records)),
        )
        .await;
    }
    put(&s3, &bucket, "export/README.md", b"notes".to_vec()).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = geotrail(
        dir.path(),
        "scan",
        &[
            &format!("s3://{bucket}/export/"),
            "--no-state",
            "--since",
            "2026-03-03",
            "--until",
            "2026-03-04",
        ],
    );
    assert!(out.status.success(), "{stderr}");
    let want = trail
        .iter()
        .filter(|o| in_range(&o.key, "2026-03-03", "2026-03-04"))
        .count() as u64;
    assert_eq!(objects_read(&stderr), want, "{stderr}");
    assert_eq!(findings(&stdout).len(), 1, "{stdout}");
}

#[tokio::test]
async fn a_backfill_into_the_table_seeds_what_the_lambda_reads_and_alerts_nobody() {
    let trail = generated_trail();
    let bucket = bucket_with(&trail).await;
    let table = new_table().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/AWSLogs/");
    let (out, stdout, stderr) = geotrail(
        dir.path(),
        "scan",
        &[
            &url,
            "--since",
            "2026-03-01",
            "--table",
            &table,
            "--no-alerts",
        ],
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "", "--no-alerts publishes nothing");
    assert_eq!(objects_read(&stderr), trail.len() as u64, "{stderr}");
    assert!(
        stderr.contains("2 findings"),
        "counted all the same: {stderr}"
    );
    assert!(stderr.contains("impossible_travel=2"), "{stderr}");
    assert!(
        !dir.path().join(".geotrail").exists(),
        "--table writes no state file"
    );

    // The subjects' items, as the Lambda loads them.
    let home = explain(dir.path(), HOME_KEY, &["--table", &table]);
    assert_eq!(
        place_names(&home),
        BTreeSet::from([
            "Frankfurt am Main, Germany".to_owned(),
            "Sydney, Australia".to_owned()
        ]),
        "{home}"
    );
    assert_eq!(home["alerts"].as_array().unwrap().len(), 1, "{home}");
    let other = explain(dir.path(), OTHER_KEY, &["--table", &table]);
    assert_eq!(other["alerts"].as_array().unwrap().len(), 1, "{other}");
    let dynamodb = dynamodb_client(None).await;
    let item = dynamodb
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(HOME_KEY.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the subject's item");
    for attribute in ["version", "state", "expires_at"] {
        assert!(item.contains_key(attribute), "{attribute} in {item:?}");
    }
    // One checkpoint per region, at its last object.
    for region in REGIONS {
        let id = format!("checkpoint#s3://{bucket}/AWSLogs/{ACCOUNT}/CloudTrail/{region}/");
        let item = dynamodb
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(id.clone()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap_or_else(|| panic!("no checkpoint {id}"));
        let last = trail
            .iter()
            .map(|o| &o.key)
            .filter(|k| k.contains(&format!("/{region}/")))
            .max()
            .unwrap();
        let checkpoint: Value = serde_json::from_str(item["checkpoint"].as_s().unwrap()).unwrap();
        assert_eq!(checkpoint["through"], last.as_str(), "{checkpoint}");
    }

    // Again: nothing left to read, nothing changes.
    let (out, stdout, stderr) = geotrail(
        dir.path(),
        "scan",
        &[&url, "--since", "2026-03-02", "--table", &table],
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(objects_read(&stderr), 0, "{stderr}");
    assert!(
        stderr.contains("2 listings resumed after their checkpoint"),
        "{stderr}"
    );
    assert_eq!(stdout, "");
    assert_eq!(explain(dir.path(), HOME_KEY, &["--table", &table]), home);

    // --no-resume reads everything again; the state already holds it, so no finding.
    let (out, stdout, stderr) = geotrail(
        dir.path(),
        "scan",
        &[
            &url,
            "--since",
            "2026-03-01",
            "--table",
            &table,
            "--no-resume",
        ],
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(objects_read(&stderr), trail.len() as u64, "{stderr}");
    assert_eq!(stdout, "", "a replay raises nothing");
    assert_eq!(explain(dir.path(), HOME_KEY, &["--table", &table]), home);
}

#[tokio::test]
async fn a_backfill_in_two_parts_reads_each_object_once_and_ends_as_one_run() {
    let trail = generated_trail();
    let bucket = bucket_with(&trail).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/AWSLogs/");
    let parts = state_file(dir.path(), "parts.redb");
    let whole = state_file(dir.path(), "whole.redb");
    let parts_arg = parts.to_str().unwrap();

    let (out, first_out, stderr) = geotrail(
        dir.path(),
        "scan",
        &[
            &url,
            "--state",
            parts_arg,
            "--since",
            "2026-03-01",
            "--until",
            "2026-03-04",
        ],
    );
    assert!(out.status.success(), "{stderr}");
    let first = objects_read(&stderr);
    let want_first = trail
        .iter()
        .filter(|o| in_range(&o.key, "2026-03-01", "2026-03-04"))
        .count() as u64;
    assert_eq!(first, want_first, "{stderr}");

    // The rest: the checkpoints start each region after what the first part did.
    let (out, second_out, stderr) = geotrail(
        dir.path(),
        "scan",
        &[&url, "--state", parts_arg, "--since", "2026-03-01"],
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        objects_read(&stderr),
        trail.len() as u64 - first,
        "{stderr}"
    );
    assert!(
        stderr.contains("2 listings resumed after their checkpoint"),
        "{stderr}"
    );

    let (out, whole_out, stderr) = geotrail(
        dir.path(),
        "scan",
        &[
            &url,
            "--state",
            whole.to_str().unwrap(),
            "--since",
            "2026-03-01",
        ],
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(objects_read(&stderr), trail.len() as u64);

    let mut in_parts = findings(&first_out);
    in_parts.extend(findings(&second_out));
    assert_eq!(in_parts, findings(&whole_out));
    assert_eq!(in_parts.len(), 2, "{in_parts:?}");
    for subject in [HOME_KEY, OTHER_KEY] {
        assert_eq!(
            explain(dir.path(), subject, &["--state", parts_arg]),
            explain(dir.path(), subject, &["--state", whole.to_str().unwrap()]),
            "{subject}"
        );
    }
}

#[tokio::test]
async fn a_run_over_one_days_folder_leaves_the_regions_other_days_to_the_next_run() {
    let trail = generated_trail();
    let bucket = bucket_with(&trail).await;
    let dir = tempfile::tempdir().unwrap();
    let state = state_file(dir.path(), "state.redb");
    let state_arg = state.to_str().unwrap();
    let folder = format!("/{ACCOUNT}/CloudTrail/eu-west-1/2026/03/03/");

    let (out, _, stderr) = geotrail(
        dir.path(),
        "scan",
        &[
            &format!("s3://{bucket}/AWSLogs{folder}"),
            "--state",
            state_arg,
        ],
    );
    assert!(out.status.success(), "{stderr}");
    let in_folder = trail.iter().filter(|o| o.key.contains(&folder)).count() as u64;
    assert_eq!(objects_read(&stderr), in_folder, "{stderr}");

    // The region's checkpoint vouches for that day alone: its earlier days are read.
    let (out, _, stderr) = geotrail(
        dir.path(),
        "scan",
        &[&format!("s3://{bucket}/AWSLogs/"), "--state", state_arg],
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        objects_read(&stderr),
        trail.len() as u64 - in_folder,
        "{stderr}"
    );
}

#[tokio::test]
async fn an_object_that_fails_is_named_and_read_again_by_the_next_run() {
    let trail = generated_trail();
    let bucket = bucket_with(&trail).await;
    let s3 = s3_client(None).await;
    // A broken object early in one region: everything after it is still judged, but
    // that region's checkpoint may not pass it.
    let broken = trail
        .iter()
        .find(|o| o.key.contains("/us-east-1/2026/03/02/") && o.key.contains("T0605Z"))
        .unwrap();
    put(
        &s3,
        &bucket,
        &broken.key,
        b"\x1f\x8b\x08\x00garbage".to_vec(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/AWSLogs/");
    let state = state_file(dir.path(), "state.redb");
    let state_arg = state.to_str().unwrap();
    let (out, first_out, stderr) = geotrail(
        dir.path(),
        "scan",
        &[&url, "--state", state_arg, "--since", "2026-03-01"],
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("s3://{bucket}/{}", broken.key)),
        "the error names the object: {stderr}"
    );
    assert_eq!(objects_read(&stderr), trail.len() as u64, "{stderr}");
    assert!(stderr.contains("(1 failed)"), "{stderr}");
    // The incident after it was still found.
    assert_eq!(findings(&first_out).len(), 2, "{first_out}");

    // Repaired, the next run reads it and what came after it in its region, and
    // nothing of the other region.
    put(&s3, &bucket, &broken.key, gzip(&object(&broken.records))).await;
    let (out, second_out, stderr) = geotrail(
        dir.path(),
        "scan",
        &[&url, "--state", state_arg, "--since", "2026-03-01"],
    );
    assert!(out.status.success(), "{stderr}");
    let again = trail
        .iter()
        .filter(|o| o.key.contains("/us-east-1/") && o.key >= broken.key)
        .count() as u64;
    assert_eq!(objects_read(&stderr), again, "{stderr}");
    assert_eq!(second_out, "", "replayed objects raise nothing new");
    // Every Sydney sighting counted once: the repaired object's too, the replayed
    // ones not again.
    let home = explain(dir.path(), HOME_KEY, &["--state", state_arg]);
    let sydney = home["places"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Sydney, Australia")
        .unwrap();
    assert_eq!(
        sydney["count"],
        (DAYS.len() * REGIONS.len() * 4) as u64,
        "{home}"
    );

    // A third run has nothing left.
    let (out, _, stderr) = geotrail(
        dir.path(),
        "scan",
        &[&url, "--state", state_arg, "--since", "2026-03-01"],
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(objects_read(&stderr), 0, "{stderr}");
}

#[tokio::test]
async fn bad_urls_and_missing_buckets_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (url, needle) in [
        ("s3://", "no bucket name"),
        ("s3://a b/x", "is not an S3 bucket name"),
    ] {
        let (out, _, stderr) = geotrail(dir.path(), "scan", &[url, "--no-state"]);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains(needle), "{url}: {stderr}");
    }
    let missing = unique_name("geotrail-missing");
    let (out, _, stderr) = geotrail(
        dir.path(),
        "scan",
        &[&format!("s3://{missing}/AWSLogs/"), "--no-state"],
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("s3://{missing}/AWSLogs/")) && stderr.contains("NoSuchBucket"),
        "{stderr}"
    );
    let (out, _, stderr) = geotrail(
        dir.path(),
        "scan",
        &["--since", "tomorrow", "s3://b/", "--no-state"],
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a time"), "{stderr}");
}
