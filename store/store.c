/* LMDB: five named databases in one environment, one writer at a time. */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../fault/fault.h"
#include "store.h"

#define PERSON_HEADER_BYTES 2u /* format, retire class */
/* Format 2 puts a summary (core/summary.c) between the header and the runs,
 * its size (u32) and the slot count (u32, as the runs begin) first: a query
 * that reads only the summary touches neither the runs nor their page. */
#define PERSON_FORMAT_SUMMARY 2u
#define PERSON_SUMMARY_HEADER_BYTES (PERSON_HEADER_BYTES + 8u)
#define CLASS_DEFAULT 0xffu

enum { DB_PERSONS, DB_POLICIES, DB_IDEM, DB_AUDIT, DB_REVISIONS, DB_COUNT };
static const char *const db_names[DB_COUNT] = { "persons", "policies", "idem", "audit", "policy_revisions" };
#define REVISION_KEY_BYTES 8u   /* city BE32, revision BE32: a city's revisions are adjacent, ascending */
#define REVISION_HEAD_BYTES 8u  /* stored_at ms BE64, then the document */

struct store {
	MDB_env *env;
	MDB_dbi dbi[DB_COUNT];
	/* Every transaction holds it shared; growing the map takes it alone,
	 * as mdb_env_set_mapsize needs no transaction open in the process. */
	pthread_rwlock_t resize_lock;
	uint64_t map_bytes;
	uint64_t map_bytes_max;
	uint8_t *scratch; /* person encodings; LMDB runs one write transaction at a time */
	int dir_fd;       /* the directory, to tell a full disk from another I/O error */
	size_t scratch_size;
};

struct store_txn {
	struct store *store;
	MDB_txn *txn;
	bool write;
	int failed; /* an LMDB error a put met: commit reports it */
	struct store_reader *reader; /* a reader's kept transaction: reset at its end, not freed */
};

struct store_reader {
	struct store_txn txn; /* txn.txn NULL until the first read, or after a renew failed */
	bool in_use;
};

struct store_scan {
	struct store_txn *txn;
	MDB_cursor *cursor;
	MDB_val key;
	bool started;
	bool done;
	char after[CORE_ID_SIZE + 2];
	size_t after_size;
};

static int map_error(int rc)
{
	if (rc == 0) {
		return STORE_OK;
	}
	if (rc == MDB_NOTFOUND) {
		return STORE_NOT_FOUND;
	}
	if (rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT) {
		return STORE_FULL;
	}
	return STORE_IO;
}

static int revisions_migrate(struct store *s, MDB_txn *txn);

int store_open(const char *dir, const struct store_options *options, struct store **out, char *errbuf,
	       size_t errbuf_size)
{
	struct store *s = calloc(1, sizeof(*s));
	MDB_txn *txn = NULL;
	int rc = s == NULL ? ENOMEM : 0;
	if (rc == 0 && mkdir(dir, 0755) != 0 && errno != EEXIST) {
		rc = errno;
	}
	if (s != NULL) {
		s->dir_fd = -1;
	}
	if (rc == 0 && (s->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = errno;
	}
	if (rc == 0) {
		pthread_rwlockattr_t attr;
		pthread_rwlockattr_init(&attr);
		/* Adopting a map another process grew must not starve behind readers. */
		pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		rc = pthread_rwlock_init(&s->resize_lock, &attr);
		pthread_rwlockattr_destroy(&attr);
	}
	if (rc == 0) {
		s->map_bytes_max = options != NULL && options->map_bytes_max > 0 ? options->map_bytes_max
										   : STORE_MAP_BYTES_MAX;
		rc = mdb_env_create(&s->env);
	}
	if (rc == 0) {
		rc = mdb_env_set_maxdbs(s->env, DB_COUNT);
	}
	if (rc == 0) {
		rc = mdb_env_set_maxreaders(s->env, STORE_READERS_MAX);
	}
	if (rc == 0) {
		rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0644);
	}
	if (rc == 0) {
		/* The whole ceiling at once: address space, not disk (the file grows
		 * page by page), and no map to grow later under open transactions.
		 * Keep the map a stored environment already has, when larger. */
		MDB_envinfo info;
		mdb_env_info(s->env, &info);
		s->map_bytes = info.me_mapsize > s->map_bytes_max ? info.me_mapsize : s->map_bytes_max;
		rc = mdb_env_set_mapsize(s->env, s->map_bytes);
	}
	if (rc == 0) {
		rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	}
	for (int i = 0; rc == 0 && i < DB_COUNT; i++) {
		rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]);
	}
	if (rc == 0) {
		rc = revisions_migrate(s, txn);
	}
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (rc != 0) {
		snprintf(errbuf, errbuf_size, "%s: %s", dir, rc > 0 ? strerror(rc) : mdb_strerror(rc));
		if (txn != NULL) {
			mdb_txn_abort(txn);
		}
		store_close(s);
		return map_error(rc) == STORE_FULL ? STORE_FULL : STORE_IO;
	}
	*out = s;
	return STORE_OK;
}

void store_close(struct store *s)
{
	if (s == NULL) {
		return;
	}
	if (s->env != NULL) {
		mdb_env_close(s->env);
		pthread_rwlock_destroy(&s->resize_lock);
	}
	if (s->dir_fd >= 0) {
		close(s->dir_fd);
	}
	free(s->scratch);
	free(s);
}

