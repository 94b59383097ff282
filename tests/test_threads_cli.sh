#!/bin/sh
# Where iaprune's thread count comes from: -j/--threads, IAPRUNE_THREADS,
# the pipeline's threads: key, else every CPU of the affinity mask; what
# --version reports; and the input errors for bad values. Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
# The build tree's real plugins (make check sets the same path): the default pipeline needs them.
b=$IAP_TEST_BUILDDIR/plugins
: "${IAPRUNE_PLUGIN_PATH:=$b/models/.libs:$b/attribution/.libs:$b/samplers/.libs:$b/policies/.libs:$b/datasets/.libs}"
IAPRUNE_PLUGIN_SYSTEM_PATH=
export IAPRUNE_PLUGIN_PATH IAPRUNE_PLUGIN_SYSTEM_PATH
unset IAPRUNE_THREADS

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-threads.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
	sed 's/^/# stdout: /' "$tmp/out"; sed 's/^/# stderr: /' "$tmp/err"
}
# expect STATUS DESCRIPTION FILE TEXT -- COMMAND...: status and a fixed string in FILE (out or err).
expect() {
	want=$1 desc=$2 file=$3 text=$4
	shift 5
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" -ne "$want" ]; then
		echo "# exit status $got, expected $want" >>"$tmp/err"; not_ok "$desc"
	elif ! grep -qF -- "$text" "$tmp/$file"; then
		echo "# missing in std$file: $text" >>"$tmp/err"; not_ok "$desc"
	else
		ok "$desc"
	fi
}

echo "1..9"

cpus=$(nproc)
expect 0 "default: every CPU this process may use" out "threads $cpus (of $cpus CPUs available)" -- \
	"$IAPRUNE" --version
expect 0 "--version: OpenBLAS runs one thread per call (one pool)" out "1 thread per call" -- \
	"$IAPRUNE" --version
if command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null; then
	expect 0 "the affinity mask, not the machine, sets the default" out "threads 1 (of 1 CPUs available)" -- \
		taskset -c 0 "$IAPRUNE" --version
else
	ok "the affinity mask, not the machine, sets the default # SKIP no taskset"
fi
expect 0 "IAPRUNE_THREADS sets the count" out "threads 3 (of $cpus" -- \
	env IAPRUNE_THREADS=3 "$IAPRUNE" --version
expect 2 "a malformed IAPRUNE_THREADS is an input error" err \
	"iaprune: IAPRUNE_THREADS: wants a thread count from 1 to 1024, not 'lots'" -- \
	env IAPRUNE_THREADS=lots "$IAPRUNE" --version
expect 2 "--threads 0 is refused" err "-j wants a thread count from 1 to 1024, not '0'" -- \
	"$IAPRUNE" run --threads 0 --dry-run
expect 2 "the pipeline's threads: key is range-checked" err "threads: 2000 is out of range [0, 1024]" -- \
	"$IAPRUNE" run --dry-run --set threads=2000
expect 0 "threads: is written out by --dry-run" out "threads: 6" -- \
	"$IAPRUNE" run --dry-run --threads 2 --set threads=6
expect 2 "IAPRUNE_THREADS is checked before a run starts" err "IAPRUNE_THREADS: wants" -- \
	env IAPRUNE_THREADS=0 "$IAPRUNE" run --dry-run

[ "$failed" -eq 0 ]
