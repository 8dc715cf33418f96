/* arrears import: the CSV of SPEC §6.1 into the store, streaming.
 *
 * Rows of one person need not be adjacent and the file may be larger than
 * memory, so the import runs in two passes. Pass 1 parses rows into fixed
 * 64-byte records and spreads them over partitions by a hash of the id (one
 * partition in memory for a small file, temporary files beside the store for
 * a large one). Pass 2 loads one partition at a time, groups its records by
 * person, checks each person whole and writes persons in large
 * transactions. A bad row is reported with its line number and its person
 * is left out; every other person imports. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../rpc/dispatch.h"
#include "import.h"
#include "../rpc/log.h"

#define READ_BYTES (4u << 20)            /* one read of the CSV */
#define LINE_BYTES_MAX 4096u             /* a longer line is a bad row */
#define PARTITION_BYTES (512ull << 20)   /* records held in memory at once */
#define PARTITIONS_MAX 1024u
#define BATCH_SLOTS (2u << 20)           /* slots per write transaction */
#define BATCH_PERSONS 20000u
#define PROGRESS_NS (200 * 1000000ll)    /* terminal refresh */
#define PROGRESS_PLAIN_NS (5 * 1000000000ll)

static const char header[] = "id,month,city,type,category,base,paid,paid_date,deemed";

struct import_row {
	char id[CORE_ID_SIZE];
	uint8_t bad; /* the row did not parse: its person is left out */
	uint8_t pad[5];
	uint64_t line;
	struct core_slot slot;
};
_Static_assert(sizeof(struct import_row) == 64, "records are 64 bytes");

struct partition {
	FILE *file; /* NULL: the rows stay in memory */
	struct import_row *rows;
	size_t count;
	size_t capacity;
};

struct import {
	struct store *store;
	const char *data_dir;
	struct partition *parts;
	uint32_t part_count;
	bool tty;
	int64_t started_ns;
	int64_t shown_ns;
	uint64_t file_bytes;
	uint64_t bytes_read;
	uint64_t line; /* lines read, the header included */
	uint64_t rows;
	uint64_t bad_rows;
	uint64_t persons;
	uint64_t slots;
	uint64_t rejected_persons;
	struct core_slot *slots_buf;
	uint64_t *keys_buf;
	uint32_t slots_capacity;
	uint32_t keys_capacity;
};

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000ll + t.tv_nsec;
}

static void progress(struct import *im, const char *phase, uint64_t done, uint64_t total, bool last)
{
	int64_t now = now_ns();
	if (!last && now - im->shown_ns < (im->tty ? PROGRESS_NS : PROGRESS_PLAIN_NS)) {
		return;
	}
	im->shown_ns = now;
	double seconds = (double)(now - im->started_ns) / 1e9;
	double rate = seconds > 0 ? (double)im->rows / seconds : 0;
	unsigned pct = total > 0 ? (unsigned)(done * 100 / total) : 100;
	if (im->tty) {
		char bar[31];
		memset(bar, ' ', 30);
		memset(bar, '#', pct * 30 / 100);
		bar[30] = '\0';
		fprintf(stderr, "\r%-8s [%s] %3u%%  %llu rows  %.2fM rows/s%s", phase, bar, pct,
			(unsigned long long)im->rows, rate / 1e6, last ? "\n" : "");
	} else {
		fprintf(stderr, "import: %s %u%% rows=%llu rows_per_s=%.0f\n", phase, pct, (unsigned long long)im->rows,
			rate);
	}
}

/* ---- pass 1: rows into partitions ---- */

static bool parse_uint(const char *s, size_t n, uint64_t max, uint64_t *v)
{
	uint64_t x = 0;
	if (n == 0 || n > 19) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return false;
		}
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	*v = x;
	return x <= max;
}

