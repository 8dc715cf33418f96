/* The msgpack-RPC envelope and the small readers every decoder uses. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const error_names[] = {
	[PROTO_OK] = "ok",
	[PROTO_MALFORMED] = "malformed",
	[PROTO_UNKNOWN_METHOD] = "unknown_method",
	[PROTO_INVALID_ARGUMENT] = "invalid_argument",
	[PROTO_NOT_FOUND] = "not_found",
	[PROTO_CONFLICT] = "conflict",
	[PROTO_TOO_LARGE] = "too_large",
	[PROTO_OVERLOADED] = "overloaded",
	[PROTO_UNAUTHORIZED] = "unauthorized",
	[PROTO_INTERNAL] = "internal",
};

const char *proto_error_name(int code)
{
	if (code < 0 || code > PROTO_INTERNAL) {
		return "internal";
	}
	return error_names[code];
}

/* A text cut at its size limit may end inside a character: drop the rest. */
static void utf8_trim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && !proto_utf8_valid(s, n)) {
		s[--n] = '\0';
	}
}

static void at_set(struct proto_error *err, const char *at_format, va_list ap)
{
	err->at[0] = '\0';
	if (at_format != NULL) {
		vsnprintf(err->at, sizeof(err->at), at_format, ap);
		utf8_trim(err->at);
	}
}

int proto_error_set(struct proto_error *err, int code, const char *message, const char *at_format, ...)
{
	err->code = code;
	snprintf(err->message, sizeof(err->message), "%s", message);
	utf8_trim(err->message);
	va_list ap;
	va_start(ap, at_format);
	at_set(err, at_format, ap);
	va_end(ap);
	return code;
}

/* ---- messages that explain: "<field> must be <expected>, got <found>" ---- */

#define FOUND_SIZE 64u /* a found text: an echo of PROTO_ECHO_BYTES, quotes, "..." */
_Static_assert(FOUND_SIZE >= PROTO_ECHO_BYTES + 8, "an echo fits");

static int invalid_v(struct proto_error *err, const char *field, const char *expected, const char *found,
		     const char *at_format, va_list ap)
{
	err->code = PROTO_INVALID_ARGUMENT;
	snprintf(err->message, sizeof(err->message), "%s must be %s, got %s", field, expected, found);
	utf8_trim(err->message);
	at_set(err, at_format, ap);
	return PROTO_INVALID_ARGUMENT;
}

int proto_invalid_text(struct proto_error *err, const char *field, const char *expected, const char *found,
		       const char *at_format, ...)
{
	va_list ap;
	va_start(ap, at_format);
	invalid_v(err, field, expected, found, at_format, ap);
	va_end(ap);
	return PROTO_INVALID_ARGUMENT;
}

int proto_invalid(struct proto_error *err, const char *field, const char *expected, const msgpack_object *found,
		  const char *at_format, ...)
{
	char text[FOUND_SIZE];
	va_list ap;
	va_start(ap, at_format);
	invalid_v(err, field, expected, proto_found_describe(found, false, text, sizeof(text)), at_format, ap);
	va_end(ap);
	return PROTO_INVALID_ARGUMENT;
}

int proto_invalid_echo(struct proto_error *err, const char *field, const char *expected,
		       const msgpack_object *found, const char *at_format, ...)
{
	char text[FOUND_SIZE];
	va_list ap;
	va_start(ap, at_format);
	invalid_v(err, field, expected, proto_found_describe(found, true, text, sizeof(text)), at_format, ap);
	va_end(ap);
	return PROTO_INVALID_ARGUMENT;
}

int proto_too_many(struct proto_error *err, const char *field, uint32_t max, uint32_t count, const char *at_format,
		   ...)
{
	err->code = PROTO_TOO_LARGE;
	snprintf(err->message, sizeof(err->message), "%s must hold at most %" PRIu32 " entries, got %" PRIu32, field,
		 max, count);
	utf8_trim(err->message);
	va_list ap;
	va_start(ap, at_format);
	at_set(err, at_format, ap);
	va_end(ap);
	return PROTO_TOO_LARGE;
}

static bool printable(const char *s, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		uint8_t c = (uint8_t)s[i];
		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
			return false;
		}
	}
	return true;
}

static void string_describe(const char *s, size_t size, bool echo, char *buf, size_t buf_size)
{
	if (!echo) {
		snprintf(buf, buf_size, "a string");
	} else if (!proto_utf8_valid(s, size)) {
		snprintf(buf, buf_size, "a string that is not UTF-8");
	} else if (!printable(s, size)) {
		snprintf(buf, buf_size, "a string with control characters or quotes");
	} else if (size <= PROTO_ECHO_BYTES) {
		snprintf(buf, buf_size, "\"%.*s\"", (int)size, s);
	} else {
		size_t n = PROTO_ECHO_BYTES;
		while (n > 0 && ((uint8_t)s[n] & 0xc0) == 0x80) { /* s[n] continues a character: cut before it */
			n--;
		}
		snprintf(buf, buf_size, "\"%.*s...\"", (int)n, s);
	}
}

