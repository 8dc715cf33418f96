/* Responses: [1, msgid, error, result] into one reusable buffer. A failed
 * append (out of memory) marks the writer; proto_writer_data then says so,
 * so packing calls need no check each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fault/fault.h"
#include "internal.h"

struct proto_writer {
	msgpack_packer pk;
	uint8_t *data;
	size_t size;
	size_t capacity;
	size_t body_offset; /* where the response after its msgid starts */
	uint32_t person_errors; /* entries written by proto_write_person_error or an item's error */
	bool failed;
};

#define TAKE_SLACK_BYTES 4096u /* room a taken answer may keep, besides an eighth of its size */

/* Room for len more bytes, or false (and failed) when it cannot be had. */
static bool grow(struct proto_writer *w, size_t len)
{
	if (w->failed) {
		return false;
	}
	if (w->capacity - w->size < len) {
		size_t capacity = w->capacity < 4096 ? 4096 : w->capacity;
		while (capacity - w->size < len) {
			capacity *= 2;
		}
		uint8_t *data = fault_hit(FAULT_ALLOC) ? NULL : realloc(w->data, capacity);
		if (data == NULL) {
			w->failed = true;
			return false;
		}
		w->data = data;
		w->capacity = capacity;
	}
	return true;
}

static int writer_append(void *ctx, const char *buf, size_t len)
{
	struct proto_writer *w = ctx;
	if (!grow(w, len)) {
		return -1;
	}
	memcpy(w->data + w->size, buf, len);
	w->size += len;
	return 0;
}

struct proto_writer *proto_writer_new(void)
{
	struct proto_writer *w = calloc(1, sizeof(*w));
	if (w != NULL) {
		msgpack_packer_init(&w->pk, w, writer_append);
	}
	return w;
}

void proto_writer_free(struct proto_writer *w)
{
	if (w != NULL) {
		free(w->data);
		free(w);
	}
}

void proto_writer_reset(struct proto_writer *w)
{
	w->size = 0;
	w->person_errors = 0;
	w->failed = false;
}

const uint8_t *proto_writer_data(const struct proto_writer *w, size_t *size)
{
	*size = w->size;
	return w->failed ? NULL : w->data;
}

/* Keys are literals: inlined, their lengths are known when compiled. */
#define KEY_FN static inline __attribute__((always_inline)) void

/* Strings, integers and headers, the bulk of every result, are written
 * straight into the buffer as the very bytes msgpack-c writes (smallest
 * forms), instead of through its packer's callback a token at a time. */
static inline __attribute__((always_inline)) bool room(struct proto_writer *w, size_t n)
{
	return (!w->failed && w->capacity - w->size >= n) || grow(w, n);
}

KEY_FN str(struct proto_writer *w, const char *s)
{
	size_t n = strlen(s);
	if (n >= 32) {
		msgpack_pack_str(&w->pk, n);
		msgpack_pack_str_body(&w->pk, s, n);
	} else if (room(w, n + 1)) {
		w->data[w->size] = (uint8_t)(0xa0 | n);
		memcpy(w->data + w->size + 1, s, n);
		w->size += n + 1;
	}
}

KEY_FN int64(struct proto_writer *w, int64_t v)
{
	if (v < -32) {
		msgpack_pack_int64(&w->pk, v);
		return;
	}
	if (!room(w, 9)) {
		return;
	}
	uint8_t *p = w->data + w->size;
	uint64_t u = (uint64_t)v;
	if (v < 128) {
		p[0] = (uint8_t)v; /* a positive or negative fixint */
		w->size += 1;
	} else if (u < 1u << 8) {
		p[0] = 0xcc;
		p[1] = (uint8_t)u;
		w->size += 2;
	} else if (u < 1u << 16) {
		p[0] = 0xcd;
		p[1] = (uint8_t)(u >> 8);
		p[2] = (uint8_t)u;
		w->size += 3;
	} else if (u < 1ull << 32) {
		p[0] = 0xce;
		for (int i = 0; i < 4; i++) {
			p[1 + i] = (uint8_t)(u >> (24 - 8 * i));
		}
		w->size += 5;
	} else {
		p[0] = 0xcf;
		for (int i = 0; i < 8; i++) {
			p[1 + i] = (uint8_t)(u >> (56 - 8 * i));
		}
		w->size += 9;
	}
}

