#!/usr/bin/python3
"""Independent Python reference of the arrears evaluator (SPEC.md).

Pure standard library. Written from the specification alone, to be compared
with the C evaluator by tests/test_differential.py and tests/test_examples.py.

    ev = Evaluator()
    ev.handle([0, 1, "ping", [{}]])  ->  [1, 1, None, {"pong": True, ...}]

handle() takes one decoded msgpack-RPC message and returns the response
([1, msgid, error, result]) or None for a notification. After a malformed
message it answers once and sets ev.closed; handle_stream() stops there.

Evaluator(store=True) also models `arrears eval --data DIR` on a store that
starts empty: `ids` and `scan` selectors, person.put/get/delete, payment.apply
(R13), withhold.run (R12) and idempotency records (Appendix A), for
tests/test_store.py.

Strings that are not valid UTF-8 (§2.1) are expected decoded with
unicode_errors="surrogateescape": they arrive as str holding lone surrogates,
and is_text() rejects them.

Run as a program it reads msgpack-RPC requests on stdin and writes the
responses on stdout (needs python3-msgpack), like `arrears eval`
(with --store, like `arrears eval --data` on an empty store).
"""

import datetime
import sys

VERSION = "reference-1"

TYPES = ("pension", "medical", "unemployment", "injury", "maternity")
TYPE_INDEX = {t: i for i, t in enumerate(TYPES)}
CATEGORIES = ("employee", "flexible")
CATEGORY_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
SHARES = ("employer", "individual", "flexible")
RETIRE_CLASSES = ("m60", "f55", "f50")

MONEY_MAX = 10 ** 10
RATE_MAX = 10 ** 6
DAILY_PPM_MAX = 10 ** 4
COUNT_MAX = 10 ** 6
AMOUNT_MAX = 1 << 53  # 9007199254740992 fen
PERSONS_MAX = 100000
SCAN_LIMIT_MAX = 100000
NAME_BYTES_MAX = 255
SOURCE_BYTES_MAX = 1024         # §3.4: a policy's source
PINS_MAX = 64                   # cities in one policy_revisions (too_large beyond)
MEMORY_REVISIONS_MAX = 1024     # revisions eval without --data keeps (too_large beyond)
WARNINGS_MAX = 16               # policy.put warnings listed; one more line counts the rest
WARNING_KEY_BYTES_MAX = 48      # a key echoed in a warning

E_MALFORMED = 1
E_UNKNOWN_METHOD = 2
E_INVALID = 3
E_NOT_FOUND = 4
E_CONFLICT = 5
E_TOO_LARGE = 6
E_OVERLOADED = 7
E_UNAUTHORIZED = 8
E_INTERNAL = 9
ERROR_NAMES = {
    1: "malformed", 2: "unknown_method", 3: "invalid_argument", 4: "not_found",
    5: "conflict", 6: "too_large", 7: "overloaded", 8: "unauthorized", 9: "internal",
}

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
DIGITS = frozenset("0123456789")

# Pre-reform retirement groups (R9): base age, reference birth month, step, cap.
RETIRE_TABLE = {
    "m60": (720, 196501, 4, 36),
    "f55": (660, 197001, 4, 36),
    "f50": (600, 197501, 2, 60),
}

DEFAULT_INTEREST_RATES = (
    (2016, 83100), (2017, 71200), (2018, 82900), (2019, 76100), (2020, 60400),
    (2021, 66900), (2022, 61200), (2023, 39700), (2024, 26200),
)


class RpcError(Exception):
    """An error answered to the client: code, optional at path."""

    def __init__(self, code, at=None, message=None):
        Exception.__init__(self, code, at)
        self.code = code
        self.at = at
        self.message = message or ERROR_NAMES[code]

    def to_map(self):
        err = {"code": self.code, "name": ERROR_NAMES[self.code], "message": self.message}
        if self.at is not None:
            err["at"] = self.at
        return err


def invalid(at, message="invalid argument"):
    return RpcError(E_INVALID, at, message)


class _Missing(object):
    def __repr__(self):
        return "MISSING"


MISSING = _Missing()


def field(m, key):
    """Value of key in map m; MISSING when absent or nil."""
    v = m.get(key, MISSING)
    if v is None:
        return MISSING
    return v


def is_int(x):
    return type(x) is int


def is_bool(x):
    return type(x) is bool


def is_str(x):
    return type(x) is str


def is_text(x):
    """A msgpack str holding valid UTF-8 (§2.1). Decoded with
    unicode_errors="surrogateescape", invalid bytes arrive as lone surrogates,
    which do not encode to UTF-8."""
    if type(x) is not str:
        return False
    try:
        x.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def echo_id(x):
    """The id a per-person result carries: the string as sent when it is a
    valid UTF-8 string, else nil (an invalid string is never echoed, §2.1)."""
    return x if is_text(x) else None


# ---------------------------------------------------------------- calendar

def leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def days_in_month(y, m):
    if m == 2 and leap(y):
        return 29
    return _MDAYS[m - 1]


def valid_month(x):
    return is_int(x) and 195001 <= x <= 209912 and 1 <= x % 100 <= 12


def valid_date(x):
    if not is_int(x) or not (19000101 <= x <= 21001231):
        return False
    y, m, d = x // 10000, x // 100 % 100, x % 100
    return 1 <= m <= 12 and 1 <= d <= days_in_month(y, m)


