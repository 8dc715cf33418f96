/* The stored-timeline decoder on corrupt bytes. Input: a person's value as
 * LMDB holds it (format byte, class byte, the run encoding of
 * core/timeline.c), read through store_person_decode as store_person_get
 * reads it. Asserts: the three readers (slot by slot in place, run by run
 * in place, core_timeline_decode into a run list) agree on whether the
 * bytes are corrupt and on every slot; an accepted timeline holds exactly
 * slot_count slots, each a slot person.put could have stored; the core
 * rules give the same answers on the in-place, the decoded and the plain
 * form (and CORE_ERR_CORRUPT, never a crash, on corrupt bytes);
 * person.get's writer refuses corrupt bytes and otherwise writes one whole
 * msgpack response; the slots encode and decode back to themselves.
 * ASan stands guard over every read of the bytes. */
#include "fuzz_common.h"

#define SLOTS_MAX 8192u /* slot counts up to this are computed; larger ones only decoded */

static struct core_policy *policies[2];
static struct core_policy_set set = { (const struct core_policy *const *)policies, 2 };
static struct core_slot slots[SLOTS_MAX];
static struct core_slot slots_by_run[SLOTS_MAX];
static struct core_run runs[SLOTS_MAX];
static struct core_arrears_item items[3][SLOTS_MAX];
static struct core_duplicate duplicates[3][SLOTS_MAX];
static uint8_t encoded[20 + SLOTS_MAX * 25]; /* core_timeline_encode_max(SLOTS_MAX) */
static struct proto_writer *writer;

static const char minimal_policy_json[] =
	"{\"city\": \"310000\", \"deadline\": {\"day\": 31, \"month_offset\": 2},"
	" \"periods\": [{\"from\": 195001, \"base_min\": 0, \"base_max\": 10000000000,"
	"   \"rates\": {\"pension\": {\"flexible\": 1000000, \"employer\": 1000000, \"individual\": 1000000}}}],"
	" \"late_fee\": {\"daily_ppm\": 10000, \"categories\": [\"employee\", \"flexible\"]},"
	" \"interest\": {\"types\": [\"pension\", \"medical\"], \"categories\": [\"employee\", \"flexible\"],"
	"   \"default_ppm\": 1000000}}";

static struct core_policy *policy_from_json(const char *json)
{
	size_t size;
	uint8_t *frame = fuzz_json_frame("policy.put", "policy", json, &size);
	struct proto_message *m = proto_message_new();
	struct proto_envelope env;
	struct proto_error err;
	FUZZ_CHECK(m != NULL && proto_message_parse(m, frame, size, &env, &err) == PROTO_OK);
	struct core_policy *p = proto_policy_decode(env.params, &err);
	FUZZ_CHECK(p != NULL);
	proto_message_free(m);
	free(frame);
	return p;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	policies[0] = policy_from_json(fuzz_policy_json);    /* 110000 */
	policies[1] = policy_from_json(minimal_policy_json); /* 310000, every month has a period */
	writer = proto_writer_new();
	FUZZ_CHECK(writer != NULL);
	return 0;
}

static bool slot_equal(const struct core_slot *a, const struct core_slot *b)
{
	return a->base_fen == b->base_fen && a->paid_fen == b->paid_fen && a->month == b->month &&
	       a->paid_date == b->paid_date && a->city == b->city && a->type == b->type &&
	       a->category == b->category && a->deemed == b->deemed;
}

/* Stored slots must be what person.put takes (SPEC §2.1), paid up to 2^53. */
static void check_slot(const struct core_slot *s)
{
	FUZZ_CHECK(s->month >= CORE_MONTH_FIRST && s->month < CORE_MONTH_FIRST + (int32_t)CORE_MONTH_COUNT);
	FUZZ_CHECK(s->city <= 999999 && s->type < CORE_TYPE_COUNT && s->category < CORE_CATEGORY_COUNT);
	FUZZ_CHECK(s->base_fen >= 0 && s->base_fen <= CORE_MONEY_MAX);
	FUZZ_CHECK(s->paid_fen >= 0 && s->paid_fen <= CORE_AMOUNT_MAX);
	FUZZ_CHECK(s->paid_date == 0 || core_date_valid(s->paid_date));
	FUZZ_CHECK(core_slot_rules(s) == CORE_RULE_OK);
}

