// SPDX-License-Identifier: Apache-2.0
/* Unit tests for distribution packet framing (engine/frame.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

#define MAX_PACKETS 16

/* A packet as the tests expect to take it out of a framer. */
struct packet {
	uint32_t len;
	uint8_t data[64];
};

struct stream {
	uint8_t bytes[1024];
	size_t len;
	struct packet packets[MAX_PACKETS];
	unsigned count;
};

static void stream_add(struct stream *s, unsigned hdr_size, const char *text)
{
	size_t tlen = strlen(text);
	int ret;

	ret = kd_frame_put_header(s->bytes + s->len, hdr_size, tlen);
	assert_int_equal(ret, (int)hdr_size);
	s->len += hdr_size;
	memcpy(s->bytes + s->len, text, tlen);
	s->len += tlen;
	s->packets[s->count].len = tlen;
	memcpy(s->packets[s->count].data, text, tlen);
	s->count++;
}

/* Several packets with 4-byte prefixes, ticks among them. */
static void make_stream(struct stream *s)
{
	memset(s, 0, sizeof(*s));
	stream_add(s, 4, "");
	stream_add(s, 4, "first packet");
	stream_add(s, 4, "");
	stream_add(s, 4, "");
	stream_add(s, 4, "x");
	stream_add(s, 4, "the last packet of the stream");
}

/* Takes every whole packet out and appends it to @got. */
static void drain(struct kd_framer *f, struct packet *got, unsigned *count)
{
	const uint8_t *payload;
	uint32_t len;
	int ret;

	while ((ret = kd_framer_next(f, &payload, &len)) == 1) {
		assert_true(*count < MAX_PACKETS);
		assert_true(len <= sizeof(got[0].data));
		got[*count].len = len;
		memcpy(got[*count].data, payload, len);
		(*count)++;
	}
	assert_int_equal(ret, 0);
}

static void assert_packets(const struct stream *s, const struct packet *got,
			   unsigned count)
{
	unsigned i;

	assert_int_equal(count, s->count);
	for (i = 0; i < count; i++) {
		assert_int_equal(got[i].len, s->packets[i].len);
		assert_memory_equal(got[i].data, s->packets[i].data,
				    got[i].len);
	}
}

static void test_peek_needs_header(void **state)
{
	static const uint8_t buf[] = { 0, 0, 0 };
	uint32_t len = 99;

	assert_int_equal(kd_frame_peek(NULL, 0, 4, 100, &len), 0);
	assert_int_equal(kd_frame_peek(buf, 1, 2, 100, &len), 0);
	assert_int_equal(kd_frame_peek(buf, 3, 4, 100, &len), 0);
	assert_int_equal(len, 99);
}

static void test_peek_bad_header_size(void **state)
{
	static const uint8_t buf[] = { 0, 0, 0, 0 };
	uint32_t len;

	assert_int_equal(kd_frame_peek(buf, 4, 1, 100, &len), -EINVAL);
	assert_int_equal(kd_frame_peek(buf, 4, 3, 100, &len), -EINVAL);
	assert_int_equal(kd_frame_peek(buf, 4, 8, 100, &len), -EINVAL);
}

static void test_peek_whole_packets(void **state)
{
	static const uint8_t two[] = { 0x00, 0x03, 'a', 'b', 'c', 'z' };
	static const uint8_t four[] = { 0, 0, 0x01, 0x00 };
	uint8_t big[4 + 256] = { 0, 0, 0x01, 0x00 };
	uint32_t len;

	assert_int_equal(kd_frame_peek(two, sizeof(two), 2, 100, &len), 1);
	assert_int_equal(len, 3);
	assert_int_equal(kd_frame_peek(four, sizeof(four), 4, 1000, &len), 0);
	assert_int_equal(kd_frame_peek(big, sizeof(big), 4, 1000, &len), 1);
	assert_int_equal(len, 256);
}

