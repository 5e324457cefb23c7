// SPDX-License-Identifier: Apache-2.0
/*
 * The distribution handshake, version 6, as lib/kernel/src/dist_util.erl
 * runs it in OTP 25 to 28. Each received message has one recv_* function
 * and each sent message one send_* function, named after the protocol step.
 * All integers on the wire are big-endian.
 */
#include "handshake.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "error.h"
#include "log.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define MAX_NAME_LEN 255
#define MAX_COOKIE_LEN 255
#define DIGEST_LEN 16

/* Fixed parts of each message, tag included. */
#define NAME_NEW_FIXED_LEN 15	/* 'N' Flags:64 Creation:32 NLen:16 */
#define NAME_OLD_FIXED_LEN 7	/* 'n' Version:16 Flags:32 */
#define CHALLENGE_FIXED_LEN 19	/* 'N' Flags:64 Challenge:32 Creation:32 NLen:16 */
#define COMPLEMENT_LEN 9	/* 'c' FlagsHigh:32 Creation:32 */
#define CHALLENGE_REPLY_LEN 21	/* 'r' Challenge:32 Digest:16 */
#define CHALLENGE_ACK_LEN 17	/* 'a' Digest:16 */

#define WRONG_COOKIE_TEXT                                                     \
	"wrong cookie (the peer's digest did not match; set the same "        \
	"-setcookie on both nodes)"

/*
 * What each status means on either side. The acceptor sends it; the
 * initiator reads it. A nonzero err ends the handshake.
 */
static const struct status_desc {
	const char *text;
	int err;
	const char *sent_reason; /* acceptor, after sending it */
	const char *recv_reason; /* initiator, after receiving it */
} statuses[] = {
	[KD_HS_STATUS_OK] = { "ok", 0, NULL, NULL },
	[KD_HS_STATUS_OK_SIMULTANEOUS] = { "ok_simultaneous", 0, NULL, NULL },
	[KD_HS_STATUS_NOK] = {
		"nok", ECONNREFUSED,
		"sent status nok: this node keeps its own connection attempt to the peer",
		"the peer answered nok: it is connecting to this node at the same time and keeps its own attempt",
	},
	[KD_HS_STATUS_NOT_ALLOWED] = {
		"not_allowed", ECONNREFUSED,
		"sent status not_allowed: the peer is not allowed to connect",
		"the peer answered not_allowed: it does not accept this node (check its allowed-node list and the distribution flags it requires)",
	},
	[KD_HS_STATUS_ALIVE] = { "alive", 0, NULL, NULL },
};

