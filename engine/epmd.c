// SPDX-License-Identifier: Apache-2.0
/*
 * EPMD message codecs and a blocking client. The wire format is the EPMD
 * part of the OTP distribution protocol (erts User's Guide, "Distribution
 * Protocol", EPMD Protocol). Every integer is big-endian.
 */
#include "epmd.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

/* PORT2_RESP with Result 0: Op Result PortNo Type Proto High Low NLen. */
#define PORT2_RESP_FIXED 12
/* Largest PORT2_RESP that fits struct kd_epmd_node, plus slack. */
#define PORT2_RESP_MAX 1024
/* Ceiling on the NAMES reply text, so a broken peer cannot exhaust memory. */
#define NAMES_TEXT_MAX (1U << 20)

/* How often a cancellable request checks its flag. */
#define EPMD_CANCEL_CHECK_MS 100

/* One blocking request to EPMD: where it goes and when it must be done. */
struct epmd_call {
	const char *host;
	uint16_t port;
	unsigned timeout_ms;
	uint64_t deadline_ms;
	int fd;
	const atomic_bool *cancel; /* ends the waits when set; may be NULL */
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* Returns the length of @name, or a negative errno unless 1 to @max bytes. */
static int check_name(const char *name, size_t max)
{
	size_t len = strnlen(name, max + 1);

	if (len == 0)
		return -EINVAL;
	if (len > max)
		return -ENAMETOOLONG;
	return (int)len;
}

int kd_epmd_encode_alive2_req(uint8_t *buf, size_t cap,
			      const struct kd_epmd_node *node)
{
	size_t body, off;
	int nlen;

	nlen = check_name(node->name, sizeof(node->name) - 1);
	if (nlen < 0)
		return nlen;
	if (node->extra_len > sizeof(node->extra))
		return -EINVAL;
	body = 13 + (size_t)nlen + node->extra_len;
	if (cap < 2 + body)
		return -ENOSPC;

	put16(buf, (uint16_t)body);
	buf[2] = KD_EPMD_ALIVE2_REQ;
	put16(buf + 3, node->port);
	buf[5] = node->node_type;
	buf[6] = node->protocol;
	put16(buf + 7, node->high_version);
	put16(buf + 9, node->low_version);
	put16(buf + 11, (uint16_t)nlen);
	memcpy(buf + 13, node->name, nlen);
	off = 13 + (size_t)nlen;
	put16(buf + off, node->extra_len);
	memcpy(buf + off + 2, node->extra, node->extra_len);
	return (int)(2 + body);
}

int kd_epmd_encode_port_please2_req(uint8_t *buf, size_t cap, const char *name)
{
	int nlen = check_name(name, KD_EPMD_MAX_NAME);

	if (nlen < 0)
		return nlen;
	if (cap < 3 + (size_t)nlen)
		return -ENOSPC;

	put16(buf, (uint16_t)(1 + nlen));
	buf[2] = KD_EPMD_PORT_PLEASE2_REQ;
	memcpy(buf + 3, name, nlen);
	return 3 + nlen;
}

int kd_epmd_encode_names_req(uint8_t *buf, size_t cap)
{
	if (cap < 3)
		return -ENOSPC;
	put16(buf, 1);
	buf[2] = KD_EPMD_NAMES_REQ;
	return 3;
}

int kd_epmd_decode_alive2_resp(const uint8_t *buf, size_t len, uint8_t *result,
			       uint32_t *creation)
{
	if (len < 1)
		return 0;

	switch (buf[0]) {
	case KD_EPMD_ALIVE2_X_RESP:
		if (len < 6)
			return 0;
		*result = buf[1];
		*creation = get32(buf + 2);
		return 6;
	case KD_EPMD_ALIVE2_RESP:
		if (len < 4)
			return 0;
		*result = buf[1];
		*creation = get16(buf + 2);
		return 4;
	default:
		return -EBADMSG;
	}
}

/* Decodes the PORT2_RESP body that follows a Result of 0. */
static int decode_port2_node(const uint8_t *buf, size_t len,
			     struct kd_epmd_node *node)
{
	size_t nlen, elen, off;

	if (len < PORT2_RESP_FIXED)
		return 0;
	nlen = get16(buf + 10);
	if (nlen == 0)
		return -EBADMSG;
	if (nlen > KD_EPMD_MAX_NAME)
		return -EMSGSIZE;
	off = PORT2_RESP_FIXED + nlen;
	if (len < off + 2)
		return 0;
	elen = get16(buf + off);
	if (elen > sizeof(node->extra))
		return -EMSGSIZE;
	if (len < off + 2 + elen)
		return 0;

