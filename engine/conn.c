// SPDX-License-Identifier: Apache-2.0
/*
 * The control thread: the listening socket, the EPMD registration, the TLS
 * and distribution handshakes of every connection that is not yet
 * established, ticks, and the peer table's state changes.
 *
 * A connection's life: TCP connect (a short-lived resolver thread does the
 * EPMD look-up and connect for outgoing ones) -> TLS handshake (OpenSSL on
 * the socket, no read-ahead) -> record path chosen and, for the kernel
 * path, keys pushed -> distribution handshake over that path -> handed to
 * a data thread with any bytes read past the handshake.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "epmd.h"
#include "error.h"
#include "log.h"
#include "node_int.h"
#include "thread.h"

#define HS_MAX_MESSAGE 2048
#define EPMD_TIMEOUT_MS 5000
#define EPMD_RETRY_NS (2ull * 1000000000ull)

/* Per-connection input buffer for the handshake phase. */
struct hs_input {
	uint8_t buf[8192];
	size_t len;
};

struct hs_extra {
	struct hs_input in;
};

/* Set on each node's control thread. */
static __thread bool on_control_thread;

bool kd_on_engine_thread(void)
{
	return on_control_thread || kd_loop_on_data_thread();
}

static struct hs_extra *hs_extra_of(struct kd_hsconn *c)
{
	return (struct hs_extra *)(c + 1);
}

void kd_post_cmd(struct kdist_node *node, struct kd_cmd *cmd)
{
	uint64_t one = 1;

	cmd->next = NULL;
	pthread_mutex_lock(&node->cmd_lock);
	if (node->cmd_tail)
		node->cmd_tail->next = cmd;
	else
		node->cmd_head = cmd;
	node->cmd_tail = cmd;
	pthread_mutex_unlock(&node->cmd_lock);
	if (node->wake_fd >= 0 && write(node->wake_fd, &one, sizeof(one)) < 0)
		kd_debug("control: eventfd write failed: %s", strerror(errno));
}

static void sockaddr_text(const struct sockaddr *sa, char *buf, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, cap, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, cap, "[%s]:%u", host, port);
	} else {
		snprintf(buf, cap, "?");
	}
}

static int set_nonblock_nodelay(int fd)
{
	int one = 1;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

/* ---- listening and EPMD ---- */

/* Binds a listening socket to @port, or to any free port when @port is 0.
 * Returns the socket or -errno. */
static int listen_on_port(int family, uint16_t port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int one = 1;
	int fd, e;

	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (void *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_any;
		a->sin6_port = htons(port);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (void *)&ss;

		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_ANY);
		a->sin_port = htons(port);
		sl = sizeof(*a);
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 128) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/*
 * Listens on the first free port from listen_port to listen_port_max, as
 * inet_tcp_dist and inet_tls_dist try each port of the
 * inet_dist_listen_min..max range in turn and skip the ports in use.
 */
static int control_listen(struct kdist_node *node)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int family = node->ipv6 ? AF_INET6 : AF_INET;
	unsigned first = node->cfg.listen_port;
	unsigned last = node->cfg.listen_port_max;
	unsigned port;
	int fd;

	if (first == 0 || last == 0)
		last = first;
	if (first > last)
		return kd_fail(EINVAL, "listen: inet_dist_listen_max %u is "
			       "below inet_dist_listen_min %u; give a range "
			       "with min <= max", last, first);
	for (port = first;; port++) {
		fd = listen_on_port(family, (uint16_t)port);
		if (fd != -EADDRINUSE || port == last)
			break;
		kd_debug("listen: port %u is in use, trying the next", port);
	}
	if (fd == -EADDRINUSE && first != last)
		return kd_fail(EADDRINUSE, "listen: every port from %u to %u "
			       "is in use (-kernel inet_dist_listen_min %u, "
			       "inet_dist_listen_max %u); stop what uses them "
			       "or give a wider range", first, last, first,
			       last);
	if (fd < 0)
		return kd_fail(-fd, "listen: port %u: %s%s", port,
			       strerror(-fd),
			       fd == -EADDRINUSE ? " (pick another port)" : "");
	sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	node->port = family == AF_INET6
			     ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
			     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	node->listen_fd = fd;
	return 0;
}

static const char *epmd_host(const struct kdist_node *node)
{
	if (node->cfg.epmd_host)
		return node->cfg.epmd_host;
	return node->ipv6 ? "::1" : "127.0.0.1";
}

static int control_register(struct kdist_node *node)
{
	struct kd_epmd_node reg = {
		.port = node->port,
		.node_type = node->cfg.hidden ? 72 : 77,
		.protocol = 0,
		.high_version = 6,
		.low_version = 6,
	};
	uint32_t creation = 0;
	int err;

	snprintf(reg.name, sizeof(reg.name), "%s", node->alive);
	err = kd_epmd_register(epmd_host(node), node->cfg.epmd_port, &reg,
			       EPMD_TIMEOUT_MS, &node->epmd_fd, &creation);
	if (err)
		return err;
	if (node->creation && creation != node->creation)
		kd_warn("epmd: registered again with creation %u (was %u); "
			"pids handed out before keep the old creation",
			creation, node->creation);
	if (!node->creation)
		node->creation = creation;
	return 0;
}

/* ---- handshake connections ---- */

static struct kd_hsconn *hsconn_new(struct kdist_node *node, int fd,
				    bool initiator)
{
	struct kd_hsconn *c = calloc(1, sizeof(*c) + sizeof(struct hs_extra));

	if (!c)
		return NULL;
	c->node = node;
	c->fd = fd;
	c->initiator = initiator;
	c->path = node->tls ? KD_PATH_USER_TLS : KD_PATH_PLAIN;
	c->tls_last_in = c->tls_last_out = -1;
	c->deadline_ns = kd_now_ns() +
			 (uint64_t)node->cfg.handshake_timeout_ms * 1000000ull;
	c->next = node->hsconns;
	node->hsconns = c;
	return c;
}

static void hsconn_free(struct kd_hsconn *c)
{
	kd_hs_wipe(&c->hs);
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->ktls)
		kd_ktls_state_free(c->ktls);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

/* Queues a callback for control_notify(); node->lock held. */
static void notice_queue(struct kdist_node *node, enum kd_notice_type type,
			 const char *peer, const char *reason)
{
	struct kd_notice *n = calloc(1, sizeof(*n));

	if (!n) {
		kd_err("conn %s: out of memory: the %s callback is not called",
		       peer, type == KD_NOTICE_WRITABLE ? "writable" : "nodedown");
		return;
	}
	n->type = type;
	snprintf(n->peer, sizeof(n->peer), "%s", peer);
	snprintf(n->reason, sizeof(n->reason), "%s", reason ? reason : "");
	if (node->notices_tail)
		node->notices_tail->next = n;
	else
		node->notices = n;
	node->notices_tail = n;
}

/* Makes the callbacks that notice_queue() recorded, without node->lock.
 * Writable callbacks are skipped once kdist_node_stop() has begun, since
 * sends are refused from then on. */
