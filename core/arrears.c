/* R4–R7: months owed, principal, interest, late fees and backpay tiers. */
#include "core.h"
#include "internal.h"

/* R6: month-product interest with yearly compounding on `owed`. Returns the
 * interest, or -1 when a balance step passes CORE_AMOUNT_MAX. */
static int64_t interest_fen(const struct core_policy *p, int32_t month, int64_t owed_fen, struct core_as_of as_of)
{
	if (as_of.month - month <= 0) {
		return 0;
	}
	int32_t year = month / 12;
	int32_t year_d = as_of.month / 12;
	uint32_t mi = (uint32_t)(month % 12) + 1;
	uint32_t md = (uint32_t)(as_of.month % 12) + 1;
	const uint32_t *r = p->interest_ppm_of_year;
	uint32_t y0 = (uint32_t)(year - CORE_YEAR_FIRST);
	uint64_t b = (uint64_t)owed_fen;
	/* b ≤ 2^53, rate ≤ 2^20, months ≤ 12: products stay below 2^77. */
	if (year_d == year) {
		b += core_div_round_half_up((unsigned __int128)b * r[y0] * (md - mi), 12000000u);
		return b > (uint64_t)CORE_AMOUNT_MAX ? -1 : (int64_t)b - owed_fen;
	}
	b += core_div_round_half_up((unsigned __int128)b * r[y0] * (12 - mi), 12000000u);
	if (b > (uint64_t)CORE_AMOUNT_MAX) {
		return -1;
	}
	for (int32_t y = year + 1; y < year_d; y++) {
		b += core_div_round_half_up((unsigned __int128)b * r[y - CORE_YEAR_FIRST], 1000000u);
		if (b > (uint64_t)CORE_AMOUNT_MAX) {
			return -1;
		}
	}
	b += core_div_round_half_up((unsigned __int128)b * r[year_d - CORE_YEAR_FIRST] * md, 12000000u);
	return b > (uint64_t)CORE_AMOUNT_MAX ? -1 : (int64_t)b - owed_fen;
}

/* R7: owed ≤ 2×10^10, daily ≤ 10^4, days < 2^16: the product needs 128 bits. */
static int64_t late_fee_fen(const struct core_policy *p, int64_t owed_fen, int32_t deadline_date,
			    struct core_as_of as_of)
{
	int64_t days = as_of.days - core_date_to_days(deadline_date);
	ASSERT(days > 0);
	int64_t fee = (int64_t)core_div_round_half_up(
		(unsigned __int128)owed_fen * p->late_fee_daily_ppm * (uint64_t)days, 1000000u);
	if (p->late_fee_cap_at_principal && fee > owed_fen) {
		fee = owed_fen;
	}
	return fee;
}

static uint8_t tier_of(const struct core_policy *p, int32_t month, struct core_as_of as_of)
{
	int32_t age = as_of.month - month;
	if (month < p->backpay_legacy_before) {
		return CORE_TIER_LEGACY;
	}
	if (age <= (int32_t)p->backpay_direct_max_months) {
		return CORE_TIER_DIRECT;
	}
	if (age <= (int32_t)p->backpay_verify_max_months) {
		return CORE_TIER_VERIFY;
	}
	return CORE_TIER_APPROVAL;
}

static int item_order(const void *a, const void *b)
{
	const struct core_arrears_item *x = a;
	const struct core_arrears_item *y = b;
	if (x->month != y->month) {
		return x->month < y->month ? -1 : 1;
	}
	if (x->city != y->city) {
		return x->city < y->city ? -1 : 1;
	}
	return (int)x->type - (int)y->type;
}

static void item_fill(struct core_arrears_item *item, const struct core_slot *s, const struct slot_view *v,
		      uint8_t tier)
{
	int64_t owed_individual = v->due.individual_fen - v->paid_fen;
	owed_individual = owed_individual > 0 ? owed_individual : 0;
	*item = (struct core_arrears_item){
		.due_fen = v->due.employer_fen + v->due.individual_fen,
		.paid_fen = v->paid_fen,
		.owed_fen = v->owed_fen,
		.owed_employer_fen = v->owed_fen - owed_individual,
		.owed_individual_fen = owed_individual,
		.month = s->month,
		.deadline_date = v->deadline_date,
		.city = s->city,
		.type = s->type,
		.category = s->category,
		.tier = tier,
		.expired = v->expired,
	};
}

/* Running sums and month sets of one person's arrears. */
struct arrears_acc {
	struct core_arrears *out;
	struct month_bits payable;
	struct month_bits expired;
	struct month_bits by_type[CORE_TYPE_COUNT];
	struct core_arrears_item *items; /* NULL: no detail */
	uint32_t item_count;
};

