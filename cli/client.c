/* arrears call / arrears show: a terminal client of arrearsd.
 *
 * Requests are built from JSON by proto_json_frame and answers turned back
 * into JSON by proto_response_json, so msgpack stays inside proto/; `show`
 * reads those answers with jansson. The grid's cell states come from the
 * person's stored slots and the policies of their cities, through the core's
 * own R2 (core_slot_due) and R3 (the policy's deadline table), with the
 * expiry of arrears slots (R5) taken from arrears.compute's detail items. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../proto/proto.h"
#include "client.h"
#include "flags.h"

#define CLIENT_RESPONSE_BYTES_MAX (64u << 20) /* one answer; larger: refused (at once when its header says so) */
#define CLIENT_TIMEOUT_S 30                   /* per connect, send and receive: a server that stopped answering */
#define CLIENT_READ_CHUNK_BYTES (64u << 10)
#define CLIENT_TOKEN_BYTES_MAX 4096u          /* a token file holds a secret, not a document */
#define CLIENT_STDIN_BYTES_MAX (64u << 20)    /* JSON params from stdin: far above what a server takes */
#define CLIENT_HOST_SIZE 256u                 /* a DNS name is at most 253 characters */
#define SHOW_CITIES_MAX 64u                   /* cities on one grid, a policy.get each; more: refused */
#define SHOW_MISSING_SHOWN 12u                /* housing months listed before "and N more" */
#define SHOW_TYPE_WIDTH 12                    /* "unemployment" */

_Static_assert(CLIENT_RESPONSE_BYTES_MAX >= PROTO_REQUEST_BYTES_MAX, "an answer may echo a whole request");

/* ---- one connection ---- */

struct client_conn {
	int fd;
	uint32_t msgid; /* of the last request sent */
	uint8_t *buf;   /* received bytes: [start, end) not yet handed out */
	size_t start;
	size_t end;
	size_t capacity;
	struct proto_frame frame; /* scan state of the answer being received */
};

/* "host:port" or "[v6]:port" into its parts; false when it is neither. */
static bool target_split(const char *target, char *host, size_t host_size, const char **port)
{
	const char *colon = strrchr(target, ':');
	if (colon == NULL || colon[1] == '\0') {
		return false;
	}
	const char *h = target;
	size_t h_size = (size_t)(colon - target);
	if (h_size >= 2 && h[0] == '[' && h[h_size - 1] == ']') {
		h++;
		h_size -= 2;
	}
	if (h_size == 0 || h_size >= host_size) {
		return false;
	}
	memcpy(host, h, h_size);
	host[h_size] = '\0';
	*port = colon + 1;
	return true;
}

/* A connected socket with the timeouts set, or -1 with *err the errno. */
static int socket_connect(const struct addrinfo *ai, int *err)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		*err = errno;
		return -1;
	}
	/* SO_SNDTIMEO also bounds connect() on Linux (EINPROGRESS when it runs out). */
	struct timeval tv = { .tv_sec = CLIENT_TIMEOUT_S };
	int one = 1; /* a request is one write: nothing to gain from Nagle's delay */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
	    connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		*err = errno;
		close(fd);
		return -1;
	}
	return fd;
}

static const char *errno_text(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINPROGRESS ? "timed out" : strerror(err);
}

/* Returns 0, 1 when the server cannot be reached, 2 for a malformed target. */
static int conn_open(struct client_conn *c, const char *target)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	proto_frame_reset(&c->frame);
	char host[CLIENT_HOST_SIZE];
	const char *port;
	if (!target_split(target, host, sizeof(host), &port)) {
		fprintf(stderr, "arrears: --connect wants HOST:PORT, not '%s'\n", target);
		return 2;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "arrears: %s: %s\n", target, gai_strerror(rc));
		return 1;
	}
	int err = 0;
	for (const struct addrinfo *ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next) {
		c->fd = socket_connect(ai, &err);
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		fprintf(stderr, "arrears: cannot connect to %s: %s\n", target, errno_text(err));
		return 1;
	}
	return 0;
}

static void conn_close(struct client_conn *c)
{
	if (c->fd >= 0) {
		close(c->fd);
	}
	free(c->buf);
	c->fd = -1;
	c->buf = NULL;
}

static int conn_send(struct client_conn *c, const uint8_t *p, size_t size)
{
	while (size > 0) {
		/* MSG_NOSIGNAL: a server that hung up is an error to report, not SIGPIPE. */
		ssize_t n = send(c->fd, p, size, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			fprintf(stderr, "arrears: send: %s\n", errno_text(errno));
			return 1;
		}
		p += n;
		size -= (size_t)n;
	}
	return 0;
}

