// SPDX-License-Identifier: Apache-2.0
/*
 * Kernel TLS for kdist connections.
 *
 * Policy (kd_ktls_choose): a connection moves to the kernel only when the
 * kernel can carry it until it closes, because nothing can move it back to
 * user space once the keys are in the socket. In order:
 *
 *   ktls=off                          user space
 *   kernel without the "tls" ULP      user space
 *   cipher not in kd_ktls_ciphers[]   user space
 *   TLS 1.2                           user space under auto. An OTP peer
 *                                     renegotiates after 2^28 of its
 *                                     records and no kernel can follow a
 *                                     renegotiation. Under ktls=on the
 *                                     kernel anyway, and the link dies at
 *                                     the peer's first renegotiation.
 *   TLS 1.3 + ChaCha20-Poly1305       kernel. OTP sends no KeyUpdate for
 *                                     ChaCha20 before its sequence number
 *                                     wraps.
 *   TLS 1.3 + AES-GCM                 kernel when it can rekey (Linux 6.14
 *                                     and later). Otherwise user space
 *                                     under auto and the kernel under on,
 *                                     since OTP sends a KeyUpdate after
 *                                     388,736,063,997 bytes.
 *
 * Key material: kd_ktls_prepare_ctx() captures the TLS 1.3 application
 * traffic secrets from OpenSSL's keylog callback into per-SSL ex_data.
 * kd_ktls_install() derives the keys (ciphers.c) and wipes the captured
 * copies. TLS 1.2 keys come from the master secret and the two randoms.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "error.h"
#include "ktls.h"
#include "log.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#define KD_REC_ALERT 21
#define KD_REC_HANDSHAKE 22
#define KD_REC_DATA 23
#define KD_HS_NEW_SESSION_TICKET 4
#define KD_HS_KEY_UPDATE 24
#define KD_HS_HELLO_REQUEST 0
#define KD_HS_CLIENT_HELLO 1
#define KD_KEY_UPDATE_WAIT_MS 5000
#define KD_MAX_RECORD 16384

/* TLS 1.3 traffic secrets captured from the keylog callback. */
struct kd_ktls_secrets {
	uint8_t client[EVP_MAX_MD_SIZE];
	uint8_t server[EVP_MAX_MD_SIZE];
	size_t client_len;
	size_t server_len;
};

struct kd_ktls_state {
	int version; /* TLS1_2_VERSION or TLS1_3_VERSION */
	const struct kd_ktls_cipher *cipher;
	const EVP_MD *md;      /* TLS 1.3 key schedule hash */
	uint8_t tx_secret[EVP_MAX_MD_SIZE];
	uint8_t rx_secret[EVP_MAX_MD_SIZE];
	size_t secret_len;
	bool rx_rekey_pending; /* rx_secret is the next key, not installed */
	uint64_t tx_records;   /* upper bound on records under the TX key */
	uint64_t tx_key_updates;
	uint64_t rx_key_updates;
};

static int kd_ssl_secrets_index = -1;
static int kd_ctx_chain_index = -1;
static pthread_once_t kd_index_once = PTHREAD_ONCE_INIT;

/* --- probing ----------------------------------------------------------- */

/* Connects a loopback TCP pair: @client and @server, 0 or -errno. */
static int kd_loopback_pair(int *client, int *server)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t alen = sizeof(addr);
	int lfd, cfd = -1, sfd = -1, ret;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) ||
	    listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen))
		goto err_close_listener;
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0)
		goto err_close_listener;
	if (connect(cfd, (struct sockaddr *)&addr, sizeof(addr)))
		goto err_close_client;
	sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (sfd < 0)
		goto err_close_client;
	close(lfd);
	*client = cfd;
	*server = sfd;
	return 0;

err_close_client:
	ret = -errno;
	close(cfd);
	close(lfd);
	return ret;
err_close_listener:
	ret = -errno;
	close(lfd);
	return ret;
}

/* A second TLS_TX on a TLS 1.3 socket: 1 when the kernel rekeys, 0 on
 * EBUSY, -errno when even the first one failed. */
static int kd_probe_rekey(int fd)
{
	struct tls12_crypto_info_aes_gcm_128 info = {
		.info.version = TLS_1_3_VERSION,
		.info.cipher_type = TLS_CIPHER_AES_GCM_128,
	};

	if (setsockopt(fd, SOL_TLS, TLS_TX, &info, sizeof(info)))
		return -errno;
	info.key[0] = 1;
	if (setsockopt(fd, SOL_TLS, TLS_TX, &info, sizeof(info)) == 0)
		return 1;
	return errno == EBUSY ? 0 : -errno;
}

