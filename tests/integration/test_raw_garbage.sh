#!/bin/sh
# A peer that completes TLS and the distribution handshake and then sends
# a packet that is no distribution message has its connection closed with
# a reason naming the bad byte, and kdist keeps serving good peers.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_badpeer
start_epmd
make_certs
start_kdist rawgarbage
badpeer good "$KD_CONF" || fail "the well-behaved client got no echo reply"
badpeer garbage "$KD_CONF" || fail "kdist did not close the connection after garbage"
wait_for "$KD_ERR" "packet starts with byte" 5 ||
	fail "no log line names the bad packet: $(tail -n 5 "$KD_ERR")"
for otp in $(kd_otps); do
	check_still_serves "$otp"
done
badpeer good "$KD_CONF" || fail "a new client got no echo reply after the garbage"
ok
