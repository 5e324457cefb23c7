#!/bin/sh
# -ktls on with a TLS protocol on a kernel without the tls ULP. `kdist
# node` used to start and then fail every TLS connection. Now it exits
# non-zero at start-up with an error that names the probe's reason and
# the fixes: -ktls auto, or load the tls module. Over inet_tcp the option
# has nothing to act on, so the node starts.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the kernel TLS start-up check of a kdist node"
start_epmd
make_certs

# The start-up probe's result, from a node that does not need kernel TLS.
start_kdist probe -ktls auto
probe=$(grep -m1 'node: kernel TLS:' "$KD_ERR" | sed 's/.*node: kernel TLS: //')
[ -n "$probe" ] || fail "no 'kernel TLS:' line in the log of a TLS node: $(tail -n 3 "$KD_ERR")"
stop_kdist "$KD_PID"
case $probe in
*"ULP not available"*) ;;
*) skip "this kernel can use kernel TLS ($probe), so -ktls on starts; the refusal needs a kernel without the tls ULP" ;;
esac

err=$KD_TMP/log/ktls-on.err
# shellcheck disable=SC2046
timeout 20 "$KDIST" node -sname ktlson -setcookie "$KD_COOKIE" $(kd_dist_args) \
	-epmd_port "$KD_EPMD_PORT" -ktls on >/dev/null 2>"$err"
status=$?
[ $status -ne 0 ] || fail "kdist node -ktls on started without the tls ULP ($probe)"
[ $status -ne 124 ] || fail "kdist node -ktls on still running 20 s after start-up without the tls ULP"
for text in "-ktls on" "$probe" "-ktls auto" "tls module"; do
	grep -qF -- "$text" "$err" || fail "the error does not say '$text': $(cat "$err")"
done
names=$(epmd -port "$KD_EPMD_PORT" -names)
echo "$names" | grep -q '^name ktlson ' && fail "EPMD has a registration for the refused node: $names"
echo "# $(grep -m1 'ktls on' "$err")"

KD_PROTO=inet_tcp
start_kdist tcpktlson -ktls on
ok