/* A map or array header of n entries, as msgpack-c writes it. */
static inline __attribute__((always_inline)) void container(struct proto_writer *w, uint8_t fix, uint8_t tag16,
							       uint32_t n)
{
	if (!room(w, 5)) {
		return;
	}
	uint8_t *p = w->data + w->size;
	if (n < 16) {
		p[0] = (uint8_t)(fix | n);
		w->size += 1;
	} else if (n < 1u << 16) {
		p[0] = tag16;
		p[1] = (uint8_t)(n >> 8);
		p[2] = (uint8_t)n;
		w->size += 3;
	} else {
		p[0] = (uint8_t)(tag16 + 1);
		for (int i = 0; i < 4; i++) {
			p[1 + i] = (uint8_t)(n >> (24 - 8 * i));
		}
		w->size += 5;
	}
}

KEY_FN map(struct proto_writer *w, uint32_t n)
{
	container(w, 0x80, 0xde, n);
}

KEY_FN array(struct proto_writer *w, uint32_t n)
{
	container(w, 0x90, 0xdc, n);
}

/* nil (0xc0), false (0xc2), true (0xc3): one byte. */
KEY_FN byte(struct proto_writer *w, uint8_t b)
{
	if (room(w, 1)) {
		w->data[w->size++] = b;
	}
}

KEY_FN nil(struct proto_writer *w)
{
	byte(w, 0xc0);
}

KEY_FN boolean(struct proto_writer *w, bool v)
{
	byte(w, v ? 0xc3 : 0xc2);
}

static void str_n(struct proto_writer *w, const char *s, size_t n)
{
	msgpack_pack_str(&w->pk, n);
	msgpack_pack_str_body(&w->pk, s, n);
}

KEY_FN key_int(struct proto_writer *w, const char *key, int64_t v)
{
	str(w, key);
	int64(w, v);
}

KEY_FN key_bool(struct proto_writer *w, const char *key, bool v)
{
	str(w, key);
	boolean(w, v);
}

KEY_FN key_month(struct proto_writer *w, const char *key, int32_t month)
{
	key_int(w, key, core_month_yyyymm(month));
}

/* A dense month, or nil when negative. */
KEY_FN key_month_or_nil(struct proto_writer *w, const char *key, int32_t month)
{
	str(w, key);
	if (month < 0) {
		nil(w);
	} else {
		int64(w, core_month_yyyymm(month));
	}
}

/* A city code as text, "%06u" without printf (a housing answer has one a person). */
static void city_str(struct proto_writer *w, uint32_t city)
{
	char digits[10];
	size_t n = 0;
	do {
		digits[n++] = (char)('0' + city % 10);
		city /= 10;
	} while (city > 0);
	while (n < 6) {
		digits[n++] = '0';
	}
	char text[11];
	for (size_t i = 0; i < n; i++) {
		text[i] = digits[n - 1 - i];
	}
	text[n] = 0;
	str(w, text);
}

static void key_city(struct proto_writer *w, const char *key, uint32_t city)
{
	str(w, key);
	city_str(w, city);
}

static void names(struct proto_writer *w, const char *const *all, uint32_t count, uint8_t mask)
{
	array(w, (size_t)__builtin_popcount(mask));
	for (uint32_t i = 0; i < count; i++) {
		if (mask >> i & 1) {
			str(w, all[i]);
		}
	}
}

static void header(struct proto_writer *w, uint32_t msgid)
{
	array(w, 4);
	msgpack_pack_uint32(&w->pk, 1);
	msgpack_pack_uint32(&w->pk, msgid);
	w->body_offset = w->size;
}

bool proto_writer_is_error(const struct proto_writer *w)
{
	/* [1, msgid, error, result]: the byte after the msgid is nil unless an error follows. */
	return w->size > w->body_offset && w->data[w->body_offset] != 0xc0;
}

