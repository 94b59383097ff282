#!/bin/sh
# A plugin host that a broken plugin cannot take down (issue 15): every
# deliberately broken plugin of tests/plugins/bad/broken.c, linked alone into
# a scratch plugin folder next to the good test plugins, and what iaprune
# says about it — the scanner child and its cache, crashes and exit() during
# a run, the contracts on what plugins return, and the file checks made
# before a plugin is opened (truncated, world-writable).
# Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
good=$IAP_TEST_BUILDDIR/tests/plugins/.libs
bad=$IAP_TEST_BUILDDIR/tests/plugins/bad/.libs
IAPRUNE_PLUGIN_PATH=$good
IAPRUNE_PLUGIN_SYSTEM_PATH=
export IAPRUNE_PLUGIN_PATH IAPRUNE_PLUGIN_SYSTEM_PATH

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-host.XXXXXX") || exit 1
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
# Never the user's cache: a fresh one per test run.
IAPRUNE_CACHE_DIR=$tmp/cache
export IAPRUNE_CACHE_DIR

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); echo "not ok $n - $1"
	echo "# status $status"
	sed 's/^/# stdout: /' "$tmp/out"; sed 's/^/# stderr: /' "$tmp/err"
}
check() { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }
# has FILE TEXT: the file has a line equal to TEXT.
has() { grep -qxF -- "$2" "$1"; }

# use VARIANT: the scratch folder holds only that broken plugin.
use() {
	rm -rf "$tmp/p"
	mkdir "$tmp/p"
	ln -s "$(cd "$bad" && pwd)/bad_$1.so" "$tmp/p/$1.so"
}
# iap ARGS...: iaprune with the scratch folder on its path.
iap() {
	"$IAPRUNE" --plugin-path "$tmp/p" "$@" >"$tmp/out" 2>"$tmp/err"
	status=$?
}
# pipeline SAMPLER ATTRIBUTION POLICY MODEL HIDDEN: a tiny run on the test plugins.
pipeline() {
	rm -rf "$tmp/run"
	cat >"$tmp/p.yaml" <<YAML
version: 1
seed: 1
output: $tmp/run
dataset: { plugin: test-data, options: { n: 40, classes: 2 } }
model:
  plugin: $4
  train: { epochs: 1, batch_size: 8 }
sampling:
  - { plugin: $1, per_class: 3 }
attribution:
  - $2
pruning:
  policy: $3
  rates: [0.3]
  curve: false
YAML
	if [ "$4" = test-mlp ]; then
		sed -i "s/^  plugin: test-mlp$/  plugin: test-mlp\n  options: { hidden: $5 }/" "$tmp/p.yaml"
	fi
}
grad='{ plugin: test-grad, options: { steps: 1 } }'

echo "1..30"

# ---- discovery in a child process, and its cache ----------------------------------
use desc_segv
# A copy, not a link: the tests below change its mtime and content.
rm "$tmp/p/desc_segv.so"
cp "$bad/bad_desc_segv.so" "$tmp/p/desc_segv.so"
iap plugins
crash_msg="iaprune: warning: $tmp/p/desc_segv.so: broken: crashed the plugin scanner with SIGSEGV while its descriptor was read; skipped"
check "a descriptor that segfaults: 'plugins' still succeeds and lists the others" \
	"[ $status -eq 0 ] && grep -q '^  test-first ' $tmp/out"
check "... and names the file and the signal" "has $tmp/err '$crash_msg'"
check "... and lists it as skipped" \
	"has $tmp/out 'skipped:' && grep -qF '  $tmp/p/desc_segv.so: broken: crashed the plugin scanner with SIGSEGV' $tmp/out"
check "the verdict is cached, keyed by the file" \
	"grep -q \"^R	$tmp/p/desc_segv.so	.*	[0-9]*	11	$tmp/p/desc_segv.so: broken: crashed\" $tmp/cache/plugins.cache"

pipeline test-first "$grad" test-lowest test-mlp 4
iap run -q "$tmp/p.yaml"
check "a run whose pipeline does not name it succeeds" "[ $status -eq 0 ] && [ -s $tmp/run/report/results.csv ]"

# The cache answers while path, size and mtime (and content) match: a doctored verdict proves it is read.
sed -i "s|while its descriptor was read; skipped|CACHED|" "$tmp/cache/plugins.cache"
iap plugins
check "a second scan takes the verdict from the cache" \
	"has $tmp/err 'iaprune: warning: $tmp/p/desc_segv.so: broken: crashed the plugin scanner with SIGSEGV CACHED'"
