// SPDX-License-Identifier: Apache-2.0
/*
 * Kernel TLS: the cipher table, the key schedule against published vectors,
 * the path policy, control-record parsing, and (on a kernel with the "tls"
 * ULP, such as the tests/vm kernels) real OpenSSL sessions moved into the
 * kernel for every TLS version and cipher.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/x509.h>

#include "ktls.h"

static void unhex(const char *hex, uint8_t *out, size_t len)
{
	for (size_t i = 0; i < len; i++)
		sscanf(hex + 2 * i, "%2hhx", &out[i]);
}

static void assert_hex(const uint8_t *got, const char *want_hex)
{
	size_t len = strlen(want_hex) / 2;
	uint8_t want[128];

	unhex(want_hex, want, len);
	assert_memory_equal(got, want, len);
}

/* --- cipher table ------------------------------------------------------ */

static void cipher_table_layout(void **state)
{
	for (size_t i = 0; i < kd_ktls_cipher_count; i++) {
		const struct kd_ktls_cipher *c = &kd_ktls_ciphers[i];

		print_message("cipher %s\n", c->name);
		assert_int_equal(c->iv_offset, sizeof(struct tls_crypto_info));
		assert_int_equal(c->key_offset, c->iv_offset + c->iv_size);
		assert_int_equal(c->salt_offset, c->key_offset + c->key_size);
		assert_int_equal(c->seq_offset, c->salt_offset + c->salt_size);
		assert_int_equal(c->info_size, c->seq_offset + 8);
		assert_true(c->info_size <= KD_KTLS_INFO_MAX);
		assert_int_equal(c->salt_size + c->iv_size, KD_TLS13_IV_LEN);
		assert_true(c->key_size <= 32);
		assert_ptr_equal(kd_ktls_cipher_by_nid(c->nid), c);
	}
}

static void cipher_table_unknown(void **state)
{
	assert_null(kd_ktls_cipher_by_nid(NID_aes_128_ccm));
	assert_null(kd_ktls_cipher_by_nid(NID_undef));
}

/* --- key schedule ------------------------------------------------------ */

/* RFC 8448 section 3, application traffic secrets of the 1-RTT trace. */
#define RFC8448_SERVER_AP \
	"a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643"
#define RFC8448_CLIENT_AP \
	"9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5"

static void tls13_keys_server(void **state)
{
	uint8_t secret[32], key[16], iv[12];

	unhex(RFC8448_SERVER_AP, secret, sizeof(secret));
	assert_int_equal(kd_tls13_traffic_keys(EVP_sha256(), secret, 32, key,
					       sizeof(key), iv), 0);
	assert_hex(key, "9f02283b6c9c07efc26bb9f2ac92e356");
	assert_hex(iv, "cf782b88dd83549aadf1e984");
}

static void tls13_keys_client(void **state)
{
	uint8_t secret[32], key[16], iv[12];

	unhex(RFC8448_CLIENT_AP, secret, sizeof(secret));
	assert_int_equal(kd_tls13_traffic_keys(EVP_sha256(), secret, 32, key,
					       sizeof(key), iv), 0);
	assert_hex(key, "17422dda596ed5d9acd890e3c63f5051");
	assert_hex(iv, "5b78923dee08579033e523d9");
}

/* Expected values from an independent HMAC-SHA256 HKDF-Expand-Label. */
static void tls13_traffic_update(void **state)
{
	uint8_t secret[32], key[16], iv[12];

	unhex(RFC8448_SERVER_AP, secret, sizeof(secret));
	assert_int_equal(kd_tls13_next_secret(EVP_sha256(), secret, 32), 0);
	assert_hex(secret, "51921b8aa3001976eb401d0a4319a851"
			   "6416a6c56001a357e5d162031e84f916");
	assert_int_equal(kd_tls13_traffic_keys(EVP_sha256(), secret, 32, key,
					       sizeof(key), iv), 0);
	assert_hex(key, "2e63be99d67b39097feb9786cf7a15a0");
	assert_hex(iv, "628a0a8298ac953baef4255a");
}

