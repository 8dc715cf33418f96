/* Params of the write methods (SPEC §5.1, Appendix A): idempotency keys and
 * their payload digest, person.put/get/delete, payment.apply, withhold.run. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define IDEM_KEY_MAX 255u /* bytes; LMDB keys stay well inside 511 */

static int invalid(struct proto_error *err, const char *message, const char *at)
{
	return proto_error_set(err, PROTO_INVALID_ARGUMENT, message, "%s", at);
}

int proto_idem_decode(const struct proto_params *params, bool required, struct proto_string *key,
		      struct proto_error *err)
{
	const msgpack_object *o = proto_map_get((const msgpack_object *)params, "idem");
	key->ptr = NULL;
	key->size = 0;
	if (o == NULL) {
		return required ? invalid(err, "idem key required", "idem") : PROTO_OK;
	}
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 || o->via.str.size > IDEM_KEY_MAX) {
		return invalid(err, "idem must be a string of 1..255 bytes", "idem");
	}
	key->ptr = o->via.str.ptr;
	key->size = o->via.str.size;
	return PROTO_OK;
}

/* Two 64-bit lanes of multiply-xorshift over the method and the packed
 * params: a 128-bit fingerprint of the payload. */
struct digest {
	uint64_t a;
	uint64_t b;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static int digest_write(void *ctx, const char *buf, size_t len)
{
	struct digest *d = ctx;
	for (size_t i = 0; i < len; i++) {
		d->a = mix(d->a ^ (uint8_t)buf[i]);
		d->b = (d->b ^ (uint8_t)buf[i]) * 0x100000001b3ull;
	}
	return 0;
}

void proto_params_digest(const struct proto_params *params, const char *method, size_t method_size,
			 uint8_t out[16])
{
	struct digest d = { 0x9e3779b97f4a7c15ull, 0xcbf29ce484222325ull };
	digest_write(&d, method, method_size);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &d, digest_write);
	msgpack_pack_object(&pk, *(const msgpack_object *)params);
	d.b = mix(d.b);
	for (int i = 0; i < 8; i++) {
		out[i] = (uint8_t)(d.a >> (8 * i));
		out[8 + i] = (uint8_t)(d.b >> (8 * i));
	}
}

int proto_id_decode(const struct proto_params *params, struct proto_string *id, struct proto_error *err)
{
	const msgpack_object *o = proto_map_get((const msgpack_object *)params, "id");
	if (o == NULL || o->type != MSGPACK_OBJECT_STR || !core_id_valid(o->via.str.ptr, o->via.str.size)) {
		return invalid(err, "id must be a valid resident id", "id");
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
		return invalid(err, "must be an array", key);
	}
	if (o->via.array.size > PROTO_PERSONS_MAX) {
		return proto_error_set(err, PROTO_TOO_LARGE, "more than 100000 entries", "%s", key);
	}
	out->items = o;
	out->count = o->via.array.size;
	return PROTO_OK;
}

int proto_put_decode(const struct proto_params *params, struct proto_compute *out, struct proto_error *err)
{
	struct proto_list list;
	memset(out, 0, sizeof(*out));
	if (list_decode((const msgpack_object *)params, "persons", &list, err) != PROTO_OK) {
		return err->code;
	}
	out->selector = PROTO_SELECT_PERSONS;
	out->list = list.items;
	out->person_count = list.count;
	return PROTO_OK;
}

int proto_payment_decode(const struct proto_params *params, struct proto_list *items, struct proto_error *err)
{
	return list_decode((const msgpack_object *)params, "items", items, err);
}

int proto_payment_item(const struct proto_list *items, uint32_t i, struct proto_payment *out, struct proto_error *err)
{
	const msgpack_object *o = &((const msgpack_object *)items->items)->via.array.ptr[i];
	if (o->type != MSGPACK_OBJECT_MAP) {
		return proto_error_set(err, PROTO_INVALID_ARGUMENT, "item must be a map", "items[%u]", i);
	}
	const msgpack_object *id = proto_map_get(o, "id");
	int64_t amount;
	int type;
	const char *bad = NULL;
	if (id == NULL || id->type != MSGPACK_OBJECT_STR) {
		bad = "id";
	} else if (!proto_read_month(proto_map_get(o, "month"), &out->month)) {
		bad = "month";
	} else if (!proto_read_city(proto_map_get(o, "city"), &out->city)) {
		bad = "city";
	} else if ((type = proto_read_name(proto_map_get(o, "type"), core_type_names, CORE_TYPE_COUNT)) < 0) {
		bad = "type";
	} else if (!proto_read_int(proto_map_get(o, "amount"), 1, CORE_MONEY_MAX, &amount)) {
		bad = "amount";
	} else if (!proto_read_date(proto_map_get(o, "date"), &out->date)) {
		bad = "date";
	}
	if (bad != NULL) {
		return proto_error_set(err, PROTO_INVALID_ARGUMENT, "invalid payment field", "items[%u].%s", i, bad);
	}
	out->id.ptr = id->via.str.ptr;
	out->id.size = id->via.str.size;
	out->type = (uint8_t)type;
	out->amount_fen = amount;
	return PROTO_OK;
}

int proto_withhold_decode(const struct proto_params *params_, struct proto_withhold *out, struct proto_error *err)
{
	const msgpack_object *params = (const msgpack_object *)params_;
	if (!proto_read_month(proto_map_get(params, "month"), &out->month)) {
		return invalid(err, "month must be a YYYYMM month", "month");
	}
	if (!proto_read_date(proto_map_get(params, "date"), &out->date)) {
		return invalid(err, "date must be a valid YYYYMMDD date", "date");
	}
	if (out->month > core_as_of_make(out->date).month) {
		return invalid(err, "month is after the date's month", "month");
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
		return proto_error_set(err, PROTO_INVALID_ARGUMENT, "account must be a map", "accounts[%u]", i);
	}
	const msgpack_object *id_o = proto_map_get(o, "id");
	if (id_o == NULL || id_o->type != MSGPACK_OBJECT_STR) {
		return proto_error_set(err, PROTO_INVALID_ARGUMENT, "id must be a string", "accounts[%u].id", i);
	}
	id->ptr = id_o->via.str.ptr;
	id->size = id_o->via.str.size;
	if (!proto_read_int(proto_map_get(o, "balance"), 0, CORE_MONEY_MAX, balance_fen)) {
		return proto_error_set(err, PROTO_INVALID_ARGUMENT, "balance must be 0..10^10 fen",
				       "accounts[%u].balance", i);
	}
	return PROTO_OK;
}

uint32_t proto_params_list_size(const struct proto_params *params_, const char **list_name)
{
	const msgpack_object *params = (const msgpack_object *)params_;
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
	const msgpack_object *scan = proto_map_get((const msgpack_object *)params_, "scan");
	int64_t limit;
	if (scan != NULL && scan->type == MSGPACK_OBJECT_MAP &&
	    proto_read_int(proto_map_get(scan, "limit"), 1, UINT32_MAX, &limit) && (uint64_t)limit > weight) {
		weight = (uint32_t)limit;
	}
	return weight;
}

int proto_token_decode(const struct proto_params *params, struct proto_string *token, struct proto_error *err)
{
	const msgpack_object *o = proto_map_get((const msgpack_object *)params, "token");
	if (o == NULL || o->type != MSGPACK_OBJECT_STR) {
		return invalid(err, "token must be a string", "token");
	}
	token->ptr = o->via.str.ptr;
	token->size = o->via.str.size;
	return PROTO_OK;
}
