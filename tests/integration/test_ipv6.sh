#!/bin/sh
# inet6_tls over ::1 with long names: erl -> kdist echo and kdist -> erl
# ping.
#
# Where localhost resolves to ::1, nodes are NAME@localhost and both sides
# verify each other as in the TLS tests. Otherwise nodes are NAME@::1:
# kdist checks the peer certificate's IP address ::1, but OTP 25's client
# checks the host part against DNS names only and rejects a certificate
# for IP ::1 (hostname_check_failed), so erl's client options there use
# verify_none while its server still demands kdist's certificate.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
ip -6 addr show dev lo 2>/dev/null | grep -q 'inet6 ::1' ||
	skip "loopback has no ::1 address"
start_epmd
make_certs
KD_PROTO=inet6_tls
KD_NAMEFLAG=-name
kdist_conf=$KD_CONF
erl_conf=$KD_CONF
if getent ahostsv6 localhost 2>/dev/null | grep -q '^::1 '; then
	KD_HOST=localhost
else
	KD_HOST=::1
	erl_conf=$KD_CERTS/ipv6-erl.conf
	c=$KD_CERTS
	cat >"$erl_conf" <<CONF
[{server, [{certfile, "$c/server.pem"}, {keyfile, "$c/server.key"},
	   {cacertfile, "$c/ca.pem"}, {versions, ['tlsv1.3']},
	   {verify, verify_peer}, {fail_if_no_peer_cert, true}]},
 {client, [{certfile, "$c/client.pem"}, {keyfile, "$c/client.key"},
	   {cacertfile, "$c/ca.pem"}, {versions, ['tlsv1.3']},
	   {verify, verify_none}]}].
CONF
fi
start_kdist "v6@$KD_HOST"
grep -q "inet6_tls" "$KD_OUT" || fail "kdist did not report inet6_tls: $(cat "$KD_OUT")"
for otp in $(kd_otps); do
	KD_CONF=$erl_conf
	erl_check "$otp" echo "$KD_NODE" || fail "OTP $otp: $(erl_why echo "$otp")"
	if [ "${KDIST_SELFTEST:-0}" != 1 ]; then
		start_erl "$otp" "erlv6$otp@$KD_HOST"
		KD_CONF=$kdist_conf
		kdist_client ping "$ERL_NODE" ||
			fail "OTP $otp, kdist -> erl: $(cat "$KD_TMP/log/client.out")"
	fi
done
grep -q "up as acceptor" "$KD_ERR" || fail "no connection was accepted over IPv6"
ok
