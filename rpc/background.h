/* background: the server's housekeeping threads (the idempotency purge,
 * the summary walk). Each blocks every signal (they belong to the
 * server's waiting thread), sleeps on the monotonic clock between passes,
 * and stops after the transaction under way. */
#ifndef ARREARS_BACKGROUND_H
#define ARREARS_BACKGROUND_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct background {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop; /* set under the lock; long passes read it without (__atomic) */
};

/* Starts fn(arg) as the thread named name. False (logged as
 * event=<event> status=not_started) when it cannot. */
bool background_start(struct background *b, void *(*fn)(void *), void *arg, const char *name, const char *event);
/* Sleeps ms, or until stopped: false once the thread is to stop. */
bool background_sleep(struct background *b, uint64_t ms);
/* Asks the thread to stop, wakes it and joins it. */
void background_stop(struct background *b);
/* Milliseconds on the monotonic clock, for a pass's duration. */
int64_t background_now_ms(void);

#endif
