/* The msgpack-RPC envelope and the small readers every decoder uses. */
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

int proto_error_set(struct proto_error *err, int code, const char *message, const char *at_format, ...)
{
	err->code = code;
	snprintf(err->message, sizeof(err->message), "%s", message);
	err->at[0] = '\0';
	if (at_format != NULL) {
		va_list ap;
		va_start(ap, at_format);
		vsnprintf(err->at, sizeof(err->at), at_format, ap);
		va_end(ap);
		/* A path cut at its size limit may end inside a character. */
		size_t n = strlen(err->at);
		while (n > 0 && !proto_utf8_valid(err->at, n)) {
			err->at[--n] = '\0';
		}
	}
	return code;
}

/* One zone for every message a dispatch parses, cleared before each:
 * msgpack_unpack_next would allocate and free a fresh 8 KiB zone per
 * request. The objects live until the next parse. */
_Static_assert(sizeof(msgpack_object) <= PROTO_PARSE_BYTES_PER_ELEMENT, "parse cost of an element");

struct proto_message {
	msgpack_zone zone;
	msgpack_object data;
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

static const msgpack_object empty_map = { .type = MSGPACK_OBJECT_MAP };

int proto_message_parse(struct proto_message *m, const uint8_t *frame, size_t frame_size,
			struct proto_envelope *env, struct proto_error *err)
{
	memset(env, 0, sizeof(*env));
	size_t offset = 0;
	msgpack_zone_clear(&m->zone);
	msgpack_unpack_return rc = msgpack_unpack((const char *)frame, frame_size, &offset, &m->zone, &m->data);
	if (rc != MSGPACK_UNPACK_SUCCESS || offset != frame_size) {
		return proto_error_set(err, PROTO_MALFORMED, "not msgpack", NULL);
	}
	const msgpack_object *o = &m->data;
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3 ||
	    o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		return proto_error_set(err, PROTO_MALFORMED, "not a msgpack-RPC request", NULL);
	}
	const msgpack_object *a = o->via.array.ptr;
	const msgpack_object *method;
	const msgpack_object *params;
	if (a[0].via.u64 == 0 && o->via.array.size == 4) {
		if (a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[1].via.u64 > UINT32_MAX) {
			return proto_error_set(err, PROTO_MALFORMED, "msgid is not a uint32", NULL);
		}
		env->kind = PROTO_KIND_REQUEST;
		env->msgid = (uint32_t)a[1].via.u64;
		method = &a[2];
		params = &a[3];
	} else if (a[0].via.u64 == 2 && o->via.array.size == 3) {
		env->kind = PROTO_KIND_NOTIFICATION;
		method = &a[1];
		params = &a[2];
	} else {
		return proto_error_set(err, PROTO_MALFORMED, "not a msgpack-RPC request", NULL);
	}
	if (method->type != MSGPACK_OBJECT_STR || params->type != MSGPACK_OBJECT_ARRAY) {
		return proto_error_set(err, PROTO_MALFORMED, "method must be a string and params an array", NULL);
	}
	env->method = method->via.str.ptr;
	env->method_size = method->via.str.size;
	if (params->via.array.size == 0) {
		env->params = (const struct proto_params *)&empty_map;
	} else if (params->via.array.ptr[0].type == MSGPACK_OBJECT_MAP) {
		env->params = (const struct proto_params *)&params->via.array.ptr[0];
	} else {
		return proto_error_set(err, PROTO_MALFORMED, "params must hold one map", NULL);
	}
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
