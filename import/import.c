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
#include <csv.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../rpc/dispatch.h"
#include "../rpc/summary.h"
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

#define COLUMNS_MAX 64u                 /* header columns; a wider header is refused */
#define CITY_CODES 1000000u             /* 6-digit city codes: a count for each */
#define CITIES_WARNED_MAX 20u            /* cities without a policy named one by one */

/* The columns of SPEC §6.1, in its order. */
enum { F_ID, F_MONTH, F_CITY, F_TYPE, F_CATEGORY, F_BASE, F_PAID, F_PAID_DATE, F_DEEMED, FIELD_COUNT };
static const char *const field_names[FIELD_COUNT] = { "id",	  "month", "city",	"type",	  "category",
						      "base", "paid",  "paid_date", "deemed" };
static const char header_expected[] = "id,month,city,type,category,base,paid,paid_date,deemed";
#define COLUMN_ABSENT UINT8_MAX
_Static_assert(COLUMNS_MAX < COLUMN_ABSENT, "a column index fits a byte");

/* Where each field is in a row, as the header said. */
struct import_columns {
	uint8_t col_of[FIELD_COUNT]; /* COLUMN_ABSENT: not in the file (deemed only) */
	uint32_t count;              /* columns a row must have */
};

/* A record libcsv is assembling, field by field. */
struct csv_record {
	char buf[LINE_BYTES_MAX];
	size_t used;
	uint32_t col_count; /* at most COLUMNS_MAX + 1: the rest is not kept */
	bool too_long;
	const char *col[COLUMNS_MAX + 1];
	size_t len[COLUMNS_MAX + 1];
	void (*on_record)(struct csv_record *r, void *arg);
	void *arg;
};

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
	struct summary_bulk summaries; /* under the policies stored before the import */
	struct core_slot *slots_buf;
	uint64_t *keys_buf;
	uint32_t slots_capacity;
	uint32_t keys_capacity;
	/* the header and the CSV reader */
	struct import_columns header;
	bool header_seen;
	bool header_ok;
	bool csv_open;      /* libcsv holds a record begun on an earlier line */
	bool record_ok;
	uint64_t record_line; /* where the record libcsv assembles began */
	uint64_t record_bytes;
	struct csv_parser csv;
	struct csv_record record;
	/* persons imported with slots in each city, for the policy check */
	uint32_t *city_persons;
	uint32_t *city_stamp;
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

/* Fills row->slot from the fields in the order of field_names (deemed NULL:
 * absent); returns NULL or the name of the first bad field. */
static const char *parse_fields(const char *const field[FIELD_COUNT], const size_t len[FIELD_COUNT],
				struct import_row *row)
{
	struct core_slot *s = &row->slot;
	uint64_t v;
	int name;
	memset(s, 0, sizeof(*s));
	if (!core_id_valid(field[F_ID], len[F_ID])) {
		return "id";
	}
	if (!parse_uint(field[F_MONTH], len[F_MONTH], 999999, &v) || !core_month_parse((int64_t)v, &s->month)) {
		return "month";
	}
	if (len[F_CITY] != 6 || !parse_uint(field[F_CITY], 6, 999999, &v)) {
		return "city";
	}
	s->city = (uint32_t)v;
	if ((name = core_name_index(core_type_names, CORE_TYPE_COUNT, field[F_TYPE], len[F_TYPE])) < 0) {
		return "type";
	}
	s->type = (uint8_t)name;
	if ((name = core_name_index(core_category_names, CORE_CATEGORY_COUNT, field[F_CATEGORY], len[F_CATEGORY])) <
	    0) {
		return "category";
	}
	s->category = (uint8_t)name;
	if (!parse_uint(field[F_BASE], len[F_BASE], CORE_MONEY_MAX, &v)) {
		return "base";
	}
	s->base_fen = (int64_t)v;
	if (!parse_uint(field[F_PAID], len[F_PAID], CORE_MONEY_MAX, &v)) {
		return "paid";
	}
	s->paid_fen = (int64_t)v;
	if (!parse_uint(field[F_PAID_DATE], len[F_PAID_DATE], 99999999, &v) ||
	    (v != 0 && !core_date_valid((int64_t)v))) {
		return "paid_date";
	}
	s->paid_date = (int32_t)v;
	static const char *const bools[] = { "0", "1", "false", "true" };
	if (field[F_DEEMED] != NULL && (name = core_name_index(bools, 4, field[F_DEEMED], len[F_DEEMED])) < 0) {
		return "deemed";
	}
	s->deemed = field[F_DEEMED] != NULL && name % 2 == 1;
	switch (core_slot_rules(s)) {
	case CORE_RULE_PAID_DATE:
		return "paid_date";
	case CORE_RULE_DEEMED:
		return "deemed";
	default:
		return NULL;
	}
}

