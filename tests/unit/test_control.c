/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for engine/control.c: the term validator, control message
 * decoding in both packet forms, fragment reassembly, and the encoders.
 * Packets are built with ei, the same library OTP's C nodes use.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <ei.h>

#include "control.h"

#define ERRLEN 256

static erlang_pid pid_a, pid_b, pid_gl;
static erlang_ref ref_a;

static void make_pid(erlang_pid *p, const char *node, unsigned num)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->node, sizeof(p->node), "%s", node);
	p->num = num;
	p->serial = 2;
	p->creation = 1700000001;
}

static int setup_ids(void **state)
{
	make_pid(&pid_a, "alpha@host", 101);
	make_pid(&pid_b, "beta@host", 202);
	make_pid(&pid_gl, "alpha@host", 303);
	memset(&ref_a, 0, sizeof(ref_a));
	snprintf(ref_a.node, sizeof(ref_a.node), "alpha@host");
	ref_a.len = 3;
	ref_a.n[0] = 11;
	ref_a.n[1] = 22;
	ref_a.n[2] = 33;
	ref_a.creation = 1700000001;
	return 0;
}

static bool pid_eq(const erlang_pid *a, const erlang_pid *b)
{
	return a->num == b->num && a->serial == b->serial &&
	       a->creation == b->creation && strcmp(a->node, b->node) == 0;
}

static bool ref_eq(const erlang_ref *a, const erlang_ref *b)
{
	return a->len == b->len && a->creation == b->creation &&
	       memcmp(a->n, b->n, sizeof(a->n[0]) * a->len) == 0 &&
	       strcmp(a->node, b->node) == 0;
}

