/* flags: strict parsing of command-line values. A value is the whole
 * argument or an error naming the flag: "--idle-timeout abc" must not
 * become 0 (never time out), nor "--city 11000" the city "011000". */
#ifndef ARREARS_FLAGS_H
#define ARREARS_FLAGS_H

#include <stdbool.h>
#include <stdint.h>

/* Decimal digits only, lo..hi. On failure prints "PROG: FLAG must be an
 * integer LO..HI, got 'TEXT'" on stderr and returns false. */
bool flag_u64(const char *prog, const char *flag, const char *text, uint64_t lo, uint64_t hi, uint64_t *out);
/* A 6-digit city code (SPEC §3.3) as its number. */
bool flag_city(const char *prog, const char *flag, const char *text, uint32_t *out);

/* Usage errors, each naming what was wrong on stderr; all return 2, the
 * exit status of bad usage. flag_unknown: an argument that is no flag of
 * PROG (or a positional one too many); flag_missing_value: FLAG was last,
 * without its value; flag_required: FLAG was not given. */
int flag_unknown(const char *prog, const char *arg);
int flag_missing_value(const char *prog, const char *flag);
int flag_required(const char *prog, const char *flag);
/* --help or -h. */
bool flag_is_help(const char *arg);

#endif
