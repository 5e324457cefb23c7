// SPDX-License-Identifier: Apache-2.0
/*
 * kdist bench: one-way throughput, 64-byte round-trip latency and CPU cost
 * of distribution links, kdist against OTP, in one run.
 *
 *   kdist bench                              all pairs, 64 B to 1 MiB
 *   kdist bench -sizes 65536 -pairs kk,ee_tls -seconds 5 -runs 5
 *   kdist bench -soak 600 -peers 200         memory of 200 idle peers
 *
 * Pairs (sender -> receiver): kk kdist -> kdist, ke kdist -> erl,
 * ek erl -> kdist, ee_tls erl -> erl over inet_tls_dist, ee_tcp erl -> erl
 * over inet_tcp_dist. The kdist sender is a node inside this process; every
 * receiver and every erl sender is a child process that the tool starts and
 * stops. Receivers serve `sink` and `echo` as `kdist node` does.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <ei.h>

#include "cli.h"
#include "kdist.h"

extern char **environ;

#define BENCH_MAX_SIZES 16
#define BENCH_MAX_RUNS 32
#define BENCH_MAX_CHILDREN 16
#define BENCH_MAX_PEERS 1000
#define BENCH_WARMUP_PINGS 200
#define BENCH_START_TIMEOUT_MS 30000
#define BENCH_CONNECT_TIMEOUT_MS 10000
#define BENCH_REPLY_TIMEOUT_MS 120000
#define BENCH_ECHO_TIMEOUT_MS 5000
#define BENCH_SOAK_SAMPLE_S 10
#define BENCH_SOAK_MSG_BYTES 1024

enum bench_pair { PAIR_KK, PAIR_KE, PAIR_EK, PAIR_EE_TLS, PAIR_EE_TCP, N_PAIRS };

enum bench_side { SIDE_KDIST, SIDE_ERL };

static const struct pair_desc {
	const char *name;
	enum bench_side tx, rx;
	bool tls;
	const char *label;
} pair_descs[N_PAIRS] = {
	[PAIR_KK] = { "kk", SIDE_KDIST, SIDE_KDIST, true, "kdist -> kdist (TLS)" },
	[PAIR_KE] = { "ke", SIDE_KDIST, SIDE_ERL, true, "kdist -> erl (TLS)" },
	[PAIR_EK] = { "ek", SIDE_ERL, SIDE_KDIST, true, "erl -> kdist (TLS)" },
	[PAIR_EE_TLS] = { "ee_tls", SIDE_ERL, SIDE_ERL, true,
			  "erl -> erl, inet_tls_dist" },
	[PAIR_EE_TCP] = { "ee_tcp", SIDE_ERL, SIDE_ERL, false,
			  "erl -> erl, inet_tcp_dist" },
};

struct bench_opts {
	size_t sizes[BENCH_MAX_SIZES];
	unsigned n_sizes;
	unsigned seconds;
	unsigned runs;
	unsigned rtt_count;
	unsigned peers;
	unsigned soak;
	bool pair_on[N_PAIRS];
	const char *tls;
	const char *out;
	const char *ktls_name;
	enum kdist_ktls_mode ktls;
};

/* One measurement; NAN marks a figure that was not measured. */
struct sample {
	double mbps, msgs, cpu_tx, cpu_rx;
	double p50, p99, p999;
};

struct pair_result {
	bool measured;
	struct sample runs[BENCH_MAX_SIZES][BENCH_MAX_RUNS];
	struct sample median[BENCH_MAX_SIZES];
	struct sample rtt[BENCH_MAX_RUNS];
	struct sample rtt_median;
	char path[32];
	char tls_version[24];
	char tls_cipher[64];
};

/* A process the tool started: stdin and stdout are pipes to the tool,
 * stderr goes to @log. Closing stdin makes the erl roles halt. */
struct child {
	pid_t pid;
	int in_fd;
	int out_fd;
	char node[KDIST_MAX_NODE_NAME + 1];
	char log[PATH_MAX];
	char buf[4096];
	size_t have;
};

/* The in-process kdist sender. The lock and condition variable carry
 * replies and writable events from the data thread to the main thread. */
struct sender {
	struct kdist_node *node;
	struct kdist_mailbox *mbox;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_uint writable_gen;
	uint64_t eagain;
	bool stats_ready;
	uint64_t stats_messages;
	uint64_t echo_seq;
};

struct bench {
	struct bench_opts o;
	char top[PATH_MAX];
	char out[PATH_MAX];
	char conf[PATH_MAX];
	char cookie[33];
	char prefix[32];
	unsigned epmd_port;
	struct child epmd;
	struct sender tx;
	FILE *node_log;
	struct pair_result res[N_PAIRS];
	double peer_kib, rss_first_kib, rss_all_kib;
	double soak_growth_kib;
};

/* ---- children and clean-up ---- */

/* Pids the signal handler ends; written only by the main thread. */
static volatile pid_t live_children[BENCH_MAX_CHILDREN];

static void track_child(pid_t pid)
{
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++) {
		if (live_children[i] == 0) {
			live_children[i] = pid;
			return;
		}
	}
}

static void untrack_child(pid_t pid)
{
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++)
		if (live_children[i] == pid)
			live_children[i] = 0;
}

static void on_signal(int sig)
{
	for (int i = 0; i < BENCH_MAX_CHILDREN; i++)
		if (live_children[i] > 0)
			kill(live_children[i], SIGTERM);
	_exit(128 + sig);
}

static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Starts @argv with pipes on stdin and stdout and stderr appended to
 * @c->log. Returns 0 or a negative errno. */
static int child_spawn(struct child *c, char *const argv[])
{
	posix_spawn_file_actions_t fa;
	int in[2], out[2], err;

	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, c->log,
					 O_WRONLY | O_CREAT | O_APPEND, 0644);
	err = posix_spawnp(&c->pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (err) {
		close(in[1]);
		close(out[0]);
		fprintf(stderr, "kdist bench: cannot start %s: %s\n", argv[0],
			strerror(err));
		return -err;
	}
	c->in_fd = in[1];
	c->out_fd = out[0];
	c->have = 0;
	track_child(c->pid);
	return 0;
}

/* Reads one line from @c's stdout into @line. Returns 0, -ETIMEDOUT, or
 * -EPIPE when the child closed stdout (it exited). */
static int child_read_line(struct child *c, char *line, size_t cap,
			   unsigned timeout_ms)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->have);
		struct pollfd pfd = { .fd = c->out_fd, .events = POLLIN };
		uint64_t now = now_ns();
		ssize_t n;

		if (nl) {
			size_t len = (size_t)(nl - c->buf);

			snprintf(line, cap, "%.*s", (int)len, c->buf);
			c->have -= len + 1;
			memmove(c->buf, nl + 1, c->have);
			return 0;
		}
		if (c->have == sizeof(c->buf))
			c->have = 0; /* a line longer than the buffer: drop it */
		if (now >= deadline)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1) < 0)
			return -errno;
		n = read(c->out_fd, c->buf + c->have, sizeof(c->buf) - c->have);
		if (n == 0)
			return -EPIPE;
		if (n > 0)
			c->have += (size_t)n;
	}
}

/* Reads lines until one starts with @prefix; other lines are output the
 * child made on its own (warnings) and are skipped. */
static int child_expect(struct child *c, const char *prefix, char *line,
			size_t cap, unsigned timeout_ms)
{
	size_t plen = strlen(prefix);
	int err;

	do {
		err = child_read_line(c, line, cap, timeout_ms);
	} while (err == 0 && strncmp(line, prefix, plen) != 0);
	return err;
}

/* Closes stdin, sends SIGTERM, and after 3 s SIGKILL. */
static void child_stop(struct child *c)
{
	int status;

	if (c->pid <= 0)
		return;
	close(c->in_fd);
	kill(c->pid, SIGTERM);
	for (int i = 0; i < 30; i++) {
		if (waitpid(c->pid, &status, WNOHANG) == c->pid)
			goto reaped;
		sleep_ms(100);
	}
	kill(c->pid, SIGKILL);
	waitpid(c->pid, &status, 0);
reaped:
	close(c->out_fd);
	untrack_child(c->pid);
	c->pid = 0;
}

