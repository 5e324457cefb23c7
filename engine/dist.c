// SPDX-License-Identifier: Apache-2.0
/*
 * The connected phase: what a data thread does with each distribution
 * packet of a session. Messages go to mailboxes; links, monitors and
 * exits are kept the way OTP expects of a process that traps exits:
 * an exit signal to a mailbox arrives as the message
 * {'EXIT', From, Reason}.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "node_int.h"

/* The payload of @c as external term format with its version byte. The
 * distribution header form has no 131 before the message; the byte in
 * front of it belongs to the control term, already decoded, so it is
 * overwritten in place rather than copying the message. */
static const uint8_t *ctrl_payload(struct kd_ctrl *c, size_t *len)
{
	uint8_t *p;

	if (c->msg) {
		*len = c->msg_len;
		return c->msg;
	}
	if (!c->msg_term)
		return NULL;
	p = (uint8_t *)c->msg_term - 1;
	*p = 131;
	*len = c->msg_term_len + 1;
	return p;
}

static void deliver(struct kdist_mailbox *m, const erlang_pid *from,
		    const void *payload, size_t len)
{
	struct kdist_pid pub;

	if (!m->fn || !kd_mailbox_enter(m))
		return;
	if (from)
		kd_pid_to_public(from, &pub);
	m->fn(m->user, m, from ? &pub : NULL, payload, len);
	kd_mailbox_leave(m);
}

/*
 * Sends a protocol reply (UNLINK_ID_ACK, SPAWN_REPLY, an exit for a
 * missing process). Replies may pass the send queue limit, because
 * dropping one breaks the protocol, but a peer that keeps asking without
 * reading has its connection closed once the queue contains twice the limit.
 */
static void session_reply(struct kd_session *s, ei_x_buff *x)
{
	struct kd_link_stats st;
	int err = kd_session_send(s, x, NULL, 0, 0);

	if (err == -EAGAIN) {
		kd_link_get_stats(s->link, &st);
		if (st.queued_bytes > 2 * s->node->cfg.send_queue_bytes) {
			char why[160];

			snprintf(why, sizeof(why),
				 "peer does not read its replies: %llu bytes "
				 "queued, twice the send queue limit",
				 (unsigned long long)st.queued_bytes);
			kd_link_close(s->link, -ENOBUFS, why);
			return;
		}
		err = kd_session_send(s, x, NULL, 0, KD_SEND_FORCE);
	}
	if (err)
		kd_debug("conn %s: reply not sent: %s", s->peer_name,
			 strerror(-err));
}

/* ERTS drops a connection whose peer names a sender on another node in
 * LINK, MONITOR_P or an exit signal; so does kdist. */
static bool sender_on_peer(struct kd_session *s, const struct kd_ctrl *c)
{
	char why[200];

	if (!c->has_from || strcmp(c->from.node, s->peer_name) == 0)
		return true;
	snprintf(why, sizeof(why),
		 "control message %d names sender %.100s, not on the peer's "
		 "node",
		 c->op, c->from.node);
	kd_link_close(s->link, -EPROTO, why);
	return false;
}

static bool pid_equal(const erlang_pid *a, const erlang_pid *b);
static void dist_unknown(struct kd_session *s, int op, const char *why);

/* Links and monitors one mailbox keeps; a peer past this is refused. */
#define KD_MAX_RELATIONS 65536

/* Records a link or monitor. A second link from the same process is the
 * same link, as in OTP, now held over the newer connection. Returns false
 * when the mailbox is full. */
static bool relation_add(struct kdist_mailbox *m, const struct kd_relation *r)
{
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; !r->monitor && i < m->n_rels; i++)
		if (!m->rels[i].monitor &&
		    pid_equal(&m->rels[i].remote, &r->remote)) {
			m->rels[i].session_id = r->session_id;
			pthread_mutex_unlock(&m->lock);
			return true;
		}
	if (m->n_rels >= KD_MAX_RELATIONS) {
		pthread_mutex_unlock(&m->lock);
		return false;
	}
	if (m->n_rels == m->cap_rels) {
		size_t cap = m->cap_rels ? m->cap_rels * 2 : 4;
		void *n = realloc(m->rels, cap * sizeof(*m->rels));

		if (!n) {
			pthread_mutex_unlock(&m->lock);
			kd_err("mailbox %u: out of memory recording a link",
			       m->epid.num);
			return false;
		}
		m->rels = n;
		m->cap_rels = cap;
	}
	m->rels[m->n_rels++] = *r;
	pthread_mutex_unlock(&m->lock);
	return true;
}

