/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kdist: an Erlang distribution node in C, over TLS (inet_tls_dist,
 * inet6_tls_dist) or plain TCP (inet_tcp_dist).
 *
 * Threads. A node runs one control thread (EPMD, TLS and distribution
 * handshakes, ticks, the table of connected nodes) and one or more data
 * threads (an io_uring loop each) that own established connections.
 *
 * - kdist_node_create(), kdist_node_start(), kdist_node_stop() and
 *   kdist_node_destroy() are called from one application thread, never from
 *   a callback: stop and destroy would wait for the thread the callback
 *   runs on, so from a callback they log an error and do nothing.
 * - kdist_send_*(), kdist_connect(), kdist_disconnect(), kdist_mailbox_*()
 *   and kdist_node_stats() are safe from any thread, callbacks included,
 *   and none of them waits when called from a callback (see
 *   kdist_connect() and kdist_mailbox_close()).
 * - Receive callbacks run on the data thread that owns the sender's
 *   connection. Nodeup and nodedown callbacks run on the control thread,
 *   or, for connections that close during kdist_node_stop(), on the thread
 *   that called it. The comment on kdist_writable_fn names the threads
 *   of writable callbacks. Callbacks must not block: a slow callback
 *   stalls every connection of its thread, and on the control thread
 *   every handshake and tick.
 * - The threads kdist starts block every asynchronous signal, so signals
 *   reach the application's threads, and kdist never raises SIGPIPE: the
 *   program need not ignore it.
 *
 * Payloads are external term format: a version byte (131) followed by one
 * encoded term, as ei_x_encode_version() and ei_x_encode_*() produce them.
 *
 * Return values: 0 or a positive count on success, a negative errno on
 * failure. kdist_strerror() turns the most recent failure of the calling
 * thread into a sentence that names the value and the fix.
 */
#ifndef KDIST_H
#define KDIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KDIST_MAX_NODE_NAME 255
#define KDIST_MAX_ATOM 255

struct kdist_node;
struct kdist_mailbox;

enum kdist_proto {
	KDIST_PROTO_INET_TLS = 0, /* -proto_dist inet_tls */
	KDIST_PROTO_INET6_TLS,	  /* -proto_dist inet6_tls */
	KDIST_PROTO_INET_TCP,	  /* -proto_dist inet_tcp */
	KDIST_PROTO_INET6_TCP,	  /* -proto_dist inet6_tcp */
};

/* Record path policy for a TLS connection after its handshake. */
enum kdist_ktls_mode {
	KDIST_KTLS_AUTO = 0, /* kernel TLS when it can carry the link for life */
	KDIST_KTLS_ON,	     /* kernel TLS or fail the connection */
	KDIST_KTLS_OFF,	     /* always the user-space record path */
};

enum kdist_log_level {
	KDIST_LOG_ERROR = 0,
	KDIST_LOG_WARN,
	KDIST_LOG_INFO,
	KDIST_LOG_DEBUG,
};

/* A process identifier, local or remote. The fields map to ei's
 * erlang_pid as node, num, serial and creation; a node name is at most
 * KDIST_MAX_NODE_NAME bytes, which is shorter than ei's buffer. */
struct kdist_pid {
	char node[KDIST_MAX_NODE_NAME + 1];
	uint32_t id;
	uint32_t serial;
	uint32_t creation;
};

/*
 * Encodes @pid at @buf + *@index in external term format and advances
 * *@index, as ei_encode_pid() does; @buf NULL only advances, to size a
 * buffer. With an ei_x_buff: kdist_encode_pid(NULL, &n, pid) for the size,
 * then encode into a buffer of that size and ei_x_append_buf() it.
 * Returns 0 or -1.
 */
int kdist_encode_pid(char *buf, int *index, const struct kdist_pid *pid);

