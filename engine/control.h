/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connected-phase distribution messages: decoding the packets a peer sends
 * (pass-through 'p', the normal distribution header 131 68, and fragments
 * 131 69 / 131 70) and encoding the control messages kdist sends.
 */
#ifndef KD_CONTROL_H
#define KD_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ei.h>

enum kd_dop {
	KD_DOP_LINK = 1,
	KD_DOP_SEND = 2,
	KD_DOP_EXIT = 3,
	KD_DOP_UNLINK = 4,
	KD_DOP_REG_SEND = 6,
	KD_DOP_GROUP_LEADER = 7,
	KD_DOP_EXIT2 = 8,
	KD_DOP_SEND_TT = 12,
	KD_DOP_EXIT_TT = 13,
	KD_DOP_REG_SEND_TT = 16,
	KD_DOP_EXIT2_TT = 18,
	KD_DOP_MONITOR_P = 19,
	KD_DOP_DEMONITOR_P = 20,
	KD_DOP_MONITOR_P_EXIT = 21,
	KD_DOP_SEND_SENDER = 22,
	KD_DOP_SEND_SENDER_TT = 23,
	KD_DOP_PAYLOAD_EXIT = 24,
	KD_DOP_PAYLOAD_EXIT_TT = 25,
	KD_DOP_PAYLOAD_EXIT2 = 26,
	KD_DOP_PAYLOAD_EXIT2_TT = 27,
	KD_DOP_PAYLOAD_MONITOR_P_EXIT = 28,
	KD_DOP_SPAWN_REQUEST = 29,
	KD_DOP_SPAWN_REQUEST_TT = 30,
	KD_DOP_SPAWN_REPLY = 31,
	KD_DOP_SPAWN_REPLY_TT = 32,
	KD_DOP_ALIAS_SEND = 33,
	KD_DOP_ALIAS_SEND_TT = 34,
	KD_DOP_UNLINK_ID = 35,
	KD_DOP_UNLINK_ID_ACK = 36,
	KD_DOP_ALTACT_SIG_SEND = 37,
};

/* ALTACT_SIG_SEND flags (erts dist.h, OTP 28). */
#define KD_ALTACT_FLG_PRIO (1U << 0) /* priority message */
#define KD_ALTACT_FLG_TOKEN (1U << 1) /* a trace token ends the tuple */
#define KD_ALTACT_FLG_ALIAS (1U << 2) /* To is an alias (a ref) */
#define KD_ALTACT_FLG_NAME (1U << 3) /* To is a registered name */
#define KD_ALTACT_FLG_EXIT (1U << 4) /* the payload is an exit reason */

/*
 * A decoded control message. The _TT forms are reported with the base
 * code in @op (the trace token is skipped); @traced says one was present.
 * Pointers point into the packet and live as long as it does. Fields a
 * message does not carry are zero.
 */
struct kd_ctrl {
	int op;
	bool traced;
	bool has_from; /* @from is set; otherwise @from_name, if non-empty */
	erlang_pid from;
	/* MONITOR_P_EXIT and PAYLOAD_MONITOR_P_EXIT when the monitor was
	 * set by name. */
	char from_name[MAXATOMLEN_UTF8];
	bool has_to_pid; /* @to is set; otherwise @to_name, if non-empty */
	erlang_pid to;
	char to_name[MAXATOMLEN_UTF8];
	/* Monitor refs, SPAWN_REQUEST and SPAWN_REPLY ReqId, the alias of
	 * ALIAS_SEND and of ALTACT_SIG_SEND with KD_ALTACT_FLG_ALIAS. */
	bool has_ref;
	erlang_ref ref;
	uint64_t unlink_id;
	/* SPAWN_REPLY Flags or ALTACT_SIG_SEND Flags (KD_ALTACT_FLG_*). */
	uint64_t flags;
	/* SPAWN_REQUEST: the group leader, {Module, Function, Arity} and
	 * the option list (external format without the 131 byte). */
	erlang_pid group_leader;
	char spawn_module[MAXATOMLEN_UTF8];
	char spawn_function[MAXATOMLEN_UTF8];
	long spawn_arity;
	const uint8_t *spawn_opts;
	size_t spawn_opts_len;
	/* SPAWN_REPLY Result, a pid or an error atom, without the 131 byte. */
	const uint8_t *result;
	size_t result_len;
	/* EXIT, EXIT2, MONITOR_P_EXIT: reason inside the control tuple,
	 * external format without the 131 byte. Payload forms put the reason
	 * in @msg instead. */
	const uint8_t *reason;
	size_t reason_len;
	/* The message term, starting with its 131 version byte; NULL when
	 * the control message has none, and also NULL for a packet with the
	 * 131 68 header, where the message has no 131 byte of its own. */
	const uint8_t *msg;
	size_t msg_len;
	/* The message term without the 131 byte; set whenever there is a
	 * message. A caller that needs "131 Term" and finds @msg NULL sends
	 * a one-byte 131 and then @msg_term, for example as two iovecs. */
	const uint8_t *msg_term;
	size_t msg_term_len;
};