/* Runs @argv to completion with output to @log. Returns its exit status,
 * or 127 when it cannot be started. */
static int run_command(char *const argv[], const char *log)
{
	struct child c = { 0 };
	char line[512];
	int status;

	snprintf(c.log, sizeof(c.log), "%s", log);
	if (child_spawn(&c, argv))
		return 127;
	close(c.in_fd);
	while (child_read_line(&c, line, sizeof(line), 600000) == 0)
		;
	waitpid(c.pid, &status, 0);
	close(c.out_fd);
	untrack_child(c.pid);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128;
}

/* ---- /proc readings ---- */

/* utime + stime of @pid in seconds, or NAN. */
static double proc_cpu_seconds(pid_t pid)
{
	unsigned long utime, stime;
	char path[64], buf[1024], *p;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return NAN;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
			 "%lu %lu", &utime, &stime) != 2)
		return NAN;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS of @pid in KiB, or NAN. */
static double proc_rss_kib(pid_t pid)
{
	char path[64], line[256];
	double kib = NAN;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return NAN;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %lf kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* ---- options ---- */

static void bench_help(void)
{
	fputs("usage: kdist bench [OPTIONS]\n"
	      "Measures one-way throughput, 64-byte round-trip latency and CPU\n"
	      "seconds per GB for kdist and OTP distribution links on this\n"
	      "machine, then prints a table per payload size and writes\n"
	      "OUT/bench.csv, OUT/bench.json and OUT/bench.png.\n\n"
	      "  -sizes LIST     payload sizes in bytes (default "
	      "64,1024,65536,1048576)\n"
	      "  -seconds S      sending time per case (default 3)\n"
	      "  -runs R         runs per case; tables show medians (default 3)\n"
	      "  -pairs LIST     kk,ke,ek,ee_tls,ee_tcp (default: all)\n"
	      "  -tls 1.2|1.3    TLS version of every TLS pair (default 1.3)\n"
	      "  -ktls MODE      auto, on or off for kdist nodes (default auto)\n"
	      "  -out DIR        output directory (default bench/results)\n"
	      "  -rtt N          round trips per latency run (default 5000)\n"
	      "  -peers N        idle peers for the memory figure; 0 skips it\n"
	      "                  (default 200)\n"
	      "  -soak S         only the memory test: hold the peers for S\n"
	      "                  seconds and sample the receiver's RSS\n",
	      stdout);
}

static int parse_uint(const char *flag, const char *val, unsigned min,
		      unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(val, &end, 10);
	if (errno || *end || end == val || v < min || v > max) {
		fprintf(stderr, "kdist bench: invalid %s '%s': give a number "
			"from %u to %u\n", flag, val, min, max);
		return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

static int parse_sizes(const char *val, struct bench_opts *o)
{
	char copy[256], *save = NULL, *tok;
	unsigned size;

	snprintf(copy, sizeof(copy), "%s", val);
	o->n_sizes = 0;
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (o->n_sizes == BENCH_MAX_SIZES) {
			fprintf(stderr, "kdist bench: -sizes takes at most %d "
				"sizes\n", BENCH_MAX_SIZES);
			return -EINVAL;
		}
		if (parse_uint("-sizes", tok, 1, 32u << 20, &size))
			return -EINVAL;
		o->sizes[o->n_sizes++] = size;
	}
	return o->n_sizes ? 0 : -EINVAL;
}

static int parse_pairs(const char *val, struct bench_opts *o)
{
	char copy[256], *save = NULL, *tok;
	int i;

	snprintf(copy, sizeof(copy), "%s", val);
	memset(o->pair_on, 0, sizeof(o->pair_on));
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < N_PAIRS; i++)
			if (strcmp(tok, pair_descs[i].name) == 0)
				break;
		if (i == N_PAIRS) {
			fprintf(stderr, "kdist bench: unknown pair '%s': use "
				"kk, ke, ek, ee_tls or ee_tcp\n", tok);
			return -EINVAL;
		}
		o->pair_on[i] = true;
	}
	return 0;
}

static int parse_ktls(const char *val, struct bench_opts *o)
{
	static const struct {
		const char *name;
		enum kdist_ktls_mode mode;
	} modes[] = {
		{ "auto", KDIST_KTLS_AUTO },
		{ "on", KDIST_KTLS_ON },
		{ "off", KDIST_KTLS_OFF },
	};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(val, modes[i].name) == 0) {
			o->ktls = modes[i].mode;
			o->ktls_name = modes[i].name;
			return 0;
		}
	}
	fprintf(stderr, "kdist bench: invalid -ktls '%s': use auto, on or "
		"off\n", val);
	return -EINVAL;
}

static void opts_init(struct bench_opts *o)
{
	static const size_t sizes[] = { 64, 1024, 65536, 1048576 };

	memset(o, 0, sizeof(*o));
	memcpy(o->sizes, sizes, sizeof(sizes));
	o->n_sizes = sizeof(sizes) / sizeof(sizes[0]);
	o->seconds = 3;
	o->runs = 3;
	o->rtt_count = 5000;
	o->peers = 200;
	o->tls = "1.3";
	o->out = "bench/results";
	o->ktls_name = "auto";
	for (int i = 0; i < N_PAIRS; i++)
		o->pair_on[i] = true;
}

/* Returns 0, 1 after -help, or 2 after a usage error. */
static int bench_parse(int argc, char **argv, struct bench_opts *o)
{
	int err = 0;

	opts_init(o);
	for (int i = 1; i < argc && !err; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-help") || !strcmp(a, "--help") ||
		    !strcmp(a, "-h")) {
			bench_help();
			return 1;
		}
		if (!val) {
			fprintf(stderr, "kdist bench: %s needs a value; see "
				"'kdist bench -help'\n", a);
			return 2;
		}
		i++;
		if (!strcmp(a, "-sizes"))
			err = parse_sizes(val, o);
		else if (!strcmp(a, "-seconds"))
			err = parse_uint(a, val, 1, 3600, &o->seconds);
		else if (!strcmp(a, "-runs"))
			err = parse_uint(a, val, 1, BENCH_MAX_RUNS, &o->runs);
		else if (!strcmp(a, "-pairs"))
			err = parse_pairs(val, o);
		else if (!strcmp(a, "-rtt"))
			err = parse_uint(a, val, 1, 10000000, &o->rtt_count);
		else if (!strcmp(a, "-peers"))
			err = parse_uint(a, val, 0, BENCH_MAX_PEERS, &o->peers);
		else if (!strcmp(a, "-soak"))
			err = parse_uint(a, val, 1, 86400, &o->soak);
		else if (!strcmp(a, "-ktls"))
			err = parse_ktls(val, o);
		else if (!strcmp(a, "-out"))
			o->out = val;
		else if (!strcmp(a, "-tls") && (!strcmp(val, "1.2") ||
						 !strcmp(val, "1.3")))
			o->tls = val;
		else if (!strcmp(a, "-tls"))
			err = fprintf(stderr, "kdist bench: invalid -tls '%s': "
				      "use 1.2 or 1.3\n", val) ? -EINVAL : 0;
		else
			err = fprintf(stderr, "kdist bench: unknown option "
				      "'%s'; see 'kdist bench -help'\n", a) ?
				      -EINVAL : 0;
	}
	if (!err && o->soak && o->peers < 2) {
		fprintf(stderr, "kdist bench: -soak needs -peers 2 or more\n");
		err = -EINVAL;
	}
	return err ? 2 : 0;
}

/* ---- set-up: paths, certificates, the Erlang module, EPMD ---- */

