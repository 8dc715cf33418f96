#!/usr/bin/python3
"""A real full disk under the server (SPEC §5 code 9, §6: "a full disk is an
error answered to the client, never a crash or a torn record").

    /usr/bin/python3 tests/test_disk.py --arrearsd build/arrearsd --arrears build/arrears

Runs as root: it mounts a tmpfs of 64 MiB (`mount -t tmpfs -o size=64m`)
and puts the server's data directory there; teardown stops the server and
unmounts, also after a failure. Not root: skipped.

Covered, on one store:
- persons stored before the disk fills (whole timelines of 1,200 slots
  with scattered values, so that they do not run-encode);
- a ballast file takes all the free space but BALLAST_SLACK; person.put
  of new persons then goes on until a write answers code 9 `internal`,
  message "storage full: nothing was written" (io/dispatch.c), the whole
  error map checked; the person of that write is absent;
- more writes on the full disk, new persons and new versions of stored
  ones, each with an idem key, and one without: each answers ok or exactly that error; a
  failed one leaves the person absent or at its previous version, whole; at
  least one update of a stored person must have failed; a failed idem key
  retried later is applied then, not answered from a record of the failure;
- reads on the full disk: person.get of every acknowledged person (whole,
  equal to what was written), arrears.compute by ids over them (every
  result without error), ping; the server process is alive;
- a restart on the full disk (SIGTERM, exit 0, start again): the store
  opens, event=listen, every acknowledged person reads back whole, ping;
- the ballast deleted: person.put, payment.apply (its effect read back)
  and the retry of a key that failed on the full disk succeed; every
  acknowledged person is still whole; SIGTERM, exit 0.

Prints the server's log lines about storage, `N passed, M failed` last,
and exits 1 on any failure.
"""

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_server  # noqa: E402
from test_server import POLICY_A, Server, first_difference, make_id, person_norm, slot  # noqa: E402

TMPFS_BYTES = 64 << 20
BALLAST_SLACK = 1 << 20        # free bytes the ballast leaves for the writes
WRITES_UNTIL_FULL_MAX = 2000   # the disk must fill within this many person.put
WRITES_ON_FULL = 40            # further writes tried on the full disk
AS_OF = 20251110
TYPES = ("pension", "medical", "unemployment", "injury", "maternity")
FULL = {"code": 9, "name": "internal", "message": "storage full: nothing was written"}


