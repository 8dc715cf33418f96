/* Compute requests: request-level params, then inline persons one at a time
 * (SPEC §2.1, §3.1, Appendix A), first error wins in document order. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"


static int invalid(struct proto_error *err, const char *message, const char *at)
{
	return proto_error_set(err, PROTO_INVALID_ARGUMENT, message, "%s", at);
}

/* scan.after: a full id or a prefix of one, so that walkers can split a
 * city by prefix (SPEC §5.1): 1..18 characters, digits, the 18th may be X. */
static bool scan_after_valid(const char *s, size_t size)
{
	if (size == 0 || size > CORE_ID_SIZE) {
		return false;
	}
	for (size_t i = 0; i < size; i++) {
		if (!(s[i] >= '0' && s[i] <= '9') && !(i == CORE_ID_SIZE - 1 && s[i] == 'X')) {
			return false;
		}
	}
	return true;
}

static int decode_selector(const msgpack_object *params, struct proto_compute *out, struct proto_error *err)
{
	const msgpack_object *ids = proto_map_get(params, "ids");
	const msgpack_object *persons = proto_map_get(params, "persons");
	const msgpack_object *scan = proto_map_get(params, "scan");
	if ((ids != NULL) + (persons != NULL) + (scan != NULL) != 1) {
		return invalid(err, "exactly one of ids, persons, scan", "persons");
	}
	if (scan != NULL) {
		out->selector = PROTO_SELECT_SCAN;
		if (scan->type != MSGPACK_OBJECT_MAP) {
			return invalid(err, "scan must be a map", "scan");
		}
		const msgpack_object *after = proto_map_get(scan, "after");
		if (after != NULL) {
			if (after->type != MSGPACK_OBJECT_STR || !scan_after_valid(after->via.str.ptr, after->via.str.size)) {
				return invalid(err, "scan.after must be nil, an id or an id prefix (digits, the 18th may be X)",
					       "scan.after");
			}
			out->scan_after = after->via.str.ptr;
			out->scan_after_size = after->via.str.size;
		}
		int64_t limit;
		if (!proto_read_int(proto_map_get(scan, "limit"), 1, PROTO_PERSONS_MAX, &limit)) {
			return invalid(err, "scan.limit must be 1..100000", "scan.limit");
		}
		out->scan_limit = (uint32_t)limit;
		return PROTO_OK;
	}
	const msgpack_object *list = ids != NULL ? ids : persons;
	const char *name = ids != NULL ? "ids" : "persons";
	out->selector = ids != NULL ? PROTO_SELECT_IDS : PROTO_SELECT_PERSONS;
	if (list->type != MSGPACK_OBJECT_ARRAY) {
		return invalid(err, "must be an array", name);
	}
	if (list->via.array.size > PROTO_PERSONS_MAX) {
		return proto_error_set(err, PROTO_TOO_LARGE, "more than 100000 persons", "%s", name);
	}
	out->person_count = list->via.array.size;
	out->list = list;
	return PROTO_OK;
}

int proto_compute_decode(const struct proto_params *params_, uint8_t method, struct proto_compute *out,
			 struct proto_error *err)
{
	const msgpack_object *params = (const msgpack_object *)params_;
	memset(out, 0, sizeof(*out));
	out->method = method;
	out->elect_month = -1;
	int32_t date;
	if (!proto_read_date(proto_map_get(params, "as_of"), &date)) {
		return invalid(err, "as_of must be a valid YYYYMMDD date", "as_of");
	}
	out->as_of = core_as_of_make(date);
	if (decode_selector(params, out, err) != PROTO_OK) {
		return err->code;
	}
	const msgpack_object *o;
	switch (method) {
	case PROTO_ARREARS:
		o = proto_map_get(params, "detail");
		if (o != NULL && !proto_read_bool(o, &out->detail)) {
			return invalid(err, "detail must be a bool", "detail");
		}
		break;
	case PROTO_RETIREMENT:
		o = proto_map_get(params, "elect_month");
		if (o != NULL && !proto_read_month(o, &out->elect_month)) {
			return invalid(err, "elect_month must be a YYYYMM month", "elect_month");
		}
		break;
	case PROTO_HOUSING:
		return proto_city_decode(params_, "city", &out->city, err);
	default:
		break;
	}
	return PROTO_OK;
}

