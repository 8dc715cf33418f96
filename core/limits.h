/* limits: every bound the server and its protocol keep, in one place, with
 * the reason for each and how they relate (checked when compiled). A limit
 * met is answered (too_large, overloaded, a closed connection) or waited
 * for (backpressure), never a crash and never unbounded memory.
 * RELIABILITY.md has the same table for operators. */
#ifndef ARREARS_LIMITS_H
#define ARREARS_LIMITS_H

#include <assert.h>

/* ---- one request (proto/) ---- */
#define PROTO_REQUEST_BYTES_MAX (16u << 20) /* one message (--max-request may lower or raise it); larger: too_large */
#define PROTO_PERSONS_MAX 100000u           /* persons, ids, items, accounts, or a scan's limit; SPEC §5.1 */
#define PROTO_PERSON_SLOTS_MAX (1u << 18)   /* one person: 29 cities × 5 types × 1800 months fit; larger: too_large */
#define PROTO_DEPTH_MAX 32u                 /* our messages nest 8 deep; deeper is malformed */
/* Elements of one message: msgpack-c's tree takes 24 bytes an element, so
 * 16 MiB of one-byte elements would take 400 MB to parse. The largest real
 * requests (16 MiB of slot maps) have under 3 million. More: too_large. */
#define PROTO_ELEMENTS_MAX (1u << 22)
#define PROTO_PARSE_BYTES_PER_ELEMENT 24u   /* sizeof(msgpack_object), checked in proto/message.c */
#define IDEM_KEY_BYTES_MAX 255u             /* an idempotency key; an LMDB key may be 511 */
#define TOKEN_BYTES_MAX 4096u               /* --token-file's first line: a secret, not a document */

/* ---- the request path (io/dispatch.c) ---- */
#define DISPATCH_CITIES_MAX 4096u  /* city policies held by each thread; beyond: too_large */
#define DISPATCH_INLINE_WEIGHT 32u /* persons a request may carry and still run on an event loop */
/* Policy revisions (SPEC 3.4). */
#define POLICY_PINS_MAX 64u          /* cities in one request's policy_revisions; beyond: too_large */
#define POLICY_REVISIONS_MAX 4096u   /* revisions of one city: a history answer stays a few MiB; beyond: too_large */
#define POLICY_MEMORY_REVISIONS_MAX 1024u /* revisions eval without --data keeps (all cities); beyond: too_large */
#define POLICY_WARNINGS_MAX 16u      /* policy.put warnings listed; more are counted in one last line */

/* ---- the server (io/server.c) ---- */
#define SERVER_THREADS_MAX 64u                  /* event loops (--threads), and as many workers */
#define SERVER_CONNECTIONS_MAX_DEFAULT 10000u   /* --max-connections; beyond: overloaded, closed */
#define SERVER_IDLE_TIMEOUT_S_DEFAULT 300u      /* --idle-timeout: no progress either way for this long */
#define SERVER_PREAUTH_FRAME_BYTES_MAX 8192u    /* one request before auth (with a token): auth fits, nothing more */
#define INLINE_FRAME_BYTES_MAX (64u << 10)      /* larger requests go to a worker unparsed */
#define OUT_HIGH_BYTES (1u << 20)               /* a connection's unsent answers: past it, nothing is read or run */
#define OUT_LOW_BYTES (256u << 10)              /* ... until they drain below this */
#define PART_BYTES (512u << 10)                 /* a worker's answer is made in parts of this, as the client takes them */
#define PART_BYTES_TIGHT (16u << 10)            /* ... and of this while the answer budget is spent */
/* ... and of this while a sixteenth of the budget holds the answers held
 * and the bulk parts being made (io/server.c part_bytes): a scan page of
 * 10,000 persons (1-4 MB) then comes in one or two parts, and each later
 * part of a page walks its persons in the store again (12-17% of a city
 * walk's CPU at PART_BYTES, BENCH.md issue 10). A bulk part passes
 * OUT_HIGH_BYTES: its connection is not read until it drains. */
