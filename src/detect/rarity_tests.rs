//! Table-driven scenarios for the account-level rules: learning, threshold, grouping,
//! dedup and replay, Panther's condition, and arrival order.

use std::sync::Arc;

use super::*;
use crate::detect::policy::{RulePolicy, RuleSet, DAY_MS, HOUR_MS, MINUTE_MS};
use crate::detect::tally::{Tally, TallyKey};
use crate::finding::{Rule, Severity};
use crate::geo::{GeoDbInfo, Location, PlaceKey};

const ACCOUNT: &str = "123456789012";
const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
/// 2025-03-10T00:00:00Z.
const T0: i64 = 1_741_564_800_000;

fn city(name: &str, country: &str) -> Arc<Location> {
    Arc::new(Location {
        city: Some(name.to_owned()),
        country: Some(country.to_owned()),
        country_code: Some(country[..2].to_uppercase()),
        latitude: 1.0,
        longitude: 2.0,
        ..Location::default()
    })
}

/// One synthetic event.
#[derive(Clone)]
struct Ev {
    t: i64,
    name: &'static str,
    place: Arc<Location>,
    ip: &'static str,
    key: &'static str,
    error: Option<&'static str>,
}

fn ev(t: i64, name: &'static str, place: &Arc<Location>) -> Ev {
    Ev {
        t,
        name,
        place: place.clone(),
        ip: "203.0.113.7",
        key: KEY,
        error: None,
    }
}

fn batch_of(events: &[Ev], policy: &RulePolicy) -> RuleBatch {
    // As the reading threads build them: in the maps the thread's last sealed batch left,
    // so that every test after the first on a thread (and each generated object after the
    // first) also checks that nothing of a sealed batch carries over.
    let mut batch = RuleBatch::recycled();
    for (i, e) in events.iter().enumerate() {
        let id = format!("event-{}-{i}", e.t);
        let located = (e.place.clone(), PlaceKey::from(e.place.place_key()));
        let re = RuleEvent {
            t: e.t,
            id: &id,
            name: e.name,
            source: "iam.amazonaws.com",
            region: "us-east-1",
            source_ip: e.ip,
            ip: e.ip.parse().ok(),
            account: ACCOUNT,
            principal: ALICE,
            access_key_id: Some(e.key),
            location: Some(&located),
            error_code: e.error,
            error_message: e.error.map(|_| "denied"),
            user_agent: None,
        };
        batch.add(&re, policy, || {
            Arc::new(
                (&crate::finding::UserIdentitySummary {
                    arn: Some(ALICE.to_owned()),
                    access_key_id: Some(e.key.to_owned()),
                    ..Default::default()
                })
                    .into(),
            )
        });
    }
    batch
}

/// A store of tallies in a map, judging objects one after the other.
#[derive(Default)]
struct Run {
    tallies: TallyMap<Tally>,
    /// Judge batches as the reading threads hand them over, sealed; else as added.
    unsealed: bool,
}

impl Run {
    fn object(&mut self, name: &str, events: &[Ev], policy: &RulePolicy) -> Vec<Finding> {
        let mut batch = batch_of(events, policy);
        if !self.unsealed {
            batch.seal();
        }
        judge(
            &batch,
            &mut self.tallies,
            policy,
            &GeoDbInfo::default(),
            name,
        )
        .findings
    }
}

fn only(rule: Rule) -> RulePolicy {
    RulePolicy {
        enabled: RuleSet::none().with(rule),
        ..RulePolicy::default()
    }
}

#[test]
fn nothing_rare_fires_during_the_learning_period_and_it_counts_from_the_first_event() {
    let policy = only(Rule::UnusualCityForCommand);
    let (sydney, lagos) = (city("Sydney", "Australia"), city("Lagos", "Nigeria"));
    let cases = [
        // (hours after the account's first event, fires)
        (1, false),
        (47, false),
        (49, true),
    ];
    for (hours, fires) in cases {
        let mut run = Run::default();
        run.object("home", &[ev(T0, "ListUsers", &sydney)], &policy);
        let found = run.object(
            "away",
            &[ev(T0 + hours * HOUR_MS, "CreateUser", &lagos)],
            &policy,
        );
        assert_eq!(!found.is_empty(), fires, "{hours} h after the first event");
    }
}

