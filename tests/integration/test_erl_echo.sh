#!/bin/sh
# erl -> kdist: terms sent to the echo service come back unchanged (atoms,
# unicode atoms, 1 MiB binaries, nested tuples, maps, pids, refs, floats).
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist echo
for otp in $(kd_otps); do
	erl_check "$otp" echo "$KD_NODE" || fail "OTP $otp: $(erl_why echo "$otp")"
done
ok
