#!/usr/bin/python3
"""Deterministic fault injection (issue 8): seeded scenarios against ARREARSD_FAULTS.

    /usr/bin/python3 tests/faults.py --arrearsd build/arrearsd --arrears build/arrears
                                     [--scenarios N] [--seed BASE] [--keep-going K]

Scenario k runs with seed BASE+k (BASE is random unless given, and always
printed); everything a scenario does comes from its seed, so a failure
prints the one command that replays exactly that scenario
(`--seed S --scenarios 1`). The server runs with `--threads 1` (one event
loop, one worker), so its fault decisions replay closely too; the client's
timing is the machine's.

Once per run a base store is made: `arrears gen --persons 200 --seed 1
--city 110000`, plus, through the offline evaluator (`arrears eval --data`),
DEBTORS persons who owe every month for 40 years (ids 12..., so that a scan
from the start over 200 + DEBTORS persons returns exactly them, with
detail an answer of several MiB: many 512 KiB parts), PAY_PERSONS persons
that receive payments and PUT_PERSONS persons replaced by person.put (ids
65..., after every scan page). The expected answers of every read are
computed once on that store by the evaluator (the oracle): reads touch only
the generated persons and the debtors, which no write changes.

Each scenario, on its own copy of the base store:
1. starts arrearsd --threads 1 with ARREARSD_FAULTS: the scenario's seed and,
   drawn from it, a probability per site (send_short, send_again,
   send_reset, recv_nobufs, recv_again, recv_reset, commit_full, commit_io,
   alloc): each 0 with probability ZERO_SITE_P, else uniform 0..SITE_P_MAX;
2. runs 2-4 client connections from one thread (non-blocking sockets, one
   selector), each pipelining 1-6 requests deep: payment.apply (1-3 items,
   now and then one into a month without a slot: `not_found` at items[i]),
   person.put (1-2 put persons, each a new version; a person has one put
   in progress at a time), arrears.compute by ids (detail or not),
   years.compute by ids, an arrears.compute scan with detail over the whole
   read set (at least one per scenario), person.get, ping. Every write has
   an idem key. When a connection ends, it is reopened and every write whose
   answer did not come is sent again with the SAME key, as is a write
   answered `internal` or `overloaded` (nothing was written), up to
   MAX_ATTEMPTS sends; a write never answered after that is "unknown"
   (applied once or not at all);
3. checks:
   (a) the byte stream is msgpack-RPC responses, each to a request in flight
       on that connection, once, exactly one of error/result nil, until the
       connection ends (a truncated last message before the end is allowed);
       a connection with requests in flight that gets nothing for
       IO_TIMEOUT_S is a hang; reads equal the oracle's answers (or are
       `internal` errors: out of memory, storage fault, or `overloaded`:
       the worker queue full); person.get of a
       written person is one of its versions, never torn; writes answer
       exactly the expected result or `internal` with "storage full" /
       "storage fault" / "out of memory" or `overloaded` (anything
       else, conflict included, fails);
   (b) SIGTERM: the server exits 0 within STOP_GRACE_S and logs
       event=faults_injected (an abort, status 134, means its own
       accounting of connections, jobs or bytes broke: the log tail is
       printed);
   (c) the server is started again without faults on the same store: the
       written persons must equal the acknowledged writes plus a subset of
       the unknown ones, applied whole (one subset explaining every slot and
       person at once); then every unknown write is sent again with its key
       (replayed if it was there, applied once if not: the answer is the
       expected one either way), and a few acknowledged ones too (the first
       answer, nothing changes); then every written person must be exactly
       all acknowledged plus all unknown writes; the audit log must hold one
       record per write applied (server.stats' audit_records: the base
       store's plus the acknowledged and unknown writes; by key as well
       where the build serves audit.read), none for a write answered only
       with errors; the read set must still equal the oracle's, and the
       server must stop with status 0.

Prints the base seed first, a line per failure with its seed, the reproduce
command and the server's log tail, then totals (faults injected per site,
writes acknowledged / unknown / refused, replays) and `N passed, M failed`;
exits 1 on any failure. A failing scenario's store and logs are kept.
"""

import argparse
import errno
import itertools
import os
import random
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_server as ts  # noqa: E402
from test_server import (AS_OF, ERROR_NAMES, first_difference, make_id, month_add, packb, person_norm,  # noqa: E402
                         req, slot, unpacker)
from soak import NO_SLOT_MONTH, PAY_DATES, PAY_MONTHS, pay_person, put_version  # noqa: E402

SITES = ("send_short", "send_again", "send_reset", "recv_nobufs", "recv_again", "recv_reset",
         "commit_full", "commit_io", "alloc")
SITE_P_MAX = 0.2          # a site's probability is uniform 0..this ...
ZERO_SITE_P = 0.35        # ... or 0 with this probability
CONNS = (2, 4)            # client connections per scenario
DEPTH = (1, 6)            # requests in flight per connection
OPS = (60, 120)           # requests a connection starts (retries not counted)
SUBSET_OPS_MAX = 11       # unknown writes on shared persons: every subset tried up to this many
MAX_ATTEMPTS = 4          # sends of one write (the first and 3 retries)
MAX_OPENS = 25            # connections one client may open in a scenario
IO_TIMEOUT_S = 10.0       # requests in flight and nothing arrives for this long: a hang
STOP_GRACE_S = 15.0       # SIGTERM to exit
SCENARIO_LIMIT_S = 60.0   # the whole workload of one scenario

