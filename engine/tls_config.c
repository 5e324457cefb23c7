// SPDX-License-Identifier: Apache-2.0
/*
 * TLS distribution options with the meaning OTP's inet_tls_dist gives
 * them (ssl 10.8, OTP 25, plus the OTP 26 client defaults), turned into
 * OpenSSL 3.0 contexts.
 *
 * Options come from the -ssl_dist_optfile term and from -ssl_dist_opt
 * pairs. Both feed the same per-role table of setters, so one option means
 * the same in either place; a later setting replaces an earlier one.
 */
#include "tls_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "error.h"
#include "log.h"
#include "term.h"

/* TLS 1.3 suites and TLS 1.2 AEAD suites that Linux kernel TLS offloads,
 * in OTP's order of preference. */
#define DEFAULT_SUITES_13                                             \
	"TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:"               \
	"TLS_CHACHA20_POLY1305_SHA256"
#define DEFAULT_CIPHERS_12                                            \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"   \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"   \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* OTP's limits: ssl's default verify depth, renegotiate_at (records, and
 * also the maximum accepted) and key_update_at (bytes of plaintext). */
#define OTP_DEFAULT_DEPTH 10
#define OTP_RENEGOTIATE_AT (1ull << 28)
#define OTP_KEY_UPDATE_AT 388736063997ull

#define MAX_CIPHER_TEXT 4096

/* The options of one role; owned by struct kd_tls_config. */
struct role_opts {
	const char *name; /* "server" or "client" */
	bool server;
	char *certfile;
	char *keyfile;
	char *cacertfile;
	char *password; /* wiped before it is freed */
	int verify;	/* -1: OTP default, else SSL_VERIFY_NONE/PEER */
	int fail_if_no_peer_cert; /* -1: not set */
	int depth;		  /* -1: OTP_DEFAULT_DEPTH */
	int min_version;	  /* 0: TLS 1.2 only, as OTP */
	int max_version;
	bool ciphers_set;
	char ciphers12[MAX_CIPHER_TEXT];  /* OpenSSL names, ':' separated */
	char suites13[MAX_CIPHER_TEXT];
	bool sni_disable;
	char *sni_host;
	bool secure_renegotiate;
	bool reuse_sessions;
	char *verify_mfa; /* "M:F/3" from verify_fun */
	bool wildcard_match; /* customize_hostname_check: https match_fun */
	uint64_t key_update_at;
	uint64_t renegotiate_at;
};

struct kd_tls_config {
	struct role_opts server;
	struct role_opts client;
};

/*
 * What a context carries for its connections, in SSL_CTX ex_data: freed
 * with the context, so it outlives the config it was built from.
 */
struct ctx_data {
	bool verify_peer;
	bool sni_disable;
	char *sni_host;
	unsigned int hostflags;
	kdist_verify_fn verify_fn;
	void *verify_user;
};

/* Where an option came from, for messages. */
struct opt_src {
	const char *what; /* "ssl_dist_optfile" or "ssl_dist_opt" */
	char *err;
	size_t errlen;
};