/* Reports which case failed, then fails the test. */
#define check(cond, name)                                                  \
	do {                                                               \
		if (!(cond)) {                                             \
			print_error("%s: check failed: %s\n", (name), #cond); \
			fail();                                            \
		}                                                          \
	} while (0)

/* Element kinds of the control tuples the decode tests build. */
enum elem {
	E_END = 0,
	E_EMPTY_ATOM, /* Unused */
	E_FROM, /* pid_a */
	E_TO, /* pid_b */
	E_FROM_NAME, /* 'src_name' where FromProc may be a name */
	E_TO_NAME, /* 'my_server' */
	E_REF, /* ref_a */
	E_ID, /* a 64-bit id that needs a bignum */
	E_SMALL_ID, /* 7 */
	E_TOKEN, /* {seq_token, 1} */
	E_REASON, /* {shutdown, because} */
	E_GL, /* pid_gl */
	E_MFA, /* {lists, seq, 2} */
	E_OPTS, /* [link] */
	E_FLAGS, /* 3 */
	E_RESULT, /* pid_b */
};

#define BIG_ID 0x1234567890abcdefULL

static void put_elem(ei_x_buff *x, enum elem e)
{
	switch (e) {
	case E_EMPTY_ATOM:
		ei_x_encode_atom(x, "");
		break;
	case E_FROM:
		ei_x_encode_pid(x, &pid_a);
		break;
	case E_TO:
	case E_RESULT:
		ei_x_encode_pid(x, &pid_b);
		break;
	case E_FROM_NAME:
		ei_x_encode_atom(x, "src_name");
		break;
	case E_TO_NAME:
		ei_x_encode_atom(x, "my_server");
		break;
	case E_REF:
		ei_x_encode_ref(x, &ref_a);
		break;
	case E_ID:
		ei_x_encode_ulonglong(x, BIG_ID);
		break;
	case E_SMALL_ID:
		ei_x_encode_long(x, 7);
		break;
	case E_TOKEN:
		ei_x_encode_tuple_header(x, 2);
		ei_x_encode_atom(x, "seq_token");
		ei_x_encode_long(x, 1);
		break;
	case E_REASON:
		ei_x_encode_tuple_header(x, 2);
		ei_x_encode_atom(x, "shutdown");
		ei_x_encode_atom(x, "because");
		break;
	case E_GL:
		ei_x_encode_pid(x, &pid_gl);
		break;
	case E_MFA:
		ei_x_encode_tuple_header(x, 3);
		ei_x_encode_atom(x, "lists");
		ei_x_encode_atom(x, "seq");
		ei_x_encode_long(x, 2);
		break;
	case E_OPTS:
		ei_x_encode_list_header(x, 1);
		ei_x_encode_atom(x, "link");
		ei_x_encode_empty_list(x);
		break;
	case E_FLAGS:
		ei_x_encode_long(x, 3);
		break;
	case E_END:
		break;
	}
}

struct op_case {
	const char *name;
	int wire_op;
	int base_op;
	bool payload;
	enum elem elems[7];
};

static const struct op_case op_cases[] = {
	{ "LINK", 1, 1, false, { E_FROM, E_TO } },
	{ "SEND", 2, 2, true, { E_EMPTY_ATOM, E_TO } },
	{ "EXIT", 3, 3, false, { E_FROM, E_TO, E_REASON } },
	{ "UNLINK", 4, 4, false, { E_FROM, E_TO } },
	{ "REG_SEND", 6, 6, true, { E_FROM, E_EMPTY_ATOM, E_TO_NAME } },
	{ "GROUP_LEADER", 7, 7, false, { E_FROM, E_TO } },
	{ "EXIT2", 8, 8, false, { E_FROM, E_TO, E_REASON } },
	{ "SEND_TT", 12, 2, true, { E_EMPTY_ATOM, E_TO, E_TOKEN } },
	{ "EXIT_TT", 13, 3, false, { E_FROM, E_TO, E_TOKEN, E_REASON } },
	{ "REG_SEND_TT", 16, 6, true,
	  { E_FROM, E_EMPTY_ATOM, E_TO_NAME, E_TOKEN } },
	{ "EXIT2_TT", 18, 8, false, { E_FROM, E_TO, E_TOKEN, E_REASON } },
	{ "MONITOR_P", 19, 19, false, { E_FROM, E_TO, E_REF } },
	{ "MONITOR_P by name", 19, 19, false, { E_FROM, E_TO_NAME, E_REF } },
	{ "DEMONITOR_P", 20, 20, false, { E_FROM, E_TO, E_REF } },
	{ "DEMONITOR_P by name", 20, 20, false,
	  { E_FROM, E_TO_NAME, E_REF } },
	{ "MONITOR_P_EXIT", 21, 21, false, { E_FROM, E_TO, E_REF, E_REASON } },
	{ "MONITOR_P_EXIT by name", 21, 21, false,
	  { E_FROM_NAME, E_TO, E_REF, E_REASON } },
	{ "SEND_SENDER", 22, 22, true, { E_FROM, E_TO } },
	{ "SEND_SENDER_TT", 23, 22, true, { E_FROM, E_TO, E_TOKEN } },
	{ "PAYLOAD_EXIT", 24, 24, true, { E_FROM, E_TO } },
	{ "PAYLOAD_EXIT_TT", 25, 24, true, { E_FROM, E_TO, E_TOKEN } },
	{ "PAYLOAD_EXIT2", 26, 26, true, { E_FROM, E_TO } },
	{ "PAYLOAD_EXIT2_TT", 27, 26, true, { E_FROM, E_TO, E_TOKEN } },
	{ "PAYLOAD_MONITOR_P_EXIT", 28, 28, true, { E_FROM, E_TO, E_REF } },
	{ "PAYLOAD_MONITOR_P_EXIT by name", 28, 28, true,
	  { E_FROM_NAME, E_TO, E_REF } },
	{ "SPAWN_REQUEST", 29, 29, true,
	  { E_REF, E_FROM, E_GL, E_MFA, E_OPTS } },
	{ "SPAWN_REQUEST_TT", 30, 29, true,
	  { E_REF, E_FROM, E_GL, E_MFA, E_OPTS, E_TOKEN } },
	{ "SPAWN_REPLY", 31, 31, false, { E_REF, E_TO, E_FLAGS, E_RESULT } },
	{ "SPAWN_REPLY_TT", 32, 31, false,
	  { E_REF, E_TO, E_FLAGS, E_RESULT, E_TOKEN } },
	{ "ALIAS_SEND", 33, 33, true, { E_FROM, E_REF } },
	{ "ALIAS_SEND_TT", 34, 33, true, { E_FROM, E_REF, E_TOKEN } },
	{ "UNLINK_ID", 35, 35, false, { E_ID, E_FROM, E_TO } },
	{ "UNLINK_ID small id", 35, 35, false, { E_SMALL_ID, E_FROM, E_TO } },
	{ "UNLINK_ID_ACK", 36, 36, false, { E_ID, E_FROM, E_TO } },
};

enum form { FORM_PASS_THROUGH, FORM_DIST_HEADER };

static unsigned count_elems(const enum elem *elems)
{
	unsigned n = 0;

	while (n < 7 && elems[n] != E_END)
		n++;
	return n;
}

/* Builds a packet in @form: the control tuple {Op, Elems...} and, if
 * @msg, the message {hello, 42}. */
static void build_packet(ei_x_buff *x, enum form form, int op,
			 const enum elem *elems, bool msg)
{
	unsigned n = count_elems(elems);

	ei_x_new(x);
	if (form == FORM_PASS_THROUGH) {
		ei_x_append_buf(x, "p", 1);
		ei_x_encode_version(x);
	} else {
		ei_x_append_buf(x, "\x83\x44\x00", 3);
	}
	ei_x_encode_tuple_header(x, n + 1);
	ei_x_encode_long(x, op);
	for (unsigned i = 0; i < n; i++)
		put_elem(x, elems[i]);
	if (!msg)
		return;
	if (form == FORM_PASS_THROUGH)
		ei_x_encode_version(x);
	ei_x_encode_tuple_header(x, 2);
	ei_x_encode_atom(x, "hello");
	ei_x_encode_long(x, 42);
}

static int decode_x(const ei_x_buff *x, struct kd_ctrl *c, char *err)
{
	return kd_ctrl_decode((const uint8_t *)x->buff, (size_t)x->index, c,
			      err, ERRLEN);
}

static bool slice_is_term(const uint8_t *p, size_t len, const char *a,
			  const char *b)
{
	char s1[MAXATOMLEN_UTF8], s2[MAXATOMLEN_UTF8];
	int idx = 0, arity;

	if (!p || ei_decode_tuple_header((const char *)p, &idx, &arity) < 0 ||
	    arity != 2)
		return false;
	if (ei_decode_atom((const char *)p, &idx, s1) < 0 ||
	    ei_decode_atom((const char *)p, &idx, s2) < 0)
		return false;
	return (size_t)idx == len && !strcmp(s1, a) && !strcmp(s2, b);
}

static void check_elem(const struct kd_ctrl *c, enum elem e,
		       const char *name)
{
	switch (e) {
	case E_FROM:
		check(c->has_from && pid_eq(&c->from, &pid_a), name);
		break;
	case E_TO:
		check(c->has_to_pid && pid_eq(&c->to, &pid_b), name);
		break;
	case E_FROM_NAME:
		check(!c->has_from, name);
		check(!strcmp(c->from_name, "src_name"), name);
		break;
	case E_TO_NAME:
		check(!c->has_to_pid, name);
		check(!strcmp(c->to_name, "my_server"), name);
		break;
	case E_REF:
		check(c->has_ref && ref_eq(&c->ref, &ref_a), name);
		break;
	case E_ID:
		check(c->unlink_id == BIG_ID, name);
		break;
	case E_SMALL_ID:
		check(c->unlink_id == 7, name);
		break;
	case E_REASON:
		check(slice_is_term(c->reason, c->reason_len, "shutdown",
				    "because"),
		      name);
		break;
	case E_GL:
		check(pid_eq(&c->group_leader, &pid_gl), name);
		break;
	case E_MFA:
		check(!strcmp(c->spawn_module, "lists"), name);
		check(!strcmp(c->spawn_function, "seq"), name);
		check(c->spawn_arity == 2, name);
		break;
	case E_OPTS:
		check(c->spawn_opts && c->spawn_opts[0] == ERL_LIST_EXT, name);
		break;
	case E_FLAGS:
		check(c->flags == 3, name);
		break;
	case E_RESULT:
		check(c->result && c->result[0] == ERL_NEW_PID_EXT, name);
		break;
	case E_EMPTY_ATOM:
	case E_TOKEN:
	case E_END:
		break;
	}
}

static void check_msg(const struct kd_ctrl *c, enum form form,
		      const char *name)
{
	int idx = 0, arity;

	check(c->msg_term != NULL, name);
	check(ei_decode_tuple_header((const char *)c->msg_term, &idx,
				     &arity) == 0,
	      name);
	check(arity == 2, name);
	if (form == FORM_PASS_THROUGH) {
		check(c->msg == c->msg_term - 1, name);
		check(c->msg[0] == 131, name);
		check(c->msg_len == c->msg_term_len + 1, name);
	} else {
		check(c->msg == NULL, name);
	}
}

static void decode_all_ops(enum form form)
{
	for (size_t i = 0; i < sizeof(op_cases) / sizeof(op_cases[0]); i++) {
		const struct op_case *oc = &op_cases[i];
		char err[ERRLEN] = "";
		struct kd_ctrl c;
		ei_x_buff x;
		int ret;

		build_packet(&x, form, oc->wire_op, oc->elems, oc->payload);
		ret = decode_x(&x, &c, err);
		if (ret)
			print_error("%s: %s\n", oc->name, err);
		check(ret == 0, oc->name);
		check(c.op == oc->base_op, oc->name);
		check(c.traced == (oc->wire_op != oc->base_op), oc->name);
		for (unsigned j = 0; j < count_elems(oc->elems); j++)
			check_elem(&c, oc->elems[j], oc->name);
		if (oc->payload)
			check_msg(&c, form, oc->name);
		else
			check(c.msg_term == NULL, oc->name);
		ei_x_free(&x);
	}
}

static void test_decode_pass_through_ops(void **state)
{
	decode_all_ops(FORM_PASS_THROUGH);
}

static void test_decode_dist_header_ops(void **state)
{
	decode_all_ops(FORM_DIST_HEADER);
}

/* LINK with the older PID_EXT (creation in one byte) beside NEW_PID_EXT. */
static void test_decode_old_pid_ext(void **state)
{
	static const uint8_t pkt[] = {
		'p', 131, 104, 3, 97, 1,
		/* PID_EXT: node 'n@h', ID, Serial, Creation:8 */
		103, 119, 3, 'n', '@', 'h', 0, 0, 0, 5, 0, 0, 0, 0, 2,
		/* NEW_PID_EXT */
		88, 119, 3, 'n', '@', 'h', 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0,
		9,
	};
	char err[ERRLEN];
	struct kd_ctrl c;

	assert_int_equal(kd_ctrl_decode(pkt, sizeof(pkt), &c, err, ERRLEN),
			 0);
	assert_int_equal(c.op, KD_DOP_LINK);
	assert_int_equal(c.from.num, 5);
	assert_int_equal(c.from.creation, 2);
	assert_string_equal(c.from.node, "n@h");
	assert_int_equal(c.to.num, 6);
	assert_int_equal(c.to.creation, 9);
}

/* ALTACT_SIG_SEND {37, Flags, Sender, To[, Token]}: To follows Flags. */
static void build_altact(ei_x_buff *x, unsigned flags, bool token)
{
	ei_x_new(x);
	ei_x_append_buf(x, "p", 1);
	ei_x_encode_version(x);
	ei_x_encode_tuple_header(x, token ? 5 : 4);
	ei_x_encode_long(x, KD_DOP_ALTACT_SIG_SEND);
	ei_x_encode_long(x, flags);
	ei_x_encode_pid(x, &pid_a);
	if (flags & KD_ALTACT_FLG_ALIAS)
		ei_x_encode_ref(x, &ref_a);
	else if (flags & KD_ALTACT_FLG_NAME)
		ei_x_encode_atom(x, "my_server");
	else
		ei_x_encode_pid(x, &pid_b);
	if (token)
		put_elem(x, E_TOKEN);
	ei_x_encode_version(x);
	ei_x_encode_atom(x, "payload");
}

static void test_decode_altact_targets(void **state)
{
	char err[ERRLEN];
	struct kd_ctrl c;
	ei_x_buff x;

	build_altact(&x, KD_ALTACT_FLG_PRIO, false);
	assert_int_equal(decode_x(&x, &c, err), 0);
	assert_int_equal(c.op, KD_DOP_ALTACT_SIG_SEND);
	assert_true(c.has_to_pid);
	assert_true(pid_eq(&c.to, &pid_b));
	assert_true(pid_eq(&c.from, &pid_a));
	assert_false(c.traced);
	ei_x_free(&x);

	build_altact(&x, KD_ALTACT_FLG_NAME | KD_ALTACT_FLG_TOKEN, true);
	assert_int_equal(decode_x(&x, &c, err), 0);
	assert_false(c.has_to_pid);
	assert_string_equal(c.to_name, "my_server");
	assert_true(c.traced);
	ei_x_free(&x);

	build_altact(&x, KD_ALTACT_FLG_ALIAS | KD_ALTACT_FLG_EXIT, false);
	assert_int_equal(decode_x(&x, &c, err), 0);
	assert_true(c.has_ref);
	assert_true(ref_eq(&c.ref, &ref_a));
	assert_int_equal(c.flags, KD_ALTACT_FLG_ALIAS | KD_ALTACT_FLG_EXIT);
	assert_non_null(c.msg);
	ei_x_free(&x);
}

static void test_decode_altact_token_mismatch(void **state)
{
	char err[ERRLEN];
	struct kd_ctrl c;
	ei_x_buff x;

	build_altact(&x, KD_ALTACT_FLG_TOKEN, false);
	assert_int_equal(decode_x(&x, &c, err), -EPROTO);
	ei_x_free(&x);

	build_altact(&x, 0, true);
	assert_int_equal(decode_x(&x, &c, err), -EPROTO);
	assert_non_null(strstr(err, "trace token"));
	ei_x_free(&x);
}

static void test_decode_unknown_op(void **state)
{
	static const enum elem elems[] = { E_FROM, E_TO, E_END };
	char err[ERRLEN];
	struct kd_ctrl c;
	ei_x_buff x;

	build_packet(&x, FORM_PASS_THROUGH, 5, elems, false);
	assert_int_equal(decode_x(&x, &c, err), -EOPNOTSUPP);
	assert_int_equal(c.op, 5);
	assert_non_null(strstr(err, "operation 5"));
	ei_x_free(&x);

	build_packet(&x, FORM_DIST_HEADER, 99, elems, true);
	assert_int_equal(decode_x(&x, &c, err), -EOPNOTSUPP);
	assert_int_equal(c.op, 99);
	ei_x_free(&x);
}

static void expect_proto(const uint8_t *pkt, size_t len, const char *phrase)
{
	char err[ERRLEN] = "";
	struct kd_ctrl c;

	assert_int_equal(kd_ctrl_decode(pkt, len, &c, err, ERRLEN), -EPROTO);
	if (!strstr(err, phrase))
		print_error("error \"%s\" lacks \"%s\"\n", err, phrase);
	assert_non_null(strstr(err, phrase));
}

static void test_decode_rejects_bad_shapes(void **state)
{
	static const enum elem link_short[] = { E_FROM, E_END };
	static const enum elem link_atom[] = { E_FROM, E_TO_NAME, E_END };
	ei_x_buff x;

	/* not a tuple */
	ei_x_new(&x);
	ei_x_append_buf(&x, "p", 1);
	ei_x_encode_version(&x);
	ei_x_encode_atom(&x, "link");
	expect_proto((uint8_t *)x.buff, x.index, "expected a tuple, found an atom");
	ei_x_free(&x);

	/* op is not an integer */
	ei_x_new(&x);
	ei_x_append_buf(&x, "p", 1);
	ei_x_encode_version(&x);
	ei_x_encode_tuple_header(&x, 1);
	ei_x_encode_atom(&x, "one");
	expect_proto((uint8_t *)x.buff, x.index, "integer operation code");
	ei_x_free(&x);

	build_packet(&x, FORM_PASS_THROUGH, 1, link_short, false);
	expect_proto((uint8_t *)x.buff, x.index, "expected 3 elements, found 2");
	ei_x_free(&x);

	build_packet(&x, FORM_DIST_HEADER, 1, link_atom, false);
	expect_proto((uint8_t *)x.buff, x.index,
		     "LINK: expected a pid in element 3, found an atom");
	ei_x_free(&x);
}

static void test_decode_rejects_payload_mismatch(void **state)
{
	static const enum elem send[] = { E_EMPTY_ATOM, E_TO, E_END };
	static const enum elem link[] = { E_FROM, E_TO, E_END };
	ei_x_buff x;

	build_packet(&x, FORM_PASS_THROUGH, 2, send, false);
	expect_proto((uint8_t *)x.buff, x.index, "message term is missing");
	ei_x_free(&x);

	build_packet(&x, FORM_DIST_HEADER, 1, link, true);
	expect_proto((uint8_t *)x.buff, x.index, "carries no message");
	ei_x_free(&x);

	/* bytes after the message term */
	build_packet(&x, FORM_PASS_THROUGH, 2, send, true);
	ei_x_append_buf(&x, "j", 1);
	expect_proto((uint8_t *)x.buff, x.index, "1 unexpected bytes");
	ei_x_free(&x);

	/* pass-through packet whose message lacks its 131 */
	build_packet(&x, FORM_DIST_HEADER, 2, send, true);
	x.buff[1] = 'p';
	x.buff[2] = (char)131;
	expect_proto((uint8_t *)x.buff + 1, x.index - 1,
		     "expected version byte 131 after the control term");
	ei_x_free(&x);
}

static void test_decode_rejects_headers(void **state)
{
	static const uint8_t atom_cache[] = { 131, 68, 1, 0, 0 };
	static const uint8_t unknown[] = { 131, 99, 0 };
	static const uint8_t no_version[] = { 'p', 104, 0 };
	static const uint8_t bad_first[] = { 7, 0 };
	static const uint8_t frag_first[] = { 131, 69, 0 };
	static const uint8_t frag_cont[] = { 131, 70, 0 };
	char err[ERRLEN];
	struct kd_ctrl c;

	expect_proto(atom_cache, sizeof(atom_cache), "DIST_HDR_ATOM_CACHE");
	expect_proto(unknown, sizeof(unknown), "131 99");
	expect_proto(no_version, sizeof(no_version), "after 'p'");
	expect_proto(bad_first, sizeof(bad_first), "byte 7");
	expect_proto(bad_first, 0, "empty");
	assert_int_equal(kd_ctrl_decode(frag_first, sizeof(frag_first), &c,
					err, ERRLEN),
			 -ENOMSG);
	assert_int_equal(kd_ctrl_decode(frag_cont, sizeof(frag_cont), &c, err,
					ERRLEN),
			 -ENOMSG);
}

/* Every proper prefix of a valid packet is rejected; each prefix sits in
 * a buffer of exactly its size, so an over-read shows under ASAN. */
static void truncate_every_byte(enum form form)
{
	static const enum elem spawn[] = { E_REF,  E_FROM, E_GL,  E_MFA,
					   E_OPTS, E_TOKEN, E_END };
	char err[ERRLEN];
	struct kd_ctrl c;
	ei_x_buff x;

	build_packet(&x, form, KD_DOP_SPAWN_REQUEST_TT, spawn, true);
	assert_int_equal(decode_x(&x, &c, err), 0);
	for (int n = 0; n < x.index; n++) {
		uint8_t *copy = malloc(n ? n : 1);

		memcpy(copy, x.buff, n);
		if (kd_ctrl_decode(copy, n, &c, err, ERRLEN) != -EPROTO)
			print_error("prefix of %d bytes: %s\n", n, err);
		assert_int_equal(kd_ctrl_decode(copy, n, &c, err, ERRLEN),
				 -EPROTO);
		free(copy);
	}
	ei_x_free(&x);
}

static void test_decode_truncated_everywhere(void **state)
{
	truncate_every_byte(FORM_PASS_THROUGH);
	truncate_every_byte(FORM_DIST_HEADER);
}

static bool is_decode_result(int ret)
{
	return ret == 0 || ret == -EPROTO || ret == -EOPNOTSUPP ||
	       ret == -ENOMSG;
}

static void test_decode_random_bytes(void **state)
{
	static const enum elem exit_tt[] = { E_FROM, E_TO, E_TOKEN, E_REASON,
					     E_END };
	unsigned seed = (unsigned)time(NULL);
	char err[ERRLEN];
	struct kd_ctrl c;
	uint8_t buf[96];
	ei_x_buff x;

	print_message("random seed %u\n", seed);
	srand(seed);
	for (int i = 0; i < 20000; i++) {
		size_t n = (size_t)(rand() % (int)sizeof(buf)) + 1;
		uint8_t *copy = malloc(n);

		for (size_t j = 0; j < n; j++)
			copy[j] = (uint8_t)rand();
		copy[0] = i % 2 ? 'p' : 131;
		if (n > 1)
			copy[1] = i % 2 ? 131 : 68;
		assert_true(is_decode_result(kd_ctrl_decode(copy, n, &c, err,
							    ERRLEN)));
		free(copy);
	}

	/* flipped bytes in a valid packet */
	build_packet(&x, FORM_PASS_THROUGH, KD_DOP_EXIT_TT, exit_tt, false);
	for (int i = 0; i < 20000; i++) {
		memcpy(buf, x.buff, x.index);
		buf[rand() % x.index] = (uint8_t)rand();
		buf[rand() % x.index] ^= (uint8_t)(1u << (rand() % 8));
		assert_true(is_decode_result(
			kd_ctrl_decode(buf, x.index, &c, err, ERRLEN)));
	}
	ei_x_free(&x);
}

/* Term validator. */
static void build_rich_term(ei_x_buff *x)
{
	erlang_port port = { .id = 77, .creation = 3 };
	static const char bits[] = { (char)0xff, (char)0x80 };

	snprintf(port.node, sizeof(port.node), "gamma@host");
	ei_x_new(x);
	ei_x_encode_tuple_header(x, 9);
	ei_x_encode_map_header(x, 1);
	ei_x_encode_atom(x, "key");
	ei_x_encode_binary(x, "value", 5);
	ei_x_encode_list_header(x, 2);
	ei_x_encode_double(x, 1.5);
	ei_x_encode_string(x, "text");
	ei_x_encode_empty_list(x);
	ei_x_encode_ulonglong(x, BIG_ID);
	ei_x_encode_longlong(x, -5000000000LL);
	ei_x_encode_pid(x, &pid_a);
	ei_x_encode_ref(x, &ref_a);
	ei_x_encode_port(x, &port);
	ei_x_encode_bitstring(x, bits, 0, 9);
	ei_x_encode_atom(x, "\xc3\xa9t\xc3\xa9"); /* UTF-8 atom */
}

static void test_etf_validate_happy(void **state)
{
	size_t term_len = 0;
	ei_x_buff x;

	build_rich_term(&x);
	ei_x_append_buf(&x, "\x6a\x6a", 2); /* two bytes that follow it */
	assert_int_equal(kd_etf_validate((uint8_t *)x.buff, x.index,
					 &term_len),
			 0);
	assert_int_equal(term_len, x.index - 2);
	ei_x_free(&x);
}

static void test_etf_validate_truncated(void **state)
{
	size_t term_len;
	ei_x_buff x;

	build_rich_term(&x);
	for (int n = 0; n < x.index; n++) {
		uint8_t *copy = malloc(n ? n : 1);

		memcpy(copy, x.buff, n);
		assert_int_equal(kd_etf_validate(copy, n, &term_len), -EPROTO);
		free(copy);
	}
	ei_x_free(&x);
}

/* @levels of [[[...]]] (non-tail nesting) around an empty list. */
static uint8_t *nested_lists(size_t levels, size_t *len)
{
	uint8_t *buf = malloc(levels * 6 + levels + 1);
	size_t pos = 0;

	for (size_t i = 0; i < levels; i++) {
		static const uint8_t head[] = { ERL_LIST_EXT, 0, 0, 0, 1 };

		memcpy(buf + pos, head, sizeof(head));
		pos += sizeof(head);
	}
	buf[pos++] = ERL_NIL_EXT;
	for (size_t i = 0; i < levels; i++)
		buf[pos++] = ERL_NIL_EXT; /* each list's tail */
	*len = pos;
	return buf;
}

static void test_etf_validate_depth(void **state)
{
	size_t len, term_len;
	uint8_t *buf;

	buf = nested_lists(KD_ETF_MAX_DEPTH - 1, &len);
	assert_int_equal(kd_etf_validate(buf, len, &term_len), 0);
	assert_int_equal(term_len, len);
	free(buf);

	buf = nested_lists(KD_ETF_MAX_DEPTH + 1, &len);
	assert_int_equal(kd_etf_validate(buf, len, &term_len), -EPROTO);
	free(buf);
}

/* {a, {a, {a, ...}}}: the nested tuple is the last element each time,
 * so depth does not grow however long the chain is. */
static void test_etf_validate_tail_chain(void **state)
{
	const size_t levels = 100000;
	uint8_t *buf = malloc(levels * 4 + 1);
	size_t pos = 0, term_len;

	for (size_t i = 0; i < levels; i++) {
		buf[pos++] = ERL_SMALL_TUPLE_EXT;
		buf[pos++] = 2;
		buf[pos++] = ERL_SMALL_INTEGER_EXT;
		buf[pos++] = 1;
	}
	buf[pos++] = ERL_NIL_EXT;
	assert_int_equal(kd_etf_validate(buf, pos, &term_len), 0);
	assert_int_equal(term_len, pos);
	free(buf);
}

struct bad_term {
	const char *name;
	uint8_t bytes[40];
	size_t len;
};

static const struct bad_term bad_terms[] = {
	{ "huge list", { ERL_LIST_EXT, 0xff, 0xff, 0xff, 0xff, ERL_NIL_EXT },
	  6 },
	{ "huge binary", { ERL_BINARY_EXT, 0xff, 0xff, 0xff, 0xf0, 1, 2 }, 7 },
	{ "huge tuple", { ERL_LARGE_TUPLE_EXT, 0x7f, 0xff, 0xff, 0xff, 106 },
	  6 },
	{ "huge map", { ERL_MAP_EXT, 0xff, 0xff, 0xff, 0xff, 106, 106 }, 7 },
	{ "huge big", { ERL_LARGE_BIG_EXT, 0xff, 0xff, 0xff, 0xff, 0, 1 }, 7 },
	{ "long latin-1 atom", { ERL_ATOM_EXT, 1, 0 }, 3 },
	{ "six-word ref",
	  { ERL_NEWER_REFERENCE_EXT, 0, 6, ERL_SMALL_ATOM_UTF8_EXT, 1, 'n' },
	  6 },
	{ "zero-word ref",
	  { ERL_NEWER_REFERENCE_EXT, 0, 0, ERL_SMALL_ATOM_UTF8_EXT, 1, 'n', 0,
	    0, 0, 0 },
	  10 },
	{ "pid with a tuple node",
	  { ERL_NEW_PID_EXT, ERL_SMALL_TUPLE_EXT, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0, 0, 0 },
	  15 },
	{ "atom cache ref", { 82, 0 }, 2 },
	{ "compressed", { 80, 0, 0, 0, 1, 0x78 }, 6 },
	{ "local ext", { 121, 0, 0 }, 3 },
	{ "unknown tag", { 255 }, 1 },
	{ "float text without NUL",
	  { ERL_FLOAT_EXT, '1', '1', '1', '1', '1', '1', '1', '1', '1', '1',
	    '1', '1', '1', '1', '1', '1', '1', '1', '1', '1', '1', '1', '1',
	    '1', '1', '1', '1', '1', '1', '1', '1' },
	  32 },
	{ "fun size too small", { ERL_NEW_FUN_EXT, 0, 0, 0, 4 }, 5 },
	{ "fun size past end", { ERL_NEW_FUN_EXT, 0xff, 0xff, 0xff, 0xff },
	  5 },
};

static void test_etf_validate_adversarial(void **state)
{
	size_t term_len;

	for (size_t i = 0; i < sizeof(bad_terms) / sizeof(bad_terms[0]); i++) {
		const struct bad_term *b = &bad_terms[i];
		uint8_t *copy = malloc(b->len);

		memcpy(copy, b->bytes, b->len);
		check(kd_etf_validate(copy, b->len, &term_len) == -EPROTO,
		      b->name);
		free(copy);
	}
}

/* The old FLOAT_EXT text as term_to_binary(1.5, [{minor_version, 0}])
 * writes it: "%.20e", NUL-padded to 31 bytes. */
static void test_etf_validate_float_text(void **state)
{
	uint8_t term[32] = { ERL_FLOAT_EXT };
	size_t term_len;
	double value;
	int idx = 0;

	snprintf((char *)term + 1, 31, "%.20e", 1.5);
	assert_int_equal(kd_etf_validate(term, sizeof(term), &term_len), 0);
	assert_int_equal(term_len, 32);
	assert_int_equal(ei_decode_double((const char *)term, &idx, &value),
			 0);
	assert_true(value == 1.5);
}

/* NEW_FUN_EXT whose Size field disagrees with its contents. */
static void test_etf_validate_fun_size(void **state)
{
	uint8_t fun[64] = { ERL_NEW_FUN_EXT };
	size_t pos = 30, term_len;

	/* Arity, Uniq, Index and NumFree = 0 stay zero. */
	fun[pos++] = ERL_SMALL_ATOM_UTF8_EXT; /* Module */
	fun[pos++] = 1;
	fun[pos++] = 'm';
	fun[pos++] = ERL_SMALL_INTEGER_EXT; /* OldIndex */
	fun[pos++] = 0;
	fun[pos++] = ERL_SMALL_INTEGER_EXT; /* OldUniq */
	fun[pos++] = 0;
	fun[pos++] = ERL_NEW_PID_EXT; /* Pid */
	fun[pos++] = ERL_SMALL_ATOM_UTF8_EXT;
	fun[pos++] = 1;
	fun[pos++] = 'n';
	pos += 12;

	fun[4] = (uint8_t)(pos - 1); /* Size counts from the Size field */
	assert_int_equal(kd_etf_validate(fun, pos, &term_len), 0);
	assert_int_equal(term_len, pos);

	fun[4] = (uint8_t)(pos - 2);
	assert_int_equal(kd_etf_validate(fun, pos, &term_len), -EPROTO);
}

/* Fragments: a message cut into @nfrags pieces of the body
 * "ctrl + msg" (without 131 bytes), as OTP's 131 69 / 131 70 packets. */
struct frag_set {
	uint8_t *pkt[8];
	size_t len[8];
	size_t n;
	uint8_t *body;
	size_t body_len;
};

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void build_frags(struct frag_set *fs, uint64_t seq, size_t nfrags)
{
	static const enum elem send[] = { E_EMPTY_ATOM, E_TO, E_END };
	size_t off = 0, chunk;
	ei_x_buff x;

	build_packet(&x, FORM_DIST_HEADER, KD_DOP_SEND, send, true);
	fs->body_len = x.index - 3;
	fs->body = malloc(fs->body_len);
	memcpy(fs->body, x.buff + 3, fs->body_len);
	ei_x_free(&x);

	fs->n = nfrags;
	chunk = fs->body_len / nfrags + 1;
	for (size_t i = 0; i < nfrags; i++) {
		size_t hdr = i == 0 ? 19 : 18;
		size_t n = i == nfrags - 1 ? fs->body_len - off : chunk;
		uint8_t *p = malloc(hdr + n);

		p[0] = 131;
		p[1] = i == 0 ? 69 : 70;
		put64(p + 2, seq);
		put64(p + 10, nfrags - i);
		if (i == 0)
			p[18] = 0;
		memcpy(p + hdr, fs->body + off, n);
		off += n;
		fs->pkt[i] = p;
		fs->len[i] = hdr + n;
	}
}

static void free_frags(struct frag_set *fs)
{
	for (size_t i = 0; i < fs->n; i++)
		free(fs->pkt[i]);
	free(fs->body);
}

static void check_reassembled(const struct frag_set *fs, uint8_t *out,
			      size_t out_len)
{
	char err[ERRLEN];
	struct kd_ctrl c;

	assert_int_equal(out_len, fs->body_len + 3);
	assert_memory_equal(out, "\x83\x44\x00", 3);
	assert_memory_equal(out + 3, fs->body, fs->body_len);
	assert_int_equal(kd_ctrl_decode(out, out_len, &c, err, ERRLEN), 0);
	assert_int_equal(c.op, KD_DOP_SEND);
	assert_non_null(c.msg_term);
	free(out);
}

static void test_frag_in_order(void **state)
{
	struct kd_frag_table *t = kd_frag_table_new(1 << 20);
	char err[ERRLEN];
	struct frag_set fs;
	size_t out_len;
	uint8_t *out;

	build_frags(&fs, 0xabcdef0123456789ULL, 4);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(kd_frag_input(t, fs.pkt[i], fs.len[i], &out,
					       &out_len, err, ERRLEN),
				 0);
	}
	assert_true(kd_frag_pending_bytes(t) > 0);
	assert_int_equal(kd_frag_input(t, fs.pkt[3], fs.len[3], &out,
				       &out_len, err, ERRLEN),
			 1);
	assert_int_equal(kd_frag_pending_bytes(t), 0);
	check_reassembled(&fs, out, out_len);
	free_frags(&fs);
	kd_frag_table_free(t);
}