static void control_notify(struct kdist_node *node)
{
	struct kd_notice *n;
	kdist_nodedown_fn down;
	kdist_writable_fn writable;
	void *down_user, *writable_user;

	pthread_mutex_lock(&node->lock);
	n = node->notices;
	node->notices = node->notices_tail = NULL;
	down = node->down_fn;
	down_user = node->monitor_user;
	writable = node->writable_fn;
	writable_user = node->writable_user;
	pthread_mutex_unlock(&node->lock);
	while (n) {
		struct kd_notice *next = n->next;

		if (n->type == KD_NOTICE_CONNECT_FAILED && down)
			down(down_user, n->peer, n->reason, NULL);
		else if (n->type == KD_NOTICE_WRITABLE && writable &&
			 !atomic_load(&node->draining))
			writable(writable_user, n->peer);
		free(n);
		n = next;
	}
}

/* Marks @peer's attempt as over with @err, dropping what was queued for
 * it, and wakes kdist_connect() callers. node->lock held. */
static void peer_attempt_failed(struct kdist_node *node, struct kd_peer *p,
				int err, const char *reason)
{
	size_t dropped = 0, bytes = p->q_bytes;

	while (p->q_head) {
		struct kd_pending_msg *m = p->q_head;

		p->q_head = m->next;
		free(m);
		dropped++;
	}
	p->q_tail = NULL;
	p->q_bytes = 0;
	p->state = KD_PEER_IDLE;
	p->outgoing = NULL;
	p->incoming = NULL;
	p->nok_wait_ns = 0;
	p->last_error = err < 0 ? -err : err;
	snprintf(p->last_reason, sizeof(p->last_reason), "%s", reason);
	if (dropped)
		kd_err("conn %s: dropped %zu queued messages (%zu bytes) "
		       "because the connection failed: %s",
		       p->name, dropped, bytes, reason);
	if (p->report_failure) {
		p->report_failure = false;
		notice_queue(node, KD_NOTICE_CONNECT_FAILED, p->name, reason);
	}
	/* A sender turned away by the dropped queue may send again, which
	 * starts a new attempt. */
	if (p->q_blocked) {
		p->q_blocked = false;
		notice_queue(node, KD_NOTICE_WRITABLE, p->name, NULL);
	}
	pthread_cond_broadcast(&node->cond);
}

/* Ends @p's attempt when nothing is left that could still connect it;
 * node->lock held. */
static void peer_attempt_check(struct kdist_node *node, struct kd_peer *p,
			       int err, const char *reason)
{
	if (p->state != KD_PEER_CONNECTING || p->resolving || p->outgoing ||
	    p->incoming || p->nok_wait_ns)
		return;
	peer_attempt_failed(node, p, err, reason);
}

static void hsconn_fail(struct kd_hsconn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void hsconn_fail(struct kd_hsconn *c, int err, const char *fmt, ...)
{
	struct kdist_node *node = c->node;
	char reason[KD_REASON_MAX];
	va_list ap;

	if (c->failed)
		return;
	c->failed = true;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (c->initiator && strcmp(c->hs.status, "nok") == 0)
		c->lost_race = true;
	kd_log(c->lost_race ? KD_LOG_INFO : KD_LOG_ERROR, "conn %s%s%s: %s",
	       c->peer[0] ? c->peer : c->addr, c->peer[0] ? " " : "",
	       c->peer[0] ? c->addr : "", reason);

	if (!c->peer[0])
		return;
	pthread_mutex_lock(&node->lock);
	struct kd_peer *p = kd_peer_get(node, c->peer, false);

	if (p && p->outgoing == c) {
		p->outgoing = NULL;
		/* nok: the peer is connecting to us at the same time and keeps
		 * its own attempt, which our acceptor will take. */
		if (strcmp(c->hs.status, "nok") == 0 && !p->incoming)
			p->nok_wait_ns =
				kd_now_ns() +
				(uint64_t)node->cfg.handshake_timeout_ms *
					1000000ull;
	}
	if (p && p->incoming == c)
		p->incoming = NULL;
	if (p)
		peer_attempt_check(node, p, err, reason);
	pthread_mutex_unlock(&node->lock);
}

/* Reason for a failed TLS call: OpenSSL's error queue, and the
 * certificate verdict when verification failed. */
/* OpenSSL reasons for a handshake that found no common TLS version. */
static bool tls_version_mismatch(int reason)
{
	return reason == SSL_R_UNSUPPORTED_PROTOCOL ||
	       reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION ||
	       reason == SSL_R_NO_PROTOCOLS_AVAILABLE ||
	       reason == SSL_R_VERSION_TOO_LOW ||
	       reason == SSL_R_VERSION_TOO_HIGH;
}

/* The OTP name of a protocol version bound; 0 means no bound. */
static const char *tls_version_name(long version)
{
	switch (version) {
	case TLS1_2_VERSION:
		return "'tlsv1.2'";
	case TLS1_3_VERSION:
		return "'tlsv1.3'";
	case 0:
		return "any version";
	default:
		return "an older version";
	}
}

static void tls_error_text(SSL *ssl, int ret, char *buf, size_t cap)
{
	int sys_errno = errno; /* the cause of an SSL_ERROR_SYSCALL */
	unsigned long e = ERR_get_error();
	long vr = SSL_get_verify_result(ssl);
	char ebuf[200] = "";

	if (e)
		ERR_error_string_n(e, ebuf, sizeof(ebuf));
	ERR_clear_error();
	if (vr != X509_V_OK) {
		kd_tls_verify_error_text(ssl, vr, buf, cap);
		snprintf(buf + strlen(buf), cap - strlen(buf), " (%s)", ebuf);
	} else if (e)
		snprintf(buf, cap, "%s", ebuf);
	else if (SSL_get_error(ssl, ret) == SSL_ERROR_SYSCALL)
		snprintf(buf, cap, "socket error: %s",
			 sys_errno ? strerror(sys_errno)
				   : "connection closed by the peer");
	else
		snprintf(buf, cap, "TLS error %d", SSL_get_error(ssl, ret));
	if (strstr(ebuf, "wrong version number") ||
	    strstr(ebuf, "http request") || strstr(ebuf, "packet length"))
		snprintf(buf + strlen(buf), cap - strlen(buf),
			 "; is the peer using plain TCP? every node must use "
			 "-proto_dist inet_tls");
	else if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		 tls_version_mismatch(ERR_GET_REASON(e)))
		snprintf(buf + strlen(buf), cap - strlen(buf),
			 "; the nodes share no TLS version: this node allows "
			 "%s to %s, so give both nodes a common version in "
			 "{versions, [...]} of their options files",
			 tls_version_name(SSL_get_min_proto_version(ssl)),
			 tls_version_name(SSL_get_max_proto_version(ssl)));
}

/* Records the last handshake message each way (RFC 8446 and RFC 5246
 * HandshakeType). */
static void hsconn_tls_msg(int write_p, int version, int content_type,
			   const void *buf, size_t len, SSL *ssl, void *arg)
{
	struct kd_hsconn *c = arg;
	int type;

	if (content_type != SSL3_RT_HANDSHAKE || len == 0)
		return;
	type = ((const uint8_t *)buf)[0];
	if (write_p)
		c->tls_last_out = type;
	else
		c->tls_last_in = type;
}

