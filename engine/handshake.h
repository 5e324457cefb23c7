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

/* What OTP 26 to 28 require of a peer. */
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
	KD_HS_RECV_CHALLENGE_REPLY, /* acceptor */
	KD_HS_DONE,
	KD_HS_FAILED,
};

struct kd_hs_params {
	enum kd_hs_role role;
	const char *this_node; /* "name@host" */
	uint32_t creation;
	uint64_t flags; /* what this node advertises */
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
	/* Acceptor, after 'alive': the initiator answered true (the old
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
	/* Peer facts, valid once known. */
	char peer_node[256];
	uint64_t peer_flags;
	uint32_t peer_creation;
	/* Why the handshake failed: a sentence naming the peer and value. */
	char error[256];
	/* Initiator: status text received ("ok", "nok", ...). */
	char status[32];
};

/* Initializes; copies the cookie. Returns -EINVAL for a bad parameter. */
int kd_hs_init(struct kd_hs *hs, const struct kd_hs_params *p);
/* Initiator: queues send_name. */
int kd_hs_start(struct kd_hs *hs);
/*
 * Processes one received handshake message. Returns 0 to continue, 1 when
 * the handshake is complete, or a negative errno with hs->error set:
 * -EACCES for a wrong cookie digest, -ECONNREFUSED for a status that ends
 * the attempt (nok, not_allowed, alive answered false), -EPROTO for a
 * malformed or unexpected message.
 */
int kd_hs_input(struct kd_hs *hs, const uint8_t *msg, size_t len);
/* Takes the queued messages: returns how many, pointers valid until the
 * next kd_hs_* call. */
unsigned kd_hs_take_output(struct kd_hs *hs, const uint8_t **msgs,
			   size_t *lens, unsigned max);
/* Flags used on the connection: ours AND the peer's. */
uint64_t kd_hs_negotiated_flags(const struct kd_hs *hs);
/* Wipes the cookie and digests. Safe to call more than once. */
void kd_hs_wipe(struct kd_hs *hs);

/* MD5(cookie ++ decimal(challenge)), as dist_util:gen_digest/2. */
void kd_hs_digest(const char *cookie, size_t cookie_len, uint32_t challenge,
		  uint8_t digest[16]);

#endif
