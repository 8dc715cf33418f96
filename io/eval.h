#ifndef ARREARS_EVAL_H
#define ARREARS_EVAL_H

/* Runs the evaluator from in_fd to out_fd; returns the process exit status
 * (0 also when it stopped at malformed input, which it answered in band). */
int eval_run(int in_fd, int out_fd);

#endif