void kd_ktls_probe(struct kd_ktls_caps *caps)
{
	int cfd = -1, sfd = -1, ret;

	memset(caps, 0, sizeof(*caps));
	ret = kd_loopback_pair(&cfd, &sfd);
	if (ret) {
		snprintf(caps->detail, sizeof(caps->detail),
			 "loopback socket pair for the probe failed: %s",
			 strerror(-ret));
		return;
	}
	if (setsockopt(cfd, SOL_TCP, TCP_ULP, "tls", sizeof("tls"))) {
		snprintf(caps->detail, sizeof(caps->detail),
			 "tls ULP not available (%s)",
			 errno == ENOENT ? "ENOENT" : strerror(errno));
		goto out_close;
	}
	caps->ulp = true;
	ret = kd_probe_rekey(cfd);
	caps->rekey = ret == 1;
	if (ret < 0)
		snprintf(caps->detail, sizeof(caps->detail),
			 "tls ULP available, TLS 1.3 TLS_TX failed: %s",
			 strerror(-ret));
	else
		snprintf(caps->detail, sizeof(caps->detail),
			 "tls ULP available, TLS 1.3 rekey %s",
			 ret ? "supported" : "not supported (EBUSY)");
out_close:
	close(cfd);
	close(sfd);
}

static struct kd_ktls_caps kd_process_caps;
static pthread_once_t kd_process_caps_once = PTHREAD_ONCE_INIT;

static void kd_probe_process_caps(void)
{
	kd_ktls_probe(&kd_process_caps);
}

/* Whether this kernel rekeys TLS 1.3, probed once per process. */
static bool kd_kernel_rekeys(void)
{
	pthread_once(&kd_process_caps_once, kd_probe_process_caps);
	return kd_process_caps.rekey;
}

/* --- policy ------------------------------------------------------------ */

bool kd_ktls_choose_for(const struct kd_ktls_caps *caps,
			enum kdist_ktls_mode mode, int version, int cipher_nid,
			char *why, size_t whylen)
{
	const struct kd_ktls_cipher *cipher = kd_ktls_cipher_by_nid(cipher_nid);
	bool on = mode == KDIST_KTLS_ON;

	if (mode == KDIST_KTLS_OFF) {
		snprintf(why, whylen, "ktls=off");
		return false;
	}
	if (!caps->ulp) {
		snprintf(why, whylen, "no kernel TLS: %s", caps->detail);
		return false;
	}
	if (!cipher) {
		snprintf(why, whylen,
			 "cipher %s is not supported by kernel TLS here",
			 OBJ_nid2sn(cipher_nid));
		return false;
	}
	if (version == TLS1_2_VERSION) {
		snprintf(why, whylen, on ?
			 "TLS 1.2 %s in the kernel (ktls=on): the link dies at the peer's first renegotiation" :
			 "TLS 1.2 %s stays in user space: an OTP peer renegotiates every 2^28 records and no kernel can follow a renegotiation",
			 cipher->name);
		return on;
	}
	if (version != TLS1_3_VERSION) {
		snprintf(why, whylen, "TLS version 0x%04x is not supported by kernel TLS",
			 (unsigned int)version);
		return false;
	}
	if (cipher->max_records == UINT64_MAX) {
		snprintf(why, whylen,
			 "TLS 1.3 %s in the kernel: OTP never key-updates it",
			 cipher->name);
		return true;
	}
	if (caps->rekey) {
		snprintf(why, whylen,
			 "TLS 1.3 %s in the kernel: it can follow KeyUpdate",
			 cipher->name);
		return true;
	}
	snprintf(why, whylen, "TLS 1.3 %s %s: kernel cannot follow a TLS 1.3 KeyUpdate before Linux 6.14; OTP sends one after 388,736,063,997 bytes",
		 cipher->name,
		 on ? "in the kernel (ktls=on) anyway" : "stays in user space");
	return on;
}

bool kd_ktls_choose(const struct kd_ktls_caps *caps,
		    enum kdist_ktls_mode mode, SSL *ssl, char *why,
		    size_t whylen)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);

	if (!c) {
		snprintf(why, whylen, "no TLS session established");
		return false;
	}
	return kd_ktls_choose_for(caps, mode, SSL_version(ssl),
				  SSL_CIPHER_get_cipher_nid(c), why, whylen);
}

