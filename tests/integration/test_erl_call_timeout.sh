#!/bin/sh
# erl -> kdist: gen_server:call to echo times out after its timeout, leaves
# no monitor, and a call to a missing name fails with noproc.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist call
for otp in $(kd_otps); do
	erl_check "$otp" call_timeout "$KD_NODE" ||
		fail "OTP $otp: $(erl_why call_timeout "$otp")"
done
ok