static int opt_error(const struct opt_src *src, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int opt_error(const struct opt_src *src, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (src->err && src->errlen)
		snprintf(src->err, src->errlen, "%s: %s", src->what, msg);
	return kd_fail(err, "%s: %s", src->what, msg);
}

/* Verify-fun registry, shared by every node of the process. */

struct verify_entry {
	char *mfa;
	kdist_verify_fn fn;
	void *user;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct verify_entry *registry;
static size_t registry_n;

static bool is_mfa3(const char *mfa)
{
	const char *colon = strchr(mfa, ':');
	size_t len = strlen(mfa);

	return colon && colon != mfa && len > 2 && colon < mfa + len - 3 &&
	       !strcmp(mfa + len - 2, "/3");
}

/* Registers @fn under "M:F/3", replacing an earlier one; a NULL @fn
 * removes the name. */
int kd_verify_fun_register(const char *mfa, kdist_verify_fn fn, void *user)
{
	struct verify_entry *grown;
	size_t i;
	int ret = 0;

	if (!mfa || !is_mfa3(mfa))
		return kd_fail(EINVAL, "verify_fun: name '%s' is not of the "
			       "form Module:Function/3", mfa ? mfa : "(null)");

	pthread_mutex_lock(&registry_lock);
	for (i = 0; i < registry_n; i++)
		if (!strcmp(registry[i].mfa, mfa))
			break;
	if (i < registry_n && !fn) {
		free(registry[i].mfa);
		registry[i] = registry[--registry_n];
	} else if (i < registry_n) {
		registry[i].fn = fn;
		registry[i].user = user;
	} else if (fn) {
		grown = realloc(registry, (registry_n + 1) * sizeof(*grown));
		if (grown)
			registry = grown;
		if (grown && (grown[registry_n].mfa = strdup(mfa))) {
			grown[registry_n].fn = fn;
			grown[registry_n].user = user;
			registry_n++;
		} else {
			ret = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return ret;
}

static bool verify_fun_lookup(const char *mfa, kdist_verify_fn *fn,
			      void **user)
{
	bool found = false;
	size_t i;

	pthread_mutex_lock(&registry_lock);
	for (i = 0; i < registry_n && !found; i++) {
		if (!strcmp(registry[i].mfa, mfa)) {
			*fn = registry[i].fn;
			*user = registry[i].user;
			found = true;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return found;
}

/* Config lifetime. */

static void role_init(struct role_opts *r, const char *name, bool server)
{
	memset(r, 0, sizeof(*r));
	r->name = name;
	r->server = server;
	r->verify = -1;
	r->fail_if_no_peer_cert = -1;
	r->depth = -1;
	r->secure_renegotiate = true;
	r->reuse_sessions = true;
	r->key_update_at = OTP_KEY_UPDATE_AT;
	r->renegotiate_at = OTP_RENEGOTIATE_AT;
}

static void free_secret(char **secret)
{
	if (*secret) {
		OPENSSL_cleanse(*secret, strlen(*secret));
		free(*secret);
		*secret = NULL;
	}
}

static void role_destroy(struct role_opts *r)
{
	free(r->certfile);
	free(r->keyfile);
	free(r->cacertfile);
	free_secret(&r->password);
	free(r->sni_host);
	free(r->verify_mfa);
}

struct kd_tls_config *kd_tls_config_new(void)
{
	struct kd_tls_config *cfg = calloc(1, sizeof(*cfg));

	if (!cfg)
		return NULL;
	role_init(&cfg->server, "server", true);
	role_init(&cfg->client, "client", false);
	return cfg;
}

void kd_tls_config_free(struct kd_tls_config *cfg)
{
	if (!cfg)
		return;
	role_destroy(&cfg->server);
	role_destroy(&cfg->client);
	free(cfg);
}

int kd_tls_config_rekey_limits(const struct kd_tls_config *cfg, bool server,
			       uint64_t *key_update_at,
			       uint64_t *renegotiate_at)
{
	const struct role_opts *r = server ? &cfg->server : &cfg->client;

	*key_update_at = r->key_update_at;
	*renegotiate_at = r->renegotiate_at;
	return 0;
}

/* Option setters, one per OTP option. */

struct opt_desc;
typedef int (*opt_set_fn)(struct role_opts *r, const struct opt_desc *d,
			  const struct kd_term *v, const struct opt_src *src);

enum opt_roles {
	ROLE_BOTH,
	ROLE_SERVER,
	ROLE_CLIENT,
};

/* How an -ssl_dist_opt string value becomes a term. */
enum opt_arg {
	ARG_STRING,	/* "..." as is */
	ARG_ATOM,	/* an atom */
	ARG_INTEGER,	/* decimal */
	ARG_TERM,	/* Erlang syntax, such as "{M,F,State}" */
	ARG_ATOM_LIST,	/* "a,b" as [a, b] */
	ARG_SNI,	/* "disable" as an atom, anything else a string */
};

struct opt_desc {
	const char *name;
	opt_set_fn set;
	enum opt_roles roles;
	enum opt_arg arg;
	size_t field; /* offsetof the char * it sets, for set_path */
};

static const char *term_text(const struct kd_term *v)
{
	if (v->type == KD_TERM_STRING || v->type == KD_TERM_BINARY)
		return v->u.text.bytes;
	return NULL;
}

static int bad_value(const struct role_opts *r, const struct opt_desc *d,
		     const struct kd_term *v, const struct opt_src *src,
		     const char *expected)
{
	char shown[128];

	kd_term_format(v, shown, sizeof(shown));
	return opt_error(src, EINVAL, "%s option %s: invalid value %s: "
			 "expected %s", r->name, d->name, shown, expected);
}

static int get_bool(const struct role_opts *r, const struct opt_desc *d,
		    const struct kd_term *v, const struct opt_src *src,
		    bool *out)
{
	if (kd_term_is_atom(v, "true") || kd_term_is_atom(v, "false")) {
		*out = kd_term_is_atom(v, "true");
		return 0;
	}
	return bad_value(r, d, v, src, "true or false");
}

static int set_path(struct role_opts *r, const struct opt_desc *d,
		    const struct kd_term *v, const struct opt_src *src)
{
	char **field = (char **)((char *)r + d->field);
	const char *text = term_text(v);
	char *copy;

	if (!text || !*text)
		return bad_value(r, d, v, src, "a file name string");
	copy = strdup(text);
	if (!copy)
		return opt_error(src, ENOMEM, "out of memory");
	free(*field);
	*field = copy;
	return 0;
}

static int set_password(struct role_opts *r, const struct opt_desc *d,
			const struct kd_term *v, const struct opt_src *src)
{
	const char *text = term_text(v);
	char *copy;

	/* Never show the value: bad_value would print it. */
	if (!text)
		return opt_error(src, EINVAL, "%s option password: expected a "
				 "string", r->name);
	copy = strdup(text);
	if (!copy)
		return opt_error(src, ENOMEM, "out of memory");
	free_secret(&r->password);
	r->password = copy;
	return 0;
}

static int set_verify(struct role_opts *r, const struct opt_desc *d,
		      const struct kd_term *v, const struct opt_src *src)
{
	if (kd_term_is_atom(v, "verify_peer"))
		r->verify = SSL_VERIFY_PEER;
	else if (kd_term_is_atom(v, "verify_none"))
		r->verify = SSL_VERIFY_NONE;
	else
		return bad_value(r, d, v, src, "verify_peer or verify_none");
	return 0;
}

static int set_fail_if_no_peer_cert(struct role_opts *r,
				    const struct opt_desc *d,
				    const struct kd_term *v,
				    const struct opt_src *src)
{
	bool on;
	int ret;

	ret = get_bool(r, d, v, src, &on);
	if (ret == 0)
		r->fail_if_no_peer_cert = on;
	return ret;
}

static int get_uint(const struct role_opts *r, const struct opt_desc *d,
		    const struct kd_term *v, const struct opt_src *src,
		    uint64_t max, uint64_t *out)
{
	char expected[64];

	if (v->type == KD_TERM_INTEGER && v->u.integer >= 0 &&
	    (uint64_t)v->u.integer <= max) {
		*out = (uint64_t)v->u.integer;
		return 0;
	}
	snprintf(expected, sizeof(expected), "an integer from 0 to %llu",
		 (unsigned long long)max);
	return bad_value(r, d, v, src, expected);
}

static int set_depth(struct role_opts *r, const struct opt_desc *d,
		     const struct kd_term *v, const struct opt_src *src)
{
	uint64_t depth = 0;
	int ret;

	ret = get_uint(r, d, v, src, INT_MAX, &depth);
	if (ret == 0)
		r->depth = (int)depth;
	return ret;
}

static const struct tls_version {
	const char *atom;
	int version; /* 0: rejected */
} tls_versions[] = {
	{ "tlsv1.3", TLS1_3_VERSION },
	{ "tlsv1.2", TLS1_2_VERSION },
	{ "tlsv1.1", 0 },
	{ "tlsv1", 0 },
	{ "sslv3", 0 },
};

static int set_versions(struct role_opts *r, const struct opt_desc *d,
			const struct kd_term *v, const struct opt_src *src)
{
	int min = 0, max = 0, found;
	size_t i, j;

	if (v->type != KD_TERM_LIST || v->u.seq.tail || !v->u.seq.n)
		return bad_value(r, d, v, src, "a list such as ['tlsv1.3']");
	for (i = 0; i < v->u.seq.n; i++) {
		found = -1;
		for (j = 0; j < sizeof(tls_versions) / sizeof(tls_versions[0]);
		     j++)
			if (kd_term_is_atom(v->u.seq.items[i],
					    tls_versions[j].atom))
				found = (int)j;
		if (found < 0)
			return bad_value(r, d, v, src,
					 "'tlsv1.2' and/or 'tlsv1.3'");
		if (!tls_versions[found].version)
			return opt_error(src, EOPNOTSUPP, "%s option versions: "
					 "'%s' is not supported: kdist "
					 "requires TLS 1.2 or later, so list "
					 "only 'tlsv1.2' and 'tlsv1.3'",
					 r->name, tls_versions[found].atom);
		if (!min || tls_versions[found].version < min)
			min = tls_versions[found].version;
		if (tls_versions[found].version > max)
			max = tls_versions[found].version;
	}
	r->min_version = min;
	r->max_version = max;
	return 0;
}

/* OTP's suite maps and tuples, as ssl:cipher_suites/2 prints them, for
 * the AEAD suites kdist can carry. */
static const struct otp_suite {
	const char *openssl;
	const char *kex;
	const char *cipher;
	const char *prf;
} otp_suites[] = {
	{ "TLS_AES_256_GCM_SHA384", "any", "aes_256_gcm", "sha384" },
	{ "TLS_AES_128_GCM_SHA256", "any", "aes_128_gcm", "sha256" },
	{ "TLS_CHACHA20_POLY1305_SHA256", "any", "chacha20_poly1305",
	  "sha256" },
	{ "ECDHE-ECDSA-AES256-GCM-SHA384", "ecdhe_ecdsa", "aes_256_gcm",
	  "sha384" },
	{ "ECDHE-RSA-AES256-GCM-SHA384", "ecdhe_rsa", "aes_256_gcm",
	  "sha384" },
	{ "ECDHE-ECDSA-AES128-GCM-SHA256", "ecdhe_ecdsa", "aes_128_gcm",
	  "sha256" },
	{ "ECDHE-RSA-AES128-GCM-SHA256", "ecdhe_rsa", "aes_128_gcm",
	  "sha256" },
	{ "ECDHE-ECDSA-CHACHA20-POLY1305", "ecdhe_ecdsa", "chacha20_poly1305",
	  "sha256" },
	{ "ECDHE-RSA-CHACHA20-POLY1305", "ecdhe_rsa", "chacha20_poly1305",
	  "sha256" },
	{ "DHE-RSA-AES256-GCM-SHA384", "dhe_rsa", "aes_256_gcm", "sha384" },
	{ "DHE-RSA-AES128-GCM-SHA256", "dhe_rsa", "aes_128_gcm", "sha256" },
};

/* The OpenSSL name of an OTP suite given as a map or tuple, or NULL. */
static const char *otp_suite_name(const struct kd_term *v)
{
	const struct kd_term *kex = NULL, *cipher = NULL, *mac = NULL;
	const struct kd_term *prf = NULL, *key;
	size_t i;

	if (v->type == KD_TERM_TUPLE && (v->u.seq.n == 3 || v->u.seq.n == 4)) {
		kex = v->u.seq.items[0];
		cipher = v->u.seq.items[1];
		mac = v->u.seq.items[2];
		prf = v->u.seq.n == 4 ? v->u.seq.items[3] : NULL;
	} else if (v->type == KD_TERM_MAP) {
		for (i = 0; i + 1 < v->u.seq.n; i += 2) {
			key = v->u.seq.items[i];
			if (kd_term_is_atom(key, "key_exchange"))
				kex = v->u.seq.items[i + 1];
			else if (kd_term_is_atom(key, "cipher"))
				cipher = v->u.seq.items[i + 1];
			else if (kd_term_is_atom(key, "mac"))
				mac = v->u.seq.items[i + 1];
			else if (kd_term_is_atom(key, "prf"))
				prf = v->u.seq.items[i + 1];
		}
	}
	if (!kex || !cipher || !kd_term_is_atom(mac, "aead"))
		return NULL;
	for (i = 0; i < sizeof(otp_suites) / sizeof(otp_suites[0]); i++) {
		if (kd_term_is_atom(kex, otp_suites[i].kex) &&
		    kd_term_is_atom(cipher, otp_suites[i].cipher) &&
		    (!prf || kd_term_is_atom(prf, otp_suites[i].prf)))
			return otp_suites[i].openssl;
	}
	return NULL;
}

/* Appends one OpenSSL name to the TLS 1.3 or TLS 1.2 list of @r. */
static int add_cipher(struct role_opts *r, const char *name, size_t len,
		      const struct opt_src *src)
{
	bool tls13 = len > 4 && !strncmp(name, "TLS_", 4);
	char *list = tls13 ? r->suites13 : r->ciphers12;
	size_t used = strlen(list);

	if (!len)
		return 0;
	if (used + len + 2 > MAX_CIPHER_TEXT)
		return opt_error(src, E2BIG, "%s option ciphers: the list is "
				 "longer than %d bytes", r->name,
				 MAX_CIPHER_TEXT);
	if (used)
		list[used++] = ':';
	memcpy(list + used, name, len);
	list[used + len] = '\0';
	return 0;
}

/* ciphers: a list of OpenSSL names and OTP suites, or one string of
 * OpenSSL names separated by ':'. Names are checked when the context is
 * built. */
static int set_ciphers(struct role_opts *r, const struct opt_desc *d,
		       const struct kd_term *v, const struct opt_src *src)
{
	const struct kd_term *item;
	const char *name, *colon;
	char shown[128];
	size_t i;
	int ret = 0;

	r->ciphers12[0] = r->suites13[0] = '\0';
	r->ciphers_set = true;
	if (v->type == KD_TERM_STRING) {
		for (name = v->u.text.bytes; ret == 0 && *name; name = colon) {
			colon = strchrnul(name, ':');
			ret = add_cipher(r, name, colon - name, src);
			if (*colon)
				colon++;
		}
		return ret;
	}
	if (v->type != KD_TERM_LIST || v->u.seq.tail)
		return bad_value(r, d, v, src, "a list of cipher suites");
	for (i = 0; i < v->u.seq.n && ret == 0; i++) {
		item = v->u.seq.items[i];
		name = item->type == KD_TERM_STRING ? item->u.text.bytes
						     : otp_suite_name(item);
		if (!name) {
			kd_term_format(item, shown, sizeof(shown));
			return opt_error(src, EOPNOTSUPP, "%s option ciphers: "
					 "suite %s is not supported: kdist "
					 "carries only AEAD suites such as "
					 "\"TLS_AES_256_GCM_SHA384\" or "
					 "\"ECDHE-RSA-AES256-GCM-SHA384\"",
					 r->name, shown);
		}
		ret = add_cipher(r, name, strlen(name), src);
	}
	return ret;
}

static int set_sni(struct role_opts *r, const struct opt_desc *d,
		   const struct kd_term *v, const struct opt_src *src)
{
	const char *host = term_text(v);
	char *copy = NULL;

	if (!kd_term_is_atom(v, "disable") && (!host || !*host))
		return bad_value(r, d, v, src, "a host name string or disable");
	if (host && !(copy = strdup(host)))
		return opt_error(src, ENOMEM, "out of memory");
	free(r->sni_host);
	r->sni_host = copy;
	r->sni_disable = !host;
	return 0;
}

/* verify_fun: {fun M:F/3, State} in a file, {M, F, State} from
 * -ssl_dist_opt. The C function registered under "M:F/3" is looked up
 * when the context is built. */
static int set_verify_fun(struct role_opts *r, const struct opt_desc *d,
			  const struct kd_term *v, const struct opt_src *src)
{
	const char *module = NULL, *function = NULL;
	const struct kd_term *f;
	char mfa[2 * KD_TERM_MAX_ATOM * 4 + 8];

	if (v->type == KD_TERM_TUPLE && v->u.seq.n == 2 &&
	    v->u.seq.items[0]->type == KD_TERM_FUN) {
		f = v->u.seq.items[0];
		if (f->u.fun.arity == 3) {
			module = f->u.fun.module;
			function = f->u.fun.function;
		}
	} else if (v->type == KD_TERM_TUPLE && v->u.seq.n == 3 &&
		   v->u.seq.items[0]->type == KD_TERM_ATOM &&
		   v->u.seq.items[1]->type == KD_TERM_ATOM) {
		module = v->u.seq.items[0]->u.text.bytes;
		function = v->u.seq.items[1]->u.text.bytes;
	}
	if (!module)
		return bad_value(r, d, v, src, "{fun Module:Function/3, State}");
	/* NOTE: State stays in the options file: the C function receives
	 * the user pointer given to kdist_register_verify_fun() instead. */
	snprintf(mfa, sizeof(mfa), "%s:%s/3", module, function);
	free(r->verify_mfa);
	r->verify_mfa = strdup(mfa);
	if (!r->verify_mfa)
		return opt_error(src, ENOMEM, "out of memory");
	return 0;
}

static int set_crl_check(struct role_opts *r, const struct opt_desc *d,
			 const struct kd_term *v, const struct opt_src *src)
{
	char shown[128];

	if (kd_term_is_atom(v, "false"))
		return 0;
	kd_term_format(v, shown, sizeof(shown));
	return opt_error(src, EOPNOTSUPP, "%s option crl_check %s is not "
			 "supported by kdist: remove it or set it to false",
			 r->name, shown);
}

static int set_secure_renegotiate(struct role_opts *r,
				  const struct opt_desc *d,
				  const struct kd_term *v,
				  const struct opt_src *src)
{
	return get_bool(r, d, v, src, &r->secure_renegotiate);
}

static int set_reuse_sessions(struct role_opts *r, const struct opt_desc *d,
			      const struct kd_term *v,
			      const struct opt_src *src)
{
	/* OTP also takes 'save' on the client: it reuses like true. */
	if (!r->server && kd_term_is_atom(v, "save")) {
		r->reuse_sessions = true;
		return 0;
	}
	return get_bool(r, d, v, src, &r->reuse_sessions);
}

/* key_update_at (bytes, TLS 1.3) and renegotiate_at (records, TLS 1.2)
 * are where an OTP sender rekeys. kdist parses them so that an operator's
 * file loads unchanged, but starts a KeyUpdate only at the AES-GCM usage
 * limit and never renegotiates. OTP caps renegotiate_at at 2^28. */
static int set_key_update_at(struct role_opts *r, const struct opt_desc *d,
			     const struct kd_term *v,
			     const struct opt_src *src)
{
	uint64_t n = 0;
	int ret;

	ret = get_uint(r, d, v, src, UINT64_MAX >> 1, &n);
	if (ret == 0 && n == 0)
		ret = bad_value(r, d, v, src, "a positive integer");
	if (ret == 0)
		r->key_update_at = n;
	return ret;
}

static int set_renegotiate_at(struct role_opts *r, const struct opt_desc *d,
			      const struct kd_term *v,
			      const struct opt_src *src)
{
	uint64_t n = 0;
	int ret;

	ret = get_uint(r, d, v, src, UINT64_MAX >> 1, &n);
	if (ret == 0)
		r->renegotiate_at = n < OTP_RENEGOTIATE_AT ? n
							   : OTP_RENEGOTIATE_AT;
	return ret;
}

static int set_hibernate_after(struct role_opts *r, const struct opt_desc *d,
			       const struct kd_term *v,
			       const struct opt_src *src)
{
	uint64_t ms = 0;
	int ret = 0;

	if (!kd_term_is_atom(v, "infinity"))
		ret = get_uint(r, d, v, src, UINT32_MAX, &ms);
	if (ret == 0)
		kd_debug("tls config: %s option hibernate_after accepted; it "
			 "has no effect because kdist has no Erlang processes "
			 "to hibernate", r->name);
	return ret;
}

/* log_level and log_alert tune OTP's ssl logger; kdist logs through its
 * own log level. */
static int set_ignored(struct role_opts *r, const struct opt_desc *d,
		       const struct kd_term *v, const struct opt_src *src)
{
	kd_debug("tls config: %s option %s accepted and ignored; set the "
		 "kdist log level instead", r->name, d->name);
	return 0;
}

/*
 * customize_hostname_check: only [{match_fun,
 * public_key:pkix_verify_hostname_match_fun(https)}], which lets a
 * wildcard match the left-most label as HTTPS does. Without it OTP matches
 * no wildcards.
 */
static int set_hostname_check(struct role_opts *r, const struct opt_desc *d,
			      const struct kd_term *v,
			      const struct opt_src *src)
{
	const struct kd_term *fn = kd_term_proplist_get(v, "match_fun");
	char shown[160];

	if (v->type == KD_TERM_LIST && !v->u.seq.n && !v->u.seq.tail) {
		r->wildcard_match = false;
		return 0;
	}
	if (v->type == KD_TERM_LIST && v->u.seq.n == 1 && fn &&
	    fn->type == KD_TERM_CALL &&
	    !strcmp(fn->u.call.module, "public_key") &&
	    !strcmp(fn->u.call.function, "pkix_verify_hostname_match_fun") &&
	    fn->u.call.n == 1 && kd_term_is_atom(fn->u.call.args[0], "https")) {
		r->wildcard_match = true;
		return 0;
	}
	kd_term_format(v, shown, sizeof(shown));
	return opt_error(src, EOPNOTSUPP, "%s option customize_hostname_check "
			 "%s is not supported by kdist: the only supported "
			 "value is [{match_fun, public_key:"
			 "pkix_verify_hostname_match_fun(https)}]",
			 r->name, shown);
}

#define PATH_FIELD(f) offsetof(struct role_opts, f)

static const struct opt_desc opt_table[] = {
	{ "certfile", set_path, ROLE_BOTH, ARG_STRING, PATH_FIELD(certfile) },
	{ "keyfile", set_path, ROLE_BOTH, ARG_STRING, PATH_FIELD(keyfile) },
	{ "cacertfile", set_path, ROLE_BOTH, ARG_STRING,
	  PATH_FIELD(cacertfile) },
	{ "password", set_password, ROLE_BOTH, ARG_STRING, 0 },
	{ "verify", set_verify, ROLE_BOTH, ARG_ATOM, 0 },
	{ "fail_if_no_peer_cert", set_fail_if_no_peer_cert, ROLE_SERVER,
	  ARG_ATOM, 0 },
	{ "depth", set_depth, ROLE_BOTH, ARG_INTEGER, 0 },
	{ "versions", set_versions, ROLE_BOTH, ARG_ATOM_LIST, 0 },
	{ "ciphers", set_ciphers, ROLE_BOTH, ARG_STRING, 0 },
	{ "server_name_indication", set_sni, ROLE_CLIENT, ARG_SNI, 0 },
	{ "verify_fun", set_verify_fun, ROLE_BOTH, ARG_TERM, 0 },
	{ "crl_check", set_crl_check, ROLE_BOTH, ARG_ATOM, 0 },
	{ "secure_renegotiate", set_secure_renegotiate, ROLE_BOTH, ARG_ATOM,
	  0 },
	{ "reuse_sessions", set_reuse_sessions, ROLE_BOTH, ARG_ATOM, 0 },
	{ "hibernate_after", set_hibernate_after, ROLE_BOTH, ARG_TERM, 0 },
	{ "key_update_at", set_key_update_at, ROLE_BOTH, ARG_INTEGER, 0 },
	{ "renegotiate_at", set_renegotiate_at, ROLE_BOTH, ARG_INTEGER, 0 },
	{ "log_level", set_ignored, ROLE_BOTH, ARG_ATOM, 0 },
	{ "log_alert", set_ignored, ROLE_BOTH, ARG_ATOM, 0 },
	{ "customize_hostname_check", set_hostname_check, ROLE_CLIENT,
	  ARG_TERM, 0 },
};

/* Socket options that inet_tls_dist sets on every connection itself. */
static const char *const dist_socket_opts[] = {
	"packet", "active", "binary", "list", "nodelay", "deliver",
};

static const struct opt_desc *find_opt(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(opt_table) / sizeof(opt_table[0]); i++)
		if (!strcmp(opt_table[i].name, name))
			return &opt_table[i];
	return NULL;
}

/* Applies option @name = @v to @r after checking that it exists and
 * belongs to the role. */
static int apply_opt(struct role_opts *r, const char *name,
		     const struct kd_term *v, const struct opt_src *src)
{
	const struct opt_desc *d;
	size_t i;

	for (i = 0; i < sizeof(dist_socket_opts) / sizeof(dist_socket_opts[0]);
	     i++)
		if (!strcmp(name, dist_socket_opts[i]))
			return opt_error(src, EINVAL, "%s option '%s' must be "
					 "removed: inet_tls_dist sets packet, "
					 "active, binary/list, nodelay and "
					 "deliver itself", r->name, name);
	d = find_opt(name);
	if (!d)
		return opt_error(src, EINVAL, "%s option '%s' is not supported "
				 "by kdist (supported: certfile, keyfile, "
				 "cacertfile, password, verify, "
				 "fail_if_no_peer_cert, depth, versions, "
				 "ciphers, server_name_indication, verify_fun, "
				 "secure_renegotiate, reuse_sessions, "
				 "customize_hostname_check, crl_check false; "
				 "accepted without effect: key_update_at, "
				 "renegotiate_at, hibernate_after, log_level, "
				 "log_alert; see the README)",
				 r->name, name);
	if (d->roles == ROLE_SERVER && !r->server)
		return opt_error(src, EINVAL, "option '%s' is a server option; "
				 "OTP 26 and later reject it in client "
				 "options: remove it from the client list",
				 name);
	if (d->roles == ROLE_CLIENT && r->server)
		return opt_error(src, EINVAL, "option '%s' is a client option: "
				 "remove it from the server list", name);
	return d->set(r, d, v, src);
}

/* Options file and -ssl_dist_opt. */

/* Applies one role's option list, [{Name, Value} | Name]. A bare atom
 * means {Name, true}, as proplists read it. */
static int apply_role_list(struct role_opts *r, const struct kd_term *opts,
			   const struct opt_src *src)
{
	struct kd_term true_atom = { .type = KD_TERM_ATOM };
	const struct kd_term *item;
	size_t i;
	int ret;

	true_atom.u.text.bytes = "true";
	true_atom.u.text.len = 4;
	if (opts->type != KD_TERM_LIST || opts->u.seq.tail)
		return opt_error(src, EINVAL, "line %d: the %s options must "
				 "be a list of {Option, Value} tuples",
				 opts->line, r->name);
	for (i = 0; i < opts->u.seq.n; i++) {
		item = opts->u.seq.items[i];
		if (item->type == KD_TERM_ATOM)
			ret = apply_opt(r, item->u.text.bytes, &true_atom, src);
		else if (item->type == KD_TERM_TUPLE && item->u.seq.n == 2 &&
			 item->u.seq.items[0]->type == KD_TERM_ATOM)
			ret = apply_opt(r, item->u.seq.items[0]->u.text.bytes,
					item->u.seq.items[1], src);
		else
			ret = opt_error(src, EINVAL, "line %d: expected "
					"{Option, Value} in the %s options",
					item->line, r->name);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int apply_file_term(struct kd_tls_config *cfg,
			   const struct kd_term *term,
			   const struct opt_src *src)
{
	const struct kd_term *item, *role;
	size_t i;
	int ret;

	if (term->type != KD_TERM_LIST || term->u.seq.tail)
		return opt_error(src, EINVAL, "expected [{server, Opts}, "
				 "{client, Opts}]");
	for (i = 0; i < term->u.seq.n; i++) {
		item = term->u.seq.items[i];
		role = item->type == KD_TERM_TUPLE && item->u.seq.n == 2
			       ? item->u.seq.items[0]
			       : NULL;
		if (kd_term_is_atom(role, "server"))
			ret = apply_role_list(&cfg->server,
					      item->u.seq.items[1], src);
		else if (kd_term_is_atom(role, "client"))
			ret = apply_role_list(&cfg->client,
					      item->u.seq.items[1], src);
		else
			ret = opt_error(src, EINVAL, "line %d: expected "
					"{server, Opts} or {client, Opts}",
					item->line);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Wipes every string of @t: an options file may hold a key password. */
static void term_wipe(struct kd_term *t)
{
	size_t i;

	switch (t->type) {
	case KD_TERM_STRING:
	case KD_TERM_BINARY:
		OPENSSL_cleanse(t->u.text.bytes, t->u.text.len);
		break;
	case KD_TERM_LIST:
	case KD_TERM_TUPLE:
	case KD_TERM_MAP:
		for (i = 0; i < t->u.seq.n; i++)
			term_wipe(t->u.seq.items[i]);
		if (t->u.seq.tail)
			term_wipe(t->u.seq.tail);
		break;
	default:
		break;
	}
}

static int read_file(const char *path, char **text, size_t *len,
		     const struct opt_src *src)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 4096, n = 0;
	char *buf = NULL, *grown;

	if (!f)
		return opt_error(src, errno, "cannot open %s: %s", path,
				 strerror(errno));
	for (;;) {
		grown = n + 1 >= cap || !buf ? realloc(buf, cap *= 2) : buf;
		if (!grown) {
			fclose(f);
			OPENSSL_cleanse(buf, n);
			free(buf);
			return opt_error(src, ENOMEM, "out of memory");
		}
		buf = grown;
		n += fread(buf + n, 1, cap - n - 1, f);
		if (feof(f) || ferror(f) || n > KD_TERM_MAX_TEXT)
			break;
	}
	if (ferror(f) || n > KD_TERM_MAX_TEXT) {
		fclose(f);
		OPENSSL_cleanse(buf, n);
		free(buf);
		return opt_error(src, n > KD_TERM_MAX_TEXT ? E2BIG : EIO,
				 "cannot read %s: %s", path,
				 n > KD_TERM_MAX_TEXT ? "larger than 16 MiB"
						      : "read error");
	}
	fclose(f);
	*text = buf;
	*len = n;
	return 0;
}

int kd_tls_config_load_file(struct kd_tls_config *cfg, const char *path,
			    char *err, size_t errlen)
{
	struct opt_src src = { "ssl_dist_optfile", err, errlen };
	struct kd_term *term = NULL;
	char *text = NULL;
	char perr[256];
	size_t len = 0;
	int ret;

	ret = read_file(path, &text, &len, &src);
	if (ret < 0)
		return ret;
	ret = kd_term_parse_flags(text, len,
				  KD_TERM_PARSE_CALLS | KD_TERM_PARSE_DOT, &term,
				  perr, sizeof(perr));
	OPENSSL_cleanse(text, len);
	free(text);
	if (ret < 0)
		return opt_error(&src, -ret, "%s: %s", path, perr);

	ret = apply_file_term(cfg, term, &src);
	term_wipe(term);
	kd_term_free(term);
	if (ret == 0)
		kd_info("tls config: read options from %s", path);
	return ret;
}

static void text_term(struct kd_term *t, enum kd_term_type type, char *text)
{
	t->type = type;
	t->line = 1;
	t->u.text.bytes = text;
	t->u.text.len = strlen(text);
}

/* An -ssl_dist_opt value "a,b" as the list [a, b], for versions. */
static int apply_atom_list(struct role_opts *r, const struct opt_desc *d,
			   char *value, const struct opt_src *src)
{
	struct kd_term atoms[8], *items[8];
	struct kd_term list = { .type = KD_TERM_LIST, .line = 1 };
	char *save = NULL, *word;
	size_t n = 0;

	for (word = strtok_r(value, ", ", &save); word;
	     word = strtok_r(NULL, ", ", &save)) {
		if (n == sizeof(atoms) / sizeof(atoms[0]))
			return opt_error(src, EINVAL, "%s option %s: too many "
					 "values", r->name, d->name);
		text_term(&atoms[n], KD_TERM_ATOM, word);
		items[n] = &atoms[n];
		n++;
	}
	list.u.seq.items = items;
	list.u.seq.n = n;
	return apply_opt(r, d->name, &list, src);
}

/*
 * Applies an -ssl_dist_opt string as the term the options file would
 * hold: inet_tls_dist keeps file names and passwords as strings, makes
 * verify and the booleans atoms, depth an integer and parses verify_fun.
 */
static int apply_arg(struct role_opts *r, const struct opt_desc *d,
		     char *value, const struct opt_src *src)
{
	struct kd_term *parsed = NULL, simple = { 0 };
	char perr[200];
	int ret;

	switch (d->arg) {
	case ARG_STRING:
		text_term(&simple, KD_TERM_STRING, value);
		return apply_opt(r, d->name, &simple, src);
	case ARG_ATOM:
		text_term(&simple, KD_TERM_ATOM, value);
		return apply_opt(r, d->name, &simple, src);
	case ARG_SNI:
		text_term(&simple, strcmp(value, "disable") ? KD_TERM_STRING
							    : KD_TERM_ATOM,
			  value);
		return apply_opt(r, d->name, &simple, src);
	case ARG_ATOM_LIST:
		return apply_atom_list(r, d, value, src);
	case ARG_INTEGER:
	case ARG_TERM:
		break;
	}
	ret = kd_term_parse(value, strlen(value), &parsed, perr, sizeof(perr));
	if (ret < 0)
		return opt_error(src, -ret, "%s option %s: invalid value: %s",
				 r->name, d->name, perr);
	ret = apply_opt(r, d->name, parsed, src);
	term_wipe(parsed);
	kd_term_free(parsed);
	return ret;
}

int kd_tls_config_add_opt(struct kd_tls_config *cfg, const char *key,
			  const char *value, char *err, size_t errlen)
{
	struct opt_src src = { "ssl_dist_opt", err, errlen };
	const struct opt_desc *d;
	struct role_opts *r;
	const char *name;
	char *copy;
	size_t len;
	int ret;

	if (!strncmp(key, "server_", 7)) {
		r = &cfg->server;
		name = key + 7;
	} else if (!strncmp(key, "client_", 7)) {
		r = &cfg->client;
		name = key + 7;
	} else {
		return opt_error(&src, EINVAL, "'%s' must start with server_ "
				 "or client_", key);
	}
	d = find_opt(name);
	if (!d)
		return apply_opt(r, name, NULL, &src);
	len = strlen(value);
	copy = strdup(value);
	if (!copy)
		return opt_error(&src, ENOMEM, "out of memory");
	ret = apply_arg(r, d, copy, &src);
	OPENSSL_cleanse(copy, len);
	free(copy);
	return ret;
}

/* Context data and the verify callback. */

static int ctx_data_index = -1;
static int host_index = -1;
static int verify_failure_index = -1;
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

/* The certificate that verification rejected last on an SSL object, kept
 * for the error message, since OpenSSL keeps only the error code. */
struct verify_failure {
	int error; /* X509_V_ERR_* */
	int depth; /* 0 for the peer's own certificate */
	char subject[160];
	char issuer[160];
	char not_before[32];
	char not_after[32];
	char expected[128]; /* host or IP address checked, if any */
	char names[200];    /* the subjectAltName entries */
};

static void ctx_data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
			  int idx, long argl, void *argp)
{
	struct ctx_data *cd = ptr;

	if (cd) {
		free(cd->sni_host);
		free(cd);
	}
}

static void host_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
		      long argl, void *argp)
{
	free(ptr);
}

static void verify_failure_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
				int idx, long argl, void *argp)
{
	free(ptr);
}

static void index_init(void)
{
	ctx_data_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
						  ctx_data_free);
	host_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, host_free);
	verify_failure_index = SSL_get_ex_new_index(0, NULL, NULL, NULL,
						    verify_failure_free);
}

/* Prints @name as RFC 2253 text such as "CN=localhost,O=Example". */
static void name_text(const X509_NAME *name, char *out, size_t cap)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int n = 0;

	out[0] = '\0';
	if (!bio)
		return;
	if (name && X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0)
		n = BIO_read(bio, out, (int)cap - 1);
	out[n > 0 ? n : 0] = '\0';
	BIO_free(bio);
}

/* Prints @t in ISO 8601, such as "2025-01-31 12:00:00Z". */
static void time_text(const ASN1_TIME *t, char *out, size_t cap)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int n = 0;

	out[0] = '\0';
	if (!bio)
		return;
	if (t && ASN1_TIME_print_ex(bio, t, ASN1_DTFLGS_ISO8601))
		n = BIO_read(bio, out, (int)cap - 1);
	out[n > 0 ? n : 0] = '\0';
	BIO_free(bio);
}

/* Lists the DNS and IP address entries of @cert's subjectAltName, such
 * as "DNS:localhost, IP:127.0.0.1", cut with "..." at @cap. */
static void alt_names_text(X509 *cert, char *out, size_t cap)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name,
						NULL, NULL);
	size_t used = 0;
	int count = names ? sk_GENERAL_NAME_num(names) : 0;

	out[0] = '\0';
	for (int i = 0; i < count; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		const ASN1_STRING *value;
		char entry[72];
		char addr[INET6_ADDRSTRLEN];
		int family, len, n;

		if (gn->type == GEN_DNS) {
			value = gn->d.dNSName;
			len = ASN1_STRING_length(value);
			if (len > 60)
				len = 60;
			snprintf(entry, sizeof(entry), "DNS:%.*s", len,
				 (const char *)ASN1_STRING_get0_data(value));
		} else if (gn->type == GEN_IPADD) {
			value = gn->d.iPAddress;
			family = ASN1_STRING_length(value) == 16 ? AF_INET6
								 : AF_INET;
			if (!inet_ntop(family, ASN1_STRING_get0_data(value), addr,
				       sizeof(addr)))
				continue;
			snprintf(entry, sizeof(entry), "IP:%s", addr);
		} else {
			continue;
		}
		n = snprintf(out + used, cap - used, "%s%s", used ? ", " : "",
			     entry);
		if (n < 0 || (size_t)n >= cap - used) {
			/* snprintf() cut the list: mark the cut. */
			memcpy(out + cap - 4, "...", 4);
			break;
		}
		used += (size_t)n;
	}
	GENERAL_NAMES_free(names);
}