static void test_peek_incomplete_payload(void **state)
{
	static const uint8_t buf[] = { 0x00, 0x05, 'a', 'b' };
	uint32_t len = 99;

	assert_int_equal(kd_frame_peek(buf, sizeof(buf), 2, 100, &len), 0);
	assert_int_equal(len, 99);
}

static void test_peek_tick(void **state)
{
	static const uint8_t tick4[] = { 0, 0, 0, 0 };
	static const uint8_t tick2[] = { 0, 0 };
	uint32_t len = 99;

	assert_int_equal(kd_frame_peek(tick4, 4, 4, 100, &len), 1);
	assert_int_equal(len, 0);
	len = 99;
	assert_int_equal(kd_frame_peek(tick2, 2, 2, 100, &len), 1);
	assert_int_equal(len, 0);
}

static void test_peek_oversized_prefix(void **state)
{
	static const uint8_t four[] = { 0xff, 0xff, 0xff, 0xff };
	static const uint8_t two[] = { 0x01, 0x01 };
	uint32_t len = 0;

	assert_int_equal(kd_frame_peek(four, 4, 4, 1 << 20, &len), -EMSGSIZE);
	assert_int_equal(len, 0xffffffffu);
	assert_int_equal(kd_frame_peek(two, 2, 2, 256, &len), -EMSGSIZE);
	assert_int_equal(len, 257);
	/* Exactly the maximum is allowed. */
	assert_int_equal(kd_frame_peek(two, 2, 2, 257, &len), 0);
}

static void test_put_header_sizes(void **state)
{
	uint8_t hdr[4];

	assert_int_equal(kd_frame_put_header(hdr, 2, 0xffff), 2);
	assert_int_equal(hdr[0], 0xff);
	assert_int_equal(hdr[1], 0xff);
	assert_int_equal(kd_frame_put_header(hdr, 2, 0x10000), -EMSGSIZE);
	assert_int_equal(kd_frame_put_header(hdr, 4, 0x01020304), 4);
	assert_int_equal(hdr[0], 0x01);
	assert_int_equal(hdr[1], 0x02);
	assert_int_equal(hdr[2], 0x03);
	assert_int_equal(hdr[3], 0x04);
	assert_int_equal(kd_frame_put_header(hdr, 4, (size_t)UINT32_MAX + 1),
			 -EMSGSIZE);
	assert_int_equal(kd_frame_put_header(hdr, 3, 1), -EINVAL);
}

static void test_put_header_round_trip(void **state)
{
	static const size_t lens[] = { 0, 1, 255, 256, 65535 };
	uint8_t hdr[4];
	uint32_t len;
	unsigned i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		assert_int_equal(kd_frame_put_header(hdr, 4, lens[i]), 4);
		assert_int_equal(kd_frame_peek(hdr, 4, 4, 70000, &len),
				 lens[i] == 0 ? 1 : 0);
	}
}

static void test_framer_one_push(void **state)
{
	struct packet got[MAX_PACKETS];
	struct kd_framer f;
	struct stream s;
	unsigned count = 0;

	make_stream(&s);
	kd_framer_init(&f, 4, 1024);
	assert_int_equal(kd_framer_push(&f, s.bytes, s.len), 0);
	drain(&f, got, &count);
	assert_packets(&s, got, count);
	assert_int_equal(kd_framer_pending(&f), 0);
	kd_framer_free(&f);
}

static void test_framer_every_split(void **state)
{
	struct packet got[MAX_PACKETS];
	struct kd_framer f;
	struct stream s;
	unsigned count;
	size_t a, b;

	make_stream(&s);
	for (a = 0; a <= s.len; a++) {
		for (b = a; b <= s.len; b++) {
			count = 0;
			kd_framer_init(&f, 4, 1024);
			assert_int_equal(kd_framer_push(&f, s.bytes, a), 0);
			drain(&f, got, &count);
			assert_int_equal(kd_framer_push(&f, s.bytes + a, b - a),
					 0);
			drain(&f, got, &count);
			assert_int_equal(kd_framer_push(&f, s.bytes + b,
							s.len - b),
					 0);
			drain(&f, got, &count);
			assert_packets(&s, got, count);
			assert_int_equal(kd_framer_pending(&f), 0);
			kd_framer_free(&f);
		}
	}
}

