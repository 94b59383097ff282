#!/bin/sh
# Man pages: each page lints clean (mandoc -Tlint, or groff -mdoc -ww -z
# without mandoc), cross-references to iaprune's own pages resolve, and
# the pages stay in step with the code: every pipeline key the validator
# knows is documented in iaprune-pipeline(5), every command in iaprune(1).
# Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
: "${MANDOC:=$(command -v mandoc || true)}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
man="$IAP_TEST_SRCDIR/man"
pages="iaprune.1 iaprune-pipeline.5 iaprune-plugin.7 iap_plugin_descriptor.3 iap_opts_int.3"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-man.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; sed 's/^/# /' "$tmp/log"; }

echo "1..7"

for p in $pages; do
	: >"$tmp/log"
	if [ -n "$MANDOC" ]; then
		"$MANDOC" -Tlint -Wstyle "$man/$p" >"$tmp/raw" 2>&1
		# System pages (dlopen(3) ...) may be missing or unindexed here; ours must exist.
		while IFS= read -r line; do
			case "$line" in
			*"mandoc.db"*) ;;
			*"referenced manual not found: Xr "*)
				ref=${line##*Xr }
				ref=${ref% (*}
				name=${ref% *} sec=${ref#* }
				case "$name" in
				iap*) [ -f "$man/$name.$sec" ] || echo "$line" >>"$tmp/log" ;;
				esac ;;
			*) echo "$line" >>"$tmp/log" ;;
			esac
		done <"$tmp/raw"
	else
		groff -mdoc -ww -z "$man/$p" >"$tmp/log" 2>&1
	fi
	if [ -s "$tmp/log" ]; then not_ok "$p lints clean"; else ok "$p lints clean"; fi
done

# Every key of a complete pipeline (defaults filled in by the validator) is an ".It Ic key" item.
cat >"$tmp/p.yaml" <<'YAML'
version: 1
dataset: {plugin: test-data}
model: {plugin: test-mlp, weights: w.safetensors}
sampling: [{plugin: test-first, name: s}]
attribution: [{plugin: test-grad, name: a, options: {steps: 1}}]
pruning: {policy: test-lowest}
YAML
: >"$tmp/log"
if IAPRUNE_PLUGIN_PATH="$IAP_TEST_BUILDDIR/tests/plugins/.libs" IAPRUNE_PLUGIN_SYSTEM_PATH= \
	"$IAPRUNE" run --dry-run "$tmp/p.yaml" >"$tmp/dump" 2>"$tmp/log"; then
	# Keys are the words before ':' at the start of a (possibly "- ") line.
	# (steps is test-grad's own option, documented by the plugin, not the format.)
	sed -n 's/^[ -]*\([a-z_]*\):.*/\1/p' "$tmp/dump" | grep -vx steps | sort -u >"$tmp/keys"
	for k in $(cat "$tmp/keys"); do
		grep -q "^\.It Ic $k " "$man/iaprune-pipeline.5" || echo "undocumented key: $k" >>"$tmp/log"
	done
	[ "$(wc -l <"$tmp/keys")" -ge 30 ] || echo "only $(wc -l <"$tmp/keys") keys found" >>"$tmp/log"
fi
if [ -s "$tmp/log" ]; then not_ok "every pipeline key is documented in iaprune-pipeline(5)"
else ok "every pipeline key is documented in iaprune-pipeline(5)"; fi

: >"$tmp/log"
"$IAPRUNE" --help | sed -n 's/^  \([a-z][a-z]*\)  .*/\1/p' >"$tmp/cmds"
for c in $(cat "$tmp/cmds"); do
	grep -q "Cm $c\b" "$man/iaprune.1" || echo "undocumented command: $c" >>"$tmp/log"
done
[ "$(wc -l <"$tmp/cmds")" -eq 7 ] || echo "expected 7 commands in --help" >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "every command is documented in iaprune(1)"
else ok "every command is documented in iaprune(1)"; fi

[ "$failed" -eq 0 ]