/* Room for one more receive, dropping bytes already handed out first. */
static bool conn_reserve(struct client_conn *c)
{
	if (c->start > 0) {
		memmove(c->buf, c->buf + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
	if (c->capacity - c->end >= CLIENT_READ_CHUNK_BYTES) {
		return true;
	}
	size_t capacity = c->capacity == 0 ? 4 * CLIENT_READ_CHUNK_BYTES : 2 * c->capacity;
	uint8_t *buf = realloc(c->buf, capacity);
	if (buf == NULL) {
		return false;
	}
	c->buf = buf;
	c->capacity = capacity;
	return true;
}

/* Receives until one whole answer is held; *frame borrows c until the next call. */
static int conn_recv(struct client_conn *c, const uint8_t **frame, size_t *frame_size)
{
	while (true) {
		int rc = proto_frame_scan(&c->frame, c->buf + c->start, c->end - c->start, CLIENT_RESPONSE_BYTES_MAX,
					  frame_size);
		if (rc == PROTO_FRAME_COMPLETE) {
			*frame = c->buf + c->start;
			c->start += *frame_size;
			proto_frame_reset(&c->frame);
			return 0;
		}
		if (rc != PROTO_FRAME_MORE) {
			fprintf(stderr, "arrears: the answer is %s\n",
				rc == PROTO_FRAME_TOO_LARGE ? "over the 64 MiB limit: refused"
							      : "not msgpack, or nested too deep");
			return 1;
		}
		if (!conn_reserve(c)) {
			fprintf(stderr, "arrears: out of memory\n");
			return 1;
		}
		ssize_t n = recv(c->fd, c->buf + c->end, c->capacity - c->end, 0);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			fprintf(stderr, "arrears: receive: %s\n", n == 0 ? "the server closed the connection" : errno_text(errno));
			return 1;
		}
		c->end += (size_t)n;
	}
}

/* One request answered: *answer (malloc'd JSON text) holds the result or,
 * with *is_error, the error map. Returns 0; 1 after saying on stderr what
 * failed; 2 when params_json is not a JSON object. */
static int conn_call(struct client_conn *c, const char *method, const char *params_json, char **answer,
		     bool *is_error)
{
	uint8_t *frame;
	size_t frame_size;
	char errbuf[256];
	*answer = NULL;
	if (proto_json_frame(method, ++c->msgid, NULL, params_json, &frame, &frame_size, errbuf, sizeof(errbuf)) !=
	    PROTO_OK) {
		fprintf(stderr, "arrears: params: %s\n", errbuf);
		return 2;
	}
	int status = conn_send(c, frame, frame_size);
	free(frame);
	const uint8_t *response;
	size_t response_size;
	if (status == 0) {
		status = conn_recv(c, &response, &response_size);
	}
	if (status == 0) {
		int rc = proto_response_json(response, response_size, answer, is_error);
		if (rc != PROTO_OK) {
			fprintf(stderr, "arrears: %s: the answer has no JSON form (%s)\n", method, proto_error_name(rc));
			status = 1;
		}
	}
	return status;
}

/* conn_call with params built by jansson (stolen). */
static int conn_call_json(struct client_conn *c, const char *method, json_t *params, char **answer, bool *is_error)
{
	char *text = params != NULL ? json_dumps(params, JSON_COMPACT) : NULL;
	json_decref(params);
	if (text == NULL) {
		fprintf(stderr, "arrears: %s: params do not form JSON (not UTF-8, or out of memory)\n", method);
		return 1;
	}
	int status = conn_call(c, method, text, answer, is_error);
	free(text);
	return status;
}

/* ---- arguments shared by both commands ---- */

struct client_options {
	const char *connect;
	const char *token_file;
};

/* Consumes a shared option at argv[*i]; false when argv[*i] is not one. A
 * shared option without its value leaves *i past the end: bad usage. */
static bool option_shared(int argc, char **argv, int *i, struct client_options *o)
{
	const char **value = strcmp(argv[*i], "--connect") == 0      ? &o->connect
			     : strcmp(argv[*i], "--token-file") == 0 ? &o->token_file
								     : NULL;
	if (value == NULL) {
		return false;
	}
	*i += 1;
	*value = *i < argc ? argv[*i] : NULL;
	return true;
}

static const char *connect_target(const struct client_options *o)
{
	const char *env = getenv("ARREARS_CONNECT");
	return o->connect != NULL ? o->connect : env != NULL && env[0] != '\0' ? env : CLIENT_CONNECT_DEFAULT;
}

/* Reads at most max bytes of fd into a terminated malloc'd string; NULL
 * (said on stderr) on error or when there is more. */
static char *read_bounded(int fd, size_t max, const char *what)
{
	char *text = malloc(max + 1);
	size_t size = 0;
	while (text != NULL && size <= max) {
		ssize_t n = read(fd, text + size, max + 1 - size);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			if (n == 0) {
				text[size] = '\0';
				return text;
			}
			fprintf(stderr, "arrears: %s: %s\n", what, strerror(errno));
			free(text);
			return NULL;
		}
		size += (size_t)n;
	}
	fprintf(stderr, "arrears: %s: %s\n", what, text == NULL ? "out of memory" : "too long");
	free(text);
	return NULL;
}

/* The token is the file's first line, as arrearsd reads its own --token-file. */
static char *token_read(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "arrears: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	char *token = read_bounded(fd, CLIENT_TOKEN_BYTES_MAX, path);
	close(fd);
	if (token == NULL) {
		return NULL;
	}
	token[strcspn(token, "\r\n")] = '\0';
	if (token[0] == '\0') {
		fprintf(stderr, "arrears: %s: no token in its first line\n", path);
		free(token);
		return NULL;
	}
	return token;
}

/* Opens the connection and sends auth when a token file is given. The
 * server's refusal is printed as JSON on stderr. Returns 0, 1, or 2. */
static int client_connect(struct client_conn *c, const struct client_options *o)
{
	int status = conn_open(c, connect_target(o));
	if (status != 0 || o->token_file == NULL) {
		return status;
	}
	char *token = token_read(o->token_file);
	if (token == NULL) {
		return 1;
	}
	char *answer;
	bool is_error;
	status = conn_call_json(c, "auth", json_pack("{s:s}", "token", token), &answer, &is_error);
	free(token);
	if (status == 0 && is_error) {
		fprintf(stderr, "%s\n", answer);
		status = 1;
	}
	free(answer);
	return status;
}

/* ---- arrears call ---- */

static int call_usage(FILE *out)
{
	fprintf(out, "usage: arrears call [--connect HOST:PORT] [--token-file FILE] METHOD ['{json params}' | -]\n"
		     "  default HOST:PORT: $ARREARS_CONNECT, else " CLIENT_CONNECT_DEFAULT "\n");
	return out == stdout ? 0 : 2;
}