static const char *tls_msg_name(int type)
{
	switch (type) {
	case -1:
		return "none";
	case SSL3_MT_CLIENT_HELLO:
		return "ClientHello";
	case SSL3_MT_SERVER_HELLO:
		return "ServerHello";
	case SSL3_MT_NEWSESSION_TICKET:
		return "NewSessionTicket";
	case SSL3_MT_ENCRYPTED_EXTENSIONS:
		return "EncryptedExtensions";
	case SSL3_MT_CERTIFICATE:
		return "Certificate";
	case SSL3_MT_SERVER_KEY_EXCHANGE:
		return "ServerKeyExchange";
	case SSL3_MT_CERTIFICATE_REQUEST:
		return "CertificateRequest";
	case SSL3_MT_SERVER_DONE:
		return "ServerHelloDone";
	case SSL3_MT_CERTIFICATE_VERIFY:
		return "CertificateVerify";
	case SSL3_MT_CLIENT_KEY_EXCHANGE:
		return "ClientKeyExchange";
	case SSL3_MT_FINISHED:
		return "Finished";
	case SSL3_MT_KEY_UPDATE:
		return "KeyUpdate";
	default:
		return "another message";
	}
}

static int hsconn_start_tls(struct kd_hsconn *c)
{
	struct kdist_node *node = c->node;
	char err[256];

	c->ssl = SSL_new(c->initiator ? node->client_ctx : node->server_ctx);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->fd))
		return -ENOMEM;
	SSL_set_mode(c->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_msg_callback(c->ssl, hsconn_tls_msg);
	SSL_set_msg_callback_arg(c->ssl, c);
	if (c->initiator) {
		const char *host = strchr(c->peer, '@') + 1;

		if (kd_tls_client_prepare(c->ssl, host, err, sizeof(err))) {
			hsconn_fail(c, -EINVAL, "%s", err);
			return -EINVAL;
		}
		SSL_set_connect_state(c->ssl);
	} else {
		SSL_set_accept_state(c->ssl);
	}
	c->phase = KD_HC_TLS;
	return 0;
}

static void hsconn_start_dist(struct kd_hsconn *c);

/* Chooses the record path and pushes the keys when it is the kernel. */
static int hsconn_choose_path(struct kd_hsconn *c)
{
	struct kdist_node *node = c->node;
	char why[160];
	int err;

	if (!kd_ktls_choose(&node->ktls_caps, node->cfg.ktls, c->ssl,
			    c->path_reason, sizeof(c->path_reason))) {
		if (node->cfg.ktls == KDIST_KTLS_ON) {
			hsconn_fail(c, -EOPNOTSUPP,
				    "kernel TLS required (ktls=on) but not "
				    "possible: %s; use -ktls auto",
				    c->path_reason);
			return -EOPNOTSUPP;
		}
		c->path = KD_PATH_USER_TLS;
		return 0;
	}
	err = kd_ktls_install(c->fd, c->ssl, &c->ktls, why, sizeof(why));
	if (err == 0) {
		c->path = KD_PATH_KERNEL_TLS;
		return 0;
	}
	if (node->cfg.ktls == KDIST_KTLS_ON) {
		hsconn_fail(c, err, "kernel TLS required (ktls=on) but key "
			    "installation failed: %s", why);
		return err;
	}
	/* The ULP attaches before the keys; once attached the socket cannot
	 * go back to user space, so the connection fails. */
	int ulp_attached = strstr(why, "ULP attached") != NULL;

	if (ulp_attached) {
		hsconn_fail(c, err, "kernel TLS set-up failed midway: %s", why);
		return err;
	}
	snprintf(c->path_reason, sizeof(c->path_reason),
		 "kernel TLS failed: %.140s", why);
	c->path = KD_PATH_USER_TLS;
	return 0;
}

static void hsconn_step_tls(struct kd_hsconn *c)
{
	char reason[480];
	int ret = SSL_do_handshake(c->ssl);

	if (ret == 1) {
		if (hsconn_choose_path(c) == 0)
			hsconn_start_dist(c);
		return;
	}
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return;
	default:
		/* The last messages and the byte counts name the step that
		 * failed, for example a peer that died mid-ClientHello. */
		tls_error_text(c->ssl, ret, reason, sizeof(reason));
		hsconn_fail(c, -EPROTO,
			    "TLS handshake failed: %s (last message received: "
			    "%s, sent: %s; %lu bytes in, %lu out)",
			    reason, tls_msg_name(c->tls_last_in),
			    tls_msg_name(c->tls_last_out),
			    BIO_number_read(SSL_get_rbio(c->ssl)),
			    BIO_number_written(SSL_get_wbio(c->ssl)));
	}
}

/* ---- distribution handshake I/O ---- */

static unsigned hs_header_size(const struct kd_hsconn *c)
{
	return c->node->tls ? 4 : 2;
}

/* The message the distribution handshake waits for, for log lines. */
static const char *hsconn_expected(const struct kd_hsconn *c)
{
	const char *name = kd_hs_expected(&c->hs);

	return name ? name : "no message";
}

/* Writes what is buffered; returns 0 (maybe partially written), or a
 * negative errno after failing the connection. */
