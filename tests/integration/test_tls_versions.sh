#!/bin/sh
# Mutual TLS 1.2 and TLS 1.3 each carry a link in both roles, and the
# kdist connection summary names the negotiated version. Then nodes with
# no common version: an erl node allowing only TLS 1.2 meets a kdist node
# allowing only TLS 1.3, both ways. Expected: pang, and a kdist error that
# names the versions this node allows and the {versions, [...]} fix.
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

need_real_kdist "the kdist log"
KD_CONF=$KD_CERTS/tls13.conf
start_kdist only13
hint="the nodes share no TLS version: this node allows 'tlsv1.3' to 'tlsv1.3', so give both nodes a common version in .versions"
otp=$(kd_otps | awk '{print $1}')
KD_CONF=$KD_CERTS/tls12.conf
erl_check "$otp" pang "$KD_NODE" ||
	fail "TLS 1.2 erl -> TLS 1.3 kdist: $(erl_why pang "$otp")"
wait_for "$KD_ERR" "TLS handshake failed: .*$hint" 5 ||
	fail "TLS 1.2 erl -> TLS 1.3 kdist: no version hint in: $(grep 'TLS handshake failed' "$KD_ERR" | tail -n 1)"
start_erl "$otp" erl12only
KD_CONF=$KD_CERTS/tls13.conf
kdist_client ping "$ERL_NODE" &&
	fail "TLS 1.3 kdist -> TLS 1.2 erl: ping succeeded"
grep -Eq "^pang: .*$hint" "$KD_TMP/log/client.out" ||
	fail "TLS 1.3 kdist -> TLS 1.2 erl: no version hint in: $(cat "$KD_TMP/log/client.out")"
echo "# no common version: $(grep -m1 -o 'TLS handshake failed: .*' "$KD_ERR")"
ok
