// SPDX-License-Identifier: Apache-2.0
/*
 * EPMD codecs, client and server. The server tests run kdist's EPMD on a
 * kernel-chosen loopback port and talk to it with the client and with raw
 * sockets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "epmd.h"
#include "error.h"
#include "log.h"

#define TIMEOUT_MS 2000
#define CLIENT_TIMEOUT_MS 300

/* Log lines of the server, kept so tests can check what it reported. */
static char log_text[16384];
static size_t log_len;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void capture_log(void *user, enum kd_log_level level, const char *line)
{
	size_t n = strlen(line);

	pthread_mutex_lock(&log_lock);
	if (log_len + n + 2 < sizeof(log_text)) {
		memcpy(log_text + log_len, line, n);
		log_len += n;
		log_text[log_len++] = '\n';
		log_text[log_len] = '\0';
	}
	pthread_mutex_unlock(&log_lock);
}

static bool log_contains(const char *needle)
{
	bool found;

	pthread_mutex_lock(&log_lock);
	found = strstr(log_text, needle) != NULL;
	pthread_mutex_unlock(&log_lock);
	return found;
}

static void make_node(struct kd_epmd_node *node, const char *name,
		      uint16_t port)
{
	memset(node, 0, sizeof(*node));
	snprintf(node->name, sizeof(node->name), "%s", name);
	node->port = port;
	node->node_type = 77;
	node->protocol = 0;
	node->high_version = 6;
	node->low_version = 6;
}

/* PORT2_RESP for node "ab" on port 4711 with Extra "x". */
static const uint8_t port2_ok[] = {
    119, 0, 0x12, 0x67, 72, 0, 0, 6, 0, 5, 0, 2, 'a', 'b', 0, 1, 'x',
};

/* Encoders */

static void test_alive2_req_layout(void **state)
{
	static const uint8_t expect[] = {
	    0, 16, 120, 0x12, 0x67, 77,	 0,   0, 6,
	    0, 6,  0,	3,    'f',  'o', 'o', 0, 0,
	};
	struct kd_epmd_node node;
	uint8_t buf[64];

	make_node(&node, "foo", 4711);
	assert_int_equal(kd_epmd_encode_alive2_req(buf, sizeof(buf), &node),
			 sizeof(expect));
	assert_memory_equal(buf, expect, sizeof(expect));
}

static void test_alive2_req_extra(void **state)
{
	struct kd_epmd_node node;
	uint8_t buf[64];

	make_node(&node, "n", 1);
	node.extra_len = 2;
	node.extra[0] = 'x';
	node.extra[1] = 'y';
	assert_int_equal(kd_epmd_encode_alive2_req(buf, sizeof(buf), &node),
			 18);
	assert_int_equal(buf[1], 16);
	assert_int_equal(buf[15], 2);
	assert_memory_equal(buf + 16, "xy", 2);
}

static void test_alive2_req_rejects(void **state)
{
	struct kd_epmd_node node;
	uint8_t buf[600];

	make_node(&node, "", 1);
	assert_int_equal(kd_epmd_encode_alive2_req(buf, sizeof(buf), &node),
			 -EINVAL);
	make_node(&node, "foo", 1);
	memset(node.name, 'a', sizeof(node.name)); /* no NUL: 256 bytes */
	assert_int_equal(kd_epmd_encode_alive2_req(buf, sizeof(buf), &node),
			 -ENAMETOOLONG);
	make_node(&node, "foo", 1);
	node.extra_len = sizeof(node.extra) + 1;
	assert_int_equal(kd_epmd_encode_alive2_req(buf, sizeof(buf), &node),
			 -EINVAL);
	make_node(&node, "foo", 1);
	assert_int_equal(kd_epmd_encode_alive2_req(buf, 17, &node), -ENOSPC);
	assert_int_equal(kd_epmd_encode_alive2_req(buf, 18, &node), 18);
}

static void test_alive2_req_max_name(void **state)
{
	struct kd_epmd_node node;
	uint8_t buf[600];

	make_node(&node, "", 1);
	memset(node.name, 'a', KD_EPMD_MAX_NAME);
	node.name[KD_EPMD_MAX_NAME] = '\0';
	assert_int_equal(kd_epmd_encode_alive2_req(buf, sizeof(buf), &node),
			 2 + 13 + KD_EPMD_MAX_NAME);
	assert_int_equal(buf[12], KD_EPMD_MAX_NAME);
}

