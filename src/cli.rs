//! The `geotrail` command line: the same engine as the Lambda, over local files, with an
//! embedded state store, so a scan can be tried in a minute and history backfilled.

use std::fs::File;
use std::hash::BuildHasher;
use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cloudtrail::{written_at_from_name, ReadOptions};
use crate::detect::Policy;
use crate::finding::{Rule, Severity};
use crate::geo::{GeoCache, GeoDb, GeoDbInfo};
use crate::notify::{FindingFormat, Notifier, WriterNotifier};
use crate::pipeline::{
    commit_scans, scan_object, CommitReport, ConflictRetry, ObjectScan, PipelineError, SkipCounts,
};
use crate::settings::PolicySettings;
use crate::state::{FileStateStore, MemoryStateStore, StateError, StateStore, WriteBackCache};

/// Where `geoip/fetch.sh` puts the free DB-IP City Lite database.
pub const DEFAULT_GEOIP: &str = "geoip/dbip-city-lite.mmdb";
pub const DEFAULT_STATE: &str = ".geotrail/state.redb";
/// Subjects kept in memory between objects before they are written back and dropped.
/// Past `MAX_SUBJECTS_UNPACKED` the idle ones are packed (`state::compact`), under a KB
/// for most subjects, so this bounds a long backfill to about a hundred MB; an
/// organisation's trail touches tens of thousands of keys a day, and below that every
/// object reloads most of its subjects from the store.
const MAX_SUBJECTS_IN_MEMORY: usize = 100_000;
/// Objects judged in one commit.
const MAX_OBJECTS_PER_COMMIT: usize = 8;

/// Threads reading objects by default: one per core, as the judging thread mostly waits
/// for them; past a few, judging is the slower stage.
fn default_readers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(4)
}
/// Subjects kept unpacked, ready to judge: about 2 KB each (a dozen stays). Past this,
/// the longest idle are packed down to half of it. Packing is for runs past an
/// organisation's day: measured on 46,000 keys (600,000 events), packing down from
/// 20,000 took a fifth more time and saved no memory, since a packed subject's bytes
/// and the churn of unpacking them again cost about what the unpacked states did.
const MAX_SUBJECTS_UNPACKED: usize = 50_000;

#[derive(Debug, Parser)]
#[command(
    name = "geotrail",
    version,
    about = "Catch stolen AWS credentials by where they are used"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan CloudTrail log files (.json, .json.gz, JSON Lines) for impossible travel.
    Scan(ScanArgs),
    /// Show what geotrail remembers about one subject (an access key id, or a principal
    /// ARN with `--subject principal`): its places and which are baseline, impossible hops
    /// seen before, recent stays and the findings raised, so you can see why something
    /// did or did not alert.
    Explain(ExplainArgs),
    /// List the rules: id, the public rule each answers to, severity and options.
    Rules,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The access key id (or principal ARN) to explain.
    #[arg(value_name = "SUBJECT", id = "subject_id")]
    pub subject_id: String,
    /// The state file `geotrail scan` wrote.
    #[arg(long, default_value = DEFAULT_STATE, value_name = "FILE")]
    pub state: PathBuf,
    /// Read the subject from the Lambda's DynamoDB table instead (the SDK's standard
    /// variables choose the account, region and endpoint).
    #[cfg(feature = "aws")]
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ExplainFormat,
    #[command(flatten)]
    pub policy: PolicySettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Readable blocks, one per finding.
    Text,
    /// The finding JSON, one per line.
    Jsonl,
    /// OCSF Detection Findings (class 2004), one per line.
    Ocsf,
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Files and directories (read recursively, in name order); `-` reads standard input;
    /// s3://BUCKET/PREFIX reads a trail's bucket, oldest object first.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// MaxMind-format City database (GeoLite2/GeoIP2 City or DB-IP City Lite).
    #[arg(long, env = "GEOTRAIL_GEOIP", default_value = DEFAULT_GEOIP, value_name = "MMDB")]
    pub geoip: PathBuf,
    /// Optional GeoLite2-ASN database: adds the network owner to each location.
    #[arg(long, env = "GEOTRAIL_GEOIP_ASN", value_name = "MMDB")]
    pub geoip_asn: Option<PathBuf>,
    /// State file: history carries over between scans, so new files continue the story.
    #[arg(long, default_value = DEFAULT_STATE, value_name = "FILE", conflicts_with = "no_state")]
    pub state: PathBuf,
    /// Keep state in memory only, for this run.
    #[arg(long)]
    pub no_state: bool,
    /// How findings are written to standard output.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
    /// Refuse objects that decompress to more than this many MiB (a gzip bomb guard).
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub max_object_mib: u64,
    /// No progress bar and no summary on standard error.
    #[arg(long, short)]
    pub quiet: bool,
    /// Threads reading local files while another judges them [default: one per core, at
    /// most 4]; S3 objects are read by one, as they arrive. The findings and their order do
    /// not depend on it.
    #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,
    /// Print only findings of this severity or above (all are still raised and
    /// remembered): info, low, medium, high or critical.
    #[arg(
        long,
        default_value = "low",
        env = "GEOTRAIL_MIN_SEVERITY",
        value_name = "SEVERITY"
    )]
    pub min_severity: Severity,
    /// Judge and save state, but publish no finding (the summary still counts them):
    /// to seed history without alerting on it.
    #[arg(long)]
    pub no_alerts: bool,
    #[cfg(feature = "aws")]
    #[command(flatten)]
    pub s3: crate::aws::backfill::BackfillArgs,
    #[command(flatten)]
    pub policy: PolicySettings,
}

