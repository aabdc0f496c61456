//! One log object through the whole path: read, geolocate, judge, publish, save.
//!
//! This is the only module that knows every port. It runs in two stages so that each
//! entry point can put them where they belong:
//!
//! 1. [`scan_object`] (sync, CPU-bound): bytes -> sightings grouped by subject, with every
//!    skip counted by reason and every fault recorded with the object's name.
//! 2. [`commit_scans`] (async, I/O): load the subjects' state, judge each sighting in
//!    event-time order, publish the findings, save the state; for all the scans of an
//!    invocation at once, so that each subject is loaded and saved once
//!    ([`commit_scan`] for one).
//!
//! # No finding lost, none twice
//!
//! S3 delivers events at least once, Lambda retries failed invocations, and Lambdas run
//! side by side on objects that share subjects. The commit is ordered so that a crash at
//! any point costs at most a repeated publish of a finding with the same `finding_id`:
//!
//! 1. load every subject of the objects (one batch read); a subject whose stored item
//!    is corrupt is quarantined: neither judged nor saved, reported in the result;
//! 2. judge; findings are a pure function of (loaded state, sightings);
//! 3. **publish** the findings;
//! 4. **save** each changed subject, conditional on the version loaded.
//!
//! A crash before 3 leaves no trace: the retry recomputes the same findings. A crash
//! between 3 and 4 means the retry publishes them again, with the same ids (finding ids
//! are deterministic); the Lambda's notifier claims each incident before publishing it
//! (`notify::claim`), which also stops racing Lambdas from publishing one incident under
//! two ids. Once 4 has happened, the saved state
//! holds the findings' alert marks and the object's sightings, so a replay judges every
//! sighting as already known and publishes nothing. When a save loses a race
//! (`Conflict`), that subject is reloaded and its sightings re-applied to the winner's
//! state, after a jittered delay and until a deadline ([`ConflictRetry`]); findings this
//! invocation already published are not published again, new ones are published before
//! the retried save. Publishing before saving is what rules out the
//! lost finding: a finding is never recorded as raised before it has been delivered.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use foldhash::HashMap as FastMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cloudtrail::{self, Event, ObjectError, ObjectSummary, ReadOptions, RecordError};
use crate::detect::rarity::{self, RuleBatch, RuleEvent};
use crate::detect::tally::{Tally, TallyKey};
use crate::detect::{
    future_time_finding, Call, Effect, EventId, FindingContext, FutureRecords, Point, Policy,
    Sighting, SubjectKind, SubjectState,
};
use crate::finding::{CompactIdentity, Finding, FutureEvent, Rule};
use crate::geo::{classify_source, GeoCache, GeoDbInfo};
use crate::notify::{Notifier, NotifyError};
use crate::state::{LoadedInOrder, SaveOutcome, StateError, StateStore, Versioned, VersionedTally};

/// How many record errors an object keeps in full; the rest are counted.
const MAX_RECORD_ERRORS_KEPT: usize = 20;

/// Counted reasons for not judging something: a skip is not an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipCounts(BTreeMap<&'static str, u64>);

impl SkipCounts {
    pub fn add(&mut self, reason: &'static str) {
        self.add_n(reason, 1);
    }

    pub fn add_n(&mut self, reason: &'static str, n: u64) {
        if n > 0 {
            *self.0.entry(reason).or_default() += n;
        }
    }

    pub fn merge(&mut self, other: &SkipCounts) {
        for (reason, n) in &other.0 {
            self.add_n(reason, *n);
        }
    }

    pub fn get(&self, reason: &str) -> u64 {
        self.0.get(reason).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }
}

/// One subject's sightings in one object.
#[derive(Debug, Clone)]
pub struct SubjectSightings {
    pub subject: String,
    /// From the subject's latest event in the object (its first future one while it has
    /// no other); shared with the account-level rules' calls of the same event.
    pub identity: Arc<CompactIdentity>,
    /// The account called by the subject's latest event in the object
    /// (`recipientAccountId`); the credential's own account is `identity.account_id`.
    pub account_id: Option<String>,
    /// Sorted by event time, then event id.
    pub sightings: Vec<Sighting>,
    /// Records stamped after the object was written: reported, never judged.
    pub future: FutureRecords,
    latest_ms: i64,
}

/// What reading one object produced.
#[derive(Debug)]
pub struct ObjectScan {
    /// `s3://bucket/key` or a file path: every message about the object names it.
    pub name: String,
    /// When the object was written, epoch ms: events stamped more than the policy's
    /// tolerance after it are from the future.
    pub written_at_ms: i64,
    /// Why the whole object was skipped unread (digest files and the like).
    pub skipped_object: Option<&'static str>,
    pub summary: Option<ObjectSummary>,
    /// Events read without error.
    pub events: u64,
    pub skipped: SkipCounts,
    /// Sorted by subject.
    pub subjects: Vec<SubjectSightings>,
    /// What the account-level rules read from the object.
    pub rules: RuleBatch,
    /// The first few bad records; `bad_records` counts them all.
    pub record_errors: Vec<RecordError>,
    pub bad_records: u64,
    /// The fault that stopped reading, after the events before it were kept.
    pub error: Option<ObjectError>,
}

