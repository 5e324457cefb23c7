// SPDX-License-Identifier: Apache-2.0
#include "frame.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define FRAMER_MIN_CAP 256

static bool is_valid_hdr_size(unsigned hdr_size)
{
	return hdr_size == 2 || hdr_size == 4;
}

int kd_frame_peek(const uint8_t *buf, size_t len, unsigned hdr_size,
		  uint32_t max_len, uint32_t *payload_len)
{
	uint32_t plen;

	if (!is_valid_hdr_size(hdr_size))
		return -EINVAL;
	if (len < hdr_size)
		return 0;

	if (hdr_size == 2)
		plen = (uint32_t)buf[0] << 8 | buf[1];
	else
		plen = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
		       (uint32_t)buf[2] << 8 | buf[3];

	if (plen > max_len) {
		*payload_len = plen;
		return -EMSGSIZE;
	}
	if (len - hdr_size < plen)
		return 0;
	*payload_len = plen;
	return 1;
}

int kd_frame_put_header(uint8_t *hdr, unsigned hdr_size, size_t payload_len)
{
	if (!is_valid_hdr_size(hdr_size))
		return -EINVAL;

	if (hdr_size == 2) {
		if (payload_len > UINT16_MAX)
			return -EMSGSIZE;
		hdr[0] = payload_len >> 8;
		hdr[1] = payload_len;
		return 2;
	}

	if (payload_len > UINT32_MAX)
		return -EMSGSIZE;
	hdr[0] = payload_len >> 24;
	hdr[1] = payload_len >> 16;
	hdr[2] = payload_len >> 8;
	hdr[3] = payload_len;
	return 4;
}

void kd_framer_init(struct kd_framer *f, unsigned hdr_size, uint32_t max_len)
{
	memset(f, 0, sizeof(*f));
	f->hdr_size = hdr_size;
	f->max_len = max_len;
}

void kd_framer_free(struct kd_framer *f)
{
	if (f->buf)
		OPENSSL_cleanse(f->buf, f->cap);
	free(f->buf);
	f->buf = NULL;
	f->off = 0;
	f->len = 0;
	f->cap = 0;
}

/* Moves the pending bytes to the front. A push calls this only when it
 * needs room, so it copies the pending bytes at most once. */
static void compact(struct kd_framer *f)
{
	size_t pending = f->len - f->off;

	if (f->off == 0)
		return;
	memmove(f->buf, f->buf + f->off, pending);
	f->off = 0;
	f->len = pending;
}

static int grow(struct kd_framer *f, size_t need, size_t limit)
{
	size_t cap = f->cap ? f->cap : FRAMER_MIN_CAP;
	uint8_t *buf;

	while (cap < need)
		cap *= 2;
	if (cap > limit)
		cap = limit;

	buf = realloc(f->buf, cap);
	if (!buf)
		return -ENOMEM;
	f->buf = buf;
	f->cap = cap;
	return 0;
}

int kd_framer_push(struct kd_framer *f, const void *data, size_t len)
{
	size_t limit = (size_t)f->hdr_size + f->max_len + KD_FRAMER_MAX_PUSH;
	size_t pending = f->len - f->off;
	int ret;

	if (len == 0)
		return 0;
	if (len > limit - pending)
		return -ENOBUFS;

	if (f->cap - f->len < len) {
		compact(f);
		if (f->cap - f->len < len) {
			ret = grow(f, f->len + len, limit);
			if (ret < 0)
				return ret;
		}
	}

	memcpy(f->buf + f->len, data, len);
	f->len += len;
	return 0;
}

int kd_framer_next(struct kd_framer *f, const uint8_t **payload,
		   uint32_t *payload_len)
{
	size_t pending = f->len - f->off;
	uint32_t plen;
	int ret;

	if (pending == 0) {
		/* Everything was taken: start again at the front. */
		f->off = 0;
		f->len = 0;
		return is_valid_hdr_size(f->hdr_size) ? 0 : -EINVAL;
	}

	ret = kd_frame_peek(f->buf + f->off, pending, f->hdr_size, f->max_len,
			    &plen);
	if (ret <= 0) {
		if (ret == -EMSGSIZE)
			*payload_len = plen;
		return ret;
	}

	*payload = f->buf + f->off + f->hdr_size;
	*payload_len = plen;
	f->off += f->hdr_size + plen;
	return 1;
}

size_t kd_framer_pending(const struct kd_framer *f)
{
	return f->len - f->off;
}

void kd_framer_set_header(struct kd_framer *f, unsigned hdr_size)
{
	f->hdr_size = hdr_size;
}
