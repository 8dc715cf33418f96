#!/usr/bin/python3
"""City-scale numbers for BENCH.md: generate a city as CSV, import it, measure
the store, then compute arrears for every person page by page with `scan`
through `arrears eval --data`.

    /usr/bin/python3 bench/city.py --persons 100000 --dir /tmp/arrears-city
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import msgpack


def run(cmd):
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if out.returncode not in (0, 3):
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return elapsed, out.stderr


def scan_all(arrears, store, method, limit, extra):
    """Walks the city page by page; results are skipped, not built, so the
    client costs little next to the server."""
    proc = subprocess.Popen([arrears, "eval", "--data", store], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    # The raw pipe: a buffered read would wait for a whole read_size.
    unpacker = msgpack.Unpacker(proc.stdout.raw, raw=False)
    after, persons, msgid, errors = None, 0, 0, 0
    started = time.monotonic()
    while True:
        msgid += 1
        params = dict(extra, as_of=20251110, scan={"after": after, "limit": limit})
        proc.stdin.write(msgpack.packb([0, msgid, method, [params]]))
        proc.stdin.flush()
        assert unpacker.read_array_header() == 4
        unpacker.skip()  # type
        assert unpacker.unpack() == msgid
        err = unpacker.unpack()
        if err is not None:
            sys.exit(f"scan failed: {err}")
        after = None
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key == "results":
                n = unpacker.read_array_header()
                persons += n
                for _ in range(n):
                    unpacker.skip()
            else:
                after = unpacker.unpack()
        if after is None:
            break
    elapsed = time.monotonic() - started
    proc.stdin.close()
    proc.wait()
    return persons, elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arrears", default="build/arrears")
    ap.add_argument("--persons", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default="/tmp/arrears-city")
    ap.add_argument("--limit", type=int, default=10000)
    ap.add_argument("--keep", action="store_true", help="keep the CSV and the store")
    ap.add_argument("--reuse", type=int, metavar="SLOTS", help="skip gen and import: the store holds SLOTS slots")
    args = ap.parse_args()
    csv_dir, store = os.path.join(args.dir, "csv"), os.path.join(args.dir, "store")
    if args.reuse:
        scan_report(args, store, args.reuse)
        return
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)

    t, _ = run([args.arrears, "gen", "--persons", str(args.persons), "--seed", str(args.seed),
                "--city", "110000", "--out", csv_dir])
    csv = os.path.join(csv_dir, "slots.csv")
    csv_bytes = os.path.getsize(csv)
    print(f"gen --out: {args.persons} persons, {csv_bytes / 1e9:.2f} GB of CSV in {t:.1f} s")

    t, log = run([args.arrears, "import", "--data", store, csv,
                  os.path.join(csv_dir, "policy-110000.json"), os.path.join(csv_dir, "policy-310000.json")])
    summary = [line for line in log.splitlines() if "import: done" in line or "import: stopped" in line]
    print(f"import: {t:.1f} s wall; {summary[-1] if summary else log[-500:]}")
    slots = int(summary[-1].split(" persons, ")[1].split(" slots")[0]) if summary else 0
    if not args.keep:
        shutil.rmtree(csv_dir)
    scan_report(args, store, slots)
    if not args.keep:
        shutil.rmtree(args.dir)


def scan_report(args, store, slots):
    for method, extra in (("arrears.compute", {}), ("years.compute", {}), ("medical.status", {})):
        persons, t = scan_all(args.arrears, store, method, args.limit, extra)
        print(f"{method} over the city by scan pages of {args.limit}: {persons} persons in {t:.2f} s: "
              f"{persons / t:,.0f} persons/s, {slots / t / 1e6:.1f} M slots/s")
    data_bytes = os.path.getsize(os.path.join(store, "data.mdb"))
    print(f"store file: {data_bytes / 1e6:.1f} MB for {slots} slots: {data_bytes / max(slots, 1):.2f} bytes/slot")


if __name__ == "__main__":
    main()
