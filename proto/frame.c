/* Finds message boundaries in a msgpack byte stream without unpacking it.
 * msgpack-c would allocate for a declared count before the bytes exist
 * (`dd ff ff ff ff`); scanning first bounds every count by the bytes a
 * message may have, so the unpacker only ever sees complete, sane frames. */
#include <string.h>

#include "proto.h"

void proto_frame_reset(struct proto_frame *frame)
{
	memset(frame, 0, sizeof(*frame));
}

static uint64_t be(const uint8_t *p, uint32_t n)
{
	uint64_t v = 0;
	for (uint32_t i = 0; i < n; i++) {
		v = v << 8 | p[i];
	}
	return v;
}

/* Size of the element header at p (1 + length bytes) and, through *payload
 * and *children, what follows it. Returns 0 for the never-used byte 0xc1. */
static uint32_t header_size(const uint8_t *p, size_t avail, uint64_t *payload, uint64_t *children, bool *need_more)
{
	uint8_t b = p[0];
	*payload = 0;
	*children = 0;
	*need_more = false;
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
		return 1;
	}
	if (b >= 0x80 && b <= 0x8f) {
		*children = 2u * (b & 0x0f);
		return 1;
	}
	if (b >= 0x90 && b <= 0x9f) {
		*children = b & 0x0f;
		return 1;
	}
	if (b >= 0xa0 && b <= 0xbf) {
		*payload = b & 0x1f;
		return 1;
	}
	/* Headers with a length field: byte count n of the field, payload kind. */
	static const struct {
		uint8_t n;     /* bytes of the length (or of the fixed payload) */
		uint8_t kind;  /* 0 fixed payload n, 1 length-prefixed bytes, 2 array, 3 map, 4 ext */
		uint8_t extra; /* fixed bytes after the header (ext type) */
	} t[0x20] = {
		[0x04] = { 1, 1, 0 }, [0x05] = { 2, 1, 0 }, [0x06] = { 4, 1, 0 },               /* bin */
		[0x07] = { 1, 4, 1 }, [0x08] = { 2, 4, 1 }, [0x09] = { 4, 4, 1 },               /* ext */
		[0x0a] = { 4, 0, 0 }, [0x0b] = { 8, 0, 0 },                                     /* float */
		[0x0c] = { 1, 0, 0 }, [0x0d] = { 2, 0, 0 }, [0x0e] = { 4, 0, 0 }, [0x0f] = { 8, 0, 0 }, /* uint */
		[0x10] = { 1, 0, 0 }, [0x11] = { 2, 0, 0 }, [0x12] = { 4, 0, 0 }, [0x13] = { 8, 0, 0 }, /* int */
		[0x14] = { 2, 0, 0 }, [0x15] = { 3, 0, 0 }, [0x16] = { 5, 0, 0 }, [0x17] = { 9, 0, 0 },
		[0x18] = { 17, 0, 0 },                                                          /* fixext */
		[0x19] = { 1, 1, 0 }, [0x1a] = { 2, 1, 0 }, [0x1b] = { 4, 1, 0 },               /* str */
		[0x1c] = { 2, 2, 0 }, [0x1d] = { 4, 2, 0 },                                     /* array */
		[0x1e] = { 2, 3, 0 }, [0x1f] = { 4, 3, 0 },                                     /* map */
	};
	if (b == 0xc1) {
		return 0;
	}
	uint32_t n = t[b - 0xc0].n;
	uint8_t kind = t[b - 0xc0].kind;
	if (kind == 0) {
		*payload = n;
		return 1;
	}
	if (avail < 1u + n) {
		*need_more = true;
		return 1;
	}
	uint64_t len = be(p + 1, n);
	if (kind == 2) {
		*children = len;
	} else if (kind == 3) {
		*children = 2 * len;
	} else {
		*payload = len + t[b - 0xc0].extra;
	}
	return 1 + n;
}

int proto_frame_scan(struct proto_frame *f, const uint8_t *buf, size_t size, size_t max_size, size_t *frame_size)
{
	if (f->depth == 0 && f->offset == 0) {
		f->remaining[0] = 1; /* the message itself */
	}
	while (true) {
		while (f->depth > 0 && f->remaining[f->depth] == 0) {
			f->depth--;
		}
		if (f->depth == 0 && f->remaining[0] == 0) {
			*frame_size = f->offset;
			return PROTO_FRAME_COMPLETE;
		}
		if (f->offset >= size) {
			return size > max_size ? PROTO_FRAME_TOO_LARGE : PROTO_FRAME_MORE;
		}
		uint64_t payload;
		uint64_t children;
		bool need_more;
		uint32_t head = header_size(buf + f->offset, size - f->offset, &payload, &children, &need_more);
		if (head == 0) {
			return PROTO_FRAME_INVALID;
		}
		if (need_more) {
			return size > max_size ? PROTO_FRAME_TOO_LARGE : PROTO_FRAME_MORE;
		}
		/* Every element takes at least one byte: a count beyond the limit can never fit. */
		uint64_t end = (uint64_t)f->offset + head + payload;
		if (end > max_size || children > max_size || end + children > max_size) {
			return PROTO_FRAME_TOO_LARGE;
		}
		if (end > size) {
			return PROTO_FRAME_MORE;
		}
		if (++f->elements > PROTO_ELEMENTS_MAX) {
			return PROTO_FRAME_TOO_LARGE;
		}
		f->remaining[f->depth]--;
		f->offset = (size_t)end;
		if (children > 0) {
			if (f->depth == PROTO_DEPTH_MAX) {
				return PROTO_FRAME_INVALID;
			}
			f->depth++;
			f->remaining[f->depth] = children;
		}
	}
}

uint32_t proto_frame_msgid(const uint8_t *frame, size_t size)
{
	/* [0, msgid, ...]: a fixarray or array16/32 header, type 0, then a uint. */
	size_t i = frame[0] >= 0x90 && frame[0] <= 0x9f ? 1 : frame[0] == 0xdc ? 3 : frame[0] == 0xdd ? 5 : size;
	if (i + 1 >= size || frame[i] != 0x00) {
		return 0;
	}
	uint8_t b = frame[i + 1];
	uint32_t n = b <= 0x7f ? 0 : b == 0xcc ? 1 : b == 0xcd ? 2 : b == 0xce ? 4 : 5;
	if (n == 5 || i + 2 + n > size) {
		return 0;
	}
	return n == 0 ? b : (uint32_t)be(frame + i + 2, n);
}
