/* The method table, the compute loop over persons, and write transactions. */
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "dispatch.h"
#include "log.h"
#include "stats.h"
#include "summary.h"

/* Persons of a scan page read in one tight loop (the misses on their pages
 * overlap), then computed while still in the caches and the TLB. */
#define SCAN_BATCH 64u

_Static_assert(PROTO_DIGEST_BYTES == STORE_IDEM_DIGEST_BYTES, "the store keeps the whole digest");

struct dispatch {
	struct store *store;           /* NULL: inline persons only */
	struct store_reader *reader;   /* the reads of this dispatch's thread, when a store */
	struct dispatch_shared *shared;
	struct dispatch_shared own;    /* when the caller shares nothing */
	uint64_t policy_generation;    /* of the policies held */
	struct dispatch_session *session;
	struct core_policy **policies; /* sorted by city, owned */
	uint32_t *policy_revisions;    /* the revision of policies[i] */
	uint32_t policy_count;
	/* The policies one request reads (view_open): the latest, or the
	 * revisions its policy_revisions names; sorted by city. */
	const struct core_policy **view;
	uint32_t *view_cities;
	uint32_t *view_revisions;
	bool *view_used; /* read by the request: its `policies` answer */
	uint32_t view_count;
	struct core_policy **owned; /* revisions decoded for the view, freed by view_close */
	uint32_t owned_count;
	/* eval without a store: every revision, in memory (POLICY_MEMORY_REVISIONS_MAX) */
	struct mem_revision *mem;
	uint32_t mem_count;
	/* policy.put */
	struct proto_warnings warnings;
	uint32_t put_revision;   /* the revision a committed put stored */
	uint32_t audit_city;     /* a policy.put's audit record names its city and revision */
	uint32_t audit_revision; /* 0: another write */
	struct proto_message *message;
	struct proto_writer *writer; /* the response */
	struct proto_writer *aux;    /* audit records and policy documents */
	struct proto_person_buf person_buf;
	struct summarizer summarizer;
	uint64_t summarized; /* persons answered from their summary */
	/* Scratch sized by the largest person seen. */
	uint32_t scratch_capacity;
	struct core_arrears_item *items;
	struct core_duplicate *duplicates;
	struct core_withhold_line *lines;
	struct core_slot *slots; /* a stored person decoded for a write */
	struct core_run *runs;   /* a stored person's runs, decoded once for its passes */
	/* Persons a write touched, for the audit log. */
	char (*touched)[CORE_ID_SIZE + 1];
	uint32_t touched_count;
	uint32_t touched_capacity;
	struct store_person batch[SCAN_BATCH]; /* persons of a scan page read, to compute */
	/* The answer in parts (dispatch_frame_part); SIZE_MAX and NULL: whole. */
	size_t part_bytes;
	struct dispatch_resume *resume;
	bool partial; /* the part written is not the last */
};

struct mem_revision {
	uint32_t city;
	uint32_t revision;
	int64_t stored_at_ms;
	uint8_t *doc; /* owned */
	size_t doc_size;
};

struct policy_loader {
	struct dispatch *d;
	struct store_txn *txn;
};

static int policy_load(void *ctx, uint32_t city, const uint8_t *doc, size_t size);

/* Replaces the policies held with the stored ones. */
static bool policies_reload(struct dispatch *d)
{
	for (uint32_t i = 0; i < d->policy_count; i++) {
		free(d->policies[i]);
	}
	d->policy_count = 0;
	/* The generation before the snapshot: a put committed in between bumps it
	 * again, and the next request reloads. Kept only when everything loaded. */
	uint64_t generation = __atomic_load_n(&d->shared->policy_generation, __ATOMIC_ACQUIRE);
	struct store_txn *txn;
	if (store_reader_begin(d->reader, &txn) != STORE_OK) {
		return false;
	}
	struct policy_loader loader = { d, txn };
	bool ok = store_policy_each(txn, policy_load, &loader) == STORE_OK;
	store_txn_end(txn);
	d->policy_generation = ok ? generation : UINT64_MAX;
	return ok;
}

struct dispatch *dispatch_new(struct store *store, struct dispatch_shared *shared)
{
	struct dispatch *d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return NULL;
	}
	if (sodium_init() < 0) { /* idempotency digests; safe to call again from any thread */
		free(d);
		return NULL;
	}
	d->store = store;
	d->own.persons_max = PROTO_PERSONS_MAX;
	d->shared = shared != NULL ? shared : &d->own;
	d->message = proto_message_new();
	d->writer = proto_writer_new();
	d->aux = proto_writer_new();
	d->policies = calloc(DISPATCH_CITIES_MAX, sizeof(*d->policies));
	d->policy_revisions = calloc(DISPATCH_CITIES_MAX, sizeof(*d->policy_revisions));
	d->view = calloc(DISPATCH_CITIES_MAX, sizeof(*d->view));
	d->view_cities = calloc(DISPATCH_CITIES_MAX, sizeof(*d->view_cities));
	d->view_revisions = calloc(DISPATCH_CITIES_MAX, sizeof(*d->view_revisions));
	d->view_used = calloc(DISPATCH_CITIES_MAX, sizeof(*d->view_used));
	d->owned = calloc(DISPATCH_CITIES_MAX, sizeof(*d->owned));
	d->mem = store == NULL ? calloc(POLICY_MEMORY_REVISIONS_MAX, sizeof(*d->mem)) : NULL;
	bool ok = d->message != NULL && d->writer != NULL && d->aux != NULL && d->policies != NULL &&
		  d->policy_revisions != NULL && d->view != NULL && d->view_cities != NULL &&
		  d->view_revisions != NULL && d->view_used != NULL && d->owned != NULL && (store != NULL || d->mem != NULL);
	if (ok && store != NULL) {
		ok = store_reader_new(store, &d->reader) == STORE_OK && policies_reload(d);
	}
	if (!ok) {
		dispatch_free(d);
		return NULL;
	}
	return d;
}

void dispatch_free(struct dispatch *d)
{
	if (d == NULL) {
		return;
	}
	for (uint32_t i = 0; i < d->policy_count; i++) {
		free(d->policies[i]);
	}
	free(d->policies);
	free(d->policy_revisions);
	free(d->view);
	free(d->view_cities);
	free(d->view_revisions);
	free(d->view_used);
	free(d->owned);
	for (uint32_t i = 0; i < d->mem_count; i++) {
		free(d->mem[i].doc);
	}
	free(d->mem);
	store_reader_free(d->reader);
	proto_message_free(d->message);
	proto_writer_free(d->writer);
	proto_writer_free(d->aux);
	proto_person_buf_free(&d->person_buf);
	summarizer_free(&d->summarizer);
	free(d->items);
	free(d->duplicates);
	free(d->lines);
	free(d->slots);
	free(d->runs);
	free(d->touched);
	free(d);
}

static struct core_policy_set policy_set(const struct dispatch *d)
{
	return (struct core_policy_set){ (const struct core_policy *const *)d->policies, d->policy_count };
}

/* Puts p, the city's revision `revision`, in the sorted table (replacing
 * the city's old one); false when full. */
static bool policy_install(struct dispatch *d, struct core_policy *p, uint32_t revision)
{
	uint32_t i = 0;
	while (i < d->policy_count && d->policies[i]->city < p->city) {
		i++;
	}
	if (i < d->policy_count && d->policies[i]->city == p->city) {
		free(d->policies[i]);
	} else if (d->policy_count == DISPATCH_CITIES_MAX) {
		return false;
	} else {
		memmove(&d->policies[i + 1], &d->policies[i], sizeof(*d->policies) * (d->policy_count - i));
		memmove(&d->policy_revisions[i + 1], &d->policy_revisions[i],
			sizeof(*d->policy_revisions) * (d->policy_count - i));
		d->policy_count++;
	}
	d->policies[i] = p;
	d->policy_revisions[i] = revision;
	return true;
}

static int policy_load(void *ctx, uint32_t city, const uint8_t *doc, size_t size)
{
	struct policy_loader *loader = ctx;
	struct proto_error err;
	struct store_revision last;
	/* Every latest policy has its revision (store_open migrates old stores). */
	if (store_revision_get(loader->txn, city, 0, &last) != STORE_OK) {
		return STORE_IO;
	}
	struct core_policy *p = proto_policy_from_doc(doc, size, &err);
	if (p == NULL || p->city != city || !policy_install(loader->d, p, last.revision)) {
		free(p);
		return STORE_IO;
	}
	return STORE_OK;
}

static bool scratch_reserve(struct dispatch *d, uint32_t slot_count)
{
	if (slot_count <= d->scratch_capacity) {
		return true;
	}
	struct core_arrears_item *items = realloc(d->items, sizeof(*items) * slot_count);
	d->items = items != NULL ? items : d->items;
	struct core_duplicate *dups = realloc(d->duplicates, sizeof(*dups) * slot_count);
	d->duplicates = dups != NULL ? dups : d->duplicates;
	struct core_withhold_line *lines = realloc(d->lines, sizeof(*lines) * slot_count);
	d->lines = lines != NULL ? lines : d->lines;
	struct core_slot *slots = realloc(d->slots, sizeof(*slots) * slot_count);
	d->slots = slots != NULL ? slots : d->slots;
	struct core_run *runs = realloc(d->runs, sizeof(*runs) * slot_count);
	d->runs = runs != NULL ? runs : d->runs;
	if (items == NULL || dups == NULL || lines == NULL || slots == NULL || runs == NULL) {
		return false;
	}
	d->scratch_capacity = slot_count;
	return true;
}

static void write_error(struct dispatch *d, uint32_t msgid, int code, const char *message, const char *at)
{
	struct proto_error err;
	proto_error_set(&err, code, message, at == NULL ? NULL : "%s", at);
	proto_write_error(d->writer, msgid, &err);
}

static void handle_ping(struct dispatch *d, const struct proto_envelope *env)
{
	proto_write_pong(d->writer, env->msgid);
}

/* ---- policy revisions (SPEC 3.4) ---- */

static int64_t now_ms(void)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* The last revision of city held in memory (eval without a store), or NULL. */
static const struct mem_revision *mem_find(const struct dispatch *d, uint32_t city, uint64_t revision)
{
	for (uint32_t i = d->mem_count; i-- > 0;) {
		if (d->mem[i].city == city && (revision == 0 || d->mem[i].revision == revision)) {
			return &d->mem[i];
		}
	}
	return NULL;
}