/* --- secret capture ---------------------------------------------------- */

struct kd_ctx_chain {
	SSL_CTX_keylog_cb_func prev;
};

static void kd_free_secrets(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
			    int idx, long argl, void *argp)
{
	if (ptr)
		OPENSSL_clear_free(ptr, sizeof(struct kd_ktls_secrets));
}

static void kd_free_chain(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
			  int idx, long argl, void *argp)
{
	free(ptr);
}

static void kd_init_indexes(void)
{
	kd_ssl_secrets_index =
		SSL_get_ex_new_index(0, NULL, NULL, NULL, kd_free_secrets);
	kd_ctx_chain_index =
		SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, kd_free_chain);
}

static int kd_hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parses the hex secret that ends a keylog line; its length or -EINVAL. */
static int kd_parse_secret(const char *hex, uint8_t *out, size_t max)
{
	size_t n = strlen(hex);

	if (n % 2 || n / 2 > max || n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = kd_hex_nibble(hex[2 * i]);
		int lo = kd_hex_nibble(hex[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			OPENSSL_cleanse(out, max);
			return -EINVAL;
		}
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (int)(n / 2);
}

static struct kd_ktls_secrets *kd_secrets_of(const SSL *ssl)
{
	struct kd_ktls_secrets *sec = SSL_get_ex_data(ssl, kd_ssl_secrets_index);

	if (sec)
		return sec;
	sec = OPENSSL_zalloc(sizeof(*sec));
	if (sec && !SSL_set_ex_data((SSL *)ssl, kd_ssl_secrets_index, sec)) {
		OPENSSL_free(sec);
		return NULL;
	}
	return sec;
}

/* Keeps the two application traffic secrets. The line format is
 * "LABEL <client_random hex> <secret hex>". */
static void kd_keylog(const SSL *ssl, const char *line)
{
	static const char client[] = "CLIENT_TRAFFIC_SECRET_0 ";
	static const char server[] = "SERVER_TRAFFIC_SECRET_0 ";
	struct kd_ctx_chain *chain =
		SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), kd_ctx_chain_index);
	struct kd_ktls_secrets *sec;
	const char *hex;
	bool is_client = !strncmp(line, client, sizeof(client) - 1);
	int n;

	if (chain && chain->prev)
		chain->prev(ssl, line);
	if (!is_client && strncmp(line, server, sizeof(server) - 1))
		return;
	hex = strrchr(line, ' ');
	sec = kd_secrets_of(ssl);
	if (!hex || !sec) {
		kd_warn("ktls: traffic secret not captured (%s)",
			sec ? "malformed keylog line" : "out of memory");
		return;
	}
	n = kd_parse_secret(hex + 1, is_client ? sec->client : sec->server,
			    EVP_MAX_MD_SIZE);
	if (n < 0) {
		kd_warn("ktls: traffic secret not captured (malformed keylog line)");
		return;
	}
	if (is_client)
		sec->client_len = (size_t)n;
	else
		sec->server_len = (size_t)n;
}

void kd_ktls_prepare_ctx(SSL_CTX *ctx)
{
	SSL_CTX_keylog_cb_func prev = SSL_CTX_get_keylog_callback(ctx);
	struct kd_ctx_chain *chain;

	pthread_once(&kd_index_once, kd_init_indexes);
	if (prev == kd_keylog)
		return;
	if (prev) {
		chain = calloc(1, sizeof(*chain));
		if (!chain || !SSL_CTX_set_ex_data(ctx, kd_ctx_chain_index, chain)) {
			free(chain);
			kd_warn("ktls: out of memory; the previous keylog callback will not be called");
		} else {
			chain->prev = prev;
		}
	}
	SSL_CTX_set_keylog_callback(ctx, kd_keylog);
}

/* --- installing keys --------------------------------------------------- */

/* Builds the crypto_info for a TLS 1.3 traffic secret; its size or -EIO. */
static int kd_tls13_info(const struct kd_ktls_state *st, const uint8_t *secret,
			 uint64_t seq, uint8_t info[KD_KTLS_INFO_MAX])
{
	uint8_t key[32], iv[KD_TLS13_IV_LEN];
	size_t size;

	if (kd_tls13_traffic_keys(st->md, secret, st->secret_len, key,
				  st->cipher->key_size, iv))
		return -EIO;
	size = kd_ktls_fill_info(st->cipher, TLS_1_3_VERSION, key, iv, seq,
				 info);
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(iv, sizeof(iv));
	return (int)size;
}

