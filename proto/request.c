/* Compute requests: request-level params, then inline persons one at a time
 * (SPEC §2.1, §3.1, Appendix A), first error wins in document order. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SCAN_AFTER_EXPECTED "nil or an id prefix: 1..18 digits, the 18th may be X"

/* scan.after: a full id or a prefix of one, so that walkers can split a
 * city by prefix (SPEC §5.1): 1..18 characters, digits, the 18th may be X.
 * PROTO_OK, or invalid_argument saying what is wrong without echoing it. */
static int scan_after_check(const msgpack_object *after, struct proto_error *err)
{
	if (after->type != MSGPACK_OBJECT_STR) {
		return proto_invalid(err, "scan.after", SCAN_AFTER_EXPECTED, after, "scan.after");
	}
	const char *s = after->via.str.ptr;
	size_t size = after->via.str.size;
	char text[64];
	if (size == 0 || size > CORE_ID_SIZE) {
		return proto_invalid_text(err, "scan.after", SCAN_AFTER_EXPECTED,
					  proto_id_fault_describe(s, size, CORE_ID_LENGTH, 0, text, sizeof(text)),
					  "scan.after");
	}
	for (size_t i = 0; i < size; i++) {
		if (!(s[i] >= '0' && s[i] <= '9') && !(i == CORE_ID_SIZE - 1 && s[i] == 'X')) {
			int fault = i == CORE_ID_SIZE - 1 ? CORE_ID_CHECK_CHAR : CORE_ID_NOT_DIGIT;
			return proto_invalid_text(err, "scan.after", SCAN_AFTER_EXPECTED,
						  proto_id_fault_describe(s, size, fault, (uint32_t)i + 1, text,
									  sizeof(text)),
						  "scan.after");
		}
	}
	return PROTO_OK;
}

/* Which of ids, persons, scan a request names: "none of them", "ids and scan", ... */
static const char *selector_found(bool ids, bool persons, bool scan)
{
	static const char *const found[8] = {
		"none of them", "scan",		  "persons",	     "persons and scan",
		"ids",		"ids and scan",	  "ids and persons", "ids, persons and scan",
	};
	return found[ids << 2 | persons << 1 | scan];
}

