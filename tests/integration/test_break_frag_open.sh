#!/bin/sh
# One peer that opens many fragment sequences (131 69 first fragments)
# and never finishes them must not make kdist buffer more than its
# -max_message limit. kdist bounds each sequence by max_message and the
# count of sequences by KD_FRAG_MAX_SEQUENCES (1024), so one connection
# can hold 1024 times max_message: here 300 sequences of 1 MiB under a
# 4 MiB max_message keep about 300 MB.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the fragment flood measures the kdist process"
KD_FLOODPEER=$KD_TOOLS/floodpeer
[ -x "$KD_FLOODPEER" ] || skip "$KD_FLOODPEER not built; run 'make tools'"
start_epmd
make_certs
start_kdist fragopen -max_message 4194304

before=$(kd_rss_kb "$KD_PID")
"$KD_FLOODPEER" frag-open localhost "$KD_PORT" "$KD_NODE" "$KD_COOKIE" \
	"$KD_CONF" 300 30 2>>"$KD_TMP/log/floodpeer.err" &
flood=$!
kd_track $flood
wait_for "$KD_TMP/log/floodpeer.err" "floodpeer: frag-open: sent" 60 ||
	grep -q "conn floodpeer@localhost: down" "$KD_ERR" ||
	fail "floodpeer neither finished nor was disconnected in 60 s"
sleep 1
after=$(kd_rss_kb "$KD_PID")
grown=$(((after - before) / 1024))
kill "$flood"
kd_rss_within "$grown" 16 ||
	fail "RSS grew by $grown MB while one peer held 300 open 1 MiB fragment sequences under -max_message 4194304"
check_still_serves 25
ok
