/* The CSV row parser of the bulk import (SPEC §6.1). Input: one line, as
 * the import hands it over (no newline, at most 4096 bytes). Asserts: the
 * row names its person by the first field whatever else is wrong (a bad
 * row leaves that person out); an accepted row is a valid slot of a valid
 * id (what person.put would take), and written back as CSV it parses to
 * the same slot. */
#include "fuzz_common.h"
#include "../../import/import.h"

#define LINE_BYTES_MAX 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > LINE_BYTES_MAX) {
		return 0;
	}
	const char *line = (const char *)data;
	char id[CORE_ID_SIZE];
	struct core_slot slot;
	const char *bad = import_parse_row(line, size, id, &slot);
	const char *comma = memchr(line, ',', size);
	size_t id_size = comma == NULL ? size : (size_t)(comma - line);
	char want[CORE_ID_SIZE] = { 0 };
	memcpy(want, line, id_size < CORE_ID_SIZE ? id_size : CORE_ID_SIZE);
	FUZZ_CHECK(memcmp(id, want, CORE_ID_SIZE) == 0);
	if (bad != NULL) {
		return 0;
	}
	FUZZ_CHECK(core_id_valid(id, CORE_ID_SIZE) && id_size == CORE_ID_SIZE);
	FUZZ_CHECK(slot.month >= CORE_MONTH_FIRST && slot.month < CORE_MONTH_FIRST + (int32_t)CORE_MONTH_COUNT);
	FUZZ_CHECK(slot.city <= 999999 && slot.type < CORE_TYPE_COUNT && slot.category < CORE_CATEGORY_COUNT);
	FUZZ_CHECK(slot.base_fen >= 0 && slot.base_fen <= CORE_MONEY_MAX);
	FUZZ_CHECK(slot.paid_fen >= 0 && slot.paid_fen <= CORE_MONEY_MAX);
	FUZZ_CHECK(slot.paid_date == 0 || core_date_valid(slot.paid_date));
	FUZZ_CHECK(core_slot_rules(&slot) == CORE_RULE_OK);
	char again[256];
	int n = snprintf(again, sizeof(again), "%.18s,%d,%06u,%s,%s,%lld,%lld,%d,%d", id,
			 (int)core_month_yyyymm(slot.month), slot.city, core_type_names[slot.type],
			 core_category_names[slot.category], (long long)slot.base_fen, (long long)slot.paid_fen,
			 (int)slot.paid_date, slot.deemed ? 1 : 0);
	FUZZ_CHECK(n > 0 && (size_t)n < sizeof(again));
	struct core_slot slot2;
	char id2[CORE_ID_SIZE];
	FUZZ_CHECK(import_parse_row(again, (size_t)n, id2, &slot2) == NULL);
	FUZZ_CHECK(memcmp(id, id2, CORE_ID_SIZE) == 0);
	FUZZ_CHECK(slot.month == slot2.month && slot.city == slot2.city && slot.type == slot2.type &&
		   slot.category == slot2.category && slot.base_fen == slot2.base_fen &&
		   slot.paid_fen == slot2.paid_fen && slot.paid_date == slot2.paid_date && slot.deemed == slot2.deemed);
	return 0;
}
