#!/bin/sh
# The main job end to end on the bundled BreastMNIST, kept tiny (one epoch, a
# VGG-11 at 1/16 width): every report file, a sane table (rate 0 drops
# nothing), cached scores on a second run, `prune` with a compacted model
# that `info` shows smaller, `eval`, and `explain` writing a heatmap.
# Prints TAP.
set -u
: "${IAP_TEST_SRCDIR:=.}"
. "$IAP_TEST_SRCDIR/tests/util/tap.sh"
tap_begin iap-run

echo "1..19"

cat >"$tmp/p.yaml" <<YAML
version: 1
name: tiny
seed: 3
output: $tmp/out
dataset:
  plugin: medmnist
  options:
    path: $IAP_TEST_SRCDIR/data/breastmnist.npz
    image_size: 32
model:
  plugin: vgg
  options: { depth: 11, batch_norm: true, width: 0.0625 }
  train: { epochs: 1, batch_size: 64 }
sampling:
  - { plugin: random, per_class: 3 }
  - { plugin: clustering, per_class: 3 }
attribution:
  - plugin: lrp
  - plugin: ig
    options: { steps: 4 }
  - plugin: magnitude
pruning:
  policy: global
  rates: [0.0, 0.3, 0.6]
  curve: false
report:
  heatmaps: 1
YAML

"$IAPRUNE" run -q "$tmp/p.yaml" >"$tmp/stdout" 2>"$tmp/err"
check "run exits 0" "[ $? -eq 0 ]"
r=$tmp/out/report
check "every report file is written" \
	"[ -s $r/results.csv ] && [ -s $r/results.json ] && [ -s $r/report.md ] && [ -s $r/curves.svg ]"
# 2 attributions x 2 samplers + magnitude = 5 configurations, 3 rates each, plus bisection rows.
rows=$(tail -n +2 "$r/results.csv" | wc -l)
check "results.csv has a row per configuration and rate ($rows)" "[ $rows -ge 15 ]"
check "rate 0 drops nothing" \
	"awk -F, 'NR > 1 && \$4 == 0 { if (\$13 != 0) bad = 1; seen++ } END { exit !(seen == 5 && !bad) }' $r/results.csv"
check "pruning removes parameters as the rate grows" \
	"awk -F, 'NR > 1 && \$4 == 0.6 { if (\$6 <= 0.3) bad = 1; seen++ } END { exit !(seen && !bad) }' $r/results.csv"
check "report.md has the Table 1 layout" "grep -q '| attribution | sampler | policy | 0.00 | 0.30 | 0.60 | lossless up to |' $r/report.md"
check "report.md names the baseline" "grep -q '^| accuracy | 0\\.' $r/report.md"
check "heatmaps written" "ls $r/heatmaps/lrp-class*.png >/dev/null 2>&1"
check "the trained model carries its description" "[ -s $tmp/out/model.safetensors ]"

"$IAPRUNE" run "$tmp/p.yaml" >"$tmp/stdout" 2>"$tmp/err"
check "a second run reuses the cached scores" "[ \$(grep -c 'from the cache' $tmp/err) -eq 5 ]"

"$IAPRUNE" prune -q --rate 0.5 --attribution lrp --sampler clustering --compact -o "$tmp/p50.safetensors" \
	"$tmp/p.yaml" >"$tmp/stdout" 2>"$tmp/err"
check "prune exits 0" "[ $? -eq 0 ] && [ -s $tmp/p50.safetensors ] && [ -s $tmp/p50-compact.safetensors ]"
"$IAPRUNE" info "$tmp/out/model.safetensors" >"$tmp/dense" 2>"$tmp/err"
"$IAPRUNE" info "$tmp/p50-compact.safetensors" >"$tmp/small" 2>>"$tmp/err"
dense=$(sed -n 's/^total: \([0-9]*\) parameters.*/\1/p' "$tmp/dense")
small=$(sed -n 's/^total: \([0-9]*\) parameters.*/\1/p' "$tmp/small")
check "info: the compacted model is smaller ($small < $dense)" "[ -n '$small' ] && [ -n '$dense' ] && [ $small -lt $dense ]"
"$IAPRUNE" info "$tmp/p50.safetensors" >"$tmp/masked" 2>>"$tmp/err"
check "info: the masked model has zero weights" "grep -q 'of weights are zero' $tmp/masked && ! grep -q ' 0.00% of weights are zero' $tmp/masked"

"$IAPRUNE" eval -q "$tmp/p.yaml" >"$tmp/stdout" 2>"$tmp/err"
check "eval writes metrics.json" "[ $? -eq 0 ] && grep -q '\"accuracy\"' $tmp/out/metrics.json"

img=$(ls "$r"/heatmaps/*.png | head -n 1)
"$IAPRUNE" explain --weights "$tmp/out/model.safetensors" --attribution lrp -o "$tmp/h.png" "$img" >"$tmp/stdout" 2>"$tmp/err"
check "explain writes a PNG" "[ $? -eq 0 ] && [ -s $tmp/h.png ] && grep -q 'heatmap $tmp/h.png' $tmp/stdout"
"$IAPRUNE" explain --weights "$tmp/out/model.safetensors" --attribution magnitude "$img" >"$tmp/stdout" 2>"$tmp/err"
check "explain refuses a criterion without input relevance" \
	"[ $? -eq 2 ] && grep -q \"attribution 'magnitude' gives no input-level relevance\" $tmp/err"
"$IAPRUNE" run --set dataset.options.path=$tmp/none.npz "$tmp/p.yaml" >"$tmp/stdout" 2>"$tmp/err"
check "a missing dataset file is an input error naming it" "[ $? -eq 2 ] && grep -q 'none.npz' $tmp/err && [ \$(wc -l <$tmp/err) -le 2 ]"

# Training converges: a few epochs without augmentation, the loss falls.
"$IAPRUNE" train --set model.train.epochs=3 --set model.train.augment=false --set output=$tmp/t3 \
	"$tmp/p.yaml" >"$tmp/stdout" 2>"$tmp/err"
l1=$(sed -n 's|^ *epoch 1/3: loss \([0-9.]*\),.*|\1|p' "$tmp/err")
l3=$(sed -n 's|^ *epoch 3/3: loss \([0-9.]*\),.*|\1|p' "$tmp/err")
check "training on BreastMNIST lowers the loss ($l1 -> $l3)" \
	"[ -n '$l1' ] && [ -n '$l3' ] && awk 'BEGIN { exit !($l3 < $l1) }'"
"$IAPRUNE" explain --weights "$tmp/out/model.safetensors" --raw "$tmp/h.npy" -o "$tmp/h2.png" "$img" >"$tmp/stdout" 2>"$tmp/err"
check "explain --raw writes the relevance as .npy" "[ $? -eq 0 ] && head -c 6 $tmp/h.npy | grep -q NUMPY"
