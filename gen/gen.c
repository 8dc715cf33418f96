/* gen: seeded timelines of a realistic city (see gen.h).
 *
 * A person is drawn in three steps from a PRNG seeded by (seed, person
 * index), so persons are independent of each other and of person_count:
 *   1. identity: an id unique by construction (birth day and sequence code
 *      are a bijection of the index), sex, retirement class;
 *   2. a month plan per city: one record per calendar month from the start
 *      of work to retirement or now, drawn spell by spell (employment,
 *      flexible employment, gaps) with the rare troubles of real timelines;
 *   3. the slots, read off the plans type by type, city by city, month by
 *      month: store order, with no sort.
 * Payments follow the city's policy as gen_policy_write spells it, computed
 * by core_slot_due itself, so "paid in full" means owed 0 under the core. */
#include "gen.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define GEN_MONTH_FIRST (1970 * 12)       /* no career starts earlier: born 1955 + 16 years */
#define GEN_NOW_MONTH (2025 * 12 + 10)    /* dense GEN_NOW_YYYYMM */
#define GEN_SPAN ((uint32_t)(GEN_NOW_MONTH - GEN_MONTH_FIRST + 1)) /* months a plan can hold */
#define GEN_CITY_COUNT 2u                 /* the city and second_city */
#define GEN_SLOTS_MAX (GEN_CITY_COUNT * GEN_SPAN * CORE_TYPE_COUNT) /* every plan month, every type */
#define GEN_YEAR_FIRST 1970
#define GEN_YEAR_COUNT 56u                /* 1970..2025: wage tables */
#define GEN_REFORM_MONTH (1996 * 12)      /* personal accounts start; work before is deemed */
#define GEN_PERIOD_COUNT 31u              /* 195001, then every January 1996..2025 */
#define GEN_BIRTH_FIRST 19550101
#define GEN_BIRTH_DAYS 17897u             /* 19550101..20031231 */
#define GEN_BIRTH_STRIDE 11069u           /* coprime to 17897 = 11 x 1627: permutes birth days */
#define GEN_SEQUENCE_COUNT 49500u         /* per birth day: 99 districts x 100 x 5 sequence codes */
#define GEN_STINT_PPM 35000u              /* eligible persons who work a stretch in second_city */
#define GEN_CSV_BUFFER_SIZE 32768u        /* CSV bytes staged per fwrite */
#define GEN_CSV_ROW_MAX 128u              /* room per row: at most 90 bytes, and fixed-size copies overrun */
#define GEN_PER_2_20(ppm) ((uint32_t)((ppm) * 1048576ull / 1000000u)) /* monthly chances, 20 bits */

static_assert(GEN_PERSONS_MAX == (uint64_t)GEN_BIRTH_DAYS * GEN_SEQUENCE_COUNT, "ids are a bijection");
static_assert(GEN_NOW_MONTH == GEN_NOW_YYYYMM / 100 * 12 + GEN_NOW_YYYYMM % 100 - 1, "now month");
static_assert(GEN_NOW_DATE / 100 == GEN_NOW_YYYYMM, "now date is in the now month");
static_assert(GEN_NOW_DATE % 100 < 15, "the current month is pending: paydays are the 15th..25th");
static_assert(GEN_YEAR_FIRST + GEN_YEAR_COUNT - 1 == GEN_NOW_YYYYMM / 100, "wage tables reach now");
static_assert(GEN_PERIOD_COUNT == 1 + GEN_NOW_YYYYMM / 100 - 1996 + 1, "one period a year to now");
static_assert(GEN_SLOTS_MAX <= UINT32_MAX, "slot counts are u32");

/* ---- PRNG: xoshiro256** seeded by splitmix64 ---- */

struct gen_rng {
	uint64_t s[4];
};

static uint64_t gen_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Each person's stream depends on (seed, index) only. */
static void gen_rng_seed(struct gen_rng *r, uint64_t seed, uint64_t index)
{
	uint64_t x = seed ^ gen_mix(index + 0x632be59bd9b4e019ull);
	for (uint32_t i = 0; i < 4; i++) {
		x += 0x9e3779b97f4a7c15ull;
		r->s[i] = gen_mix(x);
	}
}

static inline uint64_t gen_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t gen_rng_next(struct gen_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = gen_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = gen_rotl(s[3], 45);
	return result;
}

