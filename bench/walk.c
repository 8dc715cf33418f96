/* build/walk: a whole city through arrearsd, the way a batch job walks it
 * (SPEC §5.1 scan), and the floor it is measured against.
 *
 *   build/walk --connect HOST:PORT --method M [--connections C] [--page L]
 *              [--as-of D] [--city C] [--pid PID] [--sum FIELD] [--prefix-digits N]
 *              [--expect N]
 *   build/walk --raw DIR      # an LMDB cursor over DIR's persons, every value's pages read
 *
 * The city is split by id prefix, as SPEC §5.1 lets parallel walkers: first
 * the prefixes of N digits that hold persons are found with one-person
 * probes (`scan` {after: the previous prefix + 1, limit: 1}), then they are
 * cut into C runs of adjacent prefixes, one a connection. Each connection
 * walks its run page by page (`scan` {after, limit: L}, one request in
 * flight), until a page ends or holds an id past the run: `scan` has no
 * upper bound, so a run's last page may compute persons of the next run;
 * those are counted apart (`beyond`), not as walked.
 *
 * Prints one line of key=value: persons walked, seconds, and with --pid the
 * server's CPU seconds (utime + stime of /proc/PID/stat over the walk), its
 * peak RssAnon (the heap, not the mapped store) and each thread's CPU
 * seconds. Exit status 0; 1 on an error answer (the response's own or a
 * person's), a malformed answer, a lost connection, or persons walked other
 * than --expect; 2 on bad usage.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <msgpack.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mp.h"

#define CONNECTIONS_MAX 64u            /* the machine has 2 cores */
#define PAGE_MAX 100000u               /* SPEC §5.1: scan.limit */
#define PREFIXES_MAX 100000u           /* occupied prefixes; more: use fewer digits */
#define PREFIX_DIGITS_MAX 17u          /* an id has 18 characters */
#define PREFIX_DIGITS_AUTO_MAX 12u     /* 12 digits: 110101 and a birth year and month */
#define PREFIXES_PER_CONNECTION 16u    /* runs of many prefixes come out near equal */
#define IN_BYTES_MAX (1u << 30)  /* the input buffer: an item of an answer and a read (answers are read as they come) */
#define READ_BYTES (256u << 10)        /* one read */
#define THREADS_MAX 256u               /* server threads reported */
#define SAMPLE_MS 50                   /* RssAnon is sampled this often */
#define TOUCH_STRIDE 4096u             /* the raw scan reads a byte of every page of a value */

struct config {
	const char *connect;
	const char *method;
	const char *raw_dir;
	const char *sum_key;
	uint32_t connections;
	uint32_t page;
	uint32_t as_of;
	uint32_t city;
	uint32_t prefix_digits; /* 0: the fewest that give PREFIXES_PER_CONNECTION a connection */
	int pid;
	int64_t expect; /* -1: not checked */
};

static void die(const char *what)
{
	fprintf(stderr, "walk: %s\n", what);
	exit(1);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- the floor: LMDB's cursor over the persons ---- */

static int raw_scan(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *cursor;
	if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 8) != 0 ||
	    mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0644) != 0) {
		die("raw: cannot open the store");
	}
	double start = now_s();
	if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0 || mdb_dbi_open(txn, "persons", 0, &dbi) != 0 ||
	    mdb_cursor_open(txn, dbi, &cursor) != 0) {
		die("raw: no persons database");
	}
	MDB_val key, value;
	uint64_t persons = 0, bytes = 0, touched = 0;
	for (int rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
		const volatile uint8_t *p = value.mv_data;
		for (size_t at = 0; at < value.mv_size; at += TOUCH_STRIDE) {
			touched += p[at];
		}
		if (value.mv_size > 0) {
			touched += p[value.mv_size - 1];
		}
		persons++;
		bytes += key.mv_size + value.mv_size;
	}
	mdb_cursor_close(cursor);
	mdb_txn_abort(txn);
	double seconds = now_s() - start;
	mdb_env_close(env);
	printf("method=raw persons=%" PRIu64 " bytes=%" PRIu64 " touched=%" PRIu64 " seconds=%.4f\n", persons, bytes,
	       touched, seconds);
	return 0;
}

/* ---- the server process: CPU and memory from /proc ---- */

