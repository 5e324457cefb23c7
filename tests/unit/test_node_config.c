// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the configuration checks of kdist_node_create(): each bad
 * value fails before the node touches the network, with a sentence that
 * names the value and the fix.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kdist.h"

/* Node names that OTP 25's net_kernel rejects with "Invalid node name!":
 * the part before '@' must match ^[0-9A-Za-z_-]+$ (valid_name_head). */
static const char *const bad_alive_names[] = {
	"bad name", "a/b",	     "a.b",	     "a:b",
	"n\xc3\xa4me", "tab\tx", "x y@localhost", "a/b@localhost",
};

/* Host parts with a space or a control character. */
static const char *const bad_host_names[] = {
	"x@bad host",
	"x@a\nb",
	"x@del\x7f",
};

static const char *const good_names[] = {
	"x1", "a-b_C9", "-", "_x", "x@localhost", "UPPER@h.example",
};

static void tcp_config(struct kdist_config *cfg, const char *name)
{
	kdist_config_init(cfg);
	cfg->node_name = name;
	cfg->proto = KDIST_PROTO_INET_TCP;
	cfg->cookie = "cookie";
	cfg->log_level = KDIST_LOG_ERROR;
}

/* Fails unless kdist_strerror() contains @text. */
static void assert_error_has(const char *text)
{
	if (!strstr(kdist_strerror(), text))
		fail_msg("expected '%s' in the error, got: %s", text,
			 kdist_strerror());
}

static void test_name_bad_alive(void **state)
{
	struct kdist_config cfg;
	struct kdist_node *node;
	char quoted[64];

	for (size_t i = 0;
	     i < sizeof(bad_alive_names) / sizeof(bad_alive_names[0]); i++) {
		tcp_config(&cfg, bad_alive_names[i]);
		node = NULL;
		assert_int_equal(kdist_node_create(&cfg, &node), -EINVAL);
		assert_null(node);
		snprintf(quoted, sizeof(quoted), "'%s'", bad_alive_names[i]);
		assert_error_has(quoted);
		assert_error_has("letters, digits, '_' and '-'");
	}
}

static void test_name_bad_host(void **state)
{
	struct kdist_config cfg;
	struct kdist_node *node;

	for (size_t i = 0;
	     i < sizeof(bad_host_names) / sizeof(bad_host_names[0]); i++) {
		tcp_config(&cfg, bad_host_names[i]);
		node = NULL;
		assert_int_equal(kdist_node_create(&cfg, &node), -EINVAL);
		assert_null(node);
		assert_error_has("host part");
	}
}

static void test_name_good(void **state)
{
	struct kdist_config cfg;
	struct kdist_node *node;

	for (size_t i = 0; i < sizeof(good_names) / sizeof(good_names[0]);
	     i++) {
		tcp_config(&cfg, good_names[i]);
		node = NULL;
		if (kdist_node_create(&cfg, &node) != 0)
			fail_msg("'%s' rejected: %s", good_names[i],
				 kdist_strerror());
		kdist_node_destroy(node);
	}
}

static void test_tls_without_options(void **state)
{
	static const struct {
		enum kdist_proto proto;
		const char *tls, *tcp;
	} cases[] = {
		{ KDIST_PROTO_INET_TLS, "inet_tls", "-proto_dist inet_tcp" },
		{ KDIST_PROTO_INET6_TLS, "inet6_tls", "-proto_dist inet6_tcp" },
	};
	struct kdist_config cfg;
	struct kdist_node *node;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tcp_config(&cfg, "x1");
		cfg.proto = cases[i].proto;
		node = NULL;
		assert_int_equal(kdist_node_create(&cfg, &node), -EINVAL);
		assert_null(node);
		assert_error_has(cases[i].tls);
		assert_error_has("-ssl_dist_optfile FILE");
		assert_error_has("-ssl_dist_opt");
		assert_error_has(cases[i].tcp);
		assert_null(strstr(kdist_strerror(), "cacertfile"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_bad_alive),
		cmocka_unit_test(test_name_bad_host),
		cmocka_unit_test(test_name_good),
		cmocka_unit_test(test_tls_without_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
