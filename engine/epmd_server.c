// SPDX-License-Identifier: Apache-2.0
/*
 * kdist's own EPMD: a drop-in for OTP's epmd daemon that real erl nodes can
 * register with and look each other up in. One thread polls the listening
 * sockets and every client. Where the protocol document is silent, the
 * server follows OTP's epmd (erts/epmd/src/epmd_srv.c). A registration lives
 * until its ALIVE2 connection closes. ALIVE2, DUMP, KILL and STOP are served
 * only to local peers. KILL and STOP are always rejected, as epmd does
 * without -relaxed_command_check.
 *
 * Everything in struct kd_epmd_server after start-up is owned by the server
 * thread; kd_epmd_server_stop() touches it only after joining that thread.
 */
#include "epmd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "thread.h"

/* epmd's limit on a node name and on the Extra field: 255 UTF-8 characters. */
#define EPMD_MAX_SYM (255 * 4)
#define EPMD_MAX_NAME_CHARS 255
/* The largest request, ALIVE2_REQ with both fields full, fits. */
#define EPMD_INBUF (3 * EPMD_MAX_SYM)
#define EPMD_DEFAULT_CLIENT_TIMEOUT_MS 60000
#define EPMD_DEFAULT_MAX_CLIENTS 1024
/* Names remembered after they unregister, so that a node registering again
 * under the same name gets a new creation. epmd keeps 1000 as well. */
#define EPMD_MAX_RETIRED 1000
/* Creation sent with a failed ALIVE2 reply, the value epmd sends. */
#define EPMD_FAILED_CREATION 99

/* The creation counter of one node name, kept while the name is retired. */
struct epmd_creation {
	char name[EPMD_MAX_SYM + 1];
	uint16_t name_len;
	uint32_t counter;
	bool active;
	uint64_t retired_seq;
};

/* One registered node: what ALIVE2_REQ stated. */
struct epmd_reg {
	char name[EPMD_MAX_SYM + 1];
	uint16_t name_len;
	uint16_t port;
	uint8_t node_type;
	uint8_t protocol;
	uint16_t high_version, low_version;
	uint16_t extra_len;
	uint8_t extra[EPMD_MAX_SYM];
	struct epmd_creation *creation;
};

struct epmd_client {
	int fd;
	bool local_peer;
	char peer[INET6_ADDRSTRLEN + 8];
	uint8_t in[EPMD_INBUF];
	size_t in_len;
	uint8_t *out;
	size_t out_len, out_done;
	bool replying;	      /* request read, reply being sent, then close */
	uint64_t deadline_ms; /* unused once registered */
	struct epmd_reg *reg; /* set while an ALIVE2 registration lives */
};

struct kd_epmd_server {
	pthread_t thread;
	int wake_fd;
	int listen_fds[2];
	unsigned nlisten;
	uint16_t port;
	unsigned client_timeout_ms;
	unsigned max_clients;
	bool full_logged;

	struct epmd_client **clients;
	unsigned nclients;
	struct pollfd *pfds;

	struct epmd_creation **creations;
	size_t ncreations;
	uint64_t retire_seq;
};

struct epmd_request_type {
	uint8_t op;
	const char *name;
	bool local_only;
	int (*recv)(struct kd_epmd_server *srv, struct epmd_client *c,
		    const uint8_t *body, size_t len);
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Returns the number of characters in strict UTF-8 @s, or -1 if invalid. */
static int utf8_chars(const uint8_t *s, size_t len)
{
	size_t i = 0, k, n;
	int chars = 0;

	while (i < len) {
		uint8_t b = s[i];
		uint8_t lo = 0x80, hi = 0xbf;

		if (b < 0x80)
			n = 0;
		else if (b >= 0xc2 && b <= 0xdf)
			n = 1;
		else if (b >= 0xe0 && b <= 0xef)
			n = 2;
		else if (b >= 0xf0 && b <= 0xf4)
			n = 3;
		else
			return -1;
		/* Overlong forms, surrogates and code points past U+10FFFF. */
		if (b == 0xe0)
			lo = 0xa0;
		else if (b == 0xed)
			hi = 0x9f;
		else if (b == 0xf0)
			lo = 0x90;
		else if (b == 0xf4)
			hi = 0x8f;
		for (k = 1; k <= n; k++) {
			if (i + k >= len || s[i + k] < (k == 1 ? lo : 0x80) ||
			    s[i + k] > (k == 1 ? hi : 0xbf))
				return -1;
		}
		i += n + 1;
		chars++;
	}
	return chars;
}

static bool is_valid_name(const uint8_t *name, size_t len)
{
	int chars;

	if (len == 0 || len > EPMD_MAX_SYM || memchr(name, '\0', len))
		return false;
	chars = utf8_chars(name, len);
	return chars > 0 && chars <= EPMD_MAX_NAME_CHARS;
}

/* Creation numbers: a per-name counter, as epmd keeps one. */

static struct epmd_creation *creation_find(struct kd_epmd_server *srv,
					   const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < srv->ncreations; i++) {
		struct epmd_creation *cr = srv->creations[i];

		if (cr->name_len == len && !memcmp(cr->name, name, len))
			return cr;
	}
	return NULL;
}