touch -d '2000-01-01' "$tmp/p/desc_segv.so"
iap plugins
check "a newer mtime makes it scan again" "has $tmp/err '$crash_msg'"
# Same size and mtime, other content: the content hash tells them apart.
sed -i "s|while its descriptor was read; skipped|CACHED|" "$tmp/cache/plugins.cache"
# The last byte lies in the section header table, which neither the ELF check nor dlopen reads.
size=$(wc -c <"$tmp/p/desc_segv.so")
printf 'X' | dd of="$tmp/p/desc_segv.so" bs=1 seek=$((size - 1)) conv=notrunc 2>/dev/null
touch -d '2000-01-01' "$tmp/p/desc_segv.so"
iap plugins
check "same path, size and mtime but other content: scanned again" "! grep -q CACHED $tmp/err"

# 'plugins' runs no plugin code in iaprune itself: a constructor logs its parent process.
use ctor
IAP_TEST_CTOR_LOG=$tmp/ctor.log
export IAP_TEST_CTOR_LOG
rm -f "$tmp/ctor.log"
iap plugins
check "'plugins' runs a plugin's constructor only in the scanner child" \
	"[ $status -eq 0 ] && [ \$(wc -l <$tmp/ctor.log) -eq 1 ] && ! grep -q \" $$\\\$\" $tmp/ctor.log"
iap plugins
check "... and not at all once the scan is cached" "[ \$(wc -l <$tmp/ctor.log) -eq 1 ]"
unset IAP_TEST_CTOR_LOG

# ---- crashes and exit() during a run ---------------------------------------------------
use select_segv
pipeline bad-sampler "$grad" test-lowest test-mlp 4
iap run -q "$tmp/p.yaml"
check "a segfault in select: exit 1 and the plugin named" \
	"[ $status -eq 1 ] && has $tmp/err \"iaprune: plugin 'bad-sampler' (sampler, $tmp/p/select_segv.so) crashed in select with SIGSEGV\""
check "... and no report" "[ ! -e $tmp/run/report/results.csv ]"

use select_abort
iap run -q "$tmp/p.yaml"
check "abort() in select: exit 1 and the plugin named" \
	"[ $status -eq 1 ] && has $tmp/err \"iaprune: plugin 'bad-sampler' (sampler, $tmp/p/select_abort.so) crashed in select with SIGABRT\""

use score_segv
pipeline test-first crash-score test-lowest test-mlp 4
iap run -q "$tmp/p.yaml"
check "a segfault in score: exit 1 and the plugin named" \
	"[ $status -eq 1 ] && has $tmp/err \"iaprune: plugin 'crash-score' (attribution, $tmp/p/score_segv.so) crashed in score with SIGSEGV\""

use exit
pipeline bad-sampler "$grad" test-lowest test-mlp 4
iap run -q "$tmp/p.yaml"
check "exit(0) in select is a failure, not a silent success" \
	"[ $status -eq 1 ] && has $tmp/err \"iaprune: plugin 'bad-sampler' (sampler, $tmp/p/exit.so) called exit(0) in select before the run finished\""
check "... and nothing of the report is written" "[ ! -e $tmp/run/report ] && ! ls $tmp/run/*.tmp.* >/dev/null 2>&1"

# ---- contracts -------------------------------------------------------------------------
use range
iap run -q "$tmp/p.yaml"
check "an out-of-range sample index is the sampler's error" \
	"[ $status -eq 1 ] && has $tmp/err \"iaprune: sampler 'bad-sampler' ($tmp/p/range.so): returned sample 45, but the train split has 40 samples (0 to 39)\""
use dupidx
iap run -q "$tmp/p.yaml"
check "a duplicate sample index is refused" \
	"[ $status -eq 1 ] && has $tmp/err \"iaprune: sampler 'bad-sampler' ($tmp/p/dupidx.so): returned sample 0 more than once\""
use oneclass
iap run -q "$tmp/p.yaml"
check "samples all of one class are refused" \
	"[ $status -eq 1 ] && has $tmp/err \"iaprune: sampler 'bad-sampler' ($tmp/p/oneclass.so): returned 0 samples of class 1, but a sampler gives 3 per class (all of a class with fewer; class 1 has 20)\""

use overprune
pipeline test-first "$grad" over-prune test-mlp 20
iap run -q "$tmp/p.yaml"
check "a policy past the per-layer cap is an error, not a different rate" \
	"[ $status -eq 1 ] && grep -qF \"policy 'over-prune' ($tmp/p/overprune.so): pruned 19 of the 20 units of 'fc1' at rate 0.30; its cap is 18 (max_layer_rate 0.90, min_units 1)\" $tmp/err"
