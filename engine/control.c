/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connected-phase distribution packets. The packet forms and control
 * tuples follow OTP's erl_dist_protocol.md ("Protocol between connected
 * nodes"); the distribution header, fragment headers and term tags follow
 * erl_ext_dist.md. Every term from the peer is walked by a bounded
 * validator before any ei_decode_*() call, because ei trusts its input
 * to be complete.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "control.h"

#define ETF_VERSION 131
#define ETF_DIST_HEADER 68
#define ETF_DIST_FRAG_HEADER 69
#define ETF_DIST_FRAG_CONT 70
#define ETF_PASS_THROUGH 112 /* 'p' */

/* Tags that ei.h does not name. */
#define ETF_NEW_FLOAT_EXT 70
#define ETF_COMPRESSED 80
#define ETF_ATOM_CACHE_REF 82
#define ETF_LOCAL_EXT 121

#define ETF_MAX_ATOM_BYTES (MAXATOMLEN_UTF8 - 1) /* 255 UTF-8 characters */
#define ETF_MAX_REF_WORDS 5 /* erlang_ref.n[] in ei */

#define FRAG_FIRST_HDR_LEN 19 /* 131 69 SeqId:64 FragId:64 NumAtomRefs */
#define FRAG_CONT_HDR_LEN 18 /* 131 70 SeqId:64 FragId:64 */
#define DIST_HDR_LEN 3 /* 131 68 0 */

static int fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

static uint64_t get_be(const uint8_t *p, unsigned size)
{
	uint64_t v = 0;

	while (size--)
		v = (v << 8) | *p++;
	return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = v & 0xff;
		v >>= 8;
	}
}

/*
 * Term validator. Each tag has a shape, and the walker reads the fixed
 * part of a term and reports how many nested terms follow it. Those wait
 * on an explicit stack, so deep input cannot exhaust the C stack.
 */
enum etf_shape {
	SHAPE_INVALID = 0,
	SHAPE_FIXED, /* @fixed bytes */
	SHAPE_BYTES, /* length field, @fixed extra bytes, then the data */
	SHAPE_NODE, /* node atom, then @fixed bytes */
	SHAPE_REF, /* Len:16, node atom, @fixed creation bytes, Len words */
	SHAPE_SEQ, /* count field; count * @mult + @fixed nested terms */
	SHAPE_NEW_FUN, /* Size:32 covers the whole fun */
	SHAPE_FLOAT_TEXT, /* 31 bytes of text, NUL-terminated */
};

struct etf_tag {
	uint8_t shape;
	uint8_t size_len; /* bytes in the length or count field */
	uint8_t fixed;
	uint8_t mult;
	uint16_t max_len; /* atoms: maximum text length, 0 for no limit */
	const char *noun;
};

static const struct etf_tag etf_tags[256] = {
	[ETF_NEW_FLOAT_EXT] = { SHAPE_FIXED, 0, 8, 0, 0, "a float" },
	[ERL_BIT_BINARY_EXT] = { SHAPE_BYTES, 4, 1, 0, 0, "a bitstring" },
	[ERL_NEW_PID_EXT] = { SHAPE_NODE, 0, 12, 0, 0, "a pid" },
	[ERL_NEW_PORT_EXT] = { SHAPE_NODE, 0, 8, 0, 0, "a port" },
	[ERL_NEWER_REFERENCE_EXT] = { SHAPE_REF, 0, 4, 0, 0, "a reference" },
	[ERL_SMALL_INTEGER_EXT] = { SHAPE_FIXED, 0, 1, 0, 0, "an integer" },
	[ERL_INTEGER_EXT] = { SHAPE_FIXED, 0, 4, 0, 0, "an integer" },
	[ERL_FLOAT_EXT] = { SHAPE_FLOAT_TEXT, 0, 31, 0, 0, "a float" },
	[ERL_ATOM_EXT] = { SHAPE_BYTES, 2, 0, 0, 255, "an atom" },
	[ERL_REFERENCE_EXT] = { SHAPE_NODE, 0, 5, 0, 0, "a reference" },
	[ERL_PORT_EXT] = { SHAPE_NODE, 0, 5, 0, 0, "a port" },
	[ERL_PID_EXT] = { SHAPE_NODE, 0, 9, 0, 0, "a pid" },
	[ERL_SMALL_TUPLE_EXT] = { SHAPE_SEQ, 1, 0, 1, 0, "a tuple" },
	[ERL_LARGE_TUPLE_EXT] = { SHAPE_SEQ, 4, 0, 1, 0, "a tuple" },
	[ERL_NIL_EXT] = { SHAPE_FIXED, 0, 0, 0, 0, "an empty list" },
	[ERL_STRING_EXT] = { SHAPE_BYTES, 2, 0, 0, 0, "a string" },
	[ERL_LIST_EXT] = { SHAPE_SEQ, 4, 1, 1, 0, "a list" },
	[ERL_BINARY_EXT] = { SHAPE_BYTES, 4, 0, 0, 0, "a binary" },
	[ERL_SMALL_BIG_EXT] = { SHAPE_BYTES, 1, 1, 0, 0, "a big integer" },
	[ERL_LARGE_BIG_EXT] = { SHAPE_BYTES, 4, 1, 0, 0, "a big integer" },
	[ERL_NEW_FUN_EXT] = { SHAPE_NEW_FUN, 4, 0, 0, 0, "a fun" },
	[ERL_EXPORT_EXT] = { SHAPE_SEQ, 0, 3, 0, 0, "a fun" },
	[ERL_NEW_REFERENCE_EXT] = { SHAPE_REF, 0, 1, 0, 0, "a reference" },
	[ERL_SMALL_ATOM_EXT] = { SHAPE_BYTES, 1, 0, 0, 0, "an atom" },
	[ERL_MAP_EXT] = { SHAPE_SEQ, 4, 0, 2, 0, "a map" },
	[ERL_FUN_EXT] = { SHAPE_SEQ, 4, 4, 1, 0, "a fun" },
	[ERL_ATOM_UTF8_EXT] = { SHAPE_BYTES, 2, 0, 0, ETF_MAX_ATOM_BYTES,
				"an atom" },
	[ERL_SMALL_ATOM_UTF8_EXT] = { SHAPE_BYTES, 1, 0, 0, 0, "an atom" },
	[ERL_V4_PORT_EXT] = { SHAPE_NODE, 0, 12, 0, 0, "a port" },
};

static const char *tag_noun(uint8_t tag)
{
	if (etf_tags[tag].noun)
		return etf_tags[tag].noun;
	return "an unknown tag";
}

struct etf_frame {
	uint64_t left; /* nested terms still to read */
	size_t end; /* offset where the container must end, or 0 */
};

struct etf_walk {
	const uint8_t *buf;
	size_t len;
	size_t pos;
	char *err;
	size_t errlen;
};

static int walk_need(struct etf_walk *w, uint64_t n)
{
	if (n > w->len - w->pos)
		return fail(w->err, w->errlen, -EPROTO,
			    "term truncated: %llu bytes needed at offset %zu, %zu left",
			    (unsigned long long)n, w->pos, w->len - w->pos);
	return 0;
}

