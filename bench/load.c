/* build/load: a load generator for arrearsd (msgpack-RPC over TCP, SPEC §5).
 *
 *   build/load --connect 127.0.0.1:PORT --connections C --pipeline P --seconds S
 *              [--warmup S] [--method arrears.compute|ping] [--ids-from N] [--threads T]
 *
 * It first fetches N stored ids with `scan` pages (persons whose scan entry
 * carries an error are left out), then every connection keeps P single-person
 * `arrears.compute` requests in flight, ids taken round robin. A request's
 * latency runs from handing it to the kernel to reading its answer, matched by
 * msgid: answers may come in any order. Answers that arrive during the warmup
 * are checked but not measured.
 *
 * Prints one key=value line and one line for people. Exit status: 0; 1 when
 * any answer was malformed, unknown, lost, or carried an error (the response's
 * own or a person's inside `results`); 2 on bad usage.
 *
 * Request frames are small and fixed, so they are encoded by hand; answers are
 * read with a small msgpack walker. Nothing beyond libc is linked.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mp.h"

/* Always on, one condition each (as core/core.h, which this file does not link). */
#define ASSERT(cond)                                                                   \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "load: assertion failed: %s (%s:%d)\n", #cond, \
				__FILE__, __LINE__);                                   \
			abort();                                                       \
		}                                                                      \
	} while (0)

#define CONNECTIONS_MAX 4096u        /* sockets one load process holds */
#define PIPELINE_MAX 1024u           /* requests in flight on one connection */
#define THREADS_MAX 8u               /* the machine has 2 cores, shared with the server */
#define IDS_MAX 100000u              /* ids for the round robin: one scan's limit */
#define SCAN_PAGE_PERSONS 1000u      /* persons per page while fetching ids */
#define SCAN_PAGES_MAX 100000u       /* pages walked for them: a city of 20 M is 20,000 */
#define FRAME_BYTES_MAX 96u          /* one hand-encoded request */
#define RESPONSE_BYTES_MAX (64u << 20) /* one answer; a scan page of 1000 is ~0.5 MB */
#define READ_BYTES_MIN (64u << 10)   /* room kept free for one read */
#define SECONDS_MAX 3600.0           /* the run and the warmup, each */
#define DRAIN_NS (5ull * 1000000000ull) /* answers owed after the run must come within */
#define EPOLL_EVENTS_MAX 256
#define AS_OF_DATE 20251110u         /* BENCH.md's "now" */

static_assert(FRAME_BYTES_MAX >= 7 + 16 + 1 + 1 + 6 + 5 + 4 + 1 + 1 + ID_BYTES_MAX,
	      "a compute frame with the longest id fits");
static_assert((uint64_t)PIPELINE_MAX * FRAME_BYTES_MAX <= UINT32_MAX, "out buffers are small");

/* ---- request frames, encoded by hand; msgid always a uint32 at offset 3 ---- */

#define FRAME_MSGID_AT 3u

static size_t put_be(uint8_t *p, uint64_t value, unsigned width)
{
	for (unsigned i = 0; i < width; i++) {
		p[i] = (uint8_t)(value >> (8 * (width - 1 - i)));
	}
	return width;
}

static size_t put_fixstr(uint8_t *p, const char *text, size_t size)
{
	ASSERT(size <= 31);
	p[0] = (uint8_t)(0xa0 | size);
	memcpy(p + 1, text, size);
	return 1 + size;
}

/* [0, msgid, method, [ {…: the caller writes `pairs` pairs next */
static size_t frame_head(uint8_t *p, uint32_t msgid, const char *method, unsigned pairs)
{
	size_t at = 0;
	ASSERT(pairs <= 15);
	p[at++] = 0x94;
	p[at++] = 0x00;
	p[at++] = 0xce;
	ASSERT(at == FRAME_MSGID_AT);
	at += put_be(p + at, msgid, 4);
	at += put_fixstr(p + at, method, strlen(method));
	p[at++] = 0x91;
	p[at++] = (uint8_t)(0x80 | pairs);
	return at;
}

