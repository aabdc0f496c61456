//! Finds each record's byte extent in a stream of JSON without parsing it into a tree.
//!
//! The framer keeps a window over the decoded stream holding only the value being
//! framed, so memory is bounded by the largest record. A record that lies whole in the
//! window is framed and read in one pass by [`super::fields`]; any other (split across
//! reads, or one that pass gives way on) is framed here, tracking strings, escapes and
//! bracket nesting with a byte-class table and skipping string contents with `memchr2`,
//! and its bytes are then read on their own. Framing does not validate JSON inside a
//! record (the reading does, per record) nor values it skips, only what it must.

use memchr::memchr2;

use super::error::{shorten_quoted, ObjectError, RecordError};
use super::event::Event;
use super::fields::RecordSpans;

/// The most bytes a [`Source`] is asked for at a time.
pub(crate) const CHUNK: usize = 256 * 1024;

/// The first read of a window. Most log objects are a few kilobytes: zeroing a whole
/// chunk for them would cost more than reading them.
const FIRST_READ: usize = 16 * 1024;

/// Where the decoded bytes come from.
pub(crate) trait Source {
    /// Fills a prefix of `dst` and returns its length; 0 means the end of the input.
    fn read_into(&mut self, dst: &mut [u8]) -> Result<usize, ObjectError>;
}

/// What the framer saw, for the object's summary.
#[derive(Debug, Default)]
pub(crate) struct FrameStats {
    pub records: u64,
    pub bad_records: u64,
    pub decoded_bytes: u64,
    /// A `{"Records":[...]}` wrapper or a bare top-level array of records.
    pub saw_records_array: bool,
    /// A top-level object that is itself a record.
    pub saw_line: bool,
    pub saw_digest: bool,
    /// Records longer than the record limit, refused unread (also in `bad_records`).
    pub oversized_records: u64,
    /// The most bytes the window ever held: what reading cost in memory, give or take
    /// the decoder's buffers.
    pub peak_window_bytes: u64,
}

/// A sliding window over the stream. `buf[..end]` holds stream bytes
/// `base..base + end`; `buf` past `end` is initialised scratch, kept so refills do not
/// zero memory again.
struct Window<S> {
    buf: Vec<u8>,
    end: usize,
    base: u64,
    source: S,
    eof: bool,
}

