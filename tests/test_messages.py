#!/usr/bin/python3
"""invalid_argument messages that explain (issue 9, item 7).

    /usr/bin/python3 tests/test_messages.py --arrears build/arrears [TestName ...]

Every rejection names what was expected and what was found:
"<field> must be <expected>, got <found>". A table of bad requests goes
through one `arrears eval --data DIR` process, and each answer's code, `at`
(SPEC Appendix A) and exact message are compared with the table. Ranges come
from SPEC §2 and §2.1; the found part is the value's integer, "nothing"
(absent or nil in a map), "nil", "a float", "a string" (quoted only for
names: types, categories, cities, modes), "an array of N", "a map of N".

A resident id gets one message wherever it appears (`ids[i]`,
`persons[i].id` of a compute method and of person.put, the `id` of
person.get and person.delete, `items[i].id`, `accounts[i].id`): the same
bad id gives the same message at each of these paths, and the message never
contains the id (ids are personal data).

Prints `N passed, M failed` and exits 1 on any failure.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

try:
    import msgpack
except ImportError:
    msgpack = None

HERE = os.path.dirname(os.path.abspath(__file__))
ARREARS = os.path.join(HERE, "..", "build", "arrears")
TIMEOUT_S = 60

INVALID = 3
TOO_LARGE = 6


def make_id(first17):
    """18-char resident ID: GB 11643 check char, SPEC §2.1."""
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    s = sum(int(c) * w[i] for i, c in enumerate(first17))
    return first17 + "10X98765432"[s % 11]


ID = make_id("11010519491231002")            # 11010519491231002X, SPEC §3.1
ID_ABSENT = make_id("11010519800101001")    # valid, never stored
CITY = "110000"

ID_EXPECTED = "id must be an 18-character resident ID with a valid birth date and check digit, got "
# (bad id, what the message says was found)
BAD_IDS = [
    (ID[:17] + ("1" if ID[17] != "1" else "2"), "18 characters with a wrong check digit"),
    (ID[:17], "17 characters"),
    (ID + "0", "19 characters"),
    ("", "an empty string"),
    ("1101a519491231002X", "a character other than a digit at position 5"),
    (ID[:17] + "x", "a check character other than 0-9 or X"),
    (make_id("11010519491331002"), "18 characters with an invalid birth date"),   # month 13
    (make_id("11010518991231002"), "18 characters with an invalid birth date"),   # 1899: before 19000101
    ("１１０１０５１９４９１２３１００２X", "18 characters"),                         # full-width digits
    (5, "5"),
    (None, None),      # nil in a map is absent: "nothing"; nil in ids: "nil"
    ([ID], "an array of 1"),
]

DATE = "a date YYYYMMDD 19000101..21001231"
MONTH = "a month YYYYMM 195001..209912"
MONEY = "an integer 0..10000000000 fen"
TYPES = "one of pension, medical, unemployment, injury, maternity"


def slot(month=202301, city=CITY, type_="pension", category="flexible", base=650000, paid=0, paid_date=0,
         **extra):
    s = {"month": month, "city": city, "type": type_, "category": category, "base": base, "paid": paid,
         "paid_date": paid_date}
    s.update(extra)
    return {k: v for k, v in s.items() if v is not ABSENT}


ABSENT = object()


def policy(**changes):
    p = {"city": CITY, "name": "Beijing", "deadline": {"day": 25, "month_offset": 0},
         "periods": [{"from": 201501, "base_min": 100000, "base_max": 3000000,
                      "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000}}}],
         "interest": {"types": ["pension"], "categories": ["flexible"], "default_ppm": 25000,
                      "rates": [[2022, 61200], [2023, 39700]]},
         "housing": {"types": ["pension"], "window_months": 60, "required_months": 60}}
    for path, value in changes.items():
        keys = path.split("__")
        node = p
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = int(keys[-1]) if isinstance(node, list) else keys[-1]
        if value is ABSENT:
            del node[last]
        else:
            node[last] = value
    return p


def req(msgid, method, params):
    return [0, msgid, method, [params]]


def run_batch(msgs, data):
    args = [ARREARS, "eval", "--data", data]
    body = b"".join(msgpack.packb(m, use_bin_type=True) for m in msgs)
    proc = subprocess.run(args, input=body, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise AssertionError("eval exited %d: %s" % (proc.returncode, proc.stderr.decode(errors="replace")))
    unp = msgpack.Unpacker(raw=False, strict_map_key=False)
    unp.feed(proc.stdout)
    return list(unp)


def setup_msgs():
    return [req(1, "policy.put", {"policy": policy()}),
            req(2, "person.put", {"persons": [{"id": ID, "slots": [slot()]}]})]


def error_of(answer, where):
    """The error map a case expects: request-level (where None), a per-person
    entry results[k] or a payment item's results[k]."""
    if where is None:
        return answer[2]
    if answer[2] is not None:
        return answer[2]
    return answer[3]["results"][where].get("error")


