/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The distribution handshake, version 6, in both roles, as a state machine
 * with no I/O: the caller feeds it each received handshake message (the
 * length prefix already removed) and sends what it queues.
 *
 * Initiator:  send_name 'N' -> recv_status 's' -> [send 'alive' answer]
 *             -> recv_challenge 'N' -> send_challenge_reply 'r'
 *             -> recv_challenge_ack 'a'
 * Acceptor:   recv_name 'N' -> send_status 's' -> [recv 'alive' answer]
 *             -> send_challenge 'N' -> recv_challenge_reply 'r'
 *             -> send_challenge_ack 'a'
 *
 * Like OTP 25.3 and later, the acceptor also takes the old send_name 'n'
 * (Version:16 Flags:32 Name), followed after its challenge by the
 * complement 'c' (FlagsHigh:32 Creation:32). The initiator always sends 'N'.
 * Layouts follow lib/kernel/src/dist_util.erl (OTP 25 to 28) and the
 * "Distribution Handshake" section of erts/doc erl_dist_protocol.md.
 *
 * Dynamic node names (DFLAG_NAME_ME, status "named:") are not supported:
 * kd_hs_init() returns -EOPNOTSUPP for them, and an acceptor answers a
 * peer that requests one with "not_allowed".
 *
 * Simultaneous connect: when an incoming name arrives for a node that this
 * node is itself connecting to, OTP's net_kernel (accept_pending) compares
 * the two node names as atoms, that is byte by byte as unsigned chars:
 *   - this node's name greater: it answers "nok" to the incoming attempt
 *     and keeps its own outgoing one;
 *   - otherwise: it ends its own outgoing attempt and answers
 *     "ok_simultaneous" to the incoming one.
 * When the peer is already connected, net_kernel answers "alive", and the
 * initiator replies "true" if it still means to connect; the acceptor then
 * finishes the handshake and waits for the old connection to go before it
 * sends challenge_ack. check_peer() makes these choices here;
 * kd_hs_simultaneous_status() implements the name comparison.
 */
#ifndef KD_HANDSHAKE_H
#define KD_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Distribution flags (erts dist.h). */
#define DFLAG_PUBLISHED 0x1ULL
#define DFLAG_ATOM_CACHE 0x2ULL
#define DFLAG_EXTENDED_REFERENCES 0x4ULL
#define DFLAG_DIST_MONITOR 0x8ULL
#define DFLAG_FUN_TAGS 0x10ULL
#define DFLAG_DIST_MONITOR_NAME 0x20ULL
#define DFLAG_HIDDEN_ATOM_CACHE 0x40ULL
#define DFLAG_NEW_FUN_TAGS 0x80ULL
#define DFLAG_EXTENDED_PIDS_PORTS 0x100ULL
#define DFLAG_EXPORT_PTR_TAG 0x200ULL
#define DFLAG_BIT_BINARIES 0x400ULL
#define DFLAG_NEW_FLOATS 0x800ULL
#define DFLAG_UNICODE_IO 0x1000ULL
#define DFLAG_DIST_HDR_ATOM_CACHE 0x2000ULL
#define DFLAG_SMALL_ATOM_TAGS 0x4000ULL
#define DFLAG_UTF8_ATOMS 0x10000ULL
#define DFLAG_MAP_TAG 0x20000ULL
#define DFLAG_BIG_CREATION 0x40000ULL
#define DFLAG_SEND_SENDER 0x80000ULL
#define DFLAG_BIG_SEQTRACE_LABELS 0x100000ULL
#define DFLAG_EXIT_PAYLOAD 0x400000ULL
#define DFLAG_FRAGMENTS 0x800000ULL
#define DFLAG_HANDSHAKE_23 0x1000000ULL
#define DFLAG_UNLINK_ID 0x2000000ULL
#define DFLAG_MANDATORY_25_DIGEST 0x4000000ULL
#define DFLAG_SPAWN (1ULL << 32)
#define DFLAG_NAME_ME (1ULL << 33)
#define DFLAG_V4_NC (1ULL << 34)
#define DFLAG_ALIAS (1ULL << 35)

/* Flags OTP 25 requires of a peer (dist.hrl MANDATORY_DFLAGS_25). A peer
 * may send DFLAG_MANDATORY_25_DIGEST as shorthand for all of them. */
#define KD_DFLAGS_MANDATORY_25 0x1070F94ULL
/* Flags OTP 26 to 28 require of a peer: the OTP 25 set, UNLINK_ID, V4_NC. */
#define KD_DFLAGS_MANDATORY 0x403070F94ULL

enum kd_hs_role { KD_HS_INITIATOR, KD_HS_ACCEPTOR };

/* The acceptor's verdict on an incoming name, sent as the status. */
enum kd_hs_status {
	KD_HS_STATUS_OK,
	KD_HS_STATUS_OK_SIMULTANEOUS,
	KD_HS_STATUS_NOK,
	KD_HS_STATUS_NOT_ALLOWED,
	KD_HS_STATUS_ALIVE,
};

enum kd_hs_state {
	KD_HS_SEND_NAME,	  /* initiator, before kd_hs_start() */
	KD_HS_RECV_STATUS,	  /* initiator */
	KD_HS_RECV_CHALLENGE,	  /* initiator */
	KD_HS_RECV_CHALLENGE_ACK, /* initiator */
	KD_HS_RECV_NAME,	  /* acceptor */
	KD_HS_RECV_ALIVE_ANSWER,  /* acceptor, after sending 'alive' */
	KD_HS_RECV_COMPLEMENT,	  /* acceptor, after an old 'n' name */
	KD_HS_RECV_CHALLENGE_REPLY, /* acceptor */
	KD_HS_DONE,
	KD_HS_FAILED,
};