/* A revision's document (0: the city's last): from the store through txn
 * (which the document borrows), or from memory. STORE_OK, STORE_NOT_FOUND
 * or STORE_IO. */
static int revision_find(struct dispatch *d, struct store_txn *txn, uint32_t city, uint64_t revision,
			 struct store_revision *out)
{
	if (revision > UINT32_MAX) {
		return STORE_NOT_FOUND;
	}
	if (d->store != NULL) {
		return txn == NULL ? STORE_IO : store_revision_get(txn, city, (uint32_t)revision, out);
	}
	const struct mem_revision *m = mem_find(d, city, revision);
	if (m == NULL) {
		return STORE_NOT_FOUND;
	}
	*out = (struct store_revision){ m->city, m->revision, m->stored_at_ms, m->doc, m->doc_size };
	return STORE_OK;
}

/* A read for the revisions, NULL without a store (or on a fault: finds then answer STORE_IO). */
static struct store_txn *revisions_read(struct dispatch *d)
{
	struct store_txn *txn = NULL;
	if (d->store != NULL && store_reader_begin(d->reader, &txn) != STORE_OK) {
		txn = NULL;
	}
	return txn;
}

static void handle_policy_get(struct dispatch *d, const struct proto_envelope *env)
{
	struct proto_error err;
	uint32_t city;
	uint64_t revision;
	if (proto_city_decode(env->params, "city", &city, &err) != PROTO_OK ||
	    proto_revision_decode(env->params, &revision, &err) != PROTO_OK) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	struct store_txn *txn = revisions_read(d);
	struct store_revision r;
	int rc = revision_find(d, txn, city, 0, &r);
	if (rc == STORE_OK && revision != 0) {
		rc = revision_find(d, txn, city, revision, &r);
		if (rc == STORE_NOT_FOUND) {
			proto_error_set(&err, PROTO_NOT_FOUND, "no such revision of this city's policy", "revision");
		}
	} else if (rc == STORE_NOT_FOUND) {
		proto_error_set(&err, PROTO_NOT_FOUND, "no policy for this city", "%06u", city);
	}
	struct core_policy *p = rc == STORE_OK ? proto_policy_from_doc(r.doc, r.doc_size, &err) : NULL;
	if (rc == STORE_IO || (rc == STORE_OK && p == NULL)) {
		proto_error_set(&err, PROTO_INTERNAL, "storage fault reading the policy", NULL);
	}
	if (p != NULL) {
		proto_write_policy_revision(d->writer, env->msgid, p, r.revision, r.stored_at_ms);
	} else {
		proto_write_error(d->writer, env->msgid, &err);
	}
	free(p);
	store_txn_end(txn);
}

struct history {
	struct dispatch *d;
	uint32_t count;
	bool write; /* false: count only */
};

static int history_entry(void *ctx, const struct store_revision *r)
{
	struct history *h = ctx;
	h->count++;
	if (!h->write) {
		return STORE_OK;
	}
	struct proto_error err;
	struct core_policy *p = proto_policy_from_doc(r->doc, r->doc_size, &err);
	if (p == NULL) {
		return STORE_IO;
	}
	proto_write_history_entry(h->d->writer, r->revision, r->stored_at_ms, p);
	free(p);
	return STORE_OK;
}

/* Every revision of city, ascending, through fn. */
static int history_each(struct dispatch *d, struct store_txn *txn, uint32_t city, struct history *h)
{
	if (d->store != NULL) {
		return txn == NULL ? STORE_IO : store_revision_each(txn, city, history_entry, h);
	}
	int rc = STORE_OK;
	for (uint32_t i = 0; i < d->mem_count && rc == STORE_OK; i++) {
		const struct mem_revision *m = &d->mem[i];
		if (m->city == city) {
			struct store_revision r = { m->city, m->revision, m->stored_at_ms, m->doc, m->doc_size };
			rc = history_entry(h, &r);
		}
	}
	return rc;
}

static void handle_policy_history(struct dispatch *d, const struct proto_envelope *env)
{
	struct proto_error err;
	uint32_t city;
	if (proto_city_decode(env->params, "city", &city, &err) != PROTO_OK) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	struct store_txn *txn = revisions_read(d);
	struct history h = { d, 0, false };
	int rc = history_each(d, txn, city, &h);
	if (rc == STORE_OK && h.count == 0) {
		proto_error_set(&err, PROTO_NOT_FOUND, "no policy for this city", "%06u", city);
		proto_write_error(d->writer, env->msgid, &err);
	} else if (rc == STORE_OK) {
		proto_write_history_begin(d->writer, env->msgid, h.count);
		h = (struct history){ d, 0, true };
		rc = history_each(d, txn, city, &h);
	}
	if (rc != STORE_OK) {
		proto_writer_reset(d->writer);
		write_error(d, env->msgid, PROTO_INTERNAL, "storage fault reading the policy history", NULL);
	}
	store_txn_end(txn);
}

/* The view's index of city, or UINT32_MAX. */
static uint32_t view_index(const struct dispatch *d, uint32_t city)
{
	uint32_t lo = 0;
	uint32_t hi = d->view_count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (d->view_cities[mid] < city) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return lo < d->view_count && d->view_cities[lo] == city ? lo : UINT32_MAX;
}

static uint32_t latest_index(const struct dispatch *d, uint32_t city)
{
	uint32_t i = 0;
	while (i < d->policy_count && d->policies[i]->city < city) {
		i++;
	}
	return i < d->policy_count && d->policies[i]->city == city ? i : UINT32_MAX;
}

/* Points view[i] at the policy of its city and revision: the latest one
 * held, or the revision decoded. STORE_OK, STORE_NOT_FOUND, STORE_IO. */
static int view_resolve(struct dispatch *d, struct store_txn *txn, uint32_t i)
{
	uint32_t latest = latest_index(d, d->view_cities[i]);
	if (latest != UINT32_MAX && d->policy_revisions[latest] == d->view_revisions[i]) {
		d->view[i] = d->policies[latest];
		return STORE_OK;
	}
	struct store_revision r;
	int rc = revision_find(d, txn, d->view_cities[i], d->view_revisions[i], &r);
	if (rc != STORE_OK) {
		return rc;
	}
	struct proto_error err;
	struct core_policy *p = proto_policy_from_doc(r.doc, r.doc_size, &err);
	if (p == NULL) {
		return STORE_IO;
	}
	d->owned[d->owned_count++] = p;
	d->view[i] = p;
	return STORE_OK;
}

/* Keeps the view of a first part in the resume for the parts that follow. */
static bool view_keep(struct dispatch *d)
{
	struct dispatch_resume *r = d->resume;
	uint32_t n = d->view_count;
	free(r->view_cities);
	r->view_cities = malloc((sizeof(uint32_t) * 2 + sizeof(bool)) * (n > 0 ? n : 1));
	if (r->view_cities == NULL) {
		return false;
	}
	r->view_revisions = r->view_cities + n;
	r->view_used = (bool *)(r->view_revisions + n);
	r->view_count = n;
	memcpy(r->view_cities, d->view_cities, sizeof(uint32_t) * n);
	memcpy(r->view_revisions, d->view_revisions, sizeof(uint32_t) * n);
	return true;
}

/* Ends a request's view: frees the revisions decoded for it, and keeps what
 * it read for the next part. */
static void view_close(struct dispatch *d)
{
	for (uint32_t i = 0; i < d->owned_count; i++) {
		free(d->owned[i]);
	}
	d->owned_count = 0;
	struct dispatch_resume *r = d->resume;
	if (r != NULL && r->view_cities != NULL && r->view_count == d->view_count) {
		memcpy(r->view_used, d->view_used, sizeof(*d->view_used) * d->view_count);
	}
}

static struct core_policy_set view_set(const struct dispatch *d)
{
	return (struct core_policy_set){ d->view, d->view_count };
}

static void view_mark(struct dispatch *d, uint32_t city)
{
	uint32_t i = view_index(d, city);
	if (i != UINT32_MAX) {
		d->view_used[i] = true;
	}
}

/* Marks every slot city of a person as read (SPEC 3.4: also when the
 * person's result is an error). */
static void view_mark_timeline(struct dispatch *d, const struct core_timeline *tl)
{
	uint32_t last = UINT32_MAX;
	if (tl->run_list != NULL) {
		for (uint32_t i = 0; i < tl->run_count; i++) {
			if (tl->run_list[i].first.city != last) {
				last = tl->run_list[i].first.city;
				view_mark(d, last);
			}
		}
		return;
	}
	for (uint32_t i = 0; i < tl->slot_count; i++) {
		if (tl->slots[i].city != last) {
			last = tl->slots[i].city;
			view_mark(d, last);
		}
	}
}

/* The policies a request reads: the latest of every city, with the
 * revisions pins names instead (not_found at policy_revisions.<city> for
 * one that does not exist); a later part of an answer reads the very
 * revisions its first part did. PROTO_OK, or err set. */
static int view_open(struct dispatch *d, struct store_txn *txn, const struct proto_pins *pins,
		     struct proto_error *err)
{
	struct dispatch_resume *r = d->resume;
	d->owned_count = 0;
	struct store_txn *own = txn == NULL ? revisions_read(d) : NULL;
	txn = txn != NULL ? txn : own;
	int rc = STORE_OK;
	if (r != NULL && r->next > 0 && r->view_cities != NULL) {
		d->view_count = r->view_count;
		memcpy(d->view_cities, r->view_cities, sizeof(*d->view_cities) * r->view_count);
		memcpy(d->view_revisions, r->view_revisions, sizeof(*d->view_revisions) * r->view_count);
		memcpy(d->view_used, r->view_used, sizeof(*d->view_used) * r->view_count);
		for (uint32_t i = 0; i < d->view_count && rc == STORE_OK; i++) {
			rc = view_resolve(d, txn, i);
		}
		if (rc != STORE_OK) {
			proto_error_set(err, PROTO_INTERNAL, "storage fault reading a policy revision", NULL);
		}
	} else {
		d->view_count = d->policy_count;
		for (uint32_t i = 0; i < d->policy_count; i++) {
			d->view[i] = d->policies[i];
			d->view_cities[i] = d->policies[i]->city;
			d->view_revisions[i] = d->policy_revisions[i];
			d->view_used[i] = false;
		}
		for (uint32_t j = 0; j < pins->count && rc == STORE_OK; j++) {
			uint32_t i = view_index(d, pins->city[j]);
			rc = i == UINT32_MAX || pins->revision[j] > UINT32_MAX ? STORE_NOT_FOUND : STORE_OK;
			if (rc == STORE_OK) {
				d->view_revisions[i] = (uint32_t)pins->revision[j];
				rc = view_resolve(d, txn, i);
			}
			if (rc == STORE_NOT_FOUND) {
				proto_error_set(err, PROTO_NOT_FOUND, "no such revision of this city's policy",
						"policy_revisions.%06u", pins->city[j]);
			} else if (rc != STORE_OK) {
				proto_error_set(err, PROTO_INTERNAL, "storage fault reading a policy revision", NULL);
			}
		}
		if (rc == STORE_OK && r != NULL && !view_keep(d)) {
			rc = STORE_IO;
			proto_error_set(err, PROTO_INTERNAL, "out of memory", NULL);
		}
	}
	store_txn_end(own);
	return rc == STORE_OK ? PROTO_OK : err->code;
}
/* ---- computing ---- */

