#!/usr/bin/python3
"""Ping latency on one connection while another runs bulk requests over a
whole city (BENCH.md "No stalls"):

    /usr/bin/python3 bench/stall.py --arrearsd build/arrearsd --data /tmp/arrears-city/store
"""
import argparse
import multiprocessing
import re
import socket
import subprocess
import threading
import time

import msgpack


def rpc(sock, unpacker, msgid, method, params):
    sock.sendall(msgpack.packb([0, msgid, method, [params]]))
    while True:
        for msg in unpacker:
            return msg
        data = sock.recv(1 << 20)
        if not data:
            raise EOFError
        unpacker.feed(data)


def bulk_client(port, pages, results):
    sock = socket.create_connection(("127.0.0.1", port))
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1 << 30)
    for i in range(pages):
        started = time.monotonic()
        reply = rpc(sock, unpacker, i + 1, "arrears.compute",
                    {"as_of": 20251110, "scan": {"after": None, "limit": 100000}})
        assert reply[2] is None, reply[2]
        results.put((time.monotonic() - started, len(reply[3]["results"])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arrearsd", default="build/arrearsd")
    ap.add_argument("--data", required=True)
    ap.add_argument("--pages", type=int, default=3, help="bulk requests of 100,000 persons")
    args = ap.parse_args()
    server = subprocess.Popen([args.arrearsd, "--listen", "127.0.0.1:0", "--data", args.data],
                              stderr=subprocess.PIPE, text=True)
    port = None
    while port is None:
        line = server.stderr.readline()
        m = re.search(r"event=listen .*port=(\d+)", line)
        port = int(m.group(1)) if m else None
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()

    # The bulk client is another process: its decoding must not hold up the pings.
    results = multiprocessing.Queue()
    bulk = multiprocessing.Process(target=bulk_client, args=(port, args.pages, results))
    bulk.start()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    unpacker = msgpack.Unpacker(raw=False)
    latencies = []
    msgid = 0
    while bulk.is_alive():
        msgid += 1
        started = time.monotonic()
        rpc(sock, unpacker, msgid, "ping", {})
        latencies.append((time.monotonic() - started) * 1000)
        time.sleep(0.001)
    bulk.join()
    bulk_seconds = [results.get() for _ in range(args.pages)]
    server.terminate()
    server.wait()
    latencies.sort()
    q = lambda f: latencies[min(len(latencies) - 1, int(f * len(latencies)))]
    for seconds, persons in bulk_seconds:
        print(f"bulk arrears.compute: {persons} persons in {seconds:.2f} s")
    print(f"pings during bulk: {len(latencies)}; p50 {q(0.5):.3f} ms, p99 {q(0.99):.3f} ms, max {latencies[-1]:.3f} ms")


if __name__ == "__main__":
    main()
