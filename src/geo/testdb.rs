//! Builds real MaxMind DB files from a readable fixture, for tests and benches.
//!
//! The fixture is a JSON list of networks with what a GeoLite2 City database would say
//! about them (see `tests/fixtures/geo/README.md`). The output has the GeoIP2 City record
//! shape (`city.names.en`, `subdivisions[].names.en`, `country`, `registered_country`,
//! `location`), so tests exercise the same reader path as production.
//!
//! Also compiled into the integration tests through `tests/common/mmdb.rs`, so it depends
//! on nothing else in this crate.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{Value, Writer};
use serde::Deserialize;

/// `build_epoch` written to every test database (2025-01-01T00:00:00Z), so that the bytes,
/// and anything that records the database version, are deterministic.
pub const TEST_BUILD_EPOCH: u64 = 1_735_689_600;

/// The shared fixture: about twenty cities on every continent, a country-only network and
/// an IPv6 network.
pub const CITIES_FIXTURE_JSON: &str = include_str!("../../tests/fixtures/geo/cities.json");

/// One network of the fixture.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureNetwork {
    /// CIDR, IPv4 or IPv6.
    pub network: String,
    /// English city name; absent for a country-only network.
    #[serde(default)]
    pub city: Option<String>,
    /// English name of the first subdivision (state, region).
    #[serde(default)]
    pub subdivision: Option<String>,
    pub country: String,
    /// ISO 3166-1 alpha-2.
    pub country_code: String,
    pub latitude: f64,
    pub longitude: f64,
    /// Kilometres. Absent in DB-IP Lite shaped databases.
    #[serde(default)]
    pub accuracy_radius: Option<u16>,
    /// Write the country only as `registered_country`, as GeoIP2 does for some anycast
    /// and satellite networks.
    #[serde(default)]
    pub registered_country_only: bool,
    /// Autonomous system, for [`build_asn_db`].
    #[serde(default)]
    pub asn: Option<u32>,
    #[serde(default)]
    pub as_org: Option<String>,
}

/// Parses a fixture. Panics with the parse error: fixtures are written by hand.
pub fn load_fixture(json: &str) -> Vec<FixtureNetwork> {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("invalid GeoIP fixture JSON: {e}"))
}

/// [`CITIES_FIXTURE_JSON`], parsed.
pub fn cities_fixture() -> Vec<FixtureNetwork> {
    load_fixture(CITIES_FIXTURE_JSON)
}

/// A `GeoLite2-City` database of the fixture.
pub fn build_city_db(fixture: &[FixtureNetwork]) -> Vec<u8> {
    build_city_db_as("GeoLite2-City", fixture)
}

/// A City-shaped database with any `database_type`, e.g. `DBIP-City-Lite`, or a wrong one
/// to test that the reader refuses it.
pub fn build_city_db_as(database_type: &str, fixture: &[FixtureNetwork]) -> Vec<u8> {
    let mut writer = new_writer(database_type);
    for entry in fixture {
        insert(&mut writer, &entry.network, city_record(entry));
    }
    writer.to_bytes().expect("test city database serializes")
}

/// A `GeoLite2-ASN` database of the fixture networks that have an `asn`.
pub fn build_asn_db(fixture: &[FixtureNetwork]) -> Vec<u8> {
    let mut writer = new_writer("GeoLite2-ASN");
    for entry in fixture {
        let Some(asn) = entry.asn else { continue };
        let mut record = BTreeMap::new();
        record.insert("autonomous_system_number".to_owned(), Value::U32(asn));
        if let Some(org) = &entry.as_org {
            record.insert(
                "autonomous_system_organization".to_owned(),
                Value::String(org.clone()),
            );
        }
        insert(&mut writer, &entry.network, Value::Map(record));
    }
    writer.to_bytes().expect("test ASN database serializes")
}

/// The GeoLite2 City database of [`CITIES_FIXTURE_JSON`].
pub fn fixture_city_db() -> Vec<u8> {
    build_city_db(&cities_fixture())
}

/// The GeoLite2 ASN database of [`CITIES_FIXTURE_JSON`].
pub fn fixture_asn_db() -> Vec<u8> {
    build_asn_db(&cities_fixture())
}

fn new_writer(database_type: &str) -> Writer {
    // IPv6 with IPv4 aliasing, as the real GeoLite2 and DB-IP files are.
    Writer::builder(database_type)
        .description(&[("en", "geotrail test database")])
        .build_epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(TEST_BUILD_EPOCH))
        .build()
}

fn insert(writer: &mut Writer, network: &str, record: Value) {
    let net: IpNet = network
        .parse()
        .unwrap_or_else(|e| panic!("fixture network {network:?} is not a CIDR: {e}"));
    writer
        .insert_value(net, record)
        .unwrap_or_else(|e| panic!("cannot insert fixture network {network}: {e}"));
}

fn english(name: &str) -> Value {
    Value::map([("names", Value::map([("en", Value::from(name))]))])
}

fn city_record(entry: &FixtureNetwork) -> Value {
    let mut record = BTreeMap::new();
    if let Some(city) = &entry.city {
        record.insert("city".to_owned(), english(city));
    }
    if let Some(subdivision) = &entry.subdivision {
        record.insert(
            "subdivisions".to_owned(),
            Value::Array(vec![english(subdivision)]),
        );
    }
    let country = Value::map([
        ("iso_code", Value::from(entry.country_code.as_str())),
        (
            "names",
            Value::map([("en", Value::from(entry.country.as_str()))]),
        ),
    ]);
    if !entry.registered_country_only {
        record.insert("country".to_owned(), country.clone());
    }
    record.insert("registered_country".to_owned(), country);
    // The types MaxMind writes, which its readers insist on: the accuracy radius is a
    // uint16 and the coordinates are doubles.
    let mut location = BTreeMap::new();
    location.insert("latitude".to_owned(), Value::Double(entry.latitude));
    location.insert("longitude".to_owned(), Value::Double(entry.longitude));
    if let Some(radius) = entry.accuracy_radius {
        location.insert("accuracy_radius".to_owned(), Value::U16(radius));
    }
    record.insert("location".to_owned(), Value::Map(location));
    Value::Map(record)
}
