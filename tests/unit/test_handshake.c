// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for the distribution handshake (engine/handshake.c): an
 * initiator and an acceptor run against each other in memory, and each
 * against messages written byte by byte as an OTP 25 node sends them.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "handshake.h"
#include "log.h"

#define COOKIE "kdistcookie"
#define OTHER_COOKIE "othercookie"
#define KD_NODE "kd@localhost"
#define ERL_NODE "erl@localhost"
#define KD_CREATION 0x11223344u
#define ERL_CREATION 1796397437u
/* What an OTP 25 node sends toward a node it publishes to: its default
 * flags (erts_internal:get_dflags()) plus DFLAG_PUBLISHED. */
#define OTP25_FLAGS 0xD07DF7FBDULL
#define KD_FLAGS                                                               \
	(KD_DFLAGS_MANDATORY | DFLAG_MANDATORY_25_DIGEST | DFLAG_PUBLISHED |   \
	 DFLAG_DIST_MONITOR | DFLAG_DIST_MONITOR_NAME)
#define WRONG_COOKIE_ERROR                                                     \
	"handshake with " KD_NODE ": wrong cookie (the peer's digest did not " \
	"match; set the same -setcookie on both nodes)"

#define MAX_MSG 600
#define NO_STOP 1000

/* ---- Log capture: every line, to check that no secret reaches it ---- */

static char log_text[8192];

static void capture_log(void *user, enum kd_log_level level, const char *line)
{
	size_t used = strlen(log_text);

	snprintf(log_text + used, sizeof(log_text) - used, "%s\n", line);
}

static int setup_log(void **state)
{
	log_text[0] = '\0';
	kd_log_configure(capture_log, NULL, KD_LOG_DEBUG);
	return 0;
}

static int teardown_log(void **state)
{
	kd_log_configure(NULL, NULL, KD_LOG_INFO);
	return 0;
}

/* ---- Wire helpers, written from the protocol description ---- */

static void be16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static void be64(uint8_t *p, uint64_t v)
{
	be32(p, v >> 32);
	be32(p + 4, v);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* MD5(cookie ++ decimal challenge), computed here with one EVP call. */
static void ref_digest(const char *cookie, uint32_t challenge,
		       uint8_t digest[16])
{
	char text[300];
	unsigned int len = 0;
	int n;

	n = snprintf(text, sizeof(text), "%s%u", cookie, challenge);
	assert_true(n > 0);
	assert_int_equal(EVP_Digest(text, n, digest, &len, EVP_md5(), NULL),
			 1);
	assert_int_equal(len, 16);
}

static size_t build_name(uint8_t *m, uint64_t flags, uint32_t creation,
			 const char *name)
{
	size_t nlen = strlen(name);

	m[0] = 'N';
	be64(m + 1, flags);
	be32(m + 9, creation);
	be16(m + 13, nlen);
	memcpy(m + 15, name, nlen);
	return 15 + nlen;
}

static size_t build_old_name(uint8_t *m, uint32_t flags, const char *name)
{
	size_t nlen = strlen(name);

	m[0] = 'n';
	be16(m + 1, 5);
	be32(m + 3, flags);
	memcpy(m + 7, name, nlen);
	return 7 + nlen;
}

static size_t build_challenge(uint8_t *m, uint64_t flags, uint32_t challenge,
			      uint32_t creation, const char *name)
{
	size_t nlen = strlen(name);

	m[0] = 'N';
	be64(m + 1, flags);
	be32(m + 9, challenge);
	be32(m + 13, creation);
	be16(m + 17, nlen);
	memcpy(m + 19, name, nlen);
	return 19 + nlen;
}

static size_t build_reply(uint8_t *m, uint32_t challenge, const char *cookie,
			  uint32_t peer_challenge)
{
	m[0] = 'r';
	be32(m + 1, challenge);
	ref_digest(cookie, peer_challenge, m + 5);
	return 21;
}

static size_t build_complement(uint8_t *m, uint32_t flags_high,
			       uint32_t creation)
{
	m[0] = 'c';
	be32(m + 1, flags_high);
	be32(m + 5, creation);
	return 9;
}

/* ---- Running two state machines against each other ---- */

static struct kd_hs_params initiator_params(void)
{
	struct kd_hs_params p = {
		.role = KD_HS_INITIATOR,
		.this_node = KD_NODE,
		.creation = KD_CREATION,
		.flags = KD_FLAGS,
		.cookie = COOKIE,
		.peer_node = ERL_NODE,
	};

	return p;
}

static enum kd_hs_status check_result;
static unsigned check_calls;
static int alive_answers; /* +1 per true, +100 per false */

static enum kd_hs_status check_peer(void *user, const char *peer,
				    uint64_t flags)
{
	check_calls++;
	assert_string_equal(peer, KD_NODE);
	return check_result;
}

static void alive_answer(void *user, const char *peer, bool keep_new)
{
	assert_string_equal(peer, KD_NODE);
	alive_answers += keep_new ? 1 : 100;
}

static struct kd_hs_params acceptor_params(void)
{
	struct kd_hs_params p = {
		.role = KD_HS_ACCEPTOR,
		.this_node = ERL_NODE,
		.creation = ERL_CREATION,
		.flags = KD_FLAGS,
		.cookie = COOKIE,
		.check_peer = check_peer,
		.alive_answer = alive_answer,
	};

	return p;
}

/*
 * Both sides, and the message that was stopped in flight: the exchange
 * delivers messages in order and stops before message number stop_at.
 */
struct run {
	struct kd_hs ini, acc;
	int ini_ret, acc_ret;
	unsigned delivered;
	unsigned stop_at;
	uint8_t held[MAX_MSG];
	size_t held_len;
	struct kd_hs *held_to;
};

/* Moves @from's output into @to. Returns false when it stopped at the
 * message to hold. */
static bool deliver(struct run *r, struct kd_hs *from, struct kd_hs *to,
		    int *to_ret, bool *moved)
{
	const uint8_t *msgs[4];
	size_t lens[4];
	unsigned n, i;

	n = kd_hs_take_output(from, msgs, lens, 4);
	for (i = 0; i < n; i++) {
		*moved = true;
		if (r->delivered == r->stop_at) {
			assert_true(lens[i] <= sizeof(r->held));
			memcpy(r->held, msgs[i], lens[i]);
			r->held_len = lens[i];
			r->held_to = to;
			return false;
		}
		r->delivered++;
		if (to->state != KD_HS_FAILED)
			*to_ret = kd_hs_input(to, msgs[i], lens[i]);
	}
	return true;
}

static void run_exchange(struct run *r, const struct kd_hs_params *ip,
			 const struct kd_hs_params *ap, unsigned stop_at)
{
	bool moved = true;

	memset(r, 0, sizeof(*r));
	r->stop_at = stop_at;
	assert_int_equal(kd_hs_init(&r->ini, ip), 0);
	assert_int_equal(kd_hs_init(&r->acc, ap), 0);
	assert_int_equal(kd_hs_start(&r->ini), 0);

	while (moved) {
		moved = false;
		if (!deliver(r, &r->ini, &r->acc, &r->acc_ret, &moved))
			return;
		if (!deliver(r, &r->acc, &r->ini, &r->ini_ret, &moved))
			return;
	}
}

static void run_default(struct run *r, unsigned stop_at)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();

	check_result = KD_HS_STATUS_OK;
	run_exchange(r, &ip, &ap, stop_at);
}

