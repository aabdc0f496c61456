//! The account-level rules: `unusual_city_for_command`, `unusual_error_code` and
//! `long_term_access_key_auth`.
//!
//! Reading an object gathers a [`RuleBatch`]: per (account, call, city, day), per
//! (account, error code, day) and per (long-term key, source address, window), how many
//! events there were and the earliest few of them. [`judge`] then weighs the batch
//! against the tallies the store holds ([`super::tally`]) and adds it to them.
//!
//! # What is rare, in event time
//!
//! - A call (`eventSource` + `eventName`) from a city is rare when the account made it
//!   from that city fewer than `min_seen` times before the call, counting whole UTC days
//!   back to `lookback_days` before the call's day and, on the call's own day, the
//!   sightings earlier than it. An error code the same way, per account.
//! - Nothing is rare during the account's learning period: the first `learning` of event
//!   time from the account's earliest event.
//! - A long-term key's source address is new when the key was not used from it on the
//!   `new_address_days` days before the call's day, nor earlier that day, and the
//!   account is out of learning.
//!
//! # What arrival order can and cannot change
//!
//! Tallies add up counts, which commutes: the same objects in any order end in the same
//! tallies. A verdict is taken when its event is read, against the events read so far;
//! it is the verdict of the whole trail whenever every earlier sighting of the same pair
//! arrived first. When a late object brings an *earlier* sighting of a pair whose later
//! sighting was already reported, the earlier one is judged rare too (nothing came before
//! it) and may be reported as well. So order can add a report of the first sighting of a
//! pair, at most `min_seen` per pair and day, and never takes one away. Likewise a
//! backfill older than an account's first event moves its learning period back, which
//! can only make later events judged already judged.
//!
//! Replays (S3 delivers at least once, Lambda retries) add their counts again. That only
//! raises counts of pairs already seen, so it can hide a repeat of something already
//! known, never invent a rare one; finding ids and alert marks keep replays quiet.

use std::collections::BTreeMap;

use foldhash::{HashMap as FastMap, HashSet as FastSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::history::{containment_step, hash_id, AlertMark, FindingContext, FindingText};
use super::policy::{RulePolicy, SubjectKind, HOUR_MS, MINUTE_MS};
use super::tally::{
    day_of, evict_least_recent, key_part, object_tag, prune_alerts, AddressSeen, PlaceSeen, Seen,
    Tally, TallyKey, TallyMap, TallySet, MAX_ADDRESSES_PER_KEY, MAX_PLACES_PER_COMMAND,
};
use crate::finding::CompactIdentity;
use crate::finding::{
    format_rfc3339_ms, CallRef, CommandEvidence, Finding, LongTermAccessKeyAuth, PlaceCount,
    PlaceRef, Rule, Severity, UnusualCityForCommand, UnusualErrorCode,
};
use crate::geo::{GeoDbInfo, Located, Location, PlaceKey};

/// Calls listed in one finding; the rest are counted.
pub const MAX_CALLS_LISTED: usize = 20;
/// Usual cities listed per call.
const MAX_USUAL_PLACES: usize = 5;
/// Text from the log quoted in a finding is cut to this many characters.
const MAX_QUOTED_CHARS: usize = 512;

/// One event as a rarity finding may list it.
#[derive(Debug)]
pub struct Call {
    pub t: i64,
    pub id: Box<str>,
    pub name: Arc<str>,
    pub source: Arc<str>,
    pub region: Arc<str>,
    /// `sourceIPAddress` as logged (a service name for calls AWS made on the caller's
    /// behalf).
    pub source_ip: Arc<str>,
    pub account: Arc<str>,
    /// Who made the call: an ARN, else the access key id, else the account.
    pub principal: Arc<str>,
    pub identity: Arc<CompactIdentity>,
    pub location: Option<Arc<Location>>,
    pub error_code: Option<Arc<str>>,
    pub error_message: Option<Box<str>>,
    /// Shared: one client's calls carry the same user agent.
    pub user_agent: Option<Arc<str>>,
}

impl Call {
    fn to_ref(&self) -> CallRef {
        CallRef {
            event_id: self.id.to_string(),
            event_time: format_rfc3339_ms(self.t),
            event_name: self.name.to_string(),
            event_source: self.source.to_string(),
            aws_region: self.region.to_string(),
            source_ip_address: self.source_ip.to_string(),
            place: self.location.as_ref().map(|l| l.display_name()),
            error_code: self.error_code.as_deref().map(str::to_owned),
            error_message: self.error_message.as_deref().map(str::to_owned),
            user_agent: self.user_agent.as_deref().map(|u| quoted(u).into()),
        }
    }
}

/// Cuts quoted log text to [`MAX_QUOTED_CHARS`].
pub fn quoted(s: &str) -> Box<str> {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{}...", &s[..end]).into(),
        None => s.into(),
    }
}

/// A kept call, with what judging reads of every group beside it: the call itself,
/// allocated by a reading thread and long since evicted, is read only for a rare one.
/// Fetching it for every group was about a third of `judge_slots`.
#[derive(Debug, Clone)]
pub struct Kept {
    pub t: i64,
    /// The call's account (Panther's groups are keyed by access key, not account).
    pub account: Arc<str>,
    pub call: Arc<Call>,
}

/// How many events one key had in an object, and the earliest few.
#[derive(Debug, Default)]
pub struct Group {
    pub count: u64,
    /// The earliest kept call, held inline: by default one call is kept per group
    /// (`min_seen` 1), and a list of its own would be one more fetch per group judged.
    first: Option<Kept>,
    /// The later kept calls, ascending by (time, id); with `first`, at most the policy's
    /// `keep_times`.
    rest: Vec<Kept>,
}