	node->port = get16(buf + 2);
	node->node_type = buf[4];
	node->protocol = buf[5];
	node->high_version = get16(buf + 6);
	node->low_version = get16(buf + 8);
	memcpy(node->name, buf + PORT2_RESP_FIXED, nlen);
	node->name[nlen] = '\0';
	memcpy(node->extra, buf + off + 2, elen);
	node->extra_len = (uint16_t)elen;
	return (int)(off + 2 + elen);
}

int kd_epmd_decode_port2_resp(const uint8_t *buf, size_t len, uint8_t *result,
			      struct kd_epmd_node *node)
{
	struct kd_epmd_node tmp;
	int ret;

	if (len < 2)
		return len && buf[0] != KD_EPMD_PORT2_RESP ? -EBADMSG : 0;
	if (buf[0] != KD_EPMD_PORT2_RESP)
		return -EBADMSG;
	if (buf[1] != 0) {
		*result = buf[1];
		return 2;
	}

	memset(&tmp, 0, sizeof(tmp));
	ret = decode_port2_node(buf, len, &tmp);
	if (ret <= 0)
		return ret;
	*result = 0;
	*node = tmp;
	return ret;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Returns the milliseconds left before the deadline, 0 when it passed. */
static int ms_left(const struct epmd_call *call)
{
	uint64_t now = now_ms();

	if (now >= call->deadline_ms)
		return 0;
	return (int)(call->deadline_ms - now);
}

static int set_nonblocking(int fd, int on)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0)
		return -errno;
	flags = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
	if (fcntl(fd, F_SETFL, flags) < 0)
		return -errno;
	return 0;
}

/* Waits for @events on the call's socket; -ETIMEDOUT past the deadline. */
static int epmd_wait(struct epmd_call *call, short events)
{
	struct pollfd pfd = {.fd = call->fd, .events = events};
	int ret;

	for (;;) {
		int ms = ms_left(call);

		/* With a cancel flag, wake every 100 ms to check it. */
		if (call->cancel && ms > EPMD_CANCEL_CHECK_MS)
			ms = EPMD_CANCEL_CHECK_MS;
		ret = poll(&pfd, 1, ms);
		if (ret > 0)
			return 0;
		if (ret < 0 && errno != EINTR)
			return -errno;
		if (call->cancel && atomic_load(call->cancel))
			return -ECANCELED;
		if (ret == 0 && ms_left(call) == 0)
			return -ETIMEDOUT;
	}
}

/* Connects one resolved address; leaves a non-blocking socket in call->fd. */
static int epmd_connect_addr(struct epmd_call *call, const struct addrinfo *ai)
{
	socklen_t optlen = sizeof(int);
	int ret, soerr = 0;

	call->fd = socket(ai->ai_family,
			  ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			  ai->ai_protocol);
	if (call->fd < 0)
		return -errno;

	if (connect(call->fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return 0;
	ret = -errno;
	if (ret != -EINPROGRESS)
		goto close_fd;

	ret = epmd_wait(call, POLLOUT);
	if (ret < 0)
		goto close_fd;
	if (getsockopt(call->fd, SOL_SOCKET, SO_ERROR, &soerr, &optlen) < 0)
		soerr = errno;
	ret = -soerr;
	if (ret == 0)
		return 0;

close_fd:
	close(call->fd);
	call->fd = -1;
	return ret;
}

/* Tries each address of call->host in turn until one accepts. */
static int epmd_connect(struct epmd_call *call)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_ADDRCONFIG,
	};
	struct addrinfo *res, *ai;
	char service[8];
	int ret, gai;

	snprintf(service, sizeof(service), "%u", call->port);
	gai = getaddrinfo(call->host, service, &hints, &res);
	if (gai == EAI_NONAME || gai == EAI_NODATA || gai == EAI_ADDRFAMILY) {
		/* AI_ADDRCONFIG hides loopback-only hosts; retry without it. */
		hints.ai_flags = 0;
		gai = getaddrinfo(call->host, service, &hints, &res);
	}
	if (gai != 0)
		return kd_fail(
		    EHOSTUNREACH,
		    "epmd: cannot resolve host '%s': %s (check the -host value or /etc/hosts)",
		    call->host, gai_strerror(gai));

	ret = -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		ret = epmd_connect_addr(call, ai);
		if (ret == 0 || ret == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);

	if (ret == -ETIMEDOUT)
		return kd_fail(
		    ETIMEDOUT,
		    "epmd: connect %s:%u timed out after %u ms (is the host reachable and epmd running?)",
		    call->host, call->port, call->timeout_ms);
	if (ret == -ECANCELED)
		return kd_fail(ECANCELED,
			       "epmd: connect %s:%u cancelled: the node is stopping",
			       call->host, call->port);
	if (ret < 0)
		return kd_fail(
		    -ret,
		    "epmd: connect %s:%u failed: %s (is epmd running? start it with 'epmd -daemon' or 'kdist epmd')",
		    call->host, call->port, strerror(-ret));
	return 0;
}