#[test]
fn a_call_is_rare_below_min_seen_sightings_from_that_city_within_the_lookback() {
    let (sydney, lagos) = (city("Sydney", "Australia"), city("Lagos", "Nigeria"));
    let start = T0 + 3 * DAY_MS;
    // (min_seen, prior sightings from Lagos and how many days before, fires)
    let cases = [
        (1, vec![], true),
        (1, vec![2], false),
        (2, vec![2], true),
        (2, vec![2, 3], false),
        (1, vec![31], true),
        (1, vec![30], false),
    ];
    for (min_seen, prior_days, fires) in cases {
        let policy = RulePolicy {
            min_seen,
            learning_ms: 0,
            ..only(Rule::UnusualCityForCommand)
        };
        let mut run = Run::default();
        run.object(
            "home",
            &[ev(T0 - 40 * DAY_MS, "ListUsers", &sydney)],
            &policy,
        );
        for (i, d) in prior_days.iter().enumerate() {
            run.object(
                &format!("prior-{i}"),
                &[ev(start - d * DAY_MS, "CreateUser", &lagos)],
                &policy,
            );
        }
        let found = run.object("now", &[ev(start, "CreateUser", &lagos)], &policy);
        assert_eq!(
            !found.is_empty(),
            fires,
            "min_seen {min_seen}, prior {prior_days:?}"
        );
    }
}

#[test]
fn a_burst_of_unusual_calls_from_one_city_within_the_window_is_one_finding_with_evidence() {
    let policy = RulePolicy {
        learning_ms: 0,
        ..only(Rule::UnusualCityForCommand)
    };
    let (sydney, lagos) = (city("Sydney", "Australia"), city("Lagos", "Nigeria"));
    let mut run = Run::default();
    let home: Vec<Ev> = (0..3)
        .map(|i| ev(T0 + i * MINUTE_MS, "CreateUser", &sydney))
        .collect();
    run.object("home", &home, &policy);
    let names = [
        "CreateUser",
        "AttachUserPolicy",
        "CreateAccessKey",
        "ListBuckets",
    ];
    let burst: Vec<Ev> = names
        .iter()
        .enumerate()
        .map(|(i, n)| ev(T0 + DAY_MS + i as i64 * 10 * MINUTE_MS, n, &lagos))
        .chain([ev(T0 + DAY_MS + 5 * MINUTE_MS, "CreateUser", &lagos)])
        .collect();
    let found = run.object("burst", &burst, &policy);
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(
        (f.rule, f.severity),
        (Rule::UnusualCityForCommand, Severity::Low)
    );
    assert_eq!(f.subject, ALICE);
    let block = f.unusual_city_for_command.as_ref().unwrap();
    assert_eq!(block.place.name, "Lagos, Nigeria");
    assert_eq!(block.commands.len(), 4, "one evidence entry per call");
    let create = block
        .commands
        .iter()
        .find(|c| c.event_name == "CreateUser")
        .unwrap();
    assert_eq!(create.calls_from_city, 2);
    assert_eq!(create.usual_places[0].place, "Sydney, Australia");
    assert_eq!(create.usual_places[0].count, 3);
    assert!(f
        .summary
        .contains("usually called from Sydney, Australia (3)"));
    assert!(!f.references.is_empty());

    // The next window is a new finding; the same window again is not.
    let later = run.object(
        "later",
        &[ev(T0 + DAY_MS + 5 * MINUTE_MS + 1, "DeleteUser", &lagos)],
        &policy,
    );
    assert!(
        later.is_empty(),
        "same principal, city and window: {later:#?}"
    );
    let next = run.object(
        "next",
        &[ev(T0 + DAY_MS + 2 * HOUR_MS, "DeleteBucket", &lagos)],
        &policy,
    );
    assert_eq!(next.len(), 1);
}