static bool pid_equal(const erlang_pid *a, const erlang_pid *b)
{
	return a->num == b->num && a->serial == b->serial &&
	       a->creation == b->creation && strcmp(a->node, b->node) == 0;
}

static bool ref_equal(const erlang_ref *a, const erlang_ref *b)
{
	return a->len == b->len && a->creation == b->creation &&
	       memcmp(a->n, b->n, (size_t)a->len * sizeof(a->n[0])) == 0 &&
	       strcmp(a->node, b->node) == 0;
}

/* Removes the link with @pid, or the monitor with @ref. */
static void relation_remove(struct kdist_mailbox *m, const erlang_pid *pid,
			    const erlang_ref *ref)
{
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_rels; i++) {
		struct kd_relation *r = &m->rels[i];
		bool hit = ref ? r->monitor && ref_equal(&r->ref, ref)
			       : !r->monitor && pid_equal(&r->remote, pid);

		if (hit) {
			m->rels[i] = m->rels[--m->n_rels];
			break;
		}
	}
	pthread_mutex_unlock(&m->lock);
}

static struct kdist_mailbox *ctrl_target(struct kd_session *s,
					 const struct kd_ctrl *c)
{
	if (c->has_to_pid)
		return kd_mailbox_find_pid(s->node, &c->to);
	if (c->to_name[0])
		return kd_mailbox_find_name(s->node, c->to_name);
	return NULL;
}

static void dist_send(struct kd_session *s, struct kd_ctrl *c)
{
	struct kdist_mailbox *m = ctrl_target(s, c);
	const uint8_t *payload;
	size_t len;

	if (!m)
		return; /* as in OTP: a message to no one is dropped */
	payload = ctrl_payload(c, &len);
	if (payload)
		deliver(m, c->has_from ? &c->from : NULL, payload, len);
	kd_mailbox_put(m);
}

static void dist_link(struct kd_session *s, struct kd_ctrl *c)
{
	struct kdist_mailbox *m = kd_mailbox_find_pid(s->node, &c->to);
	struct kd_relation r = { .remote = c->from, .session_id = s->id };
	ei_x_buff x;

	if (m && relation_add(m, &r)) {
		kd_mailbox_put(m);
		return;
	}
	if (m) {
		dist_unknown(s, c->op, "too many links on one mailbox; "
				       "answered with an exit");
		kd_mailbox_put(m);
	}
	if (ei_x_new(&x) != 0)
		return;
	if (kd_ctrl_encode_exit(&x, &c->to, &c->from, "noproc") == 0)
		session_reply(s, &x);
	ei_x_free(&x);
}

static void dist_unlink_id(struct kd_session *s, struct kd_ctrl *c)
{
	struct kdist_mailbox *m = kd_mailbox_find_pid(s->node, &c->to);
	ei_x_buff x;

	if (m) {
		relation_remove(m, &c->from, NULL);
		kd_mailbox_put(m);
	}
	/* Acknowledged at once, before any other signal to that sender. */
	if (ei_x_new(&x) != 0)
		return;
	if (kd_ctrl_encode_unlink_id_ack(&x, c->unlink_id, &c->to, &c->from) ==
	    0)
		session_reply(s, &x);
	ei_x_free(&x);
}

/* The old unlink, which OTP 26 and later no longer send. */
static void dist_unlink(struct kd_session *s, struct kd_ctrl *c)
{
	struct kdist_mailbox *m = kd_mailbox_find_pid(s->node, &c->to);

	if (!m)
		return;
	relation_remove(m, &c->from, NULL);
	kd_mailbox_put(m);
}

/* Delivers an exit signal from @from as the message {'EXIT', From,
 * Reason}. @reason is an encoded term without version byte, or NULL for
 * the atom @atom. */
static void deliver_exit(struct kdist_mailbox *m, const erlang_pid *from,
			 const uint8_t *reason, size_t reason_len,
			 const char *atom)
{
	ei_x_buff x;

	if (ei_x_new_with_version(&x) != 0)
		return;
	ei_x_encode_tuple_header(&x, 3);
	ei_x_encode_atom(&x, "EXIT");
	ei_x_encode_pid(&x, from);
	if (reason)
		ei_x_append_buf(&x, (const char *)reason, (int)reason_len);
	else
		ei_x_encode_atom(&x, atom);
	deliver(m, from, x.buff, (size_t)x.index);
	ei_x_free(&x);
}