/* Keeps what the error message needs from the certificate that @store
 * rejected on @ssl. */
static void record_verify_failure(SSL *ssl, X509_STORE_CTX *store)
{
	struct verify_failure *f = SSL_get_ex_data(ssl, verify_failure_index);
	X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(store);
	X509 *cert = X509_STORE_CTX_get_current_cert(store);
	const char *host;
	char *ip;

	if (!f) {
		f = malloc(sizeof(*f));
		if (!f || !SSL_set_ex_data(ssl, verify_failure_index, f)) {
			free(f);
			return;
		}
	}
	memset(f, 0, sizeof(*f));
	f->error = X509_STORE_CTX_get_error(store);
	f->depth = X509_STORE_CTX_get_error_depth(store);
	host = param ? X509_VERIFY_PARAM_get0_host(param, 0) : NULL;
	if (host) {
		snprintf(f->expected, sizeof(f->expected), "%s", host);
	} else if (param) {
		/* Without an IP address to check, get1_ip_asc() queues an
		 * error that would then appear in the handshake's error. */
		ERR_set_mark();
		ip = X509_VERIFY_PARAM_get1_ip_asc(param);
		ERR_pop_to_mark();
		if (ip)
			snprintf(f->expected, sizeof(f->expected), "%s", ip);
		OPENSSL_free(ip);
	}
	if (!cert)
		return;
	name_text(X509_get_subject_name(cert), f->subject, sizeof(f->subject));
	name_text(X509_get_issuer_name(cert), f->issuer, sizeof(f->issuer));
	time_text(X509_get0_notBefore(cert), f->not_before,
		  sizeof(f->not_before));
	time_text(X509_get0_notAfter(cert), f->not_after,
		  sizeof(f->not_after));
	alt_names_text(cert, f->names, sizeof(f->names));
}

