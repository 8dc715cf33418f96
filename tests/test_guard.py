#!/usr/bin/python3
"""The instruction guard itself (bench/guard.py): it passes on this build
against the committed budgets, fails on a deliberately slowed build (the
core at -O0, build/guard-slow) naming every case, and fails on this build
when the budgets are 20% below what is committed."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARD_PY = os.path.join(ROOT, "bench", "guard.py")
BUDGETS = os.path.join(ROOT, "bench", "budgets.json")
CASES = ["core_arrears", "core_arrears_encoded", "request_arrears_inline"]


def guard(binary, budgets=BUDGETS):
    return subprocess.run([sys.executable, GUARD_PY, "--guard", os.path.join(ROOT, "build", binary),
                           "--budgets", budgets], capture_output=True, text=True, timeout=600)


class Guard(unittest.TestCase):
    def test_this_build_is_within_the_committed_budgets(self):
        p = guard("guard")
        print(p.stdout, end="")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for case in CASES:
            self.assertIn(case, p.stdout)

    def test_a_slowed_build_fails_naming_every_case(self):
        p = guard("guard-slow")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        last = p.stdout.strip().splitlines()[-1]
        self.assertTrue(last.startswith("guard: over budget"), last)
        for case in CASES:
            self.assertIn(case, last)

    def test_budgets_20_percent_lower_fail(self):
        with open(BUDGETS) as f:
            doc = json.load(f)
        doc["instructions_per_slot"] = {k: int(v / 1.2) for k, v in doc["instructions_per_slot"].items()}
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(doc, f)
            f.flush()
            p = guard("guard", f.name)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
