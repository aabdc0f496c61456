//! Account-level tallies: what the rarity rules remember between objects.
//!
//! Each tally is its own store item, so an object reads only the few it touches and a
//! busy account never grows one item without bound:
//!
//! | item key | holds |
//! |---|---|
//! | `account#ACCOUNT` | the account's first and latest event time (its learning period), alert marks |
//! | `command#ACCOUNT#SOURCE#NAME` | per city, how often the call came from there, by day |
//! | `error#ACCOUNT#CODE` | how often the error code was returned, by day |
//! | `key#ACCESS_KEY_ID` | per source address, the days the long-term key was used from it |
//!
//! Counts are kept per UTC day of event time, with the earliest few event times of each
//! day, and pruned to the lookback window counted back from the tally's own latest event
//! time. Adding counts commutes, so the same events in any order end in the same tallies.
//! Pruning is by the latest *trusted* time (records from the future never reach a tally),
//! so no single record can wipe an account's history.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::history::AlertMark;
use super::policy::DAY_MS;

/// Layout version of every tally item.
pub const TALLY_VERSION: u32 = 1;
/// Cities kept per call; past it the least recently seen city is forgotten.
pub const MAX_PLACES_PER_COMMAND: usize = 256;
/// Source addresses kept per long-term key.
pub const MAX_ADDRESSES_PER_KEY: usize = 128;
/// Alert marks kept per item (they are also pruned with the lookback).
pub const MAX_TALLY_ALERTS: usize = 256;
/// Object tags a tally remembers. A retry or a replay comes within minutes to hours, while
/// a busy tally sees a new object every few minutes per region: older replays may count
/// twice, which only raises counts of what is already known.
pub const MAX_APPLIED: usize = 32;
/// Key parts are cut to this many bytes: a forged record can carry a huge error code, and
/// a DynamoDB partition key holds at most 2,048 bytes.
const MAX_KEY_PART_BYTES: usize = 256;

/// The UTC day of an event time, in days since the epoch.
pub fn day_of(t_ms: i64) -> i64 {
    t_ms.div_euclid(DAY_MS)
}

/// One UTC day's sightings of one thing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    pub day: i64,
    pub count: u64,
    /// The earliest event times of the day, ascending; as many as the rarity threshold
    /// needs to say exactly how many sightings came before a time on that day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first: Vec<i64>,
}

/// Sightings of one thing by day, ascending, within the lookback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub days: Vec<DayCount>,
    /// The latest event time recorded.
    #[serde(default)]
    pub last_ms: i64,
}

impl Seen {
    /// Sightings strictly before `t` on the days from `lookback_days` before `t`'s day up
    /// to `t`'s day. On `t`'s own day only the kept earliest times are known, which is
    /// exact up to the number kept (the rarity threshold).
    pub fn before(&self, t: i64, lookback_days: i64) -> u64 {
        let d = day_of(t);
        let mut n = 0;
        for dc in &self.days {
            if dc.day >= d - lookback_days && dc.day < d {
                n += dc.count;
            } else if dc.day == d {
                n += dc.first.iter().take_while(|&&f| f < t).count() as u64;
            }
        }
        n
    }

    /// Adds `count` sightings on `day`, of which `times` are the earliest (ascending).
    pub fn record(&mut self, day: i64, count: u64, times: &[i64], keep: usize) {
        let at = self.days.partition_point(|dc| dc.day < day);
        if self.days.get(at).map(|dc| dc.day) != Some(day) {
            self.days.insert(
                at,
                DayCount {
                    day,
                    count: 0,
                    first: Vec::new(),
                },
            );
        }
        let dc = &mut self.days[at];
        dc.count += count;
        dc.first.extend_from_slice(times);
        dc.first.sort_unstable();
        dc.first.truncate(keep);
        if let Some(&last) = times.last() {
            self.last_ms = self.last_ms.max(last);
        }
    }

    /// Drops days before `oldest_day`.
    pub fn prune(&mut self, oldest_day: i64) {
        // Days ascend: a tally is pruned after every object that touches it, and most of
        // the time nothing is old enough to go.
        let old = self.days.partition_point(|dc| dc.day < oldest_day);
        if old > 0 {
            self.days.drain(..old);
        }
    }