GEN_PERSONS = 200
DEBTORS = 4               # 40 years x 5 types unpaid each: ~2 MiB of detail together
DEBTOR_MONTHS = 480
PAY_PERSONS = 6
PUT_PERSONS = 6
PAY_TYPES = ("pension", "medical")
TYPES = ("pension", "medical", "unemployment", "injury", "maternity")

INTERNAL_WRITE = ("storage full: nothing was written", "storage fault: nothing was written",
                  "out of memory")
INTERNAL_READ = ("out of memory", "storage fault")
# What a failed job allocation answers (io/server.c job_submit false): the request never ran.
OVERLOADED = "too many requests queued; retry later"

ARREARSD = os.path.join(HERE, "..", "build", "arrearsd")
ARREARS = os.path.join(HERE, "..", "build", "arrears")


class Failure(Exception):
    """A broken invariant: the scenario fails with this message."""


# ====================================================================== the base store and the oracle

def debtor_id(j):
    return make_id("1201011970%02d01%03d" % (1 + j, 10 + 2 * j))


def pay_id(j):
    return make_id("650101198001%02d%03d" % (1 + j, 100 + j))


def put_id(j):
    return make_id("650102198102%02d%03d" % (1 + j, 500 + j))


def debtor(pid):
    return {"id": pid, "slots": [slot(month_add(198501, k), t, "employee", 600000)
                                 for k in range(DEBTOR_MONTHS) for t in TYPES]}


def eval_ok(msgs, data):
    out = ts.eval_run(msgs, data)
    for m in out:
        if m[2] is not None:
            raise Failure("oracle setup: %r" % (m[2],))
    return [m[3] for m in out]


class Base:
    """The base store and the oracle's answers on it."""

    def __init__(self, root):
        self.data = os.path.join(root, "base")
        ts.gen_store(self.data, GEN_PERSONS, 1)
        self.pay_ids = [pay_id(j) for j in range(PAY_PERSONS)]
        self.put_ids = [put_id(j) for j in range(PUT_PERSONS)]
        persons = ([debtor(debtor_id(j)) for j in range(DEBTORS)] + [pay_person(pid) for pid in self.pay_ids]
                   + [put_version(pid, 0) for pid in self.put_ids])
        eval_ok([req(1, "person.put", {"persons": persons})], self.data)
        self.read_ids = ts.stored_ids(self.data)[:GEN_PERSONS + DEBTORS]
        assert self.read_ids[-DEBTORS:] == sorted(debtor_id(j) for j in range(DEBTORS)), self.read_ids[-5:]
        assert len(ts.stored_ids(self.data)) == GEN_PERSONS + DEBTORS + PAY_PERSONS + PUT_PERSONS
        n = len(self.read_ids)
        msgs = [req(1, "arrears.compute", {"as_of": AS_OF, "ids": self.read_ids}),
                req(2, "arrears.compute", {"as_of": AS_OF, "ids": self.read_ids, "detail": True}),
                req(3, "years.compute", {"as_of": AS_OF, "ids": self.read_ids}),
                req(4, "arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": n}, "detail": True}),
                req(5, "arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": 100000}})]
        msgs += [req(10 + i, "person.get", {"id": pid}) for i, pid in enumerate(self.read_ids)]
        out = eval_ok(msgs, self.data)
        # per person, and the rest of a result map (whatever else it carries)
        self.per = {}
        self.rest = {}
        for key, r in zip(("arrears", "arrears_detail", "years"), out[:3]):
            self.per[key] = dict(zip(self.read_ids, r["results"]))
            self.rest[key] = {k: v for k, v in r.items() if k != "results"}
        self.scan = out[3]
        self.scan_all = out[4]
        self.scan_limit = n
        self.person = {pid: person_norm(r) for pid, r in zip(self.read_ids, out[5:])}
        self.scan_bytes = len(packb(self.scan))
        self.audit_records = eval_ok([req(1, "server.stats", {})], self.data)[0]["store"]["audit_records"]

    def expected_compute(self, key, ids):
        r = dict(self.rest[key])
        r["results"] = [self.per[key][pid] for pid in ids]
        if "policies" in r:  # SPEC 3.4: the revisions of the cities these persons' slots read
            cities = {s["city"] for pid in ids for s in self.person[pid]["person"]["slots"]}
            r["policies"] = {c: n for c, n in r["policies"].items() if c in cities}
        return r


# ====================================================================== the workload

