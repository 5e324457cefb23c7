#!/bin/sh
# No secret in any kdist log or stdout. The test runs kdist with debug
# logging (-v) through TLS 1.3 handshakes in both roles, TLS 1.2 as
# server, a wrong cookie in both roles, a certificate rejection, a garbage
# packet and a 10 s seqpeer soak with disconnects. Then it searches every
# kdist log and stdout of the run. Expected: no line contains either cookie, the
# word "SECRET" (any case: the TLS key log format) or a run of 32 or more
# hex digits (a 16-byte digest, a key or a traffic secret in hex).
# KDIST_LOG_SEARCH_DIR=DIR also searches the files under DIR, for example
# the directories that `KDIST_KEEP=1 tests/integration/run-all` kept.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the logs of a kdist node"
need_badpeer
SEQPEER=$KD_TOOLS/seqpeer
[ -x "$SEQPEER" ] || skip "$SEQPEER not built; run 'make tools'"
start_epmd
make_certs
otp=$(kd_otps | awk '{print $NF}')
good=$KD_COOKIE
bad=wrongcookie$(kd_rand)x$(kd_rand)

start_kdist logs -v
erl_check "$otp" echo "$KD_NODE" || fail "TLS 1.3 echo: $(erl_why echo "$otp")"
badpeer garbage "$KD_CONF" || fail "the garbage client could not connect"
KD_COOKIE=$bad
erl_check "$otp" pang "$KD_NODE" || fail "wrong cookie, kdist as server: $(erl_why pang "$otp")"
KD_COOKIE=$good
KD_CONF=$KD_CERTS/rogue.conf
erl_check "$otp" pang "$KD_NODE" || fail "rogue certificate: $(erl_why pang "$otp")"
KD_CONF=$KD_CERTS/tls13.conf

start_erl "$otp" peer13
kdist_client ping "$ERL_NODE" -v || fail "kdist ping over TLS 1.3 failed"
cp "$KD_TMP/log/client.out" "$KD_TMP/log/kdist-ping13.out"
cp "$KD_TMP/log/client.err" "$KD_TMP/log/kdist-ping13.err"
KD_COOKIE=$bad
kdist_client ping "$ERL_NODE" -v && fail "kdist ping with a wrong cookie got pong"
KD_COOKIE=$good
cp "$KD_TMP/log/client.out" "$KD_TMP/log/kdist-pingbad.out"
cp "$KD_TMP/log/client.err" "$KD_TMP/log/kdist-pingbad.err"

KD_CONF=$KD_CERTS/tls12.conf
start_kdist logs12 -v
erl_check "$otp" echo "$KD_NODE" || fail "TLS 1.2 echo: $(erl_why echo "$otp")"
KD_CONF=$KD_CERTS/tls13.conf

kd_ebin "$otp"
# shellcheck disable=SC2046
"$(kd_erl_bin "$otp")" -noshell -sname soak_e -setcookie "$KD_COOKIE" \
	$(kd_dist_args) -pa "$KD_EBIN" -run kdist_peer soak "logs_k@$KD_HOST" \
	>"$KD_TMP/log/erl-soak" 2>&1 &
kd_track $!
wait_for "$KD_TMP/log/erl-soak" 'soak serving' 15 || fail "erl soak node did not start"
"$SEQPEER" soak logs_k "$KD_COOKIE" "$KD_CONF" "$KD_EPMD_PORT" \
	"soak_e@$KD_HOST" 10 2000 >"$KD_TMP/log/seqpeer.out" 2>"$KD_TMP/log/seqpeer.err" ||
	fail "seqpeer soak failed: $(grep summary "$KD_TMP/log/seqpeer.out" | tail -n 2)"
for pid in $(cat "$KD_TMP/pids"); do
	kill -TERM "$pid" 2>/dev/null
done
sleep 1

files=$(ls "$KD_TMP"/log/kdist-* "$KD_TMP"/log/seqpeer.* "$KD_TMP"/log/badpeer.err \
	"$KD_TMP"/log/client.* 2>/dev/null)
if [ -n "${KDIST_LOG_SEARCH_DIR:-}" ]; then
	files="$files $(find "$KDIST_LOG_SEARCH_DIR" -type f -path '*/log/*' \( -name 'kdist-*' \
		-o -name 'seqpeer.*' -o -name 'client.*' -o -name 'badpeer.err' \))"
fi
lines=$(cat $files | wc -l)
echo "# searched $(echo "$files" | wc -w) files, $lines lines"
[ "$lines" -gt 100 ] || fail "only $lines log lines to search; the run logged too little"
grep -q 'debug' $files || fail "no debug line in the logs; -v did not take effect"
# shellcheck disable=SC2086
if grep -n -e "$good" -e "$bad" $files; then
	fail "a cookie appears in the kdist output above"
fi
# shellcheck disable=SC2086
if grep -n -i 'secret' $files; then
	fail "a line above contains SECRET"
fi
# shellcheck disable=SC2086
if grep -n -E '[0-9A-Fa-f]{32,}' $files; then
	fail "a line above contains 32 or more hex digits in a row"
fi
ok
