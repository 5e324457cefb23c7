// SPDX-License-Identifier: Apache-2.0
/*
 * kdist node, ping and send. The node serves two registered names that
 * tests and benchmarks use:
 *   echo  {Pid, Term} -> Term sent back to Pid
 *   sink  counts messages and payload bytes. {Pid, stats} gets the reply
 *         {sink_stats, Messages, Bytes} and is not counted. {Pid, exits}
 *         gets {sink_exits, SinkPid, [{From, Reason}]}, the exit messages
 *         that processes linked to the sink caused.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <ei.h>

#include "cli.h"
#include "opts.h"
#include "term.h"

/*
 * Replies the echo service could not send because the connection's queue
 * was full. They go out, in order, from the writable callback. When a peer
 * never drains its connection the backlog reaches ECHO_BACKLOG_MAX, and
 * further replies are dropped and counted.
 */
#define ECHO_BACKLOG_MAX (512u * 1024 * 1024)

struct echo_reply {
	struct echo_reply *next;
	struct kdist_pid to;
	size_t len;
	char data[];
};

struct echo {
	struct kdist_mailbox *mbox;
	pthread_mutex_t lock;
	struct echo_reply *head, *tail;
	size_t bytes;
	uint64_t dropped;
	uint64_t accepted; /* replies kdist_send_pid() took */
	uint64_t rejected; /* sends rejected while the node stops */
};

/* A failed reply: counted once the node stops, else one line each. */
static void echo_failed(struct echo *e, const char *peer, int err)
{
	if (err == -ESHUTDOWN)
		e->rejected++;
	else
		fprintf(stderr, "kdist: echo: reply to %s failed: %s\n", peer,
			kdist_strerror());
}

/* Replies still waiting for the writable callback. */
static uint64_t echo_backlog_count(struct echo *e)
{
	uint64_t n = 0;

	for (struct echo_reply *r = e->head; r; r = r->next)
		n++;
	return n;
}

/* Frees the replies still waiting; no callback runs any more. */
static void echo_free_backlog(struct echo *e)
{
	while (e->head) {
		struct echo_reply *r = e->head;

		e->head = r->next;
		free(r);
	}
	e->tail = NULL;
	e->bytes = 0;
}

/* Sends what waits; echo->lock held. */
static void echo_flush(struct echo *e)
{
	while (e->head) {
		struct echo_reply *r = e->head;
		int err = kdist_send_pid(e->mbox, &r->to, r->data, r->len);

		if (err == -EAGAIN)
			return;
		if (err)
			echo_failed(e, r->to.node, err);
		else
			e->accepted++;
		e->head = r->next;
		if (!e->head)
			e->tail = NULL;
		e->bytes -= r->len;
		free(r);
	}
}

static void echo_defer(struct echo *e, const struct kdist_pid *to,
		       const char *data, size_t len)
{
	struct echo_reply *r;

	if (e->bytes + len > ECHO_BACKLOG_MAX ||
	    !(r = malloc(sizeof(*r) + len))) {
		if (e->dropped++ == 0)
			fprintf(stderr, "kdist: echo: backlog full (%zu bytes), "
				"dropping replies; counting further ones\n",
				e->bytes);
		return;
	}
	r->next = NULL;
	r->to = *to;
	r->len = len;
	memcpy(r->data, data, len);
	if (e->tail)
		e->tail->next = r;
	else
		e->head = r;
	e->tail = r;
	e->bytes += len;
}

static void echo_receive(void *user, struct kdist_mailbox *mbox,
			 const struct kdist_pid *from, const void *payload,
			 size_t len)
{
	struct echo *e = user;
	const char *buf = payload;
	int idx = 0, version, arity, start;
	erlang_pid to;
	struct kdist_pid dest;
	ei_x_buff x;
	int err;

	if (ei_decode_version(buf, &idx, &version) ||
	    ei_decode_tuple_header(buf, &idx, &arity) || arity != 2 ||
	    ei_decode_pid(buf, &idx, &to))
		return;
	start = idx;
	if (ei_skip_term(buf, &idx) || (size_t)idx != len)
		return;
	if (ei_x_new_with_version(&x) != 0)
		return;
	ei_x_append_buf(&x, buf + start, idx - start);
	snprintf(dest.node, sizeof(dest.node), "%s", to.node);
	dest.id = to.num;
	dest.serial = to.serial;
	dest.creation = to.creation;

	pthread_mutex_lock(&e->lock);
	err = e->head ? -EAGAIN
		      : kdist_send_pid(mbox, &dest, x.buff, (size_t)x.index);
	if (err == -EAGAIN)
		echo_defer(e, &dest, x.buff, (size_t)x.index);
	else if (err)
		echo_failed(e, to.node, err);
	else
		e->accepted++;
	pthread_mutex_unlock(&e->lock);
	ei_x_free(&x);
}

