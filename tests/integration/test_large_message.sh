#!/bin/sh
# A 256 MiB message from erl reaches kdist's sink in fragments while small
# echo round trips keep completing on the same connection.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist large
for otp in $(kd_otps); do
	erl_check "$otp" large "$KD_NODE" 256 ||
		fail "OTP $otp: $(erl_why large "$otp")"
	grep "large 256 MiB" "$KD_TMP/log/erl-large-$otp" 2>/dev/null
done
check_still_serves 25
ok
