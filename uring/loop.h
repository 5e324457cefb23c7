/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data loop: threads that each run one io_uring and own the
 * established connections ("links") attached to them. A link moves 4-byte
 * length-prefixed distribution packets over one of three record paths:
 *
 *   plain       inet_tcp: the socket carries packets as they are.
 *   kernel      kernel TLS: the socket reads and writes plaintext; records
 *               that are not application data arrive as control messages.
 *   user-space  OpenSSL encrypts and decrypts what io_uring moves.
 *
 * Threads: kd_link_send(), kd_link_close() and kd_link_get_stats() are
 * safe from any thread. Callbacks run on the link's data thread.
 */
#ifndef KD_LOOP_H
#define KD_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <openssl/ssl.h>

enum kd_record_path {
	KD_PATH_PLAIN,
	KD_PATH_KERNEL_TLS,
	KD_PATH_USER_TLS,
};

struct kd_loop;
struct kd_link;
struct kd_ktls_state;

struct kd_link_callbacks {
	/* One whole packet, prefix removed, valid during the call. Ticks
	 * (length 0) are counted and not passed here. */
	void (*packet)(void *user, struct kd_link *link, const uint8_t *data,
		       size_t len);
	/* The link has ended: @err is 0 for an orderly close by the peer,
	 * else a negative errno, with @reason a sentence for the log. Called
	 * exactly once; no callback follows it. */
	void (*closed)(void *user, struct kd_link *link, int err,
		       const char *reason);
	/* The send queue dropped below its limit after a -EAGAIN. */
	void (*writable)(void *user, struct kd_link *link);
};

struct kd_link_params {
	int fd; /* ownership passes to the loop */
	enum kd_record_path path;
	/* USER_TLS: the connection, ownership passes to the loop. KERNEL_TLS:
	 * kept for alerts and key updates. NULL for PLAIN. */
	SSL *ssl;
	struct kd_ktls_state *ktls; /* KERNEL_TLS only; the loop frees it */
	/* Plaintext stream bytes already read during the handshakes, parsed
	 * before anything new. Copied. */
	const uint8_t *pending;
	size_t pending_len;
	uint32_t max_packet;	 /* 0: 64 MiB */
	size_t send_queue_limit; /* queued bytes before -EAGAIN; 0: 8 MiB */
	const char *peer; /* for log lines */
	struct kd_link_callbacks cb;
	void *user;
};

struct kd_link_stats {
	uint64_t bytes_in, bytes_out; /* packet payload bytes */
	uint64_t msgs_in, msgs_out;   /* packets that are not ticks */
	uint64_t ticks_in, ticks_out;
	uint64_t last_rx_ns, last_tx_ns; /* CLOCK_MONOTONIC */
	uint64_t queued_bytes;
	uint64_t syscalls; /* io_uring_enter calls of the owning thread */
};

int kd_loop_create(unsigned nthreads, struct kd_loop **out);
/* True when the calling thread is a data thread of any loop. */
bool kd_loop_on_data_thread(void);
/* Closes every link (each gets its closed callback) and joins threads. */
void kd_loop_destroy(struct kd_loop *loop);

/*
 * Starts an orderly close of every link, and of each link attached later.
 * New sends get -ESHUTDOWN. Each link sends its queue, then a TLS
 * close_notify (TLS paths) and a FIN, and closes with @err and @reason
 * once the peer closes its side.
 */
void kd_loop_drain(struct kd_loop *loop, int err, const char *reason);
/* Counts the links not yet closed; kd_loop_destroy() closes them at once. */
unsigned kd_loop_links(struct kd_loop *loop);

/* Hands an established connection to the least loaded thread. On success
 * the link holds one reference for the caller; on failure the caller keeps
 * the fd, the SSL and the ktls state. USER_TLS needs a finished handshake
 * with nothing buffered inside OpenSSL (no read-ahead). */
int kd_loop_attach(struct kd_loop *loop, const struct kd_link_params *p,
		   struct kd_link **out);

/* Flags for kd_link_send(). */
#define KD_SEND_FORCE 0x1 /* ignore the queue limit (ticks, exit signals) */
/* Stop at half the limit: for fragments of large messages, so the other
 * half stays free for small messages from other senders. */
#define KD_SEND_SOFT 0x2

/*
 * Queues one packet whose payload is the concatenation of @iov (the
 * length prefix is added here; zero total length sends a tick). The bytes
 * are copied before return. Returns 0, -EAGAIN when the queue is over its
 * limit (the writable callback follows once it drains), -EMSGSIZE above
 * 4 GiB - 1, -ENOTCONN once the link is closing, or -ESHUTDOWN once
 * kd_loop_drain() has reached it.
 */
int kd_link_send(struct kd_link *link, const struct iovec *iov,
		 unsigned iovcnt, unsigned flags);
/*
 * Asks for the writable callback once the queue is below half its limit,
 * for a sender that a layer above turned away. Returns false when the
 * link is closing, so no writable callback will come.
 */
bool kd_link_want_writable(struct kd_link *link);
/* Starts closing; the closed callback follows with @err and @reason. */
void kd_link_close(struct kd_link *link, int err, const char *reason);
void kd_link_get_stats(struct kd_link *link, struct kd_link_stats *st);
void kd_link_hold(struct kd_link *link);
void kd_link_release(struct kd_link *link);

#endif