/* Another process (an import into the live directory) grew the map past
 * ours: take its size, with no transaction of this process open. */
static void map_adopt(struct store *s)
{
	pthread_rwlock_wrlock(&s->resize_lock);
	MDB_envinfo info;
	if (mdb_env_set_mapsize(s->env, 0) == 0 && mdb_env_info(s->env, &info) == 0) {
		s->map_bytes = info.me_mapsize;
	}
	pthread_rwlock_unlock(&s->resize_lock);
}

/* Begins an LMDB transaction, adopting a map another process grew. On
 * success the resize lock is held (shared) until the transaction ends. */
static int txn_open(struct store *s, bool write, MDB_txn **out)
{
	int rc;
	for (int attempt = 0;; attempt++) {
		pthread_rwlock_rdlock(&s->resize_lock);
		rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, out);
		if (rc != MDB_MAP_RESIZED || attempt == 3) {
			break;
		}
		pthread_rwlock_unlock(&s->resize_lock);
		map_adopt(s);
	}
	if (rc != 0) {
		pthread_rwlock_unlock(&s->resize_lock);
	}
	return rc;
}

static int txn_begin(struct store *s, bool write, struct store_txn **out)
{
	struct store_txn *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		return STORE_IO;
	}
	int rc = txn_open(s, write, &t->txn);
	if (rc != 0) {
		free(t);
		return map_error(rc);
	}
	t->store = s;
	t->write = write;
	*out = t;
	return STORE_OK;
}

int store_reader_new(struct store *s, struct store_reader **out)
{
	struct store_reader *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		return STORE_IO;
	}
	r->txn = (struct store_txn){ .store = s, .reader = r };
	*out = r;
	return STORE_OK;
}

void store_reader_free(struct store_reader *r)
{
	if (r != NULL) {
		ASSERT(!r->in_use);
		if (r->txn.txn != NULL) {
			mdb_txn_abort(r->txn.txn); /* gives its reader slot back */
		}
		free(r);
	}
}

int store_reader_begin(struct store_reader *r, struct store_txn **out)
{
	struct store *s = r->txn.store;
	if (r->in_use) {
		return txn_begin(s, false, out);
	}
	int rc = MDB_BAD_TXN;
	if (r->txn.txn != NULL) {
		pthread_rwlock_rdlock(&s->resize_lock);
		rc = mdb_txn_renew(r->txn.txn);
		if (rc != 0) { /* the map was grown elsewhere, or the handle broke: begin afresh */
			pthread_rwlock_unlock(&s->resize_lock);
			mdb_txn_abort(r->txn.txn);
			r->txn.txn = NULL;
		}
	}
	if (rc != 0 && (rc = txn_open(s, false, &r->txn.txn)) != 0) {
		r->txn.txn = NULL;
		return map_error(rc);
	}
	r->in_use = true;
	*out = &r->txn;
	return STORE_OK;
}

int store_read_begin(struct store *s, struct store_txn **out)
{
	return txn_begin(s, false, out);
}

int store_write_begin(struct store *s, struct store_txn **out)
{
	return txn_begin(s, true, out);
}

void store_txn_end(struct store_txn *t)
{
	if (t != NULL && t->reader != NULL) {
		ASSERT(t->reader->in_use);
		mdb_txn_reset(t->txn); /* its snapshot goes: no page stays pinned between reads */
		pthread_rwlock_unlock(&t->store->resize_lock);
		t->reader->in_use = false;
	} else if (t != NULL) {
		mdb_txn_abort(t->txn);
		pthread_rwlock_unlock(&t->store->resize_lock);
		free(t);
	}
}

/* LMDB reports a short write (what a full disk gives a large write) as
 * EIO: a full disk is one with (almost) nothing left. */
static bool disk_full(const struct store *s)
{
	struct statvfs st;
	return fstatvfs(s->dir_fd, &st) == 0 && (uint64_t)st.f_bavail * st.f_frsize < STORE_DISK_FULL_BYTES;
}

int store_write_commit(struct store_txn *t)
{
	struct store *s = t->store;
	int rc = t->failed;
	if (rc == 0 && t->write && fault_hit(FAULT_COMMIT_FULL)) {
		rc = MDB_MAP_FULL;
	} else if (rc == 0 && t->write && fault_hit(FAULT_COMMIT_IO)) {
		rc = EIO;
	}
	if (rc == 0) {
		rc = mdb_txn_commit(t->txn);
	} else {
		mdb_txn_abort(t->txn); /* an injected failure, like a real one, writes nothing */
	}
	pthread_rwlock_unlock(&s->resize_lock);
	free(t);
	if (rc == EIO && disk_full(s)) {
		return STORE_FULL;
	}
	return map_error(rc);
}

/* Records an LMDB error of a write so that commit reports it. */
static int put_result(struct store_txn *t, int rc)
{
	if (rc != 0 && rc != MDB_NOTFOUND && t->failed == 0) {
		t->failed = rc;
	}
	return map_error(rc);
}

/* The slot count that leads a run encoding. */
static bool runs_slot_count(const uint8_t *p, size_t size, uint32_t *count)
{
	const uint8_t *end = p + size;
	uint64_t v = 0;
	for (uint32_t shift = 0; p < end && shift < 35; shift += 7) {
		v |= (uint64_t)(*p & 0x7f) << shift;
		if (*p++ < 0x80) {
			*count = (uint32_t)v;
			return v <= UINT32_MAX;
		}
	}
	return false;
}

