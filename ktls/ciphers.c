// SPDX-License-Identifier: Apache-2.0
/*
 * The AEAD ciphers kernel TLS can carry for kdist, and the key schedule
 * steps that turn OpenSSL's secrets into the kernel's crypto_info: the TLS 1.3
 * HKDF-Expand-Label (RFC 8446 section 7.1) and the TLS 1.2 PRF key block
 * (RFC 5246 section 6.3). OpenSSL 3.0 cannot hand TLS 1.3 receive keys to
 * the kernel itself, so kdist derives them here.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/obj_mac.h>

#include "ktls.h"

#define KD_INFO_LAYOUT(type)                                          \
	.info_size = sizeof(struct type),                             \
	.iv_offset = offsetof(struct type, iv),                       \
	.key_offset = offsetof(struct type, key),                     \
	.salt_offset = offsetof(struct type, salt),                   \
	.seq_offset = offsetof(struct type, rec_seq)

/* RFC 8446 section 5.5: 2^24.5 full-size records per AES-GCM key. */
#define KD_AES_GCM_MAX_RECORDS 23726566ULL

const struct kd_ktls_cipher kd_ktls_ciphers[] = {
	{
		.name = "AES-128-GCM",
		.nid = NID_aes_128_gcm,
		.kernel_type = TLS_CIPHER_AES_GCM_128,
		.key_size = TLS_CIPHER_AES_GCM_128_KEY_SIZE,
		.salt_size = TLS_CIPHER_AES_GCM_128_SALT_SIZE,
		.iv_size = TLS_CIPHER_AES_GCM_128_IV_SIZE,
		.tls12_fixed_iv = 4,
		.max_records = KD_AES_GCM_MAX_RECORDS,
		KD_INFO_LAYOUT(tls12_crypto_info_aes_gcm_128),
	},
	{
		.name = "AES-256-GCM",
		.nid = NID_aes_256_gcm,
		.kernel_type = TLS_CIPHER_AES_GCM_256,
		.key_size = TLS_CIPHER_AES_GCM_256_KEY_SIZE,
		.salt_size = TLS_CIPHER_AES_GCM_256_SALT_SIZE,
		.iv_size = TLS_CIPHER_AES_GCM_256_IV_SIZE,
		.tls12_fixed_iv = 4,
		.max_records = KD_AES_GCM_MAX_RECORDS,
		KD_INFO_LAYOUT(tls12_crypto_info_aes_gcm_256),
	},
	{
		.name = "ChaCha20-Poly1305",
		.nid = NID_chacha20_poly1305,
		.kernel_type = TLS_CIPHER_CHACHA20_POLY1305,
		.key_size = TLS_CIPHER_CHACHA20_POLY1305_KEY_SIZE,
		.salt_size = TLS_CIPHER_CHACHA20_POLY1305_SALT_SIZE,
		.iv_size = TLS_CIPHER_CHACHA20_POLY1305_IV_SIZE,
		.tls12_fixed_iv = 12,
		/* No usage limit short of the sequence number wrap. */
		.max_records = UINT64_MAX,
		KD_INFO_LAYOUT(tls12_crypto_info_chacha20_poly1305),
	},
};

const size_t kd_ktls_cipher_count =
	sizeof(kd_ktls_ciphers) / sizeof(kd_ktls_ciphers[0]);

const struct kd_ktls_cipher *kd_ktls_cipher_by_nid(int nid)
{
	for (size_t i = 0; i < kd_ktls_cipher_count; i++)
		if (kd_ktls_ciphers[i].nid == nid)
			return &kd_ktls_ciphers[i];
	return NULL;
}

/* Runs the KDF @name with @params into @out; 0 or -EIO. */
static int kd_kdf_derive(const char *name, const OSSL_PARAM *params,
			 uint8_t *out, size_t outlen)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, name, NULL);
	EVP_KDF_CTX *kctx;
	int ret = -EIO;

	if (!kdf)
		return -EIO;
	kctx = EVP_KDF_CTX_new(kdf);
	if (kctx && EVP_KDF_derive(kctx, out, outlen, params) == 1)
		ret = 0;
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return ret;
}