static void dist_exit(struct kd_session *s, struct kd_ctrl *c, bool linked)
{
	struct kdist_mailbox *m = kd_mailbox_find_pid(s->node, &c->to);
	const uint8_t *reason = c->reason;
	size_t reason_len = c->reason_len;

	if (!m)
		return;
	if (linked)
		relation_remove(m, &c->from, NULL);
	if (!reason) {
		reason = c->msg_term;
		reason_len = c->msg_term_len;
	}
	deliver_exit(m, &c->from, reason, reason_len, "normal");
	kd_mailbox_put(m);
}

static void dist_monitor(struct kd_session *s, struct kd_ctrl *c)
{
	struct kdist_mailbox *m = ctrl_target(s, c);
	struct kd_relation r = {
		.remote = c->from,
		.monitor = true,
		.by_name = !c->has_to_pid,
		.ref = c->ref,
		.session_id = s->id,
	};
	ei_x_buff x;

	if (m && relation_add(m, &r)) {
		kd_mailbox_put(m);
		return;
	}
	if (m) {
		dist_unknown(s, c->op, "too many monitors on one mailbox; "
				       "answered with noproc");
		kd_mailbox_put(m);
	}
	/* No such process: the monitor fires at once with noproc. */
	if (ei_x_new(&x) != 0)
		return;
	if (kd_ctrl_encode_monitor_p_exit(&x, c->has_to_pid ? &c->to : NULL,
					  c->has_to_pid ? NULL : c->to_name,
					  &c->from, &c->ref, "noproc") == 0)
		session_reply(s, &x);
	ei_x_free(&x);
}

static void dist_demonitor(struct kd_session *s, struct kd_ctrl *c)
{
	struct kdist_mailbox *m = ctrl_target(s, c);

	if (!m)
		return;
	relation_remove(m, NULL, &c->ref);
	kd_mailbox_put(m);
}

static void dist_spawn_request(struct kd_session *s, struct kd_ctrl *c)
{
	ei_x_buff x;

	if (ei_x_new(&x) != 0)
		return;
	if (kd_ctrl_encode_spawn_reply_error(&x, &c->ref, &c->from,
					     "notsup") == 0)
		session_reply(s, &x);
	ei_x_free(&x);
}

static void dist_unknown(struct kd_session *s, int op, const char *why)
{
	atomic_fetch_add(&s->unknown_ctrl, 1);
	if (!atomic_exchange(&s->unknown_logged, true))
		kd_warn("conn %s: control message %d not handled (%s); "
			"counting further ones without logging",
			s->peer_name, op, why);
}

static void dist_dispatch(struct kd_session *s, struct kd_ctrl *c)
{
	switch (c->op) {
	case KD_DOP_LINK:
	case KD_DOP_UNLINK:
	case KD_DOP_UNLINK_ID:
	case KD_DOP_EXIT:
	case KD_DOP_PAYLOAD_EXIT:
	case KD_DOP_EXIT2:
	case KD_DOP_PAYLOAD_EXIT2:
	case KD_DOP_MONITOR_P:
	case KD_DOP_DEMONITOR_P:
		if (!sender_on_peer(s, c))
			return;
		break;
	default:
		break;
	}
	switch (c->op) {
	case KD_DOP_SEND:
	case KD_DOP_SEND_SENDER:
	case KD_DOP_REG_SEND:
		dist_send(s, c);
		break;
	case KD_DOP_LINK:
		dist_link(s, c);
		break;
	case KD_DOP_UNLINK:
		dist_unlink(s, c);
		break;
	case KD_DOP_UNLINK_ID:
		dist_unlink_id(s, c);
		break;
	case KD_DOP_EXIT:
	case KD_DOP_PAYLOAD_EXIT:
		dist_exit(s, c, true);
		break;
	case KD_DOP_EXIT2:
	case KD_DOP_PAYLOAD_EXIT2:
		dist_exit(s, c, false);
		break;
	case KD_DOP_MONITOR_P:
		dist_monitor(s, c);
		break;
	case KD_DOP_DEMONITOR_P:
		dist_demonitor(s, c);
		break;
	case KD_DOP_SPAWN_REQUEST:
		dist_spawn_request(s, c);
		break;
	case KD_DOP_GROUP_LEADER:
	case KD_DOP_UNLINK_ID_ACK:
	case KD_DOP_MONITOR_P_EXIT:
	case KD_DOP_PAYLOAD_MONITOR_P_EXIT:
	case KD_DOP_SPAWN_REPLY:
		/* kdist sets up no links, monitors or spawns of its own. */
		break;
	default:
		dist_unknown(s, c->op, "not expected from a peer");
		break;
	}
}