/* The repository root is two levels above build/kdist. */
static int find_top(struct bench *b)
{
	char exe[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return -errno;
	exe[n] = '\0';
	for (int up = 0; up < 2; up++) {
		slash = strrchr(exe, '/');
		if (!slash)
			return -ENOENT;
		*slash = '\0';
	}
	snprintf(b->top, sizeof(b->top), "%s", exe);
	return 0;
}

static int make_dirs(const char *path)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

static int setup_paths(struct bench *b)
{
	char logs[PATH_MAX];
	int err;

	err = find_top(b);
	if (err) {
		fprintf(stderr, "kdist bench: cannot find the repository from "
			"/proc/self/exe: %s\n", strerror(-err));
		return err;
	}
	err = make_dirs(b->o.out);
	if (!err && !realpath(b->o.out, b->out))
		err = -errno;
	snprintf(logs, sizeof(logs), "%s/logs", b->out);
	if (!err)
		err = make_dirs(logs);
	if (err)
		fprintf(stderr, "kdist bench: cannot create output directory "
			"'%s': %s\n", b->o.out, strerror(-err));
	return err;
}

static int setup_certs_and_module(struct bench *b)
{
	char tool[PATH_MAX], certs[PATH_MAX], src[PATH_MAX], log[PATH_MAX];
	char *mk[] = { tool, certs, NULL };
	char *erlc[] = { "erlc", "-o", b->out, src, NULL };

	snprintf(tool, sizeof(tool), "%s/tests/certs/mkcerts", b->top);
	snprintf(certs, sizeof(certs), "%s/certs", b->out);
	snprintf(log, sizeof(log), "%s/logs/setup.log", b->out);
	if (run_command(mk, log) != 0) {
		fprintf(stderr, "kdist bench: %s %s failed; see %s\n", tool,
			certs, log);
		return -EIO;
	}
	snprintf(b->conf, sizeof(b->conf), "%s/dist-tls%s.conf", certs,
		 strcmp(b->o.tls, "1.2") ? "13" : "12");
	snprintf(src, sizeof(src), "%s/bench/kdist_bench.erl", b->top);
	if (run_command(erlc, log) != 0) {
		fprintf(stderr, "kdist bench: erlc %s failed; see %s (is "
			"erlang-nox installed?)\n", src, log);
		return -EIO;
	}
	return 0;
}

static bool port_listening(unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static unsigned free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unsigned port = 0;

	if (fd < 0)
		return 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* Uses the EPMD on ERL_EPMD_PORT (else 4369) when one answers, otherwise
 * starts `kdist epmd` on a free port and exports ERL_EPMD_PORT so every
 * node the tool starts registers there. */
static int setup_epmd(struct bench *b)
{
	const char *env = getenv("ERL_EPMD_PORT");
	char exe[PATH_MAX], port[16];
	char *argv[] = { exe, "epmd", "-port", port, "-loopback", NULL };

	b->epmd_port = env ? (unsigned)atoi(env) : 4369;
	if (b->epmd_port && port_listening(b->epmd_port)) {
		printf("bench: using the EPMD on port %u\n", b->epmd_port);
		return 0;
	}
	b->epmd_port = free_port();
	snprintf(port, sizeof(port), "%u", b->epmd_port);
	snprintf(exe, sizeof(exe), "%s/build/kdist", b->top);
	snprintf(b->epmd.log, sizeof(b->epmd.log), "%s/logs/epmd.log", b->out);
	if (!b->epmd_port || child_spawn(&b->epmd, argv))
		return -EIO;
	setenv("ERL_EPMD_PORT", port, 1);
	for (int i = 0; i < 50 && !port_listening(b->epmd_port); i++)
		sleep_ms(100);
	if (!port_listening(b->epmd_port)) {
		fprintf(stderr, "kdist bench: kdist epmd on port %u did not "
			"start; see %s\n", b->epmd_port, b->epmd.log);
		return -EIO;
	}
	printf("bench: started kdist epmd on port %u\n", b->epmd_port);
	return 0;
}

/* ---- receivers and erl senders ---- */

/* Starts `kdist node` serving sink and echo and waits for its "up" line. */
static int start_kdist_node(struct bench *b, const char *name,
			    struct child *c)
{
	char exe[PATH_MAX], line[512], *up;
	char *argv[] = { exe, "node", "-sname", (char *)name, "-setcookie",
			 b->cookie, "-proto_dist", "inet_tls",
			 "-ssl_dist_optfile", b->conf, "-ktls",
			 (char *)b->o.ktls_name, NULL };
	int err;

	snprintf(exe, sizeof(exe), "%s/build/kdist", b->top);
	snprintf(c->log, sizeof(c->log), "%s/logs/%s.log", b->out, name);
	err = child_spawn(c, argv);
	if (err)
		return err;
	err = child_expect(c, "kdist: node ", line, sizeof(line),
			   BENCH_START_TIMEOUT_MS);
	up = err ? NULL : strstr(line, " up (port");
	if (!up) {
		fprintf(stderr, "kdist bench: kdist node %s did not start; "
			"see %s\n", name, c->log);
		child_stop(c);
		return err ? err : -EIO;
	}
	snprintf(c->node, sizeof(c->node), "%.*s",
		 (int)(up - line - strlen("kdist: node ")),
		 line + strlen("kdist: node "));
	return 0;
}

/* Starts an erl node running kdist_bench:@role() and waits for its
 * "bench_ready NODE" line. */
static int start_erl(struct bench *b, const char *name, const char *role,
		     bool tls, struct child *c)
{
	char eval[64], line[512];
	char *argv[] = { "erl", "-noshell", "-sname", (char *)name,
			 "-setcookie", b->cookie, "-pa", b->out, "-eval", eval,
			 "-proto_dist", tls ? "inet_tls" : "inet_tcp",
			 tls ? "-ssl_dist_optfile" : NULL, b->conf, NULL };
	int err;

	snprintf(eval, sizeof(eval), "kdist_bench:%s()", role);
	snprintf(c->log, sizeof(c->log), "%s/logs/%s.log", b->out, name);
	err = child_spawn(c, argv);
	if (err)
		return err;
	err = child_expect(c, "bench_ready ", line, sizeof(line),
			   BENCH_START_TIMEOUT_MS);
	if (err) {
		fprintf(stderr, "kdist bench: erl node %s did not start: %s; "
			"see %s\n", name, strerror(-err), c->log);
		child_stop(c);
		return err;
	}
	snprintf(c->node, sizeof(c->node), "%s", line + strlen("bench_ready "));
	return 0;
}

/* Sends one command line to an erl driver and reads its result line,
 * with the "bench_result " prefix removed. */
static int erl_command(struct child *c, char *reply, size_t cap,
		       const char *fmt, ...)
{
	char cmd[512], line[512];
	va_list ap;
	int len, err;

	va_start(ap, fmt);
	len = vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
	va_end(ap);
	cmd[len++] = '\n';
	if (write(c->in_fd, cmd, (size_t)len) != len)
		return -EPIPE;
	err = child_expect(c, "bench_result ", line, sizeof(line),
			   BENCH_REPLY_TIMEOUT_MS);
	if (err)
		return err;
	snprintf(reply, cap, "%s", line + strlen("bench_result "));
	return 0;
}

/* ---- the in-process kdist sender ---- */

static void sender_receive(void *user, struct kdist_mailbox *mbox,
			   const struct kdist_pid *from, const void *payload,
			   size_t len)
{
	struct sender *s = user;
	const char *buf = payload;
	char atom[MAXATOMLEN_UTF8];
	unsigned long long messages;
	int idx = 0, version, type, size, arity;
	uint64_t seq;

	if (ei_decode_version(buf, &idx, &version) ||
	    ei_get_type(buf, &idx, &type, &size))
		return;
	if (type == ERL_BINARY_EXT && len >= (size_t)idx + 5 + sizeof(seq)) {
		memcpy(&seq, buf + idx + 5, sizeof(seq));
		pthread_mutex_lock(&s->lock);
		s->echo_seq = seq;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	if (ei_decode_tuple_header(buf, &idx, &arity) || arity != 3 ||
	    ei_decode_atom(buf, &idx, atom) || strcmp(atom, "sink_stats") ||
	    ei_decode_ulonglong(buf, &idx, &messages))
		return;
	pthread_mutex_lock(&s->lock);
	s->stats_messages = messages;
	s->stats_ready = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void sender_writable(void *user, const char *peer)
{
	struct sender *s = user;

	pthread_mutex_lock(&s->lock);
	atomic_fetch_add(&s->writable_gen, 1);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void deadline_after(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void node_log_line(void *user, enum kdist_log_level level,
			  const char *line)
{
	fprintf(user, "%s\n", line);
	fflush(user);
}

static int sender_start(struct bench *b, const char *name)
{
	struct sender *s = &b->tx;
	struct kdist_config cfg;
	pthread_condattr_t attr;
	int err;

	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &attr);
	pthread_condattr_destroy(&attr);
	kdist_config_init(&cfg);
	cfg.node_name = name;
	cfg.cookie = b->cookie;
	cfg.proto = KDIST_PROTO_INET_TLS;
	cfg.ssl_dist_optfile = b->conf;
	cfg.ktls = b->o.ktls;
	cfg.hidden = true;
	cfg.log_fn = node_log_line;
	cfg.log_user = b->node_log;
	cfg.log_level = KDIST_LOG_INFO;
	err = kdist_node_create(&cfg, &s->node);
	if (!err)
		err = kdist_node_start(s->node);
	if (!err) {
		kdist_set_writable_fn(s->node, sender_writable, s);
		err = kdist_mailbox_open(s->node, NULL, sender_receive, s,
					 &s->mbox);
	}
	if (err)
		fprintf(stderr, "kdist bench: sender node %s: %s\n", name,
			kdist_strerror());
	return err;
}

static void pid_to_ei(const struct kdist_pid *p, erlang_pid *e)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->node, sizeof(e->node), "%s", p->node);
	e->num = p->id;
	e->serial = p->serial;
	e->creation = p->creation;
}

/* Sends {Self, stats} to sink on @peer and waits for the message count. */
static int sender_sink_messages(struct sender *s, const char *peer,
				uint64_t *messages)
{
	struct timespec ts;
	erlang_pid self;
	ei_x_buff x;
	int err = 0;

	pid_to_ei(kdist_mailbox_pid(s->mbox), &self);
	ei_x_new_with_version(&x);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_pid(&x, &self);
	ei_x_encode_atom(&x, "stats");
	pthread_mutex_lock(&s->lock);
	s->stats_ready = false;
	pthread_mutex_unlock(&s->lock);
	do {
		err = kdist_send_name(s->mbox, peer, "sink", x.buff,
				      (size_t)x.index);
		if (err == -EAGAIN)
			sleep_ms(1);
	} while (err == -EAGAIN);
	ei_x_free(&x);
	if (err < 0)
		return err;

	deadline_after(&ts, BENCH_REPLY_TIMEOUT_MS);
	pthread_mutex_lock(&s->lock);
	while (!s->stats_ready && err == 0)
		err = -pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	*messages = s->stats_messages;
	pthread_mutex_unlock(&s->lock);
	return s->stats_ready ? 0 : -ETIMEDOUT;
}

/* Blocks until the writable callback has run since @gen was read, or for
 * at most 100 ms, so a lost callback costs time, not the run. */
static void sender_wait_writable(struct sender *s, unsigned gen)
{
	struct timespec ts;

	deadline_after(&ts, 100);
	pthread_mutex_lock(&s->lock);
	while (atomic_load(&s->writable_gen) == gen)
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts))
			break;
	pthread_mutex_unlock(&s->lock);
}

/* Sends @msg to sink on @peer for @seconds as fast as the send queue takes
 * it; counts the messages sent in @sent. */
static int sender_flood(struct sender *s, const char *peer,
			const ei_x_buff *msg, size_t size, unsigned seconds,
			uint64_t *sent)
{
	uint64_t deadline = now_ns() + (uint64_t)seconds * 1000000000u;
	unsigned batch = size >= 65536 ? 1 : (unsigned)(65536 / size);
	uint64_t n = 0;

	do {
		for (unsigned i = 0; i < batch;) {
			unsigned gen = atomic_load(&s->writable_gen);
			int err = kdist_send_name(s->mbox, peer, "sink",
						  msg->buff, (size_t)msg->index);

			if (err >= 0) {
				i++;
			} else if (err == -EAGAIN) {
				s->eagain++;
				sender_wait_writable(s, gen);
			} else {
				return err;
			}
		}
		n += batch;
	} while (now_ns() < deadline);
	*sent = n;
	return 0;
}

/* ---- one measurement ---- */

static void sample_init(struct sample *m)
{
	m->mbps = m->msgs = m->cpu_tx = m->cpu_rx = NAN;
	m->p50 = m->p99 = m->p999 = NAN;
}

static void sample_rates(struct sample *m, uint64_t messages, size_t size,
			 double seconds, double cpu_tx, double cpu_rx)
{
	double gb = (double)messages * (double)size / 1e9;

	m->msgs = (double)messages / seconds;
	m->mbps = (double)messages * (double)size / 1e6 / seconds;
	m->cpu_tx = gb > 0 ? cpu_tx / gb : NAN;
	m->cpu_rx = gb > 0 ? cpu_rx / gb : NAN;
}

static int kdist_throughput(struct bench *b, const char *peer, pid_t rx,
			    size_t size, struct sample *m)
{
	struct sender *s = &b->tx;
	uint64_t before, after, sent, t0, t1;
	double tx0, rx0;
	unsigned char *bin;
	ei_x_buff x;
	int err;

	bin = malloc(size);
	if (!bin)
		return -ENOMEM;
	RAND_bytes(bin, (int)size);
	ei_x_new_with_version(&x);
	ei_x_encode_binary(&x, bin, (long)size);
	free(bin);

	err = sender_sink_messages(s, peer, &before);
	tx0 = proc_cpu_seconds(getpid());
	rx0 = proc_cpu_seconds(rx);
	t0 = now_ns();
	if (!err)
		err = sender_flood(s, peer, &x, size, b->o.seconds, &sent);
	if (!err)
		err = sender_sink_messages(s, peer, &after);
	t1 = now_ns();
	ei_x_free(&x);
	if (err)
		return err;
	if (after - before != sent)
		printf("bench: note: sent %llu messages, sink counted %llu\n",
		       (unsigned long long)sent,
		       (unsigned long long)(after - before));
	sample_rates(m, after - before, size, (double)(t1 - t0) / 1e9,
		     proc_cpu_seconds(getpid()) - tx0,
		     proc_cpu_seconds(rx) - rx0);
	return 0;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted @v. */
static double percentile(const double *v, size_t n, double p)
{
	size_t rank = (size_t)ceil(p * (double)n);

	return v[rank ? rank - 1 : 0];
}

static int sender_echo_once(struct sender *s, const char *peer,
			    ei_x_buff *x, int seq_off, uint64_t seq)
{
	struct timespec ts;
	int err;

	memcpy(x->buff + seq_off, &seq, sizeof(seq));
	err = kdist_send_name(s->mbox, peer, "echo", x->buff,
			      (size_t)x->index);
	if (err < 0)
		return err;
	deadline_after(&ts, BENCH_ECHO_TIMEOUT_MS);
	err = 0;
	pthread_mutex_lock(&s->lock);
	while (s->echo_seq != seq && err == 0)
		err = -pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	err = s->echo_seq == seq ? 0 : -ETIMEDOUT;
	pthread_mutex_unlock(&s->lock);
	return err;
}

/* Sequential round trips of {Self, <<Seq:64, Random:56/binary>>} through
 * echo on @peer; the echoed binary carries the sequence number back. */
static int kdist_latency(struct bench *b, const char *peer, struct sample *m)
{
	unsigned n = b->o.rtt_count, total = n + BENCH_WARMUP_PINGS;
	struct sender *s = &b->tx;
	unsigned char bin[64];
	erlang_pid self;
	double *us;
	ei_x_buff x;
	int seq_off, err = 0;

	us = calloc(n, sizeof(*us));
	if (!us)
		return -ENOMEM;
	RAND_bytes(bin, sizeof(bin));
	pid_to_ei(kdist_mailbox_pid(s->mbox), &self);
	ei_x_new_with_version(&x);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_pid(&x, &self);
	seq_off = x.index + 5; /* BINARY_EXT tag and 4-byte length */
	ei_x_encode_binary(&x, bin, sizeof(bin));

	for (unsigned i = 0; i < total && !err; i++) {
		uint64_t t0 = now_ns();

		err = sender_echo_once(s, peer, &x, seq_off, (uint64_t)i + 1);
		if (i >= BENCH_WARMUP_PINGS)
			us[i - BENCH_WARMUP_PINGS] =
				(double)(now_ns() - t0) / 1000.0;
	}
	ei_x_free(&x);
	if (!err) {
		qsort(us, n, sizeof(*us), compare_double);
		m->p50 = percentile(us, n, 0.50);
		m->p99 = percentile(us, n, 0.99);
		m->p999 = percentile(us, n, 0.999);
	}
	free(us);
	return err;
}

static int erl_throughput(struct bench *b, struct child *drv, pid_t rx,
			  const char *peer, size_t size, struct sample *m)
{
	unsigned long long sent, counted, micros;
	double tx0, rx0;
	char reply[256];
	int err;

	tx0 = proc_cpu_seconds(drv->pid);
	rx0 = proc_cpu_seconds(rx);
	err = erl_command(drv, reply, sizeof(reply), "send %s %zu %u", peer,
			  size, b->o.seconds * 1000);
	if (err)
		return err;
	if (sscanf(reply, "send %llu %llu %llu", &sent, &counted,
		   &micros) != 3 || micros == 0) {
		fprintf(stderr, "kdist bench: erl sender answered '%s'\n",
			reply);
		return -EPROTO;
	}
	if (sent != counted)
		printf("bench: note: erl sent %llu messages, sink counted "
		       "%llu\n", sent, counted);
	sample_rates(m, counted, size, (double)micros / 1e6,
		     proc_cpu_seconds(drv->pid) - tx0,
		     proc_cpu_seconds(rx) - rx0);
	return 0;
}

static int erl_latency(struct bench *b, struct child *drv, const char *peer,
		       struct sample *m)
{
	char reply[256];
	unsigned count;
	int err;

	err = erl_command(drv, reply, sizeof(reply), "ping %s %u", peer,
			  b->o.rtt_count);
	if (err)
		return err;
	if (sscanf(reply, "ping %u %lf %lf %lf", &count, &m->p50, &m->p99,
		   &m->p999) != 4) {
		fprintf(stderr, "kdist bench: erl pinger answered '%s'\n",
			reply);
		return -EPROTO;
	}
	return 0;
}

/* ---- one pair: receiver, sender, runs ---- */

struct pair_run {
	struct child rx;
	struct child drv;
};

static void copy_conn_stats(void *user, const struct kdist_conn_stats *st)
{
	struct pair_result *r = user;

	if (r->path[0])
		return;
	snprintf(r->path, sizeof(r->path), "%s", st->record_path);
	snprintf(r->tls_version, sizeof(r->tls_version), "%s",
		 st->tls_version);
	snprintf(r->tls_cipher, sizeof(r->tls_cipher), "%s", st->tls_cipher);
}

/* Reads the record path of the link from @peer out of a kdist node's log
 * line "conn PEER: up as ROLE, VERSION CIPHER, record path PATH (...)". */
static void path_from_log(const char *log, const char *peer,
			  struct pair_result *r)
{
	char line[1024], want[KDIST_MAX_NODE_NAME + 32], *p;
	FILE *f = fopen(log, "r");

	if (!f)
		return;
	snprintf(want, sizeof(want), "conn %s: up as ", peer);
	while (fgets(line, sizeof(line), f)) {
		p = strstr(line, want);
		if (!p)
			continue;
		p = strchr(p + strlen(want), ',');
		if (!p || sscanf(p, ", %23s %63[^,], record path %31s",
				 r->tls_version, r->tls_cipher, r->path) != 3)
			continue;
		break;
	}
	fclose(f);
}

static void pair_path_info(struct bench *b, enum bench_pair p,
			   struct pair_run *run)
{
	const struct pair_desc *d = &pair_descs[p];
	struct pair_result *r = &b->res[p];

	if (d->tx == SIDE_KDIST) {
		kdist_node_stats(b->tx.node, copy_conn_stats, r);
	} else if (d->rx == SIDE_KDIST) {
		path_from_log(run->rx.log, run->drv.node, r);
	} else {
		/* erl does not report the negotiated cipher; the version is
		 * the one the options file allows. */
		snprintf(r->path, sizeof(r->path), "erl");
		snprintf(r->tls_version, sizeof(r->tls_version), "%s",
			 d->tls ? (strcmp(b->o.tls, "1.2") ? "TLSv1.3"
							   : "TLSv1.2")
				: "none");
	}
}

static int pair_start(struct bench *b, enum bench_pair p, struct pair_run *r)
{
	const struct pair_desc *d = &pair_descs[p];
	char name[64], reply[128];
	int err;

	snprintf(name, sizeof(name), "%s_%s_rx", b->prefix, d->name);
	if (d->rx == SIDE_KDIST)
		err = start_kdist_node(b, name, &r->rx);
	else
		err = start_erl(b, name, "serve", d->tls, &r->rx);
	if (err)
		return err;
	if (d->tx == SIDE_KDIST) {
		err = kdist_connect(b->tx.node, r->rx.node,
				    BENCH_CONNECT_TIMEOUT_MS);
		if (err)
			fprintf(stderr, "kdist bench: %s: connect to %s "
				"failed: %s\n", d->name, r->rx.node,
				kdist_strerror());
		return err;
	}
	snprintf(name, sizeof(name), "%s_%s_tx", b->prefix, d->name);
	err = start_erl(b, name, "drive", d->tls, &r->drv);
	if (!err)
		err = erl_command(&r->drv, reply, sizeof(reply), "connect %s",
				  r->rx.node);
	if (!err && strcmp(reply, "connect ok") != 0) {
		fprintf(stderr, "kdist bench: %s: erl %s cannot connect to "
			"%s; see %s and %s\n", d->name, r->drv.node,
			r->rx.node, r->drv.log, r->rx.log);
		err = -ECONNREFUSED;
	}
	return err;
}

static void pair_stop(struct bench *b, enum bench_pair p, struct pair_run *r)
{
	if (pair_descs[p].tx == SIDE_KDIST && r->rx.node[0])
		kdist_disconnect(b->tx.node, r->rx.node);
	child_stop(&r->drv);
	child_stop(&r->rx);
}

static void print_progress(enum bench_pair p, size_t size, unsigned run,
			   unsigned runs, const struct sample *m, bool rtt)
{
	if (rtt)
		printf("%-7s rtt 64 B    run %u/%u: p50 %.1f us  p99 %.1f us  "
		       "p99.9 %.1f us\n", pair_descs[p].name, run + 1, runs,
		       m->p50, m->p99, m->p999);
	else
		printf("%-7s %8zu B  run %u/%u: %10.1f MB/s %12.0f msgs/s  "
		       "CPU s/GB tx %.2f rx %.2f\n", pair_descs[p].name, size,
		       run + 1, runs, m->mbps, m->msgs, m->cpu_tx, m->cpu_rx);
	fflush(stdout);
}

/* One run of every size and one latency run. A failed case is reported
 * and left as NAN; the other cases still run. */
static int pair_run_once(struct bench *b, enum bench_pair p,
			 struct pair_run *r, unsigned run)
{
	struct pair_result *res = &b->res[p];
	bool kdist_tx = pair_descs[p].tx == SIDE_KDIST;
	int err = 0;

	for (unsigned i = 0; i < b->o.n_sizes; i++) {
		struct sample *m = &res->runs[i][run];
		size_t size = b->o.sizes[i];

		sample_init(m);
		err = kdist_tx ? kdist_throughput(b, r->rx.node, r->rx.pid,
						  size, m)
			       : erl_throughput(b, &r->drv, r->rx.pid,
						r->rx.node, size, m);
		if (err) {
			printf("%-7s %8zu B  run %u/%u: failed: %s\n",
			       pair_descs[p].name, size, run + 1, b->o.runs,
			       strerror(-err));
			return err;
		}
		print_progress(p, size, run, b->o.runs, m, false);
	}
	sample_init(&res->rtt[run]);
	err = kdist_tx ? kdist_latency(b, r->rx.node, &res->rtt[run])
		       : erl_latency(b, &r->drv, r->rx.node, &res->rtt[run]);
	if (err)
		printf("%-7s rtt 64 B    run %u/%u: failed: %s\n",
		       pair_descs[p].name, run + 1, b->o.runs, strerror(-err));
	else
		print_progress(p, 64, run, b->o.runs, &res->rtt[run], true);
	return err;
}

static int bench_pair(struct bench *b, enum bench_pair p)
{
	struct pair_run r;
	int err;

	memset(&r, 0, sizeof(r));
	printf("bench: %s: %s\n", pair_descs[p].name, pair_descs[p].label);
	err = pair_start(b, p, &r);
	for (unsigned run = 0; !err && run < b->o.runs; run++)
		err = pair_run_once(b, p, &r, run);
	if (r.rx.pid)
		pair_path_info(b, p, &r);
	b->res[p].measured = true;
	pair_stop(b, p, &r);
	return err;
}

/* ---- medians and reports ---- */

/* Median of the measured (non-NAN) values; NAN when there are none. */
static double median_of(const double *v, unsigned n)
{
	double s[BENCH_MAX_RUNS];
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++)
		if (!isnan(v[i]))
			s[k++] = v[i];
	if (!k)
		return NAN;
	qsort(s, k, sizeof(s[0]), compare_double);
	return k % 2 ? s[k / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
}

#define SAMPLE_FIELDS 7

static void sample_median(const struct sample *runs, unsigned n,
			  struct sample *out)
{
	double v[BENCH_MAX_RUNS];

	for (int f = 0; f < SAMPLE_FIELDS; f++) {
		for (unsigned i = 0; i < n; i++)
			v[i] = ((const double *)&runs[i])[f];
		((double *)out)[f] = median_of(v, n);
	}
}

static void compute_medians(struct bench *b)
{
	for (int p = 0; p < N_PAIRS; p++) {
		struct pair_result *r = &b->res[p];

		for (unsigned i = 0; i < b->o.n_sizes; i++)
			sample_median(r->runs[i], b->o.runs, &r->median[i]);
		sample_median(r->rtt, b->o.runs, &r->rtt_median);
	}
}

static const char *fmt(char *buf, size_t cap, double v, int prec)
{
	if (isnan(v))
		return "-";
	snprintf(buf, cap, "%.*f", prec, v);
	return buf;
}

static double ratio(const struct bench *b, int p, enum bench_pair base,
		    unsigned size)
{
	if (!b->res[base].measured)
		return NAN;
	return b->res[p].median[size].mbps / b->res[base].median[size].mbps;
}

static void print_size_table(FILE *f, const struct bench *b, unsigned i)
{
	char a[9][32], tls[96];

	fprintf(f, "\n%zu B payload, median of %u runs of %u s\n",
		b->o.sizes[i], b->o.runs, b->o.seconds);
	fprintf(f, "%-7s %10s %11s %8s %8s %8s %7s %7s  %-10s %-32s %6s "
		"%6s\n", "pair", "MB/s", "msgs/s", "p50 us", "p99 us",
		"p99.9 us", "CPU tx", "CPU rx", "path", "TLS", "/ee_tls",
		"/ee_tcp");
	for (int p = 0; p < N_PAIRS; p++) {
		const struct pair_result *r = &b->res[p];
		const struct sample *m = &r->median[i];
		const struct sample *l = &r->rtt_median;
		bool rtt = b->o.sizes[i] == 64;

		if (!r->measured)
			continue;
		snprintf(tls, sizeof(tls), "%s%s%s", r->tls_version,
			 r->tls_cipher[0] ? " " : "", r->tls_cipher);
		fprintf(f, "%-7s %10s %11s %8s %8s %8s %7s %7s  %-10s %-32s "
			"%6s %6s\n", pair_descs[p].name,
			fmt(a[0], 32, m->mbps, 1), fmt(a[1], 32, m->msgs, 0),
			rtt ? fmt(a[2], 32, l->p50, 1) : "-",
			rtt ? fmt(a[3], 32, l->p99, 1) : "-",
			rtt ? fmt(a[4], 32, l->p999, 1) : "-",
			fmt(a[5], 32, m->cpu_tx, 2), fmt(a[6], 32, m->cpu_rx, 2),
			r->path[0] ? r->path : "-", tls[0] ? tls : "-",
			fmt(a[7], 32, ratio(b, p, PAIR_EE_TLS, i), 2),
			fmt(a[8], 32, ratio(b, p, PAIR_EE_TCP, i), 2));
	}
}

static int size_index(const struct bench *b, size_t size)
{
	for (unsigned i = 0; i < b->o.n_sizes; i++)
		if (b->o.sizes[i] == size)
			return (int)i;
	return -1;
}

static void target_line(FILE *f, const char *what, double have, double want,
			bool at_most, const char *unit)
{
	const char *verdict;

	if (isnan(have) || isnan(want))
		verdict = "not measured";
	else if (at_most ? have <= want : have >= want)
		verdict = "met";
	else
		verdict = "missed";
	fprintf(f, "  %-52s %12.2f %-8s target %s %.2f: %s\n", what, have,
		unit, at_most ? "<=" : ">=", want, verdict);
}

static void print_throughput_targets(FILE *f, const struct bench *b)
{
	const struct pair_result *kk = &b->res[PAIR_KK];
	int k64 = size_index(b, 65536), s64 = size_index(b, 64);
	double nan = NAN;

	target_line(f, "64 KiB kk / ee_tls (MB/s ratio)",
		    k64 < 0 ? nan : ratio(b, PAIR_KK, PAIR_EE_TLS, k64), 20,
		    false, "x");
	target_line(f, "64 KiB kk / ee_tcp (MB/s ratio)",
		    k64 < 0 ? nan : ratio(b, PAIR_KK, PAIR_EE_TCP, k64), 0.6,
		    false, "x");
	target_line(f, "64 B kk messages per second",
		    s64 < 0 ? nan : kk->median[s64].msgs, 2000000, false,
		    "msgs/s");
	target_line(f, "64 B kk / ee_tls (msgs/s ratio)",
		    s64 < 0 ? nan : ratio(b, PAIR_KK, PAIR_EE_TLS, s64), 5,
		    false, "x");
	for (unsigned i = 0; i < b->o.n_sizes; i++) {
		char what[64];

		snprintf(what, sizeof(what), "%zu B ke / ee_tls (MB/s ratio)",
			 b->o.sizes[i]);
		target_line(f, what, ratio(b, PAIR_KE, PAIR_EE_TLS, i), 1,
			    false, "x");
		snprintf(what, sizeof(what), "%zu B ek / ee_tls (MB/s ratio)",
			 b->o.sizes[i]);
		target_line(f, what, ratio(b, PAIR_EK, PAIR_EE_TLS, i), 1,
			    false, "x");
	}
	target_line(f, "64 B RTT p99, kk minus ee_tcp",
		    kk->rtt_median.p99 - b->res[PAIR_EE_TCP].rtt_median.p99,
		    0, true, "us");
}

static void print_report(FILE *f, const struct bench *b)
{
	if (!b->o.soak) {
		for (unsigned i = 0; i < b->o.n_sizes; i++)
			print_size_table(f, b, i);
		fputs("\nCPU columns are CPU seconds per GB of payload; "
		      "/ee_tls and /ee_tcp are MB/s ratios.\n\ntargets:\n", f);
		print_throughput_targets(f, b);
	} else {
		fputs("\ntargets:\n", f);
	}
	if (b->o.peers >= 2)
		target_line(f, "receiver RSS per idle TLS peer (KiB)",
			    b->peer_kib, 100, true, "KiB");
	if (b->o.soak)
		target_line(f, "receiver RSS growth during the soak (KiB)",
			    b->soak_growth_kib, 0, true, "KiB");
}

/* ---- files: CSV, JSON, chart ---- */

static FILE *open_out(const struct bench *b, const char *name)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", b->out, name);
	f = fopen(path, "w");
	if (!f)
		fprintf(stderr, "kdist bench: cannot write %s: %s\n", path,
			strerror(errno));
	return f;
}

static void csv_row(FILE *f, const struct bench *b, int p, unsigned i,
		    const char *run, const struct sample *m,
		    const struct sample *l)
{
	const struct pair_result *r = &b->res[p];

	fprintf(f, "%s,%zu,%s,%.3f,%.1f,%.3f,%.3f,%.3f,%.4f,%.4f,%s,%s,%s\n",
		pair_descs[p].name, b->o.sizes[i], run, m->mbps, m->msgs,
		l->p50, l->p99, l->p999, m->cpu_tx, m->cpu_rx, r->path,
		r->tls_version, r->tls_cipher);
}

static void write_csv(const struct bench *b)
{
	FILE *f = open_out(b, "bench.csv");
	char run[16];

	if (!f)
		return;
	fputs("pair,size,run,mb_per_s,msgs_per_s,rtt64_p50_us,rtt64_p99_us,"
	      "rtt64_p999_us,cpu_tx_s_per_gb,cpu_rx_s_per_gb,record_path,"
	      "tls_version,tls_cipher\n", f);
	for (int p = 0; p < N_PAIRS; p++) {
		if (!b->res[p].measured)
			continue;
		for (unsigned i = 0; i < b->o.n_sizes; i++) {
			for (unsigned k = 0; k < b->o.runs; k++) {
				snprintf(run, sizeof(run), "%u", k + 1);
				csv_row(f, b, p, i, run, &b->res[p].runs[i][k],
					&b->res[p].rtt[k]);
			}
			csv_row(f, b, p, i, "median", &b->res[p].median[i],
				&b->res[p].rtt_median);
		}
	}
	fclose(f);
}

/* JSON has no NaN: unmeasured figures are null. */
static void json_num(FILE *f, const char *key, double v, bool comma)
{
	if (isnan(v) || isinf(v))
		fprintf(f, "\"%s\": null%s", key, comma ? ", " : "");
	else
		fprintf(f, "\"%s\": %.4f%s", key, v, comma ? ", " : "");
}

static void json_sample(FILE *f, const struct sample *m)
{
	fputc('{', f);
	json_num(f, "mb_per_s", m->mbps, true);
	json_num(f, "msgs_per_s", m->msgs, true);
	json_num(f, "cpu_tx_s_per_gb", m->cpu_tx, true);
	json_num(f, "cpu_rx_s_per_gb", m->cpu_rx, false);
	fputc('}', f);
}

static void json_rtt(FILE *f, const struct sample *m)
{
	fputc('{', f);
	json_num(f, "p50_us", m->p50, true);
	json_num(f, "p99_us", m->p99, true);
	json_num(f, "p999_us", m->p999, false);
	fputc('}', f);
}

static void json_pair(FILE *f, const struct bench *b, int p)
{
	const struct pair_result *r = &b->res[p];

	fprintf(f, "    {\"pair\": \"%s\", \"record_path\": \"%s\", "
		"\"tls_version\": \"%s\", \"tls_cipher\": \"%s\",\n"
		"     \"rtt64_median\": ", pair_descs[p].name, r->path,
		r->tls_version, r->tls_cipher);
	json_rtt(f, &r->rtt_median);
	fputs(",\n     \"sizes\": [\n", f);
	for (unsigned i = 0; i < b->o.n_sizes; i++) {
		fprintf(f, "       {\"size\": %zu, \"median\": ",
			b->o.sizes[i]);
		json_sample(f, &r->median[i]);
		fputs(", \"runs\": [", f);
		for (unsigned k = 0; k < b->o.runs; k++) {
			json_sample(f, &r->runs[i][k]);
			fputs(k + 1 < b->o.runs ? ", " : "", f);
		}
		fprintf(f, "]}%s\n", i + 1 < b->o.n_sizes ? "," : "");
	}
	fputs("     ]}", f);
}

static void machine_info(char *cpu, size_t cap, char *otp, size_t otp_cap)
{
	char line[256];
	glob_t g;
	FILE *f;

	snprintf(cpu, cap, "unknown");
	f = fopen("/proc/cpuinfo", "r");
	while (f && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) == 0 && colon) {
			snprintf(cpu, cap, "%s", colon + 2);
			cpu[strcspn(cpu, "\n")] = '\0';
			break;
		}
	}
	if (f)
		fclose(f);
	snprintf(otp, otp_cap, "unknown");
	if (glob("/usr/lib/erlang/releases/*/OTP_VERSION", 0, NULL, &g) == 0) {
		f = fopen(g.gl_pathv[0], "r");
		if (f && fgets(otp, (int)otp_cap, f))
			otp[strcspn(otp, "\n")] = '\0';
		if (f)
			fclose(f);
		globfree(&g);
	}
}