static int decode_person(const MDB_val *key, const MDB_val *val, struct store_person *out)
{
	const uint8_t *v = val->mv_data;
	if (key->mv_size != CORE_ID_SIZE || val->mv_size < PERSON_HEADER_BYTES ||
	    (v[0] != STORE_PERSON_FORMAT && v[0] != PERSON_FORMAT_SUMMARY) ||
	    (v[1] >= CORE_CLASS_COUNT && v[1] != CLASS_DEFAULT)) {
		return STORE_IO;
	}
	memcpy(out->id, key->mv_data, CORE_ID_SIZE);
	out->id[CORE_ID_SIZE] = '\0';
	out->retire_class = v[1] == CLASS_DEFAULT ? -1 : v[1];
	out->timeline = (struct core_timeline){ .runs = v + PERSON_HEADER_BYTES,
						 .runs_size = val->mv_size - PERSON_HEADER_BYTES };
	out->summary = NULL;
	out->summary_size = 0;
	if (v[0] == STORE_PERSON_FORMAT) {
		return runs_slot_count(out->timeline.runs, out->timeline.runs_size, &out->timeline.slot_count)
			       ? STORE_OK
			       : STORE_IO;
	}
	uint32_t summary_size;
	if (val->mv_size < PERSON_SUMMARY_HEADER_BYTES) {
		return STORE_IO;
	}
	memcpy(&summary_size, v + PERSON_HEADER_BYTES, sizeof(summary_size));
	memcpy(&out->timeline.slot_count, v + PERSON_HEADER_BYTES + 4, sizeof(out->timeline.slot_count));
	if (summary_size > val->mv_size - PERSON_SUMMARY_HEADER_BYTES) {
		return STORE_IO;
	}
	out->summary = v + PERSON_SUMMARY_HEADER_BYTES;
	out->summary_size = summary_size;
	/* A slot count that disagrees with the runs' makes them read as corrupt. */
	out->timeline.runs = out->summary + summary_size;
	out->timeline.runs_size = val->mv_size - PERSON_SUMMARY_HEADER_BYTES - summary_size;
	return STORE_OK;
}

int store_person_decode(const char *id, size_t id_size, const uint8_t *value, size_t value_size,
			struct store_person *out)
{
	MDB_val key = { id_size, (void *)id };
	MDB_val val = { value_size, (void *)value };
	return decode_person(&key, &val, out);
}

int store_person_get(struct store_txn *t, const char *id, size_t id_size, struct store_person *out)
{
	if (id_size != CORE_ID_SIZE) {
		return STORE_NOT_FOUND;
	}
	MDB_val key = { id_size, (void *)id };
	MDB_val val;
	int rc = mdb_get(t->txn, t->store->dbi[DB_PERSONS], &key, &val);
	if (rc != 0) {
		return map_error(rc);
	}
	return decode_person(&key, &val, out);
}

static bool scratch_reserve(struct store *s, size_t need)
{
	if (need > s->scratch_size) {
		uint8_t *p = realloc(s->scratch, need);
		if (p == NULL) {
			return false;
		}
		s->scratch = p;
		s->scratch_size = need;
	}
	return true;
}

/* Writes the value in scratch: header, the runs (already at their place
 * after the header), then the summary (none: the summary-less format). */
int store_person_put(struct store_txn *t, const char *id, int retire_class, const uint8_t *runs, size_t runs_size,
		     const uint8_t *summary, size_t summary_size)
{
	struct store *s = t->store;
	size_t head = summary_size > 0 ? PERSON_SUMMARY_HEADER_BYTES + summary_size : PERSON_HEADER_BYTES;
	if (!scratch_reserve(s, head + runs_size)) {
		return put_result(t, ENOMEM);
	}
	uint8_t *v = s->scratch;
	v[0] = summary_size > 0 ? PERSON_FORMAT_SUMMARY : STORE_PERSON_FORMAT;
	v[1] = retire_class < 0 ? CLASS_DEFAULT : (uint8_t)retire_class;
	if (summary_size > 0) {
		uint32_t slot_count = 0;
		bool counted = runs_slot_count(runs, runs_size, &slot_count);
		ASSERT(counted && summary_size <= UINT32_MAX);
		uint32_t size32 = (uint32_t)summary_size;
		memcpy(v + PERSON_HEADER_BYTES, &size32, sizeof(size32));
		memcpy(v + PERSON_HEADER_BYTES + 4, &slot_count, sizeof(slot_count));
		memcpy(v + PERSON_SUMMARY_HEADER_BYTES, summary, summary_size);
	}
	/* runs may borrow the map: copied before the put moves the page. */
	memcpy(v + head, runs, runs_size);
	MDB_val key = { CORE_ID_SIZE, (void *)id };
	MDB_val val = { head + runs_size, v };
	return put_result(t, mdb_put(t->txn, s->dbi[DB_PERSONS], &key, &val, 0));
}

int store_person_delete(struct store_txn *t, const char *id, size_t id_size)
{
	if (id_size != CORE_ID_SIZE) {
		return STORE_NOT_FOUND;
	}
	MDB_val key = { id_size, (void *)id };
	return put_result(t, mdb_del(t->txn, t->store->dbi[DB_PERSONS], &key, NULL));
}