#[test]
fn a_replayed_object_raises_nothing_and_counts_nothing_twice() {
    let policy = RulePolicy {
        learning_ms: 0,
        ..RulePolicy::default()
    };
    let (sydney, lagos) = (city("Sydney", "Australia"), city("Lagos", "Nigeria"));
    let mut run = Run::default();
    run.object("home", &[ev(T0, "ListUsers", &sydney)], &policy);
    let mut bad = ev(T0 + DAY_MS, "CreateUser", &lagos);
    bad.error = Some("AccessDenied");
    let events = [ev(T0 + DAY_MS, "CreateUser", &lagos), bad];
    let first = run.object("obj", &events, &policy);
    assert!(!first.is_empty());
    let after_first = run.tallies.clone();
    let replay = run.object("obj", &events, &policy);
    assert!(replay.is_empty(), "{replay:#?}");
    assert_eq!(run.tallies, after_first, "a replay changes no tally");
}

#[test]
fn an_error_code_is_rare_until_the_account_has_seen_it_and_says_since_when() {
    let policy = RulePolicy {
        learning_ms: 0,
        ..only(Rule::UnusualErrorCode)
    };
    let sydney = city("Sydney", "Australia");
    let denied = |t| Ev {
        error: Some("AccessDenied"),
        ..ev(t, "ListUsers", &sydney)
    };
    let mut run = Run::default();
    let first = run.object("a", &[denied(T0), denied(T0 + MINUTE_MS)], &policy);
    assert_eq!(first.len(), 1, "two calls, one finding");
    let block = first[0].unusual_error_code.as_ref().unwrap();
    assert_eq!(
        (block.error_code.as_str(), block.calls.len()),
        ("AccessDenied", 1)
    );
    assert_eq!(block.first_seen, None);
    assert!(run.object("b", &[denied(T0 + DAY_MS)], &policy).is_empty());

    let policy2 = RulePolicy {
        min_seen: 3,
        ..policy
    };
    let mut run = Run::default();
    run.object("a", &[denied(T0)], &policy2);
    let again = run.object("b", &[denied(T0 + DAY_MS)], &policy2);
    let block = again[0].unusual_error_code.as_ref().unwrap();
    assert_eq!(block.seen_before, 1);
    assert_eq!(block.first_seen.as_deref(), Some("2025-03-10T00:00:00Z"));
}

#[test]
fn long_term_key_auth_is_panthers_condition_with_the_new_address_on_top() {
    let policy = RulePolicy {
        learning_ms: 0,
        ..only(Rule::LongTermAccessKeyAuth)
    };
    let sydney = city("Sydney", "Australia");
    // (key, error, fires) — Panther's own test cases have the same shape.
    let cases = [
        ("AKIAIOSFODNN7EXAMPLE", None, true),
        ("AKIAIOSFODNN7EXAMPLE", Some("AccessDenied"), false),
        ("ASIAIOSFODNN7EXAMPLE", None, false),
    ];
    for (key, error, fires) in cases {
        let mut run = Run::default();
        let e = Ev {
            key,
            error,
            ..ev(T0, "GetCallerIdentity", &sydney)
        };
        assert_eq!(
            !run.object("o", &[e], &policy).is_empty(),
            fires,
            "{key} {error:?}"
        );
    }

    let mut run = Run::default();
    let at = |t, ip| Ev {
        ip,
        ..ev(t, "GetCallerIdentity", &sydney)
    };
    let first = run.object(
        "1",
        &[at(T0, "198.51.100.1"), at(T0 + MINUTE_MS, "198.51.100.1")],
        &policy,
    );
    assert_eq!(first.len(), 1, "one per key, address and hour");
    assert_eq!(first[0].severity, Severity::Low, "new address");
    let block = first[0].long_term_access_key_auth.as_ref().unwrap();
    assert!(block.new_address);
    assert_eq!(block.calls_in_window, 2);
    assert!(run
        .object("2", &[at(T0 + 30 * MINUTE_MS, "198.51.100.1")], &policy)
        .is_empty());
    let known = run.object("3", &[at(T0 + 2 * HOUR_MS, "198.51.100.1")], &policy);
    assert_eq!(known[0].severity, Severity::Info, "known address");
    let other = run.object("4", &[at(T0 + 3 * HOUR_MS, "192.0.2.9")], &policy);
    assert_eq!(other[0].severity, Severity::Low);
    let block = other[0].long_term_access_key_auth.as_ref().unwrap();
    assert_eq!(block.known_addresses, vec!["198.51.100.1".to_owned()]);
    let back = run.object("5", &[at(T0 + 12 * DAY_MS, "192.0.2.9")], &policy);
    assert_eq!(
        back[0].severity,
        Severity::Low,
        "unused for over 10 days: new again"
    );
}

