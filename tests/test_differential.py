#!/usr/bin/python3
"""Differential test: the C evaluator against tests/reference.py.

    /usr/bin/python3 tests/test_differential.py --eval build/arrears --cases 500 --seed 1

Generates N seeded random cases (city policies, persons, compute requests,
and a share of deliberately invalid inputs), writes every request as one
msgpack stream to `<eval> eval`, reads the responses and compares each one
field by field with the reference's answer. Error messages are not compared
(code, name and at are). A few extra cases send a malformed message, each to
its own evaluator process, since the evaluator stops reading after one.

Options:
  --eval PATH      evaluator binary (default build/arrears)
  --cases N        number of cases (default 500)
  --seed S         seed (default 1); a failure replays from --seed and --cases
  --show K         print at most K failing cases in detail (default 3)
  --allow-extra    ignore result keys the evaluator adds beyond the reference's
  --stats          print what the generated cases covered (reference side)
  --repro DIR      write each failing case as a msgpack stream DIR/case_<k>.msgpack
                   (policy.put of the cities in effect, then the request)
  --reference-only generate and evaluate with the reference alone (no binary)

Prints `differential: P passed, F failed`; exits 1 on any failure.
"""

import copy
import json
import os
import random
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference as R  # noqa: E402

try:
    import msgpack
except ImportError:
    msgpack = None

TYPES = R.TYPES
AREAS = ("110105", "310104", "440106", "320502", "510107", "330106", "120101", "650102")
# cities that get a policy; the last one is used for overflow cases (huge interest rates)
CITIES = ("110000", "310000", "440100", "320500", "510100")
CITY_OVERFLOW = "650100"
CITY_WIDE = "330100"  # first period 195001: slots at the edges of the month range
CITY_UNKNOWN = ("999999", "120000", "000000")
# policy.put with invalid UTF-8 goes to a city no person uses, so that an
# evaluator accepting it does not change the answers that follow
CITY_UTF8 = "530100"
SPECIAL_DATES = (20240229, 20200229, 20000229, 20160229, 20230228, 20240228, 20240301,
                 20231231, 20240101, 20240131, 20230131, 20230331, 20230430, 20230531,
                 20250630, 20241130, 20221231, 20260115, 20210101)
EVAL_TIMEOUT_S = 300


def bad_utf8(b):
    """A msgpack str holding these bytes (not valid UTF-8): Python keeps them as
    lone surrogates (surrogateescape) and packs them back byte for byte."""
    return b.decode("utf-8", "surrogateescape")


# byte sequences that are not UTF-8: a stray continuation byte, 0xff, an
# overlong '1', a UTF-16 surrogate, a truncated 3-byte sequence, past U+10FFFF
BAD_UTF8 = (b"\x80", b"\xff", b"\xc0\xb1", b"\xed\xa0\x80", b"\xe4\xb8", b"\xf4\x90\x80\x80")


def spoil_utf8(r, text):
    """text with one of its characters (or the whole) replaced by invalid bytes."""
    b = text.encode("utf-8")
    bad = r.choice(BAD_UTF8)
    if not b or r.random() < 0.2:
        return bad_utf8(bad)
    k = r.randrange(len(b))
    return bad_utf8(b[:k] + bad + b[k + 1:])


def scan_after_values(r, make_id):
    """(value, valid?) for scan.after (§5.1): nil, full ids, prefixes, and the
    invalid kinds: wrong type, empty, non-digit, lower-case x, 19 chars, X
    before position 18, invalid UTF-8."""
    pid = make_id()
    k = r.randint(1, 17)
    valid = [None, pid, pid[:k], pid[:17] + "X", pid[:17] + r.choice("0123456789"),
             "9" * r.randint(1, 18), "0", r.choice(("1", "11", "110105", "3101041985"))]
    bad = [5, 0, 1.5, True, [], {}, b"110105", "", pid + "1", pid[:k] + r.choice("aX x-") + pid[k + 1:],
           pid[:17] + "x", "X", pid[:r.randint(0, 16)] + "X", "１１０１０５", " " + pid[1:],
           spoil_utf8(r, pid[:k]), bad_utf8(b"\xff")]
    if r.random() < 0.45:
        return r.choice(valid), True
    return r.choice(bad), False


def month_add(yyyymm, k):
    return R.month_of_index(R.month_index(yyyymm) + k)


def date_add(yyyymmdd, days):
    o = R.ordinal(yyyymmdd) + days
    lo, hi = R.ordinal(19000101), R.ordinal(21001231)
    return R.date_of_ordinal(min(max(o, lo), hi))


def check_char(first17):
    return R.id_check_char(first17)


# ===================================================================== generator

