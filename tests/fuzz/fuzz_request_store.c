/* The whole request path with a store: as fuzz_request (but for the
 * whole-answer comparison: a write run twice does not answer the same),
 * plus the LMDB store behind reads, scans, writes, idempotency and the
 * audit log. The
 * store lives in a temporary directory made once per process, in a map of
 * STORE_MAP_BYTES so writes cannot grow the disk much, and holds the policy
 * and the person of fuzz_common.h from the start. Writes accumulate across
 * inputs, so a crash may depend on inputs before it: replaying the crash
 * file alone runs it against a fresh store. Every RESET_INPUTS inputs the
 * store starts over, so the map never fills for good. The token and an
 * authenticated session exercise auth without locking the fuzzer out. */
#include <unistd.h>

#include "fuzz_common.h"

#define STORE_MAP_BYTES (32ull << 20)
#define RESET_INPUTS 4096u
#define PERSONS_MAX 1000u /* a scan page per input stays cheap */

static char dir[] = "/tmp/arrears-fuzz-XXXXXX";
static struct store *store;
static struct dispatch *d;
static struct dispatch_shared shared = { .token = "secret", .token_size = 6, .persons_max = PERSONS_MAX };
static uint32_t inputs;

static void store_remove(void)
{
	char path[sizeof(dir) + 16];
	dispatch_free(d);
	store_close(store);
	d = NULL;
	store = NULL;
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
}

static void store_start(void)
{
	char errbuf[256];
	struct store_options options = { .map_bytes_max = STORE_MAP_BYTES };
	if (store_open(dir, &options, &store, errbuf, sizeof(errbuf)) != STORE_OK) {
		fprintf(stderr, "fuzz: store_open: %s\n", errbuf);
		abort();
	}
	d = dispatch_new(store, &shared);
	FUZZ_CHECK(d != NULL);
	size_t size;
	uint8_t *frame = fuzz_json_frame("policy.put", "policy", fuzz_policy_json, &size);
	fuzz_run_stream(d, NULL, frame, size, false);
	free(frame);
	frame = fuzz_json_frame("person.put", NULL, fuzz_person_json, &size);
	fuzz_run_stream(d, NULL, frame, size, false);
	free(frame);
}

static void cleanup(void)
{
	store_remove();
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (mkdtemp(dir) == NULL) {
		perror("fuzz: mkdtemp");
		abort();
	}
	atexit(cleanup);
	store_start();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (++inputs % RESET_INPUTS == 0) {
		store_remove();
		store_start();
	}
	struct dispatch_session session = { .authed = true };
	fuzz_run_stream(d, &session, data, size, false);
	return 0;
}
