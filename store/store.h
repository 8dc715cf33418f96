/* store: one LMDB environment (a directory) holding policies, persons with
 * their run-encoded timelines, idempotency records and an append-only audit
 * log (SPEC §6). Hides MDB_* from everyone else.
 *
 * A write is one transaction: begin, any number of puts, commit. Nothing is
 * visible or durable before store_write_commit returns STORE_OK, and a
 * failed commit leaves no trace. Values read through a transaction borrow
 * its memory (LMDB's map) until the transaction ends. */
#ifndef ARREARS_STORE_H
#define ARREARS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

#define STORE_PERSON_FORMAT 1u

enum store_rc {
	STORE_OK = 0,
	STORE_NOT_FOUND,
	STORE_FULL,  /* the map reached its ceiling or the disk is full: nothing written */
	STORE_IO,    /* any other LMDB or OS failure: nothing written */
};

struct store;
struct store_txn;

struct store_options {
	uint64_t map_bytes_max; /* 0: STORE_MAP_BYTES_MAX */
};

/* Opens (creating when missing) the environment in dir. Returns STORE_OK or
 * STORE_IO with a reason in errbuf. */
int store_open(const char *dir, const struct store_options *options, struct store **out, char *errbuf,
	       size_t errbuf_size);
void store_close(struct store *store);

/* Read transactions see one snapshot; keep them short (they pin pages). */
int store_read_begin(struct store *store, struct store_txn **txn);
int store_write_begin(struct store *store, struct store_txn **txn);
/* A thread's read transaction kept between its reads (mdb_txn_reset at
 * the end of each, mdb_txn_renew at the next): a read then costs no
 * allocation and no lock of LMDB's reader table. A reader holds one reader
 * slot while it lives (STORE_READERS_MAX covers one a server thread and
 * more), but no snapshot between reads, so it pins no page. One thread at
 * a time. STORE_OK, or STORE_IO out of memory. */
struct store_reader;
int store_reader_new(struct store *store, struct store_reader **reader);
void store_reader_free(struct store_reader *reader);
/* store_read_begin through the reader: *txn is its kept transaction, or a
 * transaction of its own while the kept one is in use. End it with
 * store_txn_end as any other. */
int store_reader_begin(struct store_reader *reader, struct store_txn **txn);
/* Commits a write: STORE_OK, STORE_FULL or STORE_IO. The transaction is
 * gone either way. */
int store_write_commit(struct store_txn *txn);
/* Ends a read, or abandons a write. */
void store_txn_end(struct store_txn *txn);

/* A stored person: its timeline borrows the transaction. */
struct store_person {
	char id[CORE_ID_SIZE + 1];
	int retire_class; /* -1: not given (default from the id) */
	struct core_timeline timeline;
	const uint8_t *summary; /* core_summary_read's bytes, NULL when none is stored */
	size_t summary_size;
};

int store_person_get(struct store_txn *txn, const char *id, size_t id_size, struct store_person *out);
/* A stored person's value read as store_person_get reads it (out borrows
 * value): for the fuzzer, which feeds it corrupt bytes. STORE_OK, or
 * STORE_IO when the header does not decode (the runs are checked as they
 * are read, see core_timeline_iter). */
int store_person_decode(const char *id, size_t id_size, const uint8_t *value, size_t value_size,
			struct store_person *out);
/* Stores a person: runs are its sorted, valid slots (SPEC §2.1) as
 * core_timeline_encode writes them, and may borrow this transaction (a
 * stored person's); summary is what core_summary_build made of them (NULL,
 * 0: none). */
int store_person_put(struct store_txn *txn, const char *id, int retire_class, const uint8_t *runs, size_t runs_size,
		     const uint8_t *summary, size_t summary_size);
int store_person_delete(struct store_txn *txn, const char *id, size_t id_size);

/* Persons with id greater than after (NULL: from the first), ascending. */
struct store_scan;
int store_scan_open(struct store_txn *txn, const char *after, size_t after_size, struct store_scan **out);
/* STORE_OK with *out filled, STORE_NOT_FOUND at the end. */
int store_scan_next(struct store_scan *scan, struct store_person *out);
/* The person `id`, for a walk that looks up ascending ids (a scan page's
 * later parts, which look up the ids the first part listed): the cursor
 * steps forward from where the last lookup left it, and seeks afresh only
 * when the id is further on, so a page costs a cursor walk, not a B-tree
 * descent a person. Answers exactly as store_person_get in the scan's
 * transaction: STORE_OK with *out filled, STORE_NOT_FOUND when no person
 * has that id (deleted since the first part), STORE_IO. Do not mix with
 * store_scan_next on one scan. */
int store_scan_seek(struct store_scan *scan, const char *id, size_t id_size, struct store_person *out);
void store_scan_close(struct store_scan *scan);

/* Policies are stored as opaque documents keyed by city. */
int store_policy_put(struct store_txn *txn, uint32_t city, const uint8_t *doc, size_t doc_size);
/* How many policies are stored, and whether city's is one of them. */
int store_policy_count(struct store_txn *txn, uint32_t city, uint64_t *count, bool *exists);
/* Calls fn for every stored policy, by city ascending; stops at a non-zero return. */
int store_policy_each(struct store_txn *txn, int (*fn)(void *ctx, uint32_t city, const uint8_t *doc, size_t size),
		      void *ctx);

