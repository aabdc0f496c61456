//! Per-subject history and the impossible-travel judgement.
//!
//! # The rules, in event time
//!
//! Everything below is decided from event times alone, never from the order in which log
//! objects arrive, so each rule can be checked by hand against the events:
//!
//! 1. **Stays.** A subject's history is a timeline of *stays*: maximal runs of sightings
//!    at one place with no other place between them and no gap longer than the policy's
//!    `max_stay_gap_ms` (15 minutes) between two consecutive sightings. A stay keeps its
//!    first and last event and its longest gap, so a key used every 3 minutes from one
//!    office for ten days is *one* stay: the state grows with places and sessions, not
//!    with events.
//! 2. **Judging.** A new sighting is slotted into the timeline by its own event time and
//!    judged against the nearest stay of every other place within reach, before and
//!    after it. A sighting that lands inside a stay at another place splits it; the
//!    halves' inner ends are *inferred*: the gap rule guarantees a real sighting of that
//!    place within the stay's longest gap on each side, so the hop is judged as that far
//!    apart. Since `max_stay_gap_ms` is at most `min_distance_km / min_speed_kmh`, a hop
//!    that was impossible at its true distance in time is impossible at that bound too,
//!    and the verdict is the one the events would have had in order.
//! 3. **Baseline.** With a baseline policy, a place is *baseline at time t* when it was
//!    first seen before t, within the learning period that starts at the subject's first
//!    event, and seen within `forget_after_ms` of t. An impossible hop is suppressed when
//!    **both** its ends are baseline at the time of its later event. A hop between home
//!    and a place the subject does not know alerts whichever of the two came first.
//! 4. **Habit.** With a baseline policy, an impossible hop between places A and B is
//!    suppressed when the subject already made an impossible hop between A and B earlier
//!    in event time (a VPN, a split tunnel), or when a finding for A and B was already
//!    raised (so a late object holding the earlier of two such hops does not raise a
//!    second one). Without a baseline, one finding per place pair per `dedup_window_ms`.
//! 5. **Stale.** A sighting older than `history_window_ms` before the subject's latest
//!    event is not judged. The latest event only moves forward with trusted times: the
//!    pipeline quarantines events stamped after their log object was written, so no
//!    single record can move a subject's clock, its pruning or its TTL.
//!
//! What a late object can change: it can add findings for the hops its own events make
//! (before or after what was already seen), exactly as if it had come on time. What it
//! cannot change: a finding already raised is never retracted, and which occurrence of a
//! place pair carries the one finding (the first to arrive) can depend on arrival order;
//! the set of (subject, place pair) findings does not. The tests check this over
//! generated permutations of adversarial scenarios.
//!
//! # Bounded state
//!
//! Stays older than the history window are dropped; past `max_stays` the oldest are
//! folded into their places, which keep first and last seen and a count for the whole
//! window. Places, habits and alert marks are capped too, so an item stays a few KB.
//!
//! Merging is idempotent: a sighting inside a stay at its own place changes nothing, and
//! a pair judged before yields the same finding id, which the alert marks suppress. That
//! is what makes a replayed object, or a Lambda retry, produce no new finding.

use std::net::IpAddr;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::policy::{Policy, SubjectKind};
use super::EventId;
use crate::finding::CompactIdentity;
use crate::finding::{
    format_rfc3339_ms, human_duration, Finding, ImpossibleTravel, Rule, Severity, TravelEndpoint,
    TriggeringLocations,
};
use crate::geo::{distance_km, GeoDbInfo, Location, PlaceKey};

/// The layout of [`SubjectState`] this release writes. Version 1 (no `v` field) kept
/// 15-minute stays and no clock of its own; it is upgraded on first use.
pub const STATE_VERSION: u32 = 2;

/// One event, reduced to what the timeline keeps. Tens of thousands of subjects hold a
/// dozen of these each in memory, so a point is small: its strings are shared, not
/// owned (a stay's first and last point are often the same event, and a subject makes
/// the same few calls again and again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// Event time, Unix epoch milliseconds.
    pub t: i64,
    /// Empty for an end inferred by splitting a stay (see the module documentation).
    pub id: EventId,
    /// Stored parsed: 16 bytes in place of a string, and serialized as text anyway.
    pub ip: IpAddr,
    pub call: Arc<Call>,
}

/// What an event called and where: the event name, source and region, which repeat
/// across a subject's events.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Call {
    pub name: Box<str>,
    pub source: Box<str>,
    pub region: Box<str>,
}

impl Call {
    pub fn new(name: &str, source: &str, region: &str) -> Call {
        Call {
            name: name.into(),
            source: source.into(),
            region: region.into(),
        }
    }
}

/// A point as stored (DynamoDB items, state files): field names are short because this
/// is written many times per item, and the layout is the one every release has written.
#[derive(Serialize)]
struct StoredPoint<'a> {
    t: i64,
    id: &'a EventId,
    ip: IpAddr,
    name: &'a str,
    src: &'a str,
    rgn: &'a str,
}