class Gen(object):
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.ref = R.Evaluator()
        self.msgid = 0

    # ------------------------------------------------------------- basics
    def next_msgid(self):
        self.msgid += 1
        x = self.r.random()
        if x < 0.01:
            return 0xFFFFFFFF
        if x < 0.02:
            return 0
        return self.msgid

    def chance(self, p):
        return self.r.random() < p

    def rand_date(self, y0, y1):
        y = self.r.randint(y0, y1)
        m = self.r.randint(1, 12)
        d = self.r.randint(1, R.days_in_month(y, m))
        return y * 10000 + m * 100 + d

    def make_id(self, birth=None, male=None, want_x=False):
        r = self.r
        if birth is None:
            x = r.random()
            if x < 0.9:
                birth = self.rand_date(1940, 2006)
            elif x < 0.95:
                birth = r.choice((19880229, 19960229, 19520229, 20000229))
            else:
                birth = self.rand_date(1900, 2100)
        if male is None:
            male = self.chance(0.5)
        for _ in range(200):
            seq = r.randrange(100)
            sex = r.choice((1, 3, 5, 7, 9) if male else (0, 2, 4, 6, 8))
            first = "%s%08d%02d%d" % (r.choice(AREAS), birth, seq, sex)
            c = check_char(first)
            if not want_x or c == "X":
                return first + c
        return first + check_char(first)

    def policy(self, city):
        return self.ref.policies.get(city)

    # ------------------------------------------------------------- policies
    def gen_policy_doc(self, city):
        r = self.r
        doc = {"city": city}
        x = r.random()
        if x < 0.3:
            doc["name"] = r.choice(("Beijing", "", "City %s" % city, "上海市", "a" * 255))
        dl = {"day": r.choice((1, 5, 10, 15, 20, 25, 25, 28, 29, 30, 31, 31))}
        if self.chance(0.7):
            dl["month_offset"] = r.choice((0, 0, 1, 1, 2))
        doc["deadline"] = dl
        periods = []
        if city == CITY_WIDE:
            f = 195001
        elif city == CITY_OVERFLOW:
            f = 197001
        else:
            f = r.randint(1995, 2014) * 100 + r.randint(1, 12)
        for k in range(r.choice((1, 1, 2, 2, 3, 4))):
            if k > 0:
                f = month_add(f, r.randint(1, 120))
                if f > 209912:
                    break
            bmin = r.randint(50000, 500000)
            bmax = bmin if self.chance(0.05) else bmin + r.randint(0, 3000000)
            if city == CITY_OVERFLOW:
                bmin, bmax = 10 ** 9, 10 ** 10
            per = {"from": f, "base_min": bmin, "base_max": bmax}
            if city == CITY_OVERFLOW:
                per["rates"] = {t: {"employer": 1000000, "individual": 1000000,
                                    "flexible": 1000000} for t in TYPES}
            elif self.chance(0.95):
                rates = {}
                types = list(TYPES)
                r.shuffle(types)
                for t in types:
                    if not self.chance(0.85):
                        continue
                    share = {}
                    for s, lo, hi in (("employer", 0, 200000), ("individual", 0, 100000),
                                      ("flexible", 0, 250000)):
                        if self.chance(0.85):
                            share[s] = r.randint(lo, hi) if self.chance(0.9) else 0
                    rates[t] = share
                per["rates"] = rates
            periods.append(per)
        doc["periods"] = periods

        if city == CITY_OVERFLOW:
            doc["interest"] = {"types": ["pension", "medical"], "categories": ["flexible", "employee"],
                               "default_ppm": 1000000,
                               "rates": [[1990, r.choice((900000, 1000000))], [2000, 1000000]]}
        elif self.chance(0.85):
            it = {}
            if self.chance(0.8):
                it["types"] = self.sample_names(TYPES)
            if self.chance(0.8):
                it["categories"] = self.sample_names(R.CATEGORIES)
            if self.chance(0.7):
                it["default_ppm"] = r.choice((0, 25000, r.randint(0, 100000)))
            if self.chance(0.8):
                table = []
                if self.chance(0.9):
                    y0 = r.randint(1995, 2020)
                    y = y0
                    while y <= 2030 and len(table) < 20:
                        table.append([y, r.randint(0, 100000) if self.chance(0.97)
                                      else r.randint(0, 1000000)])
                        y += r.choice((1, 1, 1, 2, 3))
                it["rates"] = table
            doc["interest"] = it

        if self.chance(0.85):
            lf = {}
            if self.chance(0.8):
                lf["daily_ppm"] = r.choice((500, 500, 0, 10000, r.randint(0, 10000)))
            if self.chance(0.8):
                lf["categories"] = self.sample_names(R.CATEGORIES)
            if self.chance(0.7):
                lf["cap_at_principal"] = self.chance(0.5)
            doc["late_fee"] = lf

        if self.chance(0.9):
            bp = {}
            if self.chance(0.8):
                bp["direct_max_months"] = r.choice((0, 1, 3, 3, 6, r.randint(0, 24)))
            if self.chance(0.8):
                bp["verify_max_months"] = r.choice((6, 24, 60, 60, r.randint(0, 120)))
            if self.chance(0.8):
                bp["legacy_before"] = r.choice((201107, 195001, r.randint(1995, 2020) * 100
                                                + r.randint(1, 12)))
            if self.chance(0.9):
                bp["flexible_window_months"] = r.choice((0, 0, 12, 24, 36, r.randint(1, 60)))
            if city == CITY_OVERFLOW:
                bp["flexible_window_months"] = 0
            doc["backpay"] = bp

        if self.chance(0.9):
            hs = {}
            if self.chance(0.85):
                hs["types"] = [] if self.chance(0.15) else self.sample_names(TYPES[:3])
            w = r.choice((12, 24, 36, 60, r.randint(1, 72), 600 if self.chance(0.1) else 6))
            hs["window_months"] = w
            hs["required_months"] = r.choice((w, w, w - r.randint(0, w), 0 if self.chance(0.2) else w))
            if self.chance(0.85):
                hs["end_offset_months"] = r.choice((0, 1, 1, 2, 12, r.randint(0, 12)))
            if self.chance(0.8):
                hs["backpay_counts"] = self.chance(0.3)
            if self.chance(0.8):
                hs["grace_days"] = r.choice((0, 0, 30, 60, r.randint(0, 120)))
            doc["housing"] = hs

        if self.chance(0.6):
            wh = {}
            if self.chance(0.7):
                order = list(TYPES)
                r.shuffle(order)
                wh["order"] = order[:r.randint(0, 5)]
            if self.chance(0.7):
                wh["mode"] = r.choice(("stop", "skip"))
            doc["withhold"] = wh
        self.policy_extras(doc)
        return self.shuffled(doc)

    def policy_extras(self, doc):
        """§3.4: a source now and then, and keys the decoder ignores (policy.put
        warns of each, in document order)."""
        r = self.r
        if self.chance(0.3):
            doc["source"] = r.choice(("", "Notice 2023-12, effective 2023-07-01", "通知 2024-3", "s" * 1024))
        if self.chance(0.15):
            doc[r.choice(("sourc", "nmae", "x" * 60, "periods2"))] = 1
        if self.chance(0.15):
            per = doc["periods"][r.randrange(len(doc["periods"]))]
            rates = per.setdefault("rates", {})
            rates.setdefault("pension", {})["flexibel"] = r.randint(0, 250000)
        if self.chance(0.05):
            doc["housing"] = dict(doc.get("housing", {}), **{"window": 12, "grace": 1})
        if self.chance(0.02):
            doc.update({"k%02d" % i: i for i in range(20)})  # more than 16 warnings

    def revision_pins(self, params):
        """policy_revisions: mostly existing revisions, some unknown, some malformed."""
        r = self.r
        x = r.random()
        if x < 0.05:
            params["policy_revisions"] = r.choice(([], "110000", 1, None))
            return
        pins = {}
        for city in r.sample(CITIES, r.choice((1, 1, 2, 3))):
            n = len(self.ref.revisions.get(city, ()))
            pins[city] = r.randint(1, n) if n and self.chance(0.85) else n + 1
        y = r.random()
        if y < 0.04:
            pins[r.choice(CITIES)] = r.choice((0, -1, 1.0, "1", True))
        elif y < 0.06:
            pins[r.choice(("11000", "x" * 60, 110000))] = 1
        elif y < 0.07:
            pins = {"%06d" % (100000 + i): 1 for i in range(65)}
        elif y < 0.1:
            pins[CITY_UNKNOWN[0]] = 1
        params["policy_revisions"] = pins

    def sample_names(self, names):
        r = self.r
        k = r.randint(0, len(names))
        out = r.sample(list(names), k)
        if out and self.chance(0.1):
            out.append(out[0])  # duplicates are allowed
        return out

    def shuffled(self, m):
        if not self.chance(0.3):
            return m
        items = list(m.items())
        self.r.shuffle(items)
        return dict(items)

    def invalid_policy_doc(self, city):
        """A policy document with one (sometimes two) violations."""
        r = self.r
        doc = copy.deepcopy(self.gen_policy_doc(city))
        for _ in range(2 if self.chance(0.15) else 1):
            self.break_policy(doc)
        return doc

    def break_policy(self, doc):
        r = self.r
        periods = doc.get("periods")
        per = r.choice(periods) if isinstance(periods, list) and periods else None
        if not isinstance(per, dict):
            per = None

        def sect(name):
            s = doc.get(name)
            if not isinstance(s, dict):
                s = doc[name] = {}
            return s

        choices = [
            lambda: doc.__setitem__("city", r.choice(("11000", "1100000", "11000a", 110000, None,
                                                      "１１００００"))),
            lambda: doc.pop("city"),
            lambda: doc.__setitem__("name", r.choice((5, "n" * 256, ["x"]))),
            lambda: doc.pop("deadline"),
            lambda: doc.__setitem__("deadline", r.choice((25, [25], "25"))),
            lambda: sect("deadline").__setitem__("day", r.choice((0, 32, -1, 25.0, "25", None))),
            lambda: sect("deadline").__setitem__("month_offset", r.choice((3, -1, 1.0, True))),
            lambda: doc.pop("periods"),
            lambda: doc.__setitem__("periods", r.choice(([], {}, 5))),
            lambda: doc["periods"].append(5),
            lambda: doc["periods"].append(copy.deepcopy(doc["periods"][-1])),  # equal from
            lambda: doc["periods"].reverse() if len(doc["periods"]) > 1 else
            doc["periods"].insert(0, {"from": 209912, "base_min": 1, "base_max": 2}),
            lambda: per.__setitem__("from", r.choice((202313, 194912, 210001, 202001.0, None))),
            lambda: per.__setitem__("base_min", per["base_max"] + 1) if per["base_max"] < 10 ** 10
            else per.__setitem__("base_min", -1),
            lambda: per.__setitem__("base_min", r.choice((-1, 10 ** 10 + 1, 100.0, "1", None))),
            lambda: per.__setitem__("base_max", r.choice((10 ** 10 + 1, -5, 1e6))),
            lambda: per.pop(r.choice(("from", "base_min", "base_max"))),
            lambda: per.__setitem__("rates", r.choice(([], 5, "x"))),
            lambda: per.setdefault("rates", {}).__setitem__(r.choice(("dental", "Pension", "")),
                                                             {"employer": 1}),
            lambda: per.setdefault("rates", {}).__setitem__(r.choice(TYPES), r.choice((5, [1]))),
            lambda: per.setdefault("rates", {}).__setitem__(
                r.choice(TYPES), {r.choice(R.SHARES): r.choice((10 ** 6 + 1, -1, 0.5, "1"))}),
            lambda: doc.__setitem__("interest", r.choice((5, [], "x"))),
            lambda: sect("interest").__setitem__("types", r.choice((
                ["pension", "dental"], "pension", [1], ["medical", "pension", "Medical"]))),
            lambda: sect("interest").__setitem__("categories", r.choice((
                ["self"], ["flexible", "employee", "x"], {}))),
            lambda: sect("interest").__setitem__("default_ppm", r.choice((10 ** 6 + 1, -1, 1.5))),
            lambda: sect("interest").__setitem__("rates", r.choice((
                [[2020, 1], [2019, 1]], [[2020, 1], [2020, 2]], [[2020]], [[2020, 1, 2]],
                [[-1, 5]], [[10000, 5]], [[2020, 10 ** 6 + 1]], [[2020.0, 5]], [5], {},
                [[2018, 5], [2019, 6], [2019, 7]]))),
            lambda: sect("late_fee").__setitem__("daily_ppm", r.choice((10001, -1, 500.0))),
            lambda: sect("late_fee").__setitem__("categories", r.choice((["x"], "employee"))),
            lambda: sect("late_fee").__setitem__("cap_at_principal", r.choice((1, "true", 0))),
            lambda: doc.__setitem__("late_fee", 5),
            lambda: sect("backpay").__setitem__(r.choice(("direct_max_months", "verify_max_months",
                                                          "flexible_window_months")),
                                                r.choice((-1, 10 ** 6 + 1, 3.0, "3"))),
            lambda: sect("backpay").__setitem__("legacy_before", r.choice((201113, 0, 194912,
                                                                           210001, 201107.0))),
            lambda: doc.__setitem__("backpay", [1]),
            lambda: sect("housing").__setitem__("types", r.choice((["pension", "x"], 1))),
            lambda: sect("housing").__setitem__("window_months", r.choice((0, 601, -1, 12.0))),
            lambda: sect("housing").update({"window_months": 12, "required_months": 13}),
            lambda: sect("housing").update({"required_months": r.choice((10 ** 6 + 1, -1, 1.0))}),
            lambda: sect("housing").__setitem__("end_offset_months", r.choice((13, -1))),
            lambda: sect("housing").__setitem__("backpay_counts", r.choice((1, "no"))),
            lambda: sect("housing").__setitem__("grace_days", r.choice((-1, 10 ** 6 + 1, 0.0))),
            lambda: doc.__setitem__("housing", "x"),
            lambda: sect("withhold").__setitem__("order", r.choice((["pension", "x"], "pension",
                                                                    [None]))),
            lambda: sect("withhold").__setitem__("mode", r.choice(("halt", "", 1, "STOP"))),
            lambda: doc.__setitem__("withhold", 0),
        ]
        try:
            r.choice(choices)()
        except (KeyError, TypeError, AttributeError, IndexError):
            doc["periods"] = []

    # ------------------------------------------------------------- payments
    def pay(self, due, deadline, D, style=None):
        """(paid, paid_date) for a slot with this due and deadline, as seen from D."""
        r = self.r
        if style is None:
            x = r.random()
            if x < 0.55:
                style = "ontime"
            elif x < 0.67:
                style = "late"
            elif x < 0.80:
                style = "unpaid"
            elif x < 0.88:
                style = "partial"
            elif x < 0.91:
                style = "over"
            elif x < 0.96:
                style = "after"
            else:
                style = "onD"
        if style == "unpaid":
            return 0, 0
        amount = due
        if style == "partial":
            amount = r.randint(1, due - 1) if due >= 2 else 0
        elif style == "over":
            amount = due + r.randint(1, 5000)
        if amount == 0:
            if due == 0 and self.chance(0.3):
                amount = r.randint(1, 1000)
            else:
                return 0, 0
        amount = min(amount, R.MONEY_MAX)
        if style == "ontime":
            date = date_add(deadline, -r.randint(0, 40))
        elif style == "late":
            date = date_add(deadline, r.randint(1, 400))
        elif style == "after":
            date = date_add(D, r.randint(1, 200))
        elif style == "onD":
            date = D
        else:
            date = date_add(deadline, r.randint(-20, 120))
        return amount, date

    def due(self, pol, mi, typ, cat, base):
        k = pol.period_of(mi)
        if k < 0:
            return 0
        _f, bmin, bmax, rates = pol.periods[k]
        b = min(max(base, bmin), bmax)
        rt = rates[typ]
        if cat == "employee":
            return R.rh(b * rt["employer"], 10 ** 6) + R.rh(b * rt["individual"], 10 ** 6)
        return R.rh(b * rt["flexible"], 10 ** 6)

    def make_slot(self, pol, mi, typ, cat, D, style=None, base=None, deemed=False):
        r = self.r
        s = {"month": R.month_of_index(mi), "city": pol.city, "type": typ, "category": cat}
        if deemed:
            s.update({"base": 0, "paid": 0, "paid_date": 0, "deemed": True})
            return s
        k = pol.period_of(mi)
        if base is None:
            if k >= 0 and self.chance(0.85):
                _f, bmin, bmax, _rates = pol.periods[k]
                base = r.randint(max(0, bmin - 100000), bmax + 100000)
            else:
                base = r.choice((0, r.randint(0, 5000000), R.MONEY_MAX))
        base = min(base, R.MONEY_MAX)
        due = self.due(pol, mi, typ, cat, base)
        paid, pdate = self.pay(due, pol.deadline(mi), D, style)
        s["base"] = base
        s["paid"] = paid
        s["paid_date"] = pdate
        x = r.random()
        if x < 0.15:
            s["deemed"] = False
        elif x < 0.2:
            s["deemed"] = None
        elif x < 0.23:
            s["note"] = "ignored"
        elif x < 0.24:
            s[7] = "a non-string key is an unknown key too"
        return s

    # ------------------------------------------------------------- persons
    def first_from(self, pol):
        return pol.period_from[0]

    def pick_city(self, home):
        if self.chance(0.75):
            return home
        return self.r.choice(CITIES + (CITY_WIDE,))

    def gen_person(self, D, md, profile=None, home=None):
        r = self.r
        if home is None:
            home = r.choice(CITIES)
        if profile is None:
            profile = r.choice(("random", "random", "random", "career", "medical", "housing"))
        forced_class = None
        if profile == "career" and self.chance(0.6):
            # born so that the statutory retirement month falls near as_of
            forced_class = r.choice(R.RETIRE_CLASSES)
            base_age = R.RETIRE_TABLE[forced_class][0]
            bi = md - base_age - r.randint(0, 40) + r.randint(-24, 12)
            by, bm = bi // 12, bi % 12 + 1
            birth = by * 10000 + bm * 100 + r.randint(1, 28)
            if not R.valid_date(birth):
                birth = 19700101
            pid = self.make_id(birth=birth, male=forced_class == "m60")
        else:
            pid = self.make_id()
        slots = {}

        def add(pol, mi, typ, cat, style=None, deemed=False):
            if mi < self.first_from(pol) or mi > R.month_index(209912):
                return
            key = (mi, pol.city, typ)
            if key in slots:
                return
            slots[key] = self.make_slot(pol, mi, typ, cat, D, style, deemed=deemed)

        if profile == "random":
            for _ in range(r.choice((1, 1, 2, 3))):
                pol = self.policy(self.pick_city(home))
                cat = r.choice(("employee", "employee", "flexible"))
                types = r.sample(TYPES, r.randint(1, 3))
                length = r.choice((1, 3, 6, 12, r.randint(1, 36)))
                start = r.randint(md - 100, md + 2)
                start = max(start, self.first_from(pol))
                for mi in range(start, start + length):
                    for t in types:
                        add(pol, mi, t, cat)
        elif profile == "career":
            pol = self.policy(CITY_WIDE if self.chance(0.5) else home)
            cat = r.choice(("employee", "flexible"))
            length = r.randint(60, 300)
            start = max(md - length + r.randint(0, 3), self.first_from(pol))
            ndeemed = r.choice((0, 0, r.randint(1, 120)))
            for mi in range(start - ndeemed, start):
                add(pol, mi, "pension", cat, deemed=True)
            for mi in range(start, md + r.randint(0, 2)):
                if self.chance(0.03):
                    continue
                add(pol, mi, "pension", cat, style="ontime" if self.chance(0.85) else None)
            if self.chance(0.3):  # a second city: duplicates and back-paid months
                pol2 = self.policy(r.choice(CITIES))
                s2 = r.randint(min(start, md), md)
                for mi in range(s2, s2 + r.randint(1, 12)):
                    add(pol2, mi, "pension", cat)
        elif profile == "medical":
            pol = self.policy(home)
            cat = r.choice(("employee", "flexible"))
            start = md - r.randint(1, 30)
            for mi in range(start, md + r.randint(0, 2)):
                style = r.choice(("ontime", "ontime", "ontime", "unpaid", "late", "onD", "after",
                                  None))
                add(pol, mi, "medical", cat, style=style)
                if self.chance(0.3):
                    add(pol, mi, "pension", cat)
            if self.chance(0.2):
                pol2 = self.policy(r.choice(CITIES))
                for mi in range(md - r.randint(0, 6), md + 1):
                    add(pol2, mi, "medical", r.choice(("employee", "flexible")))
        elif profile == "housing":
            pol = self.policy(home)
            cat = r.choice(("employee", "employee", "flexible"))
            clean = self.chance(0.5)  # every month on time but a few
            w = pol.window_months
            start = md - min(w, 120) - pol.end_offset - r.randint(0, 24)
            types = [t for t in TYPES if t in pol.housing_types] or ["pension"]
            for mi in range(start, md + r.randint(0, 1)):
                if not clean and self.chance(0.02):
                    continue
                for t in types:
                    if clean and not self.chance(0.01):
                        style = "ontime"
                    else:
                        style = r.choice(("ontime",) * 12 + ("late", "unpaid", "onD", "after"))
                    add(pol, mi, t, cat, style=style)
        elif profile == "overflow":
            pol = self.policy(CITY_OVERFLOW)
            for _ in range(r.randint(1, 3)):
                mi = md - r.randint(12 * 15, 12 * 30)
                add(pol, mi, r.choice(("pension", "medical")), "flexible", style="unpaid")
        elif profile == "edge":
            pol = self.policy(CITY_WIDE)
            for mi in (R.month_index(195001), R.month_index(209912), md, md - 1, md + 1):
                add(pol, mi, r.choice(TYPES), r.choice(R.CATEGORIES))

        out = list(slots.values())
        if self.chance(0.5):
            r.shuffle(out)
        else:
            out.sort(key=lambda s: (s["month"], s["city"], s["type"]))
        for i, s in enumerate(out):
            if self.chance(0.05):
                out[i] = self.shuffled(s)
        person = {"id": pid, "slots": out}
        x = r.random()
        if forced_class == "f50" or (forced_class and x < 0.5):
            person["retire_class"] = forced_class
        elif x < 0.25:
            person["retire_class"] = r.choice(R.RETIRE_CLASSES)
        elif x < 0.3:
            person["retire_class"] = None
        if self.chance(0.1):
            items = list(person.items())
            r.shuffle(items)
            person = dict(items)
        return person

    # ------------------------------------------------------------- as_of
    def gen_as_of(self):
        r = self.r
        x = r.random()
        if x < 0.6:
            return self.rand_date(2008, 2026)
        if x < 0.8:
            return r.choice(SPECIAL_DATES)
        if x < 0.95:  # the day of, or the day after, some month's deadline
            pol = self.policy(r.choice(CITIES))
            mi = R.month_index(r.randint(2010, 2025) * 100 + r.randint(1, 12))
            return date_add(pol.deadline(mi), r.choice((-1, 0, 0, 1, 1)))
        return self.rand_date(1990, 2100)

    # ------------------------------------------------------------- person mutations
    def break_person(self, persons, i):
        """One violation in persons[i] (of §2.1, §3.1, R1)."""
        r = self.r
        p = persons[i]
        if not isinstance(p, dict):
            return
        slots = p.get("slots")
        has_slots = isinstance(slots, list) and slots
        j = r.randrange(len(slots)) if has_slots else None
        s = slots[j] if has_slots and isinstance(slots[j], dict) else None
        kind = r.choice(("id", "id", "id", "retire_class", "slots", "person", "slotfield",
                         "slotfield", "slotfield", "slotfield", "rule", "rule", "deemed",
                         "dup", "dup", "unknown_city", "unknown_city", "before_period",
                         "before_period", "missing", "utf8", "utf8", "utf8"))
        pid = p.get("id") if isinstance(p.get("id"), str) else "110105198001010011"
        if kind == "utf8":
            # §2.1: invalid UTF-8 is invalid_argument at its path, never echoed
            v = r.choice(("id", "id", "city", "retire_class", "type", "category", "unknown_key"))
            if v == "id" or s is None:
                p["id"] = spoil_utf8(r, pid)
            elif v == "retire_class":
                p["retire_class"] = spoil_utf8(r, r.choice(R.RETIRE_CLASSES))
            elif v == "city":
                s["city"] = spoil_utf8(r, s.get("city") if isinstance(s.get("city"), str) else "110000")
            elif v == "unknown_key":  # unknown keys are ignored, whatever they hold
                s["note"] = spoil_utf8(r, "note")
            else:
                s[v] = spoil_utf8(r, s.get(v) if isinstance(s.get(v), str) else "pension")
        elif kind == "id":
            v = r.choice(("short", "long", "nondigit", "check", "lowerx", "date", "date",
                          "range", "int", "none", "absent", "space"))
            if v == "short":
                p["id"] = pid[:17]
            elif v == "long":
                p["id"] = pid + "1"
            elif v == "nondigit":
                k = r.randrange(17)
                p["id"] = pid[:k] + r.choice("aX-") + pid[k + 1:]
            elif v == "check":
                wrong = [c for c in "0123456789X" if c != check_char(pid[:17])]
                p["id"] = pid[:17] + r.choice(wrong)
            elif v == "lowerx":
                p["id"] = self.make_id(want_x=True).lower()
            elif v == "date":
                first = pid[:6] + r.choice(("19990230", "20230229", "19001301", "19800000",
                                            "20000431")) + pid[14:17]
                p["id"] = first + check_char(first)
            elif v == "range":
                first = pid[:6] + r.choice(("18991231", "21010101", "00000101")) + pid[14:17]
                p["id"] = first + check_char(first)
            elif v == "int":
                p["id"] = 110105198001010011
            elif v == "none":
                p["id"] = None
            elif v == "space":
                p["id"] = " " + pid[1:]
            else:
                p.pop("id", None)
        elif kind == "retire_class":
            p["retire_class"] = r.choice(("m55", "M60", "", 60, True))
        elif kind == "slots":
            v = r.choice(({}, "x", None, 5, "absent"))
            if v == "absent":
                p.pop("slots", None)
            else:
                p["slots"] = v
        elif kind == "person":
            persons[i] = r.choice((None, 5, "person", [p]))
        elif s is None:
            p["slots"] = [r.choice((5, [], None, "slot"))]
        elif kind == "slotfield":
            f = r.choice(("month", "city", "type", "category", "base", "paid", "paid_date",
                          "deemed"))
            bad = {
                "month": (202313, 202300, 194912, 210001, 0, 202301.0, "202301", True, -202301),
                "city": ("11000", "1100000", "11000a", 110000, "１１００００", "", None),
                "type": ("Pension", "dental", 1, "", None),
                "category": ("self", "", "Employee", 0),
                "base": (-1, 10 ** 10 + 1, 1.5, 1000.0, True, "100", 2 ** 64 - 1),
                "paid": (-1, 10 ** 10 + 1, 100.0, False, "0"),
                "paid_date": (20230230, 19000100, 21010101, 18991231, 20230101.0, -1, 202301,
                              "20230101"),
                "deemed": (1, 0, "true", [], {}),
            }[f]
            s[f] = r.choice(bad)
        elif kind == "missing":
            s.pop(r.choice(("month", "city", "type", "category", "base", "paid", "paid_date")), None)
        elif kind == "rule":
            if s.get("paid", 0) > 0 and self.chance(0.5):
                s["paid_date"] = 0
            elif self.chance(0.5):
                s["paid"] = 0
                s["paid_date"] = self.rand_date(2000, 2025)
                s["deemed"] = False
            else:
                s["paid"] = r.randint(1, 1000)
                s["paid_date"] = 0
                s["deemed"] = False
        elif kind == "deemed":
            s["deemed"] = True
            s[r.choice(("base", "paid", "paid_date"))] = r.randint(1, 100)
            if s["paid"] > 0 and s["paid_date"] == 0:
                s["paid_date"] = 20200101
        elif kind == "dup":
            d = copy.deepcopy(s)
            d["category"] = r.choice(R.CATEGORIES)
            d["base"] = r.randint(0, 1000000)
            d["paid"] = 0
            d["paid_date"] = 0
            d["deemed"] = False
            slots.insert(r.randint(j + 1, len(slots)), d)
        elif kind == "unknown_city":
            s["city"] = r.choice(CITY_UNKNOWN)
        elif kind == "before_period":
            pol = self.ref.policies.get(s.get("city"))
            if pol is not None:
                f = self.first_from(pol)
                if f > R.month_index(195001):
                    s["month"] = R.month_of_index(r.randint(max(R.month_index(195001), f - 30), f - 1))
                else:
                    s["city"] = r.choice(CITY_UNKNOWN)

    # ------------------------------------------------------------- requests
    def persons_for(self, method, D, md, n):
        r = self.r
        out = []
        for _ in range(n):
            x = r.random()
            if method == "housing.check" and x < 0.6:
                prof = "housing"
            elif method == "medical.status" and x < 0.6:
                prof = "medical"
            elif method == "retirement.check" and x < 0.6:
                prof = "career"
            elif x < 0.04:
                prof = "overflow"
            elif x < 0.07:
                prof = "edge"
            else:
                prof = None
            out.append(self.gen_person(D, md, prof))
        return out

    def compute_request(self):
        r = self.r
        method = r.choice(("arrears.compute",) * 7 + ("years.compute",) * 3 +
                          ("retirement.check",) * 3 + ("housing.check",) * 3 +
                          ("medical.status",) * 3)
        D = self.gen_as_of()
        md = R.date_month_index(D)
        n = r.choice((1, 1, 1, 2, 2, 3, 4, 6)) if not self.chance(0.03) else r.randint(10, 25)
        persons = self.persons_for(method, D, md, n)
        params = {"as_of": D, "persons": persons}
        if method == "arrears.compute":
            x = r.random()
            if x < 0.45:
                params["detail"] = True
            elif x < 0.6:
                params["detail"] = False
            elif x < 0.65:
                params["detail"] = None
        elif method == "retirement.check":
            x = r.random()
            p0 = persons[0]
            if x < 0.5:
                cls = p0.get("retire_class") or ("m60" if int(p0["id"][16]) % 2 else "f55")
                base_age, ref, step, cap = R.RETIRE_TABLE[cls]
                birth = R.month_index(int(p0["id"][6:12]))
                k = birth - R.month_index(ref)
                delay = 0 if k < 0 else min(cap, k // step + 1)
                stat = birth + base_age + delay
                orig = birth + base_age
                lo, hi = max(orig, stat - 36), stat + 36
                em = r.choice((lo, hi, lo - 1, hi + 1, r.randint(lo, hi), r.randint(lo, hi),
                               stat))
                emm = R.month_of_index(em)
                if R.valid_month(emm):
                    params["elect_month"] = emm
                    if self.chance(0.7):  # others' ranges differ: mostly one person
                        del persons[1:]
            elif x < 0.55:
                params["elect_month"] = None
            elif x < 0.6:
                params["elect_month"] = r.randint(195001, 209912) // 100 * 100 + r.randint(1, 12)
        elif method == "housing.check":
            home = r.choice(CITIES)
            for p in persons:
                for s in p["slots"]:
                    home = s["city"]
                    break
            params["city"] = home if self.chance(0.9) else r.choice(CITIES)
        if self.chance(0.15):
            self.break_person(persons, r.randrange(len(persons)))
            if self.chance(0.2):
                self.break_person(persons, r.randrange(len(persons)))
        if self.chance(0.01):  # an unknown key holding invalid UTF-8: ignored
            params["note"] = spoil_utf8(r, "note")
        if self.chance(0.06):
            self.break_request(method, params)
        if self.chance(0.3):
            self.revision_pins(params)
        if self.chance(0.1):
            items = list(params.items())
            r.shuffle(items)
            params = dict(items)
        return [0, self.next_msgid(), method, [params]]

    def break_request(self, method, params):
        r = self.r
        kind = r.choice(("as_of", "as_of", "selector", "selector", "ids", "scan", "persons",
                         "method_param"))
        if kind == "as_of":
            v = r.choice((20230229, 20230431, 18991231, 21010101, "2023-01-01", 20230101.0,
                          "absent", None, 0, True, 202301))
            if v == "absent":
                params.pop("as_of")
            else:
                params["as_of"] = v
        elif kind == "selector":
            v = r.choice(("ids", "scan", "none", "nil_persons_ids"))
            if v == "ids":
                params["ids"] = [self.make_id()]
            elif v == "scan":
                params["scan"] = {"after": None, "limit": 10}
            elif v == "none":
                params.pop("persons")
            else:
                params["persons"] = None
                params["ids"] = [self.make_id(), 5, "x", None]
        elif kind == "ids":
            params.pop("persons")
            params["ids"] = r.choice(([self.make_id(), self.make_id()], [], [5, "abc", None],
                                      "notalist", {"a": 1},
                                      [self.make_id(), spoil_utf8(r, self.make_id()), bad_utf8(b"\xff")]))
        elif kind == "scan":
            params.pop("persons")
            params["scan"] = r.choice((
                {"after": None, "limit": 10}, {"limit": 1}, {"after": self.make_id(), "limit": 100000},
                {"after": 5, "limit": 10}, {"limit": 0}, {"limit": 100001}, {"after": None},
                {"limit": 10.0}, [], "x", {"after": [], "limit": 5},
                {"after": scan_after_values(r, self.make_id)[0], "limit": r.choice((1, 10, 100000, 0))}))
        elif kind == "persons":
            params["persons"] = r.choice(({"a": 1}, "x", 5, [[]], [None]))
        else:
            if method == "arrears.compute":
                params["detail"] = r.choice((1, "yes", [], 0))
            elif method == "retirement.check":
                params["elect_month"] = r.choice((203013, 194912, 210001, 203001.0, "203001", True,
                                                  0))
            elif method == "housing.check":
                v = r.choice(("absent", "12345", 310000, "999999", None, "31000a",
                              spoil_utf8(r, "310000")))
                if v == "absent":
                    params.pop("city")
                else:
                    params["city"] = v
            else:
                params["as_of"] = r.choice((20231301, 2023))

    def policy_put(self, city, valid=True, notify=False):
        doc = self.gen_policy_doc(city) if valid else self.invalid_policy_doc(city)
        if notify:
            return [2, "policy.put", [{"policy": doc}]]
        return [0, self.next_msgid(), "policy.put", [{"policy": doc}]]

    def scan_request(self):
        """A compute request selecting by scan: without a store the page is
        empty; the point is scan.after's validation (§5.1)."""
        r = self.r
        method = r.choice(R.COMPUTE_METHODS)
        after, _ok = scan_after_values(r, self.make_id)
        scan = {"after": after, "limit": r.choice((1, 7, 100000, 100000, 0, 100001))}
        if self.chance(0.1):
            del scan["after"]
        params = {"as_of": self.gen_as_of(), "scan": scan}
        if method == "housing.check":
            params["city"] = r.choice(CITIES)
        return [0, self.next_msgid(), method, [params]]

    def utf8_request(self):
        """Strings outside persons that are not valid UTF-8 (§2.1)."""
        r = self.r
        x = r.random()
        if x < 0.3:  # method name: invalid_argument at "method"
            name = spoil_utf8(r, r.choice(("ping", "arrears.compute", "policy.get", "no.such")))
            if self.chance(0.2):
                return [2, name, [{}]]  # a notification: executed (an error), never answered
            return [0, self.next_msgid(), name, [{"as_of": 20240101, "persons": []}]]
        if x < 0.45:
            return [0, self.next_msgid(), "policy.get", [{"city": spoil_utf8(r, r.choice(CITIES))}]]
        doc = self.gen_policy_doc(CITY_UTF8)
        if x < 0.7:
            doc["name"] = spoil_utf8(r, r.choice(("Beijing", "上海市", "x")))
        elif x < 0.85:
            doc["periods"][-1].setdefault("rates", {})[spoil_utf8(r, r.choice(TYPES))] = {"employer": 1}
        else:
            doc["city"] = spoil_utf8(r, doc["city"])
        return [0, self.next_msgid(), "policy.put", [{"policy": doc}]]

    def misc_request(self):
        r = self.r
        x = r.random()
        if x < 0.12:
            return self.scan_request()
        if x < 0.22:
            return self.utf8_request()
        if x < 0.35:
            city = r.choice(CITIES + (CITY_WIDE, CITY_OVERFLOW) + CITY_UNKNOWN)
            if self.chance(0.1):
                city = r.choice(("11000", 110000, None, "11000x"))
            params = {"city": city}
            if self.chance(0.4):  # §3.4: a revision, existing or not, or malformed
                n = len(self.ref.revisions.get(city, ())) if isinstance(city, str) else 0
                params["revision"] = r.choice((1, max(n, 1), n + 1, 0, -2, "1", 1.0, None))
            if self.chance(0.3):
                return [0, self.next_msgid(), "policy.history", [{"city": city}]]
            return [0, self.next_msgid(), "policy.get", [params]]
        if x < 0.5:
            return [0, self.next_msgid(), "ping", r.choice(([{}], []))]
        if x < 0.6:
            return [0, self.next_msgid(), r.choice(("no.such", "Ping", "", "arrears")), [{}]]
        if x < 0.7:
            return [0, self.next_msgid(), r.choice(("arrears.compute", "policy.put")), []]
        return self.policy_put(r.choice(CITIES), valid=False)

    # ------------------------------------------------------------- the case list
    def cases(self, n):
        """Yield (messages, request) pairs; the messages end with the request."""
        r = self.r
        setup = []
        for city in CITIES + (CITY_WIDE, CITY_OVERFLOW):
            setup.append(self.policy_put(city, notify=True))
        # the first case carries the setup
        first = True
        for k in range(n):
            pre = []
            if first:
                pre = setup
                first = False
            elif self.chance(0.05):  # a city's policy replaced mid-stream (a new revision)
                pre = [self.policy_put(r.choice(CITIES), notify=True)]
            for m in pre:
                self.ref.handle(m)
            x = r.random()
            if k == 2:
                msg = [0, self.next_msgid(), "arrears.compute",
                       [{"as_of": 20240101, "persons": [{}] * (R.PERSONS_MAX + 1)}]]
            elif x < 0.86:
                msg = self.compute_request()
            elif x < 0.92:
                msg = self.policy_put(r.choice(CITIES), valid=self.chance(0.2))
            else:
                msg = self.misc_request()
            if msg[0] == 2:  # a notification: sent before a ping that is answered
                self.ref.handle(msg)
                pre = pre + [msg]
                msg = [0, self.next_msgid(), "ping", [{}]]
            pols = dict(self.ref.policies)  # in effect for this request
            resp = self.ref.handle(msg)
            yield pre, msg, resp, pols


# ===================================================================== comparison

def is_error_map(m):
    return isinstance(m, dict) and "code" in m and "name" in m and "message" in m


def compare(ref, got, path, diffs, allow_extra):
    if ref is R.ANY_INT:  # a stored_at time: any integer
        if type(got) is not int:
            diffs.append((path, ref, got))
        return
    if isinstance(ref, dict):
        if not isinstance(got, dict):
            diffs.append((path, ref, got))
            return
        err = is_error_map(ref)
        for k, v in ref.items():
            kp = "%s.%s" % (path, k)
            if err and k == "message":
                if not isinstance(got.get(k), str):
                    diffs.append((kp, "<str>", got.get(k, "<absent>")))
                continue
            if k not in got:
                diffs.append((kp, v, "<absent>"))
                continue
            compare(v, got[k], kp, diffs, allow_extra)
        for k, v in got.items():
            if k in ref:
                continue
            if err and k == "at":
                if v is not None:
                    diffs.append(("%s.at" % path, "<absent>", v))
                continue
            if not allow_extra or k == "items":
                diffs.append(("%s.%s" % (path, k), "<absent>", v))
        return
    if isinstance(ref, list):
        if not isinstance(got, list):
            diffs.append((path, ref, got))
            return
        if len(ref) != len(got):
            diffs.append((path + ".length", len(ref), len(got)))
        for i in range(min(len(ref), len(got))):
            compare(ref[i], got[i], "%s[%d]" % (path, i), diffs, allow_extra)
        return
    if type(ref) is not type(got) or ref != got:
        diffs.append((path, ref, got))


def compare_response(msg, ref, got, allow_extra):
    diffs = []
    if got is None:
        return [("response", "<a response>", "<none: stream ended>")]
    for path in invalid_strings(got, "response", []):
        diffs.append((path, "<never invalid UTF-8 (SPEC 2.1)>", "<invalid UTF-8 echoed>"))
    if not isinstance(got, list) or len(got) != 4:
        return [("response", "[1, msgid, error, result]", got)]
    if got[0] != 1:
        diffs.append(("[0]", 1, got[0]))
    if got[1] != ref[1]:
        diffs.append(("msgid", ref[1], got[1]))
    if (got[2] is None) != (ref[2] is None) or (got[3] is None) != (ref[3] is None):
        diffs.append(("error/result", summarize(ref[2:]), summarize(got[2:])))
        return diffs
    if ref[2] is not None:
        compare(ref[2], got[2], "error", diffs, allow_extra)
        return diffs
    res_ref, res_got = ref[3], got[3]
    if msg[2] == "ping" and isinstance(res_got, dict) and isinstance(res_got.get("version"), str):
        res_ref = dict(res_ref, version=res_got["version"])
    compare(res_ref, res_got, "result", diffs, allow_extra)
    return diffs


def summarize(x, limit=300):
    s = compact(x)
    return s if len(s) <= limit else s[:limit] + "...(%d chars)" % len(s)


def compact(x):
    s = json.dumps(x, separators=(",", ":"), ensure_ascii=False, default=repr)
    return s.encode("utf-8", "backslashreplace").decode("utf-8")  # invalid UTF-8 shows as \udcXX


# ===================================================================== running

def pack(msg):
    return msgpack.packb(msg, use_bin_type=True, unicode_errors="surrogateescape")


def pack_variant(obj, r, p=0.5):
    """obj as msgpack, the same value in another encoding: map keys shuffled
    (but in policy_revisions, whose pins are checked in map order, and in a
    policy document, whose warnings come in document order: there the order
    is part of the meaning), and (each with probability p) an integer, string, array or map header in
    a wider format than needed (uint8 as uint32, a positive fixint as int64,
    a fixstr as str16, ...). Appendix A: still the same payload."""
    out = bytearray()

    def header(n, small, fix, fmts):
        # fmts: [(code, struct, max)] widest last
        options = []
        if small is not None and n <= small:
            options.append(bytes([fix | n]))
        for code, st, mx in fmts:
            if n <= mx:
                options.append(bytes([code]) + struct.pack(st, n))
        out.extend(options[0] if r.random() >= p else r.choice(options))

    def integer(v):
        options = []
        if 0 <= v <= 127 or -32 <= v < 0:
            options.append(struct.pack(">b", v) if v < 0 else bytes([v]))
        if v >= 0:
            for code, st, mx in ((0xcc, ">B", 0xff), (0xcd, ">H", 0xffff), (0xce, ">I", 0xffffffff),
                                 (0xcf, ">Q", 0xffffffffffffffff)):
                if v <= mx:
                    options.append(bytes([code]) + struct.pack(st, v))
        for code, st, lo, hi in ((0xd0, ">b", -128, 127), (0xd1, ">h", -2 ** 15, 2 ** 15 - 1),
                                 (0xd2, ">i", -2 ** 31, 2 ** 31 - 1), (0xd3, ">q", -2 ** 63, 2 ** 63 - 1)):
            if lo <= v <= hi:
                options.append(bytes([code]) + struct.pack(st, v))
        out.extend(options[0] if r.random() >= p else r.choice(options))

    def w(o, ordered=False):
        t = type(o)
        if o is None:
            out.append(0xc0)
        elif t is bool:
            out.append(0xc3 if o else 0xc2)
        elif t is int:
            integer(o)
        elif t is float:
            out.extend(b"\xcb" + struct.pack(">d", o))
        elif t is str:
            b = o.encode("utf-8", "surrogateescape")
            header(len(b), 31, 0xa0, ((0xd9, ">B", 0xff), (0xda, ">H", 0xffff), (0xdb, ">I", 0xffffffff)))
            out.extend(b)
        elif t is bytes:
            header(len(o), None, 0, ((0xc4, ">B", 0xff), (0xc5, ">H", 0xffff), (0xc6, ">I", 0xffffffff)))
            out.extend(o)
        elif t is list or t is tuple:
            header(len(o), 15, 0x90, ((0xdc, ">H", 0xffff), (0xdd, ">I", 0xffffffff)))
            for x in o:
                w(x, ordered)
        elif t is dict:
            items = list(o.items())
            if not ordered:
                r.shuffle(items)
            header(len(items), 15, 0x80, ((0xde, ">H", 0xffff), (0xdf, ">I", 0xffffffff)))
            for k, v in items:
                w(k)
                w(v, ordered or k in ("policy_revisions", "policy"))
        else:
            out.extend(pack(o))

    w(obj)
    return bytes(out)


def invalid_strings(x, path, found):
    """Paths in a decoded answer holding a string that is not valid UTF-8
    (§2.1: never echoed back)."""
    if isinstance(x, str):
        if not R.is_text(x):
            found.append(path)
    elif isinstance(x, dict):
        for k, v in x.items():
            if isinstance(k, str) and not R.is_text(k):
                found.append(path + ".<key>")
            invalid_strings(v, "%s.%s" % (path, k), found)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            invalid_strings(v, "%s[%d]" % (path, i), found)
    return found


def run_eval(path, data):
    t0 = time.time()
    proc = subprocess.run([path, "eval"], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=EVAL_TIMEOUT_S)
    unp = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=0,
                           unicode_errors="surrogateescape")
    unp.feed(proc.stdout)
    out = []
    try:
        for m in unp:
            out.append(m)
    except Exception as e:  # undecodable output is a failure of its own
        out.append({"undecodable output": str(e)})
    return out, proc.returncode, proc.stderr, time.time() - t0


