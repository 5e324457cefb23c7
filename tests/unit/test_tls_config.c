// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the TLS distribution options (engine/tls_config.c): option
 * parsing and messages, OpenSSL context settings, and real handshakes over
 * a socketpair with the certificates of tests/certs/mkcerts.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls_config.h"

static char cert_dir[256];
static char err[512];

/* Expands each "@/" in @tmpl to the certificate directory. */
static const char *expand(const char *tmpl)
{
	static char out[4096];
	size_t n = 0;
	const char *p;

	for (p = tmpl; *p && n < sizeof(out) - 300; p++) {
		if (p[0] == '@' && p[1] == '/') {
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%s/",
					      cert_dir);
			p++;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
	return out;
}

static int load_text(struct kd_tls_config *cfg, const char *tmpl)
{
	char path[300];
	const char *text = expand(tmpl);
	FILE *f;

	snprintf(path, sizeof(path), "%s/test.conf", cert_dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	err[0] = '\0';
	return kd_tls_config_load_file(cfg, path, err, sizeof(err));
}

/* Loads @tmpl, which must fail with @ret and the message @expected. */
static void assert_load_fails(const char *tmpl, int ret, const char *expected)
{
	struct kd_tls_config *cfg = kd_tls_config_new();

	print_message("options: %s\n", tmpl);
	assert_int_equal(load_text(cfg, tmpl), ret);
	assert_string_equal(err, expected);
	kd_tls_config_free(cfg);
}

static const char good_server[] =
	"{server, [{certfile, \"@/server.pem\"}, {keyfile, \"@/server.key\"},"
	" {cacertfile, \"@/ca.pem\"}, {verify, verify_peer},"
	" {fail_if_no_peer_cert, true}]}";
static const char good_client[] =
	"{client, [{certfile, \"@/client.pem\"}, {keyfile, \"@/client.key\"},"
	" {cacertfile, \"@/ca.pem\"}, {verify, verify_peer}]}";

/* Builds both contexts from an options text; NULL contexts on failure. */
static void build_pair(const char *tmpl, SSL_CTX **server, SSL_CTX **client)
{
	struct kd_tls_config *cfg = kd_tls_config_new();

	assert_int_equal(load_text(cfg, tmpl), 0);
	*server = kd_tls_config_server_ctx(cfg, err, sizeof(err));
	if (!*server)
		print_error("server context: %s\n", err);
	*client = kd_tls_config_client_ctx(cfg, err, sizeof(err));
	if (!*client)
		print_error("client context: %s\n", err);
	kd_tls_config_free(cfg);
	assert_non_null(*server);
	assert_non_null(*client);
}

static char *pair_text(const char *server, const char *client)
{
	static char text[4096];

	snprintf(text, sizeof(text), "[%s,\n %s].", server, client);
	return text;
}

struct handshake {
	bool client_ok;
	bool server_ok;
	long verify_result; /* the client's view of the server */
	char sni[64];	    /* what the server received */
	char version[16];
	/* kd_tls_verify_error_text() of the client, when it rejected the
	 * server. */
	char verify_text[512];
};

/*
 * Runs a TLS handshake between @sctx and @cctx over a non-blocking
 * socketpair, the client preparing for @host. Stops when both sides are
 * done or either fails.
 */
static void run_handshake(SSL_CTX *sctx, SSL_CTX *cctx, const char *host,
			  struct handshake *hs)
{
	bool server_failed = false, client_failed = false;
	const char *sni;
	SSL *s, *c;
	int fds[2], i, ret;

	memset(hs, 0, sizeof(*hs));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	s = SSL_new(sctx);
	c = SSL_new(cctx);
	assert_non_null(s);
	assert_non_null(c);
	SSL_set_fd(s, fds[0]);
	SSL_set_fd(c, fds[1]);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	assert_int_equal(kd_tls_client_prepare(c, host, err, sizeof(err)), 0);

	for (i = 0; i < 1000 && !server_failed && !client_failed; i++) {
		if (!hs->client_ok) {
			ret = SSL_do_handshake(c);
			hs->client_ok = ret == 1;
			client_failed = ret <= 0 &&
					SSL_get_error(c, ret) != SSL_ERROR_WANT_READ &&
					SSL_get_error(c, ret) != SSL_ERROR_WANT_WRITE;
		}
		if (!hs->server_ok) {
			ret = SSL_do_handshake(s);
			hs->server_ok = ret == 1;
			server_failed = ret <= 0 &&
					SSL_get_error(s, ret) != SSL_ERROR_WANT_READ &&
					SSL_get_error(s, ret) != SSL_ERROR_WANT_WRITE;
		}
		if (hs->client_ok && hs->server_ok)
			break;
	}
	/* A TLS 1.3 server checks the client certificate after the client
	 * has finished; read once so the client sees the server's alert. */
	if (hs->client_ok && server_failed) {
		char byte;

		SSL_read(c, &byte, 1);
		hs->client_ok = false;
	}
	hs->verify_result = SSL_get_verify_result(c);
	if (hs->verify_result != X509_V_OK)
		kd_tls_verify_error_text(c, hs->verify_result, hs->verify_text,
					 sizeof(hs->verify_text));
	sni = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
	snprintf(hs->sni, sizeof(hs->sni), "%s", sni ? sni : "");
	snprintf(hs->version, sizeof(hs->version), "%s", SSL_get_version(c));
	ERR_clear_error();
	SSL_free(s);
	SSL_free(c);
	close(fds[0]);
	close(fds[1]);
}

static int group_setup(void **state)
{
	char cmd[512];
	char *tmp = getenv("TMPDIR");

	snprintf(cert_dir, sizeof(cert_dir), "%s/kdist-certs-XXXXXX",
		 tmp ? tmp : "/tmp");
	if (!mkdtemp(cert_dir))
		return -1;
	/* The binary runs from the repository root (make test-unit). */
	snprintf(cmd, sizeof(cmd), "tests/certs/mkcerts '%s'", cert_dir);
	if (system(cmd) != 0) {
		print_error("%s failed\n", cmd);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cert_dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_mkcerts_conf_builds(void **state)
{
	static const char *const files[] = { "dist.conf", "dist-tls12.conf",
					     "dist-tls13.conf" };
	struct kd_tls_config *cfg;
	SSL_CTX *server, *client;
	struct handshake hs;
	char path[300];
	size_t i;

	for (i = 0; i < 3; i++) {
		cfg = kd_tls_config_new();
		snprintf(path, sizeof(path), "%s/%s", cert_dir, files[i]);
		assert_int_equal(kd_tls_config_load_file(cfg, path, err,
							 sizeof(err)),
				 0);
		server = kd_tls_config_server_ctx(cfg, err, sizeof(err));
		assert_non_null(server);
		client = kd_tls_config_client_ctx(cfg, err, sizeof(err));
		assert_non_null(client);
		kd_tls_config_free(cfg);

		run_handshake(server, client, "localhost", &hs);
		assert_true(hs.client_ok);
		assert_true(hs.server_ok);
		assert_string_equal(hs.version,
				    i == 2 ? "TLSv1.3" : "TLSv1.2");
		SSL_CTX_free(server);
		SSL_CTX_free(client);
	}
}

static void test_context_defaults(void **state)
{
	SSL_CTX *server, *client;

	build_pair(pair_text(good_server, good_client), &server, &client);
	/* OTP's default: TLS 1.2 only. */
	assert_int_equal(SSL_CTX_get_min_proto_version(client),
			 TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_max_proto_version(client),
			 TLS1_2_VERSION);
	assert_true(SSL_CTX_get_options(server) & SSL_OP_NO_TICKET);
	assert_true(SSL_CTX_get_options(client) & SSL_OP_NO_TICKET);
	assert_true(SSL_CTX_get_options(server) &
		    SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
	assert_false(SSL_CTX_get_options(client) & SSL_OP_NO_RENEGOTIATION);
	assert_int_equal(SSL_CTX_get_num_tickets(server), 0);
	assert_int_equal(SSL_CTX_get_read_ahead(server), 0);
	assert_int_equal(SSL_CTX_get_read_ahead(client), 0);
	assert_int_equal(SSL_CTX_get_verify_mode(server),
			 SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
	assert_int_equal(SSL_CTX_get_verify_mode(client), SSL_VERIFY_PEER);
	assert_int_equal(SSL_CTX_get_verify_depth(client), 10);
	SSL_CTX_free(server);
	SSL_CTX_free(client);
}

static void test_versions_map(void **state)
{
	static const struct {
		const char *versions;
		int min, max;
	} cases[] = {
		{ "['tlsv1.3']", TLS1_3_VERSION, TLS1_3_VERSION },
		{ "['tlsv1.2']", TLS1_2_VERSION, TLS1_2_VERSION },
		{ "['tlsv1.3', 'tlsv1.2']", TLS1_2_VERSION, TLS1_3_VERSION },
	};
	char client[1024];
	SSL_CTX *s, *c;
	size_t i;

	for (i = 0; i < 3; i++) {
		snprintf(client, sizeof(client),
			 "{client, [{cacertfile, \"@/ca.pem\"}, {versions, "
			 "%s}]}", cases[i].versions);
		build_pair(pair_text(good_server, client), &s, &c);
		assert_int_equal(SSL_CTX_get_min_proto_version(c),
				 cases[i].min);
		assert_int_equal(SSL_CTX_get_max_proto_version(c),
				 cases[i].max);
		SSL_CTX_free(s);
		SSL_CTX_free(c);
	}
}

static void test_rejected_options(void **state)
{
	static const struct {
		const char *text;
		int ret;
		const char *err;
	} cases[] = {
		{ "[{server, [{foo, 1}]}].", -EINVAL,
		  "ssl_dist_optfile: server option 'foo' is not supported by "
		  "kdist (supported: certfile, keyfile, cacertfile, password, verify, "
		  "fail_if_no_peer_cert, depth, versions, ciphers, "
		  "server_name_indication, verify_fun, secure_renegotiate, "
		  "reuse_sessions, customize_hostname_check, crl_check false; "
		  "accepted without effect: key_update_at, renegotiate_at, "
		  "hibernate_after, log_level, log_alert; see the README)" },
		{ "[{server, [{packet, 4}]}].", -EINVAL,
		  "ssl_dist_optfile: server option 'packet' must be removed: "
		  "inet_tls_dist sets packet, active, binary/list, nodelay "
		  "and deliver itself" },
		{ "[{client, [binary]}].", -EINVAL,
		  "ssl_dist_optfile: client option 'binary' must be removed: "
		  "inet_tls_dist sets packet, active, binary/list, nodelay "
		  "and deliver itself" },
		{ "[{client, [{nodelay, true}]}].", -EINVAL,
		  "ssl_dist_optfile: client option 'nodelay' must be removed: "
		  "inet_tls_dist sets packet, active, binary/list, nodelay "
		  "and deliver itself" },
		{ "[{client, [{fail_if_no_peer_cert, true}]}].", -EINVAL,
		  "ssl_dist_optfile: option 'fail_if_no_peer_cert' is a server "
		  "option; OTP 26 and later reject it in client options: "
		  "remove it from the client list" },
		{ "[{server, [{server_name_indication, \"h\"}]}].", -EINVAL,
		  "ssl_dist_optfile: option 'server_name_indication' is a "
		  "client option: remove it from the server list" },
		{ "[{server, [{crl_check, peer}]}].", -EOPNOTSUPP,
		  "ssl_dist_optfile: server option crl_check peer is not "
		  "supported by kdist: remove it or set it to false" },
		{ "[{client, [{versions, ['tlsv1.1', 'tlsv1.2']}]}].",
		  -EOPNOTSUPP,
		  "ssl_dist_optfile: client option versions: 'tlsv1.1' is not "
		  "supported: kdist requires TLS 1.2 or later, so list only "
		  "'tlsv1.2' and 'tlsv1.3'" },
		{ "[{client, [{verify, sometimes}]}].", -EINVAL,
		  "ssl_dist_optfile: client option verify: invalid value "
		  "sometimes: expected verify_peer or verify_none" },
		{ "[{client, [{depth, -1}]}].", -EINVAL,
		  "ssl_dist_optfile: client option depth: invalid value -1: "
		  "expected an integer from 0 to 2147483647" },
		{ "[{client, [{ciphers, [{rsa, aes_128_cbc, sha}]}]}].",
		  -EOPNOTSUPP,
		  "ssl_dist_optfile: client option ciphers: suite "
		  "{rsa,aes_128_cbc,sha} is not supported: kdist carries only "
		  "AEAD suites such as \"TLS_AES_256_GCM_SHA384\" or "
		  "\"ECDHE-RSA-AES256-GCM-SHA384\"" },
		{ "[{client, [{customize_hostname_check, [{match_fun, "
		  "fun m:f/2}]}]}].",
		  -EOPNOTSUPP,
		  "ssl_dist_optfile: client option customize_hostname_check "
		  "[{match_fun,fun m:f/2}] is not supported by kdist: the only "
		  "supported value is [{match_fun, public_key:"
		  "pkix_verify_hostname_match_fun(https)}]" },
		{ "[{client, [{verify_fun, {fun m:f/2, []}}]}].", -EINVAL,
		  "ssl_dist_optfile: client option verify_fun: invalid value "
		  "{fun m:f/2,[]}: expected {fun Module:Function/3, State}" },
		{ "{server, []}.", -EINVAL,
		  "ssl_dist_optfile: expected [{server, Opts}, {client, "
		  "Opts}]" },
		{ "[{peer, []}].", -EINVAL,
		  "ssl_dist_optfile: line 1: expected {server, Opts} or "
		  "{client, Opts}" },
		{ "[{server, {certfile, \"x\"}}].", -EINVAL,
		  "ssl_dist_optfile: line 1: the server options must be a "
		  "list of {Option, Value} tuples" },
		{ "[{server, [{password, 42}]}].", -EINVAL,
		  "ssl_dist_optfile: server option password: expected a "
		  "string" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_load_fails(cases[i].text, cases[i].ret, cases[i].err);
}

static void test_accepted_options(void **state)
{
	static const char text[] =
		"%% coding: utf-8\n"
		"[{server, [{certfile, \"@/server.pem\"},"
		"  {keyfile, \"@/server.key\"}, {hibernate_after, 1000},"
		"  {log_level, debug}, {log_alert, false}, {crl_check, false},"
		"  {secure_renegotiate, true}, {reuse_sessions, true},"
		"  {key_update_at, 1000000}, {renegotiate_at, 99999999999}]},\n"
		" {client, [{cacertfile, \"@/ca.pem\"}, {depth, 3},"
		"  {server_name_indication, disable},"
		"  {customize_hostname_check, [{match_fun,"
		"   public_key:pkix_verify_hostname_match_fun(https)}]},"
		"  {ciphers, [\"TLS_AES_256_GCM_SHA384\","
		"   \"ECDHE-RSA-AES256-GCM-SHA384\","
		"   #{key_exchange => ecdhe_ecdsa, cipher => aes_256_gcm,"
		"     mac => aead, prf => sha384},"
		"   {ecdhe_ecdsa, aes_128_gcm, aead, sha256}]},"
		"  {versions, ['tlsv1.2', 'tlsv1.3']}]}].";
	struct kd_tls_config *cfg = kd_tls_config_new();
	uint64_t key_update_at, renegotiate_at;
	SSL_CTX *client;

	assert_int_equal(load_text(cfg, text), 0);
	kd_tls_config_rekey_limits(cfg, true, &key_update_at, &renegotiate_at);
	assert_true(key_update_at == 1000000);
	/* OTP caps renegotiate_at at 2^28 records. */
	assert_true(renegotiate_at == (1ull << 28));
	kd_tls_config_rekey_limits(cfg, false, &key_update_at,
				   &renegotiate_at);
	assert_true(key_update_at == 388736063997ull);

	client = kd_tls_config_client_ctx(cfg, err, sizeof(err));
	assert_non_null(client);
	assert_int_equal(SSL_CTX_get_verify_depth(client), 3);
	SSL_CTX_free(client);
	kd_tls_config_free(cfg);
}

static void test_unknown_cipher_name(void **state)
{
	struct kd_tls_config *cfg = kd_tls_config_new();

	assert_int_equal(load_text(cfg, "[{client, [{cacertfile, \"@/ca.pem\"},"
					"{ciphers, [\"ECDHE-RSA-AES256-GCM-"
					"SHA384\", \"NO-SUCH-CIPHER\"]}]}]."),
			 0);
	assert_null(kd_tls_config_client_ctx(cfg, err, sizeof(err)));
	assert_string_equal(err, "tls config: client: cipher "
				 "\"NO-SUCH-CIPHER\" is not known to OpenSSL: "
				 "no cipher match");
	kd_tls_config_free(cfg);
}

static void test_verify_peer_needs_cacertfile(void **state)
{
	struct kd_tls_config *cfg = kd_tls_config_new();
	static const char expected[] =
		"tls config: client: {verify, verify_peer} needs {cacertfile, "
		"File} to check the peer certificate: add the CA file, or set "
		"{verify, verify_none} to accept any server (the client "
		"default is verify_peer as in OTP 26)";
	SSL_CTX *ctx;

	/* The client verifies by default, as OTP 26 does. */
	assert_int_equal(load_text(cfg, "[{client, []}]."), 0);
	assert_null(kd_tls_config_client_ctx(cfg, err, sizeof(err)));
	assert_string_equal(err, expected);
	kd_tls_config_free(cfg);

	cfg = kd_tls_config_new();
	assert_int_equal(load_text(cfg, "[{client, [{verify, verify_none}]}]."),
			 0);
	ctx = kd_tls_config_client_ctx(cfg, err, sizeof(err));
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
	SSL_CTX_free(ctx);

	/* The server defaults to verify_none. */
	ctx = kd_tls_config_server_ctx(cfg, err, sizeof(err));
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
	SSL_CTX_free(ctx);
	kd_tls_config_free(cfg);

	cfg = kd_tls_config_new();
	assert_int_equal(load_text(cfg, "[{server, [{fail_if_no_peer_cert, "
					"true}]}]."),
			 0);
	assert_null(kd_tls_config_server_ctx(cfg, err, sizeof(err)));
	assert_string_equal(err, "tls config: server: {fail_if_no_peer_cert, "
				 "true} needs {verify, verify_peer}");
	kd_tls_config_free(cfg);
}

static void assert_server_ctx_fails(const char *server, const char *needle)
{
	struct kd_tls_config *cfg = kd_tls_config_new();
	char text[2048];

	snprintf(text, sizeof(text), "[%s].", server);
	assert_int_equal(load_text(cfg, text), 0);
	assert_null(kd_tls_config_server_ctx(cfg, err, sizeof(err)));
	print_message("error: %s\n", err);
	assert_non_null(strstr(err, expand(needle)));
	kd_tls_config_free(cfg);
}

static void test_key_file_errors(void **state)
{
	assert_server_ctx_fails("{server, [{certfile, \"@/server.pem\"},"
				" {keyfile, \"@/client.key\"}]}",
				"tls config: server: keyfile @/client.key does "
				"not match certfile @/server.pem: ");
	assert_server_ctx_fails("{server, [{certfile, \"@/missing.pem\"}]}",
				"tls config: server: certfile @/missing.pem: "
				"No such file or directory");
	assert_server_ctx_fails("{server, [{certfile, \"@/server.pem\"},"
				" {keyfile, \"@/server-enc.key\"}]}",
				"tls config: server: keyfile @/server-enc.key: ");
	assert_server_ctx_fails("{server, [{certfile, \"@/server.pem\"},"
				" {keyfile, \"@/server-enc.key\"},"
				" {password, \"wrong\"}]}",
				"tls config: server: keyfile @/server-enc.key: ");
	assert_server_ctx_fails("{server, [{certfile, \"@/server.pem\"},"
				" {keyfile, \"@/server.key\"},"
				" {cacertfile, \"@/nope.pem\"}]}",
				"tls config: server: cacertfile @/nope.pem: ");
}

static void test_password_decrypts_key(void **state)
{
	SSL_CTX *server, *client;
	struct handshake hs;

	build_pair(pair_text("{server, [{certfile, \"@/server.pem\"},"
			     " {keyfile, \"@/server-enc.key\"},"
			     " {password, \"kdist-test-pass\"}]}",
			     "{client, [{cacertfile, \"@/ca.pem\"}]}"),
		   &server, &client);
	run_handshake(server, client, "localhost", &hs);
	assert_true(hs.client_ok);
	assert_true(hs.server_ok);
	SSL_CTX_free(server);
	SSL_CTX_free(client);
}

/* Handshake of a server with @certfile/@keyfile against a verifying
 * client; returns the result. */
static void handshake_with_server_cert(const char *cert, const char *key,
				       const char *host, const char *client,
				       struct handshake *hs)
{
	char server[512];
	SSL_CTX *s, *c;

	snprintf(server, sizeof(server),
		 "{server, [{certfile, \"@/%s\"}, {keyfile, \"@/%s\"}]}", cert,
		 key);
	build_pair(pair_text(server, client), &s, &c);
	run_handshake(s, c, host, hs);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

static const char verifying_client[] =
	"{client, [{cacertfile, \"@/ca.pem\"}, {verify, verify_peer}]}";

static void test_handshake_rejects_bad_servers(void **state)
{
	struct handshake hs;

	handshake_with_server_cert("server.pem", "server.key", "localhost",
				   verifying_client, &hs);
	assert_true(hs.client_ok);
	assert_int_equal(hs.verify_result, X509_V_OK);
	assert_string_equal(hs.sni, "localhost");

	handshake_with_server_cert("rogue.pem", "rogue.key", "localhost",
				   verifying_client, &hs);
	assert_false(hs.client_ok);
	assert_int_equal(hs.verify_result,
			 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

	handshake_with_server_cert("expired.pem", "expired.key", "localhost",
				   verifying_client, &hs);
	assert_false(hs.client_ok);
	assert_int_equal(hs.verify_result, X509_V_ERR_CERT_HAS_EXPIRED);

	handshake_with_server_cert("wrong-host.pem", "wrong-host.key",
				   "localhost", verifying_client, &hs);
	assert_false(hs.client_ok);
	assert_int_equal(hs.verify_result, X509_V_ERR_HOSTNAME_MISMATCH);

	/* The good certificate does not name other hosts. */
	handshake_with_server_cert("server.pem", "server.key", "other.example",
				   verifying_client, &hs);
	assert_false(hs.client_ok);
	assert_int_equal(hs.verify_result, X509_V_ERR_HOSTNAME_MISMATCH);

	/* verify_none accepts the untrusted server. */
	handshake_with_server_cert("rogue.pem", "rogue.key", "localhost",
				   "{client, [{verify, verify_none}]}", &hs);
	assert_true(hs.client_ok);
}

/* Fails unless the client's verification error contains @text. */
static void assert_verify_text_has(const struct handshake *hs,
				   const char *text)
{
	if (!strstr(hs->verify_text, text))
		fail_msg("expected '%s' in the verification error, got: %s",
			 text, hs->verify_text);
}

/* The notAfter date of @cert in the certificate directory, as
 * YYYY-MM-DD. */
static void cert_not_after(const char *cert, char *out, size_t cap)
{
	char path[300];
	struct tm tm;
	X509 *x;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", cert_dir, cert);
	f = fopen(path, "r");
	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm), 1);
	strftime(out, cap, "%Y-%m-%d", &tm);
	X509_free(x);
}

static void test_verify_error_names_hosts(void **state)
{
	struct handshake hs;

	handshake_with_server_cert("wrong-host.pem", "wrong-host.key",
				   "localhost", verifying_client, &hs);
	assert_int_equal(hs.verify_result, X509_V_ERR_HOSTNAME_MISMATCH);
	assert_verify_text_has(&hs, "certificate verification failed: "
				    "hostname mismatch");
	assert_verify_text_has(&hs, "expected 'localhost'");
	assert_verify_text_has(&hs, "DNS:wrong.example");
	assert_verify_text_has(&hs, "subject CN=wrong.example");

	handshake_with_server_cert("server.pem", "server.key", "other.example",
				   verifying_client, &hs);
	assert_int_equal(hs.verify_result, X509_V_ERR_HOSTNAME_MISMATCH);
	assert_verify_text_has(&hs, "expected 'other.example'");
	assert_verify_text_has(&hs, "DNS:localhost");
	assert_verify_text_has(&hs, "IP:127.0.0.1");

	handshake_with_server_cert("server.pem", "server.key", "192.0.2.1",
				   verifying_client, &hs);
	assert_int_equal(hs.verify_result, X509_V_ERR_IP_ADDRESS_MISMATCH);
	assert_verify_text_has(&hs, "IP address mismatch");
	assert_verify_text_has(&hs, "expected '192.0.2.1'");
	assert_verify_text_has(&hs, "IP:127.0.0.1");
}

static void test_verify_error_names_expiry(void **state)
{
	char not_after[32], text[64];
	struct handshake hs;

	handshake_with_server_cert("expired.pem", "expired.key", "localhost",
				   verifying_client, &hs);
	assert_int_equal(hs.verify_result, X509_V_ERR_CERT_HAS_EXPIRED);
	assert_verify_text_has(&hs, "certificate verification failed: "
				    "certificate has expired");
	assert_verify_text_has(&hs, "subject CN=localhost");
	cert_not_after("expired.pem", not_after, sizeof(not_after));
	snprintf(text, sizeof(text), "notAfter %s", not_after);
	assert_verify_text_has(&hs, text);
	assert_verify_text_has(&hs, "renew");

	/* An unknown issuer names the subject and the issuer. */
	handshake_with_server_cert("rogue.pem", "rogue.key", "localhost",
				   verifying_client, &hs);
	assert_verify_text_has(&hs, "subject CN=");
	assert_verify_text_has(&hs, "issuer CN=");
}

static void test_handshake_ip_hosts(void **state)
{
	struct handshake hs;

	handshake_with_server_cert("server.pem", "server.key", "127.0.0.1",
				   verifying_client, &hs);
	assert_true(hs.client_ok);
	/* No SNI for an IP address. */
	assert_string_equal(hs.sni, "");

	handshake_with_server_cert("server.pem", "server.key", "::1",
				   verifying_client, &hs);
	assert_true(hs.client_ok);

	handshake_with_server_cert("server.pem", "server.key", "192.0.2.1",
				   verifying_client, &hs);
	assert_false(hs.client_ok);
	assert_int_equal(hs.verify_result, X509_V_ERR_IP_ADDRESS_MISMATCH);
}

static void test_handshake_sni_options(void **state)
{
	struct handshake hs;

	handshake_with_server_cert("server.pem", "server.key", "localhost",
				   "{client, [{cacertfile, \"@/ca.pem\"},"
				   " {server_name_indication, disable}]}",
				   &hs);
	assert_true(hs.client_ok);
	assert_string_equal(hs.sni, "");

	/* An explicit name is sent and checked instead of the host. */
	handshake_with_server_cert("wrong-host.pem", "wrong-host.key",
				   "localhost",
				   "{client, [{cacertfile, \"@/ca.pem\"},"
				   " {server_name_indication, "
				   "\"wrong.example\"}]}",
				   &hs);
	assert_true(hs.client_ok);
	assert_string_equal(hs.sni, "wrong.example");
}

static void test_server_requires_client_cert(void **state)
{
	SSL_CTX *server, *client;
	struct handshake hs;

	build_pair(pair_text(good_server, verifying_client), &server, &client);
	run_handshake(server, client, "localhost", &hs);
	assert_false(hs.server_ok);
	assert_false(hs.client_ok);
	SSL_CTX_free(server);
	SSL_CTX_free(client);
}

struct verify_probe {
	bool accept;
	int calls;
	int min_depth;
	char host[64];
};

static bool probe_verify(void *user, bool preverify_ok, int depth,
			 void *x509, const char *peer_host)
{
	struct verify_probe *p = user;

	p->calls++;
	if (depth < p->min_depth)
		p->min_depth = depth;
	snprintf(p->host, sizeof(p->host), "%s", peer_host ? peer_host : "");
	return x509 && preverify_ok && p->accept;
}

static void test_verify_fun_called(void **state)
{
	static const char client[] =
		"{client, [{cacertfile, \"@/ca.pem\"},"
		" {verify_fun, {fun test_mod:check/3, []}}]}";
	struct verify_probe probe = { .accept = true, .min_depth = 99 };
	struct handshake hs;

	assert_int_equal(kd_verify_fun_register("test_mod:check/3",
						probe_verify, &probe),
			 0);
	handshake_with_server_cert("server.pem", "server.key", "localhost",
				   client, &hs);
	assert_true(hs.client_ok);
	assert_true(probe.calls >= 2); /* the CA and the server */
	assert_int_equal(probe.min_depth, 0);
	assert_string_equal(probe.host, "localhost");

	probe.accept = false;
	probe.calls = 0;
	handshake_with_server_cert("server.pem", "server.key", "localhost",
				   client, &hs);
	assert_false(hs.client_ok);
	assert_true(probe.calls >= 1);
	assert_int_equal(hs.verify_result, X509_V_ERR_APPLICATION_VERIFICATION);

	assert_int_equal(kd_verify_fun_register("test_mod:check/3", NULL,
						NULL),
			 0);
}

static void test_verify_fun_unregistered(void **state)
{
	struct kd_tls_config *cfg = kd_tls_config_new();

	assert_int_equal(load_text(cfg, "[{client, [{cacertfile, \"@/ca.pem\"},"
					" {verify_fun, {fun nope:check/3, "
					"state}}]}]."),
			 0);
	assert_null(kd_tls_config_client_ctx(cfg, err, sizeof(err)));
	assert_string_equal(err, "tls config: client: verify_fun nope:check/3 "
				 "is not registered: call "
				 "kdist_register_verify_fun(\"nope:check/3\", "
				 "fn, user) before starting the node");
	kd_tls_config_free(cfg);

	assert_int_equal(kd_verify_fun_register("nope:check/2", probe_verify,
						NULL),
			 -EINVAL);
	assert_int_equal(kd_verify_fun_register(":f/3", probe_verify, NULL),
			 -EINVAL);
}

static void test_ssl_dist_opt_pairs(void **state)
{
	struct kd_tls_config *cfg = kd_tls_config_new();
	static const char *const pairs[][2] = {
		{ "server_certfile", "@/server.pem" },
		{ "server_keyfile", "@/server-enc.key" },
		{ "server_password", "kdist-test-pass" },
		{ "server_cacertfile", "@/ca.pem" },
		{ "server_verify", "verify_peer" },
		{ "server_fail_if_no_peer_cert", "true" },
		{ "server_depth", "4" },
		{ "server_hibernate_after", "500" },
		{ "server_secure_renegotiate", "true" },
		{ "server_reuse_sessions", "false" },
		{ "server_versions", "tlsv1.2,tlsv1.3" },
		{ "client_certfile", "@/client.pem" },
		{ "client_keyfile", "@/client.key" },
		{ "client_cacertfile", "@/ca.pem" },
		{ "client_verify_fun", "{test_mod,pairs,[]}" },
		{ "client_ciphers", "TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256" },
		{ "client_server_name_indication", "localhost" },
		{ "client_crl_check", "false" },
		{ "client_key_update_at", "4096" },
		{ "client_versions", "tlsv1.3" },
	};
	struct verify_probe probe = { .accept = true, .min_depth = 99 };
	SSL_CTX *server, *client;
	char value[300];
	struct handshake hs;
	size_t i;

	for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		snprintf(value, sizeof(value), "%s", expand(pairs[i][1]));
		print_message("%s %s\n", pairs[i][0], value);
		assert_int_equal(kd_tls_config_add_opt(cfg, pairs[i][0], value,
						       err, sizeof(err)),
				 0);
	}
	assert_int_equal(kd_verify_fun_register("test_mod:pairs/3",
						probe_verify, &probe),
			 0);
	server = kd_tls_config_server_ctx(cfg, err, sizeof(err));
	assert_non_null(server);
	assert_int_equal(SSL_CTX_get_verify_depth(server), 4);
	client = kd_tls_config_client_ctx(cfg, err, sizeof(err));
	assert_non_null(client);
	kd_tls_config_free(cfg);

	run_handshake(server, client, "localhost", &hs);
	assert_true(hs.client_ok);
	assert_true(hs.server_ok);
	assert_string_equal(hs.version, "TLSv1.3");
	assert_true(probe.calls >= 2);
	SSL_CTX_free(server);
	SSL_CTX_free(client);
	kd_verify_fun_register("test_mod:pairs/3", NULL, NULL);
}

static void test_ssl_dist_opt_errors(void **state)
{
	static const struct {
		const char *key, *value;
		int ret;
		const char *err;
	} cases[] = {
		{ "certfile", "/x.pem", -EINVAL,
		  "ssl_dist_opt: 'certfile' must start with server_ or "
		  "client_" },
		{ "client_fail_if_no_peer_cert", "true", -EINVAL,
		  "ssl_dist_opt: option 'fail_if_no_peer_cert' is a server "
		  "option; OTP 26 and later reject it in client options: "
		  "remove it from the client list" },
		{ "server_dhfile", "/dh.pem", -EINVAL,
		  "ssl_dist_opt: server option 'dhfile' is not supported by "
		  "kdist (supported: certfile, keyfile, cacertfile, password, verify, "
		  "fail_if_no_peer_cert, depth, versions, ciphers, "
		  "server_name_indication, verify_fun, secure_renegotiate, "
		  "reuse_sessions, customize_hostname_check, crl_check false; "
		  "accepted without effect: key_update_at, renegotiate_at, "
		  "hibernate_after, log_level, log_alert; see the README)" },
		{ "server_crl_check", "peer", -EOPNOTSUPP,
		  "ssl_dist_opt: server option crl_check peer is not "
		  "supported by kdist: remove it or set it to false" },
		{ "client_depth", "ten", -EINVAL,
		  "ssl_dist_opt: client option depth: invalid value ten: "
		  "expected an integer from 0 to 2147483647" },
		{ "client_verify_fun", "{m,f", -EINVAL,
		  "ssl_dist_opt: client option verify_fun: invalid value: "
		  "line 1: expected ',' or '}' after tuple element, found end "
		  "of input" },
		{ "server_versions", "tlsv1", -EOPNOTSUPP,
		  "ssl_dist_opt: server option versions: 'tlsv1' is not "
		  "supported: kdist requires TLS 1.2 or later, so list only "
		  "'tlsv1.2' and 'tlsv1.3'" },
		{ "client_packet", "4", -EINVAL,
		  "ssl_dist_opt: client option 'packet' must be removed: "
		  "inet_tls_dist sets packet, active, binary/list, nodelay "
		  "and deliver itself" },
	};
	struct kd_tls_config *cfg = kd_tls_config_new();
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("%s %s\n", cases[i].key, cases[i].value);
		assert_int_equal(kd_tls_config_add_opt(cfg, cases[i].key,
						       cases[i].value, err,
						       sizeof(err)),
				 cases[i].ret);
		assert_string_equal(err, cases[i].err);
	}
	kd_tls_config_free(cfg);
}

static void test_parse_error_names_file(void **state)
{
	struct kd_tls_config *cfg = kd_tls_config_new();
	char expected[512];

	assert_int_equal(load_text(cfg, "[{server,\n [{certfile \"x\"}]}]."),
			 -EINVAL);
	snprintf(expected, sizeof(expected),
		 "ssl_dist_optfile: %s/test.conf: line 2: expected ',' or '}' "
		 "after tuple element, found string \"x\"", cert_dir);
	assert_string_equal(err, expected);

	assert_int_equal(kd_tls_config_load_file(cfg, "/nonexistent/dist.conf",
						 err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "ssl_dist_optfile: cannot open "
				 "/nonexistent/dist.conf: No such file or "
				 "directory");
	kd_tls_config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mkcerts_conf_builds),
		cmocka_unit_test(test_context_defaults),
		cmocka_unit_test(test_versions_map),
		cmocka_unit_test(test_rejected_options),
		cmocka_unit_test(test_accepted_options),
		cmocka_unit_test(test_unknown_cipher_name),
		cmocka_unit_test(test_verify_peer_needs_cacertfile),
		cmocka_unit_test(test_key_file_errors),
		cmocka_unit_test(test_password_decrypts_key),
		cmocka_unit_test(test_handshake_rejects_bad_servers),
		cmocka_unit_test(test_verify_error_names_hosts),
		cmocka_unit_test(test_verify_error_names_expiry),
		cmocka_unit_test(test_handshake_ip_hosts),
		cmocka_unit_test(test_handshake_sni_options),
		cmocka_unit_test(test_server_requires_client_cert),
		cmocka_unit_test(test_verify_fun_called),
		cmocka_unit_test(test_verify_fun_unregistered),
		cmocka_unit_test(test_ssl_dist_opt_pairs),
		cmocka_unit_test(test_ssl_dist_opt_errors),
		cmocka_unit_test(test_parse_error_names_file),
	};

	return cmocka_run_group_tests_name("tls_config", tests, group_setup,
					   group_teardown);
}
