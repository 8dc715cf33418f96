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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_more_reads_at_once_than_lmdb_default_readers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policies_that_do_not_reload_answer_with_the_requests_msgid, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
