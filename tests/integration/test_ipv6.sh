#!/bin/sh
# inet6_tls over ::1 with long names: erl -> kdist echo and kdist -> erl
# ping, with node names NAME@localhost.
#
# This needs localhost to resolve to ::1. The literal ::1 as host part does
# not do: OTP 25's TLS distribution client sends the host part as SNI and
# checks it against DNS names only, so it rejects a certificate for IP ::1
# (hostname_check_failed), whatever the options file says.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
ip -6 addr show dev lo 2>/dev/null | grep -q 'inet6 ::1' ||
	skip "loopback has no ::1 address"
getent ahostsv6 localhost 2>/dev/null | grep -q '^::1 ' ||
	skip "localhost does not resolve to ::1 here (/etc/hosts maps it to IPv4 only)"
start_epmd
make_certs
KD_PROTO=inet6_tls
KD_NAMEFLAG=-name
KD_HOST=localhost
start_kdist v6@localhost
for otp in $(kd_otps); do
	erl_check "$otp" echo "$KD_NODE" || fail "OTP $otp: $(erl_why echo "$otp")"
	if [ "${KDIST_SELFTEST:-0}" != 1 ]; then
		start_erl "$otp" "erlv6$otp@localhost"
		kdist_client ping "$ERL_NODE" ||
			fail "OTP $otp, kdist -> erl: $(cat "$KD_TMP/log/client.out")"
	fi
done
ok
