// SPDX-License-Identifier: Apache-2.0
/*
 * The public API: node life cycle, mailboxes, the peer table and sending.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "epmd.h"
#include "error.h"
#include "log.h"
#include "node_int.h"

void kdist_config_init(struct kdist_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->proto = KDIST_PROTO_INET_TLS;
	cfg->net_ticktime = 60;
	cfg->data_threads = 1;
	cfg->max_packet = KDIST_DEFAULT_MAX_PACKET;
	cfg->max_message = KDIST_DEFAULT_MAX_MESSAGE;
	cfg->send_queue_bytes = KDIST_DEFAULT_SEND_QUEUE;
	cfg->handshake_timeout_ms = 7000;
	cfg->stop_timeout_ms = KDIST_DEFAULT_STOP_TIMEOUT_MS;
	cfg->ktls = KDIST_KTLS_AUTO;
	cfg->log_level = KDIST_LOG_INFO;
}

/* Host part for a node name without one: short for -sname, fully
 * qualified for -name, as erl picks them. */
static int node_default_host(bool longnames, char *host, size_t cap)
{
	struct addrinfo hints = { .ai_flags = AI_CANONNAME };
	struct addrinfo *res = NULL;
	char buf[256];
	char *dot;

	if (gethostname(buf, sizeof(buf)) != 0)
		return kd_fail(errno, "node: gethostname failed: %s",
			       strerror(errno));
	buf[sizeof(buf) - 1] = '\0';
	if (!longnames) {
		dot = strchr(buf, '.');
		if (dot)
			*dot = '\0';
		snprintf(host, cap, "%s", buf);
		return 0;
	}
	if (strchr(buf, '.') == NULL &&
	    getaddrinfo(buf, NULL, &hints, &res) == 0 && res->ai_canonname &&
	    strchr(res->ai_canonname, '.'))
		snprintf(buf, sizeof(buf), "%s", res->ai_canonname);
	if (res)
		freeaddrinfo(res);
	if (strchr(buf, '.') == NULL)
		return kd_fail(EINVAL,
			       "node: host name '%s' is not fully qualified, "
			       "which -name needs; give -name NAME@HOST.DOMAIN "
			       "or use -sname",
			       buf);
	snprintf(host, cap, "%s", buf);
	return 0;
}

/* The rule of net_kernel's valid_name_head in OTP 25 to 28: the part
 * before '@' matches ^[0-9A-Za-z_-]+$, or erl stops with "Invalid node
 * name!". */
static bool is_valid_alive(const char *alive, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = alive[i];

		if (!(c >= '0' && c <= '9') && !(c >= 'A' && c <= 'Z') &&
		    !(c >= 'a' && c <= 'z') && c != '_' && c != '-')
			return false;
	}
	return true;
}

/* No space, control character or second '@', which OTP and the
 * distribution handshake of other kdist nodes reject. */
static bool is_valid_host(const char *host)
{
	for (const char *p = host; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '@')
			return false;
	return true;
}

static int node_set_name(struct kdist_node *node, const char *name,
			 bool longnames)
{
	const char *at = strchr(name, '@');
	size_t alive_len = at ? (size_t)(at - name) : strlen(name);
	int err;

	if (alive_len == 0 || alive_len > 200)
		return kd_fail(EINVAL,
			       "node: invalid node name '%s': the part before "
			       "'@' must be 1 to 200 characters",
			       name);
	if (!is_valid_alive(name, alive_len))
		return kd_fail(EINVAL,
			       "node: invalid node name '%s': the part before "
			       "'@' may contain only ASCII letters, digits, '_' "
			       "and '-', as OTP's net_kernel requires (erl "
			       "rejects other names with \"Invalid node "
			       "name!\")",
			       name);
	memcpy(node->alive, name, alive_len);
	node->alive[alive_len] = '\0';
	if (at) {
		snprintf(node->host, sizeof(node->host), "%s", at + 1);
	} else {
		err = node_default_host(longnames, node->host,
					sizeof(node->host));
		if (err)
			return err;
	}
	if (node->host[0] == '\0')
		return kd_fail(EINVAL, "node: node name '%s' has an empty host",
			       name);
	if (!is_valid_host(node->host))
		return kd_fail(EINVAL,
			       "node: invalid node name '%s': the host part "
			       "must not contain spaces, control characters "
			       "or a second '@'",
			       name);
	if (!longnames && strchr(node->host, '.'))
		kd_warn("node: -sname with a dotted host '%s'; erl nodes "
			"started with -sname may not reach it",
			node->host);
	snprintf(node->name, sizeof(node->name), "%s@%s", node->alive,
		 node->host);
	return 0;
}

/* Reads ~/.erlang.cookie, creating it as erl does (20 random upper-case
 * letters, mode 0400) when it is missing. */
