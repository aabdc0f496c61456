#!/usr/bin/env bash
# geotrail scan against plain decompression, on the same .gz corpus, in one run; and
# geotrail's peak RSS on one 100 MB (uncompressed) object.
#
# The aims (issue 2, point 12): `geotrail scan` takes no longer than `gzip -dc` needs to
# decompress the same files, and its peak RSS stays under 128 MB for a 100 MB object.
# `libdeflate-gunzip` (Debian: libdeflate-tools), when installed, shows the ceiling.
#
# Builds release, fetches the DB-IP database (geoip/fetch.sh), generates the corpus into
# target/ once (examples/gen_corpus.rs, deterministic), then times each command REPS
# times, alternating between them so that a noisy neighbour hurts all of them alike, and
# reports medians and ratios to `gzip -dc`. Wall time is what the aim is about; CPU time
# (user + sys, all threads) is printed too because it is what a busy machine distorts
# least.
#
# `geotrail scan` runs twice: with `--no-state`, and with a state file that is deleted
# before each run (so every run does the same work: a first scan into an empty file).
#
# Usage: benches/compare.sh [REPS]
#   env: CORPUS_OBJECTS (200), CORPUS_MIB (400), BIG_MIB (100), CORPUS_SEED (1),
#        CORPUS_SUBJECTS (20000: access keys in the population; most of them show up)
#
# Many subjects, as in a large organisation's trail (600,000 events over about 46,000
# keys, 2,000 events an object):
#   CORPUS_OBJECTS=300 CORPUS_MIB=725 CORPUS_SUBJECTS=46000 benches/compare.sh 3
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

reps="${1:-5}"
objects="${CORPUS_OBJECTS:-200}"
total_mib="${CORPUS_MIB:-400}"
big_mib="${BIG_MIB:-100}"
seed="${CORPUS_SEED:-1}"
subjects="${CORPUS_SUBJECTS:-20000}"
geoip="geoip/dbip-city-lite.mmdb"
corpus="target/bench-corpus/seed${seed}-${objects}x-${total_mib}mib-big${big_mib}mib"
[[ "$subjects" == 20000 ]] || corpus+="-${subjects}subjects"
state="target/bench-corpus/state.redb"
geotrail="target/release/geotrail"

# Arithmetic on decimals, without depending on bc.
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

echo "== build"
cargo build --release --quiet --bin geotrail --example gen_corpus
geoip/fetch.sh

if [[ ! -e "$corpus/.complete" ]]; then
    echo "== generating $corpus"
    rm -rf "$corpus"
    target/release/examples/gen_corpus --geoip "$geoip" --out "$corpus" \
        --objects "$objects" --total-mib "$total_mib" --big-mib "$big_mib" --seed "$seed" \
        --subjects "$subjects"
    touch "$corpus/.complete"
fi

mapfile -t files < <(find "$corpus/trail" -name '*.json.gz' | sort)
mapfile -t big < <(find "$corpus/big" -name '*.json.gz')
raw_bytes=$(gzip -dc "${files[@]}" | wc -c)
gz_bytes=$(cat "${files[@]}" | wc -c)
printf '== corpus: %d objects, %.0f MiB uncompressed, %.1f MiB gzip\n' \
    "${#files[@]}" "$(calc "$raw_bytes / 1048576")" "$(calc "$gz_bytes / 1048576")"
echo "   machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# The commands, by name. Each writes its output to /dev/null.
names=("gzip -dc")
run_gzip() { gzip -dc "${files[@]}"; }
cmds=(run_gzip)
if command -v libdeflate-gunzip >/dev/null 2>&1; then
    names+=("libdeflate-gunzip -c")
    run_libdeflate() { libdeflate-gunzip -c "${files[@]}"; }
    cmds+=(run_libdeflate)
else
    echo "   (libdeflate-gunzip not installed: apt-get install libdeflate-tools to see the ceiling)"
fi
names+=("geotrail scan --no-state")
run_geotrail() { "$geotrail" scan --no-state --quiet --format jsonl --geoip "$geoip" "$corpus/trail"; }
cmds+=(run_geotrail)
names+=("geotrail scan --state")
run_geotrail_state() { "$geotrail" scan --state "$state" --quiet --format jsonl --geoip "$geoip" "$corpus/trail"; }
cmds+=(run_geotrail_state)

