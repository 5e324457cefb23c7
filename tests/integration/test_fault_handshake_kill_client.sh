#!/bin/sh
# A peer that dies with SIGKILL at each step of the TLS handshake (TLS 1.3,
# then TLS 1.2) and of the distribution handshake, with kdist as the
# client. For each step tests/tools/killpeer registers a node name with
# the test's EPMD (its ALIVE2 socket stays open), listens, and raises
# SIGKILL on itself at the step. kdist offers both TLS versions; killpeer
# accepts one. Two kdist clients meet it, each with a fresh killpeer:
#   - a long-lived kdist node, made to connect out by `killpeer trigger`,
#     which sends its echo service a message whose reply goes to a pid on
#     the killpeer node.
#     Expected: kdist logs one error for the outgoing connection that
#     names the peer node and the TLS messages or the distribution
#     message it was waiting for, plus one line saying it dropped the
#     queued echo reply; after challenge_ack the connection was up, so
#     it logs nodeup and nodedown instead, and may log that the queued
#     reply was not sent because the link was already closing. Its fd count returns to the
#     baseline, it keeps running, logs no handshake timeout, and a good
#     peer gets its echo right after;
#   - `kdist ping`. Expected: exit status 1 with "pang: REASON", REASON
#     as clear as the log line, within 1000 ms of the start although the
#     handshake timeout is 7000 ms, because a killed peer's socket gives
#     EOF or RST at once. After challenge_ack the ping may also have sent
#     its request into the dying connection and then waits for its
#     -timeout of 3000 ms; that step is bound by 4000 ms.
# One "# VERSION STEP" line per step reports both delays and the reasons.
# With TLS 1.2 the client sends its Finished before the server's arrives,
# so a server that dies after its first flight, or on the client's
# Finished, leaves kdist in the TLS handshake rather than in the
# distribution handshake.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "log lines and fd counts of a kdist node"
KD_KILLPEER=$KD_TOOLS/killpeer
[ -x "$KD_KILLPEER" ] || skip "$KD_KILLPEER not built; run 'make tools'"
start_epmd
make_certs
write_conf both server client "'tlsv1.3', 'tlsv1.2'"
KD_CONF=$KD_CERTS/both.conf
start_kdist hsclient

# start_acceptor STEP NAME: a killpeer that serves NAME@host and dies at
# STEP; sets KP_PID and KP_ERR.
start_acceptor() {
	KP_ERR=$KD_TMP/log/killpeer-$2.err
	"$KD_KILLPEER" accept "$1" "$2@$KD_HOST" "$KD_COOKIE" \
		"$KD_CERTS/$version.conf" \
		"$KD_EPMD_PORT" >"$KD_TMP/log/killpeer-$2.out" 2>"$KP_ERR" &
	KP_PID=$!
	kd_track $KP_PID
	wait_for "$KD_TMP/log/killpeer-$2.out" '^listening on' 5 ||
		fail "$version $1: killpeer accept did not listen: $(tail -n 2 "$KP_ERR")"
}

# wait_killed STEP: killpeer must have died by SIGKILL at STEP; sets
# DIED_MS to the time of day it printed.
wait_killed() {
	# The braces keep the shell's own "Killed" notice out of the output.
	{ wait "$KP_PID"; } 2>/dev/null
	status=$?
	[ $status -eq 137 ] ||
		fail "$version $1: killpeer exited $status, expected 137 (SIGKILL at the step): $(tail -n 2 "$KP_ERR")"
	died=$(grep "SIGKILL at $1\$" "$KP_ERR") ||
		fail "$version $1: killpeer died elsewhere: $(tail -n 2 "$KP_ERR")"
	DIED_MS=$(kd_clock_ms "$(echo "$died" | cut -d' ' -f2)")
}

good_peer() {
	"$KD_KILLPEER" connect none localhost "$KD_PORT" "$KD_NODE" \
		"$KD_COOKIE" "$KD_CONF" 2>>"$KD_TMP/log/killpeer-good.err"
}

tls_failed='TLS handshake failed: .* \(last message received: none, sent: ClientHello; 0 bytes in'
# A write to a killed peer may fail before a read returns its FIN or RST.
dist_closed='distribution handshake: (peer closed the connection|TLS write failed) while this node waited for'
cookie_or_stopped='the peer closed the connection after our challenge reply: the cookies most likely differ \(set the same -setcookie on both nodes\), or the peer stopped'
tls12_failed='TLS handshake failed: .* \(last message received: ServerHelloDone, sent: Finished;'
# steps VERSION: lines of STEP|what kdist reports (grep -E), in its log
# and in pang.
steps() {
	case $1 in
	tls13)
		after_flight="($tls_failed|$dist_closed status[ :])"
		at_finished="$dist_closed status[ :]"
		;;
	tls12)
		after_flight=$tls12_failed
		at_finished=$tls12_failed
		;;
	esac
	echo "accept|$tls_failed
