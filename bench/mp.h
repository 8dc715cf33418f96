/* bench/mp.h: a small msgpack walker for the benchmark clients (build/load,
 * build/walk): headers one at a time, bounds-checked, no allocation, and the
 * reading of a compute answer [1, msgid, error, {results, next}].
 *
 * Header-only with static functions: each client is one translation unit
 * built with nothing beyond libc (walk adds LMDB and msgpack-c for its own
 * parts). */
#ifndef ARREARS_BENCH_MP_H
#define ARREARS_BENCH_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ID_BYTES_MAX 31u /* a fixstr; resident ids have 18 */
/* ---- msgpack walker: headers one at a time, bounds-checked, no allocation ---- */

enum mp_kind { MP_NIL, MP_BOOL, MP_UINT, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_EXT, MP_ARRAY, MP_MAP };

enum { MP_OK = 0, MP_MORE = 1, MP_BAD = -1 }; /* MORE: the bytes end inside the item */

struct mp_reader {
	const uint8_t *data;
	size_t size;
	size_t at;
};

struct mp_item {
	enum mp_kind kind;
	uint64_t value;       /* a uint, an int's bits, a bool, a payload size or an element count */
	const uint8_t *bytes; /* str/bin/ext payload; borrows the reader's buffer */
};

/* What a tag byte from 0xc0 to 0xdf announces. */
struct mp_tag {
	uint8_t valid;
	uint8_t kind;
	uint8_t width;     /* bytes after the tag holding the value or the payload size */
	uint8_t value;     /* the value or payload size itself when width is 0 */
	uint8_t skip;      /* bytes between those and the payload: an ext's type */
	uint8_t sized;     /* value is the size of a payload that follows */
	uint8_t is_signed; /* value is two's complement over width bytes */
};

static const struct mp_tag mp_tags[0x20] = {
	[0x00] = {1, MP_NIL, 0, 0, 0, 0, 0},   [0x02] = {1, MP_BOOL, 0, 0, 0, 0, 0},
	[0x03] = {1, MP_BOOL, 0, 1, 0, 0, 0},  [0x04] = {1, MP_BIN, 1, 0, 0, 1, 0},
	[0x05] = {1, MP_BIN, 2, 0, 0, 1, 0},   [0x06] = {1, MP_BIN, 4, 0, 0, 1, 0},
	[0x07] = {1, MP_EXT, 1, 0, 1, 1, 0},   [0x08] = {1, MP_EXT, 2, 0, 1, 1, 0},
	[0x09] = {1, MP_EXT, 4, 0, 1, 1, 0},   [0x0a] = {1, MP_FLOAT, 4, 0, 0, 0, 0},
	[0x0b] = {1, MP_FLOAT, 8, 0, 0, 0, 0}, [0x0c] = {1, MP_UINT, 1, 0, 0, 0, 0},
	[0x0d] = {1, MP_UINT, 2, 0, 0, 0, 0},  [0x0e] = {1, MP_UINT, 4, 0, 0, 0, 0},
	[0x0f] = {1, MP_UINT, 8, 0, 0, 0, 0},  [0x10] = {1, MP_INT, 1, 0, 0, 0, 1},
	[0x11] = {1, MP_INT, 2, 0, 0, 0, 1},   [0x12] = {1, MP_INT, 4, 0, 0, 0, 1},
	[0x13] = {1, MP_INT, 8, 0, 0, 0, 1},   [0x14] = {1, MP_EXT, 0, 1, 1, 1, 0},
	[0x15] = {1, MP_EXT, 0, 2, 1, 1, 0},   [0x16] = {1, MP_EXT, 0, 4, 1, 1, 0},
	[0x17] = {1, MP_EXT, 0, 8, 1, 1, 0},   [0x18] = {1, MP_EXT, 0, 16, 1, 1, 0},
	[0x19] = {1, MP_STR, 1, 0, 0, 1, 0},   [0x1a] = {1, MP_STR, 2, 0, 0, 1, 0},
	[0x1b] = {1, MP_STR, 4, 0, 0, 1, 0},   [0x1c] = {1, MP_ARRAY, 2, 0, 0, 0, 0},
	[0x1d] = {1, MP_ARRAY, 4, 0, 0, 0, 0}, [0x1e] = {1, MP_MAP, 2, 0, 0, 0, 0},
	[0x1f] = {1, MP_MAP, 4, 0, 0, 0, 0},
};