/* Names of the mandatory flags, for error messages (dist_util dflag2str). */
static const struct flag_name {
	uint64_t flag;
	const char *name;
} flag_names[] = {
	{ DFLAG_EXTENDED_REFERENCES, "EXTENDED_REFERENCES" },
	{ DFLAG_FUN_TAGS, "FUN_TAGS" },
	{ DFLAG_NEW_FUN_TAGS, "NEW_FUN_TAGS" },
	{ DFLAG_EXTENDED_PIDS_PORTS, "EXTENDED_PIDS_PORTS" },
	{ DFLAG_EXPORT_PTR_TAG, "EXPORT_PTR_TAG" },
	{ DFLAG_BIT_BINARIES, "BIT_BINARIES" },
	{ DFLAG_NEW_FLOATS, "NEW_FLOATS" },
	{ DFLAG_UTF8_ATOMS, "UTF8_ATOMS" },
	{ DFLAG_MAP_TAG, "MAP_TAG" },
	{ DFLAG_BIG_CREATION, "BIG_CREATION" },
	{ DFLAG_HANDSHAKE_23, "HANDSHAKE_23" },
	{ DFLAG_UNLINK_ID, "UNLINK_ID" },
	{ DFLAG_V4_NC, "V4_NC" },
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, v >> 32);
	put32(p + 4, v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* From OTP 25 the single DFLAG_MANDATORY_25_DIGEST is shorthand for every flag
 * of the OTP 25 mandatory set (dist_util expand_mandatory_25_flag). */
static uint64_t expand_flags(uint64_t flags)
{
	if (flags & DFLAG_MANDATORY_25_DIGEST)
		flags |= KD_DFLAGS_MANDATORY_25;
	return flags;
}

/* Copies peer text for an error message: printable ASCII only, cut to fit. */
static void quote_text(char *dst, size_t size, const uint8_t *src, size_t len)
{
	size_t i;

	for (i = 0; i < len && i + 1 < size; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
	dst[i] = '\0';
}

static void describe_flags(char *dst, size_t size, uint64_t flags)
{
	size_t used = 0;
	size_t i;
	int n;

	dst[0] = '\0';
	for (i = 0; i < ARRAY_SIZE(flag_names); i++) {
		if (!(flags & flag_names[i].flag))
			continue;
		n = snprintf(dst + used, size - used, "%s%s", used ? " " : "",
			     flag_names[i].name);
		if (n < 0 || (size_t)n >= size - used)
			return;
		used += n;
	}
}

/* "name@host": one '@' with text on both sides, no NUL, at most 255 bytes,
 * as dist_util is_node_name. */
/* True for well-formed UTF-8 without control characters, so a name can
 * go into log lines and atoms as it is. */
static bool is_printable_utf8(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t b = s[i];
		size_t n = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2
				    : (b & 0xf0) == 0xe0 ? 3
				    : (b & 0xf8) == 0xf0 ? 4 : 0;

		if (n == 0 || i + n > len || (n == 1 && (b < 0x20 || b == 0x7f)))
			return false;
		if (n == 2 && b < 0xc2)
			return false; /* overlong */
		for (size_t k = 1; k < n; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		i += n;
	}
	return true;
}

static bool is_valid_node_name(const uint8_t *name, size_t len)
{
	const uint8_t *at;

	if (len == 0 || len > MAX_NAME_LEN || !is_printable_utf8(name, len))
		return false;
	at = memchr(name, '@', len);
	if (!at || at == name || at == name + len - 1)
		return false;
	return !memchr(at + 1, '@', len - (at + 1 - name));
}

static const char *peer_label(const struct kd_hs *hs)
{
	return hs->peer_node[0] ? hs->peer_node : "an unnamed peer";
}

/* Wipes what an attacker could use to reply to a challenge: the cookie and
 * our challenge. Queued output stays until the caller has sent it. */
static void wipe_secrets(struct kd_hs *hs)
{
	OPENSSL_cleanse(hs->cookie, sizeof(hs->cookie));
	hs->cookie_len = 0;
	OPENSSL_cleanse(&hs->our_challenge, sizeof(hs->our_challenge));
}

/* Ends the handshake: stores and logs "handshake with <peer>: <reason>". */
static int __attribute__((format(printf, 3, 4)))
hs_fail(struct kd_hs *hs, int err, const char *fmt, ...)
{
	char reason[224];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);

	snprintf(hs->error, sizeof(hs->error), "handshake with %s: %s",
		 peer_label(hs), reason);
	hs->state = KD_HS_FAILED;
	wipe_secrets(hs);
	/* The caller logs the failure once, with the connection's address. */
	return kd_fail(err, "%s", hs->error);
}

static int queue_msg(struct kd_hs *hs, const uint8_t *msg, size_t len)
{
	if (hs->out_count == ARRAY_SIZE(hs->out) || len > KD_HS_MAX_OUT)
		return hs_fail(hs, ENOBUFS,
			       "output queue full (%u messages not taken)",
			       hs->out_count);
	memcpy(hs->out[hs->out_count], msg, len);
	hs->out_len[hs->out_count] = len;
	hs->out_count++;
	return 0;
}

/* Wipes and drops the messages the caller took at its previous call. */
static void drop_taken_output(struct kd_hs *hs)
{
	unsigned i;

	if (!hs->out_taken)
		return;
	for (i = 0; i < hs->out_taken; i++)
		OPENSSL_cleanse(hs->out[i], sizeof(hs->out[i]));
	for (i = hs->out_taken; i < hs->out_count; i++) {
		memcpy(hs->out[i - hs->out_taken], hs->out[i], hs->out_len[i]);
		hs->out_len[i - hs->out_taken] = hs->out_len[i];
		OPENSSL_cleanse(hs->out[i], sizeof(hs->out[i]));
	}
	hs->out_count -= hs->out_taken;
	hs->out_taken = 0;
}

/* MD5(Cookie ++ decimal unsigned Challenge), as dist_util gen_digest/2. */
static int gen_digest(const char *cookie, size_t cookie_len,
		      uint32_t challenge, uint8_t digest[DIGEST_LEN])
{
	char text[16];
	EVP_MD_CTX *ctx;
	int len, ok;

	len = snprintf(text, sizeof(text), "%" PRIu32, challenge);
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;

	ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) &&
	     EVP_DigestUpdate(ctx, cookie, cookie_len) &&
	     EVP_DigestUpdate(ctx, text, len) &&
	     EVP_DigestFinal_ex(ctx, digest, NULL);
	EVP_MD_CTX_free(ctx);
	OPENSSL_cleanse(text, sizeof(text));
	return ok ? 0 : -EIO;
}