static void write_json(const struct bench *b)
{
	char cpu[128], otp[32];
	struct utsname u;
	FILE *f = open_out(b, "bench.json");
	bool first = true;

	if (!f)
		return;
	machine_info(cpu, sizeof(cpu), otp, sizeof(otp));
	uname(&u);
	fprintf(f, "{\n  \"machine\": {\"cpu\": \"%s\", \"cpus\": %ld, "
		"\"kernel\": \"%s\", \"openssl\": \"%s\", \"otp\": \"%s\"},\n",
		cpu, sysconf(_SC_NPROCESSORS_ONLN), u.release,
		OpenSSL_version(OPENSSL_VERSION), otp);
	fprintf(f, "  \"config\": {\"seconds\": %u, \"runs\": %u, "
		"\"rtt_round_trips\": %u, \"tls\": \"%s\", \"ktls\": \"%s\", "
		"\"peers\": %u, \"soak_seconds\": %u},\n", b->o.seconds,
		b->o.runs, b->o.rtt_count, b->o.tls, b->o.ktls_name,
		b->o.peers, b->o.soak);
	fputs("  \"memory\": {", f);
	json_num(f, "rss_kib_one_peer", b->rss_first_kib, true);
	json_num(f, "rss_kib_all_peers", b->rss_all_kib, true);
	json_num(f, "rss_kib_per_peer", b->peer_kib, true);
	json_num(f, "soak_growth_kib", b->soak_growth_kib, false);
	fputs("},\n  \"pairs\": [\n", f);
	for (int p = 0; p < N_PAIRS; p++) {
		if (!b->res[p].measured)
			continue;
		fputs(first ? "" : ",\n", f);
		json_pair(f, b, p);
		first = false;
	}
	fputs("\n  ]\n}\n", f);
	fclose(f);
}

