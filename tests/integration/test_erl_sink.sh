#!/bin/sh
# erl -> kdist: the sink counts every message and payload byte sent to it,
# for small (64 B) and large (64 KiB) messages.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist sink
for otp in $(kd_otps); do
	erl_check "$otp" sink "$KD_NODE" 20000 64 ||
		fail "OTP $otp, 64 B: $(erl_why sink "$otp")"
	grep -h 'kdist_peer: sink [0-9]' "$KD_TMP/log/erl-sink-$otp"
	erl_check "$otp" sink "$KD_NODE" 500 65536 ||
		fail "OTP $otp, 64 KiB: $(erl_why sink "$otp")"
	grep -h 'kdist_peer: sink [0-9]' "$KD_TMP/log/erl-sink-$otp"
done
ok
