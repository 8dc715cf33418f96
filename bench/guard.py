#!/usr/bin/python3
"""The instruction guard: counts the instructions of the core and of the
request path per slot with callgrind (deterministic, unlike wall time on a
shared machine) and fails when one exceeds its budget in bench/budgets.json
by more than the tolerance.

Each case runs twice, with REPS_LOW and REPS_HIGH repetitions; the
difference divided by the extra repetitions and the slots is the cost of
one slot, free of process start and setup."""
import argparse
import json
import os
import re
import subprocess
import sys

REPS_LOW, REPS_HIGH = 1, 6
HERE = os.path.dirname(os.path.abspath(__file__))


def instructions(guard, case, reps):
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", guard, case, str(reps)],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit("guard: %s %s %d failed (exit %d):\n%s" % (guard, case, reps, p.returncode, p.stderr[-2000:]))
    collected = re.search(r"Collected : (\d+)", p.stderr)
    slots = re.search(r"slots (\d+)", p.stdout)
    if collected is None or slots is None:
        sys.exit("guard: no instruction count from callgrind for %s:\n%s" % (case, p.stderr[-2000:]))
    return int(collected.group(1)), int(slots.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guard", default="build/guard", help="the workload binary (bench/guard.c)")
    ap.add_argument("--budgets", default=os.path.join(HERE, "budgets.json"))
    ap.add_argument("--tolerance", type=float, default=0.10, help="allowed excess over a budget (0.10: 10%%)")
    args = ap.parse_args()
    with open(args.budgets) as f:
        budgets = json.load(f)["instructions_per_slot"]
    over = []
    print("%-24s %14s %10s %8s" % ("case", "instr/slot", "budget", "ratio"))
    for case, budget in sorted(budgets.items()):
        low, slots = instructions(args.guard, case, REPS_LOW)
        high, _ = instructions(args.guard, case, REPS_HIGH)
        per_slot = (high - low) / ((REPS_HIGH - REPS_LOW) * slots)
        ratio = per_slot / budget
        print("%-24s %14.1f %10d %8.3f" % (case, per_slot, budget, ratio))
        if ratio > 1 + args.tolerance:
            over.append(case)
    if over:
        print("guard: over budget by more than %d%%: %s" % (round(args.tolerance * 100), ", ".join(over)))
        return 1
    print("guard: every case within its budget (+%d%%)" % round(args.tolerance * 100))
    return 0


if __name__ == "__main__":
    sys.exit(main())