impl Group {
    /// The kept calls, ascending by (time, id).
    pub fn calls(&self) -> impl Iterator<Item = &Kept> {
        self.first.iter().chain(&self.rest)
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn last(&self) -> Option<&Kept> {
        self.rest.last().or(self.first.as_ref())
    }

    /// Whether an event at `t` would be among the kept ones.
    fn keeps(&self, t: i64, keep: usize) -> bool {
        self.len() < keep || self.last().is_some_and(|c| t < c.t)
    }

    fn add(&mut self, call: Option<&Arc<Call>>, keep: usize) {
        self.count += 1;
        let Some(call) = call else {
            return;
        };
        let at = self
            .calls()
            .take_while(|c| (c.t, &c.call.id) <= (call.t, &call.id))
            .count();
        if at >= keep {
            return;
        }
        let kept = Kept {
            t: call.t,
            account: call.account.clone(),
            call: call.clone(),
        };
        if at == 0 {
            if let Some(was_first) = self.first.replace(kept) {
                self.rest.insert(0, was_first);
            }
        } else {
            // `at` counts kept calls, so there is a first one.
            self.rest.insert(at - 1, kept);
        }
        self.rest.truncate(keep.saturating_sub(1));
    }
}

type CityKey = (Arc<str>, Arc<str>, Arc<str>, PlaceKey, i64);
type ErrorKey = (Arc<str>, Arc<str>, i64);
type KeyAuthKey = (Arc<str>, Arc<str>, i64);
/// (account, principal, place key or error code, window): what one finding is about.
type GroupKey<About = Arc<str>> = (Arc<str>, Arc<str>, About, i64);

/// What one object holds for the account-level rules.
#[derive(Debug, Default)]
pub struct RuleBatch {
    /// Earliest and latest trusted event time per account.
    accounts: FastMap<Arc<str>, (i64, i64)>,
    /// (account, source, name, place key, day).
    cities: FastMap<CityKey, (Group, Arc<Location>)>,
    /// (account, error code, day).
    errors: FastMap<ErrorKey, Group>,
    /// (access key id, source address, window).
    key_auth: FastMap<KeyAuthKey, Group>,
    strings: FastSet<Arc<str>>,
    identities: FastMap<Arc<str>, Arc<CompactIdentity>>,
    /// The groups in the order [`judge`] takes them, once [`RuleBatch::seal`]ed.
    sealed: Option<Sealed>,
}

/// A batch's groups taken out of its maps and sorted, with what judging them needs that
/// depends on the object alone. Done on the reading thread, which has time to spare when
/// every rule is on, rather than on the judging one, which has none.
#[derive(Debug, Default)]
struct Sealed {
    keys: Vec<TallyKey>,
    cities: Vec<(CityKey, (Group, Arc<Location>))>,
    errors: Vec<(ErrorKey, Group)>,
    /// With the id of the finding each group would raise.
    key_auth: Vec<(KeyAuthKey, Group, String)>,
}

/// The maps a sealed batch emptied, kept by the reading thread for its next object.
///
/// Each object fills these from empty: growing them by doubling rehashed every key (a
/// tenth of a reader's time at organisation scale), into tables freshly faulted in since
/// the allocator hands freed pages back within milliseconds.
#[derive(Default)]
struct Spare {
    cities: FastMap<CityKey, (Group, Arc<Location>)>,
    errors: FastMap<ErrorKey, Group>,
    key_auth: FastMap<KeyAuthKey, Group>,
    strings: FastSet<Arc<str>>,
    identities: FastMap<Arc<str>, Arc<CompactIdentity>>,
}

/// Maps larger than this many entries are not kept: one huge object must not leave a
/// reader holding its tables for the rest of the run.
pub(crate) const MAX_SPARE_ENTRIES: usize = 1 << 14;

thread_local! {
    static SPARE: std::cell::RefCell<Spare> = std::cell::RefCell::new(Spare::default());
}

/// Takes a map's entries out, leaving it empty: with its table, to be kept as a spare, up
/// to [`MAX_SPARE_ENTRIES`]; larger, without, so that the table is freed at once rather
/// than held beside its entries while they are sorted.
pub(crate) fn emptied<K, V>(map: &mut FastMap<K, V>) -> Vec<(K, V)> {
    if map.capacity() <= MAX_SPARE_ENTRIES {
        map.drain().collect()
    } else {
        std::mem::take(map).into_iter().collect()
    }
}

/// One shared copy of each distinct text of an object.
fn intern(strings: &mut FastSet<Arc<str>>, s: &str) -> Arc<str> {
    if let Some(shared) = strings.get(s) {
        return shared.clone();
    }
    let shared: Arc<str> = s.into();
    strings.insert(shared.clone());
    shared
}

/// One event as the account-level rules read it, borrowed from the record.
pub struct RuleEvent<'a> {
    pub t: i64,
    pub id: &'a str,
    pub name: &'a str,
    pub source: &'a str,
    pub region: &'a str,
    pub source_ip: &'a str,
    /// The address when `source_ip` is one.
    pub ip: Option<IpAddr>,
    pub account: &'a str,
    pub principal: &'a str,
    pub access_key_id: Option<&'a str>,
    /// Where `ip` is, with its shared place key.
    pub location: Option<&'a Located>,
    pub error_code: Option<&'a str>,
    pub error_message: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

impl RuleBatch {
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// An empty batch, in maps the thread's last sealed batch emptied (see [`Spare`]).
    pub fn recycled() -> RuleBatch {
        let spare = SPARE.with(|spare| std::mem::take(&mut *spare.borrow_mut()));
        RuleBatch {
            cities: spare.cities,
            errors: spare.errors,
            key_auth: spare.key_auth,
            strings: spare.strings,
            identities: spare.identities,
            ..RuleBatch::default()
        }
    }

    /// Sorts the groups for [`judge`] and works out what needs only the object; no event
    /// can be added after. Judging an unsealed batch gives the same result, doing this
    /// work itself.
    pub fn seal(&mut self) {
        if self.sealed.is_some() {
            return;
        }
        let keys = self.distinct_tally_keys();
        let mut cities = emptied(&mut self.cities);
        cities.sort_unstable_by(|(a, _), (b, _)| city_order(a, b));
        let mut errors = emptied(&mut self.errors);
        errors.sort_unstable_by(|(a, _), (b, _)| error_order(a, b));
        let mut key_auth: Vec<_> = emptied(&mut self.key_auth)
            .into_iter()
            .map(|(key, group)| {
                let id = key_auth_id(&key);
                (key, group, id)
            })
            .collect();
        key_auth.sort_unstable_by(|(a, _, _), (b, _, _)| key_auth_order(a, b));
        // Only adding events reads them.
        if self.strings.capacity() <= MAX_SPARE_ENTRIES {
            self.strings.clear();
        } else {
            self.strings = FastSet::default();
        }
        if self.identities.capacity() <= MAX_SPARE_ENTRIES {
            self.identities.clear();
        } else {
            self.identities = FastMap::default();
        }
        let spare = Spare {
            cities: std::mem::take(&mut self.cities),
            errors: std::mem::take(&mut self.errors),
            key_auth: std::mem::take(&mut self.key_auth),
            strings: std::mem::take(&mut self.strings),
            identities: std::mem::take(&mut self.identities),
        };
        SPARE.with(|slot| *slot.borrow_mut() = spare);
        self.sealed = Some(Sealed {
            keys,
            cities,
            errors,
            key_auth,
        });
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        intern(&mut self.strings, s)
    }

