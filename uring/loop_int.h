/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private layout of the data loop, shared by uring/loop.c (threads, rings,
 * commands, close), uring/recv.c (receive and packet parsing),
 * uring/sendq.c (send queue and sends) and uring/record_user.c (the
 * OpenSSL record path).
 */
#ifndef KD_LOOP_INT_H
#define KD_LOOP_INT_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <liburing.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "loop.h"

#define KD_RING_SQ_ENTRIES 256
#define KD_RING_CQ_ENTRIES 4096
#define KD_BUF_GROUP 0
#define KD_BUF_COUNT 64		  /* provided receive buffers per thread */
#define KD_BUF_SIZE (64 * 1024)	  /* bytes per provided buffer */
#define KD_CHUNK_SIZE (256 * 1024) /* send queue chunk */
#define KD_CHUNK_SPARES 8	  /* empty chunks a link keeps for reuse */
#define KD_TX_IOV_MAX 64	  /* chunks per sendmsg */
#define KD_TLS_PLAIN_SIZE (64 * 1024)	/* SSL_read destination */
#define KD_TLS_BATCH (1024 * 1024)	/* plaintext encrypted per send */
/* Smallest ciphertext sent zero-copy, and only to a peer on another host:
 * loopback copies the pinned pages anyway, so SEND_ZC only adds the
 * pinning and the notification. */
#define KD_ZC_MIN (64 * 1024)
#define KD_CT_BUFS 4		  /* ciphertext buffers per link */
#define KD_REASON_MAX 192
/*
 * How long a data thread spins for the next completion after the last one
 * before it sleeps in io_uring_enter(), in nanoseconds; 0 turns spinning
 * off. Off by default: on a 2-vCPU VM, 30 us of spinning raised the p99
 * of a 64-byte round trip from 76 us to 2.7 ms and cut throughput, because
 * the spinning thread takes the CPU from the thread it waits for.
 */
#define KD_BUSY_POLL_NS 0

#define KD_DEFAULT_MAX_PACKET (64u << 20)
#define KD_DEFAULT_QUEUE_LIMIT ((size_t)8 << 20)

/* TLS record types (RFC 8446, section 5.1) and the kernel's cmsg. */
#define KD_SOL_TLS 282
#define KD_TLS_SET_RECORD_TYPE 1
#define KD_TLS_GET_RECORD_TYPE 2
#define KD_TLS_ALERT 21
#define KD_TLS_APPLICATION_DATA 23

/* Kind of request, kept in the low bits of a user_data pointer. */
enum kd_req {
	KD_REQ_WAKE = 1, /* eventfd read; no pointer */
	KD_REQ_RECV,	 /* struct kd_link */
	KD_REQ_SEND,	 /* struct kd_link */
	KD_REQ_SEND_ZC,	 /* struct kd_ctbuf: the send and its notifications */
	KD_REQ_CANCEL,	 /* struct kd_link */
};
#define KD_REQ_MASK 7ULL

/* Work another thread hands to a link's data thread (link->ops bits). */
#define KD_OP_ATTACH (1U << 0) /* start receiving */
#define KD_OP_SEND (1U << 1)   /* the send queue has data, or a sender waits */
#define KD_OP_CLOSE (1U << 2)  /* kd_link_close() was called */

/* One piece of the send queue: whole packets, prefixes included. */
struct kd_chunk {
	struct kd_chunk *next;
	size_t len;
	uint8_t data[KD_CHUNK_SIZE];
};

/* Ciphertext on the user-space TLS path, owned by the data thread. */
struct kd_ctbuf {
	struct kd_link *link;
	uint8_t *data;
	size_t len, off, cap;
	unsigned notifs; /* zero-copy notifications still to come */
};

struct kd_thread {
	struct kd_loop *loop;
	unsigned index;
	pthread_t tid;
	sem_t started;
	int setup_err;
	atomic_uint nlinks;
	atomic_uint_least64_t syscalls;

	/* Command queue: any thread, under cmd_lock. */
	pthread_mutex_t cmd_lock;
	struct kd_link *cmd_head, *cmd_tail;
	bool stop_requested;
	bool drain_requested;
	int drain_err;
	char drain_reason[KD_REASON_MAX];
	int wake_fd;

	/* Data thread only. */
	struct io_uring ring;
	uint64_t wake_val;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	struct kd_link *links;	 /* attached and not yet finished */
	struct kd_link *zombies; /* finished, zero-copy notifications pending */
	struct kd_link *ready;	 /* scheduled by this thread itself */
	bool stopping;
	bool draining; /* kd_loop_drain() reached this thread */
	bool zc_off;
	bool taskrun_flag;	 /* the kernel flags pending task work */
	bool poll_wait;		 /* sleep in poll(), not io_uring_enter() */
	uint64_t last_active_ns; /* the last reap that found completions */
};

struct kd_loop {
	unsigned nthreads;
	struct kd_thread *threads;
	atomic_bool destroyed;
};

/* Receive-side packet assembly, data thread only. */
struct kd_rx {
	uint8_t hdr[4];
	unsigned hdr_len;  /* prefix bytes held in hdr */
	uint32_t want;	   /* length of the packet being assembled, 0: none */
	uint32_t have;	   /* bytes of it in buf */
	uint8_t *buf;
	size_t cap;
};