class Op:
    """One request; a write keeps its key and payload over every send."""

    def __init__(self, kind, method, params, want=None, **extra):
        self.kind = kind            # "write" or "read"
        self.method = method
        self.params = params
        self.want = want            # a write's expected result
        self.outcomes = []          # a write's sends: "ok", "internal", "lost"
        self.answer = None          # a write's first ok answer
        self.__dict__.update(extra)

    def key(self):
        return self.params.get("idem")

    def fate(self):
        """applied (acknowledged), unknown (maybe applied once), refused (never written), pending."""
        if "ok" in self.outcomes:
            return "applied"
        if len(self.outcomes) < MAX_ATTEMPTS:
            return "pending"
        return "unknown" if "lost" in self.outcomes else "refused"


class Model:
    """What the scenario wrote, and the rules for what is stored."""

    def __init__(self, base, seed):
        self.base = base
        self.seed = seed
        self.writes = []                     # every write Op, in order of creation
        self.busy = set()                    # put persons with a put in progress
        self.frozen = set()                  # put persons whose last put is unknown
        self.versions = {pid: [0] for pid in base.put_ids}  # every version ever sent
        self.next_version = {pid: 1 for pid in base.put_ids}
        self.serial = 0

    def new_key(self, conn):
        self.serial += 1
        return "faults-%d-c%d-%d" % (self.seed, conn, self.serial)

    def payment(self, rng, conn):
        key = self.new_key(conn)
        items, want = [], []
        for i in range(rng.randint(1, 3)):
            pid = rng.choice(self.base.pay_ids)
            if rng.random() < 0.05:
                items.append({"id": pid, "month": NO_SLOT_MONTH, "city": "110000", "type": "pension",
                              "amount": 1, "date": PAY_DATES[0]})
                want.append({"error": {"code": 4, "name": "not_found", "message": "no such slot",
                                       "at": "items[%d]" % i}})
                continue
            date = rng.randint(PAY_DATES[0] // 100, PAY_DATES[1] // 100) * 100 + rng.randint(1, 28)
            items.append({"id": pid, "month": month_add(202301, rng.randrange(PAY_MONTHS)), "city": "110000",
                          "type": rng.choice(PAY_TYPES), "amount": rng.randint(1, 5000), "date": date})
            want.append({"ok": True})
        op = Op("write", "payment.apply", {"idem": key, "items": items}, {"results": want})
        self.writes.append(op)
        return op

    def put(self, rng, conn):
        free = [pid for pid in self.base.put_ids if pid not in self.busy and pid not in self.frozen]
        if not free:
            return None
        ids = rng.sample(free, min(len(free), rng.randint(1, 2)))
        versions = {}
        for pid in ids:
            versions[pid] = self.next_version[pid] + rng.randint(0, 2)
            self.next_version[pid] = versions[pid] + 1
            self.versions[pid].append(versions[pid])
            self.busy.add(pid)
        key = self.new_key(conn)
        op = Op("write", "person.put", {"idem": key, "persons": [put_version(pid, versions[pid]) for pid in ids]},
                {"results": [{"id": pid, "ok": True} for pid in ids]}, versions=versions)
        self.writes.append(op)
        return op

    def settled(self, op):
        """A write's fate is known: its put persons are free again (or frozen)."""
        if op.method == "person.put" and op.fate() != "pending":
            for pid in op.versions:
                self.busy.discard(pid)
                if op.fate() == "unknown":
                    self.frozen.add(pid)

    def groups(self, ops):
        """The ops in groups that touch disjoint facts (each group's subsets are tried alone)."""
        groups = []
        for op in ops:
            mine = touched(op)
            joined = [g for g in groups if any(mine & touched(o) for o in g)]
            merged = [op] + [o for g in joined for o in g]
            groups = [g for g in groups if g not in joined] + [merged]
        return groups

    def state(self, applied):
        """The facts of the written persons after the writes in `applied` (in creation order)."""
        paid = {(pid, month_add(202301, k), t): [0, 0]
                for pid in self.base.pay_ids for k in range(PAY_MONTHS) for t in PAY_TYPES}
        version = {pid: 0 for pid in self.base.put_ids}
        for op in self.writes:
            if op not in applied:
                continue
            if op.method == "payment.apply":
                for it in op.params["items"]:
                    if it["month"] != NO_SLOT_MONTH:
                        s = paid[(it["id"], it["month"], it["type"])]
                        s[0] += it["amount"]
                        s[1] = max(s[1], it["date"])
            else:
                version.update(op.versions)
        out = {("slot", pid, month, t): tuple(v) for (pid, month, t), v in paid.items()}
        for pid in self.base.pay_ids:
            out[("shape", pid)] = shape(person_norm({"person": pay_person(pid)}))
        for pid in self.base.put_ids:
            out[("put", pid)] = person_norm({"person": put_version(pid, version[pid])})
        return out


def shape(person):
    """A payment person without what payments change."""
    return [{k: v for k, v in s.items() if k not in ("paid", "paid_date")} for s in person["person"]["slots"]]


def facts(persons, pay_ids):
    """What the checks compare, from person.get answers: every payment slot's
    (paid, paid_date), every payment person's shape, every put person whole."""
    out = {}
    for pid, p in persons.items():
        if pid in pay_ids:
            out[("shape", pid)] = shape(p)
            for s in p["person"]["slots"]:
                out[("slot", pid, s["month"], s["type"])] = (s["paid"], s["paid_date"])
        else:
            out[("put", pid)] = p
    return out


def touched(op):
    """The facts a write changes: a payment's slots (its bad items change nothing), a put's persons."""
    if op.method == "payment.apply":
        return {("slot", it["id"], it["month"], it["type"]) for it in op.params["items"]
                if it["month"] != NO_SLOT_MONTH}
    return {("put", pid) for pid in op.versions}


def make_read(rng, base):
    x = rng.random()
    ids = base.read_ids
    if x < 0.30:
        pick = rng.sample(ids, rng.randint(1, 8))
        detail = rng.random() < 0.3
        if detail and any(pid.startswith("12") for pid in pick) and rng.random() < 0.7:
            pick = [pid for pid in pick if not pid.startswith("12")] or pick[:1]
        params = {"as_of": AS_OF, "ids": pick}
        if detail:
            params["detail"] = True
        return Op("read", "arrears.compute", params, check="compute",
                  expect=base.expected_compute("arrears_detail" if detail else "arrears", pick))
    if x < 0.42:
        pick = rng.sample(ids, rng.randint(1, 8))
        return Op("read", "years.compute", {"as_of": AS_OF, "ids": pick}, check="compute",
                  expect=base.expected_compute("years", pick))
    if x < 0.47:
        return scan_op(base)
    if x < 0.70:
        pid = rng.choice(ids)
        return Op("read", "person.get", {"id": pid}, check="person", expect=base.person[pid])
    if x < 0.80:
        pid = rng.choice(base.pay_ids + base.put_ids)
        return Op("read", "person.get", {"id": pid}, check="written", pid=pid)
    return Op("read", "ping", {}, check="ping")


def scan_op(base):
    return Op("read", "arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": base.scan_limit},
                                          "detail": True}, check="compute", expect=base.scan)


