/* Unit tests of proto/ (framing, envelope, validation paths, policy
 * documents) and of the request path io/dispatch.c.
 *
 * Every expected value comes from SPEC.md (§2.1, §3, §5, Appendix A, the
 * Appendix B worked examples) or from the Decisions section of README.md, with
 * the hand arithmetic beside it; none was copied from the code's output.
 *
 * Requests are packed with msgpack-c's packer from a small text notation
 * (pack_text: `{as_of: 20240310, persons: ['a', 5.0, nil, true]}`: bare words
 * and quoted words are strings, numbers with a '.' are float64, negative
 * numbers int64, others uint64). Responses are read back with msgpack_unpack
 * and checked for the §5 shape `[1, msgid, error, result]` every time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "../rpc/dispatch.h"
#include "../proto/internal.h"
#include "../proto/proto.h"

#define MSGID 7u
#define AS_OF "20240310"

/* Spec §2.1 example, check char by hand: S = 7+9+0+5+0+20+2+9+24+27+7+18+30+5+0+0+4
 * = 167, 167 mod 11 = 2, "10X98765432"[2] = 'X'. Born 1949-12-31, female. */
#define ID_F "11010519491231002X"
/* Male born 1970-06-15: S = 7+9+0+5+0+20+2+9+42+0+0+54+10+25+0+0+2 = 185,
 * 185 mod 11 = 9, "10X98765432"[9] = '3'. */
#define ID_M "110105197006150013"
/* Female born 1980-03-15 (Appendix B 4): S = 7+9+0+5+0+20+2+9+48+0+0+27+10+25+0+0+4
 * = 166, 166 mod 11 = 1, "10X98765432"[1] = '0'. */
#define ID_F1980 "110105198003150020"

/* City 110000: the spec's §3.3 rates, no interest section (so the default
 * table of §3.3 applies), first period 202001. */
#define POLICY_110000                                                                              \
	"{city: '110000', name: 'Beijing', deadline: {day: 25}, periods: [{from: 202001, "         \
	"base_min: 300000, base_max: 3000000, rates: {"                                            \
	"pension: {employer: 160000, individual: 80000, flexible: 200000}, "                       \
	"medical: {employer: 98000, individual: 20000, flexible: 80000}}}]}"
/* City 120000: interest 100% a year in every year, so a 10^10 fen debt
 * doubles yearly and passes 2^53 (about 9.007e15) after 20 years. */
#define POLICY_120000                                                                              \
	"{city: '120000', deadline: {day: 25}, periods: [{from: 195001, base_min: 0, "             \
	"base_max: 10000000000, rates: {pension: {flexible: 1000000}}}], "                         \
	"interest: {rates: [], default_ppm: 1000000}}"

static struct dispatch *D;

/* ------------------------------------------------------------------------ */
/* Text notation → msgpack with msgpack-c's packer. */

#define TEXT_DELIMS " \t\n,:]}"

/* Elements of the container whose opening bracket is just before p:
 * commas at its own level, plus one when it holds anything. */
static uint32_t text_count(const char *p)
{
	uint32_t depth = 0;
	uint32_t commas = 0;
	bool any = false;
	for (; *p != '\0'; p++) {
		char c = *p;
		if (c == '\'' || c == '"') {
			p = strchr(p + 1, c);
			assert_non_null(p);
			any = any || depth == 0;
		} else if (c == '[' || c == '{') {
			any = any || depth == 0;
			depth++;
		} else if (c == ']' || c == '}') {
			if (depth == 0) {
				break;
			}
			depth--;
		} else if (depth == 0 && c == ',') {
			commas++;
		} else if (depth == 0 && strchr(" \t\n:", c) == NULL) {
			any = true;
		}
	}
	return any ? commas + 1 : 0;
}

static void pack_token(msgpack_packer *pk, const char *tok)
{
	if (strcmp(tok, "nil") == 0) {
		msgpack_pack_nil(pk);
	} else if (strcmp(tok, "true") == 0) {
		msgpack_pack_true(pk);
	} else if (strcmp(tok, "false") == 0) {
		msgpack_pack_false(pk);
	} else if ((tok[0] >= '0' && tok[0] <= '9') || tok[0] == '-') {
		if (strchr(tok, '.') != NULL) {
			msgpack_pack_double(pk, strtod(tok, NULL));
		} else if (tok[0] == '-') {
			msgpack_pack_int64(pk, strtoll(tok, NULL, 10));
		} else {
			msgpack_pack_uint64(pk, strtoull(tok, NULL, 10));
		}
	} else {
		msgpack_pack_str(pk, strlen(tok));
		msgpack_pack_str_body(pk, tok, strlen(tok));
	}
}

static void pack_text(msgpack_packer *pk, const char *text)
{
	const char *p = text;
	while (*p != '\0') {
		char c = *p;
		if (strchr(TEXT_DELIMS, c) != NULL) {
			p++;
		} else if (c == '[') {
			msgpack_pack_array(pk, text_count(++p));
		} else if (c == '{') {
			msgpack_pack_map(pk, text_count(++p));
		} else if (c == '\'' || c == '"') {
			const char *end = strchr(p + 1, c);
			assert_non_null(end);
			msgpack_pack_str(pk, (size_t)(end - p - 1));
			msgpack_pack_str_body(pk, p + 1, (size_t)(end - p - 1));
			p = end + 1;
		} else {
			char tok[64];
			size_t n = strcspn(p, TEXT_DELIMS);
			assert_true(n < sizeof(tok));
			memcpy(tok, p, n);
			tok[n] = '\0';
			pack_token(pk, tok);
			p += n;
		}
	}
}

/* msgpack-c's unpacker nests at most this deep; deeper text is not checked. */
#define UNPACK_DEPTH_MAX 32u

/* Deepest bracket nesting of the text (quoted strings skipped). */
static uint32_t text_depth(const char *p)
{
	uint32_t depth = 0;
	uint32_t deepest = 0;
	for (; *p != '\0'; p++) {
		if (*p == '\'' || *p == '"') {
			p = strchr(p + 1, *p);
			assert_non_null(p);
		} else if (*p == '[' || *p == '{') {
			deepest = ++depth > deepest ? depth : deepest;
		} else if (*p == ']' || *p == '}') {
			depth--;
		}
	}
	return deepest;
}

/* Packs the formatted text into sb (cleared first) and checks that the bytes
 * hold exactly one msgpack object (a guard on the test's own notation). */
