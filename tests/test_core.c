/* Unit tests of core/: the rules R1–R11 of SPEC.md on plain structs.
 *
 * Every expected value comes from the spec's text (Appendix B worked examples)
 * or from the hand arithmetic in the comment beside the assertion; none was
 * copied from the code's output. Dense months in expectations are written with
 * M(yyyymm), which converts by arithmetic, not by calling the code under test.
 *
 * Build from the repository root, linking every .c file of core/:
 *   gcc -std=c11 -O1 -g -Wall -Wextra -Werror -Icore tests/test_core.c core/(each).c -lcmocka
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../core/core.h"

#define CITY_A 110000u
#define CITY_B 310000u
#define CITY_UNKNOWN 999999u

/* Slots used throughout, dues under the fixture's rates (R2, no clamping). */
#define EMP_BASE 800000
#define EMP_PENSION_DUE 192000  /* rh(800000*160000/1e6)=128000 + rh(800000*80000/1e6)=64000 */
#define EMP_MEDICAL_DUE 94400   /* rh(800000*98000/1e6)=78400 + rh(800000*20000/1e6)=16000 */
#define FLEX_BASE 600000
#define FLEX_PENSION_DUE 120000 /* rh(600000*200000/1e6) */
#define FLEX_MEDICAL_DUE 48000  /* rh(600000*80000/1e6) */

#define SLOTS_MAX 256u

/* YYYYMM to a dense month (year*12 + month-1) by arithmetic. */
static int32_t M(int32_t yyyymm)
{
	return yyyymm / 100 * 12 + yyyymm % 100 - 1;
}

/* Dense month back to YYYYMM by arithmetic. */
static int32_t YM(int32_t month)
{
	return month / 12 * 100 + month % 12 + 1;
}

/* ------------------------------------------------------------------------ */
/* Fixture: two cities with the policy of SPEC 3.3 (its illustrative figures). */

struct city_doc {
	struct core_period periods[4];
	struct core_year_rate rates[16];
	struct core_policy policy;
};

struct arrears_run {
	struct core_arrears out;
	struct core_arrears_item items[SLOTS_MAX];
	uint32_t item_count;
};

struct years_run {
	struct core_years out;
	struct core_duplicate duplicates[SLOTS_MAX];
	uint32_t duplicate_count;
};

/* The policies and every large buffer a test needs, allocated by the setup
 * and freed by the teardown, so a failed assertion leaks nothing. */
struct world {
	struct city_doc a; /* CITY_A */
	struct city_doc b; /* CITY_B */
	const struct core_policy *items[2];
	struct core_policy_set set;
	struct arrears_run arrears;
	struct years_run years;
	struct core_housing housing;
	struct core_slot slots[SLOTS_MAX];
};

static void period_defaults(struct core_period *p, int32_t from)
{
	static const uint32_t rates[CORE_TYPE_COUNT][CORE_SHARE_COUNT] = {
		[CORE_PENSION] = { 160000, 80000, 200000 },
		[CORE_MEDICAL] = { 98000, 20000, 80000 },
		[CORE_UNEMPLOYMENT] = { 5000, 5000, 10000 },
		[CORE_INJURY] = { 4000, 0, 0 },
		[CORE_MATERNITY] = { 0, 0, 0 },
	};
	memset(p, 0, sizeof(*p));
	p->from = from;
	p->base_min_fen = 0;
	p->base_max_fen = CORE_MONEY_MAX;
	memcpy(p->rate_ppm, rates, sizeof(rates));
}

static void interest_table(struct city_doc *c, uint32_t default_ppm, const struct core_year_rate *rates,
			   uint32_t count)
{
	assert_true(count <= 16);
	c->policy.interest_default_ppm = default_ppm;
	c->policy.interest_rate_count = count;
	if (count > 0) {
		memcpy(c->rates, rates, sizeof(*rates) * count);
	}
	c->policy.interest_rates = c->rates;
}

static void city_defaults(struct city_doc *c, uint32_t city)
{
	static const struct core_year_rate spec_rates[] = {
		{ 2016, 83100 }, { 2017, 71200 }, { 2018, 82900 }, { 2019, 76100 }, { 2020, 60400 },
		{ 2021, 66900 }, { 2022, 61200 }, { 2023, 39700 }, { 2024, 26200 },
	};
	memset(c, 0, sizeof(*c));
	period_defaults(&c->periods[0], M(195001));
	struct core_policy *p = &c->policy;
	p->city = city;
	p->deadline_day = 25;
	p->deadline_month_offset = 0;
	p->period_count = 1;
	p->periods = c->periods;
	p->interest_types = 1u << CORE_PENSION;
	p->interest_categories = 1u << CORE_FLEXIBLE;
	interest_table(c, 25000, spec_rates, 9);
	p->late_fee_daily_ppm = 500;
	p->late_fee_categories = 1u << CORE_EMPLOYEE;
	p->late_fee_cap_at_principal = false;
	p->backpay_direct_max_months = 3;
	p->backpay_verify_max_months = 60;
	p->backpay_legacy_before = M(201107);
	p->backpay_flexible_window_months = 0;
	p->housing_types = 1u << CORE_PENSION;
	p->housing_window_months = 60;
	p->housing_required_months = 60;
	p->housing_end_offset_months = 1;
	p->housing_backpay_counts = false;
	p->housing_grace_days = 0;
	p->withhold_order_count = 3;
	p->withhold_order[0] = CORE_PENSION;
	p->withhold_order[1] = CORE_MEDICAL;
	p->withhold_order[2] = CORE_UNEMPLOYMENT;
	p->withhold_mode = CORE_WITHHOLD_STOP;
}

static int world_setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		return -1;
	}
	city_defaults(&w->a, CITY_A);
	city_defaults(&w->b, CITY_B);
	*state = w;
	return 0;
}

static int world_teardown(void **state)
{
	free(*state);
	return 0;
}

/* Prepares both policies after a test changed their document fields. */
static const struct core_policy_set *world_set(struct world *w)
{
	core_policy_prepare(&w->a.policy);
	core_policy_prepare(&w->b.policy);
	w->items[0] = &w->a.policy; /* CITY_A < CITY_B: sorted by city */
	w->items[1] = &w->b.policy;
	w->set.items = w->items;
	w->set.count = 2;
	return &w->set;
}

/* Applies one change to both cities' policies. */
#define BOTH(w, field, value)                    \
	do {                                     \
		(w)->a.policy.field = (value);   \
		(w)->b.policy.field = (value);   \
	} while (0)

static struct core_slot slot_make(int32_t yyyymm, uint32_t city, uint8_t type, uint8_t category, int64_t base_fen,
				  int64_t paid_fen, int32_t paid_date)
{
	struct core_slot s;
	memset(&s, 0, sizeof(s));
	s.month = M(yyyymm);
	s.city = city;
	s.type = type;
	s.category = category;
	s.base_fen = base_fen;
	s.paid_fen = paid_fen;
	s.paid_date = paid_date;
	s.deemed = false;
	return s;
}

static struct core_slot deemed_make(int32_t yyyymm, uint32_t city, uint8_t type)
{
	struct core_slot s = slot_make(yyyymm, city, type, CORE_EMPLOYEE, 0, 0, 0);
	s.deemed = true;
	return s;
}

static struct core_slot emp_pension(int32_t yyyymm, uint32_t city, int64_t paid_fen, int32_t paid_date)
{
	return slot_make(yyyymm, city, CORE_PENSION, CORE_EMPLOYEE, EMP_BASE, paid_fen, paid_date);
}

static struct core_slot flex_pension(int32_t yyyymm, uint32_t city, int64_t paid_fen, int32_t paid_date)
{
	return slot_make(yyyymm, city, CORE_PENSION, CORE_FLEXIBLE, FLEX_BASE, paid_fen, paid_date);
}

static struct core_slot flex_medical(int32_t yyyymm, uint32_t city, int64_t paid_fen, int32_t paid_date)
{
	return slot_make(yyyymm, city, CORE_MEDICAL, CORE_FLEXIBLE, FLEX_BASE, paid_fen, paid_date);
}

/* count flexible pension months from `from`, each paid in full on the 20th of
 * its month (before the day-25 deadline: on time). Returns count. */
static uint32_t fill_paid_pension(struct core_slot *slots, int32_t from_yyyymm, uint32_t count, uint32_t city)
{
	assert_true(count <= SLOTS_MAX);
	for (uint32_t i = 0; i < count; i++) {
		int32_t yyyymm = YM(M(from_yyyymm) + (int32_t)i);
		slots[i] = flex_pension(yyyymm, city, FLEX_PENSION_DUE, yyyymm * 100 + 20);
	}
	return count;
}


/* Each test runs twice: on plain slot arrays, then on the store's run
 * encoding of the same slots (main flips this), so both forms must agree
 * with the same hand-worked values. */
static bool encoded_mode;
static uint8_t encoded_buf[1u << 20];

static struct core_timeline timeline_of(const struct core_slot *slots, uint32_t count)
{
	struct core_timeline tl = { .slots = slots, .slot_count = count };
	if (encoded_mode) {
		size_t size = core_timeline_encode(slots, count, encoded_buf, sizeof(encoded_buf));
		assert_true(size > 0);
		tl.slots = NULL;
		tl.runs = encoded_buf;
		tl.runs_size = size;
	}
	return tl;
}

static struct core_timeline current_timeline;

static const struct core_timeline *TL(const struct core_slot *slots, uint32_t count)
{
	current_timeline = timeline_of(slots, count);
	return &current_timeline;
}

static int arrears_of(struct world *w, const struct core_slot *slots, uint32_t count, int32_t date,
		      struct arrears_run *r)
{
	const struct core_policy_set *set = world_set(w);
	uint32_t bad = 0;
	assert_true(count <= SLOTS_MAX);
	assert_int_equal(core_person_resolve(set, TL(slots, count), &bad), CORE_OK);
	memset(r, 0, sizeof(*r));
	return core_arrears_compute(set, TL(slots, count), core_as_of_make(date), &r->out, r->items, &r->item_count);
}


static void years_of(struct world *w, const struct core_slot *slots, uint32_t count, int32_t date,
		     struct years_run *r)
{
	const struct core_policy_set *set = world_set(w);
	uint32_t bad = 0;
	assert_true(count <= SLOTS_MAX);
	assert_int_equal(core_person_resolve(set, TL(slots, count), &bad), CORE_OK);
	memset(r, 0, sizeof(*r));
	core_years_compute(set, TL(slots, count), core_as_of_make(date), &r->out, r->duplicates, &r->duplicate_count);
}

static int retirement_of(struct world *w, int32_t birth_yyyymm, uint8_t class_, const struct core_slot *slots,
			 uint32_t count, int32_t date, int32_t elect_month, struct core_retirement *out)
{
	const struct core_policy_set *set = world_set(w);
	uint32_t bad = 0;
	assert_int_equal(core_person_resolve(set, TL(slots, count), &bad), CORE_OK);
	memset(out, 0, sizeof(*out));
	return core_retirement_check(set, M(birth_yyyymm), class_, TL(slots, count), core_as_of_make(date), elect_month,
				     out);
}

static void housing_of(struct world *w, const struct core_slot *slots, uint32_t count, int32_t date,
		       struct core_housing *out)
{
	const struct core_policy_set *set = world_set(w);
	uint32_t bad = 0;
	assert_int_equal(core_person_resolve(set, TL(slots, count), &bad), CORE_OK);
	memset(out, 0, sizeof(*out));
	core_housing_check(set, &w->a.policy, TL(slots, count), core_as_of_make(date), out);
}

static void medical_of(struct world *w, const struct core_slot *slots, uint32_t count, int32_t date,
		       struct core_medical *out)
{
	const struct core_policy_set *set = world_set(w);
	uint32_t bad = 0;
	assert_int_equal(core_person_resolve(set, TL(slots, count), &bad), CORE_OK);
	memset(out, 0, sizeof(*out));
	core_medical_status(set, TL(slots, count), core_as_of_make(date), out);
}

static int32_t deadline_of(const struct core_policy *p, int32_t yyyymm)
{
	return p->deadline_date[M(yyyymm) - CORE_MONTH_FIRST];
}

/* ------------------------------------------------------------------------ */
/* Calendar */

static void test_month_parse_accepts_range_ends_and_rejects_one_past(void **state)
{
	(void)state;
	int32_t month = -1;
	assert_true(core_month_parse(195001, &month));
	assert_int_equal(month, 1950 * 12 + 0); /* 23400 */
	assert_false(core_month_parse(194912, &month));
	assert_true(core_month_parse(209912, &month));
	assert_int_equal(month, 2099 * 12 + 11); /* 25199 */
	assert_false(core_month_parse(210001, &month));
	assert_true(core_month_parse(202301, &month));
	assert_int_equal(month, 2023 * 12 + 0);
	assert_false(core_month_parse(0, &month));
	assert_false(core_month_parse(-202301, &month));
	assert_false(core_month_parse(20230101, &month));
}

static void test_month_parse_rejects_month_numbers_0_and_13(void **state)
{
	(void)state;
	int32_t month = -1;
	assert_false(core_month_parse(202300, &month));
	assert_false(core_month_parse(202313, &month));
	assert_true(core_month_parse(202312, &month));
	assert_int_equal(month, 2023 * 12 + 11);
	assert_true(core_month_parse(202401, &month));
	assert_int_equal(month, 2024 * 12 + 0);
	assert_false(core_month_parse(209913, &month));
	assert_false(core_month_parse(195000, &month));
}

static void test_month_yyyymm_inverts_dense_index_across_year_end(void **state)
{
	(void)state;
	assert_int_equal(core_month_yyyymm(2022 * 12 + 11), 202212);
	assert_int_equal(core_month_yyyymm(2023 * 12 + 0), 202301);
	assert_int_equal(core_month_yyyymm(1950 * 12 + 0), 195001);
	assert_int_equal(core_month_yyyymm(2099 * 12 + 11), 209912);
	/* 202301 − 202212 = 1 calendar month */
	assert_int_equal(M(202301) - M(202212), 1);
}

