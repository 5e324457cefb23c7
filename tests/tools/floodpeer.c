// SPDX-License-Identifier: Apache-2.0
/*
 * floodpeer: a distribution peer for the break tests. Like badpeer it
 * connects over TLS (options from an -ssl_dist_optfile, client role) or
 * plain TCP and runs the distribution handshake as the initiator. Then it
 * sends COUNT control messages of one kind and keeps the connection open
 * for SECONDS without reading, so the node's memory can be watched:
 *
 *   link-dup      LINK from one pid to the echo mailbox, COUNT times
 *   link-spoof    one LINK to echo whose sender pid is on node COUNT
 *                 (a node name, not this connection's node)
 *   unlink-id     UNLINK_ID to the echo mailbox (each one is acknowledged)
 *   spawn         SPAWN_REQUEST (kdist replies with notsup to each)
 *   monitor-none  MONITOR_P on an unregistered name (each one fires at
 *                 once with noproc)
 *   frag-open     COUNT first fragments (131 69) of 1 MiB each, in
 *                 sequences that never finish
 *
 * The echo mailbox's pid is learned from the sender of its reply to
 * {Self, hello}. With SECONDS 0 it exits at once after sending.
 * Exit status: 0 when everything was sent, 1 on a send or protocol
 * failure, 2 for a usage or set-up error.
 *
 * usage: floodpeer MODE HOST PORT NODE COOKIE OPTFILE|- COUNT [SECONDS]
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "control.h"
#include "frame.h"
#include "handshake.h"
#include "tls_config.h"

#define PEER_TOOL "floodpeer"
#define THIS_NODE "floodpeer@localhost"
#define CREATION 0x4b45
#define PEER_FLAGS                                                       \
	(KD_DFLAGS_MANDATORY | DFLAG_MANDATORY_25_DIGEST |                \
	 DFLAG_DIST_MONITOR | DFLAG_DIST_MONITOR_NAME | DFLAG_SEND_SENDER | \
	 DFLAG_FRAGMENTS | DFLAG_UNLINK_ID | DFLAG_SPAWN |                  \
	 DFLAG_EXIT_PAYLOAD)
#define PEER_RCVBUF 4096

#include "peer.h"
#define FRAG_BODY (1024 * 1024)

static int send_ctrl(struct peer *p, ei_x_buff *x)
{
	int r = send_packet(p, 4, x->buff, (size_t)x->index);

	x->index = 0;
	return r;
}

/* Sends {Self, hello} to echo and takes the echo pid from the reply. */
static int learn_echo_pid(struct peer *p, const erlang_pid *self,
			  erlang_pid *echo)
{
	const uint8_t *pkt;
	struct kd_ctrl c;
	char err[200];
	uint32_t len;

	if (send_tuple(p, self, "echo", self, "hello") < 0 ||
	    next_packet(p, 5000, &pkt, &len) != 1 ||
	    kd_ctrl_decode(pkt, len, &c, err, sizeof(err)) != 0 ||
	    !c.has_from) {
		fprintf(stderr, "floodpeer: no reply from echo with a sender\n");
		return -1;
	}
	*echo = c.from;
	return 0;
}

static void make_ref(erlang_ref *ref, unsigned long i)
{
	memset(ref, 0, sizeof(*ref));
	strcpy(ref->node, THIS_NODE);
	ref->len = 3;
	ref->n[0] = (unsigned)(i & 0x3ffff);
	ref->n[1] = (unsigned)(i >> 18);
	ref->n[2] = 7;
	ref->creation = CREATION;
}

/* SPAWN_REQUEST {29, ReqId, From, GroupLeader, {M, F, A}, OptList}
 * followed by the argument list []. */
static void encode_spawn_request(ei_x_buff *x, const erlang_pid *self,
				 unsigned long i)
{
	erlang_ref ref;

	make_ref(&ref, i);
	ei_x_append_buf(x, "p", 1);
	ei_x_encode_version(x);
	ei_x_encode_tuple_header(x, 6);
	ei_x_encode_long(x, KD_DOP_SPAWN_REQUEST);
	ei_x_encode_ref(x, &ref);
	ei_x_encode_pid(x, self);
	ei_x_encode_pid(x, self);
	ei_x_encode_tuple_header(x, 3);
	ei_x_encode_atom(x, "erlang");
	ei_x_encode_atom(x, "node");
	ei_x_encode_long(x, 0);
	ei_x_encode_empty_list(x);
	ei_x_encode_version(x);
	ei_x_encode_empty_list(x);
}

