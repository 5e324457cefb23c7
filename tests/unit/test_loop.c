// SPDX-License-Identifier: Apache-2.0
/*
 * Data loop tests over real loopback TCP connections. They cover packet
 * framing both ways, random read boundaries, length limits, peers that
 * close or reset, backpressure and closing from other threads. The
 * user-space TLS path runs on TLS 1.2 and 1.3 with renegotiation,
 * KeyUpdate, a tampered record and close_notify. The kernel TLS path
 * needs the kernel's tls module and is not exercised here.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "log.h"
#include "loop.h"
#include "loop_int.h"

#define WAIT_MS 10000

static struct kd_loop *loop;
static unsigned seed;

/* What one attached link received, filled on its data thread. */
struct sink {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const uint32_t *lens; /* expected packet lengths, ticks included */
	unsigned nlens;
	unsigned next;	      /* index into lens of the next packet */
	unsigned packets;
	unsigned bad;	      /* packets with a wrong length or content */
	uint64_t bytes;
	bool echo;
	unsigned closed;
	int err;
	char reason[256];
	unsigned writable;
};

static void sink_init(struct sink *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
}

static void sink_expect(struct sink *s, const uint32_t *lens, unsigned n)
{
	pthread_mutex_lock(&s->lock);
	s->lens = lens;
	s->nlens = n;
	pthread_mutex_unlock(&s->lock);
}

static void sink_destroy(struct sink *s)
{
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
}

/* Packet @seq of @len bytes: a pattern that depends on both. */
static void fill_packet(uint8_t *p, uint32_t len, unsigned seq)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seq * 131 + i * 7);
}

static bool packet_ok(const uint8_t *p, uint32_t len, unsigned seq)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		if (p[i] != (uint8_t)(seq * 131 + i * 7))
			return false;
	return true;
}

static void on_packet(void *user, struct kd_link *link, const uint8_t *data,
		      size_t len)
{
	struct sink *s = user;
	struct iovec iov = { (void *)data, len };

	pthread_mutex_lock(&s->lock);
	/* Ticks are not delivered: skip them in the expected list. */
	while (s->lens && s->next < s->nlens && s->lens[s->next] == 0)
		s->next++;
	if (s->lens) {
		if (s->next >= s->nlens || s->lens[s->next] != len ||
		    !packet_ok(data, len, s->next))
			s->bad++;
		s->next++;
	}
	s->packets++;
	s->bytes += len;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->echo && kd_link_send(link, &iov, 1, KD_SEND_FORCE) < 0)
		kd_link_close(link, -EIO, "echo failed");
}

static void on_closed(void *user, struct kd_link *link, int err,
		      const char *reason)
{
	struct sink *s = user;

	pthread_mutex_lock(&s->lock);
	s->closed++;
	s->err = err;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void on_writable(void *user, struct kd_link *link)
{
	struct sink *s = user;

	pthread_mutex_lock(&s->lock);
	s->writable++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void deadline(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += WAIT_MS / 1000;
}

/* Waits until *@counter reaches @n; returns false on timeout. */
static bool sink_wait(struct sink *s, const unsigned *counter, unsigned n)
{
	struct timespec ts;
	bool ok = true;

	deadline(&ts);
	pthread_mutex_lock(&s->lock);
	while (*counter < n && ok)
		ok = pthread_cond_timedwait(&s->cond, &s->lock, &ts) == 0;
	ok = *counter >= n;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

static void tcp_pair(int fds[2])
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t salen = sizeof(sa);
	int lfd, one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fds[0] >= 0);
	assert_int_equal(connect(fds[0], (struct sockaddr *)&sa, sizeof(sa)), 0);
	fds[1] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(fds[1] >= 0);
	setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(lfd);
}

static struct kd_link *attach(int fd, enum kd_record_path path, SSL *ssl,
			      struct sink *s, uint32_t max_packet,
			      size_t limit)
{
	struct kd_link_params p = {
		.fd = fd,
		.path = path,
		.ssl = ssl,
		.max_packet = max_packet,
		.send_queue_limit = limit,
		.peer = "test",
		.cb = { on_packet, on_closed, on_writable },
		.user = s,
	};
	struct kd_link *link = NULL;

	assert_int_equal(kd_loop_attach(loop, &p, &link), 0);
	return link;
}

static void write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		assert_true(n > 0);
		p += n;
		len -= n;
	}
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* Sends packet @seq, retrying while the queue is full. */
static void send_packet(struct kd_link *link, uint32_t len, unsigned seq)
{
	uint8_t *buf = malloc(len ? len : 1);
	struct iovec iov[2];
	uint32_t half = len / 2;
	int ret;

	assert_non_null(buf);
	fill_packet(buf, len, seq);
	iov[0].iov_base = buf;
	iov[0].iov_len = half;
	iov[1].iov_base = buf + half;
	iov[1].iov_len = len - half;
	while ((ret = kd_link_send(link, iov, 2, 0)) == -EAGAIN)
		usleep(200);
	assert_int_equal(ret, 0);
	free(buf);
}

