// SPDX-License-Identifier: Apache-2.0
/*
 * Send side. kd_link_send() copies each packet into the link's queue of
 * chunks under a per-link mutex. The data thread takes the whole queue at
 * once. It writes the chunks with one SENDMSG (plaintext paths) or
 * encrypts them into a ciphertext buffer (user-space TLS). One send per
 * link is in flight at a time, which keeps the stream in order.
 */
#include "loop_int.h"

#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ktls.h"
#include "log.h"

static struct kd_chunk *chunk_get(struct kd_link *l)
{
	struct kd_chunk *c = l->spares;

	if (c) {
		l->spares = c->next;
		l->nspares--;
	} else {
		c = malloc(sizeof(*c));
		if (!c)
			return NULL;
	}
	c->next = NULL;
	c->len = 0;
	return c;
}

static void chunk_put(struct kd_link *l, struct kd_chunk *c)
{
	if (l->nspares >= KD_CHUNK_SPARES || l->q_dead) {
		free(c);
		return;
	}
	c->next = l->spares;
	l->spares = c;
	l->nspares++;
}

/*
 * Links enough chunks behind the queue's tail for @n bytes and returns
 * the chunk the copy starts in, or NULL without changes when out of
 * memory. Every new chunk receives at least one byte, so the queue never
 * holds an empty chunk. The caller holds sendq_lock.
 */
static struct kd_chunk *queue_reserve(struct kd_link *l, size_t n)
{
	struct kd_chunk *first = NULL, *last = NULL, *c;
	size_t room = l->q_tail ? KD_CHUNK_SIZE - l->q_tail->len : 0;

	while (room < n) {
		c = chunk_get(l);
		if (!c)
			goto err_put_chunks;
		if (last)
			last->next = c;
		else
			first = c;
		last = c;
		room += KD_CHUNK_SIZE;
	}

	if (l->q_tail && l->q_tail->len < KD_CHUNK_SIZE)
		c = l->q_tail;
	else
		c = first;
	if (first) {
		if (l->q_tail)
			l->q_tail->next = first;
		else
			l->q_head = first;
		l->q_tail = last;
	}
	return c;

err_put_chunks:
	while ((c = first)) {
		first = c->next;
		chunk_put(l, c);
	}
	return NULL;
}

/* Copies @n bytes from chunk *@c on; *@c follows the copy. */
static void queue_append(struct kd_chunk **c, const uint8_t *p, size_t n)
{
	size_t take;

	while (n > 0) {
		if ((*c)->len == KD_CHUNK_SIZE)
			*c = (*c)->next;
		take = KD_CHUNK_SIZE - (*c)->len;
		if (take > n)
			take = n;
		memcpy((*c)->data + (*c)->len, p, take);
		(*c)->len += take;
		p += take;
		n -= take;
	}
}

static void count_sent_packet(struct kd_link *l, uint64_t len)
{
	if (len == 0) {
		atomic_fetch_add_explicit(&l->ticks_out, 1, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&l->msgs_out, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&l->bytes_out, len, memory_order_relaxed);
}

int kd_link_send(struct kd_link *l, const struct iovec *iov, unsigned iovcnt,
		 unsigned flags)
{
	struct kd_chunk *c;
	uint64_t total = 0;
	uint8_t prefix[4];
	size_t limit;
	unsigned i;

	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > UINT32_MAX)
		return -EMSGSIZE;
	if (atomic_load_explicit(&l->closing, memory_order_relaxed))
		return -ENOTCONN;
	limit = flags & KD_SEND_SOFT ? l->send_queue_limit / 2
				     : l->send_queue_limit;
	if (!(flags & KD_SEND_FORCE) &&
	    atomic_load_explicit(&l->queued, memory_order_relaxed) > limit) {
		atomic_store(&l->blocked, true);
		/* Lets the data thread re-check in case it drained meanwhile. */
		kd_link_schedule(l, KD_OP_SEND);
		return -EAGAIN;
	}

	prefix[0] = total >> 24;
	prefix[1] = total >> 16;
	prefix[2] = total >> 8;
	prefix[3] = total;

	pthread_mutex_lock(&l->sendq_lock);
	if (l->q_dead || atomic_load(&l->closing)) {
		pthread_mutex_unlock(&l->sendq_lock);
		return -ENOTCONN;
	}
	if (l->q_closed) {
		pthread_mutex_unlock(&l->sendq_lock);
		return -ESHUTDOWN;
	}
	c = queue_reserve(l, total + 4);
	if (!c) {
		pthread_mutex_unlock(&l->sendq_lock);
		return -ENOMEM;
	}
	queue_append(&c, prefix, 4);
	for (i = 0; i < iovcnt; i++)
		queue_append(&c, iov[i].iov_base, iov[i].iov_len);
	atomic_fetch_add_explicit(&l->queued, total + 4, memory_order_relaxed);
	pthread_mutex_unlock(&l->sendq_lock);

	count_sent_packet(l, total);
	kd_link_schedule(l, KD_OP_SEND);
	return 0;
}