static void echo_writable(void *user, const char *peer)
{
	struct echo *e = user;

	pthread_mutex_lock(&e->lock);
	echo_flush(e);
	pthread_mutex_unlock(&e->lock);
}

/* Exit messages the sink keeps for {Pid, exits}, each as the encoded
 * From and Reason; later ones, and larger ones, are not kept. */
#define SINK_EXITS_MAX 64
#define SINK_EXIT_BYTES 512

struct sink_exit {
	size_t len;
	char term[SINK_EXIT_BYTES];
};

struct sink {
	atomic_uint_fast64_t messages;
	atomic_uint_fast64_t bytes;
	pthread_mutex_t lock; /* protects the exits */
	struct sink_exit exits[SINK_EXITS_MAX];
	size_t n_exits;
};

enum sink_request {
	SINK_NONE,
	SINK_STATS,
	SINK_EXITS,
};

/* {Pid, stats} or {Pid, exits}, filling @pid; SINK_NONE for anything
 * else. */
static enum sink_request sink_request_of(const char *buf, size_t len,
					 erlang_pid *pid)
{
	char atom[MAXATOMLEN_UTF8];
	int idx = 0, version, arity;

	if (len > 64 + MAXATOMLEN_UTF8)
		return SINK_NONE;
	if (ei_decode_version(buf, &idx, &version) != 0 ||
	    ei_decode_tuple_header(buf, &idx, &arity) != 0 || arity != 2 ||
	    ei_decode_pid(buf, &idx, pid) != 0 ||
	    ei_decode_atom(buf, &idx, atom) != 0 || (size_t)idx != len)
		return SINK_NONE;
	if (strcmp(atom, "stats") == 0)
		return SINK_STATS;
	if (strcmp(atom, "exits") == 0)
		return SINK_EXITS;
	return SINK_NONE;
}

/* Keeps From and Reason of an {'EXIT', From, Reason} message. */
static void sink_keep_exit(struct sink *sink, const char *buf, size_t len)
{
	char atom[MAXATOMLEN_UTF8];
	int idx = 0, version, arity, start;
	erlang_pid pid;

	if (ei_decode_version(buf, &idx, &version) != 0 ||
	    ei_decode_tuple_header(buf, &idx, &arity) != 0 || arity != 3 ||
	    ei_decode_atom(buf, &idx, atom) != 0 || strcmp(atom, "EXIT") != 0)
		return;
	start = idx;
	if (ei_decode_pid(buf, &idx, &pid) != 0 || ei_skip_term(buf, &idx) != 0 ||
	    (size_t)idx != len)
		return;
	pthread_mutex_lock(&sink->lock);
	if (sink->n_exits < SINK_EXITS_MAX &&
	    len - (size_t)start <= SINK_EXIT_BYTES) {
		struct sink_exit *e = &sink->exits[sink->n_exits++];

		e->len = len - (size_t)start;
		memcpy(e->term, buf + start, e->len);
	}
	pthread_mutex_unlock(&sink->lock);
}