static int hsconn_flush(struct kd_hsconn *c)
{
	char why[160];

	while (c->out_off < c->out_len) {
		size_t left = c->out_len - c->out_off;
		ssize_t n;

		if (c->path == KD_PATH_USER_TLS) {
			int r = SSL_write(c->ssl, c->out + c->out_off,
					  (int)left);

			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_WRITE ||
				    e == SSL_ERROR_WANT_READ)
					return 0;
				tls_error_text(c->ssl, r, why, sizeof(why));
				hsconn_fail(c, -EPIPE,
					    "distribution handshake: TLS write "
					    "failed while this node waited for "
					    "%s: %s",
					    hsconn_expected(c), why);
				return -EPIPE;
			}
			n = r;
		} else {
			n = send(c->fd, c->out + c->out_off, left,
				 MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (n < 0) {
				int e = errno;

				hsconn_fail(c, -e,
					    "distribution handshake: send "
					    "failed while this node waited for "
					    "%s: %s",
					    hsconn_expected(c), strerror(e));
				return -e;
			}
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

static int hsconn_queue_output(struct kd_hsconn *c)
{
	const uint8_t *msgs[4];
	size_t lens[4];
	unsigned n = kd_hs_take_output(&c->hs, msgs, lens, 4);
	unsigned hdr = hs_header_size(c);

	for (unsigned i = 0; i < n; i++) {
		if (c->out_len + hdr + lens[i] > sizeof(c->out))
			return -ENOBUFS;
		kd_frame_put_header(c->out + c->out_len, hdr, lens[i]);
		memcpy(c->out + c->out_len + hdr, msgs[i], lens[i]);
		c->out_len += hdr + lens[i];
	}
	return hsconn_flush(c);
}

/* ---- peer decisions during the handshake ---- */

/*
 * The allow list, as net_kernel:allow/1 and inet_tls_dist's verify_client:
 * the peer's name must be listed, and a TLS client certificate, when the
 * peer sent one, must name the host part of that name.
 */
static bool hsconn_allowed(struct kd_hsconn *c, const char *peer)
{
	struct kdist_node *node = c->node;
	const char *host = strchr(peer, '@') + 1;
	X509 *cert;
	bool listed = node->n_allow == 0;

	for (size_t i = 0; i < node->n_allow && !listed; i++)
		listed = strcmp(node->allow[i], peer) == 0;
	if (!listed) {
		kd_warn("conn %s %s: rejected: the node is not in the allow "
			"list (-allow)",
			peer, c->addr);
		return false;
	}
	if (!node->n_allow || !c->ssl)
		return true;
	cert = SSL_get1_peer_certificate(c->ssl);
	if (!cert)
		return true;
	bool named = X509_check_host(cert, host, 0, 0, NULL) == 1 ||
		     X509_check_ip_asc(cert, host, 0) == 1;

	X509_free(cert);
	if (!named)
		kd_warn("conn %s %s: rejected: its certificate does not name "
			"host '%s'; issue the certificate for that host",
			peer, c->addr, host);
	return named;
}

static enum kd_hs_status hsconn_check_peer(void *user, const char *peer,
					   uint64_t peer_flags)
{
	struct kd_hsconn *c = user;
	struct kdist_node *node = c->node;
	enum kd_hs_status st = KD_HS_STATUS_OK;
	struct kd_peer *p;

	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	if (strcmp(peer, node->name) == 0 || !hsconn_allowed(c, peer))
		return KD_HS_STATUS_NOT_ALLOWED;
	pthread_mutex_lock(&node->lock);
	p = kd_peer_get(node, peer, true);
	if (!p) {
		st = KD_HS_STATUS_NOK;
	} else if (p->state == KD_PEER_UP) {
		st = KD_HS_STATUS_ALIVE;
	} else if (p->state == KD_PEER_CONNECTING && p->incoming) {
		st = KD_HS_STATUS_NOK; /* the peer is already connecting */
	} else if (p->state == KD_PEER_CONNECTING) {
		st = kd_hs_simultaneous_status(node->name, peer);
		c->lost_race = st == KD_HS_STATUS_NOK;
		if (st == KD_HS_STATUS_OK_SIMULTANEOUS) {
			/* The peer wins: drop our own attempt, keep the
			 * queue for this connection. */
			if (p->outgoing) {
				p->outgoing->failed = true;
				p->outgoing = NULL;
			}
			p->incoming = c;
			p->nok_wait_ns = 0;
			kd_info("conn %s: simultaneous connect, accepting the "
				"peer's connection",
				peer);
		}
	} else {
		p->state = KD_PEER_CONNECTING;
		p->incoming = c;
	}
	pthread_mutex_unlock(&node->lock);
	return st;
}

static void hsconn_alive_answer(void *user, const char *peer, bool keep_new)
{
	struct kd_hsconn *c = user;
	struct kdist_node *node = c->node;
	struct kd_session *old = NULL;
	struct kd_peer *p;

	if (!keep_new)
		return;
	pthread_mutex_lock(&node->lock);
	p = kd_peer_get(node, peer, false);
	if (p && p->state == KD_PEER_UP && p->session) {
		old = p->session;
		kd_link_hold(old->link);
	}
	pthread_mutex_unlock(&node->lock);
	if (old) {
		kd_info("conn %s: peer reconnected, closing the old connection",
			peer);
		kd_link_close(old->link, -ECONNRESET,
			      "replaced by a new connection from the peer");
		kd_link_release(old->link);
	}
}

static void hsconn_start_dist(struct kd_hsconn *c)
{
	struct kdist_node *node = c->node;
	struct kd_hs_params p = {
		.role = c->initiator ? KD_HS_INITIATOR : KD_HS_ACCEPTOR,
		.this_node = node->name,
		.creation = node->creation,
		.flags = node->flags,
		.cookie = node->cookie,
		.peer_node = c->initiator ? c->peer : NULL,
		.check_peer = hsconn_check_peer,
		.alive_answer = hsconn_alive_answer,
		.user = c,
	};

	/* The callback names TLS handshake steps only, and its argument
	 * does not outlive this connection's hand-over to a data thread. */
	if (c->ssl)
		SSL_set_msg_callback(c->ssl, NULL);
	c->phase = KD_HC_DIST;
	if (kd_hs_init(&c->hs, &p) != 0) {
		hsconn_fail(c, -EINVAL, "handshake set-up failed: %s",
			    c->hs.error);
		return;
	}
	c->hs_started = true;
	if (c->initiator) {
		kd_hs_start(&c->hs);
		hsconn_queue_output(c);
	}
}

static void session_fill_tls(struct kd_session *s, struct kd_hsconn *c)
{
	if (!c->ssl) {
		snprintf(s->record_path, sizeof(s->record_path), "plain");
		snprintf(s->path_reason, sizeof(s->path_reason),
			 "inet_tcp: no TLS");
		return;
	}
	snprintf(s->tls_version, sizeof(s->tls_version), "%s",
		 SSL_get_version(c->ssl));
	snprintf(s->tls_cipher, sizeof(s->tls_cipher), "%s",
		 SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl)));
	snprintf(s->record_path, sizeof(s->record_path), "%s",
		 c->path == KD_PATH_KERNEL_TLS ? "kernel" : "user-space");
	snprintf(s->path_reason, sizeof(s->path_reason), "%s",
		 c->path_reason);
}

/* Flushes what waited for the connection; node->lock held. */
static void peer_flush_queue(struct kd_peer *p, struct kd_session *s)
{
	size_t failed = 0, failed_bytes = 0;
	int last_err = 0;

	while (p->q_head) {
		struct kd_pending_msg *m = p->q_head;
		int err = kd_session_send_raw(
			s, m->sender, m->data, m->ctrl_len,
			m->msg_len ? m->data + m->ctrl_len : NULL, m->msg_len,
			KD_SEND_FORCE);

		if (err) {
			failed++;
			failed_bytes += m->ctrl_len + m->msg_len;
			last_err = err;
		}
		p->q_head = m->next;
		free(m);
	}
	/* One line for the whole queue: a link that closes as it comes up
	 * fails every message the same way. */
	if (failed > 0)
		kd_err("conn %s: %zu queued messages (%zu bytes) not sent: %s",
		       p->name, failed, failed_bytes, strerror(-last_err));
	p->q_tail = NULL;
	p->q_bytes = 0;
}

