/* Unit tests of io/gen: the seeded city generator.
 *
 * What the generator promises (gen.h, SPEC 2.1): the same config gives the
 * same persons; ids are valid and distinct; every slot passes validation,
 * slots are in store order; and the city looks like a city: some second-city
 * workers, deemed months, unpaid and back-paid months.
 *
 * Build by hand from the repository root:
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror tests/test_gen.c io/gen.c core/(each).c -lcmocka
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../core/core.h"
#include "../gen/gen.h"

#define CITY_A 110000u
#define CITY_B 310000u
#define NOW_MONTH (GEN_NOW_YYYYMM / 100 * 12 + GEN_NOW_YYYYMM % 100 - 1)
#define PERSONS 2000u
#define KEYS_CAPACITY 32768u /* twice the most slots one person can have, rounded up */

static struct gen_config config_make(uint64_t count, uint64_t seed)
{
	return (struct gen_config){ .person_count = count, .seed = seed, .city = CITY_A, .second_city = CITY_B };
}

/* ---- digest: every field of every person, in order ---- */

static void fnv(uint64_t *h, const void *p, size_t size)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < size; i++) {
		*h = (*h ^ b[i]) * 0x100000001b3ull;
	}
}

static int digest_emit(void *ctx, const struct gen_person *person)
{
	uint64_t *h = ctx;
	fnv(h, person->id, sizeof(person->id));
	fnv(h, &person->retire_class, sizeof(person->retire_class));
	fnv(h, &person->slot_count, sizeof(person->slot_count));
	for (uint32_t i = 0; i < person->slot_count; i++) {
		const struct core_slot *s = &person->slots[i];
		int64_t f[] = { s->base_fen, s->paid_fen, s->month, s->paid_date, s->city, s->type, s->category, s->deemed };
		fnv(h, f, sizeof(f));
	}
	return 0;
}

static uint64_t digest(uint64_t count, uint64_t seed)
{
	uint64_t h = 0xcbf29ce484222325ull;
	struct gen_config config = config_make(count, seed);
	assert_int_equal(gen_run(&config, digest_emit, &h), 0);
	return h;
}

static void test_same_seed_gives_the_same_persons_another_seed_others(void **state)
{
	(void)state;
	assert_true(digest(300, 42) == digest(300, 42));
	assert_true(digest(300, 42) != digest(300, 43));
	/* a person does not depend on how many come after it */
	assert_true(digest(1, 42) == digest(1, 42));
}

/* ---- ids ---- */

struct ids {
	char (*id)[CORE_ID_SIZE + 1];
	uint32_t count;
};

static int ids_emit(void *ctx, const struct gen_person *person)
{
	struct ids *ids = ctx;
	assert_int_equal(strlen(person->id), CORE_ID_SIZE);
	assert_true(core_id_valid(person->id, CORE_ID_SIZE));
	assert_true(person->retire_class >= -1 && person->retire_class < CORE_CLASS_COUNT);
	if (person->retire_class == CORE_CLASS_F50) {
		assert_int_equal(core_id_default_class(person->id), CORE_CLASS_F55);
	}
	memcpy(ids->id[ids->count++], person->id, CORE_ID_SIZE + 1);
	return 0;
}

static int id_order(const void *a, const void *b)
{
	return memcmp(a, b, CORE_ID_SIZE);
}

/* 40,000 persons: past 17,897, where birth days repeat and sequence codes differ. */
static void test_ids_are_valid_and_distinct_past_one_birth_day_cycle(void **state)
{
	(void)state;
	struct ids ids = { calloc(40000, sizeof(*ids.id)), 0 };
	assert_non_null(ids.id);
	struct gen_config config = config_make(40000, 7);
	assert_int_equal(gen_run(&config, ids_emit, &ids), 0);
	assert_int_equal(ids.count, 40000);
	qsort(ids.id, ids.count, sizeof(*ids.id), id_order);
	for (uint32_t i = 1; i < ids.count; i++) {
		assert_true(memcmp(ids.id[i - 1], ids.id[i], CORE_ID_SIZE) < 0);
	}
	free(ids.id);
}

/* ---- slots: SPEC 2.1 and store order ---- */

struct census {
	uint64_t persons;
	uint64_t slots;
	uint64_t second_city_persons;
	uint64_t deemed;
	uint64_t unpaid;      /* months before now with nothing paid */
	uint64_t backpaid;    /* paid after the deadline, the 25th */
	uint64_t partial;     /* paid something, less than a full month's share would be */
	uint64_t pending;     /* the current month, unpaid */
	uint64_t duplicates;  /* (month, type) in both cities */
	uint64_t flexible;
	uint64_t *keys;
};

/* (type, city, month), strictly ascending: store order, no duplicate key. */
static int slot_order(const struct core_slot *a, const struct core_slot *b)
{
	if (a->type != b->type) {
		return a->type < b->type ? -1 : 1;
	}
	if (a->city != b->city) {
		return a->city < b->city ? -1 : 1;
	}
	return a->month < b->month ? -1 : a->month > b->month;
}

