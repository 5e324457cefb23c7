// SPDX-License-Identifier: Apache-2.0
/*
 * Two kdist nodes in one process, joined over loopback through an
 * in-process EPMD: the node API, the peer table and the connected-phase
 * signals, over inet_tcp and over TLS (user-space path; certificates from
 * tests/certs/mkcerts).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ei.h>
#include <malloc.h>

#include "epmd.h"
#include "kdist.h"

/* Messages a test mailbox received, with a condition to wait on. */
struct inbox {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t count;
	size_t bytes;
	uint64_t last_seq;
	bool out_of_order;
	char last[4096];
	size_t last_len;
	struct kdist_pid last_from;
	bool has_from;
};

struct env {
	struct kd_epmd_server *epmd;
	uint16_t epmd_port;
	char certs[256];
	struct kdist_node *a, *b;
	struct inbox box_b;
	struct kdist_mailbox *mb_a, *mb_b;
	int downs;
	char down_reason[256];
	pthread_mutex_t down_lock;
	atomic_bool release; /* ends hold_thread(), also when a test fails */
	unsigned handshake_timeout_ms; /* for nodes started later; 0: default */
};

static void inbox_init(struct inbox *in)
{
	memset(in, 0, sizeof(*in));
	pthread_mutex_init(&in->lock, NULL);
	pthread_cond_init(&in->cond, NULL);
}

/* Records each message; {seq, N} and {seq, N, Pad} must come in order. */
static void inbox_receive(void *user, struct kdist_mailbox *mbox,
			  const struct kdist_pid *from, const void *payload,
			  size_t len)
{
	struct inbox *in = user;
	const char *buf = payload;
	int idx = 0, version, arity;
	char atom[MAXATOMLEN_UTF8];
	unsigned long long seq;

	pthread_mutex_lock(&in->lock);
	if (ei_decode_version(buf, &idx, &version) == 0 &&
	    ei_decode_tuple_header(buf, &idx, &arity) == 0 &&
	    (arity == 2 || arity == 3) &&
	    ei_decode_atom(buf, &idx, atom) == 0 && strcmp(atom, "seq") == 0 &&
	    ei_decode_ulonglong(buf, &idx, &seq) == 0) {
		if (seq != in->last_seq + 1)
			in->out_of_order = true;
		in->last_seq = seq;
	}
	in->count++;
	in->bytes += len;
	in->last_len = len < sizeof(in->last) ? len : sizeof(in->last);
	memcpy(in->last, payload, in->last_len);
	in->has_from = from != NULL;
	if (from)
		in->last_from = *from;
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->lock);
}

static bool inbox_wait(struct inbox *in, size_t count, unsigned ms)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&in->lock);
	while (in->count < count &&
	       pthread_cond_timedwait(&in->cond, &in->lock, &ts) == 0)
		;
	ok = in->count >= count;
	pthread_mutex_unlock(&in->lock);
	return ok;
}

static void on_down(void *user, const char *peer, const char *reason,
		    const struct kdist_conn_stats *final)
{
	struct env *e = user;

	pthread_mutex_lock(&e->down_lock);
	e->downs++;
	snprintf(e->down_reason, sizeof(e->down_reason), "%s", reason);
	pthread_mutex_unlock(&e->down_lock);
}

static int down_count(struct env *e)
{
	int n;

	pthread_mutex_lock(&e->down_lock);
	n = e->downs;
	pthread_mutex_unlock(&e->down_lock);
	return n;
}

static struct kdist_node *start_node_allow(struct env *e, const char *name,
					   bool tls, const char *cookie,
					   const char *const *allow,
					   size_t n_allow);

static struct kdist_node *start_node(struct env *e, const char *name,
				     bool tls, const char *cookie)
{
	return start_node_allow(e, name, tls, cookie, NULL, 0);
}

static struct kdist_node *start_node_allow(struct env *e, const char *name,
					   bool tls, const char *cookie,
					   const char *const *allow,
					   size_t n_allow)
{
	struct kdist_node *node = NULL;
	struct kdist_config cfg;
	char conf[512];

	kdist_config_init(&cfg);
	cfg.node_name = name;
	cfg.cookie = cookie;
	cfg.epmd_port = e->epmd_port;
	cfg.hidden = true;
	cfg.log_level = KDIST_LOG_WARN;
	cfg.net_ticktime = 4;
	cfg.allow = allow;
	cfg.n_allow = n_allow;
	cfg.handshake_timeout_ms = e->handshake_timeout_ms;
	if (tls) {
		snprintf(conf, sizeof(conf), "%s/dist-tls13.conf", e->certs);
		cfg.proto = KDIST_PROTO_INET_TLS;
		cfg.ssl_dist_optfile = conf;
	} else {
		cfg.proto = KDIST_PROTO_INET_TCP;
	}
	if (kdist_node_create(&cfg, &node) != 0) {
		print_error("create %s: %s\n", name, kdist_strerror());
		return NULL;
	}
	if (kdist_node_start(node) != 0) {
		print_error("start %s: %s\n", name, kdist_strerror());
		kdist_node_destroy(node);
		return NULL;
	}
	return node;
}

