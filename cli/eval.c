/* arrears eval: msgpack-RPC requests back to back on stdin, one response per
 * request on stdout, in order, until EOF or malformed input. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../rpc/dispatch.h"
#include "eval.h"

#define READ_CHUNK_BYTES (1u << 16)

struct input {
	uint8_t *data;
	size_t start; /* first byte not yet consumed */
	size_t end;   /* bytes held */
	size_t capacity;
};

/* Makes room for one more read, dropping consumed bytes first. */
static bool input_reserve(struct input *in)
{
	if (in->start > 0) {
		memmove(in->data, in->data + in->start, in->end - in->start);
		in->end -= in->start;
		in->start = 0;
	}
	if (in->capacity - in->end >= READ_CHUNK_BYTES) {
		return true;
	}
	size_t capacity = in->capacity == 0 ? 4 * READ_CHUNK_BYTES : in->capacity * 2;
	uint8_t *data = realloc(in->data, capacity);
	if (data == NULL) {
		return false;
	}
	in->data = data;
	in->capacity = capacity;
	return true;
}

static bool write_all(int fd, const uint8_t *p, size_t size)
{
	while (size > 0) {
		ssize_t n = write(fd, p, size);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return false;
		}
		p += n;
		size -= (size_t)n;
	}
	return true;
}

int eval_run(struct store *store, int in_fd, int out_fd)
{
	struct dispatch *d = dispatch_new(store, NULL);
	struct input in = { 0 };
	struct proto_frame frame;
	proto_frame_reset(&frame);
	const uint8_t *response;
	size_t response_size;
	int status = 0;
	bool eof = false;
	while (d != NULL) {
		size_t frame_size;
		int rc = proto_frame_scan(&frame, in.data + in.start, in.end - in.start, PROTO_REQUEST_BYTES_MAX,
					  &frame_size);
		if (rc == PROTO_FRAME_COMPLETE) {
			struct dispatch_outcome outcome;
			dispatch_frame(d, NULL, DISPATCH_ALL, in.data + in.start, frame_size, &response, &response_size,
				       &outcome);
			bool stop = outcome.close;
			in.start += frame_size;
			proto_frame_reset(&frame);
			if (!write_all(out_fd, response, response_size)) {
				status = 1;
				break;
			}
			if (stop) {
				fprintf(stderr, "arrears eval: malformed request; stopped reading\n");
				break;
			}
			continue;
		}
		if (rc == PROTO_FRAME_MORE && !eof) {
			if (!input_reserve(&in)) {
				fprintf(stderr, "arrears eval: out of memory\n");
				status = 1;
				break;
			}
			ssize_t n = read(in_fd, in.data + in.end, in.capacity - in.end);
			if (n < 0 && errno == EINTR) {
				continue;
			}
			if (n < 0) {
				fprintf(stderr, "arrears eval: read: %s\n", strerror(errno));
				status = 1;
				break;
			}
			eof = n == 0;
			in.end += (size_t)n;
			continue;
		}
		if (rc == PROTO_FRAME_MORE && in.end == in.start) {
			break; /* clean end of input */
		}
		bool large = rc == PROTO_FRAME_TOO_LARGE;
		dispatch_reject(d, 0, large ? PROTO_TOO_LARGE : PROTO_MALFORMED,
				large ? "message over the 16 MiB limit" : "not msgpack-RPC", &response, &response_size);
		write_all(out_fd, response, response_size);
		fprintf(stderr, "arrears eval: %s; stopped reading\n",
			large ? "message over the size limit" : "malformed or truncated input");
		break;
	}
	if (d == NULL) {
		fprintf(stderr, "arrears eval: out of memory\n");
		status = 1;
	}
	dispatch_free(d);
	free(in.data);
	return status;
}