/// Entry point of the binary, which calls this and nothing else: the process's exit
/// status (0, 1 when some input failed, 2 when the run could not go on).
pub fn main() -> u8 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("geotrail: {}", error_text(&err));
            2
        }
    }
}

/// The error and its causes, as `{:#}` writes them, without a cause the message before it
/// already ends with: some errors quote their source as well as return it, and a broken
/// pipe would otherwise read `writing findings: Broken pipe: writing findings: Broken
/// pipe: Broken pipe`.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Scan(args) => scan(args),
        Command::Explain(args) => explain(args),
        Command::Rules => {
            print!("{}", rules_text());
            Ok(0)
        }
    }
}

/// What `geotrail rules` prints.
pub fn rules_text() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for rule in Rule::ALL {
        let (severity, fires, options): (&str, &str, &[&str]) = match rule {
            Rule::ImpossibleTravel => (
                "high (medium under 2,000 km unless concurrent; low when both ends share one network)",
                "a subject used from two places too far apart for the time between them",
                &[
                    "--min-distance-km 500", "--min-speed-kmh 1000", "--no-accuracy-radius",
                    "--concurrent-minutes 5", "--history-days 30", "--no-baseline",
                    "--learning-hours 24", "--forget-after-days 30", "--dedup-minutes 60",
                    "--subject access-key",
                ],
            ),
            Rule::UnusualCityForCommand => (
                "low",
                "an API call from a city the account has not seen making it within the lookback",
                &[
                    "--rare-learning-hours 48", "--rare-lookback-days 30", "--rare-min-seen 1",
                    "--rare-group-minutes 60",
                ],
            ),
            Rule::UnusualErrorCode => (
                "low",
                "an error code the account has not seen within the lookback",
                &[
                    "--rare-learning-hours 48", "--rare-lookback-days 30", "--rare-min-seen 1",
                    "--rare-group-minutes 60",
                ],
            ),
            Rule::LongTermAccessKeyAuth => (
                "info (low when the address is new for the key)",
                "a successful call signed with a long-term IAM user key (AKIA...)",
                &["--key-auth-dedup-minutes 60", "--new-address-days 10", "--rare-learning-hours 48"],
            ),
            Rule::FutureEventTime => (
                "low",
                "records stamped after their log object was written (forged, or a broken clock)",
                &["--future-tolerance-minutes 60"],
            ),
        };
        let _ = writeln!(out, "{}", rule.as_str());
        let _ = writeln!(out, "  fires on   {fires}");
        let _ = writeln!(out, "  severity   {severity}");
        for anchor in rule.references() {
            let _ = writeln!(out, "  answers to {anchor}");
        }
        let _ = writeln!(out, "  options    {}", options.join(", "));
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "All rules run by default; choose with --rules ID,ID (or GEOTRAIL_RULES)."
    );
    out
}

/// Run totals, for the summary line.
#[derive(Debug, Default)]
struct Totals {
    objects: u64,
    objects_skipped: SkipCounts,
    objects_failed: u64,
    events: u64,
    sightings: u64,
    skipped: SkipCounts,
    findings: u64,
    /// Raised below `--min-severity`: never built, only counted.
    unreported: u64,
    by_rule: SkipCounts,
    bytes: u64,
    newest_event_ms: Option<i64>,
}