/* Copies the captured TLS 1.3 secrets into @st and wipes the captured ones. */
static int kd_take_tls13_secrets(SSL *ssl, struct kd_ktls_state *st)
{
	struct kd_ktls_secrets *sec = kd_ssl_secrets_index < 0 ? NULL :
		SSL_get_ex_data(ssl, kd_ssl_secrets_index);
	bool server = SSL_is_server(ssl);
	int ret = 0;

	st->secret_len = (size_t)EVP_MD_get_size(st->md);
	if (!sec || sec->client_len != st->secret_len ||
	    sec->server_len != st->secret_len) {
		ret = -ENOKEY;
	} else {
		memcpy(st->tx_secret, server ? sec->server : sec->client,
		       st->secret_len);
		memcpy(st->rx_secret, server ? sec->client : sec->server,
		       st->secret_len);
	}
	if (sec) {
		SSL_set_ex_data(ssl, kd_ssl_secrets_index, NULL);
		OPENSSL_clear_free(sec, sizeof(*sec));
	}
	return ret;
}

/* Builds both crypto_infos of a TLS 1.2 session from its key block. */
static int kd_tls12_infos(SSL *ssl, const struct kd_ktls_cipher *cipher,
			  const EVP_MD *md, uint64_t tx_seq, uint64_t rx_seq,
			  uint8_t *tx_info, uint8_t *rx_info)
{
	uint8_t master[SSL_MAX_MASTER_KEY_LENGTH], block[2 * (32 + 12)];
	uint8_t crandom[SSL3_RANDOM_SIZE], srandom[SSL3_RANDOM_SIZE];
	size_t klen = cipher->key_size, ivlen = cipher->tls12_fixed_iv;
	size_t mlen = SSL_SESSION_get_master_key(SSL_get_session(ssl), master,
						 sizeof(master));
	const uint8_t *ckey = block, *skey = block + klen;
	const uint8_t *civ = block + 2 * klen, *siv = civ + ivlen;
	bool server = SSL_is_server(ssl);
	int ret = 0;

	SSL_get_client_random(ssl, crandom, sizeof(crandom));
	SSL_get_server_random(ssl, srandom, sizeof(srandom));
	if (!mlen || kd_tls12_prf(md, master, mlen, "key expansion", srandom,
				  sizeof(srandom), crandom, sizeof(crandom),
				  block, 2 * (klen + ivlen)))
		ret = -EIO;
	if (!ret) {
		kd_ktls_fill_info(cipher, TLS_1_2_VERSION, server ? skey : ckey,
				  server ? siv : civ, tx_seq, tx_info);
		kd_ktls_fill_info(cipher, TLS_1_2_VERSION, server ? ckey : skey,
				  server ? civ : siv, rx_seq, rx_info);
	}
	OPENSSL_cleanse(master, sizeof(master));
	OPENSSL_cleanse(block, sizeof(block));
	return ret;
}

/* Fills @st and both crypto_infos for @ssl; 0 or -errno with @why set. */
static int kd_prepare_keys(SSL *ssl, struct kd_ktls_state *st, uint64_t tx_seq,
			   uint64_t rx_seq, uint8_t *tx_info, uint8_t *rx_info,
			   char *why, size_t whylen)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	int ret;

	st->version = SSL_version(ssl);
	st->cipher = c ? kd_ktls_cipher_by_nid(SSL_CIPHER_get_cipher_nid(c)) : NULL;
	if (!st->cipher) {
		snprintf(why, whylen, "cipher %s has no kernel TLS support here",
			 c ? SSL_CIPHER_get_name(c) : "(none)");
		return -EOPNOTSUPP;
	}
	st->md = SSL_CIPHER_get_handshake_digest(c);
	if (st->version == TLS1_2_VERSION) {
		ret = kd_tls12_infos(ssl, st->cipher, st->md, tx_seq, rx_seq,
				     tx_info, rx_info);
		if (ret)
			snprintf(why, whylen, "TLS 1.2 key block derivation failed");
		return ret;
	}
	if (st->version != TLS1_3_VERSION) {
		snprintf(why, whylen, "TLS version 0x%04x has no kernel TLS support",
			 (unsigned int)st->version);
		return -EOPNOTSUPP;
	}
	ret = kd_take_tls13_secrets(ssl, st);
	if (ret) {
		snprintf(why, whylen, "TLS 1.3 traffic secrets were not captured; call kd_ktls_prepare_ctx() on the SSL_CTX before the handshake");
		return ret;
	}
	if (kd_tls13_info(st, st->tx_secret, tx_seq, tx_info) < 0 ||
	    kd_tls13_info(st, st->rx_secret, rx_seq, rx_info) < 0) {
		snprintf(why, whylen, "TLS 1.3 traffic key derivation failed");
		return -EIO;
	}
	return 0;
}

