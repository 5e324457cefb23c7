// SPDX-License-Identifier: Apache-2.0
#include "opts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Options that take a value, so that an unknown option is reported as
 * unknown even when it is the last argument. -kernel takes two. */
static const char *const value_options[] = {
	"-sname", "-name", "-setcookie", "-proto_dist", "-ssl_dist_optfile",
	"-kernel", "-ktls", "-epmd_port", "-epmd_host", "-allow",
	"-max_packet", "-max_message", "-send_queue", "-data_threads",
	"-handshake_timeout", "-stop_timeout", "-timeout", "-count",
};

__attribute__((format(printf, 2, 3)))
static int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kdist %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nkdist %s -help lists the options\n", cmd);
	return 2;
}

static bool takes_value(const char *option)
{
	for (size_t i = 0; i < sizeof(value_options) / sizeof(value_options[0]);
	     i++)
		if (strcmp(option, value_options[i]) == 0)
			return true;
	return false;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_proto(const char *v, enum kdist_proto *out)
{
	static const struct {
		const char *name;
		enum kdist_proto proto;
	} protos[] = {
		{ "inet_tls", KDIST_PROTO_INET_TLS },
		{ "inet6_tls", KDIST_PROTO_INET6_TLS },
		{ "inet_tcp", KDIST_PROTO_INET_TCP },
		{ "inet6_tcp", KDIST_PROTO_INET6_TCP },
	};

	for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++)
		if (strcmp(v, protos[i].name) == 0) {
			*out = protos[i].proto;
			return 0;
		}
	return -1;
}

static int parse_kernel(const char *cmd, const char *key, const char *val,
			struct cli_opts *o)
{
	unsigned long v;

	if (strcmp(key, "net_ticktime") == 0) {
		if (parse_uint(val, 86400, &v) || v == 0)
			return usage_error(cmd,
					   "-kernel net_ticktime needs whole "
					   "seconds from 1 to 86400, got '%s'",
					   val);
		o->cfg.net_ticktime = (unsigned)v;
		return 0;
	}
	if (strcmp(key, "inet_dist_listen_min") == 0 ||
	    strcmp(key, "inet_dist_listen_max") == 0) {
		if (parse_uint(val, 65535, &v) || v == 0)
			return usage_error(cmd, "-kernel %s '%s' is invalid; "
					   "give a port from 1 to 65535", key,
					   val);
		if (strcmp(key, "inet_dist_listen_min") == 0)
			o->cfg.listen_port = (uint16_t)v;
		else
			o->cfg.listen_port_max = (uint16_t)v;
		return 0;
	}
	return usage_error(cmd,
			   "-kernel %s is not supported (supported: "
			   "net_ticktime, inet_dist_listen_min, "
			   "inet_dist_listen_max)",
			   key);
}

/* erl ignores inet_dist_listen_max without inet_dist_listen_min and fails
 * to listen when min is above max. Both are usage errors here. */
static int check_listen_range(const char *cmd, const struct kdist_config *cfg)
{
	if (!cfg->listen_port_max)
		return 0;
	if (!cfg->listen_port)
		return usage_error(cmd, "-kernel inet_dist_listen_max %u needs "
				   "-kernel inet_dist_listen_min PORT too, the "
				   "first port of the range",
				   cfg->listen_port_max);
	if (cfg->listen_port > cfg->listen_port_max)
		return usage_error(cmd, "-kernel inet_dist_listen_max %u is "
				   "below -kernel inet_dist_listen_min %u; give "
				   "a range with min <= max",
				   cfg->listen_port_max, cfg->listen_port);
	return 0;
}

/* -ssl_dist_opt takes key value pairs up to the next flag. */
static int parse_ssl_dist_opt(const char *cmd, int argc, char **argv, int *i,
			      struct cli_opts *o)
{
	int start = *i;

	while (*i + 2 < argc && argv[*i + 1][0] != '-') {
		if (o->n_ssl_opts + 2 > CLI_MAX_SSL_OPTS * 2)
			return usage_error(cmd, "too many -ssl_dist_opt "
					   "pairs: at most %d", CLI_MAX_SSL_OPTS);
		o->ssl_opts[o->n_ssl_opts++] = argv[*i + 1];
		o->ssl_opts[o->n_ssl_opts++] = argv[*i + 2];
		*i += 2;
	}
	if (*i == start)
		return usage_error(cmd,
				   "-ssl_dist_opt needs pairs such as "
				   "server_certfile FILE");
	return 0;
}

