/* A person's slots as runs of identical months, the store's encoding, read
 * in place by the core (no copy, no allocation).
 *
 * Encoding, version 1 (varints are LEB128, zigzag where signed):
 *   varint slot_count, varint run_count, then run_count runs:
 *   u8 flags: type (bits 0-2), flexible (3), deemed (4), city follows (5),
 *             base follows (6), payment follows (7); what does not follow
 *             repeats the previous run's value.
 *   [varint city] zigzag month − previous run's end, varint month_count,
 *   [varint base] [varint paid, and when paid > 0: zigzag months from the
 *   slot's month to its payment month, u8 payment day].
 * In a run every month has the same city, type, category, deemed flag,
 * base and paid, and is paid on the same day (clipped to the month's end)
 * the same number of months after it: a payroll paid on time every month is
 * one run however long. */
#include "core.h"
#include "internal.h"

#define RUN_MONTHS_MAX CORE_MONTH_COUNT

static int32_t zigzag_decode(uint64_t v)
{
	return (int32_t)(v >> 1) ^ -(int32_t)(v & 1);
}

/* Within 32 bits: widening the sign first made every negative value ten
 * bytes long (and overran core_timeline_encode_max). zigzag_decode reads
 * the low 32 bits, so records written that way still decode. */
static uint64_t zigzag_encode(int32_t v)
{
	return ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
}

struct writer {
	uint8_t *p;
	uint8_t *end;
	bool overflow;
};

static void put_u8(struct writer *w, uint8_t b)
{
	if (w->p == w->end) {
		w->overflow = true;
		return;
	}
	*w->p++ = b;
}

