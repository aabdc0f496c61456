//! The account-level rules end to end: real objects, the fixture `.mmdb`, the pipeline
//! and the state stores, including Panther's own test cases of UserAccessKeyAuth.

use geotrail::detect::tally::{Tally, TallyKey};
use geotrail::detect::{Policy, RulePolicy, RuleSet};
use geotrail::finding::{Finding, Rule, Severity};
use geotrail::state::{FileStateStore, MemoryStateStore, StateStore};
use serde_json::Value;

use super::{named, run_with, FRANKFURT, KEY, LONDON};
use crate::common::mmdb::fixture_geo_db;
use crate::common::trail::{gzip, object, record};

fn policy(rules: RuleSet) -> Policy {
    Policy {
        rules: RulePolicy {
            enabled: rules,
            ..RulePolicy::default()
        },
        ..Policy::default()
    }
}

fn one(rule: Rule) -> Policy {
    policy(RuleSet::none().with(rule))
}

fn of(findings: &[Finding], rule: Rule) -> Vec<&Finding> {
    findings.iter().filter(|f| f.rule == rule).collect()
}

#[test]
fn panthers_user_access_key_auth_cases_give_panthers_expected_results() {
    let cases: Value =
        serde_json::from_str(include_str!("../fixtures/rules/user_access_key_auth.json")).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (_, findings) = run_with(
            &fixture_geo_db(),
            &MemoryStateStore::new(),
            &one(Rule::LongTermAccessKeyAuth),
            &[named("case.json", object(&[case["record"].clone()]))],
        );
        assert_eq!(
            !findings.is_empty(),
            case["expected"].as_bool().unwrap(),
            "{name}: {findings:#?}"
        );
        for f in &findings {
            // Informational, as Panther's: the account is still learning, so the address
            // is not called new.
            assert_eq!(f.severity, Severity::Info, "{name}");
            let block = f.long_term_access_key_auth.as_ref().unwrap();
            assert_eq!(block.access_key_id, "AKIAEXAMPLEEXPOSED01");
            assert_eq!(block.source_ip_address, "81.2.69.142");
            assert_eq!(block.calls[0].event_id, "case-2-success");
            assert_eq!(block.place.as_deref(), Some("London, United Kingdom"));
            assert!(f.references.iter().any(|r| r.contains("UserAccessKeyAuth")));
        }
    }
    // All four in one object: only the successful call of the long-term key.
    let records: Vec<Value> = cases.iter().map(|c| c["record"].clone()).collect();
    let (_, findings) = run_with(
        &fixture_geo_db(),
        &MemoryStateStore::new(),
        &one(Rule::LongTermAccessKeyAuth),
        &[named("all.json.gz", gzip(&object(&records)))],
    );
    assert_eq!(findings.len(), 1);
}

/// Two days of London, then the key in Frankfurt with new calls and a new error.
fn story() -> Vec<(String, Vec<u8>)> {
    let mut objects = Vec::new();
    for day in 10..13 {
        let records: Vec<Value> = (0..4)
            .map(|h| {
                let mut r = record(
                    &format!("home-{day}-{h}"),
                    &format!("2025-03-{day}T{:02}:00:00Z", 9 + h),
                    KEY,
                    "alice",
                    LONDON,
                    "ListUsers",
                );
                if h == 3 {
                    r["errorCode"] = "NoSuchEntity".into();
                    r["errorMessage"] = "The user cannot be found.".into();
                }
                r
            })
            .collect();
        objects.push(named(&format!("day-{day}.json"), object(&records)));
    }
    let mut away = vec![
        record(
            "away-1",
            "2025-03-13T02:00:00Z",
            KEY,
            "alice",
            FRANKFURT,
            "CreateUser",
        ),
        record(
            "away-2",
            "2025-03-13T02:05:00Z",
            KEY,
            "alice",
            FRANKFURT,
            "CreateAccessKey",
        ),
        record(
            "away-3",
            "2025-03-13T02:09:00Z",
            KEY,
            "alice",
            FRANKFURT,
            "ListUsers",
        ),
        record(
            "away-4",
            "2025-03-13T02:10:00Z",
            KEY,
            "alice",
            FRANKFURT,
            "DeleteTrail",
        ),
    ];
    away[3]["errorCode"] = "AccessDenied".into();
    away[3]["errorMessage"] = "User is not authorized to perform: cloudtrail:DeleteTrail".into();
    objects.push(named("away.json.gz", gzip(&object(&away))));
    objects
}

