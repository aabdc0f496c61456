//! Table-driven detection scenarios on hand-made locations. The same stories run through
//! real `.mmdb` files and real log objects in the integration tests.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::*;
use crate::detect::policy::{BaselinePolicy, DAY_MS, HOUR_MS, MINUTE_MS};

fn city(name: &str, cc: &str, lat: f64, lon: f64, radius: u16) -> Arc<Location> {
    Arc::new(Location {
        city: Some(name.into()),
        country_code: Some(cc.into()),
        country: Some(cc.into()),
        latitude: lat,
        longitude: lon,
        accuracy_radius_km: Some(radius),
        ..Location::default()
    })
}

fn sydney() -> Arc<Location> {
    city("Sydney", "AU", -33.8688, 151.2093, 20)
}
fn frankfurt() -> Arc<Location> {
    city("Frankfurt am Main", "DE", 50.1109, 8.6821, 20)
}
fn london() -> Arc<Location> {
    city("London", "GB", 51.5074, -0.1278, 20)
}
fn new_york() -> Arc<Location> {
    city("New York", "US", 40.7128, -74.0060, 20)
}
fn amsterdam() -> Arc<Location> {
    city("Amsterdam", "NL", 52.3676, 4.9041, 20)
}
fn ashburn() -> Arc<Location> {
    city("Ashburn", "US", 39.0438, -77.4874, 20)
}

/// A sighting `minutes` after a fixed start, from an address of the last octet `host`.
fn at(minutes: i64, id: &str, location: &Arc<Location>, host: u8) -> Sighting {
    Sighting::new(
        1_700_000_000_000 + minutes * MINUTE_MS,
        id,
        "ListBuckets",
        "s3.amazonaws.com",
        "us-east-1",
        IpAddr::V4(Ipv4Addr::new(81, 2, 69, host)),
        Arc::clone(location),
    )
}

const KEY: &str = "AKIAEXAMPLEKEY000001";

fn run(policy: &Policy, sightings: &[Sighting]) -> (SubjectState, Vec<Finding>) {
    let mut state = SubjectState::new(KEY);
    let findings = feed(&mut state, policy, sightings);
    (state, findings)
}

fn feed(state: &mut SubjectState, policy: &Policy, sightings: &[Sighting]) -> Vec<Finding> {
    let identity = CompactIdentity::from(&crate::finding::UserIdentitySummary {
        access_key_id: Some(KEY.into()),
        ..Default::default()
    });
    let geoip = GeoDbInfo {
        database_type: "GeoLite2-City".into(),
        build_epoch: 1_700_000_000,
        ..Default::default()
    };
    let ctx = FindingContext {
        subject_kind: SubjectKind::AccessKey,
        identity: &identity,
        account_id: Some("123456789012"),
        source_object: "test-object",
        geoip: &geoip,
    };
    sightings
        .iter()
        .flat_map(|s| state.observe(s, policy, &ctx).findings)
        .collect()
}

/// (from, to) place names of each finding, sorted: what "the same findings" means when
/// the events arrive in another order.
fn hops(findings: &[Finding]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            let t = f.impossible_travel.as_ref().unwrap();
            let mut pair = [
                t.triggering_locations.first_location.display_place(),
                t.triggering_locations.second_location.display_place(),
            ];
            pair.sort();
            (pair[0].clone(), pair[1].clone())
        })
        .collect();
    out.sort();
    out
}

fn no_baseline() -> Policy {
    Policy {
        baseline: None,
        ..Policy::default()
    }
}

