/* client: the commands of build/arrears that talk to a running arrearsd,
 * for people at a terminal. Blocking sockets, one request in flight at a
 * time (so answers come back in request order), every wait bounded by
 * CLIENT_TIMEOUT_S. The server is found with --connect HOST:PORT, else the
 * environment's ARREARS_CONNECT, else CLIENT_CONNECT_DEFAULT. */
#ifndef ARREARS_CLIENT_H
#define ARREARS_CLIENT_H

#define CLIENT_CONNECT_DEFAULT "127.0.0.1:7420"

/* arrears call [--connect HOST:PORT] [--token-file F] METHOD ['{json params}' | -]
 * Sends one request (params default to {}; '-' reads them from stdin), after
 * `auth` with the token in F when given. Prints the result as pretty JSON on
 * stdout and returns 0, or prints the error map as pretty JSON on stderr and
 * returns 1. Also 1 when the server cannot be reached or its answer cannot be
 * read (said on stderr); 2 for bad usage, bad JSON params included.
 * argv holds the arguments after "call". */
int client_call_command(int argc, char **argv);

/* arrears show ID [--as-of YYYYMMDD] [--city C] [--no-color] [--connect HOST:PORT] [--token-file F]
 * Draws one stored person's timeline as of the date (default: today, local
 * time): a row per (year, type) and city when there are several, a cell per
 * month coloured by its state (letters instead when stdout is not a terminal,
 * with --no-color or with NO_COLOR set), a legend, then a summary of arrears,
 * years, retirement, medical status and housing (in C, default the city of
 * the person's latest slot). Returns 0; 1 when the person or a policy cannot
 * be fetched (the error on stderr), or when any part of the summary was
 * answered with an error (shown in its place); 2 for bad usage. */
int client_show_command(int argc, char **argv);

#endif