/* Takes exactly one message out of @hs into @m. */
static size_t take_one(struct kd_hs *hs, uint8_t *m)
{
	const uint8_t *msgs[4];
	size_t lens[4];

	assert_int_equal(kd_hs_take_output(hs, msgs, lens, 4), 1);
	memcpy(m, msgs[0], lens[0]);
	return lens[0];
}

static bool is_zero(const void *p, size_t len)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < len; i++) {
		if (b[i])
			return false;
	}
	return true;
}

/* ---- Parameters ---- */

static void test_init_rejects_bad_params(void **state)
{
	struct kd_hs_params p;
	struct kd_hs hs;
	char long_cookie[300];

	p = initiator_params();
	p.this_node = "no-at-sign";
	assert_int_equal(kd_hs_init(&hs, &p), -EINVAL);
	p.this_node = "two@at@signs";
	assert_int_equal(kd_hs_init(&hs, &p), -EINVAL);
	p.this_node = "@host";
	assert_int_equal(kd_hs_init(&hs, &p), -EINVAL);
	p.this_node = "name@";
	assert_int_equal(kd_hs_init(&hs, &p), -EINVAL);

	p = initiator_params();
	p.peer_node = NULL;
	assert_int_equal(kd_hs_init(&hs, &p), -EINVAL);

	p = initiator_params();
	p.cookie = "";
	assert_int_equal(kd_hs_init(&hs, &p), -EINVAL);
	memset(long_cookie, 'c', sizeof(long_cookie) - 1);
	long_cookie[sizeof(long_cookie) - 1] = '\0';
	p.cookie = long_cookie;
	assert_int_equal(kd_hs_init(&hs, &p), -EINVAL);
	assert_null(strstr(hs.error, "ccc"));

	p = initiator_params();
	p.flags = KD_FLAGS & ~DFLAG_V4_NC;
	assert_int_equal(kd_hs_init(&hs, &p), -EINVAL);
	assert_non_null(strstr(hs.error, "0x400000000"));

	p = initiator_params();
	p.flags = KD_FLAGS | DFLAG_NAME_ME;
	assert_int_equal(kd_hs_init(&hs, &p), -EOPNOTSUPP);

	assert_int_equal(kd_hs_init(NULL, &p), -EINVAL);
	assert_int_equal(kd_hs_init(&hs, NULL), -EINVAL);
}

static void test_init_accepts_digest_flag(void **state)
{
	struct kd_hs_params p = initiator_params();
	struct kd_hs hs;

	/* DFLAG_MANDATORY_25_DIGEST is shorthand for the whole OTP 25 set. */
	p.flags = DFLAG_MANDATORY_25_DIGEST | DFLAG_UNLINK_ID | DFLAG_V4_NC;
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	assert_int_equal(hs.state, KD_HS_SEND_NAME);
}

static void test_start_only_initiator(void **state)
{
	struct kd_hs_params p = acceptor_params();
	struct kd_hs hs;

	assert_int_equal(kd_hs_init(&hs, &p), 0);
	assert_int_equal(kd_hs_start(&hs), -EINVAL);

	p = initiator_params();
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	assert_int_equal(kd_hs_input(&hs, (const uint8_t *)"sok", 3), -EINVAL);
	assert_int_equal(kd_hs_start(&hs), 0);
	assert_int_equal(kd_hs_start(&hs), -EINVAL);
}

/* ---- Digest ---- */

static void test_digest_matches_evp(void **state)
{
	static const uint32_t challenges[] = { 0, 1, 305419896, 4294967295u };
	uint8_t got[16], expected[16];
	unsigned i;

	for (i = 0; i < 4; i++) {
		kd_hs_digest(COOKIE, strlen(COOKIE), challenges[i], got);
		ref_digest(COOKIE, challenges[i], expected);
		assert_memory_equal(got, expected, 16);
	}
}

static void test_digest_matches_otp(void **state)
{
	/* erlang:md5(["kdistcookie" | integer_to_list(3735928559)]) and
	 * erlang:md5(["SECRET" | integer_to_list(0)]), from OTP 25.2. */
	static const uint8_t otp_big[16] = {
		0x1e, 0x5c, 0x34, 0xda, 0x5a, 0xe5, 0x47, 0x29,
		0x4a, 0x51, 0x7c, 0x3a, 0xf9, 0x5a, 0x7a, 0x10,
	};
	static const uint8_t otp_zero[16] = {
		0x0a, 0x3f, 0x11, 0xf3, 0x48, 0x76, 0x7e, 0x17,
		0x33, 0xc6, 0xa3, 0x85, 0xcf, 0x87, 0x44, 0x0e,
	};
	uint8_t got[16];

	kd_hs_digest("kdistcookie", 11, 3735928559u, got);
	assert_memory_equal(got, otp_big, 16);
	kd_hs_digest("SECRET", 6, 0, got);
	assert_memory_equal(got, otp_zero, 16);
}