int kd_ktls_install_seq(int fd, SSL *ssl, uint64_t tx_seq, uint64_t rx_seq,
			struct kd_ktls_state **out, char *why, size_t whylen)
{
	uint8_t tx_info[KD_KTLS_INFO_MAX], rx_info[KD_KTLS_INFO_MAX];
	struct kd_ktls_state *st = OPENSSL_zalloc(sizeof(*st));
	const char *option;
	int ret;

	*out = NULL;
	if (!st) {
		snprintf(why, whylen, "out of memory for the kernel TLS state");
		return -ENOMEM;
	}
	ret = kd_prepare_keys(ssl, st, tx_seq, rx_seq, tx_info, rx_info, why,
			      whylen);
	if (ret)
		goto err_wipe;

	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls"))) {
		ret = -errno;
		snprintf(why, whylen, "setsockopt TCP_ULP \"tls\" failed: %s; the socket still works for user-space TLS",
			 strerror(errno));
		goto err_wipe;
	}
	if (setsockopt(fd, SOL_TLS, TLS_TX, tx_info, st->cipher->info_size)) {
		option = "TLS_TX";
		goto err_unusable;
	}
	if (setsockopt(fd, SOL_TLS, TLS_RX, rx_info, st->cipher->info_size)) {
		option = "TLS_RX";
		goto err_unusable;
	}
	OPENSSL_cleanse(tx_info, sizeof(tx_info));
	OPENSSL_cleanse(rx_info, sizeof(rx_info));
	*out = st;
	return 0;

err_unusable:
	ret = -errno;
	snprintf(why, whylen, "setsockopt SOL_TLS %s failed: %s; the socket is unusable for TLS, close it",
		 option, strerror(errno));
err_wipe:
	OPENSSL_cleanse(tx_info, sizeof(tx_info));
	OPENSSL_cleanse(rx_info, sizeof(rx_info));
	kd_ktls_state_free(st);
	return ret;
}

int kd_ktls_install(int fd, SSL *ssl, struct kd_ktls_state **out, char *why,
		    size_t whylen)
{
	uint64_t first = SSL_version(ssl) == TLS1_2_VERSION ? 1 : 0;

	return kd_ktls_install_seq(fd, ssl, first, first, out, why, whylen);
}

void kd_ktls_state_free(struct kd_ktls_state *st)
{
	if (st)
		OPENSSL_clear_free(st, sizeof(*st));
}

/* --- records after the hand-over --------------------------------------- */

/* TLS alert descriptions (RFC 8446 section 6, RFC 5246 section 7.2). */
static const char *const kd_alert_names[256] = {
	[0] = "close_notify",
	[10] = "unexpected_message",
	[20] = "bad_record_mac",
	[21] = "decryption_failed",
	[22] = "record_overflow",
	[30] = "decompression_failure",
	[40] = "handshake_failure",
	[41] = "no_certificate",
	[42] = "bad_certificate",
	[43] = "unsupported_certificate",
	[44] = "certificate_revoked",
	[45] = "certificate_expired",
	[46] = "certificate_unknown",
	[47] = "illegal_parameter",
	[48] = "unknown_ca",
	[49] = "access_denied",
	[50] = "decode_error",
	[51] = "decrypt_error",
	[60] = "export_restriction",
	[70] = "protocol_version",
	[71] = "insufficient_security",
	[80] = "internal_error",
	[86] = "inappropriate_fallback",
	[90] = "user_canceled",
	[100] = "no_renegotiation",
	[109] = "missing_extension",
	[110] = "unsupported_extension",
	[111] = "certificate_unobtainable",
	[112] = "unrecognized_name",
	[113] = "bad_certificate_status_response",
	[114] = "bad_certificate_hash_value",
	[115] = "unknown_psk_identity",
	[116] = "certificate_required",
	[120] = "no_application_protocol",
};