static int node_read_cookie_file(char *cookie, size_t cap)
{
	const char *home = getenv("HOME");
	char path[512];
	struct stat st;
	ssize_t n;
	int fd;

	if (!home || !*home)
		return kd_fail(ENOENT, "node: no -setcookie and HOME is not "
				       "set, so ~/.erlang.cookie is unknown");
	snprintf(path, sizeof(path), "%s/.erlang.cookie", home);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		uint8_t rnd[20];
		char fresh[21];

		RAND_bytes(rnd, sizeof(rnd));
		for (size_t i = 0; i < sizeof(rnd); i++)
			fresh[i] = (char)('A' + rnd[i] % 26);
		fresh[20] = '\0';
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
		if (fd >= 0) {
			if (write(fd, fresh, 20) != 20)
				kd_warn("node: short write to %s", path);
			close(fd);
			kd_info("node: created cookie file %s", path);
		}
		OPENSSL_cleanse(fresh, sizeof(fresh));
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0)
		return kd_fail(errno, "node: cannot read cookie file %s: %s",
			       path, strerror(errno));
	if (fstat(fd, &st) == 0 && (st.st_mode & 0077)) {
		close(fd);
		return kd_fail(EACCES,
			       "node: cookie file %s must be accessible by its "
			       "owner only (chmod 400 %s)",
			       path, path);
	}
	n = read(fd, cookie, cap - 1);
	close(fd);
	if (n < 0)
		return kd_fail(errno, "node: read %s failed: %s", path,
			       strerror(errno));
	while (n > 0 && (cookie[n - 1] == '\n' || cookie[n - 1] == '\r' ||
			 cookie[n - 1] == ' '))
		n--;
	cookie[n] = '\0';
	if (n == 0)
		return kd_fail(EINVAL, "node: cookie file %s is empty", path);
	return 0;
}

static void node_log_sink(void *user, enum kd_log_level level,
			  const char *line)
{
	struct kdist_node *node = user;

	node->cfg.log_fn(node->cfg.log_user, (enum kdist_log_level)level,
			 line);
}

static int node_setup_tls(struct kdist_node *node)
{
	const char *tls = node->ipv6 ? "inet6_tls" : "inet_tls";
	const char *tcp = node->ipv6 ? "inet6_tcp" : "inet_tcp";
	char err[512];
	int ret;

	/* Without options the contexts have no certificate and no CA, and
	 * the first error would name cacertfile instead of the cause. */
	if (!node->cfg.ssl_dist_optfile && node->cfg.n_ssl_dist_opts == 0)
		return kd_fail(EINVAL,
			       "node: %s needs TLS options: give "
			       "-ssl_dist_optfile FILE (or -ssl_dist_opt "
			       "server_certfile FILE ...), or use -proto_dist "
			       "%s for plain TCP (erl's default protocol is "
			       "inet_tcp, kdist's is inet_tls)",
			       tls, tcp);
	node->tls_cfg = kd_tls_config_new();
	if (!node->tls_cfg)
		return -ENOMEM;
	if (node->cfg.ssl_dist_optfile) {
		ret = kd_tls_config_load_file(node->tls_cfg,
					      node->cfg.ssl_dist_optfile, err,
					      sizeof(err));
		if (ret)
			return kd_fail(ret, "%s", err);
	}
	for (size_t i = 0; i + 1 < node->cfg.n_ssl_dist_opts; i += 2) {
		ret = kd_tls_config_add_opt(node->tls_cfg,
					    node->cfg.ssl_dist_opts[i],
					    node->cfg.ssl_dist_opts[i + 1], err,
					    sizeof(err));
		if (ret)
			return kd_fail(ret, "%s", err);
	}
	node->server_ctx = kd_tls_config_server_ctx(node->tls_cfg, err,
						    sizeof(err));
	if (!node->server_ctx)
		return kd_fail(EINVAL, "%s", err);
	node->client_ctx = kd_tls_config_client_ctx(node->tls_cfg, err,
						    sizeof(err));
	if (!node->client_ctx)
		return kd_fail(EINVAL, "%s", err);
	kd_ktls_prepare_ctx(node->server_ctx);
	kd_ktls_prepare_ctx(node->client_ctx);
	kd_ktls_probe(&node->ktls_caps);
	kd_info("node: kernel TLS: %s%s", node->ktls_caps.detail,
		node->cfg.ktls == KDIST_KTLS_OFF ? " (disabled by ktls=off)"
						 : "");
	/* Every connection would fail its handshake, so fail here. */
	if (node->cfg.ktls == KDIST_KTLS_ON && !node->ktls_caps.ulp)
		return kd_fail(EOPNOTSUPP,
			       "node: -ktls on needs kernel TLS, which this "
			       "kernel cannot provide: %s; use -ktls auto to "
			       "fall back to user-space TLS, or load the "
			       "kernel's tls module (modprobe tls)",
			       node->ktls_caps.detail);
	return 0;
}

