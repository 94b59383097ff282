#!/bin/sh
# Kill safety (issue #20): a short run is killed with SIGKILL just before
# each rename that publishes an output (the test-only hook
# IAP_TEST_KILL_AT_RENAME=N in formats/atomic.c), then run again without the
# hook. The re-run must exit 0 and its report must equal, byte for byte, the
# report of a run that was never interrupted; no staging directory or
# temporary file may be left. Covers every epoch's checkpoint generation,
# the model, the score caches and the report generation; then the last ones
# again on the path for file systems without an atomic exchange. Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
# One thread: the runs are tiny, and thread start-up would dominate them.
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMP_NUM_THREADS OPENBLAS_NUM_THREADS
tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-kill.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

pipeline() {
	cat >"$tmp/$1.yaml" <<YAML
version: 1
name: kill
seed: 5
output: $tmp/$1
dataset:
  plugin: medmnist
  options: { path: $IAP_TEST_SRCDIR/tests/data/tiny.npz, image_size: 32 }
model:
  plugin: vgg
  options: { depth: 11, batch_norm: true, width: 0.0625 }
  train: { epochs: 2, batch_size: 8, lr: 0.01 }
sampling:
  - { plugin: random, per_class: 2 }
attribution:
  - plugin: lrp
  - plugin: magnitude
pruning:
  policy: global
  rates: [0.0, 0.5]
  curve: false
report:
  heatmaps: 1
  latency: false         # timings differ run to run; the reports are compared byte for byte
YAML
}

files="results.csv results.json report.md curves.svg"
pipeline ref
if ! "$IAPRUNE" run -q "$tmp/ref.yaml" >/dev/null 2>"$tmp/err"; then
	echo "1..1"; echo "not ok 1 - the uninterrupted run"; sed 's/^/# /' "$tmp/err"; exit 0
fi

n=0
failed=0
plan=""
N=1
# One entry per rename; the loop ends at the first N the run no longer reaches.
while [ "$N" -le 200 ]; do
	rm -rf "$tmp/out"
	pipeline out
	IAP_TEST_KILL_AT_RENAME=$N "$IAPRUNE" run -q "$tmp/out.yaml" >/dev/null 2>"$tmp/err"
	rc=$?
	[ "$rc" -eq 0 ] && break
	n=$((n + 1))
	why=""
	[ "$rc" -eq 137 ] || why="killed run exited $rc, not by SIGKILL (137)"
	if [ -z "$why" ] && ! "$IAPRUNE" run -q "$tmp/out.yaml" >/dev/null 2>"$tmp/err"; then
		why="the re-run failed: $(head -n 1 "$tmp/err")"
	fi
	for f in $files; do
		[ -z "$why" ] && ! cmp -s "$tmp/ref/report/$f" "$tmp/out/report/$f" && why="$f differs from the uninterrupted run"
	done
	left=$(find "$tmp/out" -name '*.tmp.*' -o -name '.*.new.*' -o -name '.*.old.*' | head -n 1)
	[ -z "$why" ] && [ -n "$left" ] && why="left behind: ${left#$tmp/}"
	if [ -z "$why" ]; then
		plan="${plan}ok $n - killed at rename $N, the re-run equals the uninterrupted run
"
	else
		failed=$((failed + 1))
		plan="${plan}not ok $n - killed at rename $N: $why
"
	fi
	N=$((N + 1))
done
# Where the file system has no atomic exchange (test-only IAP_TEST_NO_EXCHANGE), a
# commit moves the old set aside first: kill at the last renames, the report's commit.
points=$((N - 1))
N=$((points - 2))
while [ "$N" -le $((points + 10)) ]; do
	rm -rf "$tmp/out"
	IAP_TEST_NO_EXCHANGE=1 IAP_TEST_KILL_AT_RENAME=$N "$IAPRUNE" run -q "$tmp/out.yaml" >/dev/null 2>"$tmp/err"
	[ $? -eq 0 ] && break
	n=$((n + 1))
	IAP_TEST_NO_EXCHANGE=1 "$IAPRUNE" run -q "$tmp/out.yaml" >/dev/null 2>"$tmp/err"
	why=""
	for f in $files; do
		cmp -s "$tmp/ref/report/$f" "$tmp/out/report/$f" || why="$f differs from the uninterrupted run"
	done
	left=$(find "$tmp/out" -name '*.tmp.*' -o -name '.*.new.*' -o -name '.*.old.*' | head -n 1)
	[ -z "$why" ] && [ -n "$left" ] && why="left behind: ${left#$tmp/}"
	if [ -z "$why" ]; then plan="${plan}ok $n - without exchange: killed at rename $N, the re-run equals the uninterrupted run
"
	else plan="${plan}not ok $n - without exchange: killed at rename $N: $why
"
	fi
	N=$((N + 1))
done
n=$((n + 1))
echo "1..$n"
printf '%s' "$plan"
# The hook counts every publishing rename: a run of this size has more than 15.
if [ "$points" -gt 15 ]; then echo "ok $n - $points rename points exercised"
else echo "not ok $n - only $points rename points (is the hook honoured?)"; fi
exit 0
