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

#define THIS_NODE "badpeer@localhost"
#define CREATION 0x4b44

struct peer {
	int fd;
	SSL *ssl;
	struct kd_framer in;
};

static int tcp_connect(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	int fd = -1;

	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

static int peer_write(struct peer *p, const void *buf, size_t len)
{
	if (p->ssl)
		return SSL_write(p->ssl, buf, (int)len) == (int)len ? 0 : -1;
	return send(p->fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* Reads more bytes within @ms; 0 means the peer closed, -1 an error or
 * timeout. */
static int peer_read_more(struct peer *p, unsigned ms)
{
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
	uint8_t buf[16384];
	int n;

	if (!(p->ssl && SSL_pending(p->ssl)) && poll(&pfd, 1, (int)ms) <= 0)
		return -1;
	n = p->ssl ? SSL_read(p->ssl, buf, sizeof(buf))
		   : (int)recv(p->fd, buf, sizeof(buf), 0);
	if (n <= 0)
		return 0;
	return kd_framer_push(&p->in, buf, (size_t)n) == 0 ? n : -1;
}

static int send_packet(struct peer *p, unsigned hdr, const void *buf,
		       size_t len)
{
	uint8_t prefix[4];

	kd_frame_put_header(prefix, hdr, len);
	if (peer_write(p, prefix, hdr) < 0)
		return -1;
	return len ? peer_write(p, buf, len) : 0;
}

/* Takes the next packet that is not a tick, waiting up to @ms. */
static int next_packet(struct peer *p, unsigned ms, const uint8_t **pkt,
		       uint32_t *len)
{
	for (;;) {
		int r = kd_framer_next(&p->in, pkt, len);

		if (r < 0)
			return -1;
		if (r == 1 && *len > 0)
			return 1;
		if (r == 1)
			continue;
		r = peer_read_more(p, ms);
		if (r <= 0)
			return r;
	}
}

static int handshake(struct peer *p, const char *node, const char *cookie,
		     unsigned hdr)
{
	struct kd_hs hs;
	struct kd_hs_params hp = {
		.role = KD_HS_INITIATOR,
		.this_node = THIS_NODE,
		.creation = CREATION,
		.flags = KD_DFLAGS_MANDATORY | DFLAG_MANDATORY_25_DIGEST |
			 DFLAG_DIST_MONITOR | DFLAG_DIST_MONITOR_NAME,
		.cookie = cookie,
		.peer_node = node,
	};
	int r = 0;

	if (kd_hs_init(&hs, &hp) || kd_hs_start(&hs))
		return -1;
	while (r == 0) {
		const uint8_t *msgs[4], *pkt;
		size_t lens[4];
		uint32_t len;
		unsigned n = kd_hs_take_output(&hs, msgs, lens, 4);

		for (unsigned i = 0; i < n; i++)
			if (send_packet(p, hdr, msgs[i], lens[i]) < 0)
				return -1;
		if (kd_framer_next(&p->in, &pkt, &len) == 1) {
			r = kd_hs_input(&hs, pkt, len);
			continue;
		}
		if (peer_read_more(p, 5000) <= 0) {
			fprintf(stderr, "badpeer: no handshake reply\n");
			return -1;
		}
	}
	if (r < 0)
		fprintf(stderr, "badpeer: %s\n", hs.error);
	kd_hs_wipe(&hs);
	return r == 1 ? 0 : -1;
}

static int mode_good(struct peer *p)
{
	erlang_pid self = { .node = THIS_NODE, .num = 1, .creation = CREATION };
	const uint8_t *pkt;
	struct kd_ctrl c;
	char err[200];
	uint32_t len;
	ei_x_buff x, msg;
	int ok = -1;

	ei_x_new(&x);
	ei_x_new_with_version(&msg);
	kd_ctrl_encode_reg_send(&x, &self, "echo");
	ei_x_encode_tuple_header(&msg, 2);
	ei_x_encode_pid(&msg, &self);
	ei_x_encode_atom(&msg, "hello");
	ei_x_append_buf(&x, msg.buff, msg.index);
	if (send_packet(p, 4, x.buff, (size_t)x.index) == 0 &&
	    next_packet(p, 5000, &pkt, &len) == 1 &&
	    kd_ctrl_decode(pkt, len, &c, err, sizeof(err)) == 0 && c.msg_term &&
	    memmem(c.msg_term, c.msg_term_len, "hello", 5))
		ok = 0;
	ei_x_free(&x);
	ei_x_free(&msg);
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

static SSL *tls_connect(int fd, const char *optfile)
{
	struct kd_tls_config *cfg = kd_tls_config_new();
	char err[512];
	SSL_CTX *ctx;
	SSL *ssl;

	if (kd_tls_config_load_file(cfg, optfile, err, sizeof(err)) ||
	    !(ctx = kd_tls_config_client_ctx(cfg, err, sizeof(err)))) {
		fprintf(stderr, "badpeer: %s\n", err);
		return NULL;
	}
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (kd_tls_client_prepare(ssl, "localhost", err, sizeof(err)) ||
	    SSL_connect(ssl) != 1) {
		fprintf(stderr, "badpeer: TLS handshake failed\n");
		ERR_print_errors_fp(stderr);
		return NULL;
	}
	return ssl;
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
