#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# A kdist node stopped (SIGTERM) while echo replies to an erl node are
# still queued. An erl check sends 20,000 echo requests of 4 KiB; when
# they are out, and again when some replies have arrived, the test stops
# the kdist node. Expected, for each OTP release:
#   - erl receives replies 1..K in order, with no gap, then nodedown;
#   - K equals the number of messages kdist counts as sent on that
#     connection, minus one (the reply to the check's ping): every reply
#     that kdist accepted arrived;
#   - kdist logs the orderly close ("node stopping: queue sent, closed in
#     order"), and neither "queued bytes were not sent" nor "close_notify
#     not sent". The record path is the one the node chose: user space
#     here, the kernel's inside the VM where it carries the link.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the test stops a kdist node"
start_epmd
make_certs

count=20000
for otp in $(kd_otps); do
	for when in sent received; do
		start_kdist "stop${otp}_$when"
		log=$KD_TMP/log/erl-stop_drain-$otp
		rm -f "$log"
		erl_check "$otp" stop_drain "$KD_NODE" $count 4096 &
		check=$!
		kd_track $check
		wait_for "$log" "stop_drain sent" 30 ||
			fail "OTP $otp: the erl check sent nothing: $(tail -n 2 "$log")"
		if [ $when = received ]; then
			# Let some replies through first, so the stop meets a
			# queue that is partly sent.
			sleep 0.2
		fi
		stop_kdist $KD_PID
		wait $check || fail "OTP $otp ($when): $(erl_why stop_drain "$otp")"
		got=$(sed -n 's/.*stop_drain received \([0-9]*\),.*/\1/p' "$log")
		reason=$(sed -n 's/.*stop_drain received [0-9]*, nodedown \(.*\)/\1/p' "$log")
		sent=$(sed -n 's/^kdist: conn .* out=[0-9]* bytes\/\([0-9]*\) msgs.*/\1/p' "$KD_OUT" | tail -n 1)
		[ -n "$got" ] && [ -n "$sent" ] ||
			fail "OTP $otp ($when): cannot read the counts: erl '$(tail -n 1 "$log")', kdist '$(tail -n 1 "$KD_OUT")'"
		path=$(sed -n 's/.* path=\(kernel TLS\|user-space\|plain\).*/\1/p' "$KD_OUT" | tail -n 1)
		echo "# OTP $otp, stop after $when, path $path: kdist sent $sent messages," \
			"erl received $got replies and the ping reply; nodedown reason $reason"
		[ "$got" -eq $((sent - 1)) ] ||
			fail "OTP $otp ($when): kdist accepted $((sent - 1)) replies but erl received $got"
		grep -q "closed: node stopping: queue sent, closed in order" "$KD_ERR" ||
			fail "OTP $otp ($when): no orderly close in the kdist log: $(grep 'closed:' "$KD_ERR" | tail -n 1)"
		if grep -Eq "queued bytes were not sent|close_notify not sent" "$KD_ERR"; then
			fail "OTP $otp ($when): $(grep -E 'queued bytes were not sent|close_notify not sent' "$KD_ERR")"
		fi
	done
done
ok
