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
# mosquitto's plugin headers, sqlite needs libsqlite3-dev: scripts/deps
# installs both).
for opt in emulator aws azure mqtt sqlite; do
    if meson setup "$tmp/b-$opt" "$src" "-D$opt=enabled" >"$tmp/$opt.log" 2>&1; then
        echo "-D$opt=enabled accepted"
    else
        tail -n 5 "$tmp/$opt.log"; echo "FAIL: -D$opt=enabled was refused"; fail=1
    fi
done
# A part that can be left out: 'disabled' is accepted and says so.
if meson setup "$tmp/b-nosqlite" "$src" -Dsqlite=disabled >"$tmp/nosqlite.log" 2>&1; then
    if grep -Eq "sqlite \(rules sink\) *: *(NO|False)" "$tmp/nosqlite.log"; then
        echo "-Dsqlite=disabled accepted (the sink answers CIOT_ENOTBUILT)"
    else
        tail -n 20 "$tmp/nosqlite.log"; echo "FAIL: -Dsqlite=disabled: the summary does not say it is left out"; fail=1
    fi
else
    tail -n 5 "$tmp/nosqlite.log"; echo "FAIL: -Dsqlite=disabled was refused"; fail=1
fi
exit $fail