    /// Adds one event with a trusted time. `identity` builds the caller's summary, once
    /// per principal and object.
    pub fn add(
        &mut self,
        e: &RuleEvent<'_>,
        policy: &RulePolicy,
        identity: impl FnOnce() -> Arc<CompactIdentity>,
    ) {
        debug_assert!(self.sealed.is_none(), "an event added to a sealed batch");
        let rules = policy.enabled;
        let keep = policy.keep_times();
        let account = self.intern(e.account);
        let span = self
            .accounts
            .entry(account.clone())
            .or_insert((i64::MAX, i64::MIN));
        *span = (span.0.min(e.t), span.1.max(e.t));
        let day = day_of(e.t);

        let city = if rules.contains(Rule::UnusualCityForCommand) {
            e.location
                .filter(|(l, _)| l.city.is_some())
                .map(|(location, place)| {
                    let key = (
                        account.clone(),
                        self.intern(e.source),
                        self.intern(e.name),
                        place.clone(),
                        day,
                    );
                    (key, location.clone())
                })
        } else {
            None
        };
        let error = match e.error_code.filter(|c| !c.is_empty()) {
            Some(code) if rules.contains(Rule::UnusualErrorCode) => {
                Some((account.clone(), self.intern(code), day))
            }
            _ => None,
        };
        // Panther's condition exactly: no error code, no error message, a long-term key.
        let key_auth = match (e.access_key_id, e.ip) {
            (Some(key), Some(ip))
                if rules.contains(Rule::LongTermAccessKeyAuth)
                    && key.starts_with("AKIA")
                    && e.error_code.is_none()
                    && e.error_message.is_none() =>
            {
                let bucket = e.t.div_euclid(policy.key_auth_window_ms.max(1));
                // The logged text is the address itself unless it was a list (a proxy's
                // `X-Forwarded-For`); only then is a canonical form worth an allocation.
                let address = if e.source_ip.contains(',') {
                    self.intern(&ip.to_string())
                } else {
                    self.intern(e.source_ip)
                };
                Some((self.intern(key), address, bucket))
            }
            _ => None,
        };

        // Each group is found once, and the call built only when one of them keeps it.
        let RuleBatch {
            cities,
            errors,
            key_auth: key_auths,
            strings,
            identities,
            ..
        } = self;
        let city = city.map(|(key, location)| {
            &mut cities
                .entry(key)
                .or_insert_with(|| (Group::default(), location))
                .0
        });
        let error = error.map(|key| errors.entry(key).or_default());
        let key_auth = key_auth.map(|key| key_auths.entry(key).or_default());
        let wanted = city.as_ref().is_some_and(|g| g.keeps(e.t, keep))
            || error.as_ref().is_some_and(|g| g.keeps(e.t, keep))
            || key_auth.as_ref().is_some_and(|g| g.keeps(e.t, 1));
        let call = wanted.then(|| {
            let mut intern = |s: &str| intern(strings, s);
            let principal = intern(e.principal);
            let identity = identities
                .entry(principal.clone())
                .or_insert_with(identity)
                .clone();
            Arc::new(Call {
                t: e.t,
                id: e.id.into(),
                name: intern(e.name),
                source: intern(e.source),
                region: intern(e.region),
                source_ip: intern(e.source_ip),
                account: account.clone(),
                principal,
                identity,
                location: e.location.map(|(location, _)| Arc::clone(location)),
                error_code: e.error_code.map(&mut intern),
                error_message: e.error_message.map(quoted),
                user_agent: e.user_agent.map(&mut intern),
            })
        });
        if let Some(g) = city {
            g.add(call.as_ref(), keep);
        }
        if let Some(g) = error {
            g.add(call.as_ref(), keep);
        }
        if let Some(g) = key_auth {
            g.add(call.as_ref(), 1);
        }
    }

    /// Every tally the batch reads and writes, sorted.
    pub fn tally_keys(&self) -> std::borrow::Cow<'_, [TallyKey]> {
        match &self.sealed {
            Some(sealed) => std::borrow::Cow::Borrowed(&sealed.keys),
            None => std::borrow::Cow::Owned(self.distinct_tally_keys()),
        }
    }

    fn distinct_tally_keys(&self) -> Vec<TallyKey> {
        // Distinct parts first, sorted as the keys are, so that each key's strings are
        // copied once, not once per city, day or address of the object (thousands).
        // `TallyKey` orders by kind, then by these parts, cut, in this order.
        fn distinct<'a, T: 'a>(
            parts: impl Iterator<Item = T>,
            cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
        ) -> Vec<T> {
            let mut parts: Vec<T> = parts.collect();
            parts.sort_unstable_by(&cmp);
            parts.dedup_by(|a, b| cmp(a, b).is_eq());
            parts
        }
        let accounts = distinct(self.accounts.keys(), |a, b| tally_cmp(&[a], &[b]));
        let commands = distinct(
            self.cities.keys().map(|(a, s, n, _, _)| [a, s, n]),
            |x, y| tally_cmp(x, y),
        );
        let errors = distinct(self.errors.keys().map(|(a, c, _)| [a, c]), |x, y| {
            tally_cmp(x, y)
        });
        let access_keys = distinct(self.key_auth.keys().map(|(k, _, _)| k), |a, b| {
            tally_cmp(&[a], &[b])
        });
        let mut keys =
            Vec::with_capacity(accounts.len() + commands.len() + errors.len() + access_keys.len());
        keys.extend(accounts.into_iter().map(|a| TallyKey::account(a)));
        keys.extend(
            commands
                .into_iter()
                .map(|[a, s, n]| TallyKey::command(a, s, n)),
        );
        keys.extend(errors.into_iter().map(|[a, c]| TallyKey::error(a, c)));
        keys.extend(access_keys.into_iter().map(|k| TallyKey::key_addresses(k)));
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        keys
    }
}

/// What a finding about a (principal, place or code, window) gathers while judging.
struct RareGroup {
    calls: Vec<Arc<Call>>,
    commands: Vec<CommandEvidence>,
    location: Option<Arc<Location>>,
    seen_before: u64,
    days_seen: u64,
    first_seen: Option<i64>,
    last_seen: Option<i64>,
}

/// Orders text the batch interned: one copy per distinct string, so equal parts are
/// usually the same pointer and need no byte comparison (keys share their account).
fn shared_cmp(a: &Arc<str>, b: &Arc<str>) -> std::cmp::Ordering {
    if Arc::ptr_eq(a, b) {
        std::cmp::Ordering::Equal
    } else {
        a.cmp(b)
    }
}

