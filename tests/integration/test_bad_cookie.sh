#!/bin/sh
# A wrong cookie gets pang in both roles, kdist names the peer in its log,
# no log line of either side shows a cookie, and kdist still serves a
# peer with the right cookie.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "cookie checks of a kdist node"
start_epmd
make_certs
start_kdist cookie
good=$KD_COOKIE
bad=wrongcookie$(kd_rand)x$(kd_rand)
for otp in $(kd_otps); do
	KD_COOKIE=$bad
	erl_check "$otp" pang "$KD_NODE" || fail "OTP $otp: $(erl_why pang "$otp")"
	KD_COOKIE=$good
	start_erl "$otp" "cookie$otp"
	KD_COOKIE=$bad
	kdist_client ping "$ERL_NODE" && fail "OTP $otp: kdist ping with a wrong cookie exited 0"
	grep -q '^pang' "$KD_TMP/log/client.out" ||
		fail "OTP $otp: kdist ping printed '$(cat "$KD_TMP/log/client.out")', expected pang"
	KD_COOKIE=$good
	check_still_serves "$otp"
done
grep -q 'check' "$KD_ERR" || fail "the kdist log does not name the rejected peer"
if grep -l -e "$good" -e "$bad" "$KD_OUT" "$KD_ERR" "$KD_TMP/log/client.out" \
	"$KD_TMP/log/client.err"; then
	fail "a cookie appears in the kdist output above"
fi
ok