int client_call_command(int argc, char **argv)
{
	struct client_options o = { 0 };
	const char *positional[2] = { NULL, NULL };
	int positional_count = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			return call_usage(stdout);
		}
		if (option_shared(argc, argv, &i, &o)) {
			if (i == argc) {
				return flag_missing_value("arrears call", argv[i - 1]);
			}
		} else if (positional_count < 2 && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
			positional[positional_count++] = argv[i];
		} else {
			return flag_unknown("arrears call", argv[i]);
		}
	}
	if (positional_count == 0) {
		fprintf(stderr, "arrears call: which METHOD? (arrears call --help)\n");
		return 2;
	}
	const char *params = positional[1] != NULL ? positional[1] : "{}";
	char *from_stdin = NULL;
	if (strcmp(params, "-") == 0 &&
	    (params = from_stdin = read_bounded(STDIN_FILENO, CLIENT_STDIN_BYTES_MAX, "stdin")) == NULL) {
		return 1;
	}
	struct client_conn c;
	char *answer = NULL;
	bool is_error = false;
	int status = client_connect(&c, &o);
	if (status == 0) {
		status = conn_call(&c, positional[0], params, &answer, &is_error);
	}
	if (status == 0) {
		FILE *out = is_error ? stderr : stdout;
		bool printed = fprintf(out, "%s\n", answer) >= 0 && fflush(out) == 0;
		status = is_error || !printed ? 1 : 0;
	}
	free(answer);
	free(from_stdin);
	conn_close(&c);
	return status;
}

/* ---- arrears show: the cell states ---- */

enum cell {
	CELL_ON_TIME,
	CELL_BACKPAID,
	CELL_ARREARS,
	CELL_PENDING,
	CELL_EXPIRED,
	CELL_DEEMED,
	CELL_NONE,   /* no slot: not enrolled */
	CELL_FUTURE, /* after month(D) */
	CELL_ZERO,   /* a slot with due 0 (a zero rate): never owed, not counted (R8) */
	CELL_NO_PERIOD, /* a month before its city's first period: the server refuses the person (R1) */
	CELL_COUNT
};

static const struct {
	char letter;     /* without colour */
	const char *sgr; /* ANSI colours with colour: foreground;background */
	const char *name;
} cell_style[CELL_COUNT] = {
	[CELL_ON_TIME] = { '#', "30;42", "paid on time" },
	[CELL_BACKPAID] = { 'b', "30;46", "back-paid" },
	[CELL_ARREARS] = { 'A', "97;41", "in arrears" },
	[CELL_PENDING] = { 'p', "30;43", "pending" },
	[CELL_EXPIRED] = { 'x', "97;45", "expired" },
	[CELL_DEEMED] = { 'd', "97;44", "deemed" },
	[CELL_NONE] = { '.', "37;100", "not enrolled" },
	[CELL_FUTURE] = { ' ', "0", "future" },
	[CELL_ZERO] = { '-', "30;47", "nothing due" },
	[CELL_NO_PERIOD] = { '?', "97;101", "no policy period" },
};
#define CELL_LEGEND_ALWAYS CELL_ZERO /* cells before it are always in the legend, the rest when seen */

/* An arrears slot of the detail items: (month, city, type) and its expiry. */
struct show_item {
	uint64_t key;
	bool expired;
};

struct show {
	struct client_conn conn;
	struct core_as_of as_of;
	bool color;
	bool answered_error; /* some part of the summary is an error */
	char id[CORE_ID_SIZE + 1];
	struct core_slot *slots;
	uint32_t slot_count;
	uint32_t cities[SHOW_CITIES_MAX]; /* ascending */
	uint32_t city_count;
	struct core_policy *policies[SHOW_CITIES_MAX]; /* of cities[i] */
	struct show_item *items;                       /* sorted by key */
	uint32_t item_count;
	uint32_t housing_city;
	bool housing_given; /* housing_city holds a city */
	json_t *arrears;    /* the person's entry, or {error} (see show_compute) */
	json_t *years;
	json_t *retirement;
	json_t *medical;
	json_t *housing;
};

static uint64_t slot_key(int32_t month, uint32_t city, uint8_t type)
{
	return (uint64_t)(uint32_t)month << 32 | (uint64_t)city << 3 | type;
}

static int item_compare(const void *a, const void *b)
{
	uint64_t x = ((const struct show_item *)a)->key;
	uint64_t y = ((const struct show_item *)b)->key;
	return x < y ? -1 : x > y;
}

/* R5 as the server decided it, or by the rule itself when arrears.compute
 * answered an error and sent no items. */
static bool slot_expired(const struct show *s, const struct core_slot *slot, const struct core_policy *p)
{
	struct show_item key = { slot_key(slot->month, slot->city, slot->type), false };
	const struct show_item *it = bsearch(&key, s->items, s->item_count, sizeof(key), item_compare);
	if (it != NULL) {
		return it->expired;
	}
	uint32_t window = p->backpay_flexible_window_months;
	return slot->category == CORE_FLEXIBLE && window > 0 && s->as_of.month - slot->month > (int32_t)window;
}

