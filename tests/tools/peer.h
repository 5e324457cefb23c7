/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The parts the misbehaving test peers share: TCP and TLS connect, packet
 * I/O with kdist's framer, and the distribution handshake in either role
 * with kdist's own state machine. Each tool defines PEER_TOOL, THIS_NODE,
 * CREATION, PEER_FLAGS and PEER_RCVBUF (0 for the system default) before
 * including it; the tools are single files, so the functions are static.
 */
#ifndef KD_TEST_PEER_H
#define KD_TEST_PEER_H

#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "control.h"
#include "frame.h"
#include "handshake.h"
#include "tls_config.h"

struct peer {
	int fd;
	SSL *ssl;
	struct kd_framer in;
};

/* Connects; a PEER_RCVBUF receive buffer makes replies the node sends
 * pile up on its side rather than in this process's socket. */
static int tcp_connect(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	int rcvbuf = PEER_RCVBUF;
	int fd = -1;

	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM, 0);
		if (fd < 0)
			continue;
		if (rcvbuf)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
				   sizeof(rcvbuf));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
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

/* Sends {@pid, @atom} from @from to the registered @name (REG_SEND). */
static int send_tuple(struct peer *p, const erlang_pid *from, const char *name,
		      const erlang_pid *pid, const char *atom)
{
	ei_x_buff x, msg;
	int r;

	ei_x_new(&x);
	ei_x_new_with_version(&msg);
	kd_ctrl_encode_reg_send(&x, from, name);
	ei_x_encode_tuple_header(&msg, 2);
	ei_x_encode_pid(&msg, pid);
	ei_x_encode_atom(&msg, atom);
	ei_x_append_buf(&x, msg.buff, msg.index);
	r = send_packet(p, 4, x.buff, (size_t)x.index);
	ei_x_free(&x);
	ei_x_free(&msg);
	return r;
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

/* Points of the distribution handshake where a test peer may act, for
 * example die: before and after it sends a message, and after it has fed
 * a received one to the state machine but before it sends the reply. */
enum peer_hs_event { PEER_HS_SENDING, PEER_HS_SENT, PEER_HS_RECEIVED };

typedef void (*peer_hs_hook)(struct peer *p, enum peer_hs_event ev,
			     const uint8_t *msg, size_t len);

static int send_hs_output(struct peer *p, struct kd_hs *hs, unsigned hdr,
			  peer_hs_hook hook)
{
	const uint8_t *msgs[4];
	size_t lens[4];
	unsigned n = kd_hs_take_output(hs, msgs, lens, 4);

	for (unsigned i = 0; i < n; i++) {
		if (hook)
			hook(p, PEER_HS_SENDING, msgs[i], lens[i]);
		if (send_packet(p, hdr, msgs[i], lens[i]) < 0)
			return -1;
		if (hook)
			hook(p, PEER_HS_SENT, msgs[i], lens[i]);
	}
	return 0;
}

/* Runs the distribution handshake in the role of @hp, calling @hook (may
 * be NULL) at each message. */
static int handshake_run(struct peer *p, const struct kd_hs_params *hp,
			 unsigned hdr, peer_hs_hook hook)
{
	struct kd_hs hs;
	int r = 0;

	if (kd_hs_init(&hs, hp))
		return -1;
	if (hp->role == KD_HS_INITIATOR && kd_hs_start(&hs))
		return -1;
	while (r == 0) {
		const uint8_t *pkt;
		uint32_t len;

		if (send_hs_output(p, &hs, hdr, hook) < 0)
			return -1;
		if (kd_framer_next(&p->in, &pkt, &len) == 1) {
			r = kd_hs_input(&hs, pkt, len);
			if (hook && r >= 0)
				hook(p, PEER_HS_RECEIVED, pkt, len);
			continue;
		}
		if (peer_read_more(p, 5000) <= 0) {
			fprintf(stderr, "%s: no handshake reply\n", PEER_TOOL);
			return -1;
		}
	}
	/* An acceptor's challenge_ack is queued with the last input. */
	if (r == 1 && send_hs_output(p, &hs, hdr, hook) < 0)
		r = -1;
	if (r < 0 && hs.error[0])
		fprintf(stderr, "%s: %s\n", PEER_TOOL, hs.error);
	kd_hs_wipe(&hs);
	return r == 1 ? 0 : -1;
}

/* Not every tool uses the initiator shortcut and tls_connect(). */
static __attribute__((unused)) int handshake(struct peer *p, const char *node,
					     const char *cookie, unsigned hdr)
{
	struct kd_hs_params hp = {
		.role = KD_HS_INITIATOR,
		.this_node = THIS_NODE,
		.creation = CREATION,
		.flags = PEER_FLAGS,
		.cookie = cookie,
		.peer_node = node,
	};

	return handshake_run(p, &hp, hdr, NULL);
}

/* The SSL_CTX of one role from an -ssl_dist_optfile. */
static SSL_CTX *tls_context(const char *optfile, bool server)
{
	struct kd_tls_config *cfg = kd_tls_config_new();
	char err[512];
	SSL_CTX *ctx = NULL;

	if (kd_tls_config_load_file(cfg, optfile, err, sizeof(err)) == 0)
		ctx = server ? kd_tls_config_server_ctx(cfg, err, sizeof(err))
			     : kd_tls_config_client_ctx(cfg, err, sizeof(err));
	if (!ctx)
		fprintf(stderr, "%s: %s\n", PEER_TOOL, err);
	return ctx;
}

static __attribute__((unused)) SSL *tls_connect(int fd, const char *optfile)
{
	SSL_CTX *ctx = tls_context(optfile, false);
	char err[512];
	SSL *ssl;

	if (!ctx)
		return NULL;
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (kd_tls_client_prepare(ssl, "localhost", err, sizeof(err)) ||
	    SSL_connect(ssl) != 1) {
		fprintf(stderr, "%s: TLS handshake failed\n", PEER_TOOL);
		ERR_print_errors_fp(stderr);
		return NULL;
	}
	return ssl;
}

#endif