static int walk_uint(struct etf_walk *w, unsigned size, uint64_t *v)
{
	int ret = walk_need(w, size);

	if (ret)
		return ret;
	*v = get_be(w->buf + w->pos, size);
	w->pos += size;
	return 0;
}

static int walk_bytes(struct etf_walk *w, const struct etf_tag *d,
		      uint8_t tag)
{
	uint64_t n;
	int ret;

	ret = walk_uint(w, d->size_len, &n);
	if (ret)
		return ret;
	if (d->max_len && n > d->max_len)
		return fail(w->err, w->errlen, -EPROTO,
			    "atom of %llu bytes at offset %zu exceeds the limit of %u",
			    (unsigned long long)n, w->pos, d->max_len);
	ret = walk_need(w, n + d->fixed);
	if (ret)
		return ret;
	/* Bits used in the last byte: 1 to 8, or 0 for an empty bitstring,
	 * as ei_decode_bitstring() requires. */
	if (tag == ERL_BIT_BINARY_EXT &&
	    (w->buf[w->pos] > 8 || (w->buf[w->pos] == 0) != (n == 0)))
		return fail(w->err, w->errlen, -EPROTO,
			    "bitstring at offset %zu has %u bits in its last of %llu bytes, expected 1 to 8",
			    w->pos, w->buf[w->pos], (unsigned long long)n);
	w->pos += n + d->fixed;
	return 0;
}

/* The node name inside a pid, port or reference must be a plain atom. */
static int walk_node(struct etf_walk *w)
{
	uint8_t tag;
	int ret;

	ret = walk_need(w, 1);
	if (ret)
		return ret;
	tag = w->buf[w->pos];
	if (tag != ERL_ATOM_EXT && tag != ERL_ATOM_UTF8_EXT &&
	    tag != ERL_SMALL_ATOM_EXT && tag != ERL_SMALL_ATOM_UTF8_EXT)
		return fail(w->err, w->errlen, -EPROTO,
			    "node name at offset %zu: expected an atom, found %s (tag %u)",
			    w->pos, tag_noun(tag), tag);
	w->pos++;
	return walk_bytes(w, &etf_tags[tag], tag);
}

static int walk_ref(struct etf_walk *w, const struct etf_tag *d)
{
	uint64_t words;
	int ret;

	ret = walk_uint(w, 2, &words);
	if (ret)
		return ret;
	if (words < 1 || words > ETF_MAX_REF_WORDS)
		return fail(w->err, w->errlen, -EPROTO,
			    "reference at offset %zu has %llu words, expected 1 to %d",
			    w->pos, (unsigned long long)words,
			    ETF_MAX_REF_WORDS);
	ret = walk_node(w);
	if (ret)
		return ret;
	ret = walk_need(w, d->fixed + 4 * words);
	if (ret)
		return ret;
	w->pos += d->fixed + 4 * words;
	return 0;
}

/* NEW_FUN_EXT: Size:32 Arity:8 Uniq:128 Index:32 NumFree:32, then Module,
 * OldIndex, OldUniq, Pid and NumFree free variables, all within Size. */
static int walk_new_fun(struct etf_walk *w, struct etf_frame *child)
{
	size_t start = w->pos;
	uint64_t size, nfree;
	int ret;

	ret = walk_uint(w, 4, &size);
	if (ret)
		return ret;
	if (size < 29 || size > w->len - start)
		return fail(w->err, w->errlen, -EPROTO,
			    "fun at offset %zu declares %llu bytes, %zu are left",
			    start, (unsigned long long)size, w->len - start);
	w->pos = start + 25;
	nfree = get_be(w->buf + w->pos, 4);
	w->pos += 4;
	child->left = 4 + nfree;
	child->end = start + size;
	return 0;
}

/*
 * The old FLOAT_EXT is printf text; ei parses it with sscanf(), which
 * reads past the 31 bytes unless a NUL ends the text inside them. Text
 * that sscanf() does not take as a number is rejected too, because
 * ei_skip_term() (erl_interface 5.3) ignores a nested element that fails
 * to decode and then returns success with the index short of the term's
 * end.
 */
static int walk_float_text(struct etf_walk *w, const struct etf_tag *d)
{
	const char *text = (const char *)w->buf + w->pos;
	int ret = walk_need(w, d->fixed);
	double value;

	if (ret)
		return ret;
	if (!memchr(text, 0, d->fixed))
		return fail(w->err, w->errlen, -EPROTO,
			    "FLOAT_EXT at offset %zu has no NUL within its %u bytes",
			    w->pos - 1, d->fixed);
	if (sscanf(text, "%lf", &value) != 1)
		return fail(w->err, w->errlen, -EPROTO,
			    "FLOAT_EXT at offset %zu is not a number",
			    w->pos - 1);
	w->pos += d->fixed;
	return 0;
}

static int etf_walk(struct etf_walk *w);

/* Kinds of a fun's leading parts. ei decodes them with fixed types and,
 * in erl_interface 5.3, leaks memory or stops short of the term's end on
 * any other, so the validator checks them. */
enum fun_part { PART_ATOM, PART_INT, PART_SMALL_INT, PART_PID };

static bool tag_is_part(uint8_t tag, enum fun_part part)
{
	switch (part) {
	case PART_ATOM:
		return tag == ERL_ATOM_EXT || tag == ERL_SMALL_ATOM_EXT ||
		       tag == ERL_ATOM_UTF8_EXT ||
		       tag == ERL_SMALL_ATOM_UTF8_EXT;
	case PART_INT:
		return tag == ERL_SMALL_INTEGER_EXT || tag == ERL_INTEGER_EXT;
	case PART_SMALL_INT:
		return tag == ERL_SMALL_INTEGER_EXT;
	case PART_PID:
		return tag == ERL_PID_EXT || tag == ERL_NEW_PID_EXT;
	}
	return false;
}

/* Checks the @n parts starting at the walker's position, without moving
 * it. Each part is a leaf term, so the nested walk stays shallow. */
static int walk_fun_parts(struct etf_walk *w, const enum fun_part *parts,
			  size_t n)
{
	size_t pos = w->pos;

	for (size_t i = 0; i < n; i++) {
		struct etf_walk sub = { w->buf + pos, w->len - pos, 0, w->err,
					w->errlen };
		int ret;

		if (pos >= w->len || !tag_is_part(w->buf[pos], parts[i]))
			return fail(w->err, w->errlen, -EPROTO,
				    "fun part %zu at offset %zu has the wrong type",
				    i + 1, pos);
		ret = etf_walk(&sub);
		if (ret)
			return ret;
		pos += sub.pos;
	}
	return 0;
}

static int walk_fun_head(struct etf_walk *w, uint8_t tag)
{
	static const enum fun_part export_parts[] = { PART_ATOM, PART_ATOM,
						      PART_SMALL_INT };
	static const enum fun_part new_fun_parts[] = { PART_ATOM, PART_INT,
						       PART_INT, PART_PID };
	static const enum fun_part old_fun_parts[] = { PART_PID, PART_ATOM,
						       PART_INT, PART_INT };

	if (tag == ERL_EXPORT_EXT)
		return walk_fun_parts(w, export_parts, 3);
	if (tag == ERL_NEW_FUN_EXT)
		return walk_fun_parts(w, new_fun_parts, 4);
	if (tag == ERL_FUN_EXT)
		return walk_fun_parts(w, old_fun_parts, 4);
	return 0;
}

