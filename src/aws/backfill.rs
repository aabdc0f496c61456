//! `geotrail scan s3://BUCKET/PREFIX`: a backfill read straight from a trail's bucket.
//!
//! 1. **Select.** CloudTrail writes `AWSLogs/[ORG_ID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/`
//!    and names each object `ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_xxx.json.gz`. Accounts
//!    and regions are found with `Delimiter="/"` listings; each region is then listed once,
//!    starting after the day folder before `--since` and stopping at the one after
//!    `--until`, so only the days in range are listed however long the trail is. Keys under
//!    a region sort in time order, which is what makes a checkpoint a `StartAfter`. A
//!    prefix that does not follow the layout is listed whole. Either way each object is
//!    then kept only if the time in its name is in `[since, until)`.
//! 2. **Read.** A URL's objects are judged oldest first by that time, so regions
//!    interleave as their events did. GETs run a few at a time ahead of the object being
//!    judged, on a runtime of their own, each body held in memory within a byte budget;
//!    a body larger than a slice of the budget is streamed instead.
//! 3. **Resume.** Per listing scope (a region's folder, or a flat prefix) a [`Checkpoint`]
//!    records the last key, in key order, up to which every selected object was judged
//!    and its state committed. It is written with the state (an item of the DynamoDB
//!    table, or in the state file after the write-back cache is flushed), and a rerun
//!    lists from there. An object that failed holds its scope's checkpoint back, however
//!    many after it succeeded, so a rerun reads it again. The store is idempotent per
//!    object, so the checkpoint is for speed: reading an object twice changes nothing.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::error::DisplayErrorContext;
use futures_util::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::dynamo::DynamoStateStore;
use super::s3::{S3BodyReader, S3ObjectSource, S3SourceError};
use crate::cli::{expand_inputs, is_log_name, Input, RemoteObject};
use crate::cloudtrail::{name_time_ms, parse_event_time};
use crate::state::FileStateStore;

const DAY_MS: i64 = 86_400_000;
/// Checkpoint items and meta keys; no subject, tally or claim key starts with it.
const CHECKPOINT_PREFIX: &str = "checkpoint#";
/// Listings in flight at once, while finding accounts and regions and listing them.
const PARALLEL_LISTINGS: usize = 8;
/// GETs in flight at once by default. S3 answers a GET in 20 to 50 ms; eight keep the
/// judge, which takes a few ms per object, fed.
pub const DEFAULT_PARALLEL_GETS: u16 = 8;
/// Compressed bytes held at once by GETs in flight and bodies waiting to be judged.
const BUFFER_BYTES: u64 = 64 << 20;
/// Objects larger than this are streamed when their turn comes rather than held whole.
const STREAM_OVER_BYTES: u64 = 8 << 20;
/// A body that fails half-way is fetched again this many times; the SDK already
/// retries the request itself.
const BODY_ATTEMPTS: u32 = 3;

/// The backfill options of `geotrail scan`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillArgs {
    /// Only S3 objects named at or after this time: RFC 3339 (2026-11-01T12:00:00Z), a
    /// date (2026-11-01, midnight UTC) or an age (30d, 12h).
    #[arg(long, value_name = "TIME", value_parser = parse_time_now)]
    pub since: Option<i64>,
    /// Only S3 objects named before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time_now)]
    pub until: Option<i64>,
    /// Keep state in the Lambda's DynamoDB table instead of a file (the SDK's standard
    /// variables choose the account, region and endpoint): a backfill that seeds it.
    #[arg(long, value_name = "TABLE", conflicts_with_all = ["no_state", "state"])]
    pub table: Option<String>,
    /// Ignore the checkpoints of earlier runs and read every selected S3 object again
    /// (checkpoints are still written).
    #[arg(long)]
    pub no_resume: bool,
    /// S3 GETs in flight at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL_GETS, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub s3_parallel: u16,
}

fn parse_time_now(arg: &str) -> Result<i64, String> {
    parse_time_arg(arg, crate::clock::epoch_ms_now())
}

/// `--since` / `--until`: an RFC 3339 timestamp, a date (midnight UTC), or an age before
/// `now_ms` (`30d`, `12h`). Epoch ms.
pub fn parse_time_arg(arg: &str, now_ms: i64) -> Result<i64, String> {
    let s = arg.trim();
    for (unit, ms) in [('d', DAY_MS), ('h', 3_600_000)] {
        if let Some(n) = s.strip_suffix(unit).and_then(|n| n.parse::<u32>().ok()) {
            return Ok(now_ms - i64::from(n) * ms);
        }
    }
    let parsed = if s.len() == 10 {
        parse_event_time(&format!("{s}T00:00:00Z"))
    } else {
        parse_event_time(s)
    };
    parsed.ok_or_else(|| {
        format!(
            "{arg:?} is not a time: give RFC 3339 (2026-11-01T12:00:00Z), a date (2026-11-01) \
             or an age (30d, 12h)"
        )
    })
}

/// The objects selected by name time: `since` included, `until` excluded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl TimeRange {
    /// An object whose name carries no time is selected only by an unbounded range.
    pub fn contains(&self, name_time: Option<i64>) -> bool {
        match name_time {
            None => self.since.is_none() && self.until.is_none(),
            Some(t) => self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u),
        }
    }
}

/// `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    pub fn parse(url: &str) -> anyhow::Result<S3Url> {
        let Some(rest) = url.strip_prefix("s3://") else {
            bail!("{url}: not an S3 URL (expected s3://BUCKET/PREFIX)");
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{url}: no bucket name (expected s3://BUCKET/PREFIX)");
        }
        // Legacy us-east-1 buckets may have capitals and underscores; nothing has more.
        if !bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            bail!("{url}: {bucket:?} is not an S3 bucket name");
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Where a prefix stands in CloudTrail's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// A folder that may hold `AWSLogs/`: the bucket, or the trail's own key prefix.
    Root,
    /// `.../AWSLogs/`: accounts and organisations below.
    AwsLogs,
    /// `.../AWSLogs/o-xxxxxxxxxx/`: an organisation trail's accounts below.
    Org,
    /// `.../AWSLogs/[ORG/]ACCOUNT/`.
    Account,
    /// `.../ACCOUNT/CloudTrail/`: regions below.
    Trail,
    /// `.../CloudTrail/REGION/`, or a date folder under it (`within`: `2026/`,
    /// `2026/11/`, `2026/11/01/`, or empty).
    Region { scope: String, within: String },
    /// Anything else: listed whole.
    Flat,
}

fn is_account(segment: &str) -> bool {
    segment.len() == 12 && segment.bytes().all(|b| b.is_ascii_digit())
}