static int kd_recv_alert(const uint8_t *data, size_t len, char *why,
			 size_t whylen)
{
	const char *name;

	if (len != 2) {
		snprintf(why, whylen, "TLS alert record of %zu bytes, expected 2",
			 len);
		return -EBADMSG;
	}
	if (data[1] == 0)
		return 1;
	name = kd_alert_names[data[1]];
	if (name)
		snprintf(why, whylen, "TLS alert from peer: %s (%s)", name,
			 data[0] == 1 ? "warning" : "fatal");
	else
		snprintf(why, whylen, "TLS alert from peer: unknown description %u (%s)",
			 data[1], data[0] == 1 ? "warning" : "fatal");
	return -ECONNABORTED;
}

/* Installs st->rx_secret (the next key) as TLS_RX. */
static int kd_install_rx(int fd, struct kd_ktls_state *st, char *why,
			 size_t whylen)
{
	uint8_t info[KD_KTLS_INFO_MAX];
	int size = kd_tls13_info(st, st->rx_secret, 0, info);
	int ret = 0;

	if (size < 0) {
		snprintf(why, whylen, "TLS 1.3 receive key derivation failed");
		return -EIO;
	}
	if (setsockopt(fd, SOL_TLS, TLS_RX, info, (socklen_t)size)) {
		ret = -errno;
		snprintf(why, whylen, "setsockopt SOL_TLS TLS_RX for the next key failed: %s",
			 strerror(errno));
	} else {
		st->rx_rekey_pending = false;
		st->rx_key_updates++;
	}
	OPENSSL_cleanse(info, sizeof(info));
	return ret;
}

bool kd_ktls_rx_key_pending(const struct kd_ktls_state *st)
{
	return st->rx_rekey_pending;
}

int kd_ktls_rx_rekey(int fd, struct kd_ktls_state *st, char *why,
		     size_t whylen)
{
	if (!st->rx_rekey_pending) {
		snprintf(why, whylen, "receive key expired but no KeyUpdate from the peer was read");
		return -EPROTO;
	}
	return kd_install_rx(fd, st, why, whylen);
}

/* Sends KeyUpdate(@request_peer) as a handshake record under the TX key. */
static int kd_send_key_update(int fd, bool request_peer)
{
	uint8_t body[5] = { KD_HS_KEY_UPDATE, 0, 0, 1, request_peer };
	char cbuf[CMSG_SPACE(sizeof(uint8_t))] = { 0 };
	struct iovec iov = { .iov_base = body, .iov_len = sizeof(body) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	ssize_t n;

	cmsg->cmsg_level = SOL_TLS;
	cmsg->cmsg_type = TLS_SET_RECORD_TYPE;
	cmsg->cmsg_len = CMSG_LEN(sizeof(uint8_t));
	*CMSG_DATA(cmsg) = KD_REC_HANDSHAKE;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };

		n = sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (n >= 0 || (errno != EAGAIN && errno != EINTR))
			break;
		/* The socket is non-blocking and its send buffer is full. */
		if (errno == EAGAIN &&
		    poll(&pfd, 1, KD_KEY_UPDATE_WAIT_MS) == 0)
			return -ETIMEDOUT;
	}
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(body) ? 0 : -EIO;
}

int kd_ktls_tx_rekey(int fd, struct kd_ktls_state *st, bool request_peer,
		     char *why, size_t whylen)
{
	uint8_t info[KD_KTLS_INFO_MAX];
	int size, ret;

	if (st->version != TLS1_3_VERSION || !kd_kernel_rekeys()) {
		snprintf(why, whylen, "KeyUpdate needs TLS 1.3 and Linux 6.14 or later");
		return -EOPNOTSUPP;
	}
	ret = kd_send_key_update(fd, request_peer);
	if (ret) {
		snprintf(why, whylen, "sending KeyUpdate failed: %s", strerror(-ret));
		return ret;
	}
	ret = kd_tls13_next_secret(st->md, st->tx_secret, st->secret_len);
	size = ret ? -EIO : kd_tls13_info(st, st->tx_secret, 0, info);
	if (size < 0) {
		snprintf(why, whylen, "TLS 1.3 transmit key derivation failed");
		return -EIO;
	}
	ret = 0;
	if (setsockopt(fd, SOL_TLS, TLS_TX, info, (socklen_t)size)) {
		ret = -errno;
		snprintf(why, whylen, "setsockopt SOL_TLS TLS_TX for the next key failed after our KeyUpdate: %s; the link cannot continue",
			 strerror(errno));
	} else {
		st->tx_records = 0;
		st->tx_key_updates++;
	}
	OPENSSL_cleanse(info, sizeof(info));
	return ret;
}