# "wall user sys" in seconds, from bash's own `time`: no external tool needed.
measure() {
    local TIMEFORMAT='%3R %3U %3S'
    { time "$1" >/dev/null 2>/dev/null; } 2>&1
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# One untimed round warms the page cache (corpus, database, binaries).
for c in "${cmds[@]}"; do rm -f "$state" && "$c" >/dev/null 2>&1; done

wall=() cpu=()
for ((r = 1; r <= reps; r++)); do
    for i in "${!cmds[@]}"; do
        rm -f "$state"
        read -r w u s < <(measure "${cmds[$i]}")
        wall[$i]+="$w "
        cpu[$i]+="$(calc "$u + $s") "
    done
done

echo
echo "== $reps runs each, alternating; medians"
printf '%-26s %9s %9s %10s %11s %10s\n' command "wall s" "cpu s" "MiB/s" "wall/gzip" "cpu/gzip"
base_wall=$(tr ' ' '\n' <<<"${wall[0]}" | grep . | median)
base_cpu=$(tr ' ' '\n' <<<"${cpu[0]}" | grep . | median)
for i in "${!cmds[@]}"; do
    w=$(tr ' ' '\n' <<<"${wall[$i]}" | grep . | median)
    c=$(tr ' ' '\n' <<<"${cpu[$i]}" | grep . | median)
    printf '%-26s %9.2f %9.2f %10.0f %10.2fx %9.2fx\n' "${names[$i]}" "$w" "$c" \
        "$(calc "$raw_bytes / 1048576 / $w")" "$(calc "$w / $base_wall")" "$(calc "$c / $base_cpu")"
done

if [[ -x /usr/bin/time ]]; then
    echo
    echo "== peak RSS of geotrail scan over the whole trail"
    for mode in "--no-state" "--state $state"; do
        rm -f "$state"
        # shellcheck disable=SC2086 # $mode is two words on purpose
        /usr/bin/time -f '%M' -o "$state.rss" "$geotrail" scan $mode --quiet --format jsonl \
            --geoip "$geoip" "$corpus/trail" >/dev/null 2>&1 || true
        printf '%-26s %6.0f MiB\n' "geotrail scan ${mode%% *}" "$(calc "$(tail -n 1 "$state.rss") / 1024")"
    done
    rm -f "$state" "$state.rss"
fi

echo
big_raw=$(gzip -dc "${big[0]}" | wc -c)
printf '== peak RSS of geotrail scan on one %.0f MiB (uncompressed) object\n' "$(calc "$big_raw / 1048576")"
if [[ -x /usr/bin/time ]]; then
    rss_kb=$(/usr/bin/time -f '%M' "$geotrail" scan --no-state --quiet --format jsonl --geoip "$geoip" "${big[0]}" 2>&1 >/dev/null | tail -n 1)
else
    # No GNU time: poll the kernel's high-water mark while the scan runs.
    "$geotrail" scan --no-state --quiet --format jsonl --geoip "$geoip" "${big[0]}" >/dev/null &
    pid=$!
    rss_kb=0
    while kill -0 "$pid" 2>/dev/null; do
        hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        [[ -n "$hwm" && "$hwm" -gt "$rss_kb" ]] && rss_kb=$hwm
        sleep 0.01
    done
    wait "$pid"
fi
# Part of the RSS is the memory-mapped GeoIP database's pages (file-backed, shared,
# reclaimable); sampling RssAnon separates the process's own heap from them.
"$geotrail" scan --no-state --quiet --format jsonl --geoip "$geoip" "${big[0]}" >/dev/null &
pid=$!
anon_kb=0
while kill -0 "$pid" 2>/dev/null; do
    a=$(awk '/^RssAnon/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    [[ -n "$a" && "$a" -gt "$anon_kb" ]] && anon_kb=$a
    sleep 0.01
done
wait "$pid"
verdict=$([[ "$rss_kb" -lt $((128 * 1024)) ]] && echo "under" || echo "OVER")
printf 'peak RSS %.0f MiB (%s the 128 MiB aim); of it anonymous (heap) about %.0f MiB\n' \
    "$(calc "$rss_kb / 1024")" "$verdict" "$(calc "$anon_kb / 1024")"