const char *proto_found_describe(const msgpack_object *o, bool echo, char *buf, size_t size)
{
	ASSERT(size >= 48);
	if (o == NULL) {
		snprintf(buf, size, "nothing");
		return buf;
	}
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		snprintf(buf, size, "nil");
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		snprintf(buf, size, "%s", o->via.boolean ? "true" : "false");
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		snprintf(buf, size, "%" PRIu64, o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		snprintf(buf, size, "%" PRId64, o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		snprintf(buf, size, "a float");
		break;
	case MSGPACK_OBJECT_STR:
		string_describe(o->via.str.ptr, o->via.str.size, echo, buf, size);
		break;
	case MSGPACK_OBJECT_BIN:
		snprintf(buf, size, "a binary");
		break;
	case MSGPACK_OBJECT_ARRAY:
		snprintf(buf, size, "an array of %" PRIu32, o->via.array.size);
		break;
	case MSGPACK_OBJECT_MAP:
		snprintf(buf, size, "a map of %" PRIu32, o->via.map.size);
		break;
	default:
		snprintf(buf, size, "an extension");
		break;
	}
	return buf;
}

const char *proto_found_string(const msgpack_object *o, char *buf, size_t size)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_STR) {
		return proto_found_describe(o, false, buf, size);
	}
	if (!proto_utf8_valid(o->via.str.ptr, o->via.str.size)) {
		snprintf(buf, size, "a string that is not UTF-8");
	} else {
		snprintf(buf, size, "a string of %" PRIu32 " bytes", o->via.str.size);
	}
	return buf;
}

/* Characters of a UTF-8 string (bytes when it is not UTF-8). */
static size_t char_count(const char *s, size_t size)
{
	if (!proto_utf8_valid(s, size)) {
		return size;
	}
	size_t n = 0;
	for (size_t i = 0; i < size; i++) {
		n += ((uint8_t)s[i] & 0xc0) != 0x80;
	}
	return n;
}

const char *proto_id_fault_describe(const char *s, size_t size, int fault, uint32_t position, char *buf,
				    size_t buf_size)
{
	switch (fault) {
	case CORE_ID_LENGTH: {
		size_t n = char_count(s, size);
		snprintf(buf, buf_size, n == 0 ? "an empty string" : n == 1 ? "1 character" : "%zu characters", n);
		break;
	}
	case CORE_ID_NOT_DIGIT:
		snprintf(buf, buf_size, "a character other than a digit at position %" PRIu32, position);
		break;
	case CORE_ID_CHECK_CHAR:
		snprintf(buf, buf_size, "a check character other than 0-9 or X");
		break;
	case CORE_ID_CHECK_DIGIT:
		snprintf(buf, buf_size, "18 characters with a wrong check digit");
		break;
	default:
		ASSERT(fault == CORE_ID_BIRTH_DATE);
		snprintf(buf, buf_size, "18 characters with an invalid birth date");
		break;
	}
	return buf;
}

static int id_check_v(const char *id, size_t size, struct proto_error *err, const char *at_format, va_list ap)
{
	uint32_t position;
	int fault = core_id_check(id, size, &position);
	if (fault == CORE_ID_OK) {
		return PROTO_OK;
	}
	char text[FOUND_SIZE];
	return invalid_v(err, "id", PROTO_ID_EXPECTED, proto_id_fault_describe(id, size, fault, position, text, sizeof(text)),
			 at_format, ap);
}

int proto_id_check(const char *id, size_t size, struct proto_error *err, const char *at_format, ...)
{
	va_list ap;
	va_start(ap, at_format);
	int rc = id_check_v(id, size, err, at_format, ap);
	va_end(ap);
	return rc;
}

int proto_id_check_object(const msgpack_object *o, struct proto_error *err, const char *at_format, ...)
{
	va_list ap;
	va_start(ap, at_format);
	int rc;
	if (o == NULL || o->type != MSGPACK_OBJECT_STR) {
		char text[FOUND_SIZE];
		rc = invalid_v(err, "id", PROTO_ID_EXPECTED, proto_found_describe(o, false, text, sizeof(text)),
			       at_format, ap);
	} else {
		rc = id_check_v(o->via.str.ptr, o->via.str.size, err, at_format, ap);
	}
	va_end(ap);
	return rc;
}

/* One zone for every message a dispatch parses, cleared before each:
 * msgpack_unpack_next would allocate and free a fresh 8 KiB zone per
 * request. The objects live until the next parse. */
_Static_assert(sizeof(msgpack_object) <= PROTO_PARSE_BYTES_PER_ELEMENT, "parse cost of an element");

