/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel TLS: probing what the running kernel offers, deciding per
 * connection whether the kernel can carry it for its whole life, and
 * moving a finished OpenSSL session's traffic keys into the socket
 * (TCP_ULP "tls", then TLS_TX and TLS_RX).
 */
#ifndef KD_KTLS_H
#define KD_KTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/types.h>

#include <linux/tls.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "kdist.h"

/* What the running kernel can do, probed once at start-up. */
struct kd_ktls_caps {
	bool ulp;   /* setsockopt(TCP_ULP, "tls") works */
	bool rekey; /* a second TLS_TX on a TLS 1.3 socket works (6.14+) */
	char detail[128]; /* e.g. "tls ULP not available (ENOENT)" */
};

void kd_ktls_probe(struct kd_ktls_caps *caps);

/* Installs the callbacks that capture traffic secrets; call on every
 * SSL_CTX whose connections may move to the kernel. */
void kd_ktls_prepare_ctx(SSL_CTX *ctx);

/*
 * Decides the record path for a connection whose TLS handshake just
 * finished (the policy is described at the top of ktls.c). Returns true for the kernel, false for user space, and writes
 * the reason into @why either way (for the log and the statistics).
 */
bool kd_ktls_choose(const struct kd_ktls_caps *caps,
		    enum kdist_ktls_mode mode, SSL *ssl, char *why,
		    size_t whylen);

/* The same decision from the negotiated @version (TLS1_2_VERSION or
 * TLS1_3_VERSION) and the cipher's NID (SSL_CIPHER_get_cipher_nid). */
bool kd_ktls_choose_for(const struct kd_ktls_caps *caps,
			enum kdist_ktls_mode mode, int version, int cipher_nid,
			char *why, size_t whylen);

/* Key and record state kept for a kernel-TLS connection (rekeys). Owned by
 * the thread that owns the socket; not safe to share. */
struct kd_ktls_state;

/*
 * Moves @ssl's current traffic keys into @fd. Nothing may have been read
 * from @fd past the handshake. Returns 0 with *@out allocated, or a
 * negative errno with @why set; on failure the socket is unusable for
 * TLS when the ULP was already attached (@why says so).
 */
int kd_ktls_install(int fd, SSL *ssl, struct kd_ktls_state **out, char *why,
		    size_t whylen);

/*
 * Same as kd_ktls_install() with explicit first record sequence numbers.
 * kd_ktls_install() uses 0 for TLS 1.3 and 1 for TLS 1.2 (the Finished
 * message was record 0 under the new keys). That is right only while the
 * handshake runs without read-ahead and without session tickets, and keys
 * move before any application data, which is how the engine drives it.
 */
int kd_ktls_install_seq(int fd, SSL *ssl, uint64_t tx_seq, uint64_t rx_seq,
			struct kd_ktls_state **out, char *why, size_t whylen);
void kd_ktls_state_free(struct kd_ktls_state *st);

/*
 * Handles a record that is not application data, read with
 * recvmsg and its TLS_GET_RECORD_TYPE control message. Returns 0 to go on
 * (NewSessionTicket ignored, KeyUpdate processed), 1 for close_notify,
 * or a negative errno with @why set (another alert, a bad message).
 */
int kd_ktls_handle_record(int fd, struct kd_ktls_state *st,
			  uint8_t record_type, const uint8_t *data,
			  size_t len, char *why, size_t whylen);
/*
 * Same as kd_ktls_handle_record(), except that a KeyUpdate asking for ours
 * installs the next receive key and sets *@reply instead of sending our
 * KeyUpdate; the caller then calls kd_ktls_tx_rekey(..., false, ...) as
 * soon as it has no send in flight. For the data loop, whose sends are
 * asynchronous.
 */
int kd_ktls_handle_record_defer(int fd, struct kd_ktls_state *st,
				uint8_t record_type, const uint8_t *data,
				size_t len, bool *reply, char *why,
				size_t whylen);

/*
 * Contract for the KeyUpdate handling in kd_ktls_handle_record() and for
 * kd_ktls_tx_rekey(): the caller has no send of its own in flight on @fd
 * while they run, because the KeyUpdate record must leave under the old
 * transmit key and the kernel does not pause transmission across TLS_TX.
 */

/* After EKEYEXPIRED on receive: installs the next receive key. */
int kd_ktls_rx_rekey(int fd, struct kd_ktls_state *st, char *why,
		     size_t whylen);