# ====================================================================== the client

class Client:
    """One client: its connection (reopened when it ends), its pipeline, its retries."""

    def __init__(self, index, port, seed, scenario):
        self.index = index
        self.port = port
        self.sc = scenario
        self.rng = random.Random("%d-client-%d" % (seed, index))
        self.depth = self.rng.randint(*DEPTH)
        self.ops_left = self.rng.randint(*OPS)
        self.retry = []               # writes to send again
        self.sock = None
        self.opens = 0
        if index == 0:
            self.retry.append(scan_op(scenario.base))  # at least one scan per scenario
        self.open()

    def open(self):
        self.opens += 1
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.unp = unpacker()
        self.out = bytearray()
        self.inflight = {}            # msgid -> Op
        self.heard_at = time.monotonic()
        self.sc.sel.register(self.sock, selectors.EVENT_READ, self)

    def work_left(self):
        return self.ops_left > 0 or self.retry or self.inflight

    def next_op(self):
        if self.retry:
            return self.retry.pop(0)
        if self.ops_left == 0:
            return None
        self.ops_left -= 1
        x = self.rng.random()
        op = None
        if x < 0.32:
            op = self.sc.model.payment(self.rng, self.index)
        elif x < 0.45:
            op = self.sc.model.put(self.rng, self.index)
        return op if op is not None else make_read(self.rng, self.sc.base)

    def fill(self):
        """Keeps `depth` requests in flight."""
        while self.sock is not None and len(self.inflight) < self.depth:
            op = self.next_op()
            if op is None:
                break
            msgid = self.sc.new_msgid()
            self.inflight[msgid] = op
            self.out += packb(req(msgid, op.method, op.params))
            self.sc.stats["requests"] += 1
        self.want_write()

    def want_write(self):
        if self.sock is not None:
            self.sc.sel.modify(self.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if self.out else 0), self)

    def on_write(self):
        try:
            n = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.lost("send: %s" % errno.errorcode.get(e.errno, e))
            return
        del self.out[:n]
        self.want_write()

    def on_read(self):
        try:
            data = self.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.lost("recv: %s" % errno.errorcode.get(e.errno, e))
            return
        if not data:
            self.lost("eof")
            return
        self.heard_at = time.monotonic()
        self.sc.stats["bytes_received"] += len(data)
        self.unp.feed(data)
        try:
            msgs = list(self.unp)
        except Exception as e:  # msgpack's FormatError, StackError, ExtraData, ...
            raise Failure("client %d: bytes that are not msgpack before the connection ended: %s: %s"
                          % (self.index, type(e).__name__, e))
        for m in msgs:
            self.answer(m)
        self.fill()

    def answer(self, m):
        if not (isinstance(m, list) and len(m) == 4 and m[0] == 1 and isinstance(m[1], int)):
            raise Failure("client %d: not a msgpack-RPC response: %.300r" % (self.index, m))
        op = self.inflight.pop(m[1], None)
        if op is None:
            raise Failure("client %d: a response to msgid %r, not in flight on this connection" % (self.index, m[1]))
        err, res = m[2], m[3]
        what = "client %d: %s msgid %d %s" % (self.index, op.method, m[1], op.key() or "")
        if (err is None) == (res is None):
            raise Failure("%s: error %.200r and result %.200r: exactly one must be nil" % (what, err, res))
        if err is not None:
            check_error(err, what)
        if op.kind == "write":
            self.sc.write_answered(op, err, res, what, self)
        else:
            self.sc.read_answered(op, err, res, what)

    def lost(self, why):
        """The connection ended: unanswered writes go again (same key), unanswered reads are dropped."""
        self.sc.stats["closes"] += 1
        self.sc.sel.unregister(self.sock)
        self.sock.close()
        self.sock = None
        for op in self.inflight.values():
            if op.kind == "write":
                op.outcomes.append("lost")
                self.sc.requeue(op, self)
            else:
                self.sc.stats["reads_lost"] += 1
        self.inflight = {}
        if not self.work_left():
            return
        if self.opens >= MAX_OPENS:
            for op in self.retry:
                if op.kind == "write":
                    while op.fate() == "pending":
                        op.outcomes.append("lost")
                    self.sc.model.settled(op)
            self.retry = []
            self.ops_left = 0
            return
        self.open()
        self.fill()


