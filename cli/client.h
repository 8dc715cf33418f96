/* client: the commands of build/arrears that talk to a running arrearsd,
 * for people at a terminal. Blocking sockets, one request in flight at a
 * time (so answers come back in request order); connect, each send and each
 * receive give up after 30 s (CLIENT_TIMEOUT_S); an answer over 64 MiB is
 * refused. The server is found with --connect HOST:PORT ("[v6]:PORT" too),
 * else the environment's ARREARS_CONNECT, else CLIENT_CONNECT_DEFAULT. With
 * --token-file F, both commands send `auth` first with F's first line, the
 * same token arrearsd reads from its own --token-file. */
#ifndef ARREARS_CLIENT_H
#define ARREARS_CLIENT_H

#define CLIENT_CONNECT_DEFAULT "127.0.0.1:7420"

/* arrears call [--connect HOST:PORT] [--token-file F] METHOD ['{json params}' | -]
 * Sends one request (params default to {}; '-' reads them from stdin).
 * Prints the result as pretty JSON on
 * stdout and returns 0, or prints the error map as pretty JSON on stderr and
 * returns 1. Also 1 when the server cannot be reached or its answer cannot be
 * read (said on stderr); 2 for bad usage, bad JSON params included.
 * argv holds the arguments after "call". */
int client_call_command(int argc, char **argv);

/* arrears show ID [--as-of YYYYMMDD] [--city C] [--no-color] [--connect HOST:PORT] [--token-file F]
 * Draws one stored person's timeline as of the date (default: today, local
 * time): a row per (year, type) and city when there are several, from the
 * first to the last year with a slot of that type and city; a cell per month
 * coloured by its state (letters instead when stdout is not a terminal, with
 * --no-color, NO_COLOR set or TERM=dumb): on time '#', back-paid 'b', in
 * arrears 'A', pending 'p', expired 'x', deemed 'd', not enrolled '.',
 * future ' ' (every month after month(D), slot or not), and two states the
 * rules also reach: nothing due '-' (a slot whose rate is 0: never owed,
 * never counted) and '?' (a month before its city's first policy period,
 * which the server refuses to compute). Then a legend and a summary of arrears,
 * years, retirement, medical status and housing (in C, default the city of
 * the person's latest slot). Returns 0; 1 when the person or a policy cannot
 * be fetched (the error on stderr), or when any part of the summary was
 * answered with an error (shown in its place); 2 for bad usage. */
int client_show_command(int argc, char **argv);

#endif
