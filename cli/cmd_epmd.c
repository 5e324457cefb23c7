// SPDX-License-Identifier: Apache-2.0
/*
 * `kdist epmd` runs kdist's EPMD in the foreground; `kdist names` lists
 * what an EPMD has registered, as `epmd -names` does. Options use one dash,
 * as erl and epmd spell them. argv[0] is the subcommand name.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "epmd.h"
#include "error.h"

#define EXIT_USAGE 2
#define NAMES_TIMEOUT_MS 5000

static const char epmd_usage[] =
    "usage: kdist epmd [-port N] [-loopback]\n"
    "Runs an EPMD that erl nodes and kdist can register with, until SIGINT\n"
    "or SIGTERM.\n"
    "  -port N     TCP port to listen on (default: $ERL_EPMD_PORT, else 4369);\n"
    "              -epmd_port N is the same\n"
    "  -loopback   listen on 127.0.0.1 and ::1 only (default: all addresses)\n"
    "  -help       print this help\n";

static const char names_usage[] =
    "usage: kdist names [-host H] [-epmd_port N]\n"
    "Prints the nodes registered with an EPMD, as `epmd -names` does.\n"
    "  -host H        host name or address of the EPMD (default: localhost);\n"
    "                 -epmd_host H is the same\n"
    "  -epmd_port N   TCP port of the EPMD (default: $ERL_EPMD_PORT, else 4369)\n"
    "  -help          print this help\n";

/* Parses a TCP port 1..65535; returns 0 or -EINVAL. */
static int parse_port(const char *text, uint16_t *port)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(text, &end, 10);
	if (errno || end == text || *end || v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* Sets @port from ERL_EPMD_PORT, else the EPMD default. */
static int default_port(uint16_t *port)
{
	const char *env = getenv("ERL_EPMD_PORT");

	*port = KD_EPMD_DEFAULT_PORT;
	if (!env || !*env)
		return 0;
	if (parse_port(env, port) < 0) {
		fprintf(
		    stderr,
		    "kdist: ERL_EPMD_PORT='%s' is invalid; set it to a port from 1 to 65535 or unset it\n",
		    env);
		return -EINVAL;
	}
	return 0;
}

/* Reads the value of option argv[*i]; prints usage on a missing value. */
static const char *option_value(int argc, char **argv, int *i,
				const char *usage)
{
	if (*i + 1 >= argc) {
		fprintf(stderr, "kdist: option %s needs a value\n%s", argv[*i],
			usage);
		return NULL;
	}
	return argv[++*i];
}

static int port_option(int argc, char **argv, int *i, const char *usage,
		       uint16_t *port)
{
	const char *value = option_value(argc, argv, i, usage);

	if (!value)
		return -EINVAL;
	if (parse_port(value, port) < 0) {
		fprintf(
		    stderr,
		    "kdist: %s '%s' is invalid; give a port from 1 to 65535\n",
		    argv[*i - 1], value);
		return -EINVAL;
	}
	return 0;
}

static int unknown_option(const char *arg, const char *usage)
{
	fprintf(stderr, "kdist: unknown option '%s'\n%s", arg, usage);
	return EXIT_USAGE;
}

/* Blocks until SIGINT or SIGTERM; the caller has blocked both. */
static void wait_for_stop_signal(const sigset_t *stop)
{
	int sig;

	while (sigwait(stop, &sig) != 0)
		;
}

static int run_epmd(uint16_t port, int loopback)
{
	struct kd_epmd_server *srv;
	sigset_t stop, old;
	int ret;

	/* Block the signals before the server thread starts, so it inherits
	 * the mask and only sigwait() here receives them. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, &old);

	ret = kd_epmd_server_start(port, loopback, &srv);
	if (ret < 0) {
		fprintf(stderr, "kdist: %s\n", kd_last_error());
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return EXIT_FAILURE;
	}
	printf(
	    "kdist epmd: listening on port %u (%s); stop with Ctrl-C or SIGTERM\n",
	    kd_epmd_server_port(srv),
	    loopback ? "127.0.0.1 and ::1" : "all addresses");
	fflush(stdout);

	wait_for_stop_signal(&stop);
	kd_epmd_server_stop(srv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return EXIT_SUCCESS;
}

int cmd_epmd(int argc, char **argv)
{
	int i, loopback = 0;
	uint16_t port;

	if (default_port(&port) < 0)
		return EXIT_USAGE;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-port") || !strcmp(argv[i], "-epmd_port")) {
			if (port_option(argc, argv, &i, epmd_usage, &port) < 0)
				return EXIT_USAGE;
		} else if (!strcmp(argv[i], "-loopback")) {
			loopback = 1;
		} else if (!strcmp(argv[i], "-help") ||
			   !strcmp(argv[i], "--help")) {
			fputs(epmd_usage, stdout);
			return EXIT_SUCCESS;
		} else {
			return unknown_option(argv[i], epmd_usage);
		}
	}
	return run_epmd(port, loopback);
}

int cmd_names(int argc, char **argv)
{
	const char *host = "localhost";
	uint16_t port, epmd_port = 0;
	char *text = NULL;
	int i;

	if (default_port(&port) < 0)
		return EXIT_USAGE;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-host") || !strcmp(argv[i], "-epmd_host")) {
			host = option_value(argc, argv, &i, names_usage);
			if (!host)
				return EXIT_USAGE;
		} else if (!strcmp(argv[i], "-epmd_port")) {
			if (port_option(argc, argv, &i, names_usage, &port) < 0)
				return EXIT_USAGE;
		} else if (!strcmp(argv[i], "-help") ||
			   !strcmp(argv[i], "--help")) {
			fputs(names_usage, stdout);
			return EXIT_SUCCESS;
		} else {
			return unknown_option(argv[i], names_usage);
		}
	}

	if (kd_epmd_names(host, port, NAMES_TIMEOUT_MS, &epmd_port, &text) <
	    0) {
		fprintf(stderr, "kdist: %s\n", kd_last_error());
		return EXIT_FAILURE;
	}
	printf("epmd: up and running on port %u with data:\n%s", epmd_port,
	       text);
	free(text);
	return EXIT_SUCCESS;
}
