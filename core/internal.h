/* Helpers shared by the core's rule files; not part of the core's API. */
#ifndef ARREARS_CORE_INTERNAL_H
#define ARREARS_CORE_INTERNAL_H

#include <stdlib.h>
#include <string.h>

#include "core.h"

static inline int32_t core_floor_div(int32_t a, int32_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static inline int32_t core_floor_mod(int32_t a, int32_t b)
{
	return a - core_floor_div(a, b) * b;
}

/* R3 deadline (YYYYMMDD) of any dense month, inside the table or not. */
int32_t core_policy_deadline(const struct core_policy *p, int32_t month);

/* YYYYMMDD of day `day` of a dense month (day must exist). */
int32_t core_month_date(int32_t month, uint32_t day);

/* rh(x / d) of SPEC 2: round half up of a non-negative quotient, d even. The
 * 64-bit path lets the compiler turn division by a constant into a multiply. */
static inline uint64_t core_div_round_half_up(unsigned __int128 x, uint64_t d)
{
	if ((x >> 64) == 0 && (uint64_t)x <= UINT64_MAX - d / 2) {
		return ((uint64_t)x + d / 2) / d;
	}
	return (uint64_t)((x + d / 2) / d);
}

/* Adds b to *sum; false when the sum passes CORE_AMOUNT_MAX. Both are at
 * most CORE_AMOUNT_MAX, so the int64 addition itself cannot overflow. */
static inline bool core_sum_add(int64_t *sum, int64_t b)
{
	*sum += b;
	return *sum <= CORE_AMOUNT_MAX;
}

/* A set of dense months 195001..209912, one bit each. */
#define MONTH_WORDS ((CORE_MONTH_COUNT + 63) / 64)
struct month_bits {
	uint64_t w[MONTH_WORDS];
};

static inline void month_bits_set(struct month_bits *b, int32_t month)
{
	uint32_t i = (uint32_t)(month - CORE_MONTH_FIRST);
	ASSERT(i < CORE_MONTH_COUNT);
	b->w[i / 64] |= 1ull << (i % 64);
}

/* Months outside the range are never in a set. */
static inline bool month_bits_test(const struct month_bits *b, int32_t month)
{
	uint32_t i = (uint32_t)(month - CORE_MONTH_FIRST);
	return i < CORE_MONTH_COUNT && (b->w[i / 64] >> (i % 64) & 1);
}

/* Sets months from..to (both in range, from ≤ to). */
static inline void month_bits_set_range(struct month_bits *b, int32_t from, int32_t to)
{
	uint32_t i = (uint32_t)(from - CORE_MONTH_FIRST);
	uint32_t j = (uint32_t)(to - CORE_MONTH_FIRST);
	ASSERT(i <= j && j < CORE_MONTH_COUNT);
	for (uint32_t w = i / 64; w <= j / 64; w++) {
		uint64_t lo = w == i / 64 ? ~0ull << (i % 64) : ~0ull;
		uint64_t hi = w == j / 64 ? ~0ull >> (63 - j % 64) : ~0ull;
		b->w[w] |= lo & hi;
	}
}

/* Bits 0..n-1 set (1 ≤ n ≤ 64). */
static inline uint64_t low_bits(uint32_t n)
{
	return n == 64 ? ~0ull : (1ull << n) - 1;
}

/* Months m..m+n-1 (1 ≤ n ≤ 64) as bits 0..n-1; months outside the range read 0. */
static inline uint64_t month_bits_get(const struct month_bits *b, int32_t m, uint32_t n)
{
	ASSERT(n >= 1 && n <= 64);
	int64_t i = (int64_t)m - CORE_MONTH_FIRST;
	if (i < 0 || i + n > CORE_MONTH_COUNT) { /* a window over the range's edge */
		uint64_t out = 0;
		for (uint32_t j = 0; j < n; j++) {
			out |= (uint64_t)month_bits_test(b, m + (int32_t)j) << j;
		}
		return out;
	}
	uint32_t w = (uint32_t)i / 64;
	uint32_t shift = (uint32_t)i % 64;
	uint64_t out = b->w[w] >> shift;
	if (shift != 0 && w + 1 < MONTH_WORDS) {
		out |= b->w[w + 1] << (64 - shift);
	}
	return out & low_bits(n);
}

static inline uint32_t month_bits_count(const struct month_bits *b)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < MONTH_WORDS; i++) {
		if (b->w[i] != 0) { /* mostly empty: skip the (software) popcount */
			n += (uint32_t)__builtin_popcountll(b->w[i]);
		}
	}
	return n;
}

/* The state of one slot as of D: everything R2–R5 and R8 say about it. */
enum slot_state {
	SLOT_FUTURE,  /* month > month(D): never owed, never counted */
	SLOT_IDLE,    /* nothing owed, not counted (due 0, not deemed) */
	SLOT_COUNTED, /* R8 */
	SLOT_PENDING, /* R4, owed before the deadline */
	SLOT_ARREARS, /* R4, owed after the deadline */
};

