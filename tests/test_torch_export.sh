#!/bin/sh
# The files iaprune writes, read by PyTorch: a model trained here and its
# masked pruned copy load into torchvision's VGG11_bn (at the same width)
# with a strict load_state_dict, num_batches_tracked included and counting
# the training batches, and the masked copy has the pruned channels' input
# weights zeroed in the next convolution too. Needs /usr/bin/python3 with
# torch and torchvision (skipped otherwise). Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
PY=/usr/bin/python3
IAPRUNE_PLUGIN_SYSTEM_PATH=
export IAPRUNE_PLUGIN_SYSTEM_PATH

echo "1..3"
if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, torchvision' >/dev/null 2>&1; then
	for i in 1 2 3; do echo "ok $i - # SKIP no torch/torchvision for $PY"; done
	exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-torch.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/p.yaml" <<YAML
version: 1
seed: 2
output: $tmp/o
dataset:
  plugin: medmnist
  options: {path: $IAP_TEST_SRCDIR/data/breastmnist.npz, image_size: 32}
model:
  plugin: vgg
  options: {depth: 11, batch_norm: true, width: 0.0625}
  train: {epochs: 1, batch_size: 64}
attribution:
  - plugin: magnitude
# Layer by layer, so every convolution loses filters (a global ranking may take only linear units).
pruning: {policy: layerwise}
YAML
"$IAPRUNE" train -q "$tmp/p.yaml" >"$tmp/log" 2>&1 &&
	"$IAPRUNE" prune -q --rate 0.5 -o "$tmp/p50.safetensors" "$tmp/p.yaml" >>"$tmp/log" 2>&1
if [ $? -ne 0 ]; then
	sed 's/^/# /' "$tmp/log"
	for i in 1 2 3; do echo "not ok $i - iaprune train / prune failed"; done
	exit 1
fi
cat >"$tmp/check.py" <<'PY'
import os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tests/fixtures/models"))
import torch
import gen_model_fixtures as gm
import gen_small_images as gs

def load(path):
    m = gm.vgg11(0.0625, True, 2)
    # BreastMNIST is grayscale: one input channel.
    m.features[0] = torch.nn.Conv2d(1, m.features[0].out_channels, 3, padding=1)
    m.load_state_dict(gs.read_safetensors(path), strict=True)
    return m.eval()

n = 0
def ok(cond, what):
    global n
    n += 1
    print(("ok %d - " if cond else "not ok %d - ") % n + what)

m = load(sys.argv[2])
counts = {k: int(v) for k, v in m.state_dict().items() if k.endswith("num_batches_tracked")}
# 546 training images in batches of 64 (the last one partial), one epoch.
ok(len(counts) == 8 and set(counts.values()) == {9},
   "torch loads model.safetensors strictly; num_batches_tracked %s" % sorted(set(counts.values())))
p = load(sys.argv[3])
with torch.no_grad():
    y = p(torch.zeros(1, 1, 32, 32))
sd = p.state_dict()
convs = [k[:-len(".weight")] for k, v in sd.items() if k.startswith("features.") and v.dim() == 4]
zero_rows = consumers_ok = 0
for a, b in zip(convs, convs[1:]):
    w = sd[a + ".weight"]
    bn = "features.%d" % (int(a.split(".")[1]) + 1)
    pruned = [c for c in range(w.shape[0]) if not w[c].any() and sd[bn + ".weight"][c] == 0]
    zero_rows += len(pruned)
    consumers_ok += all(not sd[b + ".weight"][:, c].any() for c in pruned)
ok(bool(torch.isfinite(y).all()) and zero_rows > 0,
   "torch loads the masked pruned.safetensors strictly (%d pruned filters seen)" % zero_rows)
ok(consumers_ok == len(convs) - 1, "the next convolution reads nothing from a pruned filter")
PY
"$PY" "$tmp/check.py" "$IAP_TEST_SRCDIR" "$tmp/o/model.safetensors" "$tmp/p50.safetensors" 2>"$tmp/err"
rc=$?
sed 's/^/# /' "$tmp/err"
exit $rc
