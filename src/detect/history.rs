//! Per-subject history and the impossible-travel judgement.
//!
//! A subject's history is a list of *stays*: maximal runs of sightings at one place,
//! sorted by event time, each remembered by its first and last event. A new sighting is
//! slotted into that timeline by its own event time and judged against its neighbours
//! before and after it, so a log object that CloudTrail delivers late (it may be 15
//! minutes behind, per region) is judged exactly as if it had come in order.
//!
//! Merging is idempotent: a sighting that falls inside a stay at its own place changes
//! nothing, and a pair that was judged before yields the same finding id, which the
//! subject's alert marks suppress. That is what makes a replayed object, or a Lambda
//! retry, produce no new finding.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::policy::{Policy, SubjectKind};
use crate::finding::{
    format_rfc3339_ms, human_duration, Finding, ImpossibleTravel, Rule, Severity, TravelEndpoint,
    TriggeringLocations, UserIdentitySummary,
};
use crate::geo::{distance_km, GeoDbInfo, Location};

/// One event, reduced to what the timeline keeps. Field names are short because this is
/// stored many times per DynamoDB item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// Event time, Unix epoch milliseconds.
    pub t: i64,
    pub id: String,
    /// Stored parsed: 16 bytes in place of a string, and serialized as text anyway.
    pub ip: IpAddr,
    /// Event name, source and region repeat across a subject's events: shared, not
    /// copied, while an object is judged.
    pub name: Arc<str>,
    #[serde(rename = "src")]
    pub source: Arc<str>,
    #[serde(rename = "rgn")]
    pub region: Arc<str>,
}

impl Point {
    /// Total order of events: time, then event id for events in the same millisecond.
    fn key(&self) -> (i64, &str) {
        (self.t, &self.id)
    }
}

/// A geolocated event of one subject, ready to be judged.
#[derive(Debug, Clone)]
pub struct Sighting {
    pub point: Point,
    pub location: Arc<Location>,
}

impl Sighting {
    pub fn from_point(point: Point, location: Arc<Location>) -> Sighting {
        Sighting { point, location }
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
        Sighting {
            point: Point {
                t: time_ms,
                id: event_id.to_owned(),
                ip,
                name: event_name.into(),
                source: event_source.into(),
                region: aws_region.into(),
            },
            location,
        }
    }
}

/// A run of sightings at one place with no other place between them, covering at most
/// the policy's `max_stay_span_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stay {
    pub place: String,
    pub first: Point,
    pub last: Point,
}

/// A place the subject has been, with when it was first and last seen there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    pub key: String,
    /// Shared with the lookup cache and the sightings while an object is judged.
    pub location: Arc<Location>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// An impossible hop between two places, alerted or not; with a baseline, a hop the
/// subject has made before is its habit (a VPN, a split tunnel) and is not alerted again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Transition {
    a: String,
    b: String,
    /// Event times (of the later end) of the first and last time the hop was made.
    first_ms: i64,
    #[serde(default)]
    last_ms: i64,
}

/// A finding already raised, so that replays and neighbouring pairs stay quiet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AlertMark {
    id: String,
    a: String,
    b: String,
    t: i64,
}

/// Everything geotrail remembers about one subject. Bounded by the policy's window,
/// `max_stays` and a cap on places, so it fits a DynamoDB item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectState {
    pub subject: String,
    /// Earliest event time ever seen: the learning period starts here.
    pub first_seen_ms: i64,
    pub stays: Vec<Stay>,
    pub places: Vec<Place>,
    #[serde(default)]
    transitions: Vec<Transition>,
    #[serde(default)]
    alerts: Vec<AlertMark>,
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
    pub identity: &'a UserIdentitySummary,
    pub account_id: Option<&'a str>,
    pub source_object: &'a str,
    pub geoip: &'a GeoDbInfo,
}

const MAX_TRANSITIONS: usize = 64;
const MAX_PLACES: usize = 128;
const MAX_ALERTS: usize = 64;

impl SubjectState {
    pub fn new(subject: impl Into<String>) -> SubjectState {
        SubjectState {
            subject: subject.into(),
            first_seen_ms: i64::MAX,
            stays: Vec::new(),
            places: Vec::new(),
            transitions: Vec::new(),
            alerts: Vec::new(),
        }
    }