static bool mp_tag_of(uint8_t b, struct mp_tag *t)
{
	*t = (struct mp_tag){.valid = 1};
	if (b <= 0x7f) {
		t->kind = MP_UINT;
	} else if (b >= 0xe0) {
		t->kind = MP_INT; /* value is fixed up by the caller */
	} else if (b <= 0x8f) {
		t->kind = MP_MAP;
		t->value = b & 0x0fu;
	} else if (b <= 0x9f) {
		t->kind = MP_ARRAY;
		t->value = b & 0x0fu;
	} else if (b <= 0xbf) {
		t->kind = MP_STR;
		t->value = b & 0x1fu;
		t->sized = 1;
	} else {
		*t = mp_tags[b - 0xc0];
	}
	return t->valid != 0; /* 0xc1 is the one byte msgpack never uses */
}

static uint64_t be_read(const uint8_t *p, unsigned width)
{
	uint64_t value = 0;
	for (unsigned i = 0; i < width; i++) {
		value = value << 8 | p[i];
	}
	return value;
}

/* Reads one item's header, and the payload of a str, bin or ext.
 * Returns MP_OK, MP_MORE when the buffer ends first (the reader is unmoved),
 * MP_BAD on the unused tag 0xc1. */
static int mp_next(struct mp_reader *r, struct mp_item *item)
{
	if (r->at >= r->size) {
		return MP_MORE;
	}
	uint8_t b = r->data[r->at];
	struct mp_tag t;
	if (!mp_tag_of(b, &t)) {
		return MP_BAD;
	}
	size_t left = r->size - r->at - 1;
	if (left < t.width) {
		return MP_MORE;
	}
	const uint8_t *p = r->data + r->at + 1;
	uint64_t value = t.width == 0 ? t.value : be_read(p, t.width);
	if (b <= 0x7f) {
		value = b;
	} else if (b >= 0xe0) {
		value = (uint64_t)(int64_t)(int8_t)b;
	} else if (t.is_signed && t.width < 8) {
		uint64_t sign = 1ull << (8 * t.width - 1);
		value = (value ^ sign) - sign;
	}
	size_t used = 1 + (size_t)t.width;
	item->bytes = NULL;
	if (t.sized) {
		if (left - t.width < t.skip || left - t.width - t.skip < value) {
			return MP_MORE;
		}
		item->bytes = p + t.width + t.skip;
		used += t.skip + (size_t)value;
	}
	item->kind = (enum mp_kind)t.kind;
	item->value = value;
	r->at += used;
	return MP_OK;
}

/* One item's bytes (its header and any payload) and the children it
 * announces, for skipping: a switch on the tag byte instead of mp_next's
 * decode, because skipping is most of what a client does with an answer. */
static int mp_span(const uint8_t *p, size_t left, size_t *used, uint64_t *children)
{
	uint8_t b = p[0];
	size_t width = 0; /* bytes of a size or count after the tag */
	size_t fixed = 0; /* payload bytes fixed by the tag */
	*children = 0;
	if (b <= 0x7f || b >= 0xe0) {
		*used = 1;
		return MP_OK;
	}
	if (b <= 0x8f) {
		*children = 2u * (b & 0x0fu);
		*used = 1;
		return MP_OK;
	}
	if (b <= 0x9f) {
		*children = b & 0x0fu;
		*used = 1;
		return MP_OK;
	}
	if (b <= 0xbf) {
		fixed = b & 0x1fu;
	} else {
		struct mp_tag t = mp_tags[b - 0xc0];
		if (!t.valid) {
			return MP_BAD; /* 0xc1 */
		}
		width = t.width;
		if (left < 1 + width) {
			return MP_MORE;
		}
		uint64_t value = width == 0 ? t.value : be_read(p + 1, (unsigned)width);
		if (t.kind == MP_ARRAY) {
			*children = value;
		} else if (t.kind == MP_MAP) {
			*children = 2 * value;
		} else if (t.sized) {
			fixed = t.skip + value; /* an ext's type byte, then the payload */
		} /* a number: its width is all */
	}
	if (left - 1 - width < fixed) {
		return MP_MORE;
	}
	*used = 1 + width + fixed;
	return MP_OK;
}

/* Skips *pending items (children count too), resumably: on MP_MORE the
 * reader stands before the first item not whole and *pending counts it. */
static int mp_skip_items(struct mp_reader *r, uint64_t *pending)
{
	while (*pending > 0) {
		if (r->at >= r->size) {
			return MP_MORE;
		}
		size_t used;
		uint64_t children;
		int rc = mp_span(r->data + r->at, r->size - r->at, &used, &children);
		if (rc != MP_OK) {
			return rc;
		}
		r->at += used;
		*pending += children - 1;
	}
	return MP_OK;
}

