#ifndef ARREARS_EVAL_H
#define ARREARS_EVAL_H

#include "../store/store.h"

/* Runs the evaluator from in_fd to out_fd, on store (NULL: inline persons
 * only); returns the process exit status (0 also when it stopped at
 * malformed input, which it answered in band). */
int eval_run(struct store *store, int in_fd, int out_fd);

#endif
