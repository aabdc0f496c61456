//! `geotrail scan`, the binary, on the bundled example trail, with a GeoIP database built
//! from `tests/fixtures/geo/examples.json` (the same cities the real database gives for
//! the example addresses).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::mmdb::{build_city_db, load_fixture};

const ALICE_KEY: &str = "AKIA5QX4ZL3NRT7HWY2D";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn trail() -> PathBuf {
    repo().join("examples/trail")
}

/// A City database built from the examples fixture, in `dir`.
fn example_db(dir: &Path) -> PathBuf {
    let fixture = std::fs::read_to_string(repo().join("tests/fixtures/geo/examples.json")).unwrap();
    let path = dir.join("examples-City.mmdb");
    std::fs::write(&path, build_city_db(&load_fixture(&fixture))).unwrap();
    path
}

fn geotrail(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geotrail"));
    cmd.arg("scan").arg("--geoip").arg(example_db(dir));
    // Most of these stories are about travel; the account-level rules have their own.
    if !args.contains(&"--rules") {
        cmd.args(["--rules", "impossible_travel,future_event_time"]);
    }
    cmd.args(args);
    // The scan must not pick up a developer's settings.
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("GEOTRAIL_")) {
        cmd.env_remove(name);
    }
    cmd.current_dir(dir);
    cmd
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run geotrail");
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    (out, stdout, stderr)
}

fn findings(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one finding"))
        .collect()
}

fn all_trail_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    walk(&trail(), &mut out);
    out
}

#[test]
fn scanning_the_example_trail_flags_only_the_stolen_key() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) =
        run(geotrail(&["--no-state", "--format", "jsonl"], dir.path()).arg(trail()));
    assert!(out.status.success(), "{stderr}");
    let found = findings(&stdout);
    assert_eq!(found.len(), 1, "{stdout}");
    let f = &found[0];
    assert_eq!(f["subject"], ALICE_KEY);
    assert_eq!(f["rule"], "impossible_travel");
    assert_eq!(f["user_identity"]["user_name"], "alice");
    let locations = &f["impossible_travel"]["triggering_locations"];
    assert_eq!(locations["first_location"]["city"], "Sydney");
    assert_eq!(locations["second_location"]["city"], "Frankfurt am Main");
    // The summary counts what was skipped and why.
    for needle in [
        "10 objects",
        "digest_file=1",
        "aws_service=",
        "aws_internal=",
        "private=",
        "1 findings",
    ] {
        assert!(
            stderr.contains(needle),
            "summary lacks {needle:?}: {stderr}"
        );
    }
}

