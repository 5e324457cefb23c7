#!/bin/sh
# Kernel TLS end to end: kdist nodes and erl nodes over TLS distribution,
# for every TLS version and cipher kernel TLS carries, with the record path
# the policy picks checked against the connection logs and, on a kernel
# with the tls ULP, against /proc/net/tls_stat. Then peers that rekey
# (OTP's key_update_at and renegotiate_at set low) and peers that spoil
# the stream (tests/ktls/bad_peer.py). Then `openssl s_client` and
# `s_server` as the TLS peer, sending KeyUpdates and renegotiations on command
# (tests/ktls/openssl_rekey.py).
#
# Runs anywhere: without kernel TLS (the host) every connection takes the
# user-space path and the kernel-only checks print why they are skipped.
# tests/vm/inside runs it on Linux 6.1 and 7.x with KDIST_EXPECT_KTLS=1,
# which turns a missing tls ULP into a failure.
#
# Environment: KDIST_OTPS (see tests/integration/lib.sh), KDIST_KEEP=1
# keeps the temporary directory, KDIST_KTLS_STATS=FILE appends the
# tls_stat deltas of each section to FILE, KDIST_KTLS_SEQ and
# KDIST_KTLS_SINK set ktls_peer's traffic counts, KDIST_KTLS_REKEY the
# messages of each rekey case (default 2000), KDIST_KTLS_OSSL the
# messages of each batch between openssl commands (default 100),
# KDIST_KTLS_SECTIONS the sections to run (default "1 2 3 4"),
# KDIST_KTLS_TEST the name in the result line (default ktls_e2e).
# Exit status: 0 pass, 1 fail, 77 skip (tests/integration/lib.sh).
. "$(dirname "$0")/../integration/lib.sh"
KD_TEST=${KDIST_KTLS_TEST:-ktls_e2e}
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

# stat_of NAME: a /proc/net/tls_stat counter, 0 without kernel TLS.
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
	# Without -v, kdist ping prints only its summary: "conn PEER: ... path=P (".
	if [ -z "$line" ] && [ "$3" = initiator ]; then
		line=$(grep "^kdist: conn $2: .* path=" "$1" | tail -n 1)
		case $line in
		*" path=$4 ("*) return 0 ;;
		"") ;;
		*) fail "conn $2 (initiator) expected record path $4: ${line#*: }" ;;
		esac
	fi
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
	start_kdist "$1" -ktls "$2" $KARGS
	eval "${1}_NODE=\$KD_NODE ${1}_ERR=\$KD_ERR ${1}_PID=\$KD_PID ${1}_PORT=\$KD_PORT"
}

# kping NODE MODE LOGNAME: kdist ping (a kdist initiator) with the
# current KD_CONF and -ktls MODE; keeps its stderr as LOGNAME.
kping() {
	kdist_client ping "$1" -count "${KDIST_KTLS_PINGS:-50}" -ktls "$2" $KARGS -timeout 60000
	rc=$?
	cat "$KD_TMP/log/client.err" "$KD_TMP/log/client.out" >"$KD_TMP/log/$3"
	[ $rc -eq 0 ] || fail "kdist ping $1 -ktls $2: $(tail -n 2 "$KD_TMP/log/client.err")"
}

# kd_ebin_ktls OTP: KD_EBIN with ktls_peer.beam for release OTP; the
# VM passes beams the host's OTP 25 compiled (KDIST_KTLS_EBIN), as erlc
# is slow under emulation, and OTP 27.3 loads them too.
kd_ebin_ktls() {
	if [ "$1" = 25 ] && [ -f "${KDIST_KTLS_EBIN:-/nonexistent}/ktls_peer.beam" ]; then
		KD_EBIN=$KDIST_KTLS_EBIN
		return
	fi
	KD_EBIN=$KD_TMP/kebin-$1
	[ -f "$KD_EBIN/ktls_peer.beam" ] && return
	mkdir -p "$KD_EBIN"
	if [ -f "${KDIST_KTLS_EBIN:-/nonexistent}/ktls_peer.beam" ]; then
		# OTP 27 runs chrooted, with access to the repository and KD_TMP only.
		cp "$KDIST_KTLS_EBIN/ktls_peer.beam" "$KD_EBIN/"
	elif [ "$1" = 25 ]; then
		erlc -o "$KD_EBIN" "$HERE/ktls_peer.erl"
	else
		KDIST_OTP27_CMD=erlc "$KD_REPO/tests/otp27/erl" -o "$KD_EBIN" \
			"$HERE/ktls_peer.erl"
	fi >>"$KD_TMP/log/erlc-$1" 2>&1 || fail "erlc ktls_peer.erl for OTP $1 failed"
}

