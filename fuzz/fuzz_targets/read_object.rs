//! Any bytes: `read_object` must not panic, and what it reports must add up.

#![no_main]

use geotrail::cloudtrail::{read_object, ReadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small limit now and then, so the size check meets odd inputs too.
    let limit = (data.first() == Some(&b'L')).then_some(data.len() as u64 / 2);
    let options = ReadOptions {
        max_decompressed_bytes: limit,
        // A small record limit now and then, so refusing a long record meets odd inputs.
        max_record_bytes: if data.first() == Some(&b'R') { 64 } else { u64::MAX },
    };
    let mut delivered = 0u64;
    let mut bad = 0u64;
    let result = read_object(data, &options, &mut |record| {
        if let Err(err) = record {
            assert_eq!(err.index, delivered, "record errors carry their index");
            bad += 1;
        }
        delivered += 1;
    });
    if let Ok(summary) = result {
        assert!(summary.oversized_records <= summary.bad_records);
        assert_eq!(summary.records, delivered);
        assert_eq!(summary.bad_records, bad);
        assert_eq!(summary.bytes_read, data.len() as u64);
        if !summary.compressed {
            assert_eq!(summary.bytes_decoded, summary.bytes_read);
        }
    }
});
