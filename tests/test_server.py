#!/usr/bin/python3
"""End-to-end tests of the server, `arrearsd`, over TCP (SPEC §5).

    /usr/bin/python3 tests/test_server.py --arrearsd build/arrearsd --arrears build/arrears [TestName ...]

Every test starts its own server on an ephemeral port (`--listen
127.0.0.1:0`, the port read from the `event=listen` log line) on its own
temporary store, or on a class-level store that is only read, and stops it
with SIGTERM. Expected values come from the spec's worked examples and hand
arithmetic written next to them, or from the offline evaluator
(`arrears eval --data DIR`, the oracle) run on the same store with the same
requests: the decoded answers must be identical. Nothing expected is copied
from the server's own output.

Covered:
- every method of §5.1 on stored persons (`ids`, `scan`) and on inline
  `persons`, writes done through the server and compared with the oracle
  doing the same writes on an identical store, reads compared with the
  oracle on the very store the server wrote; Appendix B's worked examples;
- the error codes that can be provoked: 1 malformed (then the connection is
  closed), 2, 3, 4, 5 (idempotency conflict), 6 (--max-request, then closed;
  --max-persons), 7 (--max-connections: a connection beyond the limit gets
  `overloaded` and is closed), 8 (--token-file, until `auth`; ping always
  answers), 9 (internal: a store that may not grow, --map-max, is full);
- notifications are executed and never answered;
- 1,000 pipelined requests on one connection, matched by msgid (answers may
  come in any order); a request sent one byte at a time; many requests in
  one write; 1,000 concurrent connections each doing a ping;
- no stall: pings on one connection keep answering while another runs bulk
  computations over 5,000-20,000 persons (p99 < 50 ms asserted; the measured
  figures are printed);
- responses of many megabytes arrive complete;
- server.stats counts connections and requests and errors by method;
- graceful shutdown: a write sent just before SIGTERM is answered, the
  server exits 0 and logs event=shutdown, and the write is there after a
  restart; --idle-timeout closes an idle connection;
- no full person id appears in the server's log.

Prints `N passed, M failed` last and exits 1 on any failure.
"""

import argparse
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
ARREARSD = os.path.join(HERE, "..", "build", "arrearsd")
ARREARS = os.path.join(HERE, "..", "build", "arrears")
WALK = os.path.join(HERE, "..", "build", "walk")  # bench/walk.c: make bench-city's walker
TIMEOUT_S = 60
AS_OF = 20251110  # the generated city's "today"
TYPES = ("pension", "medical", "unemployment", "injury", "maternity")
BIG_PERSONS = 20000  # the class-level store read by the bulk tests

ERROR_NAMES = {1: "malformed", 2: "unknown_method", 3: "invalid_argument", 4: "not_found", 5: "conflict",
               6: "too_large", 7: "overloaded", 8: "unauthorized", 9: "internal"}


# ====================================================================== helpers

def make_id(first17):
    """18-character resident id with its GB 11643 check character (SPEC §2.1)."""
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    s = sum(int(c) * w[i] for i, c in enumerate(first17))
    return first17 + "10X98765432"[s % 11]


def req(msgid, method, params):
    return [0, msgid, method, [params]]


def packb(msg):
    return msgpack.packb(msg, use_bin_type=True)


def unpacker():
    return msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=1 << 30)


def unpack_all(data):
    u = unpacker()
    u.feed(data)
    return list(u)