static void tls13_update_oversized(void **state)
{
	uint8_t secret[EVP_MAX_MD_SIZE + 1] = { 0 };

	assert_int_equal(kd_tls13_next_secret(EVP_sha256(), secret,
					      sizeof(secret)), -EINVAL);
}

/* The widely published TLS 1.2 PRF (SHA-256) test vector. */
static void tls12_prf_vector(void **state)
{
	uint8_t secret[16], seed[16], out[100];

	unhex("9bbe436ba940f017b17652849a71db35", secret, sizeof(secret));
	unhex("a0ba9f936cda311827a6f796ffd5198c", seed, sizeof(seed));
	assert_int_equal(kd_tls12_prf(EVP_sha256(), secret, sizeof(secret),
				      "test label", seed, sizeof(seed), NULL, 0,
				      out, sizeof(out)), 0);
	assert_hex(out, "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495"
			"329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af"
			"0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b"
			"97fce34f796789baa48082d122ee42c5a72e5a5110fff701"
			"87347b66");
}

/* Key block of SHA-384 suites: "key expansion", server then client random.
 * Expected values from an independent HMAC P_hash. */
static void tls12_key_block(void **state)
{
	uint8_t master[48], crandom[32], srandom[32], out[72];

	for (int i = 0; i < 48; i++)
		master[i] = (uint8_t)i;
	for (int i = 0; i < 32; i++) {
		crandom[i] = (uint8_t)(0x40 + i);
		srandom[i] = (uint8_t)(0x80 + i);
	}
	assert_int_equal(kd_tls12_prf(EVP_sha384(), master, sizeof(master),
				      "key expansion", srandom, 32, crandom,
				      32, out, sizeof(out)), 0);
	assert_hex(out, "c01fa61789f58022d722461abcb5df04cf985a08f0d461ab"
			"4d544db598b8531903c0472368c11f6751efc2d81d6b896d"
			"8db6be95536abb42a66b015259cf7264092ed6c52036945c");
}

/* --- crypto_info layout ------------------------------------------------ */

