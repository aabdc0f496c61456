//! The GeoIP database: a MaxMind DB City database (GeoLite2, GeoIP2, DB-IP City Lite) and
//! an optional ASN database, behind a type that exposes no `maxminddb` types.

use std::error::Error as StdError;
use std::fmt;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maxminddb::{MaxMindDbError, Mmap, Reader};
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use super::{GeoDbInfo, Location};

/// Failure to open a GeoIP database or to read a record from it.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("failed to open GeoIP database {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not a MaxMind DB file, or a corrupt one. `db` is the path or `in-memory ... database`.
    #[error("{db} is not a valid MaxMind DB file")]
    InvalidDatabase {
        db: String,
        #[source]
        source: MmdbError,
    },
    /// A valid file of the wrong kind, e.g. an ASN database given as the City database.
    #[error("{db}: expected {expected} database, got `{actual}`")]
    WrongDatabaseType {
        db: String,
        expected: &'static str,
        actual: String,
    },
    /// The database has a record for the address that cannot be decoded.
    #[error("failed to decode the GeoIP {record} record for {ip}")]
    Lookup {
        ip: IpAddr,
        /// `city` or `ASN`.
        record: &'static str,
        #[source]
        source: MmdbError,
    },
}

/// An error from the MaxMind DB reader. Opaque so that the reader's types stay out of this
/// crate's API; its message and source chain are the reader's.
#[derive(Debug)]
pub struct MmdbError(MaxMindDbError);

impl fmt::Display for MmdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for MmdbError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// The bytes of one database: mapped from a file in production, owned in tests. The map
/// is shared with [`GeoDb`], which releases its pages between batches of objects.
enum DbBytes {
    Mapped(Arc<Mmap>),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for DbBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            DbBytes::Mapped(map) => map.as_ref(),
            DbBytes::Owned(bytes) => bytes,
        }
    }
}

#[derive(Clone, Copy)]
enum DbKind {
    City,
    Asn,
}

impl DbKind {
    fn expected(self) -> &'static str {
        match self {
            DbKind::City => "a City",
            DbKind::Asn => "an ASN",
        }
    }

    fn record(self) -> &'static str {
        match self {
            DbKind::City => "city",
            DbKind::Asn => "ASN",
        }
    }

    fn in_memory(self) -> &'static str {
        match self {
            DbKind::City => "in-memory City database",
            DbKind::Asn => "in-memory ASN database",
        }
    }

    /// Judged on `database_type` only: the record layout is what the reader expects of
    /// these vendors' types. Enterprise databases are a superset of City; GeoIP2-ISP
    /// carries the same AS fields as GeoLite2-ASN.
    fn accepts(self, database_type: &str) -> bool {
        let t = database_type.to_ascii_lowercase();
        match self {
            DbKind::City => t.contains("city") || t.contains("enterprise"),
            DbKind::Asn => t.contains("asn") || t.contains("isp"),
        }
    }
}

