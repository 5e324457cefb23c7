// SPDX-License-Identifier: Apache-2.0
/*
 * seqpeer: a kdist node built on include/kdist.h for the fault tests. It
 * uses a short node name (-sname), inet_tls with OPTFILE or inet_tcp when
 * OPTFILE is "-", and the EPMD on EPMD_PORT.
 *
 *   flood PEER BYTES COUNT SEND_QUEUE
 *       Sends COUNT binaries of BYTES bytes to {sink, PEER}. On -EAGAIN it
 *       waits for the writable callback. A wait longer than 1 s prints
 *       "blocked after N messages", then "rss KB fds N" once a second,
 *       then "writable after MS ms" when the callback fires. At the end it
 *       requests the sink's count and prints "delivered M of N".
 *
 *   soak PEER SECONDS DISCONNECT_MS
 *       Registers the mailbox "soak". For SECONDS it sends {tseq, Self, N}
 *       with N = 1, 2, ... to {seqack, PEER}, which sends back {tack, N}.
 *       It receives {eseq, Incarnation, N} streams from PEER and checks
 *       both streams: each number is the previous one plus 1, unless a
 *       nodedown came in between (those are counted as lost with
 *       nodedown). Every DISCONNECT_MS on average (0: never) it drops the
 *       connection with kdist_disconnect(). It prints a summary and exits
 *       1 on a gap without nodedown, a duplicate or a reordering.
 *
 * Exit status: 0 when the checks pass, 1 when one fails, 2 for a usage or
 * set-up error.
 *
 * usage: seqpeer MODE NAME COOKIE OPTFILE|- EPMD_PORT PEER ARGS...
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ei.h>

#include "kdist.h"

/* Bounds an incarnation table: peers restarted more often than this per
 * run are reported as a set-up error. */
#define MAX_INCARNATIONS 4096

struct incarnation {
	long long id;
	long long last;
	uint64_t downs_seen; /* value of state.downs at the last receipt */
};

struct state {
	/* Held by the sending thread around each tseq send, so that on_down
	 * reads a next_seq that every accepted send is below. */
	pthread_mutex_t send_lock;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool up;
	bool writable;
	uint64_t ups, downs;
	/* The next tseq number to be sent at the most recent nodedown: every
	 * number below it was accepted before that nodedown. */
	long long down_boundary;
	char last_down_reason[256];

	/* flood */
	bool have_stats;
	unsigned long long sink_messages;

	/* soak, T -> PEER (checked through the acks) */
	long long next_seq; /* next number to send, under send_lock */
	long long last_ack;
	uint64_t ack_downs_seen;
	uint64_t acks, ack_lost, ack_dups, ack_gaps;

	/* soak, PEER -> T */
	struct incarnation inc[MAX_INCARNATIONS];
	size_t n_inc;
	uint64_t e_received, e_lost, e_dups, e_gaps, e_bad_start;
	uint64_t e_last_downs; /* value of downs at the last eseq receipt */
	uint64_t unexpected;
};

static struct state st = { .send_lock = PTHREAD_MUTEX_INITIALIZER,
			   .lock = PTHREAD_MUTEX_INITIALIZER,
			   .cond = PTHREAD_COND_INITIALIZER };

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static long rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("seqpeer: ", stdout);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	va_end(ap);
}

/* ---- callbacks ---- */

static void on_up(void *user, const char *peer)
{
	pthread_mutex_lock(&st.lock);
	st.up = true;
	st.ups++;
	pthread_cond_broadcast(&st.cond);
	pthread_mutex_unlock(&st.lock);
	say("nodeup %s", peer);
}

static void on_down(void *user, const char *peer, const char *reason,
		    const struct kdist_conn_stats *final)
{
	long long boundary;

	pthread_mutex_lock(&st.send_lock);
	boundary = st.next_seq;
	pthread_mutex_unlock(&st.send_lock);
	pthread_mutex_lock(&st.lock);
	st.up = false;
	st.downs++;
	st.down_boundary = boundary;
	snprintf(st.last_down_reason, sizeof(st.last_down_reason), "%s",
		 reason);
	pthread_cond_broadcast(&st.cond);
	pthread_mutex_unlock(&st.lock);
	say("nodedown %s (%s) send queue %llu bytes", peer, reason,
	    final ? (unsigned long long)final->send_queue_bytes : 0ull);
}

