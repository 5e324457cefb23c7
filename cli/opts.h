/* SPDX-License-Identifier: Apache-2.0 */
/* Command-line flags shared by the subcommands, spelled as erl spells them. */
#ifndef KD_CLI_OPTS_H
#define KD_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "kdist.h"

#define CLI_MAX_SSL_OPTS 64
#define CLI_MAX_ARGS 8

struct cli_opts {
	struct kdist_config cfg;
	const char *name;
	const char *ssl_opts[CLI_MAX_SSL_OPTS * 2];
	size_t n_ssl_opts;
	const char *args[CLI_MAX_ARGS]; /* positional arguments */
	const char *allow[CLI_MAX_SSL_OPTS];
	size_t n_allow;
	size_t n_args;
	unsigned timeout_ms;
	unsigned count; /* ping round trips */
	bool help;
};

/*
 * Parses @argv (argv[0] is the subcommand) into @o. Returns 0, or 2 after
 * printing a usage error naming the flag. Flags: -sname, -name, -setcookie,
 * -proto_dist, -ssl_dist_optfile, -ssl_dist_opt, -kernel net_ticktime N,
 * -kernel inet_dist_listen_min N, -kernel inet_dist_listen_max N, -ktls,
 * -epmd_port, -epmd_host, -max_packet, -data_threads, -hidden, -timeout,
 * -v, -help.
 */
int cli_parse(int argc, char **argv, struct cli_opts *o);
void cli_print_common_help(void);
/* Gives @o a name when none was set: "kdist_<pid>" as a hidden node. */
void cli_default_name(struct cli_opts *o, char *buf, size_t cap);
/* One-shot commands log warnings and errors only, unless -v was given. */
void cli_quiet(struct cli_opts *o);
/* Creates and starts the node; prints the error and returns NULL on
 * failure. */
struct kdist_node *cli_start_node(struct cli_opts *o);

#endif