bool proto_compute_id(const struct proto_compute *req, uint32_t index, const char **id, size_t *id_size,
		      struct proto_error *err)
{
	const msgpack_object *o = &((const msgpack_object *)req->list)->via.array.ptr[index];
	if (o->type != MSGPACK_OBJECT_STR) {
		*id = NULL;
		*id_size = 0;
		proto_error_set(err, PROTO_INVALID_ARGUMENT, "id must be a string", "ids[%u]", index);
		return false;
	}
	*id = o->via.str.ptr;
	*id_size = o->via.str.size;
	if (!core_id_valid(*id, *id_size)) { /* Appendix A: checked at the lookup, like every stored id */
		proto_error_set(err, PROTO_INVALID_ARGUMENT, "not a valid resident id", "ids[%u]", index);
		return false;
	}
	return true;
}

void proto_person_buf_free(struct proto_person_buf *buf)
{
	free(buf->slots);
	free(buf->keys);
	memset(buf, 0, sizeof(*buf));
}

static bool person_buf_reserve(struct proto_person_buf *buf, uint32_t slot_count)
{
	if (slot_count > buf->slot_capacity) {
		struct core_slot *slots = realloc(buf->slots, sizeof(*slots) * slot_count);
		if (slots == NULL) {
			return false;
		}
		buf->slots = slots;
		buf->slot_capacity = slot_count;
	}
	uint32_t keys = 16;
	while (keys < 2 * slot_count) {
		keys *= 2;
	}
	if (keys > buf->key_capacity) {
		uint64_t *table = realloc(buf->keys, sizeof(*table) * keys);
		if (table == NULL) {
			return false;
		}
		buf->keys = table;
		buf->key_capacity = keys;
	}
	return true;
}

enum slot_field { F_MONTH, F_CITY, F_TYPE, F_CATEGORY, F_BASE, F_PAID, F_PAID_DATE, F_DEEMED, F_COUNT };
static const char *const slot_fields[F_COUNT] = { "month", "city",	"type",	     "category",
						  "base",  "paid", "paid_date", "deemed" };

/* One pass over the slot map: each known key's first value by field. */
static void slot_fields_find(const msgpack_object *map, const msgpack_object *field[F_COUNT])
{
	memset(field, 0, sizeof(*field) * F_COUNT);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type != MSGPACK_OBJECT_STR || kv->val.type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		int f = core_name_index(slot_fields, F_COUNT, kv->key.via.str.ptr, kv->key.via.str.size);
		if (f >= 0 && field[f] == NULL) {
			field[f] = &kv->val;
		}
	}
}

/* Checks slot fields in document order; returns the failing field or F_COUNT. */
static int slot_decode(const msgpack_object *map, struct core_slot *s)
{
	const msgpack_object *field[F_COUNT];
	slot_fields_find(map, field);
	int64_t v;
	int type;
	int category;
	memset(s, 0, sizeof(*s));
	if (!proto_read_month(field[F_MONTH], &s->month)) {
		return F_MONTH;
	}
	if (!proto_read_city(field[F_CITY], &s->city)) {
		return F_CITY;
	}
	if ((type = proto_read_name(field[F_TYPE], core_type_names, CORE_TYPE_COUNT)) < 0) {
		return F_TYPE;
	}
	s->type = (uint8_t)type;
	if ((category = proto_read_name(field[F_CATEGORY], core_category_names, CORE_CATEGORY_COUNT)) < 0) {
		return F_CATEGORY;
	}
	s->category = (uint8_t)category;
	if (!proto_read_int(field[F_BASE], 0, CORE_MONEY_MAX, &v)) {
		return F_BASE;
	}
	s->base_fen = v;
	if (!proto_read_int(field[F_PAID], 0, CORE_MONEY_MAX, &v)) {
		return F_PAID;
	}
	s->paid_fen = v;
	if (!proto_read_int(field[F_PAID_DATE], 0, 0, &v) && !proto_read_date(field[F_PAID_DATE], &s->paid_date)) {
		return F_PAID_DATE;
	}
	if (field[F_DEEMED] != NULL && !proto_read_bool(field[F_DEEMED], &s->deemed)) {
		return F_DEEMED;
	}
	switch (core_slot_rules(s)) {
	case CORE_RULE_PAID_DATE:
		return F_PAID_DATE;
	case CORE_RULE_DEEMED:
		return F_DEEMED;
	default:
		return F_COUNT;
	}
}

