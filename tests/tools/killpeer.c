// SPDX-License-Identifier: Apache-2.0
/*
 * killpeer: a distribution peer that dies with SIGKILL at a named step of
 * the TLS or distribution handshake, or in the middle of a fragmented
 * message, so that the kernel closes its socket as it does for a crashed
 * node. Just before raise(SIGKILL) it prints "killpeer: HH:MM:SS.mmm
 * SIGKILL at STEP" (UTC) to stderr, so its exit status is 128 + 9 when
 * the step was reached.
 *
 *   connect STEP HOST PORT NODE COOKIE OPTFILE
 *       Connects to NODE (kdist as server) as killpeer@localhost and dies
 *       at STEP, one of: tcp, client_hello_partial, client_hello,
 *       server_hello, client_finished, server_finished, tls_done,
 *       send_name_partial,
 *       send_name, recv_status, recv_challenge, send_challenge_reply,
 *       recv_challenge_ack; or "none" to finish and check an echo.
 *
 *   accept STEP NODE COOKIE OPTFILE EPMD_PORT
 *       Registers NODE (name@host) with the EPMD on localhost:EPMD_PORT,
 *       keeping the registration socket open, listens on the address of
 *       host, prints "listening on PORT" and takes one connection (kdist
 *       as client). It dies at STEP, one of: accept, recv_client_hello,
 *       send_server_hello, recv_client_finished, tls_done, recv_name,
 *       send_status,
 *       send_challenge, recv_challenge_reply, send_challenge_ack. It
 *       exits 1 when no connection arrives within 20 s.
 *
 *   trigger HOST PORT NODE COOKIE OPTFILE TARGET
 *       Connects as a good peer and sends {Pid, hello} to echo on NODE,
 *       with Pid on node TARGET, so that NODE connects out to TARGET to
 *       send the reply. Then checks its own echo and exits.
 *
 *   frag HOST PORT NODE COOKIE OPTFILE FRAGMENTS HOLD
 *       Connects (with DFLAG_FRAGMENTS), starts a message to sink of
 *       FRAGMENTS fragments of 1 MiB, sends all but the last, checks with
 *       {Self, stats} that sink has not counted it, prints "holding", and
 *       dies after HOLD seconds.
 *
 *   sink-count HOST PORT NODE COOKIE OPTFILE
 *       Prints "sink count N", the messages sink on NODE has counted.
 *
 * OPTFILE is an -ssl_dist_optfile. During the TLS handshake OpenSSL
 * writes into a memory BIO, so that the tool decides when each flight
 * reaches the socket.
 * Exit status: 0 when a mode that does not die succeeded, 1 when the node
 * misbehaved or closed first, 2 for a usage or set-up error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "control.h"
#include "epmd.h"
#include "frame.h"
#include "handshake.h"
#include "tls_config.h"

#define PEER_TOOL "killpeer"
#define THIS_NODE this_node
#define CREATION 0x4b46
#define PEER_FLAGS                                                             \
	(KD_DFLAGS_MANDATORY | DFLAG_MANDATORY_25_DIGEST |                     \
	 DFLAG_DIST_MONITOR | DFLAG_DIST_MONITOR_NAME | DFLAG_FRAGMENTS)
#define PEER_RCVBUF 0

static const char *this_node = "killpeer@localhost";

#include "peer.h"

#define FRAG_BODY (1024 * 1024)
#define FRAG_HDR 18 /* 131 69|70, SeqId:64, FragId:64 */

static const char *const connect_steps[] = {
	"tcp",
	"client_hello_partial",
	"client_hello",
	"server_hello",
	"client_finished",
	"server_finished",
	"tls_done",
	"send_name_partial",
	"send_name",
	"recv_status",
	"recv_challenge",
	"send_challenge_reply",
	"recv_challenge_ack",
	"none",
	NULL,
};
static const char *const accept_steps[] = {
	"accept",
	"recv_client_hello",
	"send_server_hello",
	"recv_client_finished",
	"tls_done",
	"recv_name",
	"send_status",
	"send_challenge",
	"recv_challenge_reply",
	"send_challenge_ack",
	NULL,
};

static bool step_known(const char *step, const char *const *steps)
{
	for (; *steps; steps++)
		if (strcmp(step, *steps) == 0)
			return true;
	fprintf(stderr, "killpeer: unknown step '%s'\n", step);
	return false;
}

