/* core: the computation rules R1–R11 of SPEC.md on plain structs.
 *
 * Pure C: libc only, no I/O, no globals, no allocation. Callers own every
 * buffer; sizes are stated per function. Money is int64 fen, rates are ppm,
 * months are dense indices (year*12 + month-1), dates are YYYYMMDD integers
 * (which compare correctly as integers); day counts use core_date_to_days. */
#ifndef ARREARS_CORE_H
#define ARREARS_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Always on, one condition each: a broken invariant stops the process
 * rather than corrupting an answer. */
#define ASSERT(cond)                           \
	do {                                   \
		if (!(cond)) {                 \
			__builtin_trap();      \
		}                              \
	} while (0)

enum core_type {
	CORE_PENSION,
	CORE_MEDICAL,
	CORE_UNEMPLOYMENT,
	CORE_INJURY,
	CORE_MATERNITY,
	CORE_TYPE_COUNT
};
enum core_category { CORE_EMPLOYEE, CORE_FLEXIBLE, CORE_CATEGORY_COUNT };
enum core_share { CORE_SHARE_EMPLOYER, CORE_SHARE_INDIVIDUAL, CORE_SHARE_FLEXIBLE, CORE_SHARE_COUNT };
enum core_class { CORE_CLASS_M60, CORE_CLASS_F55, CORE_CLASS_F50, CORE_CLASS_COUNT };
enum core_tier { CORE_TIER_DIRECT, CORE_TIER_VERIFY, CORE_TIER_APPROVAL, CORE_TIER_LEGACY, CORE_TIER_COUNT };
enum core_withhold_mode { CORE_WITHHOLD_STOP, CORE_WITHHOLD_SKIP };
enum core_medical_status { CORE_MEDICAL_ACTIVE, CORE_MEDICAL_SUSPENDED, CORE_MEDICAL_NONE };

/* Results of core functions that can fail on input. */
enum core_rc {
	CORE_OK = 0,
	CORE_ERR_OVERFLOW,    /* an amount passed CORE_AMOUNT_MAX: person's error at "overflow" */
	CORE_ERR_NO_POLICY,   /* R1: no policy for a slot's city: not_found */
	CORE_ERR_NO_PERIOD,   /* R1: month before the first period: invalid_argument */
	CORE_ERR_ELECT_MONTH, /* R9: elect_month outside this person's range */
	CORE_ERR_CORRUPT,     /* a stored timeline does not decode: internal error */
	CORE_ERR_NO_SLOT,     /* R13: no slot of that month, city and type */
	CORE_ERR_DEEMED,      /* R13: a payment into a deemed slot */
};

#include "limits.h"

#define CORE_MONEY_MAX 10000000000LL   /* money fields on input: 0..10^10 fen */
#define CORE_RATE_MAX 1000000u         /* rate fields: 0..10^6 ppm */
#define CORE_DAILY_RATE_MAX 10000u     /* late-fee daily rate: 0..10^4 ppm */
#define CORE_AMOUNT_MAX (1LL << 53)    /* every computed amount stays at or below */
#define CORE_MONTH_FIRST (1950 * 12)   /* 195001 as a dense month */
#define CORE_MONTH_COUNT 1800u         /* 195001..209912 */
#define CORE_YEAR_FIRST 1950
#define CORE_YEAR_COUNT 151u           /* 1950..2100: every year a slot or as_of can be in */
#define CORE_WINDOW_MAX 600u           /* housing window_months upper bound */
#define CORE_PERIODS_MAX CORE_MONTH_COUNT /* strictly ascending months allow no more */
#define CORE_NAME_MAX 255u             /* policy name bytes */
#define CORE_SOURCE_MAX 1024u          /* policy source bytes: the notice it transcribes (SPEC 3.4) */
#define CORE_ID_SIZE 18u               /* resident ID characters */

/* One insurance type, one month, one city (SPEC 3.2). 32 bytes. */
struct core_slot {
	int64_t base_fen;
	int64_t paid_fen;   /* total paid so far, as recorded */
	int32_t month;      /* dense */
	int32_t paid_date;  /* YYYYMMDD of the latest payment, 0 when never paid */
	uint32_t city;      /* 6-digit division code as a number */
	uint8_t type;       /* enum core_type */
	uint8_t category;   /* enum core_category */
	bool deemed;
};