MALFORMED = [
    # (message or raw bytes, expected msgid or None when either 0 or the id is acceptable)
    ("hello", 0),
    (42, 0),
    ([0, 7, 5, []], 7),
    ([0, 7, "ping", {}], 7),
    ([0, 7, "ping", "params"], 7),
    ([0, 7, "ping", [5]], 7),
    ([0, 7, "arrears.compute", [[{"as_of": 20240101}]]], 7),
    ([0, -1, "ping", []], 0),
    ([0, 2 ** 32, "ping", []], 0),
    ([0, "7", "ping", []], 0),
    ([0, 7.0, "ping", []], 0),
    ([0, 7, "ping"], None),
    ([1, 7, None, None], None),
    ([0, 7, "ping", [], 0], None),
    ([2, "ping"], 0),
    ([2, 5, []], None),
    ([3, 7, "ping", []], None),
    (b"\xc1", 0),  # never-used msgpack byte: not msgpack at all
]


def malformed_case(path, k):
    bad, want_id = MALFORMED[k]
    ping1 = [0, 1, "ping", [{}]]
    ping3 = [0, 3, "ping", [{}]]
    raw = bad if isinstance(bad, bytes) else pack(bad)
    data = pack(ping1) + raw + pack(ping3)
    got, rc, err, _ = run_eval(path, data)
    diffs = []
    if rc is not None and rc < 0:
        diffs.append(("exit", "no signal", "signal %d" % -rc))
    if len(got) != 2:
        diffs.append(("responses", 2, len(got)))
    if got and not (isinstance(got[0], list) and len(got) >= 1 and got[0][:3] == [1, 1, None]):
        diffs.append(("ping response", "[1,1,nil,{pong}]", summarize(got[0])))
    if len(got) >= 2:
        m = got[1]
        if not (isinstance(m, list) and len(m) == 4 and m[0] == 1 and isinstance(m[2], dict)
                and m[2].get("code") == 1 and m[2].get("name") == "malformed" and m[3] is None):
            diffs.append(("malformed response", "[1,id,{code:1,name:malformed},nil]", summarize(m)))
        elif want_id is not None and m[1] != want_id:
            diffs.append(("malformed msgid", want_id, m[1]))
    # the reference must agree on its side too
    if not isinstance(bad, bytes):
        ev = R.Evaluator()
        rr = ev.handle_stream([ping1, bad, ping3])
        if len(rr) != 2 or rr[1][2]["code"] != 1 or (want_id is not None and rr[1][1] != want_id):
            diffs.append(("reference", "malformed", summarize(rr)))
    return bad, diffs