/* R1: slot s (slot_index of the person at path[index]) has a month before
 * its city's first period. */
static void no_period_error(struct proto_error *err, const struct core_policy_set *set, const struct core_slot *s,
			    const char *path, uint32_t index, uint32_t slot_index)
{
	const struct core_policy *p = core_policy_find(set, s->city);
	ASSERT(p != NULL && p->period_count > 0);
	char expected[80];
	char found[16];
	snprintf(expected, sizeof(expected), "on or after %" PRId32 ", the first period of city %06" PRIu32,
		 core_month_yyyymm(p->periods[0].from), s->city);
	snprintf(found, sizeof(found), "%" PRId32, core_month_yyyymm(s->month));
	proto_invalid_text(err, "month", expected, found, "%s[%u].slots[%u].month", path, index, slot_index);
}

/* The slot at index, read run by run (the timeline may be decoded runs). */
static struct core_slot slot_at(const struct core_timeline *tl, uint32_t index)
{
	struct core_timeline_iter it;
	const struct core_run *r;
	uint32_t first = 0;
	core_timeline_iter_init(&it, tl);
	while ((r = core_timeline_next_run(&it)) != NULL && first + r->count <= index) {
		first += r->count;
	}
	ASSERT(r != NULL);
	struct core_slot s;
	core_run_slot(r, index - first, &s);
	return s;
}

/* R9: the elect_month range of this person. */
static void elect_month_error(struct proto_error *err, int32_t birth_month, uint8_t class_, int32_t elect_month)
{
	struct core_retirement r;
	struct core_policy_set none = { 0 };
	struct core_timeline empty = { 0 };
	/* Fills original and statutory before it rejects the month. */
	int rc = core_retirement_check(&none, birth_month, class_, &empty, core_as_of_make(20000101), elect_month, &r);
	ASSERT(rc == CORE_ERR_ELECT_MONTH);
	int32_t earliest = r.statutory_month - 36 > r.original_month ? r.statutory_month - 36 : r.original_month;
	char expected[64];
	char found[16];
	snprintf(expected, sizeof(expected), "%" PRId32 "..%" PRId32 " for this person", core_month_yyyymm(earliest),
		 core_month_yyyymm(r.statutory_month + 36));
	snprintf(found, sizeof(found), "%" PRId32, core_month_yyyymm(elect_month));
	proto_invalid_text(err, "elect_month", expected, found, "elect_month");
}

/* Computes one person and writes its result, or its error. path/index name
 * the person in errors ("persons", 3). */
/* Runs the request's method on a resolved timeline, or on a summary that
 * applies (sum not NULL: tl is ignored), and writes the result on success.
 * Returns the core's code. */
static int compute_method(struct dispatch *d, const struct proto_compute *req, const char *id, uint8_t class_,
			  const struct core_timeline *tl, const struct core_summary *sum)
{
	struct core_policy_set set = view_set(d);
	int rc;
	switch (req->method) {
	case PROTO_ARREARS: {
		struct core_arrears a;
		uint32_t item_count = 0;
		rc = core_arrears_compute(&set, sum != NULL ? &sum->exceptions : tl, req->as_of, &a,
					  req->detail ? d->items : NULL, &item_count);
		if (rc == CORE_OK) {
			proto_write_arrears(d->writer, id, &a, req->detail, d->items, item_count);
		}
		return rc;
	}
	case PROTO_YEARS: {
		struct core_years y;
		uint32_t dup_count;
		rc = sum != NULL ? core_summary_years(sum, &y, d->duplicates, &dup_count)
				 : core_years_compute(&set, tl, req->as_of, &y, d->duplicates, &dup_count);
		if (rc == CORE_OK) {
			proto_write_years(d->writer, id, &y, d->duplicates, dup_count);
		}
		return rc;
	}
	case PROTO_RETIREMENT: {
		struct core_retirement r;
		int32_t birth = core_id_birth_month(id);
		rc = sum != NULL ? core_summary_retirement(&set, birth, class_, sum, req->as_of, req->elect_month, &r)
				 : core_retirement_check(&set, birth, class_, tl, req->as_of, req->elect_month, &r);
		if (rc == CORE_OK) {
			proto_write_retirement(d->writer, id, &r);
		}
		return rc;
	}
	case PROTO_HOUSING: {
		struct core_housing h;
		const struct core_policy *policy = core_policy_find(&set, req->city);
		rc = sum != NULL ? core_summary_housing(policy, sum, req->as_of, &h)
				 : core_housing_check(&set, policy, tl, req->as_of, &h);
		if (rc == CORE_OK) {
			proto_write_housing(d->writer, id, req->city, &h);
		}
		return rc;
	}
	default: {
		struct core_medical m;
		rc = sum != NULL ? core_summary_medical(&set, sum, req->as_of, &m)
				 : core_medical_status(&set, tl, req->as_of, &m);
		if (rc == CORE_OK) {
			proto_write_medical(d->writer, id, &m);
		}
		return rc;
	}
	}
}

/* The summary's answer when it applies (as of its horizon or later, under
 * exactly the revisions it was made with): true with the result written. */
static bool compute_summarized(struct dispatch *d, const struct proto_compute *req, const char *id, uint8_t class_,
			       const uint8_t *bytes, size_t size)
{
	struct core_summary sum;
	struct core_policy_set set = view_set(d);
	uint32_t bad;
	/* The exceptions resolve whenever the summary is current; checked all the same
	 * where a method reads them (years and housing do not), since the rules trust
	 * resolved slots and a damaged store must not stop the server. */
	bool reads_exceptions = req->method != PROTO_YEARS && req->method != PROTO_HOUSING;
	if (bytes == NULL || !core_summary_read(bytes, size, &sum) ||
	    !core_summary_applies(&sum, req->as_of) || !summary_current(&sum, &set, d->view_revisions) ||
	    !scratch_reserve(d, sum.exceptions.slot_count > sum.duplicate_count ? sum.exceptions.slot_count
									 : sum.duplicate_count) ||
	    (reads_exceptions && core_person_resolve(&set, &sum.exceptions, &bad) != CORE_OK)) {
		return false;
	}
	/* Overflow, elect_month, a damaged summary: the full path words the error. */
	if (compute_method(d, req, id, class_, NULL, &sum) != CORE_OK) {
		return false;
	}
	for (uint32_t i = 0; i < sum.city_count; i++) {
		uint32_t city;
		uint32_t revision;
		core_summary_city(&sum, i, &city, &revision);
		view_mark(d, city);
	}
	d->summarized++;
	return true;
}

static void compute_one(struct dispatch *d, const struct proto_compute *req, const char *id, uint8_t class_,
			const struct core_timeline *stored, const uint8_t *summary, size_t summary_size,
			const char *path, uint32_t index)
{
	if (compute_summarized(d, req, id, class_, summary, summary_size)) {
		return;
	}
	struct core_policy_set set = view_set(d);
	struct proto_error err;
	uint32_t bad = 0;
	/* Every rule walks the person at least twice (R1, then the method): decode once. */
	struct core_timeline decoded = *stored;
	const struct core_timeline *tl = &decoded;
	if (!scratch_reserve(d, stored->slot_count)) {
		proto_error_set(&err, PROTO_INTERNAL, "out of memory", NULL);
		proto_write_person_error(d->writer, id, CORE_ID_SIZE, &err);
		return;
	}
	int rc = CORE_OK;
	if (stored->runs != NULL) {
		int64_t count = core_timeline_decode(stored, d->runs, stored->slot_count);
		rc = count < 0 ? CORE_ERR_CORRUPT : CORE_OK;
		decoded = (struct core_timeline){ .slot_count = stored->slot_count, .run_list = d->runs,
						  .run_count = (uint32_t)(count < 0 ? 0 : count) };
	}
	if (rc == CORE_OK) {
		view_mark_timeline(d, tl);
	}
	rc = rc == CORE_OK ? core_person_resolve(&set, tl, &bad) : rc;
	if (rc == CORE_ERR_NO_POLICY || rc == CORE_ERR_NO_PERIOD) {
		if (rc == CORE_ERR_NO_POLICY) {
			proto_error_set(&err, PROTO_NOT_FOUND, "no policy for this city", "%06u", slot_at(tl, bad).city);
		} else {
			struct core_slot s = slot_at(tl, bad);
			no_period_error(&err, &set, &s, path, index, bad);
		}
	}
	if (rc == CORE_OK) {
		rc = compute_method(d, req, id, class_, tl, NULL);
		if (rc == CORE_ERR_OVERFLOW) {
			proto_invalid_text(&err, "every amount computed", "at most 2^53 (9007199254740992) fen",
					   "a larger one", "overflow");
		} else if (rc == CORE_ERR_ELECT_MONTH) {
			elect_month_error(&err, core_id_birth_month(id), class_, req->elect_month);
		}
	}
	if (rc == CORE_ERR_CORRUPT) {
		proto_error_set(&err, PROTO_INTERNAL, "stored timeline does not decode", NULL);
	}
	if (rc != CORE_OK) {
		proto_write_person_error(d->writer, id, CORE_ID_SIZE, &err);
	}
}

static uint8_t stored_class(const struct store_person *p)
{
	return p->retire_class >= 0 ? (uint8_t)p->retire_class : core_id_default_class(p->id);
}

/* A long answer comes in parts (dispatch_frame_part): the results array's
 * header in the first, person after person until a part passes
 * d->part_bytes, the tail in the last. True when the part is full: the
 * caller stops, and `next` is where the next part begins. */