int store_scan_open(struct store_txn *t, const char *after, size_t after_size, struct store_scan **out)
{
	struct store_scan *sc = calloc(1, sizeof(*sc));
	if (sc == NULL) {
		return STORE_IO;
	}
	int rc = mdb_cursor_open(t->txn, t->store->dbi[DB_PERSONS], &sc->cursor);
	if (rc != 0) {
		free(sc);
		return map_error(rc);
	}
	sc->txn = t;
	if (after != NULL) {
		/* Keys are 18 bytes: comparing with 19 bytes of `after` orders them as the whole would. */
		sc->after_size = after_size < sizeof(sc->after) ? after_size : sizeof(sc->after);
		memcpy(sc->after, after, sc->after_size);
	}
	sc->started = after == NULL;
	*out = sc;
	return STORE_OK;
}

int store_scan_next(struct store_scan *sc, struct store_person *out)
{
	MDB_val val;
	int rc;
	if (sc->done) {
		return STORE_NOT_FOUND;
	}
	if (sc->key.mv_data == NULL && sc->started) {
		rc = mdb_cursor_get(sc->cursor, &sc->key, &val, MDB_FIRST);
	} else if (sc->key.mv_data == NULL) {
		sc->key = (MDB_val){ sc->after_size, sc->after };
		rc = sc->after_size == 0 ? mdb_cursor_get(sc->cursor, &sc->key, &val, MDB_FIRST)
					 : mdb_cursor_get(sc->cursor, &sc->key, &val, MDB_SET_RANGE);
		if (rc == 0 && sc->key.mv_size == sc->after_size && memcmp(sc->key.mv_data, sc->after, sc->after_size) == 0) {
			rc = mdb_cursor_get(sc->cursor, &sc->key, &val, MDB_NEXT);
		}
	} else {
		rc = mdb_cursor_get(sc->cursor, &sc->key, &val, MDB_NEXT);
	}
	if (rc != 0) {
		sc->done = true;
		return map_error(rc);
	}
	return decode_person(&sc->key, &val, out);
}

/* Persons inserted between two parts of a page are stepped over one by
 * one up to this many; past it the cursor seeks. */
#define SCAN_SEEK_STEPS_MAX 8u

static int key_order(const MDB_val *key, const char *id, size_t id_size)
{
	int order = memcmp(key->mv_data, id, key->mv_size < id_size ? key->mv_size : id_size);
	return order != 0 ? order : (key->mv_size > id_size) - (key->mv_size < id_size);
}

int store_scan_seek(struct store_scan *sc, const char *id, size_t id_size, struct store_person *out)
{
	MDB_val val;
	int rc = 0;
	if (id_size != CORE_ID_SIZE) {
		return STORE_NOT_FOUND;
	}
	if (sc->done) {
		return STORE_NOT_FOUND; /* the cursor passed the last key: no id after it is stored */
	}
	bool placed = sc->key.mv_data != NULL;
	for (uint32_t step = 0; placed && key_order(&sc->key, id, id_size) < 0 && rc == 0; step++) {
		if (step == SCAN_SEEK_STEPS_MAX) {
			placed = false;
		} else {
			rc = mdb_cursor_get(sc->cursor, &sc->key, &val, MDB_NEXT);
		}
	}
	if (rc == 0 && placed) {
		rc = mdb_cursor_get(sc->cursor, &sc->key, &val, MDB_GET_CURRENT);
	} else if (rc == 0) {
		sc->key = (MDB_val){ id_size, (void *)id };
		rc = mdb_cursor_get(sc->cursor, &sc->key, &val, MDB_SET_RANGE);
	}
	if (rc != 0) {
		sc->key = (MDB_val){ 0 };
		sc->done = rc == MDB_NOTFOUND;
		return map_error(rc);
	}
	if (key_order(&sc->key, id, id_size) != 0) {
		return STORE_NOT_FOUND;
	}
	return decode_person(&sc->key, &val, out);
}

void store_scan_close(struct store_scan *sc)
{
	if (sc != NULL) {
		mdb_cursor_close(sc->cursor);
		free(sc);
	}
}

static void city_key(uint32_t city, uint8_t key[4])
{
	key[0] = (uint8_t)(city >> 24);
	key[1] = (uint8_t)(city >> 16);
	key[2] = (uint8_t)(city >> 8);
	key[3] = (uint8_t)city;
}

int store_policy_put(struct store_txn *t, uint32_t city, const uint8_t *doc, size_t doc_size)
{
	uint8_t k[4];
	city_key(city, k);
	MDB_val key = { sizeof(k), k };
	MDB_val val = { doc_size, (void *)doc };
	return put_result(t, mdb_put(t->txn, t->store->dbi[DB_POLICIES], &key, &val, 0));
}

int store_policy_count(struct store_txn *t, uint32_t city, uint64_t *count, bool *exists)
{
	uint8_t k[4];
	city_key(city, k);
	MDB_val key = { sizeof(k), k };
	MDB_val val;
	MDB_stat st;
	int rc = mdb_stat(t->txn, t->store->dbi[DB_POLICIES], &st);
	if (rc != 0) {
		return map_error(rc);
	}
	*count = st.ms_entries;
	rc = mdb_get(t->txn, t->store->dbi[DB_POLICIES], &key, &val);
	*exists = rc == 0;
	return rc == 0 || rc == MDB_NOTFOUND ? STORE_OK : map_error(rc);
}

