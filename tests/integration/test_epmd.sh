#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# kdist's EPMD against real erl nodes and OTP's epmd, on loopback ports:
#   - two erl -sname nodes register with `kdist epmd` and ping each other;
#   - `kdist names` lists nodes registered with OTP's epmd;
#   - `kdist epmd` on the port OTP's epmd uses fails with a clear message.
# Prints "ok <check>" or "FAIL <check>: <reason>" per check. Exits 0 if all
# pass, 1 if any fails, 77 if kdist or erl is missing.
# KDIST overrides the binary under test (default: build/kdist).

KDIST=${KDIST:-build/kdist}
COOKIE=kdist_epmd_test_$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kdist-epmd.XXXXXX") || exit 1
PIDS=""
failed=0

if [ ! -x "$KDIST" ]; then
	echo "skip: $KDIST missing"
	exit 77
fi
for tool in erl epmd; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "skip: $tool not installed"
		exit 77
	fi
done

cleanup() {
	for pid in $PIDS; do
		kill "$pid" 2>/dev/null
	done
	for pid in $PIDS; do
		wait "$pid" 2>/dev/null
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() {
	echo "ok $1"
}

fail() {
	echo "FAIL $1: $2"
	failed=1
}

# Runs "$@" every 0.2 s until it succeeds; returns 1 after 20 s of failures.
wait_until() {
	tries=100
	while ! "$@"; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		sleep 0.2
	done
}

# A port number in 20000..39999 that differs per run and per argument.
pick_port() {
	echo $((20000 + ($$ * 7 + $1) % 20000))
}

# Starts an erl node that stays up; its pid is added to PIDS.
start_node() {
	ERL_EPMD_PORT=$2 erl -sname "$1" -setcookie "$COOKIE" \
		-start_epmd false -noinput >"$WORK/$1.log" 2>&1 &
	PIDS="$PIDS $!"
}

names_list() {
	"$KDIST" names -epmd_port "$1" 2>"$WORK/names.err"
}

names_has() {
	names_list "$1" | grep -q "^name $2 at port [0-9][0-9]*\$"
}

# --- kdist epmd serves erl nodes ------------------------------------------

port=""
for i in 1 2 3 4 5; do
	try=$(pick_port "$i")
	"$KDIST" epmd -port "$try" -loopback >"$WORK/epmd.out" 2>"$WORK/epmd.err" &
	pid=$!
	if wait_until grep -q "listening on port $try" "$WORK/epmd.out"; then
		PIDS="$PIDS $pid"
		port=$try
		break
	fi
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	grep -q "already in use" "$WORK/epmd.err" || break
done
if [ -z "$port" ]; then
	fail "kdist_epmd_starts" "$(cat "$WORK/epmd.err")"
	exit 1
fi
ok "kdist_epmd_starts"

node_a=kda$$
node_b=kdb$$
start_node "$node_a" "$port"
start_node "$node_b" "$port"
if wait_until names_has "$port" "$node_a" &&
   wait_until names_has "$port" "$node_b"; then
	ok "erl_nodes_register"
else
	fail "erl_nodes_register" "kdist names printed: $(names_list "$port")"
fi

ping=$(ERL_EPMD_PORT=$port timeout 60 erl -sname "kdc$$" -setcookie "$COOKIE" \
	-start_epmd false -noshell -eval "
		[_, Host] = string:split(atom_to_list(node()), \"@\"),
		Peer = list_to_atom(\"$node_a@\" ++ Host),
		io:format(\"~p~n\", [net_adm:ping(Peer)]),
		halt()." 2>&1)
if [ "$ping" = "pong" ]; then
	ok "net_adm_ping_pong"
else
	fail "net_adm_ping_pong" "net_adm:ping returned '$ping'"
fi

if "$KDIST" names -epmd_port "$port" | head -n 1 |
   grep -q "^epmd: up and running on port $port with data:\$"; then
	ok "kdist_names_header"
else
	fail "kdist_names_header" "$(names_list "$port" | head -n 1)"
fi

# --- OTP's epmd -------------------------------------------------------------

otp_port=$(pick_port 11)
epmd -port "$otp_port" >"$WORK/otp-epmd.log" 2>&1 &
PIDS="$PIDS $!"
node_c=kdo$$
if wait_until epmd -port "$otp_port" -names >/dev/null 2>&1; then
	start_node "$node_c" "$otp_port"
	if wait_until names_has "$otp_port" "$node_c"; then
		ok "kdist_names_real_epmd"
	else
		fail "kdist_names_real_epmd" \
			"kdist names printed: $(names_list "$otp_port") $(cat "$WORK/names.err")"
	fi

	# timeout(1) ends a server that wrongly starts; it exits 124 then.
	timeout 20 "$KDIST" epmd -port "$otp_port" >"$WORK/taken.out" \
		2>"$WORK/taken.err"
	status=$?
	if [ "$status" -eq 1 ] &&
	   grep -q "port $otp_port is already in use" "$WORK/taken.err"; then
		ok "kdist_epmd_port_taken"
	else
		fail "kdist_epmd_port_taken" \
			"exit $status: $(cat "$WORK/taken.err" "$WORK/taken.out")"
	fi
else
	fail "kdist_names_real_epmd" "OTP epmd did not start on port $otp_port"
fi

exit $failed
