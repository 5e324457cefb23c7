// SPDX-License-Identifier: Apache-2.0
/*
 * Sending: the packet forms, queuing while a connection is set up, and
 * fragments for large messages.
 *
 * Once a peer accepts DFLAG_FRAGMENTS, a message whose term exceeds
 * KD_FRAG_SIZE goes out as 64 KiB fragments fed to the link a few at a
 * time (the "bulk" queue of the session), so ticks and other processes'
 * messages interleave with it instead of waiting behind it. Messages of a
 * sender that has a bulk message in progress queue behind it, because
 * Erlang keeps the order of messages between a pair of processes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "node_int.h"

/* A message waiting in a session's bulk queue: fragments of a large one,
 * or a whole small one that must not overtake its sender's large one. */
struct kd_bulk {
	struct kd_bulk *next;
	const void *sender;
	struct kd_frag_hdr *frags; /* NULL: send as one packet */
	size_t nfrags, next_frag;
	size_t ctrl_len, msg_len; /* terms without version bytes */
	uint8_t data[];		  /* control term, then message term */
};

static const uint8_t dist_header[3] = { 131, 68, 0 };

static int link_send_header_form(struct kd_session *s, const uint8_t *ctrl,
				 size_t ctrl_len, const uint8_t *msg,
				 size_t msg_len, unsigned flags)
{
	struct iovec iov[3] = {
		{ (void *)dist_header, sizeof(dist_header) },
		{ (void *)ctrl, ctrl_len },
		{ (void *)msg, msg_len },
	};

	return kd_link_send(s->link, iov, msg_len ? 3 : 2, flags);
}

/* Sends the next piece of @b: one fragment, or the whole packet. */
static int bulk_send_next(struct kd_session *s, struct kd_bulk *b)
{
	const uint8_t *ctrl = b->data, *msg = b->data + b->ctrl_len;
	struct kd_frag_hdr *f;
	struct iovec iov[3];
	unsigned n = 0;
	int err;

	if (!b->frags) {
		err = link_send_header_form(s, ctrl, b->ctrl_len, msg,
					    b->msg_len, 0);
		if (!err)
			b->next_frag = b->nfrags;
		return err;
	}
	f = &b->frags[b->next_frag];
	iov[n++] = (struct iovec){ f->bytes, f->len };
	if (f->with_ctrl)
		iov[n++] = (struct iovec){ (void *)ctrl, b->ctrl_len };
	if (f->msg_len)
		iov[n++] = (struct iovec){ (void *)(msg + f->msg_off),
					   f->msg_len };
	err = kd_link_send(s->link, iov, n, KD_SEND_SOFT);
	if (!err)
		b->next_frag++;
	return err;
}

static void bulk_free(struct kd_bulk *b)
{
	free(b->frags);
	free(b);
}

/*
 * Feeds bulk messages to the link until its queue is full, which makes
 * the link call its writable callback once it drains. Called after each
 * new bulk message and from that callback.
 */
void kd_session_feed(struct kd_session *s)
{
	size_t dropped = 0;
	int drop_err = 0;

	pthread_mutex_lock(&s->bulk_lock);
	while (s->bulk_head) {
		struct kd_bulk *b = s->bulk_head;
		int err = bulk_send_next(s, b);

		if (err == -EAGAIN)
			break;
		if (err) {
			dropped++;
			drop_err = err;
			b->next_frag = b->nfrags;
		}
		if (b->next_frag < b->nfrags)
			continue;
		s->bulk_head = b->next;
		if (!s->bulk_head) {
			s->bulk_tail = NULL;
			atomic_store(&s->bulk_queued, false);
		}
		s->bulk_bytes -= b->ctrl_len + b->msg_len;
		bulk_free(b);
	}
	pthread_mutex_unlock(&s->bulk_lock);
	if (dropped > 0)
		kd_warn("conn %s: %zu large messages were not sent: %s",
			s->peer_name, dropped, strerror(-drop_err));
}

/* True while the bulk queue turns senders away; bulk_lock held. */
static bool bulk_over_limit(const struct kd_session *s)
{
	return s->bulk_head && s->bulk_bytes > s->node->cfg.send_queue_bytes;
}

bool kd_session_bulk_full(struct kd_session *s)
{
	bool full;

	pthread_mutex_lock(&s->bulk_lock);
	full = bulk_over_limit(s);
	pthread_mutex_unlock(&s->bulk_lock);
	return full;
}

