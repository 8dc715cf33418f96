/* policy.put: a city's policy document (SPEC §3.3) decoded, checked in
 * document order, defaults filled field by field. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define COUNT_MAX 1000000 /* month and day counts in a policy */
#define INTEREST_YEAR_MAX 9999
#define INTEREST_RATES_MAX (INTEREST_YEAR_MAX + 1) /* strictly ascending years allow no more */


/* The field at (a path inside the policy, "deadline.day") must be expected:
 * invalid_argument at "policy.<at>", the message names the field as at. */
static int invalid(struct proto_error *err, const char *at, const char *expected, const msgpack_object *found)
{
	return proto_invalid(err, at, expected, found, "policy.%s", at);
}

/* "one of a, b, c" for a list of names. */
static const char *names_expected(const char *const *names, uint32_t name_count, char *buf, size_t size)
{
	size_t n = (size_t)snprintf(buf, size, "one of");
	for (uint32_t i = 0; i < name_count && n < size; i++) {
		n += (size_t)snprintf(buf + n, size - n, "%s %s", i == 0 ? "" : ",", names[i]);
	}
	return buf;
}

/* An optional sub-map: NULL when absent; *bad when present but not a map. */
static const msgpack_object *section(const msgpack_object *policy, const char *key, bool *bad)
{
	const msgpack_object *o = proto_map_get(policy, key);
	*bad = o != NULL && o->type != MSGPACK_OBJECT_MAP;
	return *bad ? NULL : o;
}

/* A section that is present but not a map. */
static int bad_section(const msgpack_object *doc, const char *key, struct proto_error *err)
{
	return invalid(err, key, "a map", proto_map_get(doc, key));
}

/* An optional integer field in lo..hi (unit: " ppm", " months", "" ...);
 * keeps *v (the default) when absent. */
/* An optional UTF-8 string of at most max bytes at doc.key, copied into out. */
static int opt_text(const msgpack_object *doc, const char *key, size_t max, const char *expected, char *out,
		    uint32_t *size, struct proto_error *err)
{
	const msgpack_object *o = proto_map_get(doc, key);
	if (o == NULL) {
		return PROTO_OK;
	}
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > max || !proto_utf8_valid(o->via.str.ptr, o->via.str.size)) {
		char found[64];
		return proto_invalid_text(err, key, expected, proto_found_string(o, found, sizeof(found)), "policy.%s", key);
	}
	memcpy(out, o->via.str.ptr, o->via.str.size);
	*size = (uint32_t)o->via.str.size;
	return PROTO_OK;
}

static int opt_int(const msgpack_object *map, const char *key, int64_t lo, int64_t hi, const char *unit, uint32_t *v,
		   const char *at, struct proto_error *err)
{
	const msgpack_object *o = map == NULL ? NULL : proto_map_get(map, key);
	int64_t x;
	if (o == NULL) {
		return PROTO_OK;
	}
	if (!proto_read_int(o, lo, hi, &x)) {
		char expected[64];
		snprintf(expected, sizeof(expected), "an integer %" PRId64 "..%" PRId64 "%s", lo, hi, unit);
		return invalid(err, at, expected, o);
	}
	*v = (uint32_t)x;
	return PROTO_OK;
}

static int opt_bool(const msgpack_object *map, const char *key, bool *v, const char *at, struct proto_error *err)
{
	const msgpack_object *o = map == NULL ? NULL : proto_map_get(map, key);
	if (o != NULL && !proto_read_bool(o, v)) {
		return invalid(err, at, PROTO_EXPECT_BOOL, o);
	}
	return PROTO_OK;
}

/* An optional list of names as a bit mask; keeps *mask when absent. order
 * (may be NULL) gets the distinct indices in list order. */
static int opt_names(const msgpack_object *map, const char *key, const char *const *names, uint32_t name_count,
		     uint8_t *mask, uint8_t *order, uint8_t *order_count, const char *at, struct proto_error *err)
{
	const msgpack_object *o = map == NULL ? NULL : proto_map_get(map, key);
	if (o == NULL) {
		return PROTO_OK;
	}
	char expected[96];
	if (o->type != MSGPACK_OBJECT_ARRAY) {
		return invalid(err, at, "an array of names", o);
	}
	uint8_t m = 0;
	uint8_t n = 0;
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		int index = proto_read_name(&o->via.array.ptr[i], names, name_count);
		if (index < 0) {
			char field[64];
			snprintf(field, sizeof(field), "%s[%" PRIu32 "]", at, i);
			return proto_invalid_echo(err, field, names_expected(names, name_count, expected, sizeof(expected)),
						  &o->via.array.ptr[i], "policy.%s", field);
		}
		if (order != NULL && !(m >> index & 1)) {
			order[n++] = (uint8_t)index;
		}
		m |= (uint8_t)(1u << index);
	}
	*mask = m;
	if (order_count != NULL) {
		*order_count = n;
	}
	return PROTO_OK;
}

