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
6. The spec's later points, by hand (expected values worked out next to them):
   scan.after as an id prefix and its invalid forms (§5.1); idempotent retries
   re-encoded with keys in another order and integers (strings, arrays, maps)
   in wider msgpack formats are replays, other values are conflicts (Appendix
   A); paid capped at 10^10 fen in payment.apply and withhold.run (R13, R12);
   strings that are not valid UTF-8 (§2.1).
7. A seeded random differential of the store: writes, retries, conflicts,
   reads, scans with prefixes, payments near the cap and invalid UTF-8, each
   answer compared with tests/reference.py's store model (Evaluator(store=True)).

Each test works in its own temporary directory. Prints `N passed, M failed`
and exits 1 on any failure.
"""

import copy
import csv
import json
import os
import random
import select
import shutil
import signal
import struct
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
sys.path.insert(0, HERE)

import reference as R  # noqa: E402
import test_differential as TD  # noqa: E402  (pack_variant, compare_response, invalid UTF-8)

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


def pack1(m):
    """One message; strings holding lone surrogates go out as the invalid bytes they stand for."""
    return msgpack.packb(m, use_bin_type=True, unicode_errors="surrogateescape")


def pack(msgs):
    return b"".join(m if isinstance(m, bytes) else pack1(m) for m in msgs)


def new_unpacker():
    # an answer that echoes invalid UTF-8 must still decode (to be reported)
    return msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")


def unpack_all(data):
    unp = new_unpacker()
    unp.feed(data)
    return list(unp)


def run_batch(msgs, data=None):
    """All msgs (messages, or raw bytes) through one `arrears eval` process; its responses in order."""
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
        self.unp = new_unpacker()
        self.msgid = 0

    def send(self, method, params, encode=None):
        """encode(message) -> bytes: another encoding of the same message."""
        self.msgid += 1
        m = req(self.msgid, method, params)
        try:
            self.proc.stdin.write(encode(m) if encode else pack1(m))
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

    def call(self, method, params, encode=None):
        """The whole response [1, msgid, error, result]."""
        msgid = self.send(method, params, encode)
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
        # SPEC 3.4: each city's first document is its revision 1
        self.assertEqual(e.ok("policy.put", {"policy": POLICY_110}), {"ok": True, "revision": 1, "warnings": []})
        self.assertEqual(e.ok("policy.put", {"policy": POLICY_310}), {"ok": True, "revision": 1, "warnings": []})
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
            pay("not-an-id", 202401, "110000", "pension", 100, 20240210),  # 3 not a resident id: invalid
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
        pay1_exp = [{"ok": True}, {"ok": True}, error_of(4, "items[2].id"), error_of(3, "items[3].id"),
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
        # Appendix A: a valid id not stored is not_found, a string that is not a resident id invalid
        for k, pid, code in ((1, U, 4), (2, "bogus", 3)):
            self.assertEqual(set(res[k]), {"id", "error"})
            self.assertEqual(res[k]["id"], pid)
            self.assertEqual(strip_error(res[k]["error"]), error_of(code, "accounts[%d].id" % k))
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
                                               "accounts": []}), {"results": [], "policies": {}})

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
# 6. The spec's later points, by hand

XB = TD.bad_utf8  # a str that packs as these (invalid UTF-8) bytes


def spoil(text, k, bad=b"\xff"):
    """text with its k-th byte replaced by invalid UTF-8."""
    b = text.encode("utf-8")
    return XB(b[:k] + bad + b[k + 1:])


def id_with_check(first_part, want_x, start=0):
    """A valid id whose first characters are first_part, ending in X or not."""
    for n in range(start, 100000):
        first17 = (first_part + "%0*d" % (17 - len(first_part), n))[:17]
        pid = make_id(first17)
        if R.valid_id(pid) and (pid[17] == "X") == want_x:
            return pid
    raise AssertionError("no id for " + first_part)


def encoder(reorder=False, ints=None, wide=False, seed=None):
    """encode(message) -> bytes: the envelope as usual, params in another
    encoding of the same value. reorder: map keys in reverse order; ints:
    "u32"/"u64"/"i32"/"i64" for every integer that fits; wide: strings,
    arrays and maps with 32-bit length headers; seed: TD.pack_variant at random."""
    def params_bytes(v):
        if seed is not None:
            return TD.pack_variant(v, random.Random(seed), 0.7)
        out = bytearray()

        def w(o):
            t = type(o)
            if t is int and ints is not None:
                fmt = {"u32": (0xce, ">I", 0, 2 ** 32 - 1), "u64": (0xcf, ">Q", 0, 2 ** 64 - 1),
                       "i32": (0xd2, ">i", -2 ** 31, 2 ** 31 - 1), "i64": (0xd3, ">q", -2 ** 63, 2 ** 63 - 1)}[ints]
                if fmt[2] <= o <= fmt[3]:
                    out.extend(bytes([fmt[0]]) + struct.pack(fmt[1], o))
                    return
            if t is str and wide:
                b = o.encode("utf-8", "surrogateescape")
                out.extend(b"\xdb" + struct.pack(">I", len(b)) + b)
            elif t is list:
                out.extend(b"\xdd" + struct.pack(">I", len(o)) if wide else _arr_hdr(len(o)))
                for x in o:
                    w(x)
            elif t is dict:
                items = list(o.items())
                if reorder:
                    items.reverse()
                out.extend(b"\xdf" + struct.pack(">I", len(items)) if wide else _map_hdr(len(items)))
                for k, x in items:
                    w(k)
                    w(x)
            else:
                out.extend(pack1(o))
        w(v)
        return bytes(out)

    def encode(m):
        return b"\x94" + pack1(m[0]) + pack1(m[1]) + pack1(m[2]) + b"\x91" + params_bytes(m[3][0])
    return encode


def _arr_hdr(n):
    return bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)


def _map_hdr(n):
    return bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)


ENCODINGS = [("keys reversed", encoder(reorder=True)), ("ints as uint32", encoder(ints="u32")),
             ("ints as uint64", encoder(ints="u64")), ("ints as int32", encoder(ints="i32")),
             ("ints as int64", encoder(ints="i64")), ("str32/array32/map32", encoder(wide=True)),
             ("all at once", encoder(reorder=True, ints="i64", wide=True))] + \
            [("random re-encoding %d" % k, encoder(seed=k)) for k in range(4)]

CAP_RATES = {"pension": {"employer": 600000, "individual": 600000},
             "medical": {"employer": 500000, "individual": 500000},
             "unemployment": {"employer": 100000}}
POLICY_440 = {"city": "440100", "deadline": {"day": 15},
              "periods": [{"from": 202001, "base_min": 0, "base_max": 10 ** 10, "rates": CAP_RATES}],
              "withhold": {"order": ["pension", "medical", "unemployment"], "mode": "stop"}}
POLICY_320 = dict(POLICY_440, city="320500", withhold={"order": ["pension", "medical", "unemployment"],
                                                         "mode": "skip"})
CAP = 10 ** 10


def pay(pid, month, city, type_, amount, date):
    return {"id": pid, "month": month, "city": city, "type": type_, "amount": amount, "date": date}


class SpecTest(StoreTest):
    def check_no_echo(self, r):
        bad = TD.invalid_strings(r, "response", [])
        self.assertEqual(bad, [], "invalid UTF-8 echoed back (SPEC 2.1): %r" % (r,))
        return r

    def call(self, e, method, params, encode=None):
        return self.check_no_echo(e.call(method, params, encode))

    def err_at(self, e, method, params, encode=None):
        r = self.call(e, method, params, encode)
        self.assertIsNone(r[3], (method, r))
        self.assertIsNotNone(r[2], (method, r))
        return strip_error(r[2])


class TestSpecScan(SpecTest):
    """§5.1: scan.after is nil, an id or an id prefix; ids compare as strings."""

    def test_scan_prefixes(self):
        e = self.open_eval(self.path("store"))
        e.ok("policy.put", {"policy": POLICY_110})
        ids = set()
        for k, area in enumerate(("110105", "110106", "310104", "440106", "320502", "110105")):
            for birth in ("19800101", "19851231", "19700615"):
                for want_x in (False, True):
                    ids.add(id_with_check(area + birth, want_x, start=k * 7))
        ids = sorted(ids)
        self.assertGreater(len(ids), 25)
        self.assertTrue(any(i.endswith("X") for i in ids))
        r = e.ok("person.put", {"persons": [{"id": i, "slots": [slot(202401, "110000", "pension", "employee",
                                                                      500000)]} for i in ids]})
        self.assertEqual(r, {"results": [{"id": i, "ok": True} for i in ids]})
        x_id = next(i for i in ids if i.endswith("X"))
        wrong_check = x_id[:17] + "0"  # 18 characters, digits: a prefix, though not a valid id
        afters = [None, "0", "1", "11", "110105", "1101051980", "110106", "3", "31", "310104198512",
                  "4401061", "9", "99999999999999999X", "999999999999999999", ids[0], ids[5], ids[-1],
                  x_id, x_id[:17], x_id[:17] + "9", wrong_check, ids[3][:17], ids[3][:16]]
        for after in afters:
            for limit in (1, 4, 100000):
                want = [i for i in ids if after is None or i > after][:limit]  # string order (§5.1)
                params = {"as_of": 20240301, "scan": {"after": after, "limit": limit}}
                res = e.ok("medical.status", params)
                self.assertEqual([x["id"] for x in res["results"]], want, "after %r limit %d" % (after, limit))
                self.assertEqual(res["next"], want[-1] if len(want) == limit else None, after)
        # two walkers split the city at a prefix: [start, "3") and ("3", end]
        res = e.ok("years.compute", {"as_of": 20240301, "scan": {"after": "3", "limit": 100000}})
        self.assertEqual([x["id"] for x in res["results"]], [i for i in ids if i[0] >= "3"])
        # paging from a prefix: pages of 3, each after the last id of the one before
        got, after = [], "110106"
        while True:
            res = e.ok("arrears.compute", {"as_of": 20240301, "scan": {"after": after, "limit": 3}})
            got += [x["id"] for x in res["results"]]
            if res["next"] is None:
                break
            after = res["next"]
        self.assertEqual(got, [i for i in ids if i > "110106"])
        invalid = [5, 0, -1, 1.5, True, [], {}, b"110105", "", "11010a", " 110105", "110105 ", "x", "X",
                   "11010X", x_id[:17].lower() + "x", x_id[:16] + "X", x_id[:16] + "X" + "1", x_id + "1",
                   "1" * 19, "-1", "+1", "1.5", "１１０１０５", "110105\u00e9", spoil("110105", 3), XB(b"\xff"),
                   XB(b"11\xed\xa0\x80"), wrong_check[:17] + "x"]
        for after in invalid:
            for method in ("medical.status", "arrears.compute"):
                self.assertEqual(self.err_at(e, method, {"as_of": 20240301, "scan": {"after": after, "limit": 5}}),
                                 error_of(3, "scan.after"), "after %r" % (after,))
        # scan.after is checked before scan.limit (Appendix A lists after first)
        self.assertEqual(self.err_at(e, "medical.status", {"as_of": 20240301, "scan": {"after": "", "limit": 0}}),
                         error_of(3, "scan.after"))
        self.assertEqual(e.close(), 0)


class TestSpecIdempotency(SpecTest):
    """Appendix A: the payload is the method and the params as a value."""

    def test_retries_reencoded(self):
        e = self.open_eval(self.path("store"))
        e.ok("policy.put", {"policy": POLICY_110})
        e.ok("person.put", {"persons": [
            {"id": A, "slots": [slot(202401, "110000", "pension", "employee", 500000),
                                slot(202401, "110000", "medical", "employee", 500000)]},
            {"id": C, "slots": [slot(202401, "110000", "pension", "employee", 500000)]}]})
        a_exp = [slot(202401, "110000", "pension", "employee", 500000, 50000, 20240210),
                 slot(202401, "110000", "medical", "employee", 500000, 200, 20240211)]

        def state():
            return [e.ok("person.get", {"id": A}), self.call(e, "person.get", {"id": C})[2:]]

        pay1 = {"idem": "re-1", "items": [pay(A, 202401, "110000", "pension", 50000, 20240210),
                                          pay(A, 202401, "110000", "medical", 200, 20240211)]}
        r1 = self.call(e, "payment.apply", pay1)
        self.assertEqual(r1[2:], [None, {"results": [{"ok": True}, {"ok": True}]}])
        self.assertEqual(e.ok("person.get", {"id": A}), {"person": {"id": A, "slots": a_exp}})
        before = state()
        for name, enc in ENCODINGS:
            self.assertEqual(self.call(e, "payment.apply", pay1, enc)[2:], r1[2:], "retry, " + name)
            self.assertEqual(state(), before, "retry changed the store, " + name)

        # withhold.run: A owes pension 120000 - 50000 = 70000 (paid), medical 60000 - 200 = 59800
        # (> 30000 left: interrupted); 110000 stops after it. paid_date max(20240210, 20240131).
        wh = {"idem": "re-wh", "month": 202401, "date": 20240131, "accounts": [{"id": A, "balance": 100000}]}
        w1 = self.call(e, "withhold.run", wh)
        self.assertEqual(w1[2:], [None, {"results": [{"id": A, "paid": [{"type": "pension", "city": "110000",
                                                                          "amount": 70000}],
                                                      "interrupted": [{"type": "medical", "city": "110000",
                                                                       "owed": 59800}],
                                                      "balance": 30000}],
                                         "policies": {"110000": 1}}])  # SPEC 3.4: the revision it read
        a_exp[0].update(paid=120000)
        self.assertEqual(e.ok("person.get", {"id": A}), {"person": {"id": A, "slots": a_exp}})
        before = state()
        for name, enc in ENCODINGS:
            self.assertEqual(self.call(e, "withhold.run", wh, enc)[2:], w1[2:], "withhold retry, " + name)
            self.assertEqual(state(), before, "withhold retry changed the store, " + name)

        # person.put with idem: a re-encoded retry replays and does not overwrite a later payment
        put = {"idem": "re-put", "persons": [{"id": B, "retire_class": "f55", "slots": [
            slot(202402, "110000", "pension", "flexible", 300000),
            slot(202401, "110000", "pension", "flexible", 300000, 1, 20240105)]}]}
        p1 = self.call(e, "person.put", put)
        self.assertEqual(p1[2:], [None, {"results": [{"id": B, "ok": True}]}])
        self.assertEqual(e.ok("payment.apply", {"idem": "re-pay-b", "items": [
            pay(B, 202402, "110000", "pension", 60000, 20240301)]}), {"results": [{"ok": True}]})
        b_exp = {"person": {"id": B, "retire_class": "f55", "slots": [
            slot(202401, "110000", "pension", "flexible", 300000, 1, 20240105),
            slot(202402, "110000", "pension", "flexible", 300000, 60000, 20240301)]}}
        self.assertEqual(e.ok("person.get", {"id": B}), b_exp)
        for name, enc in ENCODINGS:
            self.assertEqual(self.call(e, "person.put", put, enc)[2:], p1[2:], "put retry, " + name)
            self.assertEqual(e.ok("person.get", {"id": B}), b_exp, "put retry overwrote, " + name)

        # person.delete with idem: the retry replays ok
        d1 = self.call(e, "person.delete", {"id": C, "idem": "re-del"})
        self.assertEqual(d1[2:], [None, {"ok": True}])
        for name, enc in ENCODINGS:
            self.assertEqual(self.call(e, "person.delete", {"id": C, "idem": "re-del"}, enc)[2:], d1[2:], name)

        # another value under the same key: conflict at idem, nothing changes
        before = state()
        items = pay1["items"]
        it0 = items[0]
        conflicts = [
            ("amount + 1", dict(pay1, items=[dict(it0, amount=50001), items[1]])),
            ("an item dropped", dict(pay1, items=items[:1])),
            ("items swapped", dict(pay1, items=[items[1], items[0]])),
            ("an item twice", dict(pay1, items=items + items[:1])),
            ("an unknown key added", dict(pay1, note="retry")),
            ("an unknown key added to an item", dict(pay1, items=[dict(it0, note=1), items[1]])),
            ("an integer sent as a float", dict(pay1, items=[dict(it0, amount=50000.0), items[1]])),
            ("a string sent as bin", dict(pay1, items=[dict(it0, city=b"110000"), items[1]])),
            ("a date one day later", dict(pay1, items=[dict(it0, date=20240211), items[1]])),
        ]
        for name, params in conflicts:
            for enc in (None, ENCODINGS[-1][1]):
                self.assertEqual(self.err_at(e, "payment.apply", params, enc), error_of(5, "idem"), name)
        self.assertEqual(self.err_at(e, "withhold.run", dict(wh, accounts=[{"id": A, "balance": 100001}])),
                         error_of(5, "idem"))
        self.assertEqual(self.err_at(e, "withhold.run", dict(wh, idem="re-1")), error_of(5, "idem"))
        self.assertEqual(self.err_at(e, "person.put", dict(put, persons=[dict(put["persons"][0], retire_class="f50")])),
                         error_of(5, "idem"))
        self.assertEqual(self.err_at(e, "person.put", dict(put, idem="re-1")), error_of(5, "idem"))
        self.assertEqual(state(), before)
        self.assertEqual(e.ok("person.get", {"id": B}), b_exp)
        self.assertEqual(e.close(), 0)


class TestSpecPaymentCap(SpecTest):
    """R13: paid never passes 10^10 fen; R12 treats such a slot as not payable."""

    def test_payment_cap(self):
        e = self.open_eval(self.path("store"))
        e.ok("policy.put", {"policy": POLICY_110})
        f_slots = [slot(202401, "110000", "pension", "employee", 500000, CAP - 100, 20240110),
                   slot(202401, "110000", "medical", "employee", 500000),
                   slot(202401, "110000", "unemployment", "employee", 500000, CAP, 20240110),
                   slot(202402, "110000", "pension", "employee", 500000)]
        self.assertEqual(e.ok("person.put", {"persons": [{"id": A, "slots": f_slots}]}),
                         {"results": [{"id": A, "ok": True}]})
        cap1 = {"idem": "cap-1", "items": [
            pay(A, 202401, "110000", "pension", 60, 20240212),        # 0 ok: CAP - 40
            pay(A, 202401, "110000", "pension", 40, 20240212),        # 1 ok: exactly CAP
            pay(A, 202401, "110000", "pension", 1, 20240301),         # 2 past CAP: amount; date unchanged
            pay(A, 202401, "110000", "medical", CAP, 20240213),       # 3 ok: 0 -> CAP
            pay(A, 202401, "110000", "medical", 1, 20240213),         # 4 past CAP
            pay(A, 202401, "110000", "unemployment", 1, 20240213),    # 5 stored at CAP already
            pay(A, 202402, "110000", "pension", CAP, 20240301),       # 6 ok: 0 -> CAP in one payment
            pay(A, 202402, "110000", "pension", CAP, 20240302),       # 7 2 * CAP
            pay(A, 202401, "110000", "pension", CAP + 1, 20240301),   # 8 the field's own range: amount
            pay(A, 202403, "110000", "pension", 1, 20240301),         # 9 no slot: items[9]
            pay(A, 202401, "110000", "maternity", CAP, 20240301),     # 10 no slot before the cap
        ]}
        want = [{"ok": True}, {"ok": True}, error_of(3, "items[2].amount"), {"ok": True},
                error_of(3, "items[4].amount"), error_of(3, "items[5].amount"), {"ok": True},
                error_of(3, "items[7].amount"), error_of(3, "items[8].amount"), error_of(4, "items[9]"),
                error_of(4, "items[10]")]
        r1 = self.call(e, "payment.apply", cap1)
        self.assertIsNone(r1[2], r1)
        got = r1[3]["results"]
        self.assertEqual(len(got), len(want))
        for k, (g, x) in enumerate(zip(got, want)):
            if "ok" in x:
                self.assertEqual(g, x, "item %d" % k)
            else:
                self.assertEqual(set(g), {"error"}, "item %d: %r" % (k, g))
                self.assertEqual(strip_error(g["error"]), x, "item %d" % k)
        f_exp = [slot(202401, "110000", "pension", "employee", 500000, CAP, 20240212),
                 slot(202402, "110000", "pension", "employee", 500000, CAP, 20240301),
                 slot(202401, "110000", "medical", "employee", 500000, CAP, 20240213),
                 slot(202401, "110000", "unemployment", "employee", 500000, CAP, 20240110)]
        self.assertEqual(e.ok("person.get", {"id": A}), {"person": {"id": A, "slots": f_exp}})
        # every stored slot is still a valid person.put input
        self.assertEqual(e.ok("person.put", {"persons": [e.ok("person.get", {"id": A})["person"]]}),
                         {"results": [{"id": A, "ok": True}]})
        # across requests: CAP - 1, then 1 (exactly CAP), then 1 more (error)
        e.ok("person.put", {"persons": [{"id": B, "slots": [slot(202401, "110000", "pension", "flexible", 300000)]}]})
        steps = [(CAP - 1, {"ok": True}), (1, {"ok": True}), (1, error_of(3, "items[0].amount"))]
        for k, (amount, x) in enumerate(steps):
            r = self.call(e, "payment.apply", {"idem": "cap-b-%d" % k,
                                               "items": [pay(B, 202401, "110000", "pension", amount, 20240120 + k)]})
            g = r[3]["results"][0]
            self.assertEqual(g if "ok" in x else strip_error(g.get("error", {})), x, "step %d" % k)
        self.assertEqual(e.ok("person.get", {"id": B})["person"]["slots"],
                         [slot(202401, "110000", "pension", "flexible", 300000, CAP, 20240121)])
        # the replay answers the same and changes nothing
        self.assertEqual(self.call(e, "payment.apply", cap1)[2:], r1[2:])
        self.assertEqual(e.ok("person.get", {"id": A}), {"person": {"id": A, "slots": f_exp}})
        self.assertEqual(e.close(), 0)

    def test_withhold_cap(self):
        """Employee dues reach 1.2 * 10^10 (rates 600000 + 600000 on a base of 10^10): paying
        such a slot's owed would carry paid past 10^10, so it is interrupted."""
        e = self.open_eval(self.path("store"))
        for pol in (POLICY_440, POLICY_320):
            e.ok("policy.put", {"policy": pol})
        # dues: pension base 10^10 -> 6e9 + 6e9 = 1.2e10; medical base 10^10 -> 5e9 + 5e9 = 10^10;
        # unemployment base 1000 -> 100
        w_slots = [slot(202402, "440100", "pension", "employee", CAP, 5 * 10 ** 9, 20240210),
                   slot(202402, "440100", "medical", "employee", CAP),
                   slot(202402, "440100", "unemployment", "employee", 1000)]
        w2_slots = [slot(202402, "320500", "pension", "employee", CAP, 5 * 10 ** 9, 20240210),
                    slot(202402, "320500", "medical", "employee", CAP, 1, 20240210),
                    slot(202402, "320500", "unemployment", "employee", 1000)]
        w3_slots = [slot(202402, "320500", "medical", "employee", CAP),
                    slot(202402, "320500", "pension", "employee", 10 ** 8)]  # due 1.2e8
        e.ok("person.put", {"persons": [{"id": A, "slots": w_slots}, {"id": B, "slots": w2_slots},
                                        {"id": D, "slots": w3_slots}]})
        w = self.call(e, "withhold.run", {"idem": "wh-cap", "month": 202402, "date": 20240229, "accounts": [
            {"id": A, "balance": CAP}, {"id": B, "balance": CAP}, {"id": D, "balance": CAP}]})
        self.assertIsNone(w[2], w)
        self.assertEqual(w[3]["results"], [
            # 440100 stops: pension 7e9 fits the balance but not the cap; the rest follow it
            {"id": A, "paid": [], "interrupted": [{"type": "pension", "city": "440100", "owed": 7 * 10 ** 9},
                                                  {"type": "medical", "city": "440100", "owed": CAP},
                                                  {"type": "unemployment", "city": "440100", "owed": 100}],
             "balance": CAP},
            # 320500 skips: medical to exactly 10^10, then 1 fen left for unemployment's 100
            {"id": B, "paid": [{"type": "medical", "city": "320500", "amount": CAP - 1}],
             "interrupted": [{"type": "pension", "city": "320500", "owed": 7 * 10 ** 9},
                             {"type": "unemployment", "city": "320500", "owed": 100}],
             "balance": 1},
            # pension 1.2e8 paid first, then medical's 10^10 no longer fits the balance
            {"id": D, "paid": [{"type": "pension", "city": "320500", "amount": 12 * 10 ** 7}],
             "interrupted": [{"type": "medical", "city": "320500", "owed": CAP}],
             "balance": CAP - 12 * 10 ** 7}])
        self.assertEqual(e.ok("person.get", {"id": A})["person"]["slots"], [
            w_slots[0], w_slots[1], w_slots[2]])
        b_exp = [dict(w2_slots[0]), dict(w2_slots[1], paid=CAP, paid_date=20240229), dict(w2_slots[2])]
        self.assertEqual(e.ok("person.get", {"id": B})["person"]["slots"], b_exp)
        # the full medical due (exactly 10^10) is payable from a balance of 10^10
        w = self.call(e, "withhold.run", {"idem": "wh-cap-2", "month": 202402, "date": 20240229, "accounts": [
            {"id": D, "balance": CAP}]})
        self.assertEqual(w[3]["results"], [{"id": D, "paid": [{"type": "medical", "city": "320500", "amount": CAP}],
                                            "interrupted": [], "balance": 0}])
        self.assertEqual(e.close(), 0)