static bool part_full(struct dispatch *d, uint32_t next, uint32_t count)
{
	size_t size;
	proto_writer_data(d->writer, &size);
	if (next == count || size < d->part_bytes) {
		return false;
	}
	d->resume->next = next;
	d->partial = true;
	return true;
}

/* The first result of this part: 0 for a whole answer or a first part
 * (which writes the header). */
static uint32_t part_begin(struct dispatch *d, uint32_t msgid, uint32_t count, bool with_next)
{
	uint32_t first = d->resume != NULL ? d->resume->next : 0;
	if (first == 0) {
		proto_write_compute_begin(d->writer, msgid, count, with_next);
	}
	return first;
}

static void compute_inline(struct dispatch *d, struct proto_compute *req, uint32_t msgid)
{
	for (uint32_t i = part_begin(d, msgid, req->person_count, false); i < req->person_count; i++) {
		if (part_full(d, i, req->person_count)) {
			return;
		}
		const char *id;
		size_t id_size;
		struct proto_error err;
		struct proto_person person;
		if (proto_person_decode(req, i, &d->person_buf, &person, &id, &id_size, &err) != PROTO_OK) {
			proto_write_person_error(d->writer, id, id_size, &err);
			continue;
		}
		struct core_timeline tl = { .slots = person.slots, .slot_count = person.slot_count };
		compute_one(d, req, person.id, person.class_, &tl, NULL, 0, "persons", i);
	}
}

/* A stored person looked up by id (rc: the lookup's), computed, or its
 * error at path[index]. */
static void compute_found(struct dispatch *d, const struct proto_compute *req, int rc, const struct store_person *p,
			  const char *id, size_t id_size, const char *path, uint32_t index)
{
	struct proto_error err;
	if (rc == STORE_OK) {
		compute_one(d, req, p->id, stored_class(p), &p->timeline, p->summary, p->summary_size, path, index);
		return;
	}
	if (rc == STORE_NOT_FOUND) {
		proto_error_set(&err, PROTO_NOT_FOUND, "no such person", "%s[%u]", path, index);
	} else {
		proto_error_set(&err, PROTO_INTERNAL, "storage fault reading the person", "%s[%u]", path, index);
	}
	proto_write_person_error(d->writer, id, id_size, &err);
}

/* No store: every id is unknown; a store but no read (a later part's failed begin): a fault. */
static int lookup_unread(const struct dispatch *d)
{
	return d->store == NULL ? STORE_NOT_FOUND : STORE_IO;
}

/* One stored person by id, computed, or its error at path[index]. */
static void compute_stored(struct dispatch *d, struct store_txn *txn, const struct proto_compute *req, const char *id,
			   size_t id_size, const char *path, uint32_t index)
{
	struct store_person p;
	int rc = txn != NULL ? store_person_get(txn, id, id_size, &p) : lookup_unread(d);
	compute_found(d, req, rc, &p, id, id_size, path, index);
}

static void compute_ids(struct dispatch *d, struct store_txn *txn, const struct proto_compute *req, uint32_t msgid)
{
	for (uint32_t i = part_begin(d, msgid, req->person_count, false); i < req->person_count; i++) {
		if (part_full(d, i, req->person_count)) {
			return;
		}
		const char *id;
		size_t id_size;
		struct proto_error err;
		if (!proto_compute_id(req, i, &id, &id_size, &err)) {
			proto_write_person_error(d->writer, id, id_size, &err);
			continue;
		}
		compute_stored(d, txn, req, id, id_size, "ids", i);
	}
}

/* A scan computes a person while the next SCAN_PREFETCH_AHEAD persons' bytes
 * are on their way from memory: a city's values are read once and mostly
 * missed in every cache and TLB, and the core's work for a settled person
 * (~300 ns) hides the wait (BENCH.md, issue 10). */
#define SCAN_PREFETCH_AHEAD 4u
#define PREFETCH_BYTES_MAX 256u /* a summary's usual size and more: its first cache lines */

/* Inlined where it is called: gcc 12 finds a function that only
 * prefetches free of side effects and drops the calls to it. */
static inline __attribute__((always_inline)) void prefetch_person(const struct store_person *p)
{
	const uint8_t *at = p->summary != NULL ? p->summary : p->timeline.runs;
	size_t size = p->summary != NULL ? p->summary_size : p->timeline.runs_size;
	size = size < PREFETCH_BYTES_MAX ? size : PREFETCH_BYTES_MAX;
	for (size_t off = 0; off < size; off += 64) {
		__builtin_prefetch(at + off);
	}
}

static void compute_scan(struct dispatch *d, struct store_txn *txn, const struct proto_compute *req, uint32_t msgid)
{
	struct dispatch_resume *r = d->resume;
	if (r != NULL && r->next > 0) { /* a later part: the page is known, its ids ascend */
		struct store_scan *scan = NULL;
		int open = txn != NULL ? store_scan_open(txn, NULL, 0, &scan) : lookup_unread(d);
		/* Each person is looked up SCAN_PREFETCH_AHEAD persons before it
		 * is computed, so that its summary is on its way meanwhile. */
		struct store_person ahead[SCAN_PREFETCH_AHEAD + 1];
		int ahead_rc[SCAN_PREFETCH_AHEAD + 1];
		for (uint32_t i = r->next, looked = r->next; i < r->count; i++) {
			if (part_full(d, i, r->count)) {
				break;
			}
			for (; looked < r->count && looked <= i + SCAN_PREFETCH_AHEAD; looked++) {
				uint32_t k = looked % (SCAN_PREFETCH_AHEAD + 1);
				const char *id = r->ids[looked - r->ids_from];
				ahead_rc[k] = open == STORE_OK ? store_scan_seek(scan, id, CORE_ID_SIZE, &ahead[k]) : open;
				if (ahead_rc[k] == STORE_OK) {
					prefetch_person(&ahead[k]);
				}
			}
			uint32_t k = i % (SCAN_PREFETCH_AHEAD + 1);
			compute_found(d, req, ahead_rc[k], &ahead[k], r->ids[i - r->ids_from], CORE_ID_SIZE, "scan", i);
		}
		store_scan_close(scan);
		if (!d->partial) {
			proto_write_results_next(d->writer, r->scan_full ? r->last : NULL, r->scan_full ? CORE_ID_SIZE : 0);
		}
		return;
	}
	/* A first part (or a whole answer) walks the page once, SCAN_BATCH
	 * persons at a time: read in a tight loop (their pages' misses overlap),
	 * then computed while still in the caches and the TLB. The results'
	 * count, known at the page's end, is set in the header last. When the
	 * part fills first, the rest of the page is only counted, its ids kept
	 * for the parts that follow: they look each up again (a person deleted
	 * since is not_found at its place), so that the answer has exactly the
	 * persons its header announced. */
	uint32_t limit = req->scan_limit;
	uint64_t summarized = d->summarized; /* as it was, should the answer turn into an error */
	struct store_scan *scan = NULL;
	int rc = txn != NULL ? store_scan_open(txn, req->scan_after, req->scan_after_size, &scan) : STORE_NOT_FOUND;
	size_t header = proto_write_compute_open(d->writer, msgid, limit, true);
	struct store_person *batch = d->batch;
	char last[CORE_ID_SIZE + 1] = { 0 };
	uint32_t read = 0; /* persons read: computed, in the batch, or kept */
	uint32_t from = 0; /* the index of batch[0] */
	uint32_t i = 0;
	for (;; i++) {
		if (i == read) {
			for (from = read; rc == STORE_OK && read < limit && read - from < SCAN_BATCH; read++) {
				if ((rc = store_scan_next(scan, &batch[read - from])) != STORE_OK) {
					break;
				}
			}
			if (i == read) {
				break;
			}
			for (uint32_t k = i; k < i + SCAN_PREFETCH_AHEAD && k < read; k++) {
				prefetch_person(&batch[k - from]);
			}
		}
		if (i + SCAN_PREFETCH_AHEAD < read) {
			prefetch_person(&batch[i + SCAN_PREFETCH_AHEAD - from]);
		}
		const struct store_person *p = &batch[i - from];
		memcpy(last, p->id, sizeof(last));
		if (r != NULL && part_full(d, i, limit)) {
			if ((r->ids = malloc(sizeof(*r->ids) * (limit - i))) != NULL) {
				break;
			}
			d->partial = false; /* out of memory: the rest of this answer in this part */
			r->next = 0;
			r = NULL;
		}
		compute_one(d, req, p->id, stored_class(p), &p->timeline, p->summary, p->summary_size, "scan", i);
	}
	if (d->partial) { /* the ids of the rest: those of the batch, then to the page's end */
		r->ids_from = i;
		for (uint32_t k = i; k < read; k++) {
			memcpy(r->ids[k - i], batch[k - from].id, CORE_ID_SIZE + 1);
		}
		struct store_person p;
		for (; rc == STORE_OK && read < limit && (rc = store_scan_next(scan, &p)) == STORE_OK; read++) {
			memcpy(r->ids[read - i], p.id, CORE_ID_SIZE + 1);
		}
		memcpy(last, r->ids[read - 1 - i], sizeof(last));
	}
	store_scan_close(scan);
	if (rc != STORE_OK && rc != STORE_NOT_FOUND) { /* nothing was sent: the answer is this error */
		d->partial = false;
		if (r != NULL) {
			r->next = 0;
		}
		proto_writer_reset(d->writer);
		d->summarized = summarized;
		write_error(d, msgid, PROTO_INTERNAL, "storage fault scanning persons", NULL);
		return;
	}
	bool full = read == limit;
	proto_write_results_count(d->writer, header, limit, read);
	if (d->partial) {
		r->count = read;
		r->scan_full = full;
		memcpy(r->last, last, sizeof(last));
		return;
	}
	proto_write_results_next(d->writer, full ? last : NULL, full ? CORE_ID_SIZE : 0);
}

