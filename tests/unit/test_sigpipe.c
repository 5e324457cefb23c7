// SPDX-License-Identifier: Apache-2.0
/*
 * A node embedded in a process that keeps SIGPIPE's default action, as a
 * program that never calls signal(SIGPIPE, ...) does. Clients send a real
 * ClientHello and close at once, so the node writes its reply into a
 * socket the peer has closed. The process must survive: a SIGPIPE would
 * end the test run with status 141.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "epmd.h"
#include "kdist.h"

#define CLOSING_CLIENTS 8

struct env {
	struct kd_epmd_server *epmd;
	char certs[256];
};

static int setup(void **state)
{
	struct kd_epmd_server_config ec = { .loopback_only = 1 };
	struct env *e = calloc(1, sizeof(*e));
	char cmd[600];

	if (!e || kd_epmd_server_start_config(&ec, &e->epmd) != 0)
		return -1;
	snprintf(e->certs, sizeof(e->certs), "/tmp/kdist-test-sigpipe-%d",
		 (int)getpid());
	snprintf(cmd, sizeof(cmd), "tests/certs/mkcerts %s >/dev/null",
		 e->certs);
	if (system(cmd) != 0)
		return -1;
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	char cmd[300];

	kd_epmd_server_stop(e->epmd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", e->certs);
	if (system(cmd) != 0)
		print_error("cannot remove %s\n", e->certs);
	free(e);
	return 0;
}

/* Writes the ClientHello of a fresh client for @version into @buf. */
static int client_hello(int version, unsigned char *buf, size_t size)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
	SSL *ssl;
	int n;

	SSL_CTX_set_min_proto_version(ctx, version);
	SSL_CTX_set_max_proto_version(ctx, version);
	ssl = SSL_new(ctx);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_connect_state(ssl);
	SSL_do_handshake(ssl);
	n = BIO_read(wbio, buf, (int)size);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return n;
}

/* Sends @len bytes of @hello to 127.0.0.1:@port and closes at once. */
static void send_and_close(uint16_t port, const unsigned char *hello,
			   int len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(send(fd, hello, (size_t)len, MSG_NOSIGNAL), len);
	close(fd);
}

static void survive_closed_clients(void **state, const char *conf_name,
				   int version)
{
	struct env *e = *state;
	struct timespec pause = { 0, 50 * 1000 * 1000 };
	struct kdist_node *node = NULL;
	struct kdist_config cfg;
	unsigned char hello[4096];
	char conf[512];
	int len;

	assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
	snprintf(conf, sizeof(conf), "%s/%s", e->certs, conf_name);
	kdist_config_init(&cfg);
	cfg.node_name = "pipe@localhost";
	cfg.cookie = "cookie";
	cfg.epmd_port = kd_epmd_server_port(e->epmd);
	cfg.proto = KDIST_PROTO_INET_TLS;
	cfg.ssl_dist_optfile = conf;
	cfg.log_level = KDIST_LOG_ERROR;
	assert_int_equal(kdist_node_create(&cfg, &node), 0);
	assert_int_equal(kdist_node_start(node), 0);

	len = client_hello(version, hello, sizeof(hello));
	assert_true(len > 0);
	for (int i = 0; i < CLOSING_CLIENTS; i++) {
		send_and_close(kdist_node_port(node), hello, len);
		nanosleep(&pause, NULL);
	}
	/* Still here: the node wrote into closed sockets without SIGPIPE. */
	kdist_node_destroy(node);
}

static void sigpipe_tls13_closed_client(void **state)
{
	survive_closed_clients(state, "dist-tls13.conf", TLS1_3_VERSION);
}

static void sigpipe_tls12_closed_client(void **state)
{
	survive_closed_clients(state, "dist-tls12.conf", TLS1_2_VERSION);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(sigpipe_tls13_closed_client,
						setup, teardown),
		cmocka_unit_test_setup_teardown(sigpipe_tls12_closed_client,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
