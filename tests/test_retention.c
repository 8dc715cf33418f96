/* Idempotency retention, the audit walk, the table walk and backups at the
 * store level (issue 9), on a clock the test controls: the purge takes
 * "now" as an argument. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "../rpc/retention.h"
#include "../store/store.h"

#define DAY_MS 86400000LL
#define T0 1700000000000LL /* 2023-11-14, a fixed "now" */

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/arrears-retention-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static struct store *open_store(const char *d)
{
	struct store *s;
	char err[256];
	assert_int_equal(store_open(d, NULL, &s, err, sizeof(err)), STORE_OK);
	return s;
}

static const uint8_t answer[] = { 0xc0, 0x81, 0xa2, 'o', 'k', 0xc3 }; /* nil, {"ok": true} */

static void put_stamped(struct store *s, const char *key, int64_t time_ms)
{
	uint8_t digest[STORE_IDEM_DIGEST_BYTES];
	memset(digest, key[0], sizeof(digest));
	struct store_txn *t;
	assert_int_equal(store_write_begin(s, &t), STORE_OK);
	assert_int_equal(store_idem_put(t, key, strlen(key), digest, time_ms, answer, sizeof(answer)), STORE_OK);
	assert_int_equal(store_write_commit(t), STORE_OK);
}

/* STORE_OK with the record, or STORE_NOT_FOUND. */
static int get(struct store *s, const char *key, struct store_idem *out, uint8_t *answer_copy)
{
	struct store_txn *t;
	assert_int_equal(store_read_begin(s, &t), STORE_OK);
	int rc = store_idem_get(t, key, strlen(key), out);
	if (rc == STORE_OK && out->answer_size > 0) {
		memcpy(answer_copy, out->answer, out->answer_size);
	}
	store_txn_end(t);
	return rc;
}

static void test_records_stamped_before_the_cutoff_go_and_those_at_it_stay(void **state)
{
	(void)state;
	struct store *s = open_store(dir);
	int64_t retention_ms = 30 * DAY_MS;
	put_stamped(s, "a-older", T0 - retention_ms - 1);
	put_stamped(s, "b-at-cutoff", T0 - retention_ms);
	put_stamped(s, "c-new", T0 - 1000);
	struct store_idem_purge st;
	assert_int_equal(retention_walk(s, T0, retention_ms, NULL, &st), STORE_OK);
	assert_true(st.done);
	assert_int_equal(st.looked, 3);
	assert_int_equal(st.deleted, 1);
	assert_int_equal(st.stamped, 0);
	struct store_idem idem;
	uint8_t copy[64];
	assert_int_equal(get(s, "a-older", &idem, copy), STORE_NOT_FOUND);
	assert_int_equal(get(s, "b-at-cutoff", &idem, copy), STORE_OK);
	assert_int_equal(idem.time_ms, T0 - retention_ms);
	assert_int_equal(get(s, "c-new", &idem, copy), STORE_OK);
	assert_int_equal(idem.time_ms, T0 - 1000);
	assert_int_equal(idem.answer_size, sizeof(answer));
	assert_memory_equal(copy, answer, sizeof(answer));
	/* A millisecond later the record at the cutoff is past it. */
	assert_int_equal(retention_walk(s, T0 + 1, retention_ms, NULL, &st), STORE_OK);
	assert_int_equal(st.deleted, 1);
	assert_int_equal(get(s, "b-at-cutoff", &idem, copy), STORE_NOT_FOUND);
	store_close(s);
}

static void put_many(struct store *s, uint32_t count, int64_t time_ms)
{
	uint8_t digest[STORE_IDEM_DIGEST_BYTES] = { 0 };
	struct store_txn *t;
	assert_int_equal(store_write_begin(s, &t), STORE_OK);
	for (uint32_t i = 0; i < count; i++) {
		char key[32];
		int n = snprintf(key, sizeof(key), "key-%06u", i);
		assert_int_equal(store_idem_put(t, key, (size_t)n, digest, time_ms, answer, sizeof(answer)), STORE_OK);
	}
	assert_int_equal(store_write_commit(t), STORE_OK);
}

static void test_a_step_deletes_at_most_change_max(void **state)
{
	(void)state;
	struct store *s = open_store(dir);
	put_many(s, 2000, T0 - 40 * DAY_MS);
	struct store_idem_purge st = { 0 };
	int64_t cutoff = T0 - 30 * DAY_MS;
	assert_int_equal(store_idem_purge_step(s, T0, cutoff, 8192, 512, &st), STORE_OK);
	assert_int_equal(st.deleted, 512);
	assert_int_equal(st.looked, 512);
	assert_false(st.done);
	/* 512 + 512 + 512 + 464: the fourth step meets the end. */
	while (!st.done) {
		assert_int_equal(store_idem_purge_step(s, T0, cutoff, 8192, 512, &st), STORE_OK);
	}
	assert_int_equal(st.steps, 4);
	assert_int_equal(st.deleted, 2000);
	struct store_txn *t;
	assert_int_equal(store_read_begin(s, &t), STORE_OK);
	struct store_idem idem;
	assert_int_equal(store_idem_get(t, "key-001999", 10, &idem), STORE_NOT_FOUND);
	store_txn_end(t);
	store_close(s);
}