static void handle_compute(struct dispatch *d, const struct proto_envelope *env, uint8_t method)
{
	struct proto_compute req;
	struct proto_pins pins;
	struct proto_error err;
	if (proto_compute_decode(env->params, method, &req, &err) != PROTO_OK) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	bool later = d->resume != NULL && d->resume->next > 0; /* a later part of an answer */
	struct core_policy_set set = policy_set(d);
	if (method == PROTO_HOUSING && core_policy_find(&set, req.city) == NULL) {
		proto_error_set(&err, PROTO_NOT_FOUND, "no policy for this city", "%06u", req.city);
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	/* policy_revisions after the other parameters (SPEC 3.4). */
	if (proto_pins_decode(env->params, &pins, &err) != PROTO_OK) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	/* Without a store every stored id is unknown and a scan page is empty. */
	struct store_txn *txn = NULL;
	if (d->store != NULL && (req.selector != PROTO_SELECT_PERSONS || pins.count > 0 ||
				 (d->resume != NULL && d->resume->next > 0)) &&
	    store_reader_begin(d->reader, &txn) != STORE_OK) {
		txn = NULL;
		if (!later) {
			write_error(d, env->msgid, PROTO_INTERNAL, "storage fault opening a read", NULL);
			return;
		}
		/* A later part cannot turn into an error: each person's is. */
	}
	if (view_open(d, txn, &pins, &err) != PROTO_OK) {
		view_close(d);
		store_txn_end(txn);
		if (!later) {
			proto_write_error(d->writer, env->msgid, &err);
		} else {
			d->partial = false; /* a later part: the answer cannot go on (frame_run closes) */
		}
		return;
	}
	if (method == PROTO_HOUSING) {
		view_mark(d, req.city);
	}
	if (d->resume != NULL) { /* a part: about part_bytes, passed by one person's answer */
		proto_writer_reserve(d->writer, d->part_bytes + d->part_bytes / 8);
	}
	if (req.selector == PROTO_SELECT_PERSONS) {
		compute_inline(d, &req, env->msgid);
	} else if (req.selector == PROTO_SELECT_IDS) {
		compute_ids(d, txn, &req, env->msgid);
	} else {
		compute_scan(d, txn, &req, env->msgid);
	}
	if (!d->partial && (later || !proto_writer_is_error(d->writer))) {
		proto_write_policies(d->writer, d->view_cities, d->view_revisions, d->view_used, d->view_count);
	}
	view_close(d);
	store_txn_end(txn);
}

static void handle_arrears(struct dispatch *d, const struct proto_envelope *env)
{
	handle_compute(d, env, PROTO_ARREARS);
}
static void handle_years(struct dispatch *d, const struct proto_envelope *env)
{
	handle_compute(d, env, PROTO_YEARS);
}
static void handle_retirement(struct dispatch *d, const struct proto_envelope *env)
{
	handle_compute(d, env, PROTO_RETIREMENT);
}
static void handle_housing(struct dispatch *d, const struct proto_envelope *env)
{
	handle_compute(d, env, PROTO_HOUSING);
}
static void handle_medical(struct dispatch *d, const struct proto_envelope *env)
{
	handle_compute(d, env, PROTO_MEDICAL);
}

/* ---- writing ---- */

enum write_outcome {
	WRITE_DONE = -1,     /* commit, record the answer under the idem key */
	WRITE_REJECTED = -2, /* the answer is an error: abandon the transaction */
	WRITE_UNCHANGED = -2, /* the answer is written and nothing changes: abandon it too */
	/* 0 and up: a store_rc a put met */
};

/* A write method's params, decoded (one member per method). */
struct write_request {
	struct proto_compute put;       /* person.put */
	struct proto_string id;         /* person.delete */
	struct proto_list items;        /* payment.apply */
	struct proto_withhold withhold; /* withhold.run */
	struct proto_pins pins;         /* withhold.run's policy_revisions */
	const struct core_policy *policy; /* policy.put */
};

/* One write method's body, run inside a write transaction; it writes the
 * whole response into d->writer. */
typedef int (*write_body)(struct dispatch *d, struct store_txn *txn, const struct proto_envelope *env,
			  const struct write_request *req);

static bool touch(struct dispatch *d, const char *id)
{
	if (d->touched_count == d->touched_capacity) {
		uint32_t capacity = d->touched_capacity == 0 ? 64 : d->touched_capacity * 2;
		void *p = realloc(d->touched, sizeof(*d->touched) * capacity);
		if (p == NULL) {
			return false;
		}
		d->touched = p;
		d->touched_capacity = capacity;
	}
	memcpy(d->touched[d->touched_count], id, CORE_ID_SIZE);
	d->touched[d->touched_count++][CORE_ID_SIZE] = '\0';
	return true;
}

/* Replays or refuses a repeated idem key; false when the request goes on. */
static bool idem_answered(struct dispatch *d, struct store_txn *txn, const struct proto_envelope *env,
			  const struct proto_string *idem, const uint8_t digest[PROTO_DIGEST_BYTES])
{
	struct store_idem seen;
	int rc = store_idem_get(txn, idem->ptr, idem->size, &seen);
	if (rc == STORE_NOT_FOUND) {
		return false;
	}
	if (rc != STORE_OK) {
		write_error(d, env->msgid, PROTO_INTERNAL, "storage fault reading the idempotency record", NULL);
	} else if (memcmp(seen.digest, digest, PROTO_DIGEST_BYTES) != 0) {
		write_error(d, env->msgid, PROTO_CONFLICT, "idempotency key reused with another payload", "idem");
	} else {
		proto_write_replay(d->writer, env->msgid, seen.answer, seen.answer_size);
	}
	return true;
}

/* The audit record and the idempotency record, in the same transaction. */
static int write_records(struct dispatch *d, struct store_txn *txn, const struct proto_envelope *env,
			 const struct proto_string *idem, const uint8_t digest[PROTO_DIGEST_BYTES])
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t time_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	proto_writer_reset(d->aux);
	if (d->audit_revision != 0) {
		proto_write_audit_policy(d->aux, time_ms, env->method,
					 env->method_size, d->audit_city, d->audit_revision);
	} else {
		proto_write_audit(d->aux, time_ms, env->method,
				  env->method_size, idem, (const char(*)[CORE_ID_SIZE + 1])d->touched,
				  d->touched_count);
	}
	size_t size;
	const uint8_t *record = proto_writer_data(d->aux, &size);
	int rc = record == NULL ? STORE_IO : store_audit_append(txn, record, size);
	if (rc == STORE_OK && idem->ptr != NULL) {
		const uint8_t *body = proto_writer_body(d->writer, &size);
		rc = body == NULL ? STORE_IO : store_idem_put(txn, idem->ptr, idem->size, digest, time_ms, body, size);
	}
	return rc;
}

/* Runs body in a write transaction that commits whole, or answers an error
 * with nothing written, or replays the idempotency record. Returns true
 * when it committed. */
static bool run_write(struct dispatch *d, const struct proto_envelope *env, const struct proto_string *idem,
		      write_body body, const struct write_request *req)
{
	uint8_t digest[PROTO_DIGEST_BYTES] = { 0 };
	if (idem->ptr != NULL && !proto_params_digest(env->params, env->method, env->method_size, digest)) {
		write_error(d, env->msgid, PROTO_INTERNAL, "out of memory: nothing was written", NULL);
		return false;
	}
	struct store_txn *txn;
	proto_writer_reset(d->writer);
	d->touched_count = 0;
	d->audit_revision = 0;
	int rc = store_write_begin(d->store, &txn);
	if (rc == STORE_OK) {
		if (idem->ptr != NULL && idem_answered(d, txn, env, idem, digest)) {
			store_txn_end(txn);
			return false;
		}
		int outcome = body(d, txn, env, req);
		if (outcome == WRITE_REJECTED) {
			store_txn_end(txn);
			return false;
		}
		if (outcome == WRITE_DONE) {
			outcome = write_records(d, txn, env, idem, digest);
		}
		/* Commit only a whole write; anything else abandons it. */
		if (outcome == STORE_OK) {
			rc = store_write_commit(txn);
		} else {
			store_txn_end(txn);
			rc = outcome;
		}
		if (rc == STORE_OK) {
			return true;
		}
	}
	proto_writer_reset(d->writer);
	write_error(d, env->msgid, PROTO_INTERNAL,
		    rc == STORE_FULL ? "storage full: nothing was written" : "storage fault: nothing was written", NULL);
	log_event("event=write_failed method=%.*s reason=%s", (int)env->method_size, env->method,
		  rc == STORE_FULL ? "storage_full" : "storage_fault");
	return false;
}

static bool store_required(struct dispatch *d, const struct proto_envelope *env)
{
	if (d->store == NULL) {
		write_error(d, env->msgid, PROTO_UNKNOWN_METHOD, "this method needs a store (eval --data DIR)", NULL);
		return false;
	}
	return true;
}

/* True when doc (canonical bytes) equals the stored revision r once both
 * are written the same way (a revision stored before `source` existed has
 * fewer fields, not another meaning). */
static bool policy_same(const struct store_revision *r, const uint8_t *doc, size_t size)
{
	if (r->doc_size == size && memcmp(r->doc, doc, size) == 0) {
		return true;
	}
	struct proto_error err;
	struct core_policy *q = proto_policy_from_doc(r->doc, r->doc_size, &err);
	struct proto_writer *w = q != NULL ? proto_writer_new() : NULL;
	bool same = false;
	if (w != NULL) {
		proto_write_policy_doc(w, q);
		size_t q_size;
		const uint8_t *q_doc = proto_writer_data(w, &q_size);
		same = q_doc != NULL && q_size == size && memcmp(q_doc, doc, size) == 0;
	}
	proto_writer_free(w);
	free(q);
	return same;
}

static int policy_put_body(struct dispatch *d, struct store_txn *txn, const struct proto_envelope *env,
			   const struct write_request *req)
{
	const struct core_policy *p = req->policy;
	/* The bound is checked in the transaction: threads may add cities at once. */
	uint64_t count;
	bool exists;
	int rc = store_policy_count(txn, p->city, &count, &exists);
	if (rc != STORE_OK) {
		return rc;
	}
	if (!exists && count >= DISPATCH_CITIES_MAX) {
		write_error(d, env->msgid, PROTO_TOO_LARGE, "too many city policies", "policy.city");
		return WRITE_REJECTED;
	}
	proto_writer_reset(d->aux);
	proto_write_policy_doc(d->aux, p);
	size_t size;
	const uint8_t *doc = proto_writer_data(d->aux, &size);
	if (doc == NULL) {
		return STORE_IO;
	}
	struct store_revision last;
	rc = store_revision_get(txn, p->city, 0, &last);
	if (rc != STORE_OK && rc != STORE_NOT_FOUND) {
		return rc;
	}
	if (rc == STORE_OK && policy_same(&last, doc, size)) {
		/* Equal to the latest: nothing is stored, no audit record. */
		proto_write_policy_put(d->writer, env->msgid, last.revision, &d->warnings);
		return WRITE_UNCHANGED;
	}
	uint32_t revision = rc == STORE_OK ? last.revision + 1 : 1;
	if (revision > POLICY_REVISIONS_MAX) {
		write_error(d, env->msgid, PROTO_TOO_LARGE, "this city has 4096 policy revisions, the most kept",
			    "policy.city");
		return WRITE_REJECTED;
	}
	rc = store_revision_put(txn, p->city, revision, now_ms(), doc, size);
	rc = rc == STORE_OK ? store_policy_put(txn, p->city, doc, size) : rc;
	if (rc != STORE_OK) {
		return rc;
	}
	d->put_revision = revision;
	d->audit_city = p->city;
	d->audit_revision = revision;
	proto_write_policy_put(d->writer, env->msgid, revision, &d->warnings);
	return WRITE_DONE;
}

