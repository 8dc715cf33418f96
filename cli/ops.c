/* Operations on a store directory: audit, backup, verify. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "flags.h"
#include "ops.h"
#include "../proto/proto.h"
#include "../rpc/dispatch.h"
#include "../rpc/log.h"
#include "../rpc/summary.h"
#include "../store/store.h"

#define VERIFY_REPORTS_MAX 1000u /* problems printed; past it only counted */

/* An existing store only: opening creates one, and verifying an empty
 * store made from a mistyped path would say "ok". */
static int open_store(const char *prog, const char *dir, struct store **store)
{
	char err[256];
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (stat(path, &st) != 0) {
		fprintf(stderr, "%s: no store in %s (%s: %s)\n", prog, dir, path, strerror(errno));
		return 1;
	}
	if (store_open(dir, NULL, store, err, sizeof(err)) != STORE_OK) {
		fprintf(stderr, "%s: cannot open the store: %s\n", prog, err);
		return 1;
	}
	return 0;
}

/* One audit.read page through the request path; prints its records as
 * compact JSON lines. Returns 0 with *next (0: the log ended), 1 on failure. */
static int audit_page(struct dispatch *d, uint64_t after, uint32_t limit, uint64_t *next, uint64_t *printed)
{
	char params[96];
	char err[256];
	uint8_t *frame = NULL;
	size_t frame_size;
	snprintf(params, sizeof(params), "{\"after\": %llu, \"limit\": %u}", (unsigned long long)after, limit);
	if (proto_json_frame("audit.read", 1, NULL, params, &frame, &frame_size, err, sizeof(err)) != PROTO_OK) {
		fprintf(stderr, "arrears audit: %s\n", err);
		return 1;
	}
	const uint8_t *response;
	size_t response_size;
	struct dispatch_outcome outcome;
	dispatch_frame(d, NULL, DISPATCH_ALL, frame, frame_size, &response, &response_size, &outcome);
	free(frame);
	char *text = NULL;
	bool is_error = false;
	json_t *page = NULL;
	if (response != NULL && proto_response_json(response, response_size, &text, &is_error) == PROTO_OK && !is_error) {
		page = json_loads(text, 0, NULL);
	}
	if (page == NULL) {
		fprintf(stderr, "arrears audit: %s\n", text != NULL ? text : "the audit log does not read");
		free(text);
		return 1;
	}
	free(text);
	size_t i;
	json_t *record;
	json_array_foreach(json_object_get(page, "records"), i, record)
	{
		char *line = json_dumps(record, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (line != NULL) {
			puts(line);
			free(line);
		}
		(*printed)++;
	}
	json_t *n = json_object_get(page, "next");
	*next = json_is_integer(n) ? (uint64_t)json_integer_value(n) : 0;
	json_decref(page);
	return 0;
}

static const char usage_audit[] =
	"usage: arrears audit --data DIR [--after SEQ] [--limit N]\n"
	"  the audit log's records after SEQ (default 0: all), one JSON object a line.\n";
static const char usage_backup[] =
	"usage: arrears backup --data DIR OUT\n"
	"  a consistent compacted copy of the store in DIR (live or not) into OUT/data.mdb; never overwrites.\n";
static const char usage_verify[] =
	"usage: arrears verify --data DIR\n"
	"  walks every record of the store in DIR; prints each problem (ids masked), exits 1 when there is one.\n";

/* --data DIR and at most `positional` arguments; --help. -1: go on; else the exit status. */
static int ops_args(const char *prog, const char *usage, int argc, char **argv, const char **data,
		    const char **positional_out, int positional)
{
	int positionals = 0;
	for (int i = 0; i < argc; i++) {
		if (flag_is_help(argv[i])) {
			fputs(usage, stdout);
			return 0;
		}
	}
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--data") == 0) {
			if (i + 1 >= argc) {
				return flag_missing_value(prog, argv[i]);
			}
			*data = argv[++i];
		} else if (strcmp(argv[i], "--after") == 0 || strcmp(argv[i], "--limit") == 0) {
			i++; /* audit's own, read by the caller */
			if (i >= argc) {
				return flag_missing_value(prog, argv[i - 1]);
			}
		} else if (argv[i][0] != '-' && positionals < positional) {
			positional_out[positionals++] = argv[i];
		} else {
			return flag_unknown(prog, argv[i]);
		}
	}
	if (*data == NULL) {
		return flag_required(prog, "--data DIR");
	}
	if (positionals < positional) {
		return flag_required(prog, "OUT");
	}
	return -1;
}