/* Fills row from one line; returns NULL or the name of the first bad field. */
static const char *parse_row(const char *line, size_t size, struct import_row *row)
{
	const char *field[9];
	size_t len[9];
	uint32_t n = 0;
	const char *start = line;
	for (size_t i = 0; i <= size; i++) {
		if (i == size || line[i] == ',') {
			if (n == 9) {
				n++; /* too many; the id is still read below, to name the person left out */
				break;
			}
			field[n] = start;
			len[n++] = (size_t)(line + i - start);
			start = line + i + 1;
		}
	}
	memset(row->id, 0, sizeof(row->id));
	memcpy(row->id, field[0], len[0] < CORE_ID_SIZE ? len[0] : CORE_ID_SIZE);
	if (n != 9) {
		return "columns";
	}
	struct core_slot *s = &row->slot;
	uint64_t v;
	int name;
	memset(s, 0, sizeof(*s));
	if (!core_id_valid(field[0], len[0])) {
		return "id";
	}
	if (!parse_uint(field[1], len[1], 999999, &v) || !core_month_parse((int64_t)v, &s->month)) {
		return "month";
	}
	if (len[2] != 6 || !parse_uint(field[2], 6, 999999, &v)) {
		return "city";
	}
	s->city = (uint32_t)v;
	if ((name = core_name_index(core_type_names, CORE_TYPE_COUNT, field[3], len[3])) < 0) {
		return "type";
	}
	s->type = (uint8_t)name;
	if ((name = core_name_index(core_category_names, CORE_CATEGORY_COUNT, field[4], len[4])) < 0) {
		return "category";
	}
	s->category = (uint8_t)name;
	if (!parse_uint(field[5], len[5], CORE_MONEY_MAX, &v)) {
		return "base";
	}
	s->base_fen = (int64_t)v;
	if (!parse_uint(field[6], len[6], CORE_MONEY_MAX, &v)) {
		return "paid";
	}
	s->paid_fen = (int64_t)v;
	if (!parse_uint(field[7], len[7], 99999999, &v) || (v != 0 && !core_date_valid((int64_t)v))) {
		return "paid_date";
	}
	s->paid_date = (int32_t)v;
	static const char *const bools[] = { "0", "1", "false", "true" };
	if ((name = core_name_index(bools, 4, field[8], len[8])) < 0) {
		return "deemed";
	}
	s->deemed = name % 2 == 1;
	switch (core_slot_rules(s)) {
	case CORE_RULE_PAID_DATE:
		return "paid_date";
	case CORE_RULE_DEEMED:
		return "deemed";
	default:
		return NULL;
	}
}

const char *import_parse_row(const char *line, size_t size, char id[CORE_ID_SIZE], struct core_slot *slot)
{
	struct import_row row;
	memset(&row, 0xa5, sizeof(row)); /* what parse_row leaves unset shows */
	const char *bad = parse_row(line, size, &row);
	memcpy(id, row.id, CORE_ID_SIZE);
	if (bad == NULL) {
		*slot = row.slot;
	}
	return bad;
}

static uint32_t partition_of(const struct import *im, const char *id)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (uint32_t i = 0; i < CORE_ID_SIZE; i++) {
		h = (h ^ (uint8_t)id[i]) * 0x100000001b3ull;
	}
	return (uint32_t)(h % im->part_count);
}

static bool partition_add(struct partition *p, const struct import_row *row)
{
	if (p->file != NULL) {
		return fwrite(row, sizeof(*row), 1, p->file) == 1;
	}
	if (p->count == p->capacity) {
		size_t capacity = p->capacity == 0 ? 1u << 16 : p->capacity * 2;
		struct import_row *rows = realloc(p->rows, capacity * sizeof(*rows));
		if (rows == NULL) {
			return false;
		}
		p->rows = rows;
		p->capacity = capacity;
	}
	p->rows[p->count++] = *row;
	return true;
}

static bool take_line(struct import *im, const char *line, size_t size)
{
	struct import_row row;
	im->rows++;
	row.line = im->line;
	memset(row.pad, 0, sizeof(row.pad));
	const char *bad = size > LINE_BYTES_MAX ? "length" : parse_row(line, size, &row);
	row.bad = bad != NULL;
	if (bad != NULL) {
		char masked[CORE_ID_SIZE + 1];
		log_mask_id(row.id, strnlen(row.id, CORE_ID_SIZE), masked);
		im->bad_rows++;
		if (im->tty) {
			fprintf(stderr, "\r\033[K");
		}
		fprintf(stderr, "import: line %llu: bad %s; person %s left out\n", (unsigned long long)row.line, bad,
			masked);
	}
	return partition_add(&im->parts[partition_of(im, row.id)], &row);
}

