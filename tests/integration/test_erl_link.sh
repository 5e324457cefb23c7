#!/bin/sh
# erl -> kdist: a link to a pid that names no kdist mailbox ends with
# noproc; unlink of a live mailbox returns at once and the link stays usable.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "links target pids built from the kdist creation"
start_epmd
make_certs
start_kdist link
for otp in $(kd_otps); do
	erl_check "$otp" link "$KD_NODE" "$KD_CREATION" ||
		fail "OTP $otp: $(erl_why link "$otp")"
done
ok