static void test_frag_single(void **state)
{
	struct kd_frag_table *t = kd_frag_table_new(1 << 20);
	char err[ERRLEN];
	struct frag_set fs;
	size_t out_len;
	uint8_t *out;

	build_frags(&fs, 1, 1);
	assert_int_equal(kd_frag_input(t, fs.pkt[0], fs.len[0], &out,
				       &out_len, err, ERRLEN),
			 1);
	check_reassembled(&fs, out, out_len);
	free_frags(&fs);
	kd_frag_table_free(t);
}

static void test_frag_interleaved(void **state)
{
	struct kd_frag_table *t = kd_frag_table_new(1 << 20);
	struct frag_set a, b;
	char err[ERRLEN];
	size_t out_len;
	uint8_t *out;

	build_frags(&a, 10, 3);
	build_frags(&b, 20, 2);
	assert_int_equal(kd_frag_input(t, a.pkt[0], a.len[0], &out, &out_len,
				       err, ERRLEN),
			 0);
	assert_int_equal(kd_frag_input(t, b.pkt[0], b.len[0], &out, &out_len,
				       err, ERRLEN),
			 0);
	assert_int_equal(kd_frag_input(t, a.pkt[1], a.len[1], &out, &out_len,
				       err, ERRLEN),
			 0);
	assert_int_equal(kd_frag_input(t, b.pkt[1], b.len[1], &out, &out_len,
				       err, ERRLEN),
			 1);
	check_reassembled(&b, out, out_len);
	assert_int_equal(kd_frag_input(t, a.pkt[2], a.len[2], &out, &out_len,
				       err, ERRLEN),
			 1);
	check_reassembled(&a, out, out_len);
	free_frags(&a);
	free_frags(&b);
	kd_frag_table_free(t);
}