/* Every rule on one form of the timeline; k picks the scratch buffers. */
struct answers {
	int rc[6];
	uint32_t bad;
	struct core_arrears arrears;
	uint32_t item_count;
	struct core_years years;
	uint32_t duplicate_count;
	struct core_retirement retirement;
	struct core_housing housing;
	struct core_medical medical;
};

static void compute(const struct core_timeline *tl, struct core_as_of as_of, uint8_t class_, int k,
		    struct answers *a)
{
	memset(a, 0, sizeof(*a));
	a->rc[0] = core_person_resolve(&set, tl, &a->bad);
	if (a->rc[0] != CORE_OK) {
		return;
	}
	a->rc[1] = core_arrears_compute(&set, tl, as_of, &a->arrears, items[k], &a->item_count);
	a->rc[2] = core_years_compute(&set, tl, as_of, &a->years, duplicates[k], &a->duplicate_count);
	a->rc[3] = core_retirement_check(&set, core_id_birth_month(FUZZ_PERSON_ID), class_, tl, as_of, -1,
					 &a->retirement);
	a->rc[4] = core_housing_check(&set, policies[0], tl, as_of, &a->housing);
	a->rc[5] = core_medical_status(&set, tl, as_of, &a->medical);
	FUZZ_CHECK(a->item_count <= tl->slot_count && a->duplicate_count <= tl->slot_count);
}

static void check_same(const struct answers *x, const struct answers *y, int kx, int ky)
{
	FUZZ_CHECK(memcmp(x->rc, y->rc, sizeof(x->rc)) == 0);
	FUZZ_CHECK(x->bad == y->bad || x->rc[0] == CORE_OK);
	if (x->rc[0] != CORE_OK) {
		return;
	}
	FUZZ_CHECK(x->rc[1] != CORE_OK || memcmp(&x->arrears, &y->arrears, sizeof(x->arrears)) == 0);
	FUZZ_CHECK(x->rc[1] != CORE_OK || x->item_count == y->item_count);
	FUZZ_CHECK(x->rc[1] != CORE_OK || memcmp(items[kx], items[ky], sizeof(items[0][0]) * x->item_count) == 0);
	FUZZ_CHECK(x->rc[2] != CORE_OK || memcmp(&x->years, &y->years, sizeof(x->years)) == 0);
	FUZZ_CHECK(x->rc[2] != CORE_OK || x->duplicate_count == y->duplicate_count);
	FUZZ_CHECK(x->rc[2] != CORE_OK ||
		   memcmp(duplicates[kx], duplicates[ky], sizeof(duplicates[0][0]) * x->duplicate_count) == 0);
	FUZZ_CHECK(x->rc[3] != CORE_OK || memcmp(&x->retirement, &y->retirement, sizeof(x->retirement)) == 0);
	FUZZ_CHECK(x->rc[4] != CORE_OK || memcmp(&x->housing, &y->housing, sizeof(x->housing)) == 0);
	FUZZ_CHECK(x->rc[5] != CORE_OK || memcmp(&x->medical, &y->medical, sizeof(x->medical)) == 0);
}

