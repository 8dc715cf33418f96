/* Compute requests: request-level params, then inline persons one at a time
 * (SPEC §2.1, §3.1, Appendix A), first error wins in document order. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpuck.h>

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

int proto_persons_list(const struct proto_params *params, struct proto_compute *out, struct proto_error *err)
{
	const msgpack_object *persons = proto_map_get(proto_params_map(params), "persons");
	out->selector = PROTO_SELECT_PERSONS;
	if (persons == NULL || persons->type != MSGPACK_OBJECT_ARRAY) {
		return proto_invalid(err, "persons", "an array", persons, "persons");
	}
	ASSERT(persons == params->persons); /* an array there stays bytes (message.c) */
	if (persons->via.array.size > PROTO_PERSONS_MAX) {
		return proto_too_many(err, "persons", PROTO_PERSONS_MAX, persons->via.array.size, "persons");
	}
	out->person_count = persons->via.array.size;
	out->list = params;
	out->next = 0;
	out->next_at = params->persons_bytes;
	return PROTO_OK;
}

static int decode_selector(const struct proto_params *params_, struct proto_compute *out, struct proto_error *err)
{
	const msgpack_object *params = proto_params_map(params_);
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
	if (persons != NULL) {
		return proto_persons_list(params_, out, err);
	}
	out->selector = PROTO_SELECT_IDS;
	if (ids->type != MSGPACK_OBJECT_ARRAY) {
		return proto_invalid(err, "ids", "an array", ids, "ids");
	}
	if (ids->via.array.size > PROTO_PERSONS_MAX) {
		return proto_too_many(err, "ids", PROTO_PERSONS_MAX, ids->via.array.size, "ids");
	}
	out->person_count = ids->via.array.size;
	out->list = ids;
	return PROTO_OK;
}