int proto_writer_error_code(const struct proto_writer *w)
{
	/* error_map writes {"code": n, ...} first, n 1..9 a positive fixint
	 * (also in a replayed body, written by this writer before). */
	static const uint8_t code_key[5] = { 0xa4, 'c', 'o', 'd', 'e' };
	const uint8_t *e = w->data + w->body_offset;
	if (!proto_writer_is_error(w)) {
		return PROTO_OK;
	}
	if (w->size - w->body_offset >= 7 && (e[0] & 0xf0) == 0x80 && memcmp(e + 1, code_key, 5) == 0 &&
	    e[6] >= PROTO_MALFORMED && e[6] <= PROTO_INTERNAL) {
		return e[6];
	}
	return PROTO_INTERNAL;
}

uint32_t proto_writer_person_errors(const struct proto_writer *w)
{
	return w->person_errors;
}

void proto_writer_reserve(struct proto_writer *w, size_t bytes)
{
	if (!w->failed && w->capacity - w->size < bytes) {
		uint8_t *data = realloc(w->data, w->size + bytes);
		if (data != NULL) { /* else the writer grows as it goes, or fails then */
			w->data = data;
			w->capacity = w->size + bytes;
		}
	}
}

uint8_t *proto_writer_take(struct proto_writer *w, size_t *size)
{
	uint8_t *data = w->failed ? NULL : w->data;
	*size = w->size;
	if (w->failed) {
		free(w->data);
	} else if (w->capacity - w->size > w->size / 8 + TAKE_SLACK_BYTES) {
		/* An answer held until the client takes it holds its bytes (an
		 * eighth more at most), not the room it was made in: the tail goes
		 * back to the allocator. */
		uint8_t *trimmed = realloc(data, w->size > 0 ? w->size : 1);
		data = trimmed != NULL ? trimmed : data;
	}
	w->data = NULL;
	w->size = 0;
	w->capacity = 0;
	w->failed = false;
	return data;
}

const uint8_t *proto_writer_body(const struct proto_writer *w, size_t *size)
{
	*size = w->size - w->body_offset;
	return w->failed ? NULL : w->data + w->body_offset;
}

void proto_write_replay(struct proto_writer *w, uint32_t msgid, const uint8_t *body, size_t size)
{
	header(w, msgid);
	writer_append(w, (const char *)body, size);
}

static void error_map(struct proto_writer *w, const struct proto_error *err)
{
	map(w, err->at[0] != '\0' ? 4 : 3);
	key_int(w, "code", err->code);
	str(w, "name");
	str(w, proto_error_name(err->code));
	str(w, "message");
	str(w, err->message);
	if (err->at[0] != '\0') {
		str(w, "at");
		str(w, err->at);
	}
}

void proto_write_error(struct proto_writer *w, uint32_t msgid, const struct proto_error *err)
{
	header(w, msgid);
	error_map(w, err);
	nil(w);
}

static void result_header(struct proto_writer *w, uint32_t msgid, uint32_t keys)
{
	header(w, msgid);
	nil(w);
	map(w, keys);
}

void proto_write_pong(struct proto_writer *w, uint32_t msgid)
{
	result_header(w, msgid, 2);
	key_bool(w, "pong", true);
	str(w, "version");
	str(w, PROTO_VERSION);
}

void proto_write_ok(struct proto_writer *w, uint32_t msgid)
{
	result_header(w, msgid, 1);
	key_bool(w, "ok", true);
}

static void policy_periods(struct proto_writer *w, const struct core_policy *p)
{
	static const char *const shares[CORE_SHARE_COUNT] = { "employer", "individual", "flexible" };
	str(w, "periods");
	array(w, p->period_count);
	for (uint32_t k = 0; k < p->period_count; k++) {
		const struct core_period *period = &p->periods[k];
		map(w, 4);
		key_month(w, "from", period->from);
		key_int(w, "base_min", period->base_min_fen);
		key_int(w, "base_max", period->base_max_fen);
		str(w, "rates");
		map(w, CORE_TYPE_COUNT);
		for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
			str(w, core_type_names[t]);
			map(w, CORE_SHARE_COUNT);
			for (uint32_t s = 0; s < CORE_SHARE_COUNT; s++) {
				key_int(w, shares[s], period->rate_ppm[t][s]);
			}
		}
	}
}