/* The state of one slot as of D (R2–R5, R8). */
static uint8_t slot_cell(const struct show *s, const struct core_slot *slot, const struct core_policy *p)
{
	if (slot->month > s->as_of.month) {
		return CELL_FUTURE;
	}
	if (slot->deemed) {
		return CELL_DEEMED;
	}
	uint32_t m = (uint32_t)(slot->month - CORE_MONTH_FIRST);
	if (p->period_of[m] < 0) {
		return CELL_NO_PERIOD; /* core_slot_due needs a period */
	}
	struct core_due due = core_slot_due(p, slot);
	int64_t due_fen = due.employer_fen + due.individual_fen;
	int64_t paid_fen = slot->paid_date > s->as_of.date ? 0 : slot->paid_fen; /* the as-of view */
	int32_t deadline = p->deadline_date[m];
	if (due_fen == 0) {
		return CELL_ZERO;
	}
	if (paid_fen >= due_fen) {
		return slot->paid_date <= deadline ? CELL_ON_TIME : CELL_BACKPAID;
	}
	if (s->as_of.date <= deadline) {
		return CELL_PENDING;
	}
	return slot_expired(s, slot, p) ? CELL_EXPIRED : CELL_ARREARS;
}

/* ---- arrears show: reading answers ---- */

static bool json_int_in(const json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *v)
{
	const json_t *j = json_object_get(o, key);
	*v = json_is_integer(j) ? json_integer_value(j) : lo - 1;
	return json_is_integer(j) && *v >= lo && *v <= hi;
}

/* A 6-digit city string as its number; false when it is not one. */
static bool city_parse(const char *s, uint32_t *city)
{
	if (s == NULL || strlen(s) != 6 || strspn(s, "0123456789") != 6) {
		return false;
	}
	*city = (uint32_t)strtoul(s, NULL, 10);
	return true;
}

static int name_parse(const json_t *o, const char *key, const char *const *names, uint32_t count)
{
	const json_t *j = json_object_get(o, key);
	return json_is_string(j) ? core_name_index(names, count, json_string_value(j), json_string_length(j)) : -1;
}

/* One slot of person.get's answer, checked as far as the core's asserts need. */
static bool slot_from_json(const json_t *j, struct core_slot *out)
{
	int64_t month, base, paid, paid_date;
	const json_t *deemed = json_object_get(j, "deemed");
	int type = name_parse(j, "type", core_type_names, CORE_TYPE_COUNT);
	int category = name_parse(j, "category", core_category_names, CORE_CATEGORY_COUNT);
	memset(out, 0, sizeof(*out));
	if (!json_int_in(j, "month", 0, INT32_MAX, &month) || !core_month_parse(month, &out->month) ||
	    !city_parse(json_string_value(json_object_get(j, "city")), &out->city) || type < 0 || category < 0 ||
	    !json_int_in(j, "base", 0, CORE_MONEY_MAX, &base) || !json_int_in(j, "paid", 0, CORE_AMOUNT_MAX, &paid) ||
	    !json_int_in(j, "paid_date", 0, INT32_MAX, &paid_date) || (paid_date != 0 && !core_date_valid(paid_date)) ||
	    !(deemed == NULL || json_is_boolean(deemed) || json_is_null(deemed))) {
		return false;
	}
	out->type = (uint8_t)type;
	out->category = (uint8_t)category;
	out->base_fen = base;
	out->paid_fen = paid;
	out->paid_date = (int32_t)paid_date;
	out->deemed = json_is_true(deemed);
	return true;
}

/* Adds city to the ascending set; false when the set is full. */
static bool city_add(struct show *s, uint32_t city)
{
	uint32_t i = 0;
	while (i < s->city_count && s->cities[i] < city) {
		i++;
	}
	if (i < s->city_count && s->cities[i] == city) {
		return true;
	}
	if (s->city_count == SHOW_CITIES_MAX) {
		return false;
	}
	memmove(&s->cities[i + 1], &s->cities[i], sizeof(s->cities[0]) * (s->city_count - i));
	s->cities[i] = city;
	s->city_count++;
	return true;
}

static uint32_t city_index(const struct show *s, uint32_t city)
{
	uint32_t i = 0;
	while (i < s->city_count && s->cities[i] != city) {
		i++;
	}
	ASSERT(i < s->city_count);
	return i;
}

/* Calls method; an error answer is printed as JSON on stderr. The parsed
 * result on success, else NULL (and *status set). */
static json_t *show_fetch(struct show *s, const char *method, json_t *params, int *status)
{
	char *answer;
	bool is_error;
	*status = conn_call_json(&s->conn, method, params, &answer, &is_error);
	if (*status == 0 && is_error) {
		fprintf(stderr, "%s\n", answer);
		*status = 1;
	}
	json_t *root = *status == 0 ? json_loads(answer, 0, NULL) : NULL;
	free(answer);
	if (*status == 0 && root == NULL) {
		fprintf(stderr, "arrears: %s: the answer does not parse as JSON\n", method);
		*status = 1;
	}
	return root;
}

/* person.get: the slots and their cities. */
static int show_person(struct show *s, const char *id)
{
	int status;
	json_t *root = show_fetch(s, "person.get", json_pack("{s:s}", "id", id), &status);
	const json_t *person = json_object_get(root, "person");
	const json_t *slots = json_object_get(person, "slots");
	if (status == 0 && (!json_is_array(slots) || !json_is_string(json_object_get(person, "id")))) {
		fprintf(stderr, "arrears: person.get answered without a person\n");
		status = 1;
	}
	if (status == 0) {
		snprintf(s->id, sizeof(s->id), "%s", json_string_value(json_object_get(person, "id")));
		s->slots = calloc(json_array_size(slots) + 1, sizeof(*s->slots));
		if (s->slots == NULL) {
			fprintf(stderr, "arrears: out of memory\n");
			status = 1;
		}
	}
	for (size_t i = 0; status == 0 && i < json_array_size(slots); i++) {
		if (!slot_from_json(json_array_get(slots, i), &s->slots[i])) {
			fprintf(stderr, "arrears: person.get answered a slot this client cannot read: slots[%zu]\n", i);
			status = 1;
		} else if (!city_add(s, s->slots[i].city)) {
			fprintf(stderr, "arrears: the person spans more than %u cities\n", SHOW_CITIES_MAX);
			status = 1;
		} else {
			s->slot_count++;
		}
	}
	json_decref(root);
	return status;
}

