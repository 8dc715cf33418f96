#!/usr/bin/python3
"""Soak: the server SIGKILLed again and again under idempotent writes (SPEC §5, §6, Appendix A).

    /usr/bin/python3 tests/soak.py --arrearsd build/arrearsd --arrears build/arrears [--rounds N] [--seed S]

One data directory persists across every round, and the server always
listens on one fixed port (chosen free at start), so that each restart
meets the address its killed predecessor may still hold. Setup stores a
policy and, per writer, persons for payments and persons for person.put.

Each round:
- 8 writer threads, one connection each, one write in flight at a time,
  every write with an idempotency key never used before: `payment.apply`
  (1-3 items into the writer's own payment persons; now and then an item
  into a month without a slot, answered `not_found` at `items[i]`) or
  `person.put` (1-2 of the writer's own put persons, each a new version
  whose slot count and bases encode the version);
- 2 reader threads: `arrears.compute` by ids over the payment persons
  (every person answered, none with an error) and `ping`;
- after a random 0.15-0.45 s (from the seed) the server gets SIGKILL and
  is started again at once, no sleep, on the same store and port. A
  restart fails when the process exits or logs no `event=listen` within
  5 s (RESTART_LIMIT_S); a client that sees neither an answer nor the
  connection's end within 10 s (IO_TIMEOUT_S) is a hang, also a failure.

Then, on the restarted server:
- every acknowledged write is there exactly once: each payment slot's
  `paid` is its stored value plus the sum of the acknowledged amounts and
  its `paid_date` their latest date; each put person is its last
  acknowledged version, whole;
- a write in flight at the kill is there whole or not at all: a slot's
  `paid` either without it or with it (never twice, never part of a
  multi-item payment), put persons all at the old version or all at the
  new one;
- the in-flight write is sent again with the same idem key: if it was
  there it must be replayed (nothing changes), if not it must be applied
  (once); either way the answer equals what a first application answers;
- a few writes acknowledged in the round are sent again with their keys:
  the answer equals the first answer (decoded), nothing changes.

Answers to every write are checked in full (`{"ok": true}` per item,
`{"error": {code 4, not_found, "no such slot", items[i]}}` for the bad
item, `{"results": [{id, ok}]}` for person.put). At the end the server is
stopped with SIGTERM and must exit 0. Prints rounds, acknowledged writes,
retries replayed vs applied, restart time median/max, then
`N passed, M failed`; exits 1 on any failure. A failure keeps the store
and the log and prints their paths; `--seed` replays the same write contents
and kill delays (how many writes fit in a round is the machine's timing).
"""

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_server import (POLICY_A, first_difference, make_id, month_add, packb, person_norm, req,  # noqa: E402
                         run_suite, slot, unpacker)

ARREARSD = os.path.join(HERE, "..", "build", "arrearsd")
ARREARS = os.path.join(HERE, "..", "build", "arrears")
ROUNDS = 20
SEED = None

WRITERS = 8
READERS = 2
PAY_PERSONS = 4          # per writer, slots receive payments
PUT_PERSONS = 3          # per writer, replaced whole by person.put
PAY_MONTHS = 12          # 202301..202312, pension and medical
KILL_AFTER_S = (0.15, 0.45)
RESTART_LIMIT_S = 5.0    # a restart slower than this is a failure
IO_TIMEOUT_S = 10.0      # no answer (or EOF after the kill) within this: a hang
AS_OF = 20251110
PAY_DATES = (20250101, 20251031)
NO_SLOT_MONTH = 202401   # no person has a slot there: not_found at items[i]


class ConnLost(Exception):
    """The connection ended (or never started) before the answer came."""


class Conn:
    """One blocking msgpack-RPC connection; any loss raises ConnLost."""

    def __init__(self, port):
        try:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            raise ConnLost("connect: %s" % e)
        self.unp = unpacker()
        self.msgid = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def call(self, method, params):
        """[error, result] of one request; ConnLost when the connection ends first.
        A silent server (IO_TIMEOUT_S) raises socket.timeout: a hang, not a kill."""
        self.msgid += 1
        try:
            self.sock.sendall(packb(req(self.msgid, method, params)))
            while True:
                for m in self.unp:
                    if m[0] != 1 or m[1] != self.msgid:
                        raise AssertionError("response %r to msgid %d" % (m[:2], self.msgid))
                    return m[2], m[3]
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnLost("EOF")
                self.unp.feed(data)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as e:
            raise ConnLost(str(e))

    def ok(self, method, params):
        e, r = self.call(method, params)
        if e is not None:
            raise AssertionError("%s failed: %r" % (method, e))
        return r


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ====================================================================== model

