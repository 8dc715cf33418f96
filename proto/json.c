/* JSON at the edges (policy files, the command line) turned into the same
 * msgpack-RPC frames a client sends, so they take the one request path. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define JSON_DEPTH_MAX PROTO_DEPTH_MAX

struct json_frame {
	json_t *value;
	size_t index;   /* next array element */
	void *iter;     /* next object member */
};

/* Packs one scalar, or the header of a container; false for what msgpack-RPC cannot carry. */
static bool pack_head(msgpack_packer *pk, json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return msgpack_pack_map(pk, json_object_size(v)) == 0;
	case JSON_ARRAY:
		return msgpack_pack_array(pk, json_array_size(v)) == 0;
	case JSON_STRING:
		return msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v)) == 0;
	case JSON_INTEGER:
		return msgpack_pack_int64(pk, json_integer_value(v)) == 0;
	case JSON_REAL:
		return msgpack_pack_double(pk, json_real_value(v)) == 0;
	case JSON_TRUE:
		return msgpack_pack_true(pk) == 0;
	case JSON_FALSE:
		return msgpack_pack_false(pk) == 0;
	default:
		return msgpack_pack_nil(pk) == 0;
	}
}

/* Walks the value with an explicit bounded stack (no recursion). */
static bool pack_json(msgpack_packer *pk, json_t *root)
{
	struct json_frame stack[JSON_DEPTH_MAX];
	uint32_t depth = 0;
	json_t *v = root;
	while (true) {
		if (!pack_head(pk, v)) {
			return false;
		}
		if (json_is_object(v) || json_is_array(v)) {
			if (depth == JSON_DEPTH_MAX) {
				return false;
			}
			stack[depth++] = (struct json_frame){ v, 0, json_is_object(v) ? json_object_iter(v) : NULL };
		}
		v = NULL;
		while (v == NULL && depth > 0) {
			struct json_frame *f = &stack[depth - 1];
			if (json_is_array(f->value) && f->index < json_array_size(f->value)) {
				v = json_array_get(f->value, f->index++);
			} else if (json_is_object(f->value) && f->iter != NULL) {
				const char *key = json_object_iter_key(f->iter);
				msgpack_pack_str_with_body(pk, key, strlen(key));
				v = json_object_iter_value(f->iter);
				f->iter = json_object_iter_next(f->value, f->iter);
			} else {
				depth--;
			}
		}
		if (v == NULL) {
			return true;
		}
	}
}

int proto_json_frame(const char *method, uint32_t msgid, const char *wrap_key, const char *json_text,
		     uint8_t **frame, size_t *frame_size, char *errbuf, size_t errbuf_size)
{
	json_error_t jerr;
	json_t *root = json_loads(json_text, 0, &jerr);
	if (root == NULL) {
		snprintf(errbuf, errbuf_size, "JSON line %d column %d: %s", jerr.line, jerr.column, jerr.text);
		return PROTO_INVALID_ARGUMENT;
	}
	if (wrap_key == NULL && !json_is_object(root)) {
		static const char *const kinds[] = { [JSON_ARRAY] = "an array", [JSON_STRING] = "a string",
						     [JSON_INTEGER] = "a number", [JSON_REAL] = "a number",
						     [JSON_TRUE] = "true", [JSON_FALSE] = "false", [JSON_NULL] = "null" };
		json_type t = json_typeof(root);
		snprintf(errbuf, errbuf_size, "params must be a JSON object, got %s",
			 t < sizeof(kinds) / sizeof(kinds[0]) && kinds[t] != NULL ? kinds[t] : "another value");
		json_decref(root);
		return PROTO_INVALID_ARGUMENT;
	}
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_uint32(&pk, msgid);
	msgpack_pack_str_with_body(&pk, method, strlen(method));
	msgpack_pack_array(&pk, 1);
	if (wrap_key != NULL) {
		msgpack_pack_map(&pk, 1);
		msgpack_pack_str_with_body(&pk, wrap_key, strlen(wrap_key));
	}
	bool ok = pack_json(&pk, root);
	json_decref(root);
	/* A frame as the server would take it (proto_message_parse's contract):
	 * the envelope's levels count towards PROTO_DEPTH_MAX. */
	struct proto_frame scan;
	size_t scanned = 0;
	proto_frame_reset(&scan);
	ok = ok && sb.data != NULL &&
	     proto_frame_scan(&scan, (const uint8_t *)sb.data, sb.size, sb.size, &scanned) ==
		     PROTO_FRAME_COMPLETE &&
	     scanned == sb.size;
	if (!ok) {
		snprintf(errbuf, errbuf_size, "JSON nests deeper than %u or does not pack", JSON_DEPTH_MAX);
		msgpack_sbuffer_destroy(&sb);
		return PROTO_INVALID_ARGUMENT;
	}
	*frame = (uint8_t *)sb.data; /* the caller frees */
	*frame_size = sb.size;
	return PROTO_OK;
}