/* The summary's answers against the full path's (x), at an as_of where it applies. */
static void summary_compare(const struct core_summary *sum, struct core_as_of as_of, uint8_t class_,
			    const struct answers *x)
{
	static struct answers y;
	uint32_t bad;
	FUZZ_CHECK(core_person_resolve(&set, &sum->exceptions, &bad) == CORE_OK);
	y.rc[1] = core_arrears_compute(&set, &sum->exceptions, as_of, &y.arrears, items[2], &y.item_count);
	FUZZ_CHECK(y.rc[1] == x->rc[1]);
	FUZZ_CHECK(y.rc[1] != CORE_OK || (memcmp(&x->arrears, &y.arrears, sizeof(y.arrears)) == 0 &&
					   x->item_count == y.item_count &&
					   memcmp(items[0], items[2], sizeof(items[0][0]) * y.item_count) == 0));
	FUZZ_CHECK(core_summary_years(sum, &y.years, duplicates[2], &y.duplicate_count) == CORE_OK);
	FUZZ_CHECK(memcmp(&x->years, &y.years, sizeof(y.years)) == 0 && x->duplicate_count == y.duplicate_count);
	FUZZ_CHECK(memcmp(duplicates[0], duplicates[2], sizeof(duplicates[0][0]) * y.duplicate_count) == 0);
	memset(&y.retirement, 0, sizeof(y.retirement));
	FUZZ_CHECK(core_summary_retirement(&set, core_id_birth_month(FUZZ_PERSON_ID), class_, sum, as_of, -1,
					   &y.retirement) == x->rc[3]);
	FUZZ_CHECK(x->rc[3] != CORE_OK || memcmp(&x->retirement, &y.retirement, sizeof(y.retirement)) == 0);
	memset(&y.medical, 0, sizeof(y.medical));
	FUZZ_CHECK(core_summary_medical(&set, sum, as_of, &y.medical) == CORE_OK);
	FUZZ_CHECK(memcmp(&x->medical, &y.medical, sizeof(y.medical)) == 0);
	memset(&y.housing, 0, sizeof(y.housing));
	FUZZ_CHECK(core_summary_housing(policies[0], sum, as_of, &y.housing) == x->rc[4]);
	FUZZ_CHECK(x->rc[4] != CORE_OK || memcmp(&x->housing, &y.housing, sizeof(y.housing)) == 0);
}

/* A stored summary read from fuzzed bytes is used only as the server does:
 * read, its exceptions resolved; then nothing may crash. */
