#!/bin/sh
# Installs the build into a scratch DESTDIR, then builds and runs a program
# outside the tree with `cc prog.c $(pkg-config --cflags --libs cloudiot)`,
# dynamically and statically.
# usage: check_install.sh BUILD_DIR CONSUMER_C CC
set -u
build=$1 src=$2 cc=$3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
if ! meson install -C "$build" --destdir "$tmp/root" --no-rebuild >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log"; echo "FAIL: meson install"; exit 1
fi
pc=$(find "$tmp/root" -name cloudiot.pc | head -n1)
[ -n "$pc" ] || { echo "FAIL: cloudiot.pc not installed"; exit 1; }
hdr=$(find "$tmp/root" -path '*/include/cloudiot/cloudiot.h' | head -n1)
[ -n "$hdr" ] || { echo "FAIL: headers not installed under include/cloudiot/"; exit 1; }
# PKG_CONFIG_SYSROOT_DIR puts DESTDIR in front of the -I and -L paths.
export PKG_CONFIG_PATH="$(dirname "$pc")" PKG_CONFIG_SYSROOT_DIR="$tmp/root"
ver=$(pkg-config --modversion cloudiot) || { echo "FAIL: pkg-config --modversion cloudiot"; exit 1; }
echo "pkg-config --modversion cloudiot: $ver"
cp "$src" "$tmp/prog.c"
cd "$tmp" || exit 1
# shellcheck disable=SC2046
if ! "$cc" prog.c $(pkg-config --cflags --libs cloudiot) -o prog; then
    echo "FAIL: consumer does not build against the installed library"; exit 1
fi
libdir=$(dirname "$(find "$tmp/root" -name 'libcloudiot.so' | head -n1)")
out=$(LD_LIBRARY_PATH="$libdir" ./prog) || { echo "FAIL: consumer did not run"; exit 1; }
echo "$out"
case "$out" in "cloudiot $ver: buffer too small") ;; *) echo "FAIL: unexpected output"; exit 1 ;; esac
# Static: Requires.private pulls in libmosquitto, openssl and jansson.
# shellcheck disable=SC2046
if ! "$cc" prog.c -static-libgcc $(pkg-config --static --cflags cloudiot) \
        "$libdir/libcloudiot.a" $(pkg-config --static --libs-only-l --libs-only-L cloudiot | sed 's/-lcloudiot//') -o prog_static; then
    echo "FAIL: consumer does not link with the static library"; exit 1
fi
./prog_static >/dev/null || { echo "FAIL: static consumer did not run"; exit 1; }
echo "dynamic and static consumers built and ran"
