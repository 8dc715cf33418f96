/* ops: commands on a store directory for operators (README, Operations).
 * Each returns the process's exit status: 0, 1 on failure (or, for
 * verify, problems found), 2 for bad usage (the caller prints it). */
#ifndef ARREARS_OPS_H
#define ARREARS_OPS_H

/* arrears audit --data DIR [--after SEQ] [--limit N]: records as JSON lines. */
int ops_audit_command(int argc, char **argv);
/* arrears backup --data DIR OUT: a compacted copy into OUT/data.mdb. */
int ops_backup_command(int argc, char **argv);
/* arrears verify --data DIR: every record of every table; problems on stdout. */
int ops_verify_command(int argc, char **argv);

#endif
