/* Settled-part summaries (core/summary.c): a property test. Random
 * timelines (gaps, partial, late and back payments, several cities,
 * deemed months, flexible windows) under random policies go through the
 * full computation and through the summary at as-of dates on both sides
 * of every payment, deadline and the horizon (housing under every city's
 * policy); wherever the summary says
 * it applies, every field must agree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../core/core.h"

#define SLOTS_MAX 400u
#define CITIES 3u
#define DATES_MAX 64u

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

static int32_t M(int32_t yyyymm)
{
	int32_t m = 0;
	assert_true(core_month_parse(yyyymm, &m));
	return m;
}

/* A date in month m (dense), day clipped to the month. */
static int32_t day_of(int32_t m, uint32_t day)
{
	uint32_t last = core_month_last_day(m);
	return core_month_yyyymm(m) * 100 + (int32_t)(day < last ? day : last);
}

static int32_t add_days(int32_t date, int32_t days)
{
	return core_days_to_date(core_date_to_days(date) + days);
}

struct world {
	struct core_period periods[CITIES][2];
	struct core_year_rate rates[CITIES][3];
	struct core_policy policies[CITIES];
	const struct core_policy *items[CITIES];
	uint32_t revisions[CITIES];
	struct core_policy_set set;
	struct core_slot slots[SLOTS_MAX];
	uint32_t slot_count;
	uint8_t runs[1u << 16];
	uint8_t summary[1u << 17];
	struct core_slot scratch_slots[SLOTS_MAX];
	struct core_duplicate scratch_dups[SLOTS_MAX];
	uint32_t scratch_cities[SLOTS_MAX];
	struct core_arrears_item items_full[SLOTS_MAX];
	struct core_arrears_item items_fast[SLOTS_MAX];
	struct core_duplicate dups_full[SLOTS_MAX];
	struct core_duplicate dups_fast[SLOTS_MAX];
	struct core_housing housing_full;
	struct core_housing housing_fast;
	int32_t dates[DATES_MAX];
	uint32_t date_count;
};

static void random_policy(struct world *w, uint32_t i)
{
	struct core_policy *p = &w->policies[i];
	memset(p, 0, sizeof(*p));
	core_policy_defaults(p);
	p->city = 110000 + i * 10000;
	p->deadline_day = (uint8_t)(1 + rnd(31));
	p->deadline_month_offset = (uint8_t)rnd(3);
	p->period_count = 1 + rnd(2);
	for (uint32_t k = 0; k < p->period_count; k++) {
		struct core_period *q = &w->periods[i][k];
		memset(q, 0, sizeof(*q));
		q->from = k == 0 ? M(199001) : M(201501) + (int32_t)rnd(60);
		q->base_min_fen = rnd(2) ? 0 : 300000;
		q->base_max_fen = rnd(2) ? CORE_MONEY_MAX : 2000000;
		for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
			for (uint32_t s = 0; s < CORE_SHARE_COUNT; s++) {
				q->rate_ppm[t][s] = rnd(5) == 0 ? 0 : rnd(200000);
			}
		}
	}
	p->periods = w->periods[i];
	p->interest_types = (uint8_t)rnd(32);
	p->interest_categories = (uint8_t)rnd(4);
	p->interest_default_ppm = rnd(100000);
	p->interest_rate_count = rnd(4);
	for (uint32_t k = 0; k < p->interest_rate_count; k++) {
		w->rates[i][k] = (struct core_year_rate){ 2010 + (int32_t)(k * 5 + rnd(5)), rnd(90000) };
	}
	p->interest_rates = w->rates[i];
	p->late_fee_daily_ppm = rnd(1000);
	p->late_fee_categories = (uint8_t)rnd(4);
	p->late_fee_cap_at_principal = rnd(2);
	p->backpay_direct_max_months = rnd(12);
	p->backpay_verify_max_months = p->backpay_direct_max_months + rnd(60);
	p->backpay_legacy_before = M(200001) + (int32_t)rnd(200);
	p->backpay_flexible_window_months = rnd(3) == 0 ? 0 : 12 + rnd(48);
	p->housing_types = (uint8_t)rnd(1u << CORE_TYPE_COUNT);
	p->housing_window_months = 1 + rnd(120);
	p->housing_required_months = rnd(p->housing_window_months + 1);
	p->housing_end_offset_months = rnd(13);
	p->housing_backpay_counts = rnd(2);
	p->housing_grace_days = rnd(3) == 0 ? 0 : rnd(90);
	core_policy_prepare(p);
	w->items[i] = p;
	w->revisions[i] = 1 + rnd(5);
}

