#!/bin/sh
# A certificate from a CA that the peer does not trust is rejected in both
# roles, and kdist keeps serving good peers.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "certificate checks of a kdist node"
start_epmd
make_certs
bad_cert_case rogue "server client"
ok
