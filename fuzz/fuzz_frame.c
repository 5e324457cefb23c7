// SPDX-License-Identifier: Apache-2.0
/*
 * Packet framing: kd_frame_peek() over the whole stream is the reference,
 * and a kd_framer fed the same bytes in random pieces must return the same
 * packets, switch prefix size at the same packet, and fail the same way.
 *
 * Input: Config (1 byte), Seed (1 byte), SwitchAt (1 byte), then the
 * stream. Config bit 0 picks the first prefix size (2 or 4), bit 1 the
 * size after SwitchAt packets, bits 2-4 the maximum payload length.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "frame.h"

/* More than a stream of -max_len 65536 can hold: 2-byte ticks. */
#define FRAME_FUZZ_MAX_PACKETS 65536

static const uint32_t frame_max_lens[8] = {
	0, 1, 2, 16, 255, 4096, 65535, 1u << 20,
};

struct frame_packet {
	size_t off; /* payload offset in the stream */
	uint32_t len;
};

struct frame_run {
	unsigned hdr_first, hdr_after, switch_at;
	uint32_t max_len;
	struct frame_packet pkts[FRAME_FUZZ_MAX_PACKETS];
	unsigned npkts;
	int end; /* kd_frame_peek() result that ended the stream */
	uint32_t end_len;
};

static unsigned frame_hdr_size(const struct frame_run *r, unsigned index)
{
	return index < r->switch_at ? r->hdr_first : r->hdr_after;
}

/* Parses @stream with kd_frame_peek() alone. */
static void frame_reference(struct frame_run *r, const uint8_t *stream,
			    size_t len)
{
	size_t off = 0;
	uint32_t plen = 0;
	unsigned hdr;
	int ret;

	for (;;) {
		hdr = frame_hdr_size(r, r->npkts);
		ret = kd_frame_peek(stream + off, len - off, hdr, r->max_len,
				    &plen);
		if (ret != 1 || r->npkts == FRAME_FUZZ_MAX_PACKETS)
			break;
		kd_fuzz_check(plen <= r->max_len);
		kd_fuzz_check(hdr + (size_t)plen <= len - off);
		r->pkts[r->npkts].off = off + hdr;
		r->pkts[r->npkts].len = plen;
		r->npkts++;
		off += hdr + plen;
	}
	r->end = ret;
	r->end_len = plen;
}

/* Checks that kd_frame_put_header() writes a prefix that peeks back. */
static void frame_check_header(unsigned hdr, uint32_t len)
{
	uint8_t buf[4];
	uint32_t back = 0;
	int ret = kd_frame_put_header(buf, hdr, len);

	if (hdr == 2 && len > 0xffff) {
		kd_fuzz_check(ret == -EMSGSIZE);
		return;
	}
	kd_fuzz_check(ret == (int)hdr);
	kd_fuzz_check(kd_frame_peek(buf, hdr, hdr, UINT32_MAX, &back) ==
		      (len == 0 ? 1 : 0));
}

/* Takes every whole packet out of @f and compares it with the reference. */
static int frame_drain(struct frame_run *r, struct kd_framer *f,
		       const uint8_t *stream, unsigned *taken)
{
	const uint8_t *payload;
	uint32_t plen = 0;
	int ret;

	while (*taken < r->npkts) {
		ret = kd_framer_next(f, &payload, &plen);
		if (ret <= 0)
			return ret;
		kd_fuzz_check(plen == r->pkts[*taken].len);
		kd_fuzz_check(!memcmp(payload, stream + r->pkts[*taken].off,
				      plen));
		frame_check_header(frame_hdr_size(r, *taken), plen);
		(*taken)++;
		kd_framer_set_header(f, frame_hdr_size(r, *taken));
	}
	ret = kd_framer_next(f, &payload, &plen);
	if (ret == -EMSGSIZE)
		kd_fuzz_check(plen == r->end_len);
	return ret;
}

static void frame_split(struct frame_run *r, const uint8_t *stream,
			size_t len, uint32_t seed)
{
	struct kd_framer f;
	unsigned taken = 0;
	size_t off = 0, piece;
	int ret = 0;

	kd_framer_init(&f, frame_hdr_size(r, 0), r->max_len);
	while (off < len) {
		seed = seed * 1103515245u + 12345u;
		piece = 1 + (seed >> 16) % 300;
		if (piece > len - off)
			piece = len - off;
		ret = kd_framer_push(&f, stream + off, piece);
		kd_fuzz_check(ret == 0 || ret == -ENOBUFS);
		if (ret < 0)
			break;
		off += piece;
		ret = frame_drain(r, &f, stream, &taken);
		if (ret < 0)
			break;
	}
	if (r->npkts == FRAME_FUZZ_MAX_PACKETS) {
		/* The reference stopped counting; nothing to compare. */
	} else if (taken == r->npkts) {
		/* The framer saw everything, so it ends as the reference. */
		if (off == len)
			kd_fuzz_check(ret == r->end);
	} else {
		/* Only a push over the documented limit stops it early. */
		kd_fuzz_check(ret == -ENOBUFS);
	}
	kd_fuzz_check(kd_framer_pending(&f) <= f.cap);
	kd_framer_free(&f);
}

int kd_fuzz_frame(const uint8_t *data, size_t size)
{
	static struct frame_run r;
	uint8_t config;

	if (size < 3)
		return 0;
	memset(&r, 0, sizeof(r));
	config = data[0];
	r.hdr_first = config & 1 ? 4 : 2;
	r.hdr_after = config & 2 ? 4 : 2;
	r.max_len = frame_max_lens[(config >> 2) & 7];
	r.switch_at = data[2];
	frame_reference(&r, data + 3, size - 3);
	frame_split(&r, data + 3, size - 3, data[1]);
	return 0;
}

KD_FUZZ_TARGET(kd_fuzz_frame)