bool kd_link_want_writable(struct kd_link *l)
{
	if (atomic_load(&l->closing))
		return false;
	atomic_store(&l->blocked, true);
	kd_link_schedule(l, KD_OP_SEND);
	return true;
}

/* Moves the whole queue behind the data thread's own list. */
struct kd_chunk *kd_sendq_take(struct kd_link *l)
{
	pthread_mutex_lock(&l->sendq_lock);
	if (l->q_head) {
		if (l->tx_tail)
			l->tx_tail->next = l->q_head;
		else
			l->tx_head = l->q_head;
		l->tx_tail = l->q_tail;
		l->q_head = l->q_tail = NULL;
	}
	pthread_mutex_unlock(&l->sendq_lock);
	return l->tx_head;
}

/* Drops @n sent bytes from the head of the data thread's list. */
void kd_sendq_consumed(struct kd_link *l, size_t n)
{
	struct kd_chunk *c, *done = NULL;

	atomic_fetch_sub_explicit(&l->queued, n, memory_order_relaxed);
	while (n > 0 && (c = l->tx_head)) {
		size_t left = c->len - l->tx_off;

		if (n < left) {
			l->tx_off += n;
			break;
		}
		n -= left;
		l->tx_head = c->next;
		if (!l->tx_head)
			l->tx_tail = NULL;
		l->tx_off = 0;
		c->next = done;
		done = c;
	}
	if (!done)
		return;
	pthread_mutex_lock(&l->sendq_lock);
	while ((c = done)) {
		done = c->next;
		chunk_put(l, c);
	}
	pthread_mutex_unlock(&l->sendq_lock);
}

void kd_sendq_check_writable(struct kd_link *l)
{
	if (!atomic_load_explicit(&l->blocked, memory_order_relaxed))
		return;
	if (atomic_load(&l->queued) >= l->send_queue_limit / 2)
		return;
	if (!atomic_exchange(&l->blocked, false) || l->dead)
		return;
	if (l->cb.writable)
		l->cb.writable(l->user, l);
}

/* Counts the records a send of the first @n iovecs may make; true once
 * the transmit key has reached its usage limit. */
static bool ktls_account(struct kd_link *l, unsigned n)
{
	size_t bytes = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		bytes += l->tx_iov[i].iov_len;
	return kd_ktls_tx_account(l->ktls, bytes);
}

/*
 * Sends our KeyUpdate and installs the next transmit key, with no send in
 * flight: the peer asked for it, or the key reached its usage limit.
 */
int kd_sendq_rekey(struct kd_link *l)
{
	char why[160] = "";
	int ret;

	l->tx_rekey_due = false;
	ret = kd_ktls_tx_rekey(l->fd, l->ktls, false, why, sizeof(why));
	if (ret < 0)
		kd_link_fail(l, ret, "TLS transmit rekey failed: %s", why);
	return ret;
}

static void plain_submit(struct kd_link *l)
{
	struct io_uring_sqe *sqe;
	struct kd_chunk *c = l->tx_head;
	unsigned n = 0;
	size_t off = l->tx_off;

	for (; c && n < KD_TX_IOV_MAX; c = c->next, n++) {
		l->tx_iov[n].iov_base = c->data + off;
		l->tx_iov[n].iov_len = c->len - off;
		off = 0;
	}
	memset(&l->tx_msg, 0, sizeof(l->tx_msg));
	l->tx_msg.msg_iov = l->tx_iov;
	l->tx_msg.msg_iovlen = n;
	if (l->path == KD_PATH_KERNEL_TLS && ktls_account(l, n))
		l->tx_rekey_due = true;

	/* No MSG_WAITALL: kernel TLS rejects it, so short sends resubmit. */
	sqe = kd_thread_sqe(l->thread);
	io_uring_prep_sendmsg(sqe, l->fd, &l->tx_msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)l | KD_REQ_SEND);
	l->send_busy = true;
	l->inflight++;
}

static bool addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;
	const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;

	if (!a || !b || a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	if (a->sa_family == AF_INET6)
		return IN6_ARE_ADDR_EQUAL(&a6->sin6_addr, &b6->sin6_addr);
	return false;
}

/*
 * Tells whether @sa is a loopback address: 127.0.0.0/8, ::1 or an
 * IPv4-mapped 127.0.0.0/8. Any other family (AF_UNIX) is local too.
 */