static int env_setup(void **state, bool tls)
{
	struct kd_epmd_server_config ec = { .loopback_only = 1 };
	struct env *e = calloc(1, sizeof(*e));
	char cmd[600];

	pthread_mutex_init(&e->down_lock, NULL);
	if (kd_epmd_server_start_config(&ec, &e->epmd) != 0)
		return -1;
	e->epmd_port = kd_epmd_server_port(e->epmd);
	if (tls) {
		snprintf(e->certs, sizeof(e->certs), "/tmp/kdist-test-node-%d",
			 (int)getpid());
		snprintf(cmd, sizeof(cmd), "tests/certs/mkcerts %s >/dev/null",
			 e->certs);
		if (system(cmd) != 0)
			return -1;
	}
	e->a = start_node(e, "node_a@localhost", tls, "cookie-one");
	e->b = start_node(e, "node_b@localhost", tls, "cookie-one");
	if (!e->a || !e->b)
		return -1;
	kdist_set_node_monitor(e->a, NULL, on_down, e);
	inbox_init(&e->box_b);
	if (kdist_mailbox_open(e->a, NULL, NULL, NULL, &e->mb_a) ||
	    kdist_mailbox_open(e->b, "inbox", inbox_receive, &e->box_b,
			       &e->mb_b))
		return -1;
	*state = e;
	return 0;
}

static int setup_tcp(void **state)
{
	return env_setup(state, false);
}

static int setup_tls(void **state)
{
	return env_setup(state, true);
}

static int teardown(void **state)
{
	struct env *e = *state;
	char cmd[300];

	atomic_store(&e->release, true);
	kdist_node_destroy(e->a);
	kdist_node_destroy(e->b);
	kd_epmd_server_stop(e->epmd);
	if (e->certs[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", e->certs);
		if (system(cmd) != 0)
			print_error("cannot remove %s\n", e->certs);
	}
	free(e);
	return 0;
}

static void encode_seq(ei_x_buff *x, unsigned long long seq)
{
	x->index = 0;
	ei_x_encode_version(x);
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "seq");
	ei_x_encode_ulonglong(x, seq);
}

/* Messages queued before the connection exists arrive once, in order. */
static void node_send_connects_on_demand(void **state)
{
	struct env *e = *state;
	ei_x_buff x;

	ei_x_new(&x);
	for (unsigned long long i = 1; i <= 500; i++) {
		encode_seq(&x, i);
		assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost",
						 "inbox", x.buff,
						 (size_t)x.index),
				 0);
	}
	ei_x_free(&x);
	assert_true(inbox_wait(&e->box_b, 500, 10000));
	assert_false(e->box_b.out_of_order);
	assert_int_equal(e->box_b.last_seq, 500);
}

static void node_send_reports_sender(void **state)
{
	struct env *e = *state;
	const struct kdist_pid *self = kdist_mailbox_pid(e->mb_a);
	ei_x_buff x;

	ei_x_new_with_version(&x);
	ei_x_encode_atom(&x, "hello");
	assert_int_equal(kdist_connect(e->a, "node_b@localhost", 10000), 0);
	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
					 x.buff, (size_t)x.index),
			 0);
	assert_true(inbox_wait(&e->box_b, 1, 5000));
	assert_true(e->box_b.has_from);
	assert_int_equal(e->box_b.last_from.id, self->id);
	assert_string_equal(e->box_b.last_from.node, self->node);
	assert_int_equal(e->box_b.last_len, (size_t)x.index);
	assert_memory_equal(e->box_b.last, x.buff, (size_t)x.index);
	ei_x_free(&x);
}

/* A message above the fragment size goes out in fragments and comes
 * back whole, between small messages that keep their order. */
static void node_large_message_fragments(void **state)
{
	struct env *e = *state;
	size_t big = 3 * 1024 * 1024 + 17;
	char *data = malloc(big);
	ei_x_buff x;

	for (size_t i = 0; i < big; i++)
		data[i] = (char)(i * 31);
	assert_int_equal(kdist_connect(e->a, "node_b@localhost", 10000), 0);
	ei_x_new(&x);
	encode_seq(&x, 1);
	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
					 x.buff, (size_t)x.index),
			 0);
	x.index = 0;
	ei_x_encode_version(&x);
	ei_x_encode_binary(&x, data, (long)big);
	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
					 x.buff, (size_t)x.index),
			 0);
	encode_seq(&x, 2);
	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
					 x.buff, (size_t)x.index),
			 0);
	assert_true(inbox_wait(&e->box_b, 3, 20000));
	assert_false(e->box_b.out_of_order);
	assert_int_equal(e->box_b.last_seq, 2);
	assert_true(e->box_b.bytes > big);
	ei_x_free(&x);
	free(data);
}

/* A small message from another sender overtakes a large one that is still
 * going out in fragments, so one big message does not hold up the link. */
static void node_small_overtakes_fragments(void **state)
{
	struct env *e = *state;
	size_t big = 64 * 1024 * 1024;
	struct kdist_mailbox *other, *quick;
	struct inbox box_quick;
	char *data = calloc(1, big);
	size_t big_seen;
	ei_x_buff x;

	inbox_init(&box_quick);
	assert_int_equal(kdist_mailbox_open(e->b, "quick", inbox_receive,
					    &box_quick, &quick),
			 0);
	assert_int_equal(kdist_mailbox_open(e->a, NULL, NULL, NULL, &other), 0);
	assert_int_equal(kdist_connect(e->a, "node_b@localhost", 10000), 0);
	ei_x_new_with_version(&x);
	ei_x_encode_binary(&x, data, (long)big);
	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
					 x.buff, (size_t)x.index),
			 0);
	encode_seq(&x, 1);
	assert_int_equal(kdist_send_name(other, "node_b@localhost", "quick",
					 x.buff, (size_t)x.index),
			 0);
	assert_true(inbox_wait(&box_quick, 1, 20000));
	pthread_mutex_lock(&e->box_b.lock);
	big_seen = e->box_b.count;
	pthread_mutex_unlock(&e->box_b.lock);
	assert_int_equal(big_seen, 0);
	assert_true(inbox_wait(&e->box_b, 1, 60000));
	ei_x_free(&x);
	free(data);
	kdist_mailbox_close(quick, "normal");
	kdist_mailbox_close(other, "normal");
}

