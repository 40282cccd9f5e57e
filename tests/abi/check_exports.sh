#!/bin/sh
# What the shared library exports is exactly what the version script lists,
# every exported name starts with ciot_, and every one is declared in a header.
# usage: check_exports.sh NM LIBRARY MAPFILE INCLUDE_DIR GENERATED_INCLUDE_DIR
set -u
nm=$1 lib=$2 map=$3 inc=$4 gen=$5
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$nm" -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' \
    | grep -v '^CLOUDIOT_' | sort -u >"$tmp/exported"
sed 's#/\*.*\*/##' "$map" | grep -oE '^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*;' | tr -d ' \t;' \
    | grep -vE '^(global|local)$' | sort -u >"$tmp/listed"
fail=0
if [ ! -s "$tmp/exported" ]; then echo "FAIL: nothing exported"; exit 1; fi
extra=$(comm -23 "$tmp/exported" "$tmp/listed")
missing=$(comm -13 "$tmp/exported" "$tmp/listed")
unprefixed=$(grep -v '^ciot_' "$tmp/exported")
[ -z "$extra" ] || { echo "FAIL: exported but not in the version script:"; echo "$extra"; fail=1; }
[ -z "$missing" ] || { echo "FAIL: in the version script but not exported:"; echo "$missing"; fail=1; }
[ -z "$unprefixed" ] || { echo "FAIL: exported without the ciot_ prefix:"; echo "$unprefixed"; fail=1; }
for s in $(cat "$tmp/exported"); do
    grep -qE "\\b$s\\(" "$inc"/cloudiot/*.h "$gen"/cloudiot/*.h || { echo "FAIL: $s is exported but declared in no public header"; fail=1; }
done
echo "$(wc -l <"$tmp/exported") symbols exported"
exit $fail