impl<S: Source> Window<S> {
    /// Reads more of the stream, first dropping bytes before `keep` (a stream offset)
    /// that no longer matter. Returns `false` at the end of the input.
    fn fill(&mut self, keep: u64) -> Result<bool, ObjectError> {
        if self.eof {
            return Ok(false);
        }
        let drop = usize::try_from(keep.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(self.end);
        if drop > 0 {
            self.buf.copy_within(drop..self.end, 0);
            self.end -= drop;
            self.base += drop as u64;
        }
        // Reads grow with the window, up to a chunk.
        let step = self.buf.len().clamp(FIRST_READ, CHUNK);
        if self.buf.len() < self.end + step {
            self.buf.resize(self.end + step, 0);
        }
        let n = self
            .source
            .read_into(&mut self.buf[self.end..self.end + step])?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.end += n.min(step);
        Ok(true)
    }

    fn capacity(&self) -> u64 {
        self.buf.len() as u64
    }

    fn stream_end(&self) -> u64 {
        self.base + self.end as u64
    }
}

const PLAIN: u8 = 0;
const QUOTE: u8 = 1;
const OPEN: u8 = 2;
const CLOSE: u8 = 3;

static CLASS: [u8; 256] = {
    let mut table = [PLAIN; 256];
    table[b'"' as usize] = QUOTE;
    table[b'{' as usize] = OPEN;
    table[b'[' as usize] = OPEN;
    table[b'}' as usize] = CLOSE;
    table[b']' as usize] = CLOSE;
    table
};

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Bytes that end a bare scalar such as `true` or `12.5`.
fn ends_scalar(b: u8) -> bool {
    is_ws(b) || matches!(b, b',' | b']' | b'}' | b':' | b'"' | b'[' | b'{')
}

/// Progress of a scan over the bytes in the window.
enum Scan {
    /// The value ends just before this index.
    Done(usize),
    /// The window ran out; resume at this index once it holds more.
    More(usize),
    /// A closing bracket at this index does not match the open one.
    Mismatch(usize),
}

/// From just after a string's opening quote: `Ok(index after the closing quote)`, or
/// `Err(index to resume at)` when the window ends first (at a trailing backslash, so the
/// escape is seen whole on resume).
fn skip_string_body(buf: &[u8], mut i: usize) -> Result<usize, usize> {
    loop {
        let Some(at) = find_quote_or_backslash(buf, i) else {
            return Err(buf.len());
        };
        if buf[at] == b'"' {
            return Ok(at + 1);
        }
        if at + 1 >= buf.len() {
            return Err(at);
        }
        i = at + 2;
    }
}

/// The first `"` or `\` at or after `i`.
#[inline]
fn find_quote_or_backslash(buf: &[u8], mut i: usize) -> Option<usize> {
    // Most strings in a record are keys and short values, for which memchr2's setup
    // costs more than the search: look at the first few words eight bytes at a time.
    for _ in 0..4 {
        let Some(word) = buf.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) else {
            break;
        };
        let word = u64::from_le_bytes(word);
        let found = zero_bytes(word ^ QUOTES) | zero_bytes(word ^ BACKSLASHES);
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    memchr2(b'"', b'\\', buf.get(i..)?).map(|k| i + k)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const QUOTES: u64 = ONES * b'"' as u64;
const BACKSLASHES: u64 = ONES * b'\\' as u64;

/// The high bit of each zero byte of `x`. Bits above the lowest are not exact (a borrow
/// can mark a 0x01 byte after a zero byte), but only the lowest is used.
#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & (ONES << 7)
}

/// Brackets open around the scan position. Only the innermost [`MAX_TRACKED_DEPTH`]
/// levels' kinds are kept (to catch `[}`); deeper ones are only counted, so that a value
/// of a billion `[` costs eight bytes, not a gigabyte. serde refuses such records anyway.
#[derive(Debug, Default)]
struct Nesting {
    open: Vec<u8>,
    untracked: u64,
}

/// Levels of nesting whose bracket kinds are checked.
const MAX_TRACKED_DEPTH: usize = 4096;

impl Nesting {
    fn clear(&mut self) {
        self.open.clear();
        self.untracked = 0;
    }

    fn push(&mut self, b: u8) {
        if self.untracked > 0 || self.open.len() >= MAX_TRACKED_DEPTH {
            self.untracked += 1;
        } else {
            self.open.push(b);
        }
    }

    /// Closes a level with `close`; `false` if it does not match the open bracket.
    fn pop(&mut self, close: u8) -> bool {
        if self.untracked > 0 {
            self.untracked -= 1;
            return true;
        }
        let open = if close == b'}' { b'{' } else { b'[' };
        self.open.pop() == Some(open)
    }

    fn is_empty(&self) -> bool {
        self.untracked == 0 && self.open.is_empty()
    }
}

/// Scans an object or array from `i`, which is its opening bracket or, on resume, where
/// the last scan stopped with `stack` and `in_string` as it left them.
fn scan_nested(buf: &[u8], mut i: usize, stack: &mut Nesting, in_string: &mut bool) -> Scan {
    if *in_string {
        match skip_string_body(buf, i) {
            Ok(next) => {
                i = next;
                *in_string = false;
            }
            Err(resume) => return Scan::More(resume),
        }
    }
    while let Some(&b) = buf.get(i) {
        match CLASS[usize::from(b)] {
            PLAIN => i += 1,
            QUOTE => match skip_string_body(buf, i + 1) {
                Ok(next) => i = next,
                Err(resume) => {
                    *in_string = true;
                    return Scan::More(resume);
                }
            },
            OPEN => {
                stack.push(b);
                i += 1;
            }
            _ => {
                if !stack.pop(b) {
                    return Scan::Mismatch(i);
                }
                i += 1;
                if stack.is_empty() {
                    return Scan::Done(i);
                }
            }
        }
    }
    Scan::More(i)
}

/// A printable description of a byte for error messages.
fn describe(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        format!("'{}'", char::from(b))
    } else {
        format!("byte 0x{b:02x}")
    }
}