int store_policy_each(struct store_txn *t, int (*fn)(void *ctx, uint32_t city, const uint8_t *doc, size_t size),
		      void *ctx)
{
	MDB_cursor *cursor;
	MDB_val key;
	MDB_val val;
	int rc = mdb_cursor_open(t->txn, t->store->dbi[DB_POLICIES], &cursor);
	if (rc != 0) {
		return map_error(rc);
	}
	int result = STORE_OK;
	for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0 && result == STORE_OK;
	     rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
		const uint8_t *k = key.mv_data;
		if (key.mv_size != 4) {
			result = STORE_IO;
			break;
		}
		uint32_t city = (uint32_t)k[0] << 24 | (uint32_t)k[1] << 16 | (uint32_t)k[2] << 8 | k[3];
		result = fn(ctx, city, val.mv_data, val.mv_size);
	}
	mdb_cursor_close(cursor);
	if (result == STORE_OK && rc != MDB_NOTFOUND) {
		result = map_error(rc);
	}
	return result;
}

/* Idempotency values: digest, IDEM_MARKER, time_ms (big-endian), answer.
 * The layout before the stamp was digest, answer; an answer starts with
 * its error field (nil or a map), never with 0xc1, which msgpack never
 * uses: the marker tells the layouts apart. */
#define IDEM_MARKER 0xc1u
#define IDEM_HEADER_BYTES (STORE_IDEM_DIGEST_BYTES + 1u + 8u)

static bool idem_stamped(const MDB_val *val)
{
	return val->mv_size >= IDEM_HEADER_BYTES && ((const uint8_t *)val->mv_data)[STORE_IDEM_DIGEST_BYTES] == IDEM_MARKER;
}

static int64_t idem_time(const MDB_val *val)
{
	const uint8_t *p = (const uint8_t *)val->mv_data + STORE_IDEM_DIGEST_BYTES + 1;
	uint64_t t = 0;
	for (int i = 0; i < 8; i++) {
		t = t << 8 | p[i];
	}
	return (int64_t)t;
}

static void idem_fill(uint8_t *v, const uint8_t *digest, int64_t time_ms, const uint8_t *answer, size_t answer_size)
{
	ASSERT(time_ms >= 0);
	memcpy(v, digest, STORE_IDEM_DIGEST_BYTES);
	v[STORE_IDEM_DIGEST_BYTES] = IDEM_MARKER;
	for (int i = 0; i < 8; i++) {
		v[STORE_IDEM_DIGEST_BYTES + 1 + i] = (uint8_t)((uint64_t)time_ms >> (56 - 8 * i));
	}
	if (answer_size > 0) {
		memcpy(v + IDEM_HEADER_BYTES, answer, answer_size);
	}
}

int store_idem_get(struct store_txn *t, const char *key_bytes, size_t key_size, struct store_idem *out)
{
	MDB_val key = { key_size, (void *)key_bytes };
	MDB_val val;
	int rc = mdb_get(t->txn, t->store->dbi[DB_IDEM], &key, &val);
	if (rc != 0) {
		return map_error(rc);
	}
	out->time_ms = -1;
	if (val.mv_size < sizeof(out->digest)) {
		/* A record from before the 32-byte digest, too short to hold one:
		 * it matches nothing (the key answers conflict). */
		memset(out->digest, 0, sizeof(out->digest));
		out->answer = NULL;
		out->answer_size = 0;
		return STORE_OK;
	}
	memcpy(out->digest, val.mv_data, sizeof(out->digest));
	size_t header = sizeof(out->digest);
	if (idem_stamped(&val)) {
		out->time_ms = idem_time(&val);
		header = IDEM_HEADER_BYTES;
	}
	out->answer = (const uint8_t *)val.mv_data + header;
	out->answer_size = val.mv_size - header;
	return STORE_OK;
}

int store_idem_put(struct store_txn *t, const char *key_bytes, size_t key_size,
		   const uint8_t digest[STORE_IDEM_DIGEST_BYTES], int64_t time_ms, const uint8_t *answer,
		   size_t answer_size)
{
	MDB_val key = { key_size, (void *)key_bytes };
	MDB_val val = { IDEM_HEADER_BYTES + answer_size, NULL };
	int rc = mdb_put(t->txn, t->store->dbi[DB_IDEM], &key, &val, MDB_RESERVE);
	if (rc == 0) {
		idem_fill(val.mv_data, digest, time_ms, answer, answer_size);
	}
	return put_result(t, rc);
}

/* Stamps the old-layout record under the cursor with now_ms: the answer
 * is kept, so a replay within the retention still answers as before. A
 * value shorter than a digest (before BLAKE2b) keeps a zero digest that
 * matches nothing, as store_idem_get reads it. */
