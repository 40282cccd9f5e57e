#!/bin/sh
# Options for parts of the scope that are not in this tree yet must be
# refused when asked for, with a message naming what is missing, never
# accepted silently.
# usage: check_options.sh SOURCE_DIR
set -u
src=$1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
for opt in bindings; do
    if meson setup "$tmp/b-$opt" "$src" "-D$opt=enabled" >"$tmp/$opt.log" 2>&1; then
        echo "FAIL: -D$opt=enabled was accepted"; fail=1
    elif ! grep -q "option $opt: not in this tree yet" "$tmp/$opt.log"; then
        tail -n 5 "$tmp/$opt.log"; echo "FAIL: -D$opt=enabled failed without saying why"; fail=1
    else
        echo "-D$opt=enabled refused: $(grep -o "option $opt: .*" "$tmp/$opt.log")"
    fi
done
# Parts that are in the tree: 'enabled' is accepted (the emulator needs
# mosquitto's plugin headers, which this machine has).
for opt in emulator aws azure mqtt; do
    if meson setup "$tmp/b-$opt" "$src" "-D$opt=enabled" >"$tmp/$opt.log" 2>&1; then
        echo "-D$opt=enabled accepted"
    else
        tail -n 5 "$tmp/$opt.log"; echo "FAIL: -D$opt=enabled was refused"; fail=1
    fi
done
exit $fail