bool kd_ktls_tx_account(struct kd_ktls_state *st, size_t bytes)
{
	uint64_t records = bytes ? (bytes + KD_MAX_RECORD - 1) / KD_MAX_RECORD : 1;

	if (st->tx_records > UINT64_MAX - records)
		st->tx_records = UINT64_MAX;
	else
		st->tx_records += records;
	return st->version == TLS1_3_VERSION &&
	       st->tx_records >= st->cipher->max_records;
}

/*
 * The peer's KeyUpdate: next RX key, and our own KeyUpdate if requested,
 * sent here when @reply is NULL and left to the caller through *@reply
 * otherwise.
 */
static int kd_recv_key_update(int fd, struct kd_ktls_state *st,
			      const uint8_t *body, size_t len, bool *reply,
			      char *why, size_t whylen)
{
	int ret;

	if (st->version != TLS1_3_VERSION) {
		snprintf(why, whylen, "KeyUpdate received on a TLS 1.2 connection");
		return -EPROTO;
	}
	if (len != 1 || body[0] > 1) {
		snprintf(why, whylen, "malformed KeyUpdate from peer");
		return -EBADMSG;
	}
	if (!kd_kernel_rekeys()) {
		/* ktls=auto already puts ChaCha20 in the kernel here, so for
		 * a peer that key-updates it only ktls=off helps. */
		if (st->cipher->nid == NID_chacha20_poly1305)
			snprintf(why, whylen, "peer sent a TLS 1.3 KeyUpdate, which the kernel cannot follow before Linux 6.14; use ktls=off with peers that key-update ChaCha20-Poly1305 (OTP does not)");
		else
			snprintf(why, whylen, "peer sent a TLS 1.3 KeyUpdate, which the kernel cannot follow before Linux 6.14; reconnect, or use ChaCha20-Poly1305 or ktls=auto");
		return -EOPNOTSUPP;
	}
	ret = kd_tls13_next_secret(st->md, st->rx_secret, st->secret_len);
	if (ret) {
		snprintf(why, whylen, "TLS 1.3 receive key derivation failed");
		return ret;
	}
	st->rx_rekey_pending = true;
	ret = kd_install_rx(fd, st, why, whylen);
	if (ret || !body[0])
		return ret;
	if (reply) {
		*reply = true;
		return 0;
	}
	return kd_ktls_tx_rekey(fd, st, false, why, whylen);
}

/* Walks the handshake messages of one record (none may span records). */
static int kd_recv_handshake(int fd, struct kd_ktls_state *st,
			     const uint8_t *data, size_t len, bool *reply,
			     char *why, size_t whylen)
{
	while (len) {
		size_t mlen;

		if (len < 4) {
			snprintf(why, whylen, "truncated handshake message header from peer");
			return -EBADMSG;
		}
		mlen = (size_t)data[1] << 16 | (size_t)data[2] << 8 | data[3];
		if (mlen > len - 4) {
			snprintf(why, whylen, "handshake message of %zu bytes spans records, which is not supported after the hand-over",
				 mlen);
			return -EBADMSG;
		}
		switch (data[0]) {
		case KD_HS_NEW_SESSION_TICKET:
			break;
		case KD_HS_KEY_UPDATE:
			/* A KeyUpdate must end its record (RFC 8446 5.1). */
			if (mlen + 4 != len) {
				snprintf(why, whylen, "KeyUpdate not at the end of its record");
				return -EPROTO;
			}
			return kd_recv_key_update(fd, st, data + 4, mlen,
						  reply, why, whylen);
		case KD_HS_HELLO_REQUEST:
			snprintf(why, whylen, "peer requested a TLS renegotiation, which kernel TLS cannot follow");
			return -EOPNOTSUPP;
		case KD_HS_CLIENT_HELLO:
			snprintf(why, whylen, "peer started a TLS renegotiation (ClientHello), which kernel TLS cannot follow; use TLS 1.3 or ktls=auto");
			return -EOPNOTSUPP;
		default:
			snprintf(why, whylen, "unexpected handshake message type %u after the handshake",
				 data[0]);
			return -EPROTO;
		}
		data += 4 + mlen;
		len -= 4 + mlen;
	}
	return 0;
}

