/* Shared by the fuzz targets: the policy and the person put in place before
 * inputs run (tests/fuzz/seeds.py names the same ones), and the checks every
 * response must pass. Targets abort on a broken invariant: libFuzzer then
 * keeps the input. */
#ifndef ARREARS_FUZZ_COMMON_H
#define ARREARS_FUZZ_COMMON_H

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../rpc/dispatch.h"

#define FUZZ_CHECK(cond)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "fuzz: invariant broken: %s (%s:%d)\n", #cond, \
				__FILE__, __LINE__);                              \
			abort();                                                  \
		}                                                                 \
	} while (0)

#define FUZZ_PERSON_ID "11010519491231002X"

static const char fuzz_policy_json[] =
	"{\"city\": \"110000\", \"name\": \"Beijing\", \"deadline\": {\"day\": 25, \"month_offset\": 0},"
	" \"periods\": [{\"from\": 201601, \"base_min\": 300000, \"base_max\": 2000000,"
	"   \"rates\": {\"pension\": {\"employer\": 160000, \"individual\": 80000, \"flexible\": 200000},"
	"             \"medical\": {\"employer\": 98000, \"individual\": 20000, \"flexible\": 80000}}},"
	"  {\"from\": 202307, \"base_min\": 632600, \"base_max\": 3389100,"
	"   \"rates\": {\"pension\": {\"employer\": 160000, \"individual\": 80000, \"flexible\": 200000},"
	"             \"medical\": {\"employer\": 98000, \"individual\": 20000, \"flexible\": 80000},"
	"             \"unemployment\": {\"employer\": 5000, \"individual\": 5000, \"flexible\": 10000},"
	"             \"injury\": {\"employer\": 4000}}}],"
	" \"interest\": {\"types\": [\"pension\"], \"categories\": [\"flexible\"], \"default_ppm\": 25000,"
	"   \"rates\": [[2016, 83100], [2017, 71200], [2022, 61200], [2023, 39700], [2024, 26200]]},"
	" \"late_fee\": {\"daily_ppm\": 500, \"categories\": [\"employee\"]},"
	" \"backpay\": {\"direct_max_months\": 3, \"verify_max_months\": 60, \"legacy_before\": 201107,"
	"   \"flexible_window_months\": 24},"
	" \"housing\": {\"types\": [\"pension\"], \"window_months\": 12, \"required_months\": 12,"
	"   \"end_offset_months\": 1, \"grace_days\": 10},"
	" \"withhold\": {\"order\": [\"medical\", \"pension\"], \"mode\": \"skip\"}}";

static const char fuzz_person_json[] =
	"{\"persons\": [{\"id\": \"" FUZZ_PERSON_ID "\", \"slots\": ["
	" {\"month\": 202205, \"city\": \"110000\", \"type\": \"pension\", \"category\": \"flexible\","
	"  \"base\": 600000, \"paid\": 0, \"paid_date\": 0},"
	" {\"month\": 202303, \"city\": \"110000\", \"type\": \"pension\", \"category\": \"employee\","
	"  \"base\": 800000, \"paid\": 50000, \"paid_date\": 20230410},"
	" {\"month\": 202402, \"city\": \"110000\", \"type\": \"medical\", \"category\": \"flexible\","
	"  \"base\": 650000, \"paid\": 52000, \"paid_date\": 20240220},"
	" {\"month\": 202404, \"city\": \"110000\", \"type\": \"medical\", \"category\": \"flexible\","
	"  \"base\": 650000, \"paid\": 0, \"paid_date\": 0},"
	" {\"month\": 199001, \"city\": \"110000\", \"type\": \"pension\", \"category\": \"flexible\","
	"  \"base\": 0, \"paid\": 0, \"paid_date\": 0, \"deemed\": true}]}]}";

/* A request frame from JSON; the process cannot fuzz without it. */
static inline uint8_t *fuzz_json_frame(const char *method, const char *wrap_key, const char *json, size_t *size)
{
	uint8_t *frame;
	char errbuf[256];
	if (proto_json_frame(method, 1, wrap_key, json, &frame, size, errbuf, sizeof(errbuf)) != PROTO_OK) {
		fprintf(stderr, "fuzz: setup request does not build: %s\n", errbuf);
		abort();
	}
	return frame;
}

/* A response is one whole msgpack-RPC response [1, msgid, error, result]
 * with exactly one of error and result nil, and an error carries a known
 * code. msgid -1: any (a malformed request's id is not in the outcome). */
