// SPDX-License-Identifier: Apache-2.0
/*
 * Erlang term syntax: a tokenizer and a recursive-descent parser that
 * follow erl_scan and erl_parse for the literal subset of the language, and
 * an encoder to external term format on top of ei.
 *
 * Input is UTF-8 unless the first or second line is a comment naming
 * "coding: latin-1", as epp reads it. Input without a coding comment that
 * is not valid UTF-8 is read as Latin-1, which is what OTP 25 does for a
 * -ssl_dist_optfile without one. Strings, atoms and binaries are stored as
 * UTF-8 whatever the input encoding.
 */
#include "term.h"

#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

enum tok_kind {
	TOK_EOF,
	TOK_INTEGER,
	TOK_BIGNUM,
	TOK_FLOAT,
	TOK_CHAR,
	TOK_ATOM,
	TOK_VAR,
	TOK_STRING,
	TOK_PUNCT,
	TOK_FUN,
};

struct strbuf {
	char *data;
	size_t len;
	size_t cap;
};

struct token {
	enum tok_kind kind;
	int line;
	int64_t integer;     /* INTEGER, CHAR */
	double flt;	     /* FLOAT */
	struct strbuf text;  /* ATOM, VAR, STRING (UTF-8), BIGNUM (decimal) */
	char punct[3];	     /* PUNCT: "[", "=>", "<<", ... */
};

struct lexer {
	const unsigned char *p;
	const unsigned char *end;
	int line;
	bool latin1;
	unsigned flags;
	struct token tok; /* the lookahead token */
	char *err;
	size_t errlen;
};

/* Words erl_scan reserves: they are not atoms unless quoted. */
static const char *const reserved_words[] = {
	"after", "and",	    "andalso", "band",	 "begin", "bnot", "bor",
	"bsl",	 "bsr",	    "bxor",    "case",	 "catch", "cond", "div",
	"else",	 "end",	    "if",      "let",	 "maybe", "not",  "of",
	"or",	 "orelse",  "receive", "rem",	 "try",	  "when", "xor",
};