static int idem_stamp(MDB_cursor *cursor, const MDB_val *key, const MDB_val *val, int64_t now_ms)
{
	uint8_t zero[STORE_IDEM_DIGEST_BYTES] = { 0 };
	bool has_digest = val->mv_size >= STORE_IDEM_DIGEST_BYTES;
	size_t answer_size = has_digest ? val->mv_size - STORE_IDEM_DIGEST_BYTES : 0;
	uint8_t *copy = malloc(IDEM_HEADER_BYTES + answer_size + key->mv_size);
	if (copy == NULL) {
		return ENOMEM;
	}
	/* The value and key borrow pages the put may move: copy them first. */
	const uint8_t *v = val->mv_data;
	idem_fill(copy, has_digest ? v : zero, now_ms, has_digest ? v + STORE_IDEM_DIGEST_BYTES : NULL, answer_size);
	memcpy(copy + IDEM_HEADER_BYTES + answer_size, key->mv_data, key->mv_size);
	MDB_val k = { key->mv_size, copy + IDEM_HEADER_BYTES + answer_size };
	MDB_val nv = { IDEM_HEADER_BYTES + answer_size, copy };
	int rc = mdb_cursor_put(cursor, &k, &nv, MDB_CURRENT);
	free(copy);
	return rc;
}

/* Positions the cursor on the first record the walk has not looked at. */
static int purge_seek(MDB_cursor *cursor, const struct store_idem_purge *st, MDB_val *key, MDB_val *val)
{
	if (!st->started) {
		return mdb_cursor_get(cursor, key, val, MDB_FIRST);
	}
	*key = (MDB_val){ st->resume_size, (void *)st->resume };
	int rc = mdb_cursor_get(cursor, key, val, MDB_SET_RANGE);
	if (rc == 0 && key->mv_size == st->resume_size && memcmp(key->mv_data, st->resume, st->resume_size) == 0) {
		rc = mdb_cursor_get(cursor, key, val, MDB_NEXT);
	}
	return rc;
}

int store_idem_purge_step(struct store *s, int64_t now_ms, int64_t cutoff_ms, uint32_t look_max, uint32_t change_max,
			  struct store_idem_purge *st)
{
	ASSERT(look_max > 0 && change_max > 0 && now_ms >= 0);
	if (st->done) {
		return STORE_OK;
	}
	struct store_txn *t;
	int rc = txn_begin(s, true, &t);
	if (rc != STORE_OK) {
		return rc;
	}
	MDB_cursor *cursor;
	MDB_val key;
	MDB_val val;
	uint32_t looked = 0, changed = 0, deleted = 0, stamped = 0;
	rc = mdb_cursor_open(t->txn, s->dbi[DB_IDEM], &cursor);
	if (rc == 0) {
		rc = purge_seek(cursor, st, &key, &val);
	}
	while (rc == 0 && looked < look_max && changed < change_max) {
		ASSERT(key.mv_size <= sizeof(st->resume));
		memcpy(st->resume, key.mv_data, key.mv_size);
		st->resume_size = key.mv_size;
		st->started = true;
		looked++;
		if (!idem_stamped(&val)) {
			rc = idem_stamp(cursor, &key, &val, now_ms);
			stamped += rc == 0;
			changed++;
		} else if (idem_time(&val) < cutoff_ms) {
			rc = mdb_cursor_del(cursor, 0);
			deleted += rc == 0;
			changed++;
		}
		if (rc == 0 && looked < look_max && changed < change_max) {
			/* After a delete the cursor already stands on the next record:
			 * LMDB's MDB_NEXT then returns that one. */
			rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
		}
	}
	bool end = rc == MDB_NOTFOUND;
	if (rc == 0 || end) {
		mdb_cursor_close(cursor);
		cursor = NULL;
		rc = store_write_commit(t);
	} else {
		if (cursor != NULL) {
			mdb_cursor_close(cursor);
		}
		put_result(t, rc);
		store_txn_end(t);
		rc = map_error(rc);
	}
	if (rc == STORE_OK) {
		st->done = end;
		st->looked += looked;
		st->deleted += deleted;
		st->stamped += stamped;
		st->steps++;
	}
	return rc;
}

int store_audit_append(struct store_txn *t, const uint8_t *record, size_t record_size)
{
	MDB_cursor *cursor;
	MDB_val key;
	MDB_val val;
	int rc = mdb_cursor_open(t->txn, t->store->dbi[DB_AUDIT], &cursor);
	if (rc != 0) {
		return put_result(t, rc);
	}
	uint64_t seq = 0;
	rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
	if (rc == 0 && key.mv_size == 8) {
		const uint8_t *k = key.mv_data;
		for (int i = 0; i < 8; i++) {
			seq = seq << 8 | k[i];
		}
	}
	mdb_cursor_close(cursor);
	uint8_t next[8];
	for (int i = 0; i < 8; i++) {
		next[i] = (uint8_t)((seq + 1) >> (56 - 8 * i));
	}
	key = (MDB_val){ sizeof(next), next };
	val = (MDB_val){ record_size, (void *)record };
	return put_result(t, mdb_put(t->txn, t->store->dbi[DB_AUDIT], &key, &val, MDB_APPEND));
}

int store_stats(struct store *s, struct store_stats *out)
{
	MDB_txn *txn;
	MDB_stat st;
	MDB_envinfo info;
	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&s->resize_lock); /* the map must not move under the reads */
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		pthread_rwlock_unlock(&s->resize_lock);
		return map_error(rc);
	}
	if (mdb_stat(txn, s->dbi[DB_PERSONS], &st) == 0) {
		out->persons = st.ms_entries;
	}
	if (mdb_stat(txn, s->dbi[DB_AUDIT], &st) == 0) {
		out->audit_records = st.ms_entries;
	}
	if (mdb_stat(txn, s->dbi[DB_IDEM], &st) == 0) {
		out->idem_records = st.ms_entries;
	}
	mdb_txn_abort(txn);
	mdb_env_info(s->env, &info);
	mdb_env_stat(s->env, &st);
	pthread_rwlock_unlock(&s->resize_lock);
	out->bytes_used = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
	out->map_bytes = info.me_mapsize;
	return STORE_OK;
}

