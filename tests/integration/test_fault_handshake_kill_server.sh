#!/bin/sh
# A peer that dies with SIGKILL at each step of the TLS handshake (TLS 1.3,
# then TLS 1.2) and of the distribution handshake, with kdist as the
# server: tests/tools/killpeer connects and raises SIGKILL on itself at
# the step, so the kernel closes its socket as for a crashed node. kdist
# accepts both versions; killpeer offers one. Expected for every step:
#   - killpeer reached the step (it exits 137 after "SIGKILL at STEP");
#   - kdist logs one line for that connection, an error that names the
#     peer (its address, and its node name once send_name arrived) and
#     the TLS messages or the distribution message it was waiting for
#     (the pattern in the table below); a peer killed after kdist sent
#     challenge_ack was connected, so kdist logs its nodedown instead;
#   - kdist logs no handshake timeout, so no connection waits for one;
#   - kdist keeps running, its fd count returns to the baseline within
#     3 s, and a good peer (killpeer connect none) gets its echo at once.
# At the end a real erl node must still get its echo. One "# STEP" line
# per step reports the exit status, the delay from the kill to kdist's log
# line (both clocks in ms), the fd count and the line.
# TLS 1.2 differs in two steps: the server's first flight ends with
# ServerHelloDone, and its Finished comes after the client's, so a client
# that dies on it leaves kdist waiting for send_name.
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
start_kdist hskill

# killpeer_connect STEP [OPTFILE]
killpeer_connect() {
	"$KD_KILLPEER" connect "$1" localhost "$KD_PORT" "$KD_NODE" \
		"$KD_COOKIE" "${2:-$KD_CONF}" 2>>"$KD_TMP/log/killpeer.err"
}

# Waits up to 3 s for the fd count of kdist to drop back to $baseline.
wait_fds() {
	tries=$((30 * KD_SCALE))
	while [ "$(kd_fd_count "$KD_PID")" -gt "$baseline" ]; do
		tries=$((tries - 1))
		[ $tries -gt 0 ] || return 1
		sleep 0.1
	done
}

peer='conn 127\.0\.0\.1:[0-9]+'
named='conn killpeer@localhost 127\.0\.0\.1:[0-9]+'
tls_failed="kdist error: $peer: TLS handshake failed: .*"
# A write to a killed peer may fail before a read returns its FIN or RST.
dist_closed='distribution handshake: (peer closed the connection|TLS write failed) while this node waited for'
up_then_down='kdist info: conn killpeer@localhost: down \(connection closed by peer without TLS close_notify\)'
waits_name="kdist error: $peer: $dist_closed send_name \("
# steps VERSION: lines of STEP|the one line kdist must log (grep -E).
steps() {
	case $1 in
	tls13)
		flight="$tls_failed \(last message received: ClientHello, sent: Finished;"
		at_finished=$flight
		;;
	tls12)
		flight="$tls_failed \(last message received: ClientHello, sent: ServerHelloDone;"
		at_finished=$waits_name
		;;
	esac
	echo "tcp|$tls_failed \(last message received: none, sent: none; 0 bytes in
client_hello_partial|$tls_failed \(last message received: none, sent: none; [1-9][0-9]* bytes in
client_hello|$flight
server_hello|$flight
client_finished|$waits_name
server_finished|$at_finished
tls_done|$waits_name
send_name_partial|kdist error: $peer: $dist_closed send_name, [1-9][0-9]* bytes into it
send_name|kdist error: $named: $dist_closed challenge_reply \(
recv_status|kdist error: $named: $dist_closed challenge_reply \(
recv_challenge|kdist error: $named: $dist_closed challenge_reply \(
send_challenge_reply|$up_then_down
recv_challenge_ack|$up_then_down"
}

baseline=$(kd_fd_count "$KD_PID")
for version in tls13 tls12; do
	steps $version >"$KD_TMP/steps"
	while IFS='|' read -r step expect; do
		before=$(wc -l <"$KD_ERR")
		downs_before=$(grep -c '^kdist: nodedown killpeer@localhost' "$KD_OUT")
		killpeer_connect "$step" "$KD_CERTS/$version.conf"
		status=$?
		[ $status -eq 137 ] ||
			fail "$version $step: killpeer exited $status, expected 137 (SIGKILL at the step): $(tail -n 2 "$KD_TMP/log/killpeer.err")"
		died=$(tail -n 2 "$KD_TMP/log/killpeer.err" | grep "SIGKILL at $step\$") ||
			fail "$version $step: killpeer died elsewhere: $(tail -n 2 "$KD_TMP/log/killpeer.err")"
		died_ms=$(kd_clock_ms "$(echo "$died" | cut -d' ' -f2)")
		tries=$((30 * KD_SCALE))
		until tail -n +$((before + 1)) "$KD_ERR" | grep -Eq -- "$expect"; do
			tries=$((tries - 1))
			[ $tries -gt 0 ] ||
				fail "$version $step: no log line matches '$expect' within 3 s: $(tail -n +$((before + 1)) "$KD_ERR" | tail -n 3)"
			sleep 0.1
		done
		wait_fds || fail "$version $step: kdist has $(kd_fd_count "$KD_PID") fds 3 s after the kill, baseline $baseline"
		fds=$(kd_fd_count "$KD_PID")
		kill -0 "$KD_PID" 2>/dev/null || fail "$version $step: kdist exited"
		new=$(tail -n +$((before + 1)) "$KD_ERR")
		line=$(echo "$new" | grep -E -- "$expect")
		[ "$(echo "$line" | wc -l)" -eq 1 ] ||
			fail "$version $step: kdist logged the failure more than once: $line"
		others=$(echo "$new" | grep -E 'kdist (error|warning):' | grep -vF -- "$line")
		[ -z "$others" ] || fail "$version $step: kdist logged more errors: $others"
		case $expect in
		"$up_then_down")
			downs=$(grep -c '^kdist: nodedown killpeer@localhost (connection closed' "$KD_OUT")
			[ "$downs" -eq $((downs_before + 1)) ] ||
				fail "$version $step: expected one more nodedown line on stdout, found $((downs - downs_before))"
			;;
		esac
		logged_ms=$(kd_clock_ms "$(echo "$line" | cut -c1-12)")
		killpeer_connect none ||
			fail "$version $step: a good peer got no echo right after the kill: $(tail -n 1 "$KD_TMP/log/killpeer.err")"
		echo "# $version $step: killpeer exit $status; kdist logged $((logged_ms - died_ms)) ms" \
			"after the kill, fds $fds of baseline $baseline, good peer echo ok:" \
			"$(echo "$line" | cut -c14-)"
	done <"$KD_TMP/steps"
done

grep -q 'handshake timed out' "$KD_ERR" &&
	fail "a killed peer's connection waited for the handshake timeout: $(grep -m1 'handshake timed out' "$KD_ERR")"
for otp in $(kd_otps); do
	check_still_serves "$otp"
done
ok