static void test_date_valid_feb29_leap_rules(void **state)
{
	(void)state;
	assert_true(core_date_valid(20240229));  /* 2024 divisible by 4 */
	assert_false(core_date_valid(20230229)); /* 2023 not */
	assert_false(core_date_valid(19000229)); /* divisible by 100, not 400 */
	assert_true(core_date_valid(20000229));  /* divisible by 400 */
	assert_false(core_date_valid(21000229)); /* divisible by 100, not 400 */
	assert_false(core_date_valid(20240230));
	assert_true(core_date_valid(20230228));
}

static void test_date_valid_range_ends_both_sides(void **state)
{
	(void)state;
	assert_true(core_date_valid(19000101));
	assert_false(core_date_valid(18991231));
	assert_true(core_date_valid(21001231));
	assert_false(core_date_valid(21010101));
	assert_false(core_date_valid(0));
	assert_false(core_date_valid(-20230101));
}

static void test_date_valid_rejects_bad_month_and_day(void **state)
{
	(void)state;
	assert_false(core_date_valid(20230001));
	assert_false(core_date_valid(20231301));
	assert_false(core_date_valid(20230100));
	assert_true(core_date_valid(20230131));
	assert_false(core_date_valid(20230132));
	assert_true(core_date_valid(20230430));
	assert_false(core_date_valid(20230431));
	assert_true(core_date_valid(20231231));
}

static void test_date_to_days_known_values(void **state)
{
	(void)state;
	assert_int_equal(core_date_to_days(19700101), 0);
	assert_int_equal(core_date_to_days(19700102), 1);
	assert_int_equal((int64_t)core_date_to_days(19691231), -1);
	/* 1970..1999: 30*365 + 7 leap days (72,76,80,84,88,92,96) = 10957 */
	assert_int_equal(core_date_to_days(20000101), 10957);
	/* 1970..2023: 54*365 + 13 leap days (1972..2020) = 19723 */
	assert_int_equal(core_date_to_days(20240101), 19723);
	/* 1900..1969: 70*365 + 17 leap days (1904..1968) = 25567 before the epoch */
	assert_int_equal((int64_t)core_date_to_days(19000101), -25567);
	/* 1970..2100: 131*365 + 32 leap days (1972..2096) = 47847 is 21010101, less 1 */
	assert_int_equal(core_date_to_days(21001231), 47846);
}

static void test_date_to_days_known_differences(void **state)
{
	(void)state;
	/* Appendix B 2: 6 + 30 + 31 + 15 = 82 */
	assert_int_equal(core_date_to_days(20230615) - core_date_to_days(20230325), 82);
	assert_int_equal(core_date_to_days(20240301) - core_date_to_days(20240228), 2);
	assert_int_equal(core_date_to_days(20230301) - core_date_to_days(20230228), 1);
	assert_int_equal(core_date_to_days(19000301) - core_date_to_days(19000228), 1);
	assert_int_equal(core_date_to_days(20000301) - core_date_to_days(20000228), 2);
	assert_int_equal(core_date_to_days(20240101) - core_date_to_days(20231231), 1);
	/* 2023 is not leap: 365; 2024 is: 366 */
	assert_int_equal(core_date_to_days(20240101) - core_date_to_days(20230101), 365);
	assert_int_equal(core_date_to_days(20250101) - core_date_to_days(20240101), 366);
}

static void test_days_to_date_round_trips_every_day_in_range(void **state)
{
	(void)state;
	int32_t first = core_date_to_days(19000101);
	int32_t last = core_date_to_days(21001231);
	/* 201 years of 365 days + 49 leap days (1904..2096 every 4th; 1900 and 2100
	 * are not leap, 2000 is) = 73414 days, so last − first = 73413 */
	assert_int_equal(last - first, 73413);
	assert_int_equal(core_days_to_date(first), 19000101);
	assert_int_equal(core_days_to_date(last), 21001231);
	assert_int_equal(core_days_to_date(0), 19700101);
	assert_int_equal(core_days_to_date(19723 + 31 + 28), 20240229); /* Jan 31 + Feb 28 days after 20240101 */
	int32_t previous = 0;
	for (int32_t d = first; d <= last; d++) {
		int32_t date = core_days_to_date(d);
		assert_true(core_date_valid(date));
		assert_int_equal(core_date_to_days(date), d);
		assert_true(date > previous);
		previous = date;
	}
}

static void test_month_last_day_per_month_and_leap_year(void **state)
{
	(void)state;
	assert_int_equal(core_month_last_day(M(202301)), 31);
	assert_int_equal(core_month_last_day(M(202302)), 28);
	assert_int_equal(core_month_last_day(M(202402)), 29);
	assert_int_equal(core_month_last_day(M(190002)), 28);
	assert_int_equal(core_month_last_day(M(200002)), 29);
	assert_int_equal(core_month_last_day(M(210002)), 28);
	assert_int_equal(core_month_last_day(M(202304)), 30);
	assert_int_equal(core_month_last_day(M(202306)), 30);
	assert_int_equal(core_month_last_day(M(202309)), 30);
	assert_int_equal(core_month_last_day(M(202311)), 30);
	assert_int_equal(core_month_last_day(M(202312)), 31);
	assert_int_equal(core_month_last_day(M(195001)), 31);
	assert_int_equal(core_month_last_day(M(209912)), 31);
}

static void test_as_of_make_fills_date_days_and_month(void **state)
{
	(void)state;
	struct core_as_of a = core_as_of_make(20240310);
	assert_int_equal(a.date, 20240310);
	assert_int_equal(a.month, M(202403));
	/* 20240101 is day 19723; + 31 (Jan) + 29 (Feb) + 9 = 19792 */
	assert_int_equal(a.days, 19792);
}

/* ------------------------------------------------------------------------ */
/* Resident IDs */

static bool id_valid(const char *id)
{
	return core_id_valid(id, strlen(id));
}

static void test_id_valid_with_digit_check_char_computed_by_hand(void **state)
{
	(void)state;
	/* 1 1 0 1 0 5 1 9 7 0 0 6 0 1 0 0 1 × 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2:
	 * 7+9+0+5+0+20+2+9+42+0+0+54+0+5+0+0+2 = 155; 155 mod 11 = 1; "10X98765432"[1] = '0' */
	assert_true(id_valid("110105197006010010"));
	/* 1 1 0 1 0 5 1 9 8 0 0 3 1 5 0 0 2:
	 * 7+9+0+5+0+20+2+9+48+0+0+27+10+25+0+0+4 = 166; 166 mod 11 = 1 → '0' */
	assert_true(id_valid("110105198003150020"));
}

static void test_id_valid_with_upper_x_check_char(void **state)
{
	(void)state;
	/* SPEC 3.1's id: 1 1 0 1 0 5 1 9 4 9 1 2 3 1 0 0 2:
	 * 7+9+0+5+0+20+2+9+24+27+7+18+30+5+0+0+4 = 167; 167 mod 11 = 2 → 'X' */
	assert_true(id_valid("11010519491231002X"));
	/* X where the check is '0' (sum 155 above) */
	assert_false(id_valid("11010519700601001X"));
}

static void test_id_rejects_lower_case_x(void **state)
{
	(void)state;
	assert_false(id_valid("11010519491231002x"));
}

static void test_id_rejects_wrong_check_char(void **state)
{
	(void)state;
	assert_false(id_valid("110105197006010011")); /* check is '0' */
	assert_false(id_valid("110105197006010019"));
	assert_false(id_valid("110105194912310022")); /* check is 'X' */
}

static void test_id_rejects_non_digit_in_first_17(void **state)
{
	(void)state;
	assert_false(id_valid("1101051970060100A0"));
	assert_false(id_valid("A10105197006010010"));
	assert_false(id_valid("11010519700601 010"));
	assert_false(id_valid("X10105197006010010"));
}

static void test_id_rejects_wrong_length(void **state)
{
	(void)state;
	assert_false(core_id_valid("110105197006010010", 17));
	assert_false(core_id_valid("1101051970060100100", 19));
	assert_false(core_id_valid("", 0));
	assert_true(core_id_valid("110105197006010010", 18));
}

static void test_id_rejects_invalid_birth_date_feb_30(void **state)
{
	(void)state;
	/* 1 1 0 1 0 5 1 9 7 0 0 2 3 0 0 0 1:
	 * 7+9+0+5+0+20+2+9+42+0+0+18+30+0+0+0+2 = 144; 144 mod 11 = 1 → '0':
	 * the check char is right, only the birth date 19700230 is wrong */
	assert_false(id_valid("110105197002300010"));
	/* month 13, day 01: 1 1 0 1 0 5 1 9 7 0 1 3 0 1 0 0 1:
	 * 7+9+0+5+0+20+2+9+42+0+7+27+0+5+0+0+2 = 135; 135 mod 11 = 3 → '9' */
	assert_false(id_valid("110105197013010019"));
}

static void test_id_birth_month(void **state)
{
	(void)state;
	assert_int_equal(core_id_birth_month("11010519491231002X"), M(194912));
	assert_int_equal(core_id_birth_month("110105197006010010"), M(197006));
	assert_int_equal(core_id_birth_month("110105198003150020"), M(198003));
}

static void test_id_default_class_odd_male_even_female(void **state)
{
	(void)state;
	assert_int_equal(core_id_default_class("110105197006010010"), CORE_CLASS_M60); /* 17th '1' */
	assert_int_equal(core_id_default_class("11010519491231002X"), CORE_CLASS_F55); /* 17th '2' */
	assert_int_equal(core_id_default_class("110105198003150020"), CORE_CLASS_F55); /* 17th '2' */
}

static void test_name_index_canonical_spellings(void **state)
{
	(void)state;
	assert_int_equal(core_name_index(core_type_names, CORE_TYPE_COUNT, "pension", 7), CORE_PENSION);
	assert_int_equal(core_name_index(core_type_names, CORE_TYPE_COUNT, "maternity", 9), CORE_MATERNITY);
	assert_int_equal(core_name_index(core_type_names, CORE_TYPE_COUNT, "pens", 4), -1);
	assert_int_equal(core_name_index(core_type_names, CORE_TYPE_COUNT, "Pension", 7), -1);
	assert_int_equal(core_name_index(core_category_names, CORE_CATEGORY_COUNT, "flexible", 8), CORE_FLEXIBLE);
	assert_int_equal(core_name_index(core_class_names, CORE_CLASS_COUNT, "f50", 3), CORE_CLASS_F50);
	assert_int_equal(core_name_index(core_tier_names, CORE_TIER_COUNT, "legacy", 6), CORE_TIER_LEGACY);
}

/* ------------------------------------------------------------------------ */
/* Duplicate slot keys */

static void test_slot_keys_reports_second_identical_key_only(void **state)
{
	(void)state;
	uint64_t table[16];
	struct core_slot_keys keys;
	core_slot_keys_init(&keys, table, 16);
	struct core_slot s = emp_pension(202301, CITY_A, 0, 0);
	assert_true(core_slot_keys_insert(&keys, &s));
	struct core_slot same_key = flex_pension(202301, CITY_A, 120000, 20230120); /* other fields differ */
	assert_false(core_slot_keys_insert(&keys, &same_key));
	struct core_slot other_type = emp_pension(202301, CITY_A, 0, 0);
	other_type.type = CORE_MEDICAL;
	assert_true(core_slot_keys_insert(&keys, &other_type));
	struct core_slot other_city = emp_pension(202301, CITY_B, 0, 0);
	assert_true(core_slot_keys_insert(&keys, &other_city));
	struct core_slot other_month = emp_pension(202302, CITY_A, 0, 0);
	assert_true(core_slot_keys_insert(&keys, &other_month));
	struct core_slot year_before = emp_pension(202201, CITY_A, 0, 0);
	assert_true(core_slot_keys_insert(&keys, &year_before));
	assert_false(core_slot_keys_insert(&keys, &other_type));
	assert_false(core_slot_keys_insert(&keys, &other_city));
	assert_false(core_slot_keys_insert(&keys, &other_month));
}

/* ------------------------------------------------------------------------ */
/* Policies and R1 */

static void test_policy_find_by_city(void **state)
{
	struct world *w = *state;
	const struct core_policy_set *set = world_set(w);
	assert_ptr_equal(core_policy_find(set, CITY_A), &w->a.policy);
	assert_ptr_equal(core_policy_find(set, CITY_B), &w->b.policy);
	assert_null(core_policy_find(set, CITY_UNKNOWN));
	assert_null(core_policy_find(set, 100000));
}

static void test_resolve_unknown_city_names_slot_index(void **state)
{
	struct world *w = *state;
	const struct core_policy_set *set = world_set(w);
	struct core_slot slots[3] = {
		emp_pension(202301, CITY_A, 0, 0),
		emp_pension(202301, CITY_B, 0, 0),
		emp_pension(202301, CITY_UNKNOWN, 0, 0),
	};
	uint32_t index = 99;
	assert_int_equal(core_person_resolve(set, TL(slots, 3), &index), CORE_ERR_NO_POLICY);
	assert_int_equal(index, 2);
	assert_int_equal(core_person_resolve(set, TL(slots, 2), &index), CORE_OK);
}

static void test_resolve_month_before_first_period(void **state)
{
	struct world *w = *state;
	w->a.periods[0].from = M(200001);
	const struct core_policy_set *set = world_set(w);
	struct core_slot slots[3] = {
		emp_pension(200001, CITY_A, 0, 0), /* from == month: has a period */
		emp_pension(195001, CITY_B, 0, 0), /* city B's period starts 195001 */
		emp_pension(199912, CITY_A, 0, 0), /* one month before from */
	};
	uint32_t index = 99;
	assert_int_equal(core_person_resolve(set, TL(slots, 3), &index), CORE_ERR_NO_PERIOD);
	assert_int_equal(index, 2);
	assert_int_equal(core_person_resolve(set, TL(slots, 2), &index), CORE_OK);
	/* first error wins: a no-period slot before a no-policy one */
	struct core_slot first[2] = { emp_pension(199912, CITY_A, 0, 0), emp_pension(202301, CITY_UNKNOWN, 0, 0) };
	assert_int_equal(core_person_resolve(set, TL(first, 2), &index), CORE_ERR_NO_PERIOD);
	assert_int_equal(index, 0);
}