bool proto_response_error(const uint8_t *response, size_t size, struct proto_error *err)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t offset = 0;
	bool failed = true;
	proto_error_set(err, PROTO_INTERNAL, "response does not decode", NULL);
	if (msgpack_unpack_next(&u, (const char *)response, size, &offset) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 4) {
		const msgpack_object *e = &u.data.via.array.ptr[2];
		failed = e->type != MSGPACK_OBJECT_NIL;
		if (e->type == MSGPACK_OBJECT_MAP) {
			int64_t code = PROTO_INTERNAL;
			const msgpack_object *m = proto_map_get(e, "message");
			const msgpack_object *at = proto_map_get(e, "at");
			proto_read_int(proto_map_get(e, "code"), 0, 100, &code);
			proto_error_set(err, (int)code, "", NULL);
			if (m != NULL && m->type == MSGPACK_OBJECT_STR) {
				snprintf(err->message, sizeof(err->message), "%.*s", (int)m->via.str.size, m->via.str.ptr);
			}
			if (at != NULL && at->type == MSGPACK_OBJECT_STR) {
				snprintf(err->at, sizeof(err->at), "%.*s", (int)at->via.str.size, at->via.str.ptr);
			}
		}
	}
	msgpack_unpacked_destroy(&u);
	return failed;
}

/* ---- responses as JSON, for people at a terminal ---- */

/* A container being filled while the walk is inside it. */
struct json_build {
	const msgpack_object *object; /* an array or a map */
	json_t *container;
	uint32_t index; /* next element or member */
};

static const char base64_digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* bin has no JSON form: it becomes a base64 string (RFC 4648, padded). */
static json_t *json_base64(const uint8_t *p, size_t size)
{
	size_t out_size = (size + 2) / 3 * 4;
	char *out = malloc(out_size + 1);
	if (out == NULL) {
		return NULL;
	}
	size_t o = 0;
	for (size_t i = 0; i < size; i += 3) {
		uint32_t n = (uint32_t)p[i] << 16;
		n |= i + 1 < size ? (uint32_t)p[i + 1] << 8 : 0;
		n |= i + 2 < size ? p[i + 2] : 0;
		out[o++] = base64_digits[n >> 18 & 63];
		out[o++] = base64_digits[n >> 12 & 63];
		out[o++] = i + 1 < size ? base64_digits[n >> 6 & 63] : '=';
		out[o++] = i + 2 < size ? base64_digits[n & 63] : '=';
	}
	json_t *v = json_stringn(out, o);
	free(out);
	return v;
}

/* A scalar as JSON, or an empty container for the walk to fill. NULL with
 * *rc set for what JSON cannot carry (ext, an integer beyond int64, a float
 * that is not finite, a string that is not UTF-8) and when out of memory. */
static json_t *json_head(const msgpack_object *o, int *rc)
{
	json_t *v = NULL;
	*rc = PROTO_INVALID_ARGUMENT;
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		v = json_null();
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		v = json_boolean(o->via.boolean);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		/* jansson's integers are int64: a larger uint64 would change value. */
		v = o->via.u64 <= INT64_MAX ? json_integer((json_int_t)o->via.u64) : NULL;
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		v = json_integer(o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		v = json_real(o->via.f64); /* NULL for NaN and infinities */
		break;
	case MSGPACK_OBJECT_STR:
		v = json_stringn(o->via.str.ptr, o->via.str.size); /* NULL unless UTF-8 */
		break;
	case MSGPACK_OBJECT_BIN:
		*rc = PROTO_INTERNAL; /* only memory can fail here */
		v = json_base64((const uint8_t *)o->via.bin.ptr, o->via.bin.size);
		break;
	case MSGPACK_OBJECT_ARRAY:
		*rc = PROTO_INTERNAL;
		v = json_array();
		break;
	case MSGPACK_OBJECT_MAP:
		*rc = PROTO_INTERNAL;
		v = json_object();
		break;
	default:
		break; /* ext: application-defined, no JSON form */
	}
	if (v != NULL) {
		*rc = PROTO_OK;
	}
	return v;
}

