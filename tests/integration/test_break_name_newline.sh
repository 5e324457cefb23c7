#!/bin/sh
# A send_name whose node name contains a newline or bytes that are not
# UTF-8 is rejected, and no log line carries the raw bytes. kdist checks
# only for '@', NUL and the length (engine/handshake.c is_valid_node_name),
# replies "sok" and writes the name into its log as is, so the peer can
# forge whole log lines.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the check reads the kdist log"
command -v python3 >/dev/null || skip "python3 not found"
start_epmd
KD_PROTO=inet_tcp
start_kdist namenl

# send_name NAME_AS_PYTHON_BYTES: prints the status the node sends back.
send_name() {
	python3 - "$KD_PORT" "$1" <<'PY'
import socket, struct, sys
port, name = int(sys.argv[1]), eval(sys.argv[2])
# The flags OTP 26 treats as mandatory, and MANDATORY_25_DIGEST.
flags = 0x403070F94 | 0x4000000
body = b"N" + struct.pack(">QIH", flags, 1, len(name)) + name
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(struct.pack(">H", len(body)) + body)
reply = s.recv(64)
print(reply[3:].split(b"\x00")[0].decode("latin-1") if len(reply) > 3 else "closed")
s.close()
PY
}

status=$(send_name 'b"x\nforged log line from evil@h"')
[ "$status" != ok ] ||
	fail "send_name with a newline in the node name got status ok"
status=$(send_name 'b"\xff\xfe@h"')
[ "$status" != ok ] ||
	fail "send_name with a node name that is not UTF-8 got status ok"
sleep 0.5
! grep -q '^forged log line' "$KD_ERR" ||
	fail "a node name from send_name started a new log line: $(grep '^forged' "$KD_ERR")"
ok