/* Skips 0..3 so a 32-bit creation never looks like an old 2-bit one. */
static void creation_bump(struct epmd_creation *cr)
{
	if (++cr->counter < 4)
		cr->counter = 4;
}

/* Drops the name retired longest ago once too many are remembered. */
static void creation_trim(struct kd_epmd_server *srv)
{
	size_t i, oldest = SIZE_MAX, retired = 0;

	for (i = 0; i < srv->ncreations; i++) {
		if (srv->creations[i]->active)
			continue;
		retired++;
		if (oldest == SIZE_MAX ||
		    srv->creations[i]->retired_seq <
			srv->creations[oldest]->retired_seq)
			oldest = i;
	}
	if (retired <= EPMD_MAX_RETIRED)
		return;
	free(srv->creations[oldest]);
	srv->creations[oldest] = srv->creations[--srv->ncreations];
}

/* Returns the name's counter, bumped for this registration, or NULL. */
static struct epmd_creation *creation_take(struct kd_epmd_server *srv,
					   const char *name, size_t len)
{
	struct epmd_creation *cr = creation_find(srv, name, len);
	struct epmd_creation **grown;
	uint32_t start = 0;

	if (cr)
		goto bump;
	grown = realloc(srv->creations,
			(srv->ncreations + 1) * sizeof(*srv->creations));
	if (!grown)
		return NULL;
	srv->creations = grown;
	cr = calloc(1, sizeof(*cr));
	if (!cr)
		return NULL;
	/* epmd seeds with the time of day; any start value works. */
	if (getrandom(&start, sizeof(start), GRND_NONBLOCK) != sizeof(start))
		start = (uint32_t)time(NULL);
	memcpy(cr->name, name, len);
	cr->name_len = (uint16_t)len;
	cr->counter = start;
	srv->creations[srv->ncreations++] = cr;
bump:
	creation_bump(cr);
	cr->active = true;
	return cr;
}

/*
 * The creation a node gets: the 32-bit counter for distribution version 6
 * (ALIVE2_X_RESP), else 1..3 for the 16-bit ALIVE2_RESP of older nodes.
 */
static uint32_t reg_creation(const struct epmd_reg *reg)
{
	if (reg->high_version >= 6)
		return reg->creation->counter;
	return reg->creation->counter % 3 + 1;
}

static struct epmd_reg *reg_find(struct kd_epmd_server *srv, const char *name,
				 size_t len)
{
	unsigned i;

	for (i = 0; i < srv->nclients; i++) {
		struct epmd_reg *reg = srv->clients[i]->reg;

		if (reg && reg->name_len == len &&
		    !memcmp(reg->name, name, len))
			return reg;
	}
	return NULL;
}

/* Output: each reply is built whole, then written as the socket allows. */

static int client_queue(struct epmd_client *c, const void *data, size_t len)
{
	uint8_t *grown = realloc(c->out, c->out_len + len);

	if (!grown)
		return -ENOMEM;
	c->out = grown;
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return 0;
}

