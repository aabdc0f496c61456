//! A write-back cache in front of another store, for a single process that owns its
//! state (the CLI holds the state file's lock): subjects stay in memory between objects
//! and are written back in one batch, instead of a JSON round trip per subject per
//! object.

use std::collections::HashMap;

use compact_str::CompactString;
use foldhash::HashMap as FastMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    compact, Loaded, LoadedInOrder, SaveOutcome, StateError, StateStore, Versioned, VersionedTally,
};
use crate::detect::tally::{Tally, TallyKey};
use crate::detect::SubjectState;

/// Subjects written back per `save_many`: one transaction, and one fsync, of the state
/// file each. An organisation's 46,000 keys flush in ten; the copies a batch needs stay
/// around ten MB.
const FLUSH_BATCH: usize = 5_000;

#[derive(Debug)]
enum Slot {
    /// Ready to lend. Boxed: tens of thousands of entries sit in one map, most of them
    /// packed, and an inline state would make every slot of the map as large.
    Hot(Box<SubjectState>),
    /// Not used lately: kept packed ([`compact`]), a fraction of the size.
    Packed(Box<[u8]>),
    /// Lent out to a commit.
    Lent,
}

#[derive(Debug)]
struct Entry {
    slot: Slot,
    /// Version as this cache counts saves.
    version: u64,
    /// Version the inner store holds (0: never written there).
    inner_version: u64,
    dirty: bool,
    /// The round ([`WriteBackCache::pack_idle`]) it was last used in.
    used: u64,
}

/// A cached tally; `tally` is `None` while the inner store has none and none was saved.
#[derive(Debug)]
struct TallyEntry {
    tally: Option<Tally>,
    version: u64,
    inner_version: u64,
    dirty: bool,
    /// Lent out to a commit (`tally` is `None` meanwhile).
    lent: bool,
}

/// Takes a cached state out for a commit; one never saved (version 0) is absent, as the
/// port says.
fn lend_state(subject: &str, e: &mut Entry, round: u64) -> Result<Option<Versioned>, StateError> {
    e.used = round;
    if e.version == 0 {
        return Ok(None);
    }
    let state = match std::mem::replace(&mut e.slot, Slot::Lent) {
        Slot::Hot(state) => *state,
        Slot::Packed(bytes) => match unpack(subject, &bytes) {
            Ok(state) => state,
            Err(err) => {
                e.slot = Slot::Packed(bytes);
                return Err(err);
            }
        },
        Slot::Lent => {
            return Err(StateError::Backend {
                store: "write-back cache".to_owned(),
                message: format!("subject {subject} is already lent to another commit"),
                source: None,
            })
        }
    };
    Ok(Some(Versioned {
        state,
        version: e.version,
    }))
}

/// Takes a cached tally out for a commit; an entry with none (never saved) lends nothing.
fn lend(key: &TallyKey, e: &mut TallyEntry) -> Result<Option<VersionedTally>, StateError> {
    if e.lent {
        return Err(StateError::Backend {
            store: "write-back cache".to_owned(),
            message: format!("tally {} is already lent to another commit", key.item_key()),
            source: None,
        });
    }
    Ok(e.tally.take().map(|tally| {
        e.lent = true;
        VersionedTally {
            tally,
            version: e.version,
        }
    }))
}

/// One subject's state while a flush writes it.
struct Flushing<'a> {
    subject: &'a CompactString,
    state: Box<SubjectState>,
    /// Taken from a hot slot, and to be put back there; else unpacked from a packed one,
    /// which stays as it was.
    hot: bool,
    /// The version the inner store holds.
    inner_version: u64,
    /// The version this cache holds.
    version: u64,
}

#[derive(Debug)]
pub struct WriteBackCache<S> {
    inner: S,
    // A fast seeded hash, not SipHash: looked up for every subject of every object.
    // Keyed inline: an access key id fits, so a lookup that finds its subject compares
    // keys without a trip to memory of their own.
    entries: Mutex<FastMap<CompactString, Entry>>,
    tallies: Mutex<FastMap<TallyKey, TallyEntry>>,
    round: AtomicU64,
}

