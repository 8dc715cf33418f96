#!/usr/bin/python3
"""End-to-end tests of the terminal client: `arrears call` and `arrears show`.

    /usr/bin/python3 tests/test_client.py [--arrears build/arrears] [--arrearsd build/arrearsd] [TestName ...]

The client talks msgpack-RPC over TCP to arrearsd. So that these tests do
not depend on the server, they run against stand-ins defined here:

- StandIn accepts connections on 127.0.0.1:0 and pipes each request frame,
  byte for byte, through one long-running `arrears eval --data DIR` (one
  process for every connection, so a policy put on one connection holds on
  the next, as in the server). With a token it answers `auth` itself and
  refuses every other method but ping before it, as SPEC §5 says.
  With --arrearsd PATH, the real server takes the stand-in's place
  (`PATH --listen 127.0.0.1:0 --data DIR [--token-file F]`, its port read
  from its `event=listen` log line): the same tests, against arrearsd.
- Scripted answers each request with canned bytes, to reach what a correct
  server never sends: bin, non-string keys, huge integers, garbage, a
  declared size over the 64 MiB limit, a hang-up, an answer in 1-byte pieces.

What is covered: call prints results as pretty JSON (stdout, exit 0) and
errors as JSON (stderr, exit 1); policy.put/get round-trips; params from
stdin; --connect, ARREARS_CONNECT and the default address; --token-file;
bad usage (exit 2); proto_response_json's conversions and refusals; show's
grid cell by cell (--no-color letters, worked out by hand from SPEC R2-R5,
R8 next to each person below), its boundaries (paid on the deadline day,
paid on D, paid the day after D, expiry window 24 vs 25 months, D on the
deadline and the day after, month_offset with clipping), its city column,
its summary lines, its colours on a terminal and NO_COLOR.

Prints `N passed, M failed` last and exits 1 on any failure.
"""

import json
import os
import pty
import re
import select
import shutil
import signal
import socket
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
ARREARSD = None  # --arrearsd PATH: the real server instead of StandIn
TIMEOUT_S = 60


def make_id(first17):
    """18-char resident ID: GB 11643 check char, SPEC §2.1."""
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    s = sum(int(c) * w[i] for i, c in enumerate(first17))
    return first17 + "10X98765432"[s % 11]


# ---------------------------------------------------------------- stand-ins


class FrameReader:
    """Cuts whole msgpack messages out of a byte stream, keeping their bytes."""

    def __init__(self, read):
        self.read = read  # read(n) -> bytes, b"" at EOF
        self.buf = b""

    def next(self):
        """(message, its bytes), or (None, None) at EOF."""
        while True:
            if self.buf:
                u = msgpack.Unpacker(raw=False, strict_map_key=False)
                u.feed(self.buf)
                try:
                    msg = u.unpack()
                    n = u.tell()
                    frame, self.buf = self.buf[:n], self.buf[n:]
                    return msg, frame
                except msgpack.OutOfData:
                    pass
            try:
                chunk = self.read(65536)
            except OSError:
                chunk = b""
            if not chunk:
                return None, None
            self.buf += chunk


