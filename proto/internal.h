/* Readers shared by proto's decoders; msgpack-c stays inside proto/. */
#ifndef ARREARS_PROTO_INTERNAL_H
#define ARREARS_PROTO_INTERNAL_H

#include <msgpack.h>

#include "proto.h"

/* A message's params map as msgpack-c unpacked it, but for one value kept
 * as bytes: the array under the first "persons" key, which may hold
 * 100,000 persons of thousands of slots each. Its entry in map is an array
 * of its element count with no elements (ptr NULL); request.c reads the
 * persons from persons_bytes with the cursor of proto/cursor.c, and the
 * payload digest unpacks them. */
struct proto_params {
	msgpack_object map;
	const msgpack_object *persons; /* that entry's value, or NULL */
	const uint8_t *persons_array;   /* the array's header */
	const uint8_t *persons_bytes;   /* its first element */
	const uint8_t *persons_end;     /* the end of the array */
};

static inline const msgpack_object *proto_params_map(const struct proto_params *params)
{
	return &params->map;
}

/* The persons array of compute and person.put params into out (selector,
 * person_count, list): an array of at most PROTO_PERSONS_MAX, at "persons". */
int proto_persons_list(const struct proto_params *params, struct proto_compute *out, struct proto_error *err);

/* ---- msgpack read in place (proto/cursor.c) ---- */

/* 1 in sanitizer builds (make sanitize, the fuzzers): the contracts the
 * production build trusts, such as a parsed frame having passed
 * proto_frame_scan, are checked there. */
#if defined(__SANITIZE_ADDRESS__)
#define PROTO_CHECK_CONTRACTS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PROTO_CHECK_CONTRACTS 1
#endif
#endif
#ifndef PROTO_CHECK_CONTRACTS
#define PROTO_CHECK_CONTRACTS 0
#endif

/* Whether buf holds exactly one msgpack value that msgpack-c unpacks: no
 * 0xc1, nothing cut short, containers nested at most PROTO_DEPTH_MAX deep,
 * no byte after it: what proto_frame_scan finds for a complete frame
 * (fuzz_frame holds the two together). Every value inside one that passed
 * may be read with the functions below and msgpuck's decoders without
 * bounds checks. The parse trusts the scanner; sanitizer builds call this. */
bool proto_msgpack_valid(const uint8_t *buf, size_t size);
/* The bytes of the header of the (valid) array or map at p: 1, 3 or 5. */
size_t proto_msgpack_head(const uint8_t *p);
/* The end of the (valid) value at p. */
const uint8_t *proto_msgpack_skip(const uint8_t *p);
/* What each first byte says of a value's size (proto/cursor.c): up to
 * PROTO_HEAD_SCALAR_MAX, a scalar's whole size (0 for 0xc1). */
extern const uint8_t proto_msgpack_heads[256];
#define PROTO_HEAD_SCALAR_MAX 0x3fu
/* The end of the (valid) value at p: a scalar's without a call. */
static inline const uint8_t *proto_msgpack_next(const uint8_t *p)
{
	uint8_t h = proto_msgpack_heads[*p];
	return h <= PROTO_HEAD_SCALAR_MAX ? p + h : proto_msgpack_skip(p);
}
/* The (valid) value at p as msgpack-c would unpack it, but an array's or a
 * map's elements left out (ptr NULL): for an envelope's fields and for the
 * found part of an error message. */
void proto_msgpack_shallow(const uint8_t *p, msgpack_object *o);

/* The value under key, or NULL when absent or nil (nil means absent). */
const msgpack_object *proto_map_get(const msgpack_object *map, const char *key);
/* False unless o is a msgpack integer in lo..hi (floats are never integers). */
bool proto_read_int(const msgpack_object *o, int64_t lo, int64_t hi, int64_t *v);
bool proto_read_bool(const msgpack_object *o, bool *v);
bool proto_read_city(const msgpack_object *o, uint32_t *city);
bool proto_read_month(const msgpack_object *o, int32_t *month);
bool proto_read_date(const msgpack_object *o, int32_t *date);
/* Index of a string among names, -1 when absent, not a string or unknown. */
int proto_read_name(const msgpack_object *o, const char *const *names, uint32_t name_count);


/* Echoed strings are cut to this many bytes (on a character boundary) and "...". */
#define PROTO_ECHO_BYTES 32u
/* Describes a found value for an error message, within size bytes (at least
 * 48): NULL (absent or nil in a map) "nothing", nil "nil", "true"/"false", an
 * integer its value, "a float", "an array of N", "a map of N", "a binary",
 * "an extension". A string is "a string" unless echo: then quoted, cut at
 * PROTO_ECHO_BYTES, when it is UTF-8 without control characters ("a string
 * that is not UTF-8" otherwise). Never echo personal data or secrets (ids,
 * scan.after, idem keys, tokens). Returns buf. */
const char *proto_found_describe(const msgpack_object *o, bool echo, char *buf, size_t size);
/* For strings of bounded size, never echoed: "a string of N bytes", "a string
 * that is not UTF-8", or proto_found_describe of anything else. */
const char *proto_found_string(const msgpack_object *o, char *buf, size_t size);
/* proto_invalid_text with found described (strings not echoed / echoed). */
int proto_invalid(struct proto_error *err, const char *field, const char *expected, const msgpack_object *found,
		  const char *at_format, ...) __attribute__((format(printf, 5, 6)));
int proto_invalid_echo(struct proto_error *err, const char *field, const char *expected,
		       const msgpack_object *found, const char *at_format, ...) __attribute__((format(printf, 5, 6)));
/* proto_id_check of a msgpack value: anything but a string gets the same id message. */
int proto_id_check_object(const msgpack_object *o, struct proto_error *err, const char *at_format, ...)
	__attribute__((format(printf, 3, 4)));
/* The found part of the id message for a string that fails core_id_check
 * (fault not CORE_ID_OK): "17 characters", "a character other than a digit
 * at position 5", ... */
const char *proto_id_fault_describe(const char *s, size_t size, int fault, uint32_t position, char *buf,
				    size_t buf_size);

/* too_large at the path: "<field> must hold at most <max> entries, got <count>". */
int proto_too_many(struct proto_error *err, const char *field, uint32_t max, uint32_t count, const char *at_format,
		   ...) __attribute__((format(printf, 5, 6)));

/* Expected texts shared by the decoders (ranges of SPEC §2, §2.1). */
#define PROTO_EXPECT_DATE "a date YYYYMMDD 19000101..21001231"
#define PROTO_EXPECT_DATE_OR_0 "0 or a date YYYYMMDD 19000101..21001231" /* paid_date */
#define PROTO_EXPECT_MONTH "a month YYYYMM 195001..209912"
#define PROTO_EXPECT_CITY "a city code of 6 digits"
#define PROTO_EXPECT_MONEY "an integer 0..10000000000 fen"
#define PROTO_EXPECT_RATE "a rate 0..1000000 ppm"
#define PROTO_EXPECT_BOOL "a boolean"
#define PROTO_EXPECT_TYPE "one of pension, medical, unemployment, injury, maternity"
#define PROTO_EXPECT_CATEGORY "one of employee, flexible"

#endif
