/* The policy decoders. Input: a policy document's bytes. They go to
 * proto_policy_from_doc as a stored document (corrupt bytes included), and,
 * when they hold one whole msgpack object, to policy.put as its params
 * ({"policy": doc}) through the request path of a store-less dispatch,
 * followed by policy.get of the city. Asserts: whatever either decoder
 * accepts, written back as the stored document, loads again and writes the
 * same bytes (a policy the server took must load when it restarts); both
 * decoders agree on a document; every response is well formed. */
#include "fuzz_common.h"

static struct proto_writer *writer;
static struct proto_writer *writer2;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	writer = proto_writer_new();
	writer2 = proto_writer_new();
	FUZZ_CHECK(writer != NULL && writer2 != NULL);
	return 0;
}

/* The stored document of p: it loads back, to the same document. */
static void check_round_trip(const struct core_policy *p)
{
	size_t size;
	size_t size2;
	struct proto_error err;
	proto_writer_reset(writer);
	proto_write_policy_doc(writer, p);
	const uint8_t *doc = proto_writer_data(writer, &size);
	FUZZ_CHECK(doc != NULL);
	struct core_policy *q = proto_policy_from_doc(doc, size, &err);
	FUZZ_CHECK(q != NULL && q->city == p->city);
	proto_writer_reset(writer2);
	proto_write_policy_doc(writer2, q);
	const uint8_t *doc2 = proto_writer_data(writer2, &size2);
	FUZZ_CHECK(doc2 != NULL && size2 == size && memcmp(doc, doc2, size) == 0);
	free(q);
}

/* [0, 1, "policy.put", [{"policy": doc}]] then [0, 2, "policy.get", [{"city": c}]]. */
static void through_dispatch(const uint8_t *doc, size_t doc_size, uint32_t city, bool accepted)
{
	static const uint8_t head[] = { 0x94, 0x00, 0x01, 0xaa, 'p', 'o', 'l', 'i', 'c', 'y', '.', 'p', 'u', 't',
					0x91, 0x81, 0xa6, 'p', 'o', 'l', 'i', 'c', 'y' };
	size_t size = sizeof(head) + doc_size + 32;
	uint8_t *frames = malloc(size);
	FUZZ_CHECK(frames != NULL);
	memcpy(frames, head, sizeof(head));
	memcpy(frames + sizeof(head), doc, doc_size);
	uint8_t *get = frames + sizeof(head) + doc_size;
	int n = snprintf((char *)get, 32, "%c%c%c%c%s%c%c%c%s%c%06u", 0x94, 0x00, 0x02, 0xaa, "policy.get", 0x91,
			 0x81, 0xa4, "city", 0xa6, city);
	FUZZ_CHECK(n == 4 + 10 + 3 + 4 + 1 + 6);
	struct dispatch *d = dispatch_new(NULL, NULL);
	FUZZ_CHECK(d != NULL);
	struct proto_frame scan;
	size_t frame_size;
	const uint8_t *response;
	size_t response_size;
	struct dispatch_outcome out;
	proto_frame_reset(&scan);
	size_t put_size = sizeof(head) + doc_size;
	/* Three levels more than the document: deep ones are malformed here. */
	if (proto_frame_scan(&scan, frames, put_size, PROTO_REQUEST_BYTES_MAX, &frame_size) != PROTO_FRAME_COMPLETE) {
		dispatch_free(d);
		free(frames);
		return;
	}
	FUZZ_CHECK(frame_size == put_size);
	dispatch_frame(d, NULL, DISPATCH_ALL, frames, put_size, &response, &response_size, &out);
	fuzz_check_response(response, response_size, out.close ? -1 : 1);
	FUZZ_CHECK(out.error == !accepted || out.close);
	accepted &= !out.close;
	dispatch_frame(d, NULL, DISPATCH_ALL, get, (size_t)n, &response, &response_size, &out);
	fuzz_check_response(response, response_size, 2);
	FUZZ_CHECK(out.error == !accepted);
	dispatch_free(d);
	free(frames);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_error err;
	struct core_policy *stored = proto_policy_from_doc(data, size, &err);
	if (stored != NULL) {
		check_round_trip(stored);
	}
	/* As params only when the bytes are one whole, sane message: the frame
	 * scanner is what stands between a client and msgpack-c. */
	struct proto_frame scan;
	size_t doc_size;
	proto_frame_reset(&scan);
	if (size == 0 || proto_frame_scan(&scan, data, size, PROTO_REQUEST_BYTES_MAX / 2, &doc_size) !=
				 PROTO_FRAME_COMPLETE) {
		free(stored);
		return 0;
	}
	msgpack_zone zone;
	msgpack_object doc;
	size_t offset = 0;
	FUZZ_CHECK(msgpack_zone_init(&zone, 4096));
	int rc = msgpack_unpack((const char *)data, doc_size, &offset, &zone, &doc);
	if (rc == MSGPACK_UNPACK_SUCCESS) {
		msgpack_object_kv kv = { .key = { .type = MSGPACK_OBJECT_STR, .via.str = { 6, "policy" } }, .val = doc };
		msgpack_object params = { .type = MSGPACK_OBJECT_MAP, .via.map = { 1, &kv } };
		struct core_policy *put = proto_policy_decode((const struct proto_params *)&params, &err);
		if (put != NULL) {
			check_round_trip(put);
		}
		/* The stored decoder reads the first object of the bytes: the same one. */
		FUZZ_CHECK((put != NULL) == (stored != NULL));
		if (put != NULL && stored != NULL) {
			FUZZ_CHECK(put->city == stored->city);
		}
		/* Rejections through the request path are fuzz_request's; an accepted
		 * policy is put and read back here. */
		if (put != NULL) {
			through_dispatch(data, doc_size, put->city, true);
		}
		free(put);
	}
	msgpack_zone_destroy(&zone);
	free(stored);
	return 0;
}
