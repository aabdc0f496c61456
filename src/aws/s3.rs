//! `S3ObjectSource`: CloudTrail log objects streamed out of S3.
//!
//! The body is never held whole: [`S3Object::into_reader`] bridges the SDK's async byte
//! stream into a blocking [`Read`] that the pipeline's decoder pulls from on a blocking
//! thread (`tokio::task::spawn_blocking`), one chunk at a time. Memory is then bounded by
//! the decoder's buffers, whatever the object's size.
//!
//! SSE-S3 and SSE-KMS objects need nothing here: GetObject decrypts them, given
//! `kms:Decrypt` on the key (the SAM template grants it for the key named by a parameter).

use std::io::{self, Read};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use tokio::io::AsyncBufRead;
use tokio_util::io::SyncIoBridge;

/// Error codes S3 (and the KMS behind it) answers when a retry later can succeed.
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "KMS.ThrottlingException",
];

#[derive(Debug, thiserror::Error)]
pub enum S3SourceError {
    /// The object is gone (deleted or expired since its event was sent): nothing to read,
    /// and no retry will bring it back.
    #[error("s3://{bucket}/{key} no longer exists")]
    NotFound { bucket: String, key: String },
    #[error("failed to read s3://{bucket}/{key}: {message}")]
    Get {
        bucket: String,
        key: String,
        /// The SDK error with its whole cause chain, which its own `Display` leaves out.
        message: String,
        transient: bool,
        #[source]
        source: Box<SdkError<GetObjectError>>,
    },
    /// The connection failed while the body was being streamed.
    #[error("failed to read s3://{bucket}/{key} after {bytes_read} bytes: {source}")]
    Body {
        bucket: String,
        key: String,
        bytes_read: u64,
        #[source]
        source: io::Error,
    },
}

impl S3SourceError {
    /// Worth retrying the object: throttling, 5xx, timeouts, a dropped connection.
    ///
    /// Everything else (access denied, a KMS key the function may not use, an archived
    /// object) needs a person to fix the configuration first.
    pub fn is_transient(&self) -> bool {
        match self {
            S3SourceError::NotFound { .. } => false,
            S3SourceError::Get { transient, .. } => *transient,
            S3SourceError::Body { .. } => true,
        }
    }
}

/// Reads CloudTrail objects from S3.
#[derive(Debug, Clone)]
pub struct S3ObjectSource {
    client: Client,
}

impl S3ObjectSource {
    pub fn new(client: Client) -> S3ObjectSource {
        S3ObjectSource { client }
    }

    /// Starts a GetObject; the body is streamed later by the returned object's reader.
    pub async fn open(&self, bucket: &str, key: &str) -> Result<S3Object, S3SourceError> {
        let output = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await;
        match output {
            Ok(output) => Ok(S3Object {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                content_length: output.content_length().and_then(|n| u64::try_from(n).ok()),
                last_modified_ms: output.last_modified().and_then(|t| t.to_millis().ok()),
                body: output.body,
            }),
            Err(err) => Err(classify_get_error(bucket, key, err)),
        }
    }
}

fn classify_get_error(bucket: &str, key: &str, err: SdkError<GetObjectError>) -> S3SourceError {
    let transient = match &err {
        SdkError::ServiceError(service) => {
            if service.err().is_no_such_key() {
                return S3SourceError::NotFound {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                };
            }
            let status = service.raw().status().as_u16();
            status >= 500
                || status == 429
                || service
                    .err()
                    .code()
                    .is_some_and(|c| TRANSIENT_CODES.contains(&c))
        }
        // Timeouts, connection failures and unreadable responses: the network, not the request.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        // A request the SDK could not even build will not build next time either.
        _ => false,
    };
    S3SourceError::Get {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message: DisplayErrorContext(&err).to_string(),
        transient,
        source: Box::new(err),
    }
}

/// An object whose body has not been read yet.
#[derive(Debug)]
pub struct S3Object {
    bucket: String,
    key: String,
    /// The stored (compressed) size, from the response headers.
    pub content_length: Option<u64>,
    /// When S3 stored the object, by S3's own clock: what event times are checked against.
    pub last_modified_ms: Option<i64>,
    body: ByteStream,
}

impl S3Object {
    /// The whole body in memory: for a backfill, which fetches several objects at once
    /// ahead of the one being judged, within a budget of bytes.
    pub async fn read_all(self) -> Result<bytes::Bytes, S3SourceError> {
        match self.body.collect().await {
            Ok(aggregated) => Ok(aggregated.into_bytes()),
            Err(err) => Err(S3SourceError::Body {
                bucket: self.bucket,
                key: self.key,
                bytes_read: 0,
                source: io::Error::other(err),
            }),
        }
    }

    /// A blocking reader over the body, for a blocking thread.
    ///
    /// Must be called inside the Tokio runtime (it keeps a handle to it), and the reader
    /// then used outside it, in `spawn_blocking`: each read blocks that thread on the next
    /// chunk of the async body.
    pub fn into_reader(self) -> S3BodyReader {
        S3BodyReader {
            bucket: self.bucket,
            key: self.key,
            inner: SyncIoBridge::new(Box::pin(self.body.into_async_read())),
            bytes_read: 0,
            failure: None,
        }
    }
}

/// The body as a [`Read`]. It remembers a failure of the connection, so the caller can
/// tell a network fault (retry the object) from a fault in the bytes (a malformed object,
/// which the decoder reports and a retry would only repeat).
pub struct S3BodyReader {
    bucket: String,
    key: String,
    inner: SyncIoBridge<std::pin::Pin<Box<dyn AsyncBufRead + Send>>>,
    bytes_read: u64,
    failure: Option<io::Error>,
}

impl S3BodyReader {
    /// Compressed bytes read from S3 so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The connection failure that ended the read, if one did.
    pub fn take_failure(&mut self) -> Option<S3SourceError> {
        self.failure.take().map(|source| S3SourceError::Body {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            bytes_read: self.bytes_read,
            source,
        })
    }
}

impl Read for S3BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.bytes_read += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                // The decoder sees the error too (and stops); keep a copy of its kind and
                // text, as io::Error is not Clone.
                self.failure = Some(io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
}

impl std::fmt::Debug for S3BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BodyReader")
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field("bytes_read", &self.bytes_read)
            .finish_non_exhaustive()
    }
}
