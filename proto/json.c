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
		snprintf(errbuf, errbuf_size, "params must be a JSON object");
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
	if (!ok || sb.data == NULL) {
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
