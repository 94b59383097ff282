#!/bin/sh
# What a run does with what earlier runs left (issue #20): score-cache files
# that were edited, poisoned with NaN or copied under another key are named,
# discarded and recomputed (the report equals a clean run's); a second run on
# a folder in use is refused naming the first one's pid; a checkpoint made
# with other settings is not resumed; leftovers of a killed run are removed;
# a write that fails says why and exits 1. Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMP_NUM_THREADS OPENBLAS_NUM_THREADS
tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-rec.XXXXXX") || exit 1
holder=
trap '[ -n "$holder" ] && kill "$holder" 2>/dev/null; rm -rf "$tmp"' EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; sed 's/^/# /' "$tmp/err" | tail -n 8; }
check() { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }
same() { for f in results.csv results.json report.md; do cmp -s "$tmp/$1/report/$f" "$tmp/$2/report/$f" || return 1; done; }

pipeline() {
	cat >"$tmp/$1.yaml" <<YAML
version: 1
seed: 5
output: $tmp/$1
dataset:
  plugin: medmnist
  options: { path: $IAP_TEST_SRCDIR/tests/data/tiny.npz, image_size: 32 }
model:
  plugin: vgg
  options: { depth: 11, batch_norm: true, width: 0.0625 }
  train: { epochs: 2, batch_size: 8, lr: ${2:-0.01} }
sampling:
  - { plugin: random, per_class: 2 }
attribution:
  - plugin: lrp
  - plugin: magnitude
pruning: { policy: global, rates: [0.0, 0.5], curve: false }
report: { latency: false }   # timings differ run to run; the reports are compared byte for byte
YAML
}

echo "1..12"
pipeline ref
pipeline out
"$IAPRUNE" run -q "$tmp/ref.yaml" >/dev/null 2>"$tmp/err"
"$IAPRUNE" run -q "$tmp/out.yaml" >/dev/null 2>"$tmp/err"
check "two clean runs agree" "same ref out"
caches=$(ls "$tmp/out/cache/")
a=$tmp/out/cache/$(echo "$caches" | head -n 1)
b=$tmp/out/cache/$(echo "$caches" | tail -n 1)

# poke FILE OFFSET-IN-DATA BYTES...: overwrite bytes of the first tensor's data.
poke() {
	hlen=$(od -An -tu8 -N8 "$1" | tr -d ' ')
	off=$((8 + hlen + $2))
	shift 2
	printf "$*" | dd of="$a" bs=1 seek="$off" conv=notrunc 2>/dev/null
}
# Flip the sign of the first score (its fourth byte holds the sign bit).
byte=$(od -An -tu1 -j $(( $(od -An -tu8 -N8 "$a" | tr -d ' ') + 8 + 3 )) -N1 "$a" | tr -d ' ')
poke "$a" 3 "\\$(printf '%03o' $((byte ^ 128)))"
"$IAPRUNE" run -q "$tmp/out.yaml" >/dev/null 2>"$tmp/err"
check "a cache file with a negated value is named and discarded" \
	"[ \"\$(cat $tmp/err)\" = \"iaprune: warning: $a: checksum mismatch (the file was changed after it was written); discarded, the scores are computed again\" ]"
check "... and the report equals a clean run's" "same ref out"

poke "$a" 0 '\000\000\300\177'
"$IAPRUNE" run -q "$tmp/out.yaml" >/dev/null 2>"$tmp/err"
check "a NaN score is named (unit and group) and discarded" \
	"grep -q \"^iaprune: warning: $a: score of unit 0 of '[^']*' is not finite; discarded, the scores are computed again\\\$\" $tmp/err"
check "... and the report equals a clean run's" "same ref out"

cp "$b" "$a"
"$IAPRUNE" run -q "$tmp/out.yaml" >/dev/null 2>"$tmp/err"
check "a cache file copied under another key's name is refused" \
	"grep -q '^iaprune: warning: $a: made for key [0-9a-f]\\{16\\}, not [0-9a-f]\\{16\\}; discarded' $tmp/err && same ref out"

# Someone else holds the folder: the lock file names its pid.
echo 4242 >"$tmp/out/.lock"
( exec 9>>"$tmp/out/.lock"; flock 9; exec sleep 60 ) &
holder=$!
i=0; while [ $i -lt 50 ] && flock -n "$tmp/out/.lock" true; do sleep 0.1; i=$((i + 1)); done
"$IAPRUNE" run -q "$tmp/out.yaml" >/dev/null 2>"$tmp/err"
rc=$?
check "a second run on a folder in use exits 1, naming the other process" \
	"[ $rc -eq 1 ] && [ \"\$(cat $tmp/err)\" = \"iaprune: $tmp/out: output folder in use by another iaprune (pid 4242); wait for it to finish or choose another 'output'\" ]"
kill "$holder"; wait "$holder" 2>/dev/null; holder=

# A checkpoint from another learning rate is not resumed: the run trains afresh.
pipeline out 0.02
pipeline fresh 0.02
"$IAPRUNE" run -q "$tmp/out.yaml" >/dev/null 2>"$tmp/err"
check "a changed setting starts fresh, saying which" \
	"[ \"\$(cat $tmp/err)\" = \"iaprune: warning: $tmp/out/checkpoints holds a checkpoint made with other settings (lr=0.01 (now 0.02)): training starts fresh\" ]"
"$IAPRUNE" run -q "$tmp/fresh.yaml" >/dev/null 2>"$tmp/err"
check "... and gives what a fresh folder gives" "same fresh out && cmp -s $tmp/fresh/checkpoints/last.safetensors $tmp/out/checkpoints/last.safetensors"

# A killed run's leftovers: a half-staged report and a temporary weights file.
mkdir "$tmp/out/.report.new.AbCdEf"; echo partial >"$tmp/out/.report.new.AbCdEf/results.csv"
echo partial >"$tmp/out/model.safetensors.tmp.XyZ123"
"$IAPRUNE" run "$tmp/out.yaml" >/dev/null 2>"$tmp/err"
check "leftovers of an interrupted run are removed, with a note" \
	"grep -q '^    $tmp/out: removed 2 unfinished file(s) of an interrupted run\$' $tmp/err && [ ! -e $tmp/out/.report.new.AbCdEf ] && [ ! -e $tmp/out/model.safetensors.tmp.XyZ123 ]"

# A write that fails names the file and the reason (a full disk says "No space left on device").
rm -rf "$tmp/out"
(trap '' XFSZ; ulimit -f 64; exec "$IAPRUNE" run -q "$tmp/out.yaml") >/dev/null 2>"$tmp/err"
rc=$?
check "a failed write exits 1 with the system's reason" \
	"[ $rc -eq 1 ] && grep -q '^iaprune: .*: cannot write: File too large\$' $tmp/err"
check "... and leaves no temporary file" "[ -z \"\$(find $tmp/out -name '*.tmp.*' -o -name '.*.new.*')\" ]"
exit 0