impl SubjectSightings {
    fn new(subject: &str, identity: Arc<CompactIdentity>) -> SubjectSightings {
        SubjectSightings {
            subject: subject.to_owned(),
            identity,
            account_id: None,
            sightings: Vec::new(),
            future: FutureRecords::default(),
            latest_ms: i64::MIN,
        }
    }
}

impl ObjectScan {
    /// Something in the object could not be read; what could be read is still judged.
    pub fn has_faults(&self) -> bool {
        self.error.is_some() || self.bad_records > 0
    }

    pub fn sighting_count(&self) -> usize {
        self.subjects.iter().map(|s| s.sightings.len()).sum()
    }

    /// One line per fault, each naming the object.
    pub fn fault_messages(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .record_errors
            .iter()
            .map(|e| format!("{}: {e}", self.name))
            .collect();
        let hidden = self
            .bad_records
            .saturating_sub(self.record_errors.len() as u64);
        if hidden > 0 {
            out.push(format!("{}: {hidden} more bad records", self.name));
        }
        if let Some(e) = &self.error {
            out.push(format!("{}: {e}", self.name));
        }
        out
    }
}

thread_local! {
    /// The subject map of the thread's last object, emptied, for its next, as the rule
    /// batch's maps are (`rarity::emptied`): filling one from empty for every object
    /// rehashed each subject as it grew (the map holds the largest values a reader
    /// builds), into tables freshly faulted in.
    static SUBJECTS: std::cell::RefCell<FastMap<String, SubjectSightings>> =
        std::cell::RefCell::new(FastMap::default());
    /// The calls this thread's objects made, kept from one object to the next: a state
    /// holds sightings from many objects, and with a copy of each call per object its
    /// strings were scattered over the heap, a cache miss each where the final write of
    /// a state file packs them (about a fifth of that write).
    static CALLS: std::cell::RefCell<Interner> = std::cell::RefCell::new(Interner::default());
}

/// Stage 1: reads one object into per-subject sightings.
///
/// `written_at_ms` is when the object was written: S3's `LastModified`, else the time in
/// CloudTrail's object name ([`cloudtrail::written_at_from_name`]), else the clock of the
/// caller. Never fails: a fault is recorded in the result, after everything before it
/// was kept.
pub fn scan_object<R: Read + Send>(
    name: &str,
    input: R,
    written_at_ms: i64,
    geo: &mut GeoCache<'_>,
    policy: &Policy,
    options: &ReadOptions,
) -> ObjectScan {
    let mut scan = ObjectScan {
        name: name.to_owned(),
        written_at_ms,
        skipped_object: None,
        summary: None,
        events: 0,
        skipped: SkipCounts::default(),
        subjects: Vec::new(),
        rules: RuleBatch::recycled(),
        record_errors: Vec::new(),
        bad_records: 0,
        error: None,
    };
    if let Some(skip) = cloudtrail::skip_by_name(name) {
        scan.skipped_object = Some(match skip {
            cloudtrail::ObjectSkip::Digest => "digest_file",
            cloudtrail::ObjectSkip::ConfigWritabilityCheck => "config_writability_check",
        });
        return scan;
    }
    let mut by_subject = SUBJECTS.with(|spare| std::mem::take(&mut *spare.borrow_mut()));
    let mut names = CALLS.with(|calls| std::mem::take(&mut *calls.borrow_mut()));
    let not_after_ms = written_at_ms.saturating_add(policy.future_tolerance_ms);
    let mut on_record = |record: Result<Event<'_>, RecordError>| match record {
        Ok(event) => {
            scan.events += 1;
            let collected = collect(
                &event,
                not_after_ms,
                geo,
                policy,
                &mut by_subject,
                &mut scan.rules,
                &mut names,
            );
            if let Err(reason) = collected {
                scan.skipped.add(reason);
            }
        }
        Err(e) => {
            scan.bad_records += 1;
            if scan.record_errors.len() < MAX_RECORD_ERRORS_KEPT {
                scan.record_errors.push(e);
            }
        }
    };
    match cloudtrail::read_object(input, options, &mut on_record) {
        Ok(summary) => {
            scan.skipped_object = match summary.kind {
                cloudtrail::ObjectKind::Digest => Some("digest_file"),
                cloudtrail::ObjectKind::Empty => Some("empty_object"),
                cloudtrail::ObjectKind::Records | cloudtrail::ObjectKind::JsonLines => None,
            };
            scan.summary = Some(summary);
        }
        Err(e) => scan.error = Some(e),
    }
    let mut subjects: Vec<SubjectSightings> = rarity::emptied(&mut by_subject)
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    SUBJECTS.with(|spare| *spare.borrow_mut() = by_subject);
    names.bound();
    CALLS.with(|calls| *calls.borrow_mut() = names);
    for s in &mut subjects {
        s.sightings
            .sort_by(|a, b| (a.point.t, &a.point.id).cmp(&(b.point.t, &b.point.id)));
        // The object waits in a queue and a batch before it is judged, and most subjects
        // of a large organisation's object have one or two sightings: growth leaves room
        // for four (352 bytes), about 9 MB over the objects in flight at that scale.
        s.sightings.shrink_to_fit();
    }
    subjects.sort_by(|a, b| a.subject.cmp(&b.subject));
    scan.subjects = subjects;
    scan.rules.seal();
    scan
}