static void test_port_please2_req(void **state)
{
	static const uint8_t expect[] = {0, 4, 122, 'f', 'o', 'o'};
	char long_name[KD_EPMD_MAX_NAME + 2];
	uint8_t buf[300];

	assert_int_equal(
	    kd_epmd_encode_port_please2_req(buf, sizeof(buf), "foo"),
	    sizeof(expect));
	assert_memory_equal(buf, expect, sizeof(expect));
	assert_int_equal(kd_epmd_encode_port_please2_req(buf, 5, "foo"),
			 -ENOSPC);
	assert_int_equal(kd_epmd_encode_port_please2_req(buf, sizeof(buf), ""),
			 -EINVAL);
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_int_equal(
	    kd_epmd_encode_port_please2_req(buf, sizeof(buf), long_name),
	    -ENAMETOOLONG);
}

static void test_names_req(void **state)
{
	static const uint8_t expect[] = {0, 1, 110};
	uint8_t buf[3];

	assert_int_equal(kd_epmd_encode_names_req(buf, sizeof(buf)), 3);
	assert_memory_equal(buf, expect, sizeof(expect));
	assert_int_equal(kd_epmd_encode_names_req(buf, 2), -ENOSPC);
}

/* ALIVE2 reply decoder */

static void test_alive2_x_resp(void **state)
{
	static const uint8_t resp[] = {118, 0, 0x01, 0x02, 0x03, 0x04, 0xee};
	uint32_t creation = 0;
	uint8_t result = 9;

	assert_int_equal(
	    kd_epmd_decode_alive2_resp(resp, sizeof(resp), &result, &creation),
	    6);
	assert_int_equal(result, 0);
	assert_int_equal(creation, 0x01020304);
}

static void test_alive2_old_resp(void **state)
{
	static const uint8_t resp[] = {121, 1, 0x00, 0x03};
	uint32_t creation = 0;
	uint8_t result = 0;

	assert_int_equal(
	    kd_epmd_decode_alive2_resp(resp, sizeof(resp), &result, &creation),
	    4);
	assert_int_equal(result, 1);
	assert_int_equal(creation, 3);
}

static void test_alive2_resp_truncated(void **state)
{
	static const uint8_t x_resp[] = {118, 0, 1, 2, 3, 4};
	static const uint8_t old_resp[] = {121, 0, 0, 2};
	uint32_t creation = 77;
	uint8_t result = 77;
	size_t len;

	for (len = 0; len < sizeof(x_resp); len++)
		assert_int_equal(
		    kd_epmd_decode_alive2_resp(x_resp, len, &result, &creation),
		    0);
	for (len = 0; len < sizeof(old_resp); len++)
		assert_int_equal(kd_epmd_decode_alive2_resp(old_resp, len,
							    &result, &creation),
				 0);
	assert_int_equal(result, 77);
	assert_int_equal(creation, 77);
}

static void test_alive2_resp_bad_op(void **state)
{
	uint8_t resp[6] = {119, 0, 0, 0, 0, 1};
	uint32_t creation;
	uint8_t result;
	unsigned op;

	for (op = 0; op < 256; op++) {
		resp[0] = (uint8_t)op;
		if (op == 118 || op == 121)
			continue;
		assert_int_equal(
		    kd_epmd_decode_alive2_resp(resp, 1, &result, &creation),
		    -EBADMSG);
	}
}

/* PORT2 reply decoder */

static void test_port2_resp_ok(void **state)
{
	struct kd_epmd_node node;
	uint8_t result = 9;

	assert_int_equal(kd_epmd_decode_port2_resp(port2_ok, sizeof(port2_ok),
						   &result, &node),
			 sizeof(port2_ok));
	assert_int_equal(result, 0);
	assert_string_equal(node.name, "ab");
	assert_int_equal(node.port, 4711);
	assert_int_equal(node.node_type, 72);
	assert_int_equal(node.protocol, 0);
	assert_int_equal(node.high_version, 6);
	assert_int_equal(node.low_version, 5);
	assert_int_equal(node.extra_len, 1);
	assert_int_equal(node.extra[0], 'x');
}

