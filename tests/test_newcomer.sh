#!/bin/sh
# What a newcomer and a PyTorch user hit (issue 18), each checked:
# the README's man command, the build tree's own plugin path, every bundled
# pipeline valid, --dry-run with every plugin's defaults, train without an
# attribution list, info on a foreign file and on a bare architecture,
# explain at the image's own size, the masked model's pruned units counted,
# sample options only where they mean something, per-stage wall times.
# Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
# make check's path: the build tree's plugins, the installed folder emptied.
full_path=${IAPRUNE_PLUGIN_PATH:-}
IAPRUNE_PLUGIN_SYSTEM_PATH=
export IAPRUNE_PLUGIN_PATH IAPRUNE_PLUGIN_SYSTEM_PATH

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-newcomer.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
	for f in "$tmp/out" "$tmp/err"; do [ -f "$f" ] && tail -n 15 "$f" | sed 's/^/# /'; done
}
check() { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }

echo "1..25"

# 1. The README's man command works (man-db is what install-deps installs for it), and --help names it.
check "install-deps installs man-db" "grep -q 'man-db' '$IAP_TEST_SRCDIR/tools/install-deps'"
grep -F "man ./man/iaprune.1" "$IAP_TEST_SRCDIR/README.md" >/dev/null && "$IAPRUNE" --help >"$tmp/out" 2>"$tmp/err"
check "--help names 'man ./man/iaprune.1' for the source tree" "grep -qF \"'man ./man/iaprune.1'\" $tmp/out"
if command -v man >/dev/null 2>&1; then
	(cd "$IAP_TEST_SRCDIR" && MANWIDTH=80 man -P cat ./man/iaprune.1) >"$tmp/out" 2>"$tmp/err"
	check "man ./man/iaprune.1 renders the page" "grep -q 'interpretability-aware pruning' $tmp/out"
else
	ok "man ./man/iaprune.1 renders the page # SKIP no man here"
fi

# 2. From the build tree, its plugin folders replace the installed folder (no duplicates), and info says so.
(unset IAPRUNE_PLUGIN_PATH IAPRUNE_PLUGIN_SYSTEM_PATH; "$IAPRUNE" info) >"$tmp/out" 2>"$tmp/err"
check "info from the build tree lists its plugin folders" \
	"grep -qF '$IAP_TEST_BUILDDIR/plugins/models/.libs (build tree)' $tmp/out || grep -q 'plugins/models/.libs (build tree)' $tmp/out"
check "info says the installed folder is not searched" "grep -q 'this iaprune runs from its build tree' $tmp/out"
(unset IAPRUNE_PLUGIN_PATH IAPRUNE_PLUGIN_SYSTEM_PATH; "$IAPRUNE" plugins) >"$tmp/out" 2>"$tmp/err"
check "plugins from the build tree: the real plugins, no warnings" "grep -q '^  vgg ' $tmp/out && [ ! -s $tmp/err ]"
(unset IAPRUNE_PLUGIN_PATH IAPRUNE_PLUGIN_SYSTEM_PATH; "$IAPRUNE" --version) >"$tmp/out" 2>"$tmp/err"
check "--version prints the search path too" "grep -q 'plugins/samplers/.libs (build tree)' $tmp/out"

# 3. Every bundled pipeline is valid against the real plugins.
bad=
count=0
for p in "$IAP_TEST_SRCDIR"/etc/iaprune/*.yaml $(find "$IAP_TEST_SRCDIR/examples" -name '*.yaml' 2>/dev/null); do
	count=$((count + 1))
	IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" run --dry-run "$p" >"$tmp/out" 2>"$tmp/err" || {
		bad="$bad ${p##*/}"; cat "$tmp/err"; }
done
check "every bundled pipeline passes --dry-run ($count; failing:${bad:- none})" "[ -z '$bad' ] && [ $count -ge 3 ]"