/* Returns 1 when all output is written, 0 if some is left, or -errno. */
static int client_flush(struct epmd_client *c)
{
	ssize_t n;

	while (c->out_done < c->out_len) {
		n = send(c->fd, c->out + c->out_done, c->out_len - c->out_done,
			 MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return -errno;
		c->out_done += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_done = 0;
	return 1;
}

/* Request handlers. Each returns 0, or a negative errno to close the client
 * after logging why. */

static int epmd_send_alive2_resp(struct epmd_client *c, uint16_t high_version,
				 uint8_t result, uint32_t creation)
{
	uint8_t resp[6];
	size_t len;

	resp[1] = result;
	if (high_version >= 6) {
		resp[0] = KD_EPMD_ALIVE2_X_RESP;
		put32(resp + 2, creation);
		len = 6;
	} else {
		resp[0] = KD_EPMD_ALIVE2_RESP;
		put16(resp + 2, (uint16_t)creation);
		len = 4;
	}
	return client_queue(c, resp, len);
}

/*
 * Parses ALIVE2_REQ into @reg. Returns -EBADMSG if its lengths do not add
 * up, or -ENAMETOOLONG if the name or Extra field is longer than epmd
 * accepts, which gets Result 1 rather than a closed connection.
 */
static int parse_alive2_req(struct epmd_client *c, const uint8_t *body,
			    size_t len, struct epmd_reg *reg)
{
	size_t nlen, elen;

	/* Op, PortNo, NodeType, Protocol, High, Low, NLen, Name (1+), ELen */
	if (len < 14) {
		kd_warn(
		    "epmd: client %s sent an ALIVE2_REQ of %zu bytes, shorter than the 14 minimum; closing",
		    c->peer, len);
		return -EBADMSG;
	}
	reg->port = get16(body + 1);
	reg->node_type = body[3];
	reg->protocol = body[4];
	reg->high_version = get16(body + 5);
	reg->low_version = get16(body + 7);
	nlen = get16(body + 9);
	if (13 + nlen > len) {
		kd_warn(
		    "epmd: client %s sent an ALIVE2_REQ whose name length %zu exceeds the request; closing",
		    c->peer, nlen);
		return -EBADMSG;
	}
	elen = get16(body + 11 + nlen);
	if (13 + nlen + elen > len) {
		kd_warn(
		    "epmd: client %s sent an ALIVE2_REQ whose extra length %zu exceeds the request; closing",
		    c->peer, elen);
		return -EBADMSG;
	}
	if (nlen > EPMD_MAX_SYM || elen > EPMD_MAX_SYM) {
		kd_warn(
		    "epmd: rejected registration from %s: name of %zu bytes or extra field of %zu bytes exceeds %d",
		    c->peer, nlen, elen, EPMD_MAX_SYM);
		return -ENAMETOOLONG;
	}

	reg->name_len = (uint16_t)nlen;
	memcpy(reg->name, body + 11, nlen);
	reg->name[nlen] = '\0';
	reg->extra_len = (uint16_t)elen;
	memcpy(reg->extra, body + 13 + nlen, elen);
	return 0;
}

/* Returns why ALIVE2_REQ gets Result 1, or NULL if the name is free. */
static const char *alive2_reject_reason(struct kd_epmd_server *srv,
					const struct epmd_reg *reg)
{
	if (!is_valid_name((const uint8_t *)reg->name, reg->name_len))
		return "the name is not 1 to 255 characters of UTF-8 without NUL";
	if (reg_find(srv, reg->name, reg->name_len))
		return "the name is already registered";
	return NULL;
}

static int epmd_recv_alive2_req(struct kd_epmd_server *srv,
				struct epmd_client *c, const uint8_t *body,
				size_t len)
{
	struct epmd_reg *reg;
	const char *reason;
	int ret;

	reg = calloc(1, sizeof(*reg));
	if (!reg)
		return -ENOMEM;
	ret = parse_alive2_req(c, body, len, reg);
	if (ret == -ENAMETOOLONG) {
		ret = epmd_send_alive2_resp(c, reg->high_version, 1,
					    EPMD_FAILED_CREATION);
		c->replying = true;
		goto free_reg;
	}
	if (ret < 0)
		goto free_reg;

	reason = alive2_reject_reason(srv, reg);
	if (!reason) {
		reg->creation = creation_take(srv, reg->name, reg->name_len);
		if (!reg->creation)
			reason = "the server is out of memory";
	}
	if (reason) {
		kd_warn("epmd: rejected registration of '%.*s' from %s: %s",
			(int)reg->name_len, reg->name, c->peer, reason);
		ret = epmd_send_alive2_resp(c, reg->high_version, 1,
					    EPMD_FAILED_CREATION);
		c->replying = true;
		goto free_reg;
	}

	c->reg = reg;
	kd_info(
	    "epmd: registered '%s' port %u type %u versions %u-%u creation %u from %s",
	    reg->name, reg->port, reg->node_type, reg->low_version,
	    reg->high_version, reg_creation(reg), c->peer);
	return epmd_send_alive2_resp(c, reg->high_version, 0,
				     reg_creation(reg));

free_reg:
	free(reg);
	return ret;
}

static int epmd_send_port2_resp(struct epmd_client *c,
				const struct epmd_reg *reg)
{
	uint8_t resp[14 + 2 * EPMD_MAX_SYM];
	size_t off;

	resp[0] = KD_EPMD_PORT2_RESP;
	if (!reg) {
		resp[1] = 1;
		return client_queue(c, resp, 2);
	}
	resp[1] = 0;
	put16(resp + 2, reg->port);
	resp[4] = reg->node_type;
	resp[5] = reg->protocol;
	put16(resp + 6, reg->high_version);
	put16(resp + 8, reg->low_version);
	put16(resp + 10, reg->name_len);
	memcpy(resp + 12, reg->name, reg->name_len);
	off = 12 + reg->name_len;
	put16(resp + off, reg->extra_len);
	memcpy(resp + off + 2, reg->extra, reg->extra_len);
	return client_queue(c, resp, off + 2 + reg->extra_len);
}

static int epmd_recv_port_please2_req(struct kd_epmd_server *srv,
				      struct epmd_client *c,
				      const uint8_t *body, size_t len)
{
	const uint8_t *name = body + 1;
	size_t nlen = len - 1;

	/* Old clients end the name with a NUL; epmd accepts that too. */
	if (nlen > 0 && name[nlen - 1] == '\0')
		nlen--;
	if (!is_valid_name(name, nlen)) {
		kd_warn(
		    "epmd: client %s sent a PORT_PLEASE2_REQ with an invalid name of %zu bytes; closing",
		    c->peer, nlen);
		return -EBADMSG;
	}
	c->replying = true;
	return epmd_send_port2_resp(c, reg_find(srv, (const char *)name, nlen));
}

/* NAMES and DUMP replies start with the EPMD port as a 32-bit integer. */
static int queue_port_header(struct kd_epmd_server *srv, struct epmd_client *c)
{
	uint8_t hdr[4];

	put32(hdr, srv->port);
	return client_queue(c, hdr, sizeof(hdr));
}

static int epmd_recv_names_req(struct kd_epmd_server *srv,
			       struct epmd_client *c, const uint8_t *body,
			       size_t len)
{
	char line[EPMD_MAX_SYM + 32];
	unsigned i;
	int n, ret;

	c->replying = true;
	ret = queue_port_header(srv, c);
	for (i = 0; i < srv->nclients && ret == 0; i++) {
		const struct epmd_reg *reg = srv->clients[i]->reg;

		if (!reg)
			continue;
		/* erl_epmd parses this exact text for net_adm:names/1. */
		n = snprintf(line, sizeof(line), "name %s at port %u\n",
			     reg->name, reg->port);
		ret = client_queue(c, line, (size_t)n);
	}
	return ret;
}

static int epmd_recv_dump_req(struct kd_epmd_server *srv, struct epmd_client *c,
			      const uint8_t *body, size_t len)
{
	char line[EPMD_MAX_SYM + 64];
	unsigned i;
	int n, ret;

	c->replying = true;
	ret = queue_port_header(srv, c);
	for (i = 0; i < srv->nclients && ret == 0; i++) {
		const struct epmd_client *owner = srv->clients[i];

		if (!owner->reg)
			continue;
		/* epmd sends each line with its terminating NUL byte. */
		n = snprintf(line, sizeof(line),
			     "active name     <%s> at port %u, fd = %d\n",
			     owner->reg->name, owner->reg->port, owner->fd);
		ret = client_queue(c, line, (size_t)n + 1);
	}
	/* NOTE: epmd also lists retired names with their last port; this
	 * server keeps only their creation counter, so DUMP omits them. */
	return ret;
}

static int epmd_recv_kill_req(struct kd_epmd_server *srv, struct epmd_client *c,
			      const uint8_t *body, size_t len)
{
	kd_info(
	    "epmd: rejected KILL_REQ from %s: stop kdist's epmd with a signal",
	    c->peer);
	c->replying = true;
	return client_queue(c, "NO", 2);
}

static int epmd_recv_stop_req(struct kd_epmd_server *srv, struct epmd_client *c,
			      const uint8_t *body, size_t len)
{
	/* epmd without -relaxed_command_check closes without a reply. */
	kd_info(
	    "epmd: rejected STOP_REQ from %s: nodes unregister by closing their connection",
	    c->peer);
	return -EPERM;
}

static const struct epmd_request_type request_types[] = {
    {KD_EPMD_ALIVE2_REQ, "ALIVE2_REQ", true, epmd_recv_alive2_req},
    {KD_EPMD_PORT_PLEASE2_REQ, "PORT_PLEASE2_REQ", false,
     epmd_recv_port_please2_req},
    {KD_EPMD_NAMES_REQ, "NAMES_REQ", false, epmd_recv_names_req},
    {KD_EPMD_DUMP_REQ, "DUMP_REQ", true, epmd_recv_dump_req},
    {KD_EPMD_KILL_REQ, "KILL_REQ", true, epmd_recv_kill_req},
    {KD_EPMD_STOP_REQ, "STOP_REQ", true, epmd_recv_stop_req},
};

static int handle_request(struct kd_epmd_server *srv, struct epmd_client *c,
			  const uint8_t *body, size_t len)
{
	const struct epmd_request_type *type = NULL;
	size_t i;

	for (i = 0; i < sizeof(request_types) / sizeof(request_types[0]); i++) {
		if (request_types[i].op == body[0])
			type = &request_types[i];
	}
	if (!type) {
		kd_warn("epmd: client %s sent unknown request %u; closing",
			c->peer, body[0]);
		return -EBADMSG;
	}
	if (type->local_only && !c->local_peer) {
		kd_warn(
		    "epmd: client %s is not local and may not send %s; closing",
		    c->peer, type->name);
		return -EPERM;
	}
	return type->recv(srv, c, body, len);
}

/* Client life cycle. */

static void client_close(struct kd_epmd_server *srv, unsigned idx)
{
	struct epmd_client *c = srv->clients[idx];

	if (c->reg) {
		kd_info("epmd: unregistered '%s' port %u (%s closed)",
			c->reg->name, c->reg->port, c->peer);
		c->reg->creation->active = false;
		c->reg->creation->retired_seq = ++srv->retire_seq;
		free(c->reg);
		creation_trim(srv);
	}
	close(c->fd);
	free(c->out);
	free(c);
	srv->clients[idx] = srv->clients[--srv->nclients];
	if (srv->nclients < srv->max_clients)
		srv->full_logged = false;
}

/* Reads from a registered node: any event ends its registration. */
static int client_read_registered(struct epmd_client *c)
{
	uint8_t byte;
	ssize_t n = recv(c->fd, &byte, 1, 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n > 0)
		kd_warn(
		    "epmd: registered node '%s' at %s sent data after ALIVE2_REQ; dropping it as epmd does",
		    c->reg->name, c->peer);
	return -ECONNRESET;
}

/* Returns the bytes still missing for the request in c->in. */
static size_t request_missing(const struct epmd_client *c)
{
	if (c->in_len < 2)
		return 2 - c->in_len;
	return 2 + (size_t)get16(c->in) - c->in_len;
}

/* Reads one length-prefixed request and serves it once complete. */
static int client_read_request(struct kd_epmd_server *srv,
			       struct epmd_client *c)
{
	size_t want;
	ssize_t n;

	n = recv(c->fd, c->in + c->in_len, request_missing(c), 0);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0) {
		if (c->in_len > 0)
			kd_warn(
			    "epmd: client %s closed after %zu bytes of a request",
			    c->peer, c->in_len);
		return -ECONNRESET;
	}
	c->in_len += (size_t)n;
	c->deadline_ms = now_ms() + srv->client_timeout_ms;
	if (c->in_len < 2)
		return 0;

	want = get16(c->in);
	if (want < 1 || want + 2 > EPMD_INBUF) {
		kd_warn(
		    "epmd: client %s sent a request length of %zu bytes, outside 1..%d; closing",
		    c->peer, want, EPMD_INBUF - 2);
		return -EMSGSIZE;
	}
	if (request_missing(c) > 0)
		return 0;
	return handle_request(srv, c, c->in + 2, want);
}

/* Serves poll events of client @idx; returns < 0 if it must close. */
static int client_event(struct kd_epmd_server *srv, unsigned idx, short revents)
{
	struct epmd_client *c = srv->clients[idx];
	int ret = 0;

	if (c->reg && !c->out && (revents & (POLLIN | POLLHUP | POLLERR)))
		return client_read_registered(c);
	if (!c->replying && !c->reg && (revents & (POLLIN | POLLHUP | POLLERR)))
		ret = client_read_request(srv, c);
	if (ret < 0)
		return ret;
	if (c->out) {
		ret = client_flush(c);
		if (ret < 0)
			return ret;
		if (ret == 1 && c->replying)
			return -ESHUTDOWN; /* reply sent: close, as epmd does */
	} else if (c->replying) {
		return -ESHUTDOWN;
	}
	if (!c->out && (revents & (POLLHUP | POLLERR)) && !c->reg)
		return -ECONNRESET;
	return 0;
}

static void format_peer(const struct sockaddr_storage *ss, char *out,
			size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(out, cap, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const void *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(out, cap, "%s:%u", host, ntohs(s4->sin_port));
	}
}

/* Local means loopback, or the peer address is the one it connected to. */
static bool is_local_peer(int fd, const struct sockaddr_storage *peer)
{
	struct sockaddr_storage self;
	socklen_t len = sizeof(self);

	if (peer->ss_family == AF_INET6) {
		const struct in6_addr *a =
		    &((const struct sockaddr_in6 *)peer)->sin6_addr;

		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		if (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127)
			return true;
		if (getsockname(fd, (struct sockaddr *)&self, &len) < 0)
			return false;
		return IN6_ARE_ADDR_EQUAL(
		    a, &((struct sockaddr_in6 *)&self)->sin6_addr);
	}
	if (peer->ss_family != AF_INET)
		return false;
	if ((ntohl(((const struct sockaddr_in *)peer)->sin_addr.s_addr) >>
	     24) == 127)
		return true;
	if (getsockname(fd, (struct sockaddr *)&self, &len) < 0)
		return false;
	return ((const struct sockaddr_in *)peer)->sin_addr.s_addr ==
	       ((struct sockaddr_in *)&self)->sin_addr.s_addr;
}

static int client_add(struct kd_epmd_server *srv, int fd,
		      const struct sockaddr_storage *peer)
{
	struct epmd_client *c;

	if (srv->nclients >= srv->max_clients) {
		if (!srv->full_logged)
			kd_warn(
			    "epmd: %u connections are open, the maximum; closing new ones until some end",
			    srv->nclients);
		srv->full_logged = true;
		close(fd);
		return 0;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	format_peer(peer, c->peer, sizeof(c->peer));
	c->local_peer = is_local_peer(fd, peer);
	c->deadline_ms = now_ms() + srv->client_timeout_ms;
	srv->clients[srv->nclients++] = c;
	return 0;
}

static void accept_clients(struct kd_epmd_server *srv, int lfd)
{
	struct sockaddr_storage peer;
	socklen_t len;
	int fd;

	for (;;) {
		len = sizeof(peer);
		fd = accept4(lfd, (struct sockaddr *)&peer, &len,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				kd_err("epmd: accept on port %u failed: %s",
				       srv->port, strerror(errno));
			return;
		}
		if (client_add(srv, fd, &peer) < 0)
			kd_err("epmd: out of memory for a new connection");
	}
}

/* Closes clients that sent no complete request in time. */
static void expire_clients(struct kd_epmd_server *srv, uint64_t now)
{
	unsigned i = srv->nclients;

	while (i-- > 0) {
		struct epmd_client *c = srv->clients[i];

		if (c->reg || now < c->deadline_ms)
			continue;
		kd_warn(
		    "epmd: client %s sent no complete request within %u ms; closing",
		    c->peer, srv->client_timeout_ms);
		client_close(srv, i);
	}
}

static int poll_timeout(const struct kd_epmd_server *srv, uint64_t now)
{
	uint64_t first = UINT64_MAX;
	unsigned i;

	for (i = 0; i < srv->nclients; i++) {
		if (!srv->clients[i]->reg &&
		    srv->clients[i]->deadline_ms < first)
			first = srv->clients[i]->deadline_ms;
	}
	if (first == UINT64_MAX)
		return -1;
	return first <= now ? 0 : (int)(first - now);
}

static unsigned build_pollfds(struct kd_epmd_server *srv)
{
	unsigned i, n = 0;

	srv->pfds[n++] = (struct pollfd){.fd = srv->wake_fd, .events = POLLIN};
	for (i = 0; i < srv->nlisten; i++)
		srv->pfds[n++] =
		    (struct pollfd){.fd = srv->listen_fds[i], .events = POLLIN};
	for (i = 0; i < srv->nclients; i++) {
		const struct epmd_client *c = srv->clients[i];
		short events = c->out ? POLLOUT : POLLIN;

		srv->pfds[n++] = (struct pollfd){.fd = c->fd, .events = events};
	}
	return n;
}

static void *epmd_server_run(void *arg)
{
	struct kd_epmd_server *srv = arg;
	unsigned i, first_client = 1 + srv->nlisten, polled;
	int ret;

	for (;;) {
		polled = build_pollfds(srv) - first_client;
		ret = poll(srv->pfds, first_client + polled,
			   poll_timeout(srv, now_ms()));
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0) {
			kd_err("epmd: poll failed: %s; the server stops",
			       strerror(errno));
			break;
		}
		if (srv->pfds[0].revents)
			break;

		/* Downwards, so a close that moves the last client into slot i
		 * moves one that was already served. */
		for (i = polled; i-- > 0;) {
			short revents = srv->pfds[first_client + i].revents;

			if (revents && client_event(srv, i, revents) < 0)
				client_close(srv, i);
		}
		for (i = 0; i < srv->nlisten; i++) {
			if (srv->pfds[1 + i].revents & POLLIN)
				accept_clients(srv, srv->listen_fds[i]);
		}
		expire_clients(srv, now_ms());
	}
	return NULL;
}

/* Start-up and shutdown. */

static int open_listener(struct kd_epmd_server *srv, int family,
			 const void *addr, uint16_t port)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int fd, one = 1;

	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		memcpy(&s6->sin6_addr, addr, sizeof(s6->sin6_addr));
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		memcpy(&s4->sin_addr, addr, sizeof(s4->sin_addr));
		len = sizeof(*s4);
	}

	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail_close;
	/* As epmd does, so a restart does not wait out TIME_WAIT. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail_close;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		goto fail_close;
	if (listen(fd, SOMAXCONN) < 0)
		goto fail_close;

	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		goto fail_close;
	srv->port =
	    ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
				     : ((struct sockaddr_in *)&ss)->sin_port);
	srv->listen_fds[srv->nlisten++] = fd;
	return 0;

fail_close:
	one = -errno;
	close(fd);
	return one;
}

/* IPv4 first, then IPv6 on the same port number; IPv6 may be missing. */
static int open_listeners(struct kd_epmd_server *srv, uint16_t port,
			  int loopback_only)
{
	struct in_addr v4 = {
	    htonl(loopback_only ? INADDR_LOOPBACK : INADDR_ANY)};
	const struct in6_addr *v6 =
	    loopback_only ? &in6addr_loopback : &in6addr_any;
	int ret;

	ret = open_listener(srv, AF_INET, &v4, port);
	if (ret == -EADDRINUSE)
		return kd_fail(
		    EADDRINUSE,
		    "epmd: port %u is already in use (another epmd is running; use it, or pick a port with -port / ERL_EPMD_PORT)",
		    port);
	if (ret < 0)
		return kd_fail(-ret, "epmd: listen on %s port %u failed: %s",
			       loopback_only ? "127.0.0.1" : "0.0.0.0", port,
			       strerror(-ret));

	ret = open_listener(srv, AF_INET6, v6, srv->port);
	if (ret == -EAFNOSUPPORT || ret == -EADDRNOTAVAIL) {
		kd_info("epmd: IPv6 is not available (%s); serving IPv4 only",
			strerror(-ret));
		return 0;
	}
	if (ret == -EADDRINUSE)
		return kd_fail(
		    EADDRINUSE,
		    "epmd: port %u is already in use on IPv6 (another epmd is running; use it, or pick a port with -port / ERL_EPMD_PORT)",
		    srv->port);
	if (ret < 0)
		return kd_fail(-ret, "epmd: listen on %s port %u failed: %s",
			       loopback_only ? "::1" : "::", srv->port,
			       strerror(-ret));
	return 0;
}

