// SPDX-License-Identifier: Apache-2.0
/* Unit tests of the Erlang term parser (engine/term.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "term.h"

static struct kd_term *parse_ok(const char *text)
{
	struct kd_term *t = NULL;
	char err[256] = "";
	int ret;

	ret = kd_term_parse(text, strlen(text), &t, err, sizeof(err));
	if (ret != 0)
		print_error("parse of %s failed: %s\n", text, err);
	assert_int_equal(ret, 0);
	assert_non_null(t);
	return t;
}

/* Parses @text, which must fail, and returns the message. */
static const char *parse_fail(const char *text, int expected_ret)
{
	static char err[256];
	struct kd_term *t = NULL;
	int ret;

	err[0] = '\0';
	ret = kd_term_parse(text, strlen(text), &t, err, sizeof(err));
	assert_int_equal(ret, expected_ret);
	assert_null(t);
	return err;
}

/* Parses and formats back. */
static void assert_round_trip(const char *text, const char *formatted)
{
	struct kd_term *t = parse_ok(text);
	char buf[512];

	kd_term_format(t, buf, sizeof(buf));
	assert_string_equal(buf, formatted);
	kd_term_free(t);
}

static void test_integer_forms(void **state)
{
	struct kd_term *t;

	assert_round_trip("42", "42");
	assert_round_trip("-7", "-7");
	assert_round_trip("+7", "7");
	assert_round_trip("16#ff", "255");
	assert_round_trip("2#1010", "10");
	assert_round_trip("36#Zz", "1295");
	assert_round_trip("1_000_000", "1000000");
	assert_round_trip("$a", "97");
	assert_round_trip("$\\n", "10");
	assert_round_trip("$\\x{263A}", "9786");
	assert_round_trip("$\\101", "65");
	assert_round_trip("$\\^a", "1");
	assert_round_trip("$ ", "32");
	assert_round_trip("9223372036854775807", "9223372036854775807");
	assert_round_trip("-9223372036854775808", "-9223372036854775808");

	t = parse_ok("-9223372036854775808");
	assert_int_equal(t->type, KD_TERM_INTEGER);
	assert_true(t->u.integer == INT64_MIN);
	kd_term_free(t);
}

static void test_bignum_as_text(void **state)
{
	struct kd_term *t;

	t = parse_ok("123456789012345678901234567890");
	assert_int_equal(t->type, KD_TERM_BIGNUM);
	assert_string_equal(t->u.text.bytes, "123456789012345678901234567890");
	kd_term_free(t);

	t = parse_ok("-9223372036854775809");
	assert_int_equal(t->type, KD_TERM_BIGNUM);
	assert_string_equal(t->u.text.bytes, "-9223372036854775809");
	kd_term_free(t);

	/* 2^64 in hexadecimal comes out as decimal text. */
	t = parse_ok("16#10000000000000000");
	assert_int_equal(t->type, KD_TERM_BIGNUM);
	assert_string_equal(t->u.text.bytes, "18446744073709551616");
	kd_term_free(t);
}

static void test_float_forms(void **state)
{
	struct kd_term *t;

	t = parse_ok("1.5e3");
	assert_int_equal(t->type, KD_TERM_FLOAT);
	assert_true(t->u.flt == 1500.0);
	kd_term_free(t);

	t = parse_ok("-0.25");
	assert_true(t->u.flt == -0.25);
	kd_term_free(t);

	t = parse_ok("2.0E-2");
	assert_true(t->u.flt == 0.02);
	kd_term_free(t);

	assert_round_trip("3.0", "3.0");
	assert_string_equal(parse_fail("1.0e999", -EINVAL),
			    "line 1: float 1.0e999 is out of range");
}