static int decode_rates(const msgpack_object *rates, uint32_t k, struct core_period *period, struct proto_error *err)
{
	static const char *const shares[CORE_SHARE_COUNT] = { "employer", "individual", "flexible" };
	if (rates->type != MSGPACK_OBJECT_MAP) {
		return proto_invalid(err, "rates", "a map of types", rates, "policy.periods[%u].rates", k);
	}
	for (uint32_t i = 0; i < rates->via.map.size; i++) {
		const msgpack_object_kv *kv = &rates->via.map.ptr[i];
		if (kv->val.type == MSGPACK_OBJECT_NIL) {
			continue; /* nil is absent: all shares 0 */
		}
		int type = proto_read_name(&kv->key, core_type_names, CORE_TYPE_COUNT);
		if (type < 0 || kv->val.type != MSGPACK_OBJECT_MAP) {
			bool echo = kv->key.type == MSGPACK_OBJECT_STR &&
				    proto_utf8_valid(kv->key.via.str.ptr, kv->key.via.str.size);
			if (type < 0) {
				return proto_invalid_echo(err, "a rates key", PROTO_EXPECT_TYPE, &kv->key,
							  "policy.periods[%u].rates%s%.*s", k, echo ? "." : "",
							  echo ? (int)kv->key.via.str.size : 0,
							  echo ? kv->key.via.str.ptr : "");
			}
			return proto_invalid(err, core_type_names[type], "a map {employer, individual, flexible}",
					     &kv->val, "policy.periods[%u].rates.%s", k, core_type_names[type]);
		}
		for (uint32_t s = 0; s < CORE_SHARE_COUNT; s++) {
			const msgpack_object *o = proto_map_get(&kv->val, shares[s]);
			int64_t v;
			if (o != NULL && !proto_read_int(o, 0, CORE_RATE_MAX, &v)) {
				return proto_invalid(err, shares[s], PROTO_EXPECT_RATE, o, "policy.periods[%u].rates.%s.%s",
						     k, core_type_names[type], shares[s]);
			}
			period->rate_ppm[type][s] = o == NULL ? 0 : (uint32_t)v;
		}
	}
	return PROTO_OK;
}

static int decode_periods(const msgpack_object *o, struct core_period *periods, uint32_t capacity,
			  struct proto_error *err)
{
	for (uint32_t k = 0; k < o->via.array.size; k++) {
		const msgpack_object *p = &o->via.array.ptr[k];
		if (p->type != MSGPACK_OBJECT_MAP) {
			return proto_invalid(err, "period", "a map {from, base_min, base_max, rates}", p,
					     "policy.periods[%u]", k);
		}
		int32_t from;
		const msgpack_object *from_o = proto_map_get(p, "from");
		if (!proto_read_month(from_o, &from)) {
			return proto_invalid(err, "from", PROTO_EXPECT_MONTH, from_o, "policy.periods[%u].from", k);
		}
		if (k > 0 && from <= periods[k - 1].from) {
			char expected[64];
			snprintf(expected, sizeof(expected), "a month after the previous period's %" PRId32,
				 core_month_yyyymm(periods[k - 1].from));
			return proto_invalid(err, "from", expected, from_o, "policy.periods[%u].from", k);
		}
		ASSERT(k < capacity); /* ascending valid months run out first */
		struct core_period *period = &periods[k];
		memset(period, 0, sizeof(*period));
		period->from = from;
		int64_t v;
		const msgpack_object *min = proto_map_get(p, "base_min");
		const msgpack_object *max = proto_map_get(p, "base_max");
		if (!proto_read_int(min, 0, CORE_MONEY_MAX, &v)) {
			return proto_invalid(err, "base_min", PROTO_EXPECT_MONEY, min, "policy.periods[%u].base_min", k);
		}
		period->base_min_fen = v;
		if (!proto_read_int(max, 0, CORE_MONEY_MAX, &v)) {
			return proto_invalid(err, "base_max", PROTO_EXPECT_MONEY, max, "policy.periods[%u].base_max", k);
		}
		period->base_max_fen = v;
		if (period->base_min_fen > period->base_max_fen) {
			char expected[64];
			snprintf(expected, sizeof(expected), "at most base_max %" PRId64, period->base_max_fen);
			return proto_invalid(err, "base_min", expected, min, "policy.periods[%u].base_min", k);
		}
		const msgpack_object *rates = proto_map_get(p, "rates");
		if (rates != NULL && decode_rates(rates, k, period, err) != PROTO_OK) {
			return err->code;
		}
	}
	return PROTO_OK;
}

