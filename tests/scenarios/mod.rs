//! Detection stories end to end through the library: real log objects (gzip and plain),
//! a real `.mmdb` built from the fixture, the pipeline's two stages and a real store.

use geotrail::cloudtrail::{written_at_from_name, ReadOptions};
use geotrail::detect::{Policy, RulePolicy, RuleSet};
use geotrail::finding::Finding;
use geotrail::finding::Rule;
use geotrail::geo::{GeoCache, GeoDb};
use geotrail::pipeline::{commit_scan, scan_object, ObjectScan};
use geotrail::state::{FileStateStore, MemoryStateStore, StateStore};
use serde_json::Value;

use crate::common::mmdb::fixture_geo_db;
use crate::common::trail::{gzip, json_lines, object, record, CollectingNotifier};

mod commit;
mod order;
mod rules;

const SYDNEY: &str = "1.128.10.20";
const SYDNEY_2: &str = "101.160.10.20";
const SYDNEY_V6: &str = "2001:8003:1234::1";
const FRANKFURT: &str = "46.101.10.20";
const LONDON: &str = "81.2.69.142";
const NEW_YORK: &str = "72.229.10.20";
const US_COUNTRY_ONLY: &str = "63.140.10.20";
const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// The travel rules alone: these stories are about travel (the account-level rules have
/// their own scenarios).
pub(crate) fn travel_policy() -> Policy {
    Policy {
        rules: RulePolicy {
            enabled: RuleSet::none()
                .with(Rule::ImpossibleTravel)
                .with(Rule::FutureEventTime),
            ..RulePolicy::default()
        },
        ..Policy::default()
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

/// Scans and commits each (name, bytes) object in turn against one store.
fn run_with<S: StateStore>(
    geo: &GeoDb,
    store: &S,
    policy: &Policy,
    objects: &[(String, Vec<u8>)],
) -> (Vec<ObjectScan>, Vec<Finding>) {
    let notifier = CollectingNotifier::default();
    let mut cache = GeoCache::new(geo);
    let mut scans = Vec::new();
    for (name, bytes) in objects {
        let scan = scan_object(
            name,
            bytes.as_slice(),
            written_at_from_name(name).unwrap_or(i64::MAX),
            &mut cache,
            policy,
            &ReadOptions::default(),
        );
        block_on(commit_scan(&scan, policy, geo.info(), store, &notifier)).unwrap();
        scans.push(scan);
    }
    (scans, notifier.take())
}

fn run(objects: &[(String, Vec<u8>)]) -> (Vec<ObjectScan>, Vec<Finding>) {
    run_with(
        &fixture_geo_db(),
        &MemoryStateStore::new(),
        &travel_policy(),
        objects,
    )
}

fn named(name: &str, bytes: Vec<u8>) -> (String, Vec<u8>) {
    (name.to_owned(), bytes)
}

fn at(minute: u32) -> String {
    format!("2025-03-11T{:02}:{:02}:00Z", 4 + minute / 60, minute % 60)
}

/// (first city, second city) of each finding.
fn hops(findings: &[Finding]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            let t = f
                .impossible_travel
                .as_ref()
                .expect("impossible travel finding");
            let city = |e: &geotrail::finding::TravelEndpoint| e.city.clone().unwrap_or_default();
            (
                city(&t.triggering_locations.first_location),
                city(&t.triggering_locations.second_location),
            )
        })
        .collect();
    out.sort();
    out
}

fn stolen_key_records() -> Vec<Value> {
    vec![
        record("e1", &at(0), KEY, "alice", SYDNEY, "GetCallerIdentity"),
        record("e2", &at(5), KEY, "alice", SYDNEY_2, "ListBuckets"),
        record("e3", &at(25), KEY, "alice", FRANKFURT, "CreateUser"),
        record("e4", &at(26), KEY, "alice", FRANKFURT, "CreateAccessKey"),
    ]
}