static void test_atom_forms(void **state)
{
	struct kd_term *t;

	assert_round_trip("ok", "ok");
	assert_round_trip("node@host", "node@host");
	assert_round_trip("'tlsv1.3'", "'tlsv1.3'");
	assert_round_trip("'Hello world'", "'Hello world'");
	assert_round_trip("'it\\'s'", "'it\\'s'");
	assert_round_trip("'end'", "'end'");
	assert_round_trip("''", "''");

	t = parse_ok("'a\\nb'");
	assert_int_equal(t->type, KD_TERM_ATOM);
	assert_string_equal(t->u.text.bytes, "a\nb");
	assert_true(kd_term_is_atom(t, "a\nb"));
	kd_term_free(t);
}

static void test_string_escapes(void **state)
{
	struct kd_term *t;

	t = parse_ok("\"a\\n\\t\\\\\\\"\\x41\\x{263a}\\101\\s\\e\"");
	assert_int_equal(t->type, KD_TERM_STRING);
	assert_string_equal(t->u.text.bytes,
			    "a\n\t\\\"A\xe2\x98\xba" "A \033");
	kd_term_free(t);

	t = parse_ok("\"caf\xc3\xa9\"");
	assert_string_equal(t->u.text.bytes, "caf\xc3\xa9");
	kd_term_free(t);

	t = parse_ok("\"ab\" \"cd\"\n  \"ef\"");
	assert_string_equal(t->u.text.bytes, "abcdef");
	assert_int_equal(t->u.text.len, 6);
	kd_term_free(t);

	t = parse_ok("\"\"");
	assert_int_equal(t->type, KD_TERM_STRING);
	assert_int_equal(t->u.text.len, 0);
	kd_term_free(t);
}

static void test_coding_latin1(void **state)
{
	struct kd_term *t;

	/* 0xE9 is é in Latin-1 and is stored as UTF-8. */
	t = parse_ok("%% coding: latin-1\n\"caf\xe9\"");
	assert_string_equal(t->u.text.bytes, "caf\xc3\xa9");
	kd_term_free(t);

	/* Without a coding line, bytes that are not UTF-8 read as Latin-1. */
	t = parse_ok("\"\xe9t\xe9\"");
	assert_string_equal(t->u.text.bytes, "\xc3\xa9t\xc3\xa9");
	kd_term_free(t);

	t = parse_ok("%% -*- coding: utf-8 -*-\n\"\xc3\xa9\"");
	assert_string_equal(t->u.text.bytes, "\xc3\xa9");
	kd_term_free(t);

	assert_string_equal(parse_fail("%% coding: utf-8\n\"\xe9\"", -EINVAL),
			    "line 2: invalid UTF-8 byte 0xe9; save the file as "
			    "UTF-8 or start it with '%% coding: latin-1'");
	assert_string_equal(parse_fail("%% coding: ebcdic\n1", -EINVAL),
			    "line 1: encoding 'ebcdic' is not supported; use "
			    "'coding: utf-8' or 'coding: latin-1'");
}

static void test_binary_forms(void **state)
{
	struct kd_term *t;

	t = parse_ok("<<1,2,255>>");
	assert_int_equal(t->type, KD_TERM_BINARY);
	assert_int_equal(t->u.text.len, 3);
	assert_memory_equal(t->u.text.bytes, "\x01\x02\xff", 3);
	kd_term_free(t);

	t = parse_ok("<<\"text\", $!, 0>>");
	assert_int_equal(t->u.text.len, 6);
	assert_memory_equal(t->u.text.bytes, "text!\0", 6);
	kd_term_free(t);

	t = parse_ok("<<\"\\x{263a}\"/utf8>>");
	assert_int_equal(t->u.text.len, 3);
	assert_memory_equal(t->u.text.bytes, "\xe2\x98\xba", 3);
	kd_term_free(t);

	assert_round_trip("<<>>", "<<>>");
	assert_round_trip("<<\"abc\">>", "<<\"abc\">>");
	assert_round_trip("<<0,200>>", "<<0,200>>");
}

