#!/bin/sh
# erl -> kdist: an erl node links two processes to the sink mailbox and
# monitors it from a third, then halts. The sink must get
# {'EXIT', Pid, noconnection} once per link and nothing for the monitor.
# A second node does the same, and the first one's exits must not come
# again.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
start_epmd
make_certs
start_kdist linkdown
total=0
for otp in $(kd_otps); do
	for round in 1 2; do
		erl_check "$otp" link_hold "$KD_NODE" ||
			fail "OTP $otp, round $round: $(erl_why link_hold "$otp")"
		held=$(sed -n 's/^kdist_peer: links held from //p' \
			"$KD_TMP/log/erl-link_hold-$otp")
		[ -n "$held" ] || fail "OTP $otp, round $round: link_hold printed no node name"
		total=$((total + 2))
		erl_check "$otp" link_exits "$KD_NODE" "$held" 2 "$total" ||
			fail "OTP $otp, round $round: $(erl_why link_exits "$otp")"
	done
done
need_real_kdist "the kdist log line for the broken links"
grep -q ': 2 links to local mailboxes broken' "$KD_ERR" ||
	fail "kdist logged no broken links: $(tail -n 3 "$KD_ERR")"
ok
