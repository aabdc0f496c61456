//! A compact, exact binary form of a `SubjectState`, for states held in memory between
//! the objects that touch them.
//!
//! A state's JSON repeats its place key, event names, services and regions in every stay,
//! and most stays are a single event whose first and last points are the same: a few KB a
//! subject. Here every distinct string is stored once and referred to by index, and a
//! stay of one event stores one point, which makes a typical state five to six times
//! smaller and much faster to write and read than JSON. The form never leaves the process:
//! stores keep their own format.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::detect::{AlertMark, Call, EventId, Place, Point, Stay, SubjectState, Transition};
use crate::geo::{Location, PlaceKey};

/// First byte of every packed state, so that a change of layout cannot be misread.
const LAYOUT: u8 = 1;

/// Packs `state`; [`unpack`] gives back an equal state.
pub fn pack(state: &SubjectState) -> Vec<u8> {
    let mut body = Writer::default();
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
        bytes: Vec::with_capacity(1 + 3 + table_bytes + body.bytes.len()),
        ..Writer::default()
    };
    out.bytes.push(LAYOUT);
    out.varint(body.strings.len() as u64);
    for s in &body.strings {
        out.varint(s.len() as u64);
        out.bytes.extend_from_slice(s.as_bytes());
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
        let n = r.len()?;
        let s = std::str::from_utf8(r.take(n)?).map_err(|e| e.to_string())?;
        strings.push(s);
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

#[derive(Default)]
struct Writer<'a> {
    bytes: Vec<u8>,
    /// Distinct strings in order of first use; few per state, so a linear search wins.
    strings: Vec<&'a str>,
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

    fn str(&mut self, s: &'a str) {
        // Shared strings (event names, services, regions) are often the same allocation.
        let same = |t: &&str| (t.as_ptr() == s.as_ptr() && t.len() == s.len()) || *t == s;
        let index = match self.strings.iter().position(same) {
            Some(i) => i,
            None => {
                self.strings.push(s);
                self.strings.len() - 1
            }
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
}