/// Turns one event into a sighting of its subject, or says why not, and hands it to the
/// account-level rules.
fn collect(
    event: &Event<'_>,
    not_after_ms: i64,
    geo: &mut GeoCache<'_>,
    policy: &Policy,
    by_subject: &mut FastMap<String, SubjectSightings>,
    rules: &mut RuleBatch,
    names: &mut Interner,
) -> Result<(), &'static str> {
    let identity = event.user_identity.as_ref().ok_or("no_user_identity")?;
    let subject = match policy.subject {
        SubjectKind::AccessKey => identity.access_key_id.as_deref().filter(|k| !k.is_empty()),
        SubjectKind::Principal => principal_of(event),
    };
    // No access key id or ARN has a '#', and tally items are keyed with one: a forged
    // subject must not name a tally.
    if subject.is_some_and(|s| s.contains('#')) {
        return Err("invalid_subject");
    }
    if event.event_time_ms > not_after_ms {
        let subject = subject.ok_or("no_subject")?;
        // Before the address is looked at: a forged record need not carry a real one.
        let entry = by_subject
            .entry(subject.to_owned())
            .or_insert_with(|| SubjectSightings::new(subject, Arc::new(identity_of(event))));
        let text = |v: &Option<std::borrow::Cow<'_, str>>| v.as_deref().unwrap_or("").to_owned();
        entry.future.push(
            event.event_time_ms,
            FutureEvent {
                event_id: text(&event.event_id),
                event_time: crate::finding::format_rfc3339_ms(event.event_time_ms),
                event_name: text(&event.event_name),
                event_source: text(&event.event_source),
                aws_region: text(&event.aws_region),
                source_ip_address: text(&event.source_ip_address),
            },
        );
        return Err("future_time");
    }
    let source_ip = event.source_ip_address.as_deref().unwrap_or("");
    let ip = classify_source(source_ip);
    // The event's identity, once built by the rules or the travel path, for the other:
    // a new subject of an object is usually its principal's first call there too, and
    // building it twice (an allocation and six copies) was about 4% of a reader's time.
    let mut built: Option<Arc<CompactIdentity>> = None;
    let travel = policy.rules.enabled.contains(Rule::ImpossibleTravel) && subject.is_some();
    let tallied = policy.rules.enabled.any_tallied();
    let looked_up = match &ip {
        Ok(ip) if travel || tallied => Some(geo.locate_ref(*ip)),
        _ => None,
    };
    if tallied {
        let location = match &looked_up {
            Some(Ok(Some(located))) => Some(*located),
            _ => None,
        };
        add_to_rules(
            event,
            identity,
            ip.as_ref().ok().copied(),
            location,
            policy,
            rules,
            &mut built,
        );
    }
    let subject = subject.ok_or("no_subject")?;
    if !travel {
        // Only what the subject path would have judged is counted as skipped by it.
        return Ok(());
    }
    let ip = ip.map_err(|skip| skip.as_str())?;
    let (location, place) = match looked_up.expect("looked up whenever travel is judged") {
        Ok(Some(located)) => located,
        Ok(None) => return Err("not_in_geoip"),
        Err(_) => return Err("geoip_error"),
    };
    if !location.is_precise() {
        return Err("low_precision_location");
    }
    // Looked up before inserting: `entry` would copy the subject's name for every event.
    let new = !by_subject.contains_key(subject);
    if new {
        let identity = built
            .get_or_insert_with(|| Arc::new(identity_of(event)))
            .clone();
        by_subject.insert(subject.to_owned(), SubjectSightings::new(subject, identity));
    }
    let entry = by_subject.get_mut(subject).expect("inserted above");
    if event.event_time_ms >= entry.latest_ms {
        entry.latest_ms = event.event_time_ms;
        // Rebuilt only when it changes: most events of a subject carry the same identity.
        // Compared as kept, cut to `MAX_FIELD`: a forged field longer than that would
        // otherwise never match, and be copied again for every event of the subject.
        fn kept(v: Option<&str>) -> Option<&str> {
            v.map(|v| crate::finding::cut(v, CompactIdentity::MAX_FIELD))
        }
        // A new entry holds this event's identity already.
        let same_identity = new
            || entry.identity.arn() == kept(identity.arn.as_deref())
                && entry.identity.access_key_id() == kept(identity.access_key_id.as_deref())
                && entry.identity.identity_type() == kept(identity.identity_type.as_deref());
        if !same_identity {
            entry.identity = built.unwrap_or_else(|| Arc::new(identity_of(event)));
        }
        // Per event, not per identity: one credential calls several accounts (a role
        // assumed across an organization), and its own account is not the one called.
        let called = event.recipient_account_id.as_deref();
        if entry.account_id.as_deref() != called {
            entry.account_id = called.map(str::to_owned);
        }
    }
    // A run of events from one address is judged by its first and last event, as the
    // subject's stays keep only their ends: keeping the middle would cost memory and
    // time for nothing. Runs are capped at the stay span, like stays.
    let mut replaced = None;
    if let [.., first, last] = entry.sightings.as_slice() {
        let run_ip = first.point.ip == ip && last.point.ip == ip;
        if run_ip
            && event.event_time_ms >= last.point.t
            && event.event_time_ms - first.point.t <= policy.max_stay_gap_ms
        {
            replaced = entry.sightings.pop();
        }
    }
    fn text<'a>(v: &'a Option<std::borrow::Cow<'_, str>>) -> &'a str {
        v.as_deref().unwrap_or("")
    }
    let point = Point {
        t: event.event_time_ms,
        id: EventId::new(text(&event.event_id)),
        ip,
        call: names.call(
            text(&event.event_name),
            text(&event.event_source),
            text(&event.aws_region),
        ),
    };
    if entry.sightings.capacity() == 0 {
        // Most subjects have one sighting an object (see `scan_object`).
        entry.sightings.reserve_exact(1);
    }
    // The address's location, as the sighting it replaces has it: taking that one's
    // shares instead of new ones spares two atomic increments and decrements per event.
    let sighting = match replaced {
        Some(last) => Sighting::at_place(point, last.location, last.place),
        None => Sighting::at_place(point, Arc::clone(location), place.clone()),
    };
    entry.sightings.push(sighting);
    Ok(())
}