#[derive(Deserialize)]
struct OwnedStoredPoint {
    t: i64,
    id: EventId,
    ip: IpAddr,
    name: String,
    src: String,
    rgn: String,
}

impl Serialize for Point {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredPoint {
            t: self.t,
            id: &self.id,
            ip: self.ip,
            name: &self.call.name,
            src: &self.call.source,
            rgn: &self.call.region,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Point, D::Error> {
        let p = OwnedStoredPoint::deserialize(deserializer)?;
        Ok(Point {
            t: p.t,
            id: p.id,
            ip: p.ip,
            call: Arc::new(Call {
                name: p.name.into(),
                source: p.src.into(),
                region: p.rgn.into(),
            }),
        })
    }
}

impl Point {
    /// Total order of events: time, then event id for events in the same millisecond.
    fn key(&self) -> (i64, &EventId) {
        (self.t, &self.id)
    }

    /// An end that no single recorded event carries: the time is a bound.
    pub fn is_inferred(&self) -> bool {
        self.id.is_empty()
    }

    fn inferred_at(&self, t: i64) -> Point {
        Point {
            t,
            id: EventId::new(""),
            ..self.clone()
        }
    }
}

/// A geolocated event of one subject, ready to be judged.
#[derive(Debug, Clone)]
pub struct Sighting {
    pub point: Point,
    pub location: Arc<Location>,
    /// The location's [`Location::place_key`], shared by every stay at that place.
    pub place: PlaceKey,
}

impl Sighting {
    pub fn from_point(point: Point, location: Arc<Location>) -> Sighting {
        let place = location.place_key().into();
        Sighting::at_place(point, location, place)
    }

    /// `place` must be `location`'s place key (the caller has it cached).
    pub fn at_place(point: Point, location: Arc<Location>, place: PlaceKey) -> Sighting {
        debug_assert_eq!(place.as_str(), location.place_key());
        Sighting {
            point,
            location,
            place,
        }
    }

    pub fn new(
        time_ms: i64,
        event_id: &str,
        event_name: &str,
        event_source: &str,
        aws_region: &str,
        ip: IpAddr,
        location: Arc<Location>,
    ) -> Sighting {
        let point = Point {
            t: time_ms,
            id: EventId::new(event_id),
            ip,
            call: Arc::new(Call::new(event_name, event_source, aws_region)),
        };
        Sighting::from_point(point, location)
    }
}

/// A run of sightings at one place with no other place between them and no gap longer
/// than the policy's `max_stay_gap_ms` between two consecutive ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StayFields", into = "StayFields")]
pub struct Stay {
    /// Shared with the other stays at the place.
    pub place: PlaceKey,
    first: Point,
    /// `None` while the stay is one sighting, as most stays of a busy organisation's
    /// short-lived keys are: a point is 64 bytes, and stays are most of a subject's memory.
    /// Never a copy of `first`, so the derived equality is equality of the spans.
    last: Option<Box<Point>>,
    /// The longest gap between consecutive sightings of the stay, ms: every moment inside
    /// the stay has a sighting at most this far before it and after it.
    pub gap_ms: i64,
}

/// The stored layout of a [`Stay`]: both ends written out, as before ends were shared.
#[derive(Serialize, Deserialize)]
struct StayFields {
    place: PlaceKey,
    first: Point,
    last: Point,
    #[serde(default)]
    gap_ms: i64,
}

impl From<StayFields> for Stay {
    fn from(f: StayFields) -> Stay {
        Stay::span(f.place, f.first, f.last, f.gap_ms)
    }
}

impl From<Stay> for StayFields {
    fn from(stay: Stay) -> StayFields {
        let last = stay.last().clone();
        StayFields {
            place: stay.place,
            first: stay.first,
            last,
            gap_ms: stay.gap_ms,
        }
    }
}

impl Stay {
    /// A stay of one sighting.
    pub fn at(place: impl Into<PlaceKey>, point: Point) -> Stay {
        Stay {
            place: place.into(),
            first: point,
            last: None,
            gap_ms: 0,
        }
    }

    /// A stay from `first` to `last`; they are equal for a stay of one sighting.
    pub fn span(place: impl Into<PlaceKey>, first: Point, last: Point, gap_ms: i64) -> Stay {
        let mut stay = Stay::at(place, first);
        stay.set_last(last);
        stay.gap_ms = gap_ms;
        stay
    }

    /// The earliest sighting.
    pub fn first(&self) -> &Point {
        &self.first
    }

    /// The latest sighting: the first one too, for a stay of one sighting.
    pub fn last(&self) -> &Point {
        self.last.as_deref().unwrap_or(&self.first)
    }

    /// Whether the stay is one sighting.
    pub fn is_single(&self) -> bool {
        self.last.is_none()
    }

    /// Moves the start to `p`, which is no later than the current end.
    pub fn set_first(&mut self, p: Point) {
        let old_first = std::mem::replace(&mut self.first, p);
        if self.last.is_none() {
            self.set_last(old_first);
        } else if self.last.as_deref() == Some(&self.first) {
            self.last = None;
        }
    }

