#!/bin/sh
# A peer that sends LINK from one pid to the echo mailbox many times keeps
# one link, as in OTP, so kdist's memory does not grow with the count:
# 200,000 LINKs (12 MB on the wire) from one pid must add at most 32 MB
# of resident memory. (A relation is about 2 KB; storing each LINK as a
# new one would add about 400 MB.)
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the LINK flood measures the kdist process"
KD_FLOODPEER=$KD_TOOLS/floodpeer
[ -x "$KD_FLOODPEER" ] || skip "$KD_FLOODPEER not built; run 'make tools'"
start_epmd
make_certs
start_kdist linkdup

before=$(kd_rss_kb "$KD_PID")
"$KD_FLOODPEER" link-dup localhost "$KD_PORT" "$KD_NODE" "$KD_COOKIE" \
	"$KD_CONF" 200000 2>>"$KD_TMP/log/floodpeer.err" ||
	fail "floodpeer could not send 200000 LINKs: $(tail -n 1 "$KD_TMP/log/floodpeer.err")"
wait_for "$KD_ERR" "conn floodpeer@localhost: down" 10 ||
	fail "kdist logged no nodedown for floodpeer"
after=$(kd_rss_kb "$KD_PID")
grown=$(((after - before) / 1024))
kd_rss_within "$grown" 32 ||
	fail "RSS grew by $grown MB after 200000 LINKs from one pid (limit 32 MB)"
check_still_serves 25
ok
