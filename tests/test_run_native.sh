#!/bin/sh
# Heatmaps at the image's own resolution end to end: an imagefolder of
# 240x200 PNGs trained at image_size 32. The dataset plugin's load_original
# (plugin ABI 2.1) gives the stored image, so heatmaps/*.png are 240x200 (the
# model-resolution fallback would write 224x224) and report.html's gallery
# says the maps were resampled to the stored size. Prints TAP.
set -u
: "${IAP_TEST_SRCDIR:=.}"
. "$IAP_TEST_SRCDIR/tests/util/tap.sh"
tap_begin iap-native

echo "1..6"

# Gray PNGs written with zlib alone: class a bright on the left, class b on the right.
python3 - "$tmp/data" <<'PY'
import os, struct, sys, zlib
def png(path, w, h, px):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    raw = b"".join(b"\0" + bytes(px(x, y) for x in range(w)) for y in range(h))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
root = sys.argv[1]
for split, count in (("train", 12), ("test", 4)):
    for k in range(count):
        png(f"{root}/{split}/a/{k}.png", 240, 200, lambda x, y: (200 if x < 120 else 30) + (x * 7 + y * 3 + k) % 20)
        png(f"{root}/{split}/b/{k}.png", 240, 200, lambda x, y: (30 if x < 120 else 200) + (x * 5 + y + k) % 20)
PY
check "the PNGs were written" "[ -f $tmp/data/test/b/3.png ]"

cat >"$tmp/p.yaml" <<YAML
version: 1
name: tiny-native
seed: 3
output: $tmp/out
dataset:
  plugin: imagefolder
  options: { root: $tmp/data, image_size: 32, channels: 1 }
model:
  plugin: vgg
  options: { depth: 11, batch_norm: true, width: 0.0625 }
  train: { epochs: 1, batch_size: 8 }
sampling:
  - { plugin: random, per_class: 2 }
attribution:
  - plugin: lrp
pruning:
  rates: [0.0, 0.3]
  curve: false
report:
  heatmaps: 1
  bootstrap: 0
  explain_images: 1
  latency: false
YAML
"$IAPRUNE" run -q "$tmp/p.yaml" >"$tmp/stdout" 2>"$tmp/err"
check "run exits 0" "[ $? -eq 0 ]"
r=$tmp/out/report

# Width and height from the IHDR chunk (bytes 16-23), big-endian.
size() { od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%dx%d", $1 * 16777216 + $2 * 65536 + $3 * 256 + $4, $5 * 16777216 + $6 * 65536 + $7 * 256 + $8 }'; }
maps=$(ls "$r"/heatmaps/*.png 2>/dev/null | wc -l)
check "one heatmap per class ($maps)" "[ $maps -eq 2 ]"
bad=0
for f in "$r"/heatmaps/*.png; do
	[ "$(size "$f")" = 240x200 ] || { bad=1; echo "# $f is $(size "$f")"; }
done
check "heatmaps/*.png have the stored size, 240x200" "[ $maps -gt 0 ] && [ $bad -eq 0 ]"
check "report.html says the resolution shown" \
	"grep -q 'Images at their stored resolution (240×200); each map resampled (bilinear) to it from the model.s input resolution (32×32)' $r/report.html"
check "report.html's gallery panels are 240x200" "grep -q '<img width=\"240\" height=\"200\"' $r/report.html"
