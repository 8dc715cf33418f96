/* msgpack read in place: the check that makes a frame safe to read without
 * msgpack-c's tree, and small readers over checked bytes. msgpuck (Tarantool's
 * msgpuck.h) decodes the values; its mp_check is not used on frames from
 * clients: it accepts 0xc1, has no bound on nesting, and its element count
 * is an int that a map32 header of 2^31 entries overflows. */
#include <msgpuck.h>

#include "internal.h"

/* What a value's first byte says about its size, in one byte: below
 * HEAD_BYTES the whole value's size (0: 0xc1, never used); otherwise a kind
 * and, in the low bits, the bytes of its length field (0: in the first byte). */
#define heads proto_msgpack_heads
_Static_assert(PROTO_HEAD_SCALAR_MAX + 1 == 0x40, "scalars below HEAD_BYTES");
enum { HEAD_BYTES = 0x40, HEAD_EXT = 0x50, HEAD_ARRAY = 0x60, HEAD_MAP = 0x70 };
#define HEAD_KIND(h) ((h) & 0xf0)
#define HEAD_WIDTH(h) ((h) & 0x0fu)

#define FIXSTR(k) [0xa0 + (k)] = 1 + (k)
#define FIXSTR8(k) FIXSTR(k), FIXSTR(k + 1), FIXSTR(k + 2), FIXSTR(k + 3), FIXSTR(k + 4), FIXSTR(k + 5), \
		   FIXSTR(k + 6), FIXSTR(k + 7)
const uint8_t proto_msgpack_heads[256] = {
	[0x00 ... 0x7f] = 1, /* positive fixint */
	[0x80 ... 0x8f] = HEAD_MAP,
	[0x90 ... 0x9f] = HEAD_ARRAY,
	FIXSTR8(0), FIXSTR8(8), FIXSTR8(16), FIXSTR8(24),
	[0xc0] = 1, [0xc2] = 1, [0xc3] = 1, /* nil, false, true; 0xc1 stays 0 */
	[0xc4] = HEAD_BYTES | 1, [0xc5] = HEAD_BYTES | 2, [0xc6] = HEAD_BYTES | 4, /* bin */
	[0xc7] = HEAD_EXT | 1, [0xc8] = HEAD_EXT | 2, [0xc9] = HEAD_EXT | 4,
	[0xca] = 5, [0xcb] = 9, /* float32, float64 */
	[0xcc] = 2, [0xcd] = 3, [0xce] = 5, [0xcf] = 9, /* uint */
	[0xd0] = 2, [0xd1] = 3, [0xd2] = 5, [0xd3] = 9, /* int */
	[0xd4] = 3, [0xd5] = 4, [0xd6] = 6, [0xd7] = 10, [0xd8] = 18, /* fixext */
	[0xd9] = HEAD_BYTES | 1, [0xda] = HEAD_BYTES | 2, [0xdb] = HEAD_BYTES | 4, /* str */
	[0xdc] = HEAD_ARRAY | 2, [0xdd] = HEAD_ARRAY | 4,
	[0xde] = HEAD_MAP | 2, [0xdf] = HEAD_MAP | 4,
	[0xe0 ... 0xff] = 1, /* negative fixint */
};

static uint64_t be(const uint8_t *p, uint32_t n)
{
	uint64_t v = 0;
	for (uint32_t i = 0; i < n; i++) {
		v = v << 8 | p[i];
	}
	return v;
}

/* The value at p that is not a scalar (h its first byte's entry; its length
 * field is there): the bytes after its header that are its own (a
 * string's, a binary's, an extension's with its type byte), and its
 * elements (a map's keys and values). */
static inline void head_parts(const uint8_t *p, uint8_t h, uint64_t *bytes, uint64_t *children)
{
	uint64_t n = HEAD_WIDTH(h) > 0 ? be(p + 1, HEAD_WIDTH(h)) : *p & 0x0fu; /* fixstr is a scalar: never here */
	*bytes = HEAD_KIND(h) == HEAD_BYTES ? n : HEAD_KIND(h) == HEAD_EXT ? n + 1 : 0;
	*children = HEAD_KIND(h) == HEAD_MAP ? 2 * n : HEAD_KIND(h) == HEAD_ARRAY ? n : 0;
}

/* The rules of msgpack-c's unpacker, which the whole frame met before it
 * was read in place: a container with elements opens a level, and the
 * 33rd open level fails (as proto_frame_scan counts them). The elements
 * left at the current level stay in a register: scalars, most of a
 * request, cost a load, a table lookup and an add. */