static void test_frag_sequence_errors(void **state)
{
	struct kd_frag_table *t = kd_frag_table_new(1 << 20);
	char err[ERRLEN];
	struct frag_set fs;
	size_t out_len;
	uint8_t *out;

	build_frags(&fs, 5, 3);

	/* continuation with no first fragment */
	assert_int_equal(kd_frag_input(t, fs.pkt[1], fs.len[1], &out,
				       &out_len, err, ERRLEN),
			 -EPROTO);
	assert_non_null(strstr(err, "no first fragment"));

	/* FragId skipped: 3 then 1 */
	assert_int_equal(kd_frag_input(t, fs.pkt[0], fs.len[0], &out,
				       &out_len, err, ERRLEN),
			 0);
	assert_int_equal(kd_frag_input(t, fs.pkt[2], fs.len[2], &out,
				       &out_len, err, ERRLEN),
			 -EPROTO);
	assert_non_null(strstr(err, "FragId 1 arrived, expected 2"));
	assert_int_equal(kd_frag_pending_bytes(t), 0);

	/* the same sequence started twice */
	assert_int_equal(kd_frag_input(t, fs.pkt[0], fs.len[0], &out,
				       &out_len, err, ERRLEN),
			 0);
	assert_int_equal(kd_frag_input(t, fs.pkt[0], fs.len[0], &out,
				       &out_len, err, ERRLEN),
			 -EPROTO);
	assert_non_null(strstr(err, "started again"));
	assert_int_equal(kd_frag_pending_bytes(t), 0);

	free_frags(&fs);
	kd_frag_table_free(t);
}