static void test_port2_resp_not_found(void **state)
{
	static const uint8_t resp[] = {119, 1};
	struct kd_epmd_node node;
	uint8_t result = 0;

	node.port = 1234;
	assert_int_equal(
	    kd_epmd_decode_port2_resp(resp, sizeof(resp), &result, &node), 2);
	assert_int_equal(result, 1);
	assert_int_equal(node.port, 1234);
}

static void test_port2_resp_truncated(void **state)
{
	struct kd_epmd_node node;
	uint8_t result = 77;
	size_t len;

	node.port = 1234;
	for (len = 0; len < sizeof(port2_ok); len++)
		assert_int_equal(
		    kd_epmd_decode_port2_resp(port2_ok, len, &result, &node),
		    0);
	assert_int_equal(result, 77);
	assert_int_equal(node.port, 1234);
}

static void test_port2_resp_bad_op(void **state)
{
	static const uint8_t resp[] = {118, 0, 0, 0};
	struct kd_epmd_node node;
	uint8_t result;

	assert_int_equal(kd_epmd_decode_port2_resp(resp, 1, &result, &node),
			 -EBADMSG);
	assert_int_equal(
	    kd_epmd_decode_port2_resp(resp, sizeof(resp), &result, &node),
	    -EBADMSG);
}

static void test_port2_resp_bogus_lengths(void **state)
{
	struct kd_epmd_node node;
	uint8_t resp[1100];
	uint8_t result = 77;

	/* NLen 0 */
	memcpy(resp, port2_ok, 12);
	resp[10] = 0;
	resp[11] = 0;
	assert_int_equal(
	    kd_epmd_decode_port2_resp(resp, sizeof(resp), &result, &node),
	    -EBADMSG);
	/* NLen 256 and 65535: longer than any node name */
	resp[10] = 1;
	assert_int_equal(kd_epmd_decode_port2_resp(resp, 12, &result, &node),
			 -EMSGSIZE);
	resp[10] = 0xff;
	resp[11] = 0xff;
	assert_int_equal(kd_epmd_decode_port2_resp(resp, 12, &result, &node),
			 -EMSGSIZE);
	/* ELen 257 and 65535: longer than struct kd_epmd_node stores */
	memcpy(resp, port2_ok, sizeof(port2_ok));
	resp[14] = 1;
	resp[15] = 1;
	assert_int_equal(kd_epmd_decode_port2_resp(resp, 16, &result, &node),
			 -EMSGSIZE);
	resp[14] = 0xff;
	resp[15] = 0xff;
	assert_int_equal(
	    kd_epmd_decode_port2_resp(resp, sizeof(resp), &result, &node),
	    -EMSGSIZE);
	assert_int_equal(result, 77);
}

static void test_port2_resp_max_name(void **state)
{
	struct kd_epmd_node node;
	uint8_t resp[12 + KD_EPMD_MAX_NAME + 2];
	uint8_t result = 9;

	memcpy(resp, port2_ok, 10);
	resp[10] = 0;
	resp[11] = KD_EPMD_MAX_NAME;
	memset(resp + 12, 'n', KD_EPMD_MAX_NAME);
	resp[12 + KD_EPMD_MAX_NAME] = 0;
	resp[13 + KD_EPMD_MAX_NAME] = 0;
	assert_int_equal(
	    kd_epmd_decode_port2_resp(resp, sizeof(resp), &result, &node),
	    sizeof(resp));
	assert_int_equal(strlen(node.name), KD_EPMD_MAX_NAME);
	assert_int_equal(node.extra_len, 0);
}

/* Server fixture and helpers */

static int server_setup(void **state)
{
	struct kd_epmd_server_config cfg = {
	    .port = 0,
	    .loopback_only = 1,
	    .client_timeout_ms = CLIENT_TIMEOUT_MS,
	};
	struct kd_epmd_server *srv = NULL;

	log_len = 0;
	log_text[0] = '\0';
	kd_log_configure(capture_log, NULL, KD_LOG_DEBUG);
	if (kd_epmd_server_start_config(&cfg, &srv) < 0)
		return -1;
	*state = srv;
	return 0;
}

