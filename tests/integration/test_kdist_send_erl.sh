#!/bin/sh
# kdist -> erl: `kdist send` delivers terms to a registered process of an
# erl node of each OTP release, intact and in order.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the kdist send command"
start_epmd
make_certs
for otp in $(kd_otps); do
	start_erl "$otp" "inbox$otp"
	inbox=$KD_TMP/inbox$otp.inbox
	for term in 'hello' '{tuple, 1, <<"bin">>, [1.5, "str"]}' \
		"#{key => {'ünï', [1, 2, 3]}}" '{last, 18446744073709551616}'; do
		kdist_client send "$ERL_NODE" inbox "$term" ||
			fail "OTP $otp: kdist send $term exited $?: $(cat "$KD_TMP/log/client.err")"
	done
	wait_for "$inbox" '^{last,18446744073709551616}$' 10 ||
		fail "OTP $otp: the last message never reached inbox"
	expected='hello
{tuple,1,<<"bin">>,[1.5,"str"]}
#{key => {ünï,[1,2,3]}}
{last,18446744073709551616}'
	[ "$(cat "$inbox")" = "$expected" ] ||
		fail "OTP $otp: inbox has '$(cat "$inbox")', expected '$expected'"
	if kdist_client send "$ERL_NODE" no_such_name hello; then
		: # a send to a missing name is not an error in Erlang either
	fi
	kdist_client send "$ERL_NODE" inbox 'not a term {' &&
		fail "OTP $otp: kdist send accepted a malformed term"
done
ok