static void test_period_is_last_with_from_at_or_before_month(void **state)
{
	struct world *w = *state;
	period_defaults(&w->a.periods[0], M(202301));
	period_defaults(&w->a.periods[1], M(202307));
	w->a.periods[1].rate_ppm[CORE_PENSION][CORE_SHARE_EMPLOYER] = 100000;
	w->a.policy.period_count = 2;
	world_set(w);
	struct core_slot june = emp_pension(202306, CITY_A, 0, 0);
	struct core_slot july = emp_pension(202307, CITY_A, 0, 0);
	struct core_due d = core_slot_due(&w->a.policy, &june);
	assert_int_equal(d.employer_fen, 128000); /* rh(800000*160000/1e6), period 202301 */
	d = core_slot_due(&w->a.policy, &july);
	assert_int_equal(d.employer_fen, 80000); /* rh(800000*100000/1e6), period 202307 */
	assert_int_equal(d.individual_fen, 64000);
}

/* ------------------------------------------------------------------------ */
/* R2 due */

static void test_due_employee_shares_within_bounds(void **state)
{
	struct world *w = *state;
	w->a.periods[0].base_min_fen = 632600;
	w->a.periods[0].base_max_fen = 3389100;
	world_set(w);
	struct core_slot s = emp_pension(202303, CITY_A, 0, 0);
	struct core_due d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 128000);  /* rh(800000*160000/1e6) */
	assert_int_equal(d.individual_fen, 64000); /* rh(800000*80000/1e6) */
}

static void test_due_clamps_base_to_min_and_max(void **state)
{
	struct world *w = *state;
	w->a.periods[0].base_min_fen = 632600;
	w->a.periods[0].base_max_fen = 3389100;
	world_set(w);
	struct core_slot s = emp_pension(202303, CITY_A, 0, 0);

	s.base_fen = 500000; /* below min: b = 632600 */
	struct core_due d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 101216);  /* 632600*0.16 */
	assert_int_equal(d.individual_fen, 50608); /* 632600*0.08 */

	s.base_fen = 632599; /* one below min: b = 632600 */
	d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 101216);

	s.base_fen = 632700; /* inside: b = 632700 */
	d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 101232);  /* 632700*0.16 */
	assert_int_equal(d.individual_fen, 50616); /* 632700*0.08 */

	s.base_fen = 3389100; /* at max */
	d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 542256);   /* 3389100*0.16 */
	assert_int_equal(d.individual_fen, 271128); /* 3389100*0.08 */

	s.base_fen = 3389200; /* above max: b = 3389100 */
	d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 542256);
	assert_int_equal(d.individual_fen, 271128);

	s.base_fen = 0; /* zero: b = 632600 */
	d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 101216);
}

static void test_due_flexible_individual_pays_all(void **state)
{
	struct world *w = *state;
	world_set(w);
	struct core_slot s = flex_pension(202205, CITY_A, 0, 0);
	struct core_due d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 0);
	assert_int_equal(d.individual_fen, 120000); /* Appendix B 1: rh(600000*200000/1e6) */
	s = flex_medical(202205, CITY_A, 0, 0);
	d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 0);
	assert_int_equal(d.individual_fen, 48000); /* rh(600000*80000/1e6) */
}

static void test_due_rounds_half_up_at_exactly_half_fen(void **state)
{
	struct world *w = *state;
	world_set(w);
	/* unemployment 5000/5000 ppm */
	struct core_slot s = slot_make(202303, CITY_A, CORE_UNEMPLOYMENT, CORE_EMPLOYEE, 632700, 0, 0);
	struct core_due d = core_slot_due(&w->a.policy, &s);
	/* 632700*5000 = 3163500000; /1e6 = 3163.5 → rh = (3163500000+500000)/1e6 = 3164 */
	assert_int_equal(d.employer_fen, 3164);
	assert_int_equal(d.individual_fen, 3164);
	s.base_fen = 632699;
	d = core_slot_due(&w->a.policy, &s);
	/* 632699*5000 = 3163495000; 3163.495 → (3163495000+500000)/1e6 = 3163 */
	assert_int_equal(d.employer_fen, 3163);
	/* flexible 10000 ppm: 632650*10000/1e6 = 6326.5 → 6327 */
	s = slot_make(202303, CITY_A, CORE_UNEMPLOYMENT, CORE_FLEXIBLE, 632650, 0, 0);
	d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.individual_fen, 6327);
	assert_int_equal(d.employer_fen, 0);
}

static void test_due_missing_rate_is_zero(void **state)
{
	struct world *w = *state;
	world_set(w);
	struct core_slot s = slot_make(202303, CITY_A, CORE_INJURY, CORE_EMPLOYEE, EMP_BASE, 0, 0);
	struct core_due d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 3200); /* 800000*4000/1e6 */
	assert_int_equal(d.individual_fen, 0);  /* rate 0 */
	s.type = CORE_MATERNITY;
	d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 0);
	assert_int_equal(d.individual_fen, 0);
}

/* R2: "A deemed slot has due = 0." core.h documents core_slot_due as "R2 due
 * of a slot". base_min > 0 makes the difference visible (clamp(0) = base_min). */
static void test_due_of_deemed_slot_is_zero(void **state)
{
	struct world *w = *state;
	w->a.periods[0].base_min_fen = 632600;
	w->a.periods[0].base_max_fen = 3389100;
	world_set(w);
	struct core_slot s = deemed_make(202303, CITY_A, CORE_PENSION);
	struct core_due d = core_slot_due(&w->a.policy, &s);
	assert_int_equal(d.employer_fen, 0);
	assert_int_equal(d.individual_fen, 0);
}

static void test_deemed_slot_is_never_owed(void **state)
{
	struct world *w = *state;
	w->a.periods[0].base_min_fen = 632600;
	w->a.periods[0].base_max_fen = 3389100;
	struct core_slot s = deemed_make(202303, CITY_A, CORE_PENSION);
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 20230626, r), CORE_OK);
	assert_int_equal(r->out.months_owed, 0);
	assert_int_equal(r->out.principal_fen, 0);
	assert_int_equal(r->out.pending_fen, 0);
	assert_int_equal(r->item_count, 0);
}

/* ------------------------------------------------------------------------ */
/* R3 deadline */

static void test_deadline_day_31_clipped_to_february_non_leap_and_leap(void **state)
{
	struct world *w = *state;
	w->a.policy.deadline_day = 31;
	world_set(w);
	assert_int_equal(deadline_of(&w->a.policy, 202302), 20230228);
	assert_int_equal(deadline_of(&w->a.policy, 202402), 20240229);
	assert_int_equal(deadline_of(&w->a.policy, 200002), 20000229);
	assert_int_equal(deadline_of(&w->a.policy, 202301), 20230131);
	assert_int_equal(deadline_of(&w->a.policy, 202303), 20230331);
}

static void test_deadline_clipped_to_30_day_months(void **state)
{
	struct world *w = *state;
	w->a.policy.deadline_day = 31;
	w->b.policy.deadline_day = 30;
	world_set(w);
	assert_int_equal(deadline_of(&w->a.policy, 202304), 20230430);
	assert_int_equal(deadline_of(&w->a.policy, 202306), 20230630);
	assert_int_equal(deadline_of(&w->a.policy, 202309), 20230930);
	assert_int_equal(deadline_of(&w->a.policy, 202311), 20231130);
	assert_int_equal(deadline_of(&w->a.policy, 202312), 20231231);
	/* day 30: unchanged in 30- and 31-day months, clipped in February */
	assert_int_equal(deadline_of(&w->b.policy, 202304), 20230430);
	assert_int_equal(deadline_of(&w->b.policy, 202305), 20230530);
	assert_int_equal(deadline_of(&w->b.policy, 202302), 20230228);
	/* day 25 never clips */
	w->a.policy.deadline_day = 25;
	world_set(w);
	assert_int_equal(deadline_of(&w->a.policy, 202302), 20230225);
}

static void test_deadline_month_offset_1_wraps_year(void **state)
{
	struct world *w = *state;
	w->a.policy.deadline_day = 31;
	w->a.policy.deadline_month_offset = 1;
	world_set(w);
	assert_int_equal(deadline_of(&w->a.policy, 202301), 20230228); /* Feb 2023 clipped */
	assert_int_equal(deadline_of(&w->a.policy, 202401), 20240229); /* Feb 2024 clipped */
	assert_int_equal(deadline_of(&w->a.policy, 202303), 20230430); /* April clipped */
	assert_int_equal(deadline_of(&w->a.policy, 202311), 20231231);
	assert_int_equal(deadline_of(&w->a.policy, 202312), 20240131); /* year wrap */
}

static void test_deadline_month_offset_2_wraps_year(void **state)
{
	struct world *w = *state;
	w->a.policy.deadline_day = 31;
	w->a.policy.deadline_month_offset = 2;
	w->b.policy.deadline_day = 25;
	w->b.policy.deadline_month_offset = 2;
	world_set(w);
	assert_int_equal(deadline_of(&w->a.policy, 202310), 20231231);
	assert_int_equal(deadline_of(&w->a.policy, 202311), 20240131); /* Nov → Jan */
	assert_int_equal(deadline_of(&w->a.policy, 202312), 20240229); /* Dec → Feb, leap */
	assert_int_equal(deadline_of(&w->a.policy, 202212), 20230228); /* Dec → Feb, not leap */
	assert_int_equal(deadline_of(&w->b.policy, 202312), 20240225);
	assert_int_equal(deadline_of(&w->b.policy, 202311), 20240125);
	/* last month of the range: 209912 + 2 = 210002, 2100 not leap */
	assert_int_equal(deadline_of(&w->a.policy, 209912), 21000228);
}

/* ------------------------------------------------------------------------ */
/* R4 owed, pending and arrears; R5 tiers and expiry */

static void test_pending_on_deadline_day_arrears_day_after(void **state)
{
	struct world *w = *state;
	struct core_slot s = emp_pension(202303, CITY_A, 0, 0); /* deadline 20230325 */
	struct arrears_run *r = &w->arrears;

	assert_int_equal(arrears_of(w, &s, 1, 20230325, r), CORE_OK);
	assert_int_equal(r->out.pending_fen, EMP_PENSION_DUE);
	assert_int_equal(r->out.months_owed, 0);
	assert_int_equal(r->out.principal_fen, 0);
	assert_int_equal(r->out.late_fee_fen, 0);
	assert_int_equal(r->item_count, 0);
	assert_int_equal(r->out.first_month, -1);
	assert_int_equal(r->out.last_month, -1);

	assert_int_equal(arrears_of(w, &s, 1, 20230326, r), CORE_OK);
	assert_int_equal(r->out.pending_fen, 0);
	assert_int_equal(r->out.months_owed, 1);
	assert_int_equal(r->out.principal_fen, EMP_PENSION_DUE);
	assert_int_equal(r->out.late_fee_fen, 96); /* rh(192000*500*1/1e6) = 96 */
	assert_int_equal(r->out.total_fen, 192096);
	assert_int_equal(r->item_count, 1);
	assert_int_equal(r->out.first_month, M(202303));
	assert_int_equal(r->out.last_month, M(202303));

	/* a month after month(D) is future: neither pending nor owed */
	struct core_slot future = emp_pension(202304, CITY_A, 0, 0);
	assert_int_equal(arrears_of(w, &future, 1, 20230331, r), CORE_OK);
	assert_int_equal(r->out.pending_fen, 0);
	assert_int_equal(r->out.months_owed, 0);
	assert_int_equal(r->item_count, 0);
}

static void test_pending_with_month_offset_1_extends_into_next_month(void **state)
{
	struct world *w = *state;
	w->a.policy.deadline_month_offset = 1;
	struct core_slot s = emp_pension(202303, CITY_A, 0, 0); /* deadline 20230425 */
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 20230410, r), CORE_OK);
	assert_int_equal(r->out.pending_fen, EMP_PENSION_DUE);
	assert_int_equal(r->out.months_owed, 0);
	assert_int_equal(arrears_of(w, &s, 1, 20230425, r), CORE_OK);
	assert_int_equal(r->out.pending_fen, EMP_PENSION_DUE);
	assert_int_equal(r->out.months_owed, 0);
	assert_int_equal(arrears_of(w, &s, 1, 20230426, r), CORE_OK);
	assert_int_equal(r->out.pending_fen, 0);
	assert_int_equal(r->out.months_owed, 1);
	assert_int_equal(r->out.late_fee_fen, 96); /* 1 day: rh(192000*500/1e6) */
	assert_int_equal(r->items[0].deadline_date, 20230425);
	assert_int_equal(r->items[0].tier, CORE_TIER_DIRECT); /* age 202304 − 202303 = 1 */
}

static void test_paid_money_covers_individual_share_first(void **state)
{
	struct world *w = *state;
	struct arrears_run *r = &w->arrears;
	/* due 128000 employer + 64000 individual */
	struct core_slot s = emp_pension(202303, CITY_A, 10000, 20230410);
	assert_int_equal(arrears_of(w, &s, 1, 20230626, r), CORE_OK);
	assert_int_equal(r->items[0].owed_fen, 182000);            /* 192000 − 10000 */
	assert_int_equal(r->items[0].owed_individual_fen, 54000);  /* 64000 − 10000 */
	assert_int_equal(r->items[0].owed_employer_fen, 128000);   /* 182000 − 54000 */

	s.paid_fen = 64000; /* exactly the individual share */
	assert_int_equal(arrears_of(w, &s, 1, 20230626, r), CORE_OK);
	assert_int_equal(r->items[0].owed_fen, 128000);
	assert_int_equal(r->items[0].owed_individual_fen, 0);
	assert_int_equal(r->items[0].owed_employer_fen, 128000);

	s.paid_fen = 70000; /* more than the individual share */
	assert_int_equal(arrears_of(w, &s, 1, 20230626, r), CORE_OK);
	assert_int_equal(r->items[0].owed_fen, 122000);
	assert_int_equal(r->items[0].owed_individual_fen, 0);
	assert_int_equal(r->items[0].owed_employer_fen, 122000);
	assert_int_equal(r->items[0].paid_fen, 70000);
	assert_int_equal(r->items[0].due_fen, EMP_PENSION_DUE);
}