struct slot_view {
	const struct core_policy *policy;
	struct core_due due;
	int64_t paid_fen; /* as of D */
	int64_t owed_fen;
	int32_t deadline_date;
	uint8_t state;
	bool on_time;  /* SLOT_COUNTED, not deemed: paid by the deadline */
	bool expired;  /* SLOT_ARREARS: R5 flexible window passed */
};

/* Remembers the last city's policy and the last due: timelines are long runs
 * of one city, type, category and base, so most slots hit both. */
struct slot_cursor {
	const struct core_policy_set *set;
	const struct core_policy *policy;
	uint32_t city;
	int16_t period;
	uint8_t type;
	uint8_t category;
	bool deemed;
	int64_t base_fen;
	struct core_due due;
};

static inline void slot_cursor_init(struct slot_cursor *c, const struct core_policy_set *set)
{
	memset(c, 0, sizeof(*c));
	c->set = set;
	c->period = -1;
}

static inline const struct core_policy *slot_cursor_policy(struct slot_cursor *c, uint32_t city)
{
	if (c->policy == NULL || c->city != city) {
		c->policy = core_policy_find(c->set, city);
		c->city = city;
		c->period = -1;
		ASSERT(c->policy != NULL); /* core_person_resolve ran first */
	}
	return c->policy;
}

/* R2 due of a non-deemed month under a period. Inlined into the cursor:
 * a run needs one or two. b ≤ 10^10 and rate ≤ 10^6, so b × rate < 2^64
 * and rh stays in 64 bits. */
static inline struct core_due period_due(const struct core_period *period, uint8_t type, uint8_t category,
					 int64_t base_fen)
{
	int64_t b = base_fen;
	b = b < period->base_min_fen ? period->base_min_fen : b;
	b = b > period->base_max_fen ? period->base_max_fen : b;
	ASSERT(b >= 0 && b <= CORE_MONEY_MAX);
	const uint32_t *rate = period->rate_ppm[type];
	struct core_due due = { 0, 0 };
	if (category == CORE_EMPLOYEE) {
		due.employer_fen = (int64_t)(((uint64_t)b * rate[CORE_SHARE_EMPLOYER] + 500000u) / 1000000u);
		due.individual_fen = (int64_t)(((uint64_t)b * rate[CORE_SHARE_INDIVIDUAL] + 500000u) / 1000000u);
	} else {
		due.individual_fen = (int64_t)(((uint64_t)b * rate[CORE_SHARE_FLEXIBLE] + 500000u) / 1000000u);
	}
	return due;
}

/* The due of a slot through the cursor's cache. */
static inline struct core_due slot_cursor_due(struct slot_cursor *c, const struct core_policy *p,
					      const struct core_slot *s)
{
	int16_t period = p->period_of[s->month - CORE_MONTH_FIRST];
	if (period != c->period || s->type != c->type || s->category != c->category || s->base_fen != c->base_fen ||
	    s->deemed != c->deemed) {
		c->period = period;
		c->type = s->type;
		c->category = s->category;
		c->base_fen = s->base_fen;
		c->deemed = s->deemed;
		c->due = s->deemed ? (struct core_due){ 0, 0 }
				   : period_due(&p->periods[period], s->type, s->category, s->base_fen);
	}
	return c->due;
}

static inline bool slot_is_expired(const struct core_policy *p, const struct core_slot *s, struct core_as_of as_of)
{
	return s->category == CORE_FLEXIBLE && p->backpay_flexible_window_months > 0 &&
	       as_of.month - s->month > (int32_t)p->backpay_flexible_window_months;
}

static inline void slot_view_make(struct slot_cursor *c, const struct core_slot *s, struct core_as_of as_of,
				  struct slot_view *v)
{
	if (s->month > as_of.month) {
		v->state = SLOT_FUTURE;
		return;
	}
	const struct core_policy *p = slot_cursor_policy(c, s->city);
	v->policy = p;
	v->due = slot_cursor_due(c, p, s);
	v->paid_fen = s->paid_date <= as_of.date ? s->paid_fen : 0;
	v->deadline_date = p->deadline_date[s->month - CORE_MONTH_FIRST];
	int64_t due = v->due.employer_fen + v->due.individual_fen;
	v->owed_fen = due > v->paid_fen ? due - v->paid_fen : 0;
	v->on_time = false;
	v->expired = false;
	if (s->deemed || (due > 0 && v->paid_fen >= due)) {
		v->state = SLOT_COUNTED;
		v->on_time = !s->deemed && s->paid_date <= v->deadline_date;
	} else if (v->owed_fen == 0) {
		v->state = SLOT_IDLE;
	} else if (as_of.date <= v->deadline_date) {
		v->state = SLOT_PENDING;
	} else {
		v->state = SLOT_ARREARS;
		v->expired = slot_is_expired(p, s, as_of);
	}
}

/* The last month of a run that is not in the future, or first − 1 when
 * the whole run is. */
static inline int32_t run_last_due(const struct core_run *r, struct core_as_of as_of)
{
	int32_t last = r->first.month + (int32_t)r->count - 1;
	return last < as_of.month ? last : as_of.month;
}