static void slot_check(const struct core_slot *s)
{
	assert_true(s->month >= CORE_MONTH_FIRST && s->month < CORE_MONTH_FIRST + (int32_t)CORE_MONTH_COUNT);
	assert_true(s->month <= NOW_MONTH);
	assert_true(s->city == CITY_A || s->city == CITY_B);
	assert_true(s->type < CORE_TYPE_COUNT);
	assert_true(s->category < CORE_CATEGORY_COUNT);
	assert_true(s->base_fen >= 0 && s->base_fen <= CORE_MONEY_MAX);
	assert_true(s->paid_fen >= 0 && s->paid_fen <= CORE_MONEY_MAX);
	if (s->paid_fen > 0) {
		assert_true(core_date_valid(s->paid_date));
		assert_true(s->paid_date <= GEN_NOW_DATE);
		assert_true(s->paid_date / 100 >= core_month_yyyymm(s->month));
	} else {
		assert_int_equal(s->paid_date, 0);
	}
	if (s->deemed) {
		assert_true(s->base_fen == 0 && s->paid_fen == 0 && s->paid_date == 0);
		assert_int_equal(s->type, CORE_PENSION);
		assert_true(s->month < 1996 * 12);
	} else {
		assert_true(s->base_fen > 0);
		assert_true(s->month >= 1996 * 12);
	}
	if (s->category == CORE_FLEXIBLE) {
		assert_true(s->type == CORE_PENSION || s->type == CORE_MEDICAL);
	}
}

static void census_slot(struct census *c, const struct core_slot *s)
{
	int32_t deadline = core_month_yyyymm(s->month) * 100 + 25;
	c->deemed += s->deemed;
	c->flexible += s->category == CORE_FLEXIBLE;
	c->unpaid += !s->deemed && s->paid_fen == 0 && s->month < NOW_MONTH;
	c->pending += s->paid_fen == 0 && s->month == NOW_MONTH;
	c->backpaid += s->paid_date > deadline;
}

static int census_emit(void *ctx, const struct gen_person *person)
{
	struct census *c = ctx;
	struct core_slot_keys keys;
	core_slot_keys_init(&keys, c->keys, KEYS_CAPACITY);
	bool second = false;
	for (uint32_t i = 0; i < person->slot_count; i++) {
		const struct core_slot *s = &person->slots[i];
		slot_check(s);
		assert_true(core_slot_keys_insert(&keys, s));
		if (i > 0) {
			assert_true(slot_order(&person->slots[i - 1], s) < 0);
		}
		census_slot(c, s);
		second |= s->city == CITY_B;
		/* a month in both cities: the CITY_A slot comes first, so look back */
		if (s->city == CITY_B) {
			for (uint32_t j = i; j-- > 0 && person->slots[j].type == s->type;) {
				if (person->slots[j].city == CITY_A && person->slots[j].month == s->month) {
					c->duplicates++;
					break;
				}
			}
		}
	}
	c->persons++;
	c->slots += person->slot_count;
	c->second_city_persons += second;
	return 0;
}

static struct census census_run(uint64_t count, uint64_t seed)
{
	struct census c = { .keys = malloc(sizeof(uint64_t) * KEYS_CAPACITY) };
	assert_non_null(c.keys);
	struct gen_config config = config_make(count, seed);
	assert_int_equal(gen_run(&config, census_emit, &c), 0);
	free(c.keys);
	c.keys = NULL;
	return c;
}

static void test_every_slot_passes_validation_in_store_order(void **state)
{
	(void)state;
	struct census c = census_run(PERSONS, 1);
	assert_int_equal(c.persons, PERSONS);
	assert_true(c.slots > (uint64_t)PERSONS * 200);
}

static void test_city_has_second_city_workers_deemed_unpaid_and_backpaid_months(void **state)
{
	(void)state;
	struct census c = census_run(PERSONS, 1);
	/* about 3% of persons, between 1% and 6% */
	assert_true(c.second_city_persons * 100 >= PERSONS * 1);
	assert_true(c.second_city_persons * 100 <= PERSONS * 6);
	assert_true(c.deemed > 0);
	assert_true(c.unpaid > 0);
	assert_true(c.backpaid > 0);
	assert_true(c.pending > 0);
	assert_true(c.duplicates > 0);
	assert_true(c.flexible > 0);
	/* troubles are rare: most months are paid on time */
	assert_true(c.unpaid * 100 < c.slots);
}

static void test_another_seed_also_passes_validation(void **state)
{
	(void)state;
	struct census c = census_run(PERSONS, 0xdeadbeefcafeull);
	assert_true(c.second_city_persons * 100 >= PERSONS * 1);
	assert_true(c.second_city_persons * 100 <= PERSONS * 6);
}

/* ---- CSV ---- */

struct csv_check {
	FILE *out;
	uint32_t persons_left;
	struct core_slot slots[16384];
	uint32_t slot_count;
	char id[CORE_ID_SIZE + 1];
};

