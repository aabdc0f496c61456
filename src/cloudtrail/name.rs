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
}