struct proto_message {
	msgpack_zone zone;
	struct proto_params params;
};

struct proto_message *proto_message_new(void)
{
	struct proto_message *m = malloc(sizeof(*m));
	if (m != NULL && !msgpack_zone_init(&m->zone, MSGPACK_ZONE_CHUNK_SIZE)) {
		free(m);
		m = NULL;
	}
	return m;
}

void proto_message_free(struct proto_message *m)
{
	if (m != NULL) {
		msgpack_zone_destroy(&m->zone);
		free(m);
	}
}

void proto_message_trim(struct proto_message *m)
{
	msgpack_zone fresh;
	if (msgpack_zone_init(&fresh, MSGPACK_ZONE_CHUNK_SIZE)) { /* out of memory: keep the old one */
		msgpack_zone_swap(&m->zone, &fresh);
		msgpack_zone_destroy(&fresh);
	}
}

/* The (valid) value at *p unpacked by msgpack-c into the zone; *p moves past it. */
static bool unpack_at(struct proto_message *m, const uint8_t *frame, const uint8_t **p, msgpack_object *o)
{
	const uint8_t *end = proto_msgpack_skip(*p);
	size_t offset = (size_t)(*p - frame);
	*p = end;
	return msgpack_unpack((const char *)frame, (size_t)(end - frame), &offset, &m->zone, o) ==
	       MSGPACK_UNPACK_SUCCESS;
}

static bool is_persons(const msgpack_object *key)
{
	return key->type == MSGPACK_OBJECT_STR && key->via.str.size == 7 && memcmp(key->via.str.ptr, "persons", 7) == 0;
}

/* The params map's n entries from p (valid): keys and values unpacked, but
 * for the first "persons" key's array, which stays bytes (struct
 * proto_params). end: where the map ends when it ends the frame, else NULL
 * (a last persons array then needs no walk to find its end). */
static bool params_unpack(struct proto_message *m, const uint8_t *frame, const uint8_t *p, uint32_t n,
			  const uint8_t *end)
{
	struct proto_params *params = &m->params;
	params->map.type = MSGPACK_OBJECT_MAP;
	params->map.via.map.size = n;
	if (n == 0) {
		return true;
	}
	msgpack_object_kv *kv = msgpack_zone_malloc(&m->zone, sizeof(*kv) * n); /* n < the frame's bytes */
	if (kv == NULL) {
		return false;
	}
	params->map.via.map.ptr = kv;
	bool persons_seen = false;
	for (uint32_t i = 0; i < n; i++) {
		if (!unpack_at(m, frame, &p, &kv[i].key)) {
			return false;
		}
		if (persons_seen || !is_persons(&kv[i].key)) {
			if (!unpack_at(m, frame, &p, &kv[i].val)) {
				return false;
			}
			continue;
		}
		persons_seen = true; /* proto_map_get reads the first one only */
		proto_msgpack_shallow(p, &kv[i].val);
		if (kv[i].val.type != MSGPACK_OBJECT_ARRAY) {
			if (!unpack_at(m, frame, &p, &kv[i].val)) {
				return false;
			}
			continue;
		}
		params->persons = &kv[i].val;
		params->persons_array = p;
		params->persons_bytes = p + proto_msgpack_head(p);
		p = i + 1 == n && end != NULL ? end : proto_msgpack_skip(p);
		params->persons_end = p;
	}
	return true;
}

