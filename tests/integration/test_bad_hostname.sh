#!/bin/sh
# kdist as TLS client rejects a server certificate that does not name the
# host part of the node name; servers do not check client host names, as
# in OTP, so only the client role applies.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "certificate checks of a kdist node"
start_epmd
make_certs
bad_cert_case wrong-host client
ok
