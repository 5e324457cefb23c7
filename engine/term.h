/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Erlang term syntax: the language of -ssl_dist_optfile and of the CLI's
 * TERM arguments. Parses text into a tree and encodes a tree as external
 * term format with ei.
 *
 * Supported: integers (decimal, Base#Digits, $c characters, bignums as
 * text), floats, atoms (bare and quoted), strings (with escapes), binaries
 * <<"..">> and <<1,2,3>>, lists (with | tails), tuples, maps #{K => V},
 * and fun M:F/A. Comments (%) and a "%% coding: utf-8" line are accepted.
 * Remote calls M:F(Args) are accepted only through kd_term_parse_flags()
 * with KD_TERM_PARSE_CALLS, for options that OTP evaluates such as
 * public_key:pkix_verify_hostname_match_fun(https).
 */
#ifndef KD_TERM_H
#define KD_TERM_H

#include <stddef.h>
#include <stdint.h>

#include <ei.h>

enum kd_term_type {
	KD_TERM_INTEGER,
	KD_TERM_BIGNUM, /* integer that does not fit int64: decimal text */
	KD_TERM_FLOAT,
	KD_TERM_ATOM,
	KD_TERM_STRING, /* "..." : a list of code points in Erlang */
	KD_TERM_BINARY,
	KD_TERM_LIST,
	KD_TERM_TUPLE,
	KD_TERM_MAP, /* items alternate key, value */
	KD_TERM_FUN, /* fun M:F/A */
	KD_TERM_CALL, /* M:F(Args), only with KD_TERM_PARSE_CALLS */
};

/* Limits that keep hostile input from exhausting the stack or memory. */
#define KD_TERM_MAX_DEPTH 256
#define KD_TERM_MAX_TEXT (16u << 20) /* bytes of input */
#define KD_TERM_MAX_ATOM 255	     /* characters, as in Erlang */
#define KD_TERM_MAX_DIGITS 4096	     /* digits of one integer literal */

enum kd_term_parse_flag {
	KD_TERM_PARSE_CALLS = 1u << 0, /* accept M:F(Args) as KD_TERM_CALL */
	/* The term must end with '.', as erl_parse requires of a file. */
	KD_TERM_PARSE_DOT = 1u << 1,
};

struct kd_term {
	enum kd_term_type type;
	int line; /* 1-based source line, for error messages */
	union {
		int64_t integer;
		double flt;
		/* ATOM, STRING (UTF-8), BINARY, BIGNUM: bytes and length,
		 * NUL-terminated for convenience. */
		struct {
			char *bytes;
			size_t len;
		} text;
		/* LIST, TUPLE, MAP. A list's @tail is NULL for a proper
		 * list. */
		struct {
			struct kd_term **items;
			size_t n;
			struct kd_term *tail;
		} seq;
		struct {
			char *module;
			char *function;
			unsigned arity;
		} fun;
		/* CALL: the arguments are terms, not evaluated. */
		struct {
			char *module;
			char *function;
			struct kd_term **args;
			size_t n;
		} call;
	} u;
};

/*
 * Parses exactly one term from @text, optionally followed by '.', then
 * only whitespace and comments. On failure returns a negative errno and
 * writes "line N: what was expected, what was found" into @err.
 */
int kd_term_parse(const char *text, size_t len, struct kd_term **out,
		  char *err, size_t errlen);
/* As kd_term_parse(), with KD_TERM_PARSE_* @flags. */
int kd_term_parse_flags(const char *text, size_t len, unsigned flags,
			struct kd_term **out, char *err, size_t errlen);
void kd_term_free(struct kd_term *term);

/*
 * Appends @term to @x as external term format (no version byte). Fails
 * with -EOPNOTSUPP for a KD_TERM_CALL, -ENOMEM when @x cannot grow; the
 * sentence is in kd_last_error().
 */
int kd_term_encode(const struct kd_term *term, ei_x_buff *x);

/* Formats @term in Erlang syntax, for messages. Truncates to @cap. */
void kd_term_format(const struct kd_term *term, char *buf, size_t cap);

/* True if @term is the atom @name. */
int kd_term_is_atom(const struct kd_term *term, const char *name);
/* In a proper list of 2-tuples, the value of the first {@key, V}. */
const struct kd_term *kd_term_proplist_get(const struct kd_term *list,
					   const char *key);

#endif