/* The step to die at, and what the tool has seen on the way there. */
static const char *kill_step = "";
static bool server_role;
static size_t tls_bytes_sent;
static bool flight_sent;
static bool finished_written;

/* Prints the step with the UTC time of day, in the form of kdist's log
 * time stamps so that a test can subtract them, and dies. */
static void die_at(const char *step)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "killpeer: %02d:%02d:%02d.%03ld SIGKILL at %s\n",
		tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, step);
	raise(SIGKILL);
}

static void die_if(const char *step)
{
	if (strcmp(kill_step, step) == 0)
		die_at(step);
}

/* ---- TLS handshake ---- */

/* Dies when the peer's handshake message named by the step arrives,
 * before OpenSSL writes anything in reply, and notes when OpenSSL wrote
 * this side's Finished. */
static void tls_msg_seen(int write_p, int version, int content_type,
			 const void *buf, size_t len, SSL *ssl, void *arg)
{
	const uint8_t *msg = buf;

	if (content_type != SSL3_RT_HANDSHAKE || len == 0)
		return;
	if (write_p) {
		if (msg[0] == SSL3_MT_FINISHED)
			finished_written = true;
		return;
	}
	if (server_role && msg[0] == SSL3_MT_CLIENT_HELLO)
		die_if("recv_client_hello");
	if (server_role && msg[0] == SSL3_MT_FINISHED)
		die_if("recv_client_finished");
	if (!server_role && msg[0] == SSL3_MT_SERVER_HELLO)
		die_if("server_hello");
	if (!server_role && msg[0] == SSL3_MT_FINISHED)
		die_if("server_finished");
}

/* Sends what OpenSSL wrote to @wbio; the first flight may be cut short
 * or be the last thing this process does. */
