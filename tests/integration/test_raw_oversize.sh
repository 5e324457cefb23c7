#!/bin/sh
# A peer that completes TLS and the distribution handshake and then sends
# a 1 GiB length prefix (over -max_packet) has its
# connection closed, and kdist keeps serving good peers. The same
# hand-written client first proves it can reach echo when it behaves.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist rawoversize
for otp in $(kd_otps); do
	erl_check "$otp" raw good localhost "$KD_PORT" "$KD_NODE" "$KD_COOKIE" "$KD_CONF" ||
		fail "OTP $otp, well-behaved raw client: $(erl_why raw "$otp")"
	erl_check "$otp" raw oversize localhost "$KD_PORT" "$KD_NODE" "$KD_COOKIE" "$KD_CONF" ||
		fail "OTP $otp: $(erl_why raw "$otp")"
	check_still_serves "$otp"
done
ok
