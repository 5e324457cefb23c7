// SPDX-License-Identifier: Apache-2.0
/*
 * Control-message decoding: the input is one packet payload for
 * kd_ctrl_decode(), and also a term for kd_etf_validate() (from the first
 * byte and from the second, past a 131). Whatever either accepts must be
 * safe to walk with ei, and every pointer in struct kd_ctrl must stay
 * inside the packet.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "control.h"
#include "fuzz.h"

static bool ctrl_inside(const uint8_t *pkt, size_t len, const uint8_t *p,
			size_t n)
{
	if (!p)
		return n == 0;
	return p >= pkt && n <= len && (size_t)(p - pkt) <= len - n;
}

/*
 * Walks a validated term with ei: skip, then decode for printing. The
 * validator promises only that ei stays inside the term.
 *
 * NOTE: ei_skip_term() (erl_interface 5.3) ignores a nested element that
 * fails to decode and returns success with the index short of the end.
 * kd_etf_validate() rejects the FLOAT_EXT and bitstring forms that do
 * this, but still accepts EXPORT_EXT and FUN_EXT whose parts are not the
 * atoms and integers ei expects, so this checks index <= len, not ==.
 */
static void ctrl_walk_term(const uint8_t *term, size_t len)
{
	char *text = NULL;
	int index = 0;

	if (ei_skip_term((const char *)term, &index) == 0)
		kd_fuzz_check((size_t)index <= len);
	index = 0;
	if (ei_s_print_term(&text, (const char *)term, &index) >= 0)
		kd_fuzz_check((size_t)index <= len);
	free(text);
}

static void ctrl_check_validate(const uint8_t *buf, size_t len)
{
	size_t term_len = 0;

	if (kd_etf_validate(buf, len, &term_len) != 0)
		return;
	kd_fuzz_check(term_len > 0);
	kd_fuzz_check(term_len <= len);
	ctrl_walk_term(buf, term_len);
}

static void ctrl_check_decoded(const uint8_t *pkt, size_t len,
			       const struct kd_ctrl *c)
{
	kd_fuzz_check(ctrl_inside(pkt, len, c->msg, c->msg_len));
	kd_fuzz_check(ctrl_inside(pkt, len, c->msg_term, c->msg_term_len));
	kd_fuzz_check(ctrl_inside(pkt, len, c->reason, c->reason_len));
	kd_fuzz_check(ctrl_inside(pkt, len, c->result, c->result_len));
	kd_fuzz_check(ctrl_inside(pkt, len, c->spawn_opts, c->spawn_opts_len));
	kd_fuzz_check(memchr(c->to_name, 0, sizeof(c->to_name)) != NULL);
	kd_fuzz_check(memchr(c->from_name, 0, sizeof(c->from_name)) != NULL);
	if (c->msg_term)
		ctrl_walk_term(c->msg_term, c->msg_term_len);
	if (c->reason)
		ctrl_walk_term(c->reason, c->reason_len);
	if (c->spawn_opts)
		ctrl_walk_term(c->spawn_opts, c->spawn_opts_len);
	if (c->result)
		ctrl_walk_term(c->result, c->result_len);
}

int kd_fuzz_control(const uint8_t *data, size_t size)
{
	struct kd_ctrl c;
	char err[256];
	int ret;

	ctrl_check_validate(data, size);
	if (size > 1)
		ctrl_check_validate(data + 1, size - 1);

	memset(&c, 0, sizeof(c));
	err[0] = '\0';
	ret = kd_ctrl_decode(data, size, &c, err, sizeof(err));
	kd_fuzz_check(ret == 0 || ret == -EPROTO || ret == -EOPNOTSUPP ||
		      ret == -ENOMSG);
	if (ret == 0)
		ctrl_check_decoded(data, size, &c);
	else
		kd_fuzz_check(err[0] != '\0');
	return 0;
}

KD_FUZZ_TARGET(kd_fuzz_control)