void kd_tls_verify_error_text(SSL *ssl, long verify_result, char *buf,
			      size_t cap)
{
	const struct verify_failure *f;
	char which[48] = "the certificate";
	size_t used;

	pthread_once(&index_once, index_init);
	snprintf(buf, cap, "certificate verification failed: %s",
		 X509_verify_cert_error_string(verify_result));
	f = SSL_get_ex_data(ssl, verify_failure_index);
	if (!f || f->error != verify_result || !f->subject[0])
		return;
	if (f->depth > 0)
		snprintf(which, sizeof(which),
			 "the certificate at depth %d of the chain", f->depth);
	used = strlen(buf);
	switch (verify_result) {
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		snprintf(buf + used, cap - used,
			 ": expected '%s', but the certificate names %s "
			 "(subject %s); give the peer a certificate that names "
			 "'%s'",
			 f->expected, f->names[0] ? f->names : "no DNS or IP "
			 "address in its subjectAltName", f->subject,
			 f->expected);
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		snprintf(buf + used, cap - used,
			 ": %s (subject %s) expired at notAfter %s; renew it",
			 which, f->subject, f->not_after);
		break;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		snprintf(buf + used, cap - used,
			 ": %s (subject %s) is valid only from notBefore %s; "
			 "check the clocks of both hosts",
			 which, f->subject, f->not_before);
		break;
	default:
		snprintf(buf + used, cap - used, ": %s (subject %s, issuer %s)",
			 which, f->subject, f->issuer);
		break;
	}
}

