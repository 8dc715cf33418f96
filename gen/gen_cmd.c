/* arrears gen: a generated city as CSV and policy files, or straight into a
 * store (a city of millions is over a billion slots: its CSV would not fit). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../rpc/dispatch.h"
#include "../rpc/summary.h"
#include "../cli/flags.h"
#include "gen.h"
#include "gen_cmd.h"

#define GEN_BATCH_SLOTS (2u << 20) /* slots per write transaction */

struct store_sink {
	struct store *store;
	struct store_txn *txn;
	struct summary_bulk summaries;
	uint32_t batch_slots;
	uint32_t batch_persons; /* for the batch's audit record */
	uint64_t persons;
	uint64_t slots;
	int rc;
};

/* Generated persons are sorted and valid: they go to the store as they are.
 * A transaction that must grow the map is not replayed here: the map is
 * grown ahead of need instead (see gen_to_store). */
static int sink_person(void *ctx, const struct gen_person *p)
{
	struct store_sink *s = ctx;
	if (s->txn == NULL && (s->rc = store_write_begin(s->store, &s->txn)) != STORE_OK) {
		return 1;
	}
	s->rc = summary_bulk_put(&s->summaries, s->txn, p->id, p->retire_class, p->slots, p->slot_count);
	if (s->rc != STORE_OK) {
		return 1;
	}
	s->persons++;
	s->slots += p->slot_count;
	s->batch_slots += p->slot_count;
	s->batch_persons++;
	if (s->batch_slots >= GEN_BATCH_SLOTS) {
		s->rc = dispatch_audit_batch(s->txn, "gen", s->batch_persons);
		s->batch_persons = 0;
		if (s->rc != STORE_OK) {
			store_txn_end(s->txn);
			s->txn = NULL;
			return 1;
		}
		s->rc = store_write_commit(s->txn);
		s->txn = NULL;
		s->batch_slots = 0;
		return s->rc != STORE_OK;
	}
	return 0;
}

static int put_policy(struct dispatch *d, uint32_t city, const struct gen_config *config)
{
	char *text = NULL;
	size_t size = 0;
	FILE *mem = open_memstream(&text, &size);
	int rc = mem == NULL || gen_policy_write(mem, city, config) != 0;
	if (mem != NULL) {
		fclose(mem);
	}
	uint8_t *frame = NULL;
	size_t frame_size;
	char err[256];
	if (rc == 0 && proto_json_frame("policy.put", 1, "policy", text, &frame, &frame_size, err, sizeof(err)) != 0) {
		rc = 1;
	}
	free(text);
	if (rc == 0) {
		const uint8_t *response;
		size_t response_size;
		struct proto_error perr;
		struct dispatch_outcome outcome;
		dispatch_frame(d, NULL, DISPATCH_ALL, frame, frame_size, &response, &response_size, &outcome);
		rc = proto_response_error(response, response_size, &perr);
	}
	free(frame);
	return rc;
}

static int gen_to_store(const struct gen_config *config, const char *dir)
{
	struct store *store;
	char err[256];
	if (store_open(dir, NULL, &store, err, sizeof(err)) != STORE_OK) {
		fprintf(stderr, "gen: %s\n", err);
		return 1;
	}
	struct dispatch *d = dispatch_new(store, NULL);
	int rc = d == NULL || put_policy(d, config->city, config) != 0 ||
		 (config->second_city != 0 && put_policy(d, config->second_city, config) != 0);
	dispatch_free(d);
	struct store_sink sink = { .store = store };
	rc = rc == 0 ? summary_bulk_open(&sink.summaries, store) != STORE_OK : rc;
	if (rc == 0) {
		int stopped = gen_run(config, sink_person, &sink);
		if (sink.txn != NULL && sink.rc == STORE_OK) {
			sink.rc = dispatch_audit_batch(sink.txn, "gen", sink.batch_persons);
		}
		if (sink.txn != NULL && sink.rc == STORE_OK) {
			sink.rc = store_write_commit(sink.txn);
		} else if (sink.txn != NULL) {
			store_txn_end(sink.txn);
		}
		rc = stopped != 0 && sink.rc == STORE_OK ? 1 : 0;
		summary_bulk_close(&sink.summaries);
	}
	struct store_stats stats;
	store_stats(store, &stats);
	store_close(store);
	if (rc != 0 || sink.rc != STORE_OK) {
		fprintf(stderr, "gen: writing the store failed\n");
		return 1;
	}
	fprintf(stderr, "gen: %llu persons, %llu slots into %s (%llu bytes, %.2f bytes/slot)\n",
		(unsigned long long)sink.persons, (unsigned long long)sink.slots, dir,
		(unsigned long long)stats.bytes_used,
		sink.slots > 0 ? (double)stats.bytes_used / (double)sink.slots : 0.0);
	return 0;
}

