#!/bin/sh
# The out-of-tree example plugin (examples/sampler-stride): install the
# library, headers and iaprune.pc into a temporary DESTDIR, build the
# example there with its own Makefile through pkg-config only, and load it
# into the build tree's iaprune with --plugin-path. Prints TAP.
set -u
: "${IAP_TEST_BUILDDIR:=.}"
: "${IAP_TEST_SRCDIR:=.}"
: "${MAKE:=make}"
IAPRUNE="$IAP_TEST_BUILDDIR/cli/iaprune"
IAPRUNE_PLUGIN_PATH=
IAPRUNE_PLUGIN_SYSTEM_PATH=
export IAPRUNE_PLUGIN_PATH IAPRUNE_PLUGIN_SYSTEM_PATH

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iap-example.XXXXXX") || exit 1
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
dest="$tmp/dest"

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
	[ -f "$tmp/log" ] && sed 's/^/# /' "$tmp/log" | tail -n 30
}
skip_rest() {
	while [ "$n" -lt 6 ]; do n=$((n + 1)); echo "not ok $n - $1"; done
	exit 1
}

echo "1..6"

# 1. Install only what a plugin author needs, into DESTDIR (never the real prefix).
if (cd "$IAP_TEST_BUILDDIR" && $MAKE install-libLTLIBRARIES install-iapruneincludeHEADERS \
	install-pkgconfigDATA DESTDIR="$dest") >"$tmp/log" 2>&1; then
	ok "install library, headers and iaprune.pc into DESTDIR"
else
	not_ok "install library, headers and iaprune.pc into DESTDIR"; skip_rest "skipped: install failed"
fi
# The installed iaprune.pc names the configured prefix; a copy with the
# prefix moved into DESTDIR is what a user of that prefix would have.
pc=$(find "$dest" -name iaprune.pc | head -n 1)
mkdir "$tmp/pc"
prefix=$(sed -n 's/^prefix=//p' "$pc")
sed "s|^prefix=.*|prefix=$dest$prefix|" "$pc" >"$tmp/pc/iaprune.pc"
PKG_CONFIG_PATH="$tmp/pc"
export PKG_CONFIG_PATH

# 2. pkg-config points into DESTDIR, not at the source or build tree.
cflags=$(pkg-config --cflags iaprune 2>"$tmp/log")
case "$cflags" in
*"$dest"/*) ok "pkg-config --cflags iaprune points into DESTDIR ($cflags)" ;;
*) not_ok "pkg-config --cflags iaprune points into DESTDIR ($cflags)" ;;
esac

# 3. Build the example out of tree with its own Makefile.
cp -R "$IAP_TEST_SRCDIR/examples/sampler-stride" "$tmp/ex" && chmod -R u+w "$tmp/ex"
if $MAKE -C "$tmp/ex" CFLAGS="-O2 -Werror" >"$tmp/log" 2>&1 && [ -f "$tmp/ex/stride.so" ]; then
	ok "the example builds against the installed headers via pkg-config"
else
	not_ok "the example builds against the installed headers via pkg-config"; skip_rest "skipped: build failed"
fi

# 4. Exactly one exported function: the entry point.
syms=$(nm -D --defined-only "$tmp/ex/stride.so" 2>/dev/null | awk '$2 == "T" { print $3 }')
if [ "$syms" = iap_plugin_descriptor ]; then ok "the example exports only iap_plugin_descriptor"
else echo "# exported: $syms"; not_ok "the example exports only iap_plugin_descriptor"; fi

# 5. Loaded with --plugin-path and described.
if "$IAPRUNE" --plugin-path "$tmp/ex" plugins --describe sampler/stride >"$tmp/log" 2>&1 &&
	grep -qx 'sampler stride: every stride-th sample until k per class (example plugin)' "$tmp/log" &&
	grep -qF '  stride (int, range [1, 1e+06], default 3)' "$tmp/log"; then
	ok "iaprune --plugin-path loads and describes the example"
else not_ok "iaprune --plugin-path loads and describes the example"; fi

# 6. Its options are validated in a pipeline like any other plugin's (the
#    other kinds come from the build tree's test plugins).
cat >"$tmp/p.yaml" <<'YAML'
version: 1
dataset: {plugin: test-data}
model: {plugin: test-mlp}
sampling:
  - plugin: stride
    options: {strid: 2}
attribution:
  - {plugin: test-grad, options: {steps: 4}}
pruning: {policy: test-lowest}
YAML
IAPRUNE_PLUGIN_PATH="$IAP_TEST_BUILDDIR/tests/plugins/.libs" \
	"$IAPRUNE" --plugin-path "$tmp/ex" run "$tmp/p.yaml" >"$tmp/out" 2>"$tmp/log"
status=$?
want="iaprune: $tmp/p.yaml:6:15: sampler 'stride': unknown option 'strid' (known: stride, offset)"
if [ "$status" -eq 2 ] && [ "$(cat "$tmp/log")" = "$want" ]; then
	ok "the example's options are validated from a pipeline (exit 2, file:line:col)"
else
	echo "# status $status"; not_ok "the example's options are validated from a pipeline (exit 2, file:line:col)"
fi

[ "$failed" -eq 0 ]