/// Tallies without what records arrival (object tags, alert marks, the hourly clock).
fn counts(run: &Run) -> Vec<(TallyKey, Tally)> {
    let mut out: Vec<(TallyKey, Tally)> = run
        .tallies
        .iter()
        .map(|(k, t)| {
            let mut t = t.clone();
            if let Some(applied) = t.applied_mut() {
                applied.clear();
            }
            match &mut t {
                Tally::Account(a) => {
                    a.alerts.clear();
                    a.latest_ms = 0;
                }
                Tally::KeyAddresses(k) => k.alerts.clear(),
                _ => {}
            }
            (k.clone(), t)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn any_object_order_ends_in_the_same_counts_and_only_adds_first_sightings() {
    let policy = RulePolicy {
        learning_ms: 0,
        ..RulePolicy::default()
    };
    let (sydney, lagos, lima) = (
        city("Sydney", "Australia"),
        city("Lagos", "Nigeria"),
        city("Lima", "Peru"),
    );
    let objects: Vec<(String, Vec<Ev>)> = vec![
        (
            "d0".into(),
            vec![
                ev(T0, "ListUsers", &sydney),
                ev(T0 + HOUR_MS, "CreateUser", &sydney),
            ],
        ),
        ("d1".into(), vec![ev(T0 + DAY_MS, "CreateUser", &lagos)]),
        (
            "d1b".into(),
            vec![
                ev(T0 + DAY_MS + 3 * HOUR_MS, "CreateUser", &lagos),
                Ev {
                    error: Some("AccessDenied"),
                    ..ev(T0 + DAY_MS, "GetUser", &lagos)
                },
            ],
        ),
        (
            "d2".into(),
            vec![
                ev(T0 + 2 * DAY_MS, "ListUsers", &lima),
                ev(T0 + 2 * DAY_MS, "CreateUser", &lagos),
            ],
        ),
        (
            "d3".into(),
            vec![Ev {
                ip: "192.0.2.1",
                ..ev(T0 + 3 * DAY_MS, "ListUsers", &sydney)
            }],
        ),
    ];
    let in_order = {
        let mut run = Run::default();
        let mut ids: Vec<String> = Vec::new();
        for (name, events) in &objects {
            ids.extend(
                run.object(name, events, &policy)
                    .into_iter()
                    .map(|f| f.finding_id),
            );
        }
        (counts(&run), ids)
    };
    // Every permutation of the five objects.
    let mut order: Vec<usize> = (0..objects.len()).collect();
    let mut permutations = 0;
    loop {
        let mut run = Run::default();
        let mut ids: Vec<String> = Vec::new();
        for &i in &order {
            let (name, events) = &objects[i];
            ids.extend(
                run.object(name, events, &policy)
                    .into_iter()
                    .map(|f| f.finding_id),
            );
        }
        assert_eq!(counts(&run), in_order.0, "order {order:?}");
        for id in &in_order.1 {
            assert!(ids.contains(id), "order {order:?} lost finding {id}");
        }
        permutations += 1;
        if !next_permutation(&mut order) {
            break;
        }
    }
    assert_eq!(permutations, 120);
}

fn next_permutation(v: &mut [usize]) -> bool {
    let Some(i) = (1..v.len()).rev().find(|&i| v[i - 1] < v[i]) else {
        return false;
    };
    let j = (i..v.len()).rev().find(|&j| v[j] > v[i - 1]).unwrap();
    v.swap(i - 1, j);
    v[i..].reverse();
    true
}

#[test]
fn tallies_stay_bounded_by_the_lookback_and_their_caps() {
    let policy = RulePolicy {
        learning_ms: 0,
        ..only(Rule::UnusualCityForCommand)
    };
    let mut run = Run::default();
    for day in 0..120 {
        let place = city(&format!("City{}", day % 300), "Testland");
        run.object(
            &format!("o{day}"),
            &[ev(T0 + day * DAY_MS, "ListUsers", &place)],
            &policy,
        );
    }
    let key = TallyKey::command(ACCOUNT, "iam.amazonaws.com", "ListUsers");
    let Tally::Command(c) = &run.tallies[&key] else {
        panic!("a command tally")
    };
    assert!(c.places.len() <= 31, "{} places kept", c.places.len());
    assert!(c.to_owned().places.iter().all(|p| p.seen.days.len() == 1));
    assert!(Tally::Command(c.clone()).to_json().len() < 16 * 1024);
}

#[test]
fn an_event_older_than_the_lookback_is_not_kept_even_when_the_latest_day_stays() {
    let policy = RulePolicy {
        learning_ms: 0,
        ..only(Rule::UnusualCityForCommand)
    };
    let lookback = policy.lookback_days;
    let (sydney, lagos) = (city("Sydney", "Australia"), city("Lagos", "Nigeria"));
    let today = T0 + 60 * DAY_MS;
    let mut run = Run::default();
    run.object("o1", &[ev(today, "ListUsers", &sydney)], &policy);
    // Later on the same day, with events from before the lookback: at a city the tally
    // holds and at one it does not.
    let stale = today - (lookback + 5) * DAY_MS;
    run.object(
        "o2",
        &[
            ev(today + MINUTE_MS, "ListUsers", &sydney),
            ev(stale, "ListUsers", &sydney),
            ev(stale, "ListUsers", &lagos),
        ],
        &policy,
    );
    let key = TallyKey::command(ACCOUNT, "iam.amazonaws.com", "ListUsers");
    let Tally::Command(c) = &run.tallies[&key] else {
        panic!("a command tally")
    };
    let oldest = day_of(today) - lookback;
    assert_eq!(c.places.len(), 1, "{:?}", c.places);
    assert!(c.places[0].seen.days.iter().all(|d| d.day >= oldest));
}

#[test]
fn a_recycled_batch_starts_empty_and_judges_as_a_new_one() {
    let policy = RulePolicy {
        report_min: Severity::Info,
        ..RulePolicy::default()
    };
    let (sydney, lagos) = (city("Sydney", "Australia"), city("Lagos", "Nigeria"));
    // Leaves its maps, emptied, to this thread's next batch; the same principal with
    // another key, so that a summary kept from it would show in the later findings.
    let other_key = Ev {
        key: "AKIAOTHERKEYEXAMPLE0",
        ..ev(T0, "ListUsers", &lagos)
    };
    let mut first = batch_of(&[other_key], &policy);
    first.seal();
    let later = vec![
        ev(T0 + 20 * DAY_MS, "ListUsers", &sydney),
        ev(T0 + 20 * DAY_MS + MINUTE_MS, "CreateUser", &lagos),
    ];
    let judged = |events: Vec<Ev>, policy: RulePolicy| {
        let mut batch = batch_of(&events, &policy);
        batch.seal();
        let mut tallies = TallyMap::default();
        let judged = judge(&batch, &mut tallies, &policy, &GeoDbInfo::default(), "o");
        (judged.findings, judged.changed, tallies)
    };
    let recycled = judged(later.clone(), policy.clone());
    // A thread of its own has no spare maps: the same events go into new ones.
    let fresh = std::thread::spawn(move || judged(later, policy))
        .join()
        .expect("the other thread judges");
    assert!(
        !recycled.0.is_empty(),
        "Panther's rule raises informational findings"
    );
    assert_eq!(recycled.0, fresh.0);
    assert_eq!(recycled.1, fresh.1);
    assert_eq!(recycled.2, fresh.2);
}

#[test]
fn findings_below_report_min_are_counted_and_remembered_but_not_built() {
    let quiet = RulePolicy {
        report_min: Severity::Low,
        ..only(Rule::LongTermAccessKeyAuth)
    };
    let sydney = city("Sydney", "Australia");
    let batch = batch_of(&[ev(T0, "GetCallerIdentity", &sydney)], &quiet);
    let mut tallies = TallyMap::default();
    let judged = judge(&batch, &mut tallies, &quiet, &GeoDbInfo::default(), "o");
    assert!(judged.findings.is_empty());
    assert_eq!(judged.unreported, 1, "an informational use during learning");
    assert!(judged.changed.contains(&TallyKey::key_addresses(KEY)));
    let loud = RulePolicy {
        report_min: Severity::Info,
        ..quiet
    };
    let again = judge(&batch, &mut tallies, &loud, &GeoDbInfo::default(), "o");
    assert!(
        again.findings.is_empty() && again.unreported == 0,
        "already raised"
    );
}

/// Generated trails: an account's calls from three cities, some failing, from three
/// addresses, over five days, cut into objects in event-time order and delivered in that
/// order, reversed and shuffled. Every order must end in the same counts and report at
/// least what delivery in event-time order reports. (With a learning period, a late object that moves an account's first
/// event back is the documented exception, so the learning period is 0 here.)
/// `GEOTRAIL_PROPTEST_CASES` runs it longer.
mod generated {
    use proptest::prelude::*;

    use super::*;

    const NAMES: [&str; 4] = ["ListUsers", "CreateUser", "GetObject", "RunInstances"];
    const ADDRESSES: [&str; 3] = ["198.51.100.1", "198.51.100.2", "192.0.2.3"];
    const ERRORS: [&str; 2] = ["AccessDenied", "ThrottlingException"];

    fn deliver(
        objects: &[(String, Vec<Ev>)],
        order: &[usize],
        unsealed: bool,
    ) -> (Vec<(TallyKey, Tally)>, Vec<String>) {
        let policy = RulePolicy {
            learning_ms: 0,
            ..RulePolicy::default()
        };
        let mut run = Run {
            unsealed,
            ..Run::default()
        };
        let mut ids = Vec::new();
        for &i in order {
            let (name, events) = &objects[i];
            ids.extend(
                run.object(name, events, &policy)
                    .into_iter()
                    .map(|f| f.finding_id),
            );
        }
        (counts(&run), ids)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::proptest_cases(64), ..ProptestConfig::default() })]
        #[test]
        fn any_order_of_generated_objects_ends_in_the_same_counts_and_loses_no_finding(
            events in prop::collection::vec(
                (0usize..3, 0usize..NAMES.len(), 0i64..5 * 24 * 60, 0usize..6, 0usize..ADDRESSES.len()),
                1..60,
            ),
            cuts in prop::collection::vec(0usize..60, 0..8),
            seed in any::<u64>(),
        ) {
            let places = [
                city("Sydney", "Australia"),
                city("Lagos", "Nigeria"),
                city("Lima", "Peru"),
            ];
            // Cut in event-time order, as CloudTrail writes objects: delivering them in
            // index order is then delivering the trail as it happened.
            let mut evs: Vec<Ev> = events
                .iter()
                .map(|&(place, name, minute, error, ip)| Ev {
                    error: ERRORS.get(error).copied(),
                    ip: ADDRESSES[ip],
                    ..ev(T0 + minute * MINUTE_MS, NAMES[name], &places[place])
                })
                .collect();
            evs.sort_by_key(|e| e.t);
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c < evs.len()).collect();
            cuts.push(evs.len());
            cuts.sort_unstable();
            cuts.dedup();
            let mut objects = Vec::new();
            let mut start = 0;
            for end in cuts {
                if end > start {
                    objects.push((format!("object-{start}"), evs[start..end].to_vec()));
                    start = end;
                }
            }
            let n = objects.len();
            let in_order: Vec<usize> = (0..n).collect();
            let reversed: Vec<usize> = (0..n).rev().collect();
            let mut shuffled = in_order.clone();
            let mut state = seed | 1;
            for i in (1..n).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let (want_counts, want_ids) = deliver(&objects, &in_order, false);
            // Sealing moves work between threads and changes nothing judged.
            let unsealed = deliver(&objects, &in_order, true);
            prop_assert_eq!(&unsealed.0, &want_counts);
            prop_assert_eq!(&unsealed.1, &want_ids);
            for order in [reversed, shuffled] {
                let (got_counts, got_ids) = deliver(&objects, &order, false);
                prop_assert_eq!(&got_counts, &want_counts, "order {:?}", order);
                for id in &want_ids {
                    prop_assert!(got_ids.contains(id), "order {:?} lost {}", order, id);
                }
            }
        }
    }
}