fn scan(args: ScanArgs) -> anyhow::Result<u8> {
    let mut policy = args
        .policy
        .to_policy()
        .context("invalid detection options")?;
    // What would not be printed is not built either.
    policy.rules.report_min = args.min_severity;
    let geo = open_geoip(&args.geoip, args.geoip_asn.as_deref())?;
    let options = ReadOptions {
        max_decompressed_bytes: Some(args.max_object_mib.saturating_mul(1 << 20)),
        ..ReadOptions::default()
    };
    let format = match args.format {
        FormatArg::Text => FindingFormat::Text,
        FormatArg::Jsonl => FindingFormat::Jsonl,
        FormatArg::Ocsf => FindingFormat::Ocsf,
    };
    let out: Box<dyn io::Write + Send> = if args.no_alerts {
        Box::new(io::sink())
    } else {
        Box::new(io::BufWriter::new(io::stdout()))
    };
    let notifier = WriterNotifier::new(out, format).with_min_severity(args.min_severity);
    // Timers for the backoff after a lost save race; I/O for DynamoDB (`--table`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let terminal = !args.quiet && io::stderr().is_terminal();

    let started = Instant::now();
    let mut run = Run {
        policy: &policy,
        geoip: geo.info(),
        options: &options,
        totals: Totals::default(),
        subjects: Default::default(),
        subject_hasher: Default::default(),
        readers: args.jobs.map_or_else(default_readers, usize::from),
    };
    #[cfg(feature = "aws")]
    let table = args.s3.table.clone();
    #[cfg(not(feature = "aws"))]
    let table: Option<String> = None;
    if let Some(table) = table {
        #[cfg(feature = "aws")]
        {
            let ttl_days =
                crate::aws::lambda::config::default_state_ttl_days(&args.policy, &policy);
            let client = runtime.block_on(async {
                aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await)
            });
            // No write-back cache: the Lambda may be writing the same items, and every
            // object's state is saved at once with the version it was read at.
            let store = crate::aws::dynamo::DynamoStateStore::new(
                client.clone(),
                table.clone(),
                i64::from(ttl_days),
            );
            let checkpoints = CheckpointStore::Table { client, table };
            let plan = plan(&args, checkpoints, &runtime, terminal)?;
            run.from(plan, &geo, &store, &notifier, &runtime, terminal)?;
        }
        #[cfg(not(feature = "aws"))]
        let _ = table;
    } else if args.no_state {
        let store = WriteBackCache::new(MemoryStateStore::new());
        let plan = plan(&args, CheckpointStore::None, &runtime, terminal)?;
        run.from(plan, &geo, &store, &notifier, &runtime, terminal)?;
        store.end_at_exit();
    } else {
        // Subjects stay in memory between objects and are written back in batches: this
        // process holds the state file's lock, so nothing else can change them meanwhile.
        let store = WriteBackCache::new(FileStateStore::open(&args.state)?);
        let plan = plan(
            &args,
            CheckpointStore::File(store.inner()),
            &runtime,
            terminal,
        )?;
        run.from(plan, &geo, &store, &notifier, &runtime, terminal)?;
        if let Some(newest) = run.totals.newest_event_ms {
            store
                .inner()
                .prune_before(newest - policy.history_window_ms)?;
        }
        store.end_at_exit();
    }
    if !args.quiet {
        print_summary(
            notifier.hidden() + run.totals.unreported,
            &run.totals,
            run.subjects.len(),
            started.elapsed(),
            &args,
            &geo,
        );
    }
    Ok(if run.totals.objects_failed > 0 { 1 } else { 0 })
}

#[cfg(feature = "aws")]
use crate::aws::backfill::{CheckpointStore, Plan};

#[cfg(feature = "aws")]
fn plan<'a>(
    args: &ScanArgs,
    checkpoints: CheckpointStore<'a>,
    runtime: &tokio::runtime::Runtime,
    terminal: bool,
) -> anyhow::Result<Plan<'a>> {
    crate::aws::backfill::plan(
        &args.paths,
        &args.s3,
        checkpoints,
        runtime,
        args.quiet,
        terminal,
    )
}

#[cfg(not(feature = "aws"))]
use no_aws::{CheckpointStore, Plan};