static void test_binary_rejects_big_byte(void **state)
{
	assert_string_equal(parse_fail("<<1,\n256>>", -EINVAL),
			    "line 2: binary byte '256' is out of range: each "
			    "byte of <<...>> is 0 to 255");
	assert_string_equal(parse_fail("<<-1>>", -EINVAL),
			    "line 1: binary byte -'1' is out of range: each "
			    "byte of <<...>> is 0 to 255");
	assert_string_equal(parse_fail("<<\"\\x{263a}\">>", -EINVAL),
			    "line 1: binary string has character U+263A "
			    "above 255: write \"...\"/utf8 to store it as "
			    "UTF-8");
	assert_string_equal(parse_fail("<<1:16>>", -EINVAL),
			    "line 1: binary segment sizes and types are not "
			    "supported: write bytes 0 to 255 or \"...\"/utf8");
}

static void test_list_forms(void **state)
{
	struct kd_term *t;

	assert_round_trip("[]", "[]");
	assert_round_trip("[1, two, \"three\"]", "[1,two,\"three\"]");
	assert_round_trip("[a | b]", "[a|b]");
	assert_round_trip("[a, b | [c]]", "[a,b,c]");
	assert_round_trip("[a | \"bc\"]", "[a,98,99]");
	assert_round_trip("[a | []]", "[a]");

	t = parse_ok("[h | t]");
	assert_int_equal(t->u.seq.n, 1);
	assert_non_null(t->u.seq.tail);
	assert_true(kd_term_is_atom(t->u.seq.tail, "t"));
	kd_term_free(t);
}

static void test_tuple_map_fun(void **state)
{
	struct kd_term *t;

	assert_round_trip("{}", "{}");
	assert_round_trip("{a, {b, [c]}}", "{a,{b,[c]}}");
	assert_round_trip("#{}", "#{}");
	assert_round_trip("#{k => v, \"s\" => [1]}", "#{k => v,\"s\" => [1]}");
	assert_round_trip("fun m:f/3", "fun m:f/3");
	assert_round_trip("fun 'M':'f g'/0", "fun M:f g/0");

	t = parse_ok("fun inet_tls_dist:verify_client/3");
	assert_int_equal(t->type, KD_TERM_FUN);
	assert_string_equal(t->u.fun.module, "inet_tls_dist");
	assert_string_equal(t->u.fun.function, "verify_client");
	assert_int_equal(t->u.fun.arity, 3);
	kd_term_free(t);
}

static void test_proplist_get(void **state)
{
	struct kd_term *t = parse_ok("[{a, 1}, b, {c, x, y}, {c, 3}, {a, 2}]");
	const struct kd_term *v;

	v = kd_term_proplist_get(t, "a");
	assert_non_null(v);
	assert_int_equal(v->u.integer, 1);
	v = kd_term_proplist_get(t, "c");
	assert_non_null(v);
	assert_int_equal(v->u.integer, 3);
	assert_null(kd_term_proplist_get(t, "b"));
	assert_null(kd_term_proplist_get(t, "zzz"));
	kd_term_free(t);
}

static void test_comments_and_dot(void **state)
{
	struct kd_term *t;

	t = parse_ok("% leading\n[a, % inline\n b]. % trailing\n\n");
	assert_int_equal(t->u.seq.n, 2);
	kd_term_free(t);

	t = parse_ok("[{server, []}]");
	assert_int_equal(t->type, KD_TERM_LIST);
	kd_term_free(t);
}