static void test_paid_in_full_or_more_is_not_owed(void **state)
{
	struct world *w = *state;
	struct arrears_run *r = &w->arrears;
	struct core_slot s = emp_pension(202303, CITY_A, 192000, 20230410);
	assert_int_equal(arrears_of(w, &s, 1, 20230626, r), CORE_OK);
	assert_int_equal(r->out.months_owed, 0);
	assert_int_equal(r->item_count, 0);
	s.paid_fen = 200000;
	assert_int_equal(arrears_of(w, &s, 1, 20230626, r), CORE_OK);
	assert_int_equal(r->out.months_owed, 0);
	assert_int_equal(r->out.principal_fen, 0);
	s.paid_fen = 191999; /* one fen short */
	assert_int_equal(arrears_of(w, &s, 1, 20230626, r), CORE_OK);
	assert_int_equal(r->out.months_owed, 1);
	assert_int_equal(r->out.principal_fen, 1);
	assert_int_equal(r->items[0].owed_individual_fen, 0);
	assert_int_equal(r->items[0].owed_employer_fen, 1);
}

static void test_tier_boundaries_direct_verify_approval_legacy(void **state)
{
	struct world *w = *state;
	/* as of 20230626, month(D) = 202306; direct ≤ 3, verify ≤ 60, legacy < 201107 */
	struct core_slot slots[7] = {
		emp_pension(202306, CITY_A, 0, 0), /* age 0: direct (D > 20230625) */
		emp_pension(202303, CITY_A, 0, 0), /* age 3 == direct_max: direct */
		emp_pension(202302, CITY_A, 0, 0), /* age 4: verify */
		emp_pension(201806, CITY_A, 0, 0), /* age 60 == verify_max: verify */
		emp_pension(201805, CITY_A, 0, 0), /* age 61: approval */
		emp_pension(201107, CITY_A, 0, 0), /* == legacy_before, age 143: approval */
		emp_pension(201106, CITY_A, 0, 0), /* legacy_before − 1: legacy */
	};
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, slots, 7, 20230626, r), CORE_OK);
	assert_int_equal(r->item_count, 7);
	/* items ascending by month */
	assert_int_equal(r->items[0].month, M(201106));
	assert_int_equal(r->items[0].tier, CORE_TIER_LEGACY);
	assert_int_equal(r->items[1].month, M(201107));
	assert_int_equal(r->items[1].tier, CORE_TIER_APPROVAL);
	assert_int_equal(r->items[2].month, M(201805));
	assert_int_equal(r->items[2].tier, CORE_TIER_APPROVAL);
	assert_int_equal(r->items[3].month, M(201806));
	assert_int_equal(r->items[3].tier, CORE_TIER_VERIFY);
	assert_int_equal(r->items[4].month, M(202302));
	assert_int_equal(r->items[4].tier, CORE_TIER_VERIFY);
	assert_int_equal(r->items[5].month, M(202303));
	assert_int_equal(r->items[5].tier, CORE_TIER_DIRECT);
	assert_int_equal(r->items[6].month, M(202306));
	assert_int_equal(r->items[6].tier, CORE_TIER_DIRECT);
	assert_int_equal(r->out.tiers[CORE_TIER_DIRECT], 2);
	assert_int_equal(r->out.tiers[CORE_TIER_VERIFY], 2);
	assert_int_equal(r->out.tiers[CORE_TIER_APPROVAL], 2);
	assert_int_equal(r->out.tiers[CORE_TIER_LEGACY], 1);
	assert_int_equal(r->out.months_owed, 7);
	assert_int_equal(r->out.first_month, M(201106));
	assert_int_equal(r->out.last_month, M(202306));
}

static void test_tier_legacy_wins_over_direct(void **state)
{
	struct world *w = *state;
	BOTH(w, backpay_legacy_before, M(202401));
	struct core_slot s = emp_pension(202303, CITY_A, 0, 0); /* age 3, but before 202401 */
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 20230626, r), CORE_OK);
	assert_int_equal(r->items[0].tier, CORE_TIER_LEGACY);
	assert_int_equal(r->out.tiers[CORE_TIER_LEGACY], 1);
	assert_int_equal(r->out.tiers[CORE_TIER_DIRECT], 0);
}

static void test_flexible_window_expires_at_window_plus_one(void **state)
{
	struct world *w = *state;
	static const struct core_year_rate none[1] = { { 0, 0 } };
	BOTH(w, backpay_flexible_window_months, 24);
	BOTH(w, late_fee_categories, 1u << CORE_FLEXIBLE);
	interest_table(&w->a, 120000, none, 0);
	/* as of 20230626, month(D) 202306 */
	struct core_slot slots[2] = {
		flex_pension(202106, CITY_A, 0, 0), /* age 24 == window: payable */
		flex_pension(202105, CITY_A, 0, 0), /* age 25: expired */
	};
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, slots, 2, 20230626, r), CORE_OK);
	/* interest of 202106 at 120000 ppm every year:
	 * 2021, 12 − 6 = 6 months: rh(120000*120000*6/12e6) = 7200 → 127200
	 * 2022: rh(127200*120000/1e6) = 15264 → 142464
	 * 2023, 6 months: rh(142464*120000*6/12e6) = rh(8547.84) = 8548 → 151012; interest 31012
	 * fee: 20210625 → 20230625 is 365 + 365 days, +1 = 731; rh(120000*500*731/1e6) = 43860 */
	assert_int_equal(r->out.months_owed, 1);
	assert_int_equal(r->out.principal_fen, 120000);
	assert_int_equal(r->out.interest_fen, 31012);
	assert_int_equal(r->out.late_fee_fen, 43860);
	assert_int_equal(r->out.total_fen, 194872); /* 120000 + 31012 + 43860 */
	assert_int_equal(r->out.expired_months, 1);
	assert_int_equal(r->out.expired_principal_fen, 120000);
	assert_int_equal(r->out.first_month, M(202106));
	assert_int_equal(r->out.last_month, M(202106));
	assert_int_equal(r->out.by_type[CORE_PENSION].months, 1);
	assert_int_equal(r->out.by_type[CORE_PENSION].principal_fen, 120000);
	assert_int_equal(r->out.by_type[CORE_PENSION].interest_fen, 31012);
	assert_int_equal(r->out.by_type[CORE_PENSION].late_fee_fen, 43860);
	assert_int_equal(r->out.tiers[CORE_TIER_VERIFY], 1); /* payable slots only */
	assert_int_equal(r->item_count, 2);
	assert_int_equal(r->items[0].month, M(202105));
	assert_true(r->items[0].expired);
	assert_int_equal(r->items[0].owed_fen, 120000);
	assert_int_equal(r->items[0].interest_fen, 0);
	assert_int_equal(r->items[0].late_fee_fen, 0);
	assert_int_equal(r->items[1].month, M(202106));
	assert_false(r->items[1].expired);
	assert_int_equal(r->items[1].interest_fen, 31012);
	assert_int_equal(r->items[1].late_fee_fen, 43860);
}

static void test_flexible_window_does_not_expire_employee_slots(void **state)
{
	struct world *w = *state;
	BOTH(w, backpay_flexible_window_months, 24);
	struct core_slot s = emp_pension(202105, CITY_A, 0, 0); /* age 25, employee */
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 20230626, r), CORE_OK);
	assert_int_equal(r->out.expired_months, 0);
	assert_int_equal(r->out.months_owed, 1);
	assert_false(r->items[0].expired);
}

static void test_flexible_window_zero_never_expires(void **state)
{
	struct world *w = *state;
	struct core_slot s = flex_pension(197301, CITY_A, 0, 0); /* age 605 */
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 20230626, r), CORE_OK);
	assert_int_equal(r->out.expired_months, 0);
	assert_int_equal(r->out.expired_principal_fen, 0);
	assert_int_equal(r->out.months_owed, 1);
	assert_int_equal(r->out.principal_fen, 120000);
	assert_false(r->items[0].expired);
	assert_int_equal(r->items[0].tier, CORE_TIER_LEGACY);
}

static void test_payment_dated_after_as_of_is_unpaid(void **state)
{
	struct world *w = *state;
	struct core_slot s = emp_pension(202303, CITY_A, 192000, 20230701);
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 20230626, r), CORE_OK);
	assert_int_equal(r->out.months_owed, 1);
	assert_int_equal(r->out.principal_fen, 192000);
	assert_int_equal(r->items[0].paid_fen, 0);
	/* 20230325 → 20230626: 6 + 30 + 31 + 26 = 93 days; rh(192000*500*93/1e6) = 96*93 = 8928 */
	assert_int_equal(r->out.late_fee_fen, 8928);
	assert_int_equal(arrears_of(w, &s, 1, 20230701, r), CORE_OK); /* paid_date == D: paid */
	assert_int_equal(r->out.months_owed, 0);
	assert_int_equal(r->out.principal_fen, 0);
}

/* ------------------------------------------------------------------------ */
/* R6 interest */

static void test_interest_appendix_b1_three_years(void **state)
{
	struct world *w = *state;
	struct core_slot s = flex_pension(202205, CITY_A, 0, 0);
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 20240310, r), CORE_OK);
	/* Appendix B 1: 4284 → 124284; 4934 → 129218; 846 → 130064 */
	assert_int_equal(r->out.principal_fen, 120000);
	assert_int_equal(r->out.interest_fen, 10064);
	assert_int_equal(r->out.late_fee_fen, 0);
	assert_int_equal(r->out.total_fen, 130064);
	assert_int_equal(r->item_count, 1);
	assert_int_equal(r->items[0].due_fen, 120000);
	assert_int_equal(r->items[0].interest_fen, 10064);
	assert_int_equal(r->items[0].late_fee_fen, 0);
	assert_int_equal(r->items[0].tier, CORE_TIER_VERIFY); /* age 22 */
	assert_int_equal(r->items[0].deadline_date, 20220525);
	assert_int_equal(r->out.tiers[CORE_TIER_VERIFY], 1);
}

static void test_interest_same_year(void **state)
{
	struct world *w = *state;
	struct core_slot s = flex_pension(202402, CITY_A, 0, 0);
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 20240610, r), CORE_OK);
	/* 2024 at 26200 ppm, 6 − 2 = 4 months: 120000*26200*4 = 12576000000 / 12e6 = 1048 */
	assert_int_equal(r->out.interest_fen, 1048);
	assert_int_equal(r->out.total_fen, 121048);
}

static void test_interest_zero_when_arrears_month_is_month_of_as_of(void **state)
{
	struct world *w = *state;
	struct core_slot s = flex_pension(202403, CITY_A, 0, 0); /* deadline 20240325 */
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 20240326, r), CORE_OK);
	assert_int_equal(r->out.months_owed, 1);
	assert_int_equal(r->out.principal_fen, 120000);
	assert_int_equal(r->out.interest_fen, 0); /* month(D) − month = 0 */
	assert_int_equal(r->out.total_fen, 120000);
}

/* The four lookups of r(y); each gives 2400 for the right rate:
 * slot 202106/202206 flexible pension, 2 months inside one year at 120000 ppm:
 * rh(120000*120000*2/12e6) = 2400 (60000 ppm would give 1200, 0 ppm 0). */
static int64_t interest_of_one(struct world *w, int32_t yyyymm, int32_t date)
{
	struct core_slot s = flex_pension(yyyymm, CITY_A, 0, 0);
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, date, r), CORE_OK);
	return r->out.interest_fen;
}

static void test_interest_year_after_table_uses_last_rate(void **state)
{
	struct world *w = *state;
	static const struct core_year_rate rates[] = { { 2020, 60000 }, { 2021, 120000 } };
	interest_table(&w->a, 0, rates, 2);
	assert_int_equal(interest_of_one(w, 202206, 20220826), 2400); /* r(2022) = r(2021) */
}

static void test_interest_year_before_table_uses_default(void **state)
{
	struct world *w = *state;
	static const struct core_year_rate rates[] = { { 2023, 60000 } };
	interest_table(&w->a, 120000, rates, 1);
	assert_int_equal(interest_of_one(w, 202206, 20220826), 2400); /* r(2022) = default */
}

static void test_interest_missing_year_inside_table_uses_nearest_earlier(void **state)
{
	struct world *w = *state;
	static const struct core_year_rate rates[] = { { 2020, 120000 }, { 2022, 60000 } };
	interest_table(&w->a, 0, rates, 2);
	assert_int_equal(interest_of_one(w, 202106, 20210826), 2400); /* r(2021) = r(2020) */
}

static void test_interest_empty_table_uses_default(void **state)
{
	struct world *w = *state;
	interest_table(&w->a, 120000, NULL, 0);
	assert_int_equal(interest_of_one(w, 202206, 20220826), 2400);
}

static void test_interest_compounds_across_gap_and_past_table_end(void **state)
{
	struct world *w = *state;
	static const struct core_year_rate rates[] = { { 2020, 120000 }, { 2022, 60000 } };
	interest_table(&w->a, 0, rates, 2);
	/* slot 202006, as of 20230226 (md = 2):
	 * 2020, 6 months at 120000: rh(120000*120000*6/12e6) = 7200 → 127200
	 * 2021 (gap → 2020's 120000): rh(127200*0.12) = 15264 → 142464
	 * 2022 at 60000: rh(142464*0.06) = rh(8547.84) = 8548 → 151012
	 * 2023 (after the table → 60000), 2 months: rh(151012*60000*2/12e6) = rh(1510.12) = 1510 → 152522 */
	assert_int_equal(interest_of_one(w, 202006, 20230226), 32522);
}