void proto_write_policy(struct proto_writer *w, uint32_t msgid, const struct core_policy *p)
{
	result_header(w, msgid, 1);
	str(w, "policy");
	proto_write_policy_doc(w, p);
}

void proto_write_policy_doc(struct proto_writer *w, const struct core_policy *p)
{
	map(w, 10);
	key_city(w, "city", p->city);
	str(w, "name");
	str_n(w, p->name, p->name_size);
	str(w, "source");
	str_n(w, p->source, p->source_size);
	str(w, "deadline");
	map(w, 2);
	key_int(w, "day", p->deadline_day);
	key_int(w, "month_offset", p->deadline_month_offset);
	policy_periods(w, p);
	str(w, "interest");
	map(w, 4);
	str(w, "types");
	names(w, core_type_names, CORE_TYPE_COUNT, p->interest_types);
	str(w, "categories");
	names(w, core_category_names, CORE_CATEGORY_COUNT, p->interest_categories);
	key_int(w, "default_ppm", p->interest_default_ppm);
	str(w, "rates");
	array(w, p->interest_rate_count);
	for (uint32_t k = 0; k < p->interest_rate_count; k++) {
		array(w, 2);
		int64(w, p->interest_rates[k].year);
		int64(w, p->interest_rates[k].rate_ppm);
	}
	str(w, "late_fee");
	map(w, 3);
	key_int(w, "daily_ppm", p->late_fee_daily_ppm);
	str(w, "categories");
	names(w, core_category_names, CORE_CATEGORY_COUNT, p->late_fee_categories);
	key_bool(w, "cap_at_principal", p->late_fee_cap_at_principal);
	str(w, "backpay");
	map(w, 4);
	key_int(w, "direct_max_months", p->backpay_direct_max_months);
	key_int(w, "verify_max_months", p->backpay_verify_max_months);
	key_month(w, "legacy_before", p->backpay_legacy_before);
	key_int(w, "flexible_window_months", p->backpay_flexible_window_months);
	str(w, "housing");
	map(w, 6);
	str(w, "types");
	names(w, core_type_names, CORE_TYPE_COUNT, p->housing_types);
	key_int(w, "window_months", p->housing_window_months);
	key_int(w, "required_months", p->housing_required_months);
	key_int(w, "end_offset_months", p->housing_end_offset_months);
	key_bool(w, "backpay_counts", p->housing_backpay_counts);
	key_int(w, "grace_days", p->housing_grace_days);
	str(w, "withhold");
	map(w, 2);
	str(w, "order");
	array(w, p->withhold_order_count);
	for (uint32_t i = 0; i < p->withhold_order_count; i++) {
		str(w, core_type_names[p->withhold_order[i]]);
	}
	str(w, "mode");
	str(w, p->withhold_mode == CORE_WITHHOLD_STOP ? "stop" : "skip");
}

void proto_write_results_begin(struct proto_writer *w, uint32_t msgid, uint32_t count, bool with_next)
{
	result_header(w, msgid, with_next ? 2 : 1);
	str(w, "results");
	array(w, count);
}

void proto_write_results_next(struct proto_writer *w, const char *next_id, size_t next_id_size)
{
	str(w, "next");
	next_id == NULL ? nil(w) : str_n(w, next_id, next_id_size);
}

void proto_write_person_error(struct proto_writer *w, const char *id, size_t id_size, const struct proto_error *err)
{
	w->person_errors++;
	map(w, 2);
	str(w, "id");
	/* An id that is not UTF-8 is not echoed: a strict client would fail on the whole answer. */
	id == NULL || !proto_utf8_valid(id, id_size) ? nil(w) : str_n(w, id, id_size);
	str(w, "error");
	error_map(w, err);
}