# Request-level and per-person cases: (name, method, params, where, code, at, message).
# where: None for a request-level error, k for results[k].
def compute(**params):
    p = {"as_of": 20240310, "ids": [ID]}
    for k, v in params.items():
        if v is ABSENT:
            p.pop(k, None)
        else:
            p[k] = v
    return p


def inline(*slots, **person):
    p = {"id": ID, "slots": list(slots)}
    p.update(person)
    return compute(ids=ABSENT, persons=[p])


CASES = [
    # request level (SPEC Appendix A)
    ("as_of month 13", "arrears.compute", compute(as_of=20241310), None, INVALID, "as_of",
     "as_of must be " + DATE + ", got 20241310"),
    ("as_of Feb 30", "years.compute", compute(as_of=20240230), None, INVALID, "as_of",
     "as_of must be " + DATE + ", got 20240230"),
    ("as_of string", "arrears.compute", compute(as_of="20240310"), None, INVALID, "as_of",
     "as_of must be " + DATE + ", got a string"),
    ("as_of float", "arrears.compute", compute(as_of=20240310.0), None, INVALID, "as_of",
     "as_of must be " + DATE + ", got a float"),
    ("as_of absent", "arrears.compute", compute(as_of=ABSENT), None, INVALID, "as_of",
     "as_of must be " + DATE + ", got nothing"),
    ("as_of negative", "arrears.compute", compute(as_of=-5), None, INVALID, "as_of",
     "as_of must be " + DATE + ", got -5"),
    ("no selector", "arrears.compute", compute(ids=ABSENT), None, INVALID, "persons",
     "params must be a map with exactly one of ids, persons, scan, got none of them"),
    ("two selectors", "arrears.compute", compute(scan={"limit": 1}), None, INVALID, "persons",
     "params must be a map with exactly one of ids, persons, scan, got ids and scan"),
    ("ids a map", "arrears.compute", compute(ids={"a": 1}), None, INVALID, "ids",
     "ids must be an array, got a map of 1"),
    ("persons a string", "arrears.compute", compute(ids=ABSENT, persons="x"), None, INVALID, "persons",
     "persons must be an array, got a string"),
    ("scan not a map", "arrears.compute", compute(ids=ABSENT, scan=[1, 2]), None, INVALID, "scan",
     "scan must be a map {after, limit}, got an array of 2"),
    ("scan.limit 0", "arrears.compute", compute(ids=ABSENT, scan={"limit": 0}), None, INVALID, "scan.limit",
     "scan.limit must be an integer 1..100000, got 0"),
    ("scan.limit absent", "arrears.compute", compute(ids=ABSENT, scan={}), None, INVALID, "scan.limit",
     "scan.limit must be an integer 1..100000, got nothing"),
    ("scan.limit 100001", "arrears.compute", compute(ids=ABSENT, scan={"limit": 100001}), None, INVALID,
     "scan.limit", "scan.limit must be an integer 1..100000, got 100001"),
    ("scan.after letter", "arrears.compute", compute(ids=ABSENT, scan={"after": "1101a5", "limit": 1}), None,
     INVALID, "scan.after",
     "scan.after must be nil or an id prefix: 1..18 digits, the 18th may be X, "
     "got a character other than a digit at position 5"),
    ("scan.after 19 chars", "arrears.compute", compute(ids=ABSENT, scan={"after": ID + "1", "limit": 1}), None,
     INVALID, "scan.after",
     "scan.after must be nil or an id prefix: 1..18 digits, the 18th may be X, got 19 characters"),
    ("scan.after empty", "arrears.compute", compute(ids=ABSENT, scan={"after": "", "limit": 1}), None,
     INVALID, "scan.after",
     "scan.after must be nil or an id prefix: 1..18 digits, the 18th may be X, got an empty string"),
    ("scan.after lower x", "arrears.compute", compute(ids=ABSENT, scan={"after": ID[:17] + "x", "limit": 1}),
     None, INVALID, "scan.after",
     "scan.after must be nil or an id prefix: 1..18 digits, the 18th may be X, "
     "got a check character other than 0-9 or X"),
    ("scan.after integer", "arrears.compute", compute(ids=ABSENT, scan={"after": 110105, "limit": 1}), None,
     INVALID, "scan.after",
     "scan.after must be nil or an id prefix: 1..18 digits, the 18th may be X, got 110105"),
    ("detail 1", "arrears.compute", compute(detail=1), None, INVALID, "detail",
     "detail must be a boolean, got 1"),
    ("elect_month 202513", "retirement.check", compute(elect_month=202513), None, INVALID, "elect_month",
     "elect_month must be " + MONTH + ", got 202513"),
    ("elect_month out of range", "retirement.check",
     compute(ids=ABSENT, persons=[{"id": make_id("11010519800301002"), "retire_class": "f50",
                                   "slots": [slot()]}], elect_month=203002),
     0, INVALID, "elect_month", "elect_month must be 203003..203511 for this person, got 203002"),
    ("housing city 5 digits", "housing.check", compute(city="11000"), None, INVALID, "city",
     'city must be a city code of 6 digits, got "11000"'),
    ("housing city absent", "housing.check", compute(), None, INVALID, "city",
     "city must be a city code of 6 digits, got nothing"),
    ("policy.get city integer", "policy.get", {"city": 110000}, None, INVALID, "city",
     "city must be a city code of 6 digits, got 110000"),
    # inline persons (SPEC §2.1, §3.1, Appendix A)
    ("person not a map", "arrears.compute", compute(ids=ABSENT, persons=[[1]]), 0, INVALID, "persons[0]",
     "person must be a map {id, retire_class, slots}, got an array of 1"),
    ("retire_class", "retirement.check", inline(slot(), retire_class="m65"), 0, INVALID,
     "persons[0].retire_class", 'retire_class must be one of m60, f55, f50, got "m65"'),
    ("slots absent", "arrears.compute", compute(ids=ABSENT, persons=[{"id": ID}]), 0, INVALID,
     "persons[0].slots", "slots must be an array, got nothing"),
    ("slot not a map", "arrears.compute", inline(7), 0, INVALID, "persons[0].slots[0]",
     "slot must be a map, got 7"),
    ("month 202513", "arrears.compute", inline(slot(month=202513)), 0, INVALID, "persons[0].slots[0].month",
     "month must be " + MONTH + ", got 202513"),
    ("month 194912", "arrears.compute", inline(slot(month=194912)), 0, INVALID, "persons[0].slots[0].month",
     "month must be " + MONTH + ", got 194912"),
    ("month absent", "arrears.compute", inline(slot(month=ABSENT)), 0, INVALID, "persons[0].slots[0].month",
     "month must be " + MONTH + ", got nothing"),
    ("city 7 digits", "arrears.compute", inline(slot(city="1100000")), 0, INVALID, "persons[0].slots[0].city",
     'city must be a city code of 6 digits, got "1100000"'),
    ("type unknown", "arrears.compute", inline(slot(type_="pensions")), 0, INVALID, "persons[0].slots[0].type",
     'type must be ' + TYPES + ', got "pensions"'),
    ("type long, cut", "arrears.compute", inline(slot(type_="p" * 40)), 0, INVALID,
     "persons[0].slots[0].type", 'type must be ' + TYPES + ', got "' + "p" * 32 + '..."'),
    ("type long, cut on a character", "arrears.compute", inline(slot(type_="p" * 31 + "é" * 3)), 0, INVALID,
     "persons[0].slots[0].type", 'type must be ' + TYPES + ', got "' + "p" * 31 + '..."'),
    ("type with a quote", "arrears.compute", inline(slot(type_='a"b')), 0, INVALID,
     "persons[0].slots[0].type", 'type must be ' + TYPES + ', got a string with control characters or quotes'),
    ("category", "arrears.compute", inline(slot(category="Flexible")), 0, INVALID,
     "persons[0].slots[0].category", 'category must be one of employee, flexible, got "Flexible"'),
    ("base -5", "arrears.compute", inline(slot(base=-5)), 0, INVALID, "persons[0].slots[0].base",
     "base must be " + MONEY + ", got -5"),
    ("base 10^10+1", "arrears.compute", inline(slot(base=10 ** 10 + 1)), 0, INVALID,
     "persons[0].slots[0].base", "base must be " + MONEY + ", got 10000000001"),
    ("base uint64 max", "arrears.compute", inline(slot(base=2 ** 64 - 1)), 0, INVALID,
     "persons[0].slots[0].base", "base must be " + MONEY + ", got 18446744073709551615"),
    ("base int64 min", "arrears.compute", inline(slot(base=-2 ** 63)), 0, INVALID,
     "persons[0].slots[0].base", "base must be " + MONEY + ", got -9223372036854775808"),
    ("paid float", "arrears.compute", inline(slot(paid=100.0)), 0, INVALID, "persons[0].slots[0].paid",
     "paid must be " + MONEY + ", got a float"),
    ("paid_date invalid", "arrears.compute", inline(slot(paid=100, paid_date=20230231)), 0, INVALID,
     "persons[0].slots[0].paid_date", "paid_date must be 0 or " + DATE + ", got 20230231"),
    ("paid_date without paid", "arrears.compute", inline(slot(paid_date=20230120)), 0, INVALID,
     "persons[0].slots[0].paid_date", "paid_date must be 0 when paid is 0, got 20230120"),
    ("paid without paid_date", "arrears.compute", inline(slot(paid=100)), 0, INVALID,
     "persons[0].slots[0].paid_date", "paid_date must be a date when paid is over 0, got 0"),
    ("deemed string", "arrears.compute", inline(slot(deemed="yes")), 0, INVALID, "persons[0].slots[0].deemed",
     "deemed must be a boolean, got a string"),
    ("deemed with base", "arrears.compute", inline(slot(deemed=True)), 0, INVALID, "persons[0].slots[0].deemed",
     "deemed must be false unless base, paid and paid_date are 0, got true"),
    ("duplicate slot", "arrears.compute", inline(slot(), slot(type_="medical"), slot(base=1)), 0, INVALID,
     "persons[0].slots[2]", "slot must be a (month, city, type) of its own, got 202301, 110000, pension again"),
    ("month before the first period", "arrears.compute", inline(slot(month=201001)), 0, INVALID,
     "persons[0].slots[0].month",
     "month must be on or after 201501, the first period of city 110000, got 201001"),
    # policy.put (SPEC §3.3, Appendix A)
    ("policy absent", "policy.put", {}, None, INVALID, "policy", "policy must be a map, got nothing"),
    ("policy city", "policy.put", {"policy": policy(city="11000a")}, None, INVALID, "policy.city",
     'city must be a city code of 6 digits, got "11000a"'),
    ("policy name long", "policy.put", {"policy": policy(name="n" * 256)}, None, INVALID, "policy.name",
     "name must be a UTF-8 string of at most 255 bytes, got a string of 256 bytes"),
    ("deadline absent", "policy.put", {"policy": policy(deadline=ABSENT)}, None, INVALID, "policy.deadline",
     "deadline must be a map {day, month_offset}, got nothing"),
    ("deadline.day 32", "policy.put", {"policy": policy(deadline__day=32)}, None, INVALID,
     "policy.deadline.day", "deadline.day must be an integer 1..31, got 32"),
    ("deadline.day 0", "policy.put", {"policy": policy(deadline__day=0)}, None, INVALID,
     "policy.deadline.day", "deadline.day must be an integer 1..31, got 0"),
    ("month_offset 3", "policy.put", {"policy": policy(deadline__month_offset=3)}, None, INVALID,
     "policy.deadline.month_offset", "deadline.month_offset must be an integer 0..2 months, got 3"),
    ("periods empty", "policy.put", {"policy": policy(periods=[])}, None, INVALID, "policy.periods",
     "periods must be a non-empty array of periods, got an array of 0"),
    ("period not a map", "policy.put", {"policy": policy(periods=[5])}, None, INVALID, "policy.periods[0]",
     "period must be a map {from, base_min, base_max, rates}, got 5"),
    ("period from", "policy.put", {"policy": policy(periods__0__from=201513)}, None, INVALID,
     "policy.periods[0].from", "from must be " + MONTH + ", got 201513"),
    ("periods out of order", "policy.put",
     {"policy": policy(periods=[{"from": 202307, "base_min": 1, "base_max": 2},
                                {"from": 202301, "base_min": 1, "base_max": 2}])}, None, INVALID,
     "policy.periods[1].from", "from must be a month after the previous period's 202307, got 202301"),
    ("base_min over base_max", "policy.put", {"policy": policy(periods__0__base_min=4000000)}, None, INVALID,
     "policy.periods[0].base_min", "base_min must be at most base_max 3000000, got 4000000"),
    ("base_max negative", "policy.put", {"policy": policy(periods__0__base_max=-1)}, None, INVALID,
     "policy.periods[0].base_max", "base_max must be " + MONEY + ", got -1"),
    ("rates key", "policy.put", {"policy": policy(periods__0__rates={"pensoin": {}})}, None, INVALID,
     "policy.periods[0].rates.pensoin", 'a rates key must be ' + TYPES + ', got "pensoin"'),
    ("rates value", "policy.put", {"policy": policy(periods__0__rates={"medical": 5})}, None, INVALID,
     "policy.periods[0].rates.medical", "medical must be a map {employer, individual, flexible}, got 5"),
    ("rate 10^6+1", "policy.put",
     {"policy": policy(periods__0__rates={"pension": {"employer": 1000001}})}, None, INVALID,
     "policy.periods[0].rates.pension.employer", "employer must be a rate 0..1000000 ppm, got 1000001"),
    ("interest not a map", "policy.put", {"policy": policy(interest=[])}, None, INVALID, "policy.interest",
     "interest must be a map, got an array of 0"),
    ("interest type unknown", "policy.put", {"policy": policy(interest__types=["pension", "housing"])}, None,
     INVALID, "policy.interest.types[1]", 'interest.types[1] must be ' + TYPES + ', got "housing"'),
    ("interest categories", "policy.put", {"policy": policy(interest__categories="flexible")}, None, INVALID,
     "policy.interest.categories", "interest.categories must be an array of names, got a string"),
    ("interest rates order", "policy.put", {"policy": policy(interest__rates=[[2023, 1], [2022, 1]])}, None,
     INVALID, "policy.interest.rates[1]",
     "an interest rate's year must be after the previous entry's 2023, got 2022"),
    ("interest rate entry", "policy.put", {"policy": policy(interest__rates=[[2023]])}, None, INVALID,
     "policy.interest.rates[0]",
     "an interest rate must be [year 0..9999, rate 0..1000000 ppm], got an array of 1"),
    ("interest rate ppm", "policy.put", {"policy": policy(interest__rates=[[2023, -1]])}, None, INVALID,
     "policy.interest.rates[0]", "an interest rate must be a rate 0..1000000 ppm, got -1"),
    ("daily_ppm", "policy.put", {"policy": policy(late_fee={"daily_ppm": 10001})}, None, INVALID,
     "policy.late_fee.daily_ppm", "late_fee.daily_ppm must be an integer 0..10000 ppm, got 10001"),
    ("cap_at_principal", "policy.put", {"policy": policy(late_fee={"cap_at_principal": 0})}, None, INVALID,
     "policy.late_fee.cap_at_principal", "late_fee.cap_at_principal must be a boolean, got 0"),
    ("legacy_before", "policy.put", {"policy": policy(backpay={"legacy_before": 20110701})}, None, INVALID,
     "policy.backpay.legacy_before", "backpay.legacy_before must be " + MONTH + ", got 20110701"),
    ("window_months 0", "policy.put", {"policy": policy(housing__window_months=0)}, None, INVALID,
     "policy.housing.window_months", "housing.window_months must be an integer 1..600 months, got 0"),
    ("required over window", "policy.put", {"policy": policy(housing__required_months=61)}, None, INVALID,
     "policy.housing.required_months", "housing.required_months must be at most window_months 60, got 61"),
    ("grace_days", "policy.put", {"policy": policy(housing__grace_days=-1)}, None, INVALID,
     "policy.housing.grace_days", "housing.grace_days must be an integer 0..1000000 days, got -1"),
    ("withhold.mode", "policy.put", {"policy": policy(withhold={"mode": "halt"})}, None, INVALID,
     "policy.withhold.mode", 'withhold.mode must be one of stop, skip, got "halt"'),
    # writes (SPEC §5.1, R12, R13, Appendix A)
    ("put persons absent", "person.put", {}, None, INVALID, "persons", "persons must be an array, got nothing"),
    ("idem empty", "person.put", {"persons": [], "idem": ""}, None, INVALID, "idem",
     "idem must be a UTF-8 string of 1..255 bytes, got a string of 0 bytes"),
    ("idem required", "payment.apply", {"items": []}, None, INVALID, "idem",
     "idem must be a UTF-8 string of 1..255 bytes (this method requires one), got nothing"),
    ("idem integer", "withhold.run", {"idem": 7, "month": 202301, "date": 20230131, "accounts": []}, None,
     INVALID, "idem", "idem must be a UTF-8 string of 1..255 bytes, got 7"),
    ("item not a map", "payment.apply", {"idem": "m1", "items": ["x"]}, 0, INVALID, "items[0]",
     "item must be a map {id, month, city, type, amount, date}, got a string"),
    ("item amount 0", "payment.apply",
     {"idem": "m2", "items": [{"id": ID, "month": 202301, "city": CITY, "type": "pension", "amount": 0,
                               "date": 20240101}]}, 0, INVALID, "items[0].amount",
     "amount must be an integer 1..10000000000 fen, got 0"),
    ("item type", "payment.apply",
     {"idem": "m3", "items": [{"id": ID, "month": 202301, "city": CITY, "type": "Pension", "amount": 1,
                               "date": 20240101}]}, 0, INVALID, "items[0].type",
     'type must be ' + TYPES + ', got "Pension"'),
    ("item date", "payment.apply",
     {"idem": "m4", "items": [{"id": ID, "month": 202301, "city": CITY, "type": "pension", "amount": 1,
                               "date": 21010101}]}, 0, INVALID, "items[0].date",
     "date must be " + DATE + ", got 21010101"),
    ("item paid cap", "payment.apply",
     {"idem": "m5", "items": [{"id": ID, "month": 202301, "city": CITY, "type": "pension",
                               "amount": 10 ** 10, "date": 20240101},
                              {"id": ID, "month": 202301, "city": CITY, "type": "pension",
                               "amount": 1, "date": 20240101}]}, 1, INVALID, "items[1].amount",
     "amount must be at most 0 fen, what keeps the slot's paid within 10000000000 fen, got 1"),
    ("withhold month", "withhold.run", {"idem": "w1", "month": 202302, "date": 20230131, "accounts": []},
     None, INVALID, "month", "month must be at most the date's month 202301, got 202302"),
    ("withhold date", "withhold.run", {"idem": "w2", "month": 202301, "date": "2023-01-31", "accounts": []},
     None, INVALID, "date", "date must be " + DATE + ", got a string"),
    ("account balance", "withhold.run",
     {"idem": "w3", "month": 202301, "date": 20230131, "accounts": [{"id": ID, "balance": -1}]}, 0, INVALID,
     "accounts[0].balance", "balance must be " + MONEY + ", got -1"),
    ("too many ids", "arrears.compute", compute(ids=[ID] * 100001), None, TOO_LARGE, "ids",
     "ids must hold at most 100000 entries, got 100001"),
]


