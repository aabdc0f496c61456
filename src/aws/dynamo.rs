//! `DynamoStateStore`: one DynamoDB item per subject, written only if its version is still
//! the one that was read.
//!
//! Item layout (partition key `pk`, no sort key):
//!
//! | attribute    | type | content                                                        |
//! |--------------|------|----------------------------------------------------------------|
//! | `pk`         | S    | the subject (access key id or principal ARN)                   |
//! | `version`    | N    | 1 on the first save, +1 on every save                          |
//! | `state`      | S    | the [`SubjectState`] as JSON: readable in the console          |
//! | `expires_at` | N    | epoch seconds, last sighting + `ttl_days`: the table's TTL key |
//! | `updated_at` | N    | epoch seconds of the write (wall clock; for people, not logic) |
//!
//! Reads are strongly consistent: an eventually consistent read could return a version
//! older than the latest write, and every save built on it would then conflict.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use futures_util::{StreamExt, TryStreamExt};
use serde::de::Error as _;

use super::backoff::Backoff;
use crate::detect::tally::{Tally, TallyKey};
use crate::detect::SubjectState;
use crate::state::{Loaded, SaveOutcome, StateError, StateStore, Versioned, VersionedTally};

/// BatchGetItem takes at most 100 keys per call.
pub const BATCH_GET_MAX_KEYS: usize = 100;
/// Items are refused above this, before any request: DynamoDB's limit is 400 KB, and the
/// margin keeps a state that grows a little between load and save from hitting it.
pub const MAX_ITEM_BYTES: usize = 350 * 1024;
/// DynamoDB's own item size limit, reported when the service refuses an item anyway.
const DYNAMODB_ITEM_LIMIT: usize = 400 * 1024;
/// BatchGetItem calls in flight at once for one `load`.
const PARALLEL_BATCHES: usize = 4;
/// PutItems in flight at once when saving an object's subjects; on-demand tables absorb
/// this easily, and it keeps one object's writes to a few round trips.
const PARALLEL_WRITES: usize = 16;

const PK: &str = "pk";
const VERSION: &str = "version";
const STATE: &str = "state";
/// The attribute of a tally item holding its JSON (a subject item has `state`).
const TALLY: &str = "tally";
const EXPIRES_AT: &str = "expires_at";
const UPDATED_AT: &str = "updated_at";

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
    ttl_days: i64,
    backoff: Backoff,
}

impl DynamoStateStore {
    /// `ttl_days`: how long after a subject's last sighting its item may be deleted by the
    /// table's TTL (negative values count as 0).
    pub fn new(client: Client, table: impl Into<String>, ttl_days: i64) -> DynamoStateStore {
        DynamoStateStore {
            client,
            table: table.into(),
            ttl_days: ttl_days.max(0),
            backoff: Backoff::default(),
        }
    }