def scattered_person(pid, version):
    """1,200 slots with values from (id, version): large, and a torn or stale
    record shows."""
    rng = random.Random("%s-%d" % (pid, version))
    return {"id": pid, "slots": [
        slot((2020 + m // 12) * 100 + m % 12 + 1, t, "employee", rng.randint(400000, 3000000),
             rng.randint(1, 10 ** 6), (2010 + rng.randint(0, 14)) * 10000 + rng.randint(1, 12) * 100
             + rng.randint(1, 28))
        for t in TYPES for m in range(240)]}


def person_id(k):
    return make_id("320102198%d%02d%02d%03d" % (k // 10000 % 10, 1 + k // 28 % 12, 1 + k % 28, k % 1000))


class TestFullDisk(unittest.TestCase):
    maxDiff = 3000

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        self.tmp = tempfile.mkdtemp(prefix="arrears-disk-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", self.mnt], check=True)
        self.addCleanup(self.unmount)
        self.data = os.path.join(self.mnt, "store")
        self.ballast = os.path.join(self.mnt, "ballast")
        self.servers = []
        self.clients = []
        self.addCleanup(self.stop_all)
        self.stored = {}    # id -> the person as last acknowledged
        self.seq = 0
        self.logs = []
        self.messages = {}  # message of each code-9 answer -> the writes that got it

    def unmount(self):
        if subprocess.run(["umount", self.mnt]).returncode != 0:
            subprocess.run(["umount", "-l", self.mnt])

    def stop_all(self):
        for c in self.clients:
            c.close()
        for s in self.servers:
            s.kill()
            self.logs.append(s.log())

    def start(self):
        s = Server(self.data, self.tmp)  # the log goes to self.tmp, off the full disk
        self.servers.append(s)
        c = s.connect()
        self.clients.append(c)
        return s, c

    def stop(self, s):
        rc = s.stop()
        log = s.log()
        self.assertEqual(rc, 0, "arrearsd exit status after SIGTERM; log:\n" + log[-3000:])
        self.assertIn("event=shutdown", log)
        return log

    def free_bytes(self):
        st = os.statvfs(self.mnt)
        return st.f_bavail * st.f_frsize

    def put(self, c, person):
        """person.put with a fresh idem key: (key, error or None)."""
        self.seq += 1
        key = "disk-%d" % self.seq
        r = c.call("person.put", {"idem": key, "persons": [person]})
        if r[2] is None:
            self.assertEqual(r[3], {"results": [{"id": person["id"], "ok": True}]})
            self.stored[person["id"]] = person
        return key, r[2]

    def assertFull(self, err, what):
        """Code 9 internal, checked at once; the message is collected (a wrong
        one fails the test at its end, after every other check has run)."""
        self.assertEqual((err or {}).get("code"), FULL["code"], "%s: %r" % (what, err))
        self.assertEqual(err.get("name"), FULL["name"], "%s: %r" % (what, err))
        self.assertNotIn("at", err, what)
        self.messages.setdefault(err.get("message"), []).append(what)

    def assertStored(self, c, what):
        """Every acknowledged person reads back whole; arrears.compute and ping answer."""
        for pid, want in self.stored.items():
            r = c.call("person.get", {"id": pid})
            self.assertIsNone(r[2], "%s: person.get %s: %r" % (what, pid, r[2]))
            got = person_norm(r[3])
            if got != person_norm({"person": want}):
                self.fail("%s: person %s: %s" % (what, pid, first_difference(got, person_norm({"person": want}))))
        ids = list(self.stored)
        r = c.call("arrears.compute", {"as_of": AS_OF, "ids": ids})
        self.assertIsNone(r[2], "%s: arrears.compute: %r" % (what, r[2]))
        self.assertEqual([x["id"] for x in r[3]["results"]], ids)
        self.assertEqual([x for x in r[3]["results"] if "error" in x], [], what)
        self.assertIs(c.ok("ping", {})["pong"], True)

    def assertAbsentOrPrevious(self, c, pid, previous, what):
        r = c.call("person.get", {"id": pid})
        if previous is None:
            self.assertEqual((r[2] or {}).get("code"), 4, "%s: person.get after a failed put of a new person: %r"
                             % (what, r[2] or "present"))
        else:
            self.assertIsNone(r[2], "%s: %r" % (what, r[2]))
            got, want = person_norm(r[3]), person_norm({"person": previous})
            if got != want:
                self.fail("%s: not the previous version: %s" % (what, first_difference(got, want)))

    def test_full_disk(self):
        s, c = self.start()
        self.assertEqual(c.ok("policy.put", {"policy": POLICY_A})["ok"], True)
        for k in range(20):
            key, err = self.put(c, scattered_person(person_id(k), 0))
            self.assertIsNone(err, "before the ballast: %r" % err)
        used = TMPFS_BYTES - self.free_bytes()

        # the ballast: all the free space but BALLAST_SLACK
        size = self.free_bytes() - BALLAST_SLACK
        with open(self.ballast, "wb") as f:
            chunk = b"\xa5" * (1 << 20)
            while size > 0:
                size -= f.write(chunk[:min(size, len(chunk))])
        print("\n    tmpfs: %.1f MiB used by the store before the ballast, %.2f MiB free after it"
              % (used / 2 ** 20, self.free_bytes() / 2 ** 20))

        # new persons until the disk is full
        first_full = None
        for k in range(20, 20 + WRITES_UNTIL_FULL_MAX):
            person = scattered_person(person_id(k), 0)
            key, err = self.put(c, person)
            if err is not None:
                first_full = (k, key, person, err)
                break
        self.assertIsNotNone(first_full, "the disk never filled")
        k, full_key, full_person, err = first_full
        print("    full after %d more persons (%.2f MiB free): %r" % (k - 20, self.free_bytes() / 2 ** 20, err))
        self.assertFull(err, "the first write that does not fit")
        self.assertAbsentOrPrevious(c, full_person["id"], None, "the person of the first failed write")
        self.assertIsNone(s.proc.poll(), "the server exited on the full disk")

        # more writes on the full disk: new persons and new versions of stored ones
        rng = random.Random(8)
        outcome = {"new ok": 0, "new full": 0, "update ok": 0, "update full": 0}
        failed_keys = [(full_key, full_person)]
        for n in range(WRITES_ON_FULL):
            if n % 2 == 0:
                pid = rng.choice(sorted(self.stored))
                previous = self.stored[pid]
                person = scattered_person(pid, self.seq + 1)
                kind = "update"
            else:
                pid = person_id(5000 + n)
                previous = None
                person = scattered_person(pid, 0)
                kind = "new"
            key, err = self.put(c, person)
            if err is None:
                outcome[kind + " ok"] += 1
                continue
            outcome[kind + " full"] += 1
            self.assertFull(err, "%s of %s on the full disk" % (kind, pid))
            self.assertAbsentOrPrevious(c, pid, previous, "after a failed %s on the full disk" % kind)
            failed_keys.append((key, person))
        print("    %d more writes on the full disk: %r" % (WRITES_ON_FULL, outcome))
        person = scattered_person(person_id(7000), 0)
        r = c.call("person.put", {"persons": [person]})
        print("    a person.put without idem on the full disk answers: %r" % (r[2] or r[3]))
        if r[2] is None:
            self.stored[person["id"]] = person
        else:
            self.assertFull(r[2], "person.put without idem on the full disk")
            self.assertAbsentOrPrevious(c, person["id"], None, "after a failed put without idem")
        self.assertGreater(outcome["update full"], 0, "no update of a stored person failed on the full disk")
        self.assertStored(c, "reads on the full disk")
        self.assertIsNone(s.proc.poll(), "the server exited on the full disk")

        # a restart on the full disk
        self.stop(s)
        s, c = self.start()
        self.assertStored(c, "after a restart on the full disk")
        r = c.call("person.put", {"idem": "disk-after-restart", "persons": [scattered_person(person_id(9000), 0)]})
        print("    a write after the restart on the full disk answers: %r" % (r[2] or r[3]))
        if r[2] is not None:
            self.assertFull(r[2], "a write after the restart on the full disk")
        else:
            self.stored[person_id(9000)] = scattered_person(person_id(9000), 0)

        # space again
        os.unlink(self.ballast)
        key, err = self.put(c, scattered_person(person_id(9001), 0))
        self.assertIsNone(err, "person.put once the ballast is gone: %r" % err)
        pid = person_id(0)
        item = {"id": pid, "month": 202001, "city": "110000", "type": "pension", "amount": 777, "date": 20250101}
        r = c.call("payment.apply", {"idem": "disk-pay", "items": [item]})
        self.assertEqual((r[2], r[3]), (None, {"results": [{"ok": True}]}), "payment.apply once the ballast is gone")
        for sl in self.stored[pid]["slots"]:
            if (sl["month"], sl["city"], sl["type"]) == (202001, "110000", "pension"):
                sl["paid"] += 777
                sl["paid_date"] = max(sl["paid_date"], 20250101)
        for key, person in failed_keys[:3]:  # a key that failed is not an answered write: it applies now
            r = c.call("person.put", {"idem": key, "persons": [person]})
            self.assertEqual((r[2], r[3]), (None, {"results": [{"id": person["id"], "ok": True}]}),
                             "retry of %s (failed on the full disk)" % key)
            self.stored[person["id"]] = person
        self.assertStored(c, "once the ballast is gone")
        log = self.stop(s)
        lines = [ln for s_ in self.servers for ln in s_.log().splitlines()
                 if not re.search(r"event=(open|close|loop|listen) ", ln)]
        print("    server log lines but open, close, loop, listen (%d):" % len(lines))
        for ln in lines[:20]:
            print("      " + ln)
        self.assertNotIn("start_failed", log)
        print("    code 9 answers by message: %r" % {m: len(w) for m, w in self.messages.items()})
        wrong = {m: "%d writes, e.g. %s" % (len(w), "; ".join(w[:3])) for m, w in self.messages.items()
                 if m != FULL["message"]}
        self.assertEqual(wrong, {}, "code 9 answers on the full disk whose message is not %r" % FULL["message"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arrearsd", default=test_server.ARREARSD)
    parser.add_argument("--arrears", default=test_server.ARREARS)
    args, rest = parser.parse_known_args()
    test_server.ARREARSD = os.path.abspath(args.arrearsd)
    test_server.ARREARS = os.path.abspath(args.arrears)
    if not os.access(test_server.ARREARSD, os.X_OK):
        print("no executable %s (make build/arrearsd)" % test_server.ARREARSD)
        print("0 passed, 1 failed")
        return 1
    return test_server.run_suite(sys.modules[__name__], rest)


if __name__ == "__main__":
    sys.exit(main())
