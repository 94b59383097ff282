#!/bin/sh
# `iaprune explain` on a plain torchvision state_dict (the VGG11 fixture, no
# iaprune metadata) with --model options, and on several images in one call
# (model loaded once): one heatmap per image, -o and --raw as directories,
# the same relevance as one image per call, and the usage errors (exit 2).
# Prints TAP.
set -u
: "${IAP_TEST_SRCDIR:=.}"
. "$IAP_TEST_SRCDIR/tests/util/tap.sh"
FX="$IAP_TEST_SRCDIR/tests/fixtures/models"
tap_begin iap-explain 20

echo "1..7"

# The corpus files start with the fuzzer's selector byte.
tail -c +2 "$IAP_TEST_SRCDIR/fuzz/corpus/image/rgb8.png" >"$tmp/a.png"
tail -c +2 "$IAP_TEST_SRCDIR/fuzz/corpus/image/gray8.png" >"$tmp/b.png"
M="--weights $FX/vgg11.safetensors --model vgg --model-option depth=11 --model-option width=0.025 --model-option image_size=32"

"$IAPRUNE" explain $M "$tmp/a.png" "$tmp/b.png" >"$tmp/out" 2>"$tmp/err"
check "two images, a plain torchvision file: exit 0, a heatmap each" \
	"[ $? -eq 0 ] && [ -s $tmp/a.lrp.png ] && [ -s $tmp/b.lrp.png ] && [ \$(grep -c 'heatmap ' $tmp/out) -eq 2 ]"
mkdir "$tmp/maps" "$tmp/raw"
"$IAPRUNE" explain $M --attribution ig --option steps=4 -o "$tmp/maps" --raw "$tmp/raw" \
	"$tmp/a.png" "$tmp/b.png" >"$tmp/out" 2>"$tmp/err"
check "-o and --raw as directories" \
	"[ $? -eq 0 ] && [ -s $tmp/maps/a.png.ig.png ] && [ -s $tmp/maps/b.png.ig.png ] && [ -s $tmp/raw/a.png.ig.npy ] && [ -s $tmp/raw/b.png.ig.npy ]"
"$IAPRUNE" explain $M --attribution ig --option steps=4 --raw "$tmp/b1.npy" -o "$tmp/b1.png" "$tmp/b.png" >"$tmp/out" 2>"$tmp/err"
check "the second image's relevance equals a call of its own" "[ $? -eq 0 ] && cmp -s $tmp/b1.npy $tmp/raw/b.png.ig.npy"
check "a different image gives a different map" "! cmp -s $tmp/raw/a.png.ig.npy $tmp/raw/b.png.ig.npy"

"$IAPRUNE" explain $M -o "$tmp/one.png" "$tmp/a.png" "$tmp/b.png" >"$tmp/out" 2>"$tmp/err"
check "several images with -o FILE: exit 2 naming it" "[ $? -eq 2 ] && grep -q 'one.png is not one' $tmp/err"
"$IAPRUNE" explain --weights "$FX/vgg11.safetensors" "$tmp/a.png" >"$tmp/out" 2>"$tmp/err"
check "a plain file without --model: exit 2 saying so" "[ $? -eq 2 ] && grep -q 'no iaprune model description' $tmp/err"
"$IAPRUNE" explain $M --model-option depth=13 "$tmp/a.png" >"$tmp/out" 2>"$tmp/err"
check "a wrong architecture: exit 2 naming the file and a tensor" \
	"[ $? -eq 2 ] && grep -q 'vgg11.safetensors' $tmp/err && grep -q 'features\\.' $tmp/err"
