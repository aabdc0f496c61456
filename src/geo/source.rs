//! Which CloudTrail `sourceIPAddress` values can be geolocated.
//!
//! CloudTrail puts more than addresses in that field: `AWS Internal`, the host name of the
//! service that acted on the caller's behalf (`ec2.amazonaws.com`), comma-separated proxy
//! chains, and private or reserved addresses from VPC endpoints and tests. Only a public
//! address says where a credential was used; everything else is a counted skip, not an
//! error.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// Why a `sourceIPAddress` was not geolocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceSkip {
    /// The field is absent or empty.
    Missing,
    /// `AWS Internal`: AWS acted on its own behalf.
    AwsInternal,
    /// A service host name such as `ec2.amazonaws.com`: a service acting for the caller.
    AwsService,
    /// Not an address and not a host name (`redacted`, garbage).
    NotAnIp,
    /// RFC 1918 IPv4, IPv6 unique-local (`fc00::/7`) and deprecated site-local (`fec0::/10`).
    Private,
    Loopback,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// Carrier-grade NAT, `100.64.0.0/10` (RFC 6598).
    SharedAddressSpace,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    Multicast,
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// Not routable on the internet for another reason: `0.0.0.0/8`, `240.0.0.0/4`,
    /// broadcast, benchmarking `198.18.0.0/15`, the 6to4 relay anycast `192.88.99.0/24`,
    /// IETF protocol assignments, and IPv6 outside global unicast `2000::/3`.
    Reserved,
}

impl SourceSkip {
    /// Every reason, in declaration order, for reports that list all counters.
    pub const ALL: [SourceSkip; 12] = [
        SourceSkip::Missing,
        SourceSkip::AwsInternal,
        SourceSkip::AwsService,
        SourceSkip::NotAnIp,
        SourceSkip::Private,
        SourceSkip::Loopback,
        SourceSkip::LinkLocal,
        SourceSkip::SharedAddressSpace,
        SourceSkip::Documentation,
        SourceSkip::Multicast,
        SourceSkip::Unspecified,
        SourceSkip::Reserved,
    ];

    /// The snake_case reason name used in counters and reports (same as the serde name).
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceSkip::Missing => "missing",
            SourceSkip::AwsInternal => "aws_internal",
            SourceSkip::AwsService => "aws_service",
            SourceSkip::NotAnIp => "not_an_ip",
            SourceSkip::Private => "private",
            SourceSkip::Loopback => "loopback",
            SourceSkip::LinkLocal => "link_local",
            SourceSkip::SharedAddressSpace => "shared_address_space",
            SourceSkip::Documentation => "documentation",
            SourceSkip::Multicast => "multicast",
            SourceSkip::Unspecified => "unspecified",
            SourceSkip::Reserved => "reserved",
        }
    }
}

impl fmt::Display for SourceSkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The public address to geolocate from a CloudTrail `sourceIPAddress`, or why there is
/// none.
///
/// A comma-separated list (a proxy chain) yields its first public address; if none is
/// public, the reason for the first entry. IPv4-mapped (`::ffff:a.b.c.d`) and NAT64
/// (`64:ff9b::a.b.c.d`) addresses come back as the IPv4 address they carry, so one client
/// has one cache key. Brackets, a zone (`%eth0`) and a port are tolerated. Does not
/// allocate.
pub fn classify_source(s: &str) -> Result<IpAddr, SourceSkip> {
    let s = s.trim();
    if s.is_empty() {
        return Err(SourceSkip::Missing);
    }
    if !s.contains(',') {
        return classify_one(s);
    }
    let mut first_skip = None;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match classify_one(part) {
            Ok(ip) => return Ok(ip),
            Err(skip) => {
                first_skip.get_or_insert(skip);
            }
        }
    }
    Err(first_skip.unwrap_or(SourceSkip::NotAnIp))
}

