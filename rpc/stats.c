#include "stats.h"

static uint32_t bucket_of(uint64_t ns)
{
	uint32_t k = ns == 0 ? 0 : 63u - (uint32_t)__builtin_clzll(ns);
	return k < STATS_BUCKETS ? k : STATS_BUCKETS - 1;
}

void stats_request(struct stats *s, uint32_t method, bool error, uint64_t latency_ns)
{
	if (method >= STATS_METHODS_MAX) {
		method = STATS_METHODS_MAX - 1;
	}
	atomic_fetch_add_explicit(&s->requests[method], 1, memory_order_relaxed);
	if (error) {
		atomic_fetch_add_explicit(&s->errors[method], 1, memory_order_relaxed);
	}
	atomic_fetch_add_explicit(&s->latency[method][bucket_of(latency_ns)], 1, memory_order_relaxed);
}

uint64_t stats_latency_us(const struct stats *s, uint32_t method, double q)
{
	uint64_t counts[STATS_BUCKETS];
	uint64_t total = 0;
	for (uint32_t k = 0; k < STATS_BUCKETS; k++) {
		counts[k] = atomic_load_explicit(&s->latency[method][k], memory_order_relaxed);
		total += counts[k];
	}
	if (total == 0) {
		return 0;
	}
	uint64_t want = (uint64_t)(q * (double)total);
	uint64_t seen = 0;
	for (uint32_t k = 0; k < STATS_BUCKETS; k++) {
		seen += counts[k];
		if (seen > want) {
			return ((2ull << k) + 999) / 1000;
		}
	}
	return ((2ull << (STATS_BUCKETS - 1)) + 999) / 1000;
}