#[test]
fn scenarios_alert_exactly_when_travel_is_impossible() {
    let (syd, fra, lon, nyc) = (sydney(), frankfurt(), london(), new_york());
    let houston = city("Houston", "US", 29.7604, -95.3698, 20);
    let austin = city("Austin", "US", 30.2672, -97.7431, 20);
    // 900 km apart, but each place is only known to within 250 km.
    let (vague_a, vague_b) = (
        city("Vague A", "XA", 0.0, 0.0, 250),
        city("Vague B", "XB", 0.0, 8.094, 250),
    );
    let cases: Vec<(&str, Policy, Vec<Sighting>, usize)> = vec![
        (
            "stolen key Sydney -> Frankfurt in 20 minutes",
            Policy::default(),
            vec![
                at(0, "e1", &syd, 1),
                at(5, "e2", &syd, 2),
                at(25, "e3", &fra, 3),
            ],
            1,
        ),
        (
            "flight London -> New York in 9 hours",
            Policy::default(),
            vec![at(0, "e1", &lon, 1), at(9 * 60, "e2", &nyc, 2)],
            0,
        ),
        (
            "Houston -> Austin (about 235 km) in 10 minutes",
            Policy::default(),
            vec![at(0, "e1", &houston, 1), at(10, "e2", &austin, 2)],
            0,
        ),
        (
            "one city, many addresses",
            Policy::default(),
            (0..20)
                .map(|i| at(i, &format!("e{i}"), &syd, i as u8))
                .collect(),
            0,
        ),
        (
            "accuracy radii make 900 km in 30 minutes possible",
            Policy::default(),
            vec![at(0, "e1", &vague_a, 1), at(30, "e2", &vague_b, 2)],
            0,
        ),
        (
            "without radii the same hop is impossible",
            Policy {
                use_accuracy_radius: false,
                ..Policy::default()
            },
            vec![at(0, "e1", &vague_a, 1), at(30, "e2", &vague_b, 2)],
            1,
        ),
        (
            "higher distance threshold silences Sydney -> Frankfurt",
            Policy {
                min_distance_km: 20_000.0,
                ..Policy::default()
            },
            vec![at(0, "e1", &syd, 1), at(25, "e2", &fra, 2)],
            0,
        ),
        (
            "Frankfurt arriving before Sydney still alerts",
            Policy::default(),
            vec![at(25, "e3", &fra, 3), at(0, "e1", &syd, 1)],
            1,
        ),
    ];
    for (name, policy, sightings, want) in cases {
        let (_, findings) = run(&policy, &sightings);
        assert_eq!(findings.len(), want, "{name}: {findings:#?}");
    }
}

#[test]
fn flags_key_used_in_sydney_then_frankfurt_within_twenty_minutes() {
    let (syd, fra) = (sydney(), frankfurt());
    let (_, findings) = run(
        &Policy::default(),
        &[
            at(0, "e1", &syd, 1),
            at(5, "e2", &syd, 2),
            at(25, "e3", &fra, 3),
        ],
    );
    let f = &findings[0];
    let t = f.impossible_travel.as_ref().unwrap();
    assert_eq!(f.rule, Rule::ImpossibleTravel);
    assert_eq!(f.subject, KEY);
    assert_eq!(
        t.triggering_locations.first_location.event_id, "e2",
        "judged against the latest Sydney event"
    );
    assert_eq!(t.triggering_locations.second_location.event_id, "e3");
    assert!(
        (t.travel_distance - 16_480.0).abs() < 100.0,
        "{}",
        t.travel_distance
    );
    assert_eq!(
        t.effective_distance_km,
        (t.travel_distance - 40.0 + 0.0).max(0.0).round_to(1)
    );
    assert_eq!(t.travel_time_seconds, 1200.0);
    assert_eq!(t.travel_time_human_readable, "20 minutes");
    let speed = t.speed_kmh.unwrap();
    assert!(
        (speed - t.effective_distance_km * 3.0).abs() < 1.0,
        "{speed}"
    );
    assert!(!t.concurrent_use);
    assert_eq!(f.severity, Severity::High);
    assert_eq!(
        f.summary,
        format!(
            "`{KEY}` had activity from Sydney, AU and Frankfurt am Main, DE which are approximately {:.0}km apart within 20 minutes. This indicates a potential impossible travel.",
            t.travel_distance
        )
    );
    assert_eq!(f.triage.len(), 3);
    assert_eq!(f.finding_id.len(), 32);
}

trait Round1 {
    fn round_to(self, digits: i32) -> f64;
}
impl Round1 for f64 {
    fn round_to(self, digits: i32) -> f64 {
        let m = 10f64.powi(digits);
        (self * m).round() / m
    }
}

#[test]
fn same_second_use_from_two_continents_is_concurrent_use() {
    let (syd, fra) = (sydney(), frankfurt());
    let (_, findings) = run(
        &Policy::default(),
        &[at(0, "e1", &syd, 1), at(0, "e2", &fra, 2)],
    );
    let t = findings[0].impossible_travel.as_ref().unwrap();
    assert!(t.concurrent_use);
    assert_eq!(t.speed_kmh, None, "an infinite speed is reported as null");
    assert!(
        findings[0].title.starts_with("Concurrent use of"),
        "{}",
        findings[0].title
    );
}