/* policy.put without a store: the revisions live in memory. */
static void policy_put_memory(struct dispatch *d, const struct proto_envelope *env, struct core_policy *p)
{
	proto_writer_reset(d->aux);
	proto_write_policy_doc(d->aux, p);
	size_t size;
	const uint8_t *doc = proto_writer_data(d->aux, &size);
	const struct mem_revision *last = mem_find(d, p->city, 0);
	uint8_t *copy = doc == NULL ? NULL : malloc(size);
	if (last != NULL && last->doc_size == size && memcmp(last->doc, doc, size) == 0) {
		proto_write_policy_put(d->writer, env->msgid, last->revision, &d->warnings);
	} else if (d->mem_count == POLICY_MEMORY_REVISIONS_MAX) {
		write_error(d, env->msgid, PROTO_TOO_LARGE,
			    "eval without --data keeps at most 1024 policy revisions", "policy.city");
	} else if (copy == NULL) {
		write_error(d, env->msgid, PROTO_INTERNAL, "out of memory", NULL);
	} else {
		memcpy(copy, doc, size);
		uint32_t revision = last != NULL ? last->revision + 1 : 1;
		d->mem[d->mem_count++] = (struct mem_revision){ p->city, revision, now_ms(), copy, size };
		copy = NULL;
		bool installed = policy_install(d, p, revision); /* the room was checked */
		ASSERT(installed);
		p = NULL;
		proto_write_policy_put(d->writer, env->msgid, revision, &d->warnings);
	}
	free(copy);
	free(p);
}

static void handle_policy_put(struct dispatch *d, const struct proto_envelope *env)
{
	struct proto_error err;
	struct core_policy *p = proto_policy_decode(env->params, &err);
	if (p == NULL) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	proto_policy_warnings(env->params, &d->warnings);
	struct core_policy_set set = policy_set(d);
	if (core_policy_find(&set, p->city) == NULL && d->policy_count == DISPATCH_CITIES_MAX) {
		free(p);
		write_error(d, env->msgid, PROTO_TOO_LARGE, "too many city policies", "policy.city");
		return;
	}
	if (d->store == NULL) {
		policy_put_memory(d, env, p);
		return;
	}
	struct proto_string no_idem = { NULL, 0 };
	struct write_request req = { .policy = p };
	if (!run_write(d, env, &no_idem, policy_put_body, &req)) {
		free(p); /* an error, or a document equal to the latest */
		return;
	}
	bool installed = policy_install(d, p, d->put_revision); /* the room was checked above */
	ASSERT(installed);
	__atomic_fetch_add(&d->shared->policy_generation, 1, __ATOMIC_RELEASE); /* other threads reload */
}

/* Stores a person's sorted slots with their summary under the latest
 * policies, in the write's transaction. */
static int person_store(struct dispatch *d, struct store_txn *txn, const char *id, int retire_class,
			const struct core_slot *slots, uint32_t slot_count)
{
	struct core_policy_set set = { (const struct core_policy *const *)d->policies, d->policy_count };
	return summarizer_put(&d->summarizer, txn, id, retire_class, &set, d->policy_revisions, slots, slot_count);
}

static int person_put_body(struct dispatch *d, struct store_txn *txn, const struct proto_envelope *env,
			   const struct write_request *w)
{
	struct proto_compute put = w->put; /* a retry of the body decodes again from the start */
	struct proto_compute *req = &put;
	proto_write_results_begin(d->writer, env->msgid, req->person_count, false);
	for (uint32_t i = 0; i < req->person_count; i++) {
		const char *id;
		size_t id_size;
		struct proto_error err;
		struct proto_person person;
		if (proto_person_decode(req, i, &d->person_buf, &person, &id, &id_size, &err) != PROTO_OK) {
			proto_write_person_error(d->writer, id, id_size, &err);
			continue;
		}
		core_slots_sort(person.slots, person.slot_count);
		int rc = person_store(d, txn, person.id, person.class_given ? person.class_ : -1, person.slots,
				      person.slot_count);
		if (rc != STORE_OK) {
			return rc;
		}
		if (!touch(d, person.id)) {
			return STORE_IO;
		}
		proto_write_put_ok(d->writer, person.id);
	}
	return WRITE_DONE;
}

static void handle_person_get(struct dispatch *d, const struct proto_envelope *env)
{
	struct proto_string id;
	struct proto_error err;
	if (proto_id_decode(env->params, &id, &err) != PROTO_OK) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	if (!store_required(d, env)) {
		return;
	}
	struct store_txn *txn;
	struct store_person p;
	int rc = store_reader_begin(d->reader, &txn);
	if (rc == STORE_OK) {
		rc = store_person_get(txn, id.ptr, id.size, &p);
		if (rc == STORE_OK && !proto_write_person(d->writer, env->msgid, p.id, p.retire_class, &p.timeline)) {
			rc = STORE_IO;
		}
		store_txn_end(txn);
	}
	if (rc != STORE_OK) {
		proto_writer_reset(d->writer);
		write_error(d, env->msgid, rc == STORE_NOT_FOUND ? PROTO_NOT_FOUND : PROTO_INTERNAL,
			    rc == STORE_NOT_FOUND ? "no such person" : "storage fault reading the person", "id");
	}
}

/* audit.read collects a page's records in its read transaction, then writes them. */
struct audit_page {
	struct { uint64_t seq; const uint8_t *record; size_t size; } *entries;
	uint32_t count;
	uint32_t limit;
	size_t bytes;
};

static int audit_page_add(void *ctx, uint64_t seq, const uint8_t *record, size_t size)
{
	struct audit_page *page = ctx;
	if (page->count == page->limit || page->bytes >= PROTO_AUDIT_PAGE_BYTES) {
		return -1; /* full: stop */
	}
	page->entries[page->count].seq = seq;
	page->entries[page->count].record = record;
	page->entries[page->count].size = size;
	page->count++;
	page->bytes += size;
	return 0;
}

/* audit.read {after, limit}: records with seq > after, ascending; next is
 * the last seq returned when the page is full (limit records, or
 * PROTO_AUDIT_PAGE_BYTES), else nil, as scan's next (SPEC §5.1). */
static void handle_audit_read(struct dispatch *d, const struct proto_envelope *env)
{
	uint64_t after;
	struct audit_page page = { 0 };
	struct proto_error err;
	if (proto_audit_read_decode(env->params, &after, &page.limit, &err) != PROTO_OK) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	if (!store_required(d, env)) {
		return;
	}
	page.entries = calloc(page.limit, sizeof(*page.entries));
	struct store_txn *txn;
	int rc = page.entries == NULL ? STORE_IO : store_reader_begin(d->reader, &txn);
	if (rc == STORE_OK) {
		rc = store_audit_each(txn, after, audit_page_add, &page);
		bool full = rc == -1;
		rc = full ? STORE_OK : rc;
		proto_write_audit_page_begin(d->writer, env->msgid, page.count);
		for (uint32_t i = 0; rc == STORE_OK && i < page.count; i++) {
			if (!proto_write_audit_entry(d->writer, page.entries[i].seq, page.entries[i].record,
						     page.entries[i].size)) {
				rc = STORE_IO;
			}
		}
		full |= page.count == page.limit;
		proto_write_audit_page_end(d->writer, full && page.count > 0,
					   page.count > 0 ? page.entries[page.count - 1].seq : 0);
		store_txn_end(txn);
	}
	free(page.entries);
	if (rc != STORE_OK) {
		proto_writer_reset(d->writer);
		write_error(d, env->msgid, PROTO_INTERNAL, "storage fault reading the audit log", NULL);
	}
}

static int person_delete_body(struct dispatch *d, struct store_txn *txn, const struct proto_envelope *env,
			      const struct write_request *w)
{
	const struct proto_string *id = &w->id;
	int rc = store_person_delete(txn, id->ptr, id->size);
	if (rc == STORE_NOT_FOUND) {
		write_error(d, env->msgid, PROTO_NOT_FOUND, "no such person", "id");
		return WRITE_REJECTED;
	}
	if (rc != STORE_OK) {
		return rc;
	}
	if (!touch(d, id->ptr)) {
		return STORE_IO;
	}
	proto_write_ok(d->writer, env->msgid);
	return WRITE_DONE;
}

/* Decodes a stored person into d->slots for changing it. */
static int stored_slots(struct dispatch *d, const struct store_person *p)
{
	if (!scratch_reserve(d, p->timeline.slot_count)) {
		return STORE_IO;
	}
	struct core_timeline_iter it;
	const struct core_slot *s;
	uint32_t n = 0;
	core_timeline_iter_init(&it, &p->timeline);
	while ((s = core_timeline_next(&it)) != NULL) {
		d->slots[n++] = *s;
	}
	return it.corrupt ? STORE_IO : STORE_OK;
}

/* R13: the payment would carry its slot's paid past CORE_MONEY_MAX. */
static int paid_cap_error(struct proto_error *err, const struct core_slot *slots, uint32_t slot_count,
			  const struct proto_payment *pay, uint32_t i)
{
	int64_t paid = 0;
	for (uint32_t k = 0; k < slot_count; k++) {
		const struct core_slot *s = &slots[k];
		if (s->month == pay->month && s->city == pay->city && s->type == pay->type) {
			paid = s->paid_fen;
		}
	}
	char expected[96];
	char found[24];
	snprintf(expected, sizeof(expected), "at most %" PRId64 " fen, what keeps the slot's paid within %lld fen",
		 (int64_t)(CORE_MONEY_MAX - paid), CORE_MONEY_MAX);
	snprintf(found, sizeof(found), "%" PRId64, pay->amount_fen);
	return proto_invalid_text(err, "amount", expected, found, "items[%u].amount", i);
}