static void test_interest_types_and_categories_filter(void **state)
{
	struct world *w = *state;
	/* as of 20240610, 2024 rate 26200, 4 months: factor 26200*4/12e6 */
	struct core_slot slots[3] = {
		flex_pension(202402, CITY_A, 0, 0), /* 120000*26200*4/12e6 = 1048 */
		flex_medical(202402, CITY_A, 0, 0), /* 48000*26200*4/12e6 = 419.2 → 419 */
		emp_pension(202402, CITY_B, 0, 0),  /* 192000*26200*4/12e6 = 1676.8 → 1677 */
	};
	struct arrears_run *r = &w->arrears;
	/* defaults: pension, flexible */
	assert_int_equal(arrears_of(w, slots, 3, 20240610, r), CORE_OK);
	assert_int_equal(r->items[0].type, CORE_PENSION);
	assert_int_equal(r->items[0].city, CITY_A);
	assert_int_equal(r->items[1].type, CORE_MEDICAL);
	assert_int_equal(r->items[2].city, CITY_B);
	assert_int_equal(r->items[0].interest_fen, 1048);
	assert_int_equal(r->items[1].interest_fen, 0);
	assert_int_equal(r->items[2].interest_fen, 0);
	assert_int_equal(r->out.interest_fen, 1048);

	BOTH(w, interest_types, (1u << CORE_PENSION) | (1u << CORE_MEDICAL));
	BOTH(w, interest_categories, (1u << CORE_EMPLOYEE) | (1u << CORE_FLEXIBLE));
	assert_int_equal(arrears_of(w, slots, 3, 20240610, r), CORE_OK);
	assert_int_equal(r->items[0].interest_fen, 1048);
	assert_int_equal(r->items[1].interest_fen, 419);
	assert_int_equal(r->items[2].interest_fen, 1677);
	assert_int_equal(r->out.interest_fen, 3144); /* 1048 + 419 + 1677 */
	assert_int_equal(r->out.by_type[CORE_PENSION].interest_fen, 2725);
	assert_int_equal(r->out.by_type[CORE_MEDICAL].interest_fen, 419);

	BOTH(w, interest_types, 1u << CORE_MEDICAL);
	BOTH(w, interest_categories, 1u << CORE_EMPLOYEE);
	assert_int_equal(arrears_of(w, slots, 3, 20240610, r), CORE_OK);
	assert_int_equal(r->out.interest_fen, 0); /* the medical slot is flexible */

	BOTH(w, interest_categories, 1u << CORE_FLEXIBLE);
	assert_int_equal(arrears_of(w, slots, 3, 20240610, r), CORE_OK);
	assert_int_equal(r->items[0].interest_fen, 0);
	assert_int_equal(r->items[1].interest_fen, 419);
	assert_int_equal(r->items[2].interest_fen, 0);
}

/* ------------------------------------------------------------------------ */
/* R7 late fee */

static void test_late_fee_appendix_b2(void **state)
{
	struct world *w = *state;
	struct core_slot s = emp_pension(202303, CITY_A, 50000, 20230410);
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 20230615, r), CORE_OK);
	assert_int_equal(r->item_count, 1);
	const struct core_arrears_item *it = &r->items[0];
	assert_int_equal(it->due_fen, 192000);
	assert_int_equal(it->paid_fen, 50000);
	assert_int_equal(it->owed_fen, 142000);
	assert_int_equal(it->owed_individual_fen, 14000);
	assert_int_equal(it->owed_employer_fen, 128000);
	assert_int_equal(it->deadline_date, 20230325);
	assert_int_equal(it->late_fee_fen, 5822); /* rh(142000*500*82/1e6) */
	assert_int_equal(it->interest_fen, 0);    /* employee: not in interest.categories */
	assert_int_equal(it->tier, CORE_TIER_DIRECT); /* age 3 */
	assert_int_equal(it->month, M(202303));
	assert_int_equal(it->city, CITY_A);
	assert_int_equal(it->type, CORE_PENSION);
	assert_int_equal(it->category, CORE_EMPLOYEE);
	assert_false(it->expired);
	assert_int_equal(r->out.principal_fen, 142000);
	assert_int_equal(r->out.late_fee_fen, 5822);
	assert_int_equal(r->out.total_fen, 147822); /* 142000 + 5822 */
	assert_int_equal(r->out.tiers[CORE_TIER_DIRECT], 1);
}

static void test_late_fee_counts_days_after_deadline_clipped_to_february(void **state)
{
	struct world *w = *state;
	w->a.policy.deadline_day = 31;
	struct arrears_run *r = &w->arrears;
	struct core_slot s = emp_pension(202302, CITY_A, 0, 0); /* deadline 20230228 */
	assert_int_equal(arrears_of(w, &s, 1, 20230228, r), CORE_OK);
	assert_int_equal(r->out.pending_fen, 192000);
	assert_int_equal(arrears_of(w, &s, 1, 20230301, r), CORE_OK);
	assert_int_equal(r->items[0].deadline_date, 20230228);
	assert_int_equal(r->out.late_fee_fen, 96); /* 1 day: rh(192000*500/1e6) = 96 */
	s = emp_pension(202402, CITY_A, 0, 0);     /* deadline 20240229 */
	assert_int_equal(arrears_of(w, &s, 1, 20240229, r), CORE_OK);
	assert_int_equal(r->out.pending_fen, 192000);
	assert_int_equal(arrears_of(w, &s, 1, 20240301, r), CORE_OK);
	assert_int_equal(r->out.late_fee_fen, 96);
	assert_int_equal(arrears_of(w, &s, 1, 20240310, r), CORE_OK);
	assert_int_equal(r->out.late_fee_fen, 960); /* 10 days */
}

static void test_late_fee_cap_at_principal_boundary(void **state)
{
	struct world *w = *state;
	BOTH(w, late_fee_daily_ppm, 10000);
	BOTH(w, late_fee_cap_at_principal, true);
	struct core_slot s = emp_pension(202303, CITY_A, 0, 0); /* owed 192000, deadline 20230325 */
	struct arrears_run *r = &w->arrears;
	/* 1920 fen a day; 20230325 + 99 days = 20230702 (6 + 30 + 31 + 30 + 2) */
	assert_int_equal(arrears_of(w, &s, 1, 20230702, r), CORE_OK);
	assert_int_equal(r->out.late_fee_fen, 190080); /* 1920*99 < 192000 */
	assert_int_equal(arrears_of(w, &s, 1, 20230703, r), CORE_OK);
	assert_int_equal(r->out.late_fee_fen, 192000); /* 1920*100 == cap */
	assert_int_equal(arrears_of(w, &s, 1, 20230704, r), CORE_OK);
	assert_int_equal(r->out.late_fee_fen, 192000); /* 1920*101 = 193920 capped */
	assert_int_equal(r->out.total_fen, 384000);
	BOTH(w, late_fee_cap_at_principal, false);
	assert_int_equal(arrears_of(w, &s, 1, 20230704, r), CORE_OK);
	assert_int_equal(r->out.late_fee_fen, 193920);
}

static void test_late_fee_categories_filter(void **state)
{
	struct world *w = *state;
	/* as of 20230615: 82 days after 20230325 */
	struct core_slot slots[2] = {
		emp_pension(202303, CITY_A, 0, 0),  /* 192000*500*82/1e6 = 7872 */
		flex_pension(202303, CITY_B, 0, 0), /* 120000*500*82/1e6 = 4920 */
	};
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, slots, 2, 20230615, r), CORE_OK);
	assert_int_equal(r->items[0].late_fee_fen, 7872);
	assert_int_equal(r->items[1].late_fee_fen, 0);
	BOTH(w, late_fee_categories, 1u << CORE_FLEXIBLE);
	assert_int_equal(arrears_of(w, slots, 2, 20230615, r), CORE_OK);
	assert_int_equal(r->items[0].late_fee_fen, 0);
	assert_int_equal(r->items[1].late_fee_fen, 4920);
	BOTH(w, late_fee_categories, (1u << CORE_FLEXIBLE) | (1u << CORE_EMPLOYEE));
	assert_int_equal(arrears_of(w, slots, 2, 20230615, r), CORE_OK);
	assert_int_equal(r->out.late_fee_fen, 12792); /* 7872 + 4920 */
	BOTH(w, late_fee_categories, 0);
	assert_int_equal(arrears_of(w, slots, 2, 20230615, r), CORE_OK);
	assert_int_equal(r->out.late_fee_fen, 0);
}

/* ------------------------------------------------------------------------ */
/* Overflow: 10^6 ppm doubles the balance every full year. */

static void overflow_policy(struct world *w)
{
	w->a.periods[0].rate_ppm[CORE_PENSION][CORE_SHARE_FLEXIBLE] = 1000000;
	w->a.periods[0].rate_ppm[CORE_MEDICAL][CORE_SHARE_FLEXIBLE] = 1000000;
	interest_table(&w->a, 1000000, NULL, 0);
}

static void test_overflow_interest_balance_past_2_pow_53(void **state)
{
	struct world *w = *state;
	overflow_policy(w);
	/* due = rh(10^10 * 10^6 / 10^6) = 10^10; 1950: 12 − 12 = 0 months;
	 * 1951..1970: 20 doublings → 10^10 * 2^20 = 10485760000000000 > 2^53 = 9007199254740992 */
	struct core_slot s = slot_make(195012, CITY_A, CORE_PENSION, CORE_FLEXIBLE, CORE_MONEY_MAX, 0, 0);
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 19710105, r), CORE_ERR_OVERFLOW);
}

static void test_overflow_not_reached_one_year_earlier(void **state)
{
	struct world *w = *state;
	overflow_policy(w);
	/* 1951..1969: 19 doublings → B = 10^10 * 2^19 = 5242880000000000;
	 * 1970, 1 month: rh(B/12) = rh(436906666666666.67) = 436906666666667
	 * → B = 5679786666666667 ≤ 2^53; interest = B − 10^10 */
	struct core_slot s = slot_make(195012, CITY_A, CORE_PENSION, CORE_FLEXIBLE, CORE_MONEY_MAX, 0, 0);
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 19700105, r), CORE_OK);
	assert_int_equal(r->out.principal_fen, 10000000000LL);
	assert_int_equal(r->out.interest_fen, 5679776666666667LL);
	assert_int_equal(r->out.total_fen, 5679786666666667LL);
}

static void test_overflow_in_last_partial_year_step(void **state)
{
	struct world *w = *state;
	overflow_policy(w);
	/* after 1951..1969, B = 10^10 * 2^19 = 5242880000000000; in 1970 with md months
	 * B += rh(B*md/12), and 2^53 / B = 1.718: md = 8 stays under, md = 9 passes.
	 * md 8: rh(41943040000000000/12) = rh(3495253333333333.33) = 3495253333333333
	 *       → B = 8738133333333333 ≤ 9007199254740992
	 * md 9: B*9/12 = 3932160000000000 → B = 9175040000000000 > 2^53 */
	struct core_slot s = slot_make(195012, CITY_A, CORE_PENSION, CORE_FLEXIBLE, CORE_MONEY_MAX, 0, 0);
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, &s, 1, 19700825, r), CORE_OK);
	assert_int_equal(r->out.interest_fen, 8738123333333333LL); /* B − 10^10 */
	assert_int_equal(r->out.total_fen, 8738133333333333LL);
	assert_int_equal(arrears_of(w, &s, 1, 19700905, r), CORE_ERR_OVERFLOW);
}

static void test_overflow_sum_of_interest_past_2_pow_53(void **state)
{
	struct world *w = *state;
	overflow_policy(w);
	w->a.policy.interest_types = (1u << CORE_PENSION) | (1u << CORE_MEDICAL);
	/* each slot alone: interest 5679776666666667 (test above); two of them sum to
	 * 11359553333333334 > 2^53 */
	struct core_slot slots[2] = {
		slot_make(195012, CITY_A, CORE_PENSION, CORE_FLEXIBLE, CORE_MONEY_MAX, 0, 0),
		slot_make(195012, CITY_A, CORE_MEDICAL, CORE_FLEXIBLE, CORE_MONEY_MAX, 0, 0),
	};
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, slots, 1, 19700105, r), CORE_OK);
	assert_int_equal(arrears_of(w, slots, 2, 19700105, r), CORE_ERR_OVERFLOW);
}

/* ------------------------------------------------------------------------ */
/* Items, months_owed, by_type */

