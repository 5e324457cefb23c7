// SPDX-License-Identifier: Apache-2.0
/*
 * User-space TLS record path. After the handshake a link BIO replaces the
 * connection's socket BIO, and io_uring moves the ciphertext. OpenSSL reads
 * received records straight out of the provided receive buffer. It writes
 * its records straight into the ciphertext buffer that the next send
 * takes. A memory BIO pair would copy each byte once more each way.
 * Renegotiation (TLS 1.2) and KeyUpdate (TLS 1.3) from the peer happen
 * inside SSL_read and SSL_write. The records they produce
 * leave through the same BIO, in order with application data.
 */
#include "loop_int.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "error.h"
#include "log.h"

static int link_ex_index = -1;
static pthread_once_t link_ex_once = PTHREAD_ONCE_INIT;

static BIO_METHOD *link_bio_method;

static int ctbuf_reserve(struct kd_link *l, struct kd_ctbuf *ct, size_t more);

/*
 * Serves OpenSSL's reads from the ciphertext that kd_user_tls_receive()
 * lent (l->rx_ct). OpenSSL keeps a partial record in its own buffer, so an
 * empty loan means "retry later" and nothing needs to outlive the call.
 */
static int link_bio_read(BIO *bio, char *out, int outl)
{
	struct kd_link *l = BIO_get_data(bio);
	size_t n = l->rx_ct_len;

	BIO_clear_retry_flags(bio);
	if (n == 0) {
		BIO_set_retry_read(bio);
		return -1;
	}
	if (n > (size_t)outl)
		n = outl;
	memcpy(out, l->rx_ct, n);
	l->rx_ct += n;
	l->rx_ct_len -= n;
	return n;
}

/* Appends OpenSSL's records to the ciphertext buffer being filled. */
static int link_bio_write(BIO *bio, const char *in, int inl)
{
	struct kd_link *l = BIO_get_data(bio);
	struct kd_ctbuf *ct = l->ct_fill;

	BIO_clear_retry_flags(bio);
	if (inl <= 0)
		return 0;
	if (ctbuf_reserve(l, ct, inl) < 0)
		return -1;
	memcpy(ct->data + ct->len, in, inl);
	ct->len += inl;
	return inl;
}

static long link_bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
	(void)bio;
	(void)num;
	(void)ptr;
	/* Records are complete once written, so a flush has nothing to do. */
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static void link_ex_init(void)
{
	link_ex_index = SSL_get_ex_new_index(0, "kdist link", NULL, NULL, NULL);
	link_bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				       "kdist link");
	if (!link_bio_method)
		return;
	BIO_meth_set_read(link_bio_method, link_bio_read);
	BIO_meth_set_write(link_bio_method, link_bio_write);
	BIO_meth_set_ctrl(link_bio_method, link_bio_ctrl);
}

/* Remembers the last alert in each direction for the close reason. */
static void info_callback(const SSL *ssl, int where, int ret)
{
	struct kd_link *l = SSL_get_ex_data(ssl, link_ex_index);

	if (!l)
		return;
	if (where & SSL_CB_ALERT) {
		if (where & SSL_CB_WRITE)
			l->alert_sent = ret & 0xff;
		else
			l->alert_received = ret & 0xff;
	}
	if (l->prev_info_cb)
		l->prev_info_cb(ssl, where, ret);
}

static void hook_info_callback(struct kd_link *l)
{
	l->prev_info_cb = SSL_get_info_callback(l->ssl);
	if (!l->prev_info_cb)
		l->prev_info_cb = SSL_CTX_get_info_callback(SSL_get_SSL_CTX(l->ssl));
	SSL_set_ex_data(l->ssl, link_ex_index, l);
	SSL_set_info_callback(l->ssl, info_callback);
}

/*
 * Moves a finished connection onto the link BIO. Runs on the attaching
 * thread; on failure the caller keeps @l->ssl as it was.
 */
