/* The LMDB store under unusual but legal conditions (issue 8): more read
 * transactions at once than LMDB's default 126 readers, and a stored
 * policy that no longer loads while requests keep coming. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpack.h>

#include "../rpc/dispatch.h"
#include "../io/server.h"
#include "../store/store.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/arrears-storage-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static struct store *open_store(void)
{
	struct store *s;
	char err[256];
	assert_int_equal(store_open(dir, NULL, &s, err, sizeof(err)), STORE_OK);
	return s;
}

/* LMDB's default is 126 readers; `--threads 64` makes 128 threads that may
 * each hold a read, and other processes (backup, import) read too. */
static void test_more_reads_at_once_than_lmdb_default_readers(void **state)
{
	(void)state;
	struct store *s = open_store();
	enum { READS = 2 * SERVER_THREADS_MAX + 64 };
	struct store_txn *txns[READS];
	for (int i = 0; i < READS; i++) {
		assert_int_equal(store_read_begin(s, &txns[i]), STORE_OK);
	}
	for (int i = 0; i < READS; i++) {
		store_txn_end(txns[i]);
	}
	store_close(s);
}

static void put_person(struct store *s, const char *id)
{
	struct core_slot slot = { .base_fen = 100000, .month = 2020 * 12, .city = 110000, .type = CORE_PENSION };
	struct store_txn *t;
	assert_int_equal(store_write_begin(s, &t), STORE_OK);
	uint8_t runs[64];
	size_t runs_size = core_timeline_encode(&slot, 1, runs, sizeof(runs));
	assert_true(runs_size > 0);
	assert_int_equal(store_person_put(t, id, -1, runs, runs_size, NULL, 0), STORE_OK);
	assert_int_equal(store_write_commit(t), STORE_OK);
}

/* A scan page's later parts look their ids up with store_scan_seek: it
 * must answer as store_person_get would, whatever was inserted between
 * the ids (fewer or more than the steps it takes before seeking), deleted,
 * or stored past the last. */
static void test_scan_seek_answers_as_a_lookup_whatever_lies_between(void **state)
{
	(void)state;
	struct store *s = open_store();
	char ids[40][CORE_ID_SIZE + 1];
	for (int i = 0; i < 40; i++) {
		snprintf(ids[i], sizeof(ids[i]), "1101011980010100%02u", (unsigned)i % 100u); /* ascending */
		put_person(s, ids[i]);
	}
	/* Looked up in ascending order: next to each other, 3 apart (stepped
	 * over), one never stored (it sorts between ids[9] and ids[10]), 2 on
	 * from where that left the cursor, 27 apart (sought), then past the last. */
	const char *absent = "11010119800101000X";
	const char *wanted[] = { ids[0], ids[1], ids[4], absent, ids[12], ids[39], "110101198001019999" };
	int expect[] = { STORE_OK, STORE_OK, STORE_OK, STORE_NOT_FOUND, STORE_OK, STORE_OK, STORE_NOT_FOUND };
	struct store_txn *t;
	struct store_scan *scan;
	assert_int_equal(store_read_begin(s, &t), STORE_OK);
	assert_int_equal(store_scan_open(t, NULL, 0, &scan), STORE_OK);
	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
		struct store_person p;
		struct store_person q;
		int rc = store_scan_seek(scan, wanted[i], strlen(wanted[i]), &p);
		assert_int_equal(rc, expect[i]);
		assert_int_equal(store_person_get(t, wanted[i], strlen(wanted[i]), &q), expect[i]);
		if (rc == STORE_OK) {
			assert_string_equal(p.id, wanted[i]);
			assert_int_equal(p.timeline.slot_count, 1);
		}
	}
	store_scan_close(scan);
	store_txn_end(t);
	/* One deleted between two parts: not_found at its place, its neighbours found. */
	assert_int_equal(store_write_begin(s, &t), STORE_OK);
	assert_int_equal(store_person_delete(t, ids[10], CORE_ID_SIZE), STORE_OK);
	assert_int_equal(store_write_commit(t), STORE_OK);
	assert_int_equal(store_read_begin(s, &t), STORE_OK);
	assert_int_equal(store_scan_open(t, NULL, 0, &scan), STORE_OK);
	struct store_person p;
	assert_int_equal(store_scan_seek(scan, ids[9], CORE_ID_SIZE, &p), STORE_OK);
	assert_int_equal(store_scan_seek(scan, ids[10], CORE_ID_SIZE, &p), STORE_NOT_FOUND);
	assert_int_equal(store_scan_seek(scan, ids[11], CORE_ID_SIZE, &p), STORE_OK);
	assert_string_equal(p.id, ids[11]);
	store_scan_close(scan);
	store_txn_end(t);
	store_close(s);
}

static size_t pack_request(msgpack_sbuffer *sb, uint32_t msgid, const char *method)
{
	msgpack_sbuffer_clear(sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_uint32(&pk, msgid);
	msgpack_pack_str_with_body(&pk, method, strlen(method));
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 0);
	return sb->size;
}

/* A policy that does not load (a damaged record) after another thread's
 * policy.put: the request is answered internal with its own msgid, not 0. */