    /// Moves the end to `p`, which is no earlier than the current start.
    pub fn set_last(&mut self, p: Point) {
        if p == self.first {
            self.last = None;
        } else if let Some(last) = &mut self.last {
            **last = p;
        } else {
            self.last = Some(Box::new(p));
        }
    }

    /// The end, taken out of a stay that is being merged away.
    fn into_last(self) -> Point {
        match self.last {
            Some(last) => *last,
            None => self.first,
        }
    }
}

/// A place the subject has been, with when it was first and last seen there: what
/// remains of its stays once they are folded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    /// Inline (most place keys fit in 24 bytes): every sighting looks its place up among
    /// the subject's by key, and fetching each key from elsewhere in memory to compare it
    /// cost a cache miss per place.
    pub key: CompactString,
    /// Shared with the lookup cache and the sightings while an object is judged.
    pub location: Arc<Location>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Sightings that changed the timeline here (a replay or an event inside a known stay
    /// does not count).
    #[serde(default)]
    pub count: u64,
}

/// An impossible hop between two places, alerted or not; with a baseline, a hop the
/// subject has made before is its habit (a VPN, a split tunnel) and is not alerted again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub a: String,
    pub b: String,
    /// Event times (of the later end) of the first and last time the hop was made.
    pub first_ms: i64,
    #[serde(default)]
    pub last_ms: i64,
}

/// A finding already raised, so that replays and neighbouring pairs stay quiet. Marks of
/// findings that are not about a place pair leave `a` and `b` empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertMark {
    pub id: String,
    pub a: String,
    pub b: String,
    pub t: i64,
}

/// Everything geotrail remembers about one subject. Bounded by the policy's window,
/// `max_stays` and caps on places, habits and marks, so it fits a DynamoDB item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectState {
    /// Layout version, [`STATE_VERSION`] once upgraded; absent (0) in version 1 items.
    #[serde(default)]
    pub v: u32,
    pub subject: String,
    /// Earliest event time ever seen: the learning period starts here.
    pub first_seen_ms: i64,
    /// Latest trusted event time: the subject's clock, from which the history window is
    /// counted back. `i64::MIN` until the first sighting.
    #[serde(default = "never")]
    pub latest_ms: i64,
    pub stays: Vec<Stay>,
    pub places: Vec<Place>,
    #[serde(default)]
    pub transitions: Vec<Transition>,
    #[serde(default)]
    pub alerts: Vec<AlertMark>,
}

fn never() -> i64 {
    i64::MIN
}

/// Room for `more` elements, growing by a quarter rather than doubling: tens of thousands
/// of subjects sit in memory with a dozen stays and a place or two each, and doubling
/// would leave a third of that space empty on average. A quarter still amortises.
fn reserve_gently<T>(v: &mut Vec<T>, more: usize) {
    if v.capacity() - v.len() < more {
        v.reserve_exact(more.max(v.len() / 4));
    }
}

/// What a sighting did to the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The timeline changed.
    Added,
    /// Already known: inside a stay at the same place (a replay, or a busy hour).
    Covered,
    /// Older than the history window: there is nothing left to compare it with.
    Stale,
}

#[derive(Debug)]
pub struct Observation {
    pub effect: Effect,
    pub findings: Vec<Finding>,
}

/// What a finding says about who and where, beyond the two events.
#[derive(Debug, Clone, Copy)]
pub struct FindingContext<'a> {
    pub subject_kind: SubjectKind,
    pub identity: &'a CompactIdentity,
    pub account_id: Option<&'a str>,
    pub source_object: &'a str,
    pub geoip: &'a GeoDbInfo,
}

/// The words of a finding, which each rule writes its own way.
pub(crate) struct FindingText {
    pub title: String,
    pub summary: String,
    pub triage: Vec<String>,
}

impl FindingContext<'_> {
    /// A finding of `rule` about `subject`, with the parts every rule shares filled from
    /// this context; the caller sets the rule's own block.
    pub(crate) fn finding(
        &self,
        finding_id: String,
        rule: Rule,
        severity: Severity,
        subject: &str,
        text: FindingText,
        event_time: String,
    ) -> Finding {
        Finding {
            finding_id,
            rule,
            severity,
            title: text.title,
            summary: text.summary,
            triage: text.triage,
            account_id: self.account_id.map(str::to_owned),
            credential_account_id: self.identity.account_id().map(str::to_owned),
            subject: subject.to_owned(),
            subject_kind: self.subject_kind,
            user_identity: self.identity.summary(),
            impossible_travel: None,
            future_event_time: None,
            unusual_city_for_command: None,
            unusual_error_code: None,
            long_term_access_key_auth: None,
            references: rule.references().iter().map(|r| (*r).to_owned()).collect(),
            geoip: self.geoip.clone(),
            source_object: self.source_object.to_owned(),
            event_time,
        }
    }

    /// "access key AKIA..." or "principal arn:...": the credential a triage step names.
    pub(crate) fn credential(&self, subject: &str) -> String {
        match self.subject_kind {
            SubjectKind::AccessKey => format!("access key {subject}"),
            SubjectKind::Principal => format!("principal {subject}"),
        }
    }
}