/// Orders key parts as their tally items hold them: cut to the key length
/// ([`key_part`]), so that all of an object's keys of one tally sort together, even where
/// a forged record's over-long text was cut to meet another's.
fn tally_cmp(a: &[&Arc<str>], b: &[&Arc<str>]) -> std::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if Arc::ptr_eq(x, y) {
                std::cmp::Ordering::Equal
            } else {
                key_part(x).cmp(key_part(y))
            }
        })
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// [`tally_cmp`], then the whole parts: keys cut to meet are told apart, so that the
/// order never depends on the batch's hash maps.
fn key_cmp(a: &[&Arc<str>], b: &[&Arc<str>]) -> std::cmp::Ordering {
    tally_cmp(a, b).then_with(|| {
        a.iter()
            .zip(b)
            .map(|(x, y)| shared_cmp(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}

fn command_parts(k: &CityKey) -> [&Arc<str>; 3] {
    [&k.0, &k.1, &k.2]
}

fn error_parts(k: &ErrorKey) -> [&Arc<str>; 2] {
    [&k.0, &k.1]
}

/// The order cities are judged in: each command's cities and days together.
fn city_order(a: &CityKey, b: &CityKey) -> std::cmp::Ordering {
    key_cmp(&command_parts(a), &command_parts(b))
        .then_with(|| a.3.cmp(&b.3))
        .then(a.4.cmp(&b.4))
}

fn error_order(a: &ErrorKey, b: &ErrorKey) -> std::cmp::Ordering {
    key_cmp(&error_parts(a), &error_parts(b)).then(a.2.cmp(&b.2))
}

/// Each key's addresses and windows together.
fn key_auth_order(a: &KeyAuthKey, b: &KeyAuthKey) -> std::cmp::Ordering {
    key_cmp(&[&a.0], &[&b.0])
        .then_with(|| shared_cmp(&a.1, &b.1))
        .then(a.2.cmp(&b.2))
}

/// A batch's groups in judging order: as sealed, else sorted here.
fn in_order<'b, K, V>(
    sealed: Option<&'b [(K, V)]>,
    unsealed: &'b FastMap<K, V>,
    order: fn(&K, &K) -> std::cmp::Ordering,
) -> Vec<(&'b K, &'b V)> {
    match sealed {
        Some(sealed) => sealed.iter().map(|(k, v)| (k, v)).collect(),
        None => {
            let mut groups: Vec<_> = unsealed.iter().collect();
            groups.sort_unstable_by(|(a, _), (b, _)| order(a, b));
            groups
        }
    }
}

/// The id of the finding about a long-term key's use from an address in a window.
fn key_auth_id((access_key, ip, window): &KeyAuthKey) -> String {
    hash_id(&[
        Rule::LongTermAccessKeyAuth.as_str(),
        access_key,
        ip,
        &window.to_string(),
    ])
}

/// A tally key as the batch names it, borrowed: found among the batch's sorted keys
/// without building a [`TallyKey`] (one to three copied strings) for every lookup.
#[derive(Clone, Copy)]
enum KeyRef<'a> {
    Account(&'a str),
    Command(&'a str, &'a str, &'a str),
    Error(&'a str, &'a str),
    KeyAddresses(&'a str),
}

impl KeyRef<'_> {
    /// How `key` orders against this one: as `TallyKey`'s derived order does, by kind,
    /// then by the parts cut as the key holds them.
    fn order_of(self, key: &TallyKey) -> std::cmp::Ordering {
        let rank = |k: &TallyKey| match k {
            TallyKey::Account(_) => 0,
            TallyKey::Command { .. } => 1,
            TallyKey::Error { .. } => 2,
            TallyKey::KeyAddresses(_) => 3,
        };
        let parts = |a: &[&str], b: &[&str]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| x.cmp(&key_part(y)))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        match (key, self) {
            (TallyKey::Account(a), KeyRef::Account(b)) => parts(&[a], &[b]),
            (
                TallyKey::Command {
                    account,
                    source,
                    name,
                },
                KeyRef::Command(a, s, n),
            ) => parts(&[account, source, name], &[a, s, n]),
            (TallyKey::Error { account, code }, KeyRef::Error(a, c)) => {
                parts(&[account, code], &[a, c])
            }
            (TallyKey::KeyAddresses(k), KeyRef::KeyAddresses(b)) => parts(&[k], &[b]),
            (key, this) => {
                let this_rank = match this {
                    KeyRef::Account(_) => 0,
                    KeyRef::Command(..) => 1,
                    KeyRef::Error(..) => 2,
                    KeyRef::KeyAddresses(_) => 3,
                };
                rank(key).cmp(&this_rank)
            }
        }
    }
}

/// The tallies one batch reads and writes, each at its key's place in the batch's sorted
/// [`RuleBatch::tally_keys`]. Judging finds them by position: a busy object touches
/// thousands, and hashing each key (and building it first) several times per object was
/// a tenth of the judging thread.
pub struct Slots<'k> {
    keys: &'k [TallyKey],
    pub tallies: Vec<Tally>,
    /// Whether each tally changed and must be saved.
    pub changed: Vec<bool>,
}

impl<'k> Slots<'k> {
    /// `tallies` in `keys`' order; `None` for a tally the store does not have.
    pub fn new(keys: &'k [TallyKey], tallies: impl IntoIterator<Item = Option<Tally>>) -> Self {
        let tallies: Vec<Tally> = keys
            .iter()
            .zip(tallies)
            .map(|(key, tally)| tally.unwrap_or_else(|| key.empty()))
            .collect();
        assert_eq!(tallies.len(), keys.len(), "a tally for every key");
        Slots {
            keys,
            changed: vec![false; keys.len()],
            tallies,
        }
    }

    /// Where `key` is. Runs of groups come in key order, so the slot after the previous
    /// one (`hint`) is tried first.
    fn find(&self, key: KeyRef<'_>, hint: usize) -> usize {
        if let Some(k) = self.keys.get(hint) {
            if key.order_of(k).is_eq() {
                return hint;
            }
        }
        self.keys
            .binary_search_by(|k| key.order_of(k))
            .expect("every key the batch touches is among its tally keys")
    }

    fn has_alerted(&self, at: usize, id: &str) -> bool {
        match &self.tallies[at] {
            Tally::Account(a) => a.alerts.iter().any(|m| m.id == id),
            Tally::KeyAddresses(k) => k.alerts.iter().any(|m| m.id == id),
            _ => false,
        }
    }

    fn mark(&mut self, at: usize, id: &str, t: i64) {
        let mark = AlertMark {
            id: id.to_owned(),
            a: String::new(),
            b: String::new(),
            t,
        };
        match &mut self.tallies[at] {
            Tally::Account(a) => a.alerts.push(mark),
            Tally::KeyAddresses(k) => k.alerts.push(mark),
            _ => unreachable!("alert marks live in account and key tallies"),
        }
        self.changed[at] = true;
    }
}

/// What judging one object did.
#[derive(Debug, Default)]
pub struct Judged {
    /// Findings not raised before, sorted by id.
    pub findings: Vec<Finding>,
    /// The tallies that changed and must be saved.
    pub changed: TallySet,
    /// Findings raised (and marked) but below the policy's `report_min`, so never built.
    pub unreported: u64,
}

/// [`judge_slots`] over tallies held in a map (which must hold every key of
/// [`RuleBatch::tally_keys`] that the store has; missing ones start empty). Every key of
/// the batch is in the map afterwards.
pub fn judge(
    batch: &RuleBatch,
    tallies: &mut TallyMap<Tally>,
    policy: &RulePolicy,
    geoip: &GeoDbInfo,
    source_object: &str,
) -> Judged {
    let keys = batch.tally_keys();
    let mut slots = Slots::new(&keys, keys.iter().map(|k| tallies.remove(k)));
    let (findings, unreported) = judge_slots(batch, &mut slots, policy, geoip, source_object);
    let mut changed = TallySet::default();
    for ((key, tally), was_changed) in keys.iter().zip(slots.tallies).zip(slots.changed) {
        if was_changed {
            changed.insert(key.clone());
        }
        tallies.insert(key.clone(), tally);
    }
    Judged {
        findings,
        changed,
        unreported,
    }
}

/// Judges `batch` against its tallies, adds the batch to them, and returns the findings
/// not raised before, sorted by id, with how many were raised below the policy's
/// `report_min`.
pub fn judge_slots(
    batch: &RuleBatch,
    slots: &mut Slots<'_>,
    policy: &RulePolicy,
    geoip: &GeoDbInfo,
    source_object: &str,
) -> (Vec<Finding>, u64) {
    let mut unreported = 0;
    // Accounts first: the learning period counts from the earliest event, this object's
    // included.
    for (account, (lo, hi)) in &batch.accounts {
        let at = slots.find(KeyRef::Account(account), 0);
        if let Tally::Account(a) = &mut slots.tallies[at] {
            let was = (a.first_seen_ms, a.latest_ms);
            a.first_seen_ms = a.first_seen_ms.min(*lo);
            // Every object of an account touches this item; moving its clock only by the
            // hour keeps racing writers off it (the clock only prunes marks and sets the
            // TTL).
            if a.latest_ms == i64::MIN || *hi > a.latest_ms.saturating_add(HOUR_MS) {
                a.latest_ms = *hi;
            }
            if was != (a.first_seen_ms, a.latest_ms) {
                slots.changed[at] = true;
            }
        }
    }
    // When each account's learning period ends, read once rather than per call.
    let learning_end: FastMap<&str, i64> = batch
        .accounts
        .keys()
        .filter_map(
            |account| match &slots.tallies[slots.find(KeyRef::Account(account), 0)] {
                Tally::Account(a) => Some((
                    &**account,
                    a.first_seen_ms.saturating_add(policy.learning_ms),
                )),
                _ => None,
            },
        )
        .collect();
    let learning_over =
        |account: &str, t: i64| learning_end.get(account).is_some_and(|end| t >= *end);
    // Counted once per object: a retry after a lost race, or a replay, finds its tag.
    let tag = object_tag(source_object);
    let mut findings = Vec::new();
    let lookback = policy.lookback_days;
    let keep = policy.keep_times();
    // A group's kept times, for its tally; one buffer for all groups.
    let mut times: Vec<i64> = Vec::with_capacity(keep);

    // (account, principal, place key, window) -> rare calls.
    let mut city_groups: BTreeMap<GroupKey<PlaceKey>, RareGroup> = BTreeMap::new();
    let sealed = batch.sealed.as_ref();
    let city_keys = in_order(sealed.map(|s| &s.cities[..]), &batch.cities, city_order);
    // The slot after the last one found: runs come in key order.
    let mut hint = 0;
    // Each command's cities and days come together: its tally is looked up, and counted
    // for this object, once.
    for runs in
        city_keys.chunk_by(|(a, _), (b, _)| tally_cmp(&command_parts(a), &command_parts(b)).is_eq())
    {
        let (account, source, name, _, _) = runs[0].0;
        let at_tally = slots.find(KeyRef::Command(account, source, name), hint);
        hint = at_tally + 1;
        let entry = &mut slots.tallies[at_tally];
        // Counted once per object: a retry after a lost race, or a replay, finds its tag.
        let counts = entry.first_application(tag);
        let Tally::Command(tally) = entry else {
            unreachable!("a command key holds a command tally")
        };
        for &(key, (group, location)) in runs {
            let (_, _, _, place, day) = key;
            // Sorted by key, so that the same events in any order give the same item.
            let at = match tally.places.binary_search_by(|p| p.key.as_str().cmp(place)) {
                Ok(at) => at,
                Err(at) => {
                    tally.places.insert(
                        at,
                        PlaceSeen {
                            key: place.as_str().into(),
                            label: location.display_name(),
                            seen: Seen::default(),
                        },
                    );
                    at
                }
            };
            for (i, kept) in group.calls().enumerate() {
                let before = tally.places[at].seen.before(kept.t, lookback) + i as u64;
                if before >= u64::from(policy.min_seen) || !learning_over(account, kept.t) {
                    continue;
                }
                let call = &kept.call;
                let window = call.t.div_euclid(policy.group_window_ms.max(1));
                let g = city_groups
                    .entry((
                        account.clone(),
                        call.principal.clone(),
                        place.clone(),
                        window,
                    ))
                    .or_insert_with(|| RareGroup {
                        calls: Vec::new(),
                        commands: Vec::new(),
                        location: Some(location.clone()),
                        seen_before: 0,
                        days_seen: 0,
                        first_seen: None,
                        last_seen: None,
                    });
                g.calls.push(call.clone());
                // Built once per command and group: the evidence walks every city of the
                // command, and a burst of one call would otherwise build it per event.
                if !g
                    .commands
                    .iter()
                    .any(|c| *c.event_source == **source && *c.event_name == **name)
                {
                    g.commands.push(command_evidence(
                        tally,
                        at,
                        call,
                        group.count,
                        before,
                        lookback,
                    ));
                }
            }
            if counts {
                times.clear();
                times.extend(group.calls().map(|c| c.t));
                tally.places[at]
                    .seen
                    .record(*day, group.count, &times, keep);
                tally.latest_ms = tally.latest_ms.max(tally.places[at].seen.last_ms);
            }
        }
        if counts {
            slots.changed[at_tally] = true;
        }
    }
    for (key, g) in city_groups {
        if let Some(id) = raise(slots, Rule::UnusualCityForCommand, &key, &g) {
            findings.push(city_finding(id, g, policy, geoip, source_object));
        }
    }

    let mut error_groups: BTreeMap<GroupKey, RareGroup> = BTreeMap::new();
    let error_keys = in_order(sealed.map(|s| &s.errors[..]), &batch.errors, error_order);
    for runs in
        error_keys.chunk_by(|(a, _), (b, _)| tally_cmp(&error_parts(a), &error_parts(b)).is_eq())
    {
        let (account, code, _) = runs[0].0;
        let at_tally = slots.find(KeyRef::Error(account, code), hint);
        hint = at_tally + 1;
        let entry = &mut slots.tallies[at_tally];
        let counts = entry.first_application(tag);
        let Tally::Error(tally) = entry else {
            unreachable!("an error key holds an error tally")
        };
        for &(key, group) in runs {
            let (_, _, day) = key;
            for (i, kept) in group.calls().enumerate() {
                let before = tally.seen.before(kept.t, lookback) + i as u64;
                if before >= u64::from(policy.min_seen) || !learning_over(account, kept.t) {
                    continue;
                }
                let call = &kept.call;
                let window = call.t.div_euclid(policy.group_window_ms.max(1));
                let g = error_groups
                    .entry((
                        account.clone(),
                        call.principal.clone(),
                        code.clone(),
                        window,
                    ))
                    .or_insert_with(|| RareGroup {
                        calls: Vec::new(),
                        commands: Vec::new(),
                        location: None,
                        seen_before: before,
                        days_seen: tally.seen.days_within(call.t, lookback),
                        first_seen: tally.seen.first_ms(),
                        last_seen: (!tally.seen.is_empty()).then_some(tally.seen.last_ms),
                    });
                g.calls.push(call.clone());
            }
            if counts {
                times.clear();
                times.extend(group.calls().map(|c| c.t));
                tally.seen.record(*day, group.count, &times, keep);
                tally.latest_ms = tally.latest_ms.max(tally.seen.last_ms);
            }
        }
        if counts {
            slots.changed[at_tally] = true;
        }
    }
    for (key, g) in error_groups {
        if let Some(id) = raise(slots, Rule::UnusualErrorCode, &key, &g) {
            findings.push(error_finding(id, &key.2, g, policy, geoip, source_object));
        }
    }

    let key_keys: Vec<(&KeyAuthKey, &Group, std::borrow::Cow<'_, str>)> = match sealed {
        Some(sealed) => sealed
            .key_auth
            .iter()
            .map(|(k, g, id)| (k, g, std::borrow::Cow::Borrowed(id.as_str())))
            .collect(),
        None => {
            let mut keys: Vec<_> = batch
                .key_auth
                .iter()
                .map(|(k, g)| (k, g, std::borrow::Cow::Owned(key_auth_id(k))))
                .collect();
            keys.sort_unstable_by(|(a, _, _), (b, _, _)| key_auth_order(a, b));
            keys
        }
    };
    // Where in its tally's marks a key run's windows' marks are (see below).
    let mut marks_in_run: Vec<usize> = Vec::new();
    // Sorted, so each key's addresses and windows come together: its tally is looked up
    // once for all of them. A busy trail has a few of these groups per key and object,
    // hundreds of thousands in all.
    for runs in key_keys.chunk_by(|(a, _, _), (b, _, _)| tally_cmp(&[&a.0], &[&b.0]).is_eq()) {
        let at_tally = slots.find(KeyRef::KeyAddresses(&runs[0].0 .0), hint);
        hint = at_tally + 1;
        let entry = &mut slots.tallies[at_tally];
        let counts = entry.first_application(tag);
        let Tally::KeyAddresses(tally) = entry else {
            unreachable!("a key key holds a key tally")
        };
        let mut dirty = counts;
        // A mark carries the time of its group's first call, which lies in the group's
        // window: only marks of that window can hold the group's id. A key used every hour
        // holds up to MAX_TALLY_ALERTS marks, so they are read once for all of the run's
        // windows, not once per group. The run's own marks, pushed below, are for other
        // ids: no two groups share one.
        let width = policy.key_auth_window_ms.max(1);
        let windows = runs.iter().map(|((_, _, w), _, _)| *w);
        let (first, last) =
            windows.fold((i64::MAX, i64::MIN), |(lo, hi), w| (lo.min(w), hi.max(w)));
        let in_run = first.saturating_mul(width)..last.saturating_add(1).saturating_mul(width);
        marks_in_run.clear();
        marks_in_run.extend(
            tally
                .alerts
                .iter()
                .enumerate()
                .filter(|(_, m)| in_run.contains(&m.t))
                .map(|(i, _)| i),
        );
        for (key, group, id) in runs {
            let (_, ip, window) = key;
            let Some(kept) = group.calls().next() else {
                continue;
            };
            let out_of_learning = learning_over(&kept.account, kept.t);
            let in_window =
                window.saturating_mul(width)..window.saturating_add(1).saturating_mul(width);
            let alerted = marks_in_run.iter().any(|&i| {
                let m = &tally.alerts[i];
                in_window.contains(&m.t) && m.id == **id
            });
            let at = match tally.addresses.binary_search_by(|a| a.ip.as_str().cmp(ip)) {
                Ok(at) => at,
                Err(at) => {
                    tally.addresses.insert(
                        at,
                        AddressSeen {
                            ip: (**ip).into(),
                            seen: Seen::default(),
                        },
                    );
                    at
                }
            };
            let new_address = out_of_learning
                && tally.addresses[at]
                    .seen
                    .before(kept.t, policy.new_address_days)
                    == 0;
            let severity = if new_address {
                Severity::Low
            } else {
                Severity::Info
            };
            if !alerted {
                if severity < policy.report_min {
                    // Raised and remembered like any other, only not written out: on a busy
                    // trail these are most of all findings, and nobody asked to see them.
                    unreported += 1;
                } else {
                    let seen = &tally.addresses[at].seen;
                    let last_seen = seen
                        .days
                        .iter()
                        .rev()
                        .find(|d| d.first.first().is_some_and(|&f| f < kept.t))
                        .map(|_| seen.last_ms.min(kept.t));
                    let known: Vec<String> = tally
                        .addresses
                        .iter()
                        .filter(|a| {
                            a.ip != **ip && a.seen.before(kept.t, policy.new_address_days) > 0
                        })
                        .take(10)
                        .map(|a| a.ip.to_string())
                        .collect();
                    findings.push(key_auth_finding(
                        id.to_string(),
                        &kept.call,
                        group.count,
                        new_address,
                        last_seen,
                        known,
                        policy,
                        geoip,
                        source_object,
                    ));
                }
                tally.alerts.push(AlertMark {
                    id: id.to_string(),
                    a: String::new(),
                    b: String::new(),
                    t: kept.t,
                });
                dirty = true;
            }
            if counts {
                tally.addresses[at]
                    .seen
                    .record(day_of(kept.t), group.count, &[kept.t], 1);
                tally.latest_ms = tally.latest_ms.max(kept.t);
            }
        }
        if dirty {
            slots.changed[at_tally] = true;
        }
    }

    for (tally, _) in slots
        .tallies
        .iter_mut()
        .zip(&slots.changed)
        .filter(|(_, changed)| **changed)
    {
        bound(tally, policy);
    }
    findings.sort_by(|a, b| a.finding_id.cmp(&b.finding_id));
    (findings, unreported)
}

/// The id of the finding about `key` (account, principal, place or code, window), marked
/// in the account's tally; `None` when it was raised before.
fn raise<About: std::ops::Deref<Target = str>>(
    slots: &mut Slots<'_>,
    rule: Rule,
    key: &GroupKey<About>,
    g: &RareGroup,
) -> Option<String> {
    let (account, principal, about, window) = key;
    let id = hash_id(&[
        rule.as_str(),
        account,
        principal,
        about,
        &window.to_string(),
    ]);
    let at = slots.find(KeyRef::Account(account), 0);
    if slots.has_alerted(at, &id) {
        return None;
    }
    let t = g.calls.iter().map(|c| c.t).max().unwrap_or_default();
    slots.mark(at, &id, t);
    Some(id)
}

/// Prunes a tally to the lookback counted back from its own latest time, and caps it.
fn bound(tally: &mut Tally, policy: &RulePolicy) {
    let oldest_day = |latest: i64| day_of(latest) - policy.lookback_days;
    match tally {
        Tally::Account(a) => {
            prune_alerts(
                &mut a.alerts,
                a.latest_ms
                    .saturating_sub(policy.lookback_days * super::policy::DAY_MS),
            );
        }
        Tally::Command(c) => {
            let oldest = oldest_day(c.latest_ms);
            for p in &mut c.places {
                p.seen.prune(oldest);
            }
            c.places.retain(|p| !p.seen.is_empty());
            evict_least_recent(&mut c.places, MAX_PLACES_PER_COMMAND, |p| p.seen.last_ms);
        }
        Tally::Error(e) => e.seen.prune(oldest_day(e.latest_ms)),
        Tally::KeyAddresses(k) => {
            // Addresses matter for `new_address_days`, not the whole lookback.
            let oldest = day_of(k.latest_ms) - policy.new_address_days;
            for a in &mut k.addresses {
                a.seen.prune(oldest);
            }
            k.addresses.retain(|a| !a.seen.is_empty());
            evict_least_recent(&mut k.addresses, MAX_ADDRESSES_PER_KEY, |a| a.seen.last_ms);
            prune_alerts(
                &mut k.alerts,
                k.latest_ms
                    .saturating_sub(policy.new_address_days * super::policy::DAY_MS),
            );
        }
    }
}

fn command_evidence(
    tally: &super::tally::CommandTally,
    at: usize,
    call: &Call,
    calls_here: u64,
    before: u64,
    lookback: i64,
) -> CommandEvidence {
    let mut usual: Vec<PlaceCount> = tally
        .places
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != at)
        .map(|(_, p)| PlaceCount {
            place: p.label.clone(),
            count: p.seen.within(call.t, lookback),
            first_seen: p.seen.first_ms().map(format_rfc3339_ms),
            last_seen: Some(format_rfc3339_ms(p.seen.last_ms)),
        })
        .filter(|p| p.count > 0)
        .collect();
    usual.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.place.cmp(&b.place)));
    usual.truncate(MAX_USUAL_PLACES);
    CommandEvidence {
        event_source: call.source.to_string(),
        event_name: call.name.to_string(),
        calls_from_city: calls_here,
        seen_from_city_before: before,
        seen_in_account: tally
            .places
            .iter()
            .map(|p| p.seen.within(call.t, lookback))
            .sum(),
        first_seen_in_account: tally
            .places
            .iter()
            .filter_map(|p| p.seen.first_ms())
            .min()
            .map(format_rfc3339_ms),
        usual_places: usual,
    }
}

