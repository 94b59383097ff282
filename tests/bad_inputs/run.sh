#!/bin/sh
# The bad-inputs catalogue (issue #9): hostile or broken pipelines, weights,
# images, datasets and plugins, each with the exact one line the user sees.
# Pipelines and weights go through the real CLI (iaprune run --dry-run,
# iaprune info); images, npz archives and CSV label files through badread,
# which drives the library readers as the CLI would (no command reaches
# them yet). Every refusal is exactly one line "iaprune: <message>" on
# stderr, nothing on stdout, and exit status 2. Plugins that cannot be
# used are warnings by the CLI's design (status 0, the run goes on without
# them): one exact warning line each. Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
B=$(cd "$IAP_TEST_BUILDDIR" && pwd)
IAPRUNE="$B/cli/iaprune"
BADREAD="$B/tests/bad_inputs/badread"
IAPRUNE_PLUGIN_PATH=$B/tests/plugins/.libs
IAPRUNE_PLUGIN_SYSTEM_PATH=
export IAPRUNE_PLUGIN_PATH IAPRUNE_PLUGIN_SYSTEM_PATH

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-bad.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
# Relative names keep the messages independent of where the tree lives.
cd "$IAP_TEST_SRCDIR/tests/bad_inputs/data" || exit 1

n=0
failed=0
# expect STATUS 'EXACT STDERR' 'EXACT STDOUT' PROGRAM ARGS...: one catalogue entry.
expect() {
	want_rc=$1 want_err=$2 want_out=$3
	shift 3
	n=$((n + 1))
	timeout 60 "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ -n "$want_err" ]; then printf '%s\n' "$want_err" >"$tmp/want_err"; else : >"$tmp/want_err"; fi
	if [ -n "$want_out" ]; then printf '%s\n' "$want_out" >"$tmp/want_out"; else : >"$tmp/want_out"; fi
	desc=$(echo "$*" | sed "s|$B/||g; s|$tmp/||g")
	if [ "$rc" -eq "$want_rc" ] && cmp -s "$tmp/err" "$tmp/want_err" && cmp -s "$tmp/out" "$tmp/want_out"; then
		echo "ok $n - $desc"
	else
		failed=$((failed + 1))
		echo "not ok $n - $desc"
		echo "# exit status $rc, expected $want_rc"
		sed 's/^/# want stderr: /' "$tmp/want_err"
		sed 's/^/# got stderr:  /' "$tmp/err"
		sed 's/^/# got stdout:  /' "$tmp/out" | head -5
	fi
}
refused() { msg=$1; shift; expect 2 "iaprune: $msg" "" "$@"; }
pipeline() { refused "$2" "$IAPRUNE" run --dry-run "$1"; }
weights() { refused "$2" "$IAPRUNE" info "$1"; }
image() { refused "$2" "$BADREAD" image "$1"; }

echo "1..71"

# ---- YAML pipelines (14) ----
pipeline syntax.yaml "syntax.yaml:3:5: did not find expected ',' or '}' while parsing a flow mapping"
pipeline tab_indent.yaml "tab_indent.yaml:3:1: found character that cannot start any token while scanning for the next token"
pipeline wrong_type.yaml "wrong_type.yaml:1:10: version: expected an integer, got 'one'"
pipeline unknown_key.yaml "unknown_key.yaml:2:1: unknown key 'modle' (known: version, name, seed, output, dataset, model, sampling, attribution, pruning, evaluation, report, threads)"
pipeline huge_number.yaml "huge_number.yaml:2:7: seed: expected an integer, got '123456789012345678901234567890'"
pipeline deep_nesting.yaml "deep_nesting.yaml:2:68: document too large or too deeply nested (recursive alias?)"
pipeline recursive_alias.yaml "recursive_alias.yaml:2:8: document too large or too deeply nested (recursive alias?)"
pipeline billion_laughs.yaml "billion_laughs.yaml:2:45: document too large or too deeply nested (recursive alias?)"
pipeline duplicate_key.yaml "duplicate_key.yaml:3:1: duplicate key 'seed' (first at line 2)"
pipeline python_tag.yaml "python_tag.yaml:2:7: tag 'tag:yaml.org,2002:python/object:os.system' is not supported (pipelines are plain data)"
pipeline not_a_map.yaml "not_a_map.yaml:1:1: a pipeline must be a mapping (key: value lines)"
pipeline bad_utf8.yaml "bad_utf8.yaml: invalid leading UTF-8 octet at byte 17"
pipeline nul_byte.yaml "nul_byte.yaml: control characters are not allowed at byte 13"
pipeline future_version.yaml "future_version.yaml:1:10: version: unsupported pipeline version 99 (this iaprune reads version 1)"