/*
 * Runs the registered verify_fun for each certificate of the chain. As in
 * OTP, the function sees OpenSSL's verdict and has the last word: it may
 * reject a valid certificate or accept one OpenSSL rejected.
 */
static int verify_callback(int preverify_ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(
		store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct ctx_data *cd;
	const char *host;
	bool ok;

	if (!ssl)
		return preverify_ok;
	if (!preverify_ok)
		record_verify_failure(ssl, store);
	cd = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_data_index);
	if (!cd || !cd->verify_fn)
		return preverify_ok;
	host = SSL_get_ex_data(ssl, host_index);
	ok = cd->verify_fn(cd->verify_user, preverify_ok,
			   X509_STORE_CTX_get_error_depth(store),
			   X509_STORE_CTX_get_current_cert(store), host);
	if (!ok && preverify_ok) {
		X509_STORE_CTX_set_error(store,
					 X509_V_ERR_APPLICATION_VERIFICATION);
		record_verify_failure(ssl, store);
	}
	return ok;
}

/* The reason of the oldest queued OpenSSL error, which is usually the
 * cause; empties the queue. */
static const char *ssl_reason(char *buf, size_t cap)
{
	unsigned long e, first = 0;
	const char *reason;

	while ((e = ERR_get_error()))
		if (!first)
			first = e;
	if (first && ERR_SYSTEM_ERROR(first))
		reason = strerror(ERR_GET_REASON(first));
	else
		reason = first ? ERR_reason_error_string(first) : NULL;
	snprintf(buf, cap, "%s", reason ? reason : "unknown OpenSSL error");
	return buf;
}