bool kd_addr_is_local(const struct sockaddr *sa)
{
	const struct sockaddr_in6 *in6 = (const void *)sa;
	const struct sockaddr_in *in = (const void *)sa;

	switch (sa->sa_family) {
	case AF_INET:
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	case AF_INET6:
		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
		       in6->sin6_addr.s6_addr[12] == 127;
	default:
		return true;
	}
}

/*
 * Tells whether the peer of @fd runs on this host: a loopback address or
 * an address of one of this host's interfaces. False when that is unknown.
 */
bool kd_peer_is_local(int fd)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	struct ifaddrs *ifs, *ifa;
	bool local = false;

	if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0)
		return false;
	if (kd_addr_is_local((struct sockaddr *)&peer))
		return true;
	if (getifaddrs(&ifs) < 0)
		return false;
	for (ifa = ifs; ifa && !local; ifa = ifa->ifa_next)
		local = addr_equal(ifa->ifa_addr, (struct sockaddr *)&peer);
	freeifaddrs(ifs);
	return local;
}

static void tls_submit(struct kd_link *l)
{
	struct kd_thread *t = l->thread;
	struct kd_ctbuf *ct = l->ct_send;
	struct io_uring_sqe *sqe = kd_thread_sqe(t);
	size_t len = ct->len - ct->off;

	if (len >= KD_ZC_MIN && l->zc_remote && !t->zc_off) {
		io_uring_prep_send_zc(sqe, l->fd, ct->data + ct->off, len,
				      MSG_NOSIGNAL, 0);
		io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)ct |
						     KD_REQ_SEND_ZC);
	} else {
		io_uring_prep_send(sqe, l->fd, ct->data + ct->off, len,
				   MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)l |
						     KD_REQ_SEND);
	}
	l->send_busy = true;
	l->inflight++;
}

/* Picks a ciphertext buffer that no send or notification still reads. */
static struct kd_ctbuf *ctbuf_idle(struct kd_link *l)
{
	unsigned i;

	for (i = 0; i < KD_CT_BUFS; i++) {
		struct kd_ctbuf *ct = &l->ct[i];

		if (ct != l->ct_fill && ct != l->ct_send && ct->notifs == 0)
			return ct;
	}
	return NULL;
}

static void tls_flush(struct kd_link *l)
{
	struct kd_ctbuf *next;

	if (kd_user_tls_encrypt(l) < 0 || l->ct_fill->len == 0)
		return;
	next = ctbuf_idle(l);
	if (!next)
		return; /* a zero-copy notification frees one and flushes */
	l->ct_send = l->ct_fill;
	l->ct_send->off = 0;
	l->ct_fill = next;
	next->len = 0;
	tls_submit(l);
}

/* Sends what is queued unless a send is in flight. Data thread only. */
void kd_sendq_flush(struct kd_link *l)
{
	if (!l->attached || l->dead || l->send_busy) {
		kd_sendq_check_writable(l);
		return;
	}
	if (l->path == KD_PATH_KERNEL_TLS && l->tx_rekey_due &&
	    kd_sendq_rekey(l) < 0)
		return;
	if (l->path == KD_PATH_USER_TLS) {
		tls_flush(l);
	} else if (kd_sendq_take(l)) {
		plain_submit(l);
	}
	kd_sendq_check_writable(l);
	if (l->draining)
		kd_sendq_drain(l);
}

/* Sends close_notify as a TLS alert record through the kernel. */
static void alert_submit(struct kd_link *l)
{
	struct io_uring_sqe *sqe = kd_thread_sqe(l->thread);
	struct cmsghdr *cmsg;

	l->alert_body[0] = 1; /* level: warning */
	l->alert_body[1] = 0; /* description: close_notify */
	l->alert_iov.iov_base = l->alert_body;
	l->alert_iov.iov_len = sizeof(l->alert_body);
	memset(&l->alert_msg, 0, sizeof(l->alert_msg));
	memset(&l->alert_cmsg, 0, sizeof(l->alert_cmsg));
	l->alert_msg.msg_iov = &l->alert_iov;
	l->alert_msg.msg_iovlen = 1;
	l->alert_msg.msg_control = l->alert_cmsg.buf;
	l->alert_msg.msg_controllen = sizeof(l->alert_cmsg.buf);
	cmsg = CMSG_FIRSTHDR(&l->alert_msg);
	cmsg->cmsg_level = KD_SOL_TLS;
	cmsg->cmsg_type = KD_TLS_SET_RECORD_TYPE;
	cmsg->cmsg_len = CMSG_LEN(sizeof(uint8_t));
	*CMSG_DATA(cmsg) = KD_TLS_ALERT;
	io_uring_prep_sendmsg(sqe, l->fd, &l->alert_msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)l | KD_REQ_SEND);
	l->send_busy = true;
	l->notify_busy = true;
	l->inflight++;
}

