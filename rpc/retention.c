/* The idempotency purge thread (see retention.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "retention.h"

struct retention {
	struct store *store;
	int64_t retention_ms;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
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
	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		pthread_mutex_unlock(&r->lock);
		struct store_idem_purge st;
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int rc = retention_walk(r->store, retention_now_ms(), r->retention_ms, &r->stop, &st);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		bool stopped = __atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) && !st.done;
		log_event("event=idem_purge status=%s looked=%llu deleted=%llu stamped=%llu steps=%u ms=%lld",
			  rc != STORE_OK ? (rc == STORE_FULL ? "storage_full" : "storage_fault") : stopped ? "stopped" : "ok",
			  (unsigned long long)st.looked, (unsigned long long)st.deleted, (unsigned long long)st.stamped,
			  st.steps, (long long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
		pthread_mutex_lock(&r->lock);
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += RETENTION_INTERVAL_S;
		while (!r->stop && pthread_cond_timedwait(&r->wake, &r->lock, &until) != ETIMEDOUT) {
		}
	}
	pthread_mutex_unlock(&r->lock);
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
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->wake, &attr);
	pthread_condattr_destroy(&attr);
	pthread_mutex_init(&r->lock, NULL);
	/* Signals belong to the server's waiting thread: the purge blocks them all. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&r->thread, NULL, retention_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0) {
		pthread_setname_np(r->thread, "idem_purge");
	}
	if (rc != 0) {
		log_event("event=idem_purge status=not_started reason=%s", strerror(rc));
		pthread_cond_destroy(&r->wake);
		pthread_mutex_destroy(&r->lock);
		free(r);
		return NULL;
	}
	return r;
}

void retention_stop(struct retention *r)
{
	if (r == NULL) {
		return;
	}
	pthread_mutex_lock(&r->lock);
	__atomic_store_n(&r->stop, true, __ATOMIC_RELEASE); /* read by the walk without the lock */
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->wake);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