/* Passes the configured pass phrase to PEM_read; without one an encrypted
 * key fails at once instead of prompting on the terminal. */
static int pass_phrase_cb(char *buf, int size, int rwflag, void *user)
{
	const char *password = user;
	size_t len;

	if (!password)
		return -1;
	len = strlen(password);
	if (len > (size_t)size)
		return -1;
	memcpy(buf, password, len);
	return (int)len;
}

/* Building contexts. */

static int effective_verify(const struct role_opts *r)
{
	/* OTP 26 made verify_peer the client default; servers still
	 * default to verify_none. */
	if (r->verify >= 0)
		return r->verify;
	return r->server ? SSL_VERIFY_NONE : SSL_VERIFY_PEER;
}

static int check_role(const struct role_opts *r, const struct opt_src *src)
{
	int verify = effective_verify(r);

	if (verify == SSL_VERIFY_PEER && !r->cacertfile)
		return opt_error(src, EINVAL, "%s: {verify, verify_peer} needs "
				 "{cacertfile, File} to check the peer "
				 "certificate: add the CA file%s", r->name,
				 r->server ? " or set {verify, verify_none}"
					   : ", or set {verify, verify_none} "
					     "to accept any server (the client "
					     "default is verify_peer as in "
					     "OTP 26)");
	if (r->fail_if_no_peer_cert == 1 && verify != SSL_VERIFY_PEER)
		return opt_error(src, EINVAL, "%s: {fail_if_no_peer_cert, "
				 "true} needs {verify, verify_peer}",
				 r->name);
	return 0;
}