/*
 * The steps of an orderly close (kd_loop_drain()), each once nothing is
 * queued or in flight: close_notify on the TLS paths, then a FIN. The
 * peer's close of its side then ends the link (kd_rx_eof()). Called after
 * each flush of a draining link.
 */
void kd_sendq_drain(struct kd_link *l)
{
	if (l->dead || l->send_busy || l->fin_sent)
		return;
	if (atomic_load(&l->queued) > 0 || l->tx_head)
		return;
	if (l->path == KD_PATH_USER_TLS && (l->ct_fill->len > 0 || l->ct_send))
		return;
	if (!l->notify_sent) {
		l->notify_sent = true;
		if (l->path == KD_PATH_KERNEL_TLS) {
			alert_submit(l);
			return;
		}
		if (l->path == KD_PATH_USER_TLS &&
		    kd_user_tls_close_notify(l) == 0 && l->ct_fill->len > 0) {
			tls_flush(l);
			return;
		}
	}
	if (shutdown(l->fd, SHUT_WR) < 0)
		kd_debug("link %s: shutdown after the queue was sent: %s",
			 l->peer, strerror(errno));
	l->fin_sent = true;
}

static bool send_failed(struct kd_link *l, int res)
{
	if (res >= 0)
		return false;
	if (l->dead || res == -ECANCELED)
		return true;
	if (res == -EPIPE || res == -ECONNRESET)
		kd_link_fail(l, res, "connection reset by peer");
	else
		kd_link_fail(l, res, "send failed: %s", strerror(-res));
	return true;
}

/* Completion of a SENDMSG (plaintext paths) or a SEND (user TLS). */
void kd_sendq_complete(struct kd_link *l, int res)
{
	l->send_busy = false;
	l->inflight--;
	if (l->notify_busy) {
		l->notify_busy = false;
		if (res < 0 && !l->dead)
			kd_info("link %s: close_notify not sent: %s", l->peer,
				strerror(-res));
		if (!l->dead)
			kd_sendq_drain(l);
		goto out;
	}
	if (send_failed(l, res))
		goto out;

	atomic_store_explicit(&l->last_tx_ns, kd_now_ns(), memory_order_relaxed);
	if (l->path != KD_PATH_USER_TLS) {
		kd_sendq_consumed(l, res);
		if (l->tx_head)
			plain_submit(l); /* a short send: the rest first */
		else
			kd_sendq_flush(l);
		goto out;
	}
	l->ct_send->off += res;
	if (l->ct_send->off < l->ct_send->len) {
		tls_submit(l);
		goto out;
	}
	l->ct_send = NULL;
	kd_sendq_flush(l);
out:
	kd_link_maybe_finish(l);
}

static void zc_fallback(struct kd_link *l, int res)
{
	kd_warn("loop: data thread %u: zero-copy send failed (%s); using plain sends",
		l->thread->index, strerror(-res));
	l->thread->zc_off = true;
	tls_submit(l);
}

/*
 * IORING_OP_SEND_ZC posts the send result first, flagged F_MORE when a
 * notification follows; the buffer must stay untouched until that
 * notification (F_NOTIF) arrives.
 */
void kd_sendq_complete_zc(struct kd_ctbuf *ct, struct io_uring_cqe *cqe)
{
	struct kd_link *l = ct->link;

	if (cqe->flags & IORING_CQE_F_NOTIF) {
		ct->notifs--;
		l->notifs--;
		if (l->finished)
			kd_link_settle_notif(l);
		else if (!l->dead)
			kd_sendq_flush(l);
		return;
	}
	if (cqe->flags & IORING_CQE_F_MORE) {
		ct->notifs++;
		l->notifs++;
	}
	if ((cqe->res == -EOPNOTSUPP || cqe->res == -EINVAL) && !l->dead) {
		l->inflight--;
		zc_fallback(l, cqe->res);
		return;
	}
	kd_sendq_complete(l, cqe->res);
}

/* Frees the queue; later sends get -ENOTCONN. Safe to call twice. */
void kd_sendq_free(struct kd_link *l)
{
	struct kd_chunk *c;

	pthread_mutex_lock(&l->sendq_lock);
	l->q_dead = true;
	while ((c = l->q_head)) {
		l->q_head = c->next;
		free(c);
	}
	l->q_tail = NULL;
	while ((c = l->spares)) {
		l->spares = c->next;
		free(c);
	}
	l->nspares = 0;
	pthread_mutex_unlock(&l->sendq_lock);

	while ((c = l->tx_head)) {
		l->tx_head = c->next;
		free(c);
	}
	l->tx_tail = NULL;
	atomic_store(&l->queued, 0);
}