static int node_copy_allow(struct kdist_node *node,
			   const struct kdist_config *cfg)
{
	node->cfg.allow = NULL;
	node->cfg.n_allow = 0;
	if (!cfg->n_allow)
		return 0;
	node->allow = calloc(cfg->n_allow, sizeof(*node->allow));
	if (!node->allow)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_allow; i++) {
		if (!strchr(cfg->allow[i], '@'))
			return kd_fail(EINVAL,
				       "node: allowed node '%s' is not a node "
				       "name (expected name@host)",
				       cfg->allow[i]);
		node->allow[i] = strdup(cfg->allow[i]);
		if (!node->allow[i])
			return -ENOMEM;
		node->n_allow++;
	}
	return 0;
}

int kdist_node_create(const struct kdist_config *cfg,
		      struct kdist_node **out)
{
	struct kdist_node *node;
	int err;

	if (!cfg || !cfg->node_name || !out)
		return kd_fail(EINVAL, "node: a node name is required "
				       "(-sname NAME or -name NAME)");
	node = calloc(1, sizeof(*node));
	if (!node)
		return -ENOMEM;
	node->cfg = *cfg;
	node->listen_fd = -1;
	node->epmd_fd = -1;
	node->wake_fd = -1;
	node->next_pid = 1;
	pthread_mutex_init(&node->lock, NULL);
	pthread_cond_init(&node->cond, NULL);
	pthread_mutex_init(&node->cmd_lock, NULL);
	if (!node->cfg.net_ticktime)
		node->cfg.net_ticktime = 60;
	if (!node->cfg.data_threads)
		node->cfg.data_threads = 1;
	if (!node->cfg.max_packet)
		node->cfg.max_packet = KDIST_DEFAULT_MAX_PACKET;
	if (!node->cfg.max_message)
		node->cfg.max_message = KDIST_DEFAULT_MAX_MESSAGE;
	if (!node->cfg.send_queue_bytes)
		node->cfg.send_queue_bytes = KDIST_DEFAULT_SEND_QUEUE;
	if (!node->cfg.handshake_timeout_ms)
		node->cfg.handshake_timeout_ms = 7000;
	if (!node->cfg.stop_timeout_ms)
		node->cfg.stop_timeout_ms = KDIST_DEFAULT_STOP_TIMEOUT_MS;
	if (node->cfg.log_fn)
		kd_log_configure(node_log_sink, node,
				 (enum kd_log_level)node->cfg.log_level);
	else
		kd_log_configure(NULL, NULL,
				 (enum kd_log_level)node->cfg.log_level);
	node->tls = cfg->proto == KDIST_PROTO_INET_TLS ||
		    cfg->proto == KDIST_PROTO_INET6_TLS;
	node->ipv6 = cfg->proto == KDIST_PROTO_INET6_TLS ||
		     cfg->proto == KDIST_PROTO_INET6_TCP;
	/* Only the name is copied; the caller's strings may go away. */
	node->cfg.node_name = NULL;
	node->cfg.cookie = NULL;
	node->cfg.ssl_dist_optfile = NULL;
	node->cfg.ssl_dist_opts = NULL;
	node->cfg.n_ssl_dist_opts = 0;
	node->cfg.epmd_host = NULL;

	err = node_set_name(node, cfg->node_name, cfg->longnames);
	if (err)
		goto fail;
	if (cfg->cookie) {
		if (strlen(cfg->cookie) >= sizeof(node->cookie)) {
			err = kd_fail(EINVAL, "node: cookie longer than 255 "
					      "bytes");
			goto fail;
		}
		snprintf(node->cookie, sizeof(node->cookie), "%s",
			 cfg->cookie);
	} else {
		err = node_read_cookie_file(node->cookie,
					    sizeof(node->cookie));
		if (err)
			goto fail;
	}
	if (node->tls) {
		struct kdist_config tmp = *cfg;

		node->cfg.ssl_dist_optfile = tmp.ssl_dist_optfile;
		node->cfg.ssl_dist_opts = tmp.ssl_dist_opts;
		node->cfg.n_ssl_dist_opts = tmp.n_ssl_dist_opts;
		err = node_setup_tls(node);
		node->cfg.ssl_dist_optfile = NULL;
		node->cfg.ssl_dist_opts = NULL;
		node->cfg.n_ssl_dist_opts = 0;
		if (err)
			goto fail;
	}
	if (cfg->epmd_host)
		node->cfg.epmd_host = strdup(cfg->epmd_host);
	err = node_copy_allow(node, cfg);
	if (err)
		goto fail;
	if (!node->cfg.epmd_port) {
		const char *env = getenv("ERL_EPMD_PORT");

		node->cfg.epmd_port = env ? (uint16_t)atoi(env)
					  : KD_EPMD_DEFAULT_PORT;
	}
	node->flags = KD_DFLAGS_MANDATORY | DFLAG_MANDATORY_25_DIGEST |
		      DFLAG_DIST_MONITOR | DFLAG_DIST_MONITOR_NAME |
		      DFLAG_SMALL_ATOM_TAGS | DFLAG_UNICODE_IO |
		      DFLAG_SEND_SENDER | DFLAG_EXIT_PAYLOAD | DFLAG_SPAWN |
		      DFLAG_BIG_SEQTRACE_LABELS | DFLAG_FRAGMENTS;
	if (!cfg->hidden)
		node->flags |= DFLAG_PUBLISHED;
	*out = node;
	return 0;

fail:
	kdist_node_destroy(node);
	return err;
}

