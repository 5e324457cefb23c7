#!/bin/sh
# Plain inet_tcp distribution: erl -> kdist echo and kdist -> erl ping,
# for each OTP release. An inet_tls erl node then gets pang, and the kdist
# node logs that the peer uses TLS and that every node must use
# -proto_dist inet_tls.
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
if [ "${KDIST_SELFTEST:-0}" != 1 ]; then
	make_certs
	for otp in $(kd_otps); do
		KD_PROTO=inet_tls erl_check "$otp" pang "$KD_NODE" ||
			fail "OTP $otp, inet_tls client: $(erl_why pang "$otp")"
	done
	wait_for "$KD_ERR" "the peer is using TLS" 5 ||
		fail "the kdist log does not say that the peer uses TLS: $(grep 'handshake message' "$KD_ERR" | tail -n 1)"
	grep -q "the peer is using TLS.*every node must use -proto_dist inet_tls" "$KD_ERR" ||
		fail "the kdist log does not name -proto_dist inet_tls: $(grep -m1 'the peer is using TLS' "$KD_ERR")"
	echo "# $(grep -m1 'the peer is using TLS' "$KD_ERR")"
fi
ok
