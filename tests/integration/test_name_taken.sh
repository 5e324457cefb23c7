#!/bin/sh
# A node name already registered with EPMD (by kdist or by erl) makes a
# second `kdist node` exit non-zero with an error naming the name; the
# first node keeps serving.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "kdist error messages"
start_epmd
make_certs
start_kdist taken
first=$KD_NODE
otp=$(kd_otps | awk '{print $1}')
start_erl "$otp" erltaken
for name in taken erltaken; do
	err=$KD_TMP/log/dup-$name.err
	timeout 20 "$KDIST" node -sname "$name" -setcookie "$KD_COOKIE" $(kd_dist_args) \
		-epmd_port "$KD_EPMD_PORT" >/dev/null 2>"$err"
	status=$?
	[ $status -ne 0 ] || fail "a second node named $name started"
	[ $status -ne 124 ] || fail "a second node named $name still running after 20 s"
	grep -q "$name" "$err" || fail "the error does not name $name: $(cat "$err")"
done
KD_NODE=$first
check_still_serves "$otp"
ok
