/* Summaries of a timeline's settled part (issue 10): what a query as of a
 * late enough date needs, so that it reads a few exceptions instead of
 * every run.
 *
 * Under fixed policies a slot is settled or an exception. Settled: deemed,
 * paid in full (paid ≥ due > 0), or due 0. As of any D on or after the
 * horizon (every settled slot's month has begun and its payment day has
 * passed) a settled slot owes nothing and is counted or not for good, so:
 * - arrears, and the arrears parts of retirement and medical status, come
 *   from the exceptions alone (a settled slot is never owed);
 * - years are those of the horizon (an exception is never counted: its
 *   paid stays below its due until a write rebuilds the summary);
 * - retirement's counted pension months are the settled ones;
 * - medical: a settled medical slot makes the person enrolled, and no
 *   settled slot is back-paid on D itself (D is after every payment day);
 * - housing: the months that qualify in each city are those of the horizon.
 * Before the horizon, or under other policies, the full computation runs. */
#include "core.h"
#include "internal.h"

/* Layout, little-endian, read in place: */
#define SUMMARY_VERSION 1u
enum {
	AT_VERSION = 0,	     /* u8 */
	AT_MEDICAL = 1,	     /* u8: a settled medical slot */
	AT_CITIES = 2,	     /* u16 */
	AT_HORIZON = 4,	     /* i32 days */
	AT_YEARS = 8,	     /* u32 × CORE_TYPE_COUNT × 4 */
	AT_DUPLICATES = 88,  /* u32 */
	AT_RANGES = 92,	     /* u32: counted pension months as ranges */
	AT_EXCEPTIONS = 96,  /* u32 slots */
	AT_EXCEPTION_BYTES = 100, /* u32 */
	AT_HOUSING = 104,    /* u32: months that qualify for housing, as ranges by city */
	HEADER_BYTES = 108,
};
/* then cities (u32 city, u32 revision), duplicates (i32 month, u32 city, u32
 * type), pension ranges (i32 from, i32 to), housing ranges (u32 city, i32
 * from, i32 to), and the exceptions' run encoding. */
#define CITY_BYTES 8u
#define DUPLICATE_BYTES 12u
#define RANGE_BYTES 8u
#define HOUSING_BYTES 12u
#define RANGES_MAX ((CORE_MONTH_COUNT + 1) / 2) /* of one month set */

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

size_t core_summary_size_max(uint32_t slot_count)
{
	/* a city's qualifying months need a slot each */
	return HEADER_BYTES + (size_t)slot_count * (CITY_BYTES + DUPLICATE_BYTES + HOUSING_BYTES) +
	       RANGES_MAX * RANGE_BYTES + core_timeline_encode_max(slot_count);
}

/* Writes the months of b as ranges (from, to), each after city when city
 * is not NULL; counts them in *count. Returns the end. */
static uint8_t *ranges_put(uint8_t *p, const struct month_bits *b, const uint32_t *city, uint32_t *count)
{
	for (int32_t m = CORE_MONTH_FIRST; m < CORE_MONTH_FIRST + (int32_t)CORE_MONTH_COUNT; m++) {
		if (!month_bits_test(b, m)) {
			continue;
		}
		int32_t to = m;
		while (month_bits_test(b, to + 1)) {
			to++;
		}
		if (city != NULL) {
			put_u32(p, *city);
			p += 4;
		}
		put_u32(p, (uint32_t)m);
		put_u32(p + 4, (uint32_t)to);
		p += RANGE_BYTES;
		(*count)++;
		m = to;
	}
	return p;
}

/* Adds the range at p (from, to) to b; false when it is not a valid range. */
static bool range_get(const uint8_t *p, struct month_bits *b)
{
	int32_t from = (int32_t)get_u32(p);
	int32_t to = (int32_t)get_u32(p + 4);
	if ((uint32_t)(from - CORE_MONTH_FIRST) >= CORE_MONTH_COUNT || (uint32_t)(to - CORE_MONTH_FIRST) >= CORE_MONTH_COUNT ||
	    to < from) {
		return false;
	}
	month_bits_set_range(b, from, to);
	return true;
}

/* The index of city's policy in set (core_person_resolve found it). */
static uint32_t policy_index(const struct core_policy_set *set, uint32_t city)
{
	const struct core_policy *p = core_policy_find(set, city);
	ASSERT(p != NULL);
	uint32_t i = 0;
	while (set->items[i] != p) {
		i++;
	}
	return i;
}

/* Adds city once to the ascending list. */
static void city_add(uint32_t *cities, uint32_t *count, uint32_t city)
{
	uint32_t i = *count;
	while (i > 0 && cities[i - 1] > city) {
		i--;
	}
	if (i > 0 && cities[i - 1] == city) {
		return;
	}
	memmove(&cities[i + 1], &cities[i], sizeof(*cities) * (*count - i));
	cities[i] = city;
	(*count)++;
}

