// SPDX-License-Identifier: Apache-2.0
/*
 * kdist's EPMD server, request handling: the server file is compiled into
 * this target so that its static client functions can be driven without
 * the poll thread or a listening socket. Each client is one end of a
 * socketpair; the input writes requests into the other end and calls the
 * server's poll-event handler, so the real read, length check, dispatch
 * and reply paths run, with registrations and retired names shared by up
 * to four clients.
 *
 * Input: commands of Cmd (1 byte), Len (1 byte) and the bytes to write.
 * Cmd bits 0-1 pick the client, bit 2 makes a new client remote rather
 * than loopback, bit 3 closes the client instead of writing, and bit 4
 * writes Len * 16 bytes (for ALIVE2_REQ with long names) from the input.
 */
#include "../engine/epmd_server.c"

#include "fuzz.h"

#define EPMD_FUZZ_CLIENTS 4

struct epmd_fuzz_slot {
	int fd;	     /* server end, or -1 */
	int peer_fd; /* the end this target writes to */
};

static int epmd_fuzz_index(const struct kd_epmd_server *srv, int fd)
{
	for (unsigned i = 0; i < srv->nclients; i++) {
		if (srv->clients[i]->fd == fd)
			return (int)i;
	}
	return -1;
}

static void epmd_fuzz_open(struct kd_epmd_server *srv,
			   struct epmd_fuzz_slot *s, bool remote)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	int fds[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		       fds) < 0)
		return;
	memset(&ss, 0, sizeof(ss));
	in->sin_family = AF_INET;
	/* 192.0.2.1 is TEST-NET-1: a non-local peer that no traffic reaches */
	in->sin_addr.s_addr = htonl(remote ? 0xc0000201 : 0x7f000001);
	in->sin_port = htons(40000);
	if (client_add(srv, fds[0], &ss) < 0 ||
	    epmd_fuzz_index(srv, fds[0]) < 0) {
		close(fds[1]);
		return;
	}
	s->fd = fds[0];
	s->peer_fd = fds[1];
}

static void epmd_fuzz_close(struct kd_epmd_server *srv,
			    struct epmd_fuzz_slot *s)
{
	int idx = epmd_fuzz_index(srv, s->fd);

	if (idx >= 0)
		client_close(srv, (unsigned)idx);
	close(s->peer_fd);
	s->fd = -1;
	s->peer_fd = -1;
}

/* Reads and drops the replies, so that the server never blocks. */
static void epmd_fuzz_drain(const struct epmd_fuzz_slot *s)
{
	uint8_t buf[4096];

	while (recv(s->peer_fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/* Runs the server's event handler until it has read what was written. */
static void epmd_fuzz_serve(struct kd_epmd_server *srv,
			    struct epmd_fuzz_slot *s)
{
	int idx, ret, rounds;

	for (rounds = 0; rounds < 64; rounds++) {
		idx = epmd_fuzz_index(srv, s->fd);
		kd_fuzz_check(idx >= 0);
		ret = client_event(srv, (unsigned)idx, POLLIN);
		epmd_fuzz_drain(s);
		if (ret < 0) {
			epmd_fuzz_close(srv, s);
			return;
		}
		kd_fuzz_check(srv->clients[idx]->in_len <= EPMD_INBUF);
		if (srv->clients[idx]->reg)
			return;
		/* Stop once the socket is empty. */
		if (recv(s->fd, &(uint8_t){0}, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
			return;
	}
}

int kd_fuzz_epmd_server(const uint8_t *data, size_t size)
{
	struct kd_epmd_server_config cfg = { .port = 4369, .max_clients = 8 };
	struct epmd_fuzz_slot slots[EPMD_FUZZ_CLIENTS];
	struct kd_fuzz_in in = { data, size };
	struct kd_epmd_server *srv;
	const uint8_t *bytes;
	unsigned i;
	size_t n;

	srv = server_alloc(&cfg);
	if (!srv)
		return 0;
	srv->port = cfg.port;
	for (i = 0; i < EPMD_FUZZ_CLIENTS; i++)
		slots[i].fd = slots[i].peer_fd = -1;

	while (in.len >= 2) {
		uint8_t cmd = kd_fuzz_byte(&in), len = kd_fuzz_byte(&in);
		struct epmd_fuzz_slot *s = &slots[cmd & 3];

		if (cmd & 8) {
			if (s->fd >= 0)
				epmd_fuzz_close(srv, s);
			continue;
		}
		if (s->fd < 0)
			epmd_fuzz_open(srv, s, cmd & 4);
		if (s->fd < 0)
			continue;
		n = kd_fuzz_take(&in, cmd & 16 ? (size_t)len * 16 : len, &bytes);
		if (n && send(s->peer_fd, bytes, n, MSG_NOSIGNAL) < 0)
			continue;
		epmd_fuzz_serve(srv, s);
	}
	for (i = 0; i < EPMD_FUZZ_CLIENTS; i++) {
		if (slots[i].peer_fd >= 0)
			close(slots[i].peer_fd);
	}
	close_all(srv);
	return 0;
}

KD_FUZZ_TARGET(kd_fuzz_epmd_server)
