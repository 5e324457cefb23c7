#!/bin/sh
# Kernel TLS end to end: kdist nodes and erl nodes over TLS distribution,
# for every TLS version and cipher kernel TLS carries, with the record path
# the policy picks checked against the connection logs and, on a kernel
# with the tls ULP, against /proc/net/tls_stat. Then peers that rekey
# (OTP's key_update_at and renegotiate_at set low) and peers that spoil
# the stream (tests/ktls/bad_peer.py).
#
# Runs anywhere: without kernel TLS (the host) every connection takes the
# user-space path and the kernel-only checks print why they are skipped.
# tests/vm/inside runs it on Linux 6.1 and 7.x with KDIST_EXPECT_KTLS=1,
# which turns a missing tls ULP into a failure.
#
# Environment: KDIST_OTPS (see tests/integration/lib.sh), KDIST_KEEP=1
# keeps the temporary directory, KDIST_KTLS_STATS=FILE appends the
# tls_stat deltas of each case to FILE.
# Exit status: 0 pass, 1 fail, 77 skip (tests/integration/lib.sh).
. "$(dirname "$0")/../integration/lib.sh"
KD_TEST=ktls_e2e
HERE=$KD_REPO/tests/ktls

kd_init
need_kdist
need_real_kdist "the kernel TLS suite drives kdist nodes"
command -v python3 >/dev/null 2>&1 || skip "python3 is needed for bad_peer.py"
start_epmd
make_certs

# --- what this kernel offers ---------------------------------------------------

KTLS=0
REKEY=0
modprobe tls 2>/dev/null
if grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null &&
	[ -r /proc/net/tls_stat ]; then
	KTLS=1
	kv=$(uname -r)
	major=${kv%%.*}
	minor=${kv#*.}
	minor=${minor%%[!0-9]*}
	if [ "$major" -gt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -ge 14 ]; }; then
		REKEY=1
	fi
fi
if [ "${KDIST_EXPECT_KTLS:-0}" = 1 ] && [ $KTLS = 0 ]; then
	fail "KDIST_EXPECT_KTLS=1 but the tls ULP is missing on $(uname -r)"
fi
echo "# kernel $(uname -r): kernel TLS $([ $KTLS = 1 ] && echo yes || echo no), TLS 1.3 rekey $([ $REKEY = 1 ] && echo yes || echo no)"
[ $KTLS = 1 ] || echo "# skip kernel-only checks: no tls ULP on $(uname -r) (TCP_ULP \"tls\" unavailable), so no tls_stat deltas and no -ktls on nodes"

# --- helpers -------------------------------------------------------------------

# kconf NAME VERSIONS CIPHERS EXTRA: an options file like write_conf's,
# restricted to CIPHERS (one OpenSSL-style string, "" for all) and with
# EXTRA options (", {key, value}...") in both roles.
kconf() {
	kc=$KD_CERTS
	kc_ciphers=
	[ -n "$3" ] && kc_ciphers=", {ciphers, \"$3\"}"
	cat >"$kc/$1.conf" <<CONF
[{server, [{certfile, "$kc/server.pem"}, {keyfile, "$kc/server.key"},
	   {cacertfile, "$kc/ca.pem"}, {versions, [$2]},
	   {verify, verify_peer}, {fail_if_no_peer_cert, true}$kc_ciphers$4]},
 {client, [{certfile, "$kc/client.pem"}, {keyfile, "$kc/client.key"},
	   {cacertfile, "$kc/ca.pem"}, {versions, [$2]},
	   {verify, verify_peer}$kc_ciphers$4]}].
CONF
}

# stat NAME: a /proc/net/tls_stat counter, 0 without kernel TLS.
stat_of() {
	awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }' \
		/proc/net/tls_stat 2>/dev/null || echo 0
}

STATS="TlsTxSw TlsRxSw TlsDecryptError TlsRxNoPadViolation TlsTxRekeyOk TlsRxRekeyOk TlsRxRekeyReceived TlsTxRekeyError TlsRxRekeyError"