static int ctx_set_ciphers(SSL_CTX *ctx, const struct role_opts *r,
			   const struct opt_src *src)
{
	const char *list12 = r->ciphers_set ? r->ciphers12 : DEFAULT_CIPHERS_12;
	const char *list13 = r->ciphers_set ? r->suites13 : DEFAULT_SUITES_13;
	int min = r->min_version ? r->min_version : TLS1_2_VERSION;
	int max = r->max_version ? r->max_version : TLS1_2_VERSION;
	char reason[128];

	if (max >= TLS1_3_VERSION && !*list13 && min >= TLS1_3_VERSION)
		return opt_error(src, EINVAL, "%s: ciphers lists no TLS 1.3 "
				 "suite but versions allows only TLS 1.3",
				 r->name);
	if (min <= TLS1_2_VERSION && !*list12 && max <= TLS1_2_VERSION)
		return opt_error(src, EINVAL, "%s: ciphers lists no TLS 1.2 "
				 "suite but versions allows only TLS 1.2",
				 r->name);
	/* A list with suites of one version only turns the other off. */
	if (!*list12)
		min = TLS1_3_VERSION;
	if (!*list13)
		max = TLS1_2_VERSION;
	if (*list12 && !SSL_CTX_set_cipher_list(ctx, list12))
		return opt_error(src, EINVAL, "%s: ciphers \"%s\": %s", r->name,
				 list12, ssl_reason(reason, sizeof(reason)));
	if (*list13 && !SSL_CTX_set_ciphersuites(ctx, list13))
		return opt_error(src, EINVAL, "%s: ciphers \"%s\": %s", r->name,
				 list13, ssl_reason(reason, sizeof(reason)));
	if (!SSL_CTX_set_min_proto_version(ctx, min) ||
	    !SSL_CTX_set_max_proto_version(ctx, max))
		return opt_error(src, EINVAL, "%s: setting TLS versions "
				 "failed: %s", r->name,
				 ssl_reason(reason, sizeof(reason)));
	return 0;
}

/* Checks each TLS 1.2 name alone: SSL_CTX_set_cipher_list accepts a list
 * as long as one name is known. */
static int check_cipher_names(SSL_CTX *ctx, const struct role_opts *r,
			      const struct opt_src *src)
{
	char names[MAX_CIPHER_TEXT], *save = NULL, *name;
	char reason[128];

	snprintf(names, sizeof(names), "%s", r->ciphers12);
	for (name = strtok_r(names, ":", &save); name;
	     name = strtok_r(NULL, ":", &save)) {
		if (!SSL_CTX_set_cipher_list(ctx, name))
			return opt_error(src, EINVAL, "%s: cipher \"%s\" is "
					 "not known to OpenSSL: %s", r->name,
					 name,
					 ssl_reason(reason, sizeof(reason)));
	}
	snprintf(names, sizeof(names), "%s", r->suites13);
	for (name = strtok_r(names, ":", &save); name;
	     name = strtok_r(NULL, ":", &save)) {
		if (!SSL_CTX_set_ciphersuites(ctx, name))
			return opt_error(src, EINVAL, "%s: cipher \"%s\" is "
					 "not a TLS 1.3 suite known to "
					 "OpenSSL: %s", r->name, name,
					 ssl_reason(reason, sizeof(reason)));
	}
	return 0;
}

static int ctx_load_keys(SSL_CTX *ctx, struct role_opts *r,
			 const struct opt_src *src)
{
	const char *keyfile = r->keyfile ? r->keyfile : r->certfile;
	bool mismatch;
	char reason[128];
	int ret = 0;

	if (!r->certfile) {
		if (r->keyfile)
			return opt_error(src, EINVAL, "%s: keyfile %s is set "
					 "but certfile is missing: add "
					 "{certfile, File}", r->name,
					 r->keyfile);
		return 0;
	}
	if (!SSL_CTX_use_certificate_chain_file(ctx, r->certfile))
		return opt_error(src, EINVAL, "%s: certfile %s: %s", r->name,
				 r->certfile,
				 ssl_reason(reason, sizeof(reason)));

	SSL_CTX_set_default_passwd_cb(ctx, pass_phrase_cb);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, r->password);
	if (!SSL_CTX_use_PrivateKey_file(ctx, keyfile, SSL_FILETYPE_PEM)) {
		mismatch = ERR_GET_REASON(ERR_peek_error()) ==
			   X509_R_KEY_VALUES_MISMATCH;
		if (mismatch)
			ret = opt_error(src, EINVAL, "%s: keyfile %s does not "
					"match certfile %s: %s", r->name,
					keyfile, r->certfile,
					ssl_reason(reason, sizeof(reason)));
		else
			ret = opt_error(src, EINVAL, "%s: keyfile %s: %s%s",
					r->name, keyfile,
					ssl_reason(reason, sizeof(reason)),
					r->password ? "" : " (if the key is "
					"encrypted, set {password, ...})");
	} else if (!SSL_CTX_check_private_key(ctx))
		ret = opt_error(src, EINVAL, "%s: keyfile %s does not match "
				"certfile %s: %s", r->name, keyfile,
				r->certfile,
				ssl_reason(reason, sizeof(reason)));
	/* The context keeps no pointer to the pass phrase. */
	SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
	return ret;
}