static void test_framer_byte_by_byte(void **state)
{
	struct packet got[MAX_PACKETS];
	struct kd_framer f;
	struct stream s;
	unsigned count = 0;
	size_t i;

	make_stream(&s);
	kd_framer_init(&f, 4, 1024);
	for (i = 0; i < s.len; i++) {
		assert_int_equal(kd_framer_push(&f, s.bytes + i, 1), 0);
		drain(&f, got, &count);
	}
	assert_packets(&s, got, count);
	kd_framer_free(&f);
}

static void test_framer_reports_pending(void **state)
{
	static const uint8_t part[] = { 0, 0, 0, 5, 'a', 'b' };
	const uint8_t *payload;
	struct kd_framer f;
	uint32_t len;

	kd_framer_init(&f, 4, 100);
	assert_int_equal(kd_framer_pending(&f), 0);
	assert_int_equal(kd_framer_next(&f, &payload, &len), 0);
	assert_int_equal(kd_framer_push(&f, part, sizeof(part)), 0);
	assert_int_equal(kd_framer_next(&f, &payload, &len), 0);
	assert_int_equal(kd_framer_pending(&f), sizeof(part));
	kd_framer_free(&f);
}

static void test_framer_oversized_prefix(void **state)
{
	static const uint8_t bytes[] = { 0, 0, 0, 1, 'a', 0, 0, 0x10, 0x01 };
	const uint8_t *payload;
	struct kd_framer f;
	uint32_t len;

	kd_framer_init(&f, 4, 4096);
	assert_int_equal(kd_framer_push(&f, bytes, sizeof(bytes)), 0);
	assert_int_equal(kd_framer_next(&f, &payload, &len), 1);
	assert_int_equal(len, 1);
	assert_int_equal(kd_framer_next(&f, &payload, &len), -EMSGSIZE);
	assert_int_equal(len, 0x1001);
	/* The bad packet stays: the caller must drop the connection. */
	assert_int_equal(kd_framer_next(&f, &payload, &len), -EMSGSIZE);
	assert_int_equal(kd_framer_pending(&f), 4);
	kd_framer_free(&f);
}

static void test_framer_switches_header(void **state)
{
	const uint8_t *payload;
	struct kd_framer f;
	struct stream s;
	uint32_t len;

	/* An inet_tcp handshake message, then the first connected packets,
	 * all arriving in one read. */
	memset(&s, 0, sizeof(s));
	stream_add(&s, 2, "a\x01\x02");
	stream_add(&s, 4, "");
	stream_add(&s, 4, "after the handshake");

	kd_framer_init(&f, 2, 1024);
	assert_int_equal(kd_framer_push(&f, s.bytes, s.len), 0);
	assert_int_equal(kd_framer_next(&f, &payload, &len), 1);
	assert_int_equal(len, 3);
	assert_memory_equal(payload, "a\x01\x02", 3);

	kd_framer_set_header(&f, 4);
	assert_int_equal(kd_framer_next(&f, &payload, &len), 1);
	assert_int_equal(len, 0);
	assert_int_equal(kd_framer_next(&f, &payload, &len), 1);
	assert_int_equal(len, 19);
	assert_memory_equal(payload, "after the handshake", 19);
	assert_int_equal(kd_framer_next(&f, &payload, &len), 0);
	kd_framer_free(&f);
}