static void hsconn_finish(struct kd_hsconn *c)
{
	struct kdist_node *node = c->node;
	struct hs_extra *x = hs_extra_of(c);
	struct kd_link_params lp = { 0 };
	struct kd_session *s;
	struct kd_peer *p;
	kdist_nodeup_fn up;
	kdist_writable_fn writable = NULL;
	void *up_user, *writable_user = NULL;
	int err;

	snprintf(c->peer, sizeof(c->peer), "%s", c->hs.peer_node);
	if (atomic_load(&node->draining)) {
		hsconn_fail(c, -ESHUTDOWN,
			    "this node is stopping, so the connection is not "
			    "set up");
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		hsconn_fail(c, -ENOMEM, "out of memory");
		return;
	}
	atomic_init(&s->refs, 1);
	s->node = node;
	snprintf(s->peer_name, sizeof(s->peer_name), "%s", c->peer);
	s->flags = kd_hs_negotiated_flags(&c->hs);
	s->peer_creation = c->hs.peer_creation;
	s->initiator = c->initiator;
	s->frags = kd_frag_table_new(node->cfg.max_message);
	pthread_mutex_init(&s->bulk_lock, NULL);
	session_fill_tls(s, c);
	kd_hs_wipe(&c->hs);

	lp.fd = c->fd;
	lp.path = c->path;
	lp.ssl = c->ssl;
	lp.ktls = c->ktls;
	lp.pending = x->in.buf;
	lp.pending_len = x->in.len;
	lp.max_packet = node->cfg.max_packet;
	lp.send_queue_limit = node->cfg.send_queue_bytes;
	lp.peer = s->peer_name;
	lp.cb = kd_session_callbacks;
	lp.user = s;

	pthread_mutex_lock(&node->lock);
	p = kd_peer_get(node, c->peer, true);
	s->peer = p;
	s->id = ++node->next_session_id;
	err = kd_loop_attach(node->loop, &lp, &s->link);
	if (err) {
		pthread_mutex_unlock(&node->lock);
		kd_frag_table_free(s->frags);
		free(s);
		hsconn_fail(c, err, "cannot hand the connection to a data "
			    "thread: %s", strerror(-err));
		return;
	}
	/* The loop owns the socket and TLS state now. */
	c->fd = -1;
	c->ssl = NULL;
	c->ktls = NULL;
	p->session = s;
	p->state = KD_PEER_UP;
	p->outgoing = NULL;
	p->incoming = NULL;
	p->nok_wait_ns = 0;
	p->last_error = 0;
	p->report_failure = false; /* the nodeup below reports the outcome */
	peer_flush_queue(p, s);
	if (p->q_blocked) {
		p->q_blocked = false;
		if (!atomic_load(&node->draining)) {
			writable = node->writable_fn;
			writable_user = node->writable_user;
		}
	}
	pthread_cond_broadcast(&node->cond);
	up = node->up_fn;
	up_user = node->monitor_user;
	pthread_mutex_unlock(&node->lock);

	kd_info("conn %s: up as %s, %s%s%s, record path %s (%s), flags "
		"0x%llx",
		s->peer_name, s->initiator ? "initiator" : "acceptor",
		s->tls_version[0] ? s->tls_version : "inet_tcp",
		s->tls_cipher[0] ? " " : "", s->tls_cipher, s->record_path,
		s->path_reason, (unsigned long long)s->flags);
	c->failed = true; /* done: the list sweep frees it */
	if (up)
		up(up_user, s->peer_name);
	if (writable)
		writable(writable_user, s->peer_name);
}

/* The peer closed during the distribution handshake. An acceptor that
 * finds the wrong digest closes without a word, so right after our
 * challenge reply the likely cause is a cookie mismatch. A peer that died
 * at that moment looks the same: OTP 25 sends no TLS close_notify either. */
static void hsconn_fail_closed(struct kd_hsconn *c, const char *detail)
{
	size_t partial = hs_extra_of(c)->in.len;
	char unfinished[64] = "";

	if (c->initiator && c->hs.state == KD_HS_RECV_CHALLENGE_ACK) {
		hsconn_fail(c, -EACCES,
			    "the peer closed the connection after our "
			    "challenge reply: the cookies most likely differ "
			    "(set the same -setcookie on both nodes), or the "
			    "peer stopped");
		return;
	}
	if (partial)
		snprintf(unfinished, sizeof(unfinished),
			 ", %zu bytes into it", partial);
	hsconn_fail(c, -ECONNRESET,
		    "distribution handshake: peer closed the connection "
		    "while this node waited for %s%s%s%s%s",
		    hsconn_expected(c), unfinished, detail ? " (" : "",
		    detail ? detail : "", detail ? ")" : "");
}

/* Reads what the path has and feeds whole handshake messages to the
 * state machine. */
static void hsconn_step_dist(struct kd_hsconn *c)
{
	struct hs_input *in = &hs_extra_of(c)->in;
	unsigned hdr = hs_header_size(c);
	char why[160];
	ssize_t n;

	if (hsconn_flush(c) < 0 || c->out_len)
		return;
	for (;;) {
		size_t room = sizeof(in->buf) - in->len;

		if (room == 0) {
			hsconn_fail(c, -EMSGSIZE, "handshake message too long");
			return;
		}
		if (c->path == KD_PATH_USER_TLS) {
			int r = SSL_read(c->ssl, in->buf + in->len, (int)room);

			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_READ ||
				    e == SSL_ERROR_WANT_WRITE)
					break;
				tls_error_text(c->ssl, r, why, sizeof(why));
				hsconn_fail_closed(c, why);
				return;
			}
			n = r;
		} else if (c->path == KD_PATH_KERNEL_TLS) {
			n = kd_ktls_recv(c->fd, c->ktls, in->buf + in->len,
					 room, why, sizeof(why));
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			if (n < 0) {
				int e = errno;

				hsconn_fail(c, -e, "kernel TLS read failed "
					    "during the handshake: %s", why);
				return;
			}
		} else {
			n = recv(c->fd, in->buf + in->len, room, 0);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			if (n < 0) {
				int e = errno;

				hsconn_fail(c, -e, "recv failed during the "
					    "handshake: %s", strerror(e));
				return;
			}
		}
		if (n == 0) {
			hsconn_fail_closed(c, NULL);
			return;
		}
		in->len += (size_t)n;

		/* Whole messages only; bytes after the last one stay. */
		for (;;) {
			uint32_t plen;
			int r = kd_frame_peek(in->buf, in->len, hdr,
					      HS_MAX_MESSAGE, &plen);

			if (r < 0) {
				struct kdist_node *node = c->node;
				char text[KD_REASON_MAX];

				kd_hs_oversize_text(
					in->buf, in->len, hdr, plen,
					HS_MAX_MESSAGE,
					node->tls ? NULL
					: node->ipv6 ? "inet6_tls"
						     : "inet_tls",
					text, sizeof(text));
				hsconn_fail(c, -EMSGSIZE, "%s", text);
				return;
			}
			if (r == 0)
				break;
			r = kd_hs_input(&c->hs, in->buf + hdr, plen);
			memmove(in->buf, in->buf + hdr + plen,
				in->len - hdr - plen);
			in->len -= hdr + plen;
			if (r < 0) {
				hsconn_queue_output(c);
				hsconn_fail(c, r, "%s", c->hs.error);
				return;
			}
			if (hsconn_queue_output(c) < 0)
				return;
			if (r == 1) {
				hsconn_finish(c);
				return;
			}
		}
	}
}

static void hsconn_step(struct kd_hsconn *c)
{
	if (c->failed)
		return;
	if (c->phase == KD_HC_TLS)
		hsconn_step_tls(c);
	else if (c->phase == KD_HC_DIST)
		hsconn_step_dist(c);
}