/* ---- Full exchanges ---- */

static void test_exchange_succeeds(void **state)
{
	struct run r;

	run_default(&r, NO_STOP);
	assert_int_equal(r.ini_ret, 1);
	assert_int_equal(r.acc_ret, 1);
	assert_int_equal(r.ini.state, KD_HS_DONE);
	assert_int_equal(r.acc.state, KD_HS_DONE);
	assert_int_equal(r.delivered, 5);
	assert_int_equal(check_calls > 0, 1);
	assert_string_equal(r.ini.status, "ok");
	assert_string_equal(r.acc.peer_node, KD_NODE);
	assert_string_equal(r.ini.peer_node, ERL_NODE);
	assert_int_equal(r.acc.peer_creation, KD_CREATION);
	assert_int_equal(r.ini.peer_creation, ERL_CREATION);
	assert_int_equal(kd_hs_negotiated_flags(&r.ini),
			 KD_FLAGS | KD_DFLAGS_MANDATORY_25);
	assert_int_equal(kd_hs_negotiated_flags(&r.acc),
			 kd_hs_negotiated_flags(&r.ini));
}

static void test_exchange_wipes_cookie(void **state)
{
	struct run r;

	run_default(&r, NO_STOP);
	assert_int_equal(r.ini.cookie_len, 0);
	assert_true(is_zero(r.ini.cookie, sizeof(r.ini.cookie)));
	assert_int_equal(r.acc.cookie_len, 0);
	assert_true(is_zero(r.acc.cookie, sizeof(r.acc.cookie)));
	assert_int_equal(r.acc.our_challenge, 0);
	assert_null(strstr(log_text, COOKIE));
}

static void test_wipe_clears_output(void **state)
{
	struct kd_hs_params p = acceptor_params();
	uint8_t m[MAX_MSG];
	struct kd_hs hs;
	size_t len;

	check_result = KD_HS_STATUS_OK;
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	len = build_name(m, OTP25_FLAGS, ERL_CREATION, KD_NODE);
	assert_int_equal(kd_hs_input(&hs, m, len), 0);
	assert_int_equal(hs.out_count, 2);
	kd_hs_wipe(&hs);
	kd_hs_wipe(&hs);
	assert_int_equal(hs.out_count, 0);
	assert_true(is_zero(hs.out, sizeof(hs.out)));
	assert_int_equal(hs.cookie_len, 0);
	assert_true(is_zero(hs.cookie, sizeof(hs.cookie)));
}

static void test_take_output_partially(void **state)
{
	struct kd_hs_params p = acceptor_params();
	const uint8_t *msgs[2];
	uint8_t m[MAX_MSG];
	struct kd_hs hs;
	size_t lens[2];
	size_t len;

	check_result = KD_HS_STATUS_OK;
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	len = build_name(m, OTP25_FLAGS, ERL_CREATION, KD_NODE);
	assert_int_equal(kd_hs_input(&hs, m, len), 0);

	assert_int_equal(kd_hs_take_output(&hs, msgs, lens, 1), 1);
	assert_int_equal(lens[0], 3);
	assert_memory_equal(msgs[0], "sok", 3);
	assert_int_equal(kd_hs_take_output(&hs, msgs, lens, 2), 1);
	assert_int_equal(msgs[0][0], 'N');
	assert_int_equal(kd_hs_take_output(&hs, msgs, lens, 2), 0);
}

static void test_wrong_cookie_acceptor(void **state)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();
	struct run r;

	ip.cookie = OTHER_COOKIE;
	check_result = KD_HS_STATUS_OK;
	run_exchange(&r, &ip, &ap, NO_STOP);
	assert_int_equal(r.acc_ret, -EACCES);
	assert_int_equal(r.acc.state, KD_HS_FAILED);
	assert_string_equal(r.acc.error, WRONG_COOKIE_ERROR);
	/* The initiator is left waiting for challenge_ack. */
	assert_int_equal(r.ini.state, KD_HS_RECV_CHALLENGE_ACK);
	assert_null(strstr(log_text, COOKIE));
	assert_null(strstr(log_text, OTHER_COOKIE));
	assert_int_equal(r.acc.cookie_len, 0);
}

static void test_wrong_cookie_initiator(void **state)
{
	struct run r;
	int ret;

	/* Message 4 is challenge_ack: flip one digest byte. */
	run_default(&r, 4);
	assert_int_equal(r.held[0], 'a');
	r.held[16] ^= 0x01;
	ret = kd_hs_input(r.held_to, r.held, r.held_len);
	assert_int_equal(ret, -EACCES);
	assert_string_equal(r.ini.error,
			    "handshake with " ERL_NODE ": wrong cookie (the peer's digest did not match; set the same -setcookie on both nodes)");
	assert_null(strstr(log_text, COOKIE));
}

static void test_status_ok_simultaneous(void **state)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();
	struct run r;

	check_result = KD_HS_STATUS_OK_SIMULTANEOUS;
	run_exchange(&r, &ip, &ap, NO_STOP);
	assert_int_equal(r.ini_ret, 1);
	assert_int_equal(r.acc_ret, 1);
	assert_string_equal(r.ini.status, "ok_simultaneous");
}

static void test_status_nok(void **state)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();
	struct run r;

	check_result = KD_HS_STATUS_NOK;
	run_exchange(&r, &ip, &ap, NO_STOP);
	assert_int_equal(r.acc_ret, -ECONNREFUSED);
	assert_int_equal(r.ini_ret, -ECONNREFUSED);
	assert_string_equal(r.ini.status, "nok");
	assert_non_null(strstr(r.ini.error, "answered nok"));
	assert_non_null(strstr(r.acc.error, "sent status nok"));
	assert_int_equal(r.delivered, 2);
}