struct kd_link {
	/* Set by kd_loop_attach(), read-only afterwards. */
	struct kd_thread *thread;
	int fd;
	enum kd_record_path path;
	SSL *ssl;
	struct kd_ktls_state *ktls;
	uint32_t max_packet;
	size_t send_queue_limit;
	char peer[96];
	struct kd_link_callbacks cb;
	void *user;

	atomic_uint refs;
	atomic_uint ops;	     /* KD_OP_* waiting for the data thread */
	struct kd_link *cmd_next;    /* in thread->cmd_head or ->ready */
	atomic_bool closing;	     /* no more sends or packet callbacks */

	/* Send queue and the close request: any thread, under sendq_lock. */
	pthread_mutex_t sendq_lock;
	struct kd_chunk *q_head, *q_tail;
	struct kd_chunk *spares;
	unsigned nspares;
	bool q_dead;
	bool q_closed; /* draining: kd_link_send() returns -ESHUTDOWN */
	int req_err;
	char req_reason[KD_REASON_MAX];
	atomic_size_t queued;
	atomic_bool blocked; /* a sender saw -EAGAIN */

	/* Statistics: rx written by the data thread, tx by senders. */
	atomic_uint_least64_t bytes_in, msgs_in, ticks_in, last_rx_ns;
	atomic_uint_least64_t bytes_out, msgs_out, ticks_out, last_tx_ns;

	/* Data thread only from here on. */
	struct kd_link *prev, *next; /* thread->links or ->zombies */
	bool attached;
	bool dead;	/* closing started on the data thread */
	bool finished;	/* closed callback done */
	bool recv_armed;
	bool send_busy;
	bool zc_remote;	/* user TLS to another host: large sends use SEND_ZC */
	/* Orderly close: queue sent, then close_notify, then FIN. */
	bool draining;
	bool notify_busy; /* the kernel-TLS close_notify is in flight */
	bool notify_sent;
	bool fin_sent;
	unsigned inflight;	/* requests whose last CQE is still to come */
	unsigned notifs;	/* zero-copy notifications still to come */
	int err;
	char reason[KD_REASON_MAX];

	struct msghdr rx_msg;
	struct kd_rx rx;
	uint8_t *pending;
	size_t pending_len;

	struct kd_chunk *tx_head, *tx_tail;
	size_t tx_off;
	struct iovec tx_iov[KD_TX_IOV_MAX];
	struct msghdr tx_msg;

	/* KD_PATH_USER_TLS. */
	BIO *rbio, *wbio; /* one link BIO, held by ssl */
	const uint8_t *rx_ct; /* received ciphertext lent to the link BIO */
	size_t rx_ct_len;
	uint8_t *plain;
	struct kd_ctbuf ct[KD_CT_BUFS];
	struct kd_ctbuf *ct_fill; /* receives the write BIO's output */
	struct kd_ctbuf *ct_send; /* in flight, or NULL */
	int alert_sent, alert_received; /* -1: none */
	void (*prev_info_cb)(const SSL *ssl, int where, int ret);

	/* KD_PATH_KERNEL_TLS. */
	bool tx_rekey_due;	    /* our KeyUpdate goes before the next send */
	struct msghdr alert_msg;    /* close_notify as a TLS alert record */
	struct iovec alert_iov;
	uint8_t alert_body[2];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(uint8_t))];
	} alert_cmsg;
	unsigned rx_stale_expired; /* EKEYEXPIRED after the key changed */
};

/* loop.c */
struct io_uring_sqe *kd_thread_sqe(struct kd_thread *t);
void kd_link_schedule(struct kd_link *l, unsigned op);
void kd_link_fail(struct kd_link *l, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void kd_link_maybe_finish(struct kd_link *l);
void kd_link_settle_notif(struct kd_link *l);
uint64_t kd_now_ns(void);

/* recv.c */
int kd_bufs_init(struct kd_thread *t);
void kd_bufs_free(struct kd_thread *t);
void kd_recv_arm(struct kd_link *l);
void kd_recv_complete(struct kd_link *l, struct io_uring_cqe *cqe);
int kd_rx_parse(struct kd_link *l, const uint8_t *p, size_t n);
size_t kd_rx_assembly_space(struct kd_link *l, uint8_t **dst);
int kd_rx_assembly_commit(struct kd_link *l, size_t n);
void kd_rx_eof(struct kd_link *l, const char *orderly);

/* sendq.c */
void kd_sendq_flush(struct kd_link *l);
void kd_sendq_complete(struct kd_link *l, int res);
void kd_sendq_complete_zc(struct kd_ctbuf *ct, struct io_uring_cqe *cqe);
struct kd_chunk *kd_sendq_take(struct kd_link *l);
void kd_sendq_consumed(struct kd_link *l, size_t n);
void kd_sendq_check_writable(struct kd_link *l);
void kd_sendq_free(struct kd_link *l);
int kd_sendq_rekey(struct kd_link *l);
void kd_sendq_drain(struct kd_link *l);
bool kd_addr_is_local(const struct sockaddr *sa);
bool kd_peer_is_local(int fd);

/* record_user.c */
int kd_user_tls_init(struct kd_link *l);
void kd_user_tls_free(struct kd_link *l);
void kd_user_tls_receive(struct kd_link *l, const uint8_t *p, size_t n);
int kd_user_tls_encrypt(struct kd_link *l);
int kd_user_tls_close_notify(struct kd_link *l);

#endif