static void test_items_sorted_by_month_city_type_and_sums(void **state)
{
	struct world *w = *state;
	/* given out of order; as of 20230626, all employee and unpaid */
	struct core_slot slots[5] = {
		slot_make(202302, CITY_B, CORE_MEDICAL, CORE_EMPLOYEE, EMP_BASE, 0, 0),
		emp_pension(202301, CITY_B, 0, 0),
		slot_make(202302, CITY_A, CORE_UNEMPLOYMENT, CORE_EMPLOYEE, EMP_BASE, 0, 0),
		emp_pension(202302, CITY_A, 0, 0),
		slot_make(202301, CITY_A, CORE_MEDICAL, CORE_EMPLOYEE, EMP_BASE, 0, 0),
	};
	struct arrears_run *r = &w->arrears;
	assert_int_equal(arrears_of(w, slots, 5, 20230626, r), CORE_OK);
	/* days late: 202301 (deadline 20230125): 6+28+31+30+31+26 = 152;
	 *            202302 (deadline 20230225): 3+31+30+31+26 = 121
	 * fee a day at 500 ppm: pension 192000 → 96; medical 94400 → 47.2;
	 * unemployment 4000+4000 = 8000 → 4 */
	assert_int_equal(r->item_count, 5);
	assert_int_equal(r->items[0].month, M(202301));
	assert_int_equal(r->items[0].city, CITY_A);
	assert_int_equal(r->items[0].type, CORE_MEDICAL);
	assert_int_equal(r->items[0].owed_fen, EMP_MEDICAL_DUE);
	assert_int_equal(r->items[0].late_fee_fen, 7174); /* 47.2*152 = 7174.4 */
	assert_int_equal(r->items[1].month, M(202301));
	assert_int_equal(r->items[1].city, CITY_B);
	assert_int_equal(r->items[1].type, CORE_PENSION);
	assert_int_equal(r->items[1].late_fee_fen, 14592); /* 96*152 */
	assert_int_equal(r->items[2].month, M(202302));
	assert_int_equal(r->items[2].city, CITY_A);
	assert_int_equal(r->items[2].type, CORE_PENSION);
	assert_int_equal(r->items[2].late_fee_fen, 11616); /* 96*121 */
	assert_int_equal(r->items[3].month, M(202302));
	assert_int_equal(r->items[3].city, CITY_A);
	assert_int_equal(r->items[3].type, CORE_UNEMPLOYMENT);
	assert_int_equal(r->items[3].owed_fen, 8000);
	assert_int_equal(r->items[3].late_fee_fen, 484); /* 4*121 */
	assert_int_equal(r->items[4].month, M(202302));
	assert_int_equal(r->items[4].city, CITY_B);
	assert_int_equal(r->items[4].type, CORE_MEDICAL);
	assert_int_equal(r->items[4].late_fee_fen, 5711); /* 47.2*121 = 5711.2 */

	assert_int_equal(r->out.months_owed, 2); /* 202301 and 202302, each in 2 cities */
	assert_int_equal(r->out.principal_fen, 580800); /* 2*192000 + 2*94400 + 8000 */
	assert_int_equal(r->out.late_fee_fen, 39577);   /* 14592+11616 + 7174+5711 + 484 */
	assert_int_equal(r->out.interest_fen, 0);
	assert_int_equal(r->out.total_fen, 620377);
	assert_int_equal(r->out.by_type[CORE_PENSION].months, 2);
	assert_int_equal(r->out.by_type[CORE_PENSION].principal_fen, 384000);
	assert_int_equal(r->out.by_type[CORE_PENSION].late_fee_fen, 26208);
	assert_int_equal(r->out.by_type[CORE_MEDICAL].months, 2);
	assert_int_equal(r->out.by_type[CORE_MEDICAL].principal_fen, 188800);
	assert_int_equal(r->out.by_type[CORE_MEDICAL].late_fee_fen, 12885);
	assert_int_equal(r->out.by_type[CORE_UNEMPLOYMENT].months, 1);
	assert_int_equal(r->out.by_type[CORE_UNEMPLOYMENT].principal_fen, 8000);
	assert_int_equal(r->out.by_type[CORE_UNEMPLOYMENT].late_fee_fen, 484);
	assert_int_equal(r->out.by_type[CORE_INJURY].months, 0);
	assert_int_equal(r->out.by_type[CORE_INJURY].principal_fen, 0);
	assert_int_equal(r->out.by_type[CORE_MATERNITY].months, 0);
	assert_int_equal(r->out.tiers[CORE_TIER_VERIFY], 5); /* ages 5 and 4 */
	assert_int_equal(r->out.first_month, M(202301));
	assert_int_equal(r->out.last_month, M(202302));
}

static void test_arrears_item_count_without_items_buffer(void **state)
{
	struct world *w = *state;
	struct core_slot slots[2] = { emp_pension(202301, CITY_A, 0, 0), emp_pension(202302, CITY_A, 0, 0) };
	const struct core_policy_set *set = world_set(w);
	struct core_arrears out;
	uint32_t count = 99;
	assert_int_equal(core_arrears_compute(set, TL(slots, 2), core_as_of_make(20230626), &out, NULL, &count), CORE_OK);
	assert_int_equal(out.months_owed, 2);
	assert_int_equal(out.principal_fen, 384000);
}

/* ------------------------------------------------------------------------ */
/* R8 counted months */

static void test_years_classification_and_duplicates(void **state)
{
	struct world *w = *state;
	/* as of 20231231; pension due 192000, medical due 94400 */
	struct core_slot slots[] = {
		emp_pension(202306, CITY_A, 192000, 20230626), /* deadline + 1: backpaid */
		emp_pension(202301, CITY_B, 192000, 20230401), /* backpaid in B ... */
		emp_pension(202301, CITY_A, 192000, 20230120), /* ... on time in A: on_time, duplicate */
		deemed_make(202302, CITY_A, CORE_PENSION),     /* deemed in A ... */
		emp_pension(202302, CITY_B, 192000, 20230301), /* ... backpaid in B: backpaid, no dup */
		deemed_make(202303, CITY_A, CORE_PENSION),     /* deemed only */
		emp_pension(202304, CITY_A, 100000, 20230420), /* partial: not counted ... */
		emp_pension(202304, CITY_B, 192000, 20230420), /* ... on time in B: no dup */
		emp_pension(202305, CITY_A, 192000, 20230525), /* paid on the deadline: on time */
		emp_pension(202307, CITY_A, 192000, 20240105), /* paid after D: not counted */
		emp_pension(202309, CITY_A, 191999, 20230920), /* one fen short: not counted */
		emp_pension(202401, CITY_A, 192000, 20231220), /* future month: not counted */
		slot_make(202308, CITY_A, CORE_MATERNITY, CORE_EMPLOYEE, EMP_BASE, 0, 0),   /* due 0 */
		slot_make(202310, CITY_A, CORE_MATERNITY, CORE_EMPLOYEE, EMP_BASE, 100, 20231020), /* due 0 */
		slot_make(202301, CITY_B, CORE_MEDICAL, CORE_EMPLOYEE, EMP_BASE, 94400, 20230115),
		slot_make(202301, CITY_A, CORE_MEDICAL, CORE_EMPLOYEE, EMP_BASE, 94400, 20230110),
	};
	uint32_t count = sizeof(slots) / sizeof(slots[0]);
	struct years_run *r = &w->years;
	years_of(w, slots, count, 20231231, r);
	/* pension months 202301 (on time), 202302 (backpaid), 202303 (deemed),
	 * 202304 (on time), 202305 (on time), 202306 (backpaid) */
	assert_int_equal(r->out.by_type[CORE_PENSION].months, 6);
	assert_int_equal(r->out.by_type[CORE_PENSION].on_time, 3);
	assert_int_equal(r->out.by_type[CORE_PENSION].backpaid, 2);
	assert_int_equal(r->out.by_type[CORE_PENSION].deemed, 1);
	assert_int_equal(r->out.by_type[CORE_MEDICAL].months, 1);
	assert_int_equal(r->out.by_type[CORE_MEDICAL].on_time, 1);
	assert_int_equal(r->out.by_type[CORE_MEDICAL].backpaid, 0);
	assert_int_equal(r->out.by_type[CORE_MATERNITY].months, 0);
	assert_int_equal(r->out.by_type[CORE_UNEMPLOYMENT].months, 0);
	assert_int_equal(r->out.by_type[CORE_INJURY].months, 0);
	/* duplicates sorted by month, type, city */
	assert_int_equal(r->duplicate_count, 4);
	assert_int_equal(r->duplicates[0].month, M(202301));
	assert_int_equal(r->duplicates[0].type, CORE_PENSION);
	assert_int_equal(r->duplicates[0].city, CITY_A);
	assert_int_equal(r->duplicates[1].month, M(202301));
	assert_int_equal(r->duplicates[1].type, CORE_PENSION);
	assert_int_equal(r->duplicates[1].city, CITY_B);
	assert_int_equal(r->duplicates[2].month, M(202301));
	assert_int_equal(r->duplicates[2].type, CORE_MEDICAL);
	assert_int_equal(r->duplicates[2].city, CITY_A);
	assert_int_equal(r->duplicates[3].month, M(202301));
	assert_int_equal(r->duplicates[3].type, CORE_MEDICAL);
	assert_int_equal(r->duplicates[3].city, CITY_B);
}

static void test_years_payment_after_as_of_not_counted_until_paid_date(void **state)
{
	struct world *w = *state;
	struct core_slot s = emp_pension(202303, CITY_A, 192000, 20230701);
	struct years_run *r = &w->years;
	years_of(w, &s, 1, 20230630, r);
	assert_int_equal(r->out.by_type[CORE_PENSION].months, 0);
	years_of(w, &s, 1, 20230701, r);
	assert_int_equal(r->out.by_type[CORE_PENSION].months, 1);
	assert_int_equal(r->out.by_type[CORE_PENSION].backpaid, 1);
	assert_int_equal(r->duplicate_count, 0);
}

/* ------------------------------------------------------------------------ */
/* R9 retirement */

static void test_retirement_appendix_b3(void **state)
{
	struct world *w = *state;
	struct core_slot *slots = w->slots;
	uint32_t count = fill_paid_pension(slots, 202001, 60, CITY_A); /* 202001..202412 */
	struct core_retirement out;
	assert_int_equal(retirement_of(w, 197006, CORE_CLASS_M60, slots, count, 20250115, -1, &out), CORE_OK);
	assert_int_equal(out.class_, CORE_CLASS_M60);
	assert_int_equal(out.birth_month, M(197006));
	assert_int_equal(out.original_month, M(203006));
	assert_int_equal(out.statutory_month, M(203111)); /* k 65, delay 17 */
	assert_int_equal(out.retire_month, M(203111));
	assert_int_equal(out.required_months, 192); /* 180 + 6*2 */
	assert_int_equal(out.counted_months, 60);
	assert_int_equal(out.shortfall, 132);
	assert_int_equal(out.payable_arrears_months, 0);
	assert_false(out.eligible_now);
	assert_int_equal(out.eligible_from, M(203601)); /* max(203111, 202501 + 132) */
}

static void test_retirement_appendix_b4_elect_month_range(void **state)
{
	struct world *w = *state;
	struct core_retirement out;
	assert_int_equal(retirement_of(w, 198003, CORE_CLASS_F50, NULL, 0, 20250115, -1, &out), CORE_OK);
	assert_int_equal(out.original_month, M(203003));
	assert_int_equal(out.statutory_month, M(203211)); /* k 62, delay 32 */
	assert_int_equal(out.retire_month, M(203211));
	assert_int_equal(out.required_months, 198); /* 180 + 6*3 */
	assert_int_equal(out.counted_months, 0);
	assert_int_equal(out.shortfall, 198);
	/* range [max(203003, 202911), 203511] */
	assert_int_equal(retirement_of(w, 198003, CORE_CLASS_F50, NULL, 0, 20250115, M(203003), &out), CORE_OK);
	assert_int_equal(out.retire_month, M(203003));
	assert_int_equal(out.required_months, 186); /* 2030 */
	assert_int_equal(retirement_of(w, 198003, CORE_CLASS_F50, NULL, 0, 20250115, M(203002), &out),
			 CORE_ERR_ELECT_MONTH);
	assert_int_equal(retirement_of(w, 198003, CORE_CLASS_F50, NULL, 0, 20250115, M(203511), &out), CORE_OK);
	assert_int_equal(out.retire_month, M(203511));
	assert_int_equal(out.required_months, 216); /* 180 + 6*6 */
	assert_int_equal(retirement_of(w, 198003, CORE_CLASS_F50, NULL, 0, 20250115, M(203512), &out),
			 CORE_ERR_ELECT_MONTH);
}

static void test_retirement_elect_lower_bound_is_statutory_minus_36_when_later(void **state)
{
	struct world *w = *state;
	struct core_retirement out;
	/* f50 born 198411: k 118, delay 60; original 203411, statutory 203911;
	 * statutory − 36 = 203611 > original */
	assert_int_equal(retirement_of(w, 198411, CORE_CLASS_F50, NULL, 0, 20250115, M(203611), &out), CORE_OK);
	assert_int_equal(out.retire_month, M(203611));
	assert_int_equal(out.required_months, 222); /* 180 + 6*7 */
	assert_int_equal(retirement_of(w, 198411, CORE_CLASS_F50, NULL, 0, 20250115, M(203610), &out),
			 CORE_ERR_ELECT_MONTH);
}

/* statutory month of a birth month and class, nothing counted */
static int32_t statutory_of(struct world *w, int32_t birth_yyyymm, uint8_t class_, int32_t *original)
{
	struct core_retirement out;
	assert_int_equal(retirement_of(w, birth_yyyymm, class_, NULL, 0, 20250115, -1, &out), CORE_OK);
	*original = out.original_month;
	return out.statutory_month;
}

static void test_retirement_m60_delay_boundaries_1964_12_to_1965_05(void **state)
{
	struct world *w = *state;
	int32_t original = 0;
	/* k −1: delay 0 */
	assert_int_equal(statutory_of(w, 196412, CORE_CLASS_M60, &original), M(202412));
	assert_int_equal(original, M(202412));
	/* k 0: 0/4 + 1 = 1 */
	assert_int_equal(statutory_of(w, 196501, CORE_CLASS_M60, &original), M(202502));
	assert_int_equal(original, M(202501));
	/* k 3: 3/4 + 1 = 1 */
	assert_int_equal(statutory_of(w, 196504, CORE_CLASS_M60, &original), M(202505));
	assert_int_equal(original, M(202504));
	/* k 4: 4/4 + 1 = 2 */
	assert_int_equal(statutory_of(w, 196505, CORE_CLASS_M60, &original), M(202507));
	assert_int_equal(original, M(202505));
}

static void test_retirement_m60_cap_36_reached_by_1976_09(void **state)
{
	struct world *w = *state;
	int32_t original = 0;
	/* 197608: k 139, 139/4 + 1 = 35; 203608 + 35 = 203907 */
	assert_int_equal(statutory_of(w, 197608, CORE_CLASS_M60, &original), M(203907));
	assert_int_equal(original, M(203608));
	/* 197609: k 140, 140/4 + 1 = 36 = cap; 203609 + 36 = 203909 */
	assert_int_equal(statutory_of(w, 197609, CORE_CLASS_M60, &original), M(203909));
	/* 197701: k 144, 37 → cap 36; 203701 + 36 = 204001 */
	assert_int_equal(statutory_of(w, 197701, CORE_CLASS_M60, &original), M(204001));
}