#[test]
fn flags_key_used_in_sydney_then_frankfurt_within_twenty_minutes() {
    let (scans, findings) = run(&[named(
        "s3://trail/a.json.gz",
        gzip(&object(&stolen_key_records())),
    )]);
    assert!(
        scans[0].summary.as_ref().unwrap().compressed,
        "gzip was sniffed"
    );
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    let t = f.impossible_travel.as_ref().unwrap();
    assert_eq!(f.subject, KEY);
    assert_eq!(f.account_id.as_deref(), Some("123456789012"));
    assert_eq!(f.user_identity.user_name.as_deref(), Some("alice"));
    assert_eq!(f.source_object, "s3://trail/a.json.gz");
    assert_eq!(f.geoip.database_type, "GeoLite2-City");
    let (from, to) = (
        &t.triggering_locations.first_location,
        &t.triggering_locations.second_location,
    );
    assert_eq!((from.event_id.as_str(), from.ip.as_str()), ("e2", SYDNEY_2));
    assert_eq!(
        (to.event_id.as_str(), to.event_name.as_str()),
        ("e3", "CreateUser")
    );
    assert_eq!(to.city.as_deref(), Some("Frankfurt am Main"));
    assert_eq!(to.country_code.as_deref(), Some("DE"));
    assert_eq!(
        to.asn,
        Some(14061),
        "the ASN database adds the network owner"
    );
    assert_eq!(t.travel_time_human_readable, "20 minutes");
    assert!(t.speed_kmh.unwrap() > 40_000.0);
}

#[test]
fn a_finding_names_the_account_called_and_the_account_that_owns_the_key() {
    // The key of account 123456789012 calls two other accounts (a role chain, an
    // organization trail); the finding's account is the one the later event called.
    let mut records = stolen_key_records();
    records[2]["recipientAccountId"] = "111111111111".into();
    records[3]["recipientAccountId"] = "222222222222".into();
    let (_, findings) = run(&[named("s3://trail/a.json.gz", object(&records))]);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f.account_id.as_deref(), Some("222222222222"));
    assert_eq!(f.credential_account_id.as_deref(), Some("123456789012"));
    assert_eq!(f.user_identity.account_id.as_deref(), Some("123456789012"));
}

#[test]
fn stories_that_are_not_impossible_travel_raise_nothing() {
    let cases: Vec<(&str, Vec<Value>)> = vec![
        (
            "flight London -> New York in 9 hours",
            vec![
                record("e1", &at(0), KEY, "bob", LONDON, "ListBuckets"),
                record("e2", &at(9 * 60), KEY, "bob", NEW_YORK, "ListBuckets"),
            ],
        ),
        (
            "Houston -> San Antonio (about 300 km) in 10 minutes",
            vec![
                record("e1", &at(0), KEY, "carol", "98.194.10.20", "ListBuckets"),
                record("e2", &at(10), KEY, "carol", "70.120.10.20", "ListBuckets"),
            ],
        ),
        (
            "one city, many addresses",
            (0..10)
                .map(|i| {
                    record(
                        &format!("e{i}"),
                        &at(i),
                        KEY,
                        "dave",
                        [SYDNEY, SYDNEY_2, SYDNEY_V6][i as usize % 3],
                        "GetObject",
                    )
                })
                .collect(),
        ),
        // The US centroid is some 1,800 km from New York: as a point, 5 minutes would alert.
        (
            "a country-only location is not a point on a journey",
            vec![
                record("e1", &at(0), KEY, "erin", NEW_YORK, "ListBuckets"),
                record("e2", &at(5), KEY, "erin", US_COUNTRY_ONLY, "ListBuckets"),
                record("e3", &at(11), KEY, "erin", US_COUNTRY_ONLY, "ListBuckets"),
            ],
        ),
    ];
    for (name, records) in cases {
        let (_, findings) = run(&[named(name, object(&records))]);
        assert!(findings.is_empty(), "{name}: {findings:#?}");
    }
}

#[test]
fn service_private_and_odd_sources_are_counted_skips() {
    let cases = [
        ("ec2.amazonaws.com", "aws_service"),
        ("AWS Internal", "aws_internal"),
        ("10.1.2.3", "private"),
        ("192.168.10.10", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link_local"),
        ("100.64.1.1", "shared_address_space"),
        ("203.0.113.7", "documentation"),
        ("2001:db8::1", "documentation"),
        ("fd00::1", "private"),
        ("redacted", "not_an_ip"),
        ("", "missing"),
        ("9.9.9.9", "not_in_geoip"),
        (US_COUNTRY_ONLY, "low_precision_location"),
    ];
    let records: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (ip, _))| record(&format!("e{i}"), &at(i as u32), KEY, "svc", ip, "Describe"))
        .collect();
    let mut anonymous = record(
        "anon",
        &at(30),
        KEY,
        "svc",
        SYDNEY,
        "AssumeRoleWithWebIdentity",
    );
    anonymous["userIdentity"] =
        serde_json::json!({ "type": "WebIdentityUser", "principalId": "x" });
    let mut all = records;
    all.push(anonymous);
    let (scans, findings) = run(&[named("skips.json", object(&all))]);
    let scan = &scans[0];
    assert!(findings.is_empty());
    assert_eq!(scan.events, cases.len() as u64 + 1);
    assert_eq!(scan.sighting_count(), 0);
    for (ip, reason) in cases {
        assert!(
            scan.skipped.get(reason) >= 1,
            "{ip:?} should count as {reason}: {:?}",
            scan.skipped
        );
    }
    assert_eq!(
        scan.skipped.get("no_subject"),
        1,
        "an event without an access key"
    );
    assert_eq!(scan.skipped.total(), cases.len() as u64 + 1);
}

