#!/usr/bin/python3
"""Tests of the Python client (clients/python/arrears_client.py) against the
real server, and against small fake servers where the real one cannot be
made to misbehave on cue (answers out of order, no answer at all).

    /usr/bin/python3 tests/test_pyclient.py --arrearsd build/arrearsd --arrears build/arrears [TestName ...]

Servers start on ephemeral ports through tests/test_server.py's helpers.
Expected values come from the spec (Appendix B, Appendix A's `at` paths)
and from the offline evaluator's list of stored ids (the oracle for scans),
never from the client's own output. Covered: pipelining with answers matched
by msgid in any order, msgid wrap at 2**32, typed exceptions with code, name
and `at`, per-person errors as data, call and connect timeouts, reconnect
after the server closed the connection (malformed, too large, restart on
the same port, EOF with a call in flight), auth with a token (and again on
reconnect), scan paging that covers every person exactly once (also split
by prefix over a pool), a pool used from several threads, and
examples/client_example.py run end to end.

Prints `N passed, M failed` last and exits 1 on any failure.
"""

import os
import random
import socket
import subprocess
import sys
import threading
import time

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import test_server as ts  # noqa: E402
import arrears_client as ac  # noqa: E402
from arrears_client import Client, Pool  # noqa: E402

AS_OF = ts.AS_OF
PERSONS = 2500  # the generated store read by the scan and pool tests
SHARED = {}


def shared_store():
    """A generated store (read only) and its ids, ascending, as the oracle lists them."""
    if not SHARED:
        import tempfile
        d = tempfile.mkdtemp(prefix="arrears-pyclient-shared-")
        data = os.path.join(d, "store")
        ts.gen_store(data, PERSONS, 11)
        SHARED.update(dir=d, data=data, ids=ts.stored_ids(data))
    return SHARED["data"], SHARED["ids"]


def tearDownModule():
    if SHARED:
        import shutil
        shutil.rmtree(SHARED["dir"], ignore_errors=True)


# ---------------------------------------------------------------- fake servers

class FakeServer:
    """Accepts one connection at a time on an ephemeral port and hands it to
    `handler(sock)` on a thread. Records what it received."""

    def __init__(self, handler, backlog=16):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(backlog)
        self.port = self.lsock.getsockname()[1]
        self.handler = handler
        self.socks = []
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            self.socks.append(s)
            threading.Thread(target=self._run, args=(s,), daemon=True).start()

    def _run(self, s):
        try:
            self.handler(s)
        except OSError:
            pass

    def close(self):
        self.stopped = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def read_requests(s, n, unp):
    """The next n requests from socket s."""
    out = []
    while len(out) < n:
        data = s.recv(65536)
        if not data:
            raise OSError("client closed")
        unp.feed(data)
        out.extend(unp)
    return out


class ClientTest(ts.ServerTest):

    def setUp(self):
        super().setUp()
        self.closers = []

    def tearDown(self):
        for c in reversed(self.closers):
            c.close()
        super().tearDown()

    def client(self, server_or_port, **kw):
        port = server_or_port if isinstance(server_or_port, int) else server_or_port.port
        c = Client("127.0.0.1", port, **kw)
        self.closers.append(c)
        return c

    def fake(self, handler, **kw):
        f = FakeServer(handler, **kw)
        self.closers.append(f)
        return f


# ---------------------------------------------------------------- tests