#[test]
fn a_thief_in_a_new_city_is_one_finding_per_rule_and_a_replay_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let all = policy(RuleSet::all());
    let objects = story();
    let findings = {
        let store = FileStateStore::open(&path).unwrap();
        run_with(&fixture_geo_db(), &store, &all, &objects).1
    };
    let city = of(&findings, Rule::UnusualCityForCommand);
    assert_eq!(city.len(), 1, "{findings:#?}");
    let block = city[0].unusual_city_for_command.as_ref().unwrap();
    assert_eq!(block.place.name, "Frankfurt am Main, Germany");
    let names: Vec<&str> = block
        .commands
        .iter()
        .map(|c| c.event_name.as_str())
        .collect();
    assert_eq!(
        names,
        ["CreateAccessKey", "CreateUser", "DeleteTrail", "ListUsers"]
    );
    let list = block
        .commands
        .iter()
        .find(|c| c.event_name == "ListUsers")
        .unwrap();
    assert_eq!(list.usual_places[0].place, "London, United Kingdom");
    assert_eq!(list.usual_places[0].count, 12, "four a day for three days");
    assert_eq!(city[0].account_id.as_deref(), Some("123456789012"));

    let errors = of(&findings, Rule::UnusualErrorCode);
    assert_eq!(
        errors.len(),
        1,
        "NoSuchEntity recurs daily; AccessDenied is new"
    );
    let block = errors[0].unusual_error_code.as_ref().unwrap();
    assert_eq!(block.error_code, "AccessDenied");
    assert_eq!(block.calls[0].event_name, "DeleteTrail");

    let keys = of(&findings, Rule::LongTermAccessKeyAuth);
    let new: Vec<_> = keys
        .iter()
        .filter(|f| f.severity == Severity::Low)
        .collect();
    assert_eq!(
        new.len(),
        1,
        "only Frankfurt is a new address after learning"
    );
    assert_eq!(
        new[0]
            .long_term_access_key_auth
            .as_ref()
            .unwrap()
            .source_ip_address,
        FRANKFURT
    );
    assert_eq!(
        of(&findings, Rule::ImpossibleTravel).len(),
        0,
        "London to Frankfurt overnight is possible"
    );

    // The tallies were saved: the same objects again raise nothing.
    let store = FileStateStore::open(&path).unwrap();
    let (_, again) = run_with(&fixture_geo_db(), &store, &all, &objects);
    assert!(again.is_empty(), "{again:#?}");
}

#[test]
fn the_rules_can_be_chosen_and_a_store_holds_their_tallies_apart_from_subjects() {
    let store = MemoryStateStore::new();
    let (_, findings) = run_with(
        &fixture_geo_db(),
        &store,
        &one(Rule::UnusualErrorCode),
        &story(),
    );
    assert!(findings.iter().all(|f| f.rule == Rule::UnusualErrorCode));
    assert_eq!(findings.len(), 1);
    assert!(store.is_empty(), "travel is off: no subject was saved");
    let key = TallyKey::error("123456789012", "AccessDenied");
    let loaded = super::block_on(store.load_tallies(std::slice::from_ref(&key))).unwrap();
    assert_eq!(loaded[&key].version, 1);
}

/// A store in which another writer saves a count tally between every load and save of
/// the first commit that touches it: the save of that tally loses the race.
struct RacedStore {
    inner: MemoryStateStore,
    raced: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl StateStore for RacedStore {
    async fn load_each(
        &self,
        subjects: &[String],
    ) -> Result<geotrail::state::Loaded, geotrail::state::StateError> {
        self.inner.load_each(subjects).await
    }

    async fn save(
        &self,
        state: &geotrail::detect::SubjectState,
        expected_version: u64,
    ) -> Result<geotrail::state::SaveOutcome, geotrail::state::StateError> {
        self.inner.save(state, expected_version).await
    }

    async fn load_tallies(
        &self,
        keys: &[TallyKey],
    ) -> Result<
        std::collections::HashMap<TallyKey, geotrail::state::VersionedTally>,
        geotrail::state::StateError,
    > {
        self.inner.load_tallies(keys).await
    }

    async fn save_tallies(
        &self,
        items: &[(&Tally, u64)],
    ) -> Result<Vec<geotrail::state::SaveOutcome>, geotrail::state::StateError> {
        for (tally, _) in items {
            let key = tally.item_key();
            if key.starts_with("command#") && self.raced.lock().unwrap().insert(key) {
                // The other writer changes nothing but the version: what matters is that
                // this save must reload and must not count the object twice.
                let now = self.inner.load_tallies(&[tally.key()]).await?;
                let (current, version) = match now.get(&tally.key()) {
                    Some(v) => (v.tally.clone(), v.version),
                    None => (tally.key().empty(), 0),
                };
                self.inner.save_tallies(&[(&current, version)]).await?;
            }
        }
        self.inner.save_tallies(items).await
    }
}

#[test]
fn a_lost_race_on_a_tally_loses_no_finding_publishes_none_twice_and_counts_once() {
    let all = policy(RuleSet::all());
    let objects = story();
    let calm = MemoryStateStore::new();
    let (_, expected) = run_with(&fixture_geo_db(), &calm, &all, &objects);
    let raced = RacedStore {
        inner: MemoryStateStore::new(),
        raced: Default::default(),
    };
    let (_, found) = run_with(&fixture_geo_db(), &raced, &all, &objects);
    assert!(!raced.raced.lock().unwrap().is_empty(), "races happened");
    let ids = |fs: &[Finding]| {
        let mut ids: Vec<String> = fs.iter().map(|f| f.finding_id.clone()).collect();
        ids.sort();
        ids
    };
    let got = ids(&found);
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(got, unique, "no finding published twice");
    assert_eq!(got, ids(&expected), "and none lost");
    let key = TallyKey::command("123456789012", "iam.amazonaws.com", "ListUsers");
    let load = |s: &MemoryStateStore| {
        super::block_on(s.load_tallies(std::slice::from_ref(&key))).unwrap()[&key]
            .tally
            .clone()
    };
    assert_eq!(
        load(&raced.inner),
        load(&calm),
        "the race counted nothing twice"
    );
}