static void test_frag_bad_headers(void **state)
{
	struct kd_frag_table *t = kd_frag_table_new(1 << 20);
	uint8_t first[20] = { 131, 69 };
	char err[ERRLEN];
	size_t out_len;
	uint8_t *out;

	assert_int_equal(kd_frag_input(t, first, 18, &out, &out_len, err,
				       ERRLEN),
			 -EPROTO);
	assert_int_equal(kd_frag_input(t, first, 17, &out, &out_len, err,
				       ERRLEN),
			 -EPROTO);

	put64(first + 10, 0); /* FragId 0 */
	assert_int_equal(kd_frag_input(t, first, 20, &out, &out_len, err,
				       ERRLEN),
			 -EPROTO);

	put64(first + 10, 2);
	first[18] = 1; /* atom cache references */
	assert_int_equal(kd_frag_input(t, first, 20, &out, &out_len, err,
				       ERRLEN),
			 -EPROTO);
	assert_non_null(strstr(err, "DIST_HDR_ATOM_CACHE"));

	first[1] = 68;
	assert_int_equal(kd_frag_input(t, first, 20, &out, &out_len, err,
				       ERRLEN),
			 -EPROTO);
	assert_int_equal(kd_frag_input(NULL, first, 20, &out, &out_len, err,
				       ERRLEN),
			 -EINVAL);
	kd_frag_table_free(t);
}