/* The wrong cookie fails the connection on both sides; the good node
 * pair is unaffected. */
static void node_wrong_cookie_refused(void **state)
{
	struct env *e = *state;
	struct kdist_node *bad = start_node(e, "node_bad@localhost", false, "wrong");
	int err;

	assert_non_null(bad);
	err = kdist_connect(bad, "node_b@localhost", 5000);
	assert_int_not_equal(err, 0);
	assert_non_null(strstr(kdist_strerror(), "node_b@localhost"));
	assert_null(strstr(kdist_strerror(), "cookie-one"));
	kdist_node_destroy(bad);
	assert_int_equal(kdist_connect(e->a, "node_b@localhost", 10000), 0);
}

/* With an allow list, a node that is not on it is rejected, and one that
 * is gets in. */
static void node_allow_list_by_name(void **state)
{
	struct env *e = *state;
	static const char *const allow[] = { "node_a@localhost" };
	struct kdist_node *guard = start_node_allow(e, "guard@localhost",
						    e->certs[0] != 0,
						    "cookie-one", allow, 1);

	assert_non_null(guard);
	assert_int_equal(kdist_connect(e->a, "guard@localhost", 10000), 0);
	assert_int_not_equal(kdist_connect(e->b, "guard@localhost", 5000), 0);
	assert_non_null(strstr(kdist_strerror(), "guard@localhost"));
	kdist_node_destroy(guard);
}

/* Over TLS the allowed name must also match the client certificate,
 * which names localhost here, not example.com. */
static void node_allow_list_checks_cert(void **state)
{
	struct env *e = *state;
	static const char *const allow[] = { "evil@example.com" };
	struct kdist_node *guard = start_node_allow(e, "guard@localhost", true,
						    "cookie-one", allow, 1);
	struct kdist_node *evil = start_node(e, "evil@example.com", true,
					     "cookie-one");

	assert_non_null(guard);
	assert_non_null(evil);
	assert_int_not_equal(kdist_connect(evil, "guard@localhost", 5000), 0);
	kdist_node_destroy(evil);
	kdist_node_destroy(guard);
}

static void node_unknown_peer_fails(void **state)
{
	struct env *e = *state;
	int err = kdist_connect(e->a, "nobody@localhost", 5000);

	assert_int_equal(err, -ENOENT);
	assert_non_null(strstr(kdist_strerror(), "nobody"));
}

/* Disconnecting reports nodedown with its reason, and the next send sets
 * the connection up again. */
static void node_disconnect_then_reconnect(void **state)
{
	struct env *e = *state;
	ei_x_buff x;

	assert_int_equal(kdist_connect(e->a, "node_b@localhost", 10000), 0);
	assert_int_equal(kdist_disconnect(e->a, "node_b@localhost"), 0);
	for (int i = 0; i < 100 && down_count(e) == 0; i++)
		usleep(20000);
	pthread_mutex_lock(&e->down_lock);
	assert_int_equal(e->downs, 1);
	assert_non_null(strstr(e->down_reason, "disconnected"));
	pthread_mutex_unlock(&e->down_lock);

	ei_x_new(&x);
	encode_seq(&x, 1);
	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
					 x.buff, (size_t)x.index),
			 0);
	assert_true(inbox_wait(&e->box_b, 1, 10000));
	ei_x_free(&x);
}

/* Starts node_c over inet_tcp with the given stop and handshake timeouts
 * (0: the default), for a test that stops it. */
static struct kdist_node *start_node_c(struct env *e, unsigned stop_ms,
				       unsigned handshake_ms)
{
	struct kdist_node *c = NULL;
	struct kdist_config cfg;

	kdist_config_init(&cfg);
	cfg.node_name = "node_c@localhost";
	cfg.cookie = "cookie-one";
	cfg.epmd_port = e->epmd_port;
	cfg.hidden = true;
	cfg.log_level = KDIST_LOG_ERROR;
	cfg.proto = KDIST_PROTO_INET_TCP;
	cfg.stop_timeout_ms = stop_ms;
	cfg.handshake_timeout_ms = handshake_ms;
	assert_int_equal(kdist_node_create(&cfg, &c), 0);
	assert_int_equal(kdist_node_start(c), 0);
	return c;
}

struct stats_reader {
	struct kdist_node *node;
	atomic_bool done;
	atomic_ulong calls;
};

static void count_conn(void *user, const struct kdist_conn_stats *st)
{
	(void)user;
	(void)st;
}

/* A receive callback that holds its data thread until @release is set. */
static void hold_thread(void *user, struct kdist_mailbox *mbox,
			const struct kdist_pid *from, const void *msg,
			size_t len)
{
	atomic_bool *release = user;

	(void)mbox;
	(void)from;
	(void)msg;
	(void)len;
	while (!atomic_load(release))
		usleep(1000);
}

static void *read_stats(void *arg)
{
	struct stats_reader *r = arg;

	while (!atomic_load(&r->done)) {
		kdist_node_stats(r->node, count_conn, NULL);
		atomic_fetch_add(&r->calls, 1);
	}
	return NULL;
}