def check_error(err, what):
    if not isinstance(err, dict) or not isinstance(err.get("code"), int) or not isinstance(err.get("message"), str):
        raise Failure("%s: malformed error %.300r" % (what, err))
    if ERROR_NAMES.get(err["code"]) != err.get("name"):
        raise Failure("%s: error code %r named %r" % (what, err["code"], err.get("name")))


class Scenario:
    def __init__(self, base, seed, root, stats):
        self.base = base
        self.seed = seed
        self.dir = os.path.join(root, "scenario-%d" % seed)
        self.data = os.path.join(self.dir, "store")
        self.stats = stats
        self.msgid = 0
        self.model = Model(base, seed)
        rng = random.Random(seed)
        self.probs = {s: 0.0 if rng.random() < ZERO_SITE_P else round(rng.uniform(0, SITE_P_MAX), 4) for s in SITES}
        self.conn_count = rng.randint(*CONNS)
        self.spec = "seed=%d," % seed + ",".join("%s=%g" % (s, self.probs[s]) for s in SITES)
        self.replay_rng = random.Random("%d-replay" % seed)
        self.server = None
        self.logs = []

    def new_msgid(self):
        self.msgid += 1
        return self.msgid

    # ---- answers

    def write_answered(self, op, err, res, what, client):
        if err is None:
            if res != op.want:
                raise Failure("%s answered %.300r, want %.300r" % (what, res, op.want))
            op.outcomes.append("ok")
            op.answer = res
            self.model.settled(op)
            return
        if err["code"] == 7 and err["message"] == OVERLOADED:
            self.stats["write_overloaded"] += 1
        elif err["code"] == 9 and err["message"].startswith(INTERNAL_WRITE):
            self.stats["write_internal"] += 1
        else:
            raise Failure("%s answered error %r: only internal (storage full/fault, out of memory) or overloaded "
                          "(the job not queued) may be" % (what, err))
        op.outcomes.append("internal")
        self.requeue(op, client)

    def requeue(self, op, client):
        if op.fate() == "pending":
            client.retry.append(op)
            self.stats["write_resends"] += 1
        else:
            self.model.settled(op)

    def read_answered(self, op, err, res, what):
        if err is not None:
            if err["code"] == 7 and err["message"] == OVERLOADED:
                self.stats["read_overloaded"] += 1
            elif err["code"] == 9 and err["message"].startswith(INTERNAL_READ):
                self.stats["read_internal"] += 1
            else:
                raise Failure("%s answered error %r" % (what, err))
            return
        if op.check == "ping":
            if not isinstance(res, dict) or res.get("pong") is not True:
                raise Failure("%s answered %.200r" % (what, res))
        elif op.check == "person":
            if person_norm(res) != op.expect:
                raise Failure("%s: %s" % (what, first_difference(person_norm(res), op.expect)))
        elif op.check == "written":
            self.check_written(op.params["id"], res, what)
        else:
            got = res
            if isinstance(res, dict) and isinstance(res.get("results"), list):
                # a person's internal error (storage fault, out of memory) stands in for its result
                got = dict(res)
                got["results"] = list(res["results"])
                for i, (r, w) in enumerate(zip(got["results"], op.expect["results"])):
                    if isinstance(r, dict) and "error" in r and r["error"].get("code") == 9:
                        check_error(r["error"], what)
                        self.stats["read_person_internal"] += 1
                        got["results"][i] = w
            if got != op.expect:
                raise Failure("%s differs from the oracle: %s" % (what, first_difference(got, op.expect)))
            if op.params.get("scan"):
                self.stats["scans_whole"] += 1
        self.stats["reads_checked"] += 1

    def check_written(self, pid, res, what):
        """A written person read during the run: whole, one of its versions."""
        got = person_norm(res)
        if pid in self.model.versions:
            if not any(got == person_norm({"person": put_version(pid, v)}) for v in self.model.versions[pid]):
                raise Failure("%s: person %s is none of the versions sent (torn?)" % (what, pid))
            return
        want = person_norm({"person": pay_person(pid)})
        strip = [{k: v for k, v in s.items() if k not in ("paid", "paid_date")} for s in got["person"]["slots"]]
        if strip != [{k: v for k, v in s.items() if k not in ("paid", "paid_date")} for s in want["person"]["slots"]]:
            raise Failure("%s: payment person %s changed shape: %s" % (what, pid, first_difference(got, want)))

    # ---- the phases

    def start(self, faults):
        if faults:
            os.environ["ARREARSD_FAULTS"] = self.spec
        try:
            # A 16 MiB answer budget: parts of 512 KiB (bulk parts need 4.5 MiB
            # in an eighth of it), so that the debtors' scan comes in many parts.
            self.server = ts.Server(self.data, self.dir, ["--threads", "1", "--max-answer-memory", str(16 << 20)])
        finally:
            os.environ.pop("ARREARSD_FAULTS", None)
        self.logs.append(self.server.log_path)
        return self.server

    def stop(self, what):
        s = self.server
        self.server = None
        try:
            rc = s.stop(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            s.kill()
            raise Failure("%s: no exit within %.0f s of SIGTERM" % (what, STOP_GRACE_S))
        if rc != 0:
            raise Failure("%s: exit status %d after SIGTERM (134/-6: an internal assertion)" % (what, rc))
        return s.log()

    def run(self):
        shutil.copytree(self.base.data, self.data)
        self.start(True)
        self.workload()
        log = self.stop("the server under faults")
        m = re.search(r"event=faults_injected seed=(\d+) (.*)", log)
        if not m or int(m.group(1)) != self.seed:
            raise Failure("no event=faults_injected seed=%d in the log" % self.seed)
        injected = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2)))
        for s in SITES:
            self.stats["injected_" + s] += injected.get(s, 0)
        self.start(False)
        self.verify()
        self.stop("the server without faults")

    def workload(self):
        self.sel = selectors.DefaultSelector()
        clients = [Client(k, self.server.port, self.seed, self) for k in range(self.conn_count)]
        for c in clients:
            c.fill()
        started = time.monotonic()
        try:
            while any(c.work_left() for c in clients):
                for key, events in self.sel.select(0.05):
                    c = key.data
                    if events & selectors.EVENT_WRITE and c.sock is not None:
                        c.on_write()
                    if events & selectors.EVENT_READ and c.sock is not None:
                        c.on_read()
                now = time.monotonic()
                for c in clients:
                    if c.sock is not None and c.inflight and now - c.heard_at > IO_TIMEOUT_S:
                        raise Failure("client %d: %d requests in flight (msgids %s) and nothing for %.0f s: a hang"
                                      % (c.index, len(c.inflight), sorted(c.inflight)[:8], IO_TIMEOUT_S))
                if self.server.proc.poll() is not None:
                    raise Failure("the server exited (status %d) during the workload" % self.server.proc.returncode)
                if now - started > SCENARIO_LIMIT_S:
                    raise Failure("the workload did not finish within %.0f s" % SCENARIO_LIMIT_S)
        finally:
            for c in clients:
                if c.sock is not None:
                    self.sel.unregister(c.sock)
                    c.sock.close()
                    c.sock = None
            self.sel.close()
        for op in self.model.writes:
            if op.fate() == "pending":
                raise Failure("write %s still pending after the workload" % op.key())
            self.stats["writes_" + op.fate()] += 1

    def read_written(self, conn):
        ids = self.base.pay_ids + self.base.put_ids
        for i, pid in enumerate(ids):
            conn.send(req(i + 1, "person.get", {"id": pid}))
        got = {}
        for m in conn.read_n(len(ids), timeout=IO_TIMEOUT_S):
            if m[2] is not None:
                raise Failure("after the restart: person.get %s: %r" % (ids[m[1] - 1], m[2]))
            got[ids[m[1] - 1]] = person_norm(m[3])
        return facts(got, self.base.pay_ids)

    def differs(self, got, want, key):
        if key not in got:
            return "%s: not stored" % (key,)
        return "%s: %s" % (key, first_difference(got[key], want[key]))

    def verify(self):
        conn = self.server.connect(timeout=IO_TIMEOUT_S)
        try:
            self.verify_on(conn)
        finally:
            conn.close()

    def verify_on(self, conn):
        writes = self.model.writes
        applied = [op for op in writes if op.fate() == "applied"]
        unknown = [op for op in writes if op.fate() == "unknown"]
        got = self.read_written(conn)
        # (c) one subset of the unknown writes, each whole, explains every written person
        want = self.model.state(set(applied))
        if set(got) != set(want):
            raise Failure("after the restart: slots %s stored, %s expected"
                          % (sorted(set(got) - set(want))[:3], sorted(set(want) - set(got))[:3]))
        for group in self.model.groups(unknown):
            keys = sorted({key for op in group for key in touched(op)})
            if not keys:  # only items into months without a slot: nothing to see
                continue
            if len(group) > SUBSET_OPS_MAX:
                self.stats["subset_unchecked"] += 1
                continue
            subsets = (s for n in range(len(group) + 1) for s in itertools.combinations(group, n))
            match = next((s for s in subsets if all(self.model.state(set(applied) | set(s))[key] == got[key]
                                                    for key in keys)), None)
            if match is None:
                key = next((k for k in keys if want[k] != got[k]), keys[0])
                raise Failure("after the restart: no subset of the unknown writes %s with the %d acknowledged "
                              "explains the store (lost, doubled or torn write); against the acknowledged writes "
                              "alone %s; its writes: %s" % ([op.key() for op in group], len(applied),
                                                          self.differs(got, want, key), self.history(key)))
            self.stats["unknown_were_applied"] += len(match)
        others = set(want) - {key for op in unknown for key in touched(op)}
        for key in sorted(others):
            if got[key] != want[key]:
                raise Failure("after the restart: touched by no unknown write, not the acknowledged writes exactly "
                              "once: %s; its writes: %s" % (self.differs(got, want, key), self.history(key)))
        # the unknown writes again, same key: replayed or applied once, the expected answer either way
        for op in unknown:
            r = conn.call(op.method, op.params)
            if r[2] is not None or r[3] != op.want:
                raise Failure("after the restart: unknown write %s sent again answered %r %.300r, want %.300r"
                              % (op.key(), r[2], r[3], op.want))
        for op in self.replay_rng.sample(applied, min(3, len(applied))):
            r = conn.call(op.method, op.params)
            if r[2] is not None or r[3] != op.answer:
                raise Failure("after the restart: acknowledged write %s sent again answered %r %.300r, want its "
                              "first answer %.300r" % (op.key(), r[2], r[3], op.answer))
            self.stats["acked_replays"] += 1
        want = self.model.state(set(applied) | set(unknown))
        got = self.read_written(conn)
        for key in sorted(want):
            if got.get(key) != want[key]:
                raise Failure("after the retries: not every acknowledged and unknown write exactly once: %s; its "
                              "writes: %s" % (self.differs(got, want, key), self.history(key)))
        self.check_audit(conn, applied + unknown, [op for op in writes if op.fate() == "refused"])
        r = conn.call("arrears.compute", {"as_of": AS_OF, "scan": {"after": None, "limit": 100000}})
        if r[2] is not None:
            raise Failure("after the restart: the scan answered %r" % (r[2],))
        got_scan = dict(r[3], results=[x for x in r[3]["results"] if x["id"] in self.base.per["arrears"]])
        want_scan = dict(self.base.scan_all,
                         results=[x for x in self.base.scan_all["results"] if x["id"] in self.base.per["arrears"]])
        if got_scan != want_scan or len(r[3]["results"]) != len(self.base.scan_all["results"]):
            raise Failure("after the restart: the read set or the person count changed: %s"
                          % first_difference(r[3], self.base.scan_all))

    def history(self, key):
        """The writes that change a fact: idem key, how each send ended, and what it writes there."""
        out = []
        for op in self.model.writes:
            if key in touched(op):
                what = op.versions[key[1]] if op.method == "person.put" else [
                    (it["amount"], it["date"]) for it in op.params["items"]
                    if ("slot", it["id"], it["month"], it["type"]) == key]
                out.append("%s %s %s" % (op.key(), "/".join(op.outcomes), what))
        return "; ".join(out) or "none"

    def check_audit(self, conn, written, refused):
        """Each write once in the audit log: by its key where audit.read exists (SPEC §6),
        else by the count of records (server.stats)."""
        r = conn.call("server.stats", {})
        count = r[3]["store"]["audit_records"] if r[2] is None else None
        if count != self.base.audit_records + len(written):
            raise Failure("audit log: %r records, want %d before the scenario + %d writes applied once"
                          % (count, self.base.audit_records, len(written)))
        prefix = "faults-%d-" % self.seed
        seen = {}
        after = None
        while True:
            r = conn.call("audit.read", {"after": after, "limit": 10000})
            if r[2] is not None and r[2].get("code") == 2:
                return  # not served by this build: the count above must do
            if r[2] is not None:
                raise Failure("audit.read answered %r" % (r[2],))
            for rec in r[3]["records"]:
                idem = rec.get("idem")
                if isinstance(idem, str) and idem.startswith(prefix):
                    seen[idem] = seen.get(idem, 0) + 1
            after = r[3].get("next")
            if after is None:
                break
        twice = sorted(k for k, n in seen.items() if n != 1)
        missing = sorted(op.key() for op in written if op.key() not in seen)
        extra = sorted(op.key() for op in refused if op.key() in seen)
        if twice or missing or extra:
            raise Failure("audit log: keys recorded more than once %s, written but not recorded %s, answered only "
                          "internal yet recorded %s" % (twice[:5], missing[:5], extra[:5]))

    def cleanup(self):
        if self.server is not None:
            self.server.kill()
            self.server = None

    def log_tail(self, lines=25):
        out = []
        for path in self.logs:
            try:
                with open(path, "rb") as f:
                    text = f.read().decode(errors="replace").splitlines()
            except OSError:
                continue
            out.append("--- %s (last %d of %d lines)" % (path, min(lines, len(text)), len(text)))
            out += text[-lines:]
        return "\n".join(out)


