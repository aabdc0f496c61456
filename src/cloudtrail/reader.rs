//! One object's bytes -> records: gzip sniffing, decompression (on a thread of its own
//! unless the caller says otherwise), and the framer.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Mutex;
use std::thread;

use flate2::bufread::MultiGzDecoder;

use super::error::{ObjectError, RecordError};
use super::event::Event;
use super::framing::{FrameStats, Framer, Source, CHUNK};

/// Filled chunks allowed in flight between the decoder thread and the framer: enough to
/// absorb jitter on either side, few enough to keep memory at about a megabyte.
const CHUNKS_IN_FLIGHT: usize = 3;

/// gzip objects that decode to at most this are decoded on the calling thread. Most log
/// objects are this small, and for them a thread costs more than it saves.
const DECODE_INLINE: usize = 64 * 1024;

/// Compressed bytes read from the input at a time.
const GZIP_INPUT_BUFFER: usize = 64 * 1024;

/// The default [`ReadOptions::max_record_bytes`]. CloudTrail records are a few KiB;
/// the largest (a policy document, a long request) stay far below CloudTrail's own
/// 256 KiB event size limit.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 1 << 20;

/// The smallest record limit honoured: below it the wrapper's own keys could not be read.
const MIN_MAX_RECORD_BYTES: u64 = 64;

/// How to read an object.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Stop with [`ObjectError::TooLarge`] once the decoded (gunzipped) stream passes
    /// this many bytes: a guard against gzip bombs and runaway inputs. `None`: no limit.
    pub max_decompressed_bytes: Option<u64>,
    /// Refuse a record longer than this many bytes with a [`RecordError`] and read on:
    /// it is skipped over without being held, so memory stays bounded by this limit
    /// however long the record. [`DEFAULT_MAX_RECORD_BYTES`] by default; `u64::MAX`
    /// for no limit; values under 64 count as 64.
    pub max_record_bytes: u64,
    /// Decode gzip on a thread of its own while the calling thread frames and
    /// deserializes (the default), so that one large object keeps two cores busy. A
    /// caller that already reads an object per core turns it off: the cores are busy
    /// anyway, and decoding straight into the framer's window on the same thread spares
    /// a copy of every decoded byte, a hand-over per chunk, and reading back from another
    /// core's cache what was just written (measured at organisation scale with two
    /// readers: about 6% less CPU for the whole scan).
    pub decode_on_own_thread: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_decompressed_bytes: None,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            decode_on_own_thread: true,
        }
    }
}

/// What an object turned out to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A CloudTrail log file: `{"Records":[...]}` (or a bare array of records).
    Records,
    /// One record per top-level object: JSON Lines or concatenated JSON, as exported by
    /// Athena, CloudTrail Lake or `jq -c`.
    JsonLines,
    /// A CloudTrail digest file: hashes of log files, no records.
    Digest,
    /// Nothing but whitespace.
    Empty,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Records => "records",
            ObjectKind::JsonLines => "json lines",
            ObjectKind::Digest => "digest",
            ObjectKind::Empty => "empty",
        })
    }
}

/// What reading an object found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub kind: ObjectKind,
    /// The input was gzip (by its magic bytes).
    pub compressed: bool,
    /// Records seen, good or bad.
    pub records: u64,
    /// Records delivered as a [`RecordError`].
    pub bad_records: u64,
    /// Bytes consumed from the input.
    pub bytes_read: u64,
    /// Bytes after gunzip (equal to `bytes_read` for plain input).
    pub bytes_decoded: u64,
    /// Records over [`ReadOptions::max_record_bytes`], refused unread (counted in
    /// `bad_records` too).
    pub oversized_records: u64,
    /// The largest the framing window grew: memory held for the longest record.
    pub peak_window_bytes: u64,
}

/// Reads one object, calling `on_record` for every record in order.
///
/// gzip (by magic bytes, any number of members) is decoded on a thread of its own while
/// this thread frames and deserializes, so a large object keeps two cores busy; or on
/// this thread, into the framer's window, when [`ReadOptions::decode_on_own_thread`] is
/// off. A record
/// that does not deserialize is passed as `Err` and reading goes on; a fault in the
/// framing, the gzip data or the input stops reading with an [`ObjectError`], after every
/// record before it was delivered. Never panics on any input.
pub fn read_object<R: Read + Send>(
    mut input: R,
    options: &ReadOptions,
    on_record: &mut dyn FnMut(Result<Event<'_>, RecordError>),
) -> Result<ObjectSummary, ObjectError> {
    let mut head = [0u8; 2];
    let mut n = 0;
    while n < head.len() {
        match input.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ObjectError::Io {
                    offset: n as u64,
                    source,
                })
            }
        }
    }
    let head = &head[..n];
    let input = head.chain(input);
    let limit = options.max_decompressed_bytes;
    let max_record = options.max_record_bytes.max(MIN_MAX_RECORD_BYTES);
    if head == [0x1f, 0x8b] {
        read_gzip(
            input,
            limit,
            max_record,
            options.decode_on_own_thread,
            on_record,
        )
    } else {
        let chunks = ChunkReader::new(
            PlainInput {
                inner: input,
                read: 0,
            },
            limit,
        );
        let mut framer = Framer::new(Vec::new(), 0, chunks, max_record, on_record);
        let stats = framer.run()?;
        let bytes_read = framer.into_source().input.input_bytes();
        Ok(summary(stats, false, bytes_read))
    }
}