/* utime + stime in seconds of /proc/PID[/task/TID]/stat; -1 when unreadable. */
static double proc_cpu_s(const char *path)
{
	char text[1024];
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		return -1;
	}
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = 0;
	const char *p = strrchr(text, ')'); /* comm may hold spaces */
	unsigned long utime, stime;
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) {
		return -1;
	}
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static long proc_rss_anon_kb(int pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "RssAnon: %ld", &kb) == 1) {
			break;
		}
	}
	if (f != NULL) {
		fclose(f);
	}
	return kb;
}

struct threads {
	uint32_t count;
	int tid[THREADS_MAX];
	char name[THREADS_MAX][16]; /* comm: the server names its threads */
	double cpu_s[THREADS_MAX];
};

static void threads_read(int pid, struct threads *t)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	DIR *dir = opendir(path);
	t->count = 0;
	for (struct dirent *e; dir != NULL && t->count < THREADS_MAX && (e = readdir(dir)) != NULL;) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9') {
			continue;
		}
		char stat[300];
		snprintf(stat, sizeof(stat), "/proc/%d/task/%s/stat", pid, e->d_name);
		t->tid[t->count] = atoi(e->d_name);
		snprintf(stat, sizeof(stat), "/proc/%d/task/%s/comm", pid, e->d_name);
		FILE *f = fopen(stat, "r");
		if (f == NULL || fscanf(f, "%15s", t->name[t->count]) != 1) {
			snprintf(t->name[t->count], sizeof(t->name[0]), "?");
		}
		if (f != NULL) {
			fclose(f);
		}
		snprintf(stat, sizeof(stat), "/proc/%d/task/%s/stat", pid, e->d_name);
		t->cpu_s[t->count++] = proc_cpu_s(stat);
	}
	if (dir != NULL) {
		closedir(dir);
	}
}

/* ---- requests: msgpack-c ---- */

/* [0, msgid, method, [{as_of, scan: {after, limit}, city?}]]; after NULL: nil. */
static void request_pack(msgpack_sbuffer *b, const struct config *c, uint32_t msgid, const char *method,
			 const char *after, size_t after_size, uint32_t limit)
{
	msgpack_packer pk;
	msgpack_sbuffer_clear(b);
	msgpack_packer_init(&pk, b, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_uint32(&pk, msgid);
	msgpack_pack_str_with_body(&pk, method, strlen(method));
	msgpack_pack_array(&pk, 1);
	bool housing = strcmp(method, "housing.check") == 0;
	msgpack_pack_map(&pk, housing ? 3 : 2);
	msgpack_pack_str_with_body(&pk, "as_of", 5);
	msgpack_pack_uint32(&pk, c->as_of);
	if (housing) {
		char city[16];
		int n = snprintf(city, sizeof(city), "%06u", c->city);
		msgpack_pack_str_with_body(&pk, "city", 4);
		msgpack_pack_str_with_body(&pk, city, (size_t)n);
	}
	msgpack_pack_str_with_body(&pk, "scan", 4);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "after", 5);
	if (after == NULL) {
		msgpack_pack_nil(&pk);
	} else {
		msgpack_pack_str_with_body(&pk, after, after_size);
	}
	msgpack_pack_str_with_body(&pk, "limit", 5);
	msgpack_pack_uint32(&pk, limit);
}

/* ---- a connection ---- */

struct conn {
	int fd;
	uint8_t *in;
	size_t in_size;
	size_t in_capacity;
	/* The answer read as it arrives, each item once: in[read_at..] is
	 * what the stream has not read yet (an item cut by the last read). */
	size_t read_at;
	struct response_stream stream;
	struct ids sink;
	/* Its run of prefixes: from after `first`, up to and including `last` (NULL: the city's end). */
	char after[ID_BYTES_MAX + 1];
	size_t after_size;
	bool started;
	const char *last;
	bool done;
	uint32_t msgid;
};

static int conn_open(const char *connect_to)
{
	char host[256];
	const char *colon = strrchr(connect_to, ':');
	if (colon == NULL || (size_t)(colon - connect_to) >= sizeof(host)) {
		die("--connect wants HOST:PORT");
	}
	memcpy(host, connect_to, (size_t)(colon - connect_to));
	host[colon - connect_to] = 0;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
		die("cannot resolve --connect");
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		die("cannot connect");
	}
	freeaddrinfo(ai);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void conn_send(struct conn *k, const msgpack_sbuffer *b)
{
	for (size_t at = 0; at < b->size;) {
		ssize_t n = send(k->fd, b->data + at, b->size - at, MSG_NOSIGNAL);
		if (n <= 0) {
			die("send failed: the server closed the connection");
		}
		at += (size_t)n;
	}
}

