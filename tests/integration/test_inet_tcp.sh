#!/bin/sh
# Plain inet_tcp distribution: erl -> kdist echo and kdist -> erl ping,
# for each OTP release.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
KD_PROTO=inet_tcp
start_kdist tcp
for otp in $(kd_otps); do
	erl_check "$otp" echo "$KD_NODE" || fail "OTP $otp: $(erl_why echo "$otp")"
	if [ "${KDIST_SELFTEST:-0}" != 1 ]; then
		start_erl "$otp" "erltcp$otp"
		kdist_client ping "$ERL_NODE" ||
			fail "OTP $otp, kdist -> erl: $(cat "$KD_TMP/log/client.out")"
	fi
done
ok