/// Hands one trusted event to the account-level rules.
fn add_to_rules(
    event: &Event<'_>,
    identity: &crate::cloudtrail::UserIdentity<'_>,
    ip: Option<std::net::IpAddr>,
    location: Option<&crate::geo::Located>,
    policy: &Policy,
    rules: &mut RuleBatch,
    built: &mut Option<Arc<CompactIdentity>>,
) {
    let Some(account) = event
        .recipient_account_id
        .as_deref()
        .or(identity.account_id.as_deref())
        .filter(|a| !a.is_empty())
    else {
        return;
    };
    let principal = identity
        .arn
        .as_deref()
        .or(identity.invoked_by.as_deref())
        .or(identity.access_key_id.as_deref())
        .or(identity.principal_id.as_deref())
        .filter(|p| !p.is_empty())
        .unwrap_or("unknown");
    fn text<'a>(v: &'a Option<std::borrow::Cow<'_, str>>) -> &'a str {
        v.as_deref().unwrap_or("")
    }
    let source_ip = text(&event.source_ip_address);
    let e = RuleEvent {
        t: event.event_time_ms,
        id: text(&event.event_id),
        name: text(&event.event_name),
        source: text(&event.event_source),
        region: text(&event.aws_region),
        source_ip,
        ip,
        account,
        principal,
        access_key_id: identity.access_key_id.as_deref().filter(|k| !k.is_empty()),
        location,
        error_code: event.error_code.as_deref(),
        error_message: event.error_message.as_deref(),
        user_agent: event.user_agent.as_deref(),
    };
    rules.add(&e, &policy.rules, || {
        built
            .get_or_insert_with(|| Arc::new(identity_of(event)))
            .clone()
    });
}

/// One shared copy of each call seen by a reading thread.
#[derive(Default)]
struct Interner {
    /// Calls by event name; a name has one or a few sources and regions.
    calls: FastMap<Box<str>, Vec<Arc<Call>>>,
    /// Calls held, over all names.
    held: usize,
}

/// Calls an [`Interner`] holds before it starts afresh: AWS has a few thousand event
/// names, over a few dozen regions, but forged records can name any number.
const MAX_CALLS_INTERNED: usize = 16_384;

impl Interner {
    /// Starts afresh once past [`MAX_CALLS_INTERNED`]; the states keep their copies.
    fn bound(&mut self) {
        if self.held > MAX_CALLS_INTERNED {
            *self = Interner::default();
        }
    }

    fn call(&mut self, name: &str, source: &str, region: &str) -> Arc<Call> {
        if let Some(calls) = self.calls.get_mut(name) {
            if let Some(call) = calls
                .iter()
                .find(|c| *c.source == *source && *c.region == *region)
            {
                return Arc::clone(call);
            }
            let call = Arc::new(Call::new(name, source, region));
            calls.push(Arc::clone(&call));
            self.held += 1;
            return call;
        }
        let call = Arc::new(Call::new(name, source, region));
        self.calls.insert(name.into(), vec![Arc::clone(&call)]);
        self.held += 1;
        call
    }
}

/// The traveller when tracking principals: the ARN of the user, role session or root.
/// AWS services acting on their own behalf have none and are not travellers.
fn principal_of<'e>(event: &'e Event<'_>) -> Option<&'e str> {
    let identity = event.user_identity.as_ref()?;
    if identity.identity_type.as_deref() == Some("AWSService") {
        return None;
    }
    identity.arn.as_deref().filter(|a| !a.is_empty())
}