/* One record's columns (col_count of them, at most COLUMNS_MAX + 1: more
 * were cut) into row, by the header's order. The id is copied first
 * whatever else is wrong: a bad row names the person it leaves out. */
static const char *parse_columns(const struct import_columns *h, const char *const *col, const size_t *len,
				 uint32_t col_count, struct import_row *row)
{
	memset(row->id, 0, sizeof(row->id));
	uint32_t id_col = h->col_of[F_ID];
	if (id_col < col_count) {
		memcpy(row->id, col[id_col], len[id_col] < CORE_ID_SIZE ? len[id_col] : CORE_ID_SIZE);
	}
	if (col_count != h->count) {
		return "columns";
	}
	const char *field[FIELD_COUNT];
	size_t size[FIELD_COUNT];
	for (uint32_t k = 0; k < FIELD_COUNT; k++) {
		uint32_t c = h->col_of[k];
		field[k] = c == COLUMN_ABSENT ? NULL : col[c];
		size[k] = c == COLUMN_ABSENT ? 0 : len[c];
	}
	return parse_fields(field, size, row);
}

/* The fast path: a line without quotes or carriage returns is split at its
 * commas (the fuzz target checks that libcsv reads such a line the same).
 * Returns the column count, at most COLUMNS_MAX + 1 (more are not split). */
static uint32_t split_plain(const char *line, size_t size, const char **col, size_t *len)
{
	uint32_t n = 0;
	const char *start = line;
	for (size_t i = 0; i <= size && n <= COLUMNS_MAX; i++) {
		if (i == size || line[i] == ',') {
			col[n] = start;
			len[n++] = (size_t)(line + i - start);
			start = line + i + 1;
		}
	}
	return n;
}

static bool line_plain(const char *line, size_t size)
{
	return memchr(line, '"', size) == NULL && memchr(line, '\r', size) == NULL && memchr(line, '\n', size) == NULL;
}

/* ---- libcsv: quoted fields (RFC 4180, strict), records over several lines ---- */

static int csv_space_none(unsigned char c)
{
	(void)c;
	return 0; /* "650000 " is a bad base, not 650000: as the fast path reads it */
}

static void record_reset(struct csv_record *r)
{
	r->used = 0;
	r->col_count = 0;
	r->too_long = false;
}

/* libcsv's field callback: the field joins the record being assembled. */
static void record_field(void *field, size_t size, void *ctx)
{
	struct csv_record *r = ctx;
	if (r->col_count > COLUMNS_MAX) {
		return;
	}
	if (size > sizeof(r->buf) - r->used) {
		r->too_long = true;
		size = 0;
	}
	if (size > 0) {
		memcpy(r->buf + r->used, field, size);
	}
	r->col[r->col_count] = r->buf + r->used;
	r->len[r->col_count++] = size;
	r->used += size;
}

/* libcsv's record callback. */
static void record_end(int c, void *ctx)
{
	(void)c;
	struct csv_record *r = ctx;
	r->on_record(r, r->arg);
	record_reset(r);
}

static bool csv_start(struct csv_parser *p)
{
	if (csv_init(p, CSV_STRICT | CSV_STRICT_FINI) != 0) {
		return false;
	}
	csv_set_space_func(p, csv_space_none);
	return true;
}

struct one_row {
	const struct import_columns *header;
	struct import_row *row;
	const char *bad;
	uint32_t records;
};

static void one_row_take(struct csv_record *r, void *arg)
{
	struct one_row *o = arg;
	if (o->records++ == 0) {
		o->bad = r->too_long ? "length" : parse_columns(o->header, r->col, r->len, r->col_count, o->row);
	}
}

static const struct import_columns canonical = { .col_of = { 0, 1, 2, 3, 4, 5, 6, 7, 8 }, .count = 9 };

