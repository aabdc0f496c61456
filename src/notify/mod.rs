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

/// Every finding to two notifiers, side by side: one failing does not keep the other's
/// delivery back, and the error names what failed. Nest it for more; `None` delivers
/// nothing and never fails, for notifiers a deployment switches off.
#[derive(Debug, Clone)]
pub struct Fanout<A, B> {
    first: A,
    second: B,
}

impl<A, B> Fanout<A, B> {
    pub fn new(first: A, second: B) -> Fanout<A, B> {
        Fanout { first, second }
    }

    pub fn first(&self) -> &A {
        &self.first
    }

    pub fn second(&self) -> &B {
        &self.second
    }

    pub fn into_parts(self) -> (A, B) {
        (self.first, self.second)
    }
}

impl<A: Notifier + Sync, B: Notifier + Sync> Notifier for Fanout<A, B> {
    async fn publish(&self, findings: &[Finding]) -> Result<(), NotifyError> {
        let (first, second) =
            tokio::join!(self.first.publish(findings), self.second.publish(findings));
        match (first, second) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(err), Ok(())) | (Ok(()), Err(err)) => Err(err),
            (Err(first), Err(second)) => Err(NotifyError::Backend {
                notifier: "notifiers".to_owned(),
                message: format!("{first}; {second}"),
                source: Some(Box::new(first)),
            }),
        }
    }
}

impl<N: Notifier + Sync> Notifier for Option<N> {
    async fn publish(&self, findings: &[Finding]) -> Result<(), NotifyError> {
        match self {
            Some(notifier) => notifier.publish(findings).await,
            None => Ok(()),
        }
    }
}

pub mod claim;
pub mod stdout;
pub use stdout::{FindingFormat, WriterNotifier};
