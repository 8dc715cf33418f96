/* retention: idempotency records do not grow forever. A thread walks the
 * idempotency table when the server starts and every RETENTION_INTERVAL_S,
 * in short write transactions of bounded size, deleting records stored
 * more than the retention ago (a replay after that runs as a new request)
 * and stamping records of the layout before time stamps with "now". */
#ifndef ARREARS_RETENTION_H
#define ARREARS_RETENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "../store/store.h"

#define RETENTION_DAYS_DEFAULT 30u
#define RETENTION_DAYS_MAX 36500u    /* a century: past it, use 0 (keep forever) */
#define RETENTION_INTERVAL_S 300u    /* between walks */
#define RETENTION_LOOK_MAX 8192u     /* records looked at in one write transaction */
#define RETENTION_CHANGE_MAX 512u    /* deletions and stamps in one write transaction */
#define RETENTION_PAUSE_US 1000u     /* between transactions: writers get the lock */

/* The clock of the purge, in ms since the epoch: CLOCK_REALTIME plus
 * ARREARSD_TEST_CLOCK_OFFSET_MS when set (a signed integer; for the tests
 * only, to age records without waiting a month). */
int64_t retention_now_ms(void);

/* One whole walk at now_ms: deletes records stamped before
 * now_ms - retention_ms, in steps of RETENTION_LOOK_MAX / _CHANGE_MAX.
 * totals gets the walk's counts. Between steps it gives up when *stop
 * (NULL: never) is set, so that shutdown does not wait for a long walk.
 * STORE_OK or the failing step's code. */
int retention_walk(struct store *store, int64_t now_ms, int64_t retention_ms, const bool *stop,
		   struct store_idem_purge *totals);

struct retention;
/* Starts the purge thread (days > 0), which blocks every signal. NULL when
 * days is 0 or the thread cannot start (logged). */
struct retention *retention_start(struct store *store, uint32_t days);
/* Stops the thread after the transaction under way and joins it. NULL: nothing. */
void retention_stop(struct retention *r);

#endif