size_t core_summary_build(const struct core_policy_set *set, const uint32_t *revisions, const struct core_timeline *tl,
			  const struct core_summary_scratch *scratch, uint8_t *out, size_t capacity)
{
	uint32_t bad;
	if (tl->slot_count > scratch->capacity || capacity < core_summary_size_max(tl->slot_count) ||
	    core_person_resolve(set, tl, &bad) != CORE_OK) {
		return 0;
	}
	struct slot_cursor cursor;
	slot_cursor_init(&cursor, set);
	struct month_bits pension = { { 0 } };
	uint32_t exception_count = 0;
	uint32_t city_count = 0;
	int32_t horizon = core_date_to_days(19000101);
	bool medical = false;
	struct core_timeline_iter it;
	const struct core_run *r;
	core_timeline_iter_init(&it, tl);
	while ((r = core_timeline_next_run(&it)) != NULL) {
		city_add(scratch->cities, &city_count, r->first.city);
		const struct core_policy *p = slot_cursor_policy(&cursor, r->first.city);
		/* Month by month only the due (cached by the cursor while the period holds). */
		struct core_slot s = r->first;
		int64_t last_settled = -1;
		for (uint32_t k = 0; k < r->count; k++) {
			s.month = r->first.month + (int32_t)k;
			struct core_due due = slot_cursor_due(&cursor, p, &s);
			int64_t due_fen = due.employer_fen + due.individual_fen;
			if (!s.deemed && s.paid_fen < due_fen) {
				core_run_slot(r, k, &scratch->slots[exception_count++]);
				continue;
			}
			last_settled = k;
			if (s.type == CORE_PENSION && (s.deemed || due_fen > 0)) {
				month_bits_set(&pension, s.month);
			}
		}
		if (last_settled < 0) {
			continue;
		}
		/* Payment dates rise with the months of a run: its last settled month sets its horizon. */
		core_run_slot(r, (uint32_t)last_settled, &s);
		int32_t begins = core_date_to_days(core_month_yyyymm(s.month) * 100 + 1);
		int32_t paid = s.paid_date > 0 ? core_date_to_days(s.paid_date) + 1 : begins;
		horizon = begins > horizon ? begins : horizon;
		horizon = paid > horizon ? paid : horizon;
		medical = medical || s.type == CORE_MEDICAL;
	}
	int32_t horizon_date = core_days_to_date(horizon);
	if (it.corrupt || city_count > UINT16_MAX || horizon_date > 21001231) {
		return 0; /* no date could use it */
	}
	struct core_years years;
	uint32_t duplicate_count;
	if (core_years_compute(set, tl, core_as_of_make(horizon_date), &years, scratch->duplicates, &duplicate_count) !=
	    CORE_OK) {
		return 0;
	}
	uint8_t *p = out + HEADER_BYTES;
	for (uint32_t i = 0; i < city_count; i++, p += CITY_BYTES) {
		put_u32(p, scratch->cities[i]);
		put_u32(p + 4, revisions[policy_index(set, scratch->cities[i])]);
	}
	for (uint32_t i = 0; i < duplicate_count; i++, p += DUPLICATE_BYTES) {
		put_u32(p, (uint32_t)scratch->duplicates[i].month);
		put_u32(p + 4, scratch->duplicates[i].city);
		put_u32(p + 8, scratch->duplicates[i].type);
	}
	uint32_t range_count = 0;
	p = ranges_put(p, &pension, NULL, &range_count);
	uint32_t housing_count = 0;
	for (uint32_t i = 0; i < city_count; i++) {
		struct month_bits q;
		const struct core_policy *policy = core_policy_find(set, scratch->cities[i]);
		if (!housing_qualifying(set, policy, tl, core_as_of_make(horizon_date), &q)) {
			return 0;
		}
		p = ranges_put(p, &q, &scratch->cities[i], &housing_count);
	}
	size_t exception_bytes = core_timeline_encode(scratch->slots, exception_count, p, capacity - (size_t)(p - out));
	ASSERT(exception_bytes > 0);
	p += exception_bytes;
	out[AT_VERSION] = SUMMARY_VERSION;
	out[AT_MEDICAL] = medical;
	uint16_t cities16 = (uint16_t)city_count;
	memcpy(out + AT_CITIES, &cities16, sizeof(cities16));
	put_u32(out + AT_HORIZON, (uint32_t)horizon);
	for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
		const struct core_years_type *y = &years.by_type[t];
		const uint32_t v[4] = { y->months, y->on_time, y->backpaid, y->deemed };
		for (uint32_t k = 0; k < 4; k++) {
			put_u32(out + AT_YEARS + (t * 4 + k) * 4, v[k]);
		}
	}
	put_u32(out + AT_DUPLICATES, duplicate_count);
	put_u32(out + AT_RANGES, range_count);
	put_u32(out + AT_EXCEPTIONS, exception_count);
	put_u32(out + AT_EXCEPTION_BYTES, (uint32_t)exception_bytes);
	put_u32(out + AT_HOUSING, housing_count);
	return (size_t)(p - out);
}