/* True between reading the peer's KeyUpdate and installing the next
 * receive key; false when an EKEYEXPIRED arrives after the install (a
 * receive the kernel had already failed before the key changed). */
bool kd_ktls_rx_key_pending(const struct kd_ktls_state *st);

/*
 * Sends our own KeyUpdate (update_requested when @request_peer) under the
 * current transmit key, then installs the next one. Needs Linux 6.14 or
 * later and TLS 1.3; returns -EOPNOTSUPP before sending anything otherwise.
 */
int kd_ktls_tx_rekey(int fd, struct kd_ktls_state *st, bool request_peer,
		     char *why, size_t whylen);

/*
 * Counts the records that a send of @bytes plaintext may produce (one per
 * started 16 KiB, an upper bound) and returns true once the transmit key
 * has reached its AEAD usage limit (2^24.5 records for AES-GCM in TLS 1.3),
 * when the caller must call kd_ktls_tx_rekey(..., false, ...). The data
 * loop counts every send and rekeys before the next one.
 */
bool kd_ktls_tx_account(struct kd_ktls_state *st, size_t bytes);

/* Reads plaintext through a kernel-TLS socket during the distribution
 * handshake, handling control records as above. Same return conventions as
 * recvmsg: bytes read, 0 for an orderly close (close_notify included), or
 * -1 with errno and @why set. On a non-blocking socket with nothing to
 * read it returns -EAGAIN with errno EAGAIN, so that callers testing
 * errno and callers comparing the result with -EAGAIN both wait. */
ssize_t kd_ktls_recv(int fd, struct kd_ktls_state *st, void *buf, size_t len,
		     char *why, size_t whylen);

/* Per-cipher facts: OpenSSL's cipher NID, the kernel's TLS_CIPHER_* and the
 * layout of its tls12_crypto_info_* struct. */
struct kd_ktls_cipher {
	const char *name;
	int nid;
	uint16_t kernel_type;
	uint8_t key_size;
	uint8_t salt_size;   /* kernel salt: implicit part of the nonce */
	uint8_t iv_size;     /* kernel iv field */
	uint8_t tls12_fixed_iv; /* TLS 1.2 client/server_write_IV length */
	uint16_t info_size;
	uint8_t iv_offset, key_offset, salt_offset, seq_offset;
	uint64_t max_records; /* records per key before a KeyUpdate (TLS 1.3) */
};

/* Largest tls12_crypto_info_* among the supported ciphers. */
#define KD_KTLS_INFO_MAX 64
#define KD_TLS13_IV_LEN 12

extern const struct kd_ktls_cipher kd_ktls_ciphers[];
extern const size_t kd_ktls_cipher_count;

const struct kd_ktls_cipher *kd_ktls_cipher_by_nid(int nid);

/* HKDF-Expand-Label(@secret, @label, "", @outlen) of TLS 1.3. */
int kd_tls13_expand_label(const EVP_MD *md, const uint8_t *secret,
			  size_t secret_len, const char *label, uint8_t *out,
			  size_t outlen);
/* The key and 12-byte IV of a TLS 1.3 traffic secret. */
int kd_tls13_traffic_keys(const EVP_MD *md, const uint8_t *secret,
			  size_t secret_len, uint8_t *key, size_t key_len,
			  uint8_t iv[KD_TLS13_IV_LEN]);
/* The traffic secret after a KeyUpdate, written over @secret. */
int kd_tls13_next_secret(const EVP_MD *md, uint8_t *secret, size_t secret_len);
/* TLS 1.2 PRF(@secret, @label, @seed1 + @seed2). */
int kd_tls12_prf(const EVP_MD *md, const uint8_t *secret, size_t secret_len,
		 const char *label, const uint8_t *seed1, size_t seed1_len,
		 const uint8_t *seed2, size_t seed2_len, uint8_t *out,
		 size_t outlen);

/*
 * Fills @info (KD_KTLS_INFO_MAX bytes) with the tls12_crypto_info_* for
 * @cipher and returns its size. @nonce_iv is the TLS 1.3 12-byte IV or the
 * TLS 1.2 client/server_write_IV; the TLS 1.2 explicit nonce for AES-GCM
 * is the 8-byte big-endian @seq, as the first record continues from it.
 */
size_t kd_ktls_fill_info(const struct kd_ktls_cipher *cipher, uint16_t version,
			 const uint8_t *key, const uint8_t *nonce_iv,
			 uint64_t seq, uint8_t info[KD_KTLS_INFO_MAX]);

#endif