# 4. --dry-run: each plugin's unset options with their defaults (comments), reading back as the same pipeline.
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" run --dry-run "$IAP_TEST_SRCDIR/etc/iaprune/default.yaml" >"$tmp/dump" 2>"$tmp/err"
check "--dry-run writes the model's defaults" "grep -qx \"    # vgg's defaults:\" $tmp/dump && grep -qx '    # dropout: 0.5' $tmp/dump"
check "--dry-run writes an attribution's defaults" \
	"grep -qx \"      # lrp's defaults:\" $tmp/dump && grep -qx '      # composite: epsilon-plus-flat' $tmp/dump"
check "no plugin's options are left as a bare {} without defaults" \
	"[ \$(grep -c \"'s defaults:\$\" $tmp/dump) -ge 10 ]"
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" run --dry-run "$tmp/dump" >"$tmp/dump2" 2>"$tmp/err"
check "the dump reads back as the same pipeline" "cmp -s $tmp/dump $tmp/dump2"
check "no train: block without weights is dropped" "grep -qx '  train:' $tmp/dump"
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" run --dry-run "$IAP_TEST_SRCDIR/etc/iaprune/resnet-layerwise.yaml" >"$tmp/out" 2>"$tmp/err"
check "no train: block when weights are given" "grep -q '^  weights: ' $tmp/out && ! grep -q '^  train:' $tmp/out"

# 5. train needs no attribution list; run and prune say they do.
cat >"$tmp/p.yaml" <<YAML
version: 1
seed: 1
output: $tmp/o
dataset:
  plugin: medmnist
  options: {path: $IAP_TEST_SRCDIR/data/breastmnist.npz, image_size: 32}
model:
  plugin: vgg
  options: {depth: 11, batch_norm: true, width: 0.0625}
  train: {epochs: 1, batch_size: 64}
YAML
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" train "$tmp/p.yaml" >"$tmp/out" 2>"$tmp/err"
check "train without an attribution list" "[ \$? -eq 0 ] && [ -s $tmp/o/model.safetensors ]"
check "the log has each stage's wall time and the total, without a terminal" \
	"[ \$(grep -c '^    stage took [0-9.]* s\$' $tmp/err) -ge 2 ] && grep -q '^==> done in [0-9.]* s\$' $tmp/err"
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" run --dry-run "$tmp/p.yaml" >"$tmp/out" 2>"$tmp/err"
check "run without an attribution list is an input error" \
	"[ \$? -eq 2 ] && grep -qx \"iaprune: $tmp/p.yaml: missing required key 'attribution' ('run' needs at least one method)\" $tmp/err"

# 6. The masked model's pruned units are counted by info.
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" prune -q --rate 0.5 --set 'attribution=[{plugin: magnitude}]' \
	-o "$tmp/p50.safetensors" "$tmp/p.yaml" >"$tmp/out" 2>"$tmp/err"
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" info "$tmp/p50.safetensors" >"$tmp/out" 2>"$tmp/err"
units=$(sed -n 's/.* \([0-9]*\) prunable units, \([0-9]*\) pruned,.*/\1 \2/p' "$tmp/out")
check "info counts the masked model's pruned units ($units)" \
	"set -- $units; [ \$# -eq 2 ] && [ \$2 -gt 0 ] && [ \$((2 * \$2)) -le \$((\$1 + 1)) ] && [ \$((2 * \$2)) -ge \$((\$1 - 8)) ]"

