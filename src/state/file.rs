//! `FileStateStore`: the `StateStore` port in one embedded `redb` file, for the CLI.
//!
//! One table, `subjects`, maps a subject to an 8-byte little-endian version followed by its
//! `SubjectState`, packed (`compact`; the JSON of earlier releases still loads). Every save
//! checks the stored version and writes in the same write transaction, so the port's
//! conditional-save contract holds here exactly as it does in DynamoDB. redb locks the
//! file, so a second process (or a second open in this one) is refused at `open` rather
//! than left to interleave with the first.
//!
//! The calls block on file I/O (a commit is an fsync); the `async` of the port is only its
//! shape.

use std::collections::HashMap;
use std::error::Error;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use redb::{
    CursorMut, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};

use super::{compact, Loaded, SaveOutcome, StateError, StateStore, Versioned, VersionedTally};
use crate::detect::tally::{Tally, TallyKey};
use crate::detect::SubjectState;

const SUBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("subjects");
/// Account-level tallies by item key: the same version header, then the tally packed
/// (`compact::pack_tally`), or its JSON as earlier releases wrote it.
const TALLIES: TableDefinition<&str, &[u8]> = TableDefinition::new("tallies");
/// Small named values kept with the state they describe: a backfill's checkpoints, so
/// that a checkpoint is never in one file and the state it vouches for in another.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// The meta key of a lower bound on every stored subject's `latest_ms`, so that pruning
/// can tell without reading the subjects that none is old enough to go: pruning read the
/// whole table back after every scan, and a scan over the last day or two finds nothing
/// to prune. Every write of a subject lowers it to that subject's time if it is older;
/// a prune that reads the table sets it to the oldest time left. Absent or unreadable (a
/// file that held subjects before this bound was kept): unknown, so pruning reads the
/// table. An earlier release writing to a file that has the bound does not lower it; its
/// older subjects then stay until this release saves an older subject or the bound's
/// own time falls out of the window, when the prune reads the table again.
const OLDEST_LATEST_KEY: &str = "subjects#oldest-latest-ms";

const VERSION_BYTES: usize = std::mem::size_of::<u64>();

const REDB_CACHE_BYTES: usize = 16 << 20;

pub struct FileStateStore {
    db: Database,
    path: PathBuf,
    /// Set while [`FileStateStore::deferring_durability`] runs: commits skip their fsync.
    deferred: AtomicBool,
}