/* One owed or pending month; CORE_OK or CORE_ERR_OVERFLOW. */
static int arrears_slot(struct arrears_acc *acc, const struct core_slot *s, const struct slot_view *v,
			struct core_as_of as_of)
{
	struct core_arrears *out = acc->out;
	if (v->state == SLOT_PENDING) {
		return core_sum_add(&out->pending_fen, v->owed_fen) ? CORE_OK : CORE_ERR_OVERFLOW;
	}
	if (v->state != SLOT_ARREARS) {
		return CORE_OK;
	}
	const struct core_policy *p = v->policy;
	uint8_t tier = tier_of(p, s->month, as_of);
	struct core_arrears_item *item = acc->items != NULL ? &acc->items[acc->item_count++] : NULL;
	if (item != NULL) {
		item_fill(item, s, v, tier);
	}
	if (v->expired) {
		month_bits_set(&acc->expired, s->month);
		return core_sum_add(&out->expired_principal_fen, v->owed_fen) ? CORE_OK : CORE_ERR_OVERFLOW;
	}
	int64_t interest = 0;
	if ((p->interest_types >> s->type & 1) && (p->interest_categories >> s->category & 1)) {
		interest = interest_fen(p, s->month, v->owed_fen, as_of);
		if (interest < 0) {
			return CORE_ERR_OVERFLOW;
		}
	}
	int64_t fee = p->late_fee_categories >> s->category & 1 ? late_fee_fen(p, v->owed_fen, v->deadline_date, as_of)
								 : 0;
	if (item != NULL) {
		item->interest_fen = interest;
		item->late_fee_fen = fee;
	}
	month_bits_set(&acc->payable, s->month);
	month_bits_set(&acc->by_type[s->type], s->month);
	out->tiers[tier]++;
	out->first_month = out->first_month < 0 || s->month < out->first_month ? s->month : out->first_month;
	out->last_month = s->month > out->last_month ? s->month : out->last_month;
	struct core_arrears_sums *t = &out->by_type[s->type];
	bool fits = core_sum_add(&t->principal_fen, v->owed_fen) && core_sum_add(&t->interest_fen, interest) &&
		    core_sum_add(&t->late_fee_fen, fee) && core_sum_add(&out->principal_fen, v->owed_fen) &&
		    core_sum_add(&out->interest_fen, interest) && core_sum_add(&out->late_fee_fen, fee);
	return fits ? CORE_OK : CORE_ERR_OVERFLOW;
}

int core_arrears_compute(const struct core_policy_set *set, const struct core_timeline *tl, struct core_as_of as_of,
			 struct core_arrears *out, struct core_arrears_item *items, uint32_t *item_count)
{
	memset(out, 0, sizeof(*out));
	out->first_month = -1;
	out->last_month = -1;
	*item_count = 0;
	if (tl->slot_count == 0) {
		return CORE_OK; /* most summaries' owing part: skip the month sets below */
	}
	struct arrears_acc acc;
	memset(&acc, 0, sizeof(acc));
	acc.out = out;
	acc.items = items;
	struct slot_cursor cursor;
	slot_cursor_init(&cursor, set);
	struct core_timeline_iter it;
	const struct core_run *r;
	struct core_slot slot;
	core_timeline_iter_init(&it, tl);
	while ((r = core_timeline_next_run(&it)) != NULL) {
		if (r->first.deemed) {
			continue; /* due 0: never owed */
		}
		/* Months paid in full by D owe nothing: only the rest go month by month. */
		struct run_pieces pc;
		run_pieces_init(&pc, r, run_last_due(r, as_of), as_of, false);
		while (run_piece_next(&cursor, &pc)) {
			for (int32_t m = pc.from; !pc.settled && m <= pc.to; m++) {
				core_run_slot(r, (uint32_t)(m - r->first.month), &slot);
				struct slot_view v;
				slot_view_make(&cursor, &slot, as_of, &v);
				int rc = arrears_slot(&acc, &slot, &v, as_of);
				if (rc != CORE_OK) {
					return rc;
				}
			}
		}
	}
	if (it.corrupt) {
		return CORE_ERR_CORRUPT;
	}
	out->total_fen = out->principal_fen;
	if (!(core_sum_add(&out->total_fen, out->interest_fen) && core_sum_add(&out->total_fen, out->late_fee_fen))) {
		return CORE_ERR_OVERFLOW;
	}
	out->months_owed = month_bits_count(&acc.payable);
	out->expired_months = month_bits_count(&acc.expired);
	for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
		out->by_type[t].months = month_bits_count(&acc.by_type[t]);
	}
	if (items != NULL) {
		qsort(items, acc.item_count, sizeof(*items), item_order);
	}
	*item_count = acc.item_count;
	return CORE_OK;
}