#[test]
fn a_comma_list_source_uses_its_first_public_address() {
    let records = vec![
        record("e1", &at(0), KEY, "alice", SYDNEY, "ListBuckets"),
        record(
            "e2",
            &at(20),
            KEY,
            "alice",
            &format!("{FRANKFURT}, 192.168.10.10"),
            "ListBuckets",
        ),
    ];
    let (_, findings) = run(&[named("comma.json", object(&records))]);
    assert_eq!(
        hops(&findings),
        [("Sydney".to_owned(), "Frankfurt am Main".to_owned())]
    );
}

#[test]
fn ipv6_sources_travel_too() {
    let records = vec![
        record("e1", &at(0), KEY, "alice", SYDNEY_V6, "ListBuckets"),
        record("e2", &at(20), KEY, "alice", LONDON, "ListBuckets"),
    ];
    let (_, findings) = run(&[named("v6.json", object(&records))]);
    assert_eq!(
        hops(&findings),
        [("Sydney".to_owned(), "London".to_owned())]
    );
    assert_eq!(
        findings[0]
            .impossible_travel
            .as_ref()
            .unwrap()
            .triggering_locations
            .first_location
            .ip,
        SYDNEY_V6
    );
}

#[test]
fn json_lines_and_records_objects_give_the_same_findings() {
    let (_, from_records) = run(&[named("a.json", object(&stolen_key_records()))]);
    let (_, from_lines) = run(&[named("a.json", json_lines(&stolen_key_records()))]);
    assert_eq!(from_records, from_lines);
}

/// A trail of several objects, several keys: the stolen key, a flight, a second theft.
fn trail() -> Vec<(String, Vec<u8>)> {
    let mut objects = Vec::new();
    let k2 = "AKIAI44QH8DHBEXAMPLE";
    let stories = [
        vec![
            record("a1", &at(0), KEY, "alice", SYDNEY, "ListBuckets"),
            record("b1", &at(0), k2, "bob", LONDON, "ListBuckets"),
        ],
        vec![
            record("a2", &at(5), KEY, "alice", SYDNEY_2, "GetObject"),
            record("b2", &at(30), k2, "bob", LONDON, "GetObject"),
        ],
        vec![record("a3", &at(25), KEY, "alice", FRANKFURT, "CreateUser")],
        vec![
            record("b3", &at(9 * 60), k2, "bob", NEW_YORK, "ListBuckets"),
            record("a4", &at(60), KEY, "alice", FRANKFURT, "PutUserPolicy"),
        ],
        vec![record(
            "b4",
            &at(9 * 60 + 10),
            k2,
            "bob",
            FRANKFURT,
            "ListBuckets",
        )],
    ];
    for (i, records) in stories.iter().enumerate() {
        let bytes = object(records);
        objects.push(named(
            &format!("o{i}.json.gz"),
            if i % 2 == 0 { gzip(&bytes) } else { bytes },
        ));
    }
    objects
}

#[test]
fn shuffled_objects_and_reversed_events_give_the_same_findings() {
    let (_, want) = run(&trail());
    assert_eq!(
        hops(&want),
        [
            ("New York".to_owned(), "Frankfurt am Main".to_owned()),
            ("Sydney".to_owned(), "Frankfurt am Main".to_owned()),
        ]
    );
    let reversed: Vec<(String, Vec<u8>)> = trail().into_iter().rev().collect();
    assert_eq!(
        hops(&run(&reversed).1),
        hops(&want),
        "objects in reverse order"
    );
    // Events reversed inside every object, objects rotated.
    for rotation in 0..trail().len() {
        let mut objects: Vec<(String, Vec<u8>)> = trail()
            .into_iter()
            .map(|(name, _)| name)
            .zip(reversed_records())
            .map(|(name, records)| (name, object(&records)))
            .collect();
        objects.rotate_left(rotation);
        assert_eq!(hops(&run(&objects).1), hops(&want), "rotation {rotation}");
    }
}

