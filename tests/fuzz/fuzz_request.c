/* The whole request path without a store: bytes → framing → decoding →
 * validation → compute → encoding, as the server runs it (event loop, then
 * a worker's answer in parts) and as `arrears eval` runs it (whole). Each
 * input gets a fresh dispatch holding the policy of fuzz_common.h, so an
 * input replays alone exactly as it ran. Asserts (fuzz_common.h): every
 * answer is one well-formed msgpack-RPC response with the request's msgid,
 * a closing answer is an error, and the parts back to back are the bytes
 * of the whole answer. */
#include "fuzz_common.h"

static uint8_t *policy_frame;
static size_t policy_frame_size;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	policy_frame = fuzz_json_frame("policy.put", "policy", fuzz_policy_json, &policy_frame_size);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dispatch *d = dispatch_new(NULL, NULL);
	FUZZ_CHECK(d != NULL);
	fuzz_run_stream(d, NULL, policy_frame, policy_frame_size, false);
	fuzz_run_stream(d, NULL, data, size, true);
	dispatch_free(d);
	return 0;
}