static void control_accept(struct kdist_node *node)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct kd_hsconn *c;
		int fd;

		fd = accept4(node->listen_fd, (struct sockaddr *)&ss, &sl,
			     SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				kd_err("listen: accept failed: %s",
				       strerror(errno));
			return;
		}
		if (atomic_load(&node->draining)) {
			if (node->closed_at_stop++ == 0)
				kd_info("listen: the node is stopping: closing "
					"new incoming connections");
			close(fd);
			continue;
		}
		set_nonblock_nodelay(fd);
		c = hsconn_new(node, fd, false);
		if (!c) {
			close(fd);
			continue;
		}
		sockaddr_text((struct sockaddr *)&ss, c->addr, sizeof(c->addr));
		kd_debug("conn %s: accepted", c->addr);
		if (node->tls) {
			if (hsconn_start_tls(c) < 0)
				continue;
			hsconn_step(c);
		} else {
			hsconn_start_dist(c);
		}
	}
}

/* ---- outgoing connections ---- */

struct resolver {
	struct kdist_node *node;
	char peer[KDIST_MAX_NODE_NAME + 1];
};

/* Connects to @ai within @timeout_ms; -ECANCELED within 100 ms of
 * *@cancel becoming true. */
static int connect_timeout(const struct addrinfo *ai, unsigned timeout_ms,
			   const atomic_bool *cancel, int *out)
{
	uint64_t deadline = kd_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct pollfd pfd;
	socklen_t sl = sizeof(int);
	int fd, e = 0, ready;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    0);
	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 &&
	    errno != EINPROGRESS) {
		e = errno;
		close(fd);
		return -e;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	do {
		uint64_t now = kd_now_ns();

		if (now >= deadline) {
			close(fd);
			return -ETIMEDOUT;
		}
		if (atomic_load(cancel)) {
			close(fd);
			return -ECANCELED;
		}
		ready = poll(&pfd, 1,
			     (deadline - now) / 1000000ull > 100
				     ? 100
				     : (int)((deadline - now) / 1000000ull) + 1);
	} while (ready == 0 || (ready < 0 && errno == EINTR));
	if (ready < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl);
	if (e) {
		close(fd);
		return -e;
	}
	*out = fd;
	return 0;
}

static void *resolver_main(void *arg)
{
	struct resolver *r = arg;
	struct kdist_node *node = r->node;
	struct kd_cmd *cmd = calloc(1, sizeof(*cmd));
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *ai;
	struct kd_epmd_node info;
	char alive[KDIST_MAX_NODE_NAME + 1], port[8];
	const char *host = strchr(r->peer, '@') + 1;
	int err, fd = -1;

	snprintf(alive, sizeof(alive), "%.*s", (int)(host - 1 - r->peer),
		 r->peer);
	cmd->type = KD_CMD_CONNECTED;
	cmd->fd = -1;
	cmd->resolver = pthread_self();
	snprintf(cmd->peer, sizeof(cmd->peer), "%s", r->peer);

	err = kd_epmd_port_please_cancel(host, node->cfg.epmd_port, alive,
					 node->cfg.handshake_timeout_ms,
					 &node->draining, &info);
	if (err) {
		cmd->err = err;
		snprintf(cmd->reason, sizeof(cmd->reason), "%s",
			 kd_last_error());
		goto out;
	}
	if (info.high_version < 6) {
		cmd->err = -EPROTONOSUPPORT;
		snprintf(cmd->reason, sizeof(cmd->reason),
			 "peer speaks distribution version %u; kdist needs 6 "
			 "(OTP 23 or later)",
			 info.high_version);
		goto out;
	}
	hints.ai_family = node->ipv6 ? AF_INET6 : AF_INET;
	snprintf(port, sizeof(port), "%u", info.port);
	err = getaddrinfo(host, port, &hints, &res);
	if (err) {
		cmd->err = -EHOSTUNREACH;
		snprintf(cmd->reason, sizeof(cmd->reason),
			 "cannot resolve host '%s' for %s: %s", host,
			 node->ipv6 ? "IPv6" : "IPv4", gai_strerror(err));
		goto out;
	}
	err = -ECONNREFUSED;
	for (ai = res; ai && fd < 0; ai = ai->ai_next)
		err = connect_timeout(ai, node->cfg.handshake_timeout_ms,
				      &node->draining, &fd);
	freeaddrinfo(res);
	if (fd < 0) {
		cmd->err = err;
		snprintf(cmd->reason, sizeof(cmd->reason),
			 "connect to %s port %u failed: %s", host, info.port,
			 strerror(-err));
		goto out;
	}
	set_nonblock_nodelay(fd);
	cmd->fd = fd;
out:
	kd_post_cmd(node, cmd);
	atomic_fetch_sub(&node->resolvers, 1);
	free(r);
	return NULL;
}

static void control_connect(struct kdist_node *node, const char *peer)
{
	struct resolver *r = calloc(1, sizeof(*r));
	pthread_attr_t attr;
	pthread_t t;

	struct kd_peer *p;
	bool start;

	if (!r)
		return;
	pthread_mutex_lock(&node->lock);
	p = kd_peer_get(node, peer, false);
	start = p && p->state == KD_PEER_CONNECTING && !p->resolving &&
		!p->outgoing && !p->incoming;
	if (start)
		p->resolving = true;
	pthread_mutex_unlock(&node->lock);
	if (!start) {
		free(r);
		return;
	}
	r->node = node;
	snprintf(r->peer, sizeof(r->peer), "%s", peer);
	kd_info("conn %s: connecting", peer);
	atomic_fetch_add(&node->resolvers, 1);
	/* Joinable: the control thread joins it when its result arrives, so
	 * nothing of the thread outlives the node. */
	pthread_attr_init(&attr);
	if (kd_thread_create(&t, &attr, resolver_main, r) != 0) {
		atomic_fetch_sub(&node->resolvers, 1);
		free(r);
		pthread_mutex_lock(&node->lock);
		p->resolving = false;
		peer_attempt_check(node, p, -EAGAIN,
				   "cannot start a resolver thread");
		pthread_mutex_unlock(&node->lock);
	}
	pthread_attr_destroy(&attr);
}

static void control_connected(struct kdist_node *node, struct kd_cmd *cmd)
{
	struct kd_hsconn *c;
	struct kd_peer *p;
	bool wanted;

	pthread_mutex_lock(&node->lock);
	p = kd_peer_get(node, cmd->peer, false);
	if (p)
		p->resolving = false;
	/* An incoming connection from the same node may have won meanwhile. */
	wanted = p && p->state == KD_PEER_CONNECTING && !p->outgoing &&
		 !p->incoming;
	if (p && cmd->fd < 0)
		peer_attempt_check(node, p, cmd->err, cmd->reason);
	pthread_mutex_unlock(&node->lock);
	if (cmd->fd < 0) {
		kd_err("conn %s: %s", cmd->peer, cmd->reason);
		return;
	}
	if (!wanted) {
		close(cmd->fd);
		return;
	}
	c = hsconn_new(node, cmd->fd, true);
	if (!c) {
		close(cmd->fd);
		return;
	}
	snprintf(c->peer, sizeof(c->peer), "%s", cmd->peer);
	snprintf(c->addr, sizeof(c->addr), "(outgoing)");
	pthread_mutex_lock(&node->lock);
	p->outgoing = c;
	pthread_mutex_unlock(&node->lock);
	if (node->tls) {
		if (hsconn_start_tls(c) < 0)
			return;
		hsconn_step(c);
	} else {
		hsconn_start_dist(c);
	}
}

