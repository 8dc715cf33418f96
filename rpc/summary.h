/* summary: the settled-part summaries kept beside stored timelines
 * (core/summary.c says what they hold and why the answers stay exact).
 * Writes of a person store its summary in the same transaction; a walk
 * rebuilds those that are missing (bulk imports, stores from before) or
 * were made under other policy revisions (after a policy.put). A summary
 * is only used under exactly the revisions it names, so a stale one slows
 * a query down to the full path, never changes its answer. */
#ifndef ARREARS_SUMMARY_H
#define ARREARS_SUMMARY_H

#include <stdbool.h>
#include <stdint.h>

#include "../store/store.h"

#define SUMMARY_SKIP_MAX 65536u  /* persons found current in one read transaction */
#define SUMMARY_LOOK_MAX 4096u   /* persons looked at in one write transaction */
#define SUMMARY_CHANGE_MAX 512u  /* summaries rewritten in one write transaction */
#define SUMMARY_PAUSE_US 1000u   /* between transactions: writers get the lock */

/* Memory for building summaries, grown to the largest person seen. */
struct summarizer {
	struct core_summary_scratch scratch;
	uint8_t *out;
	size_t out_size;
	uint8_t *runs; /* slots encoded by summarizer_put */
	size_t runs_size;
	struct core_run *run_list; /* a timeline decoded for the build's passes */
};
void summarizer_free(struct summarizer *s);
/* The summary of tl under set (items[i] is revision revisions[i]); NULL
 * with *size 0 when there is none to keep or memory ran out. */
const uint8_t *summarizer_make(struct summarizer *s, const struct core_policy_set *set, const uint32_t *revisions,
			       const struct core_timeline *tl, size_t *size);

/* store_person_put of sorted, valid slots with their summary under set
 * (as summarizer_make), the slots encoded once for both. */
int summarizer_put(struct summarizer *s, struct store_txn *txn, const char *id, int retire_class,
		   const struct core_policy_set *set, const uint32_t *revisions, const struct core_slot *slots,
		   uint32_t slot_count);

/* True when the summary was made under exactly the revisions of set. */
bool summary_current(const struct core_summary *summary, const struct core_policy_set *set, const uint32_t *revisions);

/* The latest policy of every city, with its revision, read from the store
 * (free with summary_policies_free). */
struct summary_policies {
	struct core_policy **items;
	uint32_t *revisions;
	uint32_t count;
};
int summary_policies_load(struct store *store, struct summary_policies *out);
void summary_policies_free(struct summary_policies *p);

/* Bulk writers (gen, import): summaries under the policies stored when
 * they start, made in the transactions that store the persons. */
struct summary_bulk {
	struct summary_policies policies;
	struct summarizer summarizer;
};
int summary_bulk_open(struct summary_bulk *b, struct store *store);
int summary_bulk_put(struct summary_bulk *b, struct store_txn *txn, const char *id, int retire_class,
		     const struct core_slot *slots, uint32_t slot_count);
void summary_bulk_close(struct summary_bulk *b);

/* One whole walk: rebuilds every summary that is missing or not current
 * under the store's latest policies, in bounded write transactions. Gives
 * up between transactions when *stop (NULL: never) is set. *rebuilt (may
 * be NULL) gets the count. STORE_OK or the failing step's code. */
int summary_walk(struct store *store, const bool *stop, uint64_t *rebuilt);

/* A thread that walks when the server starts and after every committed
 * policy.put (it polls *generation, bumped by the writer). NULL when it
 * cannot start (logged). */
struct summary_thread;
struct summary_thread *summary_thread_start(struct store *store, const uint64_t *generation);
void summary_thread_stop(struct summary_thread *t);

#endif