static void test_frag_size_limit(void **state)
{
	struct kd_frag_table *t;
	char err[ERRLEN];
	struct frag_set fs;
	size_t out_len;
	uint8_t *out;

	build_frags(&fs, 9, 2);

	/* the first fragment alone is over the limit */
	t = kd_frag_table_new(fs.len[0] - 19 - 1);
	assert_int_equal(kd_frag_input(t, fs.pkt[0], fs.len[0], &out,
				       &out_len, err, ERRLEN),
			 -EMSGSIZE);
	kd_frag_table_free(t);

	/* the continuation takes it over */
	t = kd_frag_table_new(fs.body_len - 1);
	assert_int_equal(kd_frag_input(t, fs.pkt[0], fs.len[0], &out,
				       &out_len, err, ERRLEN),
			 0);
	assert_int_equal(kd_frag_input(t, fs.pkt[1], fs.len[1], &out,
				       &out_len, err, ERRLEN),
			 -EMSGSIZE);
	assert_int_equal(kd_frag_pending_bytes(t), 0);
	kd_frag_table_free(t);

	/* exactly at the limit */
	t = kd_frag_table_new(fs.body_len);
	assert_int_equal(kd_frag_input(t, fs.pkt[0], fs.len[0], &out,
				       &out_len, err, ERRLEN),
			 0);
	assert_int_equal(kd_frag_input(t, fs.pkt[1], fs.len[1], &out,
				       &out_len, err, ERRLEN),
			 1);
	check_reassembled(&fs, out, out_len);
	kd_frag_table_free(t);
	free_frags(&fs);
}