fn context<'a>(
    call: &'a Call,
    kind: SubjectKind,
    geoip: &'a GeoDbInfo,
    source_object: &'a str,
) -> FindingContext<'a> {
    FindingContext {
        subject_kind: kind,
        identity: &call.identity,
        account_id: Some(&call.account),
        source_object,
        geoip,
    }
}

fn listed(calls: &[Arc<Call>]) -> Vec<CallRef> {
    calls
        .iter()
        .take(MAX_CALLS_LISTED)
        .map(|c| c.to_ref())
        .collect()
}

fn city_finding(
    id: String,
    mut g: RareGroup,
    policy: &RulePolicy,
    geoip: &GeoDbInfo,
    source_object: &str,
) -> Finding {
    g.calls.sort_by(|a, b| (a.t, &a.id).cmp(&(b.t, &b.id)));
    let first = g.calls[0].clone();
    let location = g.location.clone().expect("a city group has its place");
    let place = location.display_name();
    let ctx = context(&first, SubjectKind::Principal, geoip, source_object);
    let names: Vec<String> = g
        .commands
        .iter()
        .map(|c| format!("{}:{}", service(&c.event_source), c.event_name))
        .collect();
    let usual = g
        .commands
        .iter()
        .find(|c| !c.usual_places.is_empty())
        .map(|c| {
            let places: Vec<String> = c
                .usual_places
                .iter()
                .map(|p| format!("{} ({})", p.place, p.count))
                .collect();
            format!(
                " {}:{} is usually called from {}.",
                service(&c.event_source),
                c.event_name,
                places.join(", ")
            )
        })
        .unwrap_or_else(|| {
            " None of these calls was seen from anywhere else in the account either.".to_owned()
        });
    let principal = &first.principal;
    let summary = format!(
        "`{principal}` called {} from {place} ({}), which account {} has not seen{} from there in the last {} days.{usual}",
        names.join(", "),
        first.source_ip,
        first.account,
        if policy.min_seen > 1 {
            format!(" called {} times", policy.min_seen)
        } else {
            String::new()
        },
        policy.lookback_days,
    );
    let network = location
        .as_org
        .as_deref()
        .map(|o| format!(" (network: {o})"))
        .unwrap_or_default();
    let triage = vec![
        format!(
            "Ask whether {principal} works from {place}, and whether {}{network} is one of your networks, a VPN exit or a cloud host you run.",
            first.source_ip
        ),
        format!(
            "Read what the calls did (their request parameters in CloudTrail), above all creations of users, keys, roles or policies, and what else {principal} did from this address.",
        ),
        "A call that only began recently may be new automation; one that recurs on a schedule is maintenance. Neither should come from a new city without a reason.".to_owned(),
        containment_step(&first.identity),
    ];
    let title = format!(
        "Unusual city for {} by {}: {place}",
        if names.len() == 1 {
            names[0].clone()
        } else {
            format!("{} calls", names.len())
        },
        short_principal(principal),
    );
    let mut finding = ctx.finding(
        id,
        Rule::UnusualCityForCommand,
        Severity::Low,
        principal,
        FindingText {
            title,
            summary,
            triage,
        },
        format_rfc3339_ms(g.calls.last().map(|c| c.t).unwrap_or(first.t)),
    );
    finding.unusual_city_for_command = Some(UnusualCityForCommand {
        place: PlaceRef::from_location(&location),
        commands: g.commands,
        calls: listed(&g.calls),
        lookback_days: policy.lookback_days,
        min_seen: policy.min_seen,
    });
    finding
}