const char *kdist_node_name(const struct kdist_node *node)
{
	return node->name;
}

uint32_t kdist_node_creation(const struct kdist_node *node)
{
	return node->creation;
}

uint16_t kdist_node_port(const struct kdist_node *node)
{
	return node->port;
}

void kdist_set_node_monitor(struct kdist_node *node, kdist_nodeup_fn up,
			    kdist_nodedown_fn down, void *user)
{
	pthread_mutex_lock(&node->lock);
	node->up_fn = up;
	node->down_fn = down;
	node->monitor_user = user;
	pthread_mutex_unlock(&node->lock);
}

void kdist_set_writable_fn(struct kdist_node *node, kdist_writable_fn fn,
			   void *user)
{
	pthread_mutex_lock(&node->lock);
	node->writable_fn = fn;
	node->writable_user = user;
	pthread_mutex_unlock(&node->lock);
}

int kdist_node_start(struct kdist_node *node)
{
	int err;

	if (node->running || node->loop)
		return kd_fail(EALREADY, "node: %s is already started",
			       node->name);
	if (node->stopped)
		return kd_fail(EINVAL,
			       "node: %s was stopped and cannot start again; "
			       "destroy it and create a new node",
			       node->name);
	err = kd_loop_create(node->cfg.data_threads, &node->loop);
	if (err)
		return kd_fail(err, "node: cannot start the data loop: %s",
			       strerror(-err));
	err = kd_control_start(node);
	if (err) {
		kd_loop_destroy(node->loop);
		node->loop = NULL;
		return err;
	}
	err = kd_net_kernel_open(node);
	if (err) {
		kdist_node_stop(node);
		node->stopped = false; /* a failed start may be tried again */
		return err;
	}
	return 0;
}

/*
 * The orderly part of a stop: every connection sends its queue, then
 * close_notify, and closes when the peer does. The control thread still
 * runs meanwhile, so ticks go on and the nodedowns are delivered.
 */
static void node_drain(struct kdist_node *node)
{
	uint64_t start = kd_now_ns(), limit;
	unsigned left, open;

	if (!node->running || !node->loop)
		return;
	atomic_store(&node->draining, true);
	/* Ends the waits of kdist_connect(). */
	pthread_mutex_lock(&node->lock);
	pthread_cond_broadcast(&node->cond);
	pthread_mutex_unlock(&node->lock);
	open = kd_loop_links(node->loop);
	if (open > 0)
		kd_info("node: stopping: closing %u connection%s in order (stop timeout %u ms)",
			open, open == 1 ? "" : "s",
			node->cfg.stop_timeout_ms);
	limit = (uint64_t)node->cfg.stop_timeout_ms * 1000000ull;
	/* Large messages reach the links a few fragments at a time, so the
	 * links may close only once those queues are empty. */
	while (kd_node_bulk_pending(node) > 0 && kd_now_ns() - start < limit)
		usleep(2000);
	kd_loop_drain(node->loop, -ESHUTDOWN,
		      "node stopping: queue sent, closed in order");
	if (open == 0)
		return;
	while ((left = kd_loop_links(node->loop)) > 0 &&
	       kd_now_ns() - start < limit)
		usleep(2000);
	if (left > 0)
		kd_warn("node: stopping: %u of %u connections did not close within %u ms; closing them now",
			left, open, node->cfg.stop_timeout_ms);
}

/* Messages queued for peers whose connection never came up. */
static void node_log_unsent(struct kdist_node *node)
{
	for (int b = 0; b < KD_PEER_BUCKETS; b++) {
		for (struct kd_peer *p = node->peers[b]; p; p = p->next) {
			size_t n = 0;

			for (struct kd_pending_msg *m = p->q_head; m; m = m->next)
				n++;
			if (n > 0)
				kd_warn("node: %zu messages queued for %s were not sent: its connection was not set up before the node stopped",
					n, p->name);
		}
	}
}