/* Large messages still waiting in the bulk queues of connected peers. */
size_t kd_node_bulk_pending(struct kdist_node *node)
{
	size_t n = 0;

	pthread_mutex_lock(&node->lock);
	for (int i = 0; i < KD_PEER_BUCKETS; i++) {
		for (struct kd_peer *p = node->peers[i]; p; p = p->next) {
			struct kd_session *s = p->session;

			if (p->state != KD_PEER_UP || !s)
				continue;
			pthread_mutex_lock(&s->bulk_lock);
			for (struct kd_bulk *b = s->bulk_head; b; b = b->next)
				n++;
			pthread_mutex_unlock(&s->bulk_lock);
		}
	}
	pthread_mutex_unlock(&node->lock);
	return n;
}

/* Bytes of large messages still to be fed to the link; the lock is the
 * only part of @s this changes. */
size_t kd_session_bulk_bytes(const struct kd_session *s)
{
	pthread_mutex_t *lock = (pthread_mutex_t *)&s->bulk_lock;
	size_t n;

	pthread_mutex_lock(lock);
	n = s->bulk_bytes;
	pthread_mutex_unlock(lock);
	return n;
}

static bool bulk_has_sender(const struct kd_session *s, const void *sender)
{
	for (const struct kd_bulk *b = s->bulk_head; b; b = b->next)
		if (b->sender == sender)
			return true;
	return false;
}

/* Appends a copy of the message; bulk_lock held. */
static int bulk_append(struct kd_session *s, const void *sender,
		       const uint8_t *ctrl, size_t ctrl_len,
		       const uint8_t *msg, size_t msg_len, bool fragment)
{
	struct kd_bulk *b = malloc(sizeof(*b) + ctrl_len + msg_len);

	if (!b)
		return -ENOMEM;
	memset(b, 0, sizeof(*b));
	b->sender = sender;
	b->ctrl_len = ctrl_len;
	b->msg_len = msg_len;
	memcpy(b->data, ctrl, ctrl_len);
	memcpy(b->data + ctrl_len, msg, msg_len);
	b->nfrags = 1;
	if (fragment) {
		b->nfrags = kd_frag_count(ctrl_len, msg_len, KD_FRAG_SIZE);
		b->frags = calloc(b->nfrags, sizeof(*b->frags));
		if (!b->frags ||
		    kd_frag_encode_headers(b->frags, b->nfrags,
					   ++s->frag_seq, ctrl_len, msg_len,
					   KD_FRAG_SIZE) != 0) {
			bulk_free(b);
			return -ENOMEM;
		}
	}
	if (s->bulk_tail)
		s->bulk_tail->next = b;
	else
		s->bulk_head = b;
	s->bulk_tail = b;
	atomic_store(&s->bulk_queued, true);
	s->bulk_bytes += ctrl_len + msg_len;
	return 0;
}

/*
 * Without DFLAG_FRAGMENTS (and without the atom cache, which kdist never
 * offers) a packet is the pass-through form "p 131 Ctrl [131 Msg]". Once a
 * peer accepts fragments, ERTS expects the distribution header form
 * "131 68 0 Ctrl [Msg]": no atom cache references and no version bytes in
 * front of the terms. Both come from the same encoder output by skipping
 * bytes, so a small message is copied only into the link's queue.
 */
int kd_session_send_raw(struct kd_session *s, const void *sender,
			const uint8_t *ctrl, size_t ctrl_len,
			const uint8_t *msg, size_t msg_len, unsigned flags)
{
	struct iovec iov[2] = { { (void *)ctrl, ctrl_len },
				{ (void *)msg, msg_len } };
	bool big;
	int err;

	if (!(s->flags & DFLAG_FRAGMENTS))
		return kd_link_send(s->link, iov, msg ? 2 : 1, flags);

	/* Skip "p 131" of the control and 131 of the message. */
	ctrl += 2;
	ctrl_len -= 2;
	if (msg) {
		msg++;
		msg_len--;
	} else {
		msg_len = 0;
	}
	big = msg_len > KD_FRAG_SIZE;
	/* A sender with a large message queued finds bulk_queued set, since
	 * it appended that message itself. */
	if (!big && !(sender && atomic_load(&s->bulk_queued)))
		return link_send_header_form(s, ctrl, ctrl_len, msg, msg_len,
					     flags);

	pthread_mutex_lock(&s->bulk_lock);
	if (!big && !bulk_has_sender(s, sender)) {
		pthread_mutex_unlock(&s->bulk_lock);
		return link_send_header_form(s, ctrl, ctrl_len, msg, msg_len,
					     flags);
	}
	if (!(flags & KD_SEND_FORCE) && bulk_over_limit(s)) {
		pthread_mutex_unlock(&s->bulk_lock);
		return kd_fail(EAGAIN,
			       "send: queue to %s is full (%zu bytes of large "
			       "messages waiting); send again after the "
			       "writable callback",
			       s->peer_name, s->bulk_bytes);
	}
	err = bulk_append(s, sender, ctrl, ctrl_len, msg, msg_len, big);
	pthread_mutex_unlock(&s->bulk_lock);
	if (err)
		return err;
	kd_session_feed(s);
	return 0;
}

