//! The AWS adapters of the ports: DynamoDB behind [`crate::state::StateStore`], SNS behind
//! [`crate::notify::Notifier`], S3 as the object source, and the Lambda entry point.
//!
//! Every adapter takes its SDK client from the caller (built once from `aws-config`
//! defaults in `main`), so tests point the same code at a local emulator.

pub mod backfill;
pub mod backoff;
pub mod claims;
pub mod dynamo;
pub mod lambda;
pub mod s3;
pub mod sns;

pub use claims::DynamoClaims;
pub use dynamo::DynamoStateStore;
pub use sns::SnsNotifier;
