/* dispatch: the one request path (frame → parse → validate → compute →
 * encode) shared by the evaluator, the server, the fuzzer and the benchmarks. */
#ifndef ARREARS_DISPATCH_H
#define ARREARS_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/proto.h"
#include "../store/store.h"

struct stats;


/* What every dispatch of a process shares (the server's threads; eval has one). */
struct dispatch_shared {
	uint64_t policy_generation;             /* bumped (__atomic) after each committed policy.put */
	const char *token;                      /* NULL: no auth */
	size_t token_size;
	uint32_t persons_max;                   /* persons/ids/items/accounts per request */
	struct stats *stats;                    /* NULL: server.stats has no counters */
};

/* One connection's state across its requests. */
struct dispatch_session {
	bool authed;
};

enum dispatch_mode {
	DISPATCH_ALL,    /* run every request */
	DISPATCH_INLINE, /* defer writes and heavy requests instead of running them */
};

struct dispatch_outcome {
	bool close;      /* malformed: close the connection after the response */
	bool deferred;   /* not run (DISPATCH_INLINE): run it again with DISPATCH_ALL elsewhere */
	bool partial;    /* dispatch_frame_part: more parts of this answer follow */
	bool error;      /* the response is an error */
	uint8_t code;    /* its error code (enum proto_code), 0 for a result */
	uint32_t method; /* stats row of the method */
	uint32_t msgid;  /* of the request, 0 when unreadable */
};

struct dispatch;

/* store: NULL for inline persons only (policies then live in memory);
 * otherwise policies are loaded from it and every write goes to it. shared
 * may be NULL (no auth, default limits, no counters). NULL when out of
 * memory or the stored policies do not load. */
struct dispatch *dispatch_new(struct store *store, struct dispatch_shared *shared);
void dispatch_free(struct dispatch *d);

/* Handles one complete frame: bytes proto_frame_scan returned
 * PROTO_FRAME_COMPLETE for, exactly frame_size of them (the parse reads
 * them without bounds checks, proto_message_parse). session may be NULL
 * (trusted). On return *response (size *response_size, 0 for a
 * notification or a deferral) borrows d until the next call. */
void dispatch_frame(struct dispatch *d, struct dispatch_session *session, uint8_t mode, const uint8_t *frame,
		    size_t frame_size, const uint8_t **response, size_t *response_size, struct dispatch_outcome *out);
/* Where an answer in parts stopped. Zeroed before the first part; the
 * caller keeps it between parts and frees it after the last. */
struct dispatch_resume {
	uint32_t next;                 /* results written so far; 0 before the first part */
	uint32_t count;                /* scan: the results the first part announced */
	uint32_t ids_from;             /* scan: the result index of ids[0] */
	char (*ids)[CORE_ID_SIZE + 1]; /* scan: the page's ids from ids_from on (owned) */
	char last[CORE_ID_SIZE + 1];   /* scan: the page's last id, for next */
	bool scan_full;                /* scan: the page had limit persons */
	/* The policy revisions the first part used, for every part (SPEC 3.4:
	 * one answer, one set of revisions), and which the parts read. */
	uint32_t view_count;
	uint32_t *view_cities;         /* owned: cities, then revisions, then used flags, one block */
	uint32_t *view_revisions;
	bool *view_used;
};

/* dispatch_frame, the answer produced in parts of about part_bytes as the
 * caller asks for them: call again with the same frame and resume while
 * out->partial; the parts, back to back, are the one response. Compute
 * methods come in parts (a later part reads the store afresh: a scan's
 * persons deleted meanwhile are not_found at their place); other methods
 * are whole. */
void dispatch_frame_part(struct dispatch *d, struct dispatch_session *session, const uint8_t *frame,
			 size_t frame_size, size_t part_bytes, struct dispatch_resume *resume, const uint8_t **response,
			 size_t *response_size, struct dispatch_outcome *out);
void dispatch_resume_free(struct dispatch_resume *resume);

/* Gives back what a big request made the dispatch hold (its parse). */
void dispatch_trim(struct dispatch *d);
/* The last response's bytes, handed over (free() them); NULL when none. */
uint8_t *dispatch_take_response(struct dispatch *d, size_t *size);

/* The name of stats row `row` (a method of the table), NULL past the table. */
const char *dispatch_method_name(uint32_t row);

/* An error response without running anything: for bytes that never formed
 * a frame (malformed, too_large; msgid 0) or a request the server sheds
 * (overloaded). Same borrowing as dispatch_frame. *response_size 0 when
 * out of memory: the request is then unanswered, and its connection must
 * close. */
void dispatch_reject(struct dispatch *d, uint32_t msgid, int code, const char *message, const uint8_t **response,
		     size_t *response_size);

/* The audit record of a bulk batch (import, gen) written in txn, the
 * batch's own transaction: {time_ms, method, idem: nil, persons: count}.
 * STORE_OK, or what store_audit_append returns (STORE_IO out of memory). */
int dispatch_audit_batch(struct store_txn *txn, const char *method, uint64_t person_count);

#endif