int kd_session_send(struct kd_session *s, const ei_x_buff *ctrl,
		    const void *msg, size_t len, unsigned flags)
{
	return kd_session_send_raw(s, NULL, (const uint8_t *)ctrl->buff,
				   (size_t)ctrl->index, msg, len, flags);
}

void kd_session_bulk_free(struct kd_session *s)
{
	size_t n = 0;

	while (s->bulk_head) {
		struct kd_bulk *b = s->bulk_head;

		s->bulk_head = b->next;
		bulk_free(b);
		n++;
	}
	if (n > 0)
		kd_warn("conn %s: %zu large messages were not sent: the connection closed first",
			s->peer_name, n);
	s->bulk_tail = NULL;
	atomic_store(&s->bulk_queued, false);
	s->bulk_bytes = 0;
}

static int peer_queue(struct kd_peer *p, size_t limit, const void *sender,
		      const ei_x_buff *ctrl, const void *msg, size_t len)
{
	size_t total = (size_t)ctrl->index + len;
	struct kd_pending_msg *m;

	if (p->q_bytes && p->q_bytes + total > limit)
		return -EAGAIN;
	m = malloc(sizeof(*m) + total);
	if (!m)
		return -ENOMEM;
	m->next = NULL;
	m->sender = sender;
	m->ctrl_len = (size_t)ctrl->index;
	m->msg_len = msg ? len : 0;
	memcpy(m->data, ctrl->buff, (size_t)ctrl->index);
	if (len)
		memcpy(m->data + ctrl->index, msg, len);
	if (p->q_tail)
		p->q_tail->next = m;
	else
		p->q_head = m;
	p->q_tail = m;
	p->q_bytes += total;
	return 0;
}

/*
 * A sender got -EAGAIN from @s: the writable callback follows once the
 * session takes sends again (session_writable() in dist.c), or once its
 * link has closed (control_link_closed() in conn.c). Returns -EAGAIN, or
 * -ENOTCONN when the link is already closing and no callback will come.
 */
static int session_owe_writable(struct kd_session *s)
{
	atomic_store(&s->user_blocked, true);
	if (kd_link_want_writable(s->link))
		return -EAGAIN;
	/* The closed link's handler may have taken the flag meanwhile,
	 * and then it makes the call. */
	return atomic_exchange(&s->user_blocked, false) ? -ENOTCONN : -EAGAIN;
}

