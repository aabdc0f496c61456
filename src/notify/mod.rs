//! The `Notifier` port: where findings go.

use std::future::Future;

use crate::finding::Finding;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notifier {notifier}: {message}")]
    Backend {
        notifier: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("writing findings: {0}")]
    Io(#[from] std::io::Error),
}

pub trait Notifier {
    /// Delivers every finding, or fails; a retry may deliver some of them twice, with the
    /// same `finding_id`.
    fn publish(&self, findings: &[Finding])
        -> impl Future<Output = Result<(), NotifyError>> + Send;
}

pub mod claim;
pub mod stdout;
pub use stdout::{FindingFormat, WriterNotifier};
