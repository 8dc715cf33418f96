/* The frame scanner fed in random splits. Input: one byte choosing the
 * size limit, four bytes seeding the split points, then the byte stream.
 * The stream is scanned whole (every byte present at once) and again as
 * the server receives it, in chunks whose sizes come from the seed, with
 * the scan state kept across calls. Asserts: both ways find the same
 * frames and end the same way; a frame lies inside the bytes and is one
 * whole msgpack object to msgpack-c too; its msgid is read within bounds.
 * The parse's own check of a frame (proto_msgpack_valid, which lets inline
 * persons be read in place) says yes exactly when the scanner finds one
 * whole value in all the bytes, and skipping a value it passed lands on
 * its end. */
#include "fuzz_common.h"
#include "../../proto/internal.h"

#define FRAMES_MAX 4096u
#define HEADER_BYTES 5u

struct scan_result {
	size_t frame_end[FRAMES_MAX]; /* offset after each frame */
	uint32_t frame_count;
	int last_rc; /* how the scan of what follows the last frame ended */
};

/* Limits: the server's, and small ones so that too_large is reached. */
static const size_t size_limits[4] = { PROTO_REQUEST_BYTES_MAX, 16, 100, 4096 };

static uint32_t xorshift(uint32_t *state)
{
	uint32_t x = *state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return x;
}

/* The scanner's word checked against msgpack-c's, once per frame of the whole scan. */
static void check_frame(const uint8_t *frame, size_t size)
{
	static msgpack_zone zone;
	static bool zone_ready;
	msgpack_object obj;
	size_t offset = 0;
	if (!zone_ready) {
		FUZZ_CHECK(msgpack_zone_init(&zone, 2048));
		zone_ready = true;
	}
	msgpack_zone_clear(&zone);
	int rc = msgpack_unpack((const char *)frame, size, &offset, &zone, &obj);
	/* msgpack-c refuses nesting past its own stack: an error, never "more bytes". */
	FUZZ_CHECK(rc != MSGPACK_UNPACK_CONTINUE);
	FUZZ_CHECK(rc != MSGPACK_UNPACK_SUCCESS || offset == size);
	FUZZ_CHECK(proto_msgpack_skip(frame) == frame + size);
	(void)proto_frame_msgid(frame, size);
}

/* proto_msgpack_valid against the scanner with the bytes as the limit
 * (inputs are far below PROTO_ELEMENTS_MAX): the same one value, the same
 * 0xc1, the same depth; checked on the stream and on each of its prefixes
 * up to a few. */
static void check_valid(const uint8_t *bytes, size_t size)
{
	for (size_t cut = 0; cut <= size && cut < 4; cut++) {
		struct proto_frame f;
		size_t frame_size = 0;
		proto_frame_reset(&f);
		int rc = size - cut == 0 ? PROTO_FRAME_MORE
					 : proto_frame_scan(&f, bytes, size - cut, size - cut, &frame_size);
		bool one = rc == PROTO_FRAME_COMPLETE && frame_size == size - cut;
		FUZZ_CHECK(proto_msgpack_valid(bytes, size - cut) == one);
	}
}

/* avail(k): bytes present at step k; whole: one step with everything. */
static void scan(const uint8_t *stream, size_t size, size_t limit, uint32_t seed, bool whole, struct scan_result *r)
{
	struct proto_frame f;
	size_t start = 0;
	size_t avail = whole ? size : 0;
	uint32_t state = seed | 1;
	proto_frame_reset(&f);
	r->frame_count = 0;
	while (true) {
		if (!whole && avail < size) {
			/* Mostly small chunks, now and then a large one. */
			uint32_t x = xorshift(&state);
			size_t chunk = x % 8 == 0 ? x >> 8 : 1 + (x >> 8) % 7;
			avail = chunk >= size - avail ? size : avail + chunk;
		}
		size_t frame_size;
		int rc = proto_frame_scan(&f, stream + start, avail - start, limit, &frame_size);
		if (rc == PROTO_FRAME_COMPLETE) {
			FUZZ_CHECK(frame_size > 0 && frame_size <= avail - start && frame_size <= limit);
			if (whole) {
				check_frame(stream + start, frame_size);
			}
			start += frame_size;
			proto_frame_reset(&f);
			if (r->frame_count == FRAMES_MAX) {
				r->last_rc = -1;
				return;
			}
			r->frame_end[r->frame_count++] = start;
			continue;
		}
		FUZZ_CHECK(f.offset <= avail - start && f.depth <= PROTO_DEPTH_MAX);
		if (rc == PROTO_FRAME_MORE && avail < size) {
			continue;
		}
		r->last_rc = rc;
		return;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct scan_result whole;
	static struct scan_result split;
	if (size < HEADER_BYTES) {
		return 0;
	}
	size_t limit = size_limits[data[0] & 3];
	uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
	const uint8_t *stream = data + HEADER_BYTES;
	size_t stream_size = size - HEADER_BYTES;
	scan(stream, stream_size, limit, seed, true, &whole);
	scan(stream, stream_size, limit, seed, false, &split);
	FUZZ_CHECK(whole.frame_count == split.frame_count);
	FUZZ_CHECK(memcmp(whole.frame_end, split.frame_end, sizeof(size_t) * whole.frame_count) == 0);
	FUZZ_CHECK(whole.last_rc == split.last_rc);
	check_valid(stream, stream_size);
	return 0;
}