int store_audit_each(struct store_txn *t, uint64_t after,
		     int (*fn)(void *ctx, uint64_t seq, const uint8_t *record, size_t record_size), void *ctx)
{
	MDB_cursor *cursor;
	int rc = mdb_cursor_open(t->txn, t->store->dbi[DB_AUDIT], &cursor);
	if (rc != 0) {
		return map_error(rc);
	}
	uint8_t from[8];
	for (int i = 0; i < 8; i++) {
		from[i] = (uint8_t)(after >> (56 - 8 * i));
	}
	MDB_val key = { sizeof(from), from };
	MDB_val val;
	int result = STORE_OK;
	rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
	for (; rc == 0 && result == STORE_OK; rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
		if (key.mv_size != 8) {
			result = STORE_IO;
			break;
		}
		uint64_t seq = 0;
		for (int i = 0; i < 8; i++) {
			seq = seq << 8 | ((const uint8_t *)key.mv_data)[i];
		}
		if (seq > after) {
			result = fn(ctx, seq, val.mv_data, val.mv_size);
		}
	}
	mdb_cursor_close(cursor);
	if (result == STORE_OK && rc != 0 && rc != MDB_NOTFOUND) {
		result = map_error(rc);
	}
	return result;
}

/* ---- policy revisions (SPEC 3.4): key city BE32 + revision BE32, value
 * stored_at ms BE64 + the document. `policies` keeps the latest document,
 * so loading policies reads one record a city. ---- */

static void revision_key(uint32_t city, uint32_t revision, uint8_t key[REVISION_KEY_BYTES])
{
	city_key(city, key);
	city_key(revision, key + 4);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int revision_decode(const MDB_val *key, const MDB_val *val, struct store_revision *out)
{
	const uint8_t *v = val->mv_data;
	if (key->mv_size != REVISION_KEY_BYTES || val->mv_size < REVISION_HEAD_BYTES) {
		return STORE_IO;
	}
	out->city = be32(key->mv_data);
	out->revision = be32((const uint8_t *)key->mv_data + 4);
	uint64_t ms = 0;
	for (uint32_t i = 0; i < 8; i++) {
		ms = ms << 8 | v[i];
	}
	out->stored_at_ms = (int64_t)ms;
	out->doc = v + REVISION_HEAD_BYTES;
	out->doc_size = val->mv_size - REVISION_HEAD_BYTES;
	return STORE_OK;
}

/* The city's last revision through an open LMDB transaction. */
static int revision_last(MDB_txn *txn, MDB_dbi dbi, uint32_t city, struct store_revision *out)
{
	MDB_cursor *cursor;
	int rc = mdb_cursor_open(txn, dbi, &cursor);
	if (rc != 0) {
		return map_error(rc);
	}
	uint8_t k[REVISION_KEY_BYTES];
	revision_key(city, UINT32_MAX, k);
	MDB_val key = { sizeof(k), k };
	MDB_val val;
	/* The first key past the city's range, then one back. */
	rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
	rc = rc == 0 ? mdb_cursor_get(cursor, &key, &val, MDB_PREV)
		     : rc == MDB_NOTFOUND ? mdb_cursor_get(cursor, &key, &val, MDB_LAST) : rc;
	int result = map_error(rc);
	if (result == STORE_OK) {
		result = revision_decode(&key, &val, out);
		if (result == STORE_OK && out->city != city) {
			result = STORE_NOT_FOUND;
		}
	}
	mdb_cursor_close(cursor);
	return result;
}

static int revision_write(MDB_txn *txn, MDB_dbi dbi, uint32_t city, uint32_t revision, int64_t stored_at_ms,
			  const void *doc, size_t doc_size)
{
	uint8_t k[REVISION_KEY_BYTES];
	revision_key(city, revision, k);
	MDB_val key = { sizeof(k), k };
	MDB_val val = { REVISION_HEAD_BYTES + doc_size, NULL };
	int rc = mdb_put(txn, dbi, &key, &val, MDB_NOOVERWRITE | MDB_RESERVE);
	if (rc == 0) {
		uint8_t *v = val.mv_data;
		for (uint32_t i = 0; i < 8; i++) {
			v[i] = (uint8_t)((uint64_t)stored_at_ms >> (56 - 8 * i));
		}
		memcpy(v + REVISION_HEAD_BYTES, doc, doc_size);
	}
	return rc;
}

static int64_t now_ms(void)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* A store from before revisions (or a policy another, older, program
 * stored since): every latest policy without an equal last revision gets
 * one, stored now. Runs at open, inside its transaction. */
static int revisions_migrate(struct store *s, MDB_txn *txn)
{
	MDB_cursor *cursor;
	MDB_val key;
	MDB_val val;
	int rc = mdb_cursor_open(txn, s->dbi[DB_POLICIES], &cursor);
	if (rc != 0) {
		return rc;
	}
	int64_t stored_at_ms = now_ms();
	for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
		if (key.mv_size != 4) {
			continue; /* not ours: loading the policies reports it */
		}
		uint32_t city = be32(key.mv_data);
		struct store_revision last;
		int found = revision_last(txn, s->dbi[DB_REVISIONS], city, &last);
		if (found == STORE_OK && last.doc_size == val.mv_size && memcmp(last.doc, val.mv_data, val.mv_size) == 0) {
			continue;
		}
		if (found != STORE_OK && found != STORE_NOT_FOUND) {
			rc = EIO;
			break;
		}
		uint32_t revision = found == STORE_OK ? last.revision + 1 : 1;
		rc = revision_write(txn, s->dbi[DB_REVISIONS], city, revision, stored_at_ms, val.mv_data, val.mv_size);
		if (rc != 0) {
			break;
		}
	}
	mdb_cursor_close(cursor);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_revision_get(struct store_txn *t, uint32_t city, uint32_t revision, struct store_revision *out)
{
	if (revision == 0) {
		return revision_last(t->txn, t->store->dbi[DB_REVISIONS], city, out);
	}
	uint8_t k[REVISION_KEY_BYTES];
	revision_key(city, revision, k);
	MDB_val key = { sizeof(k), k };
	MDB_val val;
	int rc = mdb_get(t->txn, t->store->dbi[DB_REVISIONS], &key, &val);
	if (rc != 0) {
		return map_error(rc);
	}
	return revision_decode(&key, &val, out);
}

int store_revision_put(struct store_txn *t, uint32_t city, uint32_t revision, int64_t stored_at_ms,
		       const uint8_t *doc, size_t doc_size)
{
	return put_result(t, revision_write(t->txn, t->store->dbi[DB_REVISIONS], city, revision, stored_at_ms, doc,
					    doc_size));
}

int store_revision_each(struct store_txn *t, uint32_t city, int (*fn)(void *ctx, const struct store_revision *r),
			void *ctx)
{
	MDB_cursor *cursor;
	int rc = mdb_cursor_open(t->txn, t->store->dbi[DB_REVISIONS], &cursor);
	if (rc != 0) {
		return map_error(rc);
	}
	uint8_t k[REVISION_KEY_BYTES];
	revision_key(city, 0, k);
	MDB_val key = { sizeof(k), k };
	MDB_val val;
	int result = STORE_OK;
	for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE); rc == 0 && result == STORE_OK;
	     rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
		struct store_revision r;
		result = revision_decode(&key, &val, &r);
		if (result != STORE_OK || r.city != city) {
			break;
		}
		result = fn(ctx, &r);
	}
	mdb_cursor_close(cursor);
	if (result == STORE_OK && rc != 0 && rc != MDB_NOTFOUND) {
		result = map_error(rc);
	}
	return result;
}

