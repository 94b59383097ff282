#!/bin/sh
# `iaprune explain` and `iaprune attribute` call plugins inside the same call
# records as the runner (host/run/calls.h), so a plugin that crashes there is
# named with its kind, file and entry point and the command exits 1, with
# nothing written: the deliberately broken plugins of tests/plugins/bad.
# Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
FX="$IAP_TEST_SRCDIR/tests/fixtures/models"
good=$IAP_TEST_BUILDDIR/tests/plugins/.libs
bad=$IAP_TEST_BUILDDIR/tests/plugins/bad/.libs
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
IAPRUNE_PLUGIN_PATH=$good${IAPRUNE_PLUGIN_PATH:+:$IAPRUNE_PLUGIN_PATH}
export OMP_NUM_THREADS OPENBLAS_NUM_THREADS IAPRUNE_PLUGIN_PATH
tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-cguard.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
IAPRUNE_CACHE_DIR=$tmp/cache
export IAPRUNE_CACHE_DIR

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); echo "not ok $n - $1"
	echo "# status $status"
	sed 's/^/# stderr: /' "$tmp/err" | tail -n 8
}
check() { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }
has() { grep -qxF -- "$2" "$1"; }
# use VARIANT: the scratch folder holds only that broken plugin.
use() {
	rm -rf "$tmp/p"
	mkdir "$tmp/p"
	ln -s "$(cd "$bad" && pwd)/bad_$1.so" "$tmp/p/$1.so"
}
iap() {
	"$IAPRUNE" --plugin-path "$tmp/p" "$@" >"$tmp/out" 2>"$tmp/err"
	status=$?
}

echo "1..5"
# The corpus file starts with the fuzzer's selector byte.
tail -c +2 "$IAP_TEST_SRCDIR/fuzz/corpus/image/rgb8.png" >"$tmp/a.png"
M="--weights $FX/vgg11.safetensors --model vgg --model-option depth=11 --model-option width=0.025 --model-option image_size=32"

use score_segv
iap explain $M --attribution crash-score -o "$tmp/map.png" "$tmp/a.png"
check "explain: a segfault in the plugin's explain exits 1 naming plugin, kind, file and entry" \
	"[ $status -eq 1 ] && has $tmp/err \"iaprune: plugin 'crash-score' (attribution, $tmp/p/score_segv.so) crashed in explain with SIGSEGV\""
check "... and writes no heatmap" "[ ! -e $tmp/map.png ]"

iap attribute "$FX/vgg11.safetensors" --model vgg --model-option depth=11 --model-option width=0.025 \
	--model-option image_size=32 --attribution crash-score --samples "$tmp/a.png" -o "$tmp/a.npz" -q
check "attribute: a segfault in the plugin's scoring exits 1 naming it" \
	"[ $status -eq 1 ] && has $tmp/err \"iaprune: plugin 'crash-score' (attribution, $tmp/p/score_segv.so) crashed in score with SIGSEGV\""
check "... and writes no output" "[ ! -e $tmp/a.npz ]"

# A pipeline's sampler, called by attribute to choose the samples.
use select_segv
cat >"$tmp/p.yaml" <<YAML
version: 1
seed: 1
output: $tmp/run
dataset: { plugin: test-data, options: { n: 40, classes: 2 } }
model:
  plugin: test-mlp
  options: { hidden: 4 }
  train: { epochs: 1, batch_size: 8 }
sampling:
  - { plugin: bad-sampler, per_class: 3 }
attribution:
  - { plugin: test-grad, options: { steps: 1 } }
pruning: { policy: test-lowest, rates: [0.3], curve: false }
YAML
iap train -q "$tmp/p.yaml"
iap attribute "$tmp/p.yaml" -o "$tmp/s.npz" -q
check "attribute: a segfault in a pipeline's sampler exits 1 naming it" \
	"[ $status -eq 1 ] && has $tmp/err \"iaprune: plugin 'bad-sampler' (sampler, $tmp/p/select_segv.so) crashed in select with SIGSEGV\""
exit 0
