#!/bin/sh
# A peer that stops reading: tests/tools/seqpeer, a kdist node on
# include/kdist.h with -send_queue 1 MiB, sends 64 KiB binaries to the
# sink of an erl node that the test SIGSTOPs. Expected: the sends return
# -EAGAIN once the socket buffers and the 1 MiB queue are full, and the
# writable callback does not fire while the peer is stopped (6 s).
# seqpeer's VmRSS stays within 32 MiB of its value before the flood and
# does not grow while blocked. After SIGCONT the callback fires, the
# rest of the 512 MiB go through and the sink counts every message.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "seqpeer is a kdist node"
SEQPEER=$KD_TOOLS/seqpeer
[ -x "$SEQPEER" ] || skip "$SEQPEER not built; run 'make tools'"
start_epmd
make_certs
otp=$(kd_otps | awk '{print $NF}')
start_erl "$otp" stalled
out=$KD_TMP/log/seqpeer.out
"$SEQPEER" flood stall_k "$KD_COOKIE" "$KD_CONF" "$KD_EPMD_PORT" \
	"$ERL_NODE" 65536 8192 1048576 >"$out" 2>"$KD_TMP/log/seqpeer.err" &
seq_pid=$!
kd_track $seq_pid
wait_for "$out" 'connected to' 15 || fail "seqpeer did not connect: $(tail -n 3 "$out")"
kill -STOP "$ERL_PID"

wait_for "$out" 'blocked after' 15 ||
	fail "no -EAGAIN wait over 1 s while the peer is stopped: $(tail -n 2 "$out")"
rss_of() {
	awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}
rss_blocked=$(rss_of $seq_pid)
sleep 6
rss_later=$(rss_of $seq_pid)
grep -q 'writable after' "$out" &&
	fail "the writable callback fired while the peer was stopped: $(grep 'writable after' "$out")"
rss_start=$(sed -n 's/.*connected to .*, rss \([0-9]*\) kB.*/\1/p' "$out")
echo "# $(grep '^seqpeer: blocked after' "$out" | sed 's/^seqpeer: //')"
echo "# VmRSS kB: before flood $rss_start, blocked $rss_blocked, 6 s later $rss_later"
[ -n "$rss_start" ] && [ -n "$rss_blocked" ] && [ -n "$rss_later" ] ||
	fail "cannot read VmRSS of seqpeer"
[ $((rss_blocked - rss_start)) -lt 32768 ] ||
	fail "VmRSS grew by $((rss_blocked - rss_start)) kB before blocking, limit 32768"
[ $((rss_later - rss_blocked)) -lt 1024 ] ||
	fail "VmRSS grew by $((rss_later - rss_blocked)) kB while blocked"

kill -CONT "$ERL_PID"
wait_for "$out" 'writable after' 10 ||
	fail "no writable callback within 10 s of SIGCONT: $(tail -n 2 "$out")"
wait $seq_pid
status=$?
echo "# $(grep -E 'writable after|delivered' "$out" | sed 's/^seqpeer: //' | tr '\n' ';')"
[ $status -eq 0 ] || fail "seqpeer exited $status: $(tail -n 2 "$out")"
grep -q '^seqpeer: delivered 8192 of 8192' "$out" ||
	fail "the sink did not count every message: $(grep delivered "$out")"
ok
