#ifndef ARREARS_GEN_CMD_H
#define ARREARS_GEN_CMD_H

/* arrears gen --persons N --seed S --city C [--second-city C2] (--out DIR | --data DIR).
 * Returns the exit status; 2 for bad usage. */
int gen_command(int argc, char **argv);

#endif
