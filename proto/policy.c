/* policy.put: a city's policy document (SPEC §3.3) decoded, checked in
 * document order, defaults filled field by field. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define COUNT_MAX 1000000 /* month and day counts in a policy */
#define INTEREST_YEAR_MAX 9999
#define INTEREST_RATES_MAX (INTEREST_YEAR_MAX + 1) /* strictly ascending years allow no more */


static int invalid(struct proto_error *err, const char *at)
{
	return proto_error_set(err, PROTO_INVALID_ARGUMENT, "invalid policy field", "policy.%s", at);
}

/* An optional sub-map: NULL when absent; *bad when present but not a map. */
static const msgpack_object *section(const msgpack_object *policy, const char *key, bool *bad)
{
	const msgpack_object *o = proto_map_get(policy, key);
	*bad = o != NULL && o->type != MSGPACK_OBJECT_MAP;
	return *bad ? NULL : o;
}

/* An optional integer field in lo..hi; keeps *v (the default) when absent. */
static int opt_int(const msgpack_object *map, const char *key, int64_t lo, int64_t hi, uint32_t *v,
		   const char *at, struct proto_error *err)
{
	const msgpack_object *o = map == NULL ? NULL : proto_map_get(map, key);
	int64_t x;
	if (o == NULL) {
		return PROTO_OK;
	}
	if (!proto_read_int(o, lo, hi, &x)) {
		return invalid(err, at);
	}
	*v = (uint32_t)x;
	return PROTO_OK;
}

