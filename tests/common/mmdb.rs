//! GeoIP test databases for the integration tests.
//!
//! The builder is `src/geo/testdb.rs` (also `geotrail::geo::testdb` with the `test-support`
//! feature, for benches), compiled into the test binary from the same file: it needs only
//! `mmdb-writer`, a dev-dependency, so the integration tests build without the feature.
//! Build databases from a readable fixture; see `tests/fixtures/geo/README.md` for the
//! addresses of each fixture city.

// Each test module uses a different part of this.
#![allow(dead_code)]

#[path = "../../src/geo/testdb.rs"]
mod testdb;

use std::path::{Path, PathBuf};

use geotrail::geo::GeoDb;

// Re-exported whole for the test modules; any one of them uses only a part.
#[allow(unused_imports)]
pub use testdb::{
    build_asn_db, build_city_db, build_city_db_as, cities_fixture, fixture_asn_db, fixture_city_db,
    load_fixture, FixtureNetwork, CITIES_FIXTURE_JSON, TEST_BUILD_EPOCH,
};

/// The fixture's City and ASN databases, in memory.
pub fn fixture_geo_db() -> GeoDb {
    GeoDb::from_bytes(fixture_city_db(), Some(fixture_asn_db()))
        .expect("fixture GeoIP databases open")
}

/// The fixture's City and ASN databases written as `GeoLite2-City.mmdb` and
/// `GeoLite2-ASN.mmdb` under `dir`, for tests that go through `--geoip` or `GEOTRAIL_GEOIP`.
/// Returns (city, asn) paths.
pub fn write_fixture_dbs(dir: &Path) -> (PathBuf, PathBuf) {
    let city = dir.join("GeoLite2-City.mmdb");
    let asn = dir.join("GeoLite2-ASN.mmdb");
    std::fs::write(&city, fixture_city_db()).expect("write fixture city database");
    std::fs::write(&asn, fixture_asn_db()).expect("write fixture ASN database");
    (city, asn)
}