stat_snap() {
	[ $KTLS = 1 ] || return 0
	for s in $STATS; do
		echo "$s $(stat_of "$s")"
	done >"$KD_TMP/stat.$1"
}

# stat_delta A B NAME: how far NAME moved between snapshots A and B.
stat_delta() {
	a=$(awk -v k="$3" '$1 == k { print $2 }' "$KD_TMP/stat.$1")
	b=$(awk -v k="$3" '$1 == k { print $2 }' "$KD_TMP/stat.$2")
	echo $((${b:-0} - ${a:-0}))
}

stat_line() {
	[ $KTLS = 1 ] || { echo "(no kernel TLS)"; return; }
	line=
	for s in $STATS; do
		d=$(stat_delta "$1" "$2" "$s")
		[ "$d" != 0 ] && line="$line $s+$d"
	done
	echo "${line:- (none moved)}"
}

# expect_path MODE VERSION CIPHER: "kernel" or "user-space", the path the
# policy must pick on this kernel.
expect_path() {
	if [ $KTLS = 0 ] || [ "$1" = off ]; then
		echo user-space
	elif [ "$1" = on ]; then
		echo kernel
	elif [ "$2" = tls12 ]; then
		echo user-space
	elif [ "$3" = chacha ] || [ $REKEY = 1 ]; then
		echo kernel
	else
		echo user-space
	fi
}

# check_path LOG PEER ROLE PATH: the connection with PEER was up in ROLE
# on PATH according to LOG.
check_path() {
	line=$(grep "conn $2: up as $3" "$1" | tail -n 1)
	[ -n "$line" ] || fail "no 'conn $2: up as $3' line in $(basename "$1")"
	case $line in
	*"record path $4 "*) ;;
	*) fail "conn $2 ($3) expected record path $4: ${line#*: up as }" ;;
	esac
}

# start_knode VAR MODE: a kdist node for the whole run, on the broad
# options file, -ktls MODE. Sets VAR_NODE, VAR_ERR and VAR_PID.
start_knode() {
	KD_CONF=$KD_CERTS/any.conf
	start_kdist "$1" -ktls "$2"
	eval "${1}_NODE=\$KD_NODE ${1}_ERR=\$KD_ERR ${1}_PID=\$KD_PID ${1}_PORT=\$KD_PORT"
}

# kping NODE MODE LOGNAME: kdist ping (a kdist initiator) with the
# current KD_CONF and -ktls MODE; keeps its stderr as LOGNAME.
kping() {
	kdist_client ping "$1" -count 50 -ktls "$2"
	rc=$?
	cp "$KD_TMP/log/client.err" "$KD_TMP/log/$3"
	[ $rc -eq 0 ] || fail "kdist ping $1 -ktls $2: $(tail -n 2 "$KD_TMP/log/client.err")"
}

# The initiator's node name in a kdist ping log.
client_peer_line() {
	grep "conn $2: up as initiator" "$KD_TMP/log/$1" >/dev/null ||
		fail "no initiator line for $2 in $1: $(grep 'conn ' "$KD_TMP/log/$1" | head -n 2)"
}

kd_ebin_ktls() {
	kd_ebin "$1"
	[ -f "$KD_EBIN/ktls_peer.beam" ] && return
	if [ "$1" = 25 ]; then
		erlc -o "$KD_EBIN" "$HERE/ktls_peer.erl"
	else
		KDIST_OTP27_CMD=erlc "$KD_REPO/tests/otp27/erl" -o "$KD_EBIN" \
			"$HERE/ktls_peer.erl"
	fi >>"$KD_TMP/log/erlc-$1" 2>&1 || fail "erlc ktls_peer.erl for OTP $1 failed"
}