fn read_gzip<R: Read + Send>(
    input: R,
    limit: Option<u64>,
    max_record: u64,
    own_thread: bool,
    on_record: &mut dyn FnMut(Result<Event<'_>, RecordError>),
) -> Result<ObjectSummary, ObjectError> {
    let gzip = GzipInput {
        decoder: MultiGzDecoder::new(CountingBufRead {
            inner: BufReader::with_capacity(GZIP_INPUT_BUFFER, input),
            consumed: 0,
            failure: None,
        }),
    };
    let mut chunks = ChunkReader::new(gzip, limit);
    if !own_thread {
        return read_gzip_inline(Vec::new(), 0, chunks, max_record, on_record);
    }
    let mut first = vec![0; DECODE_INLINE];
    let first_len = chunks.fill(&mut first)?;
    if chunks.finished() {
        return read_gzip_inline(first, first_len, chunks, max_record, on_record);
    }

    let (full_tx, full_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let (free_tx, free_rx) = mpsc::channel();
    // Parked where both this thread and the decoder can reach it, so that it is not lost
    // with the closure if no thread can be started.
    let parked = Mutex::new(Some(chunks));
    let parked = &parked;
    thread::scope(|scope| {
        let decoder = thread::Builder::new()
            .name("geotrail-gunzip".into())
            .spawn_scoped(scope, move || {
                unpark(parked).map(|chunks| decode_chunks(chunks, &full_tx, &free_rx))
            });
        let Ok(decoder) = decoder else {
            // No thread to be had: slower, but the object is still read.
            let chunks = unpark(parked).expect("a decoder that never started left it parked");
            return read_gzip_inline(first, first_len, chunks, max_record, on_record);
        };
        let framed = {
            let source = ChannelSource {
                full: full_rx,
                free: free_tx,
                current: None,
            };
            Framer::new(first, first_len, source, max_record, on_record).run()
            // The framer and its receiver drop here, so a decoder still running after a
            // framing error finds the channel closed and stops.
        };
        let chunks = decoder
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .expect("the decoder thread takes the parked decoder");
        let stats = framed?;
        Ok(summary(stats, true, chunks.input.input_bytes()))
    })
}

fn read_gzip_inline<D: Decoded>(
    first: Vec<u8>,
    first_len: usize,
    chunks: ChunkReader<D>,
    max_record: u64,
    on_record: &mut dyn FnMut(Result<Event<'_>, RecordError>),
) -> Result<ObjectSummary, ObjectError> {
    let mut framer = Framer::new(first, first_len, chunks, max_record, on_record);
    let stats = framer.run()?;
    let bytes_read = framer.into_source().input.input_bytes();
    Ok(summary(stats, true, bytes_read))
}

fn unpark<T>(parked: &Mutex<Option<T>>) -> Option<T> {
    parked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// Runs on the decoder thread: fills chunks until the end, an error or a closed channel.
fn decode_chunks<D: Decoded>(
    mut chunks: ChunkReader<D>,
    full: &SyncSender<Result<(Vec<u8>, usize), ObjectError>>,
    free: &Receiver<Vec<u8>>,
) -> ChunkReader<D> {
    loop {
        let mut chunk = free.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        let sent = match chunks.fill(&mut chunk) {
            Ok(0) => break,
            Ok(n) => full.send(Ok((chunk, n))),
            Err(e) => {
                let _ = full.send(Err(e));
                break;
            }
        };
        if sent.is_err() {
            break;
        }
    }
    chunks
}

fn summary(stats: FrameStats, compressed: bool, bytes_read: u64) -> ObjectSummary {
    let kind = if stats.saw_records_array {
        ObjectKind::Records
    } else if stats.saw_line {
        ObjectKind::JsonLines
    } else if stats.saw_digest {
        ObjectKind::Digest
    } else {
        ObjectKind::Empty
    };
    ObjectSummary {
        kind,
        compressed,
        records: stats.records,
        bad_records: stats.bad_records,
        bytes_read,
        bytes_decoded: stats.decoded_bytes,
        oversized_records: stats.oversized_records,
        peak_window_bytes: stats.peak_window_bytes,
    }
}

/// The framer's end of the decoder thread's channel.
struct ChannelSource {
    full: Receiver<Result<(Vec<u8>, usize), ObjectError>>,
    free: Sender<Vec<u8>>,
    /// A chunk not yet wholly copied out, with its length and how much was copied.
    current: Option<(Vec<u8>, usize, usize)>,
}

impl Source for ChannelSource {
    fn read_into(&mut self, dst: &mut [u8]) -> Result<usize, ObjectError> {
        let (chunk, len, copied) = match self.current.take() {
            Some(current) => current,
            None => match self.full.recv() {
                Ok(Ok((chunk, len))) => {
                    let len = len.min(chunk.len());
                    (chunk, len, 0)
                }
                Ok(Err(e)) => return Err(e),
                // The decoder drops its sender at the end of the input.
                Err(mpsc::RecvError) => return Ok(0),
            },
        };
        let n = (len - copied).min(dst.len());
        dst[..n].copy_from_slice(&chunk[copied..copied + n]);
        if copied + n < len {
            self.current = Some((chunk, len, copied + n));
        } else {
            // The decoder may have finished and gone: the buffer is then just freed.
            let _ = self.free.send(chunk);
        }
        Ok(n)
    }
}

/// A decoded byte stream that can say what its errors mean.
trait Decoded: Read {
    fn object_error(&mut self, err: io::Error, decoded: u64) -> ObjectError;
    fn input_bytes(&self) -> u64;
}

struct PlainInput<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for PlainInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: Read> Decoded for PlainInput<R> {
    fn object_error(&mut self, source: io::Error, _decoded: u64) -> ObjectError {
        ObjectError::Io {
            offset: self.read,
            source,
        }
    }

    fn input_bytes(&self) -> u64 {
        self.read
    }
}

struct GzipInput<R> {
    decoder: MultiGzDecoder<CountingBufRead<BufReader<R>>>,
}

impl<R: Read> Read for GzipInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.decoder.read(buf)
    }
}

impl<R: Read> Decoded for GzipInput<R> {
    fn object_error(&mut self, source: io::Error, decoded: u64) -> ObjectError {
        let input = self.decoder.get_mut();
        match input.failure.take() {
            Some(source) => ObjectError::Io {
                offset: input.consumed,
                source,
            },
            None => ObjectError::Gzip {
                compressed_offset: input.consumed,
                decoded_offset: decoded,
                source,
            },
        }
    }

    fn input_bytes(&self) -> u64 {
        self.decoder.get_ref().consumed
    }
}

/// Counts the compressed bytes the decoder consumes, for error offsets, and keeps an
/// error of the underlying input apart from a fault in the gzip data, which the decoder
/// would otherwise report alike.
struct CountingBufRead<R> {
    inner: R,
    consumed: u64,
    failure: Option<io::Error>,
}

impl<R: BufRead> Read for CountingBufRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for CountingBufRead<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let CountingBufRead { inner, failure, .. } = self;
        match inner.fill_buf() {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                *failure = Some(e);
                Err(io::Error::new(kind, "reading the input failed"))
            }
        }
    }

    fn consume(&mut self, amount: usize) {
        self.consumed += amount as u64;
        self.inner.consume(amount);
    }
}

