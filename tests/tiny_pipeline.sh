# Sourced by the run tests: tiny_pipeline NAME [RATES] [PER_CLASS] writes
# $tmp/NAME.yaml, a seconds-long run on tests/data/tiny.npz (output
# $tmp/NAME): two samplers, a data-driven and a data-free attribution, no
# latency rows (timings differ run to run; the reports are compared byte for byte).
tiny_pipeline() {
	cat >"$tmp/$1.yaml" <<YAML
version: 1
name: tiny
seed: 5
output: $tmp/$1
dataset:
  plugin: medmnist
  options: { path: $IAP_TEST_SRCDIR/tests/data/tiny.npz, image_size: 32 }
model:
  plugin: vgg
  options: { depth: 11, batch_norm: true, width: 0.0625 }
  train: { epochs: 1, batch_size: 8, lr: 0.01 }
sampling:
  - { plugin: random, per_class: 2 }
  - { plugin: random, name: r3, per_class: ${3:-3} }
attribution:
  - plugin: lrp
  - plugin: magnitude
pruning:
  policy: global
  rates: [${2:-0.0, 0.3, 0.6, 0.9}]
  curve: false
report:
  heatmaps: 0
  latency: false
YAML
}
report_files="results.csv results.json report.md predictions.csv pruned-masked.safetensors pruned-compact.safetensors"
# same_report A B: the two runs' reports are equal, file by file.
same_report() {
	for f in $report_files; do
		cmp -s "$tmp/$1/report/$f" "$tmp/$2/report/$f" || return 1
	done
}
# from_journal LOG STAGE: the "N of M" the run's log gives for STAGE (empty: none from the journal).
from_journal() {
	sed -n "s/^    $2: \([0-9]* of [0-9]*\) items from the journal$/\1/p" "$1"
}