static int decode_interest_rates(const msgpack_object *o, struct core_year_rate *rates, uint32_t capacity,
				 struct proto_error *err)
{
	for (uint32_t k = 0; k < o->via.array.size; k++) {
		const msgpack_object *e = &o->via.array.ptr[k];
		int64_t year;
		int64_t ppm;
		if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2) {
			return proto_invalid(err, "an interest rate", "[year 0..9999, rate 0..1000000 ppm]", e,
					     "policy.interest.rates[%u]", k);
		}
		if (!proto_read_int(&e->via.array.ptr[0], 0, INTEREST_YEAR_MAX, &year)) {
			return proto_invalid(err, "an interest rate's year", "an integer 0..9999", &e->via.array.ptr[0],
					     "policy.interest.rates[%u]", k);
		}
		if (!proto_read_int(&e->via.array.ptr[1], 0, CORE_RATE_MAX, &ppm)) {
			return proto_invalid(err, "an interest rate", PROTO_EXPECT_RATE, &e->via.array.ptr[1],
					     "policy.interest.rates[%u]", k);
		}
		if (k > 0 && year <= rates[k - 1].year) {
			char expected[48];
			snprintf(expected, sizeof(expected), "after the previous entry's %" PRId32, rates[k - 1].year);
			return proto_invalid(err, "an interest rate's year", expected, &e->via.array.ptr[0],
					     "policy.interest.rates[%u]", k);
		}
		ASSERT(k < capacity); /* ascending years in range run out first */
		rates[k] = (struct core_year_rate){ (int32_t)year, (uint32_t)ppm };
	}
	return PROTO_OK;
}

/* city, name, deadline. */
static int decode_head(const msgpack_object *doc, struct core_policy *p, struct proto_error *err)
{
	const msgpack_object *city = proto_map_get(doc, "city");
	if (!proto_read_city(city, &p->city)) {
		return proto_invalid_echo(err, "city", PROTO_EXPECT_CITY, city, "policy.city");
	}
	int rc = opt_text(doc, "name", CORE_NAME_MAX, "a UTF-8 string of at most 255 bytes", p->name, &p->name_size, err);
	rc = rc == PROTO_OK ? opt_text(doc, "source", CORE_SOURCE_MAX, "a UTF-8 string of at most 1024 bytes", p->source,
				       &p->source_size, err)
			    : rc;
	if (rc != PROTO_OK) {
		return rc;
	}
	const msgpack_object *deadline = proto_map_get(doc, "deadline");
	if (deadline == NULL || deadline->type != MSGPACK_OBJECT_MAP) {
		return invalid(err, "deadline", "a map {day, month_offset}", deadline);
	}
	int64_t v;
	const msgpack_object *day = proto_map_get(deadline, "day");
	if (!proto_read_int(day, 1, 31, &v)) {
		return invalid(err, "deadline.day", "an integer 1..31", day);
	}
	p->deadline_day = (uint8_t)v;
	uint32_t offset = 0;
	if (opt_int(deadline, "month_offset", 0, 2, " months", &offset, "deadline.month_offset", err) != PROTO_OK) {
		return err->code;
	}
	p->deadline_month_offset = (uint8_t)offset;
	return PROTO_OK;
}