/* A policy document (JSON) prepared for the core, through the same decoding
 * policy.put uses. NULL when it does not decode. */
static struct core_policy *policy_from_json(const json_t *doc)
{
	char *text = json_dumps(doc, JSON_COMPACT);
	uint8_t *frame = NULL;
	size_t frame_size;
	char errbuf[128];
	struct core_policy *p = NULL;
	struct proto_message *m = proto_message_new();
	if (text != NULL && m != NULL &&
	    proto_json_frame("policy.put", 0, "policy", text, &frame, &frame_size, errbuf, sizeof(errbuf)) == PROTO_OK) {
		struct proto_envelope env;
		struct proto_error err;
		if (proto_message_parse(m, frame, frame_size, &env, &err) == PROTO_OK) {
			p = proto_policy_decode(env.params, &err);
		}
	}
	proto_message_free(m);
	free(frame);
	free(text);
	return p;
}

/* policy.get for every city of the person. */
static int show_policies(struct show *s)
{
	int status = 0;
	for (uint32_t i = 0; status == 0 && i < s->city_count; i++) {
		char city[16];
		snprintf(city, sizeof(city), "%06u", s->cities[i]);
		json_t *root = show_fetch(s, "policy.get", json_pack("{s:s}", "city", city), &status);
		if (status == 0 && (s->policies[i] = policy_from_json(json_object_get(root, "policy"))) == NULL) {
			fprintf(stderr, "arrears: the policy of %s does not decode\n", city);
			status = 1;
		}
		json_decref(root);
	}
	return status;
}

/* A compute method for the one person: its results entry, or {error} (the
 * request's error or the person's), which also sets s->answered_error.
 * NULL only with *status set (nothing usable came back). */
static json_t *show_compute(struct show *s, const char *method, json_t *params, int *status)
{
	char *answer;
	bool is_error;
	*status = conn_call_json(&s->conn, method, params, &answer, &is_error);
	json_t *root = *status == 0 ? json_loads(answer, 0, NULL) : NULL;
	free(answer);
	if (*status == 0 && root == NULL) {
		fprintf(stderr, "arrears: %s: the answer does not parse as JSON\n", method);
		*status = 1;
	}
	if (root == NULL) {
		return NULL;
	}
	json_t *entry = is_error ? json_pack("{s:o}", "error", root)
				 : json_incref(json_array_get(json_object_get(root, "results"), 0));
	if (!is_error) {
		json_decref(root);
	}
	if (entry == NULL) {
		entry = json_pack("{s:{s:s,s:s}}", "error", "name", "internal", "message", "no results in the answer");
	}
	if (entry == NULL) {
		*status = 1;
		return NULL;
	}
	s->answered_error |= json_object_get(entry, "error") != NULL;
	return entry;
}

/* The five summaries, one request each, all as of the same date. */
static int show_results(struct show *s)
{
	int status = 0;
	int date = s->as_of.date;
	s->arrears = show_compute(s, "arrears.compute",
				  json_pack("{s:i,s:[s],s:b}", "as_of", date, "ids", s->id, "detail", 1), &status);
	const char *const methods[] = { "years.compute", "retirement.check", "medical.status" };
	json_t **entries[] = { &s->years, &s->retirement, &s->medical };
	for (uint32_t i = 0; status == 0 && i < sizeof(methods) / sizeof(methods[0]); i++) {
		*entries[i] = show_compute(s, methods[i], json_pack("{s:i,s:[s]}", "as_of", date, "ids", s->id), &status);
	}
	if (status == 0 && s->housing_given) {
		char city[16];
		snprintf(city, sizeof(city), "%06u", s->housing_city);
		s->housing = show_compute(
			s, "housing.check", json_pack("{s:i,s:s,s:[s]}", "as_of", date, "city", city, "ids", s->id),
			&status);
	}
	return status;
}

