/* R1–R3 and R6's rate table: a policy prepared for one lookup per slot. */
#include "core.h"
#include "internal.h"

/* SPEC 3.3's illustrative interest table, which is also the default. */
static const struct core_year_rate default_interest_rates[] = {
	{ 2016, 83100 }, { 2017, 71200 }, { 2018, 82900 }, { 2019, 76100 }, { 2020, 60400 },
	{ 2021, 66900 }, { 2022, 61200 }, { 2023, 39700 }, { 2024, 26200 },
};

void core_policy_defaults(struct core_policy *p)
{
	p->interest_types = 1u << CORE_PENSION;
	p->interest_categories = 1u << CORE_FLEXIBLE;
	p->interest_default_ppm = 25000;
	p->interest_rate_count = sizeof(default_interest_rates) / sizeof(default_interest_rates[0]);
	p->interest_rates = default_interest_rates;
	p->late_fee_daily_ppm = 500;
	p->late_fee_categories = 1u << CORE_EMPLOYEE;
	p->late_fee_cap_at_principal = false;
	p->backpay_direct_max_months = 3;
	p->backpay_verify_max_months = 60;
	p->backpay_legacy_before = 2011 * 12 + 6;
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

static int32_t deadline_of(const struct core_policy *p, int32_t month)
{
	int32_t due_month = month + p->deadline_month_offset;
	uint32_t last = core_month_last_day(due_month);
	return core_month_date(due_month, p->deadline_day < last ? p->deadline_day : last);
}

int32_t core_policy_deadline(const struct core_policy *p, int32_t month)
{
	uint32_t i = (uint32_t)(month - CORE_MONTH_FIRST);
	return i < CORE_MONTH_COUNT ? p->deadline_date[i] : deadline_of(p, month);
}

void core_policy_prepare(struct core_policy *p)
{
	ASSERT(p->period_count >= 1 && p->period_count <= CORE_PERIODS_MAX);
	ASSERT(p->deadline_day >= 1 && p->deadline_day <= 31);
	ASSERT(p->deadline_month_offset <= 2);
	uint32_t next = 0;
	for (uint32_t i = 0; i < CORE_MONTH_COUNT; i++) {
		int32_t month = CORE_MONTH_FIRST + (int32_t)i;
		while (next < p->period_count && p->periods[next].from <= month) {
			next++;
		}
		p->period_of[i] = (int16_t)((int32_t)next - 1);
		p->deadline_date[i] = deadline_of(p, month);
	}
	/* r(y): the rate of the latest table year at or before y, else the default. */
	uint32_t k = 0;
	for (uint32_t i = 0; i < CORE_YEAR_COUNT; i++) {
		int32_t year = CORE_YEAR_FIRST + (int32_t)i;
		while (k < p->interest_rate_count && p->interest_rates[k].year <= year) {
			k++;
		}
		p->interest_ppm_of_year[i] = k == 0 ? p->interest_default_ppm : p->interest_rates[k - 1].rate_ppm;
	}
}

const struct core_policy *core_policy_find(const struct core_policy_set *set, uint32_t city)
{
	uint32_t lo = 0;
	uint32_t hi = set->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint32_t c = set->items[mid]->city;
		if (c == city) {
			return set->items[mid];
		}
		if (c < city) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return NULL;
}

int core_person_resolve(const struct core_policy_set *set, const struct core_timeline *tl, uint32_t *slot_index)
{
	const struct core_policy *p = NULL;
	struct core_timeline_iter it;
	const struct core_run *r;
	uint32_t index = 0;
	core_timeline_iter_init(&it, tl);
	while ((r = core_timeline_next_run(&it)) != NULL) {
		if (p == NULL || p->city != r->first.city) {
			p = core_policy_find(set, r->first.city);
		}
		/* Periods run on from their month: a run's first month decides for all of it. */
		if (p == NULL || p->period_of[r->first.month - CORE_MONTH_FIRST] < 0) {
			*slot_index = index;
			return p == NULL ? CORE_ERR_NO_POLICY : CORE_ERR_NO_PERIOD;
		}
		index += r->count;
	}
	return it.corrupt ? CORE_ERR_CORRUPT : CORE_OK;
}

struct core_due core_slot_due(const struct core_policy *policy, const struct core_slot *slot)
{
	if (slot->deemed) {
		return (struct core_due){ 0, 0 };
	}
	int16_t period = policy->period_of[slot->month - CORE_MONTH_FIRST];
	ASSERT(period >= 0);
	return period_due(&policy->periods[period], slot->type, slot->category, slot->base_fen);
}