static void test_retirement_f50_cap_60_reached_by_1984_11(void **state)
{
	struct world *w = *state;
	int32_t original = 0;
	/* 197412: k −1, delay 0; 197412 + 600 = 202412 */
	assert_int_equal(statutory_of(w, 197412, CORE_CLASS_F50, &original), M(202412));
	/* 197502: k 1, 1/2 + 1 = 1 */
	assert_int_equal(statutory_of(w, 197502, CORE_CLASS_F50, &original), M(202503));
	/* 197503: k 2, 2/2 + 1 = 2 */
	assert_int_equal(statutory_of(w, 197503, CORE_CLASS_F50, &original), M(202505));
	/* 198410: k 117, 58 + 1 = 59; 203410 + 59 = 203909 */
	assert_int_equal(statutory_of(w, 198410, CORE_CLASS_F50, &original), M(203909));
	assert_int_equal(original, M(203410));
	/* 198411: k 118, 59 + 1 = 60 = cap; 203411 + 60 = 203911 */
	assert_int_equal(statutory_of(w, 198411, CORE_CLASS_F50, &original), M(203911));
	/* 198501: k 120, 61 → cap 60; 203501 + 60 = 204001 */
	assert_int_equal(statutory_of(w, 198501, CORE_CLASS_F50, &original), M(204001));
}

static void test_retirement_f55_reference_1970_01(void **state)
{
	struct world *w = *state;
	int32_t original = 0;
	/* 196912: k −1, delay 0; 196912 + 660 = 202412 */
	assert_int_equal(statutory_of(w, 196912, CORE_CLASS_F55, &original), M(202412));
	assert_int_equal(original, M(202412));
	/* 197001: k 0, delay 1 */
	assert_int_equal(statutory_of(w, 197001, CORE_CLASS_F55, &original), M(202502));
	/* 197004: k 3, delay 1 */
	assert_int_equal(statutory_of(w, 197004, CORE_CLASS_F55, &original), M(202505));
	/* 197005: k 4, delay 2 */
	assert_int_equal(statutory_of(w, 197005, CORE_CLASS_F55, &original), M(202507));
}

static uint32_t required_of(struct world *w, int32_t birth_yyyymm, int32_t expected_statutory)
{
	struct core_retirement out;
	assert_int_equal(retirement_of(w, birth_yyyymm, CORE_CLASS_M60, NULL, 0, 20250115, -1, &out), CORE_OK);
	assert_int_equal(out.statutory_month, M(expected_statutory));
	return out.required_months;
}

static void test_retirement_required_months_by_retire_year(void **state)
{
	struct world *w = *state;
	/* 196412: 202412 → 180 */
	assert_int_equal(required_of(w, 196412, 202412), 180);
	/* 196812: k 47, delay 12; 202812 + 12 = 202912 → 2029: 180 */
	assert_int_equal(required_of(w, 196812, 202912), 180);
	/* 196901: k 48, delay 13; 202901 + 13 = 203002 → 2030: 186 */
	assert_int_equal(required_of(w, 196901, 203002), 186);
	/* 197508: k 127, delay 32; 203508 + 32 = 203804 → 2038: 180 + 54 = 234 */
	assert_int_equal(required_of(w, 197508, 203804), 234);
	/* 197608: 203907 → 2039: 180 + 60 = 240 */
	assert_int_equal(required_of(w, 197608, 203907), 240);
	/* 197701: 204001 → 2040: 180 + 66 = 246, capped 240 */
	assert_int_equal(required_of(w, 197701, 204001), 240);
}

static void test_retirement_payable_arrears_excludes_counted_and_expired(void **state)
{
	struct world *w = *state;
	BOTH(w, backpay_flexible_window_months, 24);
	/* as of 20230626 */
	struct core_slot slots[] = {
		emp_pension(202301, CITY_A, 192000, 20230120), /* counted */
		emp_pension(202301, CITY_B, 0, 0),             /* arrears, month already counted */
		emp_pension(202302, CITY_A, 0, 0),             /* payable */
		emp_pension(202304, CITY_A, 0, 0),             /* payable ... */
		emp_pension(202304, CITY_B, 0, 0),             /* ... same month, once */
		flex_pension(202101, CITY_A, 0, 0),            /* age 29 > 24: expired */
		slot_make(202303, CITY_A, CORE_MEDICAL, CORE_EMPLOYEE, EMP_BASE, 0, 0), /* not pension */
	};
	struct core_retirement out;
	assert_int_equal(retirement_of(w, 196412, CORE_CLASS_M60, slots, 7, 20230626, -1, &out), CORE_OK);
	assert_int_equal(out.counted_months, 1);
	assert_int_equal(out.payable_arrears_months, 2);
	assert_int_equal(out.shortfall, 179);
}

static void test_retirement_eligible_from_shortfall_zero_and_positive(void **state)
{
	struct world *w = *state;
	struct core_slot *slots = w->slots;
	struct core_retirement out;
	/* m60 born 196412: retire 202412, required 180 */

	/* 180 counted (200901..202312): shortfall 0 → eligible_from = retire */
	uint32_t count = fill_paid_pension(slots, 200901, 180, CITY_A);
	assert_int_equal(retirement_of(w, 196412, CORE_CLASS_M60, slots, count, 20240115, -1, &out), CORE_OK);
	assert_int_equal(out.counted_months, 180);
	assert_int_equal(out.shortfall, 0);
	assert_int_equal(out.eligible_from, M(202412));
	assert_false(out.eligible_now); /* 202401 < 202412 */

	/* 179 counted (200902..202312): shortfall 1; max(202412, 202401 + 1) = 202412 */
	count = fill_paid_pension(slots, 200902, 179, CITY_A);
	assert_int_equal(retirement_of(w, 196412, CORE_CLASS_M60, slots, count, 20240115, -1, &out), CORE_OK);
	assert_int_equal(out.shortfall, 1);
	assert_int_equal(out.eligible_from, M(202412));

	/* 169 counted (200912..202312): shortfall 11; 202401 + 11 = 202412 = retire */
	count = fill_paid_pension(slots, 200912, 169, CITY_A);
	assert_int_equal(retirement_of(w, 196412, CORE_CLASS_M60, slots, count, 20240115, -1, &out), CORE_OK);
	assert_int_equal(out.shortfall, 11);
	assert_int_equal(out.eligible_from, M(202412));

	/* 168 counted (201001..202312): shortfall 12; 202401 + 12 = 202501 > retire */
	count = fill_paid_pension(slots, 201001, 168, CITY_A);
	assert_int_equal(retirement_of(w, 196412, CORE_CLASS_M60, slots, count, 20240115, -1, &out), CORE_OK);
	assert_int_equal(out.shortfall, 12);
	assert_int_equal(out.eligible_from, M(202501));
	assert_false(out.eligible_now);
}

static void test_retirement_eligible_now_boundary(void **state)
{
	struct world *w = *state;
	struct core_slot *slots = w->slots;
	struct core_retirement out;
	uint32_t count = fill_paid_pension(slots, 200901, 180, CITY_A); /* 200901..202312 */
	assert_int_equal(retirement_of(w, 196412, CORE_CLASS_M60, slots, count, 20241130, -1, &out), CORE_OK);
	assert_false(out.eligible_now); /* 202411 < 202412 */
	assert_int_equal(retirement_of(w, 196412, CORE_CLASS_M60, slots, count, 20241201, -1, &out), CORE_OK);
	assert_true(out.eligible_now); /* 202412 == retire, shortfall 0 */
	assert_int_equal(out.eligible_from, M(202412));
	/* 179 counted: retire month reached but shortfall 1 */
	count = fill_paid_pension(slots, 200902, 179, CITY_A);
	assert_int_equal(retirement_of(w, 196412, CORE_CLASS_M60, slots, count, 20241201, -1, &out), CORE_OK);
	assert_false(out.eligible_now);
	assert_int_equal(out.eligible_from, M(202501)); /* max(202412, 202412 + 1) */
}

static void test_retirement_counts_deemed_months(void **state)
{
	struct world *w = *state;
	struct core_slot slots[3] = {
		deemed_make(199001, CITY_A, CORE_PENSION),
		deemed_make(199002, CITY_A, CORE_PENSION),
		emp_pension(199003, CITY_A, 192000, 19900320),
	};
	struct core_retirement out;
	assert_int_equal(retirement_of(w, 196412, CORE_CLASS_M60, slots, 3, 20240115, -1, &out), CORE_OK);
	assert_int_equal(out.counted_months, 3);
	assert_int_equal(out.shortfall, 177);
}

/* ------------------------------------------------------------------------ */
/* R10 housing */

/* Appendix B 5: pension slots 202301..202501 paid by the 20th, except 202406
 * paid 20240815; 202501 paid 20250105 (before D = 20250110). */
static uint32_t housing_b5_slots(struct core_slot *slots)
{
	uint32_t count = fill_paid_pension(slots, 202301, 25, CITY_A);
	slots[M(202406) - M(202301)].paid_date = 20240815;
	slots[M(202501) - M(202301)].paid_date = 20250105;
	return count;
}

static void housing_b5_policy(struct world *w)
{
	w->a.policy.housing_window_months = 12;
	w->a.policy.housing_required_months = 12;
	w->a.policy.housing_end_offset_months = 1;
}

static void test_housing_appendix_b5(void **state)
{
	struct world *w = *state;
	housing_b5_policy(w);
	struct core_slot *slots = w->slots;
	uint32_t count = housing_b5_slots(slots);
	struct core_housing *out = &w->housing;
	housing_of(w, slots, count, 20250110, out);
	assert_int_equal(out->window_from, M(202401));
	assert_int_equal(out->window_to, M(202412));
	assert_int_equal(out->qualifying, 11);
	assert_int_equal(out->required, 12);
	assert_false(out->eligible);
	assert_int_equal(out->missing_count, 1);
	assert_int_equal(out->missing[0], M(202406));
	assert_int_equal(out->eligible_from, M(202507));
}

static void test_housing_appendix_b5_grace_60(void **state)
{
	struct world *w = *state;
	housing_b5_policy(w);
	w->a.policy.housing_grace_days = 60; /* 20240625 + 60 days = 20240824 ≥ 20240815 */
	struct core_slot *slots = w->slots;
	uint32_t count = housing_b5_slots(slots);
	struct core_housing *out = &w->housing;
	housing_of(w, slots, count, 20250110, out);
	assert_int_equal(out->qualifying, 12);
	assert_true(out->eligible);
	assert_int_equal(out->missing_count, 0);
	assert_int_equal(out->eligible_from, M(202501));
}

static void test_housing_grace_days_boundary(void **state)
{
	struct world *w = *state;
	housing_b5_policy(w);
	struct core_slot *slots = w->slots;
	uint32_t count = housing_b5_slots(slots);
	struct core_housing *out = &w->housing;
	/* 20240625 + 51 days: 5 (to Jun 30) + 31 (to Jul 31) + 15 = Aug 15 = the paid date */
	w->a.policy.housing_grace_days = 51;
	housing_of(w, slots, count, 20250110, out);
	assert_int_equal(out->qualifying, 12);
	assert_true(out->eligible);
	w->a.policy.housing_grace_days = 50; /* Aug 14 < Aug 15 */
	housing_of(w, slots, count, 20250110, out);
	assert_int_equal(out->qualifying, 11);
	assert_false(out->eligible);
}

static void test_housing_backpay_counts(void **state)
{
	struct world *w = *state;
	housing_b5_policy(w);
	w->a.policy.housing_backpay_counts = true;
	struct core_slot *slots = w->slots;
	uint32_t count = housing_b5_slots(slots);
	struct core_housing *out = &w->housing;
	housing_of(w, slots, count, 20250110, out);
	assert_int_equal(out->qualifying, 12);
	assert_true(out->eligible);
	assert_int_equal(out->missing_count, 0);
	assert_int_equal(out->eligible_from, M(202501));
}

static void test_housing_month_qualifies_only_if_every_type_does(void **state)
{
	struct world *w = *state;
	w->a.policy.housing_window_months = 3;
	w->a.policy.housing_required_months = 3;
	w->a.policy.housing_end_offset_months = 1;
	w->a.policy.housing_types = (1u << CORE_PENSION) | (1u << CORE_MEDICAL);
	/* as of 20240410: window 202401..202403 */
	struct core_slot slots[6] = {
		flex_pension(202401, CITY_A, FLEX_PENSION_DUE, 20240120),
		flex_pension(202402, CITY_A, FLEX_PENSION_DUE, 20240220),
		flex_pension(202403, CITY_A, FLEX_PENSION_DUE, 20240320),
		flex_medical(202401, CITY_A, FLEX_MEDICAL_DUE, 20240120),
		flex_medical(202402, CITY_A, FLEX_MEDICAL_DUE, 20240301), /* after 20240225 */
		flex_medical(202403, CITY_A, FLEX_MEDICAL_DUE, 20240320),
	};
	struct core_housing *out = &w->housing;
	housing_of(w, slots, 6, 20240410, out);
	assert_int_equal(out->window_from, M(202401));
	assert_int_equal(out->window_to, M(202403));
	assert_int_equal(out->qualifying, 2);
	assert_false(out->eligible);
	assert_int_equal(out->missing_count, 1);
	assert_int_equal(out->missing[0], M(202402));
	/* windows [t−3, t−1] must leave out 202402: t ≥ 202406; 202403 qualifies,
	 * 202404 = month(D) can (20240410 ≤ 20240425), 202405 is future */
	assert_int_equal(out->eligible_from, M(202406));

	w->a.policy.housing_types = 1u << CORE_PENSION;
	housing_of(w, slots, 6, 20240410, out);
	assert_int_equal(out->qualifying, 3);
	assert_true(out->eligible);
	assert_int_equal(out->eligible_from, M(202404));
}

