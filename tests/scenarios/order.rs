//! Delivery order does not change what is found: a property test over generated
//! adversarial scenarios, through real log objects, the fixture `.mmdb` and the pipeline.
//!
//! Each case is a small organisation: stolen keys used far from home *before*, *during*
//! or *after* the owner's burst of calls (the shape Datadog's rule misses when the
//! attacker's place comes first), innocent travellers, and keys that stay home. Events go
//! into CloudTrail-shaped objects per region and five minutes. The days before the
//! incident (the subjects' learning period and baseline) are delivered first, as they are
//! in a live trail; the incident day's objects are then delivered in every order the case
//! draws (time order, reversed, and seeded shuffles, with the records inside each object
//! shuffled too). Every order must find the same set of (subject, place pair), and that
//! set must be exactly the pairs some two events make impossible (an oracle computed
//! from the events and the fixture's coordinates).
//!
//! Cases: `GEOTRAIL_PROPTEST_CASES` (default 48, which CI runs); orders per case:
//! `GEOTRAIL_PROPTEST_ORDERS` (default 6). Run longer by hand with, e.g.,
//! `GEOTRAIL_PROPTEST_CASES=2000 cargo test --features test-support order_`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use geotrail::cloudtrail::{written_at_from_name, ReadOptions};
use geotrail::finding::{format_rfc3339_ms, Finding, Rule};
use geotrail::geo::{distance_km, GeoCache, GeoDb, Location};
use geotrail::pipeline::{commit_scan, scan_object};
use geotrail::state::MemoryStateStore;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use super::block_on;
use crate::common::mmdb::fixture_geo_db;
use crate::common::trail::{gzip, object, record, CollectingNotifier};

/// Cities of the fixture, each with a network prefix of its (address, host bytes).
const CITIES: &[(&str, &str)] = &[
    ("Sydney", "1.128"),
    ("Frankfurt", "46.101"),
    ("London", "86.128"),
    ("New York", "72.229"),
    ("Tokyo", "126.0"),
    ("Paris", "82.64"),
    ("Sao Paulo", "177.32"),
    ("Johannesburg", "41.0"),
    ("Toronto", "99.224"),
    ("Moscow", "95.24"),
    ("Mumbai", "49.36"),
    ("Chicago", "73.44"),
];
const REGIONS: &[&str] = &["us-east-1", "eu-west-2", "ap-southeast-2", "sa-east-1"];
const MINUTE: i64 = 60_000;
const DAY: i64 = 1440 * MINUTE;
/// 2025-03-10T00:00:00Z.
const START: i64 = 1_741_564_800_000;
const INCIDENT_DAY: i64 = 3;

#[derive(Debug, Clone, Copy)]
enum When {
    Before,
    During,
    After,
}

/// One subject's story.
#[derive(Debug, Clone)]
struct Subject {
    home: usize,
    home_region: usize,
    /// Minute of the incident day the owner's burst starts, its step and length.
    burst_start: i64,
    burst_step: i64,
    burst_len: i64,
    /// A thief's use: where, when relative to the burst, how far from its edge, how many
    /// calls how far apart. `None`: the key stays home.
    thief: Option<(usize, usize, When, i64, i64, i64)>,
    /// An innocent trip after the burst: where, and how many hours later.
    trip: Option<(usize, i64)>,
}

#[derive(Debug, Clone)]
struct Case {
    subjects: Vec<Subject>,
    /// Seeds of the shuffled orders.
    seeds: Vec<u64>,
}

fn when() -> impl Strategy<Value = When> {
    prop_oneof![Just(When::Before), Just(When::During), Just(When::After)]
}