# ---- safetensors weights (14 refused, 1 regression) ----
weights empty.safetensors "empty.safetensors: 0 bytes is too short for a safetensors file"
weights truncated.safetensors "truncated.safetensors: header length 64 runs past the end of the file (30 bytes)"
weights header_len_lies.safetensors "header_len_lies.safetensors: header length 9223372036854775813 exceeds the 100 MB limit"
weights header_over_limit.safetensors "header_over_limit.safetensors: header length 200000000 exceeds the 100 MB limit"
weights header_not_json.safetensors "header_not_json.safetensors: malformed header: expected '\"' at byte 9"
weights offsets_overlap.safetensors "offsets_overlap.safetensors: tensor 'b' overlaps the previous tensor at byte 4 (expected 8)"
weights offsets_past_end.safetensors "offsets_past_end.safetensors: tensor 'w' ends at byte 16 past the data (8 bytes; file truncated?)"
weights dtype_unknown.safetensors "dtype_unknown.safetensors: tensor 'w' has dtype F99 (supported: F32, F16, BF16, I64)"
weights shape_mismatch.safetensors "shape_mismatch.safetensors: tensor 'w': data_offsets [0, 8] do not hold 12 bytes of F32"
weights negative_dim.safetensors "negative_dim.safetensors: malformed header: expected a non-negative integer at byte 41"
weights huge_tensor.safetensors "huge_tensor.safetensors: tensor 'w' is too large"
weights duplicate_name.safetensors "duplicate_name.safetensors: tensor 'w' appears twice"
weights trailing_bytes.safetensors "trailing_bytes.safetensors: 4 bytes after the last tensor are not described by the header"
weights meta_not_string.safetensors "meta_not_string.safetensors: __metadata__ value of 'k' is not a string"
# Regression (fuzzing found qsort(NULL, 0) here): a header "{}" is a valid empty file.
expect 0 "" "$(printf '%-60s %-5s %-20s %12s %7s\n\ntotal: 0 tensors, 0 float elements, 0.00%% zero' \
	tensor dtype shape elements zeros)" "$IAPRUNE" info no_tensors.safetensors

# ---- images (8 refused, 4 valid but unusual: decoded with the right values) ----
image zero_size.png "zero_size.png: empty file"
image truncated.png "truncated.png: truncated PNG (60 bytes)"
image wrong_magic.png "wrong_magic.png: not a PNG or JPEG image"
image bad_crc.png "bad_crc.png: corrupt PNG: IHDR: CRC error"
image zero_width.png "zero_width.png: corrupt PNG: zero-size image (0x4)"
image huge_dims.png "huge_dims.png: PNG image too large (30000x30000; limit 32768 per side, 268435456 pixels)"
image bad_zlib.png "bad_zlib.png: corrupt PNG: IDAT: invalid block type"
image jpeg_soi_only.jpg "jpeg_soi_only.jpg: truncated JPEG (3 bytes)"
# 1x1 gray 128 -> 128/255; 16-bit 0 and 65535 -> 0 and 1; palette red, blue -> 3 channels,
# or one by ITU-R 601 luma: red 0.299, blue 0.114.
expect 0 "" "1x1x1 min 0.501961 max 0.501961" "$BADREAD" image one_by_one.png
expect 0 "" "1x1x2 min 0.000000 max 1.000000" "$BADREAD" image gray16.png
expect 0 "" "3x1x2 min 0.000000 max 1.000000" "$BADREAD" image palette.png 0
expect 0 "" "1x1x2 min 0.114000 max 0.299000" "$BADREAD" image palette.png 1

# ---- datasets: npz archives (8) and CSV label files (6) ----
refused "not_zip.npz: not a zip archive (no end of central directory record)" "$BADREAD" npz not_zip.npz y
refused "labels.npz: no member 'train_images' (has: train_labels.npy)" "$BADREAD" npz labels.npz train_images
refused "crc_mismatch.npz: train_labels.npy: CRC-32 mismatch (stored 0x12345678, computed 0xc9fb6a7e)" \
	"$BADREAD" npz crc_mismatch.npz train_labels
refused "truncated.npz: not a zip archive (no end of central directory record)" "$BADREAD" npz truncated.npz train_labels
refused "fortran.npz: x.npy: array is in Fortran order (fortran_order: True); save it C-contiguous" \
	"$BADREAD" npz fortran.npz x
refused "float_labels.npz: y.npy: element 1 (2.5) does not fit int64" "$BADREAD" npz float_labels.npz y i8
refused "u8_overflow.npz: y.npy: element 1 (300) does not fit uint8" "$BADREAD" npz u8_overflow.npz y u1
refused "bad_descr.npz: y.npy: unsupported dtype '<c16'" "$BADREAD" npz bad_descr.npz y
refused "unterminated.csv:2: unterminated quoted field (opened here)" "$BADREAD" csv unterminated.csv
refused "ragged.csv:3: 1 field, expected 2 (as in the header)" "$BADREAD" csv ragged.csv
refused "label_not_int.csv:2: column 'label': 'zero' is not an integer" "$BADREAD" csv label_not_int.csv label
refused "no_such_column.csv: no column 'target' (columns: 'path', 'label')" "$BADREAD" csv no_such_column.csv target
refused "empty.csv: empty file (no header row)" "$BADREAD" csv empty.csv
refused "nul.csv:2: NUL byte" "$BADREAD" csv nul.csv

