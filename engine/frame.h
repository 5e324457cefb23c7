/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Distribution packet framing: a big-endian length prefix of 2 bytes
 * (inet_tcp during the handshake) or 4 bytes (every TLS packet, and
 * inet_tcp after the handshake), then that many bytes. A zero-length
 * packet is a tick.
 */
#ifndef KD_FRAME_H
#define KD_FRAME_H

#include <stddef.h>
#include <stdint.h>

/*
 * Looks at the start of @buf. Returns 1 and sets *@payload_len when a
 * whole packet is there (header plus payload), 0 when more bytes are
 * needed, -EMSGSIZE when the prefix exceeds @max_len (the prefix value is
 * still stored in *@payload_len for the error message), -EINVAL when
 * @hdr_size is neither 2 nor 4. A tick is a whole packet of length 0.
 */
int kd_frame_peek(const uint8_t *buf, size_t len, unsigned hdr_size,
		  uint32_t max_len, uint32_t *payload_len);

/* Writes the prefix for @payload_len into @hdr; returns @hdr_size, or
 * -EMSGSIZE if @payload_len does not fit in @hdr_size bytes, or -EINVAL
 * when @hdr_size is neither 2 nor 4. */
int kd_frame_put_header(uint8_t *hdr, unsigned hdr_size, size_t payload_len);

/*
 * Bytes one kd_framer_push() may add beyond a maximal packet. A caller that
 * takes every whole packet out before the next push, and pushes at most
 * this much at a time, never gets -ENOBUFS.
 */
#define KD_FRAMER_MAX_PUSH 65536

/*
 * A reassembly buffer for byte streams that arrive in arbitrary pieces,
 * used during the handshakes. Not for the data path, which parses in place.
 * One thread owns it, and it takes no lock.
 */
struct kd_framer {
	unsigned hdr_size;
	uint32_t max_len;
	uint8_t *buf;
	size_t off;	/* start of the bytes not yet returned as a packet */
	size_t len, cap;
};

void kd_framer_init(struct kd_framer *f, unsigned hdr_size, uint32_t max_len);
/* Wipes and frees the buffer; the framer can then be pushed to again. */
void kd_framer_free(struct kd_framer *f);
/*
 * Appends bytes; -ENOMEM on allocation failure, -ENOBUFS when the pending
 * bytes would exceed hdr_size + max_len + KD_FRAMER_MAX_PUSH. The buffer
 * grows by doubling up to that limit.
 */
int kd_framer_push(struct kd_framer *f, const void *data, size_t len);
/*
 * Takes the next whole packet out: returns 1 with a pointer valid until the
 * next call, 0 if incomplete, -EINVAL for a prefix size other than 2 or 4.
 * An oversized prefix gives -EMSGSIZE with the prefix value in
 * *@payload_len. That packet stays pending, so later calls fail the same way.
 */
int kd_framer_next(struct kd_framer *f, const uint8_t **payload,
		   uint32_t *payload_len);
/* Bytes received but not yet returned as a packet. */
size_t kd_framer_pending(const struct kd_framer *f);
/* Switches the prefix size (inet_tcp: 2 -> 4 after the handshake). Pending
 * bytes are read with the new size. */
void kd_framer_set_header(struct kd_framer *f, unsigned hdr_size);

#endif