    /// Replaces the `UnprocessedKeys` retry policy.
    pub fn with_backoff(mut self, backoff: Backoff) -> DynamoStateStore {
        self.backoff = backoff;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The items under `keys` as stored (keys named at most once), with the retries of
    /// unprocessed keys the subjects' reads get: for the other items the table keeps
    /// beside the subjects (a backfill's checkpoints).
    pub(crate) async fn get_items(&self, keys: &[String]) -> Result<Vec<Item>, StateError> {
        let mut items = Vec::new();
        for chunk in keys.chunks(BATCH_GET_MAX_KEYS) {
            items.extend(self.load_chunk(chunk.to_vec()).await?);
        }
        Ok(items)
    }

    fn store_name(&self) -> String {
        format!("table {}", self.table)
    }

    fn backend_error(
        &self,
        message: String,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StateError {
        StateError::Backend {
            store: self.store_name(),
            message,
            source: Some(Box::new(source)),
        }
    }

    /// One BatchGetItem call for up to 100 keys; what it did not process comes back as
    /// `unprocessed`.
    async fn get_page(&self, keys: Vec<Item>) -> Result<BatchPage<Item, Item>, StateError> {
        let count = keys.len();
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| {
                self.backend_error(format!("building a BatchGetItem of {count} keys"), e)
            })?;
        let output = self
            .client
            .batch_get_item()
            .request_items(&self.table, request)
            .send()
            .await
            .map_err(|e| self.backend_error(format!("BatchGetItem of {count} keys failed"), e))?;
        let items = output
            .responses
            .and_then(|mut r| r.remove(&self.table))
            .unwrap_or_default();
        let unprocessed = output
            .unprocessed_keys
            .and_then(|mut u| u.remove(&self.table))
            .map(|k| k.keys)
            .unwrap_or_default();
        Ok(BatchPage { items, unprocessed })
    }

    async fn load_chunk(&self, subjects: Vec<String>) -> Result<Vec<Item>, StateError> {
        let keys = subjects
            .into_iter()
            .map(|s| HashMap::from([(PK.to_owned(), AttributeValue::S(s))]))
            .collect();
        get_all_pages(
            &self.table,
            keys,
            &self.backoff,
            |keys| self.get_page(keys),
            tokio::time::sleep,
        )
        .await
    }
}

impl StateStore for DynamoStateStore {
    async fn load_each(&self, subjects: &[String]) -> Result<Loaded, StateError> {
        // BatchGetItem rejects a request that names one key twice.
        let mut seen = HashSet::with_capacity(subjects.len());
        let unique: Vec<String> = subjects
            .iter()
            .filter(|s| seen.insert(s.as_str()))
            .cloned()
            .collect();
        let chunks: Vec<Vec<String>> = unique
            .chunks(BATCH_GET_MAX_KEYS)
            .map(<[String]>::to_vec)
            .collect();
        let pages: Vec<Vec<Item>> = futures_util::stream::iter(chunks)
            .map(|chunk| self.load_chunk(chunk))
            .buffer_unordered(PARALLEL_BATCHES)
            .try_collect()
            .await?;
        let mut loaded = Loaded {
            states: foldhash::HashMap::with_capacity_and_hasher(unique.len(), Default::default()),
            corrupt: Vec::new(),
        };
        for item in pages.into_iter().flatten() {
            match parse_item(&item) {
                Ok(versioned) => {
                    loaded
                        .states
                        .insert(versioned.state.subject.clone(), versioned);
                }
                Err((pk, err)) => loaded.corrupt.push((pk, err)),
            }
        }
        Ok(loaded)
    }

    async fn save(
        &self,
        state: &SubjectState,
        expected_version: u64,
    ) -> Result<SaveOutcome, StateError> {
        let subject = &state.subject;
        let json = serde_json::to_string(state).map_err(|source| StateError::Corrupt {
            subject: subject.clone(),
            source,
        })?;
        // The TTL runs from the subject's last sighting (event time), so history that is
        // no longer useful disappears whatever the wall clock says.
        let last_seen_s = state.last_seen_ms().map(|ms| ms.div_euclid(1000));
        self.put_versioned(
            "subject",
            subject,
            STATE,
            json,
            last_seen_s,
            expected_version,
        )
        .await
    }

    /// One conditional PutItem per subject, several in flight: an object with a hundred
    /// changed subjects otherwise waits out a hundred round trips one after another.
    async fn save_many(
        &self,
        items: &[(&SubjectState, u64)],
    ) -> Result<Vec<SaveOutcome>, StateError> {
        // The futures are made up front: a `map` closure over borrowed items inside the
        // stream trips the compiler's `Send` check for trait futures (higher-ranked
        // lifetimes).
        let saves: Vec<_> = items
            .iter()
            .map(|(state, version)| self.save(state, *version))
            .collect();
        futures_util::stream::iter(saves)
            .buffered(PARALLEL_WRITES)
            .try_collect()
            .await
    }

    /// The same batched reads as subjects: ceil(n / 100) BatchGetItem calls for n keys.
    async fn load_tallies(
        &self,
        keys: &[TallyKey],
    ) -> Result<HashMap<TallyKey, VersionedTally>, StateError> {
        let mut by_item: HashMap<String, TallyKey> =
            keys.iter().map(|k| (k.item_key(), k.clone())).collect();
        let unique: Vec<String> = by_item.keys().cloned().collect();
        let chunks: Vec<Vec<String>> = unique
            .chunks(BATCH_GET_MAX_KEYS)
            .map(<[String]>::to_vec)
            .collect();
        let pages: Vec<Vec<Item>> = futures_util::stream::iter(chunks)
            .map(|chunk| self.load_chunk(chunk))
            .buffer_unordered(PARALLEL_BATCHES)
            .try_collect()
            .await?;
        let mut loaded = HashMap::with_capacity(unique.len());
        for item in pages.into_iter().flatten() {
            let (item_key, versioned) = parse_tally_item(&item)?;
            if let Some(key) = by_item.remove(&item_key) {
                loaded.insert(key, versioned);
            }
        }
        Ok(loaded)
    }