#[cfg(not(feature = "aws"))]
fn plan<'a>(
    args: &ScanArgs,
    _checkpoints: CheckpointStore<'a>,
    _runtime: &tokio::runtime::Runtime,
    _terminal: bool,
) -> anyhow::Result<Plan<'a>> {
    if let Some(url) = args
        .paths
        .iter()
        .find(|p| p.to_str().is_some_and(|s| s.starts_with("s3://")))
    {
        bail!(
            "{}: reading from S3 needs geotrail built with the `aws` feature (the default)",
            url.display()
        );
    }
    Ok(Plan {
        inputs: expand_inputs(&args.paths)?,
        resume: no_aws::Resume(std::marker::PhantomData),
    })
}

/// Without the AWS SDK there is no S3 to read, so nothing to resume.
#[cfg(not(feature = "aws"))]
mod no_aws {
    pub enum CheckpointStore<'a> {
        None,
        File(#[allow(dead_code)] &'a crate::state::FileStateStore),
    }

    pub struct Plan<'a> {
        pub inputs: Vec<super::Input>,
        pub resume: Resume<'a>,
    }

    pub struct Resume<'a>(pub std::marker::PhantomData<&'a ()>);

    impl Resume<'_> {
        pub fn done(&mut self, _index: usize, _ok: bool) {}

        pub fn due(&self) -> bool {
            false
        }

        pub fn save(&mut self, _runtime: &tokio::runtime::Runtime) -> anyhow::Result<usize> {
            Ok(0)
        }
    }
}

fn explain(args: ExplainArgs) -> anyhow::Result<u8> {
    let policy = args
        .policy
        .to_policy()
        .context("invalid detection options")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let asked = [args.subject_id.clone()];
    #[cfg(feature = "aws")]
    let loaded = match &args.table {
        Some(table) => runtime.block_on(async {
            let sdk = aws_config::load_from_env().await;
            let store = crate::aws::dynamo::DynamoStateStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table.clone(),
                0,
            );
            store.load(&asked).await
        })?,
        None => load_from_file(&args.state, &asked, &runtime)?,
    };
    #[cfg(not(feature = "aws"))]
    let loaded = load_from_file(&args.state, &asked, &runtime)?;
    let Some(found) = loaded.into_values().next() else {
        eprintln!(
            "geotrail: no state for {}: it was never seen, or its history expired",
            args.subject_id
        );
        return Ok(1);
    };
    let explanation = found.state.explain(&policy);
    match args.format {
        ExplainFormat::Text => print!("{}", explanation.to_text()),
        ExplainFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&explanation).expect("an explanation serializes")
        ),
    }
    Ok(0)
}

fn load_from_file(
    path: &Path,
    subjects: &[String],
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<foldhash::HashMap<String, crate::state::Versioned>> {
    if !path.exists() {
        bail!(
            "state file {} not found: run `geotrail scan` first, or name the file with --state",
            path.display()
        );
    }
    let store = FileStateStore::open(path)?;
    Ok(runtime.block_on(store.load(subjects))?)
}

fn open_geoip(city: &Path, asn: Option<&Path>) -> anyhow::Result<GeoDb> {
    if !city.exists() {
        bail!(
            "GeoIP database {} not found: run geoip/fetch.sh for the free DB-IP City Lite database, \
             or point --geoip (or GEOTRAIL_GEOIP) at a GeoLite2/GeoIP2 City database",
            city.display()
        );
    }
    Ok(GeoDb::open(city, asn)?)
}

/// Between batches of objects, hands back the database pages the lookups mapped:
/// otherwise kept for the life of the process, they were 60 MB of an organisation's
/// trail's (46,000 keys) resident set. Once per batch, not per object.
///
/// Freed heap pages are not forced back here: mimalloc purges them by itself a second
/// after they empty (`src/main.rs`). A forced `mi_collect` per batch cost up to an eighth
/// of the time with every rule on (each batch then allocated into pages faulted in
/// again).
fn release_memory(geo: &GeoDb) {
    geo.release_pages();
}

/// How far readers lower their priority (nice, 0 to 19). Measured at organisation scale
/// (46,000 keys, every rule on, six alternating runs): 0.98x `gzip -dc` at 0, 0.95x at 10
/// and at 19.
const READER_NICE: i32 = 10;

/// Lowers the calling reader thread's priority (and that of the threads it starts), so
/// that the judging thread runs whenever it can: objects are judged in order, one batch at
/// a time, and readers that run ahead only fill their channels until they block, leaving
/// a core to the judge alone; when the judge waits for them, they still have every core.
fn give_way_to_the_judge() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on this thread's own id; a failure (a sandbox that
        // forbids it) only leaves the priority as it was.
        unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, READER_NICE);
        }
    }
}

