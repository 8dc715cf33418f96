#!/usr/bin/python3
"""End-to-end tests of the metrics endpoint, `arrearsd --metrics-listen`.

    /usr/bin/python3 tests/test_metrics.py --arrearsd build/arrearsd --arrears build/arrears [TestName ...]

Every test starts its own server (`--listen 127.0.0.1:0 --metrics-listen
127.0.0.1:0`, both ports read from the `event=listen` and
`event=metrics_listen` log lines) on a fresh temporary store, sends
requests whose counts are known by hand, scrapes `GET /metrics` and parses
it with prometheus_client's own parser (`text_string_to_metric_families`):
the counters must have moved by exactly what was sent. Covered:

- requests_total / errors_total{method,code} for a good request, an unknown
  method, a malformed frame and one over --max-request (both under method
  "unknown"), an invalid argument, unauthorized (--token-file);
  person_errors_total for per-person errors inside a successful answer;
- the duration histogram: buckets cumulative (non-decreasing in le), +Inf
  equal to _count equal to requests_total for every method, _sum > 0;
- received/sent bytes exactly the bytes of a ping exchange; connections
  accepted and open; store figures (persons, readable, used <= map);
- server.stats agrees (version, uptime_s, errors_by_code, person_errors);
- /healthz 200 while serving, 503 while shutting down (a request received in
  part holds the shutdown open), serving 1 then 0; 404 and 405;
- flag parsing: a bad --metrics-listen exits 2 naming the flag; a metrics
  port already in use exits 1 (event=start_failed reason=metrics).

Prints `N passed, M failed` last and exits 1 on any failure.
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import msgpack
from prometheus_client.parser import text_string_to_metric_families

HERE = os.path.dirname(os.path.abspath(__file__))
ARREARSD = os.path.join(HERE, "..", "build", "arrearsd")
TIMEOUT_S = 30
METHODS = ("ping", "auth", "server.stats", "policy.put", "policy.get", "person.put", "person.get",
           "person.delete", "payment.apply", "withhold.run", "arrears.compute", "years.compute",
           "retirement.check", "housing.check", "medical.status", "unknown")
CODES = ("malformed", "unknown_method", "invalid_argument", "not_found", "conflict", "too_large",
         "overloaded", "unauthorized", "internal")


def make_id(first17):
    """18-character resident id with its GB 11643 check character (SPEC §2.1)."""
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    s = sum(int(c) * w[i] for i, c in enumerate(first17))
    return first17 + "10X98765432"[s % 11]


def req(msgid, method, params):
    return msgpack.packb([0, msgid, method, [params]], use_bin_type=True)


def person(first17, city="990100"):
    return {"id": make_id(first17), "slots": [
        {"month": 202205, "city": city, "type": "pension", "category": "flexible", "base": 600000,
         "paid": 0, "paid_date": 0}]}


class Server:
    def __init__(self, tmp, extra=()):
        self.log_path = os.path.join(tmp, "arrearsd-%d.log" % len(os.listdir(tmp)))
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen([ARREARSD, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                      "--data", os.path.join(tmp, "store"), "--threads", "2"] + list(extra),
                                     stdout=subprocess.DEVNULL, stderr=self.log_file)
        deadline = time.time() + TIMEOUT_S
        self.port = self.metrics_port = None
        while time.time() < deadline and (self.port is None or self.metrics_port is None):
            log = self.log()
            m = re.search(r"event=listen addr=127\.0\.0\.1 port=(\d+)", log)
            mm = re.search(r"event=metrics_listen addr=127\.0\.0\.1 port=(\d+)", log)
            self.port = int(m.group(1)) if m else None
            self.metrics_port = int(mm.group(1)) if mm else None
            if self.proc.poll() is not None:
                raise RuntimeError("arrearsd exited %d:\n%s" % (self.proc.returncode, log))
            time.sleep(0.02)
        if self.port is None or self.metrics_port is None:
            raise RuntimeError("no listen lines:\n" + self.log())

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT_S)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def http(self, path, method="GET"):
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=TIMEOUT_S)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, r.getheader("Content-Type"), r.getheader("Allow"), r.read().decode()
        finally:
            c.close()

    def scrape(self):
        status, ctype, _, body = self.http("/metrics")
        assert status == 200, (status, body)
        assert ctype.startswith("text/plain; version=0.0.4"), ctype
        samples = {}
        families = {}
        for fam in text_string_to_metric_families(body):
            families[fam.name] = fam
            for s in fam.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return Scrape(samples, families)

    def stop(self):
        if getattr(self, "rc", None) is not None:
            return self.rc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log_file.close()
        self.rc = rc
        return rc


class Scrape:
    def __init__(self, samples, families):
        self.samples = samples
        self.families = families

    def get(self, name, **labels):
        return self.samples[(name, tuple(sorted(labels.items())))]

    def requests(self, method):
        return self.get("arrears_requests_total", method=method)

    def errors(self, method, code):
        return self.get("arrears_errors_total", method=method, code=code)


def call(sock, msgid, method, params):
    sock.sendall(req(msgid, method, params))
    return read_one(sock)


def read_one(sock):
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    while True:
        for msg in u:
            return msg
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        u.feed(data)


def read_until_closed(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


class MetricsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="arrears-metrics-")
        self.servers = []

    def tearDown(self):
        codes = [(s.stop(), s.log()) for s in self.servers]
        shutil.rmtree(self.tmp, ignore_errors=True)
        for rc, log in codes:  # also what the sanitizers say at exit
            self.assertEqual(rc, 0, "arrearsd exit status; log:\n" + log[-3000:])

    def start(self, extra=()):
        s = Server(self.tmp, extra)
        self.servers.append(s)
        return s

    def wait_for(self, server, cond, what):
        deadline = time.time() + TIMEOUT_S
        while time.time() < deadline:
            m = server.scrape()
            if cond(m):
                return m
            time.sleep(0.02)
        self.fail("waited for " + what)

    def assertDeltas(self, before, after, name, want):
        """want: {labels tuple: delta}; every other series of name must not move."""
        for key, value in after.samples.items():
            if key[0] != name:
                continue
            delta = value - before.samples.get(key, 0)
            self.assertEqual(delta, want.get(key[1], 0), "%s%s" % (name, dict(key[1])))

    def test_counters_move_by_what_was_sent(self):
        s = self.start(["--max-request", "1024"])
        version = self.version(s)  # ping's, before the first scrape
        first = s.scrape()
        self.assertEqual(first.get("arrears_serving"), 1)
        self.assertEqual(first.get("arrears_build_info", version=version), 1)
        for m in METHODS:
            self.assertEqual(first.requests(m), 1 if m == "ping" else 0, m)
        c = s.connect()
        for i in range(3):
            self.assertIsNone(call(c, i, "ping", {})[2])
        self.assertEqual(call(c, 10, "no.such.method", {})[2]["name"], "unknown_method")
        bad = call(c, 11, "arrears.compute", {"as_of": 20240230, "persons": [person("11010119700615001")]})
        self.assertEqual((bad[2]["name"], bad[2]["at"]), ("invalid_argument", "as_of"))
        # No policies at all: each of the 3 persons is not_found at its city, the request succeeds.
        ok = call(c, 12, "arrears.compute", {"as_of": 20251110, "persons": [
            person("11010119700615001"), person("11010119800101002"), person("11010119900202003")]})
        self.assertIsNone(ok[2])
        self.assertEqual([r["error"]["name"] for r in ok[3]["results"]], ["not_found"] * 3)
        # payment.apply: the item's person is unknown, a per-item error (the request itself succeeds).
        pay = call(c, 13, "payment.apply", {"idem": "k1", "items": [
            {"id": make_id("11010119700615001"), "month": 202205, "city": "990100", "type": "pension",
             "amount": 100, "date": 20240315}]})
        self.assertIsNone(pay[2])
        self.assertEqual(pay[3]["results"][0]["error"]["name"], "not_found")
        c.close()
        m = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT_S)
        m.sendall(b"\x05")  # a msgpack integer, not a request: malformed, then closed
        self.assertEqual(msgpack.unpackb(read_until_closed(m), raw=False)[2]["name"], "malformed")
        m.close()
        big = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT_S)
        big.sendall(req(20, "ping", {"pad": "x" * 2000}))  # over --max-request 1024
        self.assertEqual(msgpack.unpackb(read_until_closed(big), raw=False)[2]["name"], "too_large")
        big.close()
        after = self.wait_for(s, lambda m: m.get("arrears_connections_open") == 0, "connections to close")

        self.assertDeltas(first, after, "arrears_requests_total", {
            (("method", "ping"),): 3, (("method", "unknown"),): 3,  # unknown method, malformed, too large
            (("method", "arrears.compute"),): 2, (("method", "payment.apply"),): 1})
        self.assertDeltas(first, after, "arrears_errors_total", {
            (("code", "unknown_method"), ("method", "unknown")): 1,
            (("code", "malformed"), ("method", "unknown")): 1,
            (("code", "too_large"), ("method", "unknown")): 1,
            (("code", "invalid_argument"), ("method", "arrears.compute")): 1})
        self.assertEqual(after.get("arrears_person_errors_total") - first.get("arrears_person_errors_total"), 4)
        self.assertEqual(after.get("arrears_connections_accepted_total")
                         - first.get("arrears_connections_accepted_total"), 3)
        self.assertEqual(after.get("arrears_connections_refused_total"), 0)
        self.assertEqual(after.get("arrears_answer_bytes"), 0)
        self.assertEqual(after.get("arrears_worker_queue_depth"), 0)
        self.assertEqual(after.get("arrears_store_readable"), 1)
        self.assertEqual(after.get("arrears_store_persons"), 0)
        self.assertEqual(after.get("arrears_store_idem_records"), 1)  # payment.apply's key is kept
        self.assertGreater(after.get("arrears_store_used_bytes"), 0)
        self.assertLessEqual(after.get("arrears_store_used_bytes"), after.get("arrears_store_map_bytes"))
        self.assertGreater(after.get("arrears_uptime_seconds"), 0)
        self.check_histogram(after)

        # server.stats says the same, and counts itself.
        c = s.connect()
        st = call(c, 30, "server.stats", {})[3]
        c.close()
        self.assertEqual(st["version"], version)
        self.assertGreaterEqual(st["uptime_s"], 0)
        self.assertEqual(st["person_errors"], after.get("arrears_person_errors_total"))
        self.assertEqual(st["errors_by_code"], {"malformed": 1, "unknown_method": 1, "invalid_argument": 1,
                                                "not_found": 0, "conflict": 0, "too_large": 1, "overloaded": 0,
                                                "unauthorized": 0, "internal": 0})
        self.assertEqual(st["requests"]["arrears.compute"], 2)
        self.assertEqual(st["errors"]["arrears.compute"], 1)
        self.assertEqual(s.scrape().requests("server.stats"), 1)

    def version(self, s):
        c = s.connect()
        v = call(c, 1, "ping", {})[3]["version"]
        c.close()
        return v

    def check_histogram(self, m):
        fam = m.families["arrears_request_duration_seconds"]
        self.assertEqual(fam.type, "histogram")
        for method in METHODS:
            buckets = [(float(s.labels["le"]), s.value) for s in fam.samples
                       if s.name.endswith("_bucket") and s.labels["method"] == method]
            self.assertEqual(buckets, sorted(buckets), method)  # le ascending, counts non-decreasing
            self.assertEqual([b[1] for b in buckets], sorted(b[1] for b in buckets), method)
            self.assertEqual(buckets[-1][0], float("inf"))
            self.assertGreaterEqual(len(buckets), 10)
            count = m.get("arrears_request_duration_seconds_count", method=method)
            self.assertEqual(buckets[-1][1], count, method)
            self.assertEqual(count, m.requests(method), method)
            total = m.get("arrears_request_duration_seconds_sum", method=method)
            self.assertEqual(total > 0, method in ("ping", "arrears.compute", "payment.apply", "unknown"), method)

    def test_bytes_are_the_exchange(self):
        """A send is counted when its completion reaches the loop, which may be
        after the client has read the bytes: the counters are awaited."""
        s = self.start()
        c = s.connect()
        first = req(0, "ping", {})
        c.sendall(first)
        pong = msgpack.packb(read_one(c), use_bin_type=True)  # msgpack's shortest form, as the server's
        before = self.wait_for(s, lambda m: (m.get("arrears_received_bytes_total"),
                                             m.get("arrears_sent_bytes_total")) == (len(first), len(pong)),
                               "the first exchange's bytes")
        sent = b"".join(req(i, "ping", {}) for i in range(1, 6))
        c.sendall(sent)
        got = b""
        u = msgpack.Unpacker(raw=False)
        answers = 0
        while answers < 5:
            data = c.recv(65536)
            got += data
            u.feed(data)
            answers += sum(1 for _ in u)
        after = self.wait_for(s, lambda m: m.get("arrears_sent_bytes_total") >= len(pong) + len(got),
                              "the answers' bytes")
        time.sleep(0.05)
        after = s.scrape()
        c.close()
        self.assertEqual(after.get("arrears_received_bytes_total") - before.get("arrears_received_bytes_total"),
                         len(sent))
        self.assertEqual(after.get("arrears_sent_bytes_total") - before.get("arrears_sent_bytes_total"), len(got))
        self.assertEqual(after.requests("ping") - before.requests("ping"), 5)
        self.assertEqual(after.get("arrears_connections_open"), 1)

    def test_unauthorized_is_counted(self):
        token = os.path.join(self.tmp, "token")
        with open(token, "w") as f:
            f.write("s3cret\n")
        s = self.start(["--token-file", token])
        before = s.scrape()
        c = s.connect()
        self.assertEqual(call(c, 1, "arrears.compute", {"as_of": 20251110, "persons": []})[2]["name"],
                         "unauthorized")
        self.assertEqual(call(c, 2, "auth", {"token": "wrong"})[2]["name"], "unauthorized")
        self.assertIsNone(call(c, 3, "auth", {"token": "s3cret"})[2])
        c.close()
        after = s.scrape()
        self.assertDeltas(before, after, "arrears_errors_total", {
            (("code", "unauthorized"), ("method", "arrears.compute")): 1,
            (("code", "unauthorized"), ("method", "auth")): 1})
        self.assertEqual(after.requests("auth") - before.requests("auth"), 2)

    def test_health_and_other_paths(self):
        s = self.start()
        self.assertEqual(s.http("/healthz")[0::3], (200, "ok\n"))
        self.assertEqual(s.http("/")[0], 404)
        self.assertEqual(s.http("/metrics/x")[0], 404)
        status, _, allow, _ = s.http("/metrics", "POST")
        self.assertEqual((status, allow), (405, "GET, HEAD"))
        self.assertEqual(s.http("/healthz", "DELETE")[0], 405)
        self.assertEqual(s.http("/healthz", "HEAD")[0], 200)
        # A request received in part holds the shutdown open (up to 10 s):
        # meanwhile /healthz is 503 and serving 0, the metrics still answer.
        c = s.connect()
        frame = req(7, "ping", {})
        c.sendall(frame[:3])
        self.wait_for(s, lambda m: m.get("arrears_connections_open") == 1, "the connection")
        s.proc.send_signal(signal.SIGTERM)
        deadline = time.time() + TIMEOUT_S
        while s.http("/healthz")[0] != 503 and time.time() < deadline:
            time.sleep(0.01)
        self.assertEqual(s.http("/healthz")[0::3], (503, "not serving\n"))
        self.assertEqual(s.scrape().get("arrears_serving"), 0)
        c.sendall(frame[3:])
        self.assertEqual(read_one(c)[1], 7)  # still answered
        c.close()
        self.assertEqual(s.stop(), 0)
        self.assertIn("event=shutdown", s.log())

    def test_flags(self):
        store = os.path.join(self.tmp, "store")
        for bad in ("nope", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:x", "localhost:9100", ":9100"):
            p = subprocess.run([ARREARSD, "--listen", "127.0.0.1:0", "--data", store, "--metrics-listen", bad],
                               capture_output=True, timeout=TIMEOUT_S)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn(b"--metrics-listen", p.stderr, bad)
        p = subprocess.run([ARREARSD, "--help"], capture_output=True, timeout=TIMEOUT_S)
        self.assertIn(b"--metrics-listen HOST:PORT", p.stdout)
        self.assertEqual(p.returncode, 0)
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run([ARREARSD, "--listen", "127.0.0.1:0", "--data", store, "--metrics-listen",
                            "127.0.0.1:%d" % port], capture_output=True, timeout=TIMEOUT_S)
        taken.close()
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"event=start_failed reason=metrics", p.stderr)


def main():
    global ARREARSD
    ap = argparse.ArgumentParser()
    ap.add_argument("--arrearsd", default=ARREARSD)
    ap.add_argument("--arrears", default=None, help="unused; accepted like the other server tests")
    ap.add_argument("tests", nargs="*")
    args = ap.parse_args()
    ARREARSD = os.path.abspath(args.arrearsd)
    loader = unittest.TestLoader()
    suite = (loader.loadTestsFromNames(["__main__.MetricsTest." + t for t in args.tests]) if args.tests
             else loader.loadTestsFromTestCase(MetricsTest))
    r = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(r.failures) + len(r.errors)
    print("%d passed, %d failed" % (r.testsRun - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