# spawn_peer OTP NAME NODES...: an erl node running ktls_peer traffic
# against each kdist node, in the background; sets PEER_PID.
spawn_peer() {
	otp=$1
	name=$2
	shift 2
	kd_ebin_ktls "$otp"
	: >"$KD_TMP/$name.inbox"
	# shellcheck disable=SC2046,SC2086
	"$(kd_erl_bin "$otp")" -noshell -sname "$name" -setcookie "$KD_COOKIE" \
		$(kd_dist_args) $ERL_ARGS -pa "$KD_EBIN" \
		-run ktls_peer main traffic "$KD_TMP/$name.inbox" "$@" \
		>"$KD_TMP/log/erl-$name" 2>&1 &
	PEER_PID=$!
	kd_track $PEER_PID
}

# wait_peer NAME PID: waits until the peer serves its inbox after its
# traffic checks passed.
wait_peer() {
	name=$1
	PEER_PID=$2
	log=$KD_TMP/log/erl-$name
	PEER_NODE=$name@$KD_HOST
	tries=3000
	until grep -q 'ktls_peer: serving' "$log" 2>/dev/null; do
		kill -0 $PEER_PID 2>/dev/null ||
			fail "erl $name: $(grep 'ktls_peer:' "$log" | tail -n 2) $(tail -n 2 "$log")"
		tries=$((tries - 1))
		[ $tries -gt 0 ] || fail "erl $name not serving after 300 s"
		sleep 0.1
	done
	grep 'ktls_peer: traffic' "$log" | sed 's/^/#   /'
}

start_peer() {
	spawn_peer "$@"
	wait_peer "$2" "$PEER_PID"
}

stop_pid() {
	kill -TERM "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# --- nodes ---------------------------------------------------------------------

# Handshakes and replies take seconds under emulation: generous limits.
KARGS="-handshake_timeout 60000"
ERL_ARGS="-kernel net_setuptime 120"

kconf any "'tlsv1.3', 'tlsv1.2'" "" ""
start_knode KAUTO auto
MODES=auto
if [ $KTLS = 1 ]; then
	start_knode KON on
	MODES="auto on"
fi

# in_section N: whether section N is to run.
in_section() {
	case " ${KDIST_KTLS_SECTIONS:-1 2 3 4} " in
	*" $1 "*) return 0 ;;
	esac
	echo "# skip section $1: not in KDIST_KTLS_SECTIONS"
	return 1
}

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