static void arrears_item(struct proto_writer *w, const struct core_arrears_item *it)
{
	map(w, 14);
	key_month(w, "month", it->month);
	key_city(w, "city", it->city);
	str(w, "type");
	str(w, core_type_names[it->type]);
	str(w, "category");
	str(w, core_category_names[it->category]);
	key_int(w, "due", it->due_fen);
	key_int(w, "paid", it->paid_fen);
	key_int(w, "owed", it->owed_fen);
	key_int(w, "owed_employer", it->owed_employer_fen);
	key_int(w, "owed_individual", it->owed_individual_fen);
	key_int(w, "interest", it->interest_fen);
	key_int(w, "late_fee", it->late_fee_fen);
	key_int(w, "deadline", it->deadline_date);
	str(w, "tier");
	str(w, core_tier_names[it->tier]);
	key_bool(w, "expired", it->expired);
}

void proto_write_arrears(struct proto_writer *w, const char *id, const struct core_arrears *a, bool detail,
			 const struct core_arrears_item *items, uint32_t item_count)
{
	map(w, detail ? 14 : 13);
	str(w, "id");
	str(w, id);
	key_int(w, "months_owed", a->months_owed);
	key_int(w, "principal", a->principal_fen);
	key_int(w, "interest", a->interest_fen);
	key_int(w, "late_fee", a->late_fee_fen);
	key_int(w, "total", a->total_fen);
	key_int(w, "pending", a->pending_fen);
	key_int(w, "expired_months", a->expired_months);
	key_int(w, "expired_principal", a->expired_principal_fen);
	key_month_or_nil(w, "first_month", a->first_month);
	key_month_or_nil(w, "last_month", a->last_month);
	uint32_t types = 0;
	for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
		types += a->by_type[t].months > 0;
	}
	str(w, "by_type");
	map(w, types);
	for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
		const struct core_arrears_sums *s = &a->by_type[t];
		if (s->months == 0) {
			continue;
		}
		str(w, core_type_names[t]);
		map(w, 4);
		key_int(w, "months", s->months);
		key_int(w, "principal", s->principal_fen);
		key_int(w, "interest", s->interest_fen);
		key_int(w, "late_fee", s->late_fee_fen);
	}
	str(w, "tiers");
	map(w, CORE_TIER_COUNT);
	for (uint32_t t = 0; t < CORE_TIER_COUNT; t++) {
		key_int(w, core_tier_names[t], a->tiers[t]);
	}
	if (detail) {
		str(w, "items");
		array(w, item_count);
		for (uint32_t i = 0; i < item_count; i++) {
			arrears_item(w, &items[i]);
		}
	}
}

void proto_write_years(struct proto_writer *w, const char *id, const struct core_years *y,
		       const struct core_duplicate *dups, uint32_t dup_count)
{
	map(w, 3);
	str(w, "id");
	str(w, id);
	str(w, "by_type");
	map(w, CORE_TYPE_COUNT);
	for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
		const struct core_years_type *b = &y->by_type[t];
		str(w, core_type_names[t]);
		map(w, 6);
		key_int(w, "months", b->months);
		key_int(w, "on_time", b->on_time);
		key_int(w, "backpaid", b->backpaid);
		key_int(w, "deemed", b->deemed);
		key_int(w, "years", b->months / 12);
		key_int(w, "rem_months", b->months % 12);
	}
	uint32_t groups = 0;
	for (uint32_t i = 0; i < dup_count; i++) {
		groups += i == 0 || dups[i].month != dups[i - 1].month || dups[i].type != dups[i - 1].type;
	}
	str(w, "duplicates");
	array(w, groups);
	for (uint32_t i = 0; i < dup_count;) {
		uint32_t end = i + 1;
		while (end < dup_count && dups[end].month == dups[i].month && dups[end].type == dups[i].type) {
			end++;
		}
		map(w, 3);
		key_month(w, "month", dups[i].month);
		str(w, "type");
		str(w, core_type_names[dups[i].type]);
		str(w, "cities");
		array(w, end - i);
		for (; i < end; i++) {
			city_str(w, dups[i].city);
		}
	}
}