/*
 * kdist_node_stats() from another thread while kdist_node_stop() runs with
 * a stop timeout of 1 ms. The peer's data thread is held in a receive
 * callback, so it does not close its side, and the data loop goes away
 * while the peer is still up. The reads must not touch the freed loop
 * (AddressSanitizer reports it in `make test-asan`).
 */
static void node_stats_during_stop(void **state)
{
	struct env *e = *state;
	struct stats_reader reader = { 0 };
	struct kdist_mailbox *holder, *sender;
	struct kdist_node *c;
	pthread_t tid;
	ei_x_buff x;

	c = start_node_c(e, 1, 0);
	assert_int_equal(kdist_mailbox_open(e->b, "holder", hold_thread,
					    &e->release, &holder),
			 0);
	assert_int_equal(kdist_mailbox_open(c, NULL, NULL, NULL, &sender), 0);
	ei_x_new(&x);
	encode_seq(&x, 1);
	assert_int_equal(kdist_send_name(sender, "node_b@localhost", "holder",
					 x.buff, (size_t)x.index),
			 0);
	ei_x_free(&x);
	usleep(100000);

	reader.node = c;
	assert_int_equal(pthread_create(&tid, NULL, read_stats, &reader), 0);
	while (atomic_load(&reader.calls) == 0)
		usleep(1000);
	kdist_node_stop(c);
	atomic_store(&reader.done, true);
	pthread_join(tid, NULL);
	atomic_store(&e->release, true);
	assert_int_equal(kdist_node_stats(c, count_conn, NULL), 0);
	kdist_node_destroy(c);
}

struct pending_connect {
	struct kdist_node *node;
	int ret;
	uint64_t done_ms;
};

static uint64_t clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *connect_ghost(void *arg)
{
	struct pending_connect *pc = arg;

	pc->ret = kdist_connect(pc->node, "ghost@127.0.0.2", 15000);
	pc->done_ms = clock_ms();
	return NULL;
}

/*
 * kdist_node_stop() while kdist_connect() waits for a peer whose EPMD
 * (a listener on 127.0.0.2 that never replies) keeps the lookup waiting,
 * with a handshake timeout of 10 s. The wait ends with -ESHUTDOWN as the
 * stop begins, and the stop takes well under the handshake timeout.
 */
static void node_stop_ends_pending_connect(void **state)
{
	struct env *e = *state;
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(e->epmd_port) };
	struct pending_connect pc = { 0 };
	uint64_t t0, stopped;
	pthread_t tid;
	int mute;

	inet_pton(AF_INET, "127.0.0.2", &sa.sin_addr);
	mute = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(mute >= 0);
	assert_int_equal(bind(mute, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(mute, 8), 0);

	pc.node = start_node_c(e, 0, 10000);
	assert_int_equal(pthread_create(&tid, NULL, connect_ghost, &pc), 0);
	usleep(300000);

	t0 = clock_ms();
	kdist_node_stop(pc.node);
	stopped = clock_ms();
	pthread_join(tid, NULL);
	close(mute);
	assert_int_equal(pc.ret, -ESHUTDOWN);
	assert_true(pc.done_ms - t0 < 2000);
	assert_true(stopped - t0 < 2000);
	kdist_node_destroy(pc.node);
}

/*
 * kdist_node_stop() right after a burst that filled the send queue: every
 * message the API accepted arrives, in order, before the link closes, and
 * the nodedown names the orderly stop. Sends after the stop fail.
 */
static void node_stop_sends_queue(void **state)
{
	struct env *e = *state;
	unsigned long long sent = 0;
	ei_x_buff x;
	int err = 0;

	assert_int_equal(kdist_connect(e->a, "node_b@localhost", 10000), 0);
	ei_x_new(&x);
	while (sent < 300000) {
		encode_seq(&x, sent + 1);
		err = kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
				      x.buff, (size_t)x.index);
		if (err)
			break;
		sent++;
	}
	assert_true(err == 0 || err == -EAGAIN);
	kdist_node_stop(e->a);
	assert_true(inbox_wait(&e->box_b, sent, 20000));
	assert_false(e->box_b.out_of_order);
	assert_int_equal(e->box_b.last_seq, sent);
	pthread_mutex_lock(&e->down_lock);
	assert_int_equal(e->downs, 1);
	assert_non_null(strstr(e->down_reason, "node stopping"));
	pthread_mutex_unlock(&e->down_lock);
	encode_seq(&x, sent + 1);
	assert_true(kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
				    x.buff, (size_t)x.index) < 0);
	ei_x_free(&x);
}

/*
 * The same with messages large enough to go out as fragments, which wait
 * in the connection's queue of large messages before they reach the link.
 */
static void node_stop_sends_large(void **state)
{
	struct env *e = *state;
	static char pad[200 * 1024];
	unsigned long long sent = 0;
	ei_x_buff x;
	int err = 0;

	assert_int_equal(kdist_connect(e->a, "node_b@localhost", 10000), 0);
	ei_x_new(&x);
	while (sent < 200) {
		x.index = 0;
		ei_x_encode_version(&x);
		ei_x_encode_tuple_header(&x, 3);
		ei_x_encode_atom(&x, "seq");
		ei_x_encode_ulonglong(&x, sent + 1);
		ei_x_encode_binary(&x, pad, sizeof(pad));
		err = kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
				      x.buff, (size_t)x.index);
		if (err)
			break;
		sent++;
	}
	ei_x_free(&x);
	assert_true(err == 0 || err == -EAGAIN);
	assert_true(sent > 10);
	kdist_node_stop(e->a);
	assert_true(inbox_wait(&e->box_b, sent, 20000));
	assert_false(e->box_b.out_of_order);
	assert_int_equal(e->box_b.last_seq, sent);
}

