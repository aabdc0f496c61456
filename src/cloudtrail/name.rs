//! Objects a trail bucket holds that are not event logs, known by their names.

/// Why an object is skipped without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectSkip {
    /// A CloudTrail digest file (hashes of log files, no events).
    Digest,
    /// The empty `ConfigWritabilityCheckFile` AWS Config writes to test the bucket.
    ConfigWritabilityCheck,
}

/// Tells from an S3 key or file name whether the object holds no events.
///
/// Digests live under a `CloudTrail-Digest/` prefix and are named
/// `<account>_CloudTrail-Digest_<region>_...json.gz`; either is enough, so a digest
/// copied elsewhere is still recognised.
pub fn skip_by_name(name: &str) -> Option<ObjectSkip> {
    if name.contains("ConfigWritabilityCheckFile") {
        return Some(ObjectSkip::ConfigWritabilityCheck);
    }
    let mut components = name.split(['/', '\\']);
    let file = components.next_back().unwrap_or(name);
    if components.any(|c| c == "CloudTrail-Digest") || is_digest_file_name(file) {
        return Some(ObjectSkip::Digest);
    }
    None
}

/// `-Digest` ending a `_`- or `.`-separated word of the file name.
fn is_digest_file_name(file: &str) -> bool {
    file.match_indices("-Digest").any(|(at, word)| {
        matches!(
            file.as_bytes().get(at + word.len()),
            None | Some(b'_' | b'.')
        )
    })
}

/// When CloudTrail wrote a log object, from its name, epoch ms.
///
/// CloudTrail names objects `<account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz`,
/// the time being when it wrote the file (UTC, to the minute). The minute is rounded up,
/// so every genuine event in the object is before it.
pub fn written_at_from_name(name: &str) -> Option<i64> {
    name_time(name).map(|(ms, to_the_second)| if to_the_second { ms } else { ms + 60_000 })
}

/// The time in a CloudTrail object's name as written (the minute's start, or the
/// second for names that carry seconds), epoch ms: what a backfill selects by, so that
/// `--since 2025-03-13` takes exactly the objects named `20250313T...` onwards.
pub fn name_time_ms(name: &str) -> Option<i64> {
    name_time(name).map(|(ms, _)| ms)
}

/// (epoch ms, whether the name carries seconds).
fn name_time(name: &str) -> Option<(i64, bool)> {
    let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
    file.split(['_', '.']).find_map(|word| {
        let b = word.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let minute =
            b.len() == 14 && b[8] == b'T' && b[13] == b'Z' && digits(0..8) && digits(9..13);
        let second =
            b.len() == 16 && b[8] == b'T' && b[15] == b'Z' && digits(0..8) && digits(9..15);
        if !(minute || second) {
            return None;
        }
        let w = word;
        let ss = if second { &w[13..15] } else { "00" };
        let rfc3339 = format!(
            "{}-{}-{}T{}:{}:{ss}Z",
            &w[0..4],
            &w[4..6],
            &w[6..8],
            &w[9..11],
            &w[11..13]
        );
        Some((super::parse_event_time(&rfc3339)?, second))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_digests_and_writability_checks_by_name() {
        let cases: &[(&str, &str, Option<ObjectSkip>)] = &[
            (
                "log file",
                "AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/10/123456789012_CloudTrail_us-east-1_20230710T1145Z_7xgocspSowgK0Gto.json.gz",
                None,
            ),
            (
                "digest key",
                "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2023/07/10/123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20230710T120000Z.json.gz",
                Some(ObjectSkip::Digest),
            ),
            (
                "digest file name alone",
                "123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20230710T120000Z.json.gz",
                Some(ObjectSkip::Digest),
            ),
            (
                "digest directory, windows path",
                r"C:\logs\CloudTrail-Digest\us-east-1\file.json.gz",
                Some(ObjectSkip::Digest),
            ),
            (
                "org trail digest",
                "AWSLogs/o-abc/123456789012/CloudTrail-Digest/eu-west-1/2023/07/10/x.json.gz",
                Some(ObjectSkip::Digest),
            ),
            ("digest word in a bucket-ish prefix", "my-Digest-app/logs/file.json.gz", None),
            ("digest word inside a file name", "events-Digestive.json", None),
            (
                "config writability check",
                "AWSLogs/123456789012/Config/ConfigWritabilityCheckFile",
                Some(ObjectSkip::ConfigWritabilityCheck),
            ),
            ("empty name", "", None),
        ];
        for (case, name, want) in cases {
            assert_eq!(skip_by_name(name), *want, "case {case}: {name}");
        }
    }

    #[test]
    fn the_write_time_is_read_from_cloudtrails_object_name() {
        let cases = [
            (
                "AWSLogs/123456789012/CloudTrail/us-east-2/2025/03/11/123456789012_CloudTrail_us-east-2_20250311T1505Z_1oX5vm0RjnffXNhJ.json.gz",
                Some("2025-03-11T15:06:00Z"),
            ),
            ("123456789012_CloudTrail_eu-west-1_20240101T0000Z_x.json", Some("2024-01-01T00:01:00Z")),
            ("dir_20240101T0000Z/trail.json", None),
            ("trail.json", None),
            ("x_20241301T0000Z_y.json", None),
            ("x_2024010T10000Z_y.json", None),
        ];
        for (name, want) in cases {
            let want = want.map(|t| super::super::parse_event_time(t).unwrap());
            assert_eq!(written_at_from_name(name), want, "{name}");
        }
    }
}
