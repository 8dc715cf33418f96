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

#endif
