/* The counters behind server.stats and /metrics, and their Prometheus text:
 * exact seconds, cumulative buckets, one series per method and code, a page
 * that does not fit reported as 0 (never cut in the middle of a line). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../rpc/stats.h"

static const char *const names[STATS_METHODS_MAX] = { "ping", "arrears.compute" }; /* the rest NULL */
static const char *const codes[STATS_CODES] = { NULL, "malformed", "unknown_method", "invalid_argument",
						 "not_found", "conflict", "too_large", "overloaded",
						 "unauthorized", "internal" };

static char page[STATS_TEXT_BYTES_MAX];

static size_t render(const struct stats *s)
{
	struct stats_gauges g = { .uptime_s = 1.5, .store_readable = true, .store_used_bytes = 12288,
				  .store_map_bytes = 1ull << 40, .store_persons = 7 };
	return stats_prometheus(s, names, codes, "0.1.0", &g, page, sizeof(page));
}

static void has_line(const char *line)
{
	char want[256];
	snprintf(want, sizeof(want), "\n%s\n", line);
	if (strstr(page, want) == NULL) {
		fail_msg("missing line: %s", line);
	}
}

static void test_seconds_text_is_exact_and_drops_trailing_zeros(void **state)
{
	(void)state;
	char t[32];
	stats_seconds_text(0, t);
	assert_string_equal(t, "0");
	stats_seconds_text(8192, t);
	assert_string_equal(t, "0.000008192");
	stats_seconds_text(1000000000, t);
	assert_string_equal(t, "1");
	stats_seconds_text(17179869184ull, t); /* 2^34 ns: the last finite edge */
	assert_string_equal(t, "17.179869184");
	stats_seconds_text(UINT64_MAX, t);
	assert_string_equal(t, "18446744073.709551615");
}

static void test_request_counts_error_by_code_and_out_of_range_as_internal(void **state)
{
	(void)state;
	static struct stats s;
	memset(&s, 0, sizeof(s));
	stats_request(&s, 0, 0, 1000);
	stats_request(&s, 0, 3, 1000);
	stats_request(&s, 1, 42, 1000);               /* no such code: internal */
	stats_request(&s, STATS_METHODS_MAX + 5, 1, 0); /* past the table: the unknown row */
	assert_int_equal(s.requests[0], 2);
	assert_int_equal(s.errors[0], 1);
	assert_int_equal(s.error_codes[0][3], 1);
	assert_int_equal(s.error_codes[1][9], 1);
	assert_int_equal(s.error_codes[STATS_METHODS_MAX - 1][1], 1);
	assert_int_equal(s.latency_ns_sum[0], 2000);
	assert_int_equal(stats_errors_of_code(&s, 3), 1);
	assert_int_equal(stats_errors_of_code(&s, 9), 1);
	assert_int_equal(stats_errors_of_code(&s, 0), 0);
	assert_int_equal(stats_errors_of_code(&s, 10), 0);
}

static void test_page_has_every_family_and_cumulative_buckets(void **state)
{
	(void)state;
	static struct stats s;
	memset(&s, 0, sizeof(s));
	atomic_store(&s.serving, true);
	stats_request(&s, 0, 0, 100);              /* bucket 6: under the first edge */
	stats_request(&s, 0, 0, 8191);             /* bucket 12: le 0.000008192 */
	stats_request(&s, 0, 0, 8192);             /* bucket 13: le 0.000016384 */
	stats_request(&s, 0, 7, 1ull << 40);       /* past the last edge: +Inf only */
	stats_request(&s, STATS_METHODS_MAX - 1, 1, 0);
	atomic_store(&s.person_errors, 3);
	size_t size = render(&s);
	assert_true(size > 0);
	assert_int_equal(strlen(page), size);
	has_line("arrears_build_info{version=\"0.1.0\"} 1");
	has_line("arrears_uptime_seconds 1.500");
	has_line("arrears_serving 1");
	has_line("arrears_requests_total{method=\"ping\"} 4");
	has_line("arrears_requests_total{method=\"arrears.compute\"} 0");
	has_line("arrears_requests_total{method=\"unknown\"} 1");
	has_line("arrears_errors_total{method=\"ping\",code=\"overloaded\"} 1");
	has_line("arrears_errors_total{method=\"ping\",code=\"internal\"} 0");
	has_line("arrears_errors_total{method=\"unknown\",code=\"malformed\"} 1");
	has_line("arrears_person_errors_total 3");
	has_line("# TYPE arrears_request_duration_seconds histogram");
	has_line("arrears_request_duration_seconds_bucket{method=\"ping\",le=\"0.000008192\"} 2");
	has_line("arrears_request_duration_seconds_bucket{method=\"ping\",le=\"0.000016384\"} 3");
	has_line("arrears_request_duration_seconds_bucket{method=\"ping\",le=\"17.179869184\"} 3");
	has_line("arrears_request_duration_seconds_bucket{method=\"ping\",le=\"+Inf\"} 4");
	has_line("arrears_request_duration_seconds_count{method=\"ping\"} 4");
	has_line("arrears_request_duration_seconds_sum{method=\"ping\"} 1099.511644259"); /* 2^40 + 100 + 8191 + 8192 ns */
	has_line("arrears_store_map_bytes 1099511627776");
	has_line("arrears_store_persons 7");
	has_line("# TYPE arrears_connections_accepted_total counter");
	has_line("# TYPE arrears_answer_bytes gauge");
	/* Rows without a name (past the method table) are not exported. */
	assert_null(strstr(page, "(null)"));
	assert_int_equal(page[size - 1], '\n');
}

static void test_page_that_does_not_fit_is_zero(void **state)
{
	(void)state;
	static struct stats s;
	memset(&s, 0, sizeof(s));
	struct stats_gauges g = { 0 };
	char small[512];
	assert_int_equal(stats_prometheus(&s, names, codes, "0.1.0", &g, small, sizeof(small)), 0);
	size_t whole = stats_prometheus(&s, names, codes, "0.1.0", &g, page, sizeof(page));
	assert_true(whole > 0);
	char *exact = malloc(whole + 1); /* the text and its terminator fit exactly */
	assert_int_equal(stats_prometheus(&s, names, codes, "0.1.0", &g, exact, whole + 1) > 0, 1);
	assert_int_equal(stats_prometheus(&s, names, codes, "0.1.0", &g, exact, whole), 0);
	free(exact);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seconds_text_is_exact_and_drops_trailing_zeros),
		cmocka_unit_test(test_request_counts_error_by_code_and_out_of_range_as_internal),
		cmocka_unit_test(test_page_has_every_family_and_cumulative_buckets),
		cmocka_unit_test(test_page_that_does_not_fit_is_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
