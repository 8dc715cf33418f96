/* The CSV row parser of the bulk import (SPEC §6.1). Input: one line, as
 * the import hands it over (no newline, at most 4096 bytes). Asserts: a
 * plain line (no quote, CR or LF) reads the same on the fast path and
 * through libcsv, and names its person by the first field whatever else is
 * wrong (a bad row leaves that person out); an accepted row, on either
 * path, is a valid slot of a valid id (what person.put would take), and
 * written back as CSV, plain or with every field quoted, parses to the same
 * slot. */
#include "fuzz_common.h"
#include "../../import/import.h"

#define LINE_BYTES_MAX 4096u

static bool slot_same(const struct core_slot *a, const struct core_slot *b)
{
	return a->month == b->month && a->city == b->city && a->type == b->type && a->category == b->category &&
	       a->base_fen == b->base_fen && a->paid_fen == b->paid_fen && a->paid_date == b->paid_date &&
	       a->deemed == b->deemed;
}

/* An accepted row: valid, and the same when written back plain or quoted. */
static void check_accepted(const char id[CORE_ID_SIZE], const struct core_slot *slot)
{
	FUZZ_CHECK(core_id_valid(id, CORE_ID_SIZE));
	FUZZ_CHECK(slot->month >= CORE_MONTH_FIRST && slot->month < CORE_MONTH_FIRST + (int32_t)CORE_MONTH_COUNT);
	FUZZ_CHECK(slot->city <= 999999 && slot->type < CORE_TYPE_COUNT && slot->category < CORE_CATEGORY_COUNT);
	FUZZ_CHECK(slot->base_fen >= 0 && slot->base_fen <= CORE_MONEY_MAX);
	FUZZ_CHECK(slot->paid_fen >= 0 && slot->paid_fen <= CORE_MONEY_MAX);
	FUZZ_CHECK(slot->paid_date == 0 || core_date_valid(slot->paid_date));
	FUZZ_CHECK(core_slot_rules(slot) == CORE_RULE_OK);
	static const char *const formats[2] = { "%.18s,%d,%06u,%s,%s,%lld,%lld,%d,%d",
						"\"%.18s\",\"%d\",\"%06u\",\"%s\",\"%s\",\"%lld\",\"%lld\",\"%d\",\"%d\"" };
	for (int f = 0; f < 2; f++) {
		char again[256];
		int n = snprintf(again, sizeof(again), formats[f], id, (int)core_month_yyyymm(slot->month), slot->city,
				 core_type_names[slot->type], core_category_names[slot->category],
				 (long long)slot->base_fen, (long long)slot->paid_fen, (int)slot->paid_date,
				 slot->deemed ? 1 : 0);
		FUZZ_CHECK(n > 0 && (size_t)n < sizeof(again));
		struct core_slot slot2;
		char id2[CORE_ID_SIZE];
		FUZZ_CHECK(import_parse_row(again, (size_t)n, id2, &slot2) == NULL);
		FUZZ_CHECK(memcmp(id, id2, CORE_ID_SIZE) == 0 && slot_same(slot, &slot2));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > LINE_BYTES_MAX) {
		return 0;
	}
	const char *line = (const char *)data;
	char id[CORE_ID_SIZE], id_csv[CORE_ID_SIZE];
	struct core_slot slot, slot_csv;
	const char *bad = import_parse_row(line, size, id, &slot);
	const char *bad_csv = import_parse_row_csv(line, size, id_csv, &slot_csv);
	bool plain = memchr(line, '"', size) == NULL && memchr(line, '\r', size) == NULL &&
		     memchr(line, '\n', size) == NULL;
	if (plain) {
		const char *comma = memchr(line, ',', size);
		size_t id_size = comma == NULL ? size : (size_t)(comma - line);
		char want[CORE_ID_SIZE] = { 0 };
		memcpy(want, line, id_size < CORE_ID_SIZE ? id_size : CORE_ID_SIZE);
		FUZZ_CHECK(memcmp(id, want, CORE_ID_SIZE) == 0);
		FUZZ_CHECK(memcmp(id_csv, want, CORE_ID_SIZE) == 0);
		FUZZ_CHECK((bad == NULL) == (bad_csv == NULL));
		FUZZ_CHECK(bad == NULL || strcmp(bad, bad_csv) == 0);
		FUZZ_CHECK(bad != NULL || (id_size == CORE_ID_SIZE && slot_same(&slot, &slot_csv)));
	} else {
		/* Not plain: import_parse_row is the libcsv path itself. */
		FUZZ_CHECK(memcmp(id, id_csv, CORE_ID_SIZE) == 0 && (bad == NULL) == (bad_csv == NULL));
	}
	if (bad == NULL) {
		check_accepted(id, &slot);
	}
	if (bad_csv == NULL) {
		check_accepted(id_csv, &slot_csv);
	}
	return 0;
}
