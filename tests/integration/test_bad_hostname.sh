#!/bin/sh
# kdist as TLS client rejects a server certificate that does not name the
# host part of the node name; servers do not check client host names, as
# in OTP, so only the client role applies. The error names the expected
# host and the names that the certificate has.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "certificate checks of a kdist node"
start_epmd
make_certs
bad_cert_case wrong-host client
out=$KD_TMP/log/client.out
for text in "hostname mismatch: expected '$KD_HOST'" "DNS:wrong.example" \
	"subject CN=wrong.example"; do
	grep -qF "$text" "$out" || fail "kdist ping does not say '$text': $(cat "$out")"
done
echo "# $(cat "$out")"
ok