pub(crate) const MAX_TRANSITIONS: usize = 64;
pub(crate) const MAX_PLACES: usize = 128;
pub(crate) const MAX_ALERTS: usize = 64;

impl SubjectState {
    pub fn new(subject: impl Into<String>) -> SubjectState {
        SubjectState {
            v: STATE_VERSION,
            subject: subject.into(),
            first_seen_ms: i64::MAX,
            latest_ms: never(),
            stays: Vec::new(),
            places: Vec::new(),
            transitions: Vec::new(),
            alerts: Vec::new(),
        }
    }

    /// Event time of the newest trusted sighting, if any.
    pub fn last_seen_ms(&self) -> Option<i64> {
        (self.latest_ms != never()).then_some(self.latest_ms)
    }

    /// Ids of the findings this subject has raised and still remembers.
    pub fn alerted_finding_ids(&self) -> impl Iterator<Item = &str> {
        self.alerts.iter().map(|a| a.id.as_str())
    }

    /// Whether a finding with this id was raised and is still remembered.
    pub fn has_alerted(&self, finding_id: &str) -> bool {
        self.alerts.iter().any(|a| a.id == finding_id)
    }

    /// Remembers a finding that is not about a place pair (a record from the future), so
    /// that a replay of its object does not raise it again. `t` is a trusted time.
    pub fn mark_alerted(&mut self, finding_id: &str, t: i64) {
        if self.has_alerted(finding_id) {
            return;
        }
        self.alerts.push(AlertMark {
            id: finding_id.to_owned(),
            a: String::new(),
            b: String::new(),
            t,
        });
        self.cap_alerts();
    }

    /// Brings a state written by an earlier release to this layout. Idempotent; `observe`
    /// calls it, so stores need not.
    pub fn upgrade(&mut self, policy: &Policy) {
        if self.v >= STATE_VERSION {
            return;
        }
        // Version 1 stays spanned at most 15 minutes and did not record their gaps: the
        // span is the only bound there is. Neighbouring stays of one place then merge.
        for stay in &mut self.stays {
            stay.gap_ms = stay.last().t - stay.first.t;
        }
        let stays = std::mem::take(&mut self.stays);
        for stay in stays {
            match self.stays.last_mut() {
                Some(prev)
                    if prev.place == stay.place
                        && stay.first.t - prev.last().t <= policy.max_stay_gap_ms =>
                {
                    prev.gap_ms = prev
                        .gap_ms
                        .max(stay.gap_ms)
                        .max(stay.first.t - prev.last().t);
                    prev.set_last(stay.into_last());
                }
                _ => self.stays.push(stay),
            }
        }
        let from_stays = self.stays.iter().map(|s| s.last().t);
        let from_places = self.places.iter().map(|p| p.last_seen_ms);
        self.latest_ms = from_stays.chain(from_places).max().unwrap_or(never());
        for place in &mut self.places {
            let stays = self.stays.iter().filter(|s| *s.place == *place.key).count();
            place.count = place.count.max(stays as u64);
        }
        self.v = STATE_VERSION;
    }

    /// Slots `sighting` into the timeline and judges it against its neighbours.
    ///
    /// The caller filters out low-precision locations (a country centroid is not a point
    /// anyone stood on) and events from the future (see the pipeline).
    pub fn observe(
        &mut self,
        sighting: &Sighting,
        policy: &Policy,
        ctx: &FindingContext<'_>,
    ) -> Observation {
        self.upgrade(policy);
        let quiet = |effect| Observation {
            effect,
            findings: Vec::new(),
        };
        let p = &sighting.point;
        if let Some(latest) = self.last_seen_ms() {
            if p.t < latest.saturating_sub(policy.history_window_ms) {
                return quiet(Effect::Stale);
            }
        }
        let place_key = &sighting.place;
        let Some(at) = self.insert(p, place_key, policy) else {
            return quiet(Effect::Covered);
        };
        self.note_place(place_key, &sighting.location, p.t);

        // Judge the sighting against every other place within reach, not only its
        // neighbours: a sequence of possible hops never makes a longer one impossible
        // (triangle inequality), so this adds findings only where some hop really was
        // impossible, and it makes the set of place pairs found the same whatever order
        // the events arrive in, even when an event in between arrives last.
        let reach_ms = reach_ms(policy);
        // For each other place only its nearest stay on each side matters: it needs the
        // highest speed. Stays are in time order, so each side stops at the first stay out
        // of reach. Cheap first pass over borrowed data; the few impossible hops are then
        // judged in full, nearest first.
        let mut impossible: Vec<usize> = Vec::new();
        let mut seen: Vec<(&str, bool)> = Vec::new();
        let lo = self.stays[..at].partition_point(|s| p.t - s.last().t > reach_ms);
        let hi = at + 1 + self.stays[at + 1..].partition_point(|s| s.first.t - p.t <= reach_ms);
        let before = (lo..at).rev().map(|k| (k, true));
        let after = (at + 1..hi).map(|k| (k, false));
        for (k, is_before) in before.chain(after) {
            let other = &self.stays[k];
            let dt_ms = if is_before {
                p.t - other.last().t
            } else {
                other.first.t - p.t
            };
            if other.place == *place_key || seen.contains(&(&*other.place, is_before)) {
                continue;
            }
            seen.push((&other.place, is_before));
            let Some(other_place) = self.place(&other.place) else {
                continue;
            };
            let (loc_a, loc_b) = if is_before {
                (&*other_place.location, &*sighting.location)
            } else {
                (&*sighting.location, &*other_place.location)
            };
            if hop(loc_a, loc_b, dt_ms, policy).is_some() {
                impossible.push(k);
            }
        }
        let mut findings = Vec::new();
        for k in impossible {
            let other = &self.stays[k];
            let other_place = other.place.clone();
            findings.extend(if k < at {
                let from = other.last().clone();
                self.judge(
                    from,
                    &other_place,
                    p.clone(),
                    place_key,
                    &sighting.location,
                    false,
                    policy,
                    ctx,
                )
            } else {
                let to = other.first.clone();
                self.judge(
                    p.clone(),
                    place_key,
                    to,
                    &other_place,
                    &sighting.location,
                    true,
                    policy,
                    ctx,
                )
            });
        }
        self.prune(policy);
        Observation {
            effect: Effect::Added,
            findings,
        }
    }

