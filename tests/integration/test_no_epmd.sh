#!/bin/sh
# With no EPMD on the configured port, `kdist node` exits non-zero with an
# error that names EPMD and the port, and `kdist ping` prints pang.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "kdist error messages"
make_certs
KD_EPMD_PORT=$(free_port)
out=$KD_TMP/log/node.out
err=$KD_TMP/log/node.err
timeout 20 "$KDIST" node -sname noepmd -setcookie "$KD_COOKIE" $(kd_dist_args) \
	-epmd_port "$KD_EPMD_PORT" >"$out" 2>"$err"
status=$?
[ $status -ne 0 ] || fail "kdist node exited 0 without EPMD"
[ $status -ne 124 ] || fail "kdist node still running 20 s after failing to reach EPMD"
grep -qi epmd "$err" || fail "the error does not name EPMD: $(cat "$err")"
grep -q "$KD_EPMD_PORT" "$err" || fail "the error does not name port $KD_EPMD_PORT: $(cat "$err")"
kdist_client ping "x@$KD_HOST" && fail "kdist ping exited 0 without EPMD"
grep -q '^pang' "$KD_TMP/log/client.out" ||
	fail "kdist ping printed '$(cat "$KD_TMP/log/client.out")', expected pang"
ok