#[test]
fn the_account_item_is_written_when_its_clock_moves_by_the_hour_not_for_every_object() {
    // Every object of an account reads its item; writing it for each would make side by
    // side Lambdas contend on it.
    let policy = only(Rule::UnusualCityForCommand);
    let sydney = city("Sydney", "Australia");
    let mut tallies = TallyMap::default();
    let account = TallyKey::account(ACCOUNT);
    let command = TallyKey::command(ACCOUNT, "iam.amazonaws.com", "ListUsers");
    let mut judge_at = |t: i64, object: &str| {
        let batch = batch_of(&[ev(t, "ListUsers", &sydney)], &policy);
        judge(&batch, &mut tallies, &policy, &GeoDbInfo::default(), object).changed
    };
    let first = judge_at(T0, "o1");
    assert!(first.contains(&account) && first.contains(&command));
    let within_the_hour = judge_at(T0 + 30 * MINUTE_MS, "o2");
    assert!(within_the_hour.contains(&command), "a new object counts");
    assert!(!within_the_hour.contains(&account), "{within_the_hour:?}");
    let replayed = judge_at(T0 + 30 * MINUTE_MS, "o2");
    assert!(
        replayed.is_empty(),
        "a replay changes nothing: {replayed:?}"
    );
    let later = judge_at(T0 + 2 * HOUR_MS, "o3");
    assert!(later.contains(&account), "the clock moved past the hour");
}

