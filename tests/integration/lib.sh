# Helpers for the kdist integration tests; each tests/integration/test_*.sh
# sources this file. POSIX sh.
#
# Design. A test runs real nodes on loopback against a private EPMD:
#   - `start_kdist` runs `build/kdist node` in the background and waits for
#     its "up" line;
#   - `erl_check OTP CHECK ARGS` runs one Erlang-side check of
#     tests/erl/kdist_peer.erl in a fresh erl node (OTP 25 from the host, or
#     OTP 27 from the tree of tests/otp27/setup) and returns its status, so
#     each check is a whole Erlang program with its own timeouts;
#   - `start_erl` runs a long-lived erl node whose registered `inbox`
#     writes every message it gets to a file, for the kdist -> erl role.
# erl_call cannot drive the nodes because it has no TLS distribution.
#
# Every process a test starts is recorded by pid and ended by pid when the
# test exits; the temporary directory goes too unless KDIST_KEEP=1.
# Results: `ok`, `fail REASON` and `skip REASON` print the one result line
# ("ok NAME", "FAIL NAME: REASON", "skip NAME: REASON") and exit 0, 1, 77.

KD_REPO=$(cd "$(dirname "$0")/../.." && pwd)
KDIST=${KDIST:-$KD_REPO/build/kdist}
# The test peers of tests/tools; make test-integration points both at the
# build it tests.
KD_TOOLS=${KDIST_TOOLS:-$KD_REPO/build/tools}
# Multiplies the waits for kdist (up line, stop, wait_for); make
# test-valgrind sets it, since memcheck runs kdist many times slower.
KD_SCALE=${KDIST_TIME_SCALE:-1}
KD_TEST=$(basename "$0" .sh)
KD_TEST=${KD_TEST#test_}
KD_OTP27_ROOT=${KDIST_OTP27_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/kdist/otp27}
KD_PROTO=inet_tls
KD_NAMEFLAG=-sname
KD_HOST=$(hostname -s)

# --- results and cleanup -----------------------------------------------------

ok() {
	echo "ok $KD_TEST"
	exit 0
}

fail() {
	echo "FAIL $KD_TEST: $*"
	kd_dump_logs
	exit 1
}

skip() {
	echo "skip $KD_TEST: $*"
	exit 77
}

kd_dump_logs() {
	[ -n "${KD_TMP:-}" ] && [ -d "$KD_TMP/log" ] || return 0
	for f in "$KD_TMP"/log/*; do
		[ -s "$f" ] || continue
		echo "--- $(basename "$f") (last 15 lines)"
		tail -n 15 "$f"
	done
}

# Record a pid for kd_cleanup.
kd_track() {
	echo "$1" >>"$KD_TMP/pids"
}

# End every recorded process: SIGCONT first (a test may have stopped one),
# then SIGTERM, then SIGKILL for any still alive after KDIST_STOP_GRACE
# seconds (default 3; make test-valgrind gives more, so that memcheck can
# finish its leak check).
kd_cleanup() {
	status=$?
	trap - EXIT INT TERM
	if [ -f "$KD_TMP/pids" ]; then
		pids=$(cat "$KD_TMP/pids")
		for p in $pids; do kill -CONT "$p" 2>/dev/null; done
		for p in $pids; do kill -TERM "$p" 2>/dev/null; done
		tries=$((${KDIST_STOP_GRACE:-3} * 10))
		while [ $tries -gt 0 ]; do
			alive=
			for p in $pids; do
				kill -0 "$p" 2>/dev/null && alive=1
			done
			[ -z "$alive" ] && break
			sleep 0.1
			tries=$((tries - 1))
		done
		for p in $pids; do kill -KILL "$p" 2>/dev/null; done
	fi
	if [ "${KDIST_KEEP:-0}" = 1 ]; then
		echo "# kept $KD_TMP"
	else
		rm -rf "$KD_TMP"
		rmdir "$KD_OTP27_ROOT$KD_TMP" 2>/dev/null
	fi
	exit $status
}

# Create the test's temporary directory and the cleanup trap, a fresh
# cookie and HOME (so no test reads or writes ~/.erlang.cookie).
kd_init() {
	KD_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kdist-$KD_TEST.XXXXXX") ||
		{ echo "FAIL $KD_TEST: mktemp failed"; exit 1; }
	mkdir -p "$KD_TMP/log" "$KD_TMP/home"
	: >"$KD_TMP/pids"
	trap kd_cleanup EXIT
	trap 'exit 130' INT TERM
	KD_COOKIE=kdtest$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
	KDIST_OTP27_ROOT=$KD_OTP27_ROOT
	HOME=$KD_TMP/home
	ERL_CRASH_DUMP=$KD_TMP/log/erl_crash.dump
	export HOME KDIST_OTP27_ROOT ERL_CRASH_DUMP
	KDIST_OTP27_BIND=$KD_TMP
	export KDIST_OTP27_BIND
}

# --- prerequisites -----------------------------------------------------------

# KDIST_SELFTEST=1 runs the tests against an erl node that serves echo and
# sink like kdist, to check the harness itself; kdist-only steps skip.
need_kdist() {
	[ "${KDIST_SELFTEST:-0}" = 1 ] && return 0
	[ -x "$KDIST" ] || skip "$KDIST not built; run 'make cli'"
}

# Skip a step that only a kdist node can do, in self-test mode.
need_real_kdist() {
	[ "${KDIST_SELFTEST:-0}" = 1 ] && skip "self-test mode has no kdist node: $*"
	return 0
}

# need_native_speed WHAT: skip a test whose outcome is a time bound when
# kdist runs slowed down (KDIST_TIME_SCALE above 1, as under valgrind).
need_native_speed() {
	[ "$KD_SCALE" -gt 1 ] && skip "kdist runs $KD_SCALE times slower here (valgrind), and $*"
	return 0
}

# The OTP releases to run erl-facing cases with: 25 (host) and 27 when
# tests/otp27/setup has built its tree. KDIST_OTPS overrides the list.
kd_otps() {
	if [ -n "${KDIST_OTPS:-}" ]; then
		echo "$KDIST_OTPS"
	elif [ -f "$KD_OTP27_ROOT/.kdist-ready" ]; then
		echo "25 27"
	else
		echo 25
	fi
}

kd_erl_bin() {
	case $1 in
	25) echo erl ;;
	27) echo "$KD_REPO/tests/otp27/erl" ;;
	*) fail "unknown OTP release $1" ;;
	esac
}

# Compile tests/erl with the compiler of release $1 into KD_EBIN, which
# is $KD_TMP/ebin-$1.
kd_ebin() {
	KD_EBIN=$KD_TMP/ebin-$1
	ebin=$KD_EBIN
	if [ ! -d "$ebin" ]; then
		mkdir -p "$ebin"
		if [ "$1" = 25 ]; then
			erlc -o "$ebin" "$KD_REPO"/tests/erl/*.erl
		else
			KDIST_OTP27_CMD=erlc "$KD_REPO/tests/otp27/erl" \
				-o "$ebin" "$KD_REPO"/tests/erl/*.erl
		fi >"$KD_TMP/log/erlc-$1" 2>&1 || {
			rm -rf "$ebin"
			fail "erlc for OTP $1 failed: $(tail -n 1 "$KD_TMP/log/erlc-$1")"
		}
	fi
}

# --- ports, EPMD and certificates --------------------------------------------

free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Run a private EPMD on a free port, in the foreground of a background job
# (not -daemon, so it is ours to end), and export ERL_EPMD_PORT for every
# erl and kdist of the test.
start_epmd() {
	KD_EPMD_PORT=$(free_port)
	epmd -port "$KD_EPMD_PORT" >"$KD_TMP/log/epmd" 2>&1 &
	kd_track $!
	ERL_EPMD_PORT=$KD_EPMD_PORT
	export ERL_EPMD_PORT
	tries=50
	until epmd -port "$KD_EPMD_PORT" -names >/dev/null 2>&1; do
		tries=$((tries - 1))
		[ $tries -gt 0 ] || fail "epmd on port $KD_EPMD_PORT did not start"
		sleep 0.1
	done
}

# Certificates from tests/certs/mkcerts into $KD_TMP/certs, and the
# options files of the tests, written here on the same shape as the
# mkcerts ones (mutual TLS, verify_peer on both roles) but without
# secure_renegotiate, which OTP 25 rejects beside versions ['tlsv1.3']:
#   tls13.conf, tls12.conf   server.pem/client.pem, one TLS version
#   rogue.conf, wrong-host.conf, expired.conf
#                            TLS 1.3, that bad certificate on both roles
# KD_CONF, the options file of the current test, starts as tls13.conf.
make_certs() {
	KD_CERTS=$KD_TMP/certs
	"$KD_REPO/tests/certs/mkcerts" "$KD_CERTS" >"$KD_TMP/log/mkcerts" 2>&1 ||
		fail "tests/certs/mkcerts failed"
	write_conf tls13 server client "'tlsv1.3'"
	write_conf tls12 server client "'tlsv1.2'"
	for bad in rogue wrong-host expired; do
		write_conf "$bad" "$bad" "$bad" "'tlsv1.3'"
	done
	KD_CONF=$KD_CERTS/tls13.conf
}

# write_conf NAME SERVER_CERT CLIENT_CERT VERSIONS
write_conf() {
	c=$KD_CERTS
	cat >"$c/$1.conf" <<CONF
[{server, [{certfile, "$c/$2.pem"}, {keyfile, "$c/$2.key"},
	   {cacertfile, "$c/ca.pem"}, {versions, [$4]},
	   {verify, verify_peer}, {fail_if_no_peer_cert, true}]},
 {client, [{certfile, "$c/$3.pem"}, {keyfile, "$c/$3.key"},
	   {cacertfile, "$c/ca.pem"}, {versions, [$4]},
	   {verify, verify_peer}]}].
CONF
}

# The distribution flags for the current KD_PROTO and KD_CONF.
kd_dist_args() {
	echo "-proto_dist $KD_PROTO"
	case $KD_PROTO in
	*tls) echo "-ssl_dist_optfile $KD_CONF" ;;
	esac
}

# --- kdist -------------------------------------------------------------------

# start_kdist NAME [FLAGS...]: run a kdist node with the test's cookie,
# protocol and options file, wait up to 10 s for its "up" line, and set
# KD_NODE (full name), KD_PORT, KD_CREATION, KD_PID, KD_OUT and KD_ERR.
start_kdist() {
	name=$1
	shift
	if [ "${KDIST_SELFTEST:-0}" = 1 ]; then
		start_kdist_selftest "$name"
		return
	fi
	KD_OUT=$KD_TMP/log/kdist-$name.out
	KD_ERR=$KD_TMP/log/kdist-$name.err
	# shellcheck disable=SC2046
	"$KDIST" node $KD_NAMEFLAG "$name" -setcookie "$KD_COOKIE" \
		$(kd_dist_args) -epmd_port "$KD_EPMD_PORT" "$@" \
		>"$KD_OUT" 2>"$KD_ERR" &
	KD_PID=$!
	kd_track $KD_PID
	tries=$((100 * KD_SCALE))
	until grep -q '^kdist: node .* up' "$KD_OUT" 2>/dev/null; do
		kill -0 $KD_PID 2>/dev/null ||
			fail "kdist node $name exited before its up line: $(tail -n 3 "$KD_ERR")"
		tries=$((tries - 1))
		[ $tries -gt 0 ] || fail "kdist node $name printed no up line in $((10 * KD_SCALE)) s"
		sleep 0.1
	done
	up=$(grep -m1 '^kdist: node .* up' "$KD_OUT")
	KD_NODE=$(echo "$up" | sed -n 's/^kdist: node \([^ ]*\) up.*/\1/p')
	KD_PORT=$(echo "$up" | sed -n 's/.*(port \([0-9]*\),.*/\1/p')
	KD_CREATION=$(echo "$up" | sed -n 's/.*creation \([0-9]*\),.*/\1/p')
	[ -n "$KD_NODE" ] && [ -n "$KD_PORT" ] && [ -n "$KD_CREATION" ] ||
		fail "cannot parse the up line: $up"
}

start_kdist_selftest() {
	start_erl 25 "$1"
	KD_NODE=$ERL_NODE
	KD_PID=$ERL_PID
	KD_OUT=$KD_TMP/log/erl-$1
	KD_ERR=$KD_OUT
	KD_CREATION=0
	KD_PORT=$(epmd -port "$KD_EPMD_PORT" -names | sed -n "s/^name $1 at port //p")
}

# stop_kdist PID [SECONDS]: SIGTERM and wait up to SECONDS (default 10)
# times KD_SCALE; returns the exit status.
stop_kdist() {
	kill -TERM "$1" 2>/dev/null || return 1
	tries=$((${2:-10} * 10 * KD_SCALE))
	while kill -0 "$1" 2>/dev/null; do
		tries=$((tries - 1))
		[ $tries -gt 0 ] || fail "kdist pid $1 still running $((${2:-10} * KD_SCALE)) s after SIGTERM"
		sleep 0.1
	done
	wait "$1"
}

# kdist_client CMD ARGS...: run `kdist ping|send` with the test's cookie,
# protocol, options file and EPMD; output goes to $KD_TMP/log/client.
kdist_client() {
	cmd=$1
	shift
	# shellcheck disable=SC2046
	timeout 30 "$KDIST" "$cmd" "$@" -setcookie "$KD_COOKIE" \
		$(kd_dist_args) -epmd_port "$KD_EPMD_PORT" \
		>"$KD_TMP/log/client.out" 2>"$KD_TMP/log/client.err"
}

# --- erl -----------------------------------------------------------------------

# erl_check OTP CHECK ARGS...: run kdist_peer:main([CHECK | ARGS]) in a new
# erl node of release OTP named check_<random>; returns its exit status and
# leaves the output in $KD_TMP/log/erl-CHECK-OTP. KD_ERL_FLAGS adds flags.
erl_check() {
	otp=$1
	check=$2
	shift 2
	kd_ebin "$otp"
	log=$KD_TMP/log/erl-$check-$otp
	node=check$$_$(kd_rand)
	[ "$KD_NAMEFLAG" = -name ] && node=$node@$KD_HOST
	# shellcheck disable=SC2046,SC2086
	timeout 120 "$(kd_erl_bin "$otp")" -noshell $KD_NAMEFLAG "$node" \
		-setcookie "$KD_COOKIE" $(kd_dist_args) ${KD_ERL_FLAGS:-} \
		-pa "$KD_EBIN" -run kdist_peer main "$check" "$@" >"$log" 2>&1
}

# The failure line of the last erl_check of CHECK on OTP, for fail().
erl_why() {
	why=$(grep -h 'kdist_peer:.*failed' "$KD_TMP/log/erl-$1-$2" 2>/dev/null | tail -n 1)
	[ -n "$why" ] || why=$(tail -n 1 "$KD_TMP/log/erl-$1-$2" 2>/dev/null)
	echo "${why:-no output}"
}

kd_rand() {
	od -An -N2 -tu2 /dev/urandom | tr -d ' '
}

# start_erl OTP NAME: a long-lived erl node running kdist_peer:serve, whose
# inbox process writes each message it receives to $KD_TMP/NAME.inbox.
# Sets ERL_NODE and ERL_PID.
start_erl() {
	otp=$1
	name=$2
	kd_ebin "$otp"
	log=$KD_TMP/log/erl-$name
	: >"$KD_TMP/$name.inbox"
	# shellcheck disable=SC2046,SC2086
	"$(kd_erl_bin "$otp")" -noshell $KD_NAMEFLAG "$name" \
		-setcookie "$KD_COOKIE" $(kd_dist_args) ${KD_ERL_FLAGS:-} \
		-pa "$KD_EBIN" -run kdist_peer serve "$KD_TMP/$name.inbox" \
		>"$log" 2>&1 &
	ERL_PID=$!
	kd_track $ERL_PID
	ERL_NODE=$name@$KD_HOST
	[ "$KD_NAMEFLAG" = -name ] && ERL_NODE=$name
	tries=150
	until grep -q 'kdist_peer: serving' "$log" 2>/dev/null; do
		kill -0 $ERL_PID 2>/dev/null || fail "erl node $name exited: $(tail -n 3 "$log")"
		tries=$((tries - 1))
		[ $tries -gt 0 ] || fail "erl node $name not serving after 15 s"
		sleep 0.1
	done
	# serve/1 prints before EPMD may have the name on a slow start.
	tries=50
	until epmd -port "$KD_EPMD_PORT" -names 2>/dev/null | grep -q "name ${name%%@*} "; do
		tries=$((tries - 1))
		[ $tries -gt 0 ] || fail "erl node $name not registered with epmd"
		sleep 0.1
	done
}

# kd_fd_count PID: the number of open fds of PID.
kd_fd_count() {
	ls "/proc/$1/fd" | wc -l
}

# kd_clock_ms HH:MM:SS.mmm: milliseconds since midnight UTC of the time
# stamp that kdist and the test peers put at the start of each log line.
kd_clock_ms() {
	echo "$1" | awk -F'[:.]' '{ print (($1 * 60 + $2) * 60 + $3) * 1000 + $4 }'
}

# kd_now_ms: milliseconds since the epoch.
kd_now_ms() {
	date +%s%3N
}

# kd_rss_kb PID: the VmRSS of PID in kB.
kd_rss_kb() {
	sed -n 's/^VmRSS:[^0-9]*\([0-9]*\) kB/\1/p' "/proc/$1/status"
}

# kd_rss_within GROWN_MB LIMIT_MB: true when the growth is within the
# limit, or when kdist runs under valgrind or a sanitizer
# (KDIST_RSS_CHECKS=0), whose shadow memory and queue of freed blocks
# count in the process's RSS.
kd_rss_within() {
	if [ "${KDIST_RSS_CHECKS:-1}" = 0 ]; then
		echo "# RSS growth $1 MB not checked against $2 MB: kdist runs under valgrind or a sanitizer"
		return 0
	fi
	[ "$1" -le "$2" ]
}

# wait_for FILE PATTERN SECONDS: wait until grep finds PATTERN in FILE.
wait_for() {
	tries=$(($3 * 10 * KD_SCALE))
	until grep -q -- "$2" "$1" 2>/dev/null; do
		tries=$((tries - 1))
		[ $tries -gt 0 ] || return 1
		sleep 0.1
	done
}

# check_still_serves OTP: after a bad peer, a good erl peer must still get
# pong and an echo from the kdist node.
# badpeer MODE OPTFILE|- [SECONDS]: runs $KD_TOOLS/badpeer against the
# kdist node of start_kdist (see tests/tools/badpeer.c for the modes).
KD_BADPEER=$KD_TOOLS/badpeer
need_badpeer() {
	[ -x "$KD_BADPEER" ] || skip "$KD_BADPEER not built; run 'make tools'"
}

badpeer() {
	"$KD_BADPEER" "$1" localhost "$KD_PORT" "$KD_NODE" "$KD_COOKIE" "$2" \
		${3:+"$3"} 2>>"$KD_TMP/log/badpeer.err"
}

check_still_serves() {
	erl_check "$1" echo "$KD_NODE" ||
		fail "kdist no longer serves a good OTP $1 peer: $(erl_why echo "$1")"
}

# bad_cert_case BAD ROLES: the options file $KD_CERTS/BAD.conf must make a
# connection fail. ROLES lists "server" (an erl client with the bad
# certificate connects to the kdist node) and/or "client" (`kdist ping` to
# an erl node that serves the bad certificate). Afterwards kdist must
# still serve a good peer.
bad_cert_case() {
	bad=$1
	roles=$2
	start_kdist "node_$(echo "$bad" | tr -c 'a-z0-9\n' _)"
	for otp in $(kd_otps); do
		case $roles in *server*)
			KD_CONF=$KD_CERTS/$bad.conf
			erl_check "$otp" pang "$KD_NODE" ||
				fail "OTP $otp, kdist as server: $(erl_why pang "$otp")"
			KD_CONF=$KD_CERTS/tls13.conf
			;;
		esac
		case $roles in *client*)
			KD_CONF=$KD_CERTS/$bad.conf
			start_erl "$otp" "bad$otp"
			KD_CONF=$KD_CERTS/tls13.conf
			kdist_client ping "$ERL_NODE" &&
				fail "OTP $otp: kdist ping accepted a server with the $bad certificate"
			grep -q '^pang' "$KD_TMP/log/client.out" ||
				fail "OTP $otp: kdist ping printed '$(cat "$KD_TMP/log/client.out")'"
			kill "$ERL_PID"
			;;
		esac
		check_still_serves "$otp"
	done
}
