//! The commit under faults: lost save races, corrupt items, a notifier that fails some
//! findings, several objects of one subject committed together. Real objects, the fixture
//! `.mmdb` and the in-memory store; the faults come from wrappers of the ports, as no
//! real store loses a race or rots on demand.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use geotrail::cloudtrail::ReadOptions;
use geotrail::detect::SubjectState;
use geotrail::finding::Finding;
use geotrail::geo::{GeoCache, GeoDb};
use geotrail::notify::claim::{ClaimPolicy, ClaimingNotifier, Incident, MemoryClaims};
use geotrail::notify::{Notifier, NotifyError};
use geotrail::pipeline::{
    commit_scan, commit_scans, scan_object, ConflictRetry, ObjectScan, PipelineError,
};
use geotrail::state::{Loaded, MemoryStateStore, SaveOutcome, StateError, StateStore};
use serde_json::Value;

use super::{at, block_on, FRANKFURT, LONDON, NEW_YORK, SYDNEY};
use crate::common::mmdb::fixture_geo_db;
use crate::common::trail::{object, record, CollectingNotifier};

/// The in-memory store, with faults on demand: lost races (another writer saves the
/// subject just before each of the next `conflicts` saves), subjects whose items read as
/// corrupt, and counts of what was asked.
#[derive(Default)]
struct FaultyStore {
    inner: MemoryStateStore,
    conflicts: AtomicU32,
    /// Every save conflicts, forever.
    always_conflict: bool,
    corrupt: HashSet<String>,
    loads: AtomicUsize,
    saves: Mutex<HashMap<String, usize>>,
}

impl FaultyStore {
    fn saves_of(&self, subject: &str) -> usize {
        self.saves
            .lock()
            .unwrap()
            .get(subject)
            .copied()
            .unwrap_or(0)
    }

    /// Another writer saves `subject` as it stands, bumping its version.
    async fn race(&self, subject: &str) {
        let current = self.inner.snapshot(subject);
        let (state, version) = match current {
            Some(v) => (v.state, v.version),
            None => (SubjectState::new(subject), 0),
        };
        self.inner.save(&state, version).await.unwrap();
    }
}

impl StateStore for FaultyStore {
    async fn load_each(&self, subjects: &[String]) -> Result<Loaded, StateError> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        let (corrupt, readable): (Vec<String>, Vec<String>) = subjects
            .iter()
            .cloned()
            .partition(|s| self.corrupt.contains(s));
        let mut loaded = self.inner.load_each(&readable).await?;
        for subject in corrupt {
            let source = serde_json::from_str::<Value>("{\"subject\": ").unwrap_err();
            loaded
                .corrupt
                .push((subject.clone(), StateError::Corrupt { subject, source }));
        }
        Ok(loaded)
    }

    async fn save(
        &self,
        state: &SubjectState,
        expected_version: u64,
    ) -> Result<SaveOutcome, StateError> {
        assert!(
            !self.corrupt.contains(&state.subject),
            "a corrupt item was overwritten: {}",
            state.subject
        );
        *self
            .saves
            .lock()
            .unwrap()
            .entry(state.subject.clone())
            .or_default() += 1;
        let lose = self.always_conflict
            || self
                .conflicts
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
        if lose {
            self.race(&state.subject).await;
        }
        self.inner.save(state, expected_version).await
    }

    async fn load_tallies(
        &self,
        keys: &[geotrail::detect::tally::TallyKey],
    ) -> Result<
        std::collections::HashMap<
            geotrail::detect::tally::TallyKey,
            geotrail::state::VersionedTally,
        >,
        StateError,
    > {
        self.inner.load_tallies(keys).await
    }

    async fn save_tallies(
        &self,
        items: &[(&geotrail::detect::tally::Tally, u64)],
    ) -> Result<Vec<SaveOutcome>, StateError> {
        self.inner.save_tallies(items).await
    }
}

/// Delivers findings, but fails the first publish call and every `fail_every`-th after
/// it, after delivering the first half (rounded down) of its findings: what SNS's per-entry failures look
/// like from outside. Keeps every delivery, duplicates included.
#[derive(Default)]
struct FlakyNotifier {
    calls: AtomicUsize,
    fail_every: usize,
    delivered: Mutex<Vec<Finding>>,
}

impl Notifier for FlakyNotifier {
    async fn publish(&self, findings: &[Finding]) -> Result<(), NotifyError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let fail = self.fail_every > 0 && (call - 1).is_multiple_of(self.fail_every);
        let delivered = if fail {
            findings.len() / 2
        } else {
            findings.len()
        };
        self.delivered
            .lock()
            .unwrap()
            .extend_from_slice(&findings[..delivered]);
        if fail {
            return Err(NotifyError::Backend {
                notifier: "flaky".into(),
                message: format!("{} findings failed", findings.len() - delivered),
                source: None,
            });
        }
        Ok(())
    }
}