static int tls_flush(struct peer *p, BIO *wbio)
{
	uint8_t buf[16384];
	int n;

	while ((n = BIO_read(wbio, buf, sizeof(buf))) > 0) {
		if (!flight_sent &&
		    strcmp(kill_step, "client_hello_partial") == 0) {
			send(p->fd, buf, (size_t)n / 2, MSG_NOSIGNAL);
			die_at(kill_step);
		}
		if (send(p->fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
			return -1;
		tls_bytes_sent += (size_t)n;
	}
	if (!flight_sent && tls_bytes_sent) {
		flight_sent = true;
		die_if(server_role ? "send_server_hello" : "client_hello");
	}
	/* With TLS 1.2 the client's Finished goes out before the server's
	 * arrives. With TLS 1.3 it is in the client's last flight. */
	if (finished_written && !server_role)
		die_if("client_finished");
	return 0;
}

/*
 * Runs the TLS handshake in @ctx's role. OpenSSL reads the socket itself,
 * one record at a time, so no unprocessed bytes stay in a buffer when the
 * distribution handshake starts. It writes into a memory BIO that
 * tls_flush() empties, so this tool decides when each flight leaves.
 */
static SSL *tls_handshake(struct peer *p, SSL_CTX *ctx)
{
	BIO *wbio = BIO_new(BIO_s_mem());
	SSL *ssl = SSL_new(ctx);
	int flags = fcntl(p->fd, F_GETFL);
	char err[256];

	SSL_set_fd(ssl, p->fd);
	SSL_set0_wbio(ssl, wbio);
	SSL_set_msg_callback(ssl, tls_msg_seen);
	if (server_role) {
		SSL_set_accept_state(ssl);
	} else if (kd_tls_client_prepare(ssl, "localhost", err, sizeof(err))) {
		fprintf(stderr, "killpeer: %s\n", err);
		return NULL;
	} else {
		SSL_set_connect_state(ssl);
	}
	fcntl(p->fd, F_SETFL, flags | O_NONBLOCK);
	for (;;) {
		struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
		int r = SSL_do_handshake(ssl);

		if (tls_flush(p, wbio) < 0)
			break;
		if (r == 1) {
			die_if("tls_done");
			fcntl(p->fd, F_SETFL, flags);
			/* The socket BIO takes the writes from here on. */
			SSL_set_fd(ssl, p->fd);
			return ssl;
		}
		if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ ||
		    poll(&pfd, 1, 5000) <= 0)
			break;
	}
	fprintf(stderr, "killpeer: TLS handshake failed\n");
	ERR_print_errors_fp(stderr);
	return NULL;
}

/* ---- distribution handshake ---- */

struct hs_kill {
	const char *step;
	bool server;
	enum peer_hs_event ev;
	uint8_t tag;
};

/* The message tags of dist_util.erl, protocol version 6. */
static const struct hs_kill hs_kills[] = {
	{ "send_name", false, PEER_HS_SENT, 'N' },
	{ "recv_status", false, PEER_HS_RECEIVED, 's' },
	{ "recv_challenge", false, PEER_HS_RECEIVED, 'N' },
	{ "send_challenge_reply", false, PEER_HS_SENT, 'r' },
	{ "recv_challenge_ack", false, PEER_HS_RECEIVED, 'a' },
	{ "recv_name", true, PEER_HS_RECEIVED, 'N' },
	{ "send_status", true, PEER_HS_SENT, 's' },
	{ "send_challenge", true, PEER_HS_SENT, 'N' },
	{ "recv_challenge_reply", true, PEER_HS_RECEIVED, 'r' },
	{ "send_challenge_ack", true, PEER_HS_SENT, 'a' },
};

static void hs_event(struct peer *p, enum peer_hs_event ev, const uint8_t *msg,
		     size_t len)
{
	uint8_t prefix[4];

	if (ev == PEER_HS_SENDING && msg[0] == 'N' && !server_role &&
	    strcmp(kill_step, "send_name_partial") == 0) {
		/* The whole length prefix, then half of the message. */
		kd_frame_put_header(prefix, 4, len);
		peer_write(p, prefix, 4);
		peer_write(p, msg, len / 2);
		die_at(kill_step);
	}
	for (size_t i = 0; i < sizeof(hs_kills) / sizeof(hs_kills[0]); i++)
		if (hs_kills[i].server == server_role && hs_kills[i].ev == ev &&
		    hs_kills[i].tag == msg[0])
			die_if(hs_kills[i].step);
}

static int dist_handshake(struct peer *p, const char *peer_node,
			  const char *cookie)
{
	struct kd_hs_params hp = {
		.role = server_role ? KD_HS_ACCEPTOR : KD_HS_INITIATOR,
		.this_node = this_node,
		.creation = CREATION,
		.flags = PEER_FLAGS,
		.cookie = cookie,
		.peer_node = peer_node,
	};

	kd_framer_init(&p->in, 4, 1u << 26);
	if (handshake_run(p, &hp, 4, hs_event) < 0)
		return -1;
	kd_framer_set_header(&p->in, 4);
	return 0;
}

/* ---- connected-phase messages ---- */

static erlang_pid self_pid(void)
{
	erlang_pid self = { .num = 1, .creation = CREATION };

	snprintf(self.node, sizeof(self.node), "%s", this_node);
	return self;
}

/* Takes the next message to this process and returns its term. */
static int recv_msg(struct peer *p, struct kd_ctrl *c)
{
	const uint8_t *pkt;
	char err[200];
	uint32_t len;

	if (next_packet(p, 5000, &pkt, &len) != 1 ||
	    kd_ctrl_decode(pkt, len, c, err, sizeof(err)) != 0 ||
	    !c->msg_term) {
		fprintf(stderr, "killpeer: no message from the node\n");
		return -1;
	}
	return 0;
}

static int check_echo(struct peer *p)
{
	erlang_pid self = self_pid();
	struct kd_ctrl c;

	if (send_tuple(p, &self, "echo", &self, "hello") < 0 ||
	    recv_msg(p, &c) < 0)
		return -1;
	if (!memmem(c.msg_term, c.msg_term_len, "hello", 5)) {
		fprintf(stderr, "killpeer: echo did not send hello back\n");
		return -1;
	}
	return 0;
}

/* Returns the count of messages sink has taken, or -1. */
static long long sink_count(struct peer *p)
{
	erlang_pid self = self_pid();
	EI_ULONGLONG messages;
	struct kd_ctrl c;
	char atom[MAXATOMLEN];
	int idx = 0, arity;

	if (send_tuple(p, &self, "sink", &self, "stats") < 0 ||
	    recv_msg(p, &c) < 0)
		return -1;
	if (ei_decode_tuple_header((const char *)c.msg_term, &idx, &arity) ||
	    arity != 3 ||
	    ei_decode_atom((const char *)c.msg_term, &idx, atom) ||
	    strcmp(atom, "sink_stats") ||
	    ei_decode_ulonglong((const char *)c.msg_term, &idx, &messages)) {
		fprintf(stderr, "killpeer: sink sent no sink_stats\n");
		return -1;
	}
	return (long long)messages;
}

static void put_be64(uint8_t *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
}

/*
 * Sends all but the last of @count fragments of a REG_SEND to sink whose
 * message is a binary that fills them. The first fragment carries the
 * control term and the binary's header (erl_ext_dist.md, "Distribution
 * Header for Fragmented Messages"); FragId counts down to 1, which is
 * never sent.
 */
static int send_partial_message(struct peer *p, unsigned count)
{
	static uint8_t pkt[FRAG_HDR + 1 + 512 + FRAG_BODY];
	erlang_pid self = self_pid();
	uint64_t seq_id = 0x6b696c6cULL;
	size_t bin_len = (size_t)count * FRAG_BODY;
	ei_x_buff x;
	size_t n;
	int r;

	ei_x_new(&x);
	kd_ctrl_encode_reg_send(&x, &self, "sink");
	pkt[0] = 131;
	pkt[1] = 69;
	put_be64(pkt + 2, seq_id);
	put_be64(pkt + 10, count);
	pkt[18] = 0; /* NumAtomRefs */
	/* The control term without "p 131", then BINARY_EXT's header. */
	n = (size_t)x.index - 2;
	memcpy(pkt + FRAG_HDR + 1, x.buff + 2, n);
	ei_x_free(&x);
	n += FRAG_HDR + 1;
	pkt[n++] = ERL_BINARY_EXT;
	pkt[n++] = (uint8_t)(bin_len >> 24);
	pkt[n++] = (uint8_t)(bin_len >> 16);
	pkt[n++] = (uint8_t)(bin_len >> 8);
	pkt[n++] = (uint8_t)bin_len;
	memset(pkt + n, 'k', FRAG_BODY);
	r = send_packet(p, 4, pkt, n + FRAG_BODY);

	for (unsigned id = count - 1; id >= 2 && r == 0; id--) {
		pkt[1] = 70;
		put_be64(pkt + 10, id);
		memset(pkt + FRAG_HDR, 'k', FRAG_BODY);
		r = send_packet(p, 4, pkt, FRAG_HDR + FRAG_BODY);
	}
	return r;
}

static int mode_frag(struct peer *p, unsigned count, unsigned hold)
{
	long long before, after;

	if (count < 3) {
		fprintf(stderr, "killpeer: frag needs 3 or more fragments\n");
		return 2;
	}
	before = sink_count(p);
	if (before < 0 || send_partial_message(p, count) < 0)
		return 1;
	/* The node reads in order, so this reply comes after it has taken
	 * every fragment sent. */
	after = sink_count(p);
	if (after != before) {
		fprintf(stderr,
			"killpeer: sink counted %lld messages before "
			"the fragments and %lld after %u of %u\n",
			before, after, count - 1, count);
		return 1;
	}
	printf("holding %u of %u fragments (%u MiB); sink count %lld\n",
	       count - 1, count, count - 1, after);
	fflush(stdout);
	sleep(hold);
	die_at("fragment_pending");
	return 1;
}

static int mode_trigger(struct peer *p, const char *target)
{
	erlang_pid self = self_pid();
	erlang_pid far = { .num = 7, .creation = 1 };

	snprintf(far.node, sizeof(far.node), "%s", target);
	if (send_tuple(p, &self, "echo", &far, "hello") < 0)
		return 1;
	return check_echo(p) < 0 ? 1 : 0;
}

/* ---- connections ---- */

static int connect_node(struct peer *p, const char *host, const char *port,
			const char *node, const char *cookie,
			const char *optfile)
{
	SSL_CTX *ctx = tls_context(optfile, false);

	if (!ctx)
		return 2;
	p->fd = tcp_connect(host, port);
	if (p->fd < 0) {
		fprintf(stderr, "killpeer: connect %s:%s failed\n", host, port);
		return 2;
	}
	die_if("tcp");
	p->ssl = tls_handshake(p, ctx);
	if (!p->ssl || dist_handshake(p, node, cookie) < 0)
		return 1;
	return 0;
}

/* Listens on the address of @node's host part, port chosen by the
 * kernel. */
static int listen_on(const char *node, uint16_t *port)
{
	struct addrinfo hints = { .ai_family = AF_INET,
				  .ai_socktype = SOCK_STREAM };
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	struct addrinfo *res;
	int fd, one = 1;

	if (getaddrinfo(strchr(node, '@') + 1, "0", &hints, &res) != 0)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
		freeaddrinfo(res);
		close(fd);
		return -1;
	}
	freeaddrinfo(res);
	*port = ntohs(sin.sin_port);
	return fd;
}

