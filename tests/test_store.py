#!/usr/bin/python3
"""End-to-end tests of the LMDB store behind `arrears eval --data DIR`.

    /usr/bin/python3 tests/test_store.py --arrears build/arrears [--seed S] [TestName ...]

What is covered (SPEC.md §3, §4 R12/R13, §5, §6, §6.1, Appendix A):

1. CSV import answers exactly as inline persons do: a generated city is
   imported, then every person is computed with `ids` against the store and
   with inline `persons` (built from the CSV rows) by a store-less evaluator
   holding the same policies. Only error paths may differ, by their selector.
2. Scan paging walks every stored id once, ascending, with `next` as §5.1 says.
3. The write methods (person.put/get/delete, payment.apply, withhold.run),
   their item errors, idempotency (replay, conflict, required keys, shared
   namespace, request-level rejections not recorded) and durability across
   processes. Every expected value is worked out by hand next to it.
4. Crash safety: a writer is SIGKILLed at random moments (seeded; the seed is
   printed) while applying acknowledged payments; resumed with the same idem
   keys, every payment lands exactly once and nothing else changes.
5. Map full: with a tiny map, person.put ends in error 9; the process still
   answers, earlier persons are intact and the failed request left nothing.

Each test works in its own temporary directory. Prints `N passed, M failed`
and exits 1 on any failure.
"""

import csv
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

try:
    import msgpack
except ImportError:
    msgpack = None

HERE = os.path.dirname(os.path.abspath(__file__))
ARREARS = os.path.join(HERE, "..", "build", "arrears")
SEED = None  # --seed; default: from the clock, printed
TIMEOUT_S = 60

TYPES = ("pension", "medical", "unemployment", "injury", "maternity")


def make_id(first17):
    """18-char resident ID: GB 11643 check char, SPEC §2.1."""
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    s = sum(int(c) * w[i] for i, c in enumerate(first17))
    return first17 + "10X98765432"[s % 11]


def req(msgid, method, params):
    return [0, msgid, method, [params]]


def pack(msgs):
    return b"".join(msgpack.packb(m, use_bin_type=True) for m in msgs)


def unpack_all(data):
    unp = msgpack.Unpacker(raw=False, strict_map_key=False)
    unp.feed(data)
    return list(unp)