class TestSpecUtf8(SpecTest):
    """§2.1: a string that is not valid UTF-8 is invalid_argument at its path and
    is never echoed: a per-person result carries "id": nil then."""

    def test_invalid_utf8(self):
        e = self.open_eval(self.path("store"))
        e.ok("policy.put", {"policy": POLICY_110})
        a_slots = [slot(202401, "110000", "pension", "employee", 500000)]
        e.ok("person.put", {"persons": [{"id": A, "slots": a_slots}]})
        bad_a = spoil(A, 6)
        c_slot = dict(slot(202401, "110000", "pension", "employee", 500000), note=XB(b"\xff\xfe"))
        r = self.call(e, "person.put", {"persons": [
            {"id": bad_a, "slots": a_slots},
            {"id": B, "slots": [dict(a_slots[0], city=spoil("110000", 2))]},
            {"id": C, "slots": [c_slot]},
            {"id": XB(b"\xed\xa0\x80" + A[3:].encode()), "slots": []}]})
        res = r[3]["results"]
        self.assertEqual(res[0]["id"], None)
        self.assertEqual(strip_error(res[0]["error"]), error_of(3, "persons[0].id"))
        self.assertEqual(res[1]["id"], B)
        self.assertEqual(strip_error(res[1]["error"]), error_of(3, "persons[1].slots[0].city"))
        self.assertEqual(res[2], {"id": C, "ok": True})  # an unknown key is ignored, whatever it holds
        self.assertEqual(res[3]["id"], None)
        self.assertEqual(strip_error(res[3]["error"]), error_of(3, "persons[3].id"))
        self.assertEqual(not_found_by_id(e.err("person.get", {"id": B})), NOT_FOUND_ID)
        self.assertEqual(e.ok("person.get", {"id": C}), {"person": {"id": C, "slots": [
            slot(202401, "110000", "pension", "employee", 500000)]}})

        # the same as inline persons
        r = self.call(e, "arrears.compute", {"as_of": 20240301, "persons": [{"id": bad_a, "slots": a_slots}]})
        self.assertEqual(r[3]["results"][0]["id"], None)
        self.assertEqual(strip_error(r[3]["results"][0]["error"]), error_of(3, "persons[0].id"))
        # ids: invalid_argument at ids[i], "id": nil
        r = self.call(e, "medical.status", {"as_of": 20240301, "ids": [A, bad_a, XB(b"\xff")]})
        res = r[3]["results"]
        self.assertEqual(res[0]["id"], A)
        self.assertNotIn("error", res[0])
        for k in (1, 2):
            self.assertEqual(set(res[k]), {"id", "error"})
            self.assertIsNone(res[k]["id"])
            self.assertEqual(strip_error(res[k]["error"]), error_of(3, "ids[%d]" % k))
        # payment items: the field's path; the good item still applies
        r = self.call(e, "payment.apply", {"idem": "u-1", "items": [
            pay(bad_a, 202401, "110000", "pension", 100, 20240210),
            pay(A, 202401, spoil("110000", 0), "pension", 100, 20240210),
            pay(A, 202401, "110000", spoil("pension", 2, b"\xc0\xb1"), 100, 20240210),
            pay(A, 202401, "110000", "pension", 100, 20240210)]})
        res = r[3]["results"]
        self.assertEqual([strip_error(x["error"]) for x in res[:3]],
                         [error_of(3, "items[0].id"), error_of(3, "items[1].city"), error_of(3, "items[2].type")])
        self.assertEqual(res[3], {"ok": True})
        a_exp = [slot(202401, "110000", "pension", "employee", 500000, 100, 20240210)]
        self.assertEqual(e.ok("person.get", {"id": A})["person"]["slots"], a_exp)
        # withhold accounts
        r = self.call(e, "withhold.run", {"idem": "u-2", "month": 202401, "date": 20240131,
                                          "accounts": [{"id": bad_a, "balance": 1}]})
        self.assertEqual(r[3]["results"][0]["id"], None)
        self.assertEqual(strip_error(r[3]["results"][0]["error"]), error_of(3, "accounts[0].id"))
        # an idem key that is not UTF-8: request level, nothing written, nothing recorded
        bad_key = spoil("pay-x", 3)
        for _ in range(2):
            self.assertEqual(self.err_at(e, "payment.apply", {"idem": bad_key, "items": [
                pay(A, 202401, "110000", "pension", 5, 20240211)]}), error_of(3, "idem"))
            self.assertEqual(self.err_at(e, "person.put", {"idem": bad_key, "persons": [
                {"id": D, "slots": []}]}), error_of(3, "idem"))
            self.assertEqual(self.err_at(e, "withhold.run", {"idem": bad_key, "month": 202401, "date": 20240131,
                                                             "accounts": [{"id": A, "balance": CAP}]}),
                             error_of(3, "idem"))
            self.assertEqual(self.err_at(e, "person.delete", {"id": A, "idem": bad_key}), error_of(3, "idem"))
        self.assertEqual(e.ok("person.get", {"id": A})["person"]["slots"], a_exp)
        self.assertEqual(not_found_by_id(e.err("person.get", {"id": D})), NOT_FOUND_ID)
        # a method name that is not UTF-8: invalid_argument at "method" (the stream goes on)
        for name in (spoil("person.get", 7), XB(b"\xff"), spoil("ping", 1, b"\xed\xa0\x80")):
            self.assertEqual(self.err_at(e, name, {"id": A}), error_of(3, "method"))
        self.assertEqual(e.ok("ping", {})["pong"], True)
        # request-level strings
        self.assertEqual(self.err_at(e, "person.get", {"id": bad_a}), error_of(3, "id"))
        self.assertEqual(self.err_at(e, "person.delete", {"id": bad_a}), error_of(3, "id"))
        self.assertEqual(self.err_at(e, "policy.get", {"city": spoil("110000", 5)}), error_of(3, "city"))
        self.assertEqual(self.err_at(e, "housing.check", {"as_of": 20240301, "city": spoil("110000", 1),
                                                          "ids": [A]}), error_of(3, "city"))
        self.assertEqual(self.err_at(e, "medical.status", {"as_of": 20240301, "scan": {"after": spoil(A, 4),
                                                                                       "limit": 5}}),
                         error_of(3, "scan.after"))
        pol = dict(POLICY_110, name=spoil("Test 110", 0))
        self.assertEqual(self.err_at(e, "policy.put", {"policy": pol}), error_of(3, "policy.name"))
        pol = dict(POLICY_110, periods=[dict(POLICY_110["periods"][0], rates=dict(RATES, **{XB(b"pens\xffion"): {}}))])
        self.assertEqual(self.err_at(e, "policy.put", {"policy": pol}), error_of(3, "policy.periods[0].rates"))
        self.assertEqual(e.ok("policy.get", {"city": "110000"})["policy"]["name"], "Test 110")
        self.assertEqual(e.close(), 0)


