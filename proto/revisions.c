/* Policy revisions (SPEC 3.4): policy_revisions and revision params, and
 * the warnings of policy.put about keys the decoder ignores. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define WARNING_KEY_BYTES_MAX 48u /* a key echoed in a warning; longer ones are not echoed */

static const char *const top_keys[] = { "city", "name", "source", "deadline", "periods", "interest",
					"late_fee", "backpay", "housing", "withhold", NULL };
static const char *const deadline_keys[] = { "day", "month_offset", NULL };
static const char *const period_keys[] = { "from", "base_min", "base_max", "rates", NULL };
static const char *const share_keys[] = { "employer", "individual", "flexible", NULL };
static const char *const interest_keys[] = { "types", "categories", "default_ppm", "rates", NULL };
static const char *const late_fee_keys[] = { "daily_ppm", "categories", "cap_at_principal", NULL };
static const char *const backpay_keys[] = { "direct_max_months", "verify_max_months", "legacy_before",
					    "flexible_window_months", NULL };
static const char *const housing_keys[] = { "types", "window_months", "required_months", "end_offset_months",
					    "backpay_counts", "grace_days", NULL };
static const char *const withhold_keys[] = { "order", "mode", NULL };

static void warn(struct proto_warnings *out, const char *path, const msgpack_object *key, const char *what)
{
	if (out->count == POLICY_WARNINGS_MAX) {
		out->unlisted++;
		return;
	}
	char *text = out->text[out->count++];
	bool echo = key->type == MSGPACK_OBJECT_STR && key->via.str.size <= WARNING_KEY_BYTES_MAX &&
		    proto_utf8_valid(key->via.str.ptr, key->via.str.size);
	if (echo) {
		snprintf(text, PROTO_WARNING_BYTES, "%s.%.*s: %s", path, (int)key->via.str.size, key->via.str.ptr,
			 what);
	} else {
		snprintf(text, PROTO_WARNING_BYTES, "%s: a key that is not a short UTF-8 string, ignored", path);
	}
}

static bool key_is(const msgpack_object *key, const char *name)
{
	size_t n = strlen(name);
	return key->type == MSGPACK_OBJECT_STR && key->via.str.size == n && memcmp(key->via.str.ptr, name, n) == 0;
}

/* Warns of each key of map not in known (NULL-terminated), and of a known
 * key repeated (the decoder reads the first). */
static void check_keys(const msgpack_object *map, const char *const *known, const char *path,
		       struct proto_warnings *out)
{
	if (map == NULL || map->type != MSGPACK_OBJECT_MAP) {
		return;
	}
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *key = &map->via.map.ptr[i].key;
		uint32_t k = 0;
		while (known[k] != NULL && !key_is(key, known[k])) {
			k++;
		}
		if (known[k] == NULL) {
			warn(out, path, key, "unknown key, ignored");
			continue;
		}
		for (uint32_t j = 0; j < i; j++) {
			if (key_is(&map->via.map.ptr[j].key, known[k])) {
				warn(out, path, key, "repeated key, ignored (the first one counts)");
				break;
			}
		}
	}
}

static const msgpack_object *sub(const msgpack_object *map, const char *key)
{
	const msgpack_object *o = map == NULL ? NULL : proto_map_get(map, key);
	return o != NULL && o->type == MSGPACK_OBJECT_MAP ? o : NULL;
}

static void check_periods(const msgpack_object *periods, struct proto_warnings *out)
{
	char path[PROTO_WARNING_BYTES];
	for (uint32_t k = 0; periods != NULL && periods->type == MSGPACK_OBJECT_ARRAY && k < periods->via.array.size;
	     k++) {
		const msgpack_object *period = &periods->via.array.ptr[k];
		snprintf(path, sizeof(path), "policy.periods[%u]", k);
		check_keys(period, period_keys, path, out);
		const msgpack_object *rates = sub(period, "rates");
		for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
			snprintf(path, sizeof(path), "policy.periods[%u].rates.%s", k, core_type_names[t]);
			check_keys(sub(rates, core_type_names[t]), share_keys, path, out);
		}
	}
}

void proto_policy_warnings(const struct proto_params *params, struct proto_warnings *out)
{
	out->count = 0;
	out->unlisted = 0;
	const msgpack_object *doc = sub(proto_params_map(params), "policy");
	if (doc == NULL) {
		return;
	}
	check_keys(doc, top_keys, "policy", out);
	check_keys(sub(doc, "deadline"), deadline_keys, "policy.deadline", out);
	check_periods(proto_map_get(doc, "periods"), out);
	check_keys(sub(doc, "interest"), interest_keys, "policy.interest", out);
	check_keys(sub(doc, "late_fee"), late_fee_keys, "policy.late_fee", out);
	check_keys(sub(doc, "backpay"), backpay_keys, "policy.backpay", out);
	check_keys(sub(doc, "housing"), housing_keys, "policy.housing", out);
	check_keys(sub(doc, "withhold"), withhold_keys, "policy.withhold", out);
	if (out->unlisted > 0) {
		snprintf(out->text[out->count++], PROTO_WARNING_BYTES, "%u more keys ignored", out->unlisted);
	}
}

/* An error at the key's path when the key can be echoed, else at policy_revisions. */
static int pin_error(struct proto_error *err, const msgpack_object *key, const char *field, const char *expected,
		     const msgpack_object *found)
{
	bool echo = key->type == MSGPACK_OBJECT_STR && key->via.str.size <= WARNING_KEY_BYTES_MAX &&
		    proto_utf8_valid(key->via.str.ptr, key->via.str.size);
	if (!echo) {
		return proto_invalid(err, field, expected, found, "policy_revisions");
	}
	return proto_invalid(err, field, expected, found, "policy_revisions.%.*s", (int)key->via.str.size,
			     key->via.str.ptr);
}

int proto_pins_decode(const struct proto_params *params, struct proto_pins *out, struct proto_error *err)
{
	out->count = 0;
	const msgpack_object *o = proto_map_get(proto_params_map(params), "policy_revisions");
	if (o == NULL) {
		return PROTO_OK;
	}
	if (o->type != MSGPACK_OBJECT_MAP) {
		return proto_invalid(err, "policy_revisions", "a map {city: revision}", o, "policy_revisions");
	}
	if (o->via.map.size > POLICY_PINS_MAX) {
		return proto_too_many(err, "policy_revisions", POLICY_PINS_MAX, o->via.map.size, "policy_revisions");
	}
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		uint32_t city;
		if (!proto_read_city(&kv->key, &city)) {
			return pin_error(err, &kv->key, "a policy_revisions key", PROTO_EXPECT_CITY, &kv->key);
		}
		if (kv->val.type != MSGPACK_OBJECT_POSITIVE_INTEGER || kv->val.via.u64 == 0) {
			return pin_error(err, &kv->key, "a revision", "a positive integer", &kv->val);
		}
		for (uint32_t j = 0; j < out->count; j++) {
			if (out->city[j] == city) {
				return pin_error(err, &kv->key, "a policy_revisions key", "a city named once", &kv->key);
			}
		}
		out->city[out->count] = city;
		out->revision[out->count++] = kv->val.via.u64;
	}
	return PROTO_OK;
}

int proto_revision_decode(const struct proto_params *params, uint64_t *revision, struct proto_error *err)
{
	const msgpack_object *o = proto_map_get(proto_params_map(params), "revision");
	*revision = 0;
	if (o == NULL) {
		return PROTO_OK;
	}
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 == 0) {
		return proto_invalid(err, "revision", "a positive integer", o, "revision");
	}
	*revision = o->via.u64;
	return PROTO_OK;
}