static int read_rows(struct import *im, FILE *csv)
{
	char *buf = malloc(READ_BYTES + 1);
	size_t held = 0;
	bool first = true;
	int rc = 0;
	while (buf != NULL && rc == 0) {
		size_t n = fread(buf + held, 1, READ_BYTES - held, csv);
		im->bytes_read += n;
		held += n;
		bool eof = n == 0;
		if (eof && held > 0 && buf[held - 1] != '\n') {
			buf[held++] = '\n'; /* a last line without its newline */
		}
		size_t start = 0;
		for (char *nl; rc == 0 && (nl = memchr(buf + start, '\n', held - start)) != NULL;) {
			size_t end = (size_t)(nl - buf);
			size_t len = end - start - (end > start && buf[end - 1] == '\r');
			im->line++;
			if (first) {
				first = false;
				if (len != sizeof(header) - 1 || memcmp(buf + start, header, len) != 0) {
					fprintf(stderr, "import: line 1 must be the header: %s\n", header);
					rc = 1;
				}
			} else if (len > 0 && !take_line(im, buf + start, len)) {
				fprintf(stderr, "import: cannot hold or spill rows: %s\n", strerror(errno));
				rc = 1;
			}
			start = end + 1;
		}
		memmove(buf, buf + start, held - start);
		held -= start;
		if (held == READ_BYTES) { /* a line longer than the buffer */
			im->line++;
			take_line(im, buf, LINE_BYTES_MAX + 1);
			held = 0;
		}
		progress(im, "reading", im->bytes_read, im->file_bytes, false);
		if (eof) {
			break;
		}
	}
	if (ferror(csv)) {
		fprintf(stderr, "import: read error: %s\n", strerror(errno));
		rc = 1;
	}
	free(buf);
	return buf == NULL ? 1 : rc;
}

/* ---- pass 2: persons into the store ---- */

static int row_order(const void *a, const void *b)
{
	const struct import_row *x = a;
	const struct import_row *y = b;
	int c = memcmp(x->id, y->id, CORE_ID_SIZE);
	if (c != 0) {
		return c;
	}
	return x->line < y->line ? -1 : x->line > y->line;
}

static bool reserve(struct import *im, size_t slot_count)
{
	if (slot_count > UINT32_MAX / 4) {
		return false;
	}
	if (slot_count > im->slots_capacity) {
		struct core_slot *s = realloc(im->slots_buf, slot_count * sizeof(*s));
		if (s == NULL) {
			return false;
		}
		im->slots_buf = s;
		im->slots_capacity = (uint32_t)slot_count;
	}
	uint32_t keys = 16;
	while (keys < 2 * slot_count) {
		keys *= 2;
	}
	if (keys > im->keys_capacity) {
		uint64_t *k = realloc(im->keys_buf, keys * sizeof(*k));
		if (k == NULL) {
			return false;
		}
		im->keys_buf = k;
		im->keys_capacity = keys;
	}
	return true;
}

/* One person's rows (sorted by line): checked whole, then put. Returns a
 * store_rc; rejected persons return STORE_OK having written nothing. */
static int person_put(struct import *im, struct store_txn *txn, const struct import_row *rows, size_t count)
{
	char masked[CORE_ID_SIZE + 1];
	log_mask_id(rows[0].id, CORE_ID_SIZE, masked);
	for (size_t i = 0; i < count; i++) {
		if (rows[i].bad) {
			im->rejected_persons++;
			return STORE_OK;
		}
	}
	if (!reserve(im, count)) {
		return STORE_IO;
	}
	struct core_slot_keys keys;
	core_slot_keys_init(&keys, im->keys_buf, im->keys_capacity);
	for (size_t i = 0; i < count; i++) {
		im->slots_buf[i] = rows[i].slot;
		if (!core_slot_keys_insert(&keys, &rows[i].slot)) {
			im->bad_rows++;
			im->rejected_persons++;
			fprintf(stderr, "%simport: line %llu: duplicate (month, city, type); person %s left out\n",
				im->tty ? "\r\033[K" : "", (unsigned long long)rows[i].line, masked);
			return STORE_OK;
		}
	}
	core_slots_sort(im->slots_buf, (uint32_t)count);
	char id[CORE_ID_SIZE + 1];
	memcpy(id, rows[0].id, CORE_ID_SIZE);
	id[CORE_ID_SIZE] = '\0';
	int rc = store_person_put(txn, id, -1, im->slots_buf, (uint32_t)count);
	if (rc == STORE_OK) {
		im->persons++;
		im->slots += count;
	}
	return rc;
}