/// Adds an IAM call from Sydney made in `account`, which a forged record can make any
/// text.
fn add_in_account(
    batch: &mut RuleBatch,
    account: &str,
    t: i64,
    name: &str,
    error_code: Option<&str>,
    policy: &RulePolicy,
) {
    let sydney = city("Sydney", "Australia");
    let located = (sydney.clone(), PlaceKey::from(sydney.place_key()));
    let id = format!("event-{t}-{name}");
    let event = RuleEvent {
        t,
        id: &id,
        name,
        source: "iam.amazonaws.com",
        region: "us-east-1",
        source_ip: "203.0.113.7",
        ip: "203.0.113.7".parse().ok(),
        account,
        principal: ALICE,
        access_key_id: Some(KEY),
        location: Some(&located),
        error_code,
        error_message: None,
        user_agent: None,
    };
    batch.add(&event, policy, Default::default);
}

#[test]
fn tally_keys_are_the_distinct_keys_sorted_even_when_forged_parts_are_cut_to_meet() {
    let policy = RulePolicy::default();
    let long = "9".repeat(300);
    let accounts = [format!("{long}b"), ACCOUNT.to_owned(), format!("{long}a")];
    let mut batch = RuleBatch::default();
    let mut naive = Vec::new();
    for (i, account) in accounts.iter().enumerate() {
        for (name, code) in [("ListUsers", Some("AccessDenied")), ("GetUser", None)] {
            add_in_account(&mut batch, account, T0 + i as i64, name, code, &policy);
            naive.push(TallyKey::account(account));
            naive.push(TallyKey::command(account, "iam.amazonaws.com", name));
            if let Some(code) = code {
                naive.push(TallyKey::error(account, code));
            }
        }
    }
    naive.push(TallyKey::key_addresses(KEY));
    naive.sort();
    naive.dedup();
    assert_eq!(batch.tally_keys(), naive);
    batch.seal();
    assert_eq!(batch.tally_keys(), naive, "sealed, the same keys");
    assert_eq!(
        naive
            .iter()
            .filter(|k| matches!(k, TallyKey::Account(_)))
            .count(),
        2,
        "the two long accounts are one item once cut"
    );
}