# ======================================================================
# 7. Random differential of the store against tests/reference.py


STORE_CITIES = ("110000", "310000", "440100", "320500")


class StoreGen(object):
    """Seeded requests on a small store: the ids reuse a pool, so that writes,
    payments and withholding runs meet the same persons and slots."""

    # False leaves out the four later points (invalid UTF-8, scan.after prefixes and
    # invalid forms, re-encoded retries, amounts near the 10^10 cap): the rest of the
    # model can then be checked against an evaluator that predates them
    POINTS = True

    def __init__(self, seed, ref):
        self.r = random.Random(seed)
        self.ref = ref  # its store picks targets (inputs only; answers come from it afterwards)
        self.points = self.POINTS
        self.msgid = 0
        self.ids = []
        for area in ("110105", "110106", "310104", "440106"):
            for k in range(4):
                self.ids.append(id_with_check(area + "1980%02d%02d" % (k + 1, k + 10), k % 2 == 1,
                                              start=self.r.randrange(500)))
        self.sent = []  # (method, params) of idem requests, for retries
        self.keys = 0

    def req(self, method, params):
        self.msgid += 1
        return [0, self.msgid, method, [params]]

    def any_id(self):
        r = self.r
        x = r.random()
        if x < 0.03 and self.points:
            return TD.spoil_utf8(r, r.choice(self.ids))
        if x < 0.05:  # a string that is not a resident id (Appendix A: invalid_argument)
            pid = r.choice(self.ids)
            return r.choice((pid[:17], pid + "1", pid[:17] + ("0" if pid[17] != "0" else "1"), "bogus"))
        return r.choice(self.ids)

    def slot(self, month, city, typ):
        r = self.r
        cat = r.choice(("employee", "employee", "flexible"))
        x = r.random()
        if x < 0.08:
            return slot(month, city, typ, cat, 0, deemed=True)
        base = r.choice((500000, 300000, CAP if self.points else 10 ** 9, r.randint(0, 2000000)))
        x = r.random()
        if x < 0.5:
            paid, date = 0, 0
        elif x < 0.7 and self.points:
            paid, date = CAP - r.choice((0, 1, 100, 10 ** 6)), 20240110
        else:
            paid, date = r.randint(1, 200000), 20240101 + r.randint(0, 27)
        return slot(month, city, typ, cat, base, paid, date)

    def person(self):
        r = self.r
        pid = self.any_id()
        slots = {}
        for _ in range(r.randint(0, 6)):
            key = (r.choice((202401, 202402, 202403)), r.choice(STORE_CITIES), r.choice(TYPES[:3]))
            slots[key] = self.slot(*key)
        p = {"id": pid, "slots": list(slots.values())}
        if r.random() < 0.2:
            p["retire_class"] = r.choice(R.RETIRE_CLASSES)
        if r.random() < 0.05 and p["slots"] and self.points:
            p["slots"][0]["city"] = TD.spoil_utf8(r, "110000")
        return p

    def idem(self):
        self.keys += 1
        if self.r.random() < 0.02 and self.points:
            return TD.spoil_utf8(self.r, "k-%d" % self.keys)
        return "k-%d" % self.keys

    def next(self):
        """(message, encode?): encode is None or a function re-encoding the message."""
        r = self.r
        x = r.random()
        enc = None
        if r.random() < 0.1 and self.points:
            vr = random.Random(r.random())
            enc = lambda m: TD.pack_variant(m, vr, 0.6)  # noqa: E731
        if x < 0.15 and self.sent:
            # a retry of an earlier keyed request: the same value (maybe re-encoded), or another
            method, params = r.choice(self.sent)
            params = copy.deepcopy(params)
            if r.random() < 0.35:
                self.mutate(params)
            vr = random.Random(r.random())
            if r.random() < 0.7 and self.points:
                return self.req(method, params), lambda m: TD.pack_variant(m, vr, 0.7)
            return self.req(method, params), None
        if x < 0.3:
            params = {"persons": [self.person() for _ in range(r.randint(1, 3))]}
            if r.random() < 0.4:
                params["idem"] = self.idem()
            return self.keyed("person.put", params), enc
        if x < 0.55:
            items = []
            stored = [(pid, s) for pid, sp in sorted(self.ref.persons.items()) for s in sp.slots]
            for _ in range(r.randint(1, 4)):
                if stored and r.random() < 0.75:
                    pid, s = r.choice(stored)
                    left = CAP - s["paid"]
                    amount = r.choice((1, 100, 50000, left, left, left + 1, r.randint(1, 10 ** 6)))
                    if not self.points:
                        amount = r.choice((1, 100, 50000, r.randint(1, 10 ** 6)))
                    items.append(pay(pid, s["month"], s["city"], s["type"], max(1, amount),
                                     20240201 + r.randint(0, 27)))
                    continue
                amount = r.choice((1, 100, 50000, CAP, CAP - 1, r.randint(1, CAP)) if self.points
                                  else (1, 100, 50000, r.randint(1, 10 ** 9)))
                items.append(pay(self.any_id(), r.choice((202401, 202402, 202403)), r.choice(STORE_CITIES),
                                 r.choice(TYPES[:3]), amount, 20240201 + r.randint(0, 27)))
            return self.keyed("payment.apply", {"idem": self.idem(), "items": items}), enc
        if x < 0.7:
            month = r.choice((202401, 202402, 202403))
            stored = sorted(self.ref.persons)
            accounts = [{"id": r.choice(stored) if stored and r.random() < 0.8 else self.any_id(), "balance": r.choice((0, 1000, 100000, 10 ** 9, CAP))}
                        for _ in range(r.randint(1, 3))]
            return self.keyed("withhold.run", {"idem": self.idem(), "month": month, "date": 20240331,
                                               "accounts": accounts}), enc
        if x < 0.8:
            after, _ok = TD.scan_after_values(r, lambda: r.choice(self.ids))
            if r.random() < 0.5:
                after = r.choice(self.ids)[:r.randint(1, 18)]
            if not self.points:
                after = r.choice(self.ids + [None])
            method = r.choice(R.COMPUTE_METHODS)
            params = {"as_of": r.choice((20240301, 20240415, 20241231)),
                      "scan": {"after": after, "limit": r.choice((1, 2, 5, 100000))}}
            if method == "housing.check":
                params["city"] = r.choice(STORE_CITIES)
            return self.req(method, params), enc
        if x < 0.9:
            method = r.choice(R.COMPUTE_METHODS)
            params = {"as_of": r.choice((20240301, 20240415, 20241231)),
                      "ids": [self.any_id() for _ in range(r.randint(1, 4))]}
            if method == "housing.check":
                params["city"] = r.choice(STORE_CITIES)
            if method == "arrears.compute":
                params["detail"] = True
            return self.req(method, params), enc
        if x < 0.97:
            return self.req("person.get", {"id": r.choice(self.ids)}), enc
        params = {"id": r.choice(self.ids)}
        if r.random() < 0.5:
            params["idem"] = self.idem()
        return self.keyed("person.delete", params), enc

    def keyed(self, method, params):
        if isinstance(params.get("idem"), str) and R.is_text(params["idem"]):
            self.sent.append((method, copy.deepcopy(params)))
        return self.req(method, params)

    def mutate(self, params):
        r = self.r
        for key in ("items", "accounts", "persons"):
            lst = params.get(key)
            if isinstance(lst, list) and lst and r.random() < 0.7:
                x = r.random()
                if x < 0.4 and isinstance(lst[0], dict):
                    k = r.choice(sorted(lst[0], key=str))
                    v = lst[0][k]
                    lst[0][k] = v + 1 if isinstance(v, int) and not isinstance(v, bool) else [v]
                elif x < 0.7:
                    lst.pop()
                else:
                    lst.append(copy.deepcopy(lst[0]))
                return
        params["note"] = r.randint(0, 9)


