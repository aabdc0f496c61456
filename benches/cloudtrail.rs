//! Reading a ~20 MB CloudTrail object, plain and gzip, against plain gunzip as the bar.
//!
//! Throughput is in decoded bytes for every case, so the figures compare directly with
//! `gzip -dc` on the same data.

use std::hint::black_box;
use std::io::{self, Write};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use geotrail::cloudtrail::{read_object, ReadOptions};

const TARGET_BYTES: usize = 20 * 1024 * 1024;

/// A deterministic generator (64-bit LCG), so every run reads the same bytes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// Records shaped like real ones: the fields geotrail reads, plus request and response
/// bodies of varying size that it skips, and the odd escaped string.
fn record(rng: &mut Lcg, i: u64) -> String {
    let event = rng.pick(&[
        "GetObject",
        "AssumeRole",
        "DescribeInstances",
        "ListBuckets",
        "GetCallerIdentity",
        "PutObject",
    ]);
    let source = rng.pick(&["s3.amazonaws.com", "sts.amazonaws.com", "ec2.amazonaws.com"]);
    let region = rng.pick(&["us-east-1", "eu-west-1", "ap-southeast-2"]);
    let agent = rng.pick(&[
        "aws-cli/2.13.5 Python/3.11.4 Linux/4.14.255-314-253.539.amzn2.x86_64 exec-env/CloudShell exe/x86_64.amzn.2 prompt/off command/s3.ls",
        "[Boto3/1.28.0 md/Botocore#1.31.0 ua/2.0 os/linux#5.10 md/arch#x86_64 lang/python#3.11.4 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.31.0]",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/115.0.0.0 Safari/537.36 \\\"quoted\\\"",
    ]);
    let items: Vec<String> = (0..rng.next() % 12)
        .map(|j| {
            format!(
                r#"{{"instanceId":"i-{:017x}","state":{{"code":16,"name":"running"}},"tags":[{{"key":"Name","value":"web-{j}"}}],"ok":true}}"#,
                rng.next()
            )
        })
        .collect();
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AssumedRole","principalId":"AROA{:016X}:session-{i}","arn":"arn:aws:sts::123456789012:assumed-role/Role{}/session-{i}","accountId":"123456789012","accessKeyId":"ASIA{:016X}","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"AROA{:016X}","arn":"arn:aws:iam::123456789012:role/Role{}","accountId":"123456789012","userName":"Role{}"}},"webIdFederationData":{{}},"attributes":{{"creationDate":"2023-07-10T11:00:00Z","mfaAuthenticated":"false"}}}}}},"eventTime":"2023-07-10T{:02}:{:02}:{:02}Z","eventSource":"{source}","eventName":"{event}","awsRegion":"{region}","sourceIPAddress":"198.51.100.{}","userAgent":"{agent}","requestParameters":{{"bucketName":"bucket-{}","key":"logs/{i}/caf\u00e9.json","items":[{}]}},"responseElements":null,"requestID":"{:016x}","eventID":"{:08x}-0000-4000-8000-{:012x}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management","tlsDetails":{{"tlsVersion":"TLSv1.2","cipherSuite":"ECDHE-RSA-AES128-GCM-SHA256","clientProvidedHostHeader":"{source}"}}}}"#,
        rng.next(),
        i % 7,
        rng.next(),
        rng.next(),
        i % 7,
        i % 7,
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60,
        rng.next() % 256,
        i % 50,
        items.join(","),
        rng.next(),
        rng.next(),
        i,
    )
}

fn cloudtrail_object() -> Vec<u8> {
    let mut rng = Lcg(0x6765_6f74_7261_696c);
    let mut out = b"{\"Records\":[".to_vec();
    let mut i = 0;
    while out.len() < TARGET_BYTES {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(record(&mut rng, i).as_bytes());
        i += 1;
    }
    out.extend_from_slice(b"]}");
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("write to memory");
    encoder.finish().expect("write to memory")
}

fn read_all(input: &[u8]) -> u64 {
    let mut good = 0u64;
    let summary = read_object(input, &ReadOptions::default(), &mut |record| {
        if let Ok(event) = record {
            good += u64::from(black_box(&event).user_identity.is_some());
        }
    })
    .expect("generated object is valid");
    assert_eq!(summary.bad_records, 0);
    good
}

fn bench_read_object(c: &mut Criterion) {
    let plain = cloudtrail_object();
    let compressed = gzip(&plain);
    let mut group = c.benchmark_group("cloudtrail");
    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.sample_size(20);
    group.bench_function("read_object/plain", |b| {
        b.iter(|| read_all(black_box(&plain)))
    });
    group.bench_function("read_object/gzip", |b| {
        b.iter(|| read_all(black_box(&compressed)))
    });
    group.bench_function("gunzip_only", |b| {
        b.iter(|| {
            let mut decoder = MultiGzDecoder::new(black_box(&compressed[..]));
            io::copy(&mut decoder, &mut io::sink()).expect("valid gzip")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_read_object);
criterion_main!(benches);