/* Reads one answer into sink from here on (one request is in flight). */
static void conn_expect(struct conn *k, const struct ids *sink)
{
	k->sink = *sink;
	k->stream = (struct response_stream){ .sink = &k->sink };
	k->in_size = k->read_at = 0;
}

/* One read; true when the answer is whole. Bytes already read make room
 * for more: the buffer holds an item, not the answer. */
static bool conn_read(struct conn *k)
{
	if (k->in_capacity - k->in_size < READ_BYTES && k->read_at > 0) {
		memmove(k->in, k->in + k->read_at, k->in_size - k->read_at);
		k->in_size -= k->read_at;
		k->read_at = 0;
	}
	if (k->in_capacity - k->in_size < READ_BYTES) {
		size_t capacity = k->in_capacity == 0 ? 4 * READ_BYTES : k->in_capacity * 2;
		if (capacity > IN_BYTES_MAX || (k->in = realloc(k->in, capacity)) == NULL) {
			die("an item of an answer over IN_BYTES_MAX");
		}
		k->in_capacity = capacity;
	}
	ssize_t n = recv(k->fd, k->in + k->in_size, k->in_capacity - k->in_size, 0);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		die("the server closed a connection mid-answer");
	}
	k->in_size += n > 0 ? (size_t)n : 0;
	struct mp_reader r = { k->in, k->in_size, k->read_at };
	int rc = response_stream_read(&r, &k->stream);
	k->read_at = r.at;
	if (rc == MP_BAD || (rc == MP_OK && r.at != k->in_size)) {
		die("a malformed answer (or bytes after it: one request is in flight)");
	}
	return rc == MP_OK;
}

/* ---- the walk ---- */

/* The first person after `after` (NULL: the first of all), by a one-person page. */
static bool probe(int fd, const struct config *c, const char *after, size_t after_size, struct id *first)
{
	msgpack_sbuffer b;
	msgpack_sbuffer_init(&b);
	struct conn k = { .fd = fd };
	struct id slot;
	conn_expect(&k, &(struct ids){ .items = &slot, .capacity = 1 });
	request_pack(&b, c, 1, c->method, after, after_size, 1);
	conn_send(&k, &b);
	msgpack_sbuffer_destroy(&b);
	while (!conn_read(&k)) {
	}
	free(k.in);
	struct ids sink = k.sink;
	if (k.stream.out.error) {
		die("a probe's answer is an error");
	}
	if (sink.entries == 0) {
		return false;
	}
	if (sink.count == 0) {
		die("a probe's person carries an error");
	}
	*first = slot;
	return true;
}

/* The occupied id prefixes of `digits` characters, ascending. */
static uint32_t prefixes_find(const struct config *c, char (*prefixes)[PREFIX_DIGITS_MAX + 1])
{
	int fd = conn_open(c->connect);
	uint32_t count = 0;
	char after[PREFIX_DIGITS_MAX + 1];
	bool from_start = true;
	struct id first;
	while (probe(fd, c, from_start ? NULL : after, c->prefix_digits, &first)) {
		if (count == PREFIXES_MAX || first.size <= c->prefix_digits) {
			die("too many prefixes (or ids too short): use fewer --prefix-digits");
		}
		memcpy(prefixes[count], first.bytes, c->prefix_digits);
		prefixes[count][c->prefix_digits] = 0;
		/* after = the prefix + 1: every id beginning with the prefix sorts before it. */
		memcpy(after, prefixes[count], c->prefix_digits + 1);
		count++;
		int i = (int)c->prefix_digits - 1;
		while (i >= 0 && after[i] == '9') {
			after[i--] = '0';
		}
		if (i < 0 || after[i] < '0' || after[i] > '8') {
			break; /* all nines, or not a digit: nothing sorts after it that we can name */
		}
		after[i]++;
		from_start = false;
	}
	close(fd);
	return count;
}

struct totals {
	uint64_t persons;
	uint64_t beyond;
	uint64_t pages;
	int64_t sum;
};