class TestStoreDifferential(StoreTest):
    REQUESTS = 700

    def test_random_store(self):
        ref = R.Evaluator(store=True)
        gen = StoreGen(SEED, ref)
        msgs = []
        for pol in (POLICY_110, POLICY_310, POLICY_440, POLICY_320):
            msgs.append([2, "policy.put", [{"policy": pol}]])
            ref.handle(msgs[-1])
        cases = []
        for _ in range(self.REQUESTS):
            msg, enc = gen.next()
            cases.append((msg, ref.handle(msg)))
            msgs.append(enc(msg) if enc else msg)
        got = run_batch(msgs, data=self.path("store"))
        self.assertEqual(len(got), len(cases))
        failures = []
        counts = {}
        for k, ((msg, want), g) in enumerate(zip(cases, got)):
            diffs = TD.compare_response(msg, want, g, False)
            key = msg[2] if R.is_text(msg[2]) else "<bad method>"
            counts[key] = counts.get(key, 0) + 1
            if diffs:
                failures.append("request %d %s: %s\n    request %s\n    reference %s\n    evaluator %s" % (
                    k, key, "; ".join("%s: %s vs %s" % (p, TD.summarize(a, 80), TD.summarize(b, 80))
                                      for p, a, b in diffs[:4]),
                    TD.summarize(msg, 600), TD.summarize(want, 400), TD.summarize(g, 400)))
        print("\n[store-differential] seed %d: %s" % (SEED, ", ".join("%s %d" % kv for kv in sorted(counts.items()))),
              file=sys.stderr)
        if failures:
            self.fail("%d of %d answers differ from the reference (seed %d); the first ones:\n%s" % (
                len(failures), len(cases), SEED, "\n".join(failures[:6])))