static int send_first_fragment(struct peer *p, uint64_t seq_id)
{
	static uint8_t body[19 + FRAG_BODY];
	uint64_t frag_id = 1000;

	body[0] = 131;
	body[1] = 69;
	for (int i = 0; i < 8; i++) {
		body[2 + i] = (uint8_t)(seq_id >> (56 - 8 * i));
		body[10 + i] = (uint8_t)(frag_id >> (56 - 8 * i));
	}
	body[18] = 0;
	memset(body + 19, 'x', FRAG_BODY);
	return send_packet(p, 4, body, sizeof(body));
}

static int flood(struct peer *p, const char *mode, const char *count_arg)
{
	erlang_pid self = { .node = THIS_NODE, .num = 1, .creation = CREATION };
	unsigned long count = strtoul(count_arg, NULL, 10);
	erlang_pid echo, spoof;
	erlang_ref ref;
	ei_x_buff x;
	int r = 0;

	ei_x_new(&x);
	if (strcmp(mode, "link-spoof") == 0) {
		if (learn_echo_pid(p, &self, &echo) < 0)
			return -1;
		spoof = self;
		snprintf(spoof.node, sizeof(spoof.node), "%s", count_arg);
		kd_ctrl_encode_link(&x, &spoof, &echo);
		r = send_ctrl(p, &x);
	} else if (strcmp(mode, "link-dup") == 0 ||
		   strcmp(mode, "unlink-id") == 0) {
		if (learn_echo_pid(p, &self, &echo) < 0)
			return -1;
		for (unsigned long i = 0; i < count && r == 0; i++) {
			if (mode[0] == 'l')
				kd_ctrl_encode_link(&x, &self, &echo);
			else
				kd_ctrl_encode_unlink_id(&x, i + 1, &self,
							 &echo);
			r = send_ctrl(p, &x);
		}
	} else if (strcmp(mode, "spawn") == 0) {
		for (unsigned long i = 0; i < count && r == 0; i++) {
			encode_spawn_request(&x, &self, i);
			r = send_ctrl(p, &x);
		}
	} else if (strcmp(mode, "monitor-none") == 0) {
		for (unsigned long i = 0; i < count && r == 0; i++) {
			make_ref(&ref, i);
			kd_ctrl_encode_monitor_p(&x, &self, NULL,
						 "no_such_name", &ref);
			r = send_ctrl(p, &x);
		}
	} else if (strcmp(mode, "frag-open") == 0) {
		for (unsigned long i = 0; i < count && r == 0; i++)
			r = send_first_fragment(p, i + 1);
	} else {
		fprintf(stderr, "floodpeer: unknown mode '%s'\n", mode);
		ei_x_free(&x);
		return -2;
	}
	ei_x_free(&x);
	if (r < 0)
		fprintf(stderr, "floodpeer: send failed (the node closed the "
				"connection?)\n");
	return r;
}

int main(int argc, char **argv)
{
	struct peer p = { .fd = -1 };
	const char *optfile;
	unsigned hdr;
	int rc;

	if (argc < 8) {
		fprintf(stderr, "usage: floodpeer MODE HOST PORT NODE COOKIE "
				"OPTFILE|- COUNT [SECONDS]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	optfile = strcmp(argv[6], "-") != 0 ? argv[6] : NULL;
	p.fd = tcp_connect(argv[2], argv[3]);
	if (p.fd < 0) {
		fprintf(stderr, "floodpeer: connect %s:%s failed\n", argv[2],
			argv[3]);
		return 2;
	}
	if (optfile && !(p.ssl = tls_connect(p.fd, optfile)))
		return 2;
	hdr = p.ssl ? 4 : 2;
	kd_framer_init(&p.in, hdr, 1u << 26);
	if (handshake(&p, argv[4], argv[5], hdr) < 0)
		return 1;
	kd_framer_set_header(&p.in, 4);
	rc = flood(&p, argv[1], argv[7]);
	if (rc == -2)
		return 2;
	fprintf(stderr, "floodpeer: %s: sent\n", argv[1]);
	sleep(argc > 8 ? (unsigned)atoi(argv[8]) : 0);
	return rc ? 1 : 0;
}