/* Writes persons from rows[0..count) (sorted) in batched transactions. */
static int write_persons(struct import *im, const struct import_row *rows, size_t count)
{
	size_t batch_start = 0;
	while (batch_start < count) {
		struct store_txn *txn;
		if (store_write_begin(im->store, &txn) != STORE_OK) {
			return STORE_IO;
		}
		size_t i = batch_start;
		size_t batch_slots = 0;
		uint32_t batch_persons = 0;
		uint64_t written_before = im->persons; /* rejected persons are not written */
		int rc = STORE_OK;
		while (rc == STORE_OK && i < count && batch_slots < BATCH_SLOTS && batch_persons < BATCH_PERSONS) {
			size_t end = i + 1;
			while (end < count && memcmp(rows[end].id, rows[i].id, CORE_ID_SIZE) == 0) {
				end++;
			}
			rc = person_put(im, txn, rows + i, end - i);
			batch_slots += end - i;
			batch_persons++;
			i = end;
		}
		if (rc == STORE_OK) {
			rc = im->persons == written_before ? STORE_OK
							     : dispatch_audit_batch(txn, "import", im->persons - written_before);
		}
		/* Commit only whole batches: any failure abandons the batch. */
		if (rc == STORE_OK) {
			rc = store_write_commit(txn);
		} else {
			store_txn_end(txn);
		}
		if (rc != STORE_OK) {
			return rc;
		}
		batch_start = i;
		progress(im, "writing", im->persons + im->rejected_persons, 0, false);
	}
	return STORE_OK;
}

static int load_partition(struct partition *p)
{
	if (p->file == NULL) {
		return 0;
	}
	long size = ftell(p->file);
	if (size < 0 || fflush(p->file) != 0 || fseek(p->file, 0, SEEK_SET) != 0) {
		return -1;
	}
	p->count = (size_t)size / sizeof(struct import_row);
	p->rows = malloc(p->count * sizeof(struct import_row) + 1);
	if (p->rows == NULL || fread(p->rows, sizeof(struct import_row), p->count, p->file) != p->count) {
		return -1;
	}
	fclose(p->file);
	p->file = NULL;
	return 0;
}

static int write_all(struct import *im)
{
	for (uint32_t k = 0; k < im->part_count; k++) {
		struct partition *p = &im->parts[k];
		if (load_partition(p) != 0) {
			fprintf(stderr, "import: cannot read back a partition: %s\n", strerror(errno));
			return 1;
		}
		qsort(p->rows, p->count, sizeof(*p->rows), row_order);
		int rc = write_persons(im, p->rows, p->count);
		free(p->rows);
		p->rows = NULL;
		if (rc != STORE_OK) {
			fprintf(stderr, "\nimport: %s: the last batch was not written\n",
				rc == STORE_FULL ? "storage full" : "storage fault");
			return 1;
		}
	}
	return 0;
}

/* ---- policies and the command ---- */

static int import_policy(struct dispatch *d, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "import: %s: %s\n", path, strerror(errno));
		return 1;
	}
	char *text = NULL;
	size_t size = 0;
	FILE *mem = open_memstream(&text, &size);
	char chunk[65536];
	size_t n;
	while (mem != NULL && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		fwrite(chunk, 1, n, mem);
	}
	fclose(f);
	if (mem == NULL || fclose(mem) != 0) {
		free(text);
		return 1;
	}
	uint8_t *frame;
	size_t frame_size;
	char err[256];
	int rc = proto_json_frame("policy.put", 1, "policy", text, &frame, &frame_size, err, sizeof(err));
	free(text);
	if (rc != PROTO_OK) {
		fprintf(stderr, "import: %s: %s\n", path, err);
		return 1;
	}
	const uint8_t *response;
	size_t response_size;
	struct proto_error perr;
	struct dispatch_outcome outcome;
	dispatch_frame(d, NULL, DISPATCH_ALL, frame, frame_size, &response, &response_size, &outcome);
	free(frame);
	if (proto_response_error(response, response_size, &perr)) {
		fprintf(stderr, "import: %s: %s at %s: %s\n", path, proto_error_name(perr.code), perr.at, perr.message);
		return 1;
	}
	fprintf(stderr, "import: policy %s stored\n", path);
	return 0;
}