/// Reads the layout off a prefix. A prefix that ends inside a name (`AWSLogs/1234`) is
/// flat: a listing by that prefix can match anything.
pub fn level_of(prefix: &str) -> Level {
    if prefix.is_empty() {
        return Level::Root;
    }
    let Some(folder) = prefix.strip_suffix('/') else {
        return Level::Flat;
    };
    let segments: Vec<&str> = folder.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Level::Flat;
    }
    let Some(at) = segments.iter().rposition(|s| *s == "AWSLogs") else {
        return Level::Root;
    };
    let mut rest = &segments[at + 1..];
    if rest.is_empty() {
        return Level::AwsLogs;
    }
    if rest[0].starts_with("o-") {
        rest = &rest[1..];
        if rest.is_empty() {
            return Level::Org;
        }
    }
    if !is_account(rest[0]) {
        return Level::Flat;
    }
    rest = &rest[1..];
    if rest.is_empty() {
        return Level::Account;
    }
    if rest[0] != "CloudTrail" {
        return Level::Flat;
    }
    rest = &rest[1..];
    if rest.is_empty() {
        return Level::Trail;
    }
    let region_end = segments.len() - rest.len() + 1;
    let date = &rest[1..];
    let date_ok = date.len() <= 3
        && date
            .iter()
            .zip([4, 2, 2])
            .all(|(s, width)| s.len() == width && s.bytes().all(|b| b.is_ascii_digit()));
    let within = if date.is_empty() {
        String::new()
    } else {
        format!("{}/", date.join("/"))
    };
    if !date_ok || (!within.is_empty() && folder_start_ms(&within).is_none()) {
        return Level::Flat;
    }
    let mut scope = segments[..region_end].join("/");
    scope.push('/');
    Level::Region { scope, within }
}

/// `YYYY/MM/DD/`, CloudTrail's day folder of a UTC time.
fn day_folder(ms: i64) -> String {
    let date = &crate::finding::format_rfc3339_ms(ms.div_euclid(DAY_MS) * DAY_MS)[..10];
    format!("{}/", date.replace('-', "/"))
}

/// The first instant of a date folder, `YYYY/`, `YYYY/MM/` or `YYYY/MM/DD/`.
fn folder_start_ms(within: &str) -> Option<i64> {
    let parts: Vec<&str> = within.strip_suffix('/')?.split('/').collect();
    let (year, month, day) = match parts[..] {
        [year] => (year, "01", "01"),
        [year, month] => (year, month, "01"),
        [year, month, day] => (year, month, day),
        _ => return None,
    };
    parse_event_time(&format!("{year}-{month}-{day}T00:00:00Z"))
}

/// One listing, and what a checkpoint is kept for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub bucket: String,
    /// What a checkpoint covers: a region's folder, or a flat prefix as given.
    pub scope: String,
    /// What is listed: the scope, or a date folder under it.
    pub list_prefix: String,
    /// Keys sort in time order (CloudTrail's layout); objects named without a time are
    /// then not logs and never selected.
    pub ordered: bool,
}

impl Group {
    /// The part of a run's `range` this listing selects from: a date folder's listing
    /// holds nothing named before the folder's first day, so neither may the checkpoint
    /// it writes claim the scope's earlier days.
    pub fn range(&self, run: &TimeRange) -> TimeRange {
        let within = self.list_prefix.strip_prefix(self.scope.as_str());
        match within.and_then(folder_start_ms) {
            Some(start) => TimeRange {
                since: Some(run.since.map_or(start, |since| since.max(start))),
                until: run.until,
            },
            None => *run,
        }
    }

    fn checkpoint_id(&self) -> String {
        format!("{CHECKPOINT_PREFIX}s3://{}/{}", self.bucket, self.scope)
    }

    /// `StartAfter` and the key at which to stop: a region's listing starts after the
    /// day folder before `since` (a day of margin, should a name and its folder ever
    /// disagree) or after the checkpoint, whichever is later, and stops at the folder of
    /// the day after `until`. A flat listing can only start after the checkpoint.
    pub fn bounds(
        &self,
        range: &TimeRange,
        resume_after: Option<&str>,
    ) -> (Option<String>, Option<String>) {
        let mut start_after = resume_after.map(str::to_owned);
        let mut stop_at = None;
        if self.ordered {
            if let Some(since) = range.since {
                let day = format!("{}{}", self.scope, day_folder(since - DAY_MS));
                if start_after.as_ref().is_none_or(|k| *k < day) {
                    start_after = Some(day);
                }
            }
            stop_at = range
                .until
                .map(|until| format!("{}{}", self.scope, day_folder(until + DAY_MS)));
        }
        (start_after, stop_at)
    }
}

/// Every object of a scope named in `[from, to)` (open ends: unbounded; an object named
/// without a time only when both are open) whose key sorts at or before `through` has
/// been judged and its state committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub through: String,
}

impl Checkpoint {
    fn range(&self) -> TimeRange {
        TimeRange {
            since: self.from_ms,
            until: self.to_ms,
        }
    }

    pub fn covers(&self, key: &str, name_time: Option<i64>) -> bool {
        key <= self.through.as_str() && self.range().contains(name_time)
    }

    /// The checkpoint's key, when every object a run over `range` selects at or before
    /// it is covered, so that the run may list after it.
    pub fn resume_after(&self, range: &TimeRange, ordered: bool) -> Option<&str> {
        let from_ok = match (self.from_ms, range.since) {
            (None, _) => true,
            (Some(from), Some(since)) => since >= from,
            (Some(_), None) => false,
        };
        // In an ordered scope a key at or before `through` is named before `through`
        // was, which the run that wrote it selected: `to_ms` adds nothing there.
        let to_ok = ordered
            || match (self.to_ms, range.until) {
                (None, _) => true,
                (Some(to), Some(until)) => until <= to,
                (Some(_), None) => false,
            };
        (from_ok && to_ok).then_some(self.through.as_str())
    }