/* Policy revisions (SPEC 3.4): every stored document of a city, numbered
 * 1, 2, ... Revisions are never changed or removed. A store from before
 * revisions is migrated at open: each city's current policy becomes its
 * revision 1, stored at the time of the migration. */
struct store_revision {
	uint32_t city;
	uint32_t revision;
	int64_t stored_at_ms;  /* milliseconds since the Unix epoch, UTC */
	const uint8_t *doc;    /* borrows the transaction */
	size_t doc_size;
};
/* revision 0: the city's last one. STORE_OK, STORE_NOT_FOUND, STORE_IO. */
int store_revision_get(struct store_txn *txn, uint32_t city, uint32_t revision, struct store_revision *out);
/* Stores a new revision (it must not exist); store_policy_put keeps the latest apart. */
int store_revision_put(struct store_txn *txn, uint32_t city, uint32_t revision, int64_t stored_at_ms,
		       const uint8_t *doc, size_t doc_size);
/* Calls fn for each revision of city, ascending; stops at a non-zero return. */
int store_revision_each(struct store_txn *txn, uint32_t city, int (*fn)(void *ctx, const struct store_revision *r),
			void *ctx);

/* Idempotency: a key's digest of the request, the time it was stored
 * (milliseconds since the epoch) and the answer given. Records written
 * before the digest became 32 bytes of BLAKE2b never match a new digest: an
 * old key reused answers conflict, never a wrong replay. Records written
 * before the time stamp (digest + answer) read with time_ms -1; the first
 * purge that sees one stamps it with its own "now" (store_idem_purge_batch). */
#define STORE_IDEM_DIGEST_BYTES 32u
#define STORE_IDEM_KEY_BYTES_MAX 511u /* LMDB's key size limit */
struct store_idem {
	uint8_t digest[STORE_IDEM_DIGEST_BYTES];
	int64_t time_ms; /* -1: a record of the layout before the time stamp */
	const uint8_t *answer; /* borrows the transaction */
	size_t answer_size;
};
int store_idem_get(struct store_txn *txn, const char *key, size_t key_size, struct store_idem *out);
int store_idem_put(struct store_txn *txn, const char *key, size_t key_size, const uint8_t digest[STORE_IDEM_DIGEST_BYTES],
		   int64_t time_ms, const uint8_t *answer, size_t answer_size);

/* Retention: one bounded step of a walk over the idempotency records, in
 * its own short write transaction. Looks at most look_max records from
 * where the walk stopped, deletes those stamped before cutoff_ms and stamps
 * records of the old layout with now_ms; at most change_max deletions and
 * stamps together. Call again until state->done. STORE_OK, STORE_FULL or
 * STORE_IO (nothing of this step written; the walk may be retried). */
struct store_idem_purge {
	uint8_t resume[STORE_IDEM_KEY_BYTES_MAX]; /* the last key looked at */
	size_t resume_size;
	bool started;
	bool done;
	uint64_t looked;  /* totals over the walk */
	uint64_t deleted;
	uint64_t stamped;
	uint32_t steps;
};
int store_idem_purge_step(struct store *store, int64_t now_ms, int64_t cutoff_ms, uint32_t look_max, uint32_t change_max,
			  struct store_idem_purge *state);

/* Appends one record to the audit log (key: a sequence number). */
int store_audit_append(struct store_txn *txn, const uint8_t *record, size_t record_size);

/* Calls fn for each audit record with a sequence number above after,
 * ascending, until fn returns non-zero (that value is returned) or the log
 * ends (STORE_OK). record borrows the transaction. */
int store_audit_each(struct store_txn *txn, uint64_t after,
		     int (*fn)(void *ctx, uint64_t seq, const uint8_t *record, size_t record_size), void *ctx);

/* The named databases, for tools that walk a whole store (arrears verify):
 * store_table_name(i) for i = 0.. until NULL. */
const char *store_table_name(uint32_t index);
/* Calls fn for every record of the named database, by key ascending, until
 * fn returns non-zero (returned). STORE_NOT_FOUND for an unknown name. */
int store_table_each(struct store_txn *txn, const char *name,
		     int (*fn)(void *ctx, const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size),
		     void *ctx);

/* A consistent, compacted copy of the whole environment (one read snapshot;
 * writers go on meanwhile) into out_dir/data.mdb, created (with out_dir)
 * and fsynced. Refuses (STORE_IO, reason in errbuf) when out_dir/data.mdb
 * exists. STORE_FULL when the disk filled (the partial file is removed). */
int store_backup(struct store *store, const char *out_dir, char *errbuf, size_t errbuf_size);

struct store_stats {
	uint64_t persons;
	uint64_t audit_records;
	uint64_t idem_records;
	uint64_t bytes_used; /* pages in use × page size */
	uint64_t map_bytes;
};
int store_stats(struct store *store, struct store_stats *out);

#endif
