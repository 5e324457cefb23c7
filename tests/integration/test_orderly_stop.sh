#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# A kdist node stopped (SIGTERM) while echo replies to an erl node are
# still queued. An erl check sends 20,000 echo requests of 4 KiB, or 300
# of 70 KB, whose replies go out in fragments. The test stops the kdist
# node once the requests are out, or a little later, when some replies
# have arrived. Expected, for each OTP release and size:
#   - erl receives replies 1..K in order, with no gap, then nodedown;
#   - K equals the number of replies the kdist_send_pid() calls of the
#     echo service accepted ("echo: N replies accepted for sending" at the stop): every
#     reply that kdist accepted arrived;
#   - kdist logs the orderly close ("node stopping: queue sent, closed in
#     order"), and neither "... were not sent" nor "close_notify
#     not sent". The record path is the one the node chose: user space
#     here, the kernel's inside the VM where it carries the link.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the test stops a kdist node"
start_epmd
make_certs

for otp in $(kd_otps); do
	for run in 20000:4096:sent 20000:4096:received 300:70000:sent; do
		count=${run%%:*}
		size=${run#*:}
		when=${size#*:}
		size=${size%:*}
		# The stop timeout is long enough for an emulated VM: this test
		# checks what arrives, test_stop_timeout.sh the time limit.
		start_kdist "stop${otp}_${size}_$when" \
			-stop_timeout $((30000 * KD_SCALE))
		log=$KD_TMP/log/erl-stop_drain-$otp
		rm -f "$log"
		erl_check "$otp" stop_drain "$KD_NODE" $count $size &
		check=$!
		kd_track $check
		wait_for "$log" "stop_drain sent" 30 ||
			fail "OTP $otp: the erl check sent nothing: $(tail -n 2 "$log")"
		if [ $when = received ]; then
			# Let some replies through first, so the stop meets a
			# queue that is partly sent.
			sleep 0.2
		fi
		stop_kdist $KD_PID 40
		wait $check || fail "OTP $otp ($count x $size, $when): $(erl_why stop_drain "$otp")"
		got=$(sed -n 's/.*stop_drain received \([0-9]*\),.*/\1/p' "$log")
		reason=$(sed -n 's/.*stop_drain received [0-9]*, nodedown \(.*\)/\1/p' "$log")
		sent=$(sed -n 's/^kdist: echo: \([0-9]*\) replies accepted for sending.*/\1/p' "$KD_OUT")
		[ -n "$got" ] && [ -n "$sent" ] ||
			fail "OTP $otp ($count x $size, $when): cannot read the counts: erl '$(tail -n 1 "$log")', kdist '$(tail -n 1 "$KD_OUT")'"
		path=$(sed -n 's/.* path=\(kernel\|user-space\|plain\).*/\1/p' "$KD_OUT" | tail -n 1)
		echo "# OTP $otp, $count x $size bytes, stop after $when, path $path:" \
			"kdist accepted $sent replies, erl received $got;" \
			"nodedown reason $reason"
		[ "$got" -eq "$sent" ] ||
			fail "OTP $otp ($count x $size, $when): kdist accepted $sent replies but erl received $got"
		grep -q "closed: node stopping: queue sent, closed in order" "$KD_ERR" ||
			fail "OTP $otp ($count x $size, $when): no orderly close in the kdist log: $(grep 'closed:' "$KD_ERR" | tail -n 1)"
		if grep -Eq "were not sent|close_notify not sent" "$KD_ERR"; then
			fail "OTP $otp ($count x $size, $when): $(grep -E 'were not sent|close_notify not sent' "$KD_ERR")"
		fi
	done
done
ok
