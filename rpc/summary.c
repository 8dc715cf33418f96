/* Settled-part summaries: made with each write, rebuilt by a walk. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../proto/proto.h"
#include "background.h"
#include "log.h"
#include "summary.h"

void summarizer_free(struct summarizer *s)
{
	free(s->scratch.slots);
	free(s->scratch.duplicates);
	free(s->scratch.cities);
	free(s->out);
	free(s->runs);
	free(s->run_list);
	memset(s, 0, sizeof(*s));
}

/* A buffer of at least need bytes (its contents need not survive). */
static bool bytes_reserve(uint8_t **buf, size_t *size, size_t need)
{
	if (need <= *size) {
		return true;
	}
	uint8_t *grown = realloc(*buf, need);
	if (grown == NULL) {
		return false;
	}
	*buf = grown;
	*size = need;
	return true;
}

static bool summarizer_reserve(struct summarizer *s, uint32_t slot_count)
{
	if (slot_count > s->scratch.capacity) {
		struct core_slot *slots = realloc(s->scratch.slots, sizeof(*slots) * slot_count);
		s->scratch.slots = slots != NULL ? slots : s->scratch.slots;
		struct core_duplicate *dups = realloc(s->scratch.duplicates, sizeof(*dups) * slot_count);
		s->scratch.duplicates = dups != NULL ? dups : s->scratch.duplicates;
		uint32_t *cities = realloc(s->scratch.cities, sizeof(*cities) * slot_count);
		s->scratch.cities = cities != NULL ? cities : s->scratch.cities;
		struct core_run *run_list = realloc(s->run_list, sizeof(*run_list) * slot_count);
		s->run_list = run_list != NULL ? run_list : s->run_list;
		if (slots == NULL || dups == NULL || cities == NULL || run_list == NULL) {
			return false;
		}
		s->scratch.capacity = slot_count;
	}
	return bytes_reserve(&s->out, &s->out_size, core_summary_size_max(slot_count)) &&
	       bytes_reserve(&s->runs, &s->runs_size, core_timeline_encode_max(slot_count));
}

const uint8_t *summarizer_make(struct summarizer *s, const struct core_policy_set *set, const uint32_t *revisions,
			       const struct core_timeline *tl, size_t *size)
{
	*size = 0;
	if (!summarizer_reserve(s, tl->slot_count)) {
		return NULL;
	}
	/* The build reads the timeline several times (R1, settled part, years, each city's
	 * housing): decoded once. */
	struct core_timeline decoded = *tl;
	if (tl->runs != NULL) {
		int64_t count = core_timeline_decode(tl, s->run_list, tl->slot_count);
		if (count < 0) {
			return NULL;
		}
		decoded = (struct core_timeline){ .slot_count = tl->slot_count, .run_list = s->run_list,
						  .run_count = (uint32_t)count };
	}
	*size = core_summary_build(set, revisions, &decoded, &s->scratch, s->out, s->out_size);
	return *size > 0 ? s->out : NULL;
}

int summarizer_put(struct summarizer *s, struct store_txn *txn, const char *id, int retire_class,
		   const struct core_policy_set *set, const uint32_t *revisions, const struct core_slot *slots,
		   uint32_t slot_count)
{
	if (!summarizer_reserve(s, slot_count)) {
		return STORE_IO; /* out of memory: the write fails whole */
	}
	/* Encoded once, for the store and for the rules, which go run by run (a plain
	 * array would read as runs of one month). */
	struct core_timeline tl = { .slot_count = slot_count, .runs = s->runs,
				    .runs_size = core_timeline_encode(slots, slot_count, s->runs, s->runs_size) };
	ASSERT(tl.runs_size > 0);
	size_t size;
	const uint8_t *summary = summarizer_make(s, set, revisions, &tl, &size);
	return store_person_put(txn, id, retire_class, tl.runs, tl.runs_size, summary, size);
}

bool summary_current(const struct core_summary *summary, const struct core_policy_set *set, const uint32_t *revisions)
{
	uint32_t j = 0;
	for (uint32_t i = 0; i < summary->city_count; i++) {
		uint32_t city;
		uint32_t revision;
		core_summary_city(summary, i, &city, &revision);
		while (j < set->count && set->items[j]->city < city) { /* both ascend */
			j++;
		}
		if (j == set->count || set->items[j]->city != city || revisions[j] != revision) {
			return false;
		}
	}
	return true;
}

void summary_policies_free(struct summary_policies *p)
{
	for (uint32_t i = 0; i < p->count; i++) {
		free(p->items[i]);
	}
	free(p->items);
	free(p->revisions);
	memset(p, 0, sizeof(*p));
}