struct core_run;

/* A person's slots as the core reads them: a plain array (inline persons),
 * the store's run encoding read in place (core/timeline.c), or runs already
 * decoded by core_timeline_decode (several passes over one person). */
struct core_timeline {
	const struct core_slot *slots;   /* plain form */
	uint32_t slot_count;             /* every form */
	const uint8_t *runs;             /* encoded form, or NULL */
	size_t runs_size;
	const struct core_run *run_list; /* decoded form, or NULL */
	uint32_t run_count;
};

/* Months of one city, type, category, deemed flag, base and paid, each paid
 * on the same day the same number of months after it (SPEC's "runs": a
 * payroll paid on time every month is one run however long). */
struct core_run {
	struct core_slot first; /* the first month as a slot */
	uint32_t count;         /* months */
	int32_t pay_offset;     /* when paid > 0 and count > 1: payment month − slot month */
	uint8_t pay_day;        /* when paid > 0 and count > 1: payment day, clipped to the month */
};

/* Reads a timeline run by run, or slot by slot (do not mix), in its order. */
struct core_timeline_iter {
	const struct core_timeline *tl;
	uint32_t index; /* slots returned so far */
	const uint8_t *p;
	const uint8_t *end;
	uint32_t runs_left;
	uint32_t run_left;   /* months of the current run not yet returned as slots */
	int32_t run_end;     /* dense month after the current run */
	bool corrupt;        /* the encoding broke a rule: stop, report CORE_ERR_CORRUPT */
	struct core_slot slot; /* the slot last returned from the encoded form */
	struct core_run cur;   /* the run last returned */
};

void core_timeline_iter_init(struct core_timeline_iter *it, const struct core_timeline *tl);
const struct core_slot *core_timeline_next_encoded(struct core_timeline_iter *it);
/* The next slot of a plain or encoded timeline, or NULL at the end (check
 * it->corrupt then). The slot borrows the timeline or the iterator until
 * the next call. */
static inline const struct core_slot *core_timeline_next(struct core_timeline_iter *it)
{
	if (it->tl->runs == NULL && it->tl->run_list == NULL) {
		return it->index < it->tl->slot_count ? &it->tl->slots[it->index++] : NULL;
	}
	return core_timeline_next_encoded(it);
}

/* Decodes an encoded timeline's runs into out (room for capacity runs; a
 * timeline has at most slot_count runs). Returns the run count, or -1 when
 * the encoding is corrupt or capacity too small. */
int64_t core_timeline_decode(const struct core_timeline *tl, struct core_run *out, uint32_t capacity);

/* The next run, or NULL at the end (check it->corrupt then). A plain
 * timeline reads as runs of one month. */
const struct core_run *core_timeline_next_run(struct core_timeline_iter *it);
/* The payment date of month k of a run (0 when unpaid). */
int32_t core_run_paid_date(const struct core_run *r, uint32_t k);
/* Month k of a run as a slot. */
static inline void core_run_slot(const struct core_run *r, uint32_t k, struct core_slot *out)
{
	*out = r->first;
	out->month += (int32_t)k;
	if (k > 0) {
		out->paid_date = core_run_paid_date(r, k);
	}
}

/* Bytes that always suffice to encode slot_count slots. */
size_t core_timeline_encode_max(uint32_t slot_count);
/* Encodes slots (any order; sorted by type, city, month they compress best)
 * into out; returns the size, 0 when capacity was too small. */
size_t core_timeline_encode(const struct core_slot *slots, uint32_t slot_count, uint8_t *out, size_t capacity);
/* Sorts slots into store order: type, city, month. */
void core_slots_sort(struct core_slot *slots, uint32_t slot_count);

struct core_period {
	int32_t from; /* dense month */
	int64_t base_min_fen;
	int64_t base_max_fen;
	uint32_t rate_ppm[CORE_TYPE_COUNT][CORE_SHARE_COUNT];
};

struct core_year_rate {
	int32_t year;
	uint32_t rate_ppm;
};

/* One city's policy (SPEC 3.3). The caller fills the document fields, then
 * core_policy_prepare fills the derived tables. periods and interest_rates
 * are borrowed: they must outlive the policy. */