int kd_tls13_expand_label(const EVP_MD *md, const uint8_t *secret,
			  size_t secret_len, const char *label, uint8_t *out,
			  size_t outlen)
{
	static const char prefix[] = "tls13 ";
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM params[7];
	OSSL_PARAM *p = params;

	*p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	*p++ = OSSL_PARAM_construct_utf8_string(
		OSSL_KDF_PARAM_DIGEST, (char *)EVP_MD_get0_name(md), 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
						 (void *)secret, secret_len);
	*p++ = OSSL_PARAM_construct_octet_string(
		OSSL_KDF_PARAM_PREFIX, (void *)prefix, sizeof(prefix) - 1);
	*p++ = OSSL_PARAM_construct_octet_string(
		OSSL_KDF_PARAM_LABEL, (void *)label, strlen(label));
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_DATA, "", 0);
	*p = OSSL_PARAM_construct_end();
	return kd_kdf_derive("TLS13-KDF", params, out, outlen);
}

int kd_tls13_traffic_keys(const EVP_MD *md, const uint8_t *secret,
			  size_t secret_len, uint8_t *key, size_t key_len,
			  uint8_t iv[KD_TLS13_IV_LEN])
{
	int ret;

	ret = kd_tls13_expand_label(md, secret, secret_len, "key", key,
				    key_len);
	if (ret)
		return ret;
	ret = kd_tls13_expand_label(md, secret, secret_len, "iv", iv,
				    KD_TLS13_IV_LEN);
	if (ret)
		OPENSSL_cleanse(key, key_len);
	return ret;
}

int kd_tls13_next_secret(const EVP_MD *md, uint8_t *secret, size_t secret_len)
{
	uint8_t next[EVP_MAX_MD_SIZE];
	int ret;

	if (secret_len > sizeof(next))
		return -EINVAL;
	ret = kd_tls13_expand_label(md, secret, secret_len, "traffic upd",
				    next, secret_len);
	if (!ret)
		memcpy(secret, next, secret_len);
	OPENSSL_cleanse(next, sizeof(next));
	return ret;
}

int kd_tls12_prf(const EVP_MD *md, const uint8_t *secret, size_t secret_len,
		 const char *label, const uint8_t *seed1, size_t seed1_len,
		 const uint8_t *seed2, size_t seed2_len, uint8_t *out,
		 size_t outlen)
{
	OSSL_PARAM params[6];
	OSSL_PARAM *p = params;

	/* TLS1-PRF concatenates repeated seed parameters, label first. */
	*p++ = OSSL_PARAM_construct_utf8_string(
		OSSL_KDF_PARAM_DIGEST, (char *)EVP_MD_get0_name(md), 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET,
						 (void *)secret, secret_len);
	*p++ = OSSL_PARAM_construct_octet_string(
		OSSL_KDF_PARAM_SEED, (void *)label, strlen(label));
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED,
						 (void *)seed1, seed1_len);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED,
						 (void *)seed2, seed2_len);
	*p = OSSL_PARAM_construct_end();
	return kd_kdf_derive("TLS1-PRF", params, out, outlen);
}

static void kd_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = v & 0xff;
		v >>= 8;
	}
}

size_t kd_ktls_fill_info(const struct kd_ktls_cipher *cipher, uint16_t version,
			 const uint8_t *key, const uint8_t *nonce_iv,
			 uint64_t seq, uint8_t info[KD_KTLS_INFO_MAX])
{
	struct tls_crypto_info hdr = {
		.version = version,
		.cipher_type = cipher->kernel_type,
	};

	memset(info, 0, KD_KTLS_INFO_MAX);
	memcpy(info, &hdr, sizeof(hdr));
	memcpy(info + cipher->key_offset, key, cipher->key_size);
	memcpy(info + cipher->salt_offset, nonce_iv, cipher->salt_size);
	kd_put_be64(info + cipher->seq_offset, seq);

	/*
	 * The nonce is salt + iv. TLS 1.3 and TLS 1.2 ChaCha20 derive all of
	 * it; TLS 1.2 AES-GCM sends the 8-byte explicit part in each record,
	 * and the kernel continues it from the record sequence number.
	 */
	if (version == TLS_1_2_VERSION && cipher->salt_size)
		kd_put_be64(info + cipher->iv_offset, seq);
	else
		memcpy(info + cipher->iv_offset, nonce_iv + cipher->salt_size,
		       cipher->iv_size);
	return cipher->info_size;
}
