#!/bin/sh
# A plaintext distribution client on the TLS port is dropped: raw bytes of
# an inet_tcp handshake get the connection closed, an inet_tcp erl node
# gets pang, and kdist keeps serving TLS peers.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist plain
result=$(python3 - "$KD_PORT" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
name = b"plain@localhost"
msg = b"N" + struct.pack(">QIH", 0x4D07DF7FBC, 1, len(name)) + name
s.sendall(struct.pack(">H", len(msg)) + msg)
try:
    data = s.recv(4096)
    while data:
        data = s.recv(4096)
    print("closed")
except socket.timeout:
    print("open after 10 s")
except ConnectionResetError:
    print("closed")
PY
)
[ "$result" = closed ] || fail "raw plaintext handshake: connection $result"
for otp in $(kd_otps); do
	KD_PROTO=inet_tcp erl_check "$otp" pang "$KD_NODE" ||
		fail "OTP $otp, inet_tcp client: $(erl_why pang "$otp")"
	check_still_serves "$otp"
done
ok
