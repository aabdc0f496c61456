//! Writes a deterministic corpus of gzip CloudTrail objects for `benches/compare.sh`:
//! `--objects` objects totalling `--total-mib` MiB uncompressed under `OUT/trail/`, in the
//! real S3 key layout, and one object of `--big-mib` MiB under `OUT/big/` for the memory
//! check. Addresses are random public IPv4 addresses that the given City database places
//! in a city, so every lookup does a real tree walk and many subjects are far apart.
//!
//! `cargo run --release --example gen_corpus -- --geoip geoip/dbip-city-lite.mmdb --out target/bench-corpus`

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use clap::Parser;
use flate2::write::GzEncoder;
use flate2::Compression;
use geotrail::finding::format_rfc3339_ms;
use geotrail::geo::{classify_ip, GeoDb};

// Not every helper of the shared generator is used by both of its users.
#[allow(dead_code)]
#[path = "../benches/synth/mod.rs"]
mod synth;

#[derive(Debug, Parser)]
#[command(about = "Write a synthetic CloudTrail corpus for benchmarks")]
struct Args {
    /// City database that decides which random addresses are usable.
    #[arg(long, default_value = "geoip/dbip-city-lite.mmdb")]
    geoip: PathBuf,
    /// Output directory; `trail/` and `big/` are written inside it.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 200)]
    objects: usize,
    /// Uncompressed size of the `trail/` objects together.
    #[arg(long, default_value_t = 400)]
    total_mib: usize,
    /// Uncompressed size of the single object in `big/` (0 for none).
    #[arg(long, default_value_t = 100)]
    big_mib: usize,
    #[arg(long, default_value_t = 20_000)]
    subjects: usize,
    #[arg(long, default_value_t = 12)]
    stolen_keys: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const REGIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
    "ap-northeast-1",
];
/// 2025-03-10T00:00:00Z: the corpus covers one day from here.
const START_MS: i64 = 1_741_564_800_000;
const SPAN_MS: i64 = 24 * 3_600_000;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.objects > 0, "--objects must be at least 1");
    let db = GeoDb::open(&args.geoip, None)
        .with_context(|| format!("opening {} (run geoip/fetch.sh)", args.geoip.display()))?;
    let mut rng = synth::Rng::new(args.seed);
    let places = real_places(&db, &mut rng, 3000);
    let spec = synth::TrailSpec {
        seed: args.seed,
        subjects: args.subjects,
        stolen_keys: args.stolen_keys,
        start_ms: START_MS,
        span_ms: SPAN_MS,
    };
    let mut trail = synth::Trail::new(&spec, &places);

    let object_bytes = (args.total_mib << 20) / args.objects;
    let window_ms = SPAN_MS / args.objects as i64;
    let mut buf = Vec::with_capacity(object_bytes + (64 << 10));
    let (mut raw, mut packed) = (0u64, 0u64);
    for k in 0..args.objects {
        let region = REGIONS[k % REGIONS.len()];
        let start = START_MS + k as i64 * window_ms;
        buf.clear();
        trail.write_object(&mut buf, region, start, start + window_ms, object_bytes);
        raw += buf.len() as u64;
        packed += write_gzip(
            &args.out.join("trail"),
            region,
            start + window_ms,
            &mut rng,
            &buf,
        )?;
    }
    eprintln!(
        "trail: {} objects, {:.0} MiB uncompressed, {:.1} MiB gzip",
        args.objects,
        raw as f64 / 1048576.0,
        packed as f64 / 1048576.0
    );
    if args.big_mib > 0 {
        // Five minutes of a very busy region, right after the day above.
        let start = START_MS + SPAN_MS;
        let mut big = Vec::with_capacity((args.big_mib << 20) + (64 << 10));
        trail.write_object(
            &mut big,
            "us-east-1",
            start,
            start + 5 * 60_000,
            args.big_mib << 20,
        );
        let packed = write_gzip(
            &args.out.join("big"),
            "us-east-1",
            start + 5 * 60_000,
            &mut rng,
            &big,
        )?;
        eprintln!(
            "big: 1 object, {:.0} MiB uncompressed, {:.1} MiB gzip",
            big.len() as f64 / 1048576.0,
            packed as f64 / 1048576.0
        );
    }
    let stolen: Vec<&str> = trail.stolen_keys().collect();
    eprintln!("stolen keys ({}): {}", stolen.len(), stolen.join(" "));
    Ok(())
}

/// Cities from random public addresses: each place is up to four addresses of one /24
/// that the database puts in the same city.
fn real_places(db: &GeoDb, rng: &mut synth::Rng, count: usize) -> Vec<synth::Place> {
    let mut places = Vec::with_capacity(count);
    while places.len() < count {
        let Some((ip, location)) = locate(db, Ipv4Addr::from(rng.next_u64() as u32)) else {
            continue;
        };
        let key = location.place_key();
        let mut ips = vec![IpAddr::V4(ip)];
        for _ in 0..8 {
            let [a, b, c, _] = ip.octets();
            let candidate = Ipv4Addr::new(a, b, c, 1 + rng.below(254) as u8);
            if let Some((other, loc)) = locate(db, candidate) {
                if loc.place_key() == key && !ips.contains(&IpAddr::V4(other)) {
                    ips.push(IpAddr::V4(other));
                }
            }
            if ips.len() == 4 {
                break;
            }
        }
        places.push(synth::Place {
            ips,
            latitude: location.latitude,
            longitude: location.longitude,
        });
    }
    places
}

/// A public address the database places in a city.
fn locate(db: &GeoDb, ip: Ipv4Addr) -> Option<(Ipv4Addr, geotrail::geo::Location)> {
    classify_ip(IpAddr::V4(ip)).ok()?;
    let location = db.lookup(IpAddr::V4(ip)).ok()??;
    location.is_precise().then_some((ip, location))
}

/// Writes `json` gzip-compressed under `root` at the key CloudTrail would give it;
/// returns the compressed size.
fn write_gzip(
    root: &Path,
    region: &str,
    end_ms: i64,
    rng: &mut synth::Rng,
    json: &[u8],
) -> anyhow::Result<u64> {
    // 2025-03-10T00:05:00Z -> 2025/03/10 and 20250310T0005Z
    let time = format_rfc3339_ms(end_ms);
    let (date, clock) = (&time[..10], &time[11..16]);
    let stamp = format!("{}T{}Z", date.replace('-', ""), clock.replace(':', ""));
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let suffix: String = (0..16).map(|_| *rng.pick(ALNUM) as char).collect();
    let account = synth::ACCOUNT;
    let dir = root.join(format!(
        "AWSLogs/{account}/CloudTrail/{region}/{}",
        date.replace('-', "/")
    ));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!(
        "{account}_CloudTrail_{region}_{stamp}_{suffix}.json.gz"
    ));
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut gz = GzEncoder::new(BufWriter::new(file), Compression::default());
    gz.write_all(json)
        .with_context(|| format!("writing {}", path.display()))?;
    let mut out = gz
        .finish()
        .with_context(|| format!("writing {}", path.display()))?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(fs::metadata(&path)?.len())
}