#[test]
fn events_whose_forged_parts_are_cut_to_one_tally_all_count_in_it() {
    let policy = only(Rule::UnusualCityForCommand);
    let long = "9".repeat(300);
    let accounts = [format!("{long}a"), format!("{long}b")];
    let mut batch = RuleBatch::default();
    for (i, account) in accounts.iter().enumerate() {
        add_in_account(
            &mut batch,
            account,
            T0 + i as i64,
            "ListUsers",
            None,
            &policy,
        );
    }
    let mut tallies = TallyMap::default();
    let key = TallyKey::command(&accounts[0], "iam.amazonaws.com", "ListUsers");
    assert_eq!(
        key,
        TallyKey::command(&accounts[1], "iam.amazonaws.com", "ListUsers")
    );
    let count = |tallies: &TallyMap<Tally>| match &tallies[&key] {
        Tally::Command(c) => c
            .places
            .iter()
            .flat_map(|p| &p.seen.days)
            .map(|d| d.count)
            .sum::<u64>(),
        other => panic!("{other:?}"),
    };
    let judged = judge(&batch, &mut tallies, &policy, &GeoDbInfo::default(), "o");
    assert!(judged.changed.contains(&key));
    assert_eq!(count(&tallies), 2, "both runs of the shared tally count");
    judge(&batch, &mut tallies, &policy, &GeoDbInfo::default(), "o");
    assert_eq!(count(&tallies), 2, "and a replay counts neither");
    let mut sealed_tallies = TallyMap::default();
    batch.seal();
    judge(
        &batch,
        &mut sealed_tallies,
        &policy,
        &GeoDbInfo::default(),
        "o",
    );
    assert_eq!(count(&sealed_tallies), 2, "sealed, the runs still meet");
}

