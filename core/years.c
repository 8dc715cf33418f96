/* R8 counted months, R9 retirement, R11 medical status. */
#include "core.h"
#include "internal.h"

struct counted_bits {
	struct month_bits on_time;
	struct month_bits backpaid;
	struct month_bits deemed;
	struct month_bits paid;      /* counted by a non-deemed slot in some city */
	struct month_bits duplicate; /* counted by non-deemed slots in two cities or more */
};

static int duplicate_order(const void *a, const void *b)
{
	const struct core_duplicate *x = a;
	const struct core_duplicate *y = b;
	if (x->month != y->month) {
		return x->month < y->month ? -1 : 1;
	}
	if (x->type != y->type) {
		return (int)x->type - (int)y->type;
	}
	return x->city < y->city ? -1 : x->city > y->city;
}

/* Marks a slot counted by R8 in its type's sets; true when it makes a duplicate. */
static bool count_slot(struct counted_bits *b, const struct core_slot *s, const struct slot_view *v)
{
	if (s->deemed) {
		month_bits_set(&b->deemed, s->month);
		return false;
	}
	month_bits_set(v->on_time ? &b->on_time : &b->backpaid, s->month);
	bool duplicate = month_bits_test(&b->paid, s->month);
	if (duplicate) {
		month_bits_set(&b->duplicate, s->month);
	}
	month_bits_set(&b->paid, s->month);
	return duplicate;
}

/* Months first..last (≤ month(D)) of a run into its type's sets: a run paid
 * in full by D on one side of its deadlines at once, others month by month. */
static bool count_run(struct slot_cursor *cursor, const struct core_run *r, int32_t last, struct core_as_of as_of,
		      struct counted_bits *b)
{
	if (r->first.deemed) {
		month_bits_set_range(&b->deemed, r->first.month, last);
		return false;
	}
	bool duplicate = false;
	struct run_pieces pc;
	run_pieces_init(&pc, r, last, as_of, false);
	while (run_piece_next(cursor, &pc)) {
		int on_time = pc.settled ? run_on_time(cursor->policy, r) : -1;
		if (on_time >= 0) {
			struct month_bits range = { { 0 } };
			month_bits_set_range(&range, pc.from, pc.to);
			struct month_bits *kind = on_time ? &b->on_time : &b->backpaid;
			for (uint32_t w = 0; w < MONTH_WORDS; w++) {
				kind->w[w] |= range.w[w];
				b->duplicate.w[w] |= b->paid.w[w] & range.w[w];
				duplicate |= (b->paid.w[w] & range.w[w]) != 0;
				b->paid.w[w] |= range.w[w];
			}
			continue;
		}
		struct core_slot slot;
		for (int32_t m = pc.from; m <= pc.to; m++) {
			core_run_slot(r, (uint32_t)(m - r->first.month), &slot);
			struct slot_view v;
			slot_view_make(cursor, &slot, as_of, &v);
			if (v.state == SLOT_COUNTED) {
				duplicate |= count_slot(b, &slot, &v);
			}
		}
	}
	return duplicate;
}

