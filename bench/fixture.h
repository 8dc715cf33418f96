/* The benchmark person and its requests, shared by the Google Benchmark
 * harness (bench_core.cc) and the instruction guard (guard.c): 30 years x 5
 * types of monthly slots in store order, every 20th month unpaid (90
 * distinct months owed as of 20250610), one Beijing-like city policy. */
#ifndef ARREARS_BENCH_FIXTURE_H
#define ARREARS_BENCH_FIXTURE_H

#include <msgpack.h>
#include <stdint.h>

#include "../core/core.h"

#define BENCH_YEARS 30
#define BENCH_SLOTS (CORE_TYPE_COUNT * BENCH_YEARS * 12)
#define BENCH_CITY 110000u
#define BENCH_AS_OF 20250610
#define BENCH_OWED 90u

/* Fills out[BENCH_SLOTS]. */
void bench_timeline(struct core_slot *out);
/* The policy into p, its one period into period (p points to it), prepared. */
void bench_policy(struct core_policy *p, struct core_period *period);

void bench_pack_str(msgpack_packer *pk, const char *s);
void bench_pack_int(msgpack_packer *pk, const char *key, int64_t v);
/* [0, msgid, method, [ ...: the params map follows. */
void bench_pack_request(msgpack_packer *pk, uint32_t msgid, const char *method);
/* policy.put of bench_policy's policy. */
void bench_pack_policy_put(msgpack_packer *pk);
/* arrears.compute as of BENCH_AS_OF for one inline person with these slots. */
void bench_pack_arrears_request(msgpack_packer *pk, const struct core_slot *slots, uint32_t count);

#endif
