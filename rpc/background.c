/* Housekeeping threads (see background.h). */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "background.h"
#include "log.h"

bool background_start(struct background *b, void *(*fn)(void *), void *arg, const char *name, const char *event)
{
	b->stop = false;
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&b->wake, &attr);
	pthread_condattr_destroy(&attr);
	pthread_mutex_init(&b->lock, NULL);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread inherits the mask */
	int rc = pthread_create(&b->thread, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_event("event=%s status=not_started reason=%s", event, strerror(rc));
		pthread_cond_destroy(&b->wake);
		pthread_mutex_destroy(&b->lock);
		return false;
	}
	pthread_setname_np(b->thread, name);
	return true;
}

bool background_sleep(struct background *b, uint64_t ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&b->lock);
	while (!b->stop && pthread_cond_timedwait(&b->wake, &b->lock, &until) != ETIMEDOUT) {
	}
	bool go_on = !b->stop;
	pthread_mutex_unlock(&b->lock);
	return go_on;
}

void background_stop(struct background *b)
{
	pthread_mutex_lock(&b->lock);
	__atomic_store_n(&b->stop, true, __ATOMIC_RELEASE);
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
	pthread_join(b->thread, NULL);
	pthread_cond_destroy(&b->wake);
	pthread_mutex_destroy(&b->lock);
}

int64_t background_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}