int proto_message_parse(struct proto_message *m, const uint8_t *frame, size_t frame_size,
			struct proto_envelope *env, struct proto_error *err)
{
	memset(env, 0, sizeof(*env));
	memset(&m->params, 0, sizeof(m->params));
	m->params.map.type = MSGPACK_OBJECT_MAP;
	msgpack_zone_clear(&m->zone);
	/* The frame is one whole value by proto_frame_scan's rules (proto.h):
	 * checked again only where the sanitizers watch. */
	ASSERT(!PROTO_CHECK_CONTRACTS || proto_msgpack_valid(frame, frame_size));
	/* The envelope read in place, its fields as msgpack-c would show them;
	 * the last one read is not skipped (params: all the persons). */
	msgpack_object o;
	msgpack_object a[4];
	const uint8_t *at[4];
	proto_msgpack_shallow(frame, &o);
	uint32_t size = o.type == MSGPACK_OBJECT_ARRAY ? o.via.array.size : 0;
	uint32_t n = size < 4 ? size : 4;
	const uint8_t *p = size > 0 ? frame + proto_msgpack_head(frame) : frame;
	for (uint32_t i = 0; i < n; i++) {
		at[i] = p;
		proto_msgpack_shallow(p, &a[i]);
		p = i + 1 < n ? proto_msgpack_skip(p) : p;
	}
	if (size < 3 || a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		return proto_error_set(err, PROTO_MALFORMED, "not a msgpack-RPC request", NULL);
	}
	uint32_t first; /* the method's index */
	if (a[0].via.u64 == 0 && size == 4) {
		if (a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[1].via.u64 > UINT32_MAX) {
			return proto_error_set(err, PROTO_MALFORMED, "msgid is not a uint32", NULL);
		}
		env->kind = PROTO_KIND_REQUEST;
		env->msgid = (uint32_t)a[1].via.u64;
		first = 2;
	} else if (a[0].via.u64 == 2 && size == 3) {
		env->kind = PROTO_KIND_NOTIFICATION;
		first = 1;
	} else {
		return proto_error_set(err, PROTO_MALFORMED, "not a msgpack-RPC request", NULL);
	}
	const msgpack_object *method = &a[first];
	const msgpack_object *params = &a[first + 1];
	if (method->type != MSGPACK_OBJECT_STR || params->type != MSGPACK_OBJECT_ARRAY) {
		return proto_error_set(err, PROTO_MALFORMED, "method must be a string and params an array", NULL);
	}
	env->method = method->via.str.ptr;
	env->method_size = method->via.str.size;
	if (params->via.array.size > 0) {
		const uint8_t *map = at[first + 1] + proto_msgpack_head(at[first + 1]);
		proto_msgpack_shallow(map, &o);
		if (o.type != MSGPACK_OBJECT_MAP) {
			return proto_error_set(err, PROTO_MALFORMED, "params must hold one map", NULL);
		}
		const uint8_t *end = params->via.array.size == 1 ? frame + frame_size : NULL;
		if (!params_unpack(m, frame, map + proto_msgpack_head(map), o.via.map.size, end)) {
			return proto_error_set(err, PROTO_MALFORMED, "not msgpack", NULL); /* out of memory, as msgpack-c said */
		}
	}
	env->params = &m->params;
	return PROTO_OK;
}

const msgpack_object *proto_map_get(const msgpack_object *map, const char *key)
{
	size_t size = strlen(key);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == size &&
		    memcmp(kv->key.via.str.ptr, key, size) == 0) {
			return kv->val.type == MSGPACK_OBJECT_NIL ? NULL : &kv->val;
		}
	}
	return NULL;
}

bool proto_read_int(const msgpack_object *o, int64_t lo, int64_t hi, int64_t *v)
{
	if (o == NULL) {
		return false;
	}
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (o->via.u64 > (uint64_t)INT64_MAX) {
			return false;
		}
		*v = (int64_t)o->via.u64;
	} else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*v = o->via.i64;
	} else {
		return false;
	}
	return *v >= lo && *v <= hi;
}

bool proto_read_bool(const msgpack_object *o, bool *v)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_BOOLEAN) {
		return false;
	}
	*v = o->via.boolean;
	return true;
}

bool proto_read_city(const msgpack_object *o, uint32_t *city)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_STR || o->via.str.size != 6) {
		return false;
	}
	uint32_t v = 0;
	for (uint32_t i = 0; i < 6; i++) {
		char c = o->via.str.ptr[i];
		if (c < '0' || c > '9') {
			return false;
		}
		v = v * 10 + (uint32_t)(c - '0');
	}
	*city = v;
	return true;
}

bool proto_read_month(const msgpack_object *o, int32_t *month)
{
	int64_t v;
	return proto_read_int(o, 195001, 209912, &v) && core_month_parse(v, month);
}

bool proto_read_date(const msgpack_object *o, int32_t *date)
{
	int64_t v;
	if (!proto_read_int(o, 19000101, 21001231, &v) || !core_date_valid(v)) {
		return false;
	}
	*date = (int32_t)v;
	return true;
}

int proto_read_name(const msgpack_object *o, const char *const *names, uint32_t name_count)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_STR) {
		return -1;
	}
	return core_name_index(names, name_count, o->via.str.ptr, o->via.str.size);
}

bool proto_utf8_valid(const char *s_, size_t size)
{
	const uint8_t *s = (const uint8_t *)s_;
	size_t i = 0;
	while (i < size) {
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		/* Lead byte: sequence length and the range of the second byte, which
		 * rules out overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4). */
		size_t n;
		uint8_t lo = 0x80, hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf) {
			n = 2;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 3;
			lo = c == 0xe0 ? 0xa0 : 0x80;
			hi = c == 0xed ? 0x9f : 0xbf;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 4;
			lo = c == 0xf0 ? 0x90 : 0x80;
			hi = c == 0xf4 ? 0x8f : 0xbf;
		} else {
			return false;
		}
		if (size - i < n || s[i + 1] < lo || s[i + 1] > hi) {
			return false;
		}
		for (size_t k = 2; k < n; k++) {
			if (s[i + k] < 0x80 || s[i + k] > 0xbf) {
				return false;
			}
		}
		i += n;
	}
	return true;
}
