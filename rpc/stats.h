/* stats: process-wide counters for server.stats and the metrics endpoint,
 * updated lock-free (relaxed atomics) from every loop and worker thread. */
#ifndef ARREARS_STATS_H
#define ARREARS_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATS_METHODS_MAX 24u  /* method table size, plus one row for unknown or malformed */
#define STATS_BUCKETS 40u      /* latency bucket k holds [2^k, 2^(k+1)) nanoseconds */
#define STATS_CODES 10u        /* error codes 1..9 (SPEC Appendix A); 0 is success */
#define STATS_TEXT_BYTES_MAX (1u << 20) /* one /metrics page; ~60 KiB for 16 methods */

struct stats {
	uint64_t started_ns; /* CLOCK_MONOTONIC at start; set before any thread reads it */
	atomic_bool serving; /* the loops run and take requests (not starting, not stopping) */
	atomic_uint_fast64_t connections_open;
	atomic_uint_fast64_t connections_total;
	atomic_uint_fast64_t connections_refused;
	atomic_uint_fast64_t received_bytes;
	atomic_uint_fast64_t sent_bytes;
	atomic_uint_fast64_t worker_queue_depth; /* a copy of the queue's length, written under its lock */
	atomic_size_t answer_bytes;  /* answers held for all clients together (the server's answer budget) */
	atomic_uint_fast64_t person_errors; /* per-person (and per-item) errors inside results */
	atomic_uint_fast64_t persons_summarized; /* stored persons answered from their summary */
	atomic_uint_fast64_t requests[STATS_METHODS_MAX];
	atomic_uint_fast64_t errors[STATS_METHODS_MAX];
	atomic_uint_fast64_t error_codes[STATS_METHODS_MAX][STATS_CODES];
	atomic_uint_fast64_t latency_ns_sum[STATS_METHODS_MAX];
	atomic_uint_fast64_t latency[STATS_METHODS_MAX][STATS_BUCKETS];
};

/* CLOCK_MONOTONIC in nanoseconds (started_ns, uptime). */
uint64_t stats_now_ns(void);
/* One answered request of method row `method` (STATS_METHODS_MAX - 1 for
 * unknown); code: its error code, 0 for a result. */
void stats_request(struct stats *s, uint32_t method, int code, uint64_t latency_ns);
/* The latency below which a fraction q of the method's requests fell, in
 * microseconds (the upper edge of its bucket); 0 without requests. */
uint64_t stats_latency_us(const struct stats *s, uint32_t method, double q);
/* Errors of one code summed over the methods. */
uint64_t stats_errors_of_code(const struct stats *s, int code);

/* What a scrape reads besides the counters. */
struct stats_gauges {
	double uptime_s;
	bool store_readable; /* a read transaction began; the figures below are 0 otherwise */
	uint64_t store_used_bytes;
	uint64_t store_map_bytes;
	uint64_t store_persons;
	uint64_t store_audit_records;
	uint64_t store_idem_records;
};

/* The Prometheus text exposition (format 0.0.4) of s and g into out.
 * method_names[row] names each stats row, NULL for rows not in use (the
 * last row is "unknown" whatever it says); code_names[code] for 1..9.
 * Returns the bytes written, 0 when out_size is too small. */
size_t stats_prometheus(const struct stats *s, const char *const method_names[STATS_METHODS_MAX],
			const char *const code_names[STATS_CODES], const char *version, const struct stats_gauges *g,
			char *out, size_t out_size);
/* Nanoseconds as seconds, exactly, trailing zeros dropped: 8192 → "0.000008192". */
void stats_seconds_text(uint64_t ns, char out[32]);

#endif
