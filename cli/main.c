// SPDX-License-Identifier: Apache-2.0
/* kdist: the command line, built on include/kdist.h. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{ "node", cmd_node, "run a node that serves 'echo' and 'sink'" },
	{ "ping", cmd_ping, "check that a node answers, like net_adm:ping/1" },
	{ "send", cmd_send, "send a term to a registered name on a node" },
	{ "names", cmd_names, "list the names EPMD has registered" },
	{ "epmd", cmd_epmd, "run kdist's own EPMD in the foreground" },
	{ "bench", cmd_bench, "measure distribution throughput and latency" },
};

static void usage(FILE *out)
{
	fputs("usage: kdist COMMAND [OPTIONS]\n\ncommands:\n", out);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-6s  %s\n", commands[i].name,
			commands[i].summary);
	fputs("\n'kdist COMMAND -help' lists a command's options.\n", out);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "-help") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "kdist: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