int cli_parse(int argc, char **argv, struct cli_opts *o)
{
	const char *cmd = argv[0];
	unsigned long v;

	memset(o, 0, sizeof(*o));
	kdist_config_init(&o->cfg);
	o->timeout_ms = 7000;
	o->count = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "-help") == 0 || strcmp(a, "--help") == 0 ||
		    strcmp(a, "-h") == 0) {
			o->help = true;
			continue;
		}
		if (strcmp(a, "-hidden") == 0) {
			o->cfg.hidden = true;
			continue;
		}
		if (strcmp(a, "-v") == 0) {
			o->cfg.log_level = KDIST_LOG_DEBUG;
			continue;
		}
		if (strcmp(a, "-ssl_dist_opt") == 0) {
			if (parse_ssl_dist_opt(cmd, argc, argv, &i, o))
				return 2;
			continue;
		}
		if (a[0] != '-' || strcmp(a, "-") == 0) {
			if (o->n_args == CLI_MAX_ARGS)
				return usage_error(cmd, "too many arguments "
						   "at '%s'", a);
			o->args[o->n_args++] = a;
			continue;
		}
		if (!takes_value(a))
			return usage_error(cmd, "unknown option '%s'", a);
		if (!val)
			return usage_error(cmd, "%s needs a value", a);
		i++;
		if (strcmp(a, "-sname") == 0) {
			o->name = val;
			o->cfg.longnames = false;
		} else if (strcmp(a, "-name") == 0) {
			o->name = val;
			o->cfg.longnames = true;
		} else if (strcmp(a, "-setcookie") == 0) {
			o->cfg.cookie = val;
		} else if (strcmp(a, "-proto_dist") == 0) {
			if (parse_proto(val, &o->cfg.proto))
				return usage_error(cmd,
						   "-proto_dist '%s' is not "
						   "supported (inet_tls, "
						   "inet6_tls, inet_tcp, "
						   "inet6_tcp)",
						   val);
		} else if (strcmp(a, "-ssl_dist_optfile") == 0) {
			o->cfg.ssl_dist_optfile = val;
		} else if (strcmp(a, "-kernel") == 0) {
			if (i + 1 >= argc)
				return usage_error(cmd, "-kernel %s needs a "
						   "value", val);
			if (parse_kernel(cmd, val, argv[++i], o))
				return 2;
		} else if (strcmp(a, "-ktls") == 0) {
			if (strcmp(val, "auto") == 0)
				o->cfg.ktls = KDIST_KTLS_AUTO;
			else if (strcmp(val, "on") == 0)
				o->cfg.ktls = KDIST_KTLS_ON;
			else if (strcmp(val, "off") == 0)
				o->cfg.ktls = KDIST_KTLS_OFF;
			else
				return usage_error(cmd, "-ktls takes auto, on "
						   "or off, got '%s'", val);
		} else if (strcmp(a, "-epmd_port") == 0) {
			if (parse_uint(val, 65535, &v) || v == 0)
				return usage_error(cmd, "-epmd_port '%s' is "
						   "invalid; give a port from 1 "
						   "to 65535", val);
			o->cfg.epmd_port = (uint16_t)v;
		} else if (strcmp(a, "-allow") == 0) {
			if (o->n_allow == CLI_MAX_SSL_OPTS)
				return usage_error(cmd, "too many -allow "
						   "nodes at '%s'", val);
			o->allow[o->n_allow++] = val;
		} else if (strcmp(a, "-epmd_host") == 0) {
			o->cfg.epmd_host = val;
		} else if (strcmp(a, "-max_packet") == 0) {
			if (parse_uint(val, 0xffffffffUL, &v) || v < 1024)
				return usage_error(cmd, "-max_packet needs "
						   "bytes, at least 1024, got "
						   "'%s'", val);
			o->cfg.max_packet = (uint32_t)v;
		} else if (strcmp(a, "-max_message") == 0) {
			if (parse_uint(val, 1UL << 40, &v) || v < 65536)
				return usage_error(cmd, "-max_message needs "
						   "bytes, at least 65536, got "
						   "'%s'", val);
			o->cfg.max_message = v;
		} else if (strcmp(a, "-send_queue") == 0) {
			if (parse_uint(val, 1UL << 40, &v) || v < 65536)
				return usage_error(cmd, "-send_queue needs "
						   "bytes, at least 65536, got "
						   "'%s'", val);
			o->cfg.send_queue_bytes = v;
		} else if (strcmp(a, "-data_threads") == 0) {
			if (parse_uint(val, 64, &v) || v == 0)
				return usage_error(cmd, "-data_threads needs 1 "
						   "to 64, got '%s'", val);
			o->cfg.data_threads = (unsigned)v;
		} else if (strcmp(a, "-handshake_timeout") == 0) {
			if (parse_uint(val, 600000, &v) || v == 0)
				return usage_error(cmd, "-handshake_timeout "
						   "needs milliseconds from 1 "
						   "to 600000, got '%s'", val);
			o->cfg.handshake_timeout_ms = (unsigned)v;
		} else if (strcmp(a, "-stop_timeout") == 0) {
			if (parse_uint(val, 600000, &v) || v == 0)
				return usage_error(cmd, "-stop_timeout needs "
						   "milliseconds from 1 to "
						   "600000, got '%s'", val);
			o->cfg.stop_timeout_ms = (unsigned)v;
		} else if (strcmp(a, "-count") == 0) {
			if (strcmp(cmd, "ping") != 0)
				return usage_error(cmd, "-count applies only "
						   "to kdist ping");
			if (parse_uint(val, 10000000, &v) || v == 0)
				return usage_error(cmd, "-count needs a "
						   "number from 1 to 10000000, "
						   "got '%s'", val);
			o->count = (unsigned)v;
		} else if (strcmp(a, "-timeout") == 0) {
			if (strcmp(cmd, "ping") != 0 && strcmp(cmd, "send") != 0)
				return usage_error(cmd, "-timeout applies only "
						   "to kdist ping and kdist "
						   "send");
			if (parse_uint(val, 3600000, &v) || v == 0)
				return usage_error(cmd, "-timeout needs "
						   "milliseconds from 1 to "
						   "3600000, got '%s'", val);
			o->timeout_ms = (unsigned)v;
		} else {
			return usage_error(cmd, "unknown option '%s'", a);
		}
	}
	if (check_listen_range(cmd, &o->cfg))
		return 2;
	o->cfg.allow = o->allow;
	o->cfg.n_allow = o->n_allow;
	o->cfg.ssl_dist_opts = o->ssl_opts;
	o->cfg.n_ssl_dist_opts = o->n_ssl_opts;
	return 0;
}