static size_t frame_as_of(uint8_t *p)
{
	size_t at = put_fixstr(p, "as_of", 5);
	p[at++] = 0xce;
	return at + put_be(p + at, AS_OF_DATE, 4);
}

/* arrears.compute {"as_of", "ids": [id]} or ping {} */
static size_t frame_request(uint8_t *p, uint32_t msgid, const struct id *id)
{
	if (id == NULL) {
		return frame_head(p, msgid, "ping", 0);
	}
	size_t at = frame_head(p, msgid, "arrears.compute", 2);
	at += frame_as_of(p + at);
	at += put_fixstr(p + at, "ids", 3);
	p[at++] = 0x91;
	at += put_fixstr(p + at, id->bytes, id->size);
	ASSERT(at <= FRAME_BYTES_MAX);
	return at;
}

/* arrears.compute {"as_of", "scan": {"after": id or nil, "limit": limit}} */
static size_t frame_scan(uint8_t *p, uint32_t msgid, const struct id *after, uint32_t limit)
{
	size_t at = frame_head(p, msgid, "arrears.compute", 2);
	at += frame_as_of(p + at);
	at += put_fixstr(p + at, "scan", 4);
	p[at++] = 0x82;
	at += put_fixstr(p + at, "after", 5);
	if (after == NULL) {
		p[at++] = 0xc0;
	} else {
		at += put_fixstr(p + at, after->bytes, after->size);
	}
	at += put_fixstr(p + at, "limit", 5);
	p[at++] = 0xce;
	at += put_be(p + at, limit, 4);
	ASSERT(at <= FRAME_BYTES_MAX);
	return at;
}

/* ---- latency histogram: 128 sub-buckets per power of two of nanoseconds ---- */

#define HIST_SUB_BITS 7u
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
#define HIST_BUCKET_COUNT ((64u - HIST_SUB_BITS + 1u) * HIST_SUB_COUNT)

/* Values below 128 ns are exact; above, a bucket is 1/128 to 1/256 of its value wide. */
struct hist {
	uint64_t counts[HIST_BUCKET_COUNT];
	uint64_t total;
	uint64_t sum_ns;
	uint64_t max_ns;
};

static uint32_t hist_index(uint64_t ns)
{
	if (ns < HIST_SUB_COUNT) {
		return (uint32_t)ns;
	}
	uint32_t top = 63u - (uint32_t)__builtin_clzll(ns);
	uint32_t shift = top - HIST_SUB_BITS;
	uint32_t index = (shift + 1u) * HIST_SUB_COUNT + (uint32_t)((ns >> shift) - HIST_SUB_COUNT);
	ASSERT(index < HIST_BUCKET_COUNT);
	return index;
}

/* The middle of bucket `index`. */
static uint64_t hist_value(uint32_t index)
{
	if (index < HIST_SUB_COUNT) {
		return index;
	}
	uint32_t shift = index / HIST_SUB_COUNT - 1u;
	uint64_t low = (uint64_t)(HIST_SUB_COUNT + index % HIST_SUB_COUNT) << shift;
	return low + ((1ull << shift) >> 1);
}

static void hist_add(struct hist *h, uint64_t ns)
{
	h->counts[hist_index(ns)]++;
	h->total++;
	h->sum_ns += ns;
	h->max_ns = ns > h->max_ns ? ns : h->max_ns;
}

static void hist_merge(struct hist *into, const struct hist *from)
{
	for (uint32_t i = 0; i < HIST_BUCKET_COUNT; i++) {
		into->counts[i] += from->counts[i];
	}
	into->total += from->total;
	into->sum_ns += from->sum_ns;
	into->max_ns = from->max_ns > into->max_ns ? from->max_ns : into->max_ns;
}

/* The smallest recorded value with at least `parts_per_million` of the values
 * at or below it. */
static uint64_t hist_quantile_ns(const struct hist *h, uint64_t parts_per_million)
{
	if (h->total == 0) {
		return 0;
	}
	uint64_t rank = (h->total * parts_per_million + 999999u) / 1000000u;
	rank = rank == 0 ? 1 : rank;
	uint64_t seen = 0;
	for (uint32_t i = 0; i < HIST_BUCKET_COUNT; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t value = hist_value(i);
			return value < h->max_ns ? value : h->max_ns;
		}
	}
	return h->max_ns;
}

