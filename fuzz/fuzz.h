/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared pieces of the libFuzzer targets in this directory. Each target
 * file defines one entry point, kd_fuzz_<target>(data, size), and, unless
 * KD_FUZZ_NO_MAIN is defined, the LLVMFuzzerTestOneInput() that calls it.
 * tests/unit/test_fuzz_regressions.c includes the target files with
 * KD_FUZZ_NO_MAIN and replays saved inputs through the same entry points.
 */
#ifndef KD_FUZZ_H
#define KD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

/*
 * What a broken invariant does: libFuzzer builds trap so the fuzzer saves
 * the input; the regression test defines KD_FUZZ_FAILED to fail the case.
 */
#ifndef KD_FUZZ_FAILED
#define KD_FUZZ_FAILED(what)                                                   \
	do {                                                                   \
		fprintf(stderr, "fuzz: invariant failed: %s\n", what);         \
		__builtin_trap();                                              \
	} while (0)
#endif

#define kd_fuzz_check(cond)                                                    \
	do {                                                                   \
		if (!(cond))                                                   \
			KD_FUZZ_FAILED(#cond);                                 \
	} while (0)

static void kd_fuzz_drop_log(void *user, enum kd_log_level level,
			     const char *line)
{
}

/* Drops engine log lines: the targets hit error paths millions of times. */
static inline void kd_fuzz_quiet(void)
{
	kd_log_configure(kd_fuzz_drop_log, NULL, KD_LOG_ERROR);
}

/* A cursor over the fuzz input, for targets that read it as commands. */
struct kd_fuzz_in {
	const uint8_t *p;
	size_t len;
};

static inline uint8_t kd_fuzz_byte(struct kd_fuzz_in *in)
{
	uint8_t b;

	if (!in->len)
		return 0;
	b = *in->p++;
	in->len--;
	return b;
}

/* Takes up to @want bytes; returns how many it took. */
static inline size_t kd_fuzz_take(struct kd_fuzz_in *in, size_t want,
				  const uint8_t **out)
{
	if (want > in->len)
		want = in->len;
	*out = in->p;
	in->p += want;
	in->len -= want;
	return want;
}

#ifdef KD_FUZZ_NO_MAIN
#define KD_FUZZ_TARGET(fn)
#else
#define KD_FUZZ_TARGET(fn)                                                     \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);          \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)           \
	{                                                                      \
		kd_fuzz_quiet();                                               \
		fn(data, size);                                                \
		return 0;                                                      \
	}
#endif

#endif