static void summary_stored(const struct store_person *p, struct core_as_of as_of, uint8_t class_)
{
	struct core_summary sum;
	uint32_t bad;
	if (p->summary == NULL || !core_summary_read(p->summary, p->summary_size, &sum) ||
	    sum.exceptions.slot_count > SLOTS_MAX || sum.duplicate_count > SLOTS_MAX || core_person_resolve(&set, &sum.exceptions, &bad) != CORE_OK) {
		return;
	}
	static struct answers y;
	core_arrears_compute(&set, &sum.exceptions, as_of, &y.arrears, items[2], &y.item_count);
	core_summary_years(&sum, &y.years, duplicates[2], &y.duplicate_count);
	core_summary_retirement(&set, core_id_birth_month(FUZZ_PERSON_ID), class_, &sum, as_of, -1, &y.retirement);
	core_summary_medical(&set, &sum, as_of, &y.medical);
	core_summary_housing(policies[0], &sum, as_of, &y.housing);
	for (uint32_t i = 0; i < sum.city_count; i++) {
		uint32_t city, revision;
		core_summary_city(&sum, i, &city, &revision);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int32_t dates[4] = { 20240615, 20250110, 19991231, 21001231 };
	struct store_person p;
	if (store_person_decode(FUZZ_PERSON_ID, CORE_ID_SIZE, data, size, &p) != STORE_OK) {
		return 0;
	}
	const struct core_timeline *tl = &p.timeline;
	FUZZ_CHECK(p.retire_class >= -1 && p.retire_class < CORE_CLASS_COUNT);
	uint8_t class_ = p.retire_class >= 0 ? (uint8_t)p.retire_class : core_id_default_class(FUZZ_PERSON_ID);
	bool small = tl->slot_count <= SLOTS_MAX;

	/* Slot by slot, in place. */
	struct core_timeline_iter it;
	const struct core_slot *s;
	uint32_t n = 0;
	core_timeline_iter_init(&it, tl);
	while ((s = core_timeline_next(&it)) != NULL) {
		FUZZ_CHECK(n < tl->slot_count);
		check_slot(s);
		if (small) {
			slots[n] = *s;
		}
		n++;
	}
	bool corrupt = it.corrupt;
	FUZZ_CHECK(corrupt || n == tl->slot_count);

	/* Run by run, in place. */
	const struct core_run *r;
	uint32_t m = 0;
	core_timeline_iter_init(&it, tl);
	while ((r = core_timeline_next_run(&it)) != NULL) {
		FUZZ_CHECK(r->count >= 1 && r->count <= tl->slot_count - m);
		for (uint32_t k = 0; k < r->count; k++) {
			struct core_slot one;
			core_run_slot(r, k, &one);
			FUZZ_CHECK(!small || slot_equal(&one, &slots[m]));
			if (small) {
				slots_by_run[m] = one;
			}
			m++;
		}
	}
	FUZZ_CHECK(it.corrupt == corrupt && (corrupt || m == n));

	/* Into a run list: a run takes at least three bytes, so the bytes bound the runs. */
	uint32_t capacity = tl->slot_count < SLOTS_MAX ? tl->slot_count : SLOTS_MAX;
	int64_t run_count = core_timeline_decode(tl, runs, capacity);
	FUZZ_CHECK((run_count < 0) == corrupt || (run_count < 0 && tl->runs_size / 3 > capacity));

	/* person.get's writer. */
	proto_writer_reset(writer);
	bool written = proto_write_person(writer, 7, p.id, p.retire_class, tl);
	FUZZ_CHECK(written == !corrupt);
	if (written) {
		size_t response_size;
		const uint8_t *response = proto_writer_data(writer, &response_size);
		FUZZ_CHECK(response != NULL);
		fuzz_check_response(response, response_size, 7);
	}

	if (!small) {
		return 0;
	}
	struct core_as_of as_of = core_as_of_make(dates[size % 4]);
	summary_stored(&p, as_of, class_);
	static struct answers in_place;
	static struct answers decoded;
	static struct answers plain;
	compute(tl, as_of, class_, 0, &in_place);
	if (corrupt) {
		/* The rules stop at the first bad run; resolve walks every slot first. */
		FUZZ_CHECK(in_place.rc[0] == CORE_ERR_CORRUPT || in_place.rc[0] == CORE_ERR_NO_POLICY ||
			   in_place.rc[0] == CORE_ERR_NO_PERIOD);
		return 0;
	}
	FUZZ_CHECK(run_count >= 0);
	struct core_timeline as_runs = { .slot_count = tl->slot_count, .run_list = runs, .run_count = (uint32_t)run_count };
	struct core_timeline as_slots = { .slots = slots, .slot_count = n };
	compute(&as_runs, as_of, class_, 1, &decoded);
	compute(&as_slots, as_of, class_, 2, &plain);
	check_same(&in_place, &decoded, 0, 1);
	check_same(&in_place, &plain, 0, 2);

	/* Encoded again (store order), the slots read back as themselves. */
	core_slots_sort(slots, n);
	FUZZ_CHECK(core_timeline_encode_max(n) <= sizeof(encoded));
	size_t encoded_size = core_timeline_encode(slots, n, encoded, core_timeline_encode_max(n));
	FUZZ_CHECK(encoded_size > 0);
	struct core_timeline again = { .slot_count = n, .runs = encoded, .runs_size = encoded_size };
	core_timeline_iter_init(&it, &again);
	uint32_t k = 0;
	while ((s = core_timeline_next(&it)) != NULL) {
		FUZZ_CHECK(k < n && slot_equal(s, &slots[k]));
		k++;
	}
	FUZZ_CHECK(!it.corrupt && k == n);

	/* Its summary answers as the full path wherever it applies. */
	static struct core_slot scratch_slots[SLOTS_MAX];
	static struct core_duplicate scratch_dups[SLOTS_MAX];
	static uint32_t scratch_cities[SLOTS_MAX];
	static uint8_t summary[1u << 19];
	static const uint32_t revisions[2] = { 1, 1 };
	struct core_summary_scratch scratch = { scratch_slots, scratch_dups, scratch_cities, SLOTS_MAX };
	FUZZ_CHECK(core_summary_size_max(n) <= sizeof(summary));
	size_t summary_size = core_summary_build(&set, revisions, tl, &scratch, summary, sizeof(summary));
	FUZZ_CHECK(in_place.rc[0] == CORE_OK || summary_size == 0); /* R1 fails: nothing to summarize */
	struct core_summary sum;
	if (summary_size > 0 && core_summary_read(summary, summary_size, &sum) && core_summary_applies(&sum, as_of)) {
		summary_compare(&sum, as_of, class_, &in_place);
	}
	return 0;
}
