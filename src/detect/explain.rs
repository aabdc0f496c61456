//! `geotrail explain`: what geotrail remembers about a subject and what it makes of it,
//! so a person can see why something did or did not alert.

use serde::Serialize;

use super::history::SubjectState;
use super::policy::Policy;
use crate::finding::format_rfc3339_ms;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub subject: String,
    pub state_version: u32,
    pub first_seen: Option<String>,
    /// The subject's clock: its latest trusted event.
    pub latest: Option<String>,
    /// When the baseline learning period ends (`null` without a baseline).
    pub learning_ends: Option<String>,
    pub places: Vec<PlaceExplained>,
    /// Impossible hops made before: with a baseline, a pair here is a habit.
    pub habits: Vec<HabitExplained>,
    pub stays: Vec<StayExplained>,
    pub alerts: Vec<AlertExplained>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaceExplained {
    pub place: String,
    pub name: String,
    pub first_seen: String,
    pub last_seen: String,
    pub count: u64,
    /// Baseline as of the subject's latest event: travel between two baseline places
    /// does not alert.
    pub baseline: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HabitExplained {
    pub a: String,
    pub b: String,
    pub first: String,
    pub last: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StayExplained {
    pub place: String,
    pub from: String,
    pub to: String,
    /// Empty where the end was inferred from continuous use.
    pub first_event_id: String,
    pub last_event_id: String,
    pub longest_gap_seconds: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertExplained {
    pub finding_id: String,
    /// Empty for findings that are not about a place pair.
    pub a: String,
    pub b: String,
    pub at: String,
}

impl SubjectState {
    /// The state as a person reads it; `policy` decides what is baseline.
    pub fn explain(&self, policy: &Policy) -> Explanation {
        let mut state = self.clone();
        state.upgrade(policy);
        let time = |ms: i64| format_rfc3339_ms(ms);
        let seen = state.last_seen_ms().is_some();
        let mut places: Vec<PlaceExplained> = state
            .places
            .iter()
            .map(|p| PlaceExplained {
                place: p.key.to_string(),
                name: p.location.display_name(),
                first_seen: time(p.first_seen_ms),
                last_seen: time(p.last_seen_ms),
                count: p.count,
                baseline: state.is_baseline_now(&p.key, policy),
            })
            .collect();
        places.sort_by(|a, b| a.first_seen.cmp(&b.first_seen));
        Explanation {
            subject: state.subject.clone(),
            state_version: state.v,
            first_seen: seen.then(|| time(state.first_seen_ms)),
            latest: state.last_seen_ms().map(time),
            learning_ends: policy
                .baseline
                .as_ref()
                .filter(|_| seen)
                .map(|b| time(state.first_seen_ms.saturating_add(b.learning_ms))),
            places,
            habits: state
                .transitions
                .iter()
                .map(|t| HabitExplained {
                    a: t.a.clone(),
                    b: t.b.clone(),
                    first: time(t.first_ms),
                    last: time(t.last_ms.max(t.first_ms)),
                })
                .collect(),
            stays: state
                .stays
                .iter()
                .map(|s| StayExplained {
                    place: s.place.to_string(),
                    from: time(s.first().t),
                    to: time(s.last().t),
                    first_event_id: s.first().id.to_string(),
                    last_event_id: s.last().id.to_string(),
                    longest_gap_seconds: s.gap_ms / 1000,
                })
                .collect(),
            alerts: state
                .alerts
                .iter()
                .map(|m| AlertExplained {
                    finding_id: m.id.clone(),
                    a: m.a.clone(),
                    b: m.b.clone(),
                    at: time(m.t),
                })
                .collect(),
        }
    }
}

impl Explanation {
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let or_never = |v: &Option<String>| v.clone().unwrap_or_else(|| "never".to_owned());
        let _ = writeln!(out, "subject {}", self.subject);
        let _ = writeln!(
            out,
            "  first seen {}, latest {}, learning {}",
            or_never(&self.first_seen),
            or_never(&self.latest),
            match &self.learning_ends {
                Some(t) => format!("until {t}"),
                None => "off (no baseline)".to_owned(),
            }
        );
        let _ = writeln!(out, "places ({}):", self.places.len());
        for p in &self.places {
            let _ = writeln!(
                out,
                "  {:<9} {} [{}]  {} .. {}  {} sightings",
                if p.baseline { "baseline" } else { "new" },
                p.name,
                p.place,
                p.first_seen,
                p.last_seen,
                p.count
            );
        }
        let _ = writeln!(out, "impossible hops seen before ({}):", self.habits.len());
        for h in &self.habits {
            let _ = writeln!(out, "  {} <-> {}  {} .. {}", h.a, h.b, h.first, h.last);
        }
        let _ = writeln!(out, "stays ({}):", self.stays.len());
        for s in &self.stays {
            let id = |i: &str| {
                if i.is_empty() {
                    "(inferred)".to_owned()
                } else {
                    i.to_owned()
                }
            };
            let _ = writeln!(
                out,
                "  {}  {} .. {}  events {} .. {}  longest gap {} s",
                s.place,
                s.from,
                s.to,
                id(&s.first_event_id),
                id(&s.last_event_id),
                s.longest_gap_seconds
            );
        }
        let _ = writeln!(out, "findings raised ({}):", self.alerts.len());
        for a in &self.alerts {
            if a.a.is_empty() {
                let _ = writeln!(out, "  {}  at {}", a.finding_id, a.at);
            } else {
                let _ = writeln!(out, "  {}  {} <-> {}  at {}", a.finding_id, a.a, a.b, a.at);
            }
        }
        out
    }
}