int core_years_compute(const struct core_policy_set *set, const struct core_timeline *tl, struct core_as_of as_of,
		       struct core_years *out, struct core_duplicate *duplicates, uint32_t *duplicate_count)
{
	struct counted_bits bits[CORE_TYPE_COUNT];
	memset(bits, 0, sizeof(bits));
	struct slot_cursor cursor;
	slot_cursor_init(&cursor, set);
	bool any_duplicate = false;
	struct core_timeline_iter it;
	const struct core_run *r;
	core_timeline_iter_init(&it, tl);
	while ((r = core_timeline_next_run(&it)) != NULL) {
		int32_t last = run_last_due(r, as_of);
		if (last >= r->first.month) {
			any_duplicate |= count_run(&cursor, r, last, as_of, &bits[r->first.type]);
		}
	}
	for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
		struct counted_bits *b = &bits[t];
		struct core_years_type *y = &out->by_type[t];
		y->months = y->on_time = y->backpaid = y->deemed = 0;
		for (uint32_t w = 0; w < MONTH_WORDS; w++) {
			uint64_t on_time = b->on_time.w[w];
			uint64_t backpaid = b->backpaid.w[w] & ~on_time;
			uint64_t deemed = b->deemed.w[w] & ~on_time & ~backpaid;
			y->on_time += (uint32_t)__builtin_popcountll(on_time);
			y->backpaid += (uint32_t)__builtin_popcountll(backpaid);
			y->deemed += (uint32_t)__builtin_popcountll(deemed);
		}
		y->months = y->on_time + y->backpaid + y->deemed;
	}
	*duplicate_count = 0;
	if (it.corrupt) {
		return CORE_ERR_CORRUPT;
	}
	if (!any_duplicate) {
		return CORE_OK;
	}
	/* Rare: a second pass lists the cities of each duplicate month. */
	slot_cursor_init(&cursor, set);
	core_timeline_iter_init(&it, tl);
	struct core_slot s;
	while ((r = core_timeline_next_run(&it)) != NULL) {
		int32_t last = run_last_due(r, as_of);
		for (int32_t m = r->first.month; m <= last && !r->first.deemed; m++) {
			if (!month_bits_test(&bits[r->first.type].duplicate, m)) {
				continue;
			}
			core_run_slot(r, (uint32_t)(m - r->first.month), &s);
			struct slot_view v;
			slot_view_make(&cursor, &s, as_of, &v);
			if (v.state == SLOT_COUNTED) {
				duplicates[(*duplicate_count)++] = (struct core_duplicate){ m, s.city, s.type };
			}
		}
	}
	qsort(duplicates, *duplicate_count, sizeof(*duplicates), duplicate_order);
	return CORE_OK;
}

/* R9 table: base age, reference birth month (dense), birth months per month of delay, cap. */
struct reform_row {
	int32_t base_age_months;
	int32_t reference_month;
	int32_t step_months;
	int32_t cap_months;
};
static const struct reform_row reform[CORE_CLASS_COUNT] = {
	[CORE_CLASS_M60] = { 720, 1965 * 12, 4, 36 },
	[CORE_CLASS_F55] = { 660, 1970 * 12, 4, 36 },
	[CORE_CLASS_F50] = { 600, 1975 * 12, 2, 60 },
};

int core_retirement_check(const struct core_policy_set *set, int32_t birth_month, uint8_t class_,
			  const struct core_timeline *tl, struct core_as_of as_of, int32_t elect_month,
			  struct core_retirement *out)
{
	const struct month_bits none = { { 0 } };
	return retirement_compute(set, birth_month, class_, tl, as_of, elect_month, &none, out);
}

int retirement_compute(const struct core_policy_set *set, int32_t birth_month, uint8_t class_,
		       const struct core_timeline *tl, struct core_as_of as_of, int32_t elect_month,
		       const struct month_bits *counted_before, struct core_retirement *out)
{
	ASSERT(class_ < CORE_CLASS_COUNT);
	const struct reform_row *row = &reform[class_];
	int32_t k = birth_month - row->reference_month;
	int32_t delay = 0;
	if (k >= 0) {
		delay = k / row->step_months + 1;
		delay = delay < row->cap_months ? delay : row->cap_months;
	}
	memset(out, 0, sizeof(*out));
	out->class_ = class_;
	out->birth_month = birth_month;
	out->original_month = birth_month + row->base_age_months;
	out->statutory_month = out->original_month + delay;
	if (elect_month >= 0) {
		int32_t earliest = out->statutory_month - 36;
		earliest = earliest > out->original_month ? earliest : out->original_month;
		if (elect_month < earliest || elect_month > out->statutory_month + 36) {
			return CORE_ERR_ELECT_MONTH;
		}
	}
	out->retire_month = elect_month >= 0 ? elect_month : out->statutory_month;
	int32_t retire_year = out->retire_month / 12;
	int32_t required = retire_year <= 2029 ? 180 : 180 + 6 * (retire_year - 2029);
	out->required_months = (uint32_t)(required < 240 ? required : 240);

	struct month_bits counted = *counted_before;
	struct month_bits arrears = { { 0 } };
	struct slot_cursor cursor;
	slot_cursor_init(&cursor, set);
	struct core_timeline_iter it;
	const struct core_run *r;
	struct core_slot s;
	core_timeline_iter_init(&it, tl);
	while ((r = core_timeline_next_run(&it)) != NULL) {
		int32_t last = run_last_due(r, as_of);
		if (r->first.type != CORE_PENSION || last < r->first.month) {
			continue;
		}
		if (r->first.deemed) {
			month_bits_set_range(&counted, r->first.month, last);
			continue;
		}
		struct run_pieces pc;
		run_pieces_init(&pc, r, last, as_of, false);
		while (run_piece_next(&cursor, &pc)) {
			if (pc.settled) {
				month_bits_set_range(&counted, pc.from, pc.to);
				continue;
			}
			for (int32_t m = pc.from; m <= pc.to; m++) {
				core_run_slot(r, (uint32_t)(m - r->first.month), &s);
				struct slot_view v;
				slot_view_make(&cursor, &s, as_of, &v);
				if (v.state == SLOT_COUNTED) {
					month_bits_set(&counted, m);
				} else if (v.state == SLOT_ARREARS && !v.expired) {
					month_bits_set(&arrears, m);
				}
			}
		}
	}
	if (it.corrupt) {
		return CORE_ERR_CORRUPT;
	}
	for (uint32_t w = 0; w < MONTH_WORDS; w++) {
		arrears.w[w] &= ~counted.w[w];
	}
	out->counted_months = month_bits_count(&counted);
	out->payable_arrears_months = month_bits_count(&arrears);
	out->shortfall = out->required_months > out->counted_months ? out->required_months - out->counted_months : 0;
	out->eligible_now = as_of.month >= out->retire_month && out->shortfall == 0;
	out->eligible_from = out->retire_month;
	if (out->shortfall > 0 && as_of.month + (int32_t)out->shortfall > out->retire_month) {
		out->eligible_from = as_of.month + (int32_t)out->shortfall;
	}
	return CORE_OK;
}

