/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Node internals shared by node.c (API, mailboxes, peer table), conn.c
 * (the control thread: listen, EPMD, handshakes, ticks) and dist.c (the
 * connected phase: control messages on the data threads).
 *
 * Locking, outermost first: node->lock (peer table, sessions, mailbox
 * table), then a mailbox's own lock (its links and monitors). Neither is
 * held while a user callback runs or while a link's send queue is taken.
 */
#ifndef KD_NODE_INT_H
#define KD_NODE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <ei.h>
#include <openssl/ssl.h>

#include "control.h"
#include "frame.h"
#include "handshake.h"
#include "kdist.h"
#include "ktls.h"
#include "loop.h"
#include "tls_config.h"

#define KD_PEER_BUCKETS 256
/* Room for a failed connection's reason: OpenSSL's error text, the
 * rejected certificate's names and dates, and the handshake step it hit,
 * for the log and kdist_connect(). */
#define KD_REASON_MAX 640

struct kd_bulk;

/* A link or monitor that a remote process holds on a local mailbox. */
struct kd_relation {
	erlang_pid remote;
	bool monitor;	/* else a link */
	bool by_name;	/* monitor set on the registered name */
	erlang_ref ref; /* monitors only */
	uint64_t session_id; /* the connection it came over; its end breaks it */
};

/*
 * Owned by the node; reachable from any thread through node->lock. The
 * last reference, which kdist_mailbox_close() or a lookup drops, frees it.
 */
struct kdist_mailbox {
	struct kdist_node *node;
	struct kdist_pid pid;
	erlang_pid epid;
	char name[MAXATOMLEN_UTF8]; /* empty when unregistered */
	kdist_receive_fn fn;
	void *user;
	/* One for the owner until kdist_mailbox_close(), one per lookup. */
	atomic_int refs;
	atomic_bool closed;	/* set under node->lock and lock */
	pthread_mutex_t lock;	/* protects rels; pairs with idle */
	pthread_cond_t idle;	/* running dropped to 0 after closed */
	atomic_uint running;	/* receive callbacks in progress */
	struct kd_relation *rels;
	size_t n_rels, cap_rels;
	struct kdist_mailbox *next; /* node->mailboxes */
};

/* A message waiting for its node's connection to come up. */
struct kd_pending_msg {
	struct kd_pending_msg *next;
	const void *sender; /* the sending mailbox, for ordering */
	size_t ctrl_len; /* "p 131 Ctrl", as the encoders write it */
	size_t msg_len;	 /* "131 Msg", or 0 */
	uint8_t data[];	 /* control, then message */
};

/*
 * One established connection. Created by the control thread, used by the
 * data thread that owns its link (packet callback) and by senders on any
 * thread; freed by the control thread after the link's closed callback.
 */
struct kd_session {
	/* One for the peer table (dropped when the link has closed), one
	 * per API call that uses the session outside node->lock. */
	atomic_uint refs;
	uint64_t id; /* unique for the node's life */
	struct kdist_node *node;
	struct kd_peer *peer;
	struct kd_link *link;
	char peer_name[KDIST_MAX_NODE_NAME + 1];
	uint64_t flags; /* negotiated */
	uint32_t peer_creation;
	bool initiator;
	char tls_version[16];
	char tls_cipher[64];
	char record_path[16];
	char path_reason[160];
	struct kd_frag_table *frags; /* data thread only */
	/* Large messages being fed to the link in fragments (send.c). */
	pthread_mutex_t bulk_lock;
	struct kd_bulk *bulk_head, *bulk_tail;
	/* Whether bulk_head is set, for a check without bulk_lock. */
	atomic_bool bulk_queued;
	size_t bulk_bytes;
	uint64_t frag_seq;
	/* kdist_send_*() returned -EAGAIN and the writable callback is owed. */
	atomic_bool user_blocked;
	atomic_uint_fast64_t unknown_ctrl;
	atomic_bool unknown_logged;
	int close_err;
	char close_reason[160];
	/* Taken in the closed callback, while the link's thread still
	 * exists, for the summary line. */
	struct kd_link_stats final_stats;
};

