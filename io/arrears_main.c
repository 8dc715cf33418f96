/* build/arrears: the offline tools. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "eval.h"

static int usage(FILE *out)
{
	fprintf(out, "usage:\n"
		     "  arrears eval [--data DIR]   < requests.msgpack > responses.msgpack\n"
		     "      reads msgpack-RPC requests back to back on stdin until EOF and writes one\n"
		     "      response per request on stdout, in order; with --data, against the store\n"
		     "      in DIR (created when missing), durable across runs.\n");
	return out == stdout ? 0 : 2;
}

static int cmd_eval(int argc, char **argv)
{
	const char *data = NULL;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
			data = argv[++i];
		} else {
			return usage(stderr);
		}
	}
	struct store *store = NULL;
	if (data != NULL) {
		char err[256];
		if (store_open(data, NULL, &store, err, sizeof(err)) != STORE_OK) {
			fprintf(stderr, "arrears eval: cannot open the store: %s\n", err);
			return 1;
		}
	}
	int status = eval_run(store, STDIN_FILENO, STDOUT_FILENO);
	store_close(store);
	return status;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "eval") == 0) {
		return cmd_eval(argc - 2, argv + 2);
	}
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		return usage(stdout);
	}
	return usage(stderr);
}