/* ---- configuration ---- */

struct config {
	struct sockaddr_in address;
	const char *address_text;
	uint32_t connections;
	uint32_t pipeline;
	uint32_t threads;
	uint32_t ids_wanted;
	double seconds;
	double warmup_seconds;
	bool ping; /* method ping: no ids */
};

static void usage(void)
{
	fprintf(stderr,
		"usage: load --connect HOST:PORT --connections C --pipeline P --seconds S\n"
		"            [--warmup S (1)] [--method arrears.compute|ping] [--ids-from N (1000)]\n"
		"            [--threads T (1)]\n"
		"HOST is an IPv4 address or localhost; C 1..%u, P 1..%u, N 1..%u, T 1..%u\n",
		CONNECTIONS_MAX, PIPELINE_MAX, IDS_MAX, THREADS_MAX);
	exit(2);
}

static uint32_t parse_u32(const char *text, uint32_t min, uint32_t max)
{
	char *end = NULL;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value < min || value > max) {
		fprintf(stderr, "load: %s: expected an integer in %u..%u\n", text, min, max);
		usage();
	}
	return (uint32_t)value;
}

static double parse_seconds(const char *text)
{
	char *end = NULL;
	double value = strtod(text, &end);
	if (end == text || *end != '\0' || !(value >= 0.0 && value <= SECONDS_MAX)) {
		fprintf(stderr, "load: %s: expected seconds in 0..%.0f\n", text, SECONDS_MAX);
		usage();
	}
	return value;
}

static void parse_address(const char *text, struct sockaddr_in *out)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	if (colon == NULL || (size_t)(colon - text) >= sizeof host) {
		usage();
	}
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	*out = (struct sockaddr_in){.sin_family = AF_INET};
	out->sin_port = htons((uint16_t)parse_u32(colon + 1, 1, 65535));
	if (strcmp(host, "localhost") == 0) {
		strcpy(host, "127.0.0.1");
	}
	if (inet_pton(AF_INET, host, &out->sin_addr) != 1) {
		fprintf(stderr, "load: %s: expected an IPv4 address\n", host);
		usage();
	}
}