/// A City database and an optional ASN database, opened once per process and shared by
/// reference.
pub struct GeoDb {
    city: Reader<DbBytes>,
    asn: Option<Reader<DbBytes>>,
    info: GeoDbInfo,
    /// The mapped files, for [`GeoDb::release_pages`].
    maps: Vec<Arc<Mmap>>,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl GeoDb {
    /// Memory-maps a City database and, optionally, an ASN database.
    ///
    /// Replace a database file by renaming a new one over it (as `geoipupdate` does), never
    /// by rewriting it in place: the open mapping keeps the old file alive across a rename,
    /// but a file truncated under it makes reads fault.
    pub fn open(city: &Path, asn: Option<&Path>) -> Result<GeoDb, GeoError> {
        let mut maps = Vec::new();
        let city = open_mapped(city, DbKind::City, &mut maps)?;
        let asn = asn
            .map(|path| open_mapped(path, DbKind::Asn, &mut maps))
            .transpose()?;
        Ok(GeoDb::new(city, asn, maps))
    }

    /// A database from bytes already in memory (tests, or a database bundled in a binary).
    pub fn from_bytes(city: Vec<u8>, asn: Option<Vec<u8>>) -> Result<GeoDb, GeoError> {
        let city = reader(DbBytes::Owned(city), DbKind::City, || {
            DbKind::City.in_memory().to_owned()
        })?;
        let asn = asn
            .map(|bytes| {
                reader(DbBytes::Owned(bytes), DbKind::Asn, || {
                    DbKind::Asn.in_memory().to_owned()
                })
            })
            .transpose()?;
        Ok(GeoDb::new(city, asn, Vec::new()))
    }

    fn new(city: Reader<DbBytes>, asn: Option<Reader<DbBytes>>, maps: Vec<Arc<Mmap>>) -> GeoDb {
        let info = GeoDbInfo {
            database_type: city.metadata().database_type.clone(),
            build_epoch: city.metadata().build_epoch,
            asn_database_type: asn.as_ref().map(|r| r.metadata().database_type.clone()),
            asn_build_epoch: asn.as_ref().map(|r| r.metadata().build_epoch),
        };
        GeoDb {
            city,
            asn,
            info,
            maps,
        }
    }

    /// Unmaps the database pages this process has touched; they stay in the page cache,
    /// and the next lookup that needs one maps it again (a minor fault, no read).
    ///
    /// Lookups over a large organisation's addresses touch most of a City database
    /// (60 MB of DB-IP's 100 MB), and mapped pages count in the resident set for as long
    /// as the process lives, although after the first objects the lookup cache answers
    /// nearly every address. Released between batches of objects, the scan's resident set
    /// holds only the pages recent misses needed.
    pub fn release_pages(&self) {
        #[cfg(target_os = "linux")]
        for map in &self.maps {
            // SAFETY: the map is a read-only shared mapping of a file: MADV_DONTNEED drops
            // only this process's page table entries, and a later read faults the same
            // bytes back from the page cache or the file. References into the map stay
            // valid. (For a private writable mapping it would discard writes, which is
            // why the advice is unchecked.)
            let released = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
            if let Err(err) = released {
                tracing::debug!("releasing database pages: {err}");
            }
        }
    }

    /// Which databases these are, for recording alongside findings.
    pub fn info(&self) -> &GeoDbInfo {
        &self.info
    }

    /// Where `ip` is. `Ok(None)` when the database has no record for it, or a record
    /// without coordinates (some networks are known only by their registrant).
    ///
    /// Pass public addresses (see [`super::classify_source`]): databases hold no data for
    /// private ranges.
    pub fn lookup(&self, ip: IpAddr) -> Result<Option<Location>, GeoError> {
        let Some((record, network)) = lookup_record::<CityRecord>(&self.city, ip, DbKind::City)?
        else {
            return Ok(None);
        };
        let (Some(latitude), Some(longitude)) =
            (record.location.latitude, record.location.longitude)
        else {
            return Ok(None);
        };
        if !latitude.is_finite() || !longitude.is_finite() {
            return Ok(None);
        }
        // GeoIP2 leaves `country` empty for networks known only by their registrant
        // (some anycast and satellite ranges): the registered country is the best guess.
        let country = if record.country.is_empty() {
            &record.registered_country
        } else {
            &record.country
        };
        let mut location = Location {
            city: record.city.english(),
            subdivision: record.subdivisions.and_then(|s| s.english()),
            country: country.names.en.map(str::to_owned),
            country_code: country.iso_code.map(str::to_owned),
            latitude,
            longitude,
            accuracy_radius_km: record.location.accuracy_radius,
            network,
            asn: None,
            as_org: None,
        };
        if let Some(asn_db) = &self.asn {
            if let Some((asn, _)) = lookup_record::<AsnRecord>(asn_db, ip, DbKind::Asn)? {
                location.asn = asn.autonomous_system_number;
                location.as_org = asn.autonomous_system_organization.map(str::to_owned);
            }
        }
        Ok(Some(location))
    }
}

fn open_mapped(
    path: &Path,
    kind: DbKind,
    maps: &mut Vec<Arc<Mmap>>,
) -> Result<Reader<DbBytes>, GeoError> {
    let open_error = |source| GeoError::Open {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    // SAFETY: the map is read-only and the reader bounds-checks every offset against its
    // length. What this cannot rule out is another process truncating the file while it is
    // mapped (a SIGBUS); `GeoDb::open` documents that databases are replaced by rename.
    let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(open_error)?);
    maps.push(Arc::clone(&map));
    reader(DbBytes::Mapped(map), kind, || path.display().to_string())
}

fn reader(
    bytes: DbBytes,
    kind: DbKind,
    describe: impl Fn() -> String,
) -> Result<Reader<DbBytes>, GeoError> {
    let reader = Reader::from_source(bytes).map_err(|e| GeoError::InvalidDatabase {
        db: describe(),
        source: MmdbError(e),
    })?;
    let database_type = &reader.metadata().database_type;
    if !kind.accepts(database_type) {
        return Err(GeoError::WrongDatabaseType {
            db: describe(),
            expected: kind.expected(),
            actual: database_type.clone(),
        });
    }
    Ok(reader)
}

/// The decoded record for `ip` and the database network that matched, in CIDR notation.
fn lookup_record<'a, T: Deserialize<'a>>(
    reader: &'a Reader<DbBytes>,
    ip: IpAddr,
    kind: DbKind,
) -> Result<Option<(T, Option<String>)>, GeoError> {
    // An IPv4-only database cannot place an IPv6 address; the reader calls that an error.
    if ip.is_ipv6() && reader.metadata().ip_version == 4 {
        return Ok(None);
    }
    let error = |e| GeoError::Lookup {
        ip,
        record: kind.record(),
        source: MmdbError(e),
    };
    let result = reader.lookup(ip).map_err(error)?;
    let Some(record) = result.decode::<T>().map_err(error)? else {
        return Ok(None);
    };
    Ok(Some((record, result.network().ok().map(|n| n.to_string()))))
}

// The record layouts, decoding only what a Location needs: unknown fields (other
// languages, postal codes, geoname ids) are skipped without being decoded, and strings are
// borrowed from the database until the Location is built.

#[derive(Deserialize)]
struct CityRecord<'a> {
    #[serde(borrow, default)]
    city: Named<'a>,
    #[serde(borrow, default, deserialize_with = "first_of_array")]
    subdivisions: Option<Named<'a>>,
    #[serde(borrow, default)]
    country: CountryRecord<'a>,
    #[serde(borrow, default)]
    registered_country: CountryRecord<'a>,
    #[serde(default)]
    location: LocationRecord,
}