static void write_chart(const struct bench *b)
{
	char script[PATH_MAX], log[PATH_MAX];
	char *argv[] = { "gnuplot", script, NULL };
	FILE *dat = open_out(b, "bench.dat"), *gp;
	int col = 2, status;

	if (!dat)
		return;
	fputs("size", dat);
	for (int p = 0; p < N_PAIRS; p++)
		if (b->res[p].measured)
			fprintf(dat, " %s", pair_descs[p].name);
	for (unsigned i = 0; i < b->o.n_sizes; i++) {
		fprintf(dat, "\n%zu", b->o.sizes[i]);
		for (int p = 0; p < N_PAIRS; p++)
			if (b->res[p].measured && !isnan(b->res[p].median[i].mbps))
				fprintf(dat, " %.3f", b->res[p].median[i].mbps);
			else if (b->res[p].measured)
				fputs(" ?", dat);
	}
	fputc('\n', dat);
	fclose(dat);

	gp = open_out(b, "bench.gp");
	if (!gp)
		return;
	fprintf(gp, "set terminal png size 900,480\nset output '%s/bench.png'\n"
		"set title 'One-way throughput, median of %u runs (MB/s, log "
		"scale)'\nset datafile missing '?'\nset style data histograms\n"
		"set style histogram clustered gap 1\nset style fill solid 0.8 "
		"border -1\nset logscale y\nset yrange [0.1:*]\nset grid ytics\n"
		"set xlabel 'payload bytes'\nset ylabel 'MB/s'\nset key top "
		"left\nplot '%s/bench.dat' using 2:xtic(1) title columnheader(2)",
		b->out, b->o.runs, b->out);
	for (int p = 0; p < N_PAIRS; p++)
		if (b->res[p].measured && col++ > 2)
			fprintf(gp, ", '' using %d title columnheader(%d)",
				col - 1, col - 1);
	fputc('\n', gp);
	fclose(gp);
	snprintf(script, sizeof(script), "%s/bench.gp", b->out);
	snprintf(log, sizeof(log), "%s/logs/gnuplot.log", b->out);
	status = run_command(argv, log);
	if (status == 127)
		printf("bench: note: gnuplot not found (apt-get install "
		       "gnuplot-nox); no bench.png\n");
	else if (status)
		printf("bench: note: gnuplot failed; see %s\n", log);
}

