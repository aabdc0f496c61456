//! The fast path from a record's bytes to an [`Event`]: one pass that takes the kept
//! fields and checks that everything else is JSON, without building anything for it.
//!
//! serde stays the reference. This path only ever answers for records serde would read
//! the same way: valid JSON throughout (the same grammar serde_json checks, skipped
//! values included), every kept field a string without escapes or `null`, no kept field
//! twice, and a parsable `eventTime`. On anything else (an escape in a kept string or in
//! a key, a wrong type, a duplicate, a record cut off by the end of the window, nesting
//! deeper than [`MAX_DEPTH`]) it gives way, and the caller asks serde, which either reads
//! the record or names what is wrong with it. So a record's outcome, error messages
//! included, never depends on which path read it; the tests below check that against
//! serde on generated and mutated records.
//!
//! It is also what lets the framer find a record's end and read it in the same pass:
//! given the bytes from a record's `{` to the end of what is decoded so far, it reports
//! where the record ends, or gives way when the record runs past them.

use std::borrow::Cow;

use super::event::{Event, SessionIssuer, UserIdentity};
use super::time::parse_event_time;

/// Nesting of skipped values read here; deeper ones are left to serde. CloudTrail's
/// request and response documents nest a handful of levels.
const MAX_DEPTH: u32 = 48;

/// A string's contents, as byte offsets into the record.
type Span = (usize, usize);

/// A kept field: `None` not seen, `Some(None)` null, `Some(Some(_))` a string.
type Slot = Option<Option<Span>>;

#[derive(Default)]
struct IssuerSpans {
    issuer_type: Slot,
    arn: Slot,
    user_name: Slot,
    account_id: Slot,
    principal_id: Slot,
}

#[derive(Default)]
struct IdentitySpans {
    identity_type: Slot,
    arn: Slot,
    account_id: Slot,
    access_key_id: Slot,
    user_name: Slot,
    principal_id: Slot,
    invoked_by: Slot,
    /// `sessionContext`: `Some(None)` null; inside, `sessionIssuer` likewise.
    session_context: Option<Option<Option<Option<IssuerSpans>>>>,
}

/// Where a record's kept fields are, once its bytes have been read through.
#[derive(Default)]
pub(crate) struct RecordSpans {
    event_time: Slot,
    event_id: Slot,
    event_name: Slot,
    event_source: Slot,
    event_type: Slot,
    aws_region: Slot,
    source_ip_address: Slot,
    user_agent: Slot,
    error_code: Slot,
    error_message: Slot,
    recipient_account_id: Slot,
    user_identity: Option<Option<IdentitySpans>>,
    /// Bytes from the record's `{` through its `}`.
    len: usize,
}

impl RecordSpans {
    /// Reads the record that starts at `bytes[0]` (its `{`); `None` to give way to serde.
    /// Bytes after the record's closing brace are not looked at.
    pub(crate) fn scan(bytes: &[u8]) -> Option<RecordSpans> {
        let mut p = Parser { b: bytes, i: 0 };
        let mut spans = RecordSpans::default();
        p.object(|p, key| {
            let slot = match key {
                b"eventTime" => &mut spans.event_time,
                b"eventID" => &mut spans.event_id,
                b"eventName" => &mut spans.event_name,
                b"eventSource" => &mut spans.event_source,
                b"eventType" => &mut spans.event_type,
                b"awsRegion" => &mut spans.aws_region,
                b"sourceIPAddress" => &mut spans.source_ip_address,
                b"userAgent" => &mut spans.user_agent,
                b"errorCode" => &mut spans.error_code,
                b"errorMessage" => &mut spans.error_message,
                b"recipientAccountId" => &mut spans.recipient_account_id,
                b"userIdentity" => return p.nested(&mut spans.user_identity, Parser::identity),
                _ => return p.skip_value(1),
            };
            p.string_field(slot)
        })?;
        spans.len = p.i;
        Some(spans)
    }

