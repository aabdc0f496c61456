use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Mean Earth radius (IUGG), in kilometres. Using the mean radius keeps haversine within
/// about 0.5% of the WGS-84 geodesic for any pair of points.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A place's [`Location::place_key`], shared by every stay and sighting at the place.
///
/// A thin pointer (8 bytes; `Arc<str>` takes 16): an organisation's trail keeps hundreds of
/// thousands of stays in memory, each naming its place, while the distinct places number
/// in the thousands, so the second indirection costs nothing measurable.
#[derive(Clone)]
pub struct PlaceKey(Arc<String>);

impl PlaceKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for PlaceKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq for PlaceKey {
    fn eq(&self, other: &PlaceKey) -> bool {
        // The lookup cache hands out one copy per place, so equal keys are nearly always
        // the same pointer.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for PlaceKey {}

impl Ord for PlaceKey {
    fn cmp(&self, other: &PlaceKey) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            std::cmp::Ordering::Equal
        } else {
            self.as_str().cmp(other.as_str())
        }
    }
}

impl PartialOrd for PlaceKey {
    fn partial_cmp(&self, other: &PlaceKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for PlaceKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for PlaceKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<String> for PlaceKey {
    fn from(key: String) -> PlaceKey {
        PlaceKey(Arc::new(key))
    }
}

impl From<&str> for PlaceKey {
    fn from(key: &str) -> PlaceKey {
        PlaceKey(Arc::new(key.to_owned()))
    }
}

impl std::fmt::Debug for PlaceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl std::fmt::Display for PlaceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl Serialize for PlaceKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl<'de> Deserialize<'de> for PlaceKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<PlaceKey, D::Error> {
        String::deserialize(deserializer).map(PlaceKey::from)
    }
}

/// Where an IP address is, as far as the GeoIP database knows.
///
/// A location without a city is *low precision* (MaxMind then reports the country's
/// centroid, often with an accuracy radius of 1000 km): it is never treated as a point a
/// traveller stood on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdivision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    /// Radius around the coordinates that holds the address, when the database has one
    /// (GeoIP2/GeoLite2 do, DB-IP Lite does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_radius_km: Option<u16>,
    /// The database network that matched, in CIDR notation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
}

impl Location {
    /// Precise enough to be a point on a journey: the database named a city.
    pub fn is_precise(&self) -> bool {
        self.city.is_some() && self.latitude.is_finite() && self.longitude.is_finite()
    }

    /// The identity of a place for baselines and deduplication: city, subdivision and
    /// country, so that the many addresses of one city are one place.
    pub fn place_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.country_code.as_deref().unwrap_or("-"),
            self.subdivision.as_deref().unwrap_or("-"),
            self.city.as_deref().unwrap_or("-"),
        )
    }

    /// "Sydney, Australia", falling back to whatever the database knows.
    pub fn display_name(&self) -> String {
        place_name(
            self.city.as_deref(),
            self.country.as_deref(),
            self.country_code.as_deref(),
        )
    }

    pub fn accuracy_km(&self) -> f64 {
        f64::from(self.accuracy_radius_km.unwrap_or(0))
    }
}

/// "City, Country", or the country alone; the ISO code when the name is unknown.
pub fn place_name(city: Option<&str>, country: Option<&str>, country_code: Option<&str>) -> String {
    let country = country.or(country_code).unwrap_or("unknown country");
    // Not `format!`: a command's tally labels every city new to it with this, on the judging
    // thread, thousands of times an object at organisation scale.
    match city {
        Some(city) => {
            let mut name = String::with_capacity(city.len() + 2 + country.len());
            name.push_str(city);
            name.push_str(", ");
            name.push_str(country);
            name
        }
        None => country.to_owned(),
    }
}

/// Great-circle distance between two points in decimal degrees, in kilometres
/// (haversine on a sphere of [`EARTH_RADIUS_KM`]).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let dphi = (lat2 - lat1).to_radians();
    let dlambda = (lon2 - lon1).to_radians();
    let a = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    // Clamp: rounding can push `a` a hair above 1 for antipodal points.
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// Which database produced a location; recorded in every finding, because a database
/// update that moves an address is "travel" with no movement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GeoDbInfo {
    /// The database's own `database_type`, e.g. `GeoLite2-City` or `DBIP-City-Lite`.
    pub database_type: String,
    /// Seconds since the Unix epoch when the database was built.
    pub build_epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn_database_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn_build_epoch: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_keys_compare_and_hash_as_their_text() {
        use std::hash::BuildHasher;
        let (a, b) = (
            PlaceKey::from("AU/NSW/Sydney"),
            PlaceKey::from("AU/NSW/Sydney"),
        );
        let other = PlaceKey::from("AU/VIC/Melbourne");
        assert_eq!(a, b, "equal text in two allocations");
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
        assert!(a < other && other > b);
        let hasher = foldhash::quality::FixedState::default();
        assert_eq!(hasher.hash_one(&a), hasher.hash_one("AU/NSW/Sydney"));
        assert_eq!(serde_json::to_string(&a).unwrap(), r#""AU/NSW/Sydney""#);
        let back: PlaceKey = serde_json::from_str(r#""AU/NSW/Sydney""#).unwrap();
        assert_eq!(back, a);
        assert_eq!(std::mem::size_of::<PlaceKey>(), 8);
    }

    /// Reference values are WGS-84 geodesic distances (Karney's algorithm, as computed by
    /// GeographicLib) between city-centre coordinates.
    #[test]
    fn distance_matches_geodesic_within_half_a_percent() {
        let cases = [
            (
                "London -> New York",
                (51.5074, -0.1278),
                (40.7128, -74.0060),
                5585.23,
            ),
            (
                "Sydney -> Frankfurt",
                (-33.8688, 151.2093),
                (50.1109, 8.6821),
                16478.68,
            ),
            (
                "Paris -> Berlin",
                (48.8566, 2.3522),
                (52.5200, 13.4050),
                879.70,
            ),
            (
                "Los Angeles -> Tokyo",
                (34.0522, -118.2437),
                (35.6762, 139.6503),
                8838.47,
            ),
            (
                "Sao Paulo -> Johannesburg",
                (-23.5505, -46.6333),
                (-26.2041, 28.0473),
                7441.83,
            ),
            (
                "Quito -> Singapore",
                (-0.1807, -78.4678),
                (1.3521, 103.8198),
                19743.45,
            ),
        ];
        for (name, (lat1, lon1), (lat2, lon2), geodesic) in cases {
            let d = distance_km(lat1, lon1, lat2, lon2);
            let err = (d - geodesic).abs() / geodesic;
            assert!(
                err < 0.005,
                "{name}: haversine {d:.1} km vs geodesic {geodesic} km ({:.3}%)",
                err * 100.0
            );
        }
    }

    #[test]
    fn distance_is_zero_for_one_point_and_symmetric() {
        assert_eq!(distance_km(10.0, 20.0, 10.0, 20.0), 0.0);
        let ab = distance_km(1.0, 2.0, 30.0, 40.0);
        let ba = distance_km(30.0, 40.0, 1.0, 2.0);
        assert!((ab - ba).abs() < 1e-9);
    }

    #[test]
    fn a_location_without_a_city_is_low_precision() {
        let country_only = Location {
            country_code: Some("US".into()),
            latitude: 37.751,
            longitude: -97.822,
            ..Default::default()
        };
        assert!(!country_only.is_precise());
        let city = Location {
            city: Some("Sydney".into()),
            ..country_only.clone()
        };
        assert!(city.is_precise());
    }
}