int ops_audit_command(int argc, char **argv)
{
	const char *data = NULL;
	uint64_t after = 0;
	uint64_t limit = UINT64_MAX;
	int status = ops_args("arrears audit", usage_audit, argc, argv, &data, NULL, 0);
	if (status >= 0) {
		return status;
	}
	for (int i = 0; i + 1 < argc; i++) {
		if (strcmp(argv[i], "--after") == 0 && !flag_u64("arrears audit", argv[i], argv[i + 1], 0, INT64_MAX, &after)) {
			return 2;
		}
		if (strcmp(argv[i], "--limit") == 0 && !flag_u64("arrears audit", argv[i], argv[i + 1], 1, INT64_MAX, &limit)) {
			return 2;
		}
	}
	struct store *store;
	if (open_store("arrears audit", data, &store) != 0) {
		return 1;
	}
	struct dispatch *d = dispatch_new(store, NULL);
	status = d == NULL;
	uint64_t printed = 0;
	while (status == 0 && printed < limit) {
		uint64_t want = limit - printed;
		uint64_t next = 0;
		status = audit_page(d, after, want < PROTO_AUDIT_LIMIT_MAX ? (uint32_t)want : PROTO_AUDIT_LIMIT_MAX, &next,
				    &printed);
		if (next == 0) {
			break;
		}
		after = next;
	}
	dispatch_free(d);
	store_close(store);
	return status;
}

int ops_backup_command(int argc, char **argv)
{
	const char *data = NULL;
	const char *out = NULL;
	int status = ops_args("arrears backup", usage_backup, argc, argv, &data, &out, 1);
	if (status >= 0) {
		return status;
	}
	struct store *store;
	if (open_store("arrears backup", data, &store) != 0) {
		return 1;
	}
	char err[512];
	int rc = store_backup(store, out, err, sizeof(err));
	store_close(store);
	if (rc != STORE_OK) {
		fprintf(stderr, "arrears backup: %s\n", err);
		return 1;
	}
	fprintf(stderr, "arrears backup: %s/data.mdb written (compacted, fsynced)\n", out);
	return 0;
}

/* ---- verify: every record of every table, each by its table's rule ---- */

struct verify {
	const char *table;
	uint64_t records;
	uint64_t problems;
	uint64_t audit_last; /* the last audit sequence seen, 0 before the first */
	uint64_t idem_legacy;
	uint32_t revision_city; /* the city and number of the last revision seen */
	uint32_t revision_last;
	struct store_txn *txn;
	struct summary_policies policies; /* the latest, to remake current summaries */
	struct summarizer summarizer;
};

static void problem(struct verify *v, const char *key, const char *what)
{
	v->problems++;
	if (v->problems <= VERIFY_REPORTS_MAX) {
		printf("%s: %s: %s\n", v->table, key, what);
	}
}

/* A summary reads, and one made under the latest policies is what they
 * make of the timeline now (a stale one is the summary walk's business). */
static void verify_summary(struct verify *v, const char *masked, const struct store_person *p)
{
	struct core_summary sum;
	struct core_policy_set set = { (const struct core_policy *const *)v->policies.items, v->policies.count };
	if (!core_summary_read(p->summary, p->summary_size, &sum)) {
		problem(v, masked, "the summary does not decode");
		return;
	}
	if (!summary_current(&sum, &set, v->policies.revisions)) {
		return;
	}
	size_t size;
	const uint8_t *again = summarizer_make(&v->summarizer, &set, v->policies.revisions, &p->timeline, &size);
	if (again == NULL || size != p->summary_size || memcmp(again, p->summary, size) != 0) {
		problem(v, masked, "the summary is not what its timeline and policies make");
	}
}

