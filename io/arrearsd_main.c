/* build/arrearsd: the server. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../fault/fault.h"
#include "../cli/flags.h"
#include "../rpc/log.h"
#include "../proto/proto.h"
#include "metrics.h"
#include "../rpc/retention.h"
#include "server.h"


static const char usage_text[] =
	"usage: arrearsd [--listen HOST:PORT] [--data DIR] [--threads N] [--max-request BYTES]\n"
	"                [--max-persons N] [--max-connections N] [--idle-timeout SECONDS]\n"
	"                [--token-file FILE] [--map-max BYTES] [--max-answer-memory BYTES]\n"
	"                [--metrics-listen HOST:PORT] [--idem-retention-days DAYS]\n"
	"  --listen HOST:PORT          address to serve on: IPv4, [IPv6] or a host name (default 127.0.0.1:7420;\n"
	"                              port 0: any free port, logged)\n"
	"  --data DIR                  the LMDB store (default data; created when missing)\n"
	"  --threads N                 event loops and as many workers (default: one a core)\n"
	"  --max-request BYTES         one message (default 16777216)\n"
	"  --max-persons N             persons in one request (default 100000)\n"
	"  --max-connections N         open connections (default 10000)\n"
	"  --idle-timeout SECONDS      cut a connection idle that long (default 300; 0: never)\n"
	"  --token-file FILE           require auth with the token in FILE's first line\n"
	"  --map-max BYTES             the store's address space (default 1 TiB)\n"
	"  --max-answer-memory BYTES   answers held for all clients together (default 268435456)\n"
	"  --metrics-listen HOST:PORT  serve GET /metrics (Prometheus) and /healthz over HTTP on this IPv4 address\n"
	"  --idem-retention-days DAYS  forget idempotency records older than that (default 30; 0: never)\n"
	"  --help, --version\n"
	"Logs go to stderr, one key=value line per event. SIGTERM or SIGINT: finish what was received, exit 0.\n";

static int usage(FILE *out)
{
	fputs(usage_text, out);
	return out == stdout ? 0 : 2;
}

/* HOST:PORT, [IPV6]:PORT; the host is resolved when the server binds. */
static bool parse_listen(const char *s, struct server_config *cfg, char *host, size_t host_size)
{
	const char *colon = strrchr(s, ':');
	if (colon == NULL) {
		return false;
	}
	const char *h = s;
	size_t h_size = (size_t)(colon - s);
	if (s[0] == '[') { /* [::1]:7420 */
		if (h_size < 2 || s[h_size - 1] != ']') {
			return false;
		}
		h = s + 1;
		h_size -= 2;
	}
	if (h_size == 0 || h_size >= host_size || memchr(h, '[', h_size) != NULL || memchr(h, ']', h_size) != NULL) {
		return false;
	}
	if (s[0] != '[' && memchr(h, ':', h_size) != NULL) {
		return false; /* an IPv6 address needs its brackets: ::1:7420 is ambiguous */
	}
	memcpy(host, h, h_size);
	host[h_size] = '\0';
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

/* The flags that take a value: only to tell a missing value from an unknown flag. */
static bool flag_known(const char *f)
{
	static const char *const flags[] = { "--listen",	    "--data",	       "--threads",   "--max-request",
					     "--max-persons",	    "--max-connections", "--idle-timeout", "--max-answer-memory",
					     "--map-max",	    "--token-file", "--metrics-listen", "--idem-retention-days" };
	for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++) {
		if (strcmp(f, flags[k]) == 0) {
			return true;
		}
	}
	return false;
}

int main(int argc, char **argv)
{
	static char host[256] = "127.0.0.1"; /* a DNS name is at most 253 bytes */
	static char token[TOKEN_BYTES_MAX];
	static char metrics_host[64];
	static struct stats stats; /* the server's counters, also read by the metrics endpoint */
	struct server_config metrics_at = { .host = NULL }; /* --metrics-listen: only host and port */
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
		if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
			return usage(stdout);
		} else if (strcmp(f, "--version") == 0) {
			printf("arrearsd %s\n", PROTO_VERSION);
			return 0;
		} else if (v == NULL) {
			return flag_known(f) ? flag_missing_value("arrearsd", f) : flag_unknown("arrearsd", f);
		} else if (strcmp(f, "--listen") == 0) {
			if (!parse_listen(v, &cfg, host, sizeof(host))) {
				fprintf(stderr, "arrearsd: --listen must be HOST:PORT (127.0.0.1:7420, [::1]:7420, "
						"localhost:7420), got '%s'\n", v);
				return 2;
			}
		} else if (strcmp(f, "--metrics-listen") == 0) {
			struct in_addr ip;
			if (!parse_listen(v, &metrics_at, metrics_host, sizeof(metrics_host)) ||
			    inet_pton(AF_INET, metrics_host, &ip) != 1) {
				fprintf(stderr, "arrearsd: --metrics-listen must be IPV4:PORT, got '%s'\n", v);
				return 2;
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
			return flag_unknown("arrearsd", f);
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
	/* Blocked before the metrics thread starts, so that it inherits the
	 * mask: server_run waits for these in this thread. */
	sigset_t signals;
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	stats.started_ns = stats_now_ns();
	cfg.stats = &stats;
	/* Listening first: /healthz answers 503 while the store opens. */
	struct metrics *metrics = NULL;
	if (metrics_at.host != NULL) {
		int mrc = metrics_start(metrics_host, metrics_at.port, &stats, &metrics);
		if (mrc != 0) {
			log_event("event=start_failed reason=metrics addr=%s port=%u errno=%d", metrics_host, metrics_at.port,
				  -mrc);
			return 1;
		}
	}
	char err[256];
	if (store_open(data, &store_options, &cfg.store, err, sizeof(err)) != STORE_OK) {
		log_event("event=start_failed reason=store detail=\"%s\"", err);
		metrics_stop(metrics);
		return 1;
	}
	if (metrics != NULL) {
		metrics_set_store(metrics, cfg.store);
	}
	log_event("event=start data=%s max_request=%zu max_persons=%u max_connections=%u idle_timeout_s=%u auth=%s",
		  data, cfg.request_bytes_max, cfg.persons_max, cfg.connections_max, cfg.idle_timeout_s,
		  cfg.token != NULL ? "token" : "none");
	log_event("event=idem_retention days=%u", retention_days);
	struct retention *retention = retention_start(cfg.store, retention_days);
	int rc = server_run(&cfg);
	metrics_stop(metrics); /* before the store it reads closes */
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
