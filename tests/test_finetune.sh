#!/bin/sh
# Fine-tuning after pruning and iterative pruning, end to end on the bundled
# BreastMNIST with a tiny VGG-11: a second set of rows marked fine-tuned in
# results.csv/json (one per configuration and fine-tuning rate, measured after
# training with the masks held fixed, which the runner checks), the report.md
# section, `configurations: best`, the plain rows untouched by it (the dense
# weights are restored); pruning.iterations = 1 gives the one-shot
# results byte for byte, 3 steps prune exactly as many units per row, and a
# bad value is an input error naming the key. Prints TAP.
set -u
: "${IAP_TEST_SRCDIR:=.}"
. "$IAP_TEST_SRCDIR/tests/util/tap.sh"
tap_begin iap-ft

echo "1..15"

# $1: output directory, $2: extra pruning keys (YAML lines, indented by two).
pipeline() {
	cat <<YAML
version: 1
name: tiny-finetune
seed: 5
output: $1
dataset:
  plugin: medmnist
  options:
    path: $IAP_TEST_SRCDIR/data/breastmnist.npz
    image_size: 32
model:
  plugin: vgg
  options: { depth: 11, batch_norm: true, width: 0.0625 }
  train: { epochs: 1, batch_size: 64, augment: false }
sampling:
  - { plugin: random, per_class: 3 }
attribution:
  - plugin: lrp
  - plugin: magnitude
pruning:
  policy: global
  rates: [0.3, 0.6]
  curve: false
$2
report:
  heatmaps: 0
  save_pruned: false
YAML
}

pipeline "$tmp/ft" "  finetune: { epochs: 2, lr: 0.003, rates: [0.3, 0.45] }" >"$tmp/ft.yaml"
"$IAPRUNE" run "$tmp/ft.yaml" >"$tmp/stdout" 2>"$tmp/err"
check "run with finetune exits 0" "[ $? -eq 0 ]"
csv=$tmp/ft/report/results.csv
check "results.csv has a finetuned column" "head -n 1 $csv | grep -q ',accuracy_drop,finetuned,'"
# 2 configurations x 2 fine-tuning rates.
nft=$(awk -F, 'NR > 1 && $14 == 1' "$csv" | wc -l)
check "one fine-tuned row per configuration and rate ($nft)" "[ $nft -eq 4 ]"
# Each fine-tuned row has a plain row of the same configuration and rate (0.45 was added for it),
# the same units removed, and a measured accuracy in [0, 1].
check "fine-tuned rows pair with plain rows and carry measured accuracy" \
	"awk -F, 'NR > 1 && \$14 == 0 { p[\$2 \",\" \$4] = \$5 } NR > 1 && \$14 == 1 { k = \$2 \",\" \$4;
	  if (!(k in p) || p[k] != \$5 || \$8 == \"\" || \$8 < 0 || \$8 > 1) bad = 1; seen++ }
	  END { exit !(seen == 4 && !bad) }' $csv"
# Training changed something: some fine-tuned accuracy differs from its pruned model's.
check "fine-tuning changes accuracy somewhere" \
	"awk -F, 'NR > 1 && \$14 == 0 { p[\$2 \",\" \$4] = \$8 } NR > 1 && \$14 == 1 && p[\$2 \",\" \$4] != \$8 { d++ }
	  END { exit !(d > 0) }' $csv"
check "results.json marks the fine-tuned rows" \
	"[ \$(grep -o '\"finetuned\": true' $tmp/ft/report/results.json | wc -l) -eq 4 ]"
check "report.md has the fine-tuning section" \
	"grep -q '^## After fine-tuning' $tmp/ft/report/report.md &&
	 grep -q 'fine-tuned for 2 epoch(s) on the train split' $tmp/ft/report/report.md &&
	 grep -q '^| lrp | random | global | 0.45 | ' $tmp/ft/report/report.md"
check "the log reports every fine-tuned model" "[ \$(grep -c ' fine-tuned\$' $tmp/err) -eq 4 ]"

weights=$tmp/ft/model.safetensors
pipeline "$tmp/best" "  finetune: { epochs: 1, configurations: best }" |
	sed "s|^  train: .*|  weights: $weights|" >"$tmp/best.yaml"
"$IAPRUNE" run -q "$tmp/best.yaml" >"$tmp/stdout" 2>"$tmp/err"
rc=$?
nft=$(awk -F, 'NR > 1 && $14 == 1' "$tmp/best/report/results.csv" | wc -l)
check "configurations: best fine-tunes one configuration at pruning.rates ($nft rows)" "[ $rc -eq 0 ] && [ $nft -eq 2 ]"

# Iterative pruning on the same trained weights, without fine-tuning.
for it in none 1 3; do
	keys=""
	[ $it != none ] && keys="  iterations: $it"
	pipeline "$tmp/it$it" "$keys" | sed "s|^  train: .*|  weights: $weights|" >"$tmp/it$it.yaml"
	"$IAPRUNE" run -q --set 'pruning.rates=[0.3, 0.45, 0.6]' "$tmp/it$it.yaml" >"$tmp/stdout" 2>"$tmp/err" ||
		echo "# iterations $it failed"
done
check "iterations: 1 is one-shot pruning, byte for byte" \
	"[ -s $tmp/itnone/report/results.csv ] && cmp -s $tmp/itnone/report/results.csv $tmp/it1/report/results.csv"
check "iterations: 3 prunes exactly as many units as one shot, row by row" \
	"[ -s $tmp/it3/report/results.csv ] &&
	 cut -d, -f1-5 $tmp/itnone/report/results.csv >$tmp/a && cut -d, -f1-5 $tmp/it3/report/results.csv >$tmp/b &&
	 cmp -s $tmp/a $tmp/b"
check "report.md says the rates were reached in 3 steps" \
	"grep -q 'each rate reached in 3 equal steps' $tmp/it3/report/report.md && ! grep -q 'equal steps' $tmp/it1/report/report.md"
check "iterations: 3 leaves data-free criteria as they were" \
	"grep '^-,magnitude' $tmp/itnone/report/results.csv >$tmp/a && grep '^-,magnitude' $tmp/it3/report/results.csv >$tmp/b &&
	 [ -s $tmp/a ] && cmp -s $tmp/a $tmp/b"

# The dense weights are put back after every fine-tuned model: the plain rows at 0.3, 0.45 and 0.6
# (0.45 evaluated after the 0.3 fine-tunes) are those of a run without fine-tuning on the same weights.
# Columns 1-21: the metrics and the paired statistics (explanation preservation depends on pruning.rates).
plain() { awk -F, 'NR > 1 && $14 == 0 && ($4 == 0.3 || $4 == 0.45 || $4 == 0.6)' "$1" | cut -d, -f1-21 | sort; }
check "fine-tuning leaves the plain rows as they were" \
	"plain $csv >$tmp/a && plain $tmp/itnone/report/results.csv >$tmp/b && [ \$(wc -l <$tmp/a) -eq 6 ] && cmp -s $tmp/a $tmp/b"

"$IAPRUNE" run --set pruning.iterations=0 "$tmp/it1.yaml" >"$tmp/stdout" 2>"$tmp/err"
check "iterations 0 is an input error naming the key" "[ $? -eq 2 ] && grep -q 'iterations' $tmp/err"