/// Whether an address is public (routable on the internet), and if not, why.
///
/// The returned address is the one to look up: the embedded IPv4 for IPv4-mapped and NAT64
/// addresses, otherwise `ip` itself.
pub fn classify_ip(ip: IpAddr) -> Result<IpAddr, SourceSkip> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(IpAddr::V4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_one(s: &str) -> Result<IpAddr, SourceSkip> {
    if s.eq_ignore_ascii_case("AWS Internal") {
        return Err(SourceSkip::AwsInternal);
    }
    match parse_address(s) {
        Some(ip) => classify_ip(ip),
        None if is_host_name(s) => Err(SourceSkip::AwsService),
        None => Err(SourceSkip::NotAnIp),
    }
}

/// Parses a bare address, `[v6]`, `[v6]:port`, `v6%zone` or `v4:port`.
fn parse_address(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let unbracketed = match s.strip_prefix('[') {
        Some(rest) => {
            let (inner, after) = rest.split_once(']')?;
            if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
                return None;
            }
            inner
        }
        None => s,
    };
    // The zone names an interface on the logging host; it does not change the address.
    let without_zone = match unbracketed.split_once('%') {
        Some((addr, zone)) if !zone.is_empty() => addr,
        Some(_) => return None,
        None => unbracketed,
    };
    if let Ok(v6) = without_zone.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    // `a.b.c.d:port`; an IPv6 address with a port needs brackets, handled above.
    let (host, port) = s.rsplit_once(':')?;
    if is_port(port) {
        host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        None
    }
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A dotted DNS name with at least one letter: `ec2.amazonaws.com`, `appstream.amazonaws.com`,
/// `s3.eu-west-1.amazonaws.com`. The letter rule keeps `1.2.3` and `999.1.1.1` out.
fn is_host_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 253
        && b.contains(&b'.')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().any(u8::is_ascii_alphabetic)
        && !s.contains("..")
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_')
}

fn classify_v4(ip: Ipv4Addr) -> Result<Ipv4Addr, SourceSkip> {
    let [a, b, c, d] = ip.octets();
    let skip = match (a, b, c) {
        _ if ip.is_unspecified() => SourceSkip::Unspecified,
        _ if ip.is_broadcast() => SourceSkip::Reserved,
        (0, _, _) => SourceSkip::Reserved,
        (10, _, _) => SourceSkip::Private,
        (172, 16..=31, _) => SourceSkip::Private,
        (192, 168, _) => SourceSkip::Private,
        (127, _, _) => SourceSkip::Loopback,
        (169, 254, _) => SourceSkip::LinkLocal,
        (100, 64..=127, _) => SourceSkip::SharedAddressSpace,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => SourceSkip::Documentation,
        (224..=239, _, _) => SourceSkip::Multicast,
        (240..=255, _, _) => SourceSkip::Reserved,
        (198, 18..=19, _) => SourceSkip::Reserved,
        (192, 88, 99) => SourceSkip::Reserved,
        // IETF protocol assignments, except the two anycast services that are globally
        // reachable (PCP 192.0.0.9, TURN 192.0.0.10).
        (192, 0, 0) if d != 9 && d != 10 => SourceSkip::Reserved,
        _ => return Ok(ip),
    };
    Err(skip)
}

fn classify_v6(ip: Ipv6Addr) -> Result<IpAddr, SourceSkip> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4).map(IpAddr::V4);
    }
    let s = ip.segments();
    let skip = match s {
        _ if ip.is_unspecified() => SourceSkip::Unspecified,
        _ if ip.is_loopback() => SourceSkip::Loopback,
        // NAT64 well-known prefix (RFC 6052): the client is the IPv4 address in the low bits.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            return classify_v4(v4).map(IpAddr::V4);
        }
        [0xff00..=0xffff, ..] => SourceSkip::Multicast,
        [0xfe80..=0xfebf, ..] => SourceSkip::LinkLocal,
        [0xfc00..=0xfdff, ..] | [0xfec0..=0xfeff, ..] => SourceSkip::Private,
        [0x2001, 0x0db8, ..] => SourceSkip::Documentation,
        [0x3fff, 0x0000..=0x0fff, ..] => SourceSkip::Documentation,
        [0x2001, 0x0000..=0x01ff, ..] if !is_global_ietf_assignment(s) => SourceSkip::Reserved,
        // Segment routing SIDs (RFC 9602), never a client.
        [0x5f00, ..] => SourceSkip::Reserved,
        [0x2000..=0x3fff, ..] => return Ok(IpAddr::V6(ip)),
        _ => SourceSkip::Reserved,
    };
    Err(skip)
}

