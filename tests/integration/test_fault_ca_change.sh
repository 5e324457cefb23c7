#!/bin/sh
# A CA file changed on disk while the node runs. kdist reads its options
# file and the files it names once, at start-up (as OTP builds its TLS
# contexts when the distribution starts). The kdist node trusts a copy of
# the test CA; the test overwrites that copy with the untrusted rogue CA.
# Expected:
#   - the running node keeps the CA it loaded: a new erl client whose
#     certificate the old CA signed still gets pong, and an established
#     link is not touched;
#   - after a restart the node loads the new file and rejects that same
#     client with a log line. The node lists the new CA in its
#     CertificateRequest, so the OTP client finds no matching certificate
#     and sends none, and kdist logs "peer did not return a certificate"
#     (a client that sends its certificate anyway gets a verify error).
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the CA file of a kdist node"
start_epmd
make_certs
c=$KD_CERTS
cp "$c/ca.pem" "$c/node-ca.pem"
sed "s|$c/ca.pem|$c/node-ca.pem|g" "$c/tls13.conf" >"$c/node.conf"
grep -q node-ca.pem "$c/node.conf" || fail "cannot write the node's options file"

KD_CONF=$c/node.conf
start_kdist cachange_old
KD_CONF=$c/tls13.conf
otp=$(kd_otps | awk '{print $NF}')
erl_check "$otp" hold "$KD_NODE" 6 >/dev/null &
holder=$!
sleep 3
cp "$c/rogue-ca.pem" "$c/node-ca.pem"
erl_check "$otp" ping_within "$KD_NODE" 7000 ||
	fail "OTP $otp: the running node stopped trusting the old CA after the file changed: $(erl_why ping_within "$otp")"
wait $holder || fail "OTP $otp: the established link broke when the CA file changed: $(erl_why hold "$otp")"
echo "# CA file replaced: the running node still accepts clients of the old CA"

stop_kdist "$KD_PID" || fail "kdist exited with status $? on SIGTERM"
KD_CONF=$c/node.conf
start_kdist cachange_new
KD_CONF=$c/tls13.conf
erl_check "$otp" pang "$KD_NODE" ||
	fail "OTP $otp: after a restart the node still trusts the old CA: $(erl_why pang "$otp")"
wait_for "$KD_ERR" "certificate verif\\|unknown ca\\|did not return a certificate" 5 ||
	fail "no log line names the rejected client certificate: $(grep -i 'tls' "$KD_ERR" | tail -n 3)"
echo "# after restart: $(grep -m1 "certificate verif\\|unknown ca\\|did not return a certificate" "$KD_ERR")"
ok
