/* The io_uring event loops, connections and the worker pool. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../fault/fault.h"
#include "../rpc/log.h"
#include "server.h"
#include "../rpc/stats.h"
#include "../rpc/summary.h"

#define RING_ENTRIES 4096u        /* SQEs per loop; a full queue is submitted and refilled */
#define CQ_ENTRIES 16384u         /* completions a burst may leave before we reap */
#define CQE_BATCH 512u            /* completions handled between submits */
#define BUF_BYTES 16384u          /* one provided receive buffer */
#define BUF_COUNT 2048u           /* provided buffers per loop: 32 MiB */
#define BUF_GROUP 1
#define OUT_CHUNK_BYTES 65536u    /* small answers are gathered up to this per send */
#define SPARE_CHUNKS_MAX 64u      /* gathering chunks a loop keeps for reuse */
#define LISTEN_BACKLOG 4096
#define SQE_SUBMIT_TRIES 1000     /* a queue that stays full this long means a broken ring */
/* What a bulk part holds: its bytes, passed by one person's answer within
 * the eighth more its buffer is made with (rpc/dispatch.c). */
#define PART_BULK_HELD (PART_BYTES_BULK + PART_BYTES_BULK / 8)
#define MMAP_THRESHOLD_BYTES (2 * PART_BULK_HELD + 4096) /* larger blocks are mapped on their own (server_run) */
static_assert(MMAP_THRESHOLD_BYTES <= (32u << 20), "glibc's M_MMAP_THRESHOLD ceiling (HEAP_MAX / 2 on 64-bit)");

static_assert(BUF_COUNT <= 32768 && (BUF_COUNT & (BUF_COUNT - 1)) == 0, "buffer ring size is a power of two");

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_WAKE, OP_TICK, OP_CANCEL };

/* user_data: operation, connection slot and its generation, never a bare fd,
 * so a late completion cannot reach a connection that reused the slot. */
static uint64_t user_data(enum op op, uint32_t slot, uint32_t gen)
{
	return (uint64_t)op << 56 | (uint64_t)(slot & 0xffffff) << 32 | gen;
}

struct chunk {
	struct chunk *next;
	uint8_t *data;
	size_t size;
	size_t offset;   /* bytes already sent */
	size_t capacity;
	bool pooled;     /* a gathering chunk of OUT_CHUNK_BYTES: back to the loop's spares */
};

/* A connection's life; conn_settle makes every transition.
 *
 *   OPEN ──(peer's end, error, shutdown)──> CLOSING ──(answers sent)──> LINGER or DONE
 *   LINGER ──(peer's end, LINGER_S)──> DONE
 *   any ──(cut: peer gone, idle, grace over)──> DONE
 *   DONE ──(no operation in flight, no job on a worker)──> FREE
 */
enum conn_state {
	CONN_FREE = 0,
	CONN_OPEN,    /* requests are read and run */
	CONN_CLOSING, /* no more requests run; the answers queued are sent */
	CONN_LINGER,  /* our side is shut after the last answer; the peer's bytes are dropped until its end */
	CONN_DONE,    /* shut both ways, answers dropped: released once nothing is in flight */
};

struct job;

struct conn {
	int fd;
	uint32_t slot;    /* index in the loop's table, fixed */
	uint32_t gen;
	uint8_t state;    /* enum conn_state */
	/* Operations in flight: a slot is released only with none. */
	bool recv_armed;  /* until the receive's last completion (no IORING_CQE_F_MORE) */
	bool recv_cancelling;
	bool send_armed;
	bool busy;        /* a request of this connection is on a worker (job) */
	bool peer_eof;    /* the peer's end of stream: never receive again */
	bool after_error; /* closing after malformed or too large: the peer may still be sending */
	bool stalled;     /* requests wait in the input: answers piled up, or the answer budget is spent */
	bool want_send;   /* on the loop's list of connections to send for */
	bool want_turn;   /* on the loop's list of connections with requests left to run */
	bool input_reserved; /* holds a big request's reservation (input_reserve) */
	int fault_recv;   /* an injected result for the receive armed (a no-op in its place), 0: none */
	int fault_send;   /* the same for the send */
	int64_t linger_since_ns;
	struct job *job;  /* while busy */
	struct dispatch_session session;
	uint8_t *in;
	size_t in_size;
	size_t in_capacity;
	struct proto_frame frame;
	struct chunk *out_head;
	struct chunk *out_tail;
	size_t out_bytes; /* queued, not yet sent; counted in the server's answer budget */
	int64_t last_active_ns;
	uint32_t next_free;
	uint32_t next_send;
	uint32_t next_turn;
};

struct job {
	struct job *next;
	struct loop *loop;
	uint32_t slot;
	uint32_t gen;
	atomic_bool cancelled; /* its connection is gone: a worker skips it */
	bool parked;           /* between two parts of its answer, on the loop (not on a worker) */
	struct dispatch_resume resume;
	struct dispatch_session session;
	uint8_t *frame;
	size_t frame_size;
	size_t frame_held;     /* of the input budget (INPUT_BYTES_MAX) */
	uint64_t elements;     /* of the frame: its parse costs this × PROTO_PARSE_BYTES_PER_ELEMENT */
	uint8_t *response;
	size_t response_size;
	struct dispatch_outcome outcome;
	int64_t started_ns;
};

struct server;

struct loop {
	struct server *srv;
	uint32_t id;
	pthread_t thread;
	struct io_uring ring;
	struct io_uring_buf_ring *buf_ring;
	uint8_t *bufs;
	struct dispatch *d;
	struct conn **conns;
	uint32_t conn_count;    /* slots allocated */
	uint32_t free_head;     /* UINT32_MAX: none */
	uint32_t send_head;     /* connections wanting a send, UINT32_MAX: none */
	uint32_t turn_head;     /* connections with requests left to run, UINT32_MAX: none */
	uint32_t open;          /* connections in use */
	uint32_t jobs_out;      /* jobs on workers */
	struct chunk *spare;    /* gathering chunks to reuse: one answer a request would */
	uint32_t spare_count;   /* otherwise be a 64 KiB malloc and free */
	int wake_fd;
	uint64_t wake_value;
	pthread_mutex_t done_lock;
	struct job *done;       /* jobs finished by workers */
	bool gone;              /* its thread has returned: hand it nothing (under done_lock) */
	int *handed;            /* connections another loop accepted for this one */
	uint32_t handed_count;  /* (under done_lock, like done) */
	uint32_t handed_capacity;
	struct __kernel_timespec tick;
	bool ring_ready;
	bool ring_disabled; /* enabled by the loop's thread when it starts */
	bool recv_single;   /* the kernel has no multishot receive (before 6.0) */
	bool recv_multishot_seen; /* it has: a later EINVAL is an error of its own */
	bool accepting;
	bool accept_later; /* re-arm accept at the next tick */
	bool stopping;
	int64_t stop_deadline_ns;
	int64_t woke_ns;        /* when the loop last woke: activity times, to the idle timeout's second */
};

struct server {
	const struct server_config *config;
	struct dispatch_shared shared;
	struct stats *stats; /* config->stats */
	int listen_fd;
	atomic_bool stop;
	struct loop *loops;
	atomic_uint accepted; /* connections accepted: the next goes to loop accepted % loops */
	atomic_bool failed;   /* a loop broke: the server stops */
	atomic_size_t input_bytes;  /* big input buffers (INPUT_BYTES_MAX) */
	/* Answers workers made that their loop has not queued yet (and so not
	 * counted in the answer budget): a worker sizing its next part counts
	 * them too, or a burst of jobs would all see the budget empty. */
	atomic_size_t answers_in_transit;
	atomic_size_t bulk_reserved; /* bulk parts being made: PART_BULK_HELD each (part_bytes) */
	pthread_mutex_t parse_lock;
	pthread_cond_t parse_cond;
	size_t parse_bytes;         /* trees being built (PARSE_BYTES_MAX), under parse_lock */
	struct worker *workers;
	pthread_mutex_t jobs_lock;
	pthread_cond_t jobs_cond;
	struct job *jobs_head;
	struct job *jobs_tail;
	uint32_t jobs_queued;
	bool workers_stop;
};

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000ll + t.tv_nsec;
}

static void loop_fail(struct loop *l, int error);

/* A full queue is submitted to make room. One that stays full means the
 * ring is broken: rather than spin, the server stops (loop_fail) with a
 * core to look at. */