class TestPipelining(ClientTest):

    def test_answers_out_of_order_are_matched_by_msgid(self):
        """A fake server reads 200 requests, then answers them shuffled, with
        an answer to a msgid nobody asked for mixed in (dropped)."""
        seen = []

        def handler(s):
            reqs = read_requests(s, 200, msgpack.Unpacker(raw=False))
            seen.extend(reqs)
            random.Random(5).shuffle(reqs)
            out = [msgpack.packb([1, 999999, None, {"stray": True}])]
            for _, msgid, method, params in reqs:
                out.append(msgpack.packb([1, msgid, None, {"echo": params[0]["n"], "method": method}]))
            s.sendall(b"".join(out))
            time.sleep(2)

        f = self.fake(handler)
        c = self.client(f.port, timeout=10)
        results = c.call_many([("echo.%d" % (n % 3), {"n": n}) for n in range(200)])
        self.assertEqual([r["echo"] for r in results], list(range(200)))
        self.assertEqual([r["method"] for r in results], ["echo.%d" % (n % 3) for n in range(200)])
        self.assertEqual(len({r[1] for r in seen}), 200, "msgids of the calls in flight are distinct")

    def test_msgids_wrap_at_2_32_and_skip_zero(self):
        seen = []

        def handler(s):
            unp = msgpack.Unpacker(raw=False)
            while True:
                for r in read_requests(s, 1, unp):
                    seen.append(r[1])
                    s.sendall(msgpack.packb([1, r[1], None, {"pong": True}]))

        f = self.fake(handler)
        c = self.client(f.port, timeout=None)  # no timeout at all: waits as long as it takes
        c._msgid = 2 ** 32 - 3  # the counter after 2**32 - 3 calls
        for _ in range(5):
            self.assertEqual(c.ping(), {"pong": True})
        self.assertEqual(seen, [2 ** 32 - 2, 2 ** 32 - 1, 1, 2, 3])

    def test_thousands_in_flight_on_the_real_server(self):
        """3,000 requests of mixed methods sent before any answer is read;
        each answer is the one for its request (ids checked in every result)."""
        data, ids = shared_store()
        s = self.start(data)
        c = self.client(s)
        rng = random.Random(3)
        reqs, want_ids = [], []
        for k in range(3000):
            i = ids[rng.randrange(len(ids))]
            if k % 3 == 0:
                reqs.append(("person.get", {"id": i}))
            elif k % 3 == 1:
                reqs.append(("arrears.compute", {"as_of": AS_OF, "ids": [i]}))
            else:
                j = ids[rng.randrange(len(ids))]
                reqs.append(("years.compute", {"as_of": AS_OF, "ids": [i, j]}))
                i = (i, j)
            want_ids.append(i)
        calls = [c.submit(m, p) for m, p in reqs]
        self.assertGreater(c.in_flight(), 0)
        for call, (m, _), want in zip(calls, reqs, want_ids):
            r = call.result()
            if m == "person.get":
                self.assertEqual(r["person"]["id"], want)
            elif m == "arrears.compute":
                self.assertEqual([x["id"] for x in r["results"]], [want])
            else:
                self.assertEqual(tuple(x["id"] for x in r["results"]), want)
        self.assertEqual(c.in_flight(), 0)
        self.stop(s)