static int opt_bool(const msgpack_object *map, const char *key, bool *v, const char *at, struct proto_error *err)
{
	const msgpack_object *o = map == NULL ? NULL : proto_map_get(map, key);
	if (o != NULL && !proto_read_bool(o, v)) {
		return invalid(err, at);
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
	if (o->type != MSGPACK_OBJECT_ARRAY) {
		return invalid(err, at);
	}
	uint8_t m = 0;
	uint8_t n = 0;
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		int index = proto_read_name(&o->via.array.ptr[i], names, name_count);
		if (index < 0) {
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "unknown name", "policy.%s[%u]", at, i);
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
		return proto_error_set(err, PROTO_INVALID_ARGUMENT, "rates must be a map", "policy.periods[%u].rates", k);
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
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "unknown type or rates not a map",
					       "policy.periods[%u].rates%s%.*s", k, echo ? "." : "",
					       echo ? (int)kv->key.via.str.size : 0, echo ? kv->key.via.str.ptr : "");
		}
		for (uint32_t s = 0; s < CORE_SHARE_COUNT; s++) {
			const msgpack_object *o = proto_map_get(&kv->val, shares[s]);
			int64_t v;
			if (o != NULL && !proto_read_int(o, 0, CORE_RATE_MAX, &v)) {
				return proto_error_set(err, PROTO_INVALID_ARGUMENT, "rate out of range",
						       "policy.periods[%u].rates.%s.%s", k, core_type_names[type],
						       shares[s]);
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
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "period must be a map", "policy.periods[%u]", k);
		}
		int32_t from;
		if (!proto_read_month(proto_map_get(p, "from"), &from) || (k > 0 && from <= periods[k - 1].from)) {
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "bad or out-of-order month",
					       "policy.periods[%u].from", k);
		}
		ASSERT(k < capacity); /* ascending valid months run out first */
		struct core_period *period = &periods[k];
		memset(period, 0, sizeof(*period));
		period->from = from;
		int64_t v;
		if (!proto_read_int(proto_map_get(p, "base_min"), 0, CORE_MONEY_MAX, &v)) {
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "bad money", "policy.periods[%u].base_min", k);
		}
		period->base_min_fen = v;
		if (!proto_read_int(proto_map_get(p, "base_max"), 0, CORE_MONEY_MAX, &v)) {
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "bad money", "policy.periods[%u].base_max", k);
		}
		period->base_max_fen = v;
		if (period->base_min_fen > period->base_max_fen) {
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "base_min > base_max",
					       "policy.periods[%u].base_min", k);
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
		if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 ||
		    !proto_read_int(&e->via.array.ptr[0], 0, INTEREST_YEAR_MAX, &year) ||
		    !proto_read_int(&e->via.array.ptr[1], 0, CORE_RATE_MAX, &ppm) ||
		    (k > 0 && year <= rates[k - 1].year)) {
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "bad or out-of-order [year, ppm]",
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
	if (!proto_read_city(proto_map_get(doc, "city"), &p->city)) {
		return invalid(err, "city");
	}
	const msgpack_object *name = proto_map_get(doc, "name");
	if (name != NULL) {
		if (name->type != MSGPACK_OBJECT_STR || name->via.str.size > CORE_NAME_MAX ||
		    !proto_utf8_valid(name->via.str.ptr, name->via.str.size)) {
			return invalid(err, "name");
		}
		memcpy(p->name, name->via.str.ptr, name->via.str.size);
		p->name_size = name->via.str.size;
	}
	const msgpack_object *source = proto_map_get(doc, "source");
	if (source != NULL) {
		if (source->type != MSGPACK_OBJECT_STR || source->via.str.size > CORE_SOURCE_MAX ||
		    !proto_utf8_valid(source->via.str.ptr, source->via.str.size)) {
			return invalid(err, "source");
		}
		memcpy(p->source, source->via.str.ptr, source->via.str.size);
		p->source_size = source->via.str.size;
	}
	const msgpack_object *deadline = proto_map_get(doc, "deadline");
	if (deadline == NULL || deadline->type != MSGPACK_OBJECT_MAP) {
		return invalid(err, "deadline");
	}
	int64_t v;
	if (!proto_read_int(proto_map_get(deadline, "day"), 1, 31, &v)) {
		return invalid(err, "deadline.day");
	}
	p->deadline_day = (uint8_t)v;
	uint32_t offset = 0;
	if (opt_int(deadline, "month_offset", 0, 2, &offset, "deadline.month_offset", err) != PROTO_OK) {
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
	    opt_int(s, "default_ppm", 0, CORE_RATE_MAX, &p->interest_default_ppm, "interest.default_ppm", err)) {
		return bad ? invalid(err, "interest") : err->code;
	}
	if (list != NULL) {
		if (list->type != MSGPACK_OBJECT_ARRAY) {
			return invalid(err, "interest.rates");
		}
		if (decode_interest_rates(list, rates, rate_capacity, err) != PROTO_OK) {
			return err->code;
		}
		p->interest_rates = rates;
		p->interest_rate_count = list->via.array.size;
	}
	s = section(doc, "late_fee", &bad);
	if (bad || opt_int(s, "daily_ppm", 0, CORE_DAILY_RATE_MAX, &p->late_fee_daily_ppm, "late_fee.daily_ppm", err) ||
	    opt_names(s, "categories", core_category_names, CORE_CATEGORY_COUNT, &p->late_fee_categories, NULL, NULL,
		      "late_fee.categories", err) ||
	    opt_bool(s, "cap_at_principal", &p->late_fee_cap_at_principal, "late_fee.cap_at_principal", err)) {
		return bad ? invalid(err, "late_fee") : err->code;
	}
	s = section(doc, "backpay", &bad);
	const msgpack_object *legacy = s == NULL ? NULL : proto_map_get(s, "legacy_before");
	if (bad || opt_int(s, "direct_max_months", 0, COUNT_MAX, &p->backpay_direct_max_months,
			   "backpay.direct_max_months", err) ||
	    opt_int(s, "verify_max_months", 0, COUNT_MAX, &p->backpay_verify_max_months, "backpay.verify_max_months",
		    err)) {
		return bad ? invalid(err, "backpay") : err->code;
	}
	if (legacy != NULL && !proto_read_month(legacy, &p->backpay_legacy_before)) {
		return invalid(err, "backpay.legacy_before");
	}
	if (opt_int(s, "flexible_window_months", 0, COUNT_MAX, &p->backpay_flexible_window_months,
		    "backpay.flexible_window_months", err)) {
		return err->code;
	}
	s = section(doc, "housing", &bad);
	if (bad || opt_names(s, "types", core_type_names, CORE_TYPE_COUNT, &p->housing_types, NULL, NULL,
			     "housing.types", err) ||
	    opt_int(s, "window_months", 1, CORE_WINDOW_MAX, &p->housing_window_months, "housing.window_months",
		    err) ||
	    opt_int(s, "required_months", 0, COUNT_MAX, &p->housing_required_months, "housing.required_months",
		    err)) {
		return bad ? invalid(err, "housing") : err->code;
	}
	if (p->housing_required_months > p->housing_window_months) {
		return invalid(err, "housing.required_months");
	}
	if (opt_int(s, "end_offset_months", 0, 12, &p->housing_end_offset_months, "housing.end_offset_months", err) ||
	    opt_bool(s, "backpay_counts", &p->housing_backpay_counts, "housing.backpay_counts", err) ||
	    opt_int(s, "grace_days", 0, COUNT_MAX, &p->housing_grace_days, "housing.grace_days", err)) {
		return err->code;
	}
	s = section(doc, "withhold", &bad);
	if (bad || opt_names(s, "order", core_type_names, CORE_TYPE_COUNT, &(uint8_t){ 0 }, p->withhold_order,
			     &p->withhold_order_count, "withhold.order", err)) {
		return bad ? invalid(err, "withhold") : err->code;
	}
	const msgpack_object *mode = s == NULL ? NULL : proto_map_get(s, "mode");
	if (mode != NULL) {
		static const char *const modes[] = { "stop", "skip" };
		int m = proto_read_name(mode, modes, 2);
		if (m < 0) {
			return invalid(err, "withhold.mode");
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
	const msgpack_object *doc = proto_map_get((const msgpack_object *)params, "policy");
	if (doc == NULL || doc->type != MSGPACK_OBJECT_MAP) {
		proto_error_set(err, PROTO_INVALID_ARGUMENT, "policy must be a map", "policy");
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
			rc = invalid(err, "periods");
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
	if (!proto_read_city(proto_map_get((const msgpack_object *)params, key), city)) {
		return proto_error_set(err, PROTO_INVALID_ARGUMENT, "city must be 6 digits", "%s", key);
	}
	return PROTO_OK;
}