# ====================================================================== main

def new_stats():
    keys = ["requests", "bytes_received", "closes", "reads_checked", "reads_lost", "read_internal",
            "read_person_internal", "read_overloaded", "scans_whole", "write_internal", "write_overloaded", "write_resends", "writes_applied",
            "writes_unknown", "writes_refused", "unknown_were_applied", "subset_unchecked", "acked_replays"]
    return dict.fromkeys(keys + ["injected_" + s for s in SITES], 0)


def main():
    global ARREARSD, ARREARS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arrearsd", default=ARREARSD)
    parser.add_argument("--arrears", default=ARREARS)
    parser.add_argument("--scenarios", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None, help="base seed: scenario k uses seed BASE+k")
    parser.add_argument("--keep-going", type=int, default=5, help="stop after this many failed scenarios")
    args = parser.parse_args()
    ARREARSD = ts.ARREARSD = os.path.abspath(args.arrearsd)
    ARREARS = ts.ARREARS = os.path.abspath(args.arrears)
    if not os.access(ARREARSD, os.X_OK) or not os.access(ARREARS, os.X_OK) or args.scenarios < 1:
        print("no executable %s or %s (make build/arrearsd build/arrears), or --scenarios below 1"
              % (ARREARSD, ARREARS))
        print("0 passed, 1 failed")
        return 1
    base_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1 << 40)
    reproduce = "/usr/bin/python3 %s --seed %%d --scenarios 1 --arrearsd %s --arrears %s" % (
        os.path.relpath(os.path.abspath(__file__)), os.path.relpath(ARREARSD), os.path.relpath(ARREARS))
    print("faults: base seed %d, %d scenarios (scenario k: seed %d+k); replay the run: --seed %d --scenarios %d"
          % (base_seed, args.scenarios, base_seed, base_seed, args.scenarios))
    sys.stdout.flush()
    root = tempfile.mkdtemp(prefix="arrears-faults-")
    started = time.monotonic()
    base = Base(root)
    print("  base store: %d generated + %d debtors read, %d payment + %d put persons written; "
          "the scan answer %d bytes (%.1f parts of 512 KiB); %.1f s"
          % (GEN_PERSONS, DEBTORS, PAY_PERSONS, PUT_PERSONS, base.scan_bytes, base.scan_bytes / (512 << 10),
             time.monotonic() - started))
    stats = new_stats()
    failed = []
    ran = 0
    durations = []
    for k in range(args.scenarios):
        seed = base_seed + k
        sc = Scenario(base, seed, root, stats)
        t0 = time.monotonic()
        ran += 1
        try:
            sc.run()
            shutil.rmtree(sc.dir, ignore_errors=True)
        except (Failure, AssertionError, OSError, socket.timeout, subprocess.SubprocessError) as e:
            sc.cleanup()
            failed.append(seed)
            print("FAIL scenario %d, seed %d (%s): %s: %s" % (k, seed, sc.spec, type(e).__name__, e))
            print("  reproduce: " + reproduce % seed)
            print("  kept: %s" % sc.dir)
            print(sc.log_tail())
            sys.stdout.flush()
            if len(failed) >= args.keep_going:
                print("stopping after %d failed scenarios (--keep-going)" % len(failed))
                break
        durations.append(time.monotonic() - t0)
        if (k + 1) % 100 == 0:
            print("  %d scenarios, %d failed, %.0f s" % (k + 1, len(failed), time.monotonic() - started))
            sys.stdout.flush()
    elapsed = time.monotonic() - started
    durations.sort()
    print("faults: base seed %d: %d scenarios in %.1f s (per scenario median %.3f s, max %.3f s)"
          % (base_seed, ran, elapsed, durations[len(durations) // 2], durations[-1]))
    print("  injected: " + " ".join("%s=%d" % (s, stats["injected_" + s]) for s in SITES))
    print("  requests %d, connections ended %d, reads checked %d (whole scans %d), reads lost with their "
          "connection %d, reads answered internal %d (+%d persons), overloaded %d"
          % (stats["requests"], stats["closes"], stats["reads_checked"], stats["scans_whole"], stats["reads_lost"],
             stats["read_internal"], stats["read_person_internal"], stats["read_overloaded"]))
    print("  writes: acknowledged %d, unknown %d (of which found applied %d), refused (only internal) %d; "
          "internal answers %d, overloaded answers %d, resends %d; acknowledged replayed after the restart %d; "
          "scenarios with too many unknown writes to try every subset %d"
          % (stats["writes_applied"], stats["writes_unknown"], stats["unknown_were_applied"],
             stats["writes_refused"], stats["write_internal"], stats["write_overloaded"], stats["write_resends"],
             stats["acked_replays"], stats["subset_unchecked"]))
    if failed:
        print("  failed seeds: %s" % " ".join(str(s) for s in failed))
    else:
        shutil.rmtree(root, ignore_errors=True)
    print("%d passed, %d failed" % (ran - len(failed), len(failed)))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
