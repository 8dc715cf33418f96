/* The store's run encoding: round trips against the plain slot list on many
 * random timelines, and damaged bytes never read out of bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../core/core.h"

#define SLOTS_MAX 4000u

static uint64_t rng_state;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t below(uint32_t n)
{
	return (uint32_t)(rng() % n);
}

/* A date in month m + offset on day `day`, clipped; valid by construction. */
static int32_t pay_date(int32_t month, int32_t offset, uint32_t day)
{
	int32_t m = month + offset;
	static const uint32_t last[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int32_t y = m / 12;
	uint32_t mm = (uint32_t)(m % 12);
	uint32_t l = last[mm] + (mm == 1 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
	return y * 10000 + (int32_t)(mm + 1) * 100 + (int32_t)(day < l ? day : l);
}

/* Spells of months per (type, city): runs of regular payroll months broken
 * by unpaid, partial, late and deemed months, like real timelines. */
static uint32_t random_timeline(struct core_slot *slots, uint32_t cap)
{
	uint32_t n = 0;
	uint32_t cities[3] = { 110000, 310000, 440100 };
	for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
		for (uint32_t c = 0; c < 1 + below(3); c++) {
			int32_t month = 1950 * 12 + (int32_t)below(1700);
			uint32_t spell = below(300);
			int64_t base = below(3) == 0 ? 0 : (int64_t)below(2000000);
			uint32_t day = 1 + below(31);
			uint8_t category = (uint8_t)below(2);
			for (uint32_t k = 0; k < spell && n < cap && month < 1950 * 12 + 1800; k++, month++) {
				struct core_slot *s = &slots[n++];
				memset(s, 0, sizeof(*s));
				s->month = month;
				s->city = cities[c];
				s->type = (uint8_t)t;
				s->category = category;
				if (below(12) == 0) {
					base += below(50000);
				}
				uint32_t kind = below(20);
				if (kind == 0) {
					s->deemed = true;
				} else if (kind == 1) {
					s->base_fen = base; /* unpaid */
				} else {
					s->base_fen = base;
					s->paid_fen = kind == 2 ? 1 + below(1000) : 1 + base / 5;
					int32_t late = (int32_t)below(40); /* dates end in 2100 */
					late = month + late > 2100 * 12 + 11 ? 0 : late;
					s->paid_date = kind == 3 ? pay_date(month, late, 1 + below(31)) : pay_date(month, 0, day);
				}
			}
		}
	}
	return n;
}

static void assert_round_trip(const struct core_slot *slots, uint32_t n, uint8_t *buf, size_t cap)
{
	size_t size = core_timeline_encode(slots, n, buf, cap);
	assert_true(size > 0);
	assert_true(size <= core_timeline_encode_max(n));
	struct core_timeline tl = { .slot_count = n, .runs = buf, .runs_size = size };
	struct core_timeline_iter it;
	const struct core_slot *s;
	uint32_t i = 0;
	core_timeline_iter_init(&it, &tl);
	while ((s = core_timeline_next(&it)) != NULL) {
		assert_true(i < n);
		assert_memory_equal(s, &slots[i], sizeof(*s));
		i++;
	}
	assert_false(it.corrupt);
	assert_int_equal(i, n);
}

static void test_round_trip_random_timelines_sorted_and_not(void **state)
{
	(void)state;
	struct core_slot *slots = calloc(SLOTS_MAX, sizeof(*slots));
	uint8_t *buf = malloc(core_timeline_encode_max(SLOTS_MAX));
	rng_state = 20261123;
	for (uint32_t round = 0; round < 2000; round++) {
		uint32_t n = random_timeline(slots, SLOTS_MAX);
		if (round % 2 == 0) {
			core_slots_sort(slots, n);
		}
		assert_round_trip(slots, n, buf, core_timeline_encode_max(SLOTS_MAX));
	}
	free(slots);
	free(buf);
}

static void test_round_trip_edges(void **state)
{
	(void)state;
	uint8_t buf[256];
	/* empty, the first and last months, a payment on Feb 29 and clipped to Feb 28 */
	assert_round_trip(NULL, 0, buf, sizeof(buf));
	struct core_slot s[4] = {
		{ .base_fen = CORE_MONEY_MAX, .paid_fen = CORE_MONEY_MAX, .month = 1950 * 12, .paid_date = 19000101,
		  .city = 0, .type = CORE_MATERNITY, .category = CORE_FLEXIBLE },
		{ .base_fen = 100, .paid_fen = 100, .month = 2024 * 12 + 1, .paid_date = 20240229, .city = 999999 },
		{ .base_fen = 100, .paid_fen = 100, .month = 2024 * 12, .paid_date = 20240131, .city = 999999 },
		{ .month = 2099 * 12 + 11, .city = 999999, .deemed = true },
	};
	assert_round_trip(s, 4, buf, sizeof(buf));
}

static void test_regular_payroll_compresses_to_one_run(void **state)
{
	(void)state;
	struct core_slot slots[360];
	for (uint32_t i = 0; i < 360; i++) {
		int32_t month = 1995 * 12 + (int32_t)i;
		slots[i] = (struct core_slot){ .base_fen = 800000, .paid_fen = 64000, .month = month,
					       .paid_date = pay_date(month, 0, 31), .city = 110000 };
	}
	uint8_t buf[64];
	size_t size = core_timeline_encode(slots, 360, buf, sizeof(buf));
	/* slot and run counts 2+1, flags 1, city 3, month 2, count 2, base 3, paid 3, offset 1, day 1 */
	assert_true(size > 0 && size <= 20);
	assert_round_trip(slots, 360, buf, sizeof(buf));
}

static void test_too_small_buffer_reports_zero(void **state)
{
	(void)state;
	struct core_slot s = { .base_fen = 5, .month = 2000 * 12, .city = 1 };
	uint8_t buf[4];
	assert_int_equal(core_timeline_encode(&s, 1, buf, sizeof(buf)), 0);
}

/* Every slot its own run, every field at its widest: cities 999999 and
 * 999998, months going back (a negative delta each run), bases and paid
 * near 10^10, payments 150 years after the month. Found by a random store
 * test: negative month deltas took ten bytes and passed encode_max. */
static void test_widest_runs_fit_encode_max(void **state)
{
	(void)state;
	enum { N = 600 };
	static struct core_slot slots[N];
	for (uint32_t i = 0; i < N; i++) {
		int32_t month = CORE_MONTH_FIRST + (int32_t)CORE_MONTH_COUNT - 1 - (int32_t)(i % 2 ? i : N - i);
		slots[i] = (struct core_slot){ .month = month, .city = 999999 - i % 2, .type = (uint8_t)(i % CORE_TYPE_COUNT),
					       .base_fen = CORE_MONEY_MAX - i % 3, .paid_fen = CORE_MONEY_MAX - i % 5,
					       .paid_date = 21001231 - (int32_t)(i % 7) };
	}
	size_t cap = core_timeline_encode_max(N);
	uint8_t *buf = malloc(cap);
	assert_non_null(buf);
	assert_round_trip(slots, N, buf, cap);
	free(buf);
}

/* A month going back is zigzag -1 → 1: one byte. Records written when the
 * encoder widened negative values to 64 bits (ten bytes) still decode. */
static void test_negative_month_delta_one_byte_and_legacy_form_decodes(void **state)
{
	(void)state;
	struct core_slot s[2] = {
		{ .month = 2000 * 12 + 5, .city = 1, .type = 0, .base_fen = 5 },
		{ .month = 2000 * 12 + 5, .city = 1, .type = 1, .base_fen = 5 },
	};
	uint8_t buf[64];
	size_t size = core_timeline_encode(s, 2, buf, sizeof(buf));
	/* 2, 2, then run 1: flags (city, base, paid follow) 0xe0, city 1, month
	 * +605 (zigzag 1210: 0xba 0x09), count 1, base 5, paid 0; run 2: flags
	 * type 1 (base and paid repeat) 0x01, month 24005 - 24006 = -1 → 1, count 1. */
	static const uint8_t want[] = { 2, 2, 0xe0, 1, 0xba, 0x09, 1, 5, 0, 0x01, 1, 1 };
	assert_int_equal(size, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	/* The same with -1 as the old encoder wrote it: 0xffff_fffe_0000_0001 in ten bytes. */
	static const uint8_t legacy[] = { 2, 2, 0xe0, 1, 0xba, 0x09, 1, 5, 0, 0x01,
					  0x81, 0x80, 0x80, 0x80, 0xe0, 0xff, 0xff, 0xff, 0xff, 0x01, 1 };
	struct core_timeline tl = { .slot_count = 2, .runs = legacy, .runs_size = sizeof(legacy) };
	struct core_timeline_iter it;
	const struct core_slot *got;
	core_timeline_iter_init(&it, &tl);
	for (int i = 0; i < 2; i++) {
		got = core_timeline_next(&it);
		assert_non_null(got);
		assert_int_equal(got->month, s[i].month);
		assert_int_equal(got->type, s[i].type);
	}
	assert_null(core_timeline_next(&it));
	assert_false(it.corrupt);
}

/* Damaged bytes: every truncation and many bit flips stop cleanly. */
static void test_damaged_encoding_never_reads_past_the_end(void **state)
{
	(void)state;
	struct core_slot *slots = calloc(SLOTS_MAX, sizeof(*slots));
	size_t cap = core_timeline_encode_max(SLOTS_MAX);
	uint8_t *buf = malloc(cap);
	rng_state = 7;
	for (uint32_t round = 0; round < 200; round++) {
		uint32_t n = random_timeline(slots, 200);
		size_t size = core_timeline_encode(slots, n, buf, cap);
		size_t cut = below((uint32_t)size + 1);
		uint8_t *copy = malloc(cut + 1); /* exact size: ASan sees any overread */
		memcpy(copy, buf, cut);
		if (cut > 0 && round % 2 == 1) {
			copy[below((uint32_t)cut)] ^= (uint8_t)(1u << below(8));
		}
		struct core_timeline tl = { .slot_count = n, .runs = copy, .runs_size = cut };
		struct core_timeline_iter it;
		const struct core_slot *s;
		uint32_t count = 0;
		core_timeline_iter_init(&it, &tl);
		while ((s = core_timeline_next(&it)) != NULL) {
			assert_true(core_date_valid(s->paid_date) || s->paid_date == 0);
			count++;
		}
		assert_true(count <= n + 1800u * 8);
		if (cut < size) {
			assert_true(it.corrupt || count < n);
		}
		free(copy);
	}
	free(slots);
	free(buf);
}

/* ---- the run fast paths agree with month-by-month reading ---- */

struct world {
	struct core_period periods[3][4];
	struct core_policy *policies[3];
	const struct core_policy *items[3];
	struct core_policy_set set;
};

/* Three cities with random deadlines, periods, windows and housing rules.
 * Four periods each: runs cross their boundaries and settle piece by piece. */
static void world_make(struct world *w)
{
	static const uint32_t cities[3] = { 110000, 310000, 440100 };
	for (uint32_t c = 0; c < 3; c++) {
		struct core_policy *p = calloc(1, sizeof(*p));
		for (uint32_t k = 0; k < 4; k++) {
			struct core_period *period = &w->periods[c][k];
			memset(period, 0, sizeof(*period));
			period->from = k == 0 ? 1950 * 12 : w->periods[c][k - 1].from + 1 + (int32_t)below(k == 1 ? 600 : 200);
			period->base_min_fen = below(300000);
			period->base_max_fen = period->base_min_fen + 100000 + below(3000000);
			for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
				for (uint32_t sh = 0; sh < CORE_SHARE_COUNT; sh++) {
					period->rate_ppm[t][sh] = below(4) == 0 ? 0 : below(250000);
				}
			}
		}
		p->city = cities[c];
		p->deadline_day = (uint8_t)(1 + below(31));
		p->deadline_month_offset = (uint8_t)below(3);
		p->period_count = 4;
		p->periods = w->periods[c];
		p->interest_types = (uint8_t)below(32);
		p->interest_categories = (uint8_t)below(4);
		p->interest_default_ppm = below(100000);
		p->late_fee_daily_ppm = below(1000);
		p->late_fee_categories = (uint8_t)below(4);
		p->late_fee_cap_at_principal = below(2);
		p->backpay_direct_max_months = 3;
		p->backpay_verify_max_months = 60;
		p->backpay_legacy_before = 2011 * 12 + 6;
		p->backpay_flexible_window_months = below(2) ? 0 : below(40);
		p->housing_types = (uint8_t)below(32);
		p->housing_window_months = 1 + below(120);
		p->housing_required_months = below(p->housing_window_months + 1);
		p->housing_end_offset_months = below(13);
		p->housing_backpay_counts = below(2);
		p->housing_grace_days = below(2) ? 0 : below(90);
		core_policy_prepare(p);
		w->policies[c] = p;
		w->items[c] = p;
	}
	w->set = (struct core_policy_set){ w->items, 3 };
}

static void world_free(struct world *w)
{
	for (uint32_t c = 0; c < 3; c++) {
		free(w->policies[c]);
	}
}

/* Every computation on both forms, compared field by field. */
static void assert_forms_agree(const struct world *w, const struct core_timeline *plain, const struct core_timeline *runs,
			       struct core_as_of as_of, struct core_arrears_item *items, struct core_duplicate *dups)
{
	const struct core_timeline *tl[2] = { plain, runs };
	struct core_arrears a[2];
	struct core_years y[2];
	struct core_retirement r[2];
	struct core_housing h[2];
	struct core_medical m[2];
	uint32_t item_count[2];
	uint32_t dup_count[2];
	int rc[2];
	for (int f = 0; f < 2; f++) {
		uint32_t bad;
		assert_int_equal(core_person_resolve(&w->set, tl[f], &bad), CORE_OK);
		memset(&a[f], 0, sizeof(a[f]));
		rc[f] = core_arrears_compute(&w->set, tl[f], as_of, &a[f], items + f * SLOTS_MAX, &item_count[f]);
		memset(&y[f], 0, sizeof(y[f]));
		assert_int_equal(core_years_compute(&w->set, tl[f], as_of, &y[f], dups + f * SLOTS_MAX, &dup_count[f]), 0);
		memset(&r[f], 0, sizeof(r[f]));
		assert_int_equal(core_retirement_check(&w->set, 1970 * 12, CORE_CLASS_M60, tl[f], as_of, -1, &r[f]), 0);
		memset(&h[f], 0, sizeof(h[f]));
		assert_int_equal(core_housing_check(&w->set, w->items[0], tl[f], as_of, &h[f]), 0);
		memset(&m[f], 0, sizeof(m[f]));
		assert_int_equal(core_medical_status(&w->set, tl[f], as_of, &m[f]), 0);
	}
	assert_int_equal(rc[0], rc[1]);
	if (rc[0] == CORE_OK) {
		assert_memory_equal(&a[0], &a[1], sizeof(a[0]));
		assert_int_equal(item_count[0], item_count[1]);
		assert_memory_equal(items, items + SLOTS_MAX, item_count[0] * sizeof(*items));
	}
	assert_memory_equal(&y[0], &y[1], sizeof(y[0]));
	assert_int_equal(dup_count[0], dup_count[1]);
	assert_memory_equal(dups, dups + SLOTS_MAX, dup_count[0] * sizeof(*dups));
	assert_memory_equal(&r[0], &r[1], sizeof(r[0]));
	assert_memory_equal(&h[0], &h[1], sizeof(h[0]));
	assert_memory_equal(&m[0], &m[1], sizeof(m[0]));
}

static void test_run_fast_paths_agree_with_month_by_month(void **state)
{
	(void)state;
	struct core_slot *slots = calloc(SLOTS_MAX, sizeof(*slots));
	uint8_t *buf = malloc(core_timeline_encode_max(SLOTS_MAX));
	struct core_arrears_item *items = calloc(2 * SLOTS_MAX, sizeof(*items));
	struct core_duplicate *dups = calloc(2 * SLOTS_MAX, sizeof(*dups));
	struct core_run *run_list = calloc(SLOTS_MAX, sizeof(*run_list));
	rng_state = 99;
	for (uint32_t round = 0; round < 300; round++) {
		struct world w;
		world_make(&w);
		uint32_t n = random_timeline(slots, SLOTS_MAX);
		core_slots_sort(slots, n);
		size_t size = core_timeline_encode(slots, n, buf, core_timeline_encode_max(SLOTS_MAX));
		struct core_timeline plain = { .slots = slots, .slot_count = n };
		struct core_timeline runs = { .slot_count = n, .runs = buf, .runs_size = size };
		int64_t run_count = core_timeline_decode(&runs, run_list, SLOTS_MAX);
		assert_true(run_count >= 0);
		struct core_timeline decoded = { .slot_count = n, .run_list = run_list, .run_count = (uint32_t)run_count };
		for (uint32_t k = 0; k < 12; k++) {
			int32_t month = 1950 * 12 + (int32_t)below(1800);
			int32_t date = (month / 12) * 10000 + (month % 12 + 1) * 100 + 1 + (int32_t)below(28);
			/* Half the dates sit on a payment day or right beside it: the edges of "paid by D". */
			const struct core_slot *paid = &slots[below(n > 0 ? n : 1)];
			if (k % 2 == 1 && n > 0 && paid->paid_date != 0) {
				int32_t days = core_date_to_days(paid->paid_date) + (int32_t)below(3) - 1;
				date = core_days_to_date(days);
				date = core_date_valid(date) ? date : paid->paid_date;
			}
			assert_forms_agree(&w, &plain, &runs, core_as_of_make(date), items, dups);
			assert_forms_agree(&w, &plain, &decoded, core_as_of_make(date), items, dups);
		}
		world_free(&w);
	}
	free(slots);
	free(buf);
	free(items);
	free(dups);
	free(run_list);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_random_timelines_sorted_and_not),
		cmocka_unit_test(test_round_trip_edges),
		cmocka_unit_test(test_regular_payroll_compresses_to_one_run),
		cmocka_unit_test(test_too_small_buffer_reports_zero),
		cmocka_unit_test(test_widest_runs_fit_encode_max),
		cmocka_unit_test(test_negative_month_delta_one_byte_and_legacy_form_decodes),
		cmocka_unit_test(test_damaged_encoding_never_reads_past_the_end),
		cmocka_unit_test(test_run_fast_paths_agree_with_month_by_month),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
