use std::io::Write;
use std::sync::Mutex;

use super::{Notifier, NotifyError};
use crate::finding::Finding;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FindingFormat {
    /// Readable blocks, one per finding.
    #[default]
    Text,
    /// One JSON object per line, for `jq` and log shippers.
    Jsonl,
}

/// Writes findings to a stream (stdout for the CLI).
pub struct WriterNotifier<W> {
    out: Mutex<W>,
    format: FindingFormat,
}

impl<W: Write + Send> WriterNotifier<W> {
    pub fn new(out: W, format: FindingFormat) -> Self {
        WriterNotifier {
            out: Mutex::new(out),
            format,
        }
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
            match self.format {
                FindingFormat::Jsonl => writeln!(out, "{}", f.to_json())?,
                FindingFormat::Text => writeln!(out, "{}", f.to_text())?,
            }
        }
        out.flush()?;
        Ok(())
    }
}
