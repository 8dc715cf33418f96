#!/usr/bin/python3
"""make run: sends the spec's worked examples (Appendix B) through
`arrears eval` and prints each request and answer as readable text."""
import json
import subprocess
import sys

import msgpack

POLICY = {
    "city": "110000", "name": "Beijing",
    "deadline": {"day": 25, "month_offset": 0},
    "periods": [{"from": 202001, "base_min": 500000, "base_max": 3000000,
                 "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000},
                           "medical": {"employer": 98000, "individual": 20000, "flexible": 80000}}}],
    "interest": {"rates": [[2022, 61200], [2023, 39700], [2024, 26200]]},
}

# Man born 1970-06 (check character worked out by GB 11643).
MAN = "110105197006150013"


def slot(month, type_, category, base, paid=0, paid_date=0):
    return {"month": month, "city": "110000", "type": type_, "category": category,
            "base": base, "paid": paid, "paid_date": paid_date}


REQUESTS = [
    ("ping", {}),
    ("policy.put", {"policy": POLICY}),
    ("arrears.compute", {"as_of": 20240310, "detail": True, "persons": [
        {"id": MAN, "slots": [slot(202205, "pension", "flexible", 600000)]}]}),
    ("arrears.compute", {"as_of": 20230615, "persons": [
        {"id": MAN, "slots": [slot(202303, "pension", "employee", 800000, 50000, 20230410)]}]}),
    ("retirement.check", {"as_of": 20250115, "persons": [
        {"id": MAN, "slots": [slot(202001 + (i // 12) * 100 + i % 12, "pension", "flexible", 600000,
                                   120000, (202001 + (i // 12) * 100 + i % 12) * 100 + 20)
                              for i in range(60)]}]}),
    ("medical.status", {"as_of": 20240610, "persons": [
        {"id": MAN, "slots": [slot(m, "medical", "flexible", 600000, *(
            (0, 0) if m in (202404, 202406) else (48000, m * 100 + 20))) for m in range(202402, 202407)]}]}),
]


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/arrears"
    stream = b"".join(msgpack.packb([0, i, method, [params]]) for i, (method, params) in enumerate(REQUESTS))
    out = subprocess.run([binary, "eval"], input=stream, capture_output=True, check=True)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(out.stdout)
    for (method, params), (_, msgid, error, result) in zip(REQUESTS, unpacker):
        shown = {k: (f"[{len(v)} persons]" if k == "persons" else v) for k, v in params.items()}
        if method == "policy.put":
            shown = {"policy": POLICY["name"]}
        print(f"=> {method} {json.dumps(shown)}")
        print(json.dumps(error if error else result, indent=2, ensure_ascii=False))
        print()


if __name__ == "__main__":
    main()