# ======================================================================


# ---------------------------------------------------------------- policy revisions (SPEC 3.4)

class Lmdb(object):
    """Just enough of liblmdb through ctypes to write a store as a program from
    before revisions did (a `policies` record, no `policy_revisions`) and to
    read the audit log's last record."""

    class Val(__import__("ctypes").Structure):
        import ctypes as _c
        _fields_ = [("mv_size", _c.c_size_t), ("mv_data", _c.c_void_p)]

    def __init__(self, path):
        import ctypes
        self.c = ctypes
        self.lib = ctypes.CDLL("liblmdb.so.0")
        self.env = ctypes.c_void_p()
        self.check(self.lib.mdb_env_create(ctypes.byref(self.env)))
        self.check(self.lib.mdb_env_set_maxdbs(self.env, 16))
        self.check(self.lib.mdb_env_set_mapsize(self.env, ctypes.c_size_t(1 << 30)))
        os.makedirs(path, exist_ok=True)
        self.check(self.lib.mdb_env_open(self.env, path.encode(), 0, 0o644))

    def check(self, rc):
        if rc != 0:
            raise RuntimeError("lmdb error %d" % rc)

    def _txn(self, name, readonly):
        c = self.c
        txn = c.c_void_p()
        self.check(self.lib.mdb_txn_begin(self.env, None, 0x20000 if readonly else 0, c.byref(txn)))
        dbi = c.c_uint()
        self.check(self.lib.mdb_dbi_open(txn, name.encode(), 0 if readonly else 0x40000, c.byref(dbi)))
        return txn, dbi

    def put(self, name, key, value):
        c = self.c
        txn, dbi = self._txn(name, False)
        kb, vb = c.create_string_buffer(key, len(key)), c.create_string_buffer(value, len(value))
        k = self.Val(len(key), c.cast(kb, c.c_void_p))
        v = self.Val(len(value), c.cast(vb, c.c_void_p))
        self.check(self.lib.mdb_put(txn, dbi, c.byref(k), c.byref(v), 0))
        self.check(self.lib.mdb_txn_commit(txn))

    def last(self, name):
        c = self.c
        txn, dbi = self._txn(name, True)
        cur = c.c_void_p()
        self.check(self.lib.mdb_cursor_open(txn, dbi, c.byref(cur)))
        k, v = self.Val(), self.Val()
        self.check(self.lib.mdb_cursor_get(cur, c.byref(k), c.byref(v), 6))  # MDB_LAST
        out = (c.string_at(k.mv_data, k.mv_size), c.string_at(v.mv_data, v.mv_size))
        self.lib.mdb_cursor_close(cur)
        self.lib.mdb_txn_abort(txn)
        return out

    def close(self):
        self.lib.mdb_env_close(self.env)


