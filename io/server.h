/* server: msgpack-RPC over TCP on io_uring (SPEC §5).
 *
 * Event loops (one ring per thread) accept, receive into provided buffers,
 * frame requests straight out of the byte stream and answer cheap requests
 * at once. Writes and bulk requests go to worker threads so that no loop
 * ever waits on a disk flush or a city-sized computation; their answers come
 * back to the loop through an eventfd. A connection's requests run in the
 * order they arrived. */
#ifndef ARREARS_SERVER_H
#define ARREARS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "../store/store.h"
#include "../rpc/dispatch.h"


struct server_config {
	const char *host;         /* numeric IPv4 or IPv6 address, or a host name (getaddrinfo) */
	uint16_t port;            /* 0: any free port (logged) */
	uint32_t loops;           /* event-loop threads */
	uint32_t workers;         /* threads for writes and bulk requests */
	size_t request_bytes_max; /* one message; larger: too_large, then close */
	uint32_t persons_max;     /* per request; larger: too_large */
	uint32_t connections_max; /* beyond: overloaded, then close */
	uint32_t idle_timeout_s;  /* 0: never */
	size_t answer_bytes_max;  /* answers held for all clients together (see above) */
	const char *token;        /* NULL: no auth */
	size_t token_size;
	struct store *store;
	struct stats *stats;      /* counters, shared with the metrics endpoint (io/metrics.h) */
};

/* Serves until SIGTERM or SIGINT, then stops accepting, finishes the
 * requests already received, sends their answers and returns 0; -errno
 * when it cannot start. Blocks SIGTERM, SIGINT and SIGPIPE in every thread
 * and waits for the first two in the calling thread. */
int server_run(const struct server_config *config);

#endif
