/* build/arrears: the offline tools. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "eval.h"
#include "flags.h"
#include "ops.h"
#include "../gen/gen_cmd.h"
#include "../import/import.h"

static int usage(FILE *out)
{
	fprintf(out,
		"usage:\n"
		"  arrears eval [--data DIR] [--map-max BYTES] < requests.msgpack > responses.msgpack\n"
		"      reads msgpack-RPC requests back to back on stdin until EOF and writes one\n"
		"      response per request on stdout, in order; with --data, against the store\n"
		"      in DIR (created when missing), durable across runs.\n"
		"  arrears import --data DIR FILE.csv [POLICY.json ...]\n"
		"      imports policies, then the CSV (SPEC 6.1; '-' reads stdin) into the store.\n"
		"  arrears gen --persons N --seed S --city C [--second-city C2] (--out DIR | --data DIR)\n"
		"      a seeded synthetic city: DIR/slots.csv and DIR/policy-C.json, or a store.\n"
		"  arrears call [--connect HOST:PORT] [--token-file F] METHOD '{json params}'\n"
		"      one request to a running arrearsd; the result as pretty JSON.\n"
		"  arrears show ID [--as-of YYYYMMDD] [--connect HOST:PORT] [--city C] [--no-color]\n"
		"      a person's timeline as a grid (a row per year and type, a cell per month), then\n"
		"      arrears, years, retirement, medical and housing.\n"
		"  arrears audit --data DIR [--after SEQ] [--limit N]\n"
		"      the audit log's records after SEQ (default 0: all), one JSON object a line.\n"
		"  arrears backup --data DIR OUT\n"
		"      a consistent compacted copy of DIR (live or not) into OUT/data.mdb; never overwrites.\n"
		"  arrears verify --data DIR\n"
		"      walks every record; prints each problem (ids masked), exits 1 when there is one.\n");
	return out == stdout ? 0 : 2;
}

static int open_store(const char *dir, uint64_t map_max, struct store **store)
{
	char err[256];
	struct store_options options = { .map_bytes_max = map_max };
	if (store_open(dir, &options, store, err, sizeof(err)) != STORE_OK) {
		fprintf(stderr, "arrears: cannot open the store: %s\n", err);
		return 1;
	}
	return 0;
}

static int cmd_eval(int argc, char **argv)
{
	const char *data = NULL;
	uint64_t map_max = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
			data = argv[++i];
		} else if (strcmp(argv[i], "--map-max") == 0 && i + 1 < argc) {
			if (!flag_u64("arrears eval", argv[i], argv[i + 1], 1, UINT64_MAX, &map_max)) {
				return 2;
			}
			i++;
		} else {
			return usage(stderr);
		}
	}
	struct store *store = NULL;
	if (data != NULL && open_store(data, map_max, &store) != 0) {
		return 1;
	}
	int status = eval_run(store, STDIN_FILENO, STDOUT_FILENO);
	store_close(store);
	return status;
}

static int cmd_import(int argc, char **argv)
{
	if (argc < 3 || strcmp(argv[0], "--data") != 0) {
		return usage(stderr);
	}
	struct store *store;
	if (open_store(argv[1], 0, &store) != 0) {
		return 1;
	}
	int status = import_run(store, argv[1], argv[2], (const char *const *)argv + 3, argc - 3);
	store_close(store);
	return status;
}

int main(int argc, char **argv)
{
	const char *cmd = argc >= 2 ? argv[1] : "";
	if (strcmp(cmd, "eval") == 0) {
		return cmd_eval(argc - 2, argv + 2);
	}
	if (strcmp(cmd, "import") == 0) {
		return cmd_import(argc - 2, argv + 2);
	}
	if (strcmp(cmd, "call") == 0) {
		return client_call_command(argc - 2, argv + 2);
	}
	if (strcmp(cmd, "show") == 0) {
		return client_show_command(argc - 2, argv + 2);
	}
	if (strcmp(cmd, "gen") == 0) {
		int status = gen_command(argc - 2, argv + 2);
		return status == 2 ? usage(stderr) : status;
	}
	if (strcmp(cmd, "audit") == 0 || strcmp(cmd, "backup") == 0 || strcmp(cmd, "verify") == 0) {
		int status = cmd[0] == 'a'   ? ops_audit_command(argc - 2, argv + 2)
			     : cmd[0] == 'b' ? ops_backup_command(argc - 2, argv + 2)
					     : ops_verify_command(argc - 2, argv + 2);
		return status == 2 ? usage(stderr) : status;
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		return usage(stdout);
	}
	return usage(stderr);
}