# start_peer OTP NAME NODES...: an erl node running ktls_peer traffic
# against each kdist node; waits until it serves its inbox.
start_peer() {
	otp=$1
	name=$2
	shift 2
	kd_ebin_ktls "$otp"
	log=$KD_TMP/log/erl-$name
	: >"$KD_TMP/$name.inbox"
	# shellcheck disable=SC2046
	"$(kd_erl_bin "$otp")" -noshell -sname "$name" -setcookie "$KD_COOKIE" \
		$(kd_dist_args) -pa "$KD_EBIN" \
		-run ktls_peer main traffic "$KD_TMP/$name.inbox" "$@" >"$log" 2>&1 &
	PEER_PID=$!
	kd_track $PEER_PID
	PEER_NODE=$name@$KD_HOST
	tries=2400
	until grep -q 'ktls_peer: serving' "$log" 2>/dev/null; do
		kill -0 $PEER_PID 2>/dev/null ||
			fail "erl $name: $(grep 'ktls_peer:' "$log" | tail -n 2) $(tail -n 2 "$log")"
		tries=$((tries - 1))
		[ $tries -gt 0 ] || fail "erl $name not serving after 240 s"
		sleep 0.1
	done
	grep 'ktls_peer: traffic' "$log" | sed 's/^/#   /'
}

stop_pid() {
	kill -TERM "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# --- nodes ---------------------------------------------------------------------

kconf any "'tlsv1.3', 'tlsv1.2'" "" ""
start_knode KAUTO auto
MODES=auto
if [ $KTLS = 1 ]; then
	start_knode KON on
	MODES="auto on"
fi

# --- 1. every version and cipher, both roles ------------------------------------

CASES="tls13:aes128:TLS_AES_128_GCM_SHA256
tls13:aes256:TLS_AES_256_GCM_SHA384
tls13:chacha:TLS_CHACHA20_POLY1305_SHA256
tls12:aes128:ECDHE-ECDSA-AES128-GCM-SHA256
tls12:aes256:ECDHE-ECDSA-AES256-GCM-SHA384
tls12:chacha:ECDHE-ECDSA-CHACHA20-POLY1305"

case_version() {
	case $1 in
	tls13) echo "'tlsv1.3'" ;;
	tls12) echo "'tlsv1.2'" ;;
	esac
}

OTPS=$(kd_otps)
if [ $KTLS = 1 ] && [ ! -w "$KD_OTP27_ROOT" ]; then
	[ "$OTPS" != 25 ] && echo "# skip OTP 27: $KD_OTP27_ROOT is read-only here, and tests/otp27/erl creates its mount points in it"
	OTPS=25
fi