#[derive(Deserialize, Default)]
struct Named<'a> {
    #[serde(borrow, default)]
    names: EnglishName<'a>,
}

impl Named<'_> {
    fn english(&self) -> Option<String> {
        self.names.en.filter(|n| !n.is_empty()).map(str::to_owned)
    }
}

#[derive(Deserialize, Default)]
struct EnglishName<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: EnglishName<'a>,
}

impl CountryRecord<'_> {
    fn is_empty(&self) -> bool {
        self.iso_code.is_none() && self.names.en.is_none()
    }
}

// The reader rejects a value whose stored type differs from the Rust type asked for, and
// databases from other writers vary (a radius as uint32, coordinates as float): the
// numbers are decoded through `deserialize_any` and converted.
#[derive(Deserialize, Default)]
struct LocationRecord {
    #[serde(default, deserialize_with = "any_number")]
    latitude: Option<f64>,
    #[serde(default, deserialize_with = "any_number")]
    longitude: Option<f64>,
    /// Kilometres.
    #[serde(default, deserialize_with = "any_u16")]
    accuracy_radius: Option<u16>,
}

#[derive(Deserialize)]
struct AsnRecord<'a> {
    #[serde(default, deserialize_with = "any_u32")]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

fn first_of_array<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct First<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for First<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
            let first = seq.next_element()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }

    deserializer.deserialize_seq(First(std::marker::PhantomData))
}

struct AnyNumber;

impl Visitor<'_> for AnyNumber {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
}

fn any_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    deserializer.deserialize_any(AnyNumber).map(Some)
}

/// A non-negative whole number of any stored width.
fn any_unsigned<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let v = deserializer.deserialize_any(AnyNumber)?;
    if v >= 0.0 && v.fract() == 0.0 && v <= u64::MAX as f64 {
        Ok(v as u64)
    } else {
        Err(de::Error::custom(format_args!(
            "expected an unsigned integer, got {v}"
        )))
    }
}

fn any_u16<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u16>, D::Error> {
    // A radius wider than u16 is "somewhere on Earth" either way.
    any_unsigned(deserializer).map(|v| Some(u16::try_from(v).unwrap_or(u16::MAX)))
}

