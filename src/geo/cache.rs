//! A per-run memo of GeoIP lookups.
//!
//! CloudTrail repeats a handful of addresses thousands of times (a CI runner, an office
//! NAT), so most lookups are answered here. Misses are cached too: an address the database
//! does not know costs a tree walk every time otherwise.

use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::{GeoDb, GeoError, Location, PlaceKey};

/// A location and its shared [`place_key`](Location::place_key).
pub type Located = (Arc<Location>, PlaceKey);

/// Lookups through a [`GeoDb`], remembered for the life of the cache (one scan, one Lambda
/// invocation).
#[derive(Debug)]
pub struct GeoCache<'db> {
    db: &'db GeoDb,
    entries: FxHashMap<IpAddr, Option<Located>>,
    /// Place keys, one copy per place: every stay at a place shares it, across subjects.
    places: FxHashSet<PlaceKey>,
    max_entries: usize,
    hits: u64,
    misses: u64,
}

impl<'db> GeoCache<'db> {
    /// Entries kept before the cache starts over. A located entry holds a few hundred bytes
    /// (the Location's strings), so this bounds the cache to a few tens of MB, inside a
    /// small Lambda's memory, even for a scan over millions of distinct addresses; typical
    /// objects see hundreds.
    pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

    pub fn new(db: &'db GeoDb) -> GeoCache<'db> {
        GeoCache::with_max_entries(db, GeoCache::DEFAULT_MAX_ENTRIES)
    }

    /// A cache that clears itself when it would grow past `max_entries` (at least 1).
    pub fn with_max_entries(db: &'db GeoDb, max_entries: usize) -> GeoCache<'db> {
        GeoCache {
            db,
            entries: FxHashMap::default(),
            places: FxHashSet::default(),
            max_entries: max_entries.max(1),
            hits: 0,
            misses: 0,
        }
    }

    /// Where `ip` is, from the cache or the database. Errors are not cached: the next lookup
    /// of the same address tries the database again and fails the same way.
    pub fn lookup(&mut self, ip: IpAddr) -> Result<Option<Arc<Location>>, GeoError> {
        Ok(self.locate(ip)?.map(|(location, _)| location))
    }

    /// [`GeoCache::lookup`], with the location's shared
    /// [`place_key`](Location::place_key).
    pub fn locate(&mut self, ip: IpAddr) -> Result<Option<Located>, GeoError> {
        Ok(self.locate_ref(ip)?.cloned())
    }

    /// [`GeoCache::locate`], lent rather than cloned: a clone is two atomic increments,
    /// paid per event, on counts that the judging thread touches too.
    pub fn locate_ref(&mut self, ip: IpAddr) -> Result<Option<&Located>, GeoError> {
        if self.entries.contains_key(&ip) {
            self.hits += 1;
            return Ok(self.entries[&ip].as_ref());
        }
        self.misses += 1;
        // Starting over is simpler and cheaper than LRU bookkeeping, and the addresses that
        // matter come straight back.
        if self.entries.len() >= self.max_entries {
            self.entries.clear();
            self.places.clear();
        }
        let located = self.db.lookup(ip)?.map(|location| {
            let key = location.place_key();
            let place = match self.places.get(key.as_str()) {
                Some(place) => place.clone(),
                None => {
                    let place = PlaceKey::from(key);
                    self.places.insert(place.clone());
                    place
                }
            };
            (Arc::new(location), place)
        });
        Ok(self.entries.entry(ip).or_insert(located).as_ref())
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that went to the database.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Addresses currently remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn db(&self) -> &'db GeoDb {
        self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::testdb;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address parses")
    }

    #[test]
    fn counts_hits_and_misses_and_caches_unknown_addresses() {
        let db = GeoDb::from_bytes(testdb::fixture_city_db(), None).unwrap();
        let mut cache = GeoCache::new(&db);
        let sydney = ip("1.128.0.10");
        let unknown = ip("9.9.9.9");

        let first = cache
            .lookup(sydney)
            .unwrap()
            .expect("Sydney is in the fixture");
        let second = cache.lookup(sydney).unwrap().expect("still Sydney");
        assert!(
            Arc::ptr_eq(&first, &second),
            "a hit shares the cached Location"
        );
        assert_eq!(cache.lookup(unknown).unwrap(), None);
        assert_eq!(cache.lookup(unknown).unwrap(), None);
        assert_eq!(cache.lookup(unknown).unwrap(), None);

        assert_eq!((cache.hits(), cache.misses(), cache.len()), (3, 2, 2));
        assert_eq!(first.city.as_deref(), Some("Sydney"));
    }

    #[test]
    fn the_addresses_of_one_place_share_its_key() {
        let db = GeoDb::from_bytes(testdb::fixture_city_db(), None).unwrap();
        let mut cache = GeoCache::new(&db);
        let (a, key_a) = cache.locate(ip("1.128.0.1")).unwrap().unwrap();
        let (_, key_b) = cache.locate(ip("1.128.0.2")).unwrap().unwrap();
        assert_eq!(*key_a, a.place_key());
        assert!(
            std::ptr::eq(key_a.as_str(), key_b.as_str()),
            "one copy per place"
        );
    }

    #[test]
    fn starts_over_when_full() {
        let db = GeoDb::from_bytes(testdb::fixture_city_db(), None).unwrap();
        let mut cache = GeoCache::with_max_entries(&db, 2);
        for addr in ["1.128.0.1", "1.128.0.2", "1.128.0.3"] {
            cache.lookup(ip(addr)).unwrap();
        }
        assert_eq!(
            cache.len(),
            1,
            "the third distinct address cleared the first two"
        );
        cache.lookup(ip("1.128.0.1")).unwrap();
        assert_eq!((cache.hits(), cache.misses()), (0, 4));
        cache.lookup(ip("1.128.0.3")).unwrap();
        assert_eq!((cache.hits(), cache.misses(), cache.len()), (1, 4, 2));
    }
}
