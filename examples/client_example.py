#!/usr/bin/python3
"""A service's first steps with the arrears server, through the Python client
(clients/python/arrears_client.py; Debian's python3-msgpack only).

    make run                                            # a server on 127.0.0.1:7420
    python3 examples/client_example.py 127.0.0.1:7420   # ARREARS_TOKEN=... when the server has --token-file

It stores a policy for an example city (990100) and three persons, computes
their arrears (the spec's worked examples 1 and 2, Appendix B), records a
payment with an idempotency key, and walks the store page by page. Its
persons and city are its own: it changes nothing else in the store.
"""
import os
import sys

try:
    from arrears_client import Client, ArrearsError, InvalidArgument, ConnectionLost
except ImportError:  # run from a checkout: the module sits in clients/python/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))
    from arrears_client import Client, ArrearsError, InvalidArgument, ConnectionLost

CITY = "990100"
POLICY = {
    "city": CITY, "name": "Example City",
    "deadline": {"day": 25, "month_offset": 0},
    "periods": [{"from": 202001, "base_min": 500000, "base_max": 3000000,
                 "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000},
                           "medical": {"employer": 98000, "individual": 20000, "flexible": 80000}}}],
    "interest": {"types": ["pension"], "categories": ["flexible"],
                 "rates": [[2022, 61200], [2023, 39700], [2024, 26200]]},
    "late_fee": {"daily_ppm": 500, "categories": ["employee"]},
}

FLEXIBLE = "990100197006150015"   # a man born 1970-06-15 (resident ids carry a check character)
EMPLOYEE = "990100198503020021"
PAID_UP = "990100199211200033"
UNKNOWN = "990100196001010043"    # never stored


def slot(month, type_, category, base, paid=0, paid_date=0):
    return {"month": month, "city": CITY, "type": type_, "category": category,
            "base": base, "paid": paid, "paid_date": paid_date}


PERSONS = [
    # Appendix B example 1: flexible pension, 202205 unpaid
    {"id": FLEXIBLE, "slots": [slot(202205, "pension", "flexible", 600000)]},
    # Appendix B example 2: employee pension, 202303 paid in part late
    {"id": EMPLOYEE, "slots": [slot(202303, "pension", "employee", 800000, 50000, 20230410)]},
    # twelve months paid on time
    {"id": PAID_UP, "slots": [slot(202301 + k, "pension", "flexible", 600000, 120000, (202301 + k) * 100 + 20)
                              for k in range(12)]},
]


def main(argv):
    host, _, port = (argv[1] if len(argv) > 1 else "127.0.0.1:7420").rpartition(":")
    token = os.environ.get("ARREARS_TOKEN")  # None: the server runs without --token-file

    with Client(host, int(port), token=token, timeout=30, connect_timeout=5) as c:
        print("ping:", c.ping())

        # Writes. A policy.put stores a revision (the same document again stores nothing new).
        print("policy.put:", c.policy_put(POLICY))
        stored = c.person_put(PERSONS, idem="client-example-persons-v1")
        print("person.put:", [r.get("ok") for r in stored])

        # One computation, Appendix B example 1: interest 10064, total 130064, tier verify.
        r = c.arrears(20240310, ids=[FLEXIBLE], detail=True)[0]
        print("arrears %s as of 20240310: months_owed %d principal %d interest %d late_fee %d total %d tier %s"
              % (r["id"], r["months_owed"], r["principal"], r["interest"], r["late_fee"], r["total"],
                 r["items"][0]["tier"]))

        # Example 2: employer's late fee 5822 on 142000 owed.
        r = c.arrears(20230615, ids=[EMPLOYEE])[0]
        print("arrears %s as of 20230615: principal %d late_fee %d total %d"
              % (r["id"], r["principal"], r["late_fee"], r["total"]))

        # A bulk request: a person's error is an entry of the results, not an exception.
        results = c.years(20251110, ids=[PAID_UP, UNKNOWN])
        print("years %s: pension months %d" % (PAID_UP, results[0]["by_type"]["pension"]["months"]))
        for index, person_id, error in results.errors():
            print("results[%d]: %s" % (index, error))

        # A request-level error raises, typed by its code, with `at`.
        try:
            c.arrears(20240230, ids=[FLEXIBLE])
        except InvalidArgument as e:
            print("rejected: code %d %s at %s" % (e.code, e.name, e.at))

        # A payment, idempotent: sending it again (a retry after ConnectionLost,
        # say) answers the first result and pays nothing twice.
        payment = [{"id": FLEXIBLE, "month": 202205, "city": CITY, "type": "pension",
                    "amount": 120000, "date": 20240315}]
        for attempt in (1, 2):
            print("payment.apply attempt %d:" % attempt, list(c.payment_apply(payment, idem="client-example-pay-1")))
        person = c.person_get(FLEXIBLE)
        print("202205 paid:", person["slots"][0]["paid"])
        r = c.arrears(20240320, ids=[FLEXIBLE])[0]
        print("arrears %s as of 20240320: months_owed %d total %d" % (r["id"], r["months_owed"], r["total"]))

        # Pipelining: send many requests at once, answers matched by msgid.
        answers = c.call_many([("person.get", {"id": i}) for i in (FLEXIBLE, EMPLOYEE, PAID_UP)])
        print("pipelined person.get:", [a["person"]["id"] for a in answers])

        # Walking persons page by page (scan with `next`): here only this example's
        # city prefix, two persons a page; without `prefix` the walk covers the store.
        for page in c.scan("arrears.compute", as_of=20251110, page=2, prefix=CITY):
            print("page:", [(p["id"], p.get("total")) for p in page])
        walked = owing = owed = 0
        for page in c.scan("arrears.compute", as_of=20251110, page=1000):
            walked += len(page)
            for p in page:
                if "error" not in p and p["total"] > 0:
                    owing += 1
                    owed += p["total"]
        print("whole store: %d persons, %d owing, %d fen in all" % (walked, owing, owed))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except ConnectionLost as e:
        print("connection lost:", e, file=sys.stderr)
        sys.exit(1)
    except ArrearsError as e:
        print("server error:", e, file=sys.stderr)
        sys.exit(1)