def month_add(m, k):
    i = (m // 100) * 12 + (m % 100 - 1) + k
    return (i // 12) * 100 + i % 12 + 1


def slot(month, type_, category, base, paid=0, paid_date=0, city="110000", deemed=False):
    return {"month": month, "city": city, "type": type_, "category": category, "base": base,
            "paid": paid, "paid_date": paid_date, "deemed": deemed}


def first_difference(got, want, path="answer"):
    """Where two decoded values first differ, briefly (unittest's own diff of
    multi-megabyte values would take minutes)."""
    if type(got) != type(want):
        return "%s: got %.200r, want %.200r" % (path, got, want)
    if isinstance(got, dict):
        for k in list(want) + [k for k in got if k not in want]:
            if k not in got or k not in want:
                return "%s: key %r only in %s" % (path, k, "the oracle's" if k in want else "the server's")
            d = first_difference(got[k], want[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if isinstance(got, (list, tuple)):
        for k, (g, w) in enumerate(zip(got, want)):
            d = first_difference(g, w, "%s[%d]" % (path, k))
            if d:
                return d
        if len(got) != len(want):
            return "%s: %d elements, want %d" % (path, len(got), len(want))
        return None
    return None if got == want else "%s: got %.200r, want %.200r" % (path, got, want)


def slot_key(s):
    return (s["month"], s["city"], TYPES.index(s["type"]))


def person_norm(answer):
    """A person.get answer with its slots in one order (the spec fixes none)."""
    p = dict(answer["person"])
    p["slots"] = sorted(p["slots"], key=slot_key)
    return {"person": p}


def err_part(e):
    """An error's comparable part (messages are free text)."""
    return {"code": e.get("code"), "name": e.get("name"), "at": e.get("at")}


def error_of(code, at=None):
    return {"code": code, "name": ERROR_NAMES[code], "at": at}


def eval_run(msgs, data=None):
    """The oracle: all msgs through one `arrears eval` process, its responses in order."""
    args = [ARREARS, "eval"] + (["--data", data] if data else [])
    proc = subprocess.run(args, input=b"".join(packb(m) for m in msgs), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise AssertionError("eval exited %d: %s" % (proc.returncode, proc.stderr.decode(errors="replace")))
    out = unpack_all(proc.stdout)
    assert len(out) == sum(1 for m in msgs if m[0] == 0), "eval answered %d of %d" % (len(out), len(msgs))
    return out


def gen_store(data, persons, seed):
    subprocess.run([ARREARS, "gen", "--persons", str(persons), "--seed", str(seed), "--city", "110000",
                    "--data", data], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=TIMEOUT_S)


def stored_ids(data):
    """Every stored id, ascending, as the oracle's scan lists them."""
    r = eval_run([req(1, "medical.status", {"as_of": AS_OF, "scan": {"after": None, "limit": 100000}})], data)[0]
    assert r[2] is None, r[2]
    return [x["id"] for x in r[3]["results"]]


class Server:
    """One arrearsd process on an ephemeral port; its stderr goes to a file."""

    def __init__(self, data, workdir, extra=()):
        fd, self.log_path = tempfile.mkstemp(prefix="arrearsd-", suffix=".log", dir=workdir)
        self.logf = os.fdopen(fd, "wb")
        self.proc = subprocess.Popen([ARREARSD, "--listen", "127.0.0.1:0", "--data", data] + list(extra),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.logf)
        deadline = time.monotonic() + 15
        while True:
            m = re.search(r"event=listen addr=127\.0\.0\.1 port=(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                raise AssertionError("arrearsd exited %d before listening:\n%s" % (self.proc.returncode, self.log()))
            if time.monotonic() > deadline:
                raise AssertionError("arrearsd did not log event=listen:\n" + self.log())
            time.sleep(0.005)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def connect(self, **kw):
        return Client(self.port, **kw)

    def stop(self, timeout=30):
        """SIGTERM, then its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.logf.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT_S)
        if not self.logf.closed:
            self.logf.close()


class Client:
    """One TCP connection speaking msgpack-RPC."""

    def __init__(self, port, nodelay=True, timeout=TIMEOUT_S):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.unp = unpacker()
        self.pending = []  # decoded, not yet returned
        self.eof = False
        self.msgid = 0
        self.received = 0  # bytes

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, msg):
        self.sock.sendall(packb(msg))

    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return
        self.received += len(data)
        self.unp.feed(data)
        self.pending.extend(self.unp)

    def next(self, timeout=TIMEOUT_S):
        """The next message; None at EOF. Raises socket.timeout."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no message within %.1f s" % timeout)
            self._fill(left)
        return self.pending.pop(0)

    def read_n(self, n, timeout=TIMEOUT_S):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            m = self.next(max(0.001, deadline - time.monotonic()))
            if m is None:
                raise AssertionError("EOF after %d of %d answers" % (len(out), n))
            out.append(m)
        return out

    def read_to_eof(self, timeout=TIMEOUT_S):
        """Every message until the server closes; raises socket.timeout if it does not."""
        out = []
        while True:
            m = self.next(timeout)
            if m is None:
                return out
            out.append(m)

    def quiet(self, seconds):
        """True when nothing at all arrives for `seconds`."""
        try:
            m = self.next(seconds)
        except socket.timeout:
            return True
        if m is not None:
            self.pending.insert(0, m)
        return False

    def call(self, method, params, msgid=None):
        """The whole response [1, msgid, error, result] of one request."""
        if msgid is None:
            self.msgid += 1
            msgid = self.msgid
        self.send(req(msgid, method, params))
        r = self.next()
        assert r is not None, "connection closed instead of answering %s" % method
        assert r[0] == 1 and r[1] == msgid, "response %r to msgid %d" % (r[:2], msgid)
        return r

    def ok(self, method, params):
        r = self.call(method, params)
        assert r[2] is None and r[3] is not None, "%s failed: %r" % (method, r[2])
        return r[3]

    def err(self, method, params):
        r = self.call(method, params)
        assert r[2] is not None and r[3] is None, "%s: expected an error, got %r" % (method, r)
        return r[2]


class ServerTest(unittest.TestCase):
    maxDiff = 3000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="arrears-server-")
        self.servers = []
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        for s in self.servers:
            s.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def start(self, data=None, extra=()):
        if data is None:
            data = self.path("store")
        s = Server(data, self.tmp, extra)
        self.servers.append(s)
        return s

    def connect(self, server, **kw):
        c = server.connect(**kw)
        self.clients.append(c)
        return c

    def stop(self, server):
        """SIGTERM: the server exits 0 and says so in its log."""
        rc = server.stop()
        log = server.log()
        self.assertEqual(rc, 0, "arrearsd exit status after SIGTERM; log:\n" + log[-3000:])
        self.assertIn("event=shutdown", log)
        return log

    def assertSameAnswers(self, got, want, what=""):
        """Decoded [error, result] of responses, by position (msgids checked too)."""
        self.assertEqual(len(got), len(want), what)
        for k, (g, w) in enumerate(zip(got, want)):
            self.assertEqual(g[1], w[1], "%s #%d: msgid" % (what, k))
            self.assertSame(g[2:], w[2:], "%s #%d (msgid %d)" % (what, k, w[1]))

    def assertSame(self, got, want, what=""):
        if got != want:
            self.fail("%s: %s" % (what, first_difference(got, want)))


# The class-level store read by the bulk tests: BIG_PERSONS generated persons.
BIG = {}


def big_store():
    if "data" not in BIG:
        root = tempfile.mkdtemp(prefix="arrears-server-big-")
        BIG["root"] = root
        BIG["data"] = os.path.join(root, "store")
        gen_store(BIG["data"], BIG_PERSONS, 1)
        BIG["ids"] = stored_ids(BIG["data"])
        assert len(BIG["ids"]) == BIG_PERSONS, len(BIG["ids"])
    return BIG["data"], BIG["ids"]


def tearDownModule():
    if "root" in BIG:
        shutil.rmtree(BIG["root"], ignore_errors=True)


# A hand-written policy (the worked examples of Appendix B).
POLICY_A = {
    "city": "110000", "name": "Worked examples",
    "deadline": {"day": 25, "month_offset": 0},
    "periods": [{"from": 202001, "base_min": 500000, "base_max": 3000000,
                 "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000},
                           "medical": {"employer": 98000, "individual": 20000, "flexible": 80000}}}],
    "interest": {"rates": [[2022, 61200], [2023, 39700], [2024, 26200]]},
}


def policy_housing(city, grace_days):
    p = dict(POLICY_A, city=city, name="Housing %s" % city)
    p["housing"] = {"types": ["pension"], "window_months": 12, "required_months": 12, "end_offset_months": 1,
                    "backpay_counts": False, "grace_days": grace_days}
    return p


MAN = make_id("11010519700615001")      # male (17th char 1), born 1970-06
WOMAN = make_id("11010519800301002")    # female (17th char 2), born 1980-03


def synthetic_persons(n, months, first17_prefix="1101051980", start=0):
    """n valid inline persons with pension+medical flexible slots from 202301 on,
    some unpaid (so there is something owed)."""
    out = []
    for i in range(start, start + n):
        day = 1 + i % 28
        pid = make_id("%s01%02d%03d" % (first17_prefix, day, i % 1000))
        slots = []
        for k in range(months):
            m = month_add(202301, k)
            for t in ("pension", "medical"):
                paid = (i + k) % 5 != 0
                due = 120000 if t == "pension" else 48000
                slots.append(slot(m, t, "flexible", 600000, due if paid else 0, m * 100 + 20 if paid else 0))
        out.append({"id": pid, "slots": slots})
    return out


# ====================================================================== methods

class TestWorkedExamples(ServerTest):
    """Appendix B through the server, expected values from the spec's own arithmetic."""

    def test_worked_examples(self):
        s = self.start()
        c = self.connect(s)
        self.assertEqual(c.ok("policy.put", {"policy": POLICY_A}), {"ok": True, "revision": 1, "warnings": []})

        # policy.get: the document with every default of §3.3 filled in
        got = c.ok("policy.get", {"city": "110000"})["policy"]
        self.assertEqual(got["city"], "110000")
        self.assertEqual(got["name"], "Worked examples")
        self.assertEqual(got["deadline"], {"day": 25, "month_offset": 0})
        self.assertEqual(got["interest"], {"types": ["pension"], "categories": ["flexible"], "default_ppm": 25000,
                                           "rates": [[2022, 61200], [2023, 39700], [2024, 26200]]})
        self.assertEqual(got["late_fee"], {"daily_ppm": 500, "categories": ["employee"], "cap_at_principal": False})
        self.assertEqual(got["backpay"], {"direct_max_months": 3, "verify_max_months": 60, "legacy_before": 201107,
                                          "flexible_window_months": 0})
        self.assertEqual(got["housing"], {"types": ["pension"], "window_months": 60, "required_months": 60,
                                          "end_offset_months": 1, "backpay_counts": False, "grace_days": 0})
        self.assertEqual(got["withhold"], {"order": ["pension", "medical", "unemployment"], "mode": "stop"})
        self.assertEqual(len(got["periods"]), 1)
        self.assertEqual(got["periods"][0]["rates"]["pension"], {"employer": 160000, "individual": 80000,
                                                                 "flexible": 200000})

        # 1. flexible pension 202205, base 600000, unpaid, as of 20240310:
        # due 120000; interest 4284 + 4934 + 846 = 10064; verify (age 22)
        r = c.ok("arrears.compute", {"as_of": 20240310, "detail": True, "persons": [
            {"id": MAN, "slots": [slot(202205, "pension", "flexible", 600000)]}]})["results"][0]
        self.assertEqual({k: r[k] for k in ("id", "months_owed", "principal", "interest", "late_fee", "total",
                                            "pending", "expired_months", "expired_principal", "first_month",
                                            "last_month", "by_type", "tiers")},
                         {"id": MAN, "months_owed": 1, "principal": 120000, "interest": 10064, "late_fee": 0,
                          "total": 130064, "pending": 0, "expired_months": 0, "expired_principal": 0,
                          "first_month": 202205, "last_month": 202205,
                          "by_type": {"pension": {"months": 1, "principal": 120000, "interest": 10064,
                                                  "late_fee": 0}},
                          "tiers": {"direct": 0, "verify": 1, "approval": 0, "legacy": 0}})
        self.assertEqual(len(r["items"]), 1)
        item = r["items"][0]
        self.assertEqual({k: item[k] for k in ("month", "city", "type", "category", "due", "paid", "owed",
                                               "owed_employer", "owed_individual", "interest", "late_fee",
                                               "deadline", "tier", "expired")},
                         {"month": 202205, "city": "110000", "type": "pension", "category": "flexible",
                          "due": 120000, "paid": 0, "owed": 120000, "owed_employer": 0, "owed_individual": 120000,
                          "interest": 10064, "late_fee": 0, "deadline": 20220525, "tier": "verify",
                          "expired": False})

        # 2. employee pension 202303, base 800000, paid 50000 on 20230410, as of 20230615:
        # due 128000 + 64000; owed 142000 (individual 14000, employer 128000); 82 days -> fee 5822
        r = c.ok("arrears.compute", {"as_of": 20230615, "detail": True, "persons": [
            {"id": MAN, "slots": [slot(202303, "pension", "employee", 800000, 50000, 20230410)]}]})["results"][0]
        self.assertEqual((r["principal"], r["interest"], r["late_fee"], r["total"], r["tiers"]["direct"]),
                         (142000, 0, 5822, 147822, 1))
        item = r["items"][0]
        self.assertEqual((item["due"], item["paid"], item["owed"], item["owed_individual"], item["owed_employer"],
                          item["deadline"], item["late_fee"], item["tier"]),
                         (192000, 50000, 142000, 14000, 128000, 20230325, 5822, "direct"))

        # 3. man born 1970-06 (m60), 60 months counted as of 20250115
        sixty = [slot(month_add(202001, k), "pension", "flexible", 600000, 120000, month_add(202001, k) * 100 + 20)
                 for k in range(60)]
        r = c.ok("retirement.check", {"as_of": 20250115, "persons": [{"id": MAN, "slots": sixty}]})["results"][0]
        self.assertEqual(r, {"id": MAN, "class": "m60", "birth_month": 197006, "original_month": 203006,
                             "statutory_month": 203111, "retire_month": 203111, "required_months": 192,
                             "counted_months": 60, "shortfall": 132, "payable_arrears_months": 0,
                             "eligible_now": False, "eligible_from": 203601})

        # 4. woman born 1980-03, f50: statutory 203211, required 198; elect 203003 -> 186; 203002 refused
        woman = {"id": WOMAN, "retire_class": "f50", "slots": []}
        res = c.ok("retirement.check", {"as_of": 20250115, "persons": [woman]})["results"][0]
        self.assertEqual((res["class"], res["birth_month"], res["original_month"], res["statutory_month"],
                          res["retire_month"], res["required_months"], res["shortfall"], res["eligible_from"]),
                         ("f50", 198003, 203003, 203211, 203211, 198, 198, 204107))  # 202501 + 198 months
        res = c.ok("retirement.check", {"as_of": 20250115, "elect_month": 203003, "persons": [woman]})["results"][0]
        self.assertEqual((res["retire_month"], res["required_months"], res["eligible_from"]),
                         (203003, 186, 204007))  # 202501 + 186 months
        res = c.ok("retirement.check", {"as_of": 20250115, "elect_month": 203511, "persons": [woman]})["results"][0]
        self.assertEqual((res["retire_month"], res["required_months"]), (203511, 216))  # 180 + 6 * 6
        res = c.ok("retirement.check", {"as_of": 20250115, "elect_month": 203002, "persons": [woman]})["results"][0]
        self.assertEqual(res["id"], WOMAN)
        self.assertEqual(err_part(res["error"]), error_of(3, "elect_month"))

        # 5. housing: window 12, required 12, offset 1; 202406 paid 20240815 (deadline 20240625)
        hs = [slot(month_add(202301, k), "pension", "flexible", 600000, 120000,
                   20240815 if month_add(202301, k) == 202406 else month_add(202301, k) * 100 + 20, city="120000")
              for k in range(25)]
        self.assertEqual(hs[-1]["month"], 202501)
        self.assertEqual(c.ok("policy.put", {"policy": policy_housing("120000", 0)}), {"ok": True, "revision": 1, "warnings": []})
        r = c.ok("housing.check", {"as_of": 20250110, "city": "120000", "persons": [{"id": MAN, "slots": hs}]})
        self.assertEqual(r["results"], [{"id": MAN, "city": "120000", "window_from": 202401, "window_to": 202412,
                                         "qualifying": 11, "required": 12, "eligible": False, "missing": [202406],
                                         "eligible_from": 202507}])
        self.assertEqual(c.ok("policy.put", {"policy": policy_housing("120000", 60)}), {"ok": True, "revision": 2, "warnings": []})
        r = c.ok("housing.check", {"as_of": 20250110, "city": "120000", "persons": [{"id": MAN, "slots": hs}]})
        self.assertEqual(r["results"], [{"id": MAN, "city": "120000", "window_from": 202401, "window_to": 202412,
                                         "qualifying": 12, "required": 12, "eligible": True, "missing": [],
                                         "eligible_from": 202501}])

        # 6. medical, stored: 202402..202406 flexible (due 48000), 202404 and 202406 unpaid
        med = [slot(m, "medical", "flexible", 600000, *((0, 0) if m in (202404, 202406) else (48000, m * 100 + 20)))
               for m in range(202402, 202407)]
        self.assertEqual(c.ok("person.put", {"persons": [{"id": MAN, "slots": med}]}),
                         {"results": [{"id": MAN, "ok": True}]})
        self.assertEqual(c.ok("medical.status", {"as_of": 20240610, "ids": [MAN]})["results"],
                         [{"id": MAN, "status": "suspended", "suspended_since": 202405, "resumes": None,
                           "arrears_months": 1}])
        paid = c.ok("payment.apply", {"idem": "ex6", "items": [
            {"id": MAN, "month": 202404, "city": "110000", "type": "medical", "amount": 48000, "date": 20240612}]})
        self.assertEqual(len(paid["results"]), 1)
        self.assertIs(paid["results"][0].get("ok"), True, paid)
        self.assertNotIn("error", paid["results"][0])
        self.assertEqual(c.ok("medical.status", {"as_of": 20240612, "ids": [MAN]})["results"],
                         [{"id": MAN, "status": "suspended", "suspended_since": 202405, "resumes": 20240613,
                           "arrears_months": 0}])
        self.assertEqual(c.ok("medical.status", {"as_of": 20240613, "ids": [MAN]})["results"],
                         [{"id": MAN, "status": "active", "suspended_since": None, "resumes": None,
                           "arrears_months": 0}])
        # as of a date before the payment, it does not count yet
        self.assertEqual(c.ok("medical.status", {"as_of": 20240610, "ids": [MAN]})["results"][0]["arrears_months"], 1)
        med[2] = slot(202404, "medical", "flexible", 600000, 48000, 20240612)
        self.assertEqual(person_norm(c.ok("person.get", {"id": MAN})), {"person": {"id": MAN, "slots": med}})
        self.stop(s)


class TestCityWalk(ServerTest):
    """make bench-city's walker (bench/walk.c) on a small city: split by id
    prefix over several connections, pages that end inside another
    connection's run, answers in parts; every person counted once, and the
    money summed over the walk is the oracle's."""

    PERSONS = 3000

    def test_walker_counts_every_person_once_and_sums_as_the_oracle(self):
        data = self.path("store")
        gen_store(data, self.PERSONS, 4)
        want = eval_run([req(1, "arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": 100000}})],
                        data)[0][3]["results"]
        self.assertEqual(len(want), self.PERSONS)
        self.assertFalse([r for r in want if "error" in r])
        server = self.start(data)
        out = subprocess.run([WALK, "--connect", "127.0.0.1:%d" % server.port, "--method", "arrears.compute",
                              "--connections", "3", "--page", "400", "--as-of", str(AS_OF), "--sum", "total",
                              "--expect", str(self.PERSONS)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=TIMEOUT_S)
        text = out.stdout.decode()
        self.assertEqual(out.returncode, 0, text)
        got = dict(kv.split("=", 1) for kv in text.split() if "=" in kv)
        self.assertEqual(int(got["persons"]), self.PERSONS, text)
        self.assertEqual(int(got["connections"]), 3, text)
        self.assertGreater(int(got["beyond"]), 0, "no run ended inside another's: the split is not tested")
        self.assertEqual(int(got["sum"]), sum(r["total"] for r in want), text)


class TestMethodsAgainstOracle(ServerTest):
    """Every method on a generated city: writes through the server and the same
    writes through the oracle on an identical store give identical answers;
    then reads through the server and through the oracle on the store the
    server wrote give identical answers."""

    PERSONS = 300

    def test_methods_against_oracle(self):
        a, b = self.path("a"), self.path("b")
        gen_store(a, self.PERSONS, 3)
        gen_store(b, self.PERSONS, 3)
        ids = stored_ids(a)
        self.assertEqual(len(ids), self.PERSONS)

        # the state before the writes, from the oracle: an arrears item to pay, a month to withhold
        pre = eval_run([req(1, "arrears.compute", {"as_of": AS_OF, "ids": ids, "detail": True})], a)[0][3]["results"]
        owing = [r for r in pre if "error" not in r and any(not it["expired"] for it in r["items"])]
        self.assertGreater(len(owing), 10, "the generated city owes nothing: nothing to pay")
        payee = owing[0]
        pay_item = [it for it in payee["items"] if not it["expired"]][0]
        payee_before = eval_run([req(1, "person.get", {"id": payee["id"]})], a)[0][3]["person"]
        month_w = 202510
        withheld = [r["id"] for r in owing if any(it["month"] == month_w for it in r["items"])][:4]
        self.assertGreater(len(withheld), 0)
        deleted = ids[5]
        stored_as_inline = [r[3]["person"] for r in eval_run([req(k, "person.get", {"id": i})
                                                              for k, i in enumerate(ids[40:46])], a)]
        self.assertNotIn(deleted, [payee["id"]] + withheld)

        new1 = {"id": make_id("44010619850315002"), "retire_class": "f50", "slots": [
            slot(202401, "pension", "flexible", 600000, city="440000"),
            slot(202402, "pension", "flexible", 600000, 120000, 20240220, city="440000"),
            slot(202401, "medical", "employee", 700000, 10000, 20240301, city="110000")]}
        new2 = {"id": make_id("11010119900101001"), "slots": [slot(202503, "pension", "employee", 800000)]}
        bad_id = new2["id"][:17] + ("0" if new2["id"][17] != "0" else "1")  # wrong check character
        put = {"persons": [new1, {"id": bad_id, "slots": []}, new2], "idem": "put-1"}
        unknown = make_id("11010119000101009")
        self.assertNotIn(unknown, ids)
        items = [{"id": payee["id"], "month": pay_item["month"], "city": pay_item["city"], "type": pay_item["type"],
                  "amount": pay_item["owed"], "date": AS_OF},
                 {"id": unknown, "month": 202401, "city": "110000", "type": "pension", "amount": 100, "date": AS_OF},
                 {"id": payee["id"], "month": 195001, "city": "110000", "type": "maternity", "amount": 100,
                  "date": AS_OF},
                 {"id": payee["id"], "month": 202401, "city": "110000", "type": "pension", "amount": 0,
                  "date": AS_OF}]
        writes = [
            req(1, "policy.put", {"policy": dict(POLICY_A, city="440000", name="Guangdong test")}),
            req(2, "person.put", put),
            req(3, "person.put", put),                                   # replayed
            req(4, "person.put", dict(put, persons=[new2])),             # conflict
            req(5, "person.delete", {"id": deleted, "idem": "del-1"}),
            req(6, "person.delete", {"id": deleted}),                    # not_found
            req(7, "payment.apply", {"idem": "pay-1", "items": items}),
            req(8, "payment.apply", {"idem": "pay-1", "items": items}),  # replayed
            req(9, "payment.apply", {"idem": "del-1", "items": items[:1]}),  # one namespace: conflict
            req(10, "withhold.run", {"idem": "wh-1", "month": month_w, "date": AS_OF, "accounts":
                                     [{"id": i, "balance": 150000} for i in withheld] +
                                     [{"id": unknown, "balance": 1}, {"id": new2["id"], "balance": 10 ** 7}]}),
            req(11, "withhold.run", {"month": month_w, "date": AS_OF, "accounts": []}),  # idem required
            req(12, "payment.apply", {"items": items[:1]}),                               # idem required
        ]
        s = self.start(a)
        c = self.connect(s)
        got_w = [c.call(m[2], m[3][0], msgid=m[1]) for m in writes]
        want_w = eval_run(writes, b)
        self.assertSameAnswers(got_w, want_w, "writes")
        # and by hand
        self.assertEqual(got_w[0][3], {"ok": True, "revision": 1, "warnings": []})  # 440000: its first policy
        self.assertEqual([(x["id"], x.get("ok")) for x in got_w[1][3]["results"]],
                         [(new1["id"], True), (bad_id, None), (new2["id"], True)])
        self.assertEqual(err_part(got_w[1][3]["results"][1]["error"]), error_of(3, "persons[1].id"))
        self.assertEqual(got_w[2][3], got_w[1][3])
        self.assertEqual(err_part(got_w[3][2]), error_of(5, "idem"))
        self.assertEqual(got_w[4][3], {"ok": True})
        self.assertEqual(err_part(got_w[5][2]), error_of(4, "id"))
        res = got_w[6][3]["results"]
        self.assertIs(res[0].get("ok"), True)
        self.assertEqual(err_part(res[1]["error"]), error_of(4, "items[1].id"))
        self.assertEqual(err_part(res[2]["error"]), error_of(4, "items[2]"))
        self.assertEqual(err_part(res[3]["error"]), error_of(3, "items[3].amount"))
        self.assertEqual(got_w[7][3], got_w[6][3])
        self.assertEqual(err_part(got_w[8][2]), error_of(5, "idem"))
        self.assertEqual(len(got_w[9][3]["results"]), len(withheld) + 2)
        self.assertEqual(err_part(got_w[10][2])["code"], 3)
        self.assertEqual(err_part(got_w[11][2])["code"], 3)

        # reads, after the writes
        inline = [new1, new2, {"id": MAN, "slots": [slot(202205, "pension", "flexible", 600000)]},
                  {"id": bad_id, "slots": []},
                  {"id": WOMAN, "slots": [slot(202401, "pension", "flexible", 600000, city="990000")]}]
        inline += stored_as_inline
        sel_ids = ids[:8] + [deleted, unknown, new1["id"], payee["id"], 12345] + withheld
        reads = [req(1, "ping", {}), req(2, "policy.get", {"city": "110000"}),
                 req(3, "policy.get", {"city": "310000"}), req(4, "policy.get", {"city": "440000"}),
                 req(5, "policy.get", {"city": "990000"}), req(6, "policy.get", {"city": "11000"}),
                 req(7, "person.get", {"id": new1["id"]}), req(8, "person.get", {"id": new2["id"]}),
                 req(9, "person.get", {"id": deleted}), req(10, "person.get", {"id": payee["id"]}),
                 req(11, "person.get", {"id": bad_id}), req(12, "nosuch.method", {}),
                 req(13, "auth", {"token": "no token is configured: any is accepted"})]
        methods = [("arrears.compute", {"detail": True}), ("arrears.compute", {}), ("years.compute", {}),
                   ("retirement.check", {}), ("retirement.check", {"elect_month": 203001}),
                   ("housing.check", {"city": "110000"}), ("housing.check", {"city": "310000"}),
                   ("housing.check", {"city": "440000"}), ("medical.status", {})]
        msgid = 100
        for method, extra in methods:
            for sel in ({"ids": sel_ids}, {"persons": inline}, {"scan": {"after": None, "limit": 40}},
                        {"scan": {"after": ids[250], "limit": 100}}, {"scan": {"after": ids[-1], "limit": 5}}):
                msgid += 1
                reads.append(req(msgid, method, dict(extra, as_of=AS_OF, **sel)))
        # request-level errors
        for params in ({"as_of": 20251332, "ids": ids[:1]}, {"as_of": AS_OF, "ids": ids[:1], "persons": []},
                       {"as_of": AS_OF}, {"as_of": AS_OF, "scan": {"after": None, "limit": 0}},
                       {"as_of": AS_OF, "scan": {"after": 5, "limit": 1}},
                       {"as_of": AS_OF, "ids": ids[:1], "detail": 1}):
            msgid += 1
            reads.append(req(msgid, "arrears.compute", params))
        msgid += 1
        reads.append(req(msgid, "housing.check", {"as_of": AS_OF, "city": "990000", "ids": ids[:1]}))
        got_r = [c.call(m[2], m[3][0], msgid=m[1]) for m in reads]
        c.close()
        self.stop(s)
        want_r = eval_run(reads, a)
        self.assertSameAnswers(got_r, want_r, "reads")

        # the writes by hand: what was put, deleted and paid
        self.assertEqual(person_norm(got_r[6][3]), person_norm({"person": new1}))
        self.assertEqual(person_norm(got_r[7][3]), person_norm({"person": new2}))
        self.assertEqual(err_part(got_r[8][2]), error_of(4, "id"))
        after = got_r[9][3]["person"]
        self.assertEqual(len(after["slots"]), len(payee_before["slots"]))
        for sb, sa in zip(sorted(payee_before["slots"], key=slot_key), sorted(after["slots"], key=slot_key)):
            key = (sb["month"], sb["city"], sb["type"])
            if key == (pay_item["month"], pay_item["city"], pay_item["type"]):
                self.assertEqual((sa["paid"], sa["paid_date"]),
                                 (sb["paid"] + pay_item["owed"], max(sb["paid_date"], AS_OF)))
            elif sb["month"] != month_w:  # withholding may have paid that month
                self.assertEqual(sa, sb)
        self.assertEqual(err_part(got_r[10][2]), error_of(3, "id"))
        self.assertEqual(err_part(got_r[11][2]), error_of(2))
        stored_now = sorted(set(ids) - {deleted} | {new1["id"], new2["id"]})
        scan_first = got_r[13 + 2][3]
        self.assertEqual([x["id"] for x in scan_first["results"]], stored_now[:40])
        self.assertEqual(scan_first["next"], stored_now[39])
        after_last = [i for i in stored_now if i > ids[-1]][:5]
        self.assertEqual([x["id"] for x in got_r[13 + 4][3]["results"]], after_last)
        self.assertEqual(got_r[13 + 4][3]["next"], after_last[-1] if len(after_last) == 5 else None)
        self.assertEqual(got_r[12][3], {"ok": True})
        arrears_ids = got_r[13][3]["results"]
        self.assertEqual(len(arrears_ids), len(sel_ids))
        self.assertEqual([x.get("id") for k, x in enumerate(arrears_ids) if k != 12],
                         [i for k, i in enumerate(sel_ids) if k != 12])
        self.assertEqual(err_part(arrears_ids[8]["error"]), error_of(4, "ids[8]"))
        self.assertEqual(err_part(arrears_ids[9]["error"]), error_of(4, "ids[9]"))
        self.assertEqual(err_part(arrears_ids[12]["error"]), error_of(3, "ids[12]"))
        # the paid slot is no longer in arrears
        self.assertFalse([it for it in arrears_ids[11]["items"]
                          if (it["month"], it["city"], it["type"]) ==
                          (pay_item["month"], pay_item["city"], pay_item["type"])])


# ====================================================================== errors

class TestErrors(ServerTest):

    def test_malformed_closes_connection(self):
        s = self.start()
        cases = [
            b"\xc1",                                                     # never used in msgpack
            packb([0, 1, "ping"]),                                      # three elements
            packb([0, "one", "ping", [{}]]),                            # msgid not an integer
            packb([0, 1, "ping", {"a": 1}]),                            # params not an array
            packb([1, 1, None, {}]),                                    # a response, not a request
            packb({"method": "ping"}),                                  # not an array
            packb([0, 2 ** 32, "ping", [{}]]),                          # msgid beyond uint32
        ]
        for k, bad in enumerate(cases):
            c = self.connect(s)
            c.send_raw(packb(req(7, "ping", {})) + bad + packb(req(8, "ping", {})))
            got = c.read_to_eof(timeout=10)
            self.assertEqual(len(got), 2, "case %d %r: %r" % (k, bad, got))
            self.assertEqual(got[0][:3], [1, 7, None])
            self.assertEqual(got[1][0], 1)
            self.assertIsNone(got[1][3])
            self.assertEqual(err_part(got[1][2])["code"], 1, got[1])
            self.assertEqual(got[1][2]["name"], "malformed")
        # the server goes on
        c = self.connect(s)
        self.assertEqual(c.ok("ping", {})["pong"], True)
        self.stop(s)

    def test_unknown_method(self):
        s = self.start()
        c = self.connect(s)
        r = c.call("no.such.method", {}, msgid=4242)
        self.assertEqual((r[1], err_part(r[2])["code"], r[2]["name"], r[3]), (4242, 2, "unknown_method", None))
        self.assertEqual(c.ok("ping", {})["pong"], True)  # still open
        self.stop(s)

    def test_invalid_argument_and_not_found(self):
        data, ids = big_store()
        s = self.start(data)
        c = self.connect(s)
        unknown = make_id("11010119000101009")
        msgs = [req(1, "arrears.compute", {"as_of": 20251332, "ids": ids[:1]}),
                req(2, "arrears.compute", {"as_of": AS_OF, "ids": ids[:1], "scan": {"after": None, "limit": 1}}),
                req(3, "arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": 100001}}),
                req(4, "years.compute", {"as_of": AS_OF, "persons": [
                    {"id": MAN, "slots": [slot(202401, "pension", "flexible", 600000, 0, 20240101)]},
                    {"id": "11010519700615001x", "slots": []},
                    {"id": MAN, "slots": [slot(202401, "pension", "flexible", 600000, city="990000")]}]}),
                req(5, "policy.get", {"city": "990000"}),
                req(6, "person.get", {"id": unknown}),
                req(7, "medical.status", {"as_of": AS_OF, "ids": [ids[0], unknown]}),
                req(8, "housing.check", {"as_of": AS_OF, "city": "990000", "ids": ids[:1]})]
        got = [c.call(m[2], m[3][0], msgid=m[1]) for m in msgs]
        self.assertSameAnswers(got, eval_run(msgs, data), "errors")
        # and by Appendix A
        self.assertEqual(err_part(got[0][2]), error_of(3, "as_of"))
        self.assertEqual(err_part(got[1][2]), error_of(3, "persons"))
        self.assertEqual(err_part(got[2][2])["code"] in (3, 6), True)
        res = got[3][3]["results"]
        self.assertEqual(err_part(res[0]["error"]), error_of(3, "persons[0].slots[0].paid_date"))
        self.assertEqual(err_part(res[1]["error"]), error_of(3, "persons[1].id"))
        self.assertEqual(err_part(res[2]["error"]), error_of(4, "990000"))
        self.assertEqual(err_part(got[4][2]), error_of(4, "990000"))
        self.assertEqual(err_part(got[5][2]), error_of(4, "id"))
        self.assertNotIn("error", got[6][3]["results"][0])
        self.assertEqual(got[6][3]["results"][1]["id"], unknown)
        self.assertEqual(err_part(got[6][3]["results"][1]["error"]), error_of(4, "ids[1]"))
        self.assertEqual(err_part(got[7][2]), error_of(4, "990000"))
        self.stop(s)

    def test_conflict(self):
        s = self.start()
        c = self.connect(s)
        med = [slot(m, "medical", "flexible", 600000) for m in (202401, 202402)]
        self.assertEqual(c.ok("policy.put", {"policy": POLICY_A}), {"ok": True, "revision": 1, "warnings": []})
        self.assertEqual(c.ok("person.put", {"persons": [{"id": MAN, "slots": med}]}),
                         {"results": [{"id": MAN, "ok": True}]})
        item = {"id": MAN, "month": 202401, "city": "110000", "type": "medical", "amount": 1000, "date": 20240301}
        first = c.call("payment.apply", {"idem": "k-1", "items": [item]}, msgid=10)
        self.assertIsNone(first[2])
        again = c.call("payment.apply", {"idem": "k-1", "items": [item]}, msgid=11)
        self.assertEqual(again[1:], [11, None, first[3]])  # the first answer, with the new msgid
        other = c.call("payment.apply", {"idem": "k-1", "items": [dict(item, amount=2000)]}, msgid=12)
        self.assertEqual((other[1], err_part(other[2]), other[3]), (12, error_of(5, "idem"), None))
        # one namespace across methods
        other = c.call("person.put", {"idem": "k-1", "persons": []}, msgid=13)
        self.assertEqual(err_part(other[2]), error_of(5, "idem"))
        # the payment landed once: paid 1000
        self.assertEqual(person_norm(c.ok("person.get", {"id": MAN}))["person"]["slots"][0],
                         slot(202401, "medical", "flexible", 600000, 1000, 20240301))
        self.stop(s)

    def test_internal_when_the_store_is_full(self):
        """Error 9: a store whose map may not grow (--map-max) fills up; the
        write answers internal, nothing of it is written, the server goes on."""
        data = self.path("full-store")
        s = None
        for map_max in (1 << 20, 2 << 20, 4 << 20, 8 << 20):
            try:
                s = self.start(data, extra=["--map-max", str(map_max)])
                break
            except AssertionError:
                continue  # too small for the store to open
        self.assertIsNotNone(s, "arrearsd does not open a store with a map of 8 MiB or less")
        c = self.connect(s)
        rng = random.Random(9)
        failed = None
        for k in range(400):
            pid = make_id("310104198001%02d%03d" % (k % 28 + 1, k))
            # scattered values: they do not run-encode
            slots = [slot((1980 + m // 12) * 100 + m % 12 + 1, t, "employee", rng.randint(0, 10 ** 10),
                          rng.randint(1, 10 ** 9),
                          (1990 + rng.randint(0, 30)) * 10000 + rng.randint(1, 12) * 100 + rng.randint(1, 28))
                     for t in TYPES for m in range(240)]
            r = c.call("person.put", {"persons": [{"id": pid, "slots": slots}]})
            if r[2] is not None:
                failed = (k, pid, r)
                break
        self.assertIsNotNone(failed, "the store never filled")
        k, pid, r = failed
        sys.stderr.write("\n    store full after %d persons: %s\n" % (k, r[2].get("message")))
        self.assertGreater(k, 0)
        self.assertEqual(err_part(r[2])["code"], 9, r[2])
        self.assertEqual(r[2]["name"], "internal")
        self.assertEqual(err_part(c.call("person.get", {"id": pid})[2])["code"], 4)  # nothing written
        self.assertEqual(c.ok("ping", {})["pong"], True)
        self.stop(s)

    def test_too_large_request_bytes(self):
        s = self.start(extra=["--max-request", "1024"])
        c = self.connect(s)
        self.assertEqual(c.ok("ping", {"pad": "x" * 900})["pong"], True)  # under the limit
        c.send(req(2, "ping", {"pad": "x" * 2000}))
        got = c.read_to_eof(timeout=10)
        self.assertEqual(len(got), 1, got)
        self.assertEqual(err_part(got[0][2])["code"], 6)
        self.assertEqual(got[0][2]["name"], "too_large")
        self.assertIsNone(got[0][3])
        # a large request split over many packets, too
        c = self.connect(s)
        big = packb(req(3, "arrears.compute", {"as_of": AS_OF, "persons": synthetic_persons(50, 12)}))
        self.assertGreater(len(big), 100000)
        try:
            c.send_raw(big)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before taking it all
        got = c.read_to_eof(timeout=10)
        self.assertEqual([err_part(m[2])["code"] for m in got], [6])
        c = self.connect(s)
        self.assertEqual(c.ok("ping", {})["pong"], True)
        self.stop(s)

    def test_too_large_persons(self):
        data, ids = big_store()
        s = self.start(data, extra=["--max-persons", "3"])
        c = self.connect(s)
        three = synthetic_persons(3, 2)
        four = synthetic_persons(4, 2)
        self.assertEqual(len(c.ok("arrears.compute", {"as_of": AS_OF, "persons": three})["results"]), 3)
        for msgid, (method, params) in enumerate([
                ("arrears.compute", {"as_of": AS_OF, "persons": four}),
                ("years.compute", {"as_of": AS_OF, "ids": ids[:4]}),
                ("person.put", {"persons": four}),
                ("payment.apply", {"idem": "p", "items": [
                    {"id": i, "month": 202401, "city": "110000", "type": "pension", "amount": 1, "date": AS_OF}
                    for i in ids[:4]]}),
                ("withhold.run", {"idem": "w", "month": 202510, "date": AS_OF,
                                  "accounts": [{"id": i, "balance": 1} for i in ids[:4]]})], start=20):
            r = c.call(method, params, msgid=msgid)
            self.assertIsNotNone(r[2], "%s with 4 entries: %r" % (method, r[3]))
            self.assertEqual((r[1], err_part(r[2])["code"], r[2]["name"], r[3]), (msgid, 6, "too_large", None),
                             method)
        self.assertEqual(len(c.ok("years.compute", {"as_of": AS_OF, "ids": ids[:3]})["results"]), 3)
        self.assertEqual(c.ok("ping", {})["pong"], True)  # the connection stays open
        self.stop(s)

    def test_max_persons_bounds_scan(self):
        """--max-persons bounds the persons one request computes, scans too: a
        scan page over the limit is either refused (too_large at scan.limit)
        or cut to the limit with `next` set so that paging goes on."""
        data, ids = big_store()
        s = self.start(data, extra=["--max-persons", "3"])
        c = self.connect(s)
        r = c.call("medical.status", {"as_of": AS_OF, "scan": {"after": None, "limit": 4}}, msgid=30)
        if r[2] is not None:
            self.assertEqual(err_part(r[2]), error_of(6, "scan.limit"))
        else:
            page = [x["id"] for x in r[3]["results"]]
            self.assertLessEqual(len(page), 3, "a scan computed %d persons with --max-persons 3" % len(page))
            self.assertEqual(page, ids[:len(page)])
            self.assertEqual(r[3]["next"], page[-1])
        self.assertEqual(len(c.ok("medical.status", {"as_of": AS_OF, "scan": {"after": None, "limit": 3}})
                             ["results"]), 3)
        self.stop(s)

    def test_overloaded_connections(self):
        s = self.start(extra=["--max-connections", "2"])
        c1, c2 = self.connect(s), self.connect(s)
        self.assertEqual(c1.ok("ping", {})["pong"], True)
        self.assertEqual(c2.ok("ping", {})["pong"], True)
        c3 = self.connect(s)
        try:
            c3.send(req(1, "ping", {}))
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = c3.read_to_eof(timeout=10)
        self.assertEqual(len(got), 1, got)
        self.assertEqual(err_part(got[0][2])["code"], 7)
        self.assertEqual(got[0][2]["name"], "overloaded")
        self.assertEqual(c1.ok("ping", {})["pong"], True)  # the first two are untouched
        c1.close()
        # once one closes, there is room again
        deadline = time.monotonic() + 5
        while True:
            c4 = self.connect(s)
            c4.send(req(9, "ping", {}))
            r = c4.next(10)
            if r is not None and r[2] is None:
                break
            self.assertLess(time.monotonic(), deadline, "no room after a connection closed: %r" % (r,))
            time.sleep(0.05)
        stats = c2.ok("server.stats", {})
        self.assertGreaterEqual(stats["connections"]["refused"], 1)
        self.stop(s)

    def test_unauthorized(self):
        token = self.path("token")
        with open(token, "w") as f:
            f.write("s3cret-token\n")
        data, ids = big_store()
        s = self.start(data, extra=["--token-file", token])
        c = self.connect(s)
        self.assertEqual(c.ok("ping", {})["pong"], True)
        compute = {"as_of": AS_OF, "ids": ids[:2]}
        for method, params in (("arrears.compute", compute), ("server.stats", {}), ("policy.get", {"city": "110000"}),
                               ("person.put", {"persons": []}), ("audit.read", {"after": None, "limit": 10}),
                               ("no.such.method", {})):
            r = c.call(method, params)
            self.assertEqual((err_part(r[2])["code"], r[2]["name"], r[3]), (8, "unauthorized", None), method)
        r = c.call("auth", {"token": "s3cret-tokeN"})
        self.assertEqual((err_part(r[2])["code"], r[3]), (8, None))
        r = c.call("auth", {"token": "s3cret-token\n"})  # the token is the first line, without its end
        self.assertEqual(err_part(r[2])["code"], 8)
        self.assertEqual(err_part(c.call("arrears.compute", compute)[2])["code"], 8)
        self.assertEqual(c.ok("ping", {})["pong"], True)
        self.assertEqual(c.ok("auth", {"token": "s3cret-token"}), {"ok": True})
        got = c.call("arrears.compute", compute, msgid=77)
        self.assertSameAnswers([got], eval_run([req(77, "arrears.compute", compute)], data))
        self.assertIn("requests", c.ok("server.stats", {}))
        # another connection is not authorized by this one
        c2 = self.connect(s)
        self.assertEqual(err_part(c2.call("years.compute", compute)[2])["code"], 8)
        self.assertEqual(c2.ok("ping", {})["pong"], True)
        self.stop(s)


# ====================================================================== the byte stream

class TestStream(ServerTest):

    def test_notification_never_answered(self):
        s = self.start()
        c = self.connect(s)
        person = {"id": MAN, "slots": [slot(202401, "pension", "flexible", 600000)]}
        c.send_raw(packb([2, "person.put", [{"persons": [person]}]]) + packb([2, "ping", [{}]]) +
                   packb([2, "no.such.method", [{}]]) + packb([2, "person.get", [{"id": MAN}]]) +
                   packb(req(5, "ping", {})))
        r = c.next(10)
        self.assertEqual(r[:3], [1, 5, None])
        # the notified write happened (executed), and nothing else was answered
        deadline = time.monotonic() + 5
        while True:
            r = c.call("person.get", {"id": MAN})
            if r[2] is None:
                break
            self.assertLess(time.monotonic(), deadline, "the notified person.put never took effect: %r" % r)
            time.sleep(0.02)
        self.assertEqual(person_norm(r[3]), {"person": person})
        self.assertTrue(c.quiet(0.3), "an answer to a notification arrived: %r" % c.pending)
        self.stop(s)

    def pipeline_requests(self, ids, n, seed):
        rnd = random.Random(seed)
        msgids = rnd.sample(range(1, 2 ** 32), n)
        inline = synthetic_persons(20, 6)
        msgs = []
        for k, msgid in enumerate(msgids):
            kind = k % 12
            i = rnd.randrange(len(ids) - 60)
            if kind == 0:
                msgs.append(req(msgid, "ping", {}))
            elif kind == 1:
                msgs.append(req(msgid, "policy.get", {"city": rnd.choice(["110000", "310000", "990000"])}))
            elif kind == 2:
                msgs.append(req(msgid, "person.get", {"id": ids[i]}))
            elif kind == 3:
                msgs.append(req(msgid, "arrears.compute", {"as_of": AS_OF, "ids": ids[i:i + 2], "detail": True}))
            elif kind == 4:
                msgs.append(req(msgid, "years.compute", {"as_of": AS_OF, "ids": [ids[i]]}))
            elif kind == 5:
                msgs.append(req(msgid, "retirement.check", {"as_of": AS_OF, "persons": [rnd.choice(inline)]}))
            elif kind == 6:
                msgs.append(req(msgid, "housing.check", {"as_of": AS_OF, "city": "110000", "ids": [ids[i]]}))
            elif kind == 7:
                msgs.append(req(msgid, "medical.status", {"as_of": AS_OF, "scan": {"after": ids[i], "limit": 3}}))
            elif kind == 8:  # heavy enough to go to a worker: answers may overtake each other
                msgs.append(req(msgid, "medical.status", {"as_of": AS_OF, "ids": ids[i:i + 50]}))
            elif kind == 9:
                msgs.append(req(msgid, "arrears.compute", {"as_of": AS_OF, "persons": inline}))
            elif kind == 10:
                msgs.append(req(msgid, "no.such.method", {}))
            else:
                msgs.append(req(msgid, "arrears.compute", {"as_of": 20251399, "ids": [ids[i]]}))
        return msgs

    def check_by_msgid(self, got, msgs, data):
        want = {r[1]: r for r in eval_run(msgs, data)}
        self.assertEqual(len(want), len(msgs))
        self.assertEqual(len(got), len(msgs))
        by_id = {}
        for r in got:
            self.assertNotIn(r[1], by_id, "msgid %d answered twice" % r[1])
            by_id[r[1]] = r
        self.assertEqual(set(by_id), set(want))
        for msgid, w in want.items():
            self.assertSame(by_id[msgid], w, "msgid %d" % msgid)

    def test_pipelining_1000(self):
        data, ids = big_store()
        s = self.start(data)
        c = self.connect(s)
        msgs = self.pipeline_requests(ids, 1000, 5)
        sender = threading.Thread(target=lambda: [c.send(m) for m in msgs])
        sender.start()
        got = c.read_n(len(msgs), timeout=60)
        sender.join()
        self.check_by_msgid(got, msgs, data)
        self.assertTrue(c.quiet(0.2))
        self.stop(s)

    def test_many_requests_in_one_write(self):
        data, ids = big_store()
        s = self.start(data)
        c = self.connect(s)
        msgs = self.pipeline_requests(ids, 300, 9)
        c.send_raw(b"".join(packb(m) for m in msgs))
        got = c.read_n(len(msgs), timeout=60)
        self.check_by_msgid(got, msgs, data)
        self.stop(s)

    def test_request_split_byte_by_byte(self):
        s = self.start()
        c = self.connect(s)  # TCP_NODELAY: every byte its own segment
        self.assertEqual(c.ok("policy.put", {"policy": POLICY_A}), {"ok": True, "revision": 1, "warnings": []})
        stream = packb(req(31, "arrears.compute", {"as_of": 20240310, "persons": [
            {"id": MAN, "slots": [slot(202205, "pension", "flexible", 600000)]}]})) + packb(req(32, "ping", {}))
        for k in range(len(stream)):
            c.send_raw(stream[k:k + 1])
            time.sleep(0.001)
        got = sorted(c.read_n(2, timeout=10), key=lambda r: r[1])
        self.assertEqual(got[1][:3], [1, 32, None])
        r = got[0]
        self.assertEqual((r[1], r[2]), (31, None))
        a = r[3]["results"][0]
        self.assertEqual((a["id"], a["principal"], a["interest"], a["total"]), (MAN, 120000, 10064, 130064))
        self.stop(s)

    def test_1000_concurrent_connections(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 4096
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
        s = self.start(extra=["--threads", "2"])
        n = 1000
        conns = [self.connect(s) for _ in range(n)]
        for k, c in enumerate(conns):
            c.send(req(k + 1, "ping", {}))
        sel = selectors.DefaultSelector()
        for k, c in enumerate(conns):
            c.sock.setblocking(False)
            sel.register(c.sock, selectors.EVENT_READ, k)
        answered = {}
        deadline = time.monotonic() + 30
        while len(answered) < n and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                k = key.data
                c = conns[k]
                data = c.sock.recv(65536)
                if not data:
                    sel.unregister(c.sock)
                    continue
                c.unp.feed(data)
                for m in c.unp:
                    answered[k] = m
                    sel.unregister(c.sock)
        sel.close()
        self.assertEqual(len(answered), n, "%d of %d connections answered" % (len(answered), n))
        for k, m in answered.items():
            self.assertEqual(m[:3], [1, k + 1, None])
            self.assertIs(m[3]["pong"], True)
        for c in conns:
            c.sock.setblocking(True)
        stats = self.connect(s).ok("server.stats", {})
        self.assertEqual(stats["connections"]["open"], n + 1)
        self.assertGreaterEqual(stats["connections"]["total"], n + 1)
        self.assertEqual(stats["requests"]["ping"], n)
        # Whichever loop's accept completes, connections go round robin to
        # the 2 loops: each holds half, give or take the probe's.
        opened = re.findall(r"event=open conn=(\d+)\.", s.log())
        per_loop = [opened.count(str(k)) for k in range(2)]
        self.assertEqual(sum(per_loop), len(opened))
        self.assertLessEqual(abs(per_loop[0] - per_loop[1]), 2, "connections per loop: %s" % per_loop)
        for c in conns:
            c.close()
        self.stop(s)


# ====================================================================== bulk

class TestSummaries(ServerTest):
    """Issue 10: a stored person is answered from the summary of its settled
    part when the as-of date is past its horizon and the policies are the
    ones it was made under. Every answer must equal the full computation,
    which a store-less evaluator gives for the same slots sent inline."""

    METHODS = (("arrears.compute", {"detail": True}), ("years.compute", {}), ("retirement.check", {}),
               ("medical.status", {}), ("housing.check", {"city": "110000"}))

    def walk(self, c, method, params):
        out, after = [], None
        while True:
            r = c.ok(method, dict(params, scan={"after": after, "limit": 1000}))
            out += r["results"]
            after = r["next"]
            if after is None:
                return out

    def inline(self, docs, persons, method, params):
        msgs = [req(900 + k, "policy.put", {"policy": d}) for k, d in enumerate(docs)]
        msgs.append(req(1, method, dict(params, persons=persons)))
        got = eval_run(msgs)
        for r in got[:-1]:
            self.assertIsNone(r[2], r[2])
        self.assertIsNone(got[-1][2], got[-1][2])
        return got[-1][3]["results"]

    def check_all(self, c, docs, persons, as_of):
        """Every method over the whole store against the full path; returns
        how many persons the server answered from summaries meanwhile."""
        before = c.ok("server.stats", {})["persons_summarized"]
        for method, extra in self.METHODS:
            params = dict(extra, as_of=as_of)
            got = self.walk(c, method, params)
            want = self.inline(docs, persons, method, params)
            self.assertEqual(len(got), len(persons))
            for a, b in zip(got, want):
                self.assertEqual(a, b, "%s as of %d for %s" % (method, as_of, a["id"]))
        return c.ok("server.stats", {})["persons_summarized"] - before

    def wait_walk(self, s, walks):
        deadline = time.monotonic() + TIMEOUT_S
        while len(re.findall(r"event=summary_walk status=ok rebuilt=(\d+)", s.log())) < walks:
            self.assertLess(time.monotonic(), deadline, "no summary walk logged:\n" + s.log()[-2000:])
            time.sleep(0.05)
        return [int(n) for n in re.findall(r"event=summary_walk status=ok rebuilt=(\d+)", s.log())]

    def test_summaries_answer_as_the_full_path_across_a_policy_put(self):
        data = self.path("store")
        gen_store(data, 150, 23)
        s = self.start(data)
        c = self.connect(s)
        self.assertEqual(self.wait_walk(s, 1), [0], "gen stores every summary itself")
        ids = [p["id"] for p in self.walk(c, "medical.status", {"as_of": AS_OF})]
        persons = [c.ok("person.get", {"id": i})["person"] for i in ids]
        cities = sorted({x["city"] for p in persons for x in p["slots"]})
        docs = [c.ok("policy.get", {"city": city})["policy"] for city in cities]
        # Long after the generated city's "today" nearly every person is settled
        # up to its horizon.
        late, early = 20301231, 20000115
        self.assertGreater(self.check_all(c, docs, persons, late), 4 * len(persons) * 9 // 10)
        # Before it only persons whose every month and payment came earlier (and
        # some whose later months all owe) may.
        done_early = sum(1 for p in persons if all(x["month"] < early // 100 and x["paid_date"] < early
                                                   for x in p["slots"]))
        self.assertTrue(4 * done_early <= self.check_all(c, docs, persons, early) < 4 * len(persons) // 10)
        # A new revision of 110000: summaries made under revision 1 are not
        # used (the answers follow the new rates at once) until the walk has
        # rebuilt them, after which they are used again.
        doc = docs[cities.index("110000")]
        for per in doc["periods"]:
            for t in per["rates"]:
                per["rates"][t]["individual"] = min(per["rates"][t]["individual"] + 7000, 1000000)
                per["rates"][t]["flexible"] = min(per["rates"][t]["flexible"] + 7000, 1000000)
        self.assertEqual(c.ok("policy.put", {"policy": doc})["revision"], 2)
        self.check_all(c, docs, persons, late)
        rebuilt = self.wait_walk(s, 2)[1]
        in_110000 = sum(1 for p in persons if any(x["city"] == "110000" for x in p["slots"]))
        self.assertEqual(rebuilt, in_110000)
        self.assertGreater(self.check_all(c, docs, persons, late), 4 * len(persons) * 9 // 10)
        self.stop(s)


class TestBulk(ServerTest):

    def test_no_stall_while_bulk_runs(self):
        """Pings on one connection keep answering while another connection runs
        bulk computations (scans of 20,000 stored persons, 5,000 inline persons)."""
        data, ids = big_store()
        s = self.start(data)
        inline = synthetic_persons(5000, 12)
        bulk_msgs = [req(1, "arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": BIG_PERSONS},
                                                "detail": True}),
                     req(2, "arrears.compute", {"as_of": AS_OF, "persons": inline}),
                     req(3, "years.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": BIG_PERSONS}}),
                     req(4, "arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": BIG_PERSONS}})]
        bulk_bytes = [packb(m) for m in bulk_msgs]
        pinger = self.connect(s)
        self.assertEqual(pinger.ok("ping", {})["pong"], True)
        bulk = self.connect(s)
        chunks = []
        done = threading.Event()

        def drain():  # raw bytes only: decoding here would hold the GIL and skew the pings
            try:
                bulk.sock.settimeout(TIMEOUT_S)
                while True:
                    b = bulk.sock.recv(1 << 20)
                    if not b:
                        break
                    chunks.append(b)
            finally:
                done.set()

        reader = threading.Thread(target=drain)
        reader.start()
        started = time.monotonic()
        for b in bulk_bytes:
            bulk.sock.sendall(b)
        bulk.sock.shutdown(socket.SHUT_WR)  # the server answers everything, then closes
        ping = packb(req(1, "ping", {}))
        latencies = []
        slow = []  # (seconds into the bulk work, ms) of pings over 10 ms
        while not done.is_set():
            t0 = time.perf_counter()
            pinger.send_raw(ping)
            r = pinger.next(10)
            dt = time.perf_counter() - t0
            latencies.append(dt)
            if dt > 0.010:
                slow.append((round(time.monotonic() - started, 2), round(dt * 1000, 1)))
            self.assertEqual(r[:3], [1, 1, None])
        bulk_s = time.monotonic() - started
        reader.join()
        got = unpack_all(b"".join(chunks))
        self.assertEqual(sorted(r[1] for r in got), [1, 2, 3, 4])
        for r in got:
            self.assertIsNone(r[2], r[2])
            self.assertEqual(len(r[3]["results"]), 5000 if r[1] == 2 else BIG_PERSONS)
        latencies.sort()
        n = len(latencies)
        p50 = latencies[n // 2] * 1000
        p99 = latencies[min(n - 1, (n * 99) // 100)] * 1000
        worst = latencies[-1] * 1000
        sys.stderr.write("\n    ping under bulk: %d pings over %.2f s of bulk (%.1f MB answered): "
                         "p50 %.3f ms, p99 %.3f ms, max %.3f ms; over 10 ms (at s, ms): %s\n"
                         % (n, bulk_s, sum(len(b) for b in chunks) / 1e6, p50, p99, worst, slow[:20]))
        self.assertGreaterEqual(n, 20, "the bulk work ended too soon to measure anything")
        self.assertLess(p99, 50.0, "ping p99 %.1f ms while bulk runs (max %.1f ms)" % (p99, worst))
        self.stop(s)

    def test_large_response_complete(self):
        data, ids = big_store()
        s = self.start(data)
        c = self.connect(s)
        msg = req(99, "arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": BIG_PERSONS},
                                          "detail": True})
        c.send(msg)
        got = c.next(TIMEOUT_S)
        size = c.received
        self.assertGreater(size, 5 * 1024 * 1024, "wanted an answer of many megabytes, got %d bytes" % size)
        want = eval_run([msg], data)[0]
        self.assertEqual(got[:3], want[:3])
        self.assertEqual(len(got[3]["results"]), len(want[3]["results"]))
        self.assertEqual(got[3]["next"], want[3]["next"])
        self.assertSame(got, want, "the %d-byte answer" % size)
        # and a second one on the same connection, read slowly in small pieces
        c.send(req(100, "years.compute", {"as_of": AS_OF, "scan": {"after": ids[9999], "limit": 10000}}))
        raw = b""
        c.sock.settimeout(TIMEOUT_S)
        u = unpacker()
        got = None
        while got is None:
            time.sleep(0.001)
            b = c.sock.recv(65536)
            self.assertTrue(b, "closed before the answer was complete")
            u.feed(b)
            raw += b
            got = next(u, None)
        self.assertGreater(len(raw), 1024 * 1024)
        want = eval_run([req(100, "years.compute", {"as_of": AS_OF, "scan": {"after": ids[9999], "limit": 10000}})],
                        data)[0]
        self.assertSame(got, want, "the slowly read answer")
        self.assertEqual(got[3]["next"], ids[-1])
        sys.stderr.write("\n    large response: %.1f MB in one answer\n" % (size / 1e6))
        self.stop(s)

    def test_parts_keep_their_revisions(self):
        """SPEC 3.4: an answer made in parts reads one set of policy revisions.
        A new revision of 110000 is stored after the first part went out; the
        whole answer still equals the oracle pinned to revision 1."""
        src, _ids = big_store()
        data = self.path("revisions")
        shutil.copytree(src, data)
        s = self.start(data)
        c = self.connect(s)
        # no detail: after the correction every slot owes, and the items would run to gigabytes
        msg = req(7, "arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": BIG_PERSONS}})
        c.send(msg)
        c._fill(TIMEOUT_S)  # the first part is out; the rest waits for this client
        self.assertTrue(c.received > 0 and not c.pending, "wanted a first part, not the whole answer")
        w = self.connect(s)
        pol = w.ok("policy.get", {"city": "110000"})
        self.assertEqual(pol["revision"], 1)
        doc = pol["policy"]
        for per in doc["periods"]:
            for t in per["rates"]:
                per["rates"][t]["employer"] = min(per["rates"][t]["employer"] + 10000, 1000000)
                per["rates"][t]["flexible"] = min(per["rates"][t]["flexible"] + 10000, 1000000)
        doc["source"] = "a correction stored mid-answer"
        self.assertEqual(w.ok("policy.put", {"policy": doc})["revision"], 2)
        got = c.next(TIMEOUT_S)
        self.assertGreater(c.received, 2 * 1024 * 1024, "wanted an answer in several parts")
        self.stop(s)
        pinned = req(7, "arrears.compute", dict(msg[3][0], policy_revisions={"110000": 1}))
        want = eval_run([pinned], data)[0]
        self.assertEqual(got[3]["policies"].get("110000"), 1)
        self.assertSame(got, want, "the answer in parts, against the oracle pinned to revision 1")
        latest = eval_run([msg], data)[0]
        self.assertEqual(latest[3]["policies"].get("110000"), 2)
        self.assertNotEqual(latest[3]["results"], want[3]["results"], "the correction changes the answer")

    def test_error_close_keeps_the_answers_ahead_of_it(self):
        """A malformed frame behind a request with a large answer, then bytes
        the server never reads: the server closes without a reset (which
        would drop what its socket still holds), so the client reads the
        whole answer, the error, then EOF."""
        data, ids = big_store()
        s = self.start(data)
        c = self.connect(s)
        msg = req(5, "arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": BIG_PERSONS},
                                         "detail": True})
        c.send_raw(packb(msg) + b"\xc1")
        time.sleep(1.0)  # the answer fills the sockets, the error queues behind it
        try:
            c.send_raw(b"\x00" * 65536)
        except OSError:
            pass
        got = c.read_to_eof(timeout=TIMEOUT_S)
        self.assertEqual([m[1] for m in got], [5, 0], "answers read before EOF")
        self.assertEqual(len(got[0][3]["results"]), BIG_PERSONS)
        self.assertEqual(got[1][2]["name"], "malformed")
        self.stop(s)