static int payment_item(struct dispatch *d, struct store_txn *txn, const struct proto_list *items, uint32_t i)
{
	struct proto_payment pay;
	struct proto_error err;
	struct store_person p;
	int rc = PROTO_OK;
	if (proto_payment_item(items, i, &pay, &err) != PROTO_OK) {
		proto_write_item_result(d->writer, &err);
		return STORE_OK;
	}
	int found = proto_id_check(pay.id.ptr, pay.id.size, &err, "items[%u].id", i) == PROTO_OK
			    ? store_person_get(txn, pay.id.ptr, pay.id.size, &p)
			    : -1;
	if (found < 0) {
		rc = PROTO_INVALID_ARGUMENT; /* err says why */
	} else if (found == STORE_NOT_FOUND) {
		rc = proto_error_set(&err, PROTO_NOT_FOUND, "no such person", "items[%u].id", i);
	} else if (found != STORE_OK || stored_slots(d, &p) != STORE_OK) {
		return STORE_IO;
	} else {
		uint32_t n = p.timeline.slot_count;
		int applied = core_payment_apply(d->slots, n, pay.month, pay.city, pay.type, pay.amount_fen, pay.date);
		if (applied == CORE_ERR_NO_SLOT) {
			rc = proto_error_set(&err, PROTO_NOT_FOUND, "no such slot", "items[%u]", i);
		} else if (applied == CORE_ERR_DEEMED) {
			rc = proto_invalid_text(&err, "item", "a payment into a slot that is not deemed", "a deemed slot",
						"items[%u]", i);
		} else if (applied == CORE_ERR_OVERFLOW) {
			rc = paid_cap_error(&err, d->slots, n, &pay, i);
		} else {
			int put = person_store(d, txn, p.id, p.retire_class, d->slots, n);
			if (put != STORE_OK) {
				return put;
			}
			if (!touch(d, p.id)) {
				return STORE_IO;
			}
		}
	}
	proto_write_item_result(d->writer, rc == PROTO_OK ? NULL : &err);
	return STORE_OK;
}

static int withhold_account(struct dispatch *d, struct store_txn *txn, const struct proto_withhold *req, uint32_t i)
{
	struct proto_string id;
	int64_t balance;
	struct proto_error err;
	struct store_person p;
	if (proto_withhold_account(req, i, &id, &balance, &err) != PROTO_OK) {
		proto_write_person_error(d->writer, id.ptr, id.size, &err);
		return STORE_OK;
	}
	if (proto_id_check(id.ptr, id.size, &err, "accounts[%u].id", i) != PROTO_OK) {
		proto_write_person_error(d->writer, id.ptr, id.size, &err);
		return STORE_OK;
	}
	int rc = store_person_get(txn, id.ptr, id.size, &p);
	if (rc == STORE_NOT_FOUND) {
		proto_error_set(&err, PROTO_NOT_FOUND, "no such person", "accounts[%u].id", i);
		proto_write_person_error(d->writer, id.ptr, id.size, &err);
		return STORE_OK;
	}
	if (rc != STORE_OK || stored_slots(d, &p) != STORE_OK) {
		return STORE_IO;
	}
	struct core_policy_set set = view_set(d);
	uint32_t n = p.timeline.slot_count;
	struct core_timeline plain = { .slots = d->slots, .slot_count = n };
	view_mark_timeline(d, &plain);
	uint32_t bad;
	rc = core_person_resolve(&set, &plain, &bad);
	if (rc != CORE_OK) {
		if (rc == CORE_ERR_NO_POLICY) {
			proto_error_set(&err, PROTO_NOT_FOUND, "no policy for this city", "%06u", d->slots[bad].city);
		} else {
			no_period_error(&err, &set, &d->slots[bad], "accounts", i, bad);
		}
		proto_write_person_error(d->writer, p.id, CORE_ID_SIZE, &err);
		return STORE_OK;
	}
	uint32_t line_count;
	core_withhold_run(&set, d->slots, n, req->month, req->date, &balance, d->lines, &line_count);
	bool paid = false;
	for (uint32_t k = 0; k < line_count; k++) {
		paid |= d->lines[k].paid;
	}
	if (paid) {
		rc = person_store(d, txn, p.id, p.retire_class, d->slots, n);
		if (rc != STORE_OK) {
			return rc;
		}
		if (!touch(d, p.id)) {
			return STORE_IO;
		}
	}
	proto_write_withhold(d->writer, p.id, d->lines, line_count, balance);
	return STORE_OK;
}

/* Writes answering one result per entry (payment items, withholding accounts). */
static int payment_body(struct dispatch *d, struct store_txn *txn, const struct proto_envelope *env,
			const struct write_request *w)
{
	proto_write_results_begin(d->writer, env->msgid, w->items.count, false);
	for (uint32_t i = 0; i < w->items.count; i++) {
		int rc = payment_item(d, txn, &w->items, i);
		if (rc != STORE_OK) {
			return rc;
		}
	}
	return WRITE_DONE;
}

static int withhold_body(struct dispatch *d, struct store_txn *txn, const struct proto_envelope *env,
			 const struct write_request *w)
{
	struct proto_error err;
	d->resume = NULL; /* a write is answered whole */
	if (view_open(d, txn, &w->pins, &err) != PROTO_OK) {
		view_close(d);
		if (err.code == PROTO_INTERNAL) {
			return STORE_IO;
		}
		proto_write_error(d->writer, env->msgid, &err);
		return WRITE_REJECTED;
	}
	proto_write_compute_begin(d->writer, env->msgid, w->withhold.accounts.count, false);
	for (uint32_t i = 0; i < w->withhold.accounts.count; i++) {
		int rc = withhold_account(d, txn, &w->withhold, i);
		if (rc != STORE_OK) {
			view_close(d);
			return rc;
		}
	}
	proto_write_policies(d->writer, d->view_cities, d->view_revisions, d->view_used, d->view_count);
	view_close(d);
	return WRITE_DONE;
}

static int decode_put(const struct proto_params *params, struct write_request *w, struct proto_error *err)
{
	return proto_put_decode(params, &w->put, err);
}
static int decode_delete(const struct proto_params *params, struct write_request *w, struct proto_error *err)
{
	return proto_id_decode(params, &w->id, err);
}
static int decode_payment(const struct proto_params *params, struct write_request *w, struct proto_error *err)
{
	return proto_payment_decode(params, &w->items, err);
}
static int decode_withhold(const struct proto_params *params, struct write_request *w, struct proto_error *err)
{
	int rc = proto_withhold_decode(params, &w->withhold, err);
	return rc == PROTO_OK ? proto_pins_decode(params, &w->pins, err) : rc;
}

/* The stored writes: decode, then the idempotency key (a required one
 * first), then the body in one transaction under the key (run_write). */
struct write_method {
	int (*decode)(const struct proto_params *params, struct write_request *w, struct proto_error *err);
	write_body body;
	bool idem_required;
};

static const struct write_method write_put = { decode_put, person_put_body, false };
static const struct write_method write_delete = { decode_delete, person_delete_body, false };
static const struct write_method write_payment = { decode_payment, payment_body, true };
static const struct write_method write_withhold = { decode_withhold, withhold_body, true };

static void handle_write(struct dispatch *d, const struct proto_envelope *env, const struct write_method *m)
{
	struct write_request w;
	struct proto_string idem;
	struct proto_error err;
	int rc = m->idem_required ? proto_idem_decode(env->params, true, &idem, &err) : PROTO_OK;
	rc = rc == PROTO_OK ? m->decode(env->params, &w, &err) : rc;
	rc = rc == PROTO_OK && !m->idem_required ? proto_idem_decode(env->params, false, &idem, &err) : rc;
	if (rc != PROTO_OK) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	if (store_required(d, env)) {
		run_write(d, env, &idem, m->body, &w);
	}
}

static void handle_auth(struct dispatch *d, const struct proto_envelope *env)
{
	struct proto_string token;
	struct proto_error err;
	if (proto_token_decode(env->params, &token, &err) != PROTO_OK) {
		proto_write_error(d->writer, env->msgid, &err);
		return;
	}
	const struct dispatch_shared *sh = d->shared;
	if (sh->token != NULL) {
		/* Constant time in the token's bytes: no early exit on the first difference. */
		uint8_t diff = token.size != sh->token_size;
		for (size_t i = 0; i < sh->token_size; i++) {
			diff |= (uint8_t)(sh->token[i] ^ (i < token.size ? token.ptr[i] : 0));
		}
		if (diff != 0) {
			write_error(d, env->msgid, PROTO_UNAUTHORIZED, "wrong token", "token");
			return;
		}
	}
	if (d->session != NULL) {
		d->session->authed = true;
	}
	proto_write_ok(d->writer, env->msgid);
}

static void handle_stats(struct dispatch *d, const struct proto_envelope *env);

enum method_kind {
	RUN_INLINE,   /* cheap: on the event loop */
	RUN_BY_SIZE,  /* on the loop unless it carries many persons */
	RUN_DEFERRED, /* writes wait for the disk: never on the loop */
};

static const struct {
	const char *name;
	void (*handle)(struct dispatch *d, const struct proto_envelope *env); /* NULL: a stored write */
	uint8_t kind;
	const struct write_method *write;
} methods[] = {
	{ "ping", handle_ping, RUN_INLINE, NULL },
	{ "auth", handle_auth, RUN_INLINE, NULL },
	{ "server.stats", handle_stats, RUN_INLINE, NULL },
	{ "policy.put", handle_policy_put, RUN_DEFERRED, NULL },
	{ "policy.get", handle_policy_get, RUN_INLINE, NULL },
	{ "policy.history", handle_policy_history, RUN_DEFERRED, NULL }, /* decodes every revision */
	{ "audit.read", handle_audit_read, RUN_DEFERRED, NULL }, /* a page may be megabytes: off the loop */
	{ "person.put", NULL, RUN_DEFERRED, &write_put },
	{ "person.get", handle_person_get, RUN_INLINE, NULL },
	{ "person.delete", NULL, RUN_DEFERRED, &write_delete },
	{ "payment.apply", NULL, RUN_DEFERRED, &write_payment },
	{ "withhold.run", NULL, RUN_DEFERRED, &write_withhold },
	{ "arrears.compute", handle_arrears, RUN_BY_SIZE, NULL },
	{ "years.compute", handle_years, RUN_BY_SIZE, NULL },
	{ "retirement.check", handle_retirement, RUN_BY_SIZE, NULL },
	{ "housing.check", handle_housing, RUN_BY_SIZE, NULL },
	{ "medical.status", handle_medical, RUN_BY_SIZE, NULL },
};
#define METHOD_COUNT (sizeof(methods) / sizeof(methods[0]))
_Static_assert(METHOD_COUNT < STATS_METHODS_MAX, "a stats row per method and one for unknown");
_Static_assert(PROTO_INTERNAL < STATS_CODES, "a stats column per error code");