static int ctx_set_verify(SSL_CTX *ctx, const struct role_opts *r,
			  struct ctx_data *cd, const struct opt_src *src)
{
	int mode = effective_verify(r);
	char reason[128];

	if (r->cacertfile &&
	    !SSL_CTX_load_verify_locations(ctx, r->cacertfile, NULL))
		return opt_error(src, EINVAL, "%s: cacertfile %s: %s", r->name,
				 r->cacertfile,
				 ssl_reason(reason, sizeof(reason)));
	if (r->server && r->cacertfile && mode == SSL_VERIFY_PEER) {
		STACK_OF(X509_NAME) *names =
			SSL_load_client_CA_file(r->cacertfile);

		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		ERR_clear_error();
	}
	if (r->verify_mfa &&
	    !verify_fun_lookup(r->verify_mfa, &cd->verify_fn, &cd->verify_user))
		return opt_error(src, ENOENT, "%s: verify_fun %s is not "
				 "registered: call kdist_register_verify_fun("
				 "\"%s\", fn, user) before starting the node",
				 r->name, r->verify_mfa, r->verify_mfa);
	if (r->fail_if_no_peer_cert == 1)
		mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(ctx, mode, verify_callback);
	SSL_CTX_set_verify_depth(ctx, r->depth >= 0 ? r->depth
						    : OTP_DEFAULT_DEPTH);
	cd->verify_peer = effective_verify(r) == SSL_VERIFY_PEER;
	return 0;
}

/*
 * Options common to every distribution connection: no session tickets
 * (OTP disables them), no read-ahead so that no record past the handshake
 * stays in OpenSSL's buffer when the keys move to the kernel, and
 * renegotiation allowed because OTP renegotiates TLS 1.2 links every 2^28
 * records.
 */
static void ctx_set_options(SSL_CTX *ctx, const struct role_opts *r)
{
	uint64_t opts = SSL_OP_NO_TICKET;

	if (r->server)
		opts |= SSL_OP_ALLOW_CLIENT_RENEGOTIATION;
	if (!r->secure_renegotiate) {
		opts |= SSL_OP_LEGACY_SERVER_CONNECT |
			SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION;
		kd_warn("tls config: %s: secure_renegotiate is false, so "
			"peers without RFC 5746 may renegotiate unsafely",
			r->name);
	}
	SSL_CTX_set_options(ctx, opts);
	SSL_CTX_clear_options(ctx, SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_read_ahead(ctx, 0);
	SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);

	/* NOTE: reuse_sessions only switches the server's TLS 1.2 session
	 * cache; the client does not keep sessions to resume. */
	if (r->server && r->reuse_sessions) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
		SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"kdist",
					       5);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	}
}

static SSL_CTX *build_ctx(struct role_opts *r, char *err, size_t errlen)
{
	struct opt_src src = { "tls config", err, errlen };
	struct ctx_data *cd;
	SSL_CTX *ctx;
	int ret;

	pthread_once(&index_once, index_init);
	if (check_role(r, &src) < 0)
		return NULL;
	ctx = SSL_CTX_new(r->server ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		opt_error(&src, ENOMEM, "%s: SSL_CTX_new failed", r->name);
		return NULL;
	}
	cd = calloc(1, sizeof(*cd));
	if (!cd || !SSL_CTX_set_ex_data(ctx, ctx_data_index, cd)) {
		free(cd);
		opt_error(&src, ENOMEM, "out of memory");
		goto err_free_ctx;
	}
	cd->sni_disable = r->sni_disable;
	cd->hostflags = r->wildcard_match ? X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS
					  : X509_CHECK_FLAG_NO_WILDCARDS;
	if (r->sni_host && !(cd->sni_host = strdup(r->sni_host))) {
		opt_error(&src, ENOMEM, "out of memory");
		goto err_free_ctx;
	}

	ctx_set_options(ctx, r);
	ret = check_cipher_names(ctx, r, &src);
	if (ret == 0)
		ret = ctx_set_ciphers(ctx, r, &src);
	if (ret == 0)
		ret = ctx_load_keys(ctx, r, &src);
	if (ret == 0)
		ret = ctx_set_verify(ctx, r, cd, &src);
	if (ret < 0)
		goto err_free_ctx;
	kd_info("tls config: %s context ready (verify %s)", r->name,
		cd->verify_peer ? "verify_peer" : "verify_none");
	return ctx;

err_free_ctx:
	kd_err("%s", kd_last_error());
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *kd_tls_config_server_ctx(struct kd_tls_config *cfg, char *err,
				  size_t errlen)
{
	return build_ctx(&cfg->server, err, errlen);
}

SSL_CTX *kd_tls_config_client_ctx(struct kd_tls_config *cfg, char *err,
				  size_t errlen)
{
	return build_ctx(&cfg->client, err, errlen);
}

/* Client connections. */

static bool is_ip_literal(const char *host)
{
	unsigned char addr[16];

	return inet_pton(AF_INET, host, addr) == 1 ||
	       inet_pton(AF_INET6, host, addr) == 1;
}

/*
 * OTP sends the host part of the node name as SNI and, with verify_peer,
 * checks the server certificate against it (not against name@host). An
 * IP address gets no SNI, as RFC 6066 forbids it, and is matched against
 * the certificate's IP SANs.
 */
int kd_tls_client_prepare(SSL *ssl, const char *host, char *err,
			  size_t errlen)
{
	struct opt_src src = { "tls client", err, errlen };
	struct ctx_data *cd;
	const char *name;
	char *copy, reason[128];

	pthread_once(&index_once, index_init);
	cd = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_data_index);
	if (!cd)
		return opt_error(&src, EINVAL, "the SSL object was not made "
				 "from kd_tls_config_client_ctx()");
	copy = strdup(host);
	if (!copy || !SSL_set_ex_data(ssl, host_index, copy)) {
		free(copy);
		return opt_error(&src, ENOMEM, "out of memory");
	}
	name = cd->sni_host ? cd->sni_host : host;

	if (is_ip_literal(name)) {
		if (cd->verify_peer &&
		    !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name))
			return opt_error(&src, EINVAL, "%s: setting the IP "
					 "address check failed: %s", name,
					 ssl_reason(reason, sizeof(reason)));
		return 0;
	}
	if (!cd->sni_disable && !SSL_set_tlsext_host_name(ssl, name))
		return opt_error(&src, EINVAL, "%s: setting SNI failed: %s",
				 name, ssl_reason(reason, sizeof(reason)));
	if (cd->verify_peer) {
		SSL_set_hostflags(ssl, cd->hostflags);
		if (!SSL_set1_host(ssl, name))
			return opt_error(&src, EINVAL, "%s: setting the host "
					 "name check failed: %s", name,
					 ssl_reason(reason, sizeof(reason)));
	}
	return 0;
}
