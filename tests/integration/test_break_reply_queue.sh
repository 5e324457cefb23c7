#!/bin/sh
# A peer that never reads and sends SPAWN_REQUESTs, each followed by a
# SPAWN_REPLY, must not make kdist queue replies beyond its send queue
# limit (-send_queue, 8 MiB by default). The replies are sent with
# KD_SEND_FORCE (engine/dist.c session_reply), which skips that limit, so
# 1,000,000 requests queue about 90 MB for that peer.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "the flood measures the kdist process"
KD_FLOODPEER=$KD_TOOLS/floodpeer
[ -x "$KD_FLOODPEER" ] || skip "$KD_FLOODPEER not built; run 'make tools'"
start_epmd
make_certs
start_kdist replyqueue

before=$(kd_rss_kb "$KD_PID")
# floodpeer keeps the connection open without reading for 60 s.
"$KD_FLOODPEER" spawn localhost "$KD_PORT" "$KD_NODE" "$KD_COOKIE" \
	"$KD_CONF" 1000000 60 2>>"$KD_TMP/log/floodpeer.err" &
flood=$!
kd_track $flood
wait_for "$KD_TMP/log/floodpeer.err" "floodpeer: spawn: sent" 60 ||
	fail "floodpeer did not send 1000000 SPAWN_REQUESTs in 60 s: $(tail -n 1 "$KD_TMP/log/floodpeer.err")"
sleep 2
after=$(kd_rss_kb "$KD_PID")
grown=$(((after - before) / 1024))
kill "$flood"
# 8 MiB of queue, the socket buffers and slack.
kd_rss_within "$grown" 40 ||
	fail "RSS grew by $grown MB while a peer that never reads sent 1000000 SPAWN_REQUESTs (limit 40 MB; the send queue limit is 8 MiB)"
check_still_serves 25
ok