fn subject() -> impl Strategy<Value = Subject> {
    let n = CITIES.len();
    (
        (0..n, 0..REGIONS.len(), 360i64..900, 1i64..=10, 3i64..=30),
        proptest::option::weighted(
            0.8,
            (
                1..n,
                0..REGIONS.len(),
                when(),
                5i64..=150,
                1i64..=4,
                1i64..=5,
            ),
        ),
        proptest::option::of((1..n, 14i64..=30)),
    )
        .prop_map(
            move |((home, home_region, start, step, len), thief, trip)| Subject {
                home,
                home_region,
                burst_start: start,
                burst_step: step,
                burst_len: len,
                // Offsets from the home city, so the thief is never at home.
                thief: thief.map(|(d, r, w, off, k, sp)| ((home + d) % n, r, w, off, k, sp)),
                trip: trip.map(|(d, h)| ((home + d) % n, h)),
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(subject(), 1..=4),
        proptest::collection::vec(any::<u64>(), orders() - 2),
    )
        .prop_map(|(subjects, seeds)| Case { subjects, seeds })
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn orders() -> usize {
    env_number("GEOTRAIL_PROPTEST_ORDERS", 6).max(3)
}

/// One event of the generated trail.
#[derive(Debug, Clone)]
struct Ev {
    t: i64,
    key: String,
    city: usize,
    region: usize,
    host: u32,
}

fn key_of(i: usize) -> String {
    format!("AKIAORDER{i:011}")
}

fn events(case: &Case) -> Vec<Ev> {
    let mut out = Vec::new();
    for (i, s) in case.subjects.iter().enumerate() {
        let key = key_of(i);
        let mut push = |t: i64, city: usize, region: usize| {
            let host = out.len() as u32;
            out.push(Ev {
                t,
                key: key.clone(),
                city,
                region,
                host,
            })
        };
        // Learning period and baseline: two sessions at home on each earlier day.
        for day in 0..INCIDENT_DAY {
            for session in [9 * 60, 14 * 60] {
                for k in 0..3 {
                    push(
                        START + day * DAY + (session + 4 * k) * MINUTE,
                        s.home,
                        s.home_region,
                    );
                }
            }
        }
        let day = START + INCIDENT_DAY * DAY;
        let burst_first = day + s.burst_start * MINUTE;
        let burst_last = burst_first + (s.burst_len - 1) * s.burst_step * MINUTE;
        for k in 0..s.burst_len {
            push(
                burst_first + k * s.burst_step * MINUTE,
                s.home,
                s.home_region,
            );
        }
        if let Some((city, region, when, offset, calls, spacing)) = s.thief {
            let first = match when {
                When::Before => burst_first - offset * MINUTE - (calls - 1) * spacing * MINUTE,
                When::During => burst_first + (offset * MINUTE) % (burst_last - burst_first + 1),
                When::After => burst_last + offset * MINUTE,
            };
            for k in 0..calls {
                push(first + k * spacing * MINUTE, city, region);
            }
        }
        if let Some((city, hours)) = s.trip {
            push(burst_last + hours * 60 * MINUTE, city, s.home_region);
        }
    }
    out
}

fn ip(e: &Ev) -> String {
    let prefix = CITIES[e.city].1;
    format!("{prefix}.{}.{}", 1 + e.host / 250 % 250, 1 + e.host % 250)
}

/// CloudTrail's layout: one object per region and five minutes, written a few minutes
/// after its last event, named with that time.
fn objects(events: &[Ev]) -> Vec<TrailObject> {
    let mut by_window: BTreeMap<(i64, usize), Vec<&Ev>> = BTreeMap::new();
    for e in events {
        by_window
            .entry((e.t.div_euclid(5 * MINUTE), e.region))
            .or_default()
            .push(e);
    }
    by_window
        .into_iter()
        .enumerate()
        .map(|(n, ((window, region), evs))| {
            let written = (window + 1) * 5 * MINUTE + 2 * MINUTE;
            let stamp = format_rfc3339_ms(written);
            let compact: String = stamp[..16].chars().filter(|c| *c != '-' && *c != ':').collect();
            let name = format!(
                "s3://trail/AWSLogs/123456789012/CloudTrail/{r}/x/123456789012_CloudTrail_{r}_{compact}Z_{n:06}.json.gz",
                r = REGIONS[region]
            );
            let records = evs
                .iter()
                .map(|e| {
                    record(
                        &format!("ev-{}", e.host),
                        &format_rfc3339_ms(e.t),
                        &e.key,
                        "user",
                        &ip(e),
                        "DescribeInstances",
                    )
                })
                .collect();
            (name, written, records)
        })
        .collect()
}

/// A seeded Fisher-Yates shuffle (splitmix64), so a failing order can be replayed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    let mut next = || {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

type Pairs = BTreeSet<(String, String, String)>;
/// An object of the trail: its name, when it was written, its records.
type TrailObject = (String, i64, Vec<Value>);

fn pairs(findings: &[Finding]) -> Pairs {
    findings
        .iter()
        .filter(|f| f.rule == Rule::ImpossibleTravel)
        .map(|f| {
            let t = f.impossible_travel.as_ref().expect("a travel block");
            let mut p = [
                t.triggering_locations.first_location.display_place(),
                t.triggering_locations.second_location.display_place(),
            ];
            p.sort();
            let [a, b] = p;
            (f.subject.clone(), a, b)
        })
        .collect()
}

/// Scans the objects in the order given and returns what was found.
fn run(geo: &GeoDb, objects: &[&TrailObject], record_seed: Option<u64>) -> Vec<Finding> {
    let store = MemoryStateStore::new();
    let notifier = CollectingNotifier::default();
    let policy = super::travel_policy();
    let mut cache = GeoCache::new(geo);
    for (i, (name, written, records)) in objects.iter().enumerate() {
        let mut records = records.clone();
        if let Some(seed) = record_seed {
            shuffle(&mut records, seed ^ i as u64);
        }
        let bytes = gzip(&object(&records));
        assert_eq!(written_at_from_name(name), Some(*written + MINUTE));
        let scan = scan_object(
            name,
            bytes.as_slice(),
            *written,
            &mut cache,
            &policy,
            &ReadOptions::default(),
        );
        assert!(!scan.has_faults(), "{:?}", scan.fault_messages());
        block_on(commit_scan(&scan, &policy, geo.info(), &store, &notifier))
            .expect("a memory store does not fail");
    }
    notifier.take()
}

/// The pairs some two events of a subject make impossible, by the default policy.
fn oracle(geo: &GeoDb, events: &[Ev]) -> Pairs {
    let policy = super::travel_policy();
    let locate = |e: &Ev| -> Location {
        let addr: IpAddr = ip(e).parse().expect("an address");
        geo.lookup(addr).unwrap().expect("a fixture city")
    };
    let mut out = Pairs::new();
    for a in events {
        for b in events {
            if a.key != b.key || a.city >= b.city {
                continue;
            }
            let (la, lb) = (locate(a), locate(b));
            let d = distance_km(la.latitude, la.longitude, lb.latitude, lb.longitude);
            let effective = d - la.accuracy_km() - lb.accuracy_km();
            let hours = (a.t - b.t).abs() as f64 / 3_600_000.0;
            if effective > policy.min_distance_km && effective > policy.min_speed_kmh * hours {
                let mut p = [la.display_name(), lb.display_name()];
                p.sort();
                let [x, y] = p;
                out.insert((a.key.clone(), x, y));
            }
        }
    }
    out
}

fn check(geo: &GeoDb, case: &Case) -> Result<(), TestCaseError> {
    let events = events(case);
    let all = objects(&events);
    let incident = START + INCIDENT_DAY * DAY;
    let (before, during): (Vec<_>, Vec<_>) = all.iter().partition(|o| o.1 < incident);
    let expected = oracle(geo, &events);

    let mut orders: Vec<(String, Vec<&TrailObject>, Option<u64>)> = Vec::new();
    orders.push(("time order".into(), during.clone(), None));
    let mut reversed = during.clone();
    reversed.reverse();
    orders.push(("reversed".into(), reversed, None));
    for &seed in &case.seeds {
        let mut shuffled = during.clone();
        shuffle(&mut shuffled, seed);
        orders.push((format!("shuffle {seed}"), shuffled, Some(seed)));
    }
    for (label, order, record_seed) in orders {
        let delivered: Vec<_> = before.iter().copied().chain(order).collect();
        let found = pairs(&run(geo, &delivered, record_seed));
        prop_assert_eq!(
            &found,
            &expected,
            "{}: found (left) differs from the pairs the events make impossible (right)",
            label
        );
    }
    Ok(())
}

#[test]
fn order_of_objects_and_records_never_changes_the_pairs_found() {
    let geo = fixture_geo_db();
    let cases = env_number("GEOTRAIL_PROPTEST_CASES", 48) as u32;
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| check(&geo, &case));
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn the_generator_makes_thieves_the_oracle_can_see() {
    // Guards the property above from passing on scenarios where nothing is impossible.
    let geo = fixture_geo_db();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let mut with_findings = 0;
    for _ in 0..64 {
        let case = case().new_tree(&mut runner).expect("a case").current();
        if !oracle(&geo, &events(&case)).is_empty() {
            with_findings += 1;
        }
    }
    assert!(
        with_findings > 32,
        "only {with_findings} of 64 cases have a thief to find"
    );
}