/* line through libcsv as one record: more than one is a bad "columns". */
static const char *parse_row_csv(const char *line, size_t size, struct import_row *row)
{
	static _Thread_local struct csv_record r;
	struct one_row o = { .header = &canonical, .row = row };
	struct csv_parser p;
	memset(row->id, 0, sizeof(row->id));
	if (!csv_start(&p)) {
		return "memory";
	}
	record_reset(&r);
	r.on_record = one_row_take;
	r.arg = &o;
	bool ok = csv_parse(&p, line, size, record_field, record_end, &r) == size &&
		  csv_fini(&p, record_field, record_end, &r) == 0;
	csv_free(&p);
	if (o.records == 0) {
		o.bad = parse_columns(&canonical, r.col, r.len, r.col_count, row);
	}
	return !ok ? "quoting" : o.records > 1 && o.bad == NULL ? "columns" : o.bad;
}

static const char *parse_row(const char *line, size_t size, struct import_row *row)
{
	if (!line_plain(line, size)) {
		return parse_row_csv(line, size, row);
	}
	const char *col[COLUMNS_MAX + 1];
	size_t len[COLUMNS_MAX + 1];
	uint32_t n = split_plain(line, size, col, len);
	return parse_columns(&canonical, col, len, n, row);
}

static const char *row_out(const char *bad, const struct import_row *row, char id[CORE_ID_SIZE],
			   struct core_slot *slot)
{
	memcpy(id, row->id, CORE_ID_SIZE);
	if (bad == NULL) {
		*slot = row->slot;
	}
	return bad;
}

const char *import_parse_row(const char *line, size_t size, char id[CORE_ID_SIZE], struct core_slot *slot)
{
	struct import_row row;
	memset(&row, 0xa5, sizeof(row)); /* what parse_row leaves unset shows */
	return row_out(parse_row(line, size, &row), &row, id, slot);
}

const char *import_parse_row_csv(const char *line, size_t size, char id[CORE_ID_SIZE], struct core_slot *slot)
{
	struct import_row row;
	memset(&row, 0xa5, sizeof(row));
	return row_out(parse_row_csv(line, size, &row), &row, id, slot);
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

/* A data row (bad != NULL: already known bad, e.g. "length"), reported when
 * bad and kept either way: a bad row leaves its person out in pass 2. */
static bool take_row(struct import *im, uint64_t line, const char *const *col, const size_t *len, uint32_t col_count,
		     const char *bad)
{
	struct import_row row;
	im->rows++;
	row.line = line;
	memset(row.pad, 0, sizeof(row.pad));
	const char *why = parse_columns(&im->header, col, len, col_count, &row);
	bad = bad != NULL ? bad : why;
	row.bad = bad != NULL;
	if (bad != NULL) {
		char masked[CORE_ID_SIZE + 1];
		log_mask_id(row.id, strnlen(row.id, CORE_ID_SIZE), masked);
		im->bad_rows++;
		if (im->tty) {
			fprintf(stderr, "\r\033[K");
		}
		if (row.id[0] == '\0') { /* no id read: there is no person to leave out */
			fprintf(stderr, "import: line %llu: bad %s; no id read\n", (unsigned long long)row.line, bad);
			return true;
		}
		fprintf(stderr, "import: line %llu: bad %s; person %s left out\n", (unsigned long long)row.line, bad,
			masked);
	}
	return partition_add(&im->parts[partition_of(im, row.id)], &row);
}

static bool column_is(const char *col, size_t len, const char *name)
{
	return len == strlen(name) && strncasecmp(col, name, len) == 0;
}

/* The header line: columns in any order, names in any case; deemed may be
 * absent (every slot not deemed, as in person.put), other columns are
 * ignored. Says what it found; false when a column is missing or twice. */
static bool take_header(struct import *im, const char *const *col, const size_t *len, uint32_t col_count)
{
	struct import_columns *h = &im->header;
	char found[512] = "", ignored[512] = "", missing[256] = "";
	bool ok = col_count <= COLUMNS_MAX;
	memset(h->col_of, COLUMN_ABSENT, sizeof(h->col_of));
	h->count = col_count;
	for (uint32_t c = 0; ok && c < col_count; c++) {
		int k = FIELD_COUNT;
		while (--k >= 0 && !column_is(col[c], len[c], field_names[k])) {
		}
		if (k >= 0 && h->col_of[k] != COLUMN_ABSENT) {
			fprintf(stderr, "import: line 1: the header has %s twice\n", field_names[k]);
			return false;
		}
		if (k >= 0) {
			h->col_of[k] = (uint8_t)c;
		}
		char *list = k >= 0 ? found : ignored;
		snprintf(list + strlen(list), 512 - strlen(list), "%s%.*s", list[0] ? ", " : "",
			 (int)(len[c] < 64 ? len[c] : 64), col[c]);
	}
	for (uint32_t k = 0; k < FIELD_COUNT; k++) {
		if (h->col_of[k] == COLUMN_ABSENT) {
			snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), "%s%s",
				 missing[0] ? ", " : "", field_names[k]);
			ok = ok && k == F_DEEMED;
		}
	}
	fprintf(stderr, "import: header: found %s%s%s%s%s%s\n", found[0] ? found : "no expected column",
		ignored[0] ? "; ignored " : "", ignored, missing[0] ? "; missing " : "", missing,
		ok && missing[0] ? " (every slot not deemed)" : "");
	if (!ok) {
		fprintf(stderr, "import: line 1: the header must name the columns %s (deemed optional), in any order%s\n",
			header_expected, col_count > COLUMNS_MAX ? "; it has too many columns" : "");
	}
	return ok;
}