/* interest, late_fee, backpay, housing, withhold. */
static int decode_tail(const msgpack_object *doc, struct core_policy *p, struct core_year_rate *rates,
		       uint32_t rate_capacity, struct proto_error *err)
{
	bool bad;
	const msgpack_object *s = section(doc, "interest", &bad);
	const msgpack_object *list = s == NULL ? NULL : proto_map_get(s, "rates");
	if (bad || opt_names(s, "types", core_type_names, CORE_TYPE_COUNT, &p->interest_types, NULL, NULL,
			     "interest.types", err) ||
	    opt_names(s, "categories", core_category_names, CORE_CATEGORY_COUNT, &p->interest_categories, NULL,
		      NULL, "interest.categories", err) ||
	    opt_int(s, "default_ppm", 0, CORE_RATE_MAX, " ppm", &p->interest_default_ppm, "interest.default_ppm", err)) {
		return bad ? bad_section(doc, "interest", err) : err->code;
	}
	if (list != NULL) {
		if (list->type != MSGPACK_OBJECT_ARRAY) {
			return invalid(err, "interest.rates", "an array of [year, rate]", list);
		}
		if (decode_interest_rates(list, rates, rate_capacity, err) != PROTO_OK) {
			return err->code;
		}
		p->interest_rates = rates;
		p->interest_rate_count = list->via.array.size;
	}
	s = section(doc, "late_fee", &bad);
	if (bad ||
	    opt_int(s, "daily_ppm", 0, CORE_DAILY_RATE_MAX, " ppm", &p->late_fee_daily_ppm, "late_fee.daily_ppm", err) ||
	    opt_names(s, "categories", core_category_names, CORE_CATEGORY_COUNT, &p->late_fee_categories, NULL, NULL,
		      "late_fee.categories", err) ||
	    opt_bool(s, "cap_at_principal", &p->late_fee_cap_at_principal, "late_fee.cap_at_principal", err)) {
		return bad ? bad_section(doc, "late_fee", err) : err->code;
	}
	s = section(doc, "backpay", &bad);
	const msgpack_object *legacy = s == NULL ? NULL : proto_map_get(s, "legacy_before");
	if (bad || opt_int(s, "direct_max_months", 0, COUNT_MAX, " months", &p->backpay_direct_max_months,
			   "backpay.direct_max_months", err) ||
	    opt_int(s, "verify_max_months", 0, COUNT_MAX, " months", &p->backpay_verify_max_months,
		    "backpay.verify_max_months", err)) {
		return bad ? bad_section(doc, "backpay", err) : err->code;
	}
	if (legacy != NULL && !proto_read_month(legacy, &p->backpay_legacy_before)) {
		return invalid(err, "backpay.legacy_before", PROTO_EXPECT_MONTH, legacy);
	}
	if (opt_int(s, "flexible_window_months", 0, COUNT_MAX, " months", &p->backpay_flexible_window_months,
		    "backpay.flexible_window_months", err)) {
		return err->code;
	}
	s = section(doc, "housing", &bad);
	if (bad || opt_names(s, "types", core_type_names, CORE_TYPE_COUNT, &p->housing_types, NULL, NULL,
			     "housing.types", err) ||
	    opt_int(s, "window_months", 1, CORE_WINDOW_MAX, " months", &p->housing_window_months,
		    "housing.window_months", err) ||
	    opt_int(s, "required_months", 0, COUNT_MAX, " months", &p->housing_required_months,
		    "housing.required_months", err)) {
		return bad ? bad_section(doc, "housing", err) : err->code;
	}
	if (p->housing_required_months > p->housing_window_months) {
		char expected[64];
		char found[16];
		snprintf(expected, sizeof(expected), "at most window_months %" PRIu32, p->housing_window_months);
		snprintf(found, sizeof(found), "%" PRIu32, p->housing_required_months);
		return proto_invalid_text(err, "housing.required_months", expected, found, "policy.housing.required_months");
	}
	if (opt_int(s, "end_offset_months", 0, 12, " months", &p->housing_end_offset_months, "housing.end_offset_months",
		    err) ||
	    opt_bool(s, "backpay_counts", &p->housing_backpay_counts, "housing.backpay_counts", err) ||
	    opt_int(s, "grace_days", 0, COUNT_MAX, " days", &p->housing_grace_days, "housing.grace_days", err)) {
		return err->code;
	}
	s = section(doc, "withhold", &bad);
	if (bad || opt_names(s, "order", core_type_names, CORE_TYPE_COUNT, &(uint8_t){ 0 }, p->withhold_order,
			     &p->withhold_order_count, "withhold.order", err)) {
		return bad ? bad_section(doc, "withhold", err) : err->code;
	}
	const msgpack_object *mode = s == NULL ? NULL : proto_map_get(s, "mode");
	if (mode != NULL) {
		static const char *const modes[] = { "stop", "skip" };
		int m = proto_read_name(mode, modes, 2);
		if (m < 0) {
			return proto_invalid_echo(err, "withhold.mode", "one of stop, skip", mode, "policy.withhold.mode");
		}
		p->withhold_mode = (uint8_t)m;
	}
	return PROTO_OK;
}

