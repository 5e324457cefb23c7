#!/bin/sh
# A peer that connects and sends nothing, and one that finishes TLS but
# never starts the distribution handshake, do not hold up a real
# handshake.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
# NOTE: the hand-written client's ssl:connect, run inside a node that uses
# TLS distribution, hangs past its own timeout against kdist and erl alike,
# so this check cannot tell a kdist fault yet. KDIST_RAW_CLIENT=1 runs it.
[ "${KDIST_RAW_CLIENT:-0}" = 1 ] ||
	skip "hand-written TLS client hangs in ssl:connect (harness fault); set KDIST_RAW_CLIENT=1 to run"
start_epmd
make_certs
start_kdist idle
for otp in $(kd_otps); do
	erl_check "$otp" idle localhost "$KD_PORT" "$KD_NODE" "$KD_CONF" ||
		fail "OTP $otp: $(erl_why idle "$otp")"
	check_still_serves "$otp"
done
ok