recv_client_hello|$tls_failed
send_server_hello|$after_flight
recv_client_finished|$at_finished
tls_done|$dist_closed status \(
recv_name|$dist_closed status \(
send_status|$dist_closed challenge \(
send_challenge|($dist_closed challenge \(|$cookie_or_stopped)
recv_challenge_reply|$cookie_or_stopped
send_challenge_ack|up"
}
up_then_down='connection closed by peer without TLS close_notify'
ping_after_ack="(the connection was set up and then lost: $up_then_down|send: the connection to .* is closing|no answer from net_kernel on .* within 3000 ms)"

baseline=$(kd_fd_count "$KD_PID")
for version in tls13 tls12; do
	steps $version >"$KD_TMP/steps"
	while IFS='|' read -r step expect; do
		# The long-lived node.
		name=kn_${version}_$step
		node=$name@$KD_HOST
		before=$(wc -l <"$KD_ERR")
		start_acceptor "$step" "$name"
		"$KD_KILLPEER" trigger localhost "$KD_PORT" "$KD_NODE" "$KD_COOKIE" \
			"$KD_CONF" "$node" 2>>"$KD_TMP/log/killpeer-trigger.err" ||
			fail "$version $step: killpeer trigger failed: $(tail -n 2 "$KD_TMP/log/killpeer-trigger.err")"
		wait_killed "$step"
		node_died_ms=$DIED_MS
		if [ "$expect" = up ]; then
			pattern="kdist info: conn $node: down \($up_then_down\)"
			wait_for "$KD_OUT" "^kdist: nodedown $node (connection closed" 3 ||
				fail "$version $step: no nodedown for $node on stdout"
			grep -q "^kdist: nodeup $node\$" "$KD_OUT" ||
				fail "$version $step: no nodeup for $node on stdout"
		else
			pattern="kdist error: conn $node \(outgoing\): $expect"
		fi
		tries=$((30 * KD_SCALE))
		until tail -n +$((before + 1)) "$KD_ERR" | grep -Eq -- "$pattern"; do
			tries=$((tries - 1))
			[ $tries -gt 0 ] ||
				fail "$version $step: no log line matches '$pattern' within 3 s: $(tail -n +$((before + 1)) "$KD_ERR" | tail -n 3)"
			sleep 0.1
		done
		tries=$((30 * KD_SCALE))
		while [ "$(kd_fd_count "$KD_PID")" -gt "$baseline" ]; do
			tries=$((tries - 1))
			[ $tries -gt 0 ] ||
				fail "$version $step: kdist has $(kd_fd_count "$KD_PID") fds 3 s after the kill, baseline $baseline"
			sleep 0.1
		done
		fds=$(kd_fd_count "$KD_PID")
		kill -0 "$KD_PID" 2>/dev/null || fail "$version $step: kdist exited"
		new=$(tail -n +$((before + 1)) "$KD_ERR" | grep -v 'conn killpeer@localhost')
		line=$(echo "$new" | grep -E -- "$pattern")
		[ "$(echo "$line" | wc -l)" -eq 1 ] ||
			fail "$version $step: kdist logged the failure more than once: $line"
		others=$(echo "$new" | grep -E 'kdist (error|warning):' | grep -vF -- "$line" |
			grep -Ev "conn $node: (dropped 1 queued messages|1 queued messages \([0-9]+ bytes\) not sent)")
		[ -z "$others" ] || fail "$version $step: kdist logged more errors: $others"
		start_line=$(echo "$new" | grep -m1 "conn $node: connecting") ||
			fail "$version $step: kdist did not log its connect to $node"
		connect_ms=$(kd_clock_ms "$(echo "$start_line" | cut -c1-12)")
		logged_ms=$(kd_clock_ms "$(echo "$line" | cut -c1-12)")
		good_peer || fail "$version $step: a good peer got no echo right after the kill"

		# kdist ping, a client that exits.
		name=kp_${version}_$step
		start_acceptor "$step" "$name"
		t0=$(kd_now_ms)
		kdist_client ping "$name@$KD_HOST" -timeout 3000
		ping_status=$?
		ping_ms=$(($(kd_now_ms) - t0))
		wait_killed "$step"
		[ $ping_status -eq 1 ] ||
			fail "$version $step: kdist ping exited $ping_status, expected 1: $(cat "$KD_TMP/log/client.out")"
		if [ "$expect" = up ]; then
			reason=$ping_after_ack
			bound=$((4000 * KD_SCALE))
		else
			reason=$expect
			bound=$((1000 * KD_SCALE))
		fi
		grep -Eq "^pang: .*$reason" "$KD_TMP/log/client.out" ||
			fail "$version $step: kdist ping printed '$(cat "$KD_TMP/log/client.out")', expected pang with '$reason'"
		[ $ping_ms -lt $bound ] ||
			fail "$version $step: kdist ping took $ping_ms ms, expected under $bound ms"
		echo "# $version $step: node logged $((logged_ms - connect_ms)) ms after its connect" \
			"($((logged_ms - node_died_ms)) ms after the kill), fds $fds of baseline $baseline," \
			"good peer echo ok: $(echo "$line" | cut -c14-)"
		echo "# $version $step: kdist ping exit $ping_status in $ping_ms ms: $(head -n 1 "$KD_TMP/log/client.out")"
	done <"$KD_TMP/steps"
done

grep -q 'handshake timed out' "$KD_ERR" &&
	fail "a killed peer's connection waited for the handshake timeout: $(grep -m1 'handshake timed out' "$KD_ERR")"
for otp in $(kd_otps); do
	check_still_serves "$otp"
done
ok