/* Both nodes connect to each other at once: one connection survives and
 * both directions work. */
static void node_simultaneous_connect(void **state)
{
	struct env *e = *state;
	struct inbox box_a;
	struct kdist_mailbox *in_a;
	ei_x_buff x;

	inbox_init(&box_a);
	assert_int_equal(kdist_mailbox_open(e->a, "inbox", inbox_receive,
					    &box_a, &in_a),
			 0);
	ei_x_new(&x);
	encode_seq(&x, 1);
	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
					 x.buff, (size_t)x.index),
			 0);
	assert_int_equal(kdist_send_name(e->mb_b, "node_a@localhost", "inbox",
					 x.buff, (size_t)x.index),
			 0);
	assert_true(inbox_wait(&e->box_b, 1, 10000));
	assert_true(inbox_wait(&box_a, 1, 10000));
	ei_x_free(&x);
	kdist_mailbox_close(in_a, "normal");
}

/* Without traffic the nodes exchange ticks and stay connected past
 * net_ticktime (4 s here). */
static void node_ticks_keep_link(void **state)
{
	struct env *e = *state;

	assert_int_equal(kdist_connect(e->a, "node_b@localhost", 10000), 0);
	sleep(6);
	assert_int_equal(down_count(e), 0);
}

/* A mailbox needs the creation that kdist_node_start() gets from EPMD, so
 * opening one earlier fails with its own errno, not the -EAGAIN of a full
 * send queue. */
static void node_mailbox_open_before_start(void **state)
{
	struct env *e = *state;
	struct kdist_node *node = NULL;
	struct kdist_mailbox *mbox = NULL;
	struct kdist_config cfg;

	kdist_config_init(&cfg);
	cfg.node_name = "early@localhost";
	cfg.cookie = "cookie-one";
	cfg.epmd_port = e->epmd_port;
	cfg.proto = KDIST_PROTO_INET_TCP;
	cfg.log_level = KDIST_LOG_WARN;
	assert_int_equal(kdist_node_create(&cfg, &node), 0);
	assert_int_equal(kdist_mailbox_open(node, "early", NULL, NULL, &mbox),
			 -ENOTCONN);
	assert_null(mbox);
	assert_non_null(strstr(kdist_strerror(), "kdist_node_start()"));
	assert_int_equal(kdist_node_start(node), 0);
	assert_int_equal(kdist_mailbox_open(node, "early", NULL, NULL, &mbox),
			 0);
	kdist_node_destroy(node);
}

/* A receive callback that takes its time, to close its mailbox while it
 * runs. */
struct slow_box {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool entered;
	bool left;
};

static void slow_receive(void *user, struct kdist_mailbox *mbox,
			 const struct kdist_pid *from, const void *payload,
			 size_t len)
{
	struct slow_box *sb = user;

	pthread_mutex_lock(&sb->lock);
	sb->entered = true;
	pthread_cond_broadcast(&sb->cond);
	pthread_mutex_unlock(&sb->lock);
	usleep(300000);
	pthread_mutex_lock(&sb->lock);
	sb->left = true;
	pthread_mutex_unlock(&sb->lock);
}

/* kdist_mailbox_close() from an application thread returns only once the
 * callbacks already running on data threads have returned, so the user
 * pointer may be freed right after it. */
static void node_mailbox_close_waits(void **state)
{
	struct env *e = *state;
	struct slow_box sb = { .lock = PTHREAD_MUTEX_INITIALIZER,
			       .cond = PTHREAD_COND_INITIALIZER };
	struct kdist_mailbox *slow;
	struct timespec ts;
	ei_x_buff x;
	bool left;

	assert_int_equal(kdist_mailbox_open(e->b, "slow", slow_receive, &sb,
					    &slow),
			 0);
	ei_x_new_with_version(&x);
	ei_x_encode_atom(&x, "hello");
	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "slow",
					 x.buff, (size_t)x.index),
			 0);
	ei_x_free(&x);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_mutex_lock(&sb.lock);
	while (!sb.entered &&
	       pthread_cond_timedwait(&sb.cond, &sb.lock, &ts) == 0)
		;
	assert_true(sb.entered);
	pthread_mutex_unlock(&sb.lock);
	kdist_mailbox_close(slow, "normal");
	pthread_mutex_lock(&sb.lock);
	left = sb.left;
	pthread_mutex_unlock(&sb.lock);
	assert_true(left);
}

/* Opening and closing a mailbox per request frees each one, and the pids
 * keep counting through the serial, so none repeats the pid of a mailbox
 * that is still open. */