/* arrears.compute's detail items, sorted for lookup by slot. */
static int show_items(struct show *s)
{
	const json_t *items = json_object_get(s->arrears, "items");
	size_t count = json_array_size(items);
	s->items = calloc(count + 1, sizeof(*s->items));
	if (s->items == NULL) {
		fprintf(stderr, "arrears: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < count; i++) {
		const json_t *it = json_array_get(items, i);
		const json_t *expired = json_object_get(it, "expired");
		int64_t month_yyyymm;
		int32_t month;
		uint32_t city;
		int type = name_parse(it, "type", core_type_names, CORE_TYPE_COUNT);
		if (!json_int_in(it, "month", 0, INT32_MAX, &month_yyyymm) || !core_month_parse(month_yyyymm, &month) ||
		    !city_parse(json_string_value(json_object_get(it, "city")), &city) || type < 0 ||
		    !json_is_boolean(expired)) {
			fprintf(stderr, "arrears: arrears.compute answered an item this client cannot read: items[%zu]\n", i);
			return 1;
		}
		s->items[s->item_count++] = (struct show_item){ slot_key(month, city, (uint8_t)type), json_is_true(expired) };
	}
	qsort(s->items, s->item_count, sizeof(*s->items), item_compare);
	return 0;
}

/* Housing is shown for --city, else for the city of the latest slot
 * (the smallest code when several cities share that month). */
static void show_housing_city(struct show *s)
{
	const struct core_slot *latest = NULL;
	for (uint32_t i = 0; !s->housing_given && i < s->slot_count; i++) {
		const struct core_slot *slot = &s->slots[i];
		if (latest == NULL || slot->month > latest->month ||
		    (slot->month == latest->month && slot->city < latest->city)) {
			latest = slot;
		}
	}
	if (latest != NULL) {
		s->housing_city = latest->city;
		s->housing_given = true;
	}
}

/* ---- arrears show: the grid ---- */

/* Cells by [year][type][city][month of the year]; a (type, city) has rows
 * from its first slot's year to its last one's. */
struct grid {
	int32_t year_first;
	uint32_t year_count;
	uint32_t city_count;
	int32_t first[CORE_TYPE_COUNT][SHOW_CITIES_MAX]; /* years; first > last: no slot */
	int32_t last[CORE_TYPE_COUNT][SHOW_CITIES_MAX];
	uint8_t *cells; /* enum cell */
	bool seen[CELL_COUNT];
};

static uint8_t *grid_row(const struct grid *g, int32_t year, uint32_t type, uint32_t city_index)
{
	size_t row = ((size_t)(year - g->year_first) * CORE_TYPE_COUNT + type) * g->city_count + city_index;
	return g->cells + row * 12;
}

static bool grid_build(const struct show *s, struct grid *g)
{
	int32_t year_last = INT32_MIN;
	g->year_first = INT32_MAX;
	g->city_count = s->city_count;
	for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
		for (uint32_t c = 0; c < SHOW_CITIES_MAX; c++) {
			g->first[t][c] = INT32_MAX;
			g->last[t][c] = INT32_MIN;
		}
	}
	for (uint32_t i = 0; i < s->slot_count; i++) {
		const struct core_slot *slot = &s->slots[i];
		int32_t year = slot->month / 12;
		uint32_t c = city_index(s, slot->city);
		g->first[slot->type][c] = year < g->first[slot->type][c] ? year : g->first[slot->type][c];
		g->last[slot->type][c] = year > g->last[slot->type][c] ? year : g->last[slot->type][c];
		g->year_first = year < g->year_first ? year : g->year_first;
		year_last = year > year_last ? year : year_last;
	}
	g->year_count = s->slot_count > 0 ? (uint32_t)(year_last - g->year_first + 1) : 0;
	size_t cell_count = (size_t)g->year_count * CORE_TYPE_COUNT * g->city_count * 12;
	g->cells = malloc(cell_count + 1);
	if (g->cells == NULL) {
		return false;
	}
	size_t year_cells = (size_t)12 * CORE_TYPE_COUNT * g->city_count;
	for (size_t i = 0; i < cell_count; i++) {
		int32_t month = (g->year_first + (int32_t)(i / year_cells)) * 12 + (int32_t)(i % 12);
		g->cells[i] = month > s->as_of.month ? CELL_FUTURE : CELL_NONE;
	}
	for (uint32_t i = 0; i < s->slot_count; i++) {
		const struct core_slot *slot = &s->slots[i];
		uint32_t c = city_index(s, slot->city);
		grid_row(g, slot->month / 12, slot->type, c)[slot->month % 12] = slot_cell(s, slot, s->policies[c]);
	}
	return true;
}

static void cell_print(bool color, uint8_t cell)
{
	if (color) {
		printf("\x1b[%sm %c \x1b[0m", cell_style[cell].sgr, cell_style[cell].letter);
	} else {
		printf(" %c ", cell_style[cell].letter);
	}
}

static void grid_print(const struct show *s, struct grid *g)
{
	bool cities = s->city_count > 1;
	printf("%-*s", 5 + SHOW_TYPE_WIDTH + (cities ? 7 : 0) + 1, cities ? "year type         city" : "year type");
	for (int m = 1; m <= 12; m++) {
		printf("%2d ", m);
	}
	printf("\n");
	for (uint32_t y = 0; y < g->year_count; y++) {
		int32_t year = g->year_first + (int32_t)y;
		for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
			for (uint32_t c = 0; c < g->city_count; c++) {
				if (year < g->first[t][c] || year > g->last[t][c]) {
					continue;
				}
				printf("%04d %-*s", year, SHOW_TYPE_WIDTH, core_type_names[t]);
				if (cities) {
					printf(" %06u", s->cities[c]);
				}
				printf(" ");
				const uint8_t *row = grid_row(g, year, t, c);
				for (uint32_t m = 0; m < 12; m++) {
					cell_print(s->color, row[m]);
					g->seen[row[m]] = true;
				}
				printf("\n");
			}
		}
	}
}

static void legend_print(const struct show *s, const struct grid *g)
{
	printf("legend:");
	for (uint8_t c = 0; c < CELL_COUNT; c++) {
		if (c >= CELL_LEGEND_ALWAYS && !g->seen[c]) {
			continue;
		}
		if (s->color) {
			printf(" ");
			cell_print(true, c);
			printf(" %s", cell_style[c].name);
		} else {
			printf(" '%c' %s", cell_style[c].letter, cell_style[c].name);
		}
	}
	printf("\n");
}

/* ---- arrears show: the summary ---- */

struct text {
	char s[32];
};

static int64_t jint(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static const char *jstr(const json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));
	return v != NULL ? v : "?";
}

/* Fen as yuan with two decimals. */
static struct text yuan(int64_t fen)
{
	struct text t;
	uint64_t u = fen < 0 ? -(uint64_t)fen : (uint64_t)fen;
	snprintf(t.s, sizeof(t.s), "%s%" PRIu64 ".%02" PRIu64, fen < 0 ? "-" : "", u / 100, u % 100);
	return t;
}

