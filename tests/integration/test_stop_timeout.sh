#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# A kdist node stopped (SIGTERM) with -stop_timeout 1000 while its peer
# has stopped reading: an erl check sends 4,000 echo requests of 64 KiB
# and is then SIGSTOPped, so the echo replies fill the socket buffers and
# the send queue. Expected, for each OTP release:
#   - kdist exits with status 0 within 1000 ms plus a margin of 2000 ms,
#     instead of waiting for a peer that never reads;
#   - it logs that the connection did not close within 1000 ms, closes
#     the link with the reason "the peer did not close within the stop
#     timeout" and logs the queued bytes it did not send;
#   - after SIGCONT the erl check receives replies 1..K in order, with no
#     gap, then nodedown, and K is at most the number of replies kdist
#     accepted for sending.
# Then, with -stop_timeout 60000: an erl ping during the stop gets pang
# without a nodeup on the kdist side, and a second SIGTERM ends kdist at
# once with status 1 and a line that gives the reason.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the test stops a kdist node"
start_epmd
make_certs

# stall_peer OTP WHAT: an erl check that sends 4,000 echo requests of
# 64 KiB to KD_NODE and is then SIGSTOPped; sets log, check and beam.
stall_peer() {
	log=$KD_TMP/log/erl-stop_drain-$1
	rm -f "$log"
	erl_check "$1" stop_drain "$KD_NODE" 4000 65536 &
	check=$!
	kd_track $check
	wait_for "$log" "stop_drain sent" 30 ||
		fail "$2: the erl check sent nothing: $(tail -n 2 "$log")"
	beam=$(pgrep -f "beam.*kdist_peer main stop_drain $KD_NODE") ||
		fail "$2: cannot find the erl check's beam process"
	kill -STOP $beam
	# Give the echo replies time to fill the socket buffers and the queue.
	sleep 1
}

for otp in $(kd_otps); do
	start_kdist "stoptimeout$otp" -stop_timeout 1000
	stall_peer "$otp" "OTP $otp"

	t0=$(kd_now_ms)
	stop_kdist $KD_PID
	status=$?
	took=$(($(kd_now_ms) - t0))
	kill -CONT $beam
	wait $check || fail "OTP $otp: $(erl_why stop_drain "$otp")"

	got=$(sed -n 's/.*stop_drain received \([0-9]*\),.*/\1/p' "$log")
	accepted=$(sed -n 's/^kdist: echo: \([0-9]*\) replies accepted for sending.*/\1/p' "$KD_OUT")
	[ -n "$got" ] && [ -n "$accepted" ] ||
		fail "OTP $otp: cannot read the counts: erl '$(tail -n 1 "$log")', kdist '$(tail -n 1 "$KD_OUT")'"
	echo "# OTP $otp: kdist stopped in $took ms with status $status;" \
		"it accepted $accepted replies, erl received $got in order;" \
		"$(grep -m1 'queued bytes were not sent' "$KD_ERR" | cut -c14-)"
	[ "$status" -eq 0 ] || fail "OTP $otp: kdist exited with status $status"
	bound=$((1000 + 2000 * KD_SCALE))
	[ "$took" -lt "$bound" ] ||
		fail "OTP $otp: kdist took $took ms to stop, expected under $bound ms with -stop_timeout 1000"
	[ "$got" -le "$accepted" ] ||
		fail "OTP $otp: erl received $got replies but kdist accepted only $accepted"
	grep -q "did not close within 1000 ms" "$KD_ERR" ||
		fail "OTP $otp: no stop-timeout warning in the kdist log: $(grep 'node: stopping' "$KD_ERR" | tail -n 2)"
	grep -q "closed: node stopping: the peer did not close within the stop timeout" "$KD_ERR" ||
		fail "OTP $otp: the link did not close with the stop-timeout reason: $(grep 'closed:' "$KD_ERR" | tail -n 1)"
	grep -q "queued bytes were not sent" "$KD_ERR" ||
		fail "OTP $otp: kdist did not log the queued bytes it dropped"
done

# A second SIGTERM ends a stop that would wait 60 s for a stalled peer.
# Under valgrind that _exit() would show the live threads' memory as leaks.
if [ -n "${KDIST_VG_LOGS:-}" ]; then
	echo "# second SIGTERM not tried under valgrind: its _exit() leaves the threads' memory to the leak check"
	ok
fi
otp=$(kd_otps | awk '{print $1}')
start_kdist forced -stop_timeout 60000
stall_peer "$otp" "forced stop"
kill -TERM $KD_PID
wait_for "$KD_OUT" '^kdist: stopping on SIGTERM' 5 ||
	fail "forced stop: kdist did not start its stop"
# A node that is stopping takes no new connections.
ups=$(grep -c '^kdist: nodeup ' "$KD_OUT")
erl_check "$otp" pang "$KD_NODE" ||
	fail "forced stop: an erl ping during the stop: $(erl_why pang "$otp")"
grep -q "closing new incoming connections" "$KD_ERR" ||
	fail "forced stop: kdist did not log that it closes new connections"
[ "$(grep -c '^kdist: nodeup ' "$KD_OUT")" -eq "$ups" ] ||
	fail "forced stop: a nodeup during the stop: $(grep '^kdist: nodeup ' "$KD_OUT" | tail -n 1)"
t0=$(kd_now_ms)
stop_kdist $KD_PID 5
status=$?
took=$(($(kd_now_ms) - t0))
kill -CONT $beam
wait $check
echo "# second SIGTERM: kdist exited with status $status in $took ms: $(grep 'second SIGTERM' "$KD_ERR")"
[ "$status" -eq 1 ] || fail "forced stop: kdist exited with status $status, expected 1"
grep -q "second SIGTERM during the stop: exiting without waiting" "$KD_ERR" ||
	fail "forced stop: kdist did not say why it exited: $(tail -n 2 "$KD_ERR")"
ok