static int epmd_fail_io(struct epmd_call *call, int err, const char *step)
{
	if (err == -ECANCELED)
		return kd_fail(ECANCELED,
			       "epmd: %s %s:%u cancelled: the node is stopping",
			       step, call->host, call->port);
	if (err == -ETIMEDOUT)
		return kd_fail(ETIMEDOUT,
			       "epmd: %s %s:%u timed out after %u ms", step,
			       call->host, call->port, call->timeout_ms);
	if (err == -ECONNRESET)
		return kd_fail(
		    ECONNRESET,
		    "epmd: %s %s:%u failed: the connection closed before the reply was complete",
		    step, call->host, call->port);
	return kd_fail(-err, "epmd: %s %s:%u failed: %s", step, call->host,
		       call->port, strerror(-err));
}

static int epmd_send_req(struct epmd_call *call, const uint8_t *req, size_t len)
{
	size_t done = 0;
	ssize_t n;
	int ret;

	while (done < len) {
		n = send(call->fd, req + done, len - done, MSG_NOSIGNAL);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return epmd_fail_io(call, -errno, "send to");
		ret = epmd_wait(call, POLLOUT);
		if (ret < 0)
			return epmd_fail_io(call, ret, "send to");
	}
	return 0;
}

/*
 * Appends what the socket has to buf[*have..cap). Returns the bytes read,
 * 0 at end of stream, or a negative errno (a sentence stored by kd_fail).
 */
