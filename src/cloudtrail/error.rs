//! What can go wrong reading an object: one record (the reader goes on) or the whole
//! object's framing (the reader stops).

use std::io;

/// One record that could not be read as an [`Event`](super::Event): wrong types, a
/// missing or unparsable `eventTime`, or invalid JSON inside otherwise balanced brackets.
/// The reader goes on with the next record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {index} at byte {offset}: {message}")]
pub struct RecordError {
    /// 0-based index of the record in the object, counting good and bad records.
    pub index: u64,
    /// Byte offset of the record's first byte in the decoded stream.
    pub offset: u64,
    pub message: String,
}

/// Why an object could not be read to its end. Records before the fault have already
/// been delivered. Offsets are in the decoded (gunzipped) stream unless they say
/// otherwise; the caller adds the object's name.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(
        "bad gzip data at compressed byte {compressed_offset} \
         (after {decoded_offset} decoded bytes): {source}"
    )]
    Gzip {
        /// Compressed bytes the decoder had consumed when it failed.
        compressed_offset: u64,
        /// Decoded bytes produced before the failure.
        decoded_offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("malformed JSON at byte {offset} after {records} records: {message}")]
    Malformed {
        offset: u64,
        /// Records delivered before the fault.
        records: u64,
        message: String,
    },
    #[error(
        "JSON ends at byte {offset} inside the value that starts at byte {value_start} \
         (truncated object?) after {records} records"
    )]
    Truncated {
        /// End of the input.
        offset: u64,
        /// Start of the value (record, wrapper or array) left open.
        value_start: u64,
        /// Records delivered before the fault.
        records: u64,
    },
    #[error("decoded size exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("read failed after {offset} input bytes: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_error_display_names_index_and_offset() {
        let err = RecordError {
            index: 3,
            offset: 1234,
            message: "missing field `eventTime`".into(),
        };
        assert_eq!(
            err.to_string(),
            "record 3 at byte 1234: missing field `eventTime`"
        );
    }
}