def month_index(yyyymm):
    return (yyyymm // 100) * 12 + yyyymm % 100 - 1


def month_of_index(i):
    return (i // 12) * 100 + i % 12 + 1


def date_month_index(yyyymmdd):
    return month_index(yyyymmdd // 100)


_ORD_CACHE = {}


def ordinal(yyyymmdd):
    o = _ORD_CACHE.get(yyyymmdd)
    if o is None:
        o = datetime.date(yyyymmdd // 10000, yyyymmdd // 100 % 100, yyyymmdd % 100).toordinal()
        _ORD_CACHE[yyyymmdd] = o
    return o


def date_of_ordinal(o):
    d = datetime.date.fromordinal(o)
    return d.year * 10000 + d.month * 100 + d.day


def rh(x, d):
    """Round half up of the non-negative quotient x / d (d even)."""
    return (x + d // 2) // d


def valid_city(x):
    return is_str(x) and len(x) == 6 and all(c in DIGITS for c in x)


def valid_id(x):
    if not is_str(x) or len(x) != 18:
        return False
    if not all(c in DIGITS for c in x[:17]):
        return False
    s = sum(int(x[i]) * ID_WEIGHTS[i] for i in range(17))
    if x[17] != ID_CHECK[s % 11]:
        return False
    return valid_date(int(x[6:14]))


def id_check_char(first17):
    s = sum(int(first17[i]) * ID_WEIGHTS[i] for i in range(17))
    return ID_CHECK[s % 11]


# ---------------------------------------------------------------- policy

class Policy(object):
    """A validated city policy with every default filled in."""

    __slots__ = ("city", "name", "source", "day", "month_offset", "periods", "period_from",
                 "interest_types", "interest_categories", "default_ppm", "interest_rates",
                 "late_daily_ppm", "late_categories", "cap_at_principal",
                 "direct_max", "verify_max", "legacy_before", "flexible_window",
                 "housing_types", "window_months", "required_months", "end_offset",
                 "backpay_counts", "grace_days", "withhold_order", "withhold_mode",
                 "_deadline_cache")

    def deadline(self, mi):
        """R3: deadline date (YYYYMMDD) of the month with index mi."""
        d = self._deadline_cache.get(mi)
        if d is None:
            t = mi + self.month_offset
            y, m = t // 12, t % 12 + 1
            d = y * 10000 + m * 100 + min(self.day, days_in_month(y, m))
            self._deadline_cache[mi] = d
        return d

    def rate_of_year(self, y):
        """R6 r(y)."""
        rates = self.interest_rates
        if not rates or y < rates[0][0]:
            return self.default_ppm
        r = rates[0][1]
        for year, ppm in rates:
            if year <= y:
                r = ppm
            else:
                break
        return r

    def period_of(self, mi):
        """R1: index of the last period with from <= month, or -1."""
        k = -1
        for i, f in enumerate(self.period_from):
            if f <= mi:
                k = i
            else:
                break
        return k

    def to_doc(self):
        periods = []
        for (f, bmin, bmax, rates) in self.periods:
            periods.append({
                "from": month_of_index(f), "base_min": bmin, "base_max": bmax,
                "rates": {t: {s: rates[t][s] for s in SHARES} for t in TYPES},
            })
        return {
            "city": self.city,
            "name": self.name,
            "source": self.source,
            "deadline": {"day": self.day, "month_offset": self.month_offset},
            "periods": periods,
            "interest": {
                "types": [t for t in TYPES if t in self.interest_types],
                "categories": [c for c in CATEGORIES if c in self.interest_categories],
                "default_ppm": self.default_ppm,
                "rates": [[y, r] for (y, r) in self.interest_rates],
            },
            "late_fee": {
                "daily_ppm": self.late_daily_ppm,
                "categories": [c for c in CATEGORIES if c in self.late_categories],
                "cap_at_principal": self.cap_at_principal,
            },
            "backpay": {
                "direct_max_months": self.direct_max,
                "verify_max_months": self.verify_max,
                "legacy_before": self.legacy_before,
                "flexible_window_months": self.flexible_window,
            },
            "housing": {
                "types": [t for t in TYPES if t in self.housing_types],
                "window_months": self.window_months,
                "required_months": self.required_months,
                "end_offset_months": self.end_offset,
                "backpay_counts": self.backpay_counts,
                "grace_days": self.grace_days,
            },
            "withhold": {"order": list(self.withhold_order), "mode": self.withhold_mode},
        }


def _int_in(v, lo, hi):
    return is_int(v) and lo <= v <= hi


def _opt_int(m, key, lo, hi, default, at):
    v = field(m, key)
    if v is MISSING:
        return default
    if not _int_in(v, lo, hi):
        raise invalid(at)
    return v


def _opt_bool(m, key, default, at):
    v = field(m, key)
    if v is MISSING:
        return default
    if not is_bool(v):
        raise invalid(at)
    return v


def _opt_names(m, key, known, default, at):
    """A list of names from `known`; returns them as a frozenset."""
    v = field(m, key)
    if v is MISSING:
        return frozenset(default)
    if type(v) is not list:
        raise invalid(at)
    for i, name in enumerate(v):
        if not is_str(name) or name not in known:
            raise invalid("%s[%d]" % (at, i))
    return frozenset(v)


def _opt_section(p, key, at):
    v = field(p, key)
    if v is MISSING:
        return {}
    if type(v) is not dict:
        raise invalid(at)
    return v


def optional_text(p, key, bytes_max):
    """policy.<key>: absent is "", else text of at most bytes_max UTF-8 bytes."""
    v = field(p, key)
    if v is MISSING:
        return ""
    if not is_text(v) or len(v.encode("utf-8")) > bytes_max:
        raise invalid("policy." + key)
    return v


def parse_policy(p):
    """Validate a §3.3 policy document; return a Policy or raise RpcError."""
    if type(p) is not dict:
        raise invalid("policy")
    pol = Policy()
    pol._deadline_cache = {}

    city = field(p, "city")
    if not valid_city(city):
        raise invalid("policy.city")
    pol.city = city

    pol.name = optional_text(p, "name", NAME_BYTES_MAX)
    pol.source = optional_text(p, "source", SOURCE_BYTES_MAX)

    dl = field(p, "deadline")
    if type(dl) is not dict:
        raise invalid("policy.deadline")
    day = field(dl, "day")
    if not _int_in(day, 1, 31):
        raise invalid("policy.deadline.day")
    pol.day = day
    pol.month_offset = _opt_int(dl, "month_offset", 0, 2, 0, "policy.deadline.month_offset")

    periods = field(p, "periods")
    if type(periods) is not list or not periods:
        raise invalid("policy.periods")
    pol.periods = []
    prev_from = None
    for k, per in enumerate(periods):
        at = "policy.periods[%d]" % k
        if type(per) is not dict:
            raise invalid(at)
        f = field(per, "from")
        if not valid_month(f):
            raise invalid(at + ".from")
        fi = month_index(f)
        if prev_from is not None and fi <= prev_from:
            raise invalid(at + ".from")
        prev_from = fi
        bmin = field(per, "base_min")
        if not _int_in(bmin, 0, MONEY_MAX):
            raise invalid(at + ".base_min")
        bmax = field(per, "base_max")
        if not _int_in(bmax, 0, MONEY_MAX):
            raise invalid(at + ".base_max")
        if bmin > bmax:
            raise invalid(at + ".base_min")
        rates = {t: {s: 0 for s in SHARES} for t in TYPES}
        rv = field(per, "rates")
        if rv is not MISSING:
            if type(rv) is not dict:
                raise invalid(at + ".rates")
            for key, val in rv.items():
                if is_str(key) and not is_text(key):
                    # a key that is not valid UTF-8 is never echoed in a path:
                    # the error is at the map that holds it
                    raise invalid(at + ".rates")
                rat = "%s.rates.%s" % (at, key)
                if not is_str(key) or key not in TYPE_INDEX:
                    raise invalid(rat)
                if val is None:
                    continue
                if type(val) is not dict:
                    raise invalid(rat)
                for s in SHARES:
                    rates[key][s] = _opt_int(val, s, 0, RATE_MAX, 0, rat + "." + s)
        pol.periods.append((fi, bmin, bmax, rates))
    pol.period_from = [x[0] for x in pol.periods]

    it = _opt_section(p, "interest", "policy.interest")
    pol.interest_types = _opt_names(it, "types", TYPE_INDEX, ["pension"], "policy.interest.types")
    pol.interest_categories = _opt_names(it, "categories", CATEGORY_INDEX, ["flexible"],
                                         "policy.interest.categories")
    pol.default_ppm = _opt_int(it, "default_ppm", 0, RATE_MAX, 25000, "policy.interest.default_ppm")
    rv = field(it, "rates")
    if rv is MISSING:
        pol.interest_rates = list(DEFAULT_INTEREST_RATES)
    else:
        if type(rv) is not list:
            raise invalid("policy.interest.rates")
        table = []
        for k, entry in enumerate(rv):
            at = "policy.interest.rates[%d]" % k
            if type(entry) is not list or len(entry) != 2:
                raise invalid(at)
            y, r = entry
            if not _int_in(y, 0, 9999) or not _int_in(r, 0, RATE_MAX):
                raise invalid(at)
            if table and y <= table[-1][0]:
                raise invalid(at)
            table.append((y, r))
        pol.interest_rates = table

    lf = _opt_section(p, "late_fee", "policy.late_fee")
    pol.late_daily_ppm = _opt_int(lf, "daily_ppm", 0, DAILY_PPM_MAX, 500, "policy.late_fee.daily_ppm")
    pol.late_categories = _opt_names(lf, "categories", CATEGORY_INDEX, ["employee"],
                                     "policy.late_fee.categories")
    pol.cap_at_principal = _opt_bool(lf, "cap_at_principal", False, "policy.late_fee.cap_at_principal")

    bp = _opt_section(p, "backpay", "policy.backpay")
    pol.direct_max = _opt_int(bp, "direct_max_months", 0, COUNT_MAX, 3, "policy.backpay.direct_max_months")
    pol.verify_max = _opt_int(bp, "verify_max_months", 0, COUNT_MAX, 60, "policy.backpay.verify_max_months")
    lb = field(bp, "legacy_before")
    if lb is MISSING:
        lb = 201107
    elif not valid_month(lb):
        raise invalid("policy.backpay.legacy_before")
    pol.legacy_before = lb
    pol.flexible_window = _opt_int(bp, "flexible_window_months", 0, COUNT_MAX, 0,
                                   "policy.backpay.flexible_window_months")

    hs = _opt_section(p, "housing", "policy.housing")
    pol.housing_types = _opt_names(hs, "types", TYPE_INDEX, ["pension"], "policy.housing.types")
    pol.window_months = _opt_int(hs, "window_months", 1, 600, 60, "policy.housing.window_months")
    pol.required_months = _opt_int(hs, "required_months", 0, COUNT_MAX, 60, "policy.housing.required_months")
    if pol.required_months > pol.window_months:
        raise invalid("policy.housing.required_months")
    pol.end_offset = _opt_int(hs, "end_offset_months", 0, 12, 1, "policy.housing.end_offset_months")
    pol.backpay_counts = _opt_bool(hs, "backpay_counts", False, "policy.housing.backpay_counts")
    pol.grace_days = _opt_int(hs, "grace_days", 0, COUNT_MAX, 0, "policy.housing.grace_days")

    wh = _opt_section(p, "withhold", "policy.withhold")
    ov = field(wh, "order")
    if ov is MISSING:
        order = ["pension", "medical", "unemployment"]
    else:
        if type(ov) is not list:
            raise invalid("policy.withhold.order")
        order = []
        for i, name in enumerate(ov):
            if not is_str(name) or name not in TYPE_INDEX:
                raise invalid("policy.withhold.order[%d]" % i)
            if name not in order:
                order.append(name)
    pol.withhold_order = order
    mode = field(wh, "mode")
    if mode is MISSING:
        mode = "stop"
    elif mode not in ("stop", "skip") or not is_str(mode):
        raise invalid("policy.withhold.mode")
    pol.withhold_mode = mode
    return pol


# ---------------------------------------------------------------- persons

class Slot(object):
    __slots__ = ("j", "month", "mi", "city", "type", "category", "base", "paid",
                 "paid_date", "deemed", "policy", "due_e", "due_i", "due", "deadline")


class Person(object):
    __slots__ = ("id", "retire_class", "slots")


_SLOT_CHECKS = (
    ("month", valid_month),
    ("city", valid_city),
    ("type", lambda v: is_str(v) and v in TYPE_INDEX),
    ("category", lambda v: is_str(v) and v in CATEGORY_INDEX),
    ("base", lambda v: _int_in(v, 0, MONEY_MAX)),
    ("paid", lambda v: _int_in(v, 0, MONEY_MAX)),
    ("paid_date", lambda v: v == 0 and is_int(v) or valid_date(v)),
)


def parse_person(x, at):
    """§2.1 and §3.1 structure checks, first error wins (Appendix A)."""
    if type(x) is not dict:
        raise invalid(at)
    p = Person()
    pid = field(x, "id")
    if not valid_id(pid):
        raise invalid(at + ".id")
    p.id = pid
    rc = field(x, "retire_class")
    if rc is MISSING:
        rc = "m60" if int(pid[16]) % 2 == 1 else "f55"
    elif not is_str(rc) or rc not in RETIRE_TABLE:
        raise invalid(at + ".retire_class")
    p.retire_class = rc
    slots = field(x, "slots")
    if type(slots) is not list:
        raise invalid(at + ".slots")
    seen = set()
    out = []
    for j, s in enumerate(slots):
        sat = "%s.slots[%d]" % (at, j)
        if type(s) is not dict:
            raise invalid(sat)
        vals = []
        for name, ok in _SLOT_CHECKS:
            v = s.get(name, MISSING)
            if v is MISSING or v is None or not ok(v):
                raise invalid(sat + "." + name)
            vals.append(v)
        deemed = field(s, "deemed")
        if deemed is MISSING:
            deemed = False
        elif not is_bool(deemed):
            raise invalid(sat + ".deemed")
        month, city, typ, cat, base, paid, paid_date = vals
        if paid > 0 and paid_date == 0:
            raise invalid(sat + ".paid_date")
        if paid == 0 and paid_date != 0:
            raise invalid(sat + ".paid_date")
        if deemed and (base != 0 or paid != 0 or paid_date != 0):
            raise invalid(sat + ".deemed")
        key = (month, city, typ)
        if key in seen:
            raise invalid(sat)
        seen.add(key)
        sl = Slot()
        sl.j = j
        sl.month = month
        sl.mi = month_index(month)
        sl.city = city
        sl.type = typ
        sl.category = cat
        sl.base = base
        sl.paid = paid
        sl.paid_date = paid_date
        sl.deemed = deemed
        out.append(sl)
    p.slots = out
    return p


class _AnyInt(object):
    """A value the reference cannot know (a stored_at time): any integer matches."""

    def __repr__(self):
        return "<any int>"


ANY_INT = _AnyInt()

_POLICY_KEYS = {
    "policy": ("city", "name", "source", "deadline", "periods", "interest", "late_fee", "backpay",
               "housing", "withhold"),
    "deadline": ("day", "month_offset"),
    "period": ("from", "base_min", "base_max", "rates"),
    "shares": SHARES,
    "interest": ("types", "categories", "default_ppm", "rates"),
    "late_fee": ("daily_ppm", "categories", "cap_at_principal"),
    "backpay": ("direct_max_months", "verify_max_months", "legacy_before", "flexible_window_months"),
    "housing": ("types", "window_months", "required_months", "end_offset_months", "backpay_counts",
                "grace_days"),
    "withhold": ("order", "mode"),
}


def policy_warnings(doc):
    """§3.4 (and the README): the keys of an accepted policy document that are
    ignored, in document order: each map's unknown keys, then its sections'."""
    out = []

    def check(m, known, path):
        if type(m) is not dict:
            return
        for k in m:
            if k in known:
                continue
            if is_text(k) and len(k.encode("utf-8")) <= WARNING_KEY_BYTES_MAX:
                out.append("%s.%s: unknown key, ignored" % (path, k))
            else:
                out.append("%s: a key that is not a short UTF-8 string, ignored" % path)

    def sub(m, key):
        v = field(m, key) if type(m) is dict else MISSING
        return v if type(v) is dict else None

    check(doc, _POLICY_KEYS["policy"], "policy")
    check(sub(doc, "deadline"), _POLICY_KEYS["deadline"], "policy.deadline")
    periods = field(doc, "periods")
    for k, per in enumerate(periods if type(periods) is list else []):
        check(per, _POLICY_KEYS["period"], "policy.periods[%d]" % k)
        rates = sub(per, "rates")
        for t in TYPES:
            check(sub(rates, t), SHARES, "policy.periods[%d].rates.%s" % (k, t))
    for sect in ("interest", "late_fee", "backpay", "housing", "withhold"):
        check(sub(doc, sect), _POLICY_KEYS[sect], "policy." + sect)
    if len(out) > WARNINGS_MAX:
        out = out[:WARNINGS_MAX] + ["%d more keys ignored" % (len(out) - WARNINGS_MAX)]
    return out


def resolve_person(p, policies, at):
    """R1 for every slot in order, then R2 (due) and R3 (deadline)."""
    for sl in p.slots:
        pol = policies.get(sl.city)
        if pol is None:
            raise RpcError(E_NOT_FOUND, sl.city, "no policy for city")
        k = pol.period_of(sl.mi)
        if k < 0:
            raise invalid("%s.slots[%d].month" % (at, sl.j), "month before the first period")
        _f, bmin, bmax, rates = pol.periods[k]
        sl.policy = pol
        if sl.deemed:
            sl.due_e = sl.due_i = sl.due = 0
        else:
            b = min(max(sl.base, bmin), bmax)
            r = rates[sl.type]
            if sl.category == "employee":
                sl.due_e = rh(b * r["employer"], 10 ** 6)
                sl.due_i = rh(b * r["individual"], 10 ** 6)
            else:
                sl.due_e = 0
                sl.due_i = rh(b * r["flexible"], 10 ** 6)
            sl.due = sl.due_e + sl.due_i
        sl.deadline = pol.deadline(sl.mi)


def chk(v):
    if v > AMOUNT_MAX:
        raise invalid("overflow", "amount exceeds 2^53 fen")
    return v


class AsOf(object):
    """Per-slot values as of date D (R4, R5, R8)."""
    __slots__ = ("sl", "paid", "future", "owed", "owed_i", "owed_e", "arrears", "pending",
                 "age", "expired", "counted", "on_time")


def as_of_view(p, D, md):
    views = []
    for sl in p.slots:
        v = AsOf()
        v.sl = sl
        v.paid = sl.paid if sl.paid_date <= D else 0
        v.future = sl.mi > md
        v.owed = max(0, sl.due - v.paid)
        v.owed_i = max(0, sl.due_i - v.paid)
        v.owed_e = v.owed - v.owed_i
        v.arrears = v.owed > 0 and not v.future and D > sl.deadline
        v.pending = v.owed > 0 and not v.future and D <= sl.deadline
        v.age = md - sl.mi
        pol = sl.policy
        v.expired = (v.arrears and sl.category == "flexible" and pol.flexible_window > 0
                     and v.age > pol.flexible_window)
        v.counted = not v.future and (sl.deemed or (sl.due > 0 and v.paid >= sl.due))
        v.on_time = v.counted and not sl.deemed and sl.paid_date <= sl.deadline
        views.append(v)
    return views


def tier_of(v, md):
    sl = v.sl
    pol = sl.policy
    if sl.month < pol.legacy_before:
        return "legacy"
    if v.age <= pol.direct_max:
        return "direct"
    if v.age <= pol.verify_max:
        return "verify"
    return "approval"


def interest_of(v, md):
    """R6, every balance step checked against 2^53."""
    sl = v.sl
    owed = v.owed
    if md - sl.mi <= 0:
        return 0
    pol = sl.policy
    Y, mi = sl.mi // 12, sl.mi % 12 + 1
    Yd, mdm = md // 12, md % 12 + 1
    B = owed
    if Yd == Y:
        B = chk(B + rh(B * pol.rate_of_year(Y) * (mdm - mi), 12 * 10 ** 6))
    else:
        B = chk(B + rh(B * pol.rate_of_year(Y) * (12 - mi), 12 * 10 ** 6))
        for y in range(Y + 1, Yd):
            B = chk(B + rh(B * pol.rate_of_year(y), 10 ** 6))
        B = chk(B + rh(B * pol.rate_of_year(Yd) * mdm, 12 * 10 ** 6))
    return B - owed


def late_fee_of(v, D):
    """R7."""
    sl = v.sl
    pol = sl.policy
    days = ordinal(D) - ordinal(sl.deadline)
    fee = chk(rh(v.owed * pol.late_daily_ppm * days, 10 ** 6))
    if pol.cap_at_principal:
        fee = min(fee, v.owed)
    return fee


# ---------------------------------------------------------------- methods

def compute_arrears(p, D, md, detail):
    views = as_of_view(p, D, md)
    months = set()
    principal = interest = late = pending = expired_principal = 0
    expired_months = set()
    by_type = {}
    tiers = {"direct": 0, "verify": 0, "approval": 0, "legacy": 0}
    items = []
    for v in views:
        sl = v.sl
        chk(sl.due)
        if v.pending:
            pending = chk(pending + v.owed)
        if not v.arrears:
            continue
        tier = tier_of(v, md)
        pol = sl.policy
        if v.expired:
            expired_months.add(sl.mi)
            expired_principal = chk(expired_principal + v.owed)
            it = fee = 0
        else:
            if sl.type in pol.interest_types and sl.category in pol.interest_categories:
                it = interest_of(v, md)
            else:
                it = 0
            if sl.category in pol.late_categories:
                fee = late_fee_of(v, D)
            else:
                fee = 0
            months.add(sl.mi)
            principal = chk(principal + v.owed)
            interest = chk(interest + it)
            late = chk(late + fee)
            tiers[tier] += 1
            bt = by_type.get(sl.type)
            if bt is None:
                bt = by_type[sl.type] = [set(), 0, 0, 0]
            bt[0].add(sl.mi)
            bt[1] = chk(bt[1] + v.owed)
            bt[2] = chk(bt[2] + it)
            bt[3] = chk(bt[3] + fee)
        if detail:
            items.append(((sl.mi, sl.city, TYPE_INDEX[sl.type]), {
                "month": sl.month, "city": sl.city, "type": sl.type, "category": sl.category,
                "due": sl.due, "paid": v.paid, "owed": v.owed, "owed_employer": v.owed_e,
                "owed_individual": v.owed_i, "interest": it, "late_fee": fee,
                "deadline": sl.deadline, "tier": tier, "expired": v.expired,
            }))
    total = chk(chk(principal + interest) + late)
    res = {
        "id": p.id,
        "months_owed": len(months),
        "principal": principal,
        "interest": interest,
        "late_fee": late,
        "total": total,
        "pending": pending,
        "expired_months": len(expired_months),
        "expired_principal": expired_principal,
        "first_month": month_of_index(min(months)) if months else None,
        "last_month": month_of_index(max(months)) if months else None,
        "by_type": {t: {"months": len(by_type[t][0]), "principal": by_type[t][1],
                        "interest": by_type[t][2], "late_fee": by_type[t][3]}
                    for t in TYPES if t in by_type},
        "tiers": tiers,
    }
    if detail:
        items.sort(key=lambda x: x[0])
        res["items"] = [x[1] for x in items]
    return res


def counted_by_type(views):
    """R8: per type, month index -> [on_time?, backpaid?, cities of non-deemed counts]."""
    out = {t: {} for t in TYPES}
    for v in views:
        if not v.counted:
            continue
        sl = v.sl
        e = out[sl.type].get(sl.mi)
        if e is None:
            e = out[sl.type][sl.mi] = [False, False, set()]
        if not sl.deemed:
            if v.on_time:
                e[0] = True
            else:
                e[1] = True
            e[2].add(sl.city)
    return out


def compute_years(p, D, md):
    views = as_of_view(p, D, md)
    cbt = counted_by_type(views)
    by_type = {}
    dups = []
    for t in TYPES:
        months = cbt[t]
        on_time = sum(1 for e in months.values() if e[0])
        backpaid = sum(1 for e in months.values() if not e[0] and e[1])
        deemed = sum(1 for e in months.values() if not e[0] and not e[1])
        n = len(months)
        by_type[t] = {"months": n, "on_time": on_time, "backpaid": backpaid, "deemed": deemed,
                      "years": n // 12, "rem_months": n % 12}
        for mi, e in months.items():
            if len(e[2]) >= 2:
                dups.append((mi, TYPE_INDEX[t], t, sorted(e[2])))
    dups.sort(key=lambda x: (x[0], x[1]))
    return {"id": p.id, "by_type": by_type,
            "duplicates": [{"month": month_of_index(mi), "type": t, "cities": c}
                           for (mi, _ti, t, c) in dups]}


def required_months_for(retire):
    y = retire // 100
    if y <= 2029:
        return 180
    return min(240, 180 + 6 * (y - 2029))


def compute_retirement(p, D, md, elect_month):
    base_age, ref, step, cap = RETIRE_TABLE[p.retire_class]
    birth = month_index(int(p.id[6:12]))
    k = birth - month_index(ref)
    delay = 0 if k < 0 else min(cap, k // step + 1)
    statutory = birth + base_age + delay
    original = birth + base_age
    if elect_month is not None:
        em = month_index(elect_month)
        if not (max(original, statutory - 36) <= em <= statutory + 36):
            raise invalid("elect_month", "elect_month outside the allowed range")
        retire = em
    else:
        retire = statutory
    required = required_months_for(month_of_index(retire))
    views = as_of_view(p, D, md)
    counted = set(v.sl.mi for v in views if v.counted and v.sl.type == "pension")
    payable = set(v.sl.mi for v in views
                  if v.arrears and not v.expired and v.sl.type == "pension" and v.sl.mi not in counted)
    shortfall = max(0, required - len(counted))
    if shortfall == 0:
        eligible_from = retire
    else:
        eligible_from = max(retire, md + shortfall)
    return {
        "id": p.id,
        "class": p.retire_class,
        "birth_month": month_of_index(birth),
        "original_month": month_of_index(original),
        "statutory_month": month_of_index(statutory),
        "retire_month": month_of_index(retire),
        "required_months": required,
        "counted_months": len(counted),
        "shortfall": shortfall,
        "payable_arrears_months": len(payable),
        "eligible_now": md >= retire and shortfall == 0,
        "eligible_from": month_of_index(eligible_from),
    }


def compute_housing(p, D, md, pol):
    views = as_of_view(p, D, md)
    types = pol.housing_types
    W, R, off = pol.window_months, pol.required_months, pol.end_offset
    ordD = ordinal(D)
    # per type: months with a counted, non-deemed slot of the city that counts for housing
    ok = {t: set() for t in types}
    for v in views:
        sl = v.sl
        if sl.city != pol.city or sl.type not in ok or not v.counted or sl.deemed:
            continue
        if pol.backpay_counts or ordinal(sl.paid_date) <= ordinal(sl.deadline) + pol.grace_days:
            ok[sl.type].add(sl.mi)

    def q_asof(mi):
        for t in types:
            if mi not in ok[t]:
                return False
        return True

    e = md - off
    lo = e - W + 1
    window = range(lo, e + 1)
    missing = [mi for mi in window if not q_asof(mi)]
    qualifying = W - len(missing)
    q_now = q_asof(md) or pol.backpay_counts or ordD <= ordinal(pol.deadline(md)) + pol.grace_days

    def q_hyp(mi):
        if mi < md:
            return q_asof(mi)
        if mi == md:
            return q_now
        return True

    # Windows ending te = t - off for t = md, md + 1, ...; once a window starts
    # after month(D) every month in it qualifies, so the walk ends by then.
    t = md
    te = t - off
    n = sum(1 for mi in range(te - W + 1, te + 1) if q_hyp(mi))
    while n < R:
        t += 1
        te = t - off
        n += (1 if q_hyp(te) else 0) - (1 if q_hyp(te - W) else 0)
    return {
        "id": p.id, "city": pol.city,
        "window_from": month_of_index(lo), "window_to": month_of_index(e),
        "qualifying": qualifying, "required": R, "eligible": qualifying >= R,
        "missing": [month_of_index(mi) for mi in missing],
        "eligible_from": month_of_index(t),
    }


def compute_medical(p, D, md):
    views = as_of_view(p, D, md)
    med = [v for v in views if v.sl.type == "medical"]
    status = None
    since = None
    resumes = None
    susp = [v.sl.mi + 1 for v in med if v.arrears and not v.expired and v.sl.mi + 1 <= md]
    if susp:
        status = "suspended"
        since = min(susp)
    else:
        back = [v.sl.mi + 1 for v in med
                if v.counted and not v.sl.deemed and not v.on_time
                and v.sl.paid_date == D and v.sl.mi + 1 <= md]
        if back:
            status = "suspended"
            since = min(back)
            resumes = date_of_ordinal(ordinal(D) + 1)
        elif not any(v.sl.mi <= md for v in med):
            status = "none"
        else:
            status = "active"
    arrears_months = len(set(v.sl.mi for v in med if v.arrears and not v.expired))
    return {"id": p.id, "status": status,
            "suspended_since": month_of_index(since) if since is not None else None,
            "resumes": resumes, "arrears_months": arrears_months}


COMPUTE_METHODS = ("arrears.compute", "years.compute", "retirement.check",
                   "housing.check", "medical.status")
WRITE_METHODS = ("person.put", "person.get", "person.delete", "payment.apply", "withhold.run")
IDEM_KEY_MAX = 255  # bytes (the project's decision)

# Appendix A: a lookup id (ids[i], items[i].id, accounts[i].id) that is a
# string but not a valid resident id is invalid_argument there (before the
# store is asked); False restores the older reading (not_found for any string).
STRICT_ID_LOOKUP = True


def valid_scan_after(a):
    """§5.1: a full id or an id prefix: 1..18 characters, digits, the 18th may be X."""
    if not is_text(a) or not (1 <= len(a) <= 18):
        return False
    if not all(c in DIGITS for c in a[:17]):
        return False
    return len(a) < 18 or a[17] in DIGITS or a[17] == "X"


def canon(v):
    """The value of a decoded msgpack object, as a hashable: what Appendix A's
    idempotency payload compares (key order and integer widths do not show)."""
    t = type(v)
    if t is dict:
        return ("m", frozenset((canon(k), canon(x)) for k, x in v.items()))
    if t is list or t is tuple:
        return ("a", tuple(canon(x) for x in v))
    if t is bool:
        return ("b", v)
    if t is int:
        return ("i", v)
    if t is float:
        return ("f", v)
    if t is str:
        return ("s", v)
    if t is bytes:
        return ("y", v)
    if v is None:
        return ("n",)
    return ("x", repr(v))


def store_order(s):
    """Stored slots: by canonical type, city, month (as person.get returns them)."""
    return (TYPE_INDEX[s["type"]], s["city"], s["month"])


class StoredPerson(object):
    __slots__ = ("id", "retire_class", "slots")  # retire_class None unless given

    def to_doc(self):
        d = {"id": self.id}
        if self.retire_class is not None:
            d["retire_class"] = self.retire_class
        d["slots"] = [dict(s) for s in self.slots]
        return d

    def person(self):
        """A Person (slots indexed in store order) for the compute rules."""
        p = Person()
        p.id = self.id
        rc = self.retire_class
        if rc is None:
            rc = "m60" if int(self.id[16]) % 2 == 1 else "f55"
        p.retire_class = rc
        out = []
        for j, s in enumerate(self.slots):
            sl = Slot()
            sl.j = j
            sl.month = s["month"]
            sl.mi = month_index(s["month"])
            sl.city = s["city"]
            sl.type = s["type"]
            sl.category = s["category"]
            sl.base = s["base"]
            sl.paid = s["paid"]
            sl.paid_date = s["paid_date"]
            sl.deemed = s["deemed"]
            out.append(sl)
        p.slots = out
        return p


class Evaluator(object):
    """The evaluator's semantics: one decoded message in, one response out.

    Evaluator() is `arrears eval` without a store: `ids` are all unknown, a
    `scan` page is empty and the write methods are unknown. Evaluator(store=True)
    models `eval --data DIR` on an empty store: persons, payments, withholding
    and idempotency records (§5.1, R12, R13, Appendix A)."""

    def __init__(self, store=False):
        self.policies = {}   # city -> latest Policy
        self.revisions = {}  # city -> [Policy, ...]: revision n at index n - 1 (§3.4)
        self.revision_count = 0
        self.closed = False
        self.store = store
        self.persons = {}  # id -> StoredPerson
        self.idem = {}     # key -> (payload, result)

    # -- framing
    def handle(self, msg):
        if self.closed:
            return None
        if type(msg) is list and len(msg) == 4 and is_int(msg[0]) and msg[0] == 0:
            msgid = msg[1]
            if not is_int(msgid) or not (0 <= msgid <= 0xFFFFFFFF):
                return self._malformed(0)
            if not is_str(msg[2]) or not self._params_ok(msg[3]):
                return self._malformed(msgid)
            err, res = self._call(msg[2], msg[3])
            return [1, msgid, err, res]
        if type(msg) is list and len(msg) == 3 and is_int(msg[0]) and msg[0] == 2:
            if not is_str(msg[1]) or not self._params_ok(msg[2]):
                return self._malformed(0)
            self._call(msg[1], msg[2])
            return None
        return self._malformed(0)

    def handle_stream(self, msgs):
        out = []
        for m in msgs:
            r = self.handle(m)
            if r is not None:
                out.append(r)
            if self.closed:
                break
        return out

    def _malformed(self, msgid):
        self.closed = True
        return [1, msgid, RpcError(E_MALFORMED, None, "not a msgpack-RPC request").to_map(), None]

    @staticmethod
    def _params_ok(params):
        # [] counts as [{}]; the first element must be a map, later ones are ignored
        return type(params) is list and (len(params) == 0 or type(params[0]) is dict)

    def _call(self, method, params):
        try:
            p = params[0] if params else {}
            if not is_text(method):
                # §2.1: a method name that is not valid UTF-8 is a string that is
                # not valid: invalid_argument at "method" (not echoed, not unknown_method)
                raise invalid("method", "method name is not valid UTF-8")
            return None, self._dispatch(method, p)
        except RpcError as e:
            return e.to_map(), None

    def _dispatch(self, method, p):
        if method == "ping":
            return {"pong": True, "version": VERSION}
        if method == "policy.put":
            doc = field(p, "policy")
            pol = parse_policy(doc)
            warnings = policy_warnings(doc)
            revs = self.revisions.setdefault(pol.city, [])
            if revs and revs[-1].to_doc() == pol.to_doc():
                # equal to the latest once defaults are filled in: nothing stored
                return {"ok": True, "revision": len(revs), "warnings": warnings}
            if not self.store and self.revision_count == MEMORY_REVISIONS_MAX:
                raise RpcError(E_TOO_LARGE, "policy.city", "too many revisions in memory")
            revs.append(pol)
            self.revision_count += 1
            self.policies[pol.city] = pol
            return {"ok": True, "revision": len(revs), "warnings": warnings}
        if method == "policy.get":
            city = field(p, "city")
            if not valid_city(city):
                raise invalid("city")
            rev = field(p, "revision")
            if rev is not MISSING and not (is_int(rev) and rev >= 1):
                raise invalid("revision")
            revs = self.revisions.get(city)
            if not revs:
                # Appendix A: a city without a policy is not_found at the city code.
                raise RpcError(E_NOT_FOUND, city, "no policy for city")
            if rev is MISSING:
                rev = len(revs)
            if rev > len(revs):
                raise RpcError(E_NOT_FOUND, "revision", "no such revision")
            return {"policy": revs[rev - 1].to_doc(), "revision": rev, "stored_at": ANY_INT}
        if method == "policy.history":
            city = field(p, "city")
            if not valid_city(city):
                raise invalid("city")
            revs = self.revisions.get(city)
            if not revs:
                raise RpcError(E_NOT_FOUND, city, "no policy for city")
            return {"revisions": [{"revision": n + 1, "stored_at": ANY_INT, "name": pol.name,
                                   "source": pol.source} for n, pol in enumerate(revs)]}
        if method in COMPUTE_METHODS:
            return self._compute(method, p)
        if method == "person.put":
            return self._person_put(method, p)
        if method == "person.get":
            return self._person_get(p)
        if method == "person.delete":
            return self._person_delete(method, p)
        if method == "payment.apply":
            return self._payment_apply(method, p)
        if method == "withhold.run":
            return self._withhold_run(method, p)
        raise RpcError(E_UNKNOWN_METHOD, None, "unknown method")

    # -- store helpers
    def _store_required(self):
        if not self.store:
            raise RpcError(E_UNKNOWN_METHOD, None, "this method needs a store")

    @staticmethod
    def _idem_key(p, required):
        v = field(p, "idem")
        if v is MISSING:
            if required:
                raise invalid("idem", "idem key required")
            return None
        if not is_text(v) or not (1 <= len(v.encode("utf-8")) <= IDEM_KEY_MAX):
            raise invalid("idem", "idem must be a UTF-8 string of 1..255 bytes")
        return v

    def _replayed(self, key, method, p):
        """The recorded answer for a repeated key, conflict for another payload,
        None for a new key. Checked after the request-level checks."""
        if key is None:
            return None
        rec = self.idem.get(key)
        if rec is None:
            return None
        if rec[0] != (method, canon(p)):
            raise RpcError(E_CONFLICT, "idem", "idempotency key reused with another payload")
        return copy_result(rec[1])

    def _record(self, key, method, p, result):
        if key is not None:
            self.idem[key] = ((method, canon(p)), copy_result(result))
        return result

    @staticmethod
    def _list_param(p, key):
        v = field(p, key)
        if type(v) is not list:
            raise invalid(key, "must be an array")
        if len(v) > PERSONS_MAX:
            raise RpcError(E_TOO_LARGE, key, "more than 100000 entries")
        return v

    def _lookup(self, x, at):
        """A stored person by id at path `at` (Appendix A)."""
        if not is_text(x):
            raise invalid(at, "id must be a string")
        if STRICT_ID_LOOKUP and not valid_id(x):
            raise invalid(at, "not a valid resident id")
        sp = self.persons.get(x) if self.store else None
        if sp is None:
            raise RpcError(E_NOT_FOUND, at, "no such person")
        return sp

    @staticmethod
    def _valid_id_param(p):
        pid = field(p, "id")
        if not valid_id(pid):
            raise invalid("id", "id must be a valid resident id")
        return pid

    # -- write methods
    def _person_put(self, method, p):
        persons = self._list_param(p, "persons")
        key = self._idem_key(p, False)
        self._store_required()
        rep = self._replayed(key, method, p)
        if rep is not None:
            return rep
        results = []
        for i, x in enumerate(persons):
            try:
                person = parse_person(x, "persons[%d]" % i)
            except RpcError as e:
                pid = x.get("id") if type(x) is dict else None
                results.append({"id": echo_id(pid), "error": e.to_map()})
                continue
            sp = StoredPerson()
            sp.id = person.id
            rc = field(x, "retire_class")
            sp.retire_class = None if rc is MISSING else rc
            sp.slots = sorted(({"month": sl.month, "city": sl.city, "type": sl.type,
                                "category": sl.category, "base": sl.base, "paid": sl.paid,
                                "paid_date": sl.paid_date, "deemed": sl.deemed}
                               for sl in person.slots), key=store_order)
            self.persons[sp.id] = sp
            results.append({"id": sp.id, "ok": True})
        return self._record(key, method, p, {"results": results})

    def _person_get(self, p):
        pid = self._valid_id_param(p)
        self._store_required()
        sp = self.persons.get(pid)
        if sp is None:
            raise RpcError(E_NOT_FOUND, "id", "no such person")
        return {"person": sp.to_doc()}

    def _person_delete(self, method, p):
        pid = self._valid_id_param(p)
        key = self._idem_key(p, False)
        self._store_required()
        rep = self._replayed(key, method, p)
        if rep is not None:
            return rep
        if pid not in self.persons:
            raise RpcError(E_NOT_FOUND, "id", "no such person")  # not recorded
        del self.persons[pid]
        return self._record(key, method, p, {"ok": True})

    def _payment_apply(self, method, p):
        key = self._idem_key(p, True)
        items = self._list_param(p, "items")
        self._store_required()
        rep = self._replayed(key, method, p)
        if rep is not None:
            return rep
        results = []
        for i, it in enumerate(items):
            try:
                self._payment_item(it, i)
                results.append({"ok": True})
            except RpcError as e:
                results.append({"error": e.to_map()})
        return self._record(key, method, p, {"results": results})

    def _payment_item(self, it, i):
        at = "items[%d]" % i
        if type(it) is not dict:
            raise invalid(at, "item must be a map")
        pid = field(it, "id")
        if not is_text(pid):
            raise invalid(at + ".id", "id must be a string")
        month = field(it, "month")
        if not valid_month(month):
            raise invalid(at + ".month")
        city = field(it, "city")
        if not valid_city(city):
            raise invalid(at + ".city")
        typ = field(it, "type")
        if not is_str(typ) or typ not in TYPE_INDEX:
            raise invalid(at + ".type")
        amount = field(it, "amount")
        if not _int_in(amount, 1, MONEY_MAX):
            raise invalid(at + ".amount")
        date = field(it, "date")
        if not valid_date(date):
            raise invalid(at + ".date")
        sp = self._lookup(pid, at + ".id")
        for s in sp.slots:
            if s["month"] == month and s["city"] == city and s["type"] == typ:
                break
        else:
            raise RpcError(E_NOT_FOUND, at, "no such slot")
        if s["deemed"]:
            raise invalid(at, "payment into a deemed slot")
        if s["paid"] + amount > MONEY_MAX:
            # R13: paid stays a valid money field (0..10^10)
            raise invalid(at + ".amount", "paid would pass 10^10 fen")
        s["paid"] += amount
        s["paid_date"] = max(s["paid_date"], date)

    def _withhold_run(self, method, p):
        key = self._idem_key(p, True)
        M = field(p, "month")
        if not valid_month(M):
            raise invalid("month")
        D = field(p, "date")
        if not valid_date(D):
            raise invalid("date")
        if month_index(M) > date_month_index(D):
            raise invalid("month", "month is after the date's month")
        accounts = self._list_param(p, "accounts")
        pins = self._pins(p)
        self._store_required()
        rep = self._replayed(key, method, p)
        if rep is not None:
            return rep
        view = self._view(pins)
        self._view_policies = {c: v[1] for c, v in view.items()}
        self._used = set()
        results = []
        for i, a in enumerate(accounts):
            at = "accounts[%d]" % i
            pid = None
            try:
                if type(a) is not dict:
                    raise invalid(at, "account must be a map")
                pid = field(a, "id")
                if not is_text(pid):
                    raise invalid(at + ".id", "id must be a string")
                bal = field(a, "balance")
                if not _int_in(bal, 0, MONEY_MAX):
                    raise invalid(at + ".balance", "balance must be 0..10^10 fen")
                sp = self._lookup(pid, at + ".id")
                results.append(self._withhold_one(sp, at, M, D, bal))
            except RpcError as e:
                results.append({"id": echo_id(pid), "error": e.to_map()})
        return self._record(key, method, p, {"results": results,
                                             "policies": self._policies(view, self._used)})

    def _withhold_one(self, sp, at, M, D, balance):
        """R12 for one person; pays into sp's stored slots."""
        person = sp.person()
        self._used.update(sl.city for sl in person.slots if sl.city in self._view_policies)
        resolve_person(person, self._view_policies, at)
        md = date_month_index(D)
        mi = month_index(M)
        lines = []
        for sl in person.slots:
            if sl.mi != mi:
                continue
            s = sp.slots[sl.j]
            owed = sl.due - s["paid"]  # every payment recorded so far
            if owed <= 0:
                continue
            pol = sl.policy
            # R5 as of the date: a flexible arrears slot past the window
            if (sl.category == "flexible" and pol.flexible_window > 0
                    and md - sl.mi > pol.flexible_window and D > sl.deadline):
                continue
            order = pol.withhold_order
            rank = order.index(sl.type) if sl.type in order else len(TYPES) + TYPE_INDEX[sl.type]
            lines.append((rank, sl.city, s, owed, pol))
        lines.sort(key=lambda x: (x[0], x[1]))
        paid, interrupted = [], []
        stopped = False
        for _rank, city, s, owed, pol in lines:
            if not stopped and balance >= owed and s["paid"] + owed <= MONEY_MAX:
                balance -= owed
                s["paid"] += owed
                s["paid_date"] = max(s["paid_date"], D)
                paid.append({"type": s["type"], "city": city, "amount": owed})
                continue
            interrupted.append({"type": s["type"], "city": city, "owed": owed})
            if pol.withhold_mode == "stop":
                stopped = True
        return {"id": sp.id, "paid": paid, "interrupted": interrupted, "balance": balance}

    # -- policy revisions (§3.4)
    @staticmethod
    def _pins(p):
        """policy_revisions, checked in map order: {city: revision}."""
        pins = field(p, "policy_revisions")
        if pins is MISSING:
            return {}
        if type(pins) is not dict:
            raise invalid("policy_revisions", "policy_revisions must be a map")
        if len(pins) > PINS_MAX:
            raise RpcError(E_TOO_LARGE, "policy_revisions", "more than 64 cities")
        out = {}
        for k, v in pins.items():
            echo = is_text(k) and len(k.encode("utf-8")) <= WARNING_KEY_BYTES_MAX
            at = "policy_revisions.%s" % k if echo else "policy_revisions"
            if not valid_city(k):
                raise invalid(at, "keys must be cities")
            if not is_int(v) or v < 1:
                raise invalid(at, "a revision must be a positive integer")
            out[k] = v
        return out

    def _view(self, pins):
        """The policies a request reads, each with its revision; not_found for
        a revision (or city) that does not exist, in map order."""
        view = {c: [len(self.revisions[c]), pol] for c, pol in self.policies.items()}
        for c, n in pins.items():
            revs = self.revisions.get(c)
            if not revs or n > len(revs):
                raise RpcError(E_NOT_FOUND, "policy_revisions." + c, "no such revision")
            view[c] = [n, revs[n - 1]]
        return view

    @staticmethod
    def _policies(view, used):
        return {c: view[c][0] for c in sorted(used)}

    # -- compute methods
    def _compute(self, method, p):
        D = field(p, "as_of")
        if not valid_date(D):
            raise invalid("as_of")
        md = date_month_index(D)
        sel = [k for k in ("ids", "persons", "scan") if field(p, k) is not MISSING]
        if len(sel) != 1:
            raise invalid("persons", "exactly one of ids, persons, scan")
        sel = sel[0]
        val = p[sel]
        after = limit = None
        if sel == "persons" or sel == "ids":
            if type(val) is not list:
                raise invalid(sel)
            if len(val) > PERSONS_MAX:
                raise RpcError(E_TOO_LARGE, sel, "too many persons")
        else:
            if type(val) is not dict:
                raise invalid("scan")
            after = field(val, "after")
            if after is MISSING:
                after = None
            elif not valid_scan_after(after):
                raise invalid("scan.after")
            limit = field(val, "limit")
            if not _int_in(limit, 1, SCAN_LIMIT_MAX):
                raise invalid("scan.limit")
        detail = False
        elect = None
        hpol = None
        if method == "arrears.compute":
            detail = field(p, "detail")
            if detail is MISSING:
                detail = False
            elif not is_bool(detail):
                raise invalid("detail")
        elif method == "retirement.check":
            elect = field(p, "elect_month")
            if elect is MISSING:
                elect = None
            elif not valid_month(elect):
                raise invalid("elect_month")
        elif method == "housing.check":
            city = field(p, "city")
            if not valid_city(city):
                raise invalid("city")
            hpol = self.policies.get(city)
            if hpol is None:
                raise RpcError(E_NOT_FOUND, city, "no policy for city")
        view = self._view(self._pins(p))  # after the other parameters (§3.4)
        policies = {c: v[1] for c, v in view.items()}
        used = set()
        if hpol is not None:
            hpol = policies[hpol.city]
            used.add(hpol.city)

        def one(person, at):
            # every slot city with a policy counts as read, also when the result is an error
            used.update(sl.city for sl in person.slots if sl.city in policies)
            resolve_person(person, policies, at)
            if method == "arrears.compute":
                return compute_arrears(person, D, md, detail)
            if method == "years.compute":
                return compute_years(person, D, md)
            if method == "retirement.check":
                return compute_retirement(person, D, md, elect)
            if method == "housing.check":
                return compute_housing(person, D, md, hpol)
            return compute_medical(person, D, md)

        results = []
        if sel == "scan":
            # ids compare as strings: a prefix starts the page at the first id above it
            page = sorted(k for k in self.persons if after is None or k > after)[:limit]
            for i, pid in enumerate(page):
                at = "scan[%d]" % i
                try:
                    results.append(one(self.persons[pid].person(), at))
                except RpcError as e:
                    results.append({"id": pid, "error": e.to_map()})
            return {"results": results, "next": page[-1] if len(page) == limit else None,
                    "policies": self._policies(view, used)}
        if sel == "ids":
            for i, x in enumerate(val):
                at = "ids[%d]" % i
                try:
                    sp = self._lookup(x, at)
                    results.append(one(sp.person(), at))
                except RpcError as e:
                    results.append({"id": echo_id(x), "error": e.to_map()})
            return {"results": results, "policies": self._policies(view, used)}
        for i, x in enumerate(val):
            at = "persons[%d]" % i
            try:
                results.append(one(parse_person(x, at), at))
            except RpcError as e:
                pid = x.get("id") if type(x) is dict else None
                results.append({"id": echo_id(pid), "error": e.to_map()})
        return {"results": results, "policies": self._policies(view, used)}


def copy_result(r):
    if type(r) is dict:
        return {k: copy_result(v) for k, v in r.items()}
    if type(r) is list:
        return [copy_result(v) for v in r]
    return r


def main():
    import msgpack
    data = sys.stdin.buffer.read()
    ev = Evaluator(store="--store" in sys.argv[1:])
    out = sys.stdout.buffer
    unp = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")
    unp.feed(data)
    try:
        for msg in unp:
            r = ev.handle(msg)
            if r is not None:
                out.write(msgpack.packb(r, use_bin_type=True, unicode_errors="surrogateescape"))
            if ev.closed:
                break
    except Exception:
        if not ev.closed:
            out.write(msgpack.packb(ev._malformed(0), use_bin_type=True,
                                    unicode_errors="surrogateescape"))
    out.flush()


if __name__ == "__main__":
    main()