void proto_write_retirement(struct proto_writer *w, const char *id, const struct core_retirement *r)
{
	map(w, 12);
	str(w, "id");
	str(w, id);
	str(w, "class");
	str(w, core_class_names[r->class_]);
	key_month(w, "birth_month", r->birth_month);
	key_month(w, "original_month", r->original_month);
	key_month(w, "statutory_month", r->statutory_month);
	key_month(w, "retire_month", r->retire_month);
	key_int(w, "required_months", r->required_months);
	key_int(w, "counted_months", r->counted_months);
	key_int(w, "shortfall", r->shortfall);
	key_int(w, "payable_arrears_months", r->payable_arrears_months);
	key_bool(w, "eligible_now", r->eligible_now);
	key_month(w, "eligible_from", r->eligible_from);
}

void proto_write_housing(struct proto_writer *w, const char *id, uint32_t city, const struct core_housing *h)
{
	map(w, 9);
	str(w, "id");
	str(w, id);
	key_city(w, "city", city);
	key_month(w, "window_from", h->window_from);
	key_month(w, "window_to", h->window_to);
	key_int(w, "qualifying", h->qualifying);
	key_int(w, "required", h->required);
	key_bool(w, "eligible", h->eligible);
	str(w, "missing");
	array(w, h->missing_count);
	for (uint32_t i = 0; i < h->missing_count; i++) {
		int64(w, core_month_yyyymm(h->missing[i]));
	}
	key_month(w, "eligible_from", h->eligible_from);
}

void proto_write_medical(struct proto_writer *w, const char *id, const struct core_medical *m)
{
	static const char *const status[] = { "active", "suspended", "none" };
	map(w, 5);
	str(w, "id");
	str(w, id);
	str(w, "status");
	str(w, status[m->status]);
	key_month_or_nil(w, "suspended_since", m->suspended_since);
	str(w, "resumes");
	m->resumes_date == 0 ? nil(w) : int64(w, m->resumes_date);
	key_int(w, "arrears_months", m->arrears_months);
}

static void slot_map(struct proto_writer *w, const struct core_slot *s)
{
	map(w, 8);
	key_month(w, "month", s->month);
	key_city(w, "city", s->city);
	str(w, "type");
	str(w, core_type_names[s->type]);
	str(w, "category");
	str(w, core_category_names[s->category]);
	key_int(w, "base", s->base_fen);
	key_int(w, "paid", s->paid_fen);
	key_int(w, "paid_date", s->paid_date);
	key_bool(w, "deemed", s->deemed);
}

bool proto_write_person(struct proto_writer *w, uint32_t msgid, const char *id, int retire_class,
			const struct core_timeline *tl)
{
	result_header(w, msgid, 1);
	str(w, "person");
	map(w, retire_class >= 0 ? 3 : 2);
	str(w, "id");
	str(w, id);
	if (retire_class >= 0) {
		str(w, "retire_class");
		str(w, core_class_names[retire_class]);
	}
	str(w, "slots");
	array(w, tl->slot_count);
	struct core_timeline_iter it;
	const struct core_slot *s;
	core_timeline_iter_init(&it, tl);
	while ((s = core_timeline_next(&it)) != NULL) {
		slot_map(w, s);
	}
	return !it.corrupt;
}

void proto_write_put_ok(struct proto_writer *w, const char *id)
{
	map(w, 2);
	str(w, "id");
	str(w, id);
	key_bool(w, "ok", true);
}

void proto_write_item_result(struct proto_writer *w, const struct proto_error *err)
{
	map(w, 1);
	if (err == NULL) {
		key_bool(w, "ok", true);
		return;
	}
	w->person_errors++;
	str(w, "error");
	error_map(w, err);
}

void proto_write_withhold(struct proto_writer *w, const char *id, const struct core_withhold_line *lines,
			  uint32_t line_count, int64_t balance_fen)
{
	uint32_t paid = 0;
	for (uint32_t i = 0; i < line_count; i++) {
		paid += lines[i].paid;
	}
	map(w, 4);
	str(w, "id");
	str(w, id);
	for (int pass = 1; pass >= 0; pass--) {
		str(w, pass ? "paid" : "interrupted");
		array(w, pass ? paid : line_count - paid);
		for (uint32_t i = 0; i < line_count; i++) {
			if (lines[i].paid != (bool)pass) {
				continue;
			}
			map(w, 3);
			str(w, "type");
			str(w, core_type_names[lines[i].type]);
			key_city(w, "city", lines[i].city);
			key_int(w, pass ? "amount" : "owed", lines[i].amount_fen);
		}
	}
	key_int(w, "balance", balance_fen);
}