    /// One conditional PutItem per tally, several in flight.
    async fn save_tallies(&self, items: &[(&Tally, u64)]) -> Result<Vec<SaveOutcome>, StateError> {
        let saves: Vec<_> = items
            .iter()
            .map(|(tally, version)| self.save_tally(tally, *version))
            .collect();
        futures_util::stream::iter(saves)
            .buffered(PARALLEL_WRITES)
            .try_collect()
            .await
    }
}

impl DynamoStateStore {
    async fn save_tally(
        &self,
        tally: &Tally,
        expected_version: u64,
    ) -> Result<SaveOutcome, StateError> {
        // Like a subject's, the TTL runs from the tally's latest event time.
        let latest_s = (tally.latest_ms() != i64::MIN).then(|| tally.latest_ms().div_euclid(1000));
        self.put_versioned(
            "tally",
            &tally.item_key(),
            TALLY,
            tally.to_json(),
            latest_s,
            expected_version,
        )
        .await
    }

    /// Writes the item `pk` holding `json` in `attribute`, if the stored version is still
    /// `expected_version` (0: absent). Its TTL runs from `latest_s` (event time, epoch
    /// seconds), or from the write when nothing was seen yet. `what` names the kind of
    /// item in errors: "subject", "tally".
    async fn put_versioned(
        &self,
        what: &str,
        pk: &str,
        attribute: &str,
        json: String,
        latest_s: Option<i64>,
        expected_version: u64,
    ) -> Result<SaveOutcome, StateError> {
        let new_version = expected_version
            .checked_add(1)
            .ok_or_else(|| StateError::Backend {
                store: self.store_name(),
                message: format!("{what} {pk}: version {expected_version} cannot be incremented"),
                source: None,
            })?;
        let now = epoch_seconds_now();
        let expires_at = latest_s
            .unwrap_or(now)
            .saturating_add(self.ttl_days.saturating_mul(86_400));
        let item: Item = HashMap::from([
            (PK.to_owned(), AttributeValue::S(pk.to_owned())),
            (
                VERSION.to_owned(),
                AttributeValue::N(new_version.to_string()),
            ),
            (attribute.to_owned(), AttributeValue::S(json)),
            (
                EXPIRES_AT.to_owned(),
                AttributeValue::N(expires_at.to_string()),
            ),
            (UPDATED_AT.to_owned(), AttributeValue::N(now.to_string())),
        ]);
        let bytes = item_size(&item);
        if bytes > MAX_ITEM_BYTES {
            return Err(StateError::TooLarge {
                subject: pk.to_owned(),
                bytes,
                limit: MAX_ITEM_BYTES,
            });
        }

        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let request = if expected_version == 0 {
            request
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
        } else {
            request
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(
                    ":expected",
                    AttributeValue::N(expected_version.to_string()),
                )
        };
        match request.send().await {
            Ok(_) => Ok(SaveOutcome::Saved {
                version: new_version,
            }),
            Err(err) => {
                if let Some(service) = err.as_service_error() {
                    if service.is_conditional_check_failed_exception() {
                        return Ok(SaveOutcome::Conflict);
                    }
                    // Our size estimate is conservative; should the service still refuse the
                    // item, say so as the data fault it is, not as a retryable outage.
                    if service.code() == Some("ValidationException")
                        && service.message().is_some_and(|m| m.contains("size"))
                    {
                        return Err(StateError::TooLarge {
                            subject: pk.to_owned(),
                            bytes,
                            limit: DYNAMODB_ITEM_LIMIT,
                        });
                    }
                }
                Err(self.backend_error(
                    format!("PutItem of {what} {pk} (expected version {expected_version}) failed"),
                    err,
                ))
            }
        }
    }
}

fn parse_tally_item(item: &Item) -> Result<(String, VersionedTally), StateError> {
    let key = match item.get(PK) {
        Some(AttributeValue::S(pk)) => pk.clone(),
        _ => "<item without a string pk>".to_owned(),
    };
    let corrupt = |message: String| StateError::CorruptTally {
        key: key.clone(),
        message,
    };
    let version = match item.get(VERSION) {
        Some(AttributeValue::N(n)) => n
            .parse::<u64>()
            .map_err(|e| corrupt(format!("attribute {VERSION} {n:?} is not a version: {e}")))?,
        _ => {
            return Err(corrupt(format!(
                "attribute {VERSION} is missing or not a number"
            )))
        }
    };
    let Some(AttributeValue::S(json)) = item.get(TALLY) else {
        return Err(corrupt(format!(
            "attribute {TALLY} is missing or not a string"
        )));
    };
    let tally = Tally::from_json(&key, json.as_bytes()).map_err(corrupt)?;
    Ok((key, VersionedTally { tally, version }))
}

/// What one BatchGetItem call returned, as the retry loop sees it.
#[derive(Debug)]
struct BatchPage<K, I> {
    items: Vec<I>,
    unprocessed: Vec<K>,
}

/// Fetches `keys` with `fetch`, asking again for whatever comes back unprocessed.
///
/// DynamoDB returns `UnprocessedKeys` when it throttles part of a batch or when the
/// response would pass 16 MB; either way the rest is asked for again after a full-jitter
/// delay. The delay grows only while calls make no progress, and the loop gives up after
/// `backoff.max_attempts` such calls in a row (a transient error: the object is retried
/// later). Calls that do make progress shrink the key set, so the loop always ends.
///
/// Generic over the page source so that this path, which moto never exercises, is
/// tested with a scripted fake.
async fn get_all_pages<K, I, F, Fut, S, SFut>(
    table: &str,
    keys: Vec<K>,
    backoff: &Backoff,
    mut fetch: F,
    mut sleep: S,
) -> Result<Vec<I>, StateError>
where
    F: FnMut(Vec<K>) -> Fut,
    Fut: Future<Output = Result<BatchPage<K, I>, StateError>>,
    S: FnMut(Duration) -> SFut,
    SFut: Future<Output = ()>,
{
    let mut items = Vec::new();
    let mut pending = keys;
    let mut stalled = 0u32;
    while !pending.is_empty() {
        let asked = pending.len();
        let page = fetch(std::mem::take(&mut pending)).await?;
        items.extend(page.items);
        if page.unprocessed.is_empty() {
            break;
        }
        if page.unprocessed.len() < asked {
            stalled = 0;
        } else {
            stalled += 1;
            if stalled >= backoff.max_attempts {
                return Err(StateError::Backend {
                    store: format!("table {table}"),
                    message: format!(
                        "BatchGetItem left {} keys unprocessed after {stalled} attempts in a row without progress",
                        page.unprocessed.len()
                    ),
                    source: None,
                });
            }
        }
        sleep(backoff.delay(stalled)).await;
        pending = page.unprocessed;
    }
    Ok(items)
}

/// The item's state, or its key and what is wrong with it.
fn parse_item(item: &Item) -> Result<Versioned, (String, StateError)> {
    let pk = match item.get(PK) {
        Some(AttributeValue::S(pk)) => pk.clone(),
        // Without a key there is no subject to name; only a foreign writer does this.
        _ => "<item without a string pk>".to_owned(),
    };
    parse_state(&pk, item).map_err(|err| (pk, err))
}

fn parse_state(pk: &str, item: &Item) -> Result<Versioned, StateError> {
    let corrupt = |msg: String| StateError::Corrupt {
        subject: pk.to_owned(),
        source: serde_json::Error::custom(msg),
    };
    let version = match item.get(VERSION) {
        Some(AttributeValue::N(n)) => n
            .parse::<u64>()
            .map_err(|e| corrupt(format!("attribute {VERSION} {n:?} is not a version: {e}")))?,
        _ => {
            return Err(corrupt(format!(
                "attribute {VERSION} is missing or not a number"
            )))
        }
    };
    let json = match item.get(STATE) {
        Some(AttributeValue::S(s)) => s,
        _ => {
            return Err(corrupt(format!(
                "attribute {STATE} is missing or not a string"
            )))
        }
    };
    let state: SubjectState = serde_json::from_str(json).map_err(|source| StateError::Corrupt {
        subject: pk.to_owned(),
        source,
    })?;
    if state.subject != pk {
        return Err(corrupt(format!(
            "the stored state is for subject {:?}",
            state.subject
        )));
    }
    Ok(Versioned { state, version })
}

/// An upper bound on DynamoDB's size of an item: attribute names plus values, counting a
/// number as its decimal digits (DynamoDB stores about half that).
fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    // This store writes nothing else; count generously if it ever does.
                    _ => 1024,
                }
        })
        .sum()
}