static bool is_container(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_ARRAY || o->type == MSGPACK_OBJECT_MAP;
}

static uint32_t container_size(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_ARRAY ? o->via.array.size : o->via.map.size;
}

/* Converts the next element of the innermost container and attaches it;
 * *child gets the element's object when it is a container to descend into. */
static int json_fill_next(struct json_build *b, const msgpack_object **child, json_t **child_json)
{
	int rc;
	const msgpack_object *o;
	const msgpack_object *key = NULL;
	if (b->object->type == MSGPACK_OBJECT_ARRAY) {
		o = &b->object->via.array.ptr[b->index];
	} else {
		key = &b->object->via.map.ptr[b->index].key;
		o = &b->object->via.map.ptr[b->index].val;
		if (key->type != MSGPACK_OBJECT_STR) {
			return PROTO_INVALID_ARGUMENT; /* JSON object keys are strings */
		}
	}
	b->index++;
	json_t *v = json_head(o, &rc);
	if (v == NULL) {
		return rc;
	}
	/* The *_new calls take v even when they fail (a key not UTF-8, or no memory). */
	int set = key == NULL ? json_array_append_new(b->container, v)
			      : json_object_setn_new(b->container, key->via.str.ptr, key->via.str.size, v);
	if (set != 0) {
		return PROTO_INVALID_ARGUMENT;
	}
	*child = is_container(o) ? o : NULL;
	*child_json = v;
	return PROTO_OK;
}

/* Walks root with an explicit bounded stack (no recursion); every value is
 * attached to its parent as soon as it exists, so one decref frees a partial tree. */
static int json_from_object(const msgpack_object *root, json_t **out)
{
	struct json_build stack[PROTO_DEPTH_MAX];
	uint32_t depth = 0;
	int rc;
	*out = json_head(root, &rc);
	if (*out == NULL) {
		return rc;
	}
	if (is_container(root)) {
		stack[depth++] = (struct json_build){ root, *out, 0 };
	}
	while (depth > 0) {
		struct json_build *b = &stack[depth - 1];
		if (b->index == container_size(b->object)) {
			depth--;
			continue;
		}
		const msgpack_object *child = NULL;
		json_t *child_json = NULL;
		rc = json_fill_next(b, &child, &child_json);
		if (rc == PROTO_OK && child != NULL && depth == PROTO_DEPTH_MAX) {
			rc = PROTO_MALFORMED;
		}
		if (rc != PROTO_OK) {
			json_decref(*out);
			*out = NULL;
			return rc;
		}
		if (child != NULL) {
			stack[depth++] = (struct json_build){ child, child_json, 0 };
		}
	}
	return PROTO_OK;
}

/* Checks the envelope [1, msgid, error, result]; *body gets the error when
 * there is one, else the result. */
static bool response_body(const msgpack_object *o, const msgpack_object **body, bool *is_error)
{
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4) {
		return false;
	}
	const msgpack_object *a = o->via.array.ptr;
	if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 != 1 ||
	    a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[1].via.u64 > UINT32_MAX) {
		return false;
	}
	*is_error = a[2].type != MSGPACK_OBJECT_NIL;
	*body = *is_error ? &a[2] : &a[3];
	return true;
}

int proto_response_json(const uint8_t *response, size_t size, char **json_text, bool *is_error)
{
	*json_text = NULL;
	*is_error = false;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t offset = 0;
	const msgpack_object *body = NULL;
	int rc = PROTO_MALFORMED;
	if (msgpack_unpack_next(&u, (const char *)response, size, &offset) == MSGPACK_UNPACK_SUCCESS &&
	    offset == size && response_body(&u.data, &body, is_error)) {
		json_t *root;
		rc = json_from_object(body, &root);
		if (rc == PROTO_OK) {
			/* ENCODE_ANY: a result may be a scalar (or nil) as well as a map. */
			*json_text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
			rc = *json_text != NULL ? PROTO_OK : PROTO_INTERNAL;
			json_decref(root);
		}
	}
	msgpack_unpacked_destroy(&u);
	return rc;
}