n=0
for c in $CASES; do
	ver=${c%%:*}
	rest=${c#*:}
	ciph=${rest%%:*}
	suite=${rest#*:}
	kconf "$ver-$ciph" "$(case_version "$ver")" "$suite" ""
	KD_CONF=$KD_CERTS/$ver-$ciph.conf
	for otp in $OTPS; do
		n=$((n + 1))
		stat_snap "a$n"
		nodes=$KAUTO_NODE
		[ $KTLS = 1 ] && nodes="$KAUTO_NODE $KON_NODE"
		# shellcheck disable=SC2086
		start_peer "$otp" "p$n$ver$ciph" $nodes
		for mode in $MODES; do
			want=$(expect_path "$mode" "$ver" "$ciph")
			[ "$mode" = auto ] && log=$KAUTO_ERR || log=$KON_ERR
			[ "$mode" = auto ] && node=$KAUTO_NODE || node=$KON_NODE
			# erl -> kdist (kdist accepts), checked by ktls_peer traffic.
			check_path "$log" "$PEER_NODE" acceptor "$want"
			# kdist -> erl (kdist initiates).
			kping "$PEER_NODE" "$mode" "ping-$n-$mode-erl"
			check_path "$KD_TMP/log/ping-$n-$mode-erl" "$PEER_NODE" initiator "$want"
			# kdist -> kdist: both roles are kdist.
			kping "$node" "$mode" "ping-$n-$mode-kdist"
			check_path "$KD_TMP/log/ping-$n-$mode-kdist" "$node" initiator "$want"
			kdist_client send "$PEER_NODE" inbox "{kcase, $n, '$mode', <<\"$suite\">>}" ||
				fail "kdist send to $PEER_NODE: $(tail -n 1 "$KD_TMP/log/client.err")"
		done
		for mode in $MODES; do
			wait_for "$KD_TMP/p$n$ver$ciph.inbox" "{kcase,$n,$mode," 20 ||
				fail "$ver $ciph: erl inbox lacks the -ktls $mode message: $(cat "$KD_TMP/p$n$ver$ciph.inbox")"
		done
		stop_pid "$PEER_PID"
		stat_snap "b$n"
		echo "# $ver $ciph OTP $otp: auto -> $(expect_path auto "$ver" "$ciph")$([ $KTLS = 1 ] && echo ", on -> kernel"); tls_stat:$(stat_line "a$n" "b$n")"
		[ -n "${KDIST_KTLS_STATS:-}" ] &&
			echo "$(uname -r) $ver $ciph OTP$otp$(stat_line "a$n" "b$n")" >>"$KDIST_KTLS_STATS"
		if [ $KTLS = 1 ]; then
			# Every mode's connections that took the kernel: erl ->
			# kdist, kdist -> erl, and kdist -> kdist counted on both
			# ends.
			kern=0
			for mode in $MODES; do
				[ "$(expect_path "$mode" "$ver" "$ciph")" = kernel ] &&
					kern=$((kern + 4))
			done
			tx=$(stat_delta "a$n" "b$n" TlsTxSw)
			rx=$(stat_delta "a$n" "b$n" TlsRxSw)
			[ "$tx" -ge "$kern" ] && [ "$rx" -ge "$kern" ] ||
				fail "$ver $ciph: expected $kern kernel TLS sockets each way, tls_stat shows TlsTxSw+$tx TlsRxSw+$rx"
			[ "$(stat_delta "a$n" "b$n" TlsDecryptError)" = 0 ] ||
				fail "$ver $ciph: TlsDecryptError moved"
		fi
	done
done
echo "# 1. every version and cipher: traffic intact on the expected paths"

# --- 2. rekeys -----------------------------------------------------------------

# rekey_case NAME NODE ERRLOG WANT: ktls_peer rekey on OTP 25 against NODE
# with KD_CONF; WANT is "ok" or the reason the connection must die with.
rekey_case() {
	kd_ebin_ktls 25
	log=$KD_TMP/log/erl-$1
	stat_snap "r$1"
	# shellcheck disable=SC2046
	timeout 400 erl -noshell -sname "$1" -setcookie "$KD_COOKIE" $(kd_dist_args) \
		-pa "$KD_EBIN" -run ktls_peer main rekey "$2" 2000 1024 >"$log" 2>&1
	rc=$?
	stat_snap "s$1"
	res=$(grep 'ktls_peer: rekey' "$log" | tail -n 1)
	down=
	wait_for "$3" "conn $1@$KD_HOST: down" 20 &&
		down=$(grep "conn $1@$KD_HOST: down" "$3" | tail -n 1)
	echo "#   $1: ${res:-erl status $rc: $(tail -n 1 "$log")}"
	echo "#   $1: kdist: ${down#*kdist info: }"
	echo "#   $1: tls_stat:$(stat_line "r$1" "s$1")"
	if [ "$4" = ok ]; then
		[ $rc -eq 0 ] || fail "$1: messages lost or out of order across rekeys: $res"
	else
		[ $rc -ne 0 ] || fail "$1: expected the link to fail ($4), but every message arrived"
		case $down in
		*"$4"*) ;;
		*) fail "$1: expected a down line naming '$4', got: ${down:-none}" ;;
		esac
	fi
}