def collect_stats(stats, msg, resp):
    def bump(k):
        stats[k] = stats.get(k, 0) + 1
    method = msg[2] if isinstance(msg, list) and len(msg) > 2 else "?"
    if resp[2] is not None:
        bump("request error %s at %s" % (resp[2]["name"], resp[2].get("at")))
        return
    bump("ok " + str(method))
    res = resp[3]
    if not isinstance(res, dict) or "results" not in res:
        return
    for x in res["results"]:
        if "error" in x:
            at = x["error"].get("at", "")
            import re
            bump("person error %s at %s" % (x["error"]["name"], re.sub(r"\[\d+\]", "[]", at)
                                             if "[" in at else ("<city>" if at.isdigit() else at)))
            continue
        if method == "arrears.compute":
            bump("arrears persons")
            if x["months_owed"]:
                bump("arrears months_owed>0")
            if x["interest"]:
                bump("arrears interest>0")
            if x["late_fee"]:
                bump("arrears late_fee>0")
            if x["pending"]:
                bump("arrears pending>0")
            if x["expired_months"]:
                bump("arrears expired>0")
            for t, c in x["tiers"].items():
                if c:
                    bump("arrears tier " + t)
            for it in x.get("items", []):
                if it["expired"]:
                    bump("item expired (tier %s)" % it["tier"])
        elif method == "years.compute":
            if x["duplicates"]:
                bump("years duplicates")
            if any(v["deemed"] for v in x["by_type"].values()):
                bump("years deemed>0")
            if any(v["backpaid"] for v in x["by_type"].values()):
                bump("years backpaid>0")
        elif method == "retirement.check":
            bump("retirement eligible_now=%s" % x["eligible_now"])
            bump("retirement shortfall0=%s" % (x["shortfall"] == 0))
            if x["payable_arrears_months"]:
                bump("retirement payable_arrears>0")
        elif method == "housing.check":
            bump("housing eligible=%s" % x["eligible"])
            if x["eligible_from"] > x["window_to"]:
                bump("housing eligible_from later")
        elif method == "medical.status":
            bump("medical %s%s" % (x["status"], " resumes" if x["resumes"] else ""))