    /// Puts `p` into the timeline; returns the index of the stay that holds it, or `None`
    /// when the timeline already covers it.
    fn insert(&mut self, p: &Point, place_key: &PlaceKey, policy: &Policy) -> Option<usize> {
        let idx = self.stays.partition_point(|s| s.first.key() <= p.key());
        if idx > 0 && self.stays[idx - 1].last().key() >= p.key() {
            let host = &self.stays[idx - 1];
            let same_event = host.first.key() == p.key() || host.last().key() == p.key();
            if host.place == *place_key || same_event {
                return None;
            }
            // Another place inside a stay: split it. Its inner events are not kept, but
            // its longest gap bounds how far the nearest of them can be on each side.
            let host = self.stays.remove(idx - 1);
            let left_end = (p.t - host.gap_ms).max(host.first.t);
            let right_start = (p.t + host.gap_ms).min(host.last().t);
            // An end at the bound, unless the bound is the recorded end itself.
            let bound = |end: &Point, t: i64| {
                if t == end.t {
                    end.clone()
                } else {
                    end.inferred_at(t)
                }
            };
            let half = |first: Point, last: Point| {
                Stay::span(host.place.clone(), first, last, host.gap_ms)
            };
            let left = half(host.first.clone(), bound(&host.first, left_end));
            let right = half(bound(host.last(), right_start), host.last().clone());
            reserve_gently(&mut self.stays, 2);
            self.stays.insert(idx - 1, left);
            self.stays
                .insert(idx, Stay::at(place_key.clone(), p.clone()));
            self.stays.insert(idx + 1, right);
            return Some(idx);
        }
        let gap = policy.max_stay_gap_ms;
        let joins_prev = idx > 0
            && self.stays[idx - 1].place == *place_key
            && p.t - self.stays[idx - 1].last().t <= gap;
        let joins_next = idx < self.stays.len()
            && self.stays[idx].place == *place_key
            && self.stays[idx].first.t - p.t <= gap;
        Some(match (joins_prev, joins_next) {
            (true, true) => {
                // The sighting bridges two stays of its place: one stay again.
                let next = self.stays.remove(idx);
                let prev = &mut self.stays[idx - 1];
                prev.gap_ms = prev
                    .gap_ms
                    .max(next.gap_ms)
                    .max(p.t - prev.last().t)
                    .max(next.first.t - p.t);
                prev.set_last(next.into_last());
                idx - 1
            }
            (true, false) => {
                let prev = &mut self.stays[idx - 1];
                prev.gap_ms = prev.gap_ms.max(p.t - prev.last().t);
                prev.set_last(p.clone());
                idx - 1
            }
            (false, true) => {
                let next = &mut self.stays[idx];
                next.gap_ms = next.gap_ms.max(next.first.t - p.t);
                next.set_first(p.clone());
                idx
            }
            (false, false) => {
                reserve_gently(&mut self.stays, 1);
                self.stays
                    .insert(idx, Stay::at(place_key.clone(), p.clone()));
                idx
            }
        })
    }

    fn note_place(&mut self, key: &str, location: &Arc<Location>, t: i64) {
        self.first_seen_ms = self.first_seen_ms.min(t);
        self.latest_ms = self.latest_ms.max(t);
        match self.places.iter_mut().find(|pl| pl.key == key) {
            Some(pl) => {
                pl.first_seen_ms = pl.first_seen_ms.min(t);
                pl.last_seen_ms = pl.last_seen_ms.max(t);
                pl.count += 1;
            }
            None => {
                reserve_gently(&mut self.places, 1);
                self.places.push(Place {
                    key: key.into(),
                    location: Arc::clone(location),
                    first_seen_ms: t,
                    last_seen_ms: t,
                    count: 1,
                });
            }
        }
    }

