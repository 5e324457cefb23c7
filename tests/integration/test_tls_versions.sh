#!/bin/sh
# Mutual TLS 1.2 and TLS 1.3 each carry a link in both roles, and the
# kdist connection summary names the negotiated version.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
for version in tls12 tls13; do
	KD_CONF=$KD_CERTS/$version.conf
	start_kdist "node$version"
	for otp in $(kd_otps); do
		erl_check "$otp" echo "$KD_NODE" ||
			fail "$version, OTP $otp, erl -> kdist: $(erl_why echo "$otp")"
		if [ "${KDIST_SELFTEST:-0}" != 1 ]; then
			start_erl "$otp" "erl$version$otp"
			kdist_client ping "$ERL_NODE" ||
				fail "$version, OTP $otp, kdist -> erl: $(cat "$KD_TMP/log/client.out")"
		fi
	done
	need_real_kdist "the connection summary"
	stop_kdist "$KD_PID" || fail "$version: kdist node exited non-zero on SIGTERM"
	want=TLSv1.3
	[ $version = tls12 ] && want=TLSv1.2
	grep -q "^kdist: conn .*: $want " "$KD_OUT" ||
		fail "$version: no '$want' connection summary in: $(grep '^kdist: conn' "$KD_OUT")"
	grep '^kdist: conn' "$KD_OUT" | grep -v " $want " &&
		fail "$version: a connection used another version"
done
ok