section1() {
# All peers start at once (erl starts slowly under emulation); the
# tls_stat deltas cover the whole section.
stat_snap a
nodes=$KAUTO_NODE
[ $KTLS = 1 ] && nodes="$KAUTO_NODE $KON_NODE"
n=0
peers=
for c in $CASES; do
	ver=${c%%:*}
	rest=${c#*:}
	ciph=${rest%%:*}
	suite=${rest#*:}
	kconf "$ver-$ciph" "$(case_version "$ver")" "$suite" ""
	KD_CONF=$KD_CERTS/$ver-$ciph.conf
	for otp in $OTPS; do
		n=$((n + 1))
		# shellcheck disable=SC2086
		spawn_peer "$otp" "p$n$ver$ciph" $nodes
		peers="$peers $n:$ver:$ciph:$otp:$PEER_PID"
	done
done
kern=0
for p in $peers; do
	IFS=: read -r n ver ciph otp pid <<EOF
$p
EOF
	KD_CONF=$KD_CERTS/$ver-$ciph.conf
	wait_peer "p$n$ver$ciph" "$pid"
	for mode in $MODES; do
		want=$(expect_path "$mode" "$ver" "$ciph")
		[ "$want" = kernel ] && kern=$((kern + 4))
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
		# shellcheck disable=SC2086
		kdist_client send "$PEER_NODE" inbox "{kcase, $n, '$mode'}" $KARGS ||
			fail "kdist send to $PEER_NODE: $(tail -n 1 "$KD_TMP/log/client.err")"
		wait_for "$KD_TMP/p$n$ver$ciph.inbox" "{kcase,$n,$mode}" 60 ||
			fail "$ver $ciph: erl inbox lacks the -ktls $mode message: $(cat "$KD_TMP/p$n$ver$ciph.inbox")"
	done
	stop_pid "$pid"
	echo "# $ver $ciph OTP $otp: erl -> kdist, kdist -> erl, kdist -> kdist on: auto $(expect_path auto "$ver" "$ciph")$([ $KTLS = 1 ] && echo ", on kernel")"
done
stat_snap b
echo "# 1. tls_stat:$(stat_line a b)"
[ -n "${KDIST_KTLS_STATS:-}" ] &&
	echo "$(uname -r) section 1$(stat_line a b)" >>"$KDIST_KTLS_STATS"
if [ $KTLS = 1 ]; then
	# erl -> kdist, kdist -> erl, and kdist -> kdist counted on both ends.
	tx=$(stat_delta a b TlsTxSw)
	rx=$(stat_delta a b TlsRxSw)
	[ "$tx" -ge "$kern" ] && [ "$rx" -ge "$kern" ] ||
		fail "expected $kern kernel TLS sockets each way, tls_stat shows TlsTxSw+$tx TlsRxSw+$rx"
	[ "$(stat_delta a b TlsDecryptError)" = 0 ] || fail "TlsDecryptError moved"
fi
echo "# 1. every version and cipher: traffic intact on the expected paths"
}
in_section 1 && section1

# --- 2. rekeys -----------------------------------------------------------------

# spawn_rekey NAME NODE: ktls_peer rekey on OTP 25 against NODE with
# KD_CONF, in the background; records NAME for check_rekey.
spawn_rekey() {
	kd_ebin_ktls 25
	# shellcheck disable=SC2046,SC2086
	(timeout 400 erl -noshell -sname "$1" -setcookie "$KD_COOKIE" \
		$(kd_dist_args) $ERL_ARGS -pa "$KD_EBIN" \
		-run ktls_peer main rekey "$2" "$REKEY_COUNT" 1024 >"$KD_TMP/log/erl-$1" 2>&1
	 echo $? >"$KD_TMP/$1.rc") &
	kd_track $!
}

# check_rekey NAME ERRLOG WANT: WANT is "ok" (every message back in
# order) or words the kdist node's down line must name.
check_rekey() {
	tries=4200
	until [ -s "$KD_TMP/$1.rc" ]; do
		tries=$((tries - 1))
		[ $tries -gt 0 ] || fail "$1: no result after 420 s"
		sleep 0.1
	done
	rc=$(cat "$KD_TMP/$1.rc")
	res=$(grep 'ktls_peer: rekey' "$KD_TMP/log/erl-$1" | tail -n 1)
	down=
	wait_for "$2" "conn $1@$KD_HOST: down" 30 &&
		down=$(grep "conn $1@$KD_HOST: down" "$2" | tail -n 1)
	echo "#   $1: ${res:-erl status $rc: $(tail -n 1 "$KD_TMP/log/erl-$1")}"
	echo "#   $1: kdist: ${down#*kdist info: }"
	if [ "$3" = ok ]; then
		[ "$rc" -eq 0 ] || fail "$1: messages lost or out of order across rekeys: $res"
	else
		[ "$rc" -ne 0 ] || fail "$1: expected the link to fail ($3), but every message arrived"
		case $down in
		*"$3"*) ;;
		*) fail "$1: expected a down line naming '$3', got: ${down:-none}" ;;
		esac
	fi
}

kconf ku13 "'tlsv1.3'" TLS_AES_128_GCM_SHA256 ", {key_update_at, 100000}"
kconf ku13c "'tlsv1.3'" TLS_CHACHA20_POLY1305_SHA256 ", {key_update_at, 100000}"
# renegotiate_at counts records, and OTP checks it once per bundle of
# distribution data that its TLS sender encrypts, so a low value is needed
# to see a renegotiation: 600 KiB make about 40 full records.
kconf rn12 "'tlsv1.2'" ECDHE-ECDSA-AES128-GCM-SHA256 ", {renegotiate_at, 10}"