fn error_finding(
    id: String,
    code: &str,
    mut g: RareGroup,
    policy: &RulePolicy,
    geoip: &GeoDbInfo,
    source_object: &str,
) -> Finding {
    g.calls.sort_by(|a, b| (a.t, &a.id).cmp(&(b.t, &b.id)));
    let first = g.calls[0].clone();
    let ctx = context(&first, SubjectKind::Principal, geoip, source_object);
    let principal = &first.principal;
    let mut names: Vec<String> = g
        .calls
        .iter()
        .map(|c| format!("{}:{}", service(&c.source), c.name))
        .collect();
    names.dedup();
    names.truncate(5);
    let history = match g.first_seen {
        None => format!("not seen in the last {} days", policy.lookback_days),
        Some(f) => format!(
            "seen {} time(s) on {} day(s) in the last {} days, first at {}",
            g.seen_before,
            g.days_seen,
            policy.lookback_days,
            format_rfc3339_ms(f)
        ),
    };
    let summary = format!(
        "`{principal}` got error `{code}` on {} call(s) ({}) from {}; in account {} this error was {history}.",
        g.calls.len(),
        names.join(", "),
        first.source_ip,
        first.account,
    );
    let triage = vec![
        format!("Find out what {principal} was trying to do: a burst of AccessDenied, UnauthorizedOperation or NoSuchEntity across services is how a stolen credential is explored."),
        "Check when this error first appeared and whether it recurs on a schedule (a broken job) or only now (new activity).".to_owned(),
        format!("Look at the other calls of {principal} around {} from {}.", format_rfc3339_ms(first.t), first.source_ip),
        containment_step(&first.identity),
    ];
    let mut finding = ctx.finding(
        id,
        Rule::UnusualErrorCode,
        Severity::Low,
        principal,
        FindingText {
            title: format!("Unusual error {code} for {}", short_principal(principal)),
            summary,
            triage,
        },
        format_rfc3339_ms(g.calls.last().map(|c| c.t).unwrap_or(first.t)),
    );
    finding.unusual_error_code = Some(UnusualErrorCode {
        error_code: code.to_owned(),
        calls: listed(&g.calls),
        seen_before: g.seen_before,
        days_seen: g.days_seen,
        first_seen: g.first_seen.map(format_rfc3339_ms),
        last_seen: g.last_seen.map(format_rfc3339_ms),
        lookback_days: policy.lookback_days,
        min_seen: policy.min_seen,
    });
    finding
}