class Server:
    """Accepts on 127.0.0.1:0; serve(conn) runs in a thread per connection."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.connections = 0
        self.accepter = threading.Thread(target=self.accept_loop, daemon=True)
        self.accepter.start()

    def accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve_closing, args=(conn,), daemon=True).start()

    def serve_closing(self, conn):
        try:
            self.serve(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        # Wake the accepting thread and wait for it before closing: a thread
        # still polling the closed descriptor's number would accept on the
        # next test's listener, reusing that number, and serve it from here.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.accepter.join(timeout=TIMEOUT_S)
        self.sock.close()


def error_answer(msgid, code, name, message, at=None):
    e = {"code": code, "name": name, "message": message}
    if at is not None:
        e["at"] = at
    return msgpack.packb([1, msgid, e, None])


class StandIn(Server):
    """arrearsd's stand-in: every frame through one `arrears eval --data DIR`."""

    def __init__(self, data_dir, token=None):
        self.proc = subprocess.Popen([ARREARS, "eval", "--data", data_dir],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.out = FrameReader(lambda n: os.read(self.proc.stdout.fileno(), n))
        self.lock = threading.Lock()
        self.token = token
        super().__init__()

    def serve(self, conn):
        reader = FrameReader(conn.recv)
        authed = self.token is None
        while True:
            msg, frame = reader.next()
            if msg is None:
                return
            method = msg[2] if isinstance(msg, list) and len(msg) == 4 else None
            if self.token is not None and method == "auth":
                params = msg[3][0] if msg[3] else {}
                authed = params.get("token") == self.token
                conn.sendall(msgpack.packb([1, msg[1], None, {"ok": True}]) if authed else
                             error_answer(msg[1], 8, "unauthorized", "wrong token", "token"))
                continue
            if not authed and method not in ("ping", None):
                conn.sendall(error_answer(msg[1], 8, "unauthorized", "send auth with the token first"))
                continue
            answer = self.through_eval(msg, frame)
            if answer:
                conn.sendall(answer)

    def through_eval(self, msg, frame):
        with self.lock:
            self.proc.stdin.write(frame)
            self.proc.stdin.flush()
            if isinstance(msg, list) and msg and msg[0] == 2:
                return b""  # a notification: eval answers nothing
            _, answer = self.out.next()
            return answer

    def close(self):
        super().close()
        self.proc.stdin.close()
        self.proc.wait(timeout=TIMEOUT_S)


class Arrearsd:
    """The real server in StandIn's place (--arrearsd)."""

    def __init__(self, data_dir, token_dir, token=None):
        args = [ARREARSD, "--listen", "127.0.0.1:0", "--data", data_dir]
        if token is not None:
            path = os.path.join(token_dir, "server-token")
            with open(path, "w") as f:
                f.write(token + "\n")
            args += ["--token-file", path]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.log = b""
        port = None
        deadline = time.monotonic() + TIMEOUT_S
        while port is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 1)
            chunk = os.read(self.proc.stderr.fileno(), 4096) if ready else b""
            if ready and not chunk:
                break
            self.log += chunk
            m = re.search(rb"event=listen\b[^\n]*? port=(\d+)", self.log)
            port = int(m.group(1)) if m else None
        if port is None:
            self.proc.kill()
            raise RuntimeError("arrearsd did not start listening: %r" % self.log)
        self.address = "127.0.0.1:%d" % port
        # keep reading its log so that it never blocks on a full pipe
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Scripted(Server):
    """Answers the n-th request with answers[n](msgid): bytes, or None to hang up."""

    def __init__(self, answers, piecewise=False):
        self.answers = list(answers)
        self.piecewise = piecewise  # send the answer one byte at a time
        super().__init__()

    def serve(self, conn):
        reader = FrameReader(conn.recv)
        while self.answers:
            msg, _ = reader.next()
            if msg is None:
                return
            answer = self.answers.pop(0)(msg[1])
            if answer is None:
                return
            if not self.piecewise:
                conn.sendall(answer)
                continue
            for i in range(len(answer)):
                conn.sendall(answer[i:i + 1])
                time.sleep(0.001)


def result_answer(value):
    return lambda msgid: msgpack.packb([1, msgid, None, value], use_bin_type=True)


# ---------------------------------------------------------------- running the client


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("ARREARS_CONNECT", "NO_COLOR", "TERM")}
    env.update(extra)
    return env


def run(args, stdin=None, env=None):
    return subprocess.run([ARREARS] + args, input=stdin, capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env if env is not None else clean_env())


POLICY_BJ = {
    "city": "110000", "name": "Beijing",
    "deadline": {"day": 25},
    "periods": [{"from": 201001, "base_min": 300000, "base_max": 3000000,
                 "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000},
                           "medical": {"employer": 98000, "individual": 20000, "flexible": 80000}}}],
    "backpay": {"flexible_window_months": 24},
}

