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
 * finished. Returns true for the kernel, false for user space, and writes
 * the reason into @why either way (for the log and the statistics).
 */
bool kd_ktls_choose(const struct kd_ktls_caps *caps,
		    enum kdist_ktls_mode mode, SSL *ssl, char *why,
		    size_t whylen);

/* Key and record state kept for a kernel-TLS connection (rekeys). */
struct kd_ktls_state;

/*
 * Moves @ssl's current traffic keys into @fd. Nothing may have been read
 * from @fd past the handshake. Returns 0 with *@out allocated, or a
 * negative errno with @why set; on failure the socket is unusable for
 * TLS when the ULP was already attached (@why says so).
 */
int kd_ktls_install(int fd, SSL *ssl, struct kd_ktls_state **out, char *why,
		    size_t whylen);
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
/* After EKEYEXPIRED on receive: installs the next receive key. */
int kd_ktls_rx_rekey(int fd, struct kd_ktls_state *st, char *why,
		     size_t whylen);

/* Reads and writes plaintext through a kernel-TLS socket during the
 * distribution handshake, handling control records as above. Same return
 * conventions as recvmsg/send. */
ssize_t kd_ktls_recv(int fd, struct kd_ktls_state *st, void *buf, size_t len,
		     char *why, size_t whylen);

#endif