    fn place(&self, key: &str) -> Option<&Place> {
        self.places.iter().find(|pl| pl.key == key)
    }

    /// Judges the hop from `a` (at place `place_a`) to `b` (at `place_b`), `a` no later.
    /// `new_location` is the location of the sighting being observed, which is `a` when
    /// `new_is_from`, else `b`: the finding then shows that event's own network and
    /// accuracy rather than the place's first-seen ones.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        a: Point,
        place_a: &str,
        b: Point,
        place_b: &str,
        new_location: &Arc<Location>,
        new_is_from: bool,
        policy: &Policy,
        ctx: &FindingContext<'_>,
    ) -> Option<Finding> {
        let stored_a: &Location = &self.place(place_a)?.location;
        let stored_b: &Location = &self.place(place_b)?.location;
        let (loc_a, loc_b) = if new_is_from {
            (&**new_location, stored_b)
        } else {
            (stored_a, &**new_location)
        };

        let dt_ms = (b.t - a.t).max(0);
        let Hop {
            distance,
            effective,
            speed,
        } = hop(loc_a, loc_b, dt_ms, policy)?;

        let (pa, pb) = ordered_pair(place_a, place_b);
        let id = finding_id(&self.subject, pa, pb, b.t, policy.dedup_window_ms);
        let duplicate = self.alerts.iter().any(|m| {
            m.id == id || (m.a == pa && m.b == pb && (m.t - b.t).abs() < policy.dedup_window_ms)
        });
        let suppressed = policy.baseline.as_ref().is_some_and(|baseline| {
            let home = |place| {
                self.is_baseline(place, b.t, baseline.learning_ms, baseline.forget_after_ms)
            };
            // Both ends known: a commute between baseline places, however fast it looks.
            (home(place_a) && home(place_b))
                // A habit: the same hop made earlier in event time.
                || self
                    .transitions
                    .iter()
                    .any(|tr| tr.a == pa && tr.b == pb && tr.first_ms < b.t)
                // Already raised, by a later hop of the pair that arrived first.
                || self.alerts.iter().any(|m| m.a == pa && m.b == pb)
        });
        let (pa, pb) = (pa.to_owned(), pb.to_owned());
        let (loc_a, loc_b) = (loc_a.clone(), loc_b.clone());

        // Remember the hop even when it is not alerted: a habit is learned from hops seen.
        match self
            .transitions
            .iter_mut()
            .find(|tr| tr.a == pa && tr.b == pb)
        {
            Some(tr) => {
                tr.first_ms = tr.first_ms.min(b.t);
                tr.last_ms = tr.last_ms.max(b.t);
            }
            None => self.transitions.push(Transition {
                a: pa.clone(),
                b: pb.clone(),
                first_ms: b.t,
                last_ms: b.t,
            }),
        }
        if duplicate || suppressed {
            return None;
        }
        self.alerts.push(AlertMark {
            id: id.clone(),
            a: pa,
            b: pb,
            t: b.t,
        });

        let concurrent = dt_ms <= policy.concurrent_window_ms;
        let same_network = matches!((loc_a.asn, loc_b.asn), (Some(x), Some(y)) if x == y);
        // One autonomous system on both ends (a VPN or a corporate network spanning
        // countries) explains the hop better than a thief does.
        let severity = if same_network {
            Severity::Low
        } else if concurrent || effective >= 2000.0 {
            Severity::High
        } else {
            Severity::Medium
        };
        Some(build_finding(
            id,
            &self.subject,
            a,
            &loc_a,
            b,
            &loc_b,
            distance,
            effective,
            dt_ms,
            speed,
            concurrent,
            severity,
            ctx,
        ))
    }

    /// A baseline place, as of time `t`: first seen in the subject's learning period,
    /// seen before `t`, and not unseen for longer than `forget_after_ms` before `t`.
    fn is_baseline(&self, key: &str, t: i64, learning_ms: i64, forget_after_ms: i64) -> bool {
        let Some(place) = self.place(key) else {
            return false;
        };
        // `last_seen_ms` may lie after `t`; then the place was seen around `t` anyway.
        place.first_seen_ms < t
            && place.first_seen_ms <= self.first_seen_ms.saturating_add(learning_ms)
            && place.last_seen_ms >= t - forget_after_ms
    }

    /// Whether `key` is a baseline place as of the subject's latest event.
    pub fn is_baseline_now(&self, key: &str, policy: &Policy) -> bool {
        match (&policy.baseline, self.last_seen_ms()) {
            (Some(b), Some(now)) => {
                self.is_baseline(key, now.saturating_add(1), b.learning_ms, b.forget_after_ms)
            }
            _ => false,
        }
    }

    /// The oldest time among places, transitions and alert marks.
    fn oldest_mark_ms(&self) -> Option<i64> {
        let places = self.places.iter().map(|pl| pl.last_seen_ms);
        let transitions = self
            .transitions
            .iter()
            .map(|tr| tr.last_ms.max(tr.first_ms));
        let alerts = self.alerts.iter().map(|m| m.t);
        places.chain(transitions).chain(alerts).min()
    }

    fn cap_alerts(&mut self) {
        if self.alerts.len() > MAX_ALERTS {
            self.alerts.sort_by_key(|m| m.t);
            let excess = self.alerts.len() - MAX_ALERTS;
            self.alerts.drain(..excess);
        }
    }

    fn prune(&mut self, policy: &Policy) {
        let Some(latest) = self.last_seen_ms() else {
            return;
        };
        let horizon = latest.saturating_sub(policy.history_window_ms);
        // Most sightings change nothing here: check before walking every list.
        let stale_stay = self.stays.first().is_some_and(|s| s.last().t < horizon);
        if !stale_stay
            && self.stays.len() <= policy.max_stays
            && self.places.len() <= MAX_PLACES
            && self.transitions.len() <= MAX_TRANSITIONS
            && self.alerts.len() <= MAX_ALERTS
            && self.oldest_mark_ms().is_none_or(|t| t >= horizon)
        {
            return;
        }
        self.stays.retain(|s| s.last().t >= horizon);
        if self.stays.len() > policy.max_stays {
            // Folded: their places keep first and last seen and the count.
            let excess = self.stays.len() - policy.max_stays;
            self.stays.drain(..excess);
        }
        // Places outlive their stays, so that baseline places are remembered for the
        // whole window.
        self.places.retain(|pl| pl.last_seen_ms >= horizon);
        if self.places.len() > MAX_PLACES {
            self.places
                .sort_by_key(|pl| std::cmp::Reverse(pl.last_seen_ms));
            self.places.truncate(MAX_PLACES);
        }
        self.transitions
            .retain(|tr| tr.last_ms.max(tr.first_ms) >= horizon);
        if self.transitions.len() > MAX_TRANSITIONS {
            self.transitions.sort_by_key(|tr| tr.first_ms);
            let excess = self.transitions.len() - MAX_TRANSITIONS;
            self.transitions.drain(..excess);
        }
        self.alerts.retain(|m| m.t >= horizon);
        self.cap_alerts();
    }
}