    /// Sightings on the days from `lookback_days` before `t`'s day up to that day.
    pub fn within(&self, t: i64, lookback_days: i64) -> u64 {
        let d = day_of(t);
        self.days
            .iter()
            .filter(|dc| dc.day >= d - lookback_days && dc.day <= d)
            .map(|dc| dc.count)
            .sum()
    }

    /// Days with a sighting in the same window as [`within`](Self::within).
    pub fn days_within(&self, t: i64, lookback_days: i64) -> u64 {
        let d = day_of(t);
        self.days
            .iter()
            .filter(|dc| dc.day >= d - lookback_days && dc.day <= d)
            .count() as u64
    }

    /// The earliest sighting kept, if any.
    pub fn first_ms(&self) -> Option<i64> {
        self.days.first().and_then(|dc| dc.first.first().copied())
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }
}

/// An account's clock and the marks of findings raised about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountTally {
    pub v: u32,
    pub account: String,
    /// The earliest event time seen: the learning period starts here.
    pub first_seen_ms: i64,
    pub latest_ms: i64,
    #[serde(default)]
    pub alerts: Vec<AlertMark>,
}

/// Where one API call (`eventSource` + `eventName`) of an account came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandTally {
    pub v: u32,
    pub account: String,
    pub source: String,
    pub name: String,
    pub latest_ms: i64,
    pub places: Vec<PlaceSeen>,
    /// Tags of the latest objects added ([`MAX_APPLIED`], [`object_tag`]): a retried or
    /// replayed object is not counted twice.
    #[serde(default, deserialize_with = "object_tags")]
    pub applied: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceSeen {
    /// [`Location::place_key`](crate::geo::Location::place_key). Held inline (most keys
    /// fit in 24 bytes): judging searches a command's places by key for every city of an
    /// object, and a comparison that first had to fetch the key from elsewhere in memory
    /// was a twelfth of the judging thread.
    pub key: CompactString,
    /// "Sydney, Australia".
    pub label: String,
    pub seen: Seen,
}

/// How often one error code was returned to callers in an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorTally {
    pub v: u32,
    pub account: String,
    pub code: String,
    pub latest_ms: i64,
    pub seen: Seen,
    #[serde(default, deserialize_with = "object_tags")]
    pub applied: Vec<u64>,
}

/// The source addresses a long-term access key was used from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAddressTally {
    pub v: u32,
    pub access_key_id: String,
    pub latest_ms: i64,
    pub addresses: Vec<AddressSeen>,
    #[serde(default)]
    pub alerts: Vec<AlertMark>,
    #[serde(default, deserialize_with = "object_tags")]
    pub applied: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressSeen {
    /// Inline, as [`PlaceSeen::key`] is, for the same search.
    pub ip: CompactString,
    pub seen: Seen,
}

/// One stored tally item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Tally {
    Account(AccountTally),
    Command(CommandTally),
    Error(ErrorTally),
    KeyAddresses(KeyAddressTally),
}

/// Tallies by key, with a fast seeded hash: every object looks up each of its keys a few
/// times, and a key is up to three strings of log text.
pub type TallyMap<V> = foldhash::HashMap<TallyKey, V>;
pub type TallySet = foldhash::HashSet<TallyKey>;

/// A tally's item key; the prefixes never collide with a subject's (an access key id or
/// an ARN).
///
/// Its parts are inline strings: an account id, a service, an API name, an error code and
/// an access key id all fit in one, so a key is compared, hashed and copied without
/// reading or allocating memory of its own. Every object looks up thousands of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TallyKey {
    Account(CompactString),
    Command {
        account: CompactString,
        source: CompactString,
        name: CompactString,
    },
    Error {
        account: CompactString,
        code: CompactString,
    },
    KeyAddresses(CompactString),
}

/// `s` cut, on a character boundary, to what a [`TallyKey`] part holds.
pub(crate) fn key_part(s: &str) -> &str {
    crate::finding::cut(s, MAX_KEY_PART_BYTES)
}

impl TallyKey {
    pub fn command(account: &str, source: &str, name: &str) -> TallyKey {
        TallyKey::Command {
            account: key_part(account).into(),
            source: key_part(source).into(),
            name: key_part(name).into(),
        }
    }