/// Reads a decoded stream a chunk at a time, counting it against the size limit. An
/// error after some bytes of a chunk is held back until those bytes are framed, so the
/// records before a fault are still delivered.
struct ChunkReader<D> {
    input: D,
    decoded: u64,
    limit: Option<u64>,
    done: bool,
    pending: Option<ObjectError>,
}

impl<D: Decoded> ChunkReader<D> {
    fn new(input: D, limit: Option<u64>) -> Self {
        ChunkReader {
            input,
            decoded: 0,
            limit,
            done: false,
            pending: None,
        }
    }

    /// No more data will come, only perhaps an error.
    fn finished(&self) -> bool {
        self.done || self.pending.is_some()
    }

    /// Fills `dst` unless the stream ends first; returns how much it filled, 0 at the end.
    fn fill(&mut self, dst: &mut [u8]) -> Result<usize, ObjectError> {
        if let Some(err) = self.pending.take() {
            self.done = true;
            return Err(err);
        }
        if self.done {
            return Ok(0);
        }
        let mut n = 0;
        while n < dst.len() {
            match self.input.read(&mut dst[n..]) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let err = self.input.object_error(e, self.decoded + n as u64);
                    self.pending = Some(err);
                    break;
                }
            }
        }
        if let Some(limit) = self.limit {
            let room = limit.saturating_sub(self.decoded);
            if n as u64 > room {
                n = usize::try_from(room).unwrap_or(usize::MAX);
                self.pending = Some(ObjectError::TooLarge { limit });
            }
        }
        self.decoded += n as u64;
        if n == 0 {
            if let Some(err) = self.pending.take() {
                self.done = true;
                return Err(err);
            }
        }
        Ok(n)
    }
}

impl<D: Decoded> Source for ChunkReader<D> {
    fn read_into(&mut self, dst: &mut [u8]) -> Result<usize, ObjectError> {
        self.fill(dst)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;

    type Outcome = (
        Vec<Result<Event<'static>, RecordError>>,
        Result<ObjectSummary, ObjectError>,
    );

    fn read_with(input: &[u8], options: &ReadOptions) -> Outcome {
        let mut records = Vec::new();
        let result = read_object(input, options, &mut |r| {
            records.push(r.map(Event::into_owned));
        });
        (records, result)
    }

    fn read(input: &[u8]) -> Outcome {
        read_with(input, &ReadOptions::default())
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).expect("write to memory");
        encoder.finish().expect("write to memory")
    }