#[test]
fn replaying_the_same_events_raises_nothing_and_changes_nothing() {
    let (syd, fra) = (sydney(), frankfurt());
    let events = [
        at(0, "e1", &syd, 1),
        at(5, "e2", &syd, 2),
        at(25, "e3", &fra, 3),
        at(26, "e4", &fra, 4),
    ];
    let (mut state, first) = run(&Policy::default(), &events);
    assert_eq!(first.len(), 1);
    let before = state.clone();
    let again = feed(&mut state, &Policy::default(), &events);
    assert!(again.is_empty(), "replay raised {again:#?}");
    assert_eq!(state, before);
}

#[test]
fn shuffled_and_reversed_orders_give_the_same_findings() {
    let (syd, fra, lon, nyc) = (sydney(), frankfurt(), london(), new_york());
    let forward: Vec<Sighting> = vec![
        at(0, "a1", &syd, 1),
        at(3, "a2", &syd, 2),
        at(7, "a3", &syd, 3),
        at(27, "a4", &fra, 4),
        at(29, "a5", &fra, 5),
        at(600, "b1", &lon, 6),
        at(600 + 9 * 60, "b2", &nyc, 7),
        // Home again, three days later. (Had it come back 14 hours after New York, an
        // impossible hop, the baseline would silence it only when Sydney's earlier events
        // are already known: an alert sent is never retracted.)
        at(600 + 9 * 60 + 3 * DAY_MS / MINUTE_MS, "a6", &syd, 8),
    ];
    for policy in [Policy::default(), no_baseline()] {
        let (_, want) = run(&policy, &forward);
        // London is no more reachable from Sydney in ten hours than Frankfurt in twenty
        // minutes: the thief moved on, or there are two.
        let expected = [
            ("Frankfurt am Main, DE", "Sydney, AU"),
            ("London, GB", "Sydney, AU"),
        ];
        assert_eq!(
            hops(&want),
            expected.map(|(a, b)| (a.to_owned(), b.to_owned())),
            "forward order"
        );
        let reversed: Vec<Sighting> = forward.iter().rev().cloned().collect();
        let (_, got) = run(&policy, &reversed);
        assert_eq!(hops(&got), hops(&want), "reversed order");
        // A fixed set of permutations stands in for random shuffles: repeatable.
        for seed in 1..=20u64 {
            let mut order: Vec<Sighting> = forward.clone();
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for i in (1..order.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let (_, got) = run(&policy, &order);
            assert_eq!(hops(&got), hops(&want), "permutation {seed}");
        }
    }
}

#[test]
fn vpn_flapping_with_baseline_raises_at_most_the_first_alert() {
    let (ams, ash) = (amsterdam(), ashburn());
    // Amsterdam and a VPN exit in Ashburn, alternating every 10 minutes for 4 hours.
    let flaps: Vec<Sighting> = (0..24)
        .map(|i| {
            at(
                i * 10,
                &format!("e{i}"),
                if i % 2 == 0 { &ams } else { &ash },
                i as u8,
            )
        })
        .collect();
    let (_, with_baseline) = run(&Policy::default(), &flaps);
    assert!(with_baseline.len() <= 1, "baseline on: {with_baseline:#?}");
    let (_, without) = run(&no_baseline(), &flaps);
    assert!(
        without.len() > 1,
        "baseline off alerts once per dedup window"
    );
    assert!(
        without.len() <= 4,
        "dedup keeps it to one per hour: {}",
        without.len()
    );
}

#[test]
fn travel_back_to_a_baseline_place_does_not_alert_but_a_new_place_does() {
    let (syd, fra, lon) = (sydney(), frankfurt(), london());
    let policy = Policy::default();
    let mut events = vec![at(0, "home1", &syd, 1), at(60, "home2", &syd, 2)];
    // Days later, after learning: a hop to Frankfurt, back home to Sydney, then London.
    let day = DAY_MS / MINUTE_MS;
    events.push(at(3 * day, "h3", &syd, 3));
    events.push(at(3 * day + 20, "f1", &fra, 4));
    events.push(at(3 * day + 40, "h4", &syd, 5));
    events.push(at(3 * day + 200, "l1", &lon, 6));
    let (_, findings) = run(&policy, &events);
    let got: Vec<&str> = findings
        .iter()
        .map(|f| {
            f.impossible_travel
                .as_ref()
                .unwrap()
                .triggering_locations
                .second_location
                .event_id
                .as_str()
        })
        .collect();
    assert_eq!(
        got,
        ["f1", "l1"],
        "Frankfurt and London alert; the return to Sydney does not"
    );
}

#[test]
fn a_hop_made_before_is_a_habit_when_the_baseline_is_on() {
    let (syd, fra) = (sydney(), frankfurt());
    let policy = Policy {
        baseline: Some(BaselinePolicy {
            learning_ms: 0,
            forget_after_ms: 30 * DAY_MS,
        }),
        ..Policy::default()
    };
    // Sydney -> Frankfurt twice, three hours apart (beyond the dedup window).
    let events = [
        at(0, "s1", &syd, 1),
        at(20, "f1", &fra, 2),
        at(180, "s2", &syd, 3),
        at(200, "f2", &fra, 4),
    ];
    let (_, findings) = run(&policy, &events);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let (_, findings) = run(&no_baseline(), &events);
    // Without it, each hop alerts but for the way back, which falls in the first return
    // hop's dedup window (one finding per place pair per hour).
    assert_eq!(findings.len(), 2, "without a baseline: {findings:#?}");
}

#[test]
fn one_network_on_both_ends_lowers_the_severity() {
    let with_asn = |l: Arc<Location>| {
        Arc::new(Location {
            asn: Some(9009),
            as_org: Some("M247".into()),
            ..(*l).clone()
        })
    };
    let (syd, fra) = (with_asn(sydney()), with_asn(frankfurt()));
    let (_, findings) = run(
        &Policy::default(),
        &[at(0, "e1", &syd, 1), at(20, "e2", &fra, 2)],
    );
    assert_eq!(findings[0].severity, Severity::Low);
}

#[test]
fn sightings_older_than_the_window_are_stale() {
    let (syd, fra) = (sydney(), frankfurt());
    let (mut state, _) = run(&Policy::default(), &[at(0, "now", &syd, 1)]);
    let old = at(-31 * DAY_MS / MINUTE_MS, "old", &fra, 2);
    let identity = CompactIdentity::default();
    let geoip = GeoDbInfo::default();
    let ctx = FindingContext {
        subject_kind: SubjectKind::AccessKey,
        identity: &identity,
        account_id: None,
        source_object: "x",
        geoip: &geoip,
    };
    assert_eq!(
        state.observe(&old, &Policy::default(), &ctx).effect,
        Effect::Stale
    );
}

#[test]
fn state_stays_bounded_and_fits_a_dynamodb_item() {
    let places: Vec<Arc<Location>> = (0..300)
        .map(|i| {
            city(
                &format!("City {i}"),
                "XX",
                -60.0 + (i as f64) * 0.4,
                (i as f64) * 1.1 - 170.0,
                10,
            )
        })
        .collect();
    // Every hop impossible: the worst case for alert marks and transitions too.
    let events: Vec<Sighting> = (0..1200)
        .map(|i| {
            at(
                i * 7,
                &format!("{i:08x}-0000-4000-8000-000000000000"),
                &places[(i * 37 % 300) as usize],
                (i % 250) as u8,
            )
        })
        .collect();
    let (state, _) = run(&Policy::default(), &events);
    assert!(state.stays.len() <= Policy::default().max_stays);
    let bytes = serde_json::to_vec(&state).unwrap().len();
    assert!(bytes < 200 * 1024, "state is {bytes} bytes");
    assert!(state.alerts.len() <= MAX_ALERTS && state.transitions.len() <= MAX_TRANSITIONS);
}

#[test]
fn history_window_prunes_old_stays() {
    let (syd, fra) = (sydney(), frankfurt());
    let day = DAY_MS / MINUTE_MS;
    let (state, _) = run(
        &Policy::default(),
        &[at(0, "old", &fra, 1), at(40 * day, "new", &syd, 2)],
    );
    assert_eq!(state.stays.len(), 1);
    assert_eq!(
        state.places.len(),
        1,
        "Frankfurt is forgotten with its stay"
    );
    let _ = HOUR_MS;
}

#[test]
fn a_late_object_inside_a_long_stay_is_judged_against_nearby_events() {
    let (syd, fra) = (sydney(), frankfurt());
    // A whole day of Sydney events every 10 minutes, then Frankfurt arrives late, 20
    // minutes after one of them: the hop must be judged against that event, not against
    // the ends of the day.
    let mut events: Vec<Sighting> = (0..144)
        .map(|i| at(i * 10, &format!("s{i}"), &syd, 1))
        .collect();
    let (mut state, findings) = run(&Policy::default(), &events);
    assert!(findings.is_empty());
    let late = at(12 * 60 + 5, "f1", &fra, 2);
    let found = feed(&mut state, &Policy::default(), std::slice::from_ref(&late));
    assert_eq!(found.len(), 1, "{found:#?}");
    let t = found[0].impossible_travel.as_ref().unwrap();
    let gap = t.travel_time_seconds;
    assert!(
        gap <= (Policy::default().max_stay_gap_ms / 1000) as f64,
        "judged {gap} s away"
    );
    events.push(late);
    let (_, in_order) = run(&Policy::default(), &{
        let mut sorted = events.clone();
        sorted.sort_by_key(|s| s.point.t);
        sorted
    });
    assert_eq!(hops(&in_order), hops(&found), "as if it had come in order");
}

#[test]
fn a_habit_is_one_alert_whichever_hop_arrives_first() {
    let (zrh, mgm) = (
        city("Zurich", "CH", 47.3769, 8.5417, 20),
        city("Montgomery", "US", 32.3792, -86.3077, 20),
    );
    let policy = Policy {
        baseline: Some(BaselinePolicy {
            learning_ms: 0,
            forget_after_ms: 30 * DAY_MS,
        }),
        ..Policy::default()
    };
    // The same impossible hop twice, three hours apart: beyond the dedup window.
    let events = [
        at(0, "z1", &zrh, 1),
        at(30, "m1", &mgm, 2),
        at(180, "z2", &zrh, 3),
        at(210, "m2", &mgm, 4),
    ];
    let (_, forward) = run(&policy, &events);
    let late_first: Vec<Sighting> = [&events[2], &events[3], &events[0], &events[1]]
        .into_iter()
        .cloned()
        .collect();
    let (_, reordered) = run(&policy, &late_first);
    assert_eq!(forward.len(), 1, "{forward:#?}");
    assert_eq!(hops(&reordered), hops(&forward));
}

/// A key at home in Sydney for three days, so Sydney is its baseline.
fn settled_in_sydney(policy: &Policy) -> SubjectState {
    let syd = sydney();
    let day = DAY_MS / MINUTE_MS;
    let home: Vec<Sighting> = (0..3)
        .flat_map(|d| (0..3).map(move |k| (d, k)))
        .map(|(d, k)| at(d * day + 9 * 60 + k * 5, &format!("home-{d}-{k}"), &syd, 1))
        .collect();
    run(policy, &home).0
}

#[test]
fn a_thief_before_the_owners_morning_alerts_whichever_object_comes_first() {
    let (syd, fra) = (sydney(), frankfurt());
    let policy = Policy::default();
    let day = DAY_MS / MINUTE_MS;
    // The stolen key is used from Frankfurt 40 minutes before the owner's first call.
    let thief = at(4 * day + 9 * 60 - 40, "thief", &fra, 9);
    let owner: Vec<Sighting> = (0..6)
        .map(|k| at(4 * day + 9 * 60 + k * 3, &format!("owner-{k}"), &syd, 2))
        .collect();
    let mut thief_first = settled_in_sydney(&policy);
    let mut found = feed(&mut thief_first, &policy, std::slice::from_ref(&thief));
    found.extend(feed(&mut thief_first, &policy, &owner));
    let mut owner_first = settled_in_sydney(&policy);
    let mut late = feed(&mut owner_first, &policy, &owner);
    late.extend(feed(
        &mut owner_first,
        &policy,
        std::slice::from_ref(&thief),
    ));
    for (label, findings) in [("thief first", &found), ("owner first", &late)] {
        assert_eq!(
            hops(findings),
            [("Frankfurt am Main, DE".to_owned(), "Sydney, AU".to_owned())],
            "{label}: a hop into a baseline place from an unknown one alerts"
        );
    }
}

#[test]
fn a_hop_between_two_baseline_places_stays_quiet() {
    let (syd, fra) = (sydney(), frankfurt());
    let policy = Policy::default();
    // Both places used in the learning period, a flight apart (a VPN exit in Frankfurt
    // learned as home), then switched between in minutes.
    let events = [
        at(0, "s1", &syd, 1),
        at(1200, "f1", &fra, 2),
        at(3 * 1440, "s2", &syd, 3),
        at(3 * 1440 + 20, "f2", &fra, 4),
    ];
    let (_, findings) = run(&policy, &events);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn a_key_busy_for_ten_days_at_one_place_keeps_a_small_item() {
    let syd = sydney();
    let every_3_minutes: Vec<Sighting> = (0..10 * 480)
        .map(|i| {
            at(
                i * 3,
                &format!("{i:08x}-0000-4000-8000-000000000000"),
                &syd,
                (i % 250) as u8,
            )
        })
        .collect();
    let (state, _) = run(&Policy::default(), &every_3_minutes);
    let bytes = serde_json::to_vec(&state).unwrap().len();
    assert_eq!(state.stays.len(), 1, "one place, no gaps: one stay");
    assert!(bytes < 16 * 1024, "the item is {bytes} bytes");
}

#[test]
fn a_late_object_days_back_in_a_busy_history_is_judged_as_if_on_time() {
    let (syd, fra) = (sydney(), frankfurt());
    let policy = Policy::default();
    let busy: Vec<Sighting> = (0..10 * 480)
        .map(|i| at(i * 3, &format!("s{i}"), &syd, 1))
        .collect();
    // Redriven from a dead-letter queue four days later: the Frankfurt call sat between
    // two Sydney calls of day 5.
    let late = at(5 * 1440 + 301, "f1", &fra, 2);
    let (mut state, quiet) = run(&policy, &busy);
    assert!(quiet.is_empty());
    let found = feed(&mut state, &policy, std::slice::from_ref(&late));
    let mut in_order = busy.clone();
    in_order.push(late);
    in_order.sort_by_key(|s| s.point.t);
    let (_, on_time) = run(&policy, &in_order);
    assert_eq!(hops(&found), hops(&on_time));
    assert_eq!(found.len(), 1, "{found:#?}");
    let t = found[0].impossible_travel.as_ref().unwrap();
    assert!(
        t.travel_time_seconds <= 3.0 * 60.0,
        "judged against the stay's longest gap, 3 minutes: {} s",
        t.travel_time_seconds
    );
    let first = &t.triggering_locations.first_location;
    assert!(first.inferred && first.event_id.is_empty(), "{first:#?}");
}

#[test]
fn a_state_written_by_the_previous_release_loads_and_is_upgraded() {
    // Version 1: no `v`, no clock, 15-minute stays without gaps, places without counts.
    let point = |t: i64, id: &str| {
        serde_json::json!({"t": 1_700_000_000_000i64 + t * MINUTE_MS, "id": id, "ip": "81.2.69.1",
            "name": "ListBuckets", "src": "s3.amazonaws.com", "rgn": "us-east-1"})
    };
    let stay = |a: i64, b: i64| {
        serde_json::json!({"place": sydney().place_key(), "first": point(a, &format!("e{a}")),
            "last": point(b, &format!("e{b}"))})
    };
    let v1 = serde_json::json!({
        "subject": KEY,
        "first_seen_ms": 1_700_000_000_000i64,
        "stays": [stay(0, 15), stay(18, 33), stay(36, 51)],
        "places": [{"key": sydney().place_key(), "location": &*sydney(),
            "first_seen_ms": 1_700_000_000_000i64, "last_seen_ms": 1_700_000_000_000i64 + 51 * MINUTE_MS}],
        "transitions": [],
        "alerts": []
    });
    let mut state: SubjectState = serde_json::from_value(v1).expect("a version 1 item loads");
    assert_eq!(state.v, 0);
    let policy = Policy::default();
    let findings = feed(&mut state, &policy, &[at(60, "f1", &frankfurt(), 2)]);
    assert_eq!(state.v, STATE_VERSION);
    assert_eq!(state.latest_ms, 1_700_000_000_000 + 60 * MINUTE_MS);
    assert_eq!(
        state.stays.len(),
        2,
        "the three 15-minute stays are one run now, then Frankfurt: {:#?}",
        state.stays
    );
    assert_eq!(findings.len(), 1, "judged against the upgraded history");
}

#[test]
fn stale_is_counted_back_from_the_subjects_own_clock_so_a_backfill_is_judged() {
    let (syd, fra) = (sydney(), frankfurt());
    let policy = Policy::default();
    // A backfill of year-old logs into an empty state: nothing is stale.
    let year = 365 * DAY_MS / MINUTE_MS;
    let (_, found) = run(
        &policy,
        &[at(-year, "s1", &syd, 1), at(-year + 20, "f1", &fra, 2)],
    );
    assert_eq!(found.len(), 1);
}

#[test]
fn finding_ids_are_the_first_half_of_the_parts_sha256_in_lower_case_hex() {
    let id = hash_id(&["impossible_travel", "AKIA1"]);
    let digest = Sha256::digest(b"impossible_travel\0AKIA1\0");
    let expected: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(id, expected);
}