void proto_write_audit(struct proto_writer *w, int64_t time_ms, const char *method, size_t method_size,
		       const struct proto_string *idem, const char (*ids)[CORE_ID_SIZE + 1], uint32_t id_count)
{
	map(w, 4);
	key_int(w, "time_ms", time_ms);
	str(w, "method");
	str_n(w, method, method_size);
	str(w, "idem");
	idem->ptr == NULL ? nil(w) : str_n(w, idem->ptr, idem->size);
	str(w, "persons");
	array(w, id_count);
	for (uint32_t i = 0; i < id_count; i++) {
		str(w, ids[i]);
	}
}

void proto_write_stats(struct proto_writer *w, uint32_t msgid, const struct proto_stats *st)
{
	result_header(w, msgid, 10);
	str(w, "version");
	str(w, PROTO_VERSION);
	key_int(w, "uptime_s", (int64_t)st->uptime_s);
	str(w, "errors_by_code");
	map(w, PROTO_INTERNAL);
	for (int code = PROTO_MALFORMED; code <= PROTO_INTERNAL; code++) {
		key_int(w, proto_error_name(code), (int64_t)st->errors_by_code[code]);
	}
	key_int(w, "person_errors", (int64_t)st->person_errors);
	key_int(w, "persons_summarized", (int64_t)st->persons_summarized);
	str(w, "connections");
	map(w, 3);
	key_int(w, "open", (int64_t)st->connections_open);
	key_int(w, "total", (int64_t)st->connections_total);
	key_int(w, "refused", (int64_t)st->connections_refused);
	const char *tables[3] = { "requests", "errors", "latency_us" };
	for (uint32_t t = 0; t < 3; t++) {
		str(w, tables[t]);
		map(w, st->method_count);
		for (uint32_t i = 0; i < st->method_count; i++) {
			const struct proto_stats_method *m = &st->methods[i];
			str(w, m->name);
			if (t == 0) {
				int64(w, (int64_t)m->requests);
			} else if (t == 1) {
				int64(w, (int64_t)m->errors);
			} else {
				map(w, 3);
				key_int(w, "p50", (int64_t)m->p50_us);
				key_int(w, "p99", (int64_t)m->p99_us);
				key_int(w, "p999", (int64_t)m->p999_us);
			}
		}
	}
	str(w, "store");
	map(w, 4);
	key_int(w, "persons", (int64_t)st->persons);
	key_int(w, "audit_records", (int64_t)st->audit_records);
	key_int(w, "bytes_used", (int64_t)st->bytes_used);
	key_int(w, "map_bytes", (int64_t)st->map_bytes);
}

void proto_write_audit_page_begin(struct proto_writer *w, uint32_t msgid, uint32_t count)
{
	result_header(w, msgid, 2);
	str(w, "records");
	array(w, count);
}

bool proto_write_audit_entry(struct proto_writer *w, uint64_t seq, const uint8_t *r, size_t size)
{
	uint32_t keys;
	size_t header;
	if (size >= 1 && (r[0] & 0xf0) == 0x80) {
		keys = r[0] & 0x0f;
		header = 1;
	} else if (size >= 3 && r[0] == 0xde) {
		keys = (uint32_t)r[1] << 8 | r[2];
		header = 3;
	} else if (size >= 5 && r[0] == 0xdf) {
		keys = (uint32_t)r[1] << 24 | (uint32_t)r[2] << 16 | (uint32_t)r[3] << 8 | r[4];
		header = 5;
	} else {
		return false;
	}
	if (keys == UINT32_MAX) {
		return false;
	}
	map(w, keys + 1);
	str(w, "seq");
	msgpack_pack_uint64(&w->pk, seq);
	writer_append(w, (const char *)r + header, size - header);
	return true;
}

