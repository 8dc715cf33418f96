/* metrics: the HTTP endpoint for monitoring (--metrics-listen), served by
 * libmicrohttpd on a thread of its own, apart from the event loops:
 *   GET /metrics  the Prometheus text exposition of struct stats and the store's figures
 *   GET /healthz  200 "ok" while serving, 503 while starting or stopping
 * other paths 404, other methods 405. A scrape reads counters (relaxed
 * atomics) and takes one short read transaction: it never waits on a loop. */
#ifndef ARREARS_METRICS_H
#define ARREARS_METRICS_H

#include <stdint.h>

#include "../rpc/stats.h"
#include "../store/store.h"

#define METRICS_CONNECTIONS_MAX 32u  /* scrapers and probes at once; more wait in the backlog */
#define METRICS_TIMEOUT_S 10u         /* an idle HTTP connection is closed after this */

struct metrics;

/* Listens on host (numeric IPv4) and port (0: any free port; the port is
 * logged as event=metrics_listen) and serves from its own thread. stats
 * must outlive metrics_stop. Returns 0, or -errno when it cannot listen
 * (the caller exits: a monitoring endpoint asked for must not be missing). */
int metrics_start(const char *host, uint16_t port, struct stats *stats, struct metrics **out);
/* The store scrapes read, once it is open; it must stay open until metrics_stop. */
void metrics_set_store(struct metrics *m, struct store *store);
/* Stops serving and joins the thread; NULL is a no-op. */
void metrics_stop(struct metrics *m);

#endif
