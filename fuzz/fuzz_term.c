// SPDX-License-Identifier: Apache-2.0
/*
 * The term parser used by the CLI and the options file: the input is
 * Erlang term text. A parsed term is formatted, encoded with
 * kd_term_encode(), checked with kd_etf_validate(), and decoded back with
 * ei, which must find the same structure and values.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "control.h"
#include "fuzz.h"
#include "term.h"

static void term_match(const struct kd_term *t, const char *buf, int *index,
		       int depth);

static void term_match_items(struct kd_term *const *items, size_t n,
			     const char *buf, int *index, int depth)
{
	for (size_t i = 0; i < n; i++)
		term_match(items[i], buf, index, depth + 1);
}

static void term_match_list(const struct kd_term *t, const char *buf,
			    int *index, int depth)
{
	int arity = -1;

	kd_fuzz_check(ei_decode_list_header(buf, index, &arity) == 0);
	kd_fuzz_check((size_t)arity == t->u.seq.n);
	term_match_items(t->u.seq.items, t->u.seq.n, buf, index, depth);
	if (!t->u.seq.n)
		return;
	if (t->u.seq.tail)
		term_match(t->u.seq.tail, buf, index, depth + 1);
	else
		kd_fuzz_check(ei_decode_list_header(buf, index, &arity) == 0 &&
			      arity == 0);
}

/* Decodes the term at @index with ei and compares it with @t. */
static void term_match(const struct kd_term *t, const char *buf, int *index,
		       int depth)
{
	char atom[MAXATOMLEN_UTF8];
	long long ll;
	double d;
	int arity;
	long blen;
	void *bin;

	kd_fuzz_check(depth <= KD_TERM_MAX_DEPTH + 1);
	switch (t->type) {
	case KD_TERM_INTEGER:
		kd_fuzz_check(ei_decode_longlong(buf, index, &ll) == 0);
		kd_fuzz_check(ll == t->u.integer);
		return;
	case KD_TERM_FLOAT:
		kd_fuzz_check(ei_decode_double(buf, index, &d) == 0);
		kd_fuzz_check(d == t->u.flt || (isnan(d) && isnan(t->u.flt)));
		return;
	case KD_TERM_ATOM:
		kd_fuzz_check(ei_decode_atom_as(buf, index, atom, sizeof(atom),
						ERLANG_UTF8, NULL, NULL) == 0);
		kd_fuzz_check(strlen(atom) == t->u.text.len);
		kd_fuzz_check(!memcmp(atom, t->u.text.bytes, t->u.text.len));
		return;
	case KD_TERM_BINARY:
		bin = malloc(t->u.text.len + 1);
		kd_fuzz_check(bin != NULL);
		kd_fuzz_check(ei_decode_binary(buf, index, bin, &blen) == 0);
		kd_fuzz_check((size_t)blen == t->u.text.len);
		kd_fuzz_check(!memcmp(bin, t->u.text.bytes, t->u.text.len));
		free(bin);
		return;
	case KD_TERM_LIST:
		term_match_list(t, buf, index, depth);
		return;
	case KD_TERM_TUPLE:
		kd_fuzz_check(ei_decode_tuple_header(buf, index, &arity) == 0);
		kd_fuzz_check((size_t)arity == t->u.seq.n);
		term_match_items(t->u.seq.items, t->u.seq.n, buf, index, depth);
		return;
	case KD_TERM_MAP:
		kd_fuzz_check(ei_decode_map_header(buf, index, &arity) == 0);
		kd_fuzz_check((size_t)arity * 2 == t->u.seq.n);
		term_match_items(t->u.seq.items, t->u.seq.n, buf, index, depth);
		return;
	default:
		/* Bignums, strings and funs: the encoding has its own form. */
		kd_fuzz_check(ei_skip_term(buf, index) == 0);
		return;
	}
}

static void term_check_encoding(const struct kd_term *t)
{
	size_t term_len = 0;
	ei_x_buff x;
	int ret, index = 0;

	kd_fuzz_check(ei_x_new(&x) == 0);
	ret = kd_term_encode(t, &x);
	if (ret == 0) {
		kd_fuzz_check(kd_etf_validate((const uint8_t *)x.buff,
					      (size_t)x.index,
					      &term_len) == 0);
		kd_fuzz_check(term_len == (size_t)x.index);
		term_match(t, x.buff, &index, 0);
		kd_fuzz_check(index == x.index);
	} else {
		kd_fuzz_check(ret == -EOPNOTSUPP || ret == -ENOMEM ||
			      ret == -EINVAL || ret == -ERANGE);
	}
	ei_x_free(&x);
}

int kd_fuzz_term(const uint8_t *data, size_t size)
{
	struct kd_term *plain = NULL, *calls = NULL;
	char err[512], text[1024];
	int ret_plain, ret_calls;

	err[0] = '\0';
	ret_plain = kd_term_parse((const char *)data, size, &plain, err,
				  sizeof(err));
	if (ret_plain < 0)
		kd_fuzz_check(err[0] != '\0');
	ret_calls = kd_term_parse_flags((const char *)data, size,
					KD_TERM_PARSE_CALLS, &calls, err,
					sizeof(err));
	/* Accepting calls only widens the language. */
	if (ret_plain == 0)
		kd_fuzz_check(ret_calls == 0);
	if (ret_plain == 0) {
		kd_term_format(plain, text, sizeof(text));
		kd_fuzz_check(memchr(text, 0, sizeof(text)) != NULL);
		term_check_encoding(plain);
	}
	if (ret_calls == 0)
		term_check_encoding(calls);
	kd_term_free(plain);
	kd_term_free(calls);
	return 0;
}

KD_FUZZ_TARGET(kd_fuzz_term)
