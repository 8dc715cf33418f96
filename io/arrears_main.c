/* build/arrears: the offline tools (eval now; import, gen, call, show later). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "eval.h"

static int usage(FILE *out)
{
	fprintf(out, "usage: arrears eval   < requests.msgpack > responses.msgpack\n"
		     "  eval  reads msgpack-RPC requests back to back on stdin until EOF and\n"
		     "        writes one response per request on stdout, in order.\n");
	return out == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "eval") == 0) {
		return eval_run(STDIN_FILENO, STDOUT_FILENO);
	}
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		return usage(stdout);
	}
	return usage(stderr);
}