static void on_writable(void *user, const char *peer)
{
	pthread_mutex_lock(&st.lock);
	st.writable = true;
	pthread_cond_broadcast(&st.cond);
	pthread_mutex_unlock(&st.lock);
}

/* {sink_stats, Messages, Bytes} from the peer's sink. */
static void flood_receive(void *user, struct kdist_mailbox *mbox,
			  const struct kdist_pid *from, const void *payload,
			  size_t len)
{
	char atom[MAXATOMLEN_UTF8];
	unsigned long long m, b;
	int idx = 0, version, arity;

	if (ei_decode_version(payload, &idx, &version) ||
	    ei_decode_tuple_header(payload, &idx, &arity) || arity != 3 ||
	    ei_decode_atom(payload, &idx, atom) ||
	    strcmp(atom, "sink_stats") != 0 ||
	    ei_decode_ulonglong(payload, &idx, &m) ||
	    ei_decode_ulonglong(payload, &idx, &b))
		return;
	pthread_mutex_lock(&st.lock);
	st.have_stats = true;
	st.sink_messages = m;
	pthread_cond_broadcast(&st.cond);
	pthread_mutex_unlock(&st.lock);
}

static void check_ack(long long n)
{
	st.acks++;
	if (n == st.last_ack + 1) {
		st.last_ack = n;
	} else if (n <= st.last_ack) {
		st.ack_dups++;
		say("duplicate or reordered ack %lld after %lld", n,
		    st.last_ack);
	} else if (st.downs > st.ack_downs_seen && st.down_boundary >= n) {
		/* Everything in the gap was accepted before a nodedown that
		 * came after the previous ack. */
		st.ack_lost += (uint64_t)(n - st.last_ack - 1);
		st.last_ack = n;
	} else {
		st.ack_gaps++;
		say("gap without nodedown: ack %lld after %lld (nodedowns "
		    "%llu, boundary %lld)",
		    n, st.last_ack, (unsigned long long)st.downs,
		    st.down_boundary);
		st.last_ack = n;
	}
	st.ack_downs_seen = st.downs;
}

static void check_eseq(long long id, long long n)
{
	struct incarnation *in = NULL;

	st.e_received++;
	for (size_t i = 0; i < st.n_inc; i++)
		if (st.inc[i].id == id)
			in = &st.inc[i];
	if (!in) {
		if (st.n_inc == MAX_INCARNATIONS) {
			say("more than %d peer incarnations", MAX_INCARNATIONS);
			exit(2);
		}
		in = &st.inc[st.n_inc++];
		in->id = id;
		in->downs_seen = st.downs;
		in->last = n;
		/* The previous incarnation's end is one nodedown, so the first
		 * numbers of this one are lost only if a further link went
		 * down. */
		if (n != 1 &&
		    st.downs >= st.e_last_downs + (st.n_inc > 1 ? 2 : 1)) {
			st.e_lost += (uint64_t)(n - 1);
		} else if (n != 1) {
			st.e_bad_start++;
			say("incarnation %lld started at %lld without a "
			    "nodedown since it started, expected 1",
			    id, n);
		}
		st.e_last_downs = st.downs;
		return;
	}
	if (n == in->last + 1) {
		in->last = n;
	} else if (n <= in->last) {
		st.e_dups++;
		say("duplicate or reordered eseq %lld after %lld "
		    "(incarnation %lld)",
		    n, in->last, id);
	} else if (st.downs > in->downs_seen) {
		st.e_lost += (uint64_t)(n - in->last - 1);
		in->last = n;
	} else {
		st.e_gaps++;
		say("gap without nodedown: eseq %lld after %lld "
		    "(incarnation %lld)",
		    n, in->last, id);
		in->last = n;
	}
	in->downs_seen = st.downs;
	st.e_last_downs = st.downs;
}