int kd_user_tls_init(struct kd_link *l)
{
	unsigned i;

	pthread_once(&link_ex_once, link_ex_init);
	if (link_ex_index < 0 || !link_bio_method)
		return kd_fail(ENOMEM,
			       "loop: SSL_get_ex_new_index or BIO_meth_new failed");
	if (!SSL_is_init_finished(l->ssl))
		return kd_fail(EINVAL,
			       "loop: attach %s: the TLS handshake has not finished",
			       l->peer);
	/* Bytes inside the old BIO or OpenSSL's read buffer would be lost. */
	if (SSL_has_pending(l->ssl))
		return kd_fail(EINVAL,
			       "loop: attach %s: OpenSSL holds unread data; hand it over as pending plaintext or disable read-ahead",
			       l->peer);

	l->plain = malloc(KD_TLS_PLAIN_SIZE);
	l->rbio = BIO_new(link_bio_method);
	if (!l->plain || !l->rbio)
		goto err_free_bio;
	BIO_set_data(l->rbio, l);
	BIO_set_init(l->rbio, 1);
	l->wbio = l->rbio;

	/* One BIO both ways: SSL_set_bio() takes its single reference. */
	SSL_set_bio(l->ssl, l->rbio, l->wbio);
	SSL_clear_mode(l->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
	SSL_set_mode(l->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	hook_info_callback(l);
	for (i = 0; i < KD_CT_BUFS; i++)
		l->ct[i].link = l;
	l->ct_fill = &l->ct[0];
	return 0;

err_free_bio:
	BIO_free(l->rbio);
	free(l->plain);
	l->rbio = l->wbio = NULL;
	l->plain = NULL;
	return kd_fail(ENOMEM, "loop: out of memory");
}

/* Frees the connection (and its link BIO) on any path. Ciphertext buffers
 * stay until the link's memory goes: zero-copy sends may still read them. */
void kd_user_tls_free(struct kd_link *l)
{
	if (l->ssl)
		SSL_free(l->ssl);
	l->ssl = NULL;
	l->rbio = l->wbio = NULL;
	free(l->plain);
	l->plain = NULL;
}

/* Closes @l with OpenSSL's reason for the failure of @call. */
static void tls_fail(struct kd_link *l, const char *call)
{
	unsigned long e = ERR_peek_error();
	char str[160];

	if (l->alert_received >= 0) {
		kd_link_fail(l, -EPROTO, "TLS alert from peer: %s",
			     SSL_alert_desc_string_long(l->alert_received));
	} else if (e) {
		ERR_error_string_n(e, str, sizeof(str));
		if (l->alert_sent >= 0)
			kd_link_fail(l, -EPROTO, "TLS error in %s: %s (sent alert: %s)",
				     call, str,
				     SSL_alert_desc_string_long(l->alert_sent));
		else
			kd_link_fail(l, -EPROTO, "TLS error in %s: %s", call, str);
	} else {
		kd_link_fail(l, -EPROTO, "TLS error in %s with no OpenSSL reason",
			     call);
	}
	ERR_clear_error();
}

/* Handles what SSL_get_error() reports; returns true when the link ends. */
static bool tls_result(struct kd_link *l, int ret, const char *call)
{
	switch (SSL_get_error(l->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return false;
	case SSL_ERROR_ZERO_RETURN:
		kd_rx_eof(l, "TLS close_notify from peer");
		return true;
	case SSL_ERROR_SSL:
		tls_fail(l, call);
		return true;
	default:
		kd_link_fail(l, -EIO, "%s failed: SSL_get_error returned %d", call,
			     SSL_get_error(l->ssl, ret));
		ERR_clear_error();
		return true;
	}
}

/*
 * Decrypts one record's plaintext to where it belongs: straight into the
 * packet being assembled when one is, else into l->plain for the parser.
 * Returns SSL_read's result, or 0 once the link is closing.
 */
static int read_record(struct kd_link *l)
{
	uint8_t *dst;
	size_t room;
	int ret;

	room = kd_rx_assembly_space(l, &dst);
	if (room == 0) {
		ret = SSL_read(l->ssl, l->plain, KD_TLS_PLAIN_SIZE);
		if (ret > 0 && kd_rx_parse(l, l->plain, ret) < 0)
			return 0;
		return ret;
	}
	if (room > INT_MAX)
		room = INT_MAX;
	ret = SSL_read(l->ssl, dst, room);
	if (ret > 0 && kd_rx_assembly_commit(l, ret) < 0)
		return 0;
	return ret;
}

/*
 * Decrypts @n bytes of received ciphertext and parses the plaintext. The
 * link BIO reads @p only during this call; OpenSSL keeps a record's
 * partial tail in its own buffer.
 */
void kd_user_tls_receive(struct kd_link *l, const uint8_t *p, size_t n)
{
	int ret;

	ERR_clear_error();
	l->rx_ct = p;
	l->rx_ct_len = n;
	do {
		ret = read_record(l);
	} while (ret > 0);
	l->rx_ct = NULL;
	l->rx_ct_len = 0;
	if (l->dead || atomic_load_explicit(&l->closing, memory_order_relaxed))
		return;
	if (tls_result(l, ret, "SSL_read"))
		return;
	/* SSL_read may have produced handshake records, and a SSL_write
	 * that waited for the peer's handshake messages can go on now. */
	kd_sendq_flush(l);
}

static int ctbuf_reserve(struct kd_link *l, struct kd_ctbuf *ct, size_t more)
{
	size_t cap = ct->cap ? ct->cap : KD_TLS_BATCH + 64 * 1024;
	uint8_t *data;

	if (ct->len + more <= ct->cap)
		return 0;
	while (cap < ct->len + more)
		cap *= 2;
	data = realloc(ct->data, cap);
	if (!data) {
		kd_link_fail(l, -ENOMEM, "out of memory for %zu bytes of ciphertext",
			     cap);
		return -ENOMEM;
	}
	ct->data = data;
	ct->cap = cap;
	return 0;
}

/*
 * Writes a close_notify alert into l->ct_fill for the caller to send.
 * OpenSSL refuses during a renegotiation; the link then ends with a FIN
 * alone. SSL_read goes on reading until the peer closes its side.
 */
int kd_user_tls_close_notify(struct kd_link *l)
{
	ERR_clear_error();
	if (SSL_shutdown(l->ssl) < 0) {
		kd_debug("link %s: no close_notify: SSL_shutdown failed",
			 l->peer);
		ERR_clear_error();
		return -EPROTO;
	}
	return 0;
}

/*
 * Encrypts queued packets into l->ct_fill, up to KD_TLS_BATCH bytes at a
 * time, straight from the queue's chunks: the link BIO appends each record
 * to l->ct_fill. SSL_write returns SSL_ERROR_WANT_READ while a
 * renegotiation waits for the peer; the chunk stays queued and the next
 * receive retries it.
 *
 * NOTE: OpenSSL 3.0 still copies the plaintext into its own record buffer
 * and encrypts it there, so each byte is copied twice on this path (into
 * the queue by kd_link_send(), then by SSL_write) before the kernel's copy.
 */
int kd_user_tls_encrypt(struct kd_link *l)
{
	struct kd_chunk *c;
	int ret;

	while (l->ct_fill->len < KD_TLS_BATCH) {
		c = l->tx_head ? l->tx_head : kd_sendq_take(l);
		if (!c)
			break;
		ERR_clear_error();
		ret = SSL_write(l->ssl, c->data + l->tx_off, c->len - l->tx_off);
		if (ret <= 0) {
			if (l->dead || tls_result(l, ret, "SSL_write"))
				return -EPROTO;
			break;
		}
		kd_sendq_consumed(l, ret);
	}
	return 0;
}
