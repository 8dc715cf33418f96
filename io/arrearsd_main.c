/* build/arrearsd: the server. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../fault/fault.h"
#include "../cli/flags.h"
#include "../rpc/log.h"
#include "../rpc/retention.h"
#include "server.h"


static int usage(void)
{
	fprintf(stderr, "usage: arrearsd [--listen 127.0.0.1:7420] [--data DIR] [--threads N] [--max-request BYTES]\n"
			"                [--max-persons N] [--max-connections N] [--idle-timeout SECONDS]\n"
			"                [--token-file FILE] [--map-max BYTES] [--max-answer-memory BYTES]\n"
			"                [--idem-retention-days 30]\n");
	return 2;
}

static bool parse_listen(const char *s, struct server_config *cfg, char *host, size_t host_size)
{
	const char *colon = strrchr(s, ':');
	if (colon == NULL || (size_t)(colon - s) >= host_size) {
		return false;
	}
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	size_t digits = strlen(colon + 1);
	unsigned long port = strtoul(colon + 1, NULL, 10);
	cfg->host = host;
	cfg->port = (uint16_t)port;
	return digits > 0 && digits <= 5 && strspn(colon + 1, "0123456789") == digits && port <= 65535;
}

/* The token is the file's first line. */
static bool read_token(const char *path, char *token, size_t size, size_t *token_size)
{
	FILE *f = fopen(path, "r");
	if (f == NULL || fgets(token, (int)size, f) == NULL) {
		if (f != NULL) {
			fclose(f);
		}
		return false;
	}
	fclose(f);
	*token_size = strcspn(token, "\r\n");
	return *token_size > 0;
}

int main(int argc, char **argv)
{
	static char host[64] = "127.0.0.1";
	static char token[TOKEN_BYTES_MAX];
	const char *data = "data";
	struct store_options store_options = { 0 };
	uint32_t retention_days = RETENTION_DAYS_DEFAULT; /* 0: idempotency records are kept forever */
	/* An event loop and a worker per core by default. */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	uint32_t threads = cores < 1 ? 1 : cores > SERVER_THREADS_MAX ? SERVER_THREADS_MAX : (uint32_t)cores;
	struct server_config cfg = { .host = host, .port = 7420, .loops = threads, .workers = threads,
				     .request_bytes_max = PROTO_REQUEST_BYTES_MAX, .persons_max = PROTO_PERSONS_MAX,
				     .connections_max = SERVER_CONNECTIONS_MAX_DEFAULT,
				     .idle_timeout_s = SERVER_IDLE_TIMEOUT_S_DEFAULT,
				     .answer_bytes_max = SERVER_ANSWER_BYTES_MAX_DEFAULT };
	for (int i = 1; i < argc; i++) {
		const char *f = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t n = 0;
		if (v == NULL) {
			return usage();
		} else if (strcmp(f, "--listen") == 0) {
			if (!parse_listen(v, &cfg, host, sizeof(host))) {
				fprintf(stderr, "arrearsd: --listen must be IPV4:PORT, got '%s'\n", v);
				return usage();
			}
		} else if (strcmp(f, "--data") == 0) {
			data = v;
		} else if (strcmp(f, "--threads") == 0) {
			if (!flag_u64("arrearsd", f, v, 1, SERVER_THREADS_MAX, &n)) {
				return 2;
			}
			cfg.loops = cfg.workers = (uint32_t)n;
		} else if (strcmp(f, "--max-request") == 0) {
			if (!flag_u64("arrearsd", f, v, 64, PROTO_REQUEST_BYTES_MAX * 16ull, &n)) {
				return 2;
			}
			cfg.request_bytes_max = n;
		} else if (strcmp(f, "--max-persons") == 0) {
			if (!flag_u64("arrearsd", f, v, 1, PROTO_PERSONS_MAX, &n)) {
				return 2;
			}
			cfg.persons_max = (uint32_t)n;
		} else if (strcmp(f, "--max-connections") == 0) {
			if (!flag_u64("arrearsd", f, v, 1, 1000000, &n)) {
				return 2;
			}
			cfg.connections_max = (uint32_t)n;
		} else if (strcmp(f, "--idle-timeout") == 0) {
			if (!flag_u64("arrearsd", f, v, 0, 86400 * 365, &n)) {
				return 2;
			}
			cfg.idle_timeout_s = (uint32_t)n;
		} else if (strcmp(f, "--max-answer-memory") == 0) {
			if (!flag_u64("arrearsd", f, v, 1 << 20, UINT64_MAX, &n)) {
				return 2;
			}
			cfg.answer_bytes_max = n;
		} else if (strcmp(f, "--map-max") == 0) {
			if (!flag_u64("arrearsd", f, v, 1, UINT64_MAX, &n)) {
				return 2;
			}
			store_options.map_bytes_max = n; /* the store's address space, as eval's */
		} else if (strcmp(f, "--idem-retention-days") == 0) {
			if (!flag_u64("arrearsd", f, v, 0, RETENTION_DAYS_MAX, &n)) {
				return 2;
			}
			retention_days = (uint32_t)n;
		} else if (strcmp(f, "--token-file") == 0) {
			if (!read_token(v, token, sizeof(token), &cfg.token_size)) {
				fprintf(stderr, "arrearsd: %s: no token in its first line\n", v);
				return 1;
			}
			cfg.token = token;
		} else {
			return usage();
		}
		i++;
	}
	/* Fault injection for the tests (tests/faults.py): off unless asked for. */
	const char *faults = getenv("ARREARSD_FAULTS");
	if (faults != NULL && faults[0] != '\0') {
		char why[160];
		if (!fault_configure(faults, why, sizeof(why))) {
			fprintf(stderr, "arrearsd: ARREARSD_FAULTS: %s\n", why);
			return 2;
		}
		log_event("event=faults seed=%llu spec=\"%s\"", (unsigned long long)fault_seed(), faults);
	}
	/* Room for every connection's socket. */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	char err[256];
	if (store_open(data, &store_options, &cfg.store, err, sizeof(err)) != STORE_OK) {
		log_event("event=start_failed reason=store detail=\"%s\"", err);
		return 1;
	}
	log_event("event=start data=%s max_request=%zu max_persons=%u max_connections=%u idle_timeout_s=%u auth=%s",
		  data, cfg.request_bytes_max, cfg.persons_max, cfg.connections_max, cfg.idle_timeout_s,
		  cfg.token != NULL ? "token" : "none");
	log_event("event=idem_retention days=%u", retention_days);
	struct retention *retention = retention_start(cfg.store, retention_days);
	int rc = server_run(&cfg);
	retention_stop(retention);
	store_close(cfg.store);
	if (fault_on) {
		char summary[256];
		fault_summary(summary, sizeof(summary));
		log_event("event=faults_injected seed=%llu %s", (unsigned long long)fault_seed(), summary);
	}
	log_event("event=stopped status=%s", rc == 0 ? "clean" : strerror(-rc));
	return rc == 0 ? 0 : 1;
}
