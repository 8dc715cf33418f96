/* Params of the write methods (SPEC §5.1, Appendix A): idempotency keys and
 * their payload digest, person.put/get/delete, payment.apply, withhold.run. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"

#define IDEM_EXPECTED "a UTF-8 string of 1..255 bytes"

int proto_idem_decode(const struct proto_params *params, bool required, struct proto_string *key,
		      struct proto_error *err)
{
	const msgpack_object *o = proto_map_get(proto_params_map(params), "idem");
	key->ptr = NULL;
	key->size = 0;
	char found[64];
	if (o == NULL) {
		return required ? proto_invalid(err, "idem", IDEM_EXPECTED " (this method requires one)", o, "idem")
				: PROTO_OK;
	}
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 || o->via.str.size > IDEM_KEY_BYTES_MAX ||
	    !proto_utf8_valid(o->via.str.ptr, o->via.str.size)) {
		return proto_invalid_text(err, "idem", IDEM_EXPECTED, proto_found_string(o, found, sizeof(found)), "idem");
	}
	key->ptr = o->via.str.ptr;
	key->size = o->via.str.size;
	return PROTO_OK;
}

/* The payload is compared as a value (Appendix A): a retry that rebuilds the
 * request with map keys in another order, or an integer in a wider format,
 * is the same payload. So the digest is BLAKE2b over a canonical encoding:
 * integers and floats in their shortest form (msgpack-c's packers choose
 * it), map entries ordered by their keys' canonical bytes, entries with equal
 * keys kept in their order (the first one is the one read). */
static int hash_write(void *ctx, const char *buf, size_t len)
{
	crypto_generichash_update(ctx, (const unsigned char *)buf, len);
	return 0;
}

static int sbuffer_write(void *ctx, const char *buf, size_t len)
{
	return msgpack_sbuffer_write(ctx, buf, len);
}

static bool canonical_pack(msgpack_packer *pk, const msgpack_object *o);

struct key_ref {
	const char *bytes;
	size_t size;
	uint32_t index;
};

static int key_order(const void *a_, const void *b_)
{
	const struct key_ref *a = a_;
	const struct key_ref *b = b_;
	size_t n = a->size < b->size ? a->size : b->size;
	int c = memcmp(a->bytes, b->bytes, n);
	if (c != 0) {
		return c;
	}
	if (a->size != b->size) {
		return a->size < b->size ? -1 : 1;
	}
	return a->index < b->index ? -1 : a->index > b->index;
}

static bool canonical_map(msgpack_packer *pk, const msgpack_object_map *map)
{
	if (msgpack_pack_map(pk, map->size) != 0) {
		return false;
	}
	if (map->size == 0) {
		return true;
	}
	msgpack_sbuffer keys;
	msgpack_sbuffer_init(&keys);
	msgpack_packer kpk;
	msgpack_packer_init(&kpk, &keys, sbuffer_write);
	struct key_ref *refs = malloc(sizeof(*refs) * map->size);
	size_t *ends = malloc(sizeof(*ends) * map->size);
	bool ok = refs != NULL && ends != NULL;
	for (uint32_t i = 0; ok && i < map->size; i++) {
		ok = canonical_pack(&kpk, &map->ptr[i].key); /* false when the key buffer could not grow */
		ends[i] = keys.size;
	}
	for (uint32_t i = 0; ok && i < map->size; i++) {
		size_t begin = i == 0 ? 0 : ends[i - 1];
		refs[i] = (struct key_ref){ keys.data + begin, ends[i] - begin, i };
	}
	if (ok) {
		qsort(refs, map->size, sizeof(*refs), key_order);
	}
	for (uint32_t i = 0; ok && i < map->size; i++) {
		ok = pk->callback(pk->data, refs[i].bytes, refs[i].size) == 0 &&
		     canonical_pack(pk, &map->ptr[refs[i].index].val);
	}
	free(refs);
	free(ends);
	msgpack_sbuffer_destroy(&keys);
	return ok;
}

/* False when out of memory. Depth is bounded by the parse (PROTO_DEPTH_MAX). */
static bool canonical_pack(msgpack_packer *pk, const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: {
		/* As values: -0.0 is 0.0, and every NaN one NaN. */
		double v = o->via.f64 == 0.0 ? 0.0 : o->via.f64 != o->via.f64 ? __builtin_nan("") : o->via.f64;
		return msgpack_pack_double(pk, v) == 0;
	}
	case MSGPACK_OBJECT_ARRAY:
		if (msgpack_pack_array(pk, o->via.array.size) != 0) {
			return false;
		}
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (!canonical_pack(pk, &o->via.array.ptr[i])) {
				return false;
			}
		}
		return true;
	case MSGPACK_OBJECT_MAP:
		return canonical_map(pk, &o->via.map);
	default: /* nil, booleans, integers (shortest form), str, bin, ext */
		return msgpack_pack_object(pk, *o) == 0;
	}
}