static uint32_t bounded_array_size(const msgpack_object *o, uint32_t max)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_ARRAY) {
		return 0;
	}
	return o->via.array.size < max ? o->via.array.size : max;
}

static struct core_policy *policy_from_object(const msgpack_object *doc, struct proto_error *err);

struct core_policy *proto_policy_decode(const struct proto_params *params, struct proto_error *err)
{
	const msgpack_object *doc = proto_map_get(proto_params_map(params), "policy");
	if (doc == NULL || doc->type != MSGPACK_OBJECT_MAP) {
		proto_invalid(err, "policy", "a map", doc, "policy");
		return NULL;
	}
	return policy_from_object(doc, err);
}

struct core_policy *proto_policy_from_doc(const uint8_t *bytes, size_t size, struct proto_error *err)
{
	/* Stored bytes are scanned as a client's are: a corrupt count (`dd ff ff
	 * ff ff`) must not size msgpack-c's allocation. */
	struct proto_frame scan;
	size_t doc_size;
	proto_frame_reset(&scan);
	if (proto_frame_scan(&scan, bytes, size, size, &doc_size) != PROTO_FRAME_COMPLETE) {
		proto_error_set(err, PROTO_INTERNAL, "stored policy does not decode", NULL);
		return NULL;
	}
	msgpack_unpacked unpacked;
	msgpack_unpacked_init(&unpacked);
	size_t offset = 0;
	struct core_policy *p = NULL;
	if (msgpack_unpack_next(&unpacked, (const char *)bytes, doc_size, &offset) == MSGPACK_UNPACK_SUCCESS &&
	    unpacked.data.type == MSGPACK_OBJECT_MAP) {
		p = policy_from_object(&unpacked.data, err);
	} else {
		proto_error_set(err, PROTO_INTERNAL, "stored policy does not decode", NULL);
	}
	msgpack_unpacked_destroy(&unpacked);
	return p;
}

static struct core_policy *policy_from_object(const msgpack_object *doc, struct proto_error *err)
{
	const msgpack_object *periods = proto_map_get(doc, "periods");
	const msgpack_object *interest = proto_map_get(doc, "interest");
	const msgpack_object *rates = interest != NULL && interest->type == MSGPACK_OBJECT_MAP
					      ? proto_map_get(interest, "rates")
					      : NULL;
	uint32_t period_capacity = bounded_array_size(periods, CORE_PERIODS_MAX);
	uint32_t rate_capacity = bounded_array_size(rates, INTEREST_RATES_MAX);
	size_t size = sizeof(struct core_policy) + period_capacity * sizeof(struct core_period) +
		      rate_capacity * sizeof(struct core_year_rate);
	struct core_policy *p = calloc(1, size);
	if (p == NULL) {
		proto_error_set(err, PROTO_INTERNAL, "out of memory", NULL);
		return NULL;
	}
	struct core_period *period_array = (struct core_period *)(p + 1);
	struct core_year_rate *rate_array = (struct core_year_rate *)(period_array + period_capacity);
	core_policy_defaults(p);
	p->periods = period_array;
	int rc = decode_head(doc, p, err);
	if (rc == PROTO_OK) {
		if (periods == NULL || periods->type != MSGPACK_OBJECT_ARRAY || periods->via.array.size == 0) {
			rc = invalid(err, "periods", "a non-empty array of periods", periods);
		} else {
			rc = decode_periods(periods, period_array, period_capacity, err);
			p->period_count = period_capacity;
		}
	}
	if (rc == PROTO_OK) {
		rc = decode_tail(doc, p, rate_array, rate_capacity, err);
	}
	if (rc != PROTO_OK) {
		free(p);
		return NULL;
	}
	core_policy_prepare(p);
	return p;
}

int proto_city_decode(const struct proto_params *params, const char *key, uint32_t *city, struct proto_error *err)
{
	const msgpack_object *o = proto_map_get(proto_params_map(params), key);
	if (!proto_read_city(o, city)) {
		return proto_invalid_echo(err, key, PROTO_EXPECT_CITY, o, "%s", key);
	}
	return PROTO_OK;
}
