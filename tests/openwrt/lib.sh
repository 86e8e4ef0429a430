# Shared helpers for the OpenWrt shell tests (run by bash or busybox ash).
# Every check prints one line, "PASS name" or "FAIL name: why"; the runner
# counts them. Nothing is skipped silently: a missing tool is a FAIL.
# shellcheck shell=bash disable=SC2034

TESTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$TESTS_DIR/../.." && pwd)"
PKG="$REPO/openwrt/lanveil"
DOUBLES="$TESTS_DIR/doubles"
WORK="${LANVEIL_TEST_WORK:-$REPO/target/openwrt-test}"
_pass=0
_fail=0

pass() { echo "PASS $1"; _pass=$((_pass + 1)); }
fail() { echo "FAIL $1: $2"; _fail=$((_fail + 1)); }

# check NAME COMMAND... : PASS if the command succeeds.
check() {
	local name="$1" out
	shift
	if out="$("$@" 2>&1)"; then
		pass "$name"
	else
		fail "$name" "$(printf '%s' "$out" | tail -n 15)"
	fi
}

finish() {
	echo "# $(basename "$0"): $_pass passed, $_fail failed"
	[ "$_fail" -eq 0 ]
}
