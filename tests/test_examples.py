#!/usr/bin/python3
"""End-to-end tests of SPEC.md Appendix B examples 1-6 and some error cases.

    /usr/bin/python3 tests/test_examples.py [--eval build/arrears] [--reference-only]

Every expectation comes from the specification's text and hand arithmetic
(written next to it), never from a program's output. Each test runs its
messages through tests/reference.py and, unless --reference-only, through
`<eval> eval` (msgpack-RPC on stdin/stdout), and checks both against the
same expected values. Prints `N passed, M failed`; exits 1 on any failure.
"""

import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference  # noqa: E402

try:
    import msgpack
except ImportError:  # the reference alone needs no msgpack
    msgpack = None

EVAL = os.path.join(HERE, "..", "build", "arrears")
REFERENCE_ONLY = False
EVAL_TIMEOUT_S = 30


def make_id(area_birth_seq):
    """18-char ID from the first 17 digits (GB 11643 check char, by hand rule)."""
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    s = sum(int(c) * w[i] for i, c in enumerate(area_birth_seq))
    return area_birth_seq + "10X98765432"[s % 11]


# ----------------------------------------------------------------- running

def run_reference(msgs):
    return reference.Evaluator().handle_stream(msgs)


def run_eval(msgs, raw_tail=b""):
    data = b"".join(msgpack.packb(m, use_bin_type=True) for m in msgs) + raw_tail
    proc = subprocess.run([EVAL, "eval"], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=EVAL_TIMEOUT_S)
    unp = msgpack.Unpacker(raw=False, strict_map_key=False)
    unp.feed(proc.stdout)
    return list(unp)


def runs(msgs):
    """[(label, responses)] for the reference and, unless reference-only, the evaluator."""
    out = [("reference", run_reference(msgs))]
    if not REFERENCE_ONLY:
        out.append(("eval", run_eval(msgs)))
    return out


def req(msgid, method, params):
    return [0, msgid, method, [params]]


# ----------------------------------------------------------------- fixtures

CITY_A = "110000"  # examples 1, 2, 3, 4
CITY_H = "310000"  # example 5
CITY_M = "440100"  # example 6

POLICY_A = {
    "city": CITY_A, "name": "Example A",
    "deadline": {"day": 25, "month_offset": 0},
    "periods": [{"from": 201001, "base_min": 300000, "base_max": 3000000,
                 "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000},
                           "medical": {"employer": 98000, "individual": 20000, "flexible": 80000}}}],
    "interest": {"types": ["pension"], "categories": ["flexible"], "default_ppm": 25000,
                 "rates": [[2022, 61200], [2023, 39700], [2024, 26200]]},
    "late_fee": {"daily_ppm": 500, "categories": ["employee"], "cap_at_principal": False},
}


def policy_h(grace_days):
    return {
        "city": CITY_H,
        "deadline": {"day": 25},
        "periods": [{"from": 201001, "base_min": 300000, "base_max": 3000000,
                     "rates": {"pension": {"employer": 160000, "individual": 80000, "flexible": 200000}}}],
        "housing": {"types": ["pension"], "window_months": 12, "required_months": 12,
                    "end_offset_months": 1, "backpay_counts": False, "grace_days": grace_days},
    }


POLICY_M = {
    "city": CITY_M,
    "deadline": {"day": 25},
    "periods": [{"from": 201001, "base_min": 300000, "base_max": 3000000,
                 "rates": {"medical": {"flexible": 80000}}}],
}

# 110105 area, born 1985-05-05, sequence 001 (odd: male)
ID_1 = make_id("11010519850505001")
# born 1970-06-15, sequence 001: male, m60 by default (example 3)
ID_M70 = make_id("11010519700615001")
# born 1980-03-10, sequence 002: female (example 4 uses class f50)
ID_F80 = make_id("11010519800310002")


def slot(month, city, typ, cat, base, paid=0, paid_date=0, deemed=None):
    s = {"month": month, "city": city, "type": typ, "category": cat,
         "base": base, "paid": paid, "paid_date": paid_date}
    if deemed is not None:
        s["deemed"] = deemed
    return s


