#!/bin/sh
# kdist -> erl: `kdist ping` gets pong from an erl node of each OTP
# release, and pang with exit status 1 for a name nobody registered.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the kdist ping command"
start_epmd
make_certs
for otp in $(kd_otps); do
	start_erl "$otp" "target$otp"
	kdist_client ping "$ERL_NODE" ||
		fail "OTP $otp: kdist ping exited $?: $(cat "$KD_TMP/log/client.err")"
	grep -qx pong "$KD_TMP/log/client.out" ||
		fail "OTP $otp: kdist ping printed '$(cat "$KD_TMP/log/client.out")', expected pong"
done
if kdist_client ping "nobody@$KD_HOST"; then
	fail "kdist ping of an unregistered node exited 0"
fi
grep -q '^pang: ' "$KD_TMP/log/client.out" ||
	fail "kdist ping of an unregistered node printed '$(cat "$KD_TMP/log/client.out")'"
ok