/* A whole record, from either path. */
static bool take_record(struct import *im, uint64_t line, const char *const *col, const size_t *len,
			uint32_t col_count, const char *bad)
{
	if (im->header_seen) {
		return take_row(im, line, col, len, col_count, bad);
	}
	im->header_seen = true;
	im->header_ok = bad == NULL && take_header(im, col, len, col_count);
	if (bad != NULL) {
		fprintf(stderr, "import: line 1: the header is unreadable (bad %s)\n", bad);
	}
	return true;
}

static void record_take(struct csv_record *r, void *arg)
{
	struct import *im = arg;
	im->record_ok = take_record(im, im->record_line, r->col, r->len, r->col_count, r->too_long ? "length" : NULL);
}

/* A record libcsv could not finish (bad quoting, or longer than a line may
 * be): reported with the columns it had, then the parser starts afresh. */
static bool csv_abandon(struct import *im, const char *bad)
{
	struct csv_record *r = &im->record;
	bool ok = take_record(im, im->record_line, r->col, r->len, r->col_count, bad);
	csv_free(&im->csv);
	record_reset(r);
	im->csv_open = false;
	return csv_start(&im->csv) && ok;
}

/* One physical line: raw holds raw_size bytes with the newline, the line
 * without "\r\n" is size bytes. Plain lines between records take the fast
 * path; anything else goes through libcsv, which may hold a record open
 * over several lines (a quoted newline). Returns false on a failure that
 * stops the import. */
static bool take_line(struct import *im, const char *raw, size_t size, size_t raw_size)
{
	if (!im->csv_open) {
		if (size == 0) {
			return true; /* a blank line between records */
		}
		if (size > LINE_BYTES_MAX) {
			const char *col[COLUMNS_MAX + 1];
			size_t len[COLUMNS_MAX + 1];
			uint32_t n = split_plain(raw, LINE_BYTES_MAX, col, len);
			return take_record(im, im->line, col, len, n, "length");
		}
		if (line_plain(raw, size)) {
			const char *col[COLUMNS_MAX + 1];
			size_t len[COLUMNS_MAX + 1];
			uint32_t n = split_plain(raw, size, col, len);
			return take_record(im, im->line, col, len, n, NULL);
		}
		im->csv_open = true;
		im->record_line = im->line;
		im->record_bytes = 0;
	}
	im->record_bytes += raw_size;
	if (im->record_bytes > LINE_BYTES_MAX + 2) {
		return csv_abandon(im, "length");
	}
	im->record_ok = true;
	size_t parsed = csv_parse(&im->csv, raw, raw_size, record_field, record_end, &im->record);
	if (parsed != raw_size) {
		return csv_abandon(im, "quoting") && im->record_ok;
	}
	/* Between records once libcsv is (its state ROW_NOT_BEGUN is 0). */
	im->csv_open = im->csv.pstate != 0;
	return im->record_ok;
}