const char *store_table_name(uint32_t index)
{
	return index < DB_COUNT ? db_names[index] : NULL;
}

int store_table_each(struct store_txn *t, const char *name,
		     int (*fn)(void *ctx, const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size),
		     void *ctx)
{
	uint32_t db = 0;
	while (db < DB_COUNT && strcmp(db_names[db], name) != 0) {
		db++;
	}
	if (db == DB_COUNT) {
		return STORE_NOT_FOUND;
	}
	MDB_cursor *cursor;
	MDB_val key;
	MDB_val val;
	int rc = mdb_cursor_open(t->txn, t->store->dbi[db], &cursor);
	if (rc != 0) {
		return map_error(rc);
	}
	int result = STORE_OK;
	for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0 && result == STORE_OK;
	     rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
		result = fn(ctx, key.mv_data, key.mv_size, val.mv_data, val.mv_size);
	}
	mdb_cursor_close(cursor);
	if (result == STORE_OK && rc != MDB_NOTFOUND) {
		result = map_error(rc);
	}
	return result;
}

int store_backup(struct store *s, const char *out_dir, char *errbuf, size_t errbuf_size)
{
	char path[4096];
	if (snprintf(path, sizeof(path), "%s/data.mdb", out_dir) >= (int)sizeof(path)) {
		snprintf(errbuf, errbuf_size, "%s: path too long", out_dir);
		return STORE_IO;
	}
	if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
		snprintf(errbuf, errbuf_size, "%s: %s", out_dir, strerror(errno));
		return STORE_IO;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(errbuf, errbuf_size, "%s: %s", path,
			 errno == EEXIST ? "exists: a backup never overwrites a store" : strerror(errno));
		return STORE_IO;
	}
	/* The copy runs in one read transaction: the map must not move under it. */
	pthread_rwlock_rdlock(&s->resize_lock);
	int rc = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
	pthread_rwlock_unlock(&s->resize_lock);
	if (rc == 0 && fsync(fd) != 0) {
		rc = errno;
	}
	if (close(fd) != 0 && rc == 0) {
		rc = errno;
	}
	int dir = rc == 0 ? open(out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dir >= 0) {
		if (fsync(dir) != 0) {
			rc = errno;
		}
		close(dir);
	}
	if (rc != 0) {
		snprintf(errbuf, errbuf_size, "%s: %s", path, rc > 0 ? strerror(rc) : mdb_strerror(rc));
		unlink(path);
		return rc == ENOSPC || rc == EDQUOT ? STORE_FULL : STORE_IO;
	}
	return STORE_OK;
}