/* Reads the fixed part of one term; *@child receives what nests in it. */
static int walk_term_head(struct etf_walk *w, struct etf_frame *child)
{
	const struct etf_tag *d;
	uint64_t count;
	uint8_t tag;
	int ret;

	*child = (struct etf_frame){ 0, 0 };
	ret = walk_need(w, 1);
	if (ret)
		return ret;
	tag = w->buf[w->pos++];
	d = &etf_tags[tag];

	switch (d->shape) {
	case SHAPE_FIXED:
		ret = walk_need(w, d->fixed);
		if (!ret)
			w->pos += d->fixed;
		return ret;
	case SHAPE_BYTES:
		return walk_bytes(w, d, tag);
	case SHAPE_NODE:
		ret = walk_node(w);
		if (!ret)
			ret = walk_need(w, d->fixed);
		if (!ret)
			w->pos += d->fixed;
		return ret;
	case SHAPE_REF:
		return walk_ref(w, d);
	case SHAPE_FLOAT_TEXT:
		return walk_float_text(w, d);
	case SHAPE_SEQ:
		ret = walk_uint(w, d->size_len, &count);
		if (ret)
			return ret;
		child->left = count * d->mult + d->fixed;
		break;
	case SHAPE_NEW_FUN:
		ret = walk_new_fun(w, child);
		if (ret)
			return ret;
		break;
	default:
		if (tag == ETF_ATOM_CACHE_REF)
			return fail(w->err, w->errlen, -EPROTO,
				    "atom cache reference at offset %zu, but the atom cache is never negotiated",
				    w->pos - 1);
		return fail(w->err, w->errlen, -EPROTO,
			    "unsupported term tag %u at offset %zu%s", tag,
			    w->pos - 1,
			    tag == ETF_COMPRESSED ? " (compressed term)" : "");
	}

	ret = walk_fun_head(w, tag);
	if (ret)
		return ret;
	/* Every nested term takes at least one byte. */
	if (child->left > w->len - w->pos)
		return fail(w->err, w->errlen, -EPROTO,
			    "%s at offset %zu declares %llu elements, only %zu bytes are left",
			    d->noun, w->pos, (unsigned long long)child->left,
			    w->len - w->pos);
	return 0;
}

static int etf_walk(struct etf_walk *w)
{
	struct etf_frame stack[KD_ETF_MAX_DEPTH];
	struct etf_frame child, *top;
	size_t depth = 1;
	int ret;

	stack[0] = (struct etf_frame){ 1, 0 };
	while (depth > 0) {
		top = &stack[depth - 1];
		if (top->left == 0) {
			if (top->end && w->pos != top->end)
				return fail(w->err, w->errlen, -EPROTO,
					    "fun contents end at offset %zu, its size field says %zu",
					    w->pos, top->end);
			depth--;
			continue;
		}
		top->left--;

		ret = walk_term_head(w, &child);
		if (ret)
			return ret;
		if (child.left == 0 && child.end == 0)
			continue;

		/* A container in last position replaces its parent's frame,
		 * so long lists and right-nested tuples take no depth. */
		if (top->left == 0 && top->end == 0)
			depth--;
		if (depth == KD_ETF_MAX_DEPTH)
			return fail(w->err, w->errlen, -EPROTO,
				    "term nests deeper than %d levels at offset %zu",
				    KD_ETF_MAX_DEPTH, w->pos);
		stack[depth++] = child;
	}
	return 0;
}

static int etf_validate(const uint8_t *buf, size_t len, size_t *term_len,
			char *err, size_t errlen)
{
	struct etf_walk w = { buf, len, 0, err, errlen };
	int ret;

	if (!buf)
		return fail(err, errlen, -EPROTO, "term missing");
	ret = etf_walk(&w);
	if (ret)
		return ret;
	*term_len = w.pos;
	return 0;
}

int kd_etf_validate(const uint8_t *buf, size_t len, size_t *term_len)
{
	return etf_validate(buf, len, term_len, NULL, 0);
}

/*
 * Control tuples. Each operation is described by the kinds of its
 * elements after the operation code; decode_field() turns one kind into
 * struct kd_ctrl fields.
 */
enum ctrl_field {
	F_END = 0,
	F_UNUSED, /* SEND's and REG_SEND's Unused: '' (formerly the cookie) */
	F_TOKEN, /* sequential trace token, skipped */
	F_FROM_PID,
	F_FROM_PROC, /* pid or registered name */
	F_TO_PID,
	F_TO_PROC,
	F_TO_NAME,
	F_REF,
	F_ID,
	F_FLAGS,
	F_REASON,
	F_RESULT,
	F_GROUP_LEADER,
	F_MFA,
	F_OPTS,
	F_ALT_TARGET, /* ALTACT_SIG_SEND To: pid, name or alias by Flags */
};

#define DOP_MAX_FIELDS 6

struct dop_desc {
	const char *name;
	uint8_t base; /* the op reported in struct kd_ctrl */
	bool payload; /* a message term follows the control term */
	bool opt_last; /* the last element may be absent */
	uint8_t fields[DOP_MAX_FIELDS];
};