static void sink_encode_exits(struct sink *sink, struct kdist_mailbox *mbox,
			      ei_x_buff *x)
{
	erlang_pid self;
	const struct kdist_pid *pub = kdist_mailbox_pid(mbox);

	memset(&self, 0, sizeof(self));
	snprintf(self.node, sizeof(self.node), "%s", pub->node);
	self.num = pub->id;
	self.serial = pub->serial;
	self.creation = pub->creation;
	ei_x_encode_tuple_header(x, 3);
	ei_x_encode_atom(x, "sink_exits");
	ei_x_encode_pid(x, &self);
	pthread_mutex_lock(&sink->lock);
	if (sink->n_exits > 0)
		ei_x_encode_list_header(x, (long)sink->n_exits);
	for (size_t i = 0; i < sink->n_exits; i++) {
		ei_x_encode_tuple_header(x, 2);
		ei_x_append_buf(x, sink->exits[i].term,
				(int)sink->exits[i].len);
	}
	pthread_mutex_unlock(&sink->lock);
	ei_x_encode_empty_list(x);
}

static void sink_receive(void *user, struct kdist_mailbox *mbox,
			 const struct kdist_pid *from, const void *payload,
			 size_t len)
{
	struct sink *sink = user;
	enum sink_request req;
	struct kdist_pid dest;
	erlang_pid pid;
	ei_x_buff x;

	req = sink_request_of(payload, len, &pid);
	if (req == SINK_NONE) {
		atomic_fetch_add_explicit(&sink->messages, 1,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&sink->bytes, len,
					  memory_order_relaxed);
		sink_keep_exit(sink, payload, len);
		return;
	}
	if (ei_x_new_with_version(&x) != 0)
		return;
	if (req == SINK_EXITS) {
		sink_encode_exits(sink, mbox, &x);
	} else {
		ei_x_encode_tuple_header(&x, 3);
		ei_x_encode_atom(&x, "sink_stats");
		ei_x_encode_ulonglong(&x, atomic_load(&sink->messages));
		ei_x_encode_ulonglong(&x, atomic_load(&sink->bytes));
	}
	snprintf(dest.node, sizeof(dest.node), "%s", pid.node);
	dest.id = pid.num;
	dest.serial = pid.serial;
	dest.creation = pid.creation;
	kdist_send_pid(mbox, &dest, x.buff, (size_t)x.index);
	ei_x_free(&x);
}

static void print_conn(void *user, const struct kdist_conn_stats *st)
{
	printf("kdist: conn %s: %s %s path=%s (%s) in=%llu bytes/%llu msgs "
	       "out=%llu bytes/%llu msgs\n",
	       st->peer, st->tls_version[0] ? st->tls_version : "tcp",
	       st->tls_cipher[0] ? st->tls_cipher : "-", st->record_path,
	       st->path_reason, (unsigned long long)st->bytes_in,
	       (unsigned long long)st->msgs_in,
	       (unsigned long long)st->bytes_out,
	       (unsigned long long)st->msgs_out);
	fflush(stdout);
}

static void node_up(void *user, const char *peer)
{
	printf("kdist: nodeup %s\n", peer);
	fflush(stdout);
}

static void node_down(void *user, const char *peer, const char *reason,
		      const struct kdist_conn_stats *final)
{
	printf("kdist: nodedown %s (%s)\n", peer, reason);
	/* NULL for an attempt that never came up. */
	if (final)
		print_conn(user, final);
	else
		fflush(stdout);
}

static void node_help(void)
{
	fputs("usage: kdist node -sname NAME | -name NAME [OPTIONS]\n"
	      "Runs a node until SIGINT or SIGTERM. It serves the registered\n"
	      "names 'echo' ({Pid, Term} is sent back to Pid as Term) and\n"
	      "'sink' (counts messages; {Pid, stats} gets {sink_stats,\n"
	      "Messages, Bytes}; {Pid, exits} gets {sink_exits, SinkPid,\n"
	      "[{From, Reason}]}, the exit messages of processes linked to\n"
	      "the sink). At the end it prints one line per connection.\n\n",
	      stdout);
	cli_print_common_help();
}

static void block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Ends the process at a second SIGINT or SIGTERM, for an operator who does
 * not want to wait for the orderly stop. */
static void *force_exit(void *arg)
{
	sigset_t set;
	int sig;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigwait(&set, &sig) == 0) {
		fprintf(stderr, "kdist: second %s during the stop: exiting without waiting for the connections to close\n",
			sig == SIGINT ? "SIGINT" : "SIGTERM");
		_exit(1);
	}
	return NULL;
}

