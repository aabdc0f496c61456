//! Compact, exact binary forms of a `SubjectState` and of an account-level `Tally`: for
//! states held in memory between the objects that touch them, and for the state file
//! (DynamoDB keeps its own format).
//!
//! A state's JSON repeats its place key, event names, services and regions in every stay,
//! and most stays are a single event whose first and last points are the same: a few KB a
//! subject. Here every distinct string is stored once and referred to by index, and a
//! stay of one event stores one point, which makes a typical state five to six times
//! smaller and much faster to write and read than JSON. Each form starts with a layout
//! byte, so that a change of layout cannot be misread.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::detect::policy_units::DAY_MS;
use crate::detect::tally::{
    AccountTally, AddressSeen, CommandTally, DayCount, ErrorTally, KeyAddressTally, PlaceSeen,
    Seen, Tally,
};
use crate::detect::{AlertMark, Call, EventId, Place, Point, Stay, SubjectState, Transition};
use crate::geo::{Location, PlaceKey};

/// First byte of every packed state, so that a change of layout cannot be misread.
const LAYOUT: u8 = 1;

/// Packs `state`; [`unpack`] gives back an equal state.
pub fn pack(state: &SubjectState) -> Vec<u8> {
    pack_after(0, state)
}

/// [`pack`], after `room` zero bytes for the caller's own header: a state file's value
/// is a version and the packed state, and copying each packed state into a value of its
/// own was a copy of every byte of a final write.
pub(crate) fn pack_after(room: usize, state: &SubjectState) -> Vec<u8> {
    // Room for what a state usually packs to, so that the body is not grown (copied) a
    // byte size at a time: that was a twentieth of a state file's final write. A point is
    // about 30 bytes, and most stays are one point.
    let mut body = Writer {
        bytes: Vec::with_capacity(
            32 + 40 * state.stays.len()
                + 48 * state.places.len()
                + 12 * (state.transitions.len() + state.alerts.len()),
        ),
        strings: Vec::with_capacity(16),
        prints: Vec::with_capacity(16),
        ..Writer::default()
    };
    body.varint(u64::from(state.v));
    body.str(&state.subject);
    body.int(state.first_seen_ms);
    body.int(state.latest_ms);
    body.varint(state.stays.len() as u64);
    for stay in &state.stays {
        body.str(&stay.place);
        body.int(stay.gap_ms);
        let single = stay.is_single();
        body.bytes.push(u8::from(single));
        body.point(stay.first());
        if !single {
            body.point(stay.last());
        }
    }
    body.varint(state.places.len() as u64);
    for place in &state.places {
        body.str(&place.key);
        body.location(&place.location);
        body.int(place.first_seen_ms);
        body.int(place.last_seen_ms);
        body.varint(place.count);
    }
    body.varint(state.transitions.len() as u64);
    for tr in &state.transitions {
        body.str(&tr.a);
        body.str(&tr.b);
        body.int(tr.first_ms);
        body.int(tr.last_ms);
    }
    body.varint(state.alerts.len() as u64);
    for mark in &state.alerts {
        body.str(&mark.id);
        body.str(&mark.a);
        body.str(&mark.b);
        body.int(mark.t);
    }

    let table_bytes: usize = body.strings.iter().map(|s| s.len() + 2).sum();
    let mut out = Writer {
        bytes: Vec::with_capacity(room + 1 + 3 + table_bytes + body.bytes.len()),
        ..Writer::default()
    };
    out.bytes.resize(room, 0);
    out.bytes.push(LAYOUT);
    out.varint(body.strings.len() as u64);
    for s in &body.strings {
        out.text(s);
    }
    out.bytes.extend_from_slice(&body.bytes);
    out.bytes
}

/// Unpacks what [`pack`] wrote. A malformed input (which only a bug can produce) is an
/// error, not a panic.
/// The `latest_ms` of a packed state, read without unpacking the rest: pruning a state
/// file asks only this of every subject, and unpacking each whole was most of its time.
/// Only the header is checked; damage further on is found when the state is unpacked.
pub fn latest_ms(bytes: &[u8]) -> Result<i64, String> {
    let mut r = Reader { bytes, pos: 0 };
    let count = r.table_start()?;
    for _ in 0..count {
        let n = r.len()?;
        r.take(n)?;
    }
    let _v = r.varint()?;
    let subject = r.varint()?;
    if subject >= count as u64 {
        return Err(format!("string {subject} out of range"));
    }
    let _first_seen_ms = r.int()?;
    r.int()
}