impl<S: StateStore> WriteBackCache<S> {
    pub fn new(inner: S) -> WriteBackCache<S> {
        WriteBackCache {
            inner,
            entries: Mutex::new(FastMap::default()),
            tallies: Mutex::new(FastMap::default()),
            round: AtomicU64::new(0),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Ends the cache in a process about to exit: what it holds is left for the exit to
    /// reclaim instead of being freed an allocation at a time (at organisation scale a
    /// tenth of a second on one core, after the scan, while the other core idles). The
    /// inner store is dropped as usual, so a state file still closes cleanly.
    pub fn end_at_exit(self) {
        let WriteBackCache {
            inner,
            entries,
            tallies,
            round: _,
        } = self;
        std::mem::forget(entries);
        std::mem::forget(tallies);
        drop(inner);
    }

    /// Subjects held in memory.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Writes every changed subject that is not lent out to the inner store, a batch
    /// of `save_many` at a time (each batch is one transaction for the file store, and
    /// the copies it needs are bounded by the batch).
    pub async fn flush(&self) -> Result<usize, StateError> {
        // Access key ids fit inline in a `CompactString`: no allocation for each.
        let mut dirty: Vec<CompactString> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.dirty && !matches!(e.slot, Slot::Lent))
            .map(|(k, _)| k.clone())
            .collect();
        // In key order, so that each batch writes one stretch of the store's B-tree: in
        // the map's hash order, every batch touched pages across the whole tree, and the
        // file store copied and checksummed most of them again for each transaction.
        dirty.sort_unstable();
        for batch in dirty.chunks(FLUSH_BATCH) {
            self.flush_batch(batch).await?;
        }
        self.flush_tallies().await?;
        Ok(dirty.len())
    }

    async fn flush_tallies(&self) -> Result<(), StateError> {
        // Taken out of their entries while they are written, as subjects are (see
        // `flush_batch`): (key, tally, version the inner store holds, version this cache
        // holds).
        let mut taken: Vec<(TallyKey, Tally, u64, u64)> = {
            let mut tallies = self.lock_tallies();
            tallies
                .iter_mut()
                .filter(|(_, e)| e.dirty && !e.lent)
                .filter_map(|(key, e)| {
                    Some((key.clone(), e.tally.take()?, e.inner_version, e.version))
                })
                .collect()
        };
        // In key order, as subjects are (see `flush`); a key's kind sorts as its item key's
        // prefix does.
        taken.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut result = Ok(());
        let mut taken = taken.into_iter().peekable();
        while taken.peek().is_some() {
            let chunk: Vec<(TallyKey, Tally, u64, u64)> =
                taken.by_ref().take(FLUSH_BATCH).collect();
            // After an error, what is left is only put back.
            let outcomes = match &result {
                Ok(()) => {
                    let items: Vec<(&Tally, u64)> = chunk
                        .iter()
                        .map(|(_, tally, inner, _)| (tally, *inner))
                        .collect();
                    match self.inner.save_tallies(&items).await {
                        Ok(outcomes) => outcomes,
                        Err(err) => {
                            result = Err(err);
                            Vec::new()
                        }
                    }
                }
                Err(_) => Vec::new(),
            };
            // The outcome and the tally's return, in one lookup each.
            let mut tallies = self.lock_tallies();
            let mut outcomes = outcomes.into_iter();
            for (key, tally, _, version) in chunk {
                let outcome = outcomes.next();
                let Some(e) = tallies.get_mut(&key) else {
                    continue;
                };
                match outcome {
                    Some(SaveOutcome::Saved { version: inner }) => {
                        e.inner_version = inner;
                        e.dirty = e.version != version;
                    }
                    Some(SaveOutcome::Conflict) => {
                        result = result.and(Err(StateError::Backend {
                            store: "write-back cache".to_owned(),
                            message: format!(
                                "tally {} was changed in the state store by another writer during the scan",
                                key.item_key()
                            ),
                            source: None,
                        }));
                    }
                    None => {}
                }
                e.tally = Some(tally);
            }
        }
        result
    }

    fn lock_tallies(&self) -> MutexGuard<'_, FastMap<TallyKey, TallyEntry>> {
        self.tallies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn flush_batch(&self, subjects: &[CompactString]) -> Result<(), StateError> {
        // A hot state is taken out of its slot while it is written, not copied: the copies
        // were a fifth of a state file's final write. No commit runs while the cache
        // flushes, so none can find the slot lent meanwhile.
        let mut batch: Vec<Flushing<'_>> = Vec::with_capacity(subjects.len());
        {
            let mut entries = self.lock();
            for subject in subjects {
                let Some(e) = entries.get_mut(subject.as_str()) else {
                    continue;
                };
                let (state, hot) = match std::mem::replace(&mut e.slot, Slot::Lent) {
                    Slot::Hot(state) => (state, true),
                    Slot::Packed(bytes) => {
                        let unpacked = unpack(subject, &bytes);
                        e.slot = Slot::Packed(bytes);
                        match unpacked {
                            Ok(state) => (Box::new(state), false),
                            Err(err) => {
                                drop(entries);
                                self.put_back(batch);
                                return Err(err);
                            }
                        }
                    }
                    Slot::Lent => continue,
                };
                batch.push(Flushing {
                    subject,
                    state,
                    hot,
                    inner_version: e.inner_version,
                    version: e.version,
                });
            }
        }
        let items: Vec<(&SubjectState, u64)> =
            batch.iter().map(|f| (&*f.state, f.inner_version)).collect();
        let saved = self.inner.save_many(&items).await;
        drop(items);
        let outcomes = match saved {
            Ok(outcomes) => outcomes,
            Err(err) => {
                self.put_back(batch);
                return Err(err);
            }
        };
        let mut conflict = None;
        {
            // The outcome and, for a hot state, its return, in one lookup each.
            let mut entries = self.lock();
            for (f, outcome) in batch.into_iter().zip(outcomes) {
                let Some(e) = entries.get_mut(f.subject.as_str()) else {
                    continue;
                };
                match outcome {
                    SaveOutcome::Saved { version: inner } => {
                        e.inner_version = inner;
                        // A save after the snapshot was taken stays dirty.
                        e.dirty = e.version != f.version;
                    }
                    SaveOutcome::Conflict => {
                        conflict.get_or_insert(f.subject);
                    }
                }
                if f.hot {
                    e.slot = Slot::Hot(f.state);
                }
            }
        }
        match conflict {
            Some(subject) => Err(StateError::Backend {
                store: "write-back cache".to_owned(),
                message: format!(
                    "subject {subject} was changed in the state store by another writer during the scan"
                ),
                source: None,
            }),
            None => Ok(()),
        }
    }

    /// Returns the states a flush took out of their hot slots.
    fn put_back(&self, batch: Vec<Flushing<'_>>) {
        let mut entries = self.lock();
        for f in batch.into_iter().filter(|f| f.hot) {
            if let Some(e) = entries.get_mut(f.subject.as_str()) {
                e.slot = Slot::Hot(f.state);
            }
        }
    }

    /// Flushes and forgets what it can once more than `max_subjects` are held, bounding
    /// memory on long backfills.
    pub async fn trim(&self, max_subjects: usize) -> Result<(), StateError> {
        if self.len() <= max_subjects {
            return Ok(());
        }
        self.flush().await?;
        self.lock()
            .retain(|_, e| e.dirty || matches!(e.slot, Slot::Lent));
        self.lock_tallies().retain(|_, e| e.dirty || e.lent);
        Ok(())
    }

    /// Starts a new round; once more than `max_unpacked` states are held unpacked, packs
    /// the longest idle of them until half that many are left (never one used in the
    /// round just ended). A subject that comes back unpacks from memory, without the
    /// inner store.
    ///
    /// Longest idle first, and down to half: keys that recur every few objects (a
    /// role session's hour, a busy user) stay unpacked, and the pass over every entry runs
    /// once per many objects, not once per object. Packing all idle states at once made
    /// every key that skipped one object pay a pack and an unpack.
    pub fn pack_idle(&self, max_unpacked: usize) {
        let round = self.round.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.lock();
        let mut idle_since: Vec<u64> = Vec::new();
        let mut unpacked = 0;
        for e in entries.values() {
            if matches!(e.slot, Slot::Hot(_)) {
                unpacked += 1;
                if e.used < round {
                    idle_since.push(e.used);
                }
            }
        }
        if unpacked <= max_unpacked {
            return;
        }
        let excess = (unpacked - max_unpacked / 2).min(idle_since.len());
        if excess == 0 {
            return;
        }
        // Pack those last used before `cutoff`, and enough of those last used in it.
        let (_, &mut cutoff, _) = idle_since.select_nth_unstable(excess - 1);
        let mut at_cutoff = excess - idle_since.iter().filter(|&&u| u < cutoff).count();
        for e in entries.values_mut() {
            let pack = match &e.slot {
                Slot::Hot(_) if e.used < cutoff => true,
                Slot::Hot(_) if e.used == cutoff && at_cutoff > 0 => {
                    at_cutoff -= 1;
                    true
                }
                _ => false,
            };
            if pack {
                if let Slot::Hot(state) = &e.slot {
                    e.slot = Slot::Packed(compact::pack(state).into_boxed_slice());
                }
            }
        }
    }

    /// Lends `subjects` into `lent`, each in its subject's place (`lent` holds
    /// `subjects.len()` `None`s to begin with): cached ones in the pass that finds them,
    /// the rest once the inner store has read them; returns the unreadable ones. On an
    /// error, what is in `lent` is the caller's to give back.
    async fn lend_each(
        &self,
        subjects: &[String],
        lent: &mut [Option<Versioned>],
    ) -> Result<Vec<(String, StateError)>, StateError> {
        let round = self.round();
        let mut misses: Vec<usize> = Vec::new();
        {
            let mut entries = self.lock();
            for (i, subject) in subjects.iter().enumerate() {
                match entries.get_mut(subject.as_str()) {
                    Some(e) => lent[i] = lend_state(subject, e, round)?,
                    None => misses.push(i),
                }
            }
        }
        if misses.is_empty() {
            return Ok(Vec::new());
        }
        let missed: Vec<String> = misses.iter().map(|&i| subjects[i].clone()).collect();
        let LoadedInOrder {
            states: loaded,
            corrupt,
        } = self.inner.load_each_in_order(&missed).await?;
        let mut entries = self.lock();
        for ((i, subject), found) in misses.into_iter().zip(missed).zip(loaded) {
            // Not cached: an entry would stand for a state that is not there, and its
            // flush would overwrite the corrupt item.
            if corrupt.iter().any(|(s, _)| *s == subject) {
                continue;
            }
            let entry = match found {
                Some(v) => Entry {
                    slot: Slot::Hot(Box::new(v.state)),
                    version: v.version,
                    inner_version: v.version,
                    dirty: false,
                    used: round,
                },
                None => Entry {
                    slot: Slot::Hot(Box::new(SubjectState::new(subject.clone()))),
                    version: 0,
                    inner_version: 0,
                    dirty: false,
                    used: round,
                },
            };
            let e = entries.entry(subject.as_str().into()).or_insert(entry);
            lent[i] = lend_state(&subject, e, round)?;
        }
        Ok(corrupt)
    }

    /// [`Self::lend_each`] for tallies, into `lent` in the place of each key (which
    /// holds `keys.len()` `None`s to begin with): each lookup done once.
    async fn lend_tallies(
        &self,
        keys: &[TallyKey],
        lent: &mut [Option<VersionedTally>],
    ) -> Result<(), StateError> {
        let mut misses: Vec<usize> = Vec::new();
        {
            let mut tallies = self.lock_tallies();
            for (i, k) in keys.iter().enumerate() {
                match tallies.get_mut(k) {
                    Some(e) => lent[i] = lend(k, e)?,
                    None => misses.push(i),
                }
            }
        }
        if misses.is_empty() {
            return Ok(());
        }
        let missed: Vec<TallyKey> = misses.iter().map(|&i| keys[i].clone()).collect();
        let loaded = self.inner.load_tallies_in_order(&missed).await?;
        let mut tallies = self.lock_tallies();
        for ((i, key), found) in misses.into_iter().zip(missed).zip(loaded) {
            let entry = match found {
                Some(v) => TallyEntry {
                    tally: Some(v.tally),
                    version: v.version,
                    inner_version: v.version,
                    dirty: false,
                    lent: false,
                },
                None => TallyEntry {
                    tally: None,
                    version: 0,
                    inner_version: 0,
                    dirty: false,
                    lent: false,
                },
            };
            let e = tallies.entry(key).or_insert(entry);
            lent[i] = lend(&keys[i], e)?;
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, FastMap<CompactString, Entry>> {
        // Every update is a single insert or field write: a poisoned map is still sound.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn round(&self) -> u64 {
        self.round.load(Ordering::Relaxed)
    }
}

impl<S: StateStore + Send> StateStore for WriteBackCache<S> {
    async fn load_each(&self, subjects: &[String]) -> Result<Loaded, StateError> {
        let LoadedInOrder { states, corrupt } = self.load_each_in_order(subjects).await?;
        Ok(Loaded {
            states: subjects
                .iter()
                .zip(states)
                .filter_map(|(subject, found)| Some((subject.clone(), found?)))
                .collect(),
            corrupt,
        })
    }

    async fn load_each_in_order(&self, subjects: &[String]) -> Result<LoadedInOrder, StateError> {
        let mut lent: Vec<Option<Versioned>> = Vec::with_capacity(subjects.len());
        lent.resize_with(subjects.len(), || None);
        match self.lend_each(subjects, &mut lent).await {
            Ok(corrupt) => Ok(LoadedInOrder {
                states: lent,
                corrupt,
            }),
            Err(err) => {
                // Whatever was lent before the failure goes back, or it is lost for good.
                self.give_back(lent.into_iter().flatten().collect());
                Err(err)
            }
        }
    }

    async fn save(
        &self,
        state: &SubjectState,
        expected_version: u64,
    ) -> Result<SaveOutcome, StateError> {
        let round = self.round();
        let mut entries = self.lock();
        Ok(put(&mut entries, state.clone(), expected_version, round))
    }

    async fn save_owned(
        &self,
        items: Vec<(SubjectState, u64)>,
    ) -> Result<Vec<SaveOutcome>, StateError> {
        let round = self.round();
        let mut entries = self.lock();
        Ok(items
            .into_iter()
            .map(|(state, expected_version)| put(&mut entries, state, expected_version, round))
            .collect())
    }

    async fn load_tallies(
        &self,
        keys: &[TallyKey],
    ) -> Result<HashMap<TallyKey, VersionedTally>, StateError> {
        let lent = self.load_tallies_in_order(keys).await?;
        Ok(keys
            .iter()
            .zip(lent)
            .filter_map(|(key, found)| Some((key.clone(), found?)))
            .collect())
    }

    async fn load_tallies_in_order(
        &self,
        keys: &[TallyKey],
    ) -> Result<Vec<Option<VersionedTally>>, StateError> {
        // Lent, not copied: a commit hands each back by saving it or by
        // `give_back_tallies`.
        let mut lent: Vec<Option<VersionedTally>> = Vec::with_capacity(keys.len());
        lent.resize_with(keys.len(), || None);
        match self.lend_tallies(keys, &mut lent).await {
            Ok(()) => Ok(lent),
            Err(err) => {
                self.give_back_tallies(lent.into_iter().flatten().collect());
                Err(err)
            }
        }
    }

    async fn save_tallies_owned(
        &self,
        items: Vec<(Tally, u64)>,
    ) -> Result<Vec<SaveOutcome>, StateError> {
        let mut tallies = self.lock_tallies();
        Ok(items
            .into_iter()
            .map(|(tally, expected)| {
                // One lookup per tally: every object saves a few thousand of them at
                // organisation scale, and a key compares up to three strings.
                let key = tally.key();
                if let Some(e) = tallies.get_mut(&key) {
                    if e.version != expected {
                        return SaveOutcome::Conflict;
                    }
                    e.tally = Some(tally);
                    e.version += 1;
                    e.dirty = true;
                    e.lent = false;
                    return SaveOutcome::Saved { version: e.version };
                }
                if expected != 0 {
                    return SaveOutcome::Conflict;
                }
                tallies.insert(
                    key,
                    TallyEntry {
                        tally: Some(tally),
                        version: 1,
                        inner_version: 0,
                        dirty: true,
                        lent: false,
                    },
                );
                SaveOutcome::Saved { version: 1 }
            })
            .collect())
    }

    fn give_back_tallies(&self, lent: Vec<VersionedTally>) {
        let mut tallies = self.lock_tallies();
        for VersionedTally { tally, version } in lent {
            if let Some(e) = tallies.get_mut(&tally.key()) {
                if e.lent && e.version == version {
                    e.tally = Some(tally);
                    e.lent = false;
                }
            }
        }
    }

    async fn save_tallies(&self, items: &[(&Tally, u64)]) -> Result<Vec<SaveOutcome>, StateError> {
        let owned = items.iter().map(|(t, v)| ((*t).clone(), *v)).collect();
        self.save_tallies_owned(owned).await
    }

    fn give_back(&self, states: Vec<Versioned>) {
        let round = self.round();
        let mut entries = self.lock();
        for Versioned { state, version } in states {
            if let Some(e) = entries.get_mut(state.subject.as_str()) {
                if e.version == version && matches!(e.slot, Slot::Lent) {
                    e.slot = Slot::Hot(Box::new(state));
                    e.used = round;
                }
            }
        }
    }
}

/// Saves `state` if the cache holds it at `expected` (0: never saved), in one lookup:
/// every object saves each of its subjects, tens of thousands at organisation scale.
fn put(
    entries: &mut FastMap<CompactString, Entry>,
    state: SubjectState,
    expected: u64,
    round: u64,
) -> SaveOutcome {
    match entries.get_mut(state.subject.as_str()) {
        Some(e) if e.version != expected => SaveOutcome::Conflict,
        Some(e) => {
            e.slot = Slot::Hot(Box::new(state));
            e.version += 1;
            e.dirty = true;
            e.used = round;
            SaveOutcome::Saved { version: e.version }
        }
        None if expected != 0 => SaveOutcome::Conflict,
        None => {
            entries.insert(
                state.subject.as_str().into(),
                Entry {
                    slot: Slot::Hot(Box::new(state)),
                    version: 1,
                    inner_version: 0,
                    dirty: true,
                    used: round,
                },
            );
            SaveOutcome::Saved { version: 1 }
        }
    }
}

fn unpack(subject: &str, bytes: &[u8]) -> Result<SubjectState, StateError> {
    compact::unpack(bytes).map_err(|message| StateError::Backend {
        store: "write-back cache".to_owned(),
        message: format!("packed state of subject {subject} is unreadable: {message}"),
        source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStateStore;

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

    #[tokio::test(flavor = "current_thread")]
    async fn keeps_the_state_store_port_contract() {
        let cache = WriteBackCache::new(MemoryStateStore::new());
        crate::state::test_states::check_port_contract(&cache).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_corrupt_inner_item_is_reported_each_time_and_never_cached() {
        let inner = MemoryStateStore::new();
        inner.put_raw(KEY, 4, b"not json");
        let cache = WriteBackCache::new(inner);
        for _ in 0..2 {
            let loaded = cache.load_each(&[KEY.to_owned()]).await.unwrap();
            assert!(loaded.states.is_empty());
            assert_eq!(loaded.corrupt.len(), 1);
            assert_eq!(loaded.corrupt[0].0, KEY);
        }
        // No entry stands for it: a save as if it were new conflicts with the item, and a
        // flush writes nothing over it.
        let fresh = SubjectState::new(KEY);
        assert_eq!(
            cache.save(&fresh, 0).await.unwrap(),
            SaveOutcome::Saved { version: 1 }
        );
        let err = cache.flush().await.unwrap_err();
        assert!(err.to_string().contains(KEY), "{err}");
        assert!(
            cache
                .inner()
                .load_each(&[KEY.to_owned()])
                .await
                .unwrap()
                .corrupt
                .len()
                == 1,
            "the corrupt item is still there for a person"
        );
        let held = cache.load(&[KEY.to_owned()]).await.unwrap();
        assert_eq!(
            (&held[KEY].state, held[KEY].version),
            (&fresh, 1),
            "a flush that failed leaves the cached state as it was"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn saves_stay_in_memory_until_flushed_then_reach_the_inner_store() {
        let cache = WriteBackCache::new(MemoryStateStore::new());
        let mut state = SubjectState::new(KEY);
        assert!(cache.load(&[KEY.to_owned()]).await.unwrap().is_empty());
        assert_eq!(
            cache.save(&state, 0).await.unwrap(),
            SaveOutcome::Saved { version: 1 }
        );
        state.first_seen_ms = 42;
        assert_eq!(
            cache.save(&state, 1).await.unwrap(),
            SaveOutcome::Saved { version: 2 }
        );
        assert_eq!(
            cache.save(&state, 1).await.unwrap(),
            SaveOutcome::Conflict,
            "stale version"
        );
        assert!(cache.inner().snapshot(KEY).is_none(), "nothing written yet");
        assert_eq!(cache.flush().await.unwrap(), 1);
        let stored = cache.inner().snapshot(KEY).unwrap();
        assert_eq!(
            (stored.state.first_seen_ms, stored.version),
            (42, 1),
            "one write for two saves"
        );
        assert_eq!(cache.flush().await.unwrap(), 0, "nothing left to write");
        let held = cache.load(&[KEY.to_owned()]).await.unwrap();
        assert_eq!(
            (held[KEY].state.first_seen_ms, held[KEY].version),
            (42, 2),
            "a flushed state stays in the cache as it was"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn flushed_tallies_reach_the_inner_store_and_stay_cached() {
        let cache = WriteBackCache::new(MemoryStateStore::new());
        let (a, b) = (
            TallyKey::key_addresses("AKIAA"),
            TallyKey::key_addresses("AKIAB"),
        );
        cache
            .save_tallies_owned(vec![(a.empty(), 0), (b.empty(), 0)])
            .await
            .unwrap();
        let lent = cache.load_tallies(std::slice::from_ref(&b)).await.unwrap();
        let VersionedTally { tally, version } = lent.into_values().next().unwrap();
        cache
            .save_tallies_owned(vec![(tally, version)])
            .await
            .unwrap();
        assert!(cache
            .inner()
            .load_tallies(&[a.clone(), b.clone()])
            .await
            .unwrap()
            .is_empty());
        cache.flush().await.unwrap();
        let stored = cache
            .inner()
            .load_tallies(&[a.clone(), b.clone()])
            .await
            .unwrap();
        assert_eq!((stored[&a].version, stored[&b].version), (1, 1));
        let held = cache.load_tallies(&[a.clone(), b.clone()]).await.unwrap();
        assert_eq!(
            (held[&a].version, held[&b].version),
            (1, 2),
            "a flushed tally stays in the cache as it was"
        );
        assert_eq!(held[&a].tally, a.empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn subjects_already_stored_load_through_and_trim_keeps_nothing_unwritten() {
        let inner = MemoryStateStore::new();
        let mut state = SubjectState::new(KEY);
        state.first_seen_ms = 7;
        inner.save(&state, 0).await.unwrap();
        let cache = WriteBackCache::new(inner);
        let loaded = cache.load(&[KEY.to_owned()]).await.unwrap();
        assert_eq!(loaded[KEY].state.first_seen_ms, 7);
        state.first_seen_ms = 8;
        cache.save(&state, loaded[KEY].version).await.unwrap();
        cache.trim(0).await.unwrap();
        assert!(cache.is_empty());
        assert_eq!(cache.inner().snapshot(KEY).unwrap().state.first_seen_ms, 8);
        assert_eq!(cache.inner().snapshot(KEY).unwrap().version, 2);
    }
}

#[cfg(test)]
mod lending {
    use super::*;
    use crate::state::MemoryStateStore;

    const A: &str = "AKIAAAAAAAAAAAAAAAAA";
    const B: &str = "AKIABBBBBBBBBBBBBBBB";

    /// A cache holding subjects `A` and `B`, each saved once.
    async fn holding_two() -> WriteBackCache<MemoryStateStore> {
        let cache = WriteBackCache::new(MemoryStateStore::new());
        for key in [A, B] {
            cache.save(&SubjectState::new(key), 0).await.unwrap();
        }
        cache
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lent_state_comes_back_by_save_or_give_back() {
        let cache = holding_two().await;
        let (a, b) = (A, B);
        let mut lent = cache.load(&[a.to_owned(), b.to_owned()]).await.unwrap();
        let err = cache.load(&[a.to_owned()]).await.unwrap_err();
        assert!(err.to_string().contains("already lent"), "{err}");
        let Versioned { mut state, version } = lent.remove(a).unwrap();
        state.first_seen_ms = 1;
        let saved = cache.save_owned(vec![(state, version)]).await.unwrap();
        assert_eq!(saved, [SaveOutcome::Saved { version: 2 }]);
        cache.give_back(vec![lent.remove(b).unwrap()]);
        let again = cache.load(&[a.to_owned(), b.to_owned()]).await.unwrap();
        assert_eq!((again[a].state.first_seen_ms, again[a].version), (1, 2));
        assert_eq!(again[b].version, 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_load_that_fails_lends_nothing() {
        let cache = holding_two().await;
        let (a, b) = (A, B);
        let _held = cache.load(&[a.to_owned()]).await.unwrap();
        // `b` is found first and lent, then `a` is found lent: `b` must come back.
        let err = cache.load(&[b.to_owned(), a.to_owned()]).await.unwrap_err();
        assert!(err.to_string().contains("already lent"), "{err}");
        let again = cache.load(&[b.to_owned()]).await.unwrap();
        assert_eq!(again[b].version, 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_tally_load_that_fails_lends_nothing() {
        let cache = WriteBackCache::new(MemoryStateStore::new());
        let (a, b) = (
            TallyKey::key_addresses("AKIAA"),
            TallyKey::key_addresses("AKIAB"),
        );
        let saved = cache
            .save_tallies_owned(vec![(a.empty(), 0), (b.empty(), 0)])
            .await
            .unwrap();
        assert_eq!(saved, [SaveOutcome::Saved { version: 1 }; 2]);
        let held = cache.load_tallies(std::slice::from_ref(&a)).await.unwrap();
        // `b` is found first and lent, then `a` is found lent: `b` must come back.
        let err = cache
            .load_tallies(&[b.clone(), a.clone()])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already lent"), "{err}");
        let again = cache.load_tallies(std::slice::from_ref(&b)).await.unwrap();
        assert_eq!(again[&b].version, 1);
        // A save on the version lent bumps it, in place.
        let VersionedTally { tally, version } = held.into_values().next().unwrap();
        let saved = cache
            .save_tallies_owned(vec![(tally, version)])
            .await
            .unwrap();
        assert_eq!(saved, [SaveOutcome::Saved { version: 2 }]);
        let stale = cache
            .save_tallies_owned(vec![(a.empty(), 1)])
            .await
            .unwrap();
        assert_eq!(stale, [SaveOutcome::Conflict]);
    }
}

#[cfg(test)]
mod packing {
    use super::*;
    use crate::state::test_states::state_seen_at;
    use crate::state::MemoryStateStore;

    #[tokio::test(flavor = "current_thread")]
    async fn idle_states_are_packed_and_come_back_equal_and_still_dirty() {
        let cache = WriteBackCache::new(MemoryStateStore::new());
        let (busy, idle) = ("AKIABUSYBUSYBUSYBUSY", "AKIAIDLEIDLEIDLEIDLE");
        let idle_state = state_seen_at(idle, 1_000);
        cache.save(&state_seen_at(busy, 1_000), 0).await.unwrap();
        cache.save(&idle_state, 0).await.unwrap();
        cache.pack_idle(0);
        // Only `busy` is used in the next round: `idle` is packed at its end.
        let lent = cache.load(&[busy.to_owned()]).await.unwrap();
        cache.give_back(lent.into_values().collect());
        cache.pack_idle(0);
        {
            let entries = cache.lock();
            assert!(matches!(entries[idle].slot, Slot::Packed(_)));
            assert!(matches!(entries[busy].slot, Slot::Hot(_)));
        }
        let loaded = cache.load(&[idle.to_owned()]).await.unwrap();
        assert_eq!(
            (&loaded[idle].state, loaded[idle].version),
            (&idle_state, 1)
        );
        cache.give_back(loaded.into_values().collect());
        cache.pack_idle(0);
        cache.pack_idle(0);
        assert_eq!(
            cache.flush().await.unwrap(),
            2,
            "packing writes nothing back"
        );
        assert_eq!(cache.inner().snapshot(idle).unwrap().state, idle_state);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn over_the_limit_the_longest_idle_are_packed_down_to_half() {
        let cache = WriteBackCache::new(MemoryStateStore::new());
        let keys: Vec<String> = (0..6).map(|i| format!("AKIAKEY{i:013}")).collect();
        // Key i is last used in round i: key 5 in the round that `pack_idle` ends.
        for key in &keys {
            cache.save(&state_seen_at(key, 1_000), 0).await.unwrap();
            cache.pack_idle(100);
        }
        let hot = |cache: &WriteBackCache<MemoryStateStore>| -> Vec<bool> {
            let entries = cache.lock();
            keys.iter()
                .map(|k| matches!(entries[k.as_str()].slot, Slot::Hot(_)))
                .collect()
        };
        assert_eq!(hot(&cache), [true; 6], "under the limit nothing is packed");
        cache
            .save(&state_seen_at(&keys[5], 2_000), 1)
            .await
            .unwrap();
        cache.pack_idle(4);
        assert_eq!(
            hot(&cache),
            [false, false, false, false, true, true],
            "down to 2, the longest idle first"
        );
        cache.pack_idle(0);
        assert_eq!(hot(&cache), [false; 6]);
        let loaded = cache.load(&keys).await.unwrap();
        assert_eq!(loaded.len(), 6);
        assert_eq!(loaded[&keys[5]].state.latest_ms, 2_000);
    }
}