int cmd_node(int argc, char **argv)
{
	struct kdist_mailbox *sink_mbox;
	struct echo echo = { .lock = PTHREAD_MUTEX_INITIALIZER };
	static struct sink sink = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct cli_opts o;
	struct kdist_node *node;
	pthread_t forcer;
	bool forcing;
	sigset_t set;
	int sig;

	if (cli_parse(argc, argv, &o))
		return 2;
	if (o.help) {
		node_help();
		return 0;
	}
	if (!o.name) {
		fprintf(stderr, "kdist node: -sname NAME or -name NAME is "
				"required\n");
		return 2;
	}
	/* Signals are blocked before any thread starts, so every thread
	 * inherits the mask and sigwait below receives them. */
	block_signals(&set);
	node = cli_start_node(&o);
	if (!node)
		return 1;
	kdist_set_node_monitor(node, node_up, node_down, NULL);
	kdist_set_writable_fn(node, echo_writable, &echo);
	if (kdist_mailbox_open(node, "echo", echo_receive, &echo, &echo.mbox) ||
	    kdist_mailbox_open(node, "sink", sink_receive, &sink,
			       &sink_mbox)) {
		fprintf(stderr, "kdist: %s\n", kdist_strerror());
		kdist_node_destroy(node);
		return 1;
	}
	printf("kdist: node %s up (port %u, creation %u, proto %s)\n",
	       kdist_node_name(node), kdist_node_port(node),
	       kdist_node_creation(node),
	       o.cfg.proto == KDIST_PROTO_INET_TLS    ? "inet_tls"
	       : o.cfg.proto == KDIST_PROTO_INET6_TLS ? "inet6_tls"
	       : o.cfg.proto == KDIST_PROTO_INET_TCP  ? "inet_tcp"
						      : "inet6_tcp");
	fflush(stdout);

	sigwait(&set, &sig);
	printf("kdist: stopping on %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
	forcing = pthread_create(&forcer, NULL, force_exit, NULL) == 0;
	printf("kdist: sink received %llu messages, %llu bytes\n",
	       (unsigned long long)atomic_load(&sink.messages),
	       (unsigned long long)atomic_load(&sink.bytes));
	fflush(stdout);
	/* Each connection still up prints its summary from nodedown. */
	kdist_node_stop(node);
	printf("kdist: echo: %llu replies accepted for sending, %llu not accepted (the node was stopping)\n",
	       (unsigned long long)echo.accepted,
	       (unsigned long long)(echo.rejected + echo_backlog_count(&echo)));
	if (echo.dropped > 0)
		printf("kdist: echo: %llu replies dropped because the backlog was full\n",
		       (unsigned long long)echo.dropped);
	/* No writable callback comes once the stop has begun, so replies
	 * may still wait here. */
	echo_free_backlog(&echo);
	kdist_node_destroy(node);
	/* sigwait() is a cancellation point: the stop ended in time. */
	if (forcing) {
		pthread_cancel(forcer);
		pthread_join(forcer, NULL);
	}
	return 0;
}

/* ---- ping and send ---- */

/* A mailbox that waits for the {Tag, Reply} reply to one gen_call. */
struct call {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	erlang_ref ref;
	bool done;
	char reply[MAXATOMLEN_UTF8];
};

static void call_receive(void *user, struct kdist_mailbox *mbox,
			 const struct kdist_pid *from, const void *payload,
			 size_t len)
{
	struct call *c = user;
	const char *buf = payload;
	int idx = 0, version, arity;
	erlang_ref ref;
	char atom[MAXATOMLEN_UTF8];

	if (ei_decode_version(buf, &idx, &version) ||
	    ei_decode_tuple_header(buf, &idx, &arity) || arity != 2 ||
	    ei_decode_ref(buf, &idx, &ref) ||
	    ei_decode_atom(buf, &idx, atom))
		return;
	if (ref.len != c->ref.len ||
	    memcmp(ref.n, c->ref.n, sizeof(ref.n[0]) * (size_t)ref.len))
		return;
	pthread_mutex_lock(&c->lock);
	snprintf(c->reply, sizeof(c->reply), "%s", atom);
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* Sends {'$gen_call', {Self, Ref}, {is_auth, ThisNode}} to net_kernel on
 * @peer and waits for {Ref, yes}, as net_adm:ping/1 does. */
static int ping_peer(struct kdist_node *node, const char *peer,
		     unsigned timeout_ms, char *why, size_t whylen)
{
	struct call c = { .lock = PTHREAD_MUTEX_INITIALIZER,
			  .cond = PTHREAD_COND_INITIALIZER };
	const struct kdist_pid *self;
	struct kdist_mailbox *mbox;
	struct timespec ts;
	erlang_pid epid;
	ei_x_buff x;
	int err;

	err = kdist_connect(node, peer, timeout_ms);
	if (err) {
		snprintf(why, whylen, "%s", kdist_strerror());
		return err;
	}
	err = kdist_mailbox_open(node, NULL, call_receive, &c, &mbox);
	if (err) {
		snprintf(why, whylen, "%s", kdist_strerror());
		return err;
	}
	self = kdist_mailbox_pid(mbox);
	memset(&epid, 0, sizeof(epid));
	snprintf(epid.node, sizeof(epid.node), "%s", self->node);
	epid.num = self->id;
	epid.serial = self->serial;
	epid.creation = self->creation;
	memset(&c.ref, 0, sizeof(c.ref));
	snprintf(c.ref.node, sizeof(c.ref.node), "%s", self->node);
	c.ref.len = 3;
	RAND_bytes((unsigned char *)c.ref.n, sizeof(c.ref.n[0]) * 3);
	c.ref.n[0] &= 0x3ffff;
	c.ref.creation = self->creation;

	ei_x_new_with_version(&x);
	ei_x_encode_tuple_header(&x, 3);
	ei_x_encode_atom(&x, "$gen_call");
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_pid(&x, &epid);
	ei_x_encode_ref(&x, &c.ref);
	ei_x_encode_tuple_header(&x, 2);
	ei_x_encode_atom(&x, "is_auth");
	ei_x_encode_atom(&x, kdist_node_name(node));
	err = kdist_send_name(mbox, peer, "net_kernel", x.buff,
			      (size_t)x.index);
	ei_x_free(&x);
	if (err) {
		snprintf(why, whylen, "%s", kdist_strerror());
		goto out;
	}

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c.lock);
	while (!c.done && err == 0)
		err = -pthread_cond_timedwait(&c.cond, &c.lock, &ts);
	pthread_mutex_unlock(&c.lock);
	if (!c.done)
		snprintf(why, whylen, "no answer from net_kernel on %s within "
			 "%u ms", peer, timeout_ms);
	else if (strcmp(c.reply, "yes") != 0)
		snprintf(why, whylen, "net_kernel on %s answered '%s'", peer,
			 c.reply);
	err = c.done && strcmp(c.reply, "yes") == 0 ? 0 : -ECONNREFUSED;
out:
	kdist_mailbox_close(mbox, "normal");
	return err;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

/* Pings @o->count times; prints "pong" and, for more than one round
 * trip, the median and 99th percentile. */
static int ping_rounds(struct kdist_node *node, const char *peer,
		       const struct cli_opts *o, char *why, size_t whylen)
{
	uint64_t *us = calloc(o->count, sizeof(*us));
	int err = 0;

	if (!us)
		return -ENOMEM;
	for (unsigned i = 0; i < o->count && !err; i++) {
		uint64_t t0 = now_us();

		err = ping_peer(node, peer, o->timeout_ms, why, whylen);
		us[i] = now_us() - t0;
	}
	if (!err && o->count == 1)
		printf("pong\n");
	if (!err && o->count > 1) {
		/* The first round trip includes the connection set-up. */
		qsort(us + 1, o->count - 1, sizeof(*us), compare_u64);
		printf("pong: %u round trips kdist -> %s -> kdist; first "
		       "(with connection set-up) %llu us, then median %llu "
		       "us, p99 %llu us\n",
		       o->count, peer, (unsigned long long)us[0],
		       (unsigned long long)us[1 + (o->count - 1) / 2],
		       (unsigned long long)us[1 + (o->count - 1) * 99 / 100]);
	}
	fflush(stdout);
	free(us);
	return err;
}

static void ping_help(void)
{
	fputs("usage: kdist ping NODE [OPTIONS]\n"
	      "Connects to NODE and asks its net_kernel, as net_adm:ping/1 "
	      "does.\nPrints 'pong' (exit 0) or 'pang: REASON' (exit 1). "
	      "Without -sname\nor -name a hidden node kdist_PID is used.\n\n"
	      "Ping options:\n"
	      "  -timeout MS              how long to wait for the connection "
	      "and for each\n"
	      "                           answer (default 7000)\n"
	      "  -count N                 round trips to time (default 1)\n\n",
	      stdout);
	cli_print_common_help();
}

int cmd_ping(int argc, char **argv)
{
	struct kdist_node *node;
	struct cli_opts o;
	char name[64], why[800];
	int err;

	if (cli_parse(argc, argv, &o))
		return 2;
	if (o.help) {
		ping_help();
		return 0;
	}
	if (o.n_args != 1) {
		fprintf(stderr, "kdist ping: give one NODE (name@host)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	cli_quiet(&o);
	cli_default_name(&o, name, sizeof(name));
	node = cli_start_node(&o);
	if (!node) {
		printf("pang: %s\n", kdist_strerror());
		return 1;
	}
	err = ping_rounds(node, o.args[0], &o, why, sizeof(why));
	if (err)
		printf("pang: %s\n", why);
	kdist_node_stats(node, print_conn, NULL);
	kdist_node_destroy(node);
	return err ? 1 : 0;
}

static void send_help(void)
{
	fputs("usage: kdist send NODE NAME TERM [OPTIONS]\n"
	      "Sends TERM, written in Erlang syntax such as\n"
	      "'{hello, 42, <<\"bin\">>}', to the process registered as NAME "
	      "on NODE,\nthen waits until NODE has processed it (a ping "
	      "round trip on the\nsame connection).\n\n"
	      "Send options:\n"
	      "  -timeout MS              how long to wait for the connection "
	      "and for that\n"
	      "                           round trip (default 7000)\n\n",
	      stdout);
	cli_print_common_help();
}

int cmd_send(int argc, char **argv)
{
	struct kdist_mailbox *mbox;
	struct kdist_node *node;
	struct kd_term *term;
	struct cli_opts o;
	char name[64], err_text[800];
	ei_x_buff x;
	int err;

	if (cli_parse(argc, argv, &o))
		return 2;
	if (o.help) {
		send_help();
		return 0;
	}
	if (o.n_args != 3) {
		fprintf(stderr, "kdist send: give NODE NAME TERM\n");
		return 2;
	}
	err = kd_term_parse(o.args[2], strlen(o.args[2]), &term, err_text,
			    sizeof(err_text));
	if (err) {
		fprintf(stderr, "kdist send: invalid TERM: %s\n", err_text);
		return 2;
	}
	ei_x_new_with_version(&x);
	err = kd_term_encode(term, &x);
	kd_term_free(term);
	if (err) {
		fprintf(stderr, "kdist send: cannot encode TERM: %s\n",
			strerror(-err));
		ei_x_free(&x);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	cli_quiet(&o);
	cli_default_name(&o, name, sizeof(name));
	node = cli_start_node(&o);
	if (!node) {
		ei_x_free(&x);
		return 1;
	}
	err = kdist_connect(node, o.args[0], o.timeout_ms);
	if (!err)
		err = kdist_mailbox_open(node, NULL, NULL, NULL, &mbox);
	if (!err) {
		err = kdist_send_name(mbox, o.args[0], o.args[1], x.buff,
				      (size_t)x.index);
		kdist_mailbox_close(mbox, "normal");
	}
	if (err) {
		fprintf(stderr, "kdist send: %s\n", kdist_strerror());
	} else {
		/* Messages on one connection arrive in order, so a ping
		 * reply proves the term arrived. */
		err = ping_peer(node, o.args[0], o.timeout_ms, err_text,
				sizeof(err_text));
		if (err)
			fprintf(stderr, "kdist send: sent, but %s\n", err_text);
	}
	ei_x_free(&x);
	kdist_node_stats(node, print_conn, NULL);
	kdist_node_destroy(node);
	return err ? 1 : 0;
}