static int csv_person(void *ctx, const struct gen_person *p)
{
	return gen_csv_person(ctx, p) != 0;
}

static int write_policy_file(const char *dir, uint32_t city, const struct gen_config *config)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/policy-%06u.json", dir, city);
	FILE *f = fopen(path, "w");
	int rc = f == NULL || gen_policy_write(f, city, config) != 0;
	if (f != NULL && fclose(f) != 0) {
		rc = 1;
	}
	return rc;
}

static int gen_to_files(const struct gen_config *config, const char *dir)
{
	char path[4096];
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "gen: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/slots.csv", dir);
	FILE *csv = fopen(path, "w");
	if (csv == NULL) {
		fprintf(stderr, "gen: %s: %s\n", path, strerror(errno));
		return 1;
	}
	static char buf[1 << 20];
	setvbuf(csv, buf, _IOFBF, sizeof(buf));
	int rc = gen_csv_header(csv) != 0 || gen_run(config, csv_person, csv) != 0;
	rc |= fclose(csv) != 0;
	rc |= write_policy_file(dir, config->city, config);
	if (config->second_city != 0) {
		rc |= write_policy_file(dir, config->second_city, config);
	}
	if (rc != 0) {
		fprintf(stderr, "gen: writing %s failed\n", dir);
	}
	return rc;
}

int gen_command(int argc, char **argv)
{
	struct gen_config config = { .person_count = 1000, .seed = 1, .city = 110000 };
	const char *out = NULL;
	const char *data = NULL;
	bool second = false;
	static const char *const flags[] = { "--persons", "--seed", "--city", "--second-city", "--out", "--data" };
	const char *prog = "arrears gen";
	for (int i = 0; i < argc; i += 2) {
		const char *f = argv[i];
		bool known = false;
		for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++) {
			known = known || strcmp(f, flags[k]) == 0;
		}
		if (!known) {
			return flag_unknown(prog, f);
		}
		if (i + 1 == argc) {
			return flag_missing_value(prog, f);
		}
		const char *v = argv[i + 1];
		bool ok = true;
		if (strcmp(f, "--persons") == 0) {
			ok = flag_u64(prog, f, v, 0, GEN_PERSONS_MAX, &config.person_count);
		} else if (strcmp(f, "--seed") == 0) {
			ok = flag_u64(prog, f, v, 0, UINT64_MAX, &config.seed);
		} else if (strcmp(f, "--city") == 0) {
			ok = flag_city(prog, f, v, &config.city);
		} else if (strcmp(f, "--second-city") == 0) {
			ok = flag_city(prog, f, v, &config.second_city);
			second = true;
		} else if (strcmp(f, "--out") == 0) {
			out = v;
		} else {
			data = v;
		}
		if (!ok) {
			return 2;
		}
	}
	if ((out == NULL) == (data == NULL)) {
		fprintf(stderr, "%s: %s (%s --help)\n", prog,
			out == NULL ? "--out DIR or --data DIR is required" : "--out and --data exclude each other", prog);
		return 2;
	}
	if (!second) {
		config.second_city = config.city == 310000 ? 110000 : 310000;
	}
	return data != NULL ? gen_to_store(&config, data) : gen_to_files(&config, out);
}