static const struct dop_desc dop_table[] = {
	[KD_DOP_LINK] = { "LINK", KD_DOP_LINK, false, false,
			  { F_FROM_PID, F_TO_PID } },
	[KD_DOP_SEND] = { "SEND", KD_DOP_SEND, true, false,
			  { F_UNUSED, F_TO_PID } },
	[KD_DOP_EXIT] = { "EXIT", KD_DOP_EXIT, false, false,
			  { F_FROM_PID, F_TO_PID, F_REASON } },
	[KD_DOP_UNLINK] = { "UNLINK", KD_DOP_UNLINK, false, false,
			    { F_FROM_PID, F_TO_PID } },
	[KD_DOP_REG_SEND] = { "REG_SEND", KD_DOP_REG_SEND, true, false,
			      { F_FROM_PID, F_UNUSED, F_TO_NAME } },
	[KD_DOP_GROUP_LEADER] = { "GROUP_LEADER", KD_DOP_GROUP_LEADER, false,
				  false, { F_FROM_PID, F_TO_PID } },
	[KD_DOP_EXIT2] = { "EXIT2", KD_DOP_EXIT2, false, false,
			   { F_FROM_PID, F_TO_PID, F_REASON } },
	[KD_DOP_SEND_TT] = { "SEND_TT", KD_DOP_SEND, true, false,
			     { F_UNUSED, F_TO_PID, F_TOKEN } },
	[KD_DOP_EXIT_TT] = { "EXIT_TT", KD_DOP_EXIT, false, false,
			     { F_FROM_PID, F_TO_PID, F_TOKEN, F_REASON } },
	[KD_DOP_REG_SEND_TT] = { "REG_SEND_TT", KD_DOP_REG_SEND, true, false,
				 { F_FROM_PID, F_UNUSED, F_TO_NAME,
				   F_TOKEN } },
	[KD_DOP_EXIT2_TT] = { "EXIT2_TT", KD_DOP_EXIT2, false, false,
			      { F_FROM_PID, F_TO_PID, F_TOKEN, F_REASON } },
	[KD_DOP_MONITOR_P] = { "MONITOR_P", KD_DOP_MONITOR_P, false, false,
			       { F_FROM_PID, F_TO_PROC, F_REF } },
	[KD_DOP_DEMONITOR_P] = { "DEMONITOR_P", KD_DOP_DEMONITOR_P, false,
				 false, { F_FROM_PID, F_TO_PROC, F_REF } },
	[KD_DOP_MONITOR_P_EXIT] = { "MONITOR_P_EXIT", KD_DOP_MONITOR_P_EXIT,
				    false, false,
				    { F_FROM_PROC, F_TO_PID, F_REF,
				      F_REASON } },
	[KD_DOP_SEND_SENDER] = { "SEND_SENDER", KD_DOP_SEND_SENDER, true,
				 false, { F_FROM_PID, F_TO_PID } },
	[KD_DOP_SEND_SENDER_TT] = { "SEND_SENDER_TT", KD_DOP_SEND_SENDER,
				    true, false,
				    { F_FROM_PID, F_TO_PID, F_TOKEN } },
	[KD_DOP_PAYLOAD_EXIT] = { "PAYLOAD_EXIT", KD_DOP_PAYLOAD_EXIT, true,
				  false, { F_FROM_PID, F_TO_PID } },
	[KD_DOP_PAYLOAD_EXIT_TT] = { "PAYLOAD_EXIT_TT", KD_DOP_PAYLOAD_EXIT,
				     true, false,
				     { F_FROM_PID, F_TO_PID, F_TOKEN } },
	[KD_DOP_PAYLOAD_EXIT2] = { "PAYLOAD_EXIT2", KD_DOP_PAYLOAD_EXIT2,
				   true, false, { F_FROM_PID, F_TO_PID } },
	[KD_DOP_PAYLOAD_EXIT2_TT] = { "PAYLOAD_EXIT2_TT",
				      KD_DOP_PAYLOAD_EXIT2, true, false,
				      { F_FROM_PID, F_TO_PID, F_TOKEN } },
	[KD_DOP_PAYLOAD_MONITOR_P_EXIT] = { "PAYLOAD_MONITOR_P_EXIT",
					    KD_DOP_PAYLOAD_MONITOR_P_EXIT,
					    true, false,
					    { F_FROM_PROC, F_TO_PID,
					      F_REF } },
	[KD_DOP_SPAWN_REQUEST] = { "SPAWN_REQUEST", KD_DOP_SPAWN_REQUEST,
				   true, false,
				   { F_REF, F_FROM_PID, F_GROUP_LEADER, F_MFA,
				     F_OPTS } },
	[KD_DOP_SPAWN_REQUEST_TT] = { "SPAWN_REQUEST_TT",
				      KD_DOP_SPAWN_REQUEST, true, false,
				      { F_REF, F_FROM_PID, F_GROUP_LEADER,
					F_MFA, F_OPTS, F_TOKEN } },
	[KD_DOP_SPAWN_REPLY] = { "SPAWN_REPLY", KD_DOP_SPAWN_REPLY, false,
				 false,
				 { F_REF, F_TO_PID, F_FLAGS, F_RESULT } },
	[KD_DOP_SPAWN_REPLY_TT] = { "SPAWN_REPLY_TT", KD_DOP_SPAWN_REPLY,
				    false, false,
				    { F_REF, F_TO_PID, F_FLAGS, F_RESULT,
				      F_TOKEN } },
	[KD_DOP_ALIAS_SEND] = { "ALIAS_SEND", KD_DOP_ALIAS_SEND, true, false,
				{ F_FROM_PID, F_REF } },
	[KD_DOP_ALIAS_SEND_TT] = { "ALIAS_SEND_TT", KD_DOP_ALIAS_SEND, true,
				   false, { F_FROM_PID, F_REF, F_TOKEN } },
	[KD_DOP_UNLINK_ID] = { "UNLINK_ID", KD_DOP_UNLINK_ID, false, false,
			       { F_ID, F_FROM_PID, F_TO_PID } },
	[KD_DOP_UNLINK_ID_ACK] = { "UNLINK_ID_ACK", KD_DOP_UNLINK_ID_ACK,
				   false, false,
				   { F_ID, F_FROM_PID, F_TO_PID } },
	[KD_DOP_ALTACT_SIG_SEND] = { "ALTACT_SIG_SEND",
				     KD_DOP_ALTACT_SIG_SEND, true, true,
				     { F_FLAGS, F_FROM_PID, F_ALT_TARGET,
				       F_TOKEN } },
};

static const char *const field_expects[] = {
	[F_UNUSED] = "a term",
	[F_TOKEN] = "a trace token",
	[F_FROM_PID] = "a pid",
	[F_FROM_PROC] = "a pid or an atom",
	[F_TO_PID] = "a pid",
	[F_TO_PROC] = "a pid or an atom",
	[F_TO_NAME] = "an atom",
	[F_REF] = "a reference",
	[F_ID] = "a non-negative integer of at most 64 bits",
	[F_FLAGS] = "a non-negative integer of at most 64 bits",
	[F_REASON] = "a term",
	[F_RESULT] = "a term",
	[F_OPTS] = "a term",
	[F_GROUP_LEADER] = "a pid",
	[F_MFA] = "a {Module, Function, Arity} tuple",
	[F_ALT_TARGET] = "a pid, an atom or a reference as Flags say",
};

static const struct dop_desc *dop_lookup(long op)
{
	size_t n = sizeof(dop_table) / sizeof(dop_table[0]);

	if (op < 0 || (unsigned long)op >= n || !dop_table[op].name)
		return NULL;
	return &dop_table[op];
}

static unsigned dop_nfields(const struct dop_desc *d)
{
	unsigned n = 0;

	while (n < DOP_MAX_FIELDS && d->fields[n] != F_END)
		n++;
	return n;
}

/* The control term was validated, so ei reads stay inside it. */
struct ctrl_cursor {
	const char *buf;
	int idx;
	size_t len;
};

static int decode_atom(struct ctrl_cursor *k, char *out)
{
	return ei_decode_atom_as(k->buf, &k->idx, out, MAXATOMLEN_UTF8,
				 ERLANG_UTF8, NULL, NULL);
}

/* Records the encoded element at the cursor and steps over it. */
static int decode_slice(struct ctrl_cursor *k, const uint8_t **p,
			size_t *len)
{
	const uint8_t *start = (const uint8_t *)k->buf + k->idx;
	size_t n = 0;

	if (etf_validate(start, k->len - (size_t)k->idx, &n, NULL, 0) < 0)
		return -1;
	k->idx += (int)n;
	*p = start;
	*len = n;
	return 0;
}

static int skip_term(struct ctrl_cursor *k)
{
	const uint8_t *p;
	size_t n;

	return decode_slice(k, &p, &n);
}

static int decode_proc(struct ctrl_cursor *k, erlang_pid *pid, bool *is_pid,
		       char *name)
{
	uint8_t tag = (uint8_t)k->buf[k->idx];

	*is_pid = tag == ERL_PID_EXT || tag == ERL_NEW_PID_EXT;
	if (*is_pid)
		return ei_decode_pid(k->buf, &k->idx, pid);
	return decode_atom(k, name);
}