static void test_status_not_allowed(void **state)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();
	struct run r;

	check_result = KD_HS_STATUS_NOT_ALLOWED;
	run_exchange(&r, &ip, &ap, NO_STOP);
	assert_int_equal(r.acc_ret, -ECONNREFUSED);
	assert_int_equal(r.ini_ret, -ECONNREFUSED);
	assert_string_equal(r.ini.status, "not_allowed");
	assert_non_null(strstr(r.ini.error, "answered not_allowed"));
}

static void test_status_alive_true(void **state)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();
	struct run r;

	alive_answers = 0;
	check_result = KD_HS_STATUS_ALIVE;
	run_exchange(&r, &ip, &ap, NO_STOP);
	assert_int_equal(r.ini_ret, 1);
	assert_int_equal(r.acc_ret, 1);
	assert_int_equal(alive_answers, 1);
	assert_int_equal(r.delivered, 6);
	assert_string_equal(r.ini.status, "alive");
}

static void test_status_alive_false(void **state)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();
	struct run r;
	int ret;

	/* Message 2 is the initiator's "strue": reply "sfalse" instead. */
	alive_answers = 0;
	check_result = KD_HS_STATUS_ALIVE;
	run_exchange(&r, &ip, &ap, 2);
	assert_int_equal(r.held_len, 5);
	assert_memory_equal(r.held, "strue", 5);
	ret = kd_hs_input(r.held_to, (const uint8_t *)"sfalse", 6);
	assert_int_equal(ret, -ECONNREFUSED);
	assert_int_equal(alive_answers, 100);
	assert_int_equal(r.acc.out_count, 0);
}

static void test_check_peer_bad_status(void **state)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();
	struct run r;

	check_result = (enum kd_hs_status)42;
	run_exchange(&r, &ip, &ap, NO_STOP);
	assert_int_equal(r.acc_ret, -EINVAL);
	assert_int_equal(r.acc.out_count, 0);
}

static void test_check_peer_optional(void **state)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();
	struct run r;

	ap.check_peer = NULL;
	run_exchange(&r, &ip, &ap, NO_STOP);
	assert_int_equal(r.ini_ret, 1);
	assert_int_equal(r.acc_ret, 1);
}

static void test_challenge_name_mismatch(void **state)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();
	struct run r;

	ap.this_node = "impostor@localhost";
	check_result = KD_HS_STATUS_OK;
	run_exchange(&r, &ip, &ap, NO_STOP);
	assert_int_equal(r.ini_ret, -EPROTO);
	assert_non_null(strstr(r.ini.error, "impostor@localhost"));
	assert_int_equal(r.ini.out_count, 0);
}

/* ---- Mandatory flags ---- */

static void test_acceptor_rejects_missing_flag(void **state)
{
	struct kd_hs_params p = acceptor_params();
	const uint8_t *msgs[2];
	uint8_t m[MAX_MSG];
	struct kd_hs hs;
	size_t lens[2];
	size_t len;

	check_calls = 0;
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	len = build_name(m, OTP25_FLAGS & ~DFLAG_UNLINK_ID, ERL_CREATION,
			 KD_NODE);
	assert_int_equal(kd_hs_input(&hs, m, len), -EPROTONOSUPPORT);
	assert_non_null(strstr(hs.error, "0x2000000"));
	assert_non_null(strstr(hs.error, "UNLINK_ID"));
	assert_int_equal(kd_hs_take_output(&hs, msgs, lens, 2), 1);
	assert_int_equal(lens[0], 12);
	assert_memory_equal(msgs[0], "snot_allowed", 12);
	assert_int_equal(check_calls, 0);
}

static void test_acceptor_expands_digest_flag(void **state)
{
	struct kd_hs_params p = acceptor_params();
	uint8_t m[MAX_MSG];
	struct kd_hs hs;
	size_t len;

	check_result = KD_HS_STATUS_OK;
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	len = build_name(m, DFLAG_MANDATORY_25_DIGEST | DFLAG_UNLINK_ID |
				    DFLAG_V4_NC,
			 ERL_CREATION, KD_NODE);
	assert_int_equal(kd_hs_input(&hs, m, len), 0);
	assert_int_equal(hs.peer_flags & KD_DFLAGS_MANDATORY,
			 KD_DFLAGS_MANDATORY);

	/* Without the digest flag, the OTP 25 set is missing. */
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	len = build_name(m, DFLAG_UNLINK_ID | DFLAG_V4_NC, ERL_CREATION,
			 KD_NODE);
	assert_int_equal(kd_hs_input(&hs, m, len), -EPROTONOSUPPORT);
	assert_non_null(strstr(hs.error, "0x1070f94"));
}

static void test_initiator_rejects_missing_flag(void **state)
{
	struct kd_hs_params p = initiator_params();
	uint8_t m[MAX_MSG];
	struct kd_hs hs;
	size_t len;

	assert_int_equal(kd_hs_init(&hs, &p), 0);
	assert_int_equal(kd_hs_start(&hs), 0);
	assert_int_equal(kd_hs_input(&hs, (const uint8_t *)"sok", 3), 0);
	len = build_challenge(m, OTP25_FLAGS & ~DFLAG_V4_NC, 7, ERL_CREATION,
			      ERL_NODE);
	assert_int_equal(kd_hs_input(&hs, m, len), -EPROTONOSUPPORT);
	assert_non_null(strstr(hs.error, "0x400000000"));
	assert_non_null(strstr(hs.error, "V4_NC"));
	/* Only send_name went out: no reply, no status. */
	assert_int_equal(hs.out_count, 1);
}

/* ---- Statuses the initiator must reject ---- */

static void test_status_named_rejected(void **state)
{
	struct kd_hs_params p = initiator_params();
	uint8_t m[MAX_MSG];
	struct kd_hs hs;

	assert_int_equal(kd_hs_init(&hs, &p), 0);
	assert_int_equal(kd_hs_start(&hs), 0);
	memcpy(m, "snamed:", 7);
	be16(m + 7, strlen(KD_NODE));
	memcpy(m + 9, KD_NODE, strlen(KD_NODE));
	be32(m + 9 + strlen(KD_NODE), 5);
	assert_int_equal(kd_hs_input(&hs, m, 13 + strlen(KD_NODE)), -EPROTO);
	assert_non_null(strstr(hs.error, "named:"));
}