/* "1 month", "5 months". */
static struct text months(int64_t n)
{
	struct text t;
	snprintf(t.s, sizeof(t.s), "%" PRId64 " month%s", n, n == 1 ? "" : "s");
	return t;
}

/* An integer field (a month, a date), or "-" when nil. */
static struct text num(const json_t *o, const char *key)
{
	struct text t;
	const json_t *v = json_object_get(o, key);
	snprintf(t.s, sizeof(t.s), json_is_integer(v) ? "%" PRId64 : "-", (int64_t)json_integer_value(v));
	return t;
}

/* "what: error NAME at AT: MESSAGE" when the entry is an error. */
static bool error_line(const char *what, const json_t *entry)
{
	const json_t *e = json_object_get(entry, "error");
	if (e == NULL) {
		return false;
	}
	const char *at = json_string_value(json_object_get(e, "at"));
	printf("%s: error %s%s%s: %s\n", what, jstr(e, "name"), at != NULL ? " at " : "", at != NULL ? at : "",
	       jstr(e, "message"));
	return true;
}

static void summary_arrears(const json_t *a)
{
	if (error_line("arrears", a)) {
		return;
	}
	printf("arrears: %s owed", months(jint(a, "months_owed")).s);
	if (jint(a, "months_owed") > 0) {
		printf(" (%s..%s)", num(a, "first_month").s, num(a, "last_month").s);
	}
	printf(", principal %s + interest %s + late fee %s = total %s yuan\n", yuan(jint(a, "principal")).s,
	       yuan(jint(a, "interest")).s, yuan(jint(a, "late_fee")).s, yuan(jint(a, "total")).s);
	const char *key;
	const json_t *t;
	json_object_foreach(json_object_get(a, "by_type"), key, t) {
		printf("  %-*s %s, principal %s, interest %s, late fee %s yuan\n", SHOW_TYPE_WIDTH, key,
		       months(jint(t, "months")).s, yuan(jint(t, "principal")).s, yuan(jint(t, "interest")).s,
		       yuan(jint(t, "late_fee")).s);
	}
	const json_t *tiers = json_object_get(a, "tiers");
	printf("  pending %s yuan; expired %s, %s yuan; tiers: direct %" PRId64 ", verify %" PRId64
	       ", approval %" PRId64 ", legacy %" PRId64 "\n",
	       yuan(jint(a, "pending")).s, months(jint(a, "expired_months")).s, yuan(jint(a, "expired_principal")).s,
	       jint(tiers, "direct"), jint(tiers, "verify"), jint(tiers, "approval"), jint(tiers, "legacy"));
}

static void summary_years(const json_t *y)
{
	if (error_line("years", y)) {
		return;
	}
	bool any = false;
	for (uint32_t t = 0; t < CORE_TYPE_COUNT; t++) {
		const json_t *b = json_object_get(json_object_get(y, "by_type"), core_type_names[t]);
		if (jint(b, "months") == 0) {
			continue;
		}
		any = true;
		printf("years: %-*s %" PRId64 " y %" PRId64 " m (%s: %" PRId64 " on time, %" PRId64 " back-paid, %" PRId64
		       " deemed)\n",
		       SHOW_TYPE_WIDTH, core_type_names[t], jint(b, "years"), jint(b, "rem_months"), months(jint(b, "months")).s,
		       jint(b, "on_time"), jint(b, "backpaid"), jint(b, "deemed"));
	}
	if (!any) {
		printf("years: no month counted\n");
	}
	size_t duplicates = json_array_size(json_object_get(y, "duplicates"));
	if (duplicates > 0) {
		printf("years: %s counted in more than one city (refund candidates)\n", months((int64_t)duplicates).s);
	}
}

static void summary_retirement(const json_t *r)
{
	if (error_line("retirement", r)) {
		return;
	}
	printf("retirement: class %s, statutory %s (original %s), required %s, counted %" PRId64 ", shortfall %" PRId64
	       ", payable arrears %s; eligible %s %s\n",
	       jstr(r, "class"), num(r, "statutory_month").s, num(r, "original_month").s,
	       months(jint(r, "required_months")).s, jint(r, "counted_months"), jint(r, "shortfall"),
	       months(jint(r, "payable_arrears_months")).s,
	       json_is_true(json_object_get(r, "eligible_now")) ? "now, from" : "from", num(r, "eligible_from").s);
}

static void summary_medical(const json_t *m)
{
	if (error_line("medical", m)) {
		return;
	}
	printf("medical: %s", jstr(m, "status"));
	if (json_is_integer(json_object_get(m, "suspended_since"))) {
		printf(" since %s", num(m, "suspended_since").s);
	}
	if (json_is_integer(json_object_get(m, "resumes"))) {
		printf(", resumes %s", num(m, "resumes").s);
	}
	if (jint(m, "arrears_months") > 0) {
		printf("; %s in arrears", months(jint(m, "arrears_months")).s);
	}
	printf("\n");
}

static void summary_housing(const struct show *s)
{
	const json_t *h = s->housing;
	if (h == NULL) {
		printf("housing: no city (the person has no slot; give --city)\n");
		return;
	}
	char what[32];
	snprintf(what, sizeof(what), "housing %06u", s->housing_city);
	if (error_line(what, h)) {
		return;
	}
	printf("%s: window %s..%s, %" PRId64 " of %" PRId64 " required months qualify: %s, eligible from %s\n", what,
	       num(h, "window_from").s, num(h, "window_to").s, jint(h, "qualifying"), jint(h, "required"),
	       json_is_true(json_object_get(h, "eligible")) ? "eligible" : "not eligible", num(h, "eligible_from").s);
	const json_t *missing = json_object_get(h, "missing");
	size_t count = json_array_size(missing);
	if (count > 0) {
		printf("  missing:");
		for (size_t i = 0; i < count && i < SHOW_MISSING_SHOWN; i++) {
			printf(" %" PRId64, (int64_t)json_integer_value(json_array_get(missing, i)));
		}
		if (count > SHOW_MISSING_SHOWN) {
			printf(" and %zu more", count - SHOW_MISSING_SHOWN);
		}
		printf("\n");
	}
}