static void config_parse(int argc, char **argv, struct config *c)
{
	*c = (struct config){.connections = 1, .pipeline = 1, .threads = 1, .ids_wanted = 1000,
			     .seconds = 10.0, .warmup_seconds = 1.0};
	for (int i = 1; i < argc; i++) {
		const char *flag = argv[i];
		if (i + 1 >= argc) {
			usage();
		}
		const char *value = argv[++i];
		if (strcmp(flag, "--connect") == 0) {
			parse_address(value, &c->address);
			c->address_text = value;
		} else if (strcmp(flag, "--connections") == 0) {
			c->connections = parse_u32(value, 1, CONNECTIONS_MAX);
		} else if (strcmp(flag, "--pipeline") == 0) {
			c->pipeline = parse_u32(value, 1, PIPELINE_MAX);
		} else if (strcmp(flag, "--threads") == 0) {
			c->threads = parse_u32(value, 1, THREADS_MAX);
		} else if (strcmp(flag, "--ids-from") == 0) {
			c->ids_wanted = parse_u32(value, 1, IDS_MAX);
		} else if (strcmp(flag, "--seconds") == 0) {
			c->seconds = parse_seconds(value);
		} else if (strcmp(flag, "--warmup") == 0) {
			c->warmup_seconds = parse_seconds(value);
		} else if (strcmp(flag, "--method") == 0 && strcmp(value, "ping") == 0) {
			c->ping = true;
		} else if (strcmp(flag, "--method") == 0 && strcmp(value, "arrears.compute") == 0) {
			c->ping = false;
		} else {
			usage();
		}
	}
	if (c->address_text == NULL) {
		usage();
	}
	c->threads = c->threads < c->connections ? c->threads : c->connections;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	int rc = clock_gettime(CLOCK_MONOTONIC, &ts);
	ASSERT(rc == 0);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A blocking TCP connection with Nagle off. Returns the fd, or -1 (reported). */
static int connect_to(const struct sockaddr_in *address)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "load: socket: %s\n", strerror(errno));
		return -1;
	}
	int one = 1;
	int rc = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	ASSERT(rc == 0);
	while ((rc = connect(fd, (const struct sockaddr *)address, sizeof *address)) < 0 &&
	       errno == EINTR) {
	}
	if (rc < 0) {
		fprintf(stderr, "load: connect: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- fetching ids: one blocking connection, one page at a time ---- */

struct input {
	uint8_t *data;
	size_t start; /* first byte not yet consumed */
	size_t end;   /* bytes held */
	size_t capacity;
};

/* Keeps READ_BYTES_MIN free after the held bytes, dropping consumed ones
 * first. Returns false when the held bytes already reach RESPONSE_BYTES_MAX. */
static bool input_reserve(struct input *in)
{
	if (in->start > 0) {
		memmove(in->data, in->data + in->start, in->end - in->start);
		in->end -= in->start;
		in->start = 0;
	}
	if (in->capacity - in->end >= READ_BYTES_MIN) {
		return true;
	}
	if (in->end >= RESPONSE_BYTES_MAX) {
		return false;
	}
	size_t capacity = in->capacity == 0 ? 4 * READ_BYTES_MIN : 2 * in->capacity;
	uint8_t *data = realloc(in->data, capacity);
	ASSERT(data != NULL);
	in->data = data;
	in->capacity = capacity;
	return true;
}

static bool send_all(int fd, const uint8_t *p, size_t size)
{
	while (size > 0) {
		ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return false;
		}
		p += n;
		size -= (size_t)n;
	}
	return true;
}

/* Reads until one whole response is held, then parses it into out and sink.
 * Returns 0, or -1 (reported) on a closed connection, a malformed answer or
 * one past RESPONSE_BYTES_MAX. */
static int response_receive(int fd, struct input *in, struct response *out, struct ids *sink)
{
	for (;;) {
		struct mp_reader r = {in->data + in->start, in->end - in->start, 0};
		int rc = mp_skip(&r);
		if (rc == MP_OK) {
			r.at = 0;
			rc = response_read(&r, out, sink);
			in->start += r.at;
			if (rc == MP_OK) {
				return 0;
			}
		}
		if (rc == MP_BAD) {
			fprintf(stderr, "load: malformed response while fetching ids\n");
			return -1;
		}
		if (!input_reserve(in)) {
			fprintf(stderr, "load: response over %u bytes\n", RESPONSE_BYTES_MAX);
			return -1;
		}
		ssize_t n = recv(fd, in->data + in->end, in->capacity - in->end, 0);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			fprintf(stderr, "load: connection closed while fetching ids\n");
			return -1;
		}
		in->end += (size_t)n;
	}
}

/* Fills ids with up to ids->capacity stored ids, scan page by scan page.
 * Returns 0, or -1 (reported). */
static int ids_fetch(const struct config *config, struct ids *ids)
{
	int fd = connect_to(&config->address);
	if (fd < 0) {
		return -1;
	}
	struct input in = {0};
	int rc = 0;
	for (uint32_t msgid = 1; rc == 0; msgid++) {
		if (msgid > SCAN_PAGES_MAX) {
			fprintf(stderr, "load: no %u ids after %u scan pages\n", ids->capacity, SCAN_PAGES_MAX);
			rc = -1;
			break;
		}
		uint8_t frame[FRAME_BYTES_MAX];
		uint32_t want = ids->capacity - ids->count;
		uint32_t limit = want < SCAN_PAGE_PERSONS ? want : SCAN_PAGE_PERSONS;
		size_t size = frame_scan(frame, msgid, msgid == 1 ? NULL : &ids->next, limit);
		struct response response;
		ids->has_next = false;
		if (!send_all(fd, frame, size) || response_receive(fd, &in, &response, ids) != 0) {
			rc = -1;
		} else if (response.msgid != msgid || response.error) {
			fprintf(stderr, "load: scan answered %s\n",
				response.error ? "with an error" : "with another msgid");
			rc = -1;
		} else if (!ids->has_next || ids->count == ids->capacity) {
			break;
		}
	}
	free(in.data);
	close(fd);
	if (rc == 0 && ids->count == 0) {
		fprintf(stderr, "load: the store holds no person to compute\n");
		rc = -1;
	}
	return rc;
}

