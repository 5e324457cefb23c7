/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS distribution options, as OTP's inet_tls_dist reads them: the
 * -ssl_dist_optfile term [{server, Opts}, {client, Opts}] and the
 * -ssl_dist_opt server_X V / client_X V pairs, turned into OpenSSL
 * contexts with the same meaning.
 */
#ifndef KD_TLS_CONFIG_H
#define KD_TLS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "kdist.h"

struct kd_tls_config;

struct kd_tls_config *kd_tls_config_new(void);
void kd_tls_config_free(struct kd_tls_config *cfg);

/* Reads an options file. Unknown or unsupported options, and the socket
 * options OTP forbids there, fail with a message naming them. */
int kd_tls_config_load_file(struct kd_tls_config *cfg, const char *path,
			    char *err, size_t errlen);
/* Adds one -ssl_dist_opt pair such as ("server_certfile", "/x.pem"). */
int kd_tls_config_add_opt(struct kd_tls_config *cfg, const char *key,
			  const char *value, char *err, size_t errlen);

/*
 * Builds the OpenSSL context of one role. Both contexts have session
 * tickets off, no read-ahead, TLS 1.2 as the minimum and the versions and
 * ciphers of the options (OTP's default: TLS 1.2 only).
 */
SSL_CTX *kd_tls_config_server_ctx(struct kd_tls_config *cfg, char *err,
				  size_t errlen);
SSL_CTX *kd_tls_config_client_ctx(struct kd_tls_config *cfg, char *err,
				  size_t errlen);

/* Prepares a client connection to @host: SNI, and the host name check
 * when the client verifies the peer. */
int kd_tls_client_prepare(SSL *ssl, const char *host, char *err,
			  size_t errlen);

/*
 * Writes why certificate verification failed on @ssl into @buf, for a
 * @verify_result from SSL_get_verify_result(). The text starts with
 * "certificate verification failed: " and OpenSSL's reason. The values
 * that the verify callback recorded follow: the expected host or IP
 * address and the certificate's names, or its subject and validity
 * dates. The fix comes last.
 */
void kd_tls_verify_error_text(SSL *ssl, long verify_result, char *buf,
			      size_t cap);

/*
 * The sender's rekey limits of one role: key_update_at (TLS 1.3, bytes of
 * plaintext) and renegotiate_at (TLS 1.2, records), OTP's defaults unless
 * the options set them.
 */
int kd_tls_config_rekey_limits(const struct kd_tls_config *cfg, bool server,
			       uint64_t *key_update_at,
			       uint64_t *renegotiate_at);

/* Registry behind kdist_register_verify_fun(). Thread-safe. */
int kd_verify_fun_register(const char *mfa, kdist_verify_fn fn, void *user);

#endif