    pub fn error(account: &str, code: &str) -> TallyKey {
        TallyKey::Error {
            account: key_part(account).into(),
            code: key_part(code).into(),
        }
    }

    pub fn account(account: &str) -> TallyKey {
        TallyKey::Account(key_part(account).into())
    }

    pub fn key_addresses(access_key_id: &str) -> TallyKey {
        TallyKey::KeyAddresses(key_part(access_key_id).into())
    }

    /// The item key in a store: `command#123456789012#ec2.amazonaws.com#RunInstances`.
    pub fn item_key(&self) -> String {
        match self {
            TallyKey::Account(a) => format!("account#{a}"),
            TallyKey::Command {
                account,
                source,
                name,
            } => format!("command#{account}#{source}#{name}"),
            TallyKey::Error { account, code } => format!("error#{account}#{code}"),
            TallyKey::KeyAddresses(k) => format!("key#{k}"),
        }
    }

    /// An empty tally for this key.
    pub fn empty(&self) -> Tally {
        match self {
            TallyKey::Account(a) => Tally::Account(AccountTally {
                v: TALLY_VERSION,
                account: a.to_string(),
                first_seen_ms: i64::MAX,
                latest_ms: i64::MIN,
                alerts: Vec::new(),
            }),
            TallyKey::Command {
                account,
                source,
                name,
            } => Tally::Command(CommandTally {
                v: TALLY_VERSION,
                account: account.to_string(),
                source: source.to_string(),
                name: name.to_string(),
                latest_ms: i64::MIN,
                places: Vec::new(),
                applied: Vec::new(),
            }),
            TallyKey::Error { account, code } => Tally::Error(ErrorTally {
                v: TALLY_VERSION,
                account: account.to_string(),
                code: code.to_string(),
                latest_ms: i64::MIN,
                seen: Seen::default(),
                applied: Vec::new(),
            }),
            TallyKey::KeyAddresses(k) => Tally::KeyAddresses(KeyAddressTally {
                v: TALLY_VERSION,
                access_key_id: k.to_string(),
                latest_ms: i64::MIN,
                addresses: Vec::new(),
                alerts: Vec::new(),
                applied: Vec::new(),
            }),
        }
    }
}

impl Tally {
    pub fn key(&self) -> TallyKey {
        match self {
            Tally::Account(a) => TallyKey::Account(a.account.as_str().into()),
            Tally::Command(c) => TallyKey::Command {
                account: c.account.as_str().into(),
                source: c.source.as_str().into(),
                name: c.name.as_str().into(),
            },
            Tally::Error(e) => TallyKey::Error {
                account: e.account.as_str().into(),
                code: e.code.as_str().into(),
            },
            Tally::KeyAddresses(k) => TallyKey::KeyAddresses(k.access_key_id.as_str().into()),
        }
    }

    pub fn item_key(&self) -> String {
        self.key().item_key()
    }

    /// The latest event time recorded: what a store's expiry is counted from.
    pub fn latest_ms(&self) -> i64 {
        match self {
            Tally::Account(a) => a.latest_ms,
            Tally::Command(c) => c.latest_ms,
            Tally::Error(e) => e.latest_ms,
            Tally::KeyAddresses(k) => k.latest_ms,
        }
    }

    /// The tags of objects already added, for tallies that count.
    pub fn applied_mut(&mut self) -> Option<&mut Vec<u64>> {
        match self {
            Tally::Account(_) => None,
            Tally::Command(c) => Some(&mut c.applied),
            Tally::Error(e) => Some(&mut e.applied),
            Tally::KeyAddresses(k) => Some(&mut k.applied),
        }
    }

    /// Whether the object tagged `tag` was added already; if not, remembers it as added.
    pub fn first_application(&mut self, tag: u64) -> bool {
        let Some(applied) = self.applied_mut() else {
            return true;
        };
        if applied.contains(&tag) {
            return false;
        }
        applied.push(tag);
        if applied.len() > MAX_APPLIED {
            applied.remove(0);
        }
        true
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a tally always serializes")
    }