/* The answer k holds: counted, and the next page asked for, or the run done. */
static void page_done(struct conn *k, const struct config *c, msgpack_sbuffer *b, struct totals *t)
{
	struct ids sink = k->sink;
	struct response resp = k->stream.out;
	if (resp.error || resp.msgid != k->msgid) {
		fprintf(stderr, "walk: an error answer to %s (msgid %u): %.*s\n", c->method, resp.msgid,
			(int)(k->in_size < 300 ? k->in_size : 300), (const char *)k->in);
		exit(1);
	}
	if (resp.person_error) {
		fprintf(stderr, "walk: %u persons answered with an error (%s, page after %.*s)\n", sink.skipped,
			c->method, (int)k->after_size, k->after);
		exit(1);
	}
	t->persons += sink.entries;
	t->beyond += sink.beyond;
	t->sum += sink.sum;
	t->pages++;
	if (!sink.has_next || sink.beyond > 0) {
		k->done = true;
		return;
	}
	memcpy(k->after, sink.next.bytes, sink.next.size);
	k->after_size = sink.next.size;
	conn_expect(k, &(struct ids){ .sum_key = c->sum_key, .last_prefix = k->last,
				      .last_prefix_size = k->last != NULL ? c->prefix_digits : 0 });
	request_pack(b, c, ++k->msgid, c->method, k->after, k->after_size, c->page);
	conn_send(k, b);
}

static int walk(const struct config *given)
{
	char(*prefixes)[PREFIX_DIGITS_MAX + 1] = malloc(sizeof(*prefixes) * PREFIXES_MAX);
	if (prefixes == NULL) {
		die("out of memory");
	}
	/* Prefixes long enough that runs of them split the city evenly:
	 * PREFIXES_PER_CONNECTION a connection, or the most some length gives. */
	struct config probing = *given;
	uint32_t prefix_count = 0;
	for (probing.prefix_digits = given->prefix_digits > 0 ? given->prefix_digits : 1;; probing.prefix_digits++) {
		prefix_count = prefixes_find(&probing, prefixes);
		if (given->prefix_digits > 0 || prefix_count >= PREFIXES_PER_CONNECTION * given->connections ||
		    probing.prefix_digits == PREFIX_DIGITS_AUTO_MAX) {
			break;
		}
	}

	const struct config *c = &probing;
	uint32_t conn_count = c->connections < prefix_count ? c->connections : prefix_count;
	struct conn conns[CONNECTIONS_MAX] = { 0 };
	struct threads before, after;
	double cpu_before = 0;
	if (c->pid > 0) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/stat", c->pid);
		threads_read(c->pid, &before);
		cpu_before = proc_cpu_s(path);
	}
	struct rusage ru0;
	getrusage(RUSAGE_SELF, &ru0);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	msgpack_sbuffer b;
	msgpack_sbuffer_init(&b);
	double start = now_s();
	for (uint32_t i = 0; i < conn_count; i++) {
		struct conn *k = &conns[i];
		/* Runs of adjacent prefixes, as equal in number as they divide. */
		uint32_t from = (uint32_t)((uint64_t)prefix_count * i / conn_count);
		uint32_t to = (uint32_t)((uint64_t)prefix_count * (i + 1) / conn_count);
		*k = (struct conn){ .fd = conn_open(c->connect), .msgid = 1,
				    .last = i + 1 < conn_count ? prefixes[to - 1] : NULL };
		conn_expect(k, &(struct ids){ .sum_key = c->sum_key, .last_prefix = k->last,
					      .last_prefix_size = k->last != NULL ? c->prefix_digits : 0 });
		k->after_size = i == 0 ? 0 : c->prefix_digits;
		memcpy(k->after, prefixes[from], k->after_size);
		request_pack(&b, c, k->msgid, c->method, i == 0 ? NULL : k->after, k->after_size, c->page);
		conn_send(k, &b);
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
		epoll_ctl(ep, EPOLL_CTL_ADD, k->fd, &ev);
	}
	struct totals t = { 0 };
	long rss_peak_kb = -1;
	double sampled = 0;
	for (uint32_t open = conn_count; open > 0;) {
		struct epoll_event events[CONNECTIONS_MAX];
		int n = epoll_wait(ep, events, CONNECTIONS_MAX, SAMPLE_MS);
		for (int e = 0; e < n; e++) {
			struct conn *k = &conns[events[e].data.u32];
			if (conn_read(k)) {
				page_done(k, c, &b, &t);
				open -= k->done;
			}
		}
		if (c->pid > 0 && now_s() - sampled > SAMPLE_MS / 1000.0) {
			long kb = proc_rss_anon_kb(c->pid);
			rss_peak_kb = kb > rss_peak_kb ? kb : rss_peak_kb;
			sampled = now_s();
		}
	}
	double seconds = now_s() - start;
	struct rusage ru1;
	getrusage(RUSAGE_SELF, &ru1);
	double client_cpu_s = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
				       ru0.ru_stime.tv_sec) +
			      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
				       ru0.ru_stime.tv_usec) / 1e6;
	printf("method=%s persons=%" PRIu64 " beyond=%" PRIu64 " pages=%" PRIu64 " prefixes=%u prefix_digits=%u connections=%u "
	       "seconds=%.3f client_cpu_s=%.2f",
	       c->method, t.persons, t.beyond, t.pages, prefix_count, c->prefix_digits, conn_count, seconds, client_cpu_s);
	if (c->sum_key != NULL) {
		printf(" sum=%" PRId64, t.sum);
	}
	if (c->pid > 0) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/stat", c->pid);
		double cpu = proc_cpu_s(path) - cpu_before;
		threads_read(c->pid, &after);
		printf(" server_cpu_s=%.2f server_rss_anon_kb=%ld threads=", cpu, rss_peak_kb);
		for (uint32_t i = 0; i < after.count; i++) {
			double was = 0;
			for (uint32_t j = 0; j < before.count; j++) {
				was = before.tid[j] == after.tid[i] ? before.cpu_s[j] : was;
			}
			printf("%s%s/%d:%.2f", i > 0 ? "," : "", after.name[i], after.tid[i], after.cpu_s[i] - was);
		}
	}
	printf("\n");
	for (uint32_t i = 0; i < conn_count; i++) {
		close(conns[i].fd);
		free(conns[i].in);
	}
	msgpack_sbuffer_destroy(&b);
	close(ep);
	free(prefixes);
	if (c->expect >= 0 && (int64_t)t.persons != c->expect) {
		fprintf(stderr, "walk: %" PRIu64 " persons walked, %" PRId64 " expected\n", t.persons, c->expect);
		return 1;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: walk --connect HOST:PORT --method M [--connections C] [--page L] [--as-of D]\n"
			"            [--city C] [--pid PID] [--sum FIELD] [--prefix-digits N] [--expect N]\n"
			"       walk --raw DIR\n");
	exit(2);
}