/* Stop and destroy join the engine's threads, so a callback running on
 * one of them must not call them. */
static bool node_called_from_callback(const char *fn)
{
	if (!kd_on_engine_thread())
		return false;
	kd_err("node: %s() called from a callback, where it would wait for "
	       "the thread it runs on; nothing done (call it from an "
	       "application thread)",
	       fn);
	return true;
}

void kdist_node_stop(struct kdist_node *node)
{
	if (node_called_from_callback("kdist_node_stop"))
		return;
	if (!node->running && !node->loop)
		return;
	node->stopped = true;
	node_drain(node);
	kd_control_stop(node);
	pthread_mutex_lock(&node->lock);
	node_log_unsent(node);
	pthread_mutex_unlock(&node->lock);
	if (node->loop) {
		kd_loop_destroy(node->loop);
		node->loop = NULL;
	}
}

static void node_free_peers(struct kdist_node *node)
{
	for (int b = 0; b < KD_PEER_BUCKETS; b++) {
		struct kd_peer *p = node->peers[b];

		while (p) {
			struct kd_peer *next = p->next;
			struct kd_pending_msg *m = p->q_head;

			while (m) {
				struct kd_pending_msg *mn = m->next;

				free(m);
				m = mn;
			}
			free(p);
			p = next;
		}
		node->peers[b] = NULL;
	}
}

static void mailbox_free(struct kdist_mailbox *m);

void kdist_node_destroy(struct kdist_node *node)
{
	struct kdist_mailbox *m, *next;

	if (!node || node_called_from_callback("kdist_node_destroy"))
		return;
	kdist_node_stop(node);
	for (m = node->mailboxes; m; m = next) {
		next = m->next;
		mailbox_free(m);
	}
	node_free_peers(node);
	if (node->server_ctx)
		SSL_CTX_free(node->server_ctx);
	if (node->client_ctx)
		SSL_CTX_free(node->client_ctx);
	kd_tls_config_free(node->tls_cfg);
	free((char *)node->cfg.epmd_host);
	for (size_t i = 0; i < node->n_allow; i++)
		free(node->allow[i]);
	free(node->allow);
	OPENSSL_cleanse(node->cookie, sizeof(node->cookie));
	pthread_mutex_destroy(&node->lock);
	pthread_cond_destroy(&node->cond);
	pthread_mutex_destroy(&node->cmd_lock);
	free(node);
}

/* ---- peers ---- */

static unsigned peer_hash(const char *name)
{
	unsigned h = 5381;

	while (*name)
		h = h * 33 + (unsigned char)*name++;
	return h % KD_PEER_BUCKETS;
}

/* Finds the entry for @name; node->lock held. */
struct kd_peer *kd_peer_get(struct kdist_node *node, const char *name,
			    bool create)
{
	unsigned b = peer_hash(name);
	struct kd_peer *p;

	for (p = node->peers[b]; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	if (!create)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->next = node->peers[b];
	node->peers[b] = p;
	return p;
}

/* ---- pids and refs ---- */

void kd_pid_to_public(const erlang_pid *in, struct kdist_pid *out)
{
	snprintf(out->node, sizeof(out->node), "%s", in->node);
	out->id = in->num;
	out->serial = in->serial;
	out->creation = in->creation;
}

void kd_pid_from_public(const struct kdist_pid *in, erlang_pid *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->node, sizeof(out->node), "%s", in->node);
	out->num = in->id;
	out->serial = in->serial;
	out->creation = in->creation;
}

int kdist_encode_pid(char *buf, int *index, const struct kdist_pid *pid)
{
	erlang_pid epid;

	kd_pid_from_public(pid, &epid);
	return ei_encode_pid(buf, index, &epid);
}

void kd_node_make_ref(struct kdist_node *node, erlang_ref *ref)
{
	uint32_t rnd[2];

	memset(ref, 0, sizeof(*ref));
	snprintf(ref->node, sizeof(ref->node), "%s", node->name);
	RAND_bytes((unsigned char *)rnd, sizeof(rnd));
	pthread_mutex_lock(&node->lock);
	ref->n[0] = ++node->next_ref & 0x3ffff;
	pthread_mutex_unlock(&node->lock);
	ref->n[1] = rnd[0];
	ref->n[2] = rnd[1];
	ref->len = 3;
	ref->creation = node->creation;
}

/* ---- mailboxes ---- */

/* Pid numbers of the 2^28 that a 15-bit number and a 13-bit serial give,
 * the fields OTP uses for a pid's external form. */
#define KD_PID_SPACE (1u << 28)