static void node_mailbox_churn(void **state)
{
	struct env *e = *state;
	const struct kdist_pid *keep = kdist_mailbox_pid(e->mb_b);
	struct kdist_pid last = { 0 };
	struct mallinfo2 before, after;
	struct kdist_mailbox *m;
	size_t grown, repeats = 0;
	ei_x_buff x;

	before = mallinfo2();
	for (unsigned i = 0; i < 40000; i++) {
		assert_int_equal(kdist_mailbox_open(e->b, NULL, NULL, NULL, &m),
				 0);
		if (kdist_mailbox_pid(m)->id == keep->id &&
		    kdist_mailbox_pid(m)->serial == keep->serial)
			repeats++;
		last = *kdist_mailbox_pid(m);
		kdist_mailbox_close(m, "normal");
	}
	after = mallinfo2();
	assert_int_equal(repeats, 0);
	assert_int_not_equal(last.serial, 0);
	/* Kept mailboxes would hold about 1 KiB each, 40 MB in all. */
	grown = after.uordblks > before.uordblks
			? after.uordblks - before.uordblks
			: 0;
	assert_true(grown < 4u * 1024 * 1024);

	ei_x_new(&x);
	encode_seq(&x, 1);
	assert_int_equal(kdist_send_pid(e->mb_a, keep, x.buff,
					(size_t)x.index),
			 0);
	ei_x_free(&x);
	assert_true(inbox_wait(&e->box_b, 1, 10000));
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A node name registered with the test EPMD whose port takes TCP
 * connections (into the listen backlog) and never replies, so a
 * connection to it waits in its handshake until the handshake timeout. */
struct silent_peer {
	int listen_fd;
	int epmd_fd;
};

static void silent_start(struct env *e, const char *alive,
			 struct silent_peer *sp)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	struct kd_epmd_node reg = {
		.node_type = 72,
		.high_version = 6,
		.low_version = 6,
	};
	uint32_t creation;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sp->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(sp->listen_fd >= 0);
	assert_int_equal(bind(sp->listen_fd, (struct sockaddr *)&sa,
			      sizeof(sa)),
			 0);
	assert_int_equal(listen(sp->listen_fd, 8), 0);
	assert_int_equal(getsockname(sp->listen_fd, (struct sockaddr *)&sa,
				     &sl),
			 0);
	reg.port = ntohs(sa.sin_port);
	snprintf(reg.name, sizeof(reg.name), "%s", alive);
	assert_int_equal(kd_epmd_register("127.0.0.1", e->epmd_port, &reg,
					  2000, &sp->epmd_fd, &creation),
			 0);
}

static void silent_stop(struct silent_peer *sp)
{
	close(sp->epmd_fd);
	close(sp->listen_fd);
}

/* What kdist_connect() returned inside a callback, and the nodedown that
 * reports the outcome of the attempt it started. */
struct connect_probe {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct kdist_node *node;
	const char *trigger; /* the peer whose nodeup makes the call */
	const char *target;
	bool called;
	int err;
	uint64_t ms;
	int err_trigger; /* kdist_connect() to the trigger, which is up */
	bool down_seen;
	bool down_without_stats;
	char down_reason[256];
};

static void probe_connect(struct connect_probe *cp)
{
	uint64_t t0 = now_ms();
	int err = kdist_connect(cp->node, cp->target, 3000);
	uint64_t ms = now_ms() - t0;

	pthread_mutex_lock(&cp->lock);
	cp->called = true;
	cp->err = err;
	cp->ms = ms;
	pthread_cond_broadcast(&cp->cond);
	pthread_mutex_unlock(&cp->lock);
}

static void probe_up(void *user, const char *peer)
{
	struct connect_probe *cp = user;

	int err;

	if (strcmp(peer, cp->trigger) != 0)
		return;
	err = kdist_connect(cp->node, peer, 3000);
	pthread_mutex_lock(&cp->lock);
	cp->err_trigger = err;
	pthread_mutex_unlock(&cp->lock);
	probe_connect(cp);
}

static void probe_down(void *user, const char *peer, const char *reason,
		       const struct kdist_conn_stats *final)
{
	struct connect_probe *cp = user;

	if (strcmp(peer, cp->target) != 0)
		return;
	pthread_mutex_lock(&cp->lock);
	cp->down_seen = true;
	cp->down_without_stats = final == NULL;
	snprintf(cp->down_reason, sizeof(cp->down_reason), "%s", reason);
	pthread_cond_broadcast(&cp->cond);
	pthread_mutex_unlock(&cp->lock);
}

static void probe_receive(void *user, struct kdist_mailbox *mbox,
			  const struct kdist_pid *from, const void *payload,
			  size_t len)
{
	probe_connect(user);
}

/* Waits up to @ms for *@flag, which cp->lock protects. */
static bool probe_wait(struct connect_probe *cp, const bool *flag,
		       unsigned ms)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&cp->lock);
	while (!*flag && pthread_cond_timedwait(&cp->cond, &cp->lock, &ts) == 0)
		;
	ok = *flag;
	pthread_mutex_unlock(&cp->lock);
	return ok;
}

/*
 * kdist_connect() in a nodeup callback, on the control thread, cannot wait
 * for the control thread: it returns -EINPROGRESS at once, and a nodedown
 * without statistics reports that the attempt failed. The probe is static
 * because callbacks may still run while the nodes are torn down.
 */
static void node_connect_from_nodeup(void **state)
{
	static struct connect_probe cp = {
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
		.trigger = "node_b@localhost",
		.target = "nobody@localhost",
	};
	struct env *e = *state;

	cp.node = e->a;
	kdist_set_node_monitor(e->a, probe_up, probe_down, &cp);
	assert_int_equal(kdist_connect(e->a, "node_b@localhost", 10000), 0);
	assert_true(probe_wait(&cp, &cp.called, 10000));
	pthread_mutex_lock(&cp.lock);
	assert_int_equal(cp.err_trigger, 0);
	assert_int_equal(cp.err, -EINPROGRESS);
	assert_true(cp.ms < 500);
	pthread_mutex_unlock(&cp.lock);
	assert_true(probe_wait(&cp, &cp.down_seen, 10000));
	pthread_mutex_lock(&cp.lock);
	assert_true(cp.down_without_stats);
	assert_non_null(strstr(cp.down_reason, "nobody"));
	pthread_mutex_unlock(&cp.lock);
}