    /// The record's length in bytes, braces included.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The event, from the record's text (the bytes given to [`Self::scan`], at least
    /// through the record, checked as UTF-8). `None` when `eventTime` is missing, `null`
    /// or not a timestamp: serde then says which.
    pub(crate) fn event<'a>(&self, text: &'a str) -> Option<Event<'a>> {
        let s = |slot: &Slot| -> Option<Cow<'a, str>> {
            // The spans lie between ASCII quotes, so they fall on character boundaries.
            slot.flatten().map(|(a, b)| Cow::Borrowed(&text[a..b]))
        };
        let (a, b) = self.event_time.flatten()?;
        let event_time_ms = parse_event_time(&text[a..b])?;
        let user_identity = self
            .user_identity
            .as_ref()
            .and_then(Option::as_ref)
            .map(|u| {
                let issuer = match &u.session_context {
                    Some(Some(Some(Some(i)))) => Some(SessionIssuer {
                        issuer_type: s(&i.issuer_type),
                        arn: s(&i.arn),
                        user_name: s(&i.user_name),
                        account_id: s(&i.account_id),
                        principal_id: s(&i.principal_id),
                    }),
                    _ => None,
                };
                UserIdentity {
                    identity_type: s(&u.identity_type),
                    arn: s(&u.arn),
                    account_id: s(&u.account_id),
                    access_key_id: s(&u.access_key_id),
                    user_name: s(&u.user_name),
                    principal_id: s(&u.principal_id),
                    invoked_by: s(&u.invoked_by),
                    // As serde reads it: an issuer with nothing in it is none.
                    session_issuer: issuer.filter(|i| *i != SessionIssuer::default()),
                }
            });
        Some(Event {
            event_time_ms,
            event_id: s(&self.event_id),
            event_name: s(&self.event_name),
            event_source: s(&self.event_source),
            event_type: s(&self.event_type),
            aws_region: s(&self.aws_region),
            source_ip_address: s(&self.source_ip_address),
            user_agent: s(&self.user_agent),
            error_code: s(&self.error_code),
            error_message: s(&self.error_message),
            recipient_account_id: s(&self.recipient_account_id),
            user_identity,
        })
    }
}

/// A whole record's text (whitespace around it allowed), as [`Event::from_json`] gets it;
/// `None` to give way to serde.
pub(crate) fn read(text: &str) -> Option<Event<'_>> {
    let bytes = text.as_bytes();
    let start = bytes.iter().position(|&b| !is_ws(b))?;
    let spans = RecordSpans::scan(&bytes[start..])?;
    let end = start + spans.len();
    if !bytes[end..].iter().all(|&b| is_ws(b)) {
        return None;
    }
    spans.event(&text[start..end])
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = ONES << 7;

/// The high bit of each byte of `x` below `n` (`n` at most 0x80). Bits above the lowest
/// are not exact (a borrow can mark the byte after a match), but only the lowest is used.
#[inline]
fn bytes_below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH
}

/// The first byte at or after `i` that ends a run of plain string contents: `"`, `\`,
/// or a control character, which JSON does not allow in a string.
#[inline]
fn string_stop(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let found = bytes_below(x ^ (ONES * u64::from(b'"')), 1)
            | bytes_below(x ^ (ONES * u64::from(b'\\')), 1)
            | bytes_below(x, 0x20);
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i.min(b.len())..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|k| i + k)
}

/// Every method returns `None` to give way: at the end of the bytes, on anything that is
/// not JSON, and on anything serde must judge.
struct Parser<'b> {
    b: &'b [u8],
    i: usize,
}