static struct io_uring_sqe *sqe_get(struct loop *l)
{
	struct io_uring_sqe *sqe = fault_hit(FAULT_SQ_FULL) ? NULL : io_uring_get_sqe(&l->ring);
	for (int tries = 0; sqe == NULL; tries++) {
		int rc = io_uring_submit(&l->ring);
		if (tries == SQE_SUBMIT_TRIES) {
			loop_fail(l, rc < 0 ? -rc : EBUSY);
			abort();
		}
		sqe = fault_hit(FAULT_SQ_FULL) ? NULL : io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

static struct conn *conn_of(struct loop *l, uint64_t data)
{
	uint32_t slot = (uint32_t)(data >> 32) & 0xffffff;
	uint32_t gen = (uint32_t)data;
	if (slot >= l->conn_count || l->conns[slot]->state == CONN_FREE || l->conns[slot]->gen != gen) {
		return NULL;
	}
	return l->conns[slot];
}

/* ---- arming operations ---- */

static void arm_accept(struct loop *l)
{
	struct io_uring_sqe *sqe = sqe_get(l);
	io_uring_prep_multishot_accept(sqe, l->srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, user_data(OP_ACCEPT, 0, 0));
}

/* One multishot receive serves a connection until it is cancelled or ends
 * (end of stream, error, buffer pool dry): no receive to submit and no poll
 * to arm again per request. */
static void arm_recv(struct loop *l, struct conn *c)
{
	/* After the peer's end a receive completes at once, again and again. */
	ASSERT(!c->recv_armed && !c->peer_eof && c->state != CONN_DONE);
	struct io_uring_sqe *sqe = sqe_get(l);
	c->fault_recv = fault_hit(FAULT_RECV_NOBUFS) ? -ENOBUFS
			: fault_hit(FAULT_RECV_AGAIN)  ? -EAGAIN
			: fault_hit(FAULT_RECV_RESET)  ? -ECONNRESET
						       : 0;
	if (c->fault_recv != 0) {
		io_uring_prep_nop(sqe); /* completes at once; on_recv reads fault_recv instead */
	} else if (l->recv_single) {
		io_uring_prep_recv(sqe, c->fd, NULL, BUF_BYTES, 0);
	} else {
		io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	}
	if (c->fault_recv == 0) {
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = BUF_GROUP;
	}
	io_uring_sqe_set_data64(sqe, user_data(OP_RECV, c->slot, c->gen));
	c->recv_armed = true;
}

static void arm_send(struct loop *l, struct conn *c)
{
	ASSERT(!c->send_armed && c->out_head != NULL && c->state != CONN_DONE);
	struct chunk *h = c->out_head;
	struct io_uring_sqe *sqe = sqe_get(l);
	size_t size = h->size - h->offset;
	if (size > 1 && fault_hit(FAULT_SEND_SHORT)) {
		size = 1 + fault_draw(FAULT_SEND_SHORT) % (size - 1); /* the kernel sends just this much */
	}
	c->fault_send = fault_hit(FAULT_SEND_AGAIN) ? -EAGAIN : fault_hit(FAULT_SEND_RESET) ? -ECONNRESET : 0;
	if (c->fault_send != 0) {
		io_uring_prep_nop(sqe);
	} else {
		io_uring_prep_send(sqe, c->fd, h->data + h->offset, size, MSG_NOSIGNAL);
	}
	io_uring_sqe_set_data64(sqe, user_data(OP_SEND, c->slot, c->gen));
	c->send_armed = true;
}

static void arm_wake(struct loop *l)
{
	struct io_uring_sqe *sqe = sqe_get(l);
	io_uring_prep_read(sqe, l->wake_fd, &l->wake_value, sizeof(l->wake_value), 0);
	io_uring_sqe_set_data64(sqe, user_data(OP_WAKE, 0, 0));
}

static void arm_tick(struct loop *l)
{
	struct io_uring_sqe *sqe = sqe_get(l);
	l->tick = (struct __kernel_timespec){ .tv_sec = 1 };
	io_uring_prep_timeout(sqe, &l->tick, 0, 0);
	io_uring_sqe_set_data64(sqe, user_data(OP_TICK, 0, 0));
}

static void recv_cancel(struct loop *l, struct conn *c)
{
	if (c->recv_armed && !c->recv_cancelling) {
		struct io_uring_sqe *sqe = sqe_get(l);
		io_uring_prep_cancel64(sqe, user_data(OP_RECV, c->slot, c->gen), 0);
		io_uring_sqe_set_data64(sqe, user_data(OP_CANCEL, 0, 0));
		c->recv_cancelling = true;
	}
}

/* Before auth (with a token configured) a request is small: a flood of
 * unauthenticated connections cannot make the server hold or parse much. */
static size_t frame_bytes_max(const struct loop *l, const struct conn *c)
{
	const struct server_config *cfg = l->srv->config;
	return cfg->token != NULL && !c->session.authed ? SERVER_PREAUTH_FRAME_BYTES_MAX : cfg->request_bytes_max;
}

static bool socket_unread(const struct conn *c)
{
	int unread = 0;
	return ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0;
}

/* Whether the next receive may take the input past the inline size. */
static bool input_near_big(const struct conn *c)
{
	return c->in_size + BUF_BYTES > INLINE_FRAME_BYTES_MAX;
}

/* Whether the connection should be reading: requests while open, or the
 * bytes to drop until the peer's end while closing. Never after the peer's
 * end; not while its answers pile up or requests wait in its input. */
static bool should_read(const struct loop *l, const struct conn *c)
{
	if (c->peer_eof) {
		return false;
	}
	switch (c->state) {
	case CONN_OPEN:
		/* Stopping, a connection still reads the rest of a request it began
		 * to send, and the requests already in its socket. */
		return !c->stalled && !c->want_turn && c->out_bytes < OUT_HIGH_BYTES &&
		       (!l->stopping || c->in_size > 0 || socket_unread(c)) &&
		       c->in_size < frame_bytes_max(l, c) + BUF_BYTES && (c->input_reserved || !input_near_big(c));
	case CONN_CLOSING:
	case CONN_LINGER:
		return true;
	default:
		return false;
	}
}

/* ---- answer chunks ---- */

static struct chunk *chunk_gathering(struct loop *l)
{
	struct chunk *k = l->spare;
	if (fault_hit(FAULT_ALLOC)) {
		return NULL;
	}
	if (k != NULL) {
		l->spare = k->next;
		l->spare_count--;
		*k = (struct chunk){ .data = k->data, .capacity = OUT_CHUNK_BYTES, .pooled = true };
		return k;
	}
	k = calloc(1, sizeof(*k));
	uint8_t *data = k == NULL ? NULL : malloc(OUT_CHUNK_BYTES);
	if (data == NULL) {
		free(k);
		return NULL;
	}
	*k = (struct chunk){ .data = data, .capacity = OUT_CHUNK_BYTES, .pooled = true };
	return k;
}

static void chunk_free(struct loop *l, struct chunk *k)
{
	if (k->pooled && l->spare_count < SPARE_CHUNKS_MAX) {
		k->next = l->spare;
		l->spare = k;
		l->spare_count++;
		return;
	}
	free(k->data);
	free(k);
}

/* Every change of a connection's unsent bytes, so that the server's
 * answer budget always equals the sum over connections. */
static void out_account(struct loop *l, struct conn *c, size_t added, size_t removed)
{
	ASSERT(removed <= c->out_bytes + added);
	c->out_bytes = c->out_bytes + added - removed;
	if (added > removed) {
		atomic_fetch_add(&l->srv->stats->answer_bytes, added - removed);
	} else {
		atomic_fetch_sub(&l->srv->stats->answer_bytes, removed - added);
	}
}

static bool answer_budget_spent(const struct loop *l)
{
	return atomic_load(&l->srv->stats->answer_bytes) >= l->srv->config->answer_bytes_max;
}

/* A big request is admitted whole: before its input may pass
 * INLINE_FRAME_BYTES_MAX, the connection reserves the largest request
 * (INPUT_BYTES_MAX allows a few at once) or is not read until a
 * reservation is given back. Reserving by the piece instead, half-received
 * requests could hold the whole budget and wait for each other. */
static size_t input_reservation(const struct server *srv)
{
	return srv->config->request_bytes_max + BUF_BYTES;
}

static bool input_reserve(struct server *srv)
{
	size_t want = input_reservation(srv);
	size_t now = atomic_load(&srv->input_bytes);
	do {
		if (now + want > INPUT_BYTES_MAX && now > 0) {
			return false;
		}
	} while (!atomic_compare_exchange_weak(&srv->input_bytes, &now, now + want));
	return true;
}

static void input_unreserve(struct server *srv, size_t bytes)
{
	atomic_fetch_sub(&srv->input_bytes, bytes);
}

/* ---- connections ---- */

static void conn_release(struct loop *l, struct conn *c)
{
	ASSERT(c->state == CONN_DONE && !c->recv_armed && !c->send_armed && !c->busy);
	uint32_t slot = c->slot;
	close(c->fd);
	for (struct chunk *k = c->out_head; k != NULL;) {
		struct chunk *next = k->next;
		out_account(l, c, 0, k->size - k->offset);
		chunk_free(l, k);
		k = next;
	}
	ASSERT(c->out_bytes == 0);
	if (c->input_reserved) {
		input_unreserve(l->srv, input_reservation(l->srv));
	}
	free(c->in);
	/* The slot may still be linked on the send or turn list: their flushes skip it. */
	uint32_t gen = c->gen + 1;
	bool want_send = c->want_send, want_turn = c->want_turn;
	uint32_t next_send = c->next_send, next_turn = c->next_turn;
	memset(c, 0, sizeof(*c));
	*c = (struct conn){ .gen = gen, .slot = slot, .want_send = want_send, .want_turn = want_turn,
			    .next_send = next_send, .next_turn = next_turn, .next_free = l->free_head };
	l->free_head = slot;
	l->open--;
	atomic_fetch_sub(&l->srv->stats->connections_open, 1);
}

/* Drops unsent answers, but for the one the kernel is sending from. */
static void out_drop(struct loop *l, struct conn *c)
{
	struct chunk **keep = c->send_armed && c->out_head != NULL ? &c->out_head->next : &c->out_head;
	for (struct chunk *k = *keep; k != NULL;) {
		struct chunk *next = k->next;
		out_account(l, c, 0, k->size - k->offset);
		chunk_free(l, k);
		k = next;
	}
	*keep = NULL;
	c->out_tail = c->out_head;
}

static void job_free(struct job *j)
{
	input_unreserve(j->loop->srv, j->frame_held);
	dispatch_resume_free(&j->resume);
	free(j->response);
	free(j->frame);
	free(j);
}

/* No more I/O: shut the socket both ways (pending operations complete),
 * drop what is unsent, cancel a job still queued. why is logged. */
static void conn_finish(struct loop *l, struct conn *c, const char *why)
{
	if (c->state == CONN_DONE) {
		return;
	}
	log_event("event=close conn=%u.%u reason=%s", l->id, c->slot, why);
	c->state = CONN_DONE;
	if (c->busy && c->job->parked) { /* the loop holds it: no worker will return it */
		job_free(c->job);
		c->busy = false;
		c->job = NULL;
		l->jobs_out--;
	} else if (c->busy) {
		atomic_store(&c->job->cancelled, true);
	}
	out_drop(l, c);
	shutdown(c->fd, SHUT_RDWR);
}

static void send_later(struct loop *l, struct conn *c)
{
	if (!c->want_send && !c->send_armed) {
		c->want_send = true;
		c->next_send = l->send_head;
		l->send_head = c->slot;
	}
}

/* Requests are left in the input: run them after the other connections had a turn. */
static void turn_later(struct loop *l, struct conn *c)
{
	if (!c->want_turn) {
		c->want_turn = true;
		c->next_turn = l->turn_head;
		l->turn_head = c->slot;
	}
}

/* Moves the connection along its states once what it waits for is done,
 * keeps its receive armed exactly when it should read, and releases it
 * when nothing of it is in flight. */
static void conn_settle(struct loop *l, struct conn *c)
{
	if (c->state == CONN_OPEN && !c->busy && !c->stalled && !c->want_turn) {
		/* Every request received is answered: after the peer's end, or when
		 * stopping with nothing begun (also nothing still in the socket:
		 * completions are handled when the loop asks), no more will come. */
		if (c->peer_eof || (l->stopping && c->in_size == 0 && !socket_unread(c))) {
			c->state = CONN_CLOSING;
		}
	}
	if (c->state == CONN_CLOSING && c->out_head == NULL && !c->busy) {
		if (c->peer_eof || (!c->after_error && !socket_unread(c))) {
			conn_finish(l, c, "done");
		} else {
			/* The peer is (or may be, after an error) still sending: closing
			 * with its bytes unread would reset the connection, and a reset can
			 * destroy our last answers before the peer reads them. Shut our
			 * side (FIN after the answers), then read and drop until the
			 * peer's end, LINGER_S at most. */
			c->state = CONN_LINGER;
			c->linger_since_ns = now_ns();
			shutdown(c->fd, SHUT_WR);
		}
	}
	if (c->state == CONN_LINGER && c->peer_eof) {
		conn_finish(l, c, "done");
	}
	if (c->state == CONN_DONE) {
		if (!c->recv_armed && !c->send_armed && !c->busy) {
			conn_release(l, c);
		}
		return;
	}
	if (c->state == CONN_OPEN && !c->input_reserved && input_near_big(c)) {
		c->input_reserved = input_reserve(l->srv); /* else not read until one is given back (on_tick) */
	}
	if (!c->recv_armed && should_read(l, c)) {
		arm_recv(l, c);
	} else if (c->recv_armed && !should_read(l, c)) {
		recv_cancel(l, c); /* at once: more requests would only pile up more answers */
	}
}

/* After malformed or too large: answer, then close without reading more requests. */
static void conn_close_after_error(struct conn *c)
{
	if (c->state == CONN_OPEN) {
		c->state = CONN_CLOSING;
		c->after_error = true;
	}
}

/* Queues an answer; owned (taken from a writer) or copied into the tail
 * chunk. Out of memory, the connection is finished: an answer is never
 * silently lost on a connection that stays open. */
static void conn_queue(struct loop *l, struct conn *c, const uint8_t *data, size_t size, uint8_t *owned)
{
	if (c->state == CONN_DONE) {
		free(owned);
		return;
	}
	struct chunk *t = c->out_tail;
	bool tail_free = t != NULL && !(t == c->out_head && c->send_armed);
	if (owned == NULL && tail_free && t->size + size <= t->capacity) {
		memcpy(t->data + t->size, data, size);
		t->size += size;
	} else {
		struct chunk *k = owned == NULL && size <= OUT_CHUNK_BYTES ? chunk_gathering(l) : calloc(1, sizeof(*k));
		if (k != NULL && !k->pooled) {
			k->data = owned != NULL ? owned : malloc(size);
			k->capacity = size;
			if (k->data == NULL) {
				free(k);
				k = NULL;
			}
		}
		if (k == NULL) {
			free(owned);
			conn_finish(l, c, "out_of_memory");
			return;
		}
		if (owned == NULL) {
			memcpy(k->data, data, size);
		}
		k->size = size;
		if (t == NULL) {
			c->out_head = k;
		} else {
			t->next = k;
		}
		c->out_tail = k;
	}
	out_account(l, c, size, 0);
	send_later(l, c);
}

/* ---- requests ---- */

static void stats_answer(struct loop *l, const struct dispatch_outcome *o, int64_t started_ns)
{
	stats_request(l->srv->stats, o->method, o->code, (uint64_t)(now_ns() - started_ns));
}

/* Queues a job for the workers; false when their queue is full. */
static bool job_push(struct server *srv, struct job *j)
{
	pthread_mutex_lock(&srv->jobs_lock);
	bool room = srv->jobs_queued < JOBS_MAX;
	if (room) {
		j->next = NULL;
		if (srv->jobs_tail == NULL) {
			srv->jobs_head = j;
		} else {
			srv->jobs_tail->next = j;
		}
		srv->jobs_tail = j;
		srv->jobs_queued++;
		atomic_store_explicit(&srv->stats->worker_queue_depth, srv->jobs_queued, memory_order_relaxed);
		pthread_cond_signal(&srv->jobs_cond);
	}
	pthread_mutex_unlock(&srv->jobs_lock);
	return room;
}

/* The next part of a parked answer, once the client took most of the last
 * one and the answer budget has room, or took all of it (over the budget
 * parts are small); else on_send or on_tick try again. */
static void job_resume(struct loop *l, struct conn *c)
{
	if (c->busy && c->job->parked && c->state != CONN_DONE && c->out_bytes <= OUT_LOW_BYTES &&
	    (c->out_bytes == 0 || !answer_budget_spent(l))) {
		c->job->parked = false;
		if (!job_push(l->srv, c->job)) {
			c->job->parked = true; /* the queue is full: at the next tick */
		}
	}
}

/* Hands a request to the workers; false when their queue is full. The
 * frame is copied, or the input buffer itself changes hands when the frame
 * is all it holds (a bulk request is not copied on the loop). */
enum job_submitted { JOB_QUEUED, JOB_QUEUE_FULL, JOB_NO_MEMORY };

static enum job_submitted job_submit(struct loop *l, struct conn *c, const uint8_t *frame, size_t size,
				     uint64_t elements, int64_t started_ns)
{
	struct server *srv = l->srv;
	struct job *j = fault_hit(FAULT_ALLOC) ? NULL : calloc(1, sizeof(*j));
	bool whole = frame == c->in && size == c->in_size;
	uint8_t *copy = j == NULL ? NULL : whole ? c->in : malloc(size);
	if (copy == NULL) {
		free(j);
		return JOB_NO_MEMORY;
	}
	if (!whole) {
		memcpy(copy, frame, size);
	}
	/* A big request's reservation moves with it. */
	bool moves = c->input_reserved && size > INLINE_FRAME_BYTES_MAX;
	*j = (struct job){ .loop = l, .slot = c->slot, .gen = c->gen, .session = c->session, .frame = copy,
			   .frame_size = size, .frame_held = moves ? input_reservation(srv) : 0,
			   .elements = elements, .started_ns = started_ns };
	if (!job_push(srv, j)) {
		if (!whole) {
			free(copy);
		}
		free(j);
		return JOB_QUEUE_FULL;
	}
	if (whole) {
		c->in = NULL;
		c->in_size = 0;
		c->in_capacity = 0;
	}
	c->input_reserved &= !moves;
	c->busy = true;
	c->job = j;
	l->jobs_out++;
	return JOB_QUEUED;
}

static void answer_error(struct loop *l, struct conn *c, int code, const char *message)
{
	const uint8_t *response;
	size_t size;
	dispatch_reject(l->d, 0, code, message, &response, &size);
	if (size > 0) {
		conn_queue(l, c, response, size, NULL);
	}
}

/* Runs the complete requests in the connection's input, in order, until
 * one goes to a worker, its answers pile up past OUT_HIGH_BYTES, the
 * server's answer budget is spent (for a request that would go to a
 * worker), or it had FRAMES_PER_TURN. */
static void conn_process(struct loop *l, struct conn *c)
{
	size_t start = 0;
	c->stalled = false;
	for (uint32_t frames = 0; c->state == CONN_OPEN && !c->busy; frames++) {
		/* Over the answer budget, a connection runs a request only when it
		 * holds no answers: each holds one at most until answers drain. */
		if (c->out_bytes >= OUT_HIGH_BYTES || (c->out_bytes > 0 && answer_budget_spent(l))) {
			c->stalled = true;
			break;
		}
		if (frames == FRAMES_PER_TURN) {
			turn_later(l, c);
			break;
		}
		size_t size;
		int rc = proto_frame_scan(&c->frame, c->in + start, c->in_size - start, frame_bytes_max(l, c), &size);
		if (rc == PROTO_FRAME_MORE) {
			break;
		}
		if (rc != PROTO_FRAME_COMPLETE) {
			bool large = rc == PROTO_FRAME_TOO_LARGE;
			log_event("event=reject conn=%u.%u limit=%s", l->id, c->slot,
				  !large ? "msgpack_rpc" : frame_bytes_max(l, c) < l->srv->config->request_bytes_max
							   ? "preauth_request_bytes_max"
							   : "request_bytes_max");
			stats_request(l->srv->stats, STATS_METHODS_MAX - 1, large ? PROTO_TOO_LARGE : PROTO_MALFORMED, 0);
			answer_error(l, c, large ? PROTO_TOO_LARGE : PROTO_MALFORMED,
				     large ? "message over the server's size limit (send auth first when a token is set)"
					   : "not msgpack-RPC");
			conn_close_after_error(c);
			break;
		}
		const uint8_t *frame = c->in + start;
		uint64_t elements = c->frame.elements;
		int64_t started = now_ns();
		const uint8_t *response;
		size_t response_size = 0;
		struct dispatch_outcome out = { .deferred = true, .method = STATS_METHODS_MAX - 1,
						.msgid = proto_frame_msgid(frame, size) };
		if (size <= INLINE_FRAME_BYTES_MAX) {
			dispatch_frame(l->d, &c->session, DISPATCH_INLINE, frame, size, &response, &response_size, &out);
		}
		proto_frame_reset(&c->frame);
		if (out.deferred) {
			bool whole = frame == c->in && size == c->in_size;
			enum job_submitted submitted = job_submit(l, c, frame, size, elements, started);
			if (submitted == JOB_QUEUED) {
				start = whole ? 0 : start + size;
				break;
			}
			start += size;
			if (submitted == JOB_QUEUE_FULL) {
				dispatch_reject(l->d, out.msgid, PROTO_OVERLOADED, "too many requests queued; retry later",
						&response, &response_size);
				out.code = PROTO_OVERLOADED;
			} else {
				out.code = PROTO_INTERNAL;
				dispatch_reject(l->d, out.msgid, PROTO_INTERNAL, "out of memory: nothing was run", &response,
						&response_size);
			}
			out.error = true;
		} else {
			start += size;
		}
		stats_answer(l, &out, started);
		if (response_size > 0) {
			conn_queue(l, c, response, response_size, NULL);
		} else if (out.deferred) { /* not even the error could be written: closing is the answer */
			conn_finish(l, c, "out_of_memory");
		}
		if (out.close) {
			log_event("event=reject conn=%u.%u limit=msgpack_rpc", l->id, c->slot);
			conn_close_after_error(c);
		}
	}
	if (c->state != CONN_OPEN) {
		c->in_size = 0; /* closing: what follows the last request is never run */
	} else if (start > 0) {
		memmove(c->in, c->in + start, c->in_size - start);
		c->in_size -= start;
	}
	/* A big request done, its buffer and reservation go back. */
	if (c->in_capacity > INLINE_FRAME_BYTES_MAX && c->in_size <= BUF_BYTES) {
		uint8_t *in = realloc(c->in, BUF_BYTES);
		if (in != NULL) {
			c->in = in;
			c->in_capacity = BUF_BYTES;
		}
	}
	if (c->input_reserved && !input_near_big(c)) {
		input_unreserve(l->srv, input_reservation(l->srv));
		c->input_reserved = false;
	}
}

/* Input grows by doubling to 1 MiB, then by the MiB (mremap: no copy),
 * so that a 15 MiB request holds 15 MiB, not 32. */
static bool conn_append(struct conn *c, const uint8_t *data, size_t size)
{
	if (c->in_capacity - c->in_size < size) {
		size_t capacity = c->in_capacity == 0 ? BUF_BYTES : c->in_capacity;
		while (capacity - c->in_size < size) {
			capacity = capacity < (1u << 20) ? capacity * 2 : capacity + (1u << 20);
		}
		uint8_t *in = fault_hit(FAULT_ALLOC) ? NULL : realloc(c->in, capacity);
		if (in == NULL) {
			return false;
		}
		c->in = in;
		c->in_capacity = capacity;
	}
	memcpy(c->in + c->in_size, data, size);
	c->in_size += size;
	return true;
}

/* ---- completions ---- */

static struct conn *conn_new(struct loop *l, int fd)
{
	if (l->free_head == UINT32_MAX) {
		uint32_t count = l->conn_count == 0 ? 64 : l->conn_count * 2;
		struct conn **conns = count > 0xffffff ? NULL : realloc(l->conns, count * sizeof(*conns));
		if (conns == NULL) {
			return NULL;
		}
		l->conns = conns;
		for (uint32_t i = l->conn_count; i < count; i++) {
			conns[i] = calloc(1, sizeof(struct conn));
			if (conns[i] == NULL) {
				l->conn_count = i;
				return NULL;
			}
			conns[i]->slot = i;
			conns[i]->next_free = i + 1 < count ? i + 1 : l->free_head;
		}
		l->free_head = l->conn_count;
		l->conn_count = count;
	}
	struct conn *c = l->conns[l->free_head];
	ASSERT(c->state == CONN_FREE);
	l->free_head = c->next_free;
	c->state = CONN_OPEN;
	c->fd = fd;
	c->last_active_ns = l->woke_ns;
	proto_frame_reset(&c->frame);
	l->open++;
	return c;
}

/* Refuses a fresh connection, saying why; a best effort. */
static void conn_refuse(struct loop *l, int fd)
{
	const uint8_t *response;
	size_t size;
	dispatch_reject(l->d, 0, PROTO_OVERLOADED, "too many connections", &response, &size);
	ssize_t sent = send(fd, response, size, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)sent;
	close(fd);
	atomic_fetch_add(&l->srv->stats->connections_refused, 1);
}

static void conn_start(struct loop *l, int fd)
{
	if (l->stopping) {
		conn_refuse(l, fd);
		return;
	}
	struct conn *c = conn_new(l, fd);
	if (c == NULL) {
		close(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct sockaddr_storage peer;
	socklen_t peer_size = sizeof(peer);
	char peer_text[INET6_ADDRSTRLEN] = "?";
	char peer_port[8] = "0";
	if (getpeername(fd, (struct sockaddr *)&peer, &peer_size) == 0 &&
	    getnameinfo((struct sockaddr *)&peer, peer_size, peer_text, sizeof(peer_text), peer_port,
			sizeof(peer_port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(peer_text, sizeof(peer_text), "?");
	}
	bool v6 = strchr(peer_text, ':') != NULL;
	log_event("event=open conn=%u.%u peer=%s%s%s:%s", l->id, c->slot, v6 ? "[" : "", peer_text, v6 ? "]" : "",
		  peer_port);
	atomic_fetch_add(&l->srv->stats->connections_open, 1);
	atomic_fetch_add(&l->srv->stats->connections_total, 1);
	arm_recv(l, c);
}
/* Gives a connection to another loop; false when that loop is gone (it
 * stopped or failed). Whichever loop's accept completes (one usually takes
 * them all), connections are spread round robin. */
static bool conn_hand(struct loop *to, int fd)
{
	pthread_mutex_lock(&to->done_lock);
	if (to->gone) {
		pthread_mutex_unlock(&to->done_lock);
		return false;
	}
	bool room = to->handed_count < to->handed_capacity;
	if (!room) {
		uint32_t capacity = to->handed_capacity == 0 ? 64 : to->handed_capacity * 2;
		int *handed = realloc(to->handed, capacity * sizeof(*handed));
		if (handed != NULL) {
			to->handed = handed;
			to->handed_capacity = capacity;
			room = true;
		}
	}
	if (room) {
		to->handed[to->handed_count++] = fd;
	}
	pthread_mutex_unlock(&to->done_lock);
	if (!room) {
		close(fd);
		return true;
	}
	uint64_t one = 1;
	ssize_t w = write(to->wake_fd, &one, sizeof(one));
	(void)w;
	return true;
}

static void on_accept(struct loop *l, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE) && l->accepting) {
		/* The multishot ended: re-arm now, or after an error (EMFILE, ENFILE)
		 * at the next tick rather than spinning on it. */
		if (cqe->res >= 0) {
			arm_accept(l);
		} else {
			l->accept_later = true;
		}
	}
	if (cqe->res < 0) {
		if (cqe->res != -ECANCELED) {
			log_event("event=accept_error errno=%d", -cqe->res);
		}
		return;
	}
	int fd = cqe->res;
	struct server *srv = l->srv;
	if (l->stopping || atomic_load(&srv->stop) ||
	    atomic_load(&srv->stats->connections_open) >= srv->config->connections_max) {
		conn_refuse(l, fd);
		return;
	}
	uint32_t to = atomic_fetch_add(&srv->accepted, 1) % srv->config->loops;
	if (to == l->id || !conn_hand(&srv->loops[to], fd)) {
		conn_start(l, fd);
	}
}

static void buffer_return(struct loop *l, uint32_t bid)
{
	io_uring_buf_ring_add(l->buf_ring, l->bufs + (size_t)bid * BUF_BYTES, BUF_BYTES, (unsigned short)bid,
			      io_uring_buf_ring_mask(BUF_COUNT), 0);
	io_uring_buf_ring_advance(l->buf_ring, 1);
}

/* A completion of a no-op armed in place of a failing operation carries the failure. */
static struct io_uring_cqe *fault_result(struct io_uring_cqe *cqe, int *fault, struct io_uring_cqe *copy)
{
	if (*fault == 0) {
		return cqe;
	}
	*copy = (struct io_uring_cqe){ .user_data = cqe->user_data, .res = *fault };
	*fault = 0;
	return copy;
}

static void on_recv(struct loop *l, struct io_uring_cqe *cqe)
{
	struct io_uring_cqe injected;
	struct conn *c = conn_of(l, cqe->user_data);
	if (c != NULL) {
		cqe = fault_result(cqe, &c->fault_recv, &injected);
	}
	bool has_buffer = cqe->flags & IORING_CQE_F_BUFFER;
	uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
	if (c == NULL) {
		if (has_buffer) {
			buffer_return(l, bid);
		}
		return;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		c->recv_armed = c->recv_cancelling = false;
	} else {
		l->recv_multishot_seen = true;
	}
	if (cqe->res > 0 && has_buffer) {
		atomic_fetch_add_explicit(&l->srv->stats->received_bytes, (uint64_t)cqe->res, memory_order_relaxed);
		c->last_active_ns = l->woke_ns;
		/* Closing, the peer's bytes are read only to be dropped. */
		bool kept = c->state != CONN_OPEN || conn_append(c, l->bufs + (size_t)bid * BUF_BYTES, (size_t)cqe->res);
		buffer_return(l, bid);
		if (!kept) {
			conn_finish(l, c, "out_of_memory");
		} else if (c->state == CONN_OPEN) {
			conn_process(l, c);
		}
	} else if (cqe->res == 0) {
		c->peer_eof = true; /* finish what was asked, then close */
	} else if (cqe->res == -ENOBUFS || cqe->res == -ECANCELED) {
		/* The pool ran dry (buffers return as this batch is handled), or we
		 * stopped the receive: read again when wanted. */
	} else if (cqe->res == -EINVAL && !l->recv_single && !l->recv_multishot_seen) {
		l->recv_single = true;
		log_event("event=recv_multishot_unsupported loop=%u", l->id);
	} else if (cqe->res != -EINTR && cqe->res != -EAGAIN) {
		conn_finish(l, c, cqe->res == -ECONNRESET ? "reset" : "recv_error");
	}
	conn_settle(l, c);
}

static void on_send(struct loop *l, struct io_uring_cqe *cqe)
{
	struct io_uring_cqe injected;
	struct conn *c = conn_of(l, cqe->user_data);
	if (c == NULL) {
		return;
	}
	cqe = fault_result(cqe, &c->fault_send, &injected);
	ASSERT(c->send_armed && c->out_head != NULL);
	c->send_armed = false;
	if (cqe->res < 0 && cqe->res != -EINTR && cqe->res != -EAGAIN) {
		conn_finish(l, c, cqe->res == -EPIPE || cqe->res == -ECONNRESET ? "peer_gone" : "send_error");
	}
	if (c->state == CONN_DONE) {
		out_drop(l, c);
		conn_settle(l, c);
		return;
	}
	struct chunk *h = c->out_head;
	size_t sent = cqe->res > 0 ? (size_t)cqe->res : 0; /* short sends happen: keep the offset */
	atomic_fetch_add_explicit(&l->srv->stats->sent_bytes, sent, memory_order_relaxed);
	ASSERT(sent <= h->size - h->offset);
	if (sent > 0) {
		c->last_active_ns = l->woke_ns;
	}
	h->offset += sent;
	out_account(l, c, 0, sent);
	if (h->offset == h->size) {
		c->out_head = h->next;
		if (c->out_head == NULL) {
			c->out_tail = NULL;
		}
		chunk_free(l, h);
	}
	if (c->out_head != NULL) {
		arm_send(l, c);
	}
	if (c->stalled && c->out_bytes <= OUT_LOW_BYTES) {
		conn_process(l, c);
	}
	job_resume(l, c);
	conn_settle(l, c);
}

/* Answers from the workers, and connections other loops handed over. */
static void on_wake(struct loop *l)
{
	pthread_mutex_lock(&l->done_lock);
	struct job *j = l->done;
	l->done = NULL;
	int *handed = l->handed;
	uint32_t handed_count = l->handed_count;
	l->handed = NULL;
	l->handed_count = l->handed_capacity = 0;
	pthread_mutex_unlock(&l->done_lock);
	for (uint32_t i = 0; i < handed_count; i++) {
		conn_start(l, handed[i]);
	}
	free(handed);
	while (j != NULL) {
		struct job *next = j->next;
		size_t transit = j->response != NULL ? j->response_size : 0;
		struct conn *c = conn_of(l, user_data(OP_RECV, j->slot, j->gen));
		bool last = !j->outcome.partial || atomic_load(&j->cancelled) || c == NULL;
		if (c != NULL) {
			ASSERT(c->busy && c->job == j);
			if (j->response != NULL) {
				conn_queue(l, c, j->response, j->response_size, j->response);
				j->response = NULL;
			}
		}
		/* Counted in the budget now (or dropped): no longer on its way. */
		atomic_fetch_sub(&l->srv->answers_in_transit, transit);
		if (!last && c->state != CONN_DONE) {
			j->parked = true; /* more parts: as the client takes this one */
			job_resume(l, c);
			conn_settle(l, c);
			j = next;
			continue;
		}
		l->jobs_out--;
		if (!atomic_load(&j->cancelled)) {
			stats_answer(l, &j->outcome, j->started_ns);
		}
		if (c != NULL) {
			c->busy = false;
			c->job = NULL;
			c->session = j->session; /* auth is never deferred, but keep them one */
			if (j->outcome.close) {
				conn_close_after_error(c);
			}
			conn_process(l, c);
			conn_settle(l, c);
		}
		job_free(j);
		j = next;
	}
	arm_wake(l);
}

/* A lingering connection is let go after LINGER_S, or at shutdown once
 * the peer has acknowledged every byte we sent. */
static bool linger_over_at(const struct loop *l, const struct conn *c, int64_t now)
{
	int unacked = 1;
	return now - c->linger_since_ns > LINGER_S * 1000000000ll ||
	       (l->stopping && ioctl(c->fd, SIOCOUTQ, &unacked) == 0 && unacked == 0);
}

static void stop_begin(struct loop *l)
{
	l->stopping = true;
	l->stop_deadline_ns = now_ns() + SHUTDOWN_GRACE_S * 1000000000ll;
	if (l->accepting) {
		l->accepting = false;
		struct io_uring_sqe *sqe = sqe_get(l);
		io_uring_prep_cancel64(sqe, user_data(OP_ACCEPT, 0, 0), 0);
		io_uring_sqe_set_data64(sqe, user_data(OP_CANCEL, 0, 0));
	}
	/* Requests already received, even in part, still run; idle connections close now. */
	int64_t now = now_ns();
	for (uint32_t i = 0; i < l->conn_count; i++) {
		struct conn *c = l->conns[i];
		if (c->state == CONN_LINGER && linger_over_at(l, c, now)) {
			conn_finish(l, c, "shutdown");
		}
		if (c->state != CONN_FREE) {
			conn_settle(l, c);
		}
	}
}

static void on_tick(struct loop *l)
{
	if (l->accept_later && l->accepting) {
		l->accept_later = false;
		arm_accept(l);
	}
	uint32_t idle_s = l->srv->config->idle_timeout_s;
	int64_t now = now_ns();
	for (uint32_t i = 0; i < l->conn_count; i++) {
		struct conn *c = l->conns[i];
		if (c->state == CONN_FREE || c->state == CONN_DONE) {
			continue;
		}
		bool idle = idle_s > 0 && now - c->last_active_ns > (int64_t)idle_s * 1000000000ll;
		bool late = l->stopping && now > l->stop_deadline_ns;
		bool linger_over = c->state == CONN_LINGER && linger_over_at(l, c, now);
		/* Idle: nothing received and nothing of ours taken for that long
		 * (a client that stopped reading is idle too), no request running
		 * (an answer waiting for the client to take its last part is not). */
		if (late || linger_over || (idle && (!c->busy || c->job->parked))) {
			conn_finish(l, c, late ? "shutdown_grace_over" : linger_over ? "linger_over" : "idle_timeout");
		} else if (c->stalled && c->out_bytes < OUT_HIGH_BYTES) {
			conn_process(l, c); /* waited for the answer budget */
		} else {
			job_resume(l, c);
		}
		conn_settle(l, c);
	}
	arm_tick(l);
}

static void flush_sends(struct loop *l)
{
	while (l->send_head != UINT32_MAX) {
		struct conn *c = l->conns[l->send_head];
		l->send_head = c->next_send;
		c->want_send = false;
		if (c->state != CONN_FREE && c->state != CONN_DONE && !c->send_armed && c->out_head != NULL) {
			arm_send(l, c);
		}
	}
}

/* Connections that left requests in their input for the others' sake. */
static void flush_turns(struct loop *l)
{
	uint32_t head = l->turn_head;
	l->turn_head = UINT32_MAX;
	while (head != UINT32_MAX) {
		struct conn *c = l->conns[head];
		head = c->next_turn;
		c->want_turn = false;
		if (c->state != CONN_FREE) {
			conn_process(l, c);
			conn_settle(l, c);
		}
	}
}

/* ---- workers ---- */

struct worker {
	struct server *srv;
	struct dispatch *d; /* made before the thread starts: a worker cannot fail later */
	pthread_t thread;
};

/* Waits until the trees being built leave room for this one's. */
static void parse_acquire(struct server *srv, size_t bytes)
{
	if (bytes == 0) {
		return;
	}
	pthread_mutex_lock(&srv->parse_lock);
	while (srv->parse_bytes > 0 && srv->parse_bytes + bytes > PARSE_BYTES_MAX) {
		pthread_cond_wait(&srv->parse_cond, &srv->parse_lock);
	}
	srv->parse_bytes += bytes;
	pthread_mutex_unlock(&srv->parse_lock);
}

static void parse_release(struct server *srv, size_t bytes)
{
	if (bytes == 0) {
		return;
	}
	pthread_mutex_lock(&srv->parse_lock);
	srv->parse_bytes -= bytes;
	pthread_cond_broadcast(&srv->parse_cond);
	pthread_mutex_unlock(&srv->parse_lock);
}

/* The size of the next part a worker makes: PART_BYTES_BULK while the
 * answers held, those on their way from workers and the bulk parts being
 * made, this one too, fit in a sixteenth of the answer budget (*bulk: this
 * one is reserved, give it back once made); PART_BYTES under the budget;
 * one small part per connection past it. Bulk parts are for a few clients
 * walking a city: many clients that do not read get small parts long
 * before the budget is spent, and few bulk buffers exist at once (freed,
 * the allocator keeps their pages: 100 clients that never read city-sized
 * answers peak at 256 MiB RssAnon so, 408 with an eighth, 644 with bulk
 * parts wherever the budget had room; 143 with no bulk parts). */
static size_t part_bytes(struct server *srv, bool *bulk)
{
	uint64_t held = atomic_load(&srv->stats->answer_bytes) + atomic_load(&srv->answers_in_transit);
	uint64_t max = srv->config->answer_bytes_max;
	*bulk = false;
	if (held >= max) {
		return PART_BYTES_TIGHT;
	}
	size_t reserved = atomic_load(&srv->bulk_reserved);
	while (held + reserved + PART_BULK_HELD <= max / 16) {
		if (atomic_compare_exchange_weak(&srv->bulk_reserved, &reserved, reserved + PART_BULK_HELD)) {
			*bulk = true;
			return PART_BYTES_BULK;
		}
	}
	return PART_BYTES;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct server *srv = w->srv;
	struct dispatch *d = w->d;
	while (true) {
		pthread_mutex_lock(&srv->jobs_lock);
		while (srv->jobs_head == NULL && !srv->workers_stop) {
			pthread_cond_wait(&srv->jobs_cond, &srv->jobs_lock);
		}
		struct job *j = srv->jobs_head;
		if (j == NULL) {
			pthread_mutex_unlock(&srv->jobs_lock);
			break;
		}
		srv->jobs_head = j->next;
		if (srv->jobs_head == NULL) {
			srv->jobs_tail = NULL;
		}
		srv->jobs_queued--;
		atomic_store_explicit(&srv->stats->worker_queue_depth, srv->jobs_queued, memory_order_relaxed);
		pthread_mutex_unlock(&srv->jobs_lock);

		/* A job whose connection was cut is not run: its answer has nowhere
		 * to go, and shutdown's grace must not wait for it. */
		if (!atomic_load(&j->cancelled)) {
			size_t parse = j->frame_size > INLINE_FRAME_BYTES_MAX ? j->elements * PROTO_PARSE_BYTES_PER_ELEMENT : 0;
			parse_acquire(srv, parse);
			const uint8_t *response;
			bool bulk;
			size_t part = part_bytes(srv, &bulk);
			dispatch_frame_part(d, &j->session, j->frame, j->frame_size, part, &j->resume, &response,
					    &j->response_size, &j->outcome);
			/* The answer changes hands, not bytes: a many-megabyte result is copied once, into the socket. */
			j->response = j->response_size > 0 ? dispatch_take_response(d, &j->response_size) : NULL;
			if (j->response != NULL) {
				atomic_fetch_add(&srv->answers_in_transit, j->response_size);
			}
			if (bulk) { /* made, and counted in transit: the reservation goes back */
				atomic_fetch_sub(&srv->bulk_reserved, PART_BULK_HELD);
			}
			if (parse > 0) {
				dispatch_trim(d); /* a big request's parse memory goes back to the system */
			}
			parse_release(srv, parse);
		}
		struct loop *l = j->loop;
		pthread_mutex_lock(&l->done_lock);
		j->next = l->done;
		l->done = j;
		pthread_mutex_unlock(&l->done_lock);
		uint64_t one = 1;
		ssize_t written = write(l->wake_fd, &one, sizeof(one));
		(void)written;
	}
	return NULL;
}

/* ---- the loop ---- */

static int loop_init(struct loop *l)
{
	/* Completions run when the loop asks for them (DEFER_TASKRUN) instead of
	 * interrupting it with an IPI per packet; the ring starts disabled so
	 * that the loop's own thread, enabling it, is its single issuer. Kernels
	 * before 6.1 refuse the flags: fall back to a plain ring (and before 6.0
	 * to single receives). ARREARSD_RING=plain takes both fallbacks at once,
	 * so that the tests cover them on a newer kernel. */
	const char *ring = getenv("ARREARSD_RING");
	bool plain = ring != NULL && strcmp(ring, "plain") == 0;
	l->recv_single = plain;
	struct io_uring_params params = { .flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
						    IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
					  .cq_entries = CQ_ENTRIES };
	int rc = plain ? -EINVAL : io_uring_queue_init_params(RING_ENTRIES, &l->ring, &params);
	if (rc == -EINVAL) {
		params = (struct io_uring_params){ .flags = IORING_SETUP_CQSIZE, .cq_entries = CQ_ENTRIES };
		rc = io_uring_queue_init_params(RING_ENTRIES, &l->ring, &params);
	}
	if (rc < 0) {
		return rc;
	}
	l->ring_disabled = params.flags & IORING_SETUP_R_DISABLED;
	l->ring_ready = true;
	/* liburing 2.3 has no io_uring_setup_buf_ring: map and register the ring by hand. */
	size_t ring_bytes = BUF_COUNT * sizeof(struct io_uring_buf);
	void *mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (mem == MAP_FAILED) {
		return -errno;
	}
	l->buf_ring = mem;
	io_uring_buf_ring_init(l->buf_ring);
	struct io_uring_buf_reg reg = { .ring_addr = (uint64_t)(uintptr_t)mem, .ring_entries = BUF_COUNT,
					.bgid = BUF_GROUP };
	rc = io_uring_register_buf_ring(&l->ring, &reg, 0);
	if (rc < 0) {
		return rc;
	}
	l->bufs = malloc((size_t)BUF_COUNT * BUF_BYTES);
	if (l->bufs == NULL) {
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < BUF_COUNT; i++) {
		io_uring_buf_ring_add(l->buf_ring, l->bufs + (size_t)i * BUF_BYTES, BUF_BYTES, (unsigned short)i,
				      io_uring_buf_ring_mask(BUF_COUNT), (int)i);
	}
	io_uring_buf_ring_advance(l->buf_ring, BUF_COUNT);
	l->wake_fd = eventfd(0, EFD_CLOEXEC);
	l->d = dispatch_new(l->srv->config->store, &l->srv->shared);
	if (l->wake_fd < 0 || l->d == NULL) {
		return -ENOMEM;
	}
	pthread_mutex_init(&l->done_lock, NULL);
	l->free_head = UINT32_MAX;
	l->send_head = UINT32_MAX;
	l->turn_head = UINT32_MAX;
	l->accepting = true;
	return 0;
}

static void loop_free(struct loop *l)
{
	for (uint32_t i = 0; i < l->conn_count; i++) {
		struct conn *c = l->conns[i];
		if (c->state != CONN_FREE) { /* a loop that broke: its ring is going away with it */
			conn_finish(l, c, "loop_stopped");
			c->recv_armed = c->send_armed = c->busy = false;
			conn_release(l, c);
		}
		free(c);
	}
	free(l->conns);
	for (uint32_t i = 0; i < l->handed_count; i++) {
		close(l->handed[i]);
	}
	while (l->done != NULL) { /* answers for a loop that stopped early */
		struct job *next = l->done->next;
		job_free(l->done);
		l->done = next;
	}
	free(l->handed);
	while (l->spare != NULL) {
		struct chunk *next = l->spare->next;
		free(l->spare->data);
		free(l->spare);
		l->spare = next;
	}
	dispatch_free(l->d);
	if (l->ring_ready) {
		io_uring_queue_exit(&l->ring);
	}
	if (l->buf_ring != NULL) {
		munmap(l->buf_ring, BUF_COUNT * sizeof(struct io_uring_buf));
	}
	free(l->bufs);
	if (l->wake_fd >= 0) {
		close(l->wake_fd);
	}
	pthread_mutex_destroy(&l->done_lock);
}

/* From now on connections accepted elsewhere stay there; those handed
 * over before are closed by loop_free. */
static void loop_leave(struct loop *l)
{
	pthread_mutex_lock(&l->done_lock);
	l->gone = true;
	pthread_mutex_unlock(&l->done_lock);
}

/* A loop that cannot go on stops the whole server (exit status 1) rather
 * than leave its connections unanswered. */
static void loop_fail(struct loop *l, int error)
{
	log_event("event=loop_error loop=%u errno=%d", l->id, error);
	atomic_store(&l->srv->failed, true);
	kill(getpid(), SIGTERM);
}

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	if (l->ring_disabled) {
		/* liburing 2.3 declares io_uring_enable_rings but does not export it. */
		if (syscall(__NR_io_uring_register, l->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0) {
			loop_fail(l, errno);
			loop_leave(l);
			return NULL;
		}
	}
	log_event("event=loop loop=%u ring=%s recv=%s", l->id, l->ring_disabled ? "deferred" : "plain",
		  l->recv_single ? "single" : "multishot");
	arm_accept(l);
	arm_wake(l);
	arm_tick(l);
	while (!(l->stopping && l->open == 0 && l->jobs_out == 0)) {
		flush_turns(l);
		flush_sends(l);
		/* With requests left to run, collect completions without waiting. */
		int rc = l->turn_head != UINT32_MAX ? io_uring_submit_and_get_events(&l->ring)
						    : io_uring_submit_and_wait(&l->ring, 1);
		l->woke_ns = now_ns();
		if (rc < 0 && rc != -EINTR && rc != -EBUSY) {
			loop_fail(l, -rc);
			break;
		}
		struct io_uring_cqe *cqe;
		unsigned head;
		unsigned seen = 0;
		io_uring_for_each_cqe(&l->ring, head, cqe)
		{
			switch (cqe->user_data >> 56) {
			case OP_ACCEPT:
				on_accept(l, cqe);
				break;
			case OP_RECV:
				on_recv(l, cqe);
				break;
			case OP_SEND:
				on_send(l, cqe);
				break;
			case OP_WAKE:
				on_wake(l);
				break;
			case OP_TICK:
				on_tick(l);
				break;
			default:
				break;
			}
			if (++seen == CQE_BATCH) {
				break;
			}
		}
		io_uring_cq_advance(&l->ring, seen);
		/* Stopping begins with every posted completion handled: data
		 * received is then in a connection's input or still in its socket. */
		if (atomic_load(&l->srv->stop) && !l->stopping && io_uring_cq_ready(&l->ring) == 0) {
			stop_begin(l);
		}
	}
	loop_leave(l);
	return NULL;
}

/* Binds one address getaddrinfo gave; its numeric form and port to text/port. */
static int listen_bind(const struct server_config *config, const struct addrinfo *ai, uint16_t *port, char *text,
		       size_t text_size)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
		int rc = -errno;
		if (fd >= 0) {
			close(fd);
		}
		return rc;
	}
	/* After a SIGKILL the kernel tears the dead process's rings down in the
	 * background, and a multishot accept keeps its listening socket bound
	 * until then (~0.1 s): a supervisor restarting at once would fail. Wait
	 * for the address a while instead of giving up. */
	int64_t deadline = now_ns() + BIND_WAIT_S * 1000000000ll;
	int rc;
	for (bool logged = false; (rc = bind(fd, ai->ai_addr, ai->ai_addrlen)) != 0 && errno == EADDRINUSE &&
				  now_ns() < deadline;
	     logged = true) {
		if (!logged) {
			log_event("event=bind_wait port=%u reason=address_in_use", config->port);
		}
		nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000000 }, NULL);
	}
	if (rc != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	struct sockaddr_storage addr;
	socklen_t len = sizeof(addr);
	char service[8] = "0";
	if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0 ||
	    getnameinfo((struct sockaddr *)&addr, len, text, (socklen_t)text_size, service, sizeof(service),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(text, text_size, "?");
	}
	*port = (uint16_t)strtoul(service, NULL, 10);
	return fd;
}

/* Resolves config->host (numeric IPv4 or IPv6, or a name: getaddrinfo) and
 * listens on the first address that binds, in getaddrinfo's order. */
static int listen_socket(const struct server_config *config, uint16_t *port, char *text, size_t text_size)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	char service[8];
	snprintf(service, sizeof(service), "%u", config->port);
	struct addrinfo *res;
	int gai = getaddrinfo(config->host, service, &hints, &res);
	if (gai != 0) {
		log_event("event=resolve_failed host=%s reason=\"%s\"", config->host, gai_strerror(gai));
		return -EADDRNOTAVAIL;
	}
	int rc = -EADDRNOTAVAIL;
	for (const struct addrinfo *ai = res; ai != NULL && rc < 0; ai = ai->ai_next) {
		rc = listen_bind(config, ai, port, text, text_size);
		if (rc < 0 && ai->ai_next != NULL) {
			log_event("event=bind_failed host=%s family=%s reason=\"%s\"", config->host,
				  ai->ai_family == AF_INET6 ? "ipv6" : "ipv4", strerror(-rc));
		}
	}
	freeaddrinfo(res);
	return rc;
}