/* ---- established connections ---- */

/* Logs the end of a session: at info for an orderly end, as a warning
 * when the peer broke the protocol or went silent. */
static void log_session_summary(struct kd_session *s, const char *why)
{
	const struct kd_link_stats st = s->final_stats;
	int err = s->close_err;
	bool orderly = err == 0 || err == -ECONNRESET ||
		       err == -ECONNABORTED || err == -ESHUTDOWN ||
		       err == -EPIPE;

	kd_log(orderly ? KD_LOG_INFO : KD_LOG_WARN,
	       "conn %s: down (%s): %s %s path=%s (%s) in=%llu bytes/%llu "
		"msgs out=%llu bytes/%llu msgs ticks in=%llu out=%llu",
		s->peer_name, why, s->tls_version[0] ? s->tls_version : "tcp",
		s->tls_cipher[0] ? s->tls_cipher : "-", s->record_path,
		s->path_reason, (unsigned long long)st.bytes_in,
		(unsigned long long)st.msgs_in,
		(unsigned long long)st.bytes_out,
		(unsigned long long)st.msgs_out,
		(unsigned long long)st.ticks_in,
		(unsigned long long)st.ticks_out);
}

static void control_link_closed(struct kdist_node *node,
				struct kd_session *s)
{
	kdist_nodedown_fn down = NULL;
	kdist_writable_fn writable = NULL;
	void *user = NULL, *writable_user = NULL;
	struct kd_peer *p = s->peer;
	bool was_current;

	log_session_summary(s, s->close_reason);
	pthread_mutex_lock(&node->lock);
	was_current = p->session == s;
	if (was_current) {
		p->session = NULL;
		p->state = KD_PEER_IDLE;
		/* For a kdist_connect() that wakes only after the link is
		 * gone again, for example when the peer died right after its
		 * challenge_ack. */
		p->last_error = s->close_err < 0 ? -s->close_err : ECONNRESET;
		snprintf(p->last_reason, sizeof(p->last_reason),
			 "the connection was set up and then lost: %s",
			 s->close_reason);
		down = node->down_fn;
		user = node->monitor_user;
		pthread_cond_broadcast(&node->cond);
	}
	/* A sender still waiting for room may send again, which sets up a
	 * new connection. */
	if (atomic_exchange(&s->user_blocked, false) &&
	    !atomic_load(&node->draining)) {
		writable = node->writable_fn;
		writable_user = node->writable_user;
	}
	pthread_mutex_unlock(&node->lock);
	if (was_current) {
		struct kdist_conn_stats st;

		kd_session_fill_stats(s, &s->final_stats, &st);
		if (down)
			down(user, s->peer_name, s->close_reason, &st);
	}
	if (writable)
		writable(writable_user, s->peer_name);
	kd_session_put(s);
}

/* Sends ticks on idle links and closes links whose peer went silent. */
static void control_ticks(struct kdist_node *node, uint64_t now)
{
	uint64_t tick_ns = (uint64_t)node->cfg.net_ticktime * 1000000000ull;
	uint64_t interval = tick_ns / 4;
	struct kd_session **list = NULL;
	size_t n = 0, cap = 0;

	pthread_mutex_lock(&node->lock);
	for (int b = 0; b < KD_PEER_BUCKETS; b++)
		for (struct kd_peer *p = node->peers[b]; p; p = p->next) {
			if (p->state != KD_PEER_UP || !p->session)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 32;
				list = realloc(list, cap * sizeof(*list));
			}
			list[n++] = p->session;
			kd_link_hold(p->session->link);
		}
	pthread_mutex_unlock(&node->lock);

	for (size_t i = 0; i < n; i++) {
		struct kd_session *s = list[i];
		struct kd_link_stats st;

		kd_link_get_stats(s->link, &st);
		if (st.last_rx_ns && now > st.last_rx_ns &&
		    now - st.last_rx_ns > tick_ns) {
			char why[120];

			snprintf(why, sizeof(why),
				 "net_tick_timeout: nothing received for %u s "
				 "(net_ticktime %u)",
				 (unsigned)((now - st.last_rx_ns) / 1000000000ull),
				 node->cfg.net_ticktime);
			kd_warn("conn %s: %s", s->peer_name, why);
			kd_link_close(s->link, -ETIMEDOUT, why);
		} else if (now - st.last_tx_ns >= interval) {
			kd_link_send(s->link, NULL, 0, KD_SEND_FORCE);
		}
		kd_link_release(s->link);
	}
	free(list);
}

/* Ends the attempts whose wait for the peer's own connection, after it
 * replied to ours with nok, has run out. */
static void control_peer_waits(struct kdist_node *node, uint64_t now)
{
	pthread_mutex_lock(&node->lock);
	for (int b = 0; b < KD_PEER_BUCKETS; b++)
		for (struct kd_peer *p = node->peers[b]; p; p = p->next) {
			if (!p->nok_wait_ns || now < p->nok_wait_ns)
				continue;
			p->nok_wait_ns = 0;
			peer_attempt_check(node, p, -ECONNREFUSED,
					   "the peer answered nok (it was "
					   "connecting to this node) but its "
					   "own connection never arrived");
		}
	pthread_mutex_unlock(&node->lock);
}

static void control_epmd_lost(struct kdist_node *node)
{
	char b;

	if (recv(node->epmd_fd, &b, 1, MSG_DONTWAIT) != 0 && errno == EAGAIN)
		return;
	kd_err("epmd: registration connection closed (epmd stopped?); "
	       "registering again every %llu s",
	       EPMD_RETRY_NS / 1000000000ull);
	close(node->epmd_fd);
	node->epmd_fd = -1;
	node->epmd_retry_ns = kd_now_ns() + EPMD_RETRY_NS;
}

static void control_epmd_retry(struct kdist_node *node, uint64_t now)
{
	if (node->epmd_fd >= 0 || now < node->epmd_retry_ns)
		return;
	if (control_register(node) != 0) {
		kd_warn("epmd: register again failed: %s", kd_last_error());
		node->epmd_retry_ns = now + EPMD_RETRY_NS;
	}
}

