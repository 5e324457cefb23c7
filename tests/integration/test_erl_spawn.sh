#!/bin/sh
# erl -> kdist: spawn_request gets an error reply, spawn_monitor a 'DOWN',
# and spawn/4 returns; the connection survives all three.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "erl accepts spawn requests"
start_epmd
make_certs
start_kdist spawn
for otp in $(kd_otps); do
	erl_check "$otp" spawn "$KD_NODE" || fail "OTP $otp: $(erl_why spawn "$otp")"
done
ok