fn reversed_records() -> Vec<Vec<Value>> {
    trail()
        .into_iter()
        .map(|(_, bytes)| {
            let plain = if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut out = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(bytes.as_slice()),
                    &mut out,
                )
                .unwrap();
                out
            } else {
                bytes
            };
            let v: Value = serde_json::from_slice(&plain).unwrap();
            let mut records = v["Records"].as_array().unwrap().clone();
            records.reverse();
            records
        })
        .collect()
}

#[test]
fn replaying_objects_raises_no_new_finding() {
    let geo = fixture_geo_db();
    let store = MemoryStateStore::new();
    let policy = travel_policy();
    let (_, first) = run_with(&geo, &store, &policy, &trail());
    assert_eq!(first.len(), 2);
    let (_, again) = run_with(&geo, &store, &policy, &trail());
    assert!(again.is_empty(), "replay raised {again:#?}");
}

#[test]
fn a_malformed_object_is_reported_by_name_and_loses_nothing_else() {
    let good = object(&stolen_key_records()[..2]);
    let mut truncated = object(&stolen_key_records()[2..]);
    // Cut inside the second record: the first (Frankfurt, e3) is still judged.
    let cut = truncated.len() - 40;
    truncated.truncate(cut);
    let mut bad_gzip = gzip(&object(&[record(
        "z1",
        &at(40),
        KEY,
        "alice",
        LONDON,
        "ListBuckets",
    )]));
    let len = bad_gzip.len();
    bad_gzip.truncate(len / 2);
    let objects = vec![
        named("s3://trail/good.json", good),
        named("s3://trail/truncated.json", truncated),
        named("s3://trail/cut.json.gz", bad_gzip),
        named(
            "s3://trail/after.json",
            object(&[record("a9", &at(27), KEY, "alice", FRANKFURT, "ListUsers")]),
        ),
    ];
    let (scans, findings) = run(&objects);
    assert_eq!(
        hops(&findings),
        [("Sydney".to_owned(), "Frankfurt am Main".to_owned())],
        "events before the fault count"
    );
    assert!(!scans[0].has_faults() && !scans[3].has_faults());
    for scan in &scans[1..3] {
        let messages = scan.fault_messages().join("\n");
        assert!(scan.has_faults(), "{}", scan.name);
        assert!(
            messages.contains(&scan.name),
            "the error names the object: {messages}"
        );
        assert!(
            messages.contains("byte") || messages.contains("offset"),
            "and says where: {messages}"
        );
    }
    assert_eq!(scans[1].events, 1, "the record before the cut was read");
}

#[test]
fn a_bad_record_is_reported_with_its_index_and_the_rest_are_judged() {
    let mut records = stolen_key_records();
    records.insert(
        1,
        serde_json::json!({ "eventTime": 5, "eventID": "broken" }),
    );
    let (scans, findings) = run(&[named("s3://trail/bad-record.json", object(&records))]);
    assert_eq!(findings.len(), 1);
    assert_eq!(scans[0].bad_records, 1);
    let message = scans[0].fault_messages().join("\n");
    assert!(
        message.contains("s3://trail/bad-record.json") && message.contains("record 1"),
        "{message}"
    );
}

#[test]
fn the_file_store_carries_history_from_one_scan_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let geo = fixture_geo_db();
    let policy = travel_policy();
    let records = stolen_key_records();
    {
        let store = FileStateStore::open(&path).unwrap();
        let (_, findings) = run_with(
            &geo,
            &store,
            &policy,
            &[named("first.json", object(&records[..2]))],
        );
        assert!(findings.is_empty());
    }
    let store = FileStateStore::open(&path).unwrap();
    let (_, findings) = run_with(
        &geo,
        &store,
        &policy,
        &[named("second.json", object(&records[2..]))],
    );
    assert_eq!(
        hops(&findings),
        [("Sydney".to_owned(), "Frankfurt am Main".to_owned())]
    );
}