static int threads_start(struct server *srv)
{
	const struct server_config *cfg = srv->config;
	for (uint32_t i = 0; i < cfg->workers; i++) {
		srv->workers[i].srv = srv;
		srv->workers[i].d = dispatch_new(cfg->store, &srv->shared);
		if (srv->workers[i].d == NULL) {
			return -ENOMEM;
		}
	}
	for (uint32_t i = 0; i < cfg->loops; i++) {
		struct loop *l = &srv->loops[i];
		int rc = loop_init(l);
		if (rc != 0) {
			return rc;
		}
	}
	/* Named, so that top -H, perf and /proc/PID/task/N/comm tell them apart
	 * (15 characters at most; i is below SERVER_THREADS_MAX). */
	static_assert(SERVER_THREADS_MAX <= 1000, "thread numbers of three digits");
	char name[16];
	for (uint32_t i = 0; i < cfg->loops; i++) {
		if (pthread_create(&srv->loops[i].thread, NULL, loop_main, &srv->loops[i]) != 0) {
			return -EAGAIN;
		}
		snprintf(name, sizeof(name), "loop%u", i % 1000u);
		pthread_setname_np(srv->loops[i].thread, name);
	}
	for (uint32_t i = 0; i < cfg->workers; i++) {
		if (pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]) != 0) {
			return -EAGAIN;
		}
		snprintf(name, sizeof(name), "worker%u", i % 1000u);
		pthread_setname_np(srv->workers[i].thread, name);
	}
	return 0;
}

