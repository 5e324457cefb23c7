#!/bin/sh
# erl -> kdist: a monitor on {echo, Node} stays quiet; one on a missing
# registered name gets 'DOWN' with noproc at once.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist mon
for otp in $(kd_otps); do
	erl_check "$otp" monitor "$KD_NODE" || fail "OTP $otp: $(erl_why monitor "$otp")"
done
ok