struct Run<'a> {
    policy: &'a Policy,
    geoip: &'a GeoDbInfo,
    options: &'a ReadOptions,
    totals: Totals,
    /// Every subject seen, for the summary's count, by a 64-bit hash of its name: the
    /// names cost 3 MB over an organisation's 46,000 keys. Two names would share a hash
    /// (and the count be one short) with odds of about one in ten billion at that scale.
    subjects: rustc_hash::FxHashSet<u64>,
    /// Seeded per run, like the maps keyed by log text.
    subject_hasher: foldhash::quality::RandomState,
    /// Threads reading objects.
    readers: usize,
}

/// What a scan needs of a store beyond the port.
trait RunStore: StateStore + Send {
    /// Between objects: a cache sheds what it holds past its bounds.
    fn between_objects(&self, _runtime: &tokio::runtime::Runtime) -> Result<(), StateError> {
        Ok(())
    }

    /// Makes what was judged durable, before a checkpoint vouches for it.
    fn commit(&self, _runtime: &tokio::runtime::Runtime) -> Result<(), StateError> {
        Ok(())
    }
}

fn shed<S: StateStore + Send>(
    cache: &WriteBackCache<S>,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), StateError> {
    cache.pack_idle(MAX_SUBJECTS_UNPACKED);
    runtime.block_on(cache.trim(MAX_SUBJECTS_IN_MEMORY))
}

impl RunStore for WriteBackCache<FileStateStore> {
    fn between_objects(&self, runtime: &tokio::runtime::Runtime) -> Result<(), StateError> {
        shed(self, runtime)
    }

    fn commit(&self, runtime: &tokio::runtime::Runtime) -> Result<(), StateError> {
        self.inner()
            .deferring_durability(|| runtime.block_on(self.flush()).map(drop))
    }
}

/// `--no-state`: nothing outlives the run and no checkpoint is kept, so there is nothing
/// to commit. Flushing would only copy every subject into the memory store as JSON
/// (a few hundred MB on an organisation's trail) just before it is dropped.
impl RunStore for WriteBackCache<MemoryStateStore> {
    fn between_objects(&self, runtime: &tokio::runtime::Runtime) -> Result<(), StateError> {
        shed(self, runtime)
    }
}

/// Every save is a conditional PutItem, durable once it returns.
#[cfg(feature = "aws")]
impl RunStore for crate::aws::dynamo::DynamoStateStore {}