#define PART_BYTES_BULK (4u << 20)
/* Answers held for all clients together (--max-answer-memory): past it, a
 * connection holding answers runs nothing more until they drain, and one
 * holding none gets parts of PART_BYTES_TIGHT. With each answer made a part
 * at a time, 100 clients that never read city-sized answers keep the server
 * well under 512 MiB outside the map. */
#define SERVER_ANSWER_BYTES_MAX_DEFAULT (256ull << 20)
/* Big requests (past INLINE_FRAME_BYTES_MAX) being received or waiting
 * for a worker, all connections together: each is admitted whole, with a
 * reservation of the largest request (--max-request), before its input may
 * grow; others are not read until a reservation comes back. A client that
 * sends big requests and never reads their answers holds its reservation
 * until the idle timeout. */
#define INPUT_BYTES_MAX (256u << 20)
/* msgpack-c trees being built for big requests at once, whatever the
 * number of workers: a worker waits its turn. */
#define PARSE_BYTES_MAX (192u << 20)
#define JOBS_MAX 4096u          /* requests queued for the workers; beyond: overloaded */
#define FRAMES_PER_TURN 64u     /* requests one connection runs before the others get a turn */
#define SHUTDOWN_GRACE_S 10     /* at SIGTERM, time left for requests in flight */
#define LINGER_S 2              /* after our last answer, time the peer has to close */
#define BIND_WAIT_S 10          /* at start, time to wait for an address still held by a dead process */

/* ---- the store (store/) ---- */
#define STORE_MAP_BYTES_MAX (1ull << 40)   /* default map (--map-max): 1 TiB of address space, mapped at open */
#define STORE_READERS_MAX 1024u            /* read transactions open at once, all processes together */
#define STORE_DISK_FULL_BYTES (1ull << 20) /* free space under which a failed write means "disk full" */

/* ---- how they relate ---- */
static_assert(PROTO_REQUEST_BYTES_MAX > INLINE_FRAME_BYTES_MAX, "big requests exist, and go to workers");
static_assert(SERVER_PREAUTH_FRAME_BYTES_MAX >= TOKEN_BYTES_MAX + 64, "auth with the longest token fits before auth");
static_assert(SERVER_PREAUTH_FRAME_BYTES_MAX < INLINE_FRAME_BYTES_MAX,
	      "before auth every request is parsed on the loop, where auth is checked first");
static_assert(DISPATCH_INLINE_WEIGHT <= PROTO_PERSONS_MAX, "persons per request bound inline requests too");
static_assert(IDEM_KEY_BYTES_MAX <= 511, "an idempotency key is an LMDB key (511 bytes at most)");
static_assert(STORE_READERS_MAX >= 2 * SERVER_THREADS_MAX + 64,
	      "a read transaction per loop and worker, and room for other processes");
static_assert((unsigned long long)PROTO_ELEMENTS_MAX * PROTO_PARSE_BYTES_PER_ELEMENT <= PARSE_BYTES_MAX,
	      "the largest request parses within the parse budget");
static_assert(PROTO_REQUEST_BYTES_MAX <= INPUT_BYTES_MAX / 8, "eight of the largest requests are admitted at once");
static_assert(OUT_LOW_BYTES < OUT_HIGH_BYTES, "hysteresis");
static_assert(OUT_LOW_BYTES + PART_BYTES <= OUT_HIGH_BYTES,
	      "a part resumed at the low mark fits under the high (a bulk part does not: see PART_BYTES_BULK)");
static_assert(PART_BYTES * 2 * SERVER_THREADS_MAX <= SERVER_ANSWER_BYTES_MAX_DEFAULT,
	      "every worker's part in flight fits the default answer budget");
static_assert(LINGER_S < SHUTDOWN_GRACE_S, "a lingering connection ends within the grace");

#endif