/* ---- the load: connections driven by epoll, one loop per thread ---- */

struct slot {
	uint64_t sent_ns;
	uint32_t msgid; /* the next or current one: slot index + pipeline × k, so msgid % pipeline names the slot */
	bool busy;
};

struct conn {
	int fd;
	bool open;
	bool want_out;       /* EPOLLOUT is armed: the kernel took only part of out */
	struct slot *slots;  /* pipeline of them */
	uint32_t *free;      /* indexes of slots not in flight, a stack */
	uint32_t free_count;
	uint32_t busy_count; /* slots in flight */
	uint8_t *out;        /* frames the kernel has not taken; pipeline × FRAME_BYTES_MAX */
	size_t out_start;
	size_t out_end;
	struct input in;
};

struct counts {
	uint64_t sent;
	uint64_t answered;
	uint64_t errors;        /* responses whose error is not nil */
	uint64_t person_errors; /* responses with an error inside results */
	uint64_t malformed;     /* unreadable, or an unknown or repeated msgid */
	uint64_t lost;          /* in flight when a connection died or the drain timed out */
	uint64_t disconnects;
};

struct worker {
	const struct config *config;
	const struct ids *ids;
	struct conn *conns;
	uint32_t conn_count;
	uint32_t open_count;
	uint32_t in_flight;
	int epoll_fd;
	uint64_t id_next;       /* round robin over ids */
	uint64_t measure_from_ns;
	uint64_t stop_ns;       /* no request is sent from here; answers until here are measured */
	struct hist *hist;
	struct counts counts;
	pthread_t thread;
};

static void conn_close(struct worker *w, struct conn *c)
{
	ASSERT(c->open);
	w->counts.lost += c->busy_count;
	w->in_flight -= c->busy_count;
	c->busy_count = 0; /* nothing more is expected on it */
	c->free_count = 0;
	c->open = false;
	w->open_count--;
	close(c->fd);
}

/* Queues a request on every free slot while the run lasts. */
static void conn_fill(struct worker *w, struct conn *c, uint64_t now)
{
	uint32_t pipeline = w->config->pipeline;
	while (c->open && c->free_count > 0 && now < w->stop_ns) {
		uint32_t index = c->free[c->free_count - 1];
		struct slot *slot = &c->slots[index];
		if (c->out_end + FRAME_BYTES_MAX > (size_t)pipeline * FRAME_BYTES_MAX) {
			memmove(c->out, c->out + c->out_start, c->out_end - c->out_start);
			c->out_end -= c->out_start;
			c->out_start = 0;
		}
		/* Unsent bytes belong to busy slots, so one more frame always fits. */
		ASSERT(c->out_end + FRAME_BYTES_MAX <= (size_t)pipeline * FRAME_BYTES_MAX);
		ASSERT(!slot->busy);
		slot->busy = true;
		slot->sent_ns = now;
		const struct id *id = NULL;
		if (!w->config->ping) {
			id = &w->ids->items[w->id_next++ % w->ids->count];
		}
		c->out_end += frame_request(c->out + c->out_end, slot->msgid, id);
		c->free_count--;
		c->busy_count++;
		w->in_flight++;
		w->counts.sent++;
	}
}

static void conn_arm(struct worker *w, struct conn *c, bool want_out)
{
	if (c->want_out == want_out) {
		return;
	}
	struct epoll_event event = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0u), .data.ptr = c};
	int rc = epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, c->fd, &event);
	ASSERT(rc == 0);
	c->want_out = want_out;
}