/* Random lengths: mostly small, some ticks, a few up to 1 MiB. */
static uint32_t *random_lens(unsigned n)
{
	uint32_t *lens = calloc(n, sizeof(*lens));
	unsigned i;

	assert_non_null(lens);
	for (i = 0; i < n; i++) {
		switch (rand() % 10) {
		case 0:
			lens[i] = 0;
			break;
		case 1:
			lens[i] = rand() % (1024 * 1024 + 1);
			break;
		case 2:
			lens[i] = rand() % (200 * 1024);
			break;
		default:
			lens[i] = 1 + rand() % 300;
		}
	}
	lens[n - 1] = 1024 * 1024;
	return lens;
}

static unsigned count_ticks(const uint32_t *lens, unsigned n)
{
	unsigned i, ticks = 0;

	for (i = 0; i < n; i++)
		ticks += lens[i] == 0;
	return ticks;
}

struct sender {
	struct kd_link *link;
	const uint32_t *lens;
	unsigned n;
};

static void *sender_main(void *arg)
{
	struct sender *snd = arg;
	unsigned i;

	for (i = 0; i < snd->n; i++)
		send_packet(snd->link, snd->lens[i], i);
	return NULL;
}

static void test_plain_both_ways(void **state)
{
	enum { N = 300 };
	struct sink a, b;
	struct kd_link *la, *lb;
	struct kd_link_stats st;
	uint32_t *lens_ab = random_lens(N), *lens_ba = random_lens(N);
	struct sender sa, sb;
	pthread_t ta, tb;
	int fds[2];

	sink_init(&a);
	sink_init(&b);
	tcp_pair(fds);
	sink_expect(&b, lens_ab, N);
	sink_expect(&a, lens_ba, N);
	la = attach(fds[0], KD_PATH_PLAIN, NULL, &a, 2 << 20, 0);
	lb = attach(fds[1], KD_PATH_PLAIN, NULL, &b, 2 << 20, 0);

	sa = (struct sender){ la, lens_ab, N };
	sb = (struct sender){ lb, lens_ba, N };
	pthread_create(&ta, NULL, sender_main, &sa);
	pthread_create(&tb, NULL, sender_main, &sb);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);

	assert_true(sink_wait(&b, &b.packets, N - count_ticks(lens_ab, N)));
	assert_true(sink_wait(&a, &a.packets, N - count_ticks(lens_ba, N)));
	assert_int_equal(b.bad, 0);
	assert_int_equal(a.bad, 0);
	kd_link_get_stats(lb, &st);
	assert_int_equal(st.ticks_in, count_ticks(lens_ab, N));
	assert_int_equal(st.msgs_in, N - count_ticks(lens_ab, N));
	assert_true(st.last_rx_ns > 0);
	assert_true(st.syscalls > 0);
	kd_link_get_stats(la, &st);
	assert_int_equal(st.ticks_out, count_ticks(lens_ab, N));
	assert_int_equal(st.msgs_out, N - count_ticks(lens_ab, N));
	assert_true(st.last_tx_ns > 0);

	kd_link_close(la, 0, "test done");
	kd_link_close(lb, 0, "test done");
	assert_true(sink_wait(&a, &a.closed, 1));
	assert_true(sink_wait(&b, &b.closed, 1));
	assert_int_equal(a.closed, 1);
	kd_link_release(la);
	kd_link_release(lb);
	sink_destroy(&a);
	sink_destroy(&b);
	free(lens_ab);
	free(lens_ba);
}

/* Writes packets from the raw peer in pieces of random size. */
static void test_plain_random_splits(void **state)
{
	enum { N = 400 };
	uint32_t *lens = random_lens(N);
	size_t total = 0, off = 0, piece;
	struct sink s;
	struct kd_link *link;
	uint8_t *stream;
	unsigned i;
	int fds[2];

	for (i = 0; i < N; i++)
		total += 4 + lens[i];
	stream = malloc(total);
	assert_non_null(stream);
	for (i = 0; i < N; i++) {
		put_be32(stream + off, lens[i]);
		fill_packet(stream + off + 4, lens[i], i);
		off += 4 + lens[i];
	}

	sink_init(&s);
	s.lens = lens;
	s.nlens = N;
	tcp_pair(fds);
	link = attach(fds[0], KD_PATH_PLAIN, NULL, &s, 2 << 20, 0);
	for (off = 0; off < total; off += piece) {
		piece = rand() % 4 == 0 ? 1 + rand() % 5 : 1 + rand() % 100000;
		if (piece > total - off)
			piece = total - off;
		write_all(fds[1], stream + off, piece);
		if (rand() % 8 == 0)
			usleep(100);
	}

	assert_true(sink_wait(&s, &s.packets, N - count_ticks(lens, N)));
	assert_int_equal(s.bad, 0);
	close(fds[1]);
	assert_true(sink_wait(&s, &s.closed, 1));
	assert_int_equal(s.err, 0);
	assert_string_equal(s.reason, "connection closed by peer");
	kd_link_release(link);
	sink_destroy(&s);
	free(stream);
	free(lens);
}

