#!/bin/sh
# The C example in README.md compiles (warnings are errors) and runs.
# usage: check_readme.sh README CC SRC_INCLUDE BUILD_INCLUDE LIBDIR
set -u
readme=$1 cc=$2 inc=$3 gen=$4 libdir=$5
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
awk '/^```c$/ {on=1; next} /^```$/ {if (on) exit} on {print}' "$readme" >"$tmp/ex.c"
[ -s "$tmp/ex.c" ] || { echo "FAIL: no C example in README.md"; exit 1; }
"$cc" -std=c99 -Wall -Wextra -Werror -I"$inc" -I"$gen" "$tmp/ex.c" -L"$libdir" -lcloudiot -o "$tmp/ex" \
    || { echo "FAIL: the README example does not compile"; exit 1; }
LD_LIBRARY_PATH="$libdir" "$tmp/ex" || { echo "FAIL: the README example did not run"; exit 1; }