struct core_policy {
	uint32_t city;
	uint32_t name_size;
	char name[CORE_NAME_MAX + 1];
	uint32_t source_size;
	char source[CORE_SOURCE_MAX + 1];
	uint8_t deadline_day;          /* 1..31 */
	uint8_t deadline_month_offset; /* 0..2 */
	uint32_t period_count;         /* 1..CORE_PERIODS_MAX, strictly ascending */
	const struct core_period *periods;
	uint8_t interest_types;        /* bit per enum core_type */
	uint8_t interest_categories;   /* bit per enum core_category */
	uint32_t interest_default_ppm;
	uint32_t interest_rate_count;  /* strictly ascending years */
	const struct core_year_rate *interest_rates;
	uint32_t late_fee_daily_ppm;
	uint8_t late_fee_categories;
	bool late_fee_cap_at_principal;
	uint32_t backpay_direct_max_months;
	uint32_t backpay_verify_max_months;
	int32_t backpay_legacy_before; /* dense month */
	uint32_t backpay_flexible_window_months;
	uint8_t housing_types;
	uint32_t housing_window_months;   /* 1..CORE_WINDOW_MAX */
	uint32_t housing_required_months; /* <= window */
	uint32_t housing_end_offset_months; /* 0..12 */
	bool housing_backpay_counts;
	uint32_t housing_grace_days;
	uint8_t withhold_order_count;
	uint8_t withhold_order[CORE_TYPE_COUNT]; /* distinct types, in policy order */
	uint8_t withhold_mode;                   /* enum core_withhold_mode */

	/* Derived by core_policy_prepare: one lookup per slot instead of searches. */
	int16_t period_of[CORE_MONTH_COUNT];        /* index into periods, -1 none */
	int32_t deadline_date[CORE_MONTH_COUNT];    /* R3, YYYYMMDD */
	uint32_t interest_ppm_of_year[CORE_YEAR_COUNT]; /* R6 r(y) */
};

/* The policies a computation may use, sorted by city ascending. */
struct core_policy_set {
	const struct core_policy *const *items;
	uint32_t count;
};

/* Settlement date D with the forms the rules need. */
struct core_as_of {
	int32_t date;  /* YYYYMMDD */
	int32_t days;  /* core_date_to_days(date) */
	int32_t month; /* dense month(D) */
};

/* ---- calendar ---- */

/* True when v is a YYYYMM month in 195001..209912; *month gets the dense
 * index. Inline: the request path parses one a slot. */
static inline bool core_month_parse(int64_t v, int32_t *month)
{
	if (v < 195001 || v > 209912) {
		return false;
	}
	int32_t mm = (int32_t)(v % 100);
	if (mm < 1 || mm > 12) {
		return false;
	}
	*month = (int32_t)(v / 100) * 12 + mm - 1;
	return true;
}
/* Dense month back to YYYYMM. */
int32_t core_month_yyyymm(int32_t month);
/* True when v is a valid Gregorian YYYYMMDD date in 19000101..21001231. */
bool core_date_valid(int64_t v);
/* Days since 1970-01-01 of a valid YYYYMMDD date. */
int32_t core_date_to_days(int32_t date);
/* YYYYMMDD of a day count from core_date_to_days. */
int32_t core_days_to_date(int32_t days);
/* Last day (28..31) of a dense month. */
uint32_t core_month_last_day(int32_t month);
/* A valid date as the three forms the rules use. */
struct core_as_of core_as_of_make(int32_t date);

/* ---- person ---- */

/* True when id (size bytes) is a valid 18-character resident ID: 17 digits,
 * GB 11643 check character (upper-case X only), birth date valid. */
