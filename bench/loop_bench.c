// SPDX-License-Identifier: Apache-2.0
/*
 * Throughput of the data loop between two attached ends of a loopback TCP
 * connection, plain and user-space TLS, for 64-byte and 64 KiB packets.
 * Informative only: the numbers depend on the machine and its load.
 *
 *   make lib
 *   cc -O2 -D_GNU_SOURCE -Iinclude -Iengine -Iuring -Iktls \
 *      bench/loop_bench.c build/libkdist.a -lssl -lcrypto -luring \
 *      -pthread -o build/loop_bench
 *   build/loop_bench [seconds per case, default 2]
 *
 * Prints one line per case: path, packet size, MB/s of payload, msgs/s,
 * and io_uring_enter calls per MB received.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "log.h"
#include "loop.h"

struct end {
	atomic_uint_least64_t bytes, msgs;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool writable;
};

static void on_packet(void *user, struct kd_link *link, const uint8_t *data,
		      size_t len)
{
	struct end *e = user;

	atomic_fetch_add_explicit(&e->bytes, len, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->msgs, 1, memory_order_relaxed);
}

static void on_closed(void *user, struct kd_link *link, int err,
		      const char *reason)
{
}

static void on_writable(void *user, struct kd_link *link)
{
	struct end *e = user;

	pthread_mutex_lock(&e->lock);
	e->writable = true;
	pthread_cond_signal(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int tcp_pair(int fds[2])
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t salen = sizeof(sa);
	int lfd, one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(lfd, 1) || getsockname(lfd, (struct sockaddr *)&sa, &salen))
		return -errno;
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&sa, sizeof(sa)))
		return -errno;
	fds[1] = accept(lfd, NULL, NULL);
	close(lfd);
	if (fds[1] < 0)
		return -errno;
	setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

static SSL_CTX *server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = X509_new();
	X509_NAME *name;

	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), -60);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
	X509_set_pubkey(cert, key);
	name = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)"bench", -1, -1, 0);
	X509_set_issuer_name(cert, name);
	X509_sign(cert, key, EVP_sha256());
	SSL_CTX_use_certificate(ctx, cert);
	SSL_CTX_use_PrivateKey(ctx, key);
	X509_free(cert);
	EVP_PKEY_free(key);
	return ctx;
}

static void *accept_main(void *arg)
{
	return (void *)(intptr_t)SSL_accept(arg);
}

/* Handshakes TLS 1.3 over @fds; the loop takes both SSL objects. */
static int tls_pair(int fds[2], SSL **client, SSL **server)
{
	static SSL_CTX *sctx, *cctx;
	pthread_t t;
	void *ok;

	if (!sctx) {
		sctx = server_ctx();
		cctx = SSL_CTX_new(TLS_client_method());
	}
	*client = SSL_new(cctx);
	*server = SSL_new(sctx);
	SSL_set_fd(*client, fds[0]);
	SSL_set_fd(*server, fds[1]);
	pthread_create(&t, NULL, accept_main, *server);
	if (SSL_connect(*client) != 1)
		return -EPROTO;
	pthread_join(t, &ok);
	return (intptr_t)ok == 1 ? 0 : -EPROTO;
}

static void send_until(struct kd_link *link, struct end *tx, size_t size,
		       double stop)
{
	static uint8_t payload[64 * 1024];
	struct iovec iov = { payload, size };
	unsigned n = 0;
	int ret;

	while ((n++ & 255) || now_s() < stop) {
		ret = kd_link_send(link, &iov, 1, 0);
		if (ret == 0)
			continue;
		if (ret != -EAGAIN)
			return;
		pthread_mutex_lock(&tx->lock);
		while (!tx->writable)
			pthread_cond_wait(&tx->cond, &tx->lock);
		tx->writable = false;
		pthread_mutex_unlock(&tx->lock);
	}
}

static int run_case(struct kd_loop *loop, enum kd_record_path path,
		    size_t size, double seconds)
{
	struct end tx = { 0 }, rx = { 0 };
	struct kd_link_params p = {
		.path = path,
		.max_packet = 1 << 20,
		.send_queue_limit = 4 << 20,
		.peer = "bench",
		.cb = { on_packet, on_closed, on_writable },
	};
	struct kd_link *a, *b;
	struct kd_link_stats st0, st1;
	SSL *client = NULL, *server = NULL;
	double t0, t1;
	uint64_t bytes0;
	int fds[2], ret;

	pthread_mutex_init(&tx.lock, NULL);
	pthread_cond_init(&tx.cond, NULL);
	ret = tcp_pair(fds);
	if (ret == 0 && path == KD_PATH_USER_TLS)
		ret = tls_pair(fds, &client, &server);
	if (ret < 0)
		return ret;

	p.fd = fds[0];
	p.ssl = client;
	p.user = &tx;
	if (kd_loop_attach(loop, &p, &a) < 0)
		return -EIO;
	p.fd = fds[1];
	p.ssl = server;
	p.user = &rx;
	if (kd_loop_attach(loop, &p, &b) < 0)
		return -EIO;

	send_until(a, &tx, size, now_s() + 0.2); /* warm-up */
	kd_link_get_stats(b, &st0);
	bytes0 = atomic_load(&rx.bytes);
	t0 = now_s();
	send_until(a, &tx, size, t0 + seconds);
	t1 = now_s();
	kd_link_get_stats(b, &st1);

	printf("path=%s size=%zu MB/s=%.1f msgs/s=%.0f enter_per_MB=%.2f\n",
	       path == KD_PATH_PLAIN ? "plain" : "user_tls", size,
	       (atomic_load(&rx.bytes) - bytes0) / (t1 - t0) / 1e6,
	       (st1.msgs_in - st0.msgs_in) / (t1 - t0),
	       (double)(st1.syscalls - st0.syscalls) /
		       ((st1.bytes_in - st0.bytes_in) / 1e6 + 1e-9));
	kd_link_close(a, 0, "bench done");
	kd_link_close(b, 0, "bench done");
	kd_link_release(a);
	kd_link_release(b);
	return 0;
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 64, 64 * 1024 };
	static const enum kd_record_path paths[] = { KD_PATH_PLAIN,
						     KD_PATH_USER_TLS };
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	struct kd_loop *loop;
	size_t i, j;
	int ret;

	kd_log_configure(NULL, NULL, KD_LOG_WARN);
	ret = kd_loop_create(2, &loop);
	if (ret < 0) {
		fprintf(stderr, "loop_bench: kd_loop_create failed: %s\n",
			strerror(-ret));
		return 1;
	}
	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		for (j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++)
			if (run_case(loop, paths[i], sizes[j], seconds) < 0)
				fprintf(stderr, "loop_bench: case failed\n");
	kd_loop_destroy(loop);
	return 0;
}
