#!/bin/sh
# Each command's -help lists only the options that the command takes.
# -count is for ping only and -timeout for ping and send, so node's help
# lists neither. `kdist node` rejects both with an error that names the
# commands they apply to.
. "$(dirname "$0")/lib.sh"
kd_init
need_kdist
need_real_kdist "kdist help text"

help_of() {
	"$KDIST" "$1" -help >"$KD_TMP/log/help-$1" 2>&1 ||
		fail "kdist $1 -help exited non-zero: $(tail -n 2 "$KD_TMP/log/help-$1")"
}

# lists HELP OPTION: true when the help text of HELP has a line for OPTION.
lists() {
	grep -qE "^  $2 " "$KD_TMP/log/help-$1"
}

for cmd in node ping send; do
	help_of $cmd
	lists $cmd -sname || fail "kdist $cmd -help does not list -sname"
done
lists node -timeout && fail "kdist node -help lists -timeout, which applies only to ping and send"
lists node -count && fail "kdist node -help lists -count, which applies only to ping"
lists ping -timeout || fail "kdist ping -help does not list -timeout"
lists ping -count || fail "kdist ping -help does not list -count"
lists send -timeout || fail "kdist send -help does not list -timeout"
lists send -count && fail "kdist send -help lists -count, which applies only to ping"

for flag in -timeout -count; do
	"$KDIST" node -sname x $flag 100 >/dev/null 2>"$KD_TMP/log/err" &&
		fail "kdist node accepted $flag"
	grep -q -- "$flag applies only to kdist ping" "$KD_TMP/log/err" ||
		fail "kdist node $flag: $(head -n 1 "$KD_TMP/log/err")"
done
ok
