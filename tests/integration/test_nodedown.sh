#!/bin/sh
# When the kdist node stops on SIGTERM, erl gets nodedown at once, and
# kdist prints a summary line for the connection and exits 0.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist down
otp=$(kd_otps | awk '{print $NF}')
watch=$KD_TMP/watch
erl_check "$otp" watch "$KD_NODE" "$watch" 60 &
watcher=$!
wait_for "$watch" '^up' 30 || fail "watcher never connected: $(erl_why watch "$otp")"
stop_kdist "$KD_PID" || fail "kdist node exited with status $? on SIGTERM"
wait_for "$watch" '^down' 5 || fail "no nodedown within 5 s of SIGTERM: $(cat "$watch")"
wait "$watcher" || fail "watcher failed: $(erl_why watch "$otp")"
need_real_kdist "the kdist connection summary"
grep -q '^kdist: conn check.* in=[0-9]* bytes/[0-9]* msgs out=[0-9]* bytes/[0-9]* msgs' \
	"$KD_OUT" || fail "no connection summary for the watcher: $(tail -n 3 "$KD_OUT")"
ok