#[test]
fn every_rule_on_the_example_trail_points_at_the_stolen_key() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(geotrail(
        &["--rules", "all", "--no-state", "--format", "jsonl"],
        dir.path(),
    )
    .arg(trail()));
    assert!(out.status.success(), "{stderr}");
    let mut seen: Vec<(String, String, String)> = findings(&stdout)
        .iter()
        .map(|f| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            let place = match s(&f["rule"]).as_str() {
                "unusual_city_for_command" => s(&f["unusual_city_for_command"]["place"]["name"]),
                "long_term_access_key_auth" => {
                    s(&f["long_term_access_key_auth"]["source_ip_address"])
                }
                "unusual_error_code" => s(&f["unusual_error_code"]["error_code"]),
                _ => s(&f["impossible_travel"]["triggering_locations"]["second_location"]["city"]),
            };
            (s(&f["rule"]), s(&f["severity"]), place)
        })
        .collect();
    seen.sort();
    let want = [
        ("impossible_travel", "high", "Frankfurt am Main"),
        // The thief's first use of alice's key, from an address the key never used.
        ("long_term_access_key_auth", "low", "46.101.141.87"),
        // Five calls alice's key never made from Frankfurt: one finding.
        (
            "unusual_city_for_command",
            "low",
            "Frankfurt am Main, Germany",
        ),
        // alice's first DescribeVolumes, after the account's 48 hours of learning.
        ("unusual_city_for_command", "low", "Sydney, Australia"),
        // The thief's try at StopLogging, refused: an error the account never had.
        ("unusual_error_code", "low", "AccessDeniedException"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(seen, want, "{stdout}");
    let frankfurt = findings(&stdout)
        .into_iter()
        .find(|f| f["unusual_city_for_command"]["place"]["name"] == "Frankfurt am Main, Germany")
        .unwrap();
    assert_eq!(
        frankfurt["unusual_city_for_command"]["commands"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert!(
        stderr.contains("findings below low not printed"),
        "the informational uses of long-term keys are counted, not printed: {stderr}"
    );
    // `--min-severity info` prints them: Panther's rule fires on every key and address.
    let (_, all, _) = run(geotrail(
        &[
            "--rules",
            "long_term_access_key_auth",
            "--no-state",
            "--format",
            "jsonl",
            "--min-severity",
            "info",
        ],
        dir.path(),
    )
    .arg(trail()));
    let all = findings(&all);
    assert!(all.len() > 1);
    assert!(all.iter().all(|f| f["rule"] == "long_term_access_key_auth"));
    assert!(all.iter().any(|f| f["severity"] == "info"));
}

#[test]
fn the_rules_command_lists_every_rule_with_its_anchor() {
    let out = Command::new(env!("CARGO_BIN_EXE_geotrail"))
        .arg("rules")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "impossible_travel",
        "unusual_city_for_command",
        "unusual_error_code",
        "long_term_access_key_auth",
        "future_event_time",
        "Datadog:",
        "Elastic: Unusual City For an AWS Command",
        "Panther: AWS.CloudTrail.UserAccessKeyAuth",
        "--rare-lookback-days 30",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
}

#[test]
fn ocsf_output_is_one_detection_finding_per_finding() {
    let dir = tempfile::tempdir().unwrap();
    let scan = |format: &str| {
        let (out, stdout, stderr) = run(geotrail(
            &[
                "--rules",
                "all",
                "--no-state",
                "--min-severity",
                "info",
                "--format",
                format,
            ],
            dir.path(),
        )
        .arg(trail()));
        assert!(out.status.success(), "{stderr}");
        findings(&stdout)
    };
    let plain = scan("jsonl");
    let ocsf = scan("ocsf");
    assert_eq!(ocsf.len(), plain.len());
    let mut rules = Vec::new();
    for (event, finding) in ocsf.iter().zip(&plain) {
        assert_eq!(event["class_uid"], 2004, "{event}");
        assert_eq!(event["category_uid"], 2, "{event}");
        assert_eq!(event["type_uid"], 200401, "{event}");
        assert!(event["time"].is_i64(), "{event}");
        assert!(event["severity_id"].is_u64(), "{event}");
        assert!(event["metadata"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")));
        assert_eq!(event["metadata"]["product"]["name"], "geotrail");
        assert_eq!(event["finding_info"]["uid"], finding["finding_id"]);
        assert_eq!(event["finding_info"]["analytic"]["uid"], finding["rule"]);
        rules.push(finding["rule"].as_str().unwrap().to_owned());
    }
    rules.sort();
    rules.dedup();
    assert_eq!(
        rules,
        [
            "impossible_travel",
            "long_term_access_key_auth",
            "unusual_city_for_command",
            "unusual_error_code"
        ]
    );
    let travel = ocsf
        .iter()
        .find(|e| e["finding_info"]["analytic"]["uid"] == "impossible_travel")
        .unwrap();
    let cities: Vec<&str> = travel["evidences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["src_endpoint"]["location"]["city"].as_str().unwrap())
        .collect();
    assert_eq!(cities, ["Sydney", "Frankfurt am Main"]);
    assert!(travel["observables"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["type_id"] == 19 && o["value"] == ALICE_KEY));
}

#[test]
fn text_output_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, _) = run(geotrail(&["--no-state"], dir.path()).arg(trail()));
    assert!(out.status.success());
    assert!(
        stdout.contains("Impossible travel of AKIA5QX4ZL3NRT7HWY2D from Sydney"),
        "{stdout}"
    );
    assert!(stdout.contains("triage 1."), "{stdout}");
}

#[test]
fn the_state_file_continues_where_the_last_scan_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let files = all_trail_files();
    // Files are named by time: the Frankfurt use is in the last object of the trail that
    // mentions alice, so every file but the last few is "before".
    let (before, after) = files.split_at(files.len() / 2);
    let state = dir.path().join("state.redb");
    let state = state.to_str().unwrap();
    let mut first = geotrail(&["--state", state, "--format", "jsonl"], dir.path());
    first.args(before);
    let (_, stdout_a, _) = run(&mut first);
    let mut second = geotrail(&["--state", state, "--format", "jsonl"], dir.path());
    second.args(after);
    let (_, stdout_b, _) = run(&mut second);
    let mut together = findings(&stdout_a);
    together.extend(findings(&stdout_b));
    assert_eq!(
        together.len(),
        1,
        "split scan finds what one scan finds: {stdout_a}{stdout_b}"
    );
    // Everything again: history knows it all, nothing new.
    let (out, stdout, stderr) =
        run(geotrail(&["--state", state, "--format", "jsonl"], dir.path()).arg(trail()));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.is_empty(), "a rescan raised {stdout}");
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let dir = tempfile::tempdir().unwrap();
    let gz = all_trail_files()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".json.gz"))
        .unwrap();
    let mut cmd = geotrail(&["--no-state", "--format", "jsonl", "-"], dir.path());
    cmd.stdin(Stdio::from(std::fs::File::open(gz).unwrap()));
    let (out, _, stderr) = run(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1 objects (0 failed)"), "{stderr}");
}

#[test]
fn a_bad_file_is_named_the_rest_are_scanned_and_the_exit_code_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.json");
    std::fs::write(
        &bad,
        br#"{"Records":[{"eventTime":"2025-03-11T00:00:00Z","eventID":"x"},{"eventTi"#,
    )
    .unwrap();
    let mut cmd = geotrail(&["--no-state", "--format", "jsonl"], dir.path());
    cmd.arg(&bad).arg(trail());
    let (out, stdout, stderr) = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("broken.json") && stderr.contains("byte"),
        "{stderr}"
    );
    assert_eq!(
        findings(&stdout).len(),
        1,
        "the other objects were still scanned"
    );
}