POLICY_SH = {
    "city": "310000", "name": "Shanghai",
    "deadline": {"day": 31, "month_offset": 1},  # deadline(m): last day of m + 1, clipped
    "periods": [{"from": 201001, "base_min": 300000, "base_max": 3000000,
                 "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000}}}],
}


def slot(month, city, type_, category, base, paid=0, paid_date=0, deemed=False):
    return {"month": month, "city": city, "type": type_, "category": category,
            "base": base, "paid": paid, "paid_date": paid_date, "deemed": deemed}


# Person A: a man born 1970-06 (m60), one city, as of 20240610 (month(D) 202406).
# Beijing: deadline(m) = the 25th of m; flexible pension due = 600000 x 20% = 120000;
# employee medical due = 600000 x (9.8% + 2%) = 58800 + 12000 = 70800; maternity
# has no rate: due 0; flexible slots expire when month(D) - m > 24.
A = make_id("11010519700615001")


def fp(month, paid=0, paid_date=0, deemed=False):
    """Person A's flexible pension slot in Beijing, base 600000 (due 120000)."""
    if deemed:
        return slot(month, "110000", "pension", "flexible", 0, 0, 0, True)
    return slot(month, "110000", "pension", "flexible", 600000, paid, paid_date)


PERSON_A = {"id": A, "slots": [
    fp(202201),                          # unpaid, age 29 > 24: expired       x
    fp(202205),                          # age 25 > 24: expired               x
    fp(202206),                          # age 24, not > 24: in arrears       A
    fp(202212, 120000, 20221220),        # paid by the 25th                   #
    fp(202301, 120000, 20230120),        #                                    #
    fp(202302, 120000, 20230225),        # paid on the deadline day itself    #
    fp(202303, 120000, 20230326),        # the day after the deadline         b
    fp(202304),                          # unpaid past the deadline           A
    fp(202305, 60000, 20230520),         # half paid: owed 60000              A
    # 202306: no slot                                                         .
    fp(202307, 120000, 20240611),        # paid the day after D: unpaid as of D  A
    fp(202308, deemed=True),             #                                    d
    fp(202309, 120000, 20240610),        # paid on D, late: counted back-paid b
    fp(202310, 120000, 20231025),        #                                    #
    fp(202311, 120000, 20231101),        #                                    #
    fp(202312, 120000, 20231201),        #                                    #
] + [fp(m, 120000, m * 100 + 20) for m in range(202401, 202406)] + [  # 01..05   #
    fp(202406),                          # unpaid, D 20240610 <= 20240625     p
    fp(202407),                          # month > month(D): future           (blank)
    slot(202401, "110000", "medical", "employee", 600000, 70800, 20240120),   # #
    slot(202402, "110000", "medical", "employee", 600000),                    # A
    slot(202403, "110000", "maternity", "employee", 600000),                  # due 0: -
]}

# Cells of person A as of 20240610, January to December.
GRID_A = [
    ("2022", "pension", "x...xA.....#"),
    ("2023", "pension", "##bAA.Adb###"),
    ("2024", "pension", "#####p      "),
    ("2024", "medical", "#A....      "),
    ("2024", "maternity", "..-...      "),
]

# Person B: a woman born 1985-02-03 (f55), two cities, as of 20230615.
# Shanghai's deadline(m) is the last day of m + 1: 202301 -> 20230228 (31 clipped),
# 202302 -> 20230331, 202303 -> 20230430 (clipped), 202304 -> 20230531,
# 202305 -> 20230630, 202306 -> 20230731. Employee pension due 96000 + 48000 = 144000.
B = make_id("31010119850203002")


def sp(month, paid=0, paid_date=0):
    return slot(month, "310000", "pension", "employee", 600000, paid, paid_date)


PERSON_B = {"id": B, "slots": [
    slot(202212, "110000", "pension", "flexible", 600000, 120000, 20221225),  # Beijing #
    slot(202305, "110000", "pension", "flexible", 600000, 120000, 20230520),  # Beijing #
    sp(202301, 144000, 20230228),   # on the clipped deadline          #
    sp(202302, 144000, 20230331),   #                                  #
    sp(202303, 144000, 20230501),   # the day after 20230430           b
    sp(202304, 144000, 20230531),   #                                  #
    sp(202305),                     # unpaid, but D <= 20230630        p
    sp(202306),                     # month(D), D <= 20230731          p
]}

# Person C: a slot before Beijing's first period (201001): R1 fails, so the
# server refuses every computation for the person; the grid still shows what
# the rules say of each slot, with expiry (R5) worked out by the client.
C = make_id("11010519800101003")
PERSON_C = {"id": C, "slots": [
    fp(200912),                          # no period for it                   ?
    fp(202201),                          # unpaid, age 29 > 24: expired       x
    fp(202206),                          # age 24: in arrears                 A
]}

GRID_B = [
    ("2022", "pension", "110000", "...........#"),
    ("2023", "pension", "110000", "....#.      "),
    ("2023", "pension", "310000", "##b#pp      "),
]


def parse_grid(stdout, with_city):
    """The grid rows of `show --no-color`: (year, type[, city], 12 cell letters)."""
    rows = []
    lines = stdout.split("\n")
    header = next(i for i, line in enumerate(lines) if line.startswith("year type"))
    for line in lines[header + 1:]:
        if line.startswith("legend:"):
            break
        fields = line.split()
        label = 5 + 12 + (7 if with_city else 0) + 1
        cells = line[label:]
        assert len(cells) == 36, repr(line)
        letters = "".join(cells[3 * m + 1] for m in range(12))
        assert all(cells[3 * m] == " " and cells[3 * m + 2] == " " for m in range(12)), repr(line)
        rows.append(tuple(fields[:3 if with_city else 2]) + (letters,))
    return rows


# ---------------------------------------------------------------- tests


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="arrears-client-")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def stand_in(self, token=None):
        store = os.path.join(self.tmp, "store")
        s = Arrearsd(store, self.tmp, token) if ARREARSD else StandIn(store, token)
        self.servers.append(s)
        return s

    def scripted(self, answers, piecewise=False):
        s = Scripted(answers, piecewise)
        self.servers.append(s)
        return s

    def call(self, server, method, params=None, extra=(), stdin=None):
        args = ["call", "--connect", server.address] + list(extra) + [method]
        if params is not None:
            args.append(params if isinstance(params, str) else json.dumps(params))
        return run(args, stdin=stdin)

    def ok(self, server, method, params=None):
        r = self.call(server, method, params)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        return json.loads(r.stdout)

    def err(self, server, method, params=None):
        r = self.call(server, method, params)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertEqual(r.stdout, "")
        return json.loads(r.stderr)


class TestCall(ClientTest):
    def test_ping_prints_pretty_json(self):
        s = self.stand_in()
        r = self.call(s, "ping")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["pong"], True)
        self.assertIn("version", json.loads(r.stdout))
        self.assertTrue(r.stdout.startswith('{\n  "pong": true,'), r.stdout)  # pretty, in message order
        self.assertTrue(r.stdout.endswith("}\n"))
        self.assertEqual(self.ok(s, "ping", {})["pong"], True)

    def test_policy_put_then_get_round_trips(self):
        s = self.stand_in()
        self.assertEqual(self.ok(s, "policy.put", {"policy": POLICY_BJ}), {"ok": True, "revision": 1, "warnings": []})
        got = self.ok(s, "policy.get", {"city": "110000"})["policy"]
        self.assert_subset(POLICY_BJ, got)
        # defaults filled in (SPEC §3.3), as policy.get promises
        self.assertEqual(got["deadline"]["month_offset"], 0)
        self.assertEqual(got["late_fee"]["daily_ppm"], 500)
        self.assertEqual(got["periods"][0]["rates"]["maternity"],
                         {"employer": 0, "individual": 0, "flexible": 0})
        # and the JSON printed goes back in as it came out: equal, so no new revision (SPEC 3.4)
        self.assertEqual(self.ok(s, "policy.put", {"policy": got}), {"ok": True, "revision": 1, "warnings": []})
        self.assertEqual(self.ok(s, "policy.get", {"city": "110000"})["policy"], got)

    def assert_subset(self, want, got, path="policy"):
        if isinstance(want, dict):
            self.assertIsInstance(got, dict, path)
            for k, v in want.items():
                self.assertIn(k, got, path)
                self.assert_subset(v, got[k], path + "." + k)
        elif isinstance(want, list):
            self.assertEqual(len(want), len(got), path)
            for i, (a, b) in enumerate(zip(want, got)):
                self.assert_subset(a, b, "%s[%d]" % (path, i))
        else:
            self.assertEqual(want, got, path)

    def test_errors_go_to_stderr_as_json_with_exit_1(self):
        s = self.stand_in()
        e = self.err(s, "no.such.method", {})
        self.assertEqual((e["code"], e["name"], sorted(e)), (2, "unknown_method", ["code", "message", "name"]))
        e = self.err(s, "policy.get", {"city": "999999"})
        self.assertEqual((e["code"], e["name"], e["at"]), (4, "not_found", "999999"))
        e = self.err(s, "person.get", {"id": A})
        self.assertEqual((e["code"], e["name"], e["at"]), (4, "not_found", "id"))
        e = self.err(s, "arrears.compute", {"as_of": 20240231, "persons": []})
        self.assertEqual((e["code"], e["at"]), (3, "as_of"))

    def test_params_from_stdin(self):
        s = self.stand_in()
        r = self.call(s, "policy.put", "-", stdin=json.dumps({"policy": POLICY_SH}))
        self.assertEqual((r.returncode, json.loads(r.stdout)), (0, {"ok": True, "revision": 1, "warnings": []}), r.stderr)
        self.assertEqual(self.ok(s, "policy.get", {"city": "310000"})["policy"]["name"], "Shanghai")

    def test_bad_usage_exits_2(self):
        s = self.stand_in()
        # Each error names what was wrong (issue 9): the flag, the argument, what is missing.
        for args, named in ((["call"], "which METHOD?"), (["call", "--connect"], "--connect needs a value"),
                            (["call", "--connect", s.address], "which METHOD?"),
                            (["call", "--connect", s.address, "ping", "{}", "extra"], "unexpected argument 'extra'"),
                            (["call", "--bogus", "ping"], "unknown flag '--bogus'"),
                            (["call", "--connect", "no-port", "ping"], "HOST:PORT")):
            r = run(args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(r.stdout, "")
            self.assertIn(named, r.stderr, args)
        for params in ("{", "[1, 2]", "3", '{"a": }'):
            r = self.call(s, "ping", params)
            self.assertEqual(r.returncode, 2, (params, r.stderr))
            self.assertIn("params", r.stderr)
        self.assertEqual(run(["call", "--help"]).returncode, 0)

    def test_connect_sources(self):
        s = self.stand_in()
        # ARREARS_CONNECT when there is no --connect; --connect wins over it
        r = run(["call", "ping"], env=clean_env(ARREARS_CONNECT=s.address))
        self.assertEqual((r.returncode, json.loads(r.stdout)["pong"]), (0, True), r.stderr)
        r = run(["call", "--connect", s.address, "ping"], env=clean_env(ARREARS_CONNECT="127.0.0.1:1"))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["call", "ping"], env=clean_env(ARREARS_CONNECT="127.0.0.1:1"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot connect to 127.0.0.1:1", r.stderr)
        # the default address, when nothing listens there
        probe = socket.socket()
        busy = probe.connect_ex(("127.0.0.1", 7420)) == 0
        probe.close()
        if not busy:
            r = run(["call", "ping"])
            self.assertEqual(r.returncode, 1)
            self.assertIn("cannot connect to 127.0.0.1:7420", r.stderr)

    def test_token_file_sends_auth_first(self):
        s = self.stand_in(token="s3cret")
        e = self.err(s, "policy.get", {"city": "110000"})
        self.assertEqual((e["code"], e["name"]), (8, "unauthorized"))
        good = os.path.join(self.tmp, "good")
        with open(good, "w") as f:
            f.write("s3cret\n")  # the file's newline is not part of the token
        bad = os.path.join(self.tmp, "bad")
        with open(bad, "w") as f:
            f.write("guess\n")
        r = self.call(s, "policy.put", {"policy": POLICY_BJ}, extra=["--token-file", good])
        self.assertEqual((r.returncode, json.loads(r.stdout)), (0, {"ok": True, "revision": 1, "warnings": []}), r.stderr)
        r = self.call(s, "ping", extra=["--token-file", bad])
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stderr)["name"], "unauthorized")
        r = self.call(s, "ping", extra=["--token-file", os.path.join(self.tmp, "missing")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("missing", r.stderr)
        # the token is the file's first line, as arrearsd reads its own token file
        lines = os.path.join(self.tmp, "lines")
        with open(lines, "w") as f:
            f.write("s3cret\r\nanything else\n")
        r = self.call(s, "ping", extra=["--token-file", lines])
        self.assertEqual(r.returncode, 0, r.stderr)
        empty = os.path.join(self.tmp, "empty")
        with open(empty, "w") as f:
            f.write("\ns3cret\n")
        r = self.call(s, "ping", extra=["--token-file", empty])
        self.assertEqual(r.returncode, 1)
        self.assertIn("no token in its first line", r.stderr)
        # show authenticates the same way: past auth, the person is simply unknown
        for extra, name in (([], "unauthorized"), (["--token-file", good], "not_found")):
            r = run(["show", "--connect", s.address, A, "--as-of", "20240610"] + extra)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertEqual(json.loads(r.stderr)["name"], name)


class TestResponses(ClientTest):
    """proto_response_json through `call`, with answers no real server sends."""

    def test_conversions(self):
        value = {"bin": b"\x00\x01\x02\xff", "empty": b"", "nil": None, "neg": -5,
                 "big": 2 ** 63 - 1, "real": 1.5, "nested": [[[{"a": [True, False]}]]], "text": "\u5317\u4eac"}
        s = self.scripted([result_answer(value)])
        out = self.ok(s, "anything")
        expected = dict(value, bin="AAEC/w==", empty="")
        self.assertEqual(out, expected)
        self.assertEqual(list(out), list(value))  # keys in message order

    def test_a_result_may_be_a_scalar_or_nil(self):
        s = self.scripted([result_answer(None), result_answer(7)])
        r = self.call(s, "x")
        self.assertEqual((r.returncode, r.stdout), (0, "null\n"))
        r = self.call(s, "x")
        self.assertEqual((r.returncode, r.stdout), (0, "7\n"))

    def test_answer_in_one_byte_pieces(self):
        s = self.scripted([result_answer({"pong": True, "pad": "x" * 300})], piecewise=True)
        self.assertEqual(self.ok(s, "ping")["pad"], "x" * 300)

    def test_what_json_cannot_carry_is_refused(self):
        cases = [
            ("non-string key", result_answer({1: 2})),
            ("uint64 above int64", result_answer({"u": 2 ** 64 - 1})),
            ("ext", result_answer({"e": msgpack.ExtType(5, b"xy")})),
            ("not UTF-8", lambda msgid: b"\x94\x01" + bytes([msgid]) + b"\xc0\x81\xa1k\xa2\xff\xfe"),
        ]
        for name, answer in cases:
            s = self.scripted([answer])
            r = self.call(s, "x")
            self.assertEqual(r.returncode, 1, name)
            self.assertEqual(r.stdout, "", name)
            self.assertIn("no JSON form", r.stderr, name)

    def test_broken_answers(self):
        deep = {"k": 1}
        for _ in range(40):
            deep = [deep]
        cases = [
            ("garbage", lambda msgid: b"\xc1", "not msgpack"),
            ("not a response", result_answer(None), None),  # replaced below
            ("hang-up", lambda msgid: None, "closed the connection"),
            ("over 64 MiB", lambda msgid: b"\x94\x01\x01\xc0\xc6" + (65 << 20).to_bytes(4, "big"), "64 MiB"),
            ("too deep", result_answer(deep), "nested too deep"),
        ]
        cases[1] = ("three elements", lambda msgid: msgpack.packb([1, msgid, None]), "no JSON form (malformed)")
        for name, answer, message in cases:
            s = self.scripted([answer])
            r = self.call(s, "x")
            self.assertEqual(r.returncode, 1, name)
            self.assertEqual(r.stdout, "", name)
            self.assertIn(message, r.stderr, name)

    def test_error_answer(self):
        s = self.scripted([lambda msgid: error_answer(msgid, 7, "overloaded", "busy")])
        self.assertEqual(self.err(s, "x"), {"code": 7, "name": "overloaded", "message": "busy"})


class TestShow(ClientTest):
    def setUp(self):
        super().setUp()
        self.s = self.stand_in()
        for p in (POLICY_BJ, POLICY_SH):
            self.assertEqual(self.ok(self.s, "policy.put", {"policy": p}), {"ok": True, "revision": 1, "warnings": []})
        r = self.ok(self.s, "person.put", {"persons": [PERSON_A, PERSON_B, PERSON_C]})
        self.assertEqual(r, {"results": [{"id": A, "ok": True}, {"id": B, "ok": True}, {"id": C, "ok": True}]})

    def show(self, *args, env=None):
        return run(["show", "--connect", self.s.address] + list(args), env=env)

    def test_grid_person_a(self):
        r = self.show(A, "--as-of", "20240610", "--no-color")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        self.assertIn("person %s as of 20240610\n" % A, r.stdout)
        self.assertEqual(parse_grid(r.stdout, False), GRID_A)
        legend = next(line for line in r.stdout.split("\n") if line.startswith("legend:"))
        self.assertEqual(legend, "legend: '#' paid on time 'b' back-paid 'A' in arrears 'p' pending 'x' expired"
                                 " 'd' deemed '.' not enrolled ' ' future '-' nothing due")

    def test_summary_person_a(self):
        r = self.show(A, "--as-of", "20240610", "--no-color")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split("\n")
        # Payable arrears: pension 202206, 202304, 202305 (owed 60000), 202307; medical 202402.
        # principal 120000 * 3 + 60000 + 70800 = 490800.
        # Interest (flexible pension; the default rate table of SPEC §3.3: 2022 61200,
        # 2023 39700, 2024 26200 ppm), R6 by hand:
        #   202206: 120000 +3672 (6/12 of 2022) +4910 (2023) +1684 (6/12 of 2024) = 10266
        #   202304: 120000 +3176 (8/12) +1614 = 4790;  202305: 60000 +1390 (7/12) +804 = 2194
        #   202307: 120000 +1985 (5/12) +1598 = 3583;  sum 20833
        # Late fee (employee medical 202402): owed 70800, deadline 20240225,
        #   days to 20240610 = 4 + 31 + 30 + 31 + 10 = 106, rh(70800 * 500 * 106 / 10^6) = 3752.
        # total 490800 + 20833 + 3752 = 515385.
        self.assertIn("arrears: 5 months owed (202206..202402), principal 4908.00 + interest 208.33"
                      " + late fee 37.52 = total 5153.85 yuan", lines)
        self.assertIn("  pension      4 months, principal 4200.00, interest 208.33, late fee 0.00 yuan", lines)
        self.assertIn("  medical      1 month, principal 708.00, interest 0.00, late fee 37.52 yuan", lines)
        self.assertIn("  pending 1200.00 yuan; expired 2 months, 2400.00 yuan;"
                      " tiers: direct 0, verify 5, approval 0, legacy 0", lines)
        # Pension counted: 202212; 2023: 01 02 03 08 09 10 11 12; 2024: 01..05 = 14 months,
        # on time 1 + 5 + 5 = 11, back-paid 202303 and 202309, deemed 202308.
        self.assertIn("years: pension      1 y 2 m (14 months: 11 on time, 2 back-paid, 1 deemed)", lines)
        self.assertIn("years: medical      0 y 1 m (1 month: 1 on time, 0 back-paid, 0 deemed)", lines)
        # m60 born 197006: statutory 203111, required 192; shortfall 192 - 14 = 178;
        # eligible_from = max(203111, 202406 + 178 months = 203904).
        self.assertIn("retirement: class m60, statutory 203111 (original 203006), required 192 months,"
                      " counted 14, shortfall 178, payable arrears 4 months; eligible from 203904", lines)
        self.assertIn("medical: suspended since 202403; 1 month in arrears", lines)
        # Housing in the latest slot's city: window ends 202406 - 1; qualifying pension months
        # paid by the deadline: 202212, 202301, 202302, 202310..202312, 202401..202405 = 11.
        housing = next(line for line in lines if line.startswith("housing"))
        self.assertTrue(housing.startswith("housing 110000: window 201906..202405, 11 of 60 required months"
                                           " qualify: not eligible, eligible from "), housing)
        self.assertIn("  missing: 201906 201907 201908 201909 201910 201911 201912 202001 202002 202003"
                      " 202004 202005 and 37 more", lines)

    def test_pending_until_the_deadline_then_arrears(self):
        for as_of, cell in (("20240625", "p"), ("20240626", "A")):
            r = self.show(A, "--as-of", as_of, "--no-color")
            self.assertEqual(r.returncode, 0, r.stderr)
            rows = dict(((y, t), c) for y, t, c in parse_grid(r.stdout, False))
            self.assertEqual(rows[("2024", "pension")], "#####" + cell + "      ", as_of)

    def test_grid_two_cities(self):
        r = self.show(B, "--as-of", "20230615", "--no-color")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(parse_grid(r.stdout, True), GRID_B)
        # housing defaults to the city of the latest slot (202306, Shanghai)
        self.assertTrue(any(line.startswith("housing 310000: ") for line in r.stdout.split("\n")), r.stdout)
        r = self.show(B, "--as-of", "20230615", "--no-color", "--city", "110000")
        self.assertTrue(any(line.startswith("housing 110000: ") for line in r.stdout.split("\n")), r.stdout)

    def test_housing_city_without_policy_is_shown_as_an_error(self):
        r = self.show(A, "--as-of", "20240610", "--no-color", "--city", "120000")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(parse_grid(r.stdout, False), GRID_A)
        self.assertIn("housing 120000: error not_found at 120000: ", r.stdout)

    def test_month_without_period_and_summary_errors(self):
        r = self.show(C, "--as-of", "20240610", "--no-color")
        self.assertEqual(r.returncode, 1, r.stderr)
        rows = parse_grid(r.stdout, False)
        self.assertEqual([y for y, _, _ in rows], [str(y) for y in range(2009, 2023)])
        self.assertEqual(rows[0], ("2009", "pension", "...........?"))
        self.assertEqual(rows[1], ("2010", "pension", "............"))
        self.assertEqual(rows[-1], ("2022", "pension", "x....A......"))
        lines = r.stdout.split("\n")
        self.assertIn("'?' no policy period", next(line for line in lines if line.startswith("legend:")))
        for what in ("arrears", "years", "retirement", "medical", "housing 110000"):
            line = next(line for line in lines if line.startswith(what + ":"))
            self.assertTrue(line.startswith(what + ": error invalid_argument at ids[0].slots["), line)

    def test_unknown_person_and_bad_usage(self):
        r = self.show(make_id("11010519900101001"), "--as-of", "20240610")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertEqual(json.loads(r.stderr)["name"], "not_found")
        for args, named in (([], "which ID?"), (["--as-of", "20240230", A], "--as-of must be a date"),
                            (["--as-of", A], "--as-of must be a date"), ([A, "--city", "11"], "--city must be"),
                            ([A, A], "unexpected argument '%s'" % A), ([A, "--bogus"], "unknown flag '--bogus'")):
            r = self.show(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(named, r.stderr, args)

    def test_default_date_is_today(self):
        r = self.show(A, "--no-color")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("person %s as of %s\n" % (A, time.strftime("%Y%m%d")), r.stdout)

    def test_colours_on_a_terminal(self):
        out = self.show_on_pty(A, "--as-of", "20240610")
        self.assertIn("\x1b[30;42m # \x1b[0m", out)   # on time: green
        self.assertIn("\x1b[97;41m A \x1b[0m", out)   # arrears: red
        self.assertIn("\x1b[97;45m x \x1b[0m", out)   # expired: magenta
        self.assertIn("\x1b[30;42m # \x1b[0m", self.show_on_pty(A, "--as-of", "20240610", NO_COLOR=""))
        for args, env in (([A, "--as-of", "20240610", "--no-color"], {}),
                          ([A, "--as-of", "20240610"], {"NO_COLOR": "1"}),
                          ([A, "--as-of", "20240610"], {"TERM": "dumb"})):
            out = self.show_on_pty(*args, **env)
            self.assertNotIn("\x1b[", out, env)
            self.assertIn("2023 pension       #  #  b  A  A  .  A  d  b  #  #  # \n", out, env)

    def show_on_pty(self, *args, **env):
        """show's stdout as a terminal shows it; env on top of TERM=xterm."""
        master, slave = pty.openpty()
        p = subprocess.Popen([ARREARS, "show", "--connect", self.s.address] + list(args),
                             stdout=slave, stderr=subprocess.PIPE, env=clean_env(**dict({"TERM": "xterm"}, **env)))
        os.close(slave)
        out = b""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if p.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        self.assertEqual(p.wait(timeout=TIMEOUT_S), 0, p.stderr.read())
        p.stderr.close()
        return out.decode().replace("\r\n", "\n")


# ---------------------------------------------------------------- main


def main(argv):
    global ARREARS, ARREARSD
    rest = [argv[0]]
    i = 1
    while i < len(argv):
        if argv[i] == "--arrears" and i + 1 < len(argv):
            ARREARS = argv[i + 1]
            i += 1
        elif argv[i] == "--arrearsd" and i + 1 < len(argv):
            ARREARSD = argv[i + 1]
            i += 1
        else:
            rest.append(argv[i])
        i += 1
    if msgpack is None:
        print("msgpack is missing: run with /usr/bin/python3 (python3-msgpack)")
        print("0 passed, 1 failed")
        return 2
    if not os.access(ARREARS, os.X_OK):
        print("no binary at %s (make build/arrears)" % ARREARS)
        print("0 passed, 1 failed")
        return 2
    print("test_client: %s against %s" % (ARREARS, ARREARSD or "a stand-in server (arrears eval --data)"))
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    if len(rest) > 1:
        suite = unittest.defaultTestLoader.loadTestsFromNames(rest[1:], sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    bad = set()
    for t, _ in result.failures + result.errors:
        bad.add(getattr(t, "test_case", t).id())
    failed = len(bad)
    passed = max(0, result.testsRun - failed)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