pub fn unpack(bytes: &[u8]) -> Result<SubjectState, String> {
    let mut r = Reader { bytes, pos: 0 };
    let count = r.table_start()?;
    let mut strings = Vec::with_capacity(count);
    for _ in 0..count {
        strings.push(r.text()?);
    }
    let mut r = Body {
        r,
        strings,
        shared: vec![None; count],
        calls: Vec::new(),
    };
    let v = u32::try_from(r.r.varint()?).map_err(|e| e.to_string())?;
    let subject = r.string()?;
    let first_seen_ms = r.r.int()?;
    let latest_ms = r.r.int()?;
    let n = r.r.len()?;
    let mut stays = Vec::with_capacity(n);
    for _ in 0..n {
        let place = r.place()?;
        let gap_ms = r.r.int()?;
        let single = r.r.byte()? == 1;
        let first = r.point()?;
        stays.push(if single {
            let mut stay = Stay::at(place, first);
            stay.gap_ms = gap_ms;
            stay
        } else {
            Stay::span(place, first, r.point()?, gap_ms)
        });
    }
    let n = r.r.len()?;
    let mut places = Vec::with_capacity(n);
    for _ in 0..n {
        places.push(Place {
            key: r.index().map(|i| r.strings[i].into())?,
            location: Arc::new(r.location()?),
            first_seen_ms: r.r.int()?,
            last_seen_ms: r.r.int()?,
            count: r.r.varint()?,
        });
    }
    let n = r.r.len()?;
    let mut transitions = Vec::with_capacity(n);
    for _ in 0..n {
        transitions.push(Transition {
            a: r.string()?,
            b: r.string()?,
            first_ms: r.r.int()?,
            last_ms: r.r.int()?,
        });
    }
    let n = r.r.len()?;
    let mut alerts = Vec::with_capacity(n);
    for _ in 0..n {
        alerts.push(AlertMark {
            id: r.string()?,
            a: r.string()?,
            b: r.string()?,
            t: r.r.int()?,
        });
    }
    if r.r.pos != bytes.len() {
        return Err(format!("{} bytes left over", bytes.len() - r.r.pos));
    }
    Ok(SubjectState {
        v,
        subject,
        first_seen_ms,
        latest_ms,
        stays,
        places,
        transitions,
        alerts,
    })
}

/// First byte of every packed tally.
const TALLY_LAYOUT: u8 = 1;

/// Packs `tally`; [`unpack_tally`] gives back an equal tally.
///
/// A tally's strings are mostly distinct (addresses, mark ids), so they are written in
/// place rather than through a table; times within a day are written from the day's
/// start, and mark ids that are the usual 32 hex digits as their 16 bytes. An
/// organisation's key tallies pack to about a third of their JSON, and a state file's
/// final write spent most of its tally time serializing that JSON.
pub fn pack_tally(tally: &Tally) -> Vec<u8> {
    pack_tally_after(0, tally)
}

/// [`pack_tally`], after `room` zero bytes (see [`pack_after`]).
pub(crate) fn pack_tally_after(room: usize, tally: &Tally) -> Vec<u8> {
    // An organisation's key tally packs to about 360 bytes: room for most in one go.
    let mut w = Writer {
        bytes: Vec::with_capacity(room + 512),
        ..Writer::default()
    };
    w.bytes.resize(room, 0);
    w.bytes.push(TALLY_LAYOUT);
    match tally {
        Tally::Account(a) => {
            w.bytes.push(0);
            w.varint(u64::from(a.v));
            w.text(&a.account);
            w.int(a.first_seen_ms);
            w.int(a.latest_ms);
            w.marks(&a.alerts);
        }
        Tally::Command(c) => {
            w.bytes.push(1);
            w.varint(u64::from(c.v));
            w.text(&c.account);
            w.text(&c.source);
            w.text(&c.name);
            w.int(c.latest_ms);
            w.varint(c.places.len() as u64);
            for place in &c.places {
                w.text(&place.key);
                w.text(&place.label);
                w.seen(&place.seen);
            }
            w.applied(&c.applied);
        }
        Tally::Error(e) => {
            w.bytes.push(2);
            w.varint(u64::from(e.v));
            w.text(&e.account);
            w.text(&e.code);
            w.int(e.latest_ms);
            w.seen(&e.seen);
            w.applied(&e.applied);
        }
        Tally::KeyAddresses(k) => {
            w.bytes.push(3);
            w.varint(u64::from(k.v));
            w.text(&k.access_key_id);
            w.int(k.latest_ms);
            w.varint(k.addresses.len() as u64);
            for address in &k.addresses {
                w.text(&address.ip);
                w.seen(&address.seen);
            }
            w.marks(&k.alerts);
            w.applied(&k.applied);
        }
    }
    w.bytes
}

/// Unpacks what [`pack_tally`] wrote; malformed input is an error, not a panic.
pub fn unpack_tally(bytes: &[u8]) -> Result<Tally, String> {
    let mut r = Reader { bytes, pos: 0 };
    let layout = r.byte()?;
    if layout != TALLY_LAYOUT {
        return Err(format!("unknown packed tally layout {layout}"));
    }
    let kind = r.byte()?;
    let v = u32::try_from(r.varint()?).map_err(|e| e.to_string())?;
    let tally = match kind {
        0 => Tally::Account(AccountTally {
            v,
            account: r.text()?.to_owned(),
            first_seen_ms: r.int()?,
            latest_ms: r.int()?,
            alerts: r.marks()?,
        }),
        1 => {
            let (account, source, name) = (r.text()?, r.text()?, r.text()?);
            let latest_ms = r.int()?;
            let n = r.len()?;
            let mut places = Vec::with_capacity(n);
            for _ in 0..n {
                places.push(PlaceSeen {
                    key: r.text()?.into(),
                    label: r.text()?.to_owned(),
                    seen: r.seen()?,
                });
            }
            Tally::Command(CommandTally {
                v,
                account: account.to_owned(),
                source: source.to_owned(),
                name: name.to_owned(),
                latest_ms,
                places,
                applied: r.applied()?,
            })
        }
        2 => Tally::Error(ErrorTally {
            v,
            account: r.text()?.to_owned(),
            code: r.text()?.to_owned(),
            latest_ms: r.int()?,
            seen: r.seen()?,
            applied: r.applied()?,
        }),
        3 => {
            let access_key_id = r.text()?.to_owned();
            let latest_ms = r.int()?;
            let n = r.len()?;
            let mut addresses = Vec::with_capacity(n);
            for _ in 0..n {
                addresses.push(AddressSeen {
                    ip: r.text()?.into(),
                    seen: r.seen()?,
                });
            }
            Tally::KeyAddresses(KeyAddressTally {
                v,
                access_key_id,
                latest_ms,
                addresses,
                alerts: r.marks()?,
                applied: r.applied()?,
            })
        }
        other => return Err(format!("unknown tally kind {other}")),
    };
    if r.pos != bytes.len() {
        return Err(format!("{} bytes left over", bytes.len() - r.pos));
    }
    Ok(tally)
}