void proto_write_audit_page_end(struct proto_writer *w, bool with_next, uint64_t next)
{
	str(w, "next");
	with_next ? msgpack_pack_uint64(&w->pk, next) : nil(w);
}

void proto_write_audit_batch(struct proto_writer *w, int64_t time_ms, const char *method, uint64_t person_count)
{
	map(w, 4);
	key_int(w, "time_ms", time_ms);
	str(w, "method");
	str(w, method);
	str(w, "idem");
	nil(w);
	str(w, "persons");
	msgpack_pack_uint64(&w->pk, person_count);
}

/* ---- policy revisions (SPEC 3.4) ---- */

void proto_write_policy_put(struct proto_writer *w, uint32_t msgid, uint32_t revision,
			    const struct proto_warnings *warnings)
{
	result_header(w, msgid, 3);
	key_bool(w, "ok", true);
	key_int(w, "revision", revision);
	str(w, "warnings");
	array(w, warnings->count);
	for (uint32_t i = 0; i < warnings->count; i++) {
		str(w, warnings->text[i]);
	}
}

void proto_write_policy_revision(struct proto_writer *w, uint32_t msgid, const struct core_policy *p,
				 uint32_t revision, int64_t stored_at_ms)
{
	result_header(w, msgid, 3);
	str(w, "policy");
	proto_write_policy_doc(w, p);
	key_int(w, "revision", revision);
	key_int(w, "stored_at", stored_at_ms);
}

void proto_write_history_begin(struct proto_writer *w, uint32_t msgid, uint32_t count)
{
	result_header(w, msgid, 1);
	str(w, "revisions");
	array(w, count);
}

void proto_write_history_entry(struct proto_writer *w, uint32_t revision, int64_t stored_at_ms,
			       const struct core_policy *p)
{
	map(w, 4);
	key_int(w, "revision", revision);
	key_int(w, "stored_at", stored_at_ms);
	str(w, "name");
	str_n(w, p->name, p->name_size);
	str(w, "source");
	str_n(w, p->source, p->source_size);
}

void proto_write_compute_begin(struct proto_writer *w, uint32_t msgid, uint32_t count, bool with_next)
{
	result_header(w, msgid, with_next ? 3 : 2);
	str(w, "results");
	array(w, count);
}

size_t proto_write_compute_open(struct proto_writer *w, uint32_t msgid, uint32_t count_max, bool with_next)
{
	result_header(w, msgid, with_next ? 3 : 2);
	str(w, "results");
	size_t at = w->size;
	array(w, count_max);
	return at;
}

static size_t array_header_bytes(uint32_t n)
{
	return n < 16 ? 1 : n < 1u << 16 ? 3 : 5;
}

void proto_write_results_count(struct proto_writer *w, size_t at, uint32_t count_max, uint32_t count)
{
	ASSERT(count <= count_max);
	if (w->failed) {
		return;
	}
	size_t was = array_header_bytes(count_max);
	size_t now = array_header_bytes(count);
	if (now != was) { /* a shorter header: the results move down (a last page, of few) */
		memmove(w->data + at + now, w->data + at + was, w->size - at - was);
	}
	size_t end = w->size - (was - now);
	w->size = at;
	array(w, count);
	w->size = end;
}

void proto_write_policies(struct proto_writer *w, const uint32_t *cities, const uint32_t *revisions,
			  const bool *used, uint32_t count)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < count; i++) {
		n += used[i];
	}
	str(w, "policies");
	map(w, n);
	for (uint32_t i = 0; i < count; i++) {
		if (used[i]) {
			city_str(w, cities[i] % 1000000u);
			int64(w, revisions[i]);
		}
	}
}

void proto_write_audit_policy(struct proto_writer *w, int64_t time_ms, const char *method, size_t method_size,
			      uint32_t city, uint32_t revision)
{
	map(w, 6);
	key_int(w, "time_ms", time_ms);
	str(w, "method");
	str_n(w, method, method_size);
	str(w, "idem");
	nil(w);
	str(w, "persons");
	array(w, 0);
	key_city(w, "city", city);
	key_int(w, "revision", revision);
}
