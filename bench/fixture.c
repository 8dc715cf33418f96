/* The benchmark person and its requests (fixture.h). */
#include <string.h>

#include "fixture.h"

void bench_timeline(struct core_slot *out)
{
	uint32_t n = 0;
	for (int t = 0; t < CORE_TYPE_COUNT; t++) {
		for (int i = 0; i < BENCH_YEARS * 12; i++) {
			struct core_slot *s = &out[n++];
			memset(s, 0, sizeof(*s));
			s->month = 1995 * 12 + i;
			s->city = BENCH_CITY;
			s->type = (uint8_t)t;
			s->category = t < 2 ? CORE_FLEXIBLE : CORE_EMPLOYEE;
			s->base_fen = 800000 + (i / 12) * 20000; /* yearly base growth */
			int unpaid = (i + 7 * t) % 20 == 0;
			s->paid_fen = unpaid ? 0 : 1000000; /* at least any due */
			s->paid_date = unpaid ? 0 : (s->month / 12) * 10000 + (s->month % 12 + 1) * 100 + 20;
		}
	}
}

void bench_policy(struct core_policy *p, struct core_period *period)
{
	static const struct core_year_rate rates[3] = { { 2022, 61200 }, { 2023, 39700 }, { 2024, 26200 } };
	memset(p, 0, sizeof(*p));
	memset(period, 0, sizeof(*period));
	period->from = 1990 * 12;
	period->base_min_fen = 300000;
	period->base_max_fen = 3000000;
	for (int t = 0; t < CORE_TYPE_COUNT; t++) {
		period->rate_ppm[t][CORE_SHARE_EMPLOYER] = 100000;
		period->rate_ppm[t][CORE_SHARE_INDIVIDUAL] = 20000;
		period->rate_ppm[t][CORE_SHARE_FLEXIBLE] = 120000;
	}
	p->city = BENCH_CITY;
	p->deadline_day = 25;
	p->period_count = 1;
	p->periods = period;
	p->interest_types = 1u << CORE_PENSION;
	p->interest_categories = 1u << CORE_FLEXIBLE;
	p->interest_default_ppm = 25000;
	p->interest_rate_count = 3;
	p->interest_rates = rates;
	p->late_fee_daily_ppm = 500;
	p->late_fee_categories = 1u << CORE_EMPLOYEE;
	p->backpay_direct_max_months = 3;
	p->backpay_verify_max_months = 60;
	p->backpay_legacy_before = 2011 * 12 + 6;
	p->housing_types = 1u << CORE_PENSION;
	p->housing_window_months = 60;
	p->housing_required_months = 60;
	p->housing_end_offset_months = 1;
	core_policy_prepare(p);
}

void bench_pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

void bench_pack_int(msgpack_packer *pk, const char *key, int64_t v)
{
	bench_pack_str(pk, key);
	msgpack_pack_int64(pk, v);
}

void bench_pack_request(msgpack_packer *pk, uint32_t msgid, const char *method)
{
	msgpack_pack_array(pk, 4);
	msgpack_pack_int(pk, 0);
	msgpack_pack_uint32(pk, msgid);
	bench_pack_str(pk, method);
	msgpack_pack_array(pk, 1);
}

void bench_pack_policy_put(msgpack_packer *pk)
{
	bench_pack_request(pk, 1, "policy.put");
	msgpack_pack_map(pk, 1);
	bench_pack_str(pk, "policy");
	msgpack_pack_map(pk, 3);
	bench_pack_str(pk, "city");
	bench_pack_str(pk, "110000");
	bench_pack_str(pk, "deadline");
	msgpack_pack_map(pk, 1);
	bench_pack_int(pk, "day", 25);
	bench_pack_str(pk, "periods");
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 4);
	bench_pack_int(pk, "from", 199001);
	bench_pack_int(pk, "base_min", 300000);
	bench_pack_int(pk, "base_max", 3000000);
	bench_pack_str(pk, "rates");
	msgpack_pack_map(pk, CORE_TYPE_COUNT);
	for (int t = 0; t < CORE_TYPE_COUNT; t++) {
		bench_pack_str(pk, core_type_names[t]);
		msgpack_pack_map(pk, 3);
		bench_pack_int(pk, "employer", 100000);
		bench_pack_int(pk, "individual", 20000);
		bench_pack_int(pk, "flexible", 120000);
	}
}

void bench_pack_arrears_request(msgpack_packer *pk, const struct core_slot *slots, uint32_t count)
{
	bench_pack_request(pk, 2, "arrears.compute");
	msgpack_pack_map(pk, 2);
	bench_pack_int(pk, "as_of", BENCH_AS_OF);
	bench_pack_str(pk, "persons");
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 2);
	bench_pack_str(pk, "id");
	bench_pack_str(pk, "11010519491231002X");
	bench_pack_str(pk, "slots");
	msgpack_pack_array(pk, count);
	for (uint32_t k = 0; k < count; k++) {
		const struct core_slot *s = &slots[k];
		msgpack_pack_map(pk, 7);
		bench_pack_int(pk, "month", core_month_yyyymm(s->month));
		bench_pack_str(pk, "city");
		bench_pack_str(pk, "110000");
		bench_pack_str(pk, "type");
		bench_pack_str(pk, core_type_names[s->type]);
		bench_pack_str(pk, "category");
		bench_pack_str(pk, core_category_names[s->category]);
		bench_pack_int(pk, "base", s->base_fen);
		bench_pack_int(pk, "paid", s->paid_fen);
		bench_pack_int(pk, "paid_date", s->paid_date);
	}
}