    /// What a run over `range` adds to `old`, having completed every object it selected
    /// up to `done_through` (in key order; objects `old` covered were not selected).
    /// Every checkpoint it returns is true; when the two cannot be joined into one, it
    /// keeps the one that reaches further.
    pub fn merge(
        old: Option<Checkpoint>,
        range: &TimeRange,
        ordered: bool,
        done_through: Option<String>,
    ) -> Option<Checkpoint> {
        let Some(through) = done_through else {
            return old;
        };
        let new = Checkpoint {
            from_ms: range.since,
            to_ms: if ordered { None } else { range.until },
            through,
        };
        let Some(old) = old else {
            return Some(new);
        };
        let le = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a <= b,
        };
        let ge_end = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a >= b,
        };
        if le(new.from_ms, old.from_ms)
            && ge_end(new.to_ms, old.to_ms)
            && new.through >= old.through
        {
            return Some(new);
        }
        // A run that started no later than the old checkpoint's last object (by its name
        // time) joins it: in an ordered scope, every key after that object is named no
        // earlier, so within the run's range.
        if ordered && le(old.from_ms, new.from_ms) {
            let joins = match (new.from_ms, name_time_ms(&old.through)) {
                (None, _) => true,
                (Some(since), Some(last)) => since <= last,
                (Some(_), None) => false,
            };
            if joins {
                let through = old.through.clone().max(new.through);
                return Some(Checkpoint {
                    from_ms: old.from_ms,
                    to_ms: None,
                    through,
                });
            }
        }
        Some(if new.through > old.through { new } else { old })
    }
}

/// One object a listing selected.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    key: String,
    size: u64,
    name_time: Option<i64>,
}

/// What a run does in one scope: its objects in key order and which are done.
#[derive(Debug)]
struct ScopeProgress {
    group: Group,
    old: Option<Checkpoint>,
    keys: Vec<String>,
    done: Vec<bool>,
    /// The first key not done.
    next: usize,
    /// `next` moved since the checkpoint was last written.
    dirty: bool,
    /// Another URL of the same run reaches this scope too (a region's folder and the
    /// whole `AWSLogs/`): each sees only part of it, so neither may vouch for it.
    shared: bool,
}

impl ScopeProgress {
    fn mark(&mut self, position: usize, ok: bool) {
        if !ok || self.shared {
            return;
        }
        self.done[position] = true;
        while self.next < self.done.len() && self.done[self.next] {
            self.next += 1;
            self.dirty = true;
        }
    }

    fn checkpoint(&self, range: &TimeRange) -> Option<Checkpoint> {
        let through = self.next.checked_sub(1).map(|i| self.keys[i].clone());
        let range = self.group.range(range);
        Checkpoint::merge(self.old.clone(), &range, self.group.ordered, through)
    }
}

/// Where checkpoints are kept: with the state they vouch for.
#[derive(Debug, Clone)]
pub enum CheckpointStore<'a> {
    /// `--no-state`: nothing outlives the run.
    None,
    File(&'a FileStateStore),
    Table {
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
}

impl CheckpointStore<'_> {
    /// How often a run writes its checkpoints: each write to a state file first flushes
    /// the write-back cache, which costs more than one PutItem.
    fn every(&self) -> Duration {
        match self {
            CheckpointStore::File(_) => Duration::from_secs(30),
            _ => Duration::from_secs(5),
        }
    }

    async fn load(&self, ids: &[String]) -> anyhow::Result<HashMap<String, String>> {
        match self {
            CheckpointStore::None => Ok(HashMap::new()),
            CheckpointStore::File(file) => {
                let wanted: HashSet<&String> = ids.iter().collect();
                Ok(file
                    .meta_with_prefix(CHECKPOINT_PREFIX)?
                    .into_iter()
                    .filter(|(k, _)| wanted.contains(k))
                    .collect())
            }
            CheckpointStore::Table { client, table } => {
                let mut unique = ids.to_vec();
                unique.sort();
                unique.dedup();
                let items = DynamoStateStore::new(client.clone(), table.clone(), 0)
                    .get_items(&unique)
                    .await?;
                Ok(items
                    .into_iter()
                    .filter_map(|item| match (item.get("pk"), item.get("checkpoint")) {
                        (Some(AttributeValue::S(pk)), Some(AttributeValue::S(json))) => {
                            Some((pk.clone(), json.clone()))
                        }
                        _ => None,
                    })
                    .collect())
            }
        }
    }

    async fn save(&self, items: &[(String, String)]) -> anyhow::Result<()> {
        match self {
            CheckpointStore::None => Ok(()),
            CheckpointStore::File(file) => Ok(file.put_meta(items)?),
            CheckpointStore::Table { client, table } => {
                let now_s = crate::clock::epoch_ms_now() / 1000;
                for (id, json) in items {
                    // Unconditional: two backfills of one scope each write a true
                    // checkpoint, and the later write wins; at worst the next run
                    // reads again what the other one did.
                    client
                        .put_item()
                        .table_name(table)
                        .item("pk", AttributeValue::S(id.clone()))
                        .item("checkpoint", AttributeValue::S(json.clone()))
                        .item("updated_at", AttributeValue::N(now_s.to_string()))
                        .send()
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "table {table}: writing checkpoint {id} failed: {}",
                                DisplayErrorContext(&e)
                            )
                        })?;
                }
                Ok(())
            }
        }
    }
}

/// Records which inputs were judged, and writes the checkpoints they allow.
#[derive(Debug)]
pub struct Resume<'a> {
    checkpoints: CheckpointStore<'a>,
    range: TimeRange,
    scopes: Vec<ScopeProgress>,
    /// Input index -> (scope, position in its key order).
    at: HashMap<usize, (usize, usize)>,
    last_saved: Instant,
}

impl Resume<'_> {
    /// Input `index` was judged and its state committed (`ok`), or it failed.
    pub fn done(&mut self, index: usize, ok: bool) {
        if let Some(&(scope, position)) = self.at.get(&index) {
            self.scopes[scope].mark(position, ok);
        }
    }

    /// Checkpoints are waiting and it is time to write them (after the store commits).
    pub fn due(&self) -> bool {
        self.last_saved.elapsed() >= self.checkpoints.every() && self.scopes.iter().any(|s| s.dirty)
    }

    /// Writes the checkpoints that moved. The caller must have made the state durable
    /// first: a checkpoint vouches for it.
    pub fn save(&mut self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<usize> {
        self.last_saved = Instant::now();
        let mut items = Vec::new();
        for scope in self.scopes.iter().filter(|s| s.dirty) {
            if let Some(cp) = scope.checkpoint(&self.range) {
                let json = serde_json::to_string(&cp).expect("a checkpoint serializes");
                items.push((scope.group.checkpoint_id(), json));
            }
        }
        runtime.block_on(self.checkpoints.save(&items))?;
        // Only once written: a failed write is tried again by the next save.
        for scope in &mut self.scopes {
            scope.dirty = false;
        }
        Ok(items.len())
    }
}

/// The objects a run reads, in the order given, and what records their completion.
pub struct Plan<'a> {
    pub inputs: Vec<Input>,
    pub resume: Resume<'a>,
}

