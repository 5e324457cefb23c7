#!/bin/sh
# A peer that dies with SIGKILL in the middle of a fragmented message.
# tests/tools/killpeer frag connects with DFLAG_FRAGMENTS, sends 47 of the
# 48 fragments (131 69, then 131 70) of a 48 MiB message to sink, checks
# that sink has not counted it, waits 3 s and raises SIGKILL on itself.
# Expected: while it waits, kdist's RSS has grown by 40 MB or more (the
# reassembly buffer); after the kill kdist prints nodedown for the peer
# with a reason and logs the connection's end; its RSS falls back to
# within 16 MB of the start (the buffer is freed; the margin is for the
# allocator's caches) and its fd count to the baseline; sink's count is
# what it was while the peer held, so the partial message was never
# delivered; and a good peer and a real erl node still get their echo.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "RSS, fd counts and logs of a kdist node"
KD_KILLPEER=$KD_TOOLS/killpeer
[ -x "$KD_KILLPEER" ] || skip "$KD_KILLPEER not built; run 'make tools'"
start_epmd
make_certs
start_kdist fragkill

baseline=$(kd_fd_count "$KD_PID")
before=$(kd_rss_kb "$KD_PID")
out=$KD_TMP/log/killpeer-frag.out
"$KD_KILLPEER" frag localhost "$KD_PORT" "$KD_NODE" "$KD_COOKIE" "$KD_CONF" \
	48 3 >"$out" 2>>"$KD_TMP/log/killpeer.err" &
frag=$!
kd_track $frag
wait_for "$out" '^holding 47 of 48' 20 ||
	fail "killpeer frag did not send 47 fragments: $(tail -n 2 "$KD_TMP/log/killpeer.err")"
held=$(kd_rss_kb "$KD_PID")
count=$(sed -n 's/.*sink count \([0-9]*\)$/\1/p' "$out")
[ $((held - before)) -ge 40960 ] ||
	fail "kdist RSS grew by $(((held - before) / 1024)) MB with 47 MiB of fragments pending, expected 40 MB or more"

{ wait $frag; } 2>/dev/null
status=$?
[ $status -eq 137 ] || fail "killpeer frag exited $status, expected 137 (SIGKILL)"
grep -q 'SIGKILL at fragment_pending$' "$KD_TMP/log/killpeer.err" ||
	fail "killpeer frag died elsewhere: $(tail -n 2 "$KD_TMP/log/killpeer.err")"
wait_for "$KD_OUT" '^kdist: nodedown killpeer@localhost (.\{4,\})$' 3 ||
	fail "no nodedown line with a reason for killpeer@localhost: $(tail -n 2 "$KD_OUT")"
down=$(grep -m1 '^kdist: nodedown killpeer@localhost' "$KD_OUT")
grep -q 'kdist info: conn killpeer@localhost: down (connection closed by peer' "$KD_ERR" ||
	fail "kdist did not log the end of the connection: $(tail -n 2 "$KD_ERR")"
kill -0 "$KD_PID" 2>/dev/null || fail "kdist exited after the kill"

# Under valgrind freed blocks stay in memcheck's queue: fds only there.
rss_limit=$((before + 16384))
[ "${KDIST_RSS_CHECKS:-1}" = 0 ] && rss_limit=$((1 << 40))
tries=$((30 * KD_SCALE))
while [ "$(kd_rss_kb "$KD_PID")" -gt $rss_limit ] ||
	[ "$(kd_fd_count "$KD_PID")" -gt "$baseline" ]; do
	tries=$((tries - 1))
	[ $tries -gt 0 ] ||
		fail "3 s after the kill kdist has RSS $(kd_rss_kb "$KD_PID") kB (start $before kB) and $(kd_fd_count "$KD_PID") fds (baseline $baseline)"
	sleep 0.1
done
after=$(kd_rss_kb "$KD_PID")

"$KD_KILLPEER" sink-count localhost "$KD_PORT" "$KD_NODE" "$KD_COOKIE" \
	"$KD_CONF" >"$KD_TMP/log/sink-count.out" 2>>"$KD_TMP/log/killpeer.err" ||
	fail "a good peer could not read sink's count: $(tail -n 1 "$KD_TMP/log/killpeer.err")"
grep -q "^sink count $count\$" "$KD_TMP/log/sink-count.out" ||
	fail "sink's count is $(sed 's/^sink count //' "$KD_TMP/log/sink-count.out") after the kill, $count while the peer held: the partial message was delivered"
"$KD_KILLPEER" connect none localhost "$KD_PORT" "$KD_NODE" "$KD_COOKIE" \
	"$KD_CONF" 2>>"$KD_TMP/log/killpeer.err" ||
	fail "a good peer got no echo after the kill"
echo "# RSS $before kB at start, $held kB with 47 MiB pending, $after kB after the kill;" \
	"fds $(kd_fd_count "$KD_PID") of baseline $baseline; sink count $count before and after; $down"
for otp in $(kd_otps); do
	check_still_serves "$otp"
done
ok
