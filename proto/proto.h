/* proto: msgpack-RPC bytes ⇄ typed requests and results (SPEC §5).
 *
 * Hides msgpack-c from everyone else. One request path serves the evaluator,
 * the server, the fuzzer and the benchmarks: frame → parse → decode params →
 * (core) → write result. */
#ifndef ARREARS_PROTO_H
#define ARREARS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

#define PROTO_AT_SIZE 96u
#define PROTO_MESSAGE_SIZE 192u /* an error's message, cut on a character boundary */
#define PROTO_VERSION "0.1.0"

/* Error codes of SPEC §5. */
enum proto_code {
	PROTO_OK = 0,
	PROTO_MALFORMED = 1,
	PROTO_UNKNOWN_METHOD = 2,
	PROTO_INVALID_ARGUMENT = 3,
	PROTO_NOT_FOUND = 4,
	PROTO_CONFLICT = 5,
	PROTO_TOO_LARGE = 6,
	PROTO_OVERLOADED = 7,
	PROTO_UNAUTHORIZED = 8,
	PROTO_INTERNAL = 9,
};

struct proto_error {
	int code;                /* enum proto_code */
	char at[PROTO_AT_SIZE];  /* path of the offending field, "" when none */
	char message[PROTO_MESSAGE_SIZE];
};

const char *proto_error_name(int code);
/* Fills err and returns code. */
int proto_error_set(struct proto_error *err, int code, const char *message, const char *at_format, ...)
	__attribute__((format(printf, 4, 5)));

/* invalid_argument at the path, message "<field> must be <expected>, got
 * <found>" (found: text describing what was there, see proto_found_describe).
 * Returns PROTO_INVALID_ARGUMENT. */
int proto_invalid_text(struct proto_error *err, const char *field, const char *expected, const char *found,
		       const char *at_format, ...) __attribute__((format(printf, 5, 6)));
/* What every resident-id check expects (SPEC §2.1): one text wherever an id appears. */
#define PROTO_ID_EXPECTED "an 18-character resident ID with a valid birth date and check digit"
/* Checks a resident id string wherever one is looked up or stored. PROTO_OK,
 * or invalid_argument at the path with the one id message, which says what
 * is wrong and never echoes the id (ids are personal data). */