/// Expands `paths` (local paths and `s3://` URLs, in the order given) into inputs.
///
/// S3 work runs on a runtime of its own, kept alive by the returned inputs: the reader
/// thread blocks on their bodies while the caller's runtime is busy judging, and a
/// connection's tasks must be driven meanwhile.
pub fn plan<'a>(
    paths: &[std::path::PathBuf],
    args: &BackfillArgs,
    checkpoints: CheckpointStore<'a>,
    runtime: &tokio::runtime::Runtime,
    quiet: bool,
    show_progress: bool,
) -> anyhow::Result<Plan<'a>> {
    let range = TimeRange {
        since: args.since,
        until: args.until,
    };
    if let (Some(since), Some(until)) = (range.since, range.until) {
        if since >= until {
            bail!("--since must be before --until");
        }
    }
    let mut inputs = Vec::new();
    let mut resume = Resume {
        checkpoints,
        range,
        scopes: Vec::new(),
        at: HashMap::new(),
        last_saved: Instant::now(),
    };
    let urls: Vec<(usize, S3Url)> = paths
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.to_str()
                .filter(|s| s.starts_with("s3://"))
                .map(|s| (i, s))
        })
        .map(|(i, s)| Ok((i, S3Url::parse(s)?)))
        .collect::<anyhow::Result<_>>()?;
    if urls.is_empty() {
        if range != TimeRange::default() {
            bail!("--since and --until select S3 objects: give an s3://BUCKET/PREFIX URL");
        }
        inputs = expand_inputs(paths)?;
        return Ok(Plan { inputs, resume });
    }

    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("geotrail-s3")
        .build()
        .context("starting the S3 runtime")?;
    let client = background.block_on(async {
        let sdk = aws_config::load_from_env().await;
        super::lambda::clients(&sdk).0
    });
    let spinner = if show_progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("the spinner template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };

    // Each URL's objects, oldest first, with the scope and key-order position of each.
    let mut by_path: HashMap<usize, Vec<(Listed, usize, usize, String)>> = HashMap::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for (path_index, url) in &urls {
        spinner.set_message(format!("{url}: finding accounts and regions"));
        let groups = background.block_on(discover(&client, url))?;
        let ids: Vec<String> = groups.iter().map(Group::checkpoint_id).collect();
        let stored = if args.no_resume {
            HashMap::new()
        } else {
            runtime.block_on(resume.checkpoints.load(&ids))?
        };
        spinner.set_message(format!("{url}: listing {} prefixes", groups.len()));
        let listings: Vec<Listing> = background.block_on(
            futures_util::stream::iter(groups.into_iter().map(|group| {
                let old = stored.get(&group.checkpoint_id()).and_then(|json| {
                    match serde_json::from_str::<Checkpoint>(json) {
                        Ok(cp) => Some(cp),
                        Err(err) => {
                            // Only speed depends on it: read the scope again.
                            eprintln!(
                                "geotrail: ignoring unreadable checkpoint {}: {err}",
                                group.checkpoint_id()
                            );
                            None
                        }
                    }
                });
                list_group(&client, group, old, range)
            }))
            .buffer_unordered(PARALLEL_LISTINGS)
            .try_collect(),
        )?;
        let (mut selected, mut bytes, mut resumed, mut covered) = (0u64, 0u64, 0usize, 0u64);
        let mut objects = Vec::new();
        for Listing {
            group,
            old,
            objects: listed,
            covered: skipped,
            resumed: resumed_here,
        } in listings
        {
            covered += skipped;
            resumed += usize::from(resumed_here);
            let mut keyed: Vec<Listed> = listed
                .into_iter()
                .filter(|l| seen.insert((group.bucket.clone(), l.key.clone())))
                .collect();
            keyed.sort_by(|a, b| a.key.cmp(&b.key));
            let scope = resume.scopes.len();
            resume.scopes.push(ScopeProgress {
                keys: keyed.iter().map(|l| l.key.clone()).collect(),
                done: vec![false; keyed.len()],
                next: 0,
                dirty: false,
                shared: false,
                group: group.clone(),
                old,
            });
            for (position, l) in keyed.into_iter().enumerate() {
                selected += 1;
                bytes += l.size;
                objects.push((l, scope, position, group.bucket.clone()));
            }
        }
        // Oldest first across the URL's regions; names without a time after the rest.
        objects.sort_by(|a, b| {
            (a.0.name_time.is_none(), a.0.name_time, &a.0.key).cmp(&(
                b.0.name_time.is_none(),
                b.0.name_time,
                &b.0.key,
            ))
        });
        if !quiet {
            spinner.suspend(|| {
                eprintln!(
                    "geotrail: {url}: {selected} objects to read ({:.1} MB) from {} listings{}",
                    bytes as f64 / 1e6,
                    resume.scopes.len(),
                    if resumed > 0 || covered > 0 {
                        format!(
                            "; {resumed} listings resumed after their checkpoint, {covered} more objects already done"
                        )
                    } else {
                        String::new()
                    }
                )
            });
            if selected == 0 {
                spinner.suspend(|| eprintln!("geotrail: {url}: nothing selected"));
            }
        }
        by_path.insert(*path_index, objects);
    }
    spinner.finish_and_clear();
    let mut reached: HashMap<String, usize> = HashMap::new();
    for scope in &resume.scopes {
        *reached.entry(scope.group.checkpoint_id()).or_default() += 1;
    }
    for scope in &mut resume.scopes {
        scope.shared = reached[&scope.group.checkpoint_id()] > 1;
    }

    // The bodies are fetched in the order the reader will ask for them.
    let order: Vec<(String, String, u64)> = (0..paths.len())
        .filter_map(|i| by_path.get(&i))
        .flatten()
        .map(|(l, _, _, bucket)| (bucket.clone(), l.key.clone(), l.size))
        .collect();
    let prefetch = Prefetch::start(background, client, order, usize::from(args.s3_parallel));
    for (i, path) in paths.iter().enumerate() {
        match by_path.remove(&i) {
            Some(objects) => {
                for (listed, scope, position, bucket) in objects {
                    resume.at.insert(inputs.len(), (scope, position));
                    inputs.push(Input {
                        path: None,
                        len: listed.size,
                        remote: Some(Arc::new(S3Input {
                            name: format!("s3://{bucket}/{}", listed.key),
                            prefetch: Arc::clone(&prefetch),
                        })),
                    });
                }
            }
            None => inputs.extend(expand_inputs(std::slice::from_ref(path))?),
        }
    }
    Ok(Plan { inputs, resume })
}

/// The common prefixes one level below `prefix`.
async fn children(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .delimiter("/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            anyhow::anyhow!(
                "listing s3://{bucket}/{prefix} failed: {}",
                DisplayErrorContext(&e)
            )
        })?;
        out.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
    }
    Ok(out)
}