static int verify_person(void *ctx, const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size)
{
	struct verify *v = ctx;
	char masked[CORE_ID_SIZE + 1];
	log_mask_id((const char *)key, key_size, masked);
	v->records++;
	struct store_person p;
	if (key_size != CORE_ID_SIZE || !core_id_valid((const char *)key, key_size)) {
		problem(v, masked, "the key is not a valid resident id");
		return 0;
	}
	if (store_person_decode((const char *)key, key_size, value, value_size, &p) != STORE_OK) {
		problem(v, masked, "the record's header does not decode");
		return 0;
	}
	struct core_timeline_iter it;
	core_timeline_iter_init(&it, &p.timeline);
	uint32_t slots = 0;
	while (core_timeline_next(&it) != NULL) {
		slots++;
	}
	if (it.corrupt) {
		problem(v, masked, "the timeline does not decode");
	} else if (slots != p.timeline.slot_count) {
		problem(v, masked, "the timeline holds another number of slots than its header says");
	} else if (p.summary != NULL) {
		verify_summary(v, masked, &p);
	}
	return 0;
}

static int verify_policy(void *ctx, const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size)
{
	struct verify *v = ctx;
	char city[16];
	uint32_t code = 0;
	for (size_t i = 0; key_size == 4 && i < 4; i++) {
		code = code << 8 | key[i];
	}
	snprintf(city, sizeof(city), key_size == 4 ? "%06u" : "(bad key)", code);
	v->records++;
	struct proto_error err;
	struct core_policy *policy = key_size == 4 ? proto_policy_from_doc(value, value_size, &err) : NULL;
	if (policy == NULL) {
		problem(v, city, "the policy does not parse");
	} else if (policy->city != code) {
		problem(v, city, "the policy names another city than its key");
	}
	free(policy);
	struct store_revision latest;
	int rc = key_size == 4 ? store_revision_get(v->txn, code, 0, &latest) : STORE_NOT_FOUND;
	if (rc != STORE_OK) {
		problem(v, city, "the policy has no revision in policy_revisions");
	} else if (latest.doc_size != value_size || memcmp(latest.doc, value, value_size) != 0) {
		problem(v, city, "the policy differs from its latest revision");
	}
	return 0;
}

/* Every revision parses and names its city; a city's revisions run 1, 2, ... without a gap. */
static int verify_revision(void *ctx, const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size)
{
	struct verify *v = ctx;
	v->records++;
	if (key_size != 8 || value_size < 8) {
		problem(v, "(bad key)", "a revision's key is not city and number, or its value has no time");
		return 0;
	}
	uint32_t code = (uint32_t)key[0] << 24 | (uint32_t)key[1] << 16 | (uint32_t)key[2] << 8 | key[3];
	uint32_t revision = (uint32_t)key[4] << 24 | (uint32_t)key[5] << 16 | (uint32_t)key[6] << 8 | key[7];
	char at[32];
	snprintf(at, sizeof(at), "%06u revision %u", code, revision);
	uint32_t expected = code == v->revision_city ? v->revision_last + 1 : 1;
	if (revision != expected) {
		problem(v, at, "the revisions of the city have a gap");
	}
	v->revision_city = code;
	v->revision_last = revision;
	struct proto_error err;
	struct core_policy *policy = proto_policy_from_doc(value + 8, value_size - 8, &err);
	if (policy == NULL) {
		problem(v, at, "the revision does not parse");
	} else if (policy->city != code) {
		problem(v, at, "the revision names another city than its key");
	}
	free(policy);
	return 0;
}