/* The same from a receive callback, on a data thread, toward a peer whose
 * handshake never finishes: the call must not hold the data thread for
 * its timeout. */
static void node_connect_from_receive(void **state)
{
	static struct connect_probe cp = {
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
		.target = "silent@localhost",
	};
	struct env *e = *state;
	struct kdist_mailbox *dial;
	struct silent_peer sp;
	ei_x_buff x;

	silent_start(e, "silent", &sp);
	cp.node = e->b;
	assert_int_equal(kdist_mailbox_open(e->b, "dial", probe_receive, &cp,
					    &dial),
			 0);
	ei_x_new_with_version(&x);
	ei_x_encode_atom(&x, "dial");
	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "dial",
					 x.buff, (size_t)x.index),
			 0);
	ei_x_free(&x);
	assert_true(probe_wait(&cp, &cp.called, 10000));
	pthread_mutex_lock(&cp.lock);
	assert_int_equal(cp.err, -EINPROGRESS);
	assert_true(cp.ms < 500);
	pthread_mutex_unlock(&cp.lock);
	kdist_mailbox_close(dial, "normal");
	silent_stop(&sp);
}

/* kdist_node_stop() and kdist_node_destroy() from a callback would join
 * the thread they run on: they log an error and leave the node running. */
static void stop_from_nodeup(void *user, const char *peer)
{
	struct kdist_node *node = user;

	kdist_node_stop(node);
	kdist_node_destroy(node);
}

static void node_stop_from_callback(void **state)
{
	struct env *e = *state;
	ei_x_buff x;

	kdist_set_node_monitor(e->a, stop_from_nodeup, on_down, e->a);
	assert_int_equal(kdist_connect(e->a, "node_b@localhost", 10000), 0);
	ei_x_new(&x);
	encode_seq(&x, 1);
	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
					 x.buff, (size_t)x.index),
			 0);
	ei_x_free(&x);
	assert_true(inbox_wait(&e->box_b, 1, 10000));
	kdist_set_node_monitor(e->a, NULL, on_down, e);
}

/* Writable callbacks per peer. */
struct writable_count {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const char *peer;
	unsigned calls;
	unsigned other_calls; /* for any other peer */
};

static void count_writable(void *user, const char *peer)
{
	struct writable_count *wc = user;

	pthread_mutex_lock(&wc->lock);
	if (strcmp(peer, wc->peer) == 0)
		wc->calls++;
	else
		wc->other_calls++;
	pthread_cond_broadcast(&wc->cond);
	pthread_mutex_unlock(&wc->lock);
}

static unsigned writable_calls(struct writable_count *wc, unsigned want,
			       unsigned ms)
{
	struct timespec ts;
	unsigned n;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&wc->lock);
	while (wc->calls < want &&
	       pthread_cond_timedwait(&wc->cond, &wc->lock, &ts) == 0)
		;
	n = wc->calls;
	pthread_mutex_unlock(&wc->lock);
	return n;
}

/*
 * One -EAGAIN brings one writable callback. Large messages reach the link
 * a few fragments at a time, and the engine feeds it more each time it
 * drains, but those internal drains call no user callback. The counter is
 * static because callbacks may still run while the nodes are torn down.
 */
static void node_writable_once_per_eagain(void **state)
{
	static struct writable_count wc = {
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
		.peer = "node_b@localhost",
	};
	struct env *e = *state;
	size_t big = 1024 * 1024;
	char *data = calloc(1, big);
	struct kdist_mailbox *holder;
	unsigned sent = 0;
	ei_x_buff x;
	int err = 0;

	pthread_mutex_lock(&wc.lock);
	wc.calls = wc.other_calls = 0; /* the TLS group runs this again */
	pthread_mutex_unlock(&wc.lock);
	kdist_set_writable_fn(e->a, count_writable, &wc);
	assert_int_equal(kdist_connect(e->a, "node_b@localhost", 10000), 0);
	/* Node b's data thread waits in hold_thread() until the queue is
	 * full, so the sends meet -EAGAIN however fast b could read. */
	assert_int_equal(kdist_mailbox_open(e->b, "holder", hold_thread,
					    &e->release, &holder),
			 0);
	ei_x_new(&x);
	encode_seq(&x, 0);
	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "holder",
					 x.buff, (size_t)x.index),
			 0);
	ei_x_free(&x);
	ei_x_new_with_version(&x);
	ei_x_encode_binary(&x, data, (long)big);
	while (sent < 1000) {
		err = kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
				      x.buff, (size_t)x.index);
		if (err)
			break;
		sent++;
	}
	ei_x_free(&x);
	free(data);
	atomic_store(&e->release, true);
	assert_int_equal(err, -EAGAIN);
	assert_true(inbox_wait(&e->box_b, sent, 30000));
	assert_int_equal(writable_calls(&wc, 1, 5000), 1);
	usleep(300000);
	pthread_mutex_lock(&wc.lock);
	assert_int_equal(wc.calls, 1);
	assert_int_equal(wc.other_calls, 0);
	pthread_mutex_unlock(&wc.lock);
	kdist_set_writable_fn(e->a, NULL, NULL);
}