/* Hands the kernel what it takes of out; arms EPOLLOUT for the rest. */
static void conn_flush(struct worker *w, struct conn *c)
{
	while (c->open && c->out_start < c->out_end) {
		ssize_t n = send(c->fd, c->out + c->out_start, c->out_end - c->out_start, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_start += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		} else {
			fprintf(stderr, "load: send: %s\n", n < 0 ? strerror(errno) : "nothing taken");
			w->counts.disconnects++;
			conn_close(w, c);
			return;
		}
	}
	if (c->out_start == c->out_end) {
		c->out_start = 0;
		c->out_end = 0;
	}
	conn_arm(w, c, c->out_start < c->out_end);
}

/* Matches one response to its slot. Returns 0, or -1 for an msgid not in flight. */
static int conn_answer(struct worker *w, struct conn *c, const struct response *r, uint64_t now)
{
	struct slot *slot = &c->slots[r->msgid % w->config->pipeline];
	if (!slot->busy || slot->msgid != r->msgid) {
		fprintf(stderr, "load: response to msgid %" PRIu32 ", not in flight\n", r->msgid);
		w->counts.malformed++;
		return -1;
	}
	uint32_t pipeline = w->config->pipeline;
	slot->busy = false;
	c->busy_count--;
	w->in_flight--;
	if (slot->msgid <= UINT32_MAX - pipeline) {
		slot->msgid += pipeline;
		c->free[c->free_count++] = r->msgid % pipeline;
	} /* else the slot retires: its msgids are used up, after billions of requests */
	w->counts.answered++;
	w->counts.errors += r->error;
	w->counts.person_errors += r->person_error;
	if (now >= w->measure_from_ns && now < w->stop_ns) {
		hist_add(w->hist, now - slot->sent_ns);
	}
	return 0;
}

/* Takes every whole response held. Returns 0, or -1 when the stream is bad. */
static int conn_parse(struct worker *w, struct conn *c, uint64_t now)
{
	struct input *in = &c->in;
	while (in->start < in->end) {
		struct mp_reader r = {in->data + in->start, in->end - in->start, 0};
		struct response response;
		int rc = response_read(&r, &response, NULL);
		if (rc == MP_MORE) {
			return 0;
		}
		if (rc == MP_BAD) {
			fprintf(stderr, "load: malformed response\n");
			w->counts.malformed++;
			return -1;
		}
		in->start += r.at;
		if (conn_answer(w, c, &response, now) != 0) {
			return -1;
		}
	}
	return 0;
}

/* One read, its responses, and new requests for the slots they freed. A
 * short read drains the socket; with level-triggered epoll the rest waits. */
static void conn_read(struct worker *w, struct conn *c)
{
	if (!input_reserve(&c->in)) {
		fprintf(stderr, "load: response over %u bytes\n", RESPONSE_BYTES_MAX);
		w->counts.malformed++;
		conn_close(w, c);
		return;
	}
	ssize_t n = recv(c->fd, c->in.data + c->in.end, c->in.capacity - c->in.end, 0);
	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
		return;
	}
	if (n <= 0) {
		fprintf(stderr, "load: connection %s\n", n == 0 ? "closed by the server" : strerror(errno));
		w->counts.disconnects++;
		conn_close(w, c);
		return;
	}
	c->in.end += (size_t)n;
	uint64_t now = now_ns();
	if (conn_parse(w, c, now) != 0) {
		conn_close(w, c);
		return;
	}
	conn_fill(w, c, now);
	conn_flush(w, c);
}

