#!/bin/sh
# The report's statistics end to end on a tiny run (bundled BreastMNIST, one
# epoch, a VGG-11 at 1/16 width): per-image predictions, paired intervals and
# McNemar in every row (none at rate 0, where the model is the baseline),
# explanation preservation (1 at rate 0), latency, report.html, the ranking
# stated, the same numbers from the same seed, and report.bootstrap: 0
# without intervals. Prints TAP.
set -u
: "${IAP_TEST_SRCDIR:=.}"
. "$IAP_TEST_SRCDIR/tests/util/tap.sh"
tap_begin iap-stats

echo "1..14"

pipeline() { # output-dir bootstrap ranking
	cat <<YAML
version: 1
name: tiny-stats
seed: 5
output: $1
dataset:
  plugin: medmnist
  options: { path: $IAP_TEST_SRCDIR/data/breastmnist.npz, image_size: 32 }
model:
  plugin: vgg
  options: { depth: 11, batch_norm: true, width: 0.0625 }
  train: { epochs: 1, batch_size: 64 }
sampling:
  - { plugin: random, per_class: 3 }
attribution:
  - plugin: lrp
  - plugin: magnitude
pruning:
  rates: [0.0, 0.3, 0.6]
  curve: false
  baseline_ranking: $3
report:
  heatmaps: 1
  bootstrap: $2
  explain_images: 2
YAML
}

pipeline "$tmp/a" 200 l2 >"$tmp/a.yaml"
"$IAPRUNE" run -q "$tmp/a.yaml" >"$tmp/stdout" 2>"$tmp/err"
check "run exits 0" "[ $? -eq 0 ]"
r=$tmp/a/report
rows=$(tail -n +2 "$r/results.csv" | wc -l)
check "predictions.csv: (baseline + $rows rows) x 156 images" \
	"[ \$(wc -l <$r/predictions.csv) -eq \$(( (rows + 1) * 156 + 1 )) ]"
check "every model answers every image once" \
	"awk -F, 'NR > 1 { k[\$1 \",\" \$6]++ } END { for (i in k) if (k[i] != 1) exit 1 }' $r/predictions.csv"
check "results.csv has the paired columns" \
	"head -1 $r/results.csv | grep -q ',finetuned,accuracy_lo,accuracy_hi,drop_lo,drop_hi,mcnemar_p,lost,gained,sensitivity_0,specificity_0,sensitivity_1,specificity_1,explanation_spearman,explanation_topk'"
# Columns: 4 rate, 13 drop, 14 finetuned, 17-18 drop interval, 19 p, 20 lost, 21 gained.
check "rate 0: nothing lost or gained, p = 1, a zero interval" \
	"awk -F, 'NR > 1 && \$4 == 0 { if (\$20 != 0 || \$21 != 0 || \$19 != 1 || \$17 != 0 || \$18 != 0) bad = 1; seen++ } END { exit !(seen == 2 && !bad) }' $r/results.csv"
check "every interval holds its drop" \
	"awk -F, 'NR > 1 { if (\$17 > \$13 + 1e-9 || \$18 < \$13 - 1e-9) bad = 1 } END { exit bad }' $r/results.csv"
check "Table 1 shows intervals and parameters / MACs removed" \
	"grep -q '^| lrp | random | global | 0.0 \\[0.0, 0.0\\] · 0% / 0% | .* \\[.*\\] · [0-9]*% / [0-9]*% |' $r/report.md"
check "the paper's averages by method and by sampler" \
	"grep -q '^| lrp | 1 |' $r/report.md && grep -q '^| sampler | configurations |' $r/report.md"
check "explanation preservation is 1 at rate 0" "grep -q '^| 0.00 | 1.000 | 1.000 | 0.0 \\[0.0, 0.0\\] |' $r/report.md"
check "latency of the compacted model" "grep -q '^| 16 | [0-9.]* | [0-9.]* | [0-9.]*× |' $r/report.md"
check "the report states the baselines' ranking" "grep -q 'L2 norm before the global ranking' $r/report.md"
check "report.html is one page with the images inline" \
	"grep -q 'data:image/png;base64,iVBORw0KGgo' $r/report.html && ! grep -q 'src=\"http' $r/report.html"

# Again on the same model and cached scores: the resamples come from the seed alone.
cp "$r/results.csv" "$tmp/first.csv"
"$IAPRUNE" run -q "$tmp/a.yaml" >"$tmp/stdout" 2>"$tmp/err"
check "the same seed gives the same statistics" "cmp -s $tmp/first.csv $r/results.csv"

pipeline "$tmp/c" 0 raw >"$tmp/c.yaml"
"$IAPRUNE" run -q "$tmp/c.yaml" >"$tmp/stdout" 2>"$tmp/err"
check "bootstrap 0: no intervals; raw ranking stated" \
	"[ $? -eq 0 ] && ! grep -q '^| lrp | random | global | 0.0 \\[' $tmp/c/report/report.md && grep -q 'unnormalised' $tmp/c/report/report.md"