enum kd_peer_state {
	KD_PEER_IDLE,
	KD_PEER_CONNECTING,
	KD_PEER_UP,
};

/* One entry per remote node ever named; kept until the node is freed. */
struct kd_peer {
	char name[KDIST_MAX_NODE_NAME + 1];
	enum kd_peer_state state;
	struct kd_session *session; /* when UP */
	/*
	 * What keeps a CONNECTING peer alive: a resolver thread looking it up,
	 * our own attempt, the peer's attempt that we accepted, or a wait for
	 * the peer's attempt after it replied to our own with nok. When none is
	 * left the attempt has failed.
	 */
	bool resolving;
	struct kd_hsconn *outgoing;
	struct kd_hsconn *incoming;
	uint64_t nok_wait_ns; /* deadline, 0 when not waiting */
	struct kd_pending_msg *q_head, *q_tail;
	size_t q_bytes;
	bool q_blocked; /* a sender got -EAGAIN; the writable callback is owed */
	int last_error; /* of the last failed attempt, for kdist_connect */
	char last_reason[KD_REASON_MAX];
	/* A kdist_connect() from a callback returned -EINPROGRESS for this
	 * attempt, so a failure is reported as a nodedown. */
	bool report_failure;
	struct kd_peer *next; /* hash chain */
};

enum kd_hs_phase {
	KD_HC_TCP_CONNECT,
	KD_HC_TLS,
	KD_HC_DIST,
};

/* A connection in its TLS or distribution handshake: control thread only. */
struct kd_hsconn {
	struct kdist_node *node;
	int fd;
	bool initiator;
	enum kd_hs_phase phase;
	char addr[80];	/* peer address for log lines */
	char peer[KDIST_MAX_NODE_NAME + 1]; /* known for the initiator */
	SSL *ssl;
	enum kd_record_path path;
	struct kd_ktls_state *ktls;
	char path_reason[160];
	/* Type of the last TLS handshake message received and sent, -1
	 * before the first, so that a failure names the step it hit. */
	int tls_last_in, tls_last_out;
	struct kd_framer framer;
	struct kd_hs hs;
	bool hs_started;
	uint8_t out[4096];
	size_t out_len, out_off;
	uint64_t deadline_ns;
	bool failed;
	bool lost_race; /* ended by a simultaneous connect, not an error */
	struct kd_hsconn *next;
};

enum kd_cmd_type {
	KD_CMD_CONNECT,	     /* start an outgoing connection to @peer */
	KD_CMD_CONNECTED,    /* a resolver thread finished its TCP connect */
	KD_CMD_LINK_CLOSED,  /* a session's link has ended */
	KD_CMD_DISCONNECT,
};

struct kd_cmd {
	enum kd_cmd_type type;
	char peer[KDIST_MAX_NODE_NAME + 1];
	int fd;	    /* CONNECTED: -1 on failure */
	pthread_t resolver; /* CONNECTED: the thread to join */
	int err;    /* CONNECTED failure */
	char reason[160];
	struct kd_session *session; /* LINK_CLOSED */
	struct kd_cmd *next;
};

enum kd_notice_type {
	KD_NOTICE_CONNECT_FAILED, /* nodedown with no statistics */
	KD_NOTICE_WRITABLE,
};

/* A callback that the control thread owes, queued under node->lock and
 * called once the lock is released. */
struct kd_notice {
	struct kd_notice *next;
	enum kd_notice_type type;
	char peer[KDIST_MAX_NODE_NAME + 1];
	char reason[KD_REASON_MAX];
};

struct kdist_node {
	struct kdist_config cfg;
	char name[KDIST_MAX_NODE_NAME + 1];
	char alive[KDIST_MAX_NODE_NAME + 1]; /* the part before '@' */
	char host[KDIST_MAX_NODE_NAME + 1];
	char cookie[256];
	uint32_t creation;
	uint64_t flags;
	uint16_t port;
	bool tls;
	bool ipv6;

	char **allow; /* copied from cfg.allow */
	size_t n_allow;

