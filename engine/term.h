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
	} u;
};

/*
 * Parses exactly one term from @text, optionally followed by '.', then
 * only whitespace and comments. On failure returns a negative errno and
 * writes "line N: what was expected, what was found" into @err.
 */
int kd_term_parse(const char *text, size_t len, struct kd_term **out,
		  char *err, size_t errlen);
void kd_term_free(struct kd_term *term);

/* Appends @term to @x as external term format (no version byte). */
int kd_term_encode(const struct kd_term *term, ei_x_buff *x);

/* Formats @term in Erlang syntax, for messages. Truncates to @cap. */
void kd_term_format(const struct kd_term *term, char *buf, size_t cap);

/* True if @term is the atom @name. */
int kd_term_is_atom(const struct kd_term *term, const char *name);
/* In a proper list of 2-tuples, the value of the first {@key, V}. */
const struct kd_term *kd_term_proplist_get(const struct kd_term *list,
					   const char *key);

#endif