bool core_summary_read(const uint8_t *bytes, size_t size, struct core_summary *out)
{
	if (size < HEADER_BYTES || bytes[AT_VERSION] != SUMMARY_VERSION || bytes[AT_MEDICAL] > 1) {
		return false;
	}
	uint16_t cities;
	memcpy(&cities, bytes + AT_CITIES, sizeof(cities));
	out->city_count = cities;
	out->medical = bytes[AT_MEDICAL];
	out->horizon_days = (int32_t)get_u32(bytes + AT_HORIZON);
	out->duplicate_count = get_u32(bytes + AT_DUPLICATES);
	out->range_count = get_u32(bytes + AT_RANGES);
	out->housing_count = get_u32(bytes + AT_HOUSING);
	uint32_t exception_bytes = get_u32(bytes + AT_EXCEPTION_BYTES);
	uint64_t need = HEADER_BYTES + (uint64_t)out->city_count * CITY_BYTES +
			(uint64_t)out->duplicate_count * DUPLICATE_BYTES + (uint64_t)out->range_count * RANGE_BYTES +
			(uint64_t)out->housing_count * HOUSING_BYTES + exception_bytes;
	if (need != size || out->range_count > RANGES_MAX) {
		return false;
	}
	for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
		struct core_years_type *y = &out->years.by_type[t];
		const uint8_t *v = bytes + AT_YEARS + t * 16;
		*y = (struct core_years_type){ get_u32(v), get_u32(v + 4), get_u32(v + 8), get_u32(v + 12) };
	}
	out->cities = bytes + HEADER_BYTES;
	out->duplicates = out->cities + (size_t)out->city_count * CITY_BYTES;
	out->ranges = out->duplicates + (size_t)out->duplicate_count * DUPLICATE_BYTES;
	out->housing = out->ranges + (size_t)out->range_count * RANGE_BYTES;
	out->exceptions = (struct core_timeline){ .slot_count = get_u32(bytes + AT_EXCEPTIONS),
						  .runs = out->housing + (size_t)out->housing_count * HOUSING_BYTES,
						  .runs_size = exception_bytes };
	return true;
}

void core_summary_city(const struct core_summary *summary, uint32_t index, uint32_t *city, uint32_t *revision)
{
	ASSERT(index < summary->city_count);
	*city = get_u32(summary->cities + index * CITY_BYTES);
	*revision = get_u32(summary->cities + index * CITY_BYTES + 4);
}

bool core_summary_applies(const struct core_summary *summary, struct core_as_of as_of)
{
	return as_of.days >= summary->horizon_days;
}

int core_summary_years(const struct core_summary *summary, struct core_years *out, struct core_duplicate *duplicates,
		       uint32_t *duplicate_count)
{
	*out = summary->years;
	for (uint32_t i = 0; i < summary->duplicate_count; i++) {
		const uint8_t *d = summary->duplicates + i * DUPLICATE_BYTES;
		uint32_t type = get_u32(d + 8);
		int32_t month = (int32_t)get_u32(d);
		if (type >= CORE_TYPE_COUNT || (uint32_t)(month - CORE_MONTH_FIRST) >= CORE_MONTH_COUNT) {
			return CORE_ERR_CORRUPT;
		}
		duplicates[i] = (struct core_duplicate){ month, get_u32(d + 4), (uint8_t)type };
	}
	*duplicate_count = summary->duplicate_count;
	return CORE_OK;
}

int core_summary_retirement(const struct core_policy_set *set, int32_t birth_month, uint8_t class_,
			    const struct core_summary *summary, struct core_as_of as_of, int32_t elect_month,
			    struct core_retirement *out)
{
	struct month_bits counted = { { 0 } };
	for (uint32_t i = 0; i < summary->range_count; i++) {
		if (!range_get(summary->ranges + i * RANGE_BYTES, &counted)) {
			return CORE_ERR_CORRUPT;
		}
	}
	return retirement_compute(set, birth_month, class_, &summary->exceptions, as_of, elect_month, &counted, out);
}

int core_summary_medical(const struct core_policy_set *set, const struct core_summary *summary,
			 struct core_as_of as_of, struct core_medical *out)
{
	int rc = core_medical_status(set, &summary->exceptions, as_of, out);
	if (rc == CORE_OK && out->status == CORE_MEDICAL_NONE && summary->medical) {
		out->status = CORE_MEDICAL_ACTIVE;
	}
	return rc;
}

int core_summary_housing(const struct core_policy *policy, const struct core_summary *summary,
			 struct core_as_of as_of, struct core_housing *out)
{
	struct month_bits q = { { 0 } };
	for (uint32_t i = 0; i < summary->housing_count; i++) {
		const uint8_t *h = summary->housing + i * HOUSING_BYTES;
		if (get_u32(h) == policy->city && !range_get(h + 4, &q)) {
			return CORE_ERR_CORRUPT;
		}
	}
	housing_of_months(policy, &q, as_of, out);
	return CORE_OK;
}