#[allow(clippy::too_many_arguments)]
fn key_auth_finding(
    id: String,
    call: &Call,
    calls_in_window: u64,
    new_address: bool,
    last_seen: Option<i64>,
    known: Vec<String>,
    policy: &RulePolicy,
    geoip: &GeoDbInfo,
    source_object: &str,
) -> Finding {
    let key = call
        .identity
        .access_key_id()
        .map_or_else(|| call.principal.to_string(), str::to_owned);
    let ctx = context(call, SubjectKind::AccessKey, geoip, source_object);
    let place = call
        .location
        .as_ref()
        .map(|l| format!(" ({})", l.display_name()))
        .unwrap_or_default();
    let owner = call
        .identity
        .user_name()
        .map(|u| format!(" of IAM user {u}"))
        .unwrap_or_default();
    let history = if new_address {
        format!(
            "the key was not used from this address in the {} days before",
            policy.new_address_days
        )
    } else if let Some(last) = last_seen {
        format!(
            "the key was used from this address before, last at {}",
            format_rfc3339_ms(last)
        )
    } else {
        "the account is still in its learning period, so the address is not judged new".to_owned()
    };
    let summary = format!(
        "A call signed with long-term access key `{key}`{owner} succeeded from {}{place}: {}:{}; {history}.",
        call.source_ip,
        service(&call.source),
        call.name,
    );
    let triage = vec![
        format!("Confirm with the owner of access key {key} that it is in use from {}{place}.", call.source_ip),
        "Long-term keys do not expire: prefer roles, IAM Identity Center or other short-lived credentials, and rotate keys that must stay.".to_owned(),
        if new_address {
            format!("The address is new for this key: if nobody recognises it, deactivate {key} and review what it did since {}.", format_rfc3339_ms(call.t))
        } else {
            format!("Review what {key} did from this address; it has been used from it before.")
        },
    ];
    let title = format!(
        "Long-term access key {key} used from {}{}",
        call.source_ip,
        if new_address { " (new address)" } else { "" }
    );
    let mut finding = ctx.finding(
        id,
        Rule::LongTermAccessKeyAuth,
        if new_address {
            Severity::Low
        } else {
            Severity::Info
        },
        &key,
        FindingText {
            title,
            summary,
            triage,
        },
        format_rfc3339_ms(call.t),
    );
    finding.long_term_access_key_auth = Some(LongTermAccessKeyAuth {
        access_key_id: key.clone(),
        source_ip_address: call.source_ip.to_string(),
        place: call.location.as_ref().map(|l| l.display_name()),
        new_address,
        new_address_days: policy.new_address_days,
        address_last_seen: last_seen.map(format_rfc3339_ms),
        known_addresses: known,
        calls: vec![call.to_ref()],
        calls_in_window,
        dedup_minutes: policy.key_auth_window_ms / MINUTE_MS,
    });
    finding
}

/// `iam` from `iam.amazonaws.com`.
fn service(source: &str) -> &str {
    source.strip_suffix(".amazonaws.com").unwrap_or(source)
}

/// The readable end of an ARN: `user/alice`, `assumed-role/Admin/alice`.
fn short_principal(principal: &str) -> &str {
    principal
        .split_once(":user/")
        .map(|(_, u)| u)
        .or_else(|| principal.rsplit(':').next().filter(|s| !s.is_empty()))
        .unwrap_or(principal)
}

#[cfg(test)]
#[path = "rarity_tests.rs"]
mod tests;
