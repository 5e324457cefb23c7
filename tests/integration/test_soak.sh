#!/bin/sh
# No-loss soak. tests/tools/seqpeer (a kdist node on include/kdist.h) and
# an erl node exchange sequence-numbered messages both ways for
# SOAK_SECONDS (default 30; SOAK_SECONDS=600 for a long run), while the
# erl node is killed (SIGKILL) and started again at random, every 3 to
# 8 s, and seqpeer drops the link with kdist_disconnect() about every
# 4 s. Expected: every message the API accepted arrives once and in
# order, or a nodedown follows it; seqpeer prints the summary (sent,
# delivered, lost-with-nodedown, gaps, duplicates) and the test fails on
# any gap or duplicate not explained by a nodedown. seqpeer's fd and
# thread counts must come back to where they started.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "seqpeer is a kdist node"
SEQPEER=$KD_TOOLS/seqpeer
[ -x "$SEQPEER" ] || skip "$SEQPEER not built; run 'make tools'"
start_epmd
make_certs
seconds=${SOAK_SECONDS:-30}
otp=$(kd_otps | awk '{print $NF}')
kd_ebin "$otp"
kd_node=soak_k@$KD_HOST

# start_soak_erl N: the erl side, kdist_peer:soak, as erl node soak_e.
start_soak_erl() {
	log=$KD_TMP/log/erl-soak-$1
	# shellcheck disable=SC2046
	"$(kd_erl_bin "$otp")" -noshell -sname soak_e \
		-setcookie "$KD_COOKIE" $(kd_dist_args) \
		-pa "$KD_EBIN" -run kdist_peer soak "$kd_node" >"$log" 2>&1 &
	ERL_PID=$!
	kd_track $ERL_PID
	wait_for "$log" 'kdist_peer: soak serving' 15 ||
		fail "erl soak node $1 did not start: $(tail -n 3 "$log")"
}

# seqpeer reaches soak_e through EPMD, so the erl node goes first.
start_soak_erl 0
"$SEQPEER" soak soak_k "$KD_COOKIE" "$KD_CONF" "$KD_EPMD_PORT" \
	"soak_e@$KD_HOST" "$seconds" 4000 >"$KD_TMP/log/seqpeer.out" \
	2>"$KD_TMP/log/seqpeer.err" &
seq_pid=$!
kd_track $seq_pid

restarts=0
while kill -0 $seq_pid 2>/dev/null; do
	sleep $((3 + $(kd_rand) % 6))
	kill -0 $seq_pid 2>/dev/null || break
	# The last seconds of the run drain the streams with the peer up.
	[ $((restarts * 5)) -lt $((seconds - 8)) ] || continue
	kill -KILL "$ERL_PID"
	wait "$ERL_PID" 2>/dev/null
	restarts=$((restarts + 1))
	start_soak_erl $restarts
done
wait $seq_pid
status=$?
echo "# erl node restarts: $restarts"
grep 'summary' "$KD_TMP/log/seqpeer.out" | sed 's/^/# /'
[ $status -eq 0 ] ||
	fail "seqpeer exited $status: $(grep -E 'gap|duplicate|incarnation|no traffic' \
		"$KD_TMP/log/seqpeer.out" | head -n 5)"
grep -q 'summary kdist->erl' "$KD_TMP/log/seqpeer.out" ||
	fail "seqpeer printed no summary: $(tail -n 3 "$KD_TMP/log/seqpeer.err")"
[ "$restarts" -ge 1 ] || fail "the erl node was never restarted in $seconds s"

res=$(grep 'summary resources' "$KD_TMP/log/seqpeer.out")
fds=$(echo "$res" | sed -n 's/.*fds \([0-9]*\) -> \([0-9]*\),.*/\1 \2/p')
threads=$(echo "$res" | sed -n 's/.*threads \([0-9]*\) -> \([0-9]*\).*/\1 \2/p')
set -- $fds
# One link may be up at the end and another down: allow 2 fds of slack.
[ -n "${2:-}" ] && [ "$2" -le $(($1 + 2)) ] ||
	fail "seqpeer fds grew from ${1:-?} to ${2:-?}"
set -- $threads
[ -n "${2:-}" ] && [ "$2" -le "$1" ] ||
	fail "seqpeer threads grew from ${1:-?} to ${2:-?}"
ok