class TestErrors(ClientTest):

    def test_typed_exceptions_with_code_name_and_at(self):
        data, ids = shared_store()
        s = self.start(data, extra=["--max-persons", "3"])
        c = self.client(s)
        cases = [
            (lambda: c.arrears(20240230, ids=[ids[0]]), ac.InvalidArgument, 3, "invalid_argument", "as_of"),
            (lambda: c.call("arrears.compute", {"as_of": AS_OF}), ac.InvalidArgument, 3, "invalid_argument",
             "persons"),
            (lambda: c.person_get(ts.make_id("11010519800101999")), ac.NotFound, 4, "not_found", "id"),
            (lambda: c.call("no.such.method", {}), ac.UnknownMethod, 2, "unknown_method", None),
            (lambda: c.years(AS_OF, ids=ids[:4]), ac.TooLarge, 6, "too_large", None),
        ]
        for k, (fn, cls, code, name, at) in enumerate(cases):
            with self.assertRaises(cls, msg="case %d" % k) as cm:
                fn()
            e = cm.exception
            self.assertIsInstance(e, ac.ArrearsError)
            self.assertEqual((e.code, e.name), (code, name), "case %d" % k)
            if at is not None:
                self.assertEqual(e.at, at, "case %d" % k)
            self.assertTrue(e.message, "case %d: a message" % k)
        # the connection stays usable after request-level errors
        self.assertTrue(c.ping()["pong"])
        self.assertEqual(c.reconnects, 0)
        self.stop(s)

    def test_conflict_and_per_person_errors_are_data(self):
        s = self.start()
        c = self.client(s)
        c.policy_put(policy("110000"))
        a = ts.make_id("11010519800101001")
        unknown = ts.make_id("11010519800101003")
        put = c.person_put([person(a, [ts.slot(202401, "pension", "flexible", 600000)]),
                            {"id": "12345", "slots": []}])
        self.assertEqual(put[0], {"id": a, "ok": True})
        self.assertEqual(put[1]["error"]["code"], 3)
        self.assertEqual([(k, type(e)) for k, _, e in put.errors()], [(1, ac.InvalidArgument)])
        r = c.arrears(20240310, ids=[a, unknown, "bad"])
        self.assertEqual(len(r), 3)
        # R2: rh(600000 × 200000 / 10^6) = 120000 owed, 202401 past its deadline 20240125
        self.assertEqual(r[0]["principal"], 120000)
        errs = r.errors()
        self.assertEqual([(k, type(e), e.at) for k, _, e in errs],
                         [(1, ac.NotFound, "ids[1]"), (2, ac.InvalidArgument, "ids[2]")])
        item = {"id": a, "month": 202401, "city": "110000", "type": "pension", "amount": 1000, "date": 20240301}
        pay = c.payment_apply([item, dict(item, id=unknown)], idem="pay-1")
        self.assertEqual(pay[0], {"ok": True})
        self.assertEqual(pay[1]["error"]["code"], 4)
        self.assertEqual(list(c.payment_apply([item, dict(item, id=unknown)], idem="pay-1")), list(pay))
        with self.assertRaises(ac.Conflict) as cm:
            c.payment_apply([dict(item, amount=2000)], idem="pay-1")
        self.assertEqual((cm.exception.code, cm.exception.at), (5, "idem"))
        # paid once: 1000 of the replayed payment, not 2000
        self.assertEqual(c.person_get(a)["slots"][0]["paid"], 1000)
        with self.assertRaises(ValueError):
            c.payment_apply([item], idem=None)
        with self.assertRaises(ValueError):
            c.arrears(AS_OF)  # no selector: refused before sending
        self.stop(s)

    def test_appendix_b_example_1_through_the_helpers(self):
        s = self.start()
        c = self.client(s)
        c.policy_put(policy("110000"))
        man = "110105197006150013"
        c.person_put([person(man, [ts.slot(202205, "pension", "flexible", 600000)])], idem="put-1")
        r = c.arrears(20240310, ids=[man], detail=True)[0]
        # Appendix B 1: due 120000, interest 4284 + 4934 + 846 = 10064, total 130064, tier verify
        self.assertEqual((r["principal"], r["interest"], r["total"], r["items"][0]["tier"]),
                         (120000, 10064, 130064, "verify"))
        same = c.arrears(20240310, persons=[person(man, [ts.slot(202205, "pension", "flexible", 600000)])])
        self.assertEqual(same[0]["total"], 130064)
        self.stop(s)