impl Run<'_> {
    /// Scans a plan's inputs into `store`, writing its checkpoints as objects complete.
    fn from<S: RunStore, N: Notifier + Sync>(
        &mut self,
        plan: Plan<'_>,
        geo: &GeoDb,
        store: &S,
        notifier: &N,
        runtime: &tokio::runtime::Runtime,
        terminal: bool,
    ) -> anyhow::Result<()> {
        let Plan { inputs, mut resume } = plan;
        let progress = progress_bar(terminal && inputs.len() > 1, &inputs);
        let mut on_done = |index: usize, ok: bool| -> anyhow::Result<()> {
            resume.done(index, ok);
            if resume.due() {
                store.commit(runtime)?;
                resume.save(runtime)?;
            }
            Ok(())
        };
        let scanned = self.all(
            &inputs,
            geo,
            store,
            notifier,
            runtime,
            &progress,
            &mut on_done,
        );
        progress.finish_and_clear();
        // Whatever was judged is kept, even when the run stopped early.
        store.commit(runtime)?;
        resume.save(runtime)?;
        scanned
    }

    /// `on_done(index, ok)` after each input: `ok` when it was read in full and its
    /// state committed.
    #[allow(clippy::too_many_arguments)]
    fn all<S: RunStore, N: Notifier + Sync>(
        &mut self,
        inputs: &[Input],
        geo: &GeoDb,
        store: &S,
        notifier: &N,
        runtime: &tokio::runtime::Runtime,
        progress: &ProgressBar,
        on_done: &mut dyn FnMut(usize, bool) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        // Reading objects (decompress, parse, geolocate) is most of a scan's work, and
        // objects are independent until they are judged: readers take every `readers`-th
        // object each, with a lookup cache of their own, while this thread judges and saves
        // the previous batch. Results are taken from the readers in turn, so objects are
        // still committed in the order given, whatever the timing.
        // S3 objects arrive from one prefetch stream in list order, within a byte budget
        // (`--s3-parallel` GETs already overlap): they are taken by one reader, in order.
        let readers = if inputs.iter().any(|i| i.remote.is_some()) {
            1
        } else {
            self.readers.clamp(1, inputs.len().max(1))
        };
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..readers)
            .map(|_| {
                std::sync::mpsc::sync_channel::<Result<ObjectScan, (String, io::Error)>>(
                    MAX_OBJECTS_PER_COMMIT.div_ceil(readers),
                )
            })
            .unzip();
        // Judged objects go back to the reader that read them, to be freed there: freeing
        // on the allocating thread is cheaper, and with every rule on, judging is the
        // slower stage.
        let (spent, spent_receivers): (Vec<_>, Vec<_>) = (0..readers)
            .map(|_| std::sync::mpsc::channel::<Vec<ObjectScan>>())
            .unzip();
        // With a reader per core the cores are busy anyway: each reader decodes its own
        // objects rather than handing that to a thread per object.
        let options = &ReadOptions {
            decode_on_own_thread: self.options.decode_on_own_thread && readers == 1,
            ..self.options.clone()
        };
        let policy = self.policy;
        std::thread::scope(|scope| {
            // Owned here, so that a run that stops early drops them before the scope waits
            // for the readers: a reader blocked on a full channel then sees the receiver
            // gone and stops, rather than waiting for ever.
            let receivers = receivers;
            for (first, (tx, freed_here)) in senders.into_iter().zip(spent_receivers).enumerate() {
                let read = move || {
                    give_way_to_the_judge();
                    let mut cache = GeoCache::new(geo);
                    for input in inputs.iter().skip(first).step_by(readers) {
                        freed_here.try_iter().for_each(drop);
                        let name = input.display_name();
                        // A local file has no trustworthy write time but CloudTrail's name;
                        // without one, the scan's own clock bounds how late an event may be.
                        let written_at_ms =
                            written_at_from_name(&name).unwrap_or_else(crate::clock::epoch_ms_now);
                        let scanned = match input.open() {
                            Ok(reader) => Ok(scan_object(
                                &name,
                                reader,
                                written_at_ms,
                                &mut cache,
                                policy,
                                options,
                            )),
                            Err(err) => Err((name, err)),
                        };
                        // The receiver is gone only when the run is failing: stop reading.
                        if tx.send(scanned).is_err() {
                            break;
                        }
                    }
                };
                std::thread::Builder::new()
                    .name("geotrail-read".into())
                    .spawn_scoped(scope, read)
                    .context("starting a thread to read objects")?;
            }
            let mut received = 0;
            let mut next = || {
                let scanned = receivers[received % readers].recv();
                received += 1;
                scanned
            };
            let mut index = 0;
            while let Ok(first) = next() {
                // Objects are committed a fixed number at a time, so each subject is loaded
                // and saved once for all of them (a DynamoDB round trip each with
                // `--table`), while the readers fill the next batch. Fixed, not "whatever
                // is ready": the output's order must not depend on timing.
                // The last few batches are smaller: once the readers are done, this thread
                // judges what is left while the other cores idle, and a full batch with a
                // full queue behind it was a tenth of a second of that at organisation
                // scale. Still a function of the position alone, not of timing.
                let mut batch = vec![first];
                let batch_len = (inputs.len() - index)
                    .div_ceil(4)
                    .clamp(1, MAX_OBJECTS_PER_COMMIT);
                while batch.len() < batch_len {
                    match next() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let mut scans = Vec::with_capacity(batch.len());
                let mut indices = Vec::with_capacity(batch.len());
                for scanned in batch {
                    let input = &inputs[index];
                    progress.set_message(format!(
                        "{}/{} objects, {} events  {}",
                        index,
                        inputs.len(),
                        self.totals.events,
                        input.display_name()
                    ));
                    progress.inc(input.len);
                    match scanned {
                        Ok(scan) => {
                            scans.push(scan);
                            indices.push(index);
                        }
                        Err((name, err)) => {
                            progress.suspend(|| eprintln!("geotrail: {name}: {err}"));
                            self.totals.objects_failed += 1;
                            on_done(index, false)?;
                        }
                    }
                    index += 1;
                }
                let committed = runtime.block_on(commit_scans(
                    &scans,
                    self.policy,
                    self.geoip,
                    store,
                    notifier,
                    &ConflictRetry::default(),
                ));
                for ((scan, committed), index) in scans.iter().zip(committed).zip(&indices) {
                    let failed_before = self.totals.objects_failed;
                    self.account(scan, committed, progress)?;
                    on_done(*index, self.totals.objects_failed == failed_before)?;
                }
                store.between_objects(runtime)?;
                release_memory(geo);
                let mut by_reader: Vec<Vec<ObjectScan>> =
                    (0..readers).map(|_| Vec::new()).collect();
                for (scan, index) in scans.into_iter().zip(indices) {
                    by_reader[index % readers].push(scan);
                }
                for (reader, scans) in by_reader.into_iter().enumerate() {
                    // A reader that has finished frees nothing more: the scans are dropped
                    // here instead.
                    let _ = spent[reader].send(scans);
                }
            }
            Ok(())
        })
    }

    /// Adds one object's outcome to the totals; a state or output failure ends the run,
    /// since every later object would fail the same way.
    fn account(
        &mut self,
        scan: &ObjectScan,
        committed: Result<CommitReport, PipelineError>,
        progress: &ProgressBar,
    ) -> anyhow::Result<()> {
        let t = &mut self.totals;
        t.objects += 1;
        if let Some(reason) = scan.skipped_object {
            t.objects_skipped.add(reason);
        }
        if let Some(summary) = &scan.summary {
            t.bytes += summary.bytes_decoded;
        }
        t.events += scan.events;
        t.sightings += scan.sighting_count() as u64;
        t.skipped.merge(&scan.skipped);
        t.skipped.add_n("bad_record", scan.bad_records);
        for s in &scan.subjects {
            self.subjects
                .insert(self.subject_hasher.hash_one(s.subject.as_str()));
            if let Some(last) = s.sightings.last() {
                t.newest_event_ms = Some(
                    t.newest_event_ms
                        .map_or(last.point.t, |n| n.max(last.point.t)),
                );
            }
        }
        if scan.has_faults() {
            t.objects_failed += 1;
            progress.suspend(|| {
                for line in scan.fault_messages() {
                    eprintln!("geotrail: {line}");
                }
            });
        }
        let report = committed?;
        if !report.quarantined.is_empty() {
            t.objects_failed += 1;
            progress.suspend(|| {
                for q in &report.quarantined {
                    eprintln!(
                        "geotrail: {}: subject {} not judged, its stored state is unreadable: {}",
                        scan.name, q.subject, q.reason
                    );
                }
            });
        }
        t.findings += report.findings.len() as u64 + report.unreported;
        t.unreported += report.unreported;
        for f in &report.findings {
            t.by_rule.add(f.rule.as_str());
        }
        // Only the long-term key rule raises findings too minor to build.
        t.by_rule
            .add_n(Rule::LongTermAccessKeyAuth.as_str(), report.unreported);
        t.skipped.add_n("stale", report.stale);
        Ok(())
    }
}