impl std::fmt::Debug for FileStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileStateStore {
    /// Opens the state file at `path`, creating it and its parent directories if needed.
    pub fn open(path: &Path) -> Result<FileStateStore, StateError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                backend_error(
                    path,
                    format!("cannot create directory {}", parent.display()),
                    e,
                )
            })?;
        }
        // redb's page cache defaults to 1 GiB; the CLI keeps its subjects in memory
        // itself (the write-back cache) and mostly writes, so a small cache does.
        let db = redb::Builder::new()
            .set_cache_size(REDB_CACHE_BYTES)
            .create(path)
            .map_err(|e| {
            let message = match e {
                DatabaseError::DatabaseAlreadyOpen => {
                    format!("state file {} is in use by another geotrail process", path.display())
                }
                DatabaseError::LockProtocolMismatch => format!(
                    "state file {} is in use by another program built with a different redb version",
                    path.display()
                ),
                _ => format!("cannot open state file {}", path.display()),
            };
            backend_error(path, message, e)
        })?;
        let store = FileStateStore {
            db,
            path: path.to_owned(),
            deferred: AtomicBool::new(false),
        };
        // Created up front so that reads never have to tell "no table yet" from "no subject".
        let txn = store.begin_write()?;
        let no_subjects = txn
            .open_table(SUBJECTS)
            .map_err(|e| store.backend("cannot create the subjects table", e))?
            .is_empty()
            .map_err(|e| store.backend("cannot read the subjects table", e))?;
        txn.open_table(TALLIES)
            .map_err(|e| store.backend("cannot create the tallies table", e))?;
        txn.open_table(META)
            .map_err(|e| store.backend("cannot create the meta table", e))?;
        // With no subjects the bound is known: nothing is old.
        if no_subjects && store.oldest_latest(&txn)?.is_none() {
            store.set_oldest_latest(&txn, i64::MAX)?;
        }
        txn.commit()
            .map_err(|e| store.backend("cannot commit", e))?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `write` with every commit it makes durable only at its end, by one more commit
    /// that syncs them all: a scan's final write is a dozen transactions (each bounded, so
    /// that none holds every dirty page at once), and an fsync for each was time spent
    /// after the scan. A crash before the end loses them together, never a part: the file
    /// opens as it was before `write`. What a failing `write` committed is synced too, as
    /// it was when each commit synced.
    pub fn deferring_durability<T>(
        &self,
        write: impl FnOnce() -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let was = self.deferred.swap(true, Ordering::SeqCst);
        let written = write();
        self.deferred.store(was, Ordering::SeqCst);
        if was {
            return written;
        }
        let synced = self.begin_write().and_then(|txn| {
            txn.commit()
                .map_err(|e| self.backend("cannot sync the state file", e))
        });
        // The write's own error first: it says what was not written.
        let written = written?;
        synced.map(|()| written)
    }

    fn begin_write(&self) -> Result<WriteTransaction, StateError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| self.backend("cannot begin a write transaction", e))?;
        if self.deferred.load(Ordering::SeqCst) {
            txn.set_durability(Durability::None)
                .map_err(|e| self.backend("cannot defer a commit's fsync", e))?;
        }
        Ok(txn)
    }

    /// Saves every `(state, expected_version)` pair in one write transaction, so one commit
    /// (one fsync) covers them all. Each item succeeds or conflicts on its own; an error
    /// writes nothing. A subject listed twice is checked against its first write, as if the
    /// saves had been made one after the other.
    fn save_all(&self, items: &[(&SubjectState, u64)]) -> Result<Vec<SaveOutcome>, StateError> {
        let txn = self.begin_write()?;
        let mut outcomes = Vec::with_capacity(items.len());
        // The oldest `latest_ms` among the saved states; `None` while none is saved.
        let mut oldest_saved: Option<i64> = None;
        {
            let mut table = txn
                .open_table(SUBJECTS)
                .map_err(|e| self.backend("cannot open the subjects table", e))?;
            encode_and_write(
                items,
                |(state, _)| encode(state),
                |first, values| {
                    self.write_versioned(
                        &mut table,
                        first,
                        values,
                        &SUBJECT,
                        |i| (items[i].0.subject.as_str(), items[i].1),
                        |i, outcome| {
                            if let SaveOutcome::Saved { .. } = outcome {
                                let latest = items[i].0.latest_ms;
                                oldest_saved = Some(oldest_saved.map_or(latest, |o| o.min(latest)));
                            }
                            outcomes.push(outcome);
                        },
                    )
                },
            )?;
        }
        if let Some(oldest) = oldest_saved {
            self.lower_oldest_latest(&txn, oldest)?;
            txn.commit().map_err(|e| self.backend("cannot commit", e))?;
        } else {
            txn.abort()
                .map_err(|e| self.backend("cannot abort a write transaction", e))?;
        }
        Ok(outcomes)
    }

    /// Removes every subject last seen before `cutoff_ms` (event time, Unix epoch
    /// milliseconds), and every subject with no sightings at all, since neither has
    /// anything left that a new event could be judged against. Returns how many went.
    pub fn prune_before(&self, cutoff_ms: i64) -> Result<u64, StateError> {
        let txn = self.begin_write()?;
        // A bound of `i64::MIN` may be a subject never seen, which goes whatever the cutoff.
        if self
            .oldest_latest(&txn)?
            .is_some_and(|oldest| oldest >= cutoff_ms && oldest != i64::MIN)
        {
            txn.abort()
                .map_err(|e| self.backend("cannot abort a write transaction", e))?;
            return Ok(0);
        }
        let mut expired = Vec::new();
        // What is left once the expired are gone; `i64::MAX` for an empty table, so that
        // the next write sets it.
        let mut oldest_left = i64::MAX;
        {
            let mut table = txn
                .open_table(SUBJECTS)
                .map_err(|e| self.backend("cannot open the subjects table", e))?;
            for entry in table
                .iter()
                .map_err(|e| self.backend("cannot read the subjects table", e))?
            {
                let (subject, value) =
                    entry.map_err(|e| self.backend("cannot read the subjects table", e))?;
                let latest_ms = stored_latest_ms(subject.value(), value.value())?;
                if latest_ms == i64::MIN || latest_ms < cutoff_ms {
                    expired.push(subject.value().to_owned());
                } else {
                    oldest_left = oldest_left.min(latest_ms);
                }
            }
            for subject in &expired {
                table
                    .remove(subject.as_str())
                    .map_err(|e| self.backend(format!("cannot remove subject {subject}"), e))?;
            }
        }
        self.set_oldest_latest(&txn, oldest_left)?;
        txn.commit().map_err(|e| self.backend("cannot commit", e))?;
        Ok(expired.len() as u64)
    }

    /// The stored lower bound of the subjects' `latest_ms` ([`OLDEST_LATEST_KEY`]); `None`
    /// when unknown.
    fn oldest_latest(&self, txn: &WriteTransaction) -> Result<Option<i64>, StateError> {
        let table = txn
            .open_table(META)
            .map_err(|e| self.backend("cannot open the meta table", e))?;
        let stored = table
            .get(OLDEST_LATEST_KEY)
            .map_err(|e| self.backend(format!("cannot read {OLDEST_LATEST_KEY}"), e))?;
        // A value that does not parse is as good as none: pruning reads the table and
        // writes it again.
        Ok(stored.and_then(|v| v.value().parse().ok()))
    }

    fn set_oldest_latest(&self, txn: &WriteTransaction, oldest: i64) -> Result<(), StateError> {
        let mut table = txn
            .open_table(META)
            .map_err(|e| self.backend("cannot open the meta table", e))?;
        table
            .insert(OLDEST_LATEST_KEY, oldest.to_string().as_str())
            .map_err(|e| self.backend(format!("cannot write {OLDEST_LATEST_KEY}"), e))?;
        Ok(())
    }

    /// Lowers the stored bound to `oldest` if that is older; an unknown bound stays
    /// unknown, since the subjects stored before may be older still.
    fn lower_oldest_latest(&self, txn: &WriteTransaction, oldest: i64) -> Result<(), StateError> {
        match self.oldest_latest(txn)? {
            Some(known) if oldest < known => self.set_oldest_latest(txn, oldest),
            _ => Ok(()),
        }
    }

    /// The values stored under keys starting with `prefix`, by key.
    pub fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, StateError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| self.backend("cannot begin a read transaction", e))?;
        let table = txn
            .open_table(META)
            .map_err(|e| self.backend("cannot open the meta table", e))?;
        let mut out = Vec::new();
        for entry in table
            .range(prefix..)
            .map_err(|e| self.backend("cannot read the meta table", e))?
        {
            let (key, value) = entry.map_err(|e| self.backend("cannot read the meta table", e))?;
            if !key.value().starts_with(prefix) {
                break;
            }
            out.push((key.value().to_owned(), value.value().to_owned()));
        }
        Ok(out)
    }

    /// Writes `entries` in one transaction.
    pub fn put_meta(&self, entries: &[(String, String)]) -> Result<(), StateError> {
        // A scan of local files has no checkpoints, and saves them all the same: an empty
        // commit would still cost an fsync.
        if entries.is_empty() {
            return Ok(());
        }
        let txn = self.begin_write()?;
        {
            let mut table = txn
                .open_table(META)
                .map_err(|e| self.backend("cannot open the meta table", e))?;
            for (key, value) in entries {
                table
                    .insert(key.as_str(), value.as_str())
                    .map_err(|e| self.backend(format!("cannot write {key}"), e))?;
            }
        }
        txn.commit().map_err(|e| self.backend("cannot commit", e))
    }

    pub fn subjects_count(&self) -> Result<u64, StateError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| self.backend("cannot begin a read transaction", e))?;
        let table = txn
            .open_table(SUBJECTS)
            .map_err(|e| self.backend("cannot open the subjects table", e))?;
        table
            .len()
            .map_err(|e| self.backend("cannot count subjects", e))
    }

    /// Writes `values` (items `first..` of a save, each with room for its version header,
    /// filled in here) to `table`, each under its key only if the stored version is the
    /// one expected, one after the other, handing each item's outcome to `outcome`.
    /// `versioned(i)` is item `i`'s key and expected version.
    ///
    /// Keys expected to be new, in ascending order (a flush's are sorted, and on a first
    /// scan every key is new), go in through one cursor: redb splices a run of them into
    /// a leaf at once, and the check that a key is absent is a look at the entry after
    /// the cursor, not a walk from the root (a lookup then an insert walked it twice per
    /// key: over a 40-object scan with a state file, 7% more instructions in all). A key
    /// expected to be stored is written with one `insert`, whose returned old value is
    /// the check; when the check fails, the old value is put back.
    fn write_versioned<'k>(
        &self,
        table: &mut Table<'_, &'static str, &'static [u8]>,
        first: usize,
        values: &mut [Vec<u8>],
        kind: &Kind,
        versioned: impl Fn(usize) -> (&'k str, u64),
        mut outcome: impl FnMut(usize, SaveOutcome),
    ) -> Result<(), StateError> {
        let fail = |key: &str, e: redb::Error| {
            self.backend(format!("cannot write {} {key}", kind.name), e)
        };
        let mut k = 0;
        // Set when the cursor found item `k` stored at version 0, which only a value written
        // by hand can be: it is then written as an expected one is.
        let mut by_insert = false;
        while k < values.len() {
            let (key, expected) = versioned(first + k);
            if expected != 0 || by_insert {
                by_insert = false;
                let value = &mut values[k];
                value[..VERSION_BYTES].copy_from_slice(&(expected + 1).to_le_bytes());
                let (current, old) = match table
                    .insert(key, &**value)
                    .map_err(|e| fail(key, e.into()))?
                {
                    Some(old) => {
                        let current = (kind.version)(key, old.value())?;
                        // Copied only for a check that fails, which a scan never makes.
                        (current, (current != expected).then(|| old.value().to_vec()))
                    }
                    None => (0, None),
                };
                if current == expected {
                    outcome(
                        first + k,
                        SaveOutcome::Saved {
                            version: expected + 1,
                        },
                    );
                } else {
                    match old {
                        Some(old) => table.insert(key, old.as_slice()).map(drop),
                        None => table.remove(key).map(drop),
                    }
                    .map_err(|e| fail(key, e.into()))?;
                    outcome(first + k, SaveOutcome::Conflict);
                }
                k += 1;
                continue;
            }
            let mut cursor = table
                .lower_bound_mut(Bound::Included(key))
                .map_err(|e| fail(key, e.into()))?;
            let mut key = key;
            loop {
                match gap_for(&mut cursor, key, kind.version, |e| fail(key, e.into()))? {
                    Gap::Free => {
                        let value = &mut values[k];
                        value[..VERSION_BYTES].copy_from_slice(&1u64.to_le_bytes());
                        cursor
                            .insert_before(key, &**value)
                            .map_err(|e| fail(key, e.into()))?;
                        outcome(first + k, SaveOutcome::Saved { version: 1 });
                    }
                    Gap::Stored(0) => {
                        by_insert = true;
                        break;
                    }
                    Gap::Stored(_) => outcome(first + k, SaveOutcome::Conflict),
                    // Item `k` is left to a cursor of its own.
                    Gap::Far => break,
                }
                k += 1;
                match (k < values.len()).then(|| versioned(first + k)) {
                    Some((next, 0)) if next > key => key = next,
                    _ => break,
                }
            }
            cursor.close().map_err(|e| fail(key, e.into()))?;
        }
        Ok(())
    }

    fn backend(
        &self,
        message: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> StateError {
        backend_error(&self.path, message, source)
    }
}