static bool mailbox_pid_open(struct kdist_node *node, uint32_t num,
			     uint32_t serial)
{
	for (struct kdist_mailbox *m = node->mailboxes; m; m = m->next)
		if (!m->closed && m->epid.num == num && m->epid.serial == serial)
			return true;
	return false;
}

/* Gives @pid the next number and serial, as OTP counts them, so a pid
 * comes back only after 2^28 mailboxes, and never while an open mailbox
 * uses it. node->lock held. */
static void mailbox_next_pid(struct kdist_node *node, erlang_pid *pid)
{
	uint32_t next;

	do {
		next = node->next_pid++;
		if (node->next_pid == KD_PID_SPACE) {
			node->next_pid = 1;
			node->pids_wrapped = true;
		}
		pid->num = next & 0x7fff;
		pid->serial = next >> 15;
	} while (node->pids_wrapped &&
		 mailbox_pid_open(node, pid->num, pid->serial));
}

int kdist_mailbox_open(struct kdist_node *node, const char *name,
		       kdist_receive_fn fn, void *user,
		       struct kdist_mailbox **out)
{
	struct kdist_mailbox *m;

	if (name && (strlen(name) == 0 || strlen(name) > KDIST_MAX_ATOM))
		return kd_fail(EINVAL, "mailbox: invalid name '%s'", name);
	if (!node->creation)
		return kd_fail(ENOTCONN, "mailbox: node %s is not started; "
					 "open mailboxes after "
					 "kdist_node_start(), which gives the "
					 "node its creation",
			       node->name);
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->node = node;
	m->fn = fn;
	m->user = user;
	atomic_init(&m->refs, 1);
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->idle, NULL);
	if (name)
		snprintf(m->name, sizeof(m->name), "%s", name);

	pthread_mutex_lock(&node->lock);
	if (name) {
		for (struct kdist_mailbox *o = node->mailboxes; o; o = o->next)
			if (!o->closed && strcmp(o->name, name) == 0) {
				pthread_mutex_unlock(&node->lock);
				pthread_cond_destroy(&m->idle);
				pthread_mutex_destroy(&m->lock);
				free(m);
				return kd_fail(EEXIST,
					       "mailbox: name '%s' is already "
					       "registered",
					       name);
			}
	}
	snprintf(m->epid.node, sizeof(m->epid.node), "%s", node->name);
	mailbox_next_pid(node, &m->epid);
	m->epid.creation = node->creation;
	kd_pid_to_public(&m->epid, &m->pid);
	m->next = node->mailboxes;
	node->mailboxes = m;
	pthread_mutex_unlock(&node->lock);
	*out = m;
	return 0;
}

const struct kdist_pid *kdist_mailbox_pid(const struct kdist_mailbox *mbox)
{
	return &mbox->pid;
}

struct kdist_mailbox *kd_mailbox_find_name(struct kdist_node *node,
					   const char *name)
{
	struct kdist_mailbox *m;

	pthread_mutex_lock(&node->lock);
	for (m = node->mailboxes; m; m = m->next)
		if (!m->closed && m->name[0] && strcmp(m->name, name) == 0)
			break;
	if (m)
		atomic_fetch_add(&m->refs, 1);
	pthread_mutex_unlock(&node->lock);
	return m;
}

struct kdist_mailbox *kd_mailbox_find_pid(struct kdist_node *node,
					  const erlang_pid *pid)
{
	struct kdist_mailbox *m;

	if (strcmp(pid->node, node->name) != 0)
		return NULL;
	pthread_mutex_lock(&node->lock);
	for (m = node->mailboxes; m; m = m->next)
		if (!m->closed && m->epid.num == pid->num &&
		    m->epid.serial == pid->serial)
			break;
	if (m)
		atomic_fetch_add(&m->refs, 1);
	pthread_mutex_unlock(&node->lock);
	return m;
}

static void mailbox_free(struct kdist_mailbox *m)
{
	pthread_cond_destroy(&m->idle);
	pthread_mutex_destroy(&m->lock);
	free(m->rels);
	free(m);
}

/* Drops a reference and frees a closed mailbox with its last one. Lookups
 * skip closed mailboxes, so none can take a reference meanwhile. */
void kd_mailbox_put(struct kdist_mailbox *mbox)
{
	struct kdist_node *node = mbox->node;
	struct kdist_mailbox **pp;

	if (atomic_fetch_sub(&mbox->refs, 1) != 1)
		return;
	pthread_mutex_lock(&node->lock);
	for (pp = &node->mailboxes; *pp; pp = &(*pp)->next)
		if (*pp == mbox) {
			*pp = mbox->next;
			break;
		}
	pthread_mutex_unlock(&node->lock);
	mailbox_free(mbox);
}