/// One thing to read: a file, standard input, or an object elsewhere (`remote`).
#[derive(Debug, Clone)]
pub struct Input {
    pub path: Option<PathBuf>,
    pub len: u64,
    pub remote: Option<Arc<dyn RemoteObject>>,
}

/// An object read from somewhere other than the file system: an S3 object of a backfill.
pub trait RemoteObject: std::fmt::Debug + Send + Sync {
    fn name(&self) -> &str;
    /// Called once, by the reader thread, in input order.
    fn open(&self) -> io::Result<Box<dyn Read + Send>>;
}

impl Input {
    fn display_name(&self) -> String {
        match (&self.remote, &self.path) {
            (Some(remote), _) => remote.name().to_owned(),
            (None, Some(p)) => p.display().to_string(),
            (None, None) => "<stdin>".to_owned(),
        }
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(match (&self.remote, &self.path) {
            (Some(remote), _) => remote.open()?,
            (None, Some(p)) => Box::new(File::open(p)?),
            (None, None) => Box::new(io::stdin()),
        })
    }
}

/// Files as given, directories walked in name order (so a scan is repeatable), `-` as
/// standard input. Inside directories only log-like names are taken, so a README next to
/// the logs is not reported as a broken object.
pub fn expand_inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            out.push(Input {
                path: None,
                len: 0,
                remote: None,
            });
            continue;
        }
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            walk(path, &mut out).with_context(|| format!("cannot list {}", path.display()))?;
        } else {
            out.push(Input {
                path: Some(path.clone()),
                len: meta.len(),
                remote: None,
            });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Input>) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            walk(&path, out)?;
        } else if is_log_name(&name) {
            out.push(Input {
                path: Some(path),
                len: meta.len(),
                remote: None,
            });
        }
    }
    Ok(())
}

