#!/bin/sh
# Peers that connect and send nothing, and peers that finish TLS but never
# start the distribution handshake, do not hold up a real handshake; kdist
# drops each one at its handshake timeout.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_badpeer
start_epmd
make_certs
start_kdist idle -handshake_timeout 3000
for i in 1 2 3 4 5 6 7 8 9 10; do
	badpeer silent - 8 &
	kd_track $!
	badpeer tls-silent "$KD_CONF" 8 &
	kd_track $!
done
sleep 0.5
for otp in $(kd_otps); do
	erl_check "$otp" echo "$KD_NODE" ||
		fail "OTP $otp could not connect beside 20 idle peers: $(erl_why echo "$otp")"
done
sleep 4
timeouts=$(grep -c "handshake timed out" "$KD_ERR")
[ "$timeouts" -ge 20 ] ||
	fail "expected 20 handshake timeouts in the log, found $timeouts"
check_still_serves 25
ok
