#!/bin/sh
# A peer that dies 100 bytes into a 1000-byte packet leaves kdist running;
# the log reports the truncated packet and good peers are still served.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_badpeer
start_epmd
make_certs
start_kdist killed
badpeer truncate "$KD_CONF" || fail "the truncating client could not connect"
sleep 1
kill -0 "$KD_PID" || fail "kdist node died after the peer was killed"
wait_for "$KD_ERR" "truncated packet: peer closed 100 bytes into a 1000-byte packet" 5 ||
	fail "no log line reports the truncated packet: $(tail -n 5 "$KD_ERR")"
for otp in $(kd_otps); do
	check_still_serves "$otp"
done
ok