#[test]
fn principal_subjects_join_rotating_session_keys() {
    let role = "arn:aws:sts::123456789012:assumed-role/Admin/alice@example.com";
    let session = |id: &str, minute: u32, key: &str, ip: &str| {
        let mut r = record(id, &at(minute), key, "alice", ip, "ListBuckets");
        r["userIdentity"] = serde_json::json!({
            "type": "AssumedRole", "principalId": "AROAEXAMPLE:alice@example.com", "arn": role,
            "accountId": "123456789012", "accessKeyId": key,
            "sessionContext": { "sessionIssuer": { "type": "Role", "arn": "arn:aws:iam::123456789012:role/Admin", "userName": "Admin" } }
        });
        r
    };
    let records = vec![
        session("e1", 0, "ASIAFIRSTSESSION0001", SYDNEY),
        session("e2", 20, "ASIASECONDSESSION002", FRANKFURT),
    ];
    let by_key = run(&[named("roles.json", object(&records))]).1;
    assert!(by_key.is_empty(), "two keys, two travellers");
    let policy = Policy {
        subject: geotrail::detect::SubjectKind::Principal,
        ..travel_policy()
    };
    let (_, by_principal) = run_with(
        &fixture_geo_db(),
        &MemoryStateStore::new(),
        &policy,
        &[named("roles.json", object(&records))],
    );
    assert_eq!(by_principal.len(), 1);
    assert_eq!(by_principal[0].subject, role);
    assert_eq!(
        by_principal[0].user_identity.session_name.as_deref(),
        Some("alice@example.com")
    );
}

/// CloudTrail's name for an object written at 2025-03-11T`hhmm`Z.
fn cloudtrail_name(hhmm: &str, n: u32) -> String {
    format!(
        "s3://trail/AWSLogs/123456789012/CloudTrail/us-east-1/2025/03/11/123456789012_CloudTrail_us-east-1_20250311T{hhmm}Z_{n:04}.json.gz"
    )
}

#[test]
fn forged_and_skewed_times_are_quarantined_reported_and_blind_nothing() {
    let keys: Vec<String> = (0..10).map(|i| format!("AKIAFORGED{i:010}")).collect();
    // One object delivered before the trail holds a record from 2099 for every key, and
    // one from 90 minutes after the object was written (a skewed clock).
    let mut forged: Vec<Value> = keys
        .iter()
        .map(|k| {
            record(
                &format!("forged-{k}"),
                "2099-12-31T23:59:59Z",
                k,
                "alice",
                SYDNEY,
                "ListUsers",
            )
        })
        .collect();
    forged.push(record(
        "skewed",
        &at(150),
        &keys[0],
        "alice",
        "AWS Internal",
        "ListUsers",
    ));
    let mut objects = vec![named(&cloudtrail_name("0500", 0), gzip(&object(&forged)))];
    for (i, k) in keys.iter().enumerate() {
        let records = vec![
            record(
                &format!("s-{i}"),
                &at(60),
                k,
                "alice",
                SYDNEY,
                "GetCallerIdentity",
            ),
            record(
                &format!("f-{i}"),
                &at(80),
                k,
                "alice",
                FRANKFURT,
                "CreateUser",
            ),
        ];
        objects.push(named(
            &cloudtrail_name("0525", i as u32 + 1),
            gzip(&object(&records)),
        ));
    }
    let store = MemoryStateStore::new();
    let (scans, findings) = run_with(&fixture_geo_db(), &store, &travel_policy(), &objects);

    assert_eq!(
        scans[0].skipped.get("future_time"),
        11,
        "every forged record is counted"
    );
    let travel: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.rule == geotrail::finding::Rule::ImpossibleTravel)
        .collect();
    assert_eq!(travel.len(), 10, "no key is blinded: {findings:#?}");
    let future: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.rule == geotrail::finding::Rule::FutureEventTime)
        .collect();
    assert_eq!(future.len(), 10, "one finding per key and object");
    let first = future
        .iter()
        .find(|f| f.subject == keys[0])
        .expect("key 0's finding");
    assert_eq!(first.severity, geotrail::finding::Severity::Low);
    let block = first.future_event_time.as_ref().unwrap();
    assert_eq!(block.count, 2, "the forged and the skewed record");
    assert_eq!(block.object_written_at, "2025-03-11T05:01:00Z");
    assert_eq!(
        first.event_time, block.object_written_at,
        "no forged time in the finding"
    );
    for k in &keys {
        let state = store.snapshot(k).expect("saved").state;
        assert_eq!(
            state.last_seen_ms(),
            geotrail::cloudtrail::parse_event_time(&at(80)),
            "{k}: the clock is the latest trusted event"
        );
    }

    // A replay of the forged object raises nothing new.
    let (_, again) = run_with(&fixture_geo_db(), &store, &travel_policy(), &objects[..1]);
    assert!(again.is_empty(), "{again:#?}");
}
