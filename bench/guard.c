/* The instruction guard's workloads (bench/guard.py runs them under
 * callgrind): the benchmark person of bench_core.cc (30 years x 5 types,
 * every 20th month unpaid) through the core, the core on the store's run
 * encoding, and the whole request path. `guard CASE REPS` runs the case's
 * setup, then REPS repetitions; guard.py takes the difference of two REPS
 * so that setup and process start cancel out. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../rpc/dispatch.h"
#include "fixture.h"

static struct core_slot slots[BENCH_SLOTS];
static const uint32_t slot_count = BENCH_SLOTS;
static struct core_period period;
static struct core_policy policy;

static int core_case(long reps, bool encoded)
{
	const struct core_policy *items[] = { &policy };
	struct core_policy_set set = { items, 1 };
	struct core_timeline tl = { slots, slot_count, NULL, 0, NULL, 0 };
	uint8_t *runs = NULL;
	if (encoded) {
		size_t capacity = core_timeline_encode_max(slot_count);
		runs = malloc(capacity);
		if (runs == NULL) {
			return 1;
		}
		tl = (struct core_timeline){ NULL, slot_count, runs, core_timeline_encode(slots, slot_count, runs, capacity),
					     NULL, 0 };
	}
	struct core_arrears out = { 0 };
	uint32_t item_count;
	for (long r = 0; r < reps; r++) {
		if (core_arrears_compute(&set, &tl, core_as_of_make(BENCH_AS_OF), &out, NULL, &item_count) != 0) {
			break;
		}
	}
	free(runs);
	return reps > 0 && out.months_owed != BENCH_OWED;
}

static int request_case(long reps)
{
	struct dispatch *d = dispatch_new(NULL, NULL);
	msgpack_sbuffer put, req;
	msgpack_sbuffer_init(&put);
	msgpack_sbuffer_init(&req);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &put, msgpack_sbuffer_write);
	bench_pack_policy_put(&pk);
	msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
	bench_pack_arrears_request(&pk, slots, slot_count);
	struct dispatch_outcome outcome;
	const uint8_t *response = NULL;
	size_t response_size = 0;
	dispatch_frame(d, NULL, DISPATCH_ALL, (const uint8_t *)put.data, put.size, &response, &response_size, &outcome);
	for (long r = 0; r < reps; r++) {
		dispatch_frame(d, NULL, DISPATCH_ALL, (const uint8_t *)req.data, req.size, &response, &response_size,
			       &outcome);
	}
	/* A result of 90 months owed is long; an error would be short. */
	int failed = reps > 0 && response_size < 200;
	msgpack_sbuffer_destroy(&put);
	msgpack_sbuffer_destroy(&req);
	dispatch_free(d);
	return failed;
}

int main(int argc, char **argv)
{
	char *end = NULL;
	long reps = argc == 3 ? strtol(argv[2], &end, 10) : -1;
	if (argc != 3 || *end != '\0' || reps < 0) {
		fprintf(stderr, "usage: guard core_arrears|core_arrears_encoded|request_arrears_inline REPS\n");
		return 2;
	}
	bench_timeline(slots);
	bench_policy(&policy, &period);
	int failed;
	if (strcmp(argv[1], "core_arrears") == 0) {
		failed = core_case(reps, false);
	} else if (strcmp(argv[1], "core_arrears_encoded") == 0) {
		failed = core_case(reps, true);
	} else if (strcmp(argv[1], "request_arrears_inline") == 0) {
		failed = request_case(reps);
	} else {
		fprintf(stderr, "guard: unknown case '%s'\n", argv[1]);
		return 2;
	}
	if (failed) {
		fprintf(stderr, "guard: %s gave a wrong answer\n", argv[1]);
		return 1;
	}
	printf("slots %u\n", slot_count);
	return 0;
}