static int decode_mfa(struct ctrl_cursor *k, struct kd_ctrl *c)
{
	int arity;

	if (ei_decode_tuple_header(k->buf, &k->idx, &arity) < 0 || arity != 3)
		return -1;
	if (decode_atom(k, c->spawn_module) < 0 ||
	    decode_atom(k, c->spawn_function) < 0)
		return -1;
	return ei_decode_long(k->buf, &k->idx, &c->spawn_arity);
}

static int decode_alt_target(struct ctrl_cursor *k, struct kd_ctrl *c)
{
	if (c->flags & KD_ALTACT_FLG_ALIAS) {
		c->has_ref = true;
		return ei_decode_ref(k->buf, &k->idx, &c->ref);
	}
	if (c->flags & KD_ALTACT_FLG_NAME)
		return decode_atom(k, c->to_name);
	c->has_to_pid = true;
	return ei_decode_pid(k->buf, &k->idx, &c->to);
}

/* Returns 0, or -1 when the element does not have the expected type. */
static int decode_field(struct ctrl_cursor *k, enum ctrl_field f,
			struct kd_ctrl *c)
{
	EI_ULONGLONG u;

	switch (f) {
	case F_UNUSED:
		return skip_term(k);
	case F_TOKEN:
		c->traced = true;
		return skip_term(k);
	case F_FROM_PID:
		c->has_from = true;
		return ei_decode_pid(k->buf, &k->idx, &c->from);
	case F_FROM_PROC:
		return decode_proc(k, &c->from, &c->has_from, c->from_name);
	case F_TO_PID:
		c->has_to_pid = true;
		return ei_decode_pid(k->buf, &k->idx, &c->to);
	case F_TO_PROC:
		return decode_proc(k, &c->to, &c->has_to_pid, c->to_name);
	case F_TO_NAME:
		return decode_atom(k, c->to_name);
	case F_REF:
		c->has_ref = true;
		return ei_decode_ref(k->buf, &k->idx, &c->ref);
	case F_ID:
	case F_FLAGS:
		if (ei_decode_ulonglong(k->buf, &k->idx, &u) < 0)
			return -1;
		*(f == F_ID ? &c->unlink_id : &c->flags) = u;
		return 0;
	case F_REASON:
		return decode_slice(k, &c->reason, &c->reason_len);
	case F_RESULT:
		return decode_slice(k, &c->result, &c->result_len);
	case F_OPTS:
		return decode_slice(k, &c->spawn_opts, &c->spawn_opts_len);
	case F_GROUP_LEADER:
		return ei_decode_pid(k->buf, &k->idx, &c->group_leader);
	case F_MFA:
		return decode_mfa(k, c);
	case F_ALT_TARGET:
		return decode_alt_target(k, c);
	default:
		return -1;
	}
}

static int decode_ctrl_header(struct ctrl_cursor *k, struct kd_ctrl *c,
			      int *arity, char *err, size_t errlen)
{
	uint8_t tag = (uint8_t)k->buf[0];
	long op;

	if (ei_decode_tuple_header(k->buf, &k->idx, arity) < 0)
		return fail(err, errlen, -EPROTO,
			    "control message: expected a tuple, found %s",
			    tag_noun(tag));
	if (*arity < 1)
		return fail(err, errlen, -EPROTO,
			    "control message: expected a tuple with an operation code, found {}");

	tag = (uint8_t)k->buf[k->idx];
	if (ei_decode_long(k->buf, &k->idx, &op) < 0)
		return fail(err, errlen, -EPROTO,
			    "control message: expected an integer operation code in element 1, found %s",
			    tag_noun(tag));
	c->op = op >= INT_MIN && op <= INT_MAX ? (int)op : -1;
	if (!dop_lookup(op))
		return fail(err, errlen, -EOPNOTSUPP,
			    "control message: operation %ld is not supported",
			    op);
	return 0;
}

static int decode_ctrl_tuple(const uint8_t *p, size_t len, struct kd_ctrl *c,
			     const struct dop_desc **desc, char *err,
			     size_t errlen)
{
	struct ctrl_cursor k = { (const char *)p, 0, len };
	const struct dop_desc *d;
	unsigned nfields;
	int arity, ret;

	ret = decode_ctrl_header(&k, c, &arity, err, errlen);
	if (ret)
		return ret;
	d = dop_lookup(c->op);
	nfields = dop_nfields(d);
	if ((unsigned)arity - 1 != nfields &&
	    !(d->opt_last && (unsigned)arity == nfields))
		return fail(err, errlen, -EPROTO,
			    "control message %s: expected %u elements, found %d",
			    d->name, nfields + 1, arity);

	c->op = d->base;
	for (unsigned i = 0; i < (unsigned)arity - 1; i++) {
		uint8_t tag = p[k.idx];

		if (decode_field(&k, d->fields[i], c) < 0)
			return fail(err, errlen, -EPROTO,
				    "control message %s: expected %s in element %u, found %s",
				    d->name, field_expects[d->fields[i]],
				    i + 2, tag_noun(tag));
	}
	if (c->op == KD_DOP_ALTACT_SIG_SEND &&
	    c->traced != !!(c->flags & KD_ALTACT_FLG_TOKEN))
		return fail(err, errlen, -EPROTO,
			    "control message %s: Flags %llu and the presence of a trace token disagree",
			    d->name, (unsigned long long)c->flags);
	*desc = d;
	return 0;
}

/* Validates and records the message term that follows the control term. */
static int split_msg(const uint8_t *p, size_t left, bool versioned,
		     struct kd_ctrl *c, char *err, size_t errlen)
{
	char why[160];
	size_t n = 0;
	int ret;

	if (versioned) {
		if (p[0] != ETF_VERSION)
			return fail(err, errlen, -EPROTO,
				    "message: expected version byte 131 after the control term, found %u",
				    p[0]);
		c->msg = p;
		p++;
		left--;
	}
	ret = etf_validate(p, left, &n, why, sizeof(why));
	if (ret)
		return fail(err, errlen, ret, "message: %s", why);
	if (n != left)
		return fail(err, errlen, -EPROTO,
			    "message: %zu unexpected bytes after the message term",
			    left - n);
	c->msg_term = p;
	c->msg_term_len = n;
	if (versioned)
		c->msg_len = n + 1;
	return 0;
}

static int decode_terms(const uint8_t *p, size_t len, bool versioned,
			struct kd_ctrl *c, char *err, size_t errlen)
{
	const struct dop_desc *d = NULL;
	size_t ctrl_len = 0;
	char why[160];
	int ret;

	ret = etf_validate(p, len, &ctrl_len, why, sizeof(why));
	if (ret)
		return fail(err, errlen, ret, "control message: %s", why);
	if (ctrl_len > INT_MAX)
		return fail(err, errlen, -EPROTO,
			    "control message: %zu bytes exceed the 2 GiB that ei can index",
			    ctrl_len);
	if (ctrl_len < len) {
		ret = split_msg(p + ctrl_len, len - ctrl_len, versioned, c,
				err, errlen);
		if (ret)
			return ret;
	}