static int show_print(const struct show *s)
{
	struct grid *g = calloc(1, sizeof(*g));
	if (g == NULL || !grid_build(s, g)) {
		fprintf(stderr, "arrears: out of memory\n");
		free(g);
		return 1;
	}
	printf("person %s as of %d\n", s->id, s->as_of.date);
	if (s->slot_count == 0) {
		printf("(no slots)\n");
	} else {
		grid_print(s, g);
		legend_print(s, g);
	}
	summary_arrears(s->arrears);
	summary_years(s->years);
	summary_retirement(s->retirement);
	summary_medical(s->medical);
	summary_housing(s);
	free(g->cells);
	free(g);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- arrears show: the command ---- */

struct show_args {
	struct client_options o;
	const char *id;
	int32_t as_of; /* 0: today */
	uint32_t city;
	bool city_given;
	bool no_color;
	bool help;
};

static int show_usage(FILE *out)
{
	fprintf(out, "usage: arrears show ID [--as-of YYYYMMDD] [--city C] [--no-color] [--connect HOST:PORT]\n"
		     "                    [--token-file FILE]\n"
		     "  default HOST:PORT: $ARREARS_CONNECT, else " CLIENT_CONNECT_DEFAULT "\n");
	return out == stdout ? 0 : 2;
}

static bool date_parse(const char *text, int32_t *date)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || !core_date_valid(v)) {
		return false;
	}
	*date = (int32_t)v;
	return true;
}

/* False for bad usage. */
static bool show_args_parse(int argc, char **argv, struct show_args *a)
{
	memset(a, 0, sizeof(*a));
	for (int i = 0; i < argc; i++) {
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			a->help = true;
		} else if (strcmp(argv[i], "--no-color") == 0) {
			a->no_color = true;
		} else if ((strcmp(argv[i], "--as-of") == 0 || strcmp(argv[i], "--city") == 0) && value == NULL) {
			flag_missing_value("arrears show", argv[i]);
			return false;
		} else if (strcmp(argv[i], "--as-of") == 0) {
			if (!date_parse(value, &a->as_of)) {
				fprintf(stderr, "arrears show: --as-of must be a date YYYYMMDD, got '%s'\n", value);
				return false;
			}
			i++;
		} else if (strcmp(argv[i], "--city") == 0) {
			if (!city_parse(value, &a->city)) {
				fprintf(stderr, "arrears show: --city must be a 6-digit city code, got '%s'\n", value);
				return false;
			}
			a->city_given = true;
			i++;
		} else if (option_shared(argc, argv, &i, &a->o)) {
			if (i == argc) {
				flag_missing_value("arrears show", argv[i - 1]);
				return false;
			}
		} else if (a->id == NULL && argv[i][0] != '-') {
			a->id = argv[i];
		} else {
			flag_unknown("arrears show", argv[i]);
			return false;
		}
	}
	if (!a->help && a->id == NULL) {
		fprintf(stderr, "arrears show: which ID? (arrears show --help)\n");
	}
	return a->help || a->id != NULL;
}

/* Today's date on the local clock, 0 when the clock cannot say. */
static int32_t today(void)
{
	time_t now = time(NULL);
	struct tm tm;
	if (now == (time_t)-1 || localtime_r(&now, &tm) == NULL) {
		return 0;
	}
	return (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

/* Colours only for a terminal that has them and a user who has not said no
 * (https://no-color.org: NO_COLOR set and not empty). */
static bool show_terminal_colors(void)
{
	const char *no_color = getenv("NO_COLOR");
	const char *term = getenv("TERM");
	return isatty(STDOUT_FILENO) && (no_color == NULL || no_color[0] == '\0') &&
	       (term == NULL || strcmp(term, "dumb") != 0);
}

static void show_free(struct show *s)
{
	conn_close(&s->conn);
	for (uint32_t i = 0; i < s->city_count; i++) {
		free(s->policies[i]);
	}
	free(s->slots);
	free(s->items);
	json_decref(s->arrears);
	json_decref(s->years);
	json_decref(s->retirement);
	json_decref(s->medical);
	json_decref(s->housing);
	free(s);
}

int client_show_command(int argc, char **argv)
{
	struct show_args a;
	if (!show_args_parse(argc, argv, &a)) {
		return 2;
	}
	if (a.help) {
		return show_usage(stdout);
	}
	int32_t date = a.as_of != 0 ? a.as_of : today();
	if (!core_date_valid(date)) {
		fprintf(stderr, "arrears: the clock's date is out of range: give --as-of\n");
		return 2;
	}
	struct show *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		fprintf(stderr, "arrears: out of memory\n");
		return 1;
	}
	s->conn.fd = -1;
	s->as_of = core_as_of_make(date);
	s->color = !a.no_color && show_terminal_colors();
	s->housing_city = a.city;
	s->housing_given = a.city_given;
	int status = client_connect(&s->conn, &a.o);
	if (status == 0 && (status = show_person(s, a.id)) == 0 && (status = show_policies(s)) == 0) {
		show_housing_city(s);
		status = show_results(s);
	}
	if (status == 0 && (status = show_items(s)) == 0) {
		status = show_print(s);
	}
	if (status == 0 && s->answered_error) {
		status = 1;
	}
	show_free(s);
	return status;
}