	struct kd_tls_config *tls_cfg;
	SSL_CTX *server_ctx, *client_ctx;
	struct kd_ktls_caps ktls_caps;
	struct kd_loop *loop;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* peer state changes, for kdist_connect */
	struct kd_peer *peers[KD_PEER_BUCKETS];
	struct kdist_mailbox *mailboxes;
	uint32_t next_pid;
	bool pids_wrapped; /* every pid number has been handed out once */
	uint32_t next_ref;
	uint64_t next_session_id;
	struct kdist_mailbox *net_kernel;

	kdist_nodeup_fn up_fn;
	kdist_nodedown_fn down_fn;
	void *monitor_user;
	kdist_writable_fn writable_fn;
	void *writable_user;
	struct kd_notice *notices, *notices_tail; /* under lock */

	/* Control thread. */
	pthread_t control;
	bool running;
	bool stopped; /* kdist_node_stop() ran on a started node */
	int listen_fd;
	int epmd_fd;
	uint64_t epmd_retry_ns;
	int wake_fd; /* eventfd */
	pthread_mutex_t cmd_lock;
	struct kd_cmd *cmd_head, *cmd_tail;
	atomic_bool stopping;
	atomic_bool draining; /* kdist_node_stop() began: sends are refused */
	unsigned closed_at_stop; /* incoming connections closed during a stop */
	struct kd_hsconn *hsconns;
	uint64_t next_tick_ns;
	atomic_int resolvers; /* resolver threads still running */
};

/* node.c */
struct kd_peer *kd_peer_get(struct kdist_node *node, const char *name,
			    bool create);
struct kdist_mailbox *kd_mailbox_find_name(struct kdist_node *node,
					   const char *name);
struct kdist_mailbox *kd_mailbox_find_pid(struct kdist_node *node,
					  const erlang_pid *pid);
void kd_mailbox_put(struct kdist_mailbox *mbox);
/* Brackets a receive callback of @mbox; false when it is closed and the
 * callback must not run. */
bool kd_mailbox_enter(struct kdist_mailbox *mbox);
void kd_mailbox_leave(struct kdist_mailbox *mbox);
void kd_post_cmd(struct kdist_node *node, struct kd_cmd *cmd);
void kd_pid_to_public(const erlang_pid *in, struct kdist_pid *out);
void kd_pid_from_public(const struct kdist_pid *in, erlang_pid *out);
void kd_node_make_ref(struct kdist_node *node, erlang_ref *ref);
/* send.c */
/* Sends a packet made of @ctrl (pass-through control) and an optional
 * message to the peer named @peer, queuing it while the connection is set
 * up. @sender (a mailbox, or NULL) keeps one sender's messages in order. */
int kd_node_send_packet(struct kdist_node *node, const void *sender,
			const char *peer, const ei_x_buff *ctrl,
			const void *msg, size_t len, unsigned flags);
int kd_session_send(struct kd_session *s, const ei_x_buff *ctrl,
		    const void *msg, size_t len, unsigned flags);
/* Sends @ctrl ("p 131 Ctrl" as the encoders write it) and @msg ("131
 * Msg" or NULL) in the packet form the session negotiated. */
int kd_session_send_raw(struct kd_session *s, const void *sender,
			const uint8_t *ctrl, size_t ctrl_len,
			const uint8_t *msg, size_t msg_len, unsigned flags);
void kd_session_feed(struct kd_session *s);
bool kd_session_bulk_full(struct kd_session *s);
size_t kd_session_bulk_bytes(const struct kd_session *s);
size_t kd_node_bulk_pending(struct kdist_node *node);
void kd_session_bulk_free(struct kd_session *s);
void kd_session_fill_stats(const struct kd_session *s,
			   const struct kd_link_stats *ls,
			   struct kdist_conn_stats *st);

/* conn.c */
int kd_control_start(struct kdist_node *node);
void kd_control_stop(struct kdist_node *node);
/* True on a control thread or a data thread, where callbacks run and the
 * API must not wait. */
bool kd_on_engine_thread(void);

/* dist.c */
extern const struct kd_link_callbacks kd_session_callbacks;
void kd_session_hold(struct kd_session *s);
void kd_session_put(struct kd_session *s);
int kd_net_kernel_open(struct kdist_node *node);

/* CLOCK_MONOTONIC in nanoseconds; defined by the data loop. */
uint64_t kd_now_ns(void);

#endif
