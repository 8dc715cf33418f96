#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "stats.h"

/* Exported histogram edges: bucket k ends at 2^(k+1) ns; k from 12 (8.192 µs)
 * to 33 (17.18 s). Faster requests fall in the first edge, slower in +Inf. */
#define EDGE_BUCKET_FIRST 12u
#define EDGE_BUCKET_LAST 33u
_Static_assert(EDGE_BUCKET_LAST + 1 < STATS_BUCKETS, "the last bucket is open-ended");

static uint32_t bucket_of(uint64_t ns)
{
	uint32_t k = ns == 0 ? 0 : 63u - (uint32_t)__builtin_clzll(ns);
	return k < STATS_BUCKETS ? k : STATS_BUCKETS - 1;
}

uint64_t stats_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void stats_request(struct stats *s, uint32_t method, int code, uint64_t latency_ns)
{
	if (method >= STATS_METHODS_MAX) {
		method = STATS_METHODS_MAX - 1;
	}
	atomic_fetch_add_explicit(&s->requests[method], 1, memory_order_relaxed);
	if (code != 0) {
		uint32_t c = code > 0 && (uint32_t)code < STATS_CODES ? (uint32_t)code : STATS_CODES - 1; /* internal */
		atomic_fetch_add_explicit(&s->errors[method], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->error_codes[method][c], 1, memory_order_relaxed);
	}
	atomic_fetch_add_explicit(&s->latency_ns_sum[method], latency_ns, memory_order_relaxed);
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

uint64_t stats_errors_of_code(const struct stats *s, int code)
{
	uint64_t n = 0;
	for (uint32_t m = 0; code > 0 && (uint32_t)code < STATS_CODES && m < STATS_METHODS_MAX; m++) {
		n += atomic_load_explicit(&s->error_codes[m][code], memory_order_relaxed);
	}
	return n;
}

void stats_seconds_text(uint64_t ns, char out[32])
{
	int n = snprintf(out, 32, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u, ns % 1000000000u);
	while (n > 0 && out[n - 1] == '0') {
		out[--n] = '\0';
	}
	if (n > 0 && out[n - 1] == '.') {
		out[--n] = '\0';
	}
}

/* Appends into a fixed buffer; an overflow sticks (one check at the end). */
struct text {
	char *data;
	size_t size;
	size_t capacity;
	bool overflow;
};

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *format, ...)
{
	if (t->overflow) {
		return;
	}
	va_list ap;
	va_start(ap, format);
	int n = vsnprintf(t->data + t->size, t->capacity - t->size, format, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= t->capacity - t->size) {
		t->overflow = true;
		return;
	}
	t->size += (size_t)n;
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP arrears_%s %s\n# TYPE arrears_%s %s\n", name, help, name, type);
}

static uint64_t load(const atomic_uint_fast64_t *a)
{
	return atomic_load_explicit(a, memory_order_relaxed);
}

static const char *row_name(const char *const names[STATS_METHODS_MAX], uint32_t row)
{
	return row == STATS_METHODS_MAX - 1 ? "unknown" : names[row];
}

static void histogram(struct text *t, const struct stats *s, const char *const names[STATS_METHODS_MAX])
{
	family(t, "request_duration_seconds", "histogram",
	       "Time from a request's last byte to its answer (the last part's), by method.");
	for (uint32_t m = 0; m < STATS_METHODS_MAX; m++) {
		const char *name = row_name(names, m);
		if (name == NULL) {
			continue;
		}
		uint64_t cumulative = 0;
		for (uint32_t k = 0; k < STATS_BUCKETS; k++) {
			cumulative += load(&s->latency[m][k]);
			if (k >= EDGE_BUCKET_FIRST && k <= EDGE_BUCKET_LAST) {
				char le[32];
				stats_seconds_text(2ull << k, le);
				put(t, "arrears_request_duration_seconds_bucket{method=\"%s\",le=\"%s\"} %" PRIu64 "\n", name,
				    le, cumulative);
			}
		}
		char sum[32];
		stats_seconds_text(load(&s->latency_ns_sum[m]), sum);
		put(t, "arrears_request_duration_seconds_bucket{method=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name,
		    cumulative);
		put(t, "arrears_request_duration_seconds_sum{method=\"%s\"} %s\n", name, sum);
		put(t, "arrears_request_duration_seconds_count{method=\"%s\"} %" PRIu64 "\n", name, cumulative);
	}
}

