//! What a `future_event_time` finding adds: when the object was written and the records
//! stamped after it. Every field here is log text, so each body escapes it.

use std::fmt::Write as _;

use super::{chat_code, plain, RuleRendering};
use crate::finding::FutureEventTime;

impl RuleRendering for FutureEventTime {
    fn text(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  object written {}; {} record(s) stamped more than {} s later",
            self.object_written_at, self.count, self.tolerance_seconds
        );
        for e in &self.events {
            let _ = writeln!(
                out,
                "  at   {} {}  {} {} in {}  event {}",
                e.event_time,
                e.source_ip_address,
                e.event_source,
                e.event_name,
                e.aws_region,
                e.event_id
            );
        }
    }

    fn email(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "Object written: {}\nRecords stamped more than {} seconds later: {}",
            plain(&self.object_written_at),
            self.tolerance_seconds,
            self.count
        );
        for e in &self.events {
            let _ = writeln!(
                out,
                "  {}  {}  {} {} in {}  (event {})",
                plain(&e.event_time),
                plain(&e.source_ip_address),
                plain(&e.event_source),
                plain(&e.event_name),
                plain(&e.aws_region),
                plain(&e.event_id)
            );
        }
        let _ = writeln!(out);
    }

    fn chat_description(&self, finding: &crate::finding::Finding, d: &mut String) {
        let _ = writeln!(
            d,
            "{} record(s) stamped after their object was written ({})",
            self.count,
            chat_code(&self.object_written_at)
        );
        if let Some(e) = self.events.last() {
            let _ = writeln!(
                d,
                "latest: {} {} from {}",
                chat_code(&e.event_time),
                chat_code(&e.event_name),
                chat_code(&e.source_ip_address)
            );
        }
        let _ = finding;
    }

    fn regions(&self) -> Vec<&str> {
        let mut regions: Vec<&str> = self.events.iter().map(|e| e.aws_region.as_str()).collect();
        regions.dedup();
        regions
    }
}