/// The listings under a URL: its regions' folders, or the prefix itself.
async fn discover(client: &aws_sdk_s3::Client, url: &S3Url) -> anyhow::Result<Vec<Group>> {
    let bucket = url.bucket.as_str();
    let group = |scope: String, within: &str, ordered: bool| Group {
        bucket: bucket.to_owned(),
        list_prefix: format!("{scope}{within}"),
        scope,
        ordered,
    };
    let mut groups = Vec::new();
    let mut frontier = vec![(url.prefix.clone(), level_of(&url.prefix))];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        let mut expansions = Vec::new();
        for (prefix, level) in frontier {
            match level {
                Level::Region { scope, within } => groups.push(group(scope, &within, true)),
                Level::Flat => groups.push(group(prefix, "", false)),
                // Saves a listing: what matters under an account is its CloudTrail/.
                Level::Account => next.push((format!("{prefix}CloudTrail/"), Level::Trail)),
                level => expansions.push((prefix, level)),
            }
        }
        let expanded: Vec<(String, Level, Vec<String>)> =
            futures_util::stream::iter(expansions.into_iter().map(|(prefix, level)| async move {
                let found = children(client, bucket, &prefix).await?;
                anyhow::Ok((prefix, level, found))
            }))
            .buffer_unordered(PARALLEL_LISTINGS)
            .try_collect()
            .await?;
        for (prefix, level, found) in expanded {
            let last = |c: &str| -> String { c[prefix.len()..].trim_end_matches('/').to_owned() };
            match level {
                Level::Root => {
                    let logs = format!("{prefix}AWSLogs/");
                    if found.contains(&logs) {
                        next.push((logs, Level::AwsLogs));
                    } else {
                        groups.push(group(prefix, "", false));
                    }
                }
                Level::AwsLogs | Level::Org => {
                    for c in found {
                        let segment = last(&c);
                        if is_account(&segment) {
                            next.push((c, Level::Account));
                        } else if level == Level::AwsLogs && segment.starts_with("o-") {
                            next.push((c, Level::Org));
                        }
                    }
                }
                Level::Trail => {
                    for c in found {
                        next.push((
                            c.clone(),
                            Level::Region {
                                scope: c,
                                within: String::new(),
                            },
                        ));
                    }
                }
                _ => unreachable!("only folders with children to find are listed"),
            }
        }
        frontier = next;
    }
    groups.sort_by(|a, b| a.list_prefix.cmp(&b.list_prefix));
    Ok(groups)
}

/// What one group's listing selected.
struct Listing {
    group: Group,
    old: Option<Checkpoint>,
    objects: Vec<Listed>,
    /// Listed and in range, but covered by the checkpoint.
    covered: u64,
    /// The listing started after the checkpoint.
    resumed: bool,
}

async fn list_group(
    client: &aws_sdk_s3::Client,
    group: Group,
    old: Option<Checkpoint>,
    range: TimeRange,
) -> anyhow::Result<Listing> {
    let range = group.range(&range);
    let resume_after = old
        .as_ref()
        .and_then(|cp| cp.resume_after(&range, group.ordered));
    let (start_after, stop_at) = group.bounds(&range, resume_after);
    let mut pages = client
        .list_objects_v2()
        .bucket(&group.bucket)
        .prefix(&group.list_prefix)
        .set_start_after(start_after)
        .into_paginator()
        .send();
    let (mut out, mut covered) = (Vec::new(), 0);
    'pages: while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            anyhow::anyhow!(
                "listing s3://{}/{} failed: {}",
                group.bucket,
                group.list_prefix,
                DisplayErrorContext(&e)
            )
        })?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            if stop_at.as_deref().is_some_and(|stop| key >= stop) {
                break 'pages;
            }
            let file = key.rsplit('/').next().unwrap_or(key);
            if file.is_empty() || !is_log_name(file) {
                continue;
            }
            let name_time = name_time_ms(file);
            if (group.ordered && name_time.is_none()) || !range.contains(name_time) {
                continue;
            }
            if old.as_ref().is_some_and(|cp| cp.covers(key, name_time)) {
                covered += 1;
                continue;
            }
            out.push(Listed {
                key: key.to_owned(),
                size: object
                    .size()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
                name_time,
            });
        }
    }
    let resumed = resume_after.is_some();
    Ok(Listing {
        group,
        old,
        objects: out,
        covered,
        resumed,
    })
}

/// An S3 object as an input of the scan.
#[derive(Debug)]
struct S3Input {
    name: String,
    prefetch: Arc<Prefetch>,
}

impl RemoteObject for S3Input {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        self.prefetch.take(&self.name)
    }
}

/// A fetched body, holding its share of the byte budget until it is dropped.
struct Body {
    bytes: Bytes,
    _room: OwnedSemaphorePermit,
}

enum Bytes {
    Whole(io::Cursor<bytes::Bytes>),
    Streamed(Box<S3BodyReader>),
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.bytes {
            Bytes::Whole(cursor) => cursor.read(buf),
            Bytes::Streamed(reader) => reader.read(buf),
        }
    }
}

type Fetched = (String, Result<Body, S3SourceError>);

/// GETs ahead of the reader, in its order, a few at a time within the byte budget.
struct Prefetch {
    bodies: Mutex<mpsc::Receiver<Fetched>>,
    /// Runs the GETs; dropped (with the inputs) when the scan is over.
    _runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch").finish_non_exhaustive()
    }
}

impl Prefetch {
    fn start(
        runtime: tokio::runtime::Runtime,
        client: aws_sdk_s3::Client,
        order: Vec<(String, String, u64)>,
        parallel: usize,
    ) -> Arc<Prefetch> {
        // One body waits in the channel while the reader decodes the one before it.
        let (tx, rx) = mpsc::channel(1);
        runtime.spawn(async move {
            let source = S3ObjectSource::new(client);
            // In KiB, as a semaphore counts in u32 per acquire. Tokio's semaphore is
            // fair: GETs take their share in list order, so a large body waiting for
            // room is never starved by the smaller ones behind it.
            let budget = (BUFFER_BYTES >> 10) as u32;
            let room = Arc::new(Semaphore::new(budget as usize));
            let mut fetches = futures_util::stream::iter(order)
                .map(|(bucket, key, size)| fetch(&source, &room, budget, bucket, key, size))
                .buffered(parallel);
            while let Some(fetched) = fetches.next().await {
                if tx.send(fetched).await.is_err() {
                    // The scan stopped reading.
                    break;
                }
            }
        });
        Arc::new(Prefetch {
            bodies: Mutex::new(rx),
            _runtime: runtime,
        })
    }