static int conn_open(struct worker *w, struct conn *c)
{
	uint32_t pipeline = w->config->pipeline;
	*c = (struct conn){.fd = connect_to(&w->config->address)};
	if (c->fd < 0) {
		return -1;
	}
	int rc = fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	ASSERT(rc == 0);
	c->open = true;
	w->open_count++;
	c->slots = calloc(pipeline, sizeof c->slots[0]);
	c->free = calloc(pipeline, sizeof c->free[0]);
	c->out = malloc((size_t)pipeline * FRAME_BYTES_MAX);
	ASSERT(c->slots != NULL);
	ASSERT(c->free != NULL);
	ASSERT(c->out != NULL);
	for (uint32_t i = 0; i < pipeline; i++) {
		c->slots[i].msgid = i;
		c->free[i] = pipeline - 1 - i; /* slot 0 goes first */
	}
	c->free_count = pipeline;
	struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
	rc = epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, c->fd, &event);
	ASSERT(rc == 0);
	return 0;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[EPOLL_EVENTS_MAX];
	uint64_t now = now_ns();
	for (uint32_t i = 0; i < w->conn_count; i++) {
		conn_fill(w, &w->conns[i], now);
		conn_flush(w, &w->conns[i]);
	}
	for (;;) {
		now = now_ns();
		if ((now >= w->stop_ns && w->in_flight == 0) || w->open_count == 0) {
			break;
		}
		if (now >= w->stop_ns + DRAIN_NS) {
			fprintf(stderr, "load: %" PRIu32 " answers missing after the run\n", w->in_flight);
			for (uint32_t i = 0; i < w->conn_count; i++) {
				if (w->conns[i].open) {
					conn_close(w, &w->conns[i]);
				}
			}
			break;
		}
		uint64_t until = now < w->stop_ns ? w->stop_ns : w->stop_ns + DRAIN_NS;
		int timeout_ms = (int)((until - now) / 1000000u) + 1;
		int n = epoll_wait(w->epoll_fd, events, EPOLL_EVENTS_MAX, timeout_ms);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		ASSERT(n >= 0);
		for (int i = 0; i < n; i++) {
			struct conn *c = events[i].data.ptr;
			if (c->open && (events[i].events & EPOLLOUT) != 0) {
				conn_flush(w, c);
			}
			if (c->open && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
				conn_read(w, c);
			}
		}
	}
	return NULL;
}

/* ---- report ---- */

/* 1234567 as "1,234,567" */
static const char *with_commas(uint64_t value, char *out, size_t size)
{
	char digits[32];
	int count = snprintf(digits, sizeof digits, "%" PRIu64, value);
	size_t at = 0;
	for (int i = 0; i < count && at + 2 < size; i++) {
		if (i > 0 && (count - i) % 3 == 0) {
			out[at++] = ',';
		}
		out[at++] = digits[i];
	}
	out[at] = '\0';
	return out;
}

static void report(const struct config *config, const struct ids *ids, const struct hist *h,
		   const struct counts *k)
{
	double seconds = config->seconds;
	double rate = seconds > 0 ? (double)h->total / seconds : 0.0;
	double p50 = (double)hist_quantile_ns(h, 500000) / 1e3;
	double p99 = (double)hist_quantile_ns(h, 990000) / 1e3;
	double p999 = (double)hist_quantile_ns(h, 999000) / 1e3;
	double mean = h->total > 0 ? (double)h->sum_ns / (double)h->total / 1e3 : 0.0;
	const char *method = config->ping ? "ping" : "arrears.compute";
	printf("method=%s connections=%" PRIu32 " pipeline=%" PRIu32 " threads=%" PRIu32
	       " seconds=%.1f warmup=%.1f ids=%" PRIu32 " requests=%" PRIu64 " rps=%.0f"
	       " p50_us=%.1f p99_us=%.1f p999_us=%.1f mean_us=%.1f max_us=%.1f"
	       " sent=%" PRIu64 " answered=%" PRIu64 " errors=%" PRIu64 " person_errors=%" PRIu64
	       " malformed=%" PRIu64 " lost=%" PRIu64 " disconnects=%" PRIu64 "\n",
	       method, config->connections, config->pipeline, config->threads, seconds,
	       config->warmup_seconds, config->ping ? 0 : ids->count, h->total, rate, p50, p99,
	       p999, mean, (double)h->max_ns / 1e3, k->sent, k->answered, k->errors,
	       k->person_errors, k->malformed, k->lost, k->disconnects);
	char rate_text[32];
	printf("%s: %" PRIu32 " connection%s, pipeline %" PRIu32 ", %.1f s: %s req/s;"
	       " latency p50 %.1f us, p99 %.1f us, p99.9 %.1f us; %" PRIu64 " errors%s\n",
	       method, config->connections, config->connections == 1 ? "" : "s", config->pipeline,
	       seconds, with_commas((uint64_t)(rate + 0.5), rate_text, sizeof rate_text), p50, p99,
	       p999, k->errors + k->person_errors,
	       k->malformed + k->lost + k->disconnects > 0 ? " (and broken answers: see stderr)" : "");
}