/* ---- memory per idle peer and the soak ---- */

struct peer {
	struct kdist_node *node;
	struct kdist_mailbox *mbox;
};

/* A hidden kdist node inside this process, connected to @target. */
static int peer_start(struct bench *b, unsigned i, const char *target,
		      struct peer *p)
{
	struct kdist_config cfg;
	char name[64];
	int err;

	snprintf(name, sizeof(name), "%s_p%u", b->prefix, i);
	kdist_config_init(&cfg);
	cfg.node_name = name;
	cfg.cookie = b->cookie;
	cfg.proto = KDIST_PROTO_INET_TLS;
	cfg.ssl_dist_optfile = b->conf;
	cfg.ktls = b->o.ktls;
	cfg.hidden = true;
	cfg.log_fn = node_log_line;
	cfg.log_user = b->node_log;
	cfg.log_level = KDIST_LOG_WARN;
	err = kdist_node_create(&cfg, &p->node);
	if (err)
		goto fail;
	err = kdist_node_start(p->node);
	if (!err)
		err = kdist_connect(p->node, target, BENCH_CONNECT_TIMEOUT_MS);
	if (!err)
		err = kdist_mailbox_open(p->node, NULL, NULL, NULL, &p->mbox);
	if (!err)
		return 0;
	kdist_node_destroy(p->node);
	p->node = NULL;
fail:
	fprintf(stderr, "kdist bench: peer %s: %s\n", name, kdist_strerror());
	return err;
}