    fn take(&self, name: &str) -> io::Result<Box<dyn Read + Send>> {
        let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        let Some((fetched, body)) = bodies.blocking_recv() else {
            return Err(io::Error::other("the S3 reader stopped"));
        };
        if fetched != name {
            return Err(io::Error::other(format!(
                "S3 objects out of order: {fetched} came for {name}"
            )));
        }
        match body {
            Ok(body) => Ok(Box::new(body)),
            Err(err) => Err(io::Error::other(err)),
        }
    }
}

async fn fetch(
    source: &S3ObjectSource,
    room: &Arc<Semaphore>,
    budget: u32,
    bucket: String,
    key: String,
    size: u64,
) -> Fetched {
    let name = format!("s3://{bucket}/{key}");
    let kib = u32::try_from(size.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .clamp(1, budget);
    let permit = Arc::clone(room)
        .acquire_many_owned(kib)
        .await
        .expect("the budget semaphore is never closed");
    let mut attempt = 1;
    loop {
        let object = match source.open(&bucket, &key).await {
            Ok(object) => object,
            Err(err) => return (name, Err(err)),
        };
        if size > STREAM_OVER_BYTES {
            let bytes = Bytes::Streamed(Box::new(object.into_reader()));
            return (
                name,
                Ok(Body {
                    bytes,
                    _room: permit,
                }),
            );
        }
        match object.read_all().await {
            Ok(whole) => {
                let bytes = Bytes::Whole(io::Cursor::new(whole));
                return (
                    name,
                    Ok(Body {
                        bytes,
                        _room: permit,
                    }),
                );
            }
            Err(err) if attempt < BODY_ATTEMPTS && err.is_transient() => {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                attempt += 1;
            }
            Err(err) => return (name, Err(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000_000;

    fn t(s: &str) -> i64 {
        parse_event_time(s).unwrap()
    }

    fn region(scope: &str) -> Group {
        Group {
            bucket: "trail".into(),
            scope: scope.into(),
            list_prefix: scope.into(),
            ordered: true,
        }
    }

    fn key(day: &str, hhmm: &str) -> String {
        let compact = day.replace('-', "");
        format!(
            "AWSLogs/111122223333/CloudTrail/eu-west-1/{}/111122223333_CloudTrail_eu-west-1_{compact}T{hhmm}Z_abc.json.gz",
            day.replace('-', "/")
        )
    }

    #[test]
    fn time_arguments_take_rfc3339_dates_and_ages() {
        assert_eq!(
            parse_time_arg("2026-11-01T12:00:00Z", NOW),
            Ok(t("2026-11-01T12:00:00Z"))
        );
        assert_eq!(
            parse_time_arg("2026-11-01T14:00:00+02:00", NOW),
            Ok(t("2026-11-01T12:00:00Z"))
        );
        assert_eq!(
            parse_time_arg("2026-11-01", NOW),
            Ok(t("2026-11-01T00:00:00Z"))
        );
        assert_eq!(parse_time_arg("30d", NOW), Ok(NOW - 30 * DAY_MS));
        assert_eq!(parse_time_arg("12h", NOW), Ok(NOW - 12 * 3_600_000));
        for bad in ["", "yesterday", "2026-13-01", "30x", "-3d", "2026-11"] {
            let err = parse_time_arg(bad, NOW).unwrap_err();
            assert!(err.contains("is not a time"), "{bad}: {err}");
        }
    }

    #[test]
    fn urls_need_a_bucket() {
        assert_eq!(
            S3Url::parse("s3://trail/AWSLogs/").unwrap(),
            S3Url {
                bucket: "trail".into(),
                prefix: "AWSLogs/".into()
            }
        );
        assert_eq!(S3Url::parse("s3://trail").unwrap().prefix, "");
        for bad in ["s3://", "s3:///AWSLogs/", "s3://a b/x", "http://trail/x"] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_are_placed_in_cloudtrails_layout() {
        let region = |scope: &str, within: &str| Level::Region {
            scope: scope.into(),
            within: within.into(),
        };
        let cases = [
            ("", Level::Root),
            ("trails/", Level::Root),
            ("AWSLogs/", Level::AwsLogs),
            ("trails/AWSLogs/", Level::AwsLogs),
            ("AWSLogs/o-abc123defg/", Level::Org),
            ("AWSLogs/o-abc123defg/111122223333/", Level::Account),
            ("AWSLogs/111122223333/", Level::Account),
            ("AWSLogs/111122223333/CloudTrail/", Level::Trail),
            (
                "AWSLogs/111122223333/CloudTrail/eu-west-1/",
                region("AWSLogs/111122223333/CloudTrail/eu-west-1/", ""),
            ),
            (
                "p/AWSLogs/o-abc123defg/111122223333/CloudTrail/eu-west-1/2026/11/",
                region(
                    "p/AWSLogs/o-abc123defg/111122223333/CloudTrail/eu-west-1/",
                    "2026/11/",
                ),
            ),
            (
                "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/01/",
                region("AWSLogs/111122223333/CloudTrail/eu-west-1/", "2026/11/01/"),
            ),
            // Not the layout, or a prefix ending inside a name: listed whole.
            ("AWSLogs/1111", Level::Flat),
            ("AWSLogs/111122223333/CloudTrail-Digest/", Level::Flat),
            (
                "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/01/x/",
                Level::Flat,
            ),
            ("AWSLogs/111122223333/CloudTrail/eu-west-1/26/", Level::Flat),
            (
                "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/13/",
                Level::Flat,
            ),
            ("AWSLogs/notanaccount/", Level::Flat),
            ("a//b/", Level::Flat),
        ];
        for (prefix, want) in cases {
            assert_eq!(level_of(prefix), want, "{prefix:?}");
        }
    }

    #[test]
    fn a_regions_listing_spans_the_days_in_range_with_a_day_of_margin() {
        let g = region("AWSLogs/111122223333/CloudTrail/eu-west-1/");
        let range = TimeRange {
            since: Some(t("2026-11-03T10:00:00Z")),
            until: Some(t("2026-11-05T00:00:00Z")),
        };
        assert_eq!(
            g.bounds(&range, None),
            (
                Some("AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/02/".into()),
                Some("AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/06/".into())
            )
        );
        // Every key of the days in range sorts between the two.
        let (start, stop) = g.bounds(&range, None);
        for k in [key("2026-11-03", "0000"), key("2026-11-05", "2355")] {
            assert!(
                k > start.clone().unwrap() && k < stop.clone().unwrap(),
                "{k}"
            );
        }
        // A checkpoint later than the first day is where the listing starts.
        let cp = key("2026-11-04", "1200");
        assert_eq!(g.bounds(&range, Some(&cp)).0, Some(cp.clone()));
        // An earlier one does not pull it back.
        let early = key("2026-10-01", "1200");
        assert_eq!(g.bounds(&range, Some(&early)).0, start);
        // Unbounded: everything, or from the checkpoint.
        assert_eq!(g.bounds(&TimeRange::default(), None), (None, None));
        // A flat prefix has no days to skip.
        let flat = Group {
            ordered: false,
            ..region("logs/")
        };
        assert_eq!(flat.bounds(&range, None), (None, None));
        assert_eq!(flat.bounds(&range, Some("logs/x")).0, Some("logs/x".into()));
    }

    #[test]
    fn a_date_folders_listing_selects_and_vouches_from_the_folders_first_day() {
        let scope = "AWSLogs/111122223333/CloudTrail/eu-west-1/";
        let folder = |within: &str| Group {
            list_prefix: format!("{scope}{within}"),
            ..region(scope)
        };
        let since = |s: Option<&str>| TimeRange {
            since: s.map(t),
            until: None,
        };
        let cases = [
            ("", None, None),
            ("2026/", None, Some("2026-01-01T00:00:00Z")),
            ("2026/11/", None, Some("2026-11-01T00:00:00Z")),
            ("2026/11/03/", None, Some("2026-11-03T00:00:00Z")),
            // A later --since stands; an earlier one is raised to the folder.
            (
                "2026/11/",
                Some("2026-11-02T06:00:00Z"),
                Some("2026-11-02T06:00:00Z"),
            ),
            (
                "2026/11/",
                Some("2026-10-01T00:00:00Z"),
                Some("2026-11-01T00:00:00Z"),
            ),
        ];
        for (within, run, want) in cases {
            assert_eq!(
                folder(within).range(&since(run)),
                since(want),
                "{within:?} {run:?}"
            );
        }
        // A run over November that failed nothing vouches for November, not October.
        let keys: Vec<String> = ["2026-11-01", "2026-11-02"]
            .iter()
            .map(|d| key(d, "0000"))
            .collect();
        let mut p = ScopeProgress {
            group: folder("2026/11/"),
            ..progress(&keys, None)
        };
        p.mark(0, true);
        p.mark(1, true);
        let cp = p.checkpoint(&TimeRange::default()).unwrap();
        let october = key("2026-10-31", "2355");
        assert!(!cp.covers(&october, name_time_ms(&october)), "{cp:?}");
        assert!(cp.covers(&keys[1], name_time_ms(&keys[1])));
    }

    #[test]
    fn day_folders_are_utc_dates() {
        assert_eq!(day_folder(t("2026-01-01T00:00:00Z")), "2026/01/01/");
        assert_eq!(day_folder(t("2025-12-31T23:59:59Z")), "2025/12/31/");
        assert_eq!(day_folder(t("2024-02-29T12:00:00Z")), "2024/02/29/");
    }

    #[test]
    fn name_time_selects_half_open_and_timeless_names_only_unbounded() {
        let range = TimeRange {
            since: Some(100),
            until: Some(200),
        };
        assert!(range.contains(Some(100)) && range.contains(Some(199)));
        assert!(!range.contains(Some(99)) && !range.contains(Some(200)));
        assert!(!range.contains(None));
        assert!(TimeRange::default().contains(None));
        assert!(TimeRange {
            since: Some(100),
            until: None
        }
        .contains(Some(i64::MAX)));
    }

    fn progress(keys: &[String], old: Option<Checkpoint>) -> ScopeProgress {
        ScopeProgress {
            group: region("AWSLogs/111122223333/CloudTrail/eu-west-1/"),
            old,
            keys: keys.to_vec(),
            done: vec![false; keys.len()],
            next: 0,
            dirty: false,
            shared: false,
        }
    }

    #[test]
    fn a_scope_two_urls_reach_is_never_vouched_for() {
        let keys: Vec<String> = ["0000", "0005"]
            .iter()
            .map(|m| key("2026-11-01", m))
            .collect();
        let mut p = ScopeProgress {
            shared: true,
            ..progress(&keys, None)
        };
        p.mark(0, true);
        p.mark(1, true);
        assert!(!p.dirty && p.next == 0, "{:?}", (p.dirty, p.next));
    }

    #[test]
    fn the_checkpoint_stops_before_the_first_object_not_done() {
        let keys: Vec<String> = ["0000", "0005", "0010", "0015"]
            .iter()
            .map(|m| key("2026-11-01", m))
            .collect();
        let mut p = progress(&keys, None);
        let range = TimeRange::default();
        assert_eq!(p.checkpoint(&range), None);
        p.mark(0, true);
        p.mark(1, false); // failed
        p.mark(2, true);
        p.mark(3, true);
        let cp = p.checkpoint(&range).unwrap();
        assert_eq!(cp.through, keys[0], "not past the failed object");
        assert!(!cp.covers(&keys[1], name_time_ms(&keys[1])));
        // Done out of order: the checkpoint moves once the gap is filled.
        let mut p = progress(&keys, None);
        p.mark(2, true);
        assert_eq!(p.checkpoint(&range), None);
        assert!(!p.dirty);
        p.mark(0, true);
        p.mark(1, true);
        assert!(p.dirty);
        assert_eq!(p.checkpoint(&range).unwrap().through, keys[2]);
    }

    #[test]
    fn a_checkpoint_that_could_not_be_written_is_written_by_the_next_save() {
        use aws_sdk_dynamodb::config::{retry::RetryConfig, BehaviorVersion, Credentials, Region};
        // Nothing listens on port 1: every write fails at once.
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url("http://127.0.0.1:1")
                .credentials_provider(Credentials::new("a", "b", None, None, "test"))
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let keys = [key("2026-11-01", "0000")];
        let mut resume = Resume {
            checkpoints: CheckpointStore::Table {
                client,
                table: "state".into(),
            },
            range: TimeRange::default(),
            scopes: vec![progress(&keys, None)],
            at: HashMap::from([(0, (0, 0))]),
            last_saved: Instant::now(),
        };
        resume.done(0, true);
        assert!(resume.save(&runtime).is_err());
        assert!(resume.scopes[0].dirty, "still to be written");
        assert!(resume.save(&runtime).is_err(), "tried again");
    }

    #[test]
    fn a_checkpoint_lets_a_run_list_after_it_only_when_it_covers_the_runs_range() {
        let cp = Checkpoint {
            from_ms: Some(t("2026-11-01T00:00:00Z")),
            to_ms: None,
            through: key("2026-11-03", "1200"),
        };
        let since = |s: &str| TimeRange {
            since: Some(t(s)),
            until: None,
        };
        assert_eq!(
            cp.resume_after(&since("2026-11-02T00:00:00Z"), true),
            Some(cp.through.as_str())
        );
        assert_eq!(
            cp.resume_after(&since("2026-11-01T00:00:00Z"), true),
            Some(cp.through.as_str())
        );
        // A run reaching further back than the checkpoint must list those days.
        assert_eq!(cp.resume_after(&since("2026-10-01T00:00:00Z"), true), None);
        assert_eq!(cp.resume_after(&TimeRange::default(), true), None);
        // In a flat scope the checkpoint's end bounds it too.
        let flat = Checkpoint {
            from_ms: None,
            to_ms: Some(t("2026-11-05T00:00:00Z")),
            through: "logs/m".into(),
        };
        assert_eq!(flat.resume_after(&TimeRange::default(), false), None);
        let until = TimeRange {
            since: None,
            until: Some(t("2026-11-04T00:00:00Z")),
        };
        assert_eq!(flat.resume_after(&until, false), Some("logs/m"));
        // ... and it covers only what it selected.
        assert!(flat.covers("logs/a", Some(t("2026-11-04T00:00:00Z"))));
        assert!(!flat.covers("logs/a", Some(t("2026-11-05T00:00:00Z"))));
        assert!(!flat.covers("logs/a", None));
        assert!(!flat.covers("logs/z", Some(t("2026-11-04T00:00:00Z"))));
    }

    #[test]
    fn merging_keeps_only_what_is_true() {
        let day = |d: &str| Some(t(&format!("{d}T00:00:00Z")));
        let range = |since: Option<i64>| TimeRange { since, until: None };
        let cp = |from: Option<i64>, through: String| Checkpoint {
            from_ms: from,
            to_ms: None,
            through,
        };
        let old = cp(day("2026-11-01"), key("2026-11-03", "1200"));

        // Nothing done: the old one stands.
        assert_eq!(
            Checkpoint::merge(Some(old.clone()), &range(day("2026-11-02")), true, None),
            Some(old.clone())
        );
        // A resumed run (since inside what the old one covered) extends it.
        assert_eq!(
            Checkpoint::merge(
                Some(old.clone()),
                &range(day("2026-11-02")),
                true,
                Some(key("2026-11-04", "0800"))
            ),
            Some(cp(day("2026-11-01"), key("2026-11-04", "0800")))
        );
        // A run starting after a gap cannot vouch for the gap: it replaces the old
        // one, which it passes, from its own start.
        assert_eq!(
            Checkpoint::merge(
                Some(old.clone()),
                &range(day("2026-11-10")),
                true,
                Some(key("2026-11-11", "0800"))
            ),
            Some(cp(day("2026-11-10"), key("2026-11-11", "0800")))
        );
        // A run from further back that got past the old one's end covers both.
        assert_eq!(
            Checkpoint::merge(
                Some(old.clone()),
                &range(day("2026-10-01")),
                true,
                Some(key("2026-11-05", "0000"))
            ),
            Some(cp(day("2026-10-01"), key("2026-11-05", "0000")))
        );
        // One that stopped before it did not: the old one reaches further.
        assert_eq!(
            Checkpoint::merge(
                Some(old.clone()),
                &range(day("2026-10-01")),
                true,
                Some(key("2026-10-05", "0000"))
            ),
            Some(old.clone())
        );
        // In a flat scope, the run's end is kept.
        let until = TimeRange {
            since: None,
            until: day("2026-11-20"),
        };
        assert_eq!(
            Checkpoint::merge(None, &until, false, Some("logs/m".into())),
            Some(Checkpoint {
                from_ms: None,
                to_ms: day("2026-11-20"),
                through: "logs/m".into()
            })
        );
    }

    /// The claim a checkpoint makes, checked against which objects were really done,
    /// over runs with random ranges and failures on a generated region.
    #[test]
    fn checkpoints_never_cover_an_object_that_was_not_done() {
        let mut keys = Vec::new();
        for d in 1..=9 {
            for m in ["0000", "0800", "1600"] {
                keys.push(key(&format!("2026-11-0{d}"), m));
            }
        }
        let time = |k: &String| name_time_ms(k);
        let scope = "AWSLogs/111122223333/CloudTrail/eu-west-1/";
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..300 {
            let mut done: HashSet<String> = HashSet::new();
            let mut stored: Option<Checkpoint> = None;
            for _ in 0..4 {
                // The region, or one of its date folders (s3://.../eu-west-1/2026/11/03/).
                let within = match rng.u8(0..4) {
                    0 => String::new(),
                    1 => "2026/".to_owned(),
                    2 => "2026/11/".to_owned(),
                    _ => format!("2026/11/0{}/", rng.u8(1..=9)),
                };
                let group = Group {
                    list_prefix: format!("{scope}{within}"),
                    ..region(scope)
                };
                let since =
                    (rng.u8(0..3) > 0).then(|| t("2026-11-01T00:00:00Z") + rng.i64(0..9) * DAY_MS);
                let until =
                    (rng.u8(0..3) == 0).then(|| t("2026-11-02T00:00:00Z") + rng.i64(0..9) * DAY_MS);
                let range = TimeRange { since, until };
                if since.zip(until).is_some_and(|(s, u)| s >= u) {
                    continue;
                }
                // What the listing selects, as list_group does.
                let listed = group.range(&range);
                let after = stored
                    .as_ref()
                    .and_then(|cp| cp.resume_after(&listed, true));
                let selected: Vec<String> = keys
                    .iter()
                    .filter(|k| k.starts_with(&group.list_prefix))
                    .filter(|k| after.is_none_or(|a| k.as_str() > a))
                    .filter(|k| listed.contains(time(k)))
                    .filter(|k| !stored.as_ref().is_some_and(|cp| cp.covers(k, time(k))))
                    .cloned()
                    .collect();
                let mut p = ScopeProgress {
                    group: group.clone(),
                    ..progress(&selected, stored.clone())
                };
                // Judged oldest first; some fail; a run may stop early.
                let stop = rng.usize(0..=selected.len());
                for (i, k) in selected.iter().enumerate().take(stop) {
                    let ok = rng.u8(0..10) > 0;
                    if ok {
                        done.insert(k.clone());
                    }
                    p.mark(i, ok);
                }
                stored = p.checkpoint(&range);
                if let Some(cp) = &stored {
                    for k in &keys {
                        assert!(
                            !cp.covers(k, time(k)) || done.contains(k),
                            "{cp:?} covers {k}, never done"
                        );
                    }
                }
            }
        }
    }
}
