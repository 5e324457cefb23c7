// SPDX-License-Identifier: Apache-2.0
/*
 * badpeer: a distribution peer for the bad-input tests. It connects to a
 * node over TLS (options from an -ssl_dist_optfile, client role) or plain
 * TCP, runs the distribution handshake as the initiator with kdist's own
 * state machine, and then behaves well or badly:
 *
 *   good      sends {Self, hello} to echo and expects hello back
 *   garbage   sends a packet that is no distribution message
 *   oversize  sends a length prefix of 0x7ffffff0
 *   truncate  announces 1000 bytes, sends 100, then exits
 *   silent    connects and sends nothing for SECONDS (default 10)
 *   tls-silent  completes TLS, then sends nothing for SECONDS
 *
 * For garbage and oversize it waits for the node to close the connection.
 * Exit status: 0 when the node behaved as expected, 1 otherwise, 2 for a
 * usage or set-up error.
 *
 * usage: badpeer MODE HOST PORT NODE COOKIE [OPTFILE|-] [SECONDS]
 */
#include <arpa/inet.h>
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

#define PEER_TOOL "badpeer"
#define THIS_NODE "badpeer@localhost"
#define CREATION 0x4b44
#define PEER_FLAGS                                                       \
	(KD_DFLAGS_MANDATORY | DFLAG_MANDATORY_25_DIGEST |                \
	 DFLAG_DIST_MONITOR | DFLAG_DIST_MONITOR_NAME)
#define PEER_RCVBUF 0

#include "peer.h"

static int mode_good(struct peer *p)
{
	erlang_pid self = { .node = THIS_NODE, .num = 1, .creation = CREATION };
	const uint8_t *pkt;
	struct kd_ctrl c;
	char err[200];
	uint32_t len;
	int ok = -1;

	if (send_tuple(p, &self, "echo", &self, "hello") == 0 &&
	    next_packet(p, 5000, &pkt, &len) == 1 &&
	    kd_ctrl_decode(pkt, len, &c, err, sizeof(err)) == 0 && c.msg_term &&
	    memmem(c.msg_term, c.msg_term_len, "hello", 5))
		ok = 0;
	if (ok)
		fprintf(stderr, "badpeer: no hello back from echo\n");
	return ok;
}

/* Waits for the node to close the connection after a bad packet. */
static int expect_close(struct peer *p)
{
	const uint8_t *pkt;
	uint32_t len;

	for (int i = 0; i < 20; i++) {
		int r = next_packet(p, 500, &pkt, &len);

		if (r == 0)
			return 0;
		if (r < 0 && i == 19)
			break;
	}
	fprintf(stderr, "badpeer: the node kept the connection open\n");
	return -1;
}

int main(int argc, char **argv)
{
	static const char garbage[] = "this is not a distribution message";
	const char *mode, *optfile;
	struct peer p = { .fd = -1 };
	unsigned hdr;
	int rc;

	if (argc < 6) {
		fprintf(stderr, "usage: badpeer MODE HOST PORT NODE COOKIE "
				"[OPTFILE|-] [SECONDS]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	mode = argv[1];
	optfile = argc > 6 && strcmp(argv[6], "-") != 0 ? argv[6] : NULL;
	p.fd = tcp_connect(argv[2], argv[3]);
	if (p.fd < 0) {
		fprintf(stderr, "badpeer: connect %s:%s failed\n", argv[2],
			argv[3]);
		return 2;
	}
	if (strcmp(mode, "silent") == 0) {
		sleep(argc > 7 ? (unsigned)atoi(argv[7]) : 10);
		return 0;
	}
	if (optfile && !(p.ssl = tls_connect(p.fd, optfile)))
		return 2;
	if (strcmp(mode, "tls-silent") == 0) {
		sleep(argc > 7 ? (unsigned)atoi(argv[7]) : 10);
		return 0;
	}
	hdr = p.ssl ? 4 : 2;
	kd_framer_init(&p.in, hdr, 1u << 26);
	if (handshake(&p, argv[4], argv[5], hdr) < 0)
		return 1;
	kd_framer_set_header(&p.in, 4);

	if (strcmp(mode, "good") == 0) {
		rc = mode_good(&p);
	} else if (strcmp(mode, "garbage") == 0) {
		rc = send_packet(&p, 4, garbage, sizeof(garbage));
		rc = rc ? rc : expect_close(&p);
	} else if (strcmp(mode, "oversize") == 0) {
		static const uint8_t prefix[4] = { 0x7f, 0xff, 0xff, 0xf0 };

		rc = peer_write(&p, prefix, 4);
		rc = rc ? rc : peer_write(&p, garbage, sizeof(garbage));
		rc = rc ? rc : expect_close(&p);
	} else if (strcmp(mode, "truncate") == 0) {
		static const uint8_t prefix[4] = { 0, 0, 0x03, 0xe8 };
		uint8_t part[100] = { 'p', 131 };

		rc = peer_write(&p, prefix, 4);
		rc = rc ? rc : peer_write(&p, part, sizeof(part));
		/* Exit without close_notify, as a killed peer would. */
		_exit(rc ? 1 : 0);
	} else {
		fprintf(stderr, "badpeer: unknown mode '%s'\n", mode);
		return 2;
	}
	return rc ? 1 : 0;
}