/* A sender turned away while the connection is still being set up gets
 * its writable callback when that attempt fails and drops the queue, as
 * the next send may then start a new attempt. */
static void node_writable_after_failed_connect(void **state)
{
	static struct writable_count wc = {
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
		.peer = "silent@localhost",
	};
	struct env *e = *state;
	size_t big = 5 * 1024 * 1024;
	char *data = calloc(1, big);
	struct kdist_mailbox *from;
	struct kdist_node *waiter;
	struct silent_peer sp;
	ei_x_buff x;

	silent_start(e, "silent", &sp);
	e->handshake_timeout_ms = 1000;
	waiter = start_node(e, "waiter@localhost", false, "cookie-one");
	assert_non_null(waiter);
	kdist_set_writable_fn(waiter, count_writable, &wc);
	assert_int_equal(kdist_mailbox_open(waiter, NULL, NULL, NULL, &from),
			 0);
	ei_x_new_with_version(&x);
	ei_x_encode_binary(&x, data, (long)big);
	assert_int_equal(kdist_send_name(from, "silent@localhost", "inbox",
					 x.buff, (size_t)x.index),
			 0);
	assert_int_equal(kdist_send_name(from, "silent@localhost", "inbox",
					 x.buff, (size_t)x.index),
			 -EAGAIN);
	ei_x_free(&x);
	free(data);
	assert_int_equal(writable_calls(&wc, 1, 10000), 1);
	kdist_node_destroy(waiter);
	silent_stop(&sp);
}

/* A failed start leaves the node allocated and stopped: it can start once
 * the cause is gone, and kdist_node_destroy() frees it either way. A
 * started or stopped node does not start again. */
static void node_start_failure_and_retry(void **state)
{
	struct env *e = *state;
	struct kdist_node *holder, *node = NULL;
	struct kdist_config cfg;

	holder = start_node(e, "twice@localhost", false, "cookie-one");
	assert_non_null(holder);
	kdist_config_init(&cfg);
	cfg.node_name = "twice@localhost";
	cfg.cookie = "cookie-one";
	cfg.epmd_port = e->epmd_port;
	cfg.proto = KDIST_PROTO_INET_TCP;
	cfg.log_level = KDIST_LOG_WARN;
	assert_int_equal(kdist_node_create(&cfg, &node), 0);
	assert_int_not_equal(kdist_node_start(node), 0);
	assert_int_equal(kdist_node_start(holder), -EALREADY);
	kdist_node_destroy(holder);
	assert_int_equal(kdist_node_start(node), 0);
	assert_int_equal(kdist_connect(e->a, "twice@localhost", 10000), 0);
	kdist_node_stop(node);
	assert_int_equal(kdist_node_start(node), -EINVAL);
	kdist_node_destroy(node);
}

static void node_payload_must_be_etf(void **state)
{
	struct env *e = *state;
	const char raw[] = "not a term";

	assert_int_equal(kdist_send_name(e->mb_a, "node_b@localhost", "inbox",
					 raw, sizeof(raw)),
			 -EINVAL);
	assert_non_null(strstr(kdist_strerror(), "131"));
}

int main(void)
{
	const struct CMUnitTest tcp[] = {
		cmocka_unit_test_setup_teardown(node_send_connects_on_demand,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_send_reports_sender,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_large_message_fragments,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_small_overtakes_fragments,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_wrong_cookie_refused,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_unknown_peer_fails,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_allow_list_by_name,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_disconnect_then_reconnect,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_simultaneous_connect,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_ticks_keep_link,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_payload_must_be_etf,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_stats_during_stop,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_stop_ends_pending_connect,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_mailbox_open_before_start,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_mailbox_close_waits,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_mailbox_churn,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_connect_from_nodeup,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_connect_from_receive,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_stop_from_callback,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_writable_once_per_eagain,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_writable_after_failed_connect,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_start_failure_and_retry,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_stop_sends_queue,
						setup_tcp, teardown),
		cmocka_unit_test_setup_teardown(node_stop_sends_large,
						setup_tcp, teardown),
	};
	const struct CMUnitTest tls[] = {
		cmocka_unit_test_setup_teardown(node_send_connects_on_demand,
						setup_tls, teardown),
		cmocka_unit_test_setup_teardown(node_large_message_fragments,
						setup_tls, teardown),
		cmocka_unit_test_setup_teardown(node_simultaneous_connect,
						setup_tls, teardown),
		cmocka_unit_test_setup_teardown(node_small_overtakes_fragments,
						setup_tls, teardown),
		cmocka_unit_test_setup_teardown(node_allow_list_by_name,
						setup_tls, teardown),
		cmocka_unit_test_setup_teardown(node_allow_list_checks_cert,
						setup_tls, teardown),
		cmocka_unit_test_setup_teardown(node_disconnect_then_reconnect,
						setup_tls, teardown),
		cmocka_unit_test_setup_teardown(node_stop_sends_queue,
						setup_tls, teardown),
		cmocka_unit_test_setup_teardown(node_stop_sends_large,
						setup_tls, teardown),
		cmocka_unit_test_setup_teardown(node_writable_once_per_eagain,
						setup_tls, teardown),
	};
	int failed = cmocka_run_group_tests_name("node over inet_tcp", tcp,
						 NULL, NULL);

	failed += cmocka_run_group_tests_name("node over TLS", tls, NULL,
					      NULL);
	return failed;
}