static void __attribute__((format(printf, 2, 0))) pack_vtext(msgpack_sbuffer *sb, const char *format, va_list ap)
{
	char *text = NULL;
	assert_true(vasprintf(&text, format, ap) >= 0);
	msgpack_sbuffer_clear(sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	pack_text(&pk, text);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	if (text_depth(text) <= UNPACK_DEPTH_MAX &&
	    (msgpack_unpack_next(&u, sb->data, sb->size, &off) != MSGPACK_UNPACK_SUCCESS || off != sb->size)) {
		fail_msg("the test's text does not pack to one object: %s", text);
	}
	msgpack_unpacked_destroy(&u);
	free(text);
}

static void __attribute__((format(printf, 2, 3))) pack_textf(msgpack_sbuffer *sb, const char *format, ...)
{
	va_list ap;
	va_start(ap, format);
	pack_vtext(sb, format, ap);
	va_end(ap);
}

/* Short-lived formatted strings for composing request text; a test that
 * keeps one across many requests copies it (KEEP). */
#define RING_COUNT 256u
#define RING_SIZE 4096u

static char *ring_next(void)
{
	static char ring[RING_COUNT][RING_SIZE];
	static uint32_t next;
	return ring[next++ % RING_COUNT];
}

static const char *__attribute__((format(printf, 1, 2))) fmt(const char *format, ...)
{
	char *out = ring_next();
	va_list ap;
	va_start(ap, format);
	int n = vsnprintf(out, RING_SIZE, format, ap);
	va_end(ap);
	assert_true(n >= 0 && (uint32_t)n < RING_SIZE);
	return out;
}

/* A copy of a ring string that outlives the ring's turnover. */
#define KEEP(name, expr)                                          \
	char name[RING_SIZE];                                     \
	snprintf(name, sizeof(name), "%s", (expr))

/* An 18-character id from 17 digits and the check character of SPEC §2.1:
 * "10X98765432"[S mod 11], S = Σ digit_i × w_i. */
static const char *id_of(const char *digits17)
{
	static const int w[17] = { 7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2 };
	char *out = ring_next();
	int s = 0;
	for (int i = 0; i < 17; i++) {
		s += (digits17[i] - '0') * w[i];
	}
	memcpy(out, digits17, 17);
	out[17] = "10X98765432"[s % 11];
	out[18] = '\0';
	return out;
}

/* A slot: the valid default below with key/value overrides (NULL-terminated
 * pairs; the value DEL removes the key; unknown keys are appended). */
static const char DEL[] = "<delete>";
static const char *const slot_keys[] = { "month", "city", "type", "category", "base", "paid", "paid_date", "deemed" };
/* Flexible pension, due rh(650000 × 200000 / 10^6) = 130000, paid in full. */
static const char *const slot_defaults[] = { "202302", "'110000'", "'pension'", "'flexible'",
					     "650000", "130000", "20230220",  "false" };
#define SLOT_KEY_COUNT 8u

static const char *slot(const char *key, ...)
{
	const char *keys[16];
	const char *values[16];
	uint32_t n = 0;
	va_list ap;
	va_start(ap, key);
	for (const char *k = key; k != NULL; k = va_arg(ap, const char *)) {
		assert_true(n < 16);
		keys[n] = k;
		values[n++] = va_arg(ap, const char *);
	}
	va_end(ap);
	char *out = ring_next();
	size_t len = 0;
	out[len++] = '{';
	for (uint32_t f = 0; f < SLOT_KEY_COUNT + n; f++) {
		const char *k = f < SLOT_KEY_COUNT ? slot_keys[f] : keys[f - SLOT_KEY_COUNT];
		const char *v = f < SLOT_KEY_COUNT ? slot_defaults[f] : values[f - SLOT_KEY_COUNT];
		bool known = false;
		for (uint32_t i = 0; i < n; i++) {
			if (strcmp(keys[i], k) == 0 && f < SLOT_KEY_COUNT) {
				v = values[i];
			}
		}
		for (uint32_t i = 0; i < SLOT_KEY_COUNT && f >= SLOT_KEY_COUNT; i++) {
			known = known || strcmp(slot_keys[i], k) == 0;
		}
		if (v == DEL || known) {
			continue;
		}
		len += (size_t)snprintf(out + len, RING_SIZE - len, "%s%s: %s", len > 1 ? ", " : "", k, v);
		assert_true(len < RING_SIZE - 2);
	}
	out[len++] = '}';
	out[len] = '\0';
	return out;
}

static const char *person(const char *id, const char *slots)
{
	return fmt("{id: '%s', slots: [%s]}", id, slots);
}

/* Unpaid 202301 flexible pension in 110000. As of 20240310: due 130000,
 * arrears (deadline 20230125), interest by R6 with the default table:
 * 2023, 11 months: rh(130000 × 39700 × 11 / 12e6) = rh(4730.92) = 4731 → 134731;
 * 2024, 3 months: rh(134731 × 26200 × 3 / 12e6) = rh(882.49) = 882;
 * interest 5613, no late fee (flexible), total 135613. */
static const char *good_person(void)
{
	return person(ID_M, slot("month", "202301", "paid", "0", "paid_date", "0", NULL));
}

/* ------------------------------------------------------------------------ */
/* Sending frames and reading responses. */

struct reply {
	bool close;
	size_t size; /* response bytes, 0 when none */
	char *bytes; /* our copy */
	msgpack_unpacked unpacked;
	bool live;
	uint64_t msgid;
	const msgpack_object *error;  /* NULL when nil */
	const msgpack_object *result; /* NULL when nil */
};

static struct reply R;

static void reply_clear(void)
{
	if (R.live) {
		msgpack_unpacked_destroy(&R.unpacked);
	}
	free(R.bytes);
	memset(&R, 0, sizeof(R));
}

static const char *describe(const msgpack_object *o)
{
	char *out = ring_next();
	if (o == NULL) {
		return "(absent)";
	}
	msgpack_object_print_buffer(out, RING_SIZE, *o);
	return out;
}

/* The bytes as the server takes them: one frame if proto_frame_scan finds
 * exactly them whole (dispatch_frame's contract), else the server's
 * rejection of bytes that are not msgpack, which closes. */
static void send_bytes(const void *data, size_t size)
{
	reply_clear();
	const uint8_t *response;
	struct dispatch_outcome outcome = { .close = true };
	struct proto_frame f;
	size_t frame_size = 0;
	proto_frame_reset(&f);
	if (proto_frame_scan(&f, data, size, PROTO_REQUEST_BYTES_MAX, &frame_size) == PROTO_FRAME_COMPLETE &&
	    frame_size == size) {
		dispatch_frame(D, NULL, DISPATCH_ALL, data, size, &response, &R.size, &outcome);
	} else {
		dispatch_reject(D, 0, PROTO_MALFORMED, "not msgpack", &response, &R.size);
	}
	R.close = outcome.close;
	if (R.size == 0) {
		return;
	}
	R.bytes = malloc(R.size);
	assert_non_null(R.bytes);
	memcpy(R.bytes, response, R.size);
	msgpack_unpacked_init(&R.unpacked);
	R.live = true;
	size_t off = 0;
	assert_int_equal(msgpack_unpack_next(&R.unpacked, R.bytes, R.size, &off), MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(off, R.size); /* one response per request */
	const msgpack_object *o = &R.unpacked.data;
	assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(o->via.array.size, 4);
	const msgpack_object *a = o->via.array.ptr;
	assert_int_equal(a[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	assert_int_equal(a[0].via.u64, 1);
	assert_int_equal(a[1].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	R.msgid = a[1].via.u64;
	R.error = a[2].type == MSGPACK_OBJECT_NIL ? NULL : &a[2];
	R.result = a[3].type == MSGPACK_OBJECT_NIL ? NULL : &a[3];
	/* §5: exactly one of error, result is nil. */
	assert_true((R.error == NULL) != (R.result == NULL));
}

static void __attribute__((format(printf, 1, 2))) send_text(const char *format, ...)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	va_list ap;
	va_start(ap, format);
	pack_vtext(&sb, format, ap);
	va_end(ap);
	send_bytes(sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

/* A request [0, MSGID, method, [params]]. */
static void __attribute__((format(printf, 2, 3))) rpc(const char *method, const char *params_format, ...)
{
	char *params = NULL;
	va_list ap;
	va_start(ap, params_format);
	assert_true(vasprintf(&params, params_format, ap) >= 0);
	va_end(ap);
	send_text("[0, %u, '%s', [%s]]", MSGID, method, params);
	free(params);
}

static const msgpack_object *get(const msgpack_object *map, const char *key)
{
	if (map == NULL || map->type != MSGPACK_OBJECT_MAP) {
		fail_msg("looking up %s in a non-map: %s", key, describe(map));
	}
	size_t size = strlen(key);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == size &&
		    memcmp(kv->key.via.str.ptr, key, size) == 0) {
			return &kv->val;
		}
	}
	return NULL;
}

/* Follows a dotted path of map keys and array indices: "results.1.error.at". */
static const msgpack_object *dig(const msgpack_object *o, const char *path)
{
	char seg[64];
	const char *p = path;
	while (*p != '\0') {
		size_t n = strcspn(p, ".");
		assert_true(n < sizeof(seg));
		memcpy(seg, p, n);
		seg[n] = '\0';
		p += n + (p[n] == '.');
		if (seg[0] >= '0' && seg[0] <= '9') {
			uint32_t i = (uint32_t)strtoul(seg, NULL, 10);
			if (o == NULL || o->type != MSGPACK_OBJECT_ARRAY || i >= o->via.array.size) {
				fail_msg("%s: no element %u in %s", path, i, describe(o));
			}
			o = &o->via.array.ptr[i];
		} else {
			const msgpack_object *next = get(o, seg);
			if (next == NULL) {
				fail_msg("%s: no key %s in %s", path, seg, describe(o));
			}
			o = next;
		}
	}
	return o;
}

static bool is_str(const msgpack_object *o, const char *s)
{
	return o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
	       memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static bool is_int(const msgpack_object *o, int64_t v)
{
	if (o == NULL) {
		return false;
	}
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		return v >= 0 && o->via.u64 == (uint64_t)v;
	}
	return o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && o->via.i64 == v;
}

static void check_str(const msgpack_object *o, const char *s)
{
	if (!is_str(o, s)) {
		fail_msg("got %s, want \"%s\"", describe(o), s);
	}
}

static void check_int(const msgpack_object *o, int64_t v)
{
	if (!is_int(o, v)) {
		fail_msg("got %s, want %lld", describe(o), (long long)v);
	}
}

static void check_bool(const msgpack_object *o, bool v)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_BOOLEAN || o->via.boolean != v) {
		fail_msg("got %s, want %s", describe(o), v ? "true" : "false");
	}
}

static void check_nil(const msgpack_object *o)
{
	if (o == NULL || o->type != MSGPACK_OBJECT_NIL) {
		fail_msg("got %s, want nil", describe(o));
	}
}

/* Names of SPEC §5's error table. */
static const char *const spec_error_names[] = {
	"",	       "malformed", "unknown_method", "invalid_argument", "not_found",
	"conflict", "too_large", "overloaded",	   "unauthorized",     "internal",
};

/* An error map {code, name, message, at?}; at NULL: not checked. */
static void check_error_map(const msgpack_object *err, int code, const char *at, const char *context)
{
	if (err == NULL || err->type != MSGPACK_OBJECT_MAP || !is_int(get(err, "code"), code) ||
	    !is_str(get(err, "name"), spec_error_names[code]) || get(err, "message") == NULL ||
	    get(err, "message")->type != MSGPACK_OBJECT_STR || (at != NULL && !is_str(get(err, "at"), at))) {
		fail_msg("%s: got error %s, want code %d (%s) at \"%s\"", context, describe(err), code,
			 spec_error_names[code], at == NULL ? "(any)" : at);
	}
}

/* The request failed as a whole with code at `at`. */
static void expect_error(int code, const char *at)
{
	assert_true(R.size > 0);
	check_error_map(R.error, code, at, "request");
}

static const msgpack_object *expect_result(void)
{
	assert_true(R.size > 0);
	if (R.error != NULL) {
		fail_msg("unexpected error %s", describe(R.error));
	}
	assert_int_equal(R.msgid, MSGID);
	assert_false(R.close);
	return R.result;
}

static const msgpack_object *expect_results(uint32_t count)
{
	const msgpack_object *results = dig(expect_result(), "results");
	assert_int_equal(results->type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(results->via.array.size, count);
	return results;
}

/* One entry of results: its error (code 0: none) and, when id is not NULL, its id. */
static void check_entry(const msgpack_object *entry, const char *id, int code, const char *at, const char *context)
{
	const msgpack_object *err = get(entry, "error");
	if (code == 0 && err != NULL) {
		fail_msg("%s: unexpected error %s", context, describe(err));
	}
	if (code != 0) {
		check_error_map(err, code, at, context);
	}
	if (id != NULL && !is_str(get(entry, "id"), id)) {
		fail_msg("%s: id %s, want %s", context, describe(get(entry, "id")), id);
	}
}

static void check_good(const msgpack_object *entry)
{
	check_entry(entry, ID_M, 0, NULL, "good person");
	check_int(dig(entry, "months_owed"), 1);
	check_int(dig(entry, "principal"), 130000);
	check_int(dig(entry, "interest"), 5613);
	check_int(dig(entry, "late_fee"), 0);
	check_int(dig(entry, "total"), 135613);
}

/* arrears.compute on [good person, bad]: the good one is unharmed, the bad one
 * (persons[1]) gets code at `at` (code 0: no error). */
static void expect_person(const char *bad, int code, const char *at, const char *context)
{
	rpc("arrears.compute", "{as_of: " AS_OF ", persons: [%s, %s]}", good_person(), bad);
	const msgpack_object *results = expect_results(2);
	check_good(&results->via.array.ptr[0]);
	check_entry(&results->via.array.ptr[1], NULL, code, at, context);
}

static int setup(void **state)
{
	(void)state;
	D = dispatch_new(NULL, NULL); /* inline persons only: policies in memory */
	assert_non_null(D);
	rpc("policy.put", "{policy: %s}", POLICY_110000);
	check_bool(dig(expect_result(), "ok"), true);
	rpc("policy.put", "{policy: %s}", POLICY_120000);
	check_bool(dig(expect_result(), "ok"), true);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	reply_clear();
	dispatch_free(D);
	D = NULL;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* 1. Framing. */

#define SCAN_MAX PROTO_REQUEST_BYTES_MAX

static int scan(const void *buf, size_t size, size_t max_size, size_t *frame_size)
{
	struct proto_frame f;
	proto_frame_reset(&f);
	*frame_size = 0;
	return proto_frame_scan(&f, buf, size, max_size, frame_size);
}

/* A rich request: every container kind, strings, bin, ext, floats, ints. */
static void pack_rich_request(msgpack_sbuffer *sb)
{
	static const char zeros[300];
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_uint32(&pk, MSGID);
	msgpack_pack_str_with_body(&pk, "ping", 4);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 6);
	msgpack_pack_str_with_body(&pk, "s", 1);
	msgpack_pack_str_with_body(&pk, zeros, 300); /* str16 */
	msgpack_pack_str_with_body(&pk, "b", 1);
	msgpack_pack_bin_with_body(&pk, zeros, 40); /* bin8 */
	msgpack_pack_str_with_body(&pk, "e", 1);
	msgpack_pack_ext_with_body(&pk, zeros, 20, 5); /* ext8 */
	msgpack_pack_str_with_body(&pk, "f", 1);
	msgpack_pack_float(&pk, 1.5f);
	msgpack_pack_str_with_body(&pk, "d", 1);
	msgpack_pack_double(&pk, -2.25);
	msgpack_pack_str_with_body(&pk, "n", 1);
	msgpack_pack_array(&pk, 10);
	msgpack_pack_int64(&pk, -1);
	msgpack_pack_int64(&pk, -200);
	msgpack_pack_uint64(&pk, 70000);
	msgpack_pack_int64(&pk, -70000);
	msgpack_pack_uint64(&pk, 1ull << 40);
	msgpack_pack_nil(&pk);
	msgpack_pack_true(&pk);
	msgpack_pack_false(&pk);
	msgpack_pack_map(&pk, 0);
	msgpack_pack_array(&pk, 0);
}

static void test_frame_byte_at_a_time_completes_exactly_at_last_byte(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	pack_rich_request(&sb);
	size_t n = sb.size;
	pack_rich_request(&sb); /* a second message right behind: the stream keeps going */
	assert_int_equal(sb.size, 2 * n);
	struct proto_frame f;
	proto_frame_reset(&f);
	for (size_t k = 1; k <= sb.size; k++) {
		size_t frame_size = 0;
		int rc = proto_frame_scan(&f, (const uint8_t *)sb.data, k, SCAN_MAX, &frame_size);
		if (k < n && rc != PROTO_FRAME_MORE) {
			fail_msg("%zu of %zu bytes: rc %d, want MORE", k, n, rc);
		}
		if (k == n) {
			assert_int_equal(rc, PROTO_FRAME_COMPLETE);
			assert_int_equal(frame_size, n);
			break;
		}
	}
	/* The frame is a request: unknown params keys are ignored, so it pings. */
	send_bytes(sb.data, n);
	check_bool(dig(expect_result(), "pong"), true);
	msgpack_sbuffer_destroy(&sb);
}

/* A scan page's results are counted at its end: the header written for the
 * limit and set afterwards must give the bytes of a header written first,
 * whatever the widths (1, 3 or 5 bytes: msgpack's fixarray, array16, array32). */
static void test_results_count_set_last_writes_the_bytes_of_count_first(void **state)
{
	(void)state;
	const uint32_t limits[] = { 1, 15, 16, 100000 };
	const uint32_t counts[] = { 0, 1, 15, 16, 17, 70000 };
	struct core_medical m = { .status = CORE_MEDICAL_ACTIVE, .suspended_since = -1 };
	for (size_t a = 0; a < sizeof(limits) / sizeof(limits[0]); a++) {
		for (size_t b = 0; b < sizeof(counts) / sizeof(counts[0]); b++) {
			uint32_t limit = limits[a];
			uint32_t count = counts[b];
			if (count > limit) {
				continue;
			}
			struct proto_writer *first = proto_writer_new();
			struct proto_writer *last = proto_writer_new();
			assert_non_null(first);
			assert_non_null(last);
			proto_write_compute_begin(first, 7, count, true);
			size_t at = proto_write_compute_open(last, 7, limit, true);
			for (uint32_t i = 0; i < count; i++) {
				proto_write_medical(first, "110101198001010013", &m);
				proto_write_medical(last, "110101198001010013", &m);
			}
			proto_write_results_count(last, at, limit, count);
			proto_write_results_next(first, NULL, 0);
			proto_write_results_next(last, NULL, 0);
			size_t first_size;
			size_t last_size;
			const uint8_t *x = proto_writer_data(first, &first_size);
			const uint8_t *y = proto_writer_data(last, &last_size);
			assert_int_equal(first_size, last_size);
			assert_memory_equal(x, y, first_size);
			proto_writer_free(first);
			proto_writer_free(last);
		}
	}
}

static void test_frame_two_messages_back_to_back_give_first_size(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	pack_textf(&sb, "[0, 1, 'ping', [{}]]");
	size_t first = sb.size;
	/* [0, 1, 'ping', [{}]]: 94 00 01 a4 'ping' 91 80 = 1+1+1+5+1+1 = 10 bytes */
	assert_int_equal(first, 10);
	msgpack_sbuffer_write(&sb, "\x93\x02\xa4ping\x90", 8); /* [2, 'ping', []] */
	size_t frame_size;
	assert_int_equal(scan(sb.data, sb.size, SCAN_MAX, &frame_size), PROTO_FRAME_COMPLETE);
	assert_int_equal(frame_size, 10);
	assert_int_equal(scan(sb.data + 10, sb.size - 10, SCAN_MAX, &frame_size), PROTO_FRAME_COMPLETE);
	assert_int_equal(frame_size, 8);
	msgpack_sbuffer_destroy(&sb);
}

static void test_frame_never_used_byte_c1_is_invalid(void **state)
{
	(void)state;
	size_t frame_size;
	assert_int_equal(scan("\xc1", 1, SCAN_MAX, &frame_size), PROTO_FRAME_INVALID);
	assert_int_equal(scan("\x92\x01\xc1", 3, SCAN_MAX, &frame_size), PROTO_FRAME_INVALID);
	assert_int_equal(scan("\x81\xc1\x01", 3, SCAN_MAX, &frame_size), PROTO_FRAME_INVALID);
	/* The same array not yet complete is only waiting for bytes. */
	assert_int_equal(scan("\x92\x01", 2, SCAN_MAX, &frame_size), PROTO_FRAME_MORE);
}

static void test_frame_nesting_limit_both_sides(void **state)
{
	(void)state;
	/* README: nesting at most 32 deep; deeper is malformed. */
	assert_int_equal(PROTO_DEPTH_MAX, 32);
	uint8_t buf[PROTO_DEPTH_MAX + 2];
	size_t frame_size;
	memset(buf, 0x91, sizeof(buf)); /* [[[ ... ]]] one element each */
	buf[PROTO_DEPTH_MAX] = 0x01;
	assert_int_equal(scan(buf, PROTO_DEPTH_MAX + 1, SCAN_MAX, &frame_size), PROTO_FRAME_COMPLETE);
	assert_int_equal(frame_size, PROTO_DEPTH_MAX + 1);
	buf[PROTO_DEPTH_MAX] = 0x91;
	buf[PROTO_DEPTH_MAX + 1] = 0x01;
	assert_int_equal(scan(buf, PROTO_DEPTH_MAX + 2, SCAN_MAX, &frame_size), PROTO_FRAME_INVALID);
	/* Maps count the same: {1: {1: ... }} 33 deep. */
	uint8_t map[2 * (PROTO_DEPTH_MAX + 1) + 1];
	for (uint32_t i = 0; i <= PROTO_DEPTH_MAX; i++) {
		map[2 * i] = 0x81;
		map[2 * i + 1] = 0x01;
	}
	map[sizeof(map) - 1] = 0x01;
	assert_int_equal(scan(map, sizeof(map), SCAN_MAX, &frame_size), PROTO_FRAME_INVALID);
}

static void test_frame_declared_4_billion_elements_too_large_from_header(void **state)
{
	(void)state;
	size_t frame_size;
	/* Five bytes declare 2^32-1 elements: answered from the header alone, never
	 * "more" (which would have the caller buffer gigabytes), never unpacked. */
	assert_int_equal(scan("\xdd\xff\xff\xff\xff", 5, SCAN_MAX, &frame_size), PROTO_FRAME_TOO_LARGE);
	assert_int_equal(scan("\xdf\xff\xff\xff\xff", 5, SCAN_MAX, &frame_size), PROTO_FRAME_TOO_LARGE);
	/* Nested inside a request, too. */
	assert_int_equal(scan("\x94\x00\x01\xa4ping\xdd\xff\xff\xff\xff", 13, SCAN_MAX, &frame_size),
			 PROTO_FRAME_TOO_LARGE);
	/* A sane count that just has not arrived yet. */
	assert_int_equal(scan("\xdc\x00\x10", 3, SCAN_MAX, &frame_size), PROTO_FRAME_MORE);
}

static void test_frame_str32_bin32_ext32_longer_than_max_too_large(void **state)
{
	(void)state;
	size_t frame_size;
	/* str32 of 4097 bytes with max 4096. */
	assert_int_equal(scan("\xdb\x00\x00\x10\x01", 5, 4096, &frame_size), PROTO_FRAME_TOO_LARGE);
	assert_int_equal(scan("\xdb\xff\xff\xff\xff", 5, SCAN_MAX, &frame_size), PROTO_FRAME_TOO_LARGE);
	assert_int_equal(scan("\xc6\xff\xff\xff\xff", 5, SCAN_MAX, &frame_size), PROTO_FRAME_TOO_LARGE);
	assert_int_equal(scan("\xc9\xff\xff\xff\xff\x01", 6, SCAN_MAX, &frame_size), PROTO_FRAME_TOO_LARGE);
}

static void test_frame_size_limit_both_sides(void **state)
{
	(void)state;
	uint8_t buf[200] = { 0xd9, 95 }; /* str8 of 95 bytes: 97 in all */
	size_t frame_size;
	assert_int_equal(scan(buf, 97, 97, &frame_size), PROTO_FRAME_COMPLETE);
	assert_int_equal(frame_size, 97);
	assert_int_equal(scan(buf, 50, 97, &frame_size), PROTO_FRAME_MORE);
	assert_int_equal(scan(buf, 2, 96, &frame_size), PROTO_FRAME_TOO_LARGE);
	/* Headers each within the limit, elements adding up past it:
	 * [str8(50), str8(50)] = 1 + 52 + 52 = 105 bytes > 100. */
	uint8_t two[105] = { 0x92, 0xd9, 50 };
	two[53] = 0xd9;
	two[54] = 50;
	assert_int_equal(scan(two, 53, 100, &frame_size), PROTO_FRAME_MORE);
	assert_int_equal(scan(two, 105, 100, &frame_size), PROTO_FRAME_TOO_LARGE);
	assert_int_equal(scan(two, 105, 105, &frame_size), PROTO_FRAME_COMPLETE);
}

/* The packed element in sb must be `size` bytes starting with `first` (the
 * test's own construction); the scanner must find exactly that size with a
 * byte of the next message behind it, and want more one byte short. */
static void check_element(const char *what, msgpack_sbuffer *sb, uint8_t first, size_t size)
{
	if (sb->size != size || (uint8_t)sb->data[0] != first) {
		fail_msg("%s: packed %zu bytes starting %02x, want %zu starting %02x", what, sb->size,
			 (uint8_t)sb->data[0], size, first);
	}
	msgpack_sbuffer_write(sb, "\x01", 1);
	size_t frame_size;
	int rc = scan(sb->data, sb->size, SCAN_MAX, &frame_size);
	if (rc != PROTO_FRAME_COMPLETE || frame_size != size) {
		fail_msg("%s: rc %d size %zu, want complete at %zu", what, rc, frame_size, size);
	}
	if (size > 1 && (rc = scan(sb->data, size - 1, SCAN_MAX, &frame_size)) != PROTO_FRAME_MORE) {
		fail_msg("%s: %zu of %zu bytes: rc %d, want more", what, size - 1, size, rc);
	}
}

#define ELEMENT(first, size, ...)                                     \
	do {                                                          \
		msgpack_sbuffer_clear(&sb);                           \
		__VA_ARGS__;                                          \
		check_element(#__VA_ARGS__, &sb, (first), (size));    \
	} while (0)

static void pack_nils(msgpack_packer *pk, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		msgpack_pack_nil(pk);
	}
}

static void test_frame_every_msgpack_type_scans_to_its_size(void **state)
{
	(void)state;
	static const char body[70000];
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer p;
	msgpack_packer_init(&p, &sb, msgpack_sbuffer_write);
	msgpack_packer *pk = &p;
	/* Sizes from the msgpack spec: header byte, length field, payload. */
	ELEMENT(0x05, 1, msgpack_pack_int(pk, 5));                     /* positive fixint */
	ELEMENT(0xfb, 1, msgpack_pack_int(pk, -5));                    /* negative fixint */
	ELEMENT(0xcc, 2, msgpack_pack_fix_uint8(pk, 200));             /* uint8 */
	ELEMENT(0xcd, 3, msgpack_pack_fix_uint16(pk, 1000));           /* uint16 */
	ELEMENT(0xce, 5, msgpack_pack_fix_uint32(pk, 100000));         /* uint32 */
	ELEMENT(0xcf, 9, msgpack_pack_fix_uint64(pk, 1ull << 40));     /* uint64 */
	ELEMENT(0xd0, 2, msgpack_pack_fix_int8(pk, -100));             /* int8 */
	ELEMENT(0xd1, 3, msgpack_pack_fix_int16(pk, -1000));           /* int16 */
	ELEMENT(0xd2, 5, msgpack_pack_fix_int32(pk, -100000));         /* int32 */
	ELEMENT(0xd3, 9, msgpack_pack_fix_int64(pk, -(1ll << 40)));    /* int64 */
	ELEMENT(0xca, 5, msgpack_pack_float(pk, 1.5f));                /* float32 */
	ELEMENT(0xcb, 9, msgpack_pack_double(pk, 1.5));                /* float64 */
	ELEMENT(0xa3, 4, msgpack_pack_str_with_body(pk, body, 3));     /* fixstr */
	ELEMENT(0xa0, 1, msgpack_pack_str_with_body(pk, body, 0));     /* empty fixstr */
	ELEMENT(0xd9, 42, msgpack_pack_str_with_body(pk, body, 40));   /* str8 */
	ELEMENT(0xda, 303, msgpack_pack_str_with_body(pk, body, 300)); /* str16 */
	ELEMENT(0xdb, 70005, msgpack_pack_str_with_body(pk, body, 70000)); /* str32 */
	ELEMENT(0xc4, 5, msgpack_pack_bin_with_body(pk, body, 3));     /* bin8 */
	ELEMENT(0xc5, 303, msgpack_pack_bin_with_body(pk, body, 300)); /* bin16 */
	ELEMENT(0xc6, 70005, msgpack_pack_bin_with_body(pk, body, 70000)); /* bin32 */
	ELEMENT(0xd4, 3, msgpack_pack_ext_with_body(pk, body, 1, 1));  /* fixext1: d4 type data */
	ELEMENT(0xd5, 4, msgpack_pack_ext_with_body(pk, body, 2, 1));  /* fixext2 */
	ELEMENT(0xd6, 6, msgpack_pack_ext_with_body(pk, body, 4, 1));  /* fixext4 */
	ELEMENT(0xd7, 10, msgpack_pack_ext_with_body(pk, body, 8, 1)); /* fixext8 */
	ELEMENT(0xd8, 18, msgpack_pack_ext_with_body(pk, body, 16, 1)); /* fixext16 */
	ELEMENT(0xc7, 6, msgpack_pack_ext_with_body(pk, body, 3, 1));  /* ext8: c7 len type data */
	ELEMENT(0xc8, 304, msgpack_pack_ext_with_body(pk, body, 300, 1)); /* ext16 */
	ELEMENT(0xc9, 70006, msgpack_pack_ext_with_body(pk, body, 70000, 1)); /* ext32 */
	ELEMENT(0x93, 4, msgpack_pack_array(pk, 3); pack_nils(pk, 3));  /* fixarray */
	ELEMENT(0x90, 1, msgpack_pack_array(pk, 0));                    /* empty fixarray */
	ELEMENT(0xdc, 23, msgpack_pack_array(pk, 20); pack_nils(pk, 20)); /* array16 */
	ELEMENT(0xdd, 70005, msgpack_pack_array(pk, 70000); pack_nils(pk, 70000)); /* array32 */
	ELEMENT(0x81, 3, msgpack_pack_map(pk, 1); pack_nils(pk, 2));    /* fixmap */
	ELEMENT(0x80, 1, msgpack_pack_map(pk, 0));                      /* empty fixmap */
	ELEMENT(0xde, 43, msgpack_pack_map(pk, 20); pack_nils(pk, 40)); /* map16 */
	ELEMENT(0xdf, 140005, msgpack_pack_map(pk, 70000); pack_nils(pk, 140000)); /* map32 */
	ELEMENT(0xc0, 1, msgpack_pack_nil(pk));
	ELEMENT(0xc3, 1, msgpack_pack_true(pk));
	ELEMENT(0xc2, 1, msgpack_pack_false(pk));
	/* Containers holding sized elements: [str16(300), bin8(3), {fixext4: int64}]. */
	ELEMENT(0x93, 1 + 303 + 5 + 1 + 6 + 9, msgpack_pack_array(pk, 3); msgpack_pack_str_with_body(pk, body, 300);
		msgpack_pack_bin_with_body(pk, body, 3); msgpack_pack_map(pk, 1);
		msgpack_pack_ext_with_body(pk, body, 4, 1); msgpack_pack_fix_int64(pk, 1));
	msgpack_sbuffer_destroy(&sb);
}

/* The stream of a connection: scan, dispatch, scan on past the frame. */
static void test_frame_then_dispatch_pipelined_stream(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer stream;
	msgpack_sbuffer_init(&stream);
	static const uint32_t msgids[3] = { 1, 4294967295u, 2 };
	for (uint32_t i = 0; i < 3; i++) {
		pack_textf(&sb, "[0, %u, 'ping', []]", msgids[i]);
		msgpack_sbuffer_write(&stream, sb.data, sb.size);
		pack_textf(&sb, "[2, 'ping', [{}]]"); /* a notification between: never answered */
		msgpack_sbuffer_write(&stream, sb.data, sb.size);
	}
	size_t offset = 0;
	uint32_t answered = 0;
	while (offset < stream.size) {
		size_t frame_size;
		assert_int_equal(scan(stream.data + offset, stream.size - offset, SCAN_MAX, &frame_size),
				 PROTO_FRAME_COMPLETE);
		send_bytes(stream.data + offset, frame_size);
		offset += frame_size;
		assert_false(R.close);
		if (R.size > 0) {
			assert_true(answered < 3);
			assert_int_equal(R.msgid, msgids[answered++]);
			check_bool(dig(R.result, "pong"), true);
		}
	}
	assert_int_equal(answered, 3);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&stream);
}

/* ------------------------------------------------------------------------ */
/* 2. Envelope, through dispatch_frame. */

/* Not a msgpack-RPC request: error 1, and the connection closes (§5). */
static void expect_malformed(const char *text)
{
	send_text("%s", text);
	if (!R.close || R.error == NULL) {
		fail_msg("%s: close %d, response %s, want malformed and close", text, R.close,
			 R.size > 0 ? describe(&R.unpacked.data) : "(none)");
	}
	check_error_map(R.error, PROTO_MALFORMED, NULL, text);
}

static void test_envelope_not_an_array_is_malformed_and_closes(void **state)
{
	(void)state;
	expect_malformed("{}");
	expect_malformed("{a: 1}");
	expect_malformed("5");
	expect_malformed("'ping'");
	expect_malformed("nil");
	/* proto.h: msgid 0 when it could not be read. */
	assert_int_equal(R.msgid, 0);
}

static void test_envelope_wrong_length_is_malformed(void **state)
{
	(void)state;
	expect_malformed("[]");
	expect_malformed("[0]");
	expect_malformed("[0, 7, 'ping']");
	expect_malformed("[0, 7, 'ping', [], 1]");
	expect_malformed("[2, 'ping']");
	expect_malformed("[2, 'ping', [], 1]");
}

static void test_envelope_type_other_than_0_or_2_is_malformed(void **state)
{
	(void)state;
	expect_malformed("[1, 7, nil, {pong: true}]"); /* a response is not a request */
	expect_malformed("[1, 7, 'ping', []]");
	expect_malformed("[3, 7, 'ping', []]");
	expect_malformed("[-1, 7, 'ping', []]");
	expect_malformed("['0', 7, 'ping', []]");
	expect_malformed("[0.0, 7, 'ping', []]");
}

static void test_envelope_msgid_must_be_uint32(void **state)
{
	(void)state;
	expect_malformed("[0, 4294967296, 'ping', []]");
	expect_malformed("[0, -1, 'ping', []]");
	expect_malformed("[0, 7.0, 'ping', []]");
	expect_malformed("[0, '7', 'ping', []]");
	expect_malformed("[0, nil, 'ping', []]");
	send_text("[0, 4294967295, 'ping', []]");
	assert_false(R.close);
	assert_int_equal(R.msgid, 4294967295u);
	check_bool(dig(R.result, "pong"), true);
	send_text("[0, 0, 'ping', []]");
	assert_false(R.close);
	check_bool(dig(R.result, "pong"), true);
}

static void test_envelope_method_must_be_a_string(void **state)
{
	(void)state;
	expect_malformed("[0, 7, 5, []]");
	expect_malformed("[0, 7, nil, []]");
	expect_malformed("[0, 7, ['ping'], []]");
	expect_malformed("[2, 5, []]");
	/* §5: responses carry the request's msgid, here readable. */
	send_text("[0, 9, 5, []]");
	check_error_map(R.error, PROTO_MALFORMED, NULL, "method 5");
	assert_int_equal(R.msgid, 9);
}

static void test_envelope_params_must_be_an_array_holding_a_map(void **state)
{
	(void)state;
	expect_malformed("[0, 7, 'ping', {}]");
	expect_malformed("[0, 7, 'ping', nil]");
	expect_malformed("[0, 7, 'ping', 'x']");
	expect_malformed("[0, 7, 'ping', [5]]"); /* README: first element not a map */
	expect_malformed("[0, 7, 'ping', [[]]]");
	expect_malformed("[2, 'ping', {}]");
	/* README: params [] is accepted as {}. */
	send_text("[0, 7, 'ping', []]");
	check_bool(dig(expect_result(), "pong"), true);
}

static void test_envelope_not_one_msgpack_message_is_malformed(void **state)
{
	(void)state;
	send_bytes("\xc1", 1);
	assert_true(R.close);
	check_error_map(R.error, PROTO_MALFORMED, NULL, "c1");
	send_bytes("\x94\x00\x07\xa4ping", 7); /* truncated */
	assert_true(R.close);
	check_error_map(R.error, PROTO_MALFORMED, NULL, "truncated");
	send_bytes("\x94\x00\x07\xa4ping\x90\xc0", 10); /* a byte beyond the message */
	assert_true(R.close);
	check_error_map(R.error, PROTO_MALFORMED, NULL, "trailing byte");
}

static void test_envelope_nesting_32_deep_accepted_33_malformed(void **state)
{
	(void)state;
	/* [0, 7, 'ping', [{x: [[...1...]]}]]: envelope, params, map = 3 levels, + 29 arrays = 32. */
	char open[40] = { 0 };
	char close[40] = { 0 };
	memset(open, '[', 29);
	memset(close, ']', 29);
	send_text("[0, 7, 'ping', [{x: %s1%s}]]", open, close);
	check_bool(dig(expect_result(), "pong"), true);
	size_t frame_size;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	open[29] = '[';
	close[29] = ']';
	pack_textf(&sb, "[0, 7, 'ping', [{x: %s1%s}]]", open, close);
	assert_int_equal(scan(sb.data, sb.size, SCAN_MAX, &frame_size), PROTO_FRAME_INVALID);
	send_bytes(sb.data, sb.size);
	assert_true(R.close);
	check_error_map(R.error, PROTO_MALFORMED, NULL, "33 deep");
	msgpack_sbuffer_destroy(&sb);
}

static void test_unknown_method_is_code_2_and_keeps_connection(void **state)
{
	(void)state;
	rpc("nosuch.method", "{}");
	expect_error(PROTO_UNKNOWN_METHOD, NULL);
	assert_false(R.close);
	assert_int_equal(R.msgid, MSGID);
	rpc("Ping", "{}"); /* method names are exact */
	expect_error(PROTO_UNKNOWN_METHOD, NULL);
	assert_false(R.close);
	rpc("", "{}");
	expect_error(PROTO_UNKNOWN_METHOD, NULL);
	/* The connection still serves. */
	rpc("ping", "{}");
	check_bool(dig(expect_result(), "pong"), true);
}

static void test_notification_is_executed_never_answered(void **state)
{
	(void)state;
	send_text("[2, 'ping', [{}]]");
	assert_int_equal(R.size, 0);
	assert_false(R.close);
	send_text("[2, 'nosuch.method', [{}]]");
	assert_int_equal(R.size, 0);
	assert_false(R.close);
	send_text("[2, 'policy.put', [{policy: {city: 'x'}}]]"); /* an error, also unanswered */
	assert_int_equal(R.size, 0);
	/* Executed: the policy sent as a notification holds afterwards. */
	send_text("[2, 'policy.put', [{policy: {city: '310000', name: 'Shanghai', deadline: {day: 15}, "
		  "periods: [{from: 202001, base_min: 1, base_max: 2}]}}]]");
	assert_int_equal(R.size, 0);
	rpc("policy.get", "{city: '310000'}");
	check_str(dig(expect_result(), "policy.name"), "Shanghai");
	check_int(dig(R.result, "policy.deadline.day"), 15);
}

static void test_ping_answers_pong_and_version(void **state)
{
	(void)state;
	rpc("ping", "{}");
	const msgpack_object *r = expect_result();
	check_bool(dig(r, "pong"), true);
	assert_int_equal(dig(r, "version")->type, MSGPACK_OBJECT_STR);
	check_str(dig(r, "version"), PROTO_VERSION);
	rpc("ping", "{unknown: [1, 2], keys: nil}"); /* Appendix A: unknown keys ignored */
	check_bool(dig(expect_result(), "pong"), true);
}

static void test_reject_answers_too_large_or_malformed_with_msgid_0(void **state)
{
	(void)state;
	const uint8_t *response;
	size_t size;
	dispatch_reject(D, 0, PROTO_TOO_LARGE, "message too large", &response, &size);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	assert_int_equal(msgpack_unpack_next(&u, (const char *)response, size, &off), MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(off, size);
	check_int(dig(&u.data, "0"), 1);
	check_int(dig(&u.data, "1"), 0);
	check_error_map(dig(&u.data, "2"), PROTO_TOO_LARGE, NULL, "reject");
	check_nil(dig(&u.data, "3"));
	dispatch_reject(D, 0, PROTO_MALFORMED, "not msgpack", &response, &size);
	off = 0;
	assert_int_equal(msgpack_unpack_next(&u, (const char *)response, size, &off), MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(off, size);
	check_int(dig(&u.data, "1"), 0);
	check_error_map(dig(&u.data, "2"), PROTO_MALFORMED, NULL, "reject");
	msgpack_unpacked_destroy(&u);
}

/* ------------------------------------------------------------------------ */
/* 3. Bad input of SPEC §2.1, per person, through arrears.compute. */

static void test_good_person_alone_computes(void **state)
{
	(void)state;
	assert_string_equal(id_of("11010519491231002"), ID_F); /* the helper agrees with the hand sums */
	assert_string_equal(id_of("11010519700615001"), ID_M);
	assert_string_equal(id_of("11010519800315002"), ID_F1980);
	rpc("arrears.compute", "{as_of: " AS_OF ", persons: [%s]}", good_person());
	check_good(&expect_results(1)->via.array.ptr[0]);
}

static void test_id_errors(void **state)
{
	(void)state;
	KEEP(s, slot(NULL));
	static const struct {
		const char *id;
		const char *why;
	} bad[] = {
		{ "'11010519491231002'", "17 characters" },
		{ "'11010519491231002X0'", "19 characters" },
		{ "''", "empty" },
		{ "'11010A19491231002X'", "non-digit in the first 17" },
		{ "'1101051949123100 X'", "space in the first 17" },
		{ "'110105194912310020'", "wrong check char (X expected)" },
		{ "'11010519491231002x'", "lower-case x" },
		{ "110105194912310020", "an integer" },
		{ "nil", "nil (absent)" },
	};
	for (uint32_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_person(fmt("{id: %s, slots: [%s]}", bad[i].id, s), PROTO_INVALID_ARGUMENT, "persons[1].id",
			      bad[i].why);
	}
	expect_person(fmt("{slots: [%s]}", s), PROTO_INVALID_ARGUMENT, "persons[1].id", "missing");
	/* Valid check chars, invalid birth dates (chars 7..14). */
	expect_person(person(id_of("11010519490230002"), s), PROTO_INVALID_ARGUMENT, "persons[1].id", "19490230");
	expect_person(person(id_of("11010519491301002"), s), PROTO_INVALID_ARGUMENT, "persons[1].id", "19491301");
	expect_person(person(id_of("11010519000229002"), s), PROTO_INVALID_ARGUMENT, "persons[1].id",
		      "19000229, 1900 not leap");
	/* README: the birth date must lie in 19000101..21001231. */
	expect_person(person(id_of("11010518991231002"), s), PROTO_INVALID_ARGUMENT, "persons[1].id", "18991231");
	expect_person(person(id_of("11010520000229002"), s), 0, NULL, "20000229, leap");
	expect_person(person(id_of("11010519000101002"), s), 0, NULL, "19000101");
	/* The entry of a bad id echoes the id it was sent. */
	rpc("arrears.compute", "{as_of: " AS_OF ", persons: [%s]}", person("11010519491231002x", s));
	check_entry(&expect_results(1)->via.array.ptr[0], "11010519491231002x", PROTO_INVALID_ARGUMENT,
		    "persons[0].id", "echo");
}

static void test_retire_class_and_person_shape_errors(void **state)
{
	(void)state;
	KEEP(s, slot(NULL));
	expect_person(fmt("{id: '%s', retire_class: 'm65', slots: [%s]}", ID_F, s), PROTO_INVALID_ARGUMENT,
		      "persons[1].retire_class", "m65");
	expect_person(fmt("{id: '%s', retire_class: 'F55', slots: [%s]}", ID_F, s), PROTO_INVALID_ARGUMENT,
		      "persons[1].retire_class", "F55");
	expect_person(fmt("{id: '%s', retire_class: 60, slots: [%s]}", ID_F, s), PROTO_INVALID_ARGUMENT,
		      "persons[1].retire_class", "60");
	expect_person(fmt("{id: '%s', retire_class: 'f50', slots: [%s]}", ID_F, s), 0, NULL, "f50");
	expect_person(fmt("{id: '%s', retire_class: nil, slots: [%s]}", ID_F, s), 0, NULL, "nil");
	expect_person(fmt("{id: '%s'}", ID_F), PROTO_INVALID_ARGUMENT, "persons[1].slots", "slots missing");
	expect_person(fmt("{id: '%s', slots: %s}", ID_F, s), PROTO_INVALID_ARGUMENT, "persons[1].slots",
		      "slots a map");
	expect_person(fmt("{id: '%s', slots: 5}", ID_F), PROTO_INVALID_ARGUMENT, "persons[1].slots", "slots 5");
	expect_person(fmt("{id: '%s', slots: [%s, 5]}", ID_F, s), PROTO_INVALID_ARGUMENT, "persons[1].slots[1]",
		      "slot 5");
	expect_person(fmt("{id: '%s', slots: [[]]}", ID_F), PROTO_INVALID_ARGUMENT, "persons[1].slots[0]",
		      "slot an array");
	expect_person(fmt("{id: '%s', slots: []}", ID_F), 0, NULL, "no slots");
	expect_person("5", PROTO_INVALID_ARGUMENT, "persons[1]", "person 5");
	expect_person("[]", PROTO_INVALID_ARGUMENT, "persons[1]", "person an array");
	/* Appendix A: unknown keys in maps are ignored. */
	expect_person(fmt("{id: '%s', note: 'x', slots: [%s]}", ID_F, slot("note", "[1, {a: 2}]", NULL)), 0, NULL,
		      "unknown keys");
}

/* Slot field cases: persons[1].slots[1] is the default slot with one change. */
static const struct {
	const char *key;
	const char *value;
	const char *field; /* NULL: valid */
} slot_cases[] = {
	{ "month", DEL, "month" },
	{ "month", "nil", "month" }, /* README: nil counts as absent */
	{ "month", "194912", "month" },
	{ "month", "210001", "month" },
	{ "month", "202313", "month" },
	{ "month", "202300", "month" },
	{ "month", "-202302", "month" },
	{ "month", "20230201", "month" },
	{ "month", "202302.0", "month" },
	{ "month", "'202302'", "month" },
	{ "month", "209912", NULL }, /* last month of the range, a future month */
	{ "city", DEL, "city" },
	{ "city", "'11000'", "city" },
	{ "city", "'1100000'", "city" },
	{ "city", "'11000a'", "city" },
	{ "city", "'ABCDEF'", "city" },
	{ "city", "110000", "city" },
	{ "type", DEL, "type" },
	{ "type", "'pensions'", "type" },
	{ "type", "'Pension'", "type" },
	{ "type", "'life'", "type" },
	{ "type", "0", "type" },
	{ "type", "'medical'", NULL },
	{ "type", "'maternity'", NULL },
	{ "category", DEL, "category" },
	{ "category", "'contract'", "category" },
	{ "category", "'Flexible'", "category" },
	{ "category", "1", "category" },
	{ "category", "'employee'", NULL },
	{ "base", DEL, "base" },
	{ "base", "-1", "base" },
	{ "base", "10000000001", "base" },
	{ "base", "5.0", "base" },
	{ "base", "650000.0", "base" },
	{ "base", "'650000'", "base" },
	{ "base", "true", "base" },
	{ "base", "0", NULL },
	{ "base", "10000000000", NULL },
	{ "paid", DEL, "paid" },
	{ "paid", "-1", "paid" },
	{ "paid", "10000000001", "paid" },
	{ "paid", "130000.0", "paid" },
	{ "paid", "'130000'", "paid" },
	{ "paid", "10000000000", NULL },
	{ "paid_date", DEL, "paid_date" },
	{ "paid_date", "20230230", "paid_date" },
	{ "paid_date", "20230229", "paid_date" },
	{ "paid_date", "20231301", "paid_date" },
	{ "paid_date", "20230200", "paid_date" },
	{ "paid_date", "18991231", "paid_date" },
	{ "paid_date", "21010101", "paid_date" },
	{ "paid_date", "-1", "paid_date" },
	{ "paid_date", "20230220.0", "paid_date" },
	{ "paid_date", "'20230220'", "paid_date" },
	{ "paid_date", "20240229", NULL },
	{ "paid_date", "19000101", NULL },
	{ "paid_date", "21001231", NULL },
	{ "deemed", "1", "deemed" },
	{ "deemed", "0", "deemed" },
	{ "deemed", "'true'", "deemed" },
	{ "deemed", "nil", NULL },
	{ "deemed", DEL, NULL },
	{ "deemed", "false", NULL },
};

static void test_slot_field_errors_each_field(void **state)
{
	(void)state;
	KEEP(first, slot("month", "202301", NULL));
	for (uint32_t i = 0; i < sizeof(slot_cases) / sizeof(slot_cases[0]); i++) {
		const char *context = fmt("%s = %s", slot_cases[i].key,
					  slot_cases[i].value == DEL ? "(missing)" : slot_cases[i].value);
		const char *bad = slot(slot_cases[i].key, slot_cases[i].value, NULL);
		const char *at = slot_cases[i].field == NULL ? NULL : fmt("persons[1].slots[1].%s", slot_cases[i].field);
		expect_person(person(ID_F, fmt("%s, %s", first, bad)), slot_cases[i].field == NULL ? 0 : 3, at, context);
	}
}

static void test_slot_paid_and_paid_date_rule(void **state)
{
	(void)state;
	/* §2.1: paid > 0 requires a valid paid_date; paid == 0 requires paid_date == 0. */
	expect_person(person(ID_F, slot("paid", "130000", "paid_date", "0", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].paid_date", "paid without date");
	expect_person(person(ID_F, slot("paid", "1", "paid_date", "0", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].paid_date", "paid 1 without date");
	expect_person(person(ID_F, slot("paid", "0", "paid_date", "20230220", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].paid_date", "date without paid");
	expect_person(person(ID_F, slot("paid", "0", "paid_date", "0", NULL)), 0, NULL, "unpaid");
	expect_person(person(ID_F, slot("paid", "1", "paid_date", "20230220", NULL)), 0, NULL, "paid 1");
}

static void test_slot_deemed_rule(void **state)
{
	(void)state;
	/* §2.1: a deemed slot has base == paid == paid_date == 0. */
	expect_person(person(ID_F, slot("deemed", "true", "paid", "0", "paid_date", "0", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].deemed", "deemed with base");
	expect_person(person(ID_F, slot("deemed", "true", "base", "0", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].deemed", "deemed with paid");
	expect_person(person(ID_F, slot("deemed", "true", "base", "0", "paid", "0", "paid_date", "0", NULL)), 0, NULL,
		      "deemed, all zero");
	/* Appendix A: the paid/paid_date rule comes before the deemed rule. */
	expect_person(person(ID_F, slot("deemed", "true", "base", "0", "paid_date", "0", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].paid_date", "deemed, paid without date");
}

static void test_slot_duplicate_month_city_type_at_later_slot(void **state)
{
	(void)state;
	const char *a = slot(NULL);
	const char *other_month = slot("month", "202303", NULL);
	const char *other_type = slot("type", "'medical'", NULL);
	const char *other_city = slot("city", "'120000'", NULL);
	expect_person(person(ID_F, fmt("%s, %s, %s", a, other_month, a)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[2]", "third repeats first");
	expect_person(person(ID_F, fmt("%s, %s", a, slot("category", "'employee'", "base", "700000", NULL))),
		      PROTO_INVALID_ARGUMENT, "persons[1].slots[1]", "same key, other fields differ");
	expect_person(person(ID_F, fmt("%s, %s, %s", a, other_type, other_city)), 0, NULL, "type or city differ");
	/* Slot by slot (README): the duplicate slot 1 before slot 2's bad month,
	 * and slot 1's own fields before its duplicate rule. */
	expect_person(person(ID_F, fmt("%s, %s, %s", a, a, slot("month", "1", NULL))), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[1]", "duplicate before later field");
	expect_person(person(ID_F, fmt("%s, %s", a, slot("base", "-1", NULL))), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[1].base", "field before duplicate");
}

/* The message of persons[1]'s error after expect_person-style requests. */
static void expect_person_message(const char *bad, const char *at, const char *message, const char *context)
{
	rpc("arrears.compute", "{as_of: " AS_OF ", persons: [%s, %s]}", good_person(), bad);
	const msgpack_object *results = expect_results(2);
	check_good(&results->via.array.ptr[0]);
	check_entry(&results->via.array.ptr[1], NULL, PROTO_INVALID_ARGUMENT, at, context);
	const msgpack_object *m = dig(&results->via.array.ptr[1], "error.message");
	if (!is_str(m, message)) {
		fail_msg("%s: message %s, want \"%s\"", context, describe(m), message);
	}
}

/* Inline persons are read from the frame's bytes (proto/request.c), not
 * from msgpack-c's tree: the tree's rules for repeated keys hold there too.
 * A slot field's first value that is not nil counts (nil is absent); a
 * person's key counts at its first occurrence, and nil there is absent. */
static void test_repeated_keys_nil_first_and_keys_that_are_not_strings(void **state)
{
	(void)state;
	static const char rest[] = "city: '110000', type: 'pension', category: 'flexible', base: 650000, "
				   "paid: 130000, paid_date: 20230220";
	expect_person(person(ID_F, fmt("{month: nil, %s, month: 202302}", rest)), 0, NULL, "slot: nil, then a month");
	expect_person(person(ID_F, fmt("{month: 202302, %s, month: 'x'}", rest)), 0, NULL, "slot: a month, then 'x'");
	expect_person_message(person(ID_F, fmt("{month: 'x', %s, month: 202302}", rest)), "persons[1].slots[0].month",
			      "month must be a month YYYYMM 195001..209912, got a string", "slot: 'x', then a month");
	expect_person(person(ID_F, fmt("{1: 'month', nil: 2, true: 3, %s, month: 202302, [1]: {}}", rest)), 0, NULL,
		      "keys that are not strings are ignored");
	expect_person(person(ID_F, fmt("{month: nil, %s}", rest)), PROTO_INVALID_ARGUMENT, "persons[1].slots[0].month",
		      "slot: month nil only");
	expect_person_message(fmt("{id: nil, id: '%s', slots: []}", ID_F), "persons[1].id",
			      "id must be " PROTO_ID_EXPECTED ", got nothing", "person: id nil, then an id");
	expect_person_message(fmt("{slots: nil, id: '%s', slots: []}", ID_F), "persons[1].slots",
			      "slots must be an array, got nothing", "person: slots nil, then slots");
	expect_person(fmt("{id: '%s', slots: [], id: 5, slots: 5, retire_class: nil, retire_class: 'x'}", ID_F), 0,
		      NULL, "person: later repeats ignored");
	expect_person_message(fmt("{1: 2, id: '%s', slots: [], retire_class: 'x60'}", ID_F), "persons[1].retire_class",
			      "retire_class must be one of m60, f55, f50, got \"x60\"", "person: retire_class echoed");
}

/* A slot is decoded in one pass when its keys are fields written as
 * fixstr, once each, with values that hold (proto/request.c slot_fast);
 * any other shape goes field by field. Both give the same slots: one
 * person's answer is byte for byte the same whichever shapes its slots
 * take (detail on, so every slot shows). */
static void test_slot_in_one_pass_or_field_by_field_gives_the_same_answer(void **state)
{
	(void)state;
	static const char *const plain[] = {
		"{month: 202301, city: '110000', type: 'pension', category: 'flexible', base: 650000, paid: 0, "
		"paid_date: 0}",
		"{month: 202302, city: '110000', type: 'pension', category: 'employee', base: 650000, paid: 130000, "
		"paid_date: 20230301, deemed: false}",
		"{month: 202303, city: '120000', type: 'medical', category: 'employee', base: 0, paid: 0, "
		"paid_date: 0, deemed: true}",
	};
	static const char *const other[] = { /* the same slots: keys reordered, unknown, repeated, nil */
		"{paid_date: 0, paid: 0, base: 650000, category: 'flexible', type: 'pension', city: '110000', "
		"month: 202301, note: 'x'}",
		"{month: nil, city: '110000', type: 'pension', category: 'employee', base: 650000, paid: 130000, "
		"paid_date: 20230301, deemed: false, month: 202302, month: 1}",
		"{deemed: true, month: 202303, city: '120000', type: 'medical', category: 'employee', base: 0, "
		"paid: 0, paid_date: 0, 7: 8}",
	};
	char *answer[2];
	size_t size[2];
	for (uint32_t k = 0; k < 2; k++) {
		const char *const *slots = k == 0 ? plain : other;
		rpc("arrears.compute", "{as_of: " AS_OF ", detail: true, persons: [{id: '%s', slots: [%s, %s, %s]}]}",
		    ID_F, slots[0], slots[1], slots[2]);
		check_entry(&expect_results(1)->via.array.ptr[0], NULL, 0, NULL, k == 0 ? "plain" : "other");
		answer[k] = malloc(R.size);
		assert_non_null(answer[k]);
		memcpy(answer[k], R.bytes, R.size);
		size[k] = R.size;
	}
	assert_int_equal(size[0], size[1]);
	assert_memory_equal(answer[0], answer[1], size[0]);
	free(answer[0]);
	free(answer[1]);
	/* A slot that fails in one pass is read again field by field: its error as before. */
	expect_person_message(person(ID_F, fmt("%s, {month: 202304, city: '110000', type: 'pension', category: "
					      "'flexible', base: 650000, paid: 0, paid_date: 20230220}",
					      plain[0])),
			      "persons[1].slots[1].paid_date", "paid_date must be 0 when paid is 0, got 20230220",
			      "rule after one pass");
}

/* Every name of SPEC §2 (types, categories) and §3.1 (classes) is found by
 * the lookups of proto/request.c; one letter off is not. */
static void test_every_type_category_and_class_name(void **state)
{
	(void)state;
	static const char *const types[] = { "pension", "medical", "unemployment", "injury", "maternity" };
	static const char *const classes[] = { "m60", "f55", "f50" };
	char slots[2048] = "";
	size_t n = 0;
	for (uint32_t t = 0; t < 5; t++) {
		for (uint32_t c = 0; c < 2; c++) {
			n += (size_t)snprintf(slots + n, sizeof(slots) - n, "%s%s", n > 0 ? ", " : "",
					      slot("month", fmt("%u", 202301 + c), "type", fmt("'%s'", types[t]), "category",
						   c == 0 ? "'employee'" : "'flexible'", "paid", "0", "paid_date", "0",
						   NULL));
		}
	}
	for (uint32_t k = 0; k < 3; k++) {
		expect_person(fmt("{id: '%s', retire_class: '%s', slots: [%s]}", ID_F, classes[k], slots), 0, NULL,
			      classes[k]);
	}
	static const char *const near[] = { "pensioN", "Medical", "unemploymen", "injury ", "maternitx", "" };
	for (uint32_t i = 0; i < sizeof(near) / sizeof(near[0]); i++) {
		expect_person_message(person(ID_F, slot("type", fmt("'%s'", near[i]), NULL)), "persons[1].slots[0].type",
				      fmt("type must be " PROTO_EXPECT_TYPE ", got \"%s\"", near[i]), near[i]);
	}
	expect_person(person(ID_F, slot("category", "'flexiblE'", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].category", "flexiblE");
	expect_person(fmt("{id: '%s', retire_class: 'f51', slots: []}", ID_F), PROTO_INVALID_ARGUMENT,
		      "persons[1].retire_class", "f51");
}

/* Bytes of hand-made msgpack (the text packer writes the shortest forms only). */
struct bytes {
	uint8_t b[1024];
	size_t n;
};

static void put(struct bytes *o, const void *data, size_t size)
{
	assert_true(o->n + size <= sizeof(o->b));
	memcpy(o->b + o->n, data, size);
	o->n += size;
}

static void put_be(struct bytes *o, uint8_t head, uint64_t v, uint32_t width)
{
	uint8_t b[9] = { head };
	for (uint32_t i = 0; i < width; i++) {
		b[1 + i] = (uint8_t)(v >> (8 * (width - 1 - i)));
	}
	put(o, b, 1 + width);
}

/* A string as str8 (0xd9), str16 (0xda), str32 (0xdb), bin8 (0xc4) or fixstr (0xa0). */
static void put_str(struct bytes *o, uint8_t head, const char *s)
{
	size_t len = strlen(s);
	uint32_t width = head == 0xa0 ? 0 : head == 0xda ? 2 : head == 0xdb ? 4 : 1;
	put_be(o, head == 0xa0 ? (uint8_t)(0xa0 | len) : head, len, width);
	put(o, s, len);
}

/* [0, MSGID, 'arrears.compute', [{as_of: AS_OF, persons: [good, {id, slots: [slot]}]}]]
 * with the slot's map given as bytes. */
static void send_slot_bytes(const struct bytes *slot_map)
{
	msgpack_sbuffer sb;
	struct bytes f = { .n = 0 };
	put(&f, "\x94\x00", 2);
	put_be(&f, 0xce, MSGID, 4);
	put_str(&f, 0xa0, "arrears.compute");
	put(&f, "\x91\x82", 2);
	put_str(&f, 0xa0, "as_of");
	put_be(&f, 0xce, 20240310, 4);
	put_str(&f, 0xa0, "persons");
	put(&f, "\x92", 1);
	msgpack_sbuffer_init(&sb);
	pack_textf(&sb, "%s", good_person());
	put(&f, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	put(&f, "\x82", 1);
	put_str(&f, 0xa0, "id");
	put_str(&f, 0xa0, ID_F);
	put_str(&f, 0xa0, "slots");
	put(&f, "\x91", 1);
	put(&f, slot_map->b, slot_map->n);
	send_bytes(f.b, f.n);
}

/* The default slot of slot() (paid in full) with each key and value in
 * another msgpack form; bad: one field's value replaced by those bytes. */
static void wide_slot(struct bytes *o, const char *bad, const void *value, size_t value_size)
{
	o->n = 0;
	put(o, "\x87", 1);
	static const char *const keys[] = { "month", "city", "type", "category", "base", "paid", "paid_date" };
	static const uint8_t key_heads[] = { 0xd9, 0xda, 0xdb, 0xd9, 0xa0, 0xda, 0xd9 };
	for (uint32_t k = 0; k < 7; k++) {
		put_str(o, key_heads[k], keys[k]);
		if (bad != NULL && strcmp(bad, keys[k]) == 0) {
			put(o, value, value_size);
		} else if (k == 0) {
			put_be(o, 0xd3, 202302, 8); /* int64 */
		} else if (k == 1) {
			put_str(o, 0xda, "110000");
		} else if (k == 2) {
			put_str(o, 0xd9, "pension");
		} else if (k == 3) {
			put_str(o, 0xdb, "flexible");
		} else if (k == 4) {
			put_be(o, 0xcf, 650000, 8); /* uint64 */
		} else if (k == 5) {
			put_be(o, 0xd2, 130000, 4); /* int32 */
		} else {
			put_be(o, 0xd3, 20230220, 8);
		}
	}
}

/* SPEC §5: values are msgpack values, whatever their encoding; Appendix A:
 * a float is never an integer, and a binary is not a string. */
static void test_slot_fields_in_every_msgpack_form(void **state)
{
	(void)state;
	struct bytes slot_map;
	wide_slot(&slot_map, NULL, NULL, 0);
	send_slot_bytes(&slot_map);
	const msgpack_object *results = expect_results(2);
	check_good(&results->via.array.ptr[0]);
	check_entry(&results->via.array.ptr[1], ID_F, 0, NULL, "wide forms");
	check_int(dig(&results->via.array.ptr[1], "months_owed"), 0); /* due rh(650000 × 20%) = 130000, all paid */
	static const struct {
		const char *field;
		const char *value;
		size_t size;
		const char *message; /* NULL: accepted */
	} cases[] = {
		{ "month", "\xcb\x41\x08\xb1\xf0\x00\x00\x00\x00", 9, "month must be " PROTO_EXPECT_MONTH ", got a float" },
		{ "month", "\xca\x48\x45\x8f\x80", 5, "month must be " PROTO_EXPECT_MONTH ", got a float" },
		{ "month", "\xcd\x03\x17", 3, "month must be " PROTO_EXPECT_MONTH ", got 791" },
		{ "month", "\xd2\x00\x03\x16\x3e", 5, NULL }, /* int32 202302 */
		{ "base", "\xff", 1, "base must be " PROTO_EXPECT_MONEY ", got -1" },
		{ "base", "\xd0\x7f", 2, NULL }, /* int8 127 */
		{ "base", "\xd3\xff\xff\xff\xff\xff\xff\xff\xfe", 9, "base must be " PROTO_EXPECT_MONEY ", got -2" },
		{ "base", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9,
		  "base must be " PROTO_EXPECT_MONEY ", got 18446744073709551615" },
		{ "base", "\xcf\x00\x00\x00\x02\x54\x0b\xe4\x01", 9,
		  "base must be " PROTO_EXPECT_MONEY ", got 10000000001" },
		{ "base", "\xcf\x00\x00\x00\x02\x54\x0b\xe4\x00", 9, NULL }, /* 10^10, the largest */
		{ "city", "\xc4\x06" "110000", 8, "city must be " PROTO_EXPECT_CITY ", got a binary" },
		{ "city", "\xd9\x07" "110000 ", 9, "city must be " PROTO_EXPECT_CITY ", got \"110000 \"" },
		{ "type", "\xc4\x07" "pension", 9, "type must be " PROTO_EXPECT_TYPE ", got a binary" },
		{ "category", "\xda\x00\x08" "employee", 11, NULL },
		{ "paid", "\xcc\x00", 2, "paid_date must be 0 when paid is 0, got 20230220" },
		{ "paid_date", "\xcb\x41\x73\x4b\x04\xc0\x00\x00\x00", 9,
		  "paid_date must be " PROTO_EXPECT_DATE_OR_0 ", got a float" },
		{ "paid_date", "\xce\x01\x34\xb0\x55", 5, "paid_date must be " PROTO_EXPECT_DATE_OR_0 ", got 20230229" },
		{ "paid_date", "\xd3\x00\x00\x00\x00\x01\x34\xb4\x85", 9,
		  "paid_date must be " PROTO_EXPECT_DATE_OR_0 ", got 20231301" },
		{ "paid_date", "\xce\x01\x34\xd7\x65", 5, NULL }, /* 20240229: a leap day */
		{ "paid_date", "\xc0", 1, "paid_date must be " PROTO_EXPECT_DATE_OR_0 ", got nothing" },
	};
	/* The bytes above: 202302 = 0x3163e = 0x1.8b1fp+17 (float64 4108b1f0..., float32 48458f80);
	 * 20230220 = 0x1.34b04cp+24; 20230229 = 0x134b055, 20231301 = 0x134b485, 20240229 = 0x134d765. */
	_Static_assert(202302 == 0x3163e && 20230229 == 0x134b055 && 20231301 == 0x134b485 && 20240229 == 0x134d765,
		       "the integers above");
	for (uint32_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		wide_slot(&slot_map, cases[i].field, cases[i].value, cases[i].size);
		send_slot_bytes(&slot_map);
		results = expect_results(2);
		const char *context = fmt("%s case %u", cases[i].field, i);
		const char *field = strcmp(cases[i].field, "paid") == 0 ? "paid_date" : cases[i].field;
		check_entry(&results->via.array.ptr[1], ID_F, cases[i].message == NULL ? 0 : PROTO_INVALID_ARGUMENT,
			    fmt("persons[1].slots[0].%s", field), context);
		const msgpack_object *m = cases[i].message == NULL ? NULL : dig(&results->via.array.ptr[1], "error.message");
		if (cases[i].message != NULL && !is_str(m, cases[i].message)) {
			fail_msg("%s: message %s, want \"%s\"", context, describe(m), cases[i].message);
		}
	}
}

/* The persons array anywhere in params: before other keys, in a params
 * array holding more than the map, with a nil "persons" key before it
 * (nil is absent: then no selector), and nesting 32 deep inside a slot but
 * not 33 (msgpack-c's limit, which the frame met before). */
static void test_persons_anywhere_in_params_and_nesting_inside_them(void **state)
{
	(void)state;
	send_text("[0, %u, 'arrears.compute', [{persons: [%s], as_of: " AS_OF "}]]", MSGID, good_person());
	check_good(&expect_results(1)->via.array.ptr[0]);
	send_text("[0, %u, 'arrears.compute', [{persons: [%s], as_of: " AS_OF "}, 5, [1]]]", MSGID, good_person());
	check_good(&expect_results(1)->via.array.ptr[0]);
	send_text("[0, %u, 'arrears.compute', [{persons: nil, as_of: " AS_OF ", persons: [%s]}]]", MSGID,
		  good_person());
	expect_error(PROTO_INVALID_ARGUMENT, "persons");
	/* envelope, params, params map, persons, person, slots, slot map: 7 levels, + 25 arrays = 32 */
	char open[40] = { 0 };
	char close[40] = { 0 };
	memset(open, '[', 25);
	memset(close, ']', 25);
	const char *deep = person(ID_F, slot("note", fmt("%s1%s", open, close), NULL));
	send_text("[0, %u, 'arrears.compute', [{as_of: " AS_OF ", persons: [%s, %s]}]]", MSGID, good_person(), deep);
	check_entry(&expect_results(2)->via.array.ptr[1], ID_F, 0, NULL, "32 deep");
	open[25] = '[';
	close[25] = ']';
	deep = person(ID_F, slot("note", fmt("%s1%s", open, close), NULL));
	send_text("[0, %u, 'arrears.compute', [{as_of: " AS_OF ", persons: [%s, %s]}]]", MSGID, good_person(), deep);
	assert_true(R.close);
	check_error_map(R.error, PROTO_MALFORMED, NULL, "33 deep");
}

static void test_first_error_wins_in_document_order(void **state)
{
	(void)state;
	const char *bad_slot = slot("month", "202313", NULL);
	expect_person(fmt("{id: '11010519491231002x', slots: [%s]}", bad_slot), PROTO_INVALID_ARGUMENT,
		      "persons[1].id", "bad id and bad slot");
	expect_person(fmt("{id: 'x', retire_class: 'm99', slots: 5}"), PROTO_INVALID_ARGUMENT, "persons[1].id",
		      "bad id, class and slots");
	expect_person(fmt("{id: '%s', retire_class: 'm99', slots: 5}", ID_F), PROTO_INVALID_ARGUMENT,
		      "persons[1].retire_class", "bad class and slots");
	/* Keys in another order in the map: the order of Appendix A still holds. */
	expect_person(fmt("{slots: [%s], retire_class: 'm99', id: '%s'}", bad_slot, ID_F), PROTO_INVALID_ARGUMENT,
		      "persons[1].retire_class", "class before slots whatever the key order");
	expect_person(person(ID_F, "{paid_date: 1, deemed: 5, base: -1, category: 'x', type: 'x', city: 'x', month: 1}"),
		      PROTO_INVALID_ARGUMENT, "persons[1].slots[0].month", "every field bad, month first");
	expect_person(person(ID_F, slot("city", "'x'", "type", "'x'", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].city", "city before type");
	expect_person(person(ID_F, slot("category", "'x'", "base", "-1", "paid", "-1", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].category", "category before base");
	expect_person(person(ID_F, slot("base", "-1", "paid_date", "20230230", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].base", "base before paid_date");
	expect_person(person(ID_F, slot("paid", "-1", "deemed", "5", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].paid", "paid before deemed");
	expect_person(person(ID_F, slot("paid_date", "1", "deemed", "5", NULL)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].paid_date", "paid_date before deemed");
	/* Fields of slot 0 before anything of slot 1. */
	expect_person(person(ID_F, fmt("%s, %s", slot("paid", "0", NULL), slot("month", "1", NULL))),
		      PROTO_INVALID_ARGUMENT, "persons[1].slots[0].paid_date", "slot 0 rule before slot 1 field");
}

static void test_r1_city_without_policy_and_month_before_first_period(void **state)
{
	(void)state;
	const char *no_city = slot("city", "'999999'", NULL);
	const char *early = slot("month", "201912", NULL); /* 110000's first period is 202001 */
	/* Appendix A: a city without a policy is not_found at the city code. */
	expect_person(person(ID_F, no_city), PROTO_NOT_FOUND, "999999", "no policy");
	expect_person(person(ID_F, fmt("%s, %s", slot("month", "202301", NULL), slot("city", "'000001'", NULL))),
		      PROTO_NOT_FOUND, "000001", "no policy, leading zeros");
	/* README: a month before the first period: invalid_argument at …month. */
	expect_person(person(ID_F, early), PROTO_INVALID_ARGUMENT, "persons[1].slots[0].month", "201912");
	expect_person(person(ID_F, slot("month", "202001", NULL)), 0, NULL, "202001, the first period");
	/* R1 for every slot in order. */
	expect_person(person(ID_F, fmt("%s, %s", early, no_city)), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[0].month", "early then no policy");
	expect_person(person(ID_F, fmt("%s, %s", no_city, early)), PROTO_NOT_FOUND, "999999",
		      "no policy then early");
	/* Structure first (all slots), then R1. */
	expect_person(person(ID_F, fmt("%s, %s", no_city, slot("month", "202313", NULL))), PROTO_INVALID_ARGUMENT,
		      "persons[1].slots[1].month", "structure before R1");
	expect_person(person(ID_F, fmt("%s, %s", no_city, no_city)), PROTO_INVALID_ARGUMENT, "persons[1].slots[1]",
		      "duplicate before R1");
	/* All slots, whatever the method uses: a future slot too. */
	expect_person(person(ID_F, slot("month", "203001", "city", "'999999'", "paid", "0", "paid_date", "0", NULL)),
		      PROTO_NOT_FOUND, "999999", "future slot without policy");
}

/* Unpaid flexible pension of 10^10 fen in 120000 (interest 100% a year). */
static const char *huge_slot(const char *month)
{
	return slot("month", month, "city", "'120000'", "base", "10000000000", "paid", "0", "paid_date", "0", NULL);
}

static void test_overflow_is_the_persons_error_at_overflow(void **state)
{
	(void)state;
	/* 199001 → 20240310: 10^10 × (1 + 11/12) then doubled for 1991..2023: far past 2^53. */
	expect_person(person(ID_F, huge_slot("199001")), PROTO_INVALID_ARGUMENT, "overflow", "1990");
	/* 202301: 10^10 → 1.92e10 → 2.4e10, far below 2^53. */
	expect_person(person(ID_F, huge_slot("202301")), 0, NULL, "2023");
	/* Appendix A: R1 for every slot before overflow. */
	expect_person(person(ID_F, fmt("%s, %s", huge_slot("199001"), slot("city", "'999999'", NULL))),
		      PROTO_NOT_FOUND, "999999", "R1 before overflow");
}

static void test_one_persons_error_does_not_fail_the_others(void **state)
{
	(void)state;
	const char *g = good_person();
	rpc("arrears.compute", "{as_of: " AS_OF ", persons: [%s, %s, %s, %s, %s, %s]}", g,
	    person("11010519491231002x", slot(NULL)), person(ID_F, huge_slot("199001")), g,
	    person(ID_F, slot("city", "'999999'", NULL)), g);
	const msgpack_object *results = expect_results(6);
	const msgpack_object *e = results->via.array.ptr;
	check_good(&e[0]);
	check_entry(&e[1], "11010519491231002x", PROTO_INVALID_ARGUMENT, "persons[1].id", "bad id");
	check_entry(&e[2], ID_F, PROTO_INVALID_ARGUMENT, "overflow", "overflow");
	check_good(&e[3]);
	check_entry(&e[4], ID_F, PROTO_NOT_FOUND, "999999", "no policy");
	check_good(&e[5]);
}

static void test_r1_checked_by_every_compute_method(void **state)
{
	(void)state;
	/* Appendix A: R1 for every slot of the person, whatever the method uses. */
	static const char *const methods[] = { "arrears.compute", "years.compute", "retirement.check",
					       "housing.check", "medical.status" };
	const char *bad = person(ID_F, slot("type", "'maternity'", "city", "'999999'", NULL));
	const char *bad_slot = person(ID_F, fmt("%s, %s", slot(NULL), slot("month", "202313", NULL)));
	for (uint32_t i = 0; i < 5; i++) {
		rpc(methods[i], "{as_of: " AS_OF ", city: '110000', persons: [%s, %s, %s]}", bad, bad_slot,
		    good_person());
		const msgpack_object *results = expect_results(3);
		check_entry(&results->via.array.ptr[0], ID_F, PROTO_NOT_FOUND, "999999", methods[i]);
		check_entry(&results->via.array.ptr[1], ID_F, PROTO_INVALID_ARGUMENT, "persons[1].slots[1].month",
			    methods[i]);
		check_entry(&results->via.array.ptr[2], ID_M, 0, NULL, methods[i]);
	}
}

static void test_detail_items_of_good_person(void **state)
{
	(void)state;
	rpc("arrears.compute", "{as_of: " AS_OF ", detail: true, persons: [%s]}", good_person());
	const msgpack_object *entry = &expect_results(1)->via.array.ptr[0];
	check_good(entry);
	const msgpack_object *items = dig(entry, "items");
	assert_int_equal(items->type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(items->via.array.size, 1);
	check_int(dig(items, "0.month"), 202301);
	check_str(dig(items, "0.city"), "110000");
	check_int(dig(items, "0.owed"), 130000);
	check_int(dig(items, "0.deadline"), 20230125);
	check_str(dig(items, "0.tier"), "verify"); /* age 202403 − 202301 = 14 months */
	check_bool(dig(items, "0.expired"), false);
	rpc("arrears.compute", "{as_of: " AS_OF ", detail: false, persons: [%s]}", good_person());
	assert_null(get(&expect_results(1)->via.array.ptr[0], "items"));
}

/* ------------------------------------------------------------------------ */
/* Request-level checks (Appendix A, README request-level order). */

static const struct {
	const char *method;
	const char *params;
	int code; /* 0: accepted */
	const char *at;
} request_cases[] = {
	{ "arrears.compute", "{persons: []}", 3, "as_of" },
	{ "arrears.compute", "{as_of: nil, persons: []}", 3, "as_of" },
	{ "arrears.compute", "{as_of: 20230229, persons: []}", 3, "as_of" },
	{ "arrears.compute", "{as_of: 20230431, persons: []}", 3, "as_of" },
	{ "arrears.compute", "{as_of: 20240229, persons: []}", 0, NULL },
	{ "arrears.compute", "{as_of: 18991231, persons: []}", 3, "as_of" },
	{ "arrears.compute", "{as_of: 19000101, persons: []}", 0, NULL },
	{ "arrears.compute", "{as_of: 21001231, persons: []}", 0, NULL },
	{ "arrears.compute", "{as_of: 21010101, persons: []}", 3, "as_of" },
	{ "arrears.compute", "{as_of: 202403, persons: []}", 3, "as_of" },
	{ "arrears.compute", "{as_of: -20240310, persons: []}", 3, "as_of" },
	{ "arrears.compute", "{as_of: 20240310.0, persons: []}", 3, "as_of" },
	{ "arrears.compute", "{as_of: 5.0, persons: []}", 3, "as_of" },
	{ "arrears.compute", "{as_of: '20240310', persons: []}", 3, "as_of" },
	{ "arrears.compute", "{as_of: true, persons: []}", 3, "as_of" },
	/* Exactly one selector. */
	{ "arrears.compute", "{as_of: 20240310}", 3, "persons" },
	{ "arrears.compute", "{as_of: 20240310, persons: nil}", 3, "persons" },
	{ "arrears.compute", "{as_of: 20240310, persons: [], ids: []}", 3, "persons" },
	{ "arrears.compute", "{as_of: 20240310, persons: [], scan: {limit: 1}}", 3, "persons" },
	{ "arrears.compute", "{as_of: 20240310, ids: [], scan: {limit: 1}}", 3, "persons" },
	{ "arrears.compute", "{as_of: 20240310, ids: [], persons: [], scan: {limit: 1}}", 3, "persons" },
	{ "arrears.compute", "{as_of: 20240310, persons: nil, ids: []}", 0, NULL },
	{ "arrears.compute", "{as_of: 20240310, persons: 5}", 3, "persons" },
	{ "arrears.compute", "{as_of: 20240310, persons: {}}", 3, "persons" },
	{ "arrears.compute", "{as_of: 20240310, ids: 'x'}", 3, "ids" },
	/* scan: { after: id or nil, limit: 1..100000 }. */
	{ "arrears.compute", "{as_of: 20240310, scan: {limit: 0}}", 3, "scan.limit" },
	{ "arrears.compute", "{as_of: 20240310, scan: {limit: 100001}}", 3, "scan.limit" },
	{ "arrears.compute", "{as_of: 20240310, scan: {limit: -1}}", 3, "scan.limit" },
	{ "arrears.compute", "{as_of: 20240310, scan: {limit: 10.0}}", 3, "scan.limit" },
	{ "arrears.compute", "{as_of: 20240310, scan: {limit: '10'}}", 3, "scan.limit" },
	{ "arrears.compute", "{as_of: 20240310, scan: {}}", 3, "scan.limit" },
	{ "arrears.compute", "{as_of: 20240310, scan: {limit: 1}}", 0, NULL },
	{ "arrears.compute", "{as_of: 20240310, scan: {limit: 100000}}", 0, NULL },
	{ "arrears.compute", "{as_of: 20240310, scan: {after: nil, limit: 5}}", 0, NULL },
	{ "arrears.compute", "{as_of: 20240310, scan: {after: '11010519491231002X', limit: 5}}", 0, NULL },
	{ "arrears.compute", "{as_of: 20240310, scan: {after: 5, limit: 5}}", 3, "scan.after" },
	/* after may be an id prefix: 1..18 characters, digits, the 18th may be X (SPEC §5.1). */
	{ "arrears.compute", "{as_of: 20240310, scan: {after: '1', limit: 5}}", 0, NULL },
	{ "arrears.compute", "{as_of: 20240310, scan: {after: '11010519491231002', limit: 5}}", 0, NULL },
	{ "arrears.compute", "{as_of: 20240310, scan: {after: '110105194912310029', limit: 5}}", 0, NULL },
	{ "arrears.compute", "{as_of: 20240310, scan: {after: '', limit: 5}}", 3, "scan.after" },
	{ "arrears.compute", "{as_of: 20240310, scan: {after: 'abc', limit: 5}}", 3, "scan.after" },
	{ "arrears.compute", "{as_of: 20240310, scan: {after: '11010519491231002x', limit: 5}}", 3, "scan.after" },
	{ "arrears.compute", "{as_of: 20240310, scan: {after: '1101X', limit: 5}}", 3, "scan.after" },
	{ "arrears.compute", "{as_of: 20240310, scan: {after: '11010519491231002X0', limit: 5}}", 3, "scan.after" },
	{ "arrears.compute", "{as_of: 20240310, scan: {after: ' 110', limit: 5}}", 3, "scan.after" },
	{ "arrears.compute", "{as_of: 20240310, scan: 5}", 3, "scan" },
	{ "arrears.compute", "{as_of: 20240310, scan: [1]}", 3, "scan" },
	/* detail. */
	{ "arrears.compute", "{as_of: 20240310, persons: [], detail: 1}", 3, "detail" },
	{ "arrears.compute", "{as_of: 20240310, persons: [], detail: 0}", 3, "detail" },
	{ "arrears.compute", "{as_of: 20240310, persons: [], detail: 'true'}", 3, "detail" },
	{ "arrears.compute", "{as_of: 20240310, persons: [], detail: true}", 0, NULL },
	{ "arrears.compute", "{as_of: 20240310, persons: [], detail: nil}", 0, NULL },
	{ "years.compute", "{as_of: 20240310, persons: [], detail: 1}", 0, NULL }, /* not its key: ignored */
	/* elect_month, a YYYYMM month. */
	{ "retirement.check", "{as_of: 20240310, persons: [], elect_month: 203013}", 3, "elect_month" },
	{ "retirement.check", "{as_of: 20240310, persons: [], elect_month: 203000}", 3, "elect_month" },
	{ "retirement.check", "{as_of: 20240310, persons: [], elect_month: 210001}", 3, "elect_month" },
	{ "retirement.check", "{as_of: 20240310, persons: [], elect_month: 194912}", 3, "elect_month" },
	{ "retirement.check", "{as_of: 20240310, persons: [], elect_month: 20300301}", 3, "elect_month" },
	{ "retirement.check", "{as_of: 20240310, persons: [], elect_month: 203003.0}", 3, "elect_month" },
	{ "retirement.check", "{as_of: 20240310, persons: [], elect_month: '203003'}", 3, "elect_month" },
	{ "retirement.check", "{as_of: 20240310, persons: [], elect_month: 203003}", 0, NULL },
	{ "retirement.check", "{as_of: 20240310, persons: [], elect_month: nil}", 0, NULL },
	/* housing.check's city. */
	{ "housing.check", "{as_of: 20240310, persons: []}", 3, "city" },
	{ "housing.check", "{as_of: 20240310, persons: [], city: '11000'}", 3, "city" },
	{ "housing.check", "{as_of: 20240310, persons: [], city: '11000a'}", 3, "city" },
	{ "housing.check", "{as_of: 20240310, persons: [], city: 110000}", 3, "city" },
	{ "housing.check", "{as_of: 20240310, persons: [], city: '999999'}", 4, "999999" },
	{ "housing.check", "{as_of: 20240310, persons: [], city: '110000'}", 0, NULL },
	/* Order: as_of, selector, then the method's own keys. */
	{ "arrears.compute", "{as_of: 0, persons: [], ids: [], detail: 1}", 3, "as_of" },
	{ "arrears.compute", "{as_of: 20240310, detail: 1}", 3, "persons" },
	{ "retirement.check", "{as_of: 1, elect_month: 1}", 3, "as_of" },
	{ "retirement.check", "{as_of: 20240310, elect_month: 1}", 3, "persons" },
	{ "housing.check", "{as_of: 1, city: 'x'}", 3, "as_of" },
	{ "housing.check", "{as_of: 20240310, city: 'x', scan: {limit: 0}}", 3, "scan.limit" },
	{ "housing.check", "{as_of: 20240310, city: '999999', scan: {limit: 0}}", 3, "scan.limit" },
	{ "medical.status", "{as_of: 20240310}", 3, "persons" },
	{ "years.compute", "{as_of: 20230229, persons: []}", 3, "as_of" },
};

static void test_request_level_errors(void **state)
{
	(void)state;
	for (uint32_t i = 0; i < sizeof(request_cases) / sizeof(request_cases[0]); i++) {
		const char *context = fmt("%s %s", request_cases[i].method, request_cases[i].params);
		rpc(request_cases[i].method, "%s", request_cases[i].params);
		if (R.msgid != MSGID || R.close) {
			fail_msg("%s: msgid %llu close %d", context, (unsigned long long)R.msgid, R.close);
		}
		if (request_cases[i].code != 0) {
			check_error_map(R.error, request_cases[i].code, request_cases[i].at, context);
			continue;
		}
		if (R.error != NULL) {
			fail_msg("%s: unexpected error %s", context, describe(R.error));
		}
		const msgpack_object *results = dig(R.result, "results");
		assert_int_equal(results->type, MSGPACK_OBJECT_ARRAY);
		assert_int_equal(results->via.array.size, 0);
		if (strstr(request_cases[i].params, "scan:") != NULL) {
			check_nil(dig(R.result, "next")); /* README: no store, an empty page */
		}
	}
}

static void test_ids_selector_without_store(void **state)
{
	(void)state;
	/* README: every valid id is not_found at ids[i]; a non-string, or a string
	 * that is not a valid resident id (Appendix A), is invalid there. */
	rpc("arrears.compute", "{as_of: " AS_OF ", ids: ['%s', 5, 'nobody']}", ID_F);
	const msgpack_object *results = expect_results(3);
	check_entry(&results->via.array.ptr[0], ID_F, PROTO_NOT_FOUND, "ids[0]", "ids[0]");
	check_entry(&results->via.array.ptr[1], NULL, PROTO_INVALID_ARGUMENT, "ids[1]", "ids[1]");
	check_entry(&results->via.array.ptr[2], "nobody", PROTO_INVALID_ARGUMENT, "ids[2]", "ids[2]");
}

static void test_too_many_persons_is_too_large(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_uint32(&pk, MSGID);
	msgpack_pack_str_with_body(&pk, "arrears.compute", 15);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "as_of", 5);
	msgpack_pack_uint32(&pk, 20240310);
	msgpack_pack_str_with_body(&pk, "persons", 7);
	msgpack_pack_array(&pk, PROTO_PERSONS_MAX + 1);
	pack_nils(&pk, PROTO_PERSONS_MAX + 1);
	send_bytes(sb.data, sb.size);
	/* README: over 100,000 persons is too_large. */
	expect_error(PROTO_TOO_LARGE, NULL);
	assert_false(R.close);
	msgpack_sbuffer_destroy(&sb);
}

static void test_elect_month_outside_persons_range_is_that_persons_error(void **state)
{
	(void)state;
	/* Appendix B 4: woman born 1980-03, f50: elect_month in [203003, 203511];
	 * 203003 gives required (2030) = 180 + 6 × 1 = 186. */
	const char *p = fmt("{id: '%s', retire_class: 'f50', slots: []}", ID_F1980);
	/* ID_M, born 1970-06, m60 (Appendix B 3): original 203006, statutory 203111,
	 * range [max(203006, 202811), 203111 + 36] = [203006, 203411].
	 * required: 2030 → 186, 2034 → 180 + 6 × 5 = 210, 2035 → 216. */
	static const struct {
		int32_t elect;
		bool valid;
		int32_t required;
		bool man_valid;
	} cases[] = {
		{ 203002, false, 0, false }, { 203003, true, 186, false }, { 203005, true, 186, false },
		{ 203006, true, 186, true }, { 203411, true, 210, true },  { 203412, true, 210, false },
		{ 203511, true, 216, false }, { 203512, false, 0, false },
	};
	for (uint32_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rpc("retirement.check", "{as_of: 20250115, elect_month: %d, persons: [%s, %s]}", cases[i].elect, p,
		    good_person());
		const msgpack_object *results = expect_results(2);
		const msgpack_object *e = &results->via.array.ptr[0];
		const char *context = fmt("elect_month %d", cases[i].elect);
		check_entry(e, ID_F1980, cases[i].valid ? 0 : PROTO_INVALID_ARGUMENT, "elect_month", context);
		if (cases[i].valid) {
			check_int(dig(e, "retire_month"), cases[i].elect);
			check_int(dig(e, "statutory_month"), 203211);
			check_int(dig(e, "required_months"), cases[i].required);
		}
		check_entry(&results->via.array.ptr[1], ID_M, cases[i].man_valid ? 0 : PROTO_INVALID_ARGUMENT,
			    "elect_month", fmt("%s, man", context));
	}
}

/* ------------------------------------------------------------------------ */
/* Direct calls: proto_message_parse, proto_compute_decode, proto_person_decode. */

static void test_message_parse_fills_the_envelope(void **state)
{
	(void)state;
	struct proto_message *m = proto_message_new();
	assert_non_null(m);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	struct proto_envelope env;
	struct proto_error err;
	pack_textf(&sb, "[0, 42, 'years.compute', [{as_of: 20240310}]]");
	assert_int_equal(proto_message_parse(m, (const uint8_t *)sb.data, sb.size, &env, &err), PROTO_OK);
	assert_int_equal(env.kind, PROTO_KIND_REQUEST);
	assert_int_equal(env.msgid, 42);
	assert_int_equal(env.method_size, 13);
	assert_memory_equal(env.method, "years.compute", 13);
	assert_non_null(env.params);
	pack_textf(&sb, "[2, 'ping', []]");
	assert_int_equal(proto_message_parse(m, (const uint8_t *)sb.data, sb.size, &env, &err), PROTO_OK);
	assert_int_equal(env.kind, PROTO_KIND_NOTIFICATION);
	assert_int_equal(env.msgid, 0);
	assert_int_equal(env.method_size, 4);
	pack_textf(&sb, "[0, 42, 5, []]");
	assert_int_equal(proto_message_parse(m, (const uint8_t *)sb.data, sb.size, &env, &err), PROTO_MALFORMED);
	assert_int_equal(err.code, PROTO_MALFORMED);
	assert_int_equal(env.msgid, 42); /* proto.h: set when it could be read */
	/* Not one whole value: the scanner refuses it before any parse (the
	 * parse trusts scanned frames, proto.h), reading nothing past the
	 * bytes (a heap copy of exactly their size, for the sanitizers).
	 * [[uint16 cut short], 1]; 0xc1 inside; one byte too many; 33 levels. */
	static const uint8_t *const bad[] = { (const uint8_t *)"\x92\x91\xcd\x00", (const uint8_t *)"\x92\x91\xc1\x01",
					      (const uint8_t *)"\x91\x01\x01" };
	static const size_t bad_size[] = { 4, 4, 3 };
	static const int bad_rc[] = { PROTO_FRAME_MORE, PROTO_FRAME_INVALID, PROTO_FRAME_COMPLETE };
	for (uint32_t i = 0; i < 3; i++) {
		uint8_t *copy = malloc(bad_size[i]);
		assert_non_null(copy);
		memcpy(copy, bad[i], bad_size[i]);
		size_t frame_size;
		assert_int_equal(scan(copy, bad_size[i], SCAN_MAX, &frame_size), bad_rc[i]);
		assert_true(bad_rc[i] != PROTO_FRAME_COMPLETE || frame_size < bad_size[i]);
		free(copy);
	}
	uint8_t deep[34];
	memset(deep, 0x91, 33);
	deep[33] = 0x01;
	size_t deep_size;
	assert_int_equal(scan(deep, 34, 34, &deep_size), PROTO_FRAME_INVALID);
	assert_int_equal(scan(deep + 1, 33, 33, &deep_size), PROTO_FRAME_COMPLETE);
	assert_int_equal(proto_message_parse(m, deep + 1, 33, &env, &err), PROTO_MALFORMED); /* 32 levels: the envelope */
	assert_string_equal(err.message, "not a msgpack-RPC request");
	msgpack_sbuffer_destroy(&sb);
	proto_message_free(m);
}

static void test_utf8_valid_accepts_rfc3629_and_rejects_the_rest(void **state)
{
	(void)state;
	/* RFC 3629 §4: the first byte fixes the length; E0 needs A0..BF next (no
	 * overlong), ED 80..9F (no surrogates D800..DFFF), F0 90..BF, F4 80..8F
	 * (nothing past U+10FFFF); C0, C1 and F5..FF never occur. */
	static const char *const good[] = { "", "abc", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
					    "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf", "\xef\xbf\xbf" };
	static const char *const bad[] = { "\xff", "\x80", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80",
					   "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
					   "\xe2\x82", "a\xc3", "\xc3\x28" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_true(proto_utf8_valid(good[i], strlen(good[i])));
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (proto_utf8_valid(bad[i], strlen(bad[i]))) {
			fail_msg("bad[%zu] accepted", i);
		}
	}
}

/* The digest of [0, 1, method, [params]] with params given as raw msgpack bytes. */
static void digest_of(const char *method, const uint8_t *params, size_t size, uint8_t out[PROTO_DIGEST_BYTES])
{
	uint8_t frame[256] = { 0x94, 0x00, 0x01 };
	size_t n = 3;
	size_t method_size = strlen(method);
	frame[n++] = (uint8_t)(0xa0 | method_size);
	memcpy(frame + n, method, method_size);
	n += method_size;
	frame[n++] = 0x91;
	assert_true(n + size <= sizeof(frame));
	memcpy(frame + n, params, size);
	n += size;
	struct proto_message *m = proto_message_new();
	struct proto_envelope env;
	struct proto_error err;
	assert_int_equal(proto_message_parse(m, frame, n, &env, &err), PROTO_OK);
	assert_true(proto_params_digest(env.params, env.method, env.method_size, out));
	proto_message_free(m);
}

static void test_idempotency_digest_compares_params_as_values(void **state)
{
	(void)state;
	/* Appendix A: keys in another order, or an integer in a wider format, is
	 * the same payload. {"a": 1, "b": [{"x": 2, "y": -3}]} byte by byte: */
	static const uint8_t plain[] = { 0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0x91, 0x82, 0xa1, 'x', 0x02, 0xa1, 'y', 0xfd };
	/* the same maps with their keys reversed, at both levels */
	static const uint8_t reordered[] = { 0x82, 0xa1, 'b', 0x91, 0x82, 0xa1, 'y', 0xfd, 0xa1, 'x', 0x02, 0xa1, 'a', 0x01 };
	/* 1 as uint64, 2 as int32, -3 as int64, "a" as str8 */
	static const uint8_t wider[] = { 0x82, 0xd9, 0x01, 'a', 0xcf, 0, 0, 0, 0, 0, 0, 0, 1, 0xa1, 'b', 0x91, 0x82,
					 0xa1, 'x', 0xd2, 0, 0, 0, 2, 0xa1, 'y', 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff,
					 0xff, 0xff, 0xfd };
	/* other values: b.x = 3; a = "1" (a string, not an integer) */
	static const uint8_t other[] = { 0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0x91, 0x82, 0xa1, 'x', 0x03, 0xa1, 'y', 0xfd };
	static const uint8_t string[] = { 0x82, 0xa1, 'a', 0xa1, '1', 0xa1, 'b', 0x91, 0x82, 0xa1, 'x', 0x02, 0xa1, 'y', 0xfd };
	/* a repeated key: the first one counts, so its order matters */
	static const uint8_t dup12[] = { 0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02 };
	static const uint8_t dup21[] = { 0x82, 0xa1, 'a', 0x02, 0xa1, 'a', 0x01 };
	uint8_t d0[PROTO_DIGEST_BYTES], d1[PROTO_DIGEST_BYTES];
	digest_of("person.put", plain, sizeof(plain), d0);
	digest_of("person.put", reordered, sizeof(reordered), d1);
	assert_memory_equal(d0, d1, PROTO_DIGEST_BYTES);
	digest_of("person.put", wider, sizeof(wider), d1);
	assert_memory_equal(d0, d1, PROTO_DIGEST_BYTES);
	digest_of("person.put", other, sizeof(other), d1);
	assert_memory_not_equal(d0, d1, PROTO_DIGEST_BYTES);
	digest_of("person.put", string, sizeof(string), d1);
	assert_memory_not_equal(d0, d1, PROTO_DIGEST_BYTES);
	digest_of("person.delete", plain, sizeof(plain), d1); /* the method is part of the payload */
	assert_memory_not_equal(d0, d1, PROTO_DIGEST_BYTES);
	/* floats as values: -0.0 is 0.0 ({"a": 0.0} as float64, and -0.0 as float32) */
	static const uint8_t zero[] = { 0x81, 0xa1, 'a', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0 };
	static const uint8_t minus_zero[] = { 0x81, 0xa1, 'a', 0xca, 0x80, 0, 0, 0 };
	digest_of("person.put", zero, sizeof(zero), d0);
	digest_of("person.put", minus_zero, sizeof(minus_zero), d1);
	assert_memory_equal(d0, d1, PROTO_DIGEST_BYTES);
	digest_of("person.put", dup12, sizeof(dup12), d0);
	digest_of("person.put", dup21, sizeof(dup21), d1);
	assert_memory_not_equal(d0, d1, PROTO_DIGEST_BYTES);
	/* persons stay bytes in the parse (proto/message.c); the digest unpacks
	 * them: {"persons": [{"a": 1, "b": 2}], "z": 5}, then z first, the
	 * person's keys reversed, 1 as uint16, the array as array16 */
	static const uint8_t persons[] = { 0x82, 0xa7, 'p', 'e', 'r', 's', 'o', 'n', 's', 0x91, 0x82, 0xa1, 'a', 0x01,
					   0xa1, 'b', 0x02, 0xa1, 'z', 0x05 };
	static const uint8_t persons_other_form[] = { 0x82, 0xa1, 'z', 0x05, 0xa7, 'p', 'e', 'r', 's', 'o', 'n', 's',
						      0xdc, 0x00, 0x01, 0x82, 0xa1, 'b', 0x02, 0xa1, 'a', 0xcd, 0x00, 0x01 };
	digest_of("person.put", persons, sizeof(persons), d0);
	digest_of("person.put", persons_other_form, sizeof(persons_other_form), d1);
	assert_memory_equal(d0, d1, PROTO_DIGEST_BYTES);
	uint8_t persons_other_value[sizeof(persons)];
	memcpy(persons_other_value, persons, sizeof(persons));
	persons_other_value[16] = 0x03; /* b = 3 */
	digest_of("person.put", persons_other_value, sizeof(persons_other_value), d1);
	assert_memory_not_equal(d0, d1, PROTO_DIGEST_BYTES);
}

/* SPEC §2.1: a string that is not UTF-8 is invalid_argument at its path and
 * never echoed back. */
static void test_invalid_utf8_is_rejected_and_never_echoed(void **state)
{
	(void)state;
	/* [0, 7, "arrears.compute", [{"as_of": 20240310, "ids": ["\xff\xfe"]}]] */
	static const uint8_t ids[] = { 0x94, 0x00, 0x07, 0xaf, 'a', 'r', 'r', 'e', 'a', 'r', 's', '.', 'c', 'o', 'm',
				       'p', 'u', 't', 'e', 0x91, 0x82, 0xa5, 'a', 's', '_', 'o', 'f', 0xce, 0x01,
				       0x34, 0xd7, 0xb6, 0xa3, 'i', 'd', 's', 0x91, 0xa2, 0xff, 0xfe };
	_Static_assert(20240310 == 0x0134d7b6, "as_of in the bytes above");
	send_bytes(ids, sizeof(ids));
	const msgpack_object *results = expect_results(1);
	check_entry(&results->via.array.ptr[0], NULL, PROTO_INVALID_ARGUMENT, "ids[0]", "ids");
	check_nil(get(&results->via.array.ptr[0], "id"));
	/* an inline person's id: its entry's id is nil too */
	static const uint8_t persons[] = { 0x94, 0x00, 0x07, 0xaf, 'a', 'r', 'r', 'e', 'a', 'r', 's', '.', 'c', 'o',
					   'm', 'p', 'u', 't', 'e', 0x91, 0x82, 0xa5, 'a', 's', '_', 'o', 'f', 0xce,
					   0x01, 0x34, 0xd7, 0xb6, 0xa7, 'p', 'e', 'r', 's', 'o', 'n', 's', 0x91,
					   0x82, 0xa2, 'i', 'd', 0xa1, 0xc0, 0xa5, 's', 'l', 'o', 't', 's', 0x90 };
	send_bytes(persons, sizeof(persons));
	results = expect_results(1);
	check_entry(&results->via.array.ptr[0], NULL, PROTO_INVALID_ARGUMENT, "persons[0].id", "persons");
	check_nil(get(&results->via.array.ptr[0], "id"));
	/* an auth token: [0, 7, "auth", [{"token": "\xc0\x80"}]] */
	static const uint8_t auth[] = { 0x94, 0x00, 0x07, 0xa4, 'a', 'u', 't', 'h', 0x91, 0x81, 0xa5, 't', 'o', 'k',
					'e', 'n', 0xa2, 0xc0, 0x80 };
	send_bytes(auth, sizeof(auth));
	expect_error(PROTO_INVALID_ARGUMENT, "token");
	/* a policy's name, which policy.get would echo: the marker's first byte becomes 0xff */
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	pack_textf(&sb, "[0, %u, 'policy.put', [{policy: {city: '130000', name: 'NAME', deadline: {day: 25}, "
			"periods: [{from: 202001, base_min: 0, base_max: 100}]}}]]", MSGID);
	char *name = memmem(sb.data, sb.size, "NAME", 4);
	assert_non_null(name);
	name[0] = (char)0xff;
	send_bytes(sb.data, sb.size);
	expect_error(PROTO_INVALID_ARGUMENT, "policy.name");
	msgpack_sbuffer_destroy(&sb);
	rpc("policy.get", "{city: '130000'}");
	expect_error(PROTO_NOT_FOUND, "130000"); /* nothing was stored */
}

/* YYYYMM to the core's dense month (year*12 + month-1), by arithmetic. */
static int32_t M(int32_t yyyymm)
{
	return yyyymm / 100 * 12 + yyyymm % 100 - 1;
}

static void test_compute_and_person_decode_fill_the_structs(void **state)
{
	(void)state;
	struct proto_message *m = proto_message_new();
	assert_non_null(m);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	struct proto_envelope env;
	struct proto_error err;
	struct proto_compute req;
	pack_textf(&sb, "[0, 1, 'retirement.check', [{as_of: 20240310, elect_month: 203003, scan: {after: '110', "
			"limit: 100000}}]]");
	assert_int_equal(proto_message_parse(m, (const uint8_t *)sb.data, sb.size, &env, &err), PROTO_OK);
	assert_int_equal(proto_compute_decode(env.params, PROTO_RETIREMENT, &req, &err), PROTO_OK);
	assert_int_equal(req.selector, PROTO_SELECT_SCAN);
	assert_int_equal(req.as_of.date, 20240310);
	assert_int_equal(req.as_of.month, M(202403));
	assert_int_equal(req.elect_month, M(203003));
	assert_int_equal(req.scan_limit, 100000);
	assert_int_equal(req.scan_after_size, 3);
	assert_memory_equal(req.scan_after, "110", 3);
	pack_textf(&sb, "[0, 1, 'arrears.compute', [{as_of: 20240310, persons: [{id: '%s', slots: [%s, %s]}]}]]",
		   ID_F, slot(NULL), slot("month", "202303", "category", "'employee'", "type", "'medical'", "paid",
					 "0", "paid_date", "0", "deemed", "nil", NULL));
	assert_int_equal(proto_message_parse(m, (const uint8_t *)sb.data, sb.size, &env, &err), PROTO_OK);
	assert_int_equal(proto_compute_decode(env.params, PROTO_ARREARS, &req, &err), PROTO_OK);
	assert_int_equal(req.selector, PROTO_SELECT_PERSONS);
	assert_int_equal(req.person_count, 1);
	assert_int_equal(req.elect_month, -1); /* proto.h: -1 when absent */
	assert_false(req.detail);
	struct proto_person_buf buf;
	memset(&buf, 0, sizeof(buf));
	struct proto_person p;
	const char *id;
	size_t id_size;
	assert_int_equal(proto_person_decode(&req, 0, &buf, &p, &id, &id_size, &err), PROTO_OK);
	assert_string_equal(p.id, ID_F);
	assert_int_equal(id_size, 18);
	assert_int_equal(p.class_, CORE_CLASS_F55); /* §3.1: f55 when the ID says female */
	assert_int_equal(p.slot_count, 2);
	assert_int_equal(p.slots[0].month, M(202302));
	assert_int_equal(p.slots[0].city, 110000);
	assert_int_equal(p.slots[0].type, CORE_PENSION);
	assert_int_equal(p.slots[0].category, CORE_FLEXIBLE);
	assert_int_equal(p.slots[0].base_fen, 650000);
	assert_int_equal(p.slots[0].paid_fen, 130000);
	assert_int_equal(p.slots[0].paid_date, 20230220);
	assert_false(p.slots[0].deemed);
	assert_int_equal(p.slots[1].month, M(202303));
	assert_int_equal(p.slots[1].type, CORE_MEDICAL);
	assert_int_equal(p.slots[1].category, CORE_EMPLOYEE);
	assert_int_equal(p.slots[1].paid_fen, 0);
	assert_int_equal(p.slots[1].paid_date, 0);
	/* Persons in any order (a retried write begins again; an answer in
	 * parts resumes): each index reads its own person. */
	pack_textf(&sb, "[0, 1, 'arrears.compute', [{as_of: 20240310, persons: [{id: '%s', slots: [%s]}, 5, "
			"{note: [1, {a: 2}], id: '%s', slots: []}, {slots: [], id: '%s'}]}]]",
		   ID_F, slot(NULL), ID_M, ID_F1980);
	assert_int_equal(proto_message_parse(m, (const uint8_t *)sb.data, sb.size, &env, &err), PROTO_OK);
	assert_int_equal(proto_compute_decode(env.params, PROTO_ARREARS, &req, &err), PROTO_OK);
	assert_int_equal(req.person_count, 4);
	static const uint32_t order[] = { 3, 0, 2, 1, 2, 3, 3, 0, 1 };
	static const char *const ids[] = { ID_F, NULL, ID_M, ID_F1980 };
	for (uint32_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
		uint32_t i = order[k];
		int rc = proto_person_decode(&req, i, &buf, &p, &id, &id_size, &err);
		assert_int_equal(rc, ids[i] == NULL ? PROTO_INVALID_ARGUMENT : PROTO_OK);
		if (ids[i] != NULL) {
			assert_string_equal(p.id, ids[i]);
			assert_int_equal(p.slot_count, i == 0 ? 1 : 0);
		} else {
			assert_string_equal(err.at, "persons[1]");
		}
	}
	proto_person_buf_free(&buf);
	msgpack_sbuffer_destroy(&sb);
	proto_message_free(m);
}

/* ------------------------------------------------------------------------ */
/* 4. Policies. */

#define PERIOD0 "{from: 202001, base_min: 300000, base_max: 3000000}"
#define POLICY(extra) "{city: '130000', deadline: {day: 25}, periods: [" PERIOD0 "]" extra "}"
#define POLICY_DP(deadline, periods) "{city: '130000', deadline: " deadline ", periods: " periods "}"

static const struct {
	const char *policy;
	const char *at; /* NULL: accepted */
} policy_cases[] = {
	{ POLICY(""), NULL },
	/* §3.3 and Appendix A. */
	{ POLICY_DP("{day: 25}", "[" PERIOD0 ", {from: 202101, base_min: 5000, base_max: 4000}]"),
	  "policy.periods[1].base_min" },
	{ POLICY_DP("{day: 25}", "[" PERIOD0 ", {from: 202101, base_min: 4000, base_max: 4000}]"), NULL },
	{ POLICY_DP("{day: 25}", "[{from: 202101, base_min: 1, base_max: 2}, {from: 202001, base_min: 1, base_max: 2}]"),
	  "policy.periods[1].from" },
	{ POLICY_DP("{day: 25}", "[{from: 202001, base_min: 1, base_max: 2}, {from: 202001, base_min: 1, base_max: 2}]"),
	  "policy.periods[1].from" },
	{ POLICY_DP("{day: 25}", "[{from: 201901, base_min: 1, base_max: 2}, {from: 202101, base_min: 1, base_max: 2}, "
				 "{from: 202001, base_min: 1, base_max: 2}]"),
	  "policy.periods[2].from" },
	{ POLICY_DP("{day: 25}", "[]"), "policy.periods" },
	{ "{city: '130000', deadline: {day: 25}}", "policy.periods" },
	{ POLICY_DP("{day: 25}", "[{from: 202013, base_min: 0, base_max: 1}]"), "policy.periods[0].from" },
	{ POLICY_DP("{day: 25}", "[{from: 202001, base_min: 0, base_max: 10000000001}]"), "policy.periods[0].base_max" },
	{ POLICY_DP("{day: 25}", "[{from: 202001, base_min: -1, base_max: 1}]"), "policy.periods[0].base_min" },
	{ POLICY_DP("{day: 25}", "[{from: 202001, base_min: 0, base_max: 10000000000}]"), NULL },
	{ POLICY_DP("{day: 25}", "[{from: 202001, base_min: 0, base_max: 1, rates: {life: {employer: 1}}}]"),
	  "policy.periods[0].rates.life" }, /* README */
	{ POLICY_DP("{day: 0}", "[" PERIOD0 "]"), "policy.deadline.day" },
	{ POLICY_DP("{day: 32}", "[" PERIOD0 "]"), "policy.deadline.day" },
	{ POLICY_DP("{day: 25.0}", "[" PERIOD0 "]"), "policy.deadline.day" },
	{ POLICY_DP("{}", "[" PERIOD0 "]"), "policy.deadline.day" }, /* README: day required */
	{ POLICY_DP("{day: 1}", "[" PERIOD0 "]"), NULL },
	{ POLICY_DP("{day: 31}", "[" PERIOD0 "]"), NULL },
	{ POLICY_DP("{day: 25, month_offset: 3}", "[" PERIOD0 "]"), "policy.deadline.month_offset" },
	{ POLICY_DP("{day: 25, month_offset: -1}", "[" PERIOD0 "]"), "policy.deadline.month_offset" },
	{ POLICY_DP("{day: 25, month_offset: 2}", "[" PERIOD0 "]"), NULL },
	{ "{city: '130000', periods: [" PERIOD0 "]}", "policy.deadline" },
	{ "{city: '13000', deadline: {day: 25}, periods: [" PERIOD0 "]}", "policy.city" },
	{ "{deadline: {day: 25}, periods: [" PERIOD0 "]}", "policy.city" },
	{ POLICY(", interest: {rates: [[2020, 1000], [2019, 1000]]}"), "policy.interest.rates[1]" },
	{ POLICY(", interest: {rates: [[2019, 1000], [2020, 1000], [2020, 5]]}"), "policy.interest.rates[2]" },
	{ POLICY(", interest: {rates: [[2019, 1000], [2020, 1000]]}"), NULL },
	{ POLICY(", interest: {rates: []}"), NULL },
	{ POLICY(", interest: {default_ppm: 1000001}"), "policy.interest.default_ppm" },
	{ POLICY(", interest: {default_ppm: 1000000}"), NULL },
	{ POLICY(", late_fee: {daily_ppm: 10001}"), "policy.late_fee.daily_ppm" },
	{ POLICY(", late_fee: {daily_ppm: 10000}"), NULL },
	{ POLICY(", housing: {window_months: 0}"), "policy.housing.window_months" },
	{ POLICY(", housing: {window_months: 601}"), "policy.housing.window_months" },
	{ POLICY(", housing: {window_months: 600}"), NULL },
	{ POLICY(", housing: {window_months: 1, required_months: 1}"), NULL },
	{ POLICY(", housing: {window_months: 12, required_months: 13}"), "policy.housing.required_months" },
	{ POLICY(", housing: {window_months: 12, required_months: 12}"), NULL },
	/* Defaults apply field by field: required_months stays 60 > 24. */
	{ POLICY(", housing: {window_months: 24}"), "policy.housing.required_months" },
	{ POLICY(", housing: {end_offset_months: 13}"), "policy.housing.end_offset_months" },
	{ POLICY(", housing: {end_offset_months: 12}"), NULL },
	{ POLICY(", housing: {end_offset_months: 0}"), NULL },
	{ POLICY(", withhold: {mode: 'pause'}"), "policy.withhold.mode" },
	{ POLICY(", withhold: {mode: 'skip'}"), NULL },
	{ POLICY(", withhold: {mode: 'stop'}"), NULL },
	{ POLICY(", interest: {types: ['pension', 'pensions']}"), "policy.interest.types[1]" },
	{ POLICY(", interest: {categories: ['flexible', 'contract']}"), "policy.interest.categories[1]" },
	{ POLICY(", late_fee: {categories: ['Employee']}"), "policy.late_fee.categories[0]" },
	{ POLICY(", housing: {types: ['pension', 'medical', 'life']}"), "policy.housing.types[2]" },
	{ POLICY(", withhold: {order: ['pension', 5]}"), "policy.withhold.order[1]" },
	{ POLICY(", housing: {types: []}"), NULL },
	/* Sections that are not maps, and other fields out of range. */
	{ POLICY(", interest: 5"), "policy.interest" },
	{ POLICY(", late_fee: []"), "policy.late_fee" },
	{ POLICY(", backpay: 'x'"), "policy.backpay" },
	{ POLICY(", housing: true"), "policy.housing" },
	{ POLICY(", withhold: 1"), "policy.withhold" },
	{ POLICY(", interest: nil, late_fee: nil"), NULL }, /* nil is absent */
	{ POLICY(", interest: {types: 'pension'}"), "policy.interest.types" },
	{ POLICY(", interest: {rates: [[2020]]}"), "policy.interest.rates[0]" },
	{ POLICY(", interest: {rates: [[2019, 1], [2020, 1.0]]}"), "policy.interest.rates[1]" },
	{ POLICY(", interest: {rates: [[2020, 1000001]]}"), "policy.interest.rates[0]" },
	{ POLICY(", interest: {rates: [[2020, 1000000]]}"), NULL },
	{ POLICY(", interest: {rates: [[10000, 1]]}"), "policy.interest.rates[0]" }, /* README: years 0..9999 */
	{ POLICY(", interest: {rates: [[9999, 1]]}"), NULL },
	{ POLICY(", backpay: {legacy_before: 201113}"), "policy.backpay.legacy_before" },
	{ POLICY(", backpay: {legacy_before: 20110701}"), "policy.backpay.legacy_before" },
	{ POLICY(", late_fee: {cap_at_principal: 1}"), "policy.late_fee.cap_at_principal" },
	{ POLICY(", housing: {backpay_counts: 'no'}"), "policy.housing.backpay_counts" },
	{ POLICY_DP("{day: 25}", "[{from: 202001, base_min: 0, base_max: 1, rates: {pension: {flexible: 1000001}}}]"),
	  "policy.periods[0].rates.pension.flexible" },
	{ POLICY_DP("{day: 25}", "[{from: 202001, base_min: 0, base_max: 1, rates: {pension: {flexible: 1000000}}}]"),
	  NULL },
	{ POLICY_DP("{day: 25}", "[5]"), "policy.periods[0]" },
};

static void test_policy_put_validation(void **state)
{
	(void)state;
	for (uint32_t i = 0; i < sizeof(policy_cases) / sizeof(policy_cases[0]); i++) {
		rpc("policy.put", "{policy: %s}", policy_cases[i].policy);
		if (policy_cases[i].at == NULL) {
			if (R.error != NULL) {
				fail_msg("%s: unexpected error %s", policy_cases[i].policy, describe(R.error));
			}
			check_bool(dig(R.result, "ok"), true);
		} else {
			check_error_map(R.error, PROTO_INVALID_ARGUMENT, policy_cases[i].at, policy_cases[i].policy);
		}
	}
	/* README: name at most 255 bytes. */
	char name[300];
	memset(name, 'n', sizeof(name));
	name[255] = '\0';
	rpc("policy.put", "{policy: {city: '130000', name: '%s', deadline: {day: 25}, periods: [" PERIOD0 "]}}", name);
	check_bool(dig(expect_result(), "ok"), true);
	name[255] = 'n';
	name[256] = '\0';
	rpc("policy.put", "{policy: {city: '130000', name: '%s', deadline: {day: 25}, periods: [" PERIOD0 "]}}", name);
	expect_error(PROTO_INVALID_ARGUMENT, "policy.name");
	rpc("policy.put", "{}");
	expect_error(PROTO_INVALID_ARGUMENT, "policy");
	rpc("policy.put", "{policy: 5}");
	expect_error(PROTO_INVALID_ARGUMENT, "policy");
}

static void test_rejected_policy_changes_nothing(void **state)
{
	(void)state;
	rpc("policy.put", "{policy: {city: '130000', name: 'first', deadline: {day: 10}, periods: [" PERIOD0 "]}}");
	check_bool(dig(expect_result(), "ok"), true);
	rpc("policy.put", "{policy: {city: '130000', name: 'second', deadline: {day: 0}, periods: [" PERIOD0 "]}}");
	expect_error(PROTO_INVALID_ARGUMENT, "policy.deadline.day");
	rpc("policy.get", "{city: '130000'}");
	check_str(dig(expect_result(), "policy.name"), "first");
	check_int(dig(R.result, "policy.deadline.day"), 10);
	rpc("policy.put", "{policy: {city: '140000', deadline: {day: 10}, periods: []}}");
	expect_error(PROTO_INVALID_ARGUMENT, "policy.periods");
	rpc("policy.get", "{city: '140000'}");
	expect_error(PROTO_NOT_FOUND, NULL);
	/* A replaced policy takes effect. */
	rpc("policy.put", "{policy: {city: '130000', name: 'third', deadline: {day: 10}, periods: [" PERIOD0 "]}}");
	check_bool(dig(expect_result(), "ok"), true);
	rpc("policy.get", "{city: '130000'}");
	check_str(dig(expect_result(), "policy.name"), "third");
}

static void check_names(const msgpack_object *list, const char *const *names, uint32_t count)
{
	if (list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size != count) {
		fail_msg("got %s, want %u names", describe(list), count);
	}
	for (uint32_t i = 0; i < count; i++) {
		check_str(&list->via.array.ptr[i], names[i]);
	}
}

static void test_policy_get_fills_every_default(void **state)
{
	(void)state;
	rpc("policy.put", "{policy: {city: '150000', deadline: {day: 15}, periods: [{from: 202001, base_min: 1, "
			  "base_max: 2}]}}");
	check_bool(dig(expect_result(), "ok"), true);
	rpc("policy.get", "{city: '150000'}");
	const msgpack_object *p = dig(expect_result(), "policy");
	static const char *const pension[] = { "pension" };
	static const char *const flexible[] = { "flexible" };
	static const char *const employee[] = { "employee" };
	static const char *const order[] = { "pension", "medical", "unemployment" };
	/* §3.3: every field except city, periods and deadline has the default shown;
	 * Appendix A: name defaults to "". README: month_offset defaults to 0. */
	check_str(dig(p, "city"), "150000");
	check_str(dig(p, "name"), "");
	check_int(dig(p, "deadline.day"), 15);
	check_int(dig(p, "deadline.month_offset"), 0);
	check_int(dig(p, "periods.0.from"), 202001);
	check_int(dig(p, "periods.0.base_min"), 1);
	check_int(dig(p, "periods.0.base_max"), 2);
	assert_int_equal(dig(p, "periods")->via.array.size, 1);
	const msgpack_object *rates = get(dig(p, "periods.0"), "rates");
	for (uint32_t t = 0; rates != NULL && t < rates->via.map.size; t++) { /* a missing rate is 0 */
		const msgpack_object *shares = &rates->via.map.ptr[t].val;
		assert_int_equal(shares->type, MSGPACK_OBJECT_MAP);
		for (uint32_t s = 0; s < shares->via.map.size; s++) {
			check_int(&shares->via.map.ptr[s].val, 0);
		}
	}
	check_names(dig(p, "interest.types"), pension, 1);
	check_names(dig(p, "interest.categories"), flexible, 1);
	check_int(dig(p, "interest.default_ppm"), 25000);
	static const int64_t table[9][2] = { { 2016, 83100 }, { 2017, 71200 }, { 2018, 82900 },
					     { 2019, 76100 }, { 2020, 60400 }, { 2021, 66900 },
					     { 2022, 61200 }, { 2023, 39700 }, { 2024, 26200 } };
	assert_int_equal(dig(p, "interest.rates")->via.array.size, 9);
	for (uint32_t k = 0; k < 9; k++) {
		check_int(dig(p, fmt("interest.rates.%u.0", k)), table[k][0]);
		check_int(dig(p, fmt("interest.rates.%u.1", k)), table[k][1]);
	}
	check_int(dig(p, "late_fee.daily_ppm"), 500);
	check_names(dig(p, "late_fee.categories"), employee, 1);
	check_bool(dig(p, "late_fee.cap_at_principal"), false);
	check_int(dig(p, "backpay.direct_max_months"), 3);
	check_int(dig(p, "backpay.verify_max_months"), 60);
	check_int(dig(p, "backpay.legacy_before"), 201107);
	check_int(dig(p, "backpay.flexible_window_months"), 0);
	check_names(dig(p, "housing.types"), pension, 1);
	check_int(dig(p, "housing.window_months"), 60);
	check_int(dig(p, "housing.required_months"), 60);
	check_int(dig(p, "housing.end_offset_months"), 1);
	check_bool(dig(p, "housing.backpay_counts"), false);
	check_int(dig(p, "housing.grace_days"), 0);
	check_names(dig(p, "withhold.order"), order, 3);
	check_str(dig(p, "withhold.mode"), "stop");
}

static void test_policy_get_defaults_field_by_field_and_given_values(void **state)
{
	(void)state;
	rpc("policy.put", "{policy: {city: '160000', name: 'X', deadline: {day: 31, month_offset: 2}, periods: ["
			  "{from: 201001, base_min: 100, base_max: 200, rates: {injury: {employer: 4000}}}, "
			  "{from: 202001, base_min: 300, base_max: 400}], "
			  "interest: {types: ['medical', 'pension', 'medical'], rates: [[2000, 1]]}, "
			  "late_fee: {cap_at_principal: true}, backpay: {legacy_before: 200001}, "
			  "housing: {required_months: 12, grace_days: 60}, withhold: {mode: 'skip'}}}");
	check_bool(dig(expect_result(), "ok"), true);
	rpc("policy.get", "{city: '160000'}");
	const msgpack_object *p = dig(expect_result(), "policy");
	static const char *const pension_medical[] = { "pension", "medical" };
	static const char *const pension[] = { "pension" };
	static const char *const order[] = { "pension", "medical", "unemployment" };
	check_str(dig(p, "name"), "X");
	check_int(dig(p, "deadline.day"), 31);
	check_int(dig(p, "deadline.month_offset"), 2);
	check_int(dig(p, "periods.1.from"), 202001);
	check_int(dig(p, "periods.1.base_max"), 400);
	check_int(dig(p, "periods.0.rates.injury.employer"), 4000);
	/* README: name lists in canonical order without repeats. */
	check_names(dig(p, "interest.types"), pension_medical, 2);
	check_int(dig(p, "interest.default_ppm"), 25000);
	assert_int_equal(dig(p, "interest.rates")->via.array.size, 1);
	check_int(dig(p, "interest.rates.0.0"), 2000);
	check_bool(dig(p, "late_fee.cap_at_principal"), true);
	check_int(dig(p, "late_fee.daily_ppm"), 500);
	check_int(dig(p, "backpay.legacy_before"), 200001);
	check_int(dig(p, "backpay.verify_max_months"), 60);
	check_int(dig(p, "housing.required_months"), 12);
	check_int(dig(p, "housing.window_months"), 60);
	check_int(dig(p, "housing.grace_days"), 60);
	check_names(dig(p, "housing.types"), pension, 1);
	check_names(dig(p, "withhold.order"), order, 3);
	check_str(dig(p, "withhold.mode"), "skip");
}

static void test_policy_get_unknown_city_is_not_found_at_the_city_code(void **state)
{
	(void)state;
	/* Appendix A: "A city without a policy: `not_found` with `at` = the city
	 * code", as housing.check's city param and a slot's city already have it. */
	rpc("policy.get", "{city: '999999'}");
	assert_false(R.close);
	assert_int_equal(R.msgid, MSGID);
	expect_error(PROTO_NOT_FOUND, "999999");
}

static void test_policy_get_malformed_city_and_known_city(void **state)
{
	(void)state;
	rpc("policy.get", "{city: '11000'}");
	expect_error(PROTO_INVALID_ARGUMENT, "city");
	rpc("policy.get", "{}");
	expect_error(PROTO_INVALID_ARGUMENT, "city");
	rpc("policy.get", "{city: 110000}");
	expect_error(PROTO_INVALID_ARGUMENT, "city");
	rpc("policy.get", "{city: '110000'}");
	check_str(dig(expect_result(), "policy.name"), "Beijing");
	check_int(dig(R.result, "policy.periods.0.rates.pension.flexible"), 200000);
}

/* ---- messages that explain: proto_found_describe, proto_invalid, proto_id_check ---- */

static const char *found_of(const msgpack_object *o, bool echo)
{
	static char buf[64];
	memset(buf, 'Z', sizeof(buf));
	return proto_found_describe(o, echo, buf, sizeof(buf));
}

static msgpack_object str_object(const char *s, size_t size)
{
	msgpack_object o = { .type = MSGPACK_OBJECT_STR };
	o.via.str.ptr = s;
	o.via.str.size = (uint32_t)size;
	return o;
}

static void test_found_describes_integers_nil_and_containers(void **state)
{
	(void)state;
	msgpack_object o = { .type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 202513 };
	assert_string_equal(found_of(&o, false), "202513");
	o.via.u64 = UINT64_MAX;
	assert_string_equal(found_of(&o, false), "18446744073709551615");
	o = (msgpack_object){ .type = MSGPACK_OBJECT_NEGATIVE_INTEGER, .via.i64 = -5 };
	assert_string_equal(found_of(&o, false), "-5");
	o.via.i64 = INT64_MIN;
	assert_string_equal(found_of(&o, false), "-9223372036854775808");
	o = (msgpack_object){ .type = MSGPACK_OBJECT_NIL };
	assert_string_equal(found_of(&o, false), "nil");
	assert_string_equal(found_of(NULL, false), "nothing"); /* absent, or nil in a map */
	o = (msgpack_object){ .type = MSGPACK_OBJECT_BOOLEAN, .via.boolean = true };
	assert_string_equal(found_of(&o, false), "true");
	o = (msgpack_object){ .type = MSGPACK_OBJECT_FLOAT64, .via.f64 = 20240310.0 };
	assert_string_equal(found_of(&o, false), "a float"); /* an integral float is no integer */
	o = (msgpack_object){ .type = MSGPACK_OBJECT_ARRAY };
	o.via.array.size = 3;
	assert_string_equal(found_of(&o, false), "an array of 3");
	o = (msgpack_object){ .type = MSGPACK_OBJECT_MAP };
	o.via.map.size = 0;
	assert_string_equal(found_of(&o, false), "a map of 0");
	o = (msgpack_object){ .type = MSGPACK_OBJECT_BIN };
	assert_string_equal(found_of(&o, false), "a binary");
}

static void test_found_string_is_echoed_only_when_asked_and_cut_within_the_bound(void **state)
{
	(void)state;
	msgpack_object o = str_object("pensio", 6);
	assert_string_equal(found_of(&o, false), "a string");
	assert_string_equal(found_of(&o, true), "\"pensio\"");
	o = str_object("", 0);
	assert_string_equal(found_of(&o, true), "\"\"");
	/* PROTO_ECHO_BYTES (32) is kept, one more byte is cut: both sides of the bound. */
	char long_s[40];
	memset(long_s, 'p', sizeof(long_s));
	o = str_object(long_s, 32);
	assert_string_equal(found_of(&o, true), "\"pppppppppppppppppppppppppppppppp\"");
	o = str_object(long_s, 33);
	assert_string_equal(found_of(&o, true), "\"pppppppppppppppppppppppppppppppp...\"");
	/* The cut never splits a character: 31 bytes, then e-acute (2 bytes) across byte 32. */
	char utf8[40];
	memset(utf8, 'p', 31);
	memcpy(utf8 + 31, "\xc3\xa9\xc3\xa9", 4);
	o = str_object(utf8, 35);
	assert_string_equal(found_of(&o, true), "\"ppppppppppppppppppppppppppppppp...\"");
	o = str_object("\xff\xfe", 2);
	assert_string_equal(found_of(&o, true), "a string that is not UTF-8"); /* never echoed (SPEC 2.1) */
	o = str_object("a\nb", 3);
	assert_string_equal(found_of(&o, true), "a string with control characters or quotes");
	o = str_object("a\"b", 3);
	assert_string_equal(found_of(&o, true), "a string with control characters or quotes");
}

static void test_invalid_message_is_field_expected_found_and_bounded(void **state)
{
	(void)state;
	struct proto_error err;
	msgpack_object o = { .type = MSGPACK_OBJECT_NEGATIVE_INTEGER, .via.i64 = -5 };
	assert_int_equal(proto_invalid(&err, "base", "an integer 0..10000000000 fen", &o, "persons[%u].slots[%u].base",
				       3u, 17u),
			 PROTO_INVALID_ARGUMENT);
	assert_int_equal(err.code, PROTO_INVALID_ARGUMENT);
	assert_string_equal(err.at, "persons[3].slots[17].base");
	assert_string_equal(err.message, "base must be an integer 0..10000000000 fen, got -5");
	msgpack_object s = str_object("20240310", 8);
	proto_invalid(&err, "as_of", "a date YYYYMMDD", &s, "as_of");
	assert_string_equal(err.message, "as_of must be a date YYYYMMDD, got a string");
	proto_invalid_echo(&err, "type", "one of pension, medical", &s, "t");
	assert_string_equal(err.message, "type must be one of pension, medical, got \"20240310\"");
	/* A long expected text is cut within PROTO_MESSAGE_SIZE, never inside a character. */
	char expected[400];
	for (size_t i = 0; i + 2 < sizeof(expected); i += 2) {
		memcpy(expected + i, "\xc3\xa9", 2);
	}
	expected[sizeof(expected) - 2] = '\0';
	proto_invalid_text(&err, "x", expected, "y", "x");
	size_t n = strlen(err.message);
	assert_true(n < PROTO_MESSAGE_SIZE);
	assert_true(n >= PROTO_MESSAGE_SIZE - 2);
	assert_true(proto_utf8_valid(err.message, n));
	assert_memory_equal(err.message, "x must be \xc3\xa9", 12);
}

static void test_id_check_says_what_is_wrong_without_the_id(void **state)
{
	(void)state;
	struct proto_error err;
	static const char prefix[] = "id must be " PROTO_ID_EXPECTED ", got ";
	static const struct {
		const char *id;
		const char *found;
	} cases[] = {
		{ "110105194912310021", "18 characters with a wrong check digit" }, /* ID_F with 1 for X */
		{ "11010519491231002", "17 characters" },
		{ "", "an empty string" },
		{ "1101a519491231002X", "a character other than a digit at position 5" },
		{ "11010519491231002x", "a check character other than 0-9 or X" },
		/* Born 1949-13-31: S = 7+9+0+5+0+20+2+9+24+27+7+27+30+5+0+0+4 = 176,
		 * 176 mod 11 = 0, "10X98765432"[0] = '1': the check digit is right. */
		{ "110105194913310021", "18 characters with an invalid birth date" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char want[PROTO_MESSAGE_SIZE];
		snprintf(want, sizeof(want), "%s%s", prefix, cases[i].found);
		assert_int_equal(proto_id_check(cases[i].id, strlen(cases[i].id), &err, "items[%u].id", 4u),
				 PROTO_INVALID_ARGUMENT);
		assert_string_equal(err.at, "items[4].id");
		assert_string_equal(err.message, want);
		if (strlen(cases[i].id) >= 6) {
			assert_null(strstr(err.message, cases[i].id));
		}
	}
	assert_int_equal(proto_id_check(ID_F, 18, &err, "id"), PROTO_OK);
	assert_int_equal(proto_id_check(ID_M, 18, &err, "id"), PROTO_OK);
}

/* ------------------------------------------------------------------------ */

#define T(f) cmocka_unit_test(f)
#define D_(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_found_describes_integers_nil_and_containers),
		T(test_found_string_is_echoed_only_when_asked_and_cut_within_the_bound),
		T(test_invalid_message_is_field_expected_found_and_bounded),
		T(test_id_check_says_what_is_wrong_without_the_id),
		T(test_frame_two_messages_back_to_back_give_first_size),
		T(test_results_count_set_last_writes_the_bytes_of_count_first),
		T(test_utf8_valid_accepts_rfc3629_and_rejects_the_rest),
		T(test_idempotency_digest_compares_params_as_values),
		D_(test_invalid_utf8_is_rejected_and_never_echoed),
		T(test_frame_never_used_byte_c1_is_invalid),
		T(test_frame_nesting_limit_both_sides),
		T(test_frame_declared_4_billion_elements_too_large_from_header),
		T(test_frame_str32_bin32_ext32_longer_than_max_too_large),
		T(test_frame_size_limit_both_sides),
		T(test_frame_every_msgpack_type_scans_to_its_size),
		D_(test_frame_byte_at_a_time_completes_exactly_at_last_byte),
		D_(test_frame_then_dispatch_pipelined_stream),
		D_(test_envelope_not_an_array_is_malformed_and_closes),
		D_(test_envelope_wrong_length_is_malformed),
		D_(test_envelope_type_other_than_0_or_2_is_malformed),
		D_(test_envelope_msgid_must_be_uint32),
		D_(test_envelope_method_must_be_a_string),
		D_(test_envelope_params_must_be_an_array_holding_a_map),
		D_(test_envelope_not_one_msgpack_message_is_malformed),
		D_(test_envelope_nesting_32_deep_accepted_33_malformed),
		D_(test_unknown_method_is_code_2_and_keeps_connection),
		D_(test_notification_is_executed_never_answered),
		D_(test_ping_answers_pong_and_version),
		D_(test_reject_answers_too_large_or_malformed_with_msgid_0),
		D_(test_good_person_alone_computes),
		D_(test_id_errors),
		D_(test_retire_class_and_person_shape_errors),
		D_(test_slot_field_errors_each_field),
		D_(test_slot_paid_and_paid_date_rule),
		D_(test_slot_deemed_rule),
		D_(test_slot_duplicate_month_city_type_at_later_slot),
		D_(test_repeated_keys_nil_first_and_keys_that_are_not_strings),
		D_(test_slot_in_one_pass_or_field_by_field_gives_the_same_answer),
		D_(test_every_type_category_and_class_name),
		D_(test_slot_fields_in_every_msgpack_form),
		D_(test_persons_anywhere_in_params_and_nesting_inside_them),
		D_(test_first_error_wins_in_document_order),
		D_(test_r1_city_without_policy_and_month_before_first_period),
		D_(test_overflow_is_the_persons_error_at_overflow),
		D_(test_one_persons_error_does_not_fail_the_others),
		D_(test_r1_checked_by_every_compute_method),
		D_(test_detail_items_of_good_person),
		D_(test_request_level_errors),
		D_(test_ids_selector_without_store),
		D_(test_too_many_persons_is_too_large),
		D_(test_elect_month_outside_persons_range_is_that_persons_error),
		T(test_message_parse_fills_the_envelope),
		T(test_compute_and_person_decode_fill_the_structs),
		D_(test_policy_put_validation),
		D_(test_rejected_policy_changes_nothing),
		D_(test_policy_get_fills_every_default),
		D_(test_policy_get_defaults_field_by_field_and_given_values),
		D_(test_policy_get_unknown_city_is_not_found_at_the_city_code),
		D_(test_policy_get_malformed_city_and_known_city),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
