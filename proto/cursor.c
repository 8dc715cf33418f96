/* msgpack read in place: the check that makes a frame safe to read without
 * msgpack-c's tree, and small readers over checked bytes. msgpuck (Tarantool's
 * msgpuck.h) decodes the values; its mp_check is not used on frames from
 * clients: it accepts 0xc1, has no bound on nesting, and its element count
 * is an int that a map32 header of 2^31 entries overflows. */
#include <msgpuck.h>

#include "internal.h"

/* What a value's first byte says about its size. */
enum { HEAD_BAD, HEAD_FIXED, HEAD_BYTES, HEAD_EXT, HEAD_ARRAY, HEAD_MAP };
struct head {
	uint8_t kind;
	uint8_t size; /* HEAD_FIXED: the whole value's bytes; otherwise the bytes of its length (0: in the first byte) */
};

#define FIXSTR(k) [0xa0 + (k)] = { HEAD_FIXED, 1 + (k) }
#define FIXSTR8(k) FIXSTR(k), FIXSTR(k + 1), FIXSTR(k + 2), FIXSTR(k + 3), FIXSTR(k + 4), FIXSTR(k + 5), \
		   FIXSTR(k + 6), FIXSTR(k + 7)
static const struct head heads[256] = {
	[0x00 ... 0x7f] = { HEAD_FIXED, 1 }, /* positive fixint */
	[0x80 ... 0x8f] = { HEAD_MAP, 0 },
	[0x90 ... 0x9f] = { HEAD_ARRAY, 0 },
	FIXSTR8(0), FIXSTR8(8), FIXSTR8(16), FIXSTR8(24),
	[0xc0] = { HEAD_FIXED, 1 }, /* nil; 0xc1 is never used: HEAD_BAD */
	[0xc2] = { HEAD_FIXED, 1 }, [0xc3] = { HEAD_FIXED, 1 },
	[0xc4] = { HEAD_BYTES, 1 }, [0xc5] = { HEAD_BYTES, 2 }, [0xc6] = { HEAD_BYTES, 4 }, /* bin */
	[0xc7] = { HEAD_EXT, 1 },   [0xc8] = { HEAD_EXT, 2 },	[0xc9] = { HEAD_EXT, 4 },
	[0xca] = { HEAD_FIXED, 5 }, [0xcb] = { HEAD_FIXED, 9 }, /* float32, float64 */
	[0xcc] = { HEAD_FIXED, 2 }, [0xcd] = { HEAD_FIXED, 3 }, [0xce] = { HEAD_FIXED, 5 }, [0xcf] = { HEAD_FIXED, 9 },
	[0xd0] = { HEAD_FIXED, 2 }, [0xd1] = { HEAD_FIXED, 3 }, [0xd2] = { HEAD_FIXED, 5 }, [0xd3] = { HEAD_FIXED, 9 },
	[0xd4] = { HEAD_FIXED, 3 }, [0xd5] = { HEAD_FIXED, 4 }, [0xd6] = { HEAD_FIXED, 6 }, /* fixext */
	[0xd7] = { HEAD_FIXED, 10 }, [0xd8] = { HEAD_FIXED, 18 },
	[0xd9] = { HEAD_BYTES, 1 }, [0xda] = { HEAD_BYTES, 2 }, [0xdb] = { HEAD_BYTES, 4 }, /* str */
	[0xdc] = { HEAD_ARRAY, 2 }, [0xdd] = { HEAD_ARRAY, 4 },
	[0xde] = { HEAD_MAP, 2 },   [0xdf] = { HEAD_MAP, 4 },
	[0xe0 ... 0xff] = { HEAD_FIXED, 1 }, /* negative fixint */
};

static uint64_t be(const uint8_t *p, uint32_t n)
{
	uint64_t v = 0;
	for (uint32_t i = 0; i < n; i++) {
		v = v << 8 | p[i];
	}
	return v;
}

/* The rules of msgpack-c's unpacker, which the whole frame met before it
 * was read in place: a container with elements opens a level, and the
 * 33rd open level fails (as proto_frame_scan counts them). */
bool proto_msgpack_valid(const uint8_t *buf, size_t size)
{
	uint64_t left[PROTO_DEPTH_MAX + 1]; /* elements still to come at each open level */
	uint32_t depth = 0;
	size_t at = 0;
	left[0] = 1;
	while (true) {
		while (left[depth] == 0) {
			if (depth == 0) {
				return at == size;
			}
			depth--;
		}
		left[depth]--;
		if (at >= size) {
			return false;
		}
		uint8_t b = buf[at];
		struct head h = heads[b];
		if (h.kind == HEAD_FIXED) {
			at += h.size; /* past size: the next read or the end says so */
			continue;
		}
		if (h.kind == HEAD_BAD || size - at - 1 < h.size) {
			return false;
		}
		uint64_t n = h.size == 0 ? b & (h.kind == HEAD_MAP || h.kind == HEAD_ARRAY ? 0x0f : 0x1f)
					 : be(buf + at + 1, h.size);
		at += 1u + h.size;
		if (h.kind == HEAD_BYTES || h.kind == HEAD_EXT) {
			n += h.kind == HEAD_EXT; /* the extension's type byte */
			if (n > size - at) {
				return false;
			}
			at += n;
			continue;
		}
		n *= h.kind == HEAD_MAP ? 2 : 1;
		if (n == 0) {
			continue;
		}
		/* Every element takes a byte at least: a count past the bytes left never fits. */
		if (n > size - at || depth == PROTO_DEPTH_MAX) {
			return false;
		}
		left[++depth] = n;
	}
}

size_t proto_msgpack_head(const uint8_t *p)
{
	ASSERT(heads[*p].kind == HEAD_ARRAY || heads[*p].kind == HEAD_MAP);
	return 1u + heads[*p].size;
}

const uint8_t *proto_msgpack_skip(const uint8_t *p)
{
	const char *c = (const char *)p;
	mp_next(&c); /* counts fit its int: a frame's elements are fewer than its bytes */
	return (const uint8_t *)c;
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