	ret = decode_ctrl_tuple(p, ctrl_len, c, &d, err, errlen);
	if (ret)
		return ret;
	if (d->payload && !c->msg_term)
		return fail(err, errlen, -EPROTO,
			    "control message %s: the message term is missing",
			    d->name);
	if (!d->payload && c->msg_term)
		return fail(err, errlen, -EPROTO,
			    "control message %s: carries no message, but %zu bytes follow it",
			    d->name, len - ctrl_len);
	return 0;
}

static int decode_dist_header(const uint8_t *pkt, size_t len,
			      struct kd_ctrl *c, char *err, size_t errlen)
{
	if (len < DIST_HDR_LEN)
		return fail(err, errlen, -EPROTO,
			    "distribution header truncated: %zu bytes", len);
	if (pkt[2] != 0)
		return fail(err, errlen, -EPROTO,
			    "distribution header carries %u atom cache references, but kdist never advertises DIST_HDR_ATOM_CACHE",
			    pkt[2]);
	return decode_terms(pkt + DIST_HDR_LEN, len - DIST_HDR_LEN, false, c,
			    err, errlen);
}

int kd_ctrl_decode(const uint8_t *pkt, size_t len, struct kd_ctrl *c,
		   char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	if (!pkt || len == 0)
		return fail(err, errlen, -EPROTO,
			    "packet is empty: ticks must be dropped before decoding");

	if (pkt[0] == ETF_PASS_THROUGH) {
		if (len < 2 || pkt[1] != ETF_VERSION)
			return fail(err, errlen, -EPROTO,
				    "pass-through packet: expected version byte 131 after 'p'");
		return decode_terms(pkt + 2, len - 2, true, c, err, errlen);
	}
	if (pkt[0] != ETF_VERSION || len < 2)
		return fail(err, errlen, -EPROTO,
			    "packet starts with byte %u, expected 'p' (112) or 131",
			    pkt[0]);

	switch (pkt[1]) {
	case ETF_DIST_HEADER:
		return decode_dist_header(pkt, len, c, err, errlen);
	case ETF_DIST_FRAG_HEADER:
	case ETF_DIST_FRAG_CONT:
		return fail(err, errlen, -ENOMSG,
			    "packet is a message fragment: pass it to kd_frag_input()");
	default:
		return fail(err, errlen, -EPROTO,
			    "unknown distribution header 131 %u, expected 68, 69 or 70",
			    pkt[1]);
	}
}

/*
 * Fragment reassembly. Each open sequence keeps a buffer that starts with
 * "131 68 0", so a finished sequence hands its buffer out as a packet for
 * kd_ctrl_decode() without copying.
 */
struct frag_seq {
	uint64_t seq_id;
	uint64_t next_frag_id; /* FragId the next continuation must carry */
	uint8_t *buf;
	size_t len;
	size_t cap;
};

struct kd_frag_table {
	size_t max_message_bytes;
	size_t pending_bytes;
	size_t nseq;
	size_t cap;
	struct frag_seq *seq;
};

struct kd_frag_table *kd_frag_table_new(size_t max_message_bytes)
{
	struct kd_frag_table *t = calloc(1, sizeof(*t));

	if (t)
		t->max_message_bytes = max_message_bytes;
	return t;
}

void kd_frag_table_free(struct kd_frag_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nseq; i++)
		free(t->seq[i].buf);
	free(t->seq);
	free(t);
}

size_t kd_frag_pending_bytes(const struct kd_frag_table *t)
{
	return t ? t->pending_bytes : 0;
}

static struct frag_seq *frag_find(struct kd_frag_table *t, uint64_t seq_id)
{
	for (size_t i = 0; i < t->nseq; i++)
		if (t->seq[i].seq_id == seq_id)
			return &t->seq[i];
	return NULL;
}

/* Removes @s from the table; the caller owns or has freed its buffer. */
static void frag_remove(struct kd_frag_table *t, struct frag_seq *s)
{
	t->pending_bytes -= s->len - DIST_HDR_LEN;
	*s = t->seq[--t->nseq];
}

static void frag_drop(struct kd_frag_table *t, struct frag_seq *s)
{
	free(s->buf);
	frag_remove(t, s);
}