/* Open sequences are capped; kd_frag_table_free() releases them all. */
static void test_frag_sequence_cap(void **state)
{
	struct kd_frag_table *t = kd_frag_table_new(1 << 20);
	uint8_t first[24] = { 131, 69 };
	char err[ERRLEN];
	size_t out_len;
	uint8_t *out;

	put64(first + 10, 2);
	for (uint64_t seq = 0; seq < KD_FRAG_MAX_SEQUENCES; seq++) {
		put64(first + 2, seq);
		assert_int_equal(kd_frag_input(t, first, sizeof(first), &out,
					       &out_len, err, ERRLEN),
				 0);
	}
	assert_int_equal(kd_frag_pending_bytes(t),
			 KD_FRAG_MAX_SEQUENCES * (sizeof(first) - 19));
	put64(first + 2, KD_FRAG_MAX_SEQUENCES);
	assert_int_equal(kd_frag_input(t, first, sizeof(first), &out, &out_len,
				       err, ERRLEN),
			 -EMLINK);
	kd_frag_table_free(t);
}

/* Fragment encoder: the headers plus the caller's slices, fed back
 * through kd_frag_input(), give the original terms. */
static void test_frag_encode_round_trip(void **state)
{
	const size_t ctrl_len = 40, msg_len = 1000, frag_size = 128;
	struct kd_frag_table *t = kd_frag_table_new(1 << 20);
	struct kd_frag_hdr *frags;
	uint8_t ctrl[40], msg[1000];
	size_t n, out_len = 0;
	char err[ERRLEN];
	uint8_t *out = NULL;
	int ret = 0;

	memset(ctrl, 'c', sizeof(ctrl));
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	n = kd_frag_count(ctrl_len, msg_len, frag_size);
	/* 88 message bytes fit the first fragment, 912 need 8 more */
	assert_int_equal(n, 9);
	frags = calloc(n, sizeof(*frags));
	assert_int_equal(kd_frag_encode_headers(frags, n, 77, ctrl_len,
						msg_len, frag_size),
			 0);
	assert_int_equal(frags[0].len, 19);
	assert_true(frags[0].with_ctrl);
	assert_int_equal(frags[0].payload_len, 19 + 40 + 88);
	assert_int_equal(frags[1].len, 18);
	assert_false(frags[1].with_ctrl);
	assert_int_equal(frags[8].msg_off + frags[8].msg_len, msg_len);

	for (size_t i = 0; i < n; i++) {
		const struct kd_frag_hdr *h = &frags[i];
		uint8_t *pkt = malloc(h->payload_len);
		size_t pos = h->len;

		memcpy(pkt, h->bytes, h->len);
		if (h->with_ctrl) {
			memcpy(pkt + pos, ctrl, ctrl_len);
			pos += ctrl_len;
		}
		memcpy(pkt + pos, msg + h->msg_off, h->msg_len);
		assert_int_equal(pos + h->msg_len, h->payload_len);
		ret = kd_frag_input(t, pkt, h->payload_len, &out, &out_len, err,
				    ERRLEN);
		assert_int_equal(ret, i == n - 1 ? 1 : 0);
		free(pkt);
	}
	assert_int_equal(out_len, 3 + ctrl_len + msg_len);
	assert_memory_equal(out + 3, ctrl, ctrl_len);
	assert_memory_equal(out + 3 + ctrl_len, msg, msg_len);
	free(out);
	free(frags);
	kd_frag_table_free(t);
}

static void test_frag_encode_edges(void **state)
{
	struct kd_frag_hdr h[2];

	assert_int_equal(kd_frag_count(10, 0, 100), 0);
	assert_int_equal(kd_frag_count(10, 5, 0), 0);
	assert_int_equal(kd_frag_count(10, 90, 100), 1);
	assert_int_equal(kd_frag_count(10, 91, 100), 2);
	/* control larger than a fragment: the first carries no message */
	assert_int_equal(kd_frag_count(300, 100, 100), 2);
	assert_int_equal(kd_frag_encode_headers(h, 2, 1, 300, 100, 100), 0);
	assert_int_equal(h[0].msg_len, 0);
	assert_int_equal(h[1].msg_len, 100);
	assert_int_equal(h[1].bytes[1], 70);
	assert_int_equal(h[1].bytes[17], 1); /* last FragId is 1 */

	assert_int_equal(kd_frag_encode_headers(h, 1, 1, 300, 100, 100),
			 -EINVAL);
	assert_int_equal(kd_frag_encode_headers(h, 0, 1, 10, 0, 100), -EINVAL);
}

/* Encoders. */
static void append_msg(ei_x_buff *x)
{
	ei_x_encode_version(x);
	ei_x_encode_atom(x, "hi");
}

static void decode_encoded(ei_x_buff *x, struct kd_ctrl *c, bool msg)
{
	char err[ERRLEN] = "";

	if (msg)
		append_msg(x);
	if (decode_x(x, c, err))
		print_error("%s\n", err);
	assert_int_equal(decode_x(x, c, err), 0);
}

static void test_encode_send_family(void **state)
{
	struct kd_ctrl c;
	ei_x_buff x;
	char atom[8];
	int idx, arity;

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_send(&x, &pid_b), 0);
	assert_int_equal((uint8_t)x.buff[0], 'p');
	assert_int_equal((uint8_t)x.buff[1], 131);
	decode_encoded(&x, &c, true);
	assert_int_equal(c.op, KD_DOP_SEND);
	assert_true(pid_eq(&c.to, &pid_b));
	/* Unused is the empty atom, as OTP sends it */
	idx = 2;
	assert_int_equal(ei_decode_tuple_header(x.buff, &idx, &arity), 0);
	assert_int_equal(ei_skip_term(x.buff, &idx), 0);
	assert_int_equal(ei_decode_atom(x.buff, &idx, atom), 0);
	assert_string_equal(atom, "");
	ei_x_free(&x);

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_send_sender(&x, &pid_a, &pid_b), 0);
	decode_encoded(&x, &c, true);
	assert_int_equal(c.op, KD_DOP_SEND_SENDER);
	assert_true(pid_eq(&c.from, &pid_a));
	ei_x_free(&x);

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_reg_send(&x, &pid_a, "net_kernel"), 0);
	decode_encoded(&x, &c, true);
	assert_int_equal(c.op, KD_DOP_REG_SEND);
	assert_string_equal(c.to_name, "net_kernel");
	ei_x_free(&x);
}