fn scan(geo: &GeoDb, name: &str, records: &[Value]) -> ObjectScan {
    let mut cache = GeoCache::new(geo);
    scan_object(
        name,
        object(records).as_slice(),
        i64::MAX,
        &mut cache,
        &super::travel_policy(),
        &ReadOptions::default(),
    )
}

const KEY_A: &str = "AKIACOMMITAAAAAAAAAA";
const KEY_B: &str = "AKIACOMMITBBBBBBBBBB";

/// Sydney, then Frankfurt `minutes` later (at `start`): impossible within a few hours.
fn hop(key: &str, id: &str, start: u32, minutes: u32, from: &str, to: &str) -> Vec<Value> {
    vec![
        record(
            &format!("{id}-1"),
            &at(start),
            key,
            "alice",
            from,
            "ListBuckets",
        ),
        record(
            &format!("{id}-2"),
            &at(start + minutes),
            key,
            "alice",
            to,
            "CreateUser",
        ),
    ]
}

#[test]
fn more_lost_races_than_five_are_retried_until_the_save_wins_and_publish_once() {
    let geo = fixture_geo_db();
    let store = FaultyStore {
        conflicts: AtomicU32::new(9),
        ..FaultyStore::default()
    };
    let notifier = CollectingNotifier::default();
    let s = scan(
        &geo,
        "s3://trail/a",
        &hop(KEY_A, "a", 0, 20, SYDNEY, FRANKFURT),
    );
    let report = block_on(commit_scan(
        &s,
        &super::travel_policy(),
        geo.info(),
        &store,
        &notifier,
    ))
    .expect("saved after nine lost races");
    assert_eq!(report.conflicts, 9);
    assert_eq!(report.subjects_saved, 1);
    assert_eq!(store.saves_of(KEY_A), 10);
    assert_eq!(
        notifier.take().len(),
        1,
        "published once, not once per attempt"
    );
}

#[test]
fn a_subject_that_keeps_losing_fails_its_object_once_the_deadline_has_passed() {
    let geo = fixture_geo_db();
    let store = FaultyStore {
        always_conflict: true,
        ..FaultyStore::default()
    };
    let notifier = CollectingNotifier::default();
    let s = scan(
        &geo,
        "s3://trail/a",
        &hop(KEY_A, "a", 0, 20, SYDNEY, FRANKFURT),
    );
    let retry = ConflictRetry {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(40),
        deadline: Duration::from_millis(300),
    };
    let started = Instant::now();
    let mut results = block_on(commit_scans(
        std::slice::from_ref(&s),
        &super::travel_policy(),
        geo.info(),
        &store,
        &notifier,
        &retry,
    ));
    let elapsed = started.elapsed();
    let err = results.pop().unwrap().expect_err("never saved");
    assert!(
        matches!(&err, PipelineError::Contention { subject, attempts, .. }
            if subject == KEY_A && *attempts > 2),
        "{err}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().starts_with("s3://trail/a: "), "{err}");
    assert!(
        elapsed >= retry.deadline && elapsed < retry.deadline * 4,
        "bounded by the deadline, not by a count: {elapsed:?}"
    );
}

#[test]
fn a_corrupt_subject_is_quarantined_and_the_others_of_the_object_are_judged() {
    let geo = fixture_geo_db();
    let store = FaultyStore {
        corrupt: HashSet::from([KEY_A.to_owned()]),
        ..FaultyStore::default()
    };
    let notifier = CollectingNotifier::default();
    let mut records = hop(KEY_A, "a", 0, 20, SYDNEY, FRANKFURT);
    records.extend(hop(KEY_B, "b", 0, 20, SYDNEY, FRANKFURT));
    let s = scan(&geo, "s3://trail/both", &records);
    let report = block_on(commit_scan(
        &s,
        &super::travel_policy(),
        geo.info(),
        &store,
        &notifier,
    ))
    .expect("one corrupt item does not fail the object");
    let findings = notifier.take();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].subject, KEY_B);
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].subject, KEY_A);
    assert!(
        report.quarantined[0].reason.contains(KEY_A),
        "{:?}",
        report.quarantined
    );
    assert_eq!((report.subjects, report.subjects_saved), (2, 1));
    assert_eq!(store.saves_of(KEY_A), 0, "the corrupt item is left alone");
}

