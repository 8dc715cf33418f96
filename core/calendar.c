/* Months, dates and day counts in the proleptic Gregorian calendar. */
#include "core.h"
#include "internal.h"

static bool leap_year(int32_t year)
{
	return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static uint32_t days_in_month(int32_t year, int32_t month_1_12)
{
	static const uint8_t days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (month_1_12 == 2 && leap_year(year)) {
		return 29;
	}
	return days[month_1_12 - 1];
}

int32_t core_month_yyyymm(int32_t month)
{
	return core_floor_div(month, 12) * 100 + core_floor_mod(month, 12) + 1;
}

bool core_date_valid(int64_t v)
{
	if (v < 19000101 || v > 21001231) {
		return false;
	}
	int32_t year = (int32_t)(v / 10000);
	int32_t mm = (int32_t)(v / 100 % 100);
	int32_t dd = (int32_t)(v % 100);
	return mm >= 1 && mm <= 12 && dd >= 1 && (uint32_t)dd <= days_in_month(year, mm);
}

/* Days from civil: count March-based years so the leap day ends a year. */
int32_t core_date_to_days(int32_t date)
{
	int32_t y = date / 10000;
	int32_t m = date / 100 % 100;
	int32_t d = date % 100;
	y -= m <= 2;
	int32_t era = core_floor_div(y, 400);
	int32_t yoe = y - era * 400;                              /* 0..399 */
	int32_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1; /* 0..365 */
	int32_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;     /* 0..146096 */
	return era * 146097 + doe - 719468;
}

int32_t core_days_to_date(int32_t days)
{
	int32_t z = days + 719468;
	int32_t era = core_floor_div(z, 146097);
	int32_t doe = z - era * 146097;
	int32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int32_t mp = (5 * doy + 2) / 153;
	int32_t d = doy - (153 * mp + 2) / 5 + 1;
	int32_t m = mp < 10 ? mp + 3 : mp - 9;
	int32_t y = yoe + era * 400 + (m <= 2);
	return y * 10000 + m * 100 + d;
}

uint32_t core_month_last_day(int32_t month)
{
	return days_in_month(core_floor_div(month, 12), core_floor_mod(month, 12) + 1);
}

struct core_as_of core_as_of_make(int32_t date)
{
	ASSERT(core_date_valid(date));
	struct core_as_of as_of = {
		.date = date,
		.days = core_date_to_days(date),
		.month = date / 10000 * 12 + date / 100 % 100 - 1,
	};
	return as_of;
}

int32_t core_month_date(int32_t month, uint32_t day)
{
	return core_floor_div(month, 12) * 10000 + (core_floor_mod(month, 12) + 1) * 100 + (int32_t)day;
}