bool proto_msgpack_valid(const uint8_t *buf, size_t size)
{
	uint64_t outer[PROTO_DEPTH_MAX]; /* elements still to come at each enclosing level */
	uint32_t depth = 0;
	uint64_t left = 1;
	size_t at = 0;
	while (true) {
		/* The scalars of this level: a load, a lookup, an add. */
		for (size_t n = left < size - at ? left : size - at; n > 0; n--) {
			uint8_t h = heads[buf[at]];
			if ((uint8_t)(h - 1) >= HEAD_BYTES - 1) { /* 0xc1 (0) or not a scalar */
				break;
			}
			at += h;
			left--;
			if (at >= size) {
				break;
			}
		}
		if (at > size) {
			return false; /* the last scalar was cut short */
		}
		if (left == 0) {
			if (depth == 0) {
				return at == size;
			}
			left = outer[--depth];
			continue;
		}
		left--;
		if (at >= size) {
			return false;
		}
		uint8_t h = heads[buf[at]];
		if (h < HEAD_BYTES) {
			return false; /* 0xc1 */
		}
		if (size - at - 1 < HEAD_WIDTH(h)) {
			return false;
		}
		uint64_t bytes;
		uint64_t n;
		head_parts(buf + at, h, &bytes, &n);
		at += 1u + HEAD_WIDTH(h);
		if (bytes > size - at) {
			return false;
		}
		at += bytes;
		if (n == 0) {
			continue;
		}
		/* Every element takes a byte at least: a count past the bytes left never fits. */
		if (n > size - at || depth == PROTO_DEPTH_MAX) {
			return false;
		}
		outer[depth++] = left;
		left = n;
	}
}

size_t proto_msgpack_head(const uint8_t *p)
{
	ASSERT(HEAD_KIND(heads[*p]) == HEAD_ARRAY || HEAD_KIND(heads[*p]) == HEAD_MAP);
	return 1u + HEAD_WIDTH(heads[*p]);
}

const uint8_t *proto_msgpack_skip(const uint8_t *p)
{
	uint64_t left = 1;
	while (left > 0) {
		left--;
		uint8_t h = heads[*p];
		if (h < HEAD_BYTES) {
			p += h;
			continue;
		}
		uint64_t bytes;
		uint64_t n;
		head_parts(p, h, &bytes, &n);
		p += 1u + HEAD_WIDTH(h) + bytes;
		left += n;
	}
	return p;
}

void proto_msgpack_shallow(const uint8_t *p, msgpack_object *o)
{
	const char *c = (const char *)p;
	memset(o, 0, sizeof(*o));
	switch (mp_typeof(*c)) {
	case MP_NIL:
		o->type = MSGPACK_OBJECT_NIL;
		break;
	case MP_BOOL:
		o->type = MSGPACK_OBJECT_BOOLEAN;
		o->via.boolean = mp_decode_bool(&c);
		break;
	case MP_UINT:
		o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
		o->via.u64 = mp_decode_uint(&c);
		break;
	case MP_INT: { /* msgpack-c: a signed encoding of a value >= 0 is a positive integer */
		int64_t v = mp_decode_int(&c);
		o->type = v >= 0 ? MSGPACK_OBJECT_POSITIVE_INTEGER : MSGPACK_OBJECT_NEGATIVE_INTEGER;
		o->via.i64 = v;
		break;
	}
	case MP_FLOAT:
		o->type = MSGPACK_OBJECT_FLOAT32;
		o->via.f64 = mp_decode_float(&c);
		break;
	case MP_DOUBLE:
		o->type = MSGPACK_OBJECT_FLOAT64;
		o->via.f64 = mp_decode_double(&c);
		break;
	case MP_STR:
		o->type = MSGPACK_OBJECT_STR;
		o->via.str.ptr = mp_decode_str(&c, &o->via.str.size);
		break;
	case MP_BIN:
		o->type = MSGPACK_OBJECT_BIN;
		o->via.bin.ptr = mp_decode_bin(&c, &o->via.bin.size);
		break;
	case MP_ARRAY:
		o->type = MSGPACK_OBJECT_ARRAY;
		o->via.array.size = mp_decode_array(&c);
		break;
	case MP_MAP:
		o->type = MSGPACK_OBJECT_MAP;
		o->via.map.size = mp_decode_map(&c);
		break;
	default:
		o->type = MSGPACK_OBJECT_EXT;
		break;
	}
}