fn epoch_seconds_now() -> i64 {
    // A clock before 1970 is a broken host; 0 then only makes TTLs early.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Creates a state table as the SAM template does (on-demand, key `pk`, TTL on
/// `expires_at`) and waits until it is active; an existing table is left as it is. For
/// tests and local development: production tables come from the template.
pub async fn create_table(client: &Client, name: &str) -> Result<(), StateError> {
    let store = || format!("table {name}");
    let fail =
        |message: &str, source: Box<dyn std::error::Error + Send + Sync>| StateError::Backend {
            store: store(),
            message: message.to_owned(),
            source: Some(source),
        };
    let key = KeySchemaElement::builder()
        .attribute_name(PK)
        .key_type(KeyType::Hash)
        .build()
        .map_err(|e| fail("building the key schema", e.into()))?;
    let attribute = AttributeDefinition::builder()
        .attribute_name(PK)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| fail("building the attribute definitions", e.into()))?;
    let created = client
        .create_table()
        .table_name(name)
        .key_schema(key)
        .attribute_definitions(attribute)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(err) => return Err(fail("CreateTable failed", err.into())),
    }
    client
        .wait_until_table_exists()
        .table_name(name)
        .wait(Duration::from_secs(120))
        .await
        .map_err(|e| fail("waiting for the table to become active", e.into()))?;
    let ttl = TimeToLiveSpecification::builder()
        .attribute_name(EXPIRES_AT)
        .enabled(true)
        .build()
        .map_err(|e| fail("building the TTL specification", e.into()))?;
    match client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // Enabling TTL twice is refused with "TimeToLive is already enabled".
        Err(err)
            if err
                .as_service_error()
                .and_then(|e| e.message())
                .is_some_and(|m| m.contains("already enabled")) =>
        {
            Ok(())
        }
        Err(err) => Err(fail("UpdateTimeToLive failed", err.into())),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A scripted BatchGetItem: each call answers from the next entry of `script`, which
    /// says how many of the asked keys to leave unprocessed (the last ones asked).
    struct FakePages {
        script: RefCell<Vec<usize>>,
        asked: RefCell<Vec<Vec<u32>>>,
    }

    impl FakePages {
        fn new(script: &[usize]) -> FakePages {
            FakePages {
                script: RefCell::new(script.iter().rev().copied().collect()),
                asked: RefCell::new(Vec::new()),
            }
        }

        async fn fetch(&self, keys: Vec<u32>) -> Result<BatchPage<u32, u32>, StateError> {
            self.asked.borrow_mut().push(keys.clone());
            let leave = self.script.borrow_mut().pop().unwrap_or(0).min(keys.len());
            let split = keys.len() - leave;
            // Pretend odd keys were never saved: absent keys return no item, yet count as
            // processed.
            let items = keys[..split]
                .iter()
                .copied()
                .filter(|k| k % 2 == 0)
                .collect();
            Ok(BatchPage {
                items,
                unprocessed: keys[split..].to_vec(),
            })
        }
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
            .block_on(f)
    }

    #[test]
    fn unprocessed_keys_are_asked_again_until_all_are_done() {
        let cases: [(&str, &[usize], usize); 4] = [
            ("all processed at once", &[0], 1),
            ("a throttled tail, twice", &[30, 10, 0], 3),
            (
                "nothing processed twice, then everything",
                &[100, 100, 0],
                3,
            ),
            ("one key at a time (16 MB responses)", &[3, 2, 1, 0], 4),
        ];
        for (case, script, calls) in cases {
            let fake = FakePages::new(script);
            let keys: Vec<u32> = (0..if case.starts_with("one") { 4 } else { 100 }).collect();
            let delays = RefCell::new(Vec::new());
            let items = run(get_all_pages(
                "t",
                keys.clone(),
                &Backoff::default(),
                |k| fake.fetch(k),
                |d| {
                    delays.borrow_mut().push(d);
                    std::future::ready(())
                },
            ))
            .unwrap_or_else(|e| panic!("{case}: {e}"));
            let mut items = items;
            items.sort_unstable();
            let want: Vec<u32> = keys.iter().copied().filter(|k| k % 2 == 0).collect();
            assert_eq!(items, want, "{case}: every present key is returned once");
            let asked = fake.asked.borrow();
            assert_eq!(asked.len(), calls, "{case}: calls");
            for pair in asked.windows(2) {
                let (before, after) = (&pair[0], &pair[1]);
                assert!(
                    after.len() < before.len() || after == before,
                    "{case}: a retry asks only for what was left"
                );
            }
            assert_eq!(
                delays.borrow().len(),
                calls - 1,
                "{case}: one delay before each retry"
            );
        }
    }

    #[test]
    fn backs_off_exponentially_while_nothing_is_processed_then_gives_up() {
        let backoff = Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(40),
            max_attempts: 5,
        };
        let fake = FakePages::new(&[7; 100]);
        let delays = RefCell::new(Vec::new());
        let err = run(get_all_pages(
            "geotrail-state",
            (0..7).collect(),
            &backoff,
            |k| fake.fetch(k),
            |d| {
                delays.borrow_mut().push(d);
                std::future::ready(())
            },
        ))
        .expect_err("never processed: must give up");
        assert_eq!(fake.asked.borrow().len(), 5, "bounded by max_attempts");
        let delays = delays.borrow();
        assert_eq!(delays.len(), 4);
        for (n, d) in delays.iter().enumerate() {
            assert!(
                *d <= backoff.ceiling(n as u32 + 1),
                "delay {n} {d:?} within its ceiling"
            );
        }
        assert!(
            err.is_transient(),
            "a throttled read is worth retrying later"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("table geotrail-state") && msg.contains("7 keys unprocessed"),
            "{msg}"
        );
    }

    #[test]
    fn a_failed_call_ends_the_loop_with_its_error() {
        let calls = RefCell::new(0);
        let err = run(get_all_pages::<u32, u32, _, _, _, _>(
            "t",
            vec![1, 2],
            &Backoff::default(),
            |_| {
                *calls.borrow_mut() += 1;
                std::future::ready(Err(StateError::Backend {
                    store: "table t".into(),
                    message: "boom".into(),
                    source: None,
                }))
            },
            |_| std::future::ready(()),
        ))
        .expect_err("the error comes through");
        assert_eq!(*calls.borrow(), 1);
        assert!(err.to_string().contains("boom"));
    }

    fn item(pk: &str, version: &str, state: &str) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(pk.to_owned())),
            (VERSION.to_owned(), AttributeValue::N(version.to_owned())),
            (STATE.to_owned(), AttributeValue::S(state.to_owned())),
        ])
    }

    #[test]
    fn parses_a_stored_item_and_names_the_subject_of_a_corrupt_one() {
        let good = serde_json::to_string(&SubjectState::new("AKIAGOOD")).expect("serializes");
        let parsed = parse_item(&item("AKIAGOOD", "7", &good)).expect("a good item parses");
        assert_eq!(
            (parsed.state.subject.as_str(), parsed.version),
            ("AKIAGOOD", 7)
        );

        let other = serde_json::to_string(&SubjectState::new("AKIAOTHER")).expect("serializes");
        let cases = [
            ("state is not JSON", item("AKIABAD", "1", "{not json")),
            ("version is not a number", item("AKIABAD", "x", &good)),
            ("state of another subject", item("AKIABAD", "1", &other)),
            (
                "no state",
                HashMap::from([(PK.to_owned(), AttributeValue::S("AKIABAD".into()))]),
            ),
        ];
        for (case, item) in cases {
            let (pk, err) = parse_item(&item).expect_err(case);
            assert_eq!(pk, "AKIABAD", "{case}");
            assert!(
                matches!(&err, StateError::Corrupt { subject, .. } if subject == "AKIABAD"),
                "{case}: {err}"
            );
            assert!(!err.is_transient(), "{case}");
        }
    }

    #[test]
    fn item_size_counts_names_and_values() {
        let it = item("AKIA", "12", "{}");
        assert_eq!(
            item_size(&it),
            "pk".len() + 4 + "version".len() + 2 + "state".len() + 2
        );
    }
}