struct kdist_config {
	/* "name@host" or "name": with no host part the host is added, short
	 * (-sname) or fully qualified (-name) depending on @longnames. */
	const char *node_name;
	bool longnames;
	/* NULL reads ~/.erlang.cookie, creating it as erl does when missing. */
	const char *cookie;
	enum kdist_proto proto;
	/* Erlang-term options file, as -ssl_dist_optfile. */
	const char *ssl_dist_optfile;
	/* Pairs as -ssl_dist_opt: {"server_certfile", "/x.pem", ...}, @n_opts
	 * entries of key then value. */
	const char *const *ssl_dist_opts;
	size_t n_ssl_dist_opts;
	/* Seconds, as -kernel net_ticktime; 0 means 60. */
	unsigned net_ticktime;
	/* Listen port; 0 picks one. As -kernel inet_dist_listen_min. */
	uint16_t listen_port;
	/*
	 * Last port of the listen range, as -kernel inet_dist_listen_max:
	 * the node listens on the first free port from @listen_port to this
	 * one. 0 means @listen_port alone. Ignored when @listen_port is 0,
	 * as OTP ignores inet_dist_listen_max without inet_dist_listen_min.
	 */
	uint16_t listen_port_max;
	/* EPMD port; 0 means ERL_EPMD_PORT from the environment, else 4369. */
	uint16_t epmd_port;
	/* Host whose EPMD this node registers with; NULL means localhost. */
	const char *epmd_host;
	/* Data threads, each with its own io_uring; 0 means 1. */
	unsigned data_threads;
	/* Largest distribution packet accepted, in bytes; 0 means
	 * KDIST_DEFAULT_MAX_PACKET. A larger length prefix closes the link. */
	uint32_t max_packet;
	/* Largest message reassembled from fragments, in bytes; 0 means
	 * KDIST_DEFAULT_MAX_MESSAGE. */
	uint64_t max_message;
	/* Bytes queued per connection before kdist_send_*() returns -EAGAIN;
	 * 0 means KDIST_DEFAULT_SEND_QUEUE. */
	size_t send_queue_bytes;
	/* Milliseconds a connection may take for its TLS and distribution
	 * handshakes; 0 means 7000, as net_setuptime. */
	unsigned handshake_timeout_ms;
	/*
	 * Milliseconds kdist_node_stop() gives the connections to send what
	 * is queued and close in order (TLS close_notify, then the peer's
	 * close); 0 means KDIST_DEFAULT_STOP_TIMEOUT_MS. Connections still
	 * open then are closed at once, and the bytes they had queued are
	 * logged as not sent.
	 */
	unsigned stop_timeout_ms;
	enum kdist_ktls_mode ktls;
	/* Hidden node: peers do not list it in nodes(). */
	bool hidden;
	/*
	 * Nodes ("name@host") allowed to connect, as net_kernel:allow/1; an
	 * empty list allows all. Over TLS, a client certificate must also
	 * name the host part of the node name. The strings are copied.
	 */
	const char *const *allow;
	size_t n_allow;
	/* Log lines go here (NULL: stderr); @log_level drops finer ones. */
	void (*log_fn)(void *user, enum kdist_log_level level,
		       const char *line);
	void *log_user;
	enum kdist_log_level log_level;
};

#define KDIST_DEFAULT_MAX_PACKET (64u * 1024 * 1024)
#define KDIST_DEFAULT_SEND_QUEUE (8u * 1024 * 1024)
#define KDIST_DEFAULT_MAX_MESSAGE (1024ull * 1024 * 1024)
#define KDIST_DEFAULT_STOP_TIMEOUT_MS 5000u

/* Fills @cfg with defaults; the caller then sets node_name and options. */
void kdist_config_init(struct kdist_config *cfg);

int kdist_node_create(const struct kdist_config *cfg,
		      struct kdist_node **out);
/*
 * Listens, registers with EPMD and starts the threads. On failure the node
 * is not running but still allocated: free it with kdist_node_destroy(),
 * or call kdist_node_start() again once the cause is fixed (EPMD started,
 * the name freed). Returns -EALREADY when the node runs; a node that
 * kdist_node_stop() stopped cannot start again.
 */