/*
 * Lock-free, as this runs for every delivered message. The counter goes up
 * before closed is read, and kdist_mailbox_close() sets closed before it
 * reads the counter, so one of the two sees the other (sequentially
 * consistent atomics), and the wake-up takes the lock the closer waits on.
 */
bool kd_mailbox_enter(struct kdist_mailbox *mbox)
{
	atomic_fetch_add(&mbox->running, 1);
	if (atomic_load(&mbox->closed)) {
		kd_mailbox_leave(mbox);
		return false;
	}
	return true;
}

void kd_mailbox_leave(struct kdist_mailbox *mbox)
{
	if (atomic_fetch_sub(&mbox->running, 1) == 1 &&
	    atomic_load(&mbox->closed)) {
		pthread_mutex_lock(&mbox->lock);
		pthread_cond_broadcast(&mbox->idle);
		pthread_mutex_unlock(&mbox->lock);
	}
}

/* Sends the exit signals a closing mailbox owes: EXIT to each linked
 * process and MONITOR_P_EXIT to each monitoring one. */
static void mailbox_signal_exit(struct kdist_mailbox *m, const char *reason)
{
	struct kd_relation *rels;
	size_t n;
	ei_x_buff x;

	pthread_mutex_lock(&m->lock);
	rels = m->rels;
	n = m->n_rels;
	m->rels = NULL;
	m->n_rels = m->cap_rels = 0;
	pthread_mutex_unlock(&m->lock);

	for (size_t i = 0; i < n; i++) {
		struct kd_relation *r = &rels[i];

		if (ei_x_new(&x) != 0)
			break;
		if (r->monitor)
			kd_ctrl_encode_monitor_p_exit(
				&x, &m->epid, r->by_name ? m->name : NULL,
				&r->remote, &r->ref, reason);
		else
			kd_ctrl_encode_exit(&x, &m->epid, &r->remote, reason);
		kd_node_send_packet(m->node, m, r->remote.node, &x, NULL, 0,
				    KD_SEND_FORCE);
		ei_x_free(&x);
	}
	free(rels);
}

void kdist_mailbox_close(struct kdist_mailbox *mbox, const char *reason)
{
	struct kdist_node *node = mbox->node;

	pthread_mutex_lock(&node->lock);
	if (mbox->closed) {
		pthread_mutex_unlock(&node->lock);
		return;
	}
	pthread_mutex_lock(&mbox->lock);
	mbox->closed = true;
	pthread_mutex_unlock(&mbox->lock);
	pthread_mutex_unlock(&node->lock);
	mailbox_signal_exit(mbox, reason ? reason : "normal");
	/* A callback that closes a mailbox cannot wait: it may be that
	 * mailbox's own callback, and no callback may block. */
	if (!kd_on_engine_thread()) {
		pthread_mutex_lock(&mbox->lock);
		while (atomic_load(&mbox->running) > 0)
			pthread_cond_wait(&mbox->idle, &mbox->lock);
		pthread_mutex_unlock(&mbox->lock);
	}
	kd_mailbox_put(mbox);
}

int kdist_connect(struct kdist_node *node, const char *peer,
		  unsigned timeout_ms)
{
	uint64_t deadline = kd_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	/* The control thread makes the connection, so a callback, which
	 * may run on it, starts the attempt and does not wait for it. */
	bool in_callback = kd_on_engine_thread();
	struct timespec ts;
	struct kd_peer *p;
	struct kd_cmd *cmd;
	int err = 0;

	if (!strchr(peer, '@'))
		return kd_fail(EINVAL,
			       "connect: invalid node name '%s' (expected "
			       "name@host)",
			       peer);
	cmd = calloc(1, sizeof(*cmd));
	if (!cmd)
		return -ENOMEM;
	cmd->type = KD_CMD_CONNECT;
	snprintf(cmd->peer, sizeof(cmd->peer), "%s", peer);
	pthread_mutex_lock(&node->lock);
	if (!node->running || atomic_load(&node->draining)) {
		pthread_mutex_unlock(&node->lock);
		free(cmd);
		if (node->running)
			return kd_fail(ESHUTDOWN,
				       "connect: %s: node %s is stopping",
				       peer, node->name);
		return kd_fail(ENOTCONN,
			       "connect: %s: node %s is not started; call "
			       "kdist_node_start() first",
			       peer, node->name);
	}
	p = kd_peer_get(node, peer, true);
	if (!p) {
		pthread_mutex_unlock(&node->lock);
		free(cmd);
		return -ENOMEM;
	}
	if (p->state == KD_PEER_UP) {
		pthread_mutex_unlock(&node->lock);
		free(cmd);
		return 0;
	}
	if (in_callback)
		p->report_failure = true;
	if (p->state == KD_PEER_IDLE) {
		p->state = KD_PEER_CONNECTING;
		p->last_error = 0;
	} else {
		free(cmd);
		cmd = NULL;
	}
	pthread_mutex_unlock(&node->lock);
	if (cmd)
		kd_post_cmd(node, cmd);
	if (in_callback)
		return kd_fail(EINPROGRESS,
			       "connect: %s: connecting in the background, "
			       "because a callback must not wait; the nodeup "
			       "or nodedown callback reports the outcome",
			       peer);

	pthread_mutex_lock(&node->lock);
	while (p->state == KD_PEER_CONNECTING) {
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t now = kd_now_ns();

		/* kdist_node_stop() wakes the waiters when it begins. */
		if (atomic_load(&node->draining)) {
			err = kd_fail(ESHUTDOWN,
				      "connect: %s: node %s is stopping", peer,
				      node->name);
			break;
		}
		if (now >= deadline) {
			err = kd_fail(ETIMEDOUT,
				      "connect: %s: no connection within %u "
				      "ms",
				      peer, timeout_ms);
			break;
		}
		uint64_t left = deadline - now;

		ts.tv_sec += (time_t)(left / 1000000000ull);
		ts.tv_nsec += (long)(left % 1000000000ull);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&node->cond, &node->lock, &ts);
	}
	if (!err && p->state != KD_PEER_UP)
		err = kd_fail(p->last_error ? p->last_error : ECONNREFUSED,
			      "connect: %s: %s", peer,
			      p->last_reason[0] ? p->last_reason
						: "connection failed");
	pthread_mutex_unlock(&node->lock);
	return err;
}