/* Runs of months per (city, type): paid on time, late, partly, not at
 * all, over, deemed; gaps between them. */
static void random_timeline(struct world *w)
{
	w->slot_count = 0;
	uint32_t cities = 1 + rnd(CITIES);
	for (uint32_t c = 0; c < cities; c++) {
		uint32_t city = w->policies[rnd(CITIES)].city;
		for (uint8_t t = 0; t < CORE_TYPE_COUNT; t++) {
			if (rnd(3) == 0) {
				continue;
			}
			int32_t m = M(200801) + (int32_t)rnd(120);
			uint32_t runs = 1 + rnd(4);
			for (uint32_t r = 0; r < runs && w->slot_count + 40 < SLOTS_MAX; r++) {
				uint32_t len = 1 + rnd(24);
				uint8_t category = (uint8_t)rnd(CORE_CATEGORY_COUNT);
				int64_t base = rnd(4) == 0 ? 0 : 100000 + rnd(3000000);
				uint32_t kind = rnd(9);
				for (uint32_t k = 0; k < len && m < M(209901); k++, m++) {
					bool taken = false;
					for (uint32_t j = 0; j < w->slot_count; j++) {
						taken |= w->slots[j].month == m && w->slots[j].city == city &&
							 w->slots[j].type == t;
					}
					if (taken) {
						continue;
					}
					struct core_slot s = { .base_fen = base, .month = m, .city = city, .type = t,
							       .category = category };
					uint32_t how = rnd(10) == 0 ? rnd(9) : kind;
					int64_t big = base * 3 / 10 + 1; /* at least any due here */
					switch (how) {
					case 0: /* unpaid */
						break;
					case 1: /* partly */
						s.paid_fen = 1 + rnd(1000);
						s.paid_date = day_of(m + (int32_t)rnd(3), 1 + rnd(31));
						break;
					case 2: /* deemed */
						s = (struct core_slot){ .month = m, .city = city, .type = t,
									.category = category, .deemed = true };
						break;
					case 4: /* paid in full ahead of the month */
						s.paid_fen = big;
						s.paid_date = day_of(m - 1 - (int32_t)rnd(3), 1 + rnd(31));
						break;
					case 3: /* back-paid years later */
						s.paid_fen = big + rnd(100);
						s.paid_date = day_of(m + 12 + (int32_t)rnd(60), 1 + rnd(31));
						break;
					default: /* on time or about, in full */
						s.paid_fen = big + rnd(3);
						s.paid_date = day_of(m + (int32_t)rnd(2), 1 + rnd(31));
						break;
					}
					w->slots[w->slot_count++] = s;
				}
				m += (int32_t)rnd(6); /* a gap */
			}
		}
	}
	core_slots_sort(w->slots, w->slot_count);
}

static void date_add(struct world *w, int32_t date)
{
	if (w->date_count < DATES_MAX && core_date_valid(date)) {
		w->dates[w->date_count++] = date;
	}
}

/* Dates on both sides of payments, deadlines and the horizon. */
static void pick_dates(struct world *w, int32_t horizon_days)
{
	w->date_count = 0;
	int32_t horizon = core_days_to_date(horizon_days);
	date_add(w, add_days(horizon, -1));
	date_add(w, horizon);
	date_add(w, add_days(horizon, 1));
	date_add(w, add_days(horizon, 40));
	date_add(w, 20991231);
	while (w->date_count < DATES_MAX - 3 && w->slot_count > 0) {
		const struct core_slot *s = &w->slots[rnd(w->slot_count)];
		const struct core_policy *p = core_policy_find(&w->set, s->city);
		int32_t pivot = rnd(2) && s->paid_date > 0 ? s->paid_date : p->deadline_date[s->month - CORE_MONTH_FIRST];
		int32_t delta = (int32_t)rnd(3) - 1;
		int32_t d = add_days(pivot, delta);
		/* only later than the horizon matters to the fast path, but earlier dates must not apply */
		date_add(w, rnd(4) == 0 ? d : add_days(horizon, (int32_t)rnd(4000)));
	}
}