/* {tack, N} and {eseq, Incarnation, N} from the peer. */
static void soak_receive(void *user, struct kdist_mailbox *mbox,
			 const struct kdist_pid *from, const void *payload,
			 size_t len)
{
	char atom[MAXATOMLEN_UTF8];
	long long a, b;
	int idx = 0, version, arity;

	if (ei_decode_version(payload, &idx, &version) ||
	    ei_decode_tuple_header(payload, &idx, &arity) ||
	    ei_decode_atom(payload, &idx, atom))
		goto unexpected;
	if (arity == 2 && strcmp(atom, "tack") == 0 &&
	    ei_decode_longlong(payload, &idx, &a) == 0) {
		pthread_mutex_lock(&st.lock);
		check_ack(a);
		pthread_cond_broadcast(&st.cond);
		pthread_mutex_unlock(&st.lock);
		return;
	}
	if (arity == 3 && strcmp(atom, "eseq") == 0 &&
	    ei_decode_longlong(payload, &idx, &a) == 0 &&
	    ei_decode_longlong(payload, &idx, &b) == 0) {
		pthread_mutex_lock(&st.lock);
		check_eseq(a, b);
		pthread_mutex_unlock(&st.lock);
		return;
	}
unexpected:
	pthread_mutex_lock(&st.lock);
	st.unexpected++;
	pthread_mutex_unlock(&st.lock);
}

/* ---- helpers ---- */

static void encode_self(ei_x_buff *x, struct kdist_mailbox *mbox)
{
	const struct kdist_pid *p = kdist_mailbox_pid(mbox);
	erlang_pid e;

	memset(&e, 0, sizeof(e));
	snprintf(e.node, sizeof(e.node), "%s", p->node);
	e.num = p->id;
	e.serial = p->serial;
	e.creation = p->creation;
	ei_x_encode_pid(x, &e);
}

/* Waits up to @ms for the writable callback; true if it fired. */
static bool wait_writable(unsigned ms)
{
	uint64_t end = now_ms() + ms;
	bool fired;

	pthread_mutex_lock(&st.lock);
	while (!st.writable && now_ms() < end) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&st.cond, &st.lock, &ts);
	}
	fired = st.writable;
	st.writable = false;
	pthread_mutex_unlock(&st.lock);
	return fired;
}

/* ---- flood ---- */

static int run_flood(struct kdist_node *node, const char *peer,
		     size_t bytes, unsigned long count)
{
	struct kdist_mailbox *mbox;
	unsigned long sent = 0, eagains = 0;
	char *data = calloc(1, bytes);
	ei_x_buff msg, stats;
	uint64_t t_end;
	int err;

	if (!data)
		return 2;
	memset(data, 'x', bytes);
	if (kdist_mailbox_open(node, NULL, flood_receive, NULL, &mbox)) {
		say("mailbox: %s", kdist_strerror());
		return 2;
	}
	if (kdist_connect(node, peer, 10000)) {
		say("connect to %s failed: %s", peer, kdist_strerror());
		return 2;
	}
	say("connected to %s, rss %ld kB fds %d", peer, rss_kb(),
	    count_dir("/proc/self/fd"));
	ei_x_new_with_version(&msg);
	ei_x_encode_binary(&msg, data, (long)bytes);
	while (sent < count) {
		uint64_t t0;

		err = kdist_send_name(mbox, peer, "sink", msg.buff,
				      (size_t)msg.index);
		if (err == 0) {
			sent++;
			continue;
		}
		if (err != -EAGAIN) {
			say("send %lu failed: %s", sent + 1, kdist_strerror());
			return 1;
		}
		eagains++;
		t0 = now_ms();
		if (wait_writable(1000))
			continue;
		say("blocked after %lu messages (%lu bytes accepted), rss %ld "
		    "kB fds %d",
		    sent, sent * (unsigned long)bytes, rss_kb(),
		    count_dir("/proc/self/fd"));
		while (!wait_writable(1000))
			say("rss %ld kB fds %d still blocked after %llu ms",
			    rss_kb(), count_dir("/proc/self/fd"),
			    (unsigned long long)(now_ms() - t0));
		say("writable after %llu ms, rss %ld kB",
		    (unsigned long long)(now_ms() - t0), rss_kb());
	}
	say("sent %lu messages of %zu bytes, %lu -EAGAIN", sent, bytes,
	    eagains);

	/* The stats request travels behind the data on the same link. */
	ei_x_new_with_version(&stats);
	ei_x_encode_tuple_header(&stats, 2);
	encode_self(&stats, mbox);
	ei_x_encode_atom(&stats, "stats");
	t_end = now_ms() + 30000;
	for (;;) {
		bool done;

		pthread_mutex_lock(&st.lock);
		st.have_stats = false;
		pthread_mutex_unlock(&st.lock);
		while (kdist_send_name(mbox, peer, "sink", stats.buff,
				       (size_t)stats.index) == -EAGAIN)
			wait_writable(100);
		sleep_ms(200);
		pthread_mutex_lock(&st.lock);
		done = st.have_stats && st.sink_messages >= sent;
		pthread_mutex_unlock(&st.lock);
		if (done || now_ms() > t_end)
			break;
	}
	say("delivered %llu of %lu, rss %ld kB", st.sink_messages, sent,
	    rss_kb());
	ei_x_free(&msg);
	ei_x_free(&stats);
	free(data);
	return st.sink_messages == sent ? 0 : 1;
}

