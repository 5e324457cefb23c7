// SPDX-License-Identifier: Apache-2.0
/*
 * The distribution handshake in both roles. A real peer state machine
 * drives the one under test to any state, and the input decides, message
 * by message, whether the peer's real output is delivered, delivered with
 * a byte changed, cut short, or replaced by bytes from the input.
 *
 * Input: Setup (1 byte), then commands of Cmd (1 byte) and arguments.
 * Setup bit 0 picks the role under test (0 initiator, 1 acceptor) and
 * bits 1-3 the status the acceptor's check_peer() returns. Cmd modulo 4:
 *   0  deliver the peer's next message unchanged
 *   1  Pos (1 byte), Xor (1 byte): deliver it with byte Pos ^= Xor
 *   2  Len (1 byte): deliver its first Len bytes
 *   3  Len (1 byte) and Len bytes: deliver those bytes instead
 * Whatever the machine under test queues goes to the peer unchanged.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "handshake.h"

#define HS_FUZZ_INITIATOR "fuzz_ini@localhost"
#define HS_FUZZ_ACCEPTOR "fuzz_acc@localhost"
#define HS_FUZZ_COOKIE "FUZZCOOKIE"
#define HS_FUZZ_MAX_MSG 1024

static const enum kd_hs_status hs_statuses[8] = {
	KD_HS_STATUS_OK,	    KD_HS_STATUS_OK,
	KD_HS_STATUS_OK_SIMULTANEOUS, KD_HS_STATUS_NOK,
	KD_HS_STATUS_NOT_ALLOWED,   KD_HS_STATUS_ALIVE,
	KD_HS_STATUS_ALIVE,	    KD_HS_STATUS_OK,
};

static enum kd_hs_status hs_status;

static enum kd_hs_status hs_check_peer(void *user, const char *peer,
				       uint64_t flags)
{
	return hs_status;
}

static void hs_alive_answer(void *user, const char *peer, bool keep_new)
{
}

static void hs_params(struct kd_hs_params *p, enum kd_hs_role role)
{
	memset(p, 0, sizeof(*p));
	p->role = role;
	p->creation = role == KD_HS_INITIATOR ? 7 : 9;
	p->flags = KD_DFLAGS_MANDATORY | DFLAG_PUBLISHED | DFLAG_FRAGMENTS |
		   DFLAG_SPAWN | DFLAG_ALIAS | DFLAG_HANDSHAKE_23;
	p->cookie = HS_FUZZ_COOKIE;
	if (role == KD_HS_INITIATOR) {
		p->this_node = HS_FUZZ_INITIATOR;
		p->peer_node = HS_FUZZ_ACCEPTOR;
	} else {
		p->this_node = HS_FUZZ_ACCEPTOR;
		p->check_peer = hs_check_peer;
		p->alive_answer = hs_alive_answer;
	}
}

/* Messages queued by one machine and not yet delivered. */
struct hs_queue {
	uint8_t msg[4][HS_FUZZ_MAX_MSG];
	size_t len[4];
	unsigned n;
};

static void hs_collect(struct kd_hs *hs, struct hs_queue *q)
{
	const uint8_t *msgs[4];
	size_t lens[4];
	unsigned n, i;

	n = kd_hs_take_output(hs, msgs, lens, 4);
	for (i = 0; i < n && q->n < 4; i++) {
		kd_fuzz_check(lens[i] > 0 && lens[i] <= KD_HS_MAX_OUT);
		memcpy(q->msg[q->n], msgs[i], lens[i]);
		q->len[q->n++] = lens[i];
	}
}

static void hs_pop(struct hs_queue *q)
{
	memmove(q->msg[0], q->msg[1], sizeof(q->msg[0]) * (q->n - 1));
	memmove(q->len, q->len + 1, sizeof(q->len[0]) * (q->n - 1));
	q->n--;
}

static void hs_check_result(const struct kd_hs *hs, int ret)
{
	kd_fuzz_check(ret == 0 || ret == 1 || ret == -EACCES ||
		      ret == -ECONNREFUSED || ret == -EPROTONOSUPPORT ||
		      ret == -EOPNOTSUPP || ret == -EPROTO);
	if (ret < 0) {
		kd_fuzz_check(hs->state == KD_HS_FAILED);
		kd_fuzz_check(hs->error[0] != '\0');
	}
	if (ret == 1)
		kd_fuzz_check(hs->state == KD_HS_DONE);
	if (ret != 0)
		kd_fuzz_check(hs->cookie_len == 0);
}

/* Builds the message for one command into @m from the peer's queue. */
static size_t hs_next_message(struct kd_fuzz_in *in, struct hs_queue *peer_q,
			      uint8_t *m)
{
	uint8_t cmd = kd_fuzz_byte(in) & 3, a, b;
	const uint8_t *raw;
	size_t len;

	if (cmd == 3) {
		len = kd_fuzz_take(in, kd_fuzz_byte(in), &raw);
		memcpy(m, raw, len);
		return len;
	}
	if (!peer_q->n)
		return SIZE_MAX;
	len = peer_q->len[0];
	memcpy(m, peer_q->msg[0], len);
	hs_pop(peer_q);
	if (cmd == 1) {
		a = kd_fuzz_byte(in);
		b = kd_fuzz_byte(in);
		m[a % len] ^= b;
	} else if (cmd == 2) {
		a = kd_fuzz_byte(in);
		if (a < len)
			len = a;
	}
	return len;
}

int kd_fuzz_handshake(const uint8_t *data, size_t size)
{
	struct kd_fuzz_in in = { data, size };
	static struct kd_hs test, peer;
	static struct hs_queue test_q, peer_q;
	struct kd_hs_params tp, pp;
	uint8_t setup, m[HS_FUZZ_MAX_MSG];
	int test_ret = 0;
	size_t len;

	setup = kd_fuzz_byte(&in);
	hs_status = hs_statuses[(setup >> 1) & 7];
	hs_params(&tp, setup & 1 ? KD_HS_ACCEPTOR : KD_HS_INITIATOR);
	hs_params(&pp, setup & 1 ? KD_HS_INITIATOR : KD_HS_ACCEPTOR);
	test_q.n = 0;
	peer_q.n = 0;
	kd_fuzz_check(kd_hs_init(&test, &tp) == 0);
	kd_fuzz_check(kd_hs_init(&peer, &pp) == 0);
	if (tp.role == KD_HS_INITIATOR)
		kd_fuzz_check(kd_hs_start(&test) == 0);
	else
		kd_fuzz_check(kd_hs_start(&peer) == 0);
	hs_collect(&test, &test_q);
	hs_collect(&peer, &peer_q);

	while (in.len > 0 && test_ret == 0) {
		/* The peer reads everything the machine under test sent. */
		while (test_q.n) {
			if (peer.state != KD_HS_FAILED &&
			    peer.state != KD_HS_DONE)
				kd_hs_input(&peer, test_q.msg[0],
					    test_q.len[0]);
			hs_pop(&test_q);
			hs_collect(&peer, &peer_q);
		}
		len = hs_next_message(&in, &peer_q, m);
		if (len == SIZE_MAX)
			break;
		test_ret = kd_hs_input(&test, m, len);
		hs_check_result(&test, test_ret);
		hs_collect(&test, &test_q);
	}
	if (test_ret == 1)
		kd_fuzz_check(kd_hs_negotiated_flags(&test) != 0);
	kd_hs_wipe(&test);
	kd_hs_wipe(&peer);
	return 0;
}

KD_FUZZ_TARGET(kd_fuzz_handshake)