static void test_status_unknown_rejected(void **state)
{
	static const char *const bad[] = { "s", "sOK", "sok ", "sokay",
					   "strue", "s\x01\xff" };
	struct kd_hs_params p = initiator_params();
	struct kd_hs hs;
	unsigned i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(kd_hs_init(&hs, &p), 0);
		assert_int_equal(kd_hs_start(&hs), 0);
		assert_int_equal(kd_hs_input(&hs, (const uint8_t *)bad[i],
					     strlen(bad[i])),
				 -EPROTO);
		assert_null(strchr(hs.error, '\x01'));
	}
}

/* ---- Old 'n' name and 'c' complement ---- */

static void start_old_name(struct kd_hs *hs, uint32_t low_flags, uint8_t *ch,
			   size_t *ch_len)
{
	struct kd_hs_params p = acceptor_params();
	const uint8_t *msgs[2];
	uint8_t m[MAX_MSG];
	size_t lens[2];
	size_t len;

	check_result = KD_HS_STATUS_OK;
	assert_int_equal(kd_hs_init(hs, &p), 0);
	len = build_old_name(m, low_flags, KD_NODE);
	assert_int_equal(kd_hs_input(hs, m, len), 0);
	assert_int_equal(hs->state, KD_HS_RECV_COMPLEMENT);
	assert_int_equal(kd_hs_take_output(hs, msgs, lens, 2), 2);
	assert_int_equal(lens[0], 3);
	assert_memory_equal(msgs[0], "sok", 3);
	memcpy(ch, msgs[1], lens[1]);
	*ch_len = lens[1];
}

static void test_old_name_complement(void **state)
{
	uint8_t ch[MAX_MSG], m[MAX_MSG], expected[16];
	struct kd_hs hs;
	size_t ch_len, len;

	start_old_name(&hs, (uint32_t)OTP25_FLAGS, ch, &ch_len);
	assert_int_equal(ch[0], 'N');
	assert_int_equal(ch_len, 19 + strlen(ERL_NODE));

	len = build_complement(m, OTP25_FLAGS >> 32, ERL_CREATION);
	assert_int_equal(kd_hs_input(&hs, m, len), 0);
	assert_int_equal(hs.peer_flags, OTP25_FLAGS | KD_DFLAGS_MANDATORY_25);
	assert_int_equal(hs.peer_creation, ERL_CREATION);

	len = build_reply(m, 99, COOKIE, rd32(ch + 9));
	assert_int_equal(kd_hs_input(&hs, m, len), 1);
	len = take_one(&hs, m);
	assert_int_equal(len, 17);
	assert_int_equal(m[0], 'a');
	ref_digest(COOKIE, 99, expected);
	assert_memory_equal(m + 1, expected, 16);
}

static void test_old_name_missing_low_flag(void **state)
{
	struct kd_hs_params p = acceptor_params();
	uint8_t m[MAX_MSG];
	struct kd_hs hs;
	size_t len;

	assert_int_equal(kd_hs_init(&hs, &p), 0);
	len = build_old_name(m, (uint32_t)OTP25_FLAGS & ~DFLAG_UNLINK_ID,
			     KD_NODE);
	assert_int_equal(kd_hs_input(&hs, m, len), -EPROTONOSUPPORT);
	len = take_one(&hs, m);
	assert_int_equal(len, 12);
	assert_memory_equal(m, "snot_allowed", 12);
}

static void test_complement_missing_high_flag(void **state)
{
	uint8_t ch[MAX_MSG], m[MAX_MSG];
	struct kd_hs hs;
	size_t ch_len, len;

	start_old_name(&hs, (uint32_t)OTP25_FLAGS, ch, &ch_len);
	len = build_complement(m, (OTP25_FLAGS & ~DFLAG_V4_NC) >> 32,
			       ERL_CREATION);
	assert_int_equal(kd_hs_input(&hs, m, len), -EPROTONOSUPPORT);
	len = take_one(&hs, m);
	assert_memory_equal(m, "snot_allowed", 12);
}

static void test_complement_bad_length(void **state)
{
	uint8_t ch[MAX_MSG], m[MAX_MSG];
	struct kd_hs hs;
	size_t ch_len, len, cut;

	build_complement(m, OTP25_FLAGS >> 32, ERL_CREATION);
	for (cut = 0; cut < 9; cut++) {
		start_old_name(&hs, (uint32_t)OTP25_FLAGS, ch, &ch_len);
		assert_true(kd_hs_input(&hs, m, cut) < 0);
		assert_int_equal(hs.state, KD_HS_FAILED);
	}
	start_old_name(&hs, (uint32_t)OTP25_FLAGS, ch, &ch_len);
	len = build_complement(m, OTP25_FLAGS >> 32, ERL_CREATION);
	m[len] = 0;
	assert_int_equal(kd_hs_input(&hs, m, len + 1), -EPROTO);
}

static void test_complement_required(void **state)
{
	uint8_t ch[MAX_MSG], m[MAX_MSG];
	struct kd_hs hs;
	size_t ch_len, len;

	start_old_name(&hs, (uint32_t)OTP25_FLAGS, ch, &ch_len);
	len = build_reply(m, 99, COOKIE, rd32(ch + 9));
	assert_int_equal(kd_hs_input(&hs, m, len), -EPROTO);
}

static void test_dynamic_name_rejected(void **state)
{
	struct kd_hs_params p = acceptor_params();
	uint8_t m[MAX_MSG];
	struct kd_hs hs;
	size_t len;

	assert_int_equal(kd_hs_init(&hs, &p), 0);
	len = build_name(m, OTP25_FLAGS | DFLAG_NAME_ME, 0, "localhost");
	assert_int_equal(kd_hs_input(&hs, m, len), -EOPNOTSUPP);
	len = take_one(&hs, m);
	assert_memory_equal(m, "snot_allowed", 12);
}

