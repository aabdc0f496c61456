//! `MemoryStateStore`: the `StateStore` port in a map, for tests and one-shot runs.
//!
//! States are kept serialized, as every real store keeps them, so that whatever uses this
//! store also proves that a state survives its round trip through JSON.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Loaded, SaveOutcome, StateError, StateStore, Versioned, VersionedTally};
use crate::detect::tally::{Tally, TallyKey};
use crate::detect::SubjectState;

/// Subject -> (version, JSON of its `SubjectState`).
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    subjects: Mutex<HashMap<String, (u64, Vec<u8>)>>,
    /// Tally item key -> (version, JSON of its `Tally`).
    tallies: Mutex<HashMap<String, (u64, Vec<u8>)>>,
}

impl MemoryStateStore {
    pub fn new() -> MemoryStateStore {
        MemoryStateStore::default()
    }

    /// Number of subjects ever saved.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The stored state of `subject` and its version, as a later `load` would see it.
    pub fn snapshot(&self, subject: &str) -> Option<Versioned> {
        let subjects = self.lock();
        let (version, bytes) = subjects.get(subject)?;
        let state =
            decode(subject, bytes).expect("the store only holds states it serialized itself");
        Some(Versioned {
            state,
            version: *version,
        })
    }

    /// Stores `bytes` as the item of `subject`, whatever they are: for the tests of
    /// what a corrupt item does.
    #[cfg(test)]
    pub(crate) fn put_raw(&self, subject: &str, version: u64, bytes: &[u8]) {
        self.lock()
            .insert(subject.to_owned(), (version, bytes.to_vec()));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (u64, Vec<u8>)>> {
        // Every write is a single insert, so a panic elsewhere cannot leave the map half
        // updated: the data behind a poisoned lock is still good.
        self.subjects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StateStore for MemoryStateStore {
    async fn load_each(&self, subjects: &[String]) -> Result<Loaded, StateError> {
        let stored = self.lock();
        let mut loaded = Loaded {
            states: foldhash::HashMap::with_capacity_and_hasher(subjects.len(), Default::default()),
            corrupt: Vec::new(),
        };
        for subject in subjects {
            if let Some((version, bytes)) = stored.get(subject) {
                match decode(subject, bytes) {
                    Ok(state) => {
                        loaded.states.insert(
                            subject.clone(),
                            Versioned {
                                state,
                                version: *version,
                            },
                        );
                    }
                    Err(err) => loaded.corrupt.push((subject.clone(), err)),
                }
            }
        }
        Ok(loaded)
    }

    async fn save(
        &self,
        state: &SubjectState,
        expected_version: u64,
    ) -> Result<SaveOutcome, StateError> {
        let bytes = serde_json::to_vec(state).map_err(|source| StateError::Corrupt {
            subject: state.subject.clone(),
            source,
        })?;
        let mut stored = self.lock();
        let current = stored
            .get(&state.subject)
            .map_or(0, |(version, _)| *version);
        if current != expected_version {
            return Ok(SaveOutcome::Conflict);
        }
        let version = current + 1;
        stored.insert(state.subject.clone(), (version, bytes));
        Ok(SaveOutcome::Saved { version })
    }

    async fn load_tallies(
        &self,
        keys: &[TallyKey],
    ) -> Result<HashMap<TallyKey, VersionedTally>, StateError> {
        let stored = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        let mut loaded = HashMap::with_capacity(keys.len());
        for key in keys {
            let item_key = key.item_key();
            if let Some((version, bytes)) = stored.get(&item_key) {
                let tally = Tally::from_json(&item_key, bytes).map_err(|message| {
                    StateError::CorruptTally {
                        key: item_key.clone(),
                        message,
                    }
                })?;
                loaded.insert(
                    key.clone(),
                    VersionedTally {
                        tally,
                        version: *version,
                    },
                );
            }
        }
        Ok(loaded)
    }

    async fn save_tallies(&self, items: &[(&Tally, u64)]) -> Result<Vec<SaveOutcome>, StateError> {
        let mut stored = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        let mut outcomes = Vec::with_capacity(items.len());
        for (tally, expected) in items {
            let key = tally.item_key();
            let current = stored.get(&key).map_or(0, |(v, _)| *v);
            if current != *expected {
                outcomes.push(SaveOutcome::Conflict);
                continue;
            }
            stored.insert(key, (current + 1, tally.to_json().into_bytes()));
            outcomes.push(SaveOutcome::Saved {
                version: current + 1,
            });
        }
        Ok(outcomes)
    }
}

fn decode(subject: &str, bytes: &[u8]) -> Result<SubjectState, StateError> {
    serde_json::from_slice(bytes).map_err(|source| StateError::Corrupt {
        subject: subject.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_states::check_port_contract;

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

    #[tokio::test(flavor = "current_thread")]
    async fn keeps_the_state_store_port_contract() {
        let store = MemoryStateStore::new();
        assert!(store.is_empty());
        assert!(store.snapshot(KEY).is_none());
        check_port_contract(&store).await;
        // Saved subjects: counted, stale and the two of the batch load.
        assert_eq!(store.len(), 4);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn corrupt_bytes_load_as_corrupt_naming_the_subject() {
        let store = MemoryStateStore::new();
        store
            .lock()
            .insert(KEY.to_owned(), (1, b"{\"subject\": ".to_vec()));
        let err = store.load(&[KEY.to_owned()]).await.unwrap_err();
        assert!(
            matches!(&err, StateError::Corrupt { subject, .. } if subject == KEY),
            "{err:?}"
        );
        assert!(err.to_string().contains(KEY), "{err}");
        assert!(!err.is_transient());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn load_each_reports_a_corrupt_subject_and_loads_the_others() {
        use crate::state::test_states::state_seen_at;
        let store = MemoryStateStore::new();
        store.put_raw(KEY, 1, b"{\"subject\": ");
        let good = state_seen_at("AKIAGOODNEIGHBOUR001", 1_000);
        store.save(&good, 0).await.unwrap();
        let loaded = store
            .load_each(&[KEY.to_owned(), good.subject.clone()])
            .await
            .expect("a corrupt item does not fail the load");
        assert_eq!(loaded.states.len(), 1);
        assert_eq!(loaded.states[&good.subject].state, good);
        assert_eq!(loaded.corrupt.len(), 1);
        assert_eq!(loaded.corrupt[0].0, KEY);
        assert!(matches!(loaded.corrupt[0].1, StateError::Corrupt { .. }));
    }
}