static void threads_stop(struct server *srv)
{
	const struct server_config *cfg = srv->config;
	atomic_store(&srv->stop, true);
	for (uint32_t i = 0; i < cfg->loops; i++) {
		uint64_t one = 1;
		if (srv->loops[i].wake_fd >= 0 && write(srv->loops[i].wake_fd, &one, sizeof(one)) < 0) {
			log_event("event=wake_failed loop=%u", i);
		}
	}
	for (uint32_t i = 0; i < cfg->loops; i++) {
		if (srv->loops[i].thread != 0) {
			pthread_join(srv->loops[i].thread, NULL);
		}
	}
	pthread_mutex_lock(&srv->jobs_lock);
	srv->workers_stop = true;
	pthread_cond_broadcast(&srv->jobs_cond);
	pthread_mutex_unlock(&srv->jobs_lock);
	for (uint32_t i = 0; i < cfg->workers; i++) {
		if (srv->workers[i].thread != 0) {
			pthread_join(srv->workers[i].thread, NULL);
		}
	}
}

int server_run(const struct server_config *config)
{
	sigset_t signals;
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &signals, NULL); /* threads inherit it */

	/* Big blocks (a large request's parse, a city-sized answer) are mapped
	 * and unmapped on their own: glibc's moving threshold would otherwise
	 * keep them on the heap after every client has gone. One part of an
	 * answer is not big: its buffer is made an eighth over its size, and
	 * doubles (to 2 × PART_BULK_HELD at most) only when one person's answer
	 * passes that; parts are made and freed a part at a time on a bulk
	 * pass, and mapped, each cost its pages' faults and an munmap (3.5% of a
	 * city walk's CPU with 512 KiB parts, 8-10% with 4 MiB, BENCH.md). */