    fn record(i: usize) -> String {
        format!(
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","principalId":"AIDA{i}","arn":"arn:aws:iam::123456789012:user/u{i}","accountId":"123456789012","accessKeyId":"AKIA{i:016}","userName":"u{i}","sessionContext":{{"sessionIssuer":{{}},"attributes":{{"creationDate":"2023-07-10T11:00:00Z","mfaAuthenticated":"false"}}}}}},"eventTime":"2023-07-10T11:{:02}:{:02}Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.{}","userAgent":"[aws-cli/2.13.5 \"quoted\" caf\u00e9]","requestParameters":{{"bucketName":"b","key":"k/{i}","list":[1,2.5,true,null,{{"x":"]}}"}}]}},"responseElements":null,"eventID":"id-{i}","eventType":"AwsApiCall","recipientAccountId":"123456789012"}}"#,
            (i / 60) % 60,
            i % 60,
            i % 256
        )
    }

    fn log(records: usize) -> Vec<u8> {
        let body: Vec<String> = (0..records).map(record).collect();
        format!(r#"{{"Records":[{}]}}"#, body.join(",")).into_bytes()
    }

    fn events(outcome: &Outcome) -> Vec<Event<'static>> {
        outcome
            .0
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect()
    }

    fn ok_summary(case: &str, outcome: &Outcome) -> ObjectSummary {
        match &outcome.1 {
            Ok(summary) => summary.clone(),
            Err(e) => panic!("case {case}: {e}"),
        }
    }

    #[test]
    fn gzip_and_plain_give_identical_events() {
        // 2_000 records is several chunks, so this also runs the decoder thread.
        for count in [1, 3, 2_000] {
            let plain = log(count);
            let plain_outcome = read(&plain);
            let gzip_outcome = read(&gzip(&plain));
            let plain_summary = ok_summary("plain", &plain_outcome);
            let gzip_summary = ok_summary("gzip", &gzip_outcome);
            assert_eq!(plain_summary.records, count as u64, "{count} records");
            assert_eq!(plain_summary.bad_records, 0, "{count} records");
            assert!(!plain_summary.compressed && gzip_summary.compressed);
            assert_eq!(gzip_summary.bytes_decoded, plain.len() as u64);
            assert_eq!(plain_summary.bytes_read, plain.len() as u64);
            assert!(gzip_summary.bytes_read < plain.len() as u64);
            assert_eq!(
                events(&plain_outcome),
                events(&gzip_outcome),
                "{count} records"
            );
            assert_eq!(events(&plain_outcome).len(), count);
        }
    }

    #[test]
    fn reads_every_member_of_multi_member_gzip() {
        let first = log(2);
        let second = format!("{}\n{}\n", record(7), record(8));
        let mut input = gzip(&first);
        input.extend(gzip(second.as_bytes()));
        let outcome = read(&input);
        let summary = ok_summary("multi-member", &outcome);
        assert_eq!(summary.records, 4);
        assert_eq!(summary.bytes_read, input.len() as u64);
        let ids: Vec<_> = events(&outcome)
            .into_iter()
            .map(|e| e.event_id.expect("eventID").into_owned())
            .collect();
        assert_eq!(ids, ["id-0", "id-1", "id-7", "id-8"]);
    }

    #[test]
    fn reads_json_lines_and_concatenated_objects() {
        let cases: &[(&str, String)] = &[
            (
                "lines",
                format!("{}\n{}\n{}\n", record(0), record(1), record(2)),
            ),
            (
                "crlf lines",
                format!("{}\r\n{}\r\n{}", record(0), record(1), record(2)),
            ),
            (
                "concatenated",
                format!("{}{}{}", record(0), record(1), record(2)),
            ),
            (
                "pretty",
                format!("{}\n\n  {}\t{}\n\n", record(0), record(1), record(2)),
            ),
        ];
        for (case, input) in cases {
            let outcome = read(input.as_bytes());
            let summary = ok_summary(case, &outcome);
            assert_eq!(summary.kind, ObjectKind::JsonLines, "case {case}");
            assert_eq!(summary.records, 3, "case {case}");
            assert_eq!(events(&outcome).len(), 3, "case {case}");
            let first = &events(&outcome)[0];
            assert_eq!(first.event_id.as_deref(), Some("id-0"), "case {case}");
        }
    }

    #[test]
    fn skips_root_keys_around_records() {
        let records = format!("[{},{}]", record(0), record(1));
        let cases: &[(&str, String)] = &[
            ("records only", format!(r#"{{"Records":{records}}}"#)),
            (
                "keys before",
                format!(r#"{{"eventVersion":"1","nested":{{"Records":[1]}},"list":[{{}}],"n":1,"Records":{records}}}"#),
            ),
            (
                "keys after",
                format!(r#"{{"Records":{records},"after":{{"a":[1,"]"]}},"t":true}}"#),
            ),
            (
                "keys both sides, pretty",
                format!("{{\n  \"before\" : \"x\" ,\n  \"Records\" : {records} ,\n  \"after\" : null\n}}\n"),
            ),
        ];
        for (case, input) in cases {
            let outcome = read(input.as_bytes());
            let summary = ok_summary(case, &outcome);
            assert_eq!(summary.kind, ObjectKind::Records, "case {case}");
            assert_eq!(summary.records, 2, "case {case}");
            assert_eq!(summary.bad_records, 0, "case {case}");
        }
    }

    #[test]
    fn decodes_escaped_strings_in_records() {
        let outcome = read(&log(1));
        let event = &events(&outcome)[0];
        assert_eq!(
            event.user_agent.as_deref(),
            Some("[aws-cli/2.13.5 \"quoted\" café]")
        );
    }

    #[test]
    fn reports_a_bad_record_with_its_index_and_reads_on() {
        let bad = r#"{"eventTime":5,"eventName":"Bad"}"#;
        let input = format!(r#"{{"Records":[{},{bad},{}]}}"#, record(0), record(2));
        let offset = input.find(bad).expect("bad record in input") as u64;
        let outcome = read(input.as_bytes());
        let summary = ok_summary("bad middle", &outcome);
        assert_eq!((summary.records, summary.bad_records), (3, 1));
        let err = outcome.0[1].as_ref().expect_err("the middle record is bad");
        assert_eq!((err.index, err.offset), (1, offset));
        assert!(err.message.contains("RFC 3339"), "{err}");
        assert!(outcome.0[0].is_ok() && outcome.0[2].is_ok());
    }

    #[test]
    fn wrong_types_are_record_errors_not_object_errors() {
        let cases: &[(&str, &str)] = &[
            ("numeric eventTime", r#"{"eventTime":5}"#),
            (
                "string userIdentity",
                r#"{"eventTime":"2023-07-10T11:40:12Z","userIdentity":"x"}"#,
            ),
            ("missing eventTime", r#"{"eventName":"x"}"#),
            ("scalar record", "42"),
            ("string record", r#""x""#),
            ("null record", "null"),
            ("array record", "[1]"),
            ("invalid literal", "nul"),
            (
                "invalid JSON inside balanced brackets",
                r#"{"eventTime" "x"}"#,
            ),
        ];
        for (case, bad) in cases {
            let input = format!(r#"{{"Records":[{},{bad},{}]}}"#, record(0), record(2));
            let outcome = read(input.as_bytes());
            let summary = ok_summary(case, &outcome);
            assert_eq!(
                (summary.records, summary.bad_records),
                (3, 1),
                "case {case}"
            );
            assert_eq!(events(&outcome).len(), 2, "case {case}");
        }
    }

    #[test]
    fn null_user_identity_reads_as_none() {
        let input = r#"{"Records":[{"eventTime":"2023-07-10T11:40:12Z","userIdentity":null}]}"#;
        let outcome = read(input.as_bytes());
        assert_eq!(events(&outcome)[0].user_identity, None);
    }

    #[test]
    fn broken_framing_is_an_object_error_after_the_good_records() {
        let two = format!("{},{}", record(0), record(1));
        // (case, input, records delivered, what the error must say)
        let cases: &[(&str, String, usize, &str)] = &[
            (
                "cut inside a record",
                format!(r#"{{"Records":[{two},{{"eventTime":"2023"#),
                2,
                "JSON ends",
            ),
            (
                "cut after a comma",
                format!(r#"{{"Records":[{two},"#),
                2,
                "JSON ends",
            ),
            (
                "cut before the end",
                format!(r#"{{"Records":[{two}]"#),
                2,
                "JSON ends",
            ),
            (
                "cut inside an escape",
                format!(r#"{{"Records":[{two},{{"a":"\"#),
                2,
                "JSON ends",
            ),
            (
                "cut json line",
                format!("{}\n{}\n{{\"eventTime\":", record(0), record(1)),
                2,
                "JSON ends",
            ),
            (
                "garbage between records",
                format!(r#"{{"Records":[{two} x]}}"#),
                2,
                "expected ',' or ']'",
            ),
            (
                "garbage after the object",
                format!(r#"{{"Records":[{two}]}} garbage"#),
                2,
                "expected '{' or '['",
            ),
            (
                "comma between lines",
                format!("{},\n{}", record(0), record(1)),
                1,
                "expected '{' or '['",
            ),
            (
                "trailing comma",
                format!(r#"{{"Records":[{two},]}}"#),
                2,
                "expected a record",
            ),
            (
                "mismatched bracket",
                format!(r#"{{"Records":[{two},{{"a":[1}}]}}"#),
                2,
                "does not close",
            ),
            (
                "missing colon",
                r#"{"Records" []}"#.to_string(),
                0,
                "expected ':'",
            ),
            (
                "scalar at top level",
                "42".to_string(),
                0,
                "expected '{' or '['",
            ),
            ("binary garbage", "\u{1}\u{2}".to_string(), 0, "byte 0x01"),
        ];
        for (case, input, delivered, want) in cases {
            let outcome = read(input.as_bytes());
            let err = outcome.1.as_ref().expect_err(case).to_string();
            assert!(
                err.contains(want),
                "case {case}: {err:?} should mention {want:?}"
            );
            assert_eq!(events(&outcome).len(), *delivered, "case {case}: {err}");
        }
    }

    #[test]
    fn truncation_names_the_open_record_and_the_end() {
        let good = format!(r#"{{"Records":[{},"#, record(0));
        let input = format!(r#"{good}{{"eventTime":"#);
        let outcome = read(input.as_bytes());
        match outcome.1 {
            Err(ObjectError::Truncated {
                offset,
                value_start,
                records,
            }) => {
                assert_eq!(offset, input.len() as u64);
                assert_eq!(value_start, good.len() as u64);
                assert_eq!(records, 1);
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
    }

    /// A log of 3,000 records; it gzipped; the same with 64 bytes of its deflate data
    /// overwritten; and a short gzipped log followed by bytes that are not gzip.
    fn faulty_gzip() -> [Vec<u8>; 4] {
        let plain = log(3_000);
        let compressed = gzip(&plain);
        let mut corrupt = compressed.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle..middle + 64].fill(0xff);
        let mut trailing_garbage = gzip(&log(2));
        trailing_garbage.extend_from_slice(b"not gzip");
        [plain, compressed, corrupt, trailing_garbage]
    }

    #[test]
    fn cut_or_corrupt_gzip_is_an_object_error_after_the_good_records() {
        let [plain, compressed, corrupt, trailing_garbage] = faulty_gzip();
        let cases: &[(&str, &[u8], usize)] = &[
            ("cut in the middle", &compressed[..compressed.len() / 2], 1),
            (
                "cut in the trailer",
                &compressed[..compressed.len() - 4],
                2_999,
            ),
            ("cut in the header", &compressed[..5], 0),
            ("corrupt deflate data", &corrupt, 1),
            ("garbage after the last member", &trailing_garbage, 2),
        ];
        for (case, input, at_least) in cases {
            let outcome = read(input);
            let err = outcome.1.as_ref().expect_err(case);
            assert!(
                matches!(
                    err,
                    ObjectError::Gzip { .. } | ObjectError::Truncated { .. }
                ),
                "case {case}: {err:?}"
            );
            assert!(err.to_string().contains("byte"), "case {case}: {err}");
            let delivered = events(&outcome);
            assert!(
                delivered.len() >= *at_least,
                "case {case}: only {} records",
                delivered.len()
            );
            let whole = events(&read(&plain));
            assert_eq!(
                delivered[..],
                whole[..delivered.len()],
                "case {case}: records before the fault"
            );
        }
    }

    #[test]
    fn decoding_on_the_calling_thread_reads_the_same_as_on_its_own() {
        let [plain, compressed, corrupt, trailing_garbage] = faulty_gzip();
        let mut members = gzip(&log(2));
        members.extend(gzip(format!("{}\n", record(7)).as_bytes()));
        let small = gzip(&log(1));
        let cases: &[(&str, &[u8], Option<u64>)] = &[
            ("several chunks", &compressed, None),
            ("under one chunk", &small, None),
            ("several members", &members, None),
            (
                "cut in the middle",
                &compressed[..compressed.len() / 2],
                None,
            ),
            ("cut in the header", &compressed[..5], None),
            ("corrupt deflate data", &corrupt, None),
            ("garbage after the last member", &trailing_garbage, None),
            (
                "over the size limit",
                &compressed,
                Some(plain.len() as u64 / 3),
            ),
        ];
        for (case, input, limit) in cases {
            let [own, inline] = [true, false].map(|own_thread| {
                read_with(
                    input,
                    &ReadOptions {
                        max_decompressed_bytes: *limit,
                        decode_on_own_thread: own_thread,
                        ..ReadOptions::default()
                    },
                )
            });
            assert_eq!(events(&own), events(&inline), "case {case}: records");
            assert_eq!(
                own.0.iter().filter(|r| r.is_err()).count(),
                inline.0.iter().filter(|r| r.is_err()).count(),
                "case {case}: bad records"
            );
            match (&own.1, &inline.1) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(
                        (a.records, a.bytes_read, a.bytes_decoded, a.kind),
                        (b.records, b.bytes_read, b.bytes_decoded, b.kind),
                        "case {case}: summary"
                    );
                    assert!(b.compressed, "case {case}");
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string(), "case {case}: error");
                }
                (a, b) => panic!("case {case}: {a:?} against {b:?}"),
            }
        }
    }

    #[test]
    fn recognises_digest_and_empty_objects() {
        let digest = r#"{"awsAccountId":"123456789012","digestStartTime":"2023-07-10T11:00:00Z",
            "digestEndTime":"2023-07-10T12:00:00Z","digestS3Bucket":"b","logFiles":[{"s3Bucket":"b",
            "s3Object":"k","hashValue":"00","oldestEventTime":"2023-07-10T11:00:00Z"}]}"#;
        let cases: &[(&str, Vec<u8>, ObjectKind, bool)] = &[
            ("digest", digest.into(), ObjectKind::Digest, false),
            (
                "gzip digest",
                gzip(digest.as_bytes()),
                ObjectKind::Digest,
                true,
            ),
            ("zero bytes", Vec::new(), ObjectKind::Empty, false),
            (
                "whitespace",
                b" \n\t\r\n".to_vec(),
                ObjectKind::Empty,
                false,
            ),
            ("gzip of nothing", gzip(b""), ObjectKind::Empty, true),
            (
                "byte order mark",
                b"\xef\xbb\xbf\n".to_vec(),
                ObjectKind::Empty,
                false,
            ),
            (
                "no records",
                br#"{"Records":[]}"#.to_vec(),
                ObjectKind::Records,
                false,
            ),
            (
                "bare array",
                format!("[{}]", record(0)).into_bytes(),
                ObjectKind::Records,
                false,
            ),
        ];
        for (case, input, kind, compressed) in cases {
            let outcome = read(input);
            let summary = ok_summary(case, &outcome);
            assert_eq!(summary.kind, *kind, "case {case}");
            assert_eq!(summary.compressed, *compressed, "case {case}");
            assert_eq!(summary.bad_records, 0, "case {case}");
        }
    }

    #[test]
    fn deep_nesting_in_skipped_values_is_read_without_overflowing_the_stack() {
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let input = format!(
            r#"{{"before":{deep},"Records":[{},{{"eventTime":"2023-07-10T11:40:12Z","x":{deep}}},{}]}}"#,
            record(0),
            record(2)
        );
        let outcome = read(input.as_bytes());
        let summary = ok_summary("deep", &outcome);
        assert_eq!((summary.records, summary.bad_records), (3, 0));
    }

    #[test]
    fn byte_order_mark_before_records_is_skipped() {
        let mut input = b"\xef\xbb\xbf".to_vec();
        input.extend(log(2));
        let outcome = read(&input);
        assert_eq!(ok_summary("bom", &outcome).records, 2);
    }

    #[test]
    fn stops_at_the_decoded_size_limit() {
        let plain = log(2_000);
        let size = plain.len() as u64;
        for (case, input) in [("plain", plain.clone()), ("gzip", gzip(&plain))] {
            let exact = read_with(
                &input,
                &ReadOptions {
                    max_decompressed_bytes: Some(size),
                    ..ReadOptions::default()
                },
            );
            assert_eq!(
                ok_summary(case, &exact).records,
                2_000,
                "case {case}: exactly at the limit"
            );

            let limit = size / 2;
            let over = read_with(
                &input,
                &ReadOptions {
                    max_decompressed_bytes: Some(limit),
                    ..ReadOptions::default()
                },
            );
            match &over.1 {
                Err(ObjectError::TooLarge { limit: got }) => assert_eq!(*got, limit, "case {case}"),
                other => panic!("case {case}: expected TooLarge, got {other:?}"),
            }
            let delivered = events(&over).len();
            assert!(
                delivered > 500 && delivered < 1_500,
                "case {case}: {delivered} records before the limit"
            );
        }
    }

    #[test]
    fn a_record_over_the_limit_is_refused_and_the_others_read() {
        let long = "x".repeat(10_000);
        let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
        let digits = "1".repeat(10_000);
        // (case, the record over the limit of 4 KiB)
        let cases: &[(&str, String)] = &[
            (
                "long string",
                format!(r#"{{"eventTime":"2023-07-10T11:40:12Z","userAgent":"{long}"}}"#),
            ),
            (
                "deep nesting",
                format!(r#"{{"eventTime":"2023-07-10T11:40:12Z","x":{deep}}}"#),
            ),
            ("long scalar", digits.clone()),
            ("long bare string", format!(r#""{long}""#)),
        ];
        let options = ReadOptions {
            max_record_bytes: 4096,
            ..ReadOptions::default()
        };
        for (case, big) in cases {
            let wrapped = format!(r#"{{"Records":[{},{big},{}]}}"#, record(0), record(2));
            let lines = format!("{}\n{big}\n{}\n", record(0), record(2));
            for (layout, input) in [("records", wrapped), ("json lines", lines)] {
                if layout == "json lines" && !big.starts_with('{') {
                    continue;
                }
                let offset = input.find(big.as_str()).expect("big record in input") as u64;
                for (coding, bytes) in [
                    ("plain", input.clone().into_bytes()),
                    ("gzip", gzip(input.as_bytes())),
                ] {
                    let case = format!("{case}, {layout}, {coding}");
                    let outcome = read_with(&bytes, &options);
                    let summary = ok_summary(&case, &outcome);
                    assert_eq!(
                        (
                            summary.records,
                            summary.bad_records,
                            summary.oversized_records
                        ),
                        (3, 1, 1),
                        "case {case}"
                    );
                    let err = outcome.0[1].as_ref().expect_err(&case);
                    assert_eq!((err.index, err.offset), (1, offset), "case {case}");
                    assert_eq!(
                        err.message,
                        format!(
                            "record of {} bytes is over the limit of 4096 bytes; skipped unread",
                            big.len()
                        ),
                        "case {case}"
                    );
                    assert_eq!(events(&outcome).len(), 2, "case {case}");
                }
            }
        }
    }

    #[test]
    fn a_record_at_the_limit_is_read() {
        let input = log(1);
        let size = input.len() as u64 - br#"{"Records":[]}"#.len() as u64;
        for (limit, bad) in [(size, 0), (size - 1, 1)] {
            let outcome = read_with(
                &input,
                &ReadOptions {
                    max_record_bytes: limit,
                    ..ReadOptions::default()
                },
            );
            let summary = ok_summary("at the limit", &outcome);
            assert_eq!(summary.bad_records, bad, "limit {limit}, record {size}");
        }
    }

    #[test]
    fn keys_of_a_wrapper_longer_than_the_record_limit_still_find_the_records() {
        let input = format!(
            r#"{{"before":"{}","Records":[{}]}}"#,
            "x".repeat(10_000),
            record(0)
        );
        let outcome = read_with(
            input.as_bytes(),
            &ReadOptions {
                max_record_bytes: 4096,
                ..ReadOptions::default()
            },
        );
        let summary = ok_summary("long key value", &outcome);
        assert_eq!(summary.kind, ObjectKind::Records);
        assert_eq!((summary.records, summary.bad_records), (1, 0));
    }

    /// `unit` `times` times over, made as it is read: a gigabyte of input costs nothing.
    struct Repeated {
        unit: Vec<u8>,
        times: usize,
        at: usize,
    }

    impl Read for Repeated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.times == 0 {
                return Ok(0);
            }
            let n = (self.unit.len() - self.at).min(buf.len());
            buf[..n].copy_from_slice(&self.unit[self.at..self.at + n]);
            self.at += n;
            if self.at == self.unit.len() {
                self.at = 0;
                self.times -= 1;
            }
            Ok(n)
        }
    }

    /// A gzip object of `head`, then `count` MiB of `byte`, then `tail`, as one gzip
    /// member per MiB (about 1 KiB each): the bomb that decodes a thousandfold.
    fn gzip_bomb(head: &str, parts: &[(u8, usize)], tail: &str) -> impl Read + Send {
        let mut input: Box<dyn Read + Send> = Box::new(io::Cursor::new(gzip(head.as_bytes())));
        for &(byte, mib) in parts {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
            encoder
                .write_all(&vec![byte; 1 << 20])
                .expect("write to memory");
            let member = encoder.finish().expect("write to memory");
            input = Box::new(input.chain(Repeated {
                unit: member,
                times: mib,
                at: 0,
            }));
        }
        input.chain(io::Cursor::new(gzip(tail.as_bytes())))
    }

    #[test]
    fn a_gzip_bomb_of_one_900_mib_record_reads_in_bounded_memory() {
        let head = format!(
            r#"{{"Records":[{},{{"eventTime":"2023-07-10T11:40:12Z","userAgent":""#,
            record(0)
        );
        let tail = format!(r#""}},{}]}}"#, record(2));
        let cases: Vec<(&str, Vec<(u8, usize)>)> = vec![
            ("one long string", vec![(b'a', 900)]),
            ("deep nesting", vec![(b'[', 450), (b']', 450)]),
        ];
        for (case, parts) in cases {
            let (head, tail) = if case == "deep nesting" {
                (
                    format!(r#"{{"Records":[{},"#, record(0)),
                    format!(",{}]}}", record(2)),
                )
            } else {
                (head.clone(), tail.clone())
            };
            let mut delivered = 0;
            let summary = read_object(
                gzip_bomb(&head, &parts, &tail),
                &ReadOptions::default(),
                &mut |r| {
                    if r.is_ok() {
                        delivered += 1;
                    }
                },
            )
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
            assert!(summary.bytes_decoded > 900 << 20, "case {case}");
            assert!(summary.bytes_read < 2 << 20, "case {case}: {summary:?}");
            assert_eq!(
                (summary.records, summary.oversized_records, delivered),
                (3, 1, 2),
                "case {case}"
            );
            assert!(
                summary.peak_window_bytes < 2 * DEFAULT_MAX_RECORD_BYTES,
                "case {case}: the window grew to {} bytes",
                summary.peak_window_bytes
            );
        }
    }

    #[test]
    fn input_failure_is_an_io_error() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("connection reset"));
                }
                let n = self.0.min(buf.len());
                buf[..n].fill(b' ');
                self.0 -= n;
                Ok(n)
            }
        }
        let mut records = 0;
        let err = read_object(Failing(10), &ReadOptions::default(), &mut |_| records += 1)
            .expect_err("the input fails");
        assert!(matches!(err, ObjectError::Io { offset: 10, .. }), "{err:?}");
        assert!(err.to_string().contains("connection reset"), "{err}");

        // Behind gzip the same failure must not pass for corrupt data.
        let compressed = gzip(&log(3_000));
        let cut = &compressed[..compressed.len() / 2];
        let failing = cut.chain(Failing(0));
        let err = read_object(failing, &ReadOptions::default(), &mut |_| {})
            .expect_err("the input fails");
        assert!(matches!(err, ObjectError::Io { .. }), "{err:?}");
    }

    #[test]
    fn reads_one_byte_at_a_time() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let plain = log(5);
        for (case, input) in [("plain", plain.clone()), ("gzip", gzip(&plain))] {
            let mut count = 0;
            let summary = read_object(Trickle(&input), &ReadOptions::default(), &mut |r| {
                assert!(r.is_ok(), "case {case}: {r:?}");
                count += 1;
            })
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
            assert_eq!((count, summary.records), (5, 5), "case {case}");
        }
    }

    #[test]
    fn object_kind_displays_as_lowercase_words() {
        let words: Vec<String> = [
            ObjectKind::Records,
            ObjectKind::JsonLines,
            ObjectKind::Digest,
            ObjectKind::Empty,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(words, ["records", "json lines", "digest", "empty"]);
    }
}