static void test_name_validation(void **state)
{
	static const char *const bad[] = {
		"nohost", "@host", "name@", "a@b@c", "",
		"x\n12:00:00.000 kdist info: forged@h", "tab\t@h", "\xff\xfe@h",
		"\xc0\xaf@h", "del\x7f@h",
	};
	struct kd_hs_params p = acceptor_params();
	char long_name[300];
	uint8_t m[MAX_MSG];
	struct kd_hs hs;
	size_t len;
	unsigned i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(kd_hs_init(&hs, &p), 0);
		len = build_name(m, OTP25_FLAGS, 1, bad[i]);
		assert_int_equal(kd_hs_input(&hs, m, len), -EPROTO);
		assert_int_equal(hs.out_count, 0);
	}

	/* 256 bytes is one too many. */
	memset(long_name, 'a', 256);
	long_name[1] = '@';
	long_name[256] = '\0';
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	len = build_name(m, OTP25_FLAGS, 1, long_name);
	assert_int_equal(kd_hs_input(&hs, m, len), -EPROTO);

	/* UTF-8 beyond ASCII is a valid node name. */
	p.check_peer = NULL;
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	len = build_name(m, OTP25_FLAGS, 1, "n\xc3\xa4me@h\xc3\xb6st");
	assert_int_equal(kd_hs_input(&hs, m, len), 0);

	/* A NUL inside the name. */
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	len = build_name(m, OTP25_FLAGS, 1, KD_NODE);
	m[15 + 2] = '\0';
	assert_int_equal(kd_hs_input(&hs, m, len), -EPROTO);
}

static void test_name_trailing_bytes_ignored(void **state)
{
	struct kd_hs_params p = acceptor_params();
	uint8_t m[MAX_MSG];
	struct kd_hs hs;
	size_t len;

	check_result = KD_HS_STATUS_OK;
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	len = build_name(m, OTP25_FLAGS, ERL_CREATION, KD_NODE);
	memcpy(m + len, "extra", 5);
	assert_int_equal(kd_hs_input(&hs, m, len + 5), 0);
	assert_string_equal(hs.peer_node, KD_NODE);
}

/* ---- Every step: truncated, oversized, wrong type ---- */

struct scenario {
	enum kd_hs_status status;
	unsigned steps;
	const char *tags[6];  /* message types each step accepts */
	bool ignores_tail[6]; /* 'N' messages ignore bytes after the name */
};

static const struct scenario scenarios[] = {
	{ KD_HS_STATUS_OK, 5, { "Nn", "s", "N", "r", "a" },
	  { true, false, true, false, false } },
	{ KD_HS_STATUS_ALIVE, 6, { "Nn", "s", "s", "N", "r", "a" },
	  { true, false, false, true, false, false } },
};

static void run_scenario(struct run *r, const struct scenario *sc,
			 unsigned stop_at)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();

	check_result = sc->status;
	run_exchange(r, &ip, &ap, stop_at);
	assert_non_null(r->held_to);
}

static void test_every_step_truncated(void **state)
{
	const struct scenario *sc;
	unsigned s, step;
	size_t cut, full;
	struct run r;
	int ret;

	for (s = 0; s < 2; s++) {
		sc = &scenarios[s];
		for (step = 0; step < sc->steps; step++) {
			run_scenario(&r, sc, step);
			full = r.held_len;
			for (cut = 0; cut < full; cut++) {
				run_scenario(&r, sc, step);
				ret = kd_hs_input(r.held_to, r.held, cut);
				assert_true(ret < 0);
				assert_int_equal(r.held_to->state,
						 KD_HS_FAILED);
			}
		}
	}
}

static void test_every_step_oversized(void **state)
{
	const struct scenario *sc;
	unsigned s, step;
	struct run r;
	int ret;

	for (s = 0; s < 2; s++) {
		sc = &scenarios[s];
		for (step = 0; step < sc->steps; step++) {
			run_scenario(&r, sc, step);
			r.held[r.held_len] = 'x';
			ret = kd_hs_input(r.held_to, r.held, r.held_len + 1);
			if (sc->ignores_tail[step])
				assert_true(ret >= 0);
			else
				assert_int_equal(ret, -EPROTO);
		}
	}
}

static void test_every_step_wrong_type(void **state)
{
	static const uint8_t types[] = { 's', 'N', 'n', 'r', 'a', 'c', 0x00,
					 0xff };
	const struct scenario *sc;
	unsigned s, step, t;
	struct run r;
	int ret;

	for (s = 0; s < 2; s++) {
		sc = &scenarios[s];
		for (step = 0; step < sc->steps; step++) {
			for (t = 0; t < sizeof(types); t++) {
				if (strchr(sc->tags[step], types[t]) &&
				    types[t] != 0)
					continue;
				run_scenario(&r, sc, step);
				r.held[0] = types[t];
				ret = kd_hs_input(r.held_to, r.held,
						  r.held_len);
				assert_int_equal(ret, -EPROTO);
				assert_non_null(strstr(r.held_to->error,
						       "expected"));
			}
		}
	}
}

static void test_input_after_end(void **state)
{
	struct run r;

	run_default(&r, NO_STOP);
	assert_int_equal(kd_hs_input(&r.ini, (const uint8_t *)"a", 1),
			 -EPROTO);
	assert_int_equal(r.ini.state, KD_HS_FAILED);
	assert_int_equal(kd_hs_input(&r.ini, (const uint8_t *)"a", 1),
			 -EINVAL);
}

static void test_challenge_name_length(void **state)
{
	struct kd_hs_params p = initiator_params();
	uint8_t m[MAX_MSG];
	struct kd_hs hs;
	size_t len;

	assert_int_equal(kd_hs_init(&hs, &p), 0);
	assert_int_equal(kd_hs_start(&hs), 0);
	assert_int_equal(kd_hs_input(&hs, (const uint8_t *)"sok", 3), 0);
	len = build_challenge(m, OTP25_FLAGS, 7, ERL_CREATION, ERL_NODE);
	be16(m + 17, 0xffff);
	assert_int_equal(kd_hs_input(&hs, m, len), -EPROTO);
	assert_non_null(strstr(hs.error, "65535"));
}

