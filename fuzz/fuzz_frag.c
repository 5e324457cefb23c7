// SPDX-License-Identifier: Apache-2.0
/*
 * Fragment reassembly: builds 131 69 / 131 70 packets for four interleaved
 * sequences from the input and feeds them to one kd_frag_table. Every
 * completed message goes through kd_ctrl_decode().
 *
 * Input: Limit (1 byte), then commands of Cmd (1 byte), Arg (1 byte),
 * Len (1 byte) and Len payload bytes. Cmd bits 0-1 pick the sequence,
 * bits 2-3 the kind: 0 a first fragment with FragId Arg, 1 the
 * continuation that sequence expects next, 2 a continuation with FragId
 * Arg, 3 the payload sent as a raw packet.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "fuzz.h"

#define FRAG_FIRST_HDR 19
#define FRAG_CONT_HDR 18

static const size_t frag_limits[4] = { 0, 64, 4096, 1u << 20 };
static const uint64_t frag_seq_ids[4] = { 0, 1, 0x8000000000000000ULL,
					  UINT64_MAX };

static void frag_put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static size_t frag_build(uint8_t *pkt, unsigned kind, uint64_t seq,
			 uint64_t frag_id, const uint8_t *payload, size_t n)
{
	size_t hdr = kind == 0 ? FRAG_FIRST_HDR : FRAG_CONT_HDR;

	if (kind == 3) {
		memcpy(pkt, payload, n);
		return n;
	}
	pkt[0] = 131;
	pkt[1] = kind == 0 ? 69 : 70;
	frag_put64(pkt + 2, seq);
	frag_put64(pkt + 10, frag_id);
	if (kind == 0)
		pkt[18] = 0;
	memcpy(pkt + hdr, payload, n);
	return hdr + n;
}

static void frag_check_message(const uint8_t *out, size_t out_len,
			       size_t limit)
{
	struct kd_ctrl c;
	char err[256];
	int ret;

	kd_fuzz_check(out_len >= 3);
	kd_fuzz_check(out_len <= limit + 3);
	kd_fuzz_check(out[0] == 131 && out[1] == 68 && out[2] == 0);
	ret = kd_ctrl_decode(out, out_len, &c, err, sizeof(err));
	kd_fuzz_check(ret == 0 || ret == -EPROTO || ret == -EOPNOTSUPP);
}

int kd_fuzz_frag(const uint8_t *data, size_t size)
{
	struct kd_fuzz_in in = { data, size };
	uint64_t next_id[4] = { 0 };
	uint8_t pkt[FRAG_FIRST_HDR + 255];
	struct kd_frag_table *t;
	const uint8_t *payload;
	size_t limit, n, pkt_len, out_len;
	uint8_t *out;
	char err[256];
	int ret;

	limit = frag_limits[kd_fuzz_byte(&in) & 3];
	t = kd_frag_table_new(limit);
	if (!t)
		return 0;
	while (in.len >= 3) {
		uint8_t cmd = kd_fuzz_byte(&in), arg = kd_fuzz_byte(&in);
		unsigned seq = cmd & 3, kind = (cmd >> 2) & 3;
		uint64_t frag_id = kind == 1 ? next_id[seq] : arg;

		n = kd_fuzz_take(&in, kd_fuzz_byte(&in), &payload);
		pkt_len = frag_build(pkt, kind, frag_seq_ids[seq], frag_id,
				     payload, n);
		out = NULL;
		ret = kd_frag_input(t, pkt, pkt_len, &out, &out_len, err,
				    sizeof(err));
		kd_fuzz_check(ret == 0 || ret == 1 || ret == -EPROTO ||
			      ret == -EMSGSIZE || ret == -EMLINK ||
			      ret == -ENOMEM);
		if (ret == 1) {
			frag_check_message(out, out_len, limit);
			free(out);
		}
		if (kind != 3)
			next_id[seq] = frag_id > 0 ? frag_id - 1 : 0;
		kd_fuzz_check(kd_frag_pending_bytes(t) <=
			      (size_t)KD_FRAG_MAX_SEQUENCES * (limit + 3));
	}
	kd_frag_table_free(t);
	return 0;
}

KD_FUZZ_TARGET(kd_fuzz_frag)
