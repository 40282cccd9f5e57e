#!/bin/sh
# Runs a test program under valgrind memcheck, following the worker processes
# Criterion starts for each test (system programs a test script runs, under
# /usr/bin and /bin, are not followed), and fails when any process reported a
# memory error or a definite leak (a worker's own exit status does not reach
# Criterion's runner, so the logs are read instead).
# usage: valgrind-wrap.sh PROGRAM [ARGS...]     (meson test --wrapper)
set -u
logs=$(mktemp -d) || exit 1
trap 'rm -rf "$logs"' EXIT
# A test that is a shell script: the shell itself is not ours (its own leaks
# are not counted, nor does valgrind replace its exit status); every program
# it starts from the build tree is checked as usual.
exitcode=--error-exitcode=99
script=
if [ "$(head -c 2 "$1" 2>/dev/null)" = "#!" ]; then
    exitcode=--error-exitcode=0
    script=$1
fi
valgrind --trace-children=yes --trace-children-skip="*/mosquitto,*/mosquitto_passwd,*/sh,*/rm,*/openssl,/usr/bin/*,/bin/*,/usr/sbin/*" --track-origins=yes \
    --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    "$exitcode" --log-file="$logs/vg.%p.log" "$@"
rc=$?
if [ -n "$script" ]; then
    grep -l "^==[0-9]*== Command: $script" "$logs"/vg.*.log 2>/dev/null | xargs -r rm -f
fi
bad=$(grep -l "ERROR SUMMARY: [1-9]" "$logs"/vg.*.log 2>/dev/null)
if [ -n "$bad" ]; then
    for f in $bad; do echo "== valgrind: $(basename "$f")"; cat "$f"; done
    echo "FAIL: valgrind found memory errors or leaks"
    exit 1
fi
exit $rc
