# The TAP helpers of the shell tests, sourced once IAP_TEST_SRCDIR is set:
#   tap_begin NAME [LINES]   a temporary folder $tmp (removed on exit); not_ok
#                            then shows the last LINES (default 30) of $tmp/err
#   ok TEXT, not_ok TEXT     one numbered TAP line
#   check TEXT EXPR          ok when the shell expression EXPR succeeds
# and $IAPRUNE, the program of the build tree under test.
: "${IAP_TEST_BUILDDIR:=.}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
n=0
tap_err_lines=30

tap_begin() {
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 1
	trap 'rm -rf "$tmp"' EXIT
	tap_err_lines=${2:-30}
}
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); echo "not ok $n - $1"
	tail -n "$tap_err_lines" "$tmp/err" 2>/dev/null | sed 's/^/# /'
}
check() { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }
