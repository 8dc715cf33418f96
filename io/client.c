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

#define CLIENT_RESPONSE_BYTES_MAX (64u << 20) /* one answer; a larger one is refused, not buffered */
#define CLIENT_TIMEOUT_S 30                   /* per connect, send and receive: a server that stopped answering */
#define CLIENT_READ_CHUNK_BYTES (64u << 10)
#define CLIENT_TOKEN_BYTES_MAX 4096u          /* a token file holds a secret, not a document */
#define CLIENT_STDIN_BYTES_MAX PROTO_REQUEST_BYTES_MAX /* params from stdin: the server takes no more */
#define CLIENT_HOST_SIZE 256u                 /* a DNS name is at most 253 characters */
#define SHOW_CITIES_MAX 64u                   /* cities on one grid, a policy.get each; more: refused */
#define SHOW_MISSING_SHOWN 12u                /* housing months listed before "and N more" */
#define SHOW_TYPE_WIDTH 12                    /* "unemployment" */

_Static_assert(CLIENT_RESPONSE_BYTES_MAX >= PROTO_REQUEST_BYTES_MAX, "an answer may echo a whole request");
_Static_assert(SHOW_CITIES_MAX < (1u << 8), "city indices fit the grid's bytes");

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
				rc == PROTO_FRAME_TOO_LARGE ? "over the 64 MiB limit: refused" : "not msgpack");
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

/* The token of the file, trailing whitespace (the file's newline) dropped. */
static char *token_read(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "arrears: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	char *token = read_bounded(fd, CLIENT_TOKEN_BYTES_MAX, path);
	close(fd);
	size_t size = token != NULL ? strlen(token) : 0;
	while (size > 0 && strchr(" \t\r\n", token[size - 1]) != NULL) {
		token[--size] = '\0';
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
				return call_usage(stderr);
			}
		} else if (positional_count < 2 && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
			positional[positional_count++] = argv[i];
		} else {
			return call_usage(stderr);
		}
	}
	if (positional_count == 0) {
		return call_usage(stderr);
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
		fprintf(is_error ? stderr : stdout, "%s\n", answer);
		status = is_error ? 1 : 0;
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
	uint32_t housing_city; /* 0: none */
	json_t *arrears;       /* the person's entry, or an error map (see show_answer) */
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
		status = s->slots == NULL;
	}
	for (size_t i = 0; status == 0 && i < json_array_size(slots); i++) {
		if (!slot_from_json(json_array_get(slots, i), &s->slots[i])) {
			fprintf(stderr, "arrears: person.get answered a slot this client cannot read: slots[%zu]\n", i);
			status = 1;
		} else if (!city_add(s, s->slots[i].city)) {
			fprintf(stderr, "arrears: the person spans more than %u cities\n", SHOW_CITIES_MAX);
			status = 1;
		}
		s->slot_count++;
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