int kd_node_send_packet(struct kdist_node *node, const void *sender,
			const char *peer, const ei_x_buff *ctrl,
			const void *msg, size_t len, unsigned flags)
{
	struct kd_session *s = NULL;
	struct kd_peer *p;
	struct kd_cmd *cmd;
	int err;

	if (atomic_load(&node->draining))
		return kd_fail(ESHUTDOWN,
			       "send: node %s is stopping; the message to %s "
			       "was not sent",
			       node->name, peer);
	if (strcmp(peer, node->name) == 0)
		return kd_fail(EINVAL, "send: local delivery to %s is not "
				       "supported; call the receive function "
				       "directly", peer);
	if (!strchr(peer, '@'))
		return kd_fail(EINVAL,
			       "send: invalid node name '%s' (expected "
			       "name@host)",
			       peer);
	pthread_mutex_lock(&node->lock);
	p = kd_peer_get(node, peer, true);
	if (!p) {
		pthread_mutex_unlock(&node->lock);
		return -ENOMEM;
	}
	if (p->state == KD_PEER_UP) {
		s = p->session;
		kd_session_hold(s);
		pthread_mutex_unlock(&node->lock);
		err = kd_session_send_raw(s, sender, (const uint8_t *)ctrl->buff,
					  (size_t)ctrl->index, msg, len, flags);
		if (err == -EAGAIN)
			err = session_owe_writable(s);
		kd_session_put(s);
		if (err == -EAGAIN)
			kd_fail(EAGAIN,
				"send: queue to %s is full; send again after "
				"the writable callback",
				peer);
		else if (err == -ENOTCONN)
			kd_fail(ENOTCONN,
				"send: the connection to %s is closing; the "
				"message was not sent",
				peer);
		else if (err == -ESHUTDOWN)
			kd_fail(ESHUTDOWN,
				"send: node %s is stopping; the message to %s "
				"was not sent",
				node->name, peer);
		return err;
	}
	if (!node->running) {
		pthread_mutex_unlock(&node->lock);
		return kd_fail(ENOTCONN, "send: node %s is stopped",
			       node->name);
	}
	err = peer_queue(p, node->cfg.send_queue_bytes, sender, ctrl, msg,
			 len);
	if (err == -EAGAIN)
		p->q_blocked = true;
	if (err == -EAGAIN)
		kd_fail(EAGAIN,
			"send: %zu bytes already wait for the connection to %s; "
			"send again after the writable callback",
			p->q_bytes, peer);
	if (err || p->state == KD_PEER_CONNECTING) {
		pthread_mutex_unlock(&node->lock);
		return err;
	}
	p->state = KD_PEER_CONNECTING;
	pthread_mutex_unlock(&node->lock);

	cmd = calloc(1, sizeof(*cmd));
	if (!cmd)
		return -ENOMEM;
	cmd->type = KD_CMD_CONNECT;
	snprintf(cmd->peer, sizeof(cmd->peer), "%s", peer);
	kd_post_cmd(node, cmd);
	return 0;
}

static pthread_key_t ctrl_buffer_key;
static pthread_once_t ctrl_buffer_once = PTHREAD_ONCE_INIT;

static void ctrl_buffer_free(void *arg)
{
	ei_x_buff *x = arg;

	ei_x_free(x);
	free(x);
}

static void ctrl_buffer_key_init(void)
{
	if (pthread_key_create(&ctrl_buffer_key, ctrl_buffer_free) != 0)
		abort();
}

/*
 * A per-thread buffer for control messages, so sending allocates nothing
 * once the buffer has grown to fit. The key's destructor frees it when
 * the thread exits, so user threads that come and go leak nothing.
 */
static ei_x_buff *ctrl_buffer(void)
{
	ei_x_buff *x;

	pthread_once(&ctrl_buffer_once, ctrl_buffer_key_init);
	x = pthread_getspecific(ctrl_buffer_key);
	if (!x) {
		x = calloc(1, sizeof(*x));
		if (!x)
			return NULL;
		if (ei_x_new(x) != 0) {
			free(x);
			return NULL;
		}
		if (pthread_setspecific(ctrl_buffer_key, x) != 0) {
			ctrl_buffer_free(x);
			return NULL;
		}
	}
	x->index = 0;
	return x;
}

static int check_payload(const void *payload, size_t len)
{
	if (!payload || len < 2 || ((const uint8_t *)payload)[0] != 131)
		return kd_fail(EINVAL, "send: payload must be external term "
				       "format starting with version byte "
				       "131");
	return 0;
}

int kdist_send_pid(struct kdist_mailbox *from, const struct kdist_pid *to,
		   const void *payload, size_t len)
{
	ei_x_buff *x = ctrl_buffer();
	erlang_pid epid;
	int err;

	err = check_payload(payload, len);
	if (err)
		return err;
	if (!x)
		return -ENOMEM;
	kd_pid_from_public(to, &epid);
	err = kd_ctrl_encode_send_sender(x, &from->epid, &epid);
	if (err)
		return err;
	return kd_node_send_packet(from->node, from, to->node, x, payload,
				   len, 0);
}

int kdist_send_name(struct kdist_mailbox *from, const char *node,
		    const char *name, const void *payload, size_t len)
{
	ei_x_buff *x = ctrl_buffer();
	int err;

	err = check_payload(payload, len);
	if (err)
		return err;
	if (!name || !*name || strlen(name) > KDIST_MAX_ATOM)
		return kd_fail(EINVAL, "send: invalid registered name");
	if (!x)
		return -ENOMEM;
	err = kd_ctrl_encode_reg_send(x, &from->epid, name);
	if (err)
		return err;
	return kd_node_send_packet(from->node, from, node, x, payload, len,
				   0);
}