pub(crate) struct Framer<'f, S> {
    win: Window<S>,
    /// Stream offset of the next byte to look at.
    pos: u64,
    stack: Nesting,
    /// Longest record delivered; longer ones are refused without being held whole.
    max_record: u64,
    on_record: &'f mut dyn FnMut(Result<Event<'_>, RecordError>),
    stats: FrameStats,
}

impl<'f, S: Source> Framer<'f, S> {
    /// `first` holds the stream's first `first_len` bytes already read (they may be none).
    /// Records longer than `max_record` bytes are refused as [`RecordError`]s.
    pub(crate) fn new(
        first: Vec<u8>,
        first_len: usize,
        source: S,
        max_record: u64,
        on_record: &'f mut dyn FnMut(Result<Event<'_>, RecordError>),
    ) -> Self {
        let end = first_len.min(first.len());
        Framer {
            win: Window {
                buf: first,
                end,
                base: 0,
                source,
                eof: false,
            },
            pos: 0,
            stack: Nesting::default(),
            max_record,
            on_record,
            stats: FrameStats::default(),
        }
    }

    pub(crate) fn into_source(self) -> S {
        self.win.source
    }

    /// Frames the whole stream, delivering every record.
    pub(crate) fn run(&mut self) -> Result<FrameStats, ObjectError> {
        self.skip_bom()?;
        loop {
            match self.skip_ws(self.pos)? {
                None => break,
                Some(b'{') => self.top_object()?,
                Some(b'[') => {
                    self.stats.saw_records_array = true;
                    let start = self.pos;
                    self.pos += 1;
                    self.records_array(start)?;
                }
                Some(b) => {
                    return Err(self.malformed(format!(
                        "expected '{{' or '[' to start a value, found {}",
                        describe(b)
                    )))
                }
            }
        }
        self.stats.decoded_bytes = self.win.stream_end();
        self.note_window();
        Ok(std::mem::take(&mut self.stats))
    }

    /// Reads more of the stream, keeping bytes from `keep` on, unless that would hold more
    /// than a record may be long: then only from the scan position on. The value that
    /// started at `keep` is then too long to deliver, and `keep < self.win.base` says so.
    fn fill(&mut self, keep: u64) -> Result<bool, ObjectError> {
        let keep = if self.pos.saturating_sub(keep) > self.max_record {
            self.pos.max(keep)
        } else {
            keep
        };
        self.note_window();
        self.win.fill(keep)
    }

    fn note_window(&mut self) {
        self.stats.peak_window_bytes = self.stats.peak_window_bytes.max(self.win.capacity());
    }

    /// Bytes of the value that starts at `start` have been dropped from the window.
    fn dropped(&self, start: u64) -> bool {
        start < self.win.base
    }

    fn idx(&self, pos: u64) -> usize {
        usize::try_from(pos - self.win.base).unwrap_or(usize::MAX)
    }

    /// Editors on Windows like to start files with a UTF-8 byte order mark.
    fn skip_bom(&mut self) -> Result<(), ObjectError> {
        while self.win.end < 3 && self.win.fill(0)? {}
        if self.win.buf[..self.win.end].starts_with(b"\xef\xbb\xbf") {
            self.pos = 3;
        }
        Ok(())
    }

    /// Moves past whitespace and returns the next byte without consuming it, or `None`
    /// at the end of the input. Keeps stream bytes from `keep` on.
    fn skip_ws(&mut self, keep: u64) -> Result<Option<u8>, ObjectError> {
        loop {
            let mut i = self.idx(self.pos);
            let buf = &self.win.buf[..self.win.end];
            while let Some(&b) = buf.get(i) {
                if !is_ws(b) {
                    self.pos = self.win.base + i as u64;
                    return Ok(Some(b));
                }
                i += 1;
            }
            self.pos = self.win.base + i as u64;
            if !self.fill(keep)? {
                return Ok(None);
            }
        }
    }

    /// Like [`skip_ws`](Self::skip_ws), but the end of the input is an error: the value
    /// starting at `open` is unfinished.
    fn next_byte(&mut self, keep: u64, open: u64) -> Result<u8, ObjectError> {
        match self.skip_ws(keep)? {
            Some(b) => Ok(b),
            None => Err(self.truncated(open)),
        }
    }

    /// Scans the value starting at `self.pos` (not whitespace) and leaves `pos` after it.
    fn scan_value(&mut self, keep: u64) -> Result<(), ObjectError> {
        let start = self.pos;
        let first = self.win.buf[self.idx(start)];
        match first {
            b'{' | b'[' => self.scan_container(keep),
            b'"' => {
                self.pos += 1;
                self.scan_string_body(keep, start)
            }
            b if ends_scalar(b) => {
                Err(self.malformed(format!("expected a value, found {}", describe(b))))
            }
            _ => self.scan_scalar(keep),
        }
    }

    fn scan_container(&mut self, keep: u64) -> Result<(), ObjectError> {
        let start = self.pos;
        self.stack.clear();
        let mut in_string = false;
        loop {
            let i = self.idx(self.pos);
            match scan_nested(
                &self.win.buf[..self.win.end],
                i,
                &mut self.stack,
                &mut in_string,
            ) {
                Scan::Done(end) => {
                    self.pos = self.win.base + end as u64;
                    return Ok(());
                }
                Scan::More(resume) => {
                    self.pos = self.win.base + resume as u64;
                    if !self.fill(keep)? {
                        return Err(self.truncated(start));
                    }
                }
                Scan::Mismatch(at) => {
                    self.pos = self.win.base + at as u64;
                    let b = self.win.buf[at];
                    return Err(
                        self.malformed(format!("{} does not close the open bracket", describe(b)))
                    );
                }
            }
        }
    }

    /// From just after an opening quote; `open` is the quote's offset.
    fn scan_string_body(&mut self, keep: u64, open: u64) -> Result<(), ObjectError> {
        loop {
            let i = self.idx(self.pos);
            match skip_string_body(&self.win.buf[..self.win.end], i) {
                Ok(end) => {
                    self.pos = self.win.base + end as u64;
                    return Ok(());
                }
                Err(resume) => {
                    self.pos = self.win.base + resume as u64;
                    if !self.fill(keep)? {
                        return Err(self.truncated(open));
                    }
                }
            }
        }
    }

    /// A number or literal; serde judges whether it is valid. At the end of the input
    /// the scalar simply ends: whoever expected more reports the truncation.
    fn scan_scalar(&mut self, keep: u64) -> Result<(), ObjectError> {
        loop {
            let mut i = self.idx(self.pos);
            let buf = &self.win.buf[..self.win.end];
            while let Some(&b) = buf.get(i) {
                if ends_scalar(b) {
                    self.pos = self.win.base + i as u64;
                    return Ok(());
                }
                i += 1;
            }
            self.pos = self.win.base + i as u64;
            if !self.fill(keep)? {
                return Ok(());
            }
        }
    }

    /// A top-level object: the `{"Records":[...]}` wrapper (whose elements are streamed
    /// as soon as the key is seen), a digest, or a record of its own (JSON Lines), which
    /// is only known at its end, so it is kept whole until then.
    fn top_object(&mut self) -> Result<(), ObjectError> {
        let start = self.pos;
        let mut keep = start;
        let mut wrapper = false;
        // Keys before "Records" are kept with the object until it is known to be a record
        // of its own; past the record limit, only the key being read is kept.
        let mut digest = false;
        self.pos += 1;
        let mut b = self.next_byte(keep, start)?;
        if b != b'}' {
            loop {
                if b != b'"' {
                    return Err(self.malformed(format!("expected a key, found {}", describe(b))));
                }
                let key_start = self.pos;
                if self.dropped(start) {
                    keep = key_start;
                }
                self.pos += 1;
                self.scan_string_body(keep, key_start)?;
                // A key longer than a record may be is none of the ones looked for.
                let key: &[u8] = if self.dropped(key_start) {
                    b""
                } else {
                    &self.win.buf[self.idx(key_start) + 1..self.idx(self.pos) - 1]
                };
                // `Events` is what `aws cloudtrail lookup-events` prints: the same stream
                // of records, each wrapping the event as a `CloudTrailEvent` string.
                let is_records = key == b"Records" || key == b"Events";
                digest |= key == b"digestStartTime" || key == b"logFiles";

                let colon = self.next_byte(keep, start)?;
                if colon != b':' {
                    return Err(self.malformed(format!(
                        "expected ':' after a key, found {}",
                        describe(colon)
                    )));
                }
                self.pos += 1;
                let value = self.next_byte(keep, start)?;
                if is_records && value == b'[' {
                    wrapper = true;
                    self.stats.saw_records_array = true;
                    let array = self.pos;
                    self.pos += 1;
                    self.records_array(array)?;
                } else {
                    self.scan_value(keep)?;
                }
                if wrapper {
                    // Keys after "Records" are skipped: nothing of them needs keeping.
                    keep = self.pos;
                }

                match self.next_byte(keep, start)? {
                    b',' => {
                        self.pos += 1;
                        b = self.next_byte(keep, start)?;
                    }
                    b'}' => break,
                    other => {
                        return Err(self.malformed(format!(
                            "expected ',' or '}}' after a value, found {}",
                            describe(other)
                        )))
                    }
                }
            }
        }
        self.pos += 1;
        if wrapper {
            return Ok(());
        }
        if digest {
            self.stats.saw_digest = true;
            return Ok(());
        }
        self.stats.saw_line = true;
        self.deliver(start, self.pos);
        Ok(())
    }

    /// The elements of an array of records, from just after its `[` at `open`.
    fn records_array(&mut self, open: u64) -> Result<(), ObjectError> {
        if self.next_byte(self.pos, open)? == b']' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let record = self.pos;
            if !self.deliver_whole(record) {
                self.scan_value(record)?;
                self.deliver(record, self.pos);
            }
            match self.next_byte(self.pos, open)? {
                b',' => {
                    self.pos += 1;
                    let next = self.next_byte(self.pos, open)?;
                    if next == b']' {
                        return Err(self.malformed("expected a record after ',', found ']'".into()));
                    }
                }
                b']' => {
                    self.pos += 1;
                    return Ok(());
                }
                other => {
                    return Err(self.malformed(format!(
                        "expected ',' or ']' after a record, found {}",
                        describe(other)
                    )))
                }
            }
        }
    }

    /// Finds the end of the record at `start` and reads it in one pass, when it lies
    /// whole in the window and [`super::fields`] can read it: most records. Otherwise
    /// `false`, having changed nothing, and the record is framed and delivered as before.
    fn deliver_whole(&mut self, start: u64) -> bool {
        let from = self.idx(start);
        let window = &self.win.buf[from..self.win.end];
        if window.first() != Some(&b'{') {
            return false;
        }
        let Some(spans) = RecordSpans::scan(window) else {
            return false;
        };
        let len = spans.len();
        if len as u64 > self.max_record {
            return false;
        }
        let Some(event) = std::str::from_utf8(&window[..len])
            .ok()
            .and_then(|text| spans.event(text))
        else {
            return false;
        };
        self.stats.records += 1;
        self.pos = start + len as u64;
        (self.on_record)(Ok(event));
        true
    }

    fn deliver(&mut self, start: u64, end: u64) {
        let index = self.stats.records;
        self.stats.records += 1;
        if self.dropped(start) || end - start > self.max_record {
            self.stats.bad_records += 1;
            self.stats.oversized_records += 1;
            (self.on_record)(Err(RecordError {
                index,
                offset: start,
                message: format!(
                    "record of {} bytes is over the limit of {} bytes; skipped unread",
                    end - start,
                    self.max_record
                ),
            }));
            return;
        }
        let bytes = &self.win.buf[self.idx(start)..self.idx(end)];
        match Event::from_json(bytes) {
            Ok(event) => (self.on_record)(Ok(event)),
            Err(err) => {
                self.stats.bad_records += 1;
                let message = record_message(&err, bytes, start);
                (self.on_record)(Err(RecordError {
                    index,
                    offset: start,
                    message,
                }));
            }
        }
    }

    fn malformed(&self, message: String) -> ObjectError {
        ObjectError::Malformed {
            offset: self.pos,
            records: self.stats.records,
            message,
        }
    }

    fn truncated(&self, value_start: u64) -> ObjectError {
        ObjectError::Truncated {
            offset: self.win.stream_end(),
            value_start,
            records: self.stats.records,
        }
    }
}

