#!/bin/sh
# What a training checkpoint is keyed by beyond its settings (issues 15 and
# 20): the content of the training and validation data, so a data file
# changed under the same size and modification time trains afresh, and the
# model plugin's binary, so a rebuilt .so trains afresh; each with the note
# that names the changed setting. An unchanged re-run resumes silently.
# Needs python3 (for two same-size archives); skipped without it. Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMP_NUM_THREADS OPENBLAS_NUM_THREADS
tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-rkey.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; sed 's/^/# /' "$tmp/err" | tail -n 8; }
check() { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }

echo "1..6"
# Two stored (uncompressed) copies of tiny.npz with fixed member times:
# the same size byte for byte, b with one pixel of training image 0 changed.
if ! python3 - "$IAP_TEST_SRCDIR/tests/data/tiny.npz" "$tmp/a.npz" "$tmp/b.npz" <<'PY' 2>"$tmp/err"
import sys, zipfile
src, a, b = sys.argv[1:]
members = [(i.filename, zipfile.ZipFile(src).read(i.filename)) for i in zipfile.ZipFile(src).infolist()]
for path, poke in ((a, False), (b, True)):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            if poke and name == "train_images.npy":
                data = bytearray(data)
                data[-28 * 28 * 24] ^= 0x40   # first pixel of image 0 (24 images of 28x28 at the end)
                data = bytes(data)
            z.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
PY
then
	for i in 1 2 3 4 5 6; do echo "ok $i # SKIP no python3 with zipfile"; done
	exit 0
fi

cat >"$tmp/p.yaml" <<YAML
version: 1
seed: 5
output: $tmp/out
dataset:
  plugin: medmnist
  options: { path: $tmp/data.npz, image_size: 32 }
model:
  plugin: vgg
  options: { depth: 11, batch_norm: true, width: 0.0625 }
  train: { epochs: 1, batch_size: 8 }
sampling:
  - { plugin: random, per_class: 2 }
attribution:
  - plugin: magnitude
pruning: { policy: global, rates: [0.0], curve: false }
YAML
# The built plugins, copied into one folder so that the model's file can be "rebuilt".
mkdir "$tmp/plugins"
for f in "$IAP_TEST_BUILDDIR"/plugins/*/.libs/*.so; do cp "$f" "$tmp/plugins/"; done
IAPRUNE_PLUGIN_PATH=$tmp/plugins IAPRUNE_PLUGIN_SYSTEM_PATH=
export IAPRUNE_PLUGIN_PATH IAPRUNE_PLUGIN_SYSTEM_PATH
train() { "$IAPRUNE" train -q "$tmp/p.yaml" >/dev/null 2>"$tmp/err"; }
note="iaprune: warning: $tmp/out/checkpoints holds a checkpoint made with other settings"
hex='[0-9a-f]\{16\}'

cp "$tmp/a.npz" "$tmp/data.npz"
touch -d '2021-03-04 05:06:07' "$tmp/data.npz"
train
rc=$?
check "training on the stored archive succeeds and records the content and the binary" \
	"[ $rc -eq 0 ] && grep -q '^dataset.content=$hex,$hex\$' $tmp/out/checkpoints/settings.txt && grep -q '^model.binary=$hex\$' $tmp/out/checkpoints/settings.txt"
train
rc=$?
check "an unchanged re-run resumes without a note" "[ $rc -eq 0 ] && ! grep -q 'other settings' $tmp/err"

# Other content, same size and same modification time (and same path).
old=$(sed -n 's/^dataset.content=//p' "$tmp/out/checkpoints/settings.txt")
size=$(wc -c <"$tmp/data.npz")
touch -r "$tmp/data.npz" "$tmp/when"
cat "$tmp/b.npz" >"$tmp/data.npz"
touch -r "$tmp/when" "$tmp/data.npz"
check "the changed archive keeps the size and the modification time" \
	"[ $(wc -c <"$tmp/data.npz") -eq $size ] && ! cmp -s $tmp/a.npz $tmp/data.npz && [ \"\$(stat -c %Y $tmp/data.npz)\" = \"\$(date -d '2021-03-04 05:06:07' +%s)\" ]"
train
rc=$?
new=$(sed -n 's/^dataset.content=//p' "$tmp/out/checkpoints/settings.txt")
check "... trains afresh with a note naming the dataset content" \
	"[ $rc -eq 0 ] && [ \"\$(cat $tmp/err)\" = \"$note (dataset.content=$old (now $new)): training starts fresh\" ]"
check "... where only the training half of the content changed" \
	"[ \"${old#*,}\" = \"${new#*,}\" ] && [ \"${old%,*}\" != \"${new%,*}\" ]"

# A rebuilt model plugin: other bytes in the file, same name and version.
old=$(sed -n 's/^model.binary=//p' "$tmp/out/checkpoints/settings.txt")
printf 'rebuilt' >>"$tmp/plugins/vgg.so"
train
rc=$?
new=$(sed -n 's/^model.binary=//p' "$tmp/out/checkpoints/settings.txt")
check "a rebuilt model plugin trains afresh with a note naming its binary" \
	"[ $rc -eq 0 ] && [ \"$old\" != \"$new\" ] && [ \"\$(cat $tmp/err)\" = \"$note (model.binary=$old (now $new)): training starts fresh\" ]"
exit 0