/* ---- An OTP 25 peer, byte by byte ---- */

/* kdist connects to erl@localhost, an OTP 25 node with cookie kdistcookie
 * that sends challenge 3735928559. */
static void test_otp25_acceptor_peer(void **state)
{
	static const uint8_t otp_digest[16] = {
		0x1e, 0x5c, 0x34, 0xda, 0x5a, 0xe5, 0x47, 0x29,
		0x4a, 0x51, 0x7c, 0x3a, 0xf9, 0x5a, 0x7a, 0x10,
	};
	static const uint8_t send_name[] = {
		'N', 0x00, 0x00, 0x00, 0x04, 0x07, 0x07, 0x0f, 0xbd,
		0x11, 0x22, 0x33, 0x44, 0x00, 0x0c,
		'k', 'd', '@', 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't',
	};
	static const uint8_t challenge[] = {
		'N', 0x00, 0x00, 0x00, 0x0d, 0x07, 0xdf, 0x7f, 0xbd,
		0xde, 0xad, 0xbe, 0xef, 0x6b, 0x12, 0xd9, 0x7d, 0x00, 0x0d,
		'e', 'r', 'l', '@', 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't',
	};
	struct kd_hs_params p = initiator_params();
	uint8_t m[MAX_MSG];
	struct kd_hs hs;
	size_t len;

	p.flags = 0x407070FBDULL;
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	assert_int_equal(kd_hs_start(&hs), 0);
	len = take_one(&hs, m);
	assert_int_equal(len, sizeof(send_name));
	assert_memory_equal(m, send_name, sizeof(send_name));

	assert_int_equal(kd_hs_input(&hs, (const uint8_t *)"sok", 3), 0);
	assert_int_equal(kd_hs_input(&hs, challenge, sizeof(challenge)), 0);
	assert_int_equal(hs.peer_creation, ERL_CREATION);
	len = take_one(&hs, m);
	assert_int_equal(len, 21);
	assert_int_equal(m[0], 'r');
	assert_memory_equal(m + 5, otp_digest, 16);

	/* challenge_ack: the digest of the challenge kdist sent. */
	m[0] = 'a';
	ref_digest(COOKIE, rd32(m + 1), m + 1);
	assert_int_equal(kd_hs_input(&hs, m, 17), 1);
	assert_int_equal(kd_hs_negotiated_flags(&hs),
			 0x407070FBDULL & OTP25_FLAGS);
}

/* erl@localhost (OTP 25, creation 1796397437) connects to kdist. */
static void test_otp25_initiator_peer(void **state)
{
	static const uint8_t send_name[] = {
		'N', 0x00, 0x00, 0x00, 0x0d, 0x07, 0xdf, 0x7f, 0xbd,
		0x6b, 0x12, 0xd9, 0x7d, 0x00, 0x0d,
		'e', 'r', 'l', '@', 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't',
	};
	struct kd_hs_params p = acceptor_params();
	uint8_t ch[MAX_MSG], m[MAX_MSG], expected[16];
	const uint8_t *msgs[2];
	struct kd_hs hs;
	size_t lens[2];
	size_t len;

	p.this_node = KD_NODE;
	p.creation = KD_CREATION;
	p.check_peer = NULL;
	assert_int_equal(kd_hs_init(&hs, &p), 0);
	assert_int_equal(kd_hs_input(&hs, send_name, sizeof(send_name)), 0);
	assert_int_equal(hs.peer_creation, ERL_CREATION);
	assert_string_equal(hs.peer_node, ERL_NODE);

	assert_int_equal(kd_hs_take_output(&hs, msgs, lens, 2), 2);
	assert_int_equal(lens[0], 3);
	assert_memory_equal(msgs[0], "sok", 3);
	memcpy(ch, msgs[1], lens[1]);
	assert_int_equal(lens[1], 19 + strlen(KD_NODE));
	assert_int_equal(ch[0], 'N');
	assert_int_equal(rd32(ch + 13), KD_CREATION);
	assert_int_equal(ch[17], 0);
	assert_int_equal(ch[18], strlen(KD_NODE));
	assert_memory_equal(ch + 19, KD_NODE, strlen(KD_NODE));

	len = build_reply(m, 3735928559u, COOKIE, rd32(ch + 9));
	assert_int_equal(kd_hs_input(&hs, m, len), 1);
	len = take_one(&hs, m);
	ref_digest(COOKIE, 3735928559u, expected);
	assert_int_equal(len, 17);
	assert_int_equal(m[0], 'a');
	assert_memory_equal(m + 1, expected, 16);
}

/* ---- Simultaneous connect ---- */

static void test_simultaneous_greater_keeps(void **state)
{
	assert_int_equal(kd_hs_simultaneous_status("b@host", "a@host"),
			 KD_HS_STATUS_NOK);
	assert_int_equal(kd_hs_simultaneous_status("a@host", "b@host"),
			 KD_HS_STATUS_OK_SIMULTANEOUS);
	/* A prefix compares less, as for Erlang atoms. */
	assert_int_equal(kd_hs_simultaneous_status("ab@h", "a@h"),
			 KD_HS_STATUS_NOK);
	/* Bytes compare unsigned: UTF-8 letters sort after ASCII. */
	assert_int_equal(kd_hs_simultaneous_status("\xc3\xa9@h", "z@h"),
			 KD_HS_STATUS_NOK);
}

/* Delivers every message @from has queued to @to; returns the last
 * kd_hs_input() result, or 0 when nothing was queued. */
static int deliver_all(struct kd_hs *from, struct kd_hs *to)
{
	const uint8_t *msgs[4];
	size_t lens[4];
	unsigned n = kd_hs_take_output(from, msgs, lens, 4);
	uint8_t copy[KD_HS_MAX_OUT];
	int ret = 0;

	for (unsigned i = 0; i < n && ret == 0; i++) {
		/* The pointers die at the next call on @from. */
		memcpy(copy, msgs[i], lens[i]);
		ret = kd_hs_input(to, copy, lens[i]);
	}
	return ret;
}

