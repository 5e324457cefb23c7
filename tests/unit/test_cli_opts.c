// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the command-line parser (cli/opts.c): which arguments it
 * accepts, and that each usage error names the option, the value and the
 * allowed range. The parser is compiled into this test, since the CLI is
 * not part of libkdist.a.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../cli/opts.c"

#define MAX_TEST_ARGS 16

static char errout[4096];
static struct cli_opts opts;

/*
 * Runs cli_parse() on the NULL-terminated arguments, with stderr sent to
 * a temporary file whose text ends up in errout. Returns the parse result.
 */
static int parse(const char *arg0, ...)
{
	char *argv[MAX_TEST_ARGS];
	int argc = 0, saved, rc;
	const char *a;
	va_list ap;
	FILE *tmp;
	size_t n;

	va_start(ap, arg0);
	for (a = arg0; a && argc < MAX_TEST_ARGS - 1;
	     a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;

	tmp = tmpfile();
	assert_non_null(tmp);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
	rc = cli_parse(argc, argv, &opts);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(errout, 1, sizeof(errout) - 1, tmp);
	errout[n] = '\0';
	fclose(tmp);
	return rc;
}

/* Fails unless the last parse printed @text. */
static void assert_error_has(const char *text)
{
	if (!strstr(errout, text))
		fail_msg("expected '%s' in the usage error, got: %s", text,
			 errout);
}

static void test_unknown_option_last(void **state)
{
	assert_int_equal(parse("node", "-sname", "x", "-bogus", NULL), 2);
	assert_error_has("unknown option '-bogus'");
	assert_null(strstr(errout, "needs a value"));
}

static void test_unknown_option_with_value(void **state)
{
	assert_int_equal(parse("node", "-bogus", "1", NULL), 2);
	assert_error_has("unknown option '-bogus'");
}

static void test_known_option_missing_value(void **state)
{
	assert_int_equal(parse("node", "-sname", NULL), 2);
	assert_error_has("-sname needs a value");
	assert_int_equal(parse("node", "-kernel", "net_ticktime", NULL), 2);
	assert_error_has("-kernel net_ticktime needs a value");
}

static void test_handshake_timeout_range(void **state)
{
	assert_int_equal(parse("node", "-handshake_timeout", "0", NULL), 2);
	assert_error_has("-handshake_timeout");
	assert_error_has("from 1 to 600000");
	assert_error_has("'0'");
	assert_int_equal(parse("node", "-handshake_timeout", "600000", NULL),
			 0);
	assert_int_equal(opts.cfg.handshake_timeout_ms, 600000);
}

static void test_timeout_range(void **state)
{
	assert_int_equal(parse("ping", "-timeout", "0", NULL), 2);
	assert_error_has("-timeout");
	assert_error_has("from 1 to 3600000");
	assert_error_has("'0'");
}

static void test_listen_port_invalid(void **state)
{
	assert_int_equal(parse("node", "-kernel", "inet_dist_listen_min", "abc",
			       NULL),
			 2);
	assert_error_has("-kernel inet_dist_listen_min 'abc' is invalid");
	assert_error_has("give a port from 1 to 65535");
	assert_int_equal(parse("node", "-kernel", "inet_dist_listen_max",
			       "70000", NULL),
			 2);
	assert_error_has("-kernel inet_dist_listen_max '70000' is invalid");
	assert_error_has("give a port from 1 to 65535");
}

static void test_epmd_port_invalid(void **state)
{
	assert_int_equal(parse("node", "-epmd_port", "99999", NULL), 2);
	assert_error_has("-epmd_port '99999' is invalid");
	assert_error_has("give a port from 1 to 65535");
	assert_int_equal(parse("node", "-epmd_port", "0", NULL), 2);
	assert_error_has("-epmd_port '0' is invalid");
}

static void test_listen_range_kept(void **state)
{
	assert_int_equal(parse("node", "-kernel", "inet_dist_listen_max",
			       "9105", "-kernel", "inet_dist_listen_min",
			       "9100", NULL),
			 0);
	assert_int_equal(opts.cfg.listen_port, 9100);
	assert_int_equal(opts.cfg.listen_port_max, 9105);

	assert_int_equal(parse("node", "-kernel", "inet_dist_listen_min",
			       "9100", NULL),
			 0);
	assert_int_equal(opts.cfg.listen_port, 9100);
	assert_int_equal(opts.cfg.listen_port_max, 0);
}

static void test_listen_range_reversed(void **state)
{
	assert_int_equal(parse("node", "-kernel", "inet_dist_listen_min",
			       "9200", "-kernel", "inet_dist_listen_max",
			       "9100", NULL),
			 2);
	assert_error_has("inet_dist_listen_max 9100");
	assert_error_has("inet_dist_listen_min 9200");
}

static void test_listen_max_without_min(void **state)
{
	assert_int_equal(parse("node", "-kernel", "inet_dist_listen_max",
			       "9100", NULL),
			 2);
	assert_error_has("-kernel inet_dist_listen_max 9100");
	assert_error_has("-kernel inet_dist_listen_min");
}

static void test_count_only_for_ping(void **state)
{
	assert_int_equal(parse("ping", "-count", "5", NULL), 0);
	assert_int_equal(opts.count, 5);
	assert_int_equal(parse("node", "-count", "5", NULL), 2);
	assert_error_has("-count applies only to kdist ping");
	assert_int_equal(parse("send", "-count", "5", NULL), 2);
	assert_error_has("-count applies only to kdist ping");
}

static void test_timeout_only_for_ping_send(void **state)
{
	assert_int_equal(parse("ping", "-timeout", "300", NULL), 0);
	assert_int_equal(opts.timeout_ms, 300);
	assert_int_equal(parse("send", "-timeout", "300", NULL), 0);
	assert_int_equal(opts.timeout_ms, 300);
	assert_int_equal(parse("node", "-timeout", "300", NULL), 2);
	assert_error_has("-timeout applies only to kdist ping and kdist send");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_option_last),
		cmocka_unit_test(test_unknown_option_with_value),
		cmocka_unit_test(test_known_option_missing_value),
		cmocka_unit_test(test_handshake_timeout_range),
		cmocka_unit_test(test_timeout_range),
		cmocka_unit_test(test_listen_port_invalid),
		cmocka_unit_test(test_epmd_port_invalid),
		cmocka_unit_test(test_listen_range_kept),
		cmocka_unit_test(test_listen_range_reversed),
		cmocka_unit_test(test_listen_max_without_min),
		cmocka_unit_test(test_count_only_for_ping),
		cmocka_unit_test(test_timeout_only_for_ping_send),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
