#!/bin/sh
# A peer that connects and sends nothing, and one that finishes TLS but
# never starts the distribution handshake, do not hold up a real
# handshake.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist idle
for otp in $(kd_otps); do
	erl_check "$otp" idle localhost "$KD_PORT" "$KD_NODE" "$KD_CONF" ||
		fail "OTP $otp: $(erl_why idle "$otp")"
	check_still_serves "$otp"
done
ok
