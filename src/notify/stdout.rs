use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{Notifier, NotifyError};
use crate::finding::{Finding, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FindingFormat {
    /// Readable blocks, one per finding.
    #[default]
    Text,
    /// One JSON object per line, for `jq` and log shippers.
    Jsonl,
    /// One OCSF Detection Finding per line, for data lakes and SIEMs.
    Ocsf,
}

/// Writes findings to a stream (stdout for the CLI).
pub struct WriterNotifier<W> {
    out: Mutex<W>,
    format: FindingFormat,
    min_severity: Severity,
    hidden: AtomicU64,
}

impl<W: Write + Send> WriterNotifier<W> {
    pub fn new(out: W, format: FindingFormat) -> Self {
        WriterNotifier {
            out: Mutex::new(out),
            format,
            min_severity: Severity::Info,
            hidden: AtomicU64::new(0),
        }
    }

    /// Leaves out findings below `min`; they are still raised (and remembered), only
    /// counted here.
    pub fn with_min_severity(mut self, min: Severity) -> Self {
        self.min_severity = min;
        self
    }

    /// Findings left out for their severity.
    pub fn hidden(&self) -> u64 {
        self.hidden.load(Ordering::Relaxed)
    }

    pub fn into_inner(self) -> W {
        self.out
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<W: Write + Send> Notifier for WriterNotifier<W> {
    async fn publish(&self, findings: &[Finding]) -> Result<(), NotifyError> {
        // A panic elsewhere while holding the lock leaves the writer usable.
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for f in findings {
            if f.severity < self.min_severity {
                self.hidden.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match self.format {
                FindingFormat::Jsonl => writeln!(out, "{}", f.to_json())?,
                FindingFormat::Ocsf => writeln!(out, "{}", f.to_ocsf_json())?,
                FindingFormat::Text => writeln!(out, "{}", f.to_text())?,
            }
        }
        out.flush()?;
        Ok(())
    }
}