/// The parts of `2001::/23` (IETF protocol assignments, which includes Teredo and
/// benchmarking) that IANA lists as globally reachable.
fn is_global_ietf_assignment(s: [u16; 8]) -> bool {
    matches!(
        s,
        [0x2001, 1, 0, 0, 0, 0, 0, 1 | 2] // PCP and TURN anycast
            | [0x2001, 3, ..] // AMT
            | [0x2001, 4, 0x112, ..] // AS112-v6
            | [0x2001, 0x20..=0x3f, ..] // ORCHIDv2 and drone remote ID
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address parses")
    }

    #[test]
    fn classifies_cloudtrail_source_values() {
        use SourceSkip::*;
        let cases: &[(&str, Result<IpAddr, SourceSkip>)] = &[
            // Public addresses pass through.
            ("81.2.69.142", Ok(ip("81.2.69.142"))),
            ("  1.128.0.10 ", Ok(ip("1.128.0.10"))),
            ("2001:8003:1234::1", Ok(ip("2001:8003:1234::1"))),
            ("192.0.0.9", Ok(ip("192.0.0.9"))),
            ("100.63.255.255", Ok(ip("100.63.255.255"))),
            ("100.128.0.1", Ok(ip("100.128.0.1"))),
            ("172.32.0.1", Ok(ip("172.32.0.1"))),
            ("2002:5102:458e::1", Ok(ip("2002:5102:458e::1"))),
            // Not addresses.
            ("", Err(Missing)),
            ("   ", Err(Missing)),
            ("AWS Internal", Err(AwsInternal)),
            ("aws internal", Err(AwsInternal)),
            ("ec2.amazonaws.com", Err(AwsService)),
            ("appstream.amazonaws.com", Err(AwsService)),
            ("s3.eu-west-1.amazonaws.com", Err(AwsService)),
            ("cloudtrail.AMAZONAWS.com", Err(AwsService)),
            ("redacted", Err(NotAnIp)),
            ("HIDDEN_DUE_TO_SECURITY_REASONS", Err(NotAnIp)),
            ("1.2.3", Err(NotAnIp)),
            ("999.1.1.1", Err(NotAnIp)),
            ("010.1.1.1", Err(NotAnIp)),
            ("1.2.3.4.", Err(NotAnIp)),
            ("foo..bar", Err(NotAnIp)),
            ("-", Err(NotAnIp)),
            ("1.2.3.4/24", Err(NotAnIp)),
            ("[2001:8003::1", Err(NotAnIp)),
            ("fe80::1%", Err(NotAnIp)),
            // IPv4 special ranges.
            ("10.1.2.3", Err(Private)),
            ("172.16.0.1", Err(Private)),
            ("172.31.255.255", Err(Private)),
            ("192.168.10.10", Err(Private)),
            ("127.0.0.1", Err(Loopback)),
            ("169.254.169.254", Err(LinkLocal)),
            ("100.64.0.1", Err(SharedAddressSpace)),
            ("100.127.255.254", Err(SharedAddressSpace)),
            ("192.0.2.1", Err(Documentation)),
            ("198.51.100.7", Err(Documentation)),
            ("203.0.113.200", Err(Documentation)),
            ("224.0.0.251", Err(Multicast)),
            ("239.255.255.250", Err(Multicast)),
            ("0.0.0.0", Err(Unspecified)),
            ("0.1.2.3", Err(Reserved)),
            ("240.0.0.1", Err(Reserved)),
            ("255.255.255.255", Err(Reserved)),
            ("198.18.0.1", Err(Reserved)),
            ("198.19.255.1", Err(Reserved)),
            ("192.88.99.1", Err(Reserved)),
            ("192.0.0.1", Err(Reserved)),
            // IPv6 special ranges.
            ("::", Err(Unspecified)),
            ("::1", Err(Loopback)),
            ("fd12:3456::1", Err(Private)),
            ("fc00::1", Err(Private)),
            ("fec0::1", Err(Private)),
            ("fe80::1", Err(LinkLocal)),
            ("fe80::1%eth0", Err(LinkLocal)),
            ("[fe80::1%25]:443", Err(LinkLocal)),
            ("2001:db8::1", Err(Documentation)),
            ("3fff::1", Err(Documentation)),
            ("ff02::1", Err(Multicast)),
            ("2001::1", Err(Reserved)),
            ("2001:2::1", Err(Reserved)),
            ("100::1", Err(Reserved)),
            ("::1.2.3.4", Err(Reserved)),
            ("4000::1", Err(Reserved)),
            ("5f00::1", Err(Reserved)),
            // Brackets, zones and ports.
            ("[2001:8003::1]", Ok(ip("2001:8003::1"))),
            ("[2001:8003::1]:443", Ok(ip("2001:8003::1"))),
            ("2001:8003::1%eth0", Ok(ip("2001:8003::1"))),
            ("81.2.69.142:8443", Ok(ip("81.2.69.142"))),
            ("[2001:8003::1]:x", Err(NotAnIp)),
            // Addresses that carry an IPv4 address are classified as that address.
            ("::ffff:81.2.69.142", Ok(ip("81.2.69.142"))),
            ("::ffff:10.0.0.1", Err(Private)),
            ("::FFFF:192.0.2.1", Err(Documentation)),
            ("64:ff9b::5102:458e", Ok(ip("81.2.69.142"))),
            ("64:ff9b::192.168.0.1", Err(Private)),
            // Proxy chains: the first public address, else the first entry's reason.
            ("81.2.69.142, 192.168.10.10", Ok(ip("81.2.69.142"))),
            ("192.168.10.10, 81.2.69.142", Ok(ip("81.2.69.142"))),
            ("10.0.0.1,172.16.0.1, 81.2.69.142 ", Ok(ip("81.2.69.142"))),
            ("10.0.0.1, 127.0.0.1", Err(Private)),
            ("ec2.amazonaws.com, 10.0.0.1", Err(AwsService)),
            (" , 2001:8003::1", Ok(ip("2001:8003::1"))),
            (",", Err(NotAnIp)),
        ];
        for (input, expected) in cases {
            assert_eq!(classify_source(input), *expected, "case {input:?}");
        }
    }

    #[test]
    fn every_reason_is_covered_by_the_table_and_named_once() {
        let names: std::collections::BTreeSet<_> =
            SourceSkip::ALL.iter().map(SourceSkip::as_str).collect();
        assert_eq!(names.len(), SourceSkip::ALL.len());
        for skip in SourceSkip::ALL {
            let json = serde_json::to_string(&skip).expect("serializes");
            assert_eq!(
                json,
                format!("\"{}\"", skip.as_str()),
                "serde name of {skip:?}"
            );
            assert_eq!(skip.to_string(), skip.as_str());
        }
    }

    #[test]
    fn every_reason_has_an_example() {
        let examples = [
            "",
            "AWS Internal",
            "ec2.amazonaws.com",
            "redacted",
            "10.0.0.1",
            "127.0.0.1",
            "fe80::1",
            "100.64.0.1",
            "2001:db8::1",
            "ff02::1",
            "::",
            "240.0.0.1",
        ];
        let got: Vec<SourceSkip> = examples
            .iter()
            .map(|e| classify_source(e).expect_err("example is skipped"))
            .collect();
        assert_eq!(got, SourceSkip::ALL);
    }

    #[test]
    fn classify_ip_returns_the_address_to_look_up() {
        assert_eq!(classify_ip(ip("::ffff:1.128.0.1")), Ok(ip("1.128.0.1")));
        assert_eq!(classify_ip(ip("1.128.0.1")), Ok(ip("1.128.0.1")));
        assert_eq!(classify_ip(ip("10.0.0.1")), Err(SourceSkip::Private));
    }
}