static void test_a_step_looks_at_most_look_max_and_the_walk_resumes_after_it(void **state)
{
	(void)state;
	struct store *s = open_store(dir);
	put_many(s, 1000, T0);
	struct store_idem_purge st = { 0 };
	assert_int_equal(store_idem_purge_step(s, T0, T0 - DAY_MS, 100, 512, &st), STORE_OK);
	assert_int_equal(st.looked, 100);
	assert_false(st.done);
	while (!st.done) {
		assert_int_equal(store_idem_purge_step(s, T0, T0 - DAY_MS, 100, 512, &st), STORE_OK);
	}
	/* Ten full steps, then one that finds the end: every record looked at once. */
	assert_int_equal(st.steps, 11);
	assert_int_equal(st.looked, 1000);
	assert_int_equal(st.deleted, 0);
	store_close(s);
}

/* Writes idempotency values of the layouts before the time stamp straight
 * into LMDB, as an older arrearsd left them: count keys "<key>-NNNNNN"
 * (count 0: key itself). */
static void put_raw_many(const char *key, const uint8_t *value, size_t size, uint32_t count)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "idem", 0, &dbi), 0);
	for (uint32_t i = 0; i < (count == 0 ? 1 : count); i++) {
		char name[64];
		int n = count == 0 ? snprintf(name, sizeof(name), "%s", key) : snprintf(name, sizeof(name), "%s-%06u", key, i);
		MDB_val k = { (size_t)n, name };
		MDB_val v = { size, (void *)value };
		assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void put_raw(const char *key, const uint8_t *value, size_t size)
{
	put_raw_many(key, value, size, 0);
}

/* Stamping rewrites each record larger: the walk must keep its place over
 * many pages and steps, stamping every record exactly once. */
static void test_many_legacy_records_are_stamped_once_in_bounded_steps(void **state)
{
	(void)state;
	store_close(open_store(dir));
	uint8_t legacy[STORE_IDEM_DIGEST_BYTES + 200];
	memset(legacy, 0x33, sizeof(legacy));
	legacy[STORE_IDEM_DIGEST_BYTES] = 0xc0; /* an answer begins with its error field, nil */
	put_raw_many("old", legacy, sizeof(legacy), 1500);
	struct store *s = open_store(dir);
	struct store_idem_purge st = { 0 };
	while (!st.done) {
		uint64_t before = st.stamped;
		assert_int_equal(store_idem_purge_step(s, T0, T0 - 30 * DAY_MS, 8192, 512, &st), STORE_OK);
		assert_true(st.stamped - before <= 512);
	}
	assert_int_equal(st.stamped, 1500);
	assert_int_equal(st.looked, 1500);
	assert_int_equal(st.steps, 3); /* 512 + 512 + 476, the last meets the end */
	struct store_idem idem;
	uint8_t copy[256];
	assert_int_equal(get(s, "old-001499", &idem, copy), STORE_OK);
	assert_int_equal(idem.time_ms, T0);
	assert_int_equal(idem.answer_size, 200);
	assert_memory_equal(copy, legacy + STORE_IDEM_DIGEST_BYTES, 200);
	store_close(s);
}

static void test_legacy_records_are_stamped_with_the_purges_now_then_expire(void **state)
{
	(void)state;
	store_close(open_store(dir)); /* creates the tables */
	uint8_t legacy[STORE_IDEM_DIGEST_BYTES + sizeof(answer)];
	memset(legacy, 0x5a, STORE_IDEM_DIGEST_BYTES);
	memcpy(legacy + STORE_IDEM_DIGEST_BYTES, answer, sizeof(answer));
	put_raw("legacy", legacy, sizeof(legacy));
	const uint8_t before_blake[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	put_raw("legacy-short", before_blake, sizeof(before_blake));
	struct store *s = open_store(dir);
	struct store_idem idem;
	uint8_t copy[64];
	assert_int_equal(get(s, "legacy", &idem, copy), STORE_OK);
	assert_int_equal(idem.time_ms, -1);
	assert_int_equal(idem.answer_size, sizeof(answer));
	int64_t retention_ms = 30 * DAY_MS;
	struct store_idem_purge st;
	assert_int_equal(retention_walk(s, T0, retention_ms, NULL, &st), STORE_OK);
	assert_int_equal(st.stamped, 2);
	assert_int_equal(st.deleted, 0);
	/* The digest and the answer are kept: a replay still answers as before. */
	assert_int_equal(get(s, "legacy", &idem, copy), STORE_OK);
	assert_int_equal(idem.time_ms, T0);
	assert_memory_equal(idem.digest, legacy, STORE_IDEM_DIGEST_BYTES);
	assert_int_equal(idem.answer_size, sizeof(answer));
	assert_memory_equal(copy, answer, sizeof(answer));
	assert_int_equal(get(s, "legacy-short", &idem, copy), STORE_OK);
	assert_int_equal(idem.time_ms, T0);
	uint8_t zero[STORE_IDEM_DIGEST_BYTES] = { 0 };
	assert_memory_equal(idem.digest, zero, sizeof(zero)); /* matches nothing: conflict, as before */
	/* A second walk the same day changes nothing; one past the retention deletes both. */
	assert_int_equal(retention_walk(s, T0 + DAY_MS, retention_ms, NULL, &st), STORE_OK);
	assert_int_equal(st.stamped + st.deleted, 0);
	assert_int_equal(retention_walk(s, T0 + retention_ms + 1, retention_ms, NULL, &st), STORE_OK);
	assert_int_equal(st.deleted, 2);
	assert_int_equal(get(s, "legacy", &idem, copy), STORE_NOT_FOUND);
	store_close(s);
}

static void append(struct store *s, const char *text)
{
	struct store_txn *t;
	assert_int_equal(store_write_begin(s, &t), STORE_OK);
	assert_int_equal(store_audit_append(t, (const uint8_t *)text, strlen(text)), STORE_OK);
	assert_int_equal(store_write_commit(t), STORE_OK);
}

struct seen {
	uint64_t seqs[8];
	uint32_t count;
	uint32_t stop_after;
};

static int collect(void *ctx, uint64_t seq, const uint8_t *record, size_t size)
{
	struct seen *seen = ctx;
	(void)record;
	(void)size;
	seen->seqs[seen->count++] = seq;
	return seen->count == seen->stop_after ? 7 : 0;
}

static void test_audit_walk_starts_after_the_sequence_and_stops_when_asked(void **state)
{
	(void)state;
	struct store *s = open_store(dir);
	for (int i = 0; i < 5; i++) {
		append(s, "r");
	}
	struct store_txn *t;
	assert_int_equal(store_read_begin(s, &t), STORE_OK);
	struct seen seen = { .stop_after = 0 };
	assert_int_equal(store_audit_each(t, 2, collect, &seen), STORE_OK);
	assert_int_equal(seen.count, 3);
	assert_int_equal(seen.seqs[0], 3);
	assert_int_equal(seen.seqs[2], 5);
	seen = (struct seen){ .stop_after = 2 };
	assert_int_equal(store_audit_each(t, 0, collect, &seen), 7);
	assert_int_equal(seen.count, 2);
	seen = (struct seen){ .stop_after = 0 };
	assert_int_equal(store_audit_each(t, 5, collect, &seen), STORE_OK);
	assert_int_equal(seen.count, 0);
	store_txn_end(t);
	store_close(s);
}

static int count_records(void *ctx, const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size)
{
	(void)key;
	(void)key_size;
	(void)value;
	(void)value_size;
	(*(uint64_t *)ctx)++;
	return 0;
}

static void test_table_walk_names_every_table_and_refuses_an_unknown_one(void **state)
{
	(void)state;
	struct store *s = open_store(dir);
	append(s, "r");
	append(s, "r");
	struct store_txn *t;
	assert_int_equal(store_read_begin(s, &t), STORE_OK);
	uint32_t tables = 0;
	bool audit_named = false;
	while (store_table_name(tables) != NULL) {
		audit_named |= strcmp(store_table_name(tables), "audit") == 0;
		tables++;
	}
	assert_true(tables >= 4);
	assert_true(audit_named);
	uint64_t n = 0;
	assert_int_equal(store_table_each(t, "audit", count_records, &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(store_table_each(t, "no-such-table", count_records, &n), STORE_NOT_FOUND);
	store_txn_end(t);
	store_close(s);
}

static void test_backup_copies_the_store_and_never_overwrites(void **state)
{
	(void)state;
	struct store *s = open_store(dir);
	append(s, "r");
	put_stamped(s, "k", T0);
	char out[128];
	char err[256];
	snprintf(out, sizeof(out), "%s/backup", dir);
	assert_int_equal(store_backup(s, out, err, sizeof(err)), STORE_OK);
	assert_int_equal(store_backup(s, out, err, sizeof(err)), STORE_IO);
	assert_non_null(strstr(err, "exists"));
	store_close(s);
	struct store *b = open_store(out);
	struct store_stats stats;
	assert_int_equal(store_stats(b, &stats), STORE_OK);
	assert_int_equal(stats.audit_records, 1);
	struct store_idem idem;
	uint8_t copy[64];
	assert_int_equal(get(b, "k", &idem, copy), STORE_OK);
	assert_int_equal(idem.time_ms, T0);
	store_close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_records_stamped_before_the_cutoff_go_and_those_at_it_stay, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_a_step_deletes_at_most_change_max, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_step_looks_at_most_look_max_and_the_walk_resumes_after_it, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_legacy_records_are_stamped_with_the_purges_now_then_expire, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_many_legacy_records_are_stamped_once_in_bounded_steps, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_audit_walk_starts_after_the_sequence_and_stops_when_asked, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_table_walk_names_every_table_and_refuses_an_unknown_one, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_backup_copies_the_store_and_never_overwrites, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