int core_medical_status(const struct core_policy_set *set, const struct core_timeline *tl, struct core_as_of as_of,
			struct core_medical *out)
{
	struct month_bits arrears = { { 0 } };
	int32_t suspended_since = -1; /* from an unpaid month */
	int32_t repaid_since = -1;    /* from a month back-paid on D itself */
	bool enrolled = false;
	struct slot_cursor cursor;
	slot_cursor_init(&cursor, set);
	struct core_timeline_iter it;
	const struct core_run *r;
	struct core_slot slot;
	const struct core_slot *s = &slot;
	core_timeline_iter_init(&it, tl);
	while ((r = core_timeline_next_run(&it)) != NULL) {
		int32_t last = run_last_due(r, as_of);
		if (r->first.type != CORE_MEDICAL || last < r->first.month) {
			continue;
		}
		enrolled = true;
		/* Deemed months are never owed; months paid before D neither suspend nor resume. */
		if (r->first.deemed) {
			continue;
		}
		struct run_pieces pc;
		run_pieces_init(&pc, r, last, as_of, true);
		while (run_piece_next(&cursor, &pc)) {
			for (int32_t m = pc.from; !pc.settled && m <= pc.to; m++) {
				core_run_slot(r, (uint32_t)(m - r->first.month), &slot);
				struct slot_view v;
				slot_view_make(&cursor, s, as_of, &v);
				int32_t from = m + 1;
				if (v.state == SLOT_ARREARS && !v.expired) {
					month_bits_set(&arrears, m);
					if (from <= as_of.month && (suspended_since < 0 || from < suspended_since)) {
						suspended_since = from;
					}
				} else if (v.state == SLOT_COUNTED && !s->deemed && !v.on_time &&
					   s->paid_date == as_of.date && from <= as_of.month &&
					   (repaid_since < 0 || from < repaid_since)) {
					repaid_since = from;
				}
			}
		}
	}
	if (it.corrupt) {
		return CORE_ERR_CORRUPT;
	}
	out->arrears_months = month_bits_count(&arrears);
	out->suspended_since = -1;
	out->resumes_date = 0;
	if (suspended_since >= 0) {
		out->status = CORE_MEDICAL_SUSPENDED;
		out->suspended_since = suspended_since;
	} else if (repaid_since >= 0) {
		out->status = CORE_MEDICAL_SUSPENDED;
		out->suspended_since = repaid_since;
		out->resumes_date = core_days_to_date(as_of.days + 1);
	} else {
		out->status = enrolled ? CORE_MEDICAL_ACTIVE : CORE_MEDICAL_NONE;
	}
	return CORE_OK;
}