void cli_print_common_help(void)
{
	fputs("Node options (as erl takes them):\n"
	      "  -sname NAME[@HOST]       short node name (host: this host, "
	      "not qualified)\n"
	      "  -name NAME[@HOST]        long node name (host: fully "
	      "qualified)\n"
	      "  -setcookie COOKIE        cookie; default: ~/.erlang.cookie, "
	      "created if missing\n"
	      "  -proto_dist PROTO        inet_tls (default; erl's default is "
	      "inet_tcp),\n"
	      "                           inet6_tls, inet_tcp or inet6_tcp\n"
	      "  -ssl_dist_optfile FILE   TLS options file, as for erl; "
	      "inet_tls and inet6_tls\n"
	      "                           need it or -ssl_dist_opt\n"
	      "  -ssl_dist_opt K V ...    TLS options as pairs, e.g. "
	      "server_certfile FILE\n"
	      "  -kernel net_ticktime N   seconds of silence before a peer "
	      "is down (default 60)\n"
	      "  -kernel inet_dist_listen_min PORT\n"
	      "                           first listen port (default: any "
	      "free port)\n"
	      "  -kernel inet_dist_listen_max PORT\n"
	      "                           last listen port: the node takes "
	      "the first free port\n"
	      "                           from min to max (default: min)\n"
	      "  -hidden                  do not appear in peers' nodes()\n"
	      "  -allow NODE              accept connections only from NODE "
	      "(repeatable),\n"
	      "                           as net_kernel:allow/1\n"
	      "Engine options:\n"
	      "  -ktls auto|on|off        record path policy (default "
	      "auto, see README)\n"
	      "  -epmd_port PORT          EPMD port (default: $ERL_EPMD_PORT "
	      "or 4369)\n"
	      "  -epmd_host HOST          EPMD to register with (default "
	      "localhost)\n"
	      "  -max_packet BYTES        largest packet accepted (default "
	      "67108864)\n"
	      "  -max_message BYTES       largest message reassembled from "
	      "fragments (default\n"
	      "                           1073741824)\n"
	      "  -send_queue BYTES        per-connection send queue limit "
	      "(default 8388608)\n"
	      "  -data_threads N          io_uring data threads (default "
	      "1)\n"
	      "  -handshake_timeout MS    TLS plus distribution handshake "
	      "limit (default 7000)\n"
	      "  -stop_timeout MS         at a stop, how long connections may "
	      "take to send\n"
	      "                           what is queued and close in order "
	      "(default 5000)\n"
	      "  -v                       debug logging\n",
	      stdout);
}

void cli_quiet(struct cli_opts *o)
{
	if (o->cfg.log_level == KDIST_LOG_INFO)
		o->cfg.log_level = KDIST_LOG_WARN;
}

void cli_default_name(struct cli_opts *o, char *buf, size_t cap)
{
	if (o->name)
		return;
	snprintf(buf, cap, "kdist_%d", (int)getpid());
	o->name = buf;
	o->cfg.hidden = true;
}

struct kdist_node *cli_start_node(struct cli_opts *o)
{
	struct kdist_node *node;
	int err;

	o->cfg.node_name = o->name;
	err = kdist_node_create(&o->cfg, &node);
	if (err) {
		fprintf(stderr, "kdist: %s\n", kdist_strerror());
		return NULL;
	}
	err = kdist_node_start(node);
	if (err) {
		fprintf(stderr, "kdist: %s\n", kdist_strerror());
		kdist_node_destroy(node);
		return NULL;
	}
	return node;
}
