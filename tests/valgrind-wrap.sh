#!/bin/sh
# Runs a test program under valgrind memcheck, following the worker processes
# Criterion starts for each test, and fails when any process reported a
# memory error or a definite leak (a worker's own exit status does not reach
# Criterion's runner, so the logs are read instead).
# usage: valgrind-wrap.sh PROGRAM [ARGS...]     (meson test --wrapper)
set -u
logs=$(mktemp -d) || exit 1
trap 'rm -rf "$logs"' EXIT
valgrind --trace-children=yes --trace-children-skip="*/mosquitto,*/mosquitto_passwd,*/sh,*/rm,*/openssl" --track-origins=yes \
    --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --error-exitcode=99 --log-file="$logs/vg.%p.log" "$@"
rc=$?
bad=$(grep -l "ERROR SUMMARY: [1-9]" "$logs"/vg.*.log 2>/dev/null)
if [ -n "$bad" ]; then
    for f in $bad; do echo "== valgrind: $(basename "$f")"; cat "$f"; done
    echo "FAIL: valgrind found memory errors or leaks"
    exit 1
fi
exit $rc