fn any_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let v = any_unsigned(deserializer)?;
    u32::try_from(v)
        .map(Some)
        .map_err(|_| de::Error::custom(format_args!("AS number {v} is wider than 32 bits")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::testdb::{self, FixtureNetwork};

    fn fixture_db() -> GeoDb {
        GeoDb::from_bytes(testdb::fixture_city_db(), None).expect("fixture city db opens")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address parses")
    }

    fn net(network: &str, city: Option<&str>, radius: Option<u16>) -> FixtureNetwork {
        FixtureNetwork {
            network: network.to_owned(),
            city: city.map(str::to_owned),
            subdivision: None,
            country: "Australia".to_owned(),
            country_code: "AU".to_owned(),
            latitude: -33.8688,
            longitude: 151.2093,
            accuracy_radius: radius,
            registered_country_only: false,
            asn: None,
            as_org: None,
        }
    }

    #[test]
    fn looks_up_fixture_cities() {
        let db = fixture_db();
        // (ip, city, subdivision, country, code, radius, network)
        let cases = [
            (
                "1.128.0.10",
                "Sydney",
                "New South Wales",
                "Australia",
                "AU",
                20,
                "1.128.0.0/16",
            ),
            (
                "81.2.69.142",
                "London",
                "England",
                "United Kingdom",
                "GB",
                10,
                "81.2.69.0/24",
            ),
            (
                "46.101.7.7",
                "Frankfurt am Main",
                "Hesse",
                "Germany",
                "DE",
                10,
                "46.101.0.0/16",
            ),
            (
                "72.229.28.185",
                "New York",
                "New York",
                "United States",
                "US",
                5,
                "72.229.0.0/16",
            ),
            (
                "126.0.55.1",
                "Tokyo",
                "Tokyo",
                "Japan",
                "JP",
                50,
                "126.0.0.0/16",
            ),
            (
                "177.32.1.1",
                "São Paulo",
                "São Paulo",
                "Brazil",
                "BR",
                100,
                "177.32.0.0/16",
            ),
            (
                "41.0.12.34",
                "Johannesburg",
                "Gauteng",
                "South Africa",
                "ZA",
                20,
                "41.0.0.0/16",
            ),
        ];
        for (addr, city, subdivision, country, code, radius, network) in cases {
            let loc = db
                .lookup(ip(addr))
                .expect("lookup succeeds")
                .unwrap_or_else(|| panic!("{addr} is in the fixture"));
            assert_eq!(loc.city.as_deref(), Some(city), "{addr}");
            assert_eq!(loc.subdivision.as_deref(), Some(subdivision), "{addr}");
            assert_eq!(loc.country.as_deref(), Some(country), "{addr}");
            assert_eq!(loc.country_code.as_deref(), Some(code), "{addr}");
            assert_eq!(loc.accuracy_radius_km, Some(radius), "{addr}");
            assert_eq!(loc.network.as_deref(), Some(network), "{addr}");
            assert!(loc.is_precise(), "{addr}");
            assert_eq!(
                (loc.asn, loc.as_org.as_deref()),
                (None, None),
                "{addr}: no ASN db given"
            );
        }
        let sydney = db.lookup(ip("1.128.0.10")).unwrap().unwrap();
        assert_eq!((sydney.latitude, sydney.longitude), (-33.8688, 151.2093));
    }

    #[test]
    fn every_fixture_network_resolves_to_its_entry() {
        let db = fixture_db();
        for entry in testdb::cities_fixture() {
            let base: IpAddr = entry.network.split('/').next().unwrap().parse().unwrap();
            let loc = db
                .lookup(base)
                .unwrap()
                .unwrap_or_else(|| panic!("{} resolves", entry.network));
            assert_eq!(loc.city, entry.city, "{}", entry.network);
            assert_eq!(
                loc.country_code.as_deref(),
                Some(entry.country_code.as_str()),
                "{}",
                entry.network
            );
            assert_eq!(loc.network.as_deref(), Some(entry.network.as_str()));
            assert_eq!(
                (loc.latitude, loc.longitude),
                (entry.latitude, entry.longitude),
                "{}",
                entry.network
            );
            let classified = crate::geo::classify_ip(base);
            assert_eq!(
                classified,
                Ok(base),
                "fixture network {} must be public",
                entry.network
            );
        }
    }

    #[test]
    fn a_country_only_network_has_no_city_and_a_wide_radius() {
        let loc = fixture_db()
            .lookup(ip("63.140.1.2"))
            .unwrap()
            .expect("country-only network is in the fixture");
        assert_eq!(loc.city, None);
        assert_eq!(loc.subdivision, None);
        assert_eq!(loc.country_code.as_deref(), Some("US"));
        assert_eq!(loc.accuracy_radius_km, Some(1000));
        assert_eq!((loc.latitude, loc.longitude), (37.751, -97.822));
        assert!(!loc.is_precise());
    }

    #[test]
    fn looks_up_ipv6_and_ipv4_mapped_addresses() {
        let db = fixture_db();
        let loc = db
            .lookup(ip("2001:8003:1234::1"))
            .unwrap()
            .expect("IPv6 network is in the fixture");
        assert_eq!(loc.city.as_deref(), Some("Sydney"));
        assert_eq!(loc.network.as_deref(), Some("2001:8003::/32"));
        let mapped = db
            .lookup(ip("::ffff:81.2.69.142"))
            .unwrap()
            .expect("IPv4-mapped resolves through the alias");
        assert_eq!(mapped.city.as_deref(), Some("London"));
    }

    #[test]
    fn an_address_not_in_the_database_is_none() {
        let db = fixture_db();
        for addr in ["9.9.9.9", "2a00:1450::1", "10.0.0.1"] {
            assert_eq!(db.lookup(ip(addr)).unwrap(), None, "{addr}");
        }
    }

    #[test]
    fn db_ip_shaped_records_have_no_radius() {
        let fixture = [net("1.128.0.0/16", Some("Sydney"), None)];
        let db =
            GeoDb::from_bytes(testdb::build_city_db_as("DBIP-City-Lite", &fixture), None).unwrap();
        assert_eq!(db.info().database_type, "DBIP-City-Lite");
        let loc = db.lookup(ip("1.128.3.4")).unwrap().unwrap();
        assert_eq!(loc.city.as_deref(), Some("Sydney"));
        assert_eq!(loc.accuracy_radius_km, None);
    }

    #[test]
    fn falls_back_to_the_registered_country() {
        let mut entry = net("1.128.0.0/16", None, Some(500));
        entry.registered_country_only = true;
        let db = GeoDb::from_bytes(testdb::build_city_db(&[entry]), None).unwrap();
        let loc = db.lookup(ip("1.128.0.1")).unwrap().unwrap();
        assert_eq!(loc.country_code.as_deref(), Some("AU"));
        assert_eq!(loc.country.as_deref(), Some("Australia"));
    }

    #[test]
    fn the_asn_database_adds_the_autonomous_system() {
        let db =
            GeoDb::from_bytes(testdb::fixture_city_db(), Some(testdb::fixture_asn_db())).unwrap();
        let loc = db.lookup(ip("1.128.0.10")).unwrap().unwrap();
        assert_eq!(loc.asn, Some(1221));
        assert_eq!(loc.as_org.as_deref(), Some("Telstra Limited"));
        let info = db.info();
        assert_eq!(info.database_type, "GeoLite2-City");
        assert_eq!(info.build_epoch, testdb::TEST_BUILD_EPOCH);
        assert_eq!(info.asn_database_type.as_deref(), Some("GeoLite2-ASN"));
        assert_eq!(info.asn_build_epoch, Some(testdb::TEST_BUILD_EPOCH));
        // A city hit with no ASN record keeps its location.
        let tokyo = db.lookup(ip("133.242.0.1")).unwrap().unwrap();
        assert_eq!((tokyo.city.as_deref(), tokyo.asn), (Some("Tokyo"), None));
    }

    #[test]
    fn info_without_an_asn_database() {
        let info = fixture_db().info().clone();
        assert_eq!(
            info,
            GeoDbInfo {
                database_type: "GeoLite2-City".into(),
                build_epoch: testdb::TEST_BUILD_EPOCH,
                asn_database_type: None,
                asn_build_epoch: None,
            }
        );
    }

    #[test]
    fn an_asn_database_given_as_the_city_database_is_refused() {
        let err =
            GeoDb::from_bytes(testdb::fixture_asn_db(), None).expect_err("ASN db is not a City db");
        assert!(matches!(err, GeoError::WrongDatabaseType { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "in-memory City database: expected a City database, got `GeoLite2-ASN`"
        );
        let err = GeoDb::from_bytes(testdb::fixture_city_db(), Some(testdb::fixture_city_db()))
            .expect_err("City db is not an ASN db");
        assert_eq!(
            err.to_string(),
            "in-memory ASN database: expected an ASN database, got `GeoLite2-City`"
        );
    }

    #[test]
    fn garbage_is_an_invalid_database_with_a_source() {
        let err =
            GeoDb::from_bytes(b"not a database".to_vec(), None).expect_err("garbage is refused");
        assert!(matches!(err, GeoError::InvalidDatabase { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "in-memory City database is not a valid MaxMind DB file"
        );
        assert!(
            err.source().is_some(),
            "the reader's error is kept as the source"
        );
    }

    #[test]
    fn lookups_after_releasing_the_mapped_pages_read_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let (city, asn) = (dir.path().join("city.mmdb"), dir.path().join("asn.mmdb"));
        std::fs::write(&city, testdb::fixture_city_db()).unwrap();
        std::fs::write(&asn, testdb::fixture_asn_db()).unwrap();
        let db = GeoDb::open(&city, Some(&asn)).expect("mapped databases open");
        assert_eq!(
            db.maps.len(),
            2,
            "both files are mapped and can be released"
        );
        let addresses = ["81.2.69.142", "1.128.0.10", "46.101.7.7", "192.0.2.1"];
        let before: Vec<_> = addresses
            .iter()
            .map(|a| db.lookup(ip(a)).unwrap())
            .collect();
        for _ in 0..3 {
            db.release_pages();
            let after: Vec<_> = addresses
                .iter()
                .map(|a| db.lookup(ip(a)).unwrap())
                .collect();
            assert_eq!(after, before);
        }
        assert!(before[0].is_some(), "the fixture places London");
        // Databases in memory have nothing mapped to release.
        let owned = fixture_db();
        assert!(owned.maps.is_empty());
        owned.release_pages();
        assert_eq!(
            owned
                .lookup(ip("81.2.69.142"))
                .unwrap()
                .unwrap()
                .city
                .as_deref(),
            Some("London")
        );
    }

    #[test]
    fn opens_files_by_path_and_names_the_path_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let city = dir.path().join("city.mmdb");
        let asn = dir.path().join("asn.mmdb");
        std::fs::write(&city, testdb::fixture_city_db()).unwrap();
        std::fs::write(&asn, testdb::fixture_asn_db()).unwrap();

        let db = GeoDb::open(&city, Some(&asn)).expect("mapped databases open");
        let loc = db.lookup(ip("81.2.69.142")).unwrap().unwrap();
        assert_eq!(
            (loc.city.as_deref(), loc.asn),
            (Some("London"), Some(20712))
        );

        let missing = dir.path().join("missing.mmdb");
        let err = GeoDb::open(&missing, None).expect_err("missing file");
        assert!(matches!(err, GeoError::Open { .. }));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
        assert!(err.source().is_some());

        let err = GeoDb::open(&asn, None).expect_err("ASN file as City");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: expected a City database, got `GeoLite2-ASN`",
                asn.display()
            )
        );

        let empty = dir.path().join("empty.mmdb");
        std::fs::write(&empty, b"").unwrap();
        let err = GeoDb::open(&empty, None).expect_err("empty file");
        assert!(matches!(err, GeoError::InvalidDatabase { .. }), "{err:?}");
    }

    #[test]
    fn numbers_of_other_widths_decode() {
        // A record as another writer might produce it: radius as uint32, coordinates as
        // float, AS number as uint64.
        use mmdb_writer::{ipnet::IpNet, Value, Writer};
        let mut city = Writer::new("Custom-City");
        let record = Value::map([
            (
                "city",
                Value::map([("names", Value::map([("en", "Sydney")]))]),
            ),
            (
                "location",
                Value::map([
                    ("latitude", Value::Float(-33.75)),
                    ("longitude", Value::Float(151.25)),
                    ("accuracy_radius", Value::U32(70_000)),
                ]),
            ),
        ]);
        city.insert_value("1.128.0.0/16".parse::<IpNet>().unwrap(), record)
            .unwrap();
        let mut asn = Writer::new("Custom-ASN");
        asn.insert_value(
            "1.128.0.0/16".parse::<IpNet>().unwrap(),
            Value::map([("autonomous_system_number", Value::U64(1221))]),
        )
        .unwrap();
        let db =
            GeoDb::from_bytes(city.to_bytes().unwrap(), Some(asn.to_bytes().unwrap())).unwrap();
        let loc = db.lookup(ip("1.128.0.1")).unwrap().unwrap();
        assert_eq!((loc.latitude, loc.longitude), (-33.75, 151.25));
        assert_eq!(loc.accuracy_radius_km, Some(u16::MAX));
        assert_eq!(loc.asn, Some(1221));
        assert_eq!(loc.country, None);
    }

    #[test]
    fn a_record_without_coordinates_is_none_and_an_undecodable_one_is_an_error() {
        use mmdb_writer::{ipnet::IpNet, Value, Writer};
        let mut w = Writer::new("Broken-City");
        w.insert_value(
            "1.128.0.0/24".parse::<IpNet>().unwrap(),
            Value::map([("country", Value::map([("iso_code", "AU")]))]),
        )
        .unwrap();
        w.insert_value(
            "1.128.1.0/24".parse::<IpNet>().unwrap(),
            Value::map([("location", Value::map([("latitude", "north")]))]),
        )
        .unwrap();
        let db = GeoDb::from_bytes(w.to_bytes().unwrap(), None).unwrap();
        assert_eq!(db.lookup(ip("1.128.0.1")).unwrap(), None);
        let err = db
            .lookup(ip("1.128.1.1"))
            .expect_err("a string latitude does not decode");
        assert!(matches!(err, GeoError::Lookup { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "failed to decode the GeoIP city record for 1.128.1.1"
        );
        assert!(err.source().is_some());
    }

    /// MaxMind's published test databases, when a checkout of github.com/maxmind/MaxMind-DB
    /// `test-data` is named by `MAXMIND_TEST_DATA`: the real GeoIP2/GeoLite2 record shapes.
    #[test]
    fn reads_maxmind_test_databases_when_available() {
        let Some(dir) = std::env::var_os("MAXMIND_TEST_DATA").map(PathBuf::from) else {
            return;
        };
        for name in ["GeoIP2-City-Test.mmdb", "GeoLite2-City-Test.mmdb"] {
            let db = GeoDb::open(&dir.join(name), Some(&dir.join("GeoLite2-ASN-Test.mmdb")))
                .expect(name);
            let loc = db.lookup(ip("81.2.69.142")).unwrap().expect(name);
            assert_eq!(loc.city.as_deref(), Some("London"), "{name}");
            assert_eq!(loc.subdivision.as_deref(), Some("England"), "{name}");
            assert_eq!(loc.country_code.as_deref(), Some("GB"), "{name}");
            assert_eq!(loc.country.as_deref(), Some("United Kingdom"), "{name}");
            assert_eq!(loc.accuracy_radius_km, Some(10), "{name}");
            assert_eq!(loc.network.as_deref(), Some("81.2.69.142/31"), "{name}");
            assert!(db.lookup(ip("10.0.0.1")).unwrap().is_none(), "{name}");
        }
        let db = GeoDb::open(
            &dir.join("GeoIP2-City-Test.mmdb"),
            Some(&dir.join("GeoLite2-ASN-Test.mmdb")),
        )
        .unwrap();
        let san_diego = db
            .lookup(ip("214.78.120.1"))
            .unwrap()
            .expect("214.78.120.0/22 is San Diego");
        assert_eq!(san_diego.city.as_deref(), Some("San Diego"));
        assert_eq!(san_diego.asn, Some(721));
        assert_eq!(
            san_diego.as_org.as_deref(),
            Some("DoD Network Information Center")
        );
        // 214.1.1.0/24 has a record (anycast traits) but no location.
        assert_eq!(db.lookup(ip("214.1.1.1")).unwrap(), None);
        let err = GeoDb::open(&dir.join("GeoLite2-ASN-Test.mmdb"), None).expect_err("ASN as City");
        assert!(matches!(err, GeoError::WrongDatabaseType { .. }), "{err:?}");

        // Every published file, good or deliberately corrupt (`bad-data`, next to
        // `test-data`), opens or is refused, and every lookup answers or errs: no panics.
        let mut files = Vec::new();
        for sub in [
            "",
            "../bad-data/libmaxminddb",
            "../bad-data/maxminddb-golang",
            "../bad-data/maxminddb-python",
        ] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            files.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "mmdb")),
            );
        }
        assert!(
            files.len() > 20,
            "found the MaxMind test files in {}",
            dir.display()
        );
        for path in files {
            if let Ok(db) = GeoDb::open(&path, None) {
                for addr in [
                    "81.2.69.142",
                    "2.125.160.216",
                    "214.78.120.1",
                    "2001:218::1",
                    "1.1.1.1",
                ] {
                    let _ = db.lookup(ip(addr));
                }
            }
        }
    }
}
