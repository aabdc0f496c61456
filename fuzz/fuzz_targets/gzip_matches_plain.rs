//! `gzip(json)` must read exactly as `json` does: same records, same errors, same
//! summary, whether compressed as one member or two.

#![no_main]

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use geotrail::cloudtrail::{read_object, ReadOptions};
use libfuzzer_sys::fuzz_target;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).expect("write to memory");
    encoder.finish().expect("write to memory")
}

/// Everything a read reports, except what depends on the compression.
fn read(input: &[u8]) -> Vec<String> {
    let mut seen = Vec::new();
    let result = read_object(input, &ReadOptions::default(), &mut |record| {
        seen.push(format!("{record:?}"));
    });
    seen.push(match result {
        Ok(summary) => format!(
            "{} records={} bad={} decoded={}",
            summary.kind, summary.records, summary.bad_records, summary.bytes_decoded
        ),
        Err(err) => err.to_string(),
    });
    seen
}

fuzz_target!(|data: &[u8]| {
    // Plain input that starts with the gzip magic is read as gzip, by design.
    if data.starts_with(&[0x1f, 0x8b]) {
        return;
    }
    let plain = read(data);
    assert_eq!(read(&gzip(data)), plain, "one member");

    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut two_members = gzip(&data[..split]);
    two_members.extend(gzip(&data[split..]));
    assert_eq!(read(&two_members), plain, "two members split at {split}");
});