int kdist_node_start(struct kdist_node *node);
/*
 * Closes every connection in order, unregisters and joins the threads.
 * From the call on, kdist_send_*() returns -ESHUTDOWN; what the API
 * accepted before is sent, then each connection closes with a TLS
 * close_notify and waits for the peer to close its side, for at most
 * stop_timeout_ms in all. Nodedown callbacks arrive as the connections
 * close. Messages queued for a peer whose connection was still being set
 * up are not sent; the log names the peer and the count.
 */
void kdist_node_stop(struct kdist_node *node);
/* Stops the node if it runs, then frees it and its mailboxes. */
void kdist_node_destroy(struct kdist_node *node);

/* Full node name, "name@host". */
const char *kdist_node_name(const struct kdist_node *node);
uint32_t kdist_node_creation(const struct kdist_node *node);
uint16_t kdist_node_port(const struct kdist_node *node);


/*
 * Called for each message to a mailbox. @from is the sender when the
 * distribution message carried one (REG_SEND, SEND_SENDER), else NULL.
 * @payload is external term format. Both are valid only during the
 * call: copy *@from to reply later.
 *
 * Exit signals arrive as {'EXIT', From, Reason}, as for a process that
 * traps exits. When the connection to a node ends, the mailbox gets
 * {'EXIT', Pid, noconnection} once for each process on that node linked
 * to it, after every message that came over that connection, and the
 * monitors those processes held are dropped.
 */
typedef void (*kdist_receive_fn)(void *user, struct kdist_mailbox *mbox,
				 const struct kdist_pid *from,
				 const void *payload, size_t len);

/*
 * Creates a mailbox with a pid; @name registers it (NULL: unregistered).
 * Open mailboxes after kdist_node_start(), which gives the node the
 * creation that pids carry: before it, this returns -ENOTCONN. Returns
 * -EEXIST when @name is already registered. Pids count up as OTP's do and
 * come back only after 2^28 more mailboxes, so opening and closing one
 * per request is fine.
 */
int kdist_mailbox_open(struct kdist_node *node, const char *name,
		       kdist_receive_fn fn, void *user,
		       struct kdist_mailbox **out);
/*
 * Unregisters, closes and frees @mbox: linked and monitoring remote
 * processes get an exit signal with reason @reason (an atom such as
 * "normal"), and no receive callback of @mbox starts after the call.
 * Called from an application thread, it returns once the callbacks of
 * @mbox that data threads are running have returned, so @user may be freed
 * then. Called from a callback, it does not wait: with data_threads above
 * 1, a callback of @mbox on another data thread may still be running, so
 * free @user from an application thread or after kdist_node_stop().
 * @mbox and the pid of kdist_mailbox_pid() must not be used after the
 * call, except by a callback of @mbox that is still running.
 */
void kdist_mailbox_close(struct kdist_mailbox *mbox, const char *reason);
const struct kdist_pid *kdist_mailbox_pid(const struct kdist_mailbox *mbox);

/*
 * Sends @payload to @to; the bytes are copied before return. Sending is
 * asynchronous: 0 means the message is queued. If no connection to the
 * pid's node exists, one is set up and the message waits for it; when
 * that set-up fails, the waiting messages are dropped with a log line.
 * Call kdist_connect() first to learn whether a node is reachable.
 * Returns -EAGAIN when the connection's send queue is full (the writable
 * callback follows, see kdist_writable_fn), -ESHUTDOWN once
 * kdist_node_stop() has begun, -ENOTCONN when the connection is closing
 * or the node is stopped.
 */
int kdist_send_pid(struct kdist_mailbox *from, const struct kdist_pid *to,
		   const void *payload, size_t len);
/* Sends to the process registered as @name on @node. */
int kdist_send_name(struct kdist_mailbox *from, const char *node,
		    const char *name, const void *payload, size_t len);

/*
 * Called once after kdist_send_*() returned -EAGAIN for @peer, however
 * many sends got -EAGAIN meanwhile, when sends to @peer are accepted
 * again:
 * - the connection's queue has drained below half its limit: on the data
 *   thread that owns the connection;
 * - the connection came up and took the messages that waited for it, or
 *   the attempt failed or the connection closed and what waited was
 *   dropped (the next send sets up a new connection): on the control
 *   thread, after the nodedown callback of a closed connection.
 * None is called once kdist_node_stop() has begun. @peer is valid only
 * during the call. The set-up functions below take effect at once; call
 * them before kdist_node_start() to see every event.
 */
