#!/bin/sh
# `iaprune attribute`: a plain torchvision state_dict (the VGG11 fixture,
# no iaprune metadata) with --model options gives PyTorch's logits and an
# archive whose reductions agree with each other; IG's completeness gaps
# are there and shrink with more steps; on a pipeline, the default samples
# are its first sampler's, and the score equals the one `prune` caches for
# that sampler; indices, a data-free method, and bad input (exit 2).
# Prints TAP.
set -u
: "${IAP_TEST_SRCDIR:=.}"
. "$IAP_TEST_SRCDIR/tests/util/tap.sh"
DUMP="$IAP_TEST_BUILDDIR/tests/npz_dump"
FX="$IAP_TEST_SRCDIR/tests/fixtures/models"
tap_begin iap-attr 20
# same A B TOL: two files of numbers agree line by line within TOL·max(1, |b|).
same() {
	paste "$1" "$2" | awk -v t="$3" '{ d = $1 - $2; if (d < 0) d = -d; m = $2 < 0 ? -$2 : $2;
		if (m < 1) m = 1; if (d > t * m) bad = 1; k++ } END { exit !(k > 0 && !bad) }'
}

echo "1..18"

M="--model vgg --model-option depth=11 --model-option width=0.025 --model-option image_size=32"
"$IAPRUNE" attribute -q "$FX/vgg11.safetensors" $M --samples "$FX/vgg11.io.safetensors" \
	-o "$tmp/lrp.npz" >"$tmp/out" 2>"$tmp/err"
check "a plain torchvision file with --model: exit 0" "[ $? -eq 0 ] && [ -s $tmp/lrp.npz ]"
"$DUMP" "$tmp/lrp.npz" >"$tmp/members"
check "members keyed by torchvision module names, per sample and in total" \
	"grep -qx 'units/features.0/sum float32 2x2' $tmp/members &&
	 grep -qx 'units/classifier.3/sum_of_abs float32 2x102' $tmp/members &&
	 grep -qx 'units/features.18/total/abs_of_sum float32 13' $tmp/members &&
	 grep -qx 'input_relevance float32 2x3x32x32' $tmp/members && grep -qx 'targets int32 2' $tmp/members"
"$DUMP" "$tmp/lrp.npz" logits >"$tmp/a"
"$DUMP" "$FX/vgg11.io.safetensors" logits >"$tmp/b"
check "the logits are PyTorch's (the weights loaded by key)" "same $tmp/a $tmp/b 1e-4"
"$DUMP" "$tmp/lrp.npz" units/features.3/sum | awk '{ print ($1 < 0 ? -$1 : $1) }' >"$tmp/a"
"$DUMP" "$tmp/lrp.npz" units/features.3/abs_of_sum >"$tmp/b"
check "abs_of_sum is |sum|" "same $tmp/a $tmp/b 1e-6"
"$DUMP" "$tmp/lrp.npz" units/features.3/abs_of_sum | awk 'NR <= 3 { a[NR] = $1 } NR > 3 { print a[NR - 3] + $1 }' >"$tmp/a"
"$DUMP" "$tmp/lrp.npz" units/features.3/total/abs_of_sum >"$tmp/b"
check "the totals sum the two samples" "same $tmp/a $tmp/b 1e-5"
"$DUMP" "$tmp/lrp.npz" units/features.3/score >"$tmp/a"
check "the default score (abs after, sum) is the total of |sum|" "same $tmp/a $tmp/b 1e-6"
paste "$("$DUMP" "$tmp/lrp.npz" units/features.3/sum_of_abs >"$tmp/c"; echo "$tmp/c")" \
	"$("$DUMP" "$tmp/lrp.npz" units/features.3/abs_of_sum >"$tmp/d"; echo "$tmp/d")" >"$tmp/e"
check "sum_of_abs >= abs_of_sum" "awk '{ if (\$1 + 1e-6 < \$2) bad = 1 } END { exit bad }' $tmp/e"

for s in 8 64; do
	"$IAPRUNE" attribute -q "$FX/vgg11.safetensors" $M --samples "$FX/vgg11.io.safetensors" \
		--attribution ig --option steps=$s -o "$tmp/ig$s.npz" >"$tmp/out" 2>>"$tmp/err"
done
"$DUMP" "$tmp/ig64.npz" delta/units/features.0 >"$tmp/d64"
"$DUMP" "$tmp/ig8.npz" delta/units/features.0 >"$tmp/d8"
"$DUMP" "$tmp/ig64.npz" delta/gap >"$tmp/gap"
check "IG: conductance completeness at features.0 within 2% of F(x) - F(x') at 64 steps" \
	"paste $tmp/d64 $tmp/gap | awk '{ d = \$1 < 0 ? -\$1 : \$1; g = \$2 < 0 ? -\$2 : \$2; if (!(d < 0.02 * g)) bad = 1 } END { exit bad }'"
check "IG: the gap shrinks from 8 to 64 steps" \
	"paste $tmp/d8 $tmp/d64 | awk '{ a = \$1 < 0 ? -\$1 : \$1; b = \$2 < 0 ? -\$2 : \$2; if (!(b < a)) bad = 1 } END { exit bad }'"