pub(crate) fn is_log_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        ".json",
        ".json.gz",
        ".jsonl",
        ".jsonl.gz",
        ".ndjson",
        ".gz",
        ".log",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

fn progress_bar(show: bool, inputs: &[Input]) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let total: u64 = inputs.iter().map(|i| i.len).sum();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}")
            .expect("the progress template is valid"),
    );
    bar
}

fn print_summary(
    hidden: u64,
    t: &Totals,
    subjects: usize,
    elapsed: Duration,
    args: &ScanArgs,
    geo: &GeoDb,
) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let info = geo.info();
    eprintln!(
        "geotrail: {} objects ({} failed), {} events, {} sightings, {} subjects, {} findings in {:.2}s ({:.0} events/s, {:.1} MB/s)",
        t.objects,
        t.objects_failed,
        t.events,
        t.sightings,
        subjects,
        t.findings,
        secs,
        t.events as f64 / secs,
        t.bytes as f64 / secs / 1e6,
    );
    if t.findings > 0 {
        eprintln!("  findings:        {}", join_counts(&t.by_rule));
    }
    if hidden > 0 {
        eprintln!(
            "  {hidden} findings below {} not printed (--min-severity info prints them)",
            args.min_severity
        );
    }
    if t.objects_skipped.total() > 0 {
        eprintln!("  objects skipped: {}", join_counts(&t.objects_skipped));
    }
    if t.skipped.total() > 0 {
        eprintln!("  events skipped:  {}", join_counts(&t.skipped));
    }
    eprintln!(
        "  geoip: {} ({}), state: {}",
        info.database_type,
        crate::finding::format_rfc3339_ms(info.build_epoch as i64 * 1000),
        match () {
            #[cfg(feature = "aws")]
            () if args.s3.table.is_some() =>
                format!("table {}", args.s3.table.as_deref().unwrap_or_default()),
            () if args.no_state => "memory".to_owned(),
            () => args.state.display().to_string(),
        }
    );
}

fn join_counts(c: &SkipCounts) -> String {
    c.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_each_cause_once() {
        let pipe = || io::Error::new(io::ErrorKind::BrokenPipe, "Broken pipe");
        // Quotes its source and returns it too, as the output errors do.
        let notify = crate::notify::NotifyError::Io(pipe());
        let quoted = PipelineError::Notify {
            object: "trail/a.json.gz".to_owned(),
            source: std::sync::Arc::new(notify),
        };
        assert_eq!(
            error_text(&anyhow::Error::new(quoted)),
            "trail/a.json.gz: writing findings: Broken pipe"
        );
        // Causes that do not quote each other are all kept, in order.
        let layered = anyhow::Error::new(pipe())
            .context("saving the state file")
            .context("scan");
        assert_eq!(
            error_text(&layered),
            "scan: saving the state file: Broken pipe"
        );
    }

    #[test]
    fn directories_are_walked_in_name_order_taking_only_log_names() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("b");
        std::fs::create_dir(&sub).unwrap();
        for name in [
            "b/2.json.gz",
            "a.json",
            "README.md",
            ".hidden.json",
            "c.jsonl",
            "b/1.log",
        ] {
            std::fs::write(dir.path().join(name), b"{}").unwrap();
        }
        let got: Vec<String> = expand_inputs(&[dir.path().to_path_buf()])
            .unwrap()
            .into_iter()
            .map(|i| {
                i.path
                    .unwrap()
                    .strip_prefix(dir.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(got, ["a.json", "b/1.log", "b/2.json.gz", "c.jsonl"]);
    }

    #[test]
    fn a_missing_path_is_an_error_naming_it() {
        let err = expand_inputs(&[PathBuf::from("no/such/dir")]).unwrap_err();
        assert!(format!("{err:#}").contains("no/such/dir"), "{err:#}");
    }
}