const char *dispatch_method_name(uint32_t row)
{
	return row < METHOD_COUNT ? methods[row].name : NULL;
}

static void handle_stats(struct dispatch *d, const struct proto_envelope *env)
{
	struct proto_stats_method rows[METHOD_COUNT];
	struct proto_stats st = { .method_count = METHOD_COUNT, .methods = rows };
	const struct stats *s = d->shared->stats;
	for (uint32_t i = 0; i < METHOD_COUNT; i++) {
		rows[i] = (struct proto_stats_method){ .name = methods[i].name };
		if (s != NULL) {
			rows[i].requests = atomic_load(&s->requests[i]);
			rows[i].errors = atomic_load(&s->errors[i]);
			rows[i].p50_us = stats_latency_us(s, i, 0.50);
			rows[i].p99_us = stats_latency_us(s, i, 0.99);
			rows[i].p999_us = stats_latency_us(s, i, 0.999);
		}
	}
	if (s != NULL) {
		st.uptime_s = (uint64_t)(stats_now_ns() - s->started_ns) / 1000000000u;
		for (int code = PROTO_MALFORMED; code <= PROTO_INTERNAL; code++) {
			st.errors_by_code[code] = stats_errors_of_code(s, code);
		}
		st.person_errors = atomic_load(&s->person_errors);
		st.persons_summarized = atomic_load(&s->persons_summarized);
		st.connections_open = atomic_load(&s->connections_open);
		st.connections_total = atomic_load(&s->connections_total);
		st.connections_refused = atomic_load(&s->connections_refused);
	}
	struct store_stats ss = { 0 };
	if (d->store != NULL) {
		store_stats(d->store, &ss);
	}
	st.persons = ss.persons;
	st.audit_records = ss.audit_records;
	st.bytes_used = ss.bytes_used;
	st.map_bytes = ss.map_bytes;
	proto_write_stats(d->writer, env->msgid, &st);
}

/* Checks that hold before any method runs: auth, and the request size limit. */
static bool admitted(struct dispatch *d, const struct proto_envelope *env, uint32_t method)
{
	const struct dispatch_shared *sh = d->shared;
	bool open_method = method < METHOD_COUNT && (methods[method].handle == handle_ping ||
						     methods[method].handle == handle_auth);
	if (sh->token != NULL && d->session != NULL && !d->session->authed && !open_method) {
		write_error(d, env->msgid, PROTO_UNAUTHORIZED, "send auth with the token first", NULL);
		return false;
	}
	/* Over PROTO_PERSONS_MAX the method's own decoding answers, with its path. */
	const char *list;
	uint32_t size = proto_params_list_size(env->params, &list);
	uint32_t weight = proto_params_weight(env->params); /* a scan's limit counts too */
	if (method < METHOD_COUNT && weight > sh->persons_max && weight <= PROTO_PERSONS_MAX) {
		write_error(d, env->msgid, PROTO_TOO_LARGE, "more persons than this server takes in one request",
			    weight > size ? "scan.limit" : list);
		return false;
	}
	return true;
}

static uint32_t method_find(const struct proto_envelope *env)
{
	uint32_t i = 0;
	while (i < METHOD_COUNT && !(strlen(methods[i].name) == env->method_size &&
				     memcmp(methods[i].name, env->method, env->method_size) == 0)) {
		i++;
	}
	return i;
}

static bool runs_elsewhere(const struct proto_envelope *env, uint32_t method)
{
	return method < METHOD_COUNT &&
	       (methods[method].kind == RUN_DEFERRED ||
		(methods[method].kind == RUN_BY_SIZE && proto_params_weight(env->params) > DISPATCH_INLINE_WEIGHT));
}

static void frame_run(struct dispatch *d, struct dispatch_session *session, uint8_t mode, const uint8_t *frame,
		      size_t frame_size, const uint8_t **response, size_t *response_size, struct dispatch_outcome *out)
{
	struct proto_envelope env = { 0 };
	struct proto_error err;
	bool with_header = d->resume == NULL || d->resume->next == 0; /* a first part, or a whole answer */
	proto_writer_reset(d->writer);
	d->session = session;
	*out = (struct dispatch_outcome){ .method = STATS_METHODS_MAX - 1 };
	bool broken = false; /* a later part that cannot go on (it must not turn into an error message) */
	if (proto_message_parse(d->message, frame, frame_size, &env, &err) != PROTO_OK) {
		proto_write_error(d->writer, env.msgid, &err);
		out->code = (uint8_t)err.code;
		out->close = true;
		broken = !with_header;
	} else {
		uint32_t method = method_find(&env);
		out->msgid = env.msgid;
		out->method = method < METHOD_COUNT ? method : STATS_METHODS_MAX - 1;
		bool stale = d->store != NULL &&
			     d->policy_generation != __atomic_load_n(&d->shared->policy_generation, __ATOMIC_ACQUIRE);
		if (stale && !policies_reload(d)) {
			write_error(d, env.msgid, PROTO_INTERNAL, "stored policies do not load", NULL);
			broken = !with_header;
		} else if (!proto_utf8_valid(env.method, env.method_size)) {
			proto_invalid_text(&err, "method", "a UTF-8 string", "a string that is not UTF-8", "method");
			proto_write_error(d->writer, env.msgid, &err);
		} else if (!admitted(d, &env, method)) {
			/* the error is written */
		} else if (mode == DISPATCH_INLINE && runs_elsewhere(&env, method)) {
			out->deferred = true;
		} else if (method < METHOD_COUNT && methods[method].write != NULL) {
			handle_write(d, &env, methods[method].write);
		} else if (method < METHOD_COUNT) {
			methods[method].handle(d, &env);
		} else {
			write_error(d, env.msgid, PROTO_UNKNOWN_METHOD, "unknown method", NULL);
		}
		/* A later part of an answer has no header: an answer in parts never is an error. */
		out->error = with_header && proto_writer_is_error(d->writer);
		out->code = out->error ? (uint8_t)proto_writer_error_code(d->writer) : 0;
		uint32_t person_errors = proto_writer_person_errors(d->writer);
		if (person_errors > 0 && d->shared->stats != NULL) {
			atomic_fetch_add_explicit(&d->shared->stats->person_errors, person_errors, memory_order_relaxed);
		}
		if (d->summarized > 0 && d->shared->stats != NULL) {
			atomic_fetch_add_explicit(&d->shared->stats->persons_summarized, d->summarized,
						  memory_order_relaxed);
		}
		d->summarized = 0;
		if (env.kind == PROTO_KIND_NOTIFICATION) {
			proto_writer_reset(d->writer);
		}
	}
	*response = broken ? NULL : proto_writer_data(d->writer, response_size);
	/* A deferral writes nothing: a writer that never held bytes (new, or
	 * just taken) gives NULL then, which is no failure. */
	bool failed = *response == NULL && !out->deferred;
	if (failed && with_header) {
		proto_writer_reset(d->writer);
		write_error(d, env.msgid, PROTO_INTERNAL, "out of memory writing the response", NULL);
		*response = proto_writer_data(d->writer, response_size);
		out->error = true;
		out->code = PROTO_INTERNAL;
		d->partial = false;
	}
	if (failed && *response == NULL) {
		/* Not even an error fits, or a later part of an answer failed: the
		 * request cannot be answered, so the connection closes. */
		*response_size = 0;
		out->close = true;
		d->partial = false;
	}
	out->error |= out->close;
	out->code = out->error && out->code == 0 ? PROTO_INTERNAL : out->code; /* closed unanswered */
	out->partial = d->partial;
}

void dispatch_frame(struct dispatch *d, struct dispatch_session *session, uint8_t mode, const uint8_t *frame,
		    size_t frame_size, const uint8_t **response, size_t *response_size, struct dispatch_outcome *out)
{
	d->part_bytes = SIZE_MAX;
	d->resume = NULL;
	d->partial = false;
	frame_run(d, session, mode, frame, frame_size, response, response_size, out);
}

void dispatch_frame_part(struct dispatch *d, struct dispatch_session *session, const uint8_t *frame,
			 size_t frame_size, size_t part_bytes, struct dispatch_resume *resume, const uint8_t **response,
			 size_t *response_size, struct dispatch_outcome *out)
{
	d->part_bytes = part_bytes;
	d->resume = resume;
	d->partial = false;
	frame_run(d, session, DISPATCH_ALL, frame, frame_size, response, response_size, out);
	ASSERT(!out->partial || (resume->next > 0 && !out->error));
}

void dispatch_resume_free(struct dispatch_resume *resume)
{
	free(resume->ids);
	free(resume->view_cities);
	*resume = (struct dispatch_resume){ 0 };
}

void dispatch_trim(struct dispatch *d)
{
	proto_message_trim(d->message);
#ifndef __SANITIZE_ADDRESS__ /* ASan's allocator is not glibc's: trimming its arenas aborts at thread exit */
	malloc_trim(0);
#endif
}

uint8_t *dispatch_take_response(struct dispatch *d, size_t *size)
{
	return proto_writer_take(d->writer, size);
}

void dispatch_reject(struct dispatch *d, uint32_t msgid, int code, const char *message, const uint8_t **response,
		     size_t *response_size)
{
	proto_writer_reset(d->writer);
	write_error(d, msgid, code, message, NULL);
	*response = proto_writer_data(d->writer, response_size);
	if (*response == NULL) {
		*response_size = 0; /* out of memory: the caller closes instead */
	}
}

int dispatch_audit_batch(struct store_txn *txn, const char *method, uint64_t person_count)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct proto_writer *w = proto_writer_new();
	if (w == NULL) {
		return STORE_IO;
	}
	proto_write_audit_batch(w, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, method, person_count);
	size_t size;
	const uint8_t *record = proto_writer_data(w, &size);
	int rc = record == NULL ? STORE_IO : store_audit_append(txn, record, size);
	proto_writer_free(w);
	return rc;
}