/*
 * Walks one external-format term at @buf (its tag, without a 131 byte)
 * and checks every length, arity and tag against the @len bytes there,
 * so that ei_decode_*() and ei_skip_term() on the term cannot read past
 * it. Nesting that is not in tail position is limited to
 * KD_ETF_MAX_DEPTH levels. Rejects atom cache references (kdist never
 * negotiates the atom cache), compressed terms, LOCAL_EXT, and FLOAT_EXT
 * text without a NUL (ei parses it with sscanf()). Returns 0
 * with the term's size in *@term_len, or -EPROTO.
 */
#define KD_ETF_MAX_DEPTH 1024
int kd_etf_validate(const uint8_t *buf, size_t len, size_t *term_len);

/*
 * Decodes one complete, unfragmented packet payload (the length prefix
 * removed, not a tick). Returns 0, or a negative errno with a sentence in
 * @err: -EPROTO for a malformed packet, -EOPNOTSUPP for a control message
 * kdist does not understand (c->op still holds its code), -ENOMSG for a
 * fragment (use kd_frag_input()).
 */
int kd_ctrl_decode(const uint8_t *pkt, size_t len, struct kd_ctrl *c,
		   char *err, size_t errlen);

/*
 * Reassembly of fragmented messages (131 69 first fragment, 131 70
 * continuations), keyed by sequence id, for several senders interleaved.
 * One table per connection, used only by the thread that reads it. After
 * any error the connection is broken and should be closed, although the
 * table stays consistent (the sequence in error is dropped). The buffers
 * of open sequences take at most KD_FRAG_MAX_SEQUENCES times
 * (max_message_bytes + 3) bytes.
 */
#define KD_FRAG_MAX_SEQUENCES 1024
struct kd_frag_table;

/* Returns a table, or NULL when out of memory. @max_message_bytes bounds
 * one reassembled message (control and message terms together). */
struct kd_frag_table *kd_frag_table_new(size_t max_message_bytes);
/* Frees the table and every incomplete sequence; NULL does nothing. */
void kd_frag_table_free(struct kd_frag_table *t);
/*
 * Feeds one packet that starts with 131 69 or 131 70. Returns 1 when a
 * message is complete, with *@out (malloc'ed, caller frees) holding an
 * equivalent unfragmented packet for kd_ctrl_decode(). Returns 0 when
 * more fragments are needed. Otherwise returns a negative errno with a
 * sentence in @err: -EPROTO for an unknown sequence, a FragId out of
 * order, a sequence started twice or atom cache references; -EMSGSIZE
 * for a message over max_message_bytes; -EMLINK beyond
 * KD_FRAG_MAX_SEQUENCES open sequences; -ENOMEM; -EINVAL for a NULL
 * argument.
 */
int kd_frag_input(struct kd_frag_table *t, const uint8_t *pkt, size_t len,
		  uint8_t **out, size_t *out_len, char *err, size_t errlen);
/* Bytes held in incomplete sequences. */
size_t kd_frag_pending_bytes(const struct kd_frag_table *t);

/*
 * Fragmented sending, for peers that negotiated DFLAG_FRAGMENTS. The
 * first fragment carries "131 69 SeqId FragId 0", the whole control term
 * and the start of the message; each continuation carries
 * "131 70 SeqId FragId" and the next slice. FragId counts down to 1.
 * Both terms go without their 131 byte: take an encoder's output from its
 * third byte (after 'p' and 131), and a "131 Term" message from its
 * second.
 *
 * kd_frag_encode_headers() fills one struct kd_frag_hdr per fragment and
 * copies no term bytes. The sender writes, for fragment i, the 4-byte
 * big-endian @payload_len, @bytes, the control term when @with_ctrl,
 * then @msg_len bytes from message + @msg_off: one writev() or one
 * io_uring send of up to four iovecs, straight from the caller's
 * buffers. Fragments of one message go out in order, and nothing else
 * from the same sending process may come between them.
 */