static void put_varint(struct writer *w, uint64_t v)
{
	while (v >= 0x80) {
		put_u8(w, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	put_u8(w, (uint8_t)v);
}

/* Payment month offset and day of a paid slot. */
static void payment_pattern(const struct core_slot *s, int32_t *month_offset, uint32_t *day)
{
	int32_t pay_month = s->paid_date / 10000 * 12 + s->paid_date / 100 % 100 - 1;
	*month_offset = pay_month - s->month;
	*day = (uint32_t)(s->paid_date % 100);
}

/* The payment date of month `month` under a run's pattern. Days 1..28
 * exist in every month: only later days need the month's length. */
static int32_t pattern_date(int32_t month, int32_t month_offset, uint32_t day)
{
	int32_t pay_month = month + month_offset;
	if (day > 28) {
		uint32_t last = core_month_last_day(pay_month);
		day = day < last ? day : last;
	}
	ASSERT(pay_month >= 0);
	return pay_month / 12 * 10000 + (pay_month % 12 + 1) * 100 + (int32_t)day;
}

/* Whether slot s continues the run that starts at first and holds count months. */
static bool run_extends(const struct core_slot *first, uint32_t count, const struct core_slot *s)
{
	if (s->month != first->month + (int32_t)count || s->city != first->city || s->type != first->type ||
	    s->category != first->category || s->deemed != first->deemed || s->base_fen != first->base_fen ||
	    s->paid_fen != first->paid_fen || count == RUN_MONTHS_MAX) {
		return false;
	}
	if (first->paid_fen == 0) {
		return s->paid_date == 0;
	}
	int32_t offset;
	uint32_t day;
	payment_pattern(first, &offset, &day);
	return s->paid_date == pattern_date(s->month, offset, day);
}

/* Same amount paid on the same pattern (unpaid slots have no date). */
static bool same_payment(const struct core_slot *a, const struct core_slot *b)
{
	if (a->paid_fen != b->paid_fen) {
		return false;
	}
	if (a->paid_fen == 0) {
		return true;
	}
	int32_t a_offset;
	int32_t b_offset;
	uint32_t a_day;
	uint32_t b_day;
	payment_pattern(a, &a_offset, &a_day);
	payment_pattern(b, &b_offset, &b_day);
	return a_offset == b_offset && a_day == b_day;
}

size_t core_timeline_encode_max(uint32_t slot_count)
{
	/* flags 1, city 3, month 3, count 2, base 5, paid 8, offset 2, day 1 */
	return 20 + (size_t)slot_count * 25;
}

size_t core_timeline_encode(const struct core_slot *slots, uint32_t slot_count, uint8_t *out, size_t capacity)
{
	struct writer w = { out, out + capacity, false };
	/* Count runs first: the count leads the encoding. */
	uint32_t run_count = 0;
	for (uint32_t i = 0; i < slot_count;) {
		uint32_t n = 1;
		while (i + n < slot_count && run_extends(&slots[i], n, &slots[i + n])) {
			n++;
		}
		run_count++;
		i += n;
	}
	put_varint(&w, slot_count);
	put_varint(&w, run_count);
	const struct core_slot *prev = NULL;
	int32_t prev_end = CORE_MONTH_FIRST;
	for (uint32_t i = 0; i < slot_count;) {
		const struct core_slot *s = &slots[i];
		uint32_t n = 1;
		while (i + n < slot_count && run_extends(s, n, &slots[i + n])) {
			n++;
		}
		bool city = prev == NULL || prev->city != s->city;
		bool base = prev == NULL || prev->base_fen != s->base_fen;
		bool paid = prev == NULL || !same_payment(prev, s);
		put_u8(&w, (uint8_t)(s->type | (s->category == CORE_FLEXIBLE) << 3 | s->deemed << 4 | city << 5 |
				     base << 6 | paid << 7));
		if (city) {
			put_varint(&w, s->city);
		}
		put_varint(&w, zigzag_encode(s->month - prev_end));
		put_varint(&w, n);
		if (base) {
			put_varint(&w, (uint64_t)s->base_fen);
		}
		if (paid) {
			put_varint(&w, (uint64_t)s->paid_fen);
			if (s->paid_fen > 0) {
				int32_t offset;
				uint32_t day;
				payment_pattern(s, &offset, &day);
				put_varint(&w, zigzag_encode(offset));
				put_u8(&w, (uint8_t)day);
			}
		}
		prev = s;
		prev_end = s->month + (int32_t)n;
		i += n;
	}
	return w.overflow ? 0 : (size_t)(w.p - out);
}

/* ---- reading ---- */

/* The reading functions are inlined into the two loops that use them: a
 * run is a handful of one-byte fields, and calls would cost more than the
 * bytes. */
#define HOT static inline __attribute__((always_inline))

HOT bool get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
	const uint8_t *p = *pp;
	if (p != end && *p < 0x80) { /* most fields fit one byte */
		*v = *p;
		*pp = p + 1;
		return true;
	}
	uint64_t x = 0;
	for (uint32_t shift = 0; shift < 64; shift += 7) {
		if (p == end) {
			return false;
		}
		uint8_t b = *p++;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (b < 0x80) {
			*v = x;
			*pp = p;
			return true;
		}
	}
	return false;
}

/* Reads the run at *pp into r, whose fields absent from the bytes keep the
 * previous run's values. prev_end: the dense month after the previous run;
 * slots_left: slots the header's count leaves (callers size buffers by it).
 * False on bytes that break a rule of the encoding. */
HOT bool decode_run(const uint8_t **pp, const uint8_t *end, int32_t prev_end, bool first_run, uint32_t slots_left,
		    struct core_run *r)
{
	const uint8_t *p = *pp;
	if (p == end) {
		return false;
	}
	uint8_t flags = *p++;
	if ((flags & 7) >= CORE_TYPE_COUNT || (first_run && (flags & 0xe0) != 0xe0)) {
		return false;
	}
	struct core_slot *s = &r->first;
	s->type = flags & 7;
	s->category = flags >> 3 & 1 ? CORE_FLEXIBLE : CORE_EMPLOYEE;
	s->deemed = flags >> 4 & 1;
	uint64_t v = 0;
	if (flags >> 5 & 1) {
		if (!get_varint(&p, end, &v) || v > 999999) {
			return false;
		}
		s->city = (uint32_t)v;
	}
	uint64_t count = 0;
	if (!get_varint(&p, end, &v) || !get_varint(&p, end, &count)) {
		return false;
	}
	int64_t month = (int64_t)prev_end + zigzag_decode(v);
	if (count < 1 || count > slots_left || month < CORE_MONTH_FIRST ||
	    month + (int64_t)count > CORE_MONTH_FIRST + (int64_t)CORE_MONTH_COUNT) {
		return false;
	}
	if (flags >> 6 & 1) {
		if (!get_varint(&p, end, &v) || v > CORE_MONEY_MAX) {
			return false;
		}
		s->base_fen = (int64_t)v;
	}
	if (flags >> 7 & 1) {
		if (!get_varint(&p, end, &v) || v > (uint64_t)CORE_AMOUNT_MAX) {
			return false;
		}
		s->paid_fen = (int64_t)v;
		if (v > 0) {
			if (!get_varint(&p, end, &v) || p == end) {
				return false;
			}
			r->pay_offset = zigzag_decode(v);
			r->pay_day = *p++;
			if (r->pay_day < 1 || r->pay_day > 31 || r->pay_offset <= -2400 || r->pay_offset >= 2400) {
				return false;
			}
		}
	}
	if (s->deemed && (s->base_fen != 0 || s->paid_fen != 0)) {
		return false;
	}
	s->month = (int32_t)month;
	s->paid_date = 0;
	if (s->paid_fen > 0) {
		/* Payment months ascend with the run's months and days are clipped to
		 * their month: pay months inside 1900..2100 make every date valid. */
		int32_t pay_month = s->month + r->pay_offset;
		if (pay_month < 1900 * 12 || pay_month + (int32_t)count - 1 > 2100 * 12 + 11) {
			return false;
		}
		s->paid_date = pattern_date(s->month, r->pay_offset, r->pay_day);
	}
	r->count = (uint32_t)count;
	*pp = p;
	return true;
}

void core_timeline_iter_init(struct core_timeline_iter *it, const struct core_timeline *tl)
{
	memset(it, 0, sizeof(*it));
	it->tl = tl;
	if (tl->runs == NULL || tl->run_list != NULL) {
		return;
	}
	it->p = tl->runs;
	it->end = tl->runs + tl->runs_size;
	uint64_t slot_count = 0;
	uint64_t run_count = 0;
	/* A run holds a month at least: more runs than slots is corrupt (and
	 * would not fit runs_left). */
	if (!get_varint(&it->p, it->end, &slot_count) || !get_varint(&it->p, it->end, &run_count) ||
	    slot_count != tl->slot_count || run_count > slot_count) {
		it->corrupt = true;
	}
	it->runs_left = (uint32_t)run_count;
	it->run_end = CORE_MONTH_FIRST;
}

/* Reads the next run into it->cur; false at the end or on bad bytes. */
static bool read_run(struct core_timeline_iter *it)
{
	if (it->runs_left == 0 || it->p == it->end) {
		it->corrupt |= it->runs_left != 0 || it->p != it->end || it->index != it->tl->slot_count;
		return false;
	}
	if (!decode_run(&it->p, it->end, it->run_end, it->index == 0, it->tl->slot_count - it->index, &it->cur)) {
		it->corrupt = true;
		return false;
	}
	it->run_end = it->cur.first.month + (int32_t)it->cur.count;
	it->runs_left--;
	return true;
}

const struct core_slot *core_timeline_next_encoded(struct core_timeline_iter *it)
{
	ASSERT(it->tl->run_list == NULL); /* decoded runs are read run by run */
	if (it->corrupt) {
		return NULL;
	}
	if (it->run_left == 0) {
		if (!read_run(it)) {
			return NULL;
		}
		it->run_left = it->cur.count;
		it->slot = it->cur.first;
	} else {
		it->slot.month++;
		if (it->slot.paid_fen > 0) {
			it->slot.paid_date = pattern_date(it->slot.month, it->cur.pay_offset, it->cur.pay_day);
		}
	}
	it->run_left--;
	it->index++;
	return &it->slot;
}

int32_t core_run_paid_date(const struct core_run *r, uint32_t k)
{
	if (r->first.paid_fen == 0 || k == 0) {
		return r->first.paid_date;
	}
	return pattern_date(r->first.month + (int32_t)k, r->pay_offset, r->pay_day);
}

const struct core_run *core_timeline_next_run(struct core_timeline_iter *it)
{
	if (it->tl->run_list != NULL) {
		return it->index < it->tl->run_count ? &it->tl->run_list[it->index++] : NULL;
	}
	if (it->tl->runs == NULL) {
		if (it->index == it->tl->slot_count) {
			return NULL;
		}
		it->cur = (struct core_run){ .first = it->tl->slots[it->index++], .count = 1 };
		return &it->cur;
	}
	if (it->corrupt || !read_run(it)) {
		return NULL;
	}
	it->index += it->cur.count;
	return &it->cur;
}

int64_t core_timeline_decode(const struct core_timeline *tl, struct core_run *out, uint32_t capacity)
{
	if (tl->runs == NULL || tl->run_list != NULL) { /* other forms: through the iterator */
		struct core_timeline_iter it;
		const struct core_run *r;
		uint32_t n = 0;
		core_timeline_iter_init(&it, tl);
		while ((r = core_timeline_next_run(&it)) != NULL) {
			if (n == capacity) {
				return -1;
			}
			out[n++] = *r;
		}
		return it.corrupt ? -1 : (int64_t)n;
	}
	const uint8_t *p = tl->runs;
	const uint8_t *end = tl->runs + tl->runs_size;
	uint64_t slot_count = 0;
	uint64_t run_count = 0;
	if (!get_varint(&p, end, &slot_count) || !get_varint(&p, end, &run_count) || slot_count != tl->slot_count ||
	    run_count > capacity) {
		return -1;
	}
	struct core_run cur = { .first = { .month = CORE_MONTH_FIRST } };
	int32_t run_end = CORE_MONTH_FIRST;
	uint32_t slots = 0;
	for (uint32_t i = 0; i < run_count; i++) {
		if (!decode_run(&p, end, run_end, i == 0, tl->slot_count - slots, &cur)) {
			return -1;
		}
		out[i] = cur;
		run_end = cur.first.month + (int32_t)cur.count;
		slots += cur.count;
	}
	return p == end && slots == tl->slot_count ? (int64_t)run_count : -1;
}

static int store_order(const void *a, const void *b)
{
	const struct core_slot *x = a;
	const struct core_slot *y = b;
	if (x->type != y->type) {
		return (int)x->type - (int)y->type;
	}
	if (x->city != y->city) {
		return x->city < y->city ? -1 : 1;
	}
	return x->month < y->month ? -1 : x->month > y->month;
}

void core_slots_sort(struct core_slot *slots, uint32_t slot_count)
{
	if (slot_count > 1) { /* qsort's pointer must not be NULL, even for no elements */
		qsort(slots, slot_count, sizeof(*slots), store_order);
	}
}
