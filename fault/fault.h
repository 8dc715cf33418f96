/* fault: deterministic fault injection, one seam for every layer.
 *
 * The ring's operations (io/server.c), the store's commits (store/store.c)
 * and the allocations that answer out of memory (the server's buffers, the
 * response writer) ask fault_hit at the point where the real failure would
 * show. Off (the default) it is one predictable branch. On, every site draws
 * from its own sequence, a function of the seed and of how many times the
 * site was asked, so a seed printed by a failing run replays the same
 * decisions in the same order per site (with one event loop and one worker,
 * ARREARSD_FAULTS plus --threads 1, the whole run replays closely). */
#ifndef ARREARS_FAULT_H
#define ARREARS_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fault_site {
	FAULT_SEND_SHORT,  /* a send takes only part of the bytes offered (a real short send) */
	FAULT_SEND_AGAIN,  /* a send completes with -EAGAIN, nothing sent */
	FAULT_SEND_RESET,  /* a send completes with -ECONNRESET */
	FAULT_RECV_NOBUFS, /* a receive completes with -ENOBUFS (the buffer pool ran dry) */
	FAULT_RECV_AGAIN,  /* a receive completes with -EAGAIN */
	FAULT_RECV_RESET,  /* a receive completes with -ECONNRESET */
	FAULT_COMMIT_FULL, /* a write transaction fails to commit: map or disk full, nothing written */
	FAULT_COMMIT_IO,   /* a write transaction fails to commit: I/O error, nothing written */
	FAULT_ALLOC,       /* an allocation that has an out-of-memory path fails */
	FAULT_SQ_FULL,     /* the submission queue stays full: the ring is broken */
	FAULT_SITES
};

extern bool fault_on; /* set once by fault_configure, before any thread starts */

/* "seed=S,send_short=P,...,alloc=P" with P a probability 0..1, e.g.
 * "seed=7,send_short=0.2,commit_io=0.05". False, with a reason in err,
 * for a spec that does not parse. */
bool fault_configure(const char *spec, char *err, size_t err_size);

bool fault_decide(enum fault_site site);
/* Whether the site fails this time. */
static inline bool fault_hit(enum fault_site site)
{
	return __builtin_expect(fault_on, 0) && fault_decide(site);
}
/* A number drawn for the site's fault (how short a short send is). */
uint64_t fault_draw(enum fault_site site);
/* "send_short=12 commit_io=3 ...": what was injected, for the log. */
void fault_summary(char *out, size_t size);
/* The seed, 0 when off. */
uint64_t fault_seed(void);

#endif