static void counts_add(struct counts *into, const struct counts *from)
{
	into->sent += from->sent;
	into->answered += from->answered;
	into->errors += from->errors;
	into->person_errors += from->person_errors;
	into->malformed += from->malformed;
	into->lost += from->lost;
	into->disconnects += from->disconnects;
}

static void load_free(const struct config *config, struct worker *workers, struct conn *conns)
{
	for (uint32_t t = 0; t < config->threads; t++) {
		close(workers[t].epoll_fd);
		free(workers[t].hist);
	}
	for (uint32_t i = 0; i < config->connections; i++) {
		if (conns[i].open) {
			close(conns[i].fd);
		}
		free(conns[i].slots);
		free(conns[i].free);
		free(conns[i].out);
		free(conns[i].in.data);
	}
	free(conns);
}

/* Opens every connection, runs the workers over the same clock, merges. */
static int load_run(const struct config *config, const struct ids *ids, struct worker *workers,
		    struct hist *hist, struct counts *counts)
{
	struct conn *conns = calloc(config->connections, sizeof conns[0]);
	ASSERT(conns != NULL);
	uint32_t per = config->connections / config->threads;
	for (uint32_t t = 0; t < config->threads; t++) {
		struct worker *w = &workers[t];
		uint32_t first = t * per;
		*w = (struct worker){.config = config, .ids = ids, .conns = conns + first,
				     .conn_count = t + 1 == config->threads ? config->connections - first : per,
				     .epoll_fd = epoll_create1(EPOLL_CLOEXEC),
				     .id_next = ids->count > 0 ? first % ids->count : 0,
				     .hist = calloc(1, sizeof(struct hist))};
		ASSERT(w->epoll_fd >= 0);
		ASSERT(w->hist != NULL);
		for (uint32_t i = 0; i < w->conn_count; i++) {
			if (conn_open(w, &w->conns[i]) != 0) {
				return -1;
			}
		}
	}
	uint64_t start = now_ns();
	for (uint32_t t = 0; t < config->threads; t++) {
		workers[t].measure_from_ns = start + (uint64_t)(config->warmup_seconds * 1e9);
		workers[t].stop_ns = workers[t].measure_from_ns + (uint64_t)(config->seconds * 1e9);
		int rc = pthread_create(&workers[t].thread, NULL, worker_run, &workers[t]);
		ASSERT(rc == 0);
	}
	for (uint32_t t = 0; t < config->threads; t++) {
		int rc = pthread_join(workers[t].thread, NULL);
		ASSERT(rc == 0);
		hist_merge(hist, workers[t].hist);
		counts_add(counts, &workers[t].counts);
		ASSERT(workers[t].in_flight == 0);
	}
	load_free(config, workers, conns);
	return 0;
}

int main(int argc, char **argv)
{
	struct config config;
	config_parse(argc, argv, &config);
	signal(SIGPIPE, SIG_IGN);
	struct ids ids = {0};
	if (!config.ping) {
		ids.capacity = config.ids_wanted;
		ids.items = calloc(ids.capacity, sizeof ids.items[0]);
		ASSERT(ids.items != NULL);
		if (ids_fetch(&config, &ids) != 0) {
			return 1;
		}
		if (ids.skipped > 0) {
			fprintf(stderr, "load: %" PRIu32 " scanned persons left out: their results are errors\n",
				ids.skipped);
		}
	}
	struct worker workers[THREADS_MAX];
	struct hist *hist = calloc(1, sizeof *hist);
	struct counts counts = {0};
	ASSERT(hist != NULL);
	if (load_run(&config, &ids, workers, hist, &counts) != 0) {
		return 1;
	}
	report(&config, &ids, hist, &counts);
	fflush(stdout);
	free(hist);
	free(ids.items);
	bool broken = counts.malformed + counts.lost + counts.disconnects > 0;
	return broken || counts.errors + counts.person_errors > 0 ? 1 : 0;
}