static void compare_arrears(struct world *w, const struct core_timeline *tl, const struct core_summary *sum,
			    struct core_as_of as_of)
{
	struct core_arrears full, fast;
	uint32_t full_count = 0, fast_count = 0;
	int rc = core_arrears_compute(&w->set, tl, as_of, &full, w->items_full, &full_count);
	int rc2 = core_arrears_compute(&w->set, &sum->exceptions, as_of, &fast, w->items_fast, &fast_count);
	assert_int_equal(rc, rc2);
	if (rc != CORE_OK) {
		return;
	}
	assert_memory_equal(&full, &fast, sizeof(full));
	assert_int_equal(full_count, fast_count);
	assert_memory_equal(w->items_full, w->items_fast, sizeof(*w->items_full) * full_count);
}

static void compare_years(struct world *w, const struct core_timeline *tl, const struct core_summary *sum,
			  struct core_as_of as_of)
{
	struct core_years full, fast;
	uint32_t full_count, fast_count;
	assert_int_equal(core_years_compute(&w->set, tl, as_of, &full, w->dups_full, &full_count), CORE_OK);
	assert_int_equal(core_summary_years(sum, &fast, w->dups_fast, &fast_count), CORE_OK);
	assert_memory_equal(&full, &fast, sizeof(full));
	assert_int_equal(full_count, fast_count);
	for (uint32_t i = 0; i < full_count; i++) {
		assert_int_equal(w->dups_full[i].month, w->dups_fast[i].month);
		assert_int_equal(w->dups_full[i].city, w->dups_fast[i].city);
		assert_int_equal(w->dups_full[i].type, w->dups_fast[i].type);
	}
}

static void compare_retirement(struct world *w, const struct core_timeline *tl, const struct core_summary *sum,
			       struct core_as_of as_of)
{
	static const int32_t births[] = { 196003, 196811, 197507, 198001 };
	for (uint8_t c = 0; c < CORE_CLASS_COUNT; c++) {
		int32_t birth = M(births[rnd(4)]);
		struct core_retirement full, fast;
		memset(&full, 0, sizeof(full));
		memset(&fast, 0, sizeof(fast));
		int rc = core_retirement_check(&w->set, birth, c, tl, as_of, -1, &full);
		assert_int_equal(core_summary_retirement(&w->set, birth, c, sum, as_of, -1, &fast), rc);
		assert_memory_equal(&full, &fast, sizeof(full));
	}
}

static void compare_medical(struct world *w, const struct core_timeline *tl, const struct core_summary *sum,
			    struct core_as_of as_of)
{
	struct core_medical full, fast;
	memset(&full, 0, sizeof(full));
	memset(&fast, 0, sizeof(fast));
	assert_int_equal(core_medical_status(&w->set, tl, as_of, &full), CORE_OK);
	assert_int_equal(core_summary_medical(&w->set, sum, as_of, &fast), CORE_OK);
	assert_memory_equal(&full, &fast, sizeof(full));
}

static void compare_housing(struct world *w, const struct core_timeline *tl, const struct core_summary *sum,
			    struct core_as_of as_of)
{
	for (uint32_t i = 0; i < CITIES; i++) {
		memset(&w->housing_full, 0, sizeof(w->housing_full));
		memset(&w->housing_fast, 0, sizeof(w->housing_fast));
		assert_int_equal(core_housing_check(&w->set, &w->policies[i], tl, as_of, &w->housing_full), CORE_OK);
		assert_int_equal(core_summary_housing(&w->policies[i], sum, as_of, &w->housing_fast), CORE_OK);
		assert_memory_equal(&w->housing_full, &w->housing_fast, sizeof(w->housing_full));
	}
}