/* 0..n-1 by multiply-shift: no division, bias below 2^-32. */
static inline uint32_t gen_rng_below(struct gen_rng *r, uint32_t n)
{
	return (uint32_t)(((gen_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

static inline bool gen_rng_percent(struct gen_rng *r, uint32_t percent)
{
	return gen_rng_below(r, 100) < percent;
}

/* ---- cities: wage levels and the policy ---- */

struct gen_city {
	int64_t avg_wage_fen[GEN_YEAR_COUNT]; /* the year's monthly average wage */
	struct core_period periods[GEN_PERIOD_COUNT];
	struct core_policy policy; /* periods point into this struct: never copy it */
};

/* SPEC 3.3's default interest table: the policy spells it out. */

/* fen × ppm rounded to whole yuan: declared bases are round numbers. */
static int64_t gen_yuan_round(int64_t fen, uint32_t ppm)
{
	return (fen * (int64_t)ppm + 50000000) / 100000000 * 100;
}

/* Average wages: 500 yuan in 1995 at level 1.0, +13% a year to 2012, +8% since
 * (Beijing's published figures run close to this: about 11,000 yuan in 2024). */
static void gen_city_wages(struct gen_city *c, uint32_t city)
{
	uint32_t level_ppm = 600000u + (uint32_t)(gen_mix(city) % 500001u); /* 0.6..1.1 */
	int64_t avg = gen_yuan_round(50000, level_ppm);
	for (uint32_t i = 0; i < GEN_YEAR_COUNT; i++) {
		int32_t year = GEN_YEAR_FIRST + (int32_t)i;
		if (year > 1995) {
			avg = avg * (year <= 2012 ? 1130 : 1080) / 1000;
		}
		c->avg_wage_fen[i] = avg;
	}
}

/* Rates of a period: pension employer 20% until the 2019 cut to 16%,
 * unemployment employer 1% until 2016's cut to 0.5%. */
static void gen_period_rates(int32_t year, uint32_t rate[CORE_TYPE_COUNT][CORE_SHARE_COUNT])
{
	static const uint32_t fixed[CORE_TYPE_COUNT][CORE_SHARE_COUNT] = {
		[CORE_PENSION] = { 160000, 80000, 200000 },   [CORE_MEDICAL] = { 98000, 20000, 80000 },
		[CORE_UNEMPLOYMENT] = { 5000, 5000, 10000 }, [CORE_INJURY] = { 4000, 0, 0 },
		[CORE_MATERNITY] = { 8000, 0, 0 },
	};
	memcpy(rate, fixed, sizeof(fixed));
	if (year < 2019) {
		rate[CORE_PENSION][CORE_SHARE_EMPLOYER] = 200000;
	}
	if (year < 2016) {
		rate[CORE_UNEMPLOYMENT][CORE_SHARE_EMPLOYER] = 10000;
	}
}

/* Period k: 195001 for k 0, else January of 1995 + k; bases are 60% and
 * 300% of the previous year's average wage. */
static void gen_city_periods(struct gen_city *c)
{
	for (uint32_t k = 0; k < GEN_PERIOD_COUNT; k++) {
		int32_t year = k == 0 ? 1995 : 1995 + (int32_t)k;
		struct core_period *p = &c->periods[k];
		p->from = k == 0 ? CORE_MONTH_FIRST : year * 12;
		int64_t avg = c->avg_wage_fen[year - 1 - GEN_YEAR_FIRST];
		p->base_min_fen = gen_yuan_round(avg, 600000);
		p->base_max_fen = gen_yuan_round(avg, 3000000);
		gen_period_rates(year, p->rate_ppm);
	}
}

/* The SPEC 3.3 defaults for everything but periods and deadline. */
static void gen_city_policy(struct gen_city *c, uint32_t city)
{
	struct core_policy *p = &c->policy;
	memset(p, 0, sizeof(*p));
	p->city = city;
	p->name_size = 4 + 6;
	memcpy(p->name, "gen ", 4);
	for (uint32_t i = 0, v = city; i < 6; i++, v /= 10) {
		p->name[9 - i] = (char)('0' + v % 10);
	}
	p->deadline_day = 25;
	p->period_count = GEN_PERIOD_COUNT;
	p->periods = c->periods;
	core_policy_defaults(p);
	core_policy_prepare(p);
}

static void gen_city_build(struct gen_city *c, uint32_t city)
{
	gen_city_wages(c, city);
	gen_city_periods(c);
	gen_city_policy(c, city);
}

/* ---- one person's plan ---- */

/* One calendar month of one city in a person's plan. */
struct gen_month {
	int64_t base_fen;
	int32_t paid_date;    /* the on-time payment of the month */
	int32_t late_date;    /* when unpaid types were paid in full later; 0: not (yet) */
	uint8_t type_mask;    /* types enrolled; 0: a gap */
	uint8_t unpaid_mask;  /* types not paid on time */
	uint8_t partial_mask; /* types paid in part on time */
	uint8_t category;
	bool deemed;
};

struct gen_range {
	int32_t first; /* dense, inclusive; first > last: empty */
	int32_t last;
};

/* How a category's months go wrong. Chances are per month, in 2^-20. */
struct gen_habit {
	uint32_t fail;            /* a run of unpaid months starts */
	uint32_t partial;         /* only part is paid */
	uint32_t run_max;         /* months in a run of unpaid */
	uint32_t medical_only_percent; /* runs where only medical failed (withhold "stop" after pension) */
	uint32_t backpay_percent; /* runs paid in full later, in one payment */
	uint32_t backpay_delay_max; /* months after the run */
	uint32_t recent_percent;  /* active persons behind on their last months */
	uint8_t type_mask;
};

static const struct gen_habit gen_habits[CORE_CATEGORY_COUNT] = {
	/* an employer in trouble: up to half a year unpaid, nearly always settled later */
	[CORE_EMPLOYEE] = { .fail = GEN_PER_2_20(2000), .partial = GEN_PER_2_20(200), .run_max = 6,
			    .medical_only_percent = 0, .backpay_percent = 90, .backpay_delay_max = 12,
			    .recent_percent = 4, .type_mask = 0x1f },
	/* a bank deduction that bounced: short runs, caught up within months */
	[CORE_FLEXIBLE] = { .fail = GEN_PER_2_20(10000), .partial = GEN_PER_2_20(1000), .run_max = 3,
			    .medical_only_percent = 40, .backpay_percent = 80, .backpay_delay_max = 6,
			    .recent_percent = 15, .type_mask = (1u << CORE_PENSION) | (1u << CORE_MEDICAL) },
};

/* A stretch of months with one payer: an employer's payroll or a flexible
 * worker's bank deduction. */
struct gen_spell {
	struct gen_range months;
	uint8_t category;
	uint8_t pay_day;     /* 15..25: on time, the same day every month */
	uint8_t raise_month; /* 0..11: the base changes in this month of the year */
	uint32_t grade_ppm;  /* flexible: the chosen base as a share of the average wage */
};

/* A run of unpaid months in progress. */
struct gen_trouble {
	uint32_t left;
	uint8_t mask;
	int32_t late_date;
};

struct gen_state {
	struct gen_config config;
	struct gen_city city[GEN_CITY_COUNT]; /* 0: config.city, 1: config.second_city */
	int32_t birth_first_days;
	struct gen_rng rng;                   /* the current person's */
	struct gen_range range[GEN_CITY_COUNT];
	uint32_t ratio_ppm[GEN_YEAR_COUNT];   /* the person's wage / the city's average, by year */
	uint32_t flexible_percent;            /* chance that a spell is flexible employment */
	struct gen_month months[GEN_CITY_COUNT][GEN_SPAN];
	struct core_slot slots[GEN_SLOTS_MAX];
};

/* YYYYMM of a dense month after year 0: core_month_yyyymm without floor division. */
static inline int32_t gen_yyyymm(int32_t month)
{
	return month / 12 * 100 + month % 12 + 1;
}

static char *gen_put_digits(char *p, uint32_t v, uint32_t width)
{
	for (uint32_t i = width; i > 0; i--, v /= 10) {
		p[i - 1] = (char)('0' + v % 10);
	}
	return p + width;
}

/* Region (city prefix + district 01..99), birth date, sequence with the sex
 * parity: (index mod days, index / days, sex) maps to distinct ids. */
static void gen_id_make(const struct gen_state *st, uint64_t index, uint32_t male, char *id)
{
	static const uint8_t weight[17] = { 7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2 };
	ASSERT(index < GEN_PERSONS_MAX);
	uint32_t day = (uint32_t)(index % GEN_BIRTH_DAYS) * GEN_BIRTH_STRIDE % GEN_BIRTH_DAYS;
	uint32_t code = (uint32_t)(index / GEN_BIRTH_DAYS);
	uint32_t city = st->config.city;
	uint32_t prefix = city - city % 100 + (city % 10000 == 0 ? 100 : 0);
	char *p = gen_put_digits(id, prefix + 1 + code / 500, 6);
	p = gen_put_digits(p, (uint32_t)core_days_to_date(st->birth_first_days + (int32_t)day), 8);
	p = gen_put_digits(p, (code / 5 % 100) * 10 + male + 2 * (code % 5), 3);
	uint32_t sum = 0;
	for (uint32_t i = 0; i < 17; i++) {
		sum += (uint32_t)(id[i] - '0') * weight[i];
	}
	*p++ = "10X98765432"[sum % 11];
	*p = '\0';
}

/* R9's statutory retirement month: people stop contributing there. */
static int32_t gen_retire_month(int32_t birth_month, uint32_t class_)
{
	static const int32_t rule[CORE_CLASS_COUNT][4] = {
		{ 720, 1965 * 12, 4, 36 }, { 660, 1970 * 12, 4, 36 }, { 600, 1975 * 12, 2, 60 }
	};
	int32_t k = birth_month - rule[class_][1];
	int32_t delay = k < 0 ? 0 : k / rule[class_][2] + 1;
	delay = delay > rule[class_][3] ? rule[class_][3] : delay;
	return birth_month + rule[class_][0] + delay;
}

/* Identity and career bounds; later cohorts start later (school, university). */
static void gen_identity_draw(struct gen_state *st, uint64_t index, struct gen_person *out)
{
	uint32_t male = gen_rng_below(&st->rng, 2);
	gen_id_make(st, index, male, out->id);
	uint32_t class_ = male ? CORE_CLASS_M60 : CORE_CLASS_F55;
	out->retire_class = -1;
	uint32_t roll = gen_rng_below(&st->rng, 100);
	if (!male && roll < 35) {
		class_ = CORE_CLASS_F50; /* women workers */
		out->retire_class = (int)class_;
	} else if (roll >= 95) {
		out->retire_class = (int)class_; /* stated though it is the default */
	}
	int32_t birth_month = core_id_birth_month(out->id);
	int32_t start_years = 16 + (int32_t)gen_rng_below(&st->rng, 5) + (birth_month / 12 - 1955) / 12;
	int32_t first = birth_month + start_years * 12 + (int32_t)gen_rng_below(&st->rng, 12);
	int32_t last = gen_retire_month(birth_month, class_) - 1;
	st->range[0] = (struct gen_range){ first, last < GEN_NOW_MONTH ? last : GEN_NOW_MONTH };
	st->range[1] = (struct gen_range){ 0, -1 };
	ASSERT(first >= GEN_MONTH_FIRST);
}

/* A wage that starts at 0.35..1.35 of the average (4% far above), then
 * drifts -1.5%..+4.5% a year against it. */
static void gen_wage_draw(struct gen_state *st)
{
	struct gen_rng *r = &st->rng;
	int32_t ratio = 350000 + (int32_t)gen_rng_below(r, 500000) + (int32_t)gen_rng_below(r, 500000);
	if (gen_rng_percent(r, 4)) {
		ratio += 1000000 + (int32_t)gen_rng_below(r, 1500000);
	}
	int32_t first_year = st->range[0].first / 12;
	for (uint32_t i = 0; i < GEN_YEAR_COUNT; i++) {
		if (GEN_YEAR_FIRST + (int32_t)i > first_year) {
			ratio += (int32_t)gen_rng_below(r, 60001) - 15000;
			ratio = ratio < 250000 ? 250000 : ratio > 6000000 ? 6000000 : ratio;
		}
		st->ratio_ppm[i] = (uint32_t)ratio;
	}
	uint32_t profile = gen_rng_below(r, 100);
	st->flexible_percent = profile < 65 ? 8 : profile < 85 ? 40 : 85;
}

/* Starts or continues a run of unpaid months, or pays part: x is one draw. */
static void gen_month_trouble(struct gen_month *m, struct gen_trouble *t, const struct gen_habit *h, int32_t month,
			      uint64_t x)
{
	if (t->left == 0) {
		uint32_t u = (uint32_t)(x & 0xfffff);
		if (u >= h->fail + h->partial) {
			return;
		}
		if (u >= h->fail) {
			m->partial_mask = m->type_mask;
			return;
		}
		t->left = 1 + (uint32_t)((x >> 20) % h->run_max);
		bool medical_only = (x >> 28) % 100 < h->medical_only_percent;
		t->mask = medical_only ? (uint8_t)(1u << CORE_MEDICAL) : m->type_mask;
		t->late_date = 0;
		if ((x >> 36) % 100 < h->backpay_percent) {
			int32_t late = month + (int32_t)t->left + (int32_t)((x >> 44) % h->backpay_delay_max);
			int32_t date = gen_yyyymm(late) * 100 + 1 + (int32_t)((x >> 52) % 28);
			t->late_date = date <= GEN_NOW_DATE ? date : 0;
		}
	}
	m->unpaid_mask = t->mask & m->type_mask;
	m->late_date = t->late_date;
	t->left--;
}

/* The spell's base in effect from the raise month of base_year: last year's
 * average wage times the person's ratio, or the flexible worker's grade. */
static int64_t gen_spell_base(const struct gen_state *st, uint32_t city_index, const struct gen_spell *s,
			      int32_t base_year)
{
	uint32_t i = (uint32_t)(base_year - GEN_YEAR_FIRST);
	uint32_t ppm = s->category == CORE_FLEXIBLE ? s->grade_ppm : st->ratio_ppm[i];
	return gen_yuan_round(st->city[city_index].avg_wage_fen[i - 1], ppm);
}

static void gen_spell_fill(struct gen_state *st, uint32_t city_index, const struct gen_spell *s)
{
	const struct gen_habit *h = &gen_habits[s->category];
	struct gen_trouble trouble = { 0, 0, 0 };
	int32_t base_year = 0;
	int64_t base = 0;
	for (int32_t month = s->months.first; month <= s->months.last; month++) {
		struct gen_month *m = &st->months[city_index][month - GEN_MONTH_FIRST];
		if (month < GEN_REFORM_MONTH) {
			*m = (struct gen_month){ .type_mask = 1u << CORE_PENSION, .category = CORE_EMPLOYEE, .deemed = true };
			continue;
		}
		int32_t year = month / 12 - (month % 12 < s->raise_month);
		if (year != base_year) {
			base_year = year;
			base = gen_spell_base(st, city_index, s, year);
		}
		*m = (struct gen_month){ .base_fen = base,
					 .paid_date = gen_yyyymm(month) * 100 + s->pay_day,
					 .type_mask = h->type_mask,
					 .category = s->category };
		gen_month_trouble(m, &trouble, h, month, gen_rng_next(&st->rng));
	}
}

/* Flexible workers mostly declare the lowest base, 60% of the average. */
static struct gen_spell gen_spell_draw(struct gen_state *st, int32_t first, int32_t last)
{
	static const uint32_t grades[10] = { 600000, 600000, 600000, 600000, 600000,
					     600000, 800000, 1000000, 1500000, 3000000 };
	struct gen_rng *r = &st->rng;
	bool flexible = first >= GEN_REFORM_MONTH && gen_rng_percent(r, st->flexible_percent);
	uint32_t length = flexible ? 6 + gen_rng_below(r, 91)
			  : gen_rng_percent(r, 35) ? 60 + gen_rng_below(r, 241) : 6 + gen_rng_below(r, 55);
	struct gen_spell s = {
		.months = { first, first + (int32_t)length - 1 < last ? first + (int32_t)length - 1 : last },
		.category = flexible ? CORE_FLEXIBLE : CORE_EMPLOYEE,
		.pay_day = (uint8_t)(15 + gen_rng_below(r, 11)),
		.raise_month = flexible || gen_rng_percent(r, 60) ? 0 : 6,
		.grade_ppm = grades[gen_rng_below(r, 10)],
	};
	return s;
}

/* Months between spells: mostly none (a new job at once), some short, a
 * few long (children, study, work abroad). */
static uint32_t gen_gap_draw(struct gen_rng *r)
{
	uint32_t roll = gen_rng_below(r, 100);
	return roll < 55 ? 0 : roll < 90 ? 1 + gen_rng_below(r, 12) : 24 + gen_rng_below(r, 97);
}

static void gen_career_fill(struct gen_state *st)
{
	const struct gen_range career = st->range[0];
	int32_t month = career.first;
	while (month <= career.last) {
		struct gen_spell s = gen_spell_draw(st, month, career.last);
		gen_spell_fill(st, 0, &s);
		month = s.months.last + 1;
		for (uint32_t gap = gen_gap_draw(&st->rng); gap > 0 && month <= career.last; gap--, month++) {
			st->months[0][month - GEN_MONTH_FIRST] = (struct gen_month){ 0 };
		}
	}
}

/* A stretch of 12..60 months as an employee in second_city, carved out of
 * the home plan except for a few months at its edges, where both cities
 * took contributions (duplicates, refund candidates). */
static void gen_stint_fill(struct gen_state *st)
{
	struct gen_rng *r = &st->rng;
	int32_t lo = st->range[0].first > GEN_REFORM_MONTH ? st->range[0].first : GEN_REFORM_MONTH;
	int32_t hi = st->range[0].last < GEN_NOW_MONTH - 1 ? st->range[0].last : GEN_NOW_MONTH - 1;
	int32_t span = hi - lo + 1;
	if (st->config.second_city == 0 || span < 24 || gen_rng_below(r, 1000000) >= GEN_STINT_PPM) {
		return;
	}
	int32_t length = 12 + (int32_t)gen_rng_below(r, 49);
	length = length > span ? span : length;
	int32_t first = lo + (int32_t)gen_rng_below(r, (uint32_t)(span - length + 1));
	struct gen_spell s = { .months = { first, first + length - 1 },
			       .category = CORE_EMPLOYEE,
			       .pay_day = (uint8_t)(15 + gen_rng_below(r, 11)),
			       .raise_month = gen_rng_percent(r, 60) ? 0 : 6 };
	gen_spell_fill(st, 1, &s);
	st->range[1] = s.months;
	int32_t head = gen_rng_percent(r, 50) ? 1 + (int32_t)gen_rng_below(r, 3) : 0;
	int32_t tail = gen_rng_percent(r, 30) ? 1 + (int32_t)gen_rng_below(r, 2) : 0;
	for (int32_t month = first + head; month <= s.months.last - tail; month++) {
		st->months[0][month - GEN_MONTH_FIRST] = (struct gen_month){ 0 };
	}
}

/* Nobody has paid the current month yet (pending); some are behind on the
 * months before it (arrears as of now). */
static void gen_recent_fill(struct gen_state *st)
{
	if (st->range[0].last != GEN_NOW_MONTH) {
		return;
	}
	struct gen_month *now = &st->months[0][GEN_NOW_MONTH - GEN_MONTH_FIRST];
	if (now->type_mask == 0) {
		return;
	}
	uint32_t behind = 0;
	if (gen_rng_percent(&st->rng, gen_habits[now->category].recent_percent)) {
		behind = 1 + gen_rng_below(&st->rng, 4);
	}
	for (int32_t month = GEN_NOW_MONTH - (int32_t)behind; month <= GEN_NOW_MONTH; month++) {
		struct gen_month *m = &st->months[0][month - GEN_MONTH_FIRST];
		if (month >= st->range[0].first && !m->deemed) {
			m->unpaid_mask = m->type_mask;
			m->partial_mask = 0;
			m->late_date = 0;
		}
	}
}

/* ---- slots ---- */

/* The last due computed in a run: bases change once a year, periods too. */
struct gen_due_cache {
	int64_t base_fen;
	int32_t period;
	uint8_t category;
	int64_t total_fen;
	int64_t individual_fen;
};

static void gen_slot_pay(struct core_slot *s, const struct gen_month *m, struct gen_due_cache *due,
			 const struct core_policy *policy)
{
	int32_t period = policy->period_of[s->month - CORE_MONTH_FIRST];
	if (s->base_fen != due->base_fen || period != due->period || s->category != due->category) {
		struct core_due d = core_slot_due(policy, s);
		*due = (struct gen_due_cache){ s->base_fen, period, s->category, d.employer_fen + d.individual_fen,
					       d.individual_fen };
	}
	uint8_t bit = (uint8_t)(1u << s->type);
	if (m->unpaid_mask & bit) {
		s->paid_fen = m->late_date != 0 ? due->total_fen : 0;
		s->paid_date = m->late_date;
		return;
	}
	int64_t paid = due->total_fen;
	if (m->partial_mask & bit) {
		/* an employer that paid only what it withheld from the wage; half a deduction */
		paid = s->category == CORE_EMPLOYEE ? due->individual_fen : due->total_fen / 2;
	}
	s->paid_fen = paid;
	s->paid_date = paid > 0 ? m->paid_date : 0;
}

/* One type's slots of one city, months ascending; returns their number. */
static uint32_t gen_slots_run(const struct gen_state *st, uint32_t city_index, uint8_t type, struct core_slot *out)
{
	const struct core_policy *policy = &st->city[city_index].policy;
	const struct gen_month *months = st->months[city_index];
	const struct gen_range range = st->range[city_index];
	struct gen_due_cache due = { .base_fen = -1 };
	uint32_t n = 0;
	for (int32_t month = range.first; month <= range.last; month++) {
		const struct gen_month *m = &months[month - GEN_MONTH_FIRST];
		if (((m->type_mask >> type) & 1u) == 0) {
			continue;
		}
		struct core_slot *s = &out[n++];
		*s = (struct core_slot){ .base_fen = m->base_fen, .month = month, .city = policy->city,
					 .type = type, .category = m->category, .deemed = m->deemed };
		if (!m->deemed) {
			gen_slot_pay(s, m, &due, policy);
		}
	}
	return n;
}

/* Store order: type, then city ascending, then month. */
static uint32_t gen_slots_make(struct gen_state *st)
{
	uint32_t order[GEN_CITY_COUNT] = { 0, 1 };
	if (st->config.second_city != 0 && st->config.second_city < st->config.city) {
		order[0] = 1;
		order[1] = 0;
	}
	uint32_t n = 0;
	for (uint8_t type = 0; type < CORE_TYPE_COUNT; type++) {
		for (uint32_t i = 0; i < GEN_CITY_COUNT; i++) {
			n += gen_slots_run(st, order[i], type, &st->slots[n]);
		}
	}
	ASSERT(n <= GEN_SLOTS_MAX);
	return n;
}

static void gen_person_make(struct gen_state *st, uint64_t index, struct gen_person *out)
{
	gen_rng_seed(&st->rng, st->config.seed, index);
	gen_identity_draw(st, index, out);
	gen_wage_draw(st);
	if (st->range[0].first <= st->range[0].last) {
		gen_career_fill(st);
		gen_stint_fill(st);
		gen_recent_fill(st);
	}
	out->slot_count = gen_slots_make(st);
	out->slots = st->slots;
}

static bool gen_city_valid(uint32_t city)
{
	return city >= 1 && city <= 999999;
}

static bool gen_config_valid(const struct gen_config *config)
{
	return config->person_count <= GEN_PERSONS_MAX && gen_city_valid(config->city) &&
	       (config->second_city == 0 ||
		(gen_city_valid(config->second_city) && config->second_city != config->city));
}

int gen_run(const struct gen_config *config, gen_emit_fn emit, void *ctx)
{
	if (!gen_config_valid(config)) {
		return -EINVAL;
	}
	struct gen_state *st = malloc(sizeof(*st));
	if (st == NULL) {
		return -ENOMEM;
	}
	st->config = *config;
	st->birth_first_days = core_date_to_days(GEN_BIRTH_FIRST);
	ASSERT(core_date_to_days(20031231) - st->birth_first_days + 1 == (int32_t)GEN_BIRTH_DAYS);
	gen_city_build(&st->city[0], config->city);
	if (config->second_city != 0) {
		gen_city_build(&st->city[1], config->second_city);
	}
	int rc = 0;
	for (uint64_t i = 0; i < config->person_count && rc == 0; i++) {
		struct gen_person person;
		gen_person_make(st, i, &person);
		rc = emit(ctx, &person);
	}
	free(st);
	return rc;
}

/* ---- policy document ---- */

/* A JSON list of the names whose bits are set, in canonical order. */
static void gen_json_names(FILE *out, const char *const *names, uint32_t name_count, uint32_t bits)
{
	const char *sep = "";
	fputc('[', out);
	for (uint32_t i = 0; i < name_count; i++) {
		if (bits & (1u << i)) {
			fprintf(out, "%s\"%s\"", sep, names[i]);
			sep = ", ";
		}
	}
	fputc(']', out);
}

static void gen_json_periods(FILE *out, const struct core_policy *p)
{
	static const char *const shares[CORE_SHARE_COUNT] = { "employer", "individual", "flexible" };
	fputs("  \"periods\": [\n", out);
	for (uint32_t k = 0; k < p->period_count; k++) {
		const struct core_period *period = &p->periods[k];
		fprintf(out, "    { \"from\": %d, \"base_min\": %lld, \"base_max\": %lld, \"rates\": {",
			core_month_yyyymm(period->from), (long long)period->base_min_fen,
			(long long)period->base_max_fen);
		for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
			fprintf(out, "%s \"%s\": {", t == 0 ? "" : ",", core_type_names[t]);
			for (uint32_t s = 0; s < CORE_SHARE_COUNT; s++) {
				fprintf(out, "%s \"%s\": %u", s == 0 ? "" : ",", shares[s], period->rate_ppm[t][s]);
			}
			fputs(" }", out);
		}
		fprintf(out, " } }%s\n", k + 1 < p->period_count ? "," : "");
	}
	fputs("  ],\n", out);
}

static void gen_json_interest(FILE *out, const struct core_policy *p)
{
	fputs("  \"interest\": { \"types\": ", out);
	gen_json_names(out, core_type_names, CORE_TYPE_COUNT, p->interest_types);
	fputs(", \"categories\": ", out);
	gen_json_names(out, core_category_names, CORE_CATEGORY_COUNT, p->interest_categories);
	fprintf(out, ", \"default_ppm\": %u, \"rates\": [", p->interest_default_ppm);
	for (uint32_t k = 0; k < p->interest_rate_count; k++) {
		fprintf(out, "%s[%d, %u]", k == 0 ? "" : ", ", p->interest_rates[k].year, p->interest_rates[k].rate_ppm);
	}
	fputs("] },\n", out);
}

static void gen_json_rules(FILE *out, const struct core_policy *p)
{
	fprintf(out, "  \"late_fee\": { \"daily_ppm\": %u, \"categories\": ", p->late_fee_daily_ppm);
	gen_json_names(out, core_category_names, CORE_CATEGORY_COUNT, p->late_fee_categories);
	fprintf(out, ", \"cap_at_principal\": %s },\n", p->late_fee_cap_at_principal ? "true" : "false");
	fprintf(out,
		"  \"backpay\": { \"direct_max_months\": %u, \"verify_max_months\": %u, \"legacy_before\": %d, "
		"\"flexible_window_months\": %u },\n",
		p->backpay_direct_max_months, p->backpay_verify_max_months,
		core_month_yyyymm(p->backpay_legacy_before), p->backpay_flexible_window_months);
	fputs("  \"housing\": { \"types\": ", out);
	gen_json_names(out, core_type_names, CORE_TYPE_COUNT, p->housing_types);
	fprintf(out,
		", \"window_months\": %u, \"required_months\": %u, \"end_offset_months\": %u, "
		"\"backpay_counts\": %s, \"grace_days\": %u },\n",
		p->housing_window_months, p->housing_required_months, p->housing_end_offset_months,
		p->housing_backpay_counts ? "true" : "false", p->housing_grace_days);
	fputs("  \"withhold\": { \"order\": [", out);
	for (uint32_t i = 0; i < p->withhold_order_count; i++) {
		fprintf(out, "%s\"%s\"", i == 0 ? "" : ", ", core_type_names[p->withhold_order[i]]);
	}
	fprintf(out, "], \"mode\": \"%s\" }\n", p->withhold_mode == CORE_WITHHOLD_STOP ? "stop" : "skip");
}

int gen_policy_write(FILE *out, uint32_t city, const struct gen_config *config)
{
	if (!gen_config_valid(config) || (city != config->city && city != config->second_city) || city == 0) {
		return -EINVAL;
	}
	struct gen_city *c = malloc(sizeof(*c));
	if (c == NULL) {
		return -ENOMEM;
	}
	gen_city_build(c, city);
	const struct core_policy *p = &c->policy;
	fprintf(out, "{\n  \"city\": \"%06u\", \"name\": \"%.*s\",\n", p->city, (int)p->name_size, p->name);
	fprintf(out, "  \"deadline\": { \"day\": %u, \"month_offset\": %u },\n", p->deadline_day,
		p->deadline_month_offset);
	gen_json_periods(out, p);
	gen_json_interest(out, p);
	gen_json_rules(out, p);
	fputs("}\n", out);
	free(c);
	return ferror(out) ? -EIO : 0;
}

/* ---- CSV ---- */

int gen_csv_header(FILE *out)
{
	static const char header[] = "id,month,city,type,category,base,paid,paid_date,deemed\n";
	return fwrite(header, 1, sizeof(header) - 1, out) == sizeof(header) - 1 ? 0 : -EIO;
}

static const char gen_digit_pairs[201] =
	"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	"8081828384858687888990919293949596979899";

/* Two digits of v < 100. */
static inline char *gen_put_pair(char *p, uint32_t v)
{
	memcpy(p, &gen_digit_pairs[v * 2], 2);
	return p + 2;
}

/* Decimal digits of v, without leading zeros, written back to front in place. */
static char *gen_put_u64(char *p, uint64_t v)
{
	uint32_t size = 1;
	for (uint64_t bound = 10; v >= bound && size < 20; bound *= 10) {
		size++;
	}
	char *q = p + size;
	while (v >= 100) {
		q -= 2;
		memcpy(q, &gen_digit_pairs[(v % 100) * 2], 2);
		v /= 100;
	}
	if (v >= 10) {
		memcpy(q - 2, &gen_digit_pairs[v * 2], 2);
	} else {
		q[-1] = (char)('0' + v);
	}
	return p + size;
}

/* Column text that repeats from row to row, kept formatted: a person's id,
 * names, the city, and base and paid (long runs share them). Every piece is
 * copied at a fixed size and the cursor advanced by its length, so the
 * copies compile to a few moves; rows have GEN_CSV_ROW_MAX bytes of room. */
struct gen_csv_text {
	char id[CORE_ID_SIZE + 6];                 /* "id," */
	char type[CORE_TYPE_COUNT][16];            /* "unemployment," */
	uint8_t type_size[CORE_TYPE_COUNT];
	char category[CORE_CATEGORY_COUNT][16];    /* "employee," */
	uint8_t category_size[CORE_CATEGORY_COUNT];
	uint32_t city;
	char city_text[8];                         /* "110000," */
	int64_t base_fen;
	int64_t paid_fen;
	char money[32];                            /* "base,paid," at most 24 bytes */
	uint8_t money_size;
};

static void gen_csv_name(char *text, uint8_t *size, const char *name)
{
	size_t n = strlen(name);
	ASSERT(n + 1 <= 16);
	memset(text, 0, 16);
	memcpy(text, name, n);
	text[n] = ',';
	*size = (uint8_t)(n + 1);
}

static void gen_csv_text_init(struct gen_csv_text *t, const char *id)
{
	memset(t, 0, sizeof(*t));
	memcpy(t->id, id, CORE_ID_SIZE);
	t->id[CORE_ID_SIZE] = ',';
	for (uint32_t i = 0; i < CORE_TYPE_COUNT; i++) {
		gen_csv_name(t->type[i], &t->type_size[i], core_type_names[i]);
	}
	for (uint32_t i = 0; i < CORE_CATEGORY_COUNT; i++) {
		gen_csv_name(t->category[i], &t->category_size[i], core_category_names[i]);
	}
	t->base_fen = -1; /* no row yet: the first formats city and money */
	t->city = UINT32_MAX;
}

static char *gen_csv_row(char *p, struct gen_csv_text *t, const struct core_slot *s)
{
	if (s->city != t->city) {
		t->city = s->city;
		gen_put_digits(t->city_text, s->city, 6);
		t->city_text[6] = ',';
	}
	if (s->base_fen != t->base_fen || s->paid_fen != t->paid_fen) {
		t->base_fen = s->base_fen;
		t->paid_fen = s->paid_fen;
		char *m = gen_put_u64(t->money, (uint64_t)s->base_fen);
		*m++ = ',';
		m = gen_put_u64(m, (uint64_t)s->paid_fen);
		*m++ = ',';
		t->money_size = (uint8_t)(m - t->money);
	}
	memcpy(p, t->id, CORE_ID_SIZE + 1);
	p += CORE_ID_SIZE + 1;
	int32_t yyyymm = gen_yyyymm(s->month);
	p = gen_put_pair(gen_put_pair(gen_put_pair(p, (uint32_t)yyyymm / 10000), (uint32_t)yyyymm / 100 % 100),
			 (uint32_t)yyyymm % 100);
	*p++ = ',';
	memcpy(p, t->city_text, 8);
	p += 7;
	memcpy(p, t->type[s->type], 16);
	p += t->type_size[s->type];
	memcpy(p, t->category[s->category], 16);
	p += t->category_size[s->category];
	memcpy(p, t->money, 24);
	p += t->money_size;
	uint32_t date = (uint32_t)s->paid_date;
	if (date == 0) {
		*p++ = '0';
	} else {
		p = gen_put_pair(gen_put_pair(p, date / 1000000), date / 10000 % 100);
		p = gen_put_pair(gen_put_pair(p, date / 100 % 100), date % 100);
	}
	memcpy(p, s->deemed ? ",1\n" : ",0\n", 3);
	return p + 3;
}

int gen_csv_person(FILE *out, const struct gen_person *person)
{
	struct gen_csv_text text;
	gen_csv_text_init(&text, person->id);
	char buffer[GEN_CSV_BUFFER_SIZE];
	char *p = buffer;
	for (uint32_t i = 0; i < person->slot_count; i++) {
		const struct core_slot *s = &person->slots[i];
		ASSERT(s->type < CORE_TYPE_COUNT && s->category < CORE_CATEGORY_COUNT);
		ASSERT(s->base_fen >= 0 && s->base_fen <= CORE_MONEY_MAX);
		ASSERT(s->paid_fen >= 0 && s->paid_fen <= CORE_MONEY_MAX);
		ASSERT(s->paid_date == 0 || core_date_valid(s->paid_date));
		p = gen_csv_row(p, &text, s);
		if ((size_t)(buffer + sizeof(buffer) - p) < GEN_CSV_ROW_MAX || i + 1 == person->slot_count) {
			size_t size = (size_t)(p - buffer);
			if (fwrite(buffer, 1, size, out) != size) {
				return -EIO;
			}
			p = buffer;
		}
	}
	return 0;
}