/* ---- soak ---- */

/* Sends {tseq, Self, N}; returns the kdist_send_name() result. */
static int send_tseq(struct kdist_mailbox *mbox, const char *peer,
		     long long n)
{
	ei_x_buff x;
	int err;

	ei_x_new_with_version(&x);
	ei_x_encode_tuple_header(&x, 3);
	ei_x_encode_atom(&x, "tseq");
	encode_self(&x, mbox);
	ei_x_encode_longlong(&x, n);
	err = kdist_send_name(mbox, peer, "seqack", x.buff, (size_t)x.index);
	ei_x_free(&x);
	return err;
}

static int run_soak(struct kdist_node *node, const char *peer,
		    unsigned seconds, unsigned disconnect_ms)
{
	struct kdist_mailbox *mbox;
	uint64_t t_start = now_ms(), t_end = t_start + seconds * 1000ull;
	uint64_t next_disconnect = 0, disconnects = 0, not_accepted = 0;
	long rss0 = -1, rss1;
	int fds0 = -1, threads0 = -1, fds1, threads1, rc = 0;
	long long unacked = 0;

	if (kdist_mailbox_open(node, "soak", soak_receive, NULL, &mbox)) {
		say("mailbox: %s", kdist_strerror());
		return 2;
	}
	st.next_seq = 1;
	srand((unsigned)getpid());
	if (disconnect_ms)
		next_disconnect = t_start + disconnect_ms / 2 +
				  (uint64_t)rand() % disconnect_ms;
	while (now_ms() < t_end) {
		bool up;

		pthread_mutex_lock(&st.lock);
		up = st.up;
		pthread_mutex_unlock(&st.lock);
		if (!up) {
			if (kdist_connect(node, peer, 2000) != 0)
				sleep_ms(100);
			continue;
		}
		if (rss0 < 0) {
			rss0 = rss_kb();
			fds0 = count_dir("/proc/self/fd");
			threads0 = count_dir("/proc/self/task");
		}
		if (disconnect_ms && now_ms() >= next_disconnect) {
			if (kdist_disconnect(node, peer) == 0)
				disconnects++;
			next_disconnect = now_ms() + disconnect_ms / 2 +
					  (uint64_t)rand() % disconnect_ms;
			continue;
		}
		for (int i = 0; i < 50; i++) {
			int err;

			pthread_mutex_lock(&st.lock);
			up = st.up;
			pthread_mutex_unlock(&st.lock);
			if (!up)
				break;
			pthread_mutex_lock(&st.send_lock);
			err = send_tseq(mbox, peer, st.next_seq);
			if (err == 0)
				st.next_seq++;
			pthread_mutex_unlock(&st.send_lock);
			if (err == -EAGAIN) {
				wait_writable(100);
			} else if (err) {
				not_accepted++;
				break;
			}
		}
		sleep_ms(5);
	}

	/* Drain: every accepted number must be acked or covered by a
	 * nodedown. */
	for (uint64_t t = now_ms() + 10000; now_ms() < t;) {
		bool done;

		pthread_mutex_lock(&st.lock);
		done = st.last_ack >= st.next_seq - 1 ||
		       st.down_boundary >= st.next_seq;
		pthread_mutex_unlock(&st.lock);
		if (done)
			break;
		sleep_ms(50);
	}
	sleep_ms(500);
	pthread_mutex_lock(&st.lock);
	if (st.last_ack < st.next_seq - 1 &&
	    st.down_boundary < st.next_seq)
		unacked = st.next_seq - 1 - st.last_ack;
	else if (st.last_ack < st.next_seq - 1)
		st.ack_lost += (uint64_t)(st.next_seq - 1 - st.last_ack);
	rss1 = rss_kb();
	fds1 = count_dir("/proc/self/fd");
	threads1 = count_dir("/proc/self/task");
	say("summary: %llu s, nodeups %llu, nodedowns %llu, disconnects "
	    "%llu",
	    (unsigned long long)(now_ms() - t_start) / 1000,
	    (unsigned long long)st.ups, (unsigned long long)st.downs,
	    (unsigned long long)disconnects);
	say("summary kdist->erl: sent %lld, delivered %llu, "
	    "lost-with-nodedown %llu, gaps %llu, duplicates %llu, "
	    "unacked-without-nodedown %lld, not accepted %llu",
	    st.next_seq - 1, (unsigned long long)st.acks,
	    (unsigned long long)st.ack_lost, (unsigned long long)st.ack_gaps,
	    (unsigned long long)st.ack_dups, unacked,
	    (unsigned long long)not_accepted);
	say("summary erl->kdist: delivered %llu from %zu incarnations, "
	    "lost-with-nodedown %llu, gaps %llu, duplicates %llu, bad "
	    "starts %llu, unexpected messages %llu",
	    (unsigned long long)st.e_received, st.n_inc,
	    (unsigned long long)st.e_lost, (unsigned long long)st.e_gaps,
	    (unsigned long long)st.e_dups,
	    (unsigned long long)st.e_bad_start,
	    (unsigned long long)st.unexpected);
	say("summary resources: rss %ld -> %ld kB, fds %d -> %d, threads "
	    "%d -> %d",
	    rss0, rss1, fds0, fds1, threads0, threads1);
	if (st.ack_gaps || st.ack_dups || unacked || st.e_gaps || st.e_dups ||
	    st.e_bad_start || st.unexpected)
		rc = 1;
	if (st.acks == 0 || st.e_received == 0) {
		say("no traffic in one direction");
		rc = 1;
	}
	pthread_mutex_unlock(&st.lock);
	return rc;
}