fn identity_of(event: &Event<'_>) -> CompactIdentity {
    let Some(id) = &event.user_identity else {
        return CompactIdentity::default();
    };
    let is_role = id.identity_type.as_deref() == Some("AssumedRole");
    CompactIdentity::new([
        id.identity_type.as_deref(),
        id.arn.as_deref(),
        id.account_id.as_deref(),
        id.user_name.as_deref().or_else(|| {
            id.session_issuer
                .as_ref()
                .and_then(|s| s.user_name.as_deref())
        }),
        id.access_key_id.as_deref(),
        // arn:aws:sts::123456789012:assumed-role/RoleName/session-name
        if is_role {
            id.arn
                .as_deref()
                .and_then(|a| a.rsplit_once('/'))
                .map(|(_, s)| s)
        } else {
            None
        },
    ])
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Shared by every object of a commit that needed the store at the time.
    #[error("{object}: {source}")]
    State {
        object: String,
        #[source]
        source: Arc<StateError>,
    },
    #[error("{object}: {source}")]
    Notify {
        object: String,
        #[source]
        source: Arc<NotifyError>,
    },
    #[error(
        "{object}: subject {subject} still conflicted after {attempts} save attempts in {waited_ms} ms"
    )]
    Contention {
        object: String,
        subject: String,
        attempts: u32,
        waited_ms: u64,
    },
}

impl PipelineError {
    /// Worth retrying the object: throttling, network, lost races.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::State { source, .. } => source.is_transient(),
            PipelineError::Notify { .. } | PipelineError::Contention { .. } => true,
        }
    }

    fn for_object(&self, object: &str) -> PipelineError {
        match self {
            PipelineError::State { source, .. } => PipelineError::State {
                object: object.to_owned(),
                source: Arc::clone(source),
            },
            PipelineError::Notify { source, .. } => PipelineError::Notify {
                object: object.to_owned(),
                source: Arc::clone(source),
            },
            PipelineError::Contention {
                subject,
                attempts,
                waited_ms,
                ..
            } => PipelineError::Contention {
                object: object.to_owned(),
                subject: subject.clone(),
                attempts: *attempts,
                waited_ms: *waited_ms,
            },
        }
    }
}

/// A subject whose stored state could not be read: neither judged nor saved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quarantined {
    pub subject: String,
    /// What is wrong with the stored item.
    pub reason: String,
}

/// What committing one object did.
#[derive(Debug, Default)]
pub struct CommitReport {
    /// Published by this commit, in publication order.
    pub findings: Vec<Finding>,
    pub subjects: usize,
    pub subjects_saved: usize,
    /// Account-level tallies written.
    pub tallies_saved: usize,
    /// Findings raised below the policy's `report_min`: remembered, not built.
    pub unreported: u64,
    /// Saves that lost a race and were redone.
    pub conflicts: u64,
    /// Sightings older than a subject's history window.
    pub stale: u64,
    /// Sightings already known (replays, busy hours at one place).
    pub covered: u64,
    /// Subjects of the object whose stored state is corrupt: their sightings were not
    /// judged, and their items were left as they are for a person to repair.
    pub quarantined: Vec<Quarantined>,
}

/// How long saves that lose races are retried.
///
/// Every Lambda that reads an object of a busy subject (an organization trail, a key used
/// in many regions) races the others to save it; a fixed number of immediate retries
/// lets the sixth racer fail. Retries wait a full-jitter delay (uniform in
/// `[0, min(cap, base * 2^n)]`, so racers spread out instead of colliding again) and stop
/// only when `deadline` has passed since the commit began. No conflict, no wait: the CLI,
/// alone on its state file, never sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictRetry {
    pub base: Duration,
    pub cap: Duration,
    /// Measured from the start of the commit; at least one retry follows a conflict.
    pub deadline: Duration,
}

impl Default for ConflictRetry {
    /// 10 s: a few dozen rounds even on a slow table, and far inside the function's
    /// 300 s timeout.
    fn default() -> Self {
        ConflictRetry {
            base: Duration::from_millis(20),
            cap: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
        }
    }
}

impl ConflictRetry {
    /// The delay before retry number `retry` (0 for the first).
    fn delay(&self, retry: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << retry.min(20))
            .min(self.cap);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Stage 2 for one object: [`commit_scans`] with the default [`ConflictRetry`].
pub async fn commit_scan<S: StateStore + Sync, N: Notifier + Sync>(
    scan: &ObjectScan,
    policy: &Policy,
    geoip: &GeoDbInfo,
    store: &S,
    notifier: &N,
) -> Result<CommitReport, PipelineError> {
    commit_scans(
        std::slice::from_ref(scan),
        policy,
        geoip,
        store,
        notifier,
        &ConflictRetry::default(),
    )
    .await
    .pop()
    .expect("one result per scan")
}

/// One subject's sightings in one of the scans being committed.
struct Part<'a> {
    scan: usize,
    sightings: &'a SubjectSightings,
}

