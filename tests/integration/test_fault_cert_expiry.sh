#!/bin/sh
# A certificate that expires while a connection is up. The kdist node's
# certificate (both roles), signed by the test CA with `openssl ca`,
# is valid until 20 s after it is made. Expected, as in OTP, where TLS
# checks certificates only during the handshake:
#   - a link set up before the expiry stays up across it and still carries
#     echo messages afterwards;
#   - after the expiry a new erl client rejects the kdist node (pang), and
#     the kdist node logs a line that names the expired certificate;
#   - `kdist ping` with the expired certificate to a good erl node gets
#     pang, and its output names the reason.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the certificate of a kdist node"
start_epmd
make_certs
c=$KD_CERTS
ca=$KD_TMP/ca
mkdir -p "$ca/new"
: >"$ca/index.txt"
openssl rand -hex 8 >"$ca/serial"
cat >"$ca/ca.cnf" <<EOF
[ca]
default_ca = test_ca
[test_ca]
database = $ca/index.txt
new_certs_dir = $ca/new
serial = $ca/serial
default_md = sha256
policy = any_name
unique_subject = no
[any_name]
commonName = supplied
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1,DNS:$KD_HOST
EOF
utc() {
	date -u -d "@$1" +%y%m%d%H%M%SZ
}
now=$(date +%s)
expiry=$((now + 20))
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$c/short.key" -out "$ca/short.csr" -subj /CN=localhost \
	>"$KD_TMP/log/openssl" 2>&1 ||
	fail "openssl req failed: $(tail -n 2 "$KD_TMP/log/openssl")"
openssl ca -batch -config "$ca/ca.cnf" -extensions leaf -notext \
	-cert "$c/ca.pem" -keyfile "$c/ca.key" -in "$ca/short.csr" \
	-out "$c/short.pem" -startdate "$(utc $((now - 3600)))" \
	-enddate "$(utc $expiry)" >>"$KD_TMP/log/openssl" 2>&1 ||
	fail "openssl ca failed: $(tail -n 2 "$KD_TMP/log/openssl")"
echo "# certificate $(openssl x509 -in "$c/short.pem" -noout -enddate)"
write_conf short short short "'tlsv1.3'"

KD_CONF=$c/short.conf
start_kdist expiring
KD_CONF=$c/tls13.conf
otp=$(kd_otps | awk '{print $NF}')
hold=$((expiry - $(date +%s) + 5))
[ $hold -gt 5 ] || fail "the certificate expired before the link was set up"
erl_check "$otp" hold "$KD_NODE" "$hold" ||
	fail "OTP $otp: the link did not survive the certificate expiry: $(erl_why hold "$otp")"
[ "$(date +%s)" -gt $expiry ] || fail "the hold ended before the certificate expired"
echo "# link set up before the expiry carried echo ${hold} s later"

erl_check "$otp" pang "$KD_NODE" ||
	fail "OTP $otp: a new client accepted the expired certificate: $(erl_why pang "$otp")"
wait_for "$KD_ERR" "expired" 5 ||
	fail "no kdist log line names the expired certificate: $(grep -i 'tls\|certificate' "$KD_ERR" | tail -n 3)"
echo "# server log: $(grep -m1 expired "$KD_ERR")"

start_erl "$otp" goodpeer
KD_CONF=$c/short.conf
kdist_client ping "$ERL_NODE" &&
	fail "kdist ping with an expired client certificate got pong"
KD_CONF=$c/tls13.conf
grep -q '^pang' "$KD_TMP/log/client.out" ||
	fail "kdist ping printed '$(cat "$KD_TMP/log/client.out")', expected pang"
grep -qi 'expired' "$KD_TMP/log/client.out" "$KD_TMP/log/client.err" ||
	fail "kdist ping does not name the expired certificate: $(cat "$KD_TMP/log/client.out")"
echo "# client: $(cat "$KD_TMP/log/client.out")"
ok
