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

/*
 * A decoded control message. The _TT forms are reported with the base
 * code in @op (the trace token is skipped); @traced says one was present.
 * Pointers point into the packet and live as long as it does.
 */
struct kd_ctrl {
	int op;
	bool traced;
	bool has_from; /* @from is set */
	erlang_pid from;
	bool has_to_pid; /* @to is set; otherwise @to_name */
	erlang_pid to;
	char to_name[MAXATOMLEN_UTF8];
	bool has_ref;
	erlang_ref ref; /* monitors, SPAWN_REQUEST ReqId */
	uint64_t unlink_id;
	/* EXIT, EXIT2, MONITOR_P_EXIT: reason inside the control tuple,
	 * external format without the 131 byte. Payload forms put the reason
	 * in @msg instead. */
	const uint8_t *reason;
	size_t reason_len;
	/* The message term, starting with its 131 version byte; NULL when
	 * the control message has none. */
	const uint8_t *msg;
	size_t msg_len;
};

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
 */
struct kd_frag_table;

struct kd_frag_table *kd_frag_table_new(size_t max_message_bytes);
void kd_frag_table_free(struct kd_frag_table *t);
/*
 * Feeds one packet that starts with 131 69 or 131 70. Returns 1 when a
 * message is complete, with *@out (malloc'ed, caller frees) holding an
 * equivalent unfragmented packet for kd_ctrl_decode(); 0 when more
 * fragments are needed; a negative errno with @err for a fragment that
 * does not fit a sequence or exceeds the size limit.
 */
int kd_frag_input(struct kd_frag_table *t, const uint8_t *pkt, size_t len,
		  uint8_t **out, size_t *out_len, char *err, size_t errlen);
/* Bytes held in incomplete sequences. */
size_t kd_frag_pending_bytes(const struct kd_frag_table *t);

/*
 * Encoders. Each appends "p 131 Ctrl" (pass-through, no message) to @x;
 * the caller sends the message term, with its own 131, after it. They
 * return 0 or -ENOMEM.
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

#endif