static void test_policies_that_do_not_reload_answer_with_the_requests_msgid(void **state)
{
	(void)state;
	struct store *s = open_store();
	struct dispatch_shared shared = { .persons_max = 100 };
	struct dispatch *d = dispatch_new(s, &shared);
	assert_non_null(d);
	struct store_txn *txn;
	assert_int_equal(store_write_begin(s, &txn), STORE_OK);
	static const uint8_t damaged[] = { 0x81, 0xa4, 'c', 'i', 't', 'y', 0xc1 };
	assert_int_equal(store_policy_put(txn, 110000, damaged, sizeof(damaged)), STORE_OK);
	assert_int_equal(store_write_commit(txn), STORE_OK);
	__atomic_fetch_add(&shared.policy_generation, 1, __ATOMIC_RELEASE); /* as a policy.put elsewhere does */

	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	size_t size = pack_request(&sb, 4242, "ping");
	const uint8_t *response;
	size_t response_size;
	struct dispatch_outcome out;
	dispatch_frame(d, NULL, DISPATCH_ALL, (const uint8_t *)sb.data, size, &response, &response_size, &out);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	assert_int_equal(msgpack_unpack_next(&u, (const char *)response, response_size, &off), MSGPACK_UNPACK_SUCCESS);
	const msgpack_object *a = u.data.via.array.ptr;
	assert_int_equal(u.data.via.array.size, 4);
	assert_int_equal(a[1].via.u64, 4242);
	assert_int_equal(a[2].type, MSGPACK_OBJECT_MAP);
	assert_int_equal(a[2].via.map.ptr[0].val.via.u64, 9); /* code: internal */
	assert_true(out.error);
	assert_int_equal(out.msgid, 4242);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
	dispatch_free(d);
	store_close(s);
}

/* arrears.compute over 300 valid, unknown ids: 300 not_found entries. */
static size_t pack_ids_request(msgpack_sbuffer *sb)
{
	static const int w[17] = { 7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2 };
	msgpack_sbuffer_clear(sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_uint32(&pk, 77);
	msgpack_pack_str_with_body(&pk, "arrears.compute", 15);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "as_of", 5);
	msgpack_pack_uint32(&pk, 20251110);
	msgpack_pack_str_with_body(&pk, "ids", 3);
	msgpack_pack_array(&pk, 300);
	for (int n = 0; n < 300; n++) {
		char id[32];
		snprintf(id, sizeof(id), "11010119900101%03u", (unsigned)n % 1000); /* born 1990-01-01, sequence n */
		int sum = 0;
		for (int i = 0; i < 17; i++) {
			sum += (id[i] - '0') * w[i];
		}
		id[17] = "10X98765432"[sum % 11];
		msgpack_pack_str_with_body(&pk, id, 18);
	}
	return sb->size;
}

/* An answer in parts is the whole answer, byte for byte; a later part that
 * cannot go on (policies that no longer load) closes the connection
 * instead of putting an error message inside the results. */
static void test_parts_join_to_the_whole_answer_and_a_broken_part_closes(void **state)
{
	(void)state;
	struct store *s = open_store();
	struct dispatch_shared shared = { .persons_max = 100000 };
	struct dispatch *d = dispatch_new(s, &shared);
	assert_non_null(d);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	size_t size = pack_ids_request(&sb);
	const uint8_t *r;
	size_t rs;
	struct dispatch_outcome out;
	dispatch_frame(d, NULL, DISPATCH_ALL, (const uint8_t *)sb.data, size, &r, &rs, &out);
	uint8_t *whole = malloc(rs);
	memcpy(whole, r, rs);
	size_t whole_size = rs;
	for (int damaged = 0; damaged < 2; damaged++) {
		struct dispatch_resume resume = { 0 };
		uint8_t *joined = malloc(whole_size);
		size_t joined_size = 0;
		int parts = 0;
		do {
			dispatch_frame_part(d, NULL, (const uint8_t *)sb.data, size, 4096, &resume, &r, &rs, &out);
			assert_true(joined_size + rs <= whole_size);
			if (rs > 0) { /* a part that closes the connection has no bytes */
				memcpy(joined + joined_size, r, rs);
			}
			joined_size += rs;
			if (++parts == 1 && damaged) {
				struct store_txn *txn;
				static const uint8_t bad[] = { 0x81, 0xa4, 'c', 'i', 't', 'y', 0xc1 };
				assert_int_equal(store_write_begin(s, &txn), STORE_OK);
				assert_int_equal(store_policy_put(txn, 110000, bad, sizeof(bad)), STORE_OK);
				assert_int_equal(store_write_commit(txn), STORE_OK);
				__atomic_fetch_add(&shared.policy_generation, 1, __ATOMIC_RELEASE);
			}
		} while (out.partial);
		if (!damaged) {
			assert_true(parts > 3); /* 300 entries of ~80 bytes in parts of 4 KiB */
			assert_int_equal(joined_size, whole_size);
			assert_memory_equal(joined, whole, whole_size);
		} else {
			assert_int_equal(parts, 2);
			assert_int_equal(rs, 0);
			assert_true(out.close);
		}
		dispatch_resume_free(&resume);
		free(joined);
	}
	free(whole);
	msgpack_sbuffer_destroy(&sb);
	dispatch_free(d);
	store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_more_reads_at_once_than_lmdb_default_readers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_seek_answers_as_a_lookup_whatever_lies_between, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policies_that_do_not_reload_answer_with_the_requests_msgid, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_parts_join_to_the_whole_answer_and_a_broken_part_closes, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