struct Hop {
    distance: f64,
    effective: f64,
    speed: f64,
}

/// The hop between two locations `dt_ms` apart, if it is impossible under the policy.
fn hop(loc_a: &Location, loc_b: &Location, dt_ms: i64, policy: &Policy) -> Option<Hop> {
    let distance = distance_km(
        loc_a.latitude,
        loc_a.longitude,
        loc_b.latitude,
        loc_b.longitude,
    );
    let effective = if policy.use_accuracy_radius {
        (distance - loc_a.accuracy_km() - loc_b.accuracy_km()).max(0.0)
    } else {
        distance
    };
    let speed = if dt_ms <= 0 {
        f64::INFINITY
    } else {
        effective / (dt_ms as f64 / 3_600_000.0)
    };
    (effective > policy.min_distance_km && speed > policy.min_speed_kmh).then_some(Hop {
        distance,
        effective,
        speed,
    })
}

/// Triage step 2, for the kind of credential that was used: a long-term key is
/// deactivated, a role's temporary credentials are revoked, a console user's password
/// and MFA are reset.
pub(crate) fn containment_step(identity: &CompactIdentity) -> String {
    let key = identity.access_key_id().filter(|k| !k.is_empty());
    let kind = identity.identity_type().unwrap_or("");
    match (kind, key) {
        ("AssumedRole", _) => format!(
            "If not, isolate the account: revoke the active sessions of the role behind {} (IAM \"Revoke active sessions\"), then find and rotate whatever credential was used to assume it.",
            identity.arn().unwrap_or("this session")
        ),
        (_, Some(key)) if key.starts_with("ASIA") => format!(
            "If not, isolate the account: the temporary key {key} cannot be deactivated, so revoke the sessions of its principal and rotate the long-term credential that issued it."
        ),
        (_, Some(key)) => format!(
            "If not, isolate the account: deactivate access key {key}, reset the user's credentials, and look for access keys, users or roles the credential created."
        ),
        (_, None) => "If not, isolate the account: reset the user's console password and MFA device, and look for access keys, users or roles created since.".to_owned(),
    }
}

/// How far apart in time two sightings can be and still make an impossible hop: half the
/// Earth's circumference at the minimum speed.
fn reach_ms(policy: &Policy) -> i64 {
    const HALF_CIRCUMFERENCE_KM: f64 = std::f64::consts::PI * crate::geo::EARTH_RADIUS_KM;
    let hours = HALF_CIRCUMFERENCE_KM / policy.min_speed_kmh;
    (hours * 3_600_000.0).ceil().min(i64::MAX as f64) as i64
}

fn ordered_pair<'a>(x: &'a str, y: &'a str) -> (&'a str, &'a str) {
    if x <= y {
        (x, y)
    } else {
        (y, x)
    }
}