bool core_id_valid(const char *id, size_t size);
/* Why an id is not valid, in the order the checks run (messages name it). */
enum core_id_fault {
	CORE_ID_OK,
	CORE_ID_LENGTH,      /* not 18 bytes */
	CORE_ID_NOT_DIGIT,   /* one of the first 17 is not a digit: *position 1..17 */
	CORE_ID_CHECK_CHAR,  /* the 18th is neither a digit nor X (lower-case x included): *position 18 */
	CORE_ID_CHECK_DIGIT, /* the 18th is not the GB 11643 check character of the first 17 */
	CORE_ID_BIRTH_DATE,  /* characters 7..14 are not a valid date 19000101..21001231 */
};
/* The first fault of id (enum core_id_fault); *position as noted there, else 0. */
int core_id_check(const char *id, size_t size, uint32_t *position);
/* Birth month (dense) and default class of a valid id. */
int32_t core_id_birth_month(const char *id);
uint8_t core_id_default_class(const char *id);

/* The rules of SPEC 2.1 that join a slot's fields (each field already in
 * range): paid > 0 exactly when there is a paid_date; deemed slots carry no
 * money. */
enum core_rule { CORE_RULE_OK, CORE_RULE_PAID_DATE, CORE_RULE_DEEMED };
/* Inline, as core_slot_keys_insert: the request path checks every slot. */
static inline int core_slot_rules(const struct core_slot *s)
{
	if ((s->paid_fen > 0) != (s->paid_date != 0)) {
		return CORE_RULE_PAID_DATE;
	}
	if (s->deemed && (s->base_fen != 0 || s->paid_fen != 0 || s->paid_date != 0)) {
		return CORE_RULE_DEEMED;
	}
	return CORE_RULE_OK;
}

/* Set of (month, city, type) keys to find duplicate slots in one pass.
 * table: caller memory of capacity entries, capacity a power of two at least
 * twice the slot count. */
struct core_slot_keys {
	uint64_t *table;
	uint32_t capacity;
};
void core_slot_keys_init(struct core_slot_keys *keys, uint64_t *table, uint32_t capacity);
/* Inserts slot's key; false when it was already there (a duplicate). */
static inline bool core_slot_keys_insert(struct core_slot_keys *keys, const struct core_slot *slot)
{
	/* city < 2^20 and type < 2^3 fit below bit 24; +1 keeps 0 free as "empty". */
	uint64_t key = ((uint64_t)(uint32_t)slot->month << 24 | (uint64_t)slot->city << 3 | slot->type) + 1;
	uint32_t mask = keys->capacity - 1;
	uint32_t i = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & mask;
	for (uint32_t probes = 0; probes < keys->capacity; probes++) {
		if (keys->table[i] == 0) {
			keys->table[i] = key;
			return true;
		}
		if (keys->table[i] == key) {
			return false;
		}
		i = (i + 1) & mask;
	}
	ASSERT(false); /* capacity is at least twice the slot count */
	return false;
}

/* ---- policy ---- */

/* Sets every field SPEC 3.3 gives a default (all but city, name, deadline
 * and periods). */
void core_policy_defaults(struct core_policy *policy);
/* Fills the derived tables of a policy whose document fields are valid. */
void core_policy_prepare(struct core_policy *policy);
/* The policy of a city, or NULL. */
const struct core_policy *core_policy_find(const struct core_policy_set *set, uint32_t city);

/* R1 for every slot in order. Returns CORE_OK, CORE_ERR_CORRUPT, or
 * CORE_ERR_NO_POLICY / CORE_ERR_NO_PERIOD with *slot_index the first
 * offending slot. Every compute function below needs it to have passed. */
int core_person_resolve(const struct core_policy_set *set, const struct core_timeline *tl, uint32_t *slot_index);

/* R2 due of a slot under its policy (R1 resolved). */
struct core_due {
	int64_t employer_fen;
	int64_t individual_fen;
};
struct core_due core_slot_due(const struct core_policy *policy, const struct core_slot *slot);

/* ---- arrears (R4–R7) ---- */

struct core_arrears_sums {
	uint32_t months;
	int64_t principal_fen;
	int64_t interest_fen;
	int64_t late_fee_fen;
};

struct core_arrears {
	uint32_t months_owed;
	int64_t principal_fen;
	int64_t interest_fen;
	int64_t late_fee_fen;
	int64_t total_fen;
	int64_t pending_fen;
	uint32_t expired_months;
	int64_t expired_principal_fen;
	int32_t first_month; /* dense, -1 when none */
	int32_t last_month;
	struct core_arrears_sums by_type[CORE_TYPE_COUNT]; /* months 0: no payable arrears */
	uint32_t tiers[CORE_TIER_COUNT];
};

