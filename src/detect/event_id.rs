//! CloudTrail event ids, held without a heap allocation when they are the usual UUID.
//!
//! Every stay keeps the ids of its first and last events, and an organisation's trail
//! keeps tens of thousands of subjects with a dozen stays each in memory: as text, each id
//! would be a 36-byte allocation made by the thread that parsed the event and freed,
//! days of events later, by the one that judges. Anything that is not a canonical
//! lower-case UUID (a test fixture, another log source) is kept as text, exactly.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventId(Repr);

/// Invariant: `Text` never holds a canonical UUID, so that equal ids have equal
/// representations.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Uuid([u8; 16]),
    Text(Arc<str>),
}

/// The text of a UUID: 8-4-4-4-12 hex digits.
const UUID_LEN: usize = 36;

impl EventId {
    pub fn new(id: &str) -> EventId {
        match uuid_bytes(id) {
            Some(raw) => EventId(Repr::Uuid(raw)),
            None => EventId(Repr::Text(id.into())),
        }
    }

    /// The id whose text is `uuid_text(raw)`.
    pub fn from_uuid_bytes(raw: [u8; 16]) -> EventId {
        EventId(Repr::Uuid(raw))
    }

    /// The 16 bytes when the id is a canonical UUID.
    pub fn uuid_bytes(&self) -> Option<[u8; 16]> {
        match &self.0 {
            Repr::Uuid(raw) => Some(*raw),
            Repr::Text(_) => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(&self.0, Repr::Text(t) if t.is_empty())
    }

    /// The id's text, formatted into `buf` when it is a UUID.
    pub fn text<'a>(&'a self, buf: &'a mut [u8; UUID_LEN]) -> &'a str {
        match &self.0 {
            Repr::Uuid(raw) => uuid_text(raw, buf),
            Repr::Text(t) => t,
        }
    }
}

impl From<&str> for EventId {
    fn from(id: &str) -> EventId {
        EventId::new(id)
    }
}

impl From<String> for EventId {
    fn from(id: String) -> EventId {
        EventId::new(&id)
    }
}

impl PartialEq<str> for EventId {
    fn eq(&self, other: &str) -> bool {
        self.text(&mut [0; UUID_LEN]) == other
    }
}

impl PartialEq<&str> for EventId {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

/// The order of the ids' texts, which breaks ties between events of the same millisecond
/// the same way whatever form an id is held in.
impl Ord for EventId {
    fn cmp(&self, other: &EventId) -> Ordering {
        match (&self.0, &other.0) {
            // Canonical lower-case hex sorts as its bytes do.
            (Repr::Uuid(a), Repr::Uuid(b)) => a.cmp(b),
            (Repr::Text(a), Repr::Text(b)) => a.cmp(b),
            _ => self
                .text(&mut [0; UUID_LEN])
                .cmp(other.text(&mut [0; UUID_LEN])),
        }
    }
}

impl PartialOrd for EventId {
    fn partial_cmp(&self, other: &EventId) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text(&mut [0; UUID_LEN]))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.text(&mut [0; UUID_LEN]), f)
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.text(&mut [0; UUID_LEN]))
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<EventId, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(EventId::new(&text))
    }
}

/// The 16 bytes of a UUID in canonical lower-case form (8-4-4-4-12 hex digits), which is
/// what CloudTrail's event ids are; `None` for anything else.
fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    let b = id.as_bytes();
    if b.len() != UUID_LEN || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = b.iter().filter(|c| **c != b'-');
    for byte in &mut out {
        let mut v = 0u8;
        for _ in 0..2 {
            let d = match *digits.next()? {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            v = v << 4 | d;
        }
        *byte = v;
    }
    Some(out)
}

fn uuid_text<'a>(raw: &[u8; 16], buf: &'a mut [u8; UUID_LEN]) -> &'a str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = 0;
    for (i, byte) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            buf[at] = b'-';
            at += 1;
        }
        buf[at] = HEX[usize::from(byte >> 4)];
        buf[at + 1] = HEX[usize::from(byte & 15)];
        at += 2;
    }
    std::str::from_utf8(buf).expect("hex digits and dashes are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "f50d93bf-333a-4ced-a951-c285b577da0e";

    #[test]
    fn a_canonical_uuid_is_held_as_bytes_and_keeps_its_text() {
        let id = EventId::new(UUID);
        assert!(id.uuid_bytes().is_some());
        assert_eq!(id.to_string(), UUID);
        assert_eq!(EventId::from_uuid_bytes(id.uuid_bytes().unwrap()), id);
    }

    #[test]
    fn anything_else_is_kept_as_exact_text() {
        for text in [
            "",
            "e-1",
            "F50D93BF-333A-4CED-A951-C285B577DA0E",
            "f50d93bf333a4ceda951c285b577da0e",
            "f50d93bf-333a-4ced-a951-c285b577da0",
            "f50d93bf-333a-4ced-a951-c285b577da0g",
            "e-\u{e9}\u{4e2d}",
        ] {
            let id = EventId::new(text);
            assert!(id.uuid_bytes().is_none(), "{text}");
            assert_eq!(id.to_string(), text);
            assert_eq!(id, *text);
        }
        assert!(EventId::new("").is_empty());
        assert!(!EventId::new(UUID).is_empty());
    }

    #[test]
    fn ids_sort_as_their_texts_whatever_form_they_are_held_in() {
        let texts = [
            "",
            "0",
            "f50d93bf-333a-4ced-a951-c285b577da0e",
            "f50d93bf-333a-4ced-a951-c285b577da0",
            "f50d93bf-333a-4ced-a951-c285b577da0e0",
            "f50d93bf-333a-4ced-a951-c285b577da0f",
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "F50D93BF-333A-4CED-A951-C285B577DA0E",
            "g",
            "e-1",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(EventId::new(a).cmp(&EventId::new(b)), a.cmp(b), "{a} {b}");
            }
        }
    }

    #[test]
    fn serialized_as_its_text() {
        let id = EventId::new(UUID);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{UUID}\""));
        assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), id);
        let escaped: EventId = serde_json::from_str("\"a\\\"b\"").unwrap();
        assert_eq!(escaped, "a\"b");
    }
}