#[test]
fn objects_of_one_subject_are_judged_together_with_one_load_and_one_save() {
    let geo = fixture_geo_db();
    let store = FaultyStore::default();
    let notifier = CollectingNotifier::default();
    // 24 objects of one key, five minutes apart, from London; the seventh also has the
    // key in New York two minutes after London, and the last holds KEY_B too.
    let scans: Vec<ObjectScan> = (0..24u32)
        .map(|hour| {
            let mut records = vec![record(
                &format!("h{hour}"),
                &at(hour * 5),
                KEY_A,
                "alice",
                LONDON,
                "ListBuckets",
            )];
            if hour == 6 {
                records.push(record(
                    "h6-ny",
                    &at(hour * 5 + 2),
                    KEY_A,
                    "alice",
                    NEW_YORK,
                    "CreateUser",
                ));
            }
            if hour == 23 {
                records.extend(hop(KEY_B, "b", hour * 5 - 5, 5, SYDNEY, FRANKFURT));
            }
            scan(&geo, &format!("s3://trail/hour-{hour:02}"), &records)
        })
        .collect();
    let results = block_on(commit_scans(
        &scans,
        &super::travel_policy(),
        geo.info(),
        &store,
        &notifier,
        &ConflictRetry::default(),
    ));
    let reports: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("no object fails"))
        .collect();
    assert_eq!(store.loads.load(Ordering::Relaxed), 1, "one load for all");
    assert_eq!(store.saves_of(KEY_A), 1, "one save of the shared subject");
    assert_eq!(store.saves_of(KEY_B), 1);
    assert!(reports.iter().all(|r| r.conflicts == 0));
    // Each finding is reported by, and names, the object its later event came from.
    let by_object: BTreeMap<usize, Vec<String>> = reports
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.findings.is_empty())
        .map(|(i, r)| {
            (
                i,
                r.findings.iter().map(|f| f.source_object.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        by_object,
        BTreeMap::from([
            (6, vec!["s3://trail/hour-06".to_owned()]),
            (23, vec!["s3://trail/hour-23".to_owned()]),
        ])
    );
    assert_eq!(notifier.take().len(), 2);
    assert_eq!(reports[6].subjects_saved, 1);
    assert_eq!(reports[23].subjects_saved, 2);
}

/// Commits each object until it succeeds, as Lambda's retries would.
fn commit_until_done<S: StateStore, N: Notifier + Sync>(
    geo: &GeoDb,
    scans: &[ObjectScan],
    store: &S,
    notifier: &N,
) -> usize {
    let mut failures = 0;
    for s in scans {
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries < 50, "{} never committed", s.name);
            match block_on(commit_scan(
                s,
                &super::travel_policy(),
                geo.info(),
                store,
                notifier,
            )) {
                Ok(_) => break,
                Err(err) => {
                    assert!(err.is_transient(), "{err}");
                    failures += 1;
                }
            }
        }
    }
    failures
}

#[test]
fn with_lost_races_and_failed_publishes_no_incident_is_lost_and_none_is_sent_twice() {
    let geo = fixture_geo_db();
    // Three keys, each with an impossible hop split across two objects (so one commit
    // publishes three findings), and a second hop of each pair two hours later: the same
    // incident, in another dedup window.
    let keys = [
        "AKIARACEAAAAAAAAAAAA",
        "AKIARACEBBBBBBBBBBBB",
        "AKIARACECCCCCCCCCCCC",
    ];
    let (mut firsts, mut seconds, mut agains) = (Vec::new(), Vec::new(), Vec::new());
    for (n, key) in keys.iter().enumerate() {
        let mut pair = hop(key, &format!("k{n}"), 0, 15, SYDNEY, FRANKFURT);
        seconds.push(pair.pop().unwrap());
        firsts.push(pair.pop().unwrap());
        agains.extend(hop(key, &format!("r{n}"), 120, 15, SYDNEY, FRANKFURT));
    }
    let scans = vec![
        scan(&geo, "s3://trail/a", &firsts),
        scan(&geo, "s3://trail/b", &seconds),
        scan(&geo, "s3://trail/c", &agains),
    ];

    // What a clean run publishes.
    let clean_notifier = CollectingNotifier::default();
    let clean_store = MemoryStateStore::new();
    commit_until_done(&geo, &scans, &clean_store, &clean_notifier);
    let expected: HashSet<String> = clean_notifier
        .take()
        .iter()
        .map(|f| Incident::of(f).key)
        .collect();
    assert_eq!(
        expected.len(),
        keys.len(),
        "one incident per key: {expected:?}"
    );

    // Lost races on the first saves, a publish that fails every other call (after
    // delivering half its findings); incidents claimed in front of it.
    let store = FaultyStore {
        conflicts: AtomicU32::new(7),
        ..FaultyStore::default()
    };
    let flaky = FlakyNotifier {
        fail_every: 2,
        ..FlakyNotifier::default()
    };
    let notifier = ClaimingNotifier::new(MemoryClaims::new(), flaky, ClaimPolicy::default());
    let failures = commit_until_done(&geo, &scans, &store, &notifier);
    assert!(failures > 0, "some publishes failed and were retried");
    assert_eq!(
        store.conflicts.load(Ordering::Relaxed),
        0,
        "every lost race happened"
    );

    let delivered = notifier.inner().delivered.lock().unwrap().clone();
    let mut per_incident: HashMap<String, usize> = HashMap::new();
    for f in &delivered {
        *per_incident.entry(Incident::of(f).key).or_default() += 1;
    }
    assert_eq!(
        per_incident.keys().cloned().collect::<HashSet<_>>(),
        expected,
        "no incident lost"
    );
    assert!(
        per_incident.values().all(|n| *n == 1),
        "none sent twice: {per_incident:#?}"
    );
}
