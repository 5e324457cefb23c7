#!/bin/sh
# `kdist node` with a TLS protocol and neither -ssl_dist_optfile nor
# -ssl_dist_opt exits non-zero and registers nothing with EPMD. The error
# names both options and -proto_dist inet_tcp. inet_tls is kdist's
# default while erl's is inet_tcp, so -help states the default.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "kdist error messages"
start_epmd

for proto in '' inet_tls inet6_tls; do
	err=$KD_TMP/log/node.err
	# shellcheck disable=SC2086
	timeout 20 "$KDIST" node -sname notls -setcookie "$KD_COOKIE" \
		${proto:+-proto_dist $proto} -epmd_port "$KD_EPMD_PORT" \
		>/dev/null 2>"$err"
	status=$?
	label=${proto:-the default protocol}
	[ $status -ne 0 ] || fail "kdist node with $label and no TLS options started"
	[ $status -ne 124 ] || fail "kdist node with $label and no TLS options still running after 20 s"
	for text in "${proto:-inet_tls} needs TLS options" "-ssl_dist_optfile FILE" \
		"-ssl_dist_opt " "-proto_dist $(echo "${proto:-inet_tls}" | sed 's/tls$/tcp/')"; do
		grep -qF -- "$text" "$err" ||
			fail "with $label the error does not say '$text': $(cat "$err")"
	done
	grep -q cacertfile "$err" && fail "with $label the error is about cacertfile: $(cat "$err")"
	names=$(epmd -port "$KD_EPMD_PORT" -names)
	echo "$names" | grep -q '^name ' && fail "EPMD has a registration: $names"
done
echo "# $(cat "$err")"

"$KDIST" node -help >"$KD_TMP/log/help" || fail "kdist node -help exited non-zero"
grep -q "inet_tls (default; erl's default is inet_tcp)" "$KD_TMP/log/help" ||
	fail "kdist node -help does not state the default protocol: $(grep proto_dist "$KD_TMP/log/help")"
ok