static void test_calls_need_flag(void **state)
{
	static const char text[] =
		"{match_fun, public_key:pkix_verify_hostname_match_fun(https)}";
	struct kd_term *t = NULL;
	char err[256];
	ei_x_buff x;

	assert_int_equal(kd_term_parse(text, strlen(text), &t, err,
				       sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "line 1: function calls such as "
				 "public_key:... are not allowed in a term");

	assert_int_equal(kd_term_parse_flags(text, strlen(text),
					     KD_TERM_PARSE_CALLS, &t, err,
					     sizeof(err)),
			 0);
	assert_int_equal(t->u.seq.items[1]->type, KD_TERM_CALL);
	assert_string_equal(t->u.seq.items[1]->u.call.module, "public_key");
	assert_int_equal(t->u.seq.items[1]->u.call.n, 1);

	ei_x_new(&x);
	assert_int_equal(kd_term_encode(t, &x), -EOPNOTSUPP);
	ei_x_free(&x);
	kd_term_free(t);
}

/* Adversarial input: each case gives a line number and a reason. */
static void test_syntax_errors(void **state)
{
	static const struct {
		const char *text;
		const char *err;
	} cases[] = {
		{ "[a,\n b,\n c foo]",
		  "line 3: expected ',' or ']' after list element, found "
		  "'foo'" },
		{ "[1, 2", "line 1: expected ',' or ']' after list element, "
			   "found end of input" },
		{ "[1,]", "line 1: expected a list element after ',', found "
			  "']'" },
		{ "{a b}", "line 1: expected ',' or '}' after tuple element, "
			   "found 'b'" },
		{ "#{a := 1}", "line 1: ':=' updates an existing key; write "
			       "'=>' in a map literal" },
		{ "#{a}", "line 1: expected '=>' after map key, found '}'" },
		{ "Foo", "line 1: variable 'Foo' is not allowed in a term: "
			 "quote it as an atom or a string" },
		{ "case", "line 1: 'case' is a reserved word: quote it as "
			  "'case' to use it as an atom" },
		{ "\"abc", "line 1: string is not terminated: add the closing "
			   "\"" },
		{ "'abc", "line 1: quoted atom is not terminated: add the "
			  "closing '" },
		{ "1 2", "line 1: expected end of input after the term, found "
			 "'2'" },
		{ "a. b", "line 1: expected end of input after the term, found "
			  "'b'" },
		{ "", "line 1: expected a term, found end of input" },
		{ "% only a comment\n", "line 2: expected a term, found end of "
					"input" },
		{ "fun f/1", "line 1: fun f/... names a local function, which "
			     "has no meaning outside a module: write fun "
			     "Module:f/Arity" },
		{ "fun m:f/256", "line 1: expected an arity from 0 to 255, "
				 "found '256'" },
		{ "37#1", "line 1: invalid base 37 in 37#...: the base is 2 to "
			  "36" },
		{ "2#102", "line 1: expected end of input after the term, "
			   "found '2'" },
		{ "\"\\x{110000}\"", "line 1: invalid escape: \\x{110000} is "
				     "not a Unicode code point" },
		{ "\"\\xZ\"", "line 1: invalid escape: \\x needs two "
			      "hexadecimal digits or \\x{HEX}" },
		{ "$", "line 1: input ends after '$': write a character such "
		       "as $a" },
		{ "- a", "line 1: expected a number after '-', found 'a'" },
		{ "[a | b, c]", "line 1: expected ']' after the list tail, "
				"found ','" },
		{ "a ; b", "line 1: unexpected character ';'" },
		{ "\x01", "line 1: unexpected byte 0x01" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("input: %s\n", cases[i].text);
		assert_string_equal(parse_fail(cases[i].text, -EINVAL),
				    cases[i].err);
	}
}

static void test_atom_too_long(void **state)
{
	char text[300];

	memset(text, 'a', 256);
	text[256] = '\0';
	assert_string_equal(parse_fail(text, -EINVAL),
			    "line 1: atom or variable is longer than 255 "
			    "characters");
	memset(text, 'a', 255);
	text[255] = '\0';
	kd_term_free(parse_ok(text));
}

/* A deeply nested term must fail cleanly, not exhaust the stack. */
static void test_depth_bomb(void **state)
{
	size_t n = 100000, i;
	char *text = malloc(2 * n + 1);
	char expected[64];

	assert_non_null(text);
	for (i = 0; i < n; i++) {
		text[i] = '[';
		text[n + i] = ']';
	}
	text[2 * n] = '\0';
	snprintf(expected, sizeof(expected),
		 "line 1: term is nested deeper than %d levels",
		 KD_TERM_MAX_DEPTH);
	assert_string_equal(parse_fail(text, -EINVAL), expected);

	/* Exactly the limit is fine. */
	text[KD_TERM_MAX_DEPTH] = '\0';
	memset(text + KD_TERM_MAX_DEPTH, ']', KD_TERM_MAX_DEPTH);
	text[2 * KD_TERM_MAX_DEPTH] = '\0';
	kd_term_free(parse_ok(text));
	free(text);
}

static void test_size_limits(void **state)
{
	struct kd_term *t = NULL;
	char err[128], digits[KD_TERM_MAX_DIGITS + 2];

	assert_int_equal(kd_term_parse("1", (size_t)KD_TERM_MAX_TEXT + 1, &t,
				       err, sizeof(err)),
			 -E2BIG);
	assert_null(t);

	memset(digits, '7', sizeof(digits) - 1);
	digits[sizeof(digits) - 1] = '\0';
	assert_string_equal(parse_fail(digits, -EINVAL),
			    "line 1: integer literal has more than 4096 "
			    "digits");
}

/* Every prefix of a valid term is either a valid term or a clean error. */
static void test_truncated_input(void **state)
{
	static const char text[] =
		"[{server, [{certfile, \"/x \\x{263a}.pem\"}, <<1,2>>, "
		"#{k => -16#ff}, fun m:f/3, 1.5e3, 'q a', $\\n]}].";
	struct kd_term *t;
	char err[256];
	size_t len;
	int ret;

	for (len = 0; len < sizeof(text) - 1; len++) {
		t = NULL;
		ret = kd_term_parse(text, len, &t, err, sizeof(err));
		if (ret == 0) {
			kd_term_free(t);
			continue;
		}
		assert_int_equal(ret, -EINVAL);
		assert_null(t);
		assert_true(strncmp(err, "line 1: ", 8) == 0);
	}
}

static void test_null_error_buffer(void **state)
{
	struct kd_term *t = NULL;

	assert_int_equal(kd_term_parse("[", 1, &t, NULL, 0), -EINVAL);
	assert_null(t);
	kd_term_free(NULL);
}

/* Encode round trip: parse, encode, then decode with ei. */

static ei_x_buff encode_ok(const char *text)
{
	struct kd_term *t = parse_ok(text);
	ei_x_buff x;
	int index = 0, version;

	assert_int_equal(ei_x_new_with_version(&x), 0);
	assert_int_equal(kd_term_encode(t, &x), 0);
	kd_term_free(t);
	assert_int_equal(ei_decode_version(x.buff, &index, &version), 0);
	assert_int_equal(version, 131);
	return x;
}

static void test_encode_scalars(void **state)
{
	ei_x_buff x = encode_ok("{-5, 9223372036854775807, 1.5, ok, "
				"'\\x{263a}', <<1,2,255>>}");
	char atom[MAXATOMLEN_UTF8], bin[8];
	int index = 1, arity, type, size;
	long long ll;
	double d;
	long len;

	assert_int_equal(ei_decode_tuple_header(x.buff, &index, &arity), 0);
	assert_int_equal(arity, 6);
	assert_int_equal(ei_decode_longlong(x.buff, &index, &ll), 0);
	assert_int_equal(ll, -5);
	assert_int_equal(ei_decode_longlong(x.buff, &index, &ll), 0);
	assert_true(ll == INT64_MAX);
	assert_int_equal(ei_decode_double(x.buff, &index, &d), 0);
	assert_true(d == 1.5);
	assert_int_equal(ei_decode_atom(x.buff, &index, atom), 0);
	assert_string_equal(atom, "ok");
	assert_int_equal(ei_decode_atom_as(x.buff, &index, atom, sizeof(atom),
					   ERLANG_UTF8, NULL, NULL),
			 0);
	assert_string_equal(atom, "\xe2\x98\xba");
	assert_int_equal(ei_get_type(x.buff, &index, &type, &size), 0);
	assert_int_equal(type, ERL_BINARY_EXT);
	assert_int_equal(ei_decode_binary(x.buff, &index, bin, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(bin, "\x01\x02\xff", 3);
	assert_int_equal(index, x.index);
	ei_x_free(&x);
}

static void test_encode_strings(void **state)
{
	ei_x_buff x = encode_ok("[\"caf\\x{e9}\", \"\\x{263a}!\", \"\"]");
	int index = 1, arity, type, size;
	char text[16];
	long long ll;

	assert_int_equal(ei_decode_list_header(x.buff, &index, &arity), 0);
	assert_int_equal(arity, 3);
	/* All code points below 256: STRING_EXT with Latin-1 bytes. */
	assert_int_equal(ei_get_type(x.buff, &index, &type, &size), 0);
	assert_int_equal(type, ERL_STRING_EXT);
	assert_int_equal(ei_decode_string(x.buff, &index, text), 0);
	assert_string_equal(text, "caf\xe9");
	/* A code point above 255: a list of integers. */
	assert_int_equal(ei_decode_list_header(x.buff, &index, &arity), 0);
	assert_int_equal(arity, 2);
	assert_int_equal(ei_decode_longlong(x.buff, &index, &ll), 0);
	assert_int_equal(ll, 0x263a);
	assert_int_equal(ei_decode_longlong(x.buff, &index, &ll), 0);
	assert_int_equal(ll, '!');
	assert_int_equal(ei_decode_list_header(x.buff, &index, &arity), 0);
	assert_int_equal(arity, 0);
	/* The empty string is []. */
	assert_int_equal(ei_decode_list_header(x.buff, &index, &arity), 0);
	assert_int_equal(arity, 0);
	assert_int_equal(ei_decode_list_header(x.buff, &index, &arity), 0);
	assert_int_equal(arity, 0);
	assert_int_equal(index, x.index);
	ei_x_free(&x);
}

static void test_encode_containers(void **state)
{
	ei_x_buff x = encode_ok("#{k => [a | b], {} => fun m:f/3}");
	int index = 1, arity;
	char atom[MAXATOMLEN_UTF8];
	erlang_fun fun;

	assert_int_equal(ei_decode_map_header(x.buff, &index, &arity), 0);
	assert_int_equal(arity, 2);
	assert_int_equal(ei_decode_atom(x.buff, &index, atom), 0);
	assert_string_equal(atom, "k");
	assert_int_equal(ei_decode_list_header(x.buff, &index, &arity), 0);
	assert_int_equal(arity, 1);
	assert_int_equal(ei_decode_atom(x.buff, &index, atom), 0);
	assert_string_equal(atom, "a");
	assert_int_equal(ei_decode_atom(x.buff, &index, atom), 0);
	assert_string_equal(atom, "b");
	assert_int_equal(ei_decode_tuple_header(x.buff, &index, &arity), 0);
	assert_int_equal(arity, 0);
	assert_int_equal(ei_decode_fun(x.buff, &index, &fun), 0);
	assert_int_equal(fun.type, EI_FUN_EXPORT);
	assert_string_equal(fun.module, "m");
	assert_string_equal(fun.u.exprt.func, "f");
	assert_int_equal(fun.arity, 3);
	free_fun(&fun);
	assert_int_equal(index, x.index);
	ei_x_free(&x);
}

static void test_encode_bignums(void **state)
{
	ei_x_buff x = encode_ok("[18446744073709551615, 16#10000000000000000, "
				"-123456789012345678901234567890]");
	int index = 1, arity, type, size;
	unsigned long long ull;
	erlang_big *big;

	assert_int_equal(ei_decode_list_header(x.buff, &index, &arity), 0);
	assert_int_equal(arity, 3);
	assert_int_equal(ei_decode_ulonglong(x.buff, &index, &ull), 0);
	assert_true(ull == UINT64_MAX);

	/* 2^64: nine magnitude bytes, the last one 1. */
	assert_int_equal(ei_get_type(x.buff, &index, &type, &size), 0);
	assert_int_equal(type, ERL_SMALL_BIG_EXT);
	assert_int_equal(size, 9);
	big = ei_alloc_big(size);
	assert_int_equal(ei_decode_big(x.buff, &index, big), 0);
	assert_int_equal(big->is_neg, 0);
	assert_int_equal(((unsigned short *)big->digits)[4], 1);
	assert_int_equal(((unsigned short *)big->digits)[0], 0);
	ei_free_big(big);

	/* 123456789012345678901234567890 is 0x18EE90FF6C373E0EE4E3F0AD2. */
	assert_int_equal(ei_get_type(x.buff, &index, &type, &size), 0);
	assert_int_equal(type, ERL_SMALL_BIG_EXT);
	assert_int_equal(size, 13);
	big = ei_alloc_big(size);
	assert_int_equal(ei_decode_big(x.buff, &index, big), 0);
	assert_int_equal(big->is_neg, 1);
	assert_int_equal(((unsigned short *)big->digits)[0], 0x0ad2);
	assert_int_equal(((unsigned short *)big->digits)[6] & 0xff, 0x01);
	ei_free_big(big);
	ei_x_free(&x);
}

static void test_encode_bad_bignum_text(void **state)
{
	struct kd_term t = { .type = KD_TERM_BIGNUM, .line = 1 };
	char text[] = "12x4";
	ei_x_buff x;

	t.u.text.bytes = text;
	t.u.text.len = 4;
	ei_x_new(&x);
	assert_int_equal(kd_term_encode(&t, &x), -EINVAL);
	ei_x_free(&x);
}

static void test_format_truncates(void **state)
{
	struct kd_term *t = parse_ok("[aaaa, bbbb, cccc]");
	char buf[8];

	kd_term_format(t, buf, sizeof(buf));
	assert_string_equal(buf, "[aaaa,b");
	kd_term_free(t);
}

/* An options file needs the final '.', as erl_parse does; the CLI's
 * TERM arguments do not. */
static void test_dot_required_flag(void **state)
{
	struct kd_term *t = NULL;
	char err[256];

	(void)state;
	assert_int_equal(kd_term_parse_flags("[a]", 3, KD_TERM_PARSE_DOT, &t,
					     err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "'.'"));
	assert_int_equal(kd_term_parse_flags("[a]. % end\n", 11,
					     KD_TERM_PARSE_DOT, &t, err,
					     sizeof(err)),
			 0);
	kd_term_free(t);
	assert_int_equal(kd_term_parse("[a]", 3, &t, err, sizeof(err)), 0);
	kd_term_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dot_required_flag),
		cmocka_unit_test(test_integer_forms),
		cmocka_unit_test(test_bignum_as_text),
		cmocka_unit_test(test_float_forms),
		cmocka_unit_test(test_atom_forms),
		cmocka_unit_test(test_string_escapes),
		cmocka_unit_test(test_coding_latin1),
		cmocka_unit_test(test_binary_forms),
		cmocka_unit_test(test_binary_rejects_big_byte),
		cmocka_unit_test(test_list_forms),
		cmocka_unit_test(test_tuple_map_fun),
		cmocka_unit_test(test_proplist_get),
		cmocka_unit_test(test_comments_and_dot),
		cmocka_unit_test(test_calls_need_flag),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_atom_too_long),
		cmocka_unit_test(test_depth_bomb),
		cmocka_unit_test(test_size_limits),
		cmocka_unit_test(test_truncated_input),
		cmocka_unit_test(test_null_error_buffer),
		cmocka_unit_test(test_encode_scalars),
		cmocka_unit_test(test_encode_strings),
		cmocka_unit_test(test_encode_containers),
		cmocka_unit_test(test_encode_bignums),
		cmocka_unit_test(test_encode_bad_bignum_text),
		cmocka_unit_test(test_format_truncates),
	};

	return cmocka_run_group_tests_name("term", tests, NULL, NULL);
}