class TestTimeouts(ClientTest):

    def test_call_timeout_against_a_server_that_never_answers(self):
        received = []

        def handler(s):
            while True:
                d = s.recv(65536)
                if not d:
                    return
                received.append(d)

        f = self.fake(handler)
        c = self.client(f.port, timeout=0.3)
        for _ in range(2):  # the connection stays usable after a timeout
            t0 = time.monotonic()
            with self.assertRaises(ac.Timeout) as cm:
                c.ping()
            took = time.monotonic() - t0
            self.assertIsInstance(cm.exception, TimeoutError)
            self.assertGreaterEqual(took, 0.29)
            self.assertLess(took, 3.0)
        self.assertEqual(c.in_flight(), 0, "timed-out calls are forgotten")
        call = c.submit("ping", {}, timeout=60)
        with self.assertRaises(ac.Timeout):
            call.result(timeout=0.1)  # a shorter wait than the call's own timeout
        self.assertTrue(received)

    def test_connect_timeout_when_nobody_accepts(self):
        """A listener that never accepts, its backlog full: the SYN is dropped."""
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):  # fill the accept queue
                f = socket.socket()
                f.setblocking(False)
                f.connect_ex(("127.0.0.1", port))
                fillers.append(f)
            time.sleep(0.2)
            t0 = time.monotonic()
            with self.assertRaises(ac.ConnectTimeout):
                Client("127.0.0.1", port, connect_timeout=0.5)
            self.assertLess(time.monotonic() - t0, 5.0)
        finally:
            for f in fillers:
                f.close()
            lsock.close()

    def test_connect_refused(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        with self.assertRaises(ac.ConnectFailed) as cm:
            Client("127.0.0.1", port, connect_timeout=2)
        self.assertIsInstance(cm.exception, ConnectionError)


class TestReconnect(ClientTest):

    def test_malformed_close_fails_calls_in_flight_then_reconnects(self):
        s = self.start()
        c = self.client(s)
        self.assertTrue(c.ping()["pong"])
        # A frame that is not msgpack (0xc1), then a ping, in one write: the
        # server answers malformed (msgid 0), closes, and never runs the ping.
        with c._lock:
            conn = c._connection()
            call = ac.Call("ping", 77, time.monotonic() + 10, conn)
            conn.register(call)
            conn.send(b"\xc1" + msgpack.packb([0, 77, "ping", [{}]]))
        with self.assertRaises(ac.ConnectionLost) as cm:
            call.result()
        self.assertIsInstance(cm.exception.cause, ac.Malformed)
        self.assertEqual(cm.exception.cause.code, 1)
        self.assertTrue(c.ping()["pong"])  # a new connection
        self.assertEqual(c.reconnects, 1)
        self.stop(s)

    def test_too_large_close_then_reconnects(self):
        s = self.start(extra=["--max-request", "65536"])
        c = self.client(s)
        with self.assertRaises(ac.ConnectionLost) as cm:
            c.call("person.put", {"persons": [], "pad": "x" * 200000})
        self.assertIsInstance(cm.exception.cause, ac.TooLarge)
        self.assertEqual(cm.exception.cause.code, 6)
        self.assertTrue(c.ping()["pong"])
        self.assertEqual(c.reconnects, 1)
        self.stop(s)

    def test_eof_with_calls_in_flight(self):
        """A peer that reads a request and closes: ConnectionLost without a
        cause; the next call connects again (to a peer that answers)."""
        count = [0]

        def handler(s):
            count[0] += 1
            unp = msgpack.Unpacker(raw=False)
            r = read_requests(s, 1, unp)[0]
            if count[0] == 1:
                s.close()
                return
            s.sendall(msgpack.packb([1, r[1], None, {"pong": True}]))
            time.sleep(1)

        f = self.fake(handler)
        c = self.client(f.port, timeout=10)
        with self.assertRaises(ac.ConnectionLost) as cm:
            c.ping()
        self.assertIsNone(cm.exception.cause)
        self.assertEqual(c.ping(), {"pong": True})
        self.assertEqual(c.reconnects, 1)

    def test_restart_on_the_same_port_reauthenticates(self):
        token_file = self.path("token")
        with open(token_file, "w") as f:
            f.write("s3cret-token\n")
        s = self.start(extra=["--token-file", token_file])
        port = s.port
        c = self.client(s, token="s3cret-token")
        c.policy_put(policy("110000"))
        self.stop(s)
        s2 = self.start(extra=["--token-file", token_file, "--listen", "127.0.0.1:%d" % port])
        self.assertEqual(s2.port, port)
        # Not ping (open to all): policy.get answers unauthorized unless auth was sent again.
        self.assertEqual(c.policy_get("110000")["policy"]["city"], "110000")
        self.assertEqual(c.reconnects, 1)
        self.stop(s2)


class TestAuth(ClientTest):

    def test_token(self):
        token_file = self.path("token")
        with open(token_file, "w") as f:
            f.write("t0ken\n")
        s = self.start(extra=["--token-file", token_file])
        anon = self.client(s)
        self.assertTrue(anon.ping()["pong"])  # ping needs no auth
        with self.assertRaises(ac.Unauthorized) as cm:
            anon.policy_get("110000")
        self.assertEqual((cm.exception.code, cm.exception.name), (8, "unauthorized"))
        with self.assertRaises(ac.Unauthorized) as cm:
            Client("127.0.0.1", s.port, token="wrong")
        self.assertEqual(cm.exception.at, "token")
        self.assertEqual(anon.auth("t0ken"), {"ok": True})
        with self.assertRaises(ac.NotFound):
            anon.policy_get("110000")  # authorized now: the store has no policy
        good = self.client(s, token="t0ken")
        good.policy_put(policy("110000"))
        self.assertEqual(good.policy_get("110000")["policy"]["city"], "110000")
        self.stop(s)


class TestScan(ClientTest):

    def test_pages_cover_every_person_once(self):
        data, ids = shared_store()
        self.assertEqual(len(ids), PERSONS)
        s = self.start(data)
        c = self.client(s)
        pages = list(c.scan("medical.status", as_of=AS_OF, page=300))
        # 2500 = 8 full pages of 300 + 100
        self.assertEqual([len(p) for p in pages], [300] * 8 + [100])
        self.assertEqual([r["id"] for p in pages for r in p], ids)
        self.assertEqual([p.next for p in pages], [p[-1]["id"] for p in pages[:-1]] + [None])
        # from the middle
        rest = [r["id"] for p in c.scan("years.compute", as_of=AS_OF, page=1000, after=ids[999]) for r in p]
        self.assertEqual(rest, ids[1000:])
        # an exact multiple of the page: the last full page has a next, the empty one yields nothing
        self.assertEqual(sum(len(p) for p in c.scan("medical.status", as_of=AS_OF, page=500)), PERSONS)
        with self.assertRaises(ac.InvalidArgument) as cm:
            list(c.scan("arrears.compute", as_of=AS_OF, after="12a"))
        self.assertEqual(cm.exception.at, "scan.after")
        self.stop(s)

    def test_prefix_walks_split_the_city_over_a_pool(self):
        data, ids = shared_store()
        s = self.start(data)
        # split at the 10th character: every prefix that occurs, plus one that does not
        prefixes = sorted({i[:10] for i in ids}) + ["9999999999"]
        self.assertGreater(len(prefixes), 3)
        pool = Pool("127.0.0.1", s.port, size=3)
        self.closers.append(pool)
        got = [r["id"] for p in pool.scan_parallel("arrears.compute", AS_OF, prefixes, page=200, walkers=3)
               for r in p]
        self.assertEqual(len(got), len(set(got)), "no person twice")
        self.assertEqual(sorted(got), ids)
        with self.assertRaises(ac.InvalidArgument) as cm:  # a walker's error reaches the consumer
            list(pool.scan_parallel("arrears.compute", 20241301, prefixes, page=200, walkers=3))
        self.assertEqual(cm.exception.at, "as_of")
        one = prefixes[1]
        walked = [r["id"] for p in pool.scan("arrears.compute", as_of=AS_OF, page=7, prefix=one) for r in p]
        self.assertEqual(walked, [i for i in ids if i.startswith(one)])
        self.stop(s)


class TestPool(ClientTest):

    def test_threads_share_a_pool(self):
        data, ids = shared_store()
        s = self.start(data)
        pool = Pool("127.0.0.1", s.port, size=3, timeout=30)
        self.closers.append(pool)
        failures = []

        def work(seed):
            rng = random.Random(seed)
            try:
                for _ in range(60):
                    i = ids[rng.randrange(len(ids))]
                    if rng.random() < 0.5:
                        self.assertEqual(pool.person_get(i)["id"], i)
                    else:
                        batch = [ids[rng.randrange(len(ids))] for _ in range(5)]
                        got = pool.call_many([("medical.status", {"as_of": AS_OF, "ids": [b]}) for b in batch])
                        self.assertEqual([g["results"][0]["id"] for g in got], batch)
                with pool.client() as c:
                    self.assertTrue(c.ping()["pong"])
            except Exception as e:  # noqa: BLE001 - reported below
                failures.append(repr(e))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(failures, [])
        connected = sum(1 for c in pool._clients if c._conn is not None)
        self.assertGreaterEqual(connected, 2, "calls spread over the pool's connections")
        self.stop(s)


class TestExample(ClientTest):

    def test_client_example_runs(self):
        data, _ = shared_store()
        s = self.start(self.copy_store(data))
        out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "client_example.py"),
                              "127.0.0.1:%d" % s.port], capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        text = out.stdout
        # Appendix B example 1 and 2
        self.assertIn("interest 10064 late_fee 0 total 130064 tier verify", text)
        self.assertIn("principal 142000 late_fee 5822 total 147822", text)
        self.assertIn("results[1]: not_found (4) at ids[1]", text)
        self.assertIn("rejected: code 3 invalid_argument at as_of", text)
        self.assertIn("202205 paid: 120000", text)  # the retried payment paid once
        self.assertIn("as of 20240320: months_owed 0 total 0", text)
        self.assertIn("whole store: %d persons" % (PERSONS + 3), text)
        self.stop(s)

    def copy_store(self, data):
        import shutil
        dst = self.path("example-store")
        shutil.copytree(data, dst)
        return dst


# ---------------------------------------------------------------- data

def policy(city):
    """Appendix B's figures: flexible pension 200000 ppm, deadline day 25, interest 2022..2024."""
    return {"city": city, "name": "test", "deadline": {"day": 25, "month_offset": 0},
            "periods": [{"from": 202001, "base_min": 500000, "base_max": 3000000,
                         "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000}}}],
            "interest": {"rates": [[2022, 61200], [2023, 39700], [2024, 26200]]}}


def person(pid, slots):
    return {"id": pid, "slots": slots}


if __name__ == "__main__":
    sys.exit(ts.suite_main(sys.modules[__name__]))