impl StateStore for FileStateStore {
    /// Reads all of `subjects` in one read transaction, so they come from one snapshot.
    async fn load_each(&self, subjects: &[String]) -> Result<Loaded, StateError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| self.backend("cannot begin a read transaction", e))?;
        let table = txn
            .open_table(SUBJECTS)
            .map_err(|e| self.backend("cannot open the subjects table", e))?;
        let mut loaded = Loaded {
            states: foldhash::HashMap::with_capacity_and_hasher(subjects.len(), Default::default()),
            corrupt: Vec::new(),
        };
        for subject in subjects {
            let stored = table
                .get(subject.as_str())
                .map_err(|e| self.backend(format!("cannot read subject {subject}"), e))?;
            if let Some(stored) = stored {
                match decode(subject, stored.value()) {
                    Ok((version, state)) => {
                        loaded
                            .states
                            .insert(subject.clone(), Versioned { state, version });
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
        let mut outcomes = self.save_all(&[(state, expected_version)])?;
        Ok(outcomes.pop().expect("one outcome per item"))
    }

    async fn save_many(
        &self,
        items: &[(&SubjectState, u64)],
    ) -> Result<Vec<SaveOutcome>, StateError> {
        self.save_all(items)
    }

    async fn load_tallies(
        &self,
        keys: &[TallyKey],
    ) -> Result<HashMap<TallyKey, VersionedTally>, StateError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| self.backend("cannot begin a read transaction", e))?;
        let table = txn
            .open_table(TALLIES)
            .map_err(|e| self.backend("cannot open the tallies table", e))?;
        let mut loaded = HashMap::with_capacity(keys.len());
        for key in keys {
            let item_key = key.item_key();
            let stored = table
                .get(item_key.as_str())
                .map_err(|e| self.backend(format!("cannot read tally {item_key}"), e))?;
            if let Some(stored) = stored {
                let value = stored.value();
                let corrupt = |message: String| StateError::CorruptTally {
                    key: item_key.clone(),
                    message,
                };
                let header = value
                    .first_chunk::<VERSION_BYTES>()
                    .ok_or_else(|| corrupt("shorter than its version header".to_owned()))?;
                let tally = decode_tally(&item_key, &value[VERSION_BYTES..]).map_err(corrupt)?;
                loaded.insert(
                    key.clone(),
                    VersionedTally {
                        tally,
                        version: u64::from_le_bytes(*header),
                    },
                );
            }
        }
        Ok(loaded)
    }

    /// All in one write transaction, like subjects.
    async fn save_tallies(&self, items: &[(&Tally, u64)]) -> Result<Vec<SaveOutcome>, StateError> {
        let txn = self.begin_write()?;
        let mut outcomes = Vec::with_capacity(items.len());
        {
            let mut table = txn
                .open_table(TALLIES)
                .map_err(|e| self.backend("cannot open the tallies table", e))?;
            // Each packed after room for its version, as subjects are.
            let keys: Vec<String> = items.iter().map(|(tally, _)| tally.item_key()).collect();
            encode_and_write(
                items,
                |(tally, _)| compact::pack_tally_after(VERSION_BYTES, tally),
                |first, values| {
                    self.write_versioned(
                        &mut table,
                        first,
                        values,
                        &TALLY,
                        |i| (keys[i].as_str(), items[i].1),
                        |_, outcome| outcomes.push(outcome),
                    )
                },
            )?;
        }
        txn.commit().map_err(|e| self.backend("cannot commit", e))?;
        Ok(outcomes)
    }
}