# 7. explain draws over the image at its own size and names the output after it.
printf '%s' 'iVBORw0KGgoAAAANSUhEUgAAADAAAAAoCAAAAACd7CatAAAB0ElEQVR42pXSBzcQABgF0BdFIpFEU0mkKaWl0qSQVLQ0hVK0pSWkPazKKipCS7vMhhGSotJORbs0JJro+wvvJ9xzLtCoSbMWrdp36tLDtP/g4ZY29o7TZ7u4L16x2mfj1l0hYfsPxR8/fSH1Snb+rbsPn5W9/QTFxk2b67TtaNjNxGyQxaixdpOmznSe77Fs1Tq/zTuC9kbGxB1NOpeckZl7s/j+kxevP3yBkqqGdms9A+OefQYMGWFlO2Gy0xzXhUtWrtkQsG13aPiBwwknzlxMu5pz4/a9R6Xl7yoqoaKupdtO36h7737mw0Zbj3eYNmveAs/l3uv9t+wM3hd18MixU+dTLmflFd558PTlm49ff0BNs2WbDp279uo7cOjIMeMmTpkx123RUq+1vpu2B+6JiI5NPHn2Uvq16wVFJY+fv3r/+ftPUOJv1X9Aiat+1YIS1/wFKPHvOkVQ4n8NlECJ6xuqgBIrKKuBEss7UGJ5B0os70CJ5R0osbwDJZZ3oMTyDpRY3oESyztQYnkHSizvQInlHSixvAMllnegxPIOlFjegRLLO1BieQdKLO9AieUdKLG8AyWWd6DE8g6UWN6BEss7UGJ5B0os70CJ5d1/EJ7XLorVAJMAAAAASUVORK5CYII=' |
	base64 -d >"$tmp/scan.png"
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" explain --weights "$tmp/o/model.safetensors" "$tmp/scan.png" >"$tmp/out" 2>"$tmp/err"
size=$(od -An -tu1 -j16 -N8 "$tmp/scan.lrp.png" 2>/dev/null | awk '{ print $3 * 256 + $4 "x" $7 * 256 + $8 }')
check "explain scan.png writes scan.lrp.png at 48x40 like the image ($size)" \
	"[ -s $tmp/scan.lrp.png ] && [ '$size' = 48x40 ] && [ ! -e $tmp/scan.png.lrp.png ]"

# 8. info on a file that is not safetensors says so; info on a bare architecture.
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" info "$tmp/scan.png" >"$tmp/out" 2>"$tmp/err"
check "info on a PNG: not a safetensors file" \
	"[ \$? -eq 2 ] && grep -qx 'iaprune: $tmp/scan.png: not a safetensors file (no JSON header after the 8-byte length)' $tmp/err"
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" info --model resnet --model-option depth=18 >"$tmp/out" 2>"$tmp/err"
# torchvision.models.resnet18(): 11689512 parameters, 1.82 GMACs at 224x224.
check "info --model resnet --model-option depth=18: torchvision's parameter count" \
	"grep -q '^total: 11689512 parameters (11.69M), 18[0-9]* multiply-accumulates per sample (1.8[0-9]G)' $tmp/out"
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" info --model resnt >"$tmp/out" 2>"$tmp/err"
check "info --model with an unknown model is an input error" \
	"[ \$? -eq 2 ] && grep -qx \"iaprune: info: no model plugin 'resnt' (see 'iaprune plugins --kind model')\" $tmp/err"

# 9. A data-free criterion lists no sample options.
IAPRUNE_PLUGIN_PATH=$full_path "$IAPRUNE" plugins --describe attribution/magnitude >"$tmp/out" 2>"$tmp/err"
check "plugins --describe magnitude: norm only" \
	"grep -q '^  norm (' $tmp/out && ! grep -qE '^  (abs|reduce|target|seed) \\(' $tmp/out"

# 10. Housekeeping: the program is ignored by git; the README names make bench's quick mode.
if [ -f "$IAP_TEST_SRCDIR/.gitignore" ]; then
	check "cli/iaprune is in .gitignore" "grep -qx '/cli/iaprune' '$IAP_TEST_SRCDIR/.gitignore'"
else
	ok "cli/iaprune is in .gitignore # SKIP not a git checkout (a release tarball)"
fi
check "README names make bench's quick mode" "grep -qF 'make bench BENCH_FLAGS=--quick' '$IAP_TEST_SRCDIR/README.md'"

[ "$failed" -eq 0 ]
