#!/bin/sh
# Network partition between two network namespaces that the test makes
# (needs root), joined by a veth pair. Namespace A runs a kdist node
# nk@10.199.0.1 and namespace B an erl node (OTP 25) ne@10.199.0.2. Each
# has its own EPMD on the same port. Both use TLS 1.3 with a certificate
# for both addresses and -kernel net_ticktime 4. The test sets
# the veth end in A down (the kernel has no netem qdisc to drop packets).
# Expected: kdist prints its nodedown line within 1.25 x net_ticktime
# (5 s) plus 1 s of polling slack, and the erl node declares kdist down
# too. After the link is set up again, erl's echo check against the kdist
# node passes and kdist prints a new nodeup line.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "a kdist node in a network namespace"
ns_a=kdist-a-$$
ns_b=kdist-b-$$
veth_a=kdva$$
veth_b=kdvb$$
ip netns add "$ns_a" 2>"$KD_TMP/log/netns" ||
	skip "ip netns add failed (needs root): $(cat "$KD_TMP/log/netns")"

# End the processes in the namespaces before the namespaces go, then run
# the usual cleanup with the test's exit status.
netns_cleanup() {
	status=$?
	for p in $(cat "$KD_TMP/pids"); do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
	sleep 1
	for p in $(cat "$KD_TMP/pids"); do kill -KILL "$p" 2>/dev/null; done
	ip netns del "$ns_a" 2>/dev/null
	ip netns del "$ns_b" 2>/dev/null
	(exit $status)
	kd_cleanup
}
trap netns_cleanup EXIT

ip netns add "$ns_b" || fail "ip netns add $ns_b failed"
ip link add "$veth_a" netns "$ns_a" type veth peer name "$veth_b" netns "$ns_b" ||
	fail "cannot create the veth pair"
ip -n "$ns_a" addr add 10.199.0.1/24 dev "$veth_a" &&
	ip -n "$ns_b" addr add 10.199.0.2/24 dev "$veth_b" &&
	ip -n "$ns_a" link set lo up && ip -n "$ns_b" link set lo up &&
	ip -n "$ns_a" link set "$veth_a" up && ip -n "$ns_b" link set "$veth_b" up ||
	fail "cannot configure the namespaces"
# reachable_from_b: a TCP connect from B to port 1 of 10.199.0.1 gets a
# reply (refused) within 1 s. The machine may have no ping binary.
reachable_from_b() {
	ip netns exec "$ns_b" python3 -c 'import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect(("10.199.0.1", 1))
except ConnectionRefusedError:
    pass
except OSError:
    sys.exit(1)'
}
reachable_from_b ||
	fail "10.199.0.1 is not reachable from namespace B"

make_certs
c=$KD_CERTS
# OTP 25 checks the host part of an IP node name as a DNS name
# (hostname_check_failed with an IP entry alone), so the addresses are
# listed both as IP and as DNS entries.
cat >"$c/netns.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:10.199.0.1,IP:10.199.0.2,DNS:10.199.0.1,DNS:10.199.0.2
EOF
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$c/netns.key" -out "$c/netns.csr" -subj /CN=10.199.0.1 \
	>"$KD_TMP/log/openssl" 2>&1 &&
	openssl x509 -req -in "$c/netns.csr" -CA "$c/ca.pem" -CAkey "$c/ca.key" \
		-set_serial "0x$(openssl rand -hex 8)" -days 1 \
		-extfile "$c/netns.ext" -out "$c/netns.pem" >>"$KD_TMP/log/openssl" 2>&1 ||
	fail "cannot make the certificate for the namespace addresses: $(tail -n 2 "$KD_TMP/log/openssl")"
write_conf netns netns netns "'tlsv1.3'"
KD_CONF=$c/netns.conf

# Each namespace has its own port space, so both EPMDs use one port.
KD_EPMD_PORT=$(free_port)
ERL_EPMD_PORT=$KD_EPMD_PORT
export ERL_EPMD_PORT
for ns in "$ns_a" "$ns_b"; do
	ip netns exec "$ns" epmd -port "$KD_EPMD_PORT" >"$KD_TMP/log/epmd-$ns" 2>&1 &
	kd_track $!
done
sleep 0.5

kd_out=$KD_TMP/log/kdist-nk.out
kd_err=$KD_TMP/log/kdist-nk.err
# shellcheck disable=SC2046
ip netns exec "$ns_a" "$KDIST" node -name nk@10.199.0.1 -setcookie "$KD_COOKIE" \
	$(kd_dist_args) -epmd_port "$KD_EPMD_PORT" -kernel net_ticktime 4 \
	>"$kd_out" 2>"$kd_err" &
kd_pid=$!
kd_track $kd_pid
wait_for "$kd_out" '^kdist: node .* up' 10 ||
	fail "kdist in namespace A printed no up line: $(tail -n 3 "$kd_err")"

kd_ebin 25
# erl_in_b NAME CHECK ARGS...: run a kdist_peer check in namespace B.
erl_in_b() {
	name=$1
	shift
	# shellcheck disable=SC2046
	timeout 120 ip netns exec "$ns_b" erl -noshell -name "$name@10.199.0.2" \
		-setcookie "$KD_COOKIE" $(kd_dist_args) -kernel net_ticktime 4 \
		-pa "$KD_EBIN" -run kdist_peer main "$@"
}

watch=$KD_TMP/watch
erl_in_b ne watch nk@10.199.0.1 "$watch" 60 >"$KD_TMP/log/erl-watch" 2>&1 &
watcher=$!
kd_track $watcher
wait_for "$watch" '^up' 30 || fail "erl in namespace B never connected: $(tail -n 3 "$KD_TMP/log/erl-watch")"
wait_for "$kd_out" '^kdist: nodeup ne@10.199.0.2' 5 || fail "kdist printed no nodeup line for ne"
sleep 2

t0=$(kd_now_ms)
ip -n "$ns_a" link set "$veth_a" down || fail "cannot set $veth_a down"
until grep -q '^kdist: nodedown ne@10.199.0.2' "$kd_out"; do
	[ $(($(kd_now_ms) - t0)) -lt 15000 ] ||
		fail "kdist printed no nodedown line 15 s after the partition: $(tail -n 3 "$kd_err")"
	sleep 0.1
done
took=$(($(kd_now_ms) - t0))
echo "# $(grep -m1 '^kdist: nodedown' "$kd_out") after $took ms"
[ "$took" -le 6000 ] ||
	fail "kdist declared ne down after $took ms, expected at most 5000 ms (1.25 x net_ticktime 4 s) plus 1 s"
wait_for "$watch" '^down' 10 || fail "erl did not declare kdist down: $(cat "$watch")"
echo "# erl: $(grep '^down' "$watch") (ms since up)"
wait "$watcher"

ip -n "$ns_a" link set "$veth_a" up || fail "cannot set $veth_a up"
tries=50
until reachable_from_b; do
	tries=$((tries - 1))
	[ $tries -gt 0 ] || fail "10.199.0.1 not reachable 50 tries after the link came back"
done
erl_in_b ne2 echo nk@10.199.0.1 >"$KD_TMP/log/erl-echo" 2>&1 ||
	fail "echo after the link came back failed: $(tail -n 2 "$KD_TMP/log/erl-echo")"
wait_for "$kd_out" '^kdist: nodeup ne2@10.199.0.2' 5 ||
	fail "kdist printed no nodeup line after the link came back"
ok
