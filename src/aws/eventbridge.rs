//! `EventBridgeNotifier`: each finding as an event on an EventBridge bus, for rules that
//! route findings by their content.
//!
//! Every event has `Source` [`SOURCE`], `DetailType` [`DETAIL_TYPE`] and the finding JSON
//! ([`Finding::to_json`]) as its `Detail`, so a rule matches on any of the finding's fields:
//!
//! ```json
//! {"source": ["geotrail"], "detail": {"rule": ["impossible_travel"], "severity": ["high", "critical"]}}
//! ```
//!
//! `PutEvents` takes at most 10 entries and 256 KB a call (an entry's size is its source,
//! detail type and detail), and answers 200 with a `FailedEntryCount` and per-entry error
//! codes in the order of the entries: failures on the service's side are retried with
//! backoff, refused entries fail the publish naming the finding ([`super::batch`]).

use std::ops::Range;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

use super::backoff::Backoff;
use super::batch::{self, call_failed, is_retriable_code, send_with_retries};
use super::batch::{AttemptError, EntryFailure};
use crate::finding::Finding;
use crate::notify::{Notifier, NotifyError};

pub const SOURCE: &str = "geotrail";
pub const DETAIL_TYPE: &str = "geotrail finding";
/// EventBridge's limit on one entry, and on all the entries of a call together.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// `PutEvents` takes at most 10 entries.
pub const PUT_EVENTS_MAX_ENTRIES: usize = 10;

#[derive(Debug, Clone)]
pub struct EventBridgeNotifier {
    client: Client,
    bus: String,
    backoff: Backoff,
}

/// One finding, ready for `PutEvents`.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingEvent {
    pub finding_id: String,
    pub detail: String,
}

impl FindingEvent {
    /// What EventBridge counts against [`MAX_EVENT_BYTES`]: source, detail type and detail
    /// in UTF-8 (no time or resources are sent).
    pub fn size(&self) -> usize {
        SOURCE.len() + DETAIL_TYPE.len() + self.detail.len()
    }
}

/// The finding as an event; one too large for EventBridge is an error naming it.
pub fn finding_event(finding: &Finding) -> Result<FindingEvent, String> {
    let event = FindingEvent {
        finding_id: finding.finding_id.clone(),
        detail: finding.to_json(),
    };
    if event.size() > MAX_EVENT_BYTES {
        return Err(format!(
            "finding {}: its event is {} bytes, over EventBridge's {MAX_EVENT_BYTES}-byte limit",
            finding.finding_id,
            event.size()
        ));
    }
    Ok(event)
}

/// Splits events into `PutEvents` calls of at most 10 entries and 256 KB.
pub fn pack_events(events: &[FindingEvent]) -> Vec<Range<usize>> {
    let sizes: Vec<usize> = events.iter().map(FindingEvent::size).collect();
    batch::pack(&sizes, PUT_EVENTS_MAX_ENTRIES, MAX_EVENT_BYTES)
}

impl EventBridgeNotifier {
    /// Puts events on `bus`, a bus name or ARN (`default` for the account's default bus).
    pub fn new(client: Client, bus: impl Into<String>) -> EventBridgeNotifier {
        EventBridgeNotifier {
            client,
            bus: bus.into(),
            backoff: Backoff::default(),
        }
    }

    /// Replaces the retry policy for throttled calls and failed entries.
    pub fn with_backoff(mut self, backoff: Backoff) -> EventBridgeNotifier {
        self.backoff = backoff;
        self
    }

    pub fn bus(&self) -> &str {
        &self.bus
    }

    fn name(&self) -> String {
        format!("event bus {}", self.bus)
    }

    async fn put(
        &self,
        batch: &[FindingEvent],
        indices: Vec<usize>,
    ) -> Result<Vec<EntryFailure>, AttemptError> {
        let entries: Vec<PutEventsRequestEntry> = indices
            .iter()
            .filter_map(|&i| batch.get(i))
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .source(SOURCE)
                    .detail_type(DETAIL_TYPE)
                    .detail(&e.detail)
                    .event_bus_name(&self.bus)
                    .build()
            })
            .collect();
        match self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => {
                // Results come in the order of the entries sent.
                let mut failures: Vec<EntryFailure> = output
                    .entries()
                    .iter()
                    .zip(&indices)
                    .filter_map(|(result, &index)| {
                        let code = result.error_code()?;
                        Some(EntryFailure {
                            index: Some(index),
                            reported: format!("entry {index}"),
                            code: code.to_owned(),
                            message: result.error_message().map(str::to_owned),
                            retriable: is_retriable_code(code),
                        })
                    })
                    .collect();
                let counted = output.failed_entry_count().max(0) as usize;
                let answered = output.entries().len();
                if counted > failures.len() || answered != indices.len() {
                    failures.push(EntryFailure {
                        index: None,
                        reported: "the call".to_owned(),
                        code: "FailedEntryCount".to_owned(),
                        message: Some(format!(
                            "FailedEntryCount {counted} with {} entries failed by code, {answered} results for {} entries",
                            failures.len(),
                            indices.len()
                        )),
                        retriable: false,
                    });
                }
                Ok(failures)
            }
            Err(err) => {
                let ids: Vec<&str> = indices
                    .iter()
                    .filter_map(|&i| batch.get(i).map(|e| e.finding_id.as_str()))
                    .collect();
                Err(call_failed(self.name(), "PutEvents", &ids, err))
            }
        }
    }
}

impl Notifier for EventBridgeNotifier {
    async fn publish(&self, findings: &[Finding]) -> Result<(), NotifyError> {
        let mut events = Vec::with_capacity(findings.len());
        for finding in findings {
            events.push(
                finding_event(finding).map_err(|message| NotifyError::Backend {
                    notifier: self.name(),
                    message,
                    source: None,
                })?,
            );
        }
        for range in pack_events(&events) {
            let batch = &events[range];
            let ids: Vec<&str> = batch.iter().map(|e| e.finding_id.as_str()).collect();
            send_with_retries(
                &self.name(),
                "PutEvents",
                &ids,
                &self.backoff,
                |indices| self.put(batch, indices),
                tokio::time::sleep,
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::render::samples::sample_finding;

    #[test]
    fn the_detail_is_the_finding_json_with_rule_and_severity_at_the_top() {
        let f = sample_finding();
        let e = finding_event(&f).unwrap();
        let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
        assert_eq!(detail["rule"], "impossible_travel");
        assert_eq!(detail["severity"], "high");
        assert_eq!(serde_json::from_str::<Finding>(&e.detail).unwrap(), f);
        assert_eq!(
            e.size(),
            "geotrail".len() + "geotrail finding".len() + e.detail.len()
        );
    }

    #[test]
    fn a_finding_too_large_for_an_event_is_refused_by_id() {
        let mut f = sample_finding();
        f.summary = "x".repeat(MAX_EVENT_BYTES);
        let err = finding_event(&f).unwrap_err();
        assert!(
            err.contains(&f.finding_id) && err.contains("EventBridge"),
            "{err}"
        );
    }

    #[test]
    fn calls_hold_at_most_ten_entries_and_256_kb() {
        let event = |n: usize| FindingEvent {
            finding_id: n.to_string(),
            detail: "x".repeat(n),
        };
        let small: Vec<FindingEvent> = (0..23).map(|_| event(100)).collect();
        assert_eq!(pack_events(&small), [0..10, 10..20, 20..23]);
        let big = [event(150_000), event(150_000), event(50_000)];
        assert_eq!(pack_events(&big), [0..1, 1..3]);
    }
}