static void test_summary_answers_as_the_full_path_after_its_horizon(void **state)
{
	struct world *w = *state;
	uint64_t applied = 0;
	uint64_t before = 0;
	for (uint32_t round = 0; round < 1500; round++) {
		rng_state = 0x9e3779b97f4a7c15ull * (round + 1);
		for (uint32_t i = 0; i < CITIES; i++) {
			random_policy(w, i);
		}
		w->set = (struct core_policy_set){ w->items, CITIES };
		random_timeline(w);
		size_t runs_size = core_timeline_encode(w->slots, w->slot_count, w->runs, sizeof(w->runs));
		assert_true(runs_size > 0);
		/* read in place, as the store hands it over */
		struct core_timeline tl = { .slot_count = w->slot_count, .runs = w->runs, .runs_size = runs_size };
		struct core_summary_scratch scratch = { w->scratch_slots, w->scratch_dups, w->scratch_cities, SLOTS_MAX };
		assert_true(core_summary_size_max(w->slot_count) <= sizeof(w->summary));
		size_t size = core_summary_build(&w->set, w->revisions, &tl, &scratch, w->summary, sizeof(w->summary));
		uint32_t bad;
		if (core_person_resolve(&w->set, &tl, &bad) != CORE_OK) {
			assert_int_equal(size, 0); /* R1 fails: nothing to summarize */
			continue;
		}
		assert_true(size > 0);
		struct core_summary sum;
		assert_true(core_summary_read(w->summary, size, &sum));
		assert_false(core_summary_read(w->summary, size - 1, &sum)); /* the sizes must add up */
		assert_true(core_summary_read(w->summary, size, &sum));
		assert_true(sum.exceptions.slot_count <= w->slot_count);
		pick_dates(w, sum.horizon_days);
		for (uint32_t k = 0; k < w->date_count; k++) {
			struct core_as_of as_of = core_as_of_make(w->dates[k]);
			if (!core_summary_applies(&sum, as_of)) {
				assert_true(as_of.days < sum.horizon_days);
				before++;
				continue;
			}
			applied++;
			compare_arrears(w, &tl, &sum, as_of);
			compare_years(w, &tl, &sum, as_of);
			compare_retirement(w, &tl, &sum, as_of);
			compare_medical(w, &tl, &sum, as_of);
			compare_housing(w, &tl, &sum, as_of);
		}
	}
	/* the test means something only if both sides of the horizon were seen often */
	assert_true(applied > 20000);
	assert_true(before > 1000);
}

/* The horizon by hand: one pension month 202301 paid 20230320 (after its
 * deadline 20230125 under day 25): the summary applies from 20230321. */
static void test_summary_horizon_is_the_day_after_the_last_payment(void **state)
{
	struct world *w = *state;
	rng_state = 1;
	random_policy(w, 0);
	struct core_policy *p = &w->policies[0];
	p->deadline_day = 25;
	p->deadline_month_offset = 0;
	core_policy_prepare(p);
	w->set = (struct core_policy_set){ w->items, 1 };
	struct core_slot s = { .base_fen = 500000, .paid_fen = 10000000, .month = M(202301), .paid_date = 20230320,
			       .city = p->city, .type = CORE_PENSION, .category = CORE_EMPLOYEE };
	struct core_timeline tl = { .slots = &s, .slot_count = 1 };
	struct core_summary_scratch scratch = { w->scratch_slots, w->scratch_dups, w->scratch_cities, SLOTS_MAX };
	size_t size = core_summary_build(&w->set, w->revisions, &tl, &scratch, w->summary, sizeof(w->summary));
	struct core_summary sum;
	assert_true(size > 0 && core_summary_read(w->summary, size, &sum));
	assert_int_equal(sum.horizon_days, core_date_to_days(20230321));
	assert_int_equal(sum.exceptions.slot_count, 0);
	assert_int_equal(sum.years.by_type[CORE_PENSION].months, 1);
	assert_int_equal(sum.years.by_type[CORE_PENSION].backpaid, 1);
	uint32_t city;
	uint32_t revision;
	core_summary_city(&sum, 0, &city, &revision);
	assert_int_equal(city, p->city);
	assert_int_equal(revision, w->revisions[0]);
}

static int setup(void **state)
{
	*state = calloc(1, sizeof(struct world));
	return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_summary_answers_as_the_full_path_after_its_horizon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_summary_horizon_is_the_day_after_the_last_payment, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
