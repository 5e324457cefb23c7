#!/bin/sh
# 1,000 connections that never finish their handshake: tests/tools/
# holdconns.py opens 500 TCP connections that send nothing and 500 that
# complete TLS 1.3 and then send nothing, and holds them 25 s. Opening
# them takes about 7 s (500 TLS handshakes in a row), so the node runs with
# -handshake_timeout 15000 to have all 1,000 open at once. Expected: while
# they are open, a real erl peer's single net_adm:ping returns pong within
# 7000 ms (the default handshake timeout); the node closes every idle
# connection at its handshake timeout (one log line each); afterwards its
# fd count is back to the baseline.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "fd counts of a kdist node"
need_native_speed "the test needs 500 TLS handshakes within the 15 s timeout"
command -v python3 >/dev/null || skip "python3 is missing"
ulimit -n 4096 2>/dev/null || skip "cannot raise the open file limit to 4096"
start_epmd
make_certs
start_kdist flood -handshake_timeout 15000
baseline=$(kd_fd_count "$KD_PID")
out=$KD_TMP/log/holdconns.out
python3 "$KD_REPO/tests/tools/holdconns.py" localhost "$KD_PORT" 500 500 \
	"$KD_CERTS" 25 >"$out" 2>&1 &
holder=$!
kd_track $holder
wait_for "$out" '^holding' 30 || fail "holdconns did not open 1000 connections: $(tail -n 2 "$out")"
open_fds=$(kd_fd_count "$KD_PID")
[ "$open_fds" -ge $((baseline + 1000)) ] ||
	fail "the node has $open_fds fds with 1000 idle connections, baseline $baseline"
otp=$(kd_otps | awk '{print $NF}')
erl_check "$otp" ping_within "$KD_NODE" 7000 ||
	fail "OTP $otp beside 1000 idle connections: $(erl_why ping_within "$otp")"
echo "# fds: baseline $baseline, with the idle connections $open_fds;" \
	"$(grep 'returned pong' "$KD_TMP/log/erl-ping_within-$otp" | sed 's/^kdist_peer: //')"
wait $holder || fail "holdconns failed: $(tail -n 2 "$out")"
grep -q '^closed by node: 1000 of 1000' "$out" ||
	fail "the node did not close every idle connection within 25 s: $(tail -n 1 "$out")"
timeouts=$(grep -c "handshake timed out" "$KD_ERR")
[ "$timeouts" -ge 1000 ] ||
	fail "expected 1000 handshake timeout log lines, found $timeouts"
tries=50
while [ "$(kd_fd_count "$KD_PID")" -gt "$baseline" ]; do
	tries=$((tries - 1))
	[ $tries -gt 0 ] ||
		fail "fd count is $(kd_fd_count "$KD_PID") 5 s after the end, baseline $baseline"
	sleep 0.1
done
check_still_serves "$otp"
ok