def main(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", default=os.path.join(HERE, "..", "build", "arrears"))
    ap.add_argument("--cases", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--show", type=int, default=3)
    ap.add_argument("--allow-extra", action="store_true")
    ap.add_argument("--stats", action="store_true")
    ap.add_argument("--repro", default=None)
    ap.add_argument("--reference-only", action="store_true")
    args = ap.parse_args(argv[1:])
    if msgpack is None:
        print("msgpack is missing: run with /usr/bin/python3 (python3-msgpack)")
        return 2
    if not args.reference_only and not os.access(args.eval, os.X_OK):
        print("no evaluator at %s" % args.eval)
        return 2

    t0 = time.time()
    n_malformed = 0 if args.cases < 50 else min(len(MALFORMED), max(1, args.cases // 100))
    n_stream = args.cases - n_malformed
    gen = Gen(args.seed)
    cases = []
    chunks = []
    vr = random.Random(args.seed * 7919 + 17)  # re-encodings; does not disturb the cases
    for pre, msg, resp, pols in gen.cases(n_stream):
        cases.append((pre, msg, resp, pols))
        for m in pre:
            chunks.append(pack(m))
        # a share of the requests in another encoding of the same value (keys in
        # another order, wider integer/string/array/map formats): same answers
        chunks.append(pack_variant(msg, vr) if vr.random() < 0.05 else pack(msg))
    data = b"".join(chunks)
    t_gen = time.time() - t0

    stats = {}
    if args.stats:
        for pre, msg, resp, _ in cases:
            collect_stats(stats, msg, resp)

    failed = []
    rc = 0
    t_eval = 0.0
    stderr = b""
    if args.reference_only:
        passed = len(cases) + n_malformed
    else:
        got, rc, stderr, t_eval = run_eval(args.eval, data)
        passed = 0
        for k, (pre, msg, resp, pols) in enumerate(cases):
            g = got[k] if k < len(got) else None
            diffs = compare_response(msg, resp, g, args.allow_extra)
            if diffs:
                failed.append((k, pre, msg, resp, g, pols, diffs))
            else:
                passed += 1
        if len(got) > len(cases):
            failed.append((len(cases), [], None, None, got[len(cases)], {},
                           [("extra responses", 0, len(got) - len(cases))]))
        for i in range(n_malformed):
            k = (args.seed + i) % len(MALFORMED)
            bad, diffs = malformed_case(args.eval, k)
            if diffs:
                failed.append(("malformed-%d" % k, [], bad, None, None, {}, diffs))
            else:
                passed += 1

    for f in failed[:args.show]:
        show_failure(f)
        if args.repro:
            write_repro(args.repro, f)
    if args.repro:
        for f in failed[args.show:]:
            write_repro(args.repro, f)
    if rc is not None and rc < 0:
        print("evaluator died with signal %d; stderr: %s" % (-rc, stderr[-500:]))
    if args.stats:
        for k in sorted(stats):
            print("  %6d  %s" % (stats[k], k))
    print("# seed %d, %d cases, %d bytes sent; generate+reference %.1fs, evaluator %.1fs"
          % (args.seed, args.cases, len(data), t_gen, t_eval), file=sys.stderr)
    print("differential: %d passed, %d failed" % (passed, len(failed)))
    return 0 if not failed else 1


def show_failure(f):
    k, pre, msg, ref, got, pols, diffs = f
    print("=" * 72)
    print("case %s: %d difference(s)" % (k, len(diffs)))
    for path, a, b in diffs[:12]:
        print("  %s: reference %s, evaluator %s" % (path, summarize(a, 200), summarize(b, 200)))
    if msg is None:
        print("  evaluator sent: %s" % summarize(got, 2000))
        return
    shown = msg
    rows = set()
    for path, _a, _b in diffs:
        if path.startswith("result.results["):
            rows.add(int(path[len("result.results["):].split("]")[0]))
    if isinstance(msg, list) and len(msg) == 4 and isinstance(msg[3], list) and msg[3] \
            and isinstance(msg[3][0], dict) and isinstance(msg[3][0].get("persons"), list) and rows:
        params = dict(msg[3][0])
        params["persons"] = {"(only rows %s of %d)" % (sorted(rows), len(params["persons"])):
                             [params["persons"][i] for i in sorted(rows)]}
        shown = [msg[0], msg[1], msg[2], [params]]
        ref = [ref[0], ref[1], ref[2], {"results": {str(i): ref[3]["results"][i] for i in sorted(rows)}}]
        if isinstance(got, list) and len(got) == 4 and isinstance(got[3], dict) \
                and isinstance(got[3].get("results"), list):
            gr = got[3]["results"]
            got = [got[0], got[1], got[2], {"results": {str(i): gr[i] if i < len(gr) else None
                                                        for i in sorted(rows)}}]
    if isinstance(shown, list) and len(shown) == 4 and isinstance(shown[3], list) and shown[3] \
            and isinstance(shown[3][0], dict) and isinstance(shown[3][0].get("persons"), list) \
            and len(shown[3][0]["persons"]) > 50:
        params = dict(shown[3][0])
        params["persons"] = "(%d persons)" % len(params["persons"])
        shown = [shown[0], shown[1], shown[2], [params]]
    print("  request:   %s" % summarize(shown, 3000))
    print("  reference: %s" % summarize(ref, 2000))
    print("  evaluator: %s" % summarize(got, 2000))
    cities = set()
    text = compact(shown)
    for c in pols:
        if '"%s"' % c in text:
            cities.add(c)
    for c in sorted(cities):
        print("  policy in effect %s: %s" % (c, compact(pols[c].to_doc())))


def write_repro(d, f):
    k, pre, msg, ref, got, pols, diffs = f
    if msg is None:
        return
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "case_%s.msgpack" % k)
    with open(path, "wb") as fh:
        if isinstance(msg, list):
            for c in sorted(pols):
                fh.write(pack([2, "policy.put", [{"policy": pols[c].to_doc()}]]))
            fh.write(pack(msg))
        else:
            fh.write(msg if isinstance(msg, bytes) else pack(msg))
    print("  repro: %s < %s" % ("arrears eval", path))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