REV_A = {"city": "110000", "name": "Beijing", "source": "Notice A",
         "deadline": {"day": 25},
         "periods": [{"from": 202001, "base_min": 0, "base_max": 10000000,
                      "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000}}}]}
REV_B = dict(REV_A, source="Notice B (correction)",
             periods=[{"from": 202001, "base_min": 0, "base_max": 10000000,
                       "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 100000}}}])
P1 = make_id("11010519900101001")
P2 = make_id("11010519910101001")
# One flexible pension slot, 202205, base 600000, unpaid; as of 20240310 (SPEC Appendix B, example 1).
P_SLOTS = [slot(202205, "110000", "pension", "flexible", 600000)]
# Revision 1 (flexible 200000 ppm), Appendix B example 1: due rh(600000 x 200000 / 10^6) = 120000;
#   interest 4284 + 4934 + 846 = 10064; total 130064.
# Revision 2 (flexible 100000 ppm): due rh(600000 x 100000 / 10^6) = 60000;
#   2022, 7 months: rh(60000 x 61200 x 7 / 12*10^6) = rh(2142.0) = 2142 -> 62142;
#   2023: rh(62142 x 39700 / 10^6) = rh(2467.04) = 2467 -> 64609;
#   2024, 3 months: rh(64609 x 26200 x 3 / 12*10^6) = rh(423.19) = 423 -> 65032; interest 5032.
EXPECT_1 = {"principal": 120000, "interest": 10064, "total": 130064}
EXPECT_2 = {"principal": 60000, "interest": 5032, "total": 65032}


def money(r):
    return {k: r[k] for k in ("principal", "interest", "total")}


class TestPolicyRevisions(StoreTest):
    def now_ms(self):
        return int(time.time() * 1000)

    def test_revisions_pinning_history(self):
        e = self.open_eval(self.path("store"))
        t0 = self.now_ms()
        self.assertEqual(e.ok("policy.put", {"policy": REV_A}), {"ok": True, "revision": 1, "warnings": []})
        self.assertEqual(e.ok("policy.put", {"policy": REV_B}), {"ok": True, "revision": 2, "warnings": []})
        t1 = self.now_ms()
        audit = e.ok("server.stats", {})["store"]["audit_records"]
        # equal to the latest once defaults are filled in: nothing stored, the latest's number
        b_full = e.ok("policy.get", {"city": "110000"})["policy"]
        self.assertEqual(e.ok("policy.put", {"policy": b_full}), {"ok": True, "revision": 2, "warnings": []})
        self.assertEqual(e.ok("policy.put", {"policy": REV_B}), {"ok": True, "revision": 2, "warnings": []})
        self.assertEqual(e.ok("server.stats", {})["store"]["audit_records"], audit, "an equal put writes nothing")

        e.ok("person.put", {"persons": [{"id": P1, "slots": P_SLOTS}, {"id": P2, "slots": P_SLOTS}]})
        q = {"as_of": 20240310, "ids": [P1]}
        r = e.ok("arrears.compute", q)
        self.assertEqual((money(r["results"][0]), r["policies"]), (EXPECT_2, {"110000": 2}))
        r = e.ok("arrears.compute", dict(q, policy_revisions={"110000": 1}))
        self.assertEqual((money(r["results"][0]), r["policies"]), (EXPECT_1, {"110000": 1}))
        r = e.ok("arrears.compute", dict(q, policy_revisions={"110000": 2}))
        self.assertEqual((money(r["results"][0]), r["policies"]), (EXPECT_2, {"110000": 2}))
        # inline persons and a scan pin the same way
        r = e.ok("arrears.compute", {"as_of": 20240310, "persons": [{"id": P1, "slots": P_SLOTS}],
                                     "policy_revisions": {"110000": 1}})
        self.assertEqual((money(r["results"][0]), r["policies"]), (EXPECT_1, {"110000": 1}))
        r = e.ok("arrears.compute", {"as_of": 20240310, "scan": {"after": None, "limit": 10},
                                     "policy_revisions": {"110000": 1}})
        self.assertEqual([money(x) for x in r["results"]], [EXPECT_1, EXPECT_1])
        self.assertEqual(r["policies"], {"110000": 1})
        # a person whose only slot city has no policy read nothing; the error still answers
        r = e.ok("years.compute", {"as_of": 20240310, "persons": [
            {"id": P1, "slots": [slot(202205, "310000", "pension", "flexible", 600000)]}]})
        self.assertEqual((strip_error(r["results"][0]["error"]), r["policies"]), (error_of(4, "310000"), {}))
        # housing.check reads its city's policy too
        r = e.ok("housing.check", {"as_of": 20240310, "city": "110000", "persons": [], "policy_revisions":
                                   {"110000": 1}})
        self.assertEqual(r, {"results": [], "policies": {"110000": 1}})

        # errors: request-level, after the other parameters
        for pins, want in (({"110000": 3}, error_of(4, "policy_revisions.110000")),
                           ({"120000": 1}, error_of(4, "policy_revisions.120000")),
                           ({"110000": 0}, error_of(3, "policy_revisions.110000")),
                           ({"110000": -1}, error_of(3, "policy_revisions.110000")),
                           ({"110000": "1"}, error_of(3, "policy_revisions.110000")),
                           ({"11000": 1}, error_of(3, "policy_revisions.11000")),
                           ([["110000", 1]], error_of(3, "policy_revisions")),
                           ({"%06d" % (100000 + i): 1 for i in range(65)}, error_of(6, "policy_revisions"))):
            self.assertEqual(strip_error(e.err("arrears.compute", dict(q, policy_revisions=pins))), want, pins)
        self.assertEqual(strip_error(e.err("arrears.compute", {"as_of": 20240230, "ids": [P1],
                                                               "policy_revisions": {"110000": 9}})),
                         error_of(3, "as_of"), "the other parameters first")
        # 64 cities is the bound itself: each one checked (the first unknown is not_found)
        pins = {"%06d" % (100000 + i): 1 for i in range(63)}
        pins["110000"] = 1
        self.assertEqual(strip_error(e.err("arrears.compute", dict(q, policy_revisions=pins))),
                         error_of(4, "policy_revisions.100000"))

        # policy.get: latest or named; unknown revision not_found at revision
        g = e.ok("policy.get", {"city": "110000", "revision": 1})
        self.assertEqual((g["revision"], g["policy"]["source"]), (1, "Notice A"))
        self.assertEqual(g["policy"]["periods"][0]["rates"]["pension"]["flexible"], 200000)
        self.assertTrue(t0 <= g["stored_at"] <= t1, (t0, g["stored_at"], t1))
        g = e.ok("policy.get", {"city": "110000"})
        self.assertEqual((g["revision"], g["policy"]["source"]), (2, "Notice B (correction)"))
        self.assertEqual(strip_error(e.err("policy.get", {"city": "110000", "revision": 3})), error_of(4, "revision"))
        self.assertEqual(strip_error(e.err("policy.get", {"city": "110000", "revision": 0})), error_of(3, "revision"))
        self.assertEqual(strip_error(e.err("policy.get", {"city": "120000", "revision": 1})), error_of(4, "120000"))

        # policy.history: ascending, with name and source
        h = e.ok("policy.history", {"city": "110000"})["revisions"]
        self.assertEqual([(x["revision"], x["name"], x["source"]) for x in h],
                         [(1, "Beijing", "Notice A"), (2, "Beijing", "Notice B (correction)")])
        self.assertTrue(t0 <= h[0]["stored_at"] <= h[1]["stored_at"] <= t1)
        self.assertEqual(strip_error(e.err("policy.history", {"city": "120000"})), error_of(4, "120000"))
        self.assertEqual(strip_error(e.err("policy.history", {"city": "12000"})), error_of(3, "city"))

        # source: a string of at most 1024 bytes
        self.assertEqual(strip_error(e.err("policy.put", {"policy": dict(REV_A, source="s" * 1025)})),
                         error_of(3, "policy.source"))
        self.assertEqual(strip_error(e.err("policy.put", {"policy": dict(REV_A, source=7)})),
                         error_of(3, "policy.source"))

        # withhold.run with policy_revisions: revision 1 owes 120000 for 202205, revision 2 60000
        wh = {"idem": "wh-rev-1", "month": 202205, "date": 20220531, "accounts": [{"id": P1, "balance": 200000}],
              "policy_revisions": {"110000": 1}}
        self.assertEqual(e.ok("withhold.run", wh),
                         {"results": [{"id": P1, "paid": [{"type": "pension", "city": "110000", "amount": 120000}],
                                       "interrupted": [], "balance": 80000}], "policies": {"110000": 1}})
        self.assertEqual(e.ok("withhold.run", {"idem": "wh-rev-2", "month": 202205, "date": 20220531,
                                               "accounts": [{"id": P2, "balance": 200000}]}),
                         {"results": [{"id": P2, "paid": [{"type": "pension", "city": "110000", "amount": 60000}],
                                       "interrupted": [], "balance": 140000}], "policies": {"110000": 2}})
        # an unknown revision is a request-level error, not recorded under the key
        self.assertEqual(strip_error(e.err("withhold.run", dict(wh, idem="wh-rev-3", policy_revisions={"110000": 5}))),
                         error_of(4, "policy_revisions.110000"))
        self.assertEqual(e.ok("withhold.run", dict(wh, idem="wh-rev-3", accounts=[]))["results"], [])
        e.close()

        # the audit record of a policy.put names the city and the revision it stored
        db = Lmdb(self.path("store"))
        try:
            e2 = self.open_eval(self.path("store"))
            self.assertEqual(e2.ok("policy.put", {"policy": dict(REV_A, source="Notice C")})["revision"], 3)
            e2.close()
            _key, rec = db.last("audit")
        finally:
            db.close()
        rec = msgpack.unpackb(rec, raw=False)
        self.assertEqual((rec["method"], rec["city"], rec["revision"]), ("policy.put", "110000", 3))

    def test_warnings_for_ignored_keys(self):
        e = self.open_eval(self.path("store"))
        doc = copy.deepcopy(REV_A)
        doc["periods"][0]["rates"]["pension"] = {"employer": 160000, "individual": 80000, "flexibel": 200000}
        doc["sourc"] = "typo"
        doc["housing"] = {"window": 12}
        self.assertEqual(e.ok("policy.put", {"policy": doc}), {"ok": True, "revision": 1, "warnings": [
            "policy.sourc: unknown key, ignored",
            "policy.periods[0].rates.pension.flexibel: unknown key, ignored",
            "policy.housing.window: unknown key, ignored"]})
        # what the warning is about: the misspelt rate is 0
        got = e.ok("policy.get", {"city": "110000"})["policy"]
        self.assertEqual((got["periods"][0]["rates"]["pension"]["flexible"], got["source"]), (0, "Notice A"))
        many = dict(REV_A, **{"k%02d" % i: i for i in range(20)})
        w = e.ok("policy.put", {"policy": many})["warnings"]
        self.assertEqual(w, ["policy.k%02d: unknown key, ignored" % i for i in range(16)] + ["4 more keys ignored"])
        e.close()

    def test_memory_revisions_without_store(self):
        e = self.open_eval(None)
        self.assertEqual(e.ok("policy.put", {"policy": REV_A})["revision"], 1)
        self.assertEqual(e.ok("policy.put", {"policy": REV_A})["revision"], 1)
        self.assertEqual(e.ok("policy.put", {"policy": REV_B})["revision"], 2)
        p = {"as_of": 20240310, "persons": [{"id": P1, "slots": P_SLOTS}]}
        r = e.ok("arrears.compute", p)
        self.assertEqual((money(r["results"][0]), r["policies"]), (EXPECT_2, {"110000": 2}))
        r = e.ok("arrears.compute", dict(p, policy_revisions={"110000": 1}))
        self.assertEqual((money(r["results"][0]), r["policies"]), (EXPECT_1, {"110000": 1}))
        self.assertEqual(len(e.ok("policy.history", {"city": "110000"})["revisions"]), 2)
        # the bound: 1024 revisions in all, then too_large
        for k in range(3, 1025):
            self.assertEqual(e.ok("policy.put", {"policy": dict(REV_A, source="n%d" % k)})["revision"], k)
        self.assertEqual(strip_error(e.err("policy.put", {"policy": dict(REV_A, source="one more")})),
                         error_of(6, "policy.city"))
        e.close()

    def test_migration_of_a_store_without_revisions(self):
        data = self.path("old")
        # The layout before revisions: `policies` holds city (BE32) -> the document, no `source`.
        old_doc = {"city": "110000", "name": "Old", "deadline": {"day": 25, "month_offset": 0},
                   "periods": REV_A["periods"]}
        db = Lmdb(data)
        db.put("policies", struct.pack(">I", 110000), msgpack.packb(old_doc))
        db.close()
        t0 = self.now_ms()
        e = self.open_eval(data)
        h = e.ok("policy.history", {"city": "110000"})["revisions"]
        t1 = self.now_ms()
        self.assertEqual([(x["revision"], x["name"], x["source"]) for x in h], [(1, "Old", "")])
        self.assertTrue(t0 <= h[0]["stored_at"] <= t1, "stored when migrated")
        r = e.ok("arrears.compute", {"as_of": 20240310, "persons": [{"id": P1, "slots": P_SLOTS}]})
        self.assertEqual((money(r["results"][0]), r["policies"]), (EXPECT_1, {"110000": 1}))
        # the same document again (defaults filled): no new revision
        self.assertEqual(e.ok("policy.put", {"policy": old_doc})["revision"], 1)
        e.close()
        e = self.open_eval(data)  # a second open migrates nothing more
        self.assertEqual(len(e.ok("policy.history", {"city": "110000"})["revisions"]), 1)
        e.close()
        # an older program replaced the latest document meanwhile: it becomes the next revision
        db = Lmdb(data)
        db.put("policies", struct.pack(">I", 110000), msgpack.packb(dict(old_doc, name="Changed")))
        db.close()
        e = self.open_eval(data)
        h = e.ok("policy.history", {"city": "110000"})["revisions"]
        self.assertEqual([(x["revision"], x["name"]) for x in h], [(1, "Old"), (2, "Changed")])
        self.assertEqual(e.ok("policy.get", {"city": "110000"})["revision"], 2)
        e.close()


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