/* The last month of first..last that was paid by D (before D when
 * strictly_before): payment dates rise with the months, so they form a
 * prefix. first − 1 when none. */
static inline int32_t run_paid_until(const struct core_run *r, int32_t last, struct core_as_of as_of,
				     bool strictly_before)
{
	const struct core_slot *f = &r->first;
	if (r->count == 1) {
		bool paid = f->paid_date < as_of.date || (!strictly_before && f->paid_date == as_of.date);
		return paid ? f->month : f->month - 1;
	}
	/* Months paid in an earlier month than D's are paid by D; in D's month, by the day. */
	int32_t pay_month = as_of.month - r->pay_offset;
	uint32_t day = r->pay_day;
	if (day > 28) {
		uint32_t month_end = core_month_last_day(as_of.month);
		day = day < month_end ? day : month_end;
	}
	uint32_t d_day = (uint32_t)(as_of.date % 100);
	if (day > d_day || (strictly_before && day == d_day)) {
		pay_month--;
	}
	return pay_month < last ? pay_month : last;
}

/* A run read in pieces: months settled at once (paid in full by D under one
 * due: counted, not owed) and months to read one by one. Bases change on a
 * spell's raise month and periods in January, so a run is settled period
 * by period. */
struct run_pieces {
	const struct core_run *r;
	int32_t next;       /* first month not yet returned */
	int32_t last;       /* last month to return, ≤ month(D) */
	int32_t paid_until; /* the run's months up to here were paid by D */
	int32_t from;       /* the piece run_piece_next returned: months from..to, */
	int32_t to;
	bool settled;       /* settled at once, or to read one by one */
};

/* strictly_before: paid before D, not on it (medical resumption looks at
 * payments made on D). */
static inline void run_pieces_init(struct run_pieces *pc, const struct core_run *r, int32_t last,
				   struct core_as_of as_of, bool strictly_before)
{
	const struct core_slot *f = &r->first;
	pc->r = r;
	pc->next = f->month;
	pc->last = last;
	bool paid = !f->deemed && f->paid_fen > 0 && last >= f->month;
	pc->paid_until = paid ? run_paid_until(r, last, as_of, strictly_before) : f->month - 1;
}

/* The next piece into pc->from, to, settled; false after the last. */
static inline bool run_piece_next(struct slot_cursor *c, struct run_pieces *pc)
{
	int32_t m = pc->next;
	if (m > pc->last) {
		return false;
	}
	pc->from = m;
	if (m > pc->paid_until) { /* payment dates rise: none of the rest is paid by D */
		pc->to = pc->last;
		pc->settled = false;
		pc->next = pc->last + 1;
		return true;
	}
	const struct core_policy *p = slot_cursor_policy(c, pc->r->first.city);
	int16_t k = p->period_of[m - CORE_MONTH_FIRST];
	int32_t period_last = (uint32_t)k + 1 < p->period_count ? p->periods[k + 1].from - 1
								 : CORE_MONTH_FIRST + (int32_t)CORE_MONTH_COUNT - 1;
	struct core_slot s = pc->r->first;
	s.month = m;
	struct core_due due = slot_cursor_due(c, p, &s);
	int64_t total = due.employer_fen + due.individual_fen;
	pc->settled = total > 0 && s.paid_fen >= total;
	int32_t until = pc->settled ? pc->paid_until : pc->last;
	pc->to = until < period_last ? until : period_last;
	pc->next = pc->to + 1;
	return true;
}

/* For a settled run: 1 when every month was paid by its deadline, 0 when
 * every month after it, -1 when it cannot tell at once (go month by month). */
static inline int run_on_time(const struct core_policy *p, const struct core_run *r)
{
	if (r->count == 1) {
		return r->first.paid_date <= p->deadline_date[r->first.month - CORE_MONTH_FIRST];
	}
	int32_t deadline_offset = p->deadline_month_offset;
	if (r->pay_offset != deadline_offset) {
		return r->pay_offset < deadline_offset;
	}
	/* Same month: a deadline is day min(day, month end) ≥ min(day, 28). */
	if (r->pay_day <= 28 && r->pay_day <= p->deadline_day) {
		return 1;
	}
	if (p->deadline_day < 28 && r->pay_day > p->deadline_day) {
		return 0;
	}
	return -1;
}

/* R10 in two steps: the months of p's city that qualify as of D (false
 * when tl is corrupt), then the window and eligible_from from them. */
bool housing_qualifying(const struct core_policy_set *set, const struct core_policy *p, const struct core_timeline *tl,
			struct core_as_of as_of, struct month_bits *out);
void housing_of_months(const struct core_policy *p, const struct month_bits *qualifying, struct core_as_of as_of,
		       struct core_housing *out);

/* R9 with the pension months counted_before already counted (a summary's
 * settled part) besides those of tl. */
int retirement_compute(const struct core_policy_set *set, int32_t birth_month, uint8_t class_,
		       const struct core_timeline *tl, struct core_as_of as_of, int32_t elect_month,
		       const struct month_bits *counted_before, struct core_retirement *out);

#endif
