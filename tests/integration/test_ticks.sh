#!/bin/sh
# Ticks with net_ticktime 4: an idle link stays up for 20 s, and erl
# declares a SIGSTOPped kdist node down within the tick window (4 s, plus
# a second of slack per side).
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
KD_ERL_FLAGS="-kernel net_ticktime 4"
start_kdist ticks -kernel net_ticktime 4
for otp in $(kd_otps); do
	watch=$KD_TMP/idle-$otp
	erl_check "$otp" watch "$KD_NODE" "$watch" 20 ||
		fail "OTP $otp: $(erl_why watch "$otp")"
	grep -qx 'still-up 1' "$watch" ||
		fail "OTP $otp: idle link did not stay up 20 s: $(cat "$watch")"
done
need_real_kdist "SIGSTOP of the kdist node"
otp=$(kd_otps | awk '{print $NF}')
watch=$KD_TMP/stopped
erl_check "$otp" watch "$KD_NODE" "$watch" 60 &
watcher=$!
wait_for "$watch" '^up' 30 || fail "watcher never connected: $(erl_why watch "$otp")"
sleep 2
kill -STOP "$KD_PID"
wait_for "$watch" '^down' 10 ||
	fail "erl did not declare the stopped node down within 10 s: $(cat "$watch")"
kill -CONT "$KD_PID"
wait "$watcher" || fail "watcher failed: $(erl_why watch "$otp")"
echo "# $(grep '^down' "$watch")"
ok