#[derive(Default)]
struct Writer<'a> {
    bytes: Vec<u8>,
    /// Distinct strings in order of first use.
    strings: Vec<&'a str>,
    /// A fingerprint of each of `strings` ([`fingerprint`]): a string not among them is
    /// found absent by comparing these, not texts. A state holds tens of strings, many
    /// of one length (regions, addresses), and comparing texts was most of a state
    /// file's final write after the cache below.
    prints: Vec<u64>,
    /// Where in `strings` recently written strings are, by address and length. Most
    /// strings of a state are the same allocation again (a place key in every stay, an
    /// event name, service and region shared by every event that names them), and
    /// finding each by comparing text with the strings before it was almost half of
    /// packing a state.
    recent: Recent,
}

/// Mixes the length and the first and last eight bytes of `s`: equal strings have equal
/// fingerprints, and most strings that differ in any of these have different ones.
fn fingerprint(s: &str) -> u64 {
    let b = s.as_bytes();
    let word = |bytes: &[u8]| {
        let mut w = [0; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(w)
    };
    let (head, tail) = if b.len() >= 8 {
        (word(&b[..8]), word(&b[b.len() - 8..]))
    } else {
        (word(b), 0)
    };
    (head ^ tail.rotate_left(32)).wrapping_add((b.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A direct-mapped cache of `(address, length, index + 1)`; 0 in the last: empty.
#[derive(Clone, Copy)]
struct Recent([(usize, usize, u32); RECENT_SLOTS]);

const RECENT_SLOTS: usize = 32;

impl Default for Recent {
    fn default() -> Self {
        Recent([(0, 0, 0); RECENT_SLOTS])
    }
}

impl Recent {
    fn slot(addr: usize) -> usize {
        // Allocations are 8- or 16-aligned: the low bits say nothing.
        ((addr >> 4) ^ (addr >> 10)) % RECENT_SLOTS
    }
}

impl<'a> Writer<'a> {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.bytes.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.bytes.push(v as u8);
    }

    /// Zigzag: small magnitudes of either sign stay short.
    fn int(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    /// A string written in place: its length, then its bytes.
    fn text(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.bytes.extend_from_slice(s.as_bytes());
    }

    fn seen(&mut self, seen: &Seen) {
        self.varint(seen.days.len() as u64);
        for dc in &seen.days {
            self.int(dc.day);
            self.varint(dc.count);
            self.varint(dc.first.len() as u64);
            // From the day's start, in wrapping arithmetic: a few bytes for a time on its
            // own day, and exact whatever the stored values.
            let start = dc.day.wrapping_mul(DAY_MS);
            for &t in &dc.first {
                self.int(t.wrapping_sub(start));
            }
        }
        self.int(seen.last_ms);
    }

    fn marks(&mut self, marks: &[AlertMark]) {
        self.varint(marks.len() as u64);
        for mark in marks {
            match hex_16(&mark.id) {
                Some(raw) => {
                    self.bytes.push(1);
                    self.bytes.extend_from_slice(&raw);
                }
                None => {
                    self.bytes.push(0);
                    self.text(&mark.id);
                }
            }
            self.text(&mark.a);
            self.text(&mark.b);
            self.int(mark.t);
        }
    }

    fn applied(&mut self, tags: &[u64]) {
        // Hashes: a varint of one takes nine or ten bytes.
        self.varint(tags.len() as u64);
        for tag in tags {
            self.bytes.extend_from_slice(&tag.to_le_bytes());
        }
    }

    fn str(&mut self, s: &'a str) {
        let addr = s.as_ptr() as usize;
        let slot = Recent::slot(addr);
        let (cached_addr, cached_len, cached) = self.recent.0[slot];
        // The same address and length is the same text.
        let index = if cached != 0 && cached_addr == addr && cached_len == s.len() {
            cached as usize - 1
        } else {
            let print = fingerprint(s);
            let found = self
                .prints
                .iter()
                .zip(&self.strings)
                .position(|(p, t)| *p == print && *t == s);
            let index = match found {
                Some(i) => i,
                None => {
                    self.strings.push(s);
                    self.prints.push(print);
                    self.strings.len() - 1
                }
            };
            self.recent.0[slot] = (addr, s.len(), index as u32 + 1);
            index
        };
        self.varint(index as u64);
    }

    fn opt_str(&mut self, s: &'a Option<String>) {
        match s {
            Some(s) => {
                self.bytes.push(1);
                self.str(s);
            }
            None => self.bytes.push(0),
        }
    }

    fn point(&mut self, p: &'a Point) {
        self.int(p.t);
        // Event ids are unique: inline, and 16 bytes when they are the usual UUID.
        match p.id.uuid_bytes() {
            Some(raw) => {
                self.bytes.push(1);
                self.bytes.extend_from_slice(&raw);
            }
            None => {
                let mut buf = [0; 36];
                let text = p.id.text(&mut buf).as_bytes();
                self.bytes.push(0);
                self.varint(text.len() as u64);
                self.bytes.extend_from_slice(text);
            }
        }
        match p.ip {
            IpAddr::V4(ip) => {
                self.bytes.push(4);
                self.bytes.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.bytes.push(6);
                self.bytes.extend_from_slice(&ip.octets());
            }
        }
        self.str(&p.call.name);
        self.str(&p.call.source);
        self.str(&p.call.region);
    }

    fn location(&mut self, l: &'a Location) {
        self.opt_str(&l.city);
        self.opt_str(&l.subdivision);
        self.opt_str(&l.country);
        self.opt_str(&l.country_code);
        self.bytes
            .extend_from_slice(&l.latitude.to_bits().to_le_bytes());
        self.bytes
            .extend_from_slice(&l.longitude.to_bits().to_le_bytes());
        match l.accuracy_radius_km {
            Some(km) => {
                self.bytes.push(1);
                self.varint(u64::from(km));
            }
            None => self.bytes.push(0),
        }
        self.opt_str(&l.network);
        match l.asn {
            Some(asn) => {
                self.bytes.push(1);
                self.varint(u64::from(asn));
            }
            None => self.bytes.push(0),
        }
        self.opt_str(&l.as_org);
    }
}

/// The 16 bytes of `id` when it is 32 lower-case hex digits (how finding ids are made),
/// so that [`hex_text`] gives back the same text.
fn hex_16(id: &str) -> Option<[u8; 16]> {
    let id = id.as_bytes();
    if id.len() != 32 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut raw = [0; 16];
    for (i, pair) in id.chunks_exact(2).enumerate() {
        raw[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(raw)
}

fn hex_text(raw: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(raw.len() * 2);
    for b in raw {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    text
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Checks the layout byte and reads how many strings the table holds, leaving the
    /// reader at the first of them.
    fn table_start(&mut self) -> Result<usize, String> {
        let layout = self.byte()?;
        if layout != LAYOUT {
            return Err(format!("unknown packed layout {layout}"));
        }
        self.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or("truncated")?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint too long".to_owned())
    }

    fn int(&mut self) -> Result<i64, String> {
        let z = self.varint()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    /// A count of things that each take at least a byte: never more than what is left.
    fn len(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        if n > (self.bytes.len() - self.pos) as u64 {
            return Err("count past the end".to_owned());
        }
        Ok(n as usize)
    }

    fn text(&mut self) -> Result<&'a str, String> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())
    }

    fn seen(&mut self) -> Result<Seen, String> {
        let n = self.len()?;
        let mut days = Vec::with_capacity(n);
        for _ in 0..n {
            let day = self.int()?;
            let count = self.varint()?;
            let m = self.len()?;
            let start = day.wrapping_mul(DAY_MS);
            let first = (0..m)
                .map(|_| Ok(self.int()?.wrapping_add(start)))
                .collect::<Result<Vec<i64>, String>>()?;
            days.push(DayCount { day, count, first });
        }
        Ok(Seen {
            days,
            last_ms: self.int()?,
        })
    }

    fn marks(&mut self) -> Result<Vec<AlertMark>, String> {
        let n = self.len()?;
        let mut marks = Vec::with_capacity(n);
        for _ in 0..n {
            let id = match self.byte()? {
                0 => self.text()?.to_owned(),
                1 => hex_text(self.take(16)?),
                form => return Err(format!("unknown mark id form {form}")),
            };
            marks.push(AlertMark {
                id,
                a: self.text()?.to_owned(),
                b: self.text()?.to_owned(),
                t: self.int()?,
            });
        }
        Ok(marks)
    }

    fn applied(&mut self) -> Result<Vec<u64>, String> {
        let n = self.len()?;
        (0..n)
            .map(|_| {
                let b = self.take(8)?;
                Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            })
            .collect()
    }

    fn f64(&mut self) -> Result<f64, String> {
        let b = self.take(8)?;
        Ok(f64::from_bits(u64::from_le_bytes(
            b.try_into().expect("8 bytes"),
        )))
    }
}

struct Body<'a> {
    r: Reader<'a>,
    strings: Vec<&'a str>,
    /// One shared copy per distinct place key.
    shared: Vec<Option<PlaceKey>>,
    /// One shared copy per distinct call, by its strings' indices; a subject makes a
    /// handful of distinct calls, so a linear search wins.
    calls: Vec<([usize; 3], Arc<Call>)>,
}

impl Body<'_> {
    fn index(&mut self) -> Result<usize, String> {
        let i = self.r.varint()?;
        usize::try_from(i)
            .ok()
            .filter(|i| *i < self.strings.len())
            .ok_or_else(|| format!("string {i} out of range"))
    }

    fn string(&mut self) -> Result<String, String> {
        let i = self.index()?;
        Ok(self.strings[i].to_owned())
    }

    fn opt_string(&mut self) -> Result<Option<String>, String> {
        Ok(match self.r.byte()? {
            0 => None,
            _ => Some(self.string()?),
        })
    }

    fn place(&mut self) -> Result<PlaceKey, String> {
        let i = self.index()?;
        Ok(self.shared[i]
            .get_or_insert_with(|| PlaceKey::from(self.strings[i]))
            .clone())
    }

    fn point(&mut self) -> Result<Point, String> {
        let t = self.r.int()?;
        let id = match self.r.byte()? {
            1 => {
                EventId::from_uuid_bytes(<[u8; 16]>::try_from(self.r.take(16)?).expect("16 bytes"))
            }
            _ => {
                let n = self.r.len()?;
                EventId::new(std::str::from_utf8(self.r.take(n)?).map_err(|e| e.to_string())?)
            }
        };
        let ip = match self.r.byte()? {
            4 => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(self.r.take(4)?).expect("4 bytes"),
            )),
            6 => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(self.r.take(16)?).expect("16 bytes"),
            )),
            tag => return Err(format!("unknown address tag {tag}")),
        };
        let call = [self.index()?, self.index()?, self.index()?];
        let call = match self.calls.iter().find(|(c, _)| *c == call) {
            Some((_, shared)) => Arc::clone(shared),
            None => {
                let [name, source, region] = call.map(|i| self.strings[i]);
                let shared = Arc::new(Call::new(name, source, region));
                self.calls.push((call, Arc::clone(&shared)));
                shared
            }
        };
        Ok(Point { t, id, ip, call })
    }

    fn location(&mut self) -> Result<Location, String> {
        let city = self.opt_string()?;
        let subdivision = self.opt_string()?;
        let country = self.opt_string()?;
        let country_code = self.opt_string()?;
        let latitude = self.r.f64()?;
        let longitude = self.r.f64()?;
        let accuracy_radius_km = match self.r.byte()? {
            0 => None,
            _ => Some(u16::try_from(self.r.varint()?).map_err(|e| e.to_string())?),
        };
        let network = self.opt_string()?;
        let asn = match self.r.byte()? {
            0 => None,
            _ => Some(u32::try_from(self.r.varint()?).map_err(|e| e.to_string())?),
        };
        let as_org = self.opt_string()?;
        Ok(Location {
            city,
            subdivision,
            country,
            country_code,
            latitude,
            longitude,
            accuracy_radius_km,
            network,
            asn,
            as_org,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tally::TallyKey;
    use crate::state::test_states::{point, state_seen_at};

    fn rich_state() -> SubjectState {
        let mut state = state_seen_at("AKIAIOSFODNN7EXAMPLE", 1_000);
        state.v = 1;
        state.first_seen_ms = i64::MAX;
        state.latest_ms = i64::MIN;
        let mut far = point(5_000);
        far.ip = "2001:db8::7".parse().unwrap();
        far.id = "e-\u{e9}\u{4e2d}".into();
        state
            .stays
            .push(Stay::span("JP/Tokyo/Tokyo", point(2_000), far, -3));
        for (key, loc) in [
            ("AU/NSW/Sydney", Location::default()),
            (
                "JP/Tokyo/Tokyo",
                Location {
                    city: Some("Tokyo".into()),
                    subdivision: Some("Tokyo".into()),
                    country: Some("Japan".into()),
                    country_code: Some("JP".into()),
                    latitude: 35.6895,
                    longitude: -0.0,
                    accuracy_radius_km: Some(u16::MAX),
                    network: Some("2001:db8::/32".into()),
                    asn: Some(u32::MAX),
                    as_org: Some(String::new()),
                },
            ),
        ] {
            state.places.push(Place {
                key: key.into(),
                location: Arc::new(loc),
                first_seen_ms: -1,
                last_seen_ms: 1 << 50,
                count: u64::MAX,
            });
        }
        state.transitions.push(Transition {
            a: "AU/NSW/Sydney".into(),
            b: "JP/Tokyo/Tokyo".into(),
            first_ms: 3,
            last_ms: 4,
        });
        state.alerts.push(AlertMark {
            id: "abc".into(),
            a: String::new(),
            b: String::new(),
            t: 9,
        });
        state
    }

    #[test]
    fn a_packed_state_unpacks_equal() {
        for state in [
            SubjectState::new("AKIAEMPTYEMPTYEMPTYE"),
            state_seen_at("AKIAIOSFODNN7EXAMPLE", 1_000),
            rich_state(),
        ] {
            let packed = pack(&state);
            assert_eq!(unpack(&packed).unwrap(), state);
        }
    }

    #[test]
    fn equal_text_packs_once_whether_or_not_it_is_one_allocation() {
        let shared = rich_state();
        // Through JSON every string is an allocation of its own; unpacking shares them.
        let apart: SubjectState =
            serde_json::from_str(&serde_json::to_string(&shared).unwrap()).unwrap();
        let shared_again = unpack(&pack(&apart)).unwrap();
        assert_eq!(pack(&shared), pack(&apart));
        assert_eq!(pack(&shared_again), pack(&apart));
        // More strings than the cache of recent ones has slots, each used twice, so that
        // entries are evicted and found again by their text.
        let mut many = SubjectState::new("AKIAMANYMANYMANYMANY");
        for i in 0..(RECENT_SLOTS as i64 * 3) {
            let place = format!("place-{i}");
            many.stays.push(Stay::at(place.as_str(), point(i)));
            many.stays
                .push(Stay::at(format!("place-{i}").as_str(), point(i + 1)));
        }
        let packed = pack(&many);
        assert_eq!(unpack(&packed).unwrap(), many);
        let apart: SubjectState =
            serde_json::from_str(&serde_json::to_string(&many).unwrap()).unwrap();
        assert_eq!(pack(&apart), packed);
    }

    #[test]
    fn strings_at_one_address_with_other_lengths_are_other_strings() {
        let text = String::from("us-east-1");
        let mut w = Writer::default();
        for s in [&text[..3], &text[..], &text[..0], "", &text[..3], &text[..]] {
            w.str(s);
        }
        assert_eq!(w.strings, ["us-", "us-east-1", ""]);
        assert_eq!(w.bytes, [0, 1, 2, 2, 0, 1]);
    }

    #[test]
    fn strings_that_share_a_fingerprint_are_told_apart_by_their_text() {
        // The same length and the same first and last eight bytes.
        let [a, b] = ["12345678-aaaa-87654321", "12345678-bbbb-87654321"];
        assert_eq!(fingerprint(a), fingerprint(b));
        let mut w = Writer::default();
        for s in [a, b, a, b] {
            w.str(s);
        }
        assert_eq!(w.strings, [a, b]);
        assert_eq!(w.bytes, [0, 1, 0, 1]);
        // Separate allocations: found by their text, not the cache of addresses.
        let (a2, b2) = (a.to_owned(), b.to_owned());
        w.str(&b2);
        w.str(&a2);
        assert_eq!(w.bytes, [0, 1, 0, 1, 1, 0]);
    }

    #[test]
    fn the_latest_time_reads_as_unpacking_reads_it() {
        for state in [
            SubjectState::new("AKIAEMPTYEMPTYEMPTYE"),
            state_seen_at("AKIAIOSFODNN7EXAMPLE", 1_000),
            state_seen_at("AKIAIOSFODNN7EXAMPLE", -7),
            rich_state(),
        ] {
            let packed = pack(&state);
            assert_eq!(latest_ms(&packed).unwrap(), state.latest_ms);
        }
        let packed = pack(&rich_state());
        assert!(latest_ms(&packed[..4]).is_err(), "cut in its first string");
        let mut wrong = packed;
        wrong[0] = 9;
        assert!(latest_ms(&wrong).is_err());
    }

    #[test]
    fn a_packed_state_is_much_smaller_than_its_json() {
        let mut state = state_seen_at("AKIAIOSFODNN7EXAMPLE", 1_000);
        for k in 1..10 {
            let mut p = point(k * 3_600_000);
            p.id = format!("f50d93bf-333a-4ced-a951-c285b577da{k:02}").into();
            state.stays.push(Stay::at("sydney", p));
        }
        let json = serde_json::to_vec(&state).unwrap().len();
        let packed = pack(&state).len();
        assert!(packed * 3 < json, "{packed} bytes packed, {json} as JSON");
    }

    #[test]
    fn event_ids_keep_their_exact_text() {
        for id in [
            "f50d93bf-333a-4ced-a951-c285b577da37",
            "F50D93BF-333A-4CED-A951-C285B577DA37",
            "f50d93bf-333a-4ced-a951-c285b577da3",
            "f50d93bf-333a-4ced-a951-c285b577da3g",
            "f50d93bf0333a-4ced-a951-c285b577da37",
            "",
        ] {
            let mut state = SubjectState::new("AKIAIOSFODNN7EXAMPLE");
            let mut p = point(1_000);
            p.id = id.into();
            state.stays.push(Stay::at("sydney", p));
            assert_eq!(unpack(&pack(&state)).unwrap(), state, "{id}");
        }
    }

    #[test]
    fn damaged_input_is_an_error() {
        let packed = pack(&rich_state());
        for cut in 0..packed.len() {
            assert!(unpack(&packed[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong = packed.clone();
        wrong[0] = 9;
        assert!(unpack(&wrong).is_err());
        let mut longer = packed;
        longer.push(0);
        assert!(unpack(&longer).is_err());
    }

    fn marks() -> Vec<AlertMark> {
        [
            "0123456789abcdef0123456789abcdef",
            "0123456789ABCDEF0123456789ABCDEF",
            "abc",
            "",
            "0123456789abcdef0123456789abcdeg",
            "\u{e9}123456789abcdef0123456789abcd",
        ]
        .iter()
        .enumerate()
        .map(|(i, id)| AlertMark {
            id: (*id).to_owned(),
            a: if i % 2 == 0 {
                String::new()
            } else {
                "AU/NSW/Sydney".into()
            },
            b: "JP/\u{6771}\u{4eac}".into(),
            t: [i64::MIN, -1, 0, 1, i64::MAX, 1_741_564_800_000][i],
        })
        .collect()
    }

    fn seen() -> Seen {
        Seen {
            days: vec![
                DayCount {
                    day: i64::MIN,
                    count: 0,
                    first: vec![i64::MAX, 0],
                },
                DayCount {
                    day: -1,
                    count: 1,
                    first: vec![-DAY_MS],
                },
                DayCount {
                    day: 20_157,
                    count: u64::MAX,
                    first: vec![20_157 * DAY_MS, 20_158 * DAY_MS - 1, 5],
                },
                DayCount {
                    day: i64::MAX,
                    count: 3,
                    first: Vec::new(),
                },
            ],
            last_ms: i64::MIN,
        }
    }

    fn rich_tallies() -> Vec<Tally> {
        vec![
            TallyKey::account("123456789012").empty(),
            TallyKey::command("123456789012", "ec2.amazonaws.com", "RunInstances").empty(),
            TallyKey::error("123456789012", "AccessDenied").empty(),
            TallyKey::key_addresses("AKIAIOSFODNN7EXAMPLE").empty(),
            Tally::Account(AccountTally {
                v: u32::MAX,
                account: "\u{1f600}".into(),
                first_seen_ms: i64::MIN,
                latest_ms: i64::MAX,
                alerts: marks(),
            }),
            Tally::Command(CommandTally {
                v: 1,
                account: "123456789012".into(),
                source: "s3.amazonaws.com".into(),
                name: "GetObject".into(),
                latest_ms: 7,
                places: vec![
                    PlaceSeen {
                        key: "AU/NSW/Sydney".into(),
                        label: "Sydney, Australia".into(),
                        seen: seen(),
                    },
                    PlaceSeen {
                        key: "a key longer than twenty-four bytes".into(),
                        label: String::new(),
                        seen: Seen::default(),
                    },
                ],
                applied: vec![0, 1, u64::MAX, 0x0123_4567_89ab_cdef],
            }),
            Tally::Error(ErrorTally {
                v: 1,
                account: String::new(),
                code: "Client.UnauthorizedOperation".into(),
                latest_ms: -5,
                seen: seen(),
                applied: vec![42],
            }),
            Tally::KeyAddresses(KeyAddressTally {
                v: 1,
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                latest_ms: 1_741_564_800_000,
                addresses: vec![
                    AddressSeen {
                        ip: "203.0.113.7".into(),
                        seen: seen(),
                    },
                    AddressSeen {
                        ip: "2001:db8::7".into(),
                        seen: Seen::default(),
                    },
                    AddressSeen {
                        ip: "ec2.amazonaws.com".into(),
                        seen: seen(),
                    },
                ],
                alerts: marks(),
                applied: vec![u64::MAX; 32],
            }),
        ]
    }

    #[test]
    fn a_packed_tally_unpacks_equal() {
        for tally in rich_tallies() {
            assert_eq!(
                unpack_tally(&pack_tally(&tally)).unwrap(),
                tally,
                "{tally:?}"
            );
        }
    }

    #[test]
    fn packing_after_room_for_a_header_packs_the_same_bytes_after_it() {
        for room in [0, 1, 8] {
            let state = rich_state();
            let after = pack_after(room, &state);
            assert!(after[..room].iter().all(|b| *b == 0), "room {room}");
            assert_eq!(after[room..], pack(&state), "room {room}");
            for tally in rich_tallies() {
                let after = pack_tally_after(room, &tally);
                assert!(after[..room].iter().all(|b| *b == 0), "room {room}");
                assert_eq!(after[room..], pack_tally(&tally), "room {room}: {tally:?}");
            }
        }
    }

    #[test]
    fn a_packed_key_tally_is_much_smaller_than_its_json() {
        let Tally::KeyAddresses(mut k) = TallyKey::key_addresses("AKIAIOSFODNN7EXAMPLE").empty()
        else {
            unreachable!()
        };
        let t0 = 20_157 * DAY_MS;
        for i in 0..3 {
            let mut seen = Seen::default();
            seen.record(20_157, 4, &[t0 + i * 3_600_000], 1);
            k.addresses.push(AddressSeen {
                ip: format!("203.0.113.{i}").into(),
                seen,
            });
        }
        for i in 0..8u64 {
            k.alerts.push(AlertMark {
                id: format!(
                    "{:032x}",
                    u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                ),
                a: String::new(),
                b: String::new(),
                t: t0 + i as i64,
            });
            k.applied.push(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        let tally = Tally::KeyAddresses(k);
        let (packed, json) = (pack_tally(&tally).len(), tally.to_json().len());
        assert!(packed * 2 < json, "{packed} bytes packed, {json} as JSON");
    }

    #[test]
    fn a_mark_id_of_hex_digits_packs_to_its_bytes_and_an_unknown_id_form_is_an_error() {
        let with_id = |id: &str| {
            Tally::Account(AccountTally {
                alerts: vec![AlertMark {
                    id: id.to_owned(),
                    a: String::new(),
                    b: String::new(),
                    t: 0,
                }],
                ..match TallyKey::account("123456789012").empty() {
                    Tally::Account(a) => a,
                    _ => unreachable!(),
                }
            })
        };
        let hex = pack_tally(&with_id("0123456789abcdef0123456789abcdef"));
        let text = pack_tally(&with_id("0123456789ABCDEF0123456789ABCDEF"));
        assert_eq!(
            text.len() - hex.len(),
            32 + 1 - 16,
            "16 bytes, not a length and 32"
        );
        // The id's form byte sits after the layout, kind, version, account, two times and
        // the mark count.
        let at = hex.len() - (1 + 16 + 1 + 1 + 1);
        assert_eq!(hex[at], 1);
        let mut wrong = hex;
        wrong[at] = 2;
        assert_eq!(unpack_tally(&wrong).unwrap_err(), "unknown mark id form 2");
    }

    #[test]
    fn a_damaged_packed_tally_is_an_error() {
        for tally in rich_tallies() {
            let packed = pack_tally(&tally);
            for cut in 0..packed.len() {
                assert!(
                    unpack_tally(&packed[..cut]).is_err(),
                    "{tally:?} cut at {cut}"
                );
            }
            let mut longer = packed.clone();
            longer.push(0);
            assert!(unpack_tally(&longer).is_err());
            for (at, byte) in [(0, 9), (1, 4)] {
                let mut wrong = packed.clone();
                wrong[at] = byte;
                assert!(unpack_tally(&wrong).is_err(), "byte {at} set to {byte}");
            }
        }
    }

    /// Generated tallies, strings and numbers of any value, pack and unpack equal.
    /// `GEOTRAIL_PROPTEST_CASES` runs it longer.
    mod generated {
        use proptest::prelude::*;

        use super::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::collection::vec(any::<char>(), 0..40).prop_map(String::from_iter),
                any::<u128>().prop_map(|id| format!("{id:032x}")),
            ]
        }

        fn seen() -> impl Strategy<Value = Seen> {
            let day = (
                any::<i64>(),
                any::<u64>(),
                prop::collection::vec(any::<i64>(), 0..4),
            );
            (prop::collection::vec(day, 0..4), any::<i64>()).prop_map(|(days, last_ms)| Seen {
                days: days
                    .into_iter()
                    .map(|(day, count, first)| DayCount { day, count, first })
                    .collect(),
                last_ms,
            })
        }

        fn marks() -> impl Strategy<Value = Vec<AlertMark>> {
            prop::collection::vec(
                (text(), text(), text(), any::<i64>()).prop_map(|(id, a, b, t)| AlertMark {
                    id,
                    a,
                    b,
                    t,
                }),
                0..4,
            )
        }

        fn tally() -> impl Strategy<Value = Tally> {
            let applied = || prop::collection::vec(any::<u64>(), 0..4);
            prop_oneof![
                (any::<u32>(), text(), any::<i64>(), any::<i64>(), marks()).prop_map(
                    |(v, account, first_seen_ms, latest_ms, alerts)| Tally::Account(AccountTally {
                        v,
                        account,
                        first_seen_ms,
                        latest_ms,
                        alerts,
                    })
                ),
                (
                    (any::<u32>(), text(), text(), text(), any::<i64>()),
                    prop::collection::vec((text(), text(), seen()), 0..4),
                    applied(),
                )
                    .prop_map(
                        |((v, account, source, name, latest_ms), places, applied)| {
                            Tally::Command(CommandTally {
                                v,
                                account,
                                source,
                                name,
                                latest_ms,
                                places: places
                                    .into_iter()
                                    .map(|(key, label, seen)| PlaceSeen {
                                        key: key.into(),
                                        label,
                                        seen,
                                    })
                                    .collect(),
                                applied,
                            })
                        }
                    ),
                (
                    any::<u32>(),
                    text(),
                    text(),
                    any::<i64>(),
                    seen(),
                    applied()
                )
                    .prop_map(|(v, account, code, latest_ms, seen, applied)| {
                        Tally::Error(ErrorTally {
                            v,
                            account,
                            code,
                            latest_ms,
                            seen,
                            applied,
                        })
                    }),
                (
                    (any::<u32>(), text(), any::<i64>()),
                    prop::collection::vec((text(), seen()), 0..4),
                    marks(),
                    applied(),
                )
                    .prop_map(
                        |((v, access_key_id, latest_ms), addresses, alerts, applied)| {
                            Tally::KeyAddresses(KeyAddressTally {
                                v,
                                access_key_id,
                                latest_ms,
                                addresses: addresses
                                    .into_iter()
                                    .map(|(ip, seen)| AddressSeen {
                                        ip: ip.into(),
                                        seen,
                                    })
                                    .collect(),
                                alerts,
                                applied,
                            })
                        }
                    ),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: crate::proptest_cases(256), ..ProptestConfig::default() })]
            #[test]
            fn any_tally_packs_and_unpacks_equal(tally in tally()) {
                let packed = pack_tally(&tally);
                prop_assert_eq!(unpack_tally(&packed).unwrap(), tally);
                prop_assert!(unpack_tally(&packed[..packed.len() - 1]).is_err());
            }
        }
    }
}