section2() {
REKEY_COUNT=${KDIST_KTLS_REKEY:-2000}
echo "# 2. rekeys: $REKEY_COUNT x 1 KiB sequence-numbered messages echoed in order"
stat_snap r
KD_CONF=$KD_CERTS/ku13.conf
spawn_rekey rkauto13 "$KAUTO_NODE"
KD_CONF=$KD_CERTS/ku13c.conf
spawn_rekey rkauto13c "$KAUTO_NODE"
KD_CONF=$KD_CERTS/rn12.conf
spawn_rekey rkauto12 "$KAUTO_NODE"
if [ $KTLS = 1 ]; then
	KD_CONF=$KD_CERTS/ku13.conf
	spawn_rekey rkon13 "$KON_NODE"
	KD_CONF=$KD_CERTS/rn12.conf
	spawn_rekey rkon12 "$KON_NODE"
fi
check_rekey rkauto13 "$KAUTO_ERR" ok
check_rekey rkauto13c "$KAUTO_ERR" ok
check_rekey rkauto12 "$KAUTO_ERR" ok
if [ $KTLS = 1 ]; then
	if [ $REKEY = 1 ]; then
		check_rekey rkon13 "$KON_ERR" ok
	else
		check_rekey rkon13 "$KON_ERR" "which the kernel cannot follow before Linux 6.14"
	fi
	# OTP renegotiates at renegotiate_at, and no kernel follows.
	check_rekey rkon12 "$KON_ERR" "renegotiation"
	KD_CONF=$KD_CERTS/any.conf
	kping "$KON_NODE" on ping-after-rekey
	echo "#   the -ktls on node still serves new connections"
else
	echo "#   skip -ktls on rekey cases: no kernel TLS on $(uname -r)"
fi
stat_snap s
echo "# 2. tls_stat:$(stat_line r s)"
[ -n "${KDIST_KTLS_STATS:-}" ] &&
	echo "$(uname -r) section 2$(stat_line r s)" >>"$KDIST_KTLS_STATS"
if [ $KTLS = 1 ] && [ $REKEY = 1 ]; then
	[ "$(stat_delta r s TlsRxRekeyOk)" -gt 0 ] ||
		fail "no TLS 1.3 receive rekey in tls_stat (TlsRxRekeyOk)"
	[ "$(stat_delta r s TlsTxRekeyOk)" -gt 0 ] ||
		fail "no TLS 1.3 transmit rekey in tls_stat (TlsTxRekeyOk)"
fi

}
in_section 2 && section2

# --- 3. spoiled streams ----------------------------------------------------------

section3() {
echo "# 3. a tampered record, a truncated record, close_notify mid-stream"
kconf chacha13 "'tlsv1.3'" TLS_CHACHA20_POLY1305_SHA256 ""
KD_CONF=$KD_CERTS/chacha13.conf
start_kdist kbad -ktls auto $KARGS
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
}
in_section 3 && section3

# --- 4. openssl s_client and s_server as rekey peers ------------------------------

# ossl_case NODE ROLE VERSION CIPHER SUITE COMMANDS WANT: openssl_rekey.py
# against the -ktls NODE (auto or on) node; WANT is "ok" or words that the
# node's down line for the openssl peer must contain. ROLE client is
# s_client connecting to the node, server the node connecting to
# s_server. Checks the record path the node logged and, with kernel TLS,
# the tls_stat counters the case moved.
ossl_case() {
	mode=$1 role=$2 ver=$3 ciph=$4 suite=$5 cmds=$6 want=$7
	if [ "$mode" = auto ]; then
		node=$KAUTO_NODE err=$KAUTO_ERR port=$KAUTO_PORT
	else
		node=$KON_NODE err=$KON_ERR port=$KON_PORT
	fi
	name=$role-$ver-$ciph-$mode
	log=$KD_TMP/log/ossl-$name
	path=$(expect_path "$mode" "$ver" "$ciph")
	[ "$role" = client ] && target=$port || target=$KD_EPMD_PORT
	stat_snap o1
	python3 "$HERE/openssl_rekey.py" "$role" "$target" "$node" "$KD_COOKIE" \
		"$KD_CERTS" "${ver#tls}" "$suite" "$cmds" "$OSSL_COUNT" >"$log" 2>&1
	rc=$?
	stat_snap o2
	sed 's/^openssl_rekey: /#     /' "$log"
	peer=$(sed -n 's/.*: node \([^ ]*\) connected$/\1/p' "$log")
	[ -n "$peer" ] || fail "$name: openssl_rekey.py did not connect: $(tail -n 1 "$log")"
	# kdist accepts s_client and connects to s_server.
	[ "$role" = client ] && kdrole=acceptor || kdrole=initiator
	check_path "$err" "$peer" "$kdrole" "$path"
	wait_for "$err" "conn $peer: down" 30 || fail "$name: kdist logged no down line for $peer"
	down=$(grep "conn $peer: down" "$err" | tail -n 1)
	echo "#   $name: kdist: ${down#*kdist info: }"
	if [ "$want" = ok ]; then
		[ "$rc" -eq 0 ] || fail "$name: $(grep FAIL "$log" | tail -n 1)"
	else
		[ "$rc" -ne 0 ] || fail "$name: expected the link to fail ($want), but every message arrived"
		case $down in
		*"$want"*) ;;
		*) fail "$name: expected a down line naming '$want', got: $down" ;;
		esac
	fi
	line=$(stat_line o1 o2)
	echo "#   $name: $path path, $cmds: $want; tls_stat:$line"
	[ -n "${KDIST_KTLS_STATS:-}" ] &&
		echo "$(uname -r) section 4 $name ($path, $cmds, $want)$line" >>"$KDIST_KTLS_STATS"
	[ $KTLS = 1 ] || return 0
	# The node's end of the openssl connection, plus for s_server the
	# trigger connection (Python's ssl, TLS 1.3 AES-256-GCM). The first
	# KeyUpdate a kdist process meets on the kernel path makes it probe
	# whether the kernel rekeys: one more TLS_TX, on a loopback socket.
	socks=0
	[ "$path" = kernel ] && socks=1
	[ "$role" = server ] && [ "$(expect_path "$mode" tls13 aes256)" = kernel ] &&
		socks=$((socks + 1))
	tx=$(stat_delta o1 o2 TlsTxSw)
	[ "$tx" -ge $socks ] && [ "$tx" -le $((socks + 1)) ] &&
		[ "$(stat_delta o1 o2 TlsRxSw)" = $socks ] ||
		fail "$name: expected $socks kernel TLS sockets each way, tls_stat shows$line"
	[ "$(stat_delta o1 o2 TlsDecryptError)" = 0 ] || fail "$name: TlsDecryptError moved"
	[ $REKEY = 1 ] || return 0
	# Each k or K is one receive rekey, each K also one transmit rekey,
	# when the kernel carries the connection.
	rx=0 tx=0
	if [ "$path" = kernel ] && [ "$ver" = tls13 ]; then
		rx=$(echo "$cmds" | tr -cd kK | wc -c)
		tx=$(echo "$cmds" | tr -cd K | wc -c)
	fi
	[ "$(stat_delta o1 o2 TlsRxRekeyOk)" = "$rx" ] && [ "$(stat_delta o1 o2 TlsTxRekeyOk)" = "$tx" ] ||
		fail "$name: expected TlsRxRekeyOk+$rx TlsTxRekeyOk+$tx, tls_stat shows$line"
}