/// serde_json's message with its "at line L column C" (relative to the record) turned
/// into a stream offset, which is what a reader of the error can go and look at.
///
/// Input values serde quotes in its message are cut short (see [`shorten_quoted`]).
fn record_message(err: &serde_json::Error, bytes: &[u8], start: u64) -> String {
    let mut message = shorten_quoted(&err.to_string());
    let (line, column) = (err.line(), err.column());
    if line == 0 {
        return message;
    }
    let suffix = format!(" at line {line} column {column}");
    if message.ends_with(&suffix) {
        message.truncate(message.len() - suffix.len());
    }
    let line_start = if line == 1 {
        0
    } else {
        memchr::memchr_iter(b'\n', bytes)
            .nth(line - 2)
            .map_or(bytes.len(), |nl| nl + 1)
    };
    let near = start + (line_start + column.saturating_sub(1)) as u64;
    format!("{message} (near byte {near})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_skip_resumes_at_a_trailing_backslash() {
        let cases: &[(&str, &[u8], Result<usize, usize>)] = &[
            ("closed", br#"abc"x"#, Ok(4)),
            ("escaped quote", br#"a\"b"x"#, Ok(5)),
            ("escaped backslash before quote", br#"a\\"x"#, Ok(4)),
            ("open", b"abc", Err(3)),
            ("trailing backslash", br"ab\", Err(2)),
            ("escape ends the window", br#"ab\""#, Err(4)),
            ("empty", b"", Err(0)),
        ];
        for (case, buf, want) in cases {
            assert_eq!(skip_string_body(buf, 0), *want, "case {case}");
        }
    }

    #[test]
    fn quote_search_agrees_with_a_naive_search() {
        // Neighbours of '"' (0x22) and '\\' (0x5c), zero and 0x01 bytes are where
        // word-at-a-time tricks go wrong.
        let fillers = [b'a', 0x00, 0x01, 0x21, 0x23, 0x5b, 0x5d, 0xa2, 0xdc, 0xff];
        for len in 0..48 {
            for &filler in &fillers {
                let mut buf = vec![filler; len];
                let naive = |buf: &[u8], from: usize| {
                    (from..buf.len()).find(|&k| buf[k] == b'"' || buf[k] == b'\\')
                };
                for from in 0..=len {
                    assert_eq!(
                        find_quote_or_backslash(&buf, from),
                        naive(&buf, from),
                        "len {len}"
                    );
                }
                for at in 0..len {
                    for needle in [b'"', b'\\'] {
                        buf[at] = needle;
                        if at + 1 < len {
                            buf[at + 1] = 0x01;
                        }
                        for from in 0..=len {
                            assert_eq!(
                                find_quote_or_backslash(&buf, from),
                                naive(&buf, from),
                                "len {len}, filler {filler:#x}, needle at {at}, from {from}"
                            );
                        }
                        buf.fill(filler);
                    }
                }
            }
        }
    }

    #[test]
    fn nested_scan_tracks_strings_and_brackets() {
        let cases: &[(&str, &[u8], Option<usize>)] = &[
            ("flat object", br#"{"a":1}rest"#, Some(7)),
            ("brackets in strings", br#"{"a":"}]{["}x"#, Some(12)),
            ("escaped quote in string", br#"{"a":"\"}"}x"#, Some(11)),
            ("nested", br#"[{"a":[1,{}]}]x"#, Some(14)),
            ("open", br#"{"a":[1"#, None),
        ];
        for (case, buf, want) in cases {
            let mut stack = Nesting::default();
            let mut in_string = false;
            let got = match scan_nested(buf, 0, &mut stack, &mut in_string) {
                Scan::Done(end) => Some(end),
                Scan::More(_) => None,
                Scan::Mismatch(at) => panic!("case {case}: mismatch at {at}"),
            };
            assert_eq!(got, *want, "case {case}");
        }
    }

    #[test]
    fn nested_scan_reports_a_mismatched_bracket() {
        let mut stack = Nesting::default();
        let mut in_string = false;
        let got = scan_nested(br#"{"a":[1}"#, 0, &mut stack, &mut in_string);
        assert!(
            matches!(got, Scan::Mismatch(7)),
            "'}}' closing '[' is a mismatch"
        );
    }

    #[test]
    fn nested_scan_resumes_across_any_split() {
        let doc: &[u8] = br#"{"a":"x\"y\\","b":[1,{"c":"}"}],"d":"\u00e9"}tail"#;
        let want = doc.len() - 4;
        for split in 0..doc.len() {
            let mut stack = Nesting::default();
            let mut in_string = false;
            let first = &doc[..split];
            let resume = match scan_nested(first, 0, &mut stack, &mut in_string) {
                Scan::More(resume) => resume,
                Scan::Done(end) => {
                    assert_eq!(end, want, "split {split}");
                    continue;
                }
                Scan::Mismatch(at) => panic!("split {split}: mismatch at {at}"),
            };
            match scan_nested(doc, resume, &mut stack, &mut in_string) {
                Scan::Done(end) => assert_eq!(end, want, "split {split}"),
                _ => panic!("split {split}: did not finish"),
            }
        }
    }

    /// Hands out the input `step` bytes at a time, so every state of the framer meets a
    /// window boundary.
    struct Drip<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Source for Drip<'_> {
        fn read_into(&mut self, dst: &mut [u8]) -> Result<usize, ObjectError> {
            let n = self.step.min(self.data.len()).min(dst.len());
            dst[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Everything the framer delivered and returned, as text, for comparing runs.
    fn frame(data: &[u8], step: usize) -> Vec<String> {
        let mut seen = Vec::new();
        let mut on_record = |r: Result<Event<'_>, RecordError>| seen.push(format!("{r:?}"));
        let mut framer = Framer::new(Vec::new(), 0, Drip { data, step }, u64::MAX, &mut on_record);
        let result = framer.run().map(|stats| {
            format!(
                "records={} bad={} bytes={} array={} line={} digest={}",
                stats.records,
                stats.bad_records,
                stats.decoded_bytes,
                stats.saw_records_array,
                stats.saw_line,
                stats.saw_digest
            )
        });
        let result = format!("{result:?}");
        drop(framer);
        seen.push(result);
        seen
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: crate::proptest_cases(256),
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Records read in the same pass as they are framed (whole in the window) come
        /// out as those framed first and read on their own (split across reads).
        #[test]
        fn records_read_whole_or_split_come_out_the_same(
            seed in proptest::prelude::any::<u64>(),
            step in 1usize..64,
        ) {
            let mut g = crate::cloudtrail::fields::generate::Gen::new(seed);
            let records: Vec<String> = (0..1 + g.below(8))
                .map(|_| {
                    let clean = g.below(2) == 0;
                    g.record(clean)
                })
                .collect();
            let doc = format!(r#"{{"Records":[{}]}}"#, records.join(","));
            let whole = frame(doc.as_bytes(), usize::MAX);
            proptest::prop_assert_eq!(frame(doc.as_bytes(), step), whole, "{}", doc);
        }
    }

    #[test]
    fn framing_does_not_depend_on_where_reads_split_the_input() {
        let event = r#"{"eventTime":"2023-07-10T11:40:12Z","userAgent":"a\"b\\c\u00e9","x":[1,{"y":"]}"}],"n":-1.5e3,"t":true}"#;
        let cases: &[(&str, String)] = &[
            (
                "wrapper with keys around",
                format!(
                    r#"{{"k":"v\"","o":{{"Records":1}},"n":12,"Records":[ {event} , {event},null,7,"s" ],"after":[true,{{}}] }}"#
                ),
            ),
            ("json lines", format!("{event}\n{event}\r\n  {event}")),
            ("bom and bare array", format!("\u{feff}[{event},{event}]")),
            (
                "digest then lines",
                format!(r#"{{"digestStartTime":"x","logFiles":[]}}{event}"#),
            ),
            (
                "bad record",
                format!(r#"{{"Records":[{event},{{"eventTime":5}},{event}]}}"#),
            ),
            ("truncated", format!(r#"{{"Records":[{event},{{"a":"b\"#)),
            ("truncated key", r#"{"Reco"#.to_string()),
            (
                "mismatched",
                format!(r#"{{"Records":[{event},{{"a":[}}]}}"#),
            ),
            ("garbage", format!("{event} ]")),
            ("empty", " \n ".to_string()),
        ];
        for (case, input) in cases {
            let whole = frame(input.as_bytes(), usize::MAX);
            for step in 1..=9 {
                assert_eq!(
                    frame(input.as_bytes(), step),
                    whole,
                    "case {case}, {step} bytes a read"
                );
            }
        }
    }

    #[test]
    fn record_messages_quote_at_most_64_characters_of_input() {
        let long = "€".repeat(100_000);
        let cases: &[(&str, String)] = &[
            ("eventTime", format!(r#"{{"eventTime":"{long}"}}"#)),
            (
                "string userIdentity",
                format!(r#"{{"eventTime":"2023-07-10T11:40:12Z","userIdentity":"{long}"}}"#),
            ),
            ("string record", format!(r#""{long}""#)),
        ];
        for (case, record) in cases {
            let err = Event::from_json(record.as_bytes()).expect_err(case);
            let message = record_message(&err, record.as_bytes(), 0);
            assert!(
                message.contains(&format!("\"{}…", "€".repeat(64))),
                "case {case}: {message}"
            );
            assert!(message.chars().count() < 200, "case {case}: {message}");
        }
    }

    #[test]
    fn record_message_points_at_a_stream_offset() {
        let bytes = b"{\n  \"eventTime\": 5\n}";
        let err = Event::from_json(bytes).expect_err("numeric eventTime");
        let message = record_message(&err, bytes, 100);
        assert!(!message.contains("line"), "{message}");
        // The `5` is byte 17 of the record.
        assert!(message.contains("(near byte 117)"), "{message}");
    }
}
