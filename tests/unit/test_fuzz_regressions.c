// SPDX-License-Identifier: Apache-2.0
/*
 * Replays every saved fuzz input through the entry points of the libFuzzer
 * targets: the seeds in fuzz/corpus/<target>/ and the inputs that once
 * crashed in fuzz/regressions/<target>/. A broken invariant fails the
 * case; a memory error shows up under `make test-unit ASAN=1 UBSAN=1`.
 * KDIST_FUZZ_DIR overrides the fuzz/ directory, which is otherwise taken
 * relative to the working directory (the repository root under make).
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define KD_FUZZ_NO_MAIN
#define KD_FUZZ_FAILED(what) fail_msg("invariant failed: %s", what)

#include "../../fuzz/fuzz_control.c"
#include "../../fuzz/fuzz_epmd_client.c"
#include "../../fuzz/fuzz_epmd_server.c"
#include "../../fuzz/fuzz_frag.c"
#include "../../fuzz/fuzz_frame.c"
#include "../../fuzz/fuzz_handshake.c"
#include "../../fuzz/fuzz_term.c"
#include "../../fuzz/fuzz_tls_config.c"

#define REPLAY_MAX_INPUT (1u << 20)

struct target {
	const char *name;
	int (*run)(const uint8_t *data, size_t size);
};

static const char *fuzz_dir(void)
{
	const char *dir = getenv("KDIST_FUZZ_DIR");

	return dir && *dir ? dir : "fuzz";
}

static uint8_t *read_input(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;

	if (!f)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	buf = malloc(REPLAY_MAX_INPUT);
	assert_non_null(buf);
	*len = fread(buf, 1, REPLAY_MAX_INPUT, f);
	assert_false(ferror(f));
	fclose(f);
	return buf;
}

/* Runs @t on every file in fuzz/<kind>/<target>/; returns how many. */
static unsigned replay_dir(const struct target *t, const char *kind)
{
	char dir[512], path[1024];
	struct dirent *e;
	unsigned count = 0;
	uint8_t *data;
	size_t len;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s/%s", fuzz_dir(), kind, t->name);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		data = read_input(path, &len);
		/* An exact-size copy, so ASan reports a read past the input. */
		uint8_t *exact = malloc(len ? len : 1);

		assert_non_null(exact);
		memcpy(exact, data, len);
		free(data);
		print_message("replay %s\n", path);
		t->run(exact, len);
		free(exact);
		count++;
	}
	closedir(d);
	return count;
}

static void test_replay(void **state)
{
	const struct target *t = *state;

	/* Every target has seeds, so a missing directory is an error. */
	assert_true(replay_dir(t, "corpus") > 0);
	replay_dir(t, "regressions");
}

static const struct target targets[] = {
	{ "control", kd_fuzz_control },
	{ "epmd_client", kd_fuzz_epmd_client },
	{ "epmd_server", kd_fuzz_epmd_server },
	{ "frag", kd_fuzz_frag },
	{ "frame", kd_fuzz_frame },
	{ "handshake", kd_fuzz_handshake },
	{ "term", kd_fuzz_term },
	{ "tls_config", kd_fuzz_tls_config },
};

int main(void)
{
	struct CMUnitTest tests[sizeof(targets) / sizeof(targets[0])];

	kd_fuzz_quiet();
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		tests[i] = (struct CMUnitTest){
			.name = targets[i].name,
			.test_func = test_replay,
			.initial_state = (void *)&targets[i],
		};
	}
	return cmocka_run_group_tests_name("fuzz_regressions", tests, NULL,
					   NULL);
}