section4() {
command -v openssl >/dev/null 2>&1 || {
	echo "# skip section 4: the openssl command is not installed"
	return 0
}
OSSL_COUNT=${KDIST_KTLS_OSSL:-100}
echo "# 4. openssl s_client and s_server sending KeyUpdates (k, K) and renegotiations (r, R), $OSSL_COUNT echoes per batch"
kconf ossl "'tlsv1.3', 'tlsv1.2'" "" ""
KD_CONF=$KD_CERTS/ossl.conf
# TLS 1.3 ChaCha20 takes the kernel path under auto on every kernel with
# the tls ULP, and a kernel before 6.14 cannot follow the KeyUpdate.
chacha13=ok
[ $KTLS = 1 ] && [ $REKEY = 0 ] &&
	chacha13="KeyUpdate, which the kernel cannot follow before Linux 6.14"
for role in client server; do
	# s_client has one renegotiation command, R; s_server has r and R
	# (R also sets SSL_VERIFY_CLIENT_ONCE, so a resumed handshake).
	[ $role = client ] && reneg=R,R || reneg=r,R
	ossl_case auto $role tls13 aes128 TLS_AES_128_GCM_SHA256 k,K ok
	ossl_case auto $role tls13 chacha TLS_CHACHA20_POLY1305_SHA256 k,K "$chacha13"
	ossl_case auto $role tls12 aes128 ECDHE-ECDSA-AES128-GCM-SHA256 "$reneg" ok
	ossl_case auto $role tls12 chacha ECDHE-ECDSA-CHACHA20-POLY1305 "$reneg" ok
done
if [ $KTLS = 1 ]; then
	# -ktls on puts TLS 1.2 in the kernel: the first renegotiation
	# must end that link with a reason that names it.
	ossl_case on client tls12 aes128 ECDHE-ECDSA-AES128-GCM-SHA256 R "renegotiation"
	ossl_case on server tls12 aes128 ECDHE-ECDSA-AES128-GCM-SHA256 r "renegotiation"
fi
# Only the connection that met the rekey went down.
KD_CONF=$KD_CERTS/any.conf
kping "$KAUTO_NODE" auto ping-after-openssl
[ $KTLS = 1 ] && kping "$KON_NODE" on ping-after-openssl-on
echo "# 4. openssl peers: every case ended as expected, and the nodes still serve"
}
in_section 4 && section4

ok
