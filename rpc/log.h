/* log: one line per event on stderr, key=value fields after a UTC
 * timestamp. Never raw payload bytes; person IDs only masked (log_mask_id). */
#ifndef ARREARS_LOG_H
#define ARREARS_LOG_H

#include <stddef.h>

#include "../core/core.h"

void log_event(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* 110105********002X: IDs are personal data. */
void log_mask_id(const char *id, size_t size, char out[CORE_ID_SIZE + 1]);

#endif
