#!/bin/sh
# -kernel inet_dist_listen_min and inet_dist_listen_max. With the first
# port of the range in use, the node listens on the next one and
# registers that port with EPMD, as erl does, and an erl peer reaches it
# there. With every port in use, `kdist node` exits non-zero with an error
# that names the range.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the listen port range of a kdist node"
start_epmd
make_certs

# hold_ports COUNT: find COUNT consecutive free ports on loopback, keep
# listening sockets on them in a background process, and set KD_BASE to
# the first. The process ends with the test.
hold_ports() {
	ready=$KD_TMP/hold-$1
	python3 - "$1" "$ready" <<'PY' >"$KD_TMP/log/hold-$1" 2>&1 &
import random, socket, sys, time
count, ready = int(sys.argv[1]), sys.argv[2]
for _ in range(200):
    base = random.randrange(20000, 60000 - count)
    listeners = []
    try:
        for port in range(base, base + count):
            s = socket.socket()
            s.bind(("0.0.0.0", port))
            s.listen(1)
            listeners.append(s)
    except OSError:
        for s in listeners:
            s.close()
        continue
    # The two ports after these must be free, for the node.
    free = True
    for port in range(base + count, base + count + 2):
        t = socket.socket()
        try:
            t.bind(("0.0.0.0", port))
        except OSError:
            free = False
        t.close()
    if not free:
        for s in listeners:
            s.close()
        continue
    with open(ready, "w") as f:
        f.write(str(base))
    time.sleep(600)
    sys.exit(0)
sys.exit("no free port range found")
PY
	kd_track $!
	tries=50
	until [ -s "$ready" ]; do
		tries=$((tries - 1))
		[ $tries -gt 0 ] || fail "no range of $1 free ports: $(cat "$KD_TMP/log/hold-$1")"
		sleep 0.1
	done
	KD_BASE=$(cat "$ready")
}

# The first port of the range is taken: the node takes the second.
hold_ports 1
min=$KD_BASE
max=$((min + 2))
start_kdist range -kernel inet_dist_listen_min "$min" -kernel inet_dist_listen_max "$max"
[ "$KD_PORT" -eq $((min + 1)) ] ||
	fail "with port $min in use, the node listens on $KD_PORT, expected $((min + 1)) (range $min to $max)"
epmd -port "$KD_EPMD_PORT" -names | grep -q "^name range at port $KD_PORT\$" ||
	fail "EPMD does not list port $KD_PORT for the node: $(epmd -port "$KD_EPMD_PORT" -names)"
echo "# port $min in use: the node took $KD_PORT"
for otp in $(kd_otps); do
	erl_check "$otp" echo "$KD_NODE" ||
		fail "OTP $otp cannot reach the node on port $KD_PORT: $(erl_why echo "$otp")"
done

# Every port of the range is taken.
hold_ports 3
min=$KD_BASE
max=$((min + 2))
err=$KD_TMP/log/busy.err
timeout 20 "$KDIST" node -sname busy -setcookie "$KD_COOKIE" $(kd_dist_args) \
	-epmd_port "$KD_EPMD_PORT" -kernel inet_dist_listen_min "$min" \
	-kernel inet_dist_listen_max "$max" >/dev/null 2>"$err"
status=$?
[ $status -ne 0 ] || fail "kdist node started with every port from $min to $max in use"
[ $status -ne 124 ] || fail "kdist node still running 20 s after finding no free port"
grep -q "every port from $min to $max is in use" "$err" ||
	fail "the error does not name the range $min to $max: $(cat "$err")"
echo "# all ports in use: $(grep -m1 'every port' "$err")"
ok