static void control_handle_cmds(struct kdist_node *node)
{
	struct kd_cmd *cmd;
	uint64_t v;

	if (read(node->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		kd_debug("control: eventfd read failed: %s", strerror(errno));
	pthread_mutex_lock(&node->cmd_lock);
	cmd = node->cmd_head;
	node->cmd_head = node->cmd_tail = NULL;
	pthread_mutex_unlock(&node->cmd_lock);

	while (cmd) {
		struct kd_cmd *next = cmd->next;

		switch (cmd->type) {
		case KD_CMD_CONNECT:
			control_connect(node, cmd->peer);
			break;
		case KD_CMD_CONNECTED:
			pthread_join(cmd->resolver, NULL);
			control_connected(node, cmd);
			break;
		case KD_CMD_LINK_CLOSED:
			control_link_closed(node, cmd->session);
			break;
		case KD_CMD_DISCONNECT:
			kdist_disconnect(node, cmd->peer);
			break;
		}
		free(cmd);
		cmd = next;
	}
}

/* Frees finished or failed handshakes and fails those past deadline. */
static void control_sweep(struct kdist_node *node, uint64_t now)
{
	struct kd_hsconn **pp = &node->hsconns;

	while (*pp) {
		struct kd_hsconn *c = *pp;

		if (!c->failed && now >= c->deadline_ns)
			hsconn_fail(c, -ETIMEDOUT,
				    "handshake timed out after %u ms in the %s "
				    "phase",
				    node->cfg.handshake_timeout_ms,
				    c->phase == KD_HC_TLS ? "TLS"
							  : "distribution");
		if (c->failed) {
			*pp = c->next;
			hsconn_free(c);
		} else {
			pp = &c->next;
		}
	}
}

static short hsconn_events(const struct kd_hsconn *c)
{
	if (c->out_len)
		return POLLOUT;
	if (c->phase == KD_HC_TLS && SSL_want_write(c->ssl))
		return POLLOUT;
	return POLLIN;
}

static void *control_main(void *arg)
{
	struct kdist_node *node = arg;
	struct pollfd *pfds = NULL;
	struct kd_hsconn **owners = NULL;
	size_t cap = 0;

	on_control_thread = true;
	while (!atomic_load(&node->stopping)) {
		uint64_t now = kd_now_ns();
		size_t n = 0, want = 3;
		int timeout;

		for (struct kd_hsconn *c = node->hsconns; c; c = c->next)
			want++;
		if (want > cap) {
			cap = want * 2;
			pfds = realloc(pfds, cap * sizeof(*pfds));
			owners = realloc(owners, cap * sizeof(*owners));
		}
		pfds[n++] = (struct pollfd){ node->wake_fd, POLLIN, 0 };
		pfds[n++] = (struct pollfd){ node->listen_fd, POLLIN, 0 };
		pfds[n++] = (struct pollfd){ node->epmd_fd, POLLIN, 0 };
		for (struct kd_hsconn *c = node->hsconns; c; c = c->next) {
			owners[n] = c;
			pfds[n++] = (struct pollfd){ c->fd, hsconn_events(c),
						     0 };
		}
		timeout = node->next_tick_ns > now
				  ? (int)((node->next_tick_ns - now) / 1000000)
				  : 0;
		if (timeout > 250)
			timeout = 250;
		poll(pfds, n, timeout);

		if (pfds[0].revents)
			control_handle_cmds(node);
		if (pfds[1].revents)
			control_accept(node);
		if (pfds[2].revents)
			control_epmd_lost(node);
		for (size_t i = 3; i < n; i++)
			if (pfds[i].revents)
				hsconn_step(owners[i]);

		now = kd_now_ns();
		if (now >= node->next_tick_ns) {
			control_ticks(node, now);
			control_peer_waits(node, now);
			control_epmd_retry(node, now);
			node->next_tick_ns =
				now + (uint64_t)node->cfg.net_ticktime *
					      1000000000ull / 16;
		}
		control_sweep(node, now);
		control_notify(node);
	}
	free(pfds);
	free(owners);
	return NULL;
}

int kd_control_start(struct kdist_node *node)
{
	int err;

	err = control_listen(node);
	if (err)
		return err;
	err = control_register(node);
	if (err)
		goto close_listen;
	node->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (node->wake_fd < 0) {
		err = kd_fail(errno, "control: eventfd failed: %s",
			      strerror(errno));
		goto close_epmd;
	}
	atomic_store(&node->stopping, false);
	atomic_store(&node->draining, false);
	node->closed_at_stop = 0;
	node->running = true;
	if (kd_thread_create(&node->control, NULL, control_main, node) != 0) {
		err = kd_fail(EAGAIN, "control: cannot start thread");
		node->running = false;
		goto close_wake;
	}
	kd_info("node: %s up (port %u, creation %u, %s)", node->name,
		node->port, node->creation,
		node->tls ? (node->ipv6 ? "inet6_tls" : "inet_tls")
			  : (node->ipv6 ? "inet6_tcp" : "inet_tcp"));
	return 0;

close_wake:
	close(node->wake_fd);
	node->wake_fd = -1;
close_epmd:
	close(node->epmd_fd);
	node->epmd_fd = -1;
close_listen:
	close(node->listen_fd);
	node->listen_fd = -1;
	return err;
}

/* Runs the commands posted after the control thread stopped, such as the
 * closed callbacks of links torn down by kd_loop_destroy(). */
static void control_drain(struct kdist_node *node)
{
	struct kd_cmd *cmd;

	pthread_mutex_lock(&node->cmd_lock);
	cmd = node->cmd_head;
	node->cmd_head = node->cmd_tail = NULL;
	pthread_mutex_unlock(&node->cmd_lock);
	while (cmd) {
		struct kd_cmd *next = cmd->next;

		if (cmd->type == KD_CMD_LINK_CLOSED)
			control_link_closed(node, cmd->session);
		else if (cmd->type == KD_CMD_CONNECTED) {
			pthread_join(cmd->resolver, NULL);
			if (cmd->fd >= 0)
				close(cmd->fd);
		}
		free(cmd);
		cmd = next;
	}
}

void kd_control_stop(struct kdist_node *node)
{
	if (node->running) {
		atomic_store(&node->stopping, true);
		uint64_t one = 1;

		if (write(node->wake_fd, &one, sizeof(one)) < 0)
			kd_debug("control: eventfd write failed: %s",
				 strerror(errno));
		pthread_join(node->control, NULL);
		pthread_mutex_lock(&node->lock);
		node->running = false;
		pthread_mutex_unlock(&node->lock);
	}
	while (node->hsconns) {
		struct kd_hsconn *c = node->hsconns;

		node->hsconns = c->next;
		hsconn_free(c);
	}
	if (node->loop) {
		struct kd_loop *loop = node->loop;

		/* kdist_node_stats() reads the links under node->lock while
		 * node->loop is set, and the loop frees their threads. */
		pthread_mutex_lock(&node->lock);
		node->loop = NULL;
		pthread_mutex_unlock(&node->lock);
		kd_loop_destroy(loop);
	}
	/* Resolvers give up within 100 ms once draining is set, except in
	 * getaddrinfo(), which a slow DNS server can hold for seconds. */
	atomic_store(&node->draining, true);
	while (atomic_load(&node->resolvers) > 0)
		usleep(10000);
	control_drain(node);
	control_notify(node);
	if (node->closed_at_stop > 0)
		kd_info("listen: closed %u incoming connections during the stop",
			node->closed_at_stop);
	if (node->listen_fd >= 0)
		close(node->listen_fd);
	if (node->epmd_fd >= 0)
		close(node->epmd_fd);
	if (node->wake_fd >= 0)
		close(node->wake_fd);
	node->listen_fd = node->epmd_fd = node->wake_fd = -1;
	kd_info("node: %s stopped", node->name);
}
