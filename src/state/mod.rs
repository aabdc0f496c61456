//! The `StateStore` port: where each subject's history lives between objects.
//!
//! Shaped for DynamoDB: load many subjects in one call, save one subject with a condition
//! on the version that was read. Versions start at 1 for the first save; a subject that
//! was never saved loads as absent (version 0).

use std::collections::HashMap;
use std::future::Future;

use crate::detect::tally::{Tally, TallyKey};
use crate::detect::SubjectState;

/// A subject's state as loaded, with the version a save must match.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub state: SubjectState,
    /// 0 when the subject has never been saved.
    pub version: u64,
}

/// An account-level tally as loaded, with the version a save must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedTally {
    pub tally: Tally,
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved {
        version: u64,
    },
    /// Someone else saved the subject since it was loaded: reload and re-apply.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {store}: {message}")]
    Backend {
        store: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("state of subject {subject} is corrupt: {source}")]
    Corrupt {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("tally {key} is corrupt: {message}")]
    CorruptTally { key: String, message: String },
    #[error("state of subject {subject} is {bytes} bytes, over the {limit}-byte item limit")]
    TooLarge {
        subject: String,
        bytes: usize,
        limit: usize,
    },
}

impl StateError {
    /// Worth retrying the whole object (throttling, network), as opposed to a fault in the data.
    pub fn is_transient(&self) -> bool {
        matches!(self, StateError::Backend { .. })
    }
}

/// What a load found, subject by subject.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The subjects whose stored state was read; subjects never saved are absent.
    /// Hashed with foldhash: a batch loads tens of thousands of subjects.
    pub states: foldhash::HashMap<String, Versioned>,
    /// Subjects whose stored item exists but cannot be read (not JSON, not a state, a
    /// state of another subject). One bad item must not stop the judging of every other
    /// subject of an object, so it is reported here rather than failing the load; the
    /// caller must neither judge nor save such a subject, or the save would overwrite the
    /// evidence a person needs to repair it.
    pub corrupt: Vec<(String, StateError)>,
}

/// [`Loaded`], with each state in the place of its subject.
#[derive(Debug, Default)]
pub struct LoadedInOrder {
    /// One per subject asked for; `None` for one never saved or unreadable.
    pub states: Vec<Option<Versioned>>,
    /// As [`Loaded::corrupt`].
    pub corrupt: Vec<(String, StateError)>,
}

pub trait StateStore: Sync {
    /// Loads the named subjects, each on its own: an item that cannot be read is
    /// reported in [`Loaded::corrupt`]; only a fault of the store itself (network,
    /// throttling, I/O) fails the whole load.
    fn load_each(
        &self,
        subjects: &[String],
    ) -> impl Future<Output = Result<Loaded, StateError>> + Send;

    /// [`load_each`](Self::load_each), each state in the place of its subject. A store
    /// that can answer in order spares the caller a map of every subject.
    fn load_each_in_order(
        &self,
        subjects: &[String],
    ) -> impl Future<Output = Result<LoadedInOrder, StateError>> + Send {
        async move {
            let Loaded {
                mut states,
                corrupt,
            } = self.load_each(subjects).await?;
            Ok(LoadedInOrder {
                states: subjects.iter().map(|s| states.remove(s)).collect(),
                corrupt,
            })
        }
    }

    /// Loads the named subjects; subjects never saved are absent from the map. Fails on
    /// the first corrupt item: for callers that need every subject they ask for.
    fn load(
        &self,
        subjects: &[String],
    ) -> impl Future<Output = Result<foldhash::HashMap<String, Versioned>, StateError>> + Send {
        async move {
            let loaded = self.load_each(subjects).await?;
            match loaded.corrupt.into_iter().next() {
                Some((_, err)) => Err(err),
                None => Ok(loaded.states),
            }
        }
    }

    /// Saves `state` if the stored version is still `expected_version` (0: absent).
    fn save(
        &self,
        state: &SubjectState,
        expected_version: u64,
    ) -> impl Future<Output = Result<SaveOutcome, StateError>> + Send;

    /// Saves several subjects, each on its own condition; outcomes in input order.
    /// Stores that can write many at once (one transaction, one fsync) override this.
    fn save_many(
        &self,
        items: &[(&SubjectState, u64)],
    ) -> impl Future<Output = Result<Vec<SaveOutcome>, StateError>> + Send {
        async move {
            let mut outcomes = Vec::with_capacity(items.len());
            for (state, version) in items {
                outcomes.push(self.save(state, *version).await?);
            }
            Ok(outcomes)
        }
    }

    /// [`save_many`](Self::save_many) for callers that are done with the states: a store
    /// that keeps states in memory takes them without a copy.
    fn save_owned(
        &self,
        items: Vec<(SubjectState, u64)>,
    ) -> impl Future<Output = Result<Vec<SaveOutcome>, StateError>> + Send {
        async move {
            let refs: Vec<(&SubjectState, u64)> = items.iter().map(|(s, v)| (s, *v)).collect();
            self.save_many(&refs).await
        }
    }

    /// Loads the named account-level tallies; tallies never saved are absent.
    fn load_tallies(
        &self,
        keys: &[TallyKey],
    ) -> impl Future<Output = Result<HashMap<TallyKey, VersionedTally>, StateError>> + Send;