fn bare_call(t: i64, id: &str) -> Arc<Call> {
    let text = |s: &str| -> Arc<str> { s.into() };
    Arc::new(Call {
        t,
        id: id.into(),
        name: text("GetObject"),
        source: text("s3.amazonaws.com"),
        region: text("us-east-1"),
        source_ip: text("198.51.100.7"),
        account: text(ACCOUNT),
        principal: text(ALICE),
        identity: Arc::new(CompactIdentity::default()),
        location: None,
        error_code: None,
        error_message: None,
        user_agent: None,
    })
}

/// A group keeps the earliest `keep` calls by (time, id), whatever order they come in.
#[test]
fn a_group_keeps_the_earliest_calls_in_any_order() {
    let calls: Vec<Arc<Call>> = [(5, "e"), (1, "b"), (3, "c"), (1, "a"), (9, "f"), (3, "d")]
        .iter()
        .map(|&(t, id)| bare_call(t, id))
        .collect();
    let mut expected: Vec<(i64, &str)> = calls.iter().map(|c| (c.t, &*c.id)).collect();
    expected.sort();
    let mut order: Vec<usize> = (0..calls.len()).collect();
    // Every rotation, forwards and backwards, of the arrival order.
    for turn in 0..calls.len() * 2 {
        if turn == calls.len() {
            order.reverse();
        }
        order.rotate_left(1);
        for keep in 1..=4 {
            let mut group = Group::default();
            for (n, &i) in order.iter().enumerate() {
                assert_eq!(
                    group.keeps(calls[i].t, keep),
                    n < keep
                        || calls[i].t < group.calls().last().expect("kept as many as allowed").t,
                );
                group.add(Some(&calls[i]), keep);
            }
            group.add(None, keep);
            let kept: Vec<(i64, &str)> = group.calls().map(|k| (k.t, &*k.call.id)).collect();
            assert_eq!(kept, expected[..keep], "order {order:?}, keep {keep}");
            assert!(group
                .calls()
                .all(|k| k.t == k.call.t && *k.account == *ACCOUNT));
            assert_eq!(group.count, calls.len() as u64 + 1);
        }
    }
}
