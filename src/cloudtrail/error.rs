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

/// Characters of an input value an error message quotes; the rest is cut with `…`.
/// Messages go to logs and to the Lambda's response up to twenty per object: a
/// megabyte-long `eventTime` must not come along whole.
pub(crate) const MAX_QUOTED_CHARS: usize = 64;

/// `v` quoted as `{:?}` would, cut to [`MAX_QUOTED_CHARS`] characters.
pub(crate) fn quote(v: &str) -> String {
    // One character past the limit, so the cut shows.
    let end = v
        .char_indices()
        .nth(MAX_QUOTED_CHARS + 1)
        .map_or(v.len(), |(i, _)| i);
    shorten_quoted(&format!("{:?}", &v[..end]))
}

/// `message` with every `"..."` or `` `...` `` span longer than [`MAX_QUOTED_CHARS`]
/// characters cut, as serde's messages quote input (`invalid type: string "..."`). A
/// backslash escapes the next character inside double quotes, as `{:?}` writes them.
pub(crate) fn shorten_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        let mut kept = 0;
        let mut cut = false;
        let mut closed = false;
        while let Some(d) = chars.next() {
            if d == c {
                closed = true;
                break;
            }
            let escaped = (c == '"' && d == '\\').then(|| chars.next()).flatten();
            if kept < MAX_QUOTED_CHARS {
                out.push(d);
                out.extend(escaped);
                kept += 1;
            } else {
                cut = true;
            }
        }
        if cut {
            out.push('…');
        }
        if closed {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_input_is_cut_at_a_character_boundary() {
        let long = "é".repeat(100);
        let cases: &[(&str, String, String)] = &[
            ("short", quote("2023-07-10"), r#""2023-07-10""#.to_owned()),
            (
                "long, two-byte characters",
                quote(&long),
                format!("\"{}…\"", "é".repeat(64)),
            ),
            (
                "exactly the limit",
                quote(&"a".repeat(64)),
                format!("\"{}\"", "a".repeat(64)),
            ),
        ];
        for (case, got, want) in cases {
            assert_eq!(got, want, "case {case}");
        }
    }

    #[test]
    fn long_quoted_spans_in_messages_are_cut() {
        let long = "x".repeat(1_000_000);
        let cases: &[(&str, String, String)] = &[
            (
                "serde string",
                format!("invalid type: string {long:?}, expected struct UserIdentity"),
                format!(
                    "invalid type: string \"{}…\", expected struct UserIdentity",
                    "x".repeat(64)
                ),
            ),
            (
                "escapes kept whole",
                format!("value {:?} here", format!("{}\"{}", "a".repeat(63), long)),
                format!("value \"{}\\\"…\" here", "a".repeat(63)),
            ),
            (
                "backticks",
                format!("unknown variant `{long}`, expected `a`"),
                format!("unknown variant `{}…`, expected `a`", "x".repeat(64)),
            ),
            (
                "unclosed",
                format!("ends in \"{long}"),
                format!("ends in \"{}…", "x".repeat(64)),
            ),
            (
                "nothing to cut",
                "missing field `eventTime`".to_owned(),
                "missing field `eventTime`".to_owned(),
            ),
        ];
        for (case, message, want) in cases {
            assert_eq!(&shorten_quoted(message), want, "case {case}");
        }
    }

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