# ---- issue #20 (11): sizes checked before allocating, names from files escaped ----
# Runs that reach the data use the real plugins and write only to $tmp.
P=$B/plugins/models/.libs:$B/plugins/datasets/.libs:$B/plugins/attribution/.libs:$B/plugins/policies/.libs
run() { refused "$2" env IAPRUNE_PLUGIN_PATH="$P" "$IAPRUNE" --max-memory 1G run -q --set output="$tmp/o" "$1"; }
run huge_label.yaml "dataset 'medmnist', train split: huge_label.npz: train_labels[1] is 100000000, beyond the limit of 1000000 classes"
run wide_images.yaml "dataset 'medmnist', train split: wide_images.npz: train_images are 40000x1 pixels (limit 32768 per side)"
run memory_bomb.yaml "model 'vgg' (504178 parameters, batch size 2) with 6 images needs about 8.7 GiB of memory, more than the limit of 1.0 GiB (--max-memory; the default is 3/4 of physical memory)"
refused "num_classes.yaml:7:53: model 'vgg': option 'num_classes': 99999999999 is out of range [0, 1e+06]" \
	env IAPRUNE_PLUGIN_PATH="$P" "$IAPRUNE" run --dry-run num_classes.yaml
pipeline escape_key.yaml "escape_key.yaml:2:1: unknown key 'se\\e[2Jed\\nx' (known: version, name, seed, output, dataset, model, sampling, attribution, pruning, evaluation, report, threads)"
info() { refused "$2" env IAPRUNE_PLUGIN_PATH="$P" "$IAPRUNE" --max-memory 1G info "$1"; }
info classes_overflow.safetensors "classes_overflow.safetensors: bad iaprune.input '3x32x32' or iaprune.num_classes '99999999999' (at most 1000000 classes)"
info huge_input.safetensors "huge_input.safetensors: bad iaprune.input '3x4000000000x4000000000' or iaprune.num_classes '2' (at most 1000000 classes)"
info huge_classifier.safetensors "huge_classifier.safetensors: model 'vgg' needs about 16 GiB of memory, more than the limit of 1.0 GiB (--max-memory; the default is 3/4 of physical memory)"
weights escape_dup.safetensors "escape_dup.safetensors: tensor 'a\\e[31m' appears twice"
# A listing shows names and metadata from the file with their control characters escaped.
expect 0 "" "$(printf '%-60s %-5s %-20s %12s %7s\n%-60s %-5s %-20s %12s %6.1f%%\n\ntotal: 1 tensors, 1 float elements, 0.00%% zero\nmetadata %s: %s' \
	tensor dtype shape elements zeros 'x\e[2J\ny' F32 '[1]' 1 0 'note\e]0;pwned\x07' 'a\nb')" "$IAPRUNE" info escape_name.safetensors
refused "--max-memory: memory size '0': expected bytes or a number with K, M, G or T (like 8G), or a percentage of physical memory (like 50%)" \
	"$IAPRUNE" --max-memory 0 info

# ---- plugins (5): one at a time in a scratch directory; a warning, and the run goes on ----
plugin() {
	rm -rf "$tmp/p"; mkdir "$tmp/p"
	if [ "$1" = junk ]; then echo garbage >"$tmp/p/junk.so"; else
		cp "$B/tests/plugins/bad/.libs/$1.so" "$tmp/p/$1.so"; fi
	expect 0 "iaprune: warning: $tmp/p/$1.so: $2" "" env IAPRUNE_PLUGIN_PATH= "$IAPRUNE" plugins --plugin-path "$tmp/p" --kind sampler
}
# (stdout is the listing; only stderr and the status are checked here)
expect() { _e_rc=$1 _e_err=$2; shift 3; n=$((n + 1)); timeout 60 "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
	printf '%s\n' "$_e_err" >"$tmp/want_err"
	if [ "$rc" -eq "$_e_rc" ] && cmp -s "$tmp/err" "$tmp/want_err" && grep -q '^  (none)$' "$tmp/out"; then
		echo "ok $n - plugins: $(basename "$(ls "$tmp/p")")"
	else failed=$((failed + 1)); echo "not ok $n - plugins: $(ls "$tmp/p")"; echo "# exit status $rc"
		sed 's/^/# want stderr: /' "$tmp/want_err"; sed 's/^/# got stderr:  /' "$tmp/err"; fi; }
plugin bad_major "plugin ABI 4.0 is incompatible with this iaprune (ABI 3.0): major versions differ, rebuild the plugin"
plugin bad_minor "plugin needs ABI 3.1 but this iaprune provides ABI 3.0: upgrade iaprune"
plugin bad_nosym "not an iaprune plugin: no 'iap_plugin_descriptor' symbol ($tmp/p/bad_nosym.so: undefined symbol: iap_plugin_descriptor)"
plugin bad_entry "sampler plugin 'test-variant' lacks required entry point 'select'"
plugin junk "not an ELF shared object (no ELF header)"

[ "$n" -eq 71 ] || { echo "not ok - ran $n entries, the plan says 71"; exit 1; }
exit 0
