#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

void log_event(const char *format, ...)
{
	char line[512];
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ ", now.tv_nsec / 1000000);
	va_list ap;
	va_start(ap, format);
	vsnprintf(line + n, sizeof(line) - n, format, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line); /* one write: lines of threads do not interleave */
}

void log_mask_id(const char *id, size_t size, char out[CORE_ID_SIZE + 1])
{
	memset(out, '*', CORE_ID_SIZE);
	out[CORE_ID_SIZE] = '\0';
	for (size_t i = 0; i < CORE_ID_SIZE && i < size; i++) {
		if (i < 6 || i >= 14) {
			out[i] = id[i] >= 0x20 && id[i] < 0x7f ? id[i] : '?';
		}
	}
}
