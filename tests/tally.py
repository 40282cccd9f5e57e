#!/usr/bin/env python3
"""Counts passed and failed checks in meson test logs.

usage: tally.py LOGFILE...   (meson-logs/testlog*.json)

A Criterion test program counts each of its test cases (from its
"Synthesis:" line); any other test counts once. A program that failed
although its cases all passed (a valgrind error, a crash after the run)
counts one more failure. Prints "passed failed" on one line.
"""
import json
import re
import sys

SYNTH = re.compile(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)")


def main():
    passed = failed = 0
    for path in sys.argv[1:]:
        with open(path) as f:
            for line in f:
                t = json.loads(line)
                ok = t["result"] in ("OK", "EXPECTEDFAIL")
                if t["result"] == "SKIP":
                    continue
                text = (t.get("stdout") or "") + (t.get("stderr") or "")
                m = SYNTH.findall(text)
                if m:
                    _, p, f_, c = map(int, m[-1])
                    passed += p
                    failed += f_ + c
                    if not ok and f_ + c == 0:
                        failed += 1
                else:
                    passed += ok
                    failed += not ok
    print(passed, failed)


if __name__ == "__main__":
    main()