static void requests(struct text *t, const struct stats *s, const char *const names[STATS_METHODS_MAX],
		     const char *const codes[STATS_CODES])
{
	family(t, "requests_total", "counter", "Requests answered (or shed), by method; unknown: unknown method or bad frame.");
	for (uint32_t m = 0; m < STATS_METHODS_MAX; m++) {
		if (row_name(names, m) != NULL) {
			put(t, "arrears_requests_total{method=\"%s\"} %" PRIu64 "\n", row_name(names, m),
			    load(&s->requests[m]));
		}
	}
	family(t, "errors_total", "counter", "Requests answered with an error, by method and error code name.");
	for (uint32_t m = 0; m < STATS_METHODS_MAX; m++) {
		for (uint32_t c = 1; c < STATS_CODES && row_name(names, m) != NULL; c++) {
			put(t, "arrears_errors_total{method=\"%s\",code=\"%s\"} %" PRIu64 "\n", row_name(names, m), codes[c],
			    load(&s->error_codes[m][c]));
		}
	}
	family(t, "person_errors_total", "counter", "Per-person errors inside results (the request itself succeeded).");
	put(t, "arrears_person_errors_total %" PRIu64 "\n", load(&s->person_errors));
	family(t, "persons_summarized_total", "counter",
	       "Stored persons answered from their settled-part summary instead of every run.");
	put(t, "arrears_persons_summarized_total %" PRIu64 "\n", load(&s->persons_summarized));
}

static void single(struct text *t, const char *type, const char *name, const char *help, uint64_t value)
{
	family(t, name, type, help);
	put(t, "arrears_%s %" PRIu64 "\n", name, value);
}

size_t stats_prometheus(const struct stats *s, const char *const method_names[STATS_METHODS_MAX],
			const char *const code_names[STATS_CODES], const char *version, const struct stats_gauges *g,
			char *out, size_t out_size)
{
	struct text t = { .data = out, .capacity = out_size };
	family(&t, "build_info", "gauge", "The running build; always 1.");
	put(&t, "arrears_build_info{version=\"%s\"} 1\n", version);
	family(&t, "uptime_seconds", "gauge", "Seconds since the server started.");
	put(&t, "arrears_uptime_seconds %.3f\n", g->uptime_s);
	single(&t, "gauge", "serving", "1 while the store is open and the event loops take requests; 0 starting or stopping.",
		atomic_load_explicit(&s->serving, memory_order_relaxed) ? 1 : 0);
	requests(&t, s, method_names, code_names);
	histogram(&t, s, method_names);
	single(&t, "gauge", "connections_open", "Client connections open now.", load(&s->connections_open));
	single(&t, "counter", "connections_accepted_total", "Client connections accepted.", load(&s->connections_total));
	single(&t, "counter", "connections_refused_total", "Connections refused (overloaded) past --max-connections.",
		load(&s->connections_refused));
	single(&t, "counter", "received_bytes_total", "Bytes received from clients.", load(&s->received_bytes));
	single(&t, "counter", "sent_bytes_total", "Bytes sent to clients.", load(&s->sent_bytes));
	single(&t, "gauge", "answer_bytes", "Bytes of answers waiting in memory to be sent (--max-answer-memory bounds them).",
		atomic_load_explicit(&s->answer_bytes, memory_order_relaxed));
	single(&t, "gauge", "worker_queue_depth", "Requests queued for the worker threads.", load(&s->worker_queue_depth));
	single(&t, "gauge", "store_readable", "1 when a read transaction on the store began at this scrape.",
		g->store_readable ? 1 : 0);
	single(&t, "gauge", "store_used_bytes", "Bytes of the store file in use (pages in use times page size).",
		g->store_used_bytes);
	single(&t, "gauge", "store_map_bytes", "Bytes of address space mapped for the store (--map-max).", g->store_map_bytes);
	single(&t, "gauge", "store_persons", "Persons stored.", g->store_persons);
	single(&t, "gauge", "store_audit_records", "Records in the audit log.", g->store_audit_records);
	single(&t, "gauge", "store_idem_records", "Idempotency records kept.", g->store_idem_records);
	return t.overflow ? 0 : t.size;
}