static const uint8_t test_key[32] = { 0xaa, 0xab, 0xac };
static const uint8_t test_iv[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

static void info_tls13_gcm(void **state)
{
	struct tls12_crypto_info_aes_gcm_128 want = {
		.info.version = TLS_1_3_VERSION,
		.info.cipher_type = TLS_CIPHER_AES_GCM_128,
		.iv = { 5, 6, 7, 8, 9, 10, 11, 12 },
		.salt = { 1, 2, 3, 4 },
		.rec_seq = { 0, 0, 0, 0, 0, 0, 1, 2 },
	};
	uint8_t info[KD_KTLS_INFO_MAX];

	memcpy(want.key, test_key, sizeof(want.key));
	assert_int_equal(kd_ktls_fill_info(kd_ktls_cipher_by_nid(NID_aes_128_gcm),
					   TLS_1_3_VERSION, test_key, test_iv,
					   0x102, info), sizeof(want));
	assert_memory_equal(info, &want, sizeof(want));
}

static void info_tls12_gcm(void **state)
{
	struct tls12_crypto_info_aes_gcm_256 want = {
		.info.version = TLS_1_2_VERSION,
		.info.cipher_type = TLS_CIPHER_AES_GCM_256,
		.iv = { 0, 0, 0, 0, 0, 0, 0, 1 },
		.salt = { 1, 2, 3, 4 },
		.rec_seq = { 0, 0, 0, 0, 0, 0, 0, 1 },
	};
	uint8_t info[KD_KTLS_INFO_MAX];

	memcpy(want.key, test_key, sizeof(want.key));
	assert_int_equal(kd_ktls_fill_info(kd_ktls_cipher_by_nid(NID_aes_256_gcm),
					   TLS_1_2_VERSION, test_key, test_iv, 1,
					   info), sizeof(want));
	assert_memory_equal(info, &want, sizeof(want));
}

static void info_chacha(void **state)
{
	struct tls12_crypto_info_chacha20_poly1305 want = {
		.info.version = TLS_1_2_VERSION,
		.info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305,
		.rec_seq = { 0, 0, 0, 0, 0, 0, 0, 1 },
	};
	uint8_t info[KD_KTLS_INFO_MAX];

	memcpy(want.key, test_key, sizeof(want.key));
	memcpy(want.iv, test_iv, sizeof(want.iv));
	assert_int_equal(kd_ktls_fill_info(
				 kd_ktls_cipher_by_nid(NID_chacha20_poly1305),
				 TLS_1_2_VERSION, test_key, test_iv, 1, info),
			 sizeof(want));
	assert_memory_equal(info, &want, sizeof(want));
}

/* --- policy ------------------------------------------------------------ */

struct policy_case {
	enum kdist_ktls_mode mode;
	bool ulp, rekey;
	int version, nid;
	bool kernel;
	const char *reason; /* a part of the reason text */
};

#define V12 TLS1_2_VERSION
#define V13 TLS1_3_VERSION
#define AES128 NID_aes_128_gcm
#define AES256 NID_aes_256_gcm
#define CHACHA NID_chacha20_poly1305

static const struct policy_case policy_cases[] = {
	/* off wins over everything */
	{ KDIST_KTLS_OFF, true, true, V13, CHACHA, false, "ktls=off" },
	{ KDIST_KTLS_OFF, true, true, V13, AES256, false, "ktls=off" },
	{ KDIST_KTLS_OFF, false, false, V12, AES128, false, "ktls=off" },
	/* no ULP: user space under auto and on */
	{ KDIST_KTLS_AUTO, false, false, V13, CHACHA, false, "no kernel TLS: probe detail" },
	{ KDIST_KTLS_ON, false, false, V13, AES128, false, "no kernel TLS" },
	{ KDIST_KTLS_ON, false, false, V12, AES256, false, "no kernel TLS" },
	/* unsupported cipher */
	{ KDIST_KTLS_AUTO, true, true, V13, NID_aes_128_ccm, false, "not supported" },
	{ KDIST_KTLS_ON, true, true, V12, NID_aes_128_cbc, false, "not supported" },
	/* TLS 1.2: renegotiation */
	{ KDIST_KTLS_AUTO, true, true, V12, AES128, false, "renegotiat" },
	{ KDIST_KTLS_AUTO, true, false, V12, AES256, false, "renegotiat" },
	{ KDIST_KTLS_AUTO, true, true, V12, CHACHA, false, "renegotiat" },
	{ KDIST_KTLS_ON, true, false, V12, AES128, true, "link dies at the peer's first renegotiation" },
	{ KDIST_KTLS_ON, true, true, V12, CHACHA, true, "link dies" },
	/* TLS 1.3 ChaCha20: always the kernel */
	{ KDIST_KTLS_AUTO, true, false, V13, CHACHA, true, "never key-updates" },
	{ KDIST_KTLS_AUTO, true, true, V13, CHACHA, true, "never key-updates" },
	{ KDIST_KTLS_ON, true, false, V13, CHACHA, true, "never key-updates" },
	/* TLS 1.3 AES-GCM: depends on rekey */
	{ KDIST_KTLS_AUTO, true, true, V13, AES128, true, "KeyUpdate" },
	{ KDIST_KTLS_AUTO, true, true, V13, AES256, true, "KeyUpdate" },
	{ KDIST_KTLS_AUTO, true, false, V13, AES128, false, "before Linux 6.14; OTP sends one after 388,736,063,997 bytes" },
	{ KDIST_KTLS_AUTO, true, false, V13, AES256, false, "stays in user space" },
	{ KDIST_KTLS_ON, true, false, V13, AES256, true, "(ktls=on) anyway" },
	{ KDIST_KTLS_ON, true, true, V13, AES128, true, "KeyUpdate" },
	/* an unknown version */
	{ KDIST_KTLS_ON, true, true, TLS1_1_VERSION, AES128, false, "0x0302" },
};

static void policy_table(void **state)
{
	for (size_t i = 0; i < sizeof(policy_cases) / sizeof(policy_cases[0]); i++) {
		const struct policy_case *pc = &policy_cases[i];
		struct kd_ktls_caps caps = { .ulp = pc->ulp, .rekey = pc->rekey };
		char why[256] = "";
		bool kernel;

		snprintf(caps.detail, sizeof(caps.detail), "probe detail");
		kernel = kd_ktls_choose_for(&caps, pc->mode, pc->version,
					    pc->nid, why, sizeof(why));
		print_message("case %zu: %s\n", i, why);
		assert_int_equal(kernel, pc->kernel);
		assert_non_null(strstr(why, pc->reason));
	}
}

/* --- control records --------------------------------------------------- */

static void record_close_notify(void **state)
{
	static const uint8_t alert[] = { 1, 0 };
	char why[128];

	assert_int_equal(kd_ktls_handle_record(-1, NULL, 21, alert, 2, why,
					       sizeof(why)), 1);
}

static void record_fatal_alert(void **state)
{
	static const uint8_t alert[] = { 2, 20 };
	char why[128];

	assert_int_equal(kd_ktls_handle_record(-1, NULL, 21, alert, 2, why,
					       sizeof(why)), -ECONNABORTED);
	assert_string_equal(why, "TLS alert from peer: bad_record_mac (fatal)");
}

static void record_unknown_alert(void **state)
{
	static const uint8_t alert[] = { 1, 250 };
	char why[128];

	assert_int_equal(kd_ktls_handle_record(-1, NULL, 21, alert, 2, why,
					       sizeof(why)), -ECONNABORTED);
	assert_non_null(strstr(why, "unknown description 250 (warning)"));
}

static void record_short_alert(void **state)
{
	static const uint8_t alert[] = { 2, 20, 0 };
	char why[128];

	assert_int_equal(kd_ktls_handle_record(-1, NULL, 21, alert, 1, why,
					       sizeof(why)), -EBADMSG);
	assert_int_equal(kd_ktls_handle_record(-1, NULL, 21, alert, 3, why,
					       sizeof(why)), -EBADMSG);
}

static void record_tickets_ignored(void **state)
{
	/* Two NewSessionTickets with short bodies in one record. */
	static const uint8_t hs[] = { 4, 0, 0, 2, 0xde, 0xad, 4, 0, 0, 0 };
	char why[128];

	assert_int_equal(kd_ktls_handle_record(-1, NULL, 22, hs, sizeof(hs),
					       why, sizeof(why)), 0);
}

static void record_truncated_header(void **state)
{
	static const uint8_t hs[] = { 4, 0, 0 };
	char why[128];

	assert_int_equal(kd_ktls_handle_record(-1, NULL, 22, hs, sizeof(hs),
					       why, sizeof(why)), -EBADMSG);
}

static void record_message_spans(void **state)
{
	static const uint8_t hs[] = { 4, 0xff, 0xff, 0xff, 1, 2 };
	char why[128];

	assert_int_equal(kd_ktls_handle_record(-1, NULL, 22, hs, sizeof(hs),
					       why, sizeof(why)), -EBADMSG);
}

static void record_hello_request(void **state)
{
	static const uint8_t hs[] = { 0, 0, 0, 0 };
	char why[128];

	assert_int_equal(kd_ktls_handle_record(-1, NULL, 22, hs, sizeof(hs),
					       why, sizeof(why)), -EOPNOTSUPP);
	assert_non_null(strstr(why, "renegotiation"));
}

static void record_unexpected_types(void **state)
{
	static const uint8_t finished[] = { 20, 0, 0, 1, 0 };
	static const uint8_t ccs[] = { 1 };
	char why[128];

	assert_int_equal(kd_ktls_handle_record(-1, NULL, 22, finished,
					       sizeof(finished), why,
					       sizeof(why)), -EPROTO);
	assert_int_equal(kd_ktls_handle_record(-1, NULL, 20, ccs, sizeof(ccs),
					       why, sizeof(why)), -EPROTO);
	assert_int_equal(kd_ktls_handle_record(-1, NULL, 99, ccs, sizeof(ccs),
					       why, sizeof(why)), -EPROTO);
}

/* --- probe ------------------------------------------------------------- */

static struct kd_ktls_caps host_caps;

static void probe_consistent(void **state)
{
	kd_ktls_probe(&host_caps);
	print_message("probe: %s\n", host_caps.detail);
	assert_true(host_caps.detail[0] != '\0');
	if (!host_caps.ulp) {
		assert_false(host_caps.rekey);
		assert_non_null(strstr(host_caps.detail, "tls ULP not available"));
	}
}

/* --- live sessions on a kernel with the tls ULP ------------------------- */

struct combo {
	int version;
	const char *suite; /* TLS 1.3 ciphersuite or TLS 1.2 cipher list */
};

static const struct combo combos[] = {
	{ TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256" },
	{ TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384" },
	{ TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305" },
	{ TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256" },
	{ TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384" },
	{ TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256" },
};

#define COMBO_COUNT (sizeof(combos) / sizeof(combos[0]))

struct session {
	int cfd, sfd;
	SSL_CTX *cctx, *sctx;
	SSL *client, *server;
	struct kd_ktls_state *ckt, *skt;
};

/* Skips the calling test unless the kernel has the tls ULP. */
static void require_ktls(void)
{
	struct kd_ktls_caps caps;

	kd_ktls_probe(&caps);
	if (!caps.ulp) {
		print_message("skip: kernel TLS not available here (%s); tests/vm/run covers it\n",
			      caps.detail);
		skip();
	}
}

static void tcp_pair(int *cfd, int *sfd)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t alen = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &alen), 0);
	*cfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(*cfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	*sfd = accept(lfd, NULL, NULL);
	assert_true(*sfd >= 0);
	close(lfd);
}

static void add_self_signed(SSL_CTX *ctx)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *cert = X509_new();
	X509_NAME *name;

	assert_non_null(pkey);
	assert_non_null(cert);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
	X509_set_pubkey(cert, pkey);
	name = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)"kdist-test", -1, -1, 0);
	X509_set_issuer_name(cert, name);
	assert_true(X509_sign(cert, pkey, EVP_sha256()) > 0);
	assert_int_equal(SSL_CTX_use_certificate(ctx, cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, pkey), 1);
	X509_free(cert);
	EVP_PKEY_free(pkey);
}

static SSL_CTX *new_ctx(const SSL_METHOD *method, const struct combo *cb)
{
	SSL_CTX *ctx = SSL_CTX_new(method);

	assert_non_null(ctx);
	SSL_CTX_set_min_proto_version(ctx, cb->version);
	SSL_CTX_set_max_proto_version(ctx, cb->version);
	if (cb->version == TLS1_3_VERSION)
		assert_int_equal(SSL_CTX_set_ciphersuites(ctx, cb->suite), 1);
	else
		assert_int_equal(SSL_CTX_set_cipher_list(ctx, cb->suite), 1);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(ctx, 0);
	kd_ktls_prepare_ctx(ctx);
	return ctx;
}

static void *accept_thread(void *arg)
{
	SSL *server = arg;

	return (void *)(intptr_t)SSL_accept(server);
}

static void open_session(struct session *s, const struct combo *cb)
{
	pthread_t tid;
	void *accepted;

	memset(s, 0, sizeof(*s));
	tcp_pair(&s->cfd, &s->sfd);
	s->cctx = new_ctx(TLS_client_method(), cb);
	s->sctx = new_ctx(TLS_server_method(), cb);
	add_self_signed(s->sctx);
	s->client = SSL_new(s->cctx);
	s->server = SSL_new(s->sctx);
	SSL_set_fd(s->client, s->cfd);
	SSL_set_fd(s->server, s->sfd);
	assert_int_equal(pthread_create(&tid, NULL, accept_thread, s->server), 0);
	assert_int_equal(SSL_connect(s->client), 1);
	assert_int_equal(pthread_join(tid, &accepted), 0);
	assert_int_equal((intptr_t)accepted, 1);
	assert_int_equal(SSL_version(s->client), cb->version);
}

static void close_session(struct session *s)
{
	kd_ktls_state_free(s->ckt);
	kd_ktls_state_free(s->skt);
	SSL_free(s->client);
	SSL_free(s->server);
	SSL_CTX_free(s->cctx);
	SSL_CTX_free(s->sctx);
	close(s->cfd);
	close(s->sfd);
}

static void install(int fd, SSL *ssl, struct kd_ktls_state **st)
{
	char why[256] = "";
	int ret = kd_ktls_install(fd, ssl, st, why, sizeof(why));

	if (ret)
		print_message("install: %s\n", why);
	assert_int_equal(ret, 0);
}

/* Reads exactly @len bytes with kd_ktls_recv. */
static void ktls_read_all(int fd, struct kd_ktls_state *st, char *buf,
			  size_t len)
{
	char why[256] = "";

	for (size_t got = 0; got < len;) {
		ssize_t n = kd_ktls_recv(fd, st, buf + got, len - got, why,
					 sizeof(why));

		if (n <= 0)
			print_message("kd_ktls_recv: %zd, %s\n", n, why);
		assert_true(n > 0);
		got += (size_t)n;
	}
}

static long tls_stat(const char *counter)
{
	FILE *f = fopen("/proc/net/tls_stat", "r");
	char name[64];
	long value, found = -1;

	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", name, &value) == 2)
		if (!strcmp(name, counter))
			found = value;
	fclose(f);
	return found;
}

static const char ping[] = "ping from the client over kernel TLS";
static const char pong[] = "pong from the server";

static void live_kernel_both(void **state)
{
	require_ktls();
	for (size_t i = 0; i < COMBO_COUNT; i++) {
		long tx = tls_stat("TlsTxSw"), rx = tls_stat("TlsRxSw");
		struct session s;
		char buf[64];

		print_message("combo %s\n", combos[i].suite);
		open_session(&s, &combos[i]);
		install(s.cfd, s.client, &s.ckt);
		install(s.sfd, s.server, &s.skt);
		assert_int_equal(send(s.cfd, ping, sizeof(ping), 0), sizeof(ping));
		ktls_read_all(s.sfd, s.skt, buf, sizeof(ping));
		assert_memory_equal(buf, ping, sizeof(ping));
		assert_int_equal(send(s.sfd, pong, sizeof(pong), 0), sizeof(pong));
		assert_int_equal(recv(s.cfd, buf, sizeof(pong), MSG_WAITALL),
				 sizeof(pong));
		assert_memory_equal(buf, pong, sizeof(pong));
		assert_true(tls_stat("TlsTxSw") >= tx + 2);
		assert_true(tls_stat("TlsRxSw") >= rx + 2);
		close_session(&s);
	}
}

/* The client moves to the kernel, the server stays in OpenSSL. */
static void open_mixed(struct session *s, const struct combo *cb)
{
	open_session(s, cb);
	install(s->cfd, s->client, &s->ckt);
}

static void live_kernel_vs_openssl(void **state)
{
	require_ktls();
	for (size_t i = 0; i < COMBO_COUNT; i++) {
		struct session s;
		char buf[64];

		print_message("combo %s\n", combos[i].suite);
		open_mixed(&s, &combos[i]);
		for (int round = 0; round < 3; round++) {
			assert_int_equal(send(s.cfd, ping, sizeof(ping), 0),
					 sizeof(ping));
			assert_int_equal(SSL_read(s.server, buf, sizeof(buf)),
					 sizeof(ping));
			assert_memory_equal(buf, ping, sizeof(ping));
			assert_int_equal(SSL_write(s.server, pong, sizeof(pong)),
					 sizeof(pong));
			ktls_read_all(s.cfd, s.ckt, buf, sizeof(pong));
			assert_memory_equal(buf, pong, sizeof(pong));
		}
		close_session(&s);
	}
}

static void live_key_update(void **state)
{
	struct kd_ktls_caps caps;

	require_ktls();
	kd_ktls_probe(&caps);
	for (size_t i = 0; i < COMBO_COUNT; i++) {
		struct session s;
		char buf[64], why[256] = "";
		ssize_t n;

		if (combos[i].version != TLS1_3_VERSION)
			continue;
		print_message("combo %s, rekey %d\n", combos[i].suite, caps.rekey);
		open_mixed(&s, &combos[i]);
		assert_int_equal(SSL_key_update(s.server, SSL_KEY_UPDATE_REQUESTED), 1);
		assert_int_equal(SSL_write(s.server, pong, sizeof(pong)),
				 sizeof(pong));
		n = kd_ktls_recv(s.cfd, s.ckt, buf, sizeof(buf), why, sizeof(why));
		if (!caps.rekey) {
			assert_int_equal(n, -1);
			assert_int_equal(errno, EOPNOTSUPP);
			assert_non_null(strstr(why, "6.14"));
			close_session(&s);
			continue;
		}
		if (n < 0)
			print_message("kd_ktls_recv: %s\n", why);
		assert_int_equal(n, sizeof(pong));
		assert_memory_equal(buf, pong, sizeof(pong));
		/* Our answering KeyUpdate went first, then this record. */
		assert_int_equal(send(s.cfd, ping, sizeof(ping), 0), sizeof(ping));
		assert_int_equal(SSL_read(s.server, buf, sizeof(buf)), sizeof(ping));
		assert_memory_equal(buf, ping, sizeof(ping));
		/* A KeyUpdate we start ourselves, without asking the peer. */
		assert_int_equal(kd_ktls_tx_rekey(s.cfd, s.ckt, false, why,
						  sizeof(why)), 0);
		assert_int_equal(send(s.cfd, ping, sizeof(ping), 0), sizeof(ping));
		assert_int_equal(SSL_read(s.server, buf, sizeof(buf)), sizeof(ping));
		assert_memory_equal(buf, ping, sizeof(ping));
		close_session(&s);
	}
}

static void live_close_notify(void **state)
{
	require_ktls();
	for (size_t i = 0; i < COMBO_COUNT; i++) {
		struct session s;
		char buf[64], why[256] = "";

		print_message("combo %s\n", combos[i].suite);
		open_mixed(&s, &combos[i]);
		assert_true(SSL_shutdown(s.server) >= 0);
		assert_int_equal(kd_ktls_recv(s.cfd, s.ckt, buf, sizeof(buf), why,
					      sizeof(why)), 0);
		close_session(&s);
	}
}

/* The server's record is built in memory, one ciphertext byte flipped. */
static void live_tampered_record(void **state)
{
	require_ktls();
	for (size_t i = 0; i < COMBO_COUNT; i++) {
		struct session s;
		BIO *mem = BIO_new(BIO_s_mem());
		char buf[64], why[256] = "";
		char *record;
		long len;

		print_message("combo %s\n", combos[i].suite);
		open_mixed(&s, &combos[i]);
		SSL_set0_wbio(s.server, mem);
		assert_int_equal(SSL_write(s.server, pong, sizeof(pong)),
				 sizeof(pong));
		len = BIO_get_mem_data(mem, &record);
		assert_true(len > 10);
		record[len - 1] ^= 0x01;
		assert_int_equal(write(s.sfd, record, (size_t)len), len);
		assert_int_equal(kd_ktls_recv(s.cfd, s.ckt, buf, sizeof(buf), why,
					      sizeof(why)), -1);
		assert_int_equal(errno, EBADMSG);
		close_session(&s);
	}
}


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cipher_table_layout),
		cmocka_unit_test(cipher_table_unknown),
		cmocka_unit_test(tls13_keys_server),
		cmocka_unit_test(tls13_keys_client),
		cmocka_unit_test(tls13_traffic_update),
		cmocka_unit_test(tls13_update_oversized),
		cmocka_unit_test(tls12_prf_vector),
		cmocka_unit_test(tls12_key_block),
		cmocka_unit_test(info_tls13_gcm),
		cmocka_unit_test(info_tls12_gcm),
		cmocka_unit_test(info_chacha),
		cmocka_unit_test(policy_table),
		cmocka_unit_test(record_close_notify),
		cmocka_unit_test(record_fatal_alert),
		cmocka_unit_test(record_unknown_alert),
		cmocka_unit_test(record_short_alert),
		cmocka_unit_test(record_tickets_ignored),
		cmocka_unit_test(record_truncated_header),
		cmocka_unit_test(record_message_spans),
		cmocka_unit_test(record_hello_request),
		cmocka_unit_test(record_unexpected_types),
		cmocka_unit_test(probe_consistent),
		cmocka_unit_test(live_kernel_both),
		cmocka_unit_test(live_kernel_vs_openssl),
		cmocka_unit_test(live_key_update),
		cmocka_unit_test(live_close_notify),
		cmocka_unit_test(live_tampered_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