bool proto_params_digest(const struct proto_params *params, const char *method, size_t method_size,
			 uint8_t out[PROTO_DIGEST_BYTES])
{
	crypto_generichash_state state;
	crypto_generichash_init(&state, NULL, 0, PROTO_DIGEST_BYTES);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &state, hash_write);
	msgpack_pack_str_with_body(&pk, method, method_size);
	/* The persons as msgpack-c objects too: a copy of the map's entries,
	 * the persons' value unpacked from its bytes. */
	const msgpack_object *map = proto_params_map(params);
	msgpack_object whole = *map;
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE)) {
		return false;
	}
	bool ok = true;
	if (params->persons != NULL) {
		msgpack_object_kv *kv = msgpack_zone_malloc(&zone, sizeof(*kv) * map->via.map.size);
		const uint8_t *array = params->persons_array;
		size_t offset = 0;
		ok = kv != NULL;
		for (uint32_t i = 0; ok && i < map->via.map.size; i++) {
			kv[i] = map->via.map.ptr[i];
			if (&map->via.map.ptr[i].val == params->persons) {
				ok = msgpack_unpack((const char *)array, (size_t)(params->persons_end - array), &offset, &zone,
						    &kv[i].val) == MSGPACK_UNPACK_SUCCESS;
			}
		}
		whole.via.map.ptr = kv;
	}
	ok = ok && canonical_pack(&pk, &whole);
	msgpack_zone_destroy(&zone);
	if (ok) {
		crypto_generichash_final(&state, out, PROTO_DIGEST_BYTES);
	}
	return ok;
}

int proto_id_decode(const struct proto_params *params, struct proto_string *id, struct proto_error *err)
{
	const msgpack_object *o = proto_map_get(proto_params_map(params), "id");
	if (proto_id_check_object(o, err, "id") != PROTO_OK) {
		return err->code;
	}
	id->ptr = o->via.str.ptr;
	id->size = o->via.str.size;
	return PROTO_OK;
}

/* An array param of at most PROTO_PERSONS_MAX entries. */
static int list_decode(const msgpack_object *params, const char *key, struct proto_list *out,
		       struct proto_error *err)
{
	const msgpack_object *o = proto_map_get(params, key);
	if (o == NULL || o->type != MSGPACK_OBJECT_ARRAY) {
		return proto_invalid(err, key, "an array", o, "%s", key);
	}
	if (o->via.array.size > PROTO_PERSONS_MAX) {
		return proto_too_many(err, key, PROTO_PERSONS_MAX, o->via.array.size, "%s", key);
	}
	out->items = o;
	out->count = o->via.array.size;
	return PROTO_OK;
}

int proto_put_decode(const struct proto_params *params, struct proto_compute *out, struct proto_error *err)
{
	memset(out, 0, sizeof(*out));
	return proto_persons_list(params, out, err);
}

int proto_payment_decode(const struct proto_params *params, struct proto_list *items, struct proto_error *err)
{
	return list_decode(proto_params_map(params), "items", items, err);
}

int proto_payment_item(const struct proto_list *items, uint32_t i, struct proto_payment *out, struct proto_error *err)
{
	const msgpack_object *o = &((const msgpack_object *)items->items)->via.array.ptr[i];
	if (o->type != MSGPACK_OBJECT_MAP) {
		return proto_invalid(err, "item", "a map {id, month, city, type, amount, date}", o, "items[%u]", i);
	}
	const msgpack_object *id = proto_map_get(o, "id");
	int64_t amount;
	int type;
	const char *bad = NULL;
	const char *expected = NULL;
	if (id == NULL || id->type != MSGPACK_OBJECT_STR) {
		return proto_id_check_object(id, err, "items[%u].id", i); /* the id string itself: at the lookup */
	} else if (!proto_read_month(proto_map_get(o, "month"), &out->month)) {
		bad = "month", expected = PROTO_EXPECT_MONTH;
	} else if (!proto_read_city(proto_map_get(o, "city"), &out->city)) {
		bad = "city", expected = PROTO_EXPECT_CITY;
	} else if ((type = proto_read_name(proto_map_get(o, "type"), core_type_names, CORE_TYPE_COUNT)) < 0) {
		bad = "type", expected = PROTO_EXPECT_TYPE;
	} else if (!proto_read_int(proto_map_get(o, "amount"), 1, CORE_MONEY_MAX, &amount)) {
		bad = "amount", expected = "an integer 1..10000000000 fen";
	} else if (!proto_read_date(proto_map_get(o, "date"), &out->date)) {
		bad = "date", expected = PROTO_EXPECT_DATE;
	}
	if (bad != NULL) {
		bool echo = strcmp(bad, "city") == 0 || strcmp(bad, "type") == 0; /* names, not personal data */
		return (echo ? proto_invalid_echo : proto_invalid)(err, bad, expected, proto_map_get(o, bad),
								   "items[%u].%s", i, bad);
	}
	out->id.ptr = id->via.str.ptr;
	out->id.size = id->via.str.size;
	out->type = (uint8_t)type;
	out->amount_fen = amount;
	return PROTO_OK;
}