/* Skips one whole object (the reader is unmoved unless it returns MP_OK). */
static int mp_skip(struct mp_reader *r)
{
	size_t start = r->at;
	uint64_t pending = 1;
	int rc = mp_skip_items(r, &pending);
	if (rc != MP_OK) {
		r->at = start;
	}
	return rc;
}

static bool mp_str_is(const struct mp_item *item, const char *text)
{
	size_t size = strlen(text);
	return item->kind == MP_STR && item->value == size && memcmp(item->bytes, text, size) == 0;
}

/* ---- ids fetched with scan ---- */

struct id {
	uint8_t size;
	char bytes[ID_BYTES_MAX];
};

struct ids {
	struct id *items; /* capacity of them */
	uint32_t count;
	uint32_t capacity;
	uint32_t skipped;  /* scan entries with an error */
	struct id next;    /* the page's `next` when has_next */
	bool has_next;
	uint64_t entries;  /* of every page read: all of results, with errors or not */
	const char *sum_key; /* NULL, or a field whose integer values are summed into sum */
	int64_t sum;
	const char *last_prefix; /* NULL, or entries whose id begins past it are only counted in beyond */
	size_t last_prefix_size;
	uint64_t beyond;
};

/* Whether the id begins past the sink's last prefix (ids of a page ascend). */
static bool id_beyond(const struct ids *sink, const struct id *id)
{
	if (sink->last_prefix == NULL) {
		return false;
	}
	size_t n = id->size < sink->last_prefix_size ? id->size : sink->last_prefix_size;
	return memcmp(id->bytes, sink->last_prefix, n) > 0; /* an id is longer than a prefix */
}

static bool id_copy(struct id *id, const struct mp_item *item)
{
	if (item->kind != MP_STR || item->value == 0 || item->value > ID_BYTES_MAX) {
		return false;
	}
	id->size = (uint8_t)item->value;
	memcpy(id->bytes, item->bytes, id->size);
	return true;
}

/* ---- responses ---- */

struct response {
	uint32_t msgid;
	bool error;        /* the response's error is not nil */
	bool person_error; /* an entry of result.results carries a non-nil "error" */
};

/* Reads one entry of `results`: a map of `pairs` pairs. With a sink, keeps the
 * entry's id when it has no error. */
static int entry_read(struct mp_reader *r, uint64_t pairs, struct response *out, struct ids *sink)
{
	struct id id = {0};
	bool has_id = false;
	bool has_error = false;
	int64_t sum = 0;
	for (uint64_t i = 0; i < pairs; i++) {
		struct mp_item key;
		struct mp_item value;
		int rc = mp_next(r, &key);
		if (rc != MP_OK) {
			return rc;
		}
		if ((rc = mp_next(r, &value)) != MP_OK) {
			return rc;
		}
		if (mp_str_is(&key, "id") && sink != NULL) {
			has_id = id_copy(&id, &value);
			if (!has_id) {
				return MP_BAD;
			}
		} else if (mp_str_is(&key, "error") && value.kind != MP_NIL) {
			has_error = true;
		} else if (sink != NULL && sink->sum_key != NULL && mp_str_is(&key, sink->sum_key) &&
			   (value.kind == MP_UINT || value.kind == MP_INT)) {
			sum += (int64_t)value.value;
		}
		/* A container's children are skipped; a scalar is read whole. */
		uint64_t children = value.kind == MP_ARRAY ? value.value : value.kind == MP_MAP ? 2 * value.value : 0;
		if (children > 0 && (rc = mp_skip_items(r, &children)) != MP_OK) {
			return rc;
		}
	}
	if (sink != NULL && has_id && id_beyond(sink, &id)) {
		sink->beyond++; /* another walker's: its error or sum is that walker's */
		return MP_OK;
	}
	out->person_error |= has_error;
	if (sink != NULL) {
		sink->entries++;
		sink->sum += sum;
	}
	if (sink != NULL && has_error) {
		sink->skipped++;
	} else if (sink != NULL && has_id && sink->count < sink->capacity) {
		sink->items[sink->count++] = id;
	}
	return MP_OK;
}

/* A response read as its bytes come: where it stands between reads. An
 * answer of megabytes arrives in many reads; each item is read once, and
 * an item cut by the end of the bytes is read again whole from its start
 * (an entry of results at most: entry_read changes the sink only once an
 * entry is whole). */
enum { STREAM_HEAD, STREAM_PAIRS, STREAM_RESULTS, STREAM_DONE };

struct response_stream {
	struct response out;
	struct ids *sink;
	int stage;
	uint64_t left;        /* pairs of the result map (PAIRS), or entries of results (RESULTS), still to read */
	uint64_t pairs_after; /* pairs of the result map after results */
};