struct core_arrears_item {
	int64_t due_fen;
	int64_t paid_fen; /* as of D */
	int64_t owed_fen;
	int64_t owed_employer_fen;
	int64_t owed_individual_fen;
	int64_t interest_fen;
	int64_t late_fee_fen;
	int32_t month;
	int32_t deadline_date;
	uint32_t city;
	uint8_t type;
	uint8_t category;
	uint8_t tier;
	bool expired;
};

/* Arrears of one person's resolved slots as of D. items: NULL, or room for
 * tl->slot_count entries, filled with every arrears slot sorted by month,
 * city, type; *item_count gets their number. Returns CORE_OK,
 * CORE_ERR_OVERFLOW or CORE_ERR_CORRUPT (out then holds nothing useful). */
int core_arrears_compute(const struct core_policy_set *set, const struct core_timeline *tl, struct core_as_of as_of,
			 struct core_arrears *out, struct core_arrears_item *items, uint32_t *item_count);

/* ---- years (R8) ---- */

struct core_years_type {
	uint32_t months;
	uint32_t on_time;
	uint32_t backpaid;
	uint32_t deemed;
};
struct core_years {
	struct core_years_type by_type[CORE_TYPE_COUNT];
};
/* One city of one duplicate (month, type); consecutive entries with the same
 * month and type form one duplicate. */
struct core_duplicate {
	int32_t month;
	uint32_t city;
	uint8_t type;
};

/* Counted months as of D. duplicates: room for tl->slot_count entries,
 * sorted by month, type, city; *duplicate_count gets their number. Returns
 * CORE_OK or CORE_ERR_CORRUPT (as do the checks below). */
int core_years_compute(const struct core_policy_set *set, const struct core_timeline *tl, struct core_as_of as_of,
		       struct core_years *out, struct core_duplicate *duplicates, uint32_t *duplicate_count);

/* ---- retirement (R9) ---- */

struct core_retirement {
	uint8_t class_;
	int32_t birth_month;
	int32_t original_month;
	int32_t statutory_month;
	int32_t retire_month;
	uint32_t required_months;
	uint32_t counted_months;
	uint32_t shortfall;
	uint32_t payable_arrears_months;
	bool eligible_now;
	int32_t eligible_from;
};

/* elect_month: dense, or -1 when not given. Also CORE_ERR_ELECT_MONTH. */
int core_retirement_check(const struct core_policy_set *set, int32_t birth_month, uint8_t class_,
			  const struct core_timeline *tl, struct core_as_of as_of, int32_t elect_month,
			  struct core_retirement *out);

/* ---- housing (R10) ---- */

struct core_housing {
	int32_t window_from;
	int32_t window_to;
	uint32_t qualifying;
	uint32_t required;
	bool eligible;
	uint32_t missing_count;
	int32_t missing[CORE_WINDOW_MAX]; /* ascending dense months */
	int32_t eligible_from;
};

/* policy: the requested city's policy, which must be in set. */
int core_housing_check(const struct core_policy_set *set, const struct core_policy *policy,
		       const struct core_timeline *tl, struct core_as_of as_of, struct core_housing *out);

/* ---- medical (R11) ---- */

struct core_medical {
	uint8_t status;          /* enum core_medical_status */
	int32_t suspended_since; /* dense month, -1 nil */
	int32_t resumes_date;    /* YYYYMMDD, 0 nil */
	uint32_t arrears_months;
};

int core_medical_status(const struct core_policy_set *set, const struct core_timeline *tl, struct core_as_of as_of,
			struct core_medical *out);

/* ---- summaries of the settled part (core/summary.c) ---- */

/* A stored summary read in place: valid as of any D with D.days ≥
 * horizon_days under the policies it names (city, revision pairs). */
struct core_summary {
	int32_t horizon_days;
	uint32_t city_count;
	bool medical;                 /* a settled medical slot */
	struct core_years years;      /* as of the horizon, and of any later D */
	uint32_t duplicate_count;
	uint32_t range_count;         /* counted pension months, as ranges */
	uint32_t housing_count;       /* months that qualify for housing, as ranges by city */
	const uint8_t *cities;
	const uint8_t *duplicates;
	const uint8_t *ranges;
	const uint8_t *housing;
	struct core_timeline exceptions; /* slots paid below their due: the only ones a later D can owe */
};

