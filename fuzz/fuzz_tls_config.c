// SPDX-License-Identifier: Apache-2.0
/*
 * The TLS options parser. Input byte 0 picks the path: even, the rest is
 * an -ssl_dist_optfile read by kd_tls_config_load_file() from a memfd;
 * odd, the rest is NUL-separated key, value pairs for
 * kd_tls_config_add_opt(), all applied to one configuration.
 *
 * NOTE: the target does not build the OpenSSL contexts, because a fuzzed
 * certfile could name /dev/zero or a FIFO and block the run; the
 * certificate loading is covered by the unit tests with real files.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "tls_config.h"

static void tls_check_limits(const struct kd_tls_config *cfg)
{
	uint64_t key_update_at = 0, renegotiate_at = 0;

	kd_fuzz_check(kd_tls_config_rekey_limits(cfg, true, &key_update_at,
						 &renegotiate_at) == 0);
	kd_fuzz_check(kd_tls_config_rekey_limits(cfg, false, &key_update_at,
						 &renegotiate_at) == 0);
}

static void tls_load_file(struct kd_tls_config *cfg, const uint8_t *text,
			  size_t len)
{
	char path[64], err[512];
	int fd, ret;

	fd = memfd_create("kd_fuzz_optfile", MFD_CLOEXEC);
	if (fd < 0)
		return;
	if (write(fd, text, len) != (ssize_t)len) {
		close(fd);
		return;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	err[0] = '\0';
	ret = kd_tls_config_load_file(cfg, path, err, sizeof(err));
	if (ret < 0)
		kd_fuzz_check(err[0] != '\0');
	close(fd);
}

/* Applies "key\0value\0key\0value..." from @p; a last key without a
 * value gets an empty one. */
static void tls_add_opts(struct kd_tls_config *cfg, const uint8_t *p,
			 size_t len)
{
	char *copy = malloc(len + 2), *key, *value, *end, err[512];
	int ret;

	if (!copy)
		return;
	memcpy(copy, p, len);
	copy[len] = '\0';
	copy[len + 1] = '\0';
	end = copy + len;
	for (key = copy; key < end; key = value + strlen(value) + 1) {
		value = key + strlen(key) + 1;
		if (value > end)
			value = end;
		err[0] = '\0';
		ret = kd_tls_config_add_opt(cfg, key, value, err, sizeof(err));
		if (ret < 0)
			kd_fuzz_check(err[0] != '\0');
	}
	free(copy);
}

int kd_fuzz_tls_config(const uint8_t *data, size_t size)
{
	struct kd_tls_config *cfg;

	if (size < 1)
		return 0;
	cfg = kd_tls_config_new();
	if (!cfg)
		return 0;
	if (data[0] & 1)
		tls_add_opts(cfg, data + 1, size - 1);
	else
		tls_load_file(cfg, data + 1, size - 1);
	tls_check_limits(cfg);
	kd_tls_config_free(cfg);
	return 0;
}

KD_FUZZ_TARGET(kd_fuzz_tls_config)