int proto_id_check(const char *id, size_t size, struct proto_error *err, const char *at_format, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- framing: find where one message ends in a byte stream ---- */

enum proto_frame_rc {
	PROTO_FRAME_COMPLETE, /* *frame_size bytes hold one message */
	PROTO_FRAME_MORE,     /* the message is not complete yet: read more, scan again */
	PROTO_FRAME_INVALID,  /* not msgpack (0xc1) or nested too deep: malformed */
	PROTO_FRAME_TOO_LARGE /* the message passes max_size or PROTO_ELEMENTS_MAX: too_large, then close */
};

/* Resumable scan state: keep it between calls on the same growing buffer. */
struct proto_frame {
	size_t offset;      /* bytes of whole elements scanned so far */
	uint64_t elements;  /* elements so far: a complete frame's parse costs about this × 24 bytes */
	uint32_t depth;
	uint64_t remaining[PROTO_DEPTH_MAX + 1];
};

void proto_frame_reset(struct proto_frame *frame);
/* Scans buf[0..size) (the same buffer, grown, on each call) for the end of
 * the first message. Never allocates; declared counts are checked against
 * max_size before any unpacking. */
int proto_frame_scan(struct proto_frame *frame, const uint8_t *buf, size_t size, size_t max_size,
		     size_t *frame_size);

/* The msgid of a complete request frame read without unpacking it (0 when
 * it has none): to answer a request the server sheds unparsed. */
uint32_t proto_frame_msgid(const uint8_t *frame, size_t size);

/* ---- a parsed message ---- */

enum proto_kind { PROTO_KIND_REQUEST, PROTO_KIND_NOTIFICATION };

struct proto_params; /* opaque: the params map of a message */

struct proto_envelope {
	uint8_t kind;         /* enum proto_kind */
	uint32_t msgid;       /* 0 for notifications and unparseable requests */
	const char *method;   /* borrows the message */
	size_t method_size;
	const struct proto_params *params;
};

struct proto_message; /* owns the unpacked objects of one frame */

struct proto_message *proto_message_new(void);
void proto_message_free(struct proto_message *message);
/* Frees what the last parse took beyond a small zone (its objects go too). */
void proto_message_trim(struct proto_message *message);
/* Reads the msgpack-RPC envelope of a frame in place and unpacks the
 * params. The frame must be bytes proto_frame_scan returned
 * PROTO_FRAME_COMPLETE for, exactly frame_size of them: its values are
 * read without bounds checks (sanitizer builds check the frame again and
 * trap). The persons array of compute methods and person.put is not
 * unpacked: proto_person_decode reads it from the frame's bytes (so the
 * frame must outlive the envelope's use and the persons' decoding).
 * Returns PROTO_OK or PROTO_MALFORMED (err set, env->msgid set when it
 * could be read). */
int proto_message_parse(struct proto_message *message, const uint8_t *frame, size_t frame_size,
			struct proto_envelope *env, struct proto_error *err);

/* ---- typed params ---- */

/* Decodes params.policy into one malloc'd block (free() releases it all),
 * prepared for the core. NULL with err set on bad input or no memory. */
struct core_policy *proto_policy_decode(const struct proto_params *params, struct proto_error *err);

/* ---- policy revisions (SPEC 3.4) ---- */

/* Keys of a policy.put document that the decoder ignores (a misspelt
 * `rates.pension.flexibel` would silently be a rate of 0), as texts such as
 * "policy.periods[0].rates.pension.flexibel: unknown key, ignored". At most
 * POLICY_WARNINGS_MAX; a last line counts the rest. */
#define PROTO_WARNING_BYTES 160u
struct proto_warnings {
	uint32_t count;
	uint32_t unlisted;
	char text[POLICY_WARNINGS_MAX + 1][PROTO_WARNING_BYTES];
};
void proto_policy_warnings(const struct proto_params *params, struct proto_warnings *out);

/* A request's policy_revisions { city: n } (absent: count 0), checked in
 * map order: a map of at most POLICY_PINS_MAX entries, each key a city,
 * each value a positive integer, no city twice. Existence is the caller's
 * check. */
struct proto_pins {
	uint32_t count;
	uint32_t city[POLICY_PINS_MAX];
	uint64_t revision[POLICY_PINS_MAX]; /* >= 1; past UINT32_MAX never exists */
};
int proto_pins_decode(const struct proto_params *params, struct proto_pins *out, struct proto_error *err);
/* policy.get's optional revision: 0 when absent (the latest). */
int proto_revision_decode(const struct proto_params *params, uint64_t *revision, struct proto_error *err);

/* A 6-digit city string param named key. */
int proto_city_decode(const struct proto_params *params, const char *key, uint32_t *city,
		      struct proto_error *err);

enum proto_method {
	PROTO_ARREARS,
	PROTO_YEARS,
	PROTO_RETIREMENT,
	PROTO_HOUSING,
	PROTO_MEDICAL,
};

enum proto_selector { PROTO_SELECT_IDS, PROTO_SELECT_PERSONS, PROTO_SELECT_SCAN };

struct proto_compute {
	uint8_t method;   /* enum proto_method */
	uint8_t selector; /* enum proto_selector */
	struct core_as_of as_of;
	uint32_t person_count;   /* ids or persons */
	bool detail;
	int32_t elect_month;     /* dense, -1 when absent */
	uint32_t city;           /* housing */
	const char *scan_after;  /* NULL: from the start */
	size_t scan_after_size;
	uint32_t scan_limit;
	const void *list;        /* ids: the array; persons: the params holding their bytes */
	uint32_t next;           /* persons: where persons[next] begins, so that decoding */
	const uint8_t *next_at;  /* them in order reads each byte once */
};

/* Request-level checks of a compute method's params (SPEC Appendix A order). */
int proto_compute_decode(const struct proto_params *params, uint8_t method, struct proto_compute *out,
			 struct proto_error *err);

/* Reusable memory for decoding persons: grows to the largest person seen. */
struct proto_person_buf {
	struct core_slot *slots;
	uint64_t *keys;
	uint32_t slot_capacity;
	uint32_t key_capacity;
};

struct proto_person {
	char id[CORE_ID_SIZE + 1];
	uint8_t class_;   /* given, or the default from the id */
	bool class_given;
	uint32_t slot_count;
	struct core_slot *slots; /* borrows the buf */
};

/* Structure checks of SPEC §2.1 for one inline person (persons[index]),
 * read from the frame's bytes. id/id_size get the raw id when it is a
 * string (for the error entry). Going forward from the last index decoded
 * costs that person's bytes only (req keeps the place); any index may come. */
int proto_person_decode(struct proto_compute *req, uint32_t index, struct proto_person_buf *buf,
			struct proto_person *out, const char **id, size_t *id_size, struct proto_error *err);
/* The string at ids[index], or false (err set) when it is not a string. */
bool proto_compute_id(const struct proto_compute *req, uint32_t index, const char **id, size_t *id_size,
		      struct proto_error *err);
void proto_person_buf_free(struct proto_person_buf *buf);

/* ---- write methods ---- */

struct proto_string {
	const char *ptr; /* borrows the message; not terminated */
	size_t size;
};

struct proto_list {
	const void *items; /* the array */
	uint32_t count;
};

struct proto_payment {
	struct proto_string id;
	int32_t month; /* dense */
	uint32_t city;
	uint8_t type;
	int64_t amount_fen;
	int32_t date;
};

struct proto_withhold {
	int32_t month; /* dense */
	int32_t date;
	struct proto_list accounts;
};

/* The optional or required "idem" key (1..255 bytes); key->ptr NULL when absent. */
int proto_idem_decode(const struct proto_params *params, bool required, struct proto_string *key,
		      struct proto_error *err);
/* Well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, at most
 * U+10FFFF). A string that is not is never echoed back (SPEC §2.1). */
bool proto_utf8_valid(const char *s, size_t size);
/* BLAKE2b of method and params as a value (Appendix A): the same payload,
 * however encoded, gives the same digest. False when out of memory. */
#define PROTO_DIGEST_BYTES 32u
bool proto_params_digest(const struct proto_params *params, const char *method, size_t method_size,
			 uint8_t out[PROTO_DIGEST_BYTES]);
/* person.get / person.delete: a valid resident id at "id". */
int proto_id_decode(const struct proto_params *params, struct proto_string *id, struct proto_error *err);
/* person.put: the persons list, decoded one by one with proto_person_decode. */
int proto_put_decode(const struct proto_params *params, struct proto_compute *out, struct proto_error *err);
/* payment.apply: the items list, then each item in field order. */
int proto_payment_decode(const struct proto_params *params, struct proto_list *items, struct proto_error *err);
int proto_payment_item(const struct proto_list *items, uint32_t index, struct proto_payment *out,
		       struct proto_error *err);
/* withhold.run: month, date (month ≤ month(date)), accounts; then each account. */
int proto_withhold_decode(const struct proto_params *params, struct proto_withhold *out, struct proto_error *err);
int proto_withhold_account(const struct proto_withhold *req, uint32_t index, struct proto_string *id,
			   int64_t *balance_fen, struct proto_error *err);

/* How many persons, ids, items or accounts a request carries (a scan's
 * limit counts too): the server runs heavy requests off its event loop. */
uint32_t proto_params_weight(const struct proto_params *params);
/* The longest of the persons/ids/items/accounts arrays, and its name. */
uint32_t proto_params_list_size(const struct proto_params *params, const char **list_name);
/* auth: the "token" string. */
int proto_token_decode(const struct proto_params *params, struct proto_string *token, struct proto_error *err);

/* ---- JSON at the edges ---- */

/* A request frame [0, msgid, method, [params]] from JSON text: the params
 * object itself, or {wrap_key: value} when wrap_key is given (a policy file
 * becomes policy.put's params). *frame is malloc'd. Returns PROTO_OK or
 * PROTO_INVALID_ARGUMENT with the reason in errbuf. */
int proto_json_frame(const char *method, uint32_t msgid, const char *wrap_key, const char *json_text,
		     uint8_t **frame, size_t *frame_size, char *errbuf, size_t errbuf_size);
/* A response frame [1, msgid, error, result] as JSON text for people: the
 * error map when there is one (*is_error true), else the result; pretty
 * (2-space indent), keys in message order, no trailing newline. msgpack
 * integers become JSON integers, nil null, bin a base64 string (RFC 4648).
 * *json_text is malloc'd (free() it), NULL unless PROTO_OK. Returns:
 *   PROTO_OK;
 *   PROTO_MALFORMED         not one whole msgpack-RPC response, or nested
 *                           deeper than PROTO_DEPTH_MAX;
 *   PROTO_INVALID_ARGUMENT  a value JSON cannot carry: a map key that is not
 *                           a string, ext, an integer above INT64_MAX, a
 *                           non-finite float, a string that is not UTF-8;
 *   PROTO_INTERNAL          out of memory.
 * Nothing of the response is trusted beyond its bytes: walk with a bounded
 * stack, no recursion. */
int proto_response_json(const uint8_t *response, size_t size, char **json_text, bool *is_error);
/* True when the response carries an error (err filled); false for a result. */
bool proto_response_error(const uint8_t *response, size_t size, struct proto_error *err);

/* ---- writing responses ---- */

struct proto_writer; /* one reusable output buffer */

struct proto_writer *proto_writer_new(void);
void proto_writer_free(struct proto_writer *w);
void proto_writer_reset(struct proto_writer *w);
const uint8_t *proto_writer_data(const struct proto_writer *w, size_t *size);

/* Whether the response written is an error. */
bool proto_writer_is_error(const struct proto_writer *w);
/* The error code of the response written (PROTO_OK for a result). */
int proto_writer_error_code(const struct proto_writer *w);
/* Per-person (and per-item) errors written since the last reset. */
uint32_t proto_writer_person_errors(const struct proto_writer *w);
/* Hands the written bytes to the caller (free() them); the writer starts
 * empty. NULL when writing ran out of memory. */
uint8_t *proto_writer_take(struct proto_writer *w, size_t *size);
/* Room for bytes more at once (best effort): a part of a known size is not
 * made by doubling, whose copies stay in the allocator's hands. */
void proto_writer_reserve(struct proto_writer *w, size_t bytes);

/* The response after its msgid, to replay for a repeated idempotency key. */
const uint8_t *proto_writer_body(const struct proto_writer *w, size_t *size);
void proto_write_replay(struct proto_writer *w, uint32_t msgid, const uint8_t *body, size_t size);

void proto_write_error(struct proto_writer *w, uint32_t msgid, const struct proto_error *err);
void proto_write_pong(struct proto_writer *w, uint32_t msgid);
void proto_write_ok(struct proto_writer *w, uint32_t msgid);
void proto_write_policy(struct proto_writer *w, uint32_t msgid, const struct core_policy *policy);
/* The policy document alone, every default filled (what the store keeps). */
void proto_write_policy_doc(struct proto_writer *w, const struct core_policy *policy);
/* Decodes a document written by proto_write_policy_doc. */
struct core_policy *proto_policy_from_doc(const uint8_t *doc, size_t size, struct proto_error *err);
/* person.get: false when the stored timeline is corrupt (discard the output). */
bool proto_write_person(struct proto_writer *w, uint32_t msgid, const char *id, int retire_class,
			const struct core_timeline *tl);
void proto_write_put_ok(struct proto_writer *w, const char *id);
/* payment.apply: {ok: true} when err is NULL, else {error}. */
void proto_write_item_result(struct proto_writer *w, const struct proto_error *err);
void proto_write_withhold(struct proto_writer *w, const char *id, const struct core_withhold_line *lines,
			  uint32_t line_count, int64_t balance_fen);
struct proto_stats_method {
	const char *name;
	uint64_t requests;
	uint64_t errors;
	uint64_t p50_us;
	uint64_t p99_us;
	uint64_t p999_us;
};
struct proto_stats {
	uint64_t uptime_s;
	uint64_t errors_by_code[PROTO_INTERNAL + 1]; /* summed over methods; [0] unused */
	uint64_t person_errors;
	uint64_t persons_summarized; /* persons answered from their settled-part summary */
	uint64_t connections_open;
	uint64_t connections_total;
	uint64_t connections_refused;
	uint32_t method_count;
	const struct proto_stats_method *methods;
	uint64_t persons;
	uint64_t audit_records;
	uint64_t bytes_used;
	uint64_t map_bytes;
};
/* server.stats: {version, uptime_s, errors_by_code, person_errors,
 * persons_summarized, connections, requests, errors, latency_us, store}. */
void proto_write_stats(struct proto_writer *w, uint32_t msgid, const struct proto_stats *stats);

/* An audit record: {time_ms, method, idem, persons}. */
void proto_write_audit(struct proto_writer *w, int64_t time_ms, const char *method, size_t method_size,
		       const struct proto_string *idem, const char (*ids)[CORE_ID_SIZE + 1], uint32_t id_count);

/* { "results": [ count entries ], "next"?: ... } */
/* policy.put: { ok, revision, warnings }. */
void proto_write_policy_put(struct proto_writer *w, uint32_t msgid, uint32_t revision,
			    const struct proto_warnings *warnings);
/* policy.get: { policy, revision, stored_at }. */
void proto_write_policy_revision(struct proto_writer *w, uint32_t msgid, const struct core_policy *p,
				 uint32_t revision, int64_t stored_at_ms);
/* policy.history: { revisions: [ {revision, stored_at, name, source} ] }. */
void proto_write_history_begin(struct proto_writer *w, uint32_t msgid, uint32_t count);
void proto_write_history_entry(struct proto_writer *w, uint32_t revision, int64_t stored_at_ms,
			       const struct core_policy *p);
/* A compute or withhold answer: { results, next?, policies }; the caller
 * writes next (when with_next), then proto_write_policies last. */
void proto_write_compute_begin(struct proto_writer *w, uint32_t msgid, uint32_t count, bool with_next);
/* The same, before the count is known: the results' header is written for
 * count_max, and proto_write_results_count(at, count_max, count) sets the
 * count once it is known (at: the header's offset, returned here). */
size_t proto_write_compute_open(struct proto_writer *w, uint32_t msgid, uint32_t count_max, bool with_next);
void proto_write_results_count(struct proto_writer *w, size_t at, uint32_t count_max, uint32_t count);
/* "policies": { city: revision } of the entries marked used. */
void proto_write_policies(struct proto_writer *w, const uint32_t *cities, const uint32_t *revisions,
			  const bool *used, uint32_t count);
/* The audit record of a policy.put: the generic fields, then city and revision. */
void proto_write_audit_policy(struct proto_writer *w, int64_t time_ms, const char *method, size_t method_size,
			      uint32_t city, uint32_t revision);
void proto_write_results_begin(struct proto_writer *w, uint32_t msgid, uint32_t count, bool with_next);
void proto_write_results_next(struct proto_writer *w, const char *next_id, size_t next_id_size);
void proto_write_person_error(struct proto_writer *w, const char *id, size_t id_size,
			      const struct proto_error *err);
void proto_write_arrears(struct proto_writer *w, const char *id, const struct core_arrears *a, bool detail,
			 const struct core_arrears_item *items, uint32_t item_count);
void proto_write_years(struct proto_writer *w, const char *id, const struct core_years *y,
		       const struct core_duplicate *duplicates, uint32_t duplicate_count);
void proto_write_retirement(struct proto_writer *w, const char *id, const struct core_retirement *r);
void proto_write_housing(struct proto_writer *w, const char *id, uint32_t city, const struct core_housing *h);
void proto_write_medical(struct proto_writer *w, const char *id, const struct core_medical *m);

/* ---- the audit log (SPEC §5.1 audit.read, §6) ---- */

#define PROTO_AUDIT_LIMIT_MAX 10000u /* records in one audit.read page */
#define PROTO_AUDIT_PAGE_BYTES (8u << 20) /* a page stops after the record that passes this: a
                                           * record may list 100,000 ids (~2 MB) */
/* audit.read: "after" nil/absent (0) or a sequence number, "limit" 1..10000. */
int proto_audit_read_decode(const struct proto_params *params, uint64_t *after, uint32_t *limit,
			    struct proto_error *err);
/* { "records": [count entries], "next": seq or nil }: begin, count entries, end. */
void proto_write_audit_page_begin(struct proto_writer *w, uint32_t msgid, uint32_t count);
/* A stored record (a map written by proto_write_audit*) with "seq" first.
 * False when the record is not a msgpack map (the store is corrupt). */
bool proto_write_audit_entry(struct proto_writer *w, uint64_t seq, const uint8_t *record, size_t record_size);
void proto_write_audit_page_end(struct proto_writer *w, bool with_next, uint64_t next);
/* A bulk batch's record (import, gen): {time_ms, method, idem: nil, persons: count}. */
void proto_write_audit_batch(struct proto_writer *w, int64_t time_ms, const char *method, uint64_t person_count);

#endif