static int person_head(const msgpack_object *o, uint32_t index, struct proto_person *out, const char **id,
		       size_t *id_size, struct proto_error *err)
{
	if (o->type != MSGPACK_OBJECT_MAP) {
		return proto_error_set(err, PROTO_INVALID_ARGUMENT, "person must be a map", "persons[%u]", index);
	}
	const msgpack_object *id_o = proto_map_get(o, "id");
	if (id_o != NULL && id_o->type == MSGPACK_OBJECT_STR) {
		*id = id_o->via.str.ptr;
		*id_size = id_o->via.str.size;
	}
	if (*id == NULL || !core_id_valid(*id, *id_size)) {
		return proto_error_set(err, PROTO_INVALID_ARGUMENT, "invalid resident id", "persons[%u].id", index);
	}
	memcpy(out->id, *id, CORE_ID_SIZE);
	out->id[CORE_ID_SIZE] = '\0';
	out->class_ = core_id_default_class(out->id);
	out->class_given = false;
	const msgpack_object *class_o = proto_map_get(o, "retire_class");
	if (class_o != NULL) {
		int c = proto_read_name(class_o, core_class_names, CORE_CLASS_COUNT);
		if (c < 0) {
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "retire_class must be m60, f55 or f50",
					       "persons[%u].retire_class", index);
		}
		out->class_ = (uint8_t)c;
		out->class_given = true;
	}
	return PROTO_OK;
}

int proto_person_decode(const struct proto_compute *req, uint32_t index, struct proto_person_buf *buf,
			struct proto_person *out, const char **id, size_t *id_size, struct proto_error *err)
{
	const msgpack_object *o = &((const msgpack_object *)req->list)->via.array.ptr[index];
	*id = NULL;
	*id_size = 0;
	if (person_head(o, index, out, id, id_size, err) != PROTO_OK) {
		return err->code;
	}
	const msgpack_object *slots = proto_map_get(o, "slots");
	if (slots == NULL || slots->type != MSGPACK_OBJECT_ARRAY) {
		return proto_error_set(err, PROTO_INVALID_ARGUMENT, "slots must be an array", "persons[%u].slots", index);
	}
	uint32_t count = slots->via.array.size;
	if (count > PROTO_PERSON_SLOTS_MAX) {
		return proto_error_set(err, PROTO_TOO_LARGE, "too many slots", "persons[%u].slots", index);
	}
	if (!person_buf_reserve(buf, count)) {
		return proto_error_set(err, PROTO_INTERNAL, "out of memory", NULL);
	}
	struct core_slot_keys keys;
	core_slot_keys_init(&keys, buf->keys, buf->key_capacity);
	for (uint32_t j = 0; j < count; j++) {
		const msgpack_object *so = &slots->via.array.ptr[j];
		if (so->type != MSGPACK_OBJECT_MAP) {
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "slot must be a map", "persons[%u].slots[%u]",
					       index, j);
		}
		int bad = slot_decode(so, &buf->slots[j]);
		if (bad != F_COUNT) {
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "invalid slot field", "persons[%u].slots[%u].%s",
					       index, j, slot_fields[bad]);
		}
		if (!core_slot_keys_insert(&keys, &buf->slots[j])) {
			return proto_error_set(err, PROTO_INVALID_ARGUMENT, "duplicate (month, city, type)",
					       "persons[%u].slots[%u]", index, j);
		}
	}
	out->slot_count = count;
	out->slots = buf->slots;
	return PROTO_OK;
}