# ====================================================================== operations

class TestOperations(ServerTest):

    def test_stats_count_requests(self):
        s = self.start()
        c = self.connect(s)
        first = c.ok("server.stats", {})
        for key in ("connections", "requests", "errors", "latency_us", "store"):
            self.assertIn(key, first)
        self.assertEqual(first["connections"]["open"], 1)
        self.assertEqual(first["connections"]["total"], 1)
        self.assertEqual(first["store"]["persons"], 0)
        self.assertEqual(set(first["requests"]),
                         {"ping", "auth", "server.stats", "policy.put", "policy.get", "policy.history", "person.put", "person.get",
                          "person.delete", "payment.apply", "withhold.run", "arrears.compute", "years.compute",
                          "audit.read",
                          "retirement.check", "housing.check", "medical.status"})
        self.assertEqual(sum(first["requests"].values()), 0)
        for _ in range(5):
            c.ok("ping", {})
        c.err("policy.get", {"city": "110000"})      # no policy yet: not_found
        c.err("policy.get", {"city": "1"})           # invalid
        c.ok("policy.put", {"policy": POLICY_A})     # a write, on a worker
        c.ok("policy.get", {"city": "110000"})
        c.ok("person.put", {"persons": synthetic_persons(2, 3)})
        c.ok("arrears.compute", {"as_of": AS_OF, "persons": synthetic_persons(40, 3)})  # on a worker
        c.err("no.such.method", {})
        c.send(req(50, "years.compute", {"as_of": AS_OF, "persons": synthetic_persons(1, 2)}))
        c.send([2, "ping", [{}]])                    # a notification: counted or not, never answered
        self.assertEqual(c.next()[1], 50)
        c2 = self.connect(s)
        st = c2.ok("server.stats", {})
        self.assertEqual(st["requests"]["server.stats"], 1)
        self.assertIn(st["requests"]["ping"], (5, 6))
        self.assertEqual(st["errors"]["ping"], 0)
        self.assertEqual((st["requests"]["policy.get"], st["errors"]["policy.get"]), (3, 2))
        self.assertEqual((st["requests"]["policy.put"], st["errors"]["policy.put"]), (1, 0))
        self.assertEqual(st["requests"]["person.put"], 1)
        self.assertEqual(st["requests"]["arrears.compute"], 1)
        self.assertEqual(st["requests"]["years.compute"], 1)
        self.assertEqual(st["requests"]["medical.status"], 0)
        self.assertEqual(st["connections"]["open"], 2)
        self.assertEqual(st["connections"]["total"], 2)
        self.assertEqual(st["store"]["persons"], 2)
        lat = st["latency_us"]["ping"]
        self.assertGreater(lat["p50"], 0)
        self.assertLessEqual(lat["p50"], lat["p99"])
        self.assertLessEqual(lat["p99"], lat["p999"])
        self.stop(s)

    def shutdown_after_write(self, prepare, write, check):
        """Sends `write` and SIGTERMs the server at once: the answer arrives,
        the server exits 0, and after a restart `check` sees the write."""
        s = self.start()
        c = self.connect(s)
        prepare(c)
        c.send(write)
        s.proc.send_signal(signal.SIGTERM)
        got = c.read_to_eof(timeout=30)
        log = self.stop(s)
        self.assertEqual(len(got), 1, "answers to the write sent just before SIGTERM: %r; log:\n%s"
                         % ([g[:3] for g in got], log[-2000:]))
        self.assertEqual(got[0][1], write[1])
        self.assertIsNone(got[0][2], got[0][2])
        s2 = self.start()
        c2 = self.connect(s2)
        check(got[0][3], c2)
        self.stop(s2)

    def test_graceful_shutdown_payment(self):
        med = [slot(m, "medical", "flexible", 600000) for m in (202401, 202402)]

        def prepare(c):
            self.assertEqual(c.ok("person.put", {"persons": [{"id": MAN, "slots": med}]}),
                             {"results": [{"id": MAN, "ok": True}]})

        def check(answer, c):
            self.assertIs(answer["results"][0].get("ok"), True)
            self.assertEqual(person_norm(c.ok("person.get", {"id": MAN}))["person"]["slots"],
                             [slot(202401, "medical", "flexible", 600000, 48000, 20240220), med[1]])

        self.shutdown_after_write(prepare, req(8, "payment.apply", {"idem": "pay", "items": [
            {"id": MAN, "month": 202401, "city": "110000", "type": "medical", "amount": 48000,
             "date": 20240220}]}), check)

    def test_graceful_shutdown_person_put(self):
        persons = synthetic_persons(300, 96)  # 300 persons of 192 slots: ~5 MB
        ids = [p["id"] for p in persons]
        self.assertEqual(len(set(ids)), 300)

        def prepare(c):  # the connection is accepted and idle when the write comes
            self.assertIs(c.ok("ping", {})["pong"], True)

        def check(answer, c):
            self.assertEqual(answer["results"], [{"id": i, "ok": True} for i in ids])
            for p in (persons[0], persons[150], persons[-1]):
                self.assertEqual(person_norm(c.ok("person.get", {"id": p["id"]})), person_norm({"person": p}))
            self.assertEqual(c.ok("server.stats", {})["store"]["persons"], 300)

        self.shutdown_after_write(prepare, req(9, "person.put", {"persons": persons}), check)

    def test_idle_timeout(self):
        s = self.start(extra=["--idle-timeout", "1"])
        c = self.connect(s)
        self.assertEqual(c.ok("ping", {})["pong"], True)
        t0 = time.monotonic()
        self.assertEqual(c.read_to_eof(timeout=10), [])
        waited = time.monotonic() - t0
        self.assertGreaterEqual(waited, 0.9)
        self.assertLess(waited, 5)
        self.stop(s)

    def test_idle_timeout_cuts_a_client_that_stopped_reading(self):
        """Answers of ~20 MB that the client never reads: no progress either
        way for the idle timeout, so the connection is cut; others go on."""
        data, ids = big_store()
        s = self.start(data, extra=["--idle-timeout", "1"])
        c = self.connect(s)
        for k in (1, 2):
            c.send(req(k, "arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": BIG_PERSONS},
                                              "detail": True}))
        deadline = time.monotonic() + 20
        while "reason=idle_timeout" not in s.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertIn("reason=idle_timeout", s.log())
        self.assertEqual(self.connect(s).ok("ping", {})["pong"], True)
        c.close()
        self.stop(s)

    def test_person_ids_masked_in_log(self):
        data = self.path("store")
        gen_store(data, 200, 4)
        ids = stored_ids(data)
        s = self.start(data, extra=["--max-request", "4096", "--max-persons", "5"])
        c = self.connect(s)
        unknown = make_id("11010119000101009")
        bad = ids[0][:17] + ("0" if ids[0][17] != "0" else "1")
        # errors about persons, of every kind the server can answer
        c.err("person.get", {"id": unknown})
        c.err("person.get", {"id": bad})
        c.err("person.delete", {"id": unknown})
        c.ok("arrears.compute", {"as_of": AS_OF, "ids": [ids[1], unknown, bad]})
        c.ok("arrears.compute", {"as_of": AS_OF, "persons": [{"id": ids[2], "slots": [
            slot(202401, "pension", "flexible", 1, city="990000")]}]})
        c.ok("payment.apply", {"idem": "x", "items": [
            {"id": ids[3], "month": 190001, "city": "110000", "type": "pension", "amount": 1, "date": AS_OF},
            {"id": unknown, "month": 202401, "city": "110000", "type": "pension", "amount": 1, "date": AS_OF}]})
        c.err("payment.apply", {"idem": "x", "items": []})
        c.err("years.compute", {"as_of": AS_OF, "ids": ids[4:10]})  # too many
        c.send(packb(req(5, "person.get", {"id": ids[10], "pad": "x" * 5000})))  # too large: closes
        c.read_to_eof(timeout=10)
        c = self.connect(s)
        c.send_raw(packb([0, 6, "person.get", {"id": ids[11]}]))  # malformed: closes
        c.read_to_eof(timeout=10)
        c = self.connect(s)
        c.send_raw(b"\x94\x00\x07\xaaperson.get\x91\x81\xa2id\xd9\x12" + ids[12].encode()[:10])  # cut short
        c.close()
        time.sleep(0.1)
        log = self.stop(s)
        leaked = sorted({i for i in ids + [unknown, bad] if i in log})
        self.assertEqual(leaked, [], "full person ids in the server's log")
        self.assertIsNone(re.search(r"(?<![0-9])[0-9]{17}[0-9X](?![0-9])", log), "an 18-character id in the log")


# ====================================================================== runner



def suite_main(module):
    """main() of a suite run as `--arrearsd B --arrears B [test names]`."""
    global ARREARSD, ARREARS
    parser = argparse.ArgumentParser()
    parser.add_argument("--arrearsd", default=ARREARSD)
    parser.add_argument("--arrears", default=ARREARS)
    args, rest = parser.parse_known_args()
    ARREARSD = os.path.abspath(args.arrearsd)
    ARREARS = os.path.abspath(args.arrears)
    for b in (ARREARSD, ARREARS):
        if not os.access(b, os.X_OK):
            print("no executable %s (make build/arrearsd build/arrears)" % b)
            print("0 passed, 1 failed")
            return 1
    return run_suite(module, rest)


def run_suite(module, names):
    """The module's tests (or the named ones), verbose; `N passed, M failed`
    last; the exit status."""
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromNames(names, module) if names else loader.loadTestsFromModule(module)
    started = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    print("ran in %.1f s" % (time.monotonic() - started))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(suite_main(sys.modules[__name__]))