static void session_packet(void *user, struct kd_link *link,
			   const uint8_t *data, size_t len)
{
	struct kd_session *s = user;
	uint8_t *whole = NULL;
	size_t whole_len;
	struct kd_ctrl c;
	char err[200];
	int r;

	if (len >= 2 && data[0] == 131 && (data[1] == 69 || data[1] == 70)) {
		r = kd_frag_input(s->frags, data, len, &whole, &whole_len, err,
				  sizeof(err));
		if (r == 0 && kd_frag_pending_bytes(s->frags) >
				      s->node->cfg.max_message) {
			snprintf(err, sizeof(err),
				 "unfinished fragmented messages hold %zu bytes, "
				 "more than max_message %llu; raise "
				 "-max_message if the peer is legitimate",
				 kd_frag_pending_bytes(s->frags),
				 (unsigned long long)s->node->cfg.max_message);
			r = -EMSGSIZE;
		}
		if (r <= 0) {
			if (r < 0)
				kd_link_close(link, r, err);
			return;
		}
		data = whole;
		len = whole_len;
	}
	r = kd_ctrl_decode(data, len, &c, err, sizeof(err));
	if (r == -EOPNOTSUPP)
		dist_unknown(s, c.op, err);
	else if (r < 0)
		kd_link_close(link, -EPROTO, err);
	else
		dist_dispatch(s, &c);
	free(whole);
}

/*
 * Removes from @m the links and monitors that came over session @id and
 * returns the linked pids in *@links, for their noconnection exits.
 * Monitors go silently: the monitoring processes are on the lost node.
 */
static size_t relations_take_session(struct kdist_mailbox *m, uint64_t id,
				     const char *peer, erlang_pid **links)
{
	size_t n = 0, kept = 0, lost = 0;
	erlang_pid *out = NULL;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_rels; i++)
		if (m->rels[i].session_id == id && !m->rels[i].monitor)
			n++;
	if (n > 0) {
		out = malloc(n * sizeof(*out));
		if (!out)
			lost = n;
	}
	n = 0;
	for (size_t i = 0; i < m->n_rels; i++) {
		const struct kd_relation *r = &m->rels[i];

		if (r->session_id != id)
			m->rels[kept++] = *r;
		else if (!r->monitor && out)
			out[n++] = r->remote;
	}
	m->n_rels = kept;
	pthread_mutex_unlock(&m->lock);
	if (lost > 0)
		kd_err("conn %s: out of memory: %zu noconnection exits to "
		       "mailbox %u not delivered",
		       peer, lost, m->epid.num);
	*links = out;
	return n;
}

/* From @m on, the first open mailbox with relations over session @id:
 * takes them and a reference to the mailbox. node->lock held. */
static struct kdist_mailbox *mailbox_next_broken(struct kdist_mailbox *m,
						 const struct kd_session *s,
						 erlang_pid **links, size_t *n)
{
	for (; m; m = m->next) {
		if (m->closed)
			continue;
		*n = relations_take_session(m, s->id, s->peer_name, links);
		if (*n > 0) {
			atomic_fetch_add(&m->refs, 1);
			return m;
		}
	}
	return NULL;
}

/*
 * Reports the links that the end of @s breaks. Each mailbox gets
 * {'EXIT', Pid, noconnection} once per process linked to it over @s, as a
 * process that traps exits does in OTP. Runs after the session's last
 * packet, so no link over it can be added later.
 */
static void session_links_down(struct kd_session *s)
{
	struct kdist_node *node = s->node;
	struct kdist_mailbox *m, *next;
	erlang_pid *links = NULL;
	size_t n = 0, total = 0;

	pthread_mutex_lock(&node->lock);
	m = mailbox_next_broken(node->mailboxes, s, &links, &n);
	pthread_mutex_unlock(&node->lock);
	while (m) {
		for (size_t i = 0; i < n; i++)
			deliver_exit(m, &links[i], NULL, 0, "noconnection");
		total += n;
		free(links);
		/* The reference keeps @m on the list, so m->next is valid. */
		pthread_mutex_lock(&node->lock);
		next = mailbox_next_broken(m->next, s, &links, &n);
		pthread_mutex_unlock(&node->lock);
		kd_mailbox_put(m);
		m = next;
	}
	if (total > 0)
		kd_info("conn %s: %zu links to local mailboxes broken, each "
			"reported as an exit with reason noconnection",
			s->peer_name, total);
}