struct policies_load {
	struct store_txn *txn;
	struct summary_policies *out;
	uint32_t capacity;
};

static int policy_load(void *ctx, uint32_t city, const uint8_t *doc, size_t size)
{
	struct policies_load *l = ctx;
	struct summary_policies *p = l->out;
	if (p->count == l->capacity) {
		uint32_t capacity = l->capacity * 2 + 8;
		struct core_policy **items = realloc(p->items, sizeof(*items) * capacity);
		p->items = items != NULL ? items : p->items;
		uint32_t *revisions = realloc(p->revisions, sizeof(*revisions) * capacity);
		p->revisions = revisions != NULL ? revisions : p->revisions;
		if (items == NULL || revisions == NULL) {
			return STORE_IO;
		}
		l->capacity = capacity;
	}
	struct store_revision r;
	struct proto_error err;
	struct core_policy *policy = proto_policy_from_doc(doc, size, &err);
	if (policy == NULL || store_revision_get(l->txn, city, 0, &r) != STORE_OK) {
		free(policy);
		return STORE_IO;
	}
	p->items[p->count] = policy;
	p->revisions[p->count++] = r.revision;
	return STORE_OK;
}

int summary_policies_load(struct store *store, struct summary_policies *out)
{
	memset(out, 0, sizeof(*out));
	struct store_txn *txn;
	int rc = store_read_begin(store, &txn);
	if (rc != STORE_OK) {
		return rc;
	}
	struct policies_load l = { txn, out, 0 };
	rc = store_policy_each(txn, policy_load, &l); /* by city ascending, as a policy set wants */
	store_txn_end(txn);
	if (rc != STORE_OK) {
		summary_policies_free(out);
	}
	return rc;
}

int summary_bulk_open(struct summary_bulk *b, struct store *store)
{
	memset(&b->summarizer, 0, sizeof(b->summarizer));
	return summary_policies_load(store, &b->policies);
}

int summary_bulk_put(struct summary_bulk *b, struct store_txn *txn, const char *id, int retire_class,
		     const struct core_slot *slots, uint32_t slot_count)
{
	struct core_policy_set set = { (const struct core_policy *const *)b->policies.items, b->policies.count };
	return summarizer_put(&b->summarizer, txn, id, retire_class, &set, b->policies.revisions, slots, slot_count);
}

void summary_bulk_close(struct summary_bulk *b)
{
	summarizer_free(&b->summarizer);
	summary_policies_free(&b->policies);
}

struct walk_state {
	char resume[CORE_ID_SIZE];
	bool started;
	bool done;
	uint64_t rebuilt;
};

static bool person_current(const struct store_person *p, const struct core_policy_set *set,
			   const uint32_t *revisions)
{
	struct core_summary summary;
	return p->summary != NULL && core_summary_read(p->summary, p->summary_size, &summary) &&
	       summary_current(&summary, set, revisions);
}

/* Moves the walk past persons whose summary is current, in a read
 * transaction (most persons, most walks): the write lock is only taken
 * where there is something to write. */
static int walk_skip(struct store *store, const struct core_policy_set *set, const uint32_t *revisions,
		     struct walk_state *st)
{
	struct store_txn *txn;
	struct store_scan *scan;
	int rc = store_read_begin(store, &txn);
	rc = rc == STORE_OK ? store_scan_open(txn, st->started ? st->resume : NULL, st->started ? CORE_ID_SIZE : 0,
					      &scan)
			    : rc;
	if (rc != STORE_OK) {
		store_txn_end(txn);
		return rc;
	}
	struct store_person p;
	for (uint32_t looked = 0; looked < SUMMARY_SKIP_MAX && rc == STORE_OK; looked++) {
		rc = store_scan_next(scan, &p);
		if (rc == STORE_OK && !person_current(&p, set, revisions)) {
			break; /* the write transaction starts here */
		}
		if (rc == STORE_OK) {
			memcpy(st->resume, p.id, CORE_ID_SIZE);
			st->started = true;
		}
	}
	store_scan_close(scan);
	store_txn_end(txn);
	if (rc == STORE_NOT_FOUND) {
		st->done = true;
		return STORE_OK;
	}
	return rc == STORE_IO ? STORE_OK : rc; /* one that does not decode: the write step steps over it */
}