int kdist_disconnect(struct kdist_node *node, const char *peer)
{
	struct kd_session *s = NULL;
	struct kd_peer *p;

	pthread_mutex_lock(&node->lock);
	p = kd_peer_get(node, peer, false);
	if (p && p->state == KD_PEER_UP) {
		s = p->session;
		kd_session_hold(s);
	}
	pthread_mutex_unlock(&node->lock);
	if (!s)
		return kd_fail(ENOTCONN, "disconnect: %s is not connected",
			       peer);
	kd_link_close(s->link, -ECONNABORTED, "disconnected by this node");
	kd_session_put(s);
	return 0;
}

void kd_session_fill_stats(const struct kd_session *s,
			   const struct kd_link_stats *ls,
			   struct kdist_conn_stats *st)
{
	memset(st, 0, sizeof(*st));
	snprintf(st->peer, sizeof(st->peer), "%s", s->peer_name);
	st->initiator = s->initiator;
	snprintf(st->tls_version, sizeof(st->tls_version), "%s",
		 s->tls_version);
	snprintf(st->tls_cipher, sizeof(st->tls_cipher), "%s", s->tls_cipher);
	snprintf(st->record_path, sizeof(st->record_path), "%s",
		 s->record_path);
	snprintf(st->path_reason, sizeof(st->path_reason), "%s",
		 s->path_reason);
	st->peer_flags = s->flags;
	st->bytes_in = ls->bytes_in;
	st->bytes_out = ls->bytes_out;
	st->msgs_in = ls->msgs_in;
	st->msgs_out = ls->msgs_out;
	st->ticks_in = ls->ticks_in;
	st->ticks_out = ls->ticks_out;
	st->send_queue_bytes = ls->queued_bytes + kd_session_bulk_bytes(s);
	st->unknown_ctrl = atomic_load(&s->unknown_ctrl);
}

int kdist_node_stats(struct kdist_node *node,
		     void (*fn)(void *user, const struct kdist_conn_stats *st),
		     void *user)
{
	struct kdist_conn_stats *all = NULL;
	size_t n = 0, cap = 0;

	pthread_mutex_lock(&node->lock);
	/* Without its loop a stopping node has no links left to read. */
	for (int b = 0; node->loop && b < KD_PEER_BUCKETS; b++) {
		for (struct kd_peer *p = node->peers[b]; p; p = p->next) {
			struct kd_session *s = p->session;
			struct kdist_conn_stats *st;
			struct kd_link_stats ls;

			if (p->state != KD_PEER_UP || !s)
				continue;
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 16;
				void *na = realloc(all, ncap * sizeof(*all));

				if (!na)
					break;
				all = na;
				cap = ncap;
			}
			st = &all[n++];
			kd_link_get_stats(s->link, &ls);
			kd_session_fill_stats(s, &ls, st);
		}
	}
	pthread_mutex_unlock(&node->lock);
	for (size_t i = 0; i < n; i++)
		fn(user, &all[i]);
	free(all);
	return (int)n;
}

int kdist_register_verify_fun(const char *mfa, kdist_verify_fn fn,
			      void *user)
{
	return kd_verify_fun_register(mfa, fn, user);
}