/// A deterministic id from the rule and the parts that make a finding the same one.
pub(crate) fn hash_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    // Computed for every candidate of every rule: hex by hand, not a `format!` per byte.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for b in &digest[..16] {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 15)]));
    }
    id
}

/// Deterministic: the rule, the subject, the unordered place pair and the dedup window the
/// later event falls in. The same hop judged again, by a replay or a racing Lambda, gets
/// the same id.
fn finding_id(subject: &str, a: &str, b: &str, t: i64, window_ms: i64) -> String {
    let bucket = if window_ms > 0 {
        t.div_euclid(window_ms)
    } else {
        t
    };
    hash_id(&[
        Rule::ImpossibleTravel.as_str(),
        subject,
        a,
        b,
        &bucket.to_string(),
    ])
}

#[allow(clippy::too_many_arguments)]
fn build_finding(
    finding_id: String,
    subject: &str,
    a: Point,
    loc_a: &Location,
    b: Point,
    loc_b: &Location,
    distance: f64,
    effective: f64,
    dt_ms: i64,
    speed: f64,
    concurrent: bool,
    severity: Severity,
    ctx: &FindingContext<'_>,
) -> Finding {
    let seconds = dt_ms as f64 / 1000.0;
    let human = human_duration(seconds);
    let event_time = format_rfc3339_ms(b.t);
    let first = TravelEndpoint::from_location(a, loc_a);
    let second = TravelEndpoint::from_location(b, loc_b);
    let (place1, place2) = (first.display_place(), second.display_place());
    let title = if concurrent {
        format!("Concurrent use of {subject} from {place1} and {place2}")
    } else {
        format!("Impossible travel of {subject} from {place1} to {place2}")
    };
    let mut summary = format!(
        "`{subject}` had activity from {place1} and {place2} which are approximately {:.0}km apart within {human}. This indicates a potential impossible travel.",
        distance
    );
    for end in [&first, &second].into_iter().filter(|e| e.inferred) {
        summary.push_str(&format!(
            " The time at {} is a bound: the credential was in continuous use there, but its log arrived before the other event's.",
            end.display_place()
        ));
    }
    let credential = ctx.credential(subject);
    let triage = vec![
        format!("Confirm with the owner of {credential} whether it should be used from {place1} ({}) and from {place2} ({}).", first.ip, second.ip),
        containment_step(ctx.identity),
        format!(
            "Audit what the credential did after {}: search CloudTrail for its calls from {}, starting with {} in {}.",
            second.event_time, second.ip, second.event_name, second.aws_region
        ),
    ];
    let mut finding = ctx.finding(
        finding_id,
        Rule::ImpossibleTravel,
        severity,
        subject,
        FindingText {
            title,
            summary,
            triage,
        },
        event_time,
    );
    finding.impossible_travel = Some(ImpossibleTravel {
        triggering_locations: TriggeringLocations {
            first_location: first,
            second_location: second,
        },
        travel_distance: round1(distance),
        effective_distance_km: round1(effective),
        travel_time_seconds: seconds,
        travel_time_human_readable: human,
        speed_kmh: speed.is_finite().then(|| round1(speed)),
        concurrent_use: concurrent,
    });
    finding
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
#[path = "scenarios.rs"]
mod scenarios;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_states::point;

    /// Stays are most of a subject's memory: an organisation's trail holds hundreds of
    /// thousands of them, so a few bytes here are megabytes of peak RSS.
    #[test]
    fn stays_and_sightings_stay_small() {
        assert!(std::mem::size_of::<Point>() <= 64);
        assert!(std::mem::size_of::<Stay>() <= 88);
        assert!(std::mem::size_of::<Sighting>() <= 80);
    }

    /// Equality and the stored layout must not depend on how a stay reached its span.
    #[test]
    fn a_stay_keeps_one_form_whichever_way_its_ends_moved() {
        let single = Stay::at("sydney", point(10));
        assert!(single.is_single());
        assert_eq!(single.last(), single.first());
        assert_eq!(Stay::span("sydney", point(10), point(10), 0), single);

        let mut grown = single.clone();
        grown.set_last(point(30));
        let mut earlier = Stay::at("sydney", point(30));
        earlier.set_first(point(10));
        let spanned = Stay::span("sydney", point(10), point(30), 0);
        assert_eq!(grown, spanned);
        assert_eq!(earlier, spanned);
        assert!(!spanned.is_single());
        assert_eq!((spanned.first().t, spanned.last().t), (10, 30));

        let mut shrunk = spanned.clone();
        shrunk.set_first(point(30));
        assert_eq!(shrunk, Stay::at("sydney", point(30)));

        let json = serde_json::to_value(&spanned).unwrap();
        assert_eq!(json["first"]["t"], 10);
        assert_eq!(json["last"]["t"], 30);
        assert_eq!(serde_json::from_value::<Stay>(json).unwrap(), spanned);
        let json = serde_json::to_value(&single).unwrap();
        assert_eq!(json["last"], json["first"], "both ends written out");
        assert_eq!(serde_json::from_value::<Stay>(json).unwrap(), single);
    }
}
