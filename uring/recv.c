// SPDX-License-Identifier: Apache-2.0
/*
 * Receive side: the provided buffer ring, multishot receives, and the
 * parser that cuts the byte stream into 4-byte length-prefixed packets.
 * A packet that lies inside one buffer goes to the callback in place; one
 * that spans buffers is assembled in the link's own buffer.
 */
#include "loop_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ktls.h"
#include "log.h"

int kd_bufs_init(struct kd_thread *t)
{
	struct io_uring_buf_reg reg = { 0 };
	size_t ring_size = KD_BUF_COUNT * sizeof(struct io_uring_buf);
	size_t bufs_size = (size_t)KD_BUF_COUNT * KD_BUF_SIZE;
	void *ring_mem;
	unsigned i;
	int ret;

	/* liburing 2.3 has no io_uring_setup_buf_ring(): the ring is
	 * page-aligned memory registered by address. Both come from mmap(),
	 * which valgrind treats as defined: it cannot see the kernel fill
	 * the buffers. */
	ring_mem = mmap(NULL, ring_size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ring_mem == MAP_FAILED)
		return -errno;
	t->br = ring_mem;
	t->bufs = mmap(NULL, bufs_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t->bufs == MAP_FAILED) {
		ret = -errno;
		t->bufs = NULL;
		goto err_free_ring;
	}

	io_uring_buf_ring_init(t->br);
	reg.ring_addr = (uintptr_t)t->br;
	reg.ring_entries = KD_BUF_COUNT;
	reg.bgid = KD_BUF_GROUP;
	ret = io_uring_register_buf_ring(&t->ring, &reg, 0);
	if (ret < 0) {
		kd_err("loop: data thread %u: io_uring_register_buf_ring failed: %s",
		       t->index, strerror(-ret));
		goto err_free_bufs;
	}
	for (i = 0; i < KD_BUF_COUNT; i++)
		io_uring_buf_ring_add(t->br, t->bufs + (size_t)i * KD_BUF_SIZE,
				      KD_BUF_SIZE, i,
				      io_uring_buf_ring_mask(KD_BUF_COUNT), i);
	io_uring_buf_ring_advance(t->br, KD_BUF_COUNT);
	return 0;

err_free_bufs:
	kd_bufs_free(t);
	return ret;
err_free_ring:
	munmap(t->br, ring_size);
	t->br = NULL;
	return ret;
}

/* Called after io_uring_queue_exit(), which also drops the registration. */
void kd_bufs_free(struct kd_thread *t)
{
	if (t->bufs)
		munmap(t->bufs, (size_t)KD_BUF_COUNT * KD_BUF_SIZE);
	if (t->br)
		munmap(t->br, KD_BUF_COUNT * sizeof(struct io_uring_buf));
	t->bufs = NULL;
	t->br = NULL;
}

static void buf_recycle(struct kd_thread *t, unsigned bid)
{
	io_uring_buf_ring_add(t->br, t->bufs + (size_t)bid * KD_BUF_SIZE,
			      KD_BUF_SIZE, bid,
			      io_uring_buf_ring_mask(KD_BUF_COUNT), 0);
	io_uring_buf_ring_advance(t->br, 1);
}

/*
 * Arms one multishot receive. Plaintext paths use RECVMSG so that kernel
 * TLS can report a record that is not application data in a control
 * message (plain RECV fails with EIO on such a record). The user-space TLS
 * path reads ciphertext from a plain TCP socket, so RECV suffices.
 */