#define KD_FRAG_SIZE (64 * 1024) /* term bytes per fragment, as ERTS uses */
#define KD_FRAG_HDR_MAX 19

struct kd_frag_hdr {
	uint8_t bytes[KD_FRAG_HDR_MAX];
	uint8_t len; /* 19 for the first fragment, 18 for the others */
	bool with_ctrl; /* the first fragment: the control term follows */
	size_t msg_off; /* slice of the message term after the header */
	size_t msg_len;
	size_t payload_len; /* value for the packet's length prefix */
};

/* Number of fragments kd_frag_encode_headers() produces, or 0 for a
 * @msg_len or @frag_size of 0. */
size_t kd_frag_count(size_t ctrl_len, size_t msg_len, size_t frag_size);
/*
 * Fills @frags, which must have exactly kd_frag_count() entries, for a
 * control term of @ctrl_len and a message term of @msg_len bytes cut
 * into slices of at most @frag_size term bytes. The first fragment
 * carries the control term and max(@frag_size - @ctrl_len, 0) message
 * bytes.
 * Returns 0, -EINVAL for a wrong @nfrags or a zero size, or -EMSGSIZE
 * when a fragment would not fit a 32-bit length prefix.
 */
int kd_frag_encode_headers(struct kd_frag_hdr *frags, size_t nfrags,
			   uint64_t seq_id, size_t ctrl_len, size_t msg_len,
			   size_t frag_size);

/*
 * Encoders. Each appends "p 131 Ctrl" (pass-through, no message) to @x;
 * the caller sends the message term, with its own 131, after it. They
 * return 0, -ENOMEM, or -EINVAL for an atom or node name that is not
 * UTF-8 of at most 255 characters. On error @x is left as it was.
 */
int kd_ctrl_encode_send(ei_x_buff *x, const erlang_pid *to);
int kd_ctrl_encode_send_sender(ei_x_buff *x, const erlang_pid *from,
			       const erlang_pid *to);
int kd_ctrl_encode_reg_send(ei_x_buff *x, const erlang_pid *from,
			    const char *to_name);
int kd_ctrl_encode_link(ei_x_buff *x, const erlang_pid *from,
			const erlang_pid *to);
/* EXIT with an atom reason (the non-payload form). */
int kd_ctrl_encode_exit(ei_x_buff *x, const erlang_pid *from,
			const erlang_pid *to, const char *reason_atom);
int kd_ctrl_encode_unlink_id(ei_x_buff *x, uint64_t id,
			     const erlang_pid *from, const erlang_pid *to);
int kd_ctrl_encode_unlink_id_ack(ei_x_buff *x, uint64_t id,
				 const erlang_pid *from,
				 const erlang_pid *to);
/* MONITOR_P_EXIT {21, FromProc, ToPid, Ref, Reason}; @from_name non-NULL
 * when the monitor was set by name. */
int kd_ctrl_encode_monitor_p_exit(ei_x_buff *x, const erlang_pid *from,
				  const char *from_name,
				  const erlang_pid *to, const erlang_ref *ref,
				  const char *reason_atom);
/* SPAWN_REPLY {31, ReqId, To, Flags, Result} with an atom @result. */
int kd_ctrl_encode_spawn_reply_error(ei_x_buff *x, const erlang_ref *req_id,
				     const erlang_pid *to,
				     const char *result_atom);
/* MONITOR_P {19, From, ToProc, Ref}: set @to_pid, or @to_name for a
 * monitor by registered name (needs DFLAG_DIST_MONITOR_NAME). -EINVAL
 * unless exactly one of them is given. */
int kd_ctrl_encode_monitor_p(ei_x_buff *x, const erlang_pid *from,
			     const erlang_pid *to_pid, const char *to_name,
			     const erlang_ref *ref);
/* DEMONITOR_P {20, From, ToProc, Ref}, with ToProc as for MONITOR_P. */
int kd_ctrl_encode_demonitor_p(ei_x_buff *x, const erlang_pid *from,
			       const erlang_pid *to_pid, const char *to_name,
			       const erlang_ref *ref);

#endif