#[test]
fn a_missing_geoip_database_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geotrail"));
    cmd.args(["scan", "--no-state", "--geoip", "nowhere.mmdb"])
        .arg(trail())
        .current_dir(dir.path());
    let (out, _, stderr) = run(&mut cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("nowhere.mmdb") && stderr.contains("geoip/fetch.sh"),
        "{stderr}"
    );
}

#[test]
fn detection_options_change_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], usize); 3] = [
        (&[], 1),
        (&["--min-distance-km", "20000"], 0),
        (&["--min-speed-kmh", "100000"], 0),
    ];
    for (extra, want) in cases {
        let mut cmd = geotrail(&["--no-state", "--format", "jsonl"], dir.path());
        cmd.args(extra).arg(trail());
        let (out, stdout, stderr) = run(&mut cmd);
        assert!(out.status.success(), "{extra:?}: {stderr}");
        assert_eq!(findings(&stdout).len(), want, "{extra:?}");
    }
    let (out, _, stderr) =
        run(geotrail(&["--no-state", "--learning-hours", "1000"], dir.path()).arg(trail()));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("learning period"), "{stderr}");
}

#[test]
fn explain_shows_why_the_stolen_key_alerted_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.redb");
    let state = state.to_str().unwrap();
    let (out, _, stderr) = run(geotrail(&["--state", state, "--quiet"], dir.path()).arg(trail()));
    assert!(out.status.success(), "{stderr}");

    let explain = |format: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geotrail"));
        cmd.args(["explain", ALICE_KEY, "--state", state, "--format", format])
            .current_dir(dir.path());
        run(&mut cmd)
    };
    let (out, json, stderr) = explain("json");
    assert!(out.status.success(), "{stderr}");
    let e: Value = serde_json::from_str(&json).expect("one JSON document");
    assert_eq!(e["subject"], ALICE_KEY);
    let places = e["places"].as_array().unwrap();
    let sydney = places
        .iter()
        .find(|p| p["name"].as_str().unwrap().starts_with("Sydney"))
        .expect("Sydney is a place of alice's key");
    assert_eq!(sydney["baseline"], true, "{json}");
    assert!(
        places
            .iter()
            .any(|p| p["name"].as_str().unwrap().starts_with("Frankfurt") && p["baseline"] == false),
        "{json}"
    );
    assert_eq!(e["alerts"].as_array().unwrap().len(), 1, "{json}");
    assert!(!e["stays"].as_array().unwrap().is_empty());

    let (out, text, _) = explain("text");
    assert!(out.status.success());
    assert!(text.contains("baseline  Sydney"), "{text}");
    assert!(text.contains("findings raised (1)"), "{text}");

    let mut unknown = Command::new(env!("CARGO_BIN_EXE_geotrail"));
    unknown
        .args(["explain", "AKIANEVERSEEN0000000", "--state", state])
        .current_dir(dir.path());
    let (out, _, stderr) = run(&mut unknown);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no state for AKIANEVERSEEN0000000"),
        "{stderr}"
    );
}

#[test]
fn the_number_of_reading_threads_changes_no_finding_and_no_order() {
    let dir = tempfile::tempdir().unwrap();
    let scan = |jobs: &str, state: &[&str]| {
        let mut args = vec![
            "--rules",
            "all",
            "--format",
            "jsonl",
            "--min-severity",
            "info",
        ];
        args.extend_from_slice(state);
        args.extend(["--jobs", jobs]);
        let (out, stdout, stderr) = run(geotrail(&args, dir.path()).arg(trail()));
        assert!(out.status.success(), "--jobs {jobs}: {stderr}");
        stdout
    };
    let one = scan("1", &["--no-state"]);
    assert!(findings(&one).len() > 5, "{one}");
    // Three readers take the ten objects unevenly; more readers than objects are capped.
    for jobs in ["2", "3", "64"] {
        assert_eq!(scan(jobs, &["--no-state"]), one, "--jobs {jobs}");
    }
    let state = dir.path().join("state.redb");
    let state = state.to_str().unwrap();
    let one = scan("1", &["--state", state]);
    std::fs::remove_file(state).unwrap();
    assert_eq!(scan("3", &["--state", state]), one);
}
