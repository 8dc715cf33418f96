/* R10: housing-purchase eligibility in one city's window. */
#include "core.h"
#include "internal.h"

/* A counted slot paid by deadline + grace days, or backpay counts. */
static bool in_time(const struct core_policy *p, const struct core_slot *s, const struct slot_view *v)
{
	return p->housing_backpay_counts || v->on_time ||
	       core_date_to_days(s->paid_date) <= core_date_to_days(v->deadline_date) + (int64_t)p->housing_grace_days;
}

/* Months that qualify as of D: for every housing type, a counted non-deemed
 * slot in the city, paid by deadline + grace unless backpay counts. */
static bool qualifying_months(const struct core_policy_set *set, const struct core_policy *p,
			      const struct core_timeline *tl, struct core_as_of as_of, struct month_bits *out)
{
	struct month_bits by_type[CORE_TYPE_COUNT];
	memset(by_type, 0, sizeof(by_type));
	struct slot_cursor cursor;
	slot_cursor_init(&cursor, set);
	struct core_timeline_iter it;
	const struct core_run *r;
	struct core_slot s;
	core_timeline_iter_init(&it, tl);
	while ((r = core_timeline_next_run(&it)) != NULL) {
		int32_t last = run_last_due(r, as_of);
		if (r->first.city != p->city || !(p->housing_types >> r->first.type & 1) || r->first.deemed ||
		    last < r->first.month) {
			continue;
		}
		struct run_pieces pc;
		run_pieces_init(&pc, r, last, as_of, false);
		while (run_piece_next(&cursor, &pc)) {
			if (pc.settled) {
				int on_time = p->housing_backpay_counts ? 1 : run_on_time(p, r);
				if (on_time == 1) {
					month_bits_set_range(&by_type[r->first.type], pc.from, pc.to);
					continue;
				}
				if (on_time == 0 && p->housing_grace_days == 0) {
					continue; /* all late, none in time */
				}
			}
			for (int32_t m = pc.from; m <= pc.to; m++) {
				core_run_slot(r, (uint32_t)(m - r->first.month), &s);
				struct slot_view v;
				slot_view_make(&cursor, &s, as_of, &v);
				if (v.state == SLOT_COUNTED && in_time(p, &s, &v)) {
					month_bits_set(&by_type[s.type], m);
				}
			}
		}
	}
	memset(out->w, 0xff, sizeof(out->w));
	for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
		if (p->housing_types >> t & 1) {
			for (uint32_t w = 0; w < MONTH_WORDS; w++) {
				out->w[w] &= by_type[t].w[w];
			}
		}
	}
	return !it.corrupt;
}

/* Whether month m qualifies as of D. With no housing types every month does,
 * inside the slot range or not ("for every type" holds vacuously). Months
 * m..m+n-1 (n ≤ 64) as bits 0..n-1. */
static uint64_t qualifying_bits(const struct core_policy *p, const struct month_bits *q, int32_t m, uint32_t n)
{
	return p->housing_types == 0 ? low_bits(n) : month_bits_get(q, m, n);
}

/* Whether month m would qualify if the person paid every month on time from D on. */
static bool would_qualify(const struct core_policy *p, const struct month_bits *q, int32_t m, bool current_can,
			  struct core_as_of as_of)
{
	if (m > as_of.month) {
		return true;
	}
	if (m == as_of.month && current_can) {
		return true;
	}
	return qualifying_bits(p, q, m, 1) != 0;
}

/* The month of the need-th (need ≥ 1) month from `from` on that would not
 * qualify; there is one by D (after D every month would). */
static int32_t nth_not_qualifying(const struct core_policy *p, const struct month_bits *q, int32_t from,
				  uint32_t need, bool current_can, struct core_as_of as_of)
{
	for (int32_t m = from; m <= as_of.month; m += 64) {
		uint32_t n = (uint32_t)(as_of.month - m + 1) < 64 ? (uint32_t)(as_of.month - m + 1) : 64;
		uint64_t zeros = ~qualifying_bits(p, q, m, n) & low_bits(n);
		if (current_can && as_of.month - m < (int32_t)n) {
			zeros &= ~(1ull << (as_of.month - m)); /* D itself would */
		}
		uint32_t count = (uint32_t)__builtin_popcountll(zeros);
		if (count < need) {
			need -= count;
			continue;
		}
		while (--need > 0) {
			zeros &= zeros - 1;
		}
		return m + __builtin_ctzll(zeros);
	}
	ASSERT(false);
	return as_of.month;
}

int core_housing_check(const struct core_policy_set *set, const struct core_policy *p, const struct core_timeline *tl,
		       struct core_as_of as_of, struct core_housing *out)
{
	struct month_bits q;
	if (!qualifying_months(set, p, tl, as_of, &q)) {
		return CORE_ERR_CORRUPT;
	}
	housing_of_months(p, &q, as_of, out);
	return CORE_OK;
}

bool housing_qualifying(const struct core_policy_set *set, const struct core_policy *p, const struct core_timeline *tl,
			struct core_as_of as_of, struct month_bits *out)
{
	return qualifying_months(set, p, tl, as_of, out);
}

void housing_of_months(const struct core_policy *p, const struct month_bits *qualifying, struct core_as_of as_of,
		       struct core_housing *out)
{
	ASSERT(p->housing_window_months >= 1 && p->housing_window_months <= CORE_WINDOW_MAX);
	ASSERT(p->housing_required_months <= p->housing_window_months);
	const struct month_bits *q = qualifying;
	int32_t window = (int32_t)p->housing_window_months;
	int32_t end = as_of.month - (int32_t)p->housing_end_offset_months;
	out->window_to = end;
	out->window_from = end - window + 1;
	out->required = p->housing_required_months;
	out->qualifying = 0;
	out->missing_count = 0;
	for (int32_t m = out->window_from; m <= end; m += 64) { /* 64 months a step */
		uint32_t n = (uint32_t)(end - m + 1) < 64 ? (uint32_t)(end - m + 1) : 64;
		uint64_t bits = qualifying_bits(p, q, m, n);
		out->qualifying += (uint32_t)__builtin_popcountll(bits);
		for (uint64_t miss = ~bits & low_bits(n); miss != 0; miss &= miss - 1) {
			out->missing[out->missing_count++] = m + __builtin_ctzll(miss);
		}
	}
	out->eligible = out->qualifying >= out->required;

	/* Slide the window from the one ending month(D) − offset until it holds
	 * enough months that would qualify if every month from D on were paid
	 * on time. */
	int32_t deadline = core_policy_deadline(p, as_of.month);
	bool current_can = p->housing_backpay_counts ||
			   (int64_t)as_of.days <= (int64_t)core_date_to_days(deadline) + p->housing_grace_days;
	uint32_t count = out->qualifying;
	if (end == as_of.month && current_can && !qualifying_bits(p, q, end, 1)) {
		count++; /* D would qualify */
	}
	int32_t t = as_of.month;
	while (count < out->required && end < as_of.month) { /* while the window ends before D */
		t++;
		end++;
		count += would_qualify(p, q, end, current_can, as_of);
		count -= would_qualify(p, q, end - window, current_can, as_of);
	}
	/* From here each month the window gains would qualify (it is after D):
	 * a slide adds one unless the month it drops would qualify too, so the
	 * window holds enough once it dropped `required − count` months that
	 * would not. */
	if (count < out->required) {
		int32_t dropped = nth_not_qualifying(p, q, end - window + 1, out->required - count, current_can, as_of);
		t += dropped - (end - window + 1) + 1;
	}
	out->eligible_from = t;
}