    /// Event time of the newest sighting, if any.
    pub fn last_seen_ms(&self) -> Option<i64> {
        self.stays.last().map(|s| s.last.t)
    }

    /// Ids of the findings this subject has raised and still remembers.
    pub fn alerted_finding_ids(&self) -> impl Iterator<Item = &str> {
        self.alerts.iter().map(|a| a.id.as_str())
    }

    /// Slots `sighting` into the timeline and judges it against its neighbours.
    ///
    /// The caller filters out low-precision locations: a country centroid is not a point
    /// anyone stood on.
    pub fn observe(
        &mut self,
        sighting: &Sighting,
        policy: &Policy,
        ctx: &FindingContext<'_>,
    ) -> Observation {
        let quiet = |effect| Observation {
            effect,
            findings: Vec::new(),
        };
        let p = &sighting.point;
        if let Some(last) = self.last_seen_ms() {
            if p.t < last - policy.history_window_ms {
                return quiet(Effect::Stale);
            }
        }
        let place_key = sighting.location.place_key();
        let idx = self.stays.partition_point(|s| s.first.key() <= p.key());

        // Where the sighting's stay ends up in the timeline.
        let at = if idx > 0 && self.stays[idx - 1].last.key() >= p.key() {
            let host = &self.stays[idx - 1];
            let same_event = host.first.key() == p.key() || host.last.key() == p.key();
            if host.place == place_key || same_event {
                return quiet(Effect::Covered);
            }
            // A different place in the middle of a stay: split it. The stay's inner events
            // are not kept, so its halves are its two ends: the conservative choice, as it
            // can only make a hop look slower than it was.
            let host = self.stays.remove(idx - 1);
            let left = Stay {
                place: host.place.clone(),
                first: host.first.clone(),
                last: host.first,
            };
            let right = Stay {
                place: host.place,
                first: host.last.clone(),
                last: host.last,
            };
            self.stays.insert(idx - 1, left);
            self.stays.insert(
                idx,
                Stay {
                    place: place_key.clone(),
                    first: p.clone(),
                    last: p.clone(),
                },
            );
            self.stays.insert(idx + 1, right);
            idx
        } else if idx > 0
            && self.stays[idx - 1].place == place_key
            && p.t - self.stays[idx - 1].first.t <= policy.max_stay_span_ms
        {
            self.stays[idx - 1].last = p.clone();
            idx - 1
        } else if idx < self.stays.len()
            && self.stays[idx].place == place_key
            && self.stays[idx].last.t - p.t <= policy.max_stay_span_ms
        {
            self.stays[idx].first = p.clone();
            idx
        } else {
            self.stays.insert(
                idx,
                Stay {
                    place: place_key.clone(),
                    first: p.clone(),
                    last: p.clone(),
                },
            );
            idx
        };
        self.note_place(&place_key, &sighting.location, p.t);

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
        let lo = self.stays[..at].partition_point(|s| p.t - s.last.t > reach_ms);
        let hi = at + 1 + self.stays[at + 1..].partition_point(|s| s.first.t - p.t <= reach_ms);
        let before = (lo..at).rev().map(|k| (k, true));
        let after = (at + 1..hi).map(|k| (k, false));
        for (k, is_before) in before.chain(after) {
            let other = &self.stays[k];
            let dt_ms = if is_before {
                p.t - other.last.t
            } else {
                other.first.t - p.t
            };
            if other.place == place_key || seen.contains(&(other.place.as_str(), is_before)) {
                continue;
            }
            seen.push((other.place.as_str(), is_before));
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
                let from = other.last.clone();
                self.judge(
                    from,
                    &other_place,
                    p.clone(),
                    &place_key,
                    &sighting.location,
                    false,
                    policy,
                    ctx,
                )
            } else {
                let to = other.first.clone();
                self.judge(
                    p.clone(),
                    &place_key,
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

    fn note_place(&mut self, key: &str, location: &Arc<Location>, t: i64) {
        self.first_seen_ms = self.first_seen_ms.min(t);
        match self.places.iter_mut().find(|pl| pl.key == key) {
            Some(pl) => {
                pl.first_seen_ms = pl.first_seen_ms.min(t);
                pl.last_seen_ms = pl.last_seen_ms.max(t);
            }
            None => self.places.push(Place {
                key: key.to_owned(),
                location: Arc::clone(location),
                first_seen_ms: t,
                last_seen_ms: t,
            }),
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
        let habitual = policy.baseline.as_ref().is_some_and(|baseline| {
            self.is_baseline(place_b, b.t, baseline.learning_ms, baseline.forget_after_ms)
                // Made at another time, before or after: symmetric, so that a late object
                // holding the earlier of two such hops does not raise a second alert.
                || self
                    .transitions
                    .iter()
                    .any(|tr| tr.a == pa && tr.b == pb && (tr.first_ms < b.t || tr.last_ms > b.t))
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
        if duplicate || habitual {
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

    fn prune(&mut self, policy: &Policy) {
        let Some(latest) = self.last_seen_ms() else {
            return;
        };
        let horizon = latest - policy.history_window_ms;
        // Most sightings change nothing here: check before walking every list.
        let stale_stay = self.stays.first().is_some_and(|s| s.last.t < horizon);
        if !stale_stay
            && self.stays.len() <= policy.max_stays
            && self.places.len() <= MAX_PLACES
            && self.transitions.len() <= MAX_TRANSITIONS
            && self.alerts.len() <= MAX_ALERTS
            && self.oldest_mark_ms().is_none_or(|t| t >= horizon)
        {
            return;
        }
        self.stays.retain(|s| s.last.t >= horizon);
        if self.stays.len() > policy.max_stays {
            let excess = self.stays.len() - policy.max_stays;
            self.stays.drain(..excess);
        }
        // Places outlive their stays (a busy subject's stays cover only days), so that
        // baseline places are remembered for the whole window.
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
        if self.alerts.len() > MAX_ALERTS {
            self.alerts.sort_by_key(|m| m.t);
            let excess = self.alerts.len() - MAX_ALERTS;
            self.alerts.drain(..excess);
        }
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
fn containment_step(identity: &UserIdentitySummary) -> String {
    let key = identity.access_key_id.as_deref().filter(|k| !k.is_empty());
    let kind = identity.identity_type.as_deref().unwrap_or("");
    match (kind, key) {
        ("AssumedRole", _) => format!(
            "If not, isolate the account: revoke the active sessions of the role behind {} (IAM \"Revoke active sessions\"), then find and rotate whatever credential was used to assume it.",
            identity.arn.as_deref().unwrap_or("this session")
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

/// Deterministic: the rule, the subject, the unordered place pair and the dedup window the
/// later event falls in. The same hop judged again, by a replay or a racing Lambda, gets
/// the same id.
fn finding_id(subject: &str, a: &str, b: &str, t: i64, window_ms: i64) -> String {
    let bucket = if window_ms > 0 {
        t.div_euclid(window_ms)
    } else {
        t
    };
    let mut h = Sha256::new();
    for part in [
        Rule::ImpossibleTravel.as_str(),
        subject,
        a,
        b,
        &bucket.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
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
    let summary = format!(
        "`{subject}` had activity from {place1} and {place2} which are approximately {:.0}km apart within {human}. This indicates a potential impossible travel.",
        distance
    );
    let credential = match ctx.subject_kind {
        SubjectKind::AccessKey => format!("access key {subject}"),
        SubjectKind::Principal => format!("principal {subject}"),
    };
    let triage = vec![
        format!("Confirm with the owner of {credential} whether it should be used from {place1} ({}) and from {place2} ({}).", first.ip, second.ip),
        containment_step(ctx.identity),
        format!(
            "Audit what the credential did after {}: search CloudTrail for its calls from {}, starting with {} in {}.",
            second.event_time, second.ip, second.event_name, second.aws_region
        ),
    ];
    Finding {
        finding_id,
        rule: Rule::ImpossibleTravel,
        severity,
        title,
        summary,
        triage,
        account_id: ctx.account_id.map(str::to_owned),
        subject: subject.to_owned(),
        subject_kind: ctx.subject_kind,
        user_identity: ctx.identity.clone(),
        impossible_travel: Some(ImpossibleTravel {
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
        }),
        geoip: ctx.geoip.clone(),
        source_object: ctx.source_object.to_owned(),
        event_time,
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
#[path = "scenarios.rs"]
mod scenarios;
