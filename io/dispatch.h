/* dispatch: the one request path (frame → parse → validate → compute →
 * encode) shared by the evaluator, the server, the fuzzer and the benchmarks. */
#ifndef ARREARS_DISPATCH_H
#define ARREARS_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/proto.h"
#include "../store/store.h"

#define DISPATCH_CITIES_MAX 4096u /* policies held; beyond: too_large */

struct dispatch;

/* store: NULL for inline persons only (policies then live in memory);
 * otherwise policies are loaded from it and every write goes to it. NULL
 * when out of memory or the stored policies do not load. */
struct dispatch *dispatch_new(struct store *store);
void dispatch_free(struct dispatch *d);

/* Handles one complete frame (see proto_frame_scan). On return *response
 * (size *response_size, 0 for a notification) borrows d until the next call.
 * Returns true when the connection must close after the response
 * (malformed input). */
bool dispatch_frame(struct dispatch *d, const uint8_t *frame, size_t frame_size, const uint8_t **response,
		    size_t *response_size);

/* A response for bytes that never formed a frame: malformed (code 1) or
 * too_large (6). Same borrowing as dispatch_frame. */
void dispatch_reject(struct dispatch *d, int code, const char *message, const uint8_t **response,
		     size_t *response_size);

#endif