/* One write transaction of the walk. */
static int walk_step(struct store *store, struct summarizer *sz, const struct summary_policies *policies,
		     struct walk_state *st)
{
	struct core_policy_set set = { (const struct core_policy *const *)policies->items, policies->count };
	int rc = walk_skip(store, &set, policies->revisions, st);
	if (rc != STORE_OK || st->done) {
		return rc;
	}
	struct store_txn *txn;
	struct store_scan *scan;
	rc = store_write_begin(store, &txn);
	if (rc != STORE_OK) {
		return rc;
	}
	rc = store_scan_open(txn, st->started ? st->resume : NULL, st->started ? CORE_ID_SIZE : 0, &scan);
	if (rc != STORE_OK) {
		store_txn_end(txn);
		return rc;
	}
	uint32_t looked = 0;
	uint32_t changed = 0;
	struct store_person p;
	while (looked < SUMMARY_LOOK_MAX && changed < SUMMARY_CHANGE_MAX && rc == STORE_OK) {
		rc = store_scan_next(scan, &p);
		if (rc == STORE_IO) {
			rc = STORE_OK; /* a value that does not decode: verify's business, not ours */
			continue;
		}
		if (rc != STORE_OK) {
			break;
		}
		looked++;
		memcpy(st->resume, p.id, CORE_ID_SIZE);
		st->started = true;
		if (person_current(&p, &set, policies->revisions)) {
			continue;
		}
		size_t size;
		const uint8_t *bytes = summarizer_make(sz, &set, policies->revisions, &p.timeline, &size);
		if (bytes == NULL && p.summary == NULL) {
			continue; /* none then, none now */
		}
		rc = store_person_put(txn, p.id, p.retire_class, p.timeline.runs, p.timeline.runs_size, bytes, size);
		changed++;
	}
	store_scan_close(scan);
	if (rc == STORE_NOT_FOUND) {
		st->done = true;
		rc = STORE_OK;
	}
	if (rc != STORE_OK) {
		store_txn_end(txn);
		return rc;
	}
	if (changed == 0) {
		store_txn_end(txn); /* nothing written: no commit to sync */
		return STORE_OK;
	}
	rc = store_write_commit(txn);
	if (rc == STORE_OK) {
		st->rebuilt += changed;
	}
	return rc;
}

int summary_walk(struct store *store, const bool *stop, uint64_t *rebuilt)
{
	struct summary_policies policies;
	int rc = summary_policies_load(store, &policies);
	if (rc != STORE_OK) {
		return rc;
	}
	struct summarizer sz = { 0 };
	struct walk_state st = { 0 };
	while (rc == STORE_OK && !st.done && (stop == NULL || !__atomic_load_n(stop, __ATOMIC_ACQUIRE))) {
		uint64_t before = st.rebuilt;
		rc = walk_step(store, &sz, &policies, &st);
		if (rc == STORE_OK && !st.done && st.rebuilt > before) {
			struct timespec pause = { 0, SUMMARY_PAUSE_US * 1000L };
			nanosleep(&pause, NULL);
		}
	}
	summarizer_free(&sz);
	summary_policies_free(&policies);
	if (rebuilt != NULL) {
		*rebuilt = st.rebuilt;
	}
	return rc;
}

struct summary_thread {
	struct store *store;
	const uint64_t *generation;
	struct background bg;
};

#define SUMMARY_POLL_MS 200 /* how soon after a policy.put the walk starts */

static void *summary_main(void *arg)
{
	struct summary_thread *t = arg;
	uint64_t walked = UINT64_MAX;
	do {
		uint64_t generation = __atomic_load_n(t->generation, __ATOMIC_ACQUIRE);
		if (generation == walked) {
			continue;
		}
		uint64_t rebuilt = 0;
		int64_t started = background_now_ms();
		int rc = summary_walk(t->store, &t->bg.stop, &rebuilt);
		log_event("event=summary_walk status=%s rebuilt=%llu ms=%lld",
			  rc == STORE_OK ? "ok" : rc == STORE_FULL ? "storage_full" : "storage_fault",
			  (unsigned long long)rebuilt, (long long)(background_now_ms() - started));
		walked = rc == STORE_OK ? generation : walked;
	} while (background_sleep(&t->bg, SUMMARY_POLL_MS));
	return NULL;
}

struct summary_thread *summary_thread_start(struct store *store, const uint64_t *generation)
{
	struct summary_thread *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		log_event("event=summary_walk status=not_started reason=out_of_memory");
		return NULL;
	}
	t->store = store;
	t->generation = generation;
	if (!background_start(&t->bg, summary_main, t, "summary_walk", "summary_walk")) {
		free(t);
		return NULL;
	}
	return t;
}

void summary_thread_stop(struct summary_thread *t)
{
	if (t != NULL) {
		background_stop(&t->bg);
		free(t);
	}
}