int kd_ktls_handle_record(int fd, struct kd_ktls_state *st,
			  uint8_t record_type, const uint8_t *data,
			  size_t len, char *why, size_t whylen)
{
	return kd_ktls_handle_record_defer(fd, st, record_type, data, len,
					   NULL, why, whylen);
}

int kd_ktls_handle_record_defer(int fd, struct kd_ktls_state *st,
				uint8_t record_type, const uint8_t *data,
				size_t len, bool *reply, char *why,
				size_t whylen)
{
	switch (record_type) {
	case KD_REC_ALERT:
		return kd_recv_alert(data, len, why, whylen);
	case KD_REC_HANDSHAKE:
		return kd_recv_handshake(fd, st, data, len, reply, why, whylen);
	default:
		snprintf(why, whylen, "unexpected TLS record type %u after the handshake",
			 record_type);
		return -EPROTO;
	}
}

/* One recvmsg; stores the record type (data when no cmsg came). */
static ssize_t kd_recv_record(int fd, void *buf, size_t len, uint8_t *type,
			      int *flags)
{
	char cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cmsg;
	ssize_t n;

	do
		n = recvmsg(fd, &msg, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return n;
	*type = KD_REC_DATA;
	*flags = msg.msg_flags;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (cmsg && cmsg->cmsg_level == SOL_TLS &&
	    cmsg->cmsg_type == TLS_GET_RECORD_TYPE &&
	    cmsg->cmsg_len == CMSG_LEN(sizeof(uint8_t)))
		*type = *CMSG_DATA(cmsg);
	return n;
}

/*
 * Reads the rest of a control record that did not fit into the caller's
 * buffer and returns its total length or -errno.
 * NOTE: no test reads a control record through a buffer smaller than the
 * record, so this continuation path has not run on a real kernel.
 */
static ssize_t kd_recv_control_rest(int fd, uint8_t *rec, size_t have,
				    uint8_t want_type)
{
	while (have < KD_MAX_RECORD) {
		uint8_t type;
		int flags;
		ssize_t n = kd_recv_record(fd, rec + have, KD_MAX_RECORD - have,
					   &type, &flags);

		if (n < 0)
			return -errno;
		if (n == 0 || type != want_type)
			return -EBADMSG;
		have += (size_t)n;
		if ((flags & MSG_EOR) || have < KD_MAX_RECORD)
			break;
	}
	return (ssize_t)have;
}

ssize_t kd_ktls_recv(int fd, struct kd_ktls_state *st, void *buf, size_t len,
		     char *why, size_t whylen)
{
	static __thread uint8_t rec[KD_MAX_RECORD];
	int ret;

	for (;;) {
		uint8_t type;
		int flags;
		ssize_t n = kd_recv_record(fd, buf, len, &type, &flags);
		size_t have;

		if (n < 0 && errno == EKEYEXPIRED) {
			ret = kd_ktls_rx_rekey(fd, st, why, whylen);
			if (ret)
				goto err_errno;
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			snprintf(why, whylen, "nothing to read yet");
			return -EAGAIN; /* errno stays EAGAIN */
		}
		if (n < 0) {
			snprintf(why, whylen, "recvmsg on kernel TLS socket failed: %s",
				 strerror(errno));
			return -1;
		}
		if (n == 0 || type == KD_REC_DATA)
			return n;

		/* A control record: collect it whole, then act on it. */
		have = (size_t)n < sizeof(rec) ? (size_t)n : sizeof(rec);
		memcpy(rec, buf, have);
		if (!(flags & MSG_EOR) && (size_t)n == len) {
			n = kd_recv_control_rest(fd, rec, have, type);
			if (n < 0) {
				ret = (int)n;
				snprintf(why, whylen, "reading a TLS control record failed: %s",
					 strerror(-ret));
				goto err_errno;
			}
			have = (size_t)n;
		}
		ret = kd_ktls_handle_record(fd, st, type, rec, have, why, whylen);
		OPENSSL_cleanse(rec, have);
		if (ret == 1)
			return 0;
		if (ret < 0)
			goto err_errno;
	}

err_errno:
	errno = -ret;
	return -1;
}
