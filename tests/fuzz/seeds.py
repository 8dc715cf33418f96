#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

    /usr/bin/python3 tests/fuzz/seeds.py [--out tests/fuzz/corpus]

Seeds are small and meaningful: one valid request of every method of SPEC
§5.1 (and a few malformed ones), stored timelines in the run encoding of
core/timeline.c, policy documents, CSV rows of SPEC §6.1. The request
seeds name the policy (city 110000) and the person (PERSON_ID) that
fuzz_common.h puts in place before each input, so reads, computations and
payments find something. Files are named by content; rerunning rewrites
the same files. Crashing inputs found later are added by hand beside them
(named crash-<sha1>) and are never rewritten here.
"""

import argparse
import hashlib
import os
import struct

import msgpack

W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def make_id(first17):
    """18-char resident ID with its GB 11643 check char (SPEC §2.1)."""
    s = sum(int(c) * W[i] for i, c in enumerate(first17))
    return first17 + "10X98765432"[s % 11]


PERSON_ID = make_id("11010519491231002")  # the person fuzz_common.h stores: 11010519491231002X
OTHER_ID = make_id("11010119800307002")   # valid, never stored
CITY = "110000"

POLICY = {
    "city": CITY, "name": "Beijing",
    "deadline": {"day": 25, "month_offset": 0},
    "periods": [
        {"from": 201601, "base_min": 300000, "base_max": 2000000,
         "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000},
                   "medical": {"employer": 98000, "individual": 20000, "flexible": 80000}}},
        {"from": 202307, "base_min": 632600, "base_max": 3389100,
         "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000},
                   "medical": {"employer": 98000, "individual": 20000, "flexible": 80000},
                   "unemployment": {"employer": 5000, "individual": 5000, "flexible": 10000},
                   "injury": {"employer": 4000, "individual": 0, "flexible": 0},
                   "maternity": {"employer": 0, "individual": 0, "flexible": 0}}}],
    "interest": {"types": ["pension"], "categories": ["flexible"], "default_ppm": 25000,
                 "rates": [[2016, 83100], [2017, 71200], [2022, 61200], [2023, 39700], [2024, 26200]]},
    "late_fee": {"daily_ppm": 500, "categories": ["employee"], "cap_at_principal": False},
    "backpay": {"direct_max_months": 3, "verify_max_months": 60, "legacy_before": 201107,
                "flexible_window_months": 0},
    "housing": {"types": ["pension"], "window_months": 12, "required_months": 12,
                "end_offset_months": 1, "backpay_counts": False, "grace_days": 0},
    "withhold": {"order": ["pension", "medical", "unemployment"], "mode": "stop"},
}
POLICY_MINIMAL = {"city": "310000", "deadline": {"day": 31},
                  "periods": [{"from": 195001, "base_min": 0, "base_max": 10000000000}]}


def slot(month, type_, category="flexible", base=650000, paid=0, paid_date=0, deemed=False, city=CITY):
    return {"month": month, "city": city, "type": type_, "category": category, "base": base,
            "paid": paid, "paid_date": paid_date, "deemed": deemed}


SLOTS = [slot(202205, "pension", base=600000),
         slot(202303, "pension", "employee", 800000, 50000, 20230410),
         slot(202304, "pension", "employee", 800000, 192000, 20230420),
         slot(202402, "medical", paid=52000, paid_date=20240220),
         slot(202404, "medical"),
         slot(199001, "pension", base=0, deemed=True)]
PERSON = {"id": PERSON_ID, "retire_class": "m60", "slots": SLOTS}
INLINE = {"id": OTHER_ID, "slots": SLOTS[:4]}


def req(msgid, method, params):
    return msgpack.packb([0, msgid, method, [params]], use_bin_type=True)


def notify(method, params):
    return msgpack.packb([2, method, [params]], use_bin_type=True)


def requests():
    """name -> bytes: every method of SPEC §5.1, selectors, and a few edge frames."""
    r = {}
    r["ping"] = req(1, "ping", {})
    r["auth"] = req(2, "auth", {"token": "secret"})
    r["server_stats"] = req(3, "server.stats", {})
    r["policy_put"] = req(4, "policy.put", {"policy": POLICY})
    r["policy_put_minimal"] = req(5, "policy.put", {"policy": POLICY_MINIMAL})
    r["policy_get"] = req(6, "policy.get", {"city": CITY})
    r["policy_get_revision"] = req(7, "policy.get", {"city": CITY, "revision": 1})
    r["policy_history"] = req(8, "policy.history", {"city": CITY})
    r["audit_read"] = req(9, "audit.read", {"after": None, "limit": 10})
    r["person_put"] = req(10, "person.put", {"persons": [PERSON], "idem": "put-1"})
    r["person_get"] = req(11, "person.get", {"id": PERSON_ID})
    r["person_delete"] = req(12, "person.delete", {"id": PERSON_ID, "idem": "del-1"})
    r["payment_apply"] = req(13, "payment.apply", {"idem": "pay-1", "items": [
        {"id": PERSON_ID, "month": 202404, "city": CITY, "type": "medical", "amount": 52000, "date": 20240612},
        {"id": OTHER_ID, "month": 202404, "city": CITY, "type": "medical", "amount": 1, "date": 20240612}]})
    r["withhold_run"] = req(14, "withhold.run", {"idem": "wh-1", "month": 202404, "date": 20240430,
                                                 "accounts": [{"id": PERSON_ID, "balance": 100000}]})
    for i, m in enumerate(["arrears.compute", "years.compute", "retirement.check", "medical.status"]):
        base = {"as_of": 20240310}
        r[m.replace(".", "_") + "_ids"] = req(20 + i, m, dict(base, ids=[PERSON_ID, OTHER_ID]))
        r[m.replace(".", "_") + "_persons"] = req(30 + i, m, dict(base, persons=[INLINE, PERSON]))
        r[m.replace(".", "_") + "_scan"] = req(40 + i, m, dict(base, scan={"after": None, "limit": 3}))
    r["arrears_detail"] = req(50, "arrears.compute", {"as_of": 20240615, "detail": True, "persons": [PERSON]})
    r["arrears_scan_prefix"] = req(51, "arrears.compute", {"as_of": 20240615, "scan": {"after": "1101", "limit": 1}})
    r["retirement_elect"] = req(52, "retirement.check", {"as_of": 20250115, "elect_month": 200912,
                                                         "persons": [PERSON]})
    r["housing_ids"] = req(53, "housing.check", {"as_of": 20250110, "city": CITY, "ids": [PERSON_ID]})
    r["housing_persons"] = req(54, "housing.check", {"as_of": 20250110, "city": CITY, "persons": [PERSON]})
    r["notification"] = notify("person.put", {"persons": [INLINE]})
    r["unknown_method"] = req(55, "no.such", {})
    r["not_rpc"] = msgpack.packb({"a": 1})
    r["invalid_byte"] = b"\x94\x00\x01\xc1"
    r["huge_count"] = b"\xdd\xff\xff\xff\xff"
    return r


def pipelines(r):
    """Several frames back to back, as a client pipelines them."""
    return {
        "pipe_put_compute": r["person_put"] + r["arrears_compute_ids"] + r["payment_apply"] + r["arrears_detail"],
        "pipe_policy_then_compute": r["policy_put"] + r["policy_get"] + r["housing_persons"] + r["ping"],
        "pipe_writes": r["withhold_run"] + r["withhold_run"] + r["person_delete"] + r["person_get"],
        "pipe_then_malformed": r["ping"] + r["not_rpc"] + r["ping"],
    }


# ---- stored timelines: the run encoding of core/timeline.c ----

TYPES = ("pension", "medical", "unemployment", "injury", "maternity")
MONTH_FIRST = 1950 * 12


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7f | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def zigzag(v):
    return (v << 1) ^ (v >> 31) if v >= 0 else ((-v) << 1) - 1


def dense(yyyymm):
    return yyyymm // 100 * 12 + yyyymm % 100 - 1


def zigzag_wide(v):
    """The 64-bit form encoders before the fix wrote for negative values (10 bytes): still read."""
    return zigzag(v) if v >= 0 else ((v & 0xffffffff) << 1) ^ 0xffffffffffffffff


def timeline(runs, class_byte=0xff, zz=zigzag):
    """runs: (type, flexible, deemed, city, first YYYYMM, months, base, paid, pay_offset, pay_day).
    Every field is written (flags 0xe0): the decoder also takes repeated ones."""
    body = bytearray()
    prev_end = MONTH_FIRST
    for (type_, flexible, deemed, city, month, count, base, paid, offset, day) in runs:
        body.append(TYPES.index(type_) | flexible << 3 | deemed << 4 | 0xe0)
        body += varint(city)
        body += varint(zz(dense(month) - prev_end))
        body += varint(count)
        body += varint(base)
        body += varint(paid)
        if paid > 0:
            body += varint(zz(offset))
            body.append(day)
        prev_end = dense(month) + count
    slots = sum(r[5] for r in runs)
    return bytes([1, class_byte]) + varint(slots) + varint(len(runs)) + bytes(body)


def with_summary(value, exceptions, cities, horizon, years, ranges, medical=0):
    """A person value of format 2: a summary of core/summary.c whose
    exceptions are the runs of the value `exceptions`, then the runs of value."""
    import datetime
    runs, exc = value[2:], exceptions[2:]
    days = (datetime.date(horizon // 10000, horizon // 100 % 100, horizon % 100) - datetime.date(1970, 1, 1)).days
    exc_slots = exc[0]  # one varint byte in these seeds
    summary = struct.pack("<BBHi", 1, medical, len(cities), days) + struct.pack("<20I", *years)
    summary += struct.pack("<IIII", 0, len(ranges), exc_slots, len(exc))
    summary += b"".join(struct.pack("<II", city, rev) for city, rev in cities)
    summary += b"".join(struct.pack("<ii", dense(a), dense(b)) for a, b in ranges)
    summary += exc
    return bytes([2, value[1]]) + struct.pack("<II", len(summary), runs[0]) + summary + runs


def timelines():
    c = int(CITY)
    mixed = [("pension", 1, 1, c, 199001, 12, 0, 0, 0, 0), ("pension", 0, 0, c, 202303, 2, 800000, 50000, 1, 10),
             ("medical", 1, 0, c, 202402, 3, 650000, 52000, 0, 31), ("medical", 1, 0, 310000, 202402, 1, 650000, 0, 0, 0)]
    return {
        "summarized": with_summary(timeline(mixed, class_byte=2), timeline(mixed[3:]), [(c, 1), (310000, 1)], 20240401,
                                   [14, 0, 2, 12] + [3, 0, 3, 0] + [0] * 12, [(199001, 199012), (202303, 202304)], 1),
        "empty": timeline([]),
        "one_unpaid": timeline([("pension", 1, 0, c, 202205, 1, 600000, 0, 0, 0)]),
        "payroll_run": timeline([("pension", 0, 0, c, 201601, 96, 800000, 192000, 0, 20)], class_byte=0),
        "mixed": timeline([("pension", 1, 1, c, 199001, 12, 0, 0, 0, 0),
                           ("pension", 0, 0, c, 202303, 2, 800000, 50000, 1, 10),
                           ("medical", 1, 0, c, 202402, 3, 650000, 52000, 0, 31),
                           ("medical", 1, 0, 310000, 202402, 1, 650000, 0, 0, 0)], class_byte=2),
        "month_end_days": timeline([("injury", 0, 0, c, 202301, 14, 500000, 2000, 1, 31)]),
        "wide_negative": timeline([("pension", 1, 0, 100000, 209912, 1, 10**10, 10**10, -2399, 1),
                                   ("pension", 1, 0, 100001, 209911, 1, 10**10 - 1, 10**10 - 1, -2398, 2),
                                   ("medical", 0, 0, 100000, 195001, 2, 5, 3, -1, 31)], zz=zigzag_wide),
        "truncated": timeline([("pension", 1, 0, c, 202205, 1, 600000, 130000, 0, 20)])[:-1],
        "bad_format": b"\x02\xff\x01\x01",
    }


def policies():
    return {"full": msgpack.packb(POLICY), "minimal": msgpack.packb(POLICY_MINIMAL),
            "not_a_map": msgpack.packb([1, 2, 3]),
            "bad_periods": msgpack.packb(dict(POLICY_MINIMAL, periods=[{"from": 202301, "base_min": 2, "base_max": 1}]))}


def csv_rows():
    return {
        "flexible_paid": f"{PERSON_ID},202301,110000,pension,flexible,650000,130000,20230120,0",
        "employee_unpaid": f"{PERSON_ID},202402,110000,medical,employee,800000,0,0,false",
        "deemed": f"{PERSON_ID},199001,110000,pension,flexible,0,0,0,true",
        "bad_date": f"{PERSON_ID},202302,110000,pension,flexible,1,1,20230229,0",
        "bad_columns": f"{PERSON_ID},202302,110000",
        "bad_id": "11010519491231002x,202301,110000,pension,flexible,650000,130000,20230120,1",
        "quoted": f'"{PERSON_ID}","202301","110000","pension","flexible","650000","130000","20230120","0"',
        "quoted_escape": f'{PERSON_ID},202301,110000,"pen""sion",flexible,650000,0,0,0',
        "quoted_newline": f'{PERSON_ID},202301,110000,pension,flexible,650000,0,0,"0\r\n1"',
        "bad_quoting": f'{PERSON_ID},202301,110000,pen"sion,flexible,650000,0,0,0',
        "crlf": f"{PERSON_ID},202301,110000,pension,flexible,650000,0,0,0\r",
    }


def frames(r):
    """Header (max-size selector, then 4 bytes of split seed) + a byte stream."""
    out = {}
    for i, (name, stream) in enumerate([("pipeline", pipelines(r)["pipe_put_compute"]),
                                        ("ping_pair", r["ping"] + r["ping"]),
                                        ("policy", r["policy_put"]),
                                        ("truncated", r["arrears_detail"][:-3]),
                                        ("invalid", r["invalid_byte"]),
                                        ("huge", r["huge_count"] + r["ping"])]):
        out[name] = bytes([i % 4]) + struct.pack("<I", 0x9e3779b9 * (i + 1) & 0xffffffff) + stream
    return out


def write(dirpath, name, data):
    os.makedirs(dirpath, exist_ok=True)
    with open(os.path.join(dirpath, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(here, "corpus"))
    out = ap.parse_args().out
    r = requests()
    everything = dict(r, **pipelines(r))
    for target in ("request", "request_store"):
        for name, data in everything.items():
            write(os.path.join(out, target), name, data)
    for name, data in frames(r).items():
        write(os.path.join(out, "frame"), name, data)
    for name, data in timelines().items():
        write(os.path.join(out, "timeline"), name, data)
    for name, data in policies().items():
        write(os.path.join(out, "policy"), name, data)
    for name, data in csv_rows().items():
        write(os.path.join(out, "csv_row"), name, data)


if __name__ == "__main__":
    main()