fn backend_error(
    path: &Path,
    message: impl Into<String>,
    source: impl Error + Send + Sync + 'static,
) -> StateError {
    StateError::Backend {
        store: format!("file {}", path.display()),
        message: message.into(),
        source: Some(Box::new(source)),
    }
}

/// The stored value with a zeroed version header, for `put_if_version` to fill in; the
/// state in its packed form (`state::compact`): about a fifth of its JSON, and written and
/// read several times faster, which is most of what a scan with a state file adds.
fn encode(state: &SubjectState) -> Vec<u8> {
    compact::pack_after(VERSION_BYTES, state)
}

fn stored_version(subject: &str, value: &[u8]) -> Result<u64, StateError> {
    let header = value
        .first_chunk::<VERSION_BYTES>()
        .ok_or_else(|| StateError::Corrupt {
            subject: subject.to_owned(),
            source: serde::de::Error::custom(format!(
                "stored value is {} bytes, shorter than its {VERSION_BYTES}-byte version header",
                value.len()
            )),
        })?;
    Ok(u64::from_le_bytes(*header))
}

/// What a table holds, for [`FileStateStore::write_versioned`].
struct Kind {
    /// What an error calls one item.
    name: &'static str,
    /// The version of a stored value.
    version: fn(&str, &[u8]) -> Result<u64, StateError>,
}

const SUBJECT: Kind = Kind {
    name: "subject",
    version: stored_version,
};

/// A tally shorter than its version header is at version 0, as earlier releases took it.
const TALLY: Kind = Kind {
    name: "tally",
    version: |_, value| {
        Ok(value
            .first_chunk::<VERSION_BYTES>()
            .map_or(0, |h| u64::from_le_bytes(*h)))
    },
};

/// How many stored keys a cursor steps over to reach a new key's place before it seeks
/// it afresh: a step is a comparison or two, a seek a walk from the root.
const MAX_CURSOR_STEPS: usize = 8;

/// Where a key goes, seen from a cursor before it.
enum Gap {
    /// Right here: the key is not stored.
    Free,
    /// The key is stored, at this version.
    Stored(u64),
    /// More than [`MAX_CURSOR_STEPS`] stored keys ahead.
    Far,
}

/// Moves `cursor` forward to `key`'s place and says what is there. The cursor must be
/// before that place; `fail` says what a storage error was doing.
fn gap_for(
    cursor: &mut CursorMut<'_, &'static str, &'static [u8]>,
    key: &str,
    stored_version: fn(&str, &[u8]) -> Result<u64, StateError>,
    fail: impl Fn(redb::StorageError) -> StateError,
) -> Result<Gap, StateError> {
    for _ in 0..=MAX_CURSOR_STEPS {
        match cursor.peek_next().map_err(&fail)? {
            None => return Ok(Gap::Free),
            Some((stored, value)) => match stored.value().cmp(key) {
                std::cmp::Ordering::Greater => return Ok(Gap::Free),
                std::cmp::Ordering::Equal => {
                    return stored_version(key, value.value()).map(Gap::Stored)
                }
                std::cmp::Ordering::Less => {}
            },
        }
        cursor.next().map_err(&fail)?;
    }
    Ok(Gap::Far)
}

/// Items a thread encodes at a time: small enough that the writing thread soon has work,
/// large enough that handing chunks over costs nothing next to encoding them.
const ENCODE_CHUNK: usize = 256;

/// Encodes every item and hands the values, in order and a chunk at a time, to `write`
/// (with the index of the chunk's first item), encoding on the machine's other cores
/// while this thread writes. A scan's final flush writes every
/// subject and tally it touched once the readers are done: encoding first on every core
/// and then inserting on one left the other cores idle for the inserts, which take about
/// as long. Here this thread inserts chunks as they come and, when the next is not ready,
/// encodes one itself. The first error of `write` stops it; encoders stop at their next
/// chunk.
fn encode_and_write<T: Sync, E>(
    items: &[T],
    encode: impl Fn(&T) -> Vec<u8> + Sync,
    write: impl FnMut(usize, &mut [Vec<u8>]) -> Result<(), E>,
) -> Result<(), E> {
    let spare = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_sub(1);
    encode_and_write_with(spare, items, encode, write)
}

/// [`encode_and_write`] with at most `helpers` encoding threads (tests run it with helpers
/// on any machine).
fn encode_and_write_with<T: Sync, E>(
    helpers: usize,
    items: &[T],
    encode: impl Fn(&T) -> Vec<u8> + Sync,
    mut write: impl FnMut(usize, &mut [Vec<u8>]) -> Result<(), E>,
) -> Result<(), E> {
    let chunks = items.len().div_ceil(ENCODE_CHUNK);
    let helpers = helpers.min(chunks.saturating_sub(1));
    let encode_chunk = |c: usize| -> Vec<Vec<u8>> {
        let end = ((c + 1) * ENCODE_CHUNK).min(items.len());
        items[c * ENCODE_CHUNK..end].iter().map(&encode).collect()
    };
    if helpers == 0 {
        for c in 0..chunks {
            write(c * ENCODE_CHUNK, &mut encode_chunk(c))?;
        }
        return Ok(());
    }
    let shared = Chunks {
        next: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        panicked: AtomicBool::new(false),
        ready: Mutex::new((0..chunks).map(|_| None).collect()),
        published: Condvar::new(),
    };
    std::thread::scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|| {
                let _guard = PanicFlag(&shared);
                while let Some(c) = shared.claim(chunks) {
                    shared.publish(c, encode_chunk(c));
                }
            });
        }
        let mut written = || -> Result<(), E> {
            for c in 0..chunks {
                let mut values = loop {
                    if let Some(values) = shared.take(c) {
                        break values;
                    }
                    match shared.claim(chunks) {
                        Some(own) if own == c => break encode_chunk(c),
                        Some(own) => shared.publish(own, encode_chunk(own)),
                        // Every chunk is claimed, `c` by an encoder that will publish it.
                        None => break shared.wait_for(c),
                    }
                };
                write(c * ENCODE_CHUNK, &mut values)?;
            }
            Ok(())
        };
        // Also when `write` or this thread's own encoding panics: the encoders then stop
        // at their next chunk rather than encode the rest for nothing.
        let _stop = StopOnDrop(&shared);
        written()
    })
}

