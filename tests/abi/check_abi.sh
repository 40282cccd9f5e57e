#!/bin/sh
# Compares the built library's ABI with the stored baseline. An incompatible
# change (a function removed, a type changed) fails until the baseline is
# regenerated on purpose with scripts/update-abi and a CHANGELOG line.
# Compatible additions fail too, so that the baseline always describes main.
# usage: check_abi.sh ABIDW ABIDIFF LIBRARY INCLUDE_DIR GENERATED_INCLUDE_DIR BASELINE
set -u
abidw=$1 abidiff=$2 lib=$3 inc=$4 gen=$5 base=$6
[ -f "$base" ] || { echo "FAIL: no ABI baseline at abi/libcloudiot.abi (run scripts/update-abi)"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$abidw" --headers-dir "$inc/cloudiot" --headers-dir "$gen/cloudiot" --no-corpus-path --no-comp-dir-path --short-locs --drop-private-types \
    --out-file "$tmp/current.abi" "$lib" || { echo "FAIL: abidw could not read $lib"; exit 1; }
"$abidiff" "$base" "$tmp/current.abi" >"$tmp/diff"
rc=$?
# abidiff exit status bits: 1 error, 2 usage, 4 ABI change, 8 incompatible change.
if [ $((rc & 3)) -ne 0 ]; then cat "$tmp/diff"; echo "FAIL: abidiff error ($rc)"; exit 1; fi
if [ $((rc & 8)) -ne 0 ]; then
    cat "$tmp/diff"
    echo "FAIL: incompatible ABI change against abi/libcloudiot.abi"
    echo "      if it is on purpose: scripts/update-abi, and an ABI line in CHANGELOG.md"
    exit 1
fi
if [ $((rc & 4)) -ne 0 ]; then
    cat "$tmp/diff"
    echo "FAIL: the ABI grew or changed compatibly; the baseline must follow on purpose:"
    echo "      scripts/update-abi, and an ABI line in CHANGELOG.md"
    exit 1
fi
echo "ABI matches abi/libcloudiot.abi"