int main(int argc, char **argv)
{
	struct kdist_config cfg;
	struct kdist_node *node;
	const char *mode;
	int rc;

	if (argc < 7) {
		fprintf(stderr, "usage: seqpeer MODE NAME COOKIE OPTFILE|- "
				"EPMD_PORT PEER ARGS...\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	mode = argv[1];
	kdist_config_init(&cfg);
	cfg.node_name = argv[2];
	cfg.cookie = argv[3];
	if (strcmp(argv[4], "-") == 0) {
		cfg.proto = KDIST_PROTO_INET_TCP;
	} else {
		cfg.proto = KDIST_PROTO_INET_TLS;
		cfg.ssl_dist_optfile = argv[4];
	}
	cfg.epmd_port = (uint16_t)atoi(argv[5]);
	if (strcmp(mode, "flood") == 0) {
		if (argc != 10) {
			fprintf(stderr, "usage: seqpeer flood NAME COOKIE "
					"OPTFILE EPMD_PORT PEER BYTES COUNT "
					"SEND_QUEUE\n");
			return 2;
		}
		cfg.send_queue_bytes = strtoul(argv[9], NULL, 10);
	} else if (strcmp(mode, "soak") == 0) {
		if (argc != 9) {
			fprintf(stderr, "usage: seqpeer soak NAME COOKIE "
					"OPTFILE EPMD_PORT PEER SECONDS "
					"DISCONNECT_MS\n");
			return 2;
		}
		cfg.net_ticktime = 8;
	} else {
		fprintf(stderr, "seqpeer: unknown mode '%s'\n", mode);
		return 2;
	}
	if (kdist_node_create(&cfg, &node) != 0) {
		fprintf(stderr, "seqpeer: %s\n", kdist_strerror());
		return 2;
	}
	kdist_set_node_monitor(node, on_up, on_down, NULL);
	kdist_set_writable_fn(node, on_writable, NULL);
	if (kdist_node_start(node) != 0) {
		fprintf(stderr, "seqpeer: %s\n", kdist_strerror());
		kdist_node_destroy(node);
		return 2;
	}
	say("node %s up", kdist_node_name(node));
	if (strcmp(mode, "flood") == 0)
		rc = run_flood(node, argv[6], strtoul(argv[7], NULL, 10),
			       strtoul(argv[8], NULL, 10));
	else
		rc = run_soak(node, argv[6], (unsigned)atoi(argv[7]),
			      (unsigned)atoi(argv[8]));
	kdist_node_destroy(node);
	return rc;
}
