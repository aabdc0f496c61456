//! Records stamped after their log object was written.
//!
//! CloudTrail writes an object minutes after the events in it, so an event time well
//! after the object's own time is forged, or comes from a broken clock. Such a record is
//! never judged (it would move the subject's clock, its pruning and its TTL); it is
//! reported instead, once per subject and object, since a log record from the future is
//! itself suspicious.

use crate::finding::{format_rfc3339_ms, Finding, FutureEvent, FutureEventTime, Rule, Severity};

use super::history::{containment_step, hash_id, FindingContext, FindingText};

/// How many of a subject's future records a finding lists; the rest are counted.
pub const MAX_FUTURE_EVENTS_LISTED: usize = 10;

/// A subject's future records in one object: the first few in full, all counted.
#[derive(Debug, Clone, Default)]
pub struct FutureRecords {
    pub count: u64,
    /// The earliest [`MAX_FUTURE_EVENTS_LISTED`] by (event time, id). The address is kept
    /// as written: it need not be one (`AWS Internal`), as nothing was looked up.
    pub events: Vec<(i64, FutureEvent)>,
}

impl FutureRecords {
    pub fn push(&mut self, t: i64, event: FutureEvent) {
        self.count += 1;
        let at = self
            .events
            .partition_point(|(u, e)| (*u, &e.event_id) <= (t, &event.event_id));
        if at < MAX_FUTURE_EVENTS_LISTED {
            self.events.insert(at, (t, event));
            self.events.truncate(MAX_FUTURE_EVENTS_LISTED);
        }
    }
}

/// The finding for `records`, with an id that a replay of the same object reproduces.
pub fn future_time_finding(
    subject: &str,
    records: &FutureRecords,
    written_at_ms: i64,
    tolerance_ms: i64,
    ctx: &FindingContext<'_>,
) -> Finding {
    let finding_id = hash_id(&[Rule::FutureEventTime.as_str(), subject, ctx.source_object]);
    let written = format_rfc3339_ms(written_at_ms);
    let latest = records.events.last().map(|(t, _)| format_rfc3339_ms(*t));
    let credential = ctx.credential(subject);
    let summary = format!(
        "{} record(s) of `{subject}` in {} are stamped after the object was written ({written}){}. CloudTrail writes events before their object, so these times are forged or come from a broken clock; they were not used for detection.",
        records.count,
        ctx.source_object,
        latest.map(|t| format!(", up to {t}")).unwrap_or_default(),
    );
    let triage = vec![
        format!("Check who can write to the trail's bucket or prefix and whether {} was written by CloudTrail itself (its digest files validate genuine objects).", ctx.source_object),
        format!("If the object is genuine, find the client of {credential} with a clock that far off; if not, treat the writer as compromised."),
        containment_step(ctx.identity),
    ];
    // The object's time, not the forged one: a finding's time must be trustworthy.
    let mut finding = ctx.finding(
        finding_id,
        Rule::FutureEventTime,
        Severity::Low,
        subject,
        FindingText {
            title: format!("Log records from the future for {subject}"),
            summary,
            triage,
        },
        written.clone(),
    );
    finding.future_event_time = Some(FutureEventTime {
        object_written_at: written,
        tolerance_seconds: tolerance_ms / 1000,
        count: records.count,
        events: records.events.iter().map(|(_, e)| e.clone()).collect(),
    });
    finding
}
