#!/bin/sh
# Every public header compiles alone, as C99 and as C++, with warnings as errors.
# usage: check_headers.sh CC CXX SRC_INCLUDE_DIR BUILD_INCLUDE_DIR
set -u
cc=$1 cxx=$2 src=$3 gen=$4
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0 n=0
for h in "$src"/cloudiot/*.h "$gen"/cloudiot/*.h; do
    [ -f "$h" ] || continue
    name=cloudiot/$(basename "$h")
    printf '#include <%s>\n#include <%s>\nint main(void) { return 0; }\n' "$name" "$name" >"$tmp/t.c"
    cp "$tmp/t.c" "$tmp/t.cpp"
    n=$((n + 1))
    if ! "$cc" -std=c99 -Wall -Wextra -Wpedantic -Werror -I"$src" -I"$gen" -c "$tmp/t.c" -o "$tmp/t.o"; then
        echo "FAIL: $name does not compile alone as C99"; fail=1
    fi
    if [ -n "$cxx" ] && ! "$cxx" -std=c++11 -Wall -Wextra -Wpedantic -Werror -I"$src" -I"$gen" -c "$tmp/t.cpp" -o "$tmp/t.o"; then
        echo "FAIL: $name does not compile alone as C++"; fail=1
    fi
done
[ "$n" -gt 0 ] || { echo "FAIL: no headers found"; exit 1; }
[ -n "$cxx" ] || echo "note: no C++ compiler found; C++ check skipped"
echo "$n headers checked"
# Identifiers the headers define at file scope must carry the prefix.
bad=$(grep -hoE '^(typedef [a-z ]+ |#define |CIOT_API [a-z_ *]+ \**)[A-Za-z_][A-Za-z0-9_]*' "$src"/cloudiot/*.h "$gen"/cloudiot/*.h \
      | grep -oE '[A-Za-z_][A-Za-z0-9_]*$' | grep -vE '^(ciot_|CIOT_|CLOUDIOT_)' | sort -u)
if [ -n "$bad" ]; then
    echo "FAIL: names without the ciot_/CIOT_ prefix in public headers:"; echo "$bad"; fail=1
fi
exit $fail