/// Asks the CPU to start fetching the line `p` points into; a hint, nothing more.
#[inline]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and reads nothing the program sees, whatever the
    // address (a dangling empty-`Vec` pointer included).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Stage 2: judges the scans' sightings against the stored state, then publishes and
/// saves in the order the module documentation explains; one result per scan, in order.
///
/// Scans that share subjects are judged together: each subject is loaded and saved once
/// for all of them, with its sightings from every scan merged in event-time order. Saved
/// one scan after another, the scans of one invocation would race each other for the
/// same items. Every finding still names the object its event came from, and a failure
/// fails only the scans that have a subject still unsaved when it happens.
pub async fn commit_scans<S: StateStore + Sync, N: Notifier + Sync>(
    scans: &[ObjectScan],
    policy: &Policy,
    geoip: &GeoDbInfo,
    store: &S,
    notifier: &N,
    retry: &ConflictRetry,
) -> Vec<Result<CommitReport, PipelineError>> {
    let started = Instant::now();
    let mut reports: Vec<CommitReport> = scans
        .iter()
        .map(|scan| CommitReport {
            subjects: scan.subjects.len(),
            ..CommitReport::default()
        })
        .collect();
    let mut failed: Vec<Option<PipelineError>> = scans.iter().map(|_| None).collect();
    // Every subject's parts together, in scan order (the sort is stable), and the
    // subjects in order: neither the work nor the findings depend on a hash. A batch has
    // tens of thousands of subjects at organisation scale, so they are found by position
    // rather than looked up by name.
    let mut parts: Vec<Part<'_>> = scans
        .iter()
        .enumerate()
        .flat_map(|(scan, s)| {
            s.subjects
                .iter()
                .map(move |sightings| Part { scan, sightings })
        })
        .collect();
    parts.sort_by(|a, b| a.sightings.subject.cmp(&b.sightings.subject));
    let mut groups: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        match groups.last_mut() {
            Some((subject, range)) if *subject == part.sightings.subject => range.end = i + 1,
            _ => groups.push((part.sightings.subject.as_str(), i..i + 1)),
        }
    }
    // Fails every scan with a part in the `pending` groups.
    let fail = |failed: &mut Vec<Option<PipelineError>>, pending: &[usize], err: PipelineError| {
        for &g in pending {
            for part in &parts[groups[g].1.clone()] {
                let slot = &mut failed[part.scan];
                if slot.is_none() {
                    *slot = Some(err.for_object(&scans[part.scan].name));
                }
            }
        }
    };

    let mut published: HashSet<String> = HashSet::new();
    // Groups still to commit, by index.
    let mut pending: Vec<usize> = (0..groups.len()).collect();
    // (covered, stale) per part, from the attempt that was saved.
    let mut effects: Vec<(u64, u64)> = vec![(0, 0); parts.len()];
    // Reused across subjects: one commit walks tens of thousands of them.
    let mut ctxs: Vec<FindingContext<'_>> = Vec::new();
    let mut merged: Vec<(usize, &Sighting)> = Vec::new();
    let mut attempts = 0u32;
    while !pending.is_empty() {
        attempts += 1;
        let names: Vec<String> = pending.iter().map(|&g| groups[g].0.to_owned()).collect();
        let loaded = match store.load_each_in_order(&names).await {
            Ok(loaded) => loaded,
            Err(source) => {
                let err = PipelineError::State {
                    object: String::new(),
                    source: Arc::new(source),
                };
                fail(&mut failed, &pending, err);
                break;
            }
        };
        let LoadedInOrder { states, corrupt } = loaded;
        // Each state in the place of its group in `pending`, as long as both last.
        let mut loaded: Vec<(usize, Option<Versioned>)> =
            pending.iter().copied().zip(states).collect();
        for (subject, err) in corrupt {
            let Ok(g) = groups.binary_search_by(|(s, _)| (*s).cmp(subject.as_str())) else {
                continue;
            };
            pending.retain(|&p| p != g);
            loaded.retain(|(p, _)| *p != g);
            let reason = err.to_string();
            for part in &parts[groups[g].1.clone()] {
                reports[part.scan].quarantined.push(Quarantined {
                    subject: subject.clone(),
                    reason: reason.clone(),
                });
            }
        }
        // Sized up front: a state is a few hundred bytes and a batch has thousands, so
        // growing these by doubling copies megabytes into freshly faulted pages.
        let mut to_save: Vec<(SubjectState, u64)> = Vec::with_capacity(pending.len());
        let mut unchanged: Vec<Versioned> = Vec::with_capacity(pending.len());
        let mut saving: Vec<usize> = Vec::with_capacity(pending.len());
        let mut fresh: Vec<(usize, Finding)> = Vec::new();
        let mut loaded = loaded.into_iter().peekable();
        while let Some((g, found)) = loaded.next() {
            // The next subject's history is cold, one of tens of thousands: its fetch
            // starts now and overlaps this subject's judging instead of stalling its own.
            // Events arrive mostly in time order, so judging starts at the newest stay.
            if let Some((_, Some(next))) = loaded.peek() {
                if let Some(newest) = next.state.stays.last() {
                    prefetch(newest);
                }
                prefetch(next.state.places.as_ptr());
            }
            let (subject, range) = &groups[g];
            let subject_parts = &parts[range.clone()];
            let Versioned { mut state, version } = found.unwrap_or_else(|| Versioned {
                state: SubjectState::new((*subject).to_owned()),
                version: 0,
            });
            ctxs.clear();
            ctxs.extend(subject_parts.iter().map(|part| FindingContext {
                subject_kind: policy.subject,
                identity: &part.sightings.identity,
                account_id: part.sightings.account_id.as_deref(),
                source_object: &scans[part.scan].name,
                geoip,
            }));
            merged.clear();
            merged.extend(
                subject_parts
                    .iter()
                    .enumerate()
                    .flat_map(|(i, part)| part.sightings.sightings.iter().map(move |s| (i, s))),
            );
            if subject_parts.len() > 1 {
                merged.sort_by(|(_, a), (_, b)| {
                    (a.point.t, &a.point.id).cmp(&(b.point.t, &b.point.id))
                });
            }
            let counts = &mut effects[range.clone()];
            counts.fill((0, 0));
            let mut changed = false;
            for &(i, s) in &merged {
                let part = &subject_parts[i];
                let obs = state.observe(s, policy, &ctxs[i]);
                match obs.effect {
                    Effect::Added => changed = true,
                    Effect::Covered => counts[i].0 += 1,
                    Effect::Stale => counts[i].1 += 1,
                }
                fresh.extend(
                    obs.findings
                        .into_iter()
                        .filter(|f| !published.contains(&f.finding_id))
                        .map(|f| (part.scan, f)),
                );
            }
            for (i, part) in subject_parts.iter().enumerate() {
                if part.sightings.future.count == 0 {
                    continue;
                }
                let scan = &scans[part.scan];
                let finding = future_time_finding(
                    subject,
                    &part.sightings.future,
                    scan.written_at_ms,
                    policy.future_tolerance_ms,
                    &ctxs[i],
                );
                if !state.has_alerted(&finding.finding_id) {
                    // Marked at a trusted time: the subject's own clock, else the object's.
                    let t = state.last_seen_ms().unwrap_or(scan.written_at_ms);
                    state.mark_alerted(&finding.finding_id, t);
                    changed = true;
                    if !published.contains(&finding.finding_id) {
                        fresh.push((part.scan, finding));
                    }
                }
            }
            if changed {
                saving.push(g);
                to_save.push((state, version));
            } else {
                unchanged.push(Versioned { state, version });
            }
        }
        store.give_back(unchanged);
        if !fresh.is_empty() {
            let findings: Vec<Finding> = fresh.iter().map(|(_, f)| f.clone()).collect();
            if let Err(source) = notifier.publish(&findings).await {
                let err = PipelineError::Notify {
                    object: String::new(),
                    source: Arc::new(source),
                };
                fail(&mut failed, &pending, err);
                break;
            }
            for (scan, finding) in fresh {
                published.insert(finding.finding_id.clone());
                reports[scan].findings.push(finding);
            }
        }
        let outcomes = match store.save_owned(to_save).await {
            Ok(outcomes) => outcomes,
            Err(source) => {
                let err = PipelineError::State {
                    object: String::new(),
                    source: Arc::new(source),
                };
                fail(&mut failed, &pending, err);
                break;
            }
        };
        pending.clear();
        for (g, outcome) in saving.into_iter().zip(outcomes) {
            let subject_parts = &parts[groups[g].1.clone()];
            match outcome {
                SaveOutcome::Saved { .. } => {
                    for part in subject_parts {
                        reports[part.scan].subjects_saved += 1;
                    }
                }
                SaveOutcome::Conflict => {
                    // Counted once, on the first scan that names the subject, so that
                    // the counts of an invocation's objects add up to its conflicts.
                    reports[subject_parts[0].scan].conflicts += 1;
                    pending.push(g);
                }
            }
        }
        if pending.is_empty() {
            break;
        }
        let waited = started.elapsed();
        if waited >= retry.deadline && attempts > 1 {
            let err = PipelineError::Contention {
                object: String::new(),
                subject: groups[pending[0]].0.to_owned(),
                attempts,
                waited_ms: waited.as_millis() as u64,
            };
            fail(&mut failed, &pending, err);
            break;
        }
        tokio::time::sleep(retry.delay(attempts - 1)).await;
    }

    for (part, (covered, stale)) in parts.iter().zip(effects) {
        reports[part.scan].covered += covered;
        reports[part.scan].stale += stale;
    }
    // The account-level rules, object by object in order: the tallies of one invocation
    // are saved by one process one after the other, so its objects never race each other
    // for them.
    for (index, scan) in scans.iter().enumerate() {
        if failed[index].is_some() {
            continue;
        }
        // A deadline of its own: the subjects' races must not have spent it already.
        let tallied = commit_tallies(
            scan,
            policy,
            geoip,
            store,
            notifier,
            retry,
            Instant::now(),
            &mut published,
            &mut reports[index],
        )
        .await;
        if let Err(err) = tallied {
            failed[index] = Some(err);
        }
    }
    reports
        .into_iter()
        .zip(failed)
        .map(|(report, failed)| match failed {
            Some(err) => Err(err),
            None => Ok(report),
        })
        .collect()
}