    /// [`load_tallies`](Self::load_tallies), each in the place of its key (`None`: never
    /// saved). A store that can answer in order spares the caller a map of every key.
    fn load_tallies_in_order(
        &self,
        keys: &[TallyKey],
    ) -> impl Future<Output = Result<Vec<Option<VersionedTally>>, StateError>> + Send {
        async move {
            let mut loaded = self.load_tallies(keys).await?;
            Ok(keys.iter().map(|key| loaded.remove(key)).collect())
        }
    }

    /// Saves each tally if its stored version is still the one given (0: absent);
    /// outcomes in input order.
    fn save_tallies(
        &self,
        items: &[(&Tally, u64)],
    ) -> impl Future<Output = Result<Vec<SaveOutcome>, StateError>> + Send;

    /// [`save_tallies`](Self::save_tallies) for callers that are done with the tallies:
    /// a store that keeps them in memory takes them without a copy.
    fn save_tallies_owned(
        &self,
        items: Vec<(Tally, u64)>,
    ) -> impl Future<Output = Result<Vec<SaveOutcome>, StateError>> + Send {
        async move {
            let refs: Vec<(&Tally, u64)> = items.iter().map(|(t, v)| (t, *v)).collect();
            self.save_tallies(&refs).await
        }
    }

    /// Hands back tallies that were loaded and not changed (see
    /// [`give_back`](Self::give_back)).
    fn give_back_tallies(&self, tallies: Vec<VersionedTally>) {
        drop(tallies);
    }

    /// Hands back states that were loaded and not changed. Stores that lend their
    /// in-memory states out on `load` take them back here; others drop them.
    fn give_back(&self, states: Vec<Versioned>) {
        drop(states);
    }
}

pub mod cache;
pub mod compact;

/// States for the stores' tests.
#[cfg(test)]
pub(crate) mod test_states {
    use std::sync::Arc;

    use crate::detect::{Call, Point, Stay, SubjectState};
    use crate::state::StateStore;

    pub fn point(t: i64) -> Point {
        Point {
            t,
            id: format!("event-{t}").into(),
            ip: "203.0.113.7".parse().expect("an address"),
            call: Arc::new(Call::new(
                "GetCallerIdentity",
                "sts.amazonaws.com",
                "us-east-1",
            )),
        }
    }

    /// What every store promises through the port, checked on one store with distinct
    /// subjects per claim: absent until saved, versions from 1, a stale version is a
    /// conflict that changes nothing, and a load of many returns just the saved ones.
    pub async fn check_port_contract<S: StateStore>(store: &S) {
        use crate::state::SaveOutcome;
        let load_one = |subject: &str| {
            let asked = [subject.to_owned()];
            async move { store.load(&asked).await.unwrap().remove(&asked[0]) }
        };

        let never = "AKIANEVERSAVED000000";
        assert!(
            load_one(never).await.is_none(),
            "a subject never saved loads as absent"
        );

        let counted = state_seen_at("AKIACOUNTED000000000", 1_000);
        assert_eq!(
            store.save(&counted, 0).await.unwrap(),
            SaveOutcome::Saved { version: 1 }
        );
        assert_eq!(
            store.save(&counted, 1).await.unwrap(),
            SaveOutcome::Saved { version: 2 }
        );
        let loaded = load_one(&counted.subject).await.unwrap();
        assert_eq!((loaded.version, loaded.state), (2, counted.clone()));

        let first = state_seen_at("AKIASTALE00000000000", 1_000);
        store.save(&first, 0).await.unwrap();
        store.save(&first, 1).await.unwrap();
        let other = state_seen_at(&first.subject, 2_000);
        for stale in [0, 1, 3] {
            assert_eq!(
                store.save(&other, stale).await.unwrap(),
                SaveOutcome::Conflict,
                "expected version {stale}"
            );
        }
        let stored = load_one(&first.subject).await.unwrap();
        assert_eq!(
            (stored.version, stored.state),
            (2, first),
            "a conflict changes nothing"
        );

        let a = state_seen_at("AKIAAAAAAAAAAAAAAAAA", 1_000);
        let b = state_seen_at("AKIABBBBBBBBBBBBBBBB", 2_000);
        store.save(&a, 0).await.unwrap();
        store.save(&b, 0).await.unwrap();
        store.save(&b, 1).await.unwrap();
        let asked = [
            a.subject.clone(),
            b.subject.clone(),
            "AKIACCCCCCCCCCCCCCCC".to_owned(),
        ];
        let loaded = store.load(&asked).await.unwrap();
        assert_eq!(loaded.len(), 2, "only the saved subjects among those asked");
        assert_eq!(
            (loaded[&a.subject].version, &loaded[&a.subject].state),
            (1, &a)
        );
        assert_eq!(
            (loaded[&b.subject].version, &loaded[&b.subject].state),
            (2, &b)
        );
    }

    /// A subject seen once, at `t`.
    pub fn state_seen_at(subject: &str, t: i64) -> SubjectState {
        let mut state = SubjectState::new(subject);
        state.first_seen_ms = t;
        state.latest_ms = t;
        state.stays.push(Stay::at("sydney", point(t)));
        state
    }
}
pub mod file;
pub mod memory;

pub use cache::WriteBackCache;
pub use file::FileStateStore;
pub use memory::MemoryStateStore;