static void test_encode_link_family(void **state)
{
	struct kd_ctrl c;
	ei_x_buff x;

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_link(&x, &pid_a, &pid_b), 0);
	decode_encoded(&x, &c, false);
	assert_int_equal(c.op, KD_DOP_LINK);
	assert_true(pid_eq(&c.from, &pid_a));
	assert_true(pid_eq(&c.to, &pid_b));
	ei_x_free(&x);

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_exit(&x, &pid_a, &pid_b, "noproc"), 0);
	decode_encoded(&x, &c, false);
	assert_int_equal(c.op, KD_DOP_EXIT);
	assert_int_equal(c.reason[0], ERL_SMALL_ATOM_UTF8_EXT);
	assert_int_equal(c.reason_len, 2 + strlen("noproc"));
	ei_x_free(&x);

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_unlink_id(&x, BIG_ID, &pid_a, &pid_b),
			 0);
	decode_encoded(&x, &c, false);
	assert_int_equal(c.op, KD_DOP_UNLINK_ID);
	assert_true(c.unlink_id == BIG_ID);
	ei_x_free(&x);

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_unlink_id_ack(&x, 3, &pid_b, &pid_a),
			 0);
	decode_encoded(&x, &c, false);
	assert_int_equal(c.op, KD_DOP_UNLINK_ID_ACK);
	assert_int_equal(c.unlink_id, 3);
	assert_true(pid_eq(&c.from, &pid_b));
	ei_x_free(&x);
}

static void test_encode_monitor_family(void **state)
{
	struct kd_ctrl c;
	ei_x_buff x;

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_monitor_p_exit(&x, &pid_b, NULL,
						       &pid_a, &ref_a,
						       "normal"),
			 0);
	decode_encoded(&x, &c, false);
	assert_int_equal(c.op, KD_DOP_MONITOR_P_EXIT);
	assert_true(c.has_from);
	assert_true(pid_eq(&c.from, &pid_b));
	assert_true(ref_eq(&c.ref, &ref_a));
	ei_x_free(&x);

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_monitor_p_exit(&x, &pid_b, "srv",
						       &pid_a, &ref_a,
						       "noproc"),
			 0);
	decode_encoded(&x, &c, false);
	assert_false(c.has_from);
	assert_string_equal(c.from_name, "srv");
	ei_x_free(&x);

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_monitor_p(&x, &pid_a, NULL, "srv",
						  &ref_a),
			 0);
	decode_encoded(&x, &c, false);
	assert_int_equal(c.op, KD_DOP_MONITOR_P);
	assert_string_equal(c.to_name, "srv");
	ei_x_free(&x);

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_demonitor_p(&x, &pid_a, &pid_b, NULL,
						    &ref_a),
			 0);
	decode_encoded(&x, &c, false);
	assert_int_equal(c.op, KD_DOP_DEMONITOR_P);
	assert_true(pid_eq(&c.to, &pid_b));
	ei_x_free(&x);
}

static void test_encode_spawn_reply(void **state)
{
	struct kd_ctrl c;
	ei_x_buff x;
	char atom[MAXATOMLEN];
	int idx = 0;

	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_spawn_reply_error(&x, &ref_a, &pid_a,
							  "badarg"),
			 0);
	decode_encoded(&x, &c, false);
	assert_int_equal(c.op, KD_DOP_SPAWN_REPLY);
	assert_true(ref_eq(&c.ref, &ref_a));
	assert_int_equal(c.flags, 0);
	assert_int_equal(ei_decode_atom((const char *)c.result, &idx, atom), 0);
	assert_string_equal(atom, "badarg");
	ei_x_free(&x);
}

static void test_encode_rejects_invalid(void **state)
{
	char long_atom[300];
	struct kd_ctrl c;
	ei_x_buff x;

	memset(long_atom, 'a', sizeof(long_atom) - 1);
	long_atom[sizeof(long_atom) - 1] = '\0';
	ei_x_new(&x);
	assert_int_equal(kd_ctrl_encode_link(&x, &pid_a, &pid_b), 0);
	assert_int_equal(kd_ctrl_encode_reg_send(&x, &pid_a, long_atom),
			 -EINVAL);
	assert_int_equal(kd_ctrl_encode_exit(&x, &pid_a, &pid_b, "\xff\xfe"),
			 -EINVAL);
	assert_int_equal(kd_ctrl_encode_monitor_p(&x, &pid_a, &pid_b, "srv",
						  &ref_a),
			 -EINVAL);
	assert_int_equal(kd_ctrl_encode_demonitor_p(&x, &pid_a, NULL, NULL,
						    &ref_a),
			 -EINVAL);
	/* the failed calls left the first message alone */
	decode_encoded(&x, &c, false);
	assert_int_equal(c.op, KD_DOP_LINK);
	ei_x_free(&x);
}

/* A fun's module, function and arity must have the types ei decodes. */
static void test_validate_fun_part_types(void **state)
{
	static const uint8_t good_export[] = { 113, 119, 1, 'm', 119, 1, 'f',
					       97, 1 };
	static const uint8_t int_module[] = { 113, 97, 1, 119, 1, 'f', 97, 1 };
	static const uint8_t big_arity[] = { 113, 119, 1, 'm', 119, 1, 'f', 98,
					     0, 0, 0, 1 };
	size_t len = 0;

	(void)state;
	assert_int_equal(kd_etf_validate(good_export, sizeof(good_export),
					 &len),
			 0);
	assert_int_equal(len, sizeof(good_export));
	assert_int_equal(kd_etf_validate(int_module, sizeof(int_module), &len),
			 -EPROTO);
	assert_int_equal(kd_etf_validate(big_arity, sizeof(big_arity), &len),
			 -EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validate_fun_part_types),
		cmocka_unit_test(test_decode_pass_through_ops),
		cmocka_unit_test(test_decode_dist_header_ops),
		cmocka_unit_test(test_decode_old_pid_ext),
		cmocka_unit_test(test_decode_altact_targets),
		cmocka_unit_test(test_decode_altact_token_mismatch),
		cmocka_unit_test(test_decode_unknown_op),
		cmocka_unit_test(test_decode_rejects_bad_shapes),
		cmocka_unit_test(test_decode_rejects_payload_mismatch),
		cmocka_unit_test(test_decode_rejects_headers),
		cmocka_unit_test(test_decode_truncated_everywhere),
		cmocka_unit_test(test_decode_random_bytes),
		cmocka_unit_test(test_etf_validate_happy),
		cmocka_unit_test(test_etf_validate_truncated),
		cmocka_unit_test(test_etf_validate_depth),
		cmocka_unit_test(test_etf_validate_tail_chain),
		cmocka_unit_test(test_etf_validate_adversarial),
		cmocka_unit_test(test_etf_validate_float_text),
		cmocka_unit_test(test_etf_validate_fun_size),
		cmocka_unit_test(test_frag_in_order),
		cmocka_unit_test(test_frag_single),
		cmocka_unit_test(test_frag_interleaved),
		cmocka_unit_test(test_frag_sequence_errors),
		cmocka_unit_test(test_frag_bad_headers),
		cmocka_unit_test(test_frag_size_limit),
		cmocka_unit_test(test_frag_sequence_cap),
		cmocka_unit_test(test_frag_encode_round_trip),
		cmocka_unit_test(test_frag_encode_edges),
		cmocka_unit_test(test_encode_send_family),
		cmocka_unit_test(test_encode_link_family),
		cmocka_unit_test(test_encode_monitor_family),
		cmocka_unit_test(test_encode_spawn_reply),
		cmocka_unit_test(test_encode_rejects_invalid),
	};

	return cmocka_run_group_tests_name("control", tests, setup_ids, NULL);
}
