#include <stdio.h>
#include <string.h>

#include "flags.h"

bool flag_u64(const char *prog, const char *flag, const char *text, uint64_t lo, uint64_t hi, uint64_t *out)
{
	/* strtoull would take leading spaces and signs, and wrap "-1" around. */
	size_t n = strlen(text);
	uint64_t v = 0;
	bool ok = n > 0 && n <= 20 && strspn(text, "0123456789") == n;
	for (size_t i = 0; ok && i < n; i++) {
		uint64_t digit = (uint64_t)(text[i] - '0');
		ok = v <= (UINT64_MAX - digit) / 10;
		v = v * 10 + digit;
	}
	if (!ok || v < lo || v > hi) {
		fprintf(stderr, "%s: %s must be an integer %llu..%llu, got '%s'\n", prog, flag, (unsigned long long)lo,
			(unsigned long long)hi, text);
		return false;
	}
	*out = v;
	return true;
}

bool flag_city(const char *prog, const char *flag, const char *text, uint32_t *out)
{
	uint64_t v;
	if (strlen(text) != 6 || strspn(text, "0123456789") != 6 || !flag_u64(prog, flag, text, 0, 999999, &v)) {
		fprintf(stderr, "%s: %s must be a 6-digit city code, got '%s'\n", prog, flag, text);
		return false;
	}
	*out = (uint32_t)v;
	return true;
}

int flag_unknown(const char *prog, const char *arg)
{
	if (arg[0] == '-' && arg[1] != '\0') {
		fprintf(stderr, "%s: unknown flag '%s' (%s --help lists them)\n", prog, arg, prog);
	} else {
		fprintf(stderr, "%s: unexpected argument '%s' (%s --help)\n", prog, arg, prog);
	}
	return 2;
}

int flag_missing_value(const char *prog, const char *flag)
{
	fprintf(stderr, "%s: %s needs a value (%s --help)\n", prog, flag, prog);
	return 2;
}

int flag_required(const char *prog, const char *flag)
{
	fprintf(stderr, "%s: %s is required (%s --help)\n", prog, flag, prog);
	return 2;
}

bool flag_is_help(const char *arg)
{
	return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}