def months(first, last):
    out = []
    m = first
    while m <= last:
        out.append(m)
        m = m + 1 if m % 100 < 12 else (m // 100 + 1) * 100 + 1
    return out


def ok_result(test, resp, msgid):
    test.assertEqual(resp[0], 1)
    test.assertEqual(resp[1], msgid)
    test.assertIsNone(resp[2], "unexpected error %r" % (resp[2],))
    return resp[3]


def error_of(test, resp, msgid):
    test.assertEqual(resp[0], 1)
    test.assertEqual(resp[1], msgid)
    test.assertIsNone(resp[3])
    test.assertIsInstance(resp[2], dict)
    return resp[2]


def assert_error(test, err, code, name, at):
    test.assertEqual(err.get("code"), code, err)
    test.assertEqual(err.get("name"), name, err)
    test.assertIsInstance(err.get("message"), str)
    test.assertEqual(err.get("at"), at, err)


def assert_subset(test, got, expected, where=""):
    """Every key of expected is in got with an equal value (recursively for maps)."""
    test.assertIsInstance(got, dict, where)
    for k, v in expected.items():
        test.assertIn(k, got, "%s missing key %r" % (where, k))
        if isinstance(v, dict) and isinstance(got[k], dict) and v:
            assert_subset(test, got[k], v, where + "." + k)
        else:
            test.assertEqual(got[k], v, "%s.%s" % (where, k))


class Base(unittest.TestCase):
    def each(self, msgs, check):
        for label, resps in runs(msgs):
            with self.subTest(impl=label):
                check(resps)


# ----------------------------------------------------------------- examples

class TestExample1FlexibleInterest(Base):
    def test_flexible_pension_interest_over_three_years(self):
        # due = rh(600000 * 200000 / 10^6) = 120000
        # 2022: 7 months: rh(120000*61200*7/12e6) = rh(4284.0) = 4284 -> 124284
        # 2023: rh(124284*39700/1e6) = rh(4934.07) = 4934 -> 129218
        # 2024: 3 months: rh(129218*26200*3/12e6) = rh(846.38) = 846 -> 130064
        person = {"id": ID_1, "slots": [slot(202205, CITY_A, "pension", "flexible", 600000)]}
        msgs = [req(1, "policy.put", {"policy": POLICY_A}),
                req(2, "arrears.compute", {"as_of": 20240310, "persons": [person], "detail": True}),
                req(3, "arrears.compute", {"as_of": 20240310, "persons": [person]})]

        def check(r):
            self.assertEqual(len(r), 3)
            self.assertEqual(ok_result(self, r[0], 1), {"ok": True, "revision": 1, "warnings": []})
            res = ok_result(self, r[1], 2)["results"]
            self.assertEqual(len(res), 1)
            a = res[0]
            assert_subset(self, a, {
                "id": ID_1, "months_owed": 1, "principal": 120000, "interest": 10064,
                "late_fee": 0, "total": 130064, "pending": 0, "expired_months": 0,
                "expired_principal": 0, "first_month": 202205, "last_month": 202205,
                "tiers": {"direct": 0, "verify": 1, "approval": 0, "legacy": 0},
            })
            self.assertEqual(a["by_type"], {"pension": {"months": 1, "principal": 120000,
                                                        "interest": 10064, "late_fee": 0}})
            self.assertEqual(len(a["items"]), 1)
            assert_subset(self, a["items"][0], {
                "month": 202205, "city": CITY_A, "type": "pension", "category": "flexible",
                "due": 120000, "paid": 0, "owed": 120000, "owed_employer": 0,
                "owed_individual": 120000, "interest": 10064, "late_fee": 0,
                "deadline": 20220525, "tier": "verify", "expired": False,
            })
            b = ok_result(self, r[2], 3)["results"][0]
            self.assertNotIn("items", b)
            self.assertEqual(b["total"], 130064)
        self.each(msgs, check)


class TestExample2LateFee(Base):
    def test_employer_late_fee_individual_share_first(self):
        # due = 128000 + 64000 = 192000; paid 50000 -> owed 142000,
        # owed_individual = 64000 - 50000 = 14000, owed_employer = 128000.
        # deadline 20230325; days = 6 + 30 + 31 + 15 = 82
        # fee = rh(142000 * 500 * 82 / 1e6) = rh(5822.0) = 5822; tier direct (age 3)
        person = {"id": ID_1, "slots": [slot(202303, CITY_A, "pension", "employee", 800000,
                                              50000, 20230410)]}
        msgs = [req(1, "policy.put", {"policy": POLICY_A}),
                req(2, "arrears.compute", {"as_of": 20230615, "persons": [person], "detail": True})]

        def check(r):
            a = ok_result(self, r[1], 2)["results"][0]
            assert_subset(self, a, {
                "months_owed": 1, "principal": 142000, "interest": 0, "late_fee": 5822,
                "total": 147822, "first_month": 202303, "last_month": 202303,
                "tiers": {"direct": 1, "verify": 0, "approval": 0, "legacy": 0},
            })
            assert_subset(self, a["items"][0], {
                "due": 192000, "paid": 50000, "owed": 142000, "owed_individual": 14000,
                "owed_employer": 128000, "deadline": 20230325, "late_fee": 5822,
                "interest": 0, "tier": "direct", "expired": False,
            })
        self.each(msgs, check)

    def test_payment_after_as_of_is_not_seen(self):
        # As of 20230405 the 20230410 payment does not exist: owed = due = 192000,
        # owed_individual 64000; days = 20230405 - 20230325 = 11;
        # fee = rh(192000 * 500 * 11 / 1e6) = rh(1056.0) = 1056
        person = {"id": ID_1, "slots": [slot(202303, CITY_A, "pension", "employee", 800000,
                                              50000, 20230410)]}
        msgs = [req(1, "policy.put", {"policy": POLICY_A}),
                req(2, "arrears.compute", {"as_of": 20230405, "persons": [person], "detail": True})]

        def check(r):
            a = ok_result(self, r[1], 2)["results"][0]
            assert_subset(self, a, {"principal": 192000, "late_fee": 1056, "total": 193056})
            assert_subset(self, a["items"][0], {"paid": 0, "owed_individual": 64000,
                                                 "owed_employer": 128000})
        self.each(msgs, check)


class TestExample3RetirementMan(Base):
    def test_man_born_1970_06(self):
        # k = 197006 - 196501 = 65 months; delay = 65/4 + 1 = 17
        # original 203006, statutory 203111; required(2031) = 180 + 6*2 = 192
        # 60 counted months (202001..202412 paid in full on time) as of 20250115:
        # shortfall 132; eligible_from = max(203111, 202501 + 132 = 203601) = 203601
        # due per slot: 800000 * (160000 + 80000) / 1e6 = 192000
        slots = [slot(m, CITY_A, "pension", "employee", 800000, 192000, m * 100 + 20)
                 for m in months(202001, 202412)]
        person = {"id": ID_M70, "slots": slots}
        msgs = [req(1, "policy.put", {"policy": POLICY_A}),
                req(2, "retirement.check", {"as_of": 20250115, "persons": [person]})]

        def check(r):
            a = ok_result(self, r[1], 2)["results"][0]
            assert_subset(self, a, {
                "id": ID_M70, "class": "m60", "birth_month": 197006,
                "original_month": 203006, "statutory_month": 203111, "retire_month": 203111,
                "required_months": 192, "counted_months": 60, "shortfall": 132,
                "payable_arrears_months": 0, "eligible_now": False, "eligible_from": 203601,
            })
        self.each(msgs, check)


class TestExample4RetirementWomanF50(Base):
    def test_woman_born_1980_03_class_f50(self):
        # k = 198003 - 197501 = 62; delay = 62/2 + 1 = 32
        # original 203003, statutory 203211, required(2032) = 180 + 18 = 198
        # no slots, as of 20250115: shortfall 198,
        # eligible_from = max(203211, 202501 + 198 = 204107) = 204107
        # elect 203003: required(2030) = 186, eligible_from = max(203003, 204007) = 204007
        # elect range [max(203003, 203211 - 36 = 202911), 203211 + 36 = 203511]
        person = {"id": ID_F80, "retire_class": "f50", "slots": []}
        msgs = [req(1, "policy.put", {"policy": POLICY_A}),
                req(2, "retirement.check", {"as_of": 20250115, "persons": [person]}),
                req(3, "retirement.check", {"as_of": 20250115, "persons": [person],
                                            "elect_month": 203003}),
                req(4, "retirement.check", {"as_of": 20250115, "persons": [person],
                                            "elect_month": 203002}),
                req(5, "retirement.check", {"as_of": 20250115, "persons": [person],
                                            "elect_month": 203511}),
                req(6, "retirement.check", {"as_of": 20250115, "persons": [person],
                                            "elect_month": 203512}),
                req(7, "retirement.check", {"as_of": 20250115, "persons": [person],
                                            "elect_month": 203013})]

        def check(r):
            self.assertEqual(len(r), 7)
            a = ok_result(self, r[1], 2)["results"][0]
            assert_subset(self, a, {
                "class": "f50", "birth_month": 198003, "original_month": 203003,
                "statutory_month": 203211, "retire_month": 203211, "required_months": 198,
                "counted_months": 0, "shortfall": 198, "eligible_now": False,
                "eligible_from": 204107,
            })
            b = ok_result(self, r[2], 3)["results"][0]
            assert_subset(self, b, {"retire_month": 203003, "required_months": 186,
                                    "shortfall": 186, "eligible_from": 204007})
            c = ok_result(self, r[3], 4)["results"][0]
            self.assertEqual(c["id"], ID_F80)
            assert_error(self, c["error"], 3, "invalid_argument", "elect_month")
            d = ok_result(self, r[4], 5)["results"][0]
            # 2035: min(240, 180 + 36) = 216
            assert_subset(self, d, {"retire_month": 203511, "required_months": 216})
            e = ok_result(self, r[5], 6)["results"][0]
            assert_error(self, e["error"], 3, "invalid_argument", "elect_month")
            assert_error(self, error_of(self, r[6], 7), 3, "invalid_argument", "elect_month")
        self.each(msgs, check)


class TestExample5Housing(Base):
    def person(self):
        # pension slots 202301..202501 paid in full (192000) on the 20th,
        # except 202406 paid 20240815 (deadline 20240625)
        slots = []
        for m in months(202301, 202501):
            pd = 20240815 if m == 202406 else m * 100 + 20
            slots.append(slot(m, CITY_H, "pension", "employee", 800000, 192000, pd))
        return {"id": ID_1, "slots": slots}

    def test_backpaid_month_in_window(self):
        # as of 20250110: e = 202501 - 1 = 202412, window 202401..202412,
        # qualifying 11, missing [202406]; eligible_from: the first window ending
        # t - 1 that starts after 202406 is 202407..202506, so t = 202507
        msgs = [req(1, "policy.put", {"policy": policy_h(0)}),
                req(2, "housing.check", {"as_of": 20250110, "city": CITY_H,
                                         "persons": [self.person()]})]

        def check(r):
            a = ok_result(self, r[1], 2)["results"][0]
            assert_subset(self, a, {
                "id": ID_1, "city": CITY_H, "window_from": 202401, "window_to": 202412,
                "qualifying": 11, "required": 12, "eligible": False, "missing": [202406],
                "eligible_from": 202507,
            })
        self.each(msgs, check)

    def test_grace_days_60_makes_it_qualify(self):
        # 20240625 + 60 days = 20240824 >= 20240815: every month qualifies
        msgs = [req(1, "policy.put", {"policy": policy_h(60)}),
                req(2, "housing.check", {"as_of": 20250110, "city": CITY_H,
                                         "persons": [self.person()]})]

        def check(r):
            a = ok_result(self, r[1], 2)["results"][0]
            assert_subset(self, a, {"qualifying": 12, "eligible": True, "missing": [],
                                    "eligible_from": 202501})
        self.each(msgs, check)

    def test_unknown_city_is_request_not_found(self):
        msgs = [req(1, "policy.put", {"policy": policy_h(0)}),
                req(2, "housing.check", {"as_of": 20250110, "city": "999999",
                                         "persons": [self.person()]})]

        def check(r):
            assert_error(self, error_of(self, r[1], 2), 4, "not_found", "999999")
        self.each(msgs, check)


class TestExample6Medical(Base):
    def person(self, paid_202404):
        # flexible medical, due = 500000 * 80000 / 1e6 = 40000
        slots = []
        for m in months(202402, 202406):
            if m == 202406:
                slots.append(slot(m, CITY_M, "medical", "flexible", 500000))
            elif m == 202404:
                if paid_202404:
                    slots.append(slot(m, CITY_M, "medical", "flexible", 500000, 40000, 20240612))
                else:
                    slots.append(slot(m, CITY_M, "medical", "flexible", 500000))
            else:
                slots.append(slot(m, CITY_M, "medical", "flexible", 500000, 40000, m * 100 + 20))
        return {"id": ID_1, "slots": slots}

    def test_suspension_and_resumption(self):
        msgs = [req(1, "policy.put", {"policy": POLICY_M}),
                req(2, "medical.status", {"as_of": 20240610, "persons": [self.person(False)]}),
                req(3, "medical.status", {"as_of": 20240612, "persons": [self.person(True)]}),
                req(4, "medical.status", {"as_of": 20240613, "persons": [self.person(True)]}),
                # the paid record as of 20240610 does not see the 20240612 payment
                req(5, "medical.status", {"as_of": 20240610, "persons": [self.person(True)]})]

        def check(r):
            a = ok_result(self, r[1], 2)["results"][0]
            self.assertEqual(a, {"id": ID_1, "status": "suspended", "suspended_since": 202405,
                                 "resumes": None, "arrears_months": 1})
            b = ok_result(self, r[2], 3)["results"][0]
            self.assertEqual(b, {"id": ID_1, "status": "suspended", "suspended_since": 202405,
                                 "resumes": 20240613, "arrears_months": 0})
            c = ok_result(self, r[3], 4)["results"][0]
            self.assertEqual(c, {"id": ID_1, "status": "active", "suspended_since": None,
                                 "resumes": None, "arrears_months": 0})
            d = ok_result(self, r[4], 5)["results"][0]
            self.assertEqual(d, a)
        self.each(msgs, check)

    def test_no_medical_slot_is_none(self):
        person = {"id": ID_1, "slots": [slot(202402, CITY_A, "pension", "flexible", 600000)]}
        msgs = [req(1, "policy.put", {"policy": POLICY_A}),
                req(2, "medical.status", {"as_of": 20240610, "persons": [person]})]

        def check(r):
            a = ok_result(self, r[1], 2)["results"][0]
            self.assertEqual(a["status"], "none")
            self.assertIsNone(a["suspended_since"])
            self.assertIsNone(a["resumes"])
        self.each(msgs, check)


class TestHandComputedMix(Base):
    def test_clipped_deadline_expiry_cap_legacy_pending(self):
        # deadline day 31, month_offset 1; flexible_window 12; daily 2000 ppm with cap;
        # interest (pension, flexible) table 2020 50000, 2022 30000 -> r(2024) = 30000.
        # as of 20240310 (month 202403):
        # 201012 employee, base 300000 -> due 48000 + 24000 = 72000, unpaid;
        #   deadline 20110131; legacy (201012 < 201107); fee >= 144 * days, capped at 72000
        # 202111 employee, base 100000 -> clamped 300000, due 72000, paid 30000 on 20220105:
        #   owed 42000, owed_individual max(0, 24000 - 30000) = 0, owed_employer 42000;
        #   deadline 20211231, days 365 + 365 + 70 = 800; fee rh(42000*2000*800/1e6) = 67200
        #   capped at 42000; age 28 -> verify
        # 202301 flexible, base 600000 -> due 120000, unpaid; deadline 20230228 (31 clipped);
        #   age 14 > 12 -> expired (tier verify, interest 0, fee 0)
        # 202312 flexible, due 120000, unpaid; deadline 20240131; age 3 -> direct;
        #   interest: 12 - 12 = 0 months of 2023, then rh(120000*30000*3/12e6) = 900
        # 202402 flexible, due 120000, unpaid; deadline 20240331 >= D -> pending 120000
        # 202001 deemed: never owed
        pol = {
            "city": "320500", "deadline": {"day": 31, "month_offset": 1},
            "periods": [{"from": 201001, "base_min": 300000, "base_max": 3000000,
                         "rates": {"pension": {"employer": 160000, "individual": 80000,
                                               "flexible": 200000}}}],
            "interest": {"types": ["pension"], "categories": ["flexible"], "default_ppm": 25000,
                         "rates": [[2020, 50000], [2022, 30000]]},
            "late_fee": {"daily_ppm": 2000, "categories": ["employee"], "cap_at_principal": True},
            "backpay": {"direct_max_months": 3, "verify_max_months": 60, "legacy_before": 201107,
                        "flexible_window_months": 12},
        }
        c = "320500"
        person = {"id": ID_1, "slots": [
            slot(202402, c, "pension", "flexible", 600000),
            slot(202312, c, "pension", "flexible", 600000),
            slot(202301, c, "pension", "flexible", 600000),
            slot(202111, c, "pension", "employee", 100000, 30000, 20220105),
            slot(201012, c, "pension", "employee", 300000),
            slot(202001, c, "pension", "employee", 0, 0, 0, True),
        ]}
        msgs = [req(1, "policy.put", {"policy": pol}),
                req(2, "arrears.compute", {"as_of": 20240310, "persons": [person], "detail": True})]

        def check(r):
            a = ok_result(self, r[1], 2)["results"][0]
            assert_subset(self, a, {
                "months_owed": 3, "principal": 234000, "interest": 900, "late_fee": 114000,
                "total": 348900, "pending": 120000, "expired_months": 1,
                "expired_principal": 120000, "first_month": 201012, "last_month": 202312,
                "tiers": {"direct": 1, "verify": 1, "approval": 0, "legacy": 1},
            })
            self.assertEqual(a["by_type"], {"pension": {"months": 3, "principal": 234000,
                                                        "interest": 900, "late_fee": 114000}})
            items = a["items"]
            self.assertEqual([i["month"] for i in items], [201012, 202111, 202301, 202312])
            assert_subset(self, items[0], {"due": 72000, "owed": 72000, "late_fee": 72000,
                                           "tier": "legacy", "deadline": 20110131,
                                           "expired": False})
            assert_subset(self, items[1], {"due": 72000, "paid": 30000, "owed": 42000,
                                           "owed_individual": 0, "owed_employer": 42000,
                                           "late_fee": 42000, "interest": 0, "tier": "verify",
                                           "deadline": 20211231})
            assert_subset(self, items[2], {"due": 120000, "owed": 120000, "interest": 0,
                                           "late_fee": 0, "deadline": 20230228,
                                           "tier": "verify", "expired": True})
            assert_subset(self, items[3], {"interest": 900, "late_fee": 0, "tier": "direct",
                                           "deadline": 20240131, "expired": False})
        self.each(msgs, check)


# ----------------------------------------------------------------- years

class TestYears(Base):
    def test_duplicate_month_and_classification(self):
        # 202301 pension counted in CITY_A (on time) and CITY_M (back-paid):
        # one month, on_time, a duplicate with cities [110000, 440100].
        # 202302 deemed only -> deemed; 202303 paid 20230420 > deadline 20230325 -> backpaid.
        pol_m = dict(POLICY_M)
        pol_m["periods"] = [{"from": 201001, "base_min": 300000, "base_max": 3000000,
                             "rates": {"pension": {"employer": 160000, "individual": 80000}}}]
        person = {"id": ID_1, "slots": [
            slot(202301, CITY_A, "pension", "employee", 800000, 192000, 20230120),
            slot(202301, CITY_M, "pension", "employee", 800000, 192000, 20230420),
            slot(202302, CITY_A, "pension", "employee", 0, 0, 0, True),
            slot(202303, CITY_A, "pension", "employee", 800000, 192000, 20230420),
        ]}
        msgs = [req(1, "policy.put", {"policy": POLICY_A}),
                req(2, "policy.put", {"policy": pol_m}),
                req(3, "years.compute", {"as_of": 20240101, "persons": [person]})]

        def check(r):
            a = ok_result(self, r[2], 3)["results"][0]
            self.assertEqual(a["by_type"]["pension"], {"months": 3, "on_time": 1, "backpaid": 1,
                                                       "deemed": 1, "years": 0, "rem_months": 3})
            self.assertEqual(a["by_type"]["medical"], {"months": 0, "on_time": 0, "backpaid": 0,
                                                       "deemed": 0, "years": 0, "rem_months": 0})
            self.assertEqual(set(a["by_type"]), {"pension", "medical", "unemployment",
                                                 "injury", "maternity"})
            self.assertEqual(a["duplicates"], [{"month": 202301, "type": "pension",
                                                "cities": [CITY_A, CITY_M]}])
        self.each(msgs, check)


# ----------------------------------------------------------------- errors

class TestErrors(Base):
    def test_request_level_errors(self):
        good = {"id": ID_1, "slots": []}
        msgs = [req(1, "policy.put", {"policy": POLICY_A}),
                req(2, "arrears.compute", {"as_of": 20230229, "persons": [good]}),
                req(3, "arrears.compute", {"as_of": 20230301, "persons": [good], "ids": [ID_1]}),
                req(4, "arrears.compute", {"as_of": 20230301}),
                req(5, "arrears.compute", {"as_of": 20230301, "persons": [good], "detail": 1}),
                req(6, "no.such.method", {}),
                req(7, "arrears.compute", {"as_of": 20230301.0, "persons": [good]}),
                req(8, "arrears.compute", {"as_of": 20230301, "scan": {"limit": 0}}),
                req(9, "policy.get", {"city": "999999"})]

        def check(r):
            self.assertEqual(len(r), 9)
            assert_error(self, error_of(self, r[1], 2), 3, "invalid_argument", "as_of")
            assert_error(self, error_of(self, r[2], 3), 3, "invalid_argument", "persons")
            assert_error(self, error_of(self, r[3], 4), 3, "invalid_argument", "persons")
            assert_error(self, error_of(self, r[4], 5), 3, "invalid_argument", "detail")
            e = error_of(self, r[5], 6)
            self.assertEqual((e["code"], e["name"]), (2, "unknown_method"))
            assert_error(self, error_of(self, r[6], 7), 3, "invalid_argument", "as_of")
            assert_error(self, error_of(self, r[7], 8), 3, "invalid_argument", "scan.limit")
            # Appendix A: a city without a policy is not_found at the city code
            assert_error(self, error_of(self, r[8], 9), 4, "not_found", "999999")
        self.each(msgs, check)

    def test_person_level_errors_do_not_fail_others(self):
        good = {"id": ID_1, "slots": [slot(202303, CITY_A, "pension", "employee", 800000)]}
        lower_x = "11010519491231002x"  # valid with upper-case X, rejected lower-case
        persons = [
            {"id": lower_x, "slots": []},
            {"id": ID_1, "slots": [slot(202303, "999999", "pension", "employee", 800000)]},
            {"id": ID_1, "slots": [slot(200912, CITY_A, "pension", "employee", 800000)]},
            {"id": ID_1, "slots": [slot(202303, CITY_A, "pension", "employee", 800000),
                                   slot(202303, CITY_A, "pension", "flexible", 800000)]},
            {"id": ID_1, "slots": [slot(202303, CITY_A, "pension", "employee", 800000, 5, 0)]},
            {"id": ID_1, "slots": [slot(202303, CITY_A, "pension", "employee", 800000.0)]},
            {"id": ID_1, "slots": [slot(202303, CITY_A, "pension", "employee", 1, 0, 0, True)]},
            good,
            # slot 1 duplicates slot 0: reported before slot 2's bad month
            {"id": ID_1, "slots": [slot(202301, CITY_A, "pension", "employee", 800000),
                                   slot(202301, CITY_A, "pension", "employee", 800000),
                                   slot(202313, CITY_A, "pension", "employee", 800000)]},
            # structure errors of every slot come before R1 of any slot
            {"id": ID_1, "slots": [slot(202301, "999999", "pension", "employee", 800000),
                                   slot(202301, CITY_A, "pension", "employee", -1)]},
            "not a map",
        ]
        msgs = [req(1, "policy.put", {"policy": POLICY_A}),
                req(2, "arrears.compute", {"as_of": 20230615, "persons": persons})]

        def check(r):
            res = ok_result(self, r[1], 2)["results"]
            self.assertEqual(len(res), len(persons))
            assert_error(self, res[0]["error"], 3, "invalid_argument", "persons[0].id")
            self.assertEqual(res[0]["id"], lower_x)
            assert_error(self, res[1]["error"], 4, "not_found", "999999")
            assert_error(self, res[2]["error"], 3, "invalid_argument", "persons[2].slots[0].month")
            assert_error(self, res[3]["error"], 3, "invalid_argument", "persons[3].slots[1]")
            assert_error(self, res[4]["error"], 3, "invalid_argument",
                         "persons[4].slots[0].paid_date")
            assert_error(self, res[5]["error"], 3, "invalid_argument", "persons[5].slots[0].base")
            assert_error(self, res[6]["error"], 3, "invalid_argument", "persons[6].slots[0].deemed")
            self.assertNotIn("error", res[7])
            self.assertEqual(res[7]["principal"], 192000)
            assert_error(self, res[8]["error"], 3, "invalid_argument", "persons[8].slots[1]")
            assert_error(self, res[9]["error"], 3, "invalid_argument", "persons[9].slots[1].base")
            assert_error(self, res[10]["error"], 3, "invalid_argument", "persons[10]")
            self.assertIsNone(res[10]["id"])
        self.each(msgs, check)

    def test_policy_validation(self):
        def variant(**changes):
            p = {"city": "120000", "deadline": {"day": 15},
                 "periods": [{"from": 201001, "base_min": 100, "base_max": 200},
                             {"from": 202001, "base_min": 100, "base_max": 200}]}
            p.update(changes)
            return p
        msgs = [
            req(1, "policy.put", {"policy": variant(periods=[{"from": 201001, "base_min": 300,
                                                              "base_max": 200}])}),
            req(2, "policy.put", {"policy": variant(periods=[
                {"from": 202001, "base_min": 1, "base_max": 2},
                {"from": 202001, "base_min": 1, "base_max": 2}])}),
            req(3, "policy.put", {"policy": variant(housing={"window_months": 12,
                                                             "required_months": 13})}),
            req(4, "policy.put", {"policy": variant(interest={"types": ["pension", "dental"]})}),
            req(5, "policy.put", {"policy": variant(interest={"rates": [[2020, 1], [2019, 1]]})}),
            req(6, "policy.put", {"policy": variant(deadline={"day": 32})}),
            req(7, "policy.put", {"policy": variant(withhold={"mode": "halt"})}),
            req(8, "policy.put", {"policy": variant(periods=[])}),
            req(9, "policy.put", {"policy": variant(city="12000")}),
            req(10, "policy.put", {"policy": variant()}),
            req(11, "policy.get", {"city": "120000"}),
        ]

        def check(r):
            self.assertEqual(len(r), 11)
            paths = ["policy.periods[0].base_min", "policy.periods[1].from",
                     "policy.housing.required_months", "policy.interest.types[1]",
                     "policy.interest.rates[1]", "policy.deadline.day",
                     "policy.withhold.mode", "policy.periods", "policy.city"]
            for i, at in enumerate(paths):
                assert_error(self, error_of(self, r[i], i + 1), 3, "invalid_argument", at)
            self.assertEqual(ok_result(self, r[9], 10), {"ok": True, "revision": 1, "warnings": []})
            pol = ok_result(self, r[10], 11)["policy"]
            # every default of §3.3 filled in, name "" (Appendix A)
            assert_subset(self, pol, {
                "city": "120000", "name": "",
                "deadline": {"day": 15, "month_offset": 0},
                "interest": {"types": ["pension"], "categories": ["flexible"],
                             "default_ppm": 25000,
                             "rates": [[2016, 83100], [2017, 71200], [2018, 82900],
                                       [2019, 76100], [2020, 60400], [2021, 66900],
                                       [2022, 61200], [2023, 39700], [2024, 26200]]},
                "late_fee": {"daily_ppm": 500, "categories": ["employee"],
                             "cap_at_principal": False},
                "backpay": {"direct_max_months": 3, "verify_max_months": 60,
                            "legacy_before": 201107, "flexible_window_months": 0},
                "housing": {"types": ["pension"], "window_months": 60, "required_months": 60,
                            "end_offset_months": 1, "backpay_counts": False, "grace_days": 0},
                "withhold": {"order": ["pension", "medical", "unemployment"], "mode": "stop"},
            })
            self.assertEqual(len(pol["periods"]), 2)
            assert_subset(self, pol["periods"][1], {"from": 202001, "base_min": 100,
                                                    "base_max": 200})
        self.each(msgs, check)

    def test_malformed_message_answers_once_and_stops(self):
        msgs = [req(1, "ping", {}), "not a request", req(3, "ping", {})]

        def check(r):
            self.assertEqual(len(r), 2)
            pong = ok_result(self, r[0], 1)
            self.assertIs(pong["pong"], True)
            self.assertIsInstance(pong["version"], str)
            self.assertEqual(r[1][0], 1)
            self.assertEqual(r[1][1], 0)
            self.assertEqual(r[1][2]["code"], 1)
            self.assertEqual(r[1][2]["name"], "malformed")
            self.assertIsNone(r[1][3])
        self.each(msgs, check)

    def test_notification_is_executed_not_answered(self):
        person = {"id": ID_1, "slots": [slot(202205, CITY_A, "pension", "flexible", 600000)]}
        msgs = [[2, "policy.put", [{"policy": POLICY_A}]],
                req(2, "arrears.compute", {"as_of": 20240310, "persons": [person]})]

        def check(r):
            self.assertEqual(len(r), 1)
            self.assertEqual(ok_result(self, r[0], 2)["results"][0]["total"], 130064)
        self.each(msgs, check)


def main(argv):
    global EVAL, REFERENCE_ONLY
    rest = [argv[0]]
    i = 1
    while i < len(argv):
        if argv[i] == "--reference-only":
            REFERENCE_ONLY = True
        elif argv[i] == "--eval" and i + 1 < len(argv):
            EVAL = argv[i + 1]
            i += 1
        else:
            rest.append(argv[i])
        i += 1
    if not REFERENCE_ONLY:
        if msgpack is None:
            print("msgpack is missing: run with /usr/bin/python3 (python3-msgpack)")
            return 2
        if not os.access(EVAL, os.X_OK):
            print("no evaluator at %s (build it, or pass --reference-only)" % EVAL)
            return 2
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    if len(rest) > 1:
        suite = unittest.defaultTestLoader.loadTestsFromNames(rest[1:], sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=1, stream=sys.stdout).run(suite)
    bad = set()
    for t, _ in result.failures + result.errors:
        bad.add(getattr(t, "test_case", t).id())  # a failed subTest counts its test once
    failed = len(bad)
    passed = max(0, result.testsRun - failed)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