void kd_hs_oversize_text(const uint8_t *head, size_t len, unsigned hdr,
			 uint32_t plen, uint32_t max, const char *tls_proto,
			 char *buf, size_t cap)
{
	if (tls_proto && len >= 2 && head[0] == 0x16 && head[1] == 0x03)
		snprintf(buf, cap,
			 "handshake message length %u exceeds %u bytes: the "
			 "peer is using TLS (its first bytes 0x16 0x03 are a "
			 "TLS record header); every node must use -proto_dist "
			 "%s",
			 plen, max, tls_proto);
	else
		snprintf(buf, cap,
			 "handshake message length %u exceeds %u bytes; is "
			 "the peer speaking the distribution protocol with "
			 "%u-byte lengths?",
			 plen, max, hdr);
}

void kd_hs_digest(const char *cookie, size_t cookie_len, uint32_t challenge,
		  uint8_t digest[16])
{
	if (gen_digest(cookie, cookie_len, challenge, digest) < 0) {
		/* An all-zero digest matches no peer's, so the handshake fails. */
		memset(digest, 0, DIGEST_LEN);
		kd_err("handshake: MD5 digest failed: OpenSSL has no MD5 (FIPS-only provider?)");
	}
}

static int hs_digest(struct kd_hs *hs, uint32_t challenge,
		     uint8_t digest[DIGEST_LEN])
{
	int ret = gen_digest(hs->cookie, hs->cookie_len, challenge, digest);

	if (ret < 0)
		return hs_fail(hs, -ret, "MD5 digest failed: OpenSSL has no MD5 (FIPS-only provider?)");
	return 0;
}

