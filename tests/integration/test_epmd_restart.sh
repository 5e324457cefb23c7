#!/bin/sh
# EPMD stopped and started again: the kdist node logs the lost
# registration, registers again, and erl finds it through the new EPMD.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist again -kernel net_ticktime 8
# start_epmd tracked the test's epmd first.
epmd_pid=$(head -n 1 "$KD_TMP/pids")
[ -n "$epmd_pid" ] || fail "cannot find the test's epmd process"
kill "$epmd_pid"
sleep 1
epmd -port "$KD_EPMD_PORT" >"$KD_TMP/log/epmd2" 2>&1 &
kd_track $!
tries=100
until "$KDIST" names -epmd_port "$KD_EPMD_PORT" 2>/dev/null | grep -q "name again "; do
	tries=$((tries - 1))
	[ $tries -gt 0 ] || fail "kdist did not register again within 10 s: $(grep epmd "$KD_ERR" | tail -n 3)"
	sleep 0.1
done
wait_for "$KD_ERR" "registration connection closed" 5 ||
	fail "no log line reports the lost registration"
for otp in $(kd_otps); do
	check_still_serves "$otp"
done
ok