static void close_all(struct kd_epmd_server *srv)
{
	unsigned i;

	while (srv->nclients > 0)
		client_close(srv, srv->nclients - 1);
	for (i = 0; i < srv->nlisten; i++)
		close(srv->listen_fds[i]);
	for (i = 0; i < srv->ncreations; i++)
		free(srv->creations[i]);
	if (srv->wake_fd >= 0)
		close(srv->wake_fd);
	free(srv->creations);
	free(srv->clients);
	free(srv->pfds);
	free(srv);
}

static struct kd_epmd_server *
server_alloc(const struct kd_epmd_server_config *cfg)
{
	struct kd_epmd_server *srv = calloc(1, sizeof(*srv));

	if (!srv)
		return NULL;
	srv->wake_fd = -1;
	srv->client_timeout_ms = cfg->client_timeout_ms
				     ? cfg->client_timeout_ms
				     : EPMD_DEFAULT_CLIENT_TIMEOUT_MS;
	srv->max_clients =
	    cfg->max_clients ? cfg->max_clients : EPMD_DEFAULT_MAX_CLIENTS;
	srv->clients = calloc(srv->max_clients, sizeof(*srv->clients));
	srv->pfds = calloc(1 + 2 + srv->max_clients, sizeof(*srv->pfds));
	if (!srv->clients || !srv->pfds) {
		close_all(srv);
		return NULL;
	}
	return srv;
}