static void test_housing_other_city_and_deemed_do_not_qualify(void **state)
{
	struct world *w = *state;
	w->a.policy.housing_window_months = 3;
	w->a.policy.housing_required_months = 3;
	w->a.policy.housing_end_offset_months = 1;
	struct core_slot slots[3] = {
		flex_pension(202401, CITY_A, FLEX_PENSION_DUE, 20240120),
		flex_pension(202402, CITY_B, FLEX_PENSION_DUE, 20240220), /* other city */
		deemed_make(202403, CITY_A, CORE_PENSION),                /* deemed */
	};
	struct core_housing *out = &w->housing;
	housing_of(w, slots, 3, 20240410, out);
	assert_int_equal(out->qualifying, 1);
	assert_int_equal(out->missing_count, 2);
	assert_int_equal(out->missing[0], M(202402));
	assert_int_equal(out->missing[1], M(202403));
	/* windows [t−3, t−1] must start after 202403: t ≥ 202407; 202404 can, later future */
	assert_int_equal(out->eligible_from, M(202407));
}

static void test_housing_current_month_can_qualify_until_its_deadline(void **state)
{
	struct world *w = *state;
	w->a.policy.housing_window_months = 3;
	w->a.policy.housing_required_months = 3;
	w->a.policy.housing_end_offset_months = 0;
	struct core_slot slots[3] = {
		flex_pension(202402, CITY_A, FLEX_PENSION_DUE, 20240220),
		flex_pension(202403, CITY_A, FLEX_PENSION_DUE, 20240320),
		flex_pension(202404, CITY_A, 0, 0),
	};
	struct core_housing *out = &w->housing;
	/* D on the deadline of 202404: it can still be paid on time */
	housing_of(w, slots, 3, 20240425, out);
	assert_int_equal(out->window_from, M(202402));
	assert_int_equal(out->window_to, M(202404));
	assert_int_equal(out->qualifying, 2);
	assert_false(out->eligible);
	assert_int_equal(out->missing_count, 1);
	assert_int_equal(out->missing[0], M(202404));
	assert_int_equal(out->eligible_from, M(202404));
	/* a day later it cannot: windows [t−2, t] must start after 202404 → t = 202407 */
	housing_of(w, slots, 3, 20240426, out);
	assert_int_equal(out->qualifying, 2);
	assert_int_equal(out->eligible_from, M(202407));
	/* grace days extend "can": 20240425 + 1 */
	w->a.policy.housing_grace_days = 1;
	housing_of(w, slots, 3, 20240426, out);
	assert_int_equal(out->eligible_from, M(202404));
	housing_of(w, slots, 3, 20240427, out);
	assert_int_equal(out->eligible_from, M(202407));
}

/* ------------------------------------------------------------------------ */
/* R11 medical */

static void test_medical_appendix_b6(void **state)
{
	struct world *w = *state;
	struct core_slot slots[5] = {
		flex_medical(202402, CITY_A, FLEX_MEDICAL_DUE, 20240220),
		flex_medical(202403, CITY_A, FLEX_MEDICAL_DUE, 20240320),
		flex_medical(202404, CITY_A, 0, 0),
		flex_medical(202405, CITY_A, FLEX_MEDICAL_DUE, 20240520),
		flex_medical(202406, CITY_A, 0, 0), /* deadline 20240625: pending on 20240610 */
	};
	struct core_medical out;
	medical_of(w, slots, 5, 20240610, &out);
	assert_int_equal(out.status, CORE_MEDICAL_SUSPENDED);
	assert_int_equal(out.suspended_since, M(202405));
	assert_int_equal(out.resumes_date, 0);
	assert_int_equal(out.arrears_months, 1);

	slots[2].paid_fen = FLEX_MEDICAL_DUE; /* 202404 paid in full on 20240612 */
	slots[2].paid_date = 20240612;
	medical_of(w, slots, 5, 20240612, &out);
	assert_int_equal(out.status, CORE_MEDICAL_SUSPENDED);
	assert_int_equal(out.suspended_since, M(202405));
	assert_int_equal(out.resumes_date, 20240613);
	assert_int_equal(out.arrears_months, 0);

	medical_of(w, slots, 5, 20240613, &out);
	assert_int_equal(out.status, CORE_MEDICAL_ACTIVE);
	assert_int_equal(out.suspended_since, -1);
	assert_int_equal(out.resumes_date, 0);
	assert_int_equal(out.arrears_months, 0);

	/* the as-of view: before the payment date it is still unpaid */
	medical_of(w, slots, 5, 20240610, &out);
	assert_int_equal(out.status, CORE_MEDICAL_SUSPENDED);
	assert_int_equal(out.suspended_since, M(202405));
	assert_int_equal(out.resumes_date, 0);
	assert_int_equal(out.arrears_months, 1);
}

static void test_medical_resumes_across_month_end(void **state)
{
	struct world *w = *state;
	struct core_slot s = flex_medical(202401, CITY_A, FLEX_MEDICAL_DUE, 20240229);
	struct core_medical out;
	medical_of(w, &s, 1, 20240229, &out);
	assert_int_equal(out.status, CORE_MEDICAL_SUSPENDED);
	assert_int_equal(out.suspended_since, M(202402));
	assert_int_equal(out.resumes_date, 20240301); /* day after a leap day */
}

static void test_medical_none_without_slot_at_or_before_month_of_as_of(void **state)
{
	struct world *w = *state;
	struct core_medical out;
	medical_of(w, NULL, 0, 20240610, &out);
	assert_int_equal(out.status, CORE_MEDICAL_NONE);
	assert_int_equal(out.suspended_since, -1);
	assert_int_equal(out.resumes_date, 0);
	struct core_slot pension = flex_pension(202401, CITY_A, 0, 0); /* unpaid, but not medical */
	medical_of(w, &pension, 1, 20240610, &out);
	assert_int_equal(out.status, CORE_MEDICAL_NONE);
	struct core_slot future = flex_medical(202407, CITY_A, 0, 0);
	medical_of(w, &future, 1, 20240610, &out);
	assert_int_equal(out.status, CORE_MEDICAL_NONE);
	struct core_slot current = flex_medical(202406, CITY_A, 0, 0); /* month(D), pending */
	medical_of(w, &current, 1, 20240610, &out);
	assert_int_equal(out.status, CORE_MEDICAL_ACTIVE);
	assert_int_equal(out.arrears_months, 0);
}

static void test_medical_expired_arrears_do_not_suspend(void **state)
{
	struct world *w = *state;
	BOTH(w, backpay_flexible_window_months, 24);
	struct core_medical out;
	/* as of 20240610, month(D) 202406 */
	struct core_slot at_window = flex_medical(202206, CITY_A, 0, 0); /* age 24: payable */
	medical_of(w, &at_window, 1, 20240610, &out);
	assert_int_equal(out.status, CORE_MEDICAL_SUSPENDED);
	assert_int_equal(out.suspended_since, M(202207));
	assert_int_equal(out.arrears_months, 1);
	struct core_slot expired = flex_medical(202205, CITY_A, 0, 0); /* age 25: expired */
	medical_of(w, &expired, 1, 20240610, &out);
	assert_int_equal(out.status, CORE_MEDICAL_ACTIVE);
	assert_int_equal(out.suspended_since, -1);
	assert_int_equal(out.arrears_months, 0);
}

static void test_medical_current_month_arrears_counted_not_suspending(void **state)
{
	struct world *w = *state;
	struct core_slot s = flex_medical(202406, CITY_A, 0, 0); /* deadline 20240625 */
	struct core_medical out;
	medical_of(w, &s, 1, 20240626, &out);
	/* arrears, but 202406 + 1 > month(D) */
	assert_int_equal(out.status, CORE_MEDICAL_ACTIVE);
	assert_int_equal(out.suspended_since, -1);
	assert_int_equal(out.arrears_months, 1);
	medical_of(w, &s, 1, 20240701, &out);
	assert_int_equal(out.status, CORE_MEDICAL_SUSPENDED);
	assert_int_equal(out.suspended_since, M(202407));
}

static void test_medical_suspended_since_smallest_month(void **state)
{
	struct world *w = *state;
	struct core_slot slots[3] = {
		flex_medical(202404, CITY_A, 0, 0),
		flex_medical(202403, CITY_A, FLEX_MEDICAL_DUE, 20240320),
		flex_medical(202402, CITY_A, 0, 0),
	};
	struct core_medical out;
	medical_of(w, slots, 3, 20240610, &out);
	assert_int_equal(out.status, CORE_MEDICAL_SUSPENDED);
	assert_int_equal(out.suspended_since, M(202403));
	assert_int_equal(out.arrears_months, 2);
}

/* ------------------------------------------------------------------------ */

#define T(f) cmocka_unit_test(f)
#define W(f) cmocka_unit_test_setup_teardown(f, world_setup, world_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_month_parse_accepts_range_ends_and_rejects_one_past),
		T(test_month_parse_rejects_month_numbers_0_and_13),
		T(test_month_yyyymm_inverts_dense_index_across_year_end),
		T(test_date_valid_feb29_leap_rules),
		T(test_date_valid_range_ends_both_sides),
		T(test_date_valid_rejects_bad_month_and_day),
		T(test_date_to_days_known_values),
		T(test_date_to_days_known_differences),
		T(test_days_to_date_round_trips_every_day_in_range),
		T(test_month_last_day_per_month_and_leap_year),
		T(test_as_of_make_fills_date_days_and_month),
		T(test_id_valid_with_digit_check_char_computed_by_hand),
		T(test_id_valid_with_upper_x_check_char),
		T(test_id_rejects_lower_case_x),
		T(test_id_rejects_wrong_check_char),
		T(test_id_rejects_non_digit_in_first_17),
		T(test_id_rejects_wrong_length),
		T(test_id_rejects_invalid_birth_date_feb_30),
		T(test_id_birth_month),
		T(test_id_default_class_odd_male_even_female),
		T(test_name_index_canonical_spellings),
		T(test_slot_keys_reports_second_identical_key_only),
		W(test_policy_find_by_city),
		W(test_resolve_unknown_city_names_slot_index),
		W(test_resolve_month_before_first_period),
		W(test_period_is_last_with_from_at_or_before_month),
		W(test_due_employee_shares_within_bounds),
		W(test_due_clamps_base_to_min_and_max),
		W(test_due_flexible_individual_pays_all),
		W(test_due_rounds_half_up_at_exactly_half_fen),
		W(test_due_missing_rate_is_zero),
		W(test_due_of_deemed_slot_is_zero),
		W(test_deemed_slot_is_never_owed),
		W(test_deadline_day_31_clipped_to_february_non_leap_and_leap),
		W(test_deadline_clipped_to_30_day_months),
		W(test_deadline_month_offset_1_wraps_year),
		W(test_deadline_month_offset_2_wraps_year),
		W(test_pending_on_deadline_day_arrears_day_after),
		W(test_pending_with_month_offset_1_extends_into_next_month),
		W(test_paid_money_covers_individual_share_first),
		W(test_paid_in_full_or_more_is_not_owed),
		W(test_tier_boundaries_direct_verify_approval_legacy),
		W(test_tier_legacy_wins_over_direct),
		W(test_flexible_window_expires_at_window_plus_one),
		W(test_flexible_window_does_not_expire_employee_slots),
		W(test_flexible_window_zero_never_expires),
		W(test_payment_dated_after_as_of_is_unpaid),
		W(test_interest_appendix_b1_three_years),
		W(test_interest_same_year),
		W(test_interest_zero_when_arrears_month_is_month_of_as_of),
		W(test_interest_year_after_table_uses_last_rate),
		W(test_interest_year_before_table_uses_default),
		W(test_interest_missing_year_inside_table_uses_nearest_earlier),
		W(test_interest_empty_table_uses_default),
		W(test_interest_compounds_across_gap_and_past_table_end),
		W(test_interest_types_and_categories_filter),
		W(test_late_fee_appendix_b2),
		W(test_late_fee_counts_days_after_deadline_clipped_to_february),
		W(test_late_fee_cap_at_principal_boundary),
		W(test_late_fee_categories_filter),
		W(test_overflow_interest_balance_past_2_pow_53),
		W(test_overflow_not_reached_one_year_earlier),
		W(test_overflow_in_last_partial_year_step),
		W(test_overflow_sum_of_interest_past_2_pow_53),
		W(test_items_sorted_by_month_city_type_and_sums),
		W(test_arrears_item_count_without_items_buffer),
		W(test_years_classification_and_duplicates),
		W(test_years_payment_after_as_of_not_counted_until_paid_date),
		W(test_retirement_appendix_b3),
		W(test_retirement_appendix_b4_elect_month_range),
		W(test_retirement_elect_lower_bound_is_statutory_minus_36_when_later),
		W(test_retirement_m60_delay_boundaries_1964_12_to_1965_05),
		W(test_retirement_m60_cap_36_reached_by_1976_09),
		W(test_retirement_f50_cap_60_reached_by_1984_11),
		W(test_retirement_f55_reference_1970_01),
		W(test_retirement_required_months_by_retire_year),
		W(test_retirement_payable_arrears_excludes_counted_and_expired),
		W(test_retirement_eligible_from_shortfall_zero_and_positive),
		W(test_retirement_eligible_now_boundary),
		W(test_retirement_counts_deemed_months),
		W(test_housing_appendix_b5),
		W(test_housing_appendix_b5_grace_60),
		W(test_housing_grace_days_boundary),
		W(test_housing_backpay_counts),
		W(test_housing_month_qualifies_only_if_every_type_does),
		W(test_housing_other_city_and_deemed_do_not_qualify),
		W(test_housing_current_month_can_qualify_until_its_deadline),
		W(test_medical_appendix_b6),
		W(test_medical_resumes_across_month_end),
		W(test_medical_none_without_slot_at_or_before_month_of_as_of),
		W(test_medical_expired_arrears_do_not_suspend),
		W(test_medical_current_month_arrears_counted_not_suspending),
		W(test_medical_suspended_since_smallest_month),
	};
	int failed = cmocka_run_group_tests_name("plain slots", tests, NULL, NULL);
	encoded_mode = true;
	failed += cmocka_run_group_tests_name("run-encoded slots", tests, NULL, NULL);
	return failed;
}