static int frag_append(struct kd_frag_table *t, struct frag_seq *s,
		       const uint8_t *data, size_t n)
{
	size_t need = s->len + n;
	uint8_t *buf;
	size_t cap;

	if (need > s->cap) {
		cap = s->cap * 2 > need ? s->cap * 2 : need;
		if (cap > t->max_message_bytes + DIST_HDR_LEN)
			cap = t->max_message_bytes + DIST_HDR_LEN;
		buf = realloc(s->buf, cap);
		if (!buf)
			return -ENOMEM;
		s->buf = buf;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	t->pending_bytes += n;
	return 0;
}

/* Hands a finished sequence's buffer to the caller. */
static int frag_complete(struct kd_frag_table *t, struct frag_seq *s,
			 uint8_t **out, size_t *out_len)
{
	*out = s->buf;
	*out_len = s->len;
	frag_remove(t, s);
	return 1;
}

static const uint8_t dist_hdr[DIST_HDR_LEN] = { ETF_VERSION, ETF_DIST_HEADER,
						0 };

/* Opens a sequence whose buffer contains "131 68 0" and the @n bytes of
 * the first fragment's body. */
static int frag_add_seq(struct kd_frag_table *t, uint64_t seq_id,
			uint64_t next_frag_id, const uint8_t *body, size_t n,
			struct frag_seq **out)
{
	struct frag_seq *grown, *s;
	uint8_t *buf;
	size_t cap;

	if (t->nseq == t->cap) {
		cap = t->cap ? t->cap * 2 : 8;
		grown = realloc(t->seq, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		t->seq = grown;
		t->cap = cap;
	}
	buf = malloc(DIST_HDR_LEN + n);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, dist_hdr, DIST_HDR_LEN);
	memcpy(buf + DIST_HDR_LEN, body, n);
	t->pending_bytes += n;

	s = &t->seq[t->nseq++];
	*s = (struct frag_seq){
		.seq_id = seq_id,
		.next_frag_id = next_frag_id,
		.buf = buf,
		.len = DIST_HDR_LEN + n,
		.cap = DIST_HDR_LEN + n,
	};
	*out = s;
	return 0;
}

static int frag_recv_first(struct kd_frag_table *t, const uint8_t *pkt,
			   size_t len, uint8_t **out, size_t *out_len,
			   char *err, size_t errlen)
{
	uint64_t seq_id, frag_id;
	struct frag_seq *s;
	size_t n;
	int ret;

	if (len < FRAG_FIRST_HDR_LEN)
		return fail(err, errlen, -EPROTO,
			    "first fragment truncated: %zu bytes, the header alone takes %d",
			    len, FRAG_FIRST_HDR_LEN);
	seq_id = get_be(pkt + 2, 8);
	frag_id = get_be(pkt + 10, 8);
	n = len - FRAG_FIRST_HDR_LEN;
	if (pkt[18] != 0)
		return fail(err, errlen, -EPROTO,
			    "fragment sequence %llu carries %u atom cache references, but kdist never advertises DIST_HDR_ATOM_CACHE",
			    (unsigned long long)seq_id, pkt[18]);
	if (frag_id == 0)
		return fail(err, errlen, -EPROTO,
			    "fragment sequence %llu starts with FragId 0, expected 1 or more",
			    (unsigned long long)seq_id);

	s = frag_find(t, seq_id);
	if (s) {
		frag_drop(t, s);
		return fail(err, errlen, -EPROTO,
			    "fragment sequence %llu started again before it completed",
			    (unsigned long long)seq_id);
	}
	if (n > t->max_message_bytes)
		return fail(err, errlen, -EMSGSIZE,
			    "fragment sequence %llu: first fragment of %zu bytes exceeds the %zu-byte message limit",
			    (unsigned long long)seq_id, n,
			    t->max_message_bytes);
	if (t->nseq >= KD_FRAG_MAX_SEQUENCES)
		return fail(err, errlen, -EMLINK,
			    "fragment sequence %llu: %d sequences are already open",
			    (unsigned long long)seq_id, KD_FRAG_MAX_SEQUENCES);

	ret = frag_add_seq(t, seq_id, frag_id - 1, pkt + FRAG_FIRST_HDR_LEN, n,
			   &s);
	if (ret)
		return fail(err, errlen, ret,
			    "fragment sequence %llu: out of memory",
			    (unsigned long long)seq_id);
	if (frag_id == 1)
		return frag_complete(t, s, out, out_len);
	return 0;
}

static int frag_recv_cont(struct kd_frag_table *t, const uint8_t *pkt,
			  size_t len, uint8_t **out, size_t *out_len,
			  char *err, size_t errlen)
{
	uint64_t seq_id, frag_id, expected;
	struct frag_seq *s;
	size_t n, have;

	if (len < FRAG_CONT_HDR_LEN)
		return fail(err, errlen, -EPROTO,
			    "fragment truncated: %zu bytes, the header alone takes %d",
			    len, FRAG_CONT_HDR_LEN);
	seq_id = get_be(pkt + 2, 8);
	frag_id = get_be(pkt + 10, 8);
	n = len - FRAG_CONT_HDR_LEN;

	s = frag_find(t, seq_id);
	if (!s)
		return fail(err, errlen, -EPROTO,
			    "fragment for sequence %llu, which has no first fragment",
			    (unsigned long long)seq_id);
	expected = s->next_frag_id;
	if (frag_id != expected) {
		frag_drop(t, s);
		return fail(err, errlen, -EPROTO,
			    "fragment sequence %llu: FragId %llu arrived, expected %llu",
			    (unsigned long long)seq_id,
			    (unsigned long long)frag_id,
			    (unsigned long long)expected);
	}
	have = s->len - DIST_HDR_LEN;
	if (n > t->max_message_bytes - have) {
		frag_drop(t, s);
		return fail(err, errlen, -EMSGSIZE,
			    "fragment sequence %llu: message exceeds the %zu-byte limit",
			    (unsigned long long)seq_id, t->max_message_bytes);
	}
	if (frag_append(t, s, pkt + FRAG_CONT_HDR_LEN, n)) {
		frag_drop(t, s);
		return fail(err, errlen, -ENOMEM,
			    "fragment sequence %llu: out of memory",
			    (unsigned long long)seq_id);
	}
	if (frag_id == 1)
		return frag_complete(t, s, out, out_len);
	s->next_frag_id--;
	return 0;
}

int kd_frag_input(struct kd_frag_table *t, const uint8_t *pkt, size_t len,
		  uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
	if (!t || !pkt || !out || !out_len)
		return fail(err, errlen, -EINVAL,
			    "kd_frag_input: table, packet and output are required");
	if (len < 2 || pkt[0] != ETF_VERSION)
		return fail(err, errlen, -EPROTO,
			    "fragment: expected 131 69 or 131 70, packet too short or not 131");
	if (pkt[1] == ETF_DIST_FRAG_HEADER)
		return frag_recv_first(t, pkt, len, out, out_len, err, errlen);
	if (pkt[1] == ETF_DIST_FRAG_CONT)
		return frag_recv_cont(t, pkt, len, out, out_len, err, errlen);
	return fail(err, errlen, -EPROTO,
		    "fragment: expected header 131 69 or 131 70, found 131 %u",
		    pkt[1]);
}

/* Fragmented sending. */
static size_t frag_first_slice(size_t ctrl_len, size_t msg_len,
			       size_t frag_size)
{
	size_t room = frag_size > ctrl_len ? frag_size - ctrl_len : 0;

	return room < msg_len ? room : msg_len;
}

size_t kd_frag_count(size_t ctrl_len, size_t msg_len, size_t frag_size)
{
	size_t rest;

	if (!msg_len || !frag_size)
		return 0;
	rest = msg_len - frag_first_slice(ctrl_len, msg_len, frag_size);
	return 1 + rest / frag_size + (rest % frag_size != 0);
}

static void frag_put_hdr(struct kd_frag_hdr *h, uint64_t seq_id,
			 uint64_t frag_id, bool first)
{
	h->bytes[0] = ETF_VERSION;
	h->bytes[1] = first ? ETF_DIST_FRAG_HEADER : ETF_DIST_FRAG_CONT;
	put_be64(h->bytes + 2, seq_id);
	put_be64(h->bytes + 10, frag_id);
	if (first)
		h->bytes[18] = 0; /* NumberOfAtomCacheRefs */
	h->len = first ? FRAG_FIRST_HDR_LEN : FRAG_CONT_HDR_LEN;
	h->with_ctrl = first;
}

int kd_frag_encode_headers(struct kd_frag_hdr *frags, size_t nfrags,
			   uint64_t seq_id, size_t ctrl_len, size_t msg_len,
			   size_t frag_size)
{
	size_t off = 0, slice;

	if (!frags || nfrags == 0 ||
	    nfrags != kd_frag_count(ctrl_len, msg_len, frag_size))
		return -EINVAL;
	if (ctrl_len > UINT32_MAX - FRAG_FIRST_HDR_LEN ||
	    frag_size > UINT32_MAX - FRAG_FIRST_HDR_LEN - ctrl_len)
		return -EMSGSIZE;

	for (size_t i = 0; i < nfrags; i++) {
		struct kd_frag_hdr *h = &frags[i];

		if (i == 0)
			slice = frag_first_slice(ctrl_len, msg_len, frag_size);
		else
			slice = msg_len - off < frag_size ? msg_len - off
							  : frag_size;
		frag_put_hdr(h, seq_id, nfrags - i, i == 0);
		h->msg_off = off;
		h->msg_len = slice;
		h->payload_len = h->len + (i == 0 ? ctrl_len : 0) + slice;
		off += slice;
	}
	return 0;
}

/*
 * Encoders. A control tuple is described as a list of elements after
 * the operation code; put_ctrl() appends "p 131 {Op, ...}" and rolls @x
 * back when any element fails. Each element is sized with ei_encode_*()
 * on a NULL buffer first, so that an invalid atom (-EINVAL) is
 * distinguished from an allocation failure (-ENOMEM).
 */
enum ctrl_arg_kind {
	ARG_LONG,
	ARG_ULONGLONG,
	ARG_ATOM,
	ARG_PID,
	ARG_REF,
};

struct ctrl_arg {
	enum ctrl_arg_kind kind;
	union {
		long l;
		uint64_t u;
		const char *atom;
		const erlang_pid *pid;
		const erlang_ref *ref;
	};
};

#define ARG_LONG(v) { .kind = ARG_LONG, .l = (v) }
#define ARG_U64(v) { .kind = ARG_ULONGLONG, .u = (v) }
#define ARG_ATOM(v) { .kind = ARG_ATOM, .atom = (v) }
#define ARG_PID(v) { .kind = ARG_PID, .pid = (v) }
#define ARG_REF(v) { .kind = ARG_REF, .ref = (v) }

static int put_arg(ei_x_buff *x, const struct ctrl_arg *a)
{
	int size = 0;
	int len;

	switch (a->kind) {
	case ARG_LONG:
		return ei_x_encode_long(x, a->l) < 0 ? -ENOMEM : 0;
	case ARG_ULONGLONG:
		return ei_x_encode_ulonglong(x, a->u) < 0 ? -ENOMEM : 0;
	case ARG_ATOM:
		if (!a->atom || strlen(a->atom) > ETF_MAX_ATOM_BYTES)
			return -EINVAL;
		len = (int)strlen(a->atom);
		if (ei_encode_atom_len_as(NULL, &size, a->atom, len,
					  ERLANG_UTF8, ERLANG_UTF8) < 0)
			return -EINVAL;
		return ei_x_encode_atom_len_as(x, a->atom, len, ERLANG_UTF8,
					       ERLANG_UTF8) < 0 ? -ENOMEM : 0;
	case ARG_PID:
		if (!a->pid || ei_encode_pid(NULL, &size, a->pid) < 0)
			return -EINVAL;
		return ei_x_encode_pid(x, a->pid) < 0 ? -ENOMEM : 0;
	case ARG_REF:
		if (!a->ref || ei_encode_ref(NULL, &size, a->ref) < 0)
			return -EINVAL;
		return ei_x_encode_ref(x, a->ref) < 0 ? -ENOMEM : 0;
	}
	return -EINVAL;
}

static int put_ctrl(ei_x_buff *x, long op, const struct ctrl_arg *args,
		    size_t n)
{
	int start = x->index;
	int ret = -ENOMEM;

	if (ei_x_append_buf(x, "p", 1) < 0 || ei_x_encode_version(x) < 0 ||
	    ei_x_encode_tuple_header(x, (long)n + 1) < 0 ||
	    ei_x_encode_long(x, op) < 0)
		goto rollback;
	for (size_t i = 0; i < n; i++) {
		ret = put_arg(x, &args[i]);
		if (ret)
			goto rollback;
	}
	return 0;

rollback:
	x->index = start;
	return ret;
}

#define NARGS(a) (sizeof(a) / sizeof((a)[0]))

int kd_ctrl_encode_send(ei_x_buff *x, const erlang_pid *to)
{
	const struct ctrl_arg args[] = { ARG_ATOM(""), ARG_PID(to) };

	return put_ctrl(x, KD_DOP_SEND, args, NARGS(args));
}

int kd_ctrl_encode_send_sender(ei_x_buff *x, const erlang_pid *from,
			       const erlang_pid *to)
{
	const struct ctrl_arg args[] = { ARG_PID(from), ARG_PID(to) };

	return put_ctrl(x, KD_DOP_SEND_SENDER, args, NARGS(args));
}

int kd_ctrl_encode_reg_send(ei_x_buff *x, const erlang_pid *from,
			    const char *to_name)
{
	const struct ctrl_arg args[] = { ARG_PID(from), ARG_ATOM(""),
					 ARG_ATOM(to_name) };

	return put_ctrl(x, KD_DOP_REG_SEND, args, NARGS(args));
}

int kd_ctrl_encode_link(ei_x_buff *x, const erlang_pid *from,
			const erlang_pid *to)
{
	const struct ctrl_arg args[] = { ARG_PID(from), ARG_PID(to) };

	return put_ctrl(x, KD_DOP_LINK, args, NARGS(args));
}

int kd_ctrl_encode_exit(ei_x_buff *x, const erlang_pid *from,
			const erlang_pid *to, const char *reason_atom)
{
	const struct ctrl_arg args[] = { ARG_PID(from), ARG_PID(to),
					 ARG_ATOM(reason_atom) };

	return put_ctrl(x, KD_DOP_EXIT, args, NARGS(args));
}

int kd_ctrl_encode_unlink_id(ei_x_buff *x, uint64_t id,
			     const erlang_pid *from, const erlang_pid *to)
{
	const struct ctrl_arg args[] = { ARG_U64(id), ARG_PID(from),
					 ARG_PID(to) };

	return put_ctrl(x, KD_DOP_UNLINK_ID, args, NARGS(args));
}

int kd_ctrl_encode_unlink_id_ack(ei_x_buff *x, uint64_t id,
				 const erlang_pid *from,
				 const erlang_pid *to)
{
	const struct ctrl_arg args[] = { ARG_U64(id), ARG_PID(from),
					 ARG_PID(to) };

	return put_ctrl(x, KD_DOP_UNLINK_ID_ACK, args, NARGS(args));
}

int kd_ctrl_encode_monitor_p_exit(ei_x_buff *x, const erlang_pid *from,
				  const char *from_name,
				  const erlang_pid *to, const erlang_ref *ref,
				  const char *reason_atom)
{
	const struct ctrl_arg args[] = {
		from_name ? (struct ctrl_arg)ARG_ATOM(from_name)
			  : (struct ctrl_arg)ARG_PID(from),
		ARG_PID(to),
		ARG_REF(ref),
		ARG_ATOM(reason_atom),
	};

	return put_ctrl(x, KD_DOP_MONITOR_P_EXIT, args, NARGS(args));
}

int kd_ctrl_encode_spawn_reply_error(ei_x_buff *x, const erlang_ref *req_id,
				     const erlang_pid *to,
				     const char *result_atom)
{
	const struct ctrl_arg args[] = { ARG_REF(req_id), ARG_PID(to),
					 ARG_LONG(0), ARG_ATOM(result_atom) };

	return put_ctrl(x, KD_DOP_SPAWN_REPLY, args, NARGS(args));
}

static int put_monitor(ei_x_buff *x, long op, const erlang_pid *from,
		       const erlang_pid *to_pid, const char *to_name,
		       const erlang_ref *ref)
{
	const struct ctrl_arg args[] = {
		ARG_PID(from),
		to_name ? (struct ctrl_arg)ARG_ATOM(to_name)
			: (struct ctrl_arg)ARG_PID(to_pid),
		ARG_REF(ref),
	};

	if (!to_pid == !to_name)
		return -EINVAL;
	return put_ctrl(x, op, args, NARGS(args));
}

int kd_ctrl_encode_monitor_p(ei_x_buff *x, const erlang_pid *from,
			     const erlang_pid *to_pid, const char *to_name,
			     const erlang_ref *ref)
{
	return put_monitor(x, KD_DOP_MONITOR_P, from, to_pid, to_name, ref);
}

int kd_ctrl_encode_demonitor_p(ei_x_buff *x, const erlang_pid *from,
			       const erlang_pid *to_pid, const char *to_name,
			       const erlang_ref *ref)
{
	return put_monitor(x, KD_DOP_DEMONITOR_P, from, to_pid, to_name, ref);
}