/* Each second every peer sends a 1 KiB binary to sink; every
 * BENCH_SOAK_SAMPLE_S seconds the receiver's RSS goes to soak.csv. The soak
 * passes when the last sample is not above the highest of the first
 * minute, which covers allocator warm-up. */
static void bench_soak(struct bench *b, struct peer *peers, unsigned n,
		       struct child *rx)
{
	unsigned char bin[BENCH_SOAK_MSG_BYTES];
	double first_max = 0, last = NAN, rss;
	uint64_t start = now_ns();
	FILE *csv = open_out(b, "soak.csv");
	ei_x_buff x;

	RAND_bytes(bin, sizeof(bin));
	ei_x_new_with_version(&x);
	ei_x_encode_binary(&x, bin, sizeof(bin));
	if (csv)
		fputs("seconds,rss_kib\n", csv);
	for (unsigned sec = 1; sec <= b->o.soak; sec++) {
		uint64_t wake = start + (uint64_t)sec * 1000000000u;

		for (unsigned i = 0; i < n; i++)
			kdist_send_name(peers[i].mbox, rx->node, "sink", x.buff,
					(size_t)x.index);
		while (now_ns() < wake)
			sleep_ms((unsigned)((wake - now_ns()) / 1000000u) + 1);
		if (sec % BENCH_SOAK_SAMPLE_S && sec != b->o.soak)
			continue;
		rss = proc_rss_kib(rx->pid);
		if (sec <= 60 && rss > first_max)
			first_max = rss;
		last = rss;
		if (csv)
			fprintf(csv, "%u,%.0f\n", sec, rss);
		printf("soak    %5u s: receiver RSS %.0f KiB\n", sec, rss);
		fflush(stdout);
	}
	ei_x_free(&x);
	if (csv)
		fclose(csv);
	b->soak_growth_kib = last - first_max;
}