struct kd_hs_params {
	enum kd_hs_role role;
	const char *this_node; /* "name@host" */
	uint32_t creation;
	/* Flags this node advertises. They must contain KD_DFLAGS_MANDATORY,
	 * with DFLAG_MANDATORY_25_DIGEST allowed in place of the OTP 25 part. */
	uint64_t flags;
	/* Never logged; the state machine wipes its own copy when done. */
	const char *cookie;
	/* Initiator: the node it means to reach. Checked against the name in
	 * the challenge. */
	const char *peer_node;
	/*
	 * Acceptor: decides the status for an incoming @peer (ok,
	 * ok_simultaneous, nok, not_allowed or alive). NULL means always ok.
	 */
	enum kd_hs_status (*check_peer)(void *user, const char *peer,
					uint64_t peer_flags);
	/* Acceptor, after 'alive': the initiator replied true (the old
	 * connection must go) or false. */
	void (*alive_answer)(void *user, const char *peer, bool keep_new);
	void *user;
};

#define KD_HS_MAX_OUT 512

struct kd_hs {
	struct kd_hs_params p;
	enum kd_hs_state state;
	char cookie[256];
	size_t cookie_len;
	uint32_t our_challenge;
	/* Outgoing messages (without length prefix), drained by the caller. */
	uint8_t out[2][KD_HS_MAX_OUT];
	size_t out_len[2];
	unsigned out_count;
	/* Messages already taken: wiped and dropped at the next kd_hs_* call. */
	unsigned out_taken;
	/* Acceptor: the peer sent the old 'n', so 'c' must follow. */
	bool peer_sent_old_name;
	/* Copy of p.this_node; p.cookie is cleared after it is copied. */
	char this_node[256];
	/* Peer facts, valid once received (the initiator has the name from
	 * the start). peer_flags has DFLAG_MANDATORY_25_DIGEST expanded. */
	char peer_node[256];
	uint64_t peer_flags;
	uint32_t peer_creation;
	/* Why the handshake failed: a sentence naming the peer and value. */
	char error[512];
	/* Initiator: status text received ("ok", "nok", ...). */
	char status[32];
};

/*
 * Initializes; copies the cookie. Returns -EINVAL for a bad parameter
 * (a node name that is not "name@host" of at most 255 bytes, a missing or
 * too long cookie, or flags without KD_DFLAGS_MANDATORY) and -EOPNOTSUPP
 * for DFLAG_NAME_ME, with the reason in hs->error.
 */
int kd_hs_init(struct kd_hs *hs, const struct kd_hs_params *p);
/* Initiator: queues send_name. */
int kd_hs_start(struct kd_hs *hs);
/*
 * Processes one received handshake message. Returns 0 to continue, 1 when
 * the handshake is complete, or a negative errno with hs->error set:
 * -EACCES for a wrong cookie digest, -ECONNREFUSED for a status that ends
 * the attempt (nok, not_allowed, "false" in reply to alive),
 * -EPROTONOSUPPORT when the peer lacks a flag of KD_DFLAGS_MANDATORY (the
 * acceptor queues "not_allowed" first), -EOPNOTSUPP for a dynamic name
 * request, -EPROTO for a malformed or unexpected message. Output queued
 * before a failure (a status) should still be sent. On 1 and on failure
 * the cookie is wiped; call kd_hs_wipe() after sending the last output.
 */
int kd_hs_input(struct kd_hs *hs, const uint8_t *msg, size_t len);
/* Takes the queued messages: returns how many, pointers valid until the
 * next kd_hs_* call. */
unsigned kd_hs_take_output(struct kd_hs *hs, const uint8_t **msgs,
			   size_t *lens, unsigned max);
/* The handshake message the state machine waits for, as the protocol
 * names it ("send_name", "status", "challenge_reply", ...), or NULL when
 * it waits for none: before kd_hs_start(), when done and when failed. */
const char *kd_hs_expected(const struct kd_hs *hs);
/* Flags used on the connection: ours AND the peer's. */
uint64_t kd_hs_negotiated_flags(const struct kd_hs *hs);
/* Wipes the cookie, the challenge and the queued output, which contains
 * digests. Safe to call more than once. */
void kd_hs_wipe(struct kd_hs *hs);

/*
 * The status OTP's net_kernel gives an incoming attempt from @peer_node
 * while this node's own attempt to @peer_node is pending: NOK when
 * @this_node compares greater (this node keeps its own attempt), else
 * OK_SIMULTANEOUS (the caller ends its own attempt).
 */
enum kd_hs_status kd_hs_simultaneous_status(const char *this_node,
					    const char *peer_node);

/*
 * Writes the error for a handshake message whose @hdr-byte length prefix
 * @plen exceeds @max bytes into @buf. @head contains the first @len bytes
 * of that message, prefix included. @tls_proto is "inet_tls" or
 * "inet6_tls" on a plain-TCP node and NULL on a TLS node. On a plain-TCP
 * node the bytes 0x16 0x03 begin a TLS record (handshake content type,
 * protocol major version 3), so the error reports that the peer uses TLS.
 */
void kd_hs_oversize_text(const uint8_t *head, size_t len, unsigned hdr,
			 uint32_t plen, uint32_t max, const char *tls_proto,
			 char *buf, size_t cap);

/* MD5(cookie ++ decimal(challenge)), as dist_util:gen_digest/2. */
void kd_hs_digest(const char *cookie, size_t cookie_len, uint32_t challenge,
		  uint8_t digest[16]);

#endif