static int lex_error(struct lexer *lx, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int lex_error(struct lexer *lx, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(lx->err, lx->errlen, "line %d: ", line);
	if (n < 0 || (size_t)n >= lx->errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(lx->err + n, lx->errlen - n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool isdigit_ascii(int c)
{
	return c >= '0' && c <= '9';
}

static bool isalnum_ascii(int c)
{
	return isdigit_ascii(c) || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z');
}

/* Value of @c as a digit of any base up to 36, or 99. */
static int digit_value(int c)
{
	if (isdigit_ascii(c))
		return c - '0';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 10;
	return 99;
}

/* Letters as erl_scan classifies them: ASCII and Latin-1 only. */
static bool is_lower(uint32_t cp)
{
	return (cp >= 'a' && cp <= 'z') || (cp >= 0xdf && cp <= 0xff && cp != 0xf7);
}

static bool is_upper(uint32_t cp)
{
	return (cp >= 'A' && cp <= 'Z') || (cp >= 0xc0 && cp <= 0xde && cp != 0xd7);
}

static bool is_name_char(uint32_t cp)
{
	return is_lower(cp) || is_upper(cp) || isdigit_ascii(cp) || cp == '_' ||
	       cp == '@';
}


static int sb_reserve(struct strbuf *sb, size_t more)
{
	size_t cap = sb->cap ? sb->cap : 32;
	char *data;

	if (sb->len + more + 1 <= sb->cap)
		return 0;
	while (cap < sb->len + more + 1)
		cap *= 2;
	data = realloc(sb->data, cap);
	if (!data)
		return -ENOMEM;
	data[sb->len] = '\0';
	sb->data = data;
	sb->cap = cap;
	return 0;
}

static int sb_append(struct strbuf *sb, const void *bytes, size_t len)
{
	if (sb_reserve(sb, len) < 0)
		return -ENOMEM;
	memcpy(sb->data + sb->len, bytes, len);
	sb->len += len;
	sb->data[sb->len] = '\0';
	return 0;
}

static int sb_append_utf8(struct strbuf *sb, uint32_t cp)
{
	unsigned char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = 0xc0 | (cp >> 6);
		b[1] = 0x80 | (cp & 0x3f);
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = 0xe0 | (cp >> 12);
		b[1] = 0x80 | ((cp >> 6) & 0x3f);
		b[2] = 0x80 | (cp & 0x3f);
		n = 3;
	} else {
		b[0] = 0xf0 | (cp >> 18);
		b[1] = 0x80 | ((cp >> 12) & 0x3f);
		b[2] = 0x80 | ((cp >> 6) & 0x3f);
		b[3] = 0x80 | (cp & 0x3f);
		n = 4;
	}
	return sb_append(sb, b, n);
}

static void sb_reset(struct strbuf *sb)
{
	sb->len = 0;
	if (sb->data)
		sb->data[0] = '\0';
}

/*
 * Decodes one UTF-8 sequence at @s (before @end) into @cp. Returns its
 * length, or 0 for an invalid, overlong or truncated sequence, a surrogate
 * or a code point above U+10FFFF.
 */
static size_t utf8_decode(const unsigned char *s, const unsigned char *end,
			  uint32_t *cp)
{
	static const uint32_t min_cp[] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t n, i;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		c = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		c = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	if ((size_t)(end - s) < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min_cp[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

static bool utf8_valid(const unsigned char *s, const unsigned char *end)
{
	uint32_t cp;
	size_t n;

	while (s < end) {
		n = utf8_decode(s, end, &cp);
		if (!n)
			return false;
		s += n;
	}
	return true;
}

/*
 * Looks for epp's encoding comment ("coding: NAME" or "coding=NAME" in a
 * % comment) on the first two lines. Returns 1 for Latin-1, 0 for UTF-8,
 * -1 when there is none and -EINVAL for an unknown encoding.
 */
static int read_coding(struct lexer *lx)
{
	const unsigned char *p = lx->p, *eol, *c, *name;
	char enc[16];
	size_t n;
	int line;

	for (line = 1; line <= 2 && p < lx->end; line++) {
		eol = memchr(p, '\n', lx->end - p);
		if (!eol)
			eol = lx->end;
		c = memchr(p, '%', eol - p);
		c = c ? memmem(c, eol - c, "coding", 6) : NULL;
		if (c) {
			name = c + 6;
			while (name < eol && (*name == ' ' || *name == '\t'))
				name++;
			if (name < eol && (*name == ':' || *name == '='))
				name++;
			while (name < eol && (*name == ' ' || *name == '\t'))
				name++;
			for (n = 0; name + n < eol && n < sizeof(enc) - 1 &&
				    (isalnum_ascii(name[n]) || name[n] == '-');
			     n++)
				enc[n] = name[n] | 0x20;
			enc[n] = '\0';
			if (!strcmp(enc, "utf-8") || !strcmp(enc, "utf8"))
				return 0;
			if (!strcmp(enc, "latin-1") || !strcmp(enc, "latin1"))
				return 1;
			return lex_error(lx, line,
					 "encoding '%s' is not supported; use "
					 "'coding: utf-8' or 'coding: latin-1'",
					 enc);
		}
		p = eol + 1;
	}
	return -1;
}

/*
 * Natural numbers of any size, as little-endian 32-bit limbs: enough to
 * turn Base#Digits into decimal text and decimal text into the bytes of
 * SMALL_BIG_EXT. Sizes stay small because literals are limited to
 * KD_TERM_MAX_DIGITS digits.
 */
struct bignat {
	uint32_t *limb;
	size_t n;
	size_t cap;
};

static int bignat_mul_add(struct bignat *b, uint32_t mul, uint32_t add)
{
	uint64_t carry = add;
	uint32_t *limb;
	size_t i;

	for (i = 0; i < b->n; i++) {
		carry += (uint64_t)b->limb[i] * mul;
		b->limb[i] = (uint32_t)carry;
		carry >>= 32;
	}
	if (!carry)
		return 0;
	if (b->n == b->cap) {
		limb = realloc(b->limb, (b->cap * 2 + 4) * sizeof(*limb));
		if (!limb)
			return -ENOMEM;
		b->limb = limb;
		b->cap = b->cap * 2 + 4;
	}
	b->limb[b->n++] = (uint32_t)carry;
	return 0;
}

/* Divides @b by @div in place and returns the remainder. */
static uint32_t bignat_divmod(struct bignat *b, uint32_t div)
{
	uint64_t rem = 0;
	size_t i;

	for (i = b->n; i-- > 0;) {
		rem = (rem << 32) | b->limb[i];
		b->limb[i] = (uint32_t)(rem / div);
		rem %= div;
	}
	while (b->n && !b->limb[b->n - 1])
		b->n--;
	return (uint32_t)rem;
}

/* Writes @b as decimal text into @sb, which it resets. Consumes @b. */
static int bignat_to_decimal(struct bignat *b, struct strbuf *sb)
{
	char chunk[16];
	size_t i, len;
	char tmp;

	sb_reset(sb);
	if (!b->n)
		return sb_append(sb, "0", 1);
	/* Nine digits at a time, least significant first, then reversed. */
	while (b->n) {
		uint32_t rem = bignat_divmod(b, 1000000000u);

		len = (size_t)snprintf(chunk, sizeof(chunk), "%09u", rem);
		for (i = 0; i < len / 2; i++) {
			tmp = chunk[i];
			chunk[i] = chunk[len - 1 - i];
			chunk[len - 1 - i] = tmp;
		}
		if (sb_append(sb, chunk, len) < 0)
			return -ENOMEM;
	}
	while (sb->len > 1 && sb->data[sb->len - 1] == '0')
		sb->len--;
	for (i = 0; i < sb->len / 2; i++) {
		tmp = sb->data[i];
		sb->data[i] = sb->data[sb->len - 1 - i];
		sb->data[sb->len - 1 - i] = tmp;
	}
	sb->data[sb->len] = '\0';
	return 0;
}

/* Sets @out to the value of @b if it is at most @max. */
static bool bignat_to_u64(const struct bignat *b, uint64_t max, uint64_t *out)
{
	uint64_t v;

	if (b->n > 2)
		return false;
	v = b->n > 0 ? b->limb[0] : 0;
	if (b->n == 2)
		v |= (uint64_t)b->limb[1] << 32;
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* Lexer: code points, blanks and comments. */

/*
 * Reads the code point at the cursor without consuming it. Returns its
 * length in bytes, 0 at the end of input, or -EINVAL for bytes that are
 * not UTF-8 in a UTF-8 input.
 */
static int peek_cp(struct lexer *lx, uint32_t *cp)
{
	size_t n;

	if (lx->p >= lx->end)
		return 0;
	if (lx->latin1) {
		*cp = *lx->p;
		return 1;
	}
	n = utf8_decode(lx->p, lx->end, cp);
	if (!n)
		return lex_error(lx, lx->line,
				 "invalid UTF-8 byte 0x%02x; save the file as "
				 "UTF-8 or start it with '%%%% coding: latin-1'",
				 *lx->p);
	return (int)n;
}

/* Consumes one code point into @cp. Returns 0, -EINVAL or -ENODATA at
 * the end of input. */
static int next_cp(struct lexer *lx, uint32_t *cp)
{
	int n = peek_cp(lx, cp);

	if (n < 0)
		return n;
	if (n == 0)
		return -ENODATA;
	lx->p += n;
	if (*cp == '\n')
		lx->line++;
	return 0;
}

static void skip_blanks(struct lexer *lx)
{
	while (lx->p < lx->end) {
		unsigned char c = *lx->p;

		if (c == '%') {
			while (lx->p < lx->end && *lx->p != '\n')
				lx->p++;
		} else if (c == '\n') {
			lx->line++;
			lx->p++;
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' ||
			   c == '\v' || (lx->latin1 && c == 0xa0)) {
			lx->p++;
		} else {
			break;
		}
	}
}

/* Lexer: escapes, quoted atoms, strings, characters. */

static int lex_escape_hex(struct lexer *lx, uint32_t *cp)
{
	uint32_t v = 0;
	int digits = 0;
	bool braced = lx->p < lx->end && *lx->p == '{';

	if (braced)
		lx->p++;
	while (lx->p < lx->end && digit_value(*lx->p) < 16 &&
	       (braced || digits < 2)) {
		if (v > 0x10ffff)
			break;
		v = v * 16 + digit_value(*lx->p++);
		digits++;
	}
	if (braced) {
		if (lx->p >= lx->end || *lx->p != '}' || !digits)
			return lex_error(lx, lx->line,
					 "invalid escape: write \\x{HEX} with "
					 "hexadecimal digits and a closing '}'");
		lx->p++;
	} else if (digits != 2) {
		return lex_error(lx, lx->line,
				 "invalid escape: \\x needs two hexadecimal "
				 "digits or \\x{HEX}");
	}
	if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return lex_error(lx, lx->line,
				 "invalid escape: \\x{%X} is not a Unicode "
				 "code point", v);
	*cp = v;
	return 0;
}

/* Reads the escape after a backslash, as erl_scan does. */
static int lex_escape(struct lexer *lx, uint32_t *cp)
{
	static const char plain[] = "b\bd\177e\033f\fn\nr\rs t\tv\v";
	const char *hit;
	uint32_t c;
	int ret, i;

	ret = next_cp(lx, &c);
	if (ret == -ENODATA)
		return lex_error(lx, lx->line, "input ends inside an escape");
	if (ret < 0)
		return ret;

	if (c >= '0' && c <= '7') {
		*cp = c - '0';
		for (i = 1; i < 3 && lx->p < lx->end && *lx->p >= '0' &&
			    *lx->p <= '7';
		     i++)
			*cp = *cp * 8 + (*lx->p++ - '0');
		return 0;
	}
	if (c == 'x')
		return lex_escape_hex(lx, cp);
	if (c == '^') {
		ret = next_cp(lx, &c);
		if (ret == -ENODATA)
			return lex_error(lx, lx->line,
					 "input ends inside an escape");
		if (ret < 0)
			return ret;
		*cp = c & 0x1f;
		return 0;
	}
	hit = c < 0x80 ? strchr(plain, (int)c) : NULL;
	if (hit && c != 0 && (hit - plain) % 2 == 0) {
		*cp = (unsigned char)hit[1];
		return 0;
	}
	/* Any other escaped character stands for itself: \\ \' \" ... */
	*cp = c;
	return 0;
}

/*
 * Reads a quoted atom or string up to the closing @quote into the token's
 * text as UTF-8. @what names it for messages.
 */
static int lex_quoted(struct lexer *lx, char quote, const char *what,
		      size_t max_chars)
{
	int start = lx->line, ret;
	size_t chars = 0;
	uint32_t cp;

	/* '' and "" still get a NUL-terminated buffer. */
	if (sb_reserve(&lx->tok.text, 0) < 0)
		return -ENOMEM;
	lx->p++;
	for (;;) {
		ret = next_cp(lx, &cp);
		if (ret == -ENODATA)
			return lex_error(lx, start,
					 "%s is not terminated: add the "
					 "closing %c", what, quote);
		if (ret < 0)
			return ret;
		if (cp == (uint32_t)quote)
			break;
		if (cp == '\\') {
			ret = lex_escape(lx, &cp);
			if (ret < 0)
				return ret;
		}
		if (++chars > max_chars)
			return lex_error(lx, start,
					 "%s is longer than %zu characters",
					 what, max_chars);
		if (sb_append_utf8(&lx->tok.text, cp) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int lex_char(struct lexer *lx)
{
	uint32_t cp;
	int ret;

	lx->p++;
	ret = next_cp(lx, &cp);
	if (ret == -ENODATA)
		return lex_error(lx, lx->line,
				 "input ends after '$': write a character "
				 "such as $a");
	if (ret < 0)
		return ret;
	if (cp == '\\') {
		ret = lex_escape(lx, &cp);
		if (ret < 0)
			return ret;
	}
	lx->tok.kind = TOK_CHAR;
	lx->tok.integer = cp;
	return 0;
}

/* Lexer: numbers. */

/*
 * Reads digits of @base, with single '_' separators between digits as
 * OTP 23 and later allow, into @digits without the separators.
 */
static int lex_digits(struct lexer *lx, int base, struct strbuf *digits)
{
	sb_reset(digits);
	while (lx->p < lx->end) {
		if (*lx->p == '_' && digits->len && lx->p + 1 < lx->end &&
		    digit_value(lx->p[1]) < base) {
			lx->p++;
			continue;
		}
		if (digit_value(*lx->p) >= base)
			break;
		if (digits->len >= KD_TERM_MAX_DIGITS)
			return lex_error(lx, lx->line,
					 "integer literal has more than %d "
					 "digits", KD_TERM_MAX_DIGITS);
		if (sb_append(digits, lx->p++, 1) < 0)
			return -ENOMEM;
	}
	if (!digits->len)
		return lex_error(lx, lx->line,
				 "expected a digit of base %d", base);
	return 0;
}

/* Turns @digits of @base into an INTEGER token, or a BIGNUM token with
 * decimal text when the value does not fit int64. */
static int lex_integer_value(struct lexer *lx, int base,
			     const struct strbuf *digits)
{
	struct bignat b = { 0 };
	uint64_t v;
	size_t i;
	int ret = 0;

	for (i = 0; i < digits->len && !ret; i++)
		ret = bignat_mul_add(&b, base, digit_value(digits->data[i]));
	if (ret < 0)
		goto out_free;
	/* INT64_MAX + 1 stays an INTEGER token only after a minus sign, so
	 * it goes through BIGNUM and the sign folds it back. */
	if (bignat_to_u64(&b, INT64_MAX, &v)) {
		lx->tok.kind = TOK_INTEGER;
		lx->tok.integer = (int64_t)v;
		goto out_free;
	}
	lx->tok.kind = TOK_BIGNUM;
	ret = bignat_to_decimal(&b, &lx->tok.text);
out_free:
	free(b.limb);
	return ret;
}

/* strtod follows LC_NUMERIC, but Erlang floats always use '.'. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
	c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

static int lex_float(struct lexer *lx, struct strbuf *digits)
{
	struct strbuf more = { 0 };
	char *end;
	int ret;

	lx->p++; /* the '.' */
	ret = lex_digits(lx, 10, &more);
	if (ret == 0)
		ret = sb_append(digits, ".", 1);
	if (ret == 0)
		ret = sb_append(digits, more.data, more.len);
	if (ret == 0 && lx->p < lx->end && (*lx->p == 'e' || *lx->p == 'E')) {
		ret = sb_append(digits, "e", 1);
		lx->p++;
		if (ret == 0 && lx->p < lx->end &&
		    (*lx->p == '-' || *lx->p == '+'))
			ret = sb_append(digits, lx->p++, 1);
		if (ret == 0)
			ret = lex_digits(lx, 10, &more);
		if (ret == 0)
			ret = sb_append(digits, more.data, more.len);
	}
	free(more.data);
	if (ret < 0)
		return ret;

	pthread_once(&c_locale_once, c_locale_init);
	errno = 0;
	lx->tok.flt = c_locale ? strtod_l(digits->data, &end, c_locale)
			       : strtod(digits->data, &end);
	if (errno == ERANGE && (lx->tok.flt > 1.0 || lx->tok.flt < -1.0))
		return lex_error(lx, lx->line,
				 "float %s is out of range", digits->data);
	lx->tok.kind = TOK_FLOAT;
	return 0;
}

/* Reads Digits, Base#Digits or a float. */
static int lex_number(struct lexer *lx)
{
	struct strbuf digits = { 0 };
	int ret, base = 10;

	ret = lex_digits(lx, 10, &digits);
	if (ret < 0)
		goto out_free;

	if (lx->p + 1 < lx->end && *lx->p == '.' && isdigit_ascii(lx->p[1])) {
		ret = lex_float(lx, &digits);
		goto out_free;
	}
	if (lx->p < lx->end && *lx->p == '#') {
		base = digits.len <= 2 ? atoi(digits.data) : 0;
		if (base < 2 || base > 36) {
			ret = lex_error(lx, lx->line,
					"invalid base %s in %s#...: the base "
					"is 2 to 36", digits.data, digits.data);
			goto out_free;
		}
		lx->p++;
		ret = lex_digits(lx, base, &digits);
		if (ret < 0)
			goto out_free;
	}
	ret = lex_integer_value(lx, base, &digits);
out_free:
	free(digits.data);
	return ret;
}

/* Lexer: names, punctuation and the token loop. */

static bool is_reserved(const char *word)
{
	size_t i;

	for (i = 0; i < sizeof(reserved_words) / sizeof(reserved_words[0]); i++)
		if (!strcmp(word, reserved_words[i]))
			return true;
	return false;
}

/* Reads a bare atom, a variable or the keyword fun. */
static int lex_name(struct lexer *lx, uint32_t first)
{
	size_t chars = 0;
	uint32_t cp;
	int n;

	while ((n = peek_cp(lx, &cp)) > 0 && is_name_char(cp)) {
		if (++chars > KD_TERM_MAX_ATOM)
			return lex_error(lx, lx->line,
					 "atom or variable is longer than %d "
					 "characters", KD_TERM_MAX_ATOM);
		if (sb_append_utf8(&lx->tok.text, cp) < 0)
			return -ENOMEM;
		lx->p += n;
	}
	if (n < 0)
		return n;

	if (!is_lower(first)) {
		lx->tok.kind = TOK_VAR;
		return 0;
	}
	if (!strcmp(lx->tok.text.data, "fun")) {
		lx->tok.kind = TOK_FUN;
		return 0;
	}
	if (is_reserved(lx->tok.text.data))
		return lex_error(lx, lx->line,
				 "'%s' is a reserved word: quote it as '%s' "
				 "to use it as an atom",
				 lx->tok.text.data, lx->tok.text.data);
	lx->tok.kind = TOK_ATOM;
	return 0;
}

static int lex_punct(struct lexer *lx)
{
	static const char *const two[] = { "=>", "<<", ">>", "#{", ":=" };
	static const char one[] = "[]{}(),|:/.-+";
	size_t i;

	if (lx->p + 1 < lx->end) {
		for (i = 0; i < sizeof(two) / sizeof(two[0]); i++) {
			if (lx->p[0] == two[i][0] && lx->p[1] == two[i][1]) {
				memcpy(lx->tok.punct, two[i], 3);
				lx->p += 2;
				lx->tok.kind = TOK_PUNCT;
				return 0;
			}
		}
	}
	if (*lx->p && strchr(one, *lx->p)) {
		lx->tok.punct[0] = (char)*lx->p++;
		lx->tok.punct[1] = '\0';
		lx->tok.kind = TOK_PUNCT;
		return 0;
	}
	if (*lx->p >= 0x20 && *lx->p < 0x7f)
		return lex_error(lx, lx->line, "unexpected character '%c'",
				 *lx->p);
	return lex_error(lx, lx->line, "unexpected byte 0x%02x", *lx->p);
}

/* Scans the next token into lx->tok. */
static int lex_next(struct lexer *lx)
{
	uint32_t cp;
	int n;

	skip_blanks(lx);
	sb_reset(&lx->tok.text);
	lx->tok.line = lx->line;
	lx->tok.punct[0] = '\0';
	if (lx->p >= lx->end) {
		lx->tok.kind = TOK_EOF;
		return 0;
	}

	n = peek_cp(lx, &cp);
	if (n < 0)
		return n;
	if (isdigit_ascii(cp))
		return lex_number(lx);
	if (cp == '$')
		return lex_char(lx);
	if (cp == '"') {
		lx->tok.kind = TOK_STRING;
		return lex_quoted(lx, '"', "string", KD_TERM_MAX_TEXT);
	}
	if (cp == '\'') {
		lx->tok.kind = TOK_ATOM;
		return lex_quoted(lx, '\'', "quoted atom", KD_TERM_MAX_ATOM);
	}
	if (is_lower(cp) || is_upper(cp) || cp == '_')
		return lex_name(lx, cp);
	return lex_punct(lx);
}

/* Describes the lookahead token for "found ..." in messages. */
static const char *describe_token(const struct token *tok, char *buf,
				  size_t cap)
{
	switch (tok->kind) {
	case TOK_EOF:
		return "end of input";
	case TOK_INTEGER:
	case TOK_CHAR:
		snprintf(buf, cap, "'%lld'", (long long)tok->integer);
		break;
	case TOK_FLOAT:
		snprintf(buf, cap, "'%g'", tok->flt);
		break;
	case TOK_BIGNUM:
	case TOK_ATOM:
		snprintf(buf, cap, "'%.40s'", tok->text.data);
		break;
	case TOK_VAR:
		snprintf(buf, cap, "variable '%.40s'", tok->text.data);
		break;
	case TOK_STRING:
		snprintf(buf, cap, "string \"%.40s\"", tok->text.data);
		break;
	case TOK_PUNCT:
		snprintf(buf, cap, "'%s'", tok->punct);
		break;
	case TOK_FUN:
		return "'fun'";
	}
	return buf;
}

/* Parser: trees. */

struct termvec {
	struct kd_term **items;
	size_t n;
	size_t cap;
};

static int vec_push(struct termvec *v, struct kd_term *t)
{
	struct kd_term **items;
	size_t cap;

	if (v->n == v->cap) {
		cap = v->cap ? v->cap * 2 : 4;
		items = realloc(v->items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		v->items = items;
		v->cap = cap;
	}
	v->items[v->n++] = t;
	return 0;
}

static void vec_free(struct termvec *v)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		kd_term_free(v->items[i]);
	free(v->items);
	v->items = NULL;
	v->n = v->cap = 0;
}

static struct kd_term *term_new(enum kd_term_type type, int line)
{
	struct kd_term *t = calloc(1, sizeof(*t));

	if (t) {
		t->type = type;
		t->line = line;
	}
	return t;
}

/* A node whose text is a copy of @sb. */
static struct kd_term *term_new_text(enum kd_term_type type, int line,
				     const struct strbuf *sb)
{
	struct kd_term *t = term_new(type, line);

	if (!t)
		return NULL;
	t->u.text.bytes = malloc(sb->len + 1);
	if (!t->u.text.bytes) {
		free(t);
		return NULL;
	}
	if (sb->len)
		memcpy(t->u.text.bytes, sb->data, sb->len);
	t->u.text.bytes[sb->len] = '\0';
	t->u.text.len = sb->len;
	return t;
}

/* A LIST, TUPLE, MAP or CALL node that takes the items of @v. */
static struct kd_term *term_new_seq(enum kd_term_type type, int line,
				    struct termvec *v)
{
	struct kd_term *t = term_new(type, line);

	if (!t)
		return NULL;
	t->u.seq.items = v->items;
	t->u.seq.n = v->n;
	v->items = NULL;
	v->n = v->cap = 0;
	return t;
}

void kd_term_free(struct kd_term *term)
{
	size_t i;

	if (!term)
		return;
	switch (term->type) {
	case KD_TERM_INTEGER:
	case KD_TERM_FLOAT:
		break;
	case KD_TERM_BIGNUM:
	case KD_TERM_ATOM:
	case KD_TERM_STRING:
	case KD_TERM_BINARY:
		free(term->u.text.bytes);
		break;
	case KD_TERM_LIST:
	case KD_TERM_TUPLE:
	case KD_TERM_MAP:
		for (i = 0; i < term->u.seq.n; i++)
			kd_term_free(term->u.seq.items[i]);
		free(term->u.seq.items);
		kd_term_free(term->u.seq.tail);
		break;
	case KD_TERM_FUN:
		free(term->u.fun.module);
		free(term->u.fun.function);
		break;
	case KD_TERM_CALL:
		free(term->u.call.module);
		free(term->u.call.function);
		for (i = 0; i < term->u.call.n; i++)
			kd_term_free(term->u.call.args[i]);
		free(term->u.call.args);
		break;
	}
	free(term);
}

/* Parser: helpers over the lookahead token. */

static bool at_punct(const struct lexer *lx, const char *punct)
{
	return lx->tok.kind == TOK_PUNCT && !strcmp(lx->tok.punct, punct);
}

/* "line N: expected WHAT, found TOKEN". */
static int expected(struct lexer *lx, const char *what)
{
	char buf[96];

	return lex_error(lx, lx->tok.line, "expected %s, found %s", what,
			 describe_token(&lx->tok, buf, sizeof(buf)));
}

static int nomem(struct lexer *lx)
{
	lex_error(lx, lx->tok.line, "out of memory");
	return -ENOMEM;
}

static int parse_term(struct lexer *lx, int depth, struct kd_term **out);

/*
 * Parses TERM (',' TERM)* CLOSE after the opening bracket, which the
 * caller consumed. @what names the element for messages.
 */
static int parse_elements(struct lexer *lx, int depth, const char *close,
			  const char *what, struct termvec *v)
{
	struct kd_term *item;
	char msg[64];
	int ret;

	if (at_punct(lx, close))
		return lex_next(lx);
	for (;;) {
		ret = parse_term(lx, depth + 1, &item);
		if (ret < 0)
			return ret;
		if (vec_push(v, item) < 0) {
			kd_term_free(item);
			return nomem(lx);
		}
		if (at_punct(lx, close))
			return lex_next(lx);
		if (!at_punct(lx, ",")) {
			snprintf(msg, sizeof(msg), "',' or '%s' after %s",
				 close, what);
			return expected(lx, msg);
		}
		ret = lex_next(lx);
		if (ret < 0)
			return ret;
	}
}

/* Parser: the term forms. */

/* Folds a proper-list or string tail into @v, as [a | [b]] is [a, b]. */
static int list_fold_tail(struct termvec *v, struct kd_term **tail)
{
	struct kd_term *t = *tail, *item;
	size_t i = 0, n;
	uint32_t cp;
	int ret;

	if (t->type == KD_TERM_LIST) {
		for (; i < t->u.seq.n; i++) {
			ret = vec_push(v, t->u.seq.items[i]);
			if (ret < 0)
				return ret;
			t->u.seq.items[i] = NULL;
		}
		*tail = t->u.seq.tail;
		t->u.seq.tail = NULL;
		kd_term_free(t);
		return 0;
	}
	if (t->type != KD_TERM_STRING)
		return 0;
	while (i < t->u.text.len) {
		n = utf8_decode((unsigned char *)t->u.text.bytes + i,
				(unsigned char *)t->u.text.bytes + t->u.text.len,
				&cp);
		item = term_new(KD_TERM_INTEGER, t->line);
		if (!item)
			return -ENOMEM;
		item->u.integer = cp;
		ret = vec_push(v, item);
		if (ret < 0) {
			kd_term_free(item);
			return ret;
		}
		i += n;
	}
	*tail = NULL;
	kd_term_free(t);
	return 0;
}

static int parse_list(struct lexer *lx, int depth, struct kd_term **out)
{
	struct termvec v = { 0 };
	struct kd_term *item, *tail = NULL;
	int line = lx->tok.line, ret;

	ret = lex_next(lx);
	while (ret == 0 && !at_punct(lx, "]")) {
		ret = parse_term(lx, depth + 1, &item);
		if (ret < 0)
			break;
		if (vec_push(&v, item) < 0) {
			kd_term_free(item);
			ret = nomem(lx);
			break;
		}
		if (at_punct(lx, "|")) {
			ret = lex_next(lx);
			if (ret == 0)
				ret = parse_term(lx, depth + 1, &tail);
			if (ret == 0 && !at_punct(lx, "]"))
				ret = expected(lx, "']' after the list tail");
			break;
		}
		if (at_punct(lx, "]"))
			break;
		if (!at_punct(lx, ","))
			ret = expected(lx, "',' or ']' after list element");
		else if ((ret = lex_next(lx)) == 0 && at_punct(lx, "]"))
			ret = expected(lx, "a list element after ','");
	}
	if (ret == 0 && tail && list_fold_tail(&v, &tail) < 0)
		ret = nomem(lx);
	if (ret == 0)
		ret = lex_next(lx);
	if (ret == 0 && !(*out = term_new_seq(KD_TERM_LIST, line, &v)))
		ret = nomem(lx);
	if (ret < 0) {
		vec_free(&v);
		kd_term_free(tail);
		return ret;
	}
	(*out)->u.seq.tail = tail;
	return 0;
}

static int parse_tuple(struct lexer *lx, int depth, struct kd_term **out)
{
	struct termvec v = { 0 };
	int line = lx->tok.line, ret;

	ret = lex_next(lx);
	if (ret == 0)
		ret = parse_elements(lx, depth, "}", "tuple element", &v);
	if (ret == 0 && !(*out = term_new_seq(KD_TERM_TUPLE, line, &v)))
		ret = nomem(lx);
	if (ret < 0)
		vec_free(&v);
	return ret;
}

/* Parses one K => V association of a map literal into @v. */
static int parse_assoc(struct lexer *lx, int depth, struct termvec *v)
{
	struct kd_term *key, *value;
	int ret;

	ret = parse_term(lx, depth + 1, &key);
	if (ret < 0)
		return ret;
	if (vec_push(v, key) < 0) {
		kd_term_free(key);
		return nomem(lx);
	}
	if (at_punct(lx, ":="))
		return lex_error(lx, lx->tok.line,
				 "':=' updates an existing key; write '=>' in "
				 "a map literal");
	if (!at_punct(lx, "=>"))
		return expected(lx, "'=>' after map key");
	ret = lex_next(lx);
	if (ret == 0)
		ret = parse_term(lx, depth + 1, &value);
	if (ret < 0)
		return ret;
	if (vec_push(v, value) < 0) {
		kd_term_free(value);
		return nomem(lx);
	}
	return 0;
}

static int parse_map(struct lexer *lx, int depth, struct kd_term **out)
{
	struct termvec v = { 0 };
	int line = lx->tok.line, ret;

	ret = lex_next(lx);
	while (ret == 0 && !at_punct(lx, "}")) {
		ret = parse_assoc(lx, depth, &v);
		if (ret < 0)
			break;
		if (at_punct(lx, "}"))
			break;
		if (!at_punct(lx, ","))
			ret = expected(lx, "',' or '}' after map value");
		else if ((ret = lex_next(lx)) == 0 && at_punct(lx, "}"))
			ret = expected(lx, "a map key after ','");
	}
	if (ret == 0)
		ret = lex_next(lx);
	if (ret == 0 && !(*out = term_new_seq(KD_TERM_MAP, line, &v)))
		ret = nomem(lx);
	if (ret < 0)
		vec_free(&v);
	return ret;
}

/* Appends a string segment, "..." or "..."/utf8, to the binary @bin. */
static int parse_binary_string(struct lexer *lx, struct strbuf *bin)
{
	struct strbuf text = lx->tok.text;
	const unsigned char *s, *end;
	bool utf8 = false;
	uint32_t cp;
	size_t n;
	int ret;

	lx->tok.text = (struct strbuf){ 0 };
	ret = lex_next(lx);
	if (ret == 0 && at_punct(lx, "/")) {
		ret = lex_next(lx);
		if (ret == 0 && !(lx->tok.kind == TOK_ATOM &&
				  !strcmp(lx->tok.text.data, "utf8")))
			ret = expected(lx, "'utf8' after '/' in a binary");
		if (ret == 0)
			ret = lex_next(lx);
		utf8 = true;
	}
	if (ret < 0 || !text.len)
		goto out_free;

	if (utf8) {
		ret = sb_append(bin, text.data, text.len) < 0 ? nomem(lx) : 0;
		goto out_free;
	}
	s = (const unsigned char *)text.data;
	end = s + text.len;
	while (s < end && ret == 0) {
		n = utf8_decode(s, end, &cp);
		s += n;
		if (cp > 255)
			ret = lex_error(lx, lx->tok.line,
					"binary string has character U+%04X "
					"above 255: write \"...\"/utf8 to store "
					"it as UTF-8", cp);
		else if (sb_append(bin, &(char){ (char)cp }, 1) < 0)
			ret = nomem(lx);
	}
out_free:
	free(text.data);
	return ret;
}

/* Appends one byte segment, 0..255 or $c, to the binary @bin. */
static int parse_binary_byte(struct lexer *lx, struct strbuf *bin)
{
	char buf[96];
	bool neg = false;
	int ret;

	if (at_punct(lx, "-")) {
		neg = true;
		ret = lex_next(lx);
		if (ret < 0)
			return ret;
	}
	if (lx->tok.kind != TOK_INTEGER && lx->tok.kind != TOK_CHAR &&
	    lx->tok.kind != TOK_BIGNUM)
		return expected(lx, "a byte (0 to 255) or a string in a binary");
	describe_token(&lx->tok, buf, sizeof(buf));
	if (neg || lx->tok.kind == TOK_BIGNUM || lx->tok.integer > 255)
		return lex_error(lx, lx->tok.line,
				 "binary byte %s%s is out of range: each "
				 "byte of <<...>> is 0 to 255",
				 neg ? "-" : "", buf);
	if (sb_append(bin, &(char){ (char)lx->tok.integer }, 1) < 0)
		return nomem(lx);
	return lex_next(lx);
}

static int parse_binary(struct lexer *lx, struct kd_term **out)
{
	struct strbuf bin = { 0 };
	int line = lx->tok.line, ret;

	ret = lex_next(lx);
	while (ret == 0 && !at_punct(lx, ">>")) {
		if (lx->tok.kind == TOK_STRING)
			ret = parse_binary_string(lx, &bin);
		else
			ret = parse_binary_byte(lx, &bin);
		if (ret < 0)
			break;
		if (at_punct(lx, ":") || at_punct(lx, "/"))
			ret = lex_error(lx, lx->tok.line,
					"binary segment sizes and types are not "
					"supported: write bytes 0 to 255 or "
					"\"...\"/utf8");
		else if (at_punct(lx, ">>"))
			break;
		else if (!at_punct(lx, ","))
			ret = expected(lx, "',' or '>>' after binary segment");
		else if ((ret = lex_next(lx)) == 0 && at_punct(lx, ">>"))
			ret = expected(lx, "a binary segment after ','");
	}
	if (ret == 0)
		ret = lex_next(lx);
	if (ret == 0 && !(*out = term_new_text(KD_TERM_BINARY, line, &bin)))
		ret = nomem(lx);
	free(bin.data);
	return ret;
}

/* Takes the text of the lookahead atom token. Returns NULL if it is not
 * an atom. */
static char *take_atom(struct lexer *lx)
{
	char *name;

	if (lx->tok.kind != TOK_ATOM)
		return NULL;
	name = lx->tok.text.data;
	lx->tok.text = (struct strbuf){ 0 };
	return name;
}

/* fun Module:Function/Arity. */
static int parse_fun(struct lexer *lx, struct kd_term **out)
{
	char *module = NULL, *function = NULL;
	int line = lx->tok.line, ret;
	int64_t arity = 0;

	ret = lex_next(lx);
	if (ret == 0 && !(module = take_atom(lx)))
		ret = expected(lx, "a module name after 'fun'");
	if (ret == 0 && (ret = lex_next(lx)) == 0 && !at_punct(lx, ":"))
		ret = lex_error(lx, lx->tok.line,
				"fun %s/... names a local function, which "
				"has no meaning outside a module: write fun "
				"Module:%s/Arity", module, module);
	if (ret == 0 && (ret = lex_next(lx)) == 0 &&
	    !(function = take_atom(lx)))
		ret = expected(lx, "a function name after 'fun Module:'");
	if (ret == 0 && (ret = lex_next(lx)) == 0 && !at_punct(lx, "/"))
		ret = expected(lx, "'/' and an arity after fun Module:Function");
	if (ret == 0 && (ret = lex_next(lx)) == 0) {
		arity = lx->tok.integer;
		if (lx->tok.kind != TOK_INTEGER || arity > 255)
			ret = expected(lx, "an arity from 0 to 255");
	}
	if (ret == 0)
		ret = lex_next(lx);
	if (ret == 0 && !(*out = term_new(KD_TERM_FUN, line)))
		ret = nomem(lx);
	if (ret < 0) {
		free(module);
		free(function);
		return ret;
	}
	(*out)->u.fun.module = module;
	(*out)->u.fun.function = function;
	(*out)->u.fun.arity = (unsigned)arity;
	return 0;
}

/* Module:Function(Args), after the caller took Module and saw ':'. */
static int parse_call(struct lexer *lx, int depth, char *module,
		      struct kd_term **out)
{
	struct termvec v = { 0 };
	char *function = NULL;
	int line = lx->tok.line, ret;

	ret = lex_next(lx);
	if (ret == 0 && !(function = take_atom(lx)))
		ret = expected(lx, "a function name after 'Module:'");
	if (ret == 0 && (ret = lex_next(lx)) == 0 && !at_punct(lx, "("))
		ret = expected(lx, "'(' after Module:Function");
	if (ret == 0 && (ret = lex_next(lx)) == 0)
		ret = parse_elements(lx, depth, ")", "call argument", &v);
	if (ret == 0 && !(*out = term_new(KD_TERM_CALL, line)))
		ret = nomem(lx);
	if (ret < 0) {
		vec_free(&v);
		free(module);
		free(function);
		return ret;
	}
	(*out)->u.call.module = module;
	(*out)->u.call.function = function;
	(*out)->u.call.args = v.items;
	(*out)->u.call.n = v.n;
	return 0;
}

static int parse_atom(struct lexer *lx, int depth, struct kd_term **out)
{
	int line = lx->tok.line, ret;
	char *name = take_atom(lx);

	ret = lex_next(lx);
	if (ret == 0 && at_punct(lx, ":") && (lx->flags & KD_TERM_PARSE_CALLS))
		return parse_call(lx, depth, name, out);
	if (ret == 0 && at_punct(lx, ":"))
		ret = lex_error(lx, lx->tok.line,
				"function calls such as %s:... are not "
				"allowed in a term", name);
	if (ret == 0 && !(*out = term_new(KD_TERM_ATOM, line)))
		ret = nomem(lx);
	if (ret < 0) {
		free(name);
		return ret;
	}
	(*out)->u.text.bytes = name;
	(*out)->u.text.len = strlen(name);
	return 0;
}

/* "a" "b" is "ab", as in Erlang. */
static int parse_string(struct lexer *lx, struct kd_term **out)
{
	struct strbuf text = lx->tok.text;
	int line = lx->tok.line, ret;

	lx->tok.text = (struct strbuf){ 0 };
	if (!text.data && sb_reserve(&text, 0) < 0)
		return nomem(lx);
	ret = lex_next(lx);
	while (ret == 0 && lx->tok.kind == TOK_STRING) {
		if (sb_append(&text, lx->tok.text.data, lx->tok.text.len) < 0)
			ret = nomem(lx);
		else
			ret = lex_next(lx);
	}
	if (ret == 0 && !(*out = term_new(KD_TERM_STRING, line)))
		ret = nomem(lx);
	if (ret < 0) {
		free(text.data);
		return ret;
	}
	text.data[text.len] = '\0';
	(*out)->u.text.bytes = text.data;
	(*out)->u.text.len = text.len;
	return 0;
}

/* A number or character, after an optional sign. */
static int parse_number(struct lexer *lx, bool neg, struct kd_term **out)
{
	static const char int64_min[] = "9223372036854775808";
	struct token *tok = &lx->tok;
	struct kd_term *t;
	int ret;

	if (tok->kind == TOK_FLOAT) {
		t = term_new(KD_TERM_FLOAT, tok->line);
		if (t)
			t->u.flt = neg ? -tok->flt : tok->flt;
	} else if (tok->kind == TOK_BIGNUM && neg &&
		   !strcmp(tok->text.data, int64_min)) {
		t = term_new(KD_TERM_INTEGER, tok->line);
		if (t)
			t->u.integer = INT64_MIN;
	} else if (tok->kind == TOK_BIGNUM) {
		if (neg && sb_append(&tok->text, "-", 1) < 0)
			return nomem(lx);
		if (neg)
			memmove(tok->text.data + 1, tok->text.data,
				tok->text.len - 1);
		if (neg)
			tok->text.data[0] = '-';
		t = term_new_text(KD_TERM_BIGNUM, tok->line, &tok->text);
	} else {
		t = term_new(KD_TERM_INTEGER, tok->line);
		if (t)
			t->u.integer = neg ? -tok->integer : tok->integer;
	}
	if (!t)
		return nomem(lx);
	ret = lex_next(lx);
	if (ret < 0) {
		kd_term_free(t);
		return ret;
	}
	*out = t;
	return 0;
}

static int parse_signed(struct lexer *lx, struct kd_term **out)
{
	bool neg = at_punct(lx, "-");
	int ret;

	ret = lex_next(lx);
	if (ret < 0)
		return ret;
	if (lx->tok.kind != TOK_INTEGER && lx->tok.kind != TOK_BIGNUM &&
	    lx->tok.kind != TOK_FLOAT && lx->tok.kind != TOK_CHAR)
		return expected(lx, neg ? "a number after '-'"
					: "a number after '+'");
	return parse_number(lx, neg, out);
}

static int parse_term(struct lexer *lx, int depth, struct kd_term **out)
{
	if (depth > KD_TERM_MAX_DEPTH)
		return lex_error(lx, lx->tok.line,
				 "term is nested deeper than %d levels",
				 KD_TERM_MAX_DEPTH);

	switch (lx->tok.kind) {
	case TOK_INTEGER:
	case TOK_BIGNUM:
	case TOK_FLOAT:
	case TOK_CHAR:
		return parse_number(lx, false, out);
	case TOK_ATOM:
		return parse_atom(lx, depth, out);
	case TOK_STRING:
		return parse_string(lx, out);
	case TOK_FUN:
		return parse_fun(lx, out);
	case TOK_VAR:
		return lex_error(lx, lx->tok.line,
				 "variable '%s' is not allowed in a term: "
				 "quote it as an atom or a string",
				 lx->tok.text.data);
	case TOK_PUNCT:
		if (at_punct(lx, "-") || at_punct(lx, "+"))
			return parse_signed(lx, out);
		if (at_punct(lx, "["))
			return parse_list(lx, depth, out);
		if (at_punct(lx, "{"))
			return parse_tuple(lx, depth, out);
		if (at_punct(lx, "#{"))
			return parse_map(lx, depth, out);
		if (at_punct(lx, "<<"))
			return parse_binary(lx, out);
		break;
	case TOK_EOF:
		break;
	}
	return expected(lx, "a term");
}

int kd_term_parse_flags(const char *text, size_t len, unsigned flags,
			struct kd_term **out, char *err, size_t errlen)
{
	struct lexer lx = {
		.p = (const unsigned char *)text,
		.end = (const unsigned char *)text + len,
		.line = 1,
		.flags = flags,
	};
	struct kd_term *term = NULL;
	char scratch[8];
	int ret, coding;

	lx.err = err && errlen ? err : scratch;
	lx.errlen = err && errlen ? errlen : sizeof(scratch);
	lx.err[0] = '\0';
	if (!text && len)
		return lex_error(&lx, 1, "no input text");
	if (len > KD_TERM_MAX_TEXT) {
		lex_error(&lx, 1, "input of %zu bytes is larger than the %u "
			  "byte limit", len, KD_TERM_MAX_TEXT);
		return kd_fail(E2BIG, "%s", lx.err);
	}

	coding = read_coding(&lx);
	if (coding == -EINVAL)
		goto out_fail;
	lx.latin1 = coding == 1 || (coding == -1 && !utf8_valid(lx.p, lx.end));

	ret = lex_next(&lx);
	if (ret == 0)
		ret = parse_term(&lx, 1, &term);
	if (ret == 0 && at_punct(&lx, "."))
		ret = lex_next(&lx);
	else if (ret == 0 && (flags & KD_TERM_PARSE_DOT))
		ret = expected(&lx, "'.' after the term");
	if (ret == 0 && lx.tok.kind != TOK_EOF)
		ret = expected(&lx, "end of input after the term");
	free(lx.tok.text.data);
	if (ret < 0) {
		kd_term_free(term);
		return kd_fail(-ret, "%s", lx.err);
	}
	*out = term;
	return 0;
out_fail:
	return kd_fail(EINVAL, "%s", lx.err);
}

int kd_term_parse(const char *text, size_t len, struct kd_term **out,
		  char *err, size_t errlen)
{
	return kd_term_parse_flags(text, len, 0, out, err, errlen);
}

/* Encoding to external term format. */

/* Encodes an integer outside int64: with ei_x_encode_ulonglong up to
 * 2^64 - 1, else as SMALL_BIG_EXT or LARGE_BIG_EXT. */
static int encode_bignum(const struct kd_term *t, ei_x_buff *x)
{
	const char *digits = t->u.text.bytes;
	struct bignat b = { 0 };
	erlang_big *big = NULL;
	unsigned short *d;
	bool neg = digits[0] == '-';
	uint64_t v;
	size_t i, nbytes;
	int ret = 0;

	if (neg)
		digits++;
	if (strlen(digits) > KD_TERM_MAX_DIGITS || !*digits)
		return kd_fail(ERANGE, "term: integer %.40s... has more than "
			       "%d digits, which kdist does not encode",
			       t->u.text.bytes, KD_TERM_MAX_DIGITS);
	for (i = 0; digits[i] && ret == 0; i++) {
		if (!isdigit_ascii(digits[i])) {
			free(b.limb);
			return kd_fail(EINVAL, "term: bignum text '%s' is not "
				       "a decimal integer", t->u.text.bytes);
		}
		ret = bignat_mul_add(&b, 10, digits[i] - '0');
	}
	if (ret < 0)
		goto out_nomem;

	if (!neg && bignat_to_u64(&b, UINT64_MAX, &v)) {
		ret = ei_x_encode_ulonglong(x, v) < 0 ? -ENOMEM : 0;
		goto out_free;
	}
	nbytes = b.n * 4;
	while (nbytes > 1 && !((b.limb[(nbytes - 1) / 4] >>
				(8 * ((nbytes - 1) % 4))) & 0xff))
		nbytes--;
	big = ei_alloc_big(nbytes);
	if (!big)
		goto out_nomem;
	big->is_neg = neg;
	d = big->digits;
	for (i = 0; i < (nbytes + 1) / 2; i++)
		d[i] = (unsigned short)(b.limb[i / 2] >> (16 * (i % 2)));
	ret = ei_x_encode_big(x, big) < 0 ? -ENOMEM : 0;
	ei_free_big(big);
out_free:
	free(b.limb);
	if (ret < 0)
		return kd_fail(ENOMEM, "term: out of memory encoding %.40s",
			       t->u.text.bytes);
	return 0;
out_nomem:
	free(b.limb);
	return kd_fail(ENOMEM, "term: out of memory encoding %.40s",
		       t->u.text.bytes);
}

/* A string is STRING_EXT when every character is below 256, as
 * ei_x_encode_string writes it, else a list of integers. */
static int encode_string(const struct kd_term *t, ei_x_buff *x)
{
	const unsigned char *s = (unsigned char *)t->u.text.bytes;
	const unsigned char *end = s + t->u.text.len, *p;
	size_t n = 0, count = 0, step;
	char *latin1;
	bool wide = false;
	uint32_t cp;
	int ret;

	for (p = s; p < end; p += step, count++) {
		step = utf8_decode(p, end, &cp);
		if (!step)
			return kd_fail(EINVAL, "term: string on line %d is not "
				       "UTF-8", t->line);
		wide |= cp > 255;
	}
	if (!wide) {
		latin1 = malloc(count + 1);
		if (!latin1)
			return kd_fail(ENOMEM, "term: out of memory");
		for (p = s; p < end; p += step) {
			step = utf8_decode(p, end, &cp);
			latin1[n++] = (char)cp;
		}
		ret = ei_x_encode_string_len(x, latin1, (int)n);
		free(latin1);
		return ret < 0 ? kd_fail(ENOMEM, "term: out of memory") : 0;
	}
	if (ei_x_encode_list_header(x, (long)count) < 0)
		return kd_fail(ENOMEM, "term: out of memory");
	for (p = s; p < end; p += step) {
		step = utf8_decode(p, end, &cp);
		if (ei_x_encode_longlong(x, cp) < 0)
			return kd_fail(ENOMEM, "term: out of memory");
	}
	return ei_x_encode_empty_list(x) < 0
		       ? kd_fail(ENOMEM, "term: out of memory")
		       : 0;
}

static int encode_fun(const struct kd_term *t, ei_x_buff *x)
{
	erlang_fun fun = { 0 };

	if (strlen(t->u.fun.module) >= sizeof(fun.module))
		return kd_fail(EINVAL, "term: module name in fun on line %d is "
			       "too long", t->line);
	fun.type = EI_FUN_EXPORT;
	fun.arity = t->u.fun.arity;
	strcpy(fun.module, t->u.fun.module);
	fun.u.exprt.func = t->u.fun.function;
	if (ei_x_encode_fun(x, &fun) < 0)
		return kd_fail(ENOMEM, "term: encoding fun %s:%s/%u failed",
			       t->u.fun.module, t->u.fun.function,
			       t->u.fun.arity);
	return 0;
}

static int encode_seq(const struct kd_term *t, ei_x_buff *x)
{
	size_t i, n = t->u.seq.n;
	int ret;

	if (t->type == KD_TERM_TUPLE)
		ret = ei_x_encode_tuple_header(x, (long)n);
	else if (t->type == KD_TERM_MAP)
		ret = ei_x_encode_map_header(x, (long)(n / 2));
	else
		ret = n ? ei_x_encode_list_header(x, (long)n) : 0;
	if (ret < 0)
		return kd_fail(ENOMEM, "term: out of memory");
	for (i = 0; i < n; i++) {
		ret = kd_term_encode(t->u.seq.items[i], x);
		if (ret < 0)
			return ret;
	}
	if (t->type != KD_TERM_LIST)
		return 0;
	if (t->u.seq.tail)
		return kd_term_encode(t->u.seq.tail, x);
	return ei_x_encode_empty_list(x) < 0
		       ? kd_fail(ENOMEM, "term: out of memory")
		       : 0;
}

int kd_term_encode(const struct kd_term *term, ei_x_buff *x)
{
	int ret = 0;

	switch (term->type) {
	case KD_TERM_INTEGER:
		ret = ei_x_encode_longlong(x, term->u.integer);
		break;
	case KD_TERM_FLOAT:
		ret = ei_x_encode_double(x, term->u.flt);
		break;
	case KD_TERM_ATOM:
		ret = ei_x_encode_atom_len_as(x, term->u.text.bytes,
					      (int)term->u.text.len,
					      ERLANG_UTF8, ERLANG_UTF8);
		if (ret < 0)
			return kd_fail(EINVAL, "term: atom '%.40s' on line %d "
				       "cannot be encoded: at most %d "
				       "characters", term->u.text.bytes,
				       term->line, KD_TERM_MAX_ATOM);
		return 0;
	case KD_TERM_BINARY:
		ret = ei_x_encode_binary(x, term->u.text.bytes,
					 (int)term->u.text.len);
		break;
	case KD_TERM_BIGNUM:
		return encode_bignum(term, x);
	case KD_TERM_STRING:
		return encode_string(term, x);
	case KD_TERM_FUN:
		return encode_fun(term, x);
	case KD_TERM_LIST:
	case KD_TERM_TUPLE:
	case KD_TERM_MAP:
		return encode_seq(term, x);
	case KD_TERM_CALL:
		return kd_fail(EOPNOTSUPP, "term: the call %s:%s(...) on line "
			       "%d is not a value; only options files "
			       "evaluate it", term->u.call.module,
			       term->u.call.function, term->line);
	}
	return ret < 0 ? kd_fail(ENOMEM, "term: out of memory") : 0;
}

/* Formatting in Erlang syntax. */

struct fmt {
	char *buf;
	size_t cap;
	size_t len; /* bytes written so far, excluding the NUL */
};

static void fmt_printf(struct fmt *f, const char *fmtstr, ...)
	__attribute__((format(printf, 2, 3)));

static void fmt_printf(struct fmt *f, const char *fmtstr, ...)
{
	va_list ap;
	int n;

	if (f->len + 1 >= f->cap)
		return;
	va_start(ap, fmtstr);
	n = vsnprintf(f->buf + f->len, f->cap - f->len, fmtstr, ap);
	va_end(ap);
	if (n > 0)
		f->len += (size_t)n < f->cap - f->len ? (size_t)n
						      : f->cap - f->len - 1;
}

static bool atom_needs_quotes(const char *name)
{
	const char *p;

	if (!(*name >= 'a' && *name <= 'z') || is_reserved(name) ||
	    !strcmp(name, "fun"))
		return true;
	for (p = name; *p; p++)
		if (!(isalnum_ascii(*p) || *p == '_' || *p == '@'))
			return true;
	return false;
}

/* Writes @len bytes of UTF-8 text between @quote characters, escaping
 * the quote, backslash and control characters. */
static void fmt_quoted(struct fmt *f, char quote, const char *s, size_t len)
{
	size_t i;

	fmt_printf(f, "%c", quote);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == (unsigned char)quote || c == '\\')
			fmt_printf(f, "\\%c", c);
		else if (c == '\n')
			fmt_printf(f, "\\n");
		else if (c == '\t')
			fmt_printf(f, "\\t");
		else if (c < 0x20 || c == 0x7f)
			fmt_printf(f, "\\x{%X}", c);
		else
			fmt_printf(f, "%c", c);
	}
	fmt_printf(f, "%c", quote);
}

static void fmt_binary(struct fmt *f, const struct kd_term *t)
{
	bool printable = true;
	size_t i;

	for (i = 0; i < t->u.text.len; i++) {
		unsigned char c = (unsigned char)t->u.text.bytes[i];

		printable &= c >= 0x20 && c < 0x7f;
	}
	if (printable && t->u.text.len) {
		fmt_printf(f, "<<");
		fmt_quoted(f, '"', t->u.text.bytes, t->u.text.len);
		fmt_printf(f, ">>");
		return;
	}
	fmt_printf(f, "<<");
	for (i = 0; i < t->u.text.len; i++)
		fmt_printf(f, "%s%u", i ? "," : "",
			   (unsigned char)t->u.text.bytes[i]);
	fmt_printf(f, ">>");
}

/* The shortest form that reads back as the same double, with the ".0"
 * that Erlang requires of a float. */
static void fmt_float(struct fmt *f, double v)
{
	char text[40];
	int prec;

	for (prec = 15; prec < 17; prec++) {
		snprintf(text, sizeof(text), "%.*g", prec, v);
		if (strtod(text, NULL) == v)
			break;
	}
	snprintf(text, sizeof(text), "%.*g", prec, v);
	if (!strpbrk(text, ".en"))
		strcat(text, ".0");
	fmt_printf(f, "%s", text);
}

static void fmt_term(struct fmt *f, const struct kd_term *t);

static void fmt_seq(struct fmt *f, const char *open, struct kd_term **items,
		    size_t n, const char *sep2, const char *close)
{
	size_t i;

	fmt_printf(f, "%s", open);
	for (i = 0; i < n; i++) {
		if (i)
			fmt_printf(f, "%s", sep2 && i % 2 ? sep2 : ",");
		fmt_term(f, items[i]);
	}
	if (close)
		fmt_printf(f, "%s", close);
}

static void fmt_term(struct fmt *f, const struct kd_term *t)
{
	switch (t->type) {
	case KD_TERM_INTEGER:
		fmt_printf(f, "%lld", (long long)t->u.integer);
		break;
	case KD_TERM_FLOAT:
		fmt_float(f, t->u.flt);
		break;
	case KD_TERM_BIGNUM:
		fmt_printf(f, "%s", t->u.text.bytes);
		break;
	case KD_TERM_ATOM:
		if (atom_needs_quotes(t->u.text.bytes))
			fmt_quoted(f, '\'', t->u.text.bytes, t->u.text.len);
		else
			fmt_printf(f, "%s", t->u.text.bytes);
		break;
	case KD_TERM_STRING:
		fmt_quoted(f, '"', t->u.text.bytes, t->u.text.len);
		break;
	case KD_TERM_BINARY:
		fmt_binary(f, t);
		break;
	case KD_TERM_LIST:
		fmt_seq(f, "[", t->u.seq.items, t->u.seq.n, NULL, NULL);
		if (t->u.seq.tail) {
			fmt_printf(f, "|");
			fmt_term(f, t->u.seq.tail);
		}
		fmt_printf(f, "]");
		break;
	case KD_TERM_TUPLE:
		fmt_seq(f, "{", t->u.seq.items, t->u.seq.n, NULL, "}");
		break;
	case KD_TERM_MAP:
		fmt_seq(f, "#{", t->u.seq.items, t->u.seq.n, " => ", "}");
		break;
	case KD_TERM_FUN:
		fmt_printf(f, "fun %s:%s/%u", t->u.fun.module,
			   t->u.fun.function, t->u.fun.arity);
		break;
	case KD_TERM_CALL:
		fmt_printf(f, "%s:%s", t->u.call.module, t->u.call.function);
		fmt_seq(f, "(", t->u.call.args, t->u.call.n, NULL, ")");
		break;
	}
}

void kd_term_format(const struct kd_term *term, char *buf, size_t cap)
{
	struct fmt f = { .buf = buf, .cap = cap };

	if (!cap)
		return;
	buf[0] = '\0';
	if (term)
		fmt_term(&f, term);
}

int kd_term_is_atom(const struct kd_term *term, const char *name)
{
	return term && term->type == KD_TERM_ATOM &&
	       !strcmp(term->u.text.bytes, name);
}

const struct kd_term *kd_term_proplist_get(const struct kd_term *list,
					   const char *key)
{
	const struct kd_term *item;
	size_t i;

	if (!list || list->type != KD_TERM_LIST)
		return NULL;
	for (i = 0; i < list->u.seq.n; i++) {
		item = list->u.seq.items[i];
		if (item->type == KD_TERM_TUPLE && item->u.seq.n == 2 &&
		    kd_term_is_atom(item->u.seq.items[0], key))
			return item->u.seq.items[1];
	}
	return NULL;
}
