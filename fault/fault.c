#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"

bool fault_on;

static const char *const site_names[FAULT_SITES] = {
	"send_short", "send_again", "send_reset", "recv_nobufs", "recv_again",
	"recv_reset", "commit_full", "commit_io", "alloc", "sq_full",
};

static uint64_t seed;
static uint64_t threshold[FAULT_SITES]; /* a draw below it fails: probability × 2^64 */
static atomic_uint_fast64_t asked[FAULT_SITES];
static atomic_uint_fast64_t hits[FAULT_SITES];

/* splitmix64: the n-th draw of a site is a pure function of (seed, site, n). */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t draw(enum fault_site site)
{
	uint64_t n = atomic_fetch_add(&asked[site], 1);
	return mix(mix(seed ^ ((uint64_t)site << 56)) ^ n);
}

bool fault_configure(const char *spec, char *err, size_t err_size)
{
	char copy[512];
	if (strlen(spec) >= sizeof(copy)) {
		snprintf(err, err_size, "fault spec longer than %zu bytes", sizeof(copy) - 1);
		return false;
	}
	strcpy(copy, spec);
	bool seeded = false;
	for (char *save = NULL, *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		char *end = NULL;
		if (eq == NULL) {
			snprintf(err, err_size, "'%s' is not name=value", item);
			return false;
		}
		*eq = '\0';
		const char *value = eq + 1;
		if (strcmp(item, "seed") == 0) {
			seed = strtoull(value, &end, 10);
			seeded = end != value && *end == '\0';
			if (!seeded) {
				snprintf(err, err_size, "seed must be an unsigned integer, got '%s'", value);
				return false;
			}
			continue;
		}
		int site = -1;
		for (int i = 0; i < FAULT_SITES; i++) {
			site = strcmp(item, site_names[i]) == 0 ? i : site;
		}
		double p = strtod(value, &end);
		if (site < 0 || end == value || *end != '\0' || !(p >= 0.0 && p <= 1.0)) {
			snprintf(err, err_size, "'%s=%s': a fault site with a probability 0..1", item, value);
			return false;
		}
		threshold[site] = p >= 1.0 ? UINT64_MAX : (uint64_t)(p * 18446744073709551616.0);
	}
	if (!seeded) {
		snprintf(err, err_size, "no seed= in the fault spec");
		return false;
	}
	fault_on = true;
	return true;
}

bool fault_decide(enum fault_site site)
{
	if (threshold[site] == 0 || draw(site) >= threshold[site]) {
		return false;
	}
	atomic_fetch_add(&hits[site], 1);
	return true;
}

uint64_t fault_draw(enum fault_site site)
{
	return draw(site);
}

void fault_summary(char *out, size_t size)
{
	size_t n = 0;
	out[0] = '\0';
	for (int i = 0; i < FAULT_SITES && n < size; i++) {
		n += (size_t)snprintf(out + n, size - n, "%s%s=%llu", i == 0 ? "" : " ", site_names[i],
				      (unsigned long long)atomic_load(&hits[i]));
	}
}

uint64_t fault_seed(void)
{
	return seed;
}