int kd_epmd_server_start_config(const struct kd_epmd_server_config *cfg,
				struct kd_epmd_server **out)
{
	struct kd_epmd_server *srv;
	int ret;

	srv = server_alloc(cfg);
	if (!srv)
		return kd_fail(ENOMEM,
			       "epmd: out of memory starting the server");
	srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->wake_fd < 0) {
		ret =
		    kd_fail(errno, "epmd: eventfd failed: %s", strerror(errno));
		goto free_srv;
	}
	ret = open_listeners(srv, cfg->port, cfg->loopback_only);
	if (ret < 0)
		goto free_srv;

	ret = -kd_thread_create(&srv->thread, NULL, epmd_server_run, srv);
	if (ret < 0) {
		kd_fail(-ret, "epmd: pthread_create failed: %s",
			strerror(-ret));
		goto free_srv;
	}
	kd_info("epmd: listening on port %u (%s)", srv->port,
		cfg->loopback_only ? "127.0.0.1 and ::1" : "all addresses");
	*out = srv;
	return 0;

free_srv:
	close_all(srv);
	return ret;
}

int kd_epmd_server_start(uint16_t port, int loopback_only,
			 struct kd_epmd_server **out)
{
	struct kd_epmd_server_config cfg = {
	    .port = port,
	    .loopback_only = loopback_only,
	};

	return kd_epmd_server_start_config(&cfg, out);
}

uint16_t kd_epmd_server_port(const struct kd_epmd_server *srv)
{
	return srv->port;
}

void kd_epmd_server_stop(struct kd_epmd_server *srv)
{
	uint64_t one = 1;
	unsigned registered = 0, i;

	if (!srv)
		return;
	if (write(srv->wake_fd, &one, sizeof(one)) != sizeof(one))
		kd_err("epmd: waking the server thread failed: %s",
		       strerror(errno));
	pthread_join(srv->thread, NULL);

	for (i = 0; i < srv->nclients; i++)
		registered += srv->clients[i]->reg != NULL;
	kd_info("epmd: stopped on port %u, dropping %u registrations",
		srv->port, registered);
	close_all(srv);
}