static inline void fuzz_check_response(const uint8_t *response, size_t size, int64_t msgid)
{
	msgpack_unpacked u;
	size_t offset = 0;
	msgpack_unpacked_init(&u);
	FUZZ_CHECK(msgpack_unpack_next(&u, (const char *)response, size, &offset) == MSGPACK_UNPACK_SUCCESS);
	FUZZ_CHECK(offset == size);
	const msgpack_object *o = &u.data;
	FUZZ_CHECK(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 4);
	const msgpack_object *a = o->via.array.ptr;
	FUZZ_CHECK(a[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[0].via.u64 == 1);
	FUZZ_CHECK(a[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[1].via.u64 <= UINT32_MAX);
	FUZZ_CHECK(msgid < 0 || a[1].via.u64 == (uint64_t)msgid);
	FUZZ_CHECK((a[2].type == MSGPACK_OBJECT_NIL) != (a[3].type == MSGPACK_OBJECT_NIL));
	if (a[2].type != MSGPACK_OBJECT_NIL) {
		FUZZ_CHECK(a[2].type == MSGPACK_OBJECT_MAP);
		bool code_ok = false;
		for (uint32_t i = 0; i < a[2].via.map.size; i++) {
			const msgpack_object_kv *kv = &a[2].via.map.ptr[i];
			if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 4 &&
			    memcmp(kv->key.via.str.ptr, "code", 4) == 0) {
				code_ok = kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER && kv->val.via.u64 >= PROTO_MALFORMED &&
					  kv->val.via.u64 <= PROTO_INTERNAL;
			}
		}
		FUZZ_CHECK(code_ok);
	}
	msgpack_unpacked_destroy(&u);
}

#define FUZZ_PART_BYTES 256u /* small: an answer of a few persons comes in several parts */

/* A copy of bytes the dispatch lends until its next call. */
static inline uint8_t *fuzz_copy(const uint8_t *bytes, size_t size)
{
	uint8_t *copy = malloc(size > 0 ? size : 1);
	FUZZ_CHECK(copy != NULL);
	if (size > 0) {
		memcpy(copy, bytes, size);
	}
	return copy;
}

/* The server's worker: the answer made in parts, each taken as it comes,
 * back to back. Returns the whole (malloc'd) and whether it closes. */
static inline uint8_t *fuzz_run_parts(struct dispatch *d, struct dispatch_session *session, const uint8_t *frame,
				      size_t frame_size, size_t *size, struct dispatch_outcome *out)
{
	struct dispatch_resume resume = { 0 };
	uint8_t *whole = NULL;
	uint32_t msgid = 0;
	uint32_t parts = 0;
	*size = 0;
	do {
		const uint8_t *response;
		size_t part_size;
		dispatch_frame_part(d, session, frame, frame_size, FUZZ_PART_BYTES, &resume, &response, &part_size, out);
		FUZZ_CHECK(!out->deferred && (parts == 0 || out->msgid == msgid));
		msgid = out->msgid;
		uint8_t *part = part_size > 0 ? dispatch_take_response(d, &part_size) : NULL;
		FUZZ_CHECK(part_size == 0 || part != NULL);
		whole = realloc(whole, *size + part_size + 1);
		FUZZ_CHECK(whole != NULL);
		if (part_size > 0) {
			memcpy(whole + *size, part, part_size);
		}
		*size += part_size;
		free(part);
		parts++;
	} while (out->partial && !out->close);
	dispatch_resume_free(&resume);
	return whole;
}

/* Runs a byte stream through the server's loop: scan a frame, dispatch it
 * as the event loop does, and when it defers, in parts as a worker does;
 * check the answer. A truncated tail waits for bytes that never come; bad
 * framing is answered and ends the stream, as does a malformed request.
 * with_whole: also run each frame whole (as `arrears eval` does) and
 * require the same bytes; only where running a request twice answers the
 * same (no store: nothing a request does lasts but a policy put again). */
static inline void fuzz_run_stream(struct dispatch *d, struct dispatch_session *session, const uint8_t *data,
				   size_t size, bool with_whole)
{
	struct proto_frame scan;
	size_t start = 0;
	proto_frame_reset(&scan);
	while (start < size) {
		size_t frame_size;
		const uint8_t *response;
		size_t response_size;
		int rc = proto_frame_scan(&scan, data + start, size - start, PROTO_REQUEST_BYTES_MAX, &frame_size);
		if (rc == PROTO_FRAME_MORE) {
			return;
		}
		if (rc != PROTO_FRAME_COMPLETE) {
			dispatch_reject(d, 0, rc == PROTO_FRAME_TOO_LARGE ? PROTO_TOO_LARGE : PROTO_MALFORMED, "framing",
					&response, &response_size);
			fuzz_check_response(response, response_size, 0);
			return;
		}
		FUZZ_CHECK(frame_size > 0 && frame_size <= size - start);
		const uint8_t *frame = data + start;
		uint32_t msgid = proto_frame_msgid(frame, frame_size);
		struct dispatch_outcome out;
		uint8_t *answer;
		size_t answer_size;
		dispatch_frame(d, session, DISPATCH_INLINE, frame, frame_size, &response, &response_size, &out);
		if (out.deferred) {
			FUZZ_CHECK(response_size == 0);
			answer = fuzz_run_parts(d, session, frame, frame_size, &answer_size, &out);
		} else {
			answer = fuzz_copy(response, response_size);
			answer_size = response_size;
		}
		/* The server answers shed requests by the msgid it reads unparsed. */
		FUZZ_CHECK(msgid == 0 || out.close || msgid == out.msgid);
		if (answer_size > 0) {
			fuzz_check_response(answer, answer_size, out.close ? -1 : (int64_t)out.msgid);
		}
		FUZZ_CHECK(!out.close || (answer_size > 0 && out.error));
		if (with_whole) {
			struct dispatch_outcome whole;
			dispatch_frame(d, session, DISPATCH_ALL, frame, frame_size, &response, &response_size, &whole);
			FUZZ_CHECK(response_size == answer_size && memcmp(response, answer, answer_size) == 0);
			FUZZ_CHECK(whole.close == out.close && whole.error == out.error && whole.msgid == out.msgid);
		}
		free(answer);
		if (out.close) {
			return;
		}
		start += frame_size;
		proto_frame_reset(&scan);
	}
}

#endif
