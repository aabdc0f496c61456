use serde::{Deserialize, Serialize};

/// Mean Earth radius (IUGG), in kilometres. Using the mean radius keeps haversine within
/// about 0.5% of the WGS-84 geodesic for any pair of points.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

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
    match city {
        Some(city) => format!("{city}, {country}"),
        None => country.to_string(),
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