void kd_recv_arm(struct kd_link *l)
{
	struct io_uring_sqe *sqe = kd_thread_sqe(l->thread);

	if (l->path == KD_PATH_USER_TLS)
		io_uring_prep_recv_multishot(sqe, l->fd, NULL, 0, 0);
	else
		io_uring_prep_recvmsg_multishot(sqe, l->fd, &l->rx_msg, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = KD_BUF_GROUP;
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)l | KD_REQ_RECV);
	l->recv_armed = true;
	l->inflight++;
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline void stat_add(atomic_uint_least64_t *v, uint64_t n)
{
	/* Single writer: the data thread. */
	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static void deliver(struct kd_link *l, const uint8_t *data, uint32_t len)
{
	stat_add(&l->bytes_in, len);
	stat_add(&l->msgs_in, 1);
	l->cb.packet(l->user, l, data, len);
}

static int begin_assembly(struct kd_link *l, uint32_t len)
{
	size_t cap;
	uint8_t *buf;

	if (l->rx.cap < len) {
		cap = ((size_t)len + 0xffff) & ~(size_t)0xffff;
		buf = realloc(l->rx.buf, cap);
		if (!buf) {
			kd_link_fail(l, -ENOMEM,
				     "out of memory assembling a %u-byte packet",
				     len);
			return -ENOMEM;
		}
		l->rx.buf = buf;
		l->rx.cap = cap;
	}
	l->rx.want = len;
	l->rx.have = 0;
	return 0;
}

static void take_body(struct kd_link *l, const uint8_t **p, size_t *n)
{
	size_t take = l->rx.want - l->rx.have;

	if (take > *n)
		take = *n;
	memcpy(l->rx.buf + l->rx.have, *p, take);
	l->rx.have += take;
	*p += take;
	*n -= take;
	if (l->rx.have == l->rx.want) {
		l->rx.want = 0;
		deliver(l, l->rx.buf, l->rx.have);
	}
}

/*
 * Returns how many bytes the packet being assembled still lacks and sets
 * *@dst to where they go, or returns 0 when no packet is being assembled.
 * A producer that can write there directly (SSL_read) saves a copy.
 */
size_t kd_rx_assembly_space(struct kd_link *l, uint8_t **dst)
{
	if (l->rx.want == 0)
		return 0;
	*dst = l->rx.buf + l->rx.have;
	return l->rx.want - l->rx.have;
}

/*
 * Accounts @n bytes written at kd_rx_assembly_space() and delivers the
 * packet once whole. Returns 0, or -ECANCELED once the link is closing.
 */
int kd_rx_assembly_commit(struct kd_link *l, size_t n)
{
	l->rx.have += n;
	if (l->rx.have == l->rx.want) {
		l->rx.want = 0;
		deliver(l, l->rx.buf, l->rx.have);
	}
	if (atomic_load_explicit(&l->closing, memory_order_relaxed))
		return -ECANCELED;
	return 0;
}

/* Reads a length prefix split across reads; returns false until whole. */
static bool take_prefix(struct kd_link *l, const uint8_t **p, size_t *n,
			uint32_t *len)
{
	size_t take = 4 - l->rx.hdr_len;

	if (take > *n)
		take = *n;
	memcpy(l->rx.hdr + l->rx.hdr_len, *p, take);
	l->rx.hdr_len += take;
	*p += take;
	*n -= take;
	if (l->rx.hdr_len < 4)
		return false;
	l->rx.hdr_len = 0;
	*len = get_be32(l->rx.hdr);
	return true;
}

/*
 * Cuts @n stream bytes into packets and delivers them. Returns 0, or a
 * negative errno once the link is closing (the close may come from a
 * callback or from a length above max_packet).
 */
int kd_rx_parse(struct kd_link *l, const uint8_t *p, size_t n)
{
	uint32_t len;

	while (n > 0) {
		if (atomic_load_explicit(&l->closing, memory_order_relaxed))
			return -ECANCELED;
		if (l->rx.want > 0) {
			take_body(l, &p, &n);
			continue;
		}
		if (l->rx.hdr_len == 0 && n >= 4) {
			len = get_be32(p);
			p += 4;
			n -= 4;
		} else if (!take_prefix(l, &p, &n, &len)) {
			return 0;
		}

		if (len == 0) {
			stat_add(&l->ticks_in, 1);
		} else if (len > l->max_packet) {
			kd_link_fail(l, -EMSGSIZE,
				     "packet length %u exceeds the limit %u (max_packet)",
				     len, l->max_packet);
			return -EMSGSIZE;
		} else if (n >= len) {
			deliver(l, p, len);
			p += len;
			n -= len;
		} else if (begin_assembly(l, len) < 0) {
			return -ENOMEM;
		}
	}
	return 0;
}

/* The peer ended the stream; @orderly is the reason when no packet is cut. */
void kd_rx_eof(struct kd_link *l, const char *orderly)
{
	if (l->rx.want > 0)
		kd_link_fail(l, -EPROTO,
			     "truncated packet: peer closed %u bytes into a %u-byte packet",
			     l->rx.have, l->rx.want);
	else if (l->rx.hdr_len > 0)
		kd_link_fail(l, -EPROTO,
			     "truncated packet: peer closed %u bytes into a 4-byte length prefix",
			     l->rx.hdr_len);
	else if (l->fin_sent)
		kd_link_fail(l, l->thread->drain_err, "%s",
			     l->thread->drain_reason);
	else
		kd_link_fail(l, 0, "%s", orderly);
}

static void recv_error(struct kd_link *l, int res)
{
	char why[160] = "";
	int ret;

	switch (res) {
	case -ENOBUFS: /* every buffer was in use: re-armed below */
	case -ECANCELED:
		return;
	case -EKEYEXPIRED:
		if (l->path != KD_PATH_KERNEL_TLS)
			break;
		/*
		 * A multishot receive may fail with EKEYEXPIRED right after
		 * the completion that carried the KeyUpdate, before that one
		 * was handled here; the next key is in by now and the
		 * re-armed receive goes on. A second one in a row is real.
		 */
		if (!kd_ktls_rx_key_pending(l->ktls) &&
		    l->rx_stale_expired++ == 0)
			return;
		ret = kd_ktls_rx_rekey(l->fd, l->ktls, why, sizeof(why));
		if (ret < 0)
			kd_link_fail(l, ret, "TLS receive rekey failed: %s", why);
		return;
	case -ECONNRESET:
		kd_link_fail(l, res, "connection reset by peer");
		return;
	case -EPIPE:
		kd_link_fail(l, res, "connection broken (EPIPE)");
		return;
	case -EBADMSG:
		if (l->path != KD_PATH_KERNEL_TLS)
			break;
		kd_link_fail(l, res, "TLS record failed authentication (bad_record_mac): kernel TLS returned EBADMSG");
		return;
	}
	kd_link_fail(l, res, "receive failed: %s", strerror(-res));
}

/*
 * Passes a kernel TLS record that is not application data to ktls. A
 * KeyUpdate that asks for ours is answered by the send side once no send
 * is in flight (tests/ktls/e2e.sh runs this on Linux 6.1 and 7.x).
 */
static void ktls_control_record(struct kd_link *l, uint8_t type,
				const uint8_t *data, size_t len)
{
	char why[160] = "";
	bool reply = false;
	int ret;

	ret = kd_ktls_handle_record_defer(l->fd, l->ktls, type, data, len,
					  &reply, why, sizeof(why));
	if (ret == 1) {
		kd_rx_eof(l, "TLS close_notify from peer");
		return;
	}
	if (ret < 0) {
		kd_link_fail(l, ret, "%s", why[0] ? why : "TLS control record rejected");
		return;
	}
	l->rx_stale_expired = 0;
	if (reply) {
		l->tx_rekey_due = true;
		kd_sendq_flush(l);
	}
}

static void recvmsg_buffer(struct kd_link *l, uint8_t *buf, int res)
{
	struct io_uring_recvmsg_out *out;
	struct cmsghdr *cmsg;
	uint8_t *payload;
	unsigned len;

	out = io_uring_recvmsg_validate(buf, res, &l->rx_msg);
	if (!out) {
		kd_link_fail(l, -EIO, "receive returned a malformed %d-byte message",
			     res);
		return;
	}
	payload = io_uring_recvmsg_payload(out, &l->rx_msg);
	len = io_uring_recvmsg_payload_length(out, res, &l->rx_msg);
	if (len == 0) {
		kd_rx_eof(l, l->path == KD_PATH_KERNEL_TLS ?
				     "connection closed by peer without TLS close_notify" :
				     "connection closed by peer");
		return;
	}
	atomic_store_explicit(&l->last_rx_ns, kd_now_ns(), memory_order_relaxed);

	cmsg = io_uring_recvmsg_cmsg_firsthdr(out, &l->rx_msg);
	if (cmsg && cmsg->cmsg_level == KD_SOL_TLS &&
	    cmsg->cmsg_type == KD_TLS_GET_RECORD_TYPE &&
	    *CMSG_DATA(cmsg) != KD_TLS_APPLICATION_DATA) {
		ktls_control_record(l, *CMSG_DATA(cmsg), payload, len);
		return;
	}
	kd_rx_parse(l, payload, len);
}

static void recv_buffer(struct kd_link *l, uint8_t *buf, int res)
{
	if (l->path != KD_PATH_USER_TLS) {
		recvmsg_buffer(l, buf, res);
		return;
	}
	atomic_store_explicit(&l->last_rx_ns, kd_now_ns(), memory_order_relaxed);
	kd_user_tls_receive(l, buf, res);
}

void kd_recv_complete(struct kd_link *l, struct io_uring_cqe *cqe)
{
	struct kd_thread *t = l->thread;
	unsigned bid;

	if (cqe->flags & IORING_CQE_F_BUFFER) {
		bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		if (cqe->res > 0 && !l->dead)
			recv_buffer(l, t->bufs + (size_t)bid * KD_BUF_SIZE,
				    cqe->res);
		buf_recycle(t, bid);
	}
	if (cqe->res == 0 && !l->dead)
		kd_rx_eof(l, l->path == KD_PATH_PLAIN ?
				     "connection closed by peer" :
				     "connection closed by peer without TLS close_notify");
	else if (cqe->res < 0 && !l->dead)
		recv_error(l, cqe->res);

	if (cqe->flags & IORING_CQE_F_MORE)
		return;
	l->recv_armed = false;
	l->inflight--;
	if (!l->dead)
		kd_recv_arm(l);
	kd_link_maybe_finish(l);
}
