#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <microhttpd.h>

#include <signal.h>
#include <stdatomic.h>
#include "../proto/proto.h"
#include "../rpc/dispatch.h"
#include "../rpc/log.h"
#include "metrics.h"

struct metrics {
	struct MHD_Daemon *daemon;
	struct stats *stats;
	_Atomic(struct store *) store;
	const char *method_names[STATS_METHODS_MAX];
	const char *code_names[STATS_CODES];
};

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned int status, const char *content_type,
			      void *body, size_t size, enum MHD_ResponseMemoryMode mode, const char *allow)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(size, body, mode);
	if (r == NULL) {
		if (mode == MHD_RESPMEM_MUST_FREE) {
			free(body);
		}
		return MHD_NO; /* MHD closes the connection */
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (allow != NULL) {
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	}
	enum MHD_Result rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result text(struct MHD_Connection *conn, unsigned int status, const char *body)
{
	return answer(conn, status, "text/plain; charset=utf-8", (void *)body, strlen(body), MHD_RESPMEM_PERSISTENT,
		      NULL);
}

static bool healthy(struct metrics *m)
{
	return atomic_load(&m->stats->serving) && atomic_load(&m->store) != NULL;
}

static enum MHD_Result page_metrics(struct metrics *m, struct MHD_Connection *conn)
{
	struct stats_gauges g = { .uptime_s = (double)(stats_now_ns() - m->stats->started_ns) / 1e9 };
	struct store *store = atomic_load(&m->store);
	struct store_stats ss;
	if (store != NULL && store_stats(store, &ss) == STORE_OK) {
		g.store_readable = true;
		g.store_used_bytes = ss.bytes_used;
		g.store_map_bytes = ss.map_bytes;
		g.store_persons = ss.persons;
		g.store_audit_records = ss.audit_records;
		g.store_idem_records = ss.idem_records;
	}
	char *body = malloc(STATS_TEXT_BYTES_MAX);
	size_t size = body == NULL ? 0
				   : stats_prometheus(m->stats, m->method_names, m->code_names, PROTO_VERSION, &g, body,
						      STATS_TEXT_BYTES_MAX);
	if (size == 0) {
		free(body);
		log_event("event=metrics_error reason=%s", body == NULL ? "out_of_memory" : "page_over_limit");
		return text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics page unavailable\n");
	}
	return answer(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, size, MHD_RESPMEM_MUST_FREE,
		      NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size, void **state)
{
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)state;
	struct metrics *m = cls;
	bool is_metrics = strcmp(url, "/metrics") == 0;
	bool is_health = strcmp(url, "/healthz") == 0;
	if (!is_metrics && !is_health) {
		return text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /healthz\n");
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		static const char body[] = "method not allowed: GET only\n";
		return answer(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", (void *)body,
			      sizeof(body) - 1, MHD_RESPMEM_PERSISTENT, "GET, HEAD");
	}
	if (is_health) {
		return healthy(m) ? text(conn, MHD_HTTP_OK, "ok\n")
				  : text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
					 atomic_load(&m->store) == NULL ? "starting\n" : "not serving\n");
	}
	return page_metrics(m, conn);
}

static void on_mhd_log(void *cls, const char *format, va_list ap)
{
	(void)cls;
	char detail[256];
	vsnprintf(detail, sizeof(detail), format, ap);
	detail[strcspn(detail, "\r\n\"")] = '\0';
	log_event("event=metrics_error detail=\"%s\"", detail);
}

int metrics_start(const char *host, uint16_t port, struct stats *stats, struct metrics **out)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
		return -EINVAL;
	}
	struct metrics *m = calloc(1, sizeof(*m));
	if (m == NULL) {
		return -ENOMEM;
	}
	m->stats = stats;
	for (uint32_t row = 0; row < STATS_METHODS_MAX; row++) {
		m->method_names[row] = dispatch_method_name(row);
	}
	for (int code = PROTO_MALFORMED; code <= PROTO_INTERNAL; code++) {
		m->code_names[code] = proto_error_name(code);
	}
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;
	m->daemon = MHD_start_daemon(flags, port, NULL, NULL, on_request, m,
				     MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, &addr,
				     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)METRICS_CONNECTIONS_MAX,
				     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)METRICS_TIMEOUT_S, MHD_OPTION_END);
	if (m->daemon == NULL) {
		int error = errno != 0 ? errno : EADDRINUSE;
		free(m);
		return -error;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
	log_event("event=metrics_listen addr=%s port=%u mode=%s", host, info != NULL ? info->port : port,
		  (flags & MHD_USE_EPOLL) != 0 ? "epoll" : "poll");
	*out = m;
	return 0;
}

void metrics_set_store(struct metrics *m, struct store *store)
{
	atomic_store(&m->store, store);
}

void metrics_stop(struct metrics *m)
{
	if (m != NULL) {
		MHD_stop_daemon(m->daemon);
		free(m);
	}
}
