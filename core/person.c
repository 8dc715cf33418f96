/* Resident IDs (GB 11643), names, and the duplicate-slot key set. */
#include "core.h"
#include "internal.h"

const char *const core_type_names[CORE_TYPE_COUNT] = { "pension", "medical", "unemployment", "injury",
						       "maternity" };
const char *const core_category_names[CORE_CATEGORY_COUNT] = { "employee", "flexible" };
const char *const core_class_names[CORE_CLASS_COUNT] = { "m60", "f55", "f50" };
const char *const core_tier_names[CORE_TIER_COUNT] = { "direct", "verify", "approval", "legacy" };

/* s (size bytes, not terminated) equals the terminated name; reads no
 * further into name than its terminator. */
static bool name_equals(const char *name, const char *s, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		if (name[i] != s[i] || name[i] == '\0') {
			return false;
		}
	}
	return name[size] == '\0';
}

int core_name_index(const char *const *names, uint32_t name_count, const char *s, size_t size)
{
	for (uint32_t i = 0; i < name_count; i++) {
		if (name_equals(names[i], s, size)) {
			return (int)i;
		}
	}
	return -1;
}

static int32_t digits_value(const char *s, uint32_t count)
{
	int32_t v = 0;
	for (uint32_t i = 0; i < count; i++) {
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

int core_id_check(const char *id, size_t size, uint32_t *position)
{
	static const uint8_t weight[17] = { 7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2 };
	static const char check[12] = "10X98765432";
	*position = 0;
	if (size != CORE_ID_SIZE) {
		return CORE_ID_LENGTH;
	}
	uint32_t sum = 0;
	for (uint32_t i = 0; i < 17; i++) {
		if (id[i] < '0' || id[i] > '9') {
			*position = i + 1;
			return CORE_ID_NOT_DIGIT;
		}
		sum += (uint32_t)(id[i] - '0') * weight[i];
	}
	if (!(id[17] >= '0' && id[17] <= '9') && id[17] != 'X') {
		*position = CORE_ID_SIZE;
		return CORE_ID_CHECK_CHAR;
	}
	if (id[17] != check[sum % 11]) {
		return CORE_ID_CHECK_DIGIT;
	}
	return core_date_valid(digits_value(id + 6, 8)) ? CORE_ID_OK : CORE_ID_BIRTH_DATE;
}

bool core_id_valid(const char *id, size_t size)
{
	uint32_t position;
	return core_id_check(id, size, &position) == CORE_ID_OK;
}

int32_t core_id_birth_month(const char *id)
{
	return digits_value(id + 6, 4) * 12 + digits_value(id + 10, 2) - 1;
}

uint8_t core_id_default_class(const char *id)
{
	return (id[16] - '0') % 2 == 1 ? CORE_CLASS_M60 : CORE_CLASS_F55;
}

void core_slot_keys_init(struct core_slot_keys *keys, uint64_t *table, uint32_t capacity)
{
	ASSERT(capacity > 0 && (capacity & (capacity - 1)) == 0);
	memset(table, 0, sizeof(*table) * capacity);
	keys->table = table;
	keys->capacity = capacity;
}