static void test_plain_oversize_prefix(void **state)
{
	uint8_t prefix[4], pkt[4 + 10];
	struct sink s1, s2;
	struct kd_link *l1, *l2;
	int p1[2], p2[2];

	sink_init(&s1);
	sink_init(&s2);
	tcp_pair(p1);
	tcp_pair(p2);
	l1 = attach(p1[0], KD_PATH_PLAIN, NULL, &s1, 1000, 0);
	l2 = attach(p2[0], KD_PATH_PLAIN, NULL, &s2, 1000, 0);

	put_be32(prefix, 1001);
	write_all(p1[1], prefix, 4);
	assert_true(sink_wait(&s1, &s1.closed, 1));
	assert_int_equal(s1.err, -EMSGSIZE);
	assert_string_equal(s1.reason,
			    "packet length 1001 exceeds the limit 1000 (max_packet)");

	put_be32(pkt, 10);
	fill_packet(pkt + 4, 10, 0);
	write_all(p2[1], pkt, sizeof(pkt));
	assert_true(sink_wait(&s2, &s2.packets, 1));
	assert_int_equal(s2.closed, 0);
	assert_true(packet_ok(pkt + 4, 10, 0));

	kd_link_close(l2, 0, "test done");
	assert_true(sink_wait(&s2, &s2.closed, 1));
	kd_link_release(l1);
	kd_link_release(l2);
	close(p1[1]);
	close(p2[1]);
	sink_destroy(&s1);
	sink_destroy(&s2);
}

static void test_plain_truncated_packet(void **state)
{
	uint8_t buf[4 + 12];
	struct sink s;
	struct kd_link *link;
	int fds[2];

	sink_init(&s);
	tcp_pair(fds);
	link = attach(fds[0], KD_PATH_PLAIN, NULL, &s, 0, 0);
	put_be32(buf, 100);
	memset(buf + 4, 'x', 12);
	write_all(fds[1], buf, sizeof(buf));
	close(fds[1]);

	assert_true(sink_wait(&s, &s.closed, 1));
	assert_int_equal(s.err, -EPROTO);
	assert_string_equal(s.reason,
			    "truncated packet: peer closed 12 bytes into a 100-byte packet");
	assert_int_equal(s.packets, 0);
	kd_link_release(link);
	sink_destroy(&s);
}

static void test_plain_truncated_prefix(void **state)
{
	uint8_t buf[2] = { 0, 0 };
	struct sink s;
	struct kd_link *link;
	int fds[2];

	sink_init(&s);
	tcp_pair(fds);
	link = attach(fds[0], KD_PATH_PLAIN, NULL, &s, 0, 0);
	write_all(fds[1], buf, sizeof(buf));
	close(fds[1]);

	assert_true(sink_wait(&s, &s.closed, 1));
	assert_int_equal(s.err, -EPROTO);
	assert_string_equal(s.reason,
			    "truncated packet: peer closed 2 bytes into a 4-byte length prefix");
	kd_link_release(link);
	sink_destroy(&s);
}