static ssize_t epmd_recv_some(struct epmd_call *call, uint8_t *buf, size_t cap,
			      size_t *have)
{
	ssize_t n;
	int ret;

	for (;;) {
		n = recv(call->fd, buf + *have, cap - *have, 0);
		if (n >= 0) {
			*have += (size_t)n;
			return n;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return epmd_fail_io(call, -errno, "receive from");
		ret = epmd_wait(call, POLLIN);
		if (ret < 0)
			return epmd_fail_io(call, ret, "receive from");
	}
}

static int epmd_recv_alive2_resp(struct epmd_call *call, uint8_t *result,
				 uint32_t *creation)
{
	uint8_t buf[8];
	size_t have = 0;
	ssize_t n;
	int ret;

	for (;;) {
		ret = kd_epmd_decode_alive2_resp(buf, have, result, creation);
		if (ret > 0)
			return 0;
		if (ret < 0)
			return kd_fail(
			    EBADMSG,
			    "epmd: %s:%u sent an invalid ALIVE2 reply (op %u); is that port an EPMD?",
			    call->host, call->port, buf[0]);
		n = epmd_recv_some(call, buf, sizeof(buf), &have);
		if (n == 0)
			return epmd_fail_io(call, -ECONNRESET, "register at");
		if (n < 0)
			return (int)n;
	}
}

static int epmd_call_open(struct epmd_call *call, const char *host,
			  uint16_t port, unsigned timeout_ms,
			  const atomic_bool *cancel)
{
	call->host = host;
	call->port = port;
	call->timeout_ms = timeout_ms;
	call->deadline_ms = now_ms() + timeout_ms;
	call->fd = -1;
	call->cancel = cancel;
	return epmd_connect(call);
}

int kd_epmd_register(const char *host, uint16_t epmd_port,
		     const struct kd_epmd_node *node, unsigned timeout_ms,
		     int *fd_out, uint32_t *creation)
{
	uint8_t req[2 + 13 + sizeof(node->name) + sizeof(node->extra)];
	struct epmd_call call;
	uint32_t cr = 0;
	uint8_t result = 0;
	int len, ret;

	len = kd_epmd_encode_alive2_req(req, sizeof(req), node);
	if (len < 0)
		return kd_fail(
		    -len,
		    "epmd: cannot register node name '%.255s': it must be 1 to %d bytes and its extra field at most %zu bytes",
		    node->name, KD_EPMD_MAX_NAME, sizeof(node->extra));
	ret = epmd_call_open(&call, host, epmd_port, timeout_ms, NULL);
	if (ret < 0)
		return ret;

	ret = epmd_send_req(&call, req, (size_t)len);
	if (ret < 0)
		goto close_fd;
	ret = epmd_recv_alive2_resp(&call, &result, &cr);
	if (ret < 0)
		goto close_fd;
	if (result != 0) {
		ret = kd_fail(
		    EEXIST,
		    "epmd: name '%s' is already registered (another node uses it; pick another -sname)",
		    node->name);
		goto close_fd;
	}
	/* The caller keeps this socket for the life of the registration. */
	ret = set_nonblocking(call.fd, 0);
	if (ret < 0) {
		kd_fail(-ret,
			"epmd: fcntl on the registration socket failed: %s",
			strerror(-ret));
		goto close_fd;
	}

	kd_info("epmd: registered '%s' port %u at %s:%u, creation %u",
		node->name, node->port, host, epmd_port, cr);
	*fd_out = call.fd;
	*creation = cr;
	return 0;

close_fd:
	close(call.fd);
	return ret;
}

static int epmd_recv_port2_resp(struct epmd_call *call, const char *name,
				struct kd_epmd_node *out)
{
	uint8_t buf[PORT2_RESP_MAX];
	uint8_t result = 0;
	size_t have = 0;
	ssize_t n;
	int ret;

	for (;;) {
		ret = kd_epmd_decode_port2_resp(buf, have, &result, out);
		if (ret > 0)
			break;
		if (ret < 0)
			return kd_fail(
			    EBADMSG,
			    "epmd: %s:%u sent an invalid PORT2 reply for '%s': %s",
			    call->host, call->port, name, strerror(-ret));
		n = epmd_recv_some(call, buf, sizeof(buf), &have);
		if (n == 0)
			return epmd_fail_io(call, -ECONNRESET,
					    "port lookup at");
		if (n < 0)
			return (int)n;
	}

	if (result != 0)
		return kd_fail(
		    ENOENT,
		    "epmd: node '%s' is not registered at %s:%u (is it running, and is the name spelled as in -sname?)",
		    name, call->host, call->port);
	return 0;
}

int kd_epmd_port_please(const char *host, uint16_t epmd_port, const char *name,
			unsigned timeout_ms, struct kd_epmd_node *out)
{
	return kd_epmd_port_please_cancel(host, epmd_port, name, timeout_ms,
					  NULL, out);
}

int kd_epmd_port_please_cancel(const char *host, uint16_t epmd_port,
			       const char *name, unsigned timeout_ms,
			       const atomic_bool *cancel,
			       struct kd_epmd_node *out)
{
	uint8_t req[3 + KD_EPMD_MAX_NAME];
	struct epmd_call call;
	int len, ret;

	len = kd_epmd_encode_port_please2_req(req, sizeof(req), name);
	if (len < 0)
		return kd_fail(
		    -len,
		    "epmd: cannot look up node name '%.255s': it must be 1 to %d bytes",
		    name, KD_EPMD_MAX_NAME);
	ret = epmd_call_open(&call, host, epmd_port, timeout_ms, cancel);
	if (ret < 0)
		return ret;

	ret = epmd_send_req(&call, req, (size_t)len);
	if (ret == 0)
		ret = epmd_recv_port2_resp(&call, name, out);
	close(call.fd);
	return ret;
}

/* Reads the NAMES reply: EPMDPortNo:32, then text until EPMD closes. */
static int epmd_recv_names_resp(struct epmd_call *call, uint16_t *port_out,
				char **text)
{
	size_t have = 0, cap = 4096;
	uint8_t *buf, *bigger;
	uint32_t port;
	ssize_t n;

	buf = malloc(cap + 1);
	if (!buf)
		return kd_fail(ENOMEM,
			       "epmd: out of memory for the NAMES reply");
	do {
		if (have == cap) {
			if (cap >= NAMES_TEXT_MAX) {
				free(buf);
				return kd_fail(
				    EMSGSIZE,
				    "epmd: NAMES reply from %s:%u exceeds %u bytes",
				    call->host, call->port, NAMES_TEXT_MAX);
			}
			cap *= 2;
			bigger = realloc(buf, cap + 1);
			if (!bigger) {
				free(buf);
				return kd_fail(
				    ENOMEM,
				    "epmd: out of memory for the NAMES reply");
			}
			buf = bigger;
		}
		n = epmd_recv_some(call, buf, cap, &have);
	} while (n > 0);
	if (n < 0) {
		free(buf);
		return (int)n;
	}
	if (have < 4) {
		free(buf);
		return epmd_fail_io(call, -ECONNRESET, "names request to");
	}

	port = get32(buf);
	memmove(buf, buf + 4, have - 4);
	buf[have - 4] = '\0';
	*port_out = (uint16_t)port;
	*text = (char *)buf;
	return 0;
}

int kd_epmd_names(const char *host, uint16_t epmd_port, unsigned timeout_ms,
		  uint16_t *epmd_port_out, char **text)
{
	struct epmd_call call;
	uint8_t req[3];
	int len, ret;

	len = kd_epmd_encode_names_req(req, sizeof(req));
	if (len < 0)
		return len;
	ret = epmd_call_open(&call, host, epmd_port, timeout_ms, NULL);
	if (ret < 0)
		return ret;

	ret = epmd_send_req(&call, req, (size_t)len);
	if (ret == 0)
		ret = epmd_recv_names_resp(&call, epmd_port_out, text);
	close(call.fd);
	return ret;
}
