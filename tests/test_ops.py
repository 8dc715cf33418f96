#!/usr/bin/python3
"""Operations end to end (issue 9): the audit log, backup and verify,
idempotency retention.

    /usr/bin/python3 tests/test_ops.py --arrearsd build/arrearsd --arrears build/arrears [TestName ...]

Servers, clients and the oracle are tests/test_server.py's. Expected values
come from the spec (SPEC §5.1 audit.read: `next` as scan's, the last
sequence returned when `limit` records were returned, else nil) and from
counting by hand what each test wrote.

Covered:
- audit.read paging: pages join to the whole log, sequences 1..N without a
  gap, `next` exact on full and short pages and past the end; `after` and
  `limit` validated (invalid_argument at "after"/"limit", 10000 accepted,
  10001 not); unauthorized before `auth` when a token is set; the records
  of person.put/payment.apply/person.delete name method, idem and persons;
- `import` and `gen --data` write one record per committed batch with the
  number of persons written (rejected persons not counted);
- `arrears audit` prints the same records as JSON lines, `--after`/`--limit`;
- `arrears backup` of a live store while a writer thread keeps doing
  person.put and payment.apply: every write acknowledged before the backup
  began is in it, a second server on the copy serves every person, `arrears
  verify` passes on it; a second backup into the same place is refused;
- `arrears verify` exits 1 and names the problem (a timeline that does not
  decode, with the id masked; a gap in the audit sequence);
- retention on a clock the test moves (ARREARSD_TEST_CLOCK_OFFSET_MS): a
  key replayed after the retention runs as a new request, one within it
  still answers conflict for another payload, and with
  --idem-retention-days 0 nothing is purged; a purge of 60,000 expired
  records runs in transactions of at most 512 deletions while person.put
  keeps being answered (the slowest write printed).

Prints `N passed, M failed` last and exits 1 on any failure.
"""

import ctypes
import json
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_server as ts  # noqa: E402
from test_server import ServerTest, err_part, make_id, slot, TIMEOUT_S  # noqa: E402

DAY_MS = 86400000


def arrears(*args, check=True, env=None):
    p = subprocess.run([ts.ARREARS] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=TIMEOUT_S * 4, env=env)
    if check and p.returncode != 0:
        raise AssertionError("arrears %s exited %d: %s" % (" ".join(map(str, args)), p.returncode,
                                                          p.stderr.decode(errors="replace")))
    return p


def audit_all(data):
    """Every record through `arrears eval --data` (the request path), pages of 10000."""
    out, after = [], None
    while True:
        r = ts.eval_run([ts.req(1, "audit.read", {"after": after, "limit": 10000})], data)[0]
        assert r[2] is None, r[2]
        out += r[3]["records"]
        if r[3]["next"] is None:
            return out
        after = r[3]["next"]


