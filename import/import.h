#ifndef ARREARS_IMPORT_H
#define ARREARS_IMPORT_H

#include <stddef.h>

#include "../store/store.h"

/* Imports the policy files (JSON, SPEC §3.3) through policy.put, then the
 * CSV of SPEC §6.1 ("-" for stdin), each person replacing its stored
 * record. Progress and bad rows go to stderr. Returns the exit status: 0,
 * 1 on failure (the batch in flight is not written), 3 when some rows were
 * rejected and everything else imported. */
int import_run(struct store *store, const char *data_dir, const char *csv_path, const char *const *policies,
	       int policy_count);

/* One CSV row (line without its newline, size ≤ 4096 bytes) as the import
 * reads it under the header of SPEC §6.1: for the fuzzer. Returns NULL with
 * *slot filled, or the name of the first bad field. id gets the first
 * field's first 18 bytes (zero-padded) either way, as the import names a bad
 * row's person by them. */
const char *import_parse_row(const char *line, size_t size, char id[CORE_ID_SIZE], struct core_slot *slot);
/* The same row through libcsv always (RFC 4180 quoting, strict), as the
 * import reads any line with a quote or a carriage return; a plain line
 * must give what import_parse_row gives (the fuzz target checks). */
const char *import_parse_row_csv(const char *line, size_t size, char id[CORE_ID_SIZE], struct core_slot *slot);

#endif