/* kd_hs_expected() names the message each role waits for, so that a log
 * line can name the step where a peer stopped. */
static void test_expected_names_each_step(void **state)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs_params ap = acceptor_params();
	struct kd_hs ini, acc;

	assert_int_equal(kd_hs_init(&ini, &ip), 0);
	assert_int_equal(kd_hs_init(&acc, &ap), 0);
	assert_null(kd_hs_expected(&ini));
	assert_string_equal(kd_hs_expected(&acc), "send_name");

	assert_int_equal(kd_hs_start(&ini), 0);
	assert_string_equal(kd_hs_expected(&ini), "status");

	assert_int_equal(deliver_all(&ini, &acc), 0);
	assert_string_equal(kd_hs_expected(&acc), "challenge_reply");

	assert_int_equal(deliver_all(&acc, &ini), 0);
	assert_string_equal(kd_hs_expected(&ini), "challenge_ack");

	assert_int_equal(deliver_all(&ini, &acc), 1);
	assert_null(kd_hs_expected(&acc));

	assert_int_equal(deliver_all(&acc, &ini), 1);
	assert_null(kd_hs_expected(&ini));
}

static void test_expected_after_failure(void **state)
{
	struct kd_hs_params ip = initiator_params();
	struct kd_hs ini;

	assert_int_equal(kd_hs_init(&ini, &ip), 0);
	assert_int_equal(kd_hs_start(&ini), 0);
	assert_true(kd_hs_input(&ini, (const uint8_t *)"x", 1) < 0);
	assert_int_equal(ini.state, KD_HS_FAILED);
	assert_null(kd_hs_expected(&ini));
}

/* A TLS ClientHello's record header read as a 2-byte length: 0x1603. */
static void test_oversize_tls_record(void **state)
{
	static const uint8_t hello[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01 };
	char text[256];

	kd_hs_oversize_text(hello, sizeof(hello), 2, 0x1603, 2048, "inet_tls",
			    text, sizeof(text));
	assert_non_null(strstr(text, "length 5635 exceeds 2048 bytes"));
	assert_non_null(strstr(text, "the peer is using TLS"));
	assert_non_null(strstr(text, "every node must use -proto_dist "
				     "inet_tls"));
	assert_null(strstr(text, "2-byte lengths"));

	kd_hs_oversize_text(hello, sizeof(hello), 2, 0x1603, 2048, "inet6_tls",
			    text, sizeof(text));
	assert_non_null(strstr(text, "-proto_dist inet6_tls"));
}

static void test_oversize_other_bytes(void **state)
{
	static const uint8_t big[] = { 0x20, 0x00, 'N' };
	static const uint8_t hello[] = { 0x16, 0x03 };
	char text[256];

	kd_hs_oversize_text(big, sizeof(big), 2, 0x2000, 2048, "inet_tls",
			    text, sizeof(text));
	assert_non_null(strstr(text, "length 8192 exceeds 2048 bytes"));
	assert_non_null(strstr(text, "2-byte lengths"));
	assert_null(strstr(text, "TLS"));

	/* A TLS node reads plaintext here, so 0x16 0x03 means nothing. */
	kd_hs_oversize_text(hello, sizeof(hello), 2, 0x1603, 2048, NULL, text,
			    sizeof(text));
	assert_non_null(strstr(text, "2-byte lengths"));
	assert_null(strstr(text, "using TLS"));

	/* One byte is not enough to tell. */
	kd_hs_oversize_text(hello, 1, 2, 0x1603, 2048, "inet_tls", text,
			    sizeof(text));
	assert_null(strstr(text, "using TLS"));
}

#define HS_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup_log, teardown_log)

int main(void)
{
	const struct CMUnitTest tests[] = {
		HS_TEST(test_init_rejects_bad_params),
		HS_TEST(test_init_accepts_digest_flag),
		HS_TEST(test_start_only_initiator),
		HS_TEST(test_digest_matches_evp),
		HS_TEST(test_digest_matches_otp),
		HS_TEST(test_exchange_succeeds),
		HS_TEST(test_exchange_wipes_cookie),
		HS_TEST(test_wipe_clears_output),
		HS_TEST(test_take_output_partially),
		HS_TEST(test_wrong_cookie_acceptor),
		HS_TEST(test_wrong_cookie_initiator),
		HS_TEST(test_status_ok_simultaneous),
		HS_TEST(test_status_nok),
		HS_TEST(test_status_not_allowed),
		HS_TEST(test_status_alive_true),
		HS_TEST(test_status_alive_false),
		HS_TEST(test_check_peer_bad_status),
		HS_TEST(test_check_peer_optional),
		HS_TEST(test_challenge_name_mismatch),
		HS_TEST(test_acceptor_rejects_missing_flag),
		HS_TEST(test_acceptor_expands_digest_flag),
		HS_TEST(test_initiator_rejects_missing_flag),
		HS_TEST(test_status_named_rejected),
		HS_TEST(test_status_unknown_rejected),
		HS_TEST(test_old_name_complement),
		HS_TEST(test_old_name_missing_low_flag),
		HS_TEST(test_complement_missing_high_flag),
		HS_TEST(test_complement_bad_length),
		HS_TEST(test_complement_required),
		HS_TEST(test_dynamic_name_rejected),
		HS_TEST(test_name_validation),
		HS_TEST(test_name_trailing_bytes_ignored),
		HS_TEST(test_every_step_truncated),
		HS_TEST(test_every_step_oversized),
		HS_TEST(test_every_step_wrong_type),
		HS_TEST(test_input_after_end),
		HS_TEST(test_challenge_name_length),
		HS_TEST(test_otp25_acceptor_peer),
		HS_TEST(test_otp25_initiator_peer),
		HS_TEST(test_simultaneous_greater_keeps),
		HS_TEST(test_expected_names_each_step),
		HS_TEST(test_expected_after_failure),
		HS_TEST(test_oversize_tls_record),
		HS_TEST(test_oversize_other_bytes),
	};

	return cmocka_run_group_tests_name("handshake", tests, NULL, NULL);
}