static void test_framer_bad_header_size(void **state)
{
	static const uint8_t bytes[] = { 0, 0, 0, 0 };
	const uint8_t *payload;
	struct kd_framer f;
	uint32_t len;

	kd_framer_init(&f, 3, 100);
	assert_int_equal(kd_framer_next(&f, &payload, &len), -EINVAL);
	assert_int_equal(kd_framer_push(&f, bytes, sizeof(bytes)), 0);
	assert_int_equal(kd_framer_next(&f, &payload, &len), -EINVAL);
	kd_framer_free(&f);
}

static void test_framer_push_limit(void **state)
{
	static uint8_t chunk[KD_FRAMER_MAX_PUSH];
	struct kd_framer f;

	kd_framer_init(&f, 4, 100);
	assert_int_equal(kd_framer_push(&f, chunk, sizeof(chunk)), 0);
	/* 104 more bytes fit (one maximal packet), the next one does not. */
	assert_int_equal(kd_framer_push(&f, chunk, 104), 0);
	assert_int_equal(kd_framer_push(&f, chunk, 1), -ENOBUFS);
	assert_int_equal(kd_framer_pending(&f), sizeof(chunk) + 104);
	assert_true(f.cap <= 4 + 100 + KD_FRAMER_MAX_PUSH);
	kd_framer_free(&f);
}

/* Each push leaves the start of the next stream pending. The framer moves
 * those bytes to the front when it needs room instead of growing. */
static void test_framer_reuses_buffer(void **state)
{
	struct packet got[MAX_PACKETS];
	uint8_t twice[2 * sizeof(((struct stream *)0)->bytes)];
	struct kd_framer f;
	struct stream s;
	unsigned count;
	size_t cap;
	int round;

	make_stream(&s);
	memcpy(twice, s.bytes, s.len);
	memcpy(twice + s.len, s.bytes, s.len);
	kd_framer_init(&f, 4, 1024);
	assert_int_equal(kd_framer_push(&f, twice, 3), 0);
	cap = f.cap;
	for (round = 0; round < 1000; round++) {
		count = 0;
		assert_int_equal(kd_framer_push(&f, twice + 3, s.len), 0);
		drain(&f, got, &count);
		assert_packets(&s, got, count);
		assert_int_equal(kd_framer_pending(&f), 3);
	}
	assert_int_equal(f.cap, cap);
	kd_framer_free(&f);
}

static void test_framer_free_then_reuse(void **state)
{
	struct packet got[MAX_PACKETS];
	struct kd_framer f;
	struct stream s;
	unsigned count = 0;

	make_stream(&s);
	kd_framer_init(&f, 4, 1024);
	assert_int_equal(kd_framer_push(&f, s.bytes, 5), 0);
	kd_framer_free(&f);
	assert_null(f.buf);
	assert_int_equal(kd_framer_pending(&f), 0);
	kd_framer_free(&f);

	assert_int_equal(kd_framer_push(&f, s.bytes, s.len), 0);
	drain(&f, got, &count);
	assert_packets(&s, got, count);
	kd_framer_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_peek_needs_header),
		cmocka_unit_test(test_peek_bad_header_size),
		cmocka_unit_test(test_peek_whole_packets),
		cmocka_unit_test(test_peek_incomplete_payload),
		cmocka_unit_test(test_peek_tick),
		cmocka_unit_test(test_peek_oversized_prefix),
		cmocka_unit_test(test_put_header_sizes),
		cmocka_unit_test(test_put_header_round_trip),
		cmocka_unit_test(test_framer_one_push),
		cmocka_unit_test(test_framer_every_split),
		cmocka_unit_test(test_framer_byte_by_byte),
		cmocka_unit_test(test_framer_reports_pending),
		cmocka_unit_test(test_framer_oversized_prefix),
		cmocka_unit_test(test_framer_switches_header),
		cmocka_unit_test(test_framer_bad_header_size),
		cmocka_unit_test(test_framer_push_limit),
		cmocka_unit_test(test_framer_reuses_buffer),
		cmocka_unit_test(test_framer_free_then_reuse),
	};

	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