int proto_compute_decode(const struct proto_params *params_, uint8_t method, struct proto_compute *out,
			 struct proto_error *err)
{
	const msgpack_object *params = proto_params_map(params_);
	memset(out, 0, sizeof(*out));
	out->method = method;
	out->elect_month = -1;
	int32_t date;
	const msgpack_object *as_of = proto_map_get(params, "as_of");
	if (!proto_read_date(as_of, &date)) {
		return proto_invalid(err, "as_of", PROTO_EXPECT_DATE, as_of, "as_of");
	}
	out->as_of = core_as_of_make(date);
	if (decode_selector(params_, out, err) != PROTO_OK) {
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

/* Room for slot_count slots and their keys' table; *keys gets the table's
 * size for them (the smallest power of two twice as large, at least 16:
 * what is cleared, whatever an earlier person needed). */
static bool person_buf_reserve(struct proto_person_buf *buf, uint32_t slot_count, uint32_t *keys_size)
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
	*keys_size = keys;
	return true;
}

/* ---- inline persons, read in place from the frame's bytes ---- */

/* A string of any width at p (valid bytes): its bytes and size; false for anything else. */
static inline bool str_at(const uint8_t *p, const uint8_t **s, uint32_t *size)
{
	if ((*p & 0xe0) == 0xa0) { /* fixstr, what every encoder writes for short strings */
		*size = *p & 0x1fu;
		*s = p + 1;
		return true;
	}
	const char *c = (const char *)p;
	if (mp_typeof(*c) != MP_STR) {
		return false;
	}
	*s = (const uint8_t *)mp_decode_str(&c, size);
	return true;
}

/* An integer of any width other than fixint and uint32, by value. */
static bool int_other(const uint8_t *p, int64_t *v)
{
	const char *c = (const char *)p;
	if (mp_typeof(*c) == MP_UINT) {
		uint64_t u = mp_decode_uint(&c);
		*v = (int64_t)u;
		return u <= (uint64_t)INT64_MAX;
	}
	if (mp_typeof(*c) == MP_INT) {
		*v = mp_decode_int(&c);
		return true;
	}
	return false;
}

/* proto_read_int of the value at p (NULL: absent): an integer of any
 * width, by value; fixint and uint32 (months, dates, money) read inline. */
static inline bool int_at(const uint8_t *p, int64_t lo, int64_t hi, int64_t *v)
{
	if (p == NULL) {
		return false;
	}
	int64_t x;
	if (*p <= 0x7f) {
		x = *p;
	} else if (*p == 0xce) {
		x = (int64_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
	} else if (!int_other(p, &x)) {
		return false;
	}
	*v = x;
	return x >= lo && x <= hi;
}

/* A map's size and the bytes of its header, or false for anything else. */
static inline bool map_at(const uint8_t *p, uint32_t *size, size_t *head)
{
	if ((*p & 0xf0) == 0x80) {
		*size = *p & 0x0fu;
		*head = 1;
		return true;
	}
	const char *c = (const char *)p;
	if (mp_typeof(*c) != MP_MAP) {
		return false;
	}
	*size = mp_decode_map(&c);
	*head = (size_t)((const uint8_t *)c - p);
	return true;
}

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE uint32_t load4(const void *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static ALWAYS_INLINE uint64_t load8(const void *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* Whether the n bytes at s are lit's, n a constant 1..16: two word loads
 * that may overlap, no call (gcc calls memcmp for some sizes). */
static ALWAYS_INLINE bool same(const uint8_t *s, const char *lit, size_t n)
{
	if (n < 4) {
		return s[0] == (uint8_t)lit[0] && (n < 2 || s[1] == (uint8_t)lit[1]) &&
		       (n < 3 || s[2] == (uint8_t)lit[2]);
	}
	if (n <= 8) {
		return load4(s) == load4(lit) && load4(s + n - 4) == load4(lit + n - 4);
	}
	return load8(s) == load8(lit) && load8(s + n - 8) == load8(lit + n - 8);
}

/* The index of a name among core_*_names (a unit test holds the two
 * together), by size and first letter, then one compare of known size. */
#define NAME_IS(lit, index) (same(s, lit, sizeof(lit) - 1) ? (index) : -1)
static int type_index(const uint8_t *s, uint32_t size)
{
	switch (size) {
	case 7:
		return s[0] == 'p' ? NAME_IS("pension", CORE_PENSION) : NAME_IS("medical", CORE_MEDICAL);
	case 12:
		return NAME_IS("unemployment", CORE_UNEMPLOYMENT);
	case 6:
		return NAME_IS("injury", CORE_INJURY);
	case 9:
		return NAME_IS("maternity", CORE_MATERNITY);
	default:
		return -1;
	}
}

static int category_index(const uint8_t *s, uint32_t size)
{
	if (size != 8) {
		return -1;
	}
	return s[0] == 'e' ? NAME_IS("employee", CORE_EMPLOYEE) : NAME_IS("flexible", CORE_FLEXIBLE);
}

static int class_index(const uint8_t *s, uint32_t size)
{
	if (size != 3) {
		return -1;
	}
	return s[0] == 'm' ? NAME_IS("m60", CORE_CLASS_M60) : s[2] == '5' ? NAME_IS("f55", CORE_CLASS_F55)
									    : NAME_IS("f50", CORE_CLASS_F50);
}

/* proto_read_name of the value at p against one of the lookups above. */
static inline int name_at(const uint8_t *p, int (*lookup)(const uint8_t *, uint32_t))
{
	const uint8_t *s;
	uint32_t size;
	return p != NULL && str_at(p, &s, &size) ? lookup(s, size) : -1;
}

enum slot_field { F_MONTH, F_CITY, F_TYPE, F_CATEGORY, F_BASE, F_PAID, F_PAID_DATE, F_DEEMED, F_COUNT };
static const char *const slot_fields[F_COUNT] = { "month", "city",	"type",	     "category",
						  "base",  "paid", "paid_date", "deemed" };

static int slot_field(const uint8_t *s, uint32_t size)
{
	switch (size) {
	case 4:
		return s[0] == 'c' ? NAME_IS("city", F_CITY)
		       : s[0] == 't' ? NAME_IS("type", F_TYPE)
		       : s[0] == 'b' ? NAME_IS("base", F_BASE)
				     : NAME_IS("paid", F_PAID);
	case 5:
		return NAME_IS("month", F_MONTH);
	case 6:
		return NAME_IS("deemed", F_DEEMED);
	case 8:
		return NAME_IS("category", F_CATEGORY);
	case 9:
		return NAME_IS("paid_date", F_PAID_DATE);
	default:
		return -1;
	}
}

/* The field of a key written as encoders write it, a fixstr: its header
 * and first three letters read as one word, then the rest; -1 for anything
 * else (another field, another form: slot_field then decides). */
#define WORD(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
static inline int slot_key(const uint8_t *p)
{
	switch (WORD(p[0], p[1], p[2], p[3])) {
	case WORD(0xa5, 'm', 'o', 'n'):
		return p[4] == 't' && p[5] == 'h' ? F_MONTH : -1;
	case WORD(0xa4, 'c', 'i', 't'):
		return p[4] == 'y' ? F_CITY : -1;
	case WORD(0xa4, 't', 'y', 'p'):
		return p[4] == 'e' ? F_TYPE : -1;
	case WORD(0xa8, 'c', 'a', 't'):
		return same(p + 4, "egory", 5) ? F_CATEGORY : -1;
	case WORD(0xa4, 'b', 'a', 's'):
		return p[4] == 'e' ? F_BASE : -1;
	case WORD(0xa4, 'p', 'a', 'i'):
		return p[4] == 'd' ? F_PAID : -1;
	case WORD(0xa9, 'p', 'a', 'i'):
		return same(p + 4, "d_date", 6) ? F_PAID_DATE : -1;
	case WORD(0xa6, 'd', 'e', 'e'):
		return same(p + 4, "med", 3) ? F_DEEMED : -1;
	default:
		return -1;
	}
}

/* One pass over a slot map's n entries from p (the persons end at end):
 * each known key's first non-nil value by field (NULL: none). Returns the
 * map's end. */
static const uint8_t *slot_fields_find(const uint8_t *p, const uint8_t *end, uint32_t n,
				       const uint8_t *field[F_COUNT])
{
	memset(field, 0, sizeof(*field) * F_COUNT);
	for (uint32_t i = 0; i < n; i++) {
		/* A key and its value take 2 bytes at least: the word may pass the value only inside the persons. */
		int f = end - p >= 4 ? slot_key(p) : -1;
		const uint8_t *value;
		if (f >= 0) {
			value = p + 1 + (*p & 0x1fu);
		} else {
			const uint8_t *key = NULL;
			uint32_t key_size = 0;
			bool named = str_at(p, &key, &key_size);
			value = named ? key + key_size : proto_msgpack_next(p);
			f = named ? slot_field(key, key_size) : -1;
		}
		p = proto_msgpack_next(value);
		if (f >= 0 && field[f] == NULL && *value != 0xc0) {
			field[f] = value;
		}
	}
	return p;
}

/* proto_read_city of the value at p. A person's slots name few cities:
 * the last one read is compared before digits are parsed again. */
struct city_memo {
	uint8_t text[6];
	uint32_t value;
	bool set;
};

static ALWAYS_INLINE bool city_at(const uint8_t *p, struct city_memo *memo, uint32_t *city)
{
	const uint8_t *s;
	uint32_t size;
	if (p == NULL || !str_at(p, &s, &size) || size != 6) {
		return false;
	}
	if (memo->set && same(s, (const char *)memo->text, 6)) {
		*city = memo->value;
		return true;
	}
	uint32_t v = 0;
	for (uint32_t i = 0; i < 6; i++) {
		uint32_t digit = (uint32_t)s[i] - '0';
		if (digit > 9) {
			return false;
		}
		v = v * 10 + digit;
	}
	memcpy(memo->text, s, 6);
	memo->value = v;
	memo->set = true;
	*city = v;
	return true;
}

/* u / 100 by a multiplication, exact for every 32-bit u: gcc placed the
 * date checks in blocks it optimizes for size and divided there (two divs a
 * slot, a quarter of the decode's time). */
static inline uint32_t div100(uint32_t u)
{
	return (uint32_t)(((uint64_t)u * 1374389535u) >> 37);
}

/* A YYYYMMDD whose day is 1..28 of a month 1..12 is a date whatever the
 * year, and needs no calendar. */
static inline bool date_in_any_year(uint32_t v)
{
	uint32_t month = div100(v);
	uint32_t dd = v - 100 * month;
	uint32_t mm = month - 100 * div100(month);
	return dd >= 1 && dd <= 28 && mm >= 1 && mm <= 12;
}

/* proto_read_date of the value at p. */
static inline bool date_at(const uint8_t *p, int32_t *date)
{
	int64_t v;
	if (!int_at(p, 19000101, 21001231, &v)) {
		return false;
	}
	if (!date_in_any_year((uint32_t)v) && !core_date_valid(v)) {
		return false;
	}
	*date = (int32_t)v;
	return true;
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
static int slot_decode(const uint8_t *const field[F_COUNT], struct city_memo *cities, struct core_slot *s)
{
	int64_t v;
	int type;
	int category;
	memset(s, 0, sizeof(*s));
	if (!int_at(field[F_MONTH], 195001, 209912, &v) || !core_month_parse(v, &s->month)) {
		return F_MONTH;
	}
	if (!city_at(field[F_CITY], cities, &s->city)) {
		return F_CITY;
	}
	if ((type = name_at(field[F_TYPE], type_index)) < 0) {
		return F_TYPE;
	}
	s->type = (uint8_t)type;
	if ((category = name_at(field[F_CATEGORY], category_index)) < 0) {
		return F_CATEGORY;
	}
	s->category = (uint8_t)category;
	if (!int_at(field[F_BASE], 0, CORE_MONEY_MAX, &v)) {
		return F_BASE;
	}
	s->base_fen = v;
	if (!int_at(field[F_PAID], 0, CORE_MONEY_MAX, &v)) {
		return F_PAID;
	}
	s->paid_fen = v;
	if (!int_at(field[F_PAID_DATE], 0, 0, &v) && !date_at(field[F_PAID_DATE], &s->paid_date)) {
		return F_PAID_DATE;
	}
	if (field[F_DEEMED] != NULL) {
		if (*field[F_DEEMED] != 0xc2 && *field[F_DEEMED] != 0xc3) {
			return F_DEEMED;
		}
		s->deemed = *field[F_DEEMED] == 0xc3;
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

enum { SLOT_REQUIRED = (1u << F_COUNT) - 1 - (1u << F_DEEMED), SLOT_ALL = (1u << F_COUNT) - 1 };

/* The one-pass readers below take only the forms encoders write (fixint
 * and uint8..32, fixstr) and return the end of the value, its size known
 * in the branch that read it: the next key's address does not wait for a
 * load of this value's bytes. NULL: another form or a value that fails;
 * the ordered path then decides. */
static ALWAYS_INLINE const uint8_t *int_fast(const uint8_t *p, int64_t lo, int64_t hi, int64_t *v)
{
	int64_t x;
	const uint8_t *next;
	if (*p <= 0x7f) {
		x = *p;
		next = p + 1;
	} else if (*p == 0xce) {
		x = (int64_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
		next = p + 5;
	} else if (*p == 0xcd) {
		x = (int64_t)((uint32_t)p[1] << 8 | p[2]);
		next = p + 3;
	} else if (*p == 0xcc) {
		x = p[1];
		next = p + 2;
	} else {
		return NULL;
	}
	if (x < lo || x > hi) {
		return NULL;
	}
	*v = x;
	return next;
}

/* type_index of a fixstr at p. */
static ALWAYS_INLINE const uint8_t *type_fast(const uint8_t *p, uint8_t *type)
{
	const uint8_t *s = p + 1;
	int t;
	switch (*p) {
	case 0xa7:
		t = s[0] == 'p' ? NAME_IS("pension", CORE_PENSION) : NAME_IS("medical", CORE_MEDICAL);
		break;
	case 0xac:
		t = NAME_IS("unemployment", CORE_UNEMPLOYMENT);
		break;
	case 0xa6:
		t = NAME_IS("injury", CORE_INJURY);
		break;
	case 0xa9:
		t = NAME_IS("maternity", CORE_MATERNITY);
		break;
	default:
		return NULL;
	}
	*type = (uint8_t)t;
	return t < 0 ? NULL : s + (*p & 0x1fu);
}

/* The fields' readers for the one pass: p at a key whose header and first
 * three letters matched (the frame is valid: the key's bytes and a value
 * follow); the rest of the key checked, the value read into s. The end of
 * the value, or NULL. */
static ALWAYS_INLINE const uint8_t *month_fast(const uint8_t *p, struct core_slot *s)
{
	int64_t v;
	if (p[4] != 't' || p[5] != 'h' || (p = int_fast(p + 6, 195001, 209912, &v)) == NULL ||
	    !core_month_parse(v, &s->month)) {
		return NULL;
	}
	return p;
}

static ALWAYS_INLINE const uint8_t *city_fast(const uint8_t *p, struct city_memo *cities, struct core_slot *s)
{
	return p[4] == 'y' && p[5] == 0xa6 && city_at(p + 5, cities, &s->city) ? p + 12 : NULL;
}

static ALWAYS_INLINE const uint8_t *type_key_fast(const uint8_t *p, struct core_slot *s)
{
	return p[4] == 'e' ? type_fast(p + 5, &s->type) : NULL;
}

static ALWAYS_INLINE const uint8_t *base_fast(const uint8_t *p, struct core_slot *s)
{
	return p[4] == 'e' ? int_fast(p + 5, 0, CORE_MONEY_MAX, &s->base_fen) : NULL;
}

static ALWAYS_INLINE const uint8_t *paid_fast(const uint8_t *p, struct core_slot *s)
{
	return p[4] == 'd' ? int_fast(p + 5, 0, CORE_MONEY_MAX, &s->paid_fen) : NULL;
}

static ALWAYS_INLINE const uint8_t *category_fast(const uint8_t *p, struct core_slot *s)
{
	const uint8_t *c = p + 10; /* the value's letters */
	if (!same(p + 4, "egory", 5) || p[9] != 0xa8) {
		return NULL;
	}
	if (same(c, "employee", 8)) {
		s->category = CORE_EMPLOYEE;
	} else if (same(c, "flexible", 8)) {
		s->category = CORE_FLEXIBLE;
	} else {
		return NULL;
	}
	return p + 18;
}

static ALWAYS_INLINE const uint8_t *paid_date_fast(const uint8_t *p, struct core_slot *s)
{
	int64_t v;
	if (!same(p + 4, "d_date", 6) || (p = int_fast(p + 10, 0, 21001231, &v)) == NULL) {
		return NULL;
	}
	if (v != 0 && (v < 19000101 || (!date_in_any_year((uint32_t)v) && !core_date_valid(v)))) {
		return NULL;
	}
	s->paid_date = (int32_t)v;
	return p;
}

static ALWAYS_INLINE const uint8_t *deemed_fast(const uint8_t *p, struct core_slot *s)
{
	if (!same(p + 4, "med", 3) || (p[7] != 0xc2 && p[7] != 0xc3)) {
		return NULL;
	}
	s->deemed = p[7] == 0xc3;
	return p + 8;
}

enum {
	K_MONTH = WORD(0xa5, 'm', 'o', 'n'),
	K_CITY = WORD(0xa4, 'c', 'i', 't'),
	K_TYPE = WORD(0xa4, 't', 'y', 'p'),
	K_CATEGORY = WORD(0xa8, 'c', 'a', 't'),
	K_BASE = WORD(0xa4, 'b', 'a', 's'),
	K_PAID = WORD(0xa4, 'p', 'a', 'i'),
	K_PAID_DATE = WORD(0xa9, 'p', 'a', 'i'),
	K_DEEMED = WORD(0xa6, 'd', 'e', 'e'),
};
/* A slot in the one pass has 7 or 8 entries of at most 18 bytes each (a
 * key and its value: category, type): its reads stay in these bytes. */
#define SLOT_FAST_BYTES (F_COUNT * 18 + 4)

/* slot_fast's keys in SPEC order, in a straight line: the end, or NULL. */
static ALWAYS_INLINE const uint8_t *slot_in_order(const uint8_t *q, uint32_t n, struct city_memo *cities,
						  struct core_slot *s)
{
	bool whole = WORD(q[0], q[1], q[2], q[3]) == K_MONTH && (q = month_fast(q, s)) != NULL &&
		     WORD(q[0], q[1], q[2], q[3]) == K_CITY && (q = city_fast(q, cities, s)) != NULL &&
		     WORD(q[0], q[1], q[2], q[3]) == K_TYPE && (q = type_key_fast(q, s)) != NULL &&
		     WORD(q[0], q[1], q[2], q[3]) == K_CATEGORY && (q = category_fast(q, s)) != NULL &&
		     WORD(q[0], q[1], q[2], q[3]) == K_BASE && (q = base_fast(q, s)) != NULL &&
		     WORD(q[0], q[1], q[2], q[3]) == K_PAID && (q = paid_fast(q, s)) != NULL &&
		     WORD(q[0], q[1], q[2], q[3]) == K_PAID_DATE && (q = paid_date_fast(q, s)) != NULL &&
		     (n == F_COUNT - 1 ||
		      (WORD(q[0], q[1], q[2], q[3]) == K_DEEMED && (q = deemed_fast(q, s)) != NULL));
	return whole ? q : NULL;
}

/* slot_fast's keys in another order, key by key: the end, or NULL. */
static ALWAYS_INLINE const uint8_t *slot_any_order(const uint8_t *p, uint32_t n, struct city_memo *cities,
						   struct core_slot *s)
{
	uint32_t seen = 0;
	for (uint32_t i = 0; i < n && p != NULL; i++) {
		switch (WORD(p[0], p[1], p[2], p[3])) {
		case K_MONTH:
			p = month_fast(p, s);
			seen |= 1u << F_MONTH;
			break;
		case K_CITY:
			p = city_fast(p, cities, s);
			seen |= 1u << F_CITY;
			break;
		case K_TYPE:
			p = type_key_fast(p, s);
			seen |= 1u << F_TYPE;
			break;
		case K_CATEGORY:
			p = category_fast(p, s);
			seen |= 1u << F_CATEGORY;
			break;
		case K_BASE:
			p = base_fast(p, s);
			seen |= 1u << F_BASE;
			break;
		case K_PAID:
			p = paid_fast(p, s);
			seen |= 1u << F_PAID;
			break;
		case K_PAID_DATE:
			p = paid_date_fast(p, s);
			seen |= 1u << F_PAID_DATE;
			break;
		case K_DEEMED:
			p = deemed_fast(p, s);
			seen |= 1u << F_DEEMED;
			break;
		default:
			return NULL;
		}
	}
	/* n keys, each a field: n bits set when none came twice. */
	if (p == NULL || !((seen == SLOT_REQUIRED && n == F_COUNT - 1) || (seen == SLOT_ALL && n == F_COUNT)) ||
	    core_slot_rules(s) != CORE_RULE_OK) {
		return NULL;
	}
	return p;
}

/* A slot map's n entries from p decoded in one pass, each value as its key
 * is found: when every key is a field in its fixstr form, once, and every
 * value is in a form above and holds, with the rules, it is exactly what
 * slot_fields_find and slot_decode give, and returns the map's end. NULL
 * for anything else (an error, a key repeated or unknown, a nil, another
 * form, a slot near the end of the persons): the caller then takes the
 * ordered path, which says what is wrong. The keys in SPEC order, as
 * encoders write them slot after slot, are read in a straight line. */
static inline const uint8_t *slot_fast(const uint8_t *p, const uint8_t *end, uint32_t n, struct city_memo *cities,
				       struct core_slot *s)
{
	if ((n != F_COUNT - 1 && n != F_COUNT) || end - p < SLOT_FAST_BYTES) {
		return NULL;
	}
	memset(s, 0, sizeof(*s));
	const uint8_t *q = slot_in_order(p, n, cities, s);
	if (q != NULL) {
		return core_slot_rules(s) == CORE_RULE_OK ? q : NULL;
	}
	memset(s, 0, sizeof(*s));
	return slot_any_order(p, n, cities, s);
}


/* The value at p (NULL: nothing) as the found part of a message wants it. */
static const msgpack_object *found_at(const uint8_t *p, msgpack_object *o)
{
	if (p == NULL) {
		return NULL;
	}
	proto_msgpack_shallow(p, o);
	return o;
}

/* The message of a slot that slot_decode rejected (bad), at persons[index].slots[j]. */
static int slot_invalid(const uint8_t *const field[F_COUNT], const struct core_slot *s, int bad, uint32_t index,
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
	msgpack_object o;
	return (echo ? proto_invalid_echo : proto_invalid)(err, slot_fields[bad], slot_expected[bad],
							   found_at(field[bad], &o), "persons[%u].slots[%u].%s",
							   index, j, slot_fields[bad]);
}

/* A person map's first value of each of its keys (NULL: absent or nil, as
 * proto_map_get reads them), and its end: NULL when slots is its last
 * value, whose reading finds the end without a walk of its own. */
struct person_fields {
	const uint8_t *id;
	const uint8_t *class_;
	const uint8_t *slots;
	const uint8_t *end;
};

static void person_fields_find(const uint8_t *p, uint32_t n, struct person_fields *f)
{
	bool seen[3] = { false, false, false };
	const uint8_t **value_of[3] = { &f->id, &f->class_, &f->slots };
	memset(f, 0, sizeof(*f));
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *key = NULL;
		uint32_t key_size = 0;
		bool named = str_at(p, &key, &key_size);
		const uint8_t *value = named ? key + key_size : proto_msgpack_next(p);
		int k = !named			  ? -1
			: key_size == 2		  ? (memcmp(key, "id", 2) == 0 ? 0 : -1)
			: key_size == 12	  ? (memcmp(key, "retire_class", 12) == 0 ? 1 : -1)
			: key_size == 5		  ? (memcmp(key, "slots", 5) == 0 ? 2 : -1)
						  : -1;
		if (k >= 0 && !seen[k]) {
			seen[k] = true;
			*value_of[k] = *value == 0xc0 ? NULL : value;
		}
		if (i + 1 == n && value == f->slots) {
			return;
		}
		p = proto_msgpack_next(value);
	}
	f->end = p;
}

static int person_head(const struct person_fields *f, uint32_t index, struct proto_person *out, const char **id,
		       size_t *id_size, struct proto_error *err)
{
	msgpack_object o;
	const msgpack_object *id_o = found_at(f->id, &o);
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
	if (f->class_ != NULL) {
		int c = name_at(f->class_, class_index);
		if (c < 0) {
			return proto_invalid_echo(err, "retire_class", "one of m60, f55, f50", found_at(f->class_, &o),
						  "persons[%u].retire_class", index);
		}
		out->class_ = (uint8_t)c;
		out->class_given = true;
	}
	return PROTO_OK;
}

/* Where persons[index] begins: from the last one decoded when going forward. */
static const uint8_t *person_at(struct proto_compute *req, uint32_t index)
{
	ASSERT(req->selector == PROTO_SELECT_PERSONS && index < req->person_count);
	if (index < req->next) {
		req->next = 0;
		req->next_at = ((const struct proto_params *)req->list)->persons_bytes;
	}
	while (req->next < index) {
		req->next_at = proto_msgpack_next(req->next_at);
		req->next++;
	}
	return req->next_at;
}

/* The slots array at p of persons[index] into buf; *slots_end gets its
 * end. The persons' bytes end at end. */
static int slots_decode(const uint8_t *p, const uint8_t *end, uint32_t index, struct proto_person_buf *buf,
			uint32_t *count, const uint8_t **slots_end, struct proto_error *err)
{
	msgpack_object o;
	if (p == NULL || mp_typeof(*(const char *)p) != MP_ARRAY) {
		return proto_invalid(err, "slots", "an array", found_at(p, &o), "persons[%u].slots", index);
	}
	const char *c = (const char *)p;
	*count = mp_decode_array(&c);
	p = (const uint8_t *)c;
	if (*count > PROTO_PERSON_SLOTS_MAX) {
		return proto_too_many(err, "slots", PROTO_PERSON_SLOTS_MAX, *count, "persons[%u].slots", index);
	}
	uint32_t keys_size;
	if (!person_buf_reserve(buf, *count, &keys_size)) {
		return proto_error_set(err, PROTO_INTERNAL, "out of memory", NULL);
	}
	struct core_slot_keys keys;
	core_slot_keys_init(&keys, buf->keys, keys_size);
	struct city_memo cities = { .set = false };
	for (uint32_t j = 0; j < *count; j++) {
		uint32_t n;
		size_t head;
		if (!map_at(p, &n, &head)) {
			return proto_invalid(err, "slot", "a map", found_at(p, &o), "persons[%u].slots[%u]", index, j);
		}
		struct core_slot *s = &buf->slots[j];
		const uint8_t *next = slot_fast(p + head, end, n, &cities, s);
		if (next == NULL) {
			const uint8_t *field[F_COUNT];
			next = slot_fields_find(p + head, end, n, field);
			int bad = slot_decode(field, &cities, s);
			if (bad != F_COUNT) {
				return slot_invalid(field, s, bad, index, j, err);
			}
		}
		p = next;
		if (!core_slot_keys_insert(&keys, s)) {
			char found[64];
			snprintf(found, sizeof(found), "%" PRId32 ", %06" PRIu32 ", %s again", core_month_yyyymm(s->month),
				 s->city, core_type_names[s->type]);
			return proto_invalid_text(err, "slot", "a (month, city, type) of its own", found,
						  "persons[%u].slots[%u]", index, j);
		}
	}
	*slots_end = p;
	return PROTO_OK;
}

int proto_person_decode(struct proto_compute *req, uint32_t index, struct proto_person_buf *buf,
			struct proto_person *out, const char **id, size_t *id_size, struct proto_error *err)
{
	const uint8_t *p = person_at(req, index);
	msgpack_object o;
	uint32_t n;
	size_t head;
	*id = NULL;
	*id_size = 0;
	if (!map_at(p, &n, &head)) {
		return proto_invalid(err, "person", "a map {id, retire_class, slots}", found_at(p, &o), "persons[%u]",
				     index);
	}
	struct person_fields f;
	person_fields_find(p + head, n, &f);
	if (person_head(&f, index, out, id, id_size, err) != PROTO_OK) {
		return err->code;
	}
	const uint8_t *slots_end = NULL;
	const uint8_t *end = ((const struct proto_params *)req->list)->persons_end;
	if (slots_decode(f.slots, end, index, buf, &out->slot_count, &slots_end, err) != PROTO_OK) {
		return err->code;
	}
	out->slots = buf->slots;
	req->next = index + 1; /* the next person begins where this one ends */
	req->next_at = f.end != NULL ? f.end : slots_end;
	return PROTO_OK;
}