static int mode_accept(struct peer *p, char **argv)
{
	const char *node = argv[3], *cookie = argv[4];
	struct kd_epmd_node reg = { .node_type = 77,
				    .high_version = 6,
				    .low_version = 6 };
	struct pollfd pfd = { .events = POLLIN };
	SSL_CTX *ctx = tls_context(argv[5], true);
	uint32_t creation;
	int epmd_fd, lfd;

	if (!ctx || !strchr(node, '@'))
		return 2;
	this_node = node;
	lfd = listen_on(node, &reg.port);
	snprintf(reg.name, sizeof(reg.name), "%.*s",
		 (int)(strchr(node, '@') - node), node);
	if (lfd < 0 || kd_epmd_register("localhost", (uint16_t)atoi(argv[6]),
					&reg, 5000, &epmd_fd, &creation) != 0) {
		fprintf(stderr, "killpeer: cannot listen and register %s\n",
			node);
		return 2;
	}
	printf("listening on %u\n", reg.port);
	fflush(stdout);
	pfd.fd = lfd;
	if (poll(&pfd, 1, 20000) <= 0) {
		fprintf(stderr, "killpeer: no connection within 20 s\n");
		return 1;
	}
	p->fd = accept(lfd, NULL, NULL);
	if (p->fd < 0)
		return 1;
	die_if("accept");
	p->ssl = tls_handshake(p, ctx);
	if (!p->ssl || dist_handshake(p, NULL, cookie) < 0)
		return 1;
	/* Every accept step dies by here. */
	return 1;
}

