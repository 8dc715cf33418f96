/* The idempotency purge thread (see retention.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "background.h"
#include "log.h"
#include "retention.h"

struct retention {
	struct store *store;
	int64_t retention_ms;
	struct background bg;
};

int64_t retention_now_ms(void)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	const char *offset = getenv("ARREARSD_TEST_CLOCK_OFFSET_MS");
	if (offset != NULL && offset[0] != '\0') {
		char *end;
		errno = 0;
		long long v = strtoll(offset, &end, 10);
		if (errno == 0 && *end == '\0') {
			ms += v;
		}
	}
	return ms;
}

int retention_walk(struct store *store, int64_t now_ms, int64_t retention_ms, const bool *stop,
		   struct store_idem_purge *st)
{
	memset(st, 0, sizeof(*st));
	int64_t cutoff_ms = now_ms - retention_ms;
	int rc = STORE_OK;
	while (rc == STORE_OK && !st->done && (stop == NULL || !__atomic_load_n(stop, __ATOMIC_ACQUIRE))) {
		uint64_t changed = st->deleted + st->stamped;
		rc = store_idem_purge_step(store, now_ms, cutoff_ms, RETENTION_LOOK_MAX, RETENTION_CHANGE_MAX, st);
		if (rc == STORE_OK && !st->done && st->deleted + st->stamped > changed) {
			struct timespec pause = { 0, RETENTION_PAUSE_US * 1000L };
			nanosleep(&pause, NULL);
		}
	}
	return rc;
}

static void *retention_main(void *arg)
{
	struct retention *r = arg;
	do {
		struct store_idem_purge st;
		int64_t started = background_now_ms();
		int rc = retention_walk(r->store, retention_now_ms(), r->retention_ms, &r->bg.stop, &st);
		bool stopped = __atomic_load_n(&r->bg.stop, __ATOMIC_ACQUIRE) && !st.done;
		log_event("event=idem_purge status=%s looked=%llu deleted=%llu stamped=%llu steps=%u ms=%lld",
			  rc != STORE_OK ? (rc == STORE_FULL ? "storage_full" : "storage_fault") : stopped ? "stopped" : "ok",
			  (unsigned long long)st.looked, (unsigned long long)st.deleted, (unsigned long long)st.stamped,
			  st.steps, (long long)(background_now_ms() - started));
	} while (background_sleep(&r->bg, RETENTION_INTERVAL_S * 1000ull));
	return NULL;
}

struct retention *retention_start(struct store *store, uint32_t days)
{
	if (days == 0) {
		return NULL;
	}
	struct retention *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		log_event("event=idem_purge status=not_started reason=out_of_memory");
		return NULL;
	}
	r->store = store;
	r->retention_ms = (int64_t)days * 86400000;
	if (!background_start(&r->bg, retention_main, r, "idem_purge", "idem_purge")) {
		free(r);
		return NULL;
	}
	return r;
}

void retention_stop(struct retention *r)
{
	if (r != NULL) {
		background_stop(&r->bg);
		free(r);
	}
}