/* Caller memory for building: each array of at least capacity ≥ slot_count entries. */
struct core_summary_scratch {
	struct core_slot *slots;
	struct core_duplicate *duplicates;
	uint32_t *cities;
	uint32_t capacity;
};

/* Bytes that always suffice for the summary of slot_count slots. */
size_t core_summary_size_max(uint32_t slot_count);
/* Summarizes a timeline under set, whose items[i] is revision revisions[i]
 * of its city. Returns the size written to out, or 0 when there is no
 * summary to keep (R1 fails, the horizon is past 21001231, capacity is
 * short): queries then take the full path. */
size_t core_summary_build(const struct core_policy_set *set, const uint32_t *revisions, const struct core_timeline *tl,
			  const struct core_summary_scratch *scratch, uint8_t *out, size_t capacity);
/* Reads a summary in place (out borrows bytes); false when it is malformed. */
bool core_summary_read(const uint8_t *bytes, size_t size, struct core_summary *out);
/* The index-th city the summary was built under, and the revision of its policy. */
void core_summary_city(const struct core_summary *summary, uint32_t index, uint32_t *city, uint32_t *revision);
/* True when as_of is on or after the horizon. The caller also checks that
 * set holds exactly the revisions the summary names; then each function
 * below answers exactly what its full counterpart does on the timeline:
 * core_arrears_compute on summary->exceptions, and these. */
bool core_summary_applies(const struct core_summary *summary, struct core_as_of as_of);
int core_summary_years(const struct core_summary *summary, struct core_years *out, struct core_duplicate *duplicates,
		       uint32_t *duplicate_count);
int core_summary_retirement(const struct core_policy_set *set, int32_t birth_month, uint8_t class_,
			    const struct core_summary *summary, struct core_as_of as_of, int32_t elect_month,
			    struct core_retirement *out);
int core_summary_medical(const struct core_policy_set *set, const struct core_summary *summary,
			 struct core_as_of as_of, struct core_medical *out);
/* policy: the requested city's, in the set the summary is current under. */
int core_summary_housing(const struct core_policy *policy, const struct core_summary *summary,
			 struct core_as_of as_of, struct core_housing *out);

/* ---- payments (R13) and withholding (R12) ---- */

/* Adds amount (1..10^10) to the slot (month, city, type), paid on date.
 * Returns CORE_OK, CORE_ERR_NO_SLOT, CORE_ERR_DEEMED or CORE_ERR_OVERFLOW
 * (paid would pass CORE_MONEY_MAX, R13); slots change only on CORE_OK. */
int core_payment_apply(struct core_slot *slots, uint32_t slot_count, int32_t month, uint32_t city, uint8_t type,
		       int64_t amount_fen, int32_t date);

/* One slot of a withholding run, in the order it was taken. */
struct core_withhold_line {
	int64_t amount_fen; /* paid, or owed when interrupted */
	uint32_t slot_index;
	uint32_t city;
	uint8_t type;
	uint8_t rank;
	bool paid;
};

/* R12 for one person's resolved plain slots: pays month M's owed slots from
 * *balance_fen in withholding order, changing slots and *balance_fen.
 * A slot whose paid would pass CORE_MONEY_MAX is interrupted (R13's cap).
 * lines: room for slot_count entries. month ≤ month(date) is the caller's
 * check. */
int core_withhold_run(const struct core_policy_set *set, struct core_slot *slots, uint32_t slot_count, int32_t month,
		      int32_t date, int64_t *balance_fen, struct core_withhold_line *lines, uint32_t *line_count);

/* Names at the edges: canonical spellings, and parsing (-1 when unknown). */
extern const char *const core_type_names[CORE_TYPE_COUNT];
extern const char *const core_category_names[CORE_CATEGORY_COUNT];
extern const char *const core_class_names[CORE_CLASS_COUNT];
extern const char *const core_tier_names[CORE_TIER_COUNT];
int core_name_index(const char *const *names, uint32_t name_count, const char *s, size_t size);

#ifdef __cplusplus
}
#endif
#endif