check "IG: input completeness and input maps are written" \
	"\"$DUMP\" $tmp/ig64.npz | grep -qx 'delta/input float32 2' && \"$DUMP\" $tmp/ig64.npz | grep -qx 'input_relevance float32 2x3x32x32'"

# The ViT fixture with its conv_proj channels as a unit group: their conductance is scored.
V="--model vit --model-option variant=custom --model-option patch_size=8 --model-option hidden_dim=16
   --model-option depth=2 --model-option num_heads=2 --model-option mlp_dim=32 --model-option conv_proj_units=true"
for s in 8 64; do
	"$IAPRUNE" attribute -q "$FX/vit.safetensors" $V --samples "$FX/vit.io.safetensors" --attribution ig \
		--option steps=$s -o "$tmp/vit$s.npz" >"$tmp/out" 2>>"$tmp/err"
done
"$DUMP" "$tmp/vit64.npz" logits >"$tmp/a"
"$DUMP" "$FX/vit.io.safetensors" logits >"$tmp/b"
check "ViT with conv_proj_units: PyTorch's logits, conv_proj scored per channel" \
	"same $tmp/a $tmp/b 1e-4 && \"$DUMP\" $tmp/vit64.npz | grep -qx 'units/conv_proj/sum float32 2x16'"
"$DUMP" "$tmp/vit8.npz" delta/units/conv_proj >"$tmp/d8"
"$DUMP" "$tmp/vit64.npz" delta/units/conv_proj >"$tmp/d64"
"$DUMP" "$tmp/vit64.npz" delta/gap >"$tmp/gap"
check "ViT conv_proj conductance: complete within 10% at 64 steps, closer than at 8" \
	"paste $tmp/d8 $tmp/d64 $tmp/gap | awk '{ a = \$1 < 0 ? -\$1 : \$1; b = \$2 < 0 ? -\$2 : \$2; g = \$3 < 0 ? -\$3 : \$3;
		if (!(b < a) || !(b < 0.1 * g)) bad = 1 } END { exit bad }'"

# A pipeline: a tiny model trained for one epoch, then its first sampler's samples.
cat >"$tmp/p.yaml" <<YAML
version: 1
seed: 5
output: $tmp/run
dataset:
  plugin: medmnist
  options: { path: $IAP_TEST_SRCDIR/data/breastmnist.npz, image_size: 32 }
model:
  plugin: vgg
  options: { depth: 11, width: 0.0625 }
  train: { epochs: 1, batch_size: 64 }
sampling:
  - { plugin: random, per_class: 3 }
attribution:
  - plugin: lrp
pruning: { policy: global, rates: [0.5], curve: false }
YAML
"$IAPRUNE" train -q "$tmp/p.yaml" >"$tmp/out" 2>"$tmp/err" &&
"$IAPRUNE" attribute -q "$tmp/p.yaml" -o "$tmp/p.npz" >"$tmp/out" 2>>"$tmp/err"
check "a pipeline: exit 0" "[ $? -eq 0 ] && [ -s $tmp/p.npz ]"
check "the default samples are the first sampler's (3 per class)" \
	"[ \"\$(\"$DUMP\" $tmp/p.npz labels | sort | uniq -c | awk '{ printf \"%s:%s \", \$2, \$1 }')\" = '0:3 1:3 ' ]"
"$IAPRUNE" prune -q --rate 0.5 -o "$tmp/pr.safetensors" "$tmp/p.yaml" >"$tmp/out" 2>>"$tmp/err"
"$DUMP" "$(ls "$tmp"/run/cache/scores-*.safetensors | head -n 1)" features.8 >"$tmp/a" 2>>"$tmp/err"
"$DUMP" "$tmp/p.npz" units/features.8/score >"$tmp/b"
check "the score equals what prune ranks by (its cache)" "same $tmp/a $tmp/b 1e-5"

"$IAPRUNE" attribute -q "$tmp/p.yaml" --split test --samples 4-6,9 -o "$tmp/q.npz" >"$tmp/out" 2>>"$tmp/err"
check "indices of another split" "[ \"\$(\"$DUMP\" $tmp/q.npz index | tr '\n' ' ')\" = '4 5 6 9 ' ]"
"$IAPRUNE" attribute -q "$tmp/p.yaml" --attribution magnitude -o "$tmp/m.npz" >"$tmp/out" 2>>"$tmp/err"
check "a data-free method writes only scores" \
	"[ $? -eq 0 ] && ! \"$DUMP\" $tmp/m.npz | grep -qv '/score '"

"$IAPRUNE" attribute "$tmp/p.yaml" --samples 1-99999 -o "$tmp/x.npz" >"$tmp/out" 2>"$tmp/err"
st=$?
"$IAPRUNE" attribute "$FX/vgg11.safetensors" -o "$tmp/x.npz" >"$tmp/out" 2>"$tmp/err2"
st2=$?
check "bad input is status 2 with one line naming it" \
	"[ $st -eq 2 ] && grep -q '1-99999' $tmp/err && [ $st2 -eq 2 ] && grep -q 'no iaprune model description' $tmp/err2 && [ ! -e $tmp/x.npz ]"