    pub fn from_json(item_key: &str, json: &[u8]) -> Result<Tally, String> {
        let tally: Tally = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        tally.checked(item_key)
    }

    /// `self`, read from the item stored under `item_key`, if its layout is this release's
    /// and it is the tally of that key.
    pub fn checked(self, item_key: &str) -> Result<Tally, String> {
        let v = match &self {
            Tally::Account(a) => a.v,
            Tally::Command(c) => c.v,
            Tally::Error(e) => e.v,
            Tally::KeyAddresses(k) => k.v,
        };
        if v != TALLY_VERSION {
            return Err(format!(
                "layout version {v}; this release reads version {TALLY_VERSION}"
            ));
        }
        if self.item_key() != item_key {
            return Err(format!("holds the tally of {}", self.item_key()));
        }
        Ok(self)
    }
}

/// The tag a tally remembers an object by: the first 8 bytes of SHA-256 over the object's
/// name. A tally holds one per object it counted, and a key tally is touched by every
/// object its key shows up in, so the tag is a number rather than text: eight bytes, not
/// sixty. Two names colliding among a tally's last [`MAX_APPLIED`] would cost one
/// object's counts, at odds of about 2^-58.
pub fn object_tag(object: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"object\0")
        .chain_update(object.as_bytes())
        .chain_update(b"\0")
        .finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 is 32 bytes"))
}

/// Reads tags as numbers, or as the 32-hex-digit text earlier releases wrote (the same
/// digest, so an object counted before an upgrade is still known after it).
fn object_tags<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tag {
        Number(u64),
        Text(String),
    }
    let tags = Vec::<Tag>::deserialize(de)?;
    tags.into_iter()
        .map(|tag| match tag {
            Tag::Number(n) => Ok(n),
            Tag::Text(hex) => hex
                .get(..16)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| serde::de::Error::custom(format!("object tag {hex:?} is not hex"))),
        })
        .collect()
}

/// Drops the `items.len() - cap` least recently seen of `items` (kept in their order),
/// ties going from the end: what a stable sort by recency then a truncation would keep,
/// without sorting. A command seen from more than `cap` cities is over the cap after
/// almost every object, and two sorts of hundreds of places each time were a tenth of
/// the judging thread.
pub(crate) fn evict_least_recent<T>(items: &mut Vec<T>, cap: usize, last_ms: impl Fn(&T) -> i64) {
    let excess = items.len().saturating_sub(cap);
    if excess == 0 {
        return;
    }
    let mut order: Vec<(i64, std::cmp::Reverse<usize>)> = items
        .iter()
        .enumerate()
        .map(|(i, item)| (last_ms(item), std::cmp::Reverse(i)))
        .collect();
    // Every pair is distinct (the index), so the first `excess` are the same set however
    // the selection runs.
    order.select_nth_unstable(excess - 1);
    let mut gone = vec![false; items.len()];
    for &(_, std::cmp::Reverse(i)) in &order[..excess] {
        gone[i] = true;
    }
    let mut at = 0;
    items.retain(|_| {
        at += 1;
        !gone[at - 1]
    });
}