/* Receiver RSS with one connected peer, then with all of them: the
 * difference over (peers - 1) is the cost of one idle TLS peer, without
 * the one-time cost of the first connection. */
static int bench_memory(struct bench *b)
{
	struct child rx = { 0 };
	struct peer *peers;
	char name[64];
	unsigned n = 0;
	int err;

	b->peer_kib = b->rss_first_kib = b->rss_all_kib = NAN;
	b->soak_growth_kib = NAN;
	peers = calloc(b->o.peers, sizeof(*peers));
	if (!peers)
		return -ENOMEM;
	snprintf(name, sizeof(name), "%s_mem_rx", b->prefix);
	err = start_kdist_node(b, name, &rx);
	if (err)
		goto out_free;
	printf("bench: memory: connecting %u hidden TLS peers to %s\n",
	       b->o.peers, rx.node);
	for (; n < b->o.peers; n++) {
		err = peer_start(b, n, rx.node, &peers[n]);
		if (err)
			goto out_stop;
		if (n == 0) {
			sleep_ms(1000);
			b->rss_first_kib = proc_rss_kib(rx.pid);
		}
	}
	sleep_ms(2000);
	b->rss_all_kib = proc_rss_kib(rx.pid);
	b->peer_kib = (b->rss_all_kib - b->rss_first_kib) / (n - 1);
	printf("bench: memory: receiver RSS %.0f KiB with 1 peer, %.0f KiB "
	       "with %u: %.1f KiB per peer\n", b->rss_first_kib,
	       b->rss_all_kib, n, b->peer_kib);
	if (b->o.soak)
		bench_soak(b, peers, n, &rx);
out_stop:
	while (n--)
		kdist_node_destroy(peers[n].node);
	child_stop(&rx);
out_free:
	free(peers);
	return err;
}

/* ---- the command ---- */

static int bench_setup(struct bench *b)
{
	unsigned char raw[16];
	char path[PATH_MAX];
	int err;

	err = setup_paths(b);
	if (!err)
		err = setup_certs_and_module(b);
	if (!err)
		err = setup_epmd(b);
	if (err)
		return err;
	RAND_bytes(raw, sizeof(raw));
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(b->cookie + 2 * i, 3, "%02x", raw[i]);
	OPENSSL_cleanse(raw, sizeof(raw));
	snprintf(b->prefix, sizeof(b->prefix), "kb%d", (int)getpid());
	snprintf(path, sizeof(path), "%s/logs/kdist-in-process.log", b->out);
	b->node_log = fopen(path, "w");
	if (!b->node_log) {
		fprintf(stderr, "kdist bench: cannot write %s: %s\n", path,
			strerror(errno));
		return -errno;
	}
	return 0;
}

static void bench_throughput(struct bench *b)
{
	char name[64];

	if (b->o.pair_on[PAIR_KK] || b->o.pair_on[PAIR_KE]) {
		snprintf(name, sizeof(name), "%s_tx", b->prefix);
		if (sender_start(b, name)) {
			b->o.pair_on[PAIR_KK] = b->o.pair_on[PAIR_KE] = false;
			printf("bench: skipping kk and ke: the in-process "
			       "sender did not start\n");
		}
	}
	for (int p = 0; p < N_PAIRS; p++)
		if (b->o.pair_on[p])
			bench_pair(b, (enum bench_pair)p);
	compute_medians(b);
}

static void bench_write_outputs(struct bench *b)
{
	FILE *summary = open_out(b, "summary.txt");

	print_report(stdout, b);
	if (summary) {
		print_report(summary, b);
		fclose(summary);
	}
	if (!b->o.soak) {
		write_csv(b);
		write_chart(b);
	}
	write_json(b);
	printf("\nbench: results in %s (%s, bench.json, summary.txt, logs/)\n",
	       b->out, b->o.soak ? "soak.csv" : "bench.csv, bench.png");
}

int cmd_bench(int argc, char **argv)
{
	static struct bench b;
	int err;

	err = bench_parse(argc, argv, &b.o);
	if (err)
		return err == 1 ? 0 : err;
	install_signals();
	err = bench_setup(&b);
	if (err)
		goto out;
	if (!b.o.soak)
		bench_throughput(&b);
	if (b.o.peers >= 2)
		bench_memory(&b);
	bench_write_outputs(&b);
out:
	if (b.tx.node)
		kdist_node_destroy(b.tx.node);
	child_stop(&b.epmd);
	if (b.node_log)
		fclose(b.node_log);
	return err ? 1 : 0;
}
