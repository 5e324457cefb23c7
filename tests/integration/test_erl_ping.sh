#!/bin/sh
# erl -> kdist: net_adm:ping gets pong over TLS 1.3 with mutual TLS, and
# nodes() lists the kdist node, for each OTP release.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist ping
for otp in $(kd_otps); do
	erl_check "$otp" nodes "$KD_NODE" || fail "OTP $otp: $(erl_why nodes "$otp")"
done
ok