static void session_closed(void *user, struct kd_link *link, int err,
			   const char *reason)
{
	struct kd_session *s = user;
	struct kd_cmd *cmd;

	session_links_down(s);
	cmd = calloc(1, sizeof(*cmd));
	s->close_err = err;
	kd_link_get_stats(link, &s->final_stats);
	snprintf(s->close_reason, sizeof(s->close_reason), "%s",
		 reason ? reason : "closed");
	if (!cmd) {
		kd_err("conn %s: out of memory reporting nodedown",
		       s->peer_name);
		return;
	}
	cmd->type = KD_CMD_LINK_CLOSED;
	cmd->session = s;
	kd_post_cmd(s->node, cmd);
}

/*
 * Feeds the link, whose queue is below half its limit again, with
 * fragments of large messages. Then the user's writable callback runs
 * once per -EAGAIN episode, unless the queue of large messages still
 * rejects sends. In that case feeding has filled the link, so this runs
 * again when the link drains.
 */
static void session_writable(void *user, struct kd_link *link)
{
	struct kd_session *s = user;
	struct kdist_node *node = s->node;
	kdist_writable_fn fn;
	void *fn_user;

	kd_session_feed(s);
	if (!atomic_load(&s->user_blocked) || kd_session_bulk_full(s) ||
	    !atomic_exchange(&s->user_blocked, false) ||
	    atomic_load(&node->draining))
		return;
	pthread_mutex_lock(&node->lock);
	fn = node->writable_fn;
	fn_user = node->writable_user;
	pthread_mutex_unlock(&node->lock);
	if (fn)
		fn(fn_user, s->peer_name);
}

const struct kd_link_callbacks kd_session_callbacks = {
	.packet = session_packet,
	.closed = session_closed,
	.writable = session_writable,
};

void kd_session_hold(struct kd_session *s)
{
	atomic_fetch_add(&s->refs, 1);
}

/* Frees the session with its last reference. */
void kd_session_put(struct kd_session *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	kd_session_bulk_free(s);
	pthread_mutex_destroy(&s->bulk_lock);
	kd_frag_table_free(s->frags);
	kd_link_release(s->link);
	free(s);
}

/* ---- net_kernel: replies to net_adm:ping/1 ---- */

/* Handles {'$gen_call', {From, Tag}, {is_auth, Node}} with {Tag, yes}. */
static void net_kernel_receive(void *user, struct kdist_mailbox *mbox,
			       const struct kdist_pid *sender,
			       const void *payload, size_t len)
{
	const char *buf = payload;
	char atom[MAXATOMLEN_UTF8];
	int idx = 0, arity, version, tag_start, tag_end;
	erlang_pid from;
	struct kdist_pid to;
	ei_x_buff x;

	if (ei_decode_version(buf, &idx, &version) ||
	    ei_decode_tuple_header(buf, &idx, &arity) || arity != 3 ||
	    ei_decode_atom(buf, &idx, atom) || strcmp(atom, "$gen_call") ||
	    ei_decode_tuple_header(buf, &idx, &arity) || arity != 2 ||
	    ei_decode_pid(buf, &idx, &from))
		return;
	tag_start = idx;
	if (ei_skip_term(buf, &idx))
		return;
	tag_end = idx;
	if (ei_decode_tuple_header(buf, &idx, &arity) || arity != 2 ||
	    ei_decode_atom(buf, &idx, atom) || strcmp(atom, "is_auth"))
		return;
	if ((size_t)tag_end > len)
		return;

	if (ei_x_new_with_version(&x) != 0)
		return;
	ei_x_encode_tuple_header(&x, 2);
	ei_x_append_buf(&x, buf + tag_start, tag_end - tag_start);
	ei_x_encode_atom(&x, "yes");
	kd_pid_to_public(&from, &to);
	kdist_send_pid(mbox, &to, x.buff, (size_t)x.index);
	ei_x_free(&x);
}

int kd_net_kernel_open(struct kdist_node *node)
{
	return kdist_mailbox_open(node, "net_kernel", net_kernel_receive, node,
				  &node->net_kernel);
}
