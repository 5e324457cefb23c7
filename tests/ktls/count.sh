#!/bin/sh
# Counts what the kernel TLS path saves on the receive side: one erl node
# sends COUNT x SIZE bytes (default 512 x 64 KiB = 32 MiB) to a kdist
# node's sink over TLS 1.3 ChaCha20-Poly1305, once with -ktls on and once
# with -ktls off, and prints per MiB the kdist node's system calls (strace
# -c -f attached for the transfer) and its user and system CPU ticks
# (/proc/PID/stat), which show where the decryption ran. CPU figures from
# an emulated VM are ratios only, never performance numbers.
# Usage: count.sh [COUNT [SIZE]]. Needs strace; skips without kernel TLS.
. "$(dirname "$0")/../integration/lib.sh"
KD_TEST=ktls_count
HERE=$KD_REPO/tests/ktls
COUNT=${1:-512}
SIZE=${2:-65536}

kd_init
need_kdist
command -v strace >/dev/null 2>&1 || skip "strace is not installed"
modprobe tls 2>/dev/null
grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null ||
	skip "no tls ULP on $(uname -r): nothing to compare"
start_epmd
make_certs
c=$KD_CERTS
cat >"$c/chacha.conf" <<CONF
[{server, [{certfile, "$c/server.pem"}, {keyfile, "$c/server.key"},
	   {cacertfile, "$c/ca.pem"}, {versions, ['tlsv1.3']},
	   {verify, verify_peer}, {fail_if_no_peer_cert, true},
	   {ciphers, "TLS_CHACHA20_POLY1305_SHA256"}]},
 {client, [{certfile, "$c/client.pem"}, {keyfile, "$c/client.key"},
	   {cacertfile, "$c/ca.pem"}, {versions, ['tlsv1.3']},
	   {verify, verify_peer},
	   {ciphers, "TLS_CHACHA20_POLY1305_SHA256"}]}].
CONF
KD_CONF=$c/chacha.conf
if [ -f "${KDIST_KTLS_EBIN:-/nonexistent}/ktls_peer.beam" ]; then
	KD_EBIN=$KDIST_KTLS_EBIN
else
	KD_EBIN=$KD_TMP/kebin
	mkdir -p "$KD_EBIN"
	erlc -o "$KD_EBIN" "$HERE/ktls_peer.erl" || fail "erlc ktls_peer.erl failed"
fi
mib=$((COUNT * SIZE / 1048576))
[ "$mib" -gt 0 ] || fail "COUNT x SIZE is below 1 MiB"

# ticks PID: utime and stime of PID in clock ticks.
ticks() {
	awk '{ sub(/.*\) /, ""); print $12, $13 }' "/proc/$1/stat"
}

echo "# $(uname -r): erl -> kdist sink, $COUNT x $SIZE bytes ($mib MiB), TLS 1.3 ChaCha20-Poly1305"
echo "# path        syscalls/MiB  recvmsg-like/MiB  utime/MiB  stime/MiB (ticks of $(getconf CLK_TCK)/s)"
for mode in on off; do
	start_kdist "count$mode" -ktls "$mode" -handshake_timeout 60000
	# The ping brings the connection up, so the handshake stays out of
	# the counts.
	# shellcheck disable=SC2046
	erl -noshell -sname "cnt$mode" -setcookie "$KD_COOKIE" $(kd_dist_args) \
		-kernel net_setuptime 120 \
		-pa "$KD_EBIN" -run ktls_peer main sink "$KD_NODE" "$COUNT" "$SIZE" \
		>"$KD_TMP/log/erl-$mode" 2>&1 &
	epid=$!
	kd_track $epid
	wait_for "$KD_ERR" "conn cnt$mode@$KD_HOST: up" 60 ||
		fail "-ktls $mode: erl did not connect: $(tail -n 2 "$KD_TMP/log/erl-$mode")"
	strace -c -f -q -p "$KD_PID" -o "$KD_TMP/strace-$mode" &
	spid=$!
	kd_track $spid
	set -- $(ticks "$KD_PID")
	u0=$1 s0=$2
	wait $epid || fail "-ktls $mode: the transfer failed: $(tail -n 2 "$KD_TMP/log/erl-$mode")"
	set -- $(ticks "$KD_PID")
	u1=$1 s1=$2
	kill -INT $spid
	wait $spid
	path=$(grep "conn cnt$mode@$KD_HOST: up" "$KD_ERR" | sed -n 's/.*record path \([a-z-]*\).*/\1/p')
	calls=$(awk '$NF == "total" { print $4 }' "$KD_TMP/strace-$mode")
	rcv=$(awk '$NF ~ /^(io_uring_enter|recvmsg|recvfrom|read)$/ { n += $4 } END { print n + 0 }' \
		"$KD_TMP/strace-$mode")
	printf '%-12s  %12s  %16s  %9s  %9s\n' "$path" \
		"$(echo "scale=1; ${calls:-0} / $mib" | bc)" \
		"$(echo "scale=1; $rcv / $mib" | bc)" \
		"$(echo "scale=2; ($u1 - $u0) / $mib" | bc)" \
		"$(echo "scale=2; ($s1 - $s0) / $mib" | bc)"
	sed 's/^/#   /' "$KD_TMP/strace-$mode" | head -n 12
	stop_kdist "$KD_PID"
done
ok
