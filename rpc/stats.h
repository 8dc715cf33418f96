/* stats: process-wide counters for server.stats, updated lock-free from
 * every loop and worker thread. */
#ifndef ARREARS_STATS_H
#define ARREARS_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define STATS_METHODS_MAX 24u  /* method table size, plus one row for unknown or malformed */
#define STATS_BUCKETS 40u      /* latency bucket k holds [2^k, 2^(k+1)) nanoseconds */

struct stats {
	atomic_uint_fast64_t connections_open;
	atomic_uint_fast64_t connections_total;
	atomic_uint_fast64_t connections_refused;
	atomic_uint_fast64_t requests[STATS_METHODS_MAX];
	atomic_uint_fast64_t errors[STATS_METHODS_MAX];
	atomic_uint_fast64_t latency[STATS_METHODS_MAX][STATS_BUCKETS];
};

/* One answered request of method row `method` (STATS_METHODS_MAX - 1 for unknown). */
void stats_request(struct stats *s, uint32_t method, bool error, uint64_t latency_ns);
/* The latency below which a fraction q of the method's requests fell, in
 * microseconds (the upper edge of its bucket); 0 without requests. */
uint64_t stats_latency_us(const struct stats *s, uint32_t method, double q);

#endif