/// Raises [`Chunks::stop`] when the writing thread is done, however it ends.
struct StopOnDrop<'a>(&'a Chunks);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// The chunks of [`encode_and_write`]: claimed in order, published as they are encoded.
struct Chunks {
    next: AtomicUsize,
    /// Set when the writer is done, or has failed: encoders claim no more.
    stop: AtomicBool,
    /// Set by an encoder that panicked, so that the writer does not wait for it forever.
    panicked: AtomicBool,
    ready: Mutex<Vec<Option<Vec<Vec<u8>>>>>,
    published: Condvar,
}

impl Chunks {
    fn claim(&self, chunks: usize) -> Option<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let c = self.next.fetch_add(1, Ordering::Relaxed);
        (c < chunks).then_some(c)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<Vec<Vec<u8>>>>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, c: usize, values: Vec<Vec<u8>>) {
        self.lock()[c] = Some(values);
        self.published.notify_all();
    }

    fn take(&self, c: usize) -> Option<Vec<Vec<u8>>> {
        self.lock()[c].take()
    }

    fn wait_for(&self, c: usize) -> Vec<Vec<u8>> {
        let mut ready = self.lock();
        loop {
            if let Some(values) = ready[c].take() {
                return values;
            }
            // The encoder's panic message has gone to stderr through the panic hook; the
            // scope re-raises this thread's panic, not the encoder's.
            assert!(
                !self.panicked.load(Ordering::Relaxed),
                "a thread encoding states panicked"
            );
            ready = self
                .published
                .wait(ready)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Raises [`Chunks::panicked`] when an encoder unwinds.
struct PanicFlag<'a>(&'a Chunks);

impl Drop for PanicFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Under the lock: the writer checks the flag holding it, so the notice cannot
            // fall between its check and its wait.
            let _ready = self.0.lock();
            self.0.panicked.store(true, Ordering::Relaxed);
            self.0.published.notify_all();
        }
    }
}

/// A stored state's `latest_ms` (`i64::MIN`: never seen), read from the packed header
/// alone; a state written as JSON by an earlier release is decoded whole.
fn stored_latest_ms(subject: &str, value: &[u8]) -> Result<i64, StateError> {
    match value.get(VERSION_BYTES..) {
        Some(body) if body.first() != Some(&b'{') => compact::latest_ms(body),
        _ => return decode(subject, value).map(|(_, state)| state.latest_ms),
    }
    .map_err(|message| StateError::Corrupt {
        subject: subject.to_owned(),
        source: serde::de::Error::custom(message),
    })
}

/// Reads either form: packed, or the JSON that earlier releases wrote (a JSON object starts
/// with `{`, which no packed layout byte is), so a state file carries over an upgrade and
/// its subjects move to the packed form as they are saved again.
fn decode(subject: &str, value: &[u8]) -> Result<(u64, SubjectState), StateError> {
    let version = stored_version(subject, value)?;
    let corrupt = |source| StateError::Corrupt {
        subject: subject.to_owned(),
        source,
    };
    let body = &value[VERSION_BYTES..];
    let state = if body.first() == Some(&b'{') {
        serde_json::from_slice(body).map_err(corrupt)?
    } else {
        compact::unpack(body).map_err(|message| corrupt(serde::de::Error::custom(message)))?
    };
    Ok((version, state))
}

