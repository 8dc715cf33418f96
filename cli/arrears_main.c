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
#include "../proto/proto.h"

static const char usage_eval[] =
	"usage: arrears eval [--data DIR] [--map-max BYTES] < requests.msgpack > responses.msgpack\n"
	"  reads msgpack-RPC requests back to back on stdin until EOF and writes one\n"
	"  response per request on stdout, in order; with --data, against the store\n"
	"  in DIR (created when missing), durable across runs.\n"
	"  --data DIR        the LMDB store (default: none; inline persons only)\n"
	"  --map-max BYTES   the store's address space (default 1 TiB)\n";
static const char usage_import[] =
	"usage: arrears import --data DIR FILE.csv [POLICY.json ...]\n"
	"  stores the policies, then the CSV (SPEC 6.1; '-' reads stdin) into the store.\n"
	"  The CSV: RFC 4180 (quoted fields, CRLF, a UTF-8 byte-order mark), a header\n"
	"  naming id,month,city,type,category,base,paid,paid_date[,deemed] in any order.\n"
	"  --data DIR        the LMDB store (created when missing); required\n"
	"  exit status: 0; 1 on failure; 2 bad usage; 3 some persons left out for bad rows\n";
static const char usage_gen[] =
	"usage: arrears gen [--persons N] [--seed S] [--city C] [--second-city C2] (--out DIR | --data DIR)\n"
	"  a seeded synthetic city: DIR/slots.csv and DIR/policy-C.json (--out), or a store (--data).\n"
	"  defaults: --persons 1000 --seed 1 --city 110000; the second city 310000 (110000 if C is 310000)\n";

static int usage(FILE *out)
{
	fprintf(out,
		"usage: arrears COMMAND [FLAGS]   (arrears COMMAND --help for its flags)\n"
		"  arrears eval [--data DIR] [--map-max BYTES] < requests.msgpack > responses.msgpack\n"
		"  arrears import --data DIR FILE.csv [POLICY.json ...]\n"
		"  arrears gen [--persons N] [--seed S] [--city C] [--second-city C2] (--out DIR | --data DIR)\n"
		"  arrears call [--connect HOST:PORT] [--token-file F] METHOD '{json params}'\n"
		"  arrears show ID [--as-of YYYYMMDD] [--connect HOST:PORT] [--city C] [--no-color]\n"
		"  arrears audit --data DIR [--after SEQ] [--limit N]\n"
		"  arrears backup --data DIR OUT\n"
		"  arrears verify --data DIR\n"
		"  arrears --version\n");
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
	const char *prog = "arrears eval";
	const char *data = NULL;
	uint64_t map_max = 0;
	for (int i = 0; i < argc; i++) {
		const char *f = argv[i];
		if (flag_is_help(f)) {
			fputs(usage_eval, stdout);
			return 0;
		} else if (strcmp(f, "--data") != 0 && strcmp(f, "--map-max") != 0) {
			return flag_unknown(prog, f);
		} else if (i + 1 == argc) {
			return flag_missing_value(prog, f);
		} else if (strcmp(f, "--data") == 0) {
			data = argv[++i];
		} else if (!flag_u64(prog, f, argv[++i], 1, UINT64_MAX, &map_max)) {
			return 2;
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
	const char *prog = "arrears import";
	const char *data = NULL;
	const char **files = calloc((size_t)argc + 1, sizeof(*files));
	int file_count = 0;
	int status = files == NULL ? 1 : -1;
	for (int i = 0; status < 0 && i < argc; i++) {
		const char *a = argv[i];
		if (flag_is_help(a)) {
			fputs(usage_import, stdout);
			status = 0;
		} else if (strcmp(a, "--data") == 0) {
			status = i + 1 == argc ? flag_missing_value(prog, a) : -1;
			data = status < 0 ? argv[++i] : NULL;
		} else if (a[0] == '-' && a[1] != '\0') {
			status = flag_unknown(prog, a);
		} else {
			files[file_count++] = a;
		}
	}
	if (status < 0 && data == NULL) {
		status = flag_required(prog, "--data DIR");
	}
	if (status < 0 && file_count == 0) {
		fprintf(stderr, "%s: which CSV file? (FILE.csv, or - for stdin; %s --help)\n", prog, prog);
		status = 2;
	}
	struct store *store;
	if (status < 0 && open_store(data, 0, &store) != 0) {
		status = 1;
	}
	if (status < 0) {
		status = import_run(store, data, files[0], files + 1, file_count - 1);
		store_close(store);
	}
	free(files);
	return status;
}

static int cmd_gen(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		if (flag_is_help(argv[i])) {
			fputs(usage_gen, stdout);
			return 0;
		}
	}
	return gen_command(argc, argv);
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
		return cmd_gen(argc - 2, argv + 2);
	}
	if (strcmp(cmd, "audit") == 0 || strcmp(cmd, "backup") == 0 || strcmp(cmd, "verify") == 0) {
		return cmd[0] == 'a'   ? ops_audit_command(argc - 2, argv + 2)
		       : cmd[0] == 'b' ? ops_backup_command(argc - 2, argv + 2)
				       : ops_verify_command(argc - 2, argv + 2);
	}
	if (flag_is_help(cmd) || strcmp(cmd, "help") == 0) {
		return usage(stdout);
	}
	if (strcmp(cmd, "--version") == 0) {
		printf("arrears %s\n", PROTO_VERSION);
		return 0;
	}
	if (cmd[0] == '\0') {
		return usage(stderr);
	}
	fprintf(stderr, "arrears: unknown command '%s'\n", cmd);
	return usage(stderr);
}