static int open_partitions(struct import *im)
{
	uint64_t parts = im->file_bytes / PARTITION_BYTES + 1;
	im->part_count = (uint32_t)(parts < PARTITIONS_MAX ? parts : PARTITIONS_MAX);
	im->parts = calloc(im->part_count, sizeof(*im->parts));
	if (im->parts == NULL) {
		return 1;
	}
	for (uint32_t k = 0; im->part_count > 1 && k < im->part_count; k++) {
		/* Beside the store: the disk that must hold the result holds the spill too. */
		char path[4096];
		snprintf(path, sizeof(path), "%s/import-%u.tmp", im->data_dir, k);
		im->parts[k].file = fopen(path, "w+b");
		if (im->parts[k].file == NULL) {
			fprintf(stderr, "import: %s: %s\n", path, strerror(errno));
			return 1;
		}
		unlink(path); /* gone with the process, whatever happens */
	}
	return 0;
}

int import_run(struct store *store, const char *data_dir, const char *csv_path, const char *const *policies,
	       int policy_count)
{
	struct import im = { .store = store, .data_dir = data_dir, .tty = isatty(STDERR_FILENO) };
	im.started_ns = now_ns();
	struct dispatch *d = dispatch_new(store, NULL);
	int rc = d == NULL;
	for (int i = 0; rc == 0 && i < policy_count; i++) {
		rc = import_policy(d, policies[i]);
	}
	dispatch_free(d);
	FILE *csv = rc != 0 ? NULL : strcmp(csv_path, "-") == 0 ? stdin : fopen(csv_path, "rb");
	if (rc == 0 && csv == NULL) {
		fprintf(stderr, "import: %s: %s\n", csv_path, strerror(errno));
		rc = 1;
	}
	struct stat st;
	if (rc == 0 && fstat(fileno(csv), &st) == 0 && S_ISREG(st.st_mode)) {
		im.file_bytes = (uint64_t)st.st_size;
	} else if (rc == 0) {
		im.file_bytes = 64 * PARTITION_BYTES; /* unknown size: spill */
	}
	rc = rc != 0 ? rc : open_partitions(&im);
	rc = rc != 0 ? rc : read_rows(&im, csv);
	if (csv != NULL && csv != stdin) {
		fclose(csv);
	}
	if (rc == 0) {
		progress(&im, "reading", 1, 1, true);
		rc = write_all(&im);
		progress(&im, "writing", 1, 1, true);
	}
	for (uint32_t k = 0; im.parts != NULL && k < im.part_count; k++) {
		if (im.parts[k].file != NULL) {
			fclose(im.parts[k].file);
		}
		free(im.parts[k].rows);
	}
	free(im.parts);
	free(im.slots_buf);
	free(im.keys_buf);
	struct store_stats stats;
	store_stats(store, &stats);
	double seconds = (double)(now_ns() - im.started_ns) / 1e9;
	fprintf(stderr,
		"import: %s: %llu persons, %llu slots imported; %llu bad rows, %llu persons left out; "
		"store %llu bytes (%.2f bytes/slot); %.1f s, %.0f slots/s\n",
		rc == 0 ? "done" : "stopped", (unsigned long long)im.persons, (unsigned long long)im.slots,
		(unsigned long long)im.bad_rows, (unsigned long long)im.rejected_persons,
		(unsigned long long)stats.bytes_used, im.slots > 0 ? (double)stats.bytes_used / (double)im.slots : 0.0,
		seconds, seconds > 0 ? (double)im.slots / seconds : 0.0);
	if (rc != 0) {
		return 1;
	}
	return im.bad_rows > 0 ? 3 : 0;
}
