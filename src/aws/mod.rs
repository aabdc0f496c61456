//! The AWS adapters of the ports: DynamoDB behind [`crate::state::StateStore`], SNS,
//! Security Hub and EventBridge behind [`crate::notify::Notifier`], S3 as the object
//! source, and the Lambda entry point.
//!
//! Every adapter takes its SDK client from the caller (built once from `aws-config`
//! defaults in `main`), so tests point the same code at a local emulator.

pub mod backfill;
pub mod backoff;
pub(crate) mod batch;
pub mod claims;
pub mod dynamo;
pub mod eventbridge;
pub mod lambda;
pub mod s3;
pub mod securityhub;
pub mod sns;

pub use claims::DynamoClaims;
pub use dynamo::DynamoStateStore;
pub use eventbridge::EventBridgeNotifier;
pub use securityhub::SecurityHubNotifier;
pub use sns::SnsNotifier;
