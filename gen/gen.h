/* gen: a seeded generator of a realistic city's contribution timelines.
 *
 * For benchmarks, load tests and demos: a million persons with fifty years
 * of monthly slots, as a store or a CSV import would see them. Everything is
 * a function of the config: no clock, no rand(), no global state, so a seed
 * printed by a failing run replays it byte for byte.
 *
 * The timelines are "as of" GEN_NOW_DATE: no payment is dated after it, the
 * current month GEN_NOW_YYYYMM is enrolled but not yet paid (pending), and
 * some months before it are unpaid (arrears). Compute with as_of
 * GEN_NOW_DATE to see the city as the generator meant it. */
#ifndef ARREARS_GEN_H
#define ARREARS_GEN_H

#include <stdint.h>
#include <stdio.h>

#include "../core/core.h"

#define GEN_NOW_DATE 20251110   /* the generated city's "today"; paydays are the 15th..25th */
#define GEN_NOW_YYYYMM 202511   /* month(GEN_NOW_DATE) */
#define GEN_PERSONS_MAX 885901500ull /* distinct ids: 17,897 birth days x 49,500 sequence codes */

struct gen_config {
	uint64_t person_count; /* 0..GEN_PERSONS_MAX */
	uint64_t seed;
	uint32_t city;         /* 6-digit code as a number, e.g. 110000 */
	uint32_t second_city;  /* some people also contribute here; a different code, 0: none */
};

struct gen_person {
	char id[CORE_ID_SIZE + 1];     /* terminated */
	int retire_class;              /* -1: default from the id, else enum core_class */
	uint32_t slot_count;           /* 0 for the young who have not started work yet */
	const struct core_slot *slots; /* valid until the next emit; sorted by type, city, month */
};

/* Called once per person, in generation order; a non-zero return stops
 * gen_run and is returned. */
typedef int (*gen_emit_fn)(void *ctx, const struct gen_person *person);

/* Generates config->person_count persons; the same config gives the same
 * persons in the same order. Every person passes SPEC 2.1 and every slot has
 * a period (R1) under the policies of gen_policy_write.
 * Returns 0; -EINVAL for a bad config (count over GEN_PERSONS_MAX, a city
 * over 999999 or 0, second_city equal to city); -ENOMEM; or emit's non-zero. */
int gen_run(const struct gen_config *config, gen_emit_fn emit, void *ctx);

/* Writes a policy document (SPEC 3.3, JSON, every section spelled out) for
 * city, matching what gen_run generates for it: periods from 195001 and one
 * per year from 1996, with bases and rates that gen_run's payments follow.
 * The policy depends on the city code alone; config is checked as gen_run
 * checks it and city must be config->city or config->second_city.
 * Returns 0, -EINVAL, -ENOMEM, or -EIO when out reports a write error. */
int gen_policy_write(FILE *out, uint32_t city, const struct gen_config *config);

/* Writes the CSV header line (SPEC 6.1). Returns 0 or -EIO. */
int gen_csv_header(FILE *out);
/* Writes one person's rows (SPEC 6.1), one slot a row, in slot order.
 * retire_class has no column: an import gives every person the default class.
 * Returns 0 or -EIO. */
int gen_csv_person(FILE *out, const struct gen_person *person);

#endif