/* Writes every person; keeps the last one written to check its rows. */
static int csv_emit(void *ctx, const struct gen_person *person)
{
	struct csv_check *k = ctx;
	assert_int_equal(gen_csv_person(k->out, person), 0);
	memcpy(k->slots, person->slots, sizeof(*person->slots) * person->slot_count);
	k->slot_count = person->slot_count;
	memcpy(k->id, person->id, sizeof(k->id));
	return --k->persons_left == 0 ? 99 : 0;
}

static void csv_row_check(const char *line, const char *id, const struct core_slot *s)
{
	char want[256];
	snprintf(want, sizeof(want), "%s,%d,%06u,%s,%s,%lld,%lld,%d,%d", id, core_month_yyyymm(s->month), s->city,
		 core_type_names[s->type], core_category_names[s->category], (long long)s->base_fen,
		 (long long)s->paid_fen, s->paid_date, s->deemed ? 1 : 0);
	assert_string_equal(line, want);
}

static void test_csv_rows_spell_every_field_of_every_slot(void **state)
{
	(void)state;
	char *text = NULL;
	size_t size = 0;
	struct csv_check *k = calloc(1, sizeof(*k));
	assert_non_null(k);
	k->out = open_memstream(&text, &size);
	assert_non_null(k->out);
	assert_int_equal(gen_csv_header(k->out), 0);
	k->persons_left = 50;
	struct gen_config config = config_make(1000, 5);
	assert_int_equal(gen_run(&config, csv_emit, k), 99); /* emit's non-zero stops the run */
	assert_int_equal(fclose(k->out), 0);
	/* the last person's rows end the text: check them one by one */
	char *line = strtok(text, "\n");
	assert_string_equal(line, "id,month,city,type,category,base,paid,paid_date,deemed");
	uint32_t rows = 0;
	uint32_t last_first = 0;
	char **lines = calloc(size / 40 + 1, sizeof(*lines));
	while ((line = strtok(NULL, "\n")) != NULL) {
		if (strncmp(line, k->id, CORE_ID_SIZE) != 0) {
			last_first = rows + 1;
		}
		lines[rows++] = line;
	}
	assert_true(k->slot_count > 0);
	assert_int_equal(rows - last_first, k->slot_count);
	for (uint32_t i = 0; i < k->slot_count; i++) {
		csv_row_check(lines[last_first + i], k->id, &k->slots[i]);
	}
	free(lines);
	free(text);
	free(k);
}

/* ---- policy and config ---- */

static void test_policy_document_covers_1950_and_every_year_from_1996(void **state)
{
	(void)state;
	char *text = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&text, &size);
	struct gen_config config = config_make(1, 1);
	assert_int_equal(gen_policy_write(out, CITY_B, &config), 0);
	assert_int_equal(fclose(out), 0);
	assert_non_null(strstr(text, "\"city\": \"310000\""));
	assert_non_null(strstr(text, "\"deadline\": { \"day\": 25, \"month_offset\": 0 }"));
	assert_non_null(strstr(text, "\"from\": 195001"));
	assert_non_null(strstr(text, "\"from\": 199601"));
	assert_non_null(strstr(text, "\"from\": 202501"));
	assert_non_null(strstr(text, "\"withhold\""));
	free(text);
}

static int never_emit(void *ctx, const struct gen_person *person)
{
	(void)ctx;
	(void)person;
	fail();
	return 0;
}

static void test_bad_configs_are_rejected(void **state)
{
	(void)state;
	struct gen_config same = config_make(1, 1);
	same.second_city = same.city;
	assert_int_equal(gen_run(&same, never_emit, NULL), -EINVAL);
	struct gen_config big = config_make(GEN_PERSONS_MAX + 1, 1);
	assert_int_equal(gen_run(&big, never_emit, NULL), -EINVAL);
	struct gen_config wide = config_make(1, 1);
	wide.city = 1000000;
	assert_int_equal(gen_run(&wide, never_emit, NULL), -EINVAL);
	struct gen_config ok = config_make(1, 1);
	assert_int_equal(gen_policy_write(stdout, 440300, &ok), -EINVAL);
	struct gen_config none = config_make(0, 1);
	assert_int_equal(gen_run(&none, never_emit, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_seed_gives_the_same_persons_another_seed_others),
		cmocka_unit_test(test_ids_are_valid_and_distinct_past_one_birth_day_cycle),
		cmocka_unit_test(test_every_slot_passes_validation_in_store_order),
		cmocka_unit_test(test_city_has_second_city_workers_deemed_unpaid_and_backpaid_months),
		cmocka_unit_test(test_another_seed_also_passes_validation),
		cmocka_unit_test(test_csv_rows_spell_every_field_of_every_slot),
		cmocka_unit_test(test_policy_document_covers_1950_and_every_year_from_1996),
		cmocka_unit_test(test_bad_configs_are_rejected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
