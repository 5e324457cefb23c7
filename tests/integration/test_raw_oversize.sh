#!/bin/sh
# A length prefix above max_packet closes that connection with a reason
# naming the length and the limit; other connections keep working.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_badpeer
start_epmd
make_certs
start_kdist rawoversize
badpeer oversize "$KD_CONF" || fail "kdist did not close the connection after an oversized prefix"
wait_for "$KD_ERR" "packet length 2147483632 exceeds the limit 67108864" 5 ||
	fail "no log line names the length and the limit: $(tail -n 5 "$KD_ERR")"
for otp in $(kd_otps); do
	check_still_serves "$otp"
done
ok