def id_places(bad):
    """(name, method, params, where, at) for every place an id appears."""
    person = {"id": bad, "slots": [slot()]}
    item = {"id": bad, "month": 202301, "city": CITY, "type": "pension", "amount": 1, "date": 20240101}
    places = [
        ("ids[0]", "years.compute", compute(ids=[ID, bad]), 1, "ids[1]"),
        ("persons[i].id", "arrears.compute", compute(ids=ABSENT, persons=[person]), 0, "persons[0].id"),
        ("person.put", "person.put", {"persons": [person]}, 0, "persons[0].id"),
        ("person.get", "person.get", {"id": bad}, None, "id"),
        ("person.delete", "person.delete", {"id": bad}, None, "id"),
        ("items[i].id", "payment.apply", {"idem": "i-%r" % (bad,), "items": [item]}, 0, "items[0].id"),
        ("accounts[i].id", "withhold.run",
         {"idem": "a-%r" % (bad,), "month": 202301, "date": 20230131, "accounts": [{"id": bad, "balance": 5}]},
         0, "accounts[0].id"),
    ]
    return places


class Messages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="arrears-messages-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def run_cases(self, cases):
        data = tempfile.mkdtemp(dir=self.dir)
        msgs = setup_msgs() + [req(100 + k, c[1], c[2]) for k, c in enumerate(cases)]
        answers = run_batch(msgs, data)
        self.assertEqual(len(answers), len(msgs))
        for a in answers[:2]:
            self.assertIsNone(a[2], a)
        return answers[2:]

    def check(self, case, answer):
        name, _method, _params, where, code, at, message = case
        err = error_of(answer, where)
        self.assertIsNotNone(err, name)
        self.assertEqual((err.get("code"), err.get("at"), err.get("message")), (code, at, message), name)
        self.assertLessEqual(len(err["message"].encode()), 191, name)

    def test_table(self):
        answers = self.run_cases(CASES)
        for case, answer in zip(CASES, answers):
            with self.subTest(case[0]):
                self.check(case, answer)

    def test_id_gets_one_message_wherever_it_appears(self):
        cases = []
        for bad, found in BAD_IDS:
            for name, method, params, where, at in id_places(bad):
                if found is None:   # nil: absent in a map, nil as an ids entry
                    text = "nil" if at.startswith("ids[") else "nothing"
                else:
                    text = found
                cases.append(("%s at %s" % (bad, name), method, params, where, INVALID, at, ID_EXPECTED + text))
        answers = self.run_cases(cases)
        for case, answer in zip(cases, answers):
            with self.subTest(case[0]):
                self.check(case, answer)
                bad = case[0].split(" at ")[0]
                if len(bad) >= 6 and bad != "None":
                    self.assertNotIn(bad, error_of(answer, case[3])["message"], "the id is never echoed")

    def test_inline_person_in_other_msgpack_forms(self):
        """Inline persons are read from the request's bytes: every encoding
        of a key or a value means the same (str8/16/32, int64, uint8, ...),
        a repeated slot field counts at its first value that is not nil, a
        repeated person key at its first occurrence (nil: absent), keys that
        are not strings are ignored, and a binary is not a string."""
        def raw_str(text, head):
            b = text.encode()
            width = {0xd9: 1, 0xda: 2, 0xdb: 4, 0xc4: 1}[head]
            return bytes([head]) + len(b).to_bytes(width, "big") + b

        def raw_map(pairs):
            assert len(pairs) < 16
            return bytes([0x80 | len(pairs)]) + b"".join(k + v for k, v in pairs)

        def key(name):
            return raw_str(name, 0xd9)

        pk = msgpack.packb
        wide = [(key("month"), b"\xd3" + (202301).to_bytes(8, "big")),
                (raw_str("city", 0xda), raw_str(CITY, 0xda)),
                (raw_str("type", 0xdb), raw_str("pension", 0xd9)),
                (pk("category"), raw_str("flexible", 0xdb)),
                (key("base"), b"\xcf" + (650000).to_bytes(8, "big")),
                (key("paid"), b"\xcc\x00"),
                (key("paid_date"), b"\xd0\x00")]
        rest = wide[1:]
        marker = "@@slot@@"
        cases = [  # (name, slot map bytes, person or None, at, message or None)
            ("wide forms", raw_map(wide), None, None, None),
            ("month nil, then a month", raw_map([(key("month"), b"\xc0")] + rest + [wide[0]]), None, None, None),
            ("month 'x', then a month", raw_map([(key("month"), pk("x"))] + rest + [wide[0]]), None,
             "persons[0].slots[0].month", "month must be " + MONTH + ", got a string"),
            ("keys not strings", raw_map([(pk(1), pk("month")), (raw_str("month", 0xc4), pk(5)), (b"\xc0", b"\xc3")]
                                          + wide), None, None, None),
            ("city a binary", raw_map(wide[:1] + [(pk("city"), raw_str(CITY, 0xc4))] + wide[2:]), None,
             "persons[0].slots[0].city", "city must be a city code of 6 digits, got a binary"),
            ("id nil, then an id", raw_map(wide), [(pk("id"), b"\xc0"), (pk("id"), pk(ID)), (pk("slots"), None)],
             "persons[0].id", ID_EXPECTED + "nothing"),
            ("slots nil, then slots", raw_map(wide), [(pk("slots"), b"\xc0"), (pk("id"), pk(ID)), (pk("slots"), None)],
             "persons[0].slots", "slots must be an array, got nothing"),
        ]
        data = tempfile.mkdtemp(dir=self.dir)
        body = b"".join(pk(m) for m in setup_msgs())
        for k, (name, slot_bytes, person, _at, _message) in enumerate(cases):
            frame = pk(req(100 + k, "arrears.compute", inline(marker)))
            slots = b"\x91" + slot_bytes
            if person is not None:
                frame = frame.replace(pk({"id": ID, "slots": [marker]}),
                                      raw_map([(kk, slots if v is None else v) for kk, v in person]))
            else:
                frame = frame.replace(pk(marker), slot_bytes)
            body += frame
        proc = subprocess.run([ARREARS, "eval", "--data", data], input=body, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=TIMEOUT_S)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        unp = msgpack.Unpacker(raw=False, strict_map_key=False)
        unp.feed(proc.stdout)
        answers = list(unp)[2:]
        self.assertEqual(len(answers), len(cases))
        for (name, _slot, _person, at, message), answer in zip(cases, answers):
            with self.subTest(name):
                self.assertIsNone(answer[2], name)
                entry = answer[3]["results"][0]
                if message is None:
                    self.assertNotIn("error", entry, name)
                    self.assertEqual(entry["months_owed"], 1, name)   # 202301 unpaid
                else:
                    self.assertEqual((entry["error"]["at"], entry["error"]["message"]), (at, message), name)

    def test_stored_person_month_before_the_first_period(self):
        """R1 on a stored person: the path starts with the selector (Appendix A)."""
        early = make_id("11010519700615001")
        text = "month must be on or after 201501, the first period of city 110000, got 201001"
        cases = [
            ("put", "person.put", {"persons": [{"id": early, "slots": [slot(month=201001), slot(month=202201)]}]},
             0, None, None, None),
            ("ids", "arrears.compute", compute(ids=[ID, early]), 1, INVALID, "ids[1].slots[0].month", text),
            ("scan", "medical.status", compute(ids=ABSENT, scan={"after": ID, "limit": 5}), 0, INVALID,
             "scan[0].slots[0].month", text),
            ("accounts", "withhold.run", {"idem": "r1", "month": 202201, "date": 20240101,
                                          "accounts": [{"id": early, "balance": 5}]}, 0, INVALID,
             "accounts[0].slots[0].month", text),
            ("inline, the second slot", "years.compute", inline(slot(month=202201), slot(month=201001)), 0,
             INVALID, "persons[0].slots[1].month", text),
        ]
        answers = self.run_cases(cases)
        self.assertEqual(answers[0][3], {"results": [{"id": early, "ok": True}]})
        for case, answer in zip(cases[1:], answers[1:]):
            with self.subTest(case[0]):
                self.check(case, answer)

    def test_valid_unknown_id_is_not_found_not_invalid(self):
        # the lookups of stored persons (Appendix A); inline persons are not looked up
        lookups = ("ids[0]", "person.get", "items[i].id", "accounts[i].id")
        cases = [(name, method, params, where, 4, at, None)
                 for name, method, params, where, at in id_places(ID_ABSENT) if name in lookups]
        answers = self.run_cases(cases)
        for case, answer in zip(cases, answers):
            with self.subTest(case[0]):
                err = error_of(answer, case[3])
                self.assertEqual((err["code"], err["at"]), (4, case[5]), case[0])


def main():
    global ARREARS
    args = sys.argv[1:]
    if "--arrears" in args:
        i = args.index("--arrears")
        ARREARS = args[i + 1]
        del args[i:i + 2]
    if msgpack is None:
        print("python3-msgpack is missing")
        return 1
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    suite.addTests(loader.loadTestsFromNames(args, sys.modules[__name__]) if args
                   else loader.loadTestsFromTestCase(Messages))
    result = unittest.TextTestRunner(verbosity=1).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
