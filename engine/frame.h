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
 * still stored in *@payload_len for the error message).
 */
int kd_frame_peek(const uint8_t *buf, size_t len, unsigned hdr_size,
		  uint32_t max_len, uint32_t *payload_len);

/* Writes the prefix for @payload_len into @hdr; returns @hdr_size, or
 * -EMSGSIZE if @payload_len does not fit in @hdr_size bytes. */
int kd_frame_put_header(uint8_t *hdr, unsigned hdr_size, size_t payload_len);

/*
 * A reassembly buffer for byte streams that arrive in arbitrary pieces,
 * used during the handshakes. Not for the data path, which parses in place.
 */
struct kd_framer {
	unsigned hdr_size;
	uint32_t max_len;
	uint8_t *buf;
	size_t len, cap;
};

void kd_framer_init(struct kd_framer *f, unsigned hdr_size, uint32_t max_len);
void kd_framer_free(struct kd_framer *f);
/* Appends bytes; -ENOMEM on allocation failure. */
int kd_framer_push(struct kd_framer *f, const void *data, size_t len);
/* Takes the next whole packet out: returns 1 with a pointer valid until the
 * next call, 0 if incomplete, -EMSGSIZE on an oversized prefix. */
int kd_framer_next(struct kd_framer *f, const uint8_t **payload,
		   uint32_t *payload_len);
/* Bytes received but not yet returned as a packet. */
size_t kd_framer_pending(const struct kd_framer *f);
/* Switches the prefix size (inet_tcp: 2 -> 4 after the handshake). */
void kd_framer_set_header(struct kd_framer *f, unsigned hdr_size);

#endif
