//! IP -> Location: the MaxMind-format reader, a per-run lookup cache, source-address
//! classification and great-circle distance.

mod cache;
mod db;
mod location;
mod source;
#[cfg(any(test, feature = "test-support"))]
pub mod testdb;

pub use cache::{GeoCache, Located};
pub use db::{GeoDb, GeoError, MmdbError};
pub use location::{distance_km, place_name, GeoDbInfo, Location, PlaceKey, EARTH_RADIUS_KM};
pub use source::{classify_ip, classify_source, SourceSkip};