static int gen_challenge(struct kd_hs *hs)
{
	uint8_t raw[4];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return hs_fail(hs, EIO, "RAND_bytes failed to make a challenge");
	hs->our_challenge = get32(raw);
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

/*
 * Checks the peer's flags against KD_DFLAGS_MANDATORY. Only the low 32 bits
 * are checked while an old 'n' name awaits its complement, as OTP 25.3+
 * check_dflags does. The acceptor queues "not_allowed" first.
 */
static int check_dflags(struct kd_hs *hs, uint64_t peer_flags, uint64_t mask)
{
	uint64_t negotiated = expand_flags(hs->p.flags) & peer_flags;
	uint64_t missing = KD_DFLAGS_MANDATORY & mask & ~negotiated;
	static const uint8_t not_allowed[] = "snot_allowed";
	char names[160];
	int ret;

	if (!missing)
		return 0;

	if (hs->p.role == KD_HS_ACCEPTOR) {
		ret = queue_msg(hs, not_allowed, sizeof(not_allowed) - 1);
		if (ret < 0)
			return ret;
	}
	describe_flags(names, sizeof(names), missing);
	return hs_fail(hs, EPROTONOSUPPORT,
		       "the peer lacks mandatory distribution flags 0x%" PRIx64
		       " (%s); kdist requires 0x%llx, which OTP 25 and later offer by default",
		       missing, names, KD_DFLAGS_MANDATORY);
}

/* ---- Initiator ---- */

/* send_name: 'N' Flags:64 Creation:32 NLen:16 Name */
static int send_name(struct kd_hs *hs)
{
	uint8_t msg[NAME_NEW_FIXED_LEN + MAX_NAME_LEN];
	size_t nlen = strlen(hs->this_node);

	msg[0] = 'N';
	put64(msg + 1, hs->p.flags);
	put32(msg + 9, hs->p.creation);
	put16(msg + 13, nlen);
	memcpy(msg + NAME_NEW_FIXED_LEN, hs->this_node, nlen);
	return queue_msg(hs, msg, NAME_NEW_FIXED_LEN + nlen);
}

/* The initiator's reply to "alive": "true", because it still means to
 * connect (dist_util recv_status sends is_pending/2, which is true for
 * the process that owns the attempt). */
static int send_alive_reply(struct kd_hs *hs)
{
	static const uint8_t reply[] = "strue";

	return queue_msg(hs, reply, sizeof(reply) - 1);
}

static int recv_status(struct kd_hs *hs, const uint8_t *msg, size_t len)
{
	const uint8_t *text = msg + 1;
	size_t tlen = len - 1;
	char quoted[32];
	unsigned i;

	quote_text(hs->status, sizeof(hs->status), text, tlen);
	if (tlen >= 6 && !memcmp(text, "named:", 6))
		return hs_fail(hs, EPROTO,
			       "the peer sent status named:, which answers a dynamic-name request this node did not make");

	for (i = 0; i < ARRAY_SIZE(statuses); i++) {
		if (strlen(statuses[i].text) == tlen &&
		    !memcmp(statuses[i].text, text, tlen))
			break;
	}
	if (i == ARRAY_SIZE(statuses)) {
		quote_text(quoted, sizeof(quoted), text, tlen);
		return hs_fail(hs, EPROTO, "unknown status '%s' (%zu bytes)",
			       quoted, tlen);
	}
	if (statuses[i].err)
		return hs_fail(hs, statuses[i].err, "%s",
			       statuses[i].recv_reason);

	hs->state = KD_HS_RECV_CHALLENGE;
	if (i == KD_HS_STATUS_ALIVE)
		return send_alive_reply(hs);
	return 0;
}

/* send_challenge_reply: 'r' Challenge:32 Digest:16 */
static int send_challenge_reply(struct kd_hs *hs, uint32_t peer_challenge)
{
	uint8_t msg[CHALLENGE_REPLY_LEN];
	int ret;

	ret = gen_challenge(hs);
	if (ret < 0)
		return ret;
	msg[0] = 'r';
	put32(msg + 1, hs->our_challenge);
	ret = hs_digest(hs, peer_challenge, msg + 5);
	if (ret < 0)
		goto out_wipe;

	ret = queue_msg(hs, msg, sizeof(msg));
out_wipe:
	OPENSSL_cleanse(msg, sizeof(msg));
	return ret;
}

/* challenge: 'N' Flags:64 Challenge:32 Creation:32 NLen:16 Name; bytes
 * after the name are ignored, as dist_util does. */
static int recv_challenge(struct kd_hs *hs, const uint8_t *msg, size_t len)
{
	char quoted[64];
	uint32_t challenge;
	uint64_t flags;
	size_t nlen;
	int ret;

	if (len < CHALLENGE_FIXED_LEN)
		return hs_fail(hs, EPROTO,
			       "challenge too short (%zu bytes, at least %d expected)",
			       len, CHALLENGE_FIXED_LEN);
	nlen = get16(msg + 17);
	if (nlen > len - CHALLENGE_FIXED_LEN)
		return hs_fail(hs, EPROTO,
			       "challenge names a %zu-byte node but carries %zu bytes",
			       nlen, len - CHALLENGE_FIXED_LEN);
	if (nlen != strlen(hs->peer_node) ||
	    memcmp(msg + CHALLENGE_FIXED_LEN, hs->peer_node, nlen)) {
		quote_text(quoted, sizeof(quoted), msg + CHALLENGE_FIXED_LEN, nlen);
		return hs_fail(hs, EPROTO,
			       "the challenge comes from node '%s'; check the host and port used to reach the peer",
			       quoted);
	}

	flags = expand_flags(get64(msg + 1));
	challenge = get32(msg + 9);
	ret = check_dflags(hs, flags, ~0ULL);
	if (ret < 0)
		return ret;
	hs->peer_flags = flags;
	hs->peer_creation = get32(msg + 13);

	ret = send_challenge_reply(hs, challenge);
	if (ret < 0)
		return ret;
	hs->state = KD_HS_RECV_CHALLENGE_ACK;
	return 0;
}

/* challenge_ack: 'a' Digest:16 */
static int recv_challenge_ack(struct kd_hs *hs, const uint8_t *msg,
			      size_t len)
{
	uint8_t expected[DIGEST_LEN];
	int ret;

	if (len != CHALLENGE_ACK_LEN)
		return hs_fail(hs, EPROTO,
			       "challenge_ack has %zu bytes, %d expected", len,
			       CHALLENGE_ACK_LEN);
	ret = hs_digest(hs, hs->our_challenge, expected);
	if (ret < 0)
		goto out_wipe;

	if (CRYPTO_memcmp(expected, msg + 1, DIGEST_LEN)) {
		ret = hs_fail(hs, EACCES, WRONG_COOKIE_TEXT);
		goto out_wipe;
	}
	ret = 1;
out_wipe:
	OPENSSL_cleanse(expected, sizeof(expected));
	return ret;
}

/* ---- Acceptor ---- */

static int send_status(struct kd_hs *hs, enum kd_hs_status status)
{
	uint8_t msg[1 + 16];
	size_t tlen = strlen(statuses[status].text);

	msg[0] = 's';
	memcpy(msg + 1, statuses[status].text, tlen);
	return queue_msg(hs, msg, 1 + tlen);
}

/* challenge: 'N' Flags:64 Challenge:32 Creation:32 NLen:16 Name */
static int send_challenge(struct kd_hs *hs)
{
	uint8_t msg[CHALLENGE_FIXED_LEN + MAX_NAME_LEN];
	size_t nlen = strlen(hs->this_node);
	int ret;

	ret = gen_challenge(hs);
	if (ret < 0)
		return ret;

	msg[0] = 'N';
	put64(msg + 1, hs->p.flags);
	put32(msg + 9, hs->our_challenge);
	put32(msg + 13, hs->p.creation);
	put16(msg + 17, nlen);
	memcpy(msg + CHALLENGE_FIXED_LEN, hs->this_node, nlen);
	ret = queue_msg(hs, msg, CHALLENGE_FIXED_LEN + nlen);
	if (ret < 0)
		return ret;

	hs->state = hs->peer_sent_old_name ? KD_HS_RECV_COMPLEMENT
					   : KD_HS_RECV_CHALLENGE_REPLY;
	return 0;
}

/* Sends the status check_peer() chose, then the challenge unless the
 * status ends the handshake or is "alive", which waits for the reply. */
static int accept_name(struct kd_hs *hs)
{
	enum kd_hs_status status = KD_HS_STATUS_OK;
	int ret;

	if (hs->p.check_peer)
		status = hs->p.check_peer(hs->p.user, hs->peer_node,
					  hs->peer_flags);
	if ((unsigned)status >= ARRAY_SIZE(statuses))
		return hs_fail(hs, EINVAL, "check_peer returned %d, not a status",
			       (int)status);

	ret = send_status(hs, status);
	if (ret < 0)
		return ret;
	if (statuses[status].err)
		return hs_fail(hs, statuses[status].err, "%s",
			       statuses[status].sent_reason);
	if (status == KD_HS_STATUS_ALIVE) {
		hs->state = KD_HS_RECV_ALIVE_ANSWER;
		return 0;
	}
	return send_challenge(hs);
}

/* A peer without a node name requests one, and kdist cannot assign names. */
static int reject_dynamic_name(struct kd_hs *hs, const uint8_t *host,
			       size_t len)
{
	static const uint8_t not_allowed[] = "snot_allowed";
	char quoted[64];
	int ret;

	ret = queue_msg(hs, not_allowed, sizeof(not_allowed) - 1);
	if (ret < 0)
		return ret;
	quote_text(quoted, sizeof(quoted), host, len);
	return hs_fail(hs, EOPNOTSUPP,
		       "the peer on host '%s' requests a dynamic node name (DFLAG_NAME_ME), which kdist does not support; start it with -name or -sname",
		       quoted);
}

static int take_peer_name(struct kd_hs *hs, const uint8_t *name, size_t len)
{
	char quoted[64];

	if (!is_valid_node_name(name, len)) {
		quote_text(quoted, sizeof(quoted), name, len);
		return hs_fail(hs, EPROTO,
			       "invalid node name '%s' (%zu bytes) in send_name; expected name@host of at most %d bytes",
			       quoted, len, MAX_NAME_LEN);
	}
	memcpy(hs->peer_node, name, len);
	hs->peer_node[len] = '\0';
	return 0;
}

/* send_name: 'N' Flags:64 Creation:32 NLen:16 Name; bytes after the name
 * are ignored, as dist_util recv_name_new does. */
static int recv_name_new(struct kd_hs *hs, const uint8_t *msg, size_t len)
{
	uint64_t flags;
	size_t nlen;
	int ret;

	if (len < NAME_NEW_FIXED_LEN)
		return hs_fail(hs, EPROTO,
			       "send_name too short (%zu bytes, at least %d expected)",
			       len, NAME_NEW_FIXED_LEN);
	nlen = get16(msg + 13);
	if (nlen > len - NAME_NEW_FIXED_LEN)
		return hs_fail(hs, EPROTO,
			       "send_name names a %zu-byte node but carries %zu bytes",
			       nlen, len - NAME_NEW_FIXED_LEN);

	flags = get64(msg + 1);
	if (flags & DFLAG_NAME_ME)
		return reject_dynamic_name(hs, msg + NAME_NEW_FIXED_LEN, nlen);
	ret = take_peer_name(hs, msg + NAME_NEW_FIXED_LEN, nlen);
	if (ret < 0)
		return ret;

	hs->peer_flags = expand_flags(flags);
	hs->peer_creation = get32(msg + 9);
	ret = check_dflags(hs, hs->peer_flags, ~0ULL);
	if (ret < 0)
		return ret;
	return accept_name(hs);
}

/*
 * Old send_name: 'n' Version:16 Flags:32 Name. OTP 23 and 24 send it when
 * they reach a node without EPMD. Like OTP 25.3+, take it, ignore the
 * version (always 5) and wait for the complement after the challenge.
 */
static int recv_name_old(struct kd_hs *hs, const uint8_t *msg, size_t len)
{
	int ret;

	if (len < NAME_OLD_FIXED_LEN)
		return hs_fail(hs, EPROTO,
			       "old send_name too short (%zu bytes, at least %d expected)",
			       len, NAME_OLD_FIXED_LEN);
	ret = take_peer_name(hs, msg + NAME_OLD_FIXED_LEN,
			     len - NAME_OLD_FIXED_LEN);
	if (ret < 0)
		return ret;

	hs->peer_sent_old_name = true;
	hs->peer_flags = expand_flags(get32(msg + 3));
	ret = check_dflags(hs, hs->peer_flags, UINT32_MAX);
	if (ret < 0)
		return ret;
	return accept_name(hs);
}

static int recv_name(struct kd_hs *hs, const uint8_t *msg, size_t len)
{
	if (msg[0] == 'n')
		return recv_name_old(hs, msg, len);
	return recv_name_new(hs, msg, len);
}

/* The initiator's reply to "alive": 's' "true" or "false". */
static int recv_alive_reply(struct kd_hs *hs, const uint8_t *msg, size_t len)
{
	char quoted[32];
	bool keep_new;

	if (len == 5 && !memcmp(msg + 1, "true", 4)) {
		keep_new = true;
	} else if (len == 6 && !memcmp(msg + 1, "false", 5)) {
		keep_new = false;
	} else {
		quote_text(quoted, sizeof(quoted), msg + 1, len - 1);
		return hs_fail(hs, EPROTO,
			       "answer to status alive is '%s', not true or false",
			       quoted);
	}

	if (hs->p.alive_answer)
		hs->p.alive_answer(hs->p.user, hs->peer_node, keep_new);
	if (!keep_new)
		return hs_fail(hs, ECONNREFUSED,
			       "the peer answered false to status alive: it no longer means to connect");
	return send_challenge(hs);
}

/* complement: 'c' FlagsHigh:32 Creation:32, after an old 'n' name. */
static int recv_complement(struct kd_hs *hs, const uint8_t *msg, size_t len)
{
	int ret;

	if (len != COMPLEMENT_LEN)
		return hs_fail(hs, EPROTO,
			       "complement has %zu bytes, %d expected", len,
			       COMPLEMENT_LEN);

	hs->peer_flags |= (uint64_t)get32(msg + 1) << 32;
	hs->peer_creation = get32(msg + 5);
	ret = check_dflags(hs, hs->peer_flags, ~0ULL);
	if (ret < 0)
		return ret;
	hs->state = KD_HS_RECV_CHALLENGE_REPLY;
	return 0;
}

/* challenge_ack: 'a' Digest:16 */
static int send_challenge_ack(struct kd_hs *hs, uint32_t peer_challenge)
{
	uint8_t msg[CHALLENGE_ACK_LEN];
	int ret;

	msg[0] = 'a';
	ret = hs_digest(hs, peer_challenge, msg + 1);
	if (ret < 0)
		goto out_wipe;
	ret = queue_msg(hs, msg, sizeof(msg));
out_wipe:
	OPENSSL_cleanse(msg, sizeof(msg));
	return ret;
}

/* challenge_reply: 'r' Challenge:32 Digest:16 */
static int recv_challenge_reply(struct kd_hs *hs, const uint8_t *msg,
				size_t len)
{
	uint8_t expected[DIGEST_LEN];
	int ret;

	if (len != CHALLENGE_REPLY_LEN)
		return hs_fail(hs, EPROTO,
			       "challenge_reply has %zu bytes, %d expected", len,
			       CHALLENGE_REPLY_LEN);
	ret = hs_digest(hs, hs->our_challenge, expected);
	if (ret < 0)
		goto out_wipe;

	if (CRYPTO_memcmp(expected, msg + 5, DIGEST_LEN)) {
		ret = hs_fail(hs, EACCES, WRONG_COOKIE_TEXT);
		goto out_wipe;
	}
	ret = send_challenge_ack(hs, get32(msg + 1));
	if (ret == 0)
		ret = 1;
out_wipe:
	OPENSSL_cleanse(expected, sizeof(expected));
	return ret;
}

/* ---- Dispatch ---- */

/* The message each waiting state takes: its tags and its parser. */
static const struct recv_step {
	const char *tags;
	const char *name;
	int (*recv)(struct kd_hs *hs, const uint8_t *msg, size_t len);
} recv_steps[] = {
	[KD_HS_RECV_STATUS] = { "s", "status", recv_status },
	[KD_HS_RECV_CHALLENGE] = { "N", "challenge", recv_challenge },
	[KD_HS_RECV_CHALLENGE_ACK] = { "a", "challenge_ack", recv_challenge_ack },
	[KD_HS_RECV_NAME] = { "Nn", "send_name", recv_name },
	[KD_HS_RECV_ALIVE_ANSWER] = { "s", "answer to status alive", recv_alive_reply },
	[KD_HS_RECV_COMPLEMENT] = { "c", "complement", recv_complement },
	[KD_HS_RECV_CHALLENGE_REPLY] = { "r", "challenge_reply", recv_challenge_reply },
};

int kd_hs_input(struct kd_hs *hs, const uint8_t *msg, size_t len)
{
	const struct recv_step *step;
	int ret;

	drop_taken_output(hs);
	if (hs->state == KD_HS_FAILED || hs->state == KD_HS_SEND_NAME)
		return -EINVAL;
	if (hs->state == KD_HS_DONE)
		return hs_fail(hs, EPROTO,
			       "received a %zu-byte message after the handshake completed",
			       len);

	step = &recv_steps[hs->state];
	if (len == 0)
		return hs_fail(hs, EPROTO, "received an empty message, expected %s",
			       step->name);
	if (!memchr(step->tags, msg[0], strlen(step->tags)))
		return hs_fail(hs, EPROTO,
			       "received a message of type 0x%02x, expected %s ('%c')",
			       msg[0], step->name, step->tags[0]);

	ret = step->recv(hs, msg, len);
	if (ret == 1) {
		hs->state = KD_HS_DONE;
		wipe_secrets(hs);
		kd_debug("handshake with %s: done, flags 0x%" PRIx64,
			 hs->peer_node, kd_hs_negotiated_flags(hs));
	}
	return ret;
}

/* ---- Set-up and accessors ---- */

static int check_params(struct kd_hs *hs, const struct kd_hs_params *p)
{
	const char *this_node = p->this_node ? p->this_node : "";
	const char *peer = p->peer_node ? p->peer_node : "";
	size_t cookie_len = p->cookie ? strlen(p->cookie) : 0;

	if (p->role != KD_HS_INITIATOR && p->role != KD_HS_ACCEPTOR)
		return hs_fail(hs, EINVAL, "invalid role %d", (int)p->role);
	if (!is_valid_node_name((const uint8_t *)this_node, strlen(this_node)))
		return hs_fail(hs, EINVAL,
			       "invalid node name '%s' for this node; expected name@host of at most %d bytes",
			       this_node, MAX_NAME_LEN);
	if (p->role == KD_HS_INITIATOR &&
	    !is_valid_node_name((const uint8_t *)peer, strlen(peer)))
		return hs_fail(hs, EINVAL,
			       "invalid peer node name '%s'; expected name@host of at most %d bytes",
			       peer, MAX_NAME_LEN);
	if (cookie_len == 0 || cookie_len > MAX_COOKIE_LEN)
		return hs_fail(hs, EINVAL,
			       "the cookie is %zu bytes; set one of 1 to %d bytes, the same on every node",
			       cookie_len, MAX_COOKIE_LEN);
	if (p->flags & DFLAG_NAME_ME)
		return hs_fail(hs, EOPNOTSUPP,
			       "DFLAG_NAME_ME (dynamic node name) is not supported; give this node a name");
	if ((expand_flags(p->flags) & KD_DFLAGS_MANDATORY) != KD_DFLAGS_MANDATORY)
		return hs_fail(hs, EINVAL,
			       "this node's flags 0x%" PRIx64 " lack mandatory flags 0x%llx",
			       p->flags,
			       KD_DFLAGS_MANDATORY & ~expand_flags(p->flags));
	return 0;
}

int kd_hs_init(struct kd_hs *hs, const struct kd_hs_params *p)
{
	int ret;

	if (!hs || !p)
		return kd_fail(EINVAL, "handshake: no state or parameters given");

	memset(hs, 0, sizeof(*hs));
	ret = check_params(hs, p);
	if (ret < 0)
		return ret;

	hs->p = *p;
	hs->p.cookie = NULL;
	hs->cookie_len = strlen(p->cookie);
	memcpy(hs->cookie, p->cookie, hs->cookie_len);
	strcpy(hs->this_node, p->this_node);
	if (p->role == KD_HS_INITIATOR) {
		strcpy(hs->peer_node, p->peer_node);
		hs->state = KD_HS_SEND_NAME;
	} else {
		hs->state = KD_HS_RECV_NAME;
	}
	return 0;
}

int kd_hs_start(struct kd_hs *hs)
{
	int ret;

	if (hs->p.role != KD_HS_INITIATOR || hs->state != KD_HS_SEND_NAME)
		return kd_fail(EINVAL,
			       "handshake: kd_hs_start is for an initiator that has not started");

	drop_taken_output(hs);
	ret = send_name(hs);
	if (ret < 0)
		return ret;
	hs->state = KD_HS_RECV_STATUS;
	return 0;
}

unsigned kd_hs_take_output(struct kd_hs *hs, const uint8_t **msgs,
			   size_t *lens, unsigned max)
{
	unsigned i;

	drop_taken_output(hs);
	for (i = 0; i < hs->out_count && i < max; i++) {
		msgs[i] = hs->out[i];
		lens[i] = hs->out_len[i];
	}
	hs->out_taken = i;
	return i;
}

const char *kd_hs_expected(const struct kd_hs *hs)
{
	size_t n = sizeof(recv_steps) / sizeof(recv_steps[0]);

	if ((size_t)hs->state >= n)
		return NULL;
	return recv_steps[hs->state].name;
}

uint64_t kd_hs_negotiated_flags(const struct kd_hs *hs)
{
	return expand_flags(hs->p.flags) & hs->peer_flags;
}

void kd_hs_wipe(struct kd_hs *hs)
{
	wipe_secrets(hs);
	OPENSSL_cleanse(hs->out, sizeof(hs->out));
	memset(hs->out_len, 0, sizeof(hs->out_len));
	hs->out_count = 0;
	hs->out_taken = 0;
}

enum kd_hs_status kd_hs_simultaneous_status(const char *this_node,
					    const char *peer_node)
{
	/* net_kernel: "MyNode > Node" keeps this node's own attempt. Atoms
	 * compare by their UTF-8 bytes, as strcmp does. */
	if (strcmp(this_node, peer_node) > 0)
		return KD_HS_STATUS_NOK;
	return KD_HS_STATUS_OK_SIMULTANEOUS;
}