static int decode_selector(const msgpack_object *params, struct proto_compute *out, struct proto_error *err)
{
	const msgpack_object *ids = proto_map_get(params, "ids");
	const msgpack_object *persons = proto_map_get(params, "persons");
	const msgpack_object *scan = proto_map_get(params, "scan");
	if ((ids != NULL) + (persons != NULL) + (scan != NULL) != 1) {
		return proto_invalid_text(err, "params", "a map with exactly one of ids, persons, scan",
					  selector_found(ids != NULL, persons != NULL, scan != NULL), "persons");
	}
	if (scan != NULL) {
		out->selector = PROTO_SELECT_SCAN;
		if (scan->type != MSGPACK_OBJECT_MAP) {
			return proto_invalid(err, "scan", "a map {after, limit}", scan, "scan");
		}
		const msgpack_object *after = proto_map_get(scan, "after");
		if (after != NULL) {
			if (scan_after_check(after, err) != PROTO_OK) {
				return err->code;
			}
			out->scan_after = after->via.str.ptr;
			out->scan_after_size = after->via.str.size;
		}
		int64_t limit;
		const msgpack_object *limit_o = proto_map_get(scan, "limit");
		if (!proto_read_int(limit_o, 1, PROTO_PERSONS_MAX, &limit)) {
			return proto_invalid(err, "scan.limit", "an integer 1..100000", limit_o, "scan.limit");
		}
		out->scan_limit = (uint32_t)limit;
		return PROTO_OK;
	}
	const msgpack_object *list = ids != NULL ? ids : persons;
	const char *name = ids != NULL ? "ids" : "persons";
	out->selector = ids != NULL ? PROTO_SELECT_IDS : PROTO_SELECT_PERSONS;
	if (list->type != MSGPACK_OBJECT_ARRAY) {
		return proto_invalid(err, name, "an array", list, "%s", name);
	}
	if (list->via.array.size > PROTO_PERSONS_MAX) {
		return proto_too_many(err, name, PROTO_PERSONS_MAX, list->via.array.size, "%s", name);
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
	const msgpack_object *as_of = proto_map_get(params, "as_of");
	if (!proto_read_date(as_of, &date)) {
		return proto_invalid(err, "as_of", PROTO_EXPECT_DATE, as_of, "as_of");
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
			return proto_invalid(err, "detail", PROTO_EXPECT_BOOL, o, "detail");
		}
		break;
	case PROTO_RETIREMENT:
		o = proto_map_get(params, "elect_month");
		if (o != NULL && !proto_read_month(o, &out->elect_month)) {
			return proto_invalid(err, "elect_month", PROTO_EXPECT_MONTH, o, "elect_month");
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
	bool is_string = o->type == MSGPACK_OBJECT_STR;
	*id = is_string ? o->via.str.ptr : NULL;
	*id_size = is_string ? o->via.str.size : 0;
	/* Appendix A: checked at the lookup, like every stored id */
	return proto_id_check_object(o, err, "ids[%u]", index) == PROTO_OK;
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

/* What each slot field must be (SPEC §2, §2.1); the names' are echoed. */
static const char *const slot_expected[F_COUNT] = {
	PROTO_EXPECT_MONTH,    PROTO_EXPECT_CITY,  PROTO_EXPECT_TYPE,
	PROTO_EXPECT_CATEGORY, PROTO_EXPECT_MONEY, PROTO_EXPECT_MONEY,
	PROTO_EXPECT_DATE_OR_0, PROTO_EXPECT_BOOL,
};
enum { RULE_PAID_DATE = F_COUNT + 1, RULE_DEEMED };

/* Checks slot fields in document order; returns the failing field, a
 * RULE_*, or F_COUNT. */
static int slot_decode(const msgpack_object *field[F_COUNT], struct core_slot *s)
{
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
		return RULE_PAID_DATE;
	case CORE_RULE_DEEMED:
		return RULE_DEEMED;
	default:
		return F_COUNT;
	}
}

/* The message of a slot that slot_decode rejected (bad), at persons[index].slots[j]. */
static int slot_invalid(const msgpack_object *field[F_COUNT], const struct core_slot *s, int bad, uint32_t index,
			uint32_t j, struct proto_error *err)
{
	char found[32];
	if (bad == RULE_PAID_DATE && s->paid_fen == 0) {
		snprintf(found, sizeof(found), "%" PRId32, s->paid_date);
		return proto_invalid_text(err, "paid_date", "0 when paid is 0", found, "persons[%u].slots[%u].paid_date",
					  index, j);
	}
	if (bad == RULE_PAID_DATE) {
		return proto_invalid_text(err, "paid_date", "a date when paid is over 0", "0",
					  "persons[%u].slots[%u].paid_date", index, j);
	}
	if (bad == RULE_DEEMED) {
		return proto_invalid_text(err, "deemed", "false unless base, paid and paid_date are 0", "true",
					  "persons[%u].slots[%u].deemed", index, j);
	}
	bool echo = bad == F_CITY || bad == F_TYPE || bad == F_CATEGORY;
	return (echo ? proto_invalid_echo : proto_invalid)(err, slot_fields[bad], slot_expected[bad], field[bad],
							   "persons[%u].slots[%u].%s", index, j, slot_fields[bad]);
}

static int person_head(const msgpack_object *o, uint32_t index, struct proto_person *out, const char **id,
		       size_t *id_size, struct proto_error *err)
{
	if (o->type != MSGPACK_OBJECT_MAP) {
		return proto_invalid(err, "person", "a map {id, retire_class, slots}", o, "persons[%u]", index);
	}
	const msgpack_object *id_o = proto_map_get(o, "id");
	if (id_o != NULL && id_o->type == MSGPACK_OBJECT_STR) {
		*id = id_o->via.str.ptr;
		*id_size = id_o->via.str.size;
	}
	if (proto_id_check_object(id_o, err, "persons[%u].id", index) != PROTO_OK) {
		return err->code;
	}
	memcpy(out->id, *id, CORE_ID_SIZE);
	out->id[CORE_ID_SIZE] = '\0';
	out->class_ = core_id_default_class(out->id);
	out->class_given = false;
	const msgpack_object *class_o = proto_map_get(o, "retire_class");
	if (class_o != NULL) {
		int c = proto_read_name(class_o, core_class_names, CORE_CLASS_COUNT);
		if (c < 0) {
			return proto_invalid_echo(err, "retire_class", "one of m60, f55, f50", class_o,
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
		return proto_invalid(err, "slots", "an array", slots, "persons[%u].slots", index);
	}
	uint32_t count = slots->via.array.size;
	if (count > PROTO_PERSON_SLOTS_MAX) {
		return proto_too_many(err, "slots", PROTO_PERSON_SLOTS_MAX, count, "persons[%u].slots", index);
	}
	if (!person_buf_reserve(buf, count)) {
		return proto_error_set(err, PROTO_INTERNAL, "out of memory", NULL);
	}
	struct core_slot_keys keys;
	core_slot_keys_init(&keys, buf->keys, buf->key_capacity);
	for (uint32_t j = 0; j < count; j++) {
		const msgpack_object *so = &slots->via.array.ptr[j];
		if (so->type != MSGPACK_OBJECT_MAP) {
			return proto_invalid(err, "slot", "a map", so, "persons[%u].slots[%u]", index, j);
		}
		const msgpack_object *field[F_COUNT];
		slot_fields_find(so, field);
		int bad = slot_decode(field, &buf->slots[j]);
		if (bad != F_COUNT) {
			return slot_invalid(field, &buf->slots[j], bad, index, j, err);
		}
		if (!core_slot_keys_insert(&keys, &buf->slots[j])) {
			const struct core_slot *s = &buf->slots[j];
			char found[64];
			snprintf(found, sizeof(found), "%" PRId32 ", %06" PRIu32 ", %s again", core_month_yyyymm(s->month),
				 s->city, core_type_names[s->type]);
			return proto_invalid_text(err, "slot", "a (month, city, type) of its own", found,
						  "persons[%u].slots[%u]", index, j);
		}
	}
	out->slot_count = count;
	out->slots = buf->slots;
	return PROTO_OK;
}