#ifndef __SANITIZE_ADDRESS__ /* glibc's allocator only */
	mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
#endif
	struct server *srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		return -ENOMEM;
	}
	srv->config = config;
	srv->shared = (struct dispatch_shared){ .token = config->token, .token_size = config->token_size,
						.persons_max = config->persons_max, .stats = config->stats };
	ASSERT(config->stats != NULL);
	srv->stats = config->stats;
	pthread_mutex_init(&srv->jobs_lock, NULL);
	pthread_cond_init(&srv->jobs_cond, NULL);
	pthread_mutex_init(&srv->parse_lock, NULL);
	pthread_cond_init(&srv->parse_cond, NULL);
	srv->loops = calloc(config->loops, sizeof(*srv->loops));
	srv->workers = calloc(config->workers, sizeof(*srv->workers));
	for (uint32_t i = 0; srv->loops != NULL && i < config->loops; i++) {
		srv->loops[i] = (struct loop){ .srv = srv, .id = i, .wake_fd = -1 };
	}
	uint16_t port = 0;
	char addr[NI_MAXHOST];
	int rc = srv->loops == NULL || srv->workers == NULL ? -ENOMEM
							     : listen_socket(config, &port, addr, sizeof(addr));
	if (rc >= 0) {
		srv->listen_fd = rc;
		log_event("event=listen addr=%s port=%u loops=%u workers=%u%s%s", addr, port, config->loops,
			  config->workers, strcmp(addr, config->host) != 0 ? " host=" : "",
			  strcmp(addr, config->host) != 0 ? config->host : "");
		rc = threads_start(srv);
	}
	/* Summaries missing or made under older policies are rebuilt now and after each policy.put. */
	struct summary_thread *summaries =
		rc == 0 && config->store != NULL ? summary_thread_start(config->store, &srv->shared.policy_generation)
						 : NULL;
	if (rc == 0) {
		int sig = 0;
		sigdelset(&signals, SIGPIPE);
		atomic_store(&srv->stats->serving, true);
		sigwait(&signals, &sig);
		atomic_store(&srv->stats->serving, false);
		log_event("event=shutdown signal=%s%s", sig == SIGTERM ? "SIGTERM" : "SIGINT",
			  atomic_load(&srv->failed) ? " reason=loop_error" : "");
	} else {
		log_event("event=start_failed errno=%d", -rc);
	}
	summary_thread_stop(summaries);
	threads_stop(srv);
	if (rc == 0 && atomic_load(&srv->failed)) { /* also a loop that failed while stopping */
		rc = -EIO;
	}
	if (rc == 0) {
		/* Stopped clean: every connection, job and byte held came back. */
		for (uint32_t i = 0; i < config->loops; i++) {
			ASSERT(srv->loops[i].open == 0 && srv->loops[i].jobs_out == 0 && srv->loops[i].done == NULL);
		}
		ASSERT(srv->jobs_queued == 0 && srv->jobs_head == NULL && srv->parse_bytes == 0);
		ASSERT(atomic_load(&srv->stats->answer_bytes) == 0 && atomic_load(&srv->input_bytes) == 0);
	}
	for (uint32_t i = 0; srv->loops != NULL && i < config->loops; i++) {
		loop_free(&srv->loops[i]);
	}
	if (srv->listen_fd > 0) {
		close(srv->listen_fd);
	}
	for (uint32_t i = 0; srv->workers != NULL && i < config->workers; i++) {
		dispatch_free(srv->workers[i].d);
	}
	free(srv->loops);
	free(srv->workers);
	pthread_mutex_destroy(&srv->jobs_lock);
	pthread_cond_destroy(&srv->jobs_cond);
	pthread_mutex_destroy(&srv->parse_lock);
	pthread_cond_destroy(&srv->parse_cond);
	free(srv);
	return rc;
}
