//! Bytes of a CloudTrail log object -> events.
//!
//! Pure and streaming: an object is read through once, never held whole, and each record
//! is deserialized on its own (borrowing its strings), so memory is bounded by the
//! largest record rather than by the object.
//!
//! [`read_object`] takes any reader and finds out what it holds: gzip or not (by magic
//! bytes), and a CloudTrail log file (`{"Records":[...]}`), JSON Lines or concatenated
//! records, a digest file, or nothing. A byte-level framer finds each record's extent and
//! only the fields of [`Event`] are read (in the same pass, for most records; by serde
//! for the rest); a record that does not fit is reported and skipped, while broken
//! framing ends the object with an [`ObjectError`].
//!
//! ```
//! use geotrail::cloudtrail::{read_object, ReadOptions};
//!
//! let log = br#"{"Records":[{"eventTime":"2023-07-10T11:40:12Z","eventName":"GetObject"}]}"#;
//! let mut names = Vec::new();
//! let summary = read_object(&log[..], &ReadOptions::default(), &mut |record| {
//!     if let Ok(event) = record {
//!         names.push(event.event_name.map(|n| n.into_owned()));
//!     }
//! })?;
//! assert_eq!(summary.records, 1);
//! assert_eq!(names, [Some("GetObject".to_string())]);
//! # Ok::<(), geotrail::cloudtrail::ObjectError>(())
//! ```

mod error;
mod event;
mod fields;
mod framing;
mod name;
mod reader;
mod time;

pub use error::{ObjectError, RecordError};
pub use event::{Event, SessionIssuer, UserIdentity};
pub use name::{name_time_ms, skip_by_name, written_at_from_name, ObjectSkip};
pub use reader::{read_object, ObjectKind, ObjectSummary, ReadOptions, DEFAULT_MAX_RECORD_BYTES};
pub use time::parse_event_time;