int proto_withhold_decode(const struct proto_params *params_, struct proto_withhold *out, struct proto_error *err)
{
	const msgpack_object *params = proto_params_map(params_);
	const msgpack_object *month = proto_map_get(params, "month");
	const msgpack_object *date = proto_map_get(params, "date");
	if (!proto_read_month(month, &out->month)) {
		return proto_invalid(err, "month", PROTO_EXPECT_MONTH, month, "month");
	}
	if (!proto_read_date(date, &out->date)) {
		return proto_invalid(err, "date", PROTO_EXPECT_DATE, date, "date");
	}
	if (out->month > core_as_of_make(out->date).month) {
		char expected[48];
		snprintf(expected, sizeof(expected), "at most the date's month %" PRId32,
			 core_month_yyyymm(core_as_of_make(out->date).month));
		return proto_invalid(err, "month", expected, month, "month");
	}
	return list_decode(params, "accounts", &out->accounts, err);
}

int proto_withhold_account(const struct proto_withhold *req, uint32_t i, struct proto_string *id, int64_t *balance_fen,
			   struct proto_error *err)
{
	const msgpack_object *o = &((const msgpack_object *)req->accounts.items)->via.array.ptr[i];
	id->ptr = NULL;
	id->size = 0;
	if (o->type != MSGPACK_OBJECT_MAP) {
		return proto_invalid(err, "account", "a map {id, balance}", o, "accounts[%u]", i);
	}
	const msgpack_object *id_o = proto_map_get(o, "id");
	if (id_o == NULL || id_o->type != MSGPACK_OBJECT_STR) {
		return proto_id_check_object(id_o, err, "accounts[%u].id", i); /* the id string itself: at the lookup */
	}
	id->ptr = id_o->via.str.ptr;
	id->size = id_o->via.str.size;
	const msgpack_object *balance = proto_map_get(o, "balance");
	if (!proto_read_int(balance, 0, CORE_MONEY_MAX, balance_fen)) {
		return proto_invalid(err, "balance", PROTO_EXPECT_MONEY, balance, "accounts[%u].balance", i);
	}
	return PROTO_OK;
}

uint32_t proto_params_list_size(const struct proto_params *params_, const char **list_name)
{
	const msgpack_object *params = proto_params_map(params_);
	static const char *const lists[] = { "persons", "ids", "items", "accounts" };
	uint32_t size = 0;
	*list_name = lists[0];
	for (uint32_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		const msgpack_object *o = proto_map_get(params, lists[i]);
		if (o != NULL && o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size > size) {
			size = o->via.array.size;
			*list_name = lists[i];
		}
	}
	return size;
}

uint32_t proto_params_weight(const struct proto_params *params_)
{
	const char *name;
	uint32_t weight = proto_params_list_size(params_, &name);
	const msgpack_object *scan = proto_map_get(proto_params_map(params_), "scan");
	int64_t limit;
	if (scan != NULL && scan->type == MSGPACK_OBJECT_MAP &&
	    proto_read_int(proto_map_get(scan, "limit"), 1, UINT32_MAX, &limit) && (uint64_t)limit > weight) {
		weight = (uint32_t)limit;
	}
	return weight;
}

int proto_token_decode(const struct proto_params *params, struct proto_string *token, struct proto_error *err)
{
	const msgpack_object *o = proto_map_get(proto_params_map(params), "token");
	if (o == NULL || o->type != MSGPACK_OBJECT_STR || !proto_utf8_valid(o->via.str.ptr, o->via.str.size)) {
		char found[64];
		return proto_invalid_text(err, "token", "a UTF-8 string", proto_found_string(o, found, sizeof(found)), "token");
	}
	token->ptr = o->via.str.ptr;
	token->size = o->via.str.size;
	return PROTO_OK;
}

int proto_audit_read_decode(const struct proto_params *params_, uint64_t *after, uint32_t *limit,
			    struct proto_error *err)
{
	const msgpack_object *params = proto_params_map(params_);
	const msgpack_object *a = proto_map_get(params, "after");
	int64_t v = 0;
	if (a != NULL && !proto_read_int(a, 0, INT64_MAX, &v)) {
		return proto_invalid(err, "after", "nil or a sequence number (an integer >= 0)", a, "after");
	}
	*after = (uint64_t)v;
	const msgpack_object *l = proto_map_get(params, "limit");
	if (!proto_read_int(l, 1, PROTO_AUDIT_LIMIT_MAX, &v)) {
		return proto_invalid(err, "limit", "an integer 1..10000", l, "limit");
	}
	*limit = (uint32_t)v;
	return PROTO_OK;
}