check "... and no report" "[ ! -e $tmp/run/report/results.csv ]"

use uncoupled
ln -s "$(cd "$bad" && pwd)/bad_coupled_model.so" "$tmp/p/coupled_model.so"
pipeline test-first "$grad" uncoupled test-coupled 0
iap run -q "$tmp/p.yaml"
check "inconsistent masks of coupled groups are refused" \
	"[ $status -eq 1 ] && grep -qF \"policy 'uncoupled' ($tmp/p/uncoupled.so): masks of the coupled groups 'fc1' and 'fc2' differ\" $tmp/err"

# ---- what the scan refuses ------------------------------------------------------------
use noheader
iap plugins
check "a descriptor without IAP_PLUGIN_HEADER says so" \
	"[ $status -eq 0 ] && has $tmp/err 'iaprune: warning: $tmp/p/noheader.so: descriptor has no ABI header (abi_major, abi_minor and size are 0): begin it with IAP_PLUGIN_HEADER'"
use zerosize
iap plugins
check "a vtable of size 0 says so" \
	"[ $status -eq 0 ] && has $tmp/err \"iaprune: warning: $tmp/p/zerosize.so: sampler plugin 'bad-sampler': its ops table has size 0: set .size = sizeof(struct iap_sampler_ops)\""

rm -rf "$tmp/p"
mkdir "$tmp/p"
size=$(wc -c <"$good/test_sampler.so")
head -c $((size / 2)) "$good/test_sampler.so" >"$tmp/p/half.so"
IAPRUNE_PLUGIN_PATH= iap plugins --kind sampler
check "a truncated .so is a warning, not a SIGBUS" \
	"[ $status -eq 0 ] && grep -q '^iaprune: warning: $tmp/p/half.so: truncated: $((size / 2)) bytes, but ' $tmp/err && has $tmp/out '  (none)'"

rm -rf "$tmp/p"
mkdir "$tmp/p"
cp "$good/test_sampler.so" "$tmp/p/s.so"
chmod o+w "$tmp/p"
IAPRUNE_PLUGIN_PATH= iap plugins --kind sampler
check "a world-writable plugin folder is refused with a warning naming it" \
	"[ $status -eq 0 ] && has $tmp/err 'iaprune: warning: $tmp/p: refusing a world-writable plugin directory (anyone could plant a plugin there; chmod o-w it)' && has $tmp/out '  (none)'"
chmod o-w "$tmp/p"
chmod o+w "$tmp/p/s.so"
IAPRUNE_PLUGIN_PATH= iap plugins --kind sampler
check "a world-writable plugin file is refused with a warning naming it" \
	"[ $status -eq 0 ] && has $tmp/err 'iaprune: warning: $tmp/p/s.so: refusing a world-writable plugin file (anyone could replace it; chmod o-w it)' && has $tmp/out '  (none)'"
chmod o-w "$tmp/p/s.so"
IAPRUNE_PLUGIN_PATH= iap plugins --kind sampler
check "the same folder and file without o+w are used" "[ $status -eq 0 ] && grep -q '^  test-first ' $tmp/out && [ ! -s $tmp/err ]"

# ---- the score cache key ---------------------------------------------------------------
# A rebuilt attribution plugin (other content, same name and version) must not get the old scores.
rm -rf "$tmp/p"
mkdir "$tmp/p"
cp "$good/test_attr.so" "$tmp/p/a.so"
pipeline test-first "$grad" test-lowest test-mlp 4
"$IAPRUNE" --plugin-path "$tmp/p" run -q "$tmp/p.yaml" >"$tmp/out" 2>"$tmp/err"
"$IAPRUNE" --plugin-path "$tmp/p" run "$tmp/p.yaml" >"$tmp/out" 2>"$tmp/err"
status=$?
check "the same plugin binary reuses its cached scores" "[ $status -eq 0 ] && grep -q 'from the cache' $tmp/err"
printf 'rebuilt' >>"$tmp/p/a.so"
"$IAPRUNE" --plugin-path "$tmp/p" run "$tmp/p.yaml" >"$tmp/out" 2>"$tmp/err"
status=$?
check "a rebuilt plugin binary is scored again" \
	"[ $status -eq 0 ] && ! grep -q 'from the cache' $tmp/err && grep -q 'scoring units with test-grad' $tmp/err"
