#!/usr/bin/env python3
"""Runs a benchmark program of tests/bench/ under callgrind and prints the
instructions per operation of every case it dumps, then the ratios the
program asks for.

usage: callgrind.py PROGRAM [ARGS...]

The program marks each case with bench_run() (bench.h), which dumps the
callgrind counters under "<name>:<iters>". Ratio requests are lines the
program prints in its normal run:  ratio <label> <case_a> <case_b> [<goal>]
meaning Ir(case_a)/Ir(case_b), optionally checked against goal ("<=0.5" or
">=1000"). A missed goal is reported, not a failure: benchmarks are not tests.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    prog = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        env = dict(os.environ)
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out + ".%p",
             "--dump-instr=no", "--compress-strings=no", "--compress-pos=no"] + prog,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            print("callgrind run failed", file=sys.stderr)
            return 1
        ir = {}
        for path in sorted(glob.glob(out + ".*")):
            desc, total = None, None
            with open(path) as f:
                for line in f:
                    if line.startswith("desc: Trigger: Client Request: "):
                        desc = line.split("Client Request: ", 1)[1].strip()
                    elif line.startswith("summary:") or line.startswith("totals:"):
                        total = int(line.split()[1])
            if desc and total is not None and ":" in desc:
                name, iters = desc.rsplit(":", 1)
                ir[name] = total / int(iters)
    width = max([len(n) for n in ir] + [10])
    print("%-*s %14s" % (width, "case", "Ir/op"))
    for name, v in ir.items():
        print("%-*s %14.1f" % (width, name, v))
    status = 0
    for line in proc.stdout.splitlines():
        m = re.match(r"ratio (\S+) (\S+) (\S+)(?: ([<>]=)([0-9.eE+-]+))?$", line)
        if not m:
            continue
        label, a, b, op, goal = m.groups()
        if a not in ir or b not in ir or ir[b] == 0:
            print("ratio %s: missing case %s or %s" % (label, a, b))
            status = 1
            continue
        r = ir[a] / ir[b]
        verdict = ""
        if op:
            ok = r <= float(goal) if op == "<=" else r >= float(goal)
            verdict = "  goal %s%s: %s" % (op, goal, "met" if ok else "MISSED")
        print("ratio %-40s %12.4f  (Ir %s / Ir %s)%s" % (label, r, a, b, verdict))
    for line in proc.stdout.splitlines():
        if line.startswith("info "):
            print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
