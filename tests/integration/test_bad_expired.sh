#!/bin/sh
# An expired certificate is rejected in both roles, and kdist keeps
# serving good peers. The error of each role names the certificate's
# subject and its notAfter date.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "certificate checks of a kdist node"
start_epmd
make_certs
bad_cert_case expired "server client"
not_after=$(openssl x509 -in "$KD_CERTS/expired.pem" -noout -enddate -dateopt iso_8601 |
	sed 's/^notAfter=//')
[ -n "$not_after" ] || fail "openssl x509 printed no notAfter for expired.pem"
for log in "$KD_TMP/log/client.out" "$KD_ERR"; do
	line=$(grep -m1 'certificate has expired' "$log")
	[ -n "$line" ] || fail "no 'certificate has expired' line in $(basename "$log"): $(tail -n 3 "$log")"
	for text in "subject CN=localhost" "notAfter $not_after" "renew it" \
		"certificate verify failed"; do
		echo "$line" | grep -qF "$text" ||
			fail "$(basename "$log") does not say '$text': $line"
	done
	echo "# $line"
done
ok