typedef void (*kdist_writable_fn)(void *user, const char *peer);
void kdist_set_writable_fn(struct kdist_node *node, kdist_writable_fn fn,
			   void *user);

/*
 * Sets up a connection to @peer ("name@host"); 0 when it is up.
 *
 * From an application thread it waits up to @timeout_ms, as
 * net_kernel:connect_node/1 does, and returns 0, -ETIMEDOUT, or the error
 * that ended the attempt (-ENOENT when EPMD does not know the name).
 *
 * From a callback, which must not wait, it starts the attempt and returns
 * -EINPROGRESS at once (0 when @peer is already up), as
 * erlang:monitor_node/2 does: the nodeup callback reports success, and a
 * nodedown callback with @final NULL reports failure, unless the node
 * stops first. @timeout_ms is not used then: the EPMD look-up, the TCP
 * connect and the handshakes are each bounded by handshake_timeout_ms.
 *
 * -ENOTCONN when the node is not started, -ESHUTDOWN once
 * kdist_node_stop() has begun.
 */
int kdist_connect(struct kdist_node *node, const char *peer,
		  unsigned timeout_ms);
int kdist_disconnect(struct kdist_node *node, const char *peer);

/* Per-connection statistics. */
struct kdist_conn_stats {
	char peer[KDIST_MAX_NODE_NAME + 1];
	bool initiator;		 /* this node connected out */
	char tls_version[16];	 /* "TLSv1.3"; empty for inet_tcp */
	char tls_cipher[64];	 /* OpenSSL cipher name */
	char record_path[16];	 /* "kernel", "user-space" or "plain" */
	char path_reason[160];	 /* why that record path was chosen */
	uint64_t peer_flags;	 /* negotiated distribution flags */
	uint64_t bytes_in, bytes_out;	    /* distribution payload bytes */
	/* Packets: one per message, or one per fragment of a message sent
	 * in fragments (terms over 64 KiB to peers that accept them). */
	uint64_t msgs_in, msgs_out;
	uint64_t ticks_in, ticks_out;
	uint64_t unknown_ctrl;	 /* control messages not understood */
	/* Bytes waiting to be written, large messages not yet split into
	 * fragments included. */
	uint64_t send_queue_bytes;
};

/*
 * Called when a connection to @peer comes up or goes down. For nodedown,
 * @reason is a sentence such as "connection closed by peer" and @final
 * the connection's statistics at the end. @final is NULL when the
 * connection never came up: an attempt that kdist_connect() returned
 * -EINPROGRESS for has failed. @peer, @reason and @final are valid only
 * during the call.
 */
typedef void (*kdist_nodeup_fn)(void *user, const char *peer);
typedef void (*kdist_nodedown_fn)(void *user, const char *peer,
				  const char *reason,
				  const struct kdist_conn_stats *final);
void kdist_set_node_monitor(struct kdist_node *node, kdist_nodeup_fn up,
			    kdist_nodedown_fn down, void *user);

/* Calls @fn for each connected node. Safe from any thread. */
int kdist_node_stats(struct kdist_node *node,
		     void (*fn)(void *user, const struct kdist_conn_stats *st),
		     void *user);

/*
 * A certificate check named in the options file as
 * {verify_fun, {fun M:F/3, State}}. Register it under "M:F/3" before
 * kdist_node_create(). @preverify_ok is OpenSSL's verdict for the
 * certificate at @depth (0: the peer's own); @x509 is an X509 pointer.
 * Return true to accept.
 */
typedef bool (*kdist_verify_fn)(void *user, bool preverify_ok, int depth,
				void *x509, const char *peer_host);
int kdist_register_verify_fun(const char *mfa, kdist_verify_fn fn,
			      void *user);

/* The most recent error of the calling thread, as a sentence. */
const char *kdist_strerror(void);

#ifdef __cplusplus
}
#endif

#endif