def person(n, paid=0):
    """A valid person of city 110000: one flexible pension slot, 202205."""
    pid = make_id("110101197001%02d%03d" % (1 + n // 1000 % 28, n % 1000))
    return pid, {"id": pid, "slots": [slot(202205, "pension", "flexible", 600000, paid, 20220601 if paid else 0)]}


class Lmdb:
    """Just enough of liblmdb through ctypes to damage a store on purpose."""

    class Val(ctypes.Structure):
        _fields_ = [("size", ctypes.c_size_t), ("data", ctypes.c_void_p)]

    def __init__(self, path):
        self.lib = ctypes.CDLL("liblmdb.so.0")
        self.env = ctypes.c_void_p()
        assert self.lib.mdb_env_create(ctypes.byref(self.env)) == 0
        assert self.lib.mdb_env_set_maxdbs(self.env, 16) == 0
        assert self.lib.mdb_env_set_mapsize(self.env, ctypes.c_size_t(1 << 30)) == 0
        assert self.lib.mdb_env_open(self.env, path.encode(), 0, 0o644) == 0

    def change(self, db, key, value):
        """Puts value under key (None: deletes the key) in one transaction."""
        txn, dbi = ctypes.c_void_p(), ctypes.c_uint()
        assert self.lib.mdb_txn_begin(self.env, None, 0, ctypes.byref(txn)) == 0
        assert self.lib.mdb_dbi_open(txn, db.encode(), 0, ctypes.byref(dbi)) == 0
        kbuf = ctypes.create_string_buffer(key, len(key))
        k = self.Val(len(key), ctypes.cast(kbuf, ctypes.c_void_p))
        if value is None:
            assert self.lib.mdb_del(txn, dbi, ctypes.byref(k), None) == 0
        else:
            vbuf = ctypes.create_string_buffer(value, len(value))
            v = self.Val(len(value), ctypes.cast(vbuf, ctypes.c_void_p))
            assert self.lib.mdb_put(txn, dbi, ctypes.byref(k), ctypes.byref(v), 0) == 0
        assert self.lib.mdb_txn_commit(txn) == 0

    def first(self, db):
        """The first (key, value) of a database."""
        txn, dbi, cur = ctypes.c_void_p(), ctypes.c_uint(), ctypes.c_void_p()
        assert self.lib.mdb_txn_begin(self.env, None, 0x20000, ctypes.byref(txn)) == 0  # MDB_RDONLY
        assert self.lib.mdb_dbi_open(txn, db.encode(), 0, ctypes.byref(dbi)) == 0
        assert self.lib.mdb_cursor_open(txn, dbi, ctypes.byref(cur)) == 0
        k, v = self.Val(), self.Val()
        assert self.lib.mdb_cursor_get(cur, ctypes.byref(k), ctypes.byref(v), 0) == 0  # MDB_FIRST
        out = ctypes.string_at(k.data, k.size), ctypes.string_at(v.data, v.size)
        self.lib.mdb_cursor_close(cur)
        self.lib.mdb_txn_abort(txn)
        return out

    def close(self):
        self.lib.mdb_env_close(self.env)


class TestAuditLog(ServerTest):
    def test_audit_read_pages_join_and_next_is_exact(self):
        data = self.path("store")
        ts.gen_store(data, 30, 3)
        s = self.start(data)
        c = self.connect(s)
        ids = []
        for n in range(3):
            pid, p = person(n)
            ids.append(pid)
            self.assertEqual(c.ok("person.put", {"persons": [p], "idem": "put-%d" % n})["results"][0]["ok"], True)
        c.ok("payment.apply", {"idem": "pay-1", "items": [{"id": ids[0], "month": 202205, "city": "110000",
                                                            "type": "pension", "amount": 1000, "date": 20240101}]})
        c.ok("person.delete", {"id": ids[2]})
        records = []
        after, pages = None, 0
        while True:
            page = c.ok("audit.read", {"after": after, "limit": 2})
            pages += 1
            got = page["records"]
            self.assertLessEqual(len(got), 2)
            # SPEC §5.1, as scan: next is the last seq when limit records came back, else nil
            self.assertEqual(page["next"], got[-1]["seq"] if len(got) == 2 else None, page)
            records += got
            if page["next"] is None:
                break
            after = page["next"]
        n = len(records)
        self.assertEqual([r["seq"] for r in records], list(range(1, n + 1)))
        self.assertEqual(pages, n // 2 + 1)  # a full last page is followed by an empty one
        gen = [r for r in records if r["method"] == "gen"]
        self.assertEqual(sum(r["persons"] for r in gen), 30)
        tail = records[-5:]  # what this test wrote, in order
        self.assertEqual([r["method"] for r in tail],
                         ["person.put"] * 3 + ["payment.apply", "person.delete"])
        self.assertEqual([r["idem"] for r in tail], ["put-0", "put-1", "put-2", "pay-1", None])
        self.assertEqual([r["persons"] for r in tail], [[ids[0]], [ids[1]], [ids[2]], [ids[0]], [ids[2]]])
        for r in tail:
            self.assertIsInstance(r["time_ms"], int)
            self.assertGreater(r["time_ms"], 1700000000000)
        # the last page exactly: after n-1 with limit 1 is full (next = n), after n is empty
        self.assertEqual(c.ok("audit.read", {"after": n - 1, "limit": 1})["next"], n)
        self.assertEqual(c.ok("audit.read", {"after": n, "limit": 10000}), {"records": [], "next": None})
        self.assertEqual(c.ok("audit.read", {"limit": 10000})["records"], records)  # after absent: from the first
        self.assertEqual(c.ok("audit.read", {"after": 2 ** 40, "limit": 1}), {"records": [], "next": None})
        for params, at in (({"after": None, "limit": 0}, "limit"), ({"after": None, "limit": 10001}, "limit"),
                           ({"after": None}, "limit"), ({"after": None, "limit": "5"}, "limit"),
                           ({"after": None, "limit": 5.0}, "limit"), ({"after": -1, "limit": 5}, "after"),
                           ({"after": "3", "limit": 5}, "after"), ({"after": 1.0, "limit": 5}, "after")):
            self.assertEqual(err_part(c.err("audit.read", params)), ts.error_of(3, at), params)
        self.stop(s)

    def test_audit_read_needs_auth_when_a_token_is_set(self):
        token = self.path("token")
        with open(token, "w") as f:
            f.write("t0ken\n")
        s = self.start(extra=["--token-file", token])
        c = self.connect(s)
        self.assertEqual(err_part(c.err("audit.read", {"after": None, "limit": 5})), ts.error_of(8))
        c.ok("auth", {"token": "t0ken"})
        self.assertEqual(c.ok("audit.read", {"after": None, "limit": 5}), {"records": [], "next": None})
        self.stop(s)

    def test_import_and_gen_write_a_record_per_batch_with_person_counts(self):
        city = self.path("city")
        arrears("gen", "--persons", 40, "--seed", 5, "--city", "110000", "--out", city)
        csv = os.path.join(city, "slots.csv")
        with open(csv) as f:
            lines = f.read().splitlines()
        distinct = len({line.split(",")[0] for line in lines[1:]})  # persons with a slot
        self.assertGreater(distinct, 30)
        bad = make_id("11010119800101999")
        with open(csv, "a") as f:
            f.write("%s,202213,110000,pension,flexible,600000,0,0,0\n" % bad)  # month 13: rejected
        data = self.path("imported")
        policies = sorted(os.path.join(city, p) for p in os.listdir(city) if p.startswith("policy-"))
        p = arrears("import", "--data", data, csv, *policies, check=False)
        self.assertEqual(p.returncode, 3, p.stderr)  # some persons left out
        records = audit_all(data)
        self.assertEqual([r["method"] for r in records[:len(policies)]], ["policy.put"] * len(policies))
        imports = records[len(policies):]
        self.assertGreaterEqual(len(imports), 1)
        self.assertEqual({r["method"] for r in imports}, {"import"})
        self.assertEqual(sum(r["persons"] for r in imports), distinct)  # the rejected person is not counted
        self.assertEqual({r["idem"] for r in imports}, {None})
        # gen --data: the same, method "gen"
        gdata = self.path("generated")
        ts.gen_store(gdata, 25, 9)
        gens = [r for r in audit_all(gdata) if r["method"] != "policy.put"]
        self.assertEqual({r["method"] for r in gens}, {"gen"})
        self.assertEqual(sum(r["persons"] for r in gens), len(ts.stored_ids(gdata)))

    def test_arrears_audit_prints_json_lines(self):
        data = self.path("store")
        ts.gen_store(data, 12, 4)
        s = self.start(data)
        c = self.connect(s)
        for n in range(3):
            c.ok("person.put", {"persons": [person(n)[1]], "idem": "cli-%d" % n})
        self.stop(s)
        want = audit_all(data)
        lines = arrears("audit", "--data", data).stdout.decode().splitlines()
        self.assertEqual([json.loads(line) for line in lines], want)
        lines = arrears("audit", "--data", data, "--after", 1, "--limit", 2).stdout.decode().splitlines()
        self.assertEqual([json.loads(line)["seq"] for line in lines], [2, 3])
        self.assertEqual(arrears("audit", "--data", data, "--after", len(want)).stdout, b"")
        self.assertEqual(arrears("audit", "--data", data, "--limit", 0, check=False).returncode, 2)


class TestBackupVerify(ServerTest):
    def test_backup_of_a_live_store_under_writes_opens_and_verifies(self):
        data = self.path("live")
        ts.gen_store(data, 3000, 6)
        before_ids = ts.stored_ids(data)
        s = self.start(data)
        acked = []  # ids whose person.put was answered
        stop = threading.Event()
        errors = []

        def writer():
            try:
                c = s.connect()
                n = 0
                while not stop.is_set():
                    pid, p = person(1000 + n)
                    r = c.call("person.put", {"persons": [p], "idem": "w-%d" % n})
                    assert r[2] is None, r[2]
                    acked.append(pid)
                    r = c.call("payment.apply", {"idem": "wp-%d" % n, "items": [
                        {"id": pid, "month": 202205, "city": "110000", "type": "pension", "amount": 500,
                         "date": 20240101}]})
                    assert r[2] is None and r[3]["results"][0] == {"ok": True}, r
                    n += 1
                c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        try:
            while len(acked) < 20 and not errors:
                time.sleep(0.01)
            self.assertEqual(errors, [])
            acked_before = list(acked)
            out = self.path("backup")
            p = arrears("backup", "--data", data, out, check=False)
            during = len(acked) - len(acked_before)
            time.sleep(0.05)
        finally:
            stop.set()
            t.join(TIMEOUT_S)
        self.assertEqual(errors, [])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertGreater(len(acked), len(acked_before), "the writer went on after the backup")
        print("\n    writes acknowledged while the backup ran: %d" % during, end=" ")
        self.assertTrue(os.path.exists(os.path.join(out, "data.mdb")))
        # never over an existing store
        p2 = arrears("backup", "--data", data, out, check=False)
        self.assertEqual(p2.returncode, 1)
        self.assertIn(b"exists", p2.stderr)
        self.stop(s)
        # the copy: verify passes, a second server serves every person written before it
        v = arrears("verify", "--data", out, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        backup_ids = set(ts.stored_ids(out))
        self.assertTrue(set(before_ids) <= backup_ids)
        self.assertTrue(set(acked_before) <= backup_ids)
        s2 = self.start(out)
        c2 = self.connect(s2)
        every = sorted(backup_ids)
        for i in range(0, len(every), 500):
            for pid in every[i:i + 500]:
                c2.send(ts.req(1, "person.get", {"id": pid}))
            for r in c2.read_n(len(every[i:i + 500])):
                self.assertIsNone(r[2], r)
        page = c2.ok("arrears.compute", {"as_of": ts.AS_OF, "scan": {"after": None, "limit": 100000}})
        self.assertEqual(len(page["results"]), len(every))
        # the audit log of the copy is whole: gap-free up to what it holds
        seqs = [r["seq"] for r in audit_all(out)]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
        self.stop(s2)

    def test_verify_names_a_corrupt_timeline_masked_and_an_audit_gap(self):
        data = self.path("store")
        ts.gen_store(data, 10, 2)
        self.assertEqual(arrears("verify", "--data", data, check=False).returncode, 0)
        missing = arrears("verify", "--data", self.path("no-such-store"), check=False)
        self.assertEqual(missing.returncode, 1)
        self.assertIn(b"no store", missing.stderr)
        self.assertFalse(os.path.exists(self.path("no-such-store")))
        bad = make_id("11010119700101123")
        db = Lmdb(data)
        db.change("persons", bad.encode(), b"\x01\xff\x05\x99\x99")  # 5 slots, runs that do not decode
        db.close()
        v = arrears("verify", "--data", data, check=False)
        self.assertEqual(v.returncode, 1)
        out = v.stdout.decode()
        self.assertIn("persons: %s********%s: the timeline does not decode" % (bad[:6], bad[14:]), out)
        self.assertNotIn(bad, out + v.stderr.decode())
        db = Lmdb(data)
        db.change("persons", bad.encode(), None)
        db.change("audit", (2).to_bytes(8, "big"), None)  # a hole after seq 1
        db.close()
        v = arrears("verify", "--data", data, check=False)
        self.assertEqual(v.returncode, 1)
        self.assertIn("audit: seq 3: a gap in the sequence: the previous record is 1", v.stdout.decode())
        self.assertEqual(len(v.stdout.decode().splitlines()), 1)
        # a revision 2 of a city without revision 1, whose document is not a policy
        db = Lmdb(data)
        db.change("policy_revisions", (990000).to_bytes(4, "big") + (2).to_bytes(4, "big"), bytes(8) + b"\xc0")
        db.close()
        v = arrears("verify", "--data", data, check=False)
        self.assertEqual(v.returncode, 1)
        self.assertEqual(v.stdout.decode().splitlines(), [
            "audit: seq 3: a gap in the sequence: the previous record is 1",
            "policy_revisions: 990000 revision 2: the revisions of the city have a gap",
            "policy_revisions: 990000 revision 2: the revision does not parse"])


    def test_verify_names_a_summary_its_timeline_does_not_make(self):
        """Issue 10: a person's value is format 2 (summary size, slot count,
        summary of core/summary.c, runs); verify remakes each summary made under
        the latest policies and names one that differs, or one that does not decode."""
        data = self.path("store")
        ts.gen_store(data, 10, 2)
        db = Lmdb(data)
        key, value = db.first("persons")
        self.assertEqual(value[0], 2, "gen stores a summary with every person")
        at = 10 + 8  # the summary's years: pension months first
        months = int.from_bytes(value[at:at + 4], "little")
        db.change("persons", key, value[:at] + (months + 1).to_bytes(4, "little") + value[at + 4:])
        db.close()
        masked = "%s********%s" % (key[:6].decode(), key[14:].decode())
        v = arrears("verify", "--data", data, check=False)
        self.assertEqual(v.returncode, 1)
        self.assertEqual(v.stdout.decode().splitlines(),
                         ["persons: %s: the summary is not what its timeline and policies make" % masked])
        db = Lmdb(data)
        summary_size = int.from_bytes(value[2:6], "little")
        short = (summary_size - 1).to_bytes(4, "little") + value[6:9 + summary_size]  # its last byte gone
        db.change("persons", key, value[:2] + short + value[10 + summary_size:])
        db.close()
        v = arrears("verify", "--data", data, check=False)
        self.assertEqual(v.stdout.decode().splitlines(), ["persons: %s: the summary does not decode" % masked])
        db = Lmdb(data)
        db.change("persons", key, value)
        db.close()
        self.assertEqual(arrears("verify", "--data", data, check=False).returncode, 0)


class TestRetention(ServerTest):
    def offset_start(self, data, days_offset, retention=None):
        env_extra = {"ARREARSD_TEST_CLOCK_OFFSET_MS": str(days_offset * DAY_MS)}
        old = {k: os.environ.get(k) for k in env_extra}
        os.environ.update(env_extra)
        try:
            s = self.start(data, extra=[] if retention is None else ["--idem-retention-days", str(retention)])
        finally:
            for k, v in old.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v
        return s

    def purge_line(self, s):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            m = re.search(r"event=idem_purge status=(\w+) looked=(\d+) deleted=(\d+) stamped=(\d+)", s.log())
            if m:
                return m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
            time.sleep(0.02)
        raise AssertionError("no event=idem_purge:\n" + s.log())

    def test_a_replay_after_the_retention_is_a_new_request(self):
        data = self.path("store")
        s = self.start(data)
        c = self.connect(s)
        self.assertEqual(self.purge_line(s), ("ok", 0, 0, 0))
        pid, p = person(1)
        c.ok("person.put", {"persons": [p], "idem": "old-key"})
        self.stop(s)
        other = {"persons": [person(2)[1]], "idem": "old-key"}  # the same key, another payload
        # 29 days on (default retention 30): kept, the other payload is a conflict
        s = self.offset_start(data, 29)
        self.assertIn("event=idem_retention days=30", s.log())
        self.assertEqual(self.purge_line(s), ("ok", 1, 0, 0))
        c = self.connect(s)
        self.assertEqual(err_part(c.err("person.put", other)), ts.error_of(5, "idem"))
        self.stop(s)
        # retention 0: kept forever, even a year on
        s = self.offset_start(data, 365, retention=0)
        self.assertIn("event=idem_retention days=0", s.log())
        c = self.connect(s)
        self.assertEqual(err_part(c.err("person.put", other)), ts.error_of(5, "idem"))
        self.stop(s)
        self.assertNotIn("event=idem_purge", s.log())
        # 31 days on: purged at start; the key runs as a new request
        s = self.offset_start(data, 31)
        self.assertEqual(self.purge_line(s), ("ok", 1, 1, 0))
        c = self.connect(s)
        self.assertEqual(c.ok("person.put", other)["results"], [{"id": person(2)[0], "ok": True}])
        self.assertEqual(err_part(c.err("person.put", {"persons": [p], "idem": "old-key"})), ts.error_of(5, "idem"))
        self.stop(s)
        self.assertEqual(arrears("--help").returncode, 0)
        # a shorter retention on the command line: 1 day, 2 days on
        s = self.offset_start(data, 2, retention=1)
        self.assertEqual(self.purge_line(s), ("ok", 1, 1, 0))
        self.stop(s)

    def test_a_large_purge_runs_in_small_steps_while_writes_go_on(self):
        data = self.path("store")
        ts.gen_store(data, 10, 1)
        n = 60000
        db = Lmdb(data)
        txn, dbi = ctypes.c_void_p(), ctypes.c_uint()
        assert db.lib.mdb_txn_begin(db.env, None, 0, ctypes.byref(txn)) == 0
        assert db.lib.mdb_dbi_open(txn, b"idem", 0, ctypes.byref(dbi)) == 0
        # the new layout: digest, 0xc1, time_ms (1 ms after the epoch: long expired), answer
        value = b"\x11" * 32 + b"\xc1" + (1).to_bytes(8, "big") + b"\xc0\x81\xa2ok\xc3"
        vbuf = ctypes.create_string_buffer(value, len(value))
        for i in range(n):
            key = b"expired-%06d" % i
            kbuf = ctypes.create_string_buffer(key, len(key))
            k = Lmdb.Val(len(key), ctypes.cast(kbuf, ctypes.c_void_p))
            v = Lmdb.Val(len(value), ctypes.cast(vbuf, ctypes.c_void_p))
            assert db.lib.mdb_put(txn, dbi, ctypes.byref(k), ctypes.byref(v), 0) == 0
        assert db.lib.mdb_txn_commit(txn) == 0
        db.close()
        s = self.start(data)
        c = self.connect(s)
        worst, writes = 0.0, 0
        while "event=idem_purge" not in s.log():
            t0 = time.monotonic()
            c.ok("person.put", {"persons": [person(writes)[1]], "idem": "live-%d" % writes})
            worst = max(worst, time.monotonic() - t0)
            writes += 1
        m = re.search(r"event=idem_purge status=ok looked=(\d+) deleted=(\d+) stamped=0 steps=(\d+)", s.log())
        self.assertIsNotNone(m, s.log())
        looked, deleted, steps = map(int, m.groups())
        self.assertEqual(deleted, n)  # the live keys are fresh: looked at, kept
        self.assertGreaterEqual(looked, n)
        self.assertGreaterEqual(steps, n // 512)  # at most 512 deletions a transaction
        print("\n    %d writes during the purge of %d records in %d steps, slowest %.1f ms" %
              (writes, n, steps, worst * 1000), end=" ")
        self.assertLess(worst, 2.0)
        self.stop(s)

    def test_retention_flag_is_checked(self):
        p = subprocess.run([ts.ARREARSD, "--idem-retention-days", "abc"], stderr=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, timeout=TIMEOUT_S)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"--idem-retention-days", p.stderr)


if __name__ == "__main__":
    sys.exit(ts.suite_main(sys.modules[__name__]))