def run_batch(msgs, data=None):
    """All msgs through one `arrears eval` process; its responses in order."""
    args = [ARREARS, "eval"] + (["--data", data] if data else [])
    proc = subprocess.run(args, input=pack(msgs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise AssertionError("eval exited %d: %s" % (proc.returncode, proc.stderr.decode(errors="replace")))
    return unpack_all(proc.stdout)


class Killed(Exception):
    """The evaluator went away (EOF or broken pipe)."""


class Eval:
    """One interactive `arrears eval` process: call() sends one request and
    reads its response."""

    def __init__(self, data=None, map_max=None):
        args = [ARREARS, "eval"]
        if data is not None:
            args += ["--data", data]
        if map_max is not None:
            args += ["--map-max", str(map_max)]
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     bufsize=0)
        self.unp = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.msgid = 0

    def send(self, method, params):
        self.msgid += 1
        try:
            self.proc.stdin.write(msgpack.packb(req(self.msgid, method, params), use_bin_type=True))
        except (BrokenPipeError, ConnectionResetError, ValueError):
            raise Killed()
        return self.msgid

    def read(self):
        deadline = time.monotonic() + TIMEOUT_S
        fd = self.proc.stdout.fileno()
        while True:
            try:
                return next(self.unp)
            except StopIteration:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no answer within %d s" % TIMEOUT_S)
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise Killed()
                self.unp.feed(chunk)

    def call(self, method, params):
        """The whole response [1, msgid, error, result]."""
        msgid = self.send(method, params)
        r = self.read()
        assert r[0] == 1 and r[1] == msgid, "response %r to msgid %d" % (r[:2], msgid)
        return r

    def ok(self, method, params):
        """The result, asserting no error."""
        r = self.call(method, params)
        assert r[2] is None, "%s failed: %r" % (method, r[2])
        return r[3]

    def err(self, method, params):
        """The error, asserting there is one."""
        r = self.call(method, params)
        assert r[2] is not None and r[3] is None, "%s: expected an error, got %r" % (method, r)
        return r[2]

    def close(self):
        """EOF on stdin: the evaluator ends cleanly (exit 0)."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self.proc.wait(timeout=TIMEOUT_S)
        self.proc.stdout.close()
        self.stderr.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT_S)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (BrokenPipeError, OSError):
                pass
        self.stderr.close()


def error_of(code, at):
    """An error's comparable part: code, name and at (messages are free)."""
    names = {1: "malformed", 2: "unknown_method", 3: "invalid_argument", 4: "not_found", 5: "conflict",
             6: "too_large", 7: "overloaded", 8: "unauthorized", 9: "internal"}
    return {"code": code, "name": names[code], "at": at}


def strip_error(e):
    return {"code": e.get("code"), "name": e.get("name"), "at": e.get("at")}


def not_found_by_id(e):
    """person.get / person.delete of an unknown id: not_found. The spec names no
    path for these; the param's own name, or none, is accepted."""
    s = strip_error(e)
    if s["at"] is None:
        s["at"] = "id"
    return s


NOT_FOUND_ID = error_of(4, "id")


class StoreTest(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="arrears-store-")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.proc.poll() is None:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def open_eval(self, data=None, map_max=None):
        e = Eval(data, map_max)
        self.procs.append(e)
        return e

    def gen_city(self, persons, seed):
        out = self.path("gen")
        subprocess.run([ARREARS, "gen", "--persons", str(persons), "--seed", str(seed), "--city", "110000",
                        "--out", out], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=TIMEOUT_S)
        return out

    def import_city(self, gen_dir, data):
        proc = subprocess.run([ARREARS, "import", "--data", data, os.path.join(gen_dir, "slots.csv"),
                               os.path.join(gen_dir, "policy-110000.json"),
                               os.path.join(gen_dir, "policy-310000.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode(errors="replace"))


def read_csv_persons(path):
    """{id: [slot, ...]} in file order, slots as §3.2 maps."""
    persons = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        assert header == ["id", "month", "city", "type", "category", "base", "paid", "paid_date", "deemed"], header
        for r in rows:
            if not r:
                continue
            persons.setdefault(r[0], []).append({
                "month": int(r[1]), "city": r[2], "type": r[3], "category": r[4], "base": int(r[5]),
                "paid": int(r[6]), "paid_date": int(r[7]), "deemed": r[8] in ("1", "true")})
    return persons


# ======================================================================
# 1. CSV import answers as inline persons do


class TestImportMatchesInline(StoreTest):
    AS_OF = 20251110
    BATCH = 25

    def test_import_matches_inline(self):
        gen = self.gen_city(300, 11)
        data = self.path("store")
        self.import_city(gen, data)
        persons = read_csv_persons(os.path.join(gen, "slots.csv"))
        ids = list(persons)
        self.assertGreater(len(ids), 250)
        policies = []
        for city in ("110000", "310000"):
            with open(os.path.join(gen, "policy-%s.json" % city)) as f:
                policies.append(json.load(f))

        methods = [("arrears.compute", {"detail": True}), ("years.compute", {}), ("retirement.check", {}),
                   ("housing.check", {"city": "110000"}), ("medical.status", {})]
        store_msgs, inline_msgs, plan = [], [], []
        msgid = 0
        for k, p in enumerate(policies):
            inline_msgs.append(req(1000000 + k, "policy.put", {"policy": p}))
        for method, extra in methods:
            for start in range(0, len(ids), self.BATCH):
                batch = ids[start:start + self.BATCH]
                msgid += 1
                base = dict(extra, as_of=self.AS_OF)
                store_msgs.append(req(msgid, method, dict(base, ids=batch)))
                inline_msgs.append(req(msgid, method, dict(base, persons=[
                    {"id": i, "slots": persons[i]} for i in batch])))
                plan.append((method, batch))
        # an id that is not stored: that person's not_found at ids[i]
        unknown = make_id("11010519600101006")
        self.assertNotIn(unknown, persons)
        store_msgs.append(req(999999, "medical.status", {"as_of": self.AS_OF, "ids": [ids[0], unknown]}))

        got_store = run_batch(store_msgs, data=data)
        got_inline = run_batch(inline_msgs)
        self.assertEqual(len(got_store), len(store_msgs))
        self.assertEqual(len(got_inline), len(inline_msgs))
        for r in got_inline[:len(policies)]:
            self.assertIsNone(r[2], r)
        got_inline = got_inline[len(policies):]

        compared = errors = 0
        owing = 0
        for (method, batch), s, i in zip(plan, got_store, got_inline):
            self.assertIsNone(s[2], (method, s[2]))
            self.assertIsNone(i[2], (method, i[2]))
            rs, ri = s[3]["results"], i[3]["results"]
            self.assertEqual([r["id"] for r in rs], batch, method)
            self.assertEqual([r["id"] for r in ri], batch, method)
            for k, (a, b) in enumerate(zip(rs, ri)):
                if "error" in a or "error" in b:
                    errors += 1
                    self.assertIn("error", a, (method, batch[k], b))
                    self.assertIn("error", b, (method, batch[k], a))
                    at = a["error"].get("at")
                    if isinstance(at, str) and at.startswith("ids["):
                        a = dict(a, error=dict(a["error"], at="persons[" + at[len("ids["):]))
                self.assertEqual(a, b, "%s for %s (batch index %d)" % (method, batch[k], k))
                if method == "arrears.compute" and "error" not in a and a["months_owed"] > 0:
                    owing += 1
                compared += 1
        self.assertEqual(compared, 5 * len(ids))
        # the comparison means something: real answers, some persons in arrears
        self.assertLess(errors, compared // 10, "too many per-person errors to compare")
        self.assertGreater(owing, 0)

        last = got_store[-1]
        self.assertIsNone(last[2])
        self.assertEqual(last[3]["results"][0]["id"], ids[0])
        self.assertNotIn("error", last[3]["results"][0])
        self.assertEqual(last[3]["results"][1], {"id": unknown, "error": dict(
            last[3]["results"][1]["error"], **error_of(4, "ids[1]"))})

    def test_import_bad_rows(self):
        """§6.1: a bad row is reported with its line number, imports nothing of
        its person, the rest imports; exit 3 (the project's decision)."""
        x = make_id("11010519800101001")
        y = make_id("31010419850315002")
        lines = ["id,month,city,type,category,base,paid,paid_date,deemed",
                 "%s,202401,110000,pension,employee,500000,0,0,0" % x,       # line 2: fine
                 "%s,202401,110000,pension,employee,500000,0,0,0" % y,       # line 3: fine
                 "%s,202413,110000,medical,employee,500000,0,0,0" % x,       # line 4: month 13
                 "%s,202402,110000,pension,flexible,400000,80000,20240220,false" % y]  # line 5: fine
        csv_path = self.path("bad.csv")
        with open(csv_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        pol = self.path("policy.json")
        with open(pol, "w") as f:
            json.dump(POLICY_110, f)
        data = self.path("store")
        proc = subprocess.run([ARREARS, "import", "--data", data, csv_path, pol], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=TIMEOUT_S)
        err = proc.stderr.decode(errors="replace")
        self.assertEqual(proc.returncode, 3, err)
        self.assertIn("line 4", err)
        self.assertNotIn(x, err)  # ids are masked
        e = self.open_eval(data)
        self.assertEqual(not_found_by_id(e.err("person.get", {"id": x})), NOT_FOUND_ID)
        self.assertEqual(e.ok("person.get", {"id": y}), {"person": {"id": y, "slots": [
            slot(202401, "110000", "pension", "employee", 500000),
            slot(202402, "110000", "pension", "flexible", 400000, 80000, 20240220)]}})
        self.assertEqual(e.ok("policy.get", {"city": "110000"})["policy"]["name"], "Test 110")
        self.assertEqual(e.close(), 0)


# ======================================================================
# 2. Scan paging


class TestScanPaging(StoreTest):
    def walk(self, e, limit):
        """[(page ids, next)] until a page that is not full."""
        pages, after = [], None
        for _ in range(10000):
            r = e.ok("medical.status", {"as_of": 20251110, "scan": {"after": after, "limit": limit}})
            page = [x["id"] for x in r["results"]]
            self.assertIn("next", r)
            pages.append((page, r["next"]))
            if r["next"] is None:
                return pages
            after = r["next"]
        self.fail("scan never ended")

    def check_walk(self, pages, ids, limit):
        seen = []
        for k, (page, nxt) in enumerate(pages):
            self.assertLessEqual(len(page), limit)
            self.assertEqual(page, sorted(page), "page %d not ascending" % k)
            if seen and page:
                self.assertGreater(page[0], seen[-1], "page %d overlaps or goes back" % k)
            if len(page) == limit:
                self.assertEqual(nxt, page[-1], "a full page's next is its last id")
            else:
                self.assertIsNone(nxt, "a short page's next is nil")
                self.assertEqual(k, len(pages) - 1)
            seen += page
        self.assertEqual(seen, ids)
        # only the last page may be short, and only an empty one may follow a full last page
        for page, _ in pages[:-1]:
            self.assertEqual(len(page), limit)

    def test_scan_paging(self):
        gen = self.gen_city(60, 23)
        data = self.path("store")
        self.import_city(gen, data)
        ids = sorted(read_csv_persons(os.path.join(gen, "slots.csv")))
        n = len(ids)
        self.assertGreater(n, 20)
        e = self.open_eval(data)
        pages = self.walk(e, 7)
        self.check_walk(pages, ids, 7)
        self.assertEqual(len(pages), n // 7 + 1)  # a last short page, or an empty one after an exact fit
        # exactly full: next = the last id, then an empty page with next nil
        pages = self.walk(e, n)
        self.assertEqual(pages, [(ids, ids[-1]), ([], None)])
        # one more than there are: everything, next nil
        self.assertEqual(self.walk(e, n + 1), [(ids, None)])
        # a divisor of n when there is one (several full pages, then an empty one)
        d = next((d for d in range(2, n) if n % d == 0), None)
        if d is not None:
            pages = self.walk(e, d)
            self.check_walk(pages, ids, d)
            self.assertEqual(pages[-1], ([], None))
        # after a valid id that is not stored: the page starts at the next stored id
        between = None
        for k in range(1, n):
            lo, hi = ids[k - 1], ids[k]
            c = make_id("%017d" % (int(lo[:17]) + 1))
            if c[:14] == lo[:14] and lo < c < hi:
                between = (k, c)
                break
        if between is not None:
            k, after = between
            r = e.ok("medical.status", {"as_of": 20251110, "scan": {"after": after, "limit": 3}})
            self.assertEqual([x["id"] for x in r["results"]], ids[k:k + 3])
            self.assertEqual(r["next"], ids[k:k + 3][-1] if len(ids[k:k + 3]) == 3 else None)
        # after the last id: empty, next nil
        r = e.ok("medical.status", {"as_of": 20251110, "scan": {"after": ids[-1], "limit": 7}})
        self.assertEqual((r["results"], r["next"]), ([], None))
        self.assertEqual(e.close(), 0)


# ======================================================================
# 3. Write methods, idempotency, durability

RATES = {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000},
         "medical": {"employer": 100000, "individual": 20000, "flexible": 80000},
         "unemployment": {"employer": 5000, "individual": 5000, "flexible": 10000},
         "injury": {"employer": 4000}}
POLICY_110 = {"city": "110000", "name": "Test 110", "deadline": {"day": 25, "month_offset": 0},
              "periods": [{"from": 202001, "base_min": 100000, "base_max": 1000000, "rates": RATES}],
              "withhold": {"order": ["pension", "medical", "unemployment"], "mode": "stop"}}
POLICY_310 = {"city": "310000", "name": "Test 310", "deadline": {"day": 25, "month_offset": 0},
              "periods": [{"from": 202001, "base_min": 100000, "base_max": 1000000, "rates": RATES}],
              "backpay": {"direct_max_months": 3, "verify_max_months": 60, "legacy_before": 201107,
                          "flexible_window_months": 12},
              "withhold": {"order": ["medical", "pension"], "mode": "skip"}}

# Dues (R2), bases inside [100000, 1000000] so no clamping:
#   employee base 500000: pension 80000 + 40000 = 120000; medical 50000 + 10000 = 60000;
#                         unemployment 2500 + 2500 = 5000
#   employee base 300000: pension 48000 + 24000 = 72000; unemployment 1500 + 1500 = 3000;
#                         injury 1200 + 0 = 1200
#   flexible base 300000: pension 60000; medical 24000
#   employee base 200000: pension 32000 + 16000 = 48000; medical 20000 + 4000 = 24000

A = make_id("11010519800101001")   # male (17th digit odd)
B = make_id("31010419850315002")   # female
C = make_id("11010519900707003")   # to delete
D = make_id("11010519750505004")   # female, retire_class f50 given
BAD = make_id("11010519700101005")
E = make_id("11010519950202007")
U = make_id("11010519600101006")   # never stored


def slot(month, city, type_, category, base, paid=0, paid_date=0, deemed=False):
    return {"month": month, "city": city, "type": type_, "category": category, "base": base, "paid": paid,
            "paid_date": paid_date, "deemed": deemed}


def without_deemed(s):
    """deemed is optional on input (default false)."""
    s = dict(s)
    if not s["deemed"]:
        del s["deemed"]
    return s


class TestWrites(StoreTest):
    def test_writes_idempotency_durability(self):
        data = self.path("store")
        e = self.open_eval(data)
        self.assertEqual(e.ok("policy.put", {"policy": POLICY_110}), {"ok": True})
        self.assertEqual(e.ok("policy.put", {"policy": POLICY_310}), {"ok": True})
        pol110 = e.ok("policy.get", {"city": "110000"})

        # ---- person.put: results [{id, ok}], a bad person {id, error}, the others stored
        a_slots = [  # scrambled on purpose; deemed left out on some
            without_deemed(slot(202401, "110000", "unemployment", "employee", 500000)),
            slot(202401, "110000", "pension", "employee", 500000),
            without_deemed(slot(202312, "110000", "pension", "flexible", 400000, 80000, 20231220)),
            slot(202001, "110000", "pension", "employee", 0, deemed=True),
            without_deemed(slot(202401, "110000", "medical", "employee", 500000)),
            without_deemed(slot(202402, "310000", "pension", "employee", 500000))]
        b_slots = [slot(202403, "310000", "pension", "employee", 300000),
                   slot(202403, "310000", "medical", "flexible", 300000),
                   slot(202403, "310000", "unemployment", "employee", 300000),
                   slot(202403, "310000", "injury", "employee", 300000),
                   slot(202201, "310000", "pension", "flexible", 300000),
                   slot(202201, "310000", "unemployment", "employee", 300000)]
        c_slots = [slot(202401, "110000", "pension", "employee", 500000, 120000, 20240120)]
        d_slots = [slot(m, c, t, "employee", 200000) for m in (202405, 202406)
                   for c, t in (("310000", "pension"), ("110000", "medical"), ("110000", "pension"))]
        # slot 1 has paid > 0 with paid_date 0: the paid/paid_date rule, at ...slots[1].paid_date
        bad_slots = [slot(202401, "110000", "pension", "employee", 500000),
                     slot(202401, "110000", "medical", "employee", 500000, 100, 0)]
        r = e.ok("person.put", {"persons": [
            {"id": A, "slots": a_slots}, {"id": BAD, "slots": bad_slots}, {"id": B, "slots": b_slots},
            {"id": C, "slots": c_slots}, {"id": D, "retire_class": "f50", "slots": d_slots}]})
        res = r["results"]
        self.assertEqual(len(res), 5)
        self.assertEqual(res[0], {"id": A, "ok": True})
        self.assertEqual(set(res[1]), {"id", "error"})
        self.assertEqual(res[1]["id"], BAD)
        self.assertEqual(strip_error(res[1]["error"]), error_of(3, "persons[1].slots[1].paid_date"))
        self.assertEqual(res[2:], [{"id": B, "ok": True}, {"id": C, "ok": True}, {"id": D, "ok": True}])
        self.assertEqual(not_found_by_id(e.err("person.get", {"id": BAD})), NOT_FOUND_ID)

        # ---- person.get: slots in (type, city, month) order, deemed always present,
        # retire_class only when it was given
        a_exp = [slot(202001, "110000", "pension", "employee", 0, deemed=True),
                 slot(202312, "110000", "pension", "flexible", 400000, 80000, 20231220),
                 slot(202401, "110000", "pension", "employee", 500000),
                 slot(202402, "310000", "pension", "employee", 500000),
                 slot(202401, "110000", "medical", "employee", 500000),
                 slot(202401, "110000", "unemployment", "employee", 500000)]
        b_exp = [slot(202201, "310000", "pension", "flexible", 300000),
                 slot(202403, "310000", "pension", "employee", 300000),
                 slot(202403, "310000", "medical", "flexible", 300000),
                 slot(202201, "310000", "unemployment", "employee", 300000),
                 slot(202403, "310000", "unemployment", "employee", 300000),
                 slot(202403, "310000", "injury", "employee", 300000)]
        d_exp = [slot(202405, "110000", "pension", "employee", 200000),
                 slot(202406, "110000", "pension", "employee", 200000),
                 slot(202405, "310000", "pension", "employee", 200000),
                 slot(202406, "310000", "pension", "employee", 200000),
                 slot(202405, "110000", "medical", "employee", 200000),
                 slot(202406, "110000", "medical", "employee", 200000)]

        def get(pid):
            return e.ok("person.get", {"id": pid})

        self.assertEqual(get(A), {"person": {"id": A, "slots": a_exp}})
        self.assertEqual(get(B), {"person": {"id": B, "slots": b_exp}})
        self.assertEqual(get(C), {"person": {"id": C, "slots": c_slots}})
        self.assertEqual(get(D), {"person": {"id": D, "retire_class": "f50", "slots": d_exp}})

        # ---- person.delete, then not_found
        self.assertEqual(e.ok("person.delete", {"id": C, "idem": "del-1"}), {"ok": True})
        self.assertEqual(not_found_by_id(e.err("person.get", {"id": C})), NOT_FOUND_ID)
        self.assertEqual(not_found_by_id(e.err("person.delete", {"id": C})), NOT_FOUND_ID)
        self.assertEqual(not_found_by_id(e.err("person.delete", {"id": U})), NOT_FOUND_ID)
        # the same key replays the first answer (ok), and still nothing is there
        self.assertEqual(e.ok("person.delete", {"id": C, "idem": "del-1"}), {"ok": True})
        self.assertEqual(not_found_by_id(e.err("person.get", {"id": C})), NOT_FOUND_ID)

        # ---- payment.apply (R13) and its item errors (Appendix A)
        def pay(pid, month, city, type_, amount, date):
            return {"id": pid, "month": month, "city": city, "type": type_, "amount": amount, "date": date}

        pay1 = {"idem": "pay-1", "items": [
            pay(A, 202401, "110000", "pension", 50000, 20240210),    # 0 ok: paid 0 -> 50000, date 20240210
            pay(A, 202401, "110000", "pension", 20000, 20240205),    # 1 ok: 50000 -> 70000, date stays 20240210
            pay(U, 202401, "110000", "pension", 100, 20240210),      # 2 not a stored person
            pay("not-an-id", 202401, "110000", "pension", 100, 20240210),  # 3 any string: not_found
            pay(A, 202402, "110000", "pension", 100, 20240210),      # 4 no such slot (202402 is in 310000)
            pay(A, 202001, "110000", "pension", 100, 20240210),      # 5 deemed slot
            pay(A, 202413, "11000", "pensionx", 0, 20240230),        # 6 month first
            pay(A, 202401, "11000", "pensionx", 0, 20240230),        # 7 then city
            pay(A, 202401, "110000", "pensionx", 0, 20240230),       # 8 then type
            pay(A, 202401, "110000", "pension", 0, 20240230),        # 9 then amount (1..10^10)
            pay(A, 202401, "110000", "pension", 10 ** 10 + 1, 20240210),  # 10 amount over 10^10
            pay(A, 202401, "110000", "pension", 100, 20240230),      # 11 then date
            pay(12345, 202413, "11000", "pensionx", 0, 20240230),    # 12 id must be a string, first
            pay(A, 202401, "110000", "pension", 100.0, 20240210),    # 13 a float amount
            pay(A, 202402, "310000", "pension", 30000, 20240301),    # 14 ok: 0 -> 30000, date 20240301
        ]}
        pay1_exp = [{"ok": True}, {"ok": True}, error_of(4, "items[2].id"), error_of(4, "items[3].id"),
                    error_of(4, "items[4]"), error_of(3, "items[5]"), error_of(3, "items[6].month"),
                    error_of(3, "items[7].city"), error_of(3, "items[8].type"), error_of(3, "items[9].amount"),
                    error_of(3, "items[10].amount"), error_of(3, "items[11].date"), error_of(3, "items[12].id"),
                    error_of(3, "items[13].amount"), {"ok": True}]
        r1 = e.call("payment.apply", pay1)
        self.assertIsNone(r1[2], r1)
        got = r1[3]["results"]
        self.assertEqual(len(got), len(pay1_exp))
        for k, (g, x) in enumerate(zip(got, pay1_exp)):
            if "ok" in x:
                self.assertEqual(g, x, "item %d" % k)
            else:
                self.assertEqual(set(g), {"error"}, "item %d: %r" % (k, g))
                self.assertEqual(strip_error(g["error"]), x, "item %d" % k)
        a_exp[2].update(paid=70000, paid_date=20240210)
        a_exp[3].update(paid=30000, paid_date=20240301)
        self.assertEqual(get(A), {"person": {"id": A, "slots": a_exp}})

        # replay: the identical answer (under the new msgid), nothing changes
        r = e.call("payment.apply", pay1)
        self.assertEqual(r[2:], r1[2:])
        self.assertEqual(get(A), {"person": {"id": A, "slots": a_exp}})
        # the same key with another payload: conflict at idem, nothing changes
        other = {"idem": "pay-1", "items": [pay(A, 202401, "110000", "pension", 50001, 20240210)]}
        self.assertEqual(strip_error(e.err("payment.apply", other)), error_of(5, "idem"))
        # keys share one namespace across methods
        self.assertEqual(strip_error(e.err("withhold.run", {"idem": "pay-1", "month": 202401, "date": 20240131,
                                                            "accounts": []})), error_of(5, "idem"))
        # idem is required
        self.assertEqual(strip_error(e.err("payment.apply", {"items": other["items"]})), error_of(3, "idem"))
        self.assertEqual(strip_error(e.err("withhold.run", {"month": 202401, "date": 20240131,
                                                            "accounts": [{"id": A, "balance": 1}]})),
                         error_of(3, "idem"))
        self.assertEqual(get(A), {"person": {"id": A, "slots": a_exp}})
        # a request rejected at request level is not recorded: its key stays free
        self.assertEqual(strip_error(e.err("payment.apply", {"idem": "rej-1", "items": "nope"})),
                         error_of(3, "items"))
        self.assertEqual(e.ok("payment.apply", {"idem": "rej-1", "items": []}), {"results": []})

        # ---- withhold.run (R12), city 110000: order pension, medical, unemployment; mode stop
        # A, month 202401 owed: pension 120000 - 70000 = 50000, medical 60000, unemployment 5000.
        # balance 100000: pension paid (-> 50000 left); medical 60000 > 50000 interrupted; stop:
        # unemployment interrupted too though 5000 would fit. paid_date = max(20240210, 20240131).
        wh1 = {"idem": "wh-1", "month": 202401, "date": 20240131,
               "accounts": [{"id": A, "balance": 100000}, {"id": U, "balance": 5000}, {"id": "bogus", "balance": 1}]}
        w1 = e.call("withhold.run", wh1)
        self.assertIsNone(w1[2], w1)
        res = w1[3]["results"]
        self.assertEqual(len(res), 3)
        self.assertEqual(res[0], {"id": A, "paid": [{"type": "pension", "city": "110000", "amount": 50000}],
                                  "interrupted": [{"type": "medical", "city": "110000", "owed": 60000},
                                                  {"type": "unemployment", "city": "110000", "owed": 5000}],
                                  "balance": 50000})
        for k, pid in ((1, U), (2, "bogus")):
            self.assertEqual(set(res[k]), {"id", "error"})
            self.assertEqual(res[k]["id"], pid)
            self.assertEqual(strip_error(res[k]["error"]), error_of(4, "accounts[%d].id" % k))
        a_exp[2].update(paid=120000, paid_date=20240210)
        self.assertEqual(get(A), {"person": {"id": A, "slots": a_exp}})
        # replay: the same answer and nothing changes (a fresh run with balance 100000 would
        # now pay medical 60000 and unemployment 5000, so a second execution would show)
        r = e.call("withhold.run", wh1)
        self.assertEqual(r[2:], w1[2:])
        self.assertEqual(get(A), {"person": {"id": A, "slots": a_exp}})

        # city 310000: order medical, pension, then unlisted types canonically
        # (unemployment, injury); mode skip. B, month 202403, balance 30000:
        # medical 24000 paid (6000 left); pension 72000 interrupted, skip;
        # unemployment 3000 paid (3000 left); injury 1200 paid (1800 left).
        w = e.ok("withhold.run", {"idem": "wh-2", "month": 202403, "date": 20240331,
                                  "accounts": [{"id": B, "balance": 30000}]})
        self.assertEqual(w["results"], [{"id": B, "paid": [{"type": "medical", "city": "310000", "amount": 24000},
                                                           {"type": "unemployment", "city": "310000", "amount": 3000},
                                                           {"type": "injury", "city": "310000", "amount": 1200}],
                                         "interrupted": [{"type": "pension", "city": "310000", "owed": 72000}],
                                         "balance": 1800}])
        b_exp[2].update(paid=24000, paid_date=20240331)
        b_exp[4].update(paid=3000, paid_date=20240331)
        b_exp[5].update(paid=1200, paid_date=20240331)
        self.assertEqual(get(B), {"person": {"id": B, "slots": b_exp}})
        # expired flexible slots are left out: B month 202201 as of 20240331, age
        # 202403 - 202201 = 26 > flexible_window_months 12: the flexible pension slot
        # (60000 owed) is skipped; the employee unemployment slot 3000 is paid.
        w = e.ok("withhold.run", {"idem": "wh-3", "month": 202201, "date": 20240331,
                                  "accounts": [{"id": B, "balance": 10000}]})
        self.assertEqual(w["results"], [{"id": B, "paid": [{"type": "unemployment", "city": "310000", "amount": 3000}],
                                         "interrupted": [], "balance": 7000}])
        b_exp[3].update(paid=3000, paid_date=20240331)
        self.assertEqual(get(B), {"person": {"id": B, "slots": b_exp}})
        # two cities: D month 202405, ranks pension@110000 0, medical@110000 1,
        # pension@310000 1 (its city's order is medical, pension); the tie goes by city.
        # balance 80000: 48000 paid (32000), 24000 paid (8000), 48000 interrupted.
        w = e.ok("withhold.run", {"idem": "wh-4", "month": 202405, "date": 20240531,
                                  "accounts": [{"id": D, "balance": 80000}]})
        self.assertEqual(w["results"], [{"id": D, "paid": [{"type": "pension", "city": "110000", "amount": 48000},
                                                           {"type": "medical", "city": "110000", "amount": 24000}],
                                         "interrupted": [{"type": "pension", "city": "310000", "owed": 48000}],
                                         "balance": 8000}])
        d_exp[0].update(paid=48000, paid_date=20240531)
        d_exp[4].update(paid=24000, paid_date=20240531)
        # D month 202406, balance 40000: pension@110000 48000 > 40000 interrupted; its city
        # stops, so every later slot is interrupted (medical 24000 would have fit). Nothing paid.
        w = e.ok("withhold.run", {"idem": "wh-5", "month": 202406, "date": 20240630,
                                  "accounts": [{"id": D, "balance": 40000}]})
        self.assertEqual(w["results"], [{"id": D, "paid": [],
                                         "interrupted": [{"type": "pension", "city": "110000", "owed": 48000},
                                                         {"type": "medical", "city": "110000", "owed": 24000},
                                                         {"type": "pension", "city": "310000", "owed": 48000}],
                                         "balance": 40000}])
        self.assertEqual(get(D), {"person": {"id": D, "retire_class": "f50", "slots": d_exp}})
        # month after month(date): invalid_argument at month, request level, key not recorded
        self.assertEqual(strip_error(e.err("withhold.run", {"idem": "wh-bad", "month": 202402, "date": 20240131,
                                                            "accounts": [{"id": A, "balance": 1}]})),
                         error_of(3, "month"))
        self.assertEqual(e.ok("withhold.run", {"idem": "wh-bad", "month": 202401, "date": 20240131,
                                               "accounts": []}), {"results": []})

        # ---- person.put with idem: a replay does not overwrite later changes
        e_slots = [slot(202401, "110000", "pension", "employee", 500000)]
        put1 = {"idem": "put-1", "persons": [{"id": E, "slots": e_slots}]}
        p1 = e.call("person.put", put1)
        self.assertEqual(p1[2:], [None, {"results": [{"id": E, "ok": True}]}])
        self.assertEqual(e.ok("payment.apply", {"idem": "pay-e", "items": [
            pay(E, 202401, "110000", "pension", 1000, 20240220)]}), {"results": [{"ok": True}]})
        e_exp = [slot(202401, "110000", "pension", "employee", 500000, 1000, 20240220)]
        self.assertEqual(e.call("person.put", put1)[2:], p1[2:])
        self.assertEqual(get(E), {"person": {"id": E, "slots": e_exp}})
        put1b = {"idem": "put-1", "persons": [{"id": E, "slots": e_slots + [
            slot(202402, "110000", "pension", "employee", 500000)]}]}
        self.assertEqual(strip_error(e.err("person.put", put1b)), error_of(5, "idem"))
        self.assertEqual(get(E), {"person": {"id": E, "slots": e_exp}})
        # without idem, put replaces the whole record
        e_new = [slot(202403, "110000", "medical", "flexible", 300000, 24000, 20240310)]
        self.assertEqual(e.ok("person.put", {"persons": [{"id": E, "retire_class": "f55", "slots": e_new}]}),
                         {"results": [{"id": E, "ok": True}]})
        self.assertEqual(get(E), {"person": {"id": E, "retire_class": "f55", "slots": e_new}})
        self.assertEqual(e.close(), 0)

        # ---- durable across processes
        e2 = self.open_eval(data)
        self.assertEqual(e2.ok("person.get", {"id": A}), {"person": {"id": A, "slots": a_exp}})
        self.assertEqual(e2.ok("person.get", {"id": B}), {"person": {"id": B, "slots": b_exp}})
        self.assertEqual(e2.ok("person.get", {"id": D}), {"person": {"id": D, "retire_class": "f50",
                                                                     "slots": d_exp}})
        self.assertEqual(e2.ok("person.get", {"id": E}), {"person": {"id": E, "retire_class": "f55",
                                                                     "slots": e_new}})
        for pid in (C, BAD, U):
            self.assertEqual(not_found_by_id(e2.err("person.get", {"id": pid})), NOT_FOUND_ID)
        self.assertEqual(e2.ok("policy.get", {"city": "110000"}), pol110)
        # idem records survive too
        self.assertEqual(e2.call("payment.apply", pay1)[2:], r1[2:])
        self.assertEqual(e2.call("withhold.run", wh1)[2:], w1[2:])
        self.assertEqual(strip_error(e2.err("payment.apply", other)), error_of(5, "idem"))
        self.assertEqual(e2.ok("person.get", {"id": A}), {"person": {"id": A, "slots": a_exp}})
        # stored policies are loaded: B as of 20240401 has its one medical slot (202403)
        # paid in full, so it is active; an unknown id is that person's not_found at ids[1]
        r = e2.ok("medical.status", {"as_of": 20240401, "ids": [B, U]})
        self.assertEqual(r["results"][0], {"id": B, "status": "active", "suspended_since": None, "resumes": None,
                                           "arrears_months": 0})
        self.assertEqual(r["results"][1]["id"], U)
        self.assertEqual(strip_error(r["results"][1]["error"]), error_of(4, "ids[1]"))
        self.assertEqual(e2.close(), 0)


# ======================================================================
# 4. Crash safety


class TestCrashSafety(StoreTest):
    KILLS = 20

    def test_kill_while_paying(self):
        rng = random.Random(SEED)
        print("\n[crash] seed %d" % SEED, file=sys.stderr)
        data = self.path("store")
        e = self.open_eval(data)
        e.ok("policy.put", {"policy": POLICY_110})
        pids = [make_id("1101051980%02d01%03d" % (k + 1, 11 + k)) for k in range(4)]
        persons = {}
        for k, pid in enumerate(pids):
            slots = []
            for m in range(202301, 202307):
                for t in ("pension", "medical"):
                    paid = rng.choice([0, 0, 1000 * (k + 1)])
                    slots.append(slot(m, "110000", t, "employee", 300000 + 1000 * k, paid,
                                      20230101 + 100 * (m - 202301) + 14 if paid else 0))
            slots.append(slot(202201, "110000", "pension", "employee", 0, deemed=True))
            persons[pid] = slots
        r = e.ok("person.put", {"persons": [{"id": p, "slots": s} for p, s in persons.items()]})
        self.assertEqual(r, {"results": [{"id": p, "ok": True} for p in pids]})
        before = {p: e.ok("person.get", {"id": p}) for p in pids}
        self.assertEqual(e.close(), 0)

        # the expected state: the slots as put, keyed by (month, city, type)
        expect = {p: {(s["month"], s["city"], s["type"]): dict(s) for s in persons[p]} for p in pids}
        targets = [(p, k) for p in pids for k in expect[p] if k[0] != 202201]
        plan = []  # payment i: (person, key, amount, date)

        def payment(i):
            while len(plan) <= i:
                p, k = rng.choice(targets)
                plan.append((p, k, rng.randint(1, 999), 20240101 + rng.randint(0, 11) * 100 + rng.randint(0, 27)))
            p, k, amount, date = plan[i]
            return {"idem": "crash-%d" % i, "items": [{"id": p, "month": k[0], "city": k[1], "type": k[2],
                                                       "amount": amount, "date": date}]}

        acked = 0  # payments 0..acked-1 are acknowledged
        kills = 0
        for cycle in range(self.KILLS):
            w = self.open_eval(data)
            delay = rng.uniform(0.0, 0.06)
            timer = threading.Timer(delay, lambda pid=w.proc.pid: os.kill(pid, signal.SIGKILL))
            timer.start()
            try:
                while True:
                    ans = w.call("payment.apply", payment(acked))
                    self.assertEqual(ans[2:], [None, {"results": [{"ok": True}]}], "payment %d" % acked)
                    acked += 1
            except Killed:
                kills += 1
            finally:
                timer.cancel()
                timer.join()
                w.kill()
            self.assertEqual(w.proc.returncode, -signal.SIGKILL)
        # a last clean run re-sends the one in flight and a few more
        w = self.open_eval(data)
        for _ in range(5):
            self.assertEqual(w.call("payment.apply", payment(acked))[2:], [None, {"results": [{"ok": True}]}])
            acked += 1
        after = {p: w.ok("person.get", {"id": p}) for p in pids}
        self.assertEqual(w.close(), 0)
        print("[crash] %d kills, %d payments acknowledged" % (kills, acked), file=sys.stderr)
        self.assertEqual(kills, self.KILLS)

        for p, k, amount, date in plan[:acked]:
            s = expect[p][k]
            s["paid"] += amount
            s["paid_date"] = max(s["paid_date"], date)
        for p in pids:
            self.assertEqual(before[p]["person"]["id"], p)
            order = [(s["month"], s["city"], s["type"]) for s in before[p]["person"]["slots"]]
            self.assertEqual(sorted(order), sorted(expect[p]))
            want = {"person": {"id": p, "slots": [expect[p][k] for k in order]}}
            self.assertEqual(after[p], want, "person %s after %d payments" % (p, acked))


# ======================================================================
# 5. Map full


class TestMapFull(StoreTest):
    def big_person(self, pid, rng, months):
        """months × 5 types of slots with scattered values (they do not run-encode)."""
        slots = []
        for t in TYPES:
            for k in range(months):
                y, m = divmod(k, 12)
                paid = rng.randint(1, 10 ** 9)
                slots.append(slot((1980 + y) * 100 + m + 1, "110000", t, rng.choice(["employee", "flexible"]),
                                  rng.randint(0, 10 ** 10), paid,
                                  (1990 + rng.randint(0, 30)) * 10000 + rng.randint(1, 12) * 100 + rng.randint(1, 28)))
        return {"id": pid, "slots": slots}

    def test_map_full(self):
        rng = random.Random(SEED)
        data = self.path("store")
        e = None
        for map_max in (1 << 20, 2 << 20, 4 << 20, 8 << 20):
            e = self.open_eval(data, map_max)
            try:
                e.ok("ping", {})
                break
            except Killed:
                e.kill()
                e = None
        self.assertIsNotNone(e, "the store does not open with a map of 8 MiB or less")
        print("\n[map-full] map %d bytes" % map_max, file=sys.stderr)

        def expected(p):
            order = sorted(p["slots"], key=lambda s: (TYPES.index(s["type"]), s["city"], s["month"]))
            return {"person": {"id": p["id"], "slots": order}}

        stored = []
        failed = None
        for k in range(200):
            small = {"id": make_id("110105197001%02d%03d" % (k % 28 + 1, k)),
                     "slots": [slot(202401, "110000", "pension", "employee", 500000)]}
            big = self.big_person(make_id("310104198001%02d%03d" % (k % 28 + 1, k)), rng, 240)
            r = e.call("person.put", {"persons": [small, big], "idem": "full-%d" % k})
            if r[2] is not None:
                failed = (k, small, big, r)
                break
            self.assertEqual(r[3], {"results": [{"id": small["id"], "ok": True}, {"id": big["id"], "ok": True}]})
            stored += [small, big]
        self.assertIsNotNone(failed, "the map never filled")
        k, small, big, r = failed
        print("[map-full] full after %d requests" % k, file=sys.stderr)
        self.assertGreater(k, 0)
        self.assertEqual(r[2]["code"], 9, r[2])
        self.assertEqual(r[2]["name"], "internal")
        # still answering; earlier persons intact; nothing of the failed request
        self.assertEqual(e.ok("ping", {})["pong"], True)
        for p in stored:
            self.assertEqual(e.ok("person.get", {"id": p["id"]}), expected(p))
        for p in (small, big):
            self.assertEqual(not_found_by_id(e.err("person.get", {"id": p["id"]})), NOT_FOUND_ID)
        # the failed key was not recorded: the same request fails the same way again
        r2 = e.call("person.put", {"persons": [small, big], "idem": "full-%d" % k})
        self.assertEqual((r2[2] or {}).get("code"), 9, r2)
        self.assertEqual(e.ok("ping", {})["pong"], True)
        self.assertEqual(e.close(), 0)
        # and so it stays in a new process
        e = self.open_eval(data, map_max)
        for p in stored:
            self.assertEqual(e.ok("person.get", {"id": p["id"]}), expected(p))
        for p in (small, big):
            self.assertEqual(not_found_by_id(e.err("person.get", {"id": p["id"]})), NOT_FOUND_ID)
        self.assertEqual(e.close(), 0)


# ======================================================================


def main(argv):
    global ARREARS, SEED
    rest = [argv[0]]
    i = 1
    while i < len(argv):
        if argv[i] in ("--arrears", "--eval") and i + 1 < len(argv):
            ARREARS = argv[i + 1]
            i += 1
        elif argv[i] == "--seed" and i + 1 < len(argv):
            SEED = int(argv[i + 1])
            i += 1
        else:
            rest.append(argv[i])
        i += 1
    if msgpack is None:
        print("msgpack is missing: run with /usr/bin/python3 (python3-msgpack)")
        return 2
    if not os.access(ARREARS, os.X_OK):
        print("no binary at %s (make build/arrears)" % ARREARS)
        return 2
    if SEED is None:
        SEED = int(time.time() * 1000) % 1000000
    print("test_store: seed %d (replay with --seed %d)" % (SEED, SEED))
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    if len(rest) > 1:
        suite = unittest.defaultTestLoader.loadTestsFromNames(rest[1:], sys.modules[__name__])
    started = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    bad = set()
    for t, _ in result.failures + result.errors:
        bad.add(getattr(t, "test_case", t).id())
    failed = len(bad)
    passed = max(0, result.testsRun - failed)
    print("time %.1f s" % (time.monotonic() - started))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
