// SPDX-License-Identifier: Apache-2.0
/*
 * EPMD client decoders: the input is the byte stream an EPMD server
 * returns, given to kd_epmd_decode_alive2_resp() and
 * kd_epmd_decode_port2_resp(). A decoder that consumes N bytes must
 * return 0 (more needed) for every shorter prefix, and a decoded node
 * must encode back into an ALIVE2_REQ.
 */
#include <errno.h>
#include <string.h>

#include "epmd.h"
#include "fuzz.h"

static void epmd_check_alive2(const uint8_t *data, size_t size)
{
	uint32_t creation = 0;
	uint8_t result = 0;
	int n, m;

	n = kd_epmd_decode_alive2_resp(data, size, &result, &creation);
	kd_fuzz_check(n == 0 || n == 4 || n == 6 || n == -EBADMSG);
	kd_fuzz_check(n <= (int)size);
	if (n <= 0)
		return;
	m = kd_epmd_decode_alive2_resp(data, (size_t)n - 1, &result,
				       &creation);
	kd_fuzz_check(m == 0);
}

static void epmd_check_node(const struct kd_epmd_node *node)
{
	uint8_t buf[1024];
	int n;

	kd_fuzz_check(memchr(node->name, 0, sizeof(node->name)) != NULL);
	kd_fuzz_check(node->extra_len <= sizeof(node->extra));
	n = kd_epmd_encode_alive2_req(buf, sizeof(buf), node);
	/* A name of NUL bytes decodes to an empty string. */
	if (n < 0) {
		kd_fuzz_check(n == -EINVAL && node->name[0] == '\0');
		return;
	}
	kd_fuzz_check((size_t)n <= sizeof(buf));
}

static void epmd_check_port2(const uint8_t *data, size_t size)
{
	struct kd_epmd_node node;
	uint8_t result = 0xff;
	int n, m;

	memset(&node, 0, sizeof(node));
	n = kd_epmd_decode_port2_resp(data, size, &result, &node);
	kd_fuzz_check(n >= 0 || n == -EBADMSG || n == -EMSGSIZE);
	kd_fuzz_check(n <= (int)size);
	if (n <= 0)
		return;
	for (size_t cut = 0; cut < (size_t)n; cut += 1 + cut / 8) {
		m = kd_epmd_decode_port2_resp(data, cut, &result, &node);
		kd_fuzz_check(m == 0);
	}
	m = kd_epmd_decode_port2_resp(data, (size_t)n, &result, &node);
	kd_fuzz_check(m == n);
	if (result == 0)
		epmd_check_node(&node);
}

int kd_fuzz_epmd_client(const uint8_t *data, size_t size)
{
	epmd_check_alive2(data, size);
	epmd_check_port2(data, size);
	return 0;
}

KD_FUZZ_TARGET(kd_fuzz_epmd_client)