/// Keeps the newest marks within the lookback, at most [`MAX_TALLY_ALERTS`].
pub(crate) fn prune_alerts(alerts: &mut Vec<AlertMark>, oldest_ms: i64) {
    alerts.retain(|m| m.t >= oldest_ms);
    if alerts.len() > MAX_TALLY_ALERTS {
        alerts.sort_by_key(|m| std::cmp::Reverse(m.t));
        alerts.truncate(MAX_TALLY_ALERTS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn eviction_keeps_what_sorting_by_recency_would_keep_in_key_order() {
        // The reference: what bounding did before, two stable sorts and a truncation.
        fn by_sorting(mut items: Vec<(u32, i64)>, cap: usize) -> Vec<(u32, i64)> {
            if items.len() > cap {
                items.sort_by_key(|&(_, last)| std::cmp::Reverse(last));
                items.truncate(cap);
                items.sort_by_key(|&(key, _)| key);
            }
            items
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for case in 0..2_000 {
            let len = next(40) as usize;
            let cap = next(30) as usize;
            // Few distinct times, so that ties are common.
            let items: Vec<(u32, i64)> = (0..len as u32).map(|k| (k, next(6) as i64)).collect();
            let mut evicted = items.clone();
            evict_least_recent(&mut evicted, cap, |&(_, last)| last);
            assert_eq!(evicted, by_sorting(items, cap), "case {case}, cap {cap}");
        }
    }

    #[test]
    fn pruning_drops_exactly_the_days_before_the_oldest() {
        let mut seen = Seen::default();
        for day in [3, 5, 8] {
            seen.record(day, 1, &[day * DAY_MS], 1);
        }
        seen.prune(3);
        assert_eq!(seen.days.len(), 3);
        seen.prune(4);
        assert_eq!(seen.days.iter().map(|d| d.day).collect::<Vec<_>>(), [5, 8]);
        seen.prune(9);
        assert!(seen.is_empty());
    }

    #[test]
    fn before_counts_whole_earlier_days_and_the_earlier_part_of_the_same_day() {
        let mut seen = Seen::default();
        let day = 20_000;
        let t0 = day * DAY_MS;
        seen.record(day - 3, 5, &[t0 - 3 * DAY_MS + H], 2);
        seen.record(day, 3, &[t0 + 9 * H, t0 + 10 * H, t0 + 11 * H], 2);
        assert_eq!(seen.days[1].first, vec![t0 + 9 * H, t0 + 10 * H], "kept 2");
        assert_eq!(seen.before(t0 + 8 * H, 30), 5);
        assert_eq!(seen.before(t0 + 9 * H, 30), 5, "strictly before");
        assert_eq!(seen.before(t0 + 9 * H + 1, 30), 6);
        assert_eq!(
            seen.before(t0 + 12 * H, 30),
            7,
            "exact up to the kept count"
        );
        assert_eq!(seen.before(t0 + 8 * H, 2), 0, "outside the lookback");
        assert_eq!(seen.within(t0, 30), 8);
        assert_eq!(seen.days_within(t0, 30), 2);
        assert_eq!(seen.first_ms(), Some(t0 - 3 * DAY_MS + H));
    }

    #[test]
    fn recording_commutes() {
        let day = 20_000;
        let t0 = day * DAY_MS;
        let parts = [
            (day, 2, vec![t0 + 5 * H, t0 + 6 * H]),
            (day, 1, vec![t0 + H]),
            (day + 1, 4, vec![t0 + DAY_MS]),
        ];
        let mut a = Seen::default();
        for (d, n, ts) in &parts {
            a.record(*d, *n, ts, 2);
        }
        let mut b = Seen::default();
        for (d, n, ts) in parts.iter().rev() {
            b.record(*d, *n, ts, 2);
        }
        assert_eq!(a, b);
    }

    #[test]
    fn keys_are_bounded_and_round_trip_through_json() {
        let long = "E".repeat(10_000);
        let key = TallyKey::error("123456789012", &long);
        assert!(key.item_key().len() < 300);
        let tally = key.empty();
        let back = Tally::from_json(&key.item_key(), tally.to_json().as_bytes()).unwrap();
        assert_eq!(back, tally);
        let err = Tally::from_json("account#1", tally.to_json().as_bytes()).unwrap_err();
        assert!(err.contains("holds the tally of error#"), "{err}");
    }

    #[test]
    fn object_tags_written_as_text_by_earlier_releases_still_match() {
        let tag = object_tag("AWSLogs/1/CloudTrail/x.json.gz");
        let earlier = super::super::history::hash_id(&["object", "AWSLogs/1/CloudTrail/x.json.gz"]);
        let json = format!(
            r#"{{"kind":"error","v":1,"account":"1","code":"E","latest_ms":0,"seen":{{"days":[]}},"applied":["{earlier}",7]}}"#
        );
        let mut tally = Tally::from_json("error#1#E", json.as_bytes()).unwrap();
        assert!(!tally.first_application(tag), "known by its old text tag");
        assert!(!tally.first_application(7));
        assert!(tally.first_application(object_tag("another")));
        let bad = json.replace(&earlier, "not hex");
        let err = Tally::from_json("error#1#E", bad.as_bytes()).unwrap_err();
        assert!(err.contains("not hex"), "{err}");
    }
}