int main(int argc, char **argv)
{
	struct peer p = { .fd = -1 };
	const char *mode = argc > 1 ? argv[1] : "";
	int rc;

	signal(SIGPIPE, SIG_IGN);
	if (strcmp(mode, "accept") == 0 && argc == 7) {
		kill_step = argv[2];
		server_role = true;
		if (!step_known(kill_step, accept_steps))
			return 2;
		return mode_accept(&p, argv);
	}
	if (strcmp(mode, "connect") == 0 && argc == 8) {
		kill_step = argv[2];
		if (!step_known(kill_step, connect_steps))
			return 2;
		rc = connect_node(&p, argv[3], argv[4], argv[5], argv[6],
				  argv[7]);
		return rc ? rc : (check_echo(&p) < 0 ? 1 : 0);
	}
	if (argc < 7)
		goto usage;
	rc = connect_node(&p, argv[2], argv[3], argv[4], argv[5], argv[6]);
	if (rc)
		return rc;
	if (strcmp(mode, "trigger") == 0 && argc == 8)
		return mode_trigger(&p, argv[7]);
	if (strcmp(mode, "frag") == 0 && argc == 9)
		return mode_frag(&p, (unsigned)atoi(argv[7]),
				 (unsigned)atoi(argv[8]));
	if (strcmp(mode, "sink-count") == 0 && argc == 7) {
		long long n = sink_count(&p);

		if (n < 0)
			return 1;
		printf("sink count %lld\n", n);
		return 0;
	}
usage:
	fprintf(stderr,
		"usage: killpeer connect STEP HOST PORT NODE COOKIE OPTFILE\n"
		"       killpeer accept STEP NODE COOKIE OPTFILE EPMD_PORT\n"
		"       killpeer trigger HOST PORT NODE COOKIE OPTFILE TARGET\n"
		"       killpeer frag HOST PORT NODE COOKIE OPTFILE FRAGMENTS "
		"HOLD\n"
		"       killpeer sink-count HOST PORT NODE COOKIE OPTFILE\n");
	return 2;
}