static int verify_audit(void *ctx, const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size)
{
	struct verify *v = ctx;
	char at[48];
	v->records++;
	if (key_size != 8) {
		problem(v, "(bad key)", "the key is not an 8-byte sequence number");
		return 0;
	}
	uint64_t seq = 0;
	for (int i = 0; i < 8; i++) {
		seq = seq << 8 | key[i];
	}
	snprintf(at, sizeof(at), "seq %llu", (unsigned long long)seq);
	if (seq != v->audit_last + 1) {
		char what[96];
		snprintf(what, sizeof(what), "a gap in the sequence: the previous record is %llu",
			 (unsigned long long)v->audit_last);
		problem(v, at, what);
	}
	v->audit_last = seq;
	uint8_t b = value_size > 0 ? value[0] : 0;
	if (!((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf)) {
		problem(v, at, "the record is not a msgpack map");
	}
	return 0;
}

static int verify_idem(void *ctx, const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size)
{
	struct verify *v = ctx;
	(void)key;
	char at[48];
	snprintf(at, sizeof(at), "a key of %zu bytes", key_size); /* keys are the clients': not printed */
	v->records++;
	if (key_size == 0 || key_size > 255) {
		problem(v, at, "the key is not 1..255 bytes");
	}
	if (value_size < STORE_IDEM_DIGEST_BYTES) {
		v->idem_legacy++; /* before BLAKE2b: answers conflict, stamped by the purge */
	} else if (value[STORE_IDEM_DIGEST_BYTES] == 0xc1) {
		if (value_size < STORE_IDEM_DIGEST_BYTES + 9) {
			problem(v, at, "the record is too short for its time stamp");
		}
	} else {
		v->idem_legacy++;
	}
	return 0;
}

static int verify_count(void *ctx, const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size)
{
	(void)key;
	(void)key_size;
	(void)value;
	(void)value_size;
	((struct verify *)ctx)->records++;
	return 0;
}

/* Each table's rule; a table the store has and this list lacks is read and counted. */
static const struct {
	const char *table;
	int (*check)(void *ctx, const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size);
} verify_tables[] = {
	{ "persons", verify_person },
	{ "policies", verify_policy },
	{ "idem", verify_idem },
	{ "audit", verify_audit },
	{ "policy_revisions", verify_revision },
};

int ops_verify_command(int argc, char **argv)
{
	const char *data = NULL;
	int status = ops_args("arrears verify", usage_verify, argc, argv, &data, NULL, 0);
	if (status >= 0) {
		return status;
	}
	struct store *store;
	if (open_store("arrears verify", data, &store) != 0) {
		return 1;
	}
	struct store_txn *txn;
	struct verify v = { 0 };
	/* A policy that does not load is the policies table's problem: summaries are then only read. */
	if (summary_policies_load(store, &v.policies) != STORE_OK) {
		memset(&v.policies, 0, sizeof(v.policies));
	}
	int rc = store_read_begin(store, &txn);
	v.txn = rc == STORE_OK ? txn : NULL;
	for (uint32_t t = 0; rc == STORE_OK && store_table_name(t) != NULL; t++) {
		const char *name = store_table_name(t);
		size_t k = 0;
		while (k < sizeof(verify_tables) / sizeof(verify_tables[0]) && strcmp(verify_tables[k].table, name) != 0) {
			k++;
		}
		v.table = name;
		uint64_t before = v.records;
		/* A table added after verify learned its rules is still walked
		 * (every page read), and said to be unchecked. */
		bool ruled = k < sizeof(verify_tables) / sizeof(verify_tables[0]);
		rc = store_table_each(txn, name, ruled ? verify_tables[k].check : verify_count, &v);
		fprintf(stderr, "arrears verify: %s: %llu records%s\n", name, (unsigned long long)(v.records - before),
			ruled ? "" : " (read; verify has no rule for this table yet)");
	}
	store_txn_end(v.txn);
	summarizer_free(&v.summarizer);
	summary_policies_free(&v.policies);
	store_close(store);
	if (rc != STORE_OK) {
		printf("store: the walk failed: storage fault\n");
		return 1;
	}
	if (v.idem_legacy > 0) {
		fprintf(stderr, "arrears verify: idem: %llu records of the layout before time stamps (the purge stamps them)\n",
			(unsigned long long)v.idem_legacy);
	}
	if (v.problems > VERIFY_REPORTS_MAX) {
		printf("... %llu problems in all\n", (unsigned long long)v.problems);
	}
	fprintf(stderr, "arrears verify: %s\n", v.problems == 0 ? "ok" : "problems found");
	return v.problems == 0 ? 0 : 1;
}
