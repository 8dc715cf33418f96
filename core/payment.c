/* R12 the month-end withholding run and R13 payments, on a person's plain
 * slots, changed in place. */
#include "core.h"
#include "internal.h"

/* R13: the slot (month, city, type) gets amount more, paid on date. */
int core_payment_apply(struct core_slot *slots, uint32_t slot_count, int32_t month, uint32_t city, uint8_t type,
		       int64_t amount_fen, int32_t date)
{
	ASSERT(amount_fen > 0 && amount_fen <= CORE_MONEY_MAX);
	for (uint32_t i = 0; i < slot_count; i++) {
		struct core_slot *s = &slots[i];
		if (s->month != month || s->city != city || s->type != type) {
			continue;
		}
		if (s->deemed) {
			return CORE_ERR_DEEMED;
		}
		if (s->paid_fen + amount_fen > CORE_MONEY_MAX) {
			return CORE_ERR_OVERFLOW; /* R13: every stored slot stays a valid input */
		}
		s->paid_fen += amount_fen;
		s->paid_date = s->paid_date > date ? s->paid_date : date;
		return CORE_OK;
	}
	return CORE_ERR_NO_SLOT;
}

static int line_order(const void *a, const void *b)
{
	const struct core_withhold_line *x = a;
	const struct core_withhold_line *y = b;
	if (x->rank != y->rank) {
		return (int)x->rank - (int)y->rank;
	}
	return x->city < y->city ? -1 : x->city > y->city;
}

/* Position of a type in its city's withholding order; unlisted types follow
 * in canonical order. */
static uint8_t withhold_rank(const struct core_policy *p, uint8_t type)
{
	for (uint8_t i = 0; i < p->withhold_order_count; i++) {
		if (p->withhold_order[i] == type) {
			return i;
		}
	}
	return (uint8_t)(CORE_TYPE_COUNT + type);
}

int core_withhold_run(const struct core_policy_set *set, struct core_slot *slots, uint32_t slot_count, int32_t month,
		      int32_t date, int64_t *balance_fen, struct core_withhold_line *lines, uint32_t *line_count)
{
	struct core_as_of as_of = core_as_of_make(date);
	ASSERT(month <= as_of.month);
	uint32_t n = 0;
	for (uint32_t i = 0; i < slot_count; i++) {
		struct core_slot *s = &slots[i];
		if (s->month != month) {
			continue;
		}
		const struct core_policy *p = core_policy_find(set, s->city);
		ASSERT(p != NULL); /* core_person_resolve ran first */
		struct core_due due = core_slot_due(p, s);
		int64_t owed = due.employer_fen + due.individual_fen - s->paid_fen; /* every payment so far */
		if (owed <= 0 || slot_is_expired(p, s, as_of)) {
			continue;
		}
		lines[n++] = (struct core_withhold_line){ .amount_fen = owed, .slot_index = i, .city = s->city,
							  .type = s->type, .rank = withhold_rank(p, s->type) };
	}
	if (n > 1) { /* qsort's pointer must not be NULL, even for no elements (a person without slots) */
		qsort(lines, n, sizeof(*lines), line_order);
	}
	bool stopped = false;
	for (uint32_t k = 0; k < n; k++) {
		struct core_withhold_line *line = &lines[k];
		struct core_slot *s = &slots[line->slot_index];
		if (!stopped && *balance_fen >= line->amount_fen && s->paid_fen + line->amount_fen <= CORE_MONEY_MAX) {
			line->paid = true;
			*balance_fen -= line->amount_fen;
			s->paid_fen += line->amount_fen;
			s->paid_date = s->paid_date > date ? s->paid_date : date;
			continue;
		}
		line->paid = false;
		const struct core_policy *p = core_policy_find(set, s->city);
		stopped |= p->withhold_mode == CORE_WITHHOLD_STOP;
	}
	*line_count = n;
	return CORE_OK;
}