/// A stored tally's body in either form, as [`decode`] reads a subject's.
fn decode_tally(item_key: &str, body: &[u8]) -> Result<Tally, String> {
    if body.first() == Some(&b'{') {
        Tally::from_json(item_key, body)
    } else {
        compact::unpack_tally(body)?.checked(item_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tally::TALLY_VERSION;
    use crate::state::test_states::{check_port_contract, state_seen_at};

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

    fn open_in(dir: &tempfile::TempDir) -> FileStateStore {
        FileStateStore::open(&dir.path().join("state.redb")).unwrap()
    }

    /// Writes `value` as the stored bytes of `subject`, bypassing the store's encoding.
    fn put_raw(store: &FileStateStore, subject: &str, value: &[u8]) {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(SUBJECTS)
            .unwrap()
            .insert(subject, value)
            .unwrap();
        txn.commit().unwrap();
    }

    async fn load_one(store: &FileStateStore, subject: &str) -> Option<Versioned> {
        store
            .load(&[subject.to_owned()])
            .await
            .unwrap()
            .remove(subject)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn keeps_the_state_store_port_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        assert_eq!(store.subjects_count().unwrap(), 0);
        check_port_contract(&store).await;
        assert_eq!(store.subjects_count().unwrap(), 4);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn saved_state_survives_closing_and_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_seen_at(KEY, 1_000);
        {
            let store = open_in(&dir);
            store.save(&state, 0).await.unwrap();
            store.save(&state, 1).await.unwrap();
        }
        let store = open_in(&dir);
        let loaded = load_one(&store, KEY).await.unwrap();
        assert_eq!((loaded.version, loaded.state), (2, state.clone()));
        assert_eq!(
            store.save(&state, 2).await.unwrap(),
            SaveOutcome::Saved { version: 3 }
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_deferred_write_reaches_the_disk_whole_at_its_end_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        let (first, later, other) = (
            state_seen_at(KEY, 1_000),
            state_seen_at(KEY, 2_000),
            state_seen_at("AKIAOTHEROTHEROTHER1", 2_000),
        );
        store.save(&first, 0).await.unwrap();
        // The file as a crash would leave it: during the write, then just after it.
        let (during, after) = (
            dir.path().join("during.redb"),
            dir.path().join("after.redb"),
        );
        let outcomes = store
            .deferring_durability(|| {
                let mut outcomes = store.save_all(&[(&later, 1)])?;
                outcomes.extend(store.save_all(&[(&other, 0)])?);
                // Visible to the process at once.
                assert_eq!(store.subjects_count().unwrap(), 2);
                std::fs::copy(store.path(), &during).unwrap();
                Ok(outcomes)
            })
            .unwrap();
        assert_eq!(
            outcomes,
            [
                SaveOutcome::Saved { version: 2 },
                SaveOutcome::Saved { version: 1 }
            ]
        );
        std::fs::copy(store.path(), &after).unwrap();

        let crashed = FileStateStore::open(&during).unwrap();
        let loaded = load_one(&crashed, KEY).await.unwrap();
        assert_eq!((loaded.version, loaded.state), (1, first));
        assert_eq!(crashed.subjects_count().unwrap(), 1);

        let ended = FileStateStore::open(&after).unwrap();
        let loaded = load_one(&ended, KEY).await.unwrap();
        assert_eq!((loaded.version, loaded.state), (2, later));
        assert_eq!(ended.subjects_count().unwrap(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_deferred_write_that_fails_keeps_what_it_committed_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        let state = state_seen_at(KEY, 1_000);
        let err = store
            .deferring_durability(|| -> Result<(), StateError> {
                store.save_all(&[(&state, 0)])?;
                Err(StateError::Backend {
                    store: "test".to_owned(),
                    message: "the write stopped here".to_owned(),
                    source: None,
                })
            })
            .unwrap_err();
        assert!(err.to_string().contains("the write stopped here"), "{err}");
        let copy = dir.path().join("copy.redb");
        std::fs::copy(store.path(), &copy).unwrap();
        let reopened = FileStateStore::open(&copy).unwrap();
        assert_eq!(load_one(&reopened, KEY).await.unwrap().version, 1);
        // Commits are synced again once the write has ended.
        assert!(!store.deferred.load(Ordering::SeqCst));
    }

    #[test]
    fn meta_values_survive_reopening_and_are_listed_by_prefix_alone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_in(&dir);
            store
                .put_meta(&[
                    ("checkpoint#b/x".into(), "1".into()),
                    ("checkpoint#a/y".into(), "2".into()),
                    ("other".into(), "3".into()),
                ])
                .unwrap();
            store
                .put_meta(&[("checkpoint#b/x".into(), "4".into())])
                .unwrap();
        }
        let store = open_in(&dir);
        assert_eq!(
            store.meta_with_prefix("checkpoint#").unwrap(),
            [
                ("checkpoint#a/y".to_owned(), "2".to_owned()),
                ("checkpoint#b/x".to_owned(), "4".to_owned())
            ]
        );
        assert!(store.meta_with_prefix("nothing").unwrap().is_empty());
    }

    #[test]
    fn open_creates_missing_parent_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("deeper").join("state.redb");
        let store = FileStateStore::open(&path).unwrap();
        assert_eq!(store.path(), path);
        assert!(path.is_file());
    }

    #[test]
    fn second_open_while_first_is_open_fails_saying_the_file_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let first = FileStateStore::open(&path).unwrap();

        // redb's lock belongs to the open file, not the process, so a second open in this
        // process is refused just as one from another process would be.
        let err = FileStateStore::open(&path).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("in use by another geotrail process"),
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");

        drop(first);
        FileStateStore::open(&path)
            .expect("the file is free again once the first store is dropped");
    }

    #[test]
    fn opening_a_file_that_is_not_a_state_file_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(
            &path,
            "not a redb file, but long enough to look like a header".repeat(100),
        )
        .unwrap();
        let err = FileStateStore::open(&path).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn subjects_are_stored_packed_and_json_from_earlier_releases_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        let state = state_seen_at(KEY, 1_000);
        store.save(&state, 0).await.unwrap();
        {
            let txn = store.db.begin_read().unwrap();
            let table = txn.open_table(SUBJECTS).unwrap();
            let value = table.get(KEY).unwrap().unwrap();
            let body = &value.value()[VERSION_BYTES..];
            assert_eq!(compact::unpack(body).unwrap(), state, "packed");
            assert!(body.len() * 2 < serde_json::to_vec(&state).unwrap().len());
        }
        let json = [
            7u64.to_le_bytes().to_vec(),
            serde_json::to_vec(&state).unwrap(),
        ]
        .concat();
        put_raw(&store, KEY, &json);
        let loaded = load_one(&store, KEY).await.unwrap();
        assert_eq!((loaded.state, loaded.version), (state, 7));
        let garbled = [1u64.to_le_bytes().as_slice(), &[0xff, 0, 1]].concat();
        put_raw(&store, KEY, &garbled);
        let err = store.load(&[KEY.to_owned()]).await.unwrap_err();
        assert!(
            matches!(&err, StateError::Corrupt { subject, .. } if subject == KEY),
            "{err:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn corrupt_stored_values_load_as_corrupt_naming_the_subject() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        let bad_json = [1u64.to_le_bytes().as_slice(), b"{\"subject\": "].concat();
        let cases: [(&str, &[u8]); 3] = [
            ("bad json", &bad_json),
            ("short header", &[1, 0, 0]),
            ("empty", &[]),
        ];
        for (case, value) in cases {
            put_raw(&store, KEY, value);
            let err = store.load(&[KEY.to_owned()]).await.unwrap_err();
            assert!(
                matches!(&err, StateError::Corrupt { subject, .. } if subject == KEY),
                "{case}: {err:?}"
            );
            assert!(err.to_string().contains(KEY), "{case}: {err}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn load_each_reports_a_corrupt_subject_and_loads_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        put_raw(&store, KEY, &[1, 0, 0]);
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

    #[tokio::test(flavor = "current_thread")]
    async fn save_many_reports_each_outcome_and_commits_the_saved_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        let a = state_seen_at("AKIAAAAAAAAAAAAAAAAA", 1_000);
        let b = state_seen_at("AKIABBBBBBBBBBBBBBBB", 2_000);
        let c = state_seen_at("AKIACCCCCCCCCCCCCCCC", 3_000);
        store.save(&a, 0).await.unwrap();

        let outcomes = store
            .save_many(&[(&a, 0), (&b, 0), (&c, 0), (&c, 1)])
            .await
            .unwrap();
        assert_eq!(
            outcomes,
            [
                SaveOutcome::Conflict,
                SaveOutcome::Saved { version: 1 },
                SaveOutcome::Saved { version: 1 },
                SaveOutcome::Saved { version: 2 },
            ]
        );
        let loaded = store
            .load(&[a.subject.clone(), b.subject.clone(), c.subject.clone()])
            .await
            .unwrap();
        assert_eq!(loaded[&a.subject].version, 1);
        assert_eq!(loaded[&b.subject].version, 1);
        assert_eq!(loaded[&c.subject].version, 2);
        assert_eq!(store.subjects_count().unwrap(), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_large_enough_to_encode_on_several_threads_keeps_each_state_with_its_subject() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        let states: Vec<SubjectState> = (0..ENCODE_CHUNK * 5 + 7)
            .map(|i| state_seen_at(&format!("AKIA{i:016}"), i as i64 * 1_000))
            .collect();
        let items: Vec<(&SubjectState, u64)> = states.iter().map(|s| (s, 0)).collect();
        let outcomes = store.save_many(&items).await.unwrap();
        assert!(outcomes
            .iter()
            .all(|o| *o == SaveOutcome::Saved { version: 1 }));
        let subjects: Vec<String> = states.iter().map(|s| s.subject.clone()).collect();
        let loaded = store.load(&subjects).await.unwrap();
        for state in &states {
            assert_eq!(loaded[&state.subject].state, *state);
        }
    }

    #[test]
    fn every_value_is_written_in_order_and_the_first_error_stops_the_writes() {
        let items: Vec<u32> = (0..(ENCODE_CHUNK * 7 + 3) as u32).collect();
        let encode = |i: &u32| i.to_le_bytes().to_vec();
        for helpers in [0, 1, 3] {
            for len in [0, 1, ENCODE_CHUNK, ENCODE_CHUNK * 4, items.len()] {
                let mut written = Vec::new();
                encode_and_write_with(helpers, &items[..len], encode, |first, values| {
                    for (i, value) in (first..).zip(values) {
                        assert_eq!(*value, items[i].to_le_bytes(), "item {i}");
                        written.push(i);
                    }
                    Ok::<(), ()>(())
                })
                .unwrap();
                assert_eq!(written, (0..len).collect::<Vec<_>>(), "{helpers} helpers");
            }

            let failing = ENCODE_CHUNK * 2 + 5;
            let mut writes = 0;
            let result = encode_and_write_with(helpers, &items, encode, |first, values| {
                for i in first..first + values.len() {
                    writes += 1;
                    if i == failing {
                        return Err(i);
                    }
                }
                Ok(())
            });
            assert_eq!(result, Err(failing));
            assert_eq!(writes, failing + 1, "nothing is written after the error");
        }
    }

    #[test]
    fn an_encoder_that_panics_fails_the_write_instead_of_hanging_it() {
        let items: Vec<u32> = (0..(ENCODE_CHUNK * 8) as u32).collect();
        let caller = std::thread::current().id();
        for helpers in [1, 3] {
            // Only an encoding thread panics, so that the writer is left waiting on it; the
            // writer is slow to encode, so that the encoders get chunks to claim.
            let result = std::panic::catch_unwind(|| {
                encode_and_write_with(
                    helpers,
                    &items,
                    |&i| {
                        assert_eq!(std::thread::current().id(), caller, "damaged item");
                        if (i as usize).is_multiple_of(ENCODE_CHUNK) {
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                        Vec::new()
                    },
                    |_, _| Ok::<(), ()>(()),
                )
            });
            assert!(result.is_err(), "{helpers} helpers");
        }
        // And the writing thread's own panic.
        let result = std::panic::catch_unwind(|| {
            encode_and_write_with(
                2,
                &items,
                |_| Vec::new(),
                |first, _| {
                    assert!(first < ENCODE_CHUNK * 3, "damaged write");
                    Ok::<(), ()>(())
                },
            )
        });
        assert!(result.is_err());
    }

    /// Runs a future of the file store, which never waits on anything but the file.
    fn now<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: crate::proptest_cases(64),
            ..proptest::prelude::ProptestConfig::default()
        })]
        /// However saves mix keys new and stored, versions right and wrong, order sorted or
        /// not, and a key twice, they end as saving them one at a time would: the cursor
        /// that writes runs of new keys and the single inserts that write stored ones are
        /// the same conditional save. A stored version of 0 is a value written by hand.
        #[test]
        fn saves_end_as_saving_one_at_a_time_would(
            stored in proptest::collection::btree_map(0u16..600, 0u64..4, 0..150),
            saves in proptest::collection::vec((0u16..600, 0u64..4), 0..ENCODE_CHUNK + 80),
            sorted in proptest::prelude::any::<bool>(),
        ) {
            let key = |k: u16| format!("AKIA{k:016}");
            let dir = tempfile::tempdir().unwrap();
            let store = open_in(&dir);
            // Each stored and saved state is told apart by its time.
            let mut model: HashMap<String, (u64, i64)> = HashMap::new();
            for (&k, &version) in &stored {
                let state = state_seen_at(&key(k), -i64::from(k));
                let mut value = encode(&state);
                value[..VERSION_BYTES].copy_from_slice(&version.to_le_bytes());
                put_raw(&store, &key(k), &value);
                model.insert(key(k), (version, state.latest_ms));
            }
            let mut saves = saves;
            if sorted {
                saves.sort_by_key(|&(k, _)| k);
            }
            let states: Vec<SubjectState> = saves
                .iter()
                .enumerate()
                .map(|(i, &(k, _))| state_seen_at(&key(k), i as i64 + 1))
                .collect();
            let items: Vec<(&SubjectState, u64)> =
                states.iter().zip(&saves).map(|(s, &(_, v))| (s, v)).collect();

            let outcomes = now(store.save_many(&items)).unwrap();

            let mut expected = Vec::new();
            for (state, version) in &items {
                let current = model.get(&state.subject).map_or(0, |&(v, _)| v);
                if current == *version {
                    model.insert(state.subject.clone(), (version + 1, state.latest_ms));
                    expected.push(SaveOutcome::Saved { version: version + 1 });
                } else {
                    expected.push(SaveOutcome::Conflict);
                }
            }
            proptest::prop_assert_eq!(outcomes, expected);
            let subjects: Vec<String> = (0..600).map(key).collect();
            let loaded = now(store.load(&subjects)).unwrap();
            let found: HashMap<String, (u64, i64)> = loaded
                .into_iter()
                .map(|(subject, v)| (subject, (v.version, v.state.latest_ms)))
                .collect();
            proptest::prop_assert_eq!(found, model);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn save_many_writes_nothing_when_any_item_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        let a = state_seen_at("AKIAAAAAAAAAAAAAAAAA", 1_000);
        let broken = state_seen_at("AKIABROKENBROKENBROK", 2_000);
        // A value too short to hold a version makes the save of `broken` fail mid-transaction,
        // after `a` has been written to it.
        put_raw(&store, &broken.subject, &[7]);

        let err = store.save_many(&[(&a, 0), (&broken, 1)]).await.unwrap_err();
        assert!(
            matches!(&err, StateError::Corrupt { subject, .. } if *subject == broken.subject),
            "{err:?}"
        );
        assert_eq!(
            store.subjects_count().unwrap(),
            1,
            "only the broken subject is stored"
        );
        assert_eq!(
            store.save_many(&[(&a, 0)]).await.unwrap(),
            [SaveOutcome::Saved { version: 1 }]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn pruning_reads_the_subjects_only_when_one_may_be_old_enough() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        let recent = state_seen_at("AKIARECENTRECENTRECE", 9_000);
        store.save(&recent, 0).await.unwrap();
        // Stored behind the store's back, so only a prune that reads the table finds it.
        let mut hidden = encode(&state_seen_at("AKIAHIDDENHIDDENHIDD", 1_000));
        hidden[..VERSION_BYTES].copy_from_slice(&1u64.to_le_bytes());
        put_raw(&store, "AKIAHIDDENHIDDENHIDD", &hidden);

        assert_eq!(
            store.prune_before(9_000).unwrap(),
            0,
            "nothing written is older"
        );
        assert_eq!(store.subjects_count().unwrap(), 2);
        assert_eq!(
            store.prune_before(9_001).unwrap(),
            2,
            "once a written subject may be old, the table is read, and the hidden one goes too"
        );
        assert_eq!(store.subjects_count().unwrap(), 0);

        // An older subject written through the store lowers the bound.
        store.save(&recent, 0).await.unwrap();
        store
            .save(&state_seen_at("AKIAOLDOLDOLDOLDOLDO", 1_000), 0)
            .await
            .unwrap();
        assert_eq!(store.prune_before(2_000).unwrap(), 1);
        assert_eq!(store.subjects_count().unwrap(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_file_that_does_not_know_its_oldest_subject_is_pruned_by_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = FileStateStore::open(&path).unwrap();
            store
                .save(&state_seen_at("AKIAOLDOLDOLDOLDOLDO", 1_000), 0)
                .await
                .unwrap();
            // As a file from a release that kept no bound, or whose bound is damaged.
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(OLDEST_LATEST_KEY, "not a number")
                .unwrap();
            txn.commit().unwrap();
        }
        let store = FileStateStore::open(&path).unwrap();
        store
            .save(&state_seen_at("AKIARECENTRECENTRECE", 9_000), 0)
            .await
            .unwrap();
        assert_eq!(store.prune_before(5_000).unwrap(), 1);
        assert_eq!(store.prune_before(9_000).unwrap(), 0);
        assert_eq!(store.subjects_count().unwrap(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn prune_before_removes_only_subjects_last_seen_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        let old = state_seen_at("AKIAOLDOLDOLDOLDOLDO", 1_000);
        let at_cutoff = state_seen_at("AKIACUTOFFCUTOFFCUTO", 5_000);
        let recent = state_seen_at("AKIARECENTRECENTRECE", 9_000);
        let never_seen = SubjectState::new("AKIAEMPTYEMPTYEMPTYE");
        for state in [&old, &at_cutoff, &recent, &never_seen] {
            store.save(state, 0).await.unwrap();
        }

        assert_eq!(store.prune_before(5_000).unwrap(), 2);
        let asked = [&old, &at_cutoff, &recent, &never_seen].map(|s| s.subject.clone());
        let mut kept: Vec<_> = store.load(&asked).await.unwrap().into_keys().collect();
        kept.sort();
        assert_eq!(kept, [at_cutoff.subject.clone(), recent.subject.clone()]);
        assert_eq!(store.subjects_count().unwrap(), 2);

        assert_eq!(
            store.prune_before(5_000).unwrap(),
            0,
            "a second prune finds nothing"
        );
        assert_eq!(
            store.save(&old, 0).await.unwrap(),
            SaveOutcome::Saved { version: 1 },
            "a pruned subject starts over"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tallies_are_stored_packed_and_json_from_earlier_releases_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(&dir);
        let key = TallyKey::key_addresses(KEY);
        let Tally::KeyAddresses(mut inner) = key.empty() else {
            unreachable!()
        };
        inner.latest_ms = 1_000;
        inner.applied.push(u64::MAX);
        let tally = Tally::KeyAddresses(inner);
        assert_eq!(
            store.save_tallies(&[(&tally, 0)]).await.unwrap(),
            [SaveOutcome::Saved { version: 1 }]
        );
        let item_key = key.item_key();
        let put_raw_tally = |value: &[u8]| {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(TALLIES)
                .unwrap()
                .insert(item_key.as_str(), value)
                .unwrap();
            txn.commit().unwrap();
        };
        {
            let txn = store.db.begin_read().unwrap();
            let table = txn.open_table(TALLIES).unwrap();
            let value = table.get(item_key.as_str()).unwrap().unwrap();
            let body = &value.value()[VERSION_BYTES..];
            assert_eq!(compact::unpack_tally(body).unwrap(), tally, "packed");
        }
        let load = || store.load_tallies(std::slice::from_ref(&key));

        put_raw_tally(&[7u64.to_le_bytes().as_slice(), tally.to_json().as_bytes()].concat());
        let loaded = load().await.unwrap().remove(&key).unwrap();
        assert_eq!((loaded.tally, loaded.version), (tally.clone(), 7));

        let other = TallyKey::key_addresses("AKIAOTHEROTHEROTHERO").empty();
        let mut later = tally.clone();
        if let Tally::KeyAddresses(k) = &mut later {
            k.v = TALLY_VERSION + 1;
        }
        for (case, body) in [
            ("garbled", vec![1, 3, 0xff]),
            ("another key's tally", compact::pack_tally(&other)),
            ("a later layout", compact::pack_tally(&later)),
        ] {
            put_raw_tally(&[1u64.to_le_bytes().as_slice(), &body].concat());
            let err = load().await.unwrap_err();
            assert!(
                matches!(&err, StateError::CorruptTally { key, .. } if *key == item_key),
                "{case}: {err:?}"
            );
        }
    }
}