static int server_teardown(void **state)
{
	kd_epmd_server_stop(*state);
	kd_log_configure(NULL, NULL, KD_LOG_INFO);
	return 0;
}

static uint16_t srv_port(void **state)
{
	return kd_epmd_server_port(*state);
}

static int raw_connect(uint16_t port)
{
	struct sockaddr_in sa = {
	    .sin_family = AF_INET,
	    .sin_port = htons(port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Reads until @len bytes or EOF, at most TIMEOUT_MS; returns bytes read. */
static size_t raw_read(int fd, uint8_t *buf, size_t len)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	size_t have = 0;
	ssize_t n;

	while (have < len && poll(&pfd, 1, TIMEOUT_MS) == 1) {
		n = recv(fd, buf + have, len - have, 0);
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	return have;
}

/* True if the server closes @fd within TIMEOUT_MS. */
static bool closed_by_server(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	uint8_t byte;

	if (poll(&pfd, 1, TIMEOUT_MS) != 1)
		return false;
	return recv(fd, &byte, 1, 0) <= 0;
}

static int register_node(void **state, const char *name, uint16_t port, int *fd,
			 uint32_t *creation)
{
	struct kd_epmd_node node;

	make_node(&node, name, port);
	return kd_epmd_register("127.0.0.1", srv_port(state), &node, TIMEOUT_MS,
				fd, creation);
}

/* Looks @name up until the result is @expect or TIMEOUT_MS passes, because
 * the server notices a closed registration a moment after the close. */
static int port_please_until(void **state, const char *name, int expect,
			     struct kd_epmd_node *out)
{
	int ret, tries;

	for (tries = 0; tries < 100; tries++) {
		ret = kd_epmd_port_please("localhost", srv_port(state), name,
					  TIMEOUT_MS, out);
		if (ret == expect)
			break;
		usleep(20000);
	}
	return ret;
}

/* Server tests */

static void test_server_register_lookup(void **state)
{
	struct kd_epmd_node node;
	uint32_t creation = 0;
	int fd = -1;

	assert_int_equal(register_node(state, "alpha", 4711, &fd, &creation),
			 0);
	assert_true(fd >= 0);
	assert_true(creation >= 4);
	assert_int_equal(kd_epmd_port_please("127.0.0.1", srv_port(state),
					     "alpha", TIMEOUT_MS, &node),
			 0);
	assert_int_equal(node.port, 4711);
	assert_string_equal(node.name, "alpha");
	assert_int_equal(node.node_type, 77);
	assert_int_equal(node.high_version, 6);
	assert_int_equal(node.low_version, 6);
	assert_true(log_contains("registered 'alpha' port 4711"));
	close(fd);
}

static void test_server_ipv6_lookup(void **state)
{
	struct kd_epmd_node node;
	uint32_t creation;
	int fd, ret;

	assert_int_equal(register_node(state, "six", 99, &fd, &creation), 0);
	ret = kd_epmd_port_please("::1", srv_port(state), "six", TIMEOUT_MS,
				  &node);
	if (ret == -EADDRNOTAVAIL || ret == -EAFNOSUPPORT ||
	    ret == -ENETUNREACH) {
		close(fd);
		skip();
	}
	assert_int_equal(ret, 0);
	assert_int_equal(node.port, 99);
	close(fd);
}

static void test_server_unknown_name(void **state)
{
	struct kd_epmd_node node;

	assert_int_equal(kd_epmd_port_please("127.0.0.1", srv_port(state),
					     "nobody", TIMEOUT_MS, &node),
			 -ENOENT);
	assert_non_null(strstr(kd_last_error(), "'nobody' is not registered"));
}

static void test_server_duplicate_name(void **state)
{
	uint32_t creation;
	int fd1, fd2 = -1;

	assert_int_equal(register_node(state, "dup", 1000, &fd1, &creation), 0);
	assert_int_equal(register_node(state, "dup", 1001, &fd2, &creation),
			 -EEXIST);
	assert_int_equal(fd2, -1);
	assert_non_null(
	    strstr(kd_last_error(), "name 'dup' is already registered"));
	assert_true(log_contains("rejected registration of 'dup'"));
	close(fd1);
}

static void test_server_drops_on_close(void **state)
{
	struct kd_epmd_node node;
	uint32_t creation;
	int fd;

	assert_int_equal(register_node(state, "gone", 1000, &fd, &creation), 0);
	close(fd);
	assert_int_equal(port_please_until(state, "gone", -ENOENT, &node),
			 -ENOENT);
	assert_true(log_contains("unregistered 'gone' port 1000"));
	/* The name is free again and gets the next creation. */
	assert_int_equal(register_node(state, "gone", 1001, &fd, &creation), 0);
	close(fd);
}

static void test_server_creation_bumps(void **state)
{
	struct kd_epmd_node node;
	uint32_t first, second;
	int fd;

	assert_int_equal(register_node(state, "cr", 1, &fd, &first), 0);
	close(fd);
	assert_int_equal(port_please_until(state, "cr", -ENOENT, &node),
			 -ENOENT);
	assert_int_equal(register_node(state, "cr", 1, &fd, &second), 0);
	assert_true(second >= 4);
	assert_true(second == first + 1 ||
		    (first == UINT32_MAX && second == 4));
	close(fd);
}

static void test_server_old_alive2_resp(void **state)
{
	struct kd_epmd_node node;
	uint8_t req[64], resp[8];
	uint32_t creation;
	uint8_t result;
	int fd, len;

	make_node(&node, "old", 5);
	node.high_version = 5;
	node.low_version = 5;
	len = kd_epmd_encode_alive2_req(req, sizeof(req), &node);
	fd = raw_connect(srv_port(state));
	assert_int_equal(send(fd, req, (size_t)len, 0), len);
	assert_int_equal(raw_read(fd, resp, 4), 4);
	assert_int_equal(resp[0], KD_EPMD_ALIVE2_RESP);
	assert_int_equal(
	    kd_epmd_decode_alive2_resp(resp, 4, &result, &creation), 4);
	assert_int_equal(result, 0);
	assert_in_range(creation, 1, 3);
	close(fd);
}

static void test_server_names_text(void **state)
{
	uint32_t creation;
	uint16_t epmd_port = 0;
	char *text = NULL;
	int fd1, fd2;

	assert_int_equal(register_node(state, "one", 1111, &fd1, &creation), 0);
	assert_int_equal(register_node(state, "two", 2222, &fd2, &creation), 0);
	assert_int_equal(kd_epmd_names("127.0.0.1", srv_port(state), TIMEOUT_MS,
				       &epmd_port, &text),
			 0);
	assert_int_equal(epmd_port, srv_port(state));
	assert_non_null(strstr(text, "name one at port 1111\n"));
	assert_non_null(strstr(text, "name two at port 2222\n"));
	assert_int_equal(strlen(text), strlen("name one at port 1111\n") +
					   strlen("name two at port 2222\n"));
	free(text);
	close(fd1);
	close(fd2);
}

static void test_server_names_empty(void **state)
{
	uint16_t epmd_port = 0;
	char *text = NULL;

	assert_int_equal(kd_epmd_names("127.0.0.1", srv_port(state), TIMEOUT_MS,
				       &epmd_port, &text),
			 0);
	assert_string_equal(text, "");
	assert_int_equal(epmd_port, srv_port(state));
	free(text);
}

static void test_server_port_in_use(void **state)
{
	struct kd_epmd_server *second = NULL;

	assert_int_equal(kd_epmd_server_start(srv_port(state), 1, &second),
			 -EADDRINUSE);
	assert_null(second);
	assert_non_null(strstr(kd_last_error(), "is already in use"));
}

static void test_server_garbage_client(void **state)
{
	static const uint8_t junk[] = {0xff, 0xff, 'G', 'E', 'T', ' '};
	struct kd_epmd_node node;
	uint32_t creation;
	int bad, fd;

	bad = raw_connect(srv_port(state));
	assert_int_equal(send(bad, junk, sizeof(junk), 0), sizeof(junk));
	assert_true(closed_by_server(bad));
	close(bad);
	assert_true(log_contains("request length of 65535 bytes"));
	assert_true(log_contains("client 127.0.0.1:"));

	assert_int_equal(register_node(state, "good", 7, &fd, &creation), 0);
	assert_int_equal(kd_epmd_port_please("127.0.0.1", srv_port(state),
					     "good", TIMEOUT_MS, &node),
			 0);
	assert_int_equal(node.port, 7);
	close(fd);
}

static void test_server_unknown_op(void **state)
{
	static const uint8_t req[] = {0, 1, 42};
	int fd = raw_connect(srv_port(state));

	assert_int_equal(send(fd, req, sizeof(req), 0), sizeof(req));
	assert_true(closed_by_server(fd));
	assert_true(log_contains("unknown request 42"));
	close(fd);
}

static void test_server_bad_alive2_lengths(void **state)
{
	/* NLen 200 in a 14-byte body */
	static const uint8_t req[] = {0, 14, 120, 0, 1,	  77,  0, 0,
				      6, 0,  6,	  0, 200, 'a', 0, 0};
	int fd = raw_connect(srv_port(state));

	assert_int_equal(send(fd, req, sizeof(req), 0), sizeof(req));
	assert_true(closed_by_server(fd));
	assert_true(log_contains("name length 200 exceeds the request"));
	close(fd);
}

static void test_server_idle_timeout(void **state)
{
	static const uint8_t partial[] = {0, 5, 122};
	int fd = raw_connect(srv_port(state));

	assert_int_equal(send(fd, partial, sizeof(partial), 0),
			 sizeof(partial));
	assert_true(closed_by_server(fd));
	assert_true(log_contains("no complete request within 300 ms"));
	close(fd);
}

static void test_server_data_after_alive2(void **state)
{
	struct kd_epmd_node node;
	uint32_t creation;
	int fd;

	assert_int_equal(register_node(state, "chatty", 5, &fd, &creation), 0);
	assert_int_equal(send(fd, "x", 1, 0), 1);
	assert_true(closed_by_server(fd));
	assert_int_equal(port_please_until(state, "chatty", -ENOENT, &node),
			 -ENOENT);
	close(fd);
}

static void test_server_kill_rejected(void **state)
{
	static const uint8_t req[] = {0, 1, KD_EPMD_KILL_REQ};
	uint8_t resp[4];
	int fd = raw_connect(srv_port(state));

	assert_int_equal(send(fd, req, sizeof(req), 0), sizeof(req));
	assert_int_equal(raw_read(fd, resp, sizeof(resp)), 2);
	assert_memory_equal(resp, "NO", 2);
	close(fd);
}

static void test_server_name_too_long(void **state)
{
	static uint8_t req[2 + 13 + 1021];
	uint8_t resp[8];
	uint32_t creation;
	uint8_t result = 0;
	int fd;

	/* 1021 bytes: one past epmd's 255 four-byte characters. */
	memset(req, 'a', sizeof(req));
	req[0] = (sizeof(req) - 2) >> 8;
	req[1] = (sizeof(req) - 2) & 0xff;
	req[2] = KD_EPMD_ALIVE2_REQ;
	req[5] = 77;
	req[6] = 0;
	req[7] = 0;
	req[8] = 6;
	req[9] = 0;
	req[10] = 6;
	req[11] = 1021 >> 8;
	req[12] = 1021 & 0xff;
	req[sizeof(req) - 2] = 0;
	req[sizeof(req) - 1] = 0;
	fd = raw_connect(srv_port(state));
	assert_int_equal(send(fd, req, sizeof(req), 0), sizeof(req));
	assert_int_equal(raw_read(fd, resp, 6), 6);
	assert_int_equal(
	    kd_epmd_decode_alive2_resp(resp, 6, &result, &creation), 6);
	assert_int_equal(result, 1);
	assert_true(closed_by_server(fd));
	assert_true(log_contains("name of 1021 bytes"));
	close(fd);
}

static void test_server_invalid_utf8(void **state)
{
	struct kd_epmd_node node;
	uint32_t creation;
	int fd = -1;

	make_node(&node, "bad\xc3(", 1);
	assert_int_equal(kd_epmd_register("127.0.0.1", srv_port(state), &node,
					  TIMEOUT_MS, &fd, &creation),
			 -EEXIST);
	assert_true(log_contains("not 1 to 255 characters of UTF-8"));
	make_node(&node, "caf\xc3\xa9", 1);
	assert_int_equal(kd_epmd_register("127.0.0.1", srv_port(state), &node,
					  TIMEOUT_MS, &fd, &creation),
			 0);
	close(fd);
}

/* Client failures without a server */

static void test_client_refused(void **state)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	struct kd_epmd_node node;
	uint16_t port;
	int fd;

	/* A port that was just free and has no listener. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);

	assert_int_equal(
	    kd_epmd_port_please("127.0.0.1", port, "x", TIMEOUT_MS, &node),
	    -ECONNREFUSED);
	assert_non_null(strstr(kd_last_error(), "Connection refused"));
	assert_non_null(strstr(kd_last_error(), "is epmd running?"));
}

static void test_client_bad_host(void **state)
{
	struct kd_epmd_node node;
	int ret;

	ret = kd_epmd_port_please("no-such-host.invalid", 4369, "x", TIMEOUT_MS,
				  &node);
	assert_true(ret < 0);
	assert_non_null(strstr(kd_last_error(), "cannot resolve host"));
}

static void test_client_name_too_long(void **state)
{
	char name[KD_EPMD_MAX_NAME + 2];
	struct kd_epmd_node node;

	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	assert_int_equal(
	    kd_epmd_port_please("127.0.0.1", 4369, name, TIMEOUT_MS, &node),
	    -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest codec[] = {
	    cmocka_unit_test(test_alive2_req_layout),
	    cmocka_unit_test(test_alive2_req_extra),
	    cmocka_unit_test(test_alive2_req_rejects),
	    cmocka_unit_test(test_alive2_req_max_name),
	    cmocka_unit_test(test_port_please2_req),
	    cmocka_unit_test(test_names_req),
	    cmocka_unit_test(test_alive2_x_resp),
	    cmocka_unit_test(test_alive2_old_resp),
	    cmocka_unit_test(test_alive2_resp_truncated),
	    cmocka_unit_test(test_alive2_resp_bad_op),
	    cmocka_unit_test(test_port2_resp_ok),
	    cmocka_unit_test(test_port2_resp_not_found),
	    cmocka_unit_test(test_port2_resp_truncated),
	    cmocka_unit_test(test_port2_resp_bad_op),
	    cmocka_unit_test(test_port2_resp_bogus_lengths),
	    cmocka_unit_test(test_port2_resp_max_name),
	    cmocka_unit_test(test_client_refused),
	    cmocka_unit_test(test_client_bad_host),
	    cmocka_unit_test(test_client_name_too_long),
	};
#define SERVER_TEST(fn)                                                        \
	cmocka_unit_test_setup_teardown(fn, server_setup, server_teardown)
	const struct CMUnitTest server[] = {
	    SERVER_TEST(test_server_register_lookup),
	    SERVER_TEST(test_server_ipv6_lookup),
	    SERVER_TEST(test_server_unknown_name),
	    SERVER_TEST(test_server_duplicate_name),
	    SERVER_TEST(test_server_drops_on_close),
	    SERVER_TEST(test_server_creation_bumps),
	    SERVER_TEST(test_server_old_alive2_resp),
	    SERVER_TEST(test_server_names_text),
	    SERVER_TEST(test_server_names_empty),
	    SERVER_TEST(test_server_port_in_use),
	    SERVER_TEST(test_server_garbage_client),
	    SERVER_TEST(test_server_unknown_op),
	    SERVER_TEST(test_server_bad_alive2_lengths),
	    SERVER_TEST(test_server_idle_timeout),
	    SERVER_TEST(test_server_data_after_alive2),
	    SERVER_TEST(test_server_kill_rejected),
	    SERVER_TEST(test_server_invalid_utf8),
	    SERVER_TEST(test_server_name_too_long),
	};
	int failed;

	failed = cmocka_run_group_tests_name("epmd codec", codec, NULL, NULL);
	failed +=
	    cmocka_run_group_tests_name("epmd server", server, NULL, NULL);
	return failed ? 1 : 0;
}