def pay_person_id(w, j):
    return make_id("110105198001%02d%03d" % (1 + w, j))


def put_person_id(w, j):
    return make_id("110105198102%02d%03d" % (1 + w, 500 + j))


def pay_person(pid):
    return {"id": pid, "slots": [slot(month_add(202301, k), t, "flexible", 600000)
                                 for k in range(PAY_MONTHS) for t in ("pension", "medical")]}


def put_version(pid, v):
    """Version v of a put person: 1 + v % 7 months, every base carrying v."""
    return {"id": pid, "slots": [slot(month_add(202201, k), t, "flexible", 500000 + v)
                                 for k in range(1 + v % 7) for t in ("pension", "medical")]}


class Writer:
    """One writer's own persons and what it believes is stored (acknowledged)."""

    def __init__(self, w):
        self.w = w
        self.pay_ids = [pay_person_id(w, j) for j in range(PAY_PERSONS)]
        self.put_ids = [put_person_id(w, j) for j in range(PUT_PERSONS)]
        # (id, month, type) -> [paid, paid_date]
        self.paid = {(pid, month_add(202301, k), t): [0, 0]
                     for pid in self.pay_ids for k in range(PAY_MONTHS) for t in ("pension", "medical")}
        self.version = {pid: 0 for pid in self.put_ids}
        self.seq = 0
        self.acked = []      # this round: (op, answer)
        self.in_flight = None
        self.error = None

    def next_op(self, rng, seed):
        """A write never sent before: (key, method, params, expected answer)."""
        self.seq += 1
        key = "soak-%d-w%d-%d" % (seed, self.w, self.seq)
        if rng.random() < 0.7:
            items, want = [], []
            for i in range(rng.randint(1, 3)):
                pid = rng.choice(self.pay_ids)
                if rng.random() < 0.05:
                    items.append({"id": pid, "month": NO_SLOT_MONTH, "city": "110000", "type": "pension",
                                  "amount": 1, "date": PAY_DATES[0]})
                    want.append({"error": {"code": 4, "name": "not_found", "message": "no such slot",
                                           "at": "items[%d]" % i}})
                    continue
                date = rng.randint(PAY_DATES[0] // 100, PAY_DATES[1] // 100) * 100 + rng.randint(1, 28)
                items.append({"id": pid, "month": month_add(202301, rng.randrange(PAY_MONTHS)), "city": "110000",
                              "type": rng.choice(("pension", "medical")), "amount": rng.randint(1, 5000),
                              "date": date})
                want.append({"ok": True})
            return {"key": key, "method": "payment.apply", "params": {"idem": key, "items": items},
                    "want": {"results": want}}
        ids = rng.sample(self.put_ids, rng.randint(1, 2))
        versions = {pid: self.version[pid] + 1 + rng.randint(0, 3) for pid in ids}
        persons = [put_version(pid, versions[pid]) for pid in ids]
        return {"key": key, "method": "person.put", "params": {"idem": key, "persons": persons},
                "want": {"results": [{"id": pid, "ok": True} for pid in ids]}, "versions": versions}

    def apply(self, op):
        """op is now acknowledged: the model follows it."""
        if op["method"] == "payment.apply":
            for it in op["params"]["items"]:
                if it["month"] == NO_SLOT_MONTH:
                    continue
                s = self.paid[(it["id"], it["month"], it["type"])]
                s[0] += it["amount"]
                s[1] = max(s[1], it["date"])
        else:
            self.version.update(op["versions"])

    def touched(self, op):
        if op["method"] == "payment.apply":
            return sorted({it["id"] for it in op["params"]["items"] if it["month"] != NO_SLOT_MONTH})
        return sorted(op["versions"])

    def expected(self, pid):
        """The person as the model has it, ready for person_norm."""
        if pid in self.version:
            return put_version(pid, self.version[pid])
        p = pay_person(pid)
        for s in p["slots"]:
            s["paid"], s["paid_date"] = self.paid[(pid, s["month"], s["type"])]
        return p


def writer_loop(wr, port, stop, rng, seed):
    """Writes until stop or the connection ends; the unanswered write is wr.in_flight."""
    try:
        conn = Conn(port)
    except ConnLost:
        return
    try:
        while not stop.is_set():
            op = wr.next_op(rng, seed)
            wr.in_flight = op
            try:
                e, r = conn.call(op["method"], op["params"])
            except ConnLost:
                return
            wr.in_flight = None
            if e is not None or r != op["want"]:
                wr.error = "%s %s answered error=%r result=%r, want %r" % (op["method"], op["key"], e, r,
                                                                           op["want"])
                return
            wr.apply(op)
            wr.acked.append((op, r))
    except Exception as ex:  # a hang (socket.timeout) or a protocol fault
        wr.error = "writer %d: %s: %s" % (wr.w, type(ex).__name__, ex)
    finally:
        conn.close()


def reader_loop(port, ids, stop, rng, out):
    try:
        conn = Conn(port)
    except ConnLost:
        return
    try:
        while not stop.is_set():
            if rng.random() < 0.3:
                r = conn.ok("ping", {})
                if r.get("pong") is not True:
                    out["error"] = "ping answered %r" % r
                    return
            else:
                pick = rng.sample(ids, rng.randint(1, 8))
                r = conn.ok("arrears.compute", {"as_of": AS_OF, "ids": pick})
                got = [x.get("id") for x in r["results"]]
                bad = [x for x in r["results"] if "error" in x]
                if got != pick or bad:
                    out["error"] = "arrears.compute by ids answered %r" % (bad or got)
                    return
            out["reads"] = out.get("reads", 0) + 1
    except ConnLost:
        return
    except Exception as ex:
        out["error"] = "reader: %s: %s" % (type(ex).__name__, ex)
    finally:
        conn.close()


# ====================================================================== server

class Daemon:
    """arrearsd on the fixed port; every instance appends to one log file."""

    def __init__(self, data, port, log_path, label):
        self.log_path = log_path
        with open(log_path, "ab") as f:
            f.write(("=== soak: %s\n" % label).encode())
            self.offset = f.tell()
        self.logf = open(log_path, "ab")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([ARREARSD, "--listen", "127.0.0.1:%d" % port, "--data", data],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.logf)
        self.logf.close()

    def log(self):
        """This instance's part of the log (and, interleaved, a dying predecessor's)."""
        with open(self.log_path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def wait_listen(self, port, limit_s):
        """Seconds until event=listen; raises AssertionError on exit or after limit_s."""
        want = "event=listen addr=127.0.0.1 port=%d " % port
        while True:
            if want in self.log():
                return time.monotonic() - self.t0
            if self.proc.poll() is not None:
                raise AssertionError("arrearsd exited %d before listening:\n%s" % (self.proc.returncode,
                                                                                   self.log()[-3000:]))
            if time.monotonic() - self.t0 > limit_s:
                raise AssertionError("arrearsd did not log event=listen within %.1f s:\n%s"
                                     % (limit_s, self.log()[-3000:]))
            time.sleep(0.002)


# ====================================================================== test

class SoakTest(unittest.TestCase):
    maxDiff = 3000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="arrears-soak-")
        self.data = os.path.join(self.tmp, "store")
        self.log_path = os.path.join(self.tmp, "arrearsd.log")
        self.daemon = None
        self.keep = True

    def tearDown(self):
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.daemon.proc.kill()
            self.daemon.proc.wait(timeout=30)
        if self.keep:
            print("kept for inspection: store %s, log %s" % (self.data, self.log_path))
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def check_person(self, conn, wr, pid, what, alternative=None):
        """The stored person is the model's, or (when given) the alternative; which one."""
        e, r = conn.call("person.get", {"id": pid})
        self.assertIsNone(e, "%s: person.get %s: %r" % (what, pid, e))
        got = person_norm(r)
        if got == person_norm({"person": wr.expected(pid)}):
            return "model"
        if alternative is not None and got == person_norm({"person": alternative}):
            return "alternative"
        want = person_norm({"person": wr.expected(pid)})
        msg = "%s: person %s is not the acknowledged state (%s)" % (what, pid, first_difference(got, want))
        if alternative is not None:
            msg += " nor the in-flight write (%s)" % first_difference(got, person_norm({"person": alternative}))
        self.fail(msg)

    def settle_in_flight(self, conn, wr, stats, rnd):
        """The write unanswered at the kill: there whole or not at all, then
        retried with its key: replayed if there, applied once if not."""
        op = wr.in_flight
        what = "round %d, writer %d, in-flight %s %s" % (rnd, wr.w, op["method"], op["key"])
        ids = wr.touched(op)
        shadow = Writer(wr.w)  # the model with op applied
        shadow.paid = {k: list(v) for k, v in wr.paid.items()}
        shadow.version = dict(wr.version)
        shadow.apply(op)
        seen = {pid: self.check_person(conn, wr, pid, what + " (before the retry)", shadow.expected(pid))
                for pid in ids}
        states = set(seen.values())
        self.assertLessEqual(len(states), 1, "%s: half written: %r" % (what, seen))
        was_there = states == {"alternative"}
        e, r = conn.call(op["method"], op["params"])
        self.assertIsNone(e, "%s: retry answered %r" % (what, e))
        self.assertEqual(r, op["want"], "%s: retry answer" % what)
        wr.apply(op)
        for pid in ids:
            self.check_person(conn, wr, pid, what + " (after the retry, %s)" % (
                "it was there: must replay" if was_there else "it was not there: must apply once"))
        if not ids:  # nothing it could change (only bad items): no way to tell
            stats["retry_unobservable"] += 1
        elif was_there:
            stats["retry_replayed"] += 1
        else:
            stats["retry_applied"] += 1
        wr.in_flight = None

    def check_all(self, conn, writers, what):
        for wr in writers:
            for pid in wr.pay_ids + wr.put_ids:
                if wr.in_flight is None or pid not in wr.touched(wr.in_flight):
                    self.check_person(conn, wr, pid, what)

    def replay_acked(self, conn, writers, rng, stats, rnd):
        """A few writes acknowledged this round, sent again: the first answer, nothing changes."""
        acked = [(wr, op, ans) for wr in writers for op, ans in wr.acked]
        for wr, op, ans in rng.sample(acked, min(3, len(acked))):
            e, r = conn.call(op["method"], op["params"])
            self.assertIsNone(e, "round %d: replay of acknowledged %s: %r" % (rnd, op["key"], e))
            self.assertEqual(r, ans, "round %d: replay of acknowledged %s" % (rnd, op["key"]))
            for pid in wr.touched(op):
                self.check_person(conn, wr, pid, "round %d: after the replay of %s" % (rnd, op["key"]))
            stats["acked_replays"] += 1

    def test_sigkill_rounds(self):
        seed = SEED if SEED is not None else random.SystemRandom().randrange(1, 1 << 31)
        print("\nsoak: seed %d, %d rounds (replay: --seed %d --rounds %d)" % (seed, ROUNDS, seed, ROUNDS))
        sys.stdout.flush()
        rng = random.Random(seed)
        port = free_port()
        writers = [Writer(w) for w in range(WRITERS)]
        pay_ids = [pid for wr in writers for pid in wr.pay_ids]
        stats = {k: 0 for k in ("acked", "in_flight", "retry_replayed", "retry_applied", "retry_unobservable",
                                "acked_replays", "reads", "bind_wait")}
        restart_s = []
        started = time.monotonic()

        self.daemon = Daemon(self.data, port, self.log_path, "setup")
        self.daemon.wait_listen(port, 15)
        conn = Conn(port)
        self.assertEqual(conn.ok("policy.put", {"policy": POLICY_A})["ok"], True)
        for wr in writers:
            persons = [pay_person(pid) for pid in wr.pay_ids] + [put_version(pid, 0) for pid in wr.put_ids]
            conn.ok("person.put", {"persons": persons})
        conn.close()

        for rnd in range(1, ROUNDS + 1):
            stop = threading.Event()
            reads = [{} for _ in range(READERS)]
            threads = [threading.Thread(target=writer_loop, args=(wr, port, stop, random.Random(
                "%d-%d-w%d" % (seed, rnd, wr.w)), seed)) for wr in writers]
            threads += [threading.Thread(target=reader_loop, args=(port, pay_ids, stop, random.Random(
                "%d-%d-r%d" % (seed, rnd, k)), reads[k])) for k in range(READERS)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(*KILL_AFTER_S))

            # SIGKILL, and at once the next server on the same store and port
            old = self.daemon
            old.proc.send_signal(signal.SIGKILL)
            self.daemon = Daemon(self.data, port, self.log_path, "round %d restart" % rnd)
            stop.set()
            old.proc.wait(timeout=30)
            self.assertEqual(old.proc.returncode, -signal.SIGKILL, "round %d: the server exited by itself "
                             "before the kill; its log:\n%s" % (rnd, old.log()[-3000:]))
            try:
                restart_s.append(self.daemon.wait_listen(port, RESTART_LIMIT_S))
            except AssertionError as e:
                self.fail("round %d: restart failed: %s" % (rnd, e))
            stats["bind_wait"] += "event=bind_wait" in self.daemon.log()
            for t in threads:
                t.join(IO_TIMEOUT_S + 5)
                self.assertFalse(t.is_alive(), "round %d: a client thread hangs after the kill" % rnd)
            for wr in writers:
                self.assertIsNone(wr.error, "round %d: %s" % (rnd, wr.error))
            for k in range(READERS):
                self.assertNotIn("error", reads[k], "round %d: %s" % (rnd, reads[k].get("error")))
                stats["reads"] += reads[k].get("reads", 0)

            # the invariants on the restarted server
            conn = Conn(port)
            what = "round %d, after the restart" % rnd
            self.check_all(conn, writers, what)
            for wr in writers:
                stats["acked"] += len(wr.acked)
                if wr.in_flight is not None:
                    stats["in_flight"] += 1
                    self.settle_in_flight(conn, wr, stats, rnd)
            self.replay_acked(conn, writers, rng, stats, rnd)
            self.check_all(conn, writers, "round %d, after the retries" % rnd)
            conn.close()
            for wr in writers:
                wr.acked = []
            if rnd % 50 == 0 or rnd == ROUNDS:
                print("  round %d: %d acknowledged writes so far, %.0f s" % (rnd, stats["acked"],
                                                                           time.monotonic() - started))
                sys.stdout.flush()

        self.daemon.proc.send_signal(signal.SIGTERM)
        rc = self.daemon.proc.wait(timeout=30)
        self.assertEqual(rc, 0, "exit status after SIGTERM:\n" + self.daemon.log()[-2000:])
        elapsed = time.monotonic() - started
        print("soak: seed %d: %d rounds in %.1f s (%.2f s a round)" % (seed, ROUNDS, elapsed, elapsed / ROUNDS))
        print("  acknowledged writes %d; reads %d; acknowledged writes replayed by key %d" % (
            stats["acked"], stats["reads"], stats["acked_replays"]))
        print("  writes in flight at a kill %d: retries replayed %d, applied %d, only bad items %d" % (
            stats["in_flight"], stats["retry_replayed"], stats["retry_applied"], stats["retry_unobservable"]))
        print("  restart (SIGKILL to event=listen) median %.3f s, max %.3f s; event=bind_wait in %d of %d restarts"
              % (statistics.median(restart_s), max(restart_s), stats["bind_wait"], len(restart_s)))
        self.keep = False


def main():
    global ARREARSD, ARREARS, ROUNDS, SEED
    parser = argparse.ArgumentParser()
    parser.add_argument("--arrearsd", default=ARREARSD)
    parser.add_argument("--arrears", default=ARREARS)  # the other tests' flag; the soak needs only arrearsd
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seed", type=int, default=None)
    args, rest = parser.parse_known_args()
    ARREARSD = os.path.abspath(args.arrearsd)
    ARREARS = os.path.abspath(args.arrears)
    ROUNDS, SEED = args.rounds, args.seed
    if not os.access(ARREARSD, os.X_OK) or ROUNDS < 1:
        print("no executable %s (make build/arrearsd), or --rounds below 1" % ARREARSD)
        print("0 passed, 1 failed")
        return 1
    return run_suite(sys.modules[__name__], rest)


if __name__ == "__main__":
    sys.exit(main())