static void test_plain_peer_reset(void **state)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct sink s;
	struct kd_link *link;
	int fds[2];

	sink_init(&s);
	tcp_pair(fds);
	link = attach(fds[0], KD_PATH_PLAIN, NULL, &s, 0, 0);
	assert_int_equal(setsockopt(fds[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(fds[1]);

	assert_true(sink_wait(&s, &s.closed, 1));
	assert_int_equal(s.err, -ECONNRESET);
	assert_string_equal(s.reason, "connection reset by peer");
	kd_link_release(link);
	sink_destroy(&s);
}

static void test_plain_pending_first(void **state)
{
	uint8_t pending[4 + 5 + 2], rest[2 + 3];
	struct kd_link_params p = {
		.path = KD_PATH_PLAIN,
		.pending = pending,
		.pending_len = sizeof(pending),
		.peer = "test",
		.cb = { on_packet, on_closed, on_writable },
	};
	uint32_t lens[] = { 5, 3 };
	struct kd_link *link;
	struct sink s;
	int fds[2];

	/* Packet 0 whole, then half of packet 1's prefix; the socket
	 * carries the other half and packet 1's body. */
	put_be32(pending, 5);
	fill_packet(pending + 4, 5, 0);
	pending[9] = 0;
	pending[10] = 0;
	rest[0] = 0;
	rest[1] = 3;
	fill_packet(rest + 2, 3, 1);

	sink_init(&s);
	s.lens = lens;
	s.nlens = 2;
	tcp_pair(fds);
	p.fd = fds[0];
	p.user = &s;
	assert_int_equal(kd_loop_attach(loop, &p, &link), 0);
	write_all(fds[1], rest, sizeof(rest));

	assert_true(sink_wait(&s, &s.packets, 2));
	assert_int_equal(s.bad, 0);
	kd_link_close(link, 0, "test done");
	assert_true(sink_wait(&s, &s.closed, 1));
	kd_link_release(link);
	close(fds[1]);
	sink_destroy(&s);
}

static void test_send_backpressure(void **state)
{
	enum { PKT = 16 * 1024, LIMIT = 64 * 1024 };
	static uint8_t payload[PKT];
	struct iovec iov = { payload, PKT };
	size_t sent = 0, got = 0;
	int small = 4096, fds[2], ret = 0;
	struct sink s;
	struct kd_link *link;
	unsigned i;
	char buf[65536];
	ssize_t n;

	sink_init(&s);
	tcp_pair(fds);
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	link = attach(fds[0], KD_PATH_PLAIN, NULL, &s, 0, LIMIT);

	for (i = 0; i < 100000; i++) {
		ret = kd_link_send(link, &iov, 1, 0);
		if (ret < 0)
			break;
		sent += 4 + PKT;
		if (i % 8 == 0)
			usleep(100);
	}
	assert_int_equal(ret, -EAGAIN);
	assert_int_equal(s.writable, 0);
	assert_int_equal(kd_link_send(link, &iov, 1, KD_SEND_FORCE), 0);
	sent += 4 + PKT;

	while (got < sent) {
		n = read(fds[1], buf, sizeof(buf));
		assert_true(n > 0);
		got += n;
	}
	assert_true(sink_wait(&s, &s.writable, 1));
	assert_int_equal(s.writable, 1);
	assert_int_equal(kd_link_send(link, &iov, 1, 0), 0);

	kd_link_close(link, 0, "test done");
	assert_true(sink_wait(&s, &s.closed, 1));
	kd_link_release(link);
	close(fds[1]);
	sink_destroy(&s);
}

static void *close_main(void *arg)
{
	kd_link_close(arg, -ECANCELED, "closed by test thread");
	return NULL;
}

static void test_close_other_thread(void **state)
{
	struct iovec iov = { "x", 1 };
	struct sink s;
	struct kd_link *link;
	pthread_t t;
	int fds[2];

	sink_init(&s);
	tcp_pair(fds);
	link = attach(fds[0], KD_PATH_PLAIN, NULL, &s, 0, 0);
	pthread_create(&t, NULL, close_main, link);
	pthread_join(t, NULL);

	assert_true(sink_wait(&s, &s.closed, 1));
	assert_int_equal(s.err, -ECANCELED);
	assert_string_equal(s.reason, "closed by test thread");
	assert_int_equal(kd_link_send(link, &iov, 1, 0), -ENOTCONN);
	kd_link_close(link, -EIO, "second close");
	usleep(50 * 1000);
	assert_int_equal(s.closed, 1);
	kd_link_release(link);
	close(fds[1]);
	sink_destroy(&s);
}

static void test_destroy_live_links(void **state)
{
	struct kd_loop *own;
	struct kd_link *links[3];
	struct sink s[3];
	int fds[3][2];
	unsigned i;

	assert_int_equal(kd_loop_create(2, &own), 0);
	for (i = 0; i < 3; i++) {
		struct kd_link_params p = {
			.path = KD_PATH_PLAIN,
			.peer = "test",
			.cb = { on_packet, on_closed, on_writable },
			.user = &s[i],
		};

		sink_init(&s[i]);
		tcp_pair(fds[i]);
		p.fd = fds[i][0];
		assert_int_equal(kd_loop_attach(own, &p, &links[i]), 0);
	}
	kd_loop_destroy(own);
	for (i = 0; i < 3; i++) {
		assert_int_equal(s[i].closed, 1);
		assert_int_equal(s[i].err, -ESHUTDOWN);
		kd_link_release(links[i]);
		close(fds[i][1]);
		sink_destroy(&s[i]);
	}
}

static void test_send_oversize_rejected(void **state)
{
	uint8_t byte = 0;
	struct iovec iov[2] = { { &byte, UINT32_MAX }, { &byte, 1 } };
	struct sink s;
	struct kd_link *link;
	int fds[2];

	sink_init(&s);
	tcp_pair(fds);
	link = attach(fds[0], KD_PATH_PLAIN, NULL, &s, 0, 0);
	assert_int_equal(kd_link_send(link, iov, 2, 0), -EMSGSIZE);
	kd_link_close(link, 0, "test done");
	assert_true(sink_wait(&s, &s.closed, 1));
	kd_link_release(link);
	close(fds[1]);
	sink_destroy(&s);
}

static void test_attach_bad_params(void **state)
{
	struct kd_link_params p = {
		.fd = -1,
		.path = KD_PATH_PLAIN,
		.cb = { on_packet, on_closed, on_writable },
	};
	struct kd_link *link = NULL;

	assert_int_equal(kd_loop_attach(loop, &p, &link), -EINVAL);
	p.fd = 0;
	p.path = KD_PATH_USER_TLS;
	assert_int_equal(kd_loop_attach(loop, &p, &link), -EINVAL);
	p.path = KD_PATH_PLAIN;
	p.cb.closed = NULL;
	assert_int_equal(kd_loop_attach(loop, &p, &link), -EINVAL);
	assert_null(link);
}

/* User-space TLS: the loop runs the client end, the test the server. */
struct tls_variant {
	int version;
};

static const struct tls_variant tls12 = { TLS1_2_VERSION };
static const struct tls_variant tls13 = { TLS1_3_VERSION };

/* @server is always the test's end and @client the loop's, whichever
 * side of the TLS handshake each took; @peer_fd is the test end's socket. */
struct tls_fx {
	SSL_CTX *sctx, *cctx;
	SSL *server, *client;
	int fds[2];
	int peer_fd;
	struct sink s;
	struct kd_link *link;
};

static void make_cert(EVP_PKEY **key, X509 **cert)
{
	X509_NAME *name;

	*key = EVP_EC_gen("P-256");
	assert_non_null(*key);
	*cert = X509_new();
	assert_non_null(*cert);
	ASN1_INTEGER_set(X509_get_serialNumber(*cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(*cert), -60);
	X509_gmtime_adj(X509_getm_notAfter(*cert), 3600);
	X509_set_pubkey(*cert, *key);
	name = X509_get_subject_name(*cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)"kdist-test", -1, -1, 0);
	X509_set_issuer_name(*cert, name);
	assert_true(X509_sign(*cert, *key, EVP_sha256()) > 0);
}

static void *accept_main(void *arg)
{
	return (void *)(intptr_t)SSL_accept(arg);
}

static void tls_open_role(struct tls_fx *fx, int version, bool loop_server);

static void tls_open(struct tls_fx *fx, int version)
{
	tls_open_role(fx, version, false);
}

/* With @loop_server the loop takes the TLS server end and the test drives
 * the client, which is the end that asks for renegotiation in kdist's
 * acceptor role. */
static void tls_open_role(struct tls_fx *fx, int version, bool loop_server)
{
	EVP_PKEY *key;
	X509 *cert;
	pthread_t t;
	void *accepted;

	make_cert(&key, &cert);
	fx->sctx = SSL_CTX_new(TLS_server_method());
	fx->cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(fx->sctx);
	assert_non_null(fx->cctx);
	assert_int_equal(SSL_CTX_use_certificate(fx->sctx, cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(fx->sctx, key), 1);
	SSL_CTX_set_min_proto_version(fx->sctx, version);
	SSL_CTX_set_max_proto_version(fx->sctx, version);
	SSL_CTX_set_min_proto_version(fx->cctx, version);
	SSL_CTX_set_max_proto_version(fx->cctx, version);
	/* As kd_tls_config_server_ctx() sets it for OTP clients. */
	SSL_CTX_set_options(fx->sctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
	X509_free(cert);
	EVP_PKEY_free(key);

	tcp_pair(fx->fds);
	fx->client = SSL_new(fx->cctx);
	fx->server = SSL_new(fx->sctx);
	SSL_set_fd(fx->client, fx->fds[0]);
	SSL_set_fd(fx->server, fx->fds[1]);
	pthread_create(&t, NULL, accept_main, fx->server);
	assert_int_equal(SSL_connect(fx->client), 1);
	pthread_join(t, &accepted);
	assert_int_equal((intptr_t)accepted, 1);

	sink_init(&fx->s);
	fx->s.echo = true;
	fx->peer_fd = fx->fds[1];
	if (loop_server) {
		SSL *loop_end = fx->server;

		fx->server = fx->client;
		fx->client = loop_end;
		fx->peer_fd = fx->fds[0];
	}
	fx->link = attach(loop_server ? fx->fds[1] : fx->fds[0],
			  KD_PATH_USER_TLS, fx->client, &fx->s, 2 << 20, 0);
}

static void tls_close(struct tls_fx *fx)
{
	if (!fx->s.closed)
		kd_link_close(fx->link, 0, "test done");
	assert_true(sink_wait(&fx->s, &fx->s.closed, 1));
	kd_link_release(fx->link);
	SSL_free(fx->server);
	close(fx->peer_fd);
	SSL_CTX_free(fx->sctx);
	SSL_CTX_free(fx->cctx);
	sink_destroy(&fx->s);
}

static void ssl_write_packet(SSL *ssl, uint32_t len, unsigned seq)
{
	uint8_t *buf = malloc(4 + len);

	assert_non_null(buf);
	put_be32(buf, len);
	fill_packet(buf + 4, len, seq);
	assert_int_equal(SSL_write(ssl, buf, 4 + len), 4 + len);
	free(buf);
}

static void ssl_read_full(SSL *ssl, uint8_t *buf, size_t len)
{
	size_t got = 0;
	int n;

	while (got < len) {
		n = SSL_read(ssl, buf + got, len - got);
		assert_true(n > 0);
		got += n;
	}
}

/* Reads back the echoes of packets @from..@to-1 (ticks are not echoed). */
static void ssl_read_echoes(SSL *ssl, const uint32_t *lens, unsigned from,
			    unsigned to)
{
	uint8_t prefix[4], *buf = malloc(1024 * 1024);
	unsigned i;
	uint32_t len;

	assert_non_null(buf);
	for (i = from; i < to; i++) {
		if (lens[i] == 0)
			continue;
		ssl_read_full(ssl, prefix, 4);
		len = (uint32_t)prefix[0] << 24 | prefix[1] << 16 |
		      prefix[2] << 8 | prefix[3];
		assert_int_equal(len, lens[i]);
		ssl_read_full(ssl, buf, len);
		assert_true(packet_ok(buf, len, i));
	}
	free(buf);
}

static uint32_t *tls_lens(unsigned n)
{
	uint32_t *lens = calloc(n, sizeof(*lens));
	unsigned i;

	assert_non_null(lens);
	for (i = 0; i < n; i++)
		lens[i] = i % 10 == 0 ? rand() % 200000 : rand() % 2000;
	lens[1] = 0;
	return lens;
}

static void test_tls_echo(void **state)
{
	const struct tls_variant *v = *state;
	enum { N = 100 };
	uint32_t *lens = tls_lens(N);
	struct tls_fx fx = { 0 };
	unsigned i;

	tls_open(&fx, v->version);
	sink_expect(&fx.s, lens, N);
	for (i = 0; i < N; i++)
		ssl_write_packet(fx.server, lens[i], i);
	ssl_read_echoes(fx.server, lens, 0, N);
	assert_int_equal(fx.s.bad, 0);
	assert_int_equal(fx.s.closed, 0);
	tls_close(&fx);
	free(lens);
}

/* TLS 1.2: the server asks for a renegotiation mid-stream. */
static void test_tls_renegotiation(void **state)
{
	enum { N = 60 };
	uint32_t *lens = tls_lens(N);
	struct tls_fx fx = { 0 };
	unsigned i;

	tls_open(&fx, TLS1_2_VERSION);
	sink_expect(&fx.s, lens, N);
	for (i = 0; i < N / 2; i++)
		ssl_write_packet(fx.server, lens[i], i);
	ssl_read_echoes(fx.server, lens, 0, N / 2);

	assert_int_equal(SSL_renegotiate(fx.server), 1);
	assert_int_equal(SSL_do_handshake(fx.server), 1);
	for (i = N / 2; i < N; i++)
		ssl_write_packet(fx.server, lens[i], i);
	ssl_read_echoes(fx.server, lens, N / 2, N);

	assert_int_equal(SSL_renegotiate_pending(fx.server), 0);
	assert_int_equal(fx.s.bad, 0);
	assert_int_equal(fx.s.closed, 0);
	tls_close(&fx);
	free(lens);
}

/* TLS 1.2 with the loop as server: the client asks for a renegotiation
 * mid-stream, as an OTP client does every 2^28 records. */
static void test_tls_client_renegotiation(void **state)
{
	enum { N = 60 };
	uint32_t *lens = tls_lens(N);
	struct tls_fx fx = { 0 };
	unsigned i;

	tls_open_role(&fx, TLS1_2_VERSION, true);
	sink_expect(&fx.s, lens, N);
	for (i = 0; i < N / 2; i++)
		ssl_write_packet(fx.server, lens[i], i);
	ssl_read_echoes(fx.server, lens, 0, N / 2);

	assert_int_equal(SSL_renegotiate(fx.server), 1);
	for (i = N / 2; i < N; i++)
		ssl_write_packet(fx.server, lens[i], i);
	ssl_read_echoes(fx.server, lens, N / 2, N);

	assert_int_equal(SSL_renegotiate_pending(fx.server), 0);
	assert_int_equal(fx.s.bad, 0);
	assert_int_equal(fx.s.closed, 0);
	tls_close(&fx);
	free(lens);
}

/* TLS 1.3: the server updates its keys and requests the same. */
static void test_tls_key_update(void **state)
{
	enum { N = 60 };
	uint32_t *lens = tls_lens(N);
	struct tls_fx fx = { 0 };
	unsigned i;

	tls_open(&fx, TLS1_3_VERSION);
	sink_expect(&fx.s, lens, N);
	for (i = 0; i < N / 2; i++)
		ssl_write_packet(fx.server, lens[i], i);
	ssl_read_echoes(fx.server, lens, 0, N / 2);

	assert_int_equal(SSL_key_update(fx.server, SSL_KEY_UPDATE_REQUESTED), 1);
	for (i = N / 2; i < N; i++)
		ssl_write_packet(fx.server, lens[i], i);
	assert_int_equal(SSL_get_key_update_type(fx.server), SSL_KEY_UPDATE_NONE);
	ssl_read_echoes(fx.server, lens, N / 2, N);

	assert_int_equal(fx.s.bad, 0);
	assert_int_equal(fx.s.closed, 0);
	tls_close(&fx);
	free(lens);
}

/* A flipped byte in a record's tag fails its authentication. */
static void test_tls_tampered_record(void **state)
{
	const struct tls_variant *v = *state;
	uint8_t pkt[4 + 100], record[512];
	struct tls_fx fx = { 0 };
	BIO *rbio, *wbio;
	int n;

	tls_open(&fx, v->version);
	rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(BIO_s_mem());
	SSL_set_bio(fx.server, rbio, wbio);
	put_be32(pkt, 100);
	fill_packet(pkt + 4, 100, 0);
	assert_int_equal(SSL_write(fx.server, pkt, sizeof(pkt)), sizeof(pkt));
	n = BIO_read(wbio, record, sizeof(record));
	assert_true(n > 20);
	record[n - 1] ^= 0x01;
	write_all(fx.fds[1], record, n);

	assert_true(sink_wait(&fx.s, &fx.s.closed, 1));
	assert_int_equal(fx.s.err, -EPROTO);
	assert_non_null(strstr(fx.s.reason, "TLS error in SSL_read"));
	assert_non_null(strstr(fx.s.reason, "bad record mac"));
	assert_int_equal(fx.s.packets, 0);
	tls_close(&fx);
}

static void test_tls_close_notify(void **state)
{
	const struct tls_variant *v = *state;
	struct tls_fx fx = { 0 };

	tls_open(&fx, v->version);
	ssl_write_packet(fx.server, 10, 0);
	assert_true(SSL_shutdown(fx.server) >= 0);

	assert_true(sink_wait(&fx.s, &fx.s.closed, 1));
	assert_int_equal(fx.s.err, 0);
	assert_string_equal(fx.s.reason, "TLS close_notify from peer");
	assert_int_equal(fx.s.packets, 1);
	tls_close(&fx);
}

/* Writes packet @seq as records of at most @piece plaintext bytes. */
static void ssl_write_pieces(SSL *ssl, uint32_t len, unsigned seq,
			     uint32_t piece)
{
	uint8_t *buf = malloc(4 + len);
	uint32_t off, n;

	assert_non_null(buf);
	put_be32(buf, len);
	fill_packet(buf + 4, len, seq);
	for (off = 0; off < 4 + len; off += n) {
		n = 4 + len - off < piece ? 4 + len - off : piece;
		assert_int_equal(SSL_write(ssl, buf + off, n), (int)n);
	}
	free(buf);
}

/* Moves what the server's memory BIO holds to the socket in 1-64 byte
 * writes, so that receives cut records and headers at any offset. */
static void dribble_ciphertext(BIO *mem, int fd)
{
	uint8_t buf[64];
	int n;

	while ((n = BIO_read(mem, buf, 1 + rand() % (int)sizeof(buf))) > 0) {
		write_all(fd, buf, n);
		if (rand() % 16 == 0)
			usleep(50);
	}
}

static void test_tls_records_split(void **state)
{
	const struct tls_variant *v = *state;
	static const uint32_t lens[] = { 1, 70000, 0, 5, 16380, 16381, 3000 };
	enum { N = sizeof(lens) / sizeof(lens[0]) };
	struct tls_fx fx = { 0 };
	BIO *mem = BIO_new(BIO_s_mem());
	unsigned i;

	assert_non_null(mem);
	tls_open(&fx, v->version);
	fx.s.echo = false;
	sink_expect(&fx.s, lens, N);
	SSL_set0_wbio(fx.server, mem);
	for (i = 0; i < N; i++) {
		ssl_write_packet(fx.server, lens[i], i);
		dribble_ciphertext(mem, fx.fds[1]);
	}

	assert_true(sink_wait(&fx.s, &fx.s.packets, N - 1));
	assert_int_equal(fx.s.bad, 0);
	assert_int_equal(fx.s.closed, 0);
	tls_close(&fx);
}

static void test_tls_small_records(void **state)
{
	static const uint32_t lens[] = { 200000, 3, 65536, 1 };
	static const uint32_t pieces[] = { 1, 2, 997, 16384 };
	enum { N = sizeof(lens) / sizeof(lens[0]) };
	struct tls_fx fx = { 0 };
	unsigned i;

	tls_open(&fx, TLS1_3_VERSION);
	sink_expect(&fx.s, lens, N);
	for (i = 0; i < N; i++)
		ssl_write_pieces(fx.server, lens[i], i, pieces[i]);
	ssl_read_echoes(fx.server, lens, 0, N);
	assert_int_equal(fx.s.bad, 0);
	assert_int_equal(fx.s.closed, 0);
	tls_close(&fx);
}

static void set_addr(struct sockaddr_storage *ss, int family, const char *text)
{
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *in = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	ss->ss_family = family;
	if (family == AF_INET)
		assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
	else
		assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
}

static void test_addr_loopback(void **state)
{
	static const struct {
		int family;
		const char *addr;
		bool local;
	} cases[] = {
		{ AF_INET, "127.0.0.1", true },
		{ AF_INET, "127.255.0.9", true },
		{ AF_INET, "128.0.0.1", false },
		{ AF_INET, "192.0.2.1", false },
		{ AF_INET6, "::1", true },
		{ AF_INET6, "::ffff:127.0.0.1", true },
		{ AF_INET6, "::ffff:192.0.2.1", false },
		{ AF_INET6, "2001:db8::1", false },
		{ AF_INET6, "::", false },
	};
	struct sockaddr_storage ss;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		set_addr(&ss, cases[i].family, cases[i].addr);
		if (kd_addr_is_local((struct sockaddr *)&ss) != cases[i].local)
			fail_msg("%s: expected %s", cases[i].addr,
				 cases[i].local ? "local" : "remote");
	}
}

static void test_peer_local(void **state)
{
	int fds[2];

	tcp_pair(fds);
	assert_true(kd_peer_is_local(fds[0]));
	close(fds[0]);
	close(fds[1]);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	assert_true(kd_peer_is_local(fds[0]));
	close(fds[0]);
	close(fds[1]);

	/* A pipe has no peer address: unknown counts as remote. */
	assert_int_equal(pipe(fds), 0);
	assert_false(kd_peer_is_local(fds[0]));
	close(fds[0]);
	close(fds[1]);
}

static int group_setup(void **state)
{
	const char *env = getenv("KD_TEST_SEED");

	seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
	printf("test_loop: seed %u (set KD_TEST_SEED to repeat)\n", seed);
	srand(seed);
	kd_log_configure(NULL, NULL, KD_LOG_WARN);
	return kd_loop_create(2, &loop);
}

static int group_teardown(void **state)
{
	kd_loop_destroy(loop);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_both_ways),
		cmocka_unit_test(test_plain_random_splits),
		cmocka_unit_test(test_plain_oversize_prefix),
		cmocka_unit_test(test_plain_truncated_packet),
		cmocka_unit_test(test_plain_truncated_prefix),
		cmocka_unit_test(test_plain_peer_reset),
		cmocka_unit_test(test_plain_pending_first),
		cmocka_unit_test(test_send_backpressure),
		cmocka_unit_test(test_close_other_thread),
		cmocka_unit_test(test_destroy_live_links),
		cmocka_unit_test(test_send_oversize_rejected),
		cmocka_unit_test(test_attach_bad_params),
		cmocka_unit_test_prestate(test_tls_echo, (void *)&tls12),
		cmocka_unit_test_prestate(test_tls_echo, (void *)&tls13),
		cmocka_unit_test(test_tls_renegotiation),
		cmocka_unit_test(test_tls_client_renegotiation),
		cmocka_unit_test(test_tls_key_update),
		cmocka_unit_test_prestate(test_tls_tampered_record, (void *)&tls12),
		cmocka_unit_test_prestate(test_tls_tampered_record, (void *)&tls13),
		cmocka_unit_test_prestate(test_tls_close_notify, (void *)&tls12),
		cmocka_unit_test_prestate(test_tls_close_notify, (void *)&tls13),
		cmocka_unit_test_prestate(test_tls_records_split, (void *)&tls12),
		cmocka_unit_test_prestate(test_tls_records_split, (void *)&tls13),
		cmocka_unit_test(test_tls_small_records),
		cmocka_unit_test(test_addr_loopback),
		cmocka_unit_test(test_peer_local),
	};

	return cmocka_run_group_tests_name("loop", tests, group_setup,
					   group_teardown);
}