/* [1, msgid, error, result] up to the result map's header: exactly one of
 * error and result is nil, an error is a map, a result is a map. */
static int response_head(struct mp_reader *r, struct response_stream *s)
{
	struct mp_item item;
	int rc;
	if ((rc = mp_next(r, &item)) != MP_OK) {
		return rc;
	}
	if (item.kind != MP_ARRAY || item.value != 4) {
		return MP_BAD;
	}
	if ((rc = mp_next(r, &item)) != MP_OK) {
		return rc;
	}
	if (item.kind != MP_UINT || item.value != 1) {
		return MP_BAD;
	}
	if ((rc = mp_next(r, &item)) != MP_OK) {
		return rc;
	}
	if (item.kind != MP_UINT || item.value > UINT32_MAX) {
		return MP_BAD;
	}
	s->out.msgid = (uint32_t)item.value;
	size_t at = r->at;
	if ((rc = mp_next(r, &item)) != MP_OK) {
		return rc;
	}
	s->out.error = item.kind != MP_NIL;
	r->at = at;
	if (s->out.error && item.kind != MP_MAP) {
		return MP_BAD;
	}
	if ((rc = mp_skip(r)) != MP_OK) {
		return rc;
	}
	if ((rc = mp_next(r, &item)) != MP_OK) {
		return rc;
	}
	if (s->out.error) {
		s->stage = STREAM_DONE;
		return item.kind == MP_NIL ? MP_OK : MP_BAD;
	}
	if (item.kind != MP_MAP) {
		return MP_BAD;
	}
	s->stage = STREAM_PAIRS;
	s->left = item.value;
	return MP_OK;
}

/* One pair of the result map: `results` (its header: the entries follow),
 * `next` for a sink, anything else skipped. */
static int result_pair(struct mp_reader *r, struct response_stream *s)
{
	struct mp_item key;
	struct mp_item value;
	int rc = mp_next(r, &key);
	if (rc != MP_OK) {
		return rc;
	}
	s->left--;
	if (mp_str_is(&key, "results")) {
		if ((rc = mp_next(r, &value)) != MP_OK) {
			return rc;
		}
		if (value.kind != MP_ARRAY) {
			return MP_BAD;
		}
		s->pairs_after = s->left;
		s->left = value.value;
		s->stage = STREAM_RESULTS;
		return MP_OK;
	}
	if (mp_str_is(&key, "next") && s->sink != NULL) {
		if ((rc = mp_next(r, &value)) != MP_OK) {
			return rc;
		}
		s->sink->has_next = value.kind != MP_NIL;
		return (!s->sink->has_next || id_copy(&s->sink->next, &value)) ? MP_OK : MP_BAD;
	}
	return mp_skip(r);
}

/* Reads on from where the stream stands. Returns MP_OK once the response is
 * whole, MP_MORE (r->at at the start of the first item not whole: read on
 * from there once more bytes came), or MP_BAD (the stream cannot be trusted
 * past here). */
static int response_stream_read(struct mp_reader *r, struct response_stream *s)
{
	while (s->stage != STREAM_DONE) {
		size_t start = r->at;
		int rc = MP_OK;
		uint64_t left = s->left;
		if (s->stage == STREAM_HEAD) {
			rc = response_head(r, s);
		} else if (s->stage == STREAM_PAIRS) {
			if (s->left == 0) {
				s->stage = STREAM_DONE;
				break;
			}
			rc = result_pair(r, s);
		} else if (s->left == 0) {
			s->stage = STREAM_PAIRS;
			s->left = s->pairs_after;
			continue;
		} else {
			struct mp_item entry;
			if ((rc = mp_next(r, &entry)) == MP_OK) {
				rc = entry.kind != MP_MAP ? MP_BAD : entry_read(r, entry.value, &s->out, s->sink);
			}
			s->left--;
		}
		if (rc != MP_OK) {
			if (rc == MP_MORE) { /* the item is read again whole (stage and out change only once it is) */
				r->at = start;
				s->left = left;
			}
			return rc;
		}
	}
	return MP_OK;
}

/* Reads one whole response from r (MP_MORE: r is unmoved; read again from
 * the same start once more bytes came). */
static inline int response_read(struct mp_reader *r, struct response *out, struct ids *sink)
{
	size_t start = r->at;
	struct response_stream s = { .sink = sink };
	int rc = response_stream_read(r, &s);
	if (rc == MP_MORE) {
		r->at = start;
	}
	*out = s.out;
	return rc;
}

#endif