impl Parser<'_> {
    #[inline]
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(|&c| is_ws(c)) {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string without escapes, from its opening quote: the span of its contents.
    #[inline]
    fn plain_string(&mut self) -> Option<Span> {
        self.expect(b'"')?;
        let start = self.i;
        let stop = string_stop(self.b, start)?;
        if self.b[stop] != b'"' {
            return None;
        }
        self.i = stop + 1;
        Some((start, stop))
    }

    /// Any string, from its opening quote, checking its escapes as serde_json does when
    /// it skips a string: the escaped character is not decoded, only its form checked.
    fn skip_string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        loop {
            let stop = string_stop(self.b, self.i)?;
            match self.b[stop] {
                b'"' => {
                    self.i = stop + 1;
                    return Some(());
                }
                b'\\' => {
                    self.i = stop + 2;
                    match *self.b.get(stop + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 4;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`. What follows is the caller's to
    /// check, so `01` fails there, as `1` followed by an unexpected `1`.
    fn number(&mut self) -> Option<()> {
        if self.peek()? == b'-' {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        // At the end of the bytes a number might go on: the caller sees the end and
        // gives way.
        Some(())
    }

    /// Any value, from its first byte.
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.object_with(
                    |p| p.skip_string().map(|()| &[][..]),
                    |p, _| p.skip_value(depth + 1),
                )
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// An object whose keys are matched (so they must be plain strings: an escaped key
    /// could spell a kept one), with `value` reading each key's value.
    fn object(&mut self, value: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        let b = self.b;
        self.object_with(
            |p| {
                let (start, end) = p.plain_string()?;
                Some(&b[start..end])
            },
            value,
        )
    }

    fn object_with<'k>(
        &mut self,
        mut key: impl FnMut(&mut Self) -> Option<&'k [u8]>,
        mut value: impl FnMut(&mut Self, &'k [u8]) -> Option<()>,
    ) -> Option<()> {
        self.expect(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            let k = key(self)?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            value(self, k)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A kept string field: a string without escapes, or `null`.
    fn string_field(&mut self, slot: &mut Slot) -> Option<()> {
        if slot.is_some() {
            // serde refuses a field given twice.
            return None;
        }
        *slot = Some(match self.peek()? {
            b'"' => Some(self.plain_string()?),
            b'n' => {
                self.literal(b"null")?;
                None
            }
            _ => return None,
        });
        Some(())
    }

    /// A kept object field: an object read by `read`, or `null`.
    fn nested<T: Default>(
        &mut self,
        slot: &mut Option<Option<T>>,
        read: impl FnOnce(&mut Self, &mut T) -> Option<()>,
    ) -> Option<()> {
        if slot.is_some() {
            return None;
        }
        *slot = Some(match self.peek()? {
            b'{' => {
                let mut inner = T::default();
                read(self, &mut inner)?;
                Some(inner)
            }
            b'n' => {
                self.literal(b"null")?;
                None
            }
            // serde would also take an array, by position: its call.
            _ => return None,
        });
        Some(())
    }

    fn identity(&mut self, u: &mut IdentitySpans) -> Option<()> {
        self.object(|p, key| {
            let slot = match key {
                b"type" => &mut u.identity_type,
                b"arn" => &mut u.arn,
                b"accountId" => &mut u.account_id,
                b"accessKeyId" => &mut u.access_key_id,
                b"userName" => &mut u.user_name,
                b"principalId" => &mut u.principal_id,
                b"invokedBy" => &mut u.invoked_by,
                b"sessionContext" => {
                    return p.nested(&mut u.session_context, |p, context| {
                        p.object(|p, key| match key {
                            b"sessionIssuer" => p.nested(context, Parser::issuer),
                            _ => p.skip_value(3),
                        })
                    })
                }
                _ => return p.skip_value(2),
            };
            p.string_field(slot)
        })
    }

    fn issuer(&mut self, i: &mut IssuerSpans) -> Option<()> {
        self.object(|p, key| {
            let slot = match key {
                b"type" => &mut i.issuer_type,
                b"arn" => &mut i.arn,
                b"userName" => &mut i.user_name,
                b"accountId" => &mut i.account_id,
                b"principalId" => &mut i.principal_id,
                _ => return p.skip_value(4),
            };
            p.string_field(slot)
        })
    }
}

/// Records for differential tests: kept fields in every form serde takes or refuses
/// (escapes, `null`, wrong types, duplicates, escaped keys, bad times), skipped values of
/// every JSON kind and some that are not JSON, and byte edits on top.
#[cfg(test)]
pub(crate) mod generate {
    /// Deterministic choices from one seed (splitmix64), so a failing case is its seed.
    pub(crate) struct Gen(u64);

    impl Gen {
        pub(crate) fn new(seed: u64) -> Gen {
            Gen(seed)
        }

        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    const KEPT: [&str; 11] = [
        "eventID",
        "eventName",
        "eventSource",
        "eventType",
        "awsRegion",
        "sourceIPAddress",
        "userAgent",
        "errorCode",
        "errorMessage",
        "recipientAccountId",
        "eventTime",
    ];
    const IDENTITY: [&str; 9] = [
        "type",
        "arn",
        "accountId",
        "accessKeyId",
        "userName",
        "principalId",
        "invokedBy",
        "sessionContext",
        "attributes",
    ];
    const ISSUER: [&str; 6] = [
        "type",
        "arn",
        "userName",
        "accountId",
        "principalId",
        "creationDate",
    ];
    const OTHER_KEYS: [&str; 7] = [
        "eventVersion",
        "requestParameters",
        "responseElements",
        "resources",
        "",
        "caf\u{e9}",
        "event\\u0054ime",
    ];
    const PLAIN: [&str; 8] = [
        "",
        "GetObject",
        "s3.amazonaws.com",
        "198.51.100.7",
        "AKIAIOSFODNN7EXAMPLE",
        "caf\u{e9} \u{2615} \u{1f600}",
        "arn:aws:iam::123456789012:user/alice",
        "aws-cli/2.13.0 Python/3.11",
    ];
    const ESCAPED: [&str; 10] = [
        r#"say \"hi\""#,
        r"back\\slash",
        r"a\/b",
        r"line\nbreak\t\r\b\f",
        r"caf\u00e9",
        r"\ud83d\ude00",
        r"lone \ud800",
        r"bad \uZZ12",
        r"bad \q",
        "raw \u{1} control",
    ];
    const TIMES: [&str; 6] = [
        "2023-07-10T11:40:12Z",
        "2023-07-10T11:40:12.345Z",
        "2023-07-10 11:40:12",
        "2023-02-30T00:00:00Z",
        "yesterday",
        "",
    ];
    const GOOD_TIMES: [&str; 2] = ["2023-07-10T11:40:12Z", "2023-07-10T11:40:12.345Z"];
    const SCALARS: [&str; 16] = [
        "null", "true", "false", "0", "-0", "12", "-1.5e3", "1E+2", "2.50", "tru", "nul", "01",
        "1.", "-", ".5", "1e",
    ];
    const EDITS: [u8; 12] = [
        b',', b'}', b']', b'"', b'\\', 0x01, 0xff, b' ', b'1', b':', b'{', b'[',
    ];

    #[derive(Clone, Copy)]
    enum Escapes {
        None,
        Valid,
        Any,
    }

    impl Gen {
        fn ws(&mut self, out: &mut String) {
            out.push_str(self.pick(&["", "", "", " ", "\n  ", "\t", "\r\n"]));
        }

        /// A string: `escapes` none, valid ones (serde skips them), or any.
        fn string(&mut self, out: &mut String, escapes: Escapes) {
            out.push('"');
            match escapes {
                Escapes::Valid if self.chance(40) => out.push_str(self.pick(&ESCAPED[..7])),
                Escapes::Any if self.chance(40) => out.push_str(self.pick(&ESCAPED)),
                _ => out.push_str(self.pick(&PLAIN)),
            }
            out.push('"');
        }

        /// Any value: JSON if `clean`, else JSON or nearly.
        fn value(&mut self, out: &mut String, depth: usize, clean: bool) {
            match self.below(if depth > 3 { 3 } else { 5 }) {
                0 if clean => out.push_str(self.pick(&SCALARS[..9])),
                0 => out.push_str(self.pick(&SCALARS)),
                1 | 2 if clean => self.string(out, Escapes::Valid),
                1 | 2 => self.string(out, Escapes::Any),
                3 => {
                    out.push('[');
                    for i in 0..self.below(4) {
                        if i > 0 {
                            out.push(',');
                        }
                        self.ws(out);
                        self.value(out, depth + 1, clean);
                        self.ws(out);
                    }
                    out.push(']');
                }
                _ => {
                    let keys: Vec<&str> =
                        (0..self.below(4)).map(|_| self.pick(&OTHER_KEYS)).collect();
                    self.object(out, &keys, &mut |g, out, _| g.value(out, depth + 1, clean));
                }
            }
        }

        fn object(
            &mut self,
            out: &mut String,
            keys: &[&str],
            value: &mut dyn FnMut(&mut Gen, &mut String, &str),
        ) {
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                self.ws(out);
                out.push('"');
                out.push_str(key);
                out.push('"');
                self.ws(out);
                out.push(':');
                self.ws(out);
                value(self, out, key);
                self.ws(out);
            }
            out.push('}');
        }

        /// Keys for an object: from `kept` and, unless clean, from the others too; a
        /// clean object has no key twice.
        fn keys<'a>(&mut self, kept: &[&'a str], clean: bool, most: usize) -> Vec<&'a str> {
            let mut keys: Vec<&str> = Vec::new();
            for _ in 0..self.below(most + 1) {
                let key = if self.chance(25) {
                    self.pick(&OTHER_KEYS[..6])
                } else {
                    self.pick(kept)
                };
                if !(clean && keys.contains(&key)) {
                    keys.push(key);
                }
            }
            if !clean && self.chance(10) {
                keys.push(self.pick(&OTHER_KEYS));
            }
            keys
        }

        /// A kept string field's value.
        fn field(&mut self, out: &mut String, clean: bool) {
            if self.chance(15) {
                out.push_str("null");
            } else if clean {
                self.string(out, Escapes::None);
            } else if self.chance(80) {
                self.string(out, Escapes::Any);
            } else {
                self.value(out, 1, false);
            }
        }

        /// A record; a clean one is one the fast path must read (and serde too).
        pub(crate) fn record(&mut self, clean: bool) -> String {
            let mut out = String::new();
            let mut keys = self.keys(&KEPT, clean, 12);
            if self.chance(70) {
                keys.push("userIdentity");
            }
            if clean && !keys.contains(&"eventTime") {
                let at = self.below(keys.len() + 1);
                keys.insert(at, "eventTime");
            }
            self.ws(&mut out);
            self.object(&mut out, &keys, &mut |g, out, key| match key {
                "eventTime" if clean => {
                    out.push('"');
                    out.push_str(g.pick(&GOOD_TIMES));
                    out.push('"');
                }
                "eventTime" if g.chance(80) => {
                    out.push('"');
                    out.push_str(g.pick(&TIMES));
                    out.push('"');
                }
                "userIdentity" if clean || g.chance(85) => g.identity(out, clean),
                k if KEPT.contains(&k) => g.field(out, clean),
                _ => g.value(out, 1, clean),
            });
            self.ws(&mut out);
            out
        }

        fn identity(&mut self, out: &mut String, clean: bool) {
            if self.chance(10) {
                out.push_str("null");
                return;
            }
            let keys = self.keys(&IDENTITY, clean, 9);
            self.object(out, &keys, &mut |g, out, key| match key {
                "sessionContext" if g.chance(15) => out.push_str("null"),
                "sessionContext" if clean || g.chance(90) => {
                    let keys = g.keys(&["sessionIssuer", "attributes"], clean, 2);
                    g.object(out, &keys, &mut |g, out, key| match key {
                        "sessionIssuer" if g.chance(15) => out.push_str("null"),
                        "sessionIssuer" if clean || g.chance(90) => {
                            let keys = g.keys(&ISSUER, clean, 6);
                            g.object(out, &keys, &mut |g, out, key| match key {
                                k if ISSUER[..5].contains(&k) => g.field(out, clean),
                                _ => g.value(out, 3, clean),
                            });
                        }
                        _ => g.value(out, 2, clean),
                    });
                }
                k if IDENTITY[..7].contains(&k) => g.field(out, clean),
                _ => g.value(out, 2, clean),
            });
        }

        /// A few byte edits: deletions, insertions, a cut.
        pub(crate) fn edit(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
            for _ in 0..1 + self.below(3) {
                let at = self.below(bytes.len() + 1);
                match self.below(3) {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 => bytes.insert(at, EDITS[self.below(EDITS.len())]),
                    _ => bytes.truncate(at),
                }
            }
            bytes
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::generate::Gen;
    use super::*;

    fn fast(bytes: &[u8]) -> Option<Event<'_>> {
        std::str::from_utf8(bytes).ok().and_then(read)
    }

    #[test]
    fn gives_way_on_what_serde_must_judge() {
        let t = r#""eventTime":"2023-07-10T11:40:12Z""#;
        let cases = [
            (
                "escape in a kept string",
                format!(r#"{{{t},"userAgent":"a\"b"}}"#),
            ),
            (
                "escaped key",
                r#"{"event\u0054ime":"2023-07-10T11:40:12Z"}"#.to_owned(),
            ),
            ("duplicate kept field", format!(r#"{{{t},{t}}}"#)),
            ("number for a string", format!(r#"{{{t},"eventName":7}}"#)),
            (
                "array for userIdentity",
                format!(r#"{{{t},"userIdentity":["IAMUser"]}}"#),
            ),
            ("no eventTime", r#"{"eventName":"x"}"#.to_owned()),
            (
                "bad eventTime",
                r#"{"eventTime":"2023-02-30T00:00:00Z"}"#.to_owned(),
            ),
            ("trailing comma", format!(r#"{{{t},}}"#)),
            ("leading zero", format!(r#"{{{t},"n":01}}"#)),
            ("bad escape skipped", format!(r#"{{{t},"x":"\q"}}"#)),
            ("control character", format!("{{{t},\"x\":\"a\u{1}b\"}}")),
            ("cut short", t.to_owned()),
            ("text after", format!(r#"{{{t}}} x"#)),
            (
                "too deep",
                format!(r#"{{{t},"x":{}{}}}"#, "[".repeat(60), "]".repeat(60)),
            ),
        ];
        for (case, json) in cases {
            assert!(fast(json.as_bytes()).is_none(), "case {case}: {json}");
        }
    }

    #[test]
    fn reads_a_record_whole_and_stops_at_its_end() {
        let json = br#"{"eventTime":"2023-07-10T11:40:12Z","requestParameters":{"a":[1,-2.5e3,true,null,"x\"\u00e9"],"b":{}},"userIdentity":{"accessKeyId":"AKIAX","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:role/R"}}}},{"next":1}"#;
        let spans = RecordSpans::scan(json).expect("a plain record");
        let record = &json[..spans.len()];
        assert!(record.ends_with(b"}}}}"), "stops at the record's own brace");
        let text = std::str::from_utf8(record).unwrap();
        let event = spans.event(text).expect("a valid time");
        assert_eq!(
            Some(&event),
            Event::by_serde(record, Some(text)).ok().as_ref()
        );
        let identity = event.user_identity.expect("userIdentity");
        assert!(matches!(
            identity.access_key_id,
            Some(Cow::Borrowed("AKIAX"))
        ));
        assert_eq!(
            identity.session_issuer.and_then(|i| i.arn).as_deref(),
            Some("arn:aws:iam::1:role/R")
        );
        assert!(
            RecordSpans::scan(&json[..spans.len() - 1]).is_none(),
            "cut short"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: crate::proptest_cases(2048),
            ..ProptestConfig::default()
        })]

        /// Whatever the fast path reads, serde reads the same; what a clean record is,
        /// the fast path reads.
        #[test]
        fn reads_only_what_serde_reads_and_the_same(seed in any::<u64>()) {
            let mut g = Gen::new(seed);
            let clean = g.below(3) == 0;
            let mut bytes = g.record(clean).into_bytes();
            if !clean && g.below(2) == 0 {
                bytes = g.edit(bytes);
            }
            let shown = String::from_utf8_lossy(&bytes).into_owned();
            let fast = fast(&bytes);
            let reference = Event::by_serde(&bytes, std::str::from_utf8(&bytes).ok());
            if let Some(event) = &fast {
                prop_assert_eq!(reference.as_ref().ok(), Some(event), "{}", shown);
            }
            if clean {
                prop_assert!(fast.is_some(), "a clean record was not read: {}", shown);
            }
        }
    }
}