kconf ku13 "'tlsv1.3'" TLS_AES_128_GCM_SHA256 ", {key_update_at, 100000}"
kconf ku13c "'tlsv1.3'" TLS_CHACHA20_POLY1305_SHA256 ", {key_update_at, 100000}"
kconf rn12 "'tlsv1.2'" ECDHE-ECDSA-AES128-GCM-SHA256 ", {renegotiate_at, 300}"

echo "# 2. rekeys: 2000 x 1 KiB sequence-numbered messages echoed in order"
KD_CONF=$KD_CERTS/ku13.conf
rekey_case rkauto13 "$KAUTO_NODE" "$KAUTO_ERR" ok
KD_CONF=$KD_CERTS/ku13c.conf
rekey_case rkauto13c "$KAUTO_NODE" "$KAUTO_ERR" ok
KD_CONF=$KD_CERTS/rn12.conf
rekey_case rkauto12 "$KAUTO_NODE" "$KAUTO_ERR" ok
if [ $KTLS = 1 ]; then
	KD_CONF=$KD_CERTS/ku13.conf
	if [ $REKEY = 1 ]; then
		rekey_case rkon13 "$KON_NODE" "$KON_ERR" ok
	else
		rekey_case rkon13 "$KON_NODE" "$KON_ERR" "kernel cannot follow before Linux 6.14"
	fi
	KD_CONF=$KD_CERTS/rn12.conf
	rekey_case rkon12 "$KON_NODE" "$KON_ERR" "renegotiation"
	KD_CONF=$KD_CERTS/any.conf
	kping "$KON_NODE" on ping-after-rekey
else
	echo "#   skip -ktls on rekey cases: no kernel TLS on $(uname -r)"
fi

# --- 3. spoiled streams ----------------------------------------------------------

echo "# 3. a tampered record, a truncated record, close_notify mid-stream"
kconf chacha13 "'tlsv1.3'" TLS_CHACHA20_POLY1305_SHA256 ""
KD_CONF=$KD_CERTS/chacha13.conf
start_kdist kbad -ktls auto
bad_err=$KD_ERR
bad_node=$KD_NODE
bad_port=$KD_PORT
start_peer 25 bystander "$bad_node"
want=$(expect_path auto tls13 chacha)
for mode in tamper truncate close_notify; do
	name=bad_$mode@$KD_HOST
	python3 "$HERE/bad_peer.py" "$mode" "$bad_port" "$name" "$KD_COOKIE" \
		"$KD_CERTS" >"$KD_TMP/log/bad-$mode" 2>&1 ||
		fail "$mode: $(tail -n 1 "$KD_TMP/log/bad-$mode")"
	wait_for "$bad_err" "conn $name: down" 10 ||
		fail "$mode: kdist logged no down line for $name"
	check_path "$bad_err" "$name" acceptor "$want"
	down=$(grep "conn $name: down" "$bad_err" | tail -n 1)
	echo "#   $(cat "$KD_TMP/log/bad-$mode")"
	echo "#   kdist: ${down#*kdist info: }"
	reason=$(echo "$down" | sed 's/.*: down (\(.*\)): TLSv1.*/\1/')
	case $mode:$reason in
	tamper:*"bad record mac"* | tamper:*bad_record_mac* | \
		tamper:*"Bad message"* | truncate:*truncated* | \
		truncate:*"without TLS close_notify"* | \
		close_notify:*close_notify* | close_notify:*"truncated packet"*) ;;
	*) fail "$mode: the down reason does not name the fault: $reason" ;;
	esac
done
grep -q "conn $PEER_NODE: down" "$bad_err" &&
	fail "the bystander connection went down with the bad peers"
kdist_client send "$PEER_NODE" inbox still_here ||
	fail "kdist send to the bystander failed"
wait_for "$KD_TMP/bystander.inbox" still_here 10 || fail "bystander got nothing"
KD_CONF=$KD_CERTS/chacha13.conf
kping "$bad_node" auto ping-after-bad
echo "#   the bystander connection and new connections kept working"

ok
