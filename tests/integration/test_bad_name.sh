#!/bin/sh
# Node names that erl rejects with "Invalid node name!" make `kdist node`
# exit non-zero, with an error that names the value and the rule, and
# nothing registers with EPMD. The rule is net_kernel's valid_name_head:
# the part before '@' matches ^[0-9A-Za-z_-]+$. erl runs on the same names
# to check that the rule is OTP's.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "kdist error messages"
start_epmd

for name in 'bad name' 'a/b' 'a.b'; do
	err=$KD_TMP/log/name.err
	timeout 20 "$KDIST" node -sname "$name" -setcookie "$KD_COOKIE" \
		-proto_dist inet_tcp -epmd_port "$KD_EPMD_PORT" >/dev/null 2>"$err"
	status=$?
	[ $status -ne 0 ] || fail "kdist node -sname '$name' started"
	[ $status -ne 124 ] || fail "kdist node -sname '$name' still running after 20 s"
	grep -qF "'$name'" "$err" || fail "the error does not name '$name': $(cat "$err")"
	grep -qF "letters, digits, '_' and '-'" "$err" ||
		fail "the error does not state the rule: $(cat "$err")"
	names=$(epmd -port "$KD_EPMD_PORT" -names)
	echo "$names" | grep -q '^name ' && fail "EPMD has a registration after '$name': $names"

	log=$KD_TMP/log/erl-name
	timeout 60 erl -noshell -sname "$name" -setcookie "$KD_COOKIE" \
		-eval 'io:format("started~n"), halt().' >"$log" 2>&1
	grep -q '^started' "$log" && fail "erl accepted -sname '$name', so the rule differs from OTP's"
	grep -q 'Invalid node name' "$log" ||
		fail "erl did not report '$name' as an invalid node name: $(head -n 3 "$log")"
done
echo "# $(cat "$KD_TMP/log/name.err")"

# A name that OTP accepts still starts.
KD_PROTO=inet_tcp
start_kdist 'a-b_C9'
[ "$KD_NODE" = "a-b_C9@$KD_HOST" ] || fail "the node is $KD_NODE, expected a-b_C9@$KD_HOST"
ok