/// The account-level rules' half of a commit, in the same order: load the tallies the
/// object touches (batched), judge, publish, save each changed tally on its version. A
/// lost race reloads every tally and judges again, after the same backoff as subjects;
/// tallies that did save carry the object's tag, so its events are not counted twice.
#[allow(clippy::too_many_arguments)]
async fn commit_tallies<S: StateStore + Sync, N: Notifier + Sync>(
    scan: &ObjectScan,
    policy: &Policy,
    geoip: &GeoDbInfo,
    store: &S,
    notifier: &N,
    retry: &ConflictRetry,
    started: Instant,
    published: &mut HashSet<String>,
    report: &mut CommitReport,
) -> Result<(), PipelineError> {
    if scan.rules.is_empty() {
        return Ok(());
    }
    let state_err = |source| PipelineError::State {
        object: scan.name.clone(),
        source: Arc::new(source),
    };
    let keys = scan.rules.tally_keys();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let loaded = store
            .load_tallies_in_order(&keys)
            .await
            .map_err(state_err)?;
        let mut versions: Vec<u64> = Vec::with_capacity(keys.len());
        let tallies: Vec<Option<Tally>> = loaded
            .into_iter()
            .map(|found| {
                versions.push(found.as_ref().map_or(0, |v| v.version));
                found.map(|v| v.tally)
            })
            .collect();
        let mut slots = rarity::Slots::new(&keys, tallies);
        let (findings, unreported) =
            rarity::judge_slots(&scan.rules, &mut slots, &policy.rules, geoip, &scan.name);
        report.unreported = unreported;
        let fresh: Vec<Finding> = findings
            .into_iter()
            .filter(|f| !published.contains(&f.finding_id))
            .collect();
        if !fresh.is_empty() {
            notifier
                .publish(&fresh)
                .await
                .map_err(|source| PipelineError::Notify {
                    object: scan.name.clone(),
                    source: Arc::new(source),
                })?;
            published.extend(fresh.iter().map(|f| f.finding_id.clone()));
            report.findings.extend(fresh);
        }
        // In key order, which is sorted: racing writers then contend on items in the
        // same sequence.
        let mut saving: Vec<&TallyKey> = Vec::new();
        let mut items: Vec<(Tally, u64)> = Vec::new();
        let mut unchanged: Vec<VersionedTally> = Vec::new();
        for (((key, tally), changed), version) in keys
            .iter()
            .zip(slots.tallies)
            .zip(slots.changed)
            .zip(versions)
        {
            if changed {
                saving.push(key);
                items.push((tally, version));
            } else if version > 0 {
                unchanged.push(VersionedTally { tally, version });
            }
        }
        store.give_back_tallies(unchanged);
        let outcomes = store.save_tallies_owned(items).await.map_err(state_err)?;
        let conflicted: Vec<String> = saving
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, SaveOutcome::Conflict))
            .map(|(k, _)| k.item_key())
            .collect();
        report.tallies_saved += outcomes.len() - conflicted.len();
        let Some(first) = conflicted.first() else {
            return Ok(());
        };
        report.conflicts += conflicted.len() as u64;
        let waited = started.elapsed();
        if waited >= retry.deadline && attempts > 1 {
            return Err(PipelineError::Contention {
                object: scan.name.clone(),
                subject: format!("tally {first}"),
                attempts,
                waited_ms: waited.as_millis() as u64,
            });
        }
        tokio::time::sleep(retry.delay(attempts - 1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_one_copy_until_the_interner_starts_afresh_past_its_bound() {
        let mut calls = Interner::default();
        let first = calls.call("GetObject", "s3.amazonaws.com", "eu-west-1");
        calls.bound();
        let again = calls.call("GetObject", "s3.amazonaws.com", "eu-west-1");
        assert!(
            Arc::ptr_eq(&first, &again),
            "kept from one object to the next"
        );
        let other = calls.call("GetObject", "s3.amazonaws.com", "us-east-1");
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(
            *other,
            Call::new("GetObject", "s3.amazonaws.com", "us-east-1")
        );

        for i in 0..MAX_CALLS_INTERNED {
            calls.call(&format!("Forged{i}"), "s3.amazonaws.com", "eu-west-1");
        }
        calls.bound();
        assert_eq!(calls.held, 0, "started afresh");
        let after = calls.call("GetObject", "s3.amazonaws.com", "eu-west-1");
        assert!(!Arc::ptr_eq(&first, &after));
        assert_eq!(*after, *first, "a new copy of the same call");
    }
}
