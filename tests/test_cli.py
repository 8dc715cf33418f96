#!/usr/bin/python3
"""The command line as people know it, the import of real CSV files, and the
installation as a service (issue 9, items 8-10).

- --help on every subcommand of build/arrears and on build/arrearsd: usage
  on stdout, nothing on stderr, exit 0; --version prints "arrears 0.1.0" /
  "arrearsd 0.1.0" (PROTO_VERSION).
- An unknown flag, a flag without its value, a missing required flag: exit
  2, and stderr names the flag.
- import: quoted fields (an escaped quote, a comma and a line break inside
  quotes), CRLF line ends, a UTF-8 byte-order mark, columns in another
  order with an extra one and without deemed: the slots stored are exactly
  the ones written by hand below (read back with person.get through eval).
  A bad row after a two-line record is reported at its physical line with
  the masked id. A header without city and base names both as missing and
  imports nothing (exit 1). A city without a policy is warned with the
  number of persons imported there (2, by hand). import without --data
  names --data.
- arrearsd --listen localhost:0 and [::1]:0: the log names the resolved
  address, and a ping through it answers. IPv6 is skipped (loudly) only when
  the kernel has none.
- make install DESTDIR=tmp: exactly the expected files; the unit has the
  binary's path and the sandboxing keys; systemd-analyze verify accepts it
  when the tool is there (else the keys are checked textually only).
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import msgpack

ARREARS = ARREARSD = None
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

A = "110101195501010013"  # valid resident ids (arrears gen --seed 1)
B = "110101198504220001"
C = "110101196608120006"
POLICY = None  # a policy file for city 110000, written by arrears gen


def run(args, stdin=None, cwd=None):
    p = subprocess.run(args, input=stdin, capture_output=True, cwd=cwd, timeout=120)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def read(path):
    with open(path) as f:
        return f.read()


def person_get(data, pid):
    req = msgpack.packb([0, 1, "person.get", [{"id": pid}]])
    p = subprocess.run([ARREARS, "eval", "--data", data], input=req, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    msg = msgpack.unpackb(p.stdout)
    return msg[2], msg[3]


def slot(month, city, typ, cat, base, paid, paid_date, deemed=False):
    return {"month": month, "city": city, "type": typ, "category": cat, "base": base, "paid": paid,
            "paid_date": paid_date, "deemed": deemed}


class Help(unittest.TestCase):
    SUBCOMMANDS = ["eval", "import", "gen", "call", "show", "audit", "backup", "verify"]

    def test_every_subcommand_has_help_on_stdout_exit_0(self):
        for sub in self.SUBCOMMANDS:
            for flag in ("--help", "-h"):
                rc, out, err = run([ARREARS, sub, flag])
                self.assertEqual(rc, 0, (sub, flag, err))
                self.assertTrue(out.startswith("usage: arrears " + sub), (sub, out))
                self.assertEqual(err, "", sub)
        rc, out, err = run([ARREARS, "--help"])
        self.assertEqual((rc, err), (0, ""))
        for sub in self.SUBCOMMANDS:
            self.assertIn("arrears " + sub, out)
        rc, out, err = run([ARREARSD, "--help"])
        self.assertEqual((rc, err), (0, ""))
        self.assertTrue(out.startswith("usage: arrearsd"))
        for flag in ("--listen", "--data", "--threads", "--token-file", "--idle-timeout"):
            self.assertIn(flag, out)

    def test_version(self):
        self.assertEqual(run([ARREARS, "--version"]), (0, "arrears 0.1.0\n", ""))
        self.assertEqual(run([ARREARSD, "--version"]), (0, "arrearsd 0.1.0\n", ""))

    def test_bad_flags_exit_2_naming_the_flag(self):
        cases = [
            ([ARREARS, "eval", "--bogus"], "unknown flag '--bogus'"),
            ([ARREARS, "eval", "--data"], "--data needs a value"),
            ([ARREARS, "eval", "--map-max", "x"], "--map-max must be an integer"),
            ([ARREARS, "import", "--data", "d", "--frobnicate", "x.csv"], "unknown flag '--frobnicate'"),
            ([ARREARS, "import", "x.csv"], "--data DIR is required"),
            ([ARREARS, "import", "--data"], "--data needs a value"),
            ([ARREARS, "gen", "--persons"], "--persons needs a value"),
            ([ARREARS, "gen", "--people", "3", "--out", "x"], "unknown flag '--people'"),
            ([ARREARS, "gen", "--persons", "3"], "--out DIR or --data DIR is required"),
            ([ARREARS, "call", "--nope", "ping"], "unknown flag '--nope'"),
            ([ARREARS, "call", "ping", "{}", "--connect"], "--connect needs a value"),
            ([ARREARS, "show", A, "--as-of"], "--as-of needs a value"),
            ([ARREARS, "show", A, "--color"], "unknown flag '--color'"),
            ([ARREARS, "show", A, "--as-of", "20230230"], "--as-of must be a date"),
            ([ARREARS, "frob"], "unknown command 'frob'"),
            ([ARREARS, "audit", "--data", "d", "--after"], "--after needs a value"),
            ([ARREARS, "audit", "--limit", "0", "--data", "d"], "--limit must be an integer"),
            ([ARREARS, "audit"], "--data DIR is required"),
            ([ARREARS, "backup", "--data", "d"], "OUT is required"),
            ([ARREARS, "backup", "--data", "d", "o", "p"], "unexpected argument 'p'"),
            ([ARREARS, "verify", "--data", "d", "--fix"], "unknown flag '--fix'"),
            ([ARREARSD, "--bogus", "1"], "unknown flag '--bogus'"),
            ([ARREARSD, "--bogus"], "unknown flag '--bogus'"),
            ([ARREARSD, "--threads"], "--threads needs a value"),
            ([ARREARSD, "--listen", "127.0.0.1"], "--listen must be HOST:PORT"),
            ([ARREARSD, "--listen", "::1:7420"], "--listen must be HOST:PORT"),
            ([ARREARSD, "--listen", "[::1]:70000"], "--listen must be HOST:PORT"),
        ]
        for args, want in cases:
            rc, out, err = run(args)
            self.assertEqual(rc, 2, (args, err))
            self.assertIn(want, err, args)
            self.assertEqual(out, "", args)


class Import(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="arrears-cli-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_real_file_bom_crlf_quotes_reordered_columns(self):
        lines = [
            b'\xef\xbb\xbfMonth,"id",note,city,type,category,base,paid,paid_date',
            b'202301,"' + A.encode() + b'","a ""quoted"" note, with a comma",110000,pension,flexible,650000,130000,20230120',
            # a record over two lines (line 3 and 4): the note holds a line break
            b'202302,' + A.encode() + b',"two\r\nlines",110000,"pension","flexible","650000",0,0',
            b'',
            b'202301,' + B.encode() + b',,110000,medical,employee,800000,800000,20230110',
            # line 7: a bad base, reported with B's masked id; B is left out
            b'202302,' + B.encode() + b',"x",110000,medical,employee,8OOOOO,0,0',
        ]
        csv = self.write("slots.csv", b"\r\n".join(lines) + b"\r\n")
        data = os.path.join(self.tmp, "store")
        rc, out, err = run([ARREARS, "import", "--data", data, csv, POLICY])
        self.assertEqual(rc, 3, err)
        self.assertIn("import: header: found Month, id, city, type, category, base, paid, paid_date; "
                      "ignored note; missing deemed (every slot not deemed)", err)
        self.assertIn("import: line 7: bad base; person 110101********0001 left out", err)
        self.assertEqual(len(re.findall(r"line \d+: bad", err)), 1, err)
        self.assertIn("1 persons, 2 slots imported; 1 bad rows, 1 persons left out", err)
        self.assertNotIn("warning", err)
        error, result = person_get(data, A)
        self.assertIsNone(error)
        self.assertEqual(result["person"]["slots"], [
            slot(202301, "110000", "pension", "flexible", 650000, 130000, 20230120),
            slot(202302, "110000", "pension", "flexible", 650000, 0, 0)])
        error, _ = person_get(data, B)
        self.assertEqual(error[0] if isinstance(error, list) else error.get("code"), 4, error)  # not_found

    def test_bad_quoting_is_a_bad_row(self):
        csv = self.write("q.csv", ("id,month,city,type,category,base,paid,paid_date,deemed\n"
                                   f'{A},202301,110000,pen"sion,flexible,650000,0,0,0\n'
                                   f'{B},202301,110000,pension,flexible,650000,0,0,false\n'
                                   f'{C},202301,110000,pension,flexible,650000,0,0,"0\n').encode())
        data = os.path.join(self.tmp, "store")
        rc, out, err = run([ARREARS, "import", "--data", data, csv, POLICY])
        self.assertEqual(rc, 3, err)
        self.assertIn("import: line 2: bad quoting; person 110101********0013 left out", err)
        self.assertIn("import: line 4: bad quoting; person 110101********0006 left out", err)
        self.assertIn("1 persons, 1 slots imported; 2 bad rows, 2 persons left out", err)
        error, result = person_get(data, B)
        self.assertIsNone(error)
        self.assertEqual(result["person"]["slots"], [slot(202301, "110000", "pension", "flexible", 650000, 0, 0)])

    def test_missing_columns_named(self):
        csv = self.write("m.csv", f"id,month,type,category,paid,paid_date,deemed\n{A},202301,pension,flexible,0,0,0\n"
                         .encode())
        rc, out, err = run([ARREARS, "import", "--data", os.path.join(self.tmp, "store"), csv])
        self.assertEqual(rc, 1, err)
        self.assertIn("import: header: found id, month, type, category, paid, paid_date, deemed; missing city, base",
                      err)
        self.assertIn("0 persons, 0 slots imported", err)

    def test_city_without_policy_warned_with_count(self):
        csv = self.write("c.csv", ("id,month,city,type,category,base,paid,paid_date,deemed\n"
                                   f"{A},202301,110000,pension,flexible,650000,0,0,0\n"
                                   f"{B},202301,990000,pension,flexible,650000,0,0,0\n"
                                   f"{B},202302,990000,pension,flexible,650000,0,0,0\n"
                                   f"{C},202301,110000,pension,flexible,650000,0,0,0\n"
                                   f"{C},202302,990000,medical,flexible,650000,0,0,0\n").encode())
        rc, out, err = run([ARREARS, "import", "--data", os.path.join(self.tmp, "store"), csv, POLICY])
        self.assertEqual(rc, 0, err)
        self.assertIn("import: warning: city 990000 has no policy in the store: 2 persons imported with slots there",
                      err)
        self.assertNotIn("city 110000 has no policy", err)
        self.assertIn("3 persons, 5 slots imported", err)

    def test_import_without_data_names_it(self):
        rc, out, err = run([ARREARS, "import", "slots.csv"])
        self.assertEqual(rc, 2)
        self.assertIn("--data", err)


def ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Listen(unittest.TestCase):
    def serve(self, listen):
        tmp = tempfile.mkdtemp(prefix="arrears-cli-")
        self.addCleanup(shutil.rmtree, tmp)
        log = self.log = open(os.path.join(tmp, "log"), "w+")
        proc = subprocess.Popen([ARREARSD, "--listen", listen, "--data", os.path.join(tmp, "store"),
                                 "--threads", "1"], stderr=log)

        def stop():
            proc.terminate()
            self.assertEqual(proc.wait(timeout=30), 0)
            log.close()
        self.addCleanup(stop)
        for _ in range(400):
            log.seek(0)
            text = log.read()
            m = re.search(r"event=listen addr=(\S+) port=(\d+)", text)
            if m:
                return m.group(1), int(m.group(2)), text
            self.assertIsNone(proc.poll(), text)
            time.sleep(0.025)
        raise AssertionError("no event=listen")

    def ping(self, target):
        rc, out, err = run([ARREARS, "call", "--connect", target, "ping"])
        self.assertEqual(rc, 0, err)
        return out

    def test_localhost(self):
        addr, port, text = self.serve("localhost:0")
        self.assertIn(addr, ("127.0.0.1", "::1"))
        self.assertIn("host=localhost", text)
        self.assertIn("version", self.ping("%s:%d" % ("[::1]" if addr == "::1" else addr, port)))
        self.assertIn("version", self.ping("localhost:%d" % port))

    def test_ipv6_loopback(self):
        if not ipv6_loopback():
            sys.stderr.write("\n*** SKIPPED: this kernel has no IPv6 (::1 cannot be bound); "
                             "--listen [::1] is NOT tested ***\n")
            self.skipTest("no IPv6 in this kernel")
        addr, port, text = self.serve("[::1]:0")
        self.assertEqual(addr, "::1")
        self.assertIn("version", self.ping("[::1]:%d" % port))
        self.log.seek(0)
        self.assertRegex(self.log.read(), r"event=open conn=\S+ peer=\[::1\]:\d+")


class Install(unittest.TestCase):
    def test_make_install_destdir(self):
        dest = tempfile.mkdtemp(prefix="arrears-dest-")
        self.addCleanup(shutil.rmtree, dest)
        env = dict(os.environ, MAKEFLAGS="")
        p = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "install", "DESTDIR=" + dest, "PREFIX=/usr"],
                           capture_output=True, env=env, timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr)
        files = sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs)
        self.assertEqual(files, ["etc/default/arrearsd", "etc/systemd/system/arrearsd.service", "usr/bin/arrears",
                                 "usr/bin/arrearsd", "usr/share/man/man1/arrears.1", "usr/share/man/man8/arrearsd.8"])
        self.assertTrue(os.access(os.path.join(dest, "usr/bin/arrearsd"), os.X_OK))
        unit = read(os.path.join(dest, "etc/systemd/system/arrearsd.service"))
        keys = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
        self.assertEqual(keys["ExecStart"], "/usr/bin/arrearsd $ARREARSD_OPTS")
        self.assertEqual(keys["EnvironmentFile"], "-/etc/default/arrearsd")
        for key, value in [("DynamicUser", "yes"), ("StateDirectory", "arrears"), ("ProtectSystem", "strict"),
                           ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"),
                           ("Restart", "on-failure")]:
            self.assertEqual(keys.get(key), value, key)
        self.assertGreaterEqual(int(keys["LimitNOFILE"]), 10000)
        self.assertNotIn("@", unit)
        default = read(os.path.join(dest, "etc/default/arrearsd"))
        self.assertRegex(default, r'(?m)^ARREARSD_OPTS="--listen \S+ --data /var/lib/arrears"$')
        for page in ("usr/share/man/man1/arrears.1", "usr/share/man/man8/arrearsd.8"):
            self.assertTrue(read(os.path.join(dest, page)).startswith(".TH "))
        if shutil.which("systemd-analyze"):
            # verify wants the ExecStart binary where the unit says: point it at build/.
            unit_dir = tempfile.mkdtemp(prefix="arrears-unit-")
            self.addCleanup(shutil.rmtree, unit_dir)
            path = os.path.join(unit_dir, "arrearsd.service")
            with open(path, "w") as f:
                f.write(unit.replace("/usr/bin/arrearsd", os.path.abspath(ARREARSD)))
            v = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True, timeout=60)
            self.assertEqual(v.returncode, 0, v.stderr)
            self.assertEqual(v.stderr.decode().strip(), "", v.stderr)
        else:
            sys.stderr.write("\n(systemd-analyze not installed: the unit is checked textually only)\n")
        p = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "uninstall", "DESTDIR=" + dest, "PREFIX=/usr"],
                           capture_output=True, env=env, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        files = sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs)
        self.assertEqual(files, ["etc/default/arrearsd"])  # the admin's settings stay


def main():
    global ARREARS, ARREARSD, POLICY
    ap = argparse.ArgumentParser()
    ap.add_argument("--arrears", default="build/arrears")
    ap.add_argument("--arrearsd", default="build/arrearsd")
    args, rest = ap.parse_known_args()
    ARREARS, ARREARSD = os.path.abspath(args.arrears), os.path.abspath(args.arrearsd)
    tmp = tempfile.mkdtemp(prefix="arrears-cli-policy-")
    try:
        rc, out, err = run([ARREARS, "gen", "--persons", "1", "--seed", "1", "--city", "110000", "--out", tmp])
        assert rc == 0, err
        POLICY = os.path.join(tmp, "policy-110000.json")
        prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    finally:
        shutil.rmtree(tmp)
    sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