static uint32_t number(const char *text, uint32_t min, uint32_t max)
{
	char *end;
	unsigned long v = strtoul(text, &end, 10);
	if (*text == 0 || *end != 0 || v < min || v > max) {
		usage();
	}
	return (uint32_t)v;
}

int main(int argc, char **argv)
{
	struct config c = { .method = "arrears.compute", .connections = 4, .page = 10000, .as_of = 20251110,
			    .city = 110000, .expect = -1 };
	for (int i = 1; i < argc; i += 2) {
		const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
		if (value == NULL) {
			usage();
		} else if (strcmp(flag, "--connect") == 0) {
			c.connect = value;
		} else if (strcmp(flag, "--method") == 0) {
			c.method = value;
		} else if (strcmp(flag, "--raw") == 0) {
			c.raw_dir = value;
		} else if (strcmp(flag, "--sum") == 0) {
			c.sum_key = value;
		} else if (strcmp(flag, "--connections") == 0) {
			c.connections = number(value, 1, CONNECTIONS_MAX);
		} else if (strcmp(flag, "--page") == 0) {
			c.page = number(value, 1, PAGE_MAX);
		} else if (strcmp(flag, "--as-of") == 0) {
			c.as_of = number(value, 19000101, 99991231);
		} else if (strcmp(flag, "--city") == 0) {
			c.city = number(value, 100000, 999999);
		} else if (strcmp(flag, "--prefix-digits") == 0) {
			c.prefix_digits = number(value, 1, PREFIX_DIGITS_MAX);
		} else if (strcmp(flag, "--pid") == 0) {
			c.pid = (int)number(value, 1, INT32_MAX);
		} else if (strcmp(flag, "--expect") == 0) {
			c.expect = number(value, 0, UINT32_MAX);
		} else {
			usage();
		}
	}
	if (c.raw_dir != NULL) {
		return raw_scan(c.raw_dir);
	}
	if (c.connect == NULL) {
		usage();
	}
	return walk(&c);
}