static int read_rows(struct import *im, FILE *csv)
{
	char *buf = malloc(READ_BYTES + 1);
	size_t held = 0;
	int rc = 0;
	im->record.on_record = record_take;
	im->record.arg = im;
	if (!csv_start(&im->csv)) {
		free(buf);
		return 1;
	}
	while (buf != NULL && rc == 0) {
		size_t n = fread(buf + held, 1, READ_BYTES - held, csv);
		im->bytes_read += n;
		held += n;
		bool eof = n == 0;
		if (eof && held > 0 && buf[held - 1] != '\n') {
			buf[held++] = '\n'; /* a last line without its newline */
		}
		size_t start = 0;
		if (im->line == 0 && held >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
			start = 3; /* a UTF-8 byte-order mark, as spreadsheets write */
		}
		for (char *nl; rc == 0 && (nl = memchr(buf + start, '\n', held - start)) != NULL;) {
			size_t end = (size_t)(nl - buf);
			size_t len = end - start - (end > start && buf[end - 1] == '\r');
			im->line++;
			if (!take_line(im, buf + start, len, end + 1 - start)) {
				fprintf(stderr, "import: cannot hold or spill rows: %s\n", strerror(errno));
				rc = 1;
			} else if (im->header_seen && !im->header_ok) {
				rc = 1;
			}
			start = end + 1;
		}
		memmove(buf, buf + start, held - start);
		held -= start;
		if (held == READ_BYTES) { /* a line longer than the buffer */
			im->line++;
			take_line(im, buf, LINE_BYTES_MAX + 1, LINE_BYTES_MAX + 1);
			held = 0;
		}
		progress(im, "reading", im->bytes_read, im->file_bytes, false);
		if (eof) {
			break;
		}
	}
	if (rc == 0 && im->csv_open) { /* the file ended inside a quoted field */
		rc = csv_abandon(im, "quoting") ? 0 : 1;
	}
	csv_free(&im->csv);
	if (rc == 0 && !im->header_seen) {
		fprintf(stderr, "import: the file is empty: line 1 must be the header %s\n", header_expected);
		rc = 1;
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

/* Counts an imported person once in each city of its slots. */
static void city_count(struct import *im, const struct core_slot *slots, size_t count)
{
	if (im->city_persons == NULL) {
		return; /* no room for the counts: the policy check is skipped */
	}
	uint32_t stamp = (uint32_t)im->persons; /* this person's number, from 1 */
	for (size_t i = 0; i < count; i++) {
		uint32_t city = slots[i].city;
		ASSERT(city < CITY_CODES);
		if (im->city_stamp[city] != stamp) {
			im->city_stamp[city] = stamp;
			im->city_persons[city]++;
		}
	}
}

/* Warns of every city the import gave slots in that has no policy in the
 * store: compute answers not_found for those persons until one is stored. */
static void cities_check(struct import *im)
{
	struct store_txn *txn;
	if (im->city_persons == NULL || store_read_begin(im->store, &txn) != STORE_OK) {
		return;
	}
	uint32_t warned = 0;
	uint64_t persons_more = 0;
	for (uint32_t city = 0; city < CITY_CODES; city++) {
		uint64_t policies;
		bool exists = true;
		if (im->city_persons[city] == 0 || store_policy_count(txn, city, &policies, &exists) != STORE_OK ||
		    exists) {
			continue;
		}
		if (warned++ < CITIES_WARNED_MAX) {
			fprintf(stderr,
				"import: warning: city %06u has no policy in the store: %u persons imported with slots "
				"there (compute answers not_found for them until one is stored)\n",
				city, im->city_persons[city]);
		} else {
			persons_more += im->city_persons[city];
		}
	}
	if (warned > CITIES_WARNED_MAX) {
		fprintf(stderr, "import: warning: %u more cities have no policy in the store (%llu persons)\n",
			warned - CITIES_WARNED_MAX, (unsigned long long)persons_more);
	}
	store_txn_end(txn);
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
	int rc = summary_bulk_put(&im->summaries, txn, id, -1, im->slots_buf, (uint32_t)count);
	if (rc == STORE_OK) {
		im->persons++;
		im->slots += count;
		city_count(im, im->slots_buf, count);
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
		im.city_persons = calloc(CITY_CODES, sizeof(*im.city_persons));
		im.city_stamp = calloc(CITY_CODES, sizeof(*im.city_stamp));
		if (im.city_stamp == NULL) {
			free(im.city_persons);
			im.city_persons = NULL;
		}
		rc = summary_bulk_open(&im.summaries, store) != STORE_OK;
		rc = rc != 0 ? rc : write_all(&im);
		summary_bulk_close(&im.summaries);
		progress(&im, "writing", 1, 1, true);
		cities_check(&im);
	}
	free(im.city_persons);
	free(im.city_stamp);
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
